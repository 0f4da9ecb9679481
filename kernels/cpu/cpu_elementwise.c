// Elementwise ops: residual add, activations (gelu, gelu_tanh, quick_gelu, swiglu) and
// rotary position embeddings.
#include <math.h>

#include "kernels/cpu/cpu_math.h"
#include "kernels/cpu/cpu_ops.h"

void cpu_residual_forward(void *out_, const void *a_, const void *b_, size_t n) {
    float *out = out_;
    const float *a = a_, *b = b_;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void cpu_accumulate(void *dst_, const void *src_, size_t n) {
    float *dst = dst_;
    const float *src = src_;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) dst[i] += src[i];
}

#define INV_SQRT2 0.70710678118654752440f
#define INV_SQRT_2PI 0.39894228040143267794f

void cpu_gelu_forward(void *out_, const void *inp_, size_t n) {
    float *out = out_;
    const float *x = inp_;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = 0.5f * x[i] * (1.0f + erff(x[i] * INV_SQRT2));
}

void cpu_gelu_backward(void *dinp_, const void *inp_, const void *dout_, size_t n) {
    float *dinp = dinp_;
    const float *x = inp_, *dout = dout_;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float cdf = 0.5f * (1.0f + erff(x[i] * INV_SQRT2));
        float pdf = INV_SQRT_2PI * expf(-0.5f * x[i] * x[i]);
        dinp[i] = dout[i] * (cdf + x[i] * pdf);
    }
}

void cpu_quick_gelu_forward(void *out_, const void *inp_, size_t n) {
    float *out = out_;
    const float *x = inp_;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = x[i] / (1.0f + expf(-1.702f * x[i]));
}

void cpu_quick_gelu_backward(void *dinp_, const void *inp_, const void *dout_, size_t n) {
    float *dinp = dinp_;
    const float *x = inp_, *dout = dout_;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float s = 1.0f / (1.0f + expf(-1.702f * x[i]));
        dinp[i] = dout[i] * (s + 1.702f * x[i] * s * (1.0f - s));
    }
}

// sigmoid(x) = 1 / (1 + exp(-x)), from exp(-|x|) (an argument <= 0, see
// cpu_math.h) so that the loops vectorize: x >= 0 gives 1 / (1 + e), x < 0
// gives e / (1 + e).
static inline float sigmoid_f(float x) {
    float e = cpu_expf_nonpos(x >= 0.0f ? -x : x);
    float num = x >= 0.0f ? 1.0f : e;
    return num / (1.0f + e);
}

// out = silu(g) * u
CPU_SIMD_CLONES
static void swiglu_row(float *o, const float *g, const float *u, int FF) {
    for (int i = 0; i < FF; i++) o[i] = g[i] * sigmoid_f(g[i]) * u[i];
}

CPU_SIMD_CLONES
static void swiglu_backward_row(float *dg, float *du, const float *dy, const float *g, const float *u, int FF) {
    for (int i = 0; i < FF; i++) {
        float s = sigmoid_f(g[i]);
        float silu = g[i] * s;
        du[i] = dy[i] * silu;
        dg[i] = dy[i] * u[i] * s * (1.0f + g[i] * (1.0f - s));
    }
}

void cpu_swiglu_forward(void *out_, const void *gateup_, int M, int FF) {
    float *out = out_;
    const float *gu = gateup_;
#pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++) {
        const float *g = gu + (size_t)m * 2 * FF;
        swiglu_row(out + (size_t)m * FF, g, g + FF, FF);
    }
}

void cpu_swiglu_backward(void *dgateup_, const void *dout_, const void *gateup_, int M, int FF) {
    float *dgu = dgateup_;
    const float *dout = dout_, *gu = gateup_;
#pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++) {
        const float *g = gu + (size_t)m * 2 * FF, *u = g + FF, *dy = dout + (size_t)m * FF;
        float *dg = dgu + (size_t)m * 2 * FF;
        swiglu_backward_row(dg, dg + FF, dy, g, u, FF);
    }
}

// swiglu_backward_row plus out = swiglu_row's value, the same expressions.
CPU_SIMD_CLONES
static void swiglu_backward_recompute_row(float *dg, float *du, float *o, const float *dy, const float *g,
                                          const float *u, int FF) {
    for (int i = 0; i < FF; i++) {
        float s = sigmoid_f(g[i]);
        float silu = g[i] * s;
        o[i] = silu * u[i];
        du[i] = dy[i] * silu;
        dg[i] = dy[i] * u[i] * s * (1.0f + g[i] * (1.0f - s));
    }
}

void cpu_swiglu_backward_recompute(void *dgateup_, void *out_, const void *dout_, const void *gateup_, int M,
                                   int FF) {
    if (!out_) {
        cpu_swiglu_backward(dgateup_, dout_, gateup_, M, FF);
        return;
    }
    float *dgu = dgateup_, *out = out_;
    const float *dout = dout_, *gu = gateup_;
#pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++) {
        const float *g = gu + (size_t)m * 2 * FF, *u = g + FF, *dy = dout + (size_t)m * FF;
        float *dg = dgu + (size_t)m * 2 * FF;
        swiglu_backward_recompute_row(dg, dg + FF, out + (size_t)m * FF, dy, g, u, FF);
    }
}

// gelu_pytorch_tanh as torch computes it in fp32 (kBeta = sqrt(2/pi)).
#define GELU_TANH_BETA 0.79788456080286535588f
#define GELU_TANH_KAPPA 0.044715f

void cpu_gelu_tanh_forward(void *out_, const void *inp_, size_t n) {
    float *out = out_;
    const float *x = inp_;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float inner = GELU_TANH_BETA * (x[i] + GELU_TANH_KAPPA * x[i] * x[i] * x[i]);
        out[i] = 0.5f * x[i] * (1.0f + tanhf(inner));
    }
}

void cpu_gelu_tanh_backward(void *dinp_, const void *inp_, const void *dout_, size_t n) {
    float *dinp = dinp_;
    const float *x = inp_, *dout = dout_;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float x2 = x[i] * x[i];
        float inner = GELU_TANH_BETA * (x[i] + GELU_TANH_KAPPA * x2 * x[i]);
        float th = tanhf(inner);
        float dinner = GELU_TANH_BETA * (1.0f + 3.0f * GELU_TANH_KAPPA * x2);
        dinp[i] = dout[i] * (0.5f * (1.0f + th) + 0.5f * x[i] * (1.0f - th * th) * dinner);
    }
}

// Rotates the first (NH + NKV) heads of each row (q then k) by +angle or
// -angle (direction = +1 / -1). Angles are computed in fp32 the way
// transformers does: inv_freq = 1 / theta^(2i/HS) (or the table given, for
// scaled RoPE), angle = pos * inv_freq.
static void rope_apply(float *qkv, const int32_t *pos, const float *table, int M, int NH, int NKV, int HS,
                       float theta, float direction) {
    int half = HS / 2, heads = NH + NKV, row = (NH + 2 * NKV) * HS;
#pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++) {
        float p = (float)pos[m];
        for (int i = 0; i < half; i++) {
            float inv_freq = table ? table[i] : 1.0f / powf(theta, (float)(2 * i) / (float)HS);
            float angle = p * inv_freq;
            float c = cosf(angle), s = direction * sinf(angle);
            for (int h = 0; h < heads; h++) {
                float *x = qkv + (size_t)m * row + (size_t)h * HS;
                float a = x[i], b = x[i + half];
                x[i] = a * c - b * s;
                x[i + half] = b * c + a * s;
            }
        }
    }
}

void cpu_rope_forward(void *qkv, const int32_t *pos, int M, int NH, int NKV, int HS, float theta) {
    rope_apply(qkv, pos, NULL, M, NH, NKV, HS, theta, 1.0f);
}

void cpu_rope_backward(void *dqkv, const int32_t *pos, int M, int NH, int NKV, int HS, float theta) {
    rope_apply(dqkv, pos, NULL, M, NH, NKV, HS, theta, -1.0f);
}

void cpu_rope_freq_forward(void *qkv, const int32_t *pos, const float *inv_freq, int M, int NH, int NKV, int HS) {
    rope_apply(qkv, pos, inv_freq, M, NH, NKV, HS, 0.0f, 1.0f);
}

void cpu_rope_freq_backward(void *dqkv, const int32_t *pos, const float *inv_freq, int M, int NH, int NKV, int HS) {
    rope_apply(dqkv, pos, inv_freq, M, NH, NKV, HS, 0.0f, -1.0f);
}
