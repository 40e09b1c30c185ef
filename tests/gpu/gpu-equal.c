/*
 * gpu-equal.c - the CUDA engine against the CPU engine (lib/cpu/engine-cpu.c),
 * operation by operation, through the public API (fpd_engine_* with a CUDA
 * backend). Needs a CUDA device; run by tests/gpu/run.sh, built by
 * `make CUDA=1 gpu-build`.
 *
 * Layers: k = 1..4, p = 1..3, odd and prime D, padded row counts, d_m = 1,
 * a row permutation, shapes that take the engine's register-tiled kernels (inner
 * ranks all 2, 4, 8, 16 or 32; the seed's d = 8 x 4 x 4 among them) and shapes
 * that take its generic ones, free coordinates (free/1: E [N, c] by original id, P [c, D];
 * c = 1, 3, 8, with and without a permutation; again with quantization-aware
 * training of E, free_qat, in every kind: its rounding on the device), and the seed's (r, p) = (8,1) (8,2) (16,2) (8,4) (32,1)
 * on a 40,000,000 x 128 table (the heuristic's shape, random cores).
 * Batches: SUM with offsets, empty bags and padding; MEAN with padding; SUM with
 * per-sample weights and include_last_offset (entries past the last offset);
 * NONE with padding; SUM by bag_size without offsets. Ids are skewed (u^3) so
 * rows repeat, as under Zipf.
 * Each layer twice: the tree forward (the public API) and the direct forward
 * (fpd__cuda_engine_set_direct_forward, through the backend's operations).
 * Checks: forward output; backward gradient of every core, and of E and P
 * (values, and the touched-slice lists exactly); every optimizer (SGD, row-wise
 * Adagrad, Adam, lazy Adam) over 3 forward/backward/step rounds: the change of the
 * cores, E and P (P also fixed: free_proj_fixed).
 *
 * Tolerance: normwise, max|gpu - cpu| <= tol * max|cpu| over the array.
 *   forward 1e-5: each output is a sum of a few hundred F32 products, reordered
 *     on the GPU (FMA contraction, no fixed order of terms in a block's loop is
 *     the CPU micro-kernel's): a few ulp of the largest magnitude.
 *   gradients and steps 1e-4: a slice's gradient sums over every entry that
 *     touches it (thousands under skew), in atomicAdd order on the GPU, so the
 *     error grows with the count; the steps inherit it. Adam runs with eps = 1
 *     here (see engine_pair): with 1e-8 its step is ill-conditioned at gradient
 *     entries that cancel to ~0, and any change of summation order shows.
 * A wrong index, bag or slice gives errors of order 1, far above both.
 *
 * Usage: gpu-equal [--quick] [--only TEXT]   (--quick: one seed configuration, and
 * batches of a quarter the size on the large tables: 1,000 and 2,048 entries;
 * --only: the layers whose label contains TEXT, e.g. "(16,2)"). Exit 0 when
 * every check passes, 1 on a mismatch, 2 when no CUDA backend could be created
 * (or on a usage error).
 */
#include "heuristics/fpd-heuristics.h"
#include "lib/backend-impl.h"
#include "lib/cuda/engine-cuda.h"
#include "tests/test-util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_fail, g_pass;
static int g_qat = -1; /* >= 0: both engines train E quantization-aware in this kind */
static struct fpd_backend *g_cuda;

#ifdef FPD_CUDA_EMU
/* `make gpu-emu`: the CUDA engine's kernels compiled for the CPU
 * (tests/gpu/cuda-emu.h) behind a backend of this file's own */
int fpd__cuda_ctx_device(void *ctx) {
    (void)ctx;
    return 0;
}
static void emu_destroy(void *ctx) { (void)ctx; }
static enum fpd_status cuda_backend(struct fpd_backend **out, struct fpd_error *err) {
    struct fpd_backend *be = fpd_calloc(1, sizeof *be);
    if (!be) return fpd__err(err, FPD_STATUS_NOMEM, "out of memory");
    be->kind = FPD_BACKEND_KIND_CUDA;
    be->iface.destroy = emu_destroy;
    fpd__cuda_engine_ops(&be->iface);
    snprintf(be->name, sizeof be->name, "CUDA engine emulated on the CPU (tests/gpu/cuda-emu.h)");
    *out = be;
    return FPD_STATUS_OK;
}
#else
#include "tests/gpu/gpu-backend.h"
static enum fpd_status cuda_backend(struct fpd_backend **out, struct fpd_error *err) {
    return gpu_backend_create(out, err);
}
#endif

static double rel_inf(const float *a, const float *b, int64_t n) {
    double num = 0.0, den = 0.0;
    bool nan = false; /* a NaN anywhere fails the check (unwritten device memory reads as NaN) */
    for (int64_t i = 0; i < n; i++) {
        const double d = fabs((double)a[i] - (double)b[i]);
        if (isnan(d)) nan = true;
        else if (d > num) num = d;
        if (fabs((double)b[i]) > den) den = fabs((double)b[i]);
    }
    if (nan) return NAN;
    return den > 0.0 ? num / den : num;
}

static void check(const char *what, const char *where, double rel, double tol) {
    const bool ok = rel <= tol;
    printf("%s %-44s %-34s rel %.2e (tol %.0e)\n", ok ? "ok  " : "FAIL", where, what, rel, tol);
    ok ? g_pass++ : g_fail++;
}

/* The CUDA engine under test: through the public API (fpd_engine_*, the tree
 * forward) or, with g_direct, through the backend's operations with the direct
 * forward chosen (fpd__cuda_engine_set_direct_forward; the public API has no
 * switch for it). */
static bool g_direct;
struct geng {
    struct fpd_engine *pub;
    const struct fpd_backend_i *ops;
    void *ctx, *state;
    struct fpd_optimizer_params opt;
};

static int64_t resolve_bags(const struct fpd_bag_batch *b) {
    if (b->mode == FPD_BAG_MODE_NONE) return 0;
    if (!b->offsets) return b->n_indices / b->bag_size;
    return b->include_last_offset ? b->n_bags - 1 : b->n_bags;
}

static enum fpd_status ge_init(struct fpd_layer *l, const struct fpd_engine_params *p, struct geng *g,
                               struct fpd_error *err) {
    memset(g, 0, sizeof *g);
    if (!g_direct) return fpd_engine_init(l, p, &g->pub, err);
    g->ops = fpd__backend_iface(p->backend, &g->ctx);
    g->opt = p->optimizer;
    enum fpd_status st = g->ops->engine_create(g->ctx, l, p, &g->state, err);
    if (!st) fpd__cuda_engine_set_direct_forward(g->state, true);
    return st;
}
static void ge_free(struct geng *g) {
    if (g->pub) fpd_engine_free(g->pub);
    if (g->state) g->ops->engine_destroy(g->ctx, g->state);
    memset(g, 0, sizeof *g);
}
static enum fpd_status ge_forward(struct geng *g, const struct fpd_bag_batch *b, float *out, struct fpd_error *err) {
    return g->pub ? fpd_engine_forward(g->pub, b, out, err)
                  : g->ops->engine_forward(g->ctx, g->state, b, resolve_bags(b), out, err);
}
static enum fpd_status ge_backward(struct geng *g, const struct fpd_bag_batch *b, const float *go,
                                   struct fpd_error *err) {
    return g->pub ? fpd_engine_backward(g->pub, b, go, err)
                  : g->ops->engine_backward(g->ctx, g->state, b, resolve_bags(b), go, err);
}
static enum fpd_status ge_step(struct geng *g, struct fpd_error *err) {
    return g->pub ? fpd_engine_step(g->pub, err) : g->ops->engine_step(g->ctx, g->state, &g->opt, err);
}
static void ge_zero_grad(struct geng *g) {
    if (g->pub)
        fpd_engine_zero_grad(g->pub);
    else
        g->ops->engine_zero_grad(g->ctx, g->state);
}
static void ge_grad(struct geng *g, int32_t m, const float **grad, const int64_t **sl, int64_t *ns) {
    if (g->pub)
        fpd_engine_grad(g->pub, m, grad, sl, ns);
    else
        g->ops->engine_grad(g->ctx, g->state, m, grad, sl, ns);
}

/* ------------------------------------------------------------ batches */

enum { B_SUM, B_MEAN, B_WEIGHTS_LAST, B_NONE, B_BAGSIZE, B_COUNT };
static const char *const batch_name[B_COUNT] = {"sum+offsets+padding", "mean+padding", "weights+include_last",
                                                "none+padding", "sum by bag_size"};

struct batch {
    struct fpd_bag_batch b;
    int64_t *idx, *offs;
    float *w;
};

static void batch_free(struct batch *x) {
    free(x->idx);
    free(x->offs);
    free(x->w);
}

static void make_batch(int kind, int64_t rows, int64_t n, uint64_t seed, struct batch *x) {
    memset(x, 0, sizeof *x);
    x->idx = malloc((size_t)n * sizeof(int64_t));
    x->offs = malloc((size_t)(n + 2) * sizeof(int64_t));
    x->w = malloc((size_t)n * sizeof(float));
    const int64_t pad = rows > 3 ? rows / 3 : -1;
    for (int64_t i = 0; i < n; i++) {
        const double u = (test_rand_sym(&seed) + 1.0) / 2.0;
        int64_t id = (int64_t)((double)rows * u * u * u);
        if (id >= rows) id = rows - 1;
        if (pad >= 0 && kind != B_BAGSIZE && test_rand_u64(&seed) % 11 == 0) id = pad;
        x->idx[i] = id;
        x->w[i] = (float)test_rand_sym(&seed);
    }
    struct fpd_bag_batch *b = &x->b;
    b->indices = x->idx;
    b->n_indices = n;
    b->padding_idx = kind == B_BAGSIZE ? -1 : pad;
    b->mode = kind == B_MEAN ? FPD_BAG_MODE_MEAN : kind == B_NONE ? FPD_BAG_MODE_NONE : FPD_BAG_MODE_SUM;
    if (kind == B_BAGSIZE) {
        b->bag_size = 4;
        b->n_indices = n / 4 * 4;
        return;
    }
    if (kind == B_NONE) return;
    /* bags of 0..6 entries; with include_last_offset, the last offset stops short
     * of n (entries in no bag) */
    int64_t at = 0, nb = 0;
    const int64_t stop = kind == B_WEIGHTS_LAST ? n - n / 10 : n;
    while (at < stop) {
        x->offs[nb++] = at;
        at += (int64_t)(test_rand_u64(&seed) % 7);
        if (at > stop) at = stop;
    }
    if (kind == B_WEIGHTS_LAST) {
        x->offs[nb++] = stop;
        b->include_last_offset = true;
        b->per_sample_weights = x->w;
    }
    b->offsets = x->offs;
    b->n_bags = nb;
}

/* ------------------------------------------------------------ one layer */

static int engine_pair(struct fpd_layer *cl, struct fpd_layer *gl, enum fpd_optimizer_kind kind, bool proj_fixed,
                       struct fpd_engine **ce, struct geng *ge) {
    struct fpd_error err;
    struct fpd_engine_params p = fpd_engine_default_params();
    p.threads = 2;
    p.optimizer.kind = kind;
    p.optimizer.learning_rate = 0.05;
    /* free coordinates: E and P at their own steps (P fixed in the extra round) */
    p.optimizer.free_lr_scale = 2.0;
    p.optimizer.free_proj_lr_scale = 0.5;
    p.optimizer.free_proj_fixed = proj_fixed;
    p.free_qat = g_qat >= 0;
    p.free_qat_kind = g_qat >= 0 ? g_qat : 0;
    /* Adam's step lr m/(sqrt(v) + eps) is ill-conditioned in g: its gain is up to lr / eps
     * at entries with |g| near eps, so a last-bit difference of a gradient sum (normwise
     * 1e-6 of the largest entry) becomes up to 1e-6 max|g| / eps of the step. With eps =
     * 1e-8 that is a change of order lr at entries that cancel to ~0 (seen: 7e-4 of the
     * largest change at (16,2)), with 1e-3 still 3.6e-4. eps = 1 bounds the gain by lr and
     * keeps every term of the update (the moments and their bias corrections). */
    if (kind == FPD_OPTIMIZER_KIND_ADAM || kind == FPD_OPTIMIZER_KIND_LAZY_ADAM) p.optimizer.eps = 1.0;
    if (fpd_engine_init(cl, &p, ce, &err)) {
        fprintf(stderr, "gpu-equal: CPU engine: %s\n", err.msg);
        return 1;
    }
    p.backend = g_cuda;
    if (ge_init(gl, &p, ge, &err)) {
        fprintf(stderr, "gpu-equal: CUDA engine: %s\n", err.msg);
        fpd_engine_free(*ce);
        return 1;
    }
    return 0;
}

/* The engine's parameters: the k cores, then (with free coordinates) E and P. */
static int32_t n_params(const struct fpd_layer *l) {
    return fpd_layer_get_shape(l)->k + (fpd_layer_get_free_coords(l) > 0 ? 2 : 0);
}
static int64_t param_numel(const struct fpd_layer *l, int32_t m) {
    const struct fpd_layer_shape *s = fpd_layer_get_shape(l);
    const int64_t c = fpd_layer_get_free_coords(l);
    return m < s->k ? fpd_layer_shape_core_numel(s, m) : m == s->k ? s->rows * c : c * s->dim;
}
static const float *param_const(const struct fpd_layer *l, int32_t m) {
    const int32_t k = fpd_layer_get_shape(l)->k;
    return m < k ? fpd_layer_core_const(l, m) : m == k ? fpd_layer_get_free_e_const(l) : fpd_layer_get_free_p_const(l);
}
static const char *param_name(int32_t k, int32_t m, char *buf, size_t len) {
    if (m < k) snprintf(buf, len, "core %d", (int)m);
    else snprintf(buf, len, "%s", m == k ? "E" : "P");
    return buf;
}

static void compare_grads(struct fpd_engine *ce, struct geng *ge, const struct fpd_layer *l, const char *where,
                          const char *bname) {
    const struct fpd_layer_shape *s = fpd_layer_get_shape(l);
    for (int32_t m = 0; m < n_params(l); m++) {
        const float *gc, *gg;
        const int64_t *sc, *sg;
        int64_t nc, ng;
        fpd_engine_grad(ce, m, &gc, &sc, &nc);
        /* the CPU view is borrowed until the next engine call: copy it */
        const int64_t nel = param_numel(l, m);
        char pn[16];
        param_name(s->k, m, pn, sizeof pn);
        float *gcc = malloc((size_t)nel * sizeof(float));
        int64_t *scc = malloc((size_t)(nc > 0 ? nc : 1) * sizeof(int64_t));
        memcpy(gcc, gc, (size_t)nel * sizeof(float));
        memcpy(scc, sc, (size_t)nc * sizeof(int64_t));
        ge_grad(ge, m, &gg, &sg, &ng);
        char what[96];
        snprintf(what, sizeof what, "%s: grad %s", bname, pn);
        check(what, where, rel_inf(gg, gcc, nel), 1e-4);
        bool same = nc == ng;
        for (int64_t q = 0; same && q < nc; q++)
            same = scc[q] == sg[q];
        snprintf(what, sizeof what, "%s: slices %s (%lld)", bname, pn, (long long)nc);
        check(what, where, same ? 0.0 : 1.0, 0.0);
        free(gcc);
        free(scc);
    }
}

static void run_layer(const struct fpd_layer *base, const char *where, int64_t n) {
    const struct fpd_layer_shape *s = fpd_layer_get_shape(base);
    struct fpd_error err;
    struct fpd_layer *cl = NULL, *gl = NULL;
    if (fpd_layer_clone(base, &cl, &err) || fpd_layer_clone(base, &gl, &err)) {
        fprintf(stderr, "gpu-equal: %s\n", err.msg);
        exit(1);
    }
    /* forward and backward of every batch kind */
    struct fpd_engine *ce = NULL;
    struct geng ge;
    memset(&ge, 0, sizeof ge);
    if (engine_pair(cl, gl, FPD_OPTIMIZER_KIND_SGD, false, &ce, &ge)) {
        g_fail++;
        goto done;
    }
    for (int kind = 0; kind < B_COUNT; kind++) {
        struct batch x;
        make_batch(kind, s->rows, n, 1000 + (uint64_t)kind, &x);
        const int64_t out_rows = fpd_bag_batch_out_rows(&x.b);
        const size_t nout = (size_t)(out_rows > 0 ? out_rows : 1) * (size_t)s->dim;
        float *oc = calloc(nout, sizeof(float)), *og = calloc(nout, sizeof(float)), *go = malloc(nout * sizeof(float));
        uint64_t seed = 77 + (uint64_t)kind;
        for (size_t i = 0; i < nout; i++)
            go[i] = (float)test_rand_sym(&seed);
        if (fpd_engine_forward(ce, &x.b, oc, &err)) {
            fprintf(stderr, "gpu-equal: CPU forward: %s\n", err.msg);
            g_fail++;
        } else if (ge_forward(&ge, &x.b, og, &err)) {
            printf("FAIL %-44s %s: CUDA forward: %s\n", where, batch_name[kind], err.msg);
            g_fail++;
        } else {
            char what[96];
            snprintf(what, sizeof what, "%s: forward", batch_name[kind]);
            check(what, where, rel_inf(og, oc, out_rows * s->dim), 1e-5);
            fpd_engine_zero_grad(ce);
            ge_zero_grad(&ge);
            if (fpd_engine_backward(ce, &x.b, go, &err)) {
                fprintf(stderr, "gpu-equal: CPU backward: %s\n", err.msg);
                g_fail++;
            } else if (ge_backward(&ge, &x.b, go, &err)) {
                printf("FAIL %-44s %s: CUDA backward: %s\n", where, batch_name[kind], err.msg);
                g_fail++;
            } else {
                compare_grads(ce, &ge, cl, where, batch_name[kind]);
            }
        }
        free(oc);
        free(og);
        free(go);
        batch_free(&x);
    }
    fpd_engine_free(ce);
    ge_free(&ge);
    ce = NULL;
    /* every optimizer: 3 rounds, then the change of the cores (and E, P); with free
     * coordinates once more with P fixed (Adam) */
    const bool has_free = fpd_layer_get_free_coords(base) > 0;
    for (int kind = 0; kind < FPD_OPTIMIZER_KIND_COUNT + has_free; kind++) {
        static const char *const oname[] = {"SGD", "row-wise Adagrad", "Adam", "lazy Adam", "Adam, P fixed"};
        const bool proj_fixed = kind == FPD_OPTIMIZER_KIND_COUNT;
        const enum fpd_optimizer_kind okind = proj_fixed ? FPD_OPTIMIZER_KIND_ADAM : (enum fpd_optimizer_kind)kind;
        struct fpd_layer *c2 = NULL, *g2 = NULL;
        if (fpd_layer_clone(base, &c2, &err) || fpd_layer_clone(base, &g2, &err)) exit(1);
        if (engine_pair(c2, g2, okind, proj_fixed, &ce, &ge)) {
            g_fail++;
            fpd_layer_free(c2);
            fpd_layer_free(g2);
            continue;
        }
        bool ok = true;
        for (int round = 0; ok && round < 3; round++) {
            const int bk = round == 0 ? B_SUM : round == 1 ? B_WEIGHTS_LAST : B_NONE;
            struct batch x;
            make_batch(bk, s->rows, n, 500 + (uint64_t)round, &x);
            const int64_t out_rows = fpd_bag_batch_out_rows(&x.b);
            const size_t nout = (size_t)(out_rows > 0 ? out_rows : 1) * (size_t)s->dim;
            float *o = malloc(nout * sizeof(float)), *go = malloc(nout * sizeof(float));
            uint64_t seed = 99 + (uint64_t)round;
            for (size_t i = 0; i < nout; i++)
                go[i] = (float)test_rand_sym(&seed);
            if (fpd_engine_forward(ce, &x.b, o, &err) || fpd_engine_backward(ce, &x.b, go, &err) ||
                fpd_engine_step(ce, &err)) {
                printf("FAIL %-44s %s step on the CPU: %s\n", where, oname[kind], err.msg);
                ok = false;
            } else if (ge_forward(&ge, &x.b, o, &err) || ge_backward(&ge, &x.b, go, &err) || ge_step(&ge, &err)) {
                printf("FAIL %-44s %s step on CUDA: %s\n", where, oname[kind], err.msg);
                ok = false;
            }
            free(o);
            free(go);
            batch_free(&x);
        }
        if (!ok) g_fail++;
        for (int32_t m = 0; ok && m < n_params(base); m++) {
            const int64_t nel = param_numel(base, m);
            const float *x0 = param_const(base, m), *xc = param_const(c2, m), *xg = param_const(g2, m);
            float *dc = malloc((size_t)nel * sizeof(float)), *dg = malloc((size_t)nel * sizeof(float));
            for (int64_t e = 0; e < nel; e++) {
                dc[e] = xc[e] - x0[e];
                dg[e] = xg[e] - x0[e];
            }
            char what[96], pn[16];
            snprintf(what, sizeof what, "%s x3: change of %s", oname[kind], param_name(s->k, m, pn, sizeof pn));
            if (proj_fixed && m == s->k + 1) { /* P fixed: unchanged on both, exactly */
                bool same = true;
                for (int64_t e2 = 0; e2 < nel; e2++) same = same && dc[e2] == 0.0f && dg[e2] == 0.0f;
                check(what, where, same ? 0.0 : 1.0, 0.0);
            } else {
                check(what, where, rel_inf(dg, dc, nel), 1e-4);
            }
            free(dc);
            free(dg);
        }
        fpd_engine_free(ce);
        ge_free(&ge);
        ce = NULL;
        fpd_layer_free(c2);
        fpd_layer_free(g2);
    }
done:
    fpd_engine_free(ce);
    ge_free(&ge);
    fpd_layer_free(cl);
    fpd_layer_free(gl);
}

struct ecase {
    int32_t k;
    int64_t rows, n[4], d[4], r, p;
    bool perm;
    int64_t fc; /* free coordinates (0: none) */
};

static const struct ecase g_cases[] = {
    {1, 9, {9}, {5}, 1, 2, false, 0},
    {2, 30, {6, 5}, {3, 1}, 3, 1, true, 0},
    {2, 41, {7, 7}, {7, 1}, 4, 3, false, 0},
    {3, 1000, {10, 11, 10}, {2, 3, 2}, 4, 1, true, 0},
    {3, 97, {5, 5, 4}, {97, 1, 1}, 6, 2, false, 0},
    {3, 500, {8, 8, 8}, {5, 3, 1}, 5, 3, true, 0},
    {4, 200, {3, 4, 5, 4}, {2, 1, 3, 2}, 5, 2, true, 0},
    {3, 100000, {47, 47, 47}, {4, 8, 4}, 16, 2, false, 0},
    /* 36,864 multiply-adds a row: the direct forward's block-a-row kernel (the
     * others take a warp a row; FPD__DIRECT_WARP_MACS) */
    {3, 500, {8, 8, 8}, {4, 4, 4}, 32, 2, true, 0},
    /* the register-tiled kernels (engine-cuda.cu, rt_plan_init: inner ranks all R in
     * {2, 4, 8, 16, 32}): the seed's d = 8 x 4 x 4 (the direct forward right to left)
     * at R = 8, 16 (with free coordinates) and 32 (a block a row); k = 2 at R = 8 and
     * 16; R = 2 (tiles of one column); k = 4 (two levels of partials) */
    {3, 2000, {13, 13, 12}, {8, 4, 4}, 8, 1, false, 0},
    {3, 2000, {13, 13, 12}, {8, 4, 4}, 16, 2, true, 3},
    {3, 1000, {10, 10, 10}, {8, 4, 4}, 32, 1, false, 0},
    {2, 600, {25, 24}, {4, 8}, 8, 2, true, 0},
    {2, 600, {25, 24}, {8, 16}, 16, 1, false, 0},
    {3, 300, {7, 7, 7}, {4, 3, 2}, 2, 2, false, 0},
    {4, 400, {4, 5, 5, 4}, {2, 2, 2, 4}, 4, 2, true, 0},
    {1, 9, {9}, {5}, 1, 2, false, 3},
    {2, 30, {6, 5}, {3, 1}, 3, 1, true, 1},
    {3, 1000, {10, 11, 10}, {2, 3, 2}, 4, 1, true, 8},
    {3, 500, {8, 8, 8}, {5, 3, 1}, 5, 3, false, 3},
    /* the register-tiled backward (k_core_grad_rt, k_parent_grad_rt) with the
     * contraction split unevenly among the lanes: an odd d_0 (5 rows of L_0, the last
     * level's 20 split in 16), three terms; w_1 = 12 (a tile row of 3 column groups) */
    {3, 700, {9, 9, 9}, {5, 4, 4}, 8, 3, true, 0},
    {2, 500, {23, 22}, {3, 12}, 4, 1, false, 0},
};

int main(int argc, char **argv) {
    bool quick = false;
    const char *only = NULL;
    for (int a = 1; a < argc; a++) {
        if (strcmp(argv[a], "--quick") == 0)
            quick = true;
        else if (strcmp(argv[a], "--only") == 0 && a + 1 < argc)
            only = argv[++a];
        else {
            fprintf(stderr, "usage: gpu-equal [--quick] [--only TEXT]\n");
            return 2;
        }
    }
    struct fpd_error err;
    if (cuda_backend(&g_cuda, &err)) {
        fprintf(stderr, "gpu-equal: no CUDA backend: %s\n", err.msg);
        return 2;
    }
    /* every layer with the tree forward (public API), then with the direct forward
     * (--quick: the seed configuration with the tree only) */
    for (int mode = 0; mode < 2; mode++) {
        g_direct = mode == 1;
        const char *tag = g_direct ? " direct" : "";
        for (size_t c = 0; c < sizeof g_cases / sizeof g_cases[0]; c++) {
            const struct ecase *e = &g_cases[c];
            struct fpd_layer_shape s = test_make_shape(e->k, e->rows, e->n, e->d, e->r, e->p);
            struct fpd_layer *l = NULL;
            if (fpd_layer_init(&s, &l, &err)) {
                fprintf(stderr, "gpu-equal: %s\n", err.msg);
                return 1;
            }
            test_fill_random(l, 11 + c, 0.7);
            if (e->perm) {
                int64_t *perm = malloc((size_t)e->rows * sizeof(int64_t)), padded = 1;
                for (int32_t m = 0; m < e->k; m++)
                    padded *= e->n[m];
                /* a shuffled injection into the padded rows: rows go to padded-1-i*step */
                for (int64_t i = 0; i < e->rows; i++)
                    perm[i] = padded - 1 - i;
                uint64_t seed = 5;
                for (int64_t i = e->rows - 1; i > 0; i--) {
                    int64_t j = (int64_t)(test_rand_u64(&seed) % (uint64_t)(i + 1)), t = perm[i];
                    perm[i] = perm[j];
                    perm[j] = t;
                }
                if (fpd_layer_set_row_perm(l, perm, &err)) {
                    fprintf(stderr, "gpu-equal: %s\n", err.msg);
                    return 1;
                }
                free(perm);
            }
            if (e->fc > 0) { /* E, P random: the rows' free part of the cores' order of magnitude */
                float *fe = malloc((size_t)(e->rows * e->fc) * sizeof(float)),
                      *fp = malloc((size_t)(e->fc * s.dim) * sizeof(float));
                uint64_t seed = 31 + c;
                for (int64_t x = 0; x < e->rows * e->fc; x++) fe[x] = (float)test_rand_sym(&seed);
                for (int64_t x = 0; x < e->fc * s.dim; x++) fp[x] = 0.5f * (float)test_rand_sym(&seed);
                if (fpd_layer_set_free_coords(l, e->fc, fe, fp, &err)) {
                    fprintf(stderr, "gpu-equal: %s\n", err.msg);
                    return 1;
                }
                free(fe);
                free(fp);
            }
            char where[96], fcs[32] = "";
            if (e->fc > 0) snprintf(fcs, sizeof fcs, " c=%lld", (long long)e->fc);
            snprintf(where, sizeof where, "k=%d N=%lld D=%lld r=%lld p=%lld%s%s%s", (int)e->k, (long long)e->rows,
                     (long long)s.dim, (long long)e->r, (long long)e->p, e->perm ? " perm" : "", fcs, tag);
            if (!only || strstr(where, only)) run_layer(l, where, e->rows > 5000 ? (quick ? 1000 : 4000) : 300);
            /* quantization-aware training of E (free_qat): the rows rounded on the device
             * as on the host; every kind (--quick: the two symmetric ones) */
            for (int q = quick ? FPD_FREE_INT8_SYM : 0; e->fc > 0 && q < FPD_FREE_KIND_COUNT; q++) {
                char wq[128];
                snprintf(wq, sizeof wq, "%s qat=%s", where, fpd_free_kind_name((enum fpd_free_kind)q));
                g_qat = q;
                if (!only || strstr(wq, only)) run_layer(l, wq, e->rows > 5000 ? (quick ? 1000 : 4000) : 300);
                g_qat = -1;
            }
            fpd_layer_free(l);
        }
        /* the seed's configurations on the benchmark's table shape */
        const int64_t cfg[][2] = {{8, 1}, {8, 2}, {16, 2}, {8, 4}, {32, 1}};
        for (size_t c = 0; c < (quick ? (g_direct ? 0 : 1) : sizeof cfg / sizeof cfg[0]); c++) {
            struct fpd_plan_params pp = fpd_plan_default_params();
            pp.rank = cfg[c][0];
            pp.terms = cfg[c][1];
            pp.min_ratio = 0.0;
            struct fpd_plan plan;
            struct fpd_layer *l = NULL;
            if (fpd_plan_table(40000000, 128, FPD_DTYPE_F32, &pp, &plan, &err) ||
                fpd_layer_init(&plan.shape, &l, &err)) {
                fprintf(stderr, "gpu-equal: %s\n", err.msg);
                return 1;
            }
            test_fill_random(l, 21 + c, 0.5);
            char where[64];
            snprintf(where, sizeof where, "seed (%lld,%lld) k=%d 40M x 128%s", (long long)cfg[c][0],
                     (long long)cfg[c][1], (int)plan.shape.k, tag);
            if (!only || strstr(where, only)) run_layer(l, where, quick ? 2048 : 8192);
            fpd_layer_free(l);
        }
    }
    printf("backend: %s\n", fpd_backend_name(g_cuda));
    fpd_backend_free(g_cuda);
    printf("gpu-equal: %d passed, %d failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
}
