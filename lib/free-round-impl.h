/*
 * free-round-impl.h - a row of the free coordinates' E rounded as a checkpoint of a
 * quantized kind stores it (enum fpd_free_kind), in plain float arithmetic that
 * compiles for the host (C11) and for a CUDA device alike: the forward of
 * quantization-aware training (fpd_engine_params.free_qat) on the CPU engine
 * (lib/cpu/engine-cpu.c through fpd__free_fake_quant_row) and on the CUDA engine
 * (lib/cuda/engine-cuda.cu, one row a thread). Internal to libfpd.
 *
 * The writers' arithmetic, step by step (lib/quant.c for FBGEMM's row-wise kinds,
 * lib/free-quant.c for the symmetric ones), with F16 conversions done by scaling
 * to the F16 grid of the value's binade (exact: a power-of-two scale) instead of
 * bit manipulation: round-to-nearest-even is rintf on that grid, "rounded up" is
 * ceilf. Products that a compiler could fuse with a following add (x = code * scale
 * + bias) go through fpd__mul_rn / fpd__add_rn, which are CUDA's __fmul_rn /
 * __fadd_rn on a device, so that a GPU does not contract them into an FMA the
 * host does not do. tests/lib/test-free.c (qat_rounding_is_the_writers_bytes_decoded)
 * checks every kind against the writers' bytes decoded (fpd_free_quantize_rows), bit
 * for bit. The writers keep their own F16 conversions (fpd_dtype_from_f32) on
 * purpose: that test then compares two implementations, not one with itself.
 */
#ifndef FPD_FREE_ROUND_IMPL_H
#define FPD_FREE_ROUND_IMPL_H

#include "fpd.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define FPD_HD __host__ __device__
#else
#define FPD_HD
#endif

static inline FPD_HD float fpd__mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}

static inline FPD_HD float fpd__add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fadd_rn(a, b);
#else
    return a + b;
#endif
}

/* The spacing of F16 values at |x| (x finite, |x| < 65536): 2^-24 below 2^-14
 * (subnormals), else 2^(e - 11) for |x| in [2^(e-1), 2^e). */
static inline FPD_HD float fpd__f16_ulp(float ax) {
    if (ax < 6.103515625e-05f) return 5.9604644775390625e-08f; /* 2^-14, 2^-24 */
    int e;
    (void)frexpf(ax, &e);
    return ldexpf(1.0f, e - 11);
}

/* x rounded to the nearest F16 (ties to even), as a float; +-Inf beyond F16's
 * range (|x| >= 65520), x itself when not finite. */
static inline FPD_HD float fpd__f16_round_value(float x) {
    if (!isfinite(x)) return x;
    const float ax = fabsf(x);
    if (ax >= 65520.0f) return x > 0.0f ? INFINITY : -INFINITY;
    const float u = fpd__f16_ulp(ax), y = rintf(ax / u) * u;
    return x < 0.0f ? -y : y;
}

/* The smallest F16 at or above x (0 <= x, finite), as a float; Inf beyond 65504. */
static inline FPD_HD float fpd__f16_ceil_value(float x) {
    if (x >= 65536.0f) return INFINITY;
    const float u = fpd__f16_ulp(x), y = ceilf(x / u) * u;
    return y > 65504.0f ? INFINITY : y;
}

/* *m = max |x[j]| (0 for c = 0); false when a value is NaN or Inf. The symmetric
 * writers' scan too (lib/free-quant.c). */
static inline FPD_HD bool fpd__row_absmax(const float *x, int64_t c, float *m) {
    *m = 0.0f;
    for (int64_t j = 0; j < c; j++) {
        if (!isfinite(x[j])) return false;
        *m = fabsf(x[j]) > *m ? fabsf(x[j]) : *m;
    }
    return true;
}

/* *lo, *hi = min and max of x (0 for c = 0); false when a value is NaN or Inf. The
 * row-wise writers' scan too (lib/quant.c). */
static inline FPD_HD bool fpd__row_minmax(const float *x, int64_t c, float *lo, float *hi) {
    *lo = *hi = c ? x[0] : 0.0f;
    for (int64_t j = 0; j < c; j++) {
        if (!isfinite(x[j])) return false;
        *lo = x[j] < *lo ? x[j] : *lo;
        *hi = x[j] > *hi ? x[j] : *hi;
    }
    return true;
}

/* out[0..c) = x[0..c) as a row of kind stores it, dequantized; false (out
 * untouched) when the row cannot be stored (a NaN or Inf, a range beyond F16's),
 * as the writers refuse it. */
static inline FPD_HD bool fpd__free_round_row(enum fpd_free_kind kind, const float *x, int64_t c, float *out) {
    if (kind == FPD_FREE_INT8_SYM || kind == FPD_FREE_INT4_SYM) {
        const int qmax = kind == FPD_FREE_INT8_SYM ? 127 : 7;
        float m;
        if (!fpd__row_absmax(x, c, &m)) return false;
        const float scale = m > 0.0f ? fpd__f16_ceil_value(m / (float)qmax) : 0.0f;
        if (!isfinite(scale)) return false;
        for (int64_t j = 0; j < c; j++) {
            double q = scale > 0.0f ? rint((double)x[j] / (double)scale) : 0.0;
            q = (q < -qmax ? -qmax : q > qmax ? qmax : q) + 0.0; /* + 0.0: code 0 is +0, as decoded */
            out[j] = fpd__mul_rn((float)q, scale);
        }
        return true;
    }
    /* FBGEMM's row-wise kinds (lib/quant.c) */
    float lo, hi;
    if (!fpd__row_minmax(x, c, &lo, &hi)) return false;
    if (kind == FPD_FREE_INT8) {
        const float range = hi - lo;
        if (!isfinite(range)) return false;
        const float scale = range / 255.0f, inv = 255.0f / (range + 1e-8f);
        for (int64_t j = 0; j < c; j++) {
            float q = rintf(fpd__mul_rn(x[j] - lo, inv));
            q = (q < 0.0f ? 0.0f : q > 255.0f ? 255.0f : q) + 0.0f; /* an integer code: never -0 */
            out[j] = fpd__add_rn(fpd__mul_rn(q, scale), lo);
        }
        return true;
    }
    const float lo16 = fpd__f16_round_value(lo);
    if (!isfinite(lo16)) return false;
    const float range = hi - lo16;
    float scale = range == 0.0f ? 1.0f : fpd__f16_round_value(range / 15.0f);
    if (!isfinite(scale)) return false;
    if (scale == 0.0f) scale = 1.0f;
    float inv = 1.0f / scale;
    if (isinf(inv)) scale = inv = 1.0f;
    for (int64_t j = 0; j < c; j++) {
        float q = rintf(fpd__mul_rn(x[j] - lo16, inv));
        q = (q < 0.0f ? 0.0f : q > 15.0f ? 15.0f : q) + 0.0f;
        out[j] = fpd__add_rn(fpd__mul_rn(q, scale), lo16);
    }
    return true;
}

#endif
