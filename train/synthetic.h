// A synthetic data source: deterministic random token sequences with images
// (pixels from the sample's own seed), each sample a function of (seed,
// index) alone. For `llava bench` and for trainer tests that must not depend
// on the data pipeline.
#ifndef LLAVA_SYNTHETIC_H
#define LLAVA_SYNTHETIC_H

#include "data/batch_source.h"

typedef struct {
    int n_samples;
    int min_text, max_text;  // text tokens per sample (uniform)
    int image_every;         // every k-th sample has no image (0 = all have one)
    int micro_batch, grad_accum, rank, world;
    unsigned long long seed;
} SyntheticOptions;

int synthetic_open(BatchSource *s, const SyntheticOptions *o, const LlavaConfig *cfg, Error *err);

#endif
