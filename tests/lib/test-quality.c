/*
 * test-quality.c - fpd_layer_quality against brute-force references written here:
 * errors, cosine mean/p5/min, recall@10 by exhaustive search, and FBGEMM-style
 * FBGEMM row-wise int8/int4 quantization (test-util.h's reference, F16 via _Float16).
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "tests/test-util.h"

static int cmp_dbl(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* squared error of FBGEMM row-wise quantization (the reference in test-util.h) */
static double quant_ref(const float *x, int dim, int levels, int half) {
    (void)half;
    unsigned char q[512];
    int bits = levels == 255 ? 8 : 4;
    test_rowwise_ref_quantize(bits, x, dim, q);
    double e = 0;
    for (int j = 0; j < dim; j++) {
        double d = (double)x[j] - (double)test_rowwise_ref_value(bits, q, dim, j);
        e += d * d;
    }
    return e;
}

/* top-10 neighbours of row q by cosine among the other rows of x [n, dim] */
static void top10(const double *x, int n, int dim, int q, int *out) {
    double best[10];
    int cnt = 0;
    for (int i = 0; i < n; i++) {
        if (i == q) continue;
        double dot = 0, na = 0, nb = 0;
        for (int j = 0; j < dim; j++) {
            dot += x[q * dim + j] * x[i * dim + j];
            na += x[q * dim + j] * x[q * dim + j];
            nb += x[i * dim + j] * x[i * dim + j];
        }
        double c = dot / sqrt(na * nb);
        if (cnt < 10) {
            best[cnt] = c;
            out[cnt++] = i;
        } else {
            int lo = 0;
            for (int t = 1; t < 10; t++)
                if (best[t] < best[lo]) lo = t;
            if (c > best[lo]) {
                best[lo] = c;
                out[lo] = i;
            }
        }
    }
}

Test(quality, matches_brute_force) {
    const int n = 300, dim = 12;
    struct fpd_layer_shape s;
    memset(&s, 0, sizeof s);
    s.k = 2;
    s.rows = n;
    s.dim = dim;
    s.terms = 1;
    s.row_shape[0] = 20;
    s.row_shape[1] = 16;
    s.col_shape[0] = 4;
    s.col_shape[1] = 3;
    fpd_layer_shape_set_rank(&s, 3);
    struct fpd_layer *l = NULL;
    struct fpd_error err;
    cr_assert(eq(int, fpd_layer_init(&s, &l, &err), 0));
    test_fill_random(l, 9, 1.0);
    /* W = What + noise, so the error is moderate and neighbours partly agree */
    float *w = malloc(sizeof(float) * n * dim);
    double *rec = malloc(sizeof(double) * n * dim), *orig = malloc(sizeof(double) * n * dim);
    double *wts = malloc(sizeof(double) * n);
    uint64_t seed = 5;
    for (int i = 0; i < n; i++) {
        test_naive_row(l, i, rec + i * dim);
        for (int j = 0; j < dim; j++) {
            w[i * dim + j] = (float)(rec[i * dim + j] + (i % 3 ? 0.2 : 1.5) * test_rand_sym(&seed));
            orig[i * dim + j] = w[i * dim + j];
        }
        wts[i] = i % 3 ? 1.0 : 10.0;
    }
    struct fpd_table_view v = {w, FPD_DTYPE_F32, n, dim};
    struct fpd_quality qr;
    cr_assert(eq(int, fpd_layer_quality(l, &v, wts, n, 1, &qr, &err), 0), "%s", err.msg);

    double se = 0, sn = 0, wse = 0, wsn = 0, cs = 0, q8 = 0, q4 = 0, cosv[300];
    for (int i = 0; i < n; i++) {
        double e = 0, na = 0, nb = 0, dot = 0;
        for (int j = 0; j < dim; j++) {
            double d = orig[i * dim + j] - rec[i * dim + j];
            e += d * d;
            na += orig[i * dim + j] * orig[i * dim + j];
            nb += rec[i * dim + j] * rec[i * dim + j];
            dot += orig[i * dim + j] * rec[i * dim + j];
        }
        se += e;
        sn += na;
        wse += wts[i] * e;
        wsn += wts[i] * na;
        cosv[i] = dot / sqrt(na * nb);
        cs += cosv[i];
        q8 += quant_ref(w + i * dim, dim, 255, 0);
        q4 += quant_ref(w + i * dim, dim, 15, 1);
    }
    qsort(cosv, n, sizeof(double), cmp_dbl);
    cr_assert(le(dbl, fabs(qr.rel_error - sqrt(se / sn)), 1e-6));
    cr_assert(le(dbl, fabs(qr.rel_error_weighted - sqrt(wse / wsn)), 1e-6));
    cr_assert(gt(dbl, fabs(qr.rel_error_weighted - qr.rel_error), 1e-4), "weights must matter here");
    cr_assert(le(dbl, fabs(qr.cos_mean - cs / n), 1e-6));
    cr_assert(le(dbl, fabs(qr.cos_min - cosv[0]), 1e-6));
    cr_assert(le(dbl, fabs(qr.cos_p5 - cosv[14] /* ceil(0.05 * 300) = 15th smallest */), 1.0 / 2048 + 1e-9),
              "p5 %g vs %g", qr.cos_p5, cosv[14]);
    cr_assert(le(dbl, fabs(qr.int8_rel_error - sqrt(q8 / sn)), 1e-6));
    cr_assert(le(dbl, fabs(qr.int4_rel_error - sqrt(q4 / sn)), 1e-6));
    cr_assert(eq(u64, qr.int8_bytes, (uint64_t)n * (dim + 8)));
    cr_assert(eq(u64, qr.int4_bytes, (uint64_t)n * (dim / 2 + 4)));
    /* queries = rows: every row is a query, recall by exhaustive search */
    double hits = 0;
    for (int q = 0; q < n; q++) {
        int ta[10], tb[10];
        top10(orig, n, dim, q, ta);
        top10(rec, n, dim, q, tb);
        for (int x = 0; x < 10; x++)
            for (int y = 0; y < 10; y++) hits += ta[x] == tb[y];
    }
    cr_assert(eq(i64, qr.recall_queries, n));
    cr_assert(le(dbl, fabs(qr.recall10 - hits / (10.0 * n)), 2.0 / (10.0 * n)), "recall %g vs %g", qr.recall10,
              hits / (10.0 * n));
    cr_assert(gt(dbl, qr.recall10, 0.05));
    cr_assert(lt(dbl, qr.recall10, 0.95));

    /* exact table: no error, recall 1 */
    for (int e = 0; e < n * dim; e++) w[e] = (float)rec[e];
    cr_assert(eq(int, fpd_layer_quality(l, &v, NULL, 50, 3, &qr, &err), 0));
    cr_assert(lt(dbl, qr.rel_error, 1e-6));
    cr_assert(gt(dbl, qr.cos_min, 1 - 1e-6));
    cr_assert(ge(dbl, qr.recall10, 0.98));
    cr_assert(eq(i64, qr.recall_queries, 50));
    wts[3] = -1;
    cr_assert(eq(int, fpd_layer_quality(l, &v, wts, 0, 3, &qr, &err), FPD_STATUS_INVALID_ARG));
    free(w);
    free(rec);
    free(orig);
    free(wts);
    fpd_layer_free(l);
}

/* A near-exact table (every cosine within 1e-5 of 1, all in the histogram's last
 * bin): the 5th percentile lies within [min, max] and within 1/2048 of the
 * exact one (the fresh-user trial saw p5 0.999756 below min 0.99994). */
Test(quality, p5_of_near_exact_rows_is_within_min_and_max) {
    const int64_t n[2] = {10, 10}, d[2] = {4, 4};
    struct fpd_layer_shape s = test_make_shape(2, 100, n, d, 4, 1);
    struct fpd_layer *l = NULL;
    cr_assert(eq(int, fpd_layer_init(&s, &l, NULL), 0));
    test_fill_random(l, 4, 1.0);
    float w[100 * 16];
    cr_assert(eq(int, fpd_layer_reconstruct(l, 0, 100, w, NULL), 0));
    uint64_t seed = 9;
    for (int i = 0; i < 100 * 16; i++) w[i] *= (float)(1.0 + 2e-3 * test_rand_sym(&seed));
    struct fpd_table_view v = {w, FPD_DTYPE_F32, 100, 16};
    struct fpd_quality qr;
    struct fpd_error err;
    cr_assert(eq(int, fpd_layer_quality(l, &v, NULL, 0, 1, &qr, &err), 0), "%s", err.msg);
    float r[16];
    double cosv[100];
    for (int64_t i = 0; i < 100; i++) {
        cr_assert(eq(int, fpd_layer_reconstruct(l, i, i + 1, r, NULL), 0));
        double dot = 0, na = 0, nb = 0;
        for (int j = 0; j < 16; j++) {
            dot += (double)w[i * 16 + j] * r[j];
            na += (double)w[i * 16 + j] * w[i * 16 + j];
            nb += (double)r[j] * r[j];
        }
        cosv[i] = dot / sqrt(na * nb);
    }
    qsort(cosv, 100, sizeof(double), cmp_dbl);
    cr_assert(gt(dbl, cosv[0], 1.0 - 1.0 / 2048), "all rows in the last bin (min %g)", cosv[0]);
    cr_assert(ge(dbl, qr.cos_p5, qr.cos_min), "p5 %g below min %g", qr.cos_p5, qr.cos_min);
    cr_assert(le(dbl, qr.cos_p5, cosv[99] + 1e-12));
    cr_assert(le(dbl, fabs(qr.cos_p5 - cosv[4]), 1.0 / 2048));
    fpd_layer_free(l);
}
