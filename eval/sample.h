// Choosing the next token from logits: greedy, or sampling with temperature,
// top-k and top-p, applied in transformers' order (temperature, then top-k,
// then top-p over the renormalized distribution).
#ifndef LLAVA_SAMPLE_H
#define LLAVA_SAMPLE_H

#include <stddef.h>

#include "common/rng.h"

typedef struct {
    float temperature;  // <= 0: greedy (argmax, the first index on ties)
    float top_p;        // keep the most likely tokens until their mass reaches top_p; >= 1: off
    int top_k;          // keep the top_k most likely (ties at the k-th value kept); <= 0: off
} SampleParams;

// Picks a token from logits[V] (fp32, host). scratch: sample_scratch_bytes(V)
// bytes, reused across calls.
int sample_token(const float *logits, int V, const SampleParams *p, Rng *rng, void *scratch);
// The distribution sample_token draws from, as probs[V] (0 for filtered-out
// tokens; a one-hot on the argmax when greedy).
void sample_probs(const float *logits, int V, const SampleParams *p, float *probs, void *scratch);
// Bytes of scratch sample_token needs for a vocabulary of V.
size_t sample_scratch_bytes(int V);

#endif
