/*
 * fpd-impl.h - private helpers shared by lib/, formats/ and heuristics/.
 * Not API: nothing here is installed.
 */
#ifndef FPD_IMPL_H
#define FPD_IMPL_H

#include "fpd.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Contract violations (a NULL handle, a broken invariant): abort with a message.
 * Never used on file contents or user input. */
#define FPD_ASSERT(x)                                                                     \
    do {                                                                                  \
        if (!(x)) {                                                                       \
            fprintf(stderr, "%s:%d: FPD_ASSERT(%s) failed\n", __FILE__, __LINE__, #x);    \
            abort();                                                                      \
        }                                                                                 \
    } while (0)

/* Set err (if non-NULL) to status and a printf-formatted message; returns status,
 * so callers write `return fpd__err(err, FPD_STATUS_FORMAT, "...", ...)`. */
enum fpd_status fpd__err(struct fpd_error *err, enum fpd_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Reset err to OK with an empty message. */
void fpd__err_clear(struct fpd_error *err);
/* Log through the callback set by fpd_log_set (no-op without one). */
void fpd__log(enum fpd_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A checked copy of a row permutation (fpd_layer_set_row_perm, fpd_composed_set_row_perm):
 * perm[0..rows) distinct and in [0, padded), else INVALID_ARG naming `what`[i]; NOMEM.
 * *out: fpd_malloc'ed, the caller's (NULL on error). */
enum fpd_status fpd__row_perm_copy(const int64_t *perm, int64_t rows, int64_t padded, const char *what,
                                   int64_t **out, struct fpd_error *err);

/* a * b into *out; returns false on overflow (operands must be >= 0). */
static inline bool fpd__mul_i64(int64_t a, int64_t b, int64_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool fpd__mul_size(size_t a, size_t b, size_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}

/* GCC vectorizes loops of unknown trip count only from -O3 (or with
 * -ftree-vectorize's dynamic cost model): ask for it on the few inner loops
 * where the time goes. Clang vectorizes them at -O2. */
#if defined(__GNUC__) && !defined(__clang__)
#define FPD__VECTORIZE __attribute__((optimize("O3")))
#else
#define FPD__VECTORIZE
#endif

/* One Adam update (Kingma & Ba, ICLR 2015, Algorithm 1) of x[0..n) with gradient
 * g, moments m1/m2, step lr and the bias corrections bc1 = 1 - beta1^t,
 * bc2 = 1 - beta2^t (lib/cpu/optim-cpu.c). Shared by the engine's optimizers and
 * the dense tables of the trainers, so that a 1-core FPD layer and a dense table
 * step bit for bit alike. */
void fpd__adam_update(float *x, const float *g, float *m1, float *m2, int64_t n, float lr, float beta1, float beta2,
                      float eps, float bc1, float bc2);

/* Monotonic seconds. */
/* free-quant.c: the symmetric kinds of enum fpd_free_kind (free-sym/1). One row e[c]
 * into out[fpd_free_row_bytes(kind, c)] (false when e holds a NaN or Inf or its scale
 * exceeds F16's range; out undefined); and back into out[c] (out may be NULL: only the
 * check), false when the stored scale is negative, NaN or Inf. */
bool fpd__free_sym_quantize_row(enum fpd_free_kind kind, const float *e, int64_t c, uint8_t *out);
bool fpd__free_sym_dequantize_row(enum fpd_free_kind kind, const uint8_t *q, int64_t c, float *out);
/* out[0..c) = x's row as a checkpoint of kind stores it, dequantized (the writer's
 * rounding: fpd_layer_quantize_free's floats); x copied when it cannot be quantized
 * (a NaN or Inf, a range beyond F16's). The forward of quantization-aware training
 * (fpd_engine_params.free_qat); the arithmetic is free-round-impl.h's, which the CUDA
 * engine runs too. */
void fpd__free_fake_quant_row(enum fpd_free_kind kind, const float *x, int64_t c, float *out);

double fpd__now(void);

/* splitmix64 PRNG step (Steele, Lea, Flood 2014): deterministic across platforms. */
static inline uint64_t fpd__rand_u64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
/* Uniform double in [0, 1). */
static inline double fpd__rand_uniform(uint64_t *state) {
    return (double)(fpd__rand_u64(state) >> 11) * (1.0 / 9007199254740992.0);
}
/* Standard normal (Box-Muller). */
double fpd__rand_normal(uint64_t *state);

/* Rows of a layer block after block (lib/engine.c): fpd_layer_reconstruct with one engine
 * and one id buffer kept across the calls of a pass, instead of an engine made and freed
 * for every block (which, at 1,024 rows a block, spent most of a 10M-row pass in the
 * kernel, faulting in each new engine's workspace). Zero-initialize; the layer's cores
 * may not change between the calls of one reconstructor; free with
 * fpd__reconstructor_free. Errors: those of fpd_layer_reconstruct. */
struct fpd__reconstructor {
    struct fpd_engine *engine;
    int64_t *idx;
    int64_t cap;
};
enum fpd_status fpd__reconstruct_rows(struct fpd__reconstructor *rc, const struct fpd_layer *layer, int64_t row_begin,
                                      int64_t row_end, float *out, struct fpd_error *err);
void fpd__reconstructor_free(struct fpd__reconstructor *rc);

#ifdef __cplusplus
}
#endif
#endif /* FPD_IMPL_H */
