// Scaled dot-product attention on the CPU: for each (batch, head) the score
// matrix S = Q K^T is one BLAS call, masked and soft-maxed in place, then
// O = P V is another; backward likewise (dP = dO V^T, dS = P (dP - D),
// dQ = dS K, dK += dS^T Q, dV += P^T dO). Q, K and V are read in place from
// the fused qkv rows through BLAS leading dimensions. Causal or
// bidirectional, GQA, padding and packed documents through segment ids
// (see AttnShape in kernels/ops.h). The parallel loops run over heads with
// single-threaded BLAS inside, in a fixed order: results are deterministic.
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "kernels/cpu/cpu_ops.h"

// Softmax of one score row over the visible keys, in place; returns the
// log-sum-exp (-inf when no key is visible: the row becomes zeros).
static float softmax_row(float *s, const int32_t *seg, int causal, int i, int T) {
    float mx = -INFINITY;
    for (int j = 0; j < T; j++) {
        if (!cpu_attn_visible(seg, causal, i, j)) {
            s[j] = -INFINITY;
            continue;
        }
        if (s[j] > mx) mx = s[j];
    }
    if (mx == -INFINITY) {
        memset(s, 0, (size_t)T * sizeof(float));
        return -INFINITY;
    }
    double sum = 0.0;
    for (int j = 0; j < T; j++) {
        float e = s[j] == -INFINITY ? 0.0f : expf(s[j] - mx);
        s[j] = e;
        sum += e;
    }
    float inv = (float)(1.0 / sum);
    for (int j = 0; j < T; j++) s[j] *= inv;
    return mx + (float)log(sum);
}

void cpu_attention_forward(void *out_, float *lse, const void *qkv_, const AttnShape *s) {
    float *out = out_;
    const float *qkv = qkv_;
    const int B = s->B, T = s->T, NH = s->NH, NKV = s->NKV, HS = s->HS;
    const int row = (NH + 2 * NKV) * HS, group = NH / NKV, ldo = NH * HS;
    const float scale = 1.0f / sqrtf((float)HS);
#pragma omp parallel
    {
        float *S = xmalloc((size_t)T * T * sizeof(float));
#pragma omp for collapse(2) schedule(static)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < NH; h++) {
                const int32_t *seg = s->seg ? s->seg + (size_t)b * T : NULL;
                const float *q = qkv + (size_t)b * T * row + (size_t)h * HS;
                const float *k = qkv + (size_t)b * T * row + (size_t)(NH + h / group) * HS;
                const float *v = qkv + (size_t)b * T * row + (size_t)(NH + NKV + h / group) * HS;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, HS, scale, q, row, k, row, 0.0f, S, T);
                float *l = lse + ((size_t)b * NH + h) * T;
                for (int i = 0; i < T; i++) l[i] = softmax_row(S + (size_t)i * T, seg, s->causal, i, T);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, HS, T, 1.0f, S, T, v, row, 0.0f,
                            out + (size_t)b * T * ldo + (size_t)h * HS, ldo);
            }
        free(S);
    }
}

// Parallel over (batch, kv head): the query heads of one group run in order
// in one thread, so dk and dv accumulate in a fixed order.
void cpu_attention_backward(void *dqkv_, const void *dout_, const void *qkv_, const void *out_, const float *lse,
                            const AttnShape *s) {
    float *dqkv = dqkv_;
    const float *dout = dout_, *qkv = qkv_, *out = out_;
    const int B = s->B, T = s->T, NH = s->NH, NKV = s->NKV, HS = s->HS;
    const int row = (NH + 2 * NKV) * HS, group = NH / NKV, ldo = NH * HS;
    const float scale = 1.0f / sqrtf((float)HS);
#pragma omp parallel
    {
        float *P = xmalloc((size_t)T * T * sizeof(float)), *dS = xmalloc((size_t)T * T * sizeof(float));
        float *D = xmalloc((size_t)T * sizeof(float));
#pragma omp for collapse(2) schedule(static)
        for (int b = 0; b < B; b++)
            for (int kvh = 0; kvh < NKV; kvh++) {
                const int32_t *seg = s->seg ? s->seg + (size_t)b * T : NULL;
                const size_t base = (size_t)b * T * row;
                const float *k = qkv + base + (size_t)(NH + kvh) * HS, *v = qkv + base + (size_t)(NH + NKV + kvh) * HS;
                float *dk = dqkv + base + (size_t)(NH + kvh) * HS, *dv = dqkv + base + (size_t)(NH + NKV + kvh) * HS;
                for (int t = 0; t < T; t++) {
                    memset(dk + (size_t)t * row, 0, (size_t)HS * sizeof(float));
                    memset(dv + (size_t)t * row, 0, (size_t)HS * sizeof(float));
                }
                for (int h = kvh * group; h < (kvh + 1) * group; h++) {
                    const float *q = qkv + base + (size_t)h * HS;
                    float *dq = dqkv + base + (size_t)h * HS;
                    const float *o = out + (size_t)b * T * ldo + (size_t)h * HS;
                    const float *dO = dout + (size_t)b * T * ldo + (size_t)h * HS;
                    const float *l = lse + ((size_t)b * NH + h) * T;
                    // P = exp(scale q k^T - lse) on visible entries (0 elsewhere)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, HS, scale, q, row, k, row, 0.0f, P, T);
                    for (int i = 0; i < T; i++) {
                        float *p = P + (size_t)i * T;
                        double d = 0.0;
                        for (int c = 0; c < HS; c++) d += (double)dO[(size_t)i * ldo + c] * o[(size_t)i * ldo + c];
                        D[i] = (float)d;
                        for (int j = 0; j < T; j++)
                            p[j] = (l[i] != -INFINITY && cpu_attn_visible(seg, s->causal, i, j)) ? expf(p[j] - l[i]) : 0.0f;
                    }
                    // dS = P * (dO v^T - D) * scale
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, HS, 1.0f, dO, ldo, v, row, 0.0f, dS, T);
                    for (int i = 0; i < T; i++)
                        for (int j = 0; j < T; j++) {
                            size_t ij = (size_t)i * T + j;
                            dS[ij] = P[ij] * (dS[ij] - D[i]) * scale;
                        }
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, HS, T, 1.0f, dS, T, k, row, 0.0f, dq, row);
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, HS, T, 1.0f, dS, T, q, row, 1.0f, dk, row);
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, HS, T, 1.0f, P, T, dO, ldo, 1.0f, dv, row);
                }
            }
        free(P);
        free(dS);
        free(D);
    }
}
