// The prep pipeline: a data file -> HDF5 shards + manifest.json + report.json.
//
//   main thread:   reads items in file order (data/dataset.h)
//   N workers:     turn each item into tokens, labels and image bytes through
//                  a PrepProcessor (templates, tokenizer, image decoding)
//   writer thread: takes the results back in file order and owns every HDF5
//                  call (the library is serialized by a global lock)
// Items move through a window of slots, so memory stays bounded whatever the
// file size, and the shards come out the same whatever the worker count.
//
// Restartable: after each finished shard the manifest lists it (complete:
// false) and the shard itself records where in the data file it ends. A
// second run with the same recipe continues after the last finished shard;
// a run on a complete folder does nothing. A different recipe (other data
// file, template, lengths, tokenizer, image settings) is refused.
//
// Accounting: every item of the data file is written or skipped; each skipped
// item and each written item with a note (truncated, mask mismatch) gets an
// entry in report.json. items == written + skipped, always.
#ifndef LLAVA_PREP_H
#define LLAVA_PREP_H

#include <stddef.h>
#include <stdint.h>

#include "common/util.h"
#include "data/dataset.h"
#include "data/manifest.h"

// What a worker makes of one sample.
typedef struct {
    int write;                  // 1: goes into a shard; 0: skipped (problem says why)
    int has_problem;            // a report entry (required when write == 0)
    DatasetProblem problem;
    int truncated;              // written shortened to max_length
    int32_t *ids, *labels;      // [length] (malloc'ed, freed by the pipeline)
    int length;
    uint8_t *pixels;            // [3,S,S] uint8 for the pixels store (malloc'ed) or NULL
    uint8_t *encoded;           // file bytes for the encoded store (malloc'ed) or NULL
    size_t encoded_len;
} PrepResult;

// The per-sample work, called from several threads at once.
typedef struct {
    void *ctx;
    // Fills *out (zeroed by the caller, except out->problem's index, line and
    // id, which name the sample already: set reason, detail and, for an image,
    // file). `worker` in [0, PrepOptions.workers) names the calling thread,
    // for per-thread scratch. Returns 0; -1 only for a failure that must stop
    // prep, with err.
    int (*process)(void *ctx, int worker, const DatasetSample *s, PrepResult *out, Error *err);
} PrepProcessor;

// Where the items come from. PrepOptions.source NULL: the LLaVA data file at
// data_path (data/dataset.h); data/webdataset.h is the other one.
typedef struct {
    void *ctx;
    // Fills recipe->data_path, data_size, data_mtime_ns: what identifies the
    // input, so that a resume on changed input is refused.
    int (*describe)(void *ctx, Manifest *recipe, Error *err);
    // Starts reading at pos (one tell() returned earlier), or at the start (NULL).
    int (*open)(void *ctx, const DatasetPos *pos, Error *err);
    // dataset_next's contract: DATASET_SAMPLE, DATASET_BAD_ITEM, DATASET_END, DATASET_ERROR.
    int (*next)(void *ctx, DatasetSample *s, DatasetProblem *problem, Error *err);
    void (*tell)(void *ctx, DatasetPos *pos);  // position after the last item returned
    void (*close)(void *ctx);                 // also after a failed open()
} PrepSource;

typedef struct {
    const char *data_path;      // JSON list or JSONL (or what source->describe names)
    const PrepSource *source;   // NULL: read data_path with data/dataset.h
    const char *out_dir;
    int workers;                // worker threads (0 = prep_default_workers())
    int64_t shard_max_samples;  // close a shard at this many samples (0 = no limit)
    int64_t shard_max_mb;       // ... or at this many MB of payload (0 = no limit)
    int progress;               // progress lines on stderr
    // Called once the folder is known to be fresh or resumable (not for a
    // complete one), before any item: copies the tokenizer and image
    // settings into the folder. May be NULL.
    int (*prepare_folder)(void *ctx, const char *out_dir, Error *err);
    void *prepare_ctx;
    // Testing: stop as if killed after this many shards were finished
    // (0 = run to the end). The folder is left as a crash would leave it.
    int crash_after_shards;
} PrepOptions;

typedef struct {
    int64_t items, written, skipped, truncated, images, tokens;
    int shards;
    int already_complete;       // nothing was done: the folder was complete
    double seconds;
} PrepSummary;

// Runs (or resumes) prep. `recipe` carries everything that decides the
// shards' contents (source, template, lengths, image settings, tokenizer
// fingerprint); prep fills in the source file's size and mtime, the counts
// and the shard list. Returns 0, or -1 with err (bad input: a broken data
// file, a folder prepared with another recipe; or an I/O failure).
// All cores.
int prep_default_workers(void);

int prep_run(const PrepOptions *o, const Manifest *recipe, const PrepProcessor *proc, PrepSummary *sum,
             Error *err);

#endif
