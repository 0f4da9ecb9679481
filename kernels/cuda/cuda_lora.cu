// The LoRA ops (kernels/ops.h, "LoRA"): inverted dropout with the shared
// counter-hash mask (kernels/lora_mask.h, bitwise the CPU backend's mask), and
// the column-block add / copy that let each adapter write into its part of a
// fused q/k/v or gate/up output. Memory-bound, one thread per element; the
// adapters' matmuls are the table's cuBLASLt matmuls.
#include "kernels/cuda/cuda_internal.cuh"
#include "kernels/lora_mask.h"

#define LORA_THREADS 256

__global__ void lora_dropout_kernel(bf16 *out, const bf16 *inp, size_t n, float keep_scale, uint32_t threshold,
                                    uint64_t seed) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float x = __bfloat162float(inp[i]);
    out[i] = __float2bfloat16_rn(lora_mask_keep(seed, i, threshold) ? x * keep_scale : 0.0f);
}

// dst[m, col0 + j] += scale * src[m, j] (accumulated in fp32, rounded once)
__global__ void lora_add_columns_kernel(bf16 *dst, int ld, int col0, const bf16 *src, int M, int N, float scale) {
    size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= (size_t)M * N) return;
    size_t m = t / (size_t)N, j = t % (size_t)N;
    bf16 *d = dst + m * (size_t)ld + (size_t)col0 + j;
    *d = __float2bfloat16_rn(__bfloat162float(*d) + scale * __bfloat162float(src[t]));
}

// dst[m, j] = scale * src[m, col0 + j]
__global__ void lora_copy_columns_kernel(bf16 *dst, const bf16 *src, int ld, int col0, int M, int N, float scale) {
    size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= (size_t)M * N) return;
    size_t m = t / (size_t)N, j = t % (size_t)N;
    dst[t] = __float2bfloat16_rn(scale * __bfloat162float(src[m * (size_t)ld + (size_t)col0 + j]));
}

void cuda_dropout(void *out, const void *inp, size_t n, float p, uint64_t seed) {
    if (!n) return;
    lora_dropout_kernel<<<cuda_blocks(n, LORA_THREADS), LORA_THREADS, 0, cuda_ctx()->stream>>>(
        (bf16 *)out, (const bf16 *)inp, n, 1.0f / (1.0f - p), lora_mask_threshold(p), seed);
    CUDA_LAUNCH_CHECK();
}

void cuda_add_columns(void *dst, int ld, int col0, const void *src, int M, int N, float scale) {
    size_t n = (size_t)M * N;
    if (!n) return;
    lora_add_columns_kernel<<<cuda_blocks(n, LORA_THREADS), LORA_THREADS, 0, cuda_ctx()->stream>>>(
        (bf16 *)dst, ld, col0, (const bf16 *)src, M, N, scale);
    CUDA_LAUNCH_CHECK();
}

void cuda_copy_columns(void *dst, const void *src, int ld, int col0, int M, int N, float scale) {
    size_t n = (size_t)M * N;
    if (!n) return;
    lora_copy_columns_kernel<<<cuda_blocks(n, LORA_THREADS), LORA_THREADS, 0, cuda_ctx()->stream>>>(
        (bf16 *)dst, (const bf16 *)src, ld, col0, M, N, scale);
    CUDA_LAUNCH_CHECK();
}
