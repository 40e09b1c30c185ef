/*
 * test-plan.c - fpd_plan_table: shapes, sizes against counts computed here,
 * the keep-dense decisions and their reasons, user overrides, invalid input.
 * The default (r, p) is the top candidate of the heuristic (suggest.c): its rank is
 * recomputed here from the documented formula (ref_target_rank).
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <math.h>
#include <string.h>

#include "heuristics/fpd-heuristics.h"

/* Parameter count from the shape alone: sum over m of p * n_m * r_m * d_m * r_{m+1}. */
static int64_t ref_params(const struct fpd_layer_shape *s) {
    int64_t total = 0;
    for (int m = 0; m < s->k; m++)
        total += s->terms * s->row_shape[m] * s->ranks[m] * s->col_shape[m] * s->ranks[m + 1];
    return total;
}

/* The TT-SVD bound on inner rank m: min(prod_{l<m} n_l d_l, prod_{l>=m} n_l d_l). */
static int64_t ref_rank_cap(const struct fpd_layer_shape *s, int m) {
    double left = 1, right = 1;
    for (int l = 0; l < m; l++) left *= (double)(s->row_shape[l] * s->col_shape[l]);
    for (int l = m; l < s->k; l++) right *= (double)(s->row_shape[l] * s->col_shape[l]);
    double c = left < right ? left : right;
    return c > 1e18 ? INT64_MAX : (int64_t)c;
}

/* The heuristic's target capacity R* (fpd-heuristics.h), written out again: column
 * modes outside-in, g = column TT-rank, R0 = ceil(D / min(d_0, d_{k-1})), step h,
 * R* = h * max(1, round(R0 / h)). For the default p = 1 candidate this is its rank. */
static int64_t ref_target_rank(int64_t dim, int k) {
    int64_t d[FPD_MAX_MODES];
    fpd_factor_cols_outside_in(dim, k, d, NULL);
    int64_t g = 1;
    for (int m = 1; m < k; m++) {
        int64_t left = 1, right = 1;
        for (int l = 0; l < m; l++) left *= d[l];
        for (int l = m; l < k; l++) right *= d[l];
        int64_t c = left < right ? left : right;
        if (c > g) g = c;
    }
    int64_t dmin = d[0] < d[k - 1] ? d[0] : d[k - 1];
    int64_t r0 = k == 1 ? 1 : (dim + dmin - 1) / dmin;
    int64_t h = g * (r0 / (4 * g) > 1 ? r0 / (4 * g) : 1);
    int64_t m = (2 * r0 + h) / (2 * h); /* round(r0 / h) */
    return h * (m > 1 ? m : 1);
}

/* Invariants every successful plan must satisfy. */
static void check_plan(const struct fpd_plan *p, int64_t rows, int64_t dim, enum fpd_dtype dtype,
                       enum fpd_dtype core, int64_t want_rank, int64_t want_terms) {
    const struct fpd_layer_shape *s = &p->shape;
    cr_assert(eq(i64, s->rows, rows));
    cr_assert(eq(i64, s->dim, dim));
    cr_assert(ge(int, s->k, 1));
    cr_assert(le(int, s->k, FPD_MAX_MODES));
    cr_assert(eq(i64, s->terms, want_terms));
    int64_t np = 1, dp = 1;
    for (int m = 0; m < s->k; m++) {
        np *= s->row_shape[m];
        dp *= s->col_shape[m];
    }
    cr_assert(ge(i64, np, rows));
    cr_assert(eq(i64, dp, dim));
    cr_assert(eq(i64, p->padding, np - rows));
    cr_assert(eq(i64, s->ranks[0], 1));
    cr_assert(eq(i64, s->ranks[s->k], 1));
    for (int m = 1; m < s->k; m++) {
        int64_t cap = ref_rank_cap(s, m);
        int64_t want = want_rank < cap ? want_rank : cap;
        cr_assert(eq(i64, s->ranks[m], want), "rank %d: %lld, want %lld (cap %lld)", m,
                  (long long)s->ranks[m], (long long)want, (long long)cap);
    }
    cr_assert(eq(i64, p->params, ref_params(s)));
    cr_assert(eq(sz, p->bytes_before, (size_t)rows * (size_t)dim * fpd_dtype_size(dtype)));
    cr_assert(eq(sz, p->bytes_after, (size_t)p->params * fpd_dtype_size(core)));
    cr_assert(eq(dbl, p->ratio, (double)p->bytes_before / (double)p->bytes_after));
}

Test(plan, default_params) {
    struct fpd_plan_params pp = fpd_plan_default_params();
    cr_assert(eq(i64, pp.rank, 0));
    cr_assert(eq(i64, pp.terms, 0));
    cr_assert(eq(int, pp.k, 0));
    cr_assert(eq(i64, pp.min_rows, 1000));
    cr_assert(eq(dbl, pp.min_ratio, 2.0));
    cr_assert(eq(int, pp.core_dtype, FPD_DTYPE_F32));
    cr_assert(eq(sz, pp.budget_bytes, 0));
    cr_assert(eq(dbl, pp.min_ratio_target, 0.0));
    cr_assert(eq(dbl, pp.max_error, 0.0));
    cr_assert(eq(ptr, (void *)pp.table, NULL));
}

Test(plan, table_20000x100) {
    struct fpd_plan_params pp = fpd_plan_default_params();
    struct fpd_plan p;
    struct fpd_error err;
    cr_assert(eq(int, fpd_plan_table(20000, 100, FPD_DTYPE_F32, &pp, &p, &err), FPD_STATUS_OK), "%s", err.msg);
    cr_assert(p.compress, "%s", p.reason);
    cr_assert(eq(int, p.shape.k, 3));
    /* The heuristic (this issue changed the value from r = 28, cols 5x5x4): columns
     * outside-in 5x4x5, R0 = 100 / 5 = 20, g = h = 5, R* = 20: (20, 1). */
    check_plan(&p, 20000, 100, FPD_DTYPE_F32, FPD_DTYPE_F32, 20, 1);
    cr_assert(eq(i64, p.shape.col_shape[0], 5));
    cr_assert(eq(i64, p.shape.col_shape[1], 4));
    cr_assert(eq(i64, p.shape.col_shape[2], 5));
    cr_assert(eq(sz, p.bytes_after, (size_t)p.params * 4));
    cr_assert(eq(sz, p.bytes_before, (size_t)8000000));
    /* 32x25x25 rows, 5x4x5 columns, r = 20: 32*5*20 + 25*20*4*20 + 25*20*5. */
    cr_assert(eq(i64, p.params, 32 * 5 * 20 + 25 * 20 * 4 * 20 + 25 * 20 * 5));
    cr_assert(eq(i64, p.padding, 0));
    cr_assert(isnan(p.predicted_error)); /* no table data */
    /* Same plan with NULL params (the defaults). */
    struct fpd_plan q;
    cr_assert(eq(int, fpd_plan_table(20000, 100, FPD_DTYPE_F32, NULL, &q, NULL), FPD_STATUS_OK));
    cr_assert(eq(i64, q.params, p.params));
}

Test(plan, default_rank_rule) {
    /* R* of the heuristic for the default k = 3 (values worked out in fpd-heuristics.h;
     * before this issue the rule was clamp(4 ceil(D / 16), 4, 32)). */
    struct { int64_t dim, r; } cases[] = { { 128, 32 }, { 100, 20 }, { 64, 16 }, { 8, 4 },   { 1, 1 },
                                           { 16, 8 },   { 17, 16 },  { 97, 96 }, { 300, 50 }, { 1024, 128 },
                                           { 32, 8 },   { 45, 15 },  { 768, 96 } };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct fpd_plan p;
        cr_assert(eq(int, fpd_plan_table(1000000, cases[i].dim, FPD_DTYPE_F32, NULL, &p, NULL), FPD_STATUS_OK));
        cr_assert(eq(i64, ref_target_rank(cases[i].dim, 3), cases[i].r), "D=%lld", (long long)cases[i].dim);
        check_plan(&p, 1000000, cases[i].dim, FPD_DTYPE_F32, FPD_DTYPE_F32, cases[i].r, 1);
    }
}

Test(plan, default_k) {
    struct fpd_plan p;
    cr_assert(eq(int, fpd_plan_table(INT64_C(99999999), 16, FPD_DTYPE_F32, NULL, &p, NULL), FPD_STATUS_OK));
    cr_assert(eq(int, p.shape.k, 3));
    cr_assert(eq(int, fpd_plan_table(INT64_C(100000000), 16, FPD_DTYPE_F32, NULL, &p, NULL), FPD_STATUS_OK));
    cr_assert(eq(int, p.shape.k, 4));
    /* D = 16, k = 4: columns 2x2x2x2, R0 = 8, g = h = 4: r = 8 (was 4 before the heuristic) */
    check_plan(&p, INT64_C(100000000), 16, FPD_DTYPE_F32, FPD_DTYPE_F32, 8, 1);
    cr_assert(p.compress, "%s", p.reason);
    /* A DLRM-sized table (seed paper: N up to 4e7, D = 128) gets 3 cores, r = 32. */
    cr_assert(eq(int, fpd_plan_table(INT64_C(40000000), 128, FPD_DTYPE_F32, NULL, &p, NULL), FPD_STATUS_OK));
    cr_assert(eq(int, p.shape.k, 3));
    check_plan(&p, INT64_C(40000000), 128, FPD_DTYPE_F32, FPD_DTYPE_F32, 32, 1);
    cr_assert(p.compress);
    cr_assert(gt(dbl, p.ratio, 1000.0));
}

Test(plan, ncf_tables) {
    int64_t rows[] = { 6040, 3706 };
    for (size_t i = 0; i < 2; i++) {
        struct fpd_plan p;
        cr_assert(eq(int, fpd_plan_table(rows[i], 8, FPD_DTYPE_F32, NULL, &p, NULL), FPD_STATUS_OK));
        cr_assert(p.compress, "%lld x 8: %s", (long long)rows[i], p.reason);
        cr_assert(ge(dbl, p.ratio, 2.0));
        check_plan(&p, rows[i], 8, FPD_DTYPE_F32, FPD_DTYPE_F32, 4, 1);
    }
}

Test(plan, keep_dense_reasons) {
    struct fpd_plan p;
    cr_assert(eq(int, fpd_plan_table(1, 8, FPD_DTYPE_F32, NULL, &p, NULL), FPD_STATUS_OK));
    cr_assert(not(p.compress));
    cr_assert(eq(str, p.reason, "1 rows < --min-rows 1000"));
    check_plan(&p, 1, 8, FPD_DTYPE_F32, FPD_DTYPE_F32, 4, 1);

    cr_assert(eq(int, fpd_plan_table(999, 64, FPD_DTYPE_F32, NULL, &p, NULL), FPD_STATUS_OK));
    cr_assert(not(p.compress));
    cr_assert(eq(str, p.reason, "999 rows < --min-rows 1000"));

    cr_assert(eq(int, fpd_plan_table(100000, 64, FPD_DTYPE_I64, NULL, &p, NULL), FPD_STATUS_OK));
    cr_assert(not(p.compress));
    cr_assert(eq(str, p.reason, "dtype I64 is not a float table"));
    check_plan(&p, 100000, 64, FPD_DTYPE_I64, FPD_DTYPE_F32, 16, 1);

    /* Ratio below min_ratio. */
    struct fpd_plan_params pp = fpd_plan_default_params();
    pp.min_ratio = 1e9;
    cr_assert(eq(int, fpd_plan_table(20000, 100, FPD_DTYPE_F32, &pp, &p, NULL), FPD_STATUS_OK));
    cr_assert(not(p.compress));
    cr_assert(not(eq(ptr, strstr(p.reason, "smaller (< 1e+09x)"), NULL)), "%s", p.reason);

    /* FPD larger than the table: 1000 x 8 at rank 32. */
    pp = fpd_plan_default_params();
    pp.rank = 32;
    cr_assert(eq(int, fpd_plan_table(1000, 8, FPD_DTYPE_F32, &pp, &p, NULL), FPD_STATUS_OK));
    cr_assert(lt(dbl, p.ratio, 1.0));
    cr_assert(not(p.compress));
    cr_assert(not(eq(ptr, strstr(p.reason, "larger"), NULL)), "%s", p.reason);

    /* min_rows = 0 lets a tiny table through to the ratio test. */
    pp = fpd_plan_default_params();
    pp.min_rows = 0;
    cr_assert(eq(int, fpd_plan_table(1, 8, FPD_DTYPE_F32, &pp, &p, NULL), FPD_STATUS_OK));
    cr_assert(not(p.compress));
    cr_assert(not(eq(ptr, strstr(p.reason, "FPD would be"), NULL)), "%s", p.reason);
}

Test(plan, compress_iff_ratio) {
    int64_t rows[] = { 1000, 1500, 5000, 20000, 100000 };
    int64_t dims[] = { 1, 2, 3, 8, 16, 32, 100, 128 };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        for (size_t j = 0; j < sizeof dims / sizeof dims[0]; j++) {
            struct fpd_plan p;
            cr_assert(eq(int, fpd_plan_table(rows[i], dims[j], FPD_DTYPE_F32, NULL, &p, NULL), FPD_STATUS_OK));
            check_plan(&p, rows[i], dims[j], FPD_DTYPE_F32, FPD_DTYPE_F32, ref_target_rank(dims[j], 3), 1);
            cr_assert(eq(int, p.compress, p.ratio >= 2.0), "%lld x %lld: ratio %g, %s", (long long)rows[i],
                      (long long)dims[j], p.ratio, p.reason);
        }
}

Test(plan, prime_rows_and_dim) {
    struct fpd_plan p;
    cr_assert(eq(int, fpd_plan_table(1000003, 64, FPD_DTYPE_F32, NULL, &p, NULL), FPD_STATUS_OK));
    cr_assert(p.compress, "%s", p.reason);
    cr_assert(gt(i64, p.padding, 0));
    check_plan(&p, 1000003, 64, FPD_DTYPE_F32, FPD_DTYPE_F32, 16, 1);

    cr_assert(eq(int, fpd_plan_table(50000, 97, FPD_DTYPE_F32, NULL, &p, NULL), FPD_STATUS_OK));
    cr_assert(eq(i64, p.shape.col_shape[0], 97));
    cr_assert(eq(i64, p.shape.col_shape[1], 1));
    cr_assert(eq(i64, p.shape.col_shape[2], 1));
    check_plan(&p, 50000, 97, FPD_DTYPE_F32, FPD_DTYPE_F32, 96, 1); /* R0 = 97, h = 24 */
    cr_assert(p.compress, "%s", p.reason);

    /* D = 1 is planned; the ratio decides. */
    cr_assert(eq(int, fpd_plan_table(100000, 1, FPD_DTYPE_F32, NULL, &p, NULL), FPD_STATUS_OK));
    check_plan(&p, 100000, 1, FPD_DTYPE_F32, FPD_DTYPE_F32, 1, 1);
    cr_assert(eq(int, p.compress, p.ratio >= 2.0));
}

Test(plan, user_overrides) {
    struct fpd_plan_params pp = fpd_plan_default_params();
    pp.rank = 8;
    pp.terms = 2;
    pp.k = 2;
    struct fpd_plan p;
    cr_assert(eq(int, fpd_plan_table(20000, 100, FPD_DTYPE_F32, &pp, &p, NULL), FPD_STATUS_OK));
    cr_assert(eq(int, p.shape.k, 2));
    check_plan(&p, 20000, 100, FPD_DTYPE_F32, FPD_DTYPE_F32, 8, 2);

    /* BF16 source and F16 cores: byte sizes follow the dtypes. */
    pp = fpd_plan_default_params();
    pp.rank = 16;
    pp.terms = 4;
    pp.k = 4;
    pp.core_dtype = FPD_DTYPE_F16;
    cr_assert(eq(int, fpd_plan_table(123457, 128, FPD_DTYPE_BF16, &pp, &p, NULL), FPD_STATUS_OK));
    cr_assert(eq(int, p.shape.k, 4));
    check_plan(&p, 123457, 128, FPD_DTYPE_BF16, FPD_DTYPE_F16, 16, 4);
    cr_assert(eq(sz, p.bytes_after, (size_t)p.params * 2));

    /* k = 1 is the dense table itself: ratio 1, kept dense. */
    pp = fpd_plan_default_params();
    pp.k = 1;
    cr_assert(eq(int, fpd_plan_table(5000, 16, FPD_DTYPE_F32, &pp, &p, NULL), FPD_STATUS_OK));
    check_plan(&p, 5000, 16, FPD_DTYPE_F32, FPD_DTYPE_F32, 1, 1);
    cr_assert(eq(dbl, p.ratio, 1.0));
    cr_assert(not(p.compress));

    /* A rank above the TT-SVD bound is capped. */
    pp = fpd_plan_default_params();
    pp.rank = 100000;
    cr_assert(eq(int, fpd_plan_table(20000, 100, FPD_DTYPE_F32, &pp, &p, NULL), FPD_STATUS_OK));
    check_plan(&p, 20000, 100, FPD_DTYPE_F32, FPD_DTYPE_F32, 100000, 1);
    cr_assert(lt(i64, p.shape.ranks[1], 100000));
}

Test(plan, invalid_args) {
    struct fpd_plan p;
    struct fpd_error err;
    struct fpd_plan_params pp;
    cr_assert(eq(int, fpd_plan_table(0, 8, FPD_DTYPE_F32, NULL, &p, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(eq(int, err.status, FPD_STATUS_INVALID_ARG));
    cr_assert(not(eq(ptr, strstr(err.msg, "rows"), NULL)), "%s", err.msg);
    cr_assert(eq(int, fpd_plan_table(-1, 8, FPD_DTYPE_F32, NULL, &p, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(eq(int, fpd_plan_table(100, 0, FPD_DTYPE_F32, NULL, &p, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(not(eq(ptr, strstr(err.msg, "dim"), NULL)), "%s", err.msg);
    cr_assert(eq(int, fpd_plan_table(100, 8, FPD_DTYPE_COUNT, NULL, &p, &err), FPD_STATUS_INVALID_ARG));

    pp = fpd_plan_default_params();
    pp.rank = -1;
    cr_assert(eq(int, fpd_plan_table(20000, 8, FPD_DTYPE_F32, &pp, &p, &err), FPD_STATUS_INVALID_ARG));
    pp = fpd_plan_default_params();
    pp.terms = -3;
    cr_assert(eq(int, fpd_plan_table(20000, 8, FPD_DTYPE_F32, &pp, &p, &err), FPD_STATUS_INVALID_ARG));
    pp = fpd_plan_default_params();
    pp.k = FPD_MAX_MODES + 1;
    cr_assert(eq(int, fpd_plan_table(20000, 8, FPD_DTYPE_F32, &pp, &p, &err), FPD_STATUS_INVALID_ARG));
    pp.k = -1;
    cr_assert(eq(int, fpd_plan_table(20000, 8, FPD_DTYPE_F32, &pp, &p, NULL), FPD_STATUS_INVALID_ARG));
    pp = fpd_plan_default_params();
    pp.min_rows = -1;
    cr_assert(eq(int, fpd_plan_table(20000, 8, FPD_DTYPE_F32, &pp, &p, &err), FPD_STATUS_INVALID_ARG));
    pp = fpd_plan_default_params();
    pp.min_ratio = -1.0;
    cr_assert(eq(int, fpd_plan_table(20000, 8, FPD_DTYPE_F32, &pp, &p, &err), FPD_STATUS_INVALID_ARG));
    pp = fpd_plan_default_params();
    pp.core_dtype = FPD_DTYPE_I32;
    cr_assert(eq(int, fpd_plan_table(20000, 8, FPD_DTYPE_F32, &pp, &p, &err), FPD_STATUS_INVALID_ARG));
    /* A parameter count that overflows is rejected, not wrapped. */
    pp = fpd_plan_default_params();
    pp.terms = INT64_MAX / 2;
    cr_assert(eq(int, fpd_plan_table(20000, 8, FPD_DTYPE_F32, &pp, &p, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(gt(sz, strlen(err.msg), 0));
}
