/*
 * test-budget.c - fpd_budget_split against closed forms (tables whose rows share one
 * count, where lambda solves a linear equation) and a brute-force reference (a fine
 * scan of lambda on random counts), the dense cap, alpha = 0 (split by row count) and
 * alpha = 1 (split by interactions), and refusals.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "heuristics/fpd-heuristics.h"

static double *constant(int64_t n, double c) {
    double *v = malloc((size_t)n * sizeof *v);
    for (int64_t i = 0; i < n; i++) v[i] = c;
    return v;
}

Test(budget, equal_counts_closed_form) {
    /* users 6040 rows seen 165 times, items 3706 rows seen 270 times, D = 64, budget
     * well below the cap: lambda (6040 165^a + 3706 270^a) = B, share_t = N_t c_t^a lambda */
    double *cu = constant(6040, 165), *ci = constant(3706, 270);
    struct fpd_budget_table t[2] = {{6040, 64, cu}, {3706, 64, ci}};
    double out[2], B = 60000, a = 0.5;
    cr_assert(eq(int, fpd_budget_split(t, 2, B, a, out, NULL), FPD_STATUS_OK));
    double lambda = B / (6040 * pow(165, a) + 3706 * pow(270, a));
    cr_assert(fabs(out[0] - 6040 * pow(165, a) * lambda) < 1e-6 * B, "users %g", out[0]);
    cr_assert(fabs(out[1] - 3706 * pow(270, a) * lambda) < 1e-6 * B, "items %g", out[1]);
    /* alpha = 0: by row count */
    cr_assert(eq(int, fpd_budget_split(t, 2, B, 0.0, out, NULL), FPD_STATUS_OK));
    cr_assert(fabs(out[0] / out[1] - 6040.0 / 3706.0) < 1e-9);
    /* alpha = 1: by interactions */
    cr_assert(eq(int, fpd_budget_split(t, 2, B, 1.0, out, NULL), FPD_STATUS_OK));
    cr_assert(fabs(out[0] / out[1] - 6040.0 * 165 / (3706.0 * 270)) < 1e-9);
    free(cu);
    free(ci);
}

Test(budget, cap_at_dense_and_unseen_rows) {
    /* table 0: 100 rows seen 10000 times (capped at D = 8 early); table 1: 1000 rows
     * seen once, 1000 never seen */
    double *c0 = constant(100, 10000), *c1 = constant(2000, 0);
    for (int i = 0; i < 1000; i++) c1[i] = 1;
    struct fpd_budget_table t[2] = {{100, 8, c0}, {2000, 16, c1}};
    double out[2];
    /* budget 2000 with alpha 0.5: lambda 100 = 8 caps table 0 at lambda = 0.08;
     * uncapped usage 100 * 100 lambda + 1000 lambda = 2000 gives lambda = 0.1818 > 0.08,
     * so table 0 is capped at 800 and table 1 gets 1200 (lambda = 1.2 < 16: not capped) */
    cr_assert(eq(int, fpd_budget_split(t, 2, 2000, 0.5, out, NULL), FPD_STATUS_OK));
    cr_assert(fabs(out[0] - 800) < 1e-6, "%g", out[0]);
    cr_assert(fabs(out[1] - 1200) < 1e-6, "%g", out[1]);
    /* a budget above everything usable: dense sizes of the seen rows */
    cr_assert(eq(int, fpd_budget_split(t, 2, 1e9, 0.5, out, NULL), FPD_STATUS_OK));
    cr_assert(fabs(out[0] - 800) < 1e-9 && fabs(out[1] - 16000) < 1e-9, "%g %g", out[0], out[1]);
    /* NULL counts: every row seen once */
    struct fpd_budget_table u[2] = {{300, 4, NULL}, {100, 4, NULL}};
    cr_assert(eq(int, fpd_budget_split(u, 2, 400, 0.7, out, NULL), FPD_STATUS_OK));
    cr_assert(fabs(out[0] - 300) < 1e-9 && fabs(out[1] - 100) < 1e-9, "%g %g", out[0], out[1]);
    free(c0);
    free(c1);
}

/* reference: usage(lambda) on a fine geometric grid, the grid point whose usage is
 * closest to B, its per-table shares */
static double ref_usage(const struct fpd_budget_table *t, int n, double lambda, double a, double *out) {
    double s = 0;
    for (int q = 0; q < n; q++) {
        double x = 0;
        for (int64_t i = 0; i < t[q].rows; i++)
            if (t[q].counts[i] > 0) x += fmin((double)t[q].dim, lambda * pow(t[q].counts[i], a));
        out[q] = x;
        s += x;
    }
    return s;
}

Test(budget, random_counts_against_a_scan) {
    srand(7);
    int64_t rows[3] = {500, 1200, 80};
    struct fpd_budget_table t[3];
    double *c[3];
    for (int q = 0; q < 3; q++) {
        c[q] = malloc((size_t)rows[q] * sizeof(double));
        for (int64_t i = 0; i < rows[q]; i++) /* Zipf-like counts, some zero */
            c[q][i] = (rand() % 7 == 0) ? 0 : floor(1000.0 / (1 + rand() % 997)) * (q + 1);
        t[q] = (struct fpd_budget_table){rows[q], 16 * (q + 1), c[q]};
    }
    double out[3], ref[3], best[3] = {0}, B = 9000, a = 0.3, bestgap = INFINITY;
    cr_assert(eq(int, fpd_budget_split(t, 3, B, a, out, NULL), FPD_STATUS_OK));
    for (double l = 1e-3; l < 1e3; l *= 1.0005) {
        double u = ref_usage(t, 3, l, a, ref);
        if (fabs(u - B) < bestgap) {
            bestgap = fabs(u - B);
            for (int q = 0; q < 3; q++) best[q] = ref[q];
        }
    }
    cr_assert(fabs(out[0] + out[1] + out[2] - B) < 1e-6 * B, "sum %g", out[0] + out[1] + out[2]);
    for (int q = 0; q < 3; q++) cr_assert(fabs(out[q] - best[q]) < 2e-3 * B, "table %d: %g vs %g", q, out[q], best[q]);
    for (int q = 0; q < 3; q++) free(c[q]);
}

Test(budget, refusals) {
    double bad[2] = {1, -1};
    struct fpd_budget_table t[1] = {{2, 4, bad}};
    double out[1];
    struct fpd_error e = {0};
    cr_assert(eq(int, fpd_budget_split(t, 1, 10, 0.5, out, &e), FPD_STATUS_INVALID_ARG));
    cr_assert(strstr(e.msg, "row 1") != NULL, "%s", e.msg);
    double zero[2] = {0, 0};
    t[0].counts = zero;
    cr_assert(eq(int, fpd_budget_split(t, 1, 10, 0.5, out, &e), FPD_STATUS_NUMERIC));
    t[0].counts = NULL;
    cr_assert(eq(int, fpd_budget_split(t, 1, 10, 5.0, out, &e), FPD_STATUS_INVALID_ARG));
    cr_assert(eq(int, fpd_budget_split(t, 1, NAN, 0.5, out, &e), FPD_STATUS_INVALID_ARG));
    cr_assert(eq(int, fpd_budget_split(t, 0, 10, 0.5, out, &e), FPD_STATUS_INVALID_ARG));
    t[0].rows = 0;
    cr_assert(eq(int, fpd_budget_split(t, 1, 10, 0.5, out, &e), FPD_STATUS_INVALID_ARG));
}
