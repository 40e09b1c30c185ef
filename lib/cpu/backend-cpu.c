/*
 * backend-cpu.c - the CPU backend: host memory, OpenBLAS GEMM, LAPACKE SVD.
 */
#include "../backend-impl.h"
#include "kernels-cpu.h"

#include <lapacke.h>
#include <string.h>

static bool cpu_supports(void *ctx, enum fpd_backend_op op, enum fpd_dtype dtype) {
    (void)ctx;
    (void)op;
    return dtype == FPD_DTYPE_F32;
}

static enum fpd_status cpu_alloc(void *ctx, size_t nbytes, void **out, struct fpd_error *err) {
    (void)ctx;
    *out = fpd_malloc(nbytes);
    if (!*out && nbytes) return fpd__err(err, FPD_STATUS_NOMEM, "out of memory (%zu bytes)", nbytes);
    return FPD_STATUS_OK;
}

static enum fpd_status cpu_free(void *ctx, void *ptr, struct fpd_error *err) {
    (void)ctx;
    (void)err;
    fpd_free(ptr);
    return FPD_STATUS_OK;
}

static enum fpd_status cpu_copy(void *ctx, void *dst, const void *src, size_t nbytes, enum fpd_copy_kind kind,
                                struct fpd_error *err) {
    (void)ctx;
    (void)kind;
    (void)err;
    if (nbytes) memmove(dst, src, nbytes);
    return FPD_STATUS_OK;
}

static enum fpd_status cpu_gemm(void *ctx, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                                const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                                int64_t ldc, struct fpd_error *err) {
    (void)ctx;
    (void)err;
    fpd__cpu_sgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return FPD_STATUS_OK;
}

static enum fpd_status lapack_status(lapack_int info, const char *fn, struct fpd_error *err) {
    if (info == 0) return FPD_STATUS_OK;
    if (info == LAPACK_WORK_MEMORY_ERROR) return fpd__err(err, FPD_STATUS_NOMEM, "%s: out of memory", fn);
    if (info < 0) return fpd__err(err, FPD_STATUS_INVALID_ARG, "%s: argument %d is invalid (a bug)", fn, -(int)info);
    return fpd__err(err, FPD_STATUS_NUMERIC, "%s did not converge (info %d)", fn, (int)info);
}

static enum fpd_status cpu_svd_workspace(void *ctx, int64_t m, int64_t n, size_t *nbytes, struct fpd_error *err) {
    (void)ctx;
    float q = 0.0f;
    lapack_int mn = (lapack_int)(m < n ? m : n);
    lapack_int info = LAPACKE_sgesvd_work(LAPACK_ROW_MAJOR, 'S', 'S', (lapack_int)m, (lapack_int)n, NULL,
                                          (lapack_int)n, NULL, NULL, mn, NULL, (lapack_int)n, &q, -1);
    if (info) return lapack_status(info, "LAPACKE_sgesvd_work (query)", err);
    /* the row-major wrapper transposes into a copy of a, u and vt: count them too */
    *nbytes = ((size_t)q + (size_t)(m * n + m * mn + mn * n)) * sizeof(float);
    return FPD_STATUS_OK;
}

static enum fpd_status cpu_svd(void *ctx, int64_t m, int64_t n, float *a, float *s, float *u, float *vt, void *work,
                               size_t work_nbytes, struct fpd_error *err) {
    (void)ctx;
    (void)work;
    (void)work_nbytes;
    int64_t mn = m < n ? m : n;
    float *superb = fpd_malloc((size_t)(mn > 1 ? mn : 1) * sizeof(float));
    if (!superb) return fpd__err(err, FPD_STATUS_NOMEM, "out of memory for an SVD");
    lapack_int info = LAPACKE_sgesvd(LAPACK_ROW_MAJOR, 'S', 'S', (lapack_int)m, (lapack_int)n, a, (lapack_int)n, s, u,
                                     (lapack_int)mn, vt, (lapack_int)n, superb);
    fpd_free(superb);
    return lapack_status(info, "LAPACKE_sgesvd", err);
}

static enum fpd_status cpu_gather_rows(void *ctx, const float *src, int64_t cols, const int64_t *idx, int64_t n,
                                       float *dst, struct fpd_error *err) {
    (void)ctx;
    (void)err;
    for (int64_t b = 0; b < n; b++) memcpy(dst + b * cols, src + idx[b] * cols, (size_t)cols * sizeof(float));
    return FPD_STATUS_OK;
}

static enum fpd_status cpu_synchronize(void *ctx, struct fpd_error *err) {
    (void)ctx;
    (void)err;
    return FPD_STATUS_OK;
}

static void cpu_destroy(void *ctx) { (void)ctx; }

enum fpd_status fpd__cpu_backend_create(struct fpd_backend *be, struct fpd_error *err) {
    (void)err;
    be->kind = FPD_BACKEND_KIND_CPU;
    be->ctx = NULL;
    be->iface = (struct fpd_backend_i){
        .supports = cpu_supports,
        .alloc = cpu_alloc,
        .free = cpu_free,
        .copy = cpu_copy,
        .gemm = cpu_gemm,
        .svd_workspace = cpu_svd_workspace,
        .svd = cpu_svd,
        .gather_rows = cpu_gather_rows,
        .synchronize = cpu_synchronize,
        .destroy = cpu_destroy,
    };
    fpd__cpu_engine_ops(&be->iface);
    snprintf(be->name, sizeof be->name, "cpu");
    return FPD_STATUS_OK;
}
