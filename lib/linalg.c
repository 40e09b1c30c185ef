/*
 * linalg.c - the dense double-precision building blocks of the fit, offered to
 * the rest of the project (the heuristics' error prediction) through the public
 * API, so that nothing outside lib/ calls a CPU kernel directly (fpd.h, "Dense
 * linear algebra").
 */
#include "cpu/kernels-cpu.h"

void fpd_linalg_dgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha, const double *a,
                      int64_t lda, const double *b, int64_t ldb, double beta, double *c, int64_t ldc) {
    fpd__cpu_dgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void fpd_linalg_dsyrk(bool trans, int64_t n, int64_t m, const double *x, int64_t ldx, double *g, int64_t ldg) {
    fpd__cpu_dsyrk(trans, n, m, x, ldx, g, ldg);
}

enum fpd_status fpd_linalg_eig_top(int64_t n, double *g, int64_t r, double *w, double *vec, struct fpd_error *err) {
    return fpd__cpu_dsyev_top(n, g, r, w, vec, err);
}
