// attention_cached + kv_cache_write (the generation ops) against the full
// causal attention_forward on the same rows (to fp32 rounding): a decode step (Tq = 1) and a
// chunk of new rows (Tq = 3), sequences of different lengths, GQA and MHA.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "kernels/ops.h"
#include "tests/testlib.h"

static void check_case(const Ops *o, int B, int T, int NH, int NKV, int HS, int Tcap) {
    const int row = (NH + 2 * NKV) * HS, KV = NKV * HS, M = B * T;
    Rng rng;
    rng_seed(&rng, (uint64_t)(B * 1000 + NH * 10 + NKV));
    float *qkv = malloc((size_t)M * row * sizeof(float));
    for (int i = 0; i < M * row; i++) qkv[i] = rng_normal(&rng);
    // Sequence b has len[b] tokens, right-padded (segment 0) to T.
    int32_t *seg = calloc((size_t)M, sizeof(int32_t));
    int len[8];
    for (int b = 0; b < B; b++) {
        len[b] = T - 2 * b;
        for (int t = 0; t < len[b]; t++) seg[b * T + t] = 1;
    }
    float *full = malloc((size_t)M * NH * HS * sizeof(float));
    float *lse = malloc((size_t)B * NH * T * sizeof(float));
    AttnShape s = {.B = B, .T = T, .NH = NH, .NKV = NKV, .HS = HS, .causal = 1, .seg = seg};
    o->attention_forward(full, lse, qkv, &s);

    // The cache: every valid row, poison elsewhere (never read).
    float *kc = malloc((size_t)B * Tcap * KV * sizeof(float)), *vc = malloc((size_t)B * Tcap * KV * sizeof(float));
    for (int i = 0; i < B * Tcap * KV; i++) kc[i] = vc[i] = NAN;
    int32_t *slots = malloc((size_t)M * sizeof(int32_t));
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) slots[b * T + t] = t < len[b] ? b * Tcap + t : -1;
    o->kv_cache_write(kc, vc, qkv, slots, M, NH, NKV, HS);
    int written_ok = 1;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < Tcap; t++)
            for (int d = 0; d < KV; d++) {
                float k = kc[((size_t)b * Tcap + t) * KV + d], v = vc[((size_t)b * Tcap + t) * KV + d];
                if (t < len[b]) {
                    const float *src = qkv + ((size_t)b * T + t) * row + (size_t)NH * HS;
                    written_ok &= k == src[d] && v == src[KV + d];
                } else {
                    written_ok &= isnan(k) && isnan(v);  // skipped slots untouched
                }
            }
    EXPECT(written_ok, "kv_cache_write: cache rows differ from the k/v heads of qkv (B=%d NH=%d NKV=%d)", B, NH, NKV);

    // Tq new rows per sequence ending at position last[b]: compare with the
    // full forward's rows.
    const int Tqs[2] = {1, 3};
    for (int qi = 0; qi < 2; qi++) {
        const int Tq = Tqs[qi];
        for (int trial = 0; trial < 3; trial++) {
            int32_t lens[8];
            float *q = malloc((size_t)B * Tq * row * sizeof(float));
            float *out = malloc((size_t)B * Tq * NH * HS * sizeof(float));
            float *want = malloc((size_t)B * Tq * NH * HS * sizeof(float));
            for (int b = 0; b < B; b++) {
                int last = Tq - 1 + (int)rng_below(&rng, (uint64_t)(len[b] - Tq + 1));
                if (trial == 0) last = len[b] - 1;
                if (trial == 1) last = Tq - 1;
                lens[b] = last + 1;
                for (int t = 0; t < Tq; t++) {
                    int src = b * T + last - Tq + 1 + t;
                    memcpy(q + ((size_t)b * Tq + t) * row, qkv + (size_t)src * row, (size_t)row * sizeof(float));
                    memcpy(want + ((size_t)b * Tq + t) * NH * HS, full + (size_t)src * NH * HS,
                           (size_t)NH * HS * sizeof(float));
                }
            }
            o->attention_cached(out, q, kc, vc, lens, B, Tq, Tcap, NH, NKV, HS);
            // The full forward runs its dot products through BLAS, whose
            // summation order depends on the matrix sizes: equal to fp32
            // rounding, not bitwise.
            double e = rel_error(out, want, (size_t)B * Tq * NH * HS);
            EXPECT(e < 1e-6, "attention_cached Tq=%d trial %d (B=%d NH=%d NKV=%d): rel err %.3g vs the full forward's "
                   "rows", Tq, trial, B, NH, NKV, e);
            free(q);
            free(out);
            free(want);
        }
    }
    free(qkv);
    free(seg);
    free(full);
    free(lse);
    free(kc);
    free(vc);
    free(slots);
}

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    const Ops *o = ops_cpu();
    check_case(o, 3, 12, 6, 2, 8, 20);   // GQA, 3 sequences of lengths 12, 10, 8
    check_case(o, 2, 9, 4, 4, 16, 9);    // MHA, cache exactly full
    check_case(o, 1, 5, 3, 1, 4, 7);     // MQA
    return test_summary("test_attention_cached");
}
