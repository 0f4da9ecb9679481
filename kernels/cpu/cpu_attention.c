// Scaled dot-product attention on the CPU, by blocks of ATTN_BQ query rows:
// for each (batch, head) and query block, the scores against the keys the
// block can see, S = Q K^T, are one BLAS call, masked and soft-maxed in place,
// then O = P V is another; backward likewise per block (dP = dO V^T,
// dS = P (dP - D), dQ = dS K, dK += dS^T Q, dV += P^T dO). A causal block
// only looks at keys [first visible key of its rows, its last row]: the
// masked upper triangle (and, with packed documents, the keys of earlier
// documents) is never computed, about half of the T x T work at long T.
// Q, K and V are read in place from the fused qkv rows through BLAS leading
// dimensions. Causal or bidirectional, GQA, padding and packed documents
// through segment ids (see AttnShape in kernels/ops.h). The parallel loops
// run over heads with single-threaded BLAS inside, in a fixed order (blocks
// in ascending order): results are deterministic.
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "kernels/cpu/cpu_math.h"
#include "kernels/cpu/cpu_ops.h"

// Query rows per block: large enough for efficient BLAS calls, small enough
// that the diagonal blocks' masked halves (ATTN_BQ / 2T of the work) and the
// per-thread scratch (ATTN_BQ x T floats) stay small.
#define ATTN_BQ 128

// first[i] = the first key row i of batch row b may see (T when none), for
// every (b, i): the start of a block's key window is the minimum over its rows.
static int32_t *attn_first_keys(const AttnShape *s) {
    const int B = s->B, T = s->T;
    int32_t *first = xmalloc((size_t)B * T * sizeof(int32_t));
    for (int b = 0; b < B; b++) {
        const int32_t *seg = s->seg ? s->seg + (size_t)b * T : NULL;
        for (int i = 0; i < T; i++) {
            int j = 0;
            while (j < T && !cpu_attn_visible(seg, s->causal, i, j)) j++;
            first[(size_t)b * T + i] = j;
        }
    }
    return first;
}

// Key window [*k0, *k1) of query rows [i0, i1).
static void attn_window(const AttnShape *s, const int32_t *first_b, int i0, int i1, int *k0, int *k1) {
    int lo = s->T;
    for (int i = i0; i < i1; i++) lo = first_b[i] < lo ? first_b[i] : lo;
    *k1 = s->causal ? i1 : s->T;
    *k0 = lo < *k1 ? lo : *k1;
}

// exp(s[j] - sub) on visible entries, 0 elsewhere (vis[j] = 0 or 1).
CPU_SIMD_CLONES
static void attn_exp_row(float *p, const float *s, const uint8_t *vis, float sub, int n) {
    for (int j = 0; j < n; j++) {
        float e = cpu_expf_nonpos(s[j] - sub);
        p[j] = vis[j] ? e : 0.0f;
    }
}

CPU_SIMD_CLONES
static void attn_scale_row(float *p, float inv, int n) {
    for (int j = 0; j < n; j++) p[j] *= inv;
}

// dS = P * (dP - D) * scale, in place over dP.
CPU_SIMD_CLONES
static void attn_dscore_row(float *ds, const float *p, float d, float scale, int n) {
    for (int j = 0; j < n; j++) ds[j] = p[j] * (ds[j] - d) * scale;
}

// Visibility of keys [k0, k0+n) from query row i, as 0/1 bytes.
static void attn_visible_row(uint8_t *vis, const int32_t *seg, int causal, int i, int k0, int n) {
    for (int j = 0; j < n; j++) vis[j] = (uint8_t)cpu_attn_visible(seg, causal, i, k0 + j);
}

// Softmax of one score row over the visible keys of the window, in place;
// returns the log-sum-exp (-inf when no key is visible: the row becomes zeros).
static float softmax_row(float *s, const uint8_t *vis, int n) {
    float mx = -INFINITY;
    for (int j = 0; j < n; j++)
        if (vis[j] && s[j] > mx) mx = s[j];
    if (mx == -INFINITY) {
        memset(s, 0, (size_t)n * sizeof(float));
        return -INFINITY;
    }
    attn_exp_row(s, s, vis, mx, n);
    double sum = cpu_sum_lanes(s, n);
    attn_scale_row(s, (float)(1.0 / sum), n);
    return mx + (float)log(sum);
}

void cpu_attention_forward(void *out_, float *lse, const void *qkv_, const AttnShape *s) {
    float *out = out_;
    const float *qkv = qkv_;
    const int B = s->B, T = s->T, NH = s->NH, NKV = s->NKV, HS = s->HS;
    const int row = (NH + 2 * NKV) * HS, group = NH / NKV, ldo = NH * HS;
    const float scale = 1.0f / sqrtf((float)HS);
    const int n_blocks = (T + ATTN_BQ - 1) / ATTN_BQ;
    int32_t *first = attn_first_keys(s);
#pragma omp parallel
    {
        float *S = xmalloc((size_t)ATTN_BQ * T * sizeof(float));  // [ATTN_BQ, window]
        uint8_t *vis = xmalloc((size_t)T);
#pragma omp for collapse(2) schedule(static)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < NH; h++) {
                const int32_t *seg = s->seg ? s->seg + (size_t)b * T : NULL;
                const float *q = qkv + (size_t)b * T * row + (size_t)h * HS;
                const float *k = qkv + (size_t)b * T * row + (size_t)(NH + h / group) * HS;
                const float *v = qkv + (size_t)b * T * row + (size_t)(NH + NKV + h / group) * HS;
                float *o = out + (size_t)b * T * ldo + (size_t)h * HS;
                float *l = lse + ((size_t)b * NH + h) * T;
                for (int blk = 0; blk < n_blocks; blk++) {
                    const int i0 = blk * ATTN_BQ, i1 = i0 + ATTN_BQ < T ? i0 + ATTN_BQ : T, nq = i1 - i0;
                    int k0, k1;
                    attn_window(s, first + (size_t)b * T, i0, i1, &k0, &k1);
                    const int nk = k1 - k0;
                    if (nk == 0) {  // no row of the block sees any key
                        for (int i = i0; i < i1; i++) {
                            memset(o + (size_t)i * ldo, 0, (size_t)HS * sizeof(float));
                            l[i] = -INFINITY;
                        }
                        continue;
                    }
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, HS, scale, q + (size_t)i0 * row, row,
                                k + (size_t)k0 * row, row, 0.0f, S, nk);
                    for (int i = i0; i < i1; i++) {
                        attn_visible_row(vis, seg, s->causal, i, k0, nk);
                        l[i] = softmax_row(S + (size_t)(i - i0) * nk, vis, nk);
                    }
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, HS, nk, 1.0f, S, nk,
                                v + (size_t)k0 * row, row, 0.0f, o + (size_t)i0 * ldo, ldo);
                }
            }
        free(S);
        free(vis);
    }
    free(first);
}

// Parallel over (batch, kv head): the query heads of one group and the
// query blocks run in order in one thread, so dk and dv accumulate in a
// fixed order.
void cpu_attention_backward(void *dqkv_, const void *dout_, const void *qkv_, const void *out_, const float *lse,
                            const AttnShape *s) {
    float *dqkv = dqkv_;
    const float *dout = dout_, *qkv = qkv_, *out = out_;
    const int B = s->B, T = s->T, NH = s->NH, NKV = s->NKV, HS = s->HS;
    const int row = (NH + 2 * NKV) * HS, group = NH / NKV, ldo = NH * HS;
    const float scale = 1.0f / sqrtf((float)HS);
    const int n_blocks = (T + ATTN_BQ - 1) / ATTN_BQ;
    int32_t *first = attn_first_keys(s);
#pragma omp parallel
    {
        float *P = xmalloc((size_t)ATTN_BQ * T * sizeof(float)), *dS = xmalloc((size_t)ATTN_BQ * T * sizeof(float));
        uint8_t *vis = xmalloc((size_t)T);
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
                    for (int blk = 0; blk < n_blocks; blk++) {
                        const int i0 = blk * ATTN_BQ, i1 = i0 + ATTN_BQ < T ? i0 + ATTN_BQ : T, nq = i1 - i0;
                        int k0, k1;
                        attn_window(s, first + (size_t)b * T, i0, i1, &k0, &k1);
                        const int nk = k1 - k0;
                        if (nk == 0) {
                            for (int i = i0; i < i1; i++) memset(dq + (size_t)i * row, 0, (size_t)HS * sizeof(float));
                            continue;
                        }
                        const float *qb = q + (size_t)i0 * row, *dOb = dO + (size_t)i0 * ldo;
                        // P = exp(scale q k^T - lse) on visible entries (0 elsewhere)
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, HS, scale, qb, row,
                                    k + (size_t)k0 * row, row, 0.0f, P, nk);
                        // dP = dO v^T
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, HS, 1.0f, dOb, ldo,
                                    v + (size_t)k0 * row, row, 0.0f, dS, nk);
                        for (int i = i0; i < i1; i++) {
                            float *p = P + (size_t)(i - i0) * nk, *ds = dS + (size_t)(i - i0) * nk;
                            double d = 0.0;
                            for (int c = 0; c < HS; c++) d += (double)dO[(size_t)i * ldo + c] * o[(size_t)i * ldo + c];
                            if (l[i] == -INFINITY) {
                                memset(p, 0, (size_t)nk * sizeof(float));
                            } else {
                                attn_visible_row(vis, seg, s->causal, i, k0, nk);
                                attn_exp_row(p, p, vis, l[i], nk);
                            }
                            // dS = P * (dP - D) * scale
                            attn_dscore_row(ds, p, (float)d, scale, nk);
                        }
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, HS, nk, 1.0f, dS, nk,
                                    k + (size_t)k0 * row, row, 0.0f, dq + (size_t)i0 * row, row);
                        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, HS, nq, 1.0f, dS, nk, qb, row, 1.0f,
                                    dk + (size_t)k0 * row, row);
                        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, HS, nq, 1.0f, P, nk, dOb, ldo, 1.0f,
                                    dv + (size_t)k0 * row, row);
                    }
                }
            }
        free(P);
        free(dS);
        free(vis);
    }
    free(first);
}
