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
static void attn_exp_row_masked(float *p, const float *s, const uint8_t *vis, float sub, int n) {
    for (int j = 0; j < n; j++) {
        float e = cpu_expf_nonpos(s[j] - sub);
        p[j] = vis[j] ? e : 0.0f;
    }
}

// exp(s[j] - sub), every entry visible.
CPU_SIMD_CLONES
static void attn_exp_row(float *p, const float *s, float sub, int n) {
    for (int j = 0; j < n; j++) p[j] = cpu_expf_nonpos(s[j] - sub);
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

// Which keys of the window [k0, k0 + n) query row i sees. Without segment
// ids they are a prefix: returns its length and leaves vis alone. With
// segment ids, fills vis with 0/1 bytes and returns -1.
static int attn_row_keys(uint8_t *vis, const AttnShape *s, const int32_t *seg, int i, int k0, int n) {
    if (!seg) return s->causal ? i - k0 + 1 : n;
    for (int j = 0; j < n; j++) vis[j] = (uint8_t)cpu_attn_visible(seg, s->causal, i, k0 + j);
    return -1;
}

// P = exp(s - sub) over the row's visible keys, 0 elsewhere (see attn_row_keys).
static void attn_exp_visible(float *p, const float *s, const uint8_t *vis, int n_vis, float sub, int n) {
    if (n_vis < 0) {
        attn_exp_row_masked(p, s, vis, sub, n);
        return;
    }
    attn_exp_row(p, s, sub, n_vis);
    memset(p + n_vis, 0, (size_t)(n - n_vis) * sizeof(float));
}

// Rows of one head (HS floats every ld floats) to a contiguous [T, HS]
// buffer and back: BLAS packs contiguous panels much faster than rows a fused
// qkv row apart (one page per row at LLM widths).
static void attn_gather_head(float *dst, const float *src, int T, int ld, int HS) {
    for (int t = 0; t < T; t++) memcpy(dst + (size_t)t * HS, src + (size_t)t * ld, (size_t)HS * sizeof(float));
}

static void attn_scatter_head(float *dst, const float *src, int T, int ld, int HS) {
    for (int t = 0; t < T; t++) memcpy(dst + (size_t)t * ld, src + (size_t)t * HS, (size_t)HS * sizeof(float));
}

// Softmax of one score row over its visible keys, in place; returns the
// log-sum-exp (-inf when no key is visible: the row becomes zeros).
static float softmax_row(float *s, const uint8_t *vis, int n_vis, int n) {
    float mx = -INFINITY;
    if (n_vis < 0) {
        for (int j = 0; j < n; j++)
            if (vis[j] && s[j] > mx) mx = s[j];
    } else if (n_vis > 0) {
        mx = cpu_max_lanes(s, n_vis);
    }
    if (mx == -INFINITY) {
        memset(s, 0, (size_t)n * sizeof(float));
        return -INFINITY;
    }
    attn_exp_visible(s, s, vis, n_vis, mx, n);
    double sum = cpu_sum_lanes(s, n_vis < 0 ? n : n_vis);
    attn_scale_row(s, (float)(1.0 / sum), n_vis < 0 ? n : n_vis);
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
        float *qc = xmalloc((size_t)3 * T * HS * sizeof(float)), *kc = qc + (size_t)T * HS, *vc = kc + (size_t)T * HS;
        uint8_t *vis = xmalloc((size_t)T);
#pragma omp for collapse(2) schedule(static)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < NH; h++) {
                const int32_t *seg = s->seg ? s->seg + (size_t)b * T : NULL;
                attn_gather_head(qc, qkv + (size_t)b * T * row + (size_t)h * HS, T, row, HS);
                attn_gather_head(kc, qkv + (size_t)b * T * row + (size_t)(NH + h / group) * HS, T, row, HS);
                attn_gather_head(vc, qkv + (size_t)b * T * row + (size_t)(NH + NKV + h / group) * HS, T, row, HS);
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
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, HS, scale, qc + (size_t)i0 * HS, HS,
                                kc + (size_t)k0 * HS, HS, 0.0f, S, nk);
                    for (int i = i0; i < i1; i++) {
                        const int n_vis = attn_row_keys(vis, s, seg, i, k0, nk);
                        l[i] = softmax_row(S + (size_t)(i - i0) * nk, vis, n_vis, nk);
                    }
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, HS, nk, 1.0f, S, nk,
                                vc + (size_t)k0 * HS, HS, 0.0f, o + (size_t)i0 * ldo, ldo);
                }
            }
        free(S);
        free(qc);
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
        // contiguous [T, HS] copies: k, v, q, dO of the head, and the dk, dv accumulators
        float *kc = xmalloc((size_t)6 * T * HS * sizeof(float)), *vc = kc + (size_t)T * HS;
        float *qc = vc + (size_t)T * HS, *dOc = qc + (size_t)T * HS, *dkc = dOc + (size_t)T * HS;
        float *dvc = dkc + (size_t)T * HS;
        uint8_t *vis = xmalloc((size_t)T);
#pragma omp for collapse(2) schedule(static)
        for (int b = 0; b < B; b++)
            for (int kvh = 0; kvh < NKV; kvh++) {
                const int32_t *seg = s->seg ? s->seg + (size_t)b * T : NULL;
                const size_t base = (size_t)b * T * row;
                attn_gather_head(kc, qkv + base + (size_t)(NH + kvh) * HS, T, row, HS);
                attn_gather_head(vc, qkv + base + (size_t)(NH + NKV + kvh) * HS, T, row, HS);
                memset(dkc, 0, (size_t)2 * T * HS * sizeof(float));  // dkc and dvc
                for (int h = kvh * group; h < (kvh + 1) * group; h++) {
                    float *dq = dqkv + base + (size_t)h * HS;
                    const float *o = out + (size_t)b * T * ldo + (size_t)h * HS;
                    const float *dO = dout + (size_t)b * T * ldo + (size_t)h * HS;
                    const float *l = lse + ((size_t)b * NH + h) * T;
                    attn_gather_head(qc, qkv + base + (size_t)h * HS, T, row, HS);
                    attn_gather_head(dOc, dO, T, ldo, HS);
                    for (int blk = 0; blk < n_blocks; blk++) {
                        const int i0 = blk * ATTN_BQ, i1 = i0 + ATTN_BQ < T ? i0 + ATTN_BQ : T, nq = i1 - i0;
                        int k0, k1;
                        attn_window(s, first + (size_t)b * T, i0, i1, &k0, &k1);
                        const int nk = k1 - k0;
                        if (nk == 0) {
                            for (int i = i0; i < i1; i++) memset(dq + (size_t)i * row, 0, (size_t)HS * sizeof(float));
                            continue;
                        }
                        const float *qb = qc + (size_t)i0 * HS, *dOb = dOc + (size_t)i0 * HS;
                        // P = exp(scale q k^T - lse) on visible entries (0 elsewhere)
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, HS, scale, qb, HS,
                                    kc + (size_t)k0 * HS, HS, 0.0f, P, nk);
                        // dP = dO v^T
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, HS, 1.0f, dOb, HS,
                                    vc + (size_t)k0 * HS, HS, 0.0f, dS, nk);
                        for (int i = i0; i < i1; i++) {
                            float *p = P + (size_t)(i - i0) * nk, *ds = dS + (size_t)(i - i0) * nk;
                            double d = 0.0;
                            for (int c = 0; c < HS; c++) d += (double)dO[(size_t)i * ldo + c] * o[(size_t)i * ldo + c];
                            const int n_vis = attn_row_keys(vis, s, seg, i, k0, nk);
                            if (l[i] == -INFINITY)
                                memset(p, 0, (size_t)nk * sizeof(float));
                            else
                                attn_exp_visible(p, p, vis, n_vis, l[i], nk);
                            // dS = P * (dP - D) * scale (0 where P is: past the visible prefix)
                            const int n_ds = n_vis < 0 ? nk : n_vis;
                            attn_dscore_row(ds, p, (float)d, scale, n_ds);
                            memset(ds + n_ds, 0, (size_t)(nk - n_ds) * sizeof(float));
                        }
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, HS, nk, 1.0f, dS, nk,
                                    kc + (size_t)k0 * HS, HS, 0.0f, dq + (size_t)i0 * row, row);
                        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, HS, nq, 1.0f, dS, nk, qb, HS, 1.0f,
                                    dkc + (size_t)k0 * HS, HS);
                        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, HS, nq, 1.0f, P, nk, dOb, HS, 1.0f,
                                    dvc + (size_t)k0 * HS, HS);
                    }
                }
                attn_scatter_head(dqkv + base + (size_t)(NH + kvh) * HS, dkc, T, row, HS);
                attn_scatter_head(dqkv + base + (size_t)(NH + NKV + kvh) * HS, dvc, T, row, HS);
            }
        free(P);
        free(dS);
        free(kc);
        free(vis);
    }
    free(first);
}
