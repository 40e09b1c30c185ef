/*
 * test-quant.c - row-wise int8/int4 quantization (lib/quant.c) against the FBGEMM
 * reference written in test-util.h: stored bytes identical, values code * scale +
 * bias, relative errors, look-ups, and the refusals (NaN/Inf rows, bad indices).
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "tests/test-util.h"

/* rows that exercise the corner cases: random, constant, odd dim, negative, wide
 * range, one large outlier, ties at .5 codes */
static void make_rows(float *w, int n, int dim, uint64_t seed) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < dim; j++) {
            double v = test_rand_sym(&seed);
            switch (i % 6) {
            case 0: w[i * dim + j] = (float)v; break;
            case 1: w[i * dim + j] = 0.25f; break;                          /* constant row */
            case 2: w[i * dim + j] = (float)(-3.0 + 0.001 * v); break;       /* narrow, negative */
            case 3: w[i * dim + j] = (float)(1000.0 * v); break;             /* wide */
            case 4: w[i * dim + j] = j == 2 ? 50.0f : (float)(0.01 * v); break; /* outlier */
            default: w[i * dim + j] = (float)j * 0.5f; break;                /* exact grid */
            }
        }
}

Test(quant, rows_match_fbgemm_reference_bytes) {
    const int dims[4] = {1, 7, 8, 100};
    for (int di = 0; di < 4; di++) {
        const int n = 60, dim = dims[di];
        float *w = malloc(sizeof(float) * (size_t)(n * dim));
        make_rows(w, n, dim, 7 + (uint64_t)di);
        for (int bits = 4; bits <= 8; bits += 4) {
            enum fpd_rowwise kind = bits == 8 ? FPD_ROWWISE_INT8 : FPD_ROWWISE_INT4;
            size_t rb = bits == 8 ? (size_t)dim + 8 : (size_t)(dim + 1) / 2 + 4;
            cr_assert(eq(sz, fpd_rowwise_row_bytes(kind, dim), rb));
            unsigned char got[256], want[256];
            float deq[128];
            for (int i = 0; i < n; i++) {
                memset(got, 0xAA, sizeof got);
                cr_assert(fpd_rowwise_quantize_row(kind, w + i * dim, dim, got));
                test_rowwise_ref_quantize(bits, w + i * dim, dim, want);
                cr_assert(memcmp(got, want, rb) == 0, "bits %d dim %d row %d: bytes differ", bits, dim, i);
                fpd_rowwise_dequantize_row(kind, got, dim, deq);
                for (int j = 0; j < dim; j++)
                    cr_assert(eq(flt, deq[j], test_rowwise_ref_value(bits, want, dim, j)));
            }
        }
        free(w);
    }
}

Test(quant, closed_forms) {
    /* a row on the int8 grid comes back within float rounding; a constant row exactly */
    float x[5] = {-1.0f, 0.0f, 1.0f, 0.5f, -0.5f}, y[5];
    uint8_t q[16];
    cr_assert(fpd_rowwise_quantize_row(FPD_ROWWISE_INT8, x, 5, q));
    cr_assert(eq(u8, q[0], 0));
    cr_assert(eq(u8, q[2], 255));
    fpd_rowwise_dequantize_row(FPD_ROWWISE_INT8, q, 5, y);
    for (int j = 0; j < 5; j++) cr_assert(le(flt, fabsf(y[j] - x[j]), 2.0f / 255.0f / 2.0f + 1e-6f));
    float c[3] = {0.3f, 0.3f, 0.3f};
    cr_assert(fpd_rowwise_quantize_row(FPD_ROWWISE_INT8, c, 3, q));
    fpd_rowwise_dequantize_row(FPD_ROWWISE_INT8, q, 3, y);
    for (int j = 0; j < 3; j++) cr_assert(eq(flt, y[j], 0.3f));
    /* int4 of 0..15: exact (scale 1, bias 0 are F16-exact) */
    float g[16];
    for (int j = 0; j < 16; j++) g[j] = (float)j;
    cr_assert(fpd_rowwise_quantize_row(FPD_ROWWISE_INT4, g, 16, q));
    cr_assert(eq(u8, q[0], 0x10)); /* column 0 low nibble 0, column 1 high nibble 1 */
    float h[16];
    fpd_rowwise_dequantize_row(FPD_ROWWISE_INT4, q, 16, h);
    for (int j = 0; j < 16; j++) cr_assert(eq(flt, h[j], (float)j));
}

Test(quant, table_error_and_lookup) {
    const int n = 1000, dim = 13;
    float *w = malloc(sizeof(float) * (size_t)(n * dim));
    make_rows(w, n, dim, 99);
    struct fpd_table_view v = {w, FPD_DTYPE_F32, n, dim};
    for (int bits = 4; bits <= 8; bits += 4) {
        enum fpd_rowwise kind = bits == 8 ? FPD_ROWWISE_INT8 : FPD_ROWWISE_INT4;
        size_t rb = fpd_rowwise_row_bytes(kind, dim);
        unsigned char *q = malloc(rb * (size_t)n), want[64];
        double e = -1;
        struct fpd_error err;
        cr_assert(eq(int, fpd_rowwise_quantize(&v, kind, q, &e, &err), FPD_STATUS_OK), "%s", err.msg);
        double se = 0, sn = 0;
        for (int i = 0; i < n; i++) {
            test_rowwise_ref_quantize(bits, w + i * dim, dim, want);
            cr_assert(memcmp(q + (size_t)i * rb, want, rb) == 0);
            for (int j = 0; j < dim; j++) {
                double d = (double)w[i * dim + j] - test_rowwise_ref_value(bits, want, dim, j);
                se += d * d;
                sn += (double)w[i * dim + j] * w[i * dim + j];
            }
        }
        cr_assert(ieee_ulp_eq(dbl, e, sqrt(se / sn), 64), "%g vs %g", e, sqrt(se / sn));
        /* measuring only (out NULL) gives the same error; the baseline too */
        double e2 = -1;
        cr_assert(eq(int, fpd_rowwise_quantize(&v, kind, NULL, &e2, &err), FPD_STATUS_OK));
        cr_assert(eq(dbl, e, e2));
        struct fpd_quant_baseline qb;
        cr_assert(eq(int, fpd_quant_baseline(&v, &qb, &err), FPD_STATUS_OK));
        cr_assert(ieee_ulp_eq(dbl, bits == 8 ? qb.int8_rel_error : qb.int4_rel_error, e, 64));
        cr_assert(eq(sz, bits == 8 ? qb.int8_bytes : qb.int4_bytes, rb * (size_t)n));

        struct fpd_rowwise_table t = {q, kind, n, dim};
        int64_t idx[4] = {999, 0, 5, 5};
        float out[4 * 13];
        cr_assert(eq(int, fpd_rowwise_lookup(&t, idx, 4, out, &err), FPD_STATUS_OK));
        for (int r = 0; r < 4; r++) {
            test_rowwise_ref_quantize(bits, w + idx[r] * dim, dim, want);
            for (int j = 0; j < dim; j++) cr_assert(eq(flt, out[r * dim + j], test_rowwise_ref_value(bits, want, dim, j)));
        }
        float rec[3 * 13];
        cr_assert(eq(int, fpd_rowwise_reconstruct(&t, 4, 7, rec, &err), FPD_STATUS_OK));
        cr_assert(eq(int, fpd_rowwise_lookup(&t, (int64_t[]){4, 5, 6}, 3, out, &err), FPD_STATUS_OK));
        cr_assert(memcmp(rec, out, sizeof rec) == 0);
        int64_t bad[2] = {3, 1000};
        cr_assert(eq(int, fpd_rowwise_lookup(&t, bad, 2, out, &err), FPD_STATUS_INVALID_ARG));
        cr_assert(strstr(err.msg, "index 1000 (position 1)") != NULL, "%s", err.msg);
        cr_assert(eq(int, fpd_rowwise_reconstruct(&t, 5, 1001, out, &err), FPD_STATUS_INVALID_ARG));
        free(q);
    }
    free(w);
}

Test(quant, refuses_non_finite) {
    float w[3 * 4] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    w[2 * 4 + 1] = NAN;
    struct fpd_table_view v = {w, FPD_DTYPE_F32, 3, 4};
    struct fpd_error err;
    unsigned char q[3 * 12];
    cr_assert(eq(int, fpd_rowwise_quantize(&v, FPD_ROWWISE_INT8, q, NULL, &err), FPD_STATUS_NUMERIC));
    cr_assert(strstr(err.msg, "row 2, column 1 is NaN") != NULL, "%s", err.msg);
    w[2 * 4 + 1] = INFINITY;
    cr_assert(eq(int, fpd_rowwise_quantize(&v, FPD_ROWWISE_INT4, NULL, NULL, &err), FPD_STATUS_NUMERIC));
    cr_assert(strstr(err.msg, "row 2, column 1 is Inf") != NULL, "%s", err.msg);
    /* the baselines refuse it the same way, naming the row past their first block of 1,024 */
    float *big_w = calloc(1500 * 2, sizeof *big_w);
    cr_assert(big_w != NULL);
    big_w[1300 * 2 + 1] = -INFINITY;
    struct fpd_table_view bv = {big_w, FPD_DTYPE_F32, 1500, 2};
    struct fpd_quant_baseline qb;
    cr_assert(eq(int, fpd_quant_baseline(&bv, &qb, &err), FPD_STATUS_NUMERIC));
    cr_assert(strstr(err.msg, "row 1300, column 1 is -Inf") != NULL, "%s", err.msg);
    big_w[1300 * 2 + 1] = 1.0f;
    cr_assert(eq(int, fpd_quant_baseline(&bv, &qb, &err), FPD_STATUS_OK));
    free(big_w);
    /* int4 keeps scale and bias in F16: a value beyond 65504 cannot be stored */
    w[2 * 4 + 1] = -1e6f;
    cr_assert(eq(int, fpd_rowwise_quantize(&v, FPD_ROWWISE_INT4, NULL, NULL, &err), FPD_STATUS_NUMERIC));
    cr_assert(strstr(err.msg, "row 2") != NULL, "%s", err.msg);
    cr_assert(eq(int, fpd_rowwise_quantize(&v, FPD_ROWWISE_INT8, NULL, NULL, &err), FPD_STATUS_OK));
    /* a stored row whose scale is Inf is not finite */
    uint8_t row[12] = {0};
    float inf = INFINITY, one = 1.0f;
    memcpy(row + 4, &inf, 4);
    memcpy(row + 8, &one, 4);
    cr_assert(not(fpd_rowwise_row_finite(FPD_ROWWISE_INT8, row, 4)));
    memcpy(row + 4, &one, 4);
    cr_assert(fpd_rowwise_row_finite(FPD_ROWWISE_INT8, row, 4));
    float big = 3e38f;
    memcpy(row + 4, &big, 4); /* 255 * 3e38 overflows */
    cr_assert(not(fpd_rowwise_row_finite(FPD_ROWWISE_INT8, row, 4)));
}

Test(quant, quality_report_of_rowwise_table) {
    const int n = 500, dim = 9;
    float *w = malloc(sizeof(float) * (size_t)(n * dim));
    make_rows(w, n, dim, 5);
    struct fpd_table_view v = {w, FPD_DTYPE_F32, n, dim};
    size_t rb = fpd_rowwise_row_bytes(FPD_ROWWISE_INT4, dim);
    unsigned char *q = malloc(rb * (size_t)n);
    struct fpd_error err;
    cr_assert(eq(int, fpd_rowwise_quantize(&v, FPD_ROWWISE_INT4, q, NULL, &err), FPD_STATUS_OK));
    struct fpd_rowwise_table t = {q, FPD_ROWWISE_INT4, n, dim};
    struct fpd_quality qs;
    cr_assert(eq(int, fpd_rowwise_quality(&t, &v, NULL, 0, 0, &qs, &err), FPD_STATUS_OK), "%s", err.msg);
    /* naive: from the reference quantizer, row by row */
    double se = 0, sn = 0, cs = 0, cmin = 1;
    unsigned char ref[64];
    for (int i = 0; i < n; i++) {
        test_rowwise_ref_quantize(4, w + i * dim, dim, ref);
        double dot = 0, na = 0, nb = 0;
        for (int j = 0; j < dim; j++) {
            double x = w[i * dim + j], y = test_rowwise_ref_value(4, ref, dim, j);
            se += (x - y) * (x - y);
            sn += x * x;
            dot += x * y, na += x * x, nb += y * y;
        }
        double c = (na == 0 && nb == 0) ? 1 : (na == 0 || nb == 0) ? 0 : dot / sqrt(na * nb);
        cs += c;
        cmin = c < cmin ? c : cmin;
    }
    cr_assert(ieee_ulp_eq(dbl, qs.rel_error, sqrt(se / sn), 64), "%g vs %g", qs.rel_error, sqrt(se / sn));
    cr_assert(le(dbl, fabs(qs.cos_mean - cs / n), 1e-12));
    cr_assert(le(dbl, fabs(qs.cos_min - cmin), 1e-12));
    cr_assert(ieee_ulp_eq(dbl, qs.int4_rel_error, qs.rel_error, 64)); /* its own baseline */
    cr_assert(eq(i64, qs.recall_queries, 0));
    struct fpd_table_view bad = {w, FPD_DTYPE_F32, n - 1, dim};
    cr_assert(eq(int, fpd_rowwise_quality(&t, &bad, NULL, 0, 0, &qs, &err), FPD_STATUS_SHAPE));
    free(q);
    free(w);
}
