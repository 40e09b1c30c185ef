/*
 * test-predict.c - predicted errors from a table's data: the TT-SVD error profile
 * against fpd_fit_ttsvd + fpd_layer_error, an exactly low-rank table, the r sqrt(p)
 * rule for p > 1 against backfitting, the sampled path (large tables) against the
 * whole-table prediction, --max-error selection, and the real GloVe table (skipped
 * when the shared data is absent).
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <math.h>
#include <string.h>

#include "formats/fpd-formats.h"
#include "heuristics/fpd-heuristics.h"
#include "heuristics/heuristics-impl.h"
#include "tests/test-util.h"

/* A [rows, dim] F32 table: random rank-4 structure (smooth in the row index, like a
 * frequency-sorted vocabulary) plus iid noise of `noise` (test_smooth_table). */
static float *make_table(int64_t rows, int64_t dim, double noise, uint64_t seed) {
    float *w = test_smooth_table(rows, dim, noise, seed);
    cr_assert(not(eq(ptr, w, NULL)));
    return w;
}

static struct fpd_layer_shape shape_of(int64_t rows, int64_t dim, int k, const int64_t *n, const int64_t *d,
                                       int64_t r, int64_t p) {
    struct fpd_layer_shape s;
    memset(&s, 0, sizeof s);
    s.rows = rows;
    s.dim = dim;
    s.k = k;
    s.terms = p;
    for (int m = 0; m < k; m++) {
        s.row_shape[m] = n[m];
        s.col_shape[m] = d[m];
    }
    fpd_layer_shape_set_rank(&s, r);
    return s;
}

/* Relative error of fpd_fit_ttsvd at rank r (p = 1) or fpd_fit with no ALS and no
 * finetuning (p > 1: backfitting). */
static double fitted_error(const struct fpd_table_view *w, const struct fpd_layer_shape *s) {
    struct fpd_layer *l = NULL;
    struct fpd_error err;
    struct fpd_fit_params fp = fpd_fit_default_params();
    fp.finetune_epochs = 0;
    fp.als_sweeps = 0;
    if (s->terms == 1) cr_assert(eq(int, fpd_fit_ttsvd(w, s, &fp, &l, &err), 0), "%s", err.msg);
    else cr_assert(eq(int, fpd_fit(w, s, &fp, &l, NULL, &err), 0), "%s", err.msg);
    struct fpd_error_stats es;
    cr_assert(eq(int, fpd_layer_error(l, w, &es, &err), 0), "%s", err.msg);
    fpd_layer_free(l);
    return es.rel_error;
}

/* The profile is the TT-SVD error: equal to what fpd_fit_ttsvd reaches (no padding
 * rows, so the padded error is the table's), for k = 2, 3, 4 and many ranks. */
Test(predict, profile_equals_ttsvd) {
    struct { int k; int64_t n[4], d[4]; } cases[] = {
        { 3, { 12, 10, 8 }, { 3, 2, 2 } },
        { 2, { 40, 24 }, { 4, 3 } },
        { 4, { 6, 5, 4, 8 }, { 3, 2, 1, 2 } },
    };
    for (size_t q = 0; q < sizeof cases / sizeof cases[0]; q++) {
        int k = cases[q].k;
        int64_t rows = 1, dim = 1;
        for (int m = 0; m < k; m++) {
            rows *= cases[q].n[m];
            dim *= cases[q].d[m];
        }
        float *data = make_table(rows, dim, 0.3, 7 + q);
        struct fpd_table_view w = { data, FPD_DTYPE_F32, rows, dim };
        int64_t ranks[] = { 1, 2, 3, 5, 8, 13, 40 };
        double e2[7];
        struct fpd_layer_shape s = shape_of(rows, dim, k, cases[q].n, cases[q].d, 1, 1);
        struct fpd_error err;
        cr_assert(eq(int, fpd__ttsvd_profile(&w, &s, ranks, 7, e2, &err), 0), "%s", err.msg);
        for (int i = 0; i < 7; i++) {
            struct fpd_layer_shape sr = shape_of(rows, dim, k, cases[q].n, cases[q].d, ranks[i], 1);
            double fit = fitted_error(&w, &sr);
            cr_assert(lt(dbl, fabs(sqrt(e2[i]) - fit), 1e-4 + 1e-3 * fit), "k=%d r=%lld: profile %.6f, fit %.6f", k,
                      (long long)ranks[i], sqrt(e2[i]), fit);
            if (i) cr_assert(le(dbl, e2[i], e2[i - 1] + 1e-12), "the error must not grow with the rank");
        }
        free(data);
    }
}

/* A table that IS a rank-3 tensor train: predicted 0 from rank 3 on, > 0 below. */
Test(predict, exact_tt_table) {
    int64_t n[3] = { 9, 8, 7 }, d[3] = { 4, 2, 3 };
    int64_t rows = 9 * 8 * 7, dim = 24;
    struct fpd_layer_shape s = shape_of(rows, dim, 3, n, d, 3, 1);
    struct fpd_layer *l = NULL;
    cr_assert(eq(int, fpd_layer_init(&s, &l, NULL), 0));
    test_fill_random(l, 11, 1.0);
    float *data = malloc((size_t)(rows * dim) * sizeof(float));
    cr_assert(eq(int, fpd_layer_reconstruct(l, 0, rows, data, NULL), 0));
    fpd_layer_free(l);
    struct fpd_table_view w = { data, FPD_DTYPE_F32, rows, dim };
    int64_t ranks[] = { 1, 2, 3, 4, 6 };
    double e2[5];
    cr_assert(eq(int, fpd__ttsvd_profile(&w, &s, ranks, 5, e2, NULL), 0));
    cr_assert(gt(dbl, e2[0], 1e-3));
    cr_assert(gt(dbl, e2[1], 1e-4));
    for (int i = 2; i < 5; i++) cr_assert(lt(dbl, e2[i], 1e-9), "rank %lld: %g", (long long)ranks[i], e2[i]);

    /* --max-error picks the smallest candidate predicted at or below it */
    struct fpd_plan_params pp = fpd_plan_default_params();
    pp.table = &w;
    pp.k = 3;
    pp.min_rows = 0;
    pp.max_error = 1e-3;
    struct fpd_suggestion *sg = NULL;
    struct fpd_error err;
    cr_assert(eq(int, fpd_suggest(rows, dim, FPD_DTYPE_F32, &pp, &sg, &err), 0), "%s", err.msg);
    cr_assert(sg->errors_known);
    cr_assert(ge(i64, sg->selected, 0));
    const struct fpd_candidate *c = &sg->candidates[sg->selected];
    cr_assert(le(dbl, c->predicted_error, 1e-3));
    for (int64_t i = 0; i < sg->n_candidates; i++) {
        const struct fpd_candidate *o = &sg->candidates[i];
        cr_assert(not(isnan(o->predicted_error)));
        cr_assert(eq(int, o->eligible, o->predicted_error <= 1e-3));
        if (o->eligible) cr_assert(ge(sz, o->bytes, c->bytes));
    }
    fpd_suggestion_free(sg);
    free(data);
}

/* p > 1: the geometric mean of the p = 1 errors at ranks r sqrt(p) and p r lands
 * within 6% of backfitting on a table with strong smooth row structure (r sqrt(p)
 * alone: 11% high on it). */
Test(predict, terms_as_equivalent_rank) {
    int64_t n[3] = { 16, 15, 14 }, d[3] = { 4, 2, 4 };
    int64_t rows = 16 * 15 * 14, dim = 32;
    float *data = make_table(rows, dim, 0.5, 3);
    struct fpd_table_view w = { data, FPD_DTYPE_F32, rows, dim };
    struct fpd_candidate c[4];
    int64_t rp[4][2] = { { 4, 2 }, { 4, 4 }, { 8, 2 }, { 6, 1 } };
    memset(c, 0, sizeof c);
    for (int i = 0; i < 4; i++) {
        c[i].shape = shape_of(rows, dim, 3, n, d, rp[i][0], rp[i][1]);
        c[i].r = rp[i][0];
    }
    char est[256];
    struct fpd_error err;
    cr_assert(eq(int, fpd__predict_errors(&w, c, 4, FPD__PREDICT_FULL_CELLS, est, sizeof est, &err), 0), "%s",
              err.msg);
    cr_assert(not(eq(ptr, strstr(est, "all 3360 rows"), NULL)), "%s", est);
    for (int i = 0; i < 4; i++) {
        double fit = fitted_error(&w, &c[i].shape);
        cr_assert(lt(dbl, fabs(c[i].predicted_error - fit), 0.06 * fit), "(%lld, %lld): predicted %.4f, fitted %.4f",
                  (long long)rp[i][0], (long long)rp[i][1], c[i].predicted_error, fit);
    }
    /* (4, 4) is the geometric mean of (8, 1) and (16, 1) */
    struct fpd_candidate e[3];
    memset(e, 0, sizeof e);
    int64_t rr[3][2] = { { 4, 4 }, { 8, 1 }, { 16, 1 } };
    for (int i = 0; i < 3; i++) {
        e[i].shape = shape_of(rows, dim, 3, n, d, rr[i][0], rr[i][1]);
        e[i].r = rr[i][0];
    }
    cr_assert(eq(int, fpd__predict_errors(&w, e, 3, FPD__PREDICT_FULL_CELLS, NULL, 0, NULL), 0));
    cr_assert(lt(dbl, fabs(e[0].predicted_error - sqrt(e[1].predicted_error * e[2].predicted_error)), 1e-12));
    free(data);
}

/* Large tables: middle-mode samples extrapolated in 1/s agree with the whole table,
 * with and without free coordinates (the rule lists c = 1, 2 for D = 16 under the
 * budget of the dense size). */
Test(predict, sampled_matches_whole) {
    int64_t rows = 60000, dim = 16;
    float *data = make_table(rows, dim, 0.6, 5);
    struct fpd_table_view w = { data, FPD_DTYPE_F32, rows, dim };
    struct fpd_plan_params pp = fpd_plan_default_params();
    pp.table = &w;
    pp.free_coords = FPD_FREE_COORDS_AUTO;
    pp.budget_bytes = (size_t)rows * (size_t)dim * 4;
    struct fpd_suggestion *whole = NULL, *samp = NULL;
    struct fpd_error err;
    cr_assert(eq(int, fpd__suggest_ex(rows, dim, FPD_DTYPE_F32, &pp, INT64_C(1) << 24, &whole, &err), 0), "%s",
              err.msg);
    cr_assert(eq(int, fpd__suggest_ex(rows, dim, FPD_DTYPE_F32, &pp, INT64_C(1) << 16, &samp, &err), 0), "%s",
              err.msg);
    cr_assert(not(eq(ptr, strstr(whole->estimate, "all 60000 rows"), NULL)), "%s", whole->estimate);
    cr_assert(not(eq(ptr, strstr(samp->estimate, "row samples"), NULL)), "%s", samp->estimate);
    cr_assert(eq(i64, whole->n_candidates, samp->n_candidates));
    cr_assert(not(eq(ptr, strstr(samp->estimate, "c > 0"), NULL)), "%s", samp->estimate);
    int64_t compared = 0, compared_free = 0;
    for (int64_t i = 0; i < samp->n_candidates; i++) {
        const struct fpd_candidate *a = &samp->candidates[i];
        const struct fpd_candidate *b = NULL;
        for (int64_t j = 0; j < whole->n_candidates && !b; j++)
            if (whole->candidates[j].r == a->r && whole->candidates[j].shape.terms == a->shape.terms &&
                whole->candidates[j].shape.k == a->shape.k && whole->candidates[j].free_coords == a->free_coords)
                b = &whole->candidates[j];
        cr_assert(not(eq(ptr, (void *)b, NULL)));
        cr_assert(not(isnan(b->predicted_error)));
        if (isnan(a->predicted_error)) continue; /* a rank the sample cannot resolve */
        compared++;
        compared_free += a->free_coords > 0;
        cr_assert(lt(dbl, fabs(a->predicted_error - b->predicted_error), 0.10 * b->predicted_error),
                  "(%lld, %lld, k=%d, c=%lld): sampled %.4f, whole %.4f", (long long)a->r, (long long)a->shape.terms,
                  (int)a->shape.k, (long long)a->free_coords, a->predicted_error, b->predicted_error);
    }
    cr_assert(ge(i64, compared, samp->n_candidates / 2));
    cr_assert(ge(i64, compared_free, 4));
    fpd_suggestion_free(whole);
    fpd_suggestion_free(samp);

    /* k = 2 has no middle mode: no estimate on a sample, and it says so */
    struct fpd_candidate c;
    memset(&c, 0, sizeof c);
    int64_t n2[2] = { 250, 240 }, d2[2] = { 4, 4 };
    c.shape = shape_of(rows, dim, 2, n2, d2, 4, 1);
    c.r = 4;
    char est[256];
    cr_assert(eq(int, fpd__predict_errors(&w, &c, 1, 1 << 16, est, sizeof est, NULL), 0));
    cr_assert(isnan(c.predicted_error));
    cr_assert(not(eq(ptr, strstr(est, "not estimated"), NULL)), "%s", est);
    free(data);
}

/* max_error that no candidate reaches: no pick, and fpd_plan_table keeps it dense. */
Test(predict, unreachable_max_error) {
    int64_t rows = 5000, dim = 8;
    float *data = make_table(rows, dim, 1.0, 9);
    struct fpd_table_view w = { data, FPD_DTYPE_F32, rows, dim };
    struct fpd_plan_params pp = fpd_plan_default_params();
    pp.table = &w;
    pp.max_error = 1e-6;
    struct fpd_suggestion *sg = NULL;
    cr_assert(eq(int, fpd_suggest(rows, dim, FPD_DTYPE_F32, &pp, &sg, NULL), 0));
    cr_assert(eq(i64, sg->selected, -1));
    cr_assert(not(sg->compress));
    cr_assert(not(eq(ptr, strstr(sg->reason, "predicted to reach"), NULL)), "%s", sg->reason);
    fpd_suggestion_free(sg);
    struct fpd_plan plan;
    cr_assert(eq(int, fpd_plan_table(rows, dim, FPD_DTYPE_F32, &pp, &plan, NULL), 0));
    cr_assert(not(plan.compress));
    cr_assert(not(isnan(plan.predicted_error)));
    /* a reachable one: the plan carries the prediction and compresses */
    pp.max_error = 0.9;
    cr_assert(eq(int, fpd_plan_table(rows, dim, FPD_DTYPE_F32, &pp, &plan, NULL), 0));
    cr_assert(plan.compress, "%s", plan.reason);
    cr_assert(le(dbl, plan.predicted_error, 0.9));
    free(data);
}

/* Non-finite entries are refused; F16 data works. */
Test(predict, data_checks) {
    int64_t rows = 1200, dim = 8;
    float *data = make_table(rows, dim, 0.5, 1);
    struct fpd_plan_params pp = fpd_plan_default_params();
    uint16_t *h = malloc((size_t)(rows * dim) * sizeof(uint16_t));
    cr_assert(eq(int, fpd_dtype_from_f32(FPD_DTYPE_F16, data, h, rows * dim), 0));
    struct fpd_table_view wh = { h, FPD_DTYPE_F16, rows, dim };
    pp.table = &wh;
    struct fpd_suggestion *sg = NULL;
    struct fpd_error err;
    cr_assert(eq(int, fpd_suggest(rows, dim, FPD_DTYPE_F16, &pp, &sg, &err), 0), "%s", err.msg);
    cr_assert(not(isnan(sg->candidates[0].predicted_error)));
    /* fpd_plan_table (no max_error) predicts the pick alone: the same value */
    struct fpd_plan plan;
    cr_assert(eq(int, fpd_plan_table(rows, dim, FPD_DTYPE_F16, &pp, &plan, &err), 0), "%s", err.msg);
    cr_assert(eq(i64, plan.params, sg->candidates[0].params));
    cr_assert(lt(dbl, fabs(plan.predicted_error - sg->candidates[0].predicted_error), 1e-12));
    fpd_suggestion_free(sg);
    data[77] = NAN;
    struct fpd_table_view w = { data, FPD_DTYPE_F32, rows, dim };
    pp.table = &w;
    cr_assert(eq(int, fpd_suggest(rows, dim, FPD_DTYPE_F32, &pp, &sg, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(not(eq(ptr, strstr(err.msg, "NaN"), NULL)), "%s", err.msg);
    free(h);
    free(data);
}

/* GloVe 20000 x 100: predictions against the real fits (epochs 0, no ALS), and the
 * sampled path against the whole table. Skipped without the shared data. */
Test(predict, glove_real) {
    const char *path = test_data_path("glove/glove100d_top20k.npy");
    if (!path) cr_skip_test("GloVe table not found (set FPD_DATA_DIR)");
    struct fpd_npy *npy = NULL;
    struct fpd_error err;
    cr_assert(eq(int, fpd_npy_open(path, &npy, &err), 0), "%s", err.msg);
    const struct fpd_tensor_info *t = fpd_npy_tensor(npy);
    struct fpd_table_view w = { t->data, t->dtype, t->shape[0], t->shape[1] };
    struct fpd_plan_params pp = fpd_plan_default_params();
    pp.table = &w;
    struct fpd_suggestion *sg = NULL, *samp = NULL;
    cr_assert(eq(int, fpd_suggest(w.rows, w.dim, w.dtype, &pp, &sg, &err), 0), "%s", err.msg);
    cr_assert(eq(int, fpd__suggest_ex(w.rows, w.dim, w.dtype, &pp, INT64_C(1) << 18, &samp, &err), 0), "%s", err.msg);
    int checked = 0;
    for (int64_t i = 0; i < sg->n_candidates && checked < 4; i++) {
        const struct fpd_candidate *c = &sg->candidates[i];
        if (c->bytes > 400000) continue; /* keep the test short */
        double fit = fitted_error(&w, &c->shape);
        cr_assert(lt(dbl, fabs(c->predicted_error - fit), 0.02 * fit), "(%lld, %lld, k=%d): predicted %.4f, fit %.4f",
                  (long long)c->r, (long long)c->shape.terms, (int)c->shape.k, c->predicted_error, fit);
        checked++;
    }
    for (int64_t i = 0; i < samp->n_candidates; i++) {
        const struct fpd_candidate *a = &samp->candidates[i];
        if (isnan(a->predicted_error)) continue;
        for (int64_t j = 0; j < sg->n_candidates; j++) {
            const struct fpd_candidate *b = &sg->candidates[j];
            if (b->r == a->r && b->shape.terms == a->shape.terms && b->shape.k == a->shape.k)
                cr_assert(lt(dbl, fabs(a->predicted_error - b->predicted_error), 0.10 * b->predicted_error),
                          "(%lld, %lld, k=%d): sampled %.4f, whole %.4f", (long long)a->r, (long long)a->shape.terms,
                          (int)a->shape.k, a->predicted_error, b->predicted_error);
        }
    }
    fpd_suggestion_free(sg);
    fpd_suggestion_free(samp);
    fpd_npy_free(npy);
}
