/*
 * kernels-cpu.h - the CPU kernels (OpenBLAS, LAPACKE) under the FPD math.
 * Private. Row-major throughout; cblas.h and lapacke.h stay in the .c file.
 */
#ifndef FPD_KERNELS_CPU_H
#define FPD_KERNELS_CPU_H

#include "../fpd-impl.h"

/* C[M,N] = alpha * op(A) op(B) + beta * C, row-major, F32 (cblas_sgemm). */
void fpd__cpu_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                    int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);
/* Same in double (cblas_dgemm). */
void fpd__cpu_dgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha, const double *a,
                    int64_t lda, const double *b, int64_t ldb, double beta, double *c, int64_t ldc);
/* Upper triangle of G[n,n] += X X^T with X[n,m] (trans false), or += X^T X with
 * X[m,n] (trans true); double (cblas_dsyrk). Fill the lower half with fpd__cpu_sym_fill. */
void fpd__cpu_dsyrk(bool trans, int64_t n, int64_t m, const double *x, int64_t ldx, double *g, int64_t ldg);
/* Copy the upper triangle of g[n,n] to the lower one. */
void fpd__cpu_sym_fill(int64_t n, double *g, int64_t ldg);
/* Eigen-decomposition of the symmetric g[n,n] (LAPACKE_dsyevd, row-major): on
 * return g holds the eigenvectors as columns and w[n] the eigenvalues, both in
 * DESCENDING order. Errors: INVALID_ARG (LAPACK info < 0, a bug), NUMERIC
 * (info > 0), NOMEM. */
enum fpd_status fpd__cpu_dsyev_desc(int64_t n, double *g, double *w, struct fpd_error *err);

/* The r largest eigenvalues of the symmetric g[n, n] (upper triangle; destroyed)
 * into w[0..r), descending, and their eigenvectors as the columns of vec[n, r]
 * when vec is non-NULL (LAPACKE_dsyevr). Errors: as fpd__cpu_dsyev_desc. */
enum fpd_status fpd__cpu_dsyev_top(int64_t n, double *g, int64_t r, double *w, double *vec, struct fpd_error *err);

/* C[M,N] = (acc ? C : 0) + A B, F32, for the engine's small products
 * (lib/cpu/gemm-small.c): A's entry (i, l) is a[i * sai + l * sal] (so A^T is
 * passed by swapping the strides), B is row-major [K, N] with leading dimension
 * ldb, C row-major with ldc. No threads, no allocation. */
void fpd__cpu_gemm_small(int64_t M, int64_t N, int64_t K, const float *a, int64_t sai, int64_t sal, const float *b,
                         int64_t ldb, float *c, int64_t ldc, bool acc);
/* LSD radix sort of the pairs (key[i], pos[i]), i < n, by key < 2^bits (stable),
 * in place, with scratch key2/pos2 of n each. Digits of 11 bits, 8 for n < 4096
 * (where clearing 2048 counters a pass would cost more than the keys). The
 * engine's de-duplication (engine-cpu.c) and the benchmarks' dense baseline. */
void fpd__cpu_radix_sort(uint64_t *key, int64_t *pos, int64_t n, int bits, uint64_t *key2, int64_t *pos2);
/* dst[j, i] = src[i, j] for i < rows, j < cols (leading dimensions lds, ldd). */
void fpd__cpu_transpose(int64_t rows, int64_t cols, const float *src, int64_t lds, float *dst, int64_t ldd);

#endif
