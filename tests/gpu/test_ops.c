// Every op of the CUDA table against the CPU op, at realistic and odd shapes
// (sizes that are not multiples of any tile, unaligned pointers for the scalar
// paths), on random inputs; then the timing table and the flash-attention
// benchmark (gpu_bench.c). Run by tests/gpu/run.sh on a machine with a GPU:
//   test_gpu_ops [--checks-only | --bench-only | --probe] [-v]
// Exit 0 when every check passed; without a usable GPU it says so and exits 0
// (--probe: only loads the backend; exits 77 without a GPU).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "kernels/backend.h"
#include "tests/gpu/gpu_harness.h"
#include "tests/testlib.h"

#define A (h->gpu->act_size)

// ---- linear -------------------------------------------------------------------------------

// w_off > 0 places the weight at an element offset (parameters sit at
// arbitrary offsets in their module's allocation): cuBLASLt must be told.
static void check_matmul(Harness *h, int M, int K, int N, int with_bias, int w_off) {
    char op[64];
    snprintf(op, sizeof op, "matmul %dx%dx%d%s%s", M, K, N, with_bias ? " +bias" : "", w_off ? " unaligned" : "");
    float *x = h_rand(h, (size_t)M * K, 1.0f), *w = h_rand(h, (size_t)N * K, 0.05f);
    float *b = with_bias ? h_rand(h, N, 0.5f) : NULL;
    float *out_c = xmalloc((size_t)M * N * sizeof(float));
    h->cpu->matmul_forward(out_c, x, w, b, M, K, N);
    void *dx = d_act(h, x, (size_t)M * K);
    char *dw_base = d_act(h, NULL, (size_t)N * K + w_off);
    void *dw = dw_base + (size_t)w_off * A;
    h->gpu->upload_act(dw, w, (size_t)N * K);
    void *db = NULL;  // at the same offset: an unaligned bias takes the unfused path
    if (b) {
        db = (char *)d_act(h, NULL, (size_t)N + w_off) + (size_t)w_off * A;
        h->gpu->upload_act(db, b, N);
    }
    void *dout = d_poison(h, (size_t)M * N * A);
    h->gpu->matmul_forward(dout, dx, dw, db, M, K, N);
    float *out_g = down_act(h, dout, (size_t)M * N);
    h_check(h, op, "out", out_g, out_c, (size_t)M * N, TOL_BF16);

    // backward: dinp written, dweight/dbias accumulated onto nonzero values
    float *dy = h_rand(h, (size_t)M * N, 1.0f);
    float *dw0 = h_rand(h, (size_t)N * K, 0.1f), *db0 = h_rand(h, N, 0.1f);
    float *dinp_c = xmalloc((size_t)M * K * sizeof(float));
    float *dw_c = h_copy(dw0, (size_t)N * K), *db_c = h_copy(db0, N);
    h->cpu->matmul_backward(dinp_c, dw_c, with_bias ? db_c : NULL, dy, x, w, M, K, N);
    void *ddy = d_act(h, dy, (size_t)M * N);
    void *ddinp = d_poison(h, (size_t)M * K * A);
    float *ddw = d_f32(h, dw0, (size_t)N * K), *ddb = d_f32(h, db0, N);
    h->gpu->matmul_backward(ddinp, ddw, with_bias ? ddb : NULL, ddy, dx, dw, M, K, N);
    float *dinp_g = down_act(h, ddinp, (size_t)M * K), *dw_g = down_f32(h, ddw, (size_t)N * K);
    h_check(h, op, "dinp", dinp_g, dinp_c, (size_t)M * K, TOL_BF16);
    h_check(h, op, "dweight (+=)", dw_g, dw_c, (size_t)N * K, TOL_F32);
    if (with_bias) {
        float *db_g = down_f32(h, ddb, N);
        h_check(h, op, "dbias (+=)", db_g, db_c, N, TOL_F32);
        free(db_g);
    }
    // frozen weights: only dinp; then only dweight (dinp NULL), run twice: deterministic
    h_poison(h, ddinp, (size_t)M * K * A);
    h->gpu->matmul_backward(ddinp, NULL, NULL, ddy, dx, dw, M, K, N);
    float *dinp_g2 = down_act(h, ddinp, (size_t)M * K);
    h_check(h, op, "dinp (frozen weight)", dinp_g2, dinp_c, (size_t)M * K, TOL_BF16);
    h->gpu->upload(ddw, dw0, (size_t)N * K * sizeof(float));
    h->gpu->matmul_backward(NULL, ddw, NULL, ddy, dx, dw, M, K, N);
    float *dw_g2 = down_f32(h, ddw, (size_t)N * K);
    h_check_bitwise(h, op, dw_g2, dw_g, (size_t)N * K);
    free(x), free(w), free(b), free(out_c), free(out_g), free(dy), free(dw0), free(db0), free(dinp_c);
    free(dw_c), free(db_c), free(dinp_g), free(dw_g), free(dinp_g2), free(dw_g2);
    h_release(h);
}

// ---- normalization -----------------------------------------------------------------------

static void check_norm(Harness *h, int layernorm, int M, int C) {
    char op[64];
    snprintf(op, sizeof op, "%s %dx%d", layernorm ? "layernorm" : "rmsnorm", M, C);
    const size_t n = (size_t)M * C;
    float *x = h_rand(h, n, 1.0f);
    for (size_t i = 0; i < n; i++) x[i] += 0.3f;  // a nonzero mean to subtract
    h_round_bf16(x, n);
    float *w = h_rand(h, C, 1.0f), *b = h_rand(h, C, 0.5f);
    float *y_c = xmalloc(n * sizeof(float)), *mean_c = xmalloc(M * sizeof(float)), *rstd_c = xmalloc(M * sizeof(float));
    void *dx = d_act(h, x, n), *dwt = d_act(h, w, C), *dbs = d_act(h, b, C);
    void *dy_out = d_poison(h, n * A);
    float *dmean = d_poison(h, M * sizeof(float)), *drstd = d_poison(h, M * sizeof(float));
    if (layernorm) {
        h->cpu->layernorm_forward(y_c, mean_c, rstd_c, x, w, b, M, C, 1e-5f);
        h->gpu->layernorm_forward(dy_out, dmean, drstd, dx, dwt, dbs, M, C, 1e-5f);
    } else {
        h->cpu->rmsnorm_forward(y_c, rstd_c, x, w, M, C, 1e-6f);
        h->gpu->rmsnorm_forward(dy_out, drstd, dx, dwt, M, C, 1e-6f);
    }
    float *y_g = down_act(h, dy_out, n), *rstd_g = down_f32(h, drstd, M);
    h_check(h, op, "out", y_g, y_c, n, TOL_BF16);
    h_check(h, op, "rstd", rstd_g, rstd_c, M, TOL_F32);
    if (layernorm) {
        float *mean_g = down_f32(h, dmean, M);
        h_check(h, op, "mean", mean_g, mean_c, M, TOL_F32);
        free(mean_g);
    }
    // backward from the reference's statistics, onto nonzero gradients
    float *dy = h_rand(h, n, 1.0f), *dinp0 = h_rand(h, n, 1.0f);
    float *dw0 = h_rand(h, C, 0.1f), *db0 = h_rand(h, C, 0.1f);
    float *dinp_c = h_copy(dinp0, n), *dw_c = h_copy(dw0, C), *db_c = h_copy(db0, C);
    void *ddy = d_act(h, dy, n), *ddinp = d_act(h, dinp0, n);
    float *ddw = d_f32(h, dw0, C), *ddb = d_f32(h, db0, C);
    h->gpu->upload(drstd, rstd_c, M * sizeof(float));
    if (layernorm) {
        h->gpu->upload(dmean, mean_c, M * sizeof(float));
        h->cpu->layernorm_backward(dinp_c, dw_c, db_c, dy, x, w, mean_c, rstd_c, M, C);
        h->gpu->layernorm_backward(ddinp, ddw, ddb, ddy, dx, dwt, dmean, drstd, M, C);
    } else {
        h->cpu->rmsnorm_backward(dinp_c, dw_c, dy, x, w, rstd_c, M, C);
        h->gpu->rmsnorm_backward(ddinp, ddw, ddy, dx, dwt, drstd, M, C);
    }
    float *dinp_g = down_act(h, ddinp, n), *dw_g = down_f32(h, ddw, C), *db_g = down_f32(h, ddb, C);
    h_check(h, op, "dinp (+=)", dinp_g, dinp_c, n, TOL_BF16);
    h_check(h, op, "dweight (+=)", dw_g, dw_c, C, TOL_F32);
    if (layernorm) h_check(h, op, "dbias (+=)", db_g, db_c, C, TOL_F32);
    // frozen: dinp NULL leaves only the weight gradients, bitwise the same
    h->gpu->upload(ddw, dw0, C * sizeof(float));
    if (layernorm)
        h->gpu->layernorm_backward(NULL, ddw, NULL, ddy, dx, dwt, dmean, drstd, M, C);
    else
        h->gpu->rmsnorm_backward(NULL, ddw, ddy, dx, dwt, drstd, M, C);
    float *dw_g2 = down_f32(h, ddw, C);
    h_check_bitwise(h, op, dw_g2, dw_g, C);
    free(x), free(w), free(b), free(y_c), free(mean_c), free(rstd_c), free(y_g), free(rstd_g), free(dy);
    free(dinp0), free(dw0), free(db0), free(dinp_c), free(dw_c), free(db_c), free(dinp_g), free(dw_g), free(db_g);
    free(dw_g2);
    h_release(h);
}

// ---- elementwise -------------------------------------------------------------------------

typedef void (*Map1)(void *, const void *, size_t);
typedef void (*Map2)(void *, const void *, const void *, size_t);

// off > 0: every pointer at an odd element offset (the scalar path; d_offset).
static void check_map2(Harness *h, const char *name, Map2 cpu_f, Map2 gpu_f, size_t n, int off, int alias_out_b) {
    char op[64];
    snprintf(op, sizeof op, "%s n=%zu%s", name, n, off ? " unaligned" : "");
    float *a = h_rand(h, n, 2.0f), *b = h_rand(h, n, 1.0f), *c = xmalloc(n * sizeof(float));
    cpu_f(c, a, b, n);
    void *da = d_offset(h, d_act(h, NULL, n + off), off), *db = d_offset(h, d_act(h, NULL, n + off), off);
    void *dc = d_offset(h, d_poison(h, (n + off) * A), off);
    h->gpu->upload_act(da, a, n);
    h->gpu->upload_act(db, b, n);
    gpu_f(dc, da, db, n);
    float *g = down_act(h, dc, n);
    h_check(h, op, "out", g, c, n, TOL_BF16);
    free(g);
    // in place as the model calls it: out = a (residual, accumulate) or out = b (dinp = dout)
    void *dst = alias_out_b ? db : da;
    gpu_f(dst, da, db, n);
    g = down_act(h, dst, n);
    h_check(h, op, alias_out_b ? "out aliasing dout" : "out aliasing a", g, c, n, TOL_BF16);
    free(a), free(b), free(c), free(g);
    h_release(h);
}

static void check_map1(Harness *h, const char *name, Map1 cpu_f, Map1 gpu_f, size_t n, int off) {
    char op[64];
    snprintf(op, sizeof op, "%s n=%zu%s", name, n, off ? " unaligned" : "");
    float *a = h_rand(h, n, 2.0f), *c = xmalloc(n * sizeof(float));
    cpu_f(c, a, n);
    void *da = d_offset(h, d_act(h, NULL, n + off), off), *dc = d_offset(h, d_poison(h, (n + off) * A), off);
    h->gpu->upload_act(da, a, n);
    gpu_f(dc, da, n);
    float *g = down_act(h, dc, n);
    h_check(h, op, "out", g, c, n, TOL_BF16);
    free(g);
    gpu_f(da, da, n);  // in place (the vision MLP does this)
    g = down_act(h, da, n);
    h_check(h, op, "in place", g, c, n, TOL_BF16);
    free(a), free(c), free(g);
    h_release(h);
}

// accumulate(dst, src) as a two-input map: out = a + b with out aliasing a.
static void cpu_acc2(void *o, const void *a, const void *b, size_t n) {
    const float *x = a, *y = b;
    float *z = o;
    for (size_t i = 0; i < n; i++) z[i] = x[i] + y[i];
}

static void check_elementwise(Harness *h, size_t n, int off) {
    const Ops *c = h->cpu, *g = h->gpu;
    check_map2(h, "residual", c->residual_forward, g->residual_forward, n, off, 0);
    check_map2(h, "gelu_backward", c->gelu_backward, g->gelu_backward, n, off, 1);
    check_map2(h, "quick_gelu_backward", c->quick_gelu_backward, g->quick_gelu_backward, n, off, 1);
    check_map1(h, "gelu", c->gelu_forward, g->gelu_forward, n, off);
    check_map1(h, "quick_gelu", c->quick_gelu_forward, g->quick_gelu_forward, n, off);
    // accumulate: dst += src
    float *a = h_rand(h, n, 1.0f), *b = h_rand(h, n, 1.0f), *ref = xmalloc(n * sizeof(float));
    cpu_acc2(ref, a, b, n);
    void *da = d_offset(h, d_act(h, NULL, n + off), off), *db = d_offset(h, d_act(h, NULL, n + off), off);
    g->upload_act(da, a, n);
    g->upload_act(db, b, n);
    g->accumulate(da, db, n);
    float *got = down_act(h, da, n);
    char op[64];
    snprintf(op, sizeof op, "accumulate n=%zu%s", n, off ? " unaligned" : "");
    h_check(h, op, "dst", got, ref, n, TOL_BF16);
    free(a), free(b), free(ref), free(got);
    h_release(h);
}

static void check_swiglu(Harness *h, int M, int FF) {
    char op[64];
    snprintf(op, sizeof op, "swiglu %dx%d", M, FF);
    const size_t n = (size_t)M * FF;
    float *gu = h_rand(h, 2 * n, 1.5f), *o_c = xmalloc(n * sizeof(float));
    h->cpu->swiglu_forward(o_c, gu, M, FF);
    void *dgu = d_act(h, gu, 2 * n), *dout = d_poison(h, n * A);
    h->gpu->swiglu_forward(dout, dgu, M, FF);
    float *o_g = down_act(h, dout, n);
    h_check(h, op, "out", o_g, o_c, n, TOL_BF16);
    float *dy = h_rand(h, n, 1.0f), *dgu_c = xmalloc(2 * n * sizeof(float));
    h->cpu->swiglu_backward(dgu_c, dy, gu, M, FF);
    void *ddy = d_act(h, dy, n), *ddgu = d_poison(h, 2 * n * A);
    h->gpu->swiglu_backward(ddgu, ddy, dgu, M, FF);
    float *dgu_g = down_act(h, ddgu, 2 * n);
    h_check(h, op, "dgateup", dgu_g, dgu_c, 2 * n, TOL_BF16);
    free(gu), free(o_c), free(o_g), free(dy), free(dgu_c), free(dgu_g);
    h_release(h);
}

// RoPE with theta's frequencies (rope_forward/backward), or with the table
// given (rope_freq_forward/backward: the scaled RoPE of Llama-3 and linear).
static void check_rope_with(Harness *h, int M, int NH, int NKV, int HS, float theta, const float *table) {
    char op[80];
    snprintf(op, sizeof op, "%s M=%d %d/%d heads HS=%d", table ? "rope_freq" : "rope", M, NH, NKV, HS);
    const size_t n = (size_t)M * (NH + 2 * NKV) * HS;
    int32_t *pos = h_ids(h, M, 0, table ? 8192 : 4096);
    void *dpos = d_i32(h, pos, M);
    float *dtable = NULL;
    if (table) {
        dtable = h->gpu->alloc((size_t)(HS / 2) * sizeof(float));
        h->gpu->upload(dtable, table, (size_t)(HS / 2) * sizeof(float));
    }
    for (int dir = 0; dir < 2; dir++) {
        float *x = h_rand(h, n, 1.0f), *ref = h_copy(x, n);
        void *dx = d_act(h, x, n);
        if (table && dir == 0) {
            h->cpu->rope_freq_forward(ref, pos, table, M, NH, NKV, HS);
            h->gpu->rope_freq_forward(dx, dpos, dtable, M, NH, NKV, HS);
        } else if (table) {
            h->cpu->rope_freq_backward(ref, pos, table, M, NH, NKV, HS);
            h->gpu->rope_freq_backward(dx, dpos, dtable, M, NH, NKV, HS);
        } else if (dir == 0) {
            h->cpu->rope_forward(ref, pos, M, NH, NKV, HS, theta);
            h->gpu->rope_forward(dx, dpos, M, NH, NKV, HS, theta);
        } else {
            h->cpu->rope_backward(ref, pos, M, NH, NKV, HS, theta);
            h->gpu->rope_backward(dx, dpos, M, NH, NKV, HS, theta);
        }
        float *g = down_act(h, dx, n);
        h_check(h, op, dir == 0 ? "forward" : "backward", g, ref, n, TOL_BF16);
        free(x), free(ref), free(g);
    }
    if (dtable) h->gpu->free(dtable);
    free(pos);
    h_release(h);
}

static void check_rope(Harness *h, int M, int NH, int NKV, int HS, float theta) {
    check_rope_with(h, M, NH, NKV, HS, theta, NULL);
}

// The 16-byte RoPE path (aligned buffer, half % 8 == 0) against the scalar one
// (the same data one element off, so not 16-byte aligned): the arithmetic per
// element is the same, so the bits must be, forward and backward.
static void check_rope_paths(Harness *h, int M, int NH, int NKV, int HS, float theta) {
    char op[80];
    snprintf(op, sizeof op, "rope M=%d HS=%d vector vs scalar", M, HS);
    const size_t n = (size_t)M * (NH + 2 * NKV) * HS;
    int32_t *pos = h_ids(h, M, 0, 4096);
    void *dpos = d_i32(h, pos, M);
    float *x = h_rand(h, n, 1.0f);
    void *dv = d_act(h, x, n), *ds = d_offset(h, d_act(h, NULL, n + 1), 1);
    h->gpu->upload_act(ds, x, n);
    for (int dir = 0; dir < 2; dir++) {
        if (dir == 0) {
            h->gpu->rope_forward(dv, dpos, M, NH, NKV, HS, theta);
            h->gpu->rope_forward(ds, dpos, M, NH, NKV, HS, theta);
        } else {
            h->gpu->rope_backward(dv, dpos, M, NH, NKV, HS, theta);
            h->gpu->rope_backward(ds, dpos, M, NH, NKV, HS, theta);
        }
        float *gv = down_act(h, dv, n), *gs = down_act(h, ds, n);
        h_check_bitwise(h, op, gv, gs, n);
        free(gv), free(gs);
    }
    free(x), free(pos);
    h_release(h);
}

// ---- embeddings and row moves ------------------------------------------------------------

static void check_embedding(Harness *h, int M, int C, int V) {
    char op[64];
    snprintf(op, sizeof op, "embedding M=%d C=%d V=%d", M, C, V);
    float *table = h_rand(h, (size_t)V * C, 1.0f);
    int32_t *ids = h_ids(h, M, 0, V);
    for (int m = 0; m < M; m += 7) ids[m] = -1;      // image positions
    for (int m = 3; m < M; m += 5) ids[m] = ids[1];  // repeated tokens
    float *out_c = xmalloc((size_t)M * C * sizeof(float));
    h->cpu->embedding_forward(out_c, ids, table, M, C);
    void *dtable = d_act(h, table, (size_t)V * C), *dids = d_i32(h, ids, M), *dout = d_poison(h, (size_t)M * C * A);
    h->gpu->embedding_forward(dout, dids, dtable, M, C);
    float *out_g = down_act(h, dout, (size_t)M * C);
    h_check(h, op, "out", out_g, out_c, (size_t)M * C, TOL_BF16);
    float *dy = h_rand(h, (size_t)M * C, 1.0f), *dt0 = h_rand(h, (size_t)V * C, 0.1f);
    float *dt_c = h_copy(dt0, (size_t)V * C);
    h->cpu->embedding_backward(dt_c, dy, ids, M, C, V);
    void *ddy = d_act(h, dy, (size_t)M * C);
    float *ddt = d_f32(h, dt0, (size_t)V * C);
    h->gpu->embedding_backward(ddt, ddy, dids, M, C, V);
    float *dt_g = down_f32(h, ddt, (size_t)V * C);
    h_check(h, op, "dtable (+=)", dt_g, dt_c, (size_t)V * C, TOL_F32);
    h->gpu->upload(ddt, dt0, (size_t)V * C * sizeof(float));
    h->gpu->embedding_backward(ddt, ddy, dids, M, C, V);
    float *dt_g2 = down_f32(h, ddt, (size_t)V * C);
    h_check_bitwise(h, op, dt_g2, dt_g, (size_t)V * C);
    free(table), free(ids), free(out_c), free(out_g), free(dy), free(dt0), free(dt_c), free(dt_g), free(dt_g2);
    h_release(h);
}

static void check_rows(Harness *h, int R, int n, int C) {
    char op[64];
    snprintf(op, sizeof op, "gather/scatter rows %d of %d, C=%d", n, R, C);
    float *src = h_rand(h, (size_t)R * C, 1.0f), *small = h_rand(h, (size_t)n * C, 1.0f);
    int32_t *perm = xmalloc((size_t)R * sizeof(int32_t));
    for (int i = 0; i < R; i++) perm[i] = i;
    for (int i = R - 1; i > 0; i--) {  // distinct rows for the scatter
        int j = (int)rng_below(&h->rng, (uint64_t)i + 1), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    float *g_c = xmalloc((size_t)n * C * sizeof(float)), *s_c = h_copy(src, (size_t)R * C);
    h->cpu->gather_rows(g_c, src, perm, n, C);
    h->cpu->scatter_rows(s_c, small, perm, n, C);
    void *dsrc = d_act(h, src, (size_t)R * C), *dsmall = d_act(h, small, (size_t)n * C), *drows = d_i32(h, perm, n);
    void *dg = d_poison(h, (size_t)n * C * A);
    h->gpu->gather_rows(dg, dsrc, drows, n, C);
    h->gpu->scatter_rows(dsrc, dsmall, drows, n, C);
    float *g_g = down_act(h, dg, (size_t)n * C), *s_g = down_act(h, dsrc, (size_t)R * C);
    h_check(h, op, "gather", g_g, g_c, (size_t)n * C, TOL_BF16);
    h_check(h, op, "scatter", s_g, s_c, (size_t)R * C, TOL_BF16);
    free(src), free(small), free(perm), free(g_c), free(s_c), free(g_g), free(s_g);
    h_release(h);
}

static void check_vision_input(Harness *h, int N, int S, int P, int D) {
    char op[64];
    snprintf(op, sizeof op, "patchify/vision_embed N=%d S=%d P=%d", N, S, P);
    const int G = S / P, NP = G * G, F = 3 * P * P;
    float *pix = h_rand(h, (size_t)N * 3 * S * S, 1.0f), *pat_c = xmalloc((size_t)N * NP * F * sizeof(float));
    h->cpu->patchify(pat_c, pix, N, S, P);
    void *dpix = d_act(h, pix, (size_t)N * 3 * S * S), *dpat = d_poison(h, (size_t)N * NP * F * A);
    h->gpu->patchify(dpat, dpix, N, S, P);
    float *pat_g = down_act(h, dpat, (size_t)N * NP * F);
    h_check(h, op, "patches", pat_g, pat_c, (size_t)N * NP * F, TOL_BF16);
    float *pe = h_rand(h, (size_t)N * NP * D, 1.0f), *cls = h_rand(h, D, 1.0f), *pos = h_rand(h, (size_t)(NP + 1) * D, 1.0f);
    float *ve_c = xmalloc((size_t)N * (NP + 1) * D * sizeof(float));
    h->cpu->vision_embed(ve_c, pe, cls, pos, N, NP, D);
    void *dpe = d_act(h, pe, (size_t)N * NP * D), *dcls = d_act(h, cls, D), *dpos = d_act(h, pos, (size_t)(NP + 1) * D);
    void *dve = d_poison(h, (size_t)N * (NP + 1) * D * A);
    h->gpu->vision_embed(dve, dpe, dcls, dpos, N, NP, D);
    float *ve_g = down_act(h, dve, (size_t)N * (NP + 1) * D);
    h_check(h, op, "vision_embed", ve_g, ve_c, (size_t)N * (NP + 1) * D, TOL_BF16);
    free(pix), free(pat_c), free(pat_g), free(pe), free(cls), free(pos), free(ve_c), free(ve_g);
    h_release(h);
}

// ---- loss and optimizer ------------------------------------------------------------------

static void check_cross_entropy(Harness *h, int M, int V) {
    char op[64];
    snprintf(op, sizeof op, "cross_entropy M=%d V=%d", M, V);
    const size_t n = (size_t)M * V;
    float *x = h_rand(h, n, 2.0f);
    int32_t *t = h_ids(h, M, 0, V);
    for (int m = 0; m < M; m += 5) t[m] = -1;
    const float scale = 1.0f / (float)M;
    float *loss_c = xmalloc(M * sizeof(float)), *dx_c = xmalloc(n * sizeof(float));
    h->cpu->cross_entropy(loss_c, dx_c, x, t, scale, M, V);
    void *dx = d_act(h, x, n), *dt = d_i32(h, t, M);
    float *dl = d_poison(h, M * sizeof(float));
    h->gpu->cross_entropy(dl, NULL, dx, dt, 0.0f, M, V);  // loss only (forward)
    float *loss_g = down_f32(h, dl, M);
    h_check(h, op, "losses", loss_g, loss_c, M, TOL_F32);
    free(loss_g);
    void *dd = d_poison(h, n * A);  // separate dlogits
    h_poison(h, dl, M * sizeof(float));
    h->gpu->cross_entropy(dl, dd, dx, dt, scale, M, V);
    float *dd_g = down_act(h, dd, n);
    h_check(h, op, "dlogits", dd_g, dx_c, n, TOL_BF16);
    free(dd_g);
    h->gpu->cross_entropy(dl, dx, dx, dt, scale, M, V);  // in place, as in training
    dd_g = down_act(h, dx, n);
    loss_g = down_f32(h, dl, M);
    h_check(h, op, "dlogits in place", dd_g, dx_c, n, TOL_BF16);
    h_check(h, op, "losses (in place)", loss_g, loss_c, M, TOL_F32);
    free(x), free(t), free(loss_c), free(dx_c), free(loss_g), free(dd_g);
    h_release(h);
}

// LoRA's ops: dropout must drop exactly the CPU's elements (the mask is a
// shared pure function), also in place; the column-block add and copy must
// touch only their block of the wider matrix.
static void check_lora_ops(Harness *h, int M, int ld, int col0, int N) {
    char op[64];
    const size_t n = (size_t)M * ld;
    float *x = h_rand(h, n, 1.0f), *ref = xmalloc(n * sizeof(float));
    h->cpu->dropout(ref, x, n, 0.3f, 77);
    void *dx = d_act(h, x, n), *dout = d_poison(h, n * A);
    h->gpu->dropout(dout, dx, n, 0.3f, 77);
    float *got = down_act(h, dout, n);
    snprintf(op, sizeof op, "dropout n=%zu", n);
    h_check(h, op, "out", got, ref, n, TOL_BF16);
    size_t mask_diff = 0;
    for (size_t i = 0; i < n; i++) mask_diff += (got[i] == 0.0f) != (ref[i] == 0.0f);
    EXPECT(mask_diff == 0, "%s: %zu elements dropped on one backend only", op, mask_diff);
    free(got);
    h->gpu->dropout(dx, dx, n, 0.3f, 77);  // in place, as the backward uses it
    got = down_act(h, dx, n);
    h_check(h, op, "in place", got, ref, n, TOL_BF16);
    free(got);
    // add_columns: dst[M, ld] += scale * src[M, N] in columns [col0, col0 + N)
    float *dst = h_rand(h, n, 1.0f), *src = h_rand(h, (size_t)M * N, 1.0f), *want = h_copy(dst, n);
    h->cpu->add_columns(want, ld, col0, src, M, N, 0.75f);
    void *ddst = d_act(h, dst, n), *dsrc = d_act(h, src, (size_t)M * N);
    h->gpu->add_columns(ddst, ld, col0, dsrc, M, N, 0.75f);
    got = down_act(h, ddst, n);
    snprintf(op, sizeof op, "add_columns %dx%d in %d at %d", M, N, ld, col0);
    h_check(h, op, "dst", got, want, n, TOL_BF16);
    free(got);
    // copy_columns: out[M, N] = scale * dst[M, ld][:, col0:col0+N]
    float *cut = xmalloc((size_t)M * N * sizeof(float));
    h->cpu->copy_columns(cut, dst, ld, col0, M, N, 2.0f);
    void *dcut = d_poison(h, (size_t)M * N * A), *dsrc2 = d_act(h, dst, n);
    h->gpu->copy_columns(dcut, dsrc2, ld, col0, M, N, 2.0f);
    got = down_act(h, dcut, (size_t)M * N);
    snprintf(op, sizeof op, "copy_columns %dx%d of %d at %d", M, N, ld, col0);
    h_check(h, op, "out", got, cut, (size_t)M * N, TOL_BF16);
    free(got), free(cut), free(x), free(ref), free(dst), free(src), free(want);
    h_release(h);
}

static void check_sum_squares(Harness *h, size_t n) {
    char op[64];
    snprintf(op, sizeof op, "sum_squares n=%zu", n);
    float *g = h_rand(h, n, 1e-2f);
    double c = h->cpu->sum_squares(g, n);
    float *dg = d_f32(h, g, n);
    double a = h->gpu->sum_squares(dg, n), b = h->gpu->sum_squares(dg, n);
    double err = fabs(a - c) / c;
    EXPECT(err < 1e-10 && a == b, "%s: rel error %.3e, runs %s", op, err, a == b ? "equal" : "differ");
    if (h->verbose || !(err < 1e-10)) printf("  %-28s %-22s rel err %.3e\n", op, "sum", err);
    free(g);
    h_release(h);
}

static void check_adamw(Harness *h, size_t n, uint32_t seed) {
    char op[64];
    snprintf(op, sizeof op, "adamw n=%zu seed=%u", n, seed);
    float *master = h_rand(h, n, 0.5f);
    for (size_t i = 0; i < n; i++) master[i] *= 1.0f + 1e-3f * (float)(i % 7);  // not bf16-exact
    float *param = h_copy(master, n);
    h_round_bf16(param, n);
    float *grad = h_rand(h, n, 0.1f), *m0 = h_rand(h, n, 0.01f), *v0 = h_rand(h, n, 0.03f);
    for (size_t i = 0; i < n; i++) v0[i] *= v0[i];
    float *p_c = h_copy(master, n), *m_c = h_copy(m0, n), *v_c = h_copy(v0, n);
    h->cpu->adamw_update(p_c, NULL, grad, m_c, v_c, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.7f, 3, seed);
    void *dp = d_act(h, param, n);
    float *dm = d_f32(h, master, n), *dg = d_f32(h, grad, n), *dm1 = d_f32(h, m0, n), *dv = d_f32(h, v0, n);
    h->gpu->adamw_update(dp, dm, dg, dm1, dv, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.7f, 3, seed);
    float *p_g = down_act(h, dp, n), *mw_g = down_f32(h, dm, n), *m_g = down_f32(h, dm1, n), *v_g = down_f32(h, dv, n);
    h_check(h, op, "master", mw_g, p_c, n, TOL_F32);
    h_check(h, op, "m", m_g, m_c, n, TOL_F32);
    h_check(h, op, "v", v_g, v_c, n, TOL_F32);
    h_check(h, op, "bf16 param", p_g, p_c, n, TOL_BF16);
    free(master), free(param), free(grad), free(m0), free(v0), free(p_c), free(m_c), free(v_c);
    free(p_g), free(mw_g), free(m_g), free(v_g);
    h_release(h);
}

// Stochastic rounding is unbiased: with lr = 0 the master stays 1 + 0.3 ulp,
// and about 30% of the bf16 copies must round up (0% with round-to-nearest).
static void check_stochastic_rounding(Harness *h, size_t n) {
    const float ulp = 1.0f / 128.0f, x = 1.0f + 0.3f * ulp;
    float *master = xmalloc(n * sizeof(float)), *zeros = xcalloc(n, sizeof(float));
    for (size_t i = 0; i < n; i++) master[i] = x;
    void *dp = d_act(h, master, n);
    float *dm = d_f32(h, master, n), *dg = d_f32(h, zeros, n), *dm1 = d_f32(h, zeros, n), *dv = d_f32(h, zeros, n);
    h->gpu->adamw_update(dp, dm, dg, dm1, dv, n, 0.0f, 0.9f, 0.95f, 1e-8f, 0.0f, 1.0f, 1, 12345u);
    float *p = down_act(h, dp, n);
    size_t up = 0, other = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == 1.0f + ulp)
            up++;
        else if (p[i] != 1.0f)
            other++;
    }
    double frac = (double)up / (double)n;
    EXPECT(fabs(frac - 0.3) < 0.01 && other == 0, "adamw stochastic rounding: %.4f rounded up (want 0.30), %zu other",
           frac, other);
    if (h->verbose) printf("  %-28s %-22s %.4f rounded up (want 0.30)\n", "adamw stochastic rounding", "bias", frac);
    free(master), free(zeros), free(p);
    h_release(h);
}

// The modern backbones' ops (kernels/cuda/cuda_modern.cu): tanh GELU both
// ways (in place too), and RoPE from an inverse-frequency table as llama3
// scaling makes it (a third of the frequencies divided by 8, a smooth band).
static void check_modern(Harness *h, size_t n, int M, int NH, int NKV, int HS) {
    const Ops *c = h->cpu, *g = h->gpu;
    check_map1(h, "gelu_tanh", c->gelu_tanh_forward, g->gelu_tanh_forward, n, 0);
    check_map1(h, "gelu_tanh", c->gelu_tanh_forward, g->gelu_tanh_forward, n, 1);
    check_map2(h, "gelu_tanh_backward", c->gelu_tanh_backward, g->gelu_tanh_backward, n, 1, 1);
    const int half = HS / 2;
    float *table = xmalloc((size_t)half * sizeof(float));
    for (int i = 0; i < half; i++) {
        float f = 1.0f / powf(500000.0f, (float)(2 * i) / (float)HS);
        table[i] = i < half / 3 ? f : i < 2 * half / 3 ? f * (0.125f + 0.875f * (float)i / (float)half) : f / 8.0f;
    }
    check_rope_with(h, M, NH, NKV, HS, 0.0f, table);
    free(table);
}

// The fused residual + RMSNorm against the CPU op (itself the two ops), and
// bitwise against the GPU's own residual_forward + rmsnorm_forward, also in
// place (res = a, as the model calls it).
static void check_residual_rmsnorm(Harness *h, int M, int C) {
    char op[64];
    snprintf(op, sizeof op, "residual+rmsnorm %dx%d", M, C);
    const size_t n = (size_t)M * C;
    float *a = h_rand(h, n, 1.0f), *b = h_rand(h, n, 1.0f), *w = h_rand(h, C, 1.0f);
    float *res_c = xmalloc(n * sizeof(float)), *out_c = xmalloc(n * sizeof(float)), *rstd_c = xmalloc(M * 4);
    // The reference normalizes the sum as the GPU stores it (bf16), so rstd
    // can be held to the fp32 tolerance.
    h->cpu->residual_forward(res_c, a, b, n);
    h_round_bf16(res_c, n);
    h->cpu->rmsnorm_forward(out_c, rstd_c, res_c, w, M, C, 1e-5f);
    float *out_cf = xmalloc(n * sizeof(float)), *res_cf = xmalloc(n * sizeof(float)), *rstd_cf = xmalloc(M * 4);
    h->cpu->residual_rmsnorm_forward(res_cf, out_cf, rstd_cf, a, b, w, M, C, 1e-5f);  // the CPU's fused op
    h_check(h, op, "cpu fused res", res_cf, res_c, n, TOL_BF16);
    h_check(h, op, "cpu fused out", out_cf, out_c, n, TOL_BF16);
    free(out_cf), free(res_cf), free(rstd_cf);
    void *da = d_act(h, a, n), *db = d_act(h, b, n), *dw = d_act(h, w, C);
    void *dres = d_poison(h, n * A), *dout = d_poison(h, n * A);
    float *drstd = d_poison(h, M * sizeof(float));
    h->gpu->residual_rmsnorm_forward(dres, dout, drstd, da, db, dw, M, C, 1e-5f);
    float *res_g = down_act(h, dres, n), *out_g = down_act(h, dout, n), *rstd_g = down_f32(h, drstd, M);
    h_check(h, op, "res", res_g, res_c, n, TOL_BF16);
    h_check(h, op, "out", out_g, out_c, n, TOL_BF16);
    h_check(h, op, "rstd", rstd_g, rstd_c, M, TOL_F32);
    // the unfused pair on the GPU, then the fused op in place on a copy of a
    void *dres2 = d_poison(h, n * A), *dout2 = d_poison(h, n * A);
    float *drstd2 = d_poison(h, M * sizeof(float));
    h->gpu->residual_forward(dres2, da, db, n);
    h->gpu->rmsnorm_forward(dout2, drstd2, dres2, dw, M, C, 1e-5f);
    float *res_u = down_act(h, dres2, n), *out_u = down_act(h, dout2, n), *rstd_u = down_f32(h, drstd2, M);
    h_check_bitwise(h, op, res_g, res_u, n);
    h_check_bitwise(h, op, out_g, out_u, n);
    h_check_bitwise(h, op, rstd_g, rstd_u, M);
    h->gpu->residual_rmsnorm_forward(da, dout, drstd, da, db, dw, M, C, 1e-5f);
    float *res_i = down_act(h, da, n), *out_i = down_act(h, dout, n);
    h_check_bitwise(h, op, res_i, res_u, n);
    h_check_bitwise(h, op, out_i, out_u, n);
    free(a), free(b), free(w), free(res_c), free(out_c), free(rstd_c), free(res_g), free(out_g), free(rstd_g);
    free(res_u), free(out_u), free(rstd_u), free(res_i), free(out_i);
    h_release(h);
}

#ifndef LLAVA_GPU_EMU
// On the GPU: realistic shapes (LLaVA-7B / CLIP-L sized rows) and odd ones.
// One line per group of device checks, with the seconds since they began: a
// run cut off by tests/gpu/run.sh's step timeout shows how far it got.
static void checks_reached(double t0, const char *group) {
    printf("  [%6.1f s] %s\n", now_seconds() - t0, group);
}

void run_checks(Harness *h) {
    const double t0 = now_seconds();
    printf("== op checks (GPU bf16 vs CPU fp32; tolerances %.0e bf16, %.0e fp32) ==\n", TOL_BF16, TOL_F32);
    checks_reached(t0, "matmul, norms, elementwise, rope");
    check_matmul(h, 67, 45, 33, 1, 0);
    check_matmul(h, 67, 45, 33, 0, 1);
    check_matmul(h, 300, 1024, 768, 1, 3);
    check_matmul(h, 512, 1024, 4096, 0, 0);
    check_norm(h, 1, 77, 37);
    check_norm(h, 1, 1030, 1024);
    check_norm(h, 0, 77, 37);
    check_norm(h, 0, 1024, 4096);
    check_residual_rmsnorm(h, 77, 37);
    check_residual_rmsnorm(h, 1024, 4096);
    check_elementwise(h, 100003, 1);
    check_elementwise(h, (size_t)1024 * 4096 + 5, 0);
    check_swiglu(h, 33, 45);
    check_swiglu(h, 512, 1376);
    check_rope(h, 2 * 37, 4, 2, 16, 10000.0f);
    check_rope(h, 512, 32, 8, 128, 500000.0f);
    check_rope(h, 2 * 37, 4, 2, 20, 10000.0f);
    check_rope_paths(h, 512, 32, 8, 128, 500000.0f);
    check_modern(h, (size_t)1152 * 4304 + 3, 512, 32, 8, 128);  // SigLIP-so400m MLP rows, Llama-3-8B heads
    checks_reached(t0, "attention (generic, flash 64-row)");
    // attention: generic path (odd head sizes, unaligned), flash path (64, 128)
    run_attention_checks(h, 1);  // tests/gpu/test_ops_attention.c
    checks_reached(t0, "embedding, rows, vision input, cross-entropy, lora, adamw");
    check_embedding(h, 300, 77, 1000);
    check_embedding(h, 2048, 1024, 32000);
    check_rows(h, 300, 150, 37);
    check_rows(h, 2048, 576, 4096);
    check_vision_input(h, 2, 28, 7, 32);
    check_vision_input(h, 2, 336, 14, 1024);
    check_cross_entropy(h, 37, 163);
    check_cross_entropy(h, 128, 32000);
    check_sum_squares(h, 10000019);
    check_lora_ops(h, 37, 96, 64, 16);
    check_lora_ops(h, 5, 130, 3, 101);
    check_lora_ops(h, 2048, 12288, 4096, 4096);  // LLaMA-7B's k block of the fused qkv output
    check_adamw(h, 100003, 0);
    check_adamw(h, 100003, 777);
    check_stochastic_rounding(h, (size_t)1 << 20);
    checks_reached(t0, "optimizer (test_ops_optim.c)");
    run_optim_checks(h, 1);
    checks_reached(t0, "128-row flash kernels (test_ops_attention_tiles.c)");
    run_attention_tiles_checks(h, 1);
    checks_reached(t0, "fused kernels, matmul plans (test_ops_fused.c)");
    run_fused_checks(h, 1);
    checks_reached(t0, "bf16 gradients (test_ops_bf16grad.c)");
    run_bf16grad_checks(h, 1);
    checks_reached(t0, "done");
}
#else
// Under the CPU emulator: small shapes that still take every path (vector and
// scalar, flash and generic attention, every mask kind, partial tiles).
void run_checks(Harness *h) {
    printf("== op checks, CUDA kernels emulated on the CPU (tolerances %.0e bf16, %.0e fp32) ==\n", TOL_BF16,
           TOL_F32);
    check_matmul(h, 67, 45, 33, 1, 0);
    check_matmul(h, 67, 45, 33, 0, 1);
    check_matmul(h, 40, 64, 48, 1, 3);
    check_norm(h, 1, 77, 37);
    check_norm(h, 1, 33, 256);
    check_norm(h, 0, 77, 37);
    check_norm(h, 0, 33, 512);
    check_residual_rmsnorm(h, 77, 37);
    check_residual_rmsnorm(h, 33, 512);
    check_elementwise(h, 10007, 1);
    check_elementwise(h, 8 * 1000 + 5, 0);
    check_swiglu(h, 33, 45);
    check_swiglu(h, 17, 64);
    check_rope(h, 2 * 37, 4, 2, 16, 10000.0f);
    check_rope(h, 16, 4, 2, 128, 500000.0f);
    check_rope(h, 2 * 37, 4, 2, 20, 10000.0f);  // half = 10: the scalar path
    check_rope_paths(h, 2 * 37, 4, 2, 16, 10000.0f);
    check_rope_paths(h, 16, 4, 2, 128, 500000.0f);
    check_modern(h, 10007, 2 * 37, 4, 2, 16);
    run_attention_checks(h, 0);  // tests/gpu/test_ops_attention.c
    check_embedding(h, 300, 77, 1000);
    check_embedding(h, 64, 256, 500);
    check_rows(h, 300, 150, 37);
    check_rows(h, 64, 20, 256);
    check_vision_input(h, 2, 28, 7, 32);
    check_cross_entropy(h, 37, 163);
    check_cross_entropy(h, 16, 1000);
    check_sum_squares(h, 100003);
    check_lora_ops(h, 37, 96, 64, 16);
    check_lora_ops(h, 5, 130, 3, 101);
    check_adamw(h, 10007, 0);
    check_adamw(h, 10007, 777);
    check_stochastic_rounding(h, (size_t)1 << 16);
    run_optim_checks(h, 0);
    run_attention_tiles_checks(h, 0);
    run_fused_checks(h, 0);
    run_bf16grad_checks(h, 0);
}
#endif

int main(int argc, char **argv) {
    // Line-buffered even into tests/gpu/run.sh's pipe to tee: a step cut off
    // by its timeout still shows every line printed before, not a lost buffer.
    setvbuf(stdout, NULL, _IOLBF, 0);
    int checks = 1, bench = 1, probe = 0;
    Harness *h = xcalloc(1, sizeof *h);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--checks-only") == 0) bench = 0;
        else if (strcmp(argv[i], "--bench-only") == 0) checks = 0;
        else if (strcmp(argv[i], "--probe") == 0) probe = 1;
        else if (strcmp(argv[i], "-v") == 0) h->verbose = 1;
        else if (argv[i][0] == '-') {
            fprintf(stderr, "usage: %s [--checks-only | --bench-only | --probe] [-v]\n", argv[0]);
            return 2;
        }
    }
    Error err = {{0}};
    h->gpu = backend_select("cuda", &err);  // the plugin, as `llava --device cuda` loads it
    if (!h->gpu) {
        printf("test_gpu_ops: skipped: %s\n", err.msg);
        free(h);
        // --probe (tests/gpu/run.sh's setup): 77 = no usable GPU, 1 = the
        // backend itself could not be loaded (a library, a missing plugin).
        // "no GPU found" (no driver, no device) or "no usable CUDA device".
        if (probe) return strstr(err.msg, "no GPU found") || strstr(err.msg, "no usable CUDA device") ? 77 : 1;
        return 0;
    }
    if (probe) {
        printf("test_gpu_ops: the CUDA backend is ready\n");
        free(h);
        return 0;
    }
    h->cpu = ops_cpu();
    rng_seed(&h->rng, 20261126);
    double t0 = now_seconds();
    if (checks) {
        run_checks(h);
        run_cudnn_checks(h);  // tests/gpu/test_ops_cudnn.c
        printf("checks took %.1f s\n", now_seconds() - t0);
    }
#ifndef LLAVA_GPU_EMU
    if (bench) {
        double peak_gbs = 0, peak_tf = 0;
        run_timings(h, &peak_gbs, &peak_tf);
        h_print_table(h, peak_gbs, peak_tf);
        run_flash_bench(h, peak_tf);
    }
#else
    (void)bench;  // timing an emulation measures nothing
#endif
    int rc = test_summary("test_gpu_ops");
    free(h);
    return rc;
}
