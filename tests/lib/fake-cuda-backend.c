/*
 * fake-cuda-backend.c - a CUDA backend object for the tests, built only for them
 * (build/libfpd-fakecuda-*.so; `make fake-backends`, and with build/test-fpd). It
 * exports the CUDA backend's entry point (fpd_backend_plugin_init, backend-impl.h)
 * but runs everything on the host: the backend it creates is the CPU backend
 * (lib/cpu, linked into the object) named "fakecuda:N (host memory)" with kind
 * CUDA. So the registry's load path, the tools' --device cuda and fpd-batch's
 * `device: cuda` can be tested without a GPU, and what they compute must equal the
 * CPU's exactly.
 *
 * Run-time knobs (environment):
 *   FPD_FAKE_CUDA_DEVICES=N   devices reported (default 1; 0: "no CUDA device")
 *   FPD_FAKE_CUDA_NO_ENGINE=1 the backend has no engine operations
 *   FPD_FAKE_CUDA_LOG=FILE    each backend destroyed appends a line
 *                             "fakecuda device=D forward=F backward=B step=S" with
 *                             the engine calls it ran, proving the work went here
 * Build variants (-D): FAKE_ABI_VERSION=V (a stale object), FAKE_BAD_LAYOUT (one
 * layout size off), FAKE_NO_ENTRY (no entry symbol), FAKE_REFUSE (the entry point
 * refuses the host: returns NULL).
 */
#include "lib/backend-impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef FAKE_ABI_VERSION
#define FAKE_ABI_VERSION FPD_BACKEND_ABI_VERSION
#endif

struct fake_ctx {
    void *cpu_ctx;
    struct fpd_backend_i cpu; /* the CPU backend's operations */
    int device;
    long forward, backward, step;
};

static struct fpd_backend_i *cpu_ops(void *ctx) { return &((struct fake_ctx *)ctx)->cpu; }
static void *cpu_ctx(void *ctx) { return ((struct fake_ctx *)ctx)->cpu_ctx; }

/* Every operation forwards to the CPU backend's with its context. */
static bool f_supports(void *ctx, enum fpd_backend_op op, enum fpd_dtype dtype) {
    return cpu_ops(ctx)->supports(cpu_ctx(ctx), op, dtype);
}
static enum fpd_status f_alloc(void *ctx, size_t nbytes, void **out, struct fpd_error *err) {
    return cpu_ops(ctx)->alloc(cpu_ctx(ctx), nbytes, out, err);
}
static enum fpd_status f_free(void *ctx, void *ptr, struct fpd_error *err) {
    return cpu_ops(ctx)->free(cpu_ctx(ctx), ptr, err);
}
static enum fpd_status f_copy(void *ctx, void *dst, const void *src, size_t nbytes, enum fpd_copy_kind kind,
                              struct fpd_error *err) {
    return cpu_ops(ctx)->copy(cpu_ctx(ctx), dst, src, nbytes, kind, err);
}
static enum fpd_status f_gemm(void *ctx, bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                              const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                              int64_t ldc, struct fpd_error *err) {
    return cpu_ops(ctx)->gemm(cpu_ctx(ctx), ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, err);
}
static enum fpd_status f_svd_workspace(void *ctx, int64_t m, int64_t n, size_t *nbytes, struct fpd_error *err) {
    return cpu_ops(ctx)->svd_workspace(cpu_ctx(ctx), m, n, nbytes, err);
}
static enum fpd_status f_svd(void *ctx, int64_t m, int64_t n, float *a, float *s, float *u, float *vt, void *work,
                             size_t work_nbytes, struct fpd_error *err) {
    return cpu_ops(ctx)->svd(cpu_ctx(ctx), m, n, a, s, u, vt, work, work_nbytes, err);
}
static enum fpd_status f_gather_rows(void *ctx, const float *src, int64_t cols, const int64_t *idx, int64_t n,
                                     float *dst, struct fpd_error *err) {
    return cpu_ops(ctx)->gather_rows(cpu_ctx(ctx), src, cols, idx, n, dst, err);
}
static enum fpd_status f_synchronize(void *ctx, struct fpd_error *err) {
    return cpu_ops(ctx)->synchronize(cpu_ctx(ctx), err);
}
static void f_destroy(void *ctx) {
    struct fake_ctx *c = ctx;
    const char *log = getenv("FPD_FAKE_CUDA_LOG");
    if (log && *log) {
        FILE *f = fopen(log, "a");
        if (f) {
            fprintf(f, "fakecuda device=%d forward=%ld backward=%ld step=%ld\n", c->device, c->forward, c->backward,
                    c->step);
            fclose(f);
        }
    }
    if (c->cpu.destroy) c->cpu.destroy(c->cpu_ctx);
    fpd_free(c);
}

static enum fpd_status f_engine_create(void *ctx, struct fpd_layer *layer, const struct fpd_engine_params *params,
                                       void **state, struct fpd_error *err) {
    return cpu_ops(ctx)->engine_create(cpu_ctx(ctx), layer, params, state, err);
}
static enum fpd_status f_engine_forward(void *ctx, void *state, const struct fpd_bag_batch *b, int64_t n_bags,
                                        float *out, struct fpd_error *err) {
    ((struct fake_ctx *)ctx)->forward++;
    return cpu_ops(ctx)->engine_forward(cpu_ctx(ctx), state, b, n_bags, out, err);
}
static enum fpd_status f_engine_backward(void *ctx, void *state, const struct fpd_bag_batch *b, int64_t n_bags,
                                         const float *grad_out, struct fpd_error *err) {
    ((struct fake_ctx *)ctx)->backward++;
    return cpu_ops(ctx)->engine_backward(cpu_ctx(ctx), state, b, n_bags, grad_out, err);
}
static enum fpd_status f_engine_step(void *ctx, void *state, const struct fpd_optimizer_params *opt,
                                     struct fpd_error *err) {
    ((struct fake_ctx *)ctx)->step++;
    return cpu_ops(ctx)->engine_step(cpu_ctx(ctx), state, opt, err);
}
static void f_engine_grad(void *ctx, void *state, int32_t m, const float **grad, const int64_t **slices,
                          int64_t *n_slices) {
    cpu_ops(ctx)->engine_grad(cpu_ctx(ctx), state, m, grad, slices, n_slices);
}
static void f_engine_zero_grad(void *ctx, void *state) { cpu_ops(ctx)->engine_zero_grad(cpu_ctx(ctx), state); }
static double f_engine_flops(void *ctx, void *state) { return cpu_ops(ctx)->engine_flops(cpu_ctx(ctx), state); }
static void f_engine_destroy(void *ctx, void *state) { cpu_ops(ctx)->engine_destroy(cpu_ctx(ctx), state); }

static int fake_devices(void) {
    const char *s = getenv("FPD_FAKE_CUDA_DEVICES");
    return s && *s ? atoi(s) : 1;
}

static int fake_device_count(struct fpd_error *err) {
    int n = fake_devices();
    if (n <= 0) {
        fpd__err(err, FPD_STATUS_BACKEND, "no CUDA device: the fake backend reports none (FPD_FAKE_CUDA_DEVICES=0)");
        return 0;
    }
    return n;
}

static enum fpd_status fake_create(struct fpd_backend *be, int device, struct fpd_error *err) {
    struct fake_ctx *c = fpd_calloc(1, sizeof *c);
    if (!c) return fpd__err(err, FPD_STATUS_NOMEM, "out of memory for the fake CUDA backend");
    struct fpd_backend cpu;
    memset(&cpu, 0, sizeof cpu);
    enum fpd_status st = fpd__cpu_backend_create(&cpu, err);
    if (st) {
        fpd_free(c);
        return st;
    }
    c->cpu = cpu.iface;
    c->cpu_ctx = cpu.ctx;
    c->device = device;
    struct fpd_backend_i *i = &be->iface;
    memset(i, 0, sizeof *i);
    i->supports = f_supports;
    i->alloc = f_alloc;
    i->free = f_free;
    i->copy = f_copy;
    i->gemm = f_gemm;
    i->svd_workspace = f_svd_workspace;
    i->svd = f_svd;
    i->gather_rows = f_gather_rows;
    i->synchronize = f_synchronize;
    i->destroy = f_destroy;
    const char *ne = getenv("FPD_FAKE_CUDA_NO_ENGINE");
    if (!(ne && *ne && strcmp(ne, "0") != 0) && c->cpu.engine_create) {
        i->engine_create = f_engine_create;
        i->engine_forward = f_engine_forward;
        i->engine_backward = f_engine_backward;
        i->engine_step = f_engine_step;
        i->engine_grad = f_engine_grad;
        i->engine_zero_grad = f_engine_zero_grad;
        i->engine_flops = f_engine_flops;
        i->engine_destroy = f_engine_destroy;
    }
    be->kind = FPD_BACKEND_KIND_CUDA;
    be->ctx = c;
    snprintf(be->name, sizeof be->name, "fakecuda:%d (host memory)", device);
    return FPD_STATUS_OK;
}

#ifndef FAKE_NO_ENTRY
static const struct fpd_backend_plugin fake_plugin = {
    .abi_version = FAKE_ABI_VERSION,
    .sizes = FPD_BACKEND_ABI_SIZES,
    .kind = FPD_BACKEND_KIND_CUDA,
    .name = "fakecuda",
    .device_count = fake_device_count,
    .create = fake_create,
};

__attribute__((visibility("default"))) const struct fpd_backend_plugin *
fpd_backend_plugin_init(const struct fpd_backend_host *host);

const struct fpd_backend_plugin *fpd_backend_plugin_init(const struct fpd_backend_host *host) {
    if (!fpd__plugin_host_set(host)) return NULL;
#ifdef FAKE_REFUSE
    return fake_plugin.abi_version == 0 ? &fake_plugin : NULL; /* NULL: abi_version is never 0 here */
#elif defined(FAKE_BAD_LAYOUT)
    static struct fpd_backend_plugin bad;
    bad = fake_plugin;
    bad.sizes[FPD_ABI_BACKEND_I] += 8; /* as if built with one more operation */
    return &bad;
#else
    return &fake_plugin;
#endif
}
#else
/* no entry point: some other exported function */
__attribute__((visibility("default"))) int fpd_fake_backend_without_entry(void);
int fpd_fake_backend_without_entry(void) {
    struct fpd_backend be;
    memset(&be, 0, sizeof be);
    return fake_device_count(NULL) > 0 && fake_create(&be, 0, NULL) == FPD_STATUS_OK;
}
#endif
