/*
 * test-init.c - fpd_init: the reconstructed table has the requested variance
 * (exactly, up to rounding) and a mean within 3 standard errors of 0, measured
 * independently on 10^6 sampled entries with the naive row reference.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "tests/test-util.h"

struct init_case {
    int32_t k;
    int64_t rows, n[4], d[4], r, p;
};

static void check_case(const struct init_case *c, enum fpd_init_kind kind, double scale) {
    struct fpd_layer_shape s;
    memset(&s, 0, sizeof s);
    s.k = c->k;
    s.rows = c->rows;
    s.terms = c->p;
    s.dim = 1;
    for (int32_t m = 0; m < c->k; m++) {
        s.row_shape[m] = c->n[m];
        s.col_shape[m] = c->d[m];
        s.dim *= c->d[m];
    }
    fpd_layer_shape_set_rank(&s, c->r);
    struct fpd_init_params ip = {kind, scale, 42};
    struct fpd_layer *l = NULL;
    struct fpd_error err;
    cr_assert(eq(int, fpd_init(&s, &ip, &l, &err), 0), "%s", err.msg);
    const double target = kind == FPD_INIT_KIND_NORMAL ? scale * scale : scale * scale / 3.0;
    /* all entries (independent naive evaluation): variance exact up to rounding */
    double sum = 0, sumsq = 0, row[512];
    for (int64_t i = 0; i < s.rows; i++) {
        test_naive_row(l, i, row);
        for (int64_t j = 0; j < s.dim; j++) {
            sum += row[j];
            sumsq += row[j] * row[j];
        }
    }
    double n = (double)s.rows * (double)s.dim, mean = sum / n, var = sumsq / n - mean * mean;
    cr_assert(le(dbl, fabs(var / target - 1.0), 1e-4), "k=%d r=%lld p=%lld: variance %g vs %g", c->k,
              (long long)c->r, (long long)c->p, var, target);
    /* 10^6 sampled entries: mean within 3 standard errors, variance within 2% */
    uint64_t seed = 7;
    double ssum = 0, ssq = 0, rsum = 0, rsq = 0;
    const int64_t samples = 1000000;
    for (int64_t q = 0; q < samples / s.dim + 1; q++) {
        int64_t i = (int64_t)(test_rand_u64(&seed) % (uint64_t)s.rows);
        test_naive_row(l, i, row);
        double rm = 0;
        for (int64_t j = 0; j < s.dim; j++) {
            ssum += row[j];
            ssq += row[j] * row[j];
            rm += row[j] / (double)s.dim;
        }
        rsum += rm;
        rsq += rm * rm;
    }
    double nrows = (double)(samples / s.dim + 1), m = nrows * (double)s.dim;
    double smean = ssum / m, svar = ssq / m - smean * smean;
    /* rows are sampled independently but the entries of a row are correlated (they
     * share cores), so the standard error of the mean is that of the row means */
    double se = sqrt((rsq / nrows - (rsum / nrows) * (rsum / nrows)) / nrows);
    cr_assert(le(dbl, fabs(mean), 1e-3 * sqrt(target)), "table mean %g", mean);
    cr_assert(le(dbl, fabs(smean), 3.0 * se), "k=%d r=%lld p=%lld: mean %g, 3 SE %g", c->k, (long long)c->r,
              (long long)c->p, smean, 3.0 * se);
    cr_assert(le(dbl, fabs(svar / target - 1.0), 0.02), "k=%d r=%lld p=%lld: sampled variance %g vs %g", c->k,
              (long long)c->r, (long long)c->p, svar, target);
    fpd_layer_free(l);
}

static const struct init_case g_cases[] = {
    {2, 4000, {80, 50}, {8, 8}, 8, 1},
    {2, 4000, {80, 50}, {8, 8}, 4, 3},
    {3, 20000, {32, 25, 25}, {4, 4, 4}, 16, 1},
    {3, 20000, {32, 25, 25}, {4, 4, 4}, 8, 2},
    {4, 50000, {16, 16, 14, 14}, {2, 2, 4, 4}, 8, 1},
    {4, 50000, {16, 16, 14, 14}, {2, 2, 4, 4}, 4, 4},
};

Test(init, normal_variance_exact) {
    for (size_t c = 0; c < sizeof g_cases / sizeof g_cases[0]; c++) check_case(&g_cases[c], FPD_INIT_KIND_NORMAL, 1.0);
}

Test(init, uniform_variance_exact) {
    for (size_t c = 0; c < sizeof g_cases / sizeof g_cases[0]; c++)
        check_case(&g_cases[c], FPD_INIT_KIND_UNIFORM, 0.01); /* DLRM: uniform(-1/sqrt(N), 1/sqrt(N)) scale */
}

Test(init, bad_params) {
    struct fpd_layer_shape s;
    memset(&s, 0, sizeof s);
    s.k = 1;
    s.rows = 4;
    s.dim = 2;
    s.terms = 1;
    s.row_shape[0] = 4;
    s.col_shape[0] = 2;
    fpd_layer_shape_set_rank(&s, 1);
    struct fpd_init_params ip = {FPD_INIT_KIND_NORMAL, 0.0, 1};
    struct fpd_layer *l = NULL;
    struct fpd_error err;
    cr_assert(eq(int, fpd_init(&s, &ip, &l, &err), FPD_STATUS_INVALID_ARG));
    ip.scale = NAN;
    cr_assert(eq(int, fpd_init(&s, &ip, &l, &err), FPD_STATUS_INVALID_ARG));
    ip.scale = 1;
    ip.kind = FPD_INIT_KIND_COUNT;
    cr_assert(eq(int, fpd_init(&s, &ip, &l, &err), FPD_STATUS_INVALID_ARG));
}
