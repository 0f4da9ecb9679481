// `llava prep` from a model folder: the real per-sample work (LLaVA
// templates and masks, tokenizer, image decoding and CLIP preprocessing)
// plugged into the prep pipeline (data/prep.h). Also what `llava train` calls
// to prep a .json before training.
#ifndef LLAVA_PREP_MODEL_H
#define LLAVA_PREP_MODEL_H

#include "data/image.h"
#include "data/prep.h"
#include "data/shards.h"

typedef struct {
    const char *data_path;      // LLaVA JSON list or JSONL (or what `source` names)
    const PrepSource *source;   // NULL: read data_path (data/dataset.h); else e.g. data/webdataset.h
    const char *images_dir;     // NULL: the data file's folder
    const char *model_dir;      // config.json (+ tokenizer files, preprocessor_config.json)
    const char *tokenizer_dir;  // NULL: model_dir
    const char *template_name;  // plain | vicuna_v1 | v1 | llava_v1
    const char *out_dir;
    int max_length;             // 0: min(2048, the model's max_position_embeddings)
    int workers;                // 0: all cores
    ImageStore store;           // STORE_PIXELS (default) | STORE_ENCODED
    ImageAspect aspect;         // IMAGE_ASPECT_SQUARE (default) | IMAGE_ASPECT_PAD
    int64_t shard_max_samples;  // default 10000
    int64_t shard_max_mb;       // default 1024
    int64_t max_pixels;         // decompression-bomb limit (0: IMAGE_DEFAULT_MAX_PIXELS, as Pillow)
    int progress;               // progress lines on stderr (default 1)
    int crash_after_shards;     // testing only (see PrepOptions)
} PrepRequest;

void prep_request_default(PrepRequest *r);
// Loads the model's config, tokenizer and image settings, checks they fit
// together, then runs (or resumes) prep. 0, or -1 with err.
int prep_from_model(const PrepRequest *rq, PrepSummary *sum, Error *err);

#endif
