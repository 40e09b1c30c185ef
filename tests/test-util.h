/*
 * test-util.h - helpers shared by the Criterion tests: the data folder, seeded
 * random numbers, and a naive FPD row reference written from the definition in
 * DESIGN.md section 2 (loops, double precision), independent of lib/layer.c.
 */
#ifndef FPD_TEST_UTIL_H
#define FPD_TEST_UTIL_H

#include "lib/fpd.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Path of a file under the shared data folder (FPD_DATA_DIR, else ../shared/data);
 * returns NULL if it does not exist. The result is a static buffer. */
static inline const char *test_data_path(const char *rel) {
    static char buf[4096];
    const char *dir = getenv("FPD_DATA_DIR");
    if (!dir || !*dir) dir = "../shared/data";
    snprintf(buf, sizeof buf, "%s/%s", dir, rel);
    return access(buf, R_OK) == 0 ? buf : NULL;
}

static inline uint64_t test_rand_u64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* uniform in [-1, 1) */
static inline double test_rand_sym(uint64_t *s) {
    return 2.0 * ((double)(test_rand_u64(s) >> 11) * (1.0 / 9007199254740992.0)) - 1.0;
}

/* A [rows, dim] F32 table (malloc; NULL when out of memory or dim > 1024): random
 * rank-4 structure, smooth in the row index like a frequency-sorted vocabulary, plus
 * iid uniform noise of amplitude `noise`. */
static inline float *test_smooth_table(int64_t rows, int64_t dim, double noise, uint64_t seed) {
    double basis[4][1024];
    if (dim > 1024) return NULL;
    float *w = malloc((size_t)(rows * dim) * sizeof(float));
    if (!w) return NULL;
    for (int q = 0; q < 4; q++)
        for (int64_t j = 0; j < dim; j++) basis[q][j] = test_rand_sym(&seed);
    for (int64_t i = 0; i < rows; i++) {
        double t = (double)i / (double)rows;
        double c[4] = {1.0, sin(6.0 * t), cos(11.0 * t) * (1.0 - t), t * t};
        for (int64_t j = 0; j < dim; j++) {
            double v = noise * test_rand_sym(&seed);
            for (int q = 0; q < 4; q++) v += c[q] * basis[q][j];
            w[i * dim + j] = (float)v;
        }
    }
    return w;
}

/* Fill every core with uniform [-scale, scale) values. */
static inline void test_fill_random(struct fpd_layer *l, uint64_t seed, double scale) {
    const struct fpd_layer_shape *s = fpd_layer_get_shape(l);
    for (int32_t m = 0; m < s->k; m++) {
        float *c = fpd_layer_core(l, m);
        for (int64_t e = 0; e < fpd_layer_shape_core_numel(s, m); e++) c[e] = (float)(scale * test_rand_sym(&seed));
    }
}

/* W[row, j] by the definition: for each term, multiply the matrices
 * G_m[t, i_m, :, j_m, :] left to right (a row vector times matrices). `row` is
 * the stored (FPD) row. out[dim] in double. */
static inline void test_naive_row(const struct fpd_layer *l, int64_t row, double *out) {
    const struct fpd_layer_shape *s = fpd_layer_get_shape(l);
    int64_t dig[FPD_MAX_MODES], rem = row;
    for (int32_t m = s->k - 1; m >= 0; m--) {
        dig[m] = rem % s->row_shape[m];
        rem /= s->row_shape[m];
    }
    double vec[512], nxt[512];
    for (int64_t j = 0; j < s->dim; j++) {
        int64_t jd[FPD_MAX_MODES], jr = j;
        for (int32_t m = s->k - 1; m >= 0; m--) {
            jd[m] = jr % s->col_shape[m];
            jr /= s->col_shape[m];
        }
        double sum = 0.0;
        for (int64_t t = 0; t < s->terms; t++) {
            vec[0] = 1.0;
            for (int32_t m = 0; m < s->k; m++) {
                int64_t ra = s->ranks[m], rb = s->ranks[m + 1], n = s->row_shape[m], d = s->col_shape[m];
                const float *g = fpd_layer_core_const(l, m);
                for (int64_t b = 0; b < rb; b++) {
                    double acc = 0.0;
                    for (int64_t a = 0; a < ra; a++) {
                        /* G_m[t, i, a, j, b] at ((((t*n + i)*ra + a)*d + j)*rb + b) */
                        acc += vec[a] * g[(((t * n + dig[m]) * ra + a) * d + jd[m]) * rb + b];
                    }
                    nxt[b] = acc;
                }
                memcpy(vec, nxt, (size_t)rb * sizeof(double));
            }
            sum += vec[0];
        }
        out[j] = sum;
    }
}

/* Gradient of sum_b <g_b, row(idx_b)> with respect to every core entry, by the
 * definition: for each row, term and column j, the left vector
 * l = G_0[..j_0..] ... G_{m-1}[..] and the right vector rv = G_{m+1}[..] ... G_{k-1}[..]
 * give dG_m[t, i_m, a, j_m, b] += g[j] l[a] rv[b]. Adds into grads[m] (core
 * layout); idx are original rows (the permutation applied). Double precision. */
static inline void test_naive_backward(const struct fpd_layer *l, const int64_t *idx, int64_t n, const float *g,
                                       double *const *grads) {
    const struct fpd_layer_shape *s = fpd_layer_get_shape(l);
    const int64_t *perm = fpd_layer_row_perm(l);
    double left[FPD_MAX_MODES + 1][512], right[FPD_MAX_MODES + 1][512];
    for (int64_t bi = 0; bi < n; bi++) {
        int64_t dig[FPD_MAX_MODES], rem = perm ? perm[idx[bi]] : idx[bi];
        for (int32_t m = s->k - 1; m >= 0; m--) {
            dig[m] = rem % s->row_shape[m];
            rem /= s->row_shape[m];
        }
        for (int64_t j = 0; j < s->dim; j++) {
            int64_t jd[FPD_MAX_MODES], jr = j;
            for (int32_t m = s->k - 1; m >= 0; m--) {
                jd[m] = jr % s->col_shape[m];
                jr /= s->col_shape[m];
            }
            for (int64_t t = 0; t < s->terms; t++) {
#define G_AT(m, a, b) (fpd_layer_core_const(l, m)[(((t * s->row_shape[m] + dig[m]) * s->ranks[m] + (a)) * s->col_shape[m] + jd[m]) * s->ranks[(m) + 1] + (b)])
                left[0][0] = 1.0;
                for (int32_t m = 0; m < s->k; m++)
                    for (int64_t b = 0; b < s->ranks[m + 1]; b++) {
                        double acc = 0;
                        for (int64_t a = 0; a < s->ranks[m]; a++) acc += left[m][a] * G_AT(m, a, b);
                        left[m + 1][b] = acc;
                    }
                right[s->k][0] = 1.0;
                for (int32_t m = s->k - 1; m >= 0; m--)
                    for (int64_t a = 0; a < s->ranks[m]; a++) {
                        double acc = 0;
                        for (int64_t b = 0; b < s->ranks[m + 1]; b++) acc += G_AT(m, a, b) * right[m + 1][b];
                        right[m][a] = acc;
                    }
                for (int32_t m = 0; m < s->k; m++)
                    for (int64_t a = 0; a < s->ranks[m]; a++)
                        for (int64_t b = 0; b < s->ranks[m + 1]; b++)
                            grads[m][(((t * s->row_shape[m] + dig[m]) * s->ranks[m] + a) * s->col_shape[m] + jd[m]) *
                                         s->ranks[m + 1] + b] += g[bi * s->dim + j] * left[m][a] * right[m + 1][b];
#undef G_AT
            }
        }
    }
}

/* Relative L2 difference ||got - ref|| / ||ref|| of a float vector against a double
 * reference (the absolute difference when ref is all zero). */
static inline double test_rel_diff(const float *got, const double *ref, int64_t n) {
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        num += (got[i] - ref[i]) * (got[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

/* A layer shape from k row and column modes, uniform rank r (capped), p terms. */
static inline struct fpd_layer_shape test_make_shape(int32_t k, int64_t rows, const int64_t *n, const int64_t *d,
                                                     int64_t r, int64_t p) {
    struct fpd_layer_shape s;
    memset(&s, 0, sizeof s);
    s.k = k;
    s.rows = rows;
    s.terms = p;
    s.dim = 1;
    for (int32_t m = 0; m < k; m++) {
        s.row_shape[m] = n[m];
        s.col_shape[m] = d[m];
        s.dim *= d[m];
    }
    fpd_layer_shape_set_rank(&s, r);
    return s;
}

/* FBGEMM's fused row-wise quantization, written here from its reference kernels
 * (fbgemm/src/QuantUtils.cc, FloatOrHalfToFused8BitRowwiseQuantizedSBFloatRef and
 * FloatOrHalfToFusedNBitRowwiseQuantizedSBHalfRef with bit_rate 4; F16 through the
 * compiler's _Float16), independent of lib/quant.c. bits 8: out[dim + 8] = codes, F32
 * scale, F32 bias; bits 4: out[(dim + 1) / 2 + 4] = two codes a byte (even column low),
 * F16 scale, F16 bias. */
__extension__ typedef _Float16 test_f16;
static inline void test_rowwise_ref_quantize(int bits, const float *x, int dim, unsigned char *out) {
    float mn = x[0], mx = x[0];
    for (int j = 1; j < dim; j++) {
        mn = x[j] < mn ? x[j] : mn;
        mx = x[j] > mx ? x[j] : mx;
    }
    if (bits == 8) {
        float range = mx - mn, scale = range / 255.0f, bias = mn, inv = 255.0f / (range + 1e-8f);
        for (int j = 0; j < dim; j++) out[j] = (unsigned char)lrintf((x[j] - mn) * inv);
        memcpy(out + dim, &scale, 4);
        memcpy(out + dim + 4, &bias, 4);
        return;
    }
    test_f16 mn16 = (test_f16)mn;
    mn = (float)mn16;
    float range = mx - mn;
    float scale = range == 0 ? 1.0f : range / 15.0f;
    test_f16 sc16 = (test_f16)scale;
    scale = (float)sc16;
    if (scale == 0) scale = 1.0f;
    float inv = 1.0f / scale;
    if (isinf(inv)) scale = inv = 1.0f;
    sc16 = (test_f16)scale;
    int nb = (dim + 1) / 2;
    memset(out, 0, (size_t)nb);
    for (int j = 0; j < dim; j++) {
        long q = lrintf((x[j] - mn) * inv);
        q = q < 0 ? 0 : q > 15 ? 15 : q;
        if (j % 2 == 0) out[j / 2] = (unsigned char)q;
        else out[j / 2] |= (unsigned char)(q << 4);
    }
    memcpy(out + nb, &sc16, 2);
    memcpy(out + nb + 2, &mn16, 2);
}

/* The value of column j of a row quantized as above: code * scale + bias. */
static inline float test_rowwise_ref_value(int bits, const unsigned char *q, int dim, int j) {
    if (bits == 8) {
        float sb[2];
        memcpy(sb, q + dim, 8);
        return (float)q[j] * sb[0] + sb[1];
    }
    int nb = (dim + 1) / 2;
    test_f16 sb[2];
    memcpy(sb, q + nb, 4);
    int code = (q[j / 2] >> (4 * (j % 2))) & 15;
    return (float)code * (float)sb[0] + (float)sb[1];
}

#endif
