/*
 * bench-gpu.cu - the CUDA FPD engine against a dense EmbeddingBag on the same
 * GPU, device-resident on both sides (no host copies timed): rows/s.
 *
 *   forward:  dense gather + sum pooling (a kernel of this file: one warp per
 *             bag, float4 loads)  vs  the FPD engine's forward (sort, de-dup,
 *             prefix partials, rows, pooling)
 *   train:    dense gather + backward as an atomic scatter-add of -lr g into the
 *             table (SGD fused into the scatter: the cheapest dense update)  vs
 *             FPD forward + backward + row-wise Adagrad step (FBGEMM's exact
 *             row-wise Adagrad on the touched core slices)
 *   fwd+bwd:  FPD forward + backward alone, in microseconds per look-up (the
 *             figure FBTT-Embedding publishes: 0.416 us for its TT layer)
 * Every FPD figure twice: the tree forward (the engine's default) and the
 * direct forward (one kernel, no sort; the backward then plans), "tree / direct".
 *
 * Batch: B indices in bags of 1 (DLRM's pooling factor), Zipf(1.05) over the
 * table's rows (id = popularity rank), 8 batches drawn once and cycled. Dense
 * table N x D F32 (default 40,000,000 x 128, 20.5 GB). FPD: the heuristic's
 * shape for each of the seed's (r, p), random cores. Each figure is the median
 * of 5 timed runs of `reps` iterations (cudaEvent), after a warm-up.
 *
 * Usage: bench-gpu [N [D [B [reps]]]]   (FPD_BENCH_QUICK=1: N = 4,000,000)
 *
 * GMF training (NCF's generalized matrix factorization, He et al., WWW 2017):
 * logit = h . (u * v) for a user row u and an item row v, sigmoid, binary cross
 * entropy against a label; one step = gather both rows, the loss's gradient
 * (a kernel of this file, shared by both sides), and SGD on the rows and on h.
 * Dense: gathers and atomic scatter-adds into two dense tables. FPD: two engines
 * (mode NONE forward, backward, SGD step). Users Zipf(1.05) over N rows, items
 * Zipf(1.05) over N / 10 rows, B samples a step, random labels: samples/s.
 */
#include <cuda_runtime.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* backend-impl.h's own declarations have C linkage but no extern "C" of their own */
extern "C" {
#include "heuristics/fpd-heuristics.h"
#include "lib/cuda/engine-cuda.h"
#include "lib/fpd-impl.h"
#include "tests/gpu/gpu-backend.h"
}

#define CK(call)                                                                                         \
    do {                                                                                                 \
        cudaError_t e_ = (call);                                                                         \
        if (e_ != cudaSuccess) {                                                                         \
            fprintf(stderr, "bench-gpu: %s at %s:%d: %s\n", #call, __FILE__, __LINE__,                  \
                    cudaGetErrorString(e_));                                                             \
            exit(1);                                                                                     \
        }                                                                                                \
    } while (0)
#define FK(call)                                                                                         \
    do {                                                                                                 \
        if ((call) != FPD_STATUS_OK) {                                                                   \
            fprintf(stderr, "bench-gpu: %s: %s\n", #call, err.msg);                                      \
            exit(1);                                                                                     \
        }                                                                                                \
    } while (0)

/* Zipf(s) over [0, n) by the inverse CDF (as tests/bench/bench-util.h, in C++):
 * the unnormalized CDF c[i] = sum_{q <= i} (q + 1)^-s, then a binary search */
static double *zipf_cdf(int64_t n, double s) {
    double *c = (double *)malloc((size_t)n * sizeof(double)), acc = 0.0;
    if (!c) return NULL;
    for (int64_t i = 0; i < n; i++) c[i] = acc += pow((double)(i + 1), -s);
    return c;
}
static int64_t zipf_draw(const double *c, int64_t n, uint64_t *rng) {
    const double u = fpd__rand_uniform(rng) * c[n - 1];
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        if (c[mid] > u) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

/* ------------------------------------------------------------ dense EmbeddingBag */

__global__ static void k_dense_init(float *w, int64_t total) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        uint64_t z = (uint64_t)i * 0x9E3779B97F4A7C15ull;
        z = (z ^ (z >> 31)) * 0xBF58476D1CE4E5B9ull;
        w[i] = (float)((z >> 40) & 0xffff) * (1.0f / 65536.0f) - 0.5f;
    }
}

/* out[b] = sum of the bag's rows (bags of L consecutive indices): one warp per bag */
__global__ static void k_dense_gather(const float *w, int64_t D, const int64_t *idx, int64_t n_bags, int64_t L,
                                      float *out) {
    const int64_t bag = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    const int lane = threadIdx.x % 32;
    if (bag >= n_bags) return;
    if ((D & 3) == 0) {
        for (int64_t j = lane * 4; j < D; j += 128) {
            float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
            for (int64_t q = 0; q < L; q++) {
                const float4 v = *(const float4 *)(w + idx[bag * L + q] * D + j);
                acc.x += v.x;
                acc.y += v.y;
                acc.z += v.z;
                acc.w += v.w;
            }
            *(float4 *)(out + bag * D + j) = acc;
        }
    } else {
        for (int64_t j = lane; j < D; j += 32) {
            float acc = 0.f;
            for (int64_t q = 0; q < L; q++) acc += w[idx[bag * L + q] * D + j];
            out[bag * D + j] = acc;
        }
    }
}

/* w[idx] -= lr g[bag] for every entry (atomics: repeated rows collide) */
__global__ static void k_dense_scatter(float *w, int64_t D, const int64_t *idx, int64_t n_bags, int64_t L,
                                       const float *g, float lr) {
    const int64_t bag = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    const int lane = threadIdx.x % 32;
    if (bag >= n_bags) return;
    for (int64_t q = 0; q < L; q++) {
        float *row = w + idx[bag * L + q] * D;
        for (int64_t j = lane; j < D; j += 32) atomicAdd(row + j, -lr * g[bag * D + j]);
    }
}

/* GMF's loss gradient, one warp per sample: p = sigmoid(h . (u * v)), e = (p - y) / B,
 * du = e h * v, dv = e h * u, dh += e u * v (atomics over the batch) */
__global__ static void k_gmf_grad(const float *u, const float *v, const float *h, const float *y, int64_t B,
                                  int64_t D, float *du, float *dv, float *dh) {
    const int64_t s = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    const int lane = threadIdx.x % 32;
    if (s >= B) return;
    float dot = 0.f;
    for (int64_t j = lane; j < D; j += 32) dot += h[j] * u[s * D + j] * v[s * D + j];
    for (int o = 16; o > 0; o /= 2) dot += __shfl_xor_sync(0xffffffffu, dot, o);
    const float e = (1.f / (1.f + expf(-dot)) - y[s]) / (float)B;
    for (int64_t j = lane; j < D; j += 32) {
        du[s * D + j] = e * h[j] * v[s * D + j];
        dv[s * D + j] = e * h[j] * u[s * D + j];
        atomicAdd(dh + j, e * u[s * D + j] * v[s * D + j]);
    }
}

/* h -= lr dh; dh = 0 */
__global__ static void k_gmf_h(float *h, float *dh, int64_t D, float lr) {
    const int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= D) return;
    h[j] -= lr * dh[j];
    dh[j] = 0.f;
}

/* ------------------------------------------------------------ timing */

static int cmp_f(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* median over 5 runs of `reps` calls of fn(i), in seconds per call */
template <typename F> static double time_it(cudaStream_t s, int reps, F fn) {
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    for (int i = 0; i < 3; i++) fn(i);
    CK(cudaStreamSynchronize(s));
    float ms[5];
    for (int run = 0; run < 5; run++) {
        CK(cudaEventRecord(e0, s));
        for (int i = 0; i < reps; i++) fn(i);
        CK(cudaEventRecord(e1, s));
        CK(cudaEventSynchronize(e1));
        CK(cudaEventElapsedTime(&ms[run], e0, e1));
    }
    CK(cudaGetLastError());
    qsort(ms, 5, sizeof(float), cmp_f);
    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
    return (double)ms[2] / 1000.0 / reps;
}

static struct fpd_layer *random_layer(int64_t rows, int64_t D, int64_t r, int64_t p, double scale, int32_t *k) {
    struct fpd_error err;
    struct fpd_plan_params pp = fpd_plan_default_params();
    pp.rank = r;
    pp.terms = p;
    pp.min_ratio = 0.0;
    pp.min_rows = 1;
    struct fpd_plan plan;
    FK(fpd_plan_table(rows, D, FPD_DTYPE_F32, &pp, &plan, &err));
    struct fpd_layer *layer = NULL;
    FK(fpd_layer_init(&plan.shape, &layer, &err));
    uint64_t seed = 7;
    for (int32_t m = 0; m < plan.shape.k; m++) {
        float *core = fpd_layer_core(layer, m);
        for (int64_t e = 0; e < fpd_layer_shape_core_numel(&plan.shape, m); e++)
            core[e] = (float)((fpd__rand_uniform(&seed) - 0.5) * scale);
    }
    *k = plan.shape.k;
    return layer;
}

/* GMF training, dense tables against FPD tables of the seed's (8,1) and (32,1) */
static void gmf(struct fpd_backend *be, void *ctx, const struct fpd_backend_i *ops, int64_t N, int64_t D, int64_t B,
                int reps, bool quick) {
    struct fpd_error err;
    const int64_t Nu = N, Ni = N / 10 > 1 ? N / 10 : 1;
    const int NB = 4;
    (void)quick;
    /* draws */
    int64_t *hu = (int64_t *)malloc((size_t)(NB * B) * sizeof(int64_t));
    int64_t *hi = (int64_t *)malloc((size_t)(NB * B) * sizeof(int64_t));
    float *hy = (float *)malloc((size_t)(NB * B) * sizeof(float));
    uint64_t rng = 99;
    {
        double *cu = zipf_cdf(Nu, 1.05);
        if (!cu || !hu || !hi || !hy) {
            fprintf(stderr, "bench-gpu: out of host memory for GMF\n");
            exit(1);
        }
        for (int64_t q = 0; q < NB * B; q++) hu[q] = zipf_draw(cu, Nu, &rng);
        free(cu);
        double *ci = zipf_cdf(Ni, 1.05);
        for (int64_t q = 0; q < NB * B; q++) {
            hi[q] = zipf_draw(ci, Ni, &rng);
            hy[q] = (float)(fpd__rand_u64(&rng) % 5 == 0);
        }
        free(ci);
    }
    int64_t *du_idx, *di_idx;
    float *dy, *u, *v, *gu, *gv, *h, *dh;
    CK(cudaMalloc((void **)&du_idx, (size_t)(NB * B) * sizeof(int64_t)));
    CK(cudaMalloc((void **)&di_idx, (size_t)(NB * B) * sizeof(int64_t)));
    CK(cudaMalloc((void **)&dy, (size_t)(NB * B) * sizeof(float)));
    CK(cudaMemcpy(du_idx, hu, (size_t)(NB * B) * sizeof(int64_t), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(di_idx, hi, (size_t)(NB * B) * sizeof(int64_t), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dy, hy, (size_t)(NB * B) * sizeof(float), cudaMemcpyHostToDevice));
    const size_t bd = (size_t)(B * D) * sizeof(float);
    CK(cudaMalloc((void **)&u, bd));
    CK(cudaMalloc((void **)&v, bd));
    CK(cudaMalloc((void **)&gu, bd));
    CK(cudaMalloc((void **)&gv, bd));
    CK(cudaMalloc((void **)&h, (size_t)D * sizeof(float)));
    CK(cudaMalloc((void **)&dh, (size_t)D * sizeof(float)));
    CK(cudaMemset(dh, 0, (size_t)D * sizeof(float)));
    const unsigned wblocks = (unsigned)((B * 32 + 255) / 256), hblocks = (unsigned)((D + 255) / 256);
    const float lr = 0.05f;
    double t_dense;
    {
        cudaStream_t s;
        CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
        float *tu, *ti;
        CK(cudaMalloc((void **)&tu, (size_t)Nu * (size_t)D * sizeof(float)));
        CK(cudaMalloc((void **)&ti, (size_t)Ni * (size_t)D * sizeof(float)));
        k_dense_init<<<65536, 256, 0, s>>>(tu, Nu * D);
        k_dense_init<<<65536, 256, 0, s>>>(ti, Ni * D);
        k_dense_init<<<1, 256, 0, s>>>(h, D);
        CK(cudaGetLastError());
        t_dense = time_it(s, reps, [&](int q) {
            const int64_t *iu = du_idx + (q % NB) * B, *ii = di_idx + (q % NB) * B;
            k_dense_gather<<<wblocks, 256, 0, s>>>(tu, D, iu, B, 1, u);
            k_dense_gather<<<wblocks, 256, 0, s>>>(ti, D, ii, B, 1, v);
            k_gmf_grad<<<wblocks, 256, 0, s>>>(u, v, h, dy + (q % NB) * B, B, D, gu, gv, dh);
            k_dense_scatter<<<wblocks, 256, 0, s>>>(tu, D, iu, B, 1, gu, lr);
            k_dense_scatter<<<wblocks, 256, 0, s>>>(ti, D, ii, B, 1, gv, lr);
            k_gmf_h<<<hblocks, 256, 0, s>>>(h, dh, D, lr);
        });
        CK(cudaStreamSynchronize(s));
        CK(cudaFree(tu));
        CK(cudaFree(ti));
        CK(cudaStreamDestroy(s));
    }
    printf("\nGMF training: users Zipf(1.05) over %lld rows, items Zipf(1.05) over %lld rows, D = %lld, batch %lld, "
           "SGD on both sides\n\n",
           (long long)Nu, (long long)Ni, (long long)D, (long long)B);
    printf("| tables | dense samples/s (M) | FPD samples/s (M) | FPD / dense |\n| --- | --- | --- | --- |\n");
    const int64_t cfg[][2] = {{8, 1}, {32, 1}};
    for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
        int32_t ku, ki;
        struct fpd_layer *lu = random_layer(Nu, D, cfg[c][0], cfg[c][1], 0.5, &ku);
        struct fpd_layer *li = random_layer(Ni, D, cfg[c][0], cfg[c][1], 0.5, &ki);
        struct fpd_engine_params ep = fpd_engine_default_params();
        ep.backend = be;
        ep.optimizer.kind = FPD_OPTIMIZER_KIND_SGD;
        ep.optimizer.learning_rate = lr;
        void *su = NULL, *si = NULL;
        FK(ops->engine_create(ctx, lu, &ep, &su, &err));
        FK(ops->engine_create(ctx, li, &ep, &si, &err));
        /* one stream: the item engine waits for the user engine's work through an event */
        cudaStream_t s1 = (cudaStream_t)fpd__cuda_engine_stream(su), s2 = (cudaStream_t)fpd__cuda_engine_stream(si);
        cudaEvent_t ev1, ev2;
        CK(cudaEventCreateWithFlags(&ev1, cudaEventDisableTiming));
        CK(cudaEventCreateWithFlags(&ev2, cudaEventDisableTiming));
        struct fpd_bag_batch bu, bi;
        memset(&bu, 0, sizeof bu);
        bu.n_indices = B;
        bu.mode = FPD_BAG_MODE_NONE;
        bu.padding_idx = -1;
        bi = bu;
        k_dense_init<<<1, 256, 0, s1>>>(h, D);
        CK(cudaGetLastError());
        const double t_fpd = time_it(s1, reps, [&](int q) {
            bu.indices = du_idx + (q % NB) * B;
            bi.indices = di_idx + (q % NB) * B;
            FK(fpd__cuda_engine_forward_device(su, &bu, 0, u, &err));
            CK(cudaEventRecord(ev1, s1));
            CK(cudaStreamWaitEvent(s2, ev1, 0));
            FK(fpd__cuda_engine_forward_device(si, &bi, 0, v, &err));
            CK(cudaEventRecord(ev2, s2));
            CK(cudaStreamWaitEvent(s1, ev2, 0));
            k_gmf_grad<<<wblocks, 256, 0, s1>>>(u, v, h, dy + (q % NB) * B, B, D, gu, gv, dh);
            k_gmf_h<<<hblocks, 256, 0, s1>>>(h, dh, D, lr);
            CK(cudaEventRecord(ev1, s1));
            CK(cudaStreamWaitEvent(s2, ev1, 0));
            FK(fpd__cuda_engine_backward_device(su, &bu, 0, gu, &err));
            FK(fpd__cuda_engine_step_device(su, &ep.optimizer, false, &err));
            FK(fpd__cuda_engine_backward_device(si, &bi, 0, gv, &err));
            FK(fpd__cuda_engine_step_device(si, &ep.optimizer, false, &err));
            CK(cudaEventRecord(ev2, s2));
            CK(cudaStreamWaitEvent(s1, ev2, 0)); /* the step is over when s1 is */
        });
        printf("| FPD (%lld, %lld), k = %d / %d | %.2f | %.2f | %.2f |\n", (long long)cfg[c][0], (long long)cfg[c][1],
               (int)ku, (int)ki, B / t_dense / 1e6, B / t_fpd / 1e6, t_dense / t_fpd);
        fflush(stdout);
        CK(cudaEventDestroy(ev1));
        CK(cudaEventDestroy(ev2));
        ops->engine_destroy(ctx, su);
        ops->engine_destroy(ctx, si);
        fpd_layer_free(lu);
        fpd_layer_free(li);
    }
    CK(cudaFree(du_idx));
    CK(cudaFree(di_idx));
    CK(cudaFree(dy));
    CK(cudaFree(u));
    CK(cudaFree(v));
    CK(cudaFree(gu));
    CK(cudaFree(gv));
    CK(cudaFree(h));
    CK(cudaFree(dh));
    free(hu);
    free(hi);
    free(hy);
}

int main(int argc, char **argv) {
    const bool quick = getenv("FPD_BENCH_QUICK") && atoi(getenv("FPD_BENCH_QUICK"));
    const int64_t N = argc > 1 ? atoll(argv[1]) : quick ? 4000000 : 40000000;
    const int64_t D = argc > 2 ? atoll(argv[2]) : 128;
    const int64_t B = argc > 3 ? atoll(argv[3]) : 65536;
    const int reps = argc > 4 ? atoi(argv[4]) : 20;
    const int NB = 8;
    const int64_t L = 1;
    struct fpd_error err;
    if (N < 1 || D < 1 || B < 1 || reps < 1) {
        fprintf(stderr, "usage: bench-gpu [N [D [B [reps]]]]\n");
        return 2;
    }
    /* Zipf(1.05) batches */
    double *cdf = zipf_cdf(N, 1.05);
    int64_t *hidx = (int64_t *)malloc((size_t)(NB * B) * sizeof(int64_t));
    if (!cdf || !hidx) {
        fprintf(stderr, "bench-gpu: out of host memory for the Zipf draws\n");
        return 1;
    }
    uint64_t rng = 42;
    for (int64_t i = 0; i < NB * B; i++) hidx[i] = zipf_draw(cdf, N, &rng);
    free(cdf);

    struct fpd_backend *be = NULL;
    FK(gpu_backend_create(&be, &err));
    void *ctx = NULL;
    const struct fpd_backend_i *ops = fpd__backend_iface(be, &ctx);
    cudaStream_t ds;
    CK(cudaStreamCreateWithFlags(&ds, cudaStreamNonBlocking));
    int64_t *didx;
    float *dtab, *dout, *dgo;
    CK(cudaMalloc((void **)&didx, (size_t)(NB * B) * sizeof(int64_t)));
    CK(cudaMemcpy(didx, hidx, (size_t)(NB * B) * sizeof(int64_t), cudaMemcpyHostToDevice));
    CK(cudaMalloc((void **)&dout, (size_t)(B * D) * sizeof(float)));
    CK(cudaMalloc((void **)&dgo, (size_t)(B * D) * sizeof(float)));
    k_dense_init<<<4096, 256, 0, ds>>>(dgo, B * D);
    CK(cudaGetLastError());

    /* distinct rows per batch, for the table */
    int64_t distinct = 0;
    {
        int64_t *tmp = (int64_t *)malloc((size_t)B * sizeof(int64_t));
        memcpy(tmp, hidx, (size_t)B * sizeof(int64_t));
        qsort(tmp, (size_t)B, sizeof(int64_t), [](const void *a, const void *b) {
            int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
            return (x > y) - (x < y);
        });
        for (int64_t i = 0; i < B; i++) distinct += i == 0 || tmp[i] != tmp[i - 1];
        free(tmp);
    }

    /* dense reference */
    double t_dense_fwd = 0.0, t_dense_train = 0.0;
    {
        CK(cudaMalloc((void **)&dtab, (size_t)N * (size_t)D * sizeof(float)));
        k_dense_init<<<65536, 256, 0, ds>>>(dtab, N * D);
        CK(cudaGetLastError());
        const unsigned blocks = (unsigned)((B * 32 + 255) / 256);
        t_dense_fwd = time_it(ds, reps, [&](int i) {
            k_dense_gather<<<blocks, 256, 0, ds>>>(dtab, D, didx + (i % NB) * B, B / L, L, dout);
        });
        t_dense_train = time_it(ds, reps, [&](int i) {
            k_dense_gather<<<blocks, 256, 0, ds>>>(dtab, D, didx + (i % NB) * B, B / L, L, dout);
            k_dense_scatter<<<blocks, 256, 0, ds>>>(dtab, D, didx + (i % NB) * B, B / L, L, dgo, 0.01f);
        });
        CK(cudaStreamSynchronize(ds));
        CK(cudaFree(dtab));
    }

    printf("GPU benchmark: %s; table %lld x %lld F32 (%.1f GB dense); batch %lld in bags of %lld, Zipf(1.05), "
           "%lld distinct rows in the first batch; median of 5 x %d\n\n",
           be->name, (long long)N, (long long)D, (double)N * (double)D * 4.0 / 1e9, (long long)B, (long long)L,
           (long long)distinct, reps);
    printf("FPD columns: tree / direct forward (fpd__cuda_engine_set_direct_forward); x: the faster one against "
           "dense\n\n");
    printf("| (r, p) | k | FPD MB | dense fwd Mrows/s | FPD fwd Mrows/s | fwd x | dense train Mrows/s | FPD train "
           "Mrows/s | train x | FPD fwd+bwd us/look-up |\n");
    printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    const int64_t cfg[][2] = {{8, 1}, {8, 2}, {16, 2}, {8, 4}, {32, 1}};
    for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
        struct fpd_plan_params pp = fpd_plan_default_params();
        pp.rank = cfg[c][0];
        pp.terms = cfg[c][1];
        pp.min_ratio = 0.0;
        struct fpd_plan plan;
        FK(fpd_plan_table(N, D, FPD_DTYPE_F32, &pp, &plan, &err));
        struct fpd_layer *layer = NULL;
        FK(fpd_layer_init(&plan.shape, &layer, &err));
        uint64_t seed = 7;
        for (int32_t m = 0; m < plan.shape.k; m++) {
            float *core = fpd_layer_core(layer, m);
            for (int64_t e = 0; e < fpd_layer_shape_core_numel(&plan.shape, m); e++)
                core[e] = (float)(fpd__rand_uniform(&seed) - 0.5) * 0.1f;
        }
        struct fpd_engine_params ep = fpd_engine_default_params();
        ep.backend = be;
        ep.optimizer.kind = FPD_OPTIMIZER_KIND_ROWWISE_ADAGRAD;
        ep.optimizer.learning_rate = 0.01;
        void *state = NULL;
        FK(ops->engine_create(ctx, layer, &ep, &state, &err));
        cudaStream_t es = (cudaStream_t)fpd__cuda_engine_stream(state);
        struct fpd_bag_batch bt;
        memset(&bt, 0, sizeof bt);
        bt.n_indices = B;
        bt.bag_size = L;
        bt.mode = FPD_BAG_MODE_SUM;
        bt.padding_idx = -1;
        const int64_t n_bags = B / L;
        /* both forwards: the tree (sort, de-dup, shared prefixes) and the direct kernel */
        double t_fwd[2], t_fb[2], t_train[2];
        for (int v = 0; v < 2; v++) {
            fpd__cuda_engine_set_direct_forward(state, v == 1);
            t_fwd[v] = time_it(es, reps, [&](int i) {
                bt.indices = didx + (i % NB) * B;
                FK(fpd__cuda_engine_forward_device(state, &bt, n_bags, dout, &err));
            });
            t_fb[v] = time_it(es, reps, [&](int i) {
                bt.indices = didx + (i % NB) * B;
                FK(fpd__cuda_engine_forward_device(state, &bt, n_bags, dout, &err));
                FK(fpd__cuda_engine_backward_device(state, &bt, n_bags, dgo, &err));
            });
            t_train[v] = time_it(es, reps, [&](int i) {
                bt.indices = didx + (i % NB) * B;
                FK(fpd__cuda_engine_forward_device(state, &bt, n_bags, dout, &err));
                FK(fpd__cuda_engine_backward_device(state, &bt, n_bags, dgo, &err));
                FK(fpd__cuda_engine_step_device(state, &ep.optimizer, false, &err));
            });
        }
        ops->engine_destroy(ctx, state);
        const double bf = t_fwd[0] < t_fwd[1] ? t_fwd[0] : t_fwd[1];
        const double bt_ = t_train[0] < t_train[1] ? t_train[0] : t_train[1];
        printf("| (%lld, %lld) | %d | %.2f | %.1f | %.1f / %.1f | %.2f | %.1f | %.1f / %.1f | %.2f | %.4f / %.4f |\n",
               (long long)cfg[c][0], (long long)cfg[c][1], (int)plan.shape.k, (double)plan.bytes_after / 1e6,
               B / t_dense_fwd / 1e6, B / t_fwd[0] / 1e6, B / t_fwd[1] / 1e6, t_dense_fwd / bf,
               B / t_dense_train / 1e6, B / t_train[0] / 1e6, B / t_train[1] / 1e6, t_dense_train / bt_,
               t_fb[0] / (double)B * 1e6, t_fb[1] / (double)B * 1e6);
        fflush(stdout);
        fpd_layer_free(layer);
    }
    gmf(be, ctx, ops, N, D, B, reps, quick);
    CK(cudaFree(didx));
    CK(cudaFree(dout));
    CK(cudaFree(dgo));
    CK(cudaStreamDestroy(ds));
    fpd_backend_free(be);
    free(hidx);
    return 0;
}
