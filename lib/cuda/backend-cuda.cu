/*
 * backend-cuda.cu - the CUDA backend: cudaMalloc'ed device memory, cuBLAS GEMM,
 * cuSOLVER SVD, a gather kernel. Built only with CUDA=1 (or CUDA=auto and nvcc).
 *
 * Layout: the backend interface is row-major. cuBLAS and cuSOLVER are
 * column-major, and a row-major [m, n] matrix is the column-major [n, m] matrix
 * of its transpose. So C = op(A) op(B) (row-major) is computed as
 * C^T = op(B)^T op(A)^T: cublasSgemm with the operands swapped (B first), m and n
 * swapped, the same transpose flags. For the SVD, row-major A [m, n] is
 * column-major A^T [n, m]; gesvd of A^T = V S U^T gives, read back row-major,
 * u and vt with their roles exchanged (documented at cuda_svd).
 *
 * Errors are returned (FPD_STATUS_BACKEND with the call, file:line and the
 * library's string), never aborted.
 */
#include "../backend-impl.h"
#include "engine-cuda.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <string.h>

struct cuda_ctx {
    int device;
    cudaStream_t stream;
    cublasHandle_t blas;
    cusolverDnHandle_t solver;
};

/* The context's device, for the engine (engine-cuda.cu). */
extern "C" int fpd__cuda_ctx_device(void *ctx) { return ((struct cuda_ctx *)ctx)->device; }

#define CUDA_TRY(call)                                                                                   \
    do {                                                                                                 \
        cudaError_t e_ = (call);                                                                         \
        if (e_ != cudaSuccess)                                                                           \
            return fpd__err(err, FPD_STATUS_BACKEND, "%s at %s:%d: %s", #call, __FILE__, __LINE__,       \
                            cudaGetErrorString(e_));                                                     \
    } while (0)
#define CUBLAS_TRY(call)                                                                                 \
    do {                                                                                                 \
        cublasStatus_t e_ = (call);                                                                      \
        if (e_ != CUBLAS_STATUS_SUCCESS)                                                                 \
            return fpd__err(err, FPD_STATUS_BACKEND, "%s at %s:%d: %s", #call, __FILE__, __LINE__,       \
                            cublasGetStatusString(e_));                                                  \
    } while (0)
#define CUSOLVER_TRY(call)                                                                               \
    do {                                                                                                 \
        cusolverStatus_t e_ = (call);                                                                    \
        if (e_ != CUSOLVER_STATUS_SUCCESS)                                                               \
            return fpd__err(err, FPD_STATUS_BACKEND, "%s at %s:%d: cusolver status %d", #call, __FILE__, \
                            __LINE__, (int)e_);                                                          \
    } while (0)

static bool cuda_supports(void *ctx, enum fpd_backend_op op, enum fpd_dtype dtype) {
    (void)ctx;
    (void)op;
    return dtype == FPD_DTYPE_F32;
}

static enum fpd_status cuda_alloc(void *ctx, size_t nbytes, void **out, struct fpd_error *err) {
    (void)ctx;
    *out = NULL;
    if (nbytes == 0) return FPD_STATUS_OK;
    CUDA_TRY(cudaMalloc(out, nbytes));
    return FPD_STATUS_OK;
}

static enum fpd_status cuda_free(void *ctx, void *ptr, struct fpd_error *err) {
    (void)ctx;
    if (ptr) CUDA_TRY(cudaFree(ptr));
    return FPD_STATUS_OK;
}

static enum fpd_status cuda_copy(void *ctx, void *dst, const void *src, size_t nbytes, enum fpd_copy_kind kind,
                                 struct fpd_error *err) {
    struct cuda_ctx *c = (struct cuda_ctx *)ctx;
    cudaMemcpyKind k = kind == FPD_COPY_HOST_TO_DEVICE   ? cudaMemcpyHostToDevice
                       : kind == FPD_COPY_DEVICE_TO_HOST ? cudaMemcpyDeviceToHost
                                                         : cudaMemcpyDeviceToDevice;
    if (nbytes == 0) return FPD_STATUS_OK;
    CUDA_TRY(cudaMemcpyAsync(dst, src, nbytes, k, c->stream));
    CUDA_TRY(cudaStreamSynchronize(c->stream));
    return FPD_STATUS_OK;
}

static enum fpd_status cuda_gemm(void *ctx, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                                 const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *cm,
                                 int64_t ldc, struct fpd_error *err) {
    struct cuda_ctx *c = (struct cuda_ctx *)ctx;
    if (m == 0 || n == 0) return FPD_STATUS_OK;
    /* row-major C = op(A) op(B)  <=>  column-major C^T = op(B)^T op(A)^T */
    CUBLAS_TRY(cublasSgemm(c->blas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, (int)n,
                           (int)m, (int)k, &alpha, b, (int)ldb, a, (int)lda, &beta, cm, (int)ldc));
    return FPD_STATUS_OK;
}

/* cusolverDnSgesvd needs rows >= cols in column-major terms. Row-major a[m, n]
 * is column-major a^T [n, m]; we require n >= m here (a wide row-major matrix),
 * and fall back with UNSUPPORTED otherwise (callers transpose). */
static enum fpd_status cuda_svd_workspace(void *ctx, int64_t m, int64_t n, size_t *nbytes, struct fpd_error *err) {
    struct cuda_ctx *c = (struct cuda_ctx *)ctx;
    if (n < m)
        return fpd__err(err, FPD_STATUS_UNSUPPORTED, "cuSOLVER gesvd needs a wide row-major matrix (%lld x %lld)",
                        (long long)m, (long long)n);
    int lwork = 0;
    CUSOLVER_TRY(cusolverDnSgesvd_bufferSize(c->solver, (int)n, (int)m, &lwork));
    *nbytes = (size_t)lwork * sizeof(float) + sizeof(int);
    return FPD_STATUS_OK;
}

/* Row-major a[m, n], n >= m: column-major A^T [n, m] = U' S V'^T with U' [n, m]
 * (column-major) and V'^T [m, m]. Then A = V' S U'^T, so row-major
 * u[m, m] = V' (its column-major transpose V'^T, read row-major, is V') and
 * vt[m, n] = U'^T (column-major U' [n, m] read row-major is U'^T [m, n]). */
static enum fpd_status cuda_svd(void *ctx, int64_t m, int64_t n, float *a, float *s, float *u, float *vt, void *work,
                                size_t work_nbytes, struct fpd_error *err) {
    struct cuda_ctx *c = (struct cuda_ctx *)ctx;
    int lwork = (int)((work_nbytes - sizeof(int)) / sizeof(float));
    int *info = (int *)((char *)work + (size_t)lwork * sizeof(float));
    CUSOLVER_TRY(cusolverDnSgesvd(c->solver, 'S', 'S', (int)n, (int)m, a, (int)n, s, vt, (int)n, u, (int)m,
                                  (float *)work, lwork, NULL, info));
    int h_info = 0;
    CUDA_TRY(cudaMemcpyAsync(&h_info, info, sizeof h_info, cudaMemcpyDeviceToHost, c->stream));
    CUDA_TRY(cudaStreamSynchronize(c->stream));
    if (h_info < 0) return fpd__err(err, FPD_STATUS_INVALID_ARG, "cusolverDnSgesvd: argument %d is invalid", -h_info);
    if (h_info > 0) return fpd__err(err, FPD_STATUS_NUMERIC, "cusolverDnSgesvd did not converge (info %d)", h_info);
    return FPD_STATUS_OK;
}

__global__ static void gather_kernel(const float *src, int64_t cols, const int64_t *idx, int64_t n, float *dst) {
    int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= n * cols) return;
    int64_t b = e / cols, j = e % cols;
    dst[e] = src[idx[b] * cols + j];
}

static enum fpd_status cuda_gather_rows(void *ctx, const float *src, int64_t cols, const int64_t *idx, int64_t n,
                                        float *dst, struct fpd_error *err) {
    struct cuda_ctx *c = (struct cuda_ctx *)ctx;
    int64_t total = n * cols;
    if (total == 0) return FPD_STATUS_OK;
    unsigned blocks = (unsigned)((total + 255) / 256);
    gather_kernel<<<blocks, 256, 0, c->stream>>>(src, cols, idx, n, dst);
    CUDA_TRY(cudaGetLastError());
    return FPD_STATUS_OK;
}

static enum fpd_status cuda_synchronize(void *ctx, struct fpd_error *err) {
    struct cuda_ctx *c = (struct cuda_ctx *)ctx;
    CUDA_TRY(cudaStreamSynchronize(c->stream));
    return FPD_STATUS_OK;
}

static void cuda_destroy(void *ctx) {
    struct cuda_ctx *c = (struct cuda_ctx *)ctx;
    if (!c) return;
    if (c->solver) cusolverDnDestroy(c->solver);
    if (c->blas) cublasDestroy(c->blas);
    if (c->stream) cudaStreamDestroy(c->stream);
    fpd_free(c);
}

extern "C" int fpd__cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
    return n;
}

static enum fpd_status cuda_setup(struct cuda_ctx *c, int device, struct fpd_error *err) {
    CUDA_TRY(cudaSetDevice(device));
    CUDA_TRY(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    CUBLAS_TRY(cublasCreate(&c->blas));
    CUBLAS_TRY(cublasSetStream(c->blas, c->stream));
    CUSOLVER_TRY(cusolverDnCreate(&c->solver));
    CUSOLVER_TRY(cusolverDnSetStream(c->solver, c->stream));
    return FPD_STATUS_OK;
}

extern "C" enum fpd_status fpd__cuda_backend_create(struct fpd_backend *be, int device, struct fpd_error *err) {
    int count = fpd__cuda_device_count();
    if (device < 0 || device >= count)
        return fpd__err(err, FPD_STATUS_BACKEND, "no CUDA device %d (%d found)", device, count);
    struct cuda_ctx *c = (struct cuda_ctx *)fpd_calloc(1, sizeof *c);
    if (!c) return fpd__err(err, FPD_STATUS_NOMEM, "out of memory for the CUDA backend");
    c->device = device;
    enum fpd_status st = cuda_setup(c, device, err);
    if (st) {
        cuda_destroy(c);
        return st;
    }
    cudaDeviceProp prop;
    memset(&prop, 0, sizeof prop);
    cudaGetDeviceProperties(&prop, device);
    be->kind = FPD_BACKEND_KIND_CUDA;
    be->ctx = c;
    memset(&be->iface, 0, sizeof be->iface);
    be->iface.supports = cuda_supports;
    be->iface.alloc = cuda_alloc;
    be->iface.free = cuda_free;
    be->iface.copy = cuda_copy;
    be->iface.gemm = cuda_gemm;
    be->iface.svd_workspace = cuda_svd_workspace;
    be->iface.svd = cuda_svd;
    be->iface.gather_rows = cuda_gather_rows;
    be->iface.synchronize = cuda_synchronize;
    be->iface.destroy = cuda_destroy;
    fpd__cuda_engine_ops(&be->iface);
    snprintf(be->name, sizeof be->name, "cuda:%d (%s)", device, prop.name);
    return FPD_STATUS_OK;
}

/* ------------------------------------------------------------------------
 * The entry point of build/libfpd-cuda.so (backend-impl.h, "Loadable backends"):
 * lib/backend.c opens this object with dlopen on the first request for CUDA and
 * calls fpd_backend_plugin_init. Keep this at the end of the file. */

static int cuda_plugin_device_count(struct fpd_error *err) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        fpd__err(err, FPD_STATUS_BACKEND, "no CUDA device: %s", cudaGetErrorString(e));
        return 0;
    }
    if (n == 0) fpd__err(err, FPD_STATUS_BACKEND, "no CUDA device: the driver reports none");
    return n;
}

static const struct fpd_backend_plugin cuda_plugin = {
    FPD_BACKEND_ABI_VERSION,       FPD_BACKEND_ABI_SIZES,    FPD_BACKEND_KIND_CUDA, "cuda",
    cuda_plugin_device_count, fpd__cuda_backend_create,
};

extern "C" __attribute__((visibility("default"))) const struct fpd_backend_plugin *
fpd_backend_plugin_init(const struct fpd_backend_host *host) {
    if (!fpd__plugin_host_set(host)) return NULL;
    return &cuda_plugin;
}
