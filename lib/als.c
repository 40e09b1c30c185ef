/*
 * als.c - alternating least squares over the cores of an FPD layer (all p terms
 * of one core at a time), the classic TT-ALS sweep (Holtz, Rohwedder, Schneider,
 * "The alternating linear scheme for tensor optimization in the tensor train
 * format", SIAM J. Sci. Comput. 34(2), 2012) extended to a sum of p trains.
 *
 * Objective: f = ||W_pad - What||_F^2 over the padded table (rows >= N count with
 * W = 0, as in TT-SVD). With the other cores fixed, What is linear in core m, and
 * the normal equations of its slice (i_m, j_m) are
 *
 *   A x = b,  A[(t,a,b),(t',a',b')] = GL_m[(t,a),(t',a')] GR_{m+1}[(t,b),(t',b')]
 *
 * where GL_m = sum over all row/column prefixes of L_t L_t'^T (left partial
 * products, through cores 0..m-1) and GR the same from the right. A is the same for
 * every slice, so one Cholesky factorization serves all n_m d_m slices. The right-
 * hand sides are sum L_t W R_t^T over the rows, which is the backward pass of the
 * layer with W as the output gradient (fpd_engine_backward), streamed over row
 * blocks. Each core update is an exact minimization, so f never increases (up to
 * a ridge of 1e-12 of A's mean diagonal, added for rank-deficient partials).
 * f itself is ||W||^2 - 2 <x, b> + x^T A x, from the quantities at hand.
 */
#include "fpd-impl.h"
#include "cpu/kernels-cpu.h"

#include <lapacke.h>
#include <math.h>
#include <string.h>

/* G_m as [p][n][ra][d][rb]; transfer gl_in [(t,a),(t',a')] (p ra square) to
 * gl_out [(t,b),(t',b')] (p rb square): sum_{i,j,a,a'} G[t,i,a,j,b] gl[(t,a),(t',a')] G[t',i,a',j,b']. */
static void transfer_left(const float *g, int64_t p, int64_t n, int64_t ra, int64_t d, int64_t rb, const double *gl_in,
                          double *gl_out) {
    const int64_t pa = p * ra, pb = p * rb;
    memset(gl_out, 0, (size_t)(pb * pb) * sizeof(double));
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++)
            for (int64_t t = 0; t < p; t++)
                for (int64_t b = 0; b < rb; b++)
                    for (int64_t t2 = 0; t2 < p; t2++)
                        for (int64_t b2 = 0; b2 < rb; b2++) {
                            double acc = 0.0;
                            for (int64_t a = 0; a < ra; a++) {
                                double ga = g[(((t * n + i) * ra + a) * d + j) * rb + b];
                                if (ga == 0.0) continue;
                                for (int64_t a2 = 0; a2 < ra; a2++)
                                    acc += ga * gl_in[(t * ra + a) * pa + t2 * ra + a2] *
                                           g[(((t2 * n + i) * ra + a2) * d + j) * rb + b2];
                            }
                            gl_out[(t * rb + b) * pb + t2 * rb + b2] += acc;
                        }
}

/* The mirror image: gr_in over (t,b) to gr_out over (t,a). */
static void transfer_right(const float *g, int64_t p, int64_t n, int64_t ra, int64_t d, int64_t rb,
                           const double *gr_in, double *gr_out) {
    const int64_t pa = p * ra, pb = p * rb;
    memset(gr_out, 0, (size_t)(pa * pa) * sizeof(double));
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++)
            for (int64_t t = 0; t < p; t++)
                for (int64_t a = 0; a < ra; a++)
                    for (int64_t t2 = 0; t2 < p; t2++)
                        for (int64_t a2 = 0; a2 < ra; a2++) {
                            double acc = 0.0;
                            for (int64_t b = 0; b < rb; b++) {
                                double gb = g[(((t * n + i) * ra + a) * d + j) * rb + b];
                                if (gb == 0.0) continue;
                                for (int64_t b2 = 0; b2 < rb; b2++)
                                    acc += gb * gr_in[(t * rb + b) * pb + t2 * rb + b2] *
                                           g[(((t2 * n + i) * ra + a2) * d + j) * rb + b2];
                            }
                            gr_out[(t * ra + a) * pa + t2 * ra + a2] += acc;
                        }
}

enum fpd_status fpd_als(struct fpd_layer *layer, const struct fpd_table_view *w, int64_t sweeps, double tol,
                        const struct fpd_fit_params *params, double *objective, int64_t *sweeps_run,
                        struct fpd_error *err) {
    const struct fpd_layer_shape *s = fpd_layer_get_shape(layer);
    const int32_t k = s->k;
    const int64_t p = s->terms, n_rows = s->rows, dim = s->dim, block = 1024;
    enum fpd_status st = FPD_STATUS_OK;
    if (w->rows != n_rows || w->dim != dim)
        return fpd__err(err, FPD_STATUS_SHAPE, "table [%lld, %lld] does not match the layer's [%lld, %lld]",
                        (long long)w->rows, (long long)w->dim, (long long)n_rows, (long long)dim);
    if (fpd_layer_get_free_coords(layer) > 0)
        return fpd__err(err, FPD_STATUS_INVALID_ARG,
                        "ALS fits the cores alone: the layer has %lld free coordinates per row (fit them after, "
                        "fpd_fit_free_coords)",
                        (long long)fpd_layer_get_free_coords(layer));
    if (sweeps_run) *sweeps_run = 0;
    int64_t rmax = 1;
    for (int32_t m = 0; m <= k; m++) rmax = s->ranks[m] > rmax ? s->ranks[m] : rmax;
    const int64_t pr = p * rmax, unk_max = p * rmax * rmax;
    double *gl[FPD_MAX_MODES + 1] = {0}, *gr[FPD_MAX_MODES + 1] = {0};
    float *grad[FPD_MAX_MODES] = {0};
    float *wbuf = fpd_malloc((size_t)(block * dim) * sizeof(float));
    float *fwd = fpd_malloc((size_t)(block * dim) * sizeof(float));
    int64_t *idx = fpd_malloc((size_t)block * sizeof(int64_t));
    double *a = fpd_malloc((size_t)(unk_max * unk_max) * sizeof(double));
    double *rhs = NULL;
    struct fpd_engine *eng = NULL;
    bool ok = wbuf && fwd && idx && a;
    for (int32_t m = 0; m <= k && ok; m++) {
        gl[m] = fpd_malloc((size_t)(pr * pr) * sizeof(double));
        gr[m] = fpd_malloc((size_t)(pr * pr) * sizeof(double));
        ok = gl[m] && gr[m];
    }
    int64_t max_slices = 0;
    for (int32_t m = 0; m < k && ok; m++) {
        grad[m] = fpd_malloc((size_t)fpd_layer_shape_core_numel(s, m) * sizeof(float));
        ok = grad[m] != NULL;
        int64_t sl = s->row_shape[m] * s->col_shape[m];
        max_slices = sl > max_slices ? sl : max_slices;
    }
    if (ok) {
        rhs = fpd_malloc((size_t)(unk_max * max_slices) * sizeof(double));
        ok = rhs != NULL;
    }
    if (!ok) {
        st = fpd__err(err, FPD_STATUS_NOMEM, "out of memory for ALS (p = %lld, rank %lld)", (long long)p,
                      (long long)rmax);
        goto done;
    }
    /* right-hand sides come from the engine's backward. The CPU engine reads the
     * cores in place, so each core update is seen by the next core's right-hand
     * side; an engine on another backend (params->backend) may hold its own copy
     * of the cores, so it is made anew from the updated cores before each pass. */
    struct fpd_engine_params ep = fpd_engine_default_params();
    struct fpd_backend *dev = params ? params->backend : NULL;
    ep.backend = dev;
    if ((st = fpd_engine_init(layer, &ep, &eng, err))) goto done;
    /* ||W||^2 */
    double wnorm2 = 0.0;
    for (int64_t r0 = 0; r0 < n_rows; r0 += block) {
        int64_t r1 = r0 + block < n_rows ? r0 + block : n_rows;
        if ((st = fpd_table_view_rows(w, r0, r1, wbuf, err))) goto done;
        for (int64_t e = 0; e < (r1 - r0) * dim; e++) wnorm2 += (double)wbuf[e] * wbuf[e];
    }
    /* boundary transfers: all-ones over (t, t') (r_0 = r_k = 1) */
    for (int64_t e = 0; e < p * p; e++) gl[0][e] = gr[k][e] = 1.0;
    double f_prev = INFINITY, f = INFINITY;
    int64_t sweep;
    for (sweep = 0; sweep < sweeps; sweep++) {
        /* right transfers for the current cores */
        for (int32_t m = k - 1; m >= 1; m--)
            transfer_right(fpd_layer_core(layer, m), p, s->row_shape[m], s->ranks[m], s->col_shape[m], s->ranks[m + 1],
                           gr[m + 1], gr[m]);
        for (int32_t m = 0; m < k; m++) {
            const int64_t n = s->row_shape[m], d = s->col_shape[m], ra = s->ranks[m], rb = s->ranks[m + 1];
            const int64_t unk = p * ra * rb, nsl = n * d;
            float *g = fpd_layer_core(layer, m);
            if (dev && (sweep > 0 || m > 0)) { /* the cores changed since the engine was made */
                fpd_engine_free(eng);
                eng = NULL;
                if ((st = fpd_engine_init(layer, &ep, &eng, err))) goto done;
            }
            /* right-hand sides: backward with W as the output gradient (all cores'
             * gradients are formed; only core m's is used) */
            for (int64_t r0 = 0; r0 < n_rows; r0 += block) {
                int64_t r1 = r0 + block < n_rows ? r0 + block : n_rows;
                if ((st = fpd_table_view_rows(w, r0, r1, wbuf, err))) goto done;
                for (int64_t i = r0; i < r1; i++) idx[i - r0] = i;
                struct fpd_bag_batch bb = {.indices = idx, .n_indices = r1 - r0, .mode = FPD_BAG_MODE_NONE,
                                           .padding_idx = -1};
                if ((st = fpd_engine_forward(eng, &bb, fwd, err)) || (st = fpd_engine_backward(eng, &bb, wbuf, err)))
                    goto done;
            }
            for (int32_t q = 0; q < k; q++) {
                const float *gq;
                fpd_engine_grad(eng, q, &gq, NULL, NULL);
                memcpy(grad[q], gq, (size_t)fpd_layer_shape_core_numel(s, q) * sizeof(float));
            }
            fpd_engine_zero_grad(eng);
            /* A[(t,a,b),(t',a',b')] = GL[(t,a),(t',a')] GR[(t,b),(t',b')] */
            const int64_t pa = p * ra, pb = p * rb;
            double tr = 0.0;
            for (int64_t t = 0; t < p; t++)
                for (int64_t x = 0; x < ra; x++)
                    for (int64_t y = 0; y < rb; y++)
                        for (int64_t t2 = 0; t2 < p; t2++)
                            for (int64_t x2 = 0; x2 < ra; x2++)
                                for (int64_t y2 = 0; y2 < rb; y2++)
                                    a[((t * ra + x) * rb + y) * unk + (t2 * ra + x2) * rb + y2] =
                                        gl[m][(t * ra + x) * pa + t2 * ra + x2] * gr[m + 1][(t * rb + y) * pb + t2 * rb + y2];
            for (int64_t e = 0; e < unk; e++) tr += a[e * unk + e];
            double ridge = 1e-12 * (tr / (double)unk) + 1e-300;
            for (int64_t e = 0; e < unk; e++) a[e * unk + e] += ridge;
            /* rhs[(t,a,b), (i,j)] from the gradient layout [t][i][a][j][b] */
            for (int64_t t = 0; t < p; t++)
                for (int64_t i = 0; i < n; i++)
                    for (int64_t x = 0; x < ra; x++)
                        for (int64_t j = 0; j < d; j++)
                            for (int64_t y = 0; y < rb; y++)
                                rhs[((t * ra + x) * rb + y) * nsl + i * d + j] =
                                    grad[m][(((t * n + i) * ra + x) * d + j) * rb + y];
            /* <x_old, b> and x_old^T A x_old are not needed: f is evaluated after the solve */
            lapack_int info = LAPACKE_dposv(LAPACK_ROW_MAJOR, 'U', (lapack_int)unk, (lapack_int)nsl, a,
                                            (lapack_int)unk, rhs, (lapack_int)nsl);
            if (info != 0) {
                /* a singular A (a core with a zero partial): keep the core as it is */
                fpd__log(FPD_LOG_LEVEL_DEBUG, "ALS core %d: dposv info %d; core kept", (int)m, (int)info);
            } else {
                for (int64_t t = 0; t < p; t++)
                    for (int64_t i = 0; i < n; i++)
                        for (int64_t x = 0; x < ra; x++)
                            for (int64_t j = 0; j < d; j++)
                                for (int64_t y = 0; y < rb; y++)
                                    g[(((t * n + i) * ra + x) * d + j) * rb + y] =
                                        (float)rhs[((t * ra + x) * rb + y) * nsl + i * d + j];
            }
            if (m + 1 < k)
                transfer_left(g, p, n, ra, d, rb, gl[m], gl[m + 1]);
        }
        /* f = ||W||^2 - 2 <W, What> + ||What||^2: <W, What> is the last core dotted
         * with its right-hand side (the backward of W, which does not depend on that
         * core, so grad[k-1] from the update is still exact); ||What||^2 is the full
         * left transfer through every core */
        {
            const int32_t m = k - 1;
            const float *g = fpd_layer_core(layer, m);
            double cross = 0.0;
            for (int64_t e = 0; e < fpd_layer_shape_core_numel(s, m); e++) cross += (double)g[e] * grad[m][e];
            transfer_left(g, p, s->row_shape[m], s->ranks[m], s->col_shape[m], 1, gl[m], gl[k]);
            double norm2 = 0.0;
            for (int64_t e = 0; e < p * p; e++) norm2 += gl[k][e];
            f = wnorm2 - 2.0 * cross + norm2;
        }
        fpd__log(FPD_LOG_LEVEL_DEBUG, "ALS sweep %lld: padded objective %.8g", (long long)sweep + 1, f);
        if (params && params->progress && !params->progress("als", sweep + 1, sweeps, params->progress_user_data)) {
            st = fpd__err(err, FPD_STATUS_CANCELLED, "ALS cancelled");
            goto done;
        }
        if (f_prev - f < tol * f_prev) {
            sweep++;
            break;
        }
        f_prev = f;
    }
    if (sweeps_run) *sweeps_run = sweep;
    if (objective) *objective = f;
done:
    for (int32_t m = 0; m <= FPD_MAX_MODES; m++) {
        fpd_free(gl[m]);
        fpd_free(gr[m]);
    }
    for (int32_t m = 0; m < FPD_MAX_MODES; m++) fpd_free(grad[m]);
    fpd_free(wbuf);
    fpd_free(fwd);
    fpd_free(idx);
    fpd_free(a);
    fpd_engine_free(eng);
    fpd_free(rhs);
    return st;
}
