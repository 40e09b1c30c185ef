/*
 * layer.c - the FPD layer: shapes, cores, row look-ups, reconstruction, error
 * statistics (DESIGN.md section 2).
 *
 * Look-ups, reconstruction and the backward pass run through the engine
 * (lib/engine.c, lib/cpu/engine-cpu.c).
 */
#include "fpd-impl.h"

#include <math.h>
#include <string.h>

struct fpd_layer {
    struct fpd_layer_shape shape;
    float *cores[FPD_MAX_MODES];
    int64_t *row_perm; /* [rows] or NULL */
    int64_t free_c;    /* free coordinates per row (0: none)                 */
    float *free_e;     /* [rows, free_c], original row order, or NULL        */
    float *free_p;     /* [free_c, dim], or NULL                             */
    uint8_t *free_q;   /* E as stored, [rows, row bytes] of kind free_q_kind, or
                          NULL (then E is free_e); never both                 */
    enum fpd_free_kind free_q_kind;
};

/* ------------------------------------------------------------ shapes */

enum fpd_status fpd_layer_shape_check(const struct fpd_layer_shape *s, struct fpd_error *err) {
    if (s->k < 1 || s->k > FPD_MAX_MODES)
        return fpd__err(err, FPD_STATUS_SHAPE, "k = %d cores is outside 1..%d", (int)s->k, FPD_MAX_MODES);
    if (s->rows < 1 || s->dim < 1)
        return fpd__err(err, FPD_STATUS_SHAPE, "table shape [%lld, %lld] must have at least one row and column",
                        (long long)s->rows, (long long)s->dim);
    if (s->terms < 1)
        return fpd__err(err, FPD_STATUS_SHAPE, "terms p = %lld must be >= 1", (long long)s->terms);
    if (s->ranks[0] != 1 || s->ranks[s->k] != 1)
        return fpd__err(err, FPD_STATUS_SHAPE, "end ranks must be 1 (got r_0 = %lld, r_k = %lld)",
                        (long long)s->ranks[0], (long long)s->ranks[s->k]);
    int64_t np = 1, dp = 1, params = 0;
    for (int32_t m = 0; m < s->k; m++) {
        if (s->row_shape[m] < 1 || s->col_shape[m] < 1 || s->ranks[m + 1] < 1)
            return fpd__err(err, FPD_STATUS_SHAPE, "mode %d: row size %lld, column size %lld, rank %lld must be >= 1",
                            (int)m, (long long)s->row_shape[m], (long long)s->col_shape[m],
                            (long long)s->ranks[m + 1]);
        if (!fpd__mul_i64(np, s->row_shape[m], &np) || !fpd__mul_i64(dp, s->col_shape[m], &dp))
            return fpd__err(err, FPD_STATUS_SHAPE, "product of the mode sizes overflows");
        int64_t c = s->terms;
        if (!fpd__mul_i64(c, s->row_shape[m], &c) || !fpd__mul_i64(c, s->ranks[m], &c) ||
            !fpd__mul_i64(c, s->col_shape[m], &c) || !fpd__mul_i64(c, s->ranks[m + 1], &c) ||
            __builtin_add_overflow(params, c, &params) || c > (int64_t)(SIZE_MAX / 8))
            return fpd__err(err, FPD_STATUS_SHAPE, "core %d is too large (parameter count overflows)", (int)m);
    }
    if (np < s->rows)
        return fpd__err(err, FPD_STATUS_SHAPE, "row shape product %lld < %lld rows", (long long)np,
                        (long long)s->rows);
    if (dp != s->dim)
        return fpd__err(err, FPD_STATUS_SHAPE, "column shape product %lld != dim %lld", (long long)dp,
                        (long long)s->dim);
    return FPD_STATUS_OK;
}

void fpd_layer_shape_set_rank(struct fpd_layer_shape *s, int64_t r) {
    s->ranks[0] = 1;
    s->ranks[s->k] = 1;
    for (int32_t m = 1; m < s->k; m++) {
        /* rank of unfolding m is at most min(rows, cols) of that unfolding */
        double left = 1.0, right = 1.0;
        for (int32_t l = 0; l < m; l++) left *= (double)s->row_shape[l] * (double)s->col_shape[l];
        for (int32_t l = m; l < s->k; l++) right *= (double)s->row_shape[l] * (double)s->col_shape[l];
        double cap = left < right ? left : right;
        s->ranks[m] = (double)r < cap ? r : (int64_t)cap;
    }
}

int64_t fpd_layer_shape_core_numel(const struct fpd_layer_shape *s, int32_t m) {
    return s->terms * s->row_shape[m] * s->ranks[m] * s->col_shape[m] * s->ranks[m + 1];
}

int64_t fpd_layer_shape_params(const struct fpd_layer_shape *s) {
    int64_t total = 0;
    for (int32_t m = 0; m < s->k; m++) total += fpd_layer_shape_core_numel(s, m);
    return total;
}

/* ------------------------------------------------------------ lifetime */

enum fpd_status fpd_layer_init(const struct fpd_layer_shape *shape, struct fpd_layer **out, struct fpd_error *err) {
    *out = NULL;
    enum fpd_status st = fpd_layer_shape_check(shape, err);
    if (st) return st;
    struct fpd_layer *l = fpd_calloc(1, sizeof *l);
    if (!l) return fpd__err(err, FPD_STATUS_NOMEM, "out of memory for an FPD layer");
    l->shape = *shape;
    for (int32_t m = 0; m < shape->k; m++) {
        l->cores[m] = fpd_calloc((size_t)fpd_layer_shape_core_numel(shape, m), sizeof(float));
        if (!l->cores[m]) {
            fpd_layer_free(l);
            return fpd__err(err, FPD_STATUS_NOMEM, "out of memory for core %d (%lld floats)", (int)m,
                            (long long)fpd_layer_shape_core_numel(shape, m));
        }
    }
    *out = l;
    return FPD_STATUS_OK;
}

void fpd_layer_free(struct fpd_layer *layer) {
    if (!layer) return;
    for (int32_t m = 0; m < FPD_MAX_MODES; m++) fpd_free(layer->cores[m]);
    fpd_free(layer->row_perm);
    fpd_free(layer->free_e);
    fpd_free(layer->free_p);
    fpd_free(layer->free_q);
    fpd_free(layer);
}

const struct fpd_layer_shape *fpd_layer_get_shape(const struct fpd_layer *layer) { return &layer->shape; }

float *fpd_layer_core(struct fpd_layer *layer, int32_t m) {
    FPD_ASSERT(m >= 0 && m < layer->shape.k);
    return layer->cores[m];
}

const float *fpd_layer_core_const(const struct fpd_layer *layer, int32_t m) {
    FPD_ASSERT(m >= 0 && m < layer->shape.k);
    return layer->cores[m];
}

enum fpd_status fpd_layer_clone(const struct fpd_layer *layer, struct fpd_layer **out, struct fpd_error *err) {
    enum fpd_status st = fpd_layer_init(&layer->shape, out, err);
    if (st) return st;
    for (int32_t m = 0; m < layer->shape.k; m++)
        memcpy((*out)->cores[m], layer->cores[m],
               (size_t)fpd_layer_shape_core_numel(&layer->shape, m) * sizeof(float));
    if (layer->row_perm) st = fpd_layer_set_row_perm(*out, layer->row_perm, err);
    if (!st && layer->free_c > 0)
        st = layer->free_q ? fpd_layer_set_free_stored(*out, layer->free_c, layer->free_q_kind, layer->free_q,
                                                       layer->free_p, err)
                           : fpd_layer_set_free_coords(*out, layer->free_c, layer->free_e, layer->free_p, err);
    if (st) {
        fpd_layer_free(*out);
        *out = NULL;
    }
    return st;
}

enum fpd_status fpd__row_perm_copy(const int64_t *perm, int64_t rows, int64_t padded, const char *what,
                                   int64_t **out, struct fpd_error *err) {
    enum fpd_status st = FPD_STATUS_OK;
    uint8_t *seen = fpd_calloc((size_t)padded, 1);
    int64_t *copy = fpd_malloc((size_t)rows * sizeof *copy);
    *out = NULL;
    if (!seen || !copy) {
        st = fpd__err(err, FPD_STATUS_NOMEM, "out of memory for a row permutation of %lld rows", (long long)rows);
        goto done;
    }
    for (int64_t i = 0; i < rows; i++) {
        if (perm[i] < 0 || perm[i] >= padded) {
            st = fpd__err(err, FPD_STATUS_INVALID_ARG, "%s[%lld] = %lld is outside [0, %lld)", what, (long long)i,
                          (long long)perm[i], (long long)padded);
            goto done;
        }
        if (seen[perm[i]]) {
            st = fpd__err(err, FPD_STATUS_INVALID_ARG, "%s[%lld] = %lld repeats an earlier value", what,
                          (long long)i, (long long)perm[i]);
            goto done;
        }
        seen[perm[i]] = 1;
        copy[i] = perm[i];
    }
    *out = copy;
    copy = NULL;
done:
    fpd_free(seen);
    fpd_free(copy);
    return st;
}

enum fpd_status fpd_layer_set_row_perm(struct fpd_layer *layer, const int64_t *perm, struct fpd_error *err) {
    if (!perm) {
        fpd_free(layer->row_perm);
        layer->row_perm = NULL;
        return FPD_STATUS_OK;
    }
    int64_t padded = 1, *copy;
    for (int32_t m = 0; m < layer->shape.k; m++) padded *= layer->shape.row_shape[m];
    enum fpd_status st = fpd__row_perm_copy(perm, layer->shape.rows, padded, "row_perm", &copy, err);
    if (st) return st;
    fpd_free(layer->row_perm);
    layer->row_perm = copy;
    return FPD_STATUS_OK;
}

const int64_t *fpd_layer_row_perm(const struct fpd_layer *layer) { return layer->row_perm; }

/* A layer of `rows` rows with layer's cores (shape otherwise the same), a copy of
 * perm (NULL: none) and, when layer has free coordinates, E' [rows, c] with E'[dst[i]]
 * = E[src[i]] for i < n (zeros elsewhere) and the same P. */
static enum fpd_status remap_rows(const struct fpd_layer *layer, int64_t rows, const int64_t *perm,
                                  const int64_t *src, const int64_t *dst, int64_t n, struct fpd_layer **out,
                                  struct fpd_error *err) {
    struct fpd_layer_shape s = layer->shape;
    s.rows = rows;
    struct fpd_layer *nl = NULL;
    float *e2 = NULL;
    enum fpd_status st = fpd_layer_init(&s, &nl, err);
    if (st) return st;
    for (int32_t m = 0; m < s.k; m++)
        memcpy(nl->cores[m], layer->cores[m], (size_t)fpd_layer_shape_core_numel(&s, m) * sizeof(float));
    if (perm && (st = fpd_layer_set_row_perm(nl, perm, err))) goto done;
    if (layer->free_c > 0 && layer->free_q) { /* E as stored: its rows' bytes move, a zero row's bytes elsewhere */
        const int64_t c = layer->free_c;
        const size_t rb = fpd_free_row_bytes(layer->free_q_kind, c);
        uint8_t *q2 = fpd_malloc(rows > 0 ? (size_t)rows * rb : 1), *zero = fpd_malloc(rb);
        float *z = fpd_calloc((size_t)c, sizeof(float));
        if (!q2 || !zero || !z) {
            fpd_free(q2);
            fpd_free(zero);
            fpd_free(z);
            st = fpd__err(err, FPD_STATUS_NOMEM, "out of memory for %lld stored rows of free coordinates",
                          (long long)rows);
            goto done;
        }
        fpd_free_quantize_rows(layer->free_q_kind, z, 1, c, zero);
        for (int64_t i = 0; i < rows; i++) memcpy(q2 + (size_t)i * rb, zero, rb);
        for (int64_t i = 0; i < n; i++) memcpy(q2 + (size_t)dst[i] * rb, layer->free_q + (size_t)src[i] * rb, rb);
        st = fpd_layer_set_free_stored(nl, c, layer->free_q_kind, q2, layer->free_p, err);
        fpd_free(q2);
        fpd_free(zero);
        fpd_free(z);
        if (st) goto done;
    } else if (layer->free_c > 0) {
        const int64_t c = layer->free_c;
        if (!(e2 = fpd_calloc((size_t)(rows > 0 ? rows * c : 1), sizeof(float)))) {
            st = fpd__err(err, FPD_STATUS_NOMEM, "out of memory for %lld x %lld free coordinates", (long long)rows,
                          (long long)c);
            goto done;
        }
        for (int64_t i = 0; i < n; i++) memcpy(e2 + dst[i] * c, layer->free_e + src[i] * c, (size_t)c * sizeof(float));
        if ((st = fpd_layer_set_free_coords(nl, c, e2, layer->free_p, err))) goto done;
    }
    *out = nl;
    nl = NULL;
done:
    fpd_free(e2);
    fpd_layer_free(nl);
    return st;
}

enum fpd_status fpd_layer_fold_row_perm(const struct fpd_layer *layer, struct fpd_layer **out, struct fpd_error *err) {
    FPD_ASSERT(layer && out);
    *out = NULL;
    const int64_t *perm = layer->row_perm;
    if (!perm) return fpd__err(err, FPD_STATUS_INVALID_ARG, "the layer has no row permutation to fold");
    int64_t rows = 0, *ids = fpd_malloc((size_t)(layer->shape.rows > 0 ? layer->shape.rows : 1) * sizeof *ids);
    if (!ids) return fpd__err(err, FPD_STATUS_NOMEM, "out of memory");
    for (int64_t i = 0; i < layer->shape.rows; i++) {
        ids[i] = i;
        if (perm[i] + 1 > rows) rows = perm[i] + 1;
    }
    enum fpd_status st = remap_rows(layer, rows, NULL, ids, perm, layer->shape.rows, out, err);
    fpd_free(ids);
    return st;
}

enum fpd_status fpd_layer_select_rows(const struct fpd_layer *layer, const int64_t *rows, int64_t n,
                                      struct fpd_layer **out, struct fpd_error *err) {
    FPD_ASSERT(layer && out && (rows || n == 0));
    *out = NULL;
    if (n < 1) return fpd__err(err, FPD_STATUS_INVALID_ARG, "select_rows: n = %lld rows; at least 1", (long long)n);
    int64_t *perm = fpd_malloc((size_t)n * sizeof *perm), *dst = fpd_malloc((size_t)n * sizeof *dst);
    enum fpd_status st = FPD_STATUS_OK;
    if (!perm || !dst) {
        st = fpd__err(err, FPD_STATUS_NOMEM, "out of memory");
        goto done;
    }
    for (int64_t i = 0; i < n; i++) {
        if (rows[i] < 0 || rows[i] >= layer->shape.rows) {
            st = fpd__err(err, FPD_STATUS_INVALID_ARG, "select_rows: rows[%lld] = %lld is outside [0, %lld)",
                          (long long)i, (long long)rows[i], (long long)layer->shape.rows);
            goto done;
        }
        perm[i] = layer->row_perm ? layer->row_perm[rows[i]] : rows[i];
        dst[i] = i;
    }
    /* distinct rows: fpd_layer_set_row_perm refuses a repeat, named by its position */
    st = remap_rows(layer, n, perm, rows, dst, n, out, err);
    if (st == FPD_STATUS_INVALID_ARG && err && strstr(err->msg, "repeats"))
        st = fpd__err(err, FPD_STATUS_INVALID_ARG, "select_rows: rows must be distinct (%s)", err->msg);
done:
    fpd_free(perm);
    fpd_free(dst);
    return st;
}

/* ------------------------------------------------------------ free coordinates */

/* The layer's free coordinates become c, E (F32 e, or stored rows q of kind), P p
 * (all owned now); the old ones are freed. */
static void replace_free(struct fpd_layer *layer, int64_t c, float *e, float *p, uint8_t *q, enum fpd_free_kind kind) {
    fpd_free(layer->free_e);
    fpd_free(layer->free_p);
    fpd_free(layer->free_q);
    layer->free_c = c;
    layer->free_e = e;
    layer->free_p = p;
    layer->free_q = q;
    layer->free_q_kind = kind;
}

enum fpd_status fpd_layer_set_free_coords(struct fpd_layer *layer, int64_t c, const float *e, const float *p,
                                          struct fpd_error *err) {
    const int64_t rows = layer->shape.rows, dim = layer->shape.dim;
    if (c < 0 || c > dim)
        return fpd__err(err, FPD_STATUS_INVALID_ARG,
                        "free coordinates c = %lld is outside [0, %lld] (at most the dimension: E P has rank <= D)",
                        (long long)c, (long long)dim);
    float *ne = NULL, *np = NULL;
    if (c > 0) {
        ne = fpd_calloc((size_t)(rows * c), sizeof(float));
        np = fpd_calloc((size_t)(c * dim), sizeof(float));
        if (!ne || !np) {
            fpd_free(ne);
            fpd_free(np);
            return fpd__err(err, FPD_STATUS_NOMEM, "out of memory for %lld free coordinates of %lld rows",
                            (long long)c, (long long)rows);
        }
        for (int64_t q = 0; e && q < rows * c; q++)
            if (!isfinite(e[q])) {
                fpd_free(ne);
                fpd_free(np);
                return fpd__err(err, FPD_STATUS_INVALID_ARG, "free coordinates: E[%lld, %lld] is %g, not finite",
                                (long long)(q / c), (long long)(q % c), (double)e[q]);
            }
        for (int64_t q = 0; p && q < c * dim; q++)
            if (!isfinite(p[q])) {
                fpd_free(ne);
                fpd_free(np);
                return fpd__err(err, FPD_STATUS_INVALID_ARG, "free coordinates: P[%lld, %lld] is %g, not finite",
                                (long long)(q / dim), (long long)(q % dim), (double)p[q]);
            }
        if (e) memcpy(ne, e, (size_t)(rows * c) * sizeof(float));
        if (p) memcpy(np, p, (size_t)(c * dim) * sizeof(float));
    }
    replace_free(layer, c, ne, np, NULL, FPD_FREE_INT8);
    return FPD_STATUS_OK;
}

/* ------------------------------------------------------------ E as stored */

enum fpd_status fpd_layer_set_free_stored(struct fpd_layer *layer, int64_t c, enum fpd_free_kind kind,
                                          const uint8_t *rows_q, const float *p, struct fpd_error *err) {
    FPD_ASSERT(layer);
    const int64_t rows = layer->shape.rows, dim = layer->shape.dim;
    if ((unsigned)kind >= FPD_FREE_KIND_COUNT)
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "free coordinates as stored: kind %d is out of range", (int)kind);
    if (c < 1 || c > dim)
        return fpd__err(err, FPD_STATUS_INVALID_ARG,
                        "free coordinates as stored: c = %lld must be in [1, dim = %lld]", (long long)c,
                        (long long)dim);
    if (!rows_q) return fpd__err(err, FPD_STATUS_INVALID_ARG, "free coordinates as stored: the rows are NULL");
    const size_t rb = fpd_free_row_bytes(kind, c);
    uint8_t *nq = fpd_malloc((size_t)rows * rb);
    float *np = fpd_calloc((size_t)(c * dim), sizeof(float));
    enum fpd_status st = FPD_STATUS_OK;
    if (!nq || !np) {
        st = fpd__err(err, FPD_STATUS_NOMEM, "out of memory for %lld stored rows of free coordinates (%s)",
                      (long long)rows, fpd_free_kind_name(kind));
        goto fail;
    }
    for (int64_t i = 0; i < rows; i++) { /* every row decodes to finite values (the reader's checks; a
                                            symmetric row's codes times a finite F16 scale are finite) */
        const uint8_t *q = rows_q + (size_t)i * rb;
        if (!(fpd_free_kind_is_sym(kind) ? fpd__free_sym_dequantize_row(kind, q, c, NULL)
                                         : fpd_rowwise_row_finite((enum fpd_rowwise)kind, q, c))) {
            st = fpd__err(err, FPD_STATUS_INVALID_ARG,
                          "free coordinates as stored: row %lld (%s) has a scale or bias that is negative (the "
                          "symmetric kinds), NaN or Inf, or decodes beyond F32's range",
                          (long long)i, fpd_free_kind_name(kind));
            goto fail;
        }
    }
    for (int64_t q = 0; p && q < c * dim; q++)
        if (!isfinite(p[q])) {
            st = fpd__err(err, FPD_STATUS_INVALID_ARG, "free coordinates: P[%lld, %lld] is %g, not finite",
                          (long long)(q / dim), (long long)(q % dim), (double)p[q]);
            goto fail;
        }
    memcpy(nq, rows_q, (size_t)rows * rb);
    if (p) memcpy(np, p, (size_t)(c * dim) * sizeof(float));
    replace_free(layer, c, NULL, np, nq, kind);
    return FPD_STATUS_OK;
fail:
    fpd_free(nq);
    fpd_free(np);
    return st;
}

const uint8_t *fpd_layer_get_free_stored(const struct fpd_layer *layer, enum fpd_free_kind *kind) {
    if (layer->free_q && kind) *kind = layer->free_q_kind;
    return layer->free_q;
}

void fpd_layer_free_row(const struct fpd_layer *layer, int64_t i, float *out) {
    FPD_ASSERT(i >= 0 && i < layer->shape.rows && layer->free_c > 0);
    const int64_t c = layer->free_c;
    if (!layer->free_q) {
        memcpy(out, layer->free_e + i * c, (size_t)c * sizeof(float));
        return;
    }
    /* the checkpoint reader's decoding (rows checked when they were set) */
    const uint8_t *q = layer->free_q + (size_t)i * fpd_free_row_bytes(layer->free_q_kind, c);
    if (fpd_free_kind_is_sym(layer->free_q_kind)) fpd__free_sym_dequantize_row(layer->free_q_kind, q, c, out);
    else fpd_rowwise_dequantize_row((enum fpd_rowwise)layer->free_q_kind, q, c, out);
}

enum fpd_status fpd_layer_store_free(struct fpd_layer *layer, enum fpd_free_kind kind, struct fpd_error *err) {
    FPD_ASSERT(layer);
    if ((unsigned)kind >= FPD_FREE_KIND_COUNT)
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "free coordinates: quantized kind %d is out of range", (int)kind);
    const int64_t c = layer->free_c, rows = layer->shape.rows;
    if (c == 0) return fpd__err(err, FPD_STATUS_INVALID_ARG, "the layer has no free coordinates to store");
    if (layer->free_q) {
        if (layer->free_q_kind == kind) return FPD_STATUS_OK;
        enum fpd_status st = fpd_layer_expand_free(layer, err);
        if (st) return st;
    }
    const size_t rb = fpd_free_row_bytes(kind, c);
    uint8_t *nq = fpd_malloc((size_t)rows * rb);
    if (!nq) return fpd__err(err, FPD_STATUS_NOMEM, "out of memory for %lld stored rows of free coordinates",
                             (long long)rows);
    const int64_t bad = fpd_free_quantize_rows(kind, layer->free_e, rows, c, nq);
    if (bad >= 0) {
        fpd_free(nq);
        return fpd__err(err, FPD_STATUS_NUMERIC,
                        "free coordinates: row %lld of E cannot be stored as %s (a NaN or Inf, or beyond F16's "
                        "range)",
                        (long long)bad, fpd_free_kind_name(kind));
    }
    fpd_free(layer->free_e);
    layer->free_e = NULL;
    layer->free_q = nq;
    layer->free_q_kind = kind;
    return FPD_STATUS_OK;
}

enum fpd_status fpd_layer_expand_free(struct fpd_layer *layer, struct fpd_error *err) {
    FPD_ASSERT(layer);
    if (!layer->free_q) return FPD_STATUS_OK;
    const int64_t c = layer->free_c, rows = layer->shape.rows;
    float *ne = fpd_malloc((size_t)(rows * c) * sizeof(float));
    if (!ne) return fpd__err(err, FPD_STATUS_NOMEM, "out of memory for %lld x %lld free coordinates (F32)",
                             (long long)rows, (long long)c);
    for (int64_t i = 0; i < rows; i++) fpd_layer_free_row(layer, i, ne + i * c);
    fpd_free(layer->free_q);
    layer->free_q = NULL;
    layer->free_e = ne;
    return FPD_STATUS_OK;
}

size_t fpd_layer_free_memory_bytes(const struct fpd_layer *layer) {
    const int64_t c = layer->free_c, rows = layer->shape.rows, dim = layer->shape.dim;
    if (c == 0) return 0;
    const size_t e = layer->free_q ? (size_t)rows * fpd_free_row_bytes(layer->free_q_kind, c)
                                   : (size_t)(rows * c) * sizeof(float);
    return e + (size_t)(c * dim) * sizeof(float);
}

int64_t fpd_layer_get_free_coords(const struct fpd_layer *layer) { return layer->free_c; }
float *fpd_layer_get_free_e(struct fpd_layer *layer) { return layer->free_e; }
const float *fpd_layer_get_free_e_const(const struct fpd_layer *layer) { return layer->free_e; }
float *fpd_layer_get_free_p(struct fpd_layer *layer) { return layer->free_p; }
const float *fpd_layer_get_free_p_const(const struct fpd_layer *layer) { return layer->free_p; }

int64_t fpd_layer_param_count(const struct fpd_layer *layer) {
    return fpd_layer_shape_params(&layer->shape) + layer->free_c * (layer->shape.rows + layer->shape.dim);
}

/* ------------------------------------------------------------ error */

enum fpd_status fpd_layer_error(const struct fpd_layer *layer, const struct fpd_table_view *w,
                                struct fpd_error_stats *out, struct fpd_error *err) {
    const struct fpd_layer_shape *s = &layer->shape;
    if (w->rows != s->rows || w->dim != s->dim)
        return fpd__err(err, FPD_STATUS_SHAPE, "table [%lld, %lld] does not match the layer's [%lld, %lld]",
                        (long long)w->rows, (long long)w->dim, (long long)s->rows, (long long)s->dim);
    const int64_t block = 1024;
    enum fpd_status st = FPD_STATUS_OK;
    float *a = fpd_malloc((size_t)(block * s->dim) * sizeof(float));
    float *b = fpd_malloc((size_t)(block * s->dim) * sizeof(float));
    double se = 0.0, sn = 0.0, cs = 0.0, cmin = 1.0;
    struct fpd__reconstructor rc = {0};
    if (!a || !b) {
        st = fpd__err(err, FPD_STATUS_NOMEM, "out of memory for the error workspace");
        goto done;
    }
    for (int64_t r0 = 0; r0 < s->rows; r0 += block) {
        int64_t r1 = r0 + block < s->rows ? r0 + block : s->rows;
        if ((st = fpd_table_view_rows(w, r0, r1, a, err))) goto done;
        if ((st = fpd__reconstruct_rows(&rc, layer, r0, r1, b, err))) goto done;
        for (int64_t i = 0; i < r1 - r0; i++) {
            double dot = 0.0, na = 0.0, nb = 0.0, e = 0.0;
            const float *x = a + i * s->dim, *y = b + i * s->dim;
            for (int64_t j = 0; j < s->dim; j++) {
                double d = (double)x[j] - (double)y[j];
                e += d * d;
                dot += (double)x[j] * y[j];
                na += (double)x[j] * x[j];
                nb += (double)y[j] * y[j];
            }
            se += e;
            sn += na;
            double c = (na == 0.0 && nb == 0.0) ? 1.0 : (na == 0.0 || nb == 0.0) ? 0.0 : dot / sqrt(na * nb);
            cs += c;
            if (c < cmin) cmin = c;
        }
    }
    out->sq_error = se;
    out->sq_norm = sn;
    out->rel_error = sn > 0.0 ? sqrt(se / sn) : (se > 0.0 ? INFINITY : 0.0);
    out->cos_mean = cs / (double)s->rows;
    out->cos_min = cmin;
done:
    fpd__reconstructor_free(&rc);
    fpd_free(a);
    fpd_free(b);
    return st;
}
