/*
 * dtype.c - safetensors dtype names and sizes; F16/BF16/F64 <-> F32 conversion.
 * Conversions are written by bit manipulation (IEEE 754-2008 binary16 and the
 * bfloat16 truncation of binary32), round to nearest even, so they do not depend
 * on compiler support for _Float16.
 */
#include "fpd-impl.h"

#include <string.h>

static const struct {
    const char *name;
    size_t size;
} g_dtypes[FPD_DTYPE_COUNT] = {
    [FPD_DTYPE_F32] = {"F32", 4},       [FPD_DTYPE_F64] = {"F64", 8},
    [FPD_DTYPE_F16] = {"F16", 2},       [FPD_DTYPE_BF16] = {"BF16", 2},
    [FPD_DTYPE_I8] = {"I8", 1},         [FPD_DTYPE_I16] = {"I16", 2},
    [FPD_DTYPE_I32] = {"I32", 4},       [FPD_DTYPE_I64] = {"I64", 8},
    [FPD_DTYPE_U8] = {"U8", 1},         [FPD_DTYPE_U16] = {"U16", 2},
    [FPD_DTYPE_U32] = {"U32", 4},       [FPD_DTYPE_U64] = {"U64", 8},
    [FPD_DTYPE_BOOL] = {"BOOL", 1},     [FPD_DTYPE_F8_E4M3] = {"F8_E4M3", 1},
    [FPD_DTYPE_F8_E5M2] = {"F8_E5M2", 1}, [FPD_DTYPE_F8_E8M0] = {"F8_E8M0", 1},
    [FPD_DTYPE_C64] = {"C64", 8},
};

const char *fpd_dtype_name(enum fpd_dtype t) {
    return (unsigned)t < FPD_DTYPE_COUNT ? g_dtypes[t].name : "?";
}

size_t fpd_dtype_size(enum fpd_dtype t) {
    return (unsigned)t < FPD_DTYPE_COUNT ? g_dtypes[t].size : 0;
}

bool fpd_dtype_from_name(const char *name, size_t len, enum fpd_dtype *out) {
    for (int i = 0; i < FPD_DTYPE_COUNT; i++) {
        if (strlen(g_dtypes[i].name) == len && memcmp(g_dtypes[i].name, name, len) == 0) {
            *out = (enum fpd_dtype)i;
            return true;
        }
    }
    return false;
}

bool fpd_dtype_is_float(enum fpd_dtype t) {
    return t == FPD_DTYPE_F32 || t == FPD_DTYPE_F64 || t == FPD_DTYPE_F16 || t == FPD_DTYPE_BF16;
}

static float f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0x1f) return f32_from_bits(sign | 0x7f800000u | (man << 13)); /* inf, nan */
    if (exp == 0) {
        if (man == 0) return f32_from_bits(sign);
        /* subnormal: man * 2^-24 */
        float v = (float)man * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return f32_from_bits(sign | ((exp + 112u) << 23) | (man << 13));
}

static uint16_t f32_to_f16(float f) {
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t exp = (u >> 23) & 0xffu, man = u & 0x7fffffu;
    if (exp == 0xff) return (uint16_t)(sign | 0x7c00u | (man ? 0x200u : 0u)); /* inf, nan */
    int32_t e = (int32_t)exp - 127 + 15;
    if (e >= 0x1f) return (uint16_t)(sign | 0x7c00u); /* overflow to inf */
    if (e <= 0) {
        if (e < -10) return sign; /* underflow to zero */
        man |= 0x800000u;
        uint32_t shift = (uint32_t)(14 - e);
        uint32_t half = 1u << (shift - 1);
        uint32_t rest = man & ((1u << shift) - 1u);
        uint32_t m = man >> shift;
        if (rest > half || (rest == half && (m & 1u))) m++;
        return (uint16_t)(sign | m);
    }
    uint32_t m = man >> 13, rest = man & 0x1fffu;
    uint32_t h = ((uint32_t)e << 10) | m;
    if (rest > 0x1000u || (rest == 0x1000u && (m & 1u))) h++; /* may carry into exp: fine */
    return (uint16_t)(sign | h);
}

static uint16_t f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* quiet nan */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

enum fpd_status fpd_dtype_to_f32(enum fpd_dtype t, const void *src, float *dst, int64_t n) {
    const unsigned char *s = src;
    switch (t) {
    case FPD_DTYPE_F32:
        memcpy(dst, s, (size_t)n * 4);
        return FPD_STATUS_OK;
    case FPD_DTYPE_F64:
        for (int64_t i = 0; i < n; i++) {
            double v;
            memcpy(&v, s + 8 * i, 8);
            dst[i] = (float)v;
        }
        return FPD_STATUS_OK;
    case FPD_DTYPE_F16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = f16_to_f32(h);
        }
        return FPD_STATUS_OK;
    case FPD_DTYPE_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = f32_from_bits((uint32_t)h << 16);
        }
        return FPD_STATUS_OK;
    default:
        return FPD_STATUS_DTYPE;
    }
}

enum fpd_status fpd_dtype_from_f32(enum fpd_dtype t, const float *src, void *dst, int64_t n) {
    unsigned char *d = dst;
    switch (t) {
    case FPD_DTYPE_F32:
        memcpy(d, src, (size_t)n * 4);
        return FPD_STATUS_OK;
    case FPD_DTYPE_F16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = f32_to_f16(src[i]);
            memcpy(d + 2 * i, &h, 2);
        }
        return FPD_STATUS_OK;
    case FPD_DTYPE_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = f32_to_bf16(src[i]);
            memcpy(d + 2 * i, &h, 2);
        }
        return FPD_STATUS_OK;
    default:
        return FPD_STATUS_DTYPE;
    }
}

enum fpd_status fpd_table_view_rows(const struct fpd_table_view *v, int64_t row_begin, int64_t row_end,
                                    float *dst, struct fpd_error *err) {
    if (row_begin < 0 || row_end < row_begin || row_end > v->rows)
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "rows [%lld, %lld) outside a table of %lld rows",
                        (long long)row_begin, (long long)row_end, (long long)v->rows);
    if (!fpd_dtype_is_float(v->dtype))
        return fpd__err(err, FPD_STATUS_DTYPE, "table dtype %s is not a float dtype", fpd_dtype_name(v->dtype));
    size_t es = fpd_dtype_size(v->dtype);
    const unsigned char *p = (const unsigned char *)v->data + (size_t)row_begin * (size_t)v->dim * es;
    return fpd_dtype_to_f32(v->dtype, p, dst, (row_end - row_begin) * v->dim);
}
