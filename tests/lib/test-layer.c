/*
 * test-layer.c - FPD layer shapes, look-ups, reconstruction and backward against
 * the naive definition (tests/test-util.h) and finite differences.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "lib/fpd-impl.h"
#include "tests/test-util.h"

struct shape_case {
    int32_t k;
    int64_t rows, n[4], d[4], r, p;
};

static const struct shape_case g_cases[] = {
    {1, 5, {7}, {6}, 1, 1},
    {2, 30, {6, 5}, {4, 2}, 3, 1},
    {3, 1000, {10, 11, 10}, {2, 3, 2}, 4, 1},  /* padded: 1100 rows for 1000 */
    {3, 6040, {20, 18, 17}, {2, 2, 2}, 8, 2},  /* NCF user table shape, p = 2 */
    {4, 200, {3, 4, 5, 4}, {2, 1, 3, 2}, 5, 3},/* d_m = 1 */
    {3, 97, {5, 5, 4}, {97, 1, 1}, 6, 1},      /* prime D in one mode */
};

/* the layer of g_cases[c], random cores drawn from seed; its shape in *s */
static struct fpd_layer *case_layer(size_t c, uint64_t seed, struct fpd_layer_shape *s) {
    const struct shape_case *sc = &g_cases[c];
    *s = test_make_shape(sc->k, sc->rows, sc->n, sc->d, sc->r, sc->p);
    struct fpd_error err;
    struct fpd_layer *l = NULL;
    cr_assert(eq(int, fpd_layer_init(s, &l, &err), FPD_STATUS_OK), "case %zu: %s", c, err.msg);
    test_fill_random(l, seed, 1.0);
    return l;
}

Test(layer, lookup_and_reconstruct_match_naive) {
    for (size_t c = 0; c < sizeof g_cases / sizeof g_cases[0]; c++) {
        struct fpd_layer_shape s;
        struct fpd_layer *l = case_layer(c, 1234 + c, &s);
        struct fpd_error err;
        float *dense = malloc((size_t)(s.rows * s.dim) * sizeof(float));
        cr_assert(eq(int, fpd_layer_reconstruct(l, 0, s.rows, dense, &err), FPD_STATUS_OK));
        /* look-ups in a scrambled order, with repeats */
        int64_t nidx = 64, idx[64];
        uint64_t seed = 99 + c;
        for (int64_t b = 0; b < nidx; b++) idx[b] = (int64_t)(test_rand_u64(&seed) % (uint64_t)s.rows);
        idx[0] = 0;
        idx[1] = s.rows - 1;
        idx[2] = idx[1];
        float *look = malloc((size_t)(nidx * s.dim) * sizeof(float));
        cr_assert(eq(int, fpd_layer_lookup(l, idx, nidx, look, &err), FPD_STATUS_OK));
        double ref[512];
        for (int64_t b = 0; b < nidx; b++) {
            test_naive_row(l, idx[b], ref);
            cr_assert(le(dbl, test_rel_diff(look + b * s.dim, ref, s.dim), 1e-5), "case %zu row %lld", c,
                      (long long)idx[b]);
            cr_assert(le(dbl, test_rel_diff(dense + idx[b] * s.dim, ref, s.dim), 1e-5), "case %zu dense row %lld", c,
                      (long long)idx[b]);
        }
        for (int64_t i = 0; i < s.rows; i += 1 + s.rows / 50) {
            test_naive_row(l, i, ref);
            cr_assert(le(dbl, test_rel_diff(dense + i * s.dim, ref, s.dim), 1e-5), "case %zu row %lld", c, (long long)i);
        }
        free(dense);
        free(look);
        fpd_layer_free(l);
    }
}

Test(layer, params_count_matches_definition) {
    const struct shape_case *sc = &g_cases[3];
    struct fpd_layer_shape s = test_make_shape(sc->k, sc->rows, sc->n, sc->d, sc->r, sc->p);
    /* p * sum_m n_m r_m d_m r_{m+1} with ranks (1, 8, 8, 1) */
    int64_t expect = 2 * (20 * 1 * 2 * 8 + 18 * 8 * 2 * 8 + 17 * 8 * 2 * 1);
    cr_assert(eq(i64, fpd_layer_shape_params(&s), expect));
}

Test(layer, rank_is_capped_by_unfolding_sizes) {
    int64_t n[3] = {4, 3, 2}, d[3] = {2, 1, 1};
    struct fpd_layer_shape s = test_make_shape(3, 24, n, d, 100, 1);
    /* unfolding 1: min(4*2, 3*2) = 6; unfolding 2: min(8*3, 2) = 2 */
    cr_assert(eq(i64, s.ranks[1], 6));
    cr_assert(eq(i64, s.ranks[2], 2));
    cr_assert(eq(i64, s.ranks[0], 1));
    cr_assert(eq(i64, s.ranks[3], 1));
}

Test(layer, row_perm_applies_and_is_checked) {
    int64_t n[2] = {4, 3}, d[2] = {2, 2};
    struct fpd_layer_shape s = test_make_shape(2, 10, n, d, 2, 1);
    struct fpd_error err;
    struct fpd_layer *l = NULL;
    cr_assert(eq(int, fpd_layer_init(&s, &l, &err), 0));
    test_fill_random(l, 5, 1.0);
    int64_t perm[10] = {11, 0, 5, 3, 7, 1, 2, 9, 8, 4}; /* uses padding row 11 */
    cr_assert(eq(int, fpd_layer_set_row_perm(l, perm, &err), 0), "%s", err.msg);
    float out[10 * 4];
    int64_t idx[10];
    for (int i = 0; i < 10; i++) idx[i] = i;
    cr_assert(eq(int, fpd_layer_lookup(l, idx, 10, out, &err), 0));
    double ref[4];
    for (int i = 0; i < 10; i++) {
        test_naive_row(l, perm[i], ref);
        cr_assert(le(dbl, test_rel_diff(out + 4 * i, ref, 4), 1e-6));
    }
    int64_t bad[10] = {0, 0, 1, 2, 3, 4, 5, 6, 7, 8};
    cr_assert(eq(int, fpd_layer_set_row_perm(l, bad, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(ne(ptr, strstr(err.msg, "repeats"), NULL), "%s", err.msg);
    int64_t range[10] = {12, 0, 1, 2, 3, 4, 5, 6, 7, 8};
    cr_assert(eq(int, fpd_layer_set_row_perm(l, range, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(ne(ptr, strstr(err.msg, "outside [0, 12)"), NULL), "%s", err.msg);
    fpd_layer_free(l);
}

Test(layer, bad_index_and_shape_are_refused) {
    int64_t n[2] = {4, 3}, d[2] = {2, 2};
    struct fpd_layer_shape s = test_make_shape(2, 10, n, d, 2, 1);
    struct fpd_error err;
    struct fpd_layer *l = NULL;
    cr_assert(eq(int, fpd_layer_init(&s, &l, &err), 0));
    int64_t idx[2] = {3, 10};
    float out[8];
    cr_assert(eq(int, fpd_layer_lookup(l, idx, 2, out, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(ne(ptr, strstr(err.msg, "indices[1] = 10 is outside [0, 10)"), NULL), "%s", err.msg);
    idx[1] = -1;
    cr_assert(eq(int, fpd_layer_lookup(l, idx, 2, out, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(eq(int, fpd_layer_reconstruct(l, 5, 11, out, &err), FPD_STATUS_INVALID_ARG));
    fpd_layer_free(l);

    struct fpd_layer_shape bad = s;
    bad.rows = 13; /* 4 * 3 = 12 < 13 */
    cr_assert(eq(int, fpd_layer_shape_check(&bad, &err), FPD_STATUS_SHAPE));
    cr_assert(ne(ptr, strstr(err.msg, "12 < 13"), NULL), "%s", err.msg);
    bad = s;
    bad.dim = 5;
    cr_assert(eq(int, fpd_layer_shape_check(&bad, &err), FPD_STATUS_SHAPE));
    bad = s;
    bad.ranks[0] = 2;
    cr_assert(eq(int, fpd_layer_shape_check(&bad, &err), FPD_STATUS_SHAPE));
    bad = s;
    bad.k = 0;
    cr_assert(eq(int, fpd_layer_shape_check(&bad, &err), FPD_STATUS_SHAPE));
    bad = s;
    bad.row_shape[0] = INT64_MAX / 2;
    bad.row_shape[1] = 4;
    cr_assert(eq(int, fpd_layer_shape_check(&bad, &err), FPD_STATUS_SHAPE));
}

/* The row is linear in each core entry, so a central difference of the naive
 * double-precision reference is exact up to rounding. */
Test(layer, backward_matches_finite_differences) {
    const struct shape_case *sc = &g_cases[4]; /* k = 4, p = 3, d_m = 1 present */
    struct fpd_layer_shape s = test_make_shape(sc->k, sc->rows, sc->n, sc->d, 3, sc->p);
    struct fpd_error err;
    struct fpd_layer *l = NULL;
    cr_assert(eq(int, fpd_layer_init(&s, &l, &err), 0));
    test_fill_random(l, 77, 1.0);
    int64_t idx[5] = {3, 3, 17, 150, 199};
    float gout[5 * 12];
    uint64_t seed = 8;
    for (int e = 0; e < 5 * 12; e++) gout[e] = (float)test_rand_sym(&seed);
    float *grads[FPD_MAX_MODES];
    for (int32_t m = 0; m < s.k; m++) grads[m] = calloc((size_t)fpd_layer_shape_core_numel(&s, m), sizeof(float));
    cr_assert(eq(int, fpd_layer_backward(l, idx, 5, gout, grads, &err), 0), "%s", err.msg);
    double ref[512];
    for (int32_t m = 0; m < s.k; m++) {
        float *c = fpd_layer_core(l, m);
        for (int64_t e = 0; e < fpd_layer_shape_core_numel(&s, m); e++) {
            float keep = c[e];
            double fp = 0.0, fm = 0.0;
            c[e] = keep + 0.5f;
            for (int b = 0; b < 5; b++) {
                test_naive_row(l, idx[b], ref);
                for (int j = 0; j < 12; j++) fp += gout[b * 12 + j] * ref[j];
            }
            c[e] = keep - 0.5f;
            for (int b = 0; b < 5; b++) {
                test_naive_row(l, idx[b], ref);
                for (int j = 0; j < 12; j++) fm += gout[b * 12 + j] * ref[j];
            }
            c[e] = keep;
            double fd = fp - fm; /* step 1.0 in total */
            cr_assert(le(dbl, fabs(fd - grads[m][e]), 1e-4 * (1.0 + fabs(fd))), "core %d entry %lld: %g vs %g",
                      (int)m, (long long)e, fd, (double)grads[m][e]);
        }
        free(grads[m]);
    }
    fpd_layer_free(l);
}

Test(layer, error_stats_against_direct_sums) {
    int64_t n[2] = {4, 3}, d[2] = {2, 2};
    struct fpd_layer_shape s = test_make_shape(2, 10, n, d, 2, 1);
    struct fpd_error err;
    struct fpd_layer *l = NULL;
    cr_assert(eq(int, fpd_layer_init(&s, &l, &err), 0));
    test_fill_random(l, 3, 1.0);
    float w[40];
    uint64_t seed = 4;
    for (int e = 0; e < 40; e++) w[e] = (float)test_rand_sym(&seed);
    struct fpd_table_view v = {w, FPD_DTYPE_F32, 10, 4};
    struct fpd_error_stats es;
    cr_assert(eq(int, fpd_layer_error(l, &v, &es, &err), 0));
    double se = 0, sn = 0, cmean = 0, cmin = 2, ref[4];
    for (int i = 0; i < 10; i++) {
        test_naive_row(l, i, ref);
        double dot = 0, na = 0, nb = 0;
        for (int j = 0; j < 4; j++) {
            se += (w[4 * i + j] - ref[j]) * (w[4 * i + j] - ref[j]);
            sn += (double)w[4 * i + j] * w[4 * i + j];
            dot += w[4 * i + j] * ref[j];
            na += (double)w[4 * i + j] * w[4 * i + j];
            nb += ref[j] * ref[j];
        }
        double c = dot / sqrt(na * nb);
        cmean += c / 10;
        cmin = c < cmin ? c : cmin;
    }
    cr_assert(le(dbl, fabs(es.rel_error - sqrt(se / sn)), 1e-7 * sqrt(se / sn)), "%g vs %g", es.rel_error, sqrt(se / sn));
    cr_assert(le(dbl, fabs(es.cos_mean - cmean), 1e-6));
    cr_assert(le(dbl, fabs(es.cos_min - cmin), 1e-6));
    fpd_layer_free(l);
}

/* fpd__reconstruct_rows: one engine and id buffer across the blocks of a pass, blocks of
 * growing and shrinking sizes (the buffer regrown, then reused), every row against the
 * naive definition; then the engine kept while the rows are out of range is refused */
Test(layer, reconstructor_blocks_match_naive) {
    for (size_t c = 0; c < sizeof g_cases / sizeof g_cases[0]; c++) {
        struct fpd_layer_shape s;
        struct fpd_layer *l = case_layer(c, 4321 + c, &s);
        struct fpd_error err;
        float *out = malloc((size_t)(s.rows * s.dim) * sizeof(float));
        struct fpd__reconstructor rc = {0};
        const int64_t sizes[] = {1, 3, 64, 2, 500, 7};
        int64_t r0 = 0;
        for (int q = 0; r0 < s.rows; q = (q + 1) % 6) {
            const int64_t r1 = r0 + sizes[q] < s.rows ? r0 + sizes[q] : s.rows;
            cr_assert(eq(int, fpd__reconstruct_rows(&rc, l, r0, r1, out, &err), FPD_STATUS_OK), "case %zu: %s", c,
                      err.msg);
            double ref[512];
            for (int64_t i = r0; i < r1; i++) {
                test_naive_row(l, i, ref);
                cr_assert(le(dbl, test_rel_diff(out + (i - r0) * s.dim, ref, s.dim), 1e-5), "case %zu row %lld", c,
                          (long long)i);
            }
            r0 = r1;
        }
        cr_assert(eq(int, fpd__reconstruct_rows(&rc, l, s.rows - 1, s.rows + 1, out, &err), FPD_STATUS_INVALID_ARG));
        fpd__reconstructor_free(&rc);
        cr_assert(rc.engine == NULL && rc.idx == NULL && rc.cap == 0);
        free(out);
        fpd_layer_free(l);
    }
}
