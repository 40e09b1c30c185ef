/*
 * fit.c - fitting FPD cores to a dense table: TT-SVD for one term (Oseledets 2011,
 * "Tensor-Train Decomposition", SIAM J. Sci. Comput. 33(5), Algorithm 1) and
 * backfitting of p > 1 terms (each term refitted to the residual of the others).
 *
 * The table W [N, D], zero-padded to prod(n) rows, is the tensor with modes
 * (n_0..n_{k-1}, d_0..d_{k-1}); TT-SVD runs on its interleaved form with modes
 * (n_0 d_0, ..., n_{k-1} d_{k-1}), index of mode m = i_m d_m + j_m. Unfolding m is a
 * matrix [r_m n_m d_m, prod_{l>m} n_l d_l]; its truncated SVD is taken from the
 * eigen-decomposition of its Gram matrix on the smaller side, in double.
 *
 * Step 0 streams: with Nr = prod(n_1..), Dr = prod(d_1..), the first unfolding's
 * column (i_rest, j_rest) for row (i_0, j_0) is W[i_0 Nr + i_rest, j_0 Dr + j_rest],
 * so a block of i_rest values is a set of contiguous row ranges of W (one per
 * i_0). The Gram matrix and then the projection U^T C are accumulated block by
 * block without forming C.
 */
#include "fpd-impl.h"
#include "cpu/kernels-cpu.h"

#include <math.h>
#include <string.h>

struct fpd_fit_params fpd_fit_default_params(void) {
    struct fpd_fit_params p;
    memset(&p, 0, sizeof p);
    p.backfit_sweeps = 8;
    p.backfit_tol = 1e-3;
    p.als_sweeps = 2;
    p.als_tol = 1e-4;
    p.finetune_epochs = 1;
    p.batch_rows = 256;
    p.learning_rate = 3e-3;
    p.seed = 0;
    return p;
}

static bool report_progress(const struct fpd_fit_params *p, const char *stage, int64_t done, int64_t total) {
    if (!p || !p->progress) return true;
    return p->progress(stage, done, total, p->progress_user_data);
}

/* One truncated-SVD step on an in-memory unfolding c [rows, cols] (double):
 * u[rows, r] (orthonormal columns) and next[r, cols] = u^T c, r = *rank capped
 * by min(rows, cols); *rank is set to the rank used. u and next are allocated
 * here (fpd_free). */
static enum fpd_status svd_step(const double *c, int64_t rows, int64_t cols, int64_t *rank, double **u_out,
                                double **next_out, struct fpd_error *err) {
    enum fpd_status st = FPD_STATUS_OK;
    int64_t r = *rank;
    if (r > rows) r = rows;
    if (r > cols) r = cols;
    int64_t small = rows <= cols ? rows : cols;
    double *g = fpd_calloc((size_t)(small * small), sizeof(double));
    double *w = fpd_malloc((size_t)small * sizeof(double));
    double *u = fpd_calloc((size_t)(rows * r), sizeof(double));
    double *next = fpd_calloc((size_t)(r * cols), sizeof(double));
    if (!g || !w || !u || !next) {
        st = fpd__err(err, FPD_STATUS_NOMEM, "out of memory for a TT-SVD step on a %lld x %lld unfolding",
                      (long long)rows, (long long)cols);
        goto done;
    }
    if (rows <= cols) {
        fpd__cpu_dsyrk(false, rows, cols, c, cols, g, rows);
        fpd__cpu_sym_fill(rows, g, rows);
        if ((st = fpd__cpu_dsyev_desc(rows, g, w, err))) goto done;
        for (int64_t i = 0; i < rows; i++) memcpy(u + i * r, g + i * rows, (size_t)r * sizeof(double));
        fpd__cpu_dgemm(true, false, r, cols, rows, 1.0, u, r, c, cols, 0.0, next, cols);
    } else {
        /* C^T C = V diag(s^2) V^T; u = C V_r / s, next = diag(s) V_r^T */
        fpd__cpu_dsyrk(true, cols, rows, c, cols, g, cols);
        fpd__cpu_sym_fill(cols, g, cols);
        if ((st = fpd__cpu_dsyev_desc(cols, g, w, err))) goto done;
        double *v = fpd_malloc((size_t)(cols * r) * sizeof(double));
        if (!v) {
            st = fpd__err(err, FPD_STATUS_NOMEM, "out of memory for a TT-SVD step");
            goto done;
        }
        for (int64_t i = 0; i < cols; i++) memcpy(v + i * r, g + i * cols, (size_t)r * sizeof(double));
        fpd__cpu_dgemm(false, false, rows, r, cols, 1.0, c, cols, v, r, 0.0, u, r);
        double tiny = (w[0] > 0.0 ? sqrt(w[0]) : 0.0) * 1e-13;
        for (int64_t s = 0; s < r; s++) {
            double sig = w[s] > 0.0 ? sqrt(w[s]) : 0.0;
            double inv = sig > tiny && sig > 0.0 ? 1.0 / sig : 0.0;
            for (int64_t i = 0; i < rows; i++) u[i * r + s] *= inv;
            for (int64_t j = 0; j < cols; j++) next[s * cols + j] = inv > 0.0 ? sig * v[j * r + s] : 0.0;
        }
        fpd_free(v);
    }
    *rank = r;
    *u_out = u;
    *next_out = next;
    u = next = NULL;
done:
    fpd_free(g);
    fpd_free(w);
    fpd_free(u);
    fpd_free(next);
    return st;
}

/* Interleaved offset of the (i_rest, j_rest) part for modes 1..k-1: returns the
 * index into the tensor [n_1 d_1, ..., n_{k-1} d_{k-1}]. */
static int64_t rest_offset_i(const struct fpd_layer_shape *s, int64_t irest) {
    int64_t off = 0, stride = 1;
    for (int32_t m = s->k - 1; m >= 1; m--) {
        int64_t i = irest % s->row_shape[m];
        irest /= s->row_shape[m];
        off += i * s->col_shape[m] * stride;
        stride *= s->row_shape[m] * s->col_shape[m];
    }
    return off;
}

static int64_t rest_offset_j(const struct fpd_layer_shape *s, int64_t jrest) {
    int64_t off = 0, stride = 1;
    for (int32_t m = s->k - 1; m >= 1; m--) {
        int64_t j = jrest % s->col_shape[m];
        jrest /= s->col_shape[m];
        off += j * stride;
        stride *= s->row_shape[m] * s->col_shape[m];
    }
    return off;
}

/* Fill x [n0 d0, nb * Dr] (double) with the first unfolding's columns for i_rest in
 * [b0, b0 + nb): x[(i0 d0 + j0), (b, jr)] = Wst[i0 Nr + b0 + b, j0 Dr + jr], where Wst
 * is the table in stored (FPD) row order: stored row q holds original row inv[q]
 * (none when inv[q] < 0), or row q itself without inv; rows past N are zero. */
static enum fpd_status gather_block(const struct fpd_table_view *w, const struct fpd_layer_shape *s, const int64_t *inv,
                                    int64_t nr, int64_t b0, int64_t nb, float *rowbuf, double *x,
                                    struct fpd_error *err) {
    const int64_t n0 = s->row_shape[0], d0 = s->col_shape[0], dr = s->dim / d0, ld = nb * dr, dim = s->dim;
    for (int64_t i0 = 0; i0 < n0; i0++) {
        int64_t r0 = i0 * nr + b0;
        enum fpd_status st = FPD_STATUS_OK;
        if (!inv) { /* contiguous rows, then zeros */
            int64_t avail = r0 + nb <= w->rows ? nb : (r0 < w->rows ? w->rows - r0 : 0);
            if (avail > 0 && (st = fpd_table_view_rows(w, r0, r0 + avail, rowbuf, err))) return st;
            memset(rowbuf + avail * dim, 0, (size_t)((nb - avail) * dim) * sizeof(float));
        } else {
            for (int64_t b = 0; b < nb; b++) {
                int64_t orig = inv[r0 + b];
                if (orig < 0) memset(rowbuf + b * dim, 0, (size_t)dim * sizeof(float));
                else if ((st = fpd_table_view_rows(w, orig, orig + 1, rowbuf + b * dim, err))) return st;
            }
        }
        for (int64_t e = 0; e < nb * dim; e++)
            if (!isfinite(rowbuf[e])) {
                int64_t q = r0 + e / dim, orig = inv ? inv[q] : q;
                return fpd__err(err, FPD_STATUS_INVALID_ARG, "row %lld, column %lld is %s; the table must be finite",
                                (long long)orig, (long long)(e % dim), isnan(rowbuf[e]) ? "NaN" : "infinite");
            }
        for (int64_t j0 = 0; j0 < d0; j0++) {
            double *dst = x + (i0 * d0 + j0) * ld;
            for (int64_t b = 0; b < nb; b++) {
                const float *src = rowbuf + b * dim + j0 * dr;
                for (int64_t jr = 0; jr < dr; jr++) dst[b * dr + jr] = (double)src[jr];
            }
        }
    }
    return FPD_STATUS_OK;
}

/* Steps 1 and 2 of TT-SVD for k = 3 without holding the projected tensor: its
 * step-1 unfolding C [r_1 n_1 d_1, n_2 d_2] has rows (s, i_1, j_1) and columns
 * (i_2, j_2), and a block of whole i_1 values of the step-0 projection U^T W gives
 * complete rows. Pass 1 accumulates the column Gram C^T C = V diag(sigma^2) V^T,
 * pass 2 forms U_1 = C V_r / sigma; the last core is diag(sigma) V_r^T: the same
 * truncated SVD as svd_step's tall branch. Extra memory: (n_2 d_2)^2 doubles and
 * the cores, independent of N. s->ranks[2] is lowered to what the unfolding
 * allows. Outputs: *u1 [r_1 n_1 d_1, r_2] and *last [r_2, n_2 d_2] (fpd_free). */
static enum fpd_status ttsvd_stream3(const struct fpd_table_view *w, struct fpd_layer_shape *s, const int64_t *inv,
                                     const struct fpd_fit_params *params, int64_t nr, int64_t nb, int64_t r1,
                                     const double *u, float *rowbuf, double *x, double *proj, double **u1,
                                     double **last, struct fpd_error *err) {
    const int64_t n1 = s->row_shape[1], d1 = s->col_shape[1], n2 = s->row_shape[2], d2 = s->col_shape[2];
    const int64_t m0 = s->row_shape[0] * s->col_shape[0], dr = d1 * d2, cols = n2 * d2, rows = r1 * n1 * d1;
    const int64_t nb1 = nb / n2, blk_rows = r1 * nb1 * d1;
    int64_t r2 = s->ranks[2] < cols ? s->ranks[2] : cols;
    r2 = r2 < rows ? r2 : rows;
    enum fpd_status st = FPD_STATUS_OK;
    double *g2 = fpd_calloc((size_t)(cols * cols), sizeof(double));
    double *ev = fpd_malloc((size_t)cols * sizeof(double));
    double *rb = fpd_malloc((size_t)(blk_rows * cols) * sizeof(double));
    double *v = fpd_malloc((size_t)(cols * r2) * sizeof(double));
    double *t = fpd_malloc((size_t)(blk_rows * r2) * sizeof(double));
    double *uo = fpd_calloc((size_t)(rows * r2), sizeof(double));
    double *lo = fpd_calloc((size_t)(r2 * cols), sizeof(double));
    double *inv_sig = fpd_malloc((size_t)r2 * sizeof(double));
    if (!g2 || !ev || !rb || !v || !t || !uo || !lo || !inv_sig) {
        st = fpd__err(err, FPD_STATUS_NOMEM, "out of memory for a streamed TT-SVD step (%lld x %lld)", (long long)rows,
                      (long long)cols);
        goto done;
    }
    const int64_t nblocks = (n1 + nb1 - 1) / nb1;
    for (int pass = 0; pass < 2; pass++) {
        for (int64_t i1a = 0, bi = 0; i1a < n1; i1a += nb1, bi++) {
            int64_t c1 = i1a + nb1 <= n1 ? nb1 : n1 - i1a, cnt = c1 * n2;
            if ((st = gather_block(w, s, inv, nr, i1a * n2, cnt, rowbuf, x, err))) goto done;
            fpd__cpu_dgemm(true, false, r1, cnt * dr, m0, 1.0, u, r1, x, cnt * dr, 0.0, proj, cnt * dr);
            /* rb[(q, i1l, j1), (i2, j2)] = proj[q, ((i1l n2 + i2) dr + j1 d2 + j2)] */
            for (int64_t q = 0; q < r1; q++)
                for (int64_t i1l = 0; i1l < c1; i1l++)
                    for (int64_t j1 = 0; j1 < d1; j1++) {
                        double *dst = rb + ((q * c1 + i1l) * d1 + j1) * cols;
                        for (int64_t i2 = 0; i2 < n2; i2++)
                            memcpy(dst + i2 * d2, proj + q * cnt * dr + (i1l * n2 + i2) * dr + j1 * d2,
                                   (size_t)d2 * sizeof(double));
                    }
            if (pass == 0) {
                fpd__cpu_dsyrk(true, cols, r1 * c1 * d1, rb, cols, g2, cols);
            } else {
                fpd__cpu_dgemm(false, false, r1 * c1 * d1, r2, cols, 1.0, rb, cols, v, r2, 0.0, t, r2);
                for (int64_t q = 0; q < r1; q++)
                    for (int64_t i1l = 0; i1l < c1; i1l++)
                        for (int64_t j1 = 0; j1 < d1; j1++) {
                            const double *src = t + ((q * c1 + i1l) * d1 + j1) * r2;
                            double *dst = uo + ((q * n1 + i1a + i1l) * d1 + j1) * r2;
                            for (int64_t c = 0; c < r2; c++) dst[c] = src[c] * inv_sig[c];
                        }
            }
            if (!report_progress(params, "tt-svd step 2", pass * nblocks + bi + 1, 2 * nblocks)) {
                st = fpd__err(err, FPD_STATUS_CANCELLED, "TT-SVD cancelled");
                goto done;
            }
        }
        if (pass == 0) {
            fpd__cpu_sym_fill(cols, g2, cols);
            if ((st = fpd__cpu_dsyev_desc(cols, g2, ev, err))) goto done;
            for (int64_t i = 0; i < cols; i++) memcpy(v + i * r2, g2 + i * cols, (size_t)r2 * sizeof(double));
            double tiny = (ev[0] > 0.0 ? sqrt(ev[0]) : 0.0) * 1e-13;
            for (int64_t c = 0; c < r2; c++) {
                double sig = ev[c] > 0.0 ? sqrt(ev[c]) : 0.0;
                inv_sig[c] = sig > tiny && sig > 0.0 ? 1.0 / sig : 0.0;
                for (int64_t j = 0; j < cols; j++) lo[c * cols + j] = inv_sig[c] > 0.0 ? sig * v[j * r2 + c] : 0.0;
            }
        }
    }
    s->ranks[2] = r2;
    *u1 = uo;
    *last = lo;
    uo = lo = NULL;
done:
    fpd_free(g2);
    fpd_free(ev);
    fpd_free(rb);
    fpd_free(v);
    fpd_free(t);
    fpd_free(uo);
    fpd_free(lo);
    fpd_free(inv_sig);
    return st;
}

/* TT-SVD of w in the stored row order given by inv (see gather_block; NULL: identity). */
static enum fpd_status ttsvd(const struct fpd_table_view *w, const struct fpd_layer_shape *shape, const int64_t *inv,
                             const struct fpd_fit_params *params, struct fpd_layer **out, struct fpd_error *err) {
    *out = NULL;
    enum fpd_status st = fpd_layer_shape_check(shape, err);
    if (st) return st;
    if (shape->terms != 1)
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "fpd_fit_ttsvd fits one term (p = 1), not %lld",
                        (long long)shape->terms);
    if (w->rows != shape->rows || w->dim != shape->dim)
        return fpd__err(err, FPD_STATUS_SHAPE, "table [%lld, %lld] does not match the layer shape [%lld, %lld]",
                        (long long)w->rows, (long long)w->dim, (long long)shape->rows, (long long)shape->dim);
    if (!fpd_dtype_is_float(w->dtype))
        return fpd__err(err, FPD_STATUS_DTYPE, "table dtype %s is not a float dtype", fpd_dtype_name(w->dtype));

    struct fpd_layer_shape s = *shape; /* ranks are lowered below where the unfoldings are smaller */
    const int32_t k = s.k;
    const int64_t n0 = s.row_shape[0], d0 = s.col_shape[0];
    int64_t nr = 1, dr = s.dim / d0;
    for (int32_t m = 1; m < k; m++) nr *= s.row_shape[m];
    const int64_t m0 = n0 * d0, cols0 = nr * dr;

    double *g = NULL, *ev = NULL, *x = NULL, *u = NULL, *cur = NULL, *next = NULL, *ucore[FPD_MAX_MODES] = {0};
    float *rowbuf = NULL;
    int64_t *joff = NULL;
    struct fpd_layer *layer = NULL;

    if (k == 1) {
        /* one core is the table itself, padded */
        if ((st = fpd_layer_init(&s, &layer, err))) goto done;
        if (!inv) {
            if ((st = fpd_table_view_rows(w, 0, w->rows, fpd_layer_core(layer, 0), err))) goto done;
        } else {
            for (int64_t q = 0; q < s.row_shape[0]; q++)
                if (inv[q] >= 0 && (st = fpd_table_view_rows(w, inv[q], inv[q] + 1, fpd_layer_core(layer, 0) + q * s.dim, err)))
                    goto done;
        }
        *out = layer;
        layer = NULL;
        goto done;
    }

    /* ---- step 0, streamed: Gram of the first unfolding, then U_r^T C ---- */
    int64_t r1 = s.ranks[1];
    if (r1 > m0) r1 = m0;
    if (r1 > cols0) r1 = cols0;
    int64_t nb = 4096 / (dr > 0 ? dr : 1);
    if (nb < 1) nb = 1;
    if (nb > nr) nb = nr;
    /* k = 3 with a step-1 unfolding taller than wide (the usual case): stream it
     * too, in blocks of whole i_1 values, so nothing of size N is held */
    const bool stream3 = k == 3 && r1 * s.row_shape[1] * s.col_shape[1] >= s.row_shape[2] * s.col_shape[2];
    if (stream3) {
        int64_t nb1 = 4096 / (s.row_shape[2] * dr);
        nb = (nb1 < 1 ? 1 : nb1) * s.row_shape[2];
        if (nb > nr) nb = nr;
    }
    g = fpd_calloc((size_t)(m0 * m0), sizeof(double));
    ev = fpd_malloc((size_t)m0 * sizeof(double));
    x = fpd_malloc((size_t)(m0 * nb * dr) * sizeof(double));
    rowbuf = fpd_malloc((size_t)(nb * s.dim) * sizeof(float));
    joff = fpd_malloc((size_t)dr * sizeof(int64_t));
    cur = stream3 ? NULL : fpd_calloc((size_t)(r1 * cols0), sizeof(double));
    u = fpd_malloc((size_t)(m0 * r1) * sizeof(double));
    double *proj = fpd_malloc((size_t)(r1 * nb * dr) * sizeof(double));
    if (!g || !ev || !x || !rowbuf || !joff || (!stream3 && !cur) || !u || !proj) {
        fpd_free(proj);
        st = fpd__err(err, FPD_STATUS_NOMEM,
                      "out of memory for TT-SVD of a [%lld, %lld] table (first unfolding %lld x %lld, rank %lld)",
                      (long long)w->rows, (long long)w->dim, (long long)m0, (long long)cols0, (long long)r1);
        goto done;
    }
    for (int64_t jr = 0; jr < dr; jr++) joff[jr] = rest_offset_j(&s, jr);
    int64_t nblocks = (nr + nb - 1) / nb;
    for (int64_t b0 = 0, bi = 0; b0 < nr; b0 += nb, bi++) {
        int64_t cnt = b0 + nb <= nr ? nb : nr - b0;
        if ((st = gather_block(w, &s, inv, nr, b0, cnt, rowbuf, x, err))) goto done_proj;
        fpd__cpu_dsyrk(false, m0, cnt * dr, x, cnt * dr, g, m0);
        if (!report_progress(params, "tt-svd", bi + 1, stream3 ? nblocks : 2 * nblocks)) {
            st = fpd__err(err, FPD_STATUS_CANCELLED, "TT-SVD cancelled");
            goto done_proj;
        }
    }
    fpd__cpu_sym_fill(m0, g, m0);
    if ((st = fpd__cpu_dsyev_desc(m0, g, ev, err))) goto done_proj;
    for (int64_t i = 0; i < m0; i++) memcpy(u + i * r1, g + i * m0, (size_t)r1 * sizeof(double));
    if (stream3) {
        st = ttsvd_stream3(w, &s, inv, params, nr, nb, r1, u, rowbuf, x, proj, &ucore[1], &cur, err);
        goto done_proj;
    }
    for (int64_t b0 = 0, bi = 0; b0 < nr; b0 += nb, bi++) {
        int64_t cnt = b0 + nb <= nr ? nb : nr - b0;
        if ((st = gather_block(w, &s, inv, nr, b0, cnt, rowbuf, x, err))) goto done_proj;
        fpd__cpu_dgemm(true, false, r1, cnt * dr, m0, 1.0, u, r1, x, cnt * dr, 0.0, proj, cnt * dr);
        for (int64_t b = 0; b < cnt; b++) {
            int64_t ioff = rest_offset_i(&s, b0 + b);
            for (int64_t q = 0; q < r1; q++) {
                const double *src = proj + q * cnt * dr + b * dr;
                double *dst = cur + q * cols0 + ioff;
                for (int64_t jr = 0; jr < dr; jr++) dst[joff[jr]] = src[jr];
            }
        }
        if (!report_progress(params, "tt-svd", nblocks + bi + 1, 2 * nblocks)) {
            st = fpd__err(err, FPD_STATUS_CANCELLED, "TT-SVD cancelled");
            goto done_proj;
        }
    }
done_proj:
    fpd_free(proj);
    if (st) goto done;
    s.ranks[1] = r1;
    ucore[0] = u;
    u = NULL;
    fpd_free(x);
    x = NULL;
    fpd_free(g);
    g = NULL;

    /* ---- steps 1..k-2 in memory (done already when streamed) ---- */
    int64_t cols = cols0;
    for (int32_t m = 1; m < k - 1 && !stream3; m++) {
        int64_t nd = s.row_shape[m] * s.col_shape[m];
        int64_t rows = s.ranks[m] * nd;
        cols /= nd;
        int64_t r = s.ranks[m + 1];
        if ((st = svd_step(cur, rows, cols, &r, &ucore[m], &next, err))) goto done;
        s.ranks[m + 1] = r;
        fpd_free(cur);
        cur = next;
        next = NULL;
    }

    /* ---- cores into the format's layout [p, n_m, r_m, d_m, r_{m+1}] ---- */
    if ((st = fpd_layer_init(&s, &layer, err))) goto done;
    for (int32_t m = 0; m < k; m++) {
        float *core = fpd_layer_core(layer, m);
        const int64_t n = s.row_shape[m], d = s.col_shape[m], ra = s.ranks[m], rb = s.ranks[m + 1];
        /* source rows (a, i, j) of the unfolding; for m = k-1 the source is cur [ra, n d] */
        for (int64_t i = 0; i < n; i++)
            for (int64_t a = 0; a < ra; a++)
                for (int64_t j = 0; j < d; j++)
                    for (int64_t b = 0; b < rb; b++) {
                        double v = m < k - 1 ? ucore[m][((a * n + i) * d + j) * rb + b] : cur[a * (n * d) + i * d + j];
                        core[((i * ra + a) * d + j) * rb + b] = (float)v;
                    }
    }
    *out = layer;
    layer = NULL;
done:
    fpd_free(g);
    fpd_free(ev);
    fpd_free(x);
    fpd_free(u);
    fpd_free(cur);
    fpd_free(next);
    fpd_free(rowbuf);
    fpd_free(joff);
    for (int32_t m = 0; m < FPD_MAX_MODES; m++) fpd_free(ucore[m]);
    fpd_layer_free(layer);
    return st;
}

enum fpd_status fpd_fit_ttsvd(const struct fpd_table_view *w, const struct fpd_layer_shape *shape,
                              const struct fpd_fit_params *params, struct fpd_layer **out, struct fpd_error *err) {
    return ttsvd(w, shape, NULL, params, out, err);
}

/* inv[q] = original row stored at FPD row q, or -1 (padding); [prod(row_shape)], fpd_free. */
static int64_t *invert_perm(const int64_t *perm, int64_t rows, int64_t padded) {
    int64_t *inv = fpd_malloc((size_t)padded * sizeof(int64_t));
    if (!inv) return NULL;
    for (int64_t q = 0; q < padded; q++) inv[q] = -1;
    for (int64_t i = 0; i < rows; i++) inv[perm[i]] = i;
    return inv;
}

/* ------------------------------------------------------------ p > 1 */

/* resid[rows, dim] += sign * term (a one-term layer), in row blocks. */
static enum fpd_status add_term(float *resid, const struct fpd_layer *term, float sign, float *buf, int64_t block,
                                struct fpd_error *err) {
    const struct fpd_layer_shape *s = fpd_layer_get_shape(term);
    struct fpd__reconstructor rc = {0};
    enum fpd_status st = FPD_STATUS_OK;
    for (int64_t r0 = 0; r0 < s->rows; r0 += block) {
        int64_t r1 = r0 + block < s->rows ? r0 + block : s->rows;
        if ((st = fpd__reconstruct_rows(&rc, term, r0, r1, buf, err))) break;
        float *dst = resid + r0 * s->dim;
        for (int64_t e = 0; e < (r1 - r0) * s->dim; e++) dst[e] += sign * buf[e];
    }
    fpd__reconstructor_free(&rc);
    return st;
}

static double sumsq(const float *a, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)a[i] * a[i];
    return s;
}

/* Backfitting of p terms: returns a p-term layer in *out. */
static enum fpd_status fit_backfit(const struct fpd_table_view *w, const struct fpd_layer_shape *shape,
                                   const int64_t *perm, const int64_t *inv, const struct fpd_fit_params *params,
                                   struct fpd_layer **out, int64_t *sweeps_run, struct fpd_error *err) {
    enum fpd_status st = FPD_STATUS_OK;
    const int64_t p = shape->terms, block = 1024;
    struct fpd_layer_shape s1 = *shape;
    s1.terms = 1;
    struct fpd_layer **terms = fpd_calloc((size_t)p, sizeof *terms);
    size_t nel = (size_t)(w->rows * w->dim);
    float *resid = fpd_malloc(nel * sizeof(float));
    float *buf = fpd_malloc((size_t)(block * w->dim) * sizeof(float));
    struct fpd_layer *layer = NULL;
    if (!terms || !resid || !buf) {
        st = fpd__err(err, FPD_STATUS_NOMEM, "out of memory for the backfitting residual (%lld x %lld F32)",
                      (long long)w->rows, (long long)w->dim);
        goto done;
    }
    if ((st = fpd_table_view_rows(w, 0, w->rows, resid, err))) goto done;
    const double norm2 = sumsq(resid, (int64_t)nel);
    const struct fpd_table_view rv = {resid, FPD_DTYPE_F32, w->rows, w->dim};
    double prev = INFINITY;
    int64_t sweep = 0;
    int64_t max_sweeps = params->backfit_sweeps > 0 ? params->backfit_sweeps : 1;
    for (sweep = 0; sweep < max_sweeps; sweep++) {
        for (int64_t t = 0; t < p; t++) {
            if (terms[t]) {
                if ((st = add_term(resid, terms[t], 1.0f, buf, block, err))) goto done;
                fpd_layer_free(terms[t]);
                terms[t] = NULL;
            }
            if ((st = ttsvd(&rv, &s1, inv, NULL, &terms[t], err))) goto done;
            if (perm && (st = fpd_layer_set_row_perm(terms[t], perm, err))) goto done;
            if ((st = add_term(resid, terms[t], -1.0f, buf, block, err))) goto done;
        }
        double rel = norm2 > 0.0 ? sqrt(sumsq(resid, (int64_t)nel) / norm2) : 0.0;
        fpd__log(FPD_LOG_LEVEL_DEBUG, "backfit sweep %lld: relative error %.6f", (long long)sweep + 1, rel);
        if (!report_progress(params, "backfit", sweep + 1, max_sweeps)) {
            st = fpd__err(err, FPD_STATUS_CANCELLED, "backfitting cancelled");
            goto done;
        }
        if (prev - rel < params->backfit_tol * prev) {
            sweep++;
            break;
        }
        prev = rel;
    }
    *sweeps_run = sweep;
    /* all terms share s1's ranks after the caps of TT-SVD; assemble */
    struct fpd_layer_shape sp = *fpd_layer_get_shape(terms[0]);
    for (int64_t t = 1; t < p; t++)
        for (int32_t m = 0; m <= sp.k; m++)
            FPD_ASSERT(fpd_layer_get_shape(terms[t])->ranks[m] == sp.ranks[m]);
    sp.terms = p;
    if ((st = fpd_layer_init(&sp, &layer, err))) goto done;
    for (int32_t m = 0; m < sp.k; m++) {
        size_t per = (size_t)fpd_layer_shape_core_numel(fpd_layer_get_shape(terms[0]), m);
        for (int64_t t = 0; t < p; t++)
            memcpy(fpd_layer_core(layer, m) + (size_t)t * per, fpd_layer_core_const(terms[t], m), per * sizeof(float));
    }
    *out = layer;
    layer = NULL;
done:
    if (terms)
        for (int64_t t = 0; t < p; t++) fpd_layer_free(terms[t]);
    fpd_free(terms);
    fpd_free(resid);
    fpd_free(buf);
    fpd_layer_free(layer);
    return st;
}

/* ------------------------------------------------------------ free coordinates */

enum fpd_status fpd_fit_free_coords(struct fpd_layer *layer, const struct fpd_table_view *w, int64_t c,
                                    double *discarded, struct fpd_error *err) {
    const struct fpd_layer_shape *s = fpd_layer_get_shape(layer);
    const int64_t N = s->rows, D = s->dim, block = 1024;
    if (w->rows != N || w->dim != D)
        return fpd__err(err, FPD_STATUS_SHAPE, "table [%lld, %lld] does not match the layer's [%lld, %lld]",
                        (long long)w->rows, (long long)w->dim, (long long)N, (long long)D);
    if (c < 1 || c > D)
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "free coordinates c = %lld is outside [1, %lld]", (long long)c,
                        (long long)D);
    enum fpd_status st = FPD_STATUS_OK;
    struct fpd_layer *core_only = NULL;
    struct fpd__reconstructor rc = {0};
    float *a = fpd_malloc((size_t)(block * D) * sizeof(float)), *b = fpd_malloc((size_t)(block * D) * sizeof(float));
    double *r = fpd_malloc((size_t)(block * D) * sizeof(double)), *g = fpd_calloc((size_t)(D * D), sizeof(double));
    double *ev = fpd_malloc((size_t)D * sizeof(double)), *v = fpd_malloc((size_t)(D * c) * sizeof(double));
    double *proj = fpd_malloc((size_t)(block * c) * sizeof(double));
    float *E = fpd_malloc((size_t)(N * c) * sizeof(float)), *P = fpd_malloc((size_t)(c * D) * sizeof(float));
    if (!a || !b || !r || !g || !ev || !v || !proj || !E || !P) {
        st = fpd__err(err, FPD_STATUS_NOMEM, "out of memory for %lld free coordinates of %lld rows", (long long)c,
                      (long long)N);
        goto done;
    }
    /* the residual is taken against the cores alone (any free coordinates replaced) */
    if ((st = fpd_layer_clone(layer, &core_only, err)) ||
        (st = fpd_layer_set_free_coords(core_only, 0, NULL, NULL, err)))
        goto done;
    double trace = 0.0;
    for (int pass = 0; pass < 2; pass++) {
        for (int64_t r0 = 0; r0 < N; r0 += block) {
            const int64_t r1 = r0 + block < N ? r0 + block : N, nb = r1 - r0;
            if ((st = fpd_table_view_rows(w, r0, r1, a, err)) ||
                (st = fpd__reconstruct_rows(&rc, core_only, r0, r1, b, err)))
                goto done;
            for (int64_t x = 0; x < nb * D; x++) r[x] = (double)a[x] - (double)b[x];
            if (pass == 0) {
                for (int64_t x = 0; x < nb * D; x++) trace += r[x] * r[x];
                fpd_linalg_dsyrk(true, D, nb, r, D, g, D); /* G += R^T R (upper triangle) */
            } else {
                fpd_linalg_dgemm(false, false, nb, c, D, 1.0, r, D, v, c, 0.0, proj, c); /* R V */
                for (int64_t x = 0; x < nb * c; x++) E[r0 * c + x] = (float)proj[x];
            }
        }
        if (pass == 0) {
            if ((st = fpd_linalg_eig_top(D, g, c, ev, v, err))) goto done;
            double kept = 0.0;
            for (int64_t q = 0; q < c; q++) kept += ev[q] > 0.0 ? ev[q] : 0.0;
            if (discarded) *discarded = trace > kept ? trace - kept : 0.0;
            for (int64_t q = 0; q < c; q++)
                for (int64_t j = 0; j < D; j++) P[q * D + j] = (float)v[j * c + q];
        }
    }
    st = fpd_layer_set_free_coords(layer, c, E, P, err);
done:
    fpd__reconstructor_free(&rc);
    fpd_layer_free(core_only);
    fpd_free(a);
    fpd_free(b);
    fpd_free(r);
    fpd_free(g);
    fpd_free(ev);
    fpd_free(v);
    fpd_free(proj);
    fpd_free(E);
    fpd_free(P);
    return st;
}

enum fpd_status fpd_fit(const struct fpd_table_view *w, const struct fpd_layer_shape *shape,
                        const struct fpd_fit_params *params, struct fpd_layer **out, struct fpd_fit_report *report,
                        struct fpd_error *err) {
    *out = NULL;
    struct fpd_fit_params defaults = fpd_fit_default_params();
    if (!params) params = &defaults;
    struct fpd_fit_report rep;
    memset(&rep, 0, sizeof rep);
    struct fpd_layer *layer = NULL;
    enum fpd_status st = fpd_layer_shape_check(shape, err);
    if (st) return st;
    if (params->free_coords < 0 || params->free_coords > shape->dim)
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "free_coords = %lld is outside [0, dim = %lld]",
                        (long long)params->free_coords, (long long)shape->dim);

    if (params->cluster_rows && params->row_perm)
        return fpd__err(err, FPD_STATUS_INVALID_ARG,
                        "cluster_rows and row_perm both order the rows; give one of them");

    double t0 = fpd__now();
    int64_t *perm = NULL, *inv = NULL;
    if ((params->cluster_rows || params->row_perm) && shape->k > 1) {
        int64_t padded = 1;
        for (int32_t m = 0; m < shape->k; m++) padded *= shape->row_shape[m];
        perm = fpd_malloc((size_t)w->rows * sizeof(int64_t));
        if (!perm) {
            st = fpd__err(err, FPD_STATUS_NOMEM, "out of memory for a row permutation");
            goto done;
        }
        if (params->row_perm) { /* the caller's, checked before it indexes anything */
            memcpy(perm, params->row_perm, (size_t)w->rows * sizeof(int64_t));
            for (int64_t i = 0; i < w->rows; i++)
                if (perm[i] < 0 || perm[i] >= padded) {
                    st = fpd__err(err, FPD_STATUS_INVALID_ARG, "row_perm[%lld] = %lld is outside [0, %lld)",
                                  (long long)i, (long long)perm[i], (long long)padded);
                    fpd_free(perm);
                    goto done;
                }
        } else if ((st = fpd_row_perm_cluster(w, shape, params->seed, perm, err))) {
            fpd_free(perm);
            goto done;
        }
        inv = invert_perm(perm, w->rows, padded);
        if (!inv) {
            fpd_free(perm);
            st = fpd__err(err, FPD_STATUS_NOMEM, "out of memory for a row permutation");
            goto done;
        }
        for (int64_t i = 0; i < w->rows && params->row_perm; i++)
            if (inv[perm[i]] != i) {
                st = fpd__err(err, FPD_STATUS_INVALID_ARG, "row_perm[%lld] = %lld appears twice",
                              (long long)i, (long long)perm[i]);
                fpd_free(perm);
                fpd_free(inv);
                goto done;
            }
    }
    if (shape->terms == 1) st = ttsvd(w, shape, inv, params, &layer, err);
    else st = fit_backfit(w, shape, perm, inv, params, &layer, &rep.backfit_sweeps, err);
    if (!st && perm) st = fpd_layer_set_row_perm(layer, perm, err);
    fpd_free(perm);
    fpd_free(inv);
    if (st) goto done;
    struct fpd_error_stats es;
    if ((st = fpd_layer_error(layer, w, &es, err))) goto done;
    rep.rel_error_fit = rep.rel_error_als = rep.rel_error_final = es.rel_error;
    if (params->als_sweeps > 0) {
        if ((st = fpd_als(layer, w, params->als_sweeps, params->als_tol, params, NULL, &rep.als_sweeps, err)))
            goto done;
        if ((st = fpd_layer_error(layer, w, &es, err))) goto done;
        rep.rel_error_als = rep.rel_error_final = es.rel_error;
    }
    rep.fit_seconds = fpd__now() - t0;

    if (params->finetune_epochs > 0) {
        t0 = fpd__now();
        double before, after;
        /* fpd_finetune keeps the best epoch, so the result is never worse */
        if ((st = fpd_finetune(layer, w, params, &before, &after, err))) goto done;
        rep.finetune_epochs = params->finetune_epochs;
        rep.finetune_kept = after < before;
        struct fpd_error_stats es2;
        if ((st = fpd_layer_error(layer, w, &es2, err))) goto done;
        rep.rel_error_final = es2.rel_error;
        rep.finetune_seconds = fpd__now() - t0;
    }
    rep.rel_error_free = rep.rel_error_final;
    if (params->free_coords > 0) {
        if ((st = fpd_fit_free_coords(layer, w, params->free_coords, NULL, err))) goto done;
        struct fpd_error_stats es3;
        if ((st = fpd_layer_error(layer, w, &es3, err))) goto done;
        rep.rel_error_free = es3.rel_error;
    }
    *out = layer;
    layer = NULL;
done:
    fpd_layer_free(layer);
    if (report) *report = rep;
    return st;
}
