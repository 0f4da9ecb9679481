// Checks of the cuDNN attention backend (kernels/cuda/cuda_cudnn_attention.cu).
//
// On the emulator (test_gpu_emu): the per-row sequence lengths the graphs
// take, computed by our kernel, against our masking rule: for every row the
// kernel calls expressible, the mask cuDNN applies from those lengths
// (query < seq_q, key < seq_kv, and key <= query when causal) must equal
// cpu_attn_visible (kernels/cpu/cpu_ops.h) at every (query, key); the rows
// it must refuse (packed documents, left padding, padding alone) are refused.
// And asking for cuDNN is refused there with a message.
//
// On a GPU (test_gpu_ops --checks-only, tests/gpu/run.sh step 1): cuDNN's
// forward and backward against the CPU op at head sizes 64 and 128, causal
// and bidirectional, GQA, right padding, with the flash checks' tolerances;
// the counters say that cuDNN itself ran (packed and left-padded rows must go
// to the flash kernel, and do). Skipped, with the reason, without libcudnn.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu_ops.h"
#include "tests/gpu/gpu_harness.h"
#include "tests/testlib.h"

#ifdef LLAVA_GPU_EMU
#include "kernels/cuda/cuda_cudnn_attention.h"
#include "kernels/cudnn_lib.h"
#endif

enum { SEG_NONE, SEG_RIGHT_PAD, SEG_PACKED, SEG_LEFT_PAD, SEG_ALL_PAD };

// Row b: SEG_RIGHT_PAD: document b + 3 on the first T - b*T/8 rows, then
// padding (row 0 has none); SEG_PACKED: documents of 1..T/2 rows, the odd
// rows padded at the end; SEG_LEFT_PAD: 5 + b padding rows first;
// SEG_ALL_PAD: row 0 one document, row 1 only padding.
static int32_t *cudnn_make_seg(Harness *h, int B, int T, int mode) {
    int32_t *seg = xmalloc((size_t)B * T * sizeof(int32_t));
    for (int b = 0; b < B; b++) {
        int32_t *s = seg + (size_t)b * T;
        int doc = 1, left = 1 + (int)rng_below(&h->rng, (uint64_t)(T / 2 + 1));
        for (int t = 0; t < T; t++) {
            switch (mode) {
            case SEG_RIGHT_PAD: s[t] = t < T - b * (T / 8) ? b + 3 : 0; break;
            case SEG_LEFT_PAD: s[t] = t < 5 + b ? 0 : 1; break;
            case SEG_ALL_PAD: s[t] = b % 2 ? 0 : 2; break;
            default:  // SEG_PACKED
                if ((b % 2) && t >= T - T / 8) {
                    s[t] = 0;
                    break;
                }
                s[t] = doc;
                if (--left == 0) doc++, left = 1 + (int)rng_below(&h->rng, (uint64_t)(T / 2 + 1));
            }
        }
    }
    return seg;
}

#ifdef LLAVA_GPU_EMU
// expect_ok: 1 = every row must be expressible, 0 = at least one row must not.
static void check_seq_lens(Harness *h, int B, int T, int mode, int expect_ok) {
    char op[64];
    snprintf(op, sizeof op, "cudnn seq_lens B%d T%d mode %d", B, T, mode);
    int32_t *seg = mode == SEG_NONE ? NULL : cudnn_make_seg(h, B, T, mode);
    int32_t *dseg = seg ? d_i32(h, seg, (size_t)B * T) : NULL;
    int32_t *dlens = d_poison(h, (size_t)3 * B * sizeof(int32_t));
    cuda_cudnn_seq_lens(dlens, dseg, B, T);
    int32_t *lens = xmalloc((size_t)3 * B * sizeof(int32_t));
    h->gpu->download(lens, dlens, (size_t)3 * B * sizeof(int32_t));
    int all_ok = 1, mismatches = 0;
    for (int b = 0; b < B; b++) {
        EXPECT(lens[b] == T, "%s: seq_q[%d] = %d, want %d", op, b, lens[b], T);
        EXPECT(lens[2 * B + b] == 0 || lens[2 * B + b] == 1, "%s: flag[%d] = %d", op, b, lens[2 * B + b]);
        all_ok &= lens[2 * B + b] == 1;
        if (lens[2 * B + b] != 1) continue;
        const int32_t *row = seg ? seg + (size_t)b * T : NULL;
        for (int causal = 0; causal < 2; causal++)
            for (int i = 0; i < T; i++)
                for (int j = 0; j < T; j++) {
                    const int cudnn = i < lens[b] && j < lens[B + b] && (!causal || j <= i);
                    mismatches += cudnn != cpu_attn_visible(row, causal, i, j);
                }
    }
    EXPECT(mismatches == 0, "%s: the padding mask from these lengths differs from ours at %d (query, key)", op,
           mismatches);
    EXPECT(all_ok == expect_ok, "%s: rows %s expressible, expected %s", op, all_ok ? "all" : "not all",
           expect_ok ? "all" : "a refusal");
    if (h->verbose) printf("  %-44s %s\n", op, all_ok ? "cuDNN" : "flash fallback");
    free(seg), free(lens);
    h_release(h);
}

// Every descriptor of the forward and backward graphs of a shape finalizes
// in the cuDNN this machine has (the operation graph and plan need a GPU).
static void check_graphs(const CudnnApi *api, int B, int T, int NH, int NKV, int HS, int causal) {
    AttnShape s = {.B = B, .T = T, .NH = NH, .NKV = NKV, .HS = HS, .causal = causal, .seg = NULL};
    for (int backward = 0; backward < 2; backward++) {
        char msg[512];
        int rc = cuda_cudnn_graph_check(api, &s, backward, msg, sizeof msg);
        if (rc == -2) {  // a libcudnn on the machine, but this build had no cudnn.h
            printf("  cudnn graphs: not checked: %s\n", msg);
            return;
        }
        EXPECT(rc == 0, "cudnn %s graph B%d T%d %d/%d HS%d %s: %s", backward ? "backward" : "forward", B, T, NH,
               NKV, HS, causal ? "causal" : "bidir", msg);
        printf("  cudnn %s graph B%d T%d %d/%d HS%d %s: %s\n", backward ? "backward" : "forward", B, T, NH, NKV, HS,
               causal ? "causal" : "bidir", rc ? "FAILED" : msg);
    }
}
#endif

#define A (h->gpu->act_size)

// One attention problem and the CPU op's answers: out and lse forward, then
// dqkv backward from a random dout and the bf16-rounded out (what the device
// gets as its inputs too).
typedef struct {
    AttnShape s;  // seg on the host
    size_t nqkv, nout, nl;
    float *qkv, *out, *lse, *dy, *dqkv;
} AttnCase;

static void attn_case_make(Harness *h, AttnCase *c, int B, int T, int NH, int NKV, int HS, int causal, int mode) {
    c->s = (AttnShape){.B = B, .T = T, .NH = NH, .NKV = NKV, .HS = HS, .causal = causal,
                       .seg = mode == SEG_NONE ? NULL : cudnn_make_seg(h, B, T, mode)};
    c->nqkv = (size_t)B * T * (NH + 2 * NKV) * HS, c->nout = (size_t)B * T * NH * HS, c->nl = (size_t)B * NH * T;
    c->qkv = h_rand(h, c->nqkv, 1.0f);
    c->out = xmalloc(c->nout * sizeof(float)), c->lse = xmalloc(c->nl * sizeof(float));
    h->cpu->attention_forward(c->out, c->lse, c->qkv, &c->s);
    c->dy = h_rand(h, c->nout, 1.0f), c->dqkv = xmalloc(c->nqkv * sizeof(float));
    float *out_rounded = h_copy(c->out, c->nout);
    h_round_bf16(out_rounded, c->nout);
    h->cpu->attention_backward(c->dqkv, c->dy, c->qkv, out_rounded, c->lse, &c->s);
    free(out_rounded);
}

static void attn_case_free(AttnCase *c) {
    free((void *)c->s.seg), free(c->qkv), free(c->out), free(c->lse), free(c->dy), free(c->dqkv);
}

// The table cu's forward and backward on the case, every output poisoned first.
static void attn_case_check(Harness *h, const Ops *cu, const AttnCase *c, const char *op) {
    AttnShape sg = c->s;
    sg.seg = c->s.seg ? d_i32(h, c->s.seg, (size_t)c->s.B * c->s.T) : NULL;
    void *qkv = d_act(h, c->qkv, c->nqkv), *out = d_poison(h, c->nout * A), *dqkv = d_poison(h, c->nqkv * A);
    float *lse = d_poison(h, c->nl * sizeof(float));
    cu->attention_forward(out, lse, qkv, &sg);
    float *got_out = down_act(h, out, c->nout), *got_lse = down_f32(h, lse, c->nl);
    h_check(h, op, "out", got_out, c->out, c->nout, TOL_BF16);
    h_check(h, op, "lse", got_lse, c->lse, c->nl, TOL_F32);
    // backward from the CPU's out (rounded to bf16 by the upload) and lse
    h->gpu->upload_act(out, c->out, c->nout);
    h->gpu->upload(lse, c->lse, c->nl * sizeof(float));
    void *dy = d_act(h, c->dy, c->nout);
    cu->attention_backward(dqkv, dy, qkv, out, lse, &sg);
    float *got_dqkv = down_act(h, dqkv, c->nqkv);
    h_check(h, op, "dqkv", got_dqkv, c->dqkv, c->nqkv, TOL_BF16);
    free(got_out), free(got_lse), free(got_dqkv);
    h_release(h);
}

// cuDNN's attention (table cu) against the CPU op; expect_cudnn: the shape
// must run on cuDNN (1) or on the flash fallback (0), by the call counters.
// (No bitwise-repeat check: cuDNN's backward adds dQ with atomics.)
static void check_cudnn_attention(Harness *h, const Ops *cu, int B, int T, int NH, int NKV, int HS, int causal,
                                  int mode, int expect_cudnn) {
    static const char *const names[] = {"", " rightpad", " packed+pad", " leftpad", " allpad"};
    char op[96];
    snprintf(op, sizeof op, "cudnn attention B%d T%d %d/%d HS%d %s%s", B, T, NH, NKV, HS,
             causal ? "causal" : "bidir", names[mode]);
    AttnCase c;
    attn_case_make(h, &c, B, T, NH, NKV, HS, causal, mode);
    long c0, f0, c1, f1;
    backend_cudnn_counts(&c0, &f0);
    attn_case_check(h, cu, &c, op);
    backend_cudnn_counts(&c1, &f1);
    if (expect_cudnn)
        EXPECT(c1 - c0 == 2 && f1 == f0, "%s: cuDNN ran %ld of the 2 calls (the flash kernel %ld): see its message "
               "above", op, c1 - c0, f1 - f0);
    else
        EXPECT(f1 - f0 == 2 && c1 == c0, "%s: expected the flash fallback for both calls, cuDNN ran %ld", op,
               c1 - c0);
    attn_case_free(&c);
}

void run_cudnn_checks(Harness *h) {
    printf("== cuDNN attention (attention_backend cudnn) ==\n");
#ifdef LLAVA_GPU_EMU
    check_seq_lens(h, 3, 77, SEG_NONE, 1);
    check_seq_lens(h, 4, 96, SEG_RIGHT_PAD, 1);
    check_seq_lens(h, 1, 300, SEG_RIGHT_PAD, 1);  // longer than a block: strided scan
    check_seq_lens(h, 3, 100, SEG_PACKED, 0);
    check_seq_lens(h, 2, 64, SEG_LEFT_PAD, 0);
    check_seq_lens(h, 2, 40, SEG_ALL_PAD, 0);
    CudnnApi api;
    char why[1024];
    if (cudnn_lib_load(&api, why, sizeof why) == 0) {
        printf("cuDNN graphs, descriptors finalized by %s (%zu):\n", api.path, api.version);
        check_graphs(&api, 2, 256, 8, 8, 64, 1);
        check_graphs(&api, 2, 577, 4, 4, 64, 0);
        check_graphs(&api, 2, 200, 8, 2, 128, 1);  // GQA: the per-head dK/dV reduced onto the groups
        check_graphs(&api, 4, 2048, 32, 8, 128, 1);
        // The backward as built for cuDNN 9.0-9.9 (the padding mask again after
        // the stats, as cudnn-frontend does there): its descriptors too.
        CudnnApi before_910 = api;
        before_910.version = 90900;
        printf("cuDNN graphs as built for a cuDNN 9.9 library:\n");
        check_graphs(&before_910, 2, 200, 8, 2, 128, 1);
    } else {
        printf("cuDNN graphs: not checked, no libcudnn here (%s)\n", why);
    }
#endif
    Error err = {{0}};
    const Ops *cu = backend_attention(h->gpu, "cudnn", &err);
#ifdef LLAVA_GPU_EMU
    EXPECT(!cu && err.msg[0], "the emulator must refuse attention_backend cudnn with a message");
    printf("cuDNN attention on the emulator: refused as it must be: %s\n", err.msg);
    (void)check_cudnn_attention;
#else
    if (!cu) {
        printf("cuDNN attention checks: skipped: %s\n", err.msg);
        return;
    }
    check_cudnn_attention(h, cu, 2, 256, 8, 8, 64, 1, SEG_NONE, 1);
    check_cudnn_attention(h, cu, 2, 577, 4, 4, 64, 0, SEG_NONE, 1);       // CLIP-336's 577 tokens
    check_cudnn_attention(h, cu, 2, 200, 8, 2, 128, 1, SEG_RIGHT_PAD, 1);  // GQA + padding
    check_cudnn_attention(h, cu, 2, 300, 4, 2, 128, 0, SEG_RIGHT_PAD, 1);
    check_cudnn_attention(h, cu, 1, 1024, 8, 8, 128, 1, SEG_NONE, 1);
    check_cudnn_attention(h, cu, 2, 100, 4, 2, 64, 1, SEG_PACKED, 0);     // the flash fallback
    check_cudnn_attention(h, cu, 2, 129, 4, 2, 128, 1, SEG_LEFT_PAD, 0);
#endif
}
