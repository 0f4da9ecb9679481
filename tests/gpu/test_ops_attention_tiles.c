// Emulator / device checks of the 128-row flash-attention kernels (head size
// 128: 8 warps, Q in registers in the forward, 128-key blocks in dK/dV,
// 128-row blocks in dQ; kernels/cuda/cuda_attention.cu) against the CPU op,
// against the 64-row kernels they replace (backend_cuda_set_flash_tiles 0),
// and against themselves (bitwise repeatable), forward and backward.
//
// Sequence lengths are chosen against the tile edges: 1 (one row, one
// partial tile), 63 (one short of a 64-key tile), 200 (a partial 128-row
// block after a full one) and 577 (CLIP-336's tokens: 4 full 128-row blocks
// and one row); causal and bidirectional; GQA 4:1 (NH 32 / NKV 8 scaled
// down); packed documents with a boundary inside a tile, right padding, left
// padding (the first queries of a causal row see no key) and a sequence that
// is all padding (no row sees a key: zeros, lse = -inf).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "kernels/backend.h"
#include "tests/gpu/gpu_harness.h"
#include "tests/testlib.h"

enum { SEG_NONE, SEG_PACKED, SEG_LEFTPAD, SEG_ALLPAD };

// seg[B*T] for a mode: PACKED: documents of 37, 1, 90, 15, ... tokens
// (a one-token document, boundaries inside tiles), odd rows right-padded by
// T / 8; LEFTPAD: 3 + 2b padding tokens, then one document; ALLPAD: row 0
// packed, every other row all padding.
static int32_t *tiles_make_seg(int B, int T, int mode) {
    static const int doc_len[] = {37, 1, 90, 15, 64, 128, 7};
    const int n_len = (int)(sizeof doc_len / sizeof *doc_len);
    int32_t *seg = xmalloc((size_t)B * T * sizeof(int32_t));
    for (int b = 0; b < B; b++) {
        int32_t *s = seg + (size_t)b * T;
        const int pad_from = (mode == SEG_PACKED && b % 2) ? T - T / 8 : T;
        int doc = 1, k = b, left = doc_len[b % n_len];
        for (int t = 0; t < T; t++) {
            if (mode == SEG_LEFTPAD) {
                s[t] = t < 3 + 2 * b ? 0 : 1;
            } else if (t >= pad_from || (mode == SEG_ALLPAD && b > 0)) {
                s[t] = 0;
            } else {
                s[t] = doc;
                if (--left == 0) doc++, left = doc_len[++k % n_len];
            }
        }
    }
    return seg;
}

// out and lse (forward), dqkv (backward) of one path.
typedef struct {
    float *out, *lse, *dqkv;
} TilesResult;

// Selects the kernels (0: 64-row, 2: 128-row at any grid size); returns the
// previous setting.
static int tiles_use(const char *op, int mode) {
    const int was = backend_cuda_set_flash_tiles(mode);
    EXPECT(was >= 0 && was <= 2, "%s: backend_cuda_set_flash_tiles(%d) returned %d", op, mode, was);
    return was;
}

// all = 1: also the 64-row kernels and a second 128-row run (bitwise); 0: the
// 128-row kernels against the CPU alone (the emulator's longer shapes).
static void check_tiles(Harness *h, int B, int T, int NH, int NKV, int causal, int seg_mode, int all) {
    static const char *seg_name[] = {"", " packed+pad", " leftpad", " allpad"};
    const int HS = 128, M = B * T;
    char op[96];
    snprintf(op, sizeof op, "attention tiles B%d T%d %d/%d %s%s", B, T, NH, NKV, causal ? "causal" : "bidir",
             seg_name[seg_mode]);
    const size_t nqkv = (size_t)M * (NH + 2 * NKV) * HS, nout = (size_t)M * NH * HS, nl = (size_t)B * NH * T;
    float *qkv = h_rand(h, nqkv, 1.0f);
    int32_t *seg = seg_mode == SEG_NONE ? NULL : tiles_make_seg(B, T, seg_mode);
    AttnShape sc = {.B = B, .T = T, .NH = NH, .NKV = NKV, .HS = HS, .causal = causal, .seg = seg};
    float *out_c = xmalloc(nout * sizeof(float)), *lse_c = xmalloc(nl * sizeof(float));
    h->cpu->attention_forward(out_c, lse_c, qkv, &sc);
    h_round_bf16(out_c, nout);  // the backward's input on both sides, as stored
    float *dy = h_rand(h, nout, 1.0f), *dqkv_c = xmalloc(nqkv * sizeof(float));
    h->cpu->attention_backward(dqkv_c, dy, qkv, out_c, lse_c, &sc);

    AttnShape sg = sc;
    sg.seg = seg ? d_i32(h, seg, M) : NULL;
    void *dq = d_act(h, qkv, nqkv), *ddy = d_act(h, dy, nout), *dout = d_poison(h, nout * 2);
    void *ddqkv = d_poison(h, nqkv * 2), *dout_c = d_act(h, out_c, nout);
    float *dlse = d_poison(h, nl * sizeof(float)), *dlse_c = d_f32(h, lse_c, nl);
    // [0] 64-row kernels, [1] 128-row kernels, [2] 128-row kernels again,
    // [3] the default choice by grid size (here a mix: the emulator has 4 SMs)
    static const int mode[4] = {0, 2, 2, 1};
    TilesResult r[4] = {{0}};
    const int was = tiles_use(op, 2);
    for (int k = all ? 0 : 1; k < (all ? 4 : 2); k++) {
        tiles_use(op, mode[k]);
        h_poison(h, dout, nout * 2);
        h_poison(h, dlse, nl * sizeof(float));
        h->gpu->attention_forward(dout, dlse, dq, &sg);
        r[k].out = down_act(h, dout, nout);
        r[k].lse = down_f32(h, dlse, nl);
        h_poison(h, ddqkv, nqkv * 2);
        h->gpu->attention_backward(ddqkv, ddy, dq, dout_c, dlse_c, &sg);
        r[k].dqkv = down_act(h, ddqkv, nqkv);
    }
    tiles_use(op, was);
    h_check(h, op, "out vs cpu", r[1].out, out_c, nout, TOL_BF16);
    h_check(h, op, "lse vs cpu", r[1].lse, lse_c, nl, TOL_F32);
    h_check(h, op, "dqkv vs cpu", r[1].dqkv, dqkv_c, nqkv, TOL_BF16);
    if (all) {
        h_check(h, op, "out vs 64-row", r[1].out, r[0].out, nout, TOL_BF16);
        h_check(h, op, "lse vs 64-row", r[1].lse, r[0].lse, nl, TOL_F32);
        h_check(h, op, "dqkv vs 64-row", r[1].dqkv, r[0].dqkv, nqkv, TOL_BF16);
        h_check(h, op, "out by grid vs cpu", r[3].out, out_c, nout, TOL_BF16);
        h_check(h, op, "dqkv by grid vs cpu", r[3].dqkv, dqkv_c, nqkv, TOL_BF16);
        char name[128];
        snprintf(name, sizeof name, "%s forward", op);
        h_check_bitwise(h, name, r[2].out, r[1].out, nout);
        h_check_bitwise(h, name, r[2].lse, r[1].lse, nl);
        snprintf(name, sizeof name, "%s backward", op);
        h_check_bitwise(h, name, r[2].dqkv, r[1].dqkv, nqkv);
    }
    for (int k = 0; k < 4; k++) free(r[k].out), free(r[k].lse), free(r[k].dqkv);
    free(qkv), free(seg), free(out_c), free(lse_c), free(dy), free(dqkv_c);
    h_release(h);
}

void run_attention_tiles_checks(Harness *h, int large) {
    // The emulator runs 256 fibers per block: every path at T <= 200, the
    // 128-row kernels alone at the longer and wider shapes.
    check_tiles(h, 1, 1, 2, 1, 1, SEG_NONE, 1);
    check_tiles(h, 1, 1, 1, 1, 0, SEG_NONE, 1);
    check_tiles(h, 2, 63, 4, 1, 0, SEG_PACKED, 1);
    check_tiles(h, 2, 63, 4, 1, 1, SEG_LEFTPAD, 1);
    check_tiles(h, 1, 200, 4, 1, 1, SEG_NONE, 1);  // by grid: dK/dV 64-row, forward and dQ 128-row
    check_tiles(h, 2, 200, 1, 1, 0, SEG_LEFTPAD, large);
    check_tiles(h, 2, 130, 2, 1, 1, SEG_ALLPAD, large);
    check_tiles(h, 1, 577, 1, 1, 1, SEG_PACKED, large);
    if (large) {  // device sizes: LLaVA-7B / Llama-3-8B heads
        check_tiles(h, 1, 577, 2, 2, 0, SEG_NONE, 1);
        check_tiles(h, 2, 1000, 32, 8, 1, SEG_PACKED, 1);
        check_tiles(h, 1, 2048, 32, 32, 1, SEG_NONE, 1);
        check_tiles(h, 4, 577, 32, 8, 0, SEG_LEFTPAD, 1);
    }
}
