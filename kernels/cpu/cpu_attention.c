// Scaled dot-product attention, the straightforward way: one query row at a
// time, fp32 scores, exact softmax. Causal or bidirectional, GQA, padding and
// packed documents through segment ids (see AttnShape in kernels/ops.h).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "kernels/cpu/cpu_ops.h"

void cpu_attention_forward(void *out_, float *lse, const void *qkv_, const AttnShape *s) {
    float *out = out_;
    const float *qkv = qkv_;
    const int B = s->B, T = s->T, NH = s->NH, NKV = s->NKV, HS = s->HS;
    const int row = (NH + 2 * NKV) * HS, group = NH / NKV;
    const float scale = 1.0f / sqrtf((float)HS);
#pragma omp parallel
    {
        float *scores = xmalloc((size_t)T * sizeof(float));
#pragma omp for collapse(3) schedule(static)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < NH; h++)
                for (int i = 0; i < T; i++) {
                    const int32_t *seg = s->seg ? s->seg + (size_t)b * T : NULL;
                    const float *q = qkv + ((size_t)b * T + i) * row + (size_t)h * HS;
                    const int kvh = h / group;
                    float mx = -INFINITY;
                    for (int j = 0; j < T; j++) {
                        if (!cpu_attn_visible(seg, s->causal, i, j)) {
                            scores[j] = -INFINITY;
                            continue;
                        }
                        const float *k = qkv + ((size_t)b * T + j) * row + (size_t)(NH + kvh) * HS;
                        float dot = 0.0f;
                        for (int d = 0; d < HS; d++) dot += q[d] * k[d];
                        scores[j] = dot * scale;
                        if (scores[j] > mx) mx = scores[j];
                    }
                    float *o = out + ((size_t)b * T + i) * NH * HS + (size_t)h * HS;
                    memset(o, 0, (size_t)HS * sizeof(float));
                    float *l = &lse[((size_t)b * NH + h) * T + i];
                    if (mx == -INFINITY) {  // no visible key: output zeros
                        *l = -INFINITY;
                        continue;
                    }
                    double sum = 0.0;
                    for (int j = 0; j < T; j++) {
                        if (scores[j] == -INFINITY) continue;
                        scores[j] = expf(scores[j] - mx);
                        sum += scores[j];
                    }
                    float inv = (float)(1.0 / sum);
                    for (int j = 0; j < T; j++) {
                        if (scores[j] == -INFINITY) continue;
                        const float *v = qkv + ((size_t)b * T + j) * row + (size_t)(NH + NKV + kvh) * HS;
                        float p = scores[j] * inv;
                        for (int d = 0; d < HS; d++) o[d] += p * v[d];
                    }
                    *l = mx + (float)log(sum);
                }
        free(scores);
    }
}

// Parallel over (batch, kv head): the query heads of one group and all their
// rows run sequentially in one thread, so dk and dv accumulate in a fixed order.
void cpu_attention_backward(void *dqkv_, const void *dout_, const void *qkv_, const void *out_, const float *lse,
                            const AttnShape *s) {
    float *dqkv = dqkv_;
    const float *dout = dout_, *qkv = qkv_, *out = out_;
    const int B = s->B, T = s->T, NH = s->NH, NKV = s->NKV, HS = s->HS;
    const int row = (NH + 2 * NKV) * HS, group = NH / NKV;
    const float scale = 1.0f / sqrtf((float)HS);
#pragma omp parallel for collapse(2) schedule(static)
        for (int b = 0; b < B; b++)
            for (int kvh = 0; kvh < NKV; kvh++) {
                const int32_t *seg = s->seg ? s->seg + (size_t)b * T : NULL;
                for (int t = 0; t < T; t++) {
                    float *dk = dqkv + ((size_t)b * T + t) * row + (size_t)(NH + kvh) * HS;
                    float *dv = dqkv + ((size_t)b * T + t) * row + (size_t)(NH + NKV + kvh) * HS;
                    memset(dk, 0, (size_t)HS * sizeof(float));
                    memset(dv, 0, (size_t)HS * sizeof(float));
                }
                for (int h = kvh * group; h < (kvh + 1) * group; h++)
                    for (int i = 0; i < T; i++) {
                        const size_t qrow = ((size_t)b * T + i) * row;
                        const float *q = qkv + qrow + (size_t)h * HS;
                        float *dq = dqkv + qrow + (size_t)h * HS;
                        memset(dq, 0, (size_t)HS * sizeof(float));
                        const float l = lse[((size_t)b * NH + h) * T + i];
                        if (l == -INFINITY) continue;
                        const float *o = out + ((size_t)b * T + i) * NH * HS + (size_t)h * HS;
                        const float *dO = dout + ((size_t)b * T + i) * NH * HS + (size_t)h * HS;
                        float D = 0.0f;  // sum_d dO * O = sum_j p_j * (dO . v_j)
                        for (int d = 0; d < HS; d++) D += dO[d] * o[d];
                        for (int j = 0; j < T; j++) {
                            if (!cpu_attn_visible(seg, s->causal, i, j)) continue;
                            const size_t krow = ((size_t)b * T + j) * row;
                            const float *k = qkv + krow + (size_t)(NH + kvh) * HS;
                            const float *v = qkv + krow + (size_t)(NH + NKV + kvh) * HS;
                            float dot = 0.0f;
                            for (int d = 0; d < HS; d++) dot += q[d] * k[d];
                            float pj = expf(dot * scale - l);
                            float dp = 0.0f;
                            for (int d = 0; d < HS; d++) dp += dO[d] * v[d];
                            float ds = pj * (dp - D) * scale;
                            float *dk = dqkv + krow + (size_t)(NH + kvh) * HS;
                            float *dv = dqkv + krow + (size_t)(NH + NKV + kvh) * HS;
                            for (int d = 0; d < HS; d++) {
                                dq[d] += ds * k[d];
                                dk[d] += ds * q[d];
                                dv[d] += pj * dO[d];
                            }
                        }
                    }
            }
}
