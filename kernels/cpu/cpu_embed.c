// Token embeddings, row scatter/gather (image splicing, CLS selection) and the
// vision tower's patch embedding input.
#include <string.h>

#include "kernels/cpu/cpu_ops.h"

void cpu_embedding_forward(void *out_, const int32_t *ids, const void *table_, int M, int C) {
    float *out = out_;
    const float *table = table_;
#pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++) {
        float *o = out + (size_t)m * C;
        if (ids[m] < 0)
            memset(o, 0, (size_t)C * sizeof(float));
        else
            memcpy(o, table + (size_t)ids[m] * C, (size_t)C * sizeof(float));
    }
}

// Parallel over channels: every thread walks all rows in order, so repeated
// ids accumulate in a fixed order without atomics.
void cpu_embedding_backward(void *dtable_, const void *dout_, const int32_t *ids, int M, int C, int V) {
    float *dtable = dtable_;  // fp32 gradients (grad_size 4)
    const float *dout = dout_;
    (void)V;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++)
        for (int m = 0; m < M; m++)
            if (ids[m] >= 0) dtable[(size_t)ids[m] * C + c] += dout[(size_t)m * C + c];
}

void cpu_scatter_rows(void *dst_, const void *src_, const int32_t *rows, int n, int C) {
    float *dst = dst_;
    const float *src = src_;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) memcpy(dst + (size_t)rows[i] * C, src + (size_t)i * C, (size_t)C * sizeof(float));
}

void cpu_gather_rows(void *dst_, const void *src_, const int32_t *rows, int n, int C) {
    float *dst = dst_;
    const float *src = src_;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) memcpy(dst + (size_t)i * C, src + (size_t)rows[i] * C, (size_t)C * sizeof(float));
}

void cpu_patchify(void *patches_, const void *pixels_, int N, int S, int P) {
    float *patches = patches_;
    const float *pixels = pixels_;
    const int G = S / P, NP = G * G, F = 3 * P * P;
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < N; n++)
        for (int p = 0; p < NP; p++) {
            int py = p / G, px = p % G;
            float *dst = patches + ((size_t)n * NP + p) * F;
            for (int c = 0; c < 3; c++)
                for (int ky = 0; ky < P; ky++) {
                    const float *src = pixels + (((size_t)n * 3 + c) * S + (size_t)(py * P + ky)) * S + (size_t)px * P;
                    memcpy(dst + (size_t)(c * P + ky) * P, src, (size_t)P * sizeof(float));
                }
        }
}

void cpu_vision_embed(void *out_, const void *patch_emb_, const void *cls_, const void *pos_, int N, int NP, int D) {
    float *out = out_;
    const float *pe = patch_emb_, *cls = cls_, *pos = pos_;
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < N; n++)
        for (int t = 0; t <= NP; t++) {
            float *o = out + ((size_t)n * (NP + 1) + t) * D;
            const float *src = t == 0 ? cls : pe + ((size_t)n * NP + t - 1) * D;
            const float *ps = pos + (size_t)t * D;
            for (int d = 0; d < D; d++) o[d] = src[d] + ps[d];
        }
}
