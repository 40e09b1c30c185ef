/*
 * test-backend.c - the backend operations (GEMM, SVD, gather) on every available
 * backend against naive references; CUDA cases skip without a device.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "lib/backend-impl.h"
#include "tests/test-util.h"

static void naive_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float *a, const float *b,
                       double *c) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t l = 0; l < k; l++) s += (double)(ta ? a[l * m + i] : a[i * k + l]) * (tb ? b[j * k + l] : b[l * n + j]);
            c[i * n + j] = s;
        }
}

static void check_backend(enum fpd_backend_kind kind) {
    struct fpd_error err;
    struct fpd_backend *be = NULL;
    cr_assert(eq(int, fpd_backend_init(kind, 0, &be, &err), 0), "%s", err.msg);
    void *ctx;
    const struct fpd_backend_i *ops = fpd__backend_iface(be, &ctx);
    uint64_t seed = 11;
    /* sizes on both sides of the CPU's small-product threshold */
    const int64_t sizes[][3] = {{3, 4, 5}, {37, 29, 41}, {1, 64, 7}};
    for (int q = 0; q < 3; q++)
        for (int tt = 0; tt < 4; tt++) {
            bool ta = tt & 1, tb = tt & 2;
            int64_t m = sizes[q][0], n = sizes[q][1], k = sizes[q][2];
            float *a = malloc((size_t)(m * k) * 4), *b = malloc((size_t)(k * n) * 4), *c = malloc((size_t)(m * n) * 4);
            double *ref = malloc((size_t)(m * n) * 8);
            for (int64_t e = 0; e < m * k; e++) a[e] = (float)test_rand_sym(&seed);
            for (int64_t e = 0; e < k * n; e++) b[e] = (float)test_rand_sym(&seed);
            naive_gemm(ta, tb, m, n, k, a, b, ref);
            void *da, *db, *dc;
            cr_assert(eq(int, ops->alloc(ctx, (size_t)(m * k) * 4, &da, &err), 0));
            cr_assert(eq(int, ops->alloc(ctx, (size_t)(k * n) * 4, &db, &err), 0));
            cr_assert(eq(int, ops->alloc(ctx, (size_t)(m * n) * 4, &dc, &err), 0));
            ops->copy(ctx, da, a, (size_t)(m * k) * 4, FPD_COPY_HOST_TO_DEVICE, &err);
            ops->copy(ctx, db, b, (size_t)(k * n) * 4, FPD_COPY_HOST_TO_DEVICE, &err);
            cr_assert(eq(int, ops->gemm(ctx, ta, tb, m, n, k, 1.0f, da, ta ? m : k, db, tb ? k : n, 0.0f, dc, n, &err), 0),
                      "%s", err.msg);
            ops->copy(ctx, c, dc, (size_t)(m * n) * 4, FPD_COPY_DEVICE_TO_HOST, &err);
            double num = 0, den = 0;
            for (int64_t e = 0; e < m * n; e++) {
                num += (c[e] - ref[e]) * (c[e] - ref[e]);
                den += ref[e] * ref[e];
            }
            cr_assert(lt(dbl, num / den, 1e-10), "gemm %lldx%lldx%lld ta=%d tb=%d nmse %g", (long long)m, (long long)n,
                      (long long)k, ta, tb, num / den);
            ops->free(ctx, da, &err);
            ops->free(ctx, db, &err);
            ops->free(ctx, dc, &err);
            free(a);
            free(b);
            free(c);
            free(ref);
        }

    /* thin SVD of a wide 6 x 9 matrix: U S Vt reproduces it, singular values descending */
    int64_t m = 6, n = 9, mn = 6;
    float a[54], a0[54], s[6], u[36], vt[54];
    for (int e = 0; e < 54; e++) a0[e] = a[e] = (float)test_rand_sym(&seed);
    size_t wsz = 0;
    cr_assert(eq(int, ops->svd_workspace(ctx, m, n, &wsz, &err), 0), "%s", err.msg);
    void *da, *ds, *du, *dvt, *dw;
    ops->alloc(ctx, sizeof a, &da, &err);
    ops->alloc(ctx, sizeof s, &ds, &err);
    ops->alloc(ctx, sizeof u, &du, &err);
    ops->alloc(ctx, sizeof vt, &dvt, &err);
    ops->alloc(ctx, wsz, &dw, &err);
    ops->copy(ctx, da, a, sizeof a, FPD_COPY_HOST_TO_DEVICE, &err);
    cr_assert(eq(int, ops->svd(ctx, m, n, da, ds, du, dvt, dw, wsz, &err), 0), "%s", err.msg);
    ops->copy(ctx, s, ds, sizeof s, FPD_COPY_DEVICE_TO_HOST, &err);
    ops->copy(ctx, u, du, sizeof u, FPD_COPY_DEVICE_TO_HOST, &err);
    ops->copy(ctx, vt, dvt, sizeof vt, FPD_COPY_DEVICE_TO_HOST, &err);
    for (int q = 1; q < mn; q++) cr_assert(ge(flt, s[q - 1], s[q]));
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double r = 0;
            for (int64_t q = 0; q < mn; q++) r += (double)u[i * mn + q] * s[q] * vt[q * n + j];
            cr_assert(le(dbl, fabs(r - a0[i * n + j]), 1e-4), "svd (%lld,%lld): %g vs %g", (long long)i, (long long)j,
                      r, (double)a0[i * n + j]);
        }
    ops->free(ctx, da, &err);
    ops->free(ctx, ds, &err);
    ops->free(ctx, du, &err);
    ops->free(ctx, dvt, &err);
    ops->free(ctx, dw, &err);

    /* gather */
    float src[5 * 3], dst[4 * 3];
    for (int e = 0; e < 15; e++) src[e] = (float)e;
    int64_t idx[4] = {4, 0, 4, 2};
    void *dsrc, *ddst, *didx;
    ops->alloc(ctx, sizeof src, &dsrc, &err);
    ops->alloc(ctx, sizeof dst, &ddst, &err);
    ops->alloc(ctx, sizeof idx, &didx, &err);
    ops->copy(ctx, dsrc, src, sizeof src, FPD_COPY_HOST_TO_DEVICE, &err);
    ops->copy(ctx, didx, idx, sizeof idx, FPD_COPY_HOST_TO_DEVICE, &err);
    cr_assert(eq(int, ops->gather_rows(ctx, dsrc, 3, didx, 4, ddst, &err), 0));
    cr_assert(eq(int, ops->synchronize(ctx, &err), 0));
    ops->copy(ctx, dst, ddst, sizeof dst, FPD_COPY_DEVICE_TO_HOST, &err);
    for (int b = 0; b < 4; b++)
        for (int j = 0; j < 3; j++) cr_assert(eq(flt, dst[b * 3 + j], (float)(idx[b] * 3 + j)));
    ops->free(ctx, dsrc, &err);
    ops->free(ctx, ddst, &err);
    ops->free(ctx, didx, &err);
    fpd_backend_free(be);
}

Test(backend, cpu_ops_match_naive) { check_backend(FPD_BACKEND_KIND_CPU); }

Test(backend, cuda_ops_match_naive) {
    if (!fpd_backend_available(FPD_BACKEND_KIND_CUDA)) {
        struct fpd_error err;
        struct fpd_backend *be = NULL;
        enum fpd_status st = fpd_backend_init(FPD_BACKEND_KIND_CUDA, 0, &be, &err);
        cr_assert(ne(int, st, FPD_STATUS_OK));
        if (strstr(fpd_build_features(), "cuda") == NULL)
            cr_assert(ne(ptr, strstr(err.msg, "rebuild with make CUDA=1"), NULL), "%s", err.msg);
        cr_skip_test("no CUDA device (%s)", err.msg);
    }
    check_backend(FPD_BACKEND_KIND_CUDA);
}

Test(backend, best_is_available) {
    struct fpd_error err;
    struct fpd_backend *be = NULL;
    cr_assert(eq(int, fpd_backend_init_best(&be, &err), 0));
    cr_assert(ne(ptr, (void *)fpd_backend_name(be), NULL));
    fpd_backend_free(be);
}
