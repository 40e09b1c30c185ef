/*
 * test-free.c - free coordinates per row (fpd_layer_set_free_coords; row i is
 * FPD(i) + E[i] P): look-ups, reconstruction, the engine's pooled forward,
 * backward (dE, dP) and optimizer steps, against references written here from
 * the definition (the naive FPD row of tests/test-util.h plus E[i] P in double,
 * the gradient by the definition and by central differences, the optimizers'
 * closed forms).
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "formats/fpd-formats.h"
#include "heuristics/fpd-heuristics.h"
#include "lib/fpd-impl.h"
#include "lib/free-round-impl.h"
#include "tests/test-util.h"

#include <jansson.h>

/* A k = 3 layer of 200 rows, D = 12, with a row permutation when perm, and c free
 * coordinates with random E and P. */
static struct fpd_layer *free_layer(int64_t c, bool perm, uint64_t seed) {
    const int64_t n[3] = {4, 6, 9}, d[3] = {2, 3, 2};
    struct fpd_layer_shape s = test_make_shape(3, 200, n, d, 3, 2);
    struct fpd_layer *l = NULL;
    struct fpd_error err;
    cr_assert(eq(int, fpd_layer_init(&s, &l, &err), FPD_STATUS_OK), "%s", err.msg);
    test_fill_random(l, seed, 0.6);
    if (perm) {
        int64_t padded = 4 * 6 * 9, *all = malloc((size_t)padded * sizeof(int64_t));
        for (int64_t i = 0; i < padded; i++) all[i] = i;
        for (int64_t i = padded - 1; i > 0; i--) {
            int64_t j = (int64_t)(test_rand_u64(&seed) % (uint64_t)(i + 1)), x = all[i];
            all[i] = all[j];
            all[j] = x;
        }
        cr_assert(eq(int, fpd_layer_set_row_perm(l, all, &err), FPD_STATUS_OK), "%s", err.msg);
        free(all);
    }
    if (c > 0) {
        float *e = malloc((size_t)(200 * c) * sizeof(float)), *p = malloc((size_t)(c * 12) * sizeof(float));
        for (int64_t q = 0; q < 200 * c; q++) e[q] = (float)test_rand_sym(&seed);
        for (int64_t q = 0; q < c * 12; q++) p[q] = (float)test_rand_sym(&seed);
        cr_assert(eq(int, fpd_layer_set_free_coords(l, c, e, p, &err), FPD_STATUS_OK), "%s", err.msg);
        free(e);
        free(p);
    }
    return l;
}

/* Original row id by the definition: the naive FPD row plus E[id] P, in double. */
static void ref_row(const struct fpd_layer *l, int64_t id, double *out) {
    const int64_t *perm = fpd_layer_row_perm(l);
    const int64_t D = fpd_layer_get_shape(l)->dim, c = fpd_layer_get_free_coords(l);
    test_naive_row(l, perm ? perm[id] : id, out);
    const float *E = fpd_layer_get_free_e_const(l), *P = fpd_layer_get_free_p_const(l);
    for (int64_t j = 0; j < D; j++)
        for (int64_t q = 0; q < c; q++) out[j] += (double)E[id * c + q] * P[q * D + j];
}

Test(free, lookup_and_reconstruct_add_e_p) {
    for (int perm = 0; perm <= 1; perm++)
        for (int64_t c = 1; c <= 3; c += 2) {
            struct fpd_layer *l = free_layer(c, perm, 11 + (uint64_t)c);
            struct fpd_error err;
            float *rec = malloc(200 * 12 * sizeof(float));
            cr_assert(eq(int, fpd_layer_reconstruct(l, 0, 200, rec, &err), 0), "%s", err.msg);
            int64_t idx[5] = {199, 0, 57, 57, 123};
            float out[5 * 12];
            cr_assert(eq(int, fpd_layer_lookup(l, idx, 5, out, &err), 0), "%s", err.msg);
            double ref[12];
            for (int64_t i = 0; i < 200; i++) {
                ref_row(l, i, ref);
                cr_assert(le(dbl, test_rel_diff(rec + i * 12, ref, 12), 1e-5), "perm %d c %lld row %lld", perm,
                          (long long)c, (long long)i);
            }
            for (int q = 0; q < 5; q++) {
                ref_row(l, idx[q], ref);
                cr_assert(le(dbl, test_rel_diff(out + q * 12, ref, 12), 1e-5));
            }
            /* a clone carries E and P; removing them gives the plain FPD rows */
            struct fpd_layer *cl = NULL;
            cr_assert(eq(int, fpd_layer_clone(l, &cl, &err), 0), "%s", err.msg);
            cr_assert(eq(i64, fpd_layer_get_free_coords(cl), c));
            cr_assert(eq(int, memcmp(fpd_layer_get_free_e_const(cl), fpd_layer_get_free_e_const(l),
                                     (size_t)(200 * c) * sizeof(float)), 0));
            cr_assert(eq(int, memcmp(fpd_layer_get_free_p_const(cl), fpd_layer_get_free_p_const(l),
                                     (size_t)(12 * c) * sizeof(float)), 0));
            cr_assert(eq(i64, fpd_layer_param_count(cl), fpd_layer_shape_params(fpd_layer_get_shape(l)) + c * 212));
            cr_assert(eq(int, fpd_layer_set_free_coords(cl, 0, NULL, NULL, &err), 0));
            cr_assert(eq(i64, fpd_layer_param_count(cl), fpd_layer_shape_params(fpd_layer_get_shape(l))));
            cr_assert(fpd_layer_get_free_e_const(cl) == NULL && fpd_layer_get_free_p_const(cl) == NULL);
            cr_assert(eq(int, fpd_layer_lookup(cl, idx, 5, out, &err), 0));
            const int64_t *pm = fpd_layer_row_perm(cl);
            for (int q = 0; q < 5; q++) {
                test_naive_row(cl, pm ? pm[idx[q]] : idx[q], ref);
                cr_assert(le(dbl, test_rel_diff(out + q * 12, ref, 12), 1e-5));
            }
            fpd_layer_free(cl);
            free(rec);
            fpd_layer_free(l);
        }
}

Test(free, zeros_by_default_and_bad_values_refused) {
    struct fpd_layer *l = free_layer(0, false, 3);
    struct fpd_error err;
    cr_assert(eq(i64, fpd_layer_get_free_coords(l), 0));
    cr_assert(eq(int, fpd_layer_set_free_coords(l, 2, NULL, NULL, &err), 0));
    for (int64_t q = 0; q < 400; q++) cr_assert(eq(flt, fpd_layer_get_free_e_const(l)[q], 0.0f));
    for (int64_t q = 0; q < 24; q++) cr_assert(eq(flt, fpd_layer_get_free_p_const(l)[q], 0.0f));
    cr_assert(eq(int, fpd_layer_set_free_coords(l, 13, NULL, NULL, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(strstr(err.msg, "c = 13") != NULL, "%s", err.msg);
    cr_assert(eq(int, fpd_layer_set_free_coords(l, -1, NULL, NULL, &err), FPD_STATUS_INVALID_ARG));
    float p[12] = {0};
    p[7] = NAN;
    cr_assert(eq(int, fpd_layer_set_free_coords(l, 1, NULL, p, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(strstr(err.msg, "P[0, 7]") != NULL, "%s", err.msg);
    cr_assert(eq(i64, fpd_layer_get_free_coords(l), 2)); /* unchanged on failure */
    /* an engine made before c changes refuses to run */
    struct fpd_engine *e = NULL;
    cr_assert(eq(int, fpd_engine_init(l, NULL, &e, &err), 0), "%s", err.msg);
    cr_assert(eq(int, fpd_layer_set_free_coords(l, 1, NULL, NULL, &err), 0));
    int64_t idx[1] = {3};
    float out[12];
    struct fpd_bag_batch b = {.indices = idx, .n_indices = 1, .mode = FPD_BAG_MODE_NONE, .padding_idx = -1};
    cr_assert(eq(int, fpd_engine_forward(e, &b, out, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(strstr(err.msg, "free coordinates") != NULL, "%s", err.msg);
    cr_assert(eq(int, fpd_engine_step(e, &err), FPD_STATUS_INVALID_ARG));
    fpd_engine_free(e);
    fpd_layer_free(l);
}

/* Batches over 200 rows: SUM with weights and padding, MEAN, NONE. */
static const int64_t g_idx[16] = {5, 17, 17, 0, 199, 42, 5, 0, 100, 101, 17, 3, 150, 150, 64, 7};
static const int64_t g_off[5] = {0, 4, 4, 9, 13};
static float g_wts[16];

static void ref_forward(const struct fpd_layer *l, const struct fpd_bag_batch *b, double *out) {
    const int64_t D = 12, nout = fpd_bag_batch_out_rows(b);
    double row[12];
    memset(out, 0, (size_t)(nout * D) * sizeof(double));
    for (int64_t o = 0; o < nout; o++) {
        int64_t lo = o, hi = o + 1;
        if (b->mode != FPD_BAG_MODE_NONE) {
            lo = b->offsets[o];
            hi = o + 1 < nout ? b->offsets[o + 1] : b->n_indices;
        }
        int64_t cnt = 0;
        for (int64_t i = lo; i < hi; i++) {
            if (b->padding_idx >= 0 && b->indices[i] == b->padding_idx) continue;
            cnt++;
            ref_row(l, b->indices[i], row);
            double w = b->per_sample_weights ? b->per_sample_weights[i] : 1.0;
            for (int64_t j = 0; j < D; j++) out[o * D + j] += w * row[j];
        }
        if (b->mode == FPD_BAG_MODE_MEAN && cnt)
            for (int64_t j = 0; j < D; j++) out[o * D + j] /= (double)cnt;
    }
}

/* An engine with the optimizer kind and step; free_qat < 0: no quantization-aware
 * training, else its kind. */
static struct fpd_engine *engine_qat_kind(struct fpd_layer *l, enum fpd_optimizer_kind kind, double lr,
                                          int32_t threads, int free_qat) {
    struct fpd_engine_params ep = fpd_engine_default_params();
    ep.threads = threads;
    ep.optimizer.kind = kind;
    ep.optimizer.learning_rate = lr;
    ep.free_qat = free_qat >= 0;
    ep.free_qat_kind = free_qat >= 0 ? free_qat : 0;
    struct fpd_engine *e = NULL;
    struct fpd_error err;
    cr_assert(eq(int, fpd_engine_init(l, &ep, &e, &err), 0), "%s", err.msg);
    return e;
}

static struct fpd_engine *engine_kind(struct fpd_layer *l, enum fpd_optimizer_kind kind, double lr, int32_t threads) {
    return engine_qat_kind(l, kind, lr, threads, -1);
}

Test(free, engine_forward_pools_e_p) {
    for (int q = 0; q < 16; q++) g_wts[q] = 0.25f + 0.125f * (float)q;
    struct fpd_layer *l = free_layer(2, true, 21);
    struct fpd_bag_batch bs[] = {
        {.indices = g_idx, .n_indices = 16, .offsets = g_off, .n_bags = 5, .per_sample_weights = g_wts,
         .mode = FPD_BAG_MODE_SUM, .padding_idx = 0},
        {.indices = g_idx, .n_indices = 16, .offsets = g_off, .n_bags = 5, .mode = FPD_BAG_MODE_MEAN, .padding_idx = 0},
        {.indices = g_idx, .n_indices = 16, .mode = FPD_BAG_MODE_NONE, .padding_idx = -1},
    };
    struct fpd_engine *e = engine_kind(l, FPD_OPTIMIZER_KIND_LAZY_ADAM, 1e-3, 1);
    for (size_t bi = 0; bi < 3; bi++) {
        int64_t nout = fpd_bag_batch_out_rows(&bs[bi]);
        float out[16 * 12];
        double ref[16 * 12];
        struct fpd_error err;
        cr_assert(eq(int, fpd_engine_forward(e, &bs[bi], out, &err), 0), "%s", err.msg);
        ref_forward(l, &bs[bi], ref);
        for (int64_t o = 0; o < nout; o++)
            cr_assert(le(dbl, test_rel_diff(out + o * 12, ref + o * 12, 12), 1e-5), "batch %zu out %lld", bi,
                      (long long)o);
        for (int64_t j = 0; bs[bi].mode != FPD_BAG_MODE_NONE && j < 12; j++) cr_assert(eq(flt, out[12 + j], 0.0f));
    }
    fpd_engine_free(e);
    fpd_layer_free(l);
}

static double loss_of(const struct fpd_layer *l, const struct fpd_bag_batch *b, const float *g) {
    const int64_t nout = fpd_bag_batch_out_rows(b);
    double out[16 * 12], s = 0.0;
    ref_forward(l, b, out);
    for (int64_t i = 0; i < nout * 12; i++) s += (double)g[i] * out[i];
    return s;
}

/* dE and dP of the SUM batch g_idx / g_off / g_wts (padding 0) by the definition:
 * entry i in bag o with weight w: dE[id] += w g_o P^T, dP += w E[id]^T g_o (E: the rows
 * the forward used). dE [200, c] and dP [c, 12] zeroed here. */
static void ref_free_grads(const float *E, const float *P, int64_t c, const float *g, double *dE, double *dP) {
    memset(dE, 0, (size_t)(200 * c) * sizeof(double));
    memset(dP, 0, (size_t)(c * 12) * sizeof(double));
    for (int64_t o = 0; o < 5; o++) {
        const int64_t hi = o + 1 < 5 ? g_off[o + 1] : 16;
        for (int64_t i = g_off[o]; i < hi; i++) {
            const int64_t id = g_idx[i];
            if (id == 0) continue;
            for (int64_t q = 0; q < c; q++)
                for (int64_t j = 0; j < 12; j++) {
                    dE[id * c + q] += (double)g_wts[i] * g[o * 12 + j] * P[q * 12 + j];
                    dP[q * 12 + j] += (double)g_wts[i] * E[id * c + q] * g[o * 12 + j];
                }
        }
    }
}

/* One SGD step (learning rate 0.1) of e on l; E must move by -0.1 dE (the F32 E the
 * optimizer holds). Returns l as it was before the step (fpd_layer_free it). */
static struct fpd_layer *sgd_step_moves_e(struct fpd_engine *e, struct fpd_layer *l, const double *dE, int64_t c) {
    struct fpd_layer *before = NULL;
    struct fpd_error err;
    cr_assert(eq(int, fpd_layer_clone(l, &before, NULL), 0));
    cr_assert(eq(int, fpd_engine_step(e, &err), 0), "%s", err.msg);
    for (int64_t x = 0; x < 200 * c; x++)
        cr_assert(epsilon_eq(flt, fpd_layer_get_free_e_const(l)[x],
                             (float)(fpd_layer_get_free_e_const(before)[x] - 0.1 * dE[x]), 1e-5f));
    return before;
}

Test(free, engine_backward_gives_de_dp_by_the_definition) {
    for (int q = 0; q < 16; q++) g_wts[q] = 0.25f + 0.125f * (float)q;
    const int64_t c = 3;
    struct fpd_layer *l = free_layer(c, true, 31);
    const struct fpd_layer_shape *s = fpd_layer_get_shape(l);
    struct fpd_bag_batch b = {.indices = g_idx, .n_indices = 16, .offsets = g_off, .n_bags = 5,
                              .per_sample_weights = g_wts, .mode = FPD_BAG_MODE_SUM, .padding_idx = 0};
    float g[5 * 12], out[5 * 12];
    uint64_t seed = 77;
    for (int i = 0; i < 60; i++) g[i] = (float)test_rand_sym(&seed);
    /* by the definition: entry i in bag o with weight w: dE[id] += w g_o P^T,
     * dP += w E[id]^T g_o; and the cores' gradient as without free coordinates */
    double dE[200 * 3], dP[3 * 12];
    ref_free_grads(fpd_layer_get_free_e_const(l), fpd_layer_get_free_p_const(l), c, g, dE, dP);
    int64_t ent[16], nent = 0;
    float ge[16 * 12];
    for (int64_t o = 0; o < 5; o++) {
        int64_t hi = o + 1 < 5 ? g_off[o + 1] : 16;
        for (int64_t i = g_off[o]; i < hi; i++) {
            const int64_t id = g_idx[i];
            if (id == 0) continue;
            for (int64_t j = 0; j < 12; j++) ge[nent * 12 + j] = g_wts[i] * g[o * 12 + j];
            ent[nent++] = id;
        }
    }
    double *ref[3];
    for (int32_t m = 0; m < 3; m++) ref[m] = calloc((size_t)fpd_layer_shape_core_numel(s, m), sizeof(double));
    test_naive_backward(l, ent, nent, ge, ref);
    struct fpd_engine *e = engine_kind(l, FPD_OPTIMIZER_KIND_SGD, 0.1, 1);
    struct fpd_error err;
    cr_assert(eq(int, fpd_engine_forward(e, &b, out, &err), 0), "%s", err.msg);
    cr_assert(eq(int, fpd_engine_backward(e, &b, g, &err), 0), "%s", err.msg);
    const float *gm;
    const int64_t *sl;
    int64_t nsl;
    for (int32_t m = 0; m < 3; m++) {
        fpd_engine_grad(e, m, &gm, NULL, NULL);
        for (int64_t x = 0; x < fpd_layer_shape_core_numel(s, m); x++)
            cr_assert(le(dbl, fabs(gm[x] - ref[m][x]), 1e-4 * (1.0 + fabs(ref[m][x]))), "core %d", (int)m);
    }
    fpd_engine_grad(e, 3, &gm, &sl, &nsl);
    for (int64_t x = 0; x < 200 * c; x++)
        cr_assert(le(dbl, fabs(gm[x] - dE[x]), 1e-4 * (1.0 + fabs(dE[x]))), "dE[%lld]: %g vs %g", (long long)x,
                  (double)gm[x], dE[x]);
    /* touched rows: the distinct non-padding ids, ascending */
    const int64_t want[] = {3, 5, 7, 17, 42, 64, 100, 101, 150, 199};
    cr_assert(eq(i64, nsl, 10));
    for (int64_t q = 0; q < 10; q++) cr_assert(eq(i64, sl[q], want[q]));
    fpd_engine_grad(e, 4, &gm, &sl, &nsl);
    cr_assert(eq(i64, nsl, c));
    for (int64_t x = 0; x < c * 12; x++)
        cr_assert(le(dbl, fabs(gm[x] - dP[x]), 1e-4 * (1.0 + fabs(dP[x]))), "dP[%lld]", (long long)x);
    /* central differences on E and P (the loss is linear in each: exact up to rounding) */
    fpd_engine_grad(e, 3, &gm, NULL, NULL);
    float *Ew = fpd_layer_get_free_e(l), *Pw = fpd_layer_get_free_p(l);
    const int64_t probe[] = {17 * 3 + 1, 5 * 3, 199 * 3 + 2, 2 * 3};
    for (size_t q = 0; q < 4; q++) {
        const float keep = Ew[probe[q]], h = 0.25f;
        Ew[probe[q]] = keep + h;
        double lp = loss_of(l, &b, g);
        Ew[probe[q]] = keep - h;
        double lm = loss_of(l, &b, g);
        Ew[probe[q]] = keep;
        double fd = (lp - lm) / (2.0 * h);
        cr_assert(le(dbl, fabs(fd - gm[probe[q]]), 1e-4 * (1.0 + fabs(fd))), "E entry %lld: fd %g engine %g",
                  (long long)probe[q], fd, (double)gm[probe[q]]);
    }
    fpd_engine_grad(e, 4, &gm, NULL, NULL);
    for (int64_t x = 0; x < c * 12; x += 5) {
        const float keep = Pw[x], h = 0.25f;
        Pw[x] = keep + h;
        double lp = loss_of(l, &b, g);
        Pw[x] = keep - h;
        double lm = loss_of(l, &b, g);
        Pw[x] = keep;
        double fd = (lp - lm) / (2.0 * h);
        cr_assert(le(dbl, fabs(fd - gm[x]), 1e-4 * (1.0 + fabs(fd))), "P entry %lld", (long long)x);
    }
    /* SGD's closed form: x -= lr g on touched E rows and on P; others unchanged */
    struct fpd_layer *before = sgd_step_moves_e(e, l, dE, c);
    for (int64_t x = 0; x < c * 12; x++)
        cr_assert(epsilon_eq(flt, fpd_layer_get_free_p_const(l)[x],
                             (float)(fpd_layer_get_free_p_const(before)[x] - 0.1 * dP[x]), 1e-5f));
    /* the step cleared the gradient */
    fpd_engine_grad(e, 3, &gm, &sl, &nsl);
    cr_assert(eq(i64, nsl, 0));
    for (int64_t x = 0; x < 200 * c; x++) cr_assert(eq(flt, gm[x], 0.0f));
    fpd_engine_grad(e, 4, &gm, &sl, &nsl);
    cr_assert(eq(i64, nsl, 0));
    for (int64_t x = 0; x < c * 12; x++) cr_assert(eq(flt, gm[x], 0.0f));
    for (int32_t m = 0; m < 3; m++) free(ref[m]);
    fpd_layer_free(before);
    fpd_engine_free(e);
    fpd_layer_free(l);
}

/* One NONE batch of rows {4, 4, 9} with unit output gradients 1 and 2 in the
 * first column: dE[4] = (1 + 1) P[:, 0], dE[9] = 2 P[:, 0]. */
static void step_once(struct fpd_engine *e) {
    int64_t idx[3] = {4, 4, 9};
    float out[36], g[36] = {0};
    g[0] = 1.0f;
    g[12] = 1.0f;
    g[24] = 2.0f;
    struct fpd_bag_batch b = {.indices = idx, .n_indices = 3, .mode = FPD_BAG_MODE_NONE, .padding_idx = -1};
    struct fpd_error err;
    cr_assert(eq(int, fpd_engine_forward(e, &b, out, &err), 0), "%s", err.msg);
    cr_assert(eq(int, fpd_engine_backward(e, &b, g, &err), 0), "%s", err.msg);
    cr_assert(eq(int, fpd_engine_step(e, &err), 0), "%s", err.msg);
}

Test(free, optimizer_closed_forms_on_e_and_p) {
    /* c = 1, E[4] = 0.5, E[9] = -1, P[0, :] = (2, 0.1, ...) */
    for (int kind = 0; kind < FPD_OPTIMIZER_KIND_COUNT; kind++) {
        struct fpd_layer *l = free_layer(0, false, 41);
        float E[200], P[12];
        for (int i = 0; i < 200; i++) E[i] = 0.01f * (float)i;
        E[4] = 0.5f;
        E[9] = -1.0f;
        for (int j = 0; j < 12; j++) P[j] = 0.1f * (float)(j + 1);
        P[0] = 2.0f;
        cr_assert(eq(int, fpd_layer_set_free_coords(l, 1, E, P, NULL), 0));
        struct fpd_engine *e = engine_kind(l, (enum fpd_optimizer_kind)kind, 0.1, 1);
        step_once(e);
        const float *Ea = fpd_layer_get_free_e_const(l), *Pa = fpd_layer_get_free_p_const(l);
        /* dE[4] = 2 * P[0] = 4, dE[9] = 2 * 2 = 4; dP[0, 0] = 2 * 0.5 + 2 * (-1) = -1, dP[0, j>0] = 0 */
        double e4, e9, p0, p1;
        switch (kind) {
        case FPD_OPTIMIZER_KIND_SGD: e4 = 0.5 - 0.4; e9 = -1.0 - 0.4; p0 = 2.0 + 0.1; p1 = 0.2; break;
        case FPD_OPTIMIZER_KIND_ROWWISE_ADAGRAD: /* E rows: s = 16; P's row: s = mean(g^2) = 1/12 */
            e4 = 0.5 - 0.1 * 4.0 / (4.0 + 1e-8);
            e9 = -1.0 - 0.1 * 4.0 / (4.0 + 1e-8);
            p0 = 2.0 + 0.1 * 1.0 / (sqrt(1.0 / 12.0) + 1e-8);
            p1 = 0.2;
            break;
        default: /* Adam's first step: lr sign(g); a zero gradient does not move */
            e4 = 0.5 - 0.1;
            e9 = -1.0 - 0.1;
            p0 = 2.0 + 0.1;
            p1 = 0.2;
            break;
        }
        cr_assert(epsilon_eq(flt, Ea[4], (float)e4, 1e-5f), "kind %d E[4] %g vs %g", kind, (double)Ea[4], e4);
        cr_assert(epsilon_eq(flt, Ea[9], (float)e9, 1e-5f), "kind %d E[9] %g vs %g", kind, (double)Ea[9], e9);
        cr_assert(epsilon_eq(flt, Pa[0], (float)p0, 1e-5f), "kind %d P[0] %g vs %g", kind, (double)Pa[0], p0);
        cr_assert(epsilon_eq(flt, Pa[1], (float)p1, 1e-6f), "kind %d P[1]", kind);
        /* untouched rows of E never move (Adam: their gradient is 0 and so are their moments) */
        for (int i = 0; i < 200; i++)
            if (i != 4 && i != 9) cr_assert(eq(flt, Ea[i], 0.01f * (float)i), "kind %d E[%d]", kind, i);
        fpd_engine_free(e);
        fpd_layer_free(l);
    }
}

/* E steps at learning_rate * free_lr_scale, P at learning_rate * free_proj_lr_scale
 * (0: free_lr_scale's); SGD's closed form, the gradients of step_once (dE[4] = 4,
 * dP[0, 0] = -1); a negative scale is refused. */
Test(free, e_and_p_step_with_their_own_scales) {
    const double es[3] = {2.0, 2.0, 0.0}, ps[3] = {0.5, 0.0, 0.0};
    const double ee[3] = {0.2, 0.2, 0.1}, pe[3] = {0.05, 0.2, 0.1}; /* the steps they give at lr 0.1 */
    for (int q = 0; q < 3; q++) {
        struct fpd_layer *l = free_layer(0, false, 41);
        float E[200] = {0}, P[12];
        E[4] = 0.5f;
        E[9] = -1.0f;
        for (int j = 0; j < 12; j++) P[j] = 0.1f * (float)(j + 1);
        P[0] = 2.0f;
        cr_assert(eq(int, fpd_layer_set_free_coords(l, 1, E, P, NULL), 0));
        struct fpd_engine_params ep = fpd_engine_default_params();
        ep.threads = 1;
        ep.optimizer.kind = FPD_OPTIMIZER_KIND_SGD;
        ep.optimizer.learning_rate = 0.1;
        ep.optimizer.free_lr_scale = es[q];
        ep.optimizer.free_proj_lr_scale = ps[q];
        struct fpd_engine *e = NULL;
        struct fpd_error err;
        cr_assert(eq(int, fpd_engine_init(l, &ep, &e, &err), 0), "%s", err.msg);
        step_once(e);
        const float *Ea = fpd_layer_get_free_e_const(l), *Pa = fpd_layer_get_free_p_const(l);
        cr_assert(epsilon_eq(flt, Ea[4], (float)(0.5 - ee[q] * 4.0), 1e-5f), "case %d E[4] %g", q, (double)Ea[4]);
        cr_assert(epsilon_eq(flt, Pa[0], (float)(2.0 + pe[q] * 1.0), 1e-5f), "case %d P[0] %g", q, (double)Pa[0]);
        fpd_engine_free(e);
        fpd_layer_free(l);
    }
    struct fpd_layer *l = free_layer(0, false, 41);
    struct fpd_engine_params ep = fpd_engine_default_params();
    ep.optimizer.free_proj_lr_scale = -1.0;
    struct fpd_engine *e = NULL;
    struct fpd_error err;
    cr_assert(eq(int, fpd_engine_init(l, &ep, &e, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(strstr(err.msg, "free_proj_lr_scale") != NULL, "%s", err.msg);
    cr_assert(eq(ptr, e, NULL));
    fpd_layer_free(l);
}

Test(free, grad_and_step_before_any_backward) {
    /* dE's buffer waits for the first backward: asking for it, or an Adam step (which
     * reads every entry's gradient), before one gives zeros and moves nothing */
    for (int kind = 0; kind < FPD_OPTIMIZER_KIND_COUNT; kind++) {
        struct fpd_layer *l = free_layer(2, false, 51), *before = NULL;
        cr_assert(eq(int, fpd_layer_clone(l, &before, NULL), 0));
        struct fpd_engine *e = engine_kind(l, (enum fpd_optimizer_kind)kind, 0.1, 1);
        const float *gm;
        const int64_t *sl;
        int64_t nsl = -1;
        if (kind == 0) {
            fpd_engine_grad(e, 3, &gm, &sl, &nsl);
            cr_assert(gm != NULL);
            cr_assert(eq(i64, nsl, 0));
            for (int64_t x = 0; x < 400; x++) cr_assert(eq(flt, gm[x], 0.0f));
        }
        struct fpd_error err;
        cr_assert(eq(int, fpd_engine_step(e, &err), 0), "%s", err.msg);
        cr_assert(eq(int, memcmp(fpd_layer_get_free_e_const(l), fpd_layer_get_free_e_const(before), 400 * 4), 0));
        cr_assert(eq(int, memcmp(fpd_layer_get_free_p_const(l), fpd_layer_get_free_p_const(before), 24 * 4), 0));
        fpd_engine_free(e);
        fpd_layer_free(before);
        fpd_layer_free(l);
    }
}

Test(free, threads_give_the_same_gradients) {
    /* 5000 distinct rows: the engine splits them over threads (2048 a thread at least) */
    const int64_t n[2] = {80, 80}, d[2] = {4, 2};
    struct fpd_layer_shape s = test_make_shape(2, 6400, n, d, 3, 1);
    struct fpd_layer *l = NULL;
    cr_assert(eq(int, fpd_layer_init(&s, &l, NULL), 0));
    test_fill_random(l, 5, 0.5);
    cr_assert(eq(int, fpd_layer_set_free_coords(l, 2, NULL, NULL, NULL), 0));
    uint64_t seed = 9;
    float *E = fpd_layer_get_free_e(l), *P = fpd_layer_get_free_p(l);
    for (int64_t q = 0; q < 6400 * 2; q++) E[q] = (float)test_rand_sym(&seed);
    for (int64_t q = 0; q < 16; q++) P[q] = (float)test_rand_sym(&seed);
    const int64_t nb = 5000;
    int64_t *idx = malloc((size_t)nb * sizeof(int64_t));
    float *g = malloc((size_t)nb * 8 * sizeof(float)), *out = malloc((size_t)nb * 8 * sizeof(float));
    for (int64_t i = 0; i < nb; i++) idx[i] = (i * 37) % 6400;
    for (int64_t i = 0; i < nb * 8; i++) g[i] = (float)test_rand_sym(&seed);
    struct fpd_bag_batch b = {.indices = idx, .n_indices = nb, .mode = FPD_BAG_MODE_NONE, .padding_idx = -1};
    float *res[2][2];
    for (int t = 0; t < 2; t++) {
        struct fpd_engine *e = engine_kind(l, FPD_OPTIMIZER_KIND_SGD, 0.1, t ? 3 : 1);
        cr_assert(eq(int, fpd_engine_forward(e, &b, out, NULL), 0));
        cr_assert(eq(int, fpd_engine_backward(e, &b, g, NULL), 0));
        for (int q = 0; q < 2; q++) {
            const float *gm;
            fpd_engine_grad(e, 2 + q, &gm, NULL, NULL);
            size_t sz = (size_t)(q ? 16 : 12800) * sizeof(float);
            res[t][q] = malloc(sz);
            memcpy(res[t][q], gm, sz);
        }
        fpd_engine_free(e);
    }
    for (int64_t x = 0; x < 12800; x++) cr_assert(eq(flt, res[0][0][x], res[1][0][x]));
    for (int64_t x = 0; x < 16; x++)
        cr_assert(le(dbl, fabs(res[0][1][x] - res[1][1][x]), 1e-4 * (1.0 + fabs(res[0][1][x]))));
    for (int t = 0; t < 2; t++)
        for (int q = 0; q < 2; q++) free(res[t][q]);
    free(idx);
    free(g);
    free(out);
    fpd_layer_free(l);
}

/* ---------------------------------------------------------------- quantization-aware training */

static struct fpd_engine *engine_qat(struct fpd_layer *l, enum fpd_free_kind kind, int32_t threads) {
    return engine_qat_kind(l, FPD_OPTIMIZER_KIND_SGD, 0.1, threads, (int)kind);
}

/* free_qat: the forward uses E's rows as fpd_layer_quantize_free stores them (the
 * naive rows of that quantized layer, and bit for bit the plain engine's rows of
 * it), dE passes straight through (drow P^T, with the F32 P), dP takes the stored
 * rows (E_q^T drow), and the step moves the F32 E (not rounded), for every kind. */
Test(free, qat_forward_uses_stored_rows_and_backward_is_straight_through) {
    for (int q = 0; q < 16; q++) g_wts[q] = 0.25f + 0.125f * (float)q;
    const int64_t c = 5;
    for (int kind = 0; kind < FPD_FREE_KIND_COUNT; kind++) {
        struct fpd_layer *l = free_layer(c, true, 51), *lq = NULL;
        struct fpd_error err;
        cr_assert(eq(int, fpd_layer_clone(l, &lq, NULL), 0));
        cr_assert(eq(int, fpd_layer_quantize_free(lq, (enum fpd_free_kind)kind, &err), 0), "%s", err.msg);
        const float *E = fpd_layer_get_free_e_const(l), *Eq = fpd_layer_get_free_e_const(lq),
                    *P = fpd_layer_get_free_p_const(l);
        double maxq = 0.0; /* the rounding is not nothing: the test could tell */
        for (int64_t x = 0; x < 200 * c; x++) maxq = fmax(maxq, fabs((double)E[x] - Eq[x]));
        cr_assert(gt(dbl, maxq, kind == FPD_FREE_INT4 || kind == FPD_FREE_INT4_SYM ? 1e-2 : 1e-4), "%s: %g",
                  fpd_free_kind_name((enum fpd_free_kind)kind), maxq);
        struct fpd_bag_batch b = {.indices = g_idx, .n_indices = 16, .offsets = g_off, .n_bags = 5,
                                  .per_sample_weights = g_wts, .mode = FPD_BAG_MODE_SUM, .padding_idx = 0};
        float out[5 * 12], out_plain[5 * 12], out1[5 * 12], g[5 * 12];
        double ref[5 * 12], ref_f32[5 * 12];
        uint64_t seed = 78;
        for (int i = 0; i < 60; i++) g[i] = (float)test_rand_sym(&seed);
        struct fpd_engine *e = engine_qat(l, (enum fpd_free_kind)kind, 1), *e3 = engine_qat(l, (enum fpd_free_kind)kind, 3),
                          *ep = engine_kind(lq, FPD_OPTIMIZER_KIND_SGD, 0.1, 1);
        cr_assert(eq(int, fpd_engine_forward(e, &b, out, &err), 0), "%s", err.msg);
        cr_assert(eq(int, fpd_engine_forward(e3, &b, out1, &err), 0), "%s", err.msg);
        cr_assert(eq(int, fpd_engine_forward(ep, &b, out_plain, &err), 0), "%s", err.msg);
        ref_forward(lq, &b, ref);
        ref_forward(l, &b, ref_f32);
        double off_f32 = 0.0;
        for (int64_t o = 0; o < 5; o++) {
            cr_assert(le(dbl, test_rel_diff(out + o * 12, ref + o * 12, 12), 1e-5), "%s bag %lld",
                      fpd_free_kind_name((enum fpd_free_kind)kind), (long long)o);
            for (int64_t j = 0; j < 12; j++) off_f32 = fmax(off_f32, fabs(out[o * 12 + j] - ref_f32[o * 12 + j]));
        }
        cr_assert(gt(dbl, off_f32, 1e-5), "the forward used the F32 E");
        for (int64_t x = 0; x < 60; x++) {
            cr_assert(eq(flt, out[x], out_plain[x]), "entry %lld: %g vs %g", (long long)x, (double)out[x],
                      (double)out_plain[x]);
            cr_assert(eq(flt, out[x], out1[x]));
        }
        /* backward by the definition, with the stored rows Eq in dP */
        double dE[200 * 5], dP[5 * 12];
        ref_free_grads(Eq, P, c, g, dE, dP);
        cr_assert(eq(int, fpd_engine_backward(e, &b, g, &err), 0), "%s", err.msg);
        cr_assert(eq(int, fpd_engine_backward(e3, &b, g, &err), 0), "%s", err.msg);
        for (int t = 0; t < 2; t++) {
            const float *gm;
            fpd_engine_grad(t ? e3 : e, 3, &gm, NULL, NULL);
            for (int64_t x = 0; x < 200 * c; x++)
                cr_assert(le(dbl, fabs(gm[x] - dE[x]), 1e-4 * (1.0 + fabs(dE[x]))), "dE[%lld]", (long long)x);
            fpd_engine_grad(t ? e3 : e, 4, &gm, NULL, NULL);
            for (int64_t x = 0; x < c * 12; x++)
                cr_assert(le(dbl, fabs(gm[x] - dP[x]), 1e-4 * (1.0 + fabs(dP[x]))), "dP[%lld]: %g vs %g", (long long)x,
                          (double)gm[x], dP[x]);
        }
        /* SGD moves the F32 E by lr dE: E is not rounded by the step */
        fpd_layer_free(sgd_step_moves_e(e, l, dE, c));
        fpd_engine_free(e);
        fpd_engine_free(e3);
        fpd_engine_free(ep);
        fpd_layer_free(lq);
        fpd_layer_free(l);
    }
}

/* The rounding of quantization-aware training (free-round-impl.h: F16 by scaling to its
 * grid, the code for the host and the CUDA engine) against the writers: every kind's
 * bytes (fpd_free_quantize_rows) decoded by the readers' functions, bit for bit, on
 * rows of every magnitude (F16-subnormal scales, ranges near F16's limit), constant
 * and zero rows, rows on the code grid (ties), and rows the writers refuse (NaN, a
 * range beyond F16), which it refuses too. */
Test(free, qat_rounding_is_the_writers_bytes_decoded) {
    uint64_t seed = 2027;
    const int64_t cs[] = {1, 2, 3, 5, 8, 13};
    float x[13], got[13], want[13];
    uint8_t buf[13 + 8];
    int64_t refused = 0, rows = 0, ties = 0;
    for (int kind = 0; kind < FPD_FREE_KIND_COUNT; kind++)
        for (int t = 0; t < 4000; t++) {
            const int64_t c = cs[t % 6];
            const int type = (t / 6) % 8;
            const double mag = pow(10.0, -9.0 + 13.0 * (double)(test_rand_u64(&seed) % 1000) / 1000.0);
            for (int64_t j = 0; j < c; j++) {
                double v = test_rand_sym(&seed);
                switch (type) {
                case 0: x[j] = (float)(mag * v); break;
                case 1: x[j] = 0.0f; break;
                case 2: x[j] = (float)mag; break;
                case 3: { /* max |x| = qmax s with s a power of two (the scale is s exactly), the
                           * other values half-way codes (k + 1/2) s: ties for round-half-even */
                    const int qm = kind == FPD_FREE_INT8_SYM ? 127 : 7;
                    const float sc = ldexpf(1.0f, -(int)(t % 30));
                    x[j] = j == 0 ? (float)qm * sc : ((float)(int)((double)(qm - 1) * v) + 0.5f) * sc;
                    break;
                }
                case 4: x[j] = (float)(j == 0 ? 7e4 * (1.0 + fabs(v)) : v); break; /* beyond F16 */
                case 5: x[j] = (float)(1e-7 * v); break;                         /* F16-subnormal scales */
                case 6: x[j] = j == c / 2 ? NAN : (float)v; break;
                default: x[j] = (float)(65504.0 * 7.0 * v); break;               /* near the largest scale */
                }
            }
            const bool wrote = fpd_free_quantize_rows((enum fpd_free_kind)kind, x, 1, c, buf) < 0;
            const bool rounded = fpd__free_round_row((enum fpd_free_kind)kind, x, c, got);
            cr_assert(eq(int, rounded, wrote), "%s c=%lld type %d: rounded %d, written %d",
                      fpd_free_kind_name((enum fpd_free_kind)kind), (long long)c, type, rounded, wrote);
            if (!wrote) {
                refused++;
                continue;
            }
            rows++;
            if (fpd_free_kind_is_sym((enum fpd_free_kind)kind)) {
                cr_assert(fpd__free_sym_dequantize_row((enum fpd_free_kind)kind, buf, c, want));
                /* a tie: x / scale exactly half-way between two codes (the F16 scale after the codes) */
                const size_t nb = kind == FPD_FREE_INT8_SYM ? (size_t)c : ((size_t)c + 1) / 2;
                const uint16_t h = (uint16_t)(buf[nb] | (buf[nb + 1] << 8));
                float scale;
                fpd_dtype_to_f32(FPD_DTYPE_F16, &h, &scale, 1);
                bool tie = false;
                for (int64_t j = 0; scale > 0.0f && j < c; j++) {
                    const double v = fabs((double)x[j] / (double)scale);
                    tie |= v - floor(v) == 0.5;
                }
                ties += tie;
            } else {
                fpd_rowwise_dequantize_row((enum fpd_rowwise)kind, buf, c, want);
            }
            for (int64_t j = 0; j < c; j++)
                cr_assert(eq(int, memcmp(&got[j], &want[j], sizeof(float)), 0),
                          "%s c=%lld type %d column %lld: %a vs the file's %a (x = %a)",
                          fpd_free_kind_name((enum fpd_free_kind)kind), (long long)c, type, (long long)j,
                          (double)got[j], (double)want[j], (double)x[j]);
        }
    /* the cases were exercised: refusals (NaN, beyond F16), kept rows, and symmetric rows
     * with a quotient exactly half-way (round-half-even decides) */
    cr_assert(gt(i64, refused, 1000));
    cr_assert(gt(i64, rows, 10000));
    cr_assert(gt(i64, ties, 100), "%lld symmetric rows with a tie", (long long)ties);
}

Test(free, qat_refuses_a_bad_kind_and_a_layer_without_free_coordinates) {
    struct fpd_layer *l = free_layer(0, false, 52), *lc = free_layer(2, false, 53);
    struct fpd_engine_params ep = fpd_engine_default_params();
    ep.free_qat = true;
    ep.free_qat_kind = FPD_FREE_INT4_SYM;
    struct fpd_engine *e = NULL;
    struct fpd_error err;
    cr_assert(eq(int, fpd_engine_init(l, &ep, &e, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(strstr(err.msg, "needs a layer with free coordinates") != NULL, "%s", err.msg);
    cr_assert_null(e);
    for (int bad = 0; bad < 2; bad++) {
        ep.free_qat_kind = bad ? -1 : FPD_FREE_KIND_COUNT;
        cr_assert(eq(int, fpd_engine_init(lc, &ep, &e, &err), FPD_STATUS_INVALID_ARG));
        cr_assert(strstr(err.msg, "free_qat_kind") != NULL, "%s", err.msg);
    }
    ep.free_qat = false; /* the kind is not read without free_qat */
    cr_assert(eq(int, fpd_engine_init(lc, &ep, &e, &err), 0), "%s", err.msg);
    fpd_engine_free(e);
    fpd_layer_free(l);
    fpd_layer_free(lc);
}

/* (The CUDA engine's free coordinates are checked against the CPU engine by
 * tests/gpu/gpu-equal.c, emulated here by `make gpu-emu`; tests/cli/test-device.sh
 * trains with them through a CUDA-kind backend object.) */

/* ---------------------------------------------------------------- GMF training */

/* fpd_gmf_train's free_coords on a planted model: 250 users (the last 10 without
 * positives) and 120 items in 4 clusters, a user liking 2/3 of its cluster's items. */
Test(free, gmf_training_attaches_and_trains_free_coordinates) {
    const int64_t NU = 250, NI = 120, D = 8, C = 2;
    int64_t *users = malloc((size_t)(NU * NI) * sizeof(int64_t)), *items = malloc((size_t)(NU * NI) * sizeof(int64_t));
    int64_t n = 0;
    uint64_t seed = 99;
    for (int64_t u = 0; u < 240; u++)
        for (int64_t i = 0; i < NI; i++)
            if (i % 4 == u % 4 && test_rand_u64(&seed) % 3 != 0) {
                users[n] = u;
                items[n++] = i;
            }
    const int64_t nu[] = {10, 5, 5}, ni[] = {6, 5, 4}, d[] = {2, 2, 2};
    struct fpd_layer_shape su = test_make_shape(3, NU, nu, d, 4, 1), si = test_make_shape(3, NI, ni, d, 4, 1);
    struct fpd_init_params ip = {FPD_INIT_KIND_NORMAL, 0.1, 5};
    struct fpd_layer *lu = NULL, *li = NULL;
    struct fpd_error err;
    cr_assert(fpd_init(&su, &ip, &lu, &err) == 0 && fpd_init(&si, &ip, &li, &err) == 0, "%s", err.msg);
    float w[8];
    for (int j = 0; j < 8; j++) w[j] = (float)(0.6 * test_rand_sym(&seed));
    struct fpd_gmf m = {.user = {.layer = lu, .rows = NU, .dim = D}, .item = {.layer = li, .rows = NI, .dim = D}, .weight = w};
    /* epochs 0: attached with E = 0 (the rows are the FPD rows exactly) and P with orthonormal rows */
    float before[8 * 8];
    int64_t probe[8] = {0, 1, 17, 100, 239, 240, 245, 249};
    cr_assert(eq(int, fpd_layer_lookup(lu, probe, 8, before, &err), 0));
    struct fpd_gmf_train_params tp = fpd_gmf_train_default_params();
    tp.epochs = 0;
    tp.free_coords = C;
    tp.seed = 3;
    cr_assert(eq(int, fpd_gmf_train(&m, users, items, n, &tp, NULL, &err), 0), "%s", err.msg);
    for (int q = 0; q < 2; q++) {
        const struct fpd_layer *l = q ? li : lu;
        const int64_t rows = q ? NI : NU;
        cr_assert(eq(i64, fpd_layer_get_free_coords(l), C));
        for (int64_t x = 0; x < rows * C; x++) cr_assert(eq(flt, fpd_layer_get_free_e_const(l)[x], 0.0f));
        /* P P^T = I_c, and the same P in both tables */
        const float *P = fpd_layer_get_free_p_const(l);
        for (int64_t a = 0; a < C; a++)
            for (int64_t b = 0; b < C; b++) {
                double dot = 0.0;
                for (int64_t j = 0; j < D; j++) dot += (double)P[a * D + j] * P[b * D + j];
                cr_assert(epsilon_eq(dbl, dot, a == b ? 1.0 : 0.0, 1e-6), "(P P^T)[%lld, %lld] = %g", (long long)a,
                          (long long)b, dot);
            }
        cr_assert(eq(int, memcmp(P, fpd_layer_get_free_p_const(lu), (size_t)(C * D) * sizeof(float)), 0));
    }
    float after[8 * 8];
    cr_assert(eq(int, fpd_layer_lookup(lu, probe, 8, after, &err), 0));
    cr_assert(eq(int, memcmp(before, after, sizeof before), 0));
    /* training: E moves on the rows the data touches, never on users without positives,
     * and the model learns the planted clusters */
    tp.epochs = 15;
    tp.batch_size = 128;
    tp.learning_rate = 2e-2;
    cr_assert(eq(int, fpd_gmf_train(&m, users, items, n, &tp, NULL, &err), 0), "%s", err.msg);
    const float *E = fpd_layer_get_free_e_const(lu);
    for (int64_t u = 240; u < NU; u++)
        for (int64_t q = 0; q < C; q++) cr_assert(eq(flt, E[u * C + q], 0.0f), "user %lld without positives", (long long)u);
    int64_t moved = 0;
    for (int64_t u = 0; u < 240; u++) moved += E[u * C] != 0.0f;
    cr_assert(eq(i64, moved, 240));
    /* held-in ranking: each user's first positive against 19 items of other clusters */
    int64_t tu[240], tc[240 * 20];
    for (int64_t u = 0; u < 240; u++) {
        tu[u] = u;
        tc[u * 20] = u % 4; /* item u % 4 is in the user's cluster */
        for (int c = 1; c < 20; c++) tc[u * 20 + c] = (u % 4 + 1 + (c % 3)) % 4 + 4 * c;
    }
    struct fpd_rank_metrics rm;
    cr_assert(eq(int, fpd_gmf_rank(&m, tu, tc, 240, 20, 5, &rm, NULL, &err), 0), "%s", err.msg);
    cr_assert(ge(dbl, rm.hr, 0.9), "HR@5 %g", rm.hr);
    /* P stays fixed with free_proj_fixed (case 0), steps at free_proj_learning_rate when
     * set (1: 1e-2), else at the cores' step (2: 1e-30, so it does not move in float);
     * E moves at the rows' step in all three */
    for (int q = 0; q < 3; q++) {
        float p0[2 * 8], e0[250 * 2];
        memcpy(p0, fpd_layer_get_free_p_const(lu), sizeof p0);
        memcpy(e0, fpd_layer_get_free_e_const(lu), sizeof e0);
        tp.epochs = 1;
        tp.core_learning_rate = 1e-30;
        tp.free_proj_learning_rate = q == 1 ? 1e-2 : 0.0;
        tp.free_proj_fixed = q == 0;
        cr_assert(eq(int, fpd_gmf_train(&m, users, items, n, &tp, NULL, &err), 0), "%s", err.msg);
        double dp = 0.0, de = 0.0;
        for (int x = 0; x < 2 * 8; x++) dp = fmax(dp, fabs(fpd_layer_get_free_p_const(lu)[x] - p0[x]));
        for (int x = 0; x < 250 * 2; x++) de = fmax(de, fabs(fpd_layer_get_free_e_const(lu)[x] - e0[x]));
        cr_assert(de > 1e-3, "case %d: E moved by %g", q, de);
        if (q == 1) cr_assert(dp > 1e-3, "P moved by %g at its own step", dp);
        else cr_assert(eq(dbl, dp, 0.0), "case %d: P moved by %g", q, dp);
    }
    tp.core_learning_rate = 0.0;
    tp.free_proj_learning_rate = 0.0;
    tp.free_proj_fixed = false;
    /* c above the dimension is refused */
    tp.free_coords = D + 1;
    fpd_layer_set_free_coords(lu, 0, NULL, NULL, NULL);
    cr_assert(eq(int, fpd_gmf_train(&m, users, items, n, &tp, NULL, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(strstr(err.msg, "free_coords 9") != NULL, "%s", err.msg);
    fpd_layer_free(lu);
    fpd_layer_free(li);
    free(users);
    free(items);
}

/* fpd_gmf_train's free_qat reaches the engines: with every step too small to move a
 * float (learning rates 1e-30), an epoch's mean loss with QAT on the F32 E is bit for
 * bit the loss of the same epoch without QAT on E rounded by fpd_layer_quantize_free,
 * and not the loss on the F32 E. */
Test(free, gmf_training_with_qat_sees_the_stored_rows) {
    const int64_t NU = 120, NI = 80, D = 8, C = 4;
    int64_t *users = malloc((size_t)(NU * NI) * sizeof(int64_t)), *items = malloc((size_t)(NU * NI) * sizeof(int64_t));
    int64_t n = 0;
    uint64_t seed = 7;
    for (int64_t u = 0; u < NU; u++)
        for (int64_t i = 0; i < NI; i++)
            if (i % 4 == u % 4 && test_rand_u64(&seed) % 2 == 0) {
                users[n] = u;
                items[n++] = i;
            }
    const int64_t nu[] = {6, 5, 4}, ni[] = {5, 4, 4}, d[] = {2, 2, 2};
    struct fpd_layer_shape su = test_make_shape(3, NU, nu, d, 2, 1), si = test_make_shape(3, NI, ni, d, 2, 1);
    struct fpd_init_params ip = {FPD_INIT_KIND_NORMAL, 0.1, 5};
    struct fpd_layer *l[2] = {NULL, NULL};
    struct fpd_error err;
    cr_assert(fpd_init(&su, &ip, &l[0], &err) == 0 && fpd_init(&si, &ip, &l[1], &err) == 0, "%s", err.msg);
    float w[8];
    for (int j = 0; j < 8; j++) w[j] = (float)(0.6 * test_rand_sym(&seed));
    struct fpd_gmf_train_params tp = fpd_gmf_train_default_params();
    tp.epochs = 0;
    tp.free_coords = C;
    tp.free_init_scale = 0.3;
    tp.seed = 3;
    struct fpd_gmf m = {.user = {.layer = l[0], .rows = NU, .dim = D}, .item = {.layer = l[1], .rows = NI, .dim = D},
                        .weight = w};
    cr_assert(eq(int, fpd_gmf_train(&m, users, items, n, &tp, NULL, &err), 0), "%s", err.msg);
    tp.epochs = 1;
    tp.batch_size = 50;
    tp.learning_rate = 1e-30;
    tp.core_learning_rate = 1e-30;
    for (int kind = 0; kind < FPD_FREE_KIND_COUNT; kind++) {
        double loss[3];
        for (int run = 0; run < 3; run++) { /* 0: QAT on F32 E, 1: plain on rounded E, 2: plain on F32 E */
            struct fpd_layer *c[2];
            float wc[8];
            memcpy(wc, w, sizeof wc);
            for (int t = 0; t < 2; t++) {
                cr_assert(eq(int, fpd_layer_clone(l[t], &c[t], NULL), 0));
                if (run == 1)
                    cr_assert(eq(int, fpd_layer_quantize_free(c[t], (enum fpd_free_kind)kind, &err), 0), "%s", err.msg);
            }
            struct fpd_gmf mc = {.user = {.layer = c[0], .rows = NU, .dim = D},
                                 .item = {.layer = c[1], .rows = NI, .dim = D}, .weight = wc};
            tp.free_qat = run == 0;
            tp.free_qat_kind = kind;
            cr_assert(eq(int, fpd_gmf_train(&mc, users, items, n, &tp, &loss[run], &err), 0), "%s", err.msg);
            if (run == 0) /* E stays F32: the steps did not round it */
                cr_assert(eq(int, memcmp(fpd_layer_get_free_e_const(c[0]), fpd_layer_get_free_e_const(l[0]),
                                         (size_t)(NU * C) * sizeof(float)), 0));
            fpd_layer_free(c[0]);
            fpd_layer_free(c[1]);
        }
        cr_assert(eq(dbl, loss[0], loss[1]), "%s: QAT %.17g, rounded E %.17g", fpd_free_kind_name((enum fpd_free_kind)kind),
                  loss[0], loss[1]);
        cr_assert(ne(dbl, loss[0], loss[2]), "%s: QAT's loss is the F32 E's", fpd_free_kind_name((enum fpd_free_kind)kind));
    }
    fpd_layer_free(l[0]);
    fpd_layer_free(l[1]);
    free(users);
    free(items);
}

/* free_init_scale: E starts ~ N(0, s^2), and the free part E[i] P of a row has the
 * norm of E[i] (P has orthonormal rows), measured over all rows; the FPD part is unchanged;
 * a negative or non-finite scale is refused by both trainers. */
Test(free, training_from_scratch_draws_e_with_free_init_scale) {
    const int64_t NU = 400, NI = 300, D = 8, C = 4;
    const double S = 0.05;
    const int64_t nu[] = {10, 8, 5}, ni[] = {10, 6, 5}, d[] = {2, 2, 2};
    struct fpd_layer_shape su = test_make_shape(3, NU, nu, d, 2, 1), si = test_make_shape(3, NI, ni, d, 2, 1);
    struct fpd_init_params ip = {FPD_INIT_KIND_NORMAL, 0.1, 5};
    struct fpd_layer *lu = NULL, *li = NULL;
    struct fpd_error err;
    cr_assert(fpd_init(&su, &ip, &lu, &err) == 0 && fpd_init(&si, &ip, &li, &err) == 0, "%s", err.msg);
    float w[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    struct fpd_gmf m = {.user = {.layer = lu, .rows = NU, .dim = D}, .item = {.layer = li, .rows = NI, .dim = D}, .weight = w};
    int64_t users[2] = {0, 1}, items[2] = {0, 1};
    struct fpd_gmf_train_params tp = fpd_gmf_train_default_params();
    tp.epochs = 0;
    tp.free_coords = C;
    tp.free_init_scale = -1.0;
    cr_assert(eq(int, fpd_gmf_train(&m, users, items, 2, &tp, NULL, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(strstr(err.msg, "free_init_scale -1") != NULL, "%s", err.msg);
    tp.free_init_scale = NAN;
    cr_assert(eq(int, fpd_gmf_train(&m, users, items, 2, &tp, NULL, &err), FPD_STATUS_INVALID_ARG));
    tp.free_init_scale = S;
    tp.free_proj_learning_rate = -1e-3;
    cr_assert(eq(int, fpd_gmf_train(&m, users, items, 2, &tp, NULL, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(strstr(err.msg, "-0.001") != NULL, "%s", err.msg);
    tp.free_proj_learning_rate = 0.0;
    cr_assert(eq(i64, fpd_layer_get_free_coords(lu), 0)); /* nothing attached by a refused call */
    cr_assert(eq(int, fpd_gmf_train(&m, users, items, 2, &tp, NULL, &err), 0), "%s", err.msg);
    for (int q = 0; q < 2; q++) {
        const struct fpd_layer *l = q ? li : lu;
        const int64_t rows = q ? NI : NU;
        const float *E = fpd_layer_get_free_e_const(l), *P = fpd_layer_get_free_p_const(l);
        double se = 0.0, sr = 0.0;
        for (int64_t x = 0; x < rows * C; x++) se += (double)E[x] * E[x];
        for (int64_t i = 0; i < rows; i++) /* the free part of row i by the definition */
            for (int64_t j = 0; j < D; j++) {
                double v = 0.0;
                for (int64_t a = 0; a < C; a++) v += (double)E[i * C + a] * P[a * D + j];
                sr += v * v;
            }
        se /= (double)(rows * C);
        sr /= (double)(rows * D);
        /* rows * C >= 1200 draws: the sample variance is within 15% of S^2 with
         * overwhelming probability; P has orthonormal rows, so |E[i] P| = |E[i]|: the
         * free part's squared norms sum to E's (the free part is a dense d = c table) */
        cr_assert(se > 0.85 * S * S && se < 1.15 * S * S, "E's mean square %g, s^2 = %g", se, S * S);
        cr_assert(epsilon_eq(dbl, sr * (double)D, se * (double)C, 1e-5 * se * (double)C),
                  "sum |E P|^2 %g vs sum |E|^2 %g", sr * (double)(rows * D), se * (double)(rows * C));
    }
    struct fpd_ncf nm = {.kind = FPD_NCF_KIND_GMF, .mf_user = m.user, .mf_item = m.item, .weight = w};
    tp.free_init_scale = -1.0;
    cr_assert(eq(int, fpd_ncf_train(&nm, users, items, 2, &tp, NULL, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(strstr(err.msg, "free_init_scale -1") != NULL, "%s", err.msg);
    /* more free coordinates than a table's dimension: refused (P cannot be orthonormal),
     * not looped on; the tables have theirs already, so fresh ones are used */
    struct fpd_layer *lu2 = NULL, *li2 = NULL;
    cr_assert(fpd_init(&su, &ip, &lu2, &err) == 0 && fpd_init(&si, &ip, &li2, &err) == 0, "%s", err.msg);
    nm.mf_user.layer = lu2;
    nm.mf_item.layer = li2;
    tp.free_init_scale = 0.0;
    tp.free_coords = D + 1;
    cr_assert(eq(int, fpd_ncf_train(&nm, users, items, 2, &tp, NULL, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(strstr(err.msg, "9 free coordinates exceed the table's dimension 8") != NULL, "%s", err.msg);
    cr_assert(eq(i64, fpd_layer_get_free_coords(lu2), 0));
    fpd_layer_free(lu2);
    fpd_layer_free(li2);
    fpd_layer_free(lu);
    fpd_layer_free(li);
}

/* ---------------------------------------------------------------- fit */

/* Eigenvalues (descending) and eigenvectors (columns of v, n x n) of the symmetric
 * a [n, n] (destroyed) by cyclic Jacobi rotations (Golub & Van Loan, section 8.5). */
static void jacobi_eig(double *a, int n, double *w, double *v) {
    for (int i = 0; i < n * n; i++) v[i] = (i / n == i % n);
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0.0;
        for (int p = 0; p < n; p++)
            for (int q = p + 1; q < n; q++) off += a[p * n + q] * a[p * n + q];
        if (off < 1e-30) break;
        for (int p = 0; p < n; p++)
            for (int q = p + 1; q < n; q++) {
                if (fabs(a[p * n + q]) < 1e-300) continue;
                double th = (a[q * n + q] - a[p * n + p]) / (2.0 * a[p * n + q]);
                double t = (th >= 0 ? 1.0 : -1.0) / (fabs(th) + sqrt(th * th + 1.0));
                double c = 1.0 / sqrt(t * t + 1.0), s = t * c;
                for (int k = 0; k < n; k++) { /* A = J^T A J */
                    double akp = a[k * n + p], akq = a[k * n + q];
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for (int k = 0; k < n; k++) {
                    double apk = a[p * n + k], aqk = a[q * n + k];
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for (int k = 0; k < n; k++) {
                    double vkp = v[k * n + p], vkq = v[k * n + q];
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
    }
    int *idx = malloc((size_t)n * sizeof(int));
    for (int i = 0; i < n; i++) idx[i] = i;
    for (int i = 0; i < n; i++) /* selection sort, descending */
        for (int j = i + 1; j < n; j++)
            if (a[idx[j] * n + idx[j]] > a[idx[i] * n + idx[i]]) {
                int t = idx[i];
                idx[i] = idx[j];
                idx[j] = t;
            }
    double *vv = malloc((size_t)(n * n) * sizeof(double));
    for (int i = 0; i < n; i++) {
        w[i] = a[idx[i] * n + idx[i]];
        for (int k = 0; k < n; k++) vv[k * n + i] = v[k * n + idx[i]];
    }
    memcpy(v, vv, (size_t)(n * n) * sizeof(double));
    free(vv);
    free(idx);
}

Test(free, fit_takes_the_residuals_top_directions) {
    const int64_t N = 300, D = 10;
    float *W = malloc((size_t)(N * D) * sizeof(float));
    uint64_t seed = 12;
    for (int64_t x = 0; x < N * D; x++) W[x] = (float)test_rand_sym(&seed);
    for (int64_t i = 0; i < N; i++) /* a strong rank-1 part the small TT will not hold alone */
        for (int64_t j = 0; j < D; j++) W[i * D + j] += (float)(2.0 * sin(0.37 * (double)(i * i)) * cos((double)j));
    struct fpd_table_view view = {W, FPD_DTYPE_F32, N, D};
    const int64_t n[2] = {20, 15}, d[2] = {5, 2};
    struct fpd_layer_shape s = test_make_shape(2, N, n, d, 2, 1);
    for (int64_t c = 1; c <= 4; c += 3) {
        struct fpd_fit_params fp = fpd_fit_default_params();
        fp.free_coords = c;
        struct fpd_layer *l = NULL;
        struct fpd_fit_report rep;
        struct fpd_error err;
        cr_assert(eq(int, fpd_fit(&view, &s, &fp, &l, &rep, &err), 0), "%s", err.msg);
        cr_assert(eq(i64, fpd_layer_get_free_coords(l), c));
        /* the residual of the cores alone, by the definition, and its Gram matrix */
        double *R = malloc((size_t)(N * D) * sizeof(double)), G[100] = {0}, ev[10], V[100], row[10];
        const int64_t *perm = fpd_layer_row_perm(l);
        for (int64_t i = 0; i < N; i++) {
            test_naive_row(l, perm ? perm[i] : i, row);
            for (int64_t j = 0; j < D; j++) R[i * D + j] = (double)W[i * D + j] - row[j];
        }
        for (int64_t i = 0; i < N; i++)
            for (int64_t a = 0; a < D; a++)
                for (int64_t b = 0; b < D; b++) G[a * D + b] += R[i * D + a] * R[i * D + b];
        jacobi_eig(G, (int)D, ev, V);
        double disc = 0.0, total = 0.0;
        for (int64_t q = 0; q < D; q++) {
            total += ev[q];
            if (q >= c) disc += ev[q];
        }
        /* the layer's squared error is exactly the discarded part */
        float *rec = malloc((size_t)(N * D) * sizeof(float));
        cr_assert(eq(int, fpd_layer_reconstruct(l, 0, N, rec, &err), 0));
        double se = 0.0, sn = 0.0;
        for (int64_t x = 0; x < N * D; x++) {
            se += ((double)W[x] - rec[x]) * ((double)W[x] - rec[x]);
            sn += (double)W[x] * W[x];
        }
        cr_assert(le(dbl, fabs(se - disc), 1e-4 * total), "c %lld: error %g, discarded %g (of %g)", (long long)c, se,
                  disc, total);
        cr_assert(le(dbl, fabs(rep.rel_error_free - sqrt(se / sn)), 1e-5));
        cr_assert(lt(dbl, rep.rel_error_free, rep.rel_error_final));
        /* E P is R's rank-c truncation R V_c V_c^T, entry by entry */
        const float *E = fpd_layer_get_free_e_const(l), *P = fpd_layer_get_free_p_const(l);
        double maxd = 0.0, maxr = 0.0;
        for (int64_t i = 0; i < N; i++)
            for (int64_t j = 0; j < D; j++) {
                double got = 0.0, want = 0.0;
                for (int64_t q = 0; q < c; q++) got += (double)E[i * c + q] * P[q * D + j];
                for (int64_t q = 0; q < c; q++)
                    for (int64_t a = 0; a < D; a++) want += R[i * D + a] * V[a * D + q] * V[j * D + q];
                maxd = fmax(maxd, fabs(got - want));
                maxr = fmax(maxr, fabs(want));
            }
        cr_assert(le(dbl, maxd, 1e-4 * maxr), "c %lld: E P differs from R V V^T by %g (max %g)", (long long)c, maxd,
                  maxr);
        /* fpd_fit_free_coords on the same layer again: the same discarded sum */
        double disc2;
        cr_assert(eq(int, fpd_fit_free_coords(l, &view, c, &disc2, &err), 0), "%s", err.msg);
        cr_assert(le(dbl, fabs(disc2 - disc), 1e-4 * total));
        cr_assert(eq(int, fpd_fit_free_coords(l, &view, D + 1, &disc2, &err), FPD_STATUS_INVALID_ARG));
        /* finetuning moves E and P with the cores and keeps its best epoch: the
         * layer it leaves has exactly the loss it reports */
        double before, after;
        fp.finetune_epochs = 3;
        fp.learning_rate = 1e-2;
        cr_assert(eq(int, fpd_finetune(l, &view, &fp, &before, &after, &err), 0), "%s", err.msg);
        cr_assert(le(dbl, after, before));
        cr_assert(eq(int, fpd_layer_reconstruct(l, 0, N, rec, &err), 0));
        double se2 = 0.0;
        for (int64_t x = 0; x < N * D; x++) se2 += ((double)W[x] - rec[x]) * ((double)W[x] - rec[x]);
        cr_assert(le(dbl, fabs(se2 / (double)N - after), 1e-4 * after), "layer %g, reported %g", se2 / (double)N,
                  after);
        free(rec);
        free(R);
        fpd_layer_free(l);
    }
    free(W);
}

/* fpd_compress_checkpoint with fit.free_coords = 2 on the GloVe sample (10,000 x 100,
 * r = 8, no ALS or finetune, F32 cores): the file holds free/1 (tensors, shapes,
 * metadata, extension) and verifies; its cores are those of the c = 0 run; its rows
 * are the cores' rows (naive reference) plus E[i] P read from the file; its error is
 * the closed form: the c = 0 residual R's squared norm minus exactly R's top two
 * eigenvalues of R^T R (Jacobi reference); the report counts N c + c D values. */
static json_t *compress_glove_q(const char *out, int64_t c, bool rowwise, enum fpd_status want, struct fpd_error *err) {
    struct fpd_plan_params pp = fpd_plan_default_params();
    pp.rank = 8;
    pp.min_ratio = 0.0;
    struct fpd_compress_params cp = fpd_compress_default_params();
    cp.plan = &pp;
    cp.encoding = FPD_COMPRESS_ENCODING_FPD;
    cp.fit.als_sweeps = 0;
    cp.fit.finetune_epochs = 0;
    cp.fit.free_coords = c;
    cp.recall_queries = 0;
    cp.free_rowwise = rowwise;
    cp.free_kind = FPD_FREE_INT4;
    char *text = NULL;
    cr_assert(eq(int, fpd_compress_checkpoint("samples/glove-10k.safetensors", out, &cp, &text, err), want), "%s",
              err->msg);
    if (want) return NULL;
    json_error_t je;
    json_t *rep = json_loads(text, 0, &je);
    fpd_free(text);
    cr_assert(rep != NULL, "%s", je.text);
    return rep;
}

static json_t *compress_glove(const char *out, int64_t c, enum fpd_status want, struct fpd_error *err) {
    return compress_glove_q(out, c, false, want, err);
}

Test(free, compress_writes_free1_with_the_closed_form_error, .timeout = 120) {
    char dir[] = "/tmp/fpd-free-XXXXXX", out0[64], out2[64], cmd[96];
    cr_assert(mkdtemp(dir) != NULL);
    snprintf(out0, sizeof out0, "%s/c0.safetensors", dir);
    snprintf(out2, sizeof out2, "%s/c2.safetensors", dir);
    const char *T = "word_embeddings.weight";
    const int64_t N = 10000, D = 100, c = 2;
    struct fpd_error err;
    json_t *rep0 = compress_glove(out0, 0, FPD_STATUS_OK, &err), *rep2 = compress_glove(out2, c, FPD_STATUS_OK, &err);
    const json_t *t0 = json_array_get(json_object_get(rep0, "tables"), 0);
    const json_t *t2 = json_array_get(json_object_get(rep2, "tables"), 0);
    struct fpd_safetensors *st0, *st2, *src;
    cr_assert(eq(int, fpd_safetensors_open(out0, &st0, &err), 0), "%s", err.msg);
    cr_assert(eq(int, fpd_safetensors_open(out2, &st2, &err), 0), "%s", err.msg);
    cr_assert(eq(int, fpd_safetensors_open("samples/glove-10k.safetensors", &src, &err), 0), "%s", err.msg);
    const float *W = fpd_safetensors_find(src, T)->data;

    /* the file: free/1 tensors and metadata, verified as a reader checks them */
    char name[96];
    snprintf(name, sizeof name, "%s.fpd.free", T);
    const struct fpd_tensor_info *te = fpd_safetensors_find(st2, name);
    snprintf(name, sizeof name, "%s.fpd.free_proj", T);
    const struct fpd_tensor_info *tp = fpd_safetensors_find(st2, name);
    cr_assert(te && tp);
    cr_assert(te->dtype == FPD_DTYPE_F32 && te->ndim == 2 && te->shape[0] == N && te->shape[1] == c);
    cr_assert(tp->dtype == FPD_DTYPE_F32 && tp->ndim == 2 && tp->shape[0] == c && tp->shape[1] == D);
    cr_assert(fpd_safetensors_find(st0, name) == NULL);
    const char *ext = fpd_safetensors_metadata_get(st2, FPD_META_EXTENSIONS_KEY);
    cr_assert(ext && strcmp(ext, FPD_EXTENSION_FREE) == 0, "fpd.extensions %s", ext ? ext : "(none)");
    cr_assert(fpd_safetensors_metadata_get(st0, FPD_META_EXTENSIONS_KEY) == NULL);
    struct fpd_table_meta meta;
    cr_assert(eq(int, fpd_checkpoint_check_table(st2, T, &meta, &err), 0), "%s", err.msg);
    cr_assert(eq(i64, meta.free_coords, c));
    cr_assert(eq(int, fpd_checkpoint_verify_table(st2, T, true, &err), 0), "%s", err.msg);

    /* the same cores as without free coordinates; rows = cores' rows + E[i] P */
    struct fpd_layer *l0, *l2;
    cr_assert(eq(int, fpd_checkpoint_load_layer(st0, T, &l0, &err), 0), "%s", err.msg);
    cr_assert(eq(int, fpd_checkpoint_load_layer(st2, T, &l2, &err), 0), "%s", err.msg);
    const struct fpd_layer_shape *s = fpd_layer_get_shape(l0);
    for (int32_t m = 0; m < s->k; m++)
        cr_assert(eq(int, memcmp(fpd_layer_core_const(l0, m), fpd_layer_core_const(l2, m),
                                 (size_t)fpd_layer_shape_core_numel(s, m) * sizeof(float)), 0), "core %d", (int)m);
    const float *E = te->data, *P = tp->data;
    double *core_rows = malloc((size_t)(N * D) * sizeof(double)), *want = malloc((size_t)(N * D) * sizeof(double));
    float *rec = malloc((size_t)(N * D) * sizeof(float));
    for (int64_t i = 0; i < N; i++) {
        test_naive_row(l0, i, core_rows + i * D);
        for (int64_t j = 0; j < D; j++) {
            double ep = 0.0;
            for (int64_t q = 0; q < c; q++) ep += (double)E[i * c + q] * P[q * D + j];
            want[i * D + j] = core_rows[i * D + j] + ep;
        }
    }
    cr_assert(eq(int, fpd_layer_reconstruct(l2, 0, N, rec, &err), 0), "%s", err.msg);
    double rd = test_rel_diff(rec, want, N * D);
    cr_assert(le(dbl, rd, 1e-6), "reconstruction vs cores + E P: %g", rd);

    /* the closed form: ||R||^2 minus R's top c eigenvalues of R^T R (R: the c = 0 residual) */
    double *G = calloc((size_t)(D * D), sizeof(double)), *V = malloc((size_t)(D * D) * sizeof(double)), ev[100];
    double rr = 0.0, ww = 0.0;
    for (int64_t i = 0; i < N; i++) {
        double r[100];
        for (int64_t j = 0; j < D; j++) {
            r[j] = (double)W[i * D + j] - core_rows[i * D + j];
            rr += r[j] * r[j];
            ww += (double)W[i * D + j] * W[i * D + j];
        }
        for (int64_t a = 0; a < D; a++)
            for (int64_t b = 0; b < D; b++) G[a * D + b] += r[a] * r[b];
    }
    jacobi_eig(G, (int)D, ev, V);
    const double closed = sqrt((rr - ev[0] - ev[1]) / ww), rel0 = sqrt(rr / ww);
    const double got2 = json_real_value(json_object_get(t2, "rel_error"));
    const double got0 = json_real_value(json_object_get(t0, "rel_error"));
    cr_assert(le(dbl, fabs(got0 - rel0), 1e-5 * rel0), "c = 0: report %.8f, definition %.8f", got0, rel0);
    cr_assert(le(dbl, fabs(got2 - closed), 1e-5 * closed), "c = 2: report %.8f, closed form %.8f", got2, closed);
    cr_assert(lt(dbl, got2, got0));
    cr_assert(le(dbl, fabs(json_real_value(json_object_get(t2, "rel_error_without_free")) - rel0), 1e-5 * rel0));

    /* the report counts E and P: N c + c D values of 4 bytes, in bytes_after and params */
    cr_assert(eq(i64, json_integer_value(json_object_get(t2, "free_coords")), c));
    cr_assert(eq(i64, json_integer_value(json_object_get(t0, "free_coords")), 0));
    cr_assert(eq(i64, json_integer_value(json_object_get(t2, "free_params")), N * c + c * D));
    cr_assert(eq(i64, json_integer_value(json_object_get(t2, "bytes_after")),
                 json_integer_value(json_object_get(t0, "bytes_after")) + (N * c + c * D) * 4));
    cr_assert(eq(i64, json_integer_value(json_object_get(t2, "params")), fpd_layer_param_count(l2)));
    cr_assert(eq(sz, (size_t)json_integer_value(json_object_get(t2, "bytes_after")),
                 te->nbytes + tp->nbytes + (size_t)json_integer_value(json_object_get(t0, "bytes_after"))));
    cr_assert(ieee_ulp_eq(dbl, json_real_value(json_object_get(t2, "ratio")),
                          (double)(N * D * 4) / (double)json_integer_value(json_object_get(t2, "bytes_after")), 4));

    /* c above the dimension: CONFIG naming the table, nothing written; c < 0: INVALID_ARG */
    char out3[64];
    snprintf(out3, sizeof out3, "%s/c101.safetensors", dir);
    compress_glove(out3, D + 1, FPD_STATUS_CONFIG, &err);
    cr_assert(strstr(err.msg, "tensor 'word_embeddings.weight' has dimension 100; 101 free coordinates") != NULL,
              "%s", err.msg);
    cr_assert(access(out3, F_OK) != 0);
    compress_glove(out3, -1, FPD_STATUS_INVALID_ARG, &err);

    free(G);
    free(V);
    free(rec);
    free(want);
    free(core_rows);
    fpd_layer_free(l0);
    fpd_layer_free(l2);
    fpd_safetensors_free(st0);
    fpd_safetensors_free(st2);
    fpd_safetensors_free(src);
    json_decref(rep0);
    json_decref(rep2);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert(eq(int, system(cmd), 0));
}

/* free_rowwise (format free-rowwise/1): E written as int4 rows, the report's error that
 * of the file (the reader's rows against the GloVe table, in double), its sizes the
 * stored bytes; the same cores as with F32 E. */
Test(free, compress_stores_int4_e_and_reports_the_stored_error, .timeout = 120) {
    char dir[] = "/tmp/fpd-free-XXXXXX", outf[64], outq[64], cmd[96];
    cr_assert(mkdtemp(dir) != NULL);
    snprintf(outf, sizeof outf, "%s/f.safetensors", dir);
    snprintf(outq, sizeof outq, "%s/q.safetensors", dir);
    const char *T = "word_embeddings.weight";
    const int64_t N = 10000, D = 100, c = 8;
    struct fpd_error err;
    json_t *repf = compress_glove_q(outf, c, false, FPD_STATUS_OK, &err);
    json_t *repq = compress_glove_q(outq, c, true, FPD_STATUS_OK, &err);
    const json_t *tf = json_array_get(json_object_get(repf, "tables"), 0);
    const json_t *tq = json_array_get(json_object_get(repq, "tables"), 0);
    struct fpd_safetensors *stf, *stq, *src;
    cr_assert(eq(int, fpd_safetensors_open(outf, &stf, &err), 0), "%s", err.msg);
    cr_assert(eq(int, fpd_safetensors_open(outq, &stq, &err), 0), "%s", err.msg);
    cr_assert(eq(int, fpd_safetensors_open("samples/glove-10k.safetensors", &src, &err), 0), "%s", err.msg);
    const float *W = fpd_safetensors_find(src, T)->data;
    char name[96];
    snprintf(name, sizeof name, "%s.fpd.free", T);
    const struct fpd_tensor_info *te = fpd_safetensors_find(stq, name);
    cr_assert(te && te->dtype == FPD_DTYPE_U8 && te->shape[0] == N && te->shape[1] == c / 2 + 4);
    cr_assert(eq(str, (char *)fpd_safetensors_metadata_get(stq, FPD_META_EXTENSIONS_KEY), "free/1,free-rowwise/1"));
    cr_assert(eq(str, (char *)json_string_value(json_object_get(tq, "free_dtype")), "int4"));
    cr_assert(eq(str, (char *)json_string_value(json_object_get(tf, "free_dtype")), "F32"));
    /* sizes: E's rows of c/2 + 4 bytes, P's c D floats; the cores as with F32 E */
    const int64_t e_bytes = N * (c / 2 + 4), p_bytes = c * D * 4;
    cr_assert(eq(i64, json_integer_value(json_object_get(tq, "free_bytes")), e_bytes + p_bytes));
    cr_assert(eq(i64, json_integer_value(json_object_get(tf, "free_bytes")), N * c * 4 + p_bytes));
    cr_assert(eq(i64, json_integer_value(json_object_get(tq, "bytes_after")),
                 json_integer_value(json_object_get(tf, "bytes_after")) - N * c * 4 + e_bytes));
    struct fpd_layer *lf, *lq;
    cr_assert(eq(int, fpd_checkpoint_load_layer(stf, T, &lf, &err), 0), "%s", err.msg);
    cr_assert(eq(int, fpd_checkpoint_load_layer(stq, T, &lq, &err), 0), "%s", err.msg);
    const struct fpd_layer_shape *s = fpd_layer_get_shape(lf);
    for (int32_t m = 0; m < s->k; m++)
        cr_assert(eq(int, memcmp(fpd_layer_core_const(lf, m), fpd_layer_core_const(lq, m),
                                 (size_t)fpd_layer_shape_core_numel(s, m) * sizeof(float)), 0), "core %d", (int)m);
    /* the report's error is that of the stored (int4) table */
    float *rec = malloc((size_t)(N * D) * sizeof(float));
    double rel[2];
    struct fpd_layer *ls[2] = {lf, lq};
    for (int q = 0; q < 2; q++) {
        cr_assert(eq(int, fpd_layer_reconstruct(ls[q], 0, N, rec, &err), 0), "%s", err.msg);
        double se = 0.0, sw = 0.0;
        for (int64_t x = 0; x < N * D; x++) {
            se += ((double)rec[x] - W[x]) * ((double)rec[x] - W[x]);
            sw += (double)W[x] * W[x];
        }
        rel[q] = sqrt(se / sw);
    }
    const double gotf = json_real_value(json_object_get(tf, "rel_error")), gotq = json_real_value(json_object_get(tq, "rel_error"));
    cr_assert(le(dbl, fabs(gotf - rel[0]), 1e-5 * rel[0]), "F32 E: report %.8f, file %.8f", gotf, rel[0]);
    cr_assert(le(dbl, fabs(gotq - rel[1]), 1e-5 * rel[1]), "int4 E: report %.8f, file %.8f", gotq, rel[1]);
    cr_assert(gt(dbl, gotq, gotf), "int4 %.8f vs F32 %.8f: rounding E should cost something", gotq, gotf);
    /* needs free coordinates (a count, or the planner's with a target) */
    char out3[64];
    snprintf(out3, sizeof out3, "%s/bad.safetensors", dir);
    compress_glove_q(out3, 0, true, FPD_STATUS_INVALID_ARG, &err);
    cr_assert(strstr(err.msg, "need free coordinates") != NULL, "%s", err.msg);
    compress_glove_q(out3, FPD_FREE_COORDS_AUTO, true, FPD_STATUS_INVALID_ARG, &err); /* no target */
    cr_assert(strstr(err.msg, "need a target") != NULL, "%s", err.msg);
    cr_assert(access(out3, F_OK) != 0);
    free(rec);
    fpd_layer_free(lf);
    fpd_layer_free(lq);
    fpd_safetensors_free(stf);
    fpd_safetensors_free(stq);
    fpd_safetensors_free(src);
    json_decref(repf);
    json_decref(repq);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert(eq(int, system(cmd), 0));
}

/* ------------------------------------------------- the order in an id vocabulary */

/* fpd_layer_fold_row_perm and fpd_layer_select_rows against the definition: a layer
 * of 37 rows over 5 x 8 = 40 stored rows, a permutation into them and c = 2 free
 * coordinates. Row i of the input is the naive product of the cores at stored row
 * perm[i] plus E[i] P; the fold holds it at row perm[i]; selecting the rows perm[i]
 * of the fold gives the input back (E and the permutation exactly). */
Test(free, fold_and_select_rows_by_the_definition) {
    const int64_t n[2] = {5, 8}, d[2] = {2, 3}, N = 37, c = 2, D = 6;
    struct fpd_layer_shape s = test_make_shape(2, N, n, d, 3, 2);
    struct fpd_layer *l = NULL, *f = NULL, *back = NULL;
    struct fpd_error err;
    cr_assert(eq(int, fpd_layer_init(&s, &l, NULL), 0));
    test_fill_random(l, 17, 0.6);
    int64_t perm[37];
    uint64_t seed = 9;
    int64_t all[40];
    for (int64_t x = 0; x < 40; x++) all[x] = x;
    for (int64_t x = 39; x > 0; x--) { /* a random injection of 37 ids into the 40 stored rows */
        int64_t j = (int64_t)(test_rand_u64(&seed) % (uint64_t)(x + 1)), t = all[x];
        all[x] = all[j];
        all[j] = t;
    }
    int64_t R = 0;
    for (int64_t i = 0; i < N; i++) {
        perm[i] = all[i];
        R = perm[i] + 1 > R ? perm[i] + 1 : R;
    }
    cr_assert(eq(int, fpd_layer_set_row_perm(l, perm, NULL), 0));
    float e[74], p[12];
    for (int i = 0; i < 74; i++) e[i] = (float)test_rand_sym(&seed);
    for (int i = 0; i < 12; i++) p[i] = (float)test_rand_sym(&seed);
    cr_assert(eq(int, fpd_layer_set_free_coords(l, c, e, p, NULL), 0));
    cr_assert(eq(int, fpd_layer_fold_row_perm(l, &f, &err), 0), "%s", err.msg);
    cr_assert(fpd_layer_row_perm(f) == NULL);
    cr_assert(eq(i64, fpd_layer_get_shape(f)->rows, R));
    /* E moved with its ids, zero rows elsewhere; P the same */
    const float *ef = fpd_layer_get_free_e_const(f);
    bool reached[40] = {false};
    for (int64_t i = 0; i < N; i++) {
        reached[perm[i]] = true;
        for (int64_t q = 0; q < c; q++) cr_assert(eq(flt, ef[perm[i] * c + q], e[i * c + q]));
    }
    for (int64_t x = 0; x < R; x++)
        if (!reached[x]) cr_assert(ef[x * c] == 0.0f && ef[x * c + 1] == 0.0f, "row %lld", (long long)x);
    cr_assert(eq(int, memcmp(fpd_layer_get_free_p_const(f), p, sizeof p), 0));
    /* rows by the definition: input row i = fold row perm[i] = cores at perm[i] + E[i] P */
    for (int64_t i = 0; i < N; i++) {
        double want[6];
        test_naive_row(l, perm[i], want);
        for (int64_t j = 0; j < D; j++)
            for (int64_t q = 0; q < c; q++) want[j] += (double)e[i * c + q] * p[q * D + j];
        float gi[6], gf[6];
        const int64_t fi = perm[i];
        cr_assert(eq(int, fpd_layer_lookup(l, &i, 1, gi, NULL), 0));
        cr_assert(eq(int, fpd_layer_lookup(f, &fi, 1, gf, NULL), 0));
        cr_assert(le(dbl, test_rel_diff(gi, want, D), 1e-6), "input row %lld", (long long)i);
        cr_assert(le(dbl, test_rel_diff(gf, want, D), 1e-6), "folded row %lld", (long long)fi);
    }
    /* select the rows perm[i] of the fold: the input again */
    cr_assert(eq(int, fpd_layer_select_rows(f, perm, N, &back, &err), 0), "%s", err.msg);
    cr_assert(eq(i64, fpd_layer_get_shape(back)->rows, N));
    cr_assert(eq(int, memcmp(fpd_layer_row_perm(back), perm, sizeof perm), 0));
    cr_assert(eq(int, memcmp(fpd_layer_get_free_e_const(back), e, sizeof e), 0));
    float a[37 * 6], b[37 * 6];
    cr_assert(eq(int, fpd_layer_reconstruct(l, 0, N, a, NULL), 0));
    cr_assert(eq(int, fpd_layer_reconstruct(back, 0, N, b, NULL), 0));
    cr_assert(eq(int, memcmp(a, b, sizeof a), 0));
    fpd_layer_free(back);
    /* select on a layer with a permutation composes it: rows 3, 0 of l are l's rows */
    const int64_t two[2] = {3, 0};
    cr_assert(eq(int, fpd_layer_select_rows(l, two, 2, &back, &err), 0), "%s", err.msg);
    cr_assert(eq(i64, fpd_layer_row_perm(back)[0], perm[3]));
    cr_assert(eq(i64, fpd_layer_row_perm(back)[1], perm[0]));
    float r2[12];
    cr_assert(eq(int, fpd_layer_reconstruct(back, 0, 2, r2, NULL), 0));
    cr_assert(eq(int, memcmp(r2, a + 3 * D, 6 * sizeof(float)), 0));
    cr_assert(eq(int, memcmp(r2 + 6, a, 6 * sizeof(float)), 0));
    fpd_layer_free(back);
    /* refusals */
    cr_assert(eq(int, fpd_layer_fold_row_perm(f, &back, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(strstr(err.msg, "no row permutation") != NULL, "%s", err.msg);
    const int64_t rep[3] = {1, 4, 1}, out[2] = {0, 40};
    cr_assert(eq(int, fpd_layer_select_rows(f, rep, 3, &back, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(strstr(err.msg, "distinct") != NULL, "%s", err.msg);
    cr_assert(eq(int, fpd_layer_select_rows(f, out, 2, &back, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(strstr(err.msg, "rows[1] = 40 is outside [0, ") != NULL, "%s", err.msg);
    cr_assert(back == NULL);
    fpd_layer_free(f);
    fpd_layer_free(l);
}

/* E held as stored rows (fpd_layer_store_free): for every kind, the stored bytes are
 * the writer's (fpd_free_quantize_rows of the F32 E), the rows decode to exactly the
 * floats of fpd_layer_quantize_free (the F32 layer a reader loads), and every look-up
 * (engine forward with 1 and 3 threads, every bag mode; fpd_layer_lookup,
 * fpd_layer_reconstruct) is bit for bit that layer's, which matches the definition;
 * memory is rows * row bytes + 4 c D instead of 4 c (rows + D). */
Test(free, stored_e_looks_up_as_the_f32_layer_bit_for_bit) {
    for (int q = 0; q < 16; q++) g_wts[q] = 0.25f + 0.125f * (float)q;
    const int64_t c = 5;
    for (int kind = 0; kind < FPD_FREE_KIND_COUNT; kind++) {
        const enum fpd_free_kind k = (enum fpd_free_kind)kind;
        struct fpd_layer *l = free_layer(c, true, 61), *lq = NULL, *ls = NULL;
        struct fpd_error err;
        cr_assert(eq(int, fpd_layer_clone(l, &lq, NULL), 0));
        cr_assert(eq(int, fpd_layer_clone(l, &ls, NULL), 0));
        cr_assert(eq(int, fpd_layer_quantize_free(lq, k, &err), 0), "%s", err.msg);
        cr_assert(eq(sz, fpd_layer_free_memory_bytes(ls), (size_t)(200 * c + c * 12) * 4));
        cr_assert(eq(int, fpd_layer_store_free(ls, k, &err), 0), "%s", err.msg);
        enum fpd_free_kind held = (enum fpd_free_kind)-1;
        const uint8_t *Q = fpd_layer_get_free_stored(ls, &held);
        cr_assert(Q != NULL && held == k && fpd_layer_get_free_e_const(ls) == NULL);
        const size_t rb = fpd_free_row_bytes(k, c);
        cr_assert(eq(sz, fpd_layer_free_memory_bytes(ls), 200 * rb + (size_t)(c * 12) * 4));
        uint8_t *want = malloc(200 * rb);
        cr_assert(eq(i64, fpd_free_quantize_rows(k, fpd_layer_get_free_e_const(l), 200, c, want), -1));
        cr_assert(eq(int, memcmp(Q, want, 200 * rb), 0), "%s: the stored bytes are not the writer's",
                  fpd_free_kind_name(k));
        free(want);
        for (int64_t i = 0; i < 200; i++) {
            float r[5];
            fpd_layer_free_row(ls, i, r);
            cr_assert(eq(int, memcmp(r, fpd_layer_get_free_e_const(lq) + i * c, sizeof r), 0), "row %lld",
                      (long long)i);
        }
        const enum fpd_bag_mode modes[3] = {FPD_BAG_MODE_SUM, FPD_BAG_MODE_MEAN, FPD_BAG_MODE_NONE};
        for (int m = 0; m < 3; m++) {
            struct fpd_bag_batch b = {.indices = g_idx, .n_indices = 16, .offsets = g_off, .n_bags = 5,
                                      .per_sample_weights = modes[m] == FPD_BAG_MODE_SUM ? g_wts : NULL,
                                      .mode = modes[m], .padding_idx = 0};
            const int64_t nout = fpd_bag_batch_out_rows(&b);
            float got1[16 * 12], got3[16 * 12], want_q[16 * 12];
            double ref[16 * 12];
            struct fpd_engine *e1 = engine_kind(ls, FPD_OPTIMIZER_KIND_SGD, 0.1, 1),
                              *e3 = engine_kind(ls, FPD_OPTIMIZER_KIND_SGD, 0.1, 3),
                              *eq_ = engine_kind(lq, FPD_OPTIMIZER_KIND_SGD, 0.1, 1);
            cr_assert(eq(int, fpd_engine_forward(e1, &b, got1, &err), 0), "%s", err.msg);
            cr_assert(eq(int, fpd_engine_forward(e3, &b, got3, &err), 0), "%s", err.msg);
            cr_assert(eq(int, fpd_engine_forward(eq_, &b, want_q, &err), 0), "%s", err.msg);
            cr_assert(eq(int, memcmp(got1, want_q, (size_t)(nout * 12) * sizeof(float)), 0), "%s mode %d",
                      fpd_free_kind_name(k), m);
            cr_assert(eq(int, memcmp(got3, want_q, (size_t)(nout * 12) * sizeof(float)), 0));
            ref_forward(lq, &b, ref);
            for (int64_t o = 0; o < nout; o++)
                cr_assert(le(dbl, test_rel_diff(got1 + o * 12, ref + o * 12, 12), 1e-5), "%s mode %d out %lld",
                          fpd_free_kind_name(k), m, (long long)o);
            fpd_engine_free(e1);
            fpd_engine_free(e3);
            fpd_engine_free(eq_);
        }
        float ra[200 * 12], rb_[200 * 12];
        cr_assert(eq(int, fpd_layer_reconstruct(ls, 0, 200, ra, &err), 0), "%s", err.msg);
        cr_assert(eq(int, fpd_layer_reconstruct(lq, 0, 200, rb_, &err), 0), "%s", err.msg);
        cr_assert(eq(int, memcmp(ra, rb_, sizeof ra), 0));
        const int64_t idx[3] = {199, 7, 7};
        cr_assert(eq(int, fpd_layer_lookup(ls, idx, 3, ra, &err), 0), "%s", err.msg);
        cr_assert(eq(int, fpd_layer_lookup(lq, idx, 3, rb_, &err), 0), "%s", err.msg);
        cr_assert(eq(int, memcmp(ra, rb_, 3 * 12 * sizeof(float)), 0));
        /* stored again in the same kind: nothing changes; quantize_free of that kind: a no-op */
        cr_assert(eq(int, fpd_layer_store_free(ls, k, &err), 0));
        cr_assert(fpd_layer_get_free_stored(ls, NULL) == Q);
        cr_assert(eq(int, fpd_layer_quantize_free(ls, k, &err), 0));
        cr_assert(fpd_layer_get_free_stored(ls, NULL) == Q);
        /* back to F32: the decoded rows, i.e. lq's E exactly */
        cr_assert(eq(int, fpd_layer_expand_free(ls, &err), 0), "%s", err.msg);
        cr_assert(fpd_layer_get_free_stored(ls, NULL) == NULL);
        cr_assert(eq(int, memcmp(fpd_layer_get_free_e_const(ls), fpd_layer_get_free_e_const(lq),
                                 (size_t)(200 * c) * sizeof(float)), 0));
        fpd_layer_free(ls);
        fpd_layer_free(lq);
        fpd_layer_free(l);
    }
}

/* A layer holding E as stored rows looks up only: backward, step, QAT and finetuning
 * are refused with a message saying why and what to do, an engine made before E
 * changed form is refused, and after fpd_layer_expand_free training runs. */
Test(free, stored_e_refuses_training_until_expanded) {
    struct fpd_layer *l = free_layer(3, false, 71);
    struct fpd_error err;
    struct fpd_bag_batch b = {.indices = g_idx, .n_indices = 16, .offsets = g_off, .n_bags = 5,
                              .mode = FPD_BAG_MODE_SUM, .padding_idx = -1};
    float out[5 * 12], g[5 * 12];
    for (int i = 0; i < 60; i++) g[i] = 0.5f;
    struct fpd_engine *before = engine_kind(l, FPD_OPTIMIZER_KIND_SGD, 0.1, 1);
    cr_assert(eq(int, fpd_layer_store_free(l, FPD_FREE_INT4_SYM, &err), 0), "%s", err.msg);
    cr_assert(eq(int, fpd_engine_forward(before, &b, out, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(strstr(err.msg, "make a new engine") != NULL, "%s", err.msg);
    fpd_engine_free(before);
    struct fpd_engine *e = engine_kind(l, FPD_OPTIMIZER_KIND_SGD, 0.1, 1);
    cr_assert(eq(int, fpd_engine_forward(e, &b, out, &err), 0), "%s", err.msg);
    cr_assert(eq(int, fpd_engine_backward(e, &b, g, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(strstr(err.msg, "stored int4-sym rows") != NULL && strstr(err.msg, "fpd_layer_expand_free") != NULL,
              "%s", err.msg);
    cr_assert(eq(int, fpd_engine_step(e, &err), FPD_STATUS_INVALID_ARG));
    fpd_engine_free(e);
    struct fpd_engine_params ep = fpd_engine_default_params();
    ep.free_qat = true;
    ep.free_qat_kind = FPD_FREE_INT4_SYM;
    cr_assert(eq(int, fpd_engine_init(l, &ep, &e, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(strstr(err.msg, "needs E in F32") != NULL, "%s", err.msg);
    float w[200 * 12];
    cr_assert(eq(int, fpd_layer_reconstruct(l, 0, 200, w, &err), 0));
    struct fpd_table_view tv = {w, FPD_DTYPE_F32, 200, 12};
    struct fpd_fit_params fp = fpd_fit_default_params();
    double lb, la;
    cr_assert(eq(int, fpd_finetune(l, &tv, &fp, &lb, &la, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(strstr(err.msg, "stored rows") != NULL, "%s", err.msg);
    cr_assert(eq(int, fpd_layer_expand_free(l, &err), 0));
    e = engine_kind(l, FPD_OPTIMIZER_KIND_SGD, 0.1, 1);
    cr_assert(eq(int, fpd_engine_forward(e, &b, out, &err), 0), "%s", err.msg);
    cr_assert(eq(int, fpd_engine_backward(e, &b, g, &err), 0), "%s", err.msg);
    cr_assert(eq(int, fpd_engine_step(e, &err), 0), "%s", err.msg);
    fpd_engine_free(e);
    fpd_layer_free(l);
}

/* fpd_layer_set_free_stored checks every row as a reader does; clone, fold and select
 * carry the stored bytes (a zero row's bytes where no id lands). */
Test(free, stored_e_set_checks_rows_and_moves_with_fold_and_select) {
    struct fpd_layer *l = free_layer(4, false, 81), *cl = NULL;
    struct fpd_error err;
    const enum fpd_free_kind k = FPD_FREE_INT8_SYM;
    const size_t rb = fpd_free_row_bytes(k, 4);
    uint8_t *q = malloc(200 * rb);
    cr_assert(eq(i64, fpd_free_quantize_rows(k, fpd_layer_get_free_e_const(l), 200, 4, q), -1));
    struct fpd_layer *ls = NULL;
    cr_assert(eq(int, fpd_layer_clone(l, &ls, NULL), 0));
    const uint16_t bad_scales[3] = {0xbc00 /* -1 */, 0x7e00 /* NaN */, 0x7c00 /* Inf */};
    for (int t = 0; t < 3; t++) {
        uint8_t keep[2] = {q[37 * rb + 4], q[37 * rb + 5]};
        q[37 * rb + 4] = (uint8_t)(bad_scales[t] & 0xff);
        q[37 * rb + 5] = (uint8_t)(bad_scales[t] >> 8);
        cr_assert(eq(int, fpd_layer_set_free_stored(ls, 4, k, q, fpd_layer_get_free_p_const(l), &err),
                     FPD_STATUS_INVALID_ARG));
        cr_assert(strstr(err.msg, "row 37 (int8-sym)") != NULL, "%s", err.msg);
        q[37 * rb + 4] = keep[0];
        q[37 * rb + 5] = keep[1];
    }
    cr_assert(fpd_layer_get_free_e_const(ls) != NULL, "a refused set changed the layer");
    cr_assert(eq(int, fpd_layer_set_free_stored(ls, 13, k, q, NULL, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(eq(int, fpd_layer_set_free_stored(ls, 4, k, NULL, NULL, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(eq(int, fpd_layer_set_free_stored(ls, 4, (enum fpd_free_kind)9, q, NULL, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(eq(int, fpd_layer_set_free_stored(ls, 4, k, q, fpd_layer_get_free_p_const(l), &err), 0), "%s", err.msg);
    cr_assert(eq(int, memcmp(fpd_layer_get_free_stored(ls, NULL), q, 200 * rb), 0));
    cr_assert(eq(int, fpd_layer_clone(ls, &cl, &err), 0), "%s", err.msg);
    cr_assert(eq(int, memcmp(fpd_layer_get_free_stored(cl, NULL), q, 200 * rb), 0));
    fpd_layer_free(cl);
    /* select rows 150, 3 of a stored layer: their bytes; fold after a permutation: bytes moved, zeros elsewhere */
    const int64_t two[2] = {150, 3};
    cr_assert(eq(int, fpd_layer_select_rows(ls, two, 2, &cl, &err), 0), "%s", err.msg);
    const uint8_t *sq = fpd_layer_get_free_stored(cl, NULL);
    cr_assert(sq && memcmp(sq, q + 150 * rb, rb) == 0 && memcmp(sq + rb, q + 3 * rb, rb) == 0);
    struct fpd_layer *f = NULL;
    cr_assert(eq(int, fpd_layer_fold_row_perm(cl, &f, &err), 0), "%s", err.msg);
    const int64_t *pm = fpd_layer_row_perm(cl);
    const uint8_t *fq = fpd_layer_get_free_stored(f, NULL);
    cr_assert(fq != NULL);
    for (int64_t x = 0; x < fpd_layer_get_shape(f)->rows; x++) {
        float r[4];
        fpd_layer_free_row(f, x, r);
        if (x == pm[0]) cr_assert(eq(int, memcmp(fq + x * rb, q + 150 * rb, rb), 0));
        else if (x == pm[1]) cr_assert(eq(int, memcmp(fq + x * rb, q + 3 * rb, rb), 0));
        else cr_assert(r[0] == 0.0f && r[1] == 0.0f && r[2] == 0.0f && r[3] == 0.0f, "row %lld", (long long)x);
    }
    fpd_layer_free(f);
    fpd_layer_free(cl);
    fpd_layer_free(ls);
    free(q);
    fpd_layer_free(l);
}
