// `llava datagen`'s run: for each image and response type, ask the language-
// only model with the type's prompt folder, parse its response into a LLaVA
// conversation and append it to the output JSONL (one line per sample, fsync
// per batch). Resumable: ids already in the output are skipped, so a rerun
// retries only what failed and a SIGKILL loses at most the requests in
// flight; a record is one write() of one line, and a torn last line is cut
// off on resume. Everything that did not become a sample (image problems,
// failed requests, unparseable responses with their raw text) goes to the
// report JSONL; at the end of a run the report keeps exactly the items that
// are still missing from the output.
#ifndef LLAVA_DATAGEN_H
#define LLAVA_DATAGEN_H

#include <stdint.h>

#include "common/chat_client.h"
#include "data/datagen_input.h"
#include "data/datagen_parse.h"
#include "data/datagen_prompts.h"

typedef struct {
    const DatagenImages *images;
    const PromptFolder *prompts[DATAGEN_N_TYPES];  // NULL: type not generated
    int with_boxes[DATAGEN_N_TYPES];                // boxes in the context of this type
    const char *const *detail_questions;
    int n_detail_questions;
    uint64_t seed;     // which detail question, <image> front or back: a function of (seed, id)
    int limit;         // first N images (<= 0: all)
    int batch;         // requests between fsyncs
    const char *out_path;
    const char *report_path;
} DatagenRun;

typedef struct {
    long written, already_done, parse_failed, request_failed;
    long bad_images;  // samples not asked for because their image's data is unusable
    long per_type[DATAGEN_N_TYPES];
} DatagenStats;

// The output id of one (image, type): "<image id>_<type>".
void datagen_sample_id(const char *image_id, DatagenType t, char *out, size_t cap);
// Deterministic choices for one sample id.
void datagen_choose(uint64_t seed, const char *sample_id, int n_questions, int *question, int *image_front);

// 0 when the run went through (failed items are in the report), -1 on an I/O
// error or a damaged output file (err).
int datagen_run(const DatagenRun *run, ChatClient *client, DatagenStats *st, Error *err);

#endif
