// model/flops.c, the MFU numerator, against an independent count: visible
// attention pairs counted by brute force with the op table's masking rule
// (causal, same document, padding never a key), tokens and labeled rows
// counted directly; stage 1 (LLM frozen) vs stage 2 matmul multipliers; LoRA
// adapters at 6 FLOPs per weight and token.
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tests/testlib.h"
#include "model/config.h"
#include "model/flops.h"

// Visible (query, key) pairs of one row for non-padding queries.
static double brute_pairs(const int32_t *seg, int T) {
    double n = 0;
    for (int q = 0; q < T; q++)
        for (int k = 0; k <= q; k++) {
            int sq = seg ? seg[q] : 1, sk = seg ? seg[k] : 1;
            n += sq != 0 && sk == sq;
        }
    return n;
}

static int near(double a, double b) { return fabs(a - b) <= 1e-12 * fabs(b); }

int main(int argc, char **argv) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/fixtures/tiny_llava15/config.json", argc > 1 ? argv[1] : ".");
    LlavaConfig c;
    Error err = {{0}};
    if (config_load_llava(&c, path, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    const TextConfig *x = &c.text;
    double C = x->hidden, HS = x->head_dim, L = x->layers;
    double layer = C * (x->heads + 2.0 * x->kv_heads) * HS + x->heads * HS * C + 3.0 * C * x->intermediate;
    double per_pair = 12.0 * L * x->heads * HS;  // QK^T and PV, forward 1x + backward 2x

    // Two rows of 6: one plain document; packed documents 1, 2 and padding.
    enum { B = 2, T = 6 };
    int32_t ids[B * T] = {0}, seg[B * T] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 0};
    int32_t labels[B * T];
    for (int i = 0; i < B * T; i++) labels[i] = LABEL_IGNORE;
    labels[3] = 5, labels[4] = 6, labels[8] = 7;  // targets of rows 2, 3 and 7
    LlavaBatch b = {.B = B, .T = T, .input_ids = ids, .labels = NULL, .seg = seg, .n_images = 0};
    double pairs = brute_pairs(seg, T) + brute_pairs(seg + T, T), tokens = 11;
    EXPECT(pairs == 21 + 6 + 3, "brute force pairs %g", pairs);
    double f2 = flops_micro_batch(&c, 1, 0, &b), f1 = flops_micro_batch(&c, 0, 0, &b);
    EXPECT(near(f2, 2.0 * L * layer * tokens * 3.0 + per_pair * pairs), "stage 2, packed: %.17g", f2);
    EXPECT(near(f1, 2.0 * L * layer * tokens * 2.0 + per_pair * pairs), "stage 1, packed: %.17g", f1);

    b.seg = NULL;  // no segments: every row one document of T tokens
    double f = flops_micro_batch(&c, 1, 0, &b);
    EXPECT(near(f, 2.0 * L * layer * B * T * 3.0 + per_pair * 2 * brute_pairs(NULL, T)), "no seg: %.17g", f);

    b.labels = labels;  // the LM head counts only labeled rows
    double head = 2.0 * x->vocab * C;
    EXPECT(near(flops_micro_batch(&c, 1, 0, &b) - f, head * 3 * 3.0), "LM head, stage 2");
    LlavaBatch unlabeled = {.B = B, .T = T, .input_ids = ids};
    EXPECT(near(flops_micro_batch(&c, 0, 0, &b) - flops_micro_batch(&c, 0, 0, &unlabeled), head * 3 * 2.0),
           "LM head, stage 1");

    // LoRA (the LLM frozen): 6 FLOPs per adapter weight per non-padding token
    // (2 forward, 4 for the input and weight gradients), as main's trainer counted.
    b.seg = seg;
    const size_t adapters = 123456;
    EXPECT(near(flops_micro_batch(&c, 0, adapters, &b) - flops_micro_batch(&c, 0, 0, &b), 6.0 * adapters * tokens),
           "LoRA adapters on the 11 non-padding tokens");
    b.seg = NULL;

    b.labels = NULL;  // an image adds the same amount whatever the text
    b.n_images = 1;
    double img = flops_micro_batch(&c, 1, 0, &b) - f;
    b.n_images = 2;
    EXPECT(img > 0 && near(flops_micro_batch(&c, 1, 0, &b) - f, 2 * img), "per image %g", img);
    return test_summary("test_flops");
}
