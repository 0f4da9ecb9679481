// The CUDA side of the modern backbones' ops (issue 10): tanh GELU for SigLIP
// towers and RoPE with a given inverse-frequency table (linear / llama3
// scaling). In their own translation unit so that the kernel work elsewhere
// (cuda_elementwise.cu) stays untouched; cuda_modern_fill adds them to the
// op table. bf16 in and out, fp32 arithmetic, as the other elementwise ops.
#include <math.h>

#include "kernels/cuda/cuda_internal.cuh"
#include "kernels/cuda/cuda_modern.h"

#define MODERN_THREADS 256
#define GELU_TANH_BETA 0.79788456080286535588f  // sqrt(2/pi)
#define GELU_TANH_KAPPA 0.044715f

__global__ void gelu_tanh_forward_kernel(bf16 *out, const bf16 *inp, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float x = __bfloat162float(inp[i]);
    float inner = GELU_TANH_BETA * (x + GELU_TANH_KAPPA * x * x * x);
    out[i] = __float2bfloat16_rn(0.5f * x * (1.0f + tanhf(inner)));
}

// dinp may alias dout: each element is read before it is written by one thread.
__global__ void gelu_tanh_backward_kernel(bf16 *dinp, const bf16 *inp, const bf16 *dout, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float x = __bfloat162float(inp[i]), dy = __bfloat162float(dout[i]), x2 = x * x;
    float th = tanhf(GELU_TANH_BETA * (x + GELU_TANH_KAPPA * x2 * x));
    float dinner = GELU_TANH_BETA * (1.0f + 3.0f * GELU_TANH_KAPPA * x2);
    dinp[i] = __float2bfloat16_rn(dy * (0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * dinner));
}

static void cuda_gelu_tanh_forward(void *out, const void *inp, size_t n) {
    if (!n) return;
    gelu_tanh_forward_kernel<<<cuda_blocks(n, MODERN_THREADS), MODERN_THREADS, 0, cuda_ctx()->stream>>>(
        (bf16 *)out, (const bf16 *)inp, n);
    CUDA_LAUNCH_CHECK();
}

static void cuda_gelu_tanh_backward(void *dinp, const void *inp, const void *dout, size_t n) {
    if (!n) return;
    gelu_tanh_backward_kernel<<<cuda_blocks(n, MODERN_THREADS), MODERN_THREADS, 0, cuda_ctx()->stream>>>(
        (bf16 *)dinp, (const bf16 *)inp, (const bf16 *)dout, n);
    CUDA_LAUNCH_CHECK();
}

// cuda_elementwise.cu's RoPE launcher (16-byte accesses where the head size
// allows, the table given): the scaled tables of linear / llama3 RoPE go
// through it unchanged.
void cuda_rope_launch(void *qkv, const int32_t *pos, const float *inv_freq, int M, int NH, int NKV, int HS,
                      float dir);

static void rope_freq_apply(void *qkv, const int32_t *pos, const float *inv_freq, int M, int NH, int NKV, int HS,
                            float dir) {
    cuda_rope_launch(qkv, pos, inv_freq, M, NH, NKV, HS, dir);
}

static void cuda_rope_freq_forward(void *qkv, const int32_t *pos, const float *inv_freq, int M, int NH, int NKV,
                                   int HS) {
    rope_freq_apply(qkv, pos, inv_freq, M, NH, NKV, HS, 1.0f);
}

static void cuda_rope_freq_backward(void *dqkv, const int32_t *pos, const float *inv_freq, int M, int NH, int NKV,
                                    int HS) {
    rope_freq_apply(dqkv, pos, inv_freq, M, NH, NKV, HS, -1.0f);
}

void cuda_modern_fill(Ops *o) {
    o->gelu_tanh_forward = cuda_gelu_tanh_forward;
    o->gelu_tanh_backward = cuda_gelu_tanh_backward;
    o->rope_freq_forward = cuda_rope_freq_forward;
    o->rope_freq_backward = cuda_rope_freq_backward;
}
