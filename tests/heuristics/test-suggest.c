/*
 * test-suggest.c - the (r, p) heuristic (fpd_suggest): the seed paper's four pairs
 * for D = 128, how the ranking scales with D, invariants of every candidate (shapes,
 * padding, ranks, sizes against counts computed here), the budget / ratio targets,
 * restrictions to a given r, p or k, and invalid input. Errors from data are in
 * test-predict.c.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <math.h>
#include <string.h>

#include "heuristics/fpd-heuristics.h"

static struct fpd_suggestion *suggest(int64_t rows, int64_t dim, const struct fpd_plan_params *pp) {
    struct fpd_suggestion *sg = NULL;
    struct fpd_error err;
    enum fpd_status st = fpd_suggest(rows, dim, FPD_DTYPE_F32, pp, &sg, &err);
    cr_assert(eq(int, st, FPD_STATUS_OK), "%lld x %lld: %s", (long long)rows, (long long)dim, err.msg);
    cr_assert(not(eq(ptr, sg, NULL)));
    cr_assert(gt(i64, sg->n_candidates, 0));
    return sg;
}

/* True if (r, p) is among the first n candidates. */
static bool in_top(const struct fpd_suggestion *sg, int64_t n, int64_t r, int64_t p) {
    for (int64_t i = 0; i < n && i < sg->n_candidates; i++)
        if (sg->candidates[i].r == r && sg->candidates[i].shape.terms == p) return true;
    return false;
}

static void expect_top(int64_t rows, int64_t dim, const int64_t (*pairs)[2], int64_t n) {
    struct fpd_suggestion *sg = suggest(rows, dim, NULL);
    for (int64_t i = 0; i < n; i++)
        cr_assert(in_top(sg, n, pairs[i][0], pairs[i][1]), "N=%lld D=%lld: (%lld, %lld) not in the top %lld",
                  (long long)rows, (long long)dim, (long long)pairs[i][0], (long long)pairs[i][1], (long long)n);
    /* all of the top n at the default k, and the first one is (R*, 1) */
    for (int64_t i = 0; i < n; i++) cr_assert(eq(int, sg->candidates[i].shape.k, sg->k_default));
    cr_assert(eq(i64, sg->candidates[0].shape.terms, 1));
    cr_assert(eq(i64, sg->candidates[0].r, sg->target_rank));
    cr_assert(eq(i64, sg->selected, 0));
    fpd_suggestion_free(sg);
}

/* The seed paper (section 3.1): for DLRM tables of D = 128 its heuristic recommended
 * (24, 1), (32, 1), (16, 2), (8, 4). Ours ranks exactly these first for N from 10^6
 * to 10^8 (k = 3 below 10^8, k = 4 at 10^8). */
Test(suggest, seed_pairs_d128) {
    static const int64_t seed[4][2] = { { 32, 1 }, { 16, 2 }, { 8, 4 }, { 24, 1 } };
    int64_t ns[] = { INT64_C(1000000), INT64_C(10000000), INT64_C(40000000), INT64_C(100000000) };
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
        expect_top(ns[i], 128, seed, 4);
        struct fpd_suggestion *sg = suggest(ns[i], 128, NULL);
        cr_assert(eq(int, sg->k_default, ns[i] >= INT64_C(100000000) ? 4 : 3));
        cr_assert(eq(i64, sg->col_rank, 8));
        cr_assert(eq(i64, sg->saturation_rank, 32));
        cr_assert(eq(i64, sg->rank_step, 8));
        cr_assert(eq(i64, sg->target_rank, 32));
        /* the fifth is not a seed pair: (40, 1) */
        cr_assert(eq(i64, sg->candidates[4].r, 40));
        cr_assert(eq(i64, sg->candidates[4].shape.terms, 1));
        fpd_suggestion_free(sg);
    }
    /* the exact order: (32,1), (16,2), (8,4) (s = 0, fewer terms first), then (24,1) */
    struct fpd_suggestion *sg = suggest(INT64_C(40000000), 128, NULL);
    for (int i = 0; i < 4; i++) {
        cr_assert(eq(i64, sg->candidates[i].r, seed[i][0]));
        cr_assert(eq(i64, sg->candidates[i].shape.terms, seed[i][1]));
    }
    cr_assert(ieee_ulp_eq(dbl, sg->candidates[0].score, 0.0, 4));
    cr_assert(lt(dbl, fabs(sg->candidates[3].score - log2(32.0 / 24.0)), 1e-12));
    fpd_suggestion_free(sg);
}

/* Other D: the same pattern in units of the rank step (fpd-heuristics.h). */
Test(suggest, scaling_with_dim) {
    static const int64_t d64[4][2] = { { 16, 1 }, { 8, 2 }, { 4, 4 }, { 12, 1 } };
    static const int64_t d100[4][2] = { { 20, 1 }, { 10, 2 }, { 5, 4 }, { 15, 1 } };
    static const int64_t d1024[4][2] = { { 128, 1 }, { 64, 2 }, { 32, 4 }, { 96, 1 } };
    static const int64_t d768[4][2] = { { 96, 1 }, { 48, 2 }, { 24, 4 }, { 72, 1 } };
    static const int64_t d97[4][2] = { { 96, 1 }, { 48, 2 }, { 24, 4 }, { 72, 1 } };
    static const int64_t d8[3][2] = { { 4, 1 }, { 2, 2 }, { 2, 1 } };
    expect_top(1000000, 64, d64, 4);
    expect_top(1000000, 100, d100, 4);
    expect_top(1000000, 1024, d1024, 4);
    expect_top(1000000, 768, d768, 4);
    expect_top(1000000, 97, d97, 4);
    expect_top(6040, 8, d8, 3);
    expect_top(3706, 8, d8, 3);
}

Test(suggest, col_shape_outside_in) {
    struct { int64_t dim; int k; int64_t want[FPD_MAX_MODES]; } cases[] = {
        { 128, 3, { 8, 4, 4 } },   { 128, 4, { 4, 4, 2, 4 } }, { 100, 3, { 5, 4, 5 } }, { 97, 3, { 97, 1, 1 } },
        { 1, 3, { 1, 1, 1 } },     { 8, 3, { 2, 2, 2 } },      { 300, 3, { 10, 5, 6 } }, { 180, 2, { 15, 12 } },
        { 128, 1, { 128 } },       { 30, 4, { 5, 2, 1, 3 } },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t d[FPD_MAX_MODES];
        cr_assert(eq(int, fpd_factor_cols_outside_in(cases[i].dim, cases[i].k, d, NULL), FPD_STATUS_OK));
        for (int m = 0; m < cases[i].k; m++)
            cr_assert(eq(i64, d[m], cases[i].want[m]), "D=%lld k=%d mode %d: %lld", (long long)cases[i].dim,
                      cases[i].k, m, (long long)d[m]);
    }
    int64_t d[FPD_MAX_MODES];
    cr_assert(eq(int, fpd_factor_cols_outside_in(0, 3, d, NULL), FPD_STATUS_INVALID_ARG));
}

/* The TT-SVD bound on inner rank m. */
static int64_t rank_cap(const struct fpd_layer_shape *s, int m) {
    double left = 1, right = 1;
    for (int l = 0; l < m; l++) left *= (double)(s->row_shape[l] * s->col_shape[l]);
    for (int l = m; l < s->k; l++) right *= (double)(s->row_shape[l] * s->col_shape[l]);
    double c = left < right ? left : right;
    return c > 1e18 ? INT64_MAX : (int64_t)c;
}

static void check_candidates(const struct fpd_suggestion *sg, enum fpd_dtype core) {
    for (int64_t i = 0; i < sg->n_candidates; i++) {
        const struct fpd_candidate *c = &sg->candidates[i];
        const struct fpd_layer_shape *s = &c->shape;
        cr_assert(eq(i64, s->rows, sg->rows));
        cr_assert(eq(i64, s->dim, sg->dim));
        cr_assert(eq(int, fpd_layer_shape_check(s, NULL), FPD_STATUS_OK));
        double np = 1.0;
        int64_t dp = 1, params = 0;
        for (int m = 0; m < s->k; m++) {
            np *= (double)s->row_shape[m];
            dp *= s->col_shape[m];
            params += s->terms * s->row_shape[m] * s->ranks[m] * s->col_shape[m] * s->ranks[m + 1];
        }
        cr_assert(ge(dbl, np, (double)sg->rows));
        cr_assert(eq(dbl, (double)c->padding, np - (double)sg->rows));
        cr_assert(eq(i64, dp, sg->dim));
        cr_assert(eq(i64, s->ranks[0], 1));
        cr_assert(eq(i64, s->ranks[s->k], 1));
        for (int m = 1; m < s->k; m++) {
            int64_t cap = rank_cap(s, m);
            cr_assert(eq(i64, s->ranks[m], c->r < cap ? c->r : cap));
        }
        cr_assert(eq(i64, c->params, params));
        cr_assert(eq(sz, c->bytes, (size_t)params * fpd_dtype_size(core)));
        cr_assert(eq(dbl, c->ratio, (double)sg->bytes_before / (double)c->bytes));
        cr_assert(isnan(c->predicted_error));
        cr_assert(not(c->dominated));
        if (s->k == sg->k_default && s->terms > 1) cr_assert(eq(i64, c->r % sg->rank_step, 0));
        if (i) cr_assert(ge(dbl, c->score, sg->candidates[i - 1].score - 1e-9), "not sorted at %lld", (long long)i);
        /* no duplicate layer */
        for (int64_t j = 0; j < i; j++) {
            const struct fpd_layer_shape *t = &sg->candidates[j].shape;
            cr_assert(not(t->k == s->k && t->terms == s->terms && !memcmp(t->ranks, s->ranks, sizeof s->ranks)),
                      "candidates %lld and %lld are the same layer", (long long)j, (long long)i);
        }
    }
}

/* Any N >= 1 (primes padded, never refused) and any D >= 1 (odd and prime D: a mode
 * of size D or modes of size 1). */
Test(suggest, candidate_invariants) {
    int64_t ns[] = { 1, 2, 7, 999, 1000, 3706, 6040, 20000, 99991, 1000003, INT64_C(1000000007),
                     INT64_C(100000000), INT64_C(999999999989) };
    int64_t ds[] = { 1, 2, 3, 7, 8, 13, 16, 45, 97, 100, 128, 300, 1000 };
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++)
        for (size_t j = 0; j < sizeof ds / sizeof ds[0]; j++) {
            struct fpd_suggestion *sg = suggest(ns[i], ds[j], NULL);
            cr_assert(eq(sz, sg->bytes_before, (size_t)ns[i] * (size_t)ds[j] * 4));
            check_candidates(sg, FPD_DTYPE_F32);
            fpd_suggestion_free(sg);
        }
    /* a prime N is padded */
    struct fpd_suggestion *sg = suggest(1000003, 64, NULL);
    cr_assert(gt(i64, sg->candidates[0].padding, 0));
    fpd_suggestion_free(sg);
    /* F16 cores halve the bytes */
    struct fpd_plan_params pp = fpd_plan_default_params();
    pp.core_dtype = FPD_DTYPE_F16;
    sg = suggest(20000, 100, &pp);
    check_candidates(sg, FPD_DTYPE_F16);
    fpd_suggestion_free(sg);
}

/* --budget: the largest candidate whose cores fit; nothing fits: INVALID_ARG. */
Test(suggest, budget) {
    struct fpd_suggestion *all = suggest(INT64_C(40000000), 128, NULL);
    size_t smallest = SIZE_MAX, largest = 0;
    for (int64_t i = 0; i < all->n_candidates; i++) {
        size_t b = all->candidates[i].bytes;
        smallest = b < smallest ? b : smallest;
        largest = b > largest ? b : largest;
    }
    size_t budgets[] = { smallest, 1000000, 3433728, 3433727, 5000000, largest, largest * 10 };
    for (size_t q = 0; q < sizeof budgets / sizeof budgets[0]; q++) {
        struct fpd_plan_params pp = fpd_plan_default_params();
        pp.budget_bytes = budgets[q];
        struct fpd_suggestion *sg = suggest(INT64_C(40000000), 128, &pp);
        cr_assert(ge(i64, sg->selected, 0));
        const struct fpd_candidate *c = &sg->candidates[sg->selected];
        cr_assert(le(sz, c->bytes, budgets[q]));
        for (int64_t i = 0; i < sg->n_candidates; i++) {
            const struct fpd_candidate *o = &sg->candidates[i];
            cr_assert(eq(int, o->eligible, o->bytes <= budgets[q]));
            if (o->eligible) cr_assert(le(sz, o->bytes, c->bytes), "a larger candidate fits the budget");
        }
        /* fpd_plan_table picks the same one */
        struct fpd_plan plan;
        cr_assert(eq(int, fpd_plan_table(INT64_C(40000000), 128, FPD_DTYPE_F32, &pp, &plan, NULL), FPD_STATUS_OK));
        cr_assert(eq(sz, plan.bytes_after, c->bytes));
        cr_assert(eq(i64, plan.shape.terms, c->shape.terms));
        cr_assert(plan.compress);
        fpd_suggestion_free(sg);
    }
    /* 3433728 bytes is (24, 1): exactly at the budget it is the pick */
    struct fpd_plan_params pp = fpd_plan_default_params();
    pp.budget_bytes = 3433728;
    struct fpd_suggestion *sg = suggest(INT64_C(40000000), 128, &pp);
    cr_assert(eq(i64, sg->candidates[sg->selected].r, 24));
    cr_assert(eq(i64, sg->candidates[sg->selected].shape.terms, 1));
    fpd_suggestion_free(sg);

    pp.budget_bytes = smallest - 1;
    struct fpd_error err;
    sg = NULL;
    cr_assert(eq(int, fpd_suggest(INT64_C(40000000), 128, FPD_DTYPE_F32, &pp, &sg, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(eq(ptr, sg, NULL));
    cr_assert(not(eq(ptr, strstr(err.msg, "budget"), NULL)), "%s", err.msg);
    cr_assert(not(eq(ptr, strstr(err.msg, "smallest candidate"), NULL)), "%s", err.msg);
    struct fpd_plan plan;
    cr_assert(eq(int, fpd_plan_table(INT64_C(40000000), 128, FPD_DTYPE_F32, &pp, &plan, &err), FPD_STATUS_INVALID_ARG));
    /* a table that stays dense anyway (too few rows) is not an error */
    pp.budget_bytes = 1;
    cr_assert(eq(int, fpd_plan_table(500, 128, FPD_DTYPE_F32, &pp, &plan, &err), FPD_STATUS_OK), "%s", err.msg);
    cr_assert(not(plan.compress));
    fpd_suggestion_free(all);
}

/* --ratio: the largest candidate at least X times smaller; none: INVALID_ARG. */
Test(suggest, ratio) {
    double xs[] = { 2.0, 100.0, 1000.0, 5000.0, 20000.0 };
    for (size_t q = 0; q < sizeof xs / sizeof xs[0]; q++) {
        struct fpd_plan_params pp = fpd_plan_default_params();
        pp.min_ratio_target = xs[q];
        struct fpd_suggestion *sg = suggest(INT64_C(40000000), 128, &pp);
        const struct fpd_candidate *c = &sg->candidates[sg->selected];
        cr_assert(ge(dbl, c->ratio, xs[q]));
        for (int64_t i = 0; i < sg->n_candidates; i++)
            if (sg->candidates[i].ratio >= xs[q]) cr_assert(le(sz, sg->candidates[i].bytes, c->bytes));
        fpd_suggestion_free(sg);
    }
    struct fpd_plan_params pp = fpd_plan_default_params();
    pp.min_ratio_target = 1e12;
    struct fpd_suggestion *sg = NULL;
    struct fpd_error err;
    cr_assert(eq(int, fpd_suggest(20000, 100, FPD_DTYPE_F32, &pp, &sg, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(not(eq(ptr, strstr(err.msg, "smaller than the dense table"), NULL)), "%s", err.msg);
    /* budget and ratio together: both hold */
    pp = fpd_plan_default_params();
    pp.min_ratio_target = 100.0;
    pp.budget_bytes = 40000;
    sg = suggest(20000, 100, &pp);
    cr_assert(le(sz, sg->candidates[sg->selected].bytes, 40000));
    cr_assert(ge(dbl, sg->candidates[sg->selected].ratio, 100.0));
    fpd_suggestion_free(sg);
}

/* A given r, p or k restricts the candidates; r alone means p = 1. */
Test(suggest, restrictions) {
    struct fpd_plan_params pp = fpd_plan_default_params();
    pp.rank = 16;
    struct fpd_suggestion *sg = suggest(1000000, 128, &pp);
    cr_assert(eq(i64, sg->n_candidates, 2)); /* k = 3 and k = 4 */
    for (int64_t i = 0; i < sg->n_candidates; i++) {
        cr_assert(eq(i64, sg->candidates[i].r, 16));
        cr_assert(eq(i64, sg->candidates[i].shape.terms, 1));
    }
    cr_assert(eq(int, sg->candidates[0].shape.k, 3));
    fpd_suggestion_free(sg);

    pp = fpd_plan_default_params();
    pp.terms = 2;
    sg = suggest(1000000, 128, &pp);
    for (int64_t i = 0; i < sg->n_candidates; i++) cr_assert(eq(i64, sg->candidates[i].shape.terms, 2));
    cr_assert(eq(i64, sg->candidates[0].r, 16)); /* R* / 2 */
    fpd_suggestion_free(sg);

    pp = fpd_plan_default_params();
    pp.terms = 16; /* above the grid: r = h still offered */
    sg = suggest(1000000, 128, &pp);
    cr_assert(eq(i64, sg->candidates[0].r, 8));
    cr_assert(eq(i64, sg->candidates[0].shape.terms, 16));
    fpd_suggestion_free(sg);

    pp = fpd_plan_default_params();
    pp.k = 4;
    sg = suggest(1000000, 128, &pp);
    cr_assert(eq(int, sg->k_default, 4));
    for (int64_t i = 0; i < sg->n_candidates; i++) cr_assert(eq(int, sg->candidates[i].shape.k, 4));
    fpd_suggestion_free(sg);

    pp = fpd_plan_default_params();
    pp.k = 2;
    pp.rank = 8;
    pp.terms = 3;
    sg = suggest(20000, 100, &pp);
    cr_assert(eq(i64, sg->n_candidates, 1));
    cr_assert(eq(i64, sg->candidates[0].shape.terms, 3));
    fpd_suggestion_free(sg);
}

Test(suggest, invalid_input) {
    struct fpd_suggestion *sg = (struct fpd_suggestion *)&sg;
    struct fpd_error err;
    cr_assert(eq(int, fpd_suggest(0, 8, FPD_DTYPE_F32, NULL, &sg, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(eq(ptr, sg, NULL));
    cr_assert(not(eq(ptr, strstr(err.msg, "rows"), NULL)), "%s", err.msg);
    cr_assert(eq(int, fpd_suggest(-5, 8, FPD_DTYPE_F32, NULL, &sg, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(eq(int, fpd_suggest(100, 0, FPD_DTYPE_F32, NULL, &sg, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(not(eq(ptr, strstr(err.msg, "dim"), NULL)), "%s", err.msg);
    cr_assert(eq(int, fpd_suggest(100, -1, FPD_DTYPE_F32, NULL, &sg, &err), FPD_STATUS_INVALID_ARG));
    struct fpd_plan_params pp = fpd_plan_default_params();
    pp.max_error = 0.5; /* no table */
    cr_assert(eq(int, fpd_suggest(20000, 100, FPD_DTYPE_F32, &pp, &sg, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(not(eq(ptr, strstr(err.msg, "table"), NULL)), "%s", err.msg);
    pp = fpd_plan_default_params();
    pp.max_error = -1.0;
    cr_assert(eq(int, fpd_suggest(20000, 100, FPD_DTYPE_F32, &pp, &sg, &err), FPD_STATUS_INVALID_ARG));
    pp = fpd_plan_default_params();
    pp.min_ratio_target = NAN;
    cr_assert(eq(int, fpd_suggest(20000, 100, FPD_DTYPE_F32, &pp, &sg, &err), FPD_STATUS_INVALID_ARG));
    pp = fpd_plan_default_params();
    float x[4] = { 0 };
    struct fpd_table_view w = { x, FPD_DTYPE_F32, 2, 2 };
    pp.table = &w;
    cr_assert(eq(int, fpd_suggest(20000, 100, FPD_DTYPE_F32, &pp, &sg, &err), FPD_STATUS_SHAPE));
    fpd_suggestion_free(NULL);
}
