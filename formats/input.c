/*
 * input.c - a checkpoint input that is a safetensors file or one .npy table
 * (fpd_input_*), the check that a tensor is a table that can be compressed, and
 * row-frequency files (fpd_row_freq_load). See formats/fpd-formats.h, section
 * "Inputs".
 */
#include "formats/fpd-formats.h"
#include "lib/fpd-impl.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- inputs */

static void npy_view(struct fpd_input *in, const char *name) {
    snprintf(in->npy_name, sizeof in->npy_name, "%s", name);
    in->npy_tensor = *fpd_npy_tensor(in->npy);
    in->npy_tensor.name = in->npy_name;
}

enum fpd_status fpd_input_open(const char *path, struct fpd_input *in, struct fpd_error *err) {
    memset(in, 0, sizeof *in);
    unsigned char magic[6] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return fpd__err(err, FPD_STATUS_IO, "%s: %s", path, strerror(errno));
    size_t got = fread(magic, 1, sizeof magic, f);
    fclose(f);
    if (got == 6 && memcmp(magic, "\x93NUMPY", 6) == 0) {
        enum fpd_status st = fpd_npy_open(path, &in->npy, err);
        if (st) return st;
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        char stem[256];
        snprintf(stem, sizeof stem, "%s", base);
        char *dot = strrchr(stem, '.');
        if (dot && strcmp(dot, ".npy") == 0) *dot = '\0';
        npy_view(in, stem[0] ? stem : "weight");
        return FPD_STATUS_OK;
    }
    return fpd_safetensors_open(path, &in->st, err);
}

enum fpd_status fpd_input_open_memory(const void *buf, size_t len, const char *name, struct fpd_input *in,
                                      struct fpd_error *err) {
    memset(in, 0, sizeof *in);
    if (len >= 6 && memcmp(buf, "\x93NUMPY", 6) == 0) {
        enum fpd_status st = fpd_npy_open_memory(buf, len, name, &in->npy, err);
        if (st) return st;
        npy_view(in, "weight");
        return FPD_STATUS_OK;
    }
    return fpd_safetensors_open_memory(buf, len, name, &in->st, err);
}

void fpd_input_free(struct fpd_input *in) {
    if (!in) return;
    fpd_safetensors_free(in->st);
    fpd_npy_free(in->npy);
    memset(in, 0, sizeof *in);
}

int64_t fpd_input_count(const struct fpd_input *in) {
    return in->npy ? 1 : in->st ? fpd_safetensors_count(in->st) : 0;
}

const struct fpd_tensor_info *fpd_input_tensor(const struct fpd_input *in, int64_t i) {
    return in->npy ? &in->npy_tensor : fpd_safetensors_tensor(in->st, i);
}

const char *fpd_tensor_info_not_a_table(const struct fpd_tensor_info *t, char *buf, size_t len) {
    if (t->ndim != 2 || !fpd_dtype_is_float(t->dtype)) {
        snprintf(buf, len, "an %s tensor with %d dimension(s); only 2-D float tables (F32, F64, F16, BF16) can be "
                 "compressed", fpd_dtype_name(t->dtype), (int)t->ndim);
        return buf;
    }
    const char *part = t->name ? strstr(t->name, ".fpd.") : NULL;
    if (part) { /* T.fpd.free [N, c], T.fpd.free_proj [c, D]: 2-D floats that belong to FPD table T */
        snprintf(buf, len, "a part of the FPD table '%.*s' (passed through with it)", (int)(part - t->name), t->name);
        return buf;
    }
    if (t->shape[0] < 1 || t->shape[1] < 1) {
        snprintf(buf, len, "an empty %s table (shape %lldx%lld): it has no %s to compress", fpd_dtype_name(t->dtype),
                 (long long)t->shape[0], (long long)t->shape[1], t->shape[0] < 1 ? "rows" : "columns");
        return buf;
    }
    return NULL;
}

/* ---------------------------------------------------------------- row frequencies */

static bool npy_value(enum fpd_dtype t, const unsigned char *p, double *v) {
    switch (t) {
    case FPD_DTYPE_F32: { float x; memcpy(&x, p, 4); *v = x; return true; }
    case FPD_DTYPE_F64: { double x; memcpy(&x, p, 8); *v = x; return true; }
    case FPD_DTYPE_F16: { float x; fpd_dtype_to_f32(t, p, &x, 1); *v = x; return true; }
    case FPD_DTYPE_I8: *v = (int8_t)p[0]; return true;
    case FPD_DTYPE_U8: *v = p[0]; return true;
    case FPD_DTYPE_I16: { int16_t x; memcpy(&x, p, 2); *v = x; return true; }
    case FPD_DTYPE_U16: { uint16_t x; memcpy(&x, p, 2); *v = x; return true; }
    case FPD_DTYPE_I32: { int32_t x; memcpy(&x, p, 4); *v = x; return true; }
    case FPD_DTYPE_U32: { uint32_t x; memcpy(&x, p, 4); *v = x; return true; }
    case FPD_DTYPE_I64: { int64_t x; memcpy(&x, p, 8); *v = (double)x; return true; }
    case FPD_DTYPE_U64: { uint64_t x; memcpy(&x, p, 8); *v = (double)x; return true; }
    default: return false;
    }
}

/* "25x28x29" into buf. */
static const char *dims_str(const int64_t *dims, int32_t n, char *buf, size_t len) {
    size_t off = 0;
    buf[0] = '\0';
    for (int32_t i = 0; i < n && off < len; i++)
        off += (size_t)snprintf(buf + off, len - off, "%s%lld", i ? "x" : "", (long long)dims[i]);
    return buf;
}

enum fpd_status fpd_row_freq_load(const char *path, int64_t rows, double **out, struct fpd_error *err) {
    *out = NULL;
    enum fpd_status st = FPD_STATUS_OK;
    struct fpd_npy *npy = NULL;
    FILE *f = NULL;
    if (rows < 1) return fpd__err(err, FPD_STATUS_INVALID_ARG, "%s: %lld rows: a table has at least one", path,
                                  (long long)rows);
    double *v = fpd_malloc((size_t)rows * sizeof(double));
    if (!v) return fpd__err(err, FPD_STATUS_NOMEM, "%s: out of memory for %lld row frequencies", path, (long long)rows);
    unsigned char magic[6] = {0};
    f = fopen(path, "rb");
    if (!f) {
        st = fpd__err(err, FPD_STATUS_IO, "%s: %s", path, strerror(errno));
        goto done;
    }
    size_t got = fread(magic, 1, 6, f);
    if (got == 6 && memcmp(magic, "\x93NUMPY", 6) == 0) {
        if ((st = fpd_npy_open(path, &npy, err))) goto done;
        const struct fpd_tensor_info *t = fpd_npy_tensor(npy);
        bool shape_ok = (t->ndim == 1 && t->shape[0] == rows) || (t->ndim == 2 && t->shape[0] == rows && t->shape[1] == 1);
        size_t es = fpd_dtype_size(t->dtype);
        double x = 0;
        if (!shape_ok || !npy_value(t->dtype, t->data, &x)) {
            char sh[64];
            st = fpd__err(err, FPD_STATUS_SHAPE, "%s: row frequencies must be a numeric [%lld] array, got %s %s", path,
                          (long long)rows, fpd_dtype_name(t->dtype), dims_str(t->shape, t->ndim, sh, sizeof sh));
            goto done;
        }
        for (int64_t i = 0; i < rows; i++) {
            npy_value(t->dtype, (const unsigned char *)t->data + (size_t)i * es, &v[i]);
            if (!(v[i] >= 0.0) || !isfinite(v[i])) {
                st = fpd__err(err, FPD_STATUS_FORMAT, "%s: row %lld has frequency %g; counts must be finite and >= 0",
                              path, (long long)i, v[i]);
                goto done;
            }
        }
        goto done;
    }
    rewind(f);
    char line[256];
    int64_t count = 0, lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (*p == '\n' || *p == '\r' || *p == '\0' || *p == '#') continue;
        char *end = NULL;
        errno = 0;
        double x = strtod(p, &end);
        while (end && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r')) end++;
        if (errno || end == p || (end && *end) || !(x >= 0.0) || !isfinite(x)) {
            line[strcspn(line, "\r\n")] = '\0';
            st = fpd__err(err, FPD_STATUS_FORMAT, "%s:%lld: '%.40s' is not a non-negative count", path,
                          (long long)lineno, line);
            goto done;
        }
        if (count == rows) {
            st = fpd__err(err, FPD_STATUS_SHAPE, "%s: more than %lld counts (the table has %lld rows)", path,
                          (long long)rows, (long long)rows);
            goto done;
        }
        v[count++] = x;
    }
    if (count != rows)
        st = fpd__err(err, FPD_STATUS_SHAPE, "%s: %lld counts for a table of %lld rows", path, (long long)count,
                      (long long)rows);
done:
    if (f) fclose(f);
    fpd_npy_free(npy);
    if (st) fpd_free(v);
    else *out = v;
    return st;
}
