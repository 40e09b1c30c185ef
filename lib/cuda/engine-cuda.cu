/*
 * engine-cuda.cu - the FPD engine on CUDA: EmbeddingBag forward, backward to
 * the core gradients and the optimizer steps, with the cores resident on the
 * device (fpd.h, "The engine"; the CPU algorithm it mirrors is
 * lib/cpu/engine-cpu.c, whose notation this file keeps).
 *
 * Data contract. The cores are copied to the device when the engine is created
 * and the device copy is the one the engine computes with: changes made to the
 * layer's host cores while the engine lives are NOT seen. engine_step updates
 * the device cores and then copies them back into the layer's host cores (one
 * synchronization), so fpd_engine_step keeps its meaning ("the layer is updated
 * in place"); the host cores are pinned (cudaHostRegister) when the driver
 * allows it, so that copy runs at full speed. engine_forward / engine_backward
 * take host arrays (lib/engine.c validates them on the host): the batch and
 * grad_out are copied to the device on the engine's stream, the work is queued
 * on that stream, out is copied back, and the call synchronizes once at its
 * end. fpd__cuda_engine_*_device (engine-cuda.h) take device pointers and do
 * not synchronize: that is the path of the GPU benchmark and of CUDA tensors.
 * engine_grad copies the gradient of the core asked for back to host buffers
 * when it is called (lazily) and lists the touched slices from device flags.
 *
 * Algorithm (per batch, all on the device, no host synchronization inside):
 *  1. keys: each entry's stored row (permutation applied on the device); padding
 *     and entries past the last offset get a sentinel key (prod n_m) that sorts
 *     last. cub::DeviceRadixSort sorts (key, position) on the key bits only.
 *  2. de-duplication: run starts flagged, cub::DeviceScan numbers the distinct
 *     rows (urow ascending, ustart = first sorted entry, slot of every entry).
 *  3. the prefix tree, level by level: at level m (0..k-2) the prefixes of
 *     length m+1 are urow / div[m]; sorted rows make each distinct prefix one
 *     run, flagged and scanned like the rows: pid[m][u] (prefix of row u) and
 *     pfirst[m][j] (first row of prefix j). Children of a prefix are contiguous.
 *  4. partials once per distinct prefix and term, from the parent's:
 *     L_m[j] = L_{m-1}[parent] @ G_m[t, digit], one warp per (prefix, term),
 *     levels 1..k-2 in order; then each distinct row from L_{k-2} and the last
 *     core's slice, summed over the terms, one warp per row; then pooling,
 *     one warp per output row in entry order (each output written once).
 *     The contractions are small (r <= 64, D_m r <= a few thousand floats):
 *     one warp per product with a loop over outputs, no cuBLAS (a batched
 *     GEMM per level needs pointer arrays built on the device for products of
 *     ragged count; not measured, see README "CUDA engine").
 *  5. backward: the distinct rows' gradients sum their sorted entries, by
 *     chunks of entries (a row cut by a chunk's edge is added atomically:
 *     k_row_grads); then level by level from k-1 down: dL_{m-1}[P] = sum over
 *     P's children c of dN_c @ G_m[c]^T, a warp per child adding into its
 *     parent atomically (a Zipf head's prefix has hundreds of children), and
 *     dG_m[slice] += L_{m-1}^T dN is an atomicAdd, because
 *     the nodes that share a core slice (same digit m under different prefixes)
 *     are not contiguous: a per-level sort by digit would make it segmented,
 *     at the cost of one more sort per level and level for a sum that has few
 *     contributions per address. Level 0 needs no atomics (its prefixes are
 *     distinct digits). Touched slices are flagged on the device.
 *  4'. the direct forward (fpd__cuda_engine_set_direct_forward, off by default):
 *     one kernel, a warp (or a block, for rows of much work) per output row,
 *     every entry's slices and partials in shared memory (no sort, no sharing);
 *     the backward then runs steps 1-4
 *     without the rows and the pooling (forward_queue with plan_only).
 *  6. step: one fused kernel per core, one block per slice: skip untouched
 *     slices (SGD, row-wise Adagrad, lazy Adam), update, clear the gradient and
 *     the flag in the same pass.
 *  7. free coordinates (free/1: row i += E[i] P, E [N, c] by original id, P [c, D]),
 *     resident on the device like the cores: the tree forward adds E[i] P to each
 *     distinct row (one block per row; the row's original id from the inverse of
 *     the permutation, built on the host at creation), the direct forward to each
 *     entry; the backward gives dE[i] += drow[u] P^T (one block per distinct row:
 *     rows are distinct, no atomics) and dP += sum_u E[i_u]^T drow[u] (one block
 *     per row of P, a loop over the distinct rows: deterministic); the step treats
 *     E's rows and P's rows as slices (E at learning_rate * free_lr_scale, P at
 *     free_proj_lr_scale's step or not at all with free_proj_fixed), as the CPU
 *     engine does. The layer's host E and P are written back with the cores.
 *
 * Kernels for the common shapes (section "kernels: register tiles"): where the
 * inner TT-ranks all equal R in {2, 4, 8, 16, 32} (rt_plan_init), the partials,
 * the rows and, for k = 2 or 3, the direct forward run register-tiled kernels
 * templated on R (k_partial_rt, k_rows_rt, k_direct_rt<R, k>); so do the
 * backward's core and parent gradients of each level m whose w_m = d_m r_{m+1}
 * is a multiple of 4, when R % 4 == 0 (k_core_grad_rt, k_parent_grad_rt); every
 * other shape and level runs the generic kernels (k_partial, k_rows, k_direct,
 * k_core_grad, k_parent_grad). The rows' gradients, the clearing and level 0 are
 * the same for both.
 *
 * FPD_CUDA_KERNELS (environment, read once when an engine is created; not
 * API): "tiled" runs the register-tiled kernels where they apply; unset or any
 * other value, the generic kernels everywhere. The generic kernels stay the default
 * until the tiled ones have run on a GPU: written 2026-12-04 without a device, they
 * are checked by the emulation (tests/gpu/cuda-emu.h runs the threads of their
 * launches as fibers with real barriers: gpu-equal-emu with FPD_CUDA_KERNELS=tiled)
 * and compiled by nvcc, not yet timed or run on real hardware. tests/gpu/run.sh
 * checks and times both on a device.
 *
 * Rounding: the sums run in other orders than on the CPU (FMA contraction,
 * float atomics in dG), so results equal the CPU engine's to rounding, not bit
 * for bit; tests/gpu/gpu-equal.c states and checks the tolerance.
 *
 * Errors: every CUDA call and launch is checked; failures are FPD_STATUS_BACKEND
 * with the call, file:line and CUDA's string.
 */
#include "../backend-impl.h"
#include "../engine-plan-impl.h"
#include "engine-cuda.h"
#include "../free-round-impl.h"

#ifdef FPD_CUDA_EMU
/* the kernels run on the CPU for tests (tests/gpu/cuda-emu.h, included first):
 * blocks and threads in sequence; a launch with dynamic shared memory (the direct
 * forward, k_rows_rt, k_partial_rt, k_core_grad_rt, k_parent_grad_rt) runs its
 * block's threads as fibers that wait
 * for each other at __syncwarp and __syncthreads; the step's reduction and the
 * rows' gradients (static shared memory, plain launches) run with one thread */
#define FPD__LAUNCH(kern, grid, block, stream, ...)                                                                   \
    (fpd_emu_trace(#kern), fpd_emu_launch(grid, block, [&]() { kern(__VA_ARGS__); }))
#define FPD__LAUNCH_SMEM(kern, grid, block, smem, stream, ...)                                                        \
    (fpd_emu_trace(#kern), fpd_emu_launch_smem(grid, block, smem, [&]() { kern(__VA_ARGS__); }))
#define FPD__DYN_SHARED(name) float *name = (float *)fpd_emu_smem.data()
#define FPD__STEP_THREADS 1
#define FPD__ONE_THREAD_BLOCKS 1
#define FPD__CHECK16(p) fpd_emu_check16(p)
#else
#include <cub/cub.cuh>
#include <cuda_runtime.h>
#define FPD__LAUNCH(kern, grid, block, stream, ...) kern<<<grid, block, 0, stream>>>(__VA_ARGS__)
#define FPD__LAUNCH_SMEM(kern, grid, block, smem, stream, ...) kern<<<grid, block, smem, stream>>>(__VA_ARGS__)
#define FPD__DYN_SHARED(name) extern __shared__ __align__(16) float name[] /* 16-byte units: the tiled kernels */
#define FPD__STEP_THREADS 256
#define FPD__ONE_THREAD_BLOCKS 0
#define FPD__CHECK16(p) ((void)0)
#endif

#include <stdlib.h>
#include <string.h>

#define ECUDA_TRY(call)                                                                                                \
    do {                                                                                                               \
        cudaError_t e_ = (call);                                                                                       \
        if (e_ != cudaSuccess)                                                                                         \
            return fpd__err(err, FPD_STATUS_BACKEND, "%s at %s:%d: %s", #call, __FILE__, __LINE__,                     \
                            cudaGetErrorString(e_));                                                                   \
    } while (0)
/* after a kernel launch */
#define ECUDA_LAUNCHED() ECUDA_TRY(cudaGetLastError())

/* counts on the device (FPD__WS_COUNTS) */
#define CNT_NU 0
#define CNT_PRE(m) (1 + (m))
#define CNT_NV (FPD_MAX_MODES + 1)

struct dev_cores {
    float *c[FPD_MAX_MODES];
};

/* n / d for a 32-bit n, by a multiply-high and two shifts (Granlund and
 * Montgomery, PLDI 1994, the round-up method; exact for every n < 2^32): a
 * 32-bit division by a value known only at run time is a subroutine of about
 * 20 instructions on the GPU, this is 4 (d_div). Made on the host (fdiv_make). */
struct fdiv {
    uint32_t d, mul, s1, s2;
};

/* One product of the register-tiled kernels: C[M, N] = A[M, R] B[R, N], A and B
 * row-major at float offsets a and b of a warp's (or row's) shared memory, 16-byte
 * aligned. Tile t is row i = t / ncg of C and its column group c = t % ncg: 4
 * columns when N % 4 == 0 (vec), else 1; so tile t is at C + 4t (or C + t). c:
 * the float offset of C in the same shared memory, when C is there. */
struct rt_stage {
    uint32_t a, b, c, n, tiles;
    struct fdiv ncg;
    int32_t vec;
};

/* One product of the register-tiled backward at level m (k_core_grad_rt,
 * k_parent_grad_rt): a warp's shared memory holds its two operands (16-byte units
 * [0, cend[0]) and [cend[0], cend[1]); the second at float offset b) and, at float
 * offset out, the product split in 2^ls partial sums over the contraction, nout
 * floats each, pstride apart (nout + 4: the parts' 16-byte stores of 8 lanes that
 * differ in the part alone fall in different banks when nout % 32 == 0). tiles:
 * tiles of 4 (parent) or 16 (core) outputs; steps: the contraction's steps
 * (parent: w_m / 4 groups of 4, core: Dm[m-1]); ncg: w_m / 4 (core). warps: a
 * block's (0: the generic kernel at this level). */
struct rt_back {
    int32_t warps;
    uint32_t cend[2], b, out, nout, pstride, per_warp, tiles, ls, steps;
    struct fdiv ncg;
};

/* What rt_plan_init decided at engine creation (host), passed to the kernels by
 * value. rank = 0: none of the register-tiled kernels apply. */
struct rt_plan {
    int32_t rank;
    struct fdiv n[FPD_MAX_MODES], div[FPD_MAX_MODES]; /* n_m, prod_{l>m} n_l */
    /* k_rows_rt: warp's shared memory [L_{k-2} | core k-1's slice | acc (p > 1): D];
     * cend: the 16-byte units that end each of the two; warps a block (0: does not
     * fit, the generic kernel) */
    int32_t rows_warps;
    struct rt_stage rows;
    uint32_t rows_cend[2], rows_acc, rows_per_warp;
    /* k_partial_rt, level m = 1..k-2: [L_{m-1} | core m's slice] */
    int32_t part_warps[FPD_MAX_MODES];
    struct rt_stage part[FPD_MAX_MODES];
    uint32_t part_cend[FPD_MAX_MODES][2], part_per_warp[FPD_MAX_MODES];
    /* k_direct_rt (k = 2, 3): a row's shared memory [acc: D | one intermediate | the
     * k slices, one after another]; its products dir[0..k-2], the last into acc */
    bool dir_ok, dir_d4;
    struct rt_stage dir[2];
    uint32_t dir_cend[3], dir_sl, dir_per_row;
    double dir_macs; /* multiply-adds of one entry and term, in the order chosen */
    /* the backward of level m = 1..k-1: k_core_grad_rt (cg) and k_parent_grad_rt (pg) */
    struct rt_back cg[FPD_MAX_MODES], pg[FPD_MAX_MODES];
};

struct cuda_engine {
    struct fpd_layer *layer;
    struct fpd__engine_geom g;
    int device;
    cudaStream_t stream;
    float *core[FPD_MAX_MODES], *grad[FPD_MAX_MODES];
    float *m1[FPD_MAX_MODES], *m2[FPD_MAX_MODES]; /* Adam moments, or m1 = row-wise Adagrad state */
    enum fpd_optimizer_kind state_kind;
    bool have_state;
    unsigned char *touched[FPD_MAX_MODES];
    int64_t *perm; /* device copy of the row permutation, or NULL */
    bool registered[FPD_MAX_MODES];
    /* host views for engine_grad */
    float *hgrad[FPD_MAX_MODES];
    unsigned char *hflag[FPD_MAX_MODES];
    int64_t *hlist[FPD_MAX_MODES];
    /* workspace and the plan of the last forward */
    char *ws_mem;
    struct fpd__engine_ws ws;
    size_t temp_bytes;
    struct fpd_bag_batch last;
    int64_t last_n_bags;
    bool planned;
    /* the direct forward (fpd__cuda_engine_set_direct_forward): no plan; the
     * backward then builds it from dlast, the device copy of the batch */
    bool direct;
    bool tree_planned;
    /* the register-tiled kernels where they apply (rt), or the generic kernels
     * everywhere (generic: unless FPD_CUDA_KERNELS=tiled when the engine was made) */
    struct rt_plan rt;
    bool generic;
    struct fpd_bag_batch dlast;
    int64_t step;
    bool flops_valid;
    double flops;
    /* free coordinates (step 7): E [N, fc] and P [fc, D] on the device, their
     * gradients, touched flags (E: rows; P: its fc rows), optimizer state, host
     * views for engine_grad; inv [padded]: the original id of a stored row (-1:
     * none), only with a permutation */
    int64_t fc, N;
    float *fe, *fp, *gfe, *gfp, *fe_m1, *fe_m2, *fp_m1, *fp_m2;
    unsigned char *fe_touched, *fp_touched;
    int64_t *inv;
    float *hgfe, *hgfp;
    unsigned char *hfe_flag, *hfp_flag;
    int64_t *hfe_list, *hfp_list;
    /* quantization-aware training (fpd_engine_params.free_qat): the batch's distinct
     * rows of E as a file of kind qkind stores them, [feq_cap / fc, fc] by distinct row */
    bool qat;
    enum fpd_free_kind qkind;
    float *feq;
    int64_t feq_cap;
};

/* ------------------------------------------------------------ small helpers */

template <typename T> static T *ws_ptr(struct cuda_engine *e, int b) { return (T *)(e->ws_mem + e->ws.off[b]); }

static unsigned blocks_for(int64_t n, int32_t threads) {
    int64_t b = (n + threads - 1) / threads;
    return (unsigned)(b < 1 ? 1 : b);
}
static unsigned grid_for(int64_t n) { return (unsigned)(n < 1 ? 1 : n); }

/* Warp-per-item kernels: a block of FPD__ITEM_THREADS threads does FPD__ITEMS items
 * (distinct rows, prefixes, output rows, tree nodes), one warp each, the lanes
 * striding the item's elements. One 128-thread block an item left the GPU waiting
 * on each block's chain of dependent loads with 16 items in flight per
 * multiprocessor; a warp an item puts 64 there (measured on an H200 with
 * tests/gpu/run.sh: k_pool 49 us for 65,536 rows of 128 floats, 3x the dense
 * gather of the same rows). */
#define FPD__ITEMS 4
#define FPD__ITEM_THREADS (32 * FPD__ITEMS)
#define ITEM_ID ((int64_t)blockIdx.x * FPD__ITEMS + (int64_t)(threadIdx.x / 32u))
#define LANE (threadIdx.x % 32u)
static unsigned items_grid(int64_t n) { return blocks_for(n, FPD__ITEMS); }

/* entries [*lo, *hi) of bag `bag` (lib/cpu/engine-cpu.c bag_range) */
__device__ static inline void d_bag_range(const int64_t *offs, int64_t bag_size, bool ilo, int64_t n_bags, int64_t n,
                                          int64_t bag, int64_t *lo, int64_t *hi) {
    if (!offs) {
        *lo = bag * bag_size;
        *hi = *lo + bag_size;
        return;
    }
    *lo = offs[bag];
    *hi = bag + 1 < n_bags || ilo ? offs[bag + 1] : n;
}

/* the entries [lo, hi) of a bag that are not padding_idx pad (pad < 0: none is) */
__device__ static inline int64_t d_bag_count(const int64_t *idx, int64_t lo, int64_t hi, int64_t pad) {
    int64_t cnt = 0;
    for (int64_t i = lo; i < hi; i++) cnt += !(pad >= 0 && idx[i] == pad);
    return cnt;
}

/* the weight of entry i of a bag of cnt entries that are not padding: 1 / cnt (mean
 * pooling), its per-sample weight, or 1 */
__device__ static inline float d_entry_coef(bool mean, int64_t cnt, const float *psw, int64_t i) {
    return mean ? 1.0f / (float)(cnt ? cnt : 1) : psw ? psw[i] : 1.0f;
}

/* digit m of stored row x, (x / div[m]) % n[m]: in 32 bits when every stored row
 * fits (a 64-bit division is a long subroutine on the GPU, a 32-bit one a few
 * instructions; the branch is the same for every thread) */
__device__ static inline int64_t d_digit(const struct fpd__engine_geom &g, int64_t x, int32_t m) {
    if (g.padded <= (int64_t)0xffffffff) return (int64_t)(((uint32_t)x / (uint32_t)g.div[m]) % (uint32_t)g.n[m]);
    return (x / g.div[m]) % g.n[m];
}

/* L_{m-1} of term t for the prefix containing distinct row u (m >= 1): the core-0
 * slice for m = 1, else the partial block of level m-1. */
__device__ static inline const float *d_parent_partial(const struct fpd__engine_geom &g, const struct dev_cores &cores,
                                                       const float *part, const size_t *part_off, const int64_t *cap,
                                                       const int64_t *pid, int64_t n_cap, int32_t m, int64_t t,
                                                       int64_t x, int64_t u) {
    if (m == 1) return cores.c[0] + (t * g.n[0] + d_digit(g, x, 0)) * g.slice[0];
    const int64_t j = pid[(int64_t)(m - 1) * n_cap + u];
    return part + part_off[m - 1] + (t * cap[m - 1] + j) * g.psz[m - 1];
}

struct level_info {
    size_t part_off[FPD_MAX_MODES];
    size_t dpart_off[FPD_MAX_MODES];
    int64_t cap[FPD_MAX_MODES];
};

/* ------------------------------------------------------------ kernels: plan */

__global__ static void k_keys(const int64_t *idx, int64_t n, const int64_t *offs, int64_t n_offs, bool last_off,
                              int64_t pad, const int64_t *perm, uint64_t sentinel, uint64_t *key, int64_t *pos,
                              int64_t *slot) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const int64_t n_used = last_off ? offs[n_offs - 1] : n;
    const int64_t id = idx[i];
    const bool skip = (pad >= 0 && id == pad) || i >= n_used;
    key[i] = skip ? sentinel : (uint64_t)(perm ? perm[id] : id);
    pos[i] = i;
    slot[i] = -1;
}

__global__ static void k_run_flags(const uint64_t *key, int64_t n, uint64_t sentinel, int64_t *flag) {
    const int64_t q = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (q >= n) return;
    flag[q] = key[q] != sentinel && (q == 0 || key[q] != key[q - 1]);
}

__global__ static void k_unique(const uint64_t *key, const int64_t *pos, const int64_t *flag, const int64_t *scan,
                                int64_t n, uint64_t sentinel, int64_t *slot, int64_t *urow, int64_t *ustart,
                                int64_t *counts) {
    const int64_t q = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (q >= n) return;
    if (key[q] == sentinel) {
        if (q == 0) { /* no valid entry at all */
            counts[CNT_NU] = 0;
            counts[CNT_NV] = 0;
            ustart[0] = 0;
        }
        return;
    }
    const int64_t u = scan[q] - 1;
    slot[pos[q]] = u;
    if (flag[q]) {
        urow[u] = (int64_t)key[q];
        ustart[u] = q;
    }
    if (q == n - 1 || key[q + 1] == sentinel) { /* the last valid entry */
        counts[CNT_NU] = scan[q];
        counts[CNT_NV] = q + 1;
        ustart[scan[q]] = q + 1;
    }
}

/* flags of the runs of prefixes urow / div among the distinct rows */
__global__ static void k_level_flags(const int64_t *urow, const int64_t *counts, int64_t n, int64_t div,
                                     int64_t *flag) {
    const int64_t u = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (u >= n) return;
    const int64_t nu = counts[CNT_NU];
    flag[u] = u < nu && (u == 0 || urow[u] / div != urow[u - 1] / div);
}

__global__ static void k_level_ids(const int64_t *flag, const int64_t *scan, int64_t *counts, int32_t m, int64_t *pid,
                                   int64_t *pfirst) {
    const int64_t u = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int64_t nu = counts[CNT_NU];
    if (u >= nu) return;
    const int64_t j = scan[u] - 1;
    pid[u] = j;
    if (flag[u]) pfirst[j] = u;
    if (u == nu - 1) counts[CNT_PRE(m)] = scan[u];
}

/* each entry's bag and coefficient (one thread per bag) */
__global__ static void k_bags(const int64_t *offs, int64_t bag_size, bool ilo, int64_t n_bags, int64_t n,
                              const float *psw, bool mean, const int64_t *slot, int64_t *bag_of, float *coef) {
    const int64_t o = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= n_bags) return;
    int64_t lo, hi, cnt = 0;
    d_bag_range(offs, bag_size, ilo, n_bags, n, o, &lo, &hi);
    for (int64_t i = lo; i < hi; i++)
        cnt += slot[i] >= 0;
    for (int64_t i = lo; i < hi; i++) {
        bag_of[i] = o;
        coef[i] = d_entry_coef(mean, cnt, psw, i);
    }
}

/* ------------------------------------------------------------ kernels: forward */

/* L_m for every distinct prefix of level m (1 <= m <= k-2) and term: item (j, t) */
__global__ static void k_partial(const __grid_constant__ struct fpd__engine_geom g,
                                 const __grid_constant__ struct dev_cores cores,
                                 const __grid_constant__ struct level_info li, const int64_t *urow, const int64_t *pid,
                                 const int64_t *pfirst, const int64_t *counts, int64_t n_cap, int32_t m, float *part) {
    const int64_t j = ITEM_ID, t = blockIdx.y;
    if (j >= counts[CNT_PRE(m)]) return;
    const int64_t u0 = pfirst[(int64_t)m * n_cap + j], x = urow[u0];
    const int64_t dig = d_digit(g, x, m);
    const float *Lp = d_parent_partial(g, cores, part, li.part_off, li.cap, pid, n_cap, m, t, x, u0);
    const float *G = cores.c[m] + (t * g.n[m] + dig) * g.slice[m];
    float *L = part + li.part_off[m] + (t * li.cap[m] + j) * g.psz[m];
    /* offsets inside a slice or a partial fit 32 bits (fpd__engine_geom_init) */
    const uint32_t rm = (uint32_t)g.r[m], wm = (uint32_t)g.w[m], ne = (uint32_t)(g.Dm[m - 1] * g.w[m]);
    for (uint32_t e = LANE; e < ne; e += 32) {
        const uint32_t a = e / wm, c = e - a * wm;
        float s = 0.0f;
        #pragma unroll 4
        for (uint32_t b = 0; b < rm; b++)
            s += Lp[a * rm + b] * G[b * wm + c];
        L[e] = s;
    }
}

/* the distinct rows, summed over the terms: item u */
__global__ static void k_rows(const __grid_constant__ struct fpd__engine_geom g,
                              const __grid_constant__ struct dev_cores cores,
                              const __grid_constant__ struct level_info li, const int64_t *urow, const int64_t *pid,
                              const int64_t *counts, int64_t n_cap, const float *part, float *rows) {
    const int64_t u = ITEM_ID;
    if (u >= counts[CNT_NU]) return;
    const int64_t x = urow[u], D = g.D;
    float *dst = rows + u * D;
    if (g.k == 1) {
        for (int64_t j = LANE; j < D; j += 32) {
            float s = 0.0f;
            for (int64_t t = 0; t < g.p; t++)
                s += cores.c[0][(t * g.n[0] + x) * g.slice[0] + j];
            dst[j] = s;
        }
        return;
    }
    const int32_t m = g.k - 1;
    const int64_t dig = d_digit(g, x, m);
    const uint32_t r = (uint32_t)g.r[m], dl = (uint32_t)g.d[m], DD = (uint32_t)D;
    for (uint32_t j = LANE; j < DD; j += 32) {
        const uint32_t a = j / dl, c = j - a * dl;
        float s = 0.0f;
        for (int64_t t = 0; t < g.p; t++) {
            const float *Lp = d_parent_partial(g, cores, part, li.part_off, li.cap, pid, n_cap, m, t, x, u);
            const float *G = cores.c[m] + (t * g.n[m] + dig) * g.slice[m];
            #pragma unroll 4
            for (uint32_t b = 0; b < r; b++)
                s += Lp[a * r + b] * G[b * dl + c];
        }
        dst[j] = s;
    }
}

/* pooling: item o writes output row o */
__global__ static void k_pool(const int64_t *offs, int64_t bag_size, bool ilo, int64_t n_bags, int64_t n, bool none,
                              const int64_t *slot, const float *coef, const float *rows, int64_t D, int64_t n_out,
                              float *out) {
    const int64_t o = ITEM_ID;
    if (o >= n_out) return;
    float *dst = out + o * D;
    if (none) {
        const int64_t s = slot[o];
        for (int64_t j = LANE; j < D; j += 32)
            dst[j] = s < 0 ? 0.0f : rows[s * D + j];
        return;
    }
    int64_t lo, hi;
    d_bag_range(offs, bag_size, ilo, n_bags, n, o, &lo, &hi);
    if ((D & 3) == 0) { /* 16-byte loads and stores (rows and out are 16-byte aligned: cudaMalloc, D % 4 == 0) */
        for (int64_t j = 4 * (int64_t)LANE; j < D; j += 128) {
            float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            for (int64_t i = lo; i < hi; i++) {
                const int64_t s = slot[i];
                if (s < 0) continue;
                const float c = coef[i];
                const float4 v = *(const float4 *)(rows + s * D + j);
                acc.x += c * v.x;
                acc.y += c * v.y;
                acc.z += c * v.z;
                acc.w += c * v.w;
            }
            *(float4 *)(dst + j) = acc;
        }
        return;
    }
    for (int64_t j = LANE; j < D; j += 32) {
        float acc = 0.0f;
        for (int64_t i = lo; i < hi; i++) {
            const int64_t s = slot[i];
            if (s >= 0) acc += coef[i] * rows[s * D + j];
        }
        dst[j] = acc;
    }
}

/* the threads of one output row of k_direct meet */
#define FPD__ROW_SYNC()                                                                                                \
    do {                                                                                                               \
        if (whole_block) __syncthreads();                                                                              \
        else __syncwarp();                                                                                             \
    } while (0)

/* The direct forward: warp o computes output row o from the cores, entry by
 * entry and term by term (no sort, no de-duplication, no sharing of prefixes).
 * Shared memory (direct_smem_floats): the entry's k core slices, loaded together
 * (one round trip to L2 instead of one per multiply-add), the partials
 * L_1..L_{k-2} (two buffers of maxpsz floats, ping-pong) and the output row's
 * accumulator (D floats), written to out once at the end. */
__global__ static void k_direct(const __grid_constant__ struct fpd__engine_geom g,
                                const __grid_constant__ struct dev_cores cores, const int64_t *idx, const int64_t *offs,
                                int64_t bag_size, bool ilo, int64_t n_bags, int64_t n, bool none, bool mean,
                                const float *psw, int64_t pad, const int64_t *perm, int64_t maxpsz, const float *E,
                                const float *P, int64_t fc, int64_t n_out, int64_t per_warp, bool whole_block,
                                float *out) {
    FPD__DYN_SHARED(sh);
    /* a warp an output row, or the whole block (whole_block: rows of much work);
     * nt threads a row */
    const uint32_t nt = whole_block || blockDim.x < 32 ? blockDim.x : 32, lane = threadIdx.x % nt;
    const int64_t o = (int64_t)blockIdx.x * (blockDim.x / nt) + threadIdx.x / nt;
    if (o >= n_out) return; /* the whole warp */
    const uint32_t DD = (uint32_t)g.D;
    /* the row's shared memory; sl: the slices one after another (slice m at the
     * sum of slice[0..m-1]) */
    float *acc = sh + (threadIdx.x / nt) * per_warp, *pa = acc + DD, *pb = pa + maxpsz, *sl = pb + maxpsz;
    for (uint32_t j = lane; j < DD; j += nt) acc[j] = 0.0f;
    int64_t lo = o, hi = o + 1;
    if (!none) d_bag_range(offs, bag_size, ilo, n_bags, n, o, &lo, &hi);
    const int64_t cnt = mean ? d_bag_count(idx, lo, hi, pad) : 0;
    for (int64_t i = lo; i < hi; i++) {
        const int64_t id = idx[i];
        if (pad >= 0 && id == pad) continue;
        const float c = d_entry_coef(mean, cnt, psw, i);
        const int64_t x = perm ? perm[id] : id;
        for (int64_t t = 0; t < g.p; t++) {
            /* the k slices of (t, x), every thread's loads issued before any is used */
            for (int32_t m = 0, off = 0; m < g.k; off += (int32_t)g.slice[m], m++) {
                const float *G = cores.c[m] + (t * g.n[m] + d_digit(g, x, m)) * g.slice[m];
                const uint32_t ns = (uint32_t)g.slice[m];
                for (uint32_t e = lane; e < ns; e += nt) sl[off + e] = G[e];
            }
            FPD__ROW_SYNC();
            if (g.k == 1) {
                for (uint32_t j = lane; j < DD; j += nt) acc[j] += c * sl[j];
                FPD__ROW_SYNC();
                continue;
            }
            const float *cur = sl; /* L_0 = slice 0 */
            float *buf = pa;
            const float *G = sl + g.slice[0]; /* slice m */
            for (int32_t m = 1; m + 1 < g.k; G += g.slice[m], m++) {
                const uint32_t rm = (uint32_t)g.r[m], wm = (uint32_t)g.w[m], ne = (uint32_t)(g.Dm[m - 1] * g.w[m]);
                for (uint32_t e = lane; e < ne; e += nt) {
                    const uint32_t a = e / wm, cc = e - a * wm;
                    float s = 0.0f;
                    for (uint32_t b = 0; b < rm; b++) s += cur[a * rm + b] * G[b * wm + cc];
                    buf[e] = s;
                }
                FPD__ROW_SYNC();
                cur = buf;
                buf = buf == pa ? pb : pa;
            }
            const int32_t m = g.k - 1;
            const uint32_t r = (uint32_t)g.r[m], dl = (uint32_t)g.d[m];
            for (uint32_t j = lane; j < DD; j += nt) {
                const uint32_t a = j / dl, cc = j - a * dl;
                float s = 0.0f;
                for (uint32_t b = 0; b < r; b++) s += cur[a * r + b] * G[b * dl + cc];
                acc[j] += c * s;
            }
            FPD__ROW_SYNC(); /* the slices and partials are rewritten by the next term or entry */
        }
        if (fc > 0) /* free coordinates: + c E[id] P (E by the original id) */
            for (uint32_t j = lane; j < DD; j += nt) {
                float s = 0.0f;
                for (int64_t q = 0; q < fc; q++) s += E[id * fc + q] * P[q * DD + j];
                acc[j] += c * s;
            }
    }
    float *dst = out + o * (int64_t)DD;
    for (uint32_t j = lane; j < DD; j += nt) dst[j] = acc[j];
}

/* ------------------------------------------------------------ kernels: register tiles */

/* The kernels above are written for any shape: each multiply-add of a product
 * loads both operands (two loads a multiply-add) after index arithmetic of its
 * own, in loops whose bounds are known only at run time. On the H200 the direct
 * forward issued 1,966 warp instructions an output row for 96 warp FMAs at (8,1)
 * (Nsight Compute: issue slots 81% busy), and k_rows was issue-bound too. The
 * kernels of this section are for the common shapes: the inner TT-ranks all
 * equal to R in {2, 4, 8, 16, 32} (a template parameter), every slice and
 * partial a multiple of 4 floats, stored rows below 2^32 (rt_plan_init says
 * which apply; the others keep the generic kernels). Each thread computes
 * tiles of a product, 4 outputs a tile, with the row of the left operand it
 * reuses in registers, every shared-memory access 16 bytes wide; the operands
 * are staged in shared memory by 16-byte loads, consecutive threads on
 * consecutive addresses, four in flight a thread; digits are a multiply and
 * shifts (fdiv). The backward's core and parent gradients (k_core_grad_rt,
 * k_parent_grad_rt, at the end of this section) stage and tile the same way;
 * their atomic adds leave from shared memory, consecutive lanes on consecutive
 * floats. Only with FPD_CUDA_KERNELS=tiled (the top of this file: not yet
 * measured on a GPU). */

/* n / f.d (struct fdiv) */
__device__ static inline uint32_t d_div(const struct fdiv &f, uint32_t n) {
    const uint32_t t = __umulhi(f.mul, n);
    return (t + ((n - t) >> f.s1)) >> f.s2;
}

/* k_rows_rt, k_partial_rt: a warp an item, as many a block as their shared memory
 * allows (rt_warps) */
#define RT_WARP_ID ((int64_t)blockIdx.x * (blockDim.x / 32u) + (int64_t)(threadIdx.x / 32u))

/* 16-byte loads and stores; p 16-byte aligned (the emulation stops at a
 * misaligned one: FPD__CHECK16). d_ldg4: read-only global data
 * (the cores, the partials of an earlier launch), through the non-coherent
 * path, which also tells the compiler that no store of the kernel aliases it. */
__device__ static inline float4 d_ld4(const float *p) {
    FPD__CHECK16(p);
    return *(const float4 *)p;
}
__device__ static inline float4 d_ldg4(const float *p) {
    FPD__CHECK16(p);
    return __ldg((const float4 *)p);
}
__device__ static inline void d_st4(float *p, float4 v) {
    FPD__CHECK16(p);
    *(float4 *)p = v;
}

/* R floats at p (16-byte aligned) into registers */
template <int R> __device__ static inline void d_row(const float *p, float (&a)[R]) {
    if constexpr (R % 4 == 0) {
        #pragma unroll
        for (int k = 0; k < R; k += 4) {
            const float4 v = d_ld4(p + k);
            a[k] = v.x;
            a[k + 1] = v.y;
            a[k + 2] = v.z;
            a[k + 3] = v.w;
        }
    } else {
        #pragma unroll
        for (int k = 0; k < R; k++) a[k] = p[k];
    }
}

/* Thread `lane` of nt computes the tiles lane, lane + nt, ... of st (A, B in shared
 * memory): A's row in registers (R/4 16-byte loads), then one 16-byte load of B a
 * row for 4 multiply-adds. Writes C[tile] = s, or C[tile] = acc[tile] + coef s when
 * acc is given (acc may be C: the same thread owns the same tile every time). C
 * may be in global memory (16-byte aligned). */
template <int R>
__device__ static inline void d_tiles(const struct rt_stage &st, const float *A, const float *B, float *C,
                                      const float *acc, float coef, uint32_t lane, uint32_t nt) {
    const uint32_t n = st.n, ncg = st.ncg.d;
    if (st.vec) {
        for (uint32_t t = lane; t < st.tiles; t += nt) {
            const uint32_t i = d_div(st.ncg, t), c = t - i * ncg;
            float a[R];
            d_row<R>(A + i * R, a);
            const float *b = B + 4 * c;
            float4 s = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            #pragma unroll
            for (int k = 0; k < R; k++) {
                const float4 v = d_ld4(b + k * n);
                s.x = fmaf(a[k], v.x, s.x);
                s.y = fmaf(a[k], v.y, s.y);
                s.z = fmaf(a[k], v.z, s.z);
                s.w = fmaf(a[k], v.w, s.w);
            }
            if (acc) {
                const float4 o = d_ld4(acc + 4 * t);
                s = make_float4(fmaf(coef, s.x, o.x), fmaf(coef, s.y, o.y), fmaf(coef, s.z, o.z),
                                fmaf(coef, s.w, o.w));
            }
            d_st4(C + 4 * t, s);
        }
        return;
    }
    for (uint32_t t = lane; t < st.tiles; t += nt) {
        const uint32_t i = d_div(st.ncg, t), c = t - i * ncg;
        float a[R];
        d_row<R>(A + i * R, a);
        float s = 0.0f;
        #pragma unroll
        for (int k = 0; k < R; k++) s = fmaf(a[k], B[k * n + c], s);
        if (acc) s = fmaf(coef, s, acc[t]);
        C[t] = s;
    }
}

/* Copies NS arrays, src[s] of cend[s] - cend[s-1] 16-byte units, one after
 * another to dst (unit q at dst + 4q): thread `lane` of nt copies units lane,
 * lane + nt, ..., four loads in flight before their stores (the loads of one
 * entry's slices are one round trip, not one per unit). */
template <int NS>
__device__ static inline void d_stage_in(const float *const (&src)[NS], const uint32_t *cend, float *dst, uint32_t lane,
                                         uint32_t nt) {
    const uint32_t units = cend[NS - 1];
    for (uint32_t q0 = lane; q0 < units; q0 += 4 * nt) {
        float4 v[4];
        #pragma unroll
        for (int u = 0; u < 4; u++) {
            const uint32_t q = q0 + (uint32_t)u * nt;
            v[u] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (q < units) {
                const float *p = src[0] + 4 * (size_t)q;
                #pragma unroll
                for (int s = 1; s < NS; s++)
                    if (q >= cend[s - 1]) p = src[s] + 4 * (size_t)(q - cend[s - 1]);
                v[u] = d_ldg4(p);
            }
        }
        #pragma unroll
        for (int u = 0; u < 4; u++) {
            const uint32_t q = q0 + (uint32_t)u * nt;
            if (q < units) d_st4(dst + 4 * (size_t)q, v[u]);
        }
    }
}

/* L_m for every distinct prefix of level m (1 <= m <= k-2) and term, as k_partial:
 * warp (j, t) stages L_{m-1} (core 0's slice for m = 1) and core m's slice in its
 * shared memory, then writes L_m = L_{m-1} G_m[t, digit] by tiles (16-byte
 * stores, consecutive lanes on consecutive addresses). */
template <int R>
__global__ static void k_partial_rt(const __grid_constant__ struct fpd__engine_geom g,
                                    const __grid_constant__ struct dev_cores cores,
                                    const __grid_constant__ struct level_info li,
                                    const __grid_constant__ struct rt_plan pl, const int64_t *urow, const int64_t *pid,
                                    const int64_t *pfirst, const int64_t *counts, int64_t n_cap, int32_t m,
                                    float *part) {
    FPD__DYN_SHARED(sh);
    const int64_t j = RT_WARP_ID, t = blockIdx.y;
    if (j >= counts[CNT_PRE(m)]) return; /* the whole warp */
    const int64_t u0 = pfirst[(int64_t)m * n_cap + j];
    const uint32_t x = (uint32_t)urow[u0], pre = d_div(pl.div[m], x);
    const uint32_t dig = pre - d_div(pl.n[m], pre) * pl.n[m].d;
    /* x < prod n_l, so x / div[0] is digit 0 */
    const float *src[2] = {
        m == 1 ? cores.c[0] + (t * g.n[0] + d_div(pl.div[0], x)) * g.slice[0]
               : part + li.part_off[m - 1] + (t * li.cap[m - 1] + pid[(int64_t)(m - 1) * n_cap + u0]) * g.psz[m - 1],
        cores.c[m] + (t * g.n[m] + dig) * g.slice[m]};
    float *w = sh + (threadIdx.x / 32u) * pl.part_per_warp[m];
    d_stage_in<2>(src, pl.part_cend[m], w, LANE, 32);
    __syncwarp(); /* the operands, written by every lane, read by every lane */
    const struct rt_stage &st = pl.part[m];
    d_tiles<R>(st, w, w + st.b, part + li.part_off[m] + (t * li.cap[m] + j) * g.psz[m], (const float *)NULL, 1.0f,
               LANE, 32);
}

/* The distinct rows, summed over the terms, as k_rows (k >= 2): warp u stages
 * L_{k-2} (core 0's slice for k = 2) and the last core's slice, then writes its
 * tiles of the row, summed over the terms in acc (the warp's shared memory, each
 * lane its own tiles) and stored from registers at the last term. */
template <int R>
__global__ static void k_rows_rt(const __grid_constant__ struct fpd__engine_geom g,
                                 const __grid_constant__ struct dev_cores cores,
                                 const __grid_constant__ struct level_info li,
                                 const __grid_constant__ struct rt_plan pl, const int64_t *urow, const int64_t *pid,
                                 const int64_t *counts, int64_t n_cap, const float *part, float *rows) {
    FPD__DYN_SHARED(sh);
    const int64_t u = RT_WARP_ID;
    if (u >= counts[CNT_NU]) return; /* the whole warp */
    const int32_t m = g.k - 1;
    const uint32_t x = (uint32_t)urow[u], q = d_div(pl.n[m], x), dig = x - q * pl.n[m].d;
    const int64_t j = m == 1 ? 0 : pid[(int64_t)(m - 1) * n_cap + u];
    float *w = sh + (threadIdx.x / 32u) * pl.rows_per_warp, *acc = w + pl.rows_acc, *dst = rows + u * g.D;
    for (int64_t t = 0; t < g.p; t++) {
        /* for k = 2, q = x / n_1 is digit 0 (x < n_0 n_1) */
        const float *src[2] = {
            m == 1 ? cores.c[0] + (t * g.n[0] + q) * g.slice[0]
                   : part + li.part_off[m - 1] + (t * li.cap[m - 1] + j) * g.psz[m - 1],
            cores.c[m] + (t * g.n[m] + dig) * g.slice[m]};
        d_stage_in<2>(src, pl.rows_cend, w, LANE, 32);
        __syncwarp(); /* staged by every lane, read by every lane */
        const bool last = t + 1 == g.p;
        d_tiles<R>(pl.rows, w, w + pl.rows.b, last ? dst : acc, t > 0 ? acc : (const float *)NULL, 1.0f, LANE, 32);
        if (!last) __syncwarp(); /* the next term restages w (acc: each lane its own) */
    }
}

/* The direct forward for k = K (2 or 3) cores of inner rank R, as k_direct: a warp
 * an output row (a block for rows of much work: whole_block), entry by entry and
 * term by term. For each, the K slices are staged in the row's shared memory
 * (16-byte units, four loads in flight a thread), then K - 1 products of
 * register tiles (rt_plan_init: for K = 3 the cheaper order, left to right
 * (G_0 G_1) G_2, or right to left G_0 (G_1 G_2), which at d = 8 x 4 x 4 is two
 * thirds of the multiply-adds), the last one added into the output row's
 * accumulator acc (c times). */
template <int R, int K>
__global__ static void k_direct_rt(const __grid_constant__ struct fpd__engine_geom g,
                                   const __grid_constant__ struct dev_cores cores,
                                   const __grid_constant__ struct rt_plan pl, const int64_t *idx, const int64_t *offs,
                                   int64_t bag_size, bool ilo, int64_t n_bags, int64_t n, bool none, bool mean,
                                   const float *psw, int64_t pad, const int64_t *perm, const float *E, const float *P,
                                   int64_t fc, int64_t n_out, bool whole_block, float *out) {
    FPD__DYN_SHARED(sh);
    const uint32_t nt = whole_block || blockDim.x < 32 ? blockDim.x : 32, lane = threadIdx.x % nt;
    const int64_t o = (int64_t)blockIdx.x * (blockDim.x / nt) + threadIdx.x / nt;
    if (o >= n_out) return; /* the whole warp (block) */
    const uint32_t DD = (uint32_t)g.D;
    float *row = sh + (threadIdx.x / nt) * pl.dir_per_row, *acc = row, *sl = row + pl.dir_sl;
    if (pl.dir_d4)
        for (uint32_t q = lane; 4 * q < DD; q += nt) d_st4(acc + 4 * q, make_float4(0.0f, 0.0f, 0.0f, 0.0f));
    else
        for (uint32_t q = lane; q < DD; q += nt) acc[q] = 0.0f;
    int64_t lo = o, hi = o + 1;
    if (!none) d_bag_range(offs, bag_size, ilo, n_bags, n, o, &lo, &hi);
    const int64_t cnt = mean ? d_bag_count(idx, lo, hi, pad) : 0;
    for (int64_t i = lo; i < hi; i++) {
        const int64_t id = idx[i];
        if (pad >= 0 && id == pad) continue; /* the same for every thread of the row */
        const float c = d_entry_coef(mean, cnt, psw, i);
        /* digits, last first: x = (i_0 n_1 + i_1) n_2 + i_2 */
        uint32_t x = (uint32_t)(perm ? perm[id] : id), dig[K];
        #pragma unroll
        for (int m = K - 1; m > 0; m--) {
            const uint32_t q = d_div(pl.n[m], x);
            dig[m] = x - q * pl.n[m].d;
            x = q;
        }
        dig[0] = x;
        for (int64_t t = 0; t < g.p; t++) {
            const float *src[K];
            #pragma unroll
            for (int m = 0; m < K; m++) src[m] = cores.c[m] + (t * g.n[m] + dig[m]) * g.slice[m];
            d_stage_in<K>(src, pl.dir_cend, sl, lane, nt);
            FPD__ROW_SYNC(); /* the slices, staged by every thread, read by every thread */
            #pragma unroll
            for (int s = 0; s + 1 < K; s++) {
                const struct rt_stage &st = pl.dir[s];
                if (s + 2 < K) {
                    d_tiles<R>(st, row + st.a, row + st.b, row + st.c, (const float *)NULL, 1.0f, lane, nt);
                    FPD__ROW_SYNC(); /* the intermediate, read by every thread */
                } else {
                    d_tiles<R>(st, row + st.a, row + st.b, acc, acc, c, lane, nt);
                }
            }
            FPD__ROW_SYNC(); /* the slices and the intermediate are rewritten by the next term or entry */
        }
        if (fc > 0) /* free coordinates: + c E[id] P (E by the original id), a float a thread */
            for (uint32_t jj = lane; jj < DD; jj += nt) {
                float s = 0.0f;
                for (int64_t q = 0; q < fc; q++) s += E[id * fc + q] * P[q * DD + jj];
                acc[jj] += c * s;
            }
    }
    FPD__ROW_SYNC(); /* acc, written by tiles (and by floats: free coordinates), read by 16-byte units */
    float *dst = out + o * (int64_t)DD;
    if (pl.dir_d4)
        for (uint32_t q = lane; 4 * q < DD; q += nt) d_st4(dst + 4 * q, d_ld4(acc + 4 * q));
    else
        for (uint32_t q = lane; q < DD; q += nt) dst[q] = acc[q];
}

/* The backward at level m >= 1 for the same shapes, where also R % 4 == 0 and
 * w_m % 4 == 0 (rt_plan_init), a warp a node (prefix, or distinct row at the last
 * level) and term, as k_core_grad and k_parent_grad. The warp stages the node's
 * gradient dN [Dm[m-1], w_m] (drow's row at the last level, else its dL_m block)
 * and the other operand (the parent's L_{m-1} [Dm[m-1], R], or the core slice
 * G_m[t, digit] [R, w_m]) by 16-byte loads, four in flight a lane (d_stage_in);
 * then each lane computes tiles of the product from 16-byte shared-memory loads,
 * the sums in registers. The contraction is not over R here (parent: over w_m,
 * core: over Dm[m-1]), and one product has few outputs (the last level's dG
 * slice, [R, d_{k-1}], is 32 floats at (8,1)): when the tiles do not fill the
 * warp, the contraction is split among the lanes (2^ls parts, rt_plan_init). The
 * parts go to the warp's shared memory; after a __syncwarp each lane sums them
 * for the outputs lane, lane + 32, ... and adds that into global memory
 * atomically (other warps add into the same parent or slice): consecutive lanes
 * on consecutive floats, a 128-byte line a warp instruction. The last level's
 * adds are not combined across rows: the distinct rows are sorted by stored row,
 * so neighbours share leading digits, not the last one (the slice's); rows of one
 * last digit are contiguous only after another sort. */

/* out[o] of the 2^ls parts at sh (part q at sh + q * pstride), summed, added into
 * dst[o] for o = lane, lane + 32, ... < nout */
__device__ static inline void d_add_parts(const float *sh, const struct rt_back &bk, float *dst, uint32_t lane) {
    for (uint32_t o = lane; o < bk.nout; o += 32) {
        float s = sh[o];
        for (uint32_t q = 1; q < (1u << bk.ls); q++) s += sh[q * bk.pstride + o];
        atomicAdd(dst + o, s);
    }
}

/* dL_{m-1}[parent] += dN G^T for node c of level m and term t: dL [Dm[m-1], R],
 * dL[a, b] = sum_y dN[a, y] G[b, y], y < w_m. A tile is dL[a, 4i .. 4i + 3]: for
 * each 4 y of its part of the contraction, one 16-byte load of dN's row a and
 * four of G's rows 4i .. 4i + 3 (both contiguous in y) for 16 multiply-adds. */
template <int R>
__global__ static void k_parent_grad_rt(const __grid_constant__ struct fpd__engine_geom g,
                                        const __grid_constant__ struct dev_cores cores,
                                        const __grid_constant__ struct level_info li,
                                        const __grid_constant__ struct rt_plan pl, const int64_t *urow,
                                        const int64_t *pid, const int64_t *pfirst, const int64_t *counts,
                                        int64_t n_cap, int32_t m, const float *drow, float *dpart) {
    FPD__DYN_SHARED(sh);
    constexpr uint32_t RG = R >= 4 ? R / 4 : 1; /* column groups of dL (R = 2 is never launched) */
    const int64_t c = RT_WARP_ID, t = blockIdx.y;
    const bool last = m == g.k - 1;
    if (c >= (last ? counts[CNT_NU] : counts[CNT_PRE(m)])) return; /* the whole warp */
    const struct rt_back &bk = pl.pg[m];
    const int64_t f = last ? c : pfirst[(int64_t)m * n_cap + c];
    const int64_t P = pid[(int64_t)(m - 1) * n_cap + f];
    const uint32_t x = (uint32_t)urow[f], pre = d_div(pl.div[m], x);
    const uint32_t dig = pre - d_div(pl.n[m], pre) * pl.n[m].d;
    const float *src[2] = {last ? drow + c * g.D : dpart + li.dpart_off[m] + (t * li.cap[m] + c) * g.psz[m],
                           cores.c[m] + (t * g.n[m] + dig) * g.slice[m]};
    float *w = sh + (threadIdx.x / 32u) * bk.per_warp;
    d_stage_in<2>(src, bk.cend, w, LANE, 32);
    __syncwarp(); /* the operands, staged by every lane, read by every lane */
    const float *dN = w, *G = w + bk.b;
    float *parts = w + bk.out;
    const uint32_t W = (uint32_t)g.w[m], S = 1u << bk.ls;
    for (uint32_t v = LANE; v < bk.tiles << bk.ls; v += 32) {
        const uint32_t tile = v >> bk.ls, s = v & (S - 1), a = tile / RG, b = 4 * (tile - a * RG);
        const float *dNa = dN + a * W, *Gb = G + b * W;
        float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        for (uint32_t y = 4 * s; y < W; y += 4 * S) {
            const float4 n4 = d_ld4(dNa + y), g0 = d_ld4(Gb + y), g1 = d_ld4(Gb + W + y);
            const float4 g2 = d_ld4(Gb + 2 * W + y), g3 = d_ld4(Gb + 3 * W + y);
            acc.x = fmaf(n4.x, g0.x, fmaf(n4.y, g0.y, fmaf(n4.z, g0.z, fmaf(n4.w, g0.w, acc.x))));
            acc.y = fmaf(n4.x, g1.x, fmaf(n4.y, g1.y, fmaf(n4.z, g1.z, fmaf(n4.w, g1.w, acc.y))));
            acc.z = fmaf(n4.x, g2.x, fmaf(n4.y, g2.y, fmaf(n4.z, g2.z, fmaf(n4.w, g2.w, acc.z))));
            acc.w = fmaf(n4.x, g3.x, fmaf(n4.y, g3.y, fmaf(n4.z, g3.z, fmaf(n4.w, g3.w, acc.w))));
        }
        d_st4(parts + s * bk.pstride + a * R + b, acc);
    }
    __syncwarp(); /* the parts, written by every lane, summed by every lane */
    d_add_parts(parts, bk, dpart + li.dpart_off[m - 1] + (t * li.cap[m - 1] + P) * g.psz[m - 1], LANE);
}

/* dG_m[t, digit] += L_{m-1}^T dN for node j of level m and term t: dG [R, w_m],
 * dG[b, y] = sum_a L[a, b] dN[a, y], a < Dm[m-1]. A tile is dG[4i .. 4i + 3,
 * 4l .. 4l + 3]: for each a of its part of the contraction, one 16-byte load of
 * L's row a and one of dN's row a for 16 multiply-adds. */
template <int R>
__global__ static void k_core_grad_rt(const __grid_constant__ struct fpd__engine_geom g,
                                      const __grid_constant__ struct dev_cores cores,
                                      const __grid_constant__ struct level_info li,
                                      const __grid_constant__ struct rt_plan pl, const int64_t *urow,
                                      const int64_t *pid, const int64_t *pfirst, const int64_t *counts, int64_t n_cap,
                                      int32_t m, const float *part, const float *drow, const float *dpart,
                                      float *grad, unsigned char *touched) {
    FPD__DYN_SHARED(sh);
    const int64_t j = RT_WARP_ID, t = blockIdx.y;
    const bool last = m == g.k - 1;
    if (j >= (last ? counts[CNT_NU] : counts[CNT_PRE(m)])) return; /* the whole warp */
    const struct rt_back &bk = pl.cg[m];
    const int64_t f = last ? j : pfirst[(int64_t)m * n_cap + j];
    const uint32_t x = (uint32_t)urow[f], pre = d_div(pl.div[m], x);
    const uint32_t dig = pre - d_div(pl.n[m], pre) * pl.n[m].d;
    const int64_t sl = t * g.n[m] + dig;
    /* x < prod n_l, so x / div[0] is digit 0 */
    const float *src[2] = {
        m == 1 ? cores.c[0] + (t * g.n[0] + d_div(pl.div[0], x)) * g.slice[0]
               : part + li.part_off[m - 1] + (t * li.cap[m - 1] + pid[(int64_t)(m - 1) * n_cap + f]) * g.psz[m - 1],
        last ? drow + j * g.D : dpart + li.dpart_off[m] + (t * li.cap[m] + j) * g.psz[m]};
    float *w = sh + (threadIdx.x / 32u) * bk.per_warp;
    d_stage_in<2>(src, bk.cend, w, LANE, 32);
    __syncwarp(); /* the operands, staged by every lane, read by every lane */
    const float *L = w, *dN = w + bk.b;
    float *parts = w + bk.out;
    const uint32_t W = (uint32_t)g.w[m], M = bk.steps, S = 1u << bk.ls, ncg = bk.ncg.d;
    for (uint32_t v = LANE; v < bk.tiles << bk.ls; v += 32) {
        const uint32_t tile = v >> bk.ls, s = v & (S - 1), bi = d_div(bk.ncg, tile), y = 4 * (tile - bi * ncg);
        float4 acc[4];
        #pragma unroll
        for (int q = 0; q < 4; q++) acc[q] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        for (uint32_t a = s; a < M; a += S) {
            const float4 l4 = d_ld4(L + a * R + 4 * bi), n4 = d_ld4(dN + a * W + y);
            const float l[4] = {l4.x, l4.y, l4.z, l4.w};
            #pragma unroll
            for (int q = 0; q < 4; q++) {
                acc[q].x = fmaf(l[q], n4.x, acc[q].x);
                acc[q].y = fmaf(l[q], n4.y, acc[q].y);
                acc[q].z = fmaf(l[q], n4.z, acc[q].z);
                acc[q].w = fmaf(l[q], n4.w, acc[q].w);
            }
        }
        #pragma unroll
        for (int q = 0; q < 4; q++) d_st4(parts + s * bk.pstride + (4 * bi + (uint32_t)q) * W + y, acc[q]);
    }
    __syncwarp(); /* the parts, written by every lane, summed by every lane */
    d_add_parts(parts, bk, grad + sl * g.slice[m], LANE);
    if (LANE == 0) touched[sl] = 1;
}

/* ------------------------------------------------------------ kernels: free coordinates */

/* the original id of stored row x (the permutation's inverse, or x itself) */
__device__ static inline int64_t d_orig(const int64_t *inv, int64_t x) { return inv ? inv[x] : x; }

/* Eq[u] = E[i] as a file of kind stores it (free-round-impl.h; E[i] itself when it
 * cannot be stored), for each distinct row u: one thread a row */
__global__ static void k_free_round(const int64_t *urow, const int64_t *counts, const int64_t *inv, const float *E,
                                    int64_t c, enum fpd_free_kind kind, float *Eq) {
    const int64_t u = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (u >= counts[CNT_NU]) return;
    const float *x = E + d_orig(inv, urow[u]) * c;
    if (!fpd__free_round_row(kind, x, c, Eq + u * c))
        for (int64_t q = 0; q < c; q++) Eq[u * c + q] = x[q];
}

/* rows[u] += E[i] P for each distinct row u (i its original id; Eq[u] instead when
 * Eq is given, quantization-aware): block u */
__global__ static void k_free_rows(const int64_t *urow, const int64_t *counts, const int64_t *inv, const float *E,
                                   const float *Eq, const float *P, int64_t c, int64_t D, float *rows) {
    const int64_t u = blockIdx.x;
    if (u >= counts[CNT_NU]) return;
    const float *eu = Eq ? Eq + u * c : E + d_orig(inv, urow[u]) * c;
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x) {
        float s = 0.0f;
        for (int64_t q = 0; q < c; q++) s += eu[q] * P[q * D + j];
        rows[u * D + j] += s;
    }
}

/* dE[i] += drow[u] P^T, E's row i touched (rows distinct: no atomics): block u */
__global__ static void k_free_grad_e(const int64_t *urow, const int64_t *counts, const int64_t *inv, const float *P,
                                     const float *drow, int64_t c, int64_t D, float *gE, unsigned char *touched) {
    const int64_t u = blockIdx.x;
    if (u >= counts[CNT_NU]) return;
    const int64_t i = d_orig(inv, urow[u]);
    for (int64_t q = threadIdx.x; q < c; q += blockDim.x) {
        float s = 0.0f;
        for (int64_t j = 0; j < D; j++) s += drow[u * D + j] * P[q * D + j];
        gE[i * c + q] += s;
    }
    if (threadIdx.x == 0) touched[i] = 1;
}

/* dP[q] += sum over distinct rows u of E[i_u, q] drow[u] (a loop in row order:
 * deterministic; Eq[u, q] instead when Eq is given), P's row q touched when there
 * is a row: block q */
__global__ static void k_free_grad_p(const int64_t *urow, const int64_t *counts, const int64_t *inv, const float *E,
                                     const float *Eq, const float *drow, int64_t c, int64_t D, float *gP,
                                     unsigned char *touched) {
    const int64_t q = blockIdx.x, nu = counts[CNT_NU];
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x) {
        float s = 0.0f;
        for (int64_t u = 0; u < nu; u++) s += (Eq ? Eq[u * c + q] : E[d_orig(inv, urow[u]) * c + q]) * drow[u * D + j];
        gP[q * D + j] += s;
    }
    if (threadIdx.x == 0 && nu > 0) touched[q] = 1;
}

/* ------------------------------------------------------------ kernels: backward */

/* The distinct rows' gradients drow[u] = sum over u's sorted entries q of coef *
 * gout[bag of q] (or gout[entry] without pooling), by chunks of FPD__RG_CHUNK sorted
 * entries, one block a chunk: a row whose entries all lie in the chunk is stored, a
 * row cut by a chunk's edge is added atomically (k_row_grads_zero cleared it). A
 * popular id (a Zipf head row holds thousands of a batch's entries) is then summed
 * by many blocks at once instead of one thread's loop over all its entries. */
#define FPD__RG_CHUNK 32
__global__ static void k_row_grads_zero(const int64_t *pos, const int64_t *slot, const int64_t *counts, int64_t D,
                                        float *drow) {
    const int64_t q = ((int64_t)blockIdx.x + 1) * FPD__RG_CHUNK; /* the edge after chunk blockIdx.x */
    if (q >= counts[CNT_NV]) return;
    const int64_t u = slot[pos[q]];
    if (u != slot[pos[q - 1]]) return;
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x) drow[u * D + j] = 0.0f;
}
__global__ static void k_row_grads(const int64_t *ustart, const int64_t *pos, const int64_t *slot,
                                   const int64_t *bag_of, const float *coef, const int64_t *counts, bool none,
                                   const float *gout, int64_t D, float *drow) {
    __shared__ int64_t s_u[FPD__RG_CHUNK], s_src[FPD__RG_CHUNK];
    __shared__ float s_c[FPD__RG_CHUNK];
    const int64_t q0 = (int64_t)blockIdx.x * FPD__RG_CHUNK, nv = counts[CNT_NV];
    if (q0 >= nv) return;
    const int cnt = (int)(nv - q0 < FPD__RG_CHUNK ? nv - q0 : FPD__RG_CHUNK);
    for (int x = threadIdx.x; x < cnt; x += blockDim.x) { /* the chunk's entries, loaded at once */
        const int64_t i = pos[q0 + x];
        s_u[x] = slot[i];
        s_src[x] = none ? i : bag_of[i];
        s_c[x] = none ? 1.0f : coef[i];
    }
    __syncthreads();
    const int64_t u_first = s_u[0], u_last = s_u[cnt - 1];
    const bool cut_first = ustart[u_first] < q0, cut_last = ustart[u_last + 1] > q0 + cnt;
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x) {
        int64_t u = u_first;
        float acc = 0.0f;
        for (int x = 0; x <= cnt; x++) {
            if (x == cnt || s_u[x] != u) { /* row u's entries in this chunk end here */
                float *dst = drow + u * D + j;
                if ((u == u_first && cut_first) || (u == u_last && cut_last)) atomicAdd(dst, acc);
                else *dst = acc;
                if (x == cnt) break;
                u = s_u[x];
                acc = 0.0f;
            }
            acc += s_c[x] * gout[s_src[x] * D + j];
        }
    }
}

/* the node's gradient dN at level m: drow for m = k-1 (every term), else dL_m */
__device__ static inline const float *d_node_grad(const struct fpd__engine_geom &g, const struct level_info &li,
                                                  const float *drow, const float *dpart, int32_t m, int64_t t,
                                                  int64_t j) {
    if (m == g.k - 1) return drow + j * g.D;
    return dpart + li.dpart_off[m] + (t * li.cap[m] + j) * g.psz[m];
}

/* dG_m[t, digit] += L_{m-1}^T dN for every node j of level m >= 1 (atomics: warp (j, t)) */
__global__ static void k_core_grad(const __grid_constant__ struct fpd__engine_geom g,
                                   const __grid_constant__ struct dev_cores cores,
                                   const __grid_constant__ struct level_info li, const int64_t *urow,
                                   const int64_t *pid, const int64_t *pfirst, const int64_t *counts, int64_t n_cap,
                                   int32_t m, const float *part, const float *drow, const float *dpart, float *grad,
                                   unsigned char *touched) {
    const int64_t j = ITEM_ID, t = blockIdx.y;
    const bool last = m == g.k - 1;
    if (j >= (last ? counts[CNT_NU] : counts[CNT_PRE(m)])) return;
    const int64_t f = last ? j : pfirst[(int64_t)m * n_cap + j], x = urow[f];
    const int64_t dig = d_digit(g, x, m), sl = t * g.n[m] + dig;
    const float *Lp = d_parent_partial(g, cores, part, li.part_off, li.cap, pid, n_cap, m, t, x, f);
    const float *dN = d_node_grad(g, li, drow, dpart, m, t, j);
    float *dG = grad + sl * g.slice[m];
    const uint32_t Dp = (uint32_t)g.Dm[m - 1], rm = (uint32_t)g.r[m], wm = (uint32_t)g.w[m], ne = rm * wm;
    for (uint32_t e = LANE; e < ne; e += 32) {
        const uint32_t b = e / wm, c = e - b * wm;
        float s = 0.0f;
        #pragma unroll 4
        for (uint32_t a = 0; a < Dp; a++)
            s += Lp[a * rm + b] * dN[a * wm + c];
        atomicAdd(dG + e, s);
    }
    if (LANE == 0) touched[sl] = 1;
}

/* dL_{m-1}[P] = sum over P's children c (level m) of dN_c G_m[c]^T: warp (c, t)
 * adds child c's product into its parent's dL atomically (k_parent_zero cleared
 * the parents first). A parent with many children (the prefix of a Zipf head:
 * hundreds of distinct rows) is then summed by as many warps, not by one block. */
__global__ static void k_parent_zero(const __grid_constant__ struct fpd__engine_geom g,
                                     const __grid_constant__ struct level_info li, const int64_t *counts, int32_t m,
                                     float *dpart) {
    /* the used prefixes of every term: flat, grid-stride (the grid is sized for the
     * capacity, the count is known on the device only) */
    const int64_t per = counts[CNT_PRE(m - 1)] * g.psz[m - 1];
    const int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t x = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; x < per * g.p; x += step) {
        const int64_t t = x / per, e = x - t * per;
        dpart[li.dpart_off[m - 1] + t * li.cap[m - 1] * g.psz[m - 1] + e] = 0.0f;
    }
}
__global__ static void k_parent_grad(const __grid_constant__ struct fpd__engine_geom g,
                                     const __grid_constant__ struct dev_cores cores,
                                     const __grid_constant__ struct level_info li, const int64_t *urow,
                                     const int64_t *pid, const int64_t *pfirst, const int64_t *counts, int64_t n_cap,
                                     int32_t m, const float *drow, float *dpart) {
    const int64_t c = ITEM_ID, t = blockIdx.y;
    const bool last = m == g.k - 1;
    if (c >= (last ? counts[CNT_NU] : counts[CNT_PRE(m)])) return;
    const int64_t f = last ? c : pfirst[(int64_t)m * n_cap + c];
    const int64_t P = pid[(int64_t)(m - 1) * n_cap + f];
    const float *G = cores.c[m] + (t * g.n[m] + d_digit(g, urow[f], m)) * g.slice[m];
    const float *dN = d_node_grad(g, li, drow, dpart, m, t, c);
    float *dL = dpart + li.dpart_off[m - 1] + (t * li.cap[m - 1] + P) * g.psz[m - 1];
    const uint32_t rm = (uint32_t)g.r[m], wm = (uint32_t)g.w[m], ne = (uint32_t)(g.Dm[m - 1] * g.r[m]);
    for (uint32_t e = LANE; e < ne; e += 32) {
        const uint32_t a = e / rm, b = e - a * rm;
        const float *dNa = dN + a * wm, *Gb = G + b * wm;
        float s = 0.0f;
        #pragma unroll 4
        for (uint32_t y = 0; y < wm; y++)
            s += dNa[y] * Gb[y];
        atomicAdd(dL + e, s);
    }
}

/* level 0: dG_0[t, digit] += dL_0[P] (k >= 2) or drow[u] (k = 1); the prefixes of
 * level 0 are distinct digits, so no two blocks of one term share a slice */
__global__ static void k_first_grad(const __grid_constant__ struct fpd__engine_geom g,
                                    const __grid_constant__ struct level_info li, const int64_t *urow,
                                    const int64_t *pfirst, const int64_t *counts, const float *drow, const float *dpart,
                                    float *grad, unsigned char *touched) {
    const int64_t P = blockIdx.x, t = blockIdx.y;
    const bool one = g.k == 1;
    if (P >= (one ? counts[CNT_NU] : counts[CNT_PRE(0)])) return;
    const int64_t x = urow[one ? P : pfirst[P]];
    const int64_t sl = t * g.n[0] + d_digit(g, x, 0);
    const float *src = one ? drow + P * g.D : dpart + li.dpart_off[0] + (t * li.cap[0] + P) * g.psz[0];
    float *dG = grad + sl * g.slice[0];
    for (int64_t e = threadIdx.x; e < g.slice[0]; e += blockDim.x)
        dG[e] += src[e];
    if (threadIdx.x == 0) touched[sl] = 1;
}

/* ------------------------------------------------------------ kernel: the step */

/* one block per slice: the update, then the gradient and the flag cleared */
__global__ static void k_step(int kind, float *x, float *grad, float *m1, float *m2, unsigned char *touched, int64_t sl,
                              float lr, float b1, float b2, float eps, float bc1, float bc2) {
    __shared__ float red[FPD__STEP_THREADS];
    __shared__ float mult;
    const int64_t s = blockIdx.x;
    if (kind != FPD_OPTIMIZER_KIND_ADAM && !touched[s]) return;
    float *xs = x + s * sl, *g = grad + s * sl;
    if (kind == FPD_OPTIMIZER_KIND_SGD) {
        for (int64_t j = threadIdx.x; j < sl; j += blockDim.x) {
            xs[j] -= lr * g[j];
            g[j] = 0.0f;
        }
    } else if (kind == FPD_OPTIMIZER_KIND_ROWWISE_ADAGRAD) {
        float ss = 0.0f;
        for (int64_t j = threadIdx.x; j < sl; j += blockDim.x)
            ss += g[j] * g[j];
        red[threadIdx.x] = ss;
        __syncthreads();
        for (unsigned h = blockDim.x / 2; h > 0; h /= 2) {
            if (threadIdx.x < h) red[threadIdx.x] += red[threadIdx.x + h];
            __syncthreads();
        }
        if (threadIdx.x == 0) {
            m1[s] += red[0] / (float)sl;
            mult = lr / (sqrtf(m1[s]) + eps);
        }
        __syncthreads();
        for (int64_t j = threadIdx.x; j < sl; j += blockDim.x) {
            xs[j] -= mult * g[j];
            g[j] = 0.0f;
        }
    } else {
        float *a1 = m1 + s * sl, *a2 = m2 + s * sl;
        for (int64_t j = threadIdx.x; j < sl; j += blockDim.x) {
            const float gv = g[j];
            a1[j] = b1 * a1[j] + (1.0f - b1) * gv;
            a2[j] = b2 * a2[j] + (1.0f - b2) * gv * gv;
            xs[j] -= lr * (a1[j] / bc1) / (sqrtf(a2[j] / bc2) + eps);
            g[j] = 0.0f;
        }
    }
    if (threadIdx.x == 0) touched[s] = 0;
}

/* ------------------------------------------------------------ register-tiled kernels: plan */

static struct fdiv fdiv_make(uint32_t d) {
    struct fdiv f;
    uint32_t l = 0; /* ceil(log2 d) */
    while (l < 32 && ((uint64_t)1 << l) < d) l++;
    f.d = d;
    f.mul = (uint32_t)(((uint64_t)1 << 32) * (((uint64_t)1 << l) - d) / d + 1);
    f.s1 = l < 1 ? l : 1;
    f.s2 = l < 1 ? 0 : l - 1;
    return f;
}

static uint32_t round4(int64_t f) { return (uint32_t)((f + 3) & ~(int64_t)3); }

/* Warps a block of k_rows_rt / k_partial_rt (and of the backward's k_core_grad_rt /
 * k_parent_grad_rt) with `floats` of shared memory a warp:
 * as many as 48 KiB holds (a block's without opting in), up to FPD__ITEMS; 0 when
 * not one (the generic kernel then). */
static int32_t rt_warps(int64_t floats) {
    const int64_t w = 48 * 1024 / (floats * 4);
    return (int32_t)(w > FPD__ITEMS ? FPD__ITEMS : w);
}

/* C[M, N] = A[M, R] B[R, N] at float offsets a, b, c (rt_stage) */
static void rt_stage_make(struct rt_stage *st, int64_t a, int64_t b, int64_t c, int64_t M, int64_t N) {
    st->a = (uint32_t)a;
    st->b = (uint32_t)b;
    st->c = (uint32_t)c;
    st->n = (uint32_t)N;
    st->vec = N % 4 == 0;
    const int64_t ncg = st->vec ? N / 4 : N;
    st->ncg = fdiv_make((uint32_t)ncg);
    st->tiles = (uint32_t)(M * ncg);
}

/* A backward product (struct rt_back): operands of fa and fb floats, nout outputs
 * in `tiles` tiles, a contraction of `steps` steps, split among the lanes in as
 * many parts (a power of 2) as fills the warp's 32 lanes with tiles and gives each
 * part a step at least; warps stays 0 when a warp's shared memory does not fit. */
static void rt_back_make(struct rt_back *bk, int64_t fa, int64_t fb, int64_t nout, int64_t tiles, int64_t steps,
                         uint32_t ncg) {
    uint32_t ls = 0;
    while ((tiles << (ls + 1)) <= 32 && ((int64_t)1 << (ls + 1)) <= steps) ls++;
    bk->cend[0] = (uint32_t)(fa / 4);
    bk->cend[1] = (uint32_t)((fa + fb) / 4);
    bk->b = (uint32_t)fa;
    bk->out = (uint32_t)(fa + fb);
    bk->nout = (uint32_t)nout;
    bk->pstride = (uint32_t)(nout + 4);
    bk->per_warp = (uint32_t)(fa + fb + ((nout + 4) << ls));
    bk->tiles = (uint32_t)tiles;
    bk->ls = ls;
    bk->steps = (uint32_t)steps;
    bk->ncg = fdiv_make(ncg > 0 ? ncg : 1);
    bk->warps = rt_warps(fa + fb + ((nout + 4) << ls));
}

/* Which register-tiled kernels apply to the engine's layer, and their layouts
 * (struct rt_plan). They need k >= 2 cores whose inner ranks r_1..r_{k-1} are all R
 * in {2, 4, 8, 16, 32} (R is their template parameter: the heuristic's shapes),
 * every slice and partial a multiple of 4 floats (16-byte units: always for R % 4
 * == 0), stored rows below 2^32 (32-bit digits) and, per kernel, shared memory
 * within the 48 KiB a block has without opting in: a warp (k_rows_rt,
 * k_partial_rt; k_core_grad_rt and k_parent_grad_rt, which also need R % 4 == 0
 * and, at their level m, w_m % 4 == 0) or a row (k_direct_rt, which also needs
 * k = 2 or 3). */
static void rt_plan_init(struct cuda_engine *e) {
    const struct fpd__engine_geom *g = &e->g;
    struct rt_plan *pl = &e->rt;
    memset(pl, 0, sizeof *pl);
    const int32_t k = g->k;
    if (k < 2 || g->padded > (int64_t)0xffffffff || g->r[0] != 1 || g->r[k] != 1) return;
    const int64_t R = g->r[1], smem = 48 * 1024 / 4;
    if (R != 2 && R != 4 && R != 8 && R != 16 && R != 32) return;
    for (int32_t m = 1; m < k; m++)
        if (g->r[m] != R) return;
    for (int32_t m = 0; m < k; m++)
        if (g->slice[m] % 4 || (m + 1 < k && g->psz[m] % 4)) return;
    for (int32_t m = 0; m < k; m++) {
        pl->n[m] = fdiv_make((uint32_t)g->n[m]);
        pl->div[m] = fdiv_make((uint32_t)g->div[m]);
    }
    /* rows: A = L_{k-2} [Dm[k-2], R] (core 0's slice for k = 2), B = core k-1's
     * slice [R, d_{k-1}] */
    const int64_t lp = g->psz[k - 2], gl = g->slice[k - 1];
    rt_stage_make(&pl->rows, 0, lp, 0, g->Dm[k - 2], g->d[k - 1]);
    pl->rows_cend[0] = (uint32_t)(lp / 4);
    pl->rows_cend[1] = (uint32_t)((lp + gl) / 4);
    pl->rows_acc = (uint32_t)(lp + gl);
    pl->rows_per_warp = (uint32_t)(lp + gl) + (g->p > 1 ? round4(g->D) : 0);
    pl->rows_warps = rt_warps(pl->rows_per_warp);
    /* partials of level m: A = L_{m-1} [Dm[m-1], R], B = core m's slice [R, d_m R] */
    for (int32_t m = 1; m + 1 < k; m++) {
        const int64_t a = g->psz[m - 1], b = g->slice[m];
        rt_stage_make(&pl->part[m], 0, a, 0, g->Dm[m - 1], g->w[m]);
        pl->part_cend[m][0] = (uint32_t)(a / 4);
        pl->part_cend[m][1] = (uint32_t)((a + b) / 4);
        pl->part_per_warp[m] = (uint32_t)(a + b);
        pl->part_warps[m] = rt_warps(a + b);
    }
    /* the direct forward: a row's [acc | intermediate | slices] */
    if (k == 2 || k == 3) {
        const int64_t d0 = g->d[0], d1 = g->d[1], d2 = k == 3 ? g->d[2] : 1, D4 = round4(g->D);
        const int64_t s0 = g->slice[0], s1 = g->slice[1], s2 = k == 3 ? g->slice[2] : 0;
        int64_t sl = D4;
        if (k == 2) { /* G_0 [d_0, R] G_1 [R, d_1] */
            rt_stage_make(&pl->dir[0], sl, sl + s0, 0, d0, d1);
            pl->dir_macs = (double)(d0 * R * d1);
        } else if (d2 < d0) {
            /* right to left, fewer multiply-adds when d_2 < d_0: U = G_1 [R d_1, R]
             * G_2 [R, d_2], which is [R, d_1 d_2], then G_0 [d_0, R] U */
            sl = D4 + round4(R * d1 * d2);
            rt_stage_make(&pl->dir[0], sl + s0, sl + s0 + s1, D4, R * d1, d2);
            rt_stage_make(&pl->dir[1], sl, D4, 0, d0, d1 * d2);
            pl->dir_macs = (double)(R * d1 * R * d2 + d0 * R * d1 * d2);
        } else { /* left to right: T = G_0 [d_0, R] G_1 [R, d_1 R], which is [d_0 d_1, R], then T G_2 [R, d_2] */
            sl = D4 + round4(d0 * d1 * R);
            rt_stage_make(&pl->dir[0], sl, sl + s0, D4, d0, d1 * R);
            rt_stage_make(&pl->dir[1], D4, sl + s0 + s1, 0, d0 * d1, d2);
            pl->dir_macs = (double)(d0 * R * d1 * R + d0 * d1 * R * d2);
        }
        pl->dir_cend[0] = (uint32_t)(s0 / 4);
        pl->dir_cend[1] = (uint32_t)((s0 + s1) / 4);
        pl->dir_cend[2] = (uint32_t)((s0 + s1 + s2) / 4);
        pl->dir_sl = (uint32_t)sl;
        pl->dir_per_row = (uint32_t)(sl + s0 + s1 + s2);
        pl->dir_d4 = g->D % 4 == 0;
        pl->dir_ok = sl + s0 + s1 + s2 <= smem;
    }
    /* the backward of level m (k_parent_grad_rt, k_core_grad_rt: 16-byte loads along
     * w_m and R), where R % 4 == 0 and w_m % 4 == 0; dN [Dm[m-1], w_m] is psz[m]
     * floats (D at the last level) */
    for (int32_t m = 1; m < k && R % 4 == 0; m++) {
        const int64_t M = g->Dm[m - 1], W = g->w[m], dn = g->psz[m], lp = g->psz[m - 1], gs = g->slice[m];
        if (W % 4) continue;
        /* parent: [dN | G], parts of dL [M, R]; tiles of 4, the contraction in W / 4 steps */
        rt_back_make(&pl->pg[m], dn, gs, lp, M * (R / 4), W / 4, 0);
        /* core: [L_{m-1} | dN], parts of dG [R, W]; tiles of 16, the contraction in M steps */
        rt_back_make(&pl->cg[m], lp, dn, gs, (R / 4) * (W / 4), M, (uint32_t)(W / 4));
    }
    pl->rank = (int32_t)R;
}

/* ------------------------------------------------------------ lifetime */

static void engine_destroy(void *ctx, void *state) {
    (void)ctx;
    struct cuda_engine *e = (struct cuda_engine *)state;
    if (!e) return;
    cudaSetDevice(e->device);
    if (e->stream) cudaStreamSynchronize(e->stream);
    for (int32_t m = 0; m < FPD_MAX_MODES; m++) {
        cudaFree(e->core[m]);
        cudaFree(e->grad[m]);
        cudaFree(e->m1[m]);
        cudaFree(e->m2[m]);
        cudaFree(e->touched[m]);
        if (e->registered[m]) cudaHostUnregister(fpd_layer_core(e->layer, m));
        fpd_free(e->hgrad[m]);
        fpd_free(e->hflag[m]);
        fpd_free(e->hlist[m]);
    }
    cudaFree(e->perm);
    cudaFree(e->inv);
    float *fbufs[9] = {e->fe, e->fp, e->gfe, e->gfp, e->fe_m1, e->fe_m2, e->fp_m1, e->fp_m2, e->feq};
    for (int q = 0; q < 9; q++) cudaFree(fbufs[q]);
    cudaFree(e->fe_touched);
    cudaFree(e->fp_touched);
    fpd_free(e->hgfe);
    fpd_free(e->hgfp);
    fpd_free(e->hfe_flag);
    fpd_free(e->hfp_flag);
    fpd_free(e->hfe_list);
    fpd_free(e->hfp_list);
    cudaFree(e->ws_mem);
    if (e->stream) cudaStreamDestroy(e->stream);
    fpd_free(e);
}

static enum fpd_status create_inner(struct cuda_engine *e, struct fpd_error *err) {
    const struct fpd__engine_geom *g = &e->g;
    ECUDA_TRY(cudaSetDevice(e->device));
    ECUDA_TRY(cudaStreamCreateWithFlags(&e->stream, cudaStreamNonBlocking));
    for (int32_t m = 0; m < g->k; m++) {
        const size_t nel = (size_t)fpd_layer_shape_core_numel(fpd_layer_get_shape(e->layer), m);
        ECUDA_TRY(cudaMalloc((void **)&e->core[m], nel * sizeof(float)));
        ECUDA_TRY(cudaMalloc((void **)&e->grad[m], nel * sizeof(float)));
        ECUDA_TRY(cudaMalloc((void **)&e->touched[m], (size_t)g->nslices[m]));
        ECUDA_TRY(cudaMemsetAsync(e->grad[m], 0, nel * sizeof(float), e->stream));
        ECUDA_TRY(cudaMemsetAsync(e->touched[m], 0, (size_t)g->nslices[m], e->stream));
        float *host = fpd_layer_core(e->layer, m);
        /* pinned host cores make the step's copy back asynchronous and fast; an
         * already registered range (another engine) or a refusal is fine */
        if (cudaHostRegister(host, nel * sizeof(float), cudaHostRegisterDefault) == cudaSuccess)
            e->registered[m] = true;
        else
            (void)cudaGetLastError();
        ECUDA_TRY(cudaMemcpyAsync(e->core[m], host, nel * sizeof(float), cudaMemcpyHostToDevice, e->stream));
        e->hgrad[m] = (float *)fpd_malloc(nel * sizeof(float));
        e->hflag[m] = (unsigned char *)fpd_malloc((size_t)g->nslices[m]);
        e->hlist[m] = (int64_t *)fpd_malloc((size_t)g->nslices[m] * sizeof(int64_t));
        if (!e->hgrad[m] || !e->hflag[m] || !e->hlist[m])
            return fpd__err(err, FPD_STATUS_NOMEM, "out of memory for the CUDA engine's host gradient views");
    }
    const int64_t *perm = fpd_layer_row_perm(e->layer);
    if (perm) {
        const size_t bytes = (size_t)fpd_layer_get_shape(e->layer)->rows * sizeof(int64_t);
        ECUDA_TRY(cudaMalloc((void **)&e->perm, bytes));
        ECUDA_TRY(cudaMemcpyAsync(e->perm, perm, bytes, cudaMemcpyHostToDevice, e->stream));
    }
    e->fc = fpd_layer_get_free_coords(e->layer);
    e->N = fpd_layer_get_shape(e->layer)->rows;
    if (e->fc > 0) { /* step 7: E, P, their gradients and flags; the inverse permutation */
        const size_t ne = (size_t)(e->N * e->fc), np = (size_t)(e->fc * g->D);
        ECUDA_TRY(cudaMalloc((void **)&e->fe, ne * sizeof(float)));
        ECUDA_TRY(cudaMalloc((void **)&e->fp, np * sizeof(float)));
        ECUDA_TRY(cudaMalloc((void **)&e->gfe, ne * sizeof(float)));
        ECUDA_TRY(cudaMalloc((void **)&e->gfp, np * sizeof(float)));
        ECUDA_TRY(cudaMalloc((void **)&e->fe_touched, (size_t)e->N));
        ECUDA_TRY(cudaMalloc((void **)&e->fp_touched, (size_t)e->fc));
        ECUDA_TRY(cudaMemcpyAsync(e->fe, fpd_layer_get_free_e_const(e->layer), ne * sizeof(float),
                                  cudaMemcpyHostToDevice, e->stream));
        ECUDA_TRY(cudaMemcpyAsync(e->fp, fpd_layer_get_free_p_const(e->layer), np * sizeof(float),
                                  cudaMemcpyHostToDevice, e->stream));
        ECUDA_TRY(cudaMemsetAsync(e->gfe, 0, ne * sizeof(float), e->stream));
        ECUDA_TRY(cudaMemsetAsync(e->gfp, 0, np * sizeof(float), e->stream));
        ECUDA_TRY(cudaMemsetAsync(e->fe_touched, 0, (size_t)e->N, e->stream));
        ECUDA_TRY(cudaMemsetAsync(e->fp_touched, 0, (size_t)e->fc, e->stream));
        e->hgfe = (float *)fpd_malloc(ne * sizeof(float));
        e->hgfp = (float *)fpd_malloc(np * sizeof(float));
        e->hfe_flag = (unsigned char *)fpd_malloc((size_t)e->N);
        e->hfp_flag = (unsigned char *)fpd_malloc((size_t)e->fc);
        e->hfe_list = (int64_t *)fpd_malloc((size_t)(e->N > 0 ? e->N : 1) * sizeof(int64_t));
        e->hfp_list = (int64_t *)fpd_malloc((size_t)e->fc * sizeof(int64_t));
        if (!e->hgfe || !e->hgfp || !e->hfe_flag || !e->hfp_flag || !e->hfe_list || !e->hfp_list)
            return fpd__err(err, FPD_STATUS_NOMEM, "out of memory for the CUDA engine's free-coordinate views");
        if (perm) {
            int64_t *inv = (int64_t *)fpd_malloc((size_t)g->padded * sizeof(int64_t));
            if (!inv) return fpd__err(err, FPD_STATUS_NOMEM, "out of memory for the inverse row permutation");
            for (int64_t x = 0; x < g->padded; x++) inv[x] = -1;
            for (int64_t i = 0; i < e->N; i++) inv[perm[i]] = i;
            cudaError_t ce = cudaMalloc((void **)&e->inv, (size_t)g->padded * sizeof(int64_t));
            if (ce == cudaSuccess)
                ce = cudaMemcpyAsync(e->inv, inv, (size_t)g->padded * sizeof(int64_t), cudaMemcpyHostToDevice,
                                     e->stream);
            if (ce == cudaSuccess) ce = cudaStreamSynchronize(e->stream); /* inv is freed below */
            fpd_free(inv);
            ECUDA_TRY(ce);
        }
    }
    ECUDA_TRY(cudaStreamSynchronize(e->stream));
    return FPD_STATUS_OK;
}

static enum fpd_status engine_create(void *ctx, struct fpd_layer *layer, const struct fpd_engine_params *params,
                                     void **state, struct fpd_error *err) {
    *state = NULL;
    const struct fpd_layer_shape *s = fpd_layer_get_shape(layer);
    if (s->dim > 2147483647 || s->rows > ((int64_t)1 << 62))
        return fpd__err(err, FPD_STATUS_UNSUPPORTED, "the CUDA engine does not take a table of %lld x %lld",
                        (long long)s->rows, (long long)s->dim);
    struct cuda_engine *e = (struct cuda_engine *)fpd_calloc(1, sizeof *e);
    if (!e) return fpd__err(err, FPD_STATUS_NOMEM, "out of memory for a CUDA engine");
    e->layer = layer;
    e->device = fpd__cuda_ctx_device(ctx);
    e->qat = params->free_qat && fpd_layer_get_free_coords(layer) > 0;
    e->qkind = (enum fpd_free_kind)params->free_qat_kind;
    fpd__engine_geom_init(s, &e->g);
    /* the kernels index inside a core slice and a partial (Dm[m] r[m+1] floats) in
     * 32 bits */
    for (int32_t m = 0; m < e->g.k; m++)
        if (e->g.slice[m] > 2147483647 || e->g.psz[m] > 2147483647) {
            fpd_free(e);
            return fpd__err(err, FPD_STATUS_UNSUPPORTED,
                            "the CUDA engine does not take core %d of %lld floats a slice (partials of %lld floats)",
                            (int)m, (long long)e->g.slice[m], (long long)e->g.psz[m]);
        }
    rt_plan_init(e);
    const char *kv = getenv("FPD_CUDA_KERNELS"); /* a benchmarking switch (the top of this file) */
    e->generic = !(kv && strcmp(kv, "tiled") == 0);
    enum fpd_status st = create_inner(e, err);
    if (st) {
        engine_destroy(ctx, e);
        return st;
    }
    *state = e;
    return FPD_STATUS_OK;
}

/* ------------------------------------------------------------ workspace */

static enum fpd_status ensure_ws(struct cuda_engine *e, int64_t n, int64_t n_offs, int64_t n_out,
                                 struct fpd_error *err) {
    if (e->ws_mem && n <= e->ws.n && n_offs <= e->ws.n_offs && n_out <= e->ws.n_out) return FPD_STATUS_OK;
    if (e->ws_mem) {
        n = n > e->ws.n ? n : e->ws.n;
        n_offs = n_offs > e->ws.n_offs ? n_offs : e->ws.n_offs;
        n_out = n_out > e->ws.n_out ? n_out : e->ws.n_out;
    }
    /* CUB's temporary storage for the sort and the scans at n items */
    size_t sort_bytes = 0, scan_bytes = 0;
    const int ni = (int)(n > 0 ? n : 1);
    ECUDA_TRY(cub::DeviceRadixSort::SortPairs(NULL, sort_bytes, (const uint64_t *)NULL, (uint64_t *)NULL,
                                              (const int64_t *)NULL, (int64_t *)NULL, ni, 0, e->g.key_bits, e->stream));
    ECUDA_TRY(cub::DeviceScan::InclusiveSum(NULL, scan_bytes, (const int64_t *)NULL, (int64_t *)NULL, ni, e->stream));
    const size_t temp = sort_bytes > scan_bytes ? sort_bytes : scan_bytes;
    struct fpd__engine_ws ws;
    enum fpd_status st = fpd__engine_ws_layout(&e->g, n, n_offs, n_out, temp, &ws, err);
    if (st) return st;
    ECUDA_TRY(cudaStreamSynchronize(e->stream));
    ECUDA_TRY(cudaFree(e->ws_mem));
    e->ws_mem = NULL;
    e->planned = false;
    cudaError_t ce = cudaMalloc((void **)&e->ws_mem, ws.total);
    if (ce != cudaSuccess) {
        e->ws_mem = NULL;
        memset(&e->ws, 0, sizeof e->ws);
        return fpd__err(err, FPD_STATUS_BACKEND,
                        "the CUDA engine's workspace for %lld entries (%.1f MiB) at %s:%d: %s; split the batch",
                        (long long)n, (double)ws.total / 1048576.0, __FILE__, __LINE__, cudaGetErrorString(ce));
    }
    e->ws = ws;
    e->temp_bytes = temp;
    return FPD_STATUS_OK;
}

static struct dev_cores cores_of(const struct cuda_engine *e) {
    struct dev_cores c;
    memset(&c, 0, sizeof c);
    for (int32_t m = 0; m < e->g.k; m++)
        c.c[m] = e->core[m];
    return c;
}

static struct level_info levels_of(const struct cuda_engine *e) {
    struct level_info li;
    memset(&li, 0, sizeof li);
    for (int32_t m = 0; m < e->g.k; m++) {
        li.part_off[m] = e->ws.part_off[m];
        li.dpart_off[m] = e->ws.dpart_off[m];
        li.cap[m] = fpd__engine_level_cap(&e->g, m, e->ws.n);
    }
    return li;
}

/* kern<R> (kern: a template on the rank alone) for the plan's rank */
#define FPD__RT_LAUNCH(R, kern, grid, block, smem, stream, ...)                                                        \
    do {                                                                                                               \
        switch (R) {                                                                                                   \
        case 2: FPD__LAUNCH_SMEM(kern<2>, grid, block, smem, stream, __VA_ARGS__); break;                              \
        case 4: FPD__LAUNCH_SMEM(kern<4>, grid, block, smem, stream, __VA_ARGS__); break;                              \
        case 8: FPD__LAUNCH_SMEM(kern<8>, grid, block, smem, stream, __VA_ARGS__); break;                              \
        case 16: FPD__LAUNCH_SMEM(kern<16>, grid, block, smem, stream, __VA_ARGS__); break;                            \
        default: FPD__LAUNCH_SMEM(kern<32>, grid, block, smem, stream, __VA_ARGS__); break;                            \
        }                                                                                                              \
    } while (0)

/* the partials' blocks start at multiples of 4 floats (16-byte units; they do
 * when every partial is a multiple of 4 floats, which rt_plan_init asks) */
static bool rt_parts_aligned(const struct cuda_engine *e, const struct level_info *li) {
    for (int32_t m = 0; m + 1 < e->g.k; m++)
        if (li->part_off[m] % 4) return false;
    return true;
}

/* the same for the partials' gradients (the backward's register-tiled kernels) */
static bool rt_dparts_aligned(const struct cuda_engine *e, const struct level_info *li) {
    for (int32_t m = 0; m + 1 < e->g.k; m++)
        if (li->dpart_off[m] % 4) return false;
    return true;
}

/* ------------------------------------------------------------ forward */

/* Quantization-aware training: e->feq = the batch's distinct rows of E rounded (at
 * most n of them), the buffer grown to n rows first. */
static enum fpd_status free_round(struct cuda_engine *e, const int64_t *urow, const int64_t *counts, int64_t n,
                                  struct fpd_error *err) {
    if (n * e->fc > e->feq_cap) {
        ECUDA_TRY(cudaStreamSynchronize(e->stream)); /* no queued kernel reads the old buffer */
        cudaFree(e->feq);
        e->feq = NULL;
        e->feq_cap = 0;
        ECUDA_TRY(cudaMalloc((void **)&e->feq, (size_t)(n * e->fc) * sizeof(float)));
        e->feq_cap = n * e->fc;
    }
    FPD__LAUNCH(k_free_round, blocks_for(n, 128), 128, e->stream, urow, counts, e->inv, e->fe, e->fc, e->qkind,
                e->feq);
    ECUDA_LAUNCHED();
    return FPD_STATUS_OK;
}

/* b's arrays are device pointers; the workspace holds at least b->n_indices entries */
static enum fpd_status forward_queue(struct cuda_engine *e, const struct fpd_bag_batch *b, int64_t n_bags, float *out,
                                     bool plan_only, struct fpd_error *err) {
    const struct fpd__engine_geom *g = &e->g;
    const int64_t n = b->n_indices, D = g->D, n_cap = e->ws.n;
    const bool none = b->mode == FPD_BAG_MODE_NONE;
    const int64_t n_out = none ? n : n_bags;
    cudaStream_t st = e->stream;
    int64_t *counts = ws_ptr<int64_t>(e, FPD__WS_COUNTS);
    ECUDA_TRY(cudaMemsetAsync(counts, 0, e->ws.size[FPD__WS_COUNTS], st));
    e->flops_valid = false;
    if (n == 0) {
        if (n_out > 0 && !plan_only) ECUDA_TRY(cudaMemsetAsync(out, 0, (size_t)(n_out * D) * sizeof(float), st));
        return FPD_STATUS_OK;
    }
    const uint64_t sentinel = (uint64_t)g->padded;
    uint64_t *key = ws_ptr<uint64_t>(e, FPD__WS_KEY), *key_s = ws_ptr<uint64_t>(e, FPD__WS_KEY_S);
    int64_t *pos = ws_ptr<int64_t>(e, FPD__WS_POS), *pos_s = ws_ptr<int64_t>(e, FPD__WS_POS_S);
    int64_t *flag = ws_ptr<int64_t>(e, FPD__WS_FLAG), *scan = ws_ptr<int64_t>(e, FPD__WS_SCAN);
    int64_t *slot = ws_ptr<int64_t>(e, FPD__WS_SLOT), *urow = ws_ptr<int64_t>(e, FPD__WS_UROW);
    int64_t *ustart = ws_ptr<int64_t>(e, FPD__WS_USTART), *pid = ws_ptr<int64_t>(e, FPD__WS_PID);
    int64_t *pfirst = ws_ptr<int64_t>(e, FPD__WS_PFIRST), *bag_of = ws_ptr<int64_t>(e, FPD__WS_BAG_OF);
    float *coef = ws_ptr<float>(e, FPD__WS_COEF), *part = ws_ptr<float>(e, FPD__WS_PART);
    float *rows = ws_ptr<float>(e, FPD__WS_ROWS);
    void *temp = ws_ptr<void>(e, FPD__WS_TEMP);
    size_t temp_bytes = e->temp_bytes;
    const int T = 256;
    const bool last_off = !none && b->offsets && b->include_last_offset;

    /* 1. keys, sort */
    FPD__LAUNCH(k_keys, blocks_for(n, T), T, st, b->indices, n, b->offsets, b->n_bags, last_off, b->padding_idx,
                e->perm, sentinel, key, pos, slot);
    ECUDA_LAUNCHED();
    ECUDA_TRY(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, (const uint64_t *)key, key_s, (const int64_t *)pos,
                                              pos_s, (int)n, 0, g->key_bits, st));
    /* 2. distinct rows */
    FPD__LAUNCH(k_run_flags, blocks_for(n, T), T, st, key_s, n, sentinel, flag);
    ECUDA_LAUNCHED();
    temp_bytes = e->temp_bytes;
    ECUDA_TRY(cub::DeviceScan::InclusiveSum(temp, temp_bytes, (const int64_t *)flag, scan, (int)n, st));
    FPD__LAUNCH(k_unique, blocks_for(n, T), T, st, key_s, pos_s, flag, scan, n, sentinel, slot, urow, ustart, counts);
    ECUDA_LAUNCHED();
    /* 3. the prefix tree, levels 0..k-2 */
    for (int32_t m = 0; m + 1 < g->k; m++) {
        FPD__LAUNCH(k_level_flags, blocks_for(n, T), T, st, urow, counts, n, g->div[m], flag);
        ECUDA_LAUNCHED();
        temp_bytes = e->temp_bytes;
        ECUDA_TRY(cub::DeviceScan::InclusiveSum(temp, temp_bytes, (const int64_t *)flag, scan, (int)n, st));
        FPD__LAUNCH(k_level_ids, blocks_for(n, T), T, st, flag, scan, counts, m, pid + (int64_t)m * n_cap,
                    pfirst + (int64_t)m * n_cap);
        ECUDA_LAUNCHED();
    }
    /* bags and coefficients (they need the slots: padding is not counted by MEAN) */
    if (!none && n_bags > 0) {
        FPD__LAUNCH(k_bags, blocks_for(n_bags, T), T, st, b->offsets, b->bag_size, b->include_last_offset, n_bags, n,
                    b->per_sample_weights, b->mode == FPD_BAG_MODE_MEAN, slot, bag_of, coef);
        ECUDA_LAUNCHED();
    }
    /* 4. partials once per distinct prefix, then the rows, then the pooling */
    const struct dev_cores cores = cores_of(e);
    const struct level_info li = levels_of(e);
    const struct rt_plan *pl = &e->rt;
    const bool rt = !e->generic && pl->rank > 0 && rt_parts_aligned(e, &li);
    for (int32_t m = 1; m + 1 < g->k; m++) {
        const int32_t wb = pl->part_warps[m];
        if (rt && wb > 0) {
            dim3 grid(blocks_for(li.cap[m], wb), (unsigned)g->p);
            FPD__RT_LAUNCH(pl->rank, k_partial_rt, grid, 32 * wb, (size_t)(wb * pl->part_per_warp[m]) * sizeof(float),
                           st, *g, cores, li, *pl, urow, pid, pfirst, counts, n_cap, m, part);
        } else {
            dim3 grid(items_grid(li.cap[m]), (unsigned)g->p);
            FPD__LAUNCH(k_partial, grid, FPD__ITEM_THREADS, st, *g, cores, li, urow, pid, pfirst, counts, n_cap, m,
                        part);
        }
        ECUDA_LAUNCHED();
    }
    if (plan_only) return FPD_STATUS_OK; /* the backward's plan after a direct forward */
    if (rt && pl->rows_warps > 0)
        FPD__RT_LAUNCH(pl->rank, k_rows_rt, blocks_for(n, pl->rows_warps), 32 * pl->rows_warps,
                       (size_t)(pl->rows_warps * pl->rows_per_warp) * sizeof(float), st, *g, cores, li, *pl, urow, pid,
                       counts, n_cap, part, rows);
    else
        FPD__LAUNCH(k_rows, items_grid(n), FPD__ITEM_THREADS, st, *g, cores, li, urow, pid, counts, n_cap, part, rows);
    ECUDA_LAUNCHED();
    if (e->fc > 0) {
        enum fpd_status s2 = e->qat ? free_round(e, urow, counts, n, err) : FPD_STATUS_OK;
        if (s2) return s2;
        FPD__LAUNCH(k_free_rows, grid_for(n), fpd__engine_block_threads(D), st, urow, counts, e->inv, e->fe,
                    e->qat ? e->feq : NULL, e->fp, e->fc, D, rows);
        ECUDA_LAUNCHED();
    }
    if (n_out > 0) {
        FPD__LAUNCH(k_pool, items_grid(n_out), FPD__ITEM_THREADS, st, b->offsets, b->bag_size, b->include_last_offset,
                    n_bags, n, none, slot, coef, rows, D, n_out, out);
        ECUDA_LAUNCHED();
    }
    return FPD_STATUS_OK;
}

/* floats of one partial buffer of the direct forward: max psz[m], 1 <= m <= k-2 */
static int64_t direct_maxpsz(const struct fpd__engine_geom *g) {
    int64_t mx = 0;
    for (int32_t m = 1; m + 1 < g->k; m++) mx = g->psz[m] > mx ? g->psz[m] : mx;
    return mx;
}

/* floats of the direct forward's shared memory: the output row, two partial
 * buffers, one slice of every core (k_direct) */
static int64_t direct_smem_floats(const struct fpd__engine_geom *g) {
    int64_t f = g->D + 2 * direct_maxpsz(g);
    for (int32_t m = 0; m < g->k; m++) f += g->slice[m];
    return f;
}

/* k_direct: a warp a row up to this many multiply-adds a row, else a block */
#define FPD__DIRECT_WARP_MACS 24576

/* the direct forward fits when its shared memory fits in 48 KiB */
static bool direct_fits(const struct fpd__engine_geom *g) { return direct_smem_floats(g) * 4 <= 48 * 1024; }

static enum fpd_status direct_queue(struct cuda_engine *e, const struct fpd_bag_batch *b, int64_t n_bags, float *out,
                                    struct fpd_error *err) {
    const struct fpd__engine_geom *g = &e->g;
    const struct rt_plan *pl = &e->rt;
    const bool none = b->mode == FPD_BAG_MODE_NONE;
    const int64_t n_out = none ? b->n_indices : n_bags, maxpsz = direct_maxpsz(g);
    e->flops_valid = false;
    if (n_out == 0) return FPD_STATUS_OK;
    /* A warp a row, up to 4 a block (as many as 48 KiB of shared memory holds;
     * direct_fits: one), when a row costs at most FPD__DIRECT_WARP_MACS multiply-adds;
     * else a block of up to 256 threads a row. Measured on an H200, 40M x 128, bags of
     * 1, the heuristic's shapes (tests/gpu/run.sh, Mrows/s warp / block): (8,1) 3,072
     * multiply-adds a row 453 / 241, (8,2) 6,144 243 / 138, (8,4) 12,288 126 / 74,
     * (16,2) 20,480 85 / 70-89, (32,1) 36,864 21 / 57-68 (the generic kernel k_direct;
     * k_direct_rt takes the same choice, from the same count, not measured apart). */
    /* multiply-adds of one entry's row, every term (left to right) */
    double per = 0.0;
    if (g->k >= 2) {
        for (int32_t m = 1; m + 1 < g->k; m++) per += (double)(g->Dm[m - 1] * g->r[m] * g->w[m]);
        per += (double)(g->Dm[g->k - 2] * g->r[g->k - 1] * g->d[g->k - 1]);
    }
    per *= (double)g->p;
    /* the register-tiled kernel (k = 2, 3; rt_plan_init) or the generic one */
    const bool rt = !e->generic && pl->rank > 0 && pl->dir_ok && (g->k == 2 || g->k == 3);
    const int64_t per_warp = rt ? (int64_t)pl->dir_per_row : direct_smem_floats(g);
    const bool whole_block = per > FPD__DIRECT_WARP_MACS;
    int64_t warps = 48 * 1024 / (per_warp * 4);
    warps = whole_block ? 1 : warps > 4 ? 4 : warps;
    /* a block a row: as many threads as the widest loop has items (k_direct_rt: tiles
     * of 4 outputs, and the row's 16-byte units) */
    int64_t width = g->D > maxpsz ? g->D : maxpsz;
    if (rt) {
        width = pl->dir_d4 ? g->D / 4 : g->D;
        for (int32_t s = 0; s + 1 < g->k; s++) width = pl->dir[s].tiles > width ? pl->dir[s].tiles : width;
    }
    const int threads = whole_block ? fpd__engine_block_threads(width) : (int)(32 * warps);
    const size_t smem = (size_t)(warps * per_warp) * sizeof(float);
    const float *psw = none ? (const float *)NULL : b->per_sample_weights;
    const bool mean = b->mode == FPD_BAG_MODE_MEAN;
    const unsigned grid = blocks_for(n_out, (int32_t)warps);
    const struct dev_cores cores = cores_of(e);
    if (rt) {
    /* k_direct_rt<R, K> for the plan's rank and K = k, through a pointer (the launch
     * macros take the kernel as one argument, which K's comma would split) */
#define FPD__DIRECT_RT_CASE(R, K)                                                                                      \
    case (R) * 8 + (K): {                                                                                              \
        decltype(&k_direct_rt<2, 2>) k_direct_rt_ptr = k_direct_rt<R, K>;                                              \
        FPD__LAUNCH_SMEM(k_direct_rt_ptr, grid, threads, smem, e->stream, *g, cores, *pl, b->indices, b->offsets,      \
                         b->bag_size, b->include_last_offset, n_bags, b->n_indices, none, mean, psw, b->padding_idx,   \
                         e->perm, e->fe, e->fp, e->fc, n_out, whole_block, out);                                       \
    } break;
        switch (pl->rank * 8 + g->k) {
            FPD__DIRECT_RT_CASE(2, 2)
            FPD__DIRECT_RT_CASE(2, 3)
            FPD__DIRECT_RT_CASE(4, 2)
            FPD__DIRECT_RT_CASE(4, 3)
            FPD__DIRECT_RT_CASE(8, 2)
            FPD__DIRECT_RT_CASE(8, 3)
            FPD__DIRECT_RT_CASE(16, 2)
            FPD__DIRECT_RT_CASE(16, 3)
            FPD__DIRECT_RT_CASE(32, 2)
            FPD__DIRECT_RT_CASE(32, 3)
        default:
            FPD_ASSERT(!"k_direct_rt: a rank or k that rt_plan_init does not take");
        }
#undef FPD__DIRECT_RT_CASE
    } else {
        FPD__LAUNCH_SMEM(k_direct, grid, threads, smem, e->stream, *g, cores, b->indices, b->offsets, b->bag_size,
                         b->include_last_offset, n_bags, b->n_indices, none, mean, psw, b->padding_idx, e->perm, maxpsz,
                         e->fe, e->fp, e->fc, n_out, per_warp, whole_block, out);
    }
    ECUDA_LAUNCHED();
    /* flops as executed: every entry's products, padding counted (the indices stay on the device) */
    const double macs = rt ? pl->dir_macs * (double)g->p : per;
    e->flops = (2.0 * macs + 2.0 * (double)(e->fc * g->D)) * (double)b->n_indices;
    e->flops_valid = true;
    return FPD_STATUS_OK;
}

/* the forward of a device batch: the tree (plan, partials, rows, pooling) or,
 * when chosen and it fits, the direct kernel (the plan is then built by the
 * backward) */
static enum fpd_status forward_any(struct cuda_engine *e, const struct fpd_bag_batch *d, int64_t n_bags, float *out,
                                   struct fpd_error *err) {
    enum fpd_status st;
    if (e->direct && !e->qat && direct_fits(&e->g)) { /* quantization-aware: the tree only */
        if ((st = direct_queue(e, d, n_bags, out, err))) return st;
        e->tree_planned = false;
    } else {
        if ((st = forward_queue(e, d, n_bags, out, false, err))) return st;
        e->tree_planned = true;
    }
    e->dlast = *d;
    return FPD_STATUS_OK;
}

extern "C" void fpd__cuda_engine_set_direct_forward(void *state, bool direct) {
    ((struct cuda_engine *)state)->direct = direct;
}

static bool same_batch(const struct fpd_bag_batch *a, const struct fpd_bag_batch *b) {
    return a->indices == b->indices && a->n_indices == b->n_indices && a->offsets == b->offsets &&
           a->n_bags == b->n_bags && a->bag_size == b->bag_size && a->include_last_offset == b->include_last_offset &&
           a->per_sample_weights == b->per_sample_weights && a->mode == b->mode && a->padding_idx == b->padding_idx;
}

extern "C" enum fpd_status fpd__cuda_engine_forward_device(void *state, const struct fpd_bag_batch *b, int64_t n_bags,
                                                           float *out, struct fpd_error *err) {
    struct cuda_engine *e = (struct cuda_engine *)state;
    ECUDA_TRY(cudaSetDevice(e->device));
    const int64_t n_out = b->mode == FPD_BAG_MODE_NONE ? b->n_indices : n_bags;
    enum fpd_status st = ensure_ws(e, b->n_indices, b->n_bags + 1, n_out, err);
    if (st) return st;
    e->planned = false;
    if ((st = forward_any(e, b, n_bags, out, err))) return st;
    e->last = *b;
    e->last_n_bags = n_bags;
    e->planned = true;
    return FPD_STATUS_OK;
}

static enum fpd_status engine_forward(void *ctx, void *state, const struct fpd_bag_batch *b, int64_t n_bags, float *out,
                                      struct fpd_error *err) {
    (void)ctx;
    struct cuda_engine *e = (struct cuda_engine *)state;
    ECUDA_TRY(cudaSetDevice(e->device));
    const int64_t n = b->n_indices, n_out = fpd_bag_batch_out_rows(b), D = e->g.D;
    const bool none = b->mode == FPD_BAG_MODE_NONE;
    const int64_t n_offs = !none && b->offsets ? b->n_bags : 0;
    enum fpd_status st = ensure_ws(e, n, n_offs + 1, n_out, err);
    if (st) return st;
    e->planned = false;
    /* the batch on the device, in the workspace */
    struct fpd_bag_batch d = *b;
    cudaStream_t s = e->stream;
    if (n > 0) {
        d.indices = ws_ptr<int64_t>(e, FPD__WS_IDX);
        ECUDA_TRY(
            cudaMemcpyAsync((void *)d.indices, b->indices, (size_t)n * sizeof(int64_t), cudaMemcpyHostToDevice, s));
    }
    if (n_offs > 0) {
        d.offsets = ws_ptr<int64_t>(e, FPD__WS_OFFS);
        ECUDA_TRY(cudaMemcpyAsync((void *)d.offsets, b->offsets, (size_t)n_offs * sizeof(int64_t),
                                  cudaMemcpyHostToDevice, s));
    } else if (!none && b->offsets) {
        d.offsets = ws_ptr<int64_t>(e, FPD__WS_OFFS); /* no offsets given: n_bags = 0 */
    }
    if (!none && b->per_sample_weights && n > 0) {
        d.per_sample_weights = ws_ptr<float>(e, FPD__WS_PSW);
        ECUDA_TRY(cudaMemcpyAsync((void *)d.per_sample_weights, b->per_sample_weights, (size_t)n * sizeof(float),
                                  cudaMemcpyHostToDevice, s));
    }
    float *dout = ws_ptr<float>(e, FPD__WS_OUT);
    if ((st = forward_any(e, &d, n_bags, dout, err))) return st;
    if (n_out > 0)
        ECUDA_TRY(cudaMemcpyAsync(out, dout, (size_t)(n_out * D) * sizeof(float), cudaMemcpyDeviceToHost, s));
    ECUDA_TRY(cudaStreamSynchronize(s));
    e->last = *b; /* the host batch: backward is checked against it */
    e->last_n_bags = n_bags;
    e->planned = true;
    return FPD_STATUS_OK;
}

/* ------------------------------------------------------------ backward */

static enum fpd_status backward_queue(struct cuda_engine *e, const struct fpd_bag_batch *b, const float *gout,
                                      struct fpd_error *err) {
    const struct fpd__engine_geom *g = &e->g;
    const int64_t n = b->n_indices, D = g->D, n_cap = e->ws.n;
    if (n == 0) return FPD_STATUS_OK;
    if (!e->tree_planned) { /* after a direct forward: the plan and the partials now */
        enum fpd_status s2 = forward_queue(e, &e->dlast, e->last_n_bags, NULL, true, err);
        if (s2) return s2;
        e->tree_planned = true;
    }
    cudaStream_t st = e->stream;
    const int64_t *counts = ws_ptr<int64_t>(e, FPD__WS_COUNTS);
    const int64_t *pos_s = ws_ptr<int64_t>(e, FPD__WS_POS_S), *urow = ws_ptr<int64_t>(e, FPD__WS_UROW);
    const int64_t *ustart = ws_ptr<int64_t>(e, FPD__WS_USTART), *pid = ws_ptr<int64_t>(e, FPD__WS_PID);
    const int64_t *pfirst = ws_ptr<int64_t>(e, FPD__WS_PFIRST), *bag_of = ws_ptr<int64_t>(e, FPD__WS_BAG_OF);
    const float *coef = ws_ptr<float>(e, FPD__WS_COEF), *part = ws_ptr<float>(e, FPD__WS_PART);
    float *drow = ws_ptr<float>(e, FPD__WS_DROW), *dpart = ws_ptr<float>(e, FPD__WS_DPART);
    const struct dev_cores cores = cores_of(e);
    const struct level_info li = levels_of(e);
    const unsigned p = (unsigned)g->p;
    const int64_t chunks = (n + FPD__RG_CHUNK - 1) / FPD__RG_CHUNK, *slot = ws_ptr<int64_t>(e, FPD__WS_SLOT);
    const int rg_threads = FPD__ONE_THREAD_BLOCKS ? 1 : fpd__engine_block_threads(D);
    FPD__LAUNCH(k_row_grads_zero, grid_for(chunks - 1), fpd__engine_block_threads(D), st, pos_s, slot, counts, D, drow);
    ECUDA_LAUNCHED();
    FPD__LAUNCH(k_row_grads, grid_for(chunks), rg_threads, st, ustart, pos_s, slot, bag_of, coef, counts,
                b->mode == FPD_BAG_MODE_NONE, gout, D, drow);
    ECUDA_LAUNCHED();
    if (e->fc > 0) { /* step 7: dE and dP from the rows' gradients */
        FPD__LAUNCH(k_free_grad_e, grid_for(n), fpd__engine_block_threads(e->fc), st, urow, counts, e->inv, e->fp, drow,
                    e->fc, D, e->gfe, e->fe_touched);
        ECUDA_LAUNCHED();
        enum fpd_status s2 = e->qat ? free_round(e, urow, counts, n, err) : FPD_STATUS_OK; /* E unchanged since the forward */
        if (s2) return s2;
        FPD__LAUNCH(k_free_grad_p, grid_for(e->fc), fpd__engine_block_threads(D), st, urow, counts, e->inv, e->fe,
                    e->qat ? e->feq : NULL, drow, e->fc, D, e->gfp, e->fp_touched);
        ECUDA_LAUNCHED();
    }
    /* the register-tiled kernels where the plan has them for the level (rt_plan_init) */
    const struct rt_plan *pl = &e->rt;
    const bool rt = !e->generic && pl->rank > 0 && rt_parts_aligned(e, &li) && rt_dparts_aligned(e, &li);
    for (int32_t m = g->k - 1; m >= 1; m--) {
        const int64_t cap_node = m == g->k - 1 ? n : li.cap[m];
        const struct rt_back *cg = &pl->cg[m], *pg = &pl->pg[m];
        if (rt && cg->warps > 0)
            FPD__RT_LAUNCH(pl->rank, k_core_grad_rt, dim3(blocks_for(cap_node, cg->warps), p), 32 * cg->warps,
                           (size_t)(cg->warps * cg->per_warp) * sizeof(float), st, *g, cores, li, *pl, urow, pid,
                           pfirst, counts, n_cap, m, part, drow, dpart, e->grad[m], e->touched[m]);
        else
            FPD__LAUNCH(k_core_grad, dim3(items_grid(cap_node), p), FPD__ITEM_THREADS, st, *g, cores, li, urow, pid,
                        pfirst, counts, n_cap, m, part, drow, dpart, e->grad[m], e->touched[m]);
        ECUDA_LAUNCHED();
        const unsigned zb = blocks_for(li.cap[m - 1] * g->psz[m - 1] * g->p, 256);
        FPD__LAUNCH(k_parent_zero, zb < 1024 ? zb : 1024, 256, st, *g, li, counts, m, dpart);
        ECUDA_LAUNCHED();
        if (rt && pg->warps > 0)
            FPD__RT_LAUNCH(pl->rank, k_parent_grad_rt, dim3(blocks_for(cap_node, pg->warps), p), 32 * pg->warps,
                           (size_t)(pg->warps * pg->per_warp) * sizeof(float), st, *g, cores, li, *pl, urow, pid,
                           pfirst, counts, n_cap, m, drow, dpart);
        else
            FPD__LAUNCH(k_parent_grad, dim3(items_grid(cap_node), p), FPD__ITEM_THREADS, st, *g, cores, li, urow, pid,
                        pfirst, counts, n_cap, m, drow, dpart);
        ECUDA_LAUNCHED();
    }
    const int64_t cap0 = g->k == 1 ? n : li.cap[0];
    FPD__LAUNCH(k_first_grad, dim3(grid_for(cap0), p), fpd__engine_block_threads(g->slice[0]), st, *g, li, urow, pfirst,
                counts, drow, dpart, e->grad[0], e->touched[0]);
    ECUDA_LAUNCHED();
    return FPD_STATUS_OK;
}

extern "C" enum fpd_status fpd__cuda_engine_backward_device(void *state, const struct fpd_bag_batch *b, int64_t n_bags,
                                                            const float *grad_out, struct fpd_error *err) {
    struct cuda_engine *e = (struct cuda_engine *)state;
    if (!e->planned || !same_batch(&e->last, b) || n_bags != e->last_n_bags)
        return fpd__err(err, FPD_STATUS_INVALID_ARG,
                        "the CUDA engine's backward needs the batch of the last forward call");
    ECUDA_TRY(cudaSetDevice(e->device));
    return backward_queue(e, b, grad_out, err);
}

static enum fpd_status engine_backward(void *ctx, void *state, const struct fpd_bag_batch *b, int64_t n_bags,
                                       const float *grad_out, struct fpd_error *err) {
    (void)ctx;
    struct cuda_engine *e = (struct cuda_engine *)state;
    if (!e->planned || !same_batch(&e->last, b) || n_bags != e->last_n_bags)
        return fpd__err(err, FPD_STATUS_INVALID_ARG,
                        "fpd_engine_backward needs the batch of the last fpd_engine_forward call");
    ECUDA_TRY(cudaSetDevice(e->device));
    const int64_t n_out = fpd_bag_batch_out_rows(b);
    float *dgout = ws_ptr<float>(e, FPD__WS_GOUT);
    if (n_out > 0)
        ECUDA_TRY(cudaMemcpyAsync(dgout, grad_out, (size_t)(n_out * e->g.D) * sizeof(float), cudaMemcpyHostToDevice,
                                  e->stream));
    enum fpd_status st = backward_queue(e, b, dgout, err);
    if (st) return st;
    ECUDA_TRY(cudaStreamSynchronize(e->stream));
    return FPD_STATUS_OK;
}

/* ------------------------------------------------------------ gradient and step */

/* m = k: dE (slices: E's rows), m = k + 1: dP (slices: P's rows), as the CPU engine */
static void free_grad(struct cuda_engine *e, int32_t m, const float **grad, const int64_t **slices,
                      int64_t *n_slices) {
    const bool is_e = m == e->g.k;
    const size_t nel = (size_t)(is_e ? e->N * e->fc : e->fc * e->g.D);
    const int64_t ns = is_e ? e->N : e->fc;
    float *hg = is_e ? e->hgfe : e->hgfp;
    unsigned char *hf = is_e ? e->hfe_flag : e->hfp_flag;
    int64_t *hl = is_e ? e->hfe_list : e->hfp_list, cnt = 0;
    cudaError_t ce = cudaSetDevice(e->device);
    if (ce == cudaSuccess)
        ce = cudaMemcpyAsync(hg, is_e ? e->gfe : e->gfp, nel * sizeof(float), cudaMemcpyDeviceToHost, e->stream);
    if (ce == cudaSuccess)
        ce = cudaMemcpyAsync(hf, is_e ? e->fe_touched : e->fp_touched, (size_t)ns, cudaMemcpyDeviceToHost, e->stream);
    if (ce == cudaSuccess) ce = cudaStreamSynchronize(e->stream);
    if (ce != cudaSuccess) {
        fpd__log(FPD_LOG_LEVEL_ERROR,
                 "CUDA engine: copying the gradient of the free coordinates back failed at %s:%d: %s", __FILE__,
                 __LINE__, cudaGetErrorString(ce));
        memset(hg, 0, nel * sizeof(float));
    } else {
        for (int64_t q = 0; q < ns; q++)
            if (hf[q]) hl[cnt++] = q;
    }
    *grad = hg;
    if (slices) *slices = hl;
    if (n_slices) *n_slices = cnt;
}

static void engine_grad(void *ctx, void *state, int32_t m, const float **grad, const int64_t **slices,
                        int64_t *n_slices) {
    (void)ctx;
    struct cuda_engine *e = (struct cuda_engine *)state;
    if (m >= e->g.k) {
        free_grad(e, m, grad, slices, n_slices);
        return;
    }
    const size_t nel = (size_t)fpd_layer_shape_core_numel(fpd_layer_get_shape(e->layer), m);
    const int64_t ns = e->g.nslices[m];
    int64_t cnt = 0;
    cudaError_t ce = cudaSetDevice(e->device);
    if (ce == cudaSuccess)
        ce = cudaMemcpyAsync(e->hgrad[m], e->grad[m], nel * sizeof(float), cudaMemcpyDeviceToHost, e->stream);
    if (ce == cudaSuccess)
        ce = cudaMemcpyAsync(e->hflag[m], e->touched[m], (size_t)ns, cudaMemcpyDeviceToHost, e->stream);
    if (ce == cudaSuccess) ce = cudaStreamSynchronize(e->stream);
    if (ce != cudaSuccess) {
        /* the interface has no error return: log it and report no gradient */
        fpd__log(FPD_LOG_LEVEL_ERROR, "CUDA engine: copying the gradient of core %d back failed at %s:%d: %s", (int)m,
                 __FILE__, __LINE__, cudaGetErrorString(ce));
        memset(e->hgrad[m], 0, nel * sizeof(float));
    } else {
        for (int64_t q = 0; q < ns; q++)
            if (e->hflag[m][q]) e->hlist[m][cnt++] = q;
    }
    *grad = e->hgrad[m];
    if (slices) *slices = e->hlist[m];
    if (n_slices) *n_slices = cnt;
}

static void engine_zero_grad(void *ctx, void *state) {
    (void)ctx;
    struct cuda_engine *e = (struct cuda_engine *)state;
    cudaError_t ce = cudaSetDevice(e->device);
    for (int32_t m = 0; ce == cudaSuccess && m < e->g.k; m++) {
        const size_t nel = (size_t)fpd_layer_shape_core_numel(fpd_layer_get_shape(e->layer), m);
        ce = cudaMemsetAsync(e->grad[m], 0, nel * sizeof(float), e->stream);
        if (ce == cudaSuccess) ce = cudaMemsetAsync(e->touched[m], 0, (size_t)e->g.nslices[m], e->stream);
    }
    if (ce == cudaSuccess && e->fc > 0) {
        ce = cudaMemsetAsync(e->gfe, 0, (size_t)(e->N * e->fc) * sizeof(float), e->stream);
        if (ce == cudaSuccess) ce = cudaMemsetAsync(e->gfp, 0, (size_t)(e->fc * e->g.D) * sizeof(float), e->stream);
        if (ce == cudaSuccess) ce = cudaMemsetAsync(e->fe_touched, 0, (size_t)e->N, e->stream);
        if (ce == cudaSuccess) ce = cudaMemsetAsync(e->fp_touched, 0, (size_t)e->fc, e->stream);
    }
    if (ce != cudaSuccess)
        fpd__log(FPD_LOG_LEVEL_ERROR, "CUDA engine: clearing the gradient failed at %s:%d: %s", __FILE__, __LINE__,
                 cudaGetErrorString(ce));
}

static enum fpd_status ensure_state(struct cuda_engine *e, enum fpd_optimizer_kind kind, struct fpd_error *err) {
    const bool adam = kind == FPD_OPTIMIZER_KIND_ADAM || kind == FPD_OPTIMIZER_KIND_LAZY_ADAM;
    const bool ada = kind == FPD_OPTIMIZER_KIND_ROWWISE_ADAGRAD;
    if (!adam && !ada) return FPD_STATUS_OK;
    if (e->have_state && (e->state_kind == kind || (adam && e->m2[0]))) return FPD_STATUS_OK;
    for (int32_t m = 0; m < e->g.k; m++) {
        ECUDA_TRY(cudaFree(e->m1[m]));
        ECUDA_TRY(cudaFree(e->m2[m]));
        e->m1[m] = e->m2[m] = NULL;
        const size_t nel = (size_t)fpd_layer_shape_core_numel(fpd_layer_get_shape(e->layer), m);
        const size_t n1 = ada ? (size_t)e->g.nslices[m] : nel;
        ECUDA_TRY(cudaMalloc((void **)&e->m1[m], n1 * sizeof(float)));
        ECUDA_TRY(cudaMemsetAsync(e->m1[m], 0, n1 * sizeof(float), e->stream));
        if (adam) {
            ECUDA_TRY(cudaMalloc((void **)&e->m2[m], nel * sizeof(float)));
            ECUDA_TRY(cudaMemsetAsync(e->m2[m], 0, nel * sizeof(float), e->stream));
        }
    }
    if (e->fc > 0) { /* E's and P's state: row-wise Adagrad one float a row, Adam two an entry */
        float **m1s[2] = {&e->fe_m1, &e->fp_m1}, **m2s[2] = {&e->fe_m2, &e->fp_m2};
        const int64_t nel[2] = {e->N * e->fc, e->fc * e->g.D}, nrow[2] = {e->N, e->fc};
        for (int q = 0; q < 2; q++) {
            ECUDA_TRY(cudaFree(*m1s[q]));
            ECUDA_TRY(cudaFree(*m2s[q]));
            *m1s[q] = *m2s[q] = NULL;
            const size_t n1 = (size_t)(ada ? nrow[q] : nel[q]);
            ECUDA_TRY(cudaMalloc((void **)m1s[q], (n1 > 0 ? n1 : 1) * sizeof(float)));
            ECUDA_TRY(cudaMemsetAsync(*m1s[q], 0, n1 * sizeof(float), e->stream));
            if (adam) {
                ECUDA_TRY(cudaMalloc((void **)m2s[q], (size_t)(nel[q] > 0 ? nel[q] : 1) * sizeof(float)));
                ECUDA_TRY(cudaMemsetAsync(*m2s[q], 0, (size_t)nel[q] * sizeof(float), e->stream));
            }
        }
    }
    e->have_state = true;
    e->state_kind = kind;
    return FPD_STATUS_OK;
}

extern "C" enum fpd_status fpd__cuda_engine_step_device(void *state, const struct fpd_optimizer_params *o,
                                                        bool mirror_host, struct fpd_error *err) {
    struct cuda_engine *e = (struct cuda_engine *)state;
    ECUDA_TRY(cudaSetDevice(e->device));
    if ((unsigned)o->kind >= FPD_OPTIMIZER_KIND_COUNT)
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "unknown optimizer kind %d", (int)o->kind);
    enum fpd_status st = ensure_state(e, o->kind, err);
    if (st) return st;
    e->step++;
    float bc1, bc2;
    fpd__engine_adam_bias(o->beta1, o->beta2, e->step, &bc1, &bc2);
    for (int32_t m = 0; m < e->g.k; m++) {
        const float lr = (float)(o->learning_rate * (o->lr_scale[m] > 0.0 ? o->lr_scale[m] : 1.0));
        FPD__LAUNCH(k_step, grid_for(e->g.nslices[m]), FPD__STEP_THREADS, e->stream, (int)o->kind, e->core[m],
                    e->grad[m], e->m1[m], e->m2[m], e->touched[m], e->g.slice[m], lr, (float)o->beta1, (float)o->beta2,
                    (float)o->eps, bc1, bc2);
        ECUDA_LAUNCHED();
    }
    if (e->fc > 0) { /* step 7: E's rows, then P's rows (or P's gradient cleared when it is fixed) */
        const float lr = (float)(o->learning_rate * (o->free_lr_scale > 0.0 ? o->free_lr_scale : 1.0));
        FPD__LAUNCH(k_step, grid_for(e->N), FPD__STEP_THREADS, e->stream, (int)o->kind, e->fe, e->gfe, e->fe_m1,
                    e->fe_m2, e->fe_touched, e->fc, lr, (float)o->beta1, (float)o->beta2, (float)o->eps, bc1, bc2);
        ECUDA_LAUNCHED();
        const double ps = o->free_proj_lr_scale > 0.0 ? o->free_proj_lr_scale
                          : o->free_lr_scale > 0.0   ? o->free_lr_scale
                                                     : 1.0;
        if (!o->free_proj_fixed) {
            FPD__LAUNCH(k_step, grid_for(e->fc), FPD__STEP_THREADS, e->stream, (int)o->kind, e->fp, e->gfp, e->fp_m1,
                        e->fp_m2, e->fp_touched, e->g.D, (float)(o->learning_rate * ps), (float)o->beta1,
                        (float)o->beta2, (float)o->eps, bc1, bc2);
            ECUDA_LAUNCHED();
        } else {
            ECUDA_TRY(cudaMemsetAsync(e->gfp, 0, (size_t)(e->fc * e->g.D) * sizeof(float), e->stream));
            ECUDA_TRY(cudaMemsetAsync(e->fp_touched, 0, (size_t)e->fc, e->stream));
        }
    }
    if (mirror_host) {
        for (int32_t m = 0; m < e->g.k; m++) {
            const size_t nel = (size_t)fpd_layer_shape_core_numel(fpd_layer_get_shape(e->layer), m);
            ECUDA_TRY(cudaMemcpyAsync(fpd_layer_core(e->layer, m), e->core[m], nel * sizeof(float),
                                      cudaMemcpyDeviceToHost, e->stream));
        }
        if (e->fc > 0) {
            ECUDA_TRY(cudaMemcpyAsync(fpd_layer_get_free_e(e->layer), e->fe, (size_t)(e->N * e->fc) * sizeof(float),
                                      cudaMemcpyDeviceToHost, e->stream));
            ECUDA_TRY(cudaMemcpyAsync(fpd_layer_get_free_p(e->layer), e->fp, (size_t)(e->fc * e->g.D) * sizeof(float),
                                      cudaMemcpyDeviceToHost, e->stream));
        }
        ECUDA_TRY(cudaStreamSynchronize(e->stream));
    }
    return FPD_STATUS_OK;
}

static enum fpd_status engine_step(void *ctx, void *state, const struct fpd_optimizer_params *o,
                                   struct fpd_error *err) {
    (void)ctx;
    return fpd__cuda_engine_step_device(state, o, true, err);
}

/* Flops of the last forward, as the CPU engine counts them: 2 D_{m-1} r_m w_m per
 * distinct prefix of level m (1..k-2) and 2 D_{k-2} r_{k-1} d_{k-1} per distinct
 * row, per term. The counts are read back from the device here (a benchmark's
 * call, not the training loop's). */
static double engine_flops(void *ctx, void *state) {
    (void)ctx;
    struct cuda_engine *e = (struct cuda_engine *)state;
    if (e->flops_valid) return e->flops;
    int64_t c[FPD_MAX_MODES + 2];
    memset(c, 0, sizeof c);
    if (!e->planned || !e->ws_mem || cudaSetDevice(e->device) != cudaSuccess ||
        cudaMemcpyAsync(c, ws_ptr<int64_t>(e, FPD__WS_COUNTS), sizeof c, cudaMemcpyDeviceToHost, e->stream) !=
            cudaSuccess ||
        cudaStreamSynchronize(e->stream) != cudaSuccess)
        return 0.0;
    const struct fpd__engine_geom *g = &e->g;
    double f = 0.0;
    if (g->k >= 2) {
        for (int32_t m = 1; m + 1 < g->k; m++)
            f += 2.0 * (double)g->p * (double)c[CNT_PRE(m)] * (double)(g->Dm[m - 1] * g->r[m] * g->w[m]);
        f += 2.0 * (double)g->p * (double)c[CNT_NU] * (double)(g->Dm[g->k - 2] * g->r[g->k - 1] * g->d[g->k - 1]);
    }
    f += 2.0 * (double)c[CNT_NU] * (double)(e->fc * g->D); /* E[i] P per distinct row */
    e->flops = f;
    e->flops_valid = true;
    return f;
}

extern "C" void *fpd__cuda_engine_stream(void *state) { return (void *)((struct cuda_engine *)state)->stream; }

extern "C" void fpd__cuda_engine_ops(struct fpd_backend_i *iface) {
    iface->engine_create = engine_create;
    iface->engine_forward = engine_forward;
    iface->engine_backward = engine_backward;
    iface->engine_step = engine_step;
    iface->engine_grad = engine_grad;
    iface->engine_zero_grad = engine_zero_grad;
    iface->engine_flops = engine_flops;
    iface->engine_destroy = engine_destroy;
}
