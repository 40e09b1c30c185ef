/*
 * optim-cpu.c - the optimizers' element loops (fpd-impl.h). Built with -O3
 * -fno-math-errno (Makefile): errno semantics keep sqrtf scalar, and these loops
 * run over every parameter a step touches. On x86-64 each is also compiled for
 * AVX-512 and AVX2, and the loader picks the best (target_clones).
 */
#include "../fpd-impl.h"

#include <math.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define FPD__CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FPD__CLONES
#endif

FPD__CLONES
void fpd__adam_update(float *restrict x, const float *restrict g, float *restrict m1, float *restrict m2, int64_t n,
                      float lr, float beta1, float beta2, float eps, float bc1, float bc2) {
    for (int64_t e = 0; e < n; e++) {
        const float gv = g[e];
        m1[e] = beta1 * m1[e] + (1.0f - beta1) * gv;
        m2[e] = beta2 * m2[e] + (1.0f - beta2) * gv * gv;
        x[e] -= lr * (m1[e] / bc1) / (sqrtf(m2[e] / bc2) + eps);
    }
}
