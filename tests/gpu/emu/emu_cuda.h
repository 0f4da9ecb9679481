// CPU emulation of the CUDA backend's kernels, force-included (g++ -include)
// before each kernels/cuda/*.cu, which the build first rewrites so that
// `k<<<grid, block, smem, stream>>>(args)` reads
// `emu::Launch(grid, block, smem, stream) | [](auto... a) { k(a...); } | std::make_tuple(args)`.
//
// What it is for: running the very kernel sources (indexing, tiling, masks,
// barriers, the mma/ldmatrix fragment bookkeeping) on a machine without a GPU,
// against the CPU ops. Every CUDA thread of a block is a fiber; the fibers of
// one block run cooperatively in one OS thread, switching at __syncthreads and
// at warp-collective operations (shuffles, ldmatrix, mma), which complete once
// every live lane of the warp has arrived. cp.async copies land at
// cp.async.wait_group, and their destinations read as NaN until then, so a read
// before the wait shows up. The schedule alone hides most missing barriers (a
// thread runs until it waits), so every 16-byte chunk of shared memory also
// records who filled it by cp.async and who read it by ldmatrix in which
// barrier epoch: a read of another thread's copy with no __syncthreads after
// its wait_group, or a cp.async over a chunk another warp read since the last
// __syncthreads, fails (emu_runtime.cpp; plain loads and stores of shared
// memory are not tracked).
// Device memory is host memory; cuBLASLt is a plain fp32-accumulating GEMM
// that honours the descriptors (emu_runtime.cpp).
//
// What it cannot tell: hardware timing, races through plain shared-memory
// loads and stores, register limits, whether a kernel launched with more than
// 48 KiB of dynamic shared memory had cudaFuncAttributeMaxDynamicSharedMemorySize
// raised for it (the launch does not know which kernel it runs: checked by
// review, docs/gpu-status.md), and whether the
// PTX semantics assumed here (documented in emu_runtime.cpp) match the silicon.
#ifndef LLAVA_EMU_CUDA_H
#define LLAVA_EMU_CUDA_H

#define __shared__ static
#define __launch_bounds__(...)
#define LLAVA_CUDA_PTX_CUH 1  // the emulator supplies the PTX wrappers below

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <tuple>
#include <utility>

using std::max;
using std::min;

// The emulator's own failures (a launch or call the hardware would reject).
#define EMU_FAIL(...)                                                  \
    do {                                                               \
        fprintf(stderr, "cuda emulator: " __VA_ARGS__);                \
        fputc('\n', stderr);                                           \
        abort();                                                       \
    } while (0)

namespace emu {
uint3 &thread_idx();
uint3 &block_idx();
dim3 &block_dim();
dim3 &grid_dim();
void *dynamic_smem();
void syncthreads();
// A warp collective: every live lane passes its in/out pointers; the last to
// arrive runs fn over all lanes (live[l] false for exited lanes).
typedef void (*CollectiveFn)(const void *const *ins, void *const *outs, const bool *live, const void *arg);
void collective(const void *in, void *out, CollectiveFn fn, const void *arg);
void run_grid(dim3 grid, dim3 block, size_t smem, std::function<void()> body);

// cp.async bookkeeping of the current thread
void cp_async(void *dst, const void *src, bool pred);
void cp_commit();
void cp_wait(int pending_groups_allowed);

void ldmatrix_x4(uint32_t (&r)[4], const void *p, bool trans);
void mma_m16n8k16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);
void shfl_xor(const void *in, void *out, size_t bytes, int mask);

// Streams (emu_streams.cpp): `work` runs now on an eager stream, or is queued
// on a deferred one until something waits for it. observe() is for calls the
// emulator runs only eagerly (cuBLASLt): it fails on a deferred stream.
void launch(cudaStream_t stream, std::function<void()> work);
void observe(cudaStream_t stream, const char *what);

struct Launch {
    dim3 grid, block;
    size_t smem;
    cudaStream_t stream;
    Launch(dim3 g, dim3 b, size_t s = 0, cudaStream_t st = 0) : grid(g), block(b), smem(s), stream(st) {}
};
template <class F>
struct Bound {
    Launch l;
    F f;
};
template <class F>
Bound<F> operator|(Launch l, F f) {
    return Bound<F>{l, f};
}
template <class F, class... A>
void operator|(Bound<F> b, std::tuple<A...> args) {
    F f = b.f;
    Launch l = b.l;
    launch(l.stream, [f, args, l]() { run_grid(l.grid, l.block, l.smem, [f, args]() { std::apply(f, args); }); });
}
}  // namespace emu

#define threadIdx (emu::thread_idx())
#define blockIdx (emu::block_idx())
#define blockDim (emu::block_dim())
#define gridDim (emu::grid_dim())
#define LLAVA_DYNAMIC_SMEM(type, name) type *name = reinterpret_cast<type *>(emu::dynamic_smem())

inline void __syncthreads() { emu::syncthreads(); }
inline void __syncwarp(unsigned = 0xffffffffu) {
    emu::collective(nullptr, nullptr, [](const void *const *, void *const *, const bool *, const void *) {}, nullptr);
}
template <class T>
inline T __shfl_xor_sync(unsigned, T v, int lane_mask) {
    T out;
    emu::shfl_xor(&v, &out, sizeof(T), lane_mask);
    return out;
}
// nvcc's typed overloads of these runtime calls exist only under __CUDACC__.
template <class T>
inline cudaError_t cudaFuncGetAttributes(struct cudaFuncAttributes *attr, T *entry) {
    return ::cudaFuncGetAttributes(attr, (const void *)entry);
}
template <class T>
inline cudaError_t cudaFuncSetAttribute(T *entry, enum cudaFuncAttribute attr, int value) {
    return ::cudaFuncSetAttribute((const void *)entry, attr, value);
}
inline unsigned __float_as_uint(float f) {
    unsigned u;
    memcpy(&u, &f, 4);
    return u;
}
inline float __uint_as_float(unsigned u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

// The PTX wrappers of kernels/cuda/cuda_ptx.cuh.
typedef __nv_bfloat16 bf16;
inline void cp_async16(void *smem, const void *gmem, bool pred) { emu::cp_async(smem, gmem, pred); }
inline void cp_async_commit() { emu::cp_commit(); }
template <int N>
inline void cp_async_wait() {
    emu::cp_wait(N);
}
inline void ldsm_x4(uint32_t (&r)[4], const bf16 *p) { emu::ldmatrix_x4(r, p, false); }
inline void ldsm_x4_trans(uint32_t (&r)[4], const bf16 *p) { emu::ldmatrix_x4(r, p, true); }
inline void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    emu::mma_m16n8k16(c, a, b0, b1);
}
inline uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    uint32_t u;
    memcpy(&u, &v, 4);
    return u;
}

#endif
