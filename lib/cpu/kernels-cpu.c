/*
 * kernels-cpu.c - thin wrappers over CBLAS (OpenBLAS) and LAPACKE.
 */
#include "kernels-cpu.h"

#include <cblas.h>
#include <lapacke.h>
#include <string.h>

void fpd__cpu_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                    int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    if (m == 0 || n == 0) return;
    if (k == 0) {
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) c[i * ldc + j] *= beta;
        return;
    }
    /* Tiny products (the common case in row look-ups) cost less inline than a BLAS call. */
    if (m * n * k <= 512) {
        for (int64_t i = 0; i < m; i++) {
            for (int64_t j = 0; j < n; j++) {
                float s = 0.0f;
                for (int64_t l = 0; l < k; l++) {
                    float av = trans_a ? a[l * lda + i] : a[i * lda + l];
                    float bv = trans_b ? b[j * ldb + l] : b[l * ldb + j];
                    s += av * bv;
                }
                c[i * ldc + j] = alpha * s + (beta == 0.0f ? 0.0f : beta * c[i * ldc + j]);
            }
        }
        return;
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                (blasint)m, (blasint)n, (blasint)k, alpha, a, (blasint)lda, b, (blasint)ldb, beta, c,
                (blasint)ldc);
}

void fpd__cpu_dgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha, const double *a,
                    int64_t lda, const double *b, int64_t ldb, double beta, double *c, int64_t ldc) {
    if (m == 0 || n == 0) return;
    cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                (blasint)m, (blasint)n, (blasint)k, alpha, a, (blasint)lda, b, (blasint)ldb, beta, c,
                (blasint)ldc);
}

void fpd__cpu_dsyrk(bool trans, int64_t n, int64_t m, const double *x, int64_t ldx, double *g, int64_t ldg) {
    if (n == 0 || m == 0) return;
    cblas_dsyrk(CblasRowMajor, CblasUpper, trans ? CblasTrans : CblasNoTrans, (blasint)n, (blasint)m, 1.0, x, (blasint)ldx, 1.0, g,
                (blasint)ldg);
}

void fpd__cpu_sym_fill(int64_t n, double *g, int64_t ldg) {
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < i; j++) g[i * ldg + j] = g[j * ldg + i];
}

enum fpd_status fpd__cpu_dsyev_desc(int64_t n, double *g, double *w, struct fpd_error *err) {
    if (n == 0) return FPD_STATUS_OK;
    lapack_int info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'U', (lapack_int)n, g, (lapack_int)n, w);
    if (info == LAPACK_WORK_MEMORY_ERROR)
        return fpd__err(err, FPD_STATUS_NOMEM, "LAPACKE_dsyevd: out of memory for a %lld x %lld matrix",
                        (long long)n, (long long)n);
    if (info < 0)
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "LAPACKE_dsyevd: argument %d is invalid (a bug)", -(int)info);
    if (info > 0)
        return fpd__err(err, FPD_STATUS_NUMERIC, "LAPACKE_dsyevd did not converge (info %d) on a %lld x %lld "
                        "Gram matrix", (int)info, (long long)n, (long long)n);
    /* ascending -> descending: reverse eigenvalues and eigenvector columns */
    for (int64_t a = 0, b = n - 1; a < b; a++, b--) {
        double t = w[a];
        w[a] = w[b];
        w[b] = t;
        for (int64_t i = 0; i < n; i++) {
            t = g[i * n + a];
            g[i * n + a] = g[i * n + b];
            g[i * n + b] = t;
        }
    }
    return FPD_STATUS_OK;
}
