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

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* C[M,N] += A[M,K] B[K,N] */
FPD__VECTORIZE static void mm_nn(int64_t M, int64_t N, int64_t K, const float *restrict a, const float *restrict b,
                                 float *restrict c) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t l = 0; l < K; l++) {
            const float av = a[i * K + l];
            const float *restrict br = b + l * N;
            float *restrict cr = c + i * N;
            for (int64_t j = 0; j < N; j++) cr[j] += av * br[j];
        }
}
/* C[M,N] += A^T B with A [K,M], B [K,N] */
FPD__VECTORIZE static void mm_tn(int64_t M, int64_t N, int64_t K, const float *restrict a, const float *restrict b,
                                 float *restrict c) {
    for (int64_t l = 0; l < K; l++)
        for (int64_t i = 0; i < M; i++) {
            const float av = a[l * M + i];
            const float *restrict br = b + l * N;
            float *restrict cr = c + i * N;
            for (int64_t j = 0; j < N; j++) cr[j] += av * br[j];
        }
}
/* C[M,N] += A B^T with A [M,K], B [N,K]; bt is a workspace of K * N floats */
static void mm_nt(int64_t M, int64_t N, int64_t K, const float *a, const float *b, float *c, float *bt) {
    for (int64_t j = 0; j < N; j++)
        for (int64_t l = 0; l < K; l++) bt[l * N + j] = b[j * K + l];
    mm_nn(M, N, K, a, bt, c);
}

/* The gradient of fpd_layer_lookup, computed by
 * reverse accumulation over the prefix tree of the rows: rows are visited in
 * stored-row order; the left partials L_m = G_0[i_0] .. G_m[i_m] ([D_m, r_{m+1}],
 * D_m = d_0 .. d_m) are shared by rows with equal digits i_0..i_m, and so is the
 * gradient dL_m, summed over them and pushed to G_m and to dL_{m-1} once per
 * distinct prefix. A row costs O(D r) (its last core), a distinct prefix of
 * length m+1 O(D_m r^2 d_m), instead of recomputing every partial per row (ALS
 * sweeps, which pass the rows in order, run about 2x faster for it).
 * Adds into grad_cores. Errors: INVALID_ARG (index), NOMEM. */
enum fpd_status fpd_layer_backward(const struct fpd_layer *layer, const int64_t *idx, int64_t n,
                                   const float *grad_out, float *const *grad_cores, struct fpd_error *err) {
    const struct fpd_layer_shape *s = fpd_layer_get_shape(layer);
    const int32_t k = s->k;
    const int64_t D = s->dim;
    if (n <= 0) return FPD_STATUS_OK;
    for (int64_t b = 0; b < n; b++)
        if (idx[b] < 0 || idx[b] >= s->rows)
            return fpd__err(err, FPD_STATUS_INVALID_ARG, "index idx[%lld] = %lld is outside [0, %lld)", (long long)b,
                            (long long)idx[b], (long long)s->rows);
    const int64_t *perm = fpd_layer_row_perm(layer);
    int64_t Dm[FPD_MAX_MODES], slice[FPD_MAX_MODES], total = 0;
    for (int32_t m = 0; m < k; m++) {
        Dm[m] = (m ? Dm[m - 1] : 1) * s->col_shape[m];
        slice[m] = s->ranks[m] * s->col_shape[m] * s->ranks[m + 1];
        if (m < k - 1) total += 2 * Dm[m] * s->ranks[m + 1];
    }
    int64_t maxslice = 1;
    for (int32_t m = 0; m < k; m++) maxslice = slice[m] > maxslice ? slice[m] : maxslice;
    total += maxslice;
    /* (stored row, position) pairs sorted by stored row */
    int64_t *ord = fpd_malloc((size_t)(2 * n) * sizeof(int64_t));
    float *ws = fpd_malloc((size_t)total * sizeof(float));
    if (!ord || !ws) {
        fpd_free(ord);
        fpd_free(ws);
        return fpd__err(err, FPD_STATUS_NOMEM, "out of memory for the backward workspace");
    }
    for (int64_t b = 0; b < n; b++) {
        ord[2 * b] = perm ? perm[idx[b]] : idx[b];
        ord[2 * b + 1] = b;
    }
    qsort(ord, (size_t)n, 2 * sizeof(int64_t), cmp_i64); /* by the first of each pair */
    float *L[FPD_MAX_MODES] = {0}, *dL[FPD_MAX_MODES] = {0}, *bt = NULL;
    {
        float *p = ws;
        for (int32_t m = 0; m < k - 1; m++) {
            L[m] = p;
            p += Dm[m] * s->ranks[m + 1];
            dL[m] = p;
            p += Dm[m] * s->ranks[m + 1];
        }
        bt = p;
    }
    for (int64_t t = 0; t < s->terms; t++) {
        int64_t prev[FPD_MAX_MODES];
        for (int32_t m = 0; m < k - 1; m++) memset(dL[m], 0, (size_t)(Dm[m] * s->ranks[m + 1]) * sizeof(float));
        for (int64_t b = 0; b <= n; b++) {
            int64_t dig[FPD_MAX_MODES];
            int32_t lev = 0; /* first level whose digit changed */
            if (b < n) {
                int64_t row = ord[2 * b];
                for (int32_t m = k - 1; m >= 0; m--) {
                    dig[m] = row % s->row_shape[m];
                    row /= s->row_shape[m];
                }
                if (b > 0)
                    while (lev < k - 1 && dig[lev] == prev[lev]) lev++;
            }
            /* the groups at levels >= lev end: flush them, deepest first */
            if (b > 0)
                for (int32_t m = k - 2; m >= lev; m--) {
                    const int64_t rm = s->ranks[m], cols = s->col_shape[m] * s->ranks[m + 1];
                    const int64_t rows_prev = m ? Dm[m - 1] : 1;
                    const float *g = fpd_layer_core_const(layer, m) + (t * s->row_shape[m] + prev[m]) * slice[m];
                    float *dg = grad_cores[m] + (t * s->row_shape[m] + prev[m]) * slice[m];
                    /* dL_m viewed [D_{m-1}, d_m r_{m+1}] */
                    if (m == 0) {
                        for (int64_t q = 0; q < cols; q++) dg[q] += dL[0][q];
                    } else {
                        mm_tn(rm, cols, rows_prev, L[m - 1], dL[m], dg);
                        mm_nt(rows_prev, rm, cols, dL[m], g, dL[m - 1], bt);
                    }
                    memset(dL[m], 0, (size_t)(Dm[m] * s->ranks[m + 1]) * sizeof(float));
                }
            if (b == n) break;
            /* left partials of the new prefix */
            for (int32_t m = lev; m < k - 1; m++) {
                const float *g = fpd_layer_core_const(layer, m) + (t * s->row_shape[m] + dig[m]) * slice[m];
                const int64_t cols = s->col_shape[m] * s->ranks[m + 1];
                if (m == 0) {
                    memcpy(L[0], g, (size_t)cols * sizeof(float));
                } else {
                    memset(L[m], 0, (size_t)(Dm[m] * s->ranks[m + 1]) * sizeof(float));
                    mm_nn(Dm[m - 1], cols, s->ranks[m], L[m - 1], g, L[m]);
                }
            }
            /* last core: e = dRow viewed [D_{k-2}, d_{k-1}] */
            const float *e = grad_out + ord[2 * b + 1] * D;
            const int32_t m = k - 1;
            float *dg = grad_cores[m] + (t * s->row_shape[m] + dig[m]) * slice[m];
            if (k == 1) {
                for (int64_t q = 0; q < D; q++) dg[q] += e[q];
            } else {
                const float *g = fpd_layer_core_const(layer, m) + (t * s->row_shape[m] + dig[m]) * slice[m];
                mm_tn(s->ranks[m], s->col_shape[m], Dm[m - 1], L[m - 1], e, dg);
                mm_nt(Dm[m - 1], s->ranks[m], s->col_shape[m], e, g, dL[m - 1], bt);
            }
            for (int32_t q = 0; q < k; q++) prev[q] = dig[q];
        }
    }
    fpd_free(ord);
    fpd_free(ws);
    return FPD_STATUS_OK;
}
