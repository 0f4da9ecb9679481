// manifest.json of a shard folder: which shards exist, how they were made
// (template, lengths, image size and normalization, tokenizer fingerprint,
// image token) and the sample counts. Written by `llava prep` (with
// "complete": false while it runs, true at the end); read by the loader and
// `llava inspect`. Format in docs/formats.md ("Shard folder").
#ifndef LLAVA_MANIFEST_H
#define LLAVA_MANIFEST_H

#include <stdint.h>

#include "common/util.h"
#include "data/shards.h"

#define MANIFEST_NAME "manifest.json"
#define MANIFEST_FORMAT "llava.c shards"
#define MANIFEST_VERSION 1

typedef struct {
    char file[64];              // "shard-00000.h5", relative to the folder
    int64_t samples, images, tokens;
    int64_t first_item, end_item;  // items [first_item, end_item) of the data file
} ManifestShard;

typedef struct {
    int complete;
    // where the data came from (resume refuses a different input)
    char data_path[4096], images_dir[4096], model_dir[4096];
    int64_t data_size, data_mtime_ns;
    // how it was prepared
    char template_name[32];
    int max_length;
    ImageStore store;
    char aspect[16];            // "pad" | "square"
    int image_size;             // S
    int image_seq_length;       // tokens per image
    int image_token_index;
    int pad_token_id;           // used by the loader for padding
    double image_mean[3], image_std[3];  // as preprocessor_config.json has them
    int64_t max_pixels;         // decompression-bomb limit used (0 = the image module's default)
    char tokenizer_hash[40];    // "fnv1a64:<16 hex>" of tokenizer.json + tokenizer_config.json
    char tokenizer_dir[64];     // copy of the tokenizer files, relative ("tokenizer")
    int64_t shard_max_samples, shard_max_mb;
    // counts (items = written + skipped; truncated samples are written)
    int64_t items, written, skipped, truncated, images, tokens;
    int n_shards;
    ManifestShard *shards;      // [n_shards]
} Manifest;

// Reads DIR/manifest.json. Errors name the file and the field.
int manifest_read(Manifest *m, const char *dir, Error *err);
// Writes DIR/manifest.json atomically.
int manifest_write(const Manifest *m, const char *dir, Error *err);
void manifest_free(Manifest *m);
// Adds a shard entry (copied).
void manifest_add_shard(Manifest *m, const ManifestShard *s);
// 1 when everything that decides the shards' contents is equal (resume check);
// otherwise 0 with the first difference described in `why`.
int manifest_same_recipe(const Manifest *a, const Manifest *b, char *why, size_t cap);

#endif
