// Emulator / device checks of bf16 parameter gradients (grad_dtype "bf16",
// the CUDA table ops->bf16_grads): every op that writes a parameter gradient
// (matmul dW and db, LayerNorm dw and db, RMSNorm dw, the embedding table),
// run twice into the same bf16 gradient (accumulation), against the fp32 CPU
// op run twice from the same starting gradient; the activation gradients they
// also write must stay bitwise those of the fp32 table. Then the ops only bf16
// gradients use: the fold into the fp32 accumulator, the sum of squares and
// AdamW reading bf16 gradients, each against what it must equal bitwise.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "tests/gpu/gpu_harness.h"
#include "tests/testlib.h"

// A bf16 gradient that started at g0 and took two additions: the error is
// one bf16 rounding per addition (2^-9 relative each) on top of the fp32
// op's, well inside the bf16 output tolerance.
#define TOL_GRAD_BF16 1e-2

static void check_table(Harness *h, const Ops *g16) {
    EXPECT(g16 && g16->grad_size == 2 && h->gpu->grad_size == 4, "bf16_grads table: grad_size %zu / fp32 table %zu",
           g16 ? g16->grad_size : 0, h->gpu->grad_size);
    EXPECT(g16 && g16->bf16_grads == g16 && g16->sum_squares_bf16_multi && g16->grad_accumulate,
           "bf16_grads table: points to itself and has the bf16-only ops");
    EXPECT(g16 && g16->matmul_forward == h->gpu->matmul_forward && g16->attention_backward == h->gpu->attention_backward &&
               g16->adamw_update_multi == h->gpu->adamw_update_multi,
           "bf16_grads table: the ops without parameter gradients are the fp32 table's");
    EXPECT(!h->cpu->bf16_grads && h->cpu->grad_size == 4, "the CPU backend has no bf16 gradients");
}

// dinp, dW, db of out[M,N] = inp[M,K] W[N,K]^T + b, twice into the same gradients.
static void check_matmul_grads(Harness *h, const Ops *g16, int M, int K, int N) {
    char op[64];
    snprintf(op, sizeof op, "bf16g matmul %dx%dx%d", M, K, N);
    float *dout = h_rand(h, (size_t)M * N, 1.0f), *inp = h_rand(h, (size_t)M * K, 1.0f);
    float *w = h_rand(h, (size_t)N * K, 0.2f), *dw = h_rand(h, (size_t)N * K, 0.5f), *db = h_rand(h, N, 0.5f);
    void *d_dout = d_act(h, dout, (size_t)M * N), *d_inp = d_act(h, inp, (size_t)M * K);
    void *d_w = d_act(h, w, (size_t)N * K);
    void *d_dw = d_act(h, dw, (size_t)N * K), *d_db = d_act(h, db, N);  // bf16 gradients, bf16-exact start
    void *dx16 = d_poison(h, (size_t)M * K * 2), *dx32 = d_poison(h, (size_t)M * K * 2);
    float *dw32 = d_f32(h, dw, (size_t)N * K), *db32 = d_f32(h, db, N);
    for (int r = 0; r < 2; r++) {
        g16->matmul_backward(dx16, d_dw, d_db, d_dout, d_inp, d_w, M, K, N);
        h->gpu->matmul_backward(dx32, dw32, db32, d_dout, d_inp, d_w, M, K, N);
        h->cpu->matmul_backward(NULL, dw, db, dout, inp, w, M, K, N);
    }
    float *got_dw = down_act(h, d_dw, (size_t)N * K), *got_db = down_act(h, d_db, N);
    h_check(h, op, "dW (bf16, x2)", got_dw, dw, (size_t)N * K, TOL_GRAD_BF16);
    h_check(h, op, "db (bf16, x2)", got_db, db, N, TOL_GRAD_BF16);
    float *a = down_act(h, dx16, (size_t)M * K), *b = down_act(h, dx32, (size_t)M * K);
    h_check_bitwise(h, "bf16g matmul dinp vs fp32 table", a, b, (size_t)M * K);
    free(dout), free(inp), free(w), free(dw), free(db), free(got_dw), free(got_db), free(a), free(b);
    h_release(h);
}

// LayerNorm (layernorm 1: dw, db) or RMSNorm (dw) over [M, C], twice.
static void check_norm_grads(Harness *h, const Ops *g16, int layernorm, int M, int C) {
    char op[64];
    snprintf(op, sizeof op, "bf16g %s %dx%d", layernorm ? "layernorm" : "rmsnorm", M, C);
    float *x = h_rand(h, (size_t)M * C, 1.0f), *dy = h_rand(h, (size_t)M * C, 1.0f), *w = h_rand(h, C, 1.0f);
    float *bias = h_rand(h, C, 0.1f), *dw = h_rand(h, C, 0.5f), *db = h_rand(h, C, 0.5f);
    float *mean = xcalloc((size_t)M, sizeof(float)), *rstd = xcalloc((size_t)M, sizeof(float));
    float *y = xcalloc((size_t)M * C, sizeof(float)), *dx = xcalloc((size_t)M * C, sizeof(float));
    // Statistics from the CPU forward, shared by all three backward runs.
    if (layernorm)
        h->cpu->layernorm_forward(y, mean, rstd, x, w, bias, M, C, 1e-5f);
    else
        h->cpu->rmsnorm_forward(y, rstd, x, w, M, C, 1e-6f);
    void *d_x = d_act(h, x, (size_t)M * C), *d_dy = d_act(h, dy, (size_t)M * C), *d_w = d_act(h, w, C);
    float *d_mean = d_f32(h, mean, M), *d_rstd = d_f32(h, rstd, M);
    void *d_dw = d_act(h, dw, C), *d_db = d_act(h, db, C);
    float *dw32 = d_f32(h, dw, C), *db32 = d_f32(h, db, C);
    void *dx16 = d_act(h, dx, (size_t)M * C), *dx32 = d_act(h, dx, (size_t)M * C);  // dinp += : start at 0
    for (int r = 0; r < 2; r++) {
        if (layernorm) {
            g16->layernorm_backward(dx16, d_dw, d_db, d_dy, d_x, d_w, d_mean, d_rstd, M, C);
            h->gpu->layernorm_backward(dx32, dw32, db32, d_dy, d_x, d_w, d_mean, d_rstd, M, C);
            h->cpu->layernorm_backward(dx, dw, db, dy, x, w, mean, rstd, M, C);
        } else {
            g16->rmsnorm_backward(dx16, d_dw, d_dy, d_x, d_w, d_rstd, M, C);
            h->gpu->rmsnorm_backward(dx32, dw32, d_dy, d_x, d_w, d_rstd, M, C);
            h->cpu->rmsnorm_backward(dx, dw, dy, x, w, rstd, M, C);
        }
    }
    float *got_dw = down_act(h, d_dw, C), *got_db = down_act(h, d_db, C);
    h_check(h, op, "dw (bf16, x2)", got_dw, dw, C, TOL_GRAD_BF16);
    if (layernorm) h_check(h, op, "db (bf16, x2)", got_db, db, C, TOL_GRAD_BF16);
    float *a = down_act(h, dx16, (size_t)M * C), *b = down_act(h, dx32, (size_t)M * C);
    h_check_bitwise(h, "bf16g norm dinp vs fp32 table", a, b, (size_t)M * C);
    free(x), free(dy), free(w), free(bias), free(dw), free(db), free(mean), free(rstd), free(y), free(dx);
    free(got_dw), free(got_db), free(a), free(b);
    h_release(h);
}

// dtable[V, C] += rows of dout: M ids over a small vocabulary (each row hit
// M/V times, some ids -1), M > 1024 so a row's occurrences span two chunks.
static void check_embedding_grads(Harness *h, const Ops *g16, int M, int C, int V) {
    char op[64];
    snprintf(op, sizeof op, "bf16g embedding M=%d C=%d V=%d", M, C, V);
    int32_t *ids = h_ids(h, (size_t)M, -1, V);
    float *dout = h_rand(h, (size_t)M * C, 1.0f), *table = h_rand(h, (size_t)V * C, 0.5f);
    void *d_dout = d_act(h, dout, (size_t)M * C), *d_table = d_act(h, table, (size_t)V * C);
    int32_t *d_ids = d_i32(h, ids, (size_t)M);
    for (int r = 0; r < 2; r++) {
        g16->embedding_backward(d_table, d_dout, d_ids, M, C, V);
        h->cpu->embedding_backward(table, dout, ids, M, C, V);
    }
    float *got = down_act(h, d_table, (size_t)V * C);
    h_check(h, op, "dtable (bf16, x2)", got, table, (size_t)V * C, TOL_GRAD_BF16);
    free(ids), free(dout), free(table), free(got);
    h_release(h);
}

// One token repeated over every row, each adding 2^-10 to a table row at 1.0:
// added one by one into bf16 every addition would round away (half an ulp at
// 1.0 is 2^-8), so the row must be summed in fp32 first. M = 1000 < 1024 (one
// chunk): each call adds 1000/1024 once, exactly representable: the result
// must equal the CPU's exactly (2.953125 after two calls).
static void check_embedding_frequent(Harness *h, const Ops *g16) {
    enum { M = 1000, C = 16, V = 3 };
    int32_t *ids = xmalloc(M * sizeof(int32_t));
    float *dout = xmalloc((size_t)M * C * sizeof(float)), *table = xcalloc((size_t)V * C, sizeof(float));
    for (int m = 0; m < M; m++) ids[m] = 1;
    for (int i = 0; i < M * C; i++) dout[i] = 1.0f / 1024.0f;
    for (int c = 0; c < C; c++) table[C + c] = 1.0f;
    void *d_dout = d_act(h, dout, (size_t)M * C), *d_table = d_act(h, table, (size_t)V * C);
    int32_t *d_ids = d_i32(h, ids, M);
    for (int r = 0; r < 2; r++) {
        g16->embedding_backward(d_table, d_dout, d_ids, M, C, V);
        h->cpu->embedding_backward(table, dout, ids, M, C, V);
    }
    float *got = down_act(h, d_table, (size_t)V * C);
    h_check_bitwise(h, "bf16g embedding, one frequent token", got, table, (size_t)V * C);
    free(ids), free(dout), free(table), free(got);
    h_release(h);
}

// acc += bf16 grad (exact fp32 add of the widened value), grad = 0.
static void check_grad_accumulate(Harness *h, const Ops *g16, size_t n) {
    float *acc = h_rand(h, n, 1.0f), *g = h_rand(h, n, 0.01f), *zero = xcalloc(n, sizeof(float));
    for (size_t i = 0; i < n; i++) acc[i] *= 1.0f + 1e-3f * (float)(i % 5);  // not bf16-exact
    float *d_acc = d_f32(h, acc, n);
    void *d_g = d_act(h, g, n);
    g16->grad_accumulate(d_acc, d_g, n);
    for (size_t i = 0; i < n; i++) acc[i] += g[i];
    float *got = down_f32(h, d_acc, n), *left = down_act(h, d_g, n);
    h_check_bitwise(h, "grad_accumulate acc += bf16", got, acc, n);
    h_check_bitwise(h, "grad_accumulate zeroes grad", left, zero, n);
    free(acc), free(g), free(zero), free(got), free(left);
    h_release(h);
}

// The norm of bf16 buffers equals the fp32 op's on the same (widened) values, bitwise.
static void check_sum_squares_bf16(Harness *h, const Ops *g16) {
    const size_t len[] = {1, 255, 0, 10007, 257};
    enum { COUNT = 5 };
    const void *d16[COUNT];
    const float *d32[COUNT];
    for (int k = 0; k < COUNT; k++) {
        float *v = h_rand(h, len[k] ? len[k] : 1, 0.3f);
        d16[k] = d_act(h, v, len[k] ? len[k] : 1);
        d32[k] = d_f32(h, v, len[k] ? len[k] : 1);
        free(v);
    }
    double a = g16->sum_squares_bf16_multi(d16, len, COUNT), b = h->gpu->sum_squares_multi(d32, len, COUNT);
    EXPECT(a == b && a > 0, "sum_squares_bf16_multi %.17g vs fp32 sum_squares_multi %.17g", a, b);
    if (h->verbose) printf("  %-28s %-22s %s\n", "sum_squares_bf16_multi", "vs fp32 op", a == b ? "bitwise" : "DIFFER");
    h_release(h);
}

// AdamW reading bf16 gradients = AdamW reading fp32 gradients of the same values, bitwise.
static void check_adamw_bf16(Harness *h, size_t n) {
    const AdamwGroup groups[2] = {{1e-3f, 0.1f}, {2e-3f, 0.0f}};
    float *master = h_rand(h, n, 0.5f), *grad = h_rand(h, n, 0.1f), *m0 = h_rand(h, n, 0.01f);
    float *v0 = h_rand(h, n, 0.03f);
    for (size_t i = 0; i < n; i++) v0[i] *= v0[i];
    void *dp[2];
    float *dmw[2], *dm[2], *dv[2];
    const void *dg[2] = {d_act(h, grad, n), d_f32(h, grad, n)};
    AdamwTensor t[2][2];
    for (int c = 0; c < 2; c++) {
        dp[c] = d_act(h, master, n);
        dmw[c] = d_f32(h, master, n), dm[c] = d_f32(h, m0, n), dv[c] = d_f32(h, v0, n);
        const size_t half = n / 2;
        for (int k = 0; k < 2; k++) {
            size_t o = k ? half : 0, len = k ? n - half : half;
            size_t gsz = c == 0 ? 2 : 4;
            t[c][k] = (AdamwTensor){.param = (char *)dp[c] + o * 2, .master = dmw[c] + o,
                                    .grad = (const float *)((const char *)dg[c] + o * gsz), .m = dm[c] + o,
                                    .v = dv[c] + o, .n = len, .group = k, .seed = k ? 99u : 0u,
                                    .grad_bf16 = c == 0};
        }
        h->gpu->adamw_update_multi(t[c], 2, groups, 2, 0.9f, 0.95f, 1e-8f, 0.7f, 4);
    }
    const char *what[4] = {"adamw bf16 grads: param", "adamw bf16 grads: master", "adamw bf16 grads: m",
                           "adamw bf16 grads: v"};
    for (int f = 0; f < 4; f++) {
        float *x = f == 0 ? down_act(h, dp[0], n) : down_f32(h, f == 1 ? dmw[0] : f == 2 ? dm[0] : dv[0], n);
        float *y = f == 0 ? down_act(h, dp[1], n) : down_f32(h, f == 1 ? dmw[1] : f == 2 ? dm[1] : dv[1], n);
        h_check_bitwise(h, what[f], x, y, n);
        free(x), free(y);
    }
    free(master), free(grad), free(m0), free(v0);
    h_release(h);
}

void run_bf16grad_checks(Harness *h, int large) {
    const Ops *g16 = h->gpu->bf16_grads;
    check_table(h, g16);
    if (!g16) return;
    check_matmul_grads(h, g16, 40, 64, 48);
    check_matmul_grads(h, g16, 67, 45, 33);  // odd shapes: cuBLASLt or its fallback, bf16 C/D
    check_norm_grads(h, g16, 1, 77, 37);
    check_norm_grads(h, g16, 1, 33, 256);
    check_norm_grads(h, g16, 0, 77, 37);
    check_norm_grads(h, g16, 0, 300, 512);
    check_embedding_grads(h, g16, 1500, 72, 50);
    check_embedding_grads(h, g16, 300, 1100, 1000);  // columns over one block's 1024
    check_embedding_frequent(h, g16);
    check_grad_accumulate(h, g16, 10007);
    check_sum_squares_bf16(h, g16);
    check_adamw_bf16(h, 10007);
    if (large) {
        check_matmul_grads(h, g16, 2048, 4096, 1024);
        check_embedding_grads(h, g16, 4096, 2048, 32000);  // a LLaMA vocabulary, 2 column blocks
        check_grad_accumulate(h, g16, (size_t)1 << 24);
    }
}
