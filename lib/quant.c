/*
 * quant.c - row-wise int8 and int4 quantization of embedding tables in FBGEMM's
 * "fused" row-wise layouts (fpd.h, "Row-wise quantized tables"): the one quantizer
 * behind the accuracy report's baselines (quality.c), the rowwise encoding that
 * fpd-compress writes, and the look-ups that read it.
 *
 * The arithmetic follows FBGEMM's reference kernels (fbgemm/src/QuantUtils.cc):
 *   int8 (FloatOrHalfToFused8BitRowwiseQuantizedSBFloatRef): scale = (max - min) / 255,
 *     bias = min, code = lrintf((x - min) * (255 / (max - min + 1e-8))), both F32;
 *   int4 (FloatOrHalfToFusedNBitRowwiseQuantizedSBHalfRef, bit_rate 4): min rounded to
 *     F16 first, scale = F16((max - min) / 15) (1 when the range or the rounded scale
 *     is 0), code = clamp(lrintf((x - min) * (1 / scale)), 0, 15), two codes a byte,
 *     even column in the low nibble.
 * Dequantization: x = code * scale + bias (FBGEMM's Fused*ToFloat).
 */
#include "fpd-impl.h"
#include "free-round-impl.h"

#include <math.h>
#include <string.h>

static const char *const kind_names[FPD_ROWWISE_COUNT] = {"int8", "int4"};

const char *fpd_rowwise_name(enum fpd_rowwise kind) {
    return (unsigned)kind < FPD_ROWWISE_COUNT ? kind_names[kind] : "?";
}

bool fpd_rowwise_from_name(const char *name, enum fpd_rowwise *out) {
    for (int k = 0; k < FPD_ROWWISE_COUNT; k++)
        if (strcmp(name, kind_names[k]) == 0) {
            *out = (enum fpd_rowwise)k;
            return true;
        }
    return false;
}

size_t fpd_rowwise_row_bytes(enum fpd_rowwise kind, int64_t dim) {
    FPD_ASSERT((unsigned)kind < FPD_ROWWISE_COUNT && dim >= 0);
    return kind == FPD_ROWWISE_INT8 ? (size_t)dim + 8 : ((size_t)dim + 1) / 2 + 4;
}

static float f16_round(float x) {
    uint16_t h;
    float y;
    fpd_dtype_from_f32(FPD_DTYPE_F16, &x, &h, 1);
    fpd_dtype_to_f32(FPD_DTYPE_F16, &h, &y, 1);
    return y;
}

bool fpd_rowwise_quantize_row(enum fpd_rowwise kind, const float *x, int64_t dim, uint8_t *out) {
    FPD_ASSERT((unsigned)kind < FPD_ROWWISE_COUNT && dim >= 0 && (x || dim == 0) && out);
    float lo, hi;
    if (!fpd__row_minmax(x, dim, &lo, &hi)) return false;
    if (kind == FPD_ROWWISE_INT8) {
        float range = hi - lo;
        if (!isfinite(range)) return false;
        float scale = range / 255.0f, inv = 255.0f / (range + 1e-8f);
        for (int64_t j = 0; j < dim; j++) {
            long q = lrintf((x[j] - lo) * inv);
            out[j] = (uint8_t)(q < 0 ? 0 : q > 255 ? 255 : q);
        }
        memcpy(out + dim, &scale, 4);
        memcpy(out + dim + 4, &lo, 4);
        return true;
    }
    float lo16 = f16_round(lo);
    if (!isfinite(lo16)) return false;
    float range = hi - lo16;
    float scale = range == 0.0f ? 1.0f : f16_round(range / 15.0f);
    if (!isfinite(scale)) return false;
    if (scale == 0.0f) scale = 1.0f;
    float inv = 1.0f / scale;
    if (isinf(inv)) scale = inv = 1.0f;
    size_t nb = ((size_t)dim + 1) / 2;
    memset(out, 0, nb);
    for (int64_t j = 0; j < dim; j++) {
        long q = lrintf((x[j] - lo16) * inv);
        q = q < 0 ? 0 : q > 15 ? 15 : q;
        out[j / 2] |= (uint8_t)(q << ((j & 1) * 4));
    }
    uint16_t sb[2];
    float v[2] = {scale, lo16};
    fpd_dtype_from_f32(FPD_DTYPE_F16, v, sb, 2);
    memcpy(out + nb, sb, 4);
    return true;
}

void fpd_rowwise_dequantize_row(enum fpd_rowwise kind, const uint8_t *q, int64_t dim, float *out) {
    FPD_ASSERT((unsigned)kind < FPD_ROWWISE_COUNT && dim >= 0 && q && (out || dim == 0));
    float sb[2];
    if (kind == FPD_ROWWISE_INT8) {
        memcpy(&sb[0], q + dim, 4);
        memcpy(&sb[1], q + dim + 4, 4);
        for (int64_t j = 0; j < dim; j++) out[j] = (float)q[j] * sb[0] + sb[1];
        return;
    }
    size_t nb = ((size_t)dim + 1) / 2;
    fpd_dtype_to_f32(FPD_DTYPE_F16, q + nb, sb, 2);
    for (int64_t j = 0; j < dim; j++) out[j] = (float)((q[j / 2] >> ((j & 1) * 4)) & 15) * sb[0] + sb[1];
}

bool fpd_rowwise_row_finite(enum fpd_rowwise kind, const uint8_t *q, int64_t dim) {
    float sb[2];
    if (kind == FPD_ROWWISE_INT8) {
        memcpy(&sb[0], q + dim, 4);
        memcpy(&sb[1], q + dim + 4, 4);
    } else {
        fpd_dtype_to_f32(FPD_DTYPE_F16, q + ((size_t)dim + 1) / 2, sb, 2);
    }
    /* the largest value a row can give is 255 scale + bias (15 for int4) */
    float top = (kind == FPD_ROWWISE_INT8 ? 255.0f : 15.0f) * sb[0] + sb[1];
    return isfinite(sb[0]) && isfinite(sb[1]) && isfinite(top);
}

enum fpd_status fpd_rowwise_quantize(const struct fpd_table_view *w, enum fpd_rowwise kind, void *out,
                                     double *rel_error, struct fpd_error *err) {
    FPD_ASSERT(w && (unsigned)kind < FPD_ROWWISE_COUNT);
    if (!fpd_dtype_is_float(w->dtype))
        return fpd__err(err, FPD_STATUS_DTYPE, "table dtype %s is not a float dtype", fpd_dtype_name(w->dtype));
    const int64_t block = 1024, dim = w->dim;
    const size_t rb = fpd_rowwise_row_bytes(kind, dim);
    enum fpd_status st = FPD_STATUS_OK;
    float *a = fpd_malloc((size_t)(block * (dim + 1)) * sizeof(float));
    uint8_t *tmp = out ? NULL : fpd_malloc(rb);
    if (!a || (!out && !tmp)) {
        st = fpd__err(err, FPD_STATUS_NOMEM, "out of memory for row-wise quantization");
        goto done;
    }
    float *y = a + block * dim;
    double se = 0.0, sn = 0.0;
    for (int64_t r0 = 0; r0 < w->rows; r0 += block) {
        int64_t r1 = r0 + block < w->rows ? r0 + block : w->rows;
        if ((st = fpd_table_view_rows(w, r0, r1, a, err))) goto done;
        for (int64_t i = r0; i < r1; i++) {
            const float *x = a + (i - r0) * dim;
            uint8_t *q = out ? (uint8_t *)out + (size_t)i * rb : tmp;
            if (!fpd_rowwise_quantize_row(kind, x, dim, q)) {
                int64_t j = 0;
                while (j < dim && isfinite(x[j])) j++;
                if (j < dim)
                    st = fpd__err(err, FPD_STATUS_NUMERIC,
                                  "row %lld, column %lld is %s; a table with NaN or Inf cannot be quantized or fitted",
                                  (long long)i, (long long)j, isnan(x[j]) ? "NaN" : x[j] > 0 ? "Inf" : "-Inf");
                else
                    st = fpd__err(err, FPD_STATUS_NUMERIC, "row %lld: its range does not fit the %s format's F16 scale and bias",
                                  (long long)i, fpd_rowwise_name(kind));
                goto done;
            }
            if (!rel_error) continue;
            fpd_rowwise_dequantize_row(kind, q, dim, y);
            for (int64_t j = 0; j < dim; j++) {
                double d = (double)x[j] - (double)y[j];
                se += d * d;
                sn += (double)x[j] * x[j];
            }
        }
    }
    if (rel_error) *rel_error = sn > 0.0 ? sqrt(se / sn) : 0.0;
done:
    fpd_free(a);
    fpd_free(tmp);
    return st;
}

enum fpd_status fpd_rowwise_lookup(const struct fpd_rowwise_table *q, const int64_t *idx, int64_t n, float *out,
                                   struct fpd_error *err) {
    FPD_ASSERT(q && (unsigned)q->kind < FPD_ROWWISE_COUNT && (idx || n == 0));
    const size_t rb = fpd_rowwise_row_bytes(q->kind, q->dim);
    for (int64_t t = 0; t < n; t++)
        if (idx[t] < 0 || idx[t] >= q->rows)
            return fpd__err(err, FPD_STATUS_INVALID_ARG, "index %lld (position %lld) is outside [0, %lld)",
                            (long long)idx[t], (long long)t, (long long)q->rows);
    for (int64_t t = 0; t < n; t++)
        fpd_rowwise_dequantize_row(q->kind, (const uint8_t *)q->data + (size_t)idx[t] * rb, q->dim, out + t * q->dim);
    return FPD_STATUS_OK;
}

enum fpd_status fpd_rowwise_reconstruct(const struct fpd_rowwise_table *q, int64_t row_begin, int64_t row_end,
                                        float *out, struct fpd_error *err) {
    FPD_ASSERT(q && (unsigned)q->kind < FPD_ROWWISE_COUNT);
    if (row_begin < 0 || row_end < row_begin || row_end > q->rows)
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "rows [%lld, %lld) outside a table of %lld rows",
                        (long long)row_begin, (long long)row_end, (long long)q->rows);
    const size_t rb = fpd_rowwise_row_bytes(q->kind, q->dim);
    for (int64_t i = row_begin; i < row_end; i++)
        fpd_rowwise_dequantize_row(q->kind, (const uint8_t *)q->data + (size_t)i * rb, q->dim,
                                   out + (i - row_begin) * q->dim);
    return FPD_STATUS_OK;
}
