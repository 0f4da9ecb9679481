// Weighted data mixtures: `"data": [{"path": A, "weight": 0.3}, {"path": B,
// "weight": 0.7}]` in a run config. Each source is a shard folder with its
// own loader (its own order, modality/length grouping and epochs); the
// mixture is a BatchSource (data/batch_source.h) whose global batch k comes
// whole from one source, drawn with probability weight / sum of weights by a
// counter-based generator of (seed, k) alone. So:
//   - proportions: the share of batches from each source converges to its
//     weight (independent draws; over K steps within a few sqrt(K p (1-p)));
//   - grouping: a batch is one source's batch, grouped as that loader groups;
//   - resume: global batch k's source and each source's position after k
//     batches follow from (seed, k) by replaying the draws, so seeking to a
//     saved (epoch, step) reproduces every later batch bit for bit;
//   - counts: steps and samples drawn from each source so far, also a
//     function of k, written to metrics.jsonl ("source", "source_steps",
//     "source_samples").
// Instead of a weight a source may give "epochs": weight = epochs x its
// batches per epoch, so that in expectation one mixture epoch covers it that
// many times. A mixture epoch has sum_j (epochs_j, or 1 with a weight) x
// steps_j global batches: one pass over every source in expectation when
// the weights follow the sources' sizes.
#ifndef LLAVA_MIXTURE_H
#define LLAVA_MIXTURE_H

#include <stdint.h>

#include "common/util.h"
#include "data/loader.h"
#include "data/batch_source.h"

typedef struct {
    char path[1024];  // shard folder
    char name[128];   // for metrics (default: the folder's base name)
    double weight;    // > 0, or 0 when epochs is given
    double epochs;    // > 0, or 0 when weight is given
} MixtureEntry;

typedef struct {
    MixtureEntry *e;  // [n]
    int n;
} Mixture;

// Parses the "data" list (JSON text). Errors name the entry and the key.
int mixture_parse(const char *json_text, Mixture *m, Error *err);
void mixture_free(Mixture *m);
// 1 when a "data" value is a mixture list rather than a path.
int mixture_is_list(const char *data);

// Opens one loader per entry (base options; each source's seed is
// base->seed + its index) and the mixture over them.
int mixture_source_open(BatchSource *s, const LoaderOptions *base, const Mixture *m, Error *err);

// The source of global batch k: the j with cum[j-1] <= u < cum[j], u uniform
// in [0, cum[n-1]) from (seed, k). Exposed for tests.
int mixture_draw(const double *cum, int n, uint64_t seed, int64_t k);

#endif
