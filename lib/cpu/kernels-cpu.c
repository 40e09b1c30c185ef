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

/* The r largest eigenvalues of the symmetric g[n, n] (upper triangle used; g is
 * destroyed) into w[0..r), descending, and, if vec is non-NULL, their eigenvectors
 * as the columns of vec[n, r] (row-major). LAPACKE_dsyevr computes only these, which
 * is several times faster than a full decomposition when r << n or without vectors. */
enum fpd_status fpd__cpu_dsyev_top(int64_t n, double *g, int64_t r, double *w, double *vec, struct fpd_error *err) {
    if (r <= 0 || n <= 0) return FPD_STATUS_OK;
    if (r > n) r = n;
    double *wt = fpd_malloc((size_t)n * sizeof(double));
    lapack_int *supp = fpd_malloc((size_t)(2 * r) * sizeof(lapack_int));
    if (!wt || !supp) {
        fpd_free(wt);
        fpd_free(supp);
        return fpd__err(err, FPD_STATUS_NOMEM, "out of memory for a %lld x %lld eigenproblem", (long long)n,
                        (long long)n);
    }
    lapack_int found = 0;
    lapack_int info = LAPACKE_dsyevr(LAPACK_ROW_MAJOR, vec ? 'V' : 'N', 'I', 'U', (lapack_int)n, g, (lapack_int)n, 0.0,
                                     0.0, (lapack_int)(n - r + 1), (lapack_int)n, 0.0, &found, wt, vec,
                                     (lapack_int)r, supp);
    enum fpd_status st = FPD_STATUS_OK;
    if (info == LAPACK_WORK_MEMORY_ERROR)
        st = fpd__err(err, FPD_STATUS_NOMEM, "LAPACKE_dsyevr: out of memory for a %lld x %lld matrix", (long long)n,
                      (long long)n);
    else if (info < 0)
        st = fpd__err(err, FPD_STATUS_INVALID_ARG, "LAPACKE_dsyevr: argument %d is invalid (a bug)", -(int)info);
    else if (info > 0 || found != (lapack_int)r)
        st = fpd__err(err, FPD_STATUS_NUMERIC, "LAPACKE_dsyevr failed (info %d, %d of %lld eigenvalues) on a %lld x %lld "
                      "Gram matrix", (int)info, (int)found, (long long)r, (long long)n, (long long)n);
    if (st == FPD_STATUS_OK) {
        /* ascending -> descending */
        for (int64_t q = 0; q < r; q++) w[q] = wt[r - 1 - q];
        if (vec)
            for (int64_t i = 0; i < n; i++)
                for (int64_t a = 0, b = r - 1; a < b; a++, b--) {
                    double t = vec[i * r + a];
                    vec[i * r + a] = vec[i * r + b];
                    vec[i * r + b] = t;
                }
    }
    fpd_free(wt);
    fpd_free(supp);
    return st;
}

void fpd__cpu_radix_sort(uint64_t *key, int64_t *pos, int64_t n, int bits, uint64_t *key2, int64_t *pos2) {
    const int RB = n < 4096 ? 8 : 11, RS = 1 << RB;
    uint64_t *k0 = key, *k1 = key2;
    int64_t *p0 = pos, *p1 = pos2;
    int64_t cnt[1 << 11];
    for (int shift = 0; shift < bits; shift += RB) {
        memset(cnt, 0, (size_t)RS * sizeof cnt[0]);
        for (int64_t i = 0; i < n; i++) cnt[(k0[i] >> shift) & (uint64_t)(RS - 1)]++;
        int64_t sum = 0;
        for (int b = 0; b < RS; b++) {
            int64_t c = cnt[b];
            cnt[b] = sum;
            sum += c;
        }
        for (int64_t i = 0; i < n; i++) {
            int64_t d = cnt[(k0[i] >> shift) & (uint64_t)(RS - 1)]++;
            k1[d] = k0[i];
            p1[d] = p0[i];
        }
        uint64_t *tk = k0;
        k0 = k1;
        k1 = tk;
        int64_t *tp = p0;
        p0 = p1;
        p1 = tp;
    }
    if (k0 != key) { /* odd number of passes: the result is in the scratch */
        memcpy(key, k0, (size_t)n * sizeof *k0);
        memcpy(pos, p0, (size_t)n * sizeof *p0);
    }
}
