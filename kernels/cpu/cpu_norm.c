// LayerNorm (vision tower) and RMSNorm (LLM), fp32 statistics.
// Weight/bias gradients are reduced per column over rows in a fixed order so
// the result does not depend on the thread count.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "kernels/cpu/cpu_math.h"
#include "kernels/cpu/cpu_ops.h"

void cpu_layernorm_forward(void *out_, float *mean, float *rstd, const void *inp_, const void *weight_,
                           const void *bias_, int M, int C, float eps) {
    float *out = out_;
    const float *inp = inp_, *w = weight_, *b = bias_;
#pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++) {
        const float *x = inp + (size_t)m * C;
        double s = 0.0;
        for (int c = 0; c < C; c++) s += x[c];
        float mu = (float)(s / C);
        double v = 0.0;
        for (int c = 0; c < C; c++) {
            double d = x[c] - mu;
            v += d * d;
        }
        float rs = 1.0f / sqrtf((float)(v / C) + eps);
        float *y = out + (size_t)m * C;
        for (int c = 0; c < C; c++) y[c] = (x[c] - mu) * rs * w[c] + (b ? b[c] : 0.0f);
        if (mean) mean[m] = mu;
        if (rstd) rstd[m] = rs;
    }
}

void cpu_layernorm_backward(void *dinp_, void *dweight_, void *dbias_, const void *dout_, const void *inp_,
                            const void *weight_, const float *mean, const float *rstd, int M, int C) {
    float *dinp = dinp_, *dweight = dweight_, *dbias = dbias_;  // fp32 gradients (grad_size 4)
    const float *dout = dout_, *inp = inp_, *w = weight_;
    if (dinp) {
#pragma omp parallel for schedule(static)
        for (int m = 0; m < M; m++) {
            const float *x = inp + (size_t)m * C, *dy = dout + (size_t)m * C;
            float mu = mean[m], rs = rstd[m];
            // dxhat = dy * w; dx = rs * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
            double sum_dxhat = 0.0, sum_dxhat_xhat = 0.0;
            for (int c = 0; c < C; c++) {
                float xhat = (x[c] - mu) * rs;
                float dxhat = dy[c] * w[c];
                sum_dxhat += dxhat;
                sum_dxhat_xhat += (double)dxhat * xhat;
            }
            float a = (float)(sum_dxhat / C), bcoef = (float)(sum_dxhat_xhat / C);
            float *dx = dinp + (size_t)m * C;
            for (int c = 0; c < C; c++) {
                float xhat = (x[c] - mu) * rs;
                dx[c] += rs * (dy[c] * w[c] - a - xhat * bcoef);
            }
        }
    }
    if (dweight || dbias) {
#pragma omp parallel for schedule(static)
        for (int c = 0; c < C; c++) {
            double gw = 0.0, gb = 0.0;
            for (int m = 0; m < M; m++) {
                float dy = dout[(size_t)m * C + c];
                gw += (double)dy * (inp[(size_t)m * C + c] - mean[m]) * rstd[m];
                gb += dy;
            }
            if (dweight) dweight[c] += (float)gw;
            if (dbias) dbias[c] += (float)gb;
        }
    }
}

// Row statistics of RMSNorm, summed in 8 interleaved double lanes (see
// cpu_sum_lanes): sum x^2 for the forward (cpu_sumsq_lanes), sum dy*w*x for
// the backward.
CPU_SIMD_CLONES
static double rms_dot3(const float *dy, const float *w, const float *x, int C) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int c = 0;
    for (; c + 8 <= C; c += 8)
        for (int l = 0; l < 8; l++) acc[l] += (double)dy[c + l] * w[c + l] * x[c + l];
    for (int l = 0; c < C; c++, l++) acc[l] += (double)dy[c] * w[c] * x[c];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

CPU_SIMD_CLONES
static void rms_scale_row(float *y, const float *x, const float *w, float rs, int C) {
    for (int c = 0; c < C; c++) y[c] = w[c] * (x[c] * rs);
}

CPU_SIMD_CLONES
static void rms_dinp_row(float *dx, const float *dy, const float *w, const float *x, float rs, float k, int C) {
    for (int c = 0; c < C; c++) dx[c] += dy[c] * w[c] * rs - x[c] * k;
}

// acc[c] += dy[c] * x[c] * rs in double: one row's share of the weight gradient.
CPU_SIMD_CLONES
static void rms_dweight_row(double *acc, const float *dy, const float *x, float rs, int C) {
    for (int c = 0; c < C; c++) acc[c] += (double)dy[c] * x[c] * rs;
}

void cpu_rmsnorm_forward(void *out_, float *rstd, const void *inp_, const void *weight_, int M, int C, float eps) {
    float *out = out_;
    const float *inp = inp_, *w = weight_;
#pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++) {
        const float *x = inp + (size_t)m * C;
        double ss = cpu_sumsq_lanes(x, (size_t)C);
        float rs = 1.0f / sqrtf((float)(ss / C) + eps);
        rms_scale_row(out + (size_t)m * C, x, w, rs, C);
        if (rstd) rstd[m] = rs;
    }
}

// The reference is the two ops themselves, so fused and unfused agree exactly.
void cpu_residual_rmsnorm_forward(void *res, void *out, float *rstd, const void *a, const void *b, const void *weight,
                                  int M, int C, float eps) {
    cpu_residual_forward(res, a, b, (size_t)M * C);
    cpu_rmsnorm_forward(out, rstd, res, weight, M, C, eps);
}

// Rows are taken in fixed chunks of NORM_ROWS: each chunk sums its rows'
// weight-gradient shares into its own double row (row-major, so reads are
// contiguous), then the chunks are added in chunk order. The result does not
// depend on the number of threads.
#define NORM_ROWS 16

void cpu_rmsnorm_backward(void *dinp_, void *dweight_, const void *dout_, const void *inp_, const void *weight_,
                          const float *rstd, int M, int C) {
    float *dinp = dinp_, *dweight = dweight_;  // fp32 gradients (grad_size 4)
    const float *dout = dout_, *inp = inp_, *w = weight_;
    const int n_chunks = (M + NORM_ROWS - 1) / NORM_ROWS;
    double *partial = dweight ? xmalloc((size_t)n_chunks * C * sizeof(double)) : NULL;  // [n_chunks, C]
#pragma omp parallel for schedule(static)
    for (int ch = 0; ch < n_chunks; ch++) {
        double *acc = partial ? partial + (size_t)ch * C : NULL;
        if (acc) memset(acc, 0, (size_t)C * sizeof(double));
        const int m1 = (ch + 1) * NORM_ROWS < M ? (ch + 1) * NORM_ROWS : M;
        for (int m = ch * NORM_ROWS; m < m1; m++) {
            const float *x = inp + (size_t)m * C, *dy = dout + (size_t)m * C;
            float rs = rstd[m];
            if (dinp) {
                // y = w * x * rs;  dx = rs * (dy*w) - x * rs^3 * mean(dy*w*x)
                double dot = rms_dot3(dy, w, x, C);
                float k = (float)(dot / C) * rs * rs * rs;
                rms_dinp_row(dinp + (size_t)m * C, dy, w, x, rs, k, C);
            }
            if (acc) rms_dweight_row(acc, dy, x, rs, C);
        }
    }
    if (dweight) {
#pragma omp parallel for schedule(static)
        for (int c = 0; c < C; c++) {
            double g = 0.0;
            for (int ch = 0; ch < n_chunks; ch++) g += partial[(size_t)ch * C + c];
            dweight[c] += (float)g;
        }
        free(partial);
    }
}
