/*
 * engine-plan-impl.h - host-side planning of the CUDA FPD engine
 * (lib/cuda/engine-cuda.cu): the layer's geometry (digit divisors, partial
 * sizes, radix-sort key bits), the per-level capacities of the prefix tree,
 * the layout of the per-batch device workspace, and launch shapes. Pure host
 * code, compiled into every build (lib/engine-plan.c), so that it is tested on
 * machines without a GPU (tests/lib/test-engine-plan.c). Not API.
 */
#ifndef FPD_ENGINE_PLAN_IMPL_H
#define FPD_ENGINE_PLAN_IMPL_H

#include "fpd-impl.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The geometry of a layer as the engine walks it. Notation as lib/cpu/engine-cpu.c:
 * digit m of stored row x is (x / div[m]) % n[m]; the prefix of length m+1 of x
 * is x / div[m]; L_m (m < k) is [Dm[m], r[m+1]] = psz[m] floats per term. */
struct fpd__engine_geom {
    int32_t k;
    int64_t p, D;
    int64_t n[FPD_MAX_MODES], d[FPD_MAX_MODES], r[FPD_MAX_MODES + 1];
    int64_t Dm[FPD_MAX_MODES];      /* d_0 .. d_m                                   */
    int64_t w[FPD_MAX_MODES];       /* d_m r_{m+1}                                  */
    int64_t slice[FPD_MAX_MODES];   /* r_m d_m r_{m+1}: floats of one core slice    */
    int64_t nslices[FPD_MAX_MODES]; /* p n_m                                        */
    int64_t psz[FPD_MAX_MODES];     /* Dm[m] r_{m+1}                                */
    int64_t div[FPD_MAX_MODES];     /* prod_{l > m} n_l                             */
    int64_t padded;                 /* prod n_m: stored rows; also the sort's sentinel key */
    int32_t key_bits;               /* bits that hold the keys 0..padded (sentinel included) */
};

/* Fill g from a checked shape. */
void fpd__engine_geom_init(const struct fpd_layer_shape *s, struct fpd__engine_geom *g);

/* Distinct prefixes of length m+1 a batch of n entries can have: min(n, n_0 .. n_m).
 * Level k-1 is the distinct rows. */
int64_t fpd__engine_level_cap(const struct fpd__engine_geom *g, int32_t m, int64_t n);

/* The per-batch device workspace: one allocation cut into aligned buffers. */
enum fpd__ws_buf {
    FPD__WS_IDX,      /* i64 [n]        the batch's indices                         */
    FPD__WS_OFFS,     /* i64 [n_offs]   its offsets                                 */
    FPD__WS_PSW,      /* f32 [n]        its per-sample weights                      */
    FPD__WS_KEY,      /* u64 [n]        stored rows (sentinel: padding)             */
    FPD__WS_KEY_S,    /* u64 [n]        sorted                                      */
    FPD__WS_POS,      /* i64 [n]        entry positions                             */
    FPD__WS_POS_S,    /* i64 [n]        sorted with the keys                        */
    FPD__WS_FLAG,     /* i64 [n]        run starts (scan input)                     */
    FPD__WS_SCAN,     /* i64 [n]        inclusive scan of the flags                 */
    FPD__WS_SLOT,     /* i64 [n]        distinct row of each entry, -1: none        */
    FPD__WS_BAG_OF,   /* i64 [n]        bag of each entry                           */
    FPD__WS_COEF,     /* f32 [n]        its weight in the bag's output              */
    FPD__WS_UROW,     /* i64 [n]        distinct stored rows, ascending             */
    FPD__WS_USTART,   /* i64 [n + 1]    their first sorted entry                    */
    FPD__WS_COUNTS,   /* i64 [FPD_MAX_MODES + 2] nu, npre[0..k-1], entries used     */
    FPD__WS_PID,      /* i64 [(k-1) n]  prefix id at level m of each distinct row   */
    FPD__WS_PFIRST,   /* i64 [(k-1) n]  first distinct row of each prefix           */
    FPD__WS_PART,     /* f32 sum_{m=1}^{k-2} p cap_m psz[m]: the partials L_m       */
    FPD__WS_DPART,    /* f32 sum_{m=0}^{k-2} p cap_m psz[m]: their gradients dL_m   */
    FPD__WS_ROWS,     /* f32 [n, D]     the distinct rows                           */
    FPD__WS_DROW,     /* f32 [n, D]     their gradients                             */
    FPD__WS_OUT,      /* f32 [n_out, D] the output (host path)                      */
    FPD__WS_GOUT,     /* f32 [n_out, D] the output's gradient (host path)           */
    FPD__WS_TEMP,     /* CUB temporary storage                                      */
    FPD__WS_COUNT
};

#define FPD__WS_ALIGN 256

struct fpd__engine_ws {
    int64_t n, n_offs, n_out;        /* capacities: entries, offsets, output rows   */
    size_t off[FPD__WS_COUNT];       /* byte offset of each buffer, FPD__WS_ALIGN-aligned */
    size_t size[FPD__WS_COUNT];      /* bytes of each buffer                        */
    size_t part_off[FPD_MAX_MODES];  /* float offset of L_m's block inside PART     */
    size_t dpart_off[FPD_MAX_MODES]; /* float offset of dL_m's block inside DPART   */
    size_t total;                    /* bytes of the allocation                     */
};

/* Lay out the workspace for n >= 0 entries, n_offs offsets and n_out output rows,
 * with temp_bytes of CUB temporary storage. Buffers never overlap and start at
 * multiples of FPD__WS_ALIGN; empty ones get one aligned unit. Errors:
 * INVALID_ARG (a negative count), UNSUPPORTED (sizes that overflow size_t, or
 * n beyond 2^31 - 1 entries: the kernels' grids). */
enum fpd_status fpd__engine_ws_layout(const struct fpd__engine_geom *g, int64_t n, int64_t n_offs, int64_t n_out,
                                      size_t temp_bytes, struct fpd__engine_ws *ws, struct fpd_error *err);

/* Threads of a block that loops over `width` elements: a multiple of 32 in
 * [32, 256], the smallest one >= width when width <= 256. */
int32_t fpd__engine_block_threads(int64_t width);

/* Adam's bias corrections of step t >= 1 in F32, as the CPU engine computes them
 * (1 - beta^t with powf). */
void fpd__engine_adam_bias(double beta1, double beta2, int64_t step, float *bc1, float *bc2);

#ifdef __cplusplus
}
#endif
#endif
