// The training data loader: shards (data/shards.h) -> micro-batches
// (LlavaBatch, model/model.h) for one data-parallel rank.
//
// Order. Each epoch has its own order of all N samples, a function of (seed,
// epoch) only: a permutation, or with group_by_modality LLaVA's
// get_modality_length_grouped_indices as LLaVATrainer calls it (batch_size =
// micro_batch, world_size = world x grad_accum): megabatches of G samples of
// one modality, sorted by length and split with split_to_even_chunks into
// world x grad_accum length-balanced micro-batches, megabatches shuffled,
// the two leftover megabatches merged at the end. Each of those chunks is
// exactly one micro-batch below (rank r, micro j = chunk r x grad_accum + j).
//
// Steps. The global batch is G = micro_batch x grad_accum x world samples.
// Step s of an epoch takes positions [s*G, (s+1)*G) of the epoch order, so a
// step holds the same samples whatever the world size (world 2 x micro b and
// world 1 x micro 2b train on the same sets). Inside a step of n samples,
// rank r takes positions [n*r/world, n*(r+1)/world) and splits them into
// grad_accum micro-batches the same way. The last step of an epoch may be
// partial (N not a multiple of G): its samples are spread evenly, so a rank's
// micro-batch can then be smaller than micro_batch or even empty (B == 0:
// run no forward, but take part in the step's gradient all-reduce).
// With drop_last the partial step is dropped instead.
//
// Rows. Without packing each sample is one row; rows are right-padded to the
// longest row of the micro-batch (input id pad_token_id, label -100, seg 0).
// With packing the micro-batch's samples are placed into rows of at most
// max_length tokens (first fit, longest first): seg numbers the documents of
// a row 1, 2, ... (0 = padding) so attention never crosses samples (see
// AttnShape in kernels/ops.h), positions restart at 0 for each document.
// seg is NULL when no row is padded or packed; pos is NULL without packing.
// Images appear in `pixels` in the order of their image tokens (row-major).
//
// Resume. loader_state() gives the position of the next micro-batch;
// opening with LoaderOptions.resume = that position yields exactly the same
// batches in the same order as an uninterrupted run.
//
// Threads: one reader thread does all HDF5 reads (the library is serialized
// by a global lock), `workers` threads build batches (padding, packing, pixel
// conversion, bf16 rounding when asked, decoding for --store encoded) into a
// ring of `prefetch` slots.
//
// Usage:
//   LoaderOptions o; loader_options_default(&o);
//   o.dir = "shards"; o.micro_batch = 16; o.grad_accum = 1; o.rank = r; o.world = w;
//   Loader *L = loader_open(&o, &err);
//   for (;;) { LoaderBatch lb; if (loader_next(L, &lb, &err)) fail();
//              if (lb.batch.B) model_forward(&m, &lb.batch, ...); ... }
//   LoaderPos p; loader_state(L, &p);   // save with the checkpoint
//   loader_close(L);
#ifndef LLAVA_LOADER_H
#define LLAVA_LOADER_H

#include <stdint.h>

#include "common/util.h"
#include "model/model.h"

// Position of a micro-batch: epoch, step within the epoch, micro-batch within
// the step (0..grad_accum-1). Saving at a step boundary gives micro == 0.
typedef struct {
    int64_t epoch, step;
    int micro;
} LoaderPos;

typedef struct {
    const char *dir;        // shard folder (with manifest.json)
    uint64_t seed;          // shuffling seed (default 42)
    int micro_batch;        // samples per micro-batch and rank (default 1)
    int grad_accum;         // micro-batches per step (default 1)
    int rank, world;        // data-parallel rank in [0, world) (default 0 of 1)
    int group_by_modality;  // LLaVA's group_by_modality_length (default 0)
    int shuffle;            // 0 = file order every epoch (default 1)
    int pack;               // pack samples into rows (default 0)
    int max_length;         // longest allowed sample and the row size when packing
                            // (0 = the max_length the shards were prepared with)
    int drop_last;          // drop the partial last step of each epoch (default 0)
    int workers;            // batch-building threads (0 = all cores minus one, at least 1)
    int prefetch;           // micro-batches prepared ahead (0 = 2 x workers + 2)
    int pixels_bf16;        // also round the pixels to bf16 in the workers (LlavaBatch.pixels_bf16),
                            // for a bf16 backend (default 0)
    LoaderPos resume;       // where to start (default epoch 0, step 0, micro 0)
} LoaderOptions;

typedef struct {
    LlavaBatch batch;             // valid until the next loader_next or loader_close
    LoaderPos pos;                // the position of this micro-batch
    int last_of_step;             // micro == grad_accum - 1
    int last_of_epoch;            // last micro-batch of the epoch for this rank
    int n_samples;                // samples in this micro-batch (0 only in a partial last step)
    const int64_t *sample_index;  // [n_samples] sample numbers (order of the shards), in the
                                  // order of the documents in the batch (row-major)
    const char *const *sample_id; // [n_samples] ids from the data file, same order
    int64_t targets;              // loss targets in this micro-batch (labels != -100 after the shift)
    int64_t step_targets;         // loss targets of the whole global step, all ranks:
                                  // the divisor for a global token mean, known in advance
    int64_t step_samples;         // samples in the whole global step (G, or less when partial)
} LoaderBatch;

typedef struct Loader Loader;

void loader_options_default(LoaderOptions *o);
// Reads the manifest and every shard's sample table, checks the options and
// starts the threads. NULL + err on bad input (missing/incomplete folder,
// micro_batch < 1, rank outside world, a sample longer than max_length, ...).
Loader *loader_open(const LoaderOptions *o, Error *err);
// The next micro-batch of this rank, valid until the next loader_next /
// loader_next_step call. Epochs follow each other without end; the caller
// stops after as many steps as it wants. -1 + err on a read or decode error
// (then every later call fails too).
int loader_next(Loader *L, LoaderBatch *out, Error *err);
// The remaining micro-batches of the current step (all grad_accum of them
// unless resumed mid-step) into out[0 .. *n), all valid until the next call
// of loader_next or loader_next_step. out has room for grad_accum entries.
int loader_next_step(Loader *L, LoaderBatch *out, int *n, Error *err);
// Position of the next micro-batch loader_next will return.
void loader_state(const Loader *L, LoaderPos *pos);
int64_t loader_num_steps_per_epoch(const Loader *L);
int64_t loader_num_samples(const Loader *L);
// Image size S of the pixels and tokens per image, from the manifest.
int loader_image_size(const Loader *L);
void loader_close(Loader *L);

// ---- exposed for tests and `llava inspect` ---------------------------------
// The epoch order: order[N] = sample numbers. lengths[N] > 0, is_image[N].
// chunks = micro-batches per step (world x grad_accum). Pure function of its
// arguments; the megabatch sets depend on (seed, epoch, global_batch) only.
void loader_epoch_order(int64_t *order, int64_t N, const int32_t *lengths, const uint8_t *is_image,
                        uint64_t seed, int64_t epoch, int64_t global_batch, int chunks, int group_by_modality,
                        int shuffle);
// Positions [*begin, *end) of the epoch order that micro-batch (step, micro)
// of `rank` takes, for an epoch of N samples.
void loader_slice(int64_t N, int64_t step, int micro, int rank, int world, int micro_batch, int grad_accum,
                  int64_t *begin, int64_t *end);
// Packs n samples of the given lengths into rows of `capacity` tokens: first
// fit, longest first (ties in input order). row_of[n] = row of each sample,
// order[n] = the samples in placement order (a row's documents are placed
// left to right in this order). A sample longer than capacity gets a row of
// its own. Returns the number of rows.
int loader_pack_rows(const int32_t *lengths, int n, int capacity, int *row_of, int *order);

#endif
