/*
 * composed.c - the two classic ways to shrink an embedding table that FPD is
 * compared against (fpd.h, "Hashed and quotient-remainder tables"):
 *
 *  - the hashing trick (Weinberger et al., ICML 2009; as DLRM's hashed tables):
 *    row i is row h(i) mod m of one table [m, D], h a fixed seeded hash
 *    (splitmix64's finalizer of i + seed * golden ratio);
 *  - the quotient-remainder trick (Shi et al., KDD 2020, "Compositional
 *    Embeddings Using Complementary Partitions for Memory-Efficient
 *    Recommendation Systems", arXiv 1909.02107): row i = Q[i div m] * R[i mod m]
 *    element-wise, Q [ceil(N / m), D], R [m, D]. The element-wise product is
 *    the operation their paper found best (their Table 2); two ids share a row
 *    of both tables only if they are equal, so every row is distinct.
 *
 * Training is lazy Adam over table rows (a table row moves only in steps whose
 * batch touches it), the optimizer the GMF/MF trainer gives dense tables and FPD
 * core slices (fpd_gmf_train).
 */
#include "fpd-impl.h"

#include <math.h>
#include <string.h>

const char *fpd_composed_kind_name(enum fpd_composed_kind k) {
    switch (k) {
    case FPD_COMPOSED_KIND_HASH: return "hash";
    case FPD_COMPOSED_KIND_QR: return "qr";
    default: return "?";
    }
}

enum fpd_status fpd_composed_shape_check(const struct fpd_composed_shape *s, struct fpd_error *err) {
    if (s->kind != FPD_COMPOSED_KIND_HASH && s->kind != FPD_COMPOSED_KIND_QR)
        return fpd__err(err, FPD_STATUS_SHAPE, "unknown composed table kind %d", (int)s->kind);
    if (s->rows < 1 || s->dim < 1 || s->buckets < 1)
        return fpd__err(err, FPD_STATUS_SHAPE, "%s table: rows %lld, dim %lld and buckets %lld must be >= 1",
                        fpd_composed_kind_name(s->kind), (long long)s->rows, (long long)s->dim,
                        (long long)s->buckets);
    int64_t p;
    if (!fpd__mul_i64(s->rows + s->buckets, s->dim, &p) || p > (int64_t)(SIZE_MAX / 8))
        return fpd__err(err, FPD_STATUS_SHAPE, "%s table [%lld, %lld] with %lld buckets is too large",
                        fpd_composed_kind_name(s->kind), (long long)s->rows, (long long)s->dim,
                        (long long)s->buckets);
    return FPD_STATUS_OK;
}

int64_t fpd_composed_shape_params(const struct fpd_composed_shape *s) {
    if (s->kind == FPD_COMPOSED_KIND_HASH) return s->buckets * s->dim;
    return ((s->rows + s->buckets - 1) / s->buckets + s->buckets) * s->dim;
}

static inline uint64_t hash_row(uint64_t i, uint64_t seed) {
    uint64_t z = i + seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void fpd_composed_index(const struct fpd_composed *c, int64_t i, int64_t idx[2]) {
    if (c->shape.kind == FPD_COMPOSED_KIND_HASH) {
        idx[0] = (int64_t)(hash_row((uint64_t)i, c->shape.hash_seed) % (uint64_t)c->shape.buckets);
        idx[1] = -1;
    } else {
        if (c->row_perm) i = c->row_perm[i];
        idx[0] = i / c->shape.buckets;
        idx[1] = i % c->shape.buckets;
    }
}

enum fpd_status fpd_composed_set_row_perm(struct fpd_composed *c, const int64_t *perm, struct fpd_error *err) {
    if (c->shape.kind != FPD_COMPOSED_KIND_QR)
        return fpd__err(err, FPD_STATUS_UNSUPPORTED, "%s table: a row order applies to QR tables only",
                        fpd_composed_kind_name(c->shape.kind));
    if (!perm) {
        fpd_free(c->row_perm);
        c->row_perm = NULL;
        return FPD_STATUS_OK;
    }
    int64_t *copy;
    enum fpd_status st = fpd__row_perm_copy(perm, c->shape.rows, c->table_rows[0] * c->shape.buckets,
                                            "qr table: row order", &copy, err);
    if (st) return st;
    fpd_free(c->row_perm);
    c->row_perm = copy;
    return FPD_STATUS_OK;
}

void fpd_composed_free(struct fpd_composed *c) {
    if (!c) return;
    for (int q = 0; q < 2; q++) {
        fpd_free(c->table[q]);
        fpd_free(c->adam_m[q]);
        fpd_free(c->adam_v[q]);
        fpd_free(c->grad[q]);
        fpd_free(c->mark[q]);
        fpd_free(c->touched[q]);
    }
    fpd_free(c->row_perm);
    fpd_free(c);
}

enum fpd_status fpd_composed_init(const struct fpd_composed_shape *shape, double init_scale, uint64_t seed,
                                  struct fpd_composed **out, struct fpd_error *err) {
    *out = NULL;
    enum fpd_status st = fpd_composed_shape_check(shape, err);
    if (st) return st;
    if (!(init_scale >= 0.0) || !isfinite(init_scale))
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "init scale %g must be finite and >= 0", init_scale);
    struct fpd_composed *c = fpd_calloc(1, sizeof *c);
    if (!c) return fpd__err(err, FPD_STATUS_NOMEM, "out of memory for a composed table");
    c->shape = *shape;
    const bool qr = shape->kind == FPD_COMPOSED_KIND_QR;
    c->n_tables = qr ? 2 : 1;
    c->table_rows[0] = qr ? (shape->rows + shape->buckets - 1) / shape->buckets : shape->buckets;
    c->table_rows[1] = qr ? shape->buckets : 0;
    /* hash: normal(0, s^2) as a dense table; QR: both factors normal(0, s), so
     * that their product has the dense table's scale s^2 (variance s^2) */
    const double sd = qr ? sqrt(init_scale) : init_scale;
    uint64_t rng = seed ^ 0x7f4a7c159e3779b9ull;
    for (int q = 0; q < c->n_tables; q++) {
        const int64_t nel = c->table_rows[q] * shape->dim;
        if (!(c->table[q] = fpd_malloc((size_t)nel * sizeof(float)))) {
            fpd_composed_free(c);
            return fpd__err(err, FPD_STATUS_NOMEM, "out of memory for a %s table of %lld x %lld",
                            fpd_composed_kind_name(shape->kind), (long long)c->table_rows[q], (long long)shape->dim);
        }
        for (int64_t e = 0; e < nel; e++) c->table[q][e] = (float)(sd * fpd__rand_normal(&rng));
    }
    *out = c;
    return FPD_STATUS_OK;
}

static enum fpd_status ids_check(const struct fpd_composed *c, const int64_t *ids, int64_t n, struct fpd_error *err) {
    for (int64_t t = 0; t < n; t++)
        if (ids[t] < 0 || ids[t] >= c->shape.rows)
            return fpd__err(err, FPD_STATUS_INVALID_ARG, "%s table: index %lld (entry %lld) is outside [0, %lld)",
                            fpd_composed_kind_name(c->shape.kind), (long long)ids[t], (long long)t,
                            (long long)c->shape.rows);
    return FPD_STATUS_OK;
}

enum fpd_status fpd_composed_lookup(const struct fpd_composed *c, const int64_t *ids, int64_t n, float *out,
                                    struct fpd_error *err) {
    enum fpd_status st = ids_check(c, ids, n, err);
    if (st) return st;
    const int64_t dim = c->shape.dim;
    for (int64_t t = 0; t < n; t++) {
        int64_t idx[2];
        fpd_composed_index(c, ids[t], idx);
        float *o = out + t * dim;
        const float *a = c->table[0] + idx[0] * dim;
        if (c->n_tables == 1) {
            memcpy(o, a, (size_t)dim * sizeof(float));
        } else {
            const float *b = c->table[1] + idx[1] * dim;
            for (int64_t j = 0; j < dim; j++) o[j] = a[j] * b[j];
        }
    }
    return FPD_STATUS_OK;
}

/* Adds the gradients of the rows ids[0..n) (grad_out [n, dim]) to gt[0..n_tables)
 * (each [table_rows, dim]); touched rows are listed once in c->touched. */
static void accumulate(struct fpd_composed *c, const int64_t *ids, int64_t n, const float *grad_out, float *const gt[2],
                       bool track) {
    const int64_t dim = c->shape.dim;
    for (int64_t t = 0; t < n; t++) {
        int64_t idx[2];
        fpd_composed_index(c, ids[t], idx);
        const float *g = grad_out + t * dim;
        for (int q = 0; q < c->n_tables; q++) {
            if (track && !c->mark[q][idx[q]]) {
                c->mark[q][idx[q]] = 1;
                c->touched[q][c->n_touched[q]++] = idx[q];
                memset(gt[q] + idx[q] * dim, 0, (size_t)dim * sizeof(float));
            }
        }
        float *g0 = gt[0] + idx[0] * dim;
        if (c->n_tables == 1) {
            for (int64_t j = 0; j < dim; j++) g0[j] += g[j];
        } else {
            const float *a = c->table[0] + idx[0] * dim, *b = c->table[1] + idx[1] * dim;
            float *g1 = gt[1] + idx[1] * dim;
            for (int64_t j = 0; j < dim; j++) {
                g0[j] += g[j] * b[j];
                g1[j] += g[j] * a[j];
            }
        }
    }
}

enum fpd_status fpd_composed_backward(struct fpd_composed *c, const int64_t *ids, int64_t n, const float *grad_out,
                                      float *const grad_tables[2], struct fpd_error *err) {
    enum fpd_status st = ids_check(c, ids, n, err);
    if (st) return st;
    accumulate(c, ids, n, grad_out, grad_tables, false);
    return FPD_STATUS_OK;
}

enum fpd_status fpd_composed_adam_step(struct fpd_composed *c, const int64_t *ids, int64_t n, const float *grad_out,
                                       float lr, float bc1, float bc2, struct fpd_error *err) {
    enum fpd_status st = ids_check(c, ids, n, err);
    if (st) return st;
    const int64_t dim = c->shape.dim;
    for (int q = 0; q < c->n_tables; q++) {
        if (c->adam_m[q]) continue;
        const size_t nel = (size_t)(c->table_rows[q] * dim);
        if (!(c->adam_m[q] = fpd_calloc(nel, sizeof(float))) || !(c->adam_v[q] = fpd_calloc(nel, sizeof(float))) ||
            !(c->grad[q] = fpd_malloc(nel * sizeof(float))) ||
            !(c->mark[q] = fpd_calloc((size_t)c->table_rows[q], 1)) ||
            !(c->touched[q] = fpd_malloc((size_t)c->table_rows[q] * sizeof(int64_t)))) {
            for (int r = 0; r < 2; r++) {
                fpd_free(c->adam_m[r]);
                fpd_free(c->adam_v[r]);
                fpd_free(c->grad[r]);
                fpd_free(c->mark[r]);
                fpd_free(c->touched[r]);
                c->adam_m[r] = c->adam_v[r] = c->grad[r] = NULL;
                c->mark[r] = NULL;
                c->touched[r] = NULL;
            }
            return fpd__err(err, FPD_STATUS_NOMEM, "out of memory for the optimizer state of a %s table",
                            fpd_composed_kind_name(c->shape.kind));
        }
    }
    c->n_touched[0] = c->n_touched[1] = 0;
    accumulate(c, ids, n, grad_out, c->grad, true); /* all gradients from the values before the step */
    for (int q = 0; q < c->n_tables; q++) {
        for (int64_t s = 0; s < c->n_touched[q]; s++) {
            const int64_t off = c->touched[q][s] * dim;
            fpd__adam_update(c->table[q] + off, c->grad[q] + off, c->adam_m[q] + off, c->adam_v[q] + off, dim, lr,
                             0.9f, 0.999f, 1e-8f, bc1, bc2);
            c->mark[q][c->touched[q][s]] = 0;
        }
    }
    return FPD_STATUS_OK;
}
