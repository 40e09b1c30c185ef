/*
 * backend-impl.h - the private backend operations table (shaped like ggml's
 * ggml_backend_i). Each backend fills one; lib/backend.c picks it. Everything
 * above this seam is backend-agnostic. Pointers passed to the operations are
 * device pointers from the backend's own alloc (host pointers for the CPU).
 *
 * Matrix layout: row-major (C order) everywhere in this interface. The CUDA
 * backend computes C = A B as C^T = B^T A^T in cuBLAS's column-major terms; that
 * is documented once, in lib/cuda/backend-cuda.cu.
 */
#ifndef FPD_BACKEND_IMPL_H
#define FPD_BACKEND_IMPL_H

#include "fpd-impl.h"

#include <stdarg.h>

enum fpd_backend_op { FPD_BACKEND_OP_GEMM, FPD_BACKEND_OP_SVD, FPD_BACKEND_OP_GATHER_ROWS, FPD_BACKEND_OP_COUNT };
enum fpd_copy_kind { FPD_COPY_HOST_TO_DEVICE, FPD_COPY_DEVICE_TO_HOST, FPD_COPY_DEVICE_TO_DEVICE };

struct fpd_backend_i {
    bool (*supports)(void *ctx, enum fpd_backend_op op, enum fpd_dtype dtype);
    enum fpd_status (*alloc)(void *ctx, size_t nbytes, void **out, struct fpd_error *err);
    enum fpd_status (*free)(void *ctx, void *ptr, struct fpd_error *err);
    enum fpd_status (*copy)(void *ctx, void *dst, const void *src, size_t nbytes, enum fpd_copy_kind kind,
                            struct fpd_error *err);
    /* C[m,n] = alpha op(A) op(B) + beta C, F32, row-major */
    enum fpd_status (*gemm)(void *ctx, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                            const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                            int64_t ldc, struct fpd_error *err);
    /* workspace bytes for svd of an [m, n] matrix (LAPACKE lwork = -1 query,
     * cusolverDnSgesvd_bufferSize) */
    enum fpd_status (*svd_workspace)(void *ctx, int64_t m, int64_t n, size_t *nbytes, struct fpd_error *err);
    /* thin SVD of a[m, n] (row-major, destroyed): s[min(m,n)] descending,
     * u[m, min], vt[min, n]; work from svd_workspace */
    enum fpd_status (*svd)(void *ctx, int64_t m, int64_t n, float *a, float *s, float *u, float *vt, void *work,
                           size_t work_nbytes, struct fpd_error *err);
    /* dst[b, :] = src[idx[b], :] for b < n, rows of `cols` floats */
    enum fpd_status (*gather_rows)(void *ctx, const float *src, int64_t cols, const int64_t *idx, int64_t n,
                                   float *dst, struct fpd_error *err);
    enum fpd_status (*synchronize)(void *ctx, struct fpd_error *err);
    void (*destroy)(void *ctx);

    /* Layer-level operations (DESIGN.md section 7): the FPD engine. A backend
     * that has them sets all of them; NULL means unsupported. `state` is the
     * backend's per-layer state (where the cores live, scratch, plan, gradient,
     * optimizer state). Batches reach these operations validated by lib/engine.c
     * (indices in range or padding, offsets well formed; n_bags resolved). */
    enum fpd_status (*engine_create)(void *ctx, struct fpd_layer *layer, const struct fpd_engine_params *params,
                                     void **state, struct fpd_error *err);
    enum fpd_status (*engine_forward)(void *ctx, void *state, const struct fpd_bag_batch *b, int64_t n_bags,
                                      float *out, struct fpd_error *err);
    enum fpd_status (*engine_backward)(void *ctx, void *state, const struct fpd_bag_batch *b, int64_t n_bags,
                                       const float *grad_out, struct fpd_error *err);
    enum fpd_status (*engine_step)(void *ctx, void *state, const struct fpd_optimizer_params *opt,
                                   struct fpd_error *err);
    void (*engine_grad)(void *ctx, void *state, int32_t m, const float **grad, const int64_t **slices,
                        int64_t *n_slices);
    void (*engine_zero_grad)(void *ctx, void *state);
    double (*engine_flops)(void *ctx, void *state);
    void (*engine_destroy)(void *ctx, void *state);
};

struct fpd_backend {
    enum fpd_backend_kind kind;
    struct fpd_backend_i iface;
    void *ctx;
    char name[128];
};

/* CPU backend; always built. */
enum fpd_status fpd__cpu_backend_create(struct fpd_backend *be, struct fpd_error *err);
/* The CPU engine's operations (lib/cpu/engine-cpu.c), set into iface. */
void fpd__cpu_engine_ops(struct fpd_backend_i *iface);

#ifdef FPD_USE_CUDA
#ifdef __cplusplus
extern "C" {
#endif
/* CUDA backend on `device`; built with CUDA=1 (lib/cuda/backend-cuda.cu). */
enum fpd_status fpd__cuda_backend_create(struct fpd_backend *be, int device, struct fpd_error *err);
/* Number of CUDA devices (0 when there is no driver or device). */
int fpd__cuda_device_count(void);
#ifdef __cplusplus
}
#endif
#endif

/* Access for tests and the library: the operations table of a backend. */
const struct fpd_backend_i *fpd__backend_iface(const struct fpd_backend *be, void **ctx);

/* ------------------------------------------------------------------------
 * Loadable backends (the CUDA backend, build/libfpd-cuda.so). lib/backend.c, the
 * registry, opens the shared object with dlopen the first time CUDA is asked for
 * (the model is ggml's backend registry: ggml_backend_load, whose object exports
 * ggml_backend_init and whose api_version is checked) and calls its one exported
 * function
 *
 *   const struct fpd_backend_plugin *fpd_backend_plugin_init(const struct fpd_backend_host *host);
 *
 * (FPD_BACKEND_PLUGIN_SYMBOL, extern "C", default visibility). host stays valid for
 * the life of the process; the returned plugin table is static in the object (or
 * NULL when the object refuses host: another abi_version). The object is never
 * closed. The registry refuses an object whose abi_version or any of whose
 * layout sizes differs from its own (a stale build), naming what differs.
 *
 * The object cannot call libfpd's functions directly (libfpd.so hides its
 * private symbols and the tools link libfpd.a statically), so libfpd passes the
 * few host functions a backend needs in struct fpd_backend_host, and
 * lib/cuda/plugin-host.c (linked into the object) defines fpd__err, fpd_malloc,
 * fpd_layer_core, ... on top of it: code in the object calls them as anywhere in
 * lib/. Anything else from libfpd does not link (the object is linked with
 * -Wl,--no-undefined). Bump FPD_BACKEND_ABI_VERSION when a field is added to these
 * two structs or to struct fpd_backend_i, or when what an engine must compute
 * changes (4: the engine computes free coordinates; an ABI 3 object refused them;
 * 5: fpd_engine_params.free_qat, which an engine must honour or refuse; 6: a layer
 * may hold E as stored rows, read through layer_free_row). */
#define FPD_BACKEND_ABI_VERSION 6
#define FPD_BACKEND_PLUGIN_SYMBOL "fpd_backend_plugin_init"

/* The layout sizes both sides compare (struct size in bytes, in this order). */
enum fpd_backend_abi_struct {
    FPD_ABI_BACKEND = 0,     /* struct fpd_backend           */
    FPD_ABI_BACKEND_I,       /* struct fpd_backend_i         */
    FPD_ABI_ENGINE_PARAMS,   /* struct fpd_engine_params     */
    FPD_ABI_OPTIMIZER,       /* struct fpd_optimizer_params  */
    FPD_ABI_BAG_BATCH,       /* struct fpd_bag_batch         */
    FPD_ABI_LAYER_SHAPE,     /* struct fpd_layer_shape       */
    FPD_ABI_ERROR,           /* struct fpd_error             */
    FPD_ABI_HOST,            /* struct fpd_backend_host      */
    FPD_ABI_PLUGIN,          /* struct fpd_backend_plugin    */
    FPD_ABI_COUNT
};
#define FPD_BACKEND_ABI_SIZES                                                                            \
    {                                                                                                    \
        sizeof(struct fpd_backend), sizeof(struct fpd_backend_i), sizeof(struct fpd_engine_params),      \
            sizeof(struct fpd_optimizer_params), sizeof(struct fpd_bag_batch),                           \
            sizeof(struct fpd_layer_shape), sizeof(struct fpd_error), sizeof(struct fpd_backend_host),   \
            sizeof(struct fpd_backend_plugin)                                                            \
    }

/* What libfpd gives a backend object (filled by lib/backend.c). */
struct fpd_backend_host {
    uint32_t abi_version;    /* FPD_BACKEND_ABI_VERSION of libfpd */
    const char *version;     /* fpd_version() of libfpd */
    enum fpd_status (*verr)(struct fpd_error *err, enum fpd_status status, const char *fmt, va_list ap);
    void (*vlog)(enum fpd_log_level level, const char *fmt, va_list ap);
    void *(*malloc)(size_t size); /* fpd_malloc (the allocator set by fpd_allocator_set) */
    void (*free)(void *ptr);      /* fpd_free */
    /* the layer and batch accessors a backend's engine reads (lib/fpd.h) */
    const struct fpd_layer_shape *(*layer_get_shape)(const struct fpd_layer *layer);
    float *(*layer_core)(struct fpd_layer *layer, int32_t m);
    const float *(*layer_core_const)(const struct fpd_layer *layer, int32_t m);
    const int64_t *(*layer_row_perm)(const struct fpd_layer *layer);
    int64_t (*layer_get_free_coords)(const struct fpd_layer *layer); /* ABI 2: free coordinates */
    float *(*layer_get_free_e)(struct fpd_layer *layer);
    const float *(*layer_get_free_e_const)(const struct fpd_layer *layer);
    float *(*layer_get_free_p)(struct fpd_layer *layer);
    const float *(*layer_get_free_p_const)(const struct fpd_layer *layer);
    int64_t (*layer_shape_core_numel)(const struct fpd_layer_shape *s, int32_t m);
    int64_t (*bag_batch_out_rows)(const struct fpd_bag_batch *b);
    void (*adam_update)(float *x, const float *g, float *m1, float *m2, int64_t n, float lr, float beta1,
                        float beta2, float eps, float bc1, float bc2);
    /* ABI 5: quantization-aware training of E (fpd_engine_params.free_qat) */
    void (*free_fake_quant_row)(enum fpd_free_kind kind, const float *x, int64_t c, float *out);
    /* ABI 6: E held as stored rows (fpd_layer_get_free_stored, fpd_layer_free_row) */
    const uint8_t *(*layer_get_free_stored)(const struct fpd_layer *layer, enum fpd_free_kind *kind);
    void (*layer_free_row)(const struct fpd_layer *layer, int64_t i, float *out);
};

/* What a backend object gives back: static in the object. */
struct fpd_backend_plugin {
    uint32_t abi_version;           /* FPD_BACKEND_ABI_VERSION the object was built with */
    uint32_t sizes[FPD_ABI_COUNT];  /* FPD_BACKEND_ABI_SIZES as the object was built */
    enum fpd_backend_kind kind;     /* FPD_BACKEND_KIND_CUDA */
    const char *name;               /* "cuda" */
    /* Devices present. 0 when there are none, with the reason in err (no driver,
     * no device, the driver's error text). */
    int (*device_count)(struct fpd_error *err);
    /* Fill be (kind, iface, ctx, name; be arrives zeroed) for device index
     * `device` (0-based, below device_count). Errors: BACKEND (no such device, a
     * driver error), NOMEM. */
    enum fpd_status (*create)(struct fpd_backend *be, int device, struct fpd_error *err);
};

#ifdef __cplusplus
extern "C" {
#endif
typedef const struct fpd_backend_plugin *(*fpd_backend_plugin_init_fn)(const struct fpd_backend_host *host);

/* Inside a backend object (lib/cuda/plugin-host.c): keep host for the shims;
 * false when its abi_version is not FPD_BACKEND_ABI_VERSION. Call first in
 * fpd_backend_plugin_init. */
bool fpd__plugin_host_set(const struct fpd_backend_host *host);

/* The registry (lib/backend.c), for tests: open the backend object at path,
 * check it and return its plugin table (the object stays loaded). Errors: IO
 * (no such file), BACKEND (dlopen's message, the entry symbol missing, the
 * object refused the host), UNSUPPORTED (ABI version or layout mismatch: a stale
 * object, rebuild it). */
enum fpd_status fpd__backend_plugin_open(const char *path, const struct fpd_backend_plugin **out,
                                         struct fpd_error *err);
/* Where the registry looks for the CUDA backend object, in order, as a
 * "; "-separated list into buf (for messages and tests). */
const char *fpd__cuda_backend_search_path(char *buf, size_t len);
#ifdef __cplusplus
}
#endif

#endif
