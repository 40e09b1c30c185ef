/*
 * cuda-emu.h - just enough of the CUDA runtime and CUB to run the CUDA engine's
 * kernels (lib/cuda/engine-cuda.cu) on the CPU, for tests on machines without a
 * GPU: `make gpu-emu` compiles that file with g++ and -include this header, and
 * links it into the equality program (tests/gpu/gpu-equal.c), which then checks
 * the kernels' logic (indices, plan, prefix tree, pooling, segmented sums,
 * steps) against the CPU engine, under AddressSanitizer.
 *
 * What it does not check: anything about real concurrency (threads run one
 * after another, in order, so a missing __syncthreads or a race would pass),
 * CUDA's own rounding, launch limits, and the speed. A launch runs every block
 * and every thread of it in sequence; the kernels of engine-cuda.cu that share
 * memory among threads (the step's reduction, the rows' gradients by chunks, the
 * direct forward) are launched with one thread under this emulation, the others
 * do not synchronize; __syncthreads and __syncwarp do nothing here. Device memory
 * is malloc'd and filled with 0xff bytes (NaN floats, -1 integers), so reading
 * what no kernel wrote shows up as a mismatch.
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

/* dynamic shared memory: one buffer, sized by the launch */
inline std::vector<char> fpd_emu_smem;
template <typename G, typename B, typename F> static inline void fpd_emu_launch_smem(G grid, B block, size_t smem, F fn) {
    fpd_emu_smem.assign(smem + 16, (char)0xff);
    fpd_emu_launch(grid, block, fn);
}

static inline void __syncthreads(void) {}
static inline void __syncwarp(void) {}
struct float4 {
    float x, y, z, w;
};
static inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
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
