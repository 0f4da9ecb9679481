// Timings of the CUDA ops at the shapes of LLaVA-1.5-7B (LLM: M = 4096 tokens
// = 2 x 2048, C 4096, FF 11008, 32 heads of 128, V 32000; vision tower
// CLIP-L/14-336: 8 images x 577 tokens, D 1024, FF 4096, 16 heads of 64),
// against the two ceilings measured first on the same card: a large
// device-to-device copy and a large bf16 matmul. Then the flash-attention
// benchmark (head size 128, T = 2048, forward + backward, the 64-row and
// the 128-row kernels side by side).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "kernels/backend.h"
#include "tests/gpu/gpu_harness.h"

#define PATTERN ((size_t)1 << 20)

static double median5(double *t) {
    for (int i = 0; i < 5; i++)
        for (int j = i + 1; j < 5; j++)
            if (t[j] < t[i]) {
                double x = t[i];
                t[i] = t[j];
                t[j] = x;
            }
    return t[2];
}

// One warm-up, then 5 batches of enough repetitions for ~10 ms each; the
// median batch's mean time per call.
#define BENCH(h, name, bytes, flops, stmt)                                                       \
    do {                                                                                         \
        stmt;                                                                                    \
        (h)->gpu->synchronize();                                                                 \
        double t0_ = now_seconds();                                                              \
        stmt;                                                                                    \
        (h)->gpu->synchronize();                                                                 \
        double one_ = now_seconds() - t0_;                                                       \
        int reps_ = (int)(0.01 / (one_ > 1e-6 ? one_ : 1e-6));                                   \
        reps_ = reps_ < 1 ? 1 : reps_ > 200 ? 200 : reps_;                                       \
        double times_[5];                                                                        \
        for (int k_ = 0; k_ < 5; k_++) {                                                         \
            t0_ = now_seconds();                                                                 \
            for (int r_ = 0; r_ < reps_; r_++) {                                                 \
                stmt;                                                                            \
            }                                                                                    \
            (h)->gpu->synchronize();                                                             \
            times_[k_] = (now_seconds() - t0_) / reps_;                                          \
        }                                                                                        \
        h_add_row((h), (name), median5(times_), (bytes), (flops));                               \
    } while (0)

// Device buffers filled with a repeated random pattern (never zeros; timing
// needs realistic values, not fresh ones per element).
static void *b_act(Harness *h, size_t n, float scale) {
    void *d = d_act(h, NULL, n);
    float *pat = h_rand(h, PATTERN, scale);
    for (size_t off = 0; off < n; off += PATTERN)
        h->gpu->upload_act((char *)d + off * h->gpu->act_size, pat, n - off < PATTERN ? n - off : PATTERN);
    free(pat);
    return d;
}

static float *b_f32(Harness *h, size_t n, float scale, int positive) {
    float *d = d_f32(h, NULL, n);
    float *pat = h_rand(h, PATTERN, scale);
    if (positive)
        for (size_t i = 0; i < PATTERN; i++) pat[i] = fabsf(pat[i]);
    for (size_t off = 0; off < n; off += PATTERN)
        h->gpu->upload(d + off, pat, (n - off < PATTERN ? n - off : PATTERN) * sizeof(float));
    free(pat);
    return d;
}

static int32_t *b_ids(Harness *h, size_t n, int V) {
    int32_t *ids = h_ids(h, n, 0, V);
    int32_t *d = d_i32(h, ids, n);
    free(ids);
    return d;
}

static void measure_ceilings(Harness *h, double *gbs, double *tflops) {
    const size_t bytes = (size_t)1 << 30;
    void *a = b_act(h, bytes / 2, 1.0f), *b = d_act(h, NULL, bytes / 2);
    BENCH(h, "ceiling: device-to-device copy 1 GiB", 2.0 * bytes, 0, h->gpu->copy(b, a, bytes));
    *gbs = h->rows[h->n_rows - 1].bytes / h->rows[h->n_rows - 1].seconds * 1e-9;
    h_release(h);
    const int S = 8192;
    void *x = b_act(h, (size_t)S * S, 1.0f), *w = b_act(h, (size_t)S * S, 0.02f), *o = d_act(h, NULL, (size_t)S * S);
    BENCH(h, "ceiling: bf16 matmul 8192^3", 6.0 * S * S, 2.0 * S * S * S,
          h->gpu->matmul_forward(o, x, w, NULL, S, S, S));
    *tflops = h->rows[h->n_rows - 1].flops / h->rows[h->n_rows - 1].seconds * 1e-12;
    h_release(h);
}

static void bench_matmuls(Harness *h) {
    const int M = 4096, C = 4096, FF = 11008, V = 32000;
    void *x = b_act(h, (size_t)M * FF, 1.0f), *w = b_act(h, (size_t)V * C, 0.02f);
    void *o = d_act(h, NULL, (size_t)M * V), *dx = d_act(h, NULL, (size_t)M * FF);
    float *dw = b_f32(h, (size_t)V * C, 0.01f, 0);
    double f;
    f = 2.0 * M * C * 3 * C;
    BENCH(h, "matmul fwd qkv 4096x4096->12288", 2.0 * ((double)M * C + 3.0 * C * C + 3.0 * M * C), f,
          h->gpu->matmul_forward(o, x, w, NULL, M, C, 3 * C));
    BENCH(h, "matmul bwd qkv (dinp + dweight)", 2.0 * (2.0 * M * C + 3.0 * C * C + 3.0 * M * C) + 8.0 * 3 * C * C,
          2 * f, h->gpu->matmul_backward(dx, dw, NULL, o, x, w, M, C, 3 * C));
    f = 2.0 * M * FF * C;
    BENCH(h, "matmul fwd down 4096x11008->4096", 2.0 * ((double)M * FF + (double)FF * C + (double)M * C), f,
          h->gpu->matmul_forward(o, x, w, NULL, M, FF, C));
    f = 2.0 * M * C * V;
    BENCH(h, "matmul fwd lm_head 4096x4096->32000", 2.0 * ((double)M * C + (double)V * C + (double)M * V), f,
          h->gpu->matmul_forward(o, x, w, NULL, M, C, V));
    const int NV = 8 * 577, D = 1024;
    f = 2.0 * NV * D * 4 * D;
    BENCH(h, "matmul fwd +bias CLIP fc1 4616x1024->4096", 2.0 * ((double)NV * D + 4.0 * D * D + 4.0 * NV * D), f,
          h->gpu->matmul_forward(o, x, w, x, NV, D, 4 * D));
    h_release(h);
}

static void bench_rowwise(Harness *h) {
    const int M = 4096, C = 4096, FF = 11008, V = 32000, NV = 8 * 577, D = 1024;
    const size_t big = (size_t)M * 2 * FF;
    void *a = b_act(h, big, 1.0f), *b = b_act(h, big, 1.0f), *c = d_act(h, NULL, big);
    void *w = b_act(h, C, 1.0f);
    float *st = b_f32(h, 2 * (size_t)NV, 1.0f, 1), *dw = b_f32(h, C, 0.1f, 0);
    const double MC = (double)M * C;
    BENCH(h, "rmsnorm fwd 4096x4096", 4.0 * MC, 0, h->gpu->rmsnorm_forward(c, st, a, w, M, C, 1e-5f));
    BENCH(h, "rmsnorm bwd 4096x4096 (dinp += , dweight)", 8.0 * MC, 0,
          h->gpu->rmsnorm_backward(c, dw, b, a, w, st, M, C));
    BENCH(h, "layernorm fwd 4616x1024", 4.0 * NV * D, 0, h->gpu->layernorm_forward(c, st, st + NV, a, w, w, NV, D, 1e-5f));
    BENCH(h, "layernorm bwd 4616x1024", 8.0 * NV * D, 0,
          h->gpu->layernorm_backward(c, dw, dw, b, a, w, st, st + NV, NV, D));
    BENCH(h, "residual 4096x4096", 6.0 * MC, 0, h->gpu->residual_forward(c, a, b, (size_t)MC));
    BENCH(h, "accumulate 4096x4096", 6.0 * MC, 0, h->gpu->accumulate(c, b, (size_t)MC));
    const double NF = (double)NV * 4 * D;
    BENCH(h, "gelu fwd 4616x4096", 4.0 * NF, 0, h->gpu->gelu_forward(c, a, (size_t)NF));
    BENCH(h, "gelu bwd 4616x4096", 6.0 * NF, 0, h->gpu->gelu_backward(c, a, b, (size_t)NF));
    BENCH(h, "quick_gelu fwd 4616x4096", 4.0 * NF, 0, h->gpu->quick_gelu_forward(c, a, (size_t)NF));
    const double MF = (double)M * FF;
    BENCH(h, "swiglu fwd 4096x11008", 6.0 * MF, 0, h->gpu->swiglu_forward(c, a, M, FF));
    BENCH(h, "swiglu bwd 4096x11008", 10.0 * MF, 0, h->gpu->swiglu_backward(c, b, a, M, FF));
    int32_t *pos = b_ids(h, M, 2048);
    BENCH(h, "rope fwd 4096 rows, 32+32 heads of 128", 2.0 * 2 * M * 64.0 * 128, 0,
          h->gpu->rope_forward(a, pos, M, 32, 32, 128, 10000.0f));
    h_release(h);

    void *logits = b_act(h, (size_t)M * V, 2.0f);
    int32_t *tg = b_ids(h, M, V);
    float *loss = d_f32(h, NULL, M);
    const double MV = (double)M * V;
    BENCH(h, "cross_entropy loss 4096x32000", 2.0 * MV, 0, h->gpu->cross_entropy(loss, NULL, logits, tg, 0, M, V));
    BENCH(h, "cross_entropy + dlogits in place 4096x32000", 4.0 * MV, 0,
          h->gpu->cross_entropy(loss, logits, logits, tg, 1e-4f, M, V));
    h_release(h);

    void *table = b_act(h, (size_t)V * C, 1.0f), *e = d_act(h, NULL, (size_t)M * C);
    float *dtable = b_f32(h, (size_t)V * C, 0.1f, 0);
    int32_t *ids = b_ids(h, M, V);
    BENCH(h, "embedding fwd 4096x4096", 4.0 * MC, 0, h->gpu->embedding_forward(e, ids, table, M, C));
    BENCH(h, "embedding bwd 4096x4096 (fp32 table +=)", 2.0 * MC + 8.0 * MC, 0,
          h->gpu->embedding_backward(dtable, e, ids, M, C, V));
    h_release(h);

    const int N = 8, S = 336, P = 14;
    void *pix = b_act(h, (size_t)N * 3 * S * S, 1.0f), *pat = d_act(h, NULL, (size_t)N * 3 * S * S);
    BENCH(h, "patchify 8x3x336x336", 4.0 * N * 3 * S * S, 0, h->gpu->patchify(pat, pix, N, S, P));
    h_release(h);

    const size_t n = (size_t)1 << 27;  // 134M parameters
    float *g = b_f32(h, n, 1e-3f, 0), *m = b_f32(h, n, 1e-3f, 0), *v = b_f32(h, n, 1e-6f, 1), *mw = b_f32(h, n, 1.0f, 0);
    void *p = b_act(h, n, 1.0f);
    BENCH(h, "sum_squares 134M fp32", 4.0 * n, 0, (void)h->gpu->sum_squares(g, n));
    BENCH(h, "adamw 134M (bf16 param, fp32 master/m/v)", 30.0 * n, 0,
          h->gpu->adamw_update(p, mw, g, m, v, n, 1e-4f, 0.9f, 0.95f, 1e-8f, 0.0f, 1.0f, 1, 0));
    BENCH(h, "adamw 134M stochastic rounding", 30.0 * n, 0,
          h->gpu->adamw_update(p, mw, g, m, v, n, 1e-4f, 0.9f, 0.95f, 1e-8f, 0.0f, 1.0f, 1, 99));
    h_release(h);
}

// fwd FLOPs = 4 B NH T^2 HS (two matmuls), bwd = 2.5x fwd (five), halved when causal.
static void bench_attention(Harness *h, const char *label, int B, int T, int NH, int NKV, int HS, int causal,
                            double *fwd_s, double *bwd_s) {
    const int M = B * T;
    const size_t nqkv = (size_t)M * (NH + 2 * NKV) * HS, nout = (size_t)M * NH * HS;
    void *qkv = b_act(h, nqkv, 1.0f), *out = d_act(h, NULL, nout), *dout = b_act(h, nout, 1.0f);
    void *dqkv = d_act(h, NULL, nqkv);
    float *lse = d_f32(h, NULL, (size_t)B * NH * T);
    AttnShape s = {.B = B, .T = T, .NH = NH, .NKV = NKV, .HS = HS, .causal = causal, .seg = NULL};
    const double f = 4.0 * B * NH * (double)T * T * HS * (causal ? 0.5 : 1.0);
    char name[96];
    snprintf(name, sizeof name, "attention fwd %s", label);
    BENCH(h, name, 2.0 * (nqkv + nout), f, h->gpu->attention_forward(out, lse, qkv, &s));
    *fwd_s = h->rows[h->n_rows - 1].seconds;
    snprintf(name, sizeof name, "attention bwd %s", label);
    BENCH(h, name, 2.0 * (2 * nqkv + 2 * nout), 2.5 * f, h->gpu->attention_backward(dqkv, dout, qkv, out, lse, &s));
    *bwd_s = h->rows[h->n_rows - 1].seconds;
    h_release(h);
}

// A decode step's attention: one new row per sequence over a full cache of
// Tcap positions (bytes: the K and V rows read).
static void bench_decode(Harness *h, int B, int Tcap, int NH, int NKV, int HS) {
    const size_t KV = (size_t)NKV * HS, ncache = (size_t)B * Tcap * KV;
    void *kc = b_act(h, ncache, 1.0f), *vc = b_act(h, ncache, 1.0f);
    void *qkv = b_act(h, (size_t)B * (NH + 2 * NKV) * HS, 1.0f), *out = d_act(h, NULL, (size_t)B * NH * HS);
    int32_t *lens_h = xmalloc((size_t)B * sizeof(int32_t));
    for (int b = 0; b < B; b++) lens_h[b] = Tcap;
    int32_t *lens = d_i32(h, lens_h, B);
    free(lens_h);
    char name[96];
    snprintf(name, sizeof name, "attention_cached decode B%d ctx %d, %d/%d x %d", B, Tcap, NH, NKV, HS);
    BENCH(h, name, 2.0 * 2 * ncache, 4.0 * B * NH * (double)Tcap * HS,
          h->gpu->attention_cached(out, qkv, kc, vc, lens, B, 1, Tcap, NH, NKV, HS));
    h_release(h);
}

void run_timings(Harness *h, double *peak_gbs, double *peak_tflops) {
    printf("\n== timings ==\n");
    measure_ceilings(h, peak_gbs, peak_tflops);
    bench_matmuls(h);
    bench_rowwise(h);
    double f, b;
    bench_attention(h, "LLaMA B2 T2048 32x128 causal", 2, 2048, 32, 32, 128, 1, &f, &b);
    bench_attention(h, "CLIP B8 T577 16x64", 8, 577, 16, 16, 64, 0, &f, &b);
    bench_decode(h, 1, 4096, 32, 32, 128);
    bench_decode(h, 8, 2048, 32, 32, 128);
}

// Both head-size-128 configurations of kernels/cuda/cuda_attention.cu on the
// same inputs: the 64-row kernels (4 warps) and the 128-row ones (8 warps, Q
// in registers), switched with backend_cuda_set_flash_tiles.
void run_flash_bench(Harness *h, double peak_tflops) {
    printf("\n== flash attention, head size 128, T = 2048, B 4 x 32 heads: 64-row vs 128-row kernels ==\n");
    const int was = backend_cuda_set_flash_tiles(2);
    if (was < 0) {
        printf("flash bench: the backend cannot switch its flash kernels; skipped\n");
        return;
    }
    double flash_s[2][2];  // [causal][fwd, bwd] of the 128-row kernels
    for (int causal = 0; causal < 2; causal++) {
        double fs[2], bs[2];
        const int B = 4, T = 2048, NH = 32, HS = 128;
        const double f = 4.0 * B * NH * (double)T * T * HS * (causal ? 0.5 : 1.0);
        for (int tiles = 0; tiles < 2; tiles++) {
            char label[64];
            snprintf(label, sizeof label, "bench %s %s", causal ? "causal" : "bidirectional",
                     tiles ? "128-row" : "64-row");
            backend_cuda_set_flash_tiles(tiles ? 2 : 0);
            bench_attention(h, label, B, T, NH, NH, HS, causal, &fs[tiles], &bs[tiles]);
            const double tf_f = f / fs[tiles] * 1e-12, tf_b = 2.5 * f / bs[tiles] * 1e-12;
            const double tf_fb = 3.5 * f / (fs[tiles] + bs[tiles]) * 1e-12;
            printf("%-14s %-8s fwd %7.3f ms %6.1f TFLOP/s | bwd %7.3f ms %6.1f TFLOP/s | fwd+bwd %6.1f TFLOP/s = "
                   "%4.1f%% of the measured bf16 matmul rate (%.1f TFLOP/s)\n",
                   causal ? "causal" : "bidirectional", tiles ? "128-row" : "64-row", fs[tiles] * 1e3, tf_f,
                   bs[tiles] * 1e3, tf_b, tf_fb, peak_tflops > 0 ? 100.0 * tf_fb / peak_tflops : 0.0, peak_tflops);
        }
        flash_s[causal][0] = fs[1], flash_s[causal][1] = bs[1];
        printf("%-14s 128-row / 64-row speed: fwd %.2fx, bwd %.2fx, fwd+bwd %.2fx\n", causal ? "causal" : "bidirectional",
               fs[0] / fs[1], bs[0] / bs[1], (fs[0] + bs[0]) / (fs[1] + bs[1]));
    }
    backend_cuda_set_flash_tiles(was);
    // The same shapes through cuDNN's fused attention (attention_backend cudnn).
    Error err = {{0}};
    const Ops *cu = backend_attention(h->gpu, "cudnn", &err), *flash = h->gpu;
    if (!cu) {
        printf("cudnn attention: skipped: %s\n", err.msg);
        return;
    }
    h->gpu = cu;
    for (int causal = 0; causal < 2; causal++) {
        double fs, bs;
        bench_attention(h, causal ? "cudnn causal" : "cudnn bidirectional", 4, 2048, 32, 32, 128, causal, &fs, &bs);
        printf("%-14s cudnn fwd %7.3f ms (128-row flash/cudnn %.2fx) | bwd %7.3f ms (%.2fx) | fwd+bwd %.2fx\n",
               causal ? "causal" : "bidirectional", fs * 1e3, flash_s[causal][0] / fs, bs * 1e3,
               flash_s[causal][1] / bs, (flash_s[causal][0] + flash_s[causal][1]) / (fs + bs));
    }
    long ran = 0, fell_back = 0;
    backend_cudnn_counts(&ran, &fell_back);
    printf("cudnn attention calls: %ld ran on cuDNN, %ld went to the flash kernel\n", ran, fell_back);
    h->gpu = flash;
}
