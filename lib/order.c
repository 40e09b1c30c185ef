/*
 * order.c - a row order for training an FPD table from scratch, computed from the
 * interaction data alone (fpd_row_order_interactions, fpd.h).
 *
 * A tensor train shares its leading core slices between rows with equal leading
 * digits, so with arbitrary ids unrelated users share parameters. We order the
 * ids so that rows that interact with the same things sit under the same
 * prefixes: each id gets coordinates from a truncated SVD of the binary
 * interaction matrix A [n_rows, n_cols] (its projection A V_k on the top-k right
 * singular vectors, i.e. U_k S_k, from the randomized range finder with power
 * iterations of Halko, Martinsson & Tropp, SIAM Review 53(2), 2011, Algorithms
 * 4.4 and 5.1), and the ids are placed by the balanced hierarchical k-means of
 * fpd_row_perm_cluster over those coordinates (the hierarchy of the row modes).
 * The accuracy issue measured the method with recursive PCA bisection in place of
 * the k-means (HR@10 of GMF from 0.6775 to 0.7406 at 11.5x); we use the project's
 * existing balanced k-means, which fills the same hierarchy and needs no second
 * clustering code.
 *
 * Then the last row digit is aligned across groups (align_last_digit): slot j of
 * every group holds the id nearest a common residual center, so that the ids that
 * share a slice of the last core are alike too (on Gowalla this lifted FPD over
 * ordered ids by 3-6% Recall@20 in a prototype; README, "Equal-size comparison").
 *
 * Cost: O(nnz * (dims + 8) * (2 q + 2)) for the SVD (q = 2 power iterations), plus
 * the clustering's, plus G L^2 (dims + 24) per alignment round (skipped above
 * ALIGN_MAX_FLOPS). Memory: the CSR of A and its transpose, and a few
 * [n, dims + 8] blocks in double.
 */
#include "fpd-impl.h"
#include "cpu/kernels-cpu.h"

#include <lapacke.h>
#include <math.h>
#include <string.h>

#define OVERSAMPLE 8
#define POWER_ITERS 2
#define ALIGN_ITERS 6
#define ALIGN_MAX_FLOPS 2e10 /* about 10 s; Gowalla's 40,981 items: 1e9 */

/* A (cost, id, slot) candidate of one group's slot assignment. */
struct pair {
    double cost;
    int64_t a, j;
};

static int cmp_pair(const void *x, const void *y) {
    const struct pair *p = x, *q = y;
    if (p->cost != q->cost) return p->cost < q->cost ? -1 : 1;
    if (p->a != q->a) return p->a < q->a ? -1 : 1; /* ties: deterministic */
    return p->j < q->j ? -1 : p->j > q->j;
}

/* Align the last row digit across groups (the groups: stored rows that share all
 * other digits, L = row_shape[k-1] rows each). The clustering fills each group with
 * similar ids but places them on the L slots of the last digit in no particular
 * order, and the last core's slice of slot j is shared by the ids at slot j of every
 * group: unrelated ids. Here slot j gets, in every group, the id whose residual (its
 * coordinates less its group's mean) is nearest a common center C_j: a balanced
 * k-means over the residuals with the constraint of one id per slot and group (each
 * group's assignment greedy by increasing distance; C_j the mean residual at slot j;
 * ALIGN_ITERS rounds from centers drawn among the residuals). The leading digits do
 * not change. emb [n, dims] row-major; perm as fpd_row_perm_cluster gives it,
 * updated in place. Cost per round: G L^2 (dims + log L^2) for G groups. */
static enum fpd_status align_last_digit(const float *emb, int64_t n, int64_t dims,
                                        const struct fpd_layer_shape *shape, uint64_t seed, int64_t *perm,
                                        struct fpd_error *err) {
    const int64_t L = shape->row_shape[shape->k - 1];
    int64_t padded = 1;
    for (int32_t m = 0; m < shape->k; m++) padded *= shape->row_shape[m];
    const int64_t G = padded / L;
    if (L < 2 || G < 2) return FPD_STATUS_OK; /* one slot or one group: nothing to align */
    if ((double)G * (double)L * (double)L * (double)(dims + 24) * ALIGN_ITERS > ALIGN_MAX_FLOPS)
        return FPD_STATUS_OK; /* too costly (very long last modes): left as the clustering placed them */
    enum fpd_status st = FPD_STATUS_OK;
    int64_t *inv = fpd_malloc((size_t)padded * sizeof(int64_t));
    double *res = fpd_malloc((size_t)(n * dims) * sizeof(double));
    double *cen = fpd_calloc((size_t)(L * dims), sizeof(double));
    double *sum = fpd_malloc((size_t)(L * dims) * sizeof(double));
    int64_t *cnt = fpd_malloc((size_t)L * sizeof(int64_t));
    struct pair *pr = fpd_malloc((size_t)(L * L) * sizeof(struct pair));
    bool *used_a = fpd_malloc((size_t)L * sizeof(bool)), *used_j = fpd_malloc((size_t)L * sizeof(bool));
    int64_t *dst = fpd_malloc((size_t)L * sizeof(int64_t)); /* the group's new slots: dst[j] = id */
    if (!inv || !res || !cen || !sum || !cnt || !pr || !used_a || !used_j || !dst) {
        st = fpd__err(err, FPD_STATUS_NOMEM, "out of memory for aligning the last row digit of %lld ids",
                      (long long)n);
        goto done;
    }
    for (int64_t x = 0; x < padded; x++) inv[x] = -1;
    for (int64_t i = 0; i < n; i++) inv[perm[i]] = i;
    for (int64_t g = 0; g < G; g++) { /* residuals: coordinates less the group's mean */
        int64_t m = 0;
        for (int64_t q = 0; q < dims; q++) sum[q] = 0.0;
        for (int64_t x = g * L; x < (g + 1) * L; x++)
            if (inv[x] >= 0) {
                m++;
                for (int64_t q = 0; q < dims; q++) sum[q] += emb[inv[x] * dims + q];
            }
        for (int64_t x = g * L; x < (g + 1) * L; x++)
            if (inv[x] >= 0)
                for (int64_t q = 0; q < dims; q++) res[inv[x] * dims + q] = emb[inv[x] * dims + q] - sum[q] / (double)m;
    }
    uint64_t rng = seed ^ 0x6a09e667f3bcc909ull;
    for (int64_t j = 0; j < L; j++) { /* centers: residuals of random ids (drawn with replacement; a repeat
                                         gives two equal centers, which the rounds then separate) */
        const int64_t i = (int64_t)(fpd__rand_u64(&rng) % (uint64_t)n);
        for (int64_t q = 0; q < dims; q++) cen[j * dims + q] = res[i * dims + q];
    }
    for (int it = 0; it < ALIGN_ITERS; it++) {
        for (int64_t x = 0; x < L * dims; x++) sum[x] = 0.0;
        for (int64_t j = 0; j < L; j++) cnt[j] = 0;
        for (int64_t g = 0; g < G; g++) {
            int64_t np = 0, na = 0; /* the group's ids are inv[g L + a], a < L */
            for (int64_t a = 0; a < L; a++) {
                const int64_t i = inv[g * L + a];
                if (i < 0) continue;
                na++;
                for (int64_t j = 0; j < L; j++) {
                    double c = 0.0;
                    for (int64_t q = 0; q < dims; q++) {
                        const double t = res[i * dims + q] - cen[j * dims + q];
                        c += t * t;
                    }
                    pr[np++] = (struct pair){c, a, j};
                }
            }
            if (na == 0) continue;
            qsort(pr, (size_t)np, sizeof *pr, cmp_pair);
            for (int64_t a = 0; a < L; a++) used_a[a] = used_j[a] = false;
            /* greedy: the nearest free (id, slot) pairs first */
            for (int64_t j = 0; j < L; j++) dst[j] = -1;
            for (int64_t t = 0, left = na; t < np && left > 0; t++) {
                if (used_a[pr[t].a] || used_j[pr[t].j]) continue;
                used_a[pr[t].a] = used_j[pr[t].j] = true;
                dst[pr[t].j] = inv[g * L + pr[t].a];
                left--;
            }
            for (int64_t j = 0; j < L; j++) {
                inv[g * L + j] = dst[j];
                if (dst[j] < 0) continue;
                cnt[j]++;
                for (int64_t q = 0; q < dims; q++) sum[j * dims + q] += res[dst[j] * dims + q];
            }
        }
        for (int64_t j = 0; j < L; j++)
            if (cnt[j] > 0)
                for (int64_t q = 0; q < dims; q++) cen[j * dims + q] = sum[j * dims + q] / (double)cnt[j];
    }
    for (int64_t x = 0; x < padded; x++)
        if (inv[x] >= 0) perm[inv[x]] = x;
done:
    fpd_free(inv);
    fpd_free(res);
    fpd_free(cen);
    fpd_free(sum);
    fpd_free(cnt);
    fpd_free(pr);
    fpd_free(used_a);
    fpd_free(used_j);
    fpd_free(dst);
    return st;
}

/* The interaction matrix in CSR; a repeated pair counts as often as it appears,
 * as a repeated positive does in the trainers. */
struct csr {
    int64_t *off, *col;
    int64_t n;
};

static void csr_free(struct csr *c) {
    fpd_free(c->off);
    fpd_free(c->col);
}

static enum fpd_status csr_build(const int64_t *r, const int64_t *c, int64_t nnz, int64_t n, struct csr *out,
                                 struct fpd_error *err) {
    out->n = n;
    out->off = fpd_calloc((size_t)(n + 1), sizeof(int64_t));
    out->col = fpd_malloc((size_t)(nnz > 0 ? nnz : 1) * sizeof(int64_t));
    int64_t *fill = fpd_calloc((size_t)(n > 0 ? n : 1), sizeof(int64_t));
    if (!out->off || !out->col || !fill) {
        fpd_free(fill);
        csr_free(out);
        return fpd__err(err, FPD_STATUS_NOMEM, "out of memory for %lld interactions", (long long)nnz);
    }
    for (int64_t t = 0; t < nnz; t++) out->off[r[t] + 1]++;
    for (int64_t i = 0; i < n; i++) out->off[i + 1] += out->off[i];
    for (int64_t t = 0; t < nnz; t++) out->col[out->off[r[t]] + fill[r[t]]++] = c[t];
    fpd_free(fill);
    return FPD_STATUS_OK;
}

/* y[n, l] = A x with A in CSR (n rows), x [cols, l]; row-major. */
static void csr_mul(const struct csr *a, const double *x, int64_t l, double *y) {
    for (int64_t i = 0; i < a->n; i++) {
        double *yr = y + i * l;
        memset(yr, 0, (size_t)l * sizeof(double));
        for (int64_t q = a->off[i]; q < a->off[i + 1]; q++) {
            const double *xr = x + a->col[q] * l;
            for (int64_t j = 0; j < l; j++) yr[j] += xr[j];
        }
    }
}

/* Orthonormal columns of y [n, l] in place (Householder QR, LAPACKE). */
static enum fpd_status orthonormalize(double *y, int64_t n, int64_t l, double *tau, struct fpd_error *err) {
    lapack_int info = LAPACKE_dgeqrf(LAPACK_ROW_MAJOR, (lapack_int)n, (lapack_int)l, y, (lapack_int)l, tau);
    if (!info) info = LAPACKE_dorgqr(LAPACK_ROW_MAJOR, (lapack_int)n, (lapack_int)l, (lapack_int)l, y, (lapack_int)l, tau);
    if (info == LAPACK_WORK_MEMORY_ERROR) return fpd__err(err, FPD_STATUS_NOMEM, "out of memory for a QR of %lld x %lld",
                                                          (long long)n, (long long)l);
    if (info) return fpd__err(err, info < 0 ? FPD_STATUS_INVALID_ARG : FPD_STATUS_NUMERIC,
                              "LAPACKE QR of a %lld x %lld block failed (info %d)", (long long)n, (long long)l, (int)info);
    return FPD_STATUS_OK;
}

enum fpd_status fpd_row_order_interactions(const int64_t *rows, const int64_t *cols, int64_t n, int64_t n_rows,
                                           int64_t n_cols, const struct fpd_layer_shape *shape, int64_t dims,
                                           uint64_t seed, int64_t *perm, struct fpd_error *err) {
    enum fpd_status st = fpd_layer_shape_check(shape, err);
    if (st) return st;
    if (shape->rows != n_rows)
        return fpd__err(err, FPD_STATUS_SHAPE, "the layer has %lld rows, the interactions %lld ids",
                        (long long)shape->rows, (long long)n_rows);
    if (n < 1 || n_cols < 1 || dims < 1)
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "need interactions, columns and dims >= 1 (got %lld, %lld, %lld)",
                        (long long)n, (long long)n_cols, (long long)dims);
    for (int64_t t = 0; t < n; t++)
        if (rows[t] < 0 || rows[t] >= n_rows || cols[t] < 0 || cols[t] >= n_cols)
            return fpd__err(err, FPD_STATUS_INVALID_ARG, "interaction %lld (%lld, %lld) is outside [0, %lld) x [0, %lld)",
                            (long long)t, (long long)rows[t], (long long)cols[t], (long long)n_rows,
                            (long long)n_cols);
    int64_t l = dims + OVERSAMPLE;
    if (l > n_rows) l = n_rows;
    if (l > n_cols) l = n_cols;
    if (dims > l) dims = l;
    struct csr a = {0}, at = {0};
    double *y = NULL, *z = NULL, *tau = NULL, *g = NULL, *ev = NULL, *vec = NULL;
    float *emb = NULL;
    if ((st = csr_build(rows, cols, n, n_rows, &a, err)) || (st = csr_build(cols, rows, n, n_cols, &at, err))) goto done;
    y = fpd_malloc((size_t)(n_rows * l) * sizeof(double));
    z = fpd_malloc((size_t)(n_cols * l) * sizeof(double));
    tau = fpd_malloc((size_t)l * sizeof(double));
    g = fpd_calloc((size_t)(l * l), sizeof(double));
    ev = fpd_malloc((size_t)l * sizeof(double));
    vec = fpd_malloc((size_t)(l * dims) * sizeof(double));
    emb = fpd_malloc((size_t)(n_rows * dims) * sizeof(float));
    if (!y || !z || !tau || !g || !ev || !vec || !emb) {
        st = fpd__err(err, FPD_STATUS_NOMEM, "out of memory for the row order of %lld ids", (long long)n_rows);
        goto done;
    }
    /* range finder: Y = A Omega, then (A A^T)^q Y, orthonormalized between steps */
    uint64_t rng = seed ^ 0xa4093822299f31d0ull;
    for (int64_t i = 0; i < n_cols * l; i++) z[i] = fpd__rand_normal(&rng);
    csr_mul(&a, z, l, y);
    if ((st = orthonormalize(y, n_rows, l, tau, err))) goto done;
    for (int it = 0; it < POWER_ITERS; it++) {
        csr_mul(&at, y, l, z);
        if ((st = orthonormalize(z, n_cols, l, tau, err))) goto done;
        csr_mul(&a, z, l, y);
        if ((st = orthonormalize(y, n_rows, l, tau, err))) goto done;
    }
    /* B = Y^T A, [l, n_cols], as Z = A^T Y [n_cols, l] = B^T; B B^T = Z^T Z = W S^2 W^T;
     * the coordinates A V_k = U_k S_k = Y W_k S_k = Y (B B^T) W_k / S_k ... more
     * simply: U S = Y W S, with W S = (Z^T Z) W / S; we use Y W_k S_k directly. */
    csr_mul(&at, y, l, z);
    fpd__cpu_dsyrk(true, l, n_cols, z, l, g, l);
    if ((st = fpd__cpu_dsyev_top(l, g, dims, ev, vec, err))) goto done;
    for (int64_t i = 0; i < n_rows; i++)
        for (int64_t q = 0; q < dims; q++) {
            double s = 0.0;
            for (int64_t j = 0; j < l; j++) s += y[i * l + j] * vec[j * dims + q];
            emb[i * dims + q] = (float)(s * sqrt(ev[q] > 0.0 ? ev[q] : 0.0));
        }
    {
        struct fpd_layer_shape cs = *shape;
        cs.dim = dims;
        cs.col_shape[0] = dims;
        for (int32_t m = 1; m < cs.k; m++) cs.col_shape[m] = 1;
        struct fpd_table_view v = {emb, FPD_DTYPE_F32, n_rows, dims};
        st = fpd_row_perm_cluster(&v, &cs, seed, perm, err);
    }
    if (!st) st = align_last_digit(emb, n_rows, dims, shape, seed, perm, err);
done:
    csr_free(&a);
    csr_free(&at);
    fpd_free(y);
    fpd_free(z);
    fpd_free(tau);
    fpd_free(g);
    fpd_free(ev);
    fpd_free(vec);
    fpd_free(emb);
    return st;
}
