// Shared by the CUDA backend's translation units (C++ only): error checking,
// the backend context, bf16 vector helpers and small warp utilities.
//
// The op table passes no context pointer, so the backend keeps one context
// per process (one process drives one GPU, see DESIGN.md "Distributed"): the
// stream every op runs on, the cuBLASLt handle and its workspace, a growable
// scratch buffer and small caches. It is created once by ops_cuda_create.
#ifndef LLAVA_CUDA_INTERNAL_CUH
#define LLAVA_CUDA_INTERNAL_CUH

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/ops.h"

typedef __nv_bfloat16 bf16;

// The dynamic shared memory of a kernel (a macro so the CPU emulation of the
// kernels, tests/gpu/emu, can supply its own).
#ifndef LLAVA_DYNAMIC_SMEM
#define LLAVA_DYNAMIC_SMEM(type, name) extern __shared__ __align__(16) type name[]
#endif

// ---- error checking -----------------------------------------------------------------
// Every CUDA / cuBLASLt call goes through one of these; a failure prints the
// call, file and line and aborts (a failed kernel leaves the device unusable).
[[noreturn]] void cuda_fatal(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define CUDA_CHECK(call)                                                                         \
    do {                                                                                         \
        cudaError_t e_ = (call);                                                                 \
        if (e_ != cudaSuccess) cuda_fatal(__FILE__, __LINE__, "%s: %s", #call, cudaGetErrorString(e_)); \
    } while (0)
#define CUBLAS_CHECK(call)                                                                       \
    do {                                                                                         \
        cublasStatus_t s_ = (call);                                                              \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                         \
            cuda_fatal(__FILE__, __LINE__, "%s: %s", #call, cublasLtGetStatusString(s_));        \
    } while (0)
// After every kernel launch: catches bad launch configurations at the launch.
#define CUDA_LAUNCH_CHECK() CUDA_CHECK(cudaGetLastError())
#define CUDA_REQUIRE(cond, ...)                                                                  \
    do {                                                                                         \
        if (!(cond)) cuda_fatal(__FILE__, __LINE__, __VA_ARGS__);                                \
    } while (0)

// ---- the context ----------------------------------------------------------------------
typedef struct CudaContext {
    int device;
    int sm_count;
    int cc_major, cc_minor;
    size_t smem_optin;             // max dynamic shared memory per block (bytes)
    int flash_tiles;               // HS 128 flash kernels: 0 64-row, 1 by grid size, 2 128-row (cuda_attention.cu)
    cudaStream_t stream;
    cublasLtHandle_t lt;
    void *lt_workspace;
    size_t lt_workspace_size;
    void *scratch;                 // see cuda_scratch
    size_t scratch_size;
    // Pinned host staging for uploads (cuda_backend.cu): a ring the host
    // copies into and the stream copies out of asynchronously; stage_done is
    // recorded after every copy out of it, and waited for only when the ring
    // wraps, so a step's uploads never stop the host.
    unsigned char *stage;
    size_t stage_size, stage_used;
    cudaEvent_t stage_done;
} CudaContext;

CudaContext *cuda_ctx(void);
// A device buffer of at least `bytes`, valid until the next call. Ops use it
// for partial sums within one op; ops run in stream order, so consecutive ops
// may reuse it. Growing it synchronizes the device.
void *cuda_scratch(size_t bytes);

// ---- launch helpers -------------------------------------------------------------------
static inline unsigned cuda_blocks(size_t work, unsigned per_block) {
    return (unsigned)((work + per_block - 1) / per_block);
}
// True when every pointer is 16-byte aligned (uint4 loads/stores are legal).
static inline bool aligned16(const void *a, const void *b = nullptr, const void *c = nullptr,
                             const void *d = nullptr) {
    return (((uintptr_t)a | (uintptr_t)b | (uintptr_t)c | (uintptr_t)d) & 15u) == 0;
}

// ---- bf16 vectors: VEC = 8 (one 16-byte access) or 1 (scalar) ----------------------
// The 8 values travel as four 32-bit words, unpacked with shifts (bf16 is the
// top half of an fp32), so no local is accessed through a second type.
__device__ __forceinline__ float bf16_lo(uint32_t w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t w) { return __uint_as_float(w & 0xffff0000u); }
__device__ __forceinline__ uint32_t bf16_pair(float lo, float hi) {
    return (uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(lo)) |
           ((uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(hi)) << 16);
}

template <int VEC>
__device__ __forceinline__ void load_bf16(const bf16 *p, float (&f)[VEC]) {
    if constexpr (VEC == 8) {
        const uint4 raw = *reinterpret_cast<const uint4 *>(p);
        const uint32_t w[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
        for (int k = 0; k < 4; k++) {
            f[2 * k] = bf16_lo(w[k]);
            f[2 * k + 1] = bf16_hi(w[k]);
        }
    } else {
#pragma unroll
        for (int k = 0; k < VEC; k++) f[k] = __bfloat162float(p[k]);
    }
}

template <int VEC>
__device__ __forceinline__ void store_bf16(bf16 *p, const float (&f)[VEC]) {
    if constexpr (VEC == 8) {
        uint4 raw;
        raw.x = bf16_pair(f[0], f[1]);
        raw.y = bf16_pair(f[2], f[3]);
        raw.z = bf16_pair(f[4], f[5]);
        raw.w = bf16_pair(f[6], f[7]);
        *reinterpret_cast<uint4 *>(p) = raw;
    } else {
#pragma unroll
        for (int k = 0; k < VEC; k++) p[k] = __float2bfloat16_rn(f[k]);
    }
}

// A parameter-gradient element += v (gradients are fp32, or bf16 with
// grad_dtype "bf16"): fp32 stays `+=` (the fp32 tables' bits); bf16 widens,
// adds in fp32 and rounds once to nearest even.
__device__ __forceinline__ void grad_add(float *g, float v) { *g += v; }
__device__ __forceinline__ void grad_add(bf16 *g, float v) { *g = __float2bfloat16_rn(__bfloat162float(*g) + v); }
__device__ __forceinline__ float grad_load(const float *g) { return *g; }
__device__ __forceinline__ float grad_load(const bf16 *g) { return __bfloat162float(*g); }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// May query i see key j? The same rule as cpu_attn_visible (kernels/cpu/cpu_ops.h):
// causal, padding keys (seg 0) never visible, a padding query sees every
// non-padding key, otherwise only keys of its own document.
__host__ __device__ __forceinline__ bool attn_visible(const int32_t *seg_row, int causal, int i, int j) {
    if (causal && j > i) return false;
    if (!seg_row) return true;
    if (seg_row[j] == 0) return false;
    return seg_row[i] == 0 || seg_row[i] == seg_row[j];
}
__device__ __forceinline__ bool attn_visible_seg(int causal, int i, int j, int seg_i, int seg_j) {
    if (causal && j > i) return false;
    if (seg_j == 0) return false;
    return seg_i == 0 || seg_i == seg_j;
}

// ---- ops implemented in the other translation units -----------------------------------
// cuda_matmul.cu
void cuda_matmul_forward(void *out, const void *inp, const void *weight, const void *bias, int M, int K, int N);
// *_bf16g: the same op writing bf16 parameter gradients (the bf16_grads table).
void cuda_matmul_backward(void *dinp, void *dweight, void *dbias, const void *dout, const void *inp,
                          const void *weight, int M, int K, int N);
void cuda_matmul_backward_bf16g(void *dinp, void *dweight, void *dbias, const void *dout, const void *inp,
                                const void *weight, int M, int K, int N);
void cuda_matmul_release(void);

// cuda_norm.cu
void cuda_layernorm_forward(void *out, float *mean, float *rstd, const void *inp, const void *weight,
                            const void *bias, int M, int C, float eps);
void cuda_layernorm_backward(void *dinp, void *dweight, void *dbias, const void *dout, const void *inp,
                             const void *weight, const float *mean, const float *rstd, int M, int C);
void cuda_layernorm_backward_bf16g(void *dinp, void *dweight, void *dbias, const void *dout, const void *inp,
                                   const void *weight, const float *mean, const float *rstd, int M, int C);
void cuda_rmsnorm_forward(void *out, float *rstd, const void *inp, const void *weight, int M, int C, float eps);
void cuda_residual_rmsnorm_forward(void *res, void *out, float *rstd, const void *a, const void *b,
                                   const void *weight, int M, int C, float eps);
void cuda_rmsnorm_backward(void *dinp, void *dweight, const void *dout, const void *inp, const void *weight,
                           const float *rstd, int M, int C);
void cuda_rmsnorm_backward_bf16g(void *dinp, void *dweight, const void *dout, const void *inp, const void *weight,
                                 const float *rstd, int M, int C);
// dst[N] += column sums of src[M, N] (bf16), in a fixed order (deterministic);
// dst fp32, or bf16 when dst_bf16.
void cuda_colsum_add(void *dst, bool dst_bf16, const bf16 *src, int M, int N);

// cuda_elementwise.cu
void cuda_residual_forward(void *out, const void *a, const void *b, size_t n);
void cuda_accumulate(void *dst, const void *src, size_t n);
void cuda_gelu_forward(void *out, const void *inp, size_t n);
void cuda_gelu_backward(void *dinp, const void *inp, const void *dout, size_t n);
void cuda_quick_gelu_forward(void *out, const void *inp, size_t n);
void cuda_quick_gelu_backward(void *dinp, const void *inp, const void *dout, size_t n);
void cuda_swiglu_forward(void *out, const void *gateup, int M, int FF);
void cuda_swiglu_backward(void *dgateup, const void *dout, const void *gateup, int M, int FF);
void cuda_swiglu_backward_recompute(void *dgateup, void *out, const void *dout, const void *gateup, int M, int FF);
void cuda_rope_forward(void *qkv, const int32_t *pos, int M, int NH, int NKV, int HS, float theta);
void cuda_rope_backward(void *dqkv, const int32_t *pos, int M, int NH, int NKV, int HS, float theta);
void cuda_rope_release(void);
void cuda_add_bias(bf16 *out, const bf16 *bias, int M, int N);

// cuda_embed.cu
void cuda_embedding_forward(void *out, const int32_t *ids, const void *table, int M, int C);
void cuda_embedding_backward(void *dtable, const void *dout, const int32_t *ids, int M, int C, int V);
void cuda_embedding_backward_bf16g(void *dtable, const void *dout, const int32_t *ids, int M, int C, int V);
void cuda_scatter_rows(void *dst, const void *src, const int32_t *rows, int n, int C);
void cuda_gather_rows(void *dst, const void *src, const int32_t *rows, int n, int C);
void cuda_patchify(void *patches, const void *pixels, int N, int S, int P);
void cuda_vision_embed(void *out, const void *patch_emb, const void *cls, const void *pos, int N, int NP, int D);

// cuda_loss_optim.cu
void cuda_cross_entropy(float *losses, void *dlogits, const void *logits, const int32_t *targets,
                        float dloss_scale, int M, int V);
void cuda_sum_losses(double *sum, const float *losses, int n);
// LoRA (cuda_lora.cu)
void cuda_dropout(void *out, const void *inp, size_t n, float p, uint64_t seed);
void cuda_add_columns(void *dst, int ld, int col0, const void *src, int M, int N, float scale);
void cuda_copy_columns(void *dst, const void *src, int ld, int col0, int M, int N, float scale);
double cuda_sum_squares(const float *grad, size_t n);
void cuda_adamw_update(void *param, float *master, const float *grad, float *m, float *v, size_t n, float lr,
                       float beta1, float beta2, float eps, float weight_decay, float grad_scale, int step,
                       uint32_t seed);
void cuda_adamw_update_multi(const AdamwTensor *tensors, int count, const AdamwGroup *groups, int n_groups,
                             float beta1, float beta2, float eps, float grad_scale, int step);
double cuda_sum_squares_multi(const float *const *grads, const size_t *n, int count);
double cuda_sum_squares_bf16_multi(const void *const *grads, const size_t *n, int count);
void cuda_grad_accumulate(float *acc, void *grad, size_t n);

// cuda_attention.cu (flash kernels, head sizes 64 and 128) and
// cuda_attention_ref.cu (any head size; also the fallback for unaligned buffers)
void cuda_attention_forward(void *out, float *lse, const void *qkv, const AttnShape *s);
void cuda_attention_backward(void *dqkv, const void *dout, const void *qkv, const void *out, const float *lse,
                             const AttnShape *s);
void cuda_attention_init(void);
bool cuda_flash_supported(const AttnShape *s, const void *a, const void *b, const void *c, const void *d);
void cuda_flash_forward(bf16 *out, float *lse, const bf16 *qkv, const AttnShape *s);
void cuda_flash_backward(bf16 *dqkv, const bf16 *dout, const bf16 *qkv, const float *lse, const float *D,
                         const AttnShape *s);
void cuda_attention_ref_forward(bf16 *out, float *lse, const bf16 *qkv, const AttnShape *s);
void cuda_attention_ref_backward(bf16 *dqkv, const bf16 *dout, const bf16 *qkv, const float *lse, const float *D,
                                 const AttnShape *s);
// cuda_attention_cached.cu (generation)
void cuda_kv_cache_write(void *k_cache, void *v_cache, const void *qkv, const int32_t *slots, int M, int NH, int NKV,
                         int HS);
void cuda_attention_cached(void *out, const void *qkv, const void *k_cache, const void *v_cache, const int32_t *lens,
                           int B, int Tq, int Tcap, int NH, int NKV, int HS);
// D[B, NH, T] = rowsum(dout * out) per head, fp32: the softmax backward term.
void cuda_attention_rowdot(float *D, const bf16 *dout, const bf16 *out, const AttnShape *s);

#endif
