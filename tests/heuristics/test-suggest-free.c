/*
 * test-suggest-free.c - free coordinates per row in the heuristic (fpd_plan_params.
 * free_coords): candidate sizes against the closed form (cores + c (N + D)), the
 * rule's c set, the predicted error with c on a planted table (an exact tensor train
 * plus a rank-c part the train cannot hold: predicted ~0 with that c, and picked
 * under a budget), an exact tensor train (c = 0 wins at equal bytes), the prediction
 * against fpd_fit(free_coords = c) on samples/glove-10k.safetensors, and refusals
 * (the sampled path against the whole table is in test-predict.c).
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <math.h>
#include <string.h>

#include "formats/fpd-formats.h"
#include "heuristics/fpd-heuristics.h"
#include "heuristics/heuristics-impl.h"
#include "tests/test-util.h"

static struct fpd_suggestion *suggest_ok(int64_t rows, int64_t dim, const struct fpd_plan_params *pp) {
    struct fpd_suggestion *sg = NULL;
    struct fpd_error err;
    cr_assert(eq(int, fpd_suggest(rows, dim, FPD_DTYPE_F32, pp, &sg, &err), FPD_STATUS_OK), "%s", err.msg);
    return sg;
}

/* Parameters of the cores counted here: p * sum_m ranks[m] n_m d_m ranks[m+1]. */
static int64_t cores_closed_form(const struct fpd_layer_shape *s) {
    int64_t t = 0;
    for (int32_t m = 0; m < s->k; m++) t += s->ranks[m] * s->row_shape[m] * s->col_shape[m] * s->ranks[m + 1];
    return s->terms * t;
}

/* The candidate (r, p = 1, k, c), or NULL. */
static const struct fpd_candidate *find(const struct fpd_suggestion *sg, int64_t r, int32_t k, int64_t c) {
    for (int64_t i = 0; i < sg->n_candidates; i++) {
        const struct fpd_candidate *x = &sg->candidates[i];
        if (x->r == r && x->shape.terms == 1 && x->shape.k == k && x->free_coords == c) return x;
    }
    return NULL;
}

/* Sizes: cores + c (N + D) values, in the cores' dtype; the rule lists c in 1, 2, 4, 8
 * up to D / 8 under a target only, each with every p = 1 candidate; a fixed C is
 * carried by every candidate. */
Test(suggest_free, sizes_and_rule) {
    int64_t dims[] = { 7, 8, 16, 64, 100 };
    for (size_t q = 0; q < sizeof dims / sizeof dims[0]; q++) {
        int64_t N = 20000, D = dims[q];
        struct fpd_plan_params pp = fpd_plan_default_params();
        pp.free_coords = FPD_FREE_COORDS_AUTO;
        pp.core_dtype = q % 2 ? FPD_DTYPE_F16 : FPD_DTYPE_F32;
        size_t esz = q % 2 ? 2 : 4;
        /* no target: nothing to trade, c = 0 only */
        struct fpd_suggestion *sg = suggest_ok(N, D, &pp);
        for (int64_t i = 0; i < sg->n_candidates; i++) cr_assert(eq(i64, sg->candidates[i].free_coords, 0));
        int64_t n_plain = sg->n_candidates, n_p1 = 0;
        for (int64_t i = 0; i < sg->n_candidates; i++) n_p1 += sg->candidates[i].shape.terms == 1;
        fpd_suggestion_free(sg);
        pp.budget_bytes = (size_t)N * (size_t)D * 4; /* the dense table */
        sg = suggest_ok(N, D, &pp);
        int64_t seen[9] = { 0 };
        for (int64_t i = 0; i < sg->n_candidates; i++) {
            const struct fpd_candidate *c = &sg->candidates[i];
            int64_t fc = c->free_coords;
            cr_assert(fc == 0 || fc == 1 || fc == 2 || fc == 4 || fc == 8, "c = %lld", (long long)fc);
            cr_assert(le(i64, 8 * fc, D), "c = %lld > D / 8 for D = %lld", (long long)fc, (long long)D);
            if (fc) cr_assert(eq(i64, c->shape.terms, 1));
            seen[fc]++;
            cr_assert(eq(i64, c->params, cores_closed_form(&c->shape) + fc * N + fc * D));
            cr_assert(eq(sz, c->bytes, (size_t)c->params * esz));
            cr_assert(lt(dbl, fabs(c->ratio - (double)(N * D * 4) / (double)c->bytes), 1e-9 * c->ratio));
        }
        cr_assert(eq(i64, seen[0], n_plain));
        for (int64_t fc = 1; fc <= 8; fc *= 2) cr_assert(eq(i64, seen[fc], 8 * fc <= D ? n_p1 : 0));
        /* without data the pick never has c > 0 (nothing says what c buys) */
        cr_assert(ge(i64, sg->selected, 0));
        cr_assert(eq(i64, sg->candidates[sg->selected].free_coords, 0));
        fpd_suggestion_free(sg);
    }
    /* a given rank (and k): the rule pairs each c with it */
    struct fpd_plan_params pp = fpd_plan_default_params();
    pp.rank = 16;
    pp.k = 3;
    pp.free_coords = FPD_FREE_COORDS_AUTO;
    pp.budget_bytes = 20000 * 64 * 4;
    struct fpd_suggestion *sg = suggest_ok(20000, 64, &pp);
    cr_assert(eq(i64, sg->n_candidates, 5));
    for (int64_t i = 0; i < sg->n_candidates; i++) {
        cr_assert(eq(i64, sg->candidates[i].r, 16));
        cr_assert(eq(i64, sg->candidates[i].free_coords, i == 0 ? 0 : INT64_C(1) << (i - 1)));
    }
    fpd_suggestion_free(sg);
    /* fixed C: every candidate carries it; plan reports it */
    pp = fpd_plan_default_params();
    pp.free_coords = 3;
    sg = suggest_ok(20000, 64, &pp);
    for (int64_t i = 0; i < sg->n_candidates; i++) {
        const struct fpd_candidate *c = &sg->candidates[i];
        cr_assert(eq(i64, c->free_coords, 3));
        cr_assert(eq(i64, c->params, cores_closed_form(&c->shape) + 3 * (20000 + 64)));
    }
    struct fpd_plan plan;
    cr_assert(eq(int, fpd_plan_table(20000, 64, FPD_DTYPE_F32, &pp, &plan, NULL), FPD_STATUS_OK));
    cr_assert(eq(i64, plan.free_coords, 3));
    cr_assert(eq(i64, plan.params, sg->candidates[sg->selected].params));
    fpd_suggestion_free(sg);
    /* a budget below C (N + D) values alone: no candidate, and the message says c */
    pp.budget_bytes = 3 * (20000 + 64) * 4;
    struct fpd_error err;
    sg = NULL;
    cr_assert(eq(int, fpd_suggest(20000, 64, FPD_DTYPE_F32, &pp, &sg, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(not(eq(ptr, strstr(err.msg, "c=3"), NULL)), "%s", err.msg);
}

/* Refusals: c > D, c < 0 other than AUTO. */
Test(suggest_free, refusals) {
    struct fpd_plan_params pp = fpd_plan_default_params();
    struct fpd_suggestion *sg = NULL;
    struct fpd_error err;
    pp.free_coords = 65;
    cr_assert(eq(int, fpd_suggest(20000, 64, FPD_DTYPE_F32, &pp, &sg, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(not(eq(ptr, strstr(err.msg, "free_coords = 65 > dim = 64"), NULL)), "%s", err.msg);
    pp.free_coords = 64; /* c = D is allowed (the residual's whole row space) */
    cr_assert(eq(int, fpd_suggest(20000, 64, FPD_DTYPE_F32, &pp, &sg, &err), FPD_STATUS_OK), "%s", err.msg);
    fpd_suggestion_free(sg);
    sg = NULL;
    pp.free_coords = -2;
    cr_assert(eq(int, fpd_suggest(20000, 64, FPD_DTYPE_F32, &pp, &sg, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(not(eq(ptr, strstr(err.msg, "free_coords = -2"), NULL)), "%s", err.msg);
    struct fpd_plan plan;
    cr_assert(eq(int, fpd_plan_table(20000, 64, FPD_DTYPE_F32, &pp, &plan, &err), FPD_STATUS_INVALID_ARG));
}

/* A table [N, D] that is an exact train of rank r in a k = 3 shape (the
 * suggestion's, with prod(row_shape) = N: no padding), masked to zero where the first
 * column digit is d_0 - 1 or the last is d_2 - 1 (a product of masks on single column
 * modes: the TT-ranks stay), plus, when c > 0, B = u v^T with u [N, c] random per row
 * and v [c, D] supported where both digits are last, scaled so that
 * ||B|| = scale ||TT||. In TT-SVD's first unfolding (rows (i_0, j_0), columns
 * (i_1, j_1, i_2, j_2)) the two parts then share neither rows nor columns, so the
 * unfolding's SVD is the union of theirs and, with B small enough that its singular
 * values stay below the train's r-th, the rank-r truncation keeps the train's
 * subspace: TT-SVD recovers the train exactly and the residual is B, of rank c.
 * *bnorm2 and *wnorm2 receive ||B||^2 and ||W||^2. */
static float *planted(const struct fpd_layer_shape *shape, int64_t r, int64_t c, double scale, uint64_t seed,
                      double *bnorm2, double *wnorm2) {
    struct fpd_layer_shape s = *shape;
    s.terms = 1;
    fpd_layer_shape_set_rank(&s, r);
    cr_assert(eq(i64, s.k, 3));
    cr_assert(eq(i64, s.row_shape[0] * s.row_shape[1] * s.row_shape[2], s.rows));
    struct fpd_layer *l = NULL;
    cr_assert(eq(int, fpd_layer_init(&s, &l, NULL), 0));
    test_fill_random(l, seed, 1.0);
    const int64_t N = s.rows, D = s.dim, d0 = s.col_shape[0], d2 = s.col_shape[2];
    float *w = malloc((size_t)(N * D) * sizeof(float));
    cr_assert(eq(int, fpd_layer_reconstruct(l, 0, N, w, NULL), 0));
    fpd_layer_free(l);
    /* column j = (j_0 d_1 + j_1) d_2 + j_2 */
    bool *bcol = malloc((size_t)D * sizeof(bool)), *acol = malloc((size_t)D * sizeof(bool));
    for (int64_t j = 0; j < D; j++) {
        bool last0 = j / (D / d0) == d0 - 1, last2 = j % d2 == d2 - 1;
        acol[j] = !last0 && !last2;
        bcol[j] = last0 && last2;
    }
    double a2 = 0.0;
    for (int64_t e = 0; e < N * D; e++) {
        if (!acol[e % D]) w[e] = 0.0f;
        a2 += (double)w[e] * (double)w[e];
    }
    double *b = calloc((size_t)(N * D), sizeof(double));
    double b2 = 0.0;
    if (c > 0) {
        double *u = malloc((size_t)(N * c) * sizeof(double)), *v = calloc((size_t)(c * D), sizeof(double));
        seed ^= 0x5DEECE66DULL;
        for (int64_t e = 0; e < N * c; e++) u[e] = test_rand_sym(&seed);
        for (int64_t q = 0; q < c; q++)
            for (int64_t j = 0; j < D; j++) v[q * D + j] = bcol[j] ? test_rand_sym(&seed) : 0.0;
        for (int64_t i = 0; i < N; i++)
            for (int64_t j = 0; j < D; j++) {
                double x = 0.0;
                for (int64_t q = 0; q < c; q++) x += u[i * c + q] * v[q * D + j];
                b[i * D + j] = x;
                b2 += x * x;
            }
        free(u);
        free(v);
    }
    double f = b2 > 0.0 ? scale * sqrt(a2 / b2) : 0.0;
    double w2 = 0.0, bb = 0.0;
    for (int64_t e = 0; e < N * D; e++) {
        float x = (float)(f * b[e]);
        bb += (double)x * (double)x;
        w[e] += x;
        w2 += (double)w[e] * (double)w[e];
    }
    free(b);
    free(acol);
    free(bcol);
    *bnorm2 = bb;
    *wnorm2 = w2;
    return w;
}

/* The planted table: with c = 2 the prediction is ~0; without c it is ||B|| / ||W||
 * (the part TT-SVD leaves, closed form); under a budget that allows c, c > 0 wins. */
Test(suggest_free, planted_rank_c) {
    const int64_t N = 4096, D = 64, c0 = 2;
    struct fpd_plan_params pp = fpd_plan_default_params();
    pp.k = 3;
    pp.min_rows = 0;
    struct fpd_suggestion *shape_sg = suggest_ok(N, D, &pp);
    const int64_t r0 = shape_sg->rank_step;
    const struct fpd_candidate *base = find(shape_sg, r0, 3, 0);
    cr_assert(not(eq(ptr, (void *)base, NULL)));
    double b2, w2;
    float *data = planted(&base->shape, r0, c0, 0.3, 17, &b2, &w2);
    fpd_suggestion_free(shape_sg);
    struct fpd_table_view w = { data, FPD_DTYPE_F32, N, D };
    pp.table = &w;
    pp.free_coords = FPD_FREE_COORDS_AUTO;
    pp.budget_bytes = (size_t)N * (size_t)D * 4;
    struct fpd_suggestion *sg = suggest_ok(N, D, &pp);
    const struct fpd_candidate *wp = find(sg, r0, 3, c0), *without = find(sg, r0, 3, 0);
    cr_assert(not(eq(ptr, (void *)wp, NULL)));
    cr_assert(not(eq(ptr, (void *)without, NULL)));
    const struct fpd_candidate with = *wp; /* kept past sg */
    cr_assert(lt(dbl, with.predicted_error, 1e-3), "c = %lld: predicted %g", (long long)c0, with.predicted_error);
    double ref = sqrt(b2 / w2);
    cr_assert(lt(dbl, fabs(without->predicted_error - ref), 1e-3 * ref), "c = 0: predicted %.6f, ||B||/||W|| %.6f",
              without->predicted_error, ref);
    /* c = 1 removes one of the two directions of B: about half its energy is left */
    const struct fpd_candidate *one = find(sg, r0, 3, 1);
    cr_assert(not(eq(ptr, (void *)one, NULL)));
    cr_assert(gt(dbl, one->predicted_error, 0.2 * ref));
    cr_assert(lt(dbl, one->predicted_error, ref));
    fpd_suggestion_free(sg);

    /* a budget of exactly (r0, c0)'s bytes: the pick has c > 0 and error ~0; every c = 0
     * candidate in the budget is predicted worse */
    pp.budget_bytes = with.bytes;
    sg = suggest_ok(N, D, &pp);
    cr_assert(ge(i64, sg->selected, 0));
    const struct fpd_candidate *pk = &sg->candidates[sg->selected];
    cr_assert(gt(i64, pk->free_coords, 0), "picked r=%lld c=%lld", (long long)pk->r, (long long)pk->free_coords);
    cr_assert(lt(dbl, pk->predicted_error, 1e-3));
    cr_assert(le(sz, pk->bytes, pp.budget_bytes));
    for (int64_t i = 0; i < sg->n_candidates; i++) {
        const struct fpd_candidate *x = &sg->candidates[i];
        if (x->eligible && x->free_coords == 0) cr_assert(gt(dbl, x->predicted_error, 0.1 * ref));
    }
    /* fpd_plan_table takes the same pick */
    struct fpd_plan plan;
    struct fpd_error err;
    cr_assert(eq(int, fpd_plan_table(N, D, FPD_DTYPE_F32, &pp, &plan, &err), FPD_STATUS_OK), "%s", err.msg);
    cr_assert(eq(i64, plan.free_coords, pk->free_coords));
    cr_assert(eq(sz, plan.bytes_after, pk->bytes));
    fpd_suggestion_free(sg);

    /* max_error 1e-3: the c > 0 candidates compete on size like the others; only the
     * free coordinates reach it, and the pick is the smallest that does */
    pp.budget_bytes = 0;
    pp.max_error = 1e-3;
    sg = suggest_ok(N, D, &pp);
    cr_assert(ge(i64, sg->selected, 0));
    pk = &sg->candidates[sg->selected];
    cr_assert(ge(i64, pk->free_coords, c0));
    cr_assert(le(dbl, pk->predicted_error, 1e-3));
    cr_assert(le(sz, pk->bytes, with.bytes));
    for (int64_t i = 0; i < sg->n_candidates; i++)
        if (sg->candidates[i].eligible) cr_assert(ge(sz, sg->candidates[i].bytes, pk->bytes));
    fpd_suggestion_free(sg);

    /* the fit itself: fpd_fit(free_coords = c0) reaches the prediction */
    struct fpd_fit_params fp = fpd_fit_default_params();
    fp.als_sweeps = 0;
    fp.finetune_epochs = 0;
    fp.free_coords = c0;
    struct fpd_layer *l = NULL;
    struct fpd_fit_report rep;
    cr_assert(eq(int, fpd_fit(&w, &with.shape, &fp, &l, &rep, &err), 0), "%s", err.msg);
    cr_assert(lt(dbl, rep.rel_error_free, 1e-3), "fit: %g", rep.rel_error_free);
    fpd_layer_free(l);
    free(data);
}

/* An exact tensor train (no extra part): at equal bytes the rank wins, c = 0 is picked,
 * both with a budget of exactly the train's bytes (c > 0 must lower the rank) and with
 * one that also fits the train with c = 1 (no better than exact). */
Test(suggest_free, exact_tt_keeps_c0) {
    const int64_t N = 4096, D = 32;
    struct fpd_plan_params pp = fpd_plan_default_params();
    pp.k = 3;
    pp.min_rows = 0;
    struct fpd_suggestion *shape_sg = suggest_ok(N, D, &pp);
    const int64_t r0 = 2 * shape_sg->rank_step;
    const struct fpd_candidate *base = find(shape_sg, r0, 3, 0);
    cr_assert(not(eq(ptr, (void *)base, NULL)));
    double b2, w2;
    float *data = planted(&base->shape, r0, 0, 0.0, 23, &b2, &w2);
    struct fpd_table_view w = { data, FPD_DTYPE_F32, N, D };
    pp.table = &w;
    pp.free_coords = FPD_FREE_COORDS_AUTO;
    size_t budgets[2] = { base->bytes, base->bytes + (size_t)(N + D) * 4 };
    fpd_suggestion_free(shape_sg);
    for (int q = 0; q < 2; q++) {
        pp.budget_bytes = budgets[q];
        struct fpd_suggestion *sg = suggest_ok(N, D, &pp);
        const struct fpd_candidate *pk = &sg->candidates[sg->selected];
        cr_assert(eq(i64, pk->free_coords, 0), "budget %zu: picked c = %lld", budgets[q], (long long)pk->free_coords);
        cr_assert(ge(i64, pk->r, r0));
        cr_assert(lt(dbl, pk->predicted_error, 1e-4));
        int64_t n_free = 0;
        for (int64_t i = 0; i < sg->n_candidates; i++) {
            const struct fpd_candidate *x = &sg->candidates[i];
            if (!x->eligible || x->free_coords == 0) continue;
            n_free++;
            if (x->r < r0) cr_assert(gt(dbl, x->predicted_error, 1e-2)); /* the rank is short */
        }
        cr_assert(gt(i64, n_free, 0), "no c > 0 candidate was in the budget");
        fpd_suggestion_free(sg);
    }
    free(data);
}

/* GloVe 10000 x 100 (samples/glove-10k.safetensors): the predicted error with c is
 * fpd_fit(free_coords = c) with no ALS and no finetuning to 0.1% (the same TT-SVD and
 * the same residual directions), and with the default ALS sweeps and finetuning epoch
 * lower by at most 3% (the prediction is of the first stage: pessimistic). */
Test(suggest_free, glove_predicted_vs_fit) {
    const char *path = "samples/glove-10k.safetensors";
    struct fpd_safetensors *st = NULL;
    struct fpd_error err;
    if (fpd_safetensors_open(path, &st, &err) != FPD_STATUS_OK) cr_skip_test("%s: %s", path, err.msg);
    const struct fpd_tensor_info *t = fpd_safetensors_tensor(st, 0);
    struct fpd_table_view w = { t->data, t->dtype, t->shape[0], t->shape[1] };
    struct fpd_plan_params pp = fpd_plan_default_params();
    pp.table = &w;
    pp.k = 3;
    pp.free_coords = FPD_FREE_COORDS_AUTO;
    pp.budget_bytes = 200000;
    struct fpd_suggestion *sg = suggest_ok(w.rows, w.dim, &pp);
    struct { int64_t r, c; } cases[] = { { 5, 4 }, { 10, 2 }, { 20, 1 } };
    for (size_t q = 0; q < sizeof cases / sizeof cases[0]; q++) {
        const struct fpd_candidate *c = find(sg, cases[q].r, 3, cases[q].c);
        cr_assert(not(eq(ptr, (void *)c, NULL)), "no candidate r=%lld c=%lld", (long long)cases[q].r,
                  (long long)cases[q].c);
        struct fpd_fit_params fp = fpd_fit_default_params();
        fp.free_coords = c->free_coords;
        fp.als_sweeps = 0;
        fp.finetune_epochs = 0;
        struct fpd_layer *l = NULL;
        struct fpd_fit_report rep;
        cr_assert(eq(int, fpd_fit(&w, &c->shape, &fp, &l, &rep, &err), 0), "%s", err.msg);
        cr_assert(lt(dbl, fabs(c->predicted_error - rep.rel_error_free), 1e-3 * rep.rel_error_free),
                  "r=%lld c=%lld: predicted %.5f, fit %.5f", (long long)c->r, (long long)c->free_coords,
                  c->predicted_error, rep.rel_error_free);
        cr_assert(eq(i64, fpd_layer_param_count(l), c->params));
        fpd_layer_free(l);
        if (q > 0) continue; /* one default fit keeps the test short */
        fp = fpd_fit_default_params();
        fp.free_coords = c->free_coords;
        cr_assert(eq(int, fpd_fit(&w, &c->shape, &fp, &l, &rep, &err), 0), "%s", err.msg);
        cr_assert(le(dbl, rep.rel_error_free, c->predicted_error + 1e-6));
        cr_assert(gt(dbl, rep.rel_error_free, 0.97 * c->predicted_error), "r=%lld c=%lld: predicted %.5f, fit %.5f",
                  (long long)c->r, (long long)c->free_coords, c->predicted_error, rep.rel_error_free);
        fpd_layer_free(l);
    }
    /* the pick under 200000 bytes has c > 0, and is predicted below every c = 0 candidate in it */
    const struct fpd_candidate *pk = &sg->candidates[sg->selected];
    cr_assert(gt(i64, pk->free_coords, 0));
    for (int64_t i = 0; i < sg->n_candidates; i++) {
        const struct fpd_candidate *x = &sg->candidates[i];
        if (x->eligible && x->free_coords == 0) cr_assert(lt(dbl, pk->predicted_error, x->predicted_error));
    }
    fpd_suggestion_free(sg);
    fpd_safetensors_free(st);
}

/* free_rowwise: E counted as its stored rows (int4: ceil(c/2) + 4 bytes, int8: c + 8,
 * int4-sym: ceil(c/2) + 2, int8-sym: c + 2), P and the cores in the core dtype; the
 * parameters unchanged; refused with a bad kind. */
Test(suggest_free, sizes_with_rowwise_e) {
    const int64_t N = 20000, D = 64;
    const int64_t cs[4] = {5, 8, 5, 8};
    const enum fpd_free_kind kinds[4] = {FPD_FREE_INT4, FPD_FREE_INT8, FPD_FREE_INT4_SYM, FPD_FREE_INT8_SYM};
    for (int q = 0; q < 4; q++) {
        struct fpd_plan_params pp = fpd_plan_default_params();
        pp.free_coords = cs[q];
        pp.core_dtype = q % 2 ? FPD_DTYPE_F16 : FPD_DTYPE_F32;
        pp.free_rowwise = true;
        pp.free_kind = kinds[q];
        const size_t esz = q % 2 ? 2 : 4,
                     row = q % 2 ? (size_t)cs[q] + (q < 2 ? 8 : 2) : (size_t)(cs[q] + 1) / 2 + (q < 2 ? 4 : 2);
        struct fpd_suggestion *sg = suggest_ok(N, D, &pp);
        cr_assert(gt(i64, sg->n_candidates, 0));
        for (int64_t i = 0; i < sg->n_candidates; i++) {
            const struct fpd_candidate *c = &sg->candidates[i];
            cr_assert(eq(i64, c->free_coords, cs[q]));
            cr_assert(eq(i64, c->params, cores_closed_form(&c->shape) + cs[q] * (N + D)));
            cr_assert(eq(sz, c->bytes, (size_t)(cores_closed_form(&c->shape) + cs[q] * D) * esz + (size_t)N * row),
                      "candidate %lld", (long long)i);
        }
        fpd_suggestion_free(sg);
    }
    struct fpd_plan_params pp = fpd_plan_default_params();
    pp.free_coords = 4;
    pp.free_rowwise = true;
    pp.free_kind = (enum fpd_free_kind)5;
    struct fpd_suggestion *sg = NULL;
    struct fpd_error err;
    cr_assert(eq(int, fpd_suggest(N, D, FPD_DTYPE_F32, &pp, &sg, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(strstr(err.msg, "free_kind 5") != NULL, "%s", err.msg);
    /* the byte count the planner, fpd-compress and fpd-batch share, by hand */
    cr_assert(eq(sz, fpd_free_coords_bytes(10000, 100, 8, FPD_DTYPE_F32, true, FPD_FREE_INT4), 80000 + 3200));
    cr_assert(eq(sz, fpd_free_coords_bytes(10000, 100, 5, FPD_DTYPE_F16, true, FPD_FREE_INT8), 130000 + 1000));
    cr_assert(eq(sz, fpd_free_coords_bytes(10000, 100, 8, FPD_DTYPE_F32, false, FPD_FREE_INT4), 8 * 10100 * 4));
    cr_assert(eq(sz, fpd_free_coords_bytes(10000, 100, 0, FPD_DTYPE_F32, true, FPD_FREE_INT4), 0));
    /* free-sym/1: int4-sym ceil(c/2) + 2, int8-sym c + 2 bytes a row */
    cr_assert(eq(sz, fpd_free_coords_bytes(10000, 100, 8, FPD_DTYPE_F32, true, FPD_FREE_INT4_SYM), 60000 + 3200));
    cr_assert(eq(sz, fpd_free_coords_bytes(10000, 100, 5, FPD_DTYPE_F16, true, FPD_FREE_INT4_SYM), 50000 + 1000));
    cr_assert(eq(sz, fpd_free_coords_bytes(10000, 100, 5, FPD_DTYPE_F16, true, FPD_FREE_INT8_SYM), 70000 + 1000));
    cr_assert(eq(sz, fpd_free_coords_bytes(INT64_MAX / 2, 100, 8, FPD_DTYPE_F32, false, FPD_FREE_INT4), SIZE_MAX));
}
