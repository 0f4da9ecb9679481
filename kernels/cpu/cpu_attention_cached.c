// Attention of new query rows over a KV cache (generation), and the cache
// write. The softmax follows cpu_attention_forward's (the same fp32 exp, the
// denominator in the same double lanes); the dot products are plain loops
// where the full forward uses BLAS, so a cached step gives the full forward's
// rows to fp32 rounding.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "kernels/cpu/cpu_math.h"
#include "kernels/cpu/cpu_ops.h"

void cpu_kv_cache_write(void *k_cache_, void *v_cache_, const void *qkv_, const int32_t *slots, int M, int NH,
                        int NKV, int HS) {
    float *k_cache = k_cache_, *v_cache = v_cache_;
    const float *qkv = qkv_;
    const size_t row = (size_t)(NH + 2 * NKV) * HS, KV = (size_t)NKV * HS;
#pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++) {
        if (slots[m] < 0) continue;
        const float *src = qkv + (size_t)m * row + (size_t)NH * HS;
        memcpy(k_cache + (size_t)slots[m] * KV, src, KV * sizeof(float));
        memcpy(v_cache + (size_t)slots[m] * KV, src + KV, KV * sizeof(float));
    }
}

void cpu_attention_cached(void *out_, const void *qkv_, const void *k_cache_, const void *v_cache_,
                          const int32_t *lens, int B, int Tq, int Tcap, int NH, int NKV, int HS) {
    float *out = out_;
    const float *qkv = qkv_, *k_cache = k_cache_, *v_cache = v_cache_;
    const size_t row = (size_t)(NH + 2 * NKV) * HS, KV = (size_t)NKV * HS;
    const int group = NH / NKV;
    const float scale = 1.0f / sqrtf((float)HS);
    for (int b = 0; b < B; b++)
        CHECK(lens[b] >= Tq && lens[b] <= Tcap, "attention_cached: lens[%d] = %d outside [%d, %d]", b, lens[b], Tq,
              Tcap);
#pragma omp parallel
    {
        float *scores = xmalloc((size_t)Tcap * sizeof(float));
#pragma omp for collapse(3) schedule(static)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < NH; h++)
                for (int t = 0; t < Tq; t++) {
                    const size_t qrow = (size_t)b * Tq + t;
                    const float *q = qkv + qrow * row + (size_t)h * HS;
                    const float *kb = k_cache + (size_t)b * Tcap * KV + (size_t)(h / group) * HS;
                    const float *vb = v_cache + (size_t)b * Tcap * KV + (size_t)(h / group) * HS;
                    const int n_keys = lens[b] - Tq + t + 1;  // positions 0..p
                    float mx = -INFINITY;
                    for (int j = 0; j < n_keys; j++) {
                        const float *k = kb + (size_t)j * KV;
                        float dot = 0.0f;
                        for (int d = 0; d < HS; d++) dot += q[d] * k[d];
                        scores[j] = dot * scale;
                        if (scores[j] > mx) mx = scores[j];
                    }
                    for (int j = 0; j < n_keys; j++) scores[j] = cpu_expf_nonpos(scores[j] - mx);
                    double sum = cpu_sum_lanes(scores, n_keys);
                    float inv = (float)(1.0 / sum);
                    float *o = out + qrow * (size_t)NH * HS + (size_t)h * HS;
                    memset(o, 0, (size_t)HS * sizeof(float));
                    for (int j = 0; j < n_keys; j++) {
                        const float *v = vb + (size_t)j * KV;
                        float p = scores[j] * inv;
                        for (int d = 0; d < HS; d++) o[d] += p * v[d];
                    }
                }
        free(scores);
    }
}
