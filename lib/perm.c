/*
 * perm.c - a learned row permutation for FPD layers (fpd_row_perm_cluster).
 *
 * Row i of an FPD table is a product of one slice per core, chosen by its digits
 * (i_0, ..., i_{k-1}); rows that share leading digits share leading factors. A
 * trained table has no structure along its row order, so we choose the order:
 * rows are split into n_0 groups of at most prod(n_1..) rows by balanced k-means
 * (similar rows share i_0), each group into n_1 groups of at most prod(n_2..) rows,
 * and so on down to the last mode, whose digits are given in the group's order.
 * Balanced assignment: rows, ordered by the distance to their nearest centroid,
 * take the nearest centroid that still has room (a greedy, as in capacitated
 * k-means heuristics). Centroids start at distinct random rows (seeded) and are
 * refined for KMEANS_ITERS rounds.
 *
 * Cost: about KMEANS_ITERS * N * D * (n_0 + ... + n_{k-2}) flops. Memory: one F32
 * copy of the table's rows (gathered once), plus O(N) indices.
 */
#include "fpd-impl.h"

#include <math.h>
#include <string.h>

#define KMEANS_ITERS 8

struct cluster_ctx {
    const struct fpd_layer_shape *s;
    const float *x;     /* [rows, dim], original order */
    int64_t *perm;      /* out */
    uint64_t rng;
    /* scratch, sized for the largest call */
    float *cent, *dist;
    double *csum;
    int64_t *cnt, *assign, *order, *best;
    float *bestd;
};

static int cmp_by_dist(const void *a, const void *b, void *ctx) {
    const float *d = ctx;
    float x = d[*(const int64_t *)a], y = d[*(const int64_t *)b];
    return (x > y) - (x < y);
}

/* squared distance of row r to centroid g */
static float dist2(const float *x, const float *c, int64_t dim) {
    float s = 0.0f;
    for (int64_t j = 0; j < dim; j++) {
        float d = x[j] - c[j];
        s += d * d;
    }
    return s;
}

/* Balanced k-means of rows ids[0..n) into g groups of at most cap rows: assign[i]
 * in [0, g). */
static void balanced_kmeans(struct cluster_ctx *c, const int64_t *ids, int64_t n, int64_t g, int64_t cap) {
    const int64_t dim = c->s->dim;
    /* init: g distinct rows (a partial Fisher-Yates over positions) */
    for (int64_t i = 0; i < n; i++) c->order[i] = i;
    for (int64_t q = 0; q < g; q++) {
        if (q < n) {
            int64_t j = q + (int64_t)(fpd__rand_u64(&c->rng) % (uint64_t)(n - q));
            int64_t t = c->order[q];
            c->order[q] = c->order[j];
            c->order[j] = t;
            memcpy(c->cent + q * dim, c->x + ids[c->order[q]] * dim, (size_t)dim * sizeof(float));
        } else {
            memcpy(c->cent + q * dim, c->cent + (q % (n > 0 ? n : 1)) * dim, (size_t)dim * sizeof(float));
        }
    }
    for (int it = 0; it < KMEANS_ITERS; it++) {
        /* nearest centroid of each row */
        for (int64_t i = 0; i < n; i++) {
            const float *xi = c->x + ids[i] * dim;
            float bd = INFINITY;
            int64_t bg = 0;
            for (int64_t q = 0; q < g; q++) {
                float d = dist2(xi, c->cent + q * dim, dim);
                if (d < bd) {
                    bd = d;
                    bg = q;
                }
            }
            c->bestd[i] = bd;
            c->best[i] = bg;
            c->order[i] = i;
        }
        qsort_r(c->order, (size_t)n, sizeof(int64_t), cmp_by_dist, c->bestd);
        memset(c->cnt, 0, (size_t)g * sizeof(int64_t));
        for (int64_t o = 0; o < n; o++) {
            int64_t i = c->order[o], q = c->best[i];
            if (c->cnt[q] >= cap) { /* full: the nearest centroid with room */
                const float *xi = c->x + ids[i] * dim;
                float bd = INFINITY;
                for (int64_t h = 0; h < g; h++) {
                    if (c->cnt[h] >= cap) continue;
                    float d = dist2(xi, c->cent + h * dim, dim);
                    if (d < bd) {
                        bd = d;
                        q = h;
                    }
                }
            }
            c->assign[i] = q;
            c->cnt[q]++;
        }
        /* centroids */
        memset(c->csum, 0, (size_t)(g * dim) * sizeof(double));
        for (int64_t i = 0; i < n; i++) {
            const float *xi = c->x + ids[i] * dim;
            double *cs = c->csum + c->assign[i] * dim;
            for (int64_t j = 0; j < dim; j++) cs[j] += xi[j];
        }
        for (int64_t q = 0; q < g; q++)
            if (c->cnt[q] > 0)
                for (int64_t j = 0; j < dim; j++) c->cent[q * dim + j] = (float)(c->csum[q * dim + j] / (double)c->cnt[q]);
    }
}

/* Place rows ids[0..n) into stored rows [base, base + prod(n_level..)). */
static enum fpd_status place(struct cluster_ctx *c, int64_t *ids, int64_t n, int32_t level, int64_t base,
                             struct fpd_error *err) {
    const struct fpd_layer_shape *s = c->s;
    if (level == s->k - 1 || n <= 1) {
        for (int64_t i = 0; i < n; i++) c->perm[ids[i]] = base + i;
        return FPD_STATUS_OK;
    }
    int64_t g = s->row_shape[level], cap = 1;
    for (int32_t m = level + 1; m < s->k; m++) cap *= s->row_shape[m];
    balanced_kmeans(c, ids, n, g, cap);
    /* stable partition of ids by group (counting sort into a temporary) */
    int64_t *tmp = fpd_malloc((size_t)n * sizeof(int64_t));
    int64_t *start = fpd_calloc((size_t)g + 1, sizeof(int64_t));
    if (!tmp || !start) {
        fpd_free(tmp);
        fpd_free(start);
        return fpd__err(err, FPD_STATUS_NOMEM, "out of memory for row clustering");
    }
    for (int64_t i = 0; i < n; i++) start[c->assign[i] + 1]++;
    for (int64_t q = 0; q < g; q++) start[q + 1] += start[q];
    int64_t *fill = fpd_malloc((size_t)g * sizeof(int64_t));
    if (!fill) {
        fpd_free(tmp);
        fpd_free(start);
        return fpd__err(err, FPD_STATUS_NOMEM, "out of memory for row clustering");
    }
    memcpy(fill, start, (size_t)g * sizeof(int64_t));
    for (int64_t i = 0; i < n; i++) tmp[fill[c->assign[i]]++] = ids[i];
    memcpy(ids, tmp, (size_t)n * sizeof(int64_t));
    fpd_free(tmp);
    fpd_free(fill);
    enum fpd_status st = FPD_STATUS_OK;
    for (int64_t q = 0; q < g && !st; q++)
        st = place(c, ids + start[q], start[q + 1] - start[q], level + 1, base + q * cap, err);
    fpd_free(start);
    return st;
}

enum fpd_status fpd_row_perm_cluster(const struct fpd_table_view *w, const struct fpd_layer_shape *shape,
                                     uint64_t seed, int64_t *perm, struct fpd_error *err) {
    enum fpd_status st = fpd_layer_shape_check(shape, err);
    if (st) return st;
    if (w->rows != shape->rows || w->dim != shape->dim)
        return fpd__err(err, FPD_STATUS_SHAPE, "table [%lld, %lld] does not match the layer shape [%lld, %lld]",
                        (long long)w->rows, (long long)w->dim, (long long)shape->rows, (long long)shape->dim);
    const int64_t n = w->rows, dim = w->dim;
    int64_t gmax = 1;
    for (int32_t m = 0; m < shape->k; m++) gmax = shape->row_shape[m] > gmax ? shape->row_shape[m] : gmax;
    struct cluster_ctx c;
    memset(&c, 0, sizeof c);
    c.s = shape;
    c.perm = perm;
    c.rng = seed ^ 0x13198a2e03707344ull;
    float *x = fpd_malloc((size_t)(n * dim) * sizeof(float));
    int64_t *ids = fpd_malloc((size_t)n * sizeof(int64_t));
    c.cent = fpd_malloc((size_t)(gmax * dim) * sizeof(float));
    c.csum = fpd_malloc((size_t)(gmax * dim) * sizeof(double));
    c.cnt = fpd_malloc((size_t)gmax * sizeof(int64_t));
    c.assign = fpd_malloc((size_t)n * sizeof(int64_t));
    c.order = fpd_malloc((size_t)n * sizeof(int64_t));
    c.best = fpd_malloc((size_t)n * sizeof(int64_t));
    c.bestd = fpd_malloc((size_t)n * sizeof(float));
    if (!x || !ids || !c.cent || !c.csum || !c.cnt || !c.assign || !c.order || !c.best || !c.bestd) {
        st = fpd__err(err, FPD_STATUS_NOMEM, "out of memory for row clustering of a [%lld, %lld] table", (long long)n,
                      (long long)dim);
        goto done;
    }
    c.x = x;
    if ((st = fpd_table_view_rows(w, 0, n, x, err))) goto done;
    for (int64_t i = 0; i < n * dim; i++)
        if (!isfinite(x[i])) {
            st = fpd__err(err, FPD_STATUS_INVALID_ARG, "row %lld, column %lld is not finite", (long long)(i / dim),
                          (long long)(i % dim));
            goto done;
        }
    for (int64_t i = 0; i < n; i++) ids[i] = i;
    st = place(&c, ids, n, 0, 0, err);
done:
    fpd_free(x);
    fpd_free(ids);
    fpd_free(c.cent);
    fpd_free(c.csum);
    fpd_free(c.cnt);
    fpd_free(c.assign);
    fpd_free(c.order);
    fpd_free(c.best);
    fpd_free(c.bestd);
    return st;
}
