// Token selection. The filters follow transformers' logits warpers:
// TopKLogitsWarper removes logits below the k-th largest value;
// TopPLogitsWarper sorts ascending and removes tokens whose cumulative
// probability is <= 1 - top_p, i.e. keeps, in descending order, every token
// whose preceding mass is < top_p (at least one token always survives).
#include "eval/sample.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    float v;  // logit / temperature
    int i;    // token id
} Cand;

size_t sample_scratch_bytes(int V) { return (size_t)V * sizeof(Cand); }

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

// Descending by value; equal values by id so the order is deterministic.
static int cmp_desc(const void *a, const void *b) {
    const Cand *x = a, *y = b;
    if (x->v != y->v) return x->v > y->v ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

// Sorts the candidates and applies top-k and top-p. Returns how many of
// c[0..) survive; *mx and *sum give their softmax: p = exp(v - mx) / sum.
static int filter(const float *logits, int V, const SampleParams *p, Cand *c, double *mx, double *sum) {
    for (int i = 0; i < V; i++) c[i] = (Cand){logits[i] / p->temperature, i};
    qsort(c, (size_t)V, sizeof(Cand), cmp_desc);
    int n = V;
    if (p->top_k > 0 && p->top_k < V) {
        n = p->top_k;
        while (n < V && c[n].v == c[p->top_k - 1].v) n++;
    }
    *mx = c[0].v;
    double s = 0.0;
    for (int r = 0; r < n; r++) s += exp(c[r].v - *mx);
    if (p->top_p < 1.0f) {
        double mass = 0.0;
        int keep = 0;
        while (keep < n && mass < p->top_p) mass += exp(c[keep++].v - *mx) / s;
        n = keep > 0 ? keep : 1;
        s = 0.0;
        for (int r = 0; r < n; r++) s += exp(c[r].v - *mx);
    }
    *sum = s;
    return n;
}

int sample_token(const float *logits, int V, const SampleParams *p, Rng *rng, void *scratch) {
    if (p->temperature <= 0.0f) return argmax(logits, V);
    Cand *c = scratch;
    double mx, sum;
    const int n = filter(logits, V, p, c, &mx, &sum);
    const double u = (double)rng_uniform(rng) * sum;
    double acc = 0.0;
    for (int r = 0; r < n; r++) {
        acc += exp(c[r].v - mx);
        if (u < acc) return c[r].i;
    }
    return c[n - 1].i;
}

void sample_probs(const float *logits, int V, const SampleParams *p, float *probs, void *scratch) {
    memset(probs, 0, (size_t)V * sizeof(float));
    if (p->temperature <= 0.0f) {
        probs[argmax(logits, V)] = 1.0f;
        return;
    }
    Cand *c = scratch;
    double mx, sum;
    const int n = filter(logits, V, p, c, &mx, &sum);
    for (int r = 0; r < n; r++) probs[c[r].i] = (float)(exp(c[r].v - mx) / sum);
}
