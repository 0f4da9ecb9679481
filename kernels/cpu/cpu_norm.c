// LayerNorm (vision tower) and RMSNorm (LLM), fp32 statistics.
// Weight/bias gradients are reduced per column over rows in a fixed order so
// the result does not depend on the thread count.
#include <math.h>

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

void cpu_layernorm_backward(void *dinp_, float *dweight, float *dbias, const void *dout_, const void *inp_,
                            const void *weight_, const float *mean, const float *rstd, int M, int C) {
    float *dinp = dinp_;
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

void cpu_rmsnorm_forward(void *out_, float *rstd, const void *inp_, const void *weight_, int M, int C, float eps) {
    float *out = out_;
    const float *inp = inp_, *w = weight_;
#pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++) {
        const float *x = inp + (size_t)m * C;
        double ss = 0.0;
        for (int c = 0; c < C; c++) ss += (double)x[c] * x[c];
        float rs = 1.0f / sqrtf((float)(ss / C) + eps);
        float *y = out + (size_t)m * C;
        for (int c = 0; c < C; c++) y[c] = w[c] * (x[c] * rs);
        if (rstd) rstd[m] = rs;
    }
}

// The reference is the two ops themselves, so fused and unfused agree exactly.
void cpu_residual_rmsnorm_forward(void *res, void *out, float *rstd, const void *a, const void *b, const void *weight,
                                  int M, int C, float eps) {
    cpu_residual_forward(res, a, b, (size_t)M * C);
    cpu_rmsnorm_forward(out, rstd, res, weight, M, C, eps);
}

void cpu_rmsnorm_backward(void *dinp_, float *dweight, const void *dout_, const void *inp_, const void *weight_,
                          const float *rstd, int M, int C) {
    float *dinp = dinp_;
    const float *dout = dout_, *inp = inp_, *w = weight_;
    if (dinp) {
#pragma omp parallel for schedule(static)
        for (int m = 0; m < M; m++) {
            const float *x = inp + (size_t)m * C, *dy = dout + (size_t)m * C;
            float rs = rstd[m];
            // y = w * x * rs;  dx = rs * (dy*w) - x * rs^3 * mean(dy*w*x)
            double dot = 0.0;
            for (int c = 0; c < C; c++) dot += (double)dy[c] * w[c] * x[c];
            float k = (float)(dot / C) * rs * rs * rs;
            float *dx = dinp + (size_t)m * C;
            for (int c = 0; c < C; c++) dx[c] += dy[c] * w[c] * rs - x[c] * k;
        }
    }
    if (dweight) {
#pragma omp parallel for schedule(static)
        for (int c = 0; c < C; c++) {
            double g = 0.0;
            for (int m = 0; m < M; m++) g += (double)dout[(size_t)m * C + c] * inp[(size_t)m * C + c] * rstd[m];
            dweight[c] += (float)g;
        }
    }
}
