// The attention ops of the CUDA table against the CPU op: the generic path
// (odd head sizes, unaligned buffers) and the flash kernels (HS 64 / 128),
// causal and bidirectional, GQA, packed documents, right and left padding,
// forward and backward with poisoned outputs; then attention over a KV cache
// (generation). The 128-row HS-128 kernels have their own file
// (test_ops_attention_tiles.c), cuDNN's too (test_ops_cudnn.c).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "tests/gpu/gpu_harness.h"
#include "tests/testlib.h"

#define A (h->gpu->act_size)

// ---- attention ---------------------------------------------------------------------------

// seg_mode 0: none; 1: packed documents and right padding; 2: left padding
// (early padding queries of a causal row see no key: zeros, lse = -inf).
static int32_t *make_seg(Harness *h, int B, int T, int mode) {
    int32_t *seg = xmalloc((size_t)B * T * sizeof(int32_t));
    for (int b = 0; b < B; b++) {
        int32_t *s = seg + (size_t)b * T;
        if (mode == 1) {
            int doc = 1, left = 1 + (int)rng_below(&h->rng, (uint64_t)(T / 2 + 1));
            int pad_from = (b % 2) ? T - T / 8 : T;
            for (int t = 0; t < T; t++) {
                if (t >= pad_from) {
                    s[t] = 0;
                    continue;
                }
                s[t] = doc;
                if (--left == 0) {
                    doc++;
                    left = 1 + (int)rng_below(&h->rng, (uint64_t)(T / 2 + 1));
                }
            }
        } else {
            for (int t = 0; t < T; t++) s[t] = t < 5 + b ? 0 : 1;
        }
    }
    return seg;
}

static void check_attention(Harness *h, int B, int T, int NH, int NKV, int HS, int causal, int seg_mode, int off) {
    char op[96];
    snprintf(op, sizeof op, "attention B%d T%d %d/%d HS%d %s%s%s", B, T, NH, NKV, HS, causal ? "causal" : "bidir",
             seg_mode == 1 ? " packed+pad" : seg_mode == 2 ? " leftpad" : "", off ? " unaligned" : "");
    const int M = B * T;
    const size_t nqkv = (size_t)M * (NH + 2 * NKV) * HS, nout = (size_t)M * NH * HS, nl = (size_t)B * NH * T;
    float *qkv = h_rand(h, nqkv, 1.0f);
    int32_t *seg = seg_mode ? make_seg(h, B, T, seg_mode) : NULL;
    AttnShape sc = {.B = B, .T = T, .NH = NH, .NKV = NKV, .HS = HS, .causal = causal, .seg = seg};
    float *out_c = xmalloc(nout * sizeof(float)), *lse_c = xmalloc(nl * sizeof(float));
    h->cpu->attention_forward(out_c, lse_c, qkv, &sc);

    AttnShape sg = sc;
    sg.seg = seg ? d_i32(h, seg, M) : NULL;
    void *dqkv_in = d_offset(h, d_act(h, NULL, nqkv + off), off);
    h->gpu->upload_act(dqkv_in, qkv, nqkv);
    void *dout = d_offset(h, d_poison(h, (nout + off) * A), off);
    float *dlse = d_poison(h, nl * sizeof(float));
    h->gpu->attention_forward(dout, dlse, dqkv_in, &sg);
    float *out_g = down_act(h, dout, nout), *lse_g = down_f32(h, dlse, nl);
    h_check(h, op, "out", out_g, out_c, nout, TOL_BF16);
    h_check(h, op, "lse", lse_g, lse_c, nl, TOL_F32);

    // backward from the same (bf16-rounded) out and lse on both sides
    h_round_bf16(out_c, nout);
    float *dy = h_rand(h, nout, 1.0f), *dqkv_c = xmalloc(nqkv * sizeof(float));
    h->cpu->attention_backward(dqkv_c, dy, qkv, out_c, lse_c, &sc);
    void *ddy = d_offset(h, d_act(h, NULL, nout + off), off);
    h->gpu->upload_act(ddy, dy, nout);
    h->gpu->upload_act(dout, out_c, nout);
    h->gpu->upload(dlse, lse_c, nl * sizeof(float));
    void *ddqkv = d_offset(h, d_poison(h, (nqkv + off) * A), off);
    h->gpu->attention_backward(ddqkv, ddy, dqkv_in, dout, dlse, &sg);
    float *dqkv_g = down_act(h, ddqkv, nqkv);
    h_check(h, op, "dqkv", dqkv_g, dqkv_c, nqkv, TOL_BF16);
    h_poison(h, ddqkv, nqkv * A);
    h->gpu->attention_backward(ddqkv, ddy, dqkv_in, dout, dlse, &sg);
    float *dqkv_g2 = down_act(h, ddqkv, nqkv);
    h_check_bitwise(h, op, dqkv_g2, dqkv_g, nqkv);
    free(qkv), free(seg), free(out_c), free(lse_c), free(out_g), free(lse_g), free(dy), free(dqkv_c), free(dqkv_g);
    free(dqkv_g2);
    h_release(h);
}

// Generation: kv_cache_write, then attention_cached of Tq new rows per
// sequence over caches of different lengths. Cache rows past a sequence's
// length hold NaN: reading one would show.
static void check_attention_cached(Harness *h, int B, int Tq, int Tcap, int NH, int NKV, int HS) {
    char op[96];
    snprintf(op, sizeof op, "attention_cached B%d Tq%d Tcap%d %d/%d HS%d", B, Tq, Tcap, NH, NKV, HS);
    const int row = (NH + 2 * NKV) * HS, KV = NKV * HS, M = B * Tq;
    const size_t ncache = (size_t)B * Tcap * KV;
    int32_t *lens = xmalloc((size_t)B * sizeof(int32_t)), *slots = xmalloc((size_t)M * sizeof(int32_t));
    for (int b = 0; b < B; b++) lens[b] = Tcap - 3 * b - (int)rng_below(&h->rng, 5);  // different lengths
    float *qkv = h_rand(h, (size_t)M * row, 1.0f);
    float *kc = h_rand(h, ncache, 1.0f), *vc = h_rand(h, ncache, 1.0f);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < Tcap; t++)
            for (int d = 0; d < KV; d++)
                if (t >= lens[b]) kc[((size_t)b * Tcap + t) * KV + d] = vc[((size_t)b * Tcap + t) * KV + d] = NAN;
    // the new rows go to positions lens[b] - Tq .. lens[b] - 1; every 4th is skipped (slot -1)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < Tq; t++) slots[b * Tq + t] = (t % 4 == 3) ? -1 : b * Tcap + lens[b] - Tq + t;
    float *kc_c = h_copy(kc, ncache), *vc_c = h_copy(vc, ncache);
    h->cpu->kv_cache_write(kc_c, vc_c, qkv, slots, M, NH, NKV, HS);
    void *dk = d_act(h, kc, ncache), *dv = d_act(h, vc, ncache), *dq = d_act(h, qkv, (size_t)M * row);
    void *dslots = d_i32(h, slots, M), *dlens = d_i32(h, lens, B);
    h->gpu->kv_cache_write(dk, dv, dq, dslots, M, NH, NKV, HS);
    float *kc_g = down_act(h, dk, ncache), *vc_g = down_act(h, dv, ncache);
    size_t valid = 0, bad = 0;
    for (size_t i = 0; i < ncache; i++) {  // compare where the reference is a number; NaN must stay NaN
        if (isnan(kc_c[i])) {
            bad += !isnan(kc_g[i]) || !isnan(vc_g[i]);
            continue;
        }
        kc_c[valid] = kc_c[i], vc_c[valid] = vc_c[i], kc_g[valid] = kc_g[i], vc_g[valid] = vc_g[i];
        valid++;
    }
    EXPECT(bad == 0, "%s: kv_cache_write touched %zu rows it should not", op, bad);
    h_check(h, op, "kv_cache_write k", kc_g, kc_c, valid, TOL_BF16);
    h_check(h, op, "kv_cache_write v", vc_g, vc_c, valid, TOL_BF16);
    // attention over the reference caches (skipped slots are then still the random rows)
    float *out_c = xmalloc((size_t)M * NH * HS * sizeof(float));
    h->cpu->kv_cache_write(kc, vc, qkv, slots, M, NH, NKV, HS);
    h->cpu->attention_cached(out_c, qkv, kc, vc, lens, B, Tq, Tcap, NH, NKV, HS);
    h->gpu->upload_act(dk, kc, ncache);
    h->gpu->upload_act(dv, vc, ncache);
    void *dout = d_poison(h, (size_t)M * NH * HS * A);
    h->gpu->attention_cached(dout, dq, dk, dv, dlens, B, Tq, Tcap, NH, NKV, HS);
    float *out_g = down_act(h, dout, (size_t)M * NH * HS);
    h_check(h, op, "out", out_g, out_c, (size_t)M * NH * HS, TOL_BF16);
    free(lens), free(slots), free(qkv), free(kc), free(vc), free(kc_c), free(vc_c), free(kc_g), free(vc_g);
    free(out_c), free(out_g);
    h_release(h);
}

// large: the device shapes (LLaVA-7B heads, CLIP-L's 577 tokens); else the
// emulator's small ones, which still take every path.
void run_attention_checks(Harness *h, int large) {
    if (large) {
        check_attention(h, 2, 37, 4, 2, 16, 1, 0, 0);
        check_attention(h, 2, 45, 5, 1, 80, 1, 1, 0);
        check_attention(h, 2, 77, 4, 4, 64, 0, 0, 1);
        check_attention(h, 2, 77, 4, 4, 64, 0, 0, 0);
        check_attention(h, 2, 130, 4, 4, 64, 0, 1, 0);
        check_attention(h, 2, 100, 4, 2, 64, 1, 2, 0);
        check_attention(h, 2, 300, 4, 2, 128, 1, 1, 0);
        check_attention(h, 3, 129, 6, 3, 128, 1, 2, 0);
        check_attention(h, 1, 1024, 8, 8, 128, 1, 0, 0);
        check_attention(h, 1, 577, 4, 4, 64, 0, 0, 0);
        check_attention_cached(h, 3, 1, 700, 32, 8, 128);
        check_attention_cached(h, 2, 7, 300, 4, 2, 64);
        check_attention_cached(h, 2, 5, 40, 4, 2, 16);
        return;
    }
    check_attention(h, 2, 37, 4, 2, 16, 1, 0, 0);
    check_attention(h, 2, 45, 5, 1, 80, 1, 1, 0);
    check_attention(h, 2, 77, 2, 2, 64, 0, 0, 1);
    check_attention(h, 2, 77, 2, 2, 64, 0, 0, 0);
    check_attention(h, 2, 130, 2, 2, 64, 0, 1, 0);
    check_attention(h, 2, 100, 2, 1, 64, 1, 2, 0);
    check_attention(h, 2, 150, 2, 1, 128, 1, 1, 0);
    check_attention(h, 1, 129, 2, 2, 128, 0, 2, 0);
    check_attention(h, 1, 200, 2, 2, 128, 1, 0, 0);
    check_attention_cached(h, 2, 1, 300, 4, 2, 64);
    check_attention_cached(h, 2, 5, 40, 4, 2, 16);
}
