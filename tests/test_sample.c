// Token selection: the distribution we sample from equals what transformers'
// warpers (temperature -> top-k -> top-p -> softmax) give
// (tests/fixtures/generation/sampling.safetensors); draws follow that
// distribution; the same seed gives the same draws; greedy is the first argmax.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/safetensors.h"
#include "eval/sample.h"
#include "tests/testlib.h"

static float *read_all(const StFile *f, const char *name, const StTensor **t) {
    *t = st_find(f, name);
    if (!*t) FATAL("missing %s", name);
    float *x = malloc((size_t)(*t)->numel * sizeof(float));
    Error err = {{0}};
    if (st_read_f32(f, *t, x, &err) != 0) FATAL("%s", err.msg);
    return x;
}

int main(int argc, char **argv) {
    const char *src = argc > 1 ? argv[1] : ".";
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/fixtures/generation/sampling.safetensors", src);
    StFile f;
    Error err = {{0}};
    if (st_open(&f, path, &err) != 0) FATAL("%s", err.msg);
    const StTensor *tl, *tp, *tq;
    float *logits = read_all(&f, "logits", &tl), *params = read_all(&f, "params", &tp);
    float *want = read_all(&f, "probs", &tq);
    const int R = (int)tl->shape[0], V = (int)tl->shape[1], K = (int)tp->shape[0];
    void *scratch = malloc(sample_scratch_bytes(V));
    float *probs = malloc((size_t)V * sizeof(float));
    long *hist = malloc((size_t)V * sizeof(long));
    for (int k = 0; k < K; k++) {
        SampleParams sp = {.temperature = params[k * 3], .top_k = (int)params[k * 3 + 1], .top_p = params[k * 3 + 2]};
        for (int r = 0; r < R; r++) {
            const float *x = logits + (size_t)r * V, *w = want + ((size_t)k * R + r) * V;
            sample_probs(x, V, &sp, probs, scratch);
            int support_same = 1;
            for (int i = 0; i < V; i++) support_same &= (probs[i] > 0) == (w[i] > 0);
            EXPECT(support_same, "T=%g top_k=%d top_p=%g row %d: kept tokens differ from transformers'",
                   sp.temperature, sp.top_k, sp.top_p, r);
            EXPECT(rel_error(probs, w, (size_t)V) < 1e-5, "T=%g top_k=%d top_p=%g row %d: probabilities differ (%.3g)",
                   sp.temperature, sp.top_k, sp.top_p, r, rel_error(probs, w, (size_t)V));
            // Draws: frequencies within 5 standard errors, never outside the support.
            const int draws = 20000;
            memset(hist, 0, (size_t)V * sizeof(long));
            Rng rng;
            rng_seed(&rng, 100u + (uint64_t)(k * R + r));
            for (int d = 0; d < draws; d++) hist[sample_token(x, V, &sp, &rng, scratch)]++;
            int ok = 1;
            for (int i = 0; i < V; i++) {
                double freq = (double)hist[i] / draws, p = w[i];
                double se = sqrt(p * (1 - p) / draws) + 1e-9;
                if (p == 0 ? hist[i] != 0 : fabs(freq - p) > 5 * se) ok = 0;
            }
            EXPECT(ok, "T=%g top_k=%d top_p=%g row %d: sampled frequencies disagree with the distribution",
                   sp.temperature, sp.top_k, sp.top_p, r);
        }
    }
    // Same seed, same draws; another seed, other draws.
    SampleParams sp = {.temperature = 1.0f, .top_p = 1.0f};
    Rng a, b, c;
    rng_seed(&a, 7);
    rng_seed(&b, 7);
    rng_seed(&c, 8);
    int same = 1, differ = 0;
    for (int d = 0; d < 200; d++) {
        int x = sample_token(logits, V, &sp, &a, scratch), y = sample_token(logits, V, &sp, &b, scratch);
        int z = sample_token(logits, V, &sp, &c, scratch);
        same &= x == y;
        differ |= x != z;
    }
    EXPECT(same && differ, "seeded sampling: same seed same draws (%d), other seed other draws (%d)", same, differ);
    // Greedy: the first index of the maximum (row 3 has a tie at the top).
    SampleParams greedy = {.temperature = 0.0f, .top_p = 1.0f};
    const float *x3 = logits + (size_t)3 * V;
    int best = 0;
    for (int i = 1; i < V; i++) best = x3[i] > x3[best] ? i : best;
    EXPECT(best == 7 && sample_token(x3, V, &greedy, &a, scratch) == 7, "greedy on a tie must pick the first index");
    free(logits);
    free(params);
    free(want);
    free(scratch);
    free(probs);
    free(hist);
    st_close(&f);
    return test_summary("test_sample");
}
