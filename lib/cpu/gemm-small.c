/*
 * gemm-small.c - the small matrix products of the FPD engine (lib/cpu/engine-cpu.c):
 * C[M,N] (+)= A[M,K] B[K,N] with K a TT-rank (1..a few hundred), M a partial
 * product's row count (a few to a few hundred) and N a core slice's width or a
 * group of rows' columns.
 *
 * Why not cblas_sgemm: at these sizes a BLAS call costs as much as the product
 * (the profile: 87% of the look-up time in OpenBLAS's small-matrix path,
 * one call per row, per core, per term), and the engine runs its own threads, so
 * a BLAS that starts threads of its own would oversubscribe the cores. This is
 * the classic register-blocked micro-kernel (Goto & van de Geijn 2008, BLIS's
 * "micro-kernel"): a 4 x (2 vectors) block of C stays in registers over the whole
 * K loop; A's entries are broadcast (so A may be read transposed through its two
 * strides at no cost), B and C are read along N in vectors.
 *
 * Vectors are GCC's generic vectors; the kernel is compiled for AVX-512 (16
 * floats), AVX2 + FMA (8) and the baseline (4), and
 * the first call picks the best one the processor has, so the binary stays
 * portable while using the machine's widest FMA units.
 */
#include "kernels-cpu.h"

#include <string.h>

typedef float v16 __attribute__((vector_size(64), aligned(4)));
typedef float v8 __attribute__((vector_size(32), aligned(4)));
typedef float v4 __attribute__((vector_size(16), aligned(4)));

#define A_AT(i, l) a[(i) * sai + (l) * sal]

#define LD(VT, p) (*(const VT *)(p))
#define ST(VT, p, v) (*(VT *)(p) = (v))
#define INIT(VT, p) (acc ? LD(VT, p) : (VT){0})

/* One pass over the columns in blocks of two vectors of type VT (W floats):
 * a 4 x 2W block of C in eight named registers over the whole K loop. */
#define GEMM_PASS2(VT, W)                                                                     \
    for (; j0 + 2 * (W) <= N; j0 += 2 * (W)) {                                                \
        int64_t i0 = 0;                                                                       \
        for (; i0 + 4 <= M; i0 += 4) {                                                        \
            float *c0 = c + i0 * ldc + j0, *c1 = c0 + ldc, *c2 = c1 + ldc, *c3 = c2 + ldc;    \
            VT x00 = INIT(VT, c0), x01 = INIT(VT, c0 + (W)), x10 = INIT(VT, c1),              \
               x11 = INIT(VT, c1 + (W)), x20 = INIT(VT, c2), x21 = INIT(VT, c2 + (W)),        \
               x30 = INIT(VT, c3), x31 = INIT(VT, c3 + (W));                                  \
            for (int64_t l = 0; l < K; l++) {                                                 \
                const float *br = b + l * ldb + j0;                                           \
                const VT b0 = LD(VT, br), b1 = LD(VT, br + (W));                              \
                const float a0 = A_AT(i0, l), a1 = A_AT(i0 + 1, l);                           \
                const float a2 = A_AT(i0 + 2, l), a3 = A_AT(i0 + 3, l);                       \
                x00 += a0 * b0;                                                               \
                x01 += a0 * b1;                                                               \
                x10 += a1 * b0;                                                               \
                x11 += a1 * b1;                                                               \
                x20 += a2 * b0;                                                               \
                x21 += a2 * b1;                                                               \
                x30 += a3 * b0;                                                               \
                x31 += a3 * b1;                                                               \
            }                                                                                 \
            ST(VT, c0, x00);                                                                  \
            ST(VT, c0 + (W), x01);                                                            \
            ST(VT, c1, x10);                                                                  \
            ST(VT, c1 + (W), x11);                                                            \
            ST(VT, c2, x20);                                                                  \
            ST(VT, c2 + (W), x21);                                                            \
            ST(VT, c3, x30);                                                                  \
            ST(VT, c3 + (W), x31);                                                            \
        }                                                                                     \
        for (; i0 < M; i0++) {                                                                \
            float *c0 = c + i0 * ldc + j0;                                                    \
            VT x00 = INIT(VT, c0), x01 = INIT(VT, c0 + (W));                                  \
            for (int64_t l = 0; l < K; l++) {                                                 \
                const float a0 = A_AT(i0, l);                                                 \
                x00 += a0 * LD(VT, b + l * ldb + j0);                                         \
                x01 += a0 * LD(VT, b + l * ldb + j0 + (W));                                   \
            }                                                                                 \
            ST(VT, c0, x00);                                                                  \
            ST(VT, c0 + (W), x01);                                                            \
        }                                                                                     \
    }

/* The same with one vector: a 4 x W block (for the columns left over). */
#define GEMM_PASS1(VT, W)                                                                     \
    for (; j0 + (W) <= N; j0 += (W)) {                                                        \
        int64_t i0 = 0;                                                                       \
        for (; i0 + 4 <= M; i0 += 4) {                                                        \
            float *c0 = c + i0 * ldc + j0, *c1 = c0 + ldc, *c2 = c1 + ldc, *c3 = c2 + ldc;    \
            VT x0 = INIT(VT, c0), x1 = INIT(VT, c1), x2 = INIT(VT, c2), x3 = INIT(VT, c3);     \
            for (int64_t l = 0; l < K; l++) {                                                 \
                const VT b0 = LD(VT, b + l * ldb + j0);                                       \
                x0 += A_AT(i0, l) * b0;                                                       \
                x1 += A_AT(i0 + 1, l) * b0;                                                   \
                x2 += A_AT(i0 + 2, l) * b0;                                                   \
                x3 += A_AT(i0 + 3, l) * b0;                                                   \
            }                                                                                 \
            ST(VT, c0, x0);                                                                   \
            ST(VT, c1, x1);                                                                   \
            ST(VT, c2, x2);                                                                   \
            ST(VT, c3, x3);                                                                   \
        }                                                                                     \
        for (; i0 < M; i0++) {                                                                \
            float *c0 = c + i0 * ldc + j0;                                                    \
            VT x0 = INIT(VT, c0);                                                             \
            for (int64_t l = 0; l < K; l++) x0 += A_AT(i0, l) * LD(VT, b + l * ldb + j0);     \
            ST(VT, c0, x0);                                                                   \
        }                                                                                     \
    }

/* One kernel per instruction set: the widest vectors that set has registers for
 * (GCC splits a vector wider than the target's registers into memory round trips,
 * 20x slower, so each version names its own width). */
#define GEMM_BODY(BIG, BW, PASSES)                                                            \
    {                                                                                         \
        int64_t j0 = 0;                                                                       \
        GEMM_PASS2(BIG, BW)                                                                   \
        PASSES                                                                                \
        for (; j0 < N; j0++)                                                                  \
            for (int64_t i = 0; i < M; i++) {                                                 \
                float s = acc ? c[i * ldc + j0] : 0.0f;                                       \
                for (int64_t l = 0; l < K; l++) s += A_AT(i, l) * b[l * ldb + j0];            \
                c[i * ldc + j0] = s;                                                          \
            }                                                                                 \
    }
#define GEMM_ARGS                                                                             \
    int64_t M, int64_t N, int64_t K, const float *restrict a, int64_t sai, int64_t sal,       \
        const float *restrict b, int64_t ldb, float *restrict c, int64_t ldc, bool acc

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma"))) static void gemm_v4(GEMM_ARGS)
    GEMM_BODY(v16, 16, GEMM_PASS1(v16, 16) GEMM_PASS1(v8, 8) GEMM_PASS1(v4, 4))
__attribute__((target("avx2,fma"))) static void gemm_v3(GEMM_ARGS)
    GEMM_BODY(v8, 8, GEMM_PASS1(v8, 8) GEMM_PASS1(v4, 4))
#endif
static void gemm_base(GEMM_ARGS) GEMM_BODY(v4, 4, GEMM_PASS1(v4, 4))

typedef void (*gemm_fn)(GEMM_ARGS);

static gemm_fn pick(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    /* feature by feature: GCC 12 knows the level names, clang 14 does not */
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
        return gemm_v4;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return gemm_v3;
#endif
    return gemm_base;
}

void fpd__cpu_gemm_small(int64_t M, int64_t N, int64_t K, const float *restrict a, int64_t sai, int64_t sal,
                         const float *restrict b, int64_t ldb, float *restrict c, int64_t ldc, bool acc) {
    static gemm_fn fn; /* a benign race: every thread computes the same pointer */
    if (M <= 0 || N <= 0) return;
    if (!fn) fn = pick();
    fn(M, N, K, a, sai, sal, b, ldb, c, ldc, acc);
}

void fpd__cpu_transpose(int64_t rows, int64_t cols, const float *restrict src, int64_t lds, float *restrict dst,
                        int64_t ldd) {
    const int64_t T = 16;
    for (int64_t i0 = 0; i0 < rows; i0 += T)
        for (int64_t j0 = 0; j0 < cols; j0 += T) {
            int64_t i1 = i0 + T < rows ? i0 + T : rows, j1 = j0 + T < cols ? j0 + T : cols;
            for (int64_t i = i0; i < i1; i++)
                for (int64_t j = j0; j < j1; j++) dst[j * ldd + i] = src[i * lds + j];
        }
}
