// Where the trainer gets its micro-batches: the shard loader (data/loader.c)
// or the synthetic source (train/synthetic.c, for benchmarks and tests).
//
// Global batch semantics, identical for every source: optimizer step s of
// an epoch covers one global batch of G = micro_batch x grad_accum x world
// samples (the last one of an epoch may be smaller). Which samples form
// global batch s does not depend on the world size, so world W with
// micro-batch b sees the same samples per step as world 1 with micro-batch
// W*b; each rank yields its own share of them as up to grad_accum
// micro-batches.
#ifndef LLAVA_BATCH_SOURCE_H
#define LLAVA_BATCH_SOURCE_H

#include "common/util.h"
#include "model/model.h"

typedef struct {
    long epoch;  // 0-based
    long step;   // optimizer step within the epoch, 0-based
} DataPosition;

typedef struct BatchSource BatchSource;
struct BatchSource {
    void *impl;
    long steps_per_epoch;  // global batches per epoch
    int max_micro;         // most micro-batches next_step can yield (grad_accum)
    // Fills out[0 .. *n) with this rank's micro-batches of the next global
    // batch (*n may be 0 on a rank with no sample in a short last batch).
    // The batches stay valid until the next call. Crossing into a new epoch
    // happens inside: position() then reports the new epoch.
    int (*next_step)(BatchSource *s, LlavaBatch *out, int *n, Error *err);
    // Position of the next global batch; seek() restores one exactly.
    DataPosition (*position)(const BatchSource *s);
    int (*seek)(BatchSource *s, DataPosition pos, Error *err);
    void (*close)(BatchSource *s);
    // Optional (NULL): JSON members (`"key": value, ...`, no braces) about the
    // global batches so far, appended to the step's metrics.jsonl line (the
    // mixture's per-source counts, data/mixture.h). 0, or -1 when cap is short.
    int (*step_info)(const BatchSource *s, char *buf, size_t cap);
};

#endif
