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

#endif
