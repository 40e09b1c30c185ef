/*
 * layer.c - the FPD layer: shapes, cores, row look-ups, reconstruction, error
 * statistics and the backward pass (DESIGN.md section 2).
 *
 * Row evaluation. For term t and row digits (i_0..i_{k-1}), the partial product
 * after cores 0..m is a matrix P_m of shape [D_m, r_{m+1}] with D_m = d_0 * .. * d_m
 * (column digits j_0..j_m, first most significant):
 *     P_0 = G_0[t, i_0]                       viewed [d_0, r_1]
 *     P_m = P_{m-1} [D_{m-1}, r_m] @ G_m[t, i_m] viewed [r_m, d_m r_{m+1}]
 * and reading the product [D_{m-1}, d_m r_{m+1}] as [D_m, r_{m+1}] is exactly the C
 * order of the column index. P_{k-1} is [D, 1], the row. Rows that share leading
 * digits share P_0..P_{m}: the evaluator keeps them for the previous row and
 * recomputes only from the first digit that changed.
 */
#include "fpd-impl.h"
#include "cpu/kernels-cpu.h"

#include <math.h>
#include <string.h>

struct fpd_layer {
    struct fpd_layer_shape shape;
    float *cores[FPD_MAX_MODES];
    int64_t *row_perm; /* [rows] or NULL */
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
    if (layer->row_perm) {
        st = fpd_layer_set_row_perm(*out, layer->row_perm, err);
        if (st) {
            fpd_layer_free(*out);
            *out = NULL;
        }
    }
    return st;
}

enum fpd_status fpd_layer_set_row_perm(struct fpd_layer *layer, const int64_t *perm, struct fpd_error *err) {
    enum fpd_status st = FPD_STATUS_OK;
    uint8_t *seen = NULL;
    int64_t *copy = NULL;
    if (!perm) {
        fpd_free(layer->row_perm);
        layer->row_perm = NULL;
        return FPD_STATUS_OK;
    }
    int64_t padded = 1;
    for (int32_t m = 0; m < layer->shape.k; m++) padded *= layer->shape.row_shape[m];
    seen = fpd_calloc((size_t)padded, 1);
    copy = fpd_malloc((size_t)layer->shape.rows * sizeof *copy);
    if (!seen || !copy) {
        st = fpd__err(err, FPD_STATUS_NOMEM, "out of memory for a row permutation of %lld rows",
                      (long long)layer->shape.rows);
        goto done;
    }
    for (int64_t i = 0; i < layer->shape.rows; i++) {
        if (perm[i] < 0 || perm[i] >= padded) {
            st = fpd__err(err, FPD_STATUS_INVALID_ARG, "row_perm[%lld] = %lld is outside [0, %lld)", (long long)i,
                          (long long)perm[i], (long long)padded);
            goto done;
        }
        if (seen[perm[i]]) {
            st = fpd__err(err, FPD_STATUS_INVALID_ARG, "row_perm[%lld] = %lld repeats an earlier value",
                          (long long)i, (long long)perm[i]);
            goto done;
        }
        seen[perm[i]] = 1;
        copy[i] = perm[i];
    }
    fpd_free(layer->row_perm);
    layer->row_perm = copy;
    copy = NULL;
done:
    fpd_free(seen);
    fpd_free(copy);
    return st;
}

const int64_t *fpd_layer_row_perm(const struct fpd_layer *layer) { return layer->row_perm; }

/* ------------------------------------------------------------ evaluation */

/* Prefix-sharing row evaluator (see the file comment). */
struct evaluator {
    const struct fpd_layer *layer;
    int64_t dprod[FPD_MAX_MODES];          /* D_m = d_0 * .. * d_m                   */
    float *partial[FPD_MAX_MODES];         /* [p] blocks of D_m * r_{m+1} for m < k-1 */
    int64_t part_stride[FPD_MAX_MODES];    /* floats per term block                  */
    int64_t digits[FPD_MAX_MODES];         /* digits of the cached prefix            */
    int32_t valid;                         /* partials 0..valid-1 are cached         */
    float *buf;
};

static enum fpd_status evaluator_init(struct evaluator *ev, const struct fpd_layer *layer, struct fpd_error *err) {
    memset(ev, 0, sizeof *ev);
    ev->layer = layer;
    const struct fpd_layer_shape *s = &layer->shape;
    int64_t total = 0, dp = 1;
    for (int32_t m = 0; m < s->k; m++) {
        dp *= s->col_shape[m];
        ev->dprod[m] = dp;
        ev->part_stride[m] = dp * s->ranks[m + 1];
        if (m < s->k - 1) total += s->terms * ev->part_stride[m];
    }
    if (total > 0) {
        ev->buf = fpd_malloc((size_t)total * sizeof(float));
        if (!ev->buf) return fpd__err(err, FPD_STATUS_NOMEM, "out of memory for look-up workspace");
    }
    float *p = ev->buf;
    for (int32_t m = 0; m < s->k - 1; m++) {
        ev->partial[m] = p;
        p += s->terms * ev->part_stride[m];
    }
    return FPD_STATUS_OK;
}

static void evaluator_free(struct evaluator *ev) { fpd_free(ev->buf); }

static inline void row_digits(const struct fpd_layer_shape *s, int64_t row, int64_t *digits) {
    for (int32_t m = s->k - 1; m >= 0; m--) {
        digits[m] = row % s->row_shape[m];
        row /= s->row_shape[m];
    }
}

/* Pointer to G_m[t, i] viewed [r_m, d_m * r_{m+1}]. */
static inline const float *core_slice(const struct fpd_layer *l, int32_t m, int64_t t, int64_t i) {
    const struct fpd_layer_shape *s = &l->shape;
    int64_t slice = s->ranks[m] * s->col_shape[m] * s->ranks[m + 1];
    return l->cores[m] + (t * s->row_shape[m] + i) * slice;
}

/* Evaluate stored (FPD) row `row` into out[D]. */
static void evaluator_row(struct evaluator *ev, int64_t row, float *out) {
    const struct fpd_layer *l = ev->layer;
    const struct fpd_layer_shape *s = &l->shape;
    const int32_t k = s->k;
    int64_t dig[FPD_MAX_MODES];
    row_digits(s, row, dig);
    int32_t first = 0;
    while (first < ev->valid && first < k - 1 && dig[first] == ev->digits[first]) first++;
    for (int32_t m = first; m < k - 1; m++) {
        for (int64_t t = 0; t < s->terms; t++) {
            float *dst = ev->partial[m] + t * ev->part_stride[m];
            const float *g = core_slice(l, m, t, dig[m]);
            if (m == 0) {
                memcpy(dst, g, (size_t)ev->part_stride[0] * sizeof(float));
            } else {
                const float *prev = ev->partial[m - 1] + t * ev->part_stride[m - 1];
                fpd__cpu_sgemm(false, false, ev->dprod[m - 1], s->col_shape[m] * s->ranks[m + 1], s->ranks[m],
                               1.0f, prev, s->ranks[m], g, s->col_shape[m] * s->ranks[m + 1], 0.0f, dst,
                               s->col_shape[m] * s->ranks[m + 1]);
            }
        }
        ev->digits[m] = dig[m];
    }
    ev->valid = k - 1;
    /* last core: out = sum_t P_{k-2}[D_{k-2}, r_{k-1}] @ G_{k-1}[t, i] [r_{k-1}, d_{k-1}] */
    const int32_t m = k - 1;
    for (int64_t t = 0; t < s->terms; t++) {
        const float *g = core_slice(l, m, t, dig[m]);
        if (k == 1) {
            if (t == 0) memcpy(out, g, (size_t)s->dim * sizeof(float));
            else for (int64_t j = 0; j < s->dim; j++) out[j] += g[j];
            continue;
        }
        const float *prev = ev->partial[m - 1] + t * ev->part_stride[m - 1];
        fpd__cpu_sgemm(false, false, ev->dprod[m - 1], s->col_shape[m], s->ranks[m], 1.0f, prev, s->ranks[m], g,
                       s->col_shape[m], t == 0 ? 0.0f : 1.0f, out, s->col_shape[m]);
    }
}

enum fpd_status fpd_layer_lookup(const struct fpd_layer *layer, const int64_t *idx, int64_t n, float *out,
                                 struct fpd_error *err) {
    if (n <= 0) return FPD_STATUS_OK;
    for (int64_t b = 0; b < n; b++)
        if (idx[b] < 0 || idx[b] >= layer->shape.rows)
            return fpd__err(err, FPD_STATUS_INVALID_ARG, "index idx[%lld] = %lld is outside [0, %lld)",
                            (long long)b, (long long)idx[b], (long long)layer->shape.rows);
    struct evaluator ev;
    enum fpd_status st = evaluator_init(&ev, layer, err);
    if (st) return st;
    for (int64_t b = 0; b < n; b++) {
        int64_t row = layer->row_perm ? layer->row_perm[idx[b]] : idx[b];
        evaluator_row(&ev, row, out + b * layer->shape.dim);
    }
    evaluator_free(&ev);
    return FPD_STATUS_OK;
}

enum fpd_status fpd_layer_reconstruct(const struct fpd_layer *layer, int64_t row_begin, int64_t row_end, float *out,
                                      struct fpd_error *err) {
    if (row_begin < 0 || row_end < row_begin || row_end > layer->shape.rows)
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "rows [%lld, %lld) outside a table of %lld rows",
                        (long long)row_begin, (long long)row_end, (long long)layer->shape.rows);
    struct evaluator ev;
    enum fpd_status st = evaluator_init(&ev, layer, err);
    if (st) return st;
    for (int64_t i = row_begin; i < row_end; i++) {
        int64_t row = layer->row_perm ? layer->row_perm[i] : i;
        evaluator_row(&ev, row, out + (i - row_begin) * layer->shape.dim);
    }
    evaluator_free(&ev);
    return FPD_STATUS_OK;
}

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
    if (!a || !b) {
        st = fpd__err(err, FPD_STATUS_NOMEM, "out of memory for the error workspace");
        goto done;
    }
    for (int64_t r0 = 0; r0 < s->rows; r0 += block) {
        int64_t r1 = r0 + block < s->rows ? r0 + block : s->rows;
        if ((st = fpd_table_view_rows(w, r0, r1, a, err))) goto done;
        if ((st = fpd_layer_reconstruct(layer, r0, r1, b, err))) goto done;
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
    fpd_free(a);
    fpd_free(b);
    return st;
}

/* ------------------------------------------------------------ backward */

enum fpd_status fpd_layer_backward(const struct fpd_layer *layer, const int64_t *idx, int64_t n,
                                   const float *grad_out, float *const *grad_cores, struct fpd_error *err) {
    const struct fpd_layer_shape *s = &layer->shape;
    const int32_t k = s->k;
    enum fpd_status st = FPD_STATUS_OK;
    for (int64_t b = 0; b < n; b++)
        if (idx[b] < 0 || idx[b] >= s->rows)
            return fpd__err(err, FPD_STATUS_INVALID_ARG, "index idx[%lld] = %lld is outside [0, %lld)",
                            (long long)b, (long long)idx[b], (long long)s->rows);
    /* left partials L_m [D_m, r_{m+1}], right partials R_m [r_m, E_m] with
     * E_m = d_m * .. * d_{k-1}, and a temporary [r_m, d_m * E_{m+1}] */
    int64_t rmax = 1;
    for (int32_t m = 0; m <= k; m++) rmax = s->ranks[m] > rmax ? s->ranks[m] : rmax;
    size_t per = (size_t)(s->dim * rmax);
    float *ws = fpd_malloc((size_t)(2 * k + 1) * per * sizeof(float));
    if (!ws) return fpd__err(err, FPD_STATUS_NOMEM, "out of memory for the backward workspace");
    float *L[FPD_MAX_MODES], *R[FPD_MAX_MODES], *tmp = ws + (size_t)(2 * k) * per;
    for (int32_t m = 0; m < k; m++) {
        L[m] = ws + (size_t)m * per;
        R[m] = ws + (size_t)(k + m) * per;
    }
    int64_t dpre[FPD_MAX_MODES + 1], dsuf[FPD_MAX_MODES + 1]; /* dpre[m] = d_0..d_{m-1}, dsuf[m] = d_m..d_{k-1} */
    dpre[0] = 1;
    for (int32_t m = 0; m < k; m++) dpre[m + 1] = dpre[m] * s->col_shape[m];
    dsuf[k] = 1;
    for (int32_t m = k - 1; m >= 0; m--) dsuf[m] = dsuf[m + 1] * s->col_shape[m];
    static const float one = 1.0f;

    for (int64_t b = 0; b < n; b++) {
        int64_t row = layer->row_perm ? layer->row_perm[idx[b]] : idx[b];
        int64_t dig[FPD_MAX_MODES];
        row_digits(s, row, dig);
        const float *e = grad_out + b * s->dim;
        for (int64_t t = 0; t < s->terms; t++) {
            /* left: L_m = L_{m-1} @ G_m, for m < k-1 */
            for (int32_t m = 0; m < k - 1; m++) {
                const float *g = core_slice(layer, m, t, dig[m]);
                int64_t cols = s->col_shape[m] * s->ranks[m + 1];
                if (m == 0) memcpy(L[0], g, (size_t)cols * sizeof(float));
                else fpd__cpu_sgemm(false, false, dpre[m], cols, s->ranks[m], 1.0f, L[m - 1], s->ranks[m], g, cols,
                                    0.0f, L[m], cols);
            }
            /* right: R_m = G_m viewed [r_m d_m, r_{m+1}] @ R_{m+1} [r_{m+1}, E_{m+1}], for m > 0 */
            for (int32_t m = k - 1; m >= 1; m--) {
                const float *g = core_slice(layer, m, t, dig[m]);
                if (m == k - 1) memcpy(R[m], g, (size_t)(s->ranks[m] * s->col_shape[m]) * sizeof(float));
                else fpd__cpu_sgemm(false, false, s->ranks[m] * s->col_shape[m], dsuf[m + 1], s->ranks[m + 1], 1.0f,
                                    g, s->ranks[m + 1], R[m + 1], dsuf[m + 1], 0.0f, R[m], dsuf[m + 1]);
            }
            /* grad of G_m[t, i_m] viewed [r_m d_m, r_{m+1}]:
             *   tmp [r_m, d_m E_{m+1}] = L_{m-1}^T [r_m, D_{m-1}] @ E [D_{m-1}, d_m E_{m+1}]
             *   dG += tmp viewed [r_m d_m, E_{m+1}] @ R_{m+1}^T [E_{m+1}, r_{m+1}] */
            for (int32_t m = 0; m < k; m++) {
                const struct fpd_layer_shape *sh = s;
                int64_t slice = sh->ranks[m] * sh->col_shape[m] * sh->ranks[m + 1];
                float *dg = grad_cores[m] + (t * sh->row_shape[m] + dig[m]) * slice;
                const float *lm = m == 0 ? &one : L[m - 1];
                const float *rm = m == k - 1 ? &one : R[m + 1];
                fpd__cpu_sgemm(true, false, sh->ranks[m], dsuf[m], dpre[m], 1.0f, lm, sh->ranks[m], e, dsuf[m], 0.0f,
                               tmp, dsuf[m]);
                fpd__cpu_sgemm(false, true, sh->ranks[m] * sh->col_shape[m], sh->ranks[m + 1], dsuf[m + 1], 1.0f, tmp,
                               dsuf[m + 1], rm, dsuf[m + 1], 1.0f, dg, sh->ranks[m + 1]);
            }
        }
    }
    fpd_free(ws);
    return st;
}
