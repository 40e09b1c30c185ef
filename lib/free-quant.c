/*
 * free-quant.c - E of the free coordinates as a checkpoint stores it when quantized
 * (fpd.h, "enum fpd_free_kind"): FBGEMM's row-wise int8/int4 rows (free-rowwise/1,
 * quant.c does those rows) or symmetric rows, integer codes and one F16 scale a row
 * (free-sym/1, here). fpd_layer_quantize_free rounds a layer in memory to what the
 * file will hold; the checkpoint writer and reader (formats/checkpoint.c) use the
 * symmetric row helpers below.
 *
 * Symmetric quantization with a per-row scale (Krishnamoorthi 2018, "Quantizing deep
 * convolutional networks for efficient inference: a whitepaper", s. 2.2 "symmetric",
 * with one scale per row as FBGEMM's row-wise kernels have): scale = max|x| / qmax
 * rounded up to F16, code = round-half-even(x / scale) clamped to [-qmax, qmax].
 */
#include "fpd-impl.h"
#include "free-round-impl.h"

#include <math.h>
#include <string.h>

static const char *const kind_names[FPD_FREE_KIND_COUNT] = {"int8", "int4", "int8-sym", "int4-sym"};

const char *fpd_free_kind_name(enum fpd_free_kind kind) {
    return (unsigned)kind < FPD_FREE_KIND_COUNT ? kind_names[kind] : "?";
}

bool fpd_free_kind_from_name(const char *name, enum fpd_free_kind *out) {
    for (int k = 0; k < FPD_FREE_KIND_COUNT; k++)
        if (strcmp(name, kind_names[k]) == 0) {
            *out = (enum fpd_free_kind)k;
            return true;
        }
    return false;
}

bool fpd_free_kind_is_sym(enum fpd_free_kind kind) {
    return kind == FPD_FREE_INT8_SYM || kind == FPD_FREE_INT4_SYM;
}

size_t fpd_free_row_bytes(enum fpd_free_kind kind, int64_t c) {
    FPD_ASSERT((unsigned)kind < FPD_FREE_KIND_COUNT && c >= 0);
    switch (kind) {
    case FPD_FREE_INT8_SYM: return (size_t)c + 2;
    case FPD_FREE_INT4_SYM: return ((size_t)c + 1) / 2 + 2;
    default: return fpd_rowwise_row_bytes((enum fpd_rowwise)kind, c);
    }
}

static float f16_value(uint16_t h) {
    float y;
    fpd_dtype_to_f32(FPD_DTYPE_F16, &h, &y, 1);
    return y;
}

/* The smallest F16 at or above x >= 0 (x finite); 0xffff when beyond F16's range. */
static uint16_t f16_ceil(float x) {
    uint16_t h;
    fpd_dtype_from_f32(FPD_DTYPE_F16, &x, &h, 1);
    const float y = f16_value(h);
    if (!isfinite(y)) return 0xffff;
    if (y < x) {
        h++; /* positive F16: the next bit pattern is the next value up */
        if (!isfinite(f16_value(h))) return 0xffff;
    }
    return h;
}

bool fpd__free_sym_quantize_row(enum fpd_free_kind kind, const float *x, int64_t c, uint8_t *out) {
    FPD_ASSERT(fpd_free_kind_is_sym(kind));
    const int qmax = kind == FPD_FREE_INT8_SYM ? 127 : 7;
    float m;
    if (!fpd__row_absmax(x, c, &m)) return false;
    const uint16_t h = m > 0.0f ? f16_ceil(m / (float)qmax) : 0;
    if (h == 0xffff) return false;
    const float scale = f16_value(h);
    const size_t nb = kind == FPD_FREE_INT8_SYM ? (size_t)c : ((size_t)c + 1) / 2;
    if (kind == FPD_FREE_INT4_SYM) memset(out, 0x88, nb); /* code 0 in both nibbles: an odd c's pad */
    for (int64_t j = 0; j < c; j++) {
        /* x / scale in double: exact to well below half a code, so round-half-even of the
         * true quotient (a float product x * (1 / scale) can land on k + 0.5 when the
         * quotient is not, and round the wrong way) */
        double q = scale > 0.0f ? nearbyint((double)x[j] / (double)scale) : 0.0;
        q = q < -qmax ? -qmax : q > qmax ? qmax : q;
        if (kind == FPD_FREE_INT8_SYM) {
            out[j] = (uint8_t)(int)(q + 128.0f);
        } else {
            const unsigned nib = (unsigned)(int)(q + 8.0f);
            uint8_t *b = out + j / 2;
            *b = (uint8_t)((j & 1) ? (*b & 0x0f) | (nib << 4) : (*b & 0xf0) | nib);
        }
    }
    out[nb] = (uint8_t)(h & 0xff); /* the scale, F16 little-endian */
    out[nb + 1] = (uint8_t)(h >> 8);
    return true;
}

bool fpd__free_sym_dequantize_row(enum fpd_free_kind kind, const uint8_t *q, int64_t c, float *out) {
    FPD_ASSERT(fpd_free_kind_is_sym(kind));
    const size_t nb = kind == FPD_FREE_INT8_SYM ? (size_t)c : ((size_t)c + 1) / 2;
    const float scale = f16_value((uint16_t)(q[nb] | (q[nb + 1] << 8)));
    if (!isfinite(scale) || scale < 0.0f) return false; /* the writer's scales are >= 0 */
    for (int64_t j = 0; j < c; j++) {
        const int code = kind == FPD_FREE_INT8_SYM ? (int)q[j] - 128 : (int)((q[j / 2] >> ((j & 1) * 4)) & 0x0f) - 8;
        if (out) out[j] = (float)code * scale;
    }
    return true;
}

void fpd__free_fake_quant_row(enum fpd_free_kind kind, const float *x, int64_t c, float *out) {
    if (!fpd__free_round_row(kind, x, c, out)) memcpy(out, x, (size_t)c * sizeof(float));
}

int64_t fpd_free_quantize_rows(enum fpd_free_kind kind, const float *e, int64_t rows, int64_t c, uint8_t *out) {
    FPD_ASSERT((unsigned)kind < FPD_FREE_KIND_COUNT && rows >= 0 && c >= 0 && (e || rows == 0) && (out || rows == 0));
    const size_t rb = fpd_free_row_bytes(kind, c);
    for (int64_t i = 0; i < rows; i++)
        if (!(fpd_free_kind_is_sym(kind) ? fpd__free_sym_quantize_row(kind, e + i * c, c, out + (size_t)i * rb)
                                         : fpd_rowwise_quantize_row((enum fpd_rowwise)kind, e + i * c, c,
                                                                    out + (size_t)i * rb)))
            return i;
    return -1;
}

enum fpd_status fpd_layer_quantize_free(struct fpd_layer *layer, enum fpd_free_kind kind, struct fpd_error *err) {
    FPD_ASSERT(layer);
    if ((unsigned)kind >= FPD_FREE_KIND_COUNT)
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "free coordinates: quantized kind %d is out of range", (int)kind);
    const int64_t c = fpd_layer_get_free_coords(layer), rows = fpd_layer_get_shape(layer)->rows;
    if (c == 0) return fpd__err(err, FPD_STATUS_INVALID_ARG, "the layer has no free coordinates to quantize");
    enum fpd_free_kind held;
    if (fpd_layer_get_free_stored(layer, &held)) { /* E as stored rows: already kind's, or F32 first */
        if (held == kind) return FPD_STATUS_OK;
        enum fpd_status st = fpd_layer_expand_free(layer, err);
        if (st) return st;
    }
    float *e = fpd_layer_get_free_e(layer);
    const bool sym = fpd_free_kind_is_sym(kind);
    const enum fpd_rowwise rk = (enum fpd_rowwise)kind;
    uint8_t *row = fpd_malloc(fpd_free_row_bytes(kind, c));
    if (!row) return fpd__err(err, FPD_STATUS_NOMEM, "out of memory");
    for (int64_t i = 0; i < rows; i++) { /* check every row before changing any */
        if (!(sym ? fpd__free_sym_quantize_row(kind, e + i * c, c, row)
                  : fpd_rowwise_quantize_row(rk, e + i * c, c, row))) {
            fpd_free(row);
            return fpd__err(err, FPD_STATUS_NUMERIC,
                            "free coordinates: row %lld of E cannot be stored as %s (a NaN or Inf, or beyond F16's "
                            "range)",
                            (long long)i, fpd_free_kind_name(kind));
        }
    }
    for (int64_t i = 0; i < rows; i++) {
        if (sym) {
            fpd__free_sym_quantize_row(kind, e + i * c, c, row);
            fpd__free_sym_dequantize_row(kind, row, c, e + i * c);
        } else {
            fpd_rowwise_quantize_row(rk, e + i * c, c, row);
            fpd_rowwise_dequantize_row(rk, row, c, e + i * c);
        }
    }
    fpd_free(row);
    return FPD_STATUS_OK;
}

size_t fpd_free_coords_bytes(int64_t rows, int64_t dim, int64_t c, enum fpd_dtype dtype, bool quantized,
                             enum fpd_free_kind kind) {
    if (c <= 0 || rows < 0 || dim < 0) return 0;
    const size_t es = fpd_dtype_size(dtype);
    size_t e, p;
    if (!(quantized ? fpd__mul_size((size_t)rows, fpd_free_row_bytes(kind, c), &e)
                    : fpd__mul_size((size_t)rows, (size_t)c, &e) && fpd__mul_size(e, es, &e)) ||
        !fpd__mul_size((size_t)c, (size_t)dim, &p) || !fpd__mul_size(p, es, &p) || e + p < e)
        return SIZE_MAX;
    return e + p;
}
