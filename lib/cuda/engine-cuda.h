/*
 * engine-cuda.h - the FPD engine on CUDA (lib/cuda/engine-cuda.cu). Private: the
 * library reaches it through the backend's operations table (backend-impl.h);
 * the device-pointer entry points below are for the GPU benchmark
 * (tests/gpu/bench-gpu.cu) and, later, for callers that hold CUDA tensors.
 */
#ifndef FPD_ENGINE_CUDA_H
#define FPD_ENGINE_CUDA_H

#include "../backend-impl.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The device of a CUDA backend context (lib/cuda/backend-cuda.cu). */
int fpd__cuda_ctx_device(void *ctx);

/* Set the CUDA engine's operations into iface (called by the backend's create). */
void fpd__cuda_engine_ops(struct fpd_backend_i *iface);

/* Device-pointer variants of engine_forward / engine_backward / engine_step.
 * `state` comes from the iface's engine_create on a CUDA backend. The batch's
 * indices, offsets and per_sample_weights and out / grad_out are device
 * pointers (the batch struct itself is on the host); n_bags as lib/engine.c
 * resolves it. NOTHING is validated (the caller guarantees what
 * fpd_engine_forward checks) and nothing is synchronized: the work is queued on
 * the engine's stream (fpd__cuda_engine_stream), and a CUDA error of a kernel
 * shows up at a later call or synchronization. The step updates the device
 * cores only; mirror_host = true also copies them into the layer's host cores
 * and synchronizes (what engine_step does). */
enum fpd_status fpd__cuda_engine_forward_device(void *state, const struct fpd_bag_batch *b, int64_t n_bags, float *out,
                                                struct fpd_error *err);
enum fpd_status fpd__cuda_engine_backward_device(void *state, const struct fpd_bag_batch *b, int64_t n_bags,
                                                 const float *grad_out, struct fpd_error *err);
enum fpd_status fpd__cuda_engine_step_device(void *state, const struct fpd_optimizer_params *opt, bool mirror_host,
                                             struct fpd_error *err);
/* Choose the forward (default false: the tree). direct = true: one kernel
 * computes every output row from the cores, entry by entry, with no sort, no
 * de-duplication and no prefix sharing (more flops, far fewer launches and no
 * plan); the backward then builds the plan itself. Taken when its two partial
 * buffers fit in 48 KiB of shared memory, else the tree. For the benchmark to
 * measure both (tests/gpu/bench-gpu.cu) and the equality program to check both. */
void fpd__cuda_engine_set_direct_forward(void *state, bool direct);
/* The engine's stream (a cudaStream_t). */
void *fpd__cuda_engine_stream(void *state);

#ifdef __cplusplus
}
#endif
#endif
