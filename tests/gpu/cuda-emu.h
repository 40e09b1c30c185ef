/*
 * cuda-emu.h - just enough of the CUDA runtime and CUB to run the CUDA engine's
 * kernels (lib/cuda/engine-cuda.cu) on the CPU, for tests on machines without a
 * GPU: `make gpu-emu` compiles that file with g++ and -include this header, and
 * links it into the equality program (tests/gpu/gpu-equal.c), which then checks
 * the kernels' logic (indices, plan, prefix tree, pooling, segmented sums,
 * steps) against the CPU engine, under AddressSanitizer.
 *
 * What it does not check: real concurrency (no two threads ever run at once, so
 * a race between two writes, or an atomic the code forgot, passes), CUDA's own
 * rounding, launch limits, and the speed. A plain launch runs every block and
 * every thread of it in sequence, to its end; there __syncthreads and __syncwarp
 * do nothing, so the kernels that share memory among threads and are launched
 * that way (the step's reduction, the rows' gradients by chunks) run with one
 * thread under this emulation. A launch with dynamic shared memory (the direct
 * forward, the register-tiled rows and partials) runs its block's threads as
 * fibers instead (ucontext): a thread runs until it reaches a barrier or ends,
 * then the next one; __syncwarp releases a warp once every thread of it is
 * there, __syncthreads the block once all are. So a barrier that is missing
 * between a write to shared memory and another thread's read of it is seen
 * (the reader runs before the writer and reads 0xff bytes or a stale value:
 * one launch in two runs the threads in reverse order, so the reader is early
 * whichever side it is on), and one that not every thread reaches stops the
 * program ("deadlock"), as does a __syncwarp in a warp some of whose threads
 * have returned. Shared memory is refilled with 0xff bytes for each block.
 * (AddressSanitizer warns once that it does not fully support swapcontext; the
 * fibers tell it of each switch, __sanitizer_start_switch_fiber.) float4 is
 * 16-byte aligned as in CUDA, and engine-cuda.cu's 16-byte accesses stop the
 * program when misaligned (fpd_emu_check16). Device memory is malloc'd and filled with 0xff bytes (NaN floats, -1
 * integers), so reading what no kernel wrote shows up as a mismatch.
 */
#ifndef FPD_CUDA_EMU_H
#define FPD_CUDA_EMU_H

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <vector>

#include <stdio.h>
#include <sys/mman.h>
#include <ucontext.h>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define FPD_EMU_ASAN 1
#else
#define FPD_EMU_ASAN 0
#endif

#define __global__
#define __device__
#define __host__
#define __shared__ static
#define __grid_constant__

typedef int cudaError_t;
enum { cudaSuccess = 0, cudaErrorMemoryAllocation = 2 };
typedef void *cudaStream_t;
enum cudaMemcpyKind { cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice };
#define cudaStreamNonBlocking 1u
#define cudaHostRegisterDefault 0u

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
inline dim3 blockIdx, threadIdx, blockDim, gridDim;

/* FPD_EMU_TRACE set: each launch's kernel named on stderr ("launch NAME"), so a test
 * can tell which kernels a configuration runs */
static inline void fpd_emu_trace(const char *name) {
    static int on = -1;
    if (on < 0) on = getenv("FPD_EMU_TRACE") != NULL;
    if (on) fprintf(stderr, "launch %s\n", name);
}

template <typename F> static inline void fpd_emu_launch(dim3 grid, dim3 block, F fn) {
    gridDim = grid;
    blockDim = block;
    for (unsigned bz = 0; bz < grid.z; bz++)
        for (unsigned by = 0; by < grid.y; by++)
            for (unsigned bx = 0; bx < grid.x; bx++) {
                blockIdx = dim3(bx, by, bz);
                for (unsigned tz = 0; tz < block.z; tz++)
                    for (unsigned ty = 0; ty < block.y; ty++)
                        for (unsigned tx = 0; tx < block.x; tx++) {
                            threadIdx = dim3(tx, ty, tz);
                            fn();
                        }
            }
}
template <typename F> static inline void fpd_emu_launch(unsigned grid, dim3 block, F fn) {
    fpd_emu_launch(dim3(grid), block, fn);
}
template <typename F> static inline void fpd_emu_launch(dim3 grid, int block, F fn) {
    fpd_emu_launch(grid, dim3((unsigned)block), fn);
}
template <typename F> static inline void fpd_emu_launch(unsigned grid, int block, F fn) {
    fpd_emu_launch(dim3(grid), dim3((unsigned)block), fn);
}

/* dynamic shared memory (fpd_emu_launch_smem) */
inline std::vector<char> fpd_emu_smem;

/* ---- fibers: the threads of a block that synchronize (fpd_emu_launch_smem) */
enum { FPD_EMU_RUN, FPD_EMU_AT_WARP, FPD_EMU_AT_BLOCK, FPD_EMU_DONE };
struct fpd_emu_fiber {
    ucontext_t ctx;
    int state;
    void *fake; /* AddressSanitizer's fake stack, kept while the fiber is switched out */
};
/* a fiber's stack, and the inaccessible page below it that stops an overflow
 * (AddressSanitizer's swapcontext clears the shadow of the whole stack at every
 * switch: a small stack keeps the emulation fast) */
#define FPD_EMU_STACK ((size_t)32 << 10)
#define FPD_EMU_GUARD ((size_t)4 << 10)
inline std::vector<fpd_emu_fiber> fpd_emu_fibers;
inline char *fpd_emu_stacks;
inline size_t fpd_emu_nstacks;
inline ucontext_t fpd_emu_main;
inline int fpd_emu_cur = -1; /* the running fiber; -1: a plain launch, barriers do nothing */
inline void (*fpd_emu_body)(void *);
inline void *fpd_emu_body_arg;
inline const void *fpd_emu_main_bottom;
inline size_t fpd_emu_main_size;
inline void *fpd_emu_main_fake;
inline unsigned fpd_emu_launches;

static inline char *fpd_emu_stack(size_t i) {
    return fpd_emu_stacks + i * (FPD_EMU_GUARD + FPD_EMU_STACK) + FPD_EMU_GUARD;
}

[[noreturn]] static inline void fpd_emu_die(const char *what) {
    fprintf(stderr, "cuda-emu: %s (block %u %u %u, thread %u)\n", what, blockIdx.x, blockIdx.y, blockIdx.z,
            threadIdx.x);
    abort();
}

/* from the running fiber back to the scheduler; returns when it is resumed */
static inline void fpd_emu_to_main(bool ending) {
    fpd_emu_fiber &f = fpd_emu_fibers[(size_t)fpd_emu_cur];
#if FPD_EMU_ASAN
    __sanitizer_start_switch_fiber(ending ? nullptr : &f.fake, fpd_emu_main_bottom, fpd_emu_main_size);
#endif
    swapcontext(&f.ctx, &fpd_emu_main);
#if FPD_EMU_ASAN
    __sanitizer_finish_switch_fiber(f.fake, &fpd_emu_main_bottom, &fpd_emu_main_size);
#endif
    (void)ending;
}
static inline void fpd_emu_fiber_start(void) {
#if FPD_EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &fpd_emu_main_bottom, &fpd_emu_main_size);
#endif
    fpd_emu_body(fpd_emu_body_arg);
    fpd_emu_fibers[(size_t)fpd_emu_cur].state = FPD_EMU_DONE;
    fpd_emu_to_main(true); /* never resumed */
    fpd_emu_die("a finished fiber was resumed");
}
static inline void fpd_emu_barrier(int state) {
    if (fpd_emu_cur < 0) return;
    fpd_emu_fibers[(size_t)fpd_emu_cur].state = state;
    fpd_emu_to_main(false);
}
static inline void __syncthreads(void) { fpd_emu_barrier(FPD_EMU_AT_BLOCK); }
static inline void __syncwarp(void) { fpd_emu_barrier(FPD_EMU_AT_WARP); }

/* every block in sequence, its threads as fibers (see the top comment) */
template <typename F> static inline void fpd_emu_launch_fibers(dim3 grid, dim3 block, F &fn) {
    gridDim = grid;
    blockDim = block;
    const size_t nth = (size_t)block.x * block.y * block.z;
    if (fpd_emu_nstacks < nth) { /* kept for the program's life */
        if (fpd_emu_stacks) munmap(fpd_emu_stacks, fpd_emu_nstacks * (FPD_EMU_GUARD + FPD_EMU_STACK));
        void *m = mmap(nullptr, nth * (FPD_EMU_GUARD + FPD_EMU_STACK), PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) fpd_emu_die("no memory for the fibers' stacks");
        fpd_emu_stacks = (char *)m;
        fpd_emu_nstacks = nth;
        for (size_t i = 0; i < nth; i++)
            mprotect(fpd_emu_stacks + i * (FPD_EMU_GUARD + FPD_EMU_STACK), FPD_EMU_GUARD, PROT_NONE);
        fpd_emu_fibers.resize(nth);
        for (size_t i = 0; i < nth; i++) getcontext(&fpd_emu_fibers[i].ctx); /* once: makecontext reuses it */
    }
    fpd_emu_body = [](void *p) { (*(F *)p)(); };
    fpd_emu_body_arg = &fn;
    const bool reverse = (fpd_emu_launches++ & 1u) != 0;
    const size_t smem = fpd_emu_smem.size();
    for (unsigned bz = 0; bz < grid.z; bz++)
        for (unsigned by = 0; by < grid.y; by++)
            for (unsigned bx = 0; bx < grid.x; bx++) {
                blockIdx = dim3(bx, by, bz);
                if (smem) memset(fpd_emu_smem.data(), 0xff, smem);
                for (size_t i = 0; i < nth; i++) {
                    fpd_emu_fiber &f = fpd_emu_fibers[i];
                    f.ctx.uc_stack.ss_sp = fpd_emu_stack(i);
                    f.ctx.uc_stack.ss_size = FPD_EMU_STACK;
                    f.ctx.uc_link = nullptr;
                    makecontext(&f.ctx, fpd_emu_fiber_start, 0);
                    f.state = FPD_EMU_RUN;
                    f.fake = nullptr;
                }
                for (;;) {
                    for (size_t j = 0; j < nth; j++) { /* each runnable thread up to its next barrier or its end */
                        const size_t i = reverse ? nth - 1 - j : j;
                        if (fpd_emu_fibers[i].state != FPD_EMU_RUN) continue;
                        threadIdx = dim3((unsigned)(i % block.x), (unsigned)(i / block.x % block.y),
                                         (unsigned)(i / ((size_t)block.x * block.y)));
                        fpd_emu_cur = (int)i;
#if FPD_EMU_ASAN
                        __sanitizer_start_switch_fiber(&fpd_emu_main_fake, fpd_emu_stack(i), FPD_EMU_STACK);
#endif
                        swapcontext(&fpd_emu_main, &fpd_emu_fibers[i].ctx);
#if FPD_EMU_ASAN
                        __sanitizer_finish_switch_fiber(fpd_emu_main_fake, nullptr, nullptr);
#endif
                        fpd_emu_cur = -1;
                    }
                    size_t done = 0, at_block = 0;
                    bool released = false;
                    for (size_t w0 = 0; w0 < nth; w0 += 32) { /* warps: all at __syncwarp, none returned */
                        const size_t w1 = w0 + 32 < nth ? w0 + 32 : nth;
                        size_t at = 0, dn = 0;
                        for (size_t i = w0; i < w1; i++) {
                            at += fpd_emu_fibers[i].state == FPD_EMU_AT_WARP;
                            dn += fpd_emu_fibers[i].state == FPD_EMU_DONE;
                            at_block += fpd_emu_fibers[i].state == FPD_EMU_AT_BLOCK;
                        }
                        done += dn;
                        if (at > 0 && at + dn == w1 - w0) {
                            if (dn > 0) fpd_emu_die("__syncwarp in a warp some of whose threads have returned");
                            for (size_t i = w0; i < w1; i++) fpd_emu_fibers[i].state = FPD_EMU_RUN;
                            released = true;
                        }
                    }
                    if (done == nth) break;
                    if (released) continue;
                    if (at_block + done != nth) fpd_emu_die("deadlock: a barrier that not every thread reaches");
                    for (size_t i = 0; i < nth; i++)
                        if (fpd_emu_fibers[i].state == FPD_EMU_AT_BLOCK) fpd_emu_fibers[i].state = FPD_EMU_RUN;
                }
            }
}

/* dynamic shared memory: one buffer, sized by the launch; the block's threads
 * are fibers */
template <typename G, typename B, typename F> static inline void fpd_emu_launch_smem(G grid, B block, size_t smem, F fn) {
    fpd_emu_smem.assign(smem + 16, (char)0xff);
    fpd_emu_launch_fibers(dim3(grid), dim3(block), fn);
}

struct alignas(16) float4 {
    float x, y, z, w;
};
static inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
template <typename T> static inline T __ldg(const T *p) { return *p; }
/* engine-cuda.cu's 16-byte accesses (d_ld4, d_ldg4, d_st4) check their alignment here */
static inline void fpd_emu_check16(const void *p) {
    if ((uintptr_t)p & 15u) fpd_emu_die("a 16-byte access at an address that is not a multiple of 16");
}
static inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((uint64_t)a * b) >> 32); }
static inline float atomicAdd(float *p, float v) {
    const float old = *p;
    *p = old + v;
    return old;
}

static inline cudaError_t cudaMalloc(void **p, size_t n) {
    *p = malloc(n ? n : 1);
    if (!*p) return cudaErrorMemoryAllocation;
    memset(*p, 0xff, n);
    return cudaSuccess;
}
static inline cudaError_t cudaFree(void *p) {
    free(p);
    return cudaSuccess;
}
static inline cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind, cudaStream_t) {
    if (n) memmove(d, s, n);
    return cudaSuccess;
}
static inline cudaError_t cudaMemsetAsync(void *d, int v, size_t n, cudaStream_t) {
    if (n) memset(d, v, n);
    return cudaSuccess;
}
static inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
static inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned) {
    static int token;
    *s = &token;
    return cudaSuccess;
}
static inline cudaError_t cudaStreamDestroy(cudaStream_t) { return cudaSuccess; }
static inline cudaError_t cudaSetDevice(int) { return cudaSuccess; }
static inline cudaError_t cudaGetLastError(void) { return cudaSuccess; }
static inline const char *cudaGetErrorString(cudaError_t) { return "emulated CUDA error"; }
static inline cudaError_t cudaHostRegister(void *, size_t, unsigned) { return cudaSuccess; }
static inline cudaError_t cudaHostUnregister(void *) { return cudaSuccess; }

namespace cub {
struct DeviceRadixSort {
    /* stable, on bits [begin_bit, end_bit) of the keys only, as CUB */
    template <typename K, typename V>
    static cudaError_t SortPairs(void *temp, size_t &bytes, const K *kin, K *kout, const V *vin, V *vout, int n,
                                 int begin_bit = 0, int end_bit = (int)sizeof(K) * 8, cudaStream_t = 0) {
        if (!temp) {
            bytes = 64;
            return cudaSuccess;
        }
        const K mask = end_bit >= (int)sizeof(K) * 8 ? ~(K)0 : (((K)1 << end_bit) - 1);
        std::vector<int> order((size_t)n);
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
            return ((kin[a] & mask) >> begin_bit) < ((kin[b] & mask) >> begin_bit);
        });
        std::vector<K> ks((size_t)n);
        std::vector<V> vs((size_t)n);
        for (int i = 0; i < n; i++) {
            ks[(size_t)i] = kin[order[(size_t)i]];
            vs[(size_t)i] = vin[order[(size_t)i]];
        }
        std::copy(ks.begin(), ks.end(), kout);
        std::copy(vs.begin(), vs.end(), vout);
        return cudaSuccess;
    }
};
struct DeviceScan {
    template <typename I, typename O>
    static cudaError_t InclusiveSum(void *temp, size_t &bytes, I in, O out, int n, cudaStream_t = 0) {
        if (!temp) {
            bytes = 64;
            return cudaSuccess;
        }
        int64_t acc = 0;
        for (int i = 0; i < n; i++) out[i] = acc += in[i];
        return cudaSuccess;
    }
};
} // namespace cub

#endif
