/*
 * predict.c - predicted relative errors of candidate FPD configurations, from the
 * table's data (fpd__ttsvd_profile, fpd__predict_errors; contracts in
 * heuristics-impl.h, method in the header comment of fpd-heuristics.h).
 *
 * p = 1. The fit of one term starts with TT-SVD (Oseledets 2011, Algorithm 1):
 * sequential truncated SVDs of the unfoldings of the zero-padded table viewed as a
 * tensor with interleaved modes (n_0 d_0, ..., n_{k-1} d_{k-1}). Each truncation
 * is an orthogonal projection, so the squared error is exactly the sum of the
 * energies discarded at the k - 1 steps. The first step (the Gram matrix of the
 * [n_0 d_0, N D / (n_0 d_0)] unfolding, streamed over the rows, and its eigen-
 * decomposition) does not depend on the rank: it is done once, then the table is
 * projected on the leading max-rank eigenvectors, and for each rank r the first r
 * rows of that projection run through the remaining (small) steps. So one call
 * costs about one TT-SVD at the largest rank, whatever the number of ranks.
 *
 * Large tables (N D > full_cells). A row sample keeps the first and last row
 * modes whole and takes a random subset of the digits of each middle mode: a
 * table with row shape (n_0, s, .., s, n_{k-1}) whose rows are real rows of W.
 * TT-SVD on it is optimistic: its end cores are fitted to fewer middle slices
 * (an over-fit that shrinks like 1/s). Two nested samples, s and 2s digits per
 * middle mode, give e^2(s) and e^2(2s); with e^2(x) = A - c/x the full middle
 * modes (geometric mean n) give
 *
 *     e^2 = e^2(2s) + (e^2(2s) - e^2(s)) (1 - 2s/n).
 *
 * On GloVe (20000 x 100, k = 3, n_1 = 25) and the NCF tables this is within 3%
 * of the full-table value for s = 2 and within 12% for s = 1 (k = 3), and within
 * 4% for s = 4 with k = 4, where s = 1 is not usable (both middle bonds collapse),
 * so k = 4 samples take s >= 2. s is the largest of 8, 4, 2 (1 for k = 3) whose 2s
 * sample has at most FPD__PREDICT_FULL_CELLS cells; the smallest is taken when
 * none does, which costs more (about n_0 d_0 * cells flops, e.g. 10^11 for a
 * 4 * 10^7 x 128 table with k = 3). k <= 2 has no middle mode: no estimate.
 *
 * p > 1. The fit is backfitting: each term TT-SVD-fitted to the residual of the
 * others. A sum of p trains of rank r lies between one train with the same
 * middle-core parameters (p r^2 = (r sqrt(p))^2, rank r sqrt(p)) and one with the
 * same total bond dimension (rank p r, which contains the sum: block-diagonal
 * cores). On tables without row structure (GloVe, NCF) backfitting lands near the
 * first (GloVe (10, 2): 0.931; TT-SVD rank 14: 0.932, rank 20: 0.924), on strongly
 * structured ones nearer the second; the prediction is the geometric mean of the
 * two errors: within 2% of backfitting on GloVe and the NCF tables, 5% on a
 * synthetic table with strong smooth row structure (where r sqrt(p) alone is 11%
 * high). The error at rank r sqrt(p) is interpolated linearly in e^2 between
 * integer ranks.
 *
 * Checked at scale: on 10^6 x 100 tables drawn with GloVe's mean and covariance
 * (iid rows, and the same rows sorted by their first principal component), the
 * sampled prediction (s = 4) was within 0.2% of fpd-compress's fits at (20,1),
 * (10,2), (40,1) (k = 3) and (10,1) (k = 4).
 *
 * c > 0 free coordinates (free_profile): the fit's own first stage and free
 * coordinates on the same rows (whole table or the two samples), one TT-SVD per
 * rank, then combined and extrapolated as for c = 0 (fpd-heuristics.h, "FREE
 * COORDINATES", says what it predicts and its bias).
 */
#include "heuristics/heuristics-impl.h"
#include "lib/fpd-impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Seed of the middle-digit samples (deterministic output). */
#define PREDICT_SEED UINT64_C(0x243F6A8885A308D3)

/* ------------------------------------------------------------- row maps */

/* Sample row q (in the row shape ns) -> original row of w. Mode m of the sample
 * takes the digits sel[m][0..ns[m]) of the full mode (NULL: all, ns[m] = full[m]). */
struct row_map {
    const struct fpd_table_view *w;
    int32_t k;
    int64_t full[FPD_MAX_MODES];
    int64_t ns[FPD_MAX_MODES];
    const int64_t *sel[FPD_MAX_MODES];
};

/* Original row of sample row q, or -1 for a padding row. */
static int64_t map_row(const struct row_map *mp, int64_t q) {
    int64_t orig = 0, stride = 1;
    for (int32_t m = mp->k - 1; m >= 0; m--) {
        int64_t a = q % mp->ns[m];
        q /= mp->ns[m];
        orig += (mp->sel[m] ? mp->sel[m][a] : a) * stride;
        stride *= mp->full[m];
    }
    return orig < mp->w->rows ? orig : -1;
}

/* Sample rows [q0, q0 + cnt) into buf[cnt * dim] (F32; padding rows zero),
 * reading runs of consecutive original rows at once. */
static enum fpd_status fetch_rows(const struct row_map *mp, int64_t q0, int64_t cnt, float *buf,
                                  struct fpd_error *err) {
    const int64_t dim = mp->w->dim;
    int64_t q = 0;
    while (q < cnt) {
        int64_t o = map_row(mp, q0 + q);
        if (o < 0) {
            memset(buf + q * dim, 0, (size_t)dim * sizeof(float));
            q++;
            continue;
        }
        int64_t len = 1;
        while (q + len < cnt && map_row(mp, q0 + q + len) == o + len) len++;
        enum fpd_status st = fpd_table_view_rows(mp->w, o, o + len, buf + q * dim, err);
        if (st) return st;
        for (int64_t e = 0; e < len * dim; e++)
            if (!isfinite(buf[q * dim + e]))
                return fpd__err(err, FPD_STATUS_INVALID_ARG, "row %lld, column %lld is %s; the table must be finite",
                                (long long)(o + e / dim), (long long)(e % dim),
                                isnan(buf[q * dim + e]) ? "NaN" : "infinite");
        q += len;
    }
    return FPD_STATUS_OK;
}

/* ------------------------------------------------------------- the profile */

/* Offset in the interleaved index of modes 1..k-1 ([n_1 d_1, ..., n_{k-1} d_{k-1}])
 * of the row part irest (digits of modes 1..k-1) and of the column part jrest. */
static int64_t rest_offset_i(const int64_t *n, const int64_t *d, int32_t k, int64_t irest) {
    int64_t off = 0, stride = 1;
    for (int32_t m = k - 1; m >= 1; m--) {
        off += (irest % n[m]) * d[m] * stride;
        irest /= n[m];
        stride *= n[m] * d[m];
    }
    return off;
}

static int64_t rest_offset_j(const int64_t *n, const int64_t *d, int32_t k, int64_t jrest) {
    int64_t off = 0, stride = 1;
    for (int32_t m = k - 1; m >= 1; m--) {
        off += (jrest % d[m]) * stride;
        jrest /= d[m];
        stride *= n[m] * d[m];
    }
    return off;
}

/* x[(i0 d0 + j0), (b, jr)] = sample row (i0 nr + b0 + b), column j0 dr + jr, for
 * b < cnt: the first unfolding's columns of the suffixes [b0, b0 + cnt). */
static enum fpd_status gather(const struct row_map *mp, int64_t d0, int64_t nr, int64_t b0, int64_t cnt,
                              float *rowbuf, double *x, struct fpd_error *err) {
    const int64_t dim = mp->w->dim, dr = dim / d0, ld = cnt * dr;
    for (int64_t i0 = 0; i0 < mp->ns[0]; i0++) {
        enum fpd_status st = fetch_rows(mp, i0 * nr + b0, cnt, rowbuf, err);
        if (st) return st;
        for (int64_t j0 = 0; j0 < d0; j0++) {
            double *dst = x + (i0 * d0 + j0) * ld;
            for (int64_t b = 0; b < cnt; b++) {
                const float *src = rowbuf + b * dim + j0 * dr;
                for (int64_t jr = 0; jr < dr; jr++) dst[b * dr + jr] = (double)src[jr];
            }
        }
    }
    return FPD_STATUS_OK;
}


/* Energy discarded by TT-SVD steps 1..k-2 at uniform rank `rank`, starting from the
 * projection c [r1, cols] (row-major, interleaved modes 1..k-1), into *out. */
static enum fpd_status later_steps(const double *c, int64_t r1, int64_t cols, const int64_t *n, const int64_t *d,
                                   int32_t k, int64_t rank, double *out, struct fpd_error *err) {
    enum fpd_status st = FPD_STATUS_OK;
    const double *cur = c;
    double *own = NULL, *g = NULL, *w = NULL, *next = NULL;
    int64_t ra = r1;
    double discarded = 0.0;
    for (int32_t m = 1; m < k - 1; m++) {
        int64_t nd = n[m] * d[m];
        int64_t rows = ra * nd;
        cols /= nd;
        int64_t rb = rank;
        if (rb > rows) rb = rows;
        if (rb > cols) rb = cols;
        bool left = rows <= cols;
        int64_t small = left ? rows : cols;
        g = fpd_calloc((size_t)(small * small), sizeof(double));
        w = fpd_malloc((size_t)(rb > 0 ? rb : 1) * sizeof(double));
        bool last = m == k - 2;
        double *vec = NULL;
        if (!last) {
            next = fpd_calloc((size_t)(rb * cols), sizeof(double));
            vec = fpd_malloc((size_t)(small * rb) * sizeof(double));
        }
        if (!g || !w || (!last && (!next || !vec))) {
            fpd_free(vec);
            st = fpd__err(err, FPD_STATUS_NOMEM, "out of memory for a %lld x %lld unfolding in the error prediction",
                          (long long)rows, (long long)cols);
            goto done;
        }
        fpd_linalg_dsyrk(!left, small, left ? cols : rows, cur, cols, g, small);
        double trace = 0.0;
        for (int64_t i = 0; i < small; i++) trace += g[i * small + i];
        if ((st = fpd_linalg_eig_top(small, g, rb, w, vec, err))) {
            fpd_free(vec);
            goto done;
        }
        double kept = 0.0;
        for (int64_t q = 0; q < rb; q++) kept += w[q] > 0.0 ? w[q] : 0.0;
        discarded += trace > kept ? trace - kept : 0.0;
        if (!last) {
            /* next = U_rb^T cur: with the row-side Gram (left) U is its eigenvectors;
             * with the column side, C^T C = V S^2 V^T and U^T C = S V^T. */
            if (left) {
                fpd_linalg_dgemm(true, false, rb, cols, rows, 1.0, vec, rb, cur, cols, 0.0, next, cols);
            } else {
                for (int64_t q = 0; q < rb; q++) {
                    double sig = w[q] > 0.0 ? sqrt(w[q]) : 0.0;
                    for (int64_t j = 0; j < cols; j++) next[q * cols + j] = sig * vec[j * rb + q];
                }
            }
            fpd_free(vec);
            fpd_free(own);
            own = next;
            cur = own;
            next = NULL;
        }
        fpd_free(g);
        fpd_free(w);
        g = w = NULL;
        ra = rb;
    }
    *out = discarded;
done:
    fpd_free(own);
    fpd_free(g);
    fpd_free(w);
    fpd_free(next);
    return st;
}

/* err2[i] = relative squared TT-SVD error at ranks[i] of the (sampled) table of mp
 * in column shape col; the sample's energy is the denominator. */
static enum fpd_status profile(const struct row_map *mp, const int64_t *col, const int64_t *ranks, int64_t nrk,
                               double *err2, struct fpd_error *err) {
    enum fpd_status st = FPD_STATUS_OK;
    const int32_t k = mp->k;
    const int64_t dim = mp->w->dim, n0 = mp->ns[0], d0 = col[0], dr = dim / d0;
    if (k == 1) { /* one core is the table itself */
        for (int64_t i = 0; i < nrk; i++) err2[i] = 0.0;
        return FPD_STATUS_OK;
    }
    int64_t nr = 1;
    for (int32_t m = 1; m < k; m++) nr *= mp->ns[m];
    const int64_t m0 = n0 * d0, cols0 = nr * dr;
    int64_t nb = 4096 / dr;
    if (nb < 1) nb = 1;
    if (nb > nr) nb = nr;

    int64_t rmax = 1;
    for (int64_t i = 0; i < nrk; i++) rmax = ranks[i] > rmax ? ranks[i] : rmax;
    if (rmax > m0) rmax = m0;
    if (rmax > cols0) rmax = cols0;
    const bool more = k > 2; /* steps after the first */

    double *g = fpd_calloc((size_t)(m0 * m0), sizeof(double));
    double *ev = fpd_malloc((size_t)m0 * sizeof(double));
    double *x = fpd_malloc((size_t)(m0 * nb * dr) * sizeof(double));
    float *rowbuf = fpd_malloc((size_t)(nb * dim) * sizeof(float));
    double *u = NULL, *cur = NULL, *proj = NULL;
    int64_t *joff = NULL;
    if (!g || !ev || !x || !rowbuf) {
        st = fpd__err(err, FPD_STATUS_NOMEM,
                      "out of memory for the error prediction (first unfolding %lld x %lld)", (long long)m0,
                      (long long)cols0);
        goto done;
    }
    for (int64_t b0 = 0; b0 < nr; b0 += nb) {
        int64_t cnt = b0 + nb <= nr ? nb : nr - b0;
        if ((st = gather(mp, d0, nr, b0, cnt, rowbuf, x, err))) goto done;
        fpd_linalg_dsyrk(false, m0, cnt * dr, x, cnt * dr, g, m0);
    }
    double energy = 0.0;
    for (int64_t i = 0; i < m0; i++) energy += g[i * m0 + i];
    if (!(energy > 0.0)) { /* an all-zero table: every TT is exact */
        for (int64_t i = 0; i < nrk; i++) err2[i] = 0.0;
        goto done;
    }
    u = fpd_malloc((size_t)(m0 * rmax) * sizeof(double));
    if (!u) {
        st = fpd__err(err, FPD_STATUS_NOMEM, "out of memory for the error prediction");
        goto done;
    }
    if ((st = fpd_linalg_eig_top(m0, g, rmax, ev, more ? u : NULL, err))) goto done;

    if (more) {
        cur = fpd_calloc((size_t)(rmax * cols0), sizeof(double));
        proj = fpd_malloc((size_t)(rmax * nb * dr) * sizeof(double));
        joff = fpd_malloc((size_t)dr * sizeof(int64_t));
        if (!cur || !proj || !joff) {
            st = fpd__err(err, FPD_STATUS_NOMEM, "out of memory for the error prediction (%lld x %lld projection)",
                          (long long)rmax, (long long)cols0);
            goto done;
        }
        for (int64_t jr = 0; jr < dr; jr++) joff[jr] = rest_offset_j(mp->ns, col, k, jr);
        for (int64_t b0 = 0; b0 < nr; b0 += nb) {
            int64_t cnt = b0 + nb <= nr ? nb : nr - b0;
            if ((st = gather(mp, d0, nr, b0, cnt, rowbuf, x, err))) goto done;
            fpd_linalg_dgemm(true, false, rmax, cnt * dr, m0, 1.0, u, rmax, x, cnt * dr, 0.0, proj, cnt * dr);
            for (int64_t b = 0; b < cnt; b++) {
                int64_t ioff = rest_offset_i(mp->ns, col, k, b0 + b);
                for (int64_t q = 0; q < rmax; q++) {
                    const double *src = proj + q * cnt * dr + b * dr;
                    double *dst = cur + q * cols0 + ioff;
                    for (int64_t jr = 0; jr < dr; jr++) dst[joff[jr]] = src[jr];
                }
            }
        }
    }
    for (int64_t i = 0; i < nrk; i++) {
        int64_t r1 = ranks[i] < 1 ? 1 : ranks[i];
        if (r1 > m0) r1 = m0;
        if (r1 > cols0) r1 = cols0;
        double kept = 0.0;
        for (int64_t q = 0; q < r1; q++) kept += ev[q] > 0.0 ? ev[q] : 0.0;
        double e = energy > kept ? energy - kept : 0.0;
        if (more) {
            double rest = 0.0;
            if ((st = later_steps(cur, r1, cols0, mp->ns, col, k, ranks[i], &rest, err))) goto done;
            e += rest;
        }
        e /= energy;
        err2[i] = e < 0.0 ? 0.0 : (e > 1.0 ? 1.0 : e);
    }
done:
    fpd_free(g);
    fpd_free(ev);
    fpd_free(x);
    fpd_free(rowbuf);
    fpd_free(u);
    fpd_free(cur);
    fpd_free(proj);
    fpd_free(joff);
    return st;
}

/* Ranks of 4 or more cores cost an eigenproblem of up to (r n_1 d_1)^2 per rank in the
 * middle steps; they are evaluated on a ladder of ranks (each at least LADDER times
 * the previous, the first and last always) and the others interpolated linearly in
 * e^2. k <= 3 evaluates every rank (its last step needs eigenvalues only). */
#define LADDER 1.15

/* profile() at the sorted distinct ranks[0..n), thinned to a ladder for k >= 4. */
static enum fpd_status profile_ranks(const struct row_map *mp, const int64_t *col, const int64_t *ranks, int64_t n,
                                     double *err2, struct fpd_error *err) {
    if (mp->k < 4 || n <= 2) return profile(mp, col, ranks, n, err2, err);
    int64_t *ev = fpd_malloc((size_t)n * sizeof(int64_t));
    double *ee = fpd_malloc((size_t)n * sizeof(double));
    enum fpd_status st = FPD_STATUS_OK;
    if (!ev || !ee) {
        st = fpd__err(err, FPD_STATUS_NOMEM, "out of memory in the error prediction");
        goto done;
    }
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++)
        if (m == 0 || i == n - 1 || (double)ranks[i] >= LADDER * (double)ev[m - 1]) ev[m++] = ranks[i];
    if ((st = profile(mp, col, ev, m, ee, err))) goto done;
    for (int64_t i = 0, j = 0; i < n; i++) {
        while (j + 1 < m && ev[j + 1] <= ranks[i]) j++;
        if (ev[j] == ranks[i] || j + 1 >= m) err2[i] = ee[j];
        else err2[i] = ee[j] + (ee[j + 1] - ee[j]) * (double)(ranks[i] - ev[j]) / (double)(ev[j + 1] - ev[j]);
    }
done:
    fpd_free(ev);
    fpd_free(ee);
    return st;
}

/* Free coordinates (c > 0). fpd_fit with free_coords = c ends with
 * fpd_fit_free_coords: the residual R = W - TT less its best rank-c approximation.
 * The profile runs exactly that after the fit's first stage: for each rank needed,
 * fpd_fit_ttsvd on the (sampled) table of mp, then fpd_fit_free_coords with the
 * largest c; E = U_c S_c, so column q of E has squared norm sigma_q^2 of R and the
 * error with c' <= c coordinates is the discarded energy plus sigma_q^2 for q >= c'.
 * err2[i * ncs + j] (relative to the sample's energy) for rank ranks[i] (each i with
 * need[i]; the others are left alone) and cs[j] coordinates. Sample rows that are
 * padding (map_row < 0) come last (the digit subsets are sorted), so the sample is
 * its first nreal rows, zero-padded by the fit to the sample's row shape as the full
 * table is to its own. Cost: one TT-SVD and two passes of D^2 per row per rank. */
static enum fpd_status free_profile(const struct row_map *mp, const int64_t *col, const int64_t *ranks,
                                    const bool *need, int64_t nr, const int64_t *cs, int64_t ncs, double *err2,
                                    struct fpd_error *err) {
    const int32_t k = mp->k;
    const int64_t dim = mp->w->dim;
    int64_t total = 1, cmax = 0;
    for (int32_t m = 0; m < k; m++) total *= mp->ns[m];
    for (int64_t j = 0; j < ncs; j++) cmax = cs[j] > cmax ? cs[j] : cmax;
    int64_t nreal = total;
    while (nreal > 0 && map_row(mp, nreal - 1) < 0) nreal--;
    float *buf = fpd_malloc((size_t)((nreal > 0 ? nreal : 1) * dim) * sizeof(float));
    double *lam = fpd_calloc((size_t)(cmax > 0 ? cmax : 1), sizeof(double));
    struct fpd_layer *l = NULL;
    enum fpd_status st = FPD_STATUS_OK;
    if (!buf || !lam) {
        st = fpd__err(err, FPD_STATUS_NOMEM, "out of memory for a %lld x %lld sample in the error prediction",
                      (long long)nreal, (long long)dim);
        goto done;
    }
    if ((st = fetch_rows(mp, 0, nreal, buf, err))) goto done;
    double energy = 0.0;
    for (int64_t e = 0; e < nreal * dim; e++) energy += (double)buf[e] * (double)buf[e];
    struct fpd_table_view view = {buf, FPD_DTYPE_F32, nreal, dim};
    struct fpd_layer_shape s;
    memset(&s, 0, sizeof s);
    s.rows = nreal;
    s.dim = dim;
    s.k = k;
    s.terms = 1;
    memcpy(s.row_shape, mp->ns, (size_t)k * sizeof(int64_t));
    memcpy(s.col_shape, col, (size_t)k * sizeof(int64_t));
    struct fpd_fit_params fp = fpd_fit_default_params();
    for (int64_t i = 0; i < nr; i++) {
        if (!need[i]) continue;
        if (!(energy > 0.0) || cmax == 0) { /* an all-zero table: exact */
            for (int64_t j = 0; j < ncs; j++) err2[i * ncs + j] = 0.0;
            continue;
        }
        fpd_layer_shape_set_rank(&s, ranks[i] < 1 ? 1 : ranks[i]);
        double disc = 0.0;
        if ((st = fpd_fit_ttsvd(&view, &s, &fp, &l, err))) goto done;
        if ((st = fpd_fit_free_coords(l, &view, cmax, &disc, err))) goto done;
        const float *e = fpd_layer_get_free_e_const(l);
        for (int64_t q = 0; q < cmax; q++) lam[q] = 0.0;
        for (int64_t row = 0; row < nreal; row++)
            for (int64_t q = 0; q < cmax; q++) lam[q] += (double)e[row * cmax + q] * (double)e[row * cmax + q];
        for (int64_t j = 0; j < ncs; j++) {
            double v = disc;
            for (int64_t q = cs[j]; q < cmax; q++) v += lam[q];
            v /= energy;
            err2[i * ncs + j] = v < 0.0 ? 0.0 : (v > 1.0 ? 1.0 : v);
        }
        fpd_layer_free(l);
        l = NULL;
    }
done:
    fpd_layer_free(l);
    fpd_free(buf);
    fpd_free(lam);
    return st;
}

static enum fpd_status check_view(const struct fpd_table_view *w, const struct fpd_layer_shape *s,
                                  struct fpd_error *err) {
    if (w->rows != s->rows || w->dim != s->dim)
        return fpd__err(err, FPD_STATUS_SHAPE, "table [%lld, %lld] does not match the shape [%lld, %lld]",
                        (long long)w->rows, (long long)w->dim, (long long)s->rows, (long long)s->dim);
    if (!fpd_dtype_is_float(w->dtype))
        return fpd__err(err, FPD_STATUS_DTYPE, "table dtype %s is not a float dtype", fpd_dtype_name(w->dtype));
    return FPD_STATUS_OK;
}

enum fpd_status fpd__ttsvd_profile(const struct fpd_table_view *w, const struct fpd_layer_shape *shape,
                                   const int64_t *ranks, int64_t n, double *err2, struct fpd_error *err) {
    FPD_ASSERT(w && shape && (n == 0 || (ranks && err2)));
    struct fpd_layer_shape s = *shape;
    fpd_layer_shape_set_rank(&s, 1);
    s.terms = 1;
    enum fpd_status st = fpd_layer_shape_check(&s, err);
    if (st) return st;
    if ((st = check_view(w, &s, err))) return st;
    struct row_map mp;
    memset(&mp, 0, sizeof mp);
    mp.w = w;
    mp.k = s.k;
    for (int32_t m = 0; m < s.k; m++) mp.full[m] = mp.ns[m] = s.row_shape[m];
    st = profile(&mp, s.col_shape, ranks, n, err2, err);
    if (st == FPD_STATUS_OK) fpd__err_clear(err);
    return st;
}

/* ------------------------------------------------------------- prediction */

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Rank equivalent to (r, p): r sqrt(p). */
static double rank_eq(const struct fpd_candidate *c) {
    return (double)c->r * sqrt((double)c->shape.terms);
}

/* The TT-SVD bound min(prod_{l<m} n_l d_l, prod_{l>=m} n_l d_l) of bond m (1..k-1). */
static double bond_cap(const int64_t *n, const int64_t *d, int32_t k, int32_t m) {
    double left = 1.0, right = 1.0;
    for (int32_t l = 0; l < m; l++) left *= (double)n[l] * (double)d[l];
    for (int32_t l = m; l < k; l++) right *= (double)n[l] * (double)d[l];
    return left < right ? left : right;
}

/* Rank r resolved by the sample shape ns as in the full shape: no bond of the
 * sample caps it below the full table's cap. */
static bool sample_resolves(const int64_t *full, const int64_t *ns, const int64_t *d, int32_t k, int64_t r) {
    for (int32_t m = 1; m < k; m++) {
        double cf = bond_cap(full, d, k, m), cs = bond_cap(ns, d, k, m);
        double want = (double)r < cf ? (double)r : cf;
        if (cs < want) return false;
    }
    return true;
}

/* Candidates predicted together: the same k, row shape and column shape. */
static bool same_group(const struct fpd_layer_shape *t, const struct fpd_layer_shape *s) {
    return t->k == s->k && !memcmp(t->row_shape, s->row_shape, (size_t)s->k * sizeof(int64_t)) &&
           !memcmp(t->col_shape, s->col_shape, (size_t)s->k * sizeof(int64_t));
}

/* The p = 1 ranks a candidate's prediction reads: floor and ceil of r sqrt(p), and p r. */
static void member_ranks(const struct fpd_candidate *c, int64_t *out) {
    double req = rank_eq(c);
    int64_t lo = (int64_t)floor(req), hi = (int64_t)ceil(req);
    out[0] = lo < 1 ? 1 : lo;
    out[1] = hi < 1 ? 1 : hi;
    out[2] = c->r * c->shape.terms; /* fits: the shape was checked */
}

/* The 1/s extrapolation of the samples' e^2(s) = ea and e^2(2s) = eb (f = 1 - 2s/n),
 * at least the smaller of the two and at most 1. */
static double extrapolate(double ea, double eb, double f) {
    double lo = ea < eb ? ea : eb;
    double v = eb + (eb - ea) * f;
    return v < lo ? lo : (v > 1.0 ? 1.0 : v);
}

enum fpd_status fpd__predict_errors(const struct fpd_table_view *w, struct fpd_candidate *cands, int64_t n,
                                    int64_t full_cells, char *estimate, size_t len, struct fpd_error *err) {
    enum fpd_status st = FPD_STATUS_OK;
    int64_t *ranks = NULL, *perm = NULL, *cs = NULL;
    double *e_a = NULL, *e_b = NULL, *f_a = NULL, *f_b = NULL;
    bool *resolved = NULL, *need_free = NULL;
    int64_t used_free = 0;
    bool *done_k = fpd_calloc((size_t)(n > 0 ? n : 1), sizeof(bool));
    int64_t used_full = 0, used_sample = 0, unknown = 0;
    int64_t sample_rows[2] = {0, 0}, sample_s = 0;
    if (!done_k) return fpd__err(err, FPD_STATUS_NOMEM, "out of memory in the error prediction");
    for (int64_t i = 0; i < n; i++) cands[i].predicted_error = NAN;

    /* candidates are grouped by their (k, row shape, column shape) */
    for (int64_t i0 = 0; i0 < n; i0++) {
        if (done_k[i0]) continue;
        const struct fpd_layer_shape *s = &cands[i0].shape;
        if ((st = check_view(w, s, err))) goto done;
        const int32_t k = s->k;
        /* members of the group and the integer ranks they need */
        int64_t nr = 0, cap = 3 * n + 3;
        fpd_free(ranks);
        ranks = fpd_malloc((size_t)cap * sizeof(int64_t));
        if (!ranks) goto oom;
        for (int64_t i = i0; i < n; i++) {
            if (!same_group(&cands[i].shape, s)) continue;
            member_ranks(&cands[i], ranks + nr);
            nr += 3;
        }
        qsort(ranks, (size_t)nr, sizeof *ranks, cmp_i64);
        int64_t u = 0;
        for (int64_t i = 0; i < nr; i++)
            if (u == 0 || ranks[i] != ranks[u - 1]) ranks[u++] = ranks[i];
        nr = u;
        fpd_free(e_a);
        fpd_free(e_b);
        fpd_free(resolved);
        fpd_free(need_free);
        fpd_free(cs);
        e_a = fpd_calloc((size_t)nr, sizeof(double));
        e_b = fpd_calloc((size_t)nr, sizeof(double));
        resolved = fpd_calloc((size_t)nr, sizeof(bool));
        need_free = fpd_calloc((size_t)nr, sizeof(bool));
        cs = fpd_malloc((size_t)n * sizeof(int64_t));
        if (!e_a || !e_b || !resolved || !need_free || !cs) goto oom;
        /* the distinct c > 0 of the group and the ranks their members need */
        int64_t ncs = 0;
        for (int64_t i = i0; i < n; i++) {
            if (!same_group(&cands[i].shape, s) || cands[i].free_coords <= 0) continue;
            int64_t j = 0;
            while (j < ncs && cs[j] != cands[i].free_coords) j++;
            if (j == ncs) cs[ncs++] = cands[i].free_coords;
            int64_t want[3];
            member_ranks(&cands[i], want);
            for (int q = 0; q < 3; q++)
                for (int64_t a = 0; a < nr; a++)
                    if (ranks[a] == want[q]) need_free[a] = true;
        }
        fpd_free(f_a);
        fpd_free(f_b);
        f_a = fpd_malloc((size_t)(nr * (ncs > 0 ? ncs : 1)) * sizeof(double));
        f_b = fpd_malloc((size_t)(nr * (ncs > 0 ? ncs : 1)) * sizeof(double));
        if (!f_a || !f_b) goto oom;
        for (int64_t i = 0; i < nr * ncs; i++) f_a[i] = f_b[i] = NAN;

        struct row_map mp;
        memset(&mp, 0, sizeof mp);
        mp.w = w;
        mp.k = k;
        for (int32_t m = 0; m < k; m++) mp.full[m] = mp.ns[m] = s->row_shape[m];
        bool whole = (double)w->rows * (double)w->dim <= (double)full_cells;
        bool known = true;
        if (whole) {
            if ((st = profile_ranks(&mp, s->col_shape, ranks, nr, e_b, err))) goto done;
            if (ncs && (st = free_profile(&mp, s->col_shape, ranks, need_free, nr, cs, ncs, f_b, err))) goto done;
            for (int64_t i = 0; i < nr; i++) resolved[i] = true;
            used_full++;
        } else if (k < 3) {
            known = false;
        } else {
            /* s digits of each middle mode, the largest of 8, 4, 2 (1 for k = 3) whose 2s
             * sample fits in full_cells cells; nested random subsets */
            int64_t outer = s->row_shape[0] * s->row_shape[k - 1];
            int64_t smin = k == 3 ? 1 : 2, sv = smin;
            for (int64_t c = 8; c >= smin; c /= 2) {
                double rows2 = (double)outer;
                for (int32_t m = 1; m < k - 1; m++)
                    rows2 *= (double)(s->row_shape[m] < 2 * c ? s->row_shape[m] : 2 * c);
                if (rows2 * (double)w->dim <= (double)full_cells) {
                    sv = c;
                    break;
                }
            }
            double lognbar = 0.0;
            int64_t total_mid = 0;
            for (int32_t m = 1; m < k - 1; m++) {
                lognbar += log((double)s->row_shape[m]);
                total_mid += s->row_shape[m];
            }
            double nbar = exp(lognbar / (double)(k - 2));
            fpd_free(perm);
            perm = fpd_malloc((size_t)(total_mid > 0 ? 2 * total_mid : 1) * sizeof(int64_t));
            if (!perm) goto oom;
            /* perm holds, per middle mode, a shuffled digit list (first 2s sorted, of which
             * the first s are also sorted separately below) */
            uint64_t rng = PREDICT_SEED;
            int64_t off = 0;
            int64_t *sel_a[FPD_MAX_MODES] = {0}, *sel_b[FPD_MAX_MODES] = {0};
            for (int32_t m = 1; m < k - 1; m++) {
                int64_t nm = s->row_shape[m];
                int64_t *p = perm + off, *a = perm + total_mid + off;
                for (int64_t i = 0; i < nm; i++) p[i] = i;
                for (int64_t i = nm - 1; i > 0; i--) { /* Fisher-Yates */
                    int64_t j = (int64_t)(fpd__rand_u64(&rng) % (uint64_t)(i + 1));
                    int64_t t = p[i];
                    p[i] = p[j];
                    p[j] = t;
                }
                int64_t nb = nm < 2 * sv ? nm : 2 * sv, na = nm < sv ? nm : sv;
                memcpy(a, p, (size_t)na * sizeof(int64_t));
                qsort(a, (size_t)na, sizeof *a, cmp_i64);
                qsort(p, (size_t)nb, sizeof *p, cmp_i64);
                sel_a[m] = a;
                sel_b[m] = p;
                off += nm;
            }
            struct row_map ma = mp, mb = mp;
            int64_t ra = 1, rb = 1;
            for (int32_t m = 0; m < k; m++) {
                if (m >= 1 && m < k - 1) {
                    ma.ns[m] = s->row_shape[m] < sv ? s->row_shape[m] : sv;
                    mb.ns[m] = s->row_shape[m] < 2 * sv ? s->row_shape[m] : 2 * sv;
                    ma.sel[m] = sel_a[m];
                    mb.sel[m] = sel_b[m];
                }
                ra *= ma.ns[m];
                rb *= mb.ns[m];
            }
            if ((st = profile_ranks(&ma, s->col_shape, ranks, nr, e_a, err))) goto done;
            if ((st = profile_ranks(&mb, s->col_shape, ranks, nr, e_b, err))) goto done;
            if (ncs && ((st = free_profile(&ma, s->col_shape, ranks, need_free, nr, cs, ncs, f_a, err)) ||
                        (st = free_profile(&mb, s->col_shape, ranks, need_free, nr, cs, ncs, f_b, err))))
                goto done;
            double f = 1.0 - 2.0 * (double)sv / nbar;
            if (f < 0.0) f = 0.0;
            for (int64_t i = 0; i < nr; i++) {
                e_b[i] = extrapolate(e_a[i], e_b[i], f);
                for (int64_t j = 0; j < ncs; j++)
                    if (need_free[i]) f_b[i * ncs + j] = extrapolate(f_a[i * ncs + j], f_b[i * ncs + j], f);
                resolved[i] = sample_resolves(s->row_shape, ma.ns, s->col_shape, k, ranks[i]);
            }
            used_sample++;
            sample_rows[0] = ra;
            sample_rows[1] = rb;
            sample_s = sv;
        }

        if (ncs) used_free++;
        for (int64_t i = i0; i < n; i++) {
            if (!same_group(&cands[i].shape, s)) continue;
            done_k[i] = true;
            if (!known) {
                unknown++;
                continue;
            }
            double req = rank_eq(&cands[i]);
            int64_t want[3];
            member_ranks(&cands[i], want);
            int64_t lo = want[0], hi = want[1], rp = want[2];
            int64_t a = 0, b = 0, c = 0;
            while (ranks[a] != lo) a++;
            while (ranks[b] != hi) b++;
            while (ranks[c] != rp) c++;
            if (!resolved[a] || !resolved[b] || !resolved[c]) {
                unknown++;
                continue;
            }
            /* c > 0: the profile with c free coordinates, combined alike */
            const double *src = e_b;
            int64_t stride = 1;
            if (cands[i].free_coords > 0) {
                int64_t j = 0;
                while (cs[j] != cands[i].free_coords) j++;
                src = f_b + j;
                stride = ncs;
            }
            double e2 = src[a * stride];
            if (hi > lo) e2 += (req - (double)lo) * (src[b * stride] - src[a * stride]);
            /* p > 1: between one train of equal middle-core size (rank r sqrt(p)) and
             * one of equal bond dimension (rank p r): the geometric mean */
            if (cands[i].shape.terms > 1) e2 = sqrt((e2 > 0.0 ? e2 : 0.0) * src[c * stride]);
            cands[i].predicted_error = sqrt(e2 < 0.0 ? 0.0 : e2);
        }
    }

    if (estimate && len) {
        int o = 0;
        if (used_full)
            o = snprintf(estimate, len, "TT-SVD on all %lld rows", (long long)w->rows);
        if (used_sample && o >= 0 && (size_t)o < len)
            o += snprintf(estimate + o, len - (size_t)o,
                          "%sTT-SVD on row samples (%lld and %lld rows: %lld and %lld digits of each middle mode), "
                          "extrapolated in 1/s",
                          used_full ? "; " : "", (long long)sample_rows[0], (long long)sample_rows[1],
                          (long long)sample_s, (long long)(2 * sample_s));
        if (o >= 0 && (size_t)o < len)
            o += snprintf(estimate + o, len - (size_t)o, "%sp > 1: geometric mean of ranks r*sqrt(p) and r*p%s%s",
                          used_full || used_sample ? "; " : "",
                          used_free ? "; c > 0: the TT-SVD residual less its top c singular directions" : "",
                          unknown ? "; some not estimated (k < 3, or a rank the sample cannot resolve)" : "");
    }
    fpd__err_clear(err);
    goto done;
oom:
    st = fpd__err(err, FPD_STATUS_NOMEM, "out of memory in the error prediction");
done:
    fpd_free(ranks);
    fpd_free(perm);
    fpd_free(e_a);
    fpd_free(e_b);
    fpd_free(resolved);
    fpd_free(need_free);
    fpd_free(cs);
    fpd_free(f_a);
    fpd_free(f_b);
    fpd_free(done_k);
    return st;
}
