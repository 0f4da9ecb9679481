// The three small ops LoRA adds to the table: inverted dropout with masks
// drawn from a counter-based hash (so a mask is a pure function of seed and
// index: recompute, resume and every backend see the same mask), and adding
// into / copying out of a column block of a wider matrix (q, k, v share the
// fused qkv rows; gate and up share gateup).
#include "kernels/cpu/cpu_ops.h"
#include "kernels/lora_mask.h"

void cpu_dropout(void *out_, const void *inp_, size_t n, float p, uint64_t seed) {
    float *out = out_;
    const float *x = inp_;
    const float keep_scale = 1.0f / (1.0f - p);
    const uint32_t threshold = lora_mask_threshold(p);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = lora_mask_keep(seed, i, threshold) ? x[i] * keep_scale : 0.0f;
}

void cpu_add_columns(void *dst_, int ld, int col0, const void *src_, int M, int N, float scale) {
    float *dst = dst_;
    const float *src = src_;
#pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++) {
        float *d = dst + (size_t)m * ld + col0;
        const float *s = src + (size_t)m * N;
        for (int j = 0; j < N; j++) d[j] += scale * s[j];
    }
}

void cpu_copy_columns(void *dst_, const void *src_, int ld, int col0, int M, int N, float scale) {
    float *dst = dst_;
    const float *src = src_;
#pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++) {
        float *d = dst + (size_t)m * N;
        const float *s = src + (size_t)m * ld + col0;
        for (int j = 0; j < N; j++) d[j] = scale * s[j];
    }
}
