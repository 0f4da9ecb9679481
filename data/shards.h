// HDF5 shards: the prepared form of a data set (written by `llava prep`, read
// by the loader and `llava inspect`). One shard file holds a bounded number of
// samples: their token ids and labels (concatenated int32 with per-sample
// offsets and lengths), modality, id, the index of the item in the data file,
// and their images, either preprocessed uint8 pixels [3,S,S] or the original
// encoded file bytes. The full layout is in docs/formats.md ("HDF5 shards").
//
// The HDF5 library we link is thread-safe by a global lock: keep every call of
// this module on one thread (the prep writer thread, the loader's reader
// thread) and decode/convert on others.
//
// Writer usage (one shard):
//   ShardWriter *w = shard_writer_create("out/shard-00000.h5", &fmt, &err);
//   shard_writer_add(w, &sample, &err) ...;
//   shard_writer_finish(w, prep_info_json, &err);   // atomic: .tmp then rename
// Reader usage:
//   ShardReader r; shard_reader_open(&r, path, &err);
//   shard_read_tokens(&r, r.offset[i], r.length[i], ids, labels, &err);
//   shard_read_pixels(&r, r.image[i], pixels, &err); shard_reader_close(&r);
#ifndef LLAVA_SHARDS_H
#define LLAVA_SHARDS_H

#include <stddef.h>
#include <stdint.h>

#include "common/util.h"

#define SHARD_FORMAT_NAME "llava.c shard"
#define SHARD_FORMAT_VERSION 1

typedef enum { STORE_PIXELS = 0, STORE_ENCODED = 1 } ImageStore;
typedef enum { MODALITY_TEXT = 0, MODALITY_IMAGE = 1 } Modality;

const char *image_store_name(ImageStore s);  // "pixels" | "encoded"
int image_store_parse(const char *name);      // -1 when unknown

typedef struct {
    ImageStore store;
    int image_size;  // S: pixels are [3,S,S] (0 allowed for the encoded store)
} ShardFormat;

// One sample to append. Images: pixels [3,S,S] uint8 (STORE_PIXELS) or the
// file's bytes (STORE_ENCODED); both NULL for a text-only sample.
typedef struct {
    const char *id;
    int64_t item;               // index of the item in the data file
    const int32_t *input_ids;   // [length]
    const int32_t *labels;      // [length]
    int length;
    const char *image_path;     // as written in the data file; NULL = text-only
    const uint8_t *pixels;      // [3,S,S]
    const uint8_t *encoded;     // [encoded_len]
    size_t encoded_len;
} ShardSample;

typedef struct ShardWriter ShardWriter;

// Creates path + ".tmp" (replacing a stale one).
ShardWriter *shard_writer_create(const char *path, const ShardFormat *fmt, Error *err);
int shard_writer_add(ShardWriter *w, const ShardSample *s, Error *err);
int64_t shard_writer_samples(const ShardWriter *w);
// Bytes of payload added so far (tokens, labels, images): for the size bound.
int64_t shard_writer_bytes(const ShardWriter *w);
// Writes the per-sample tables and prep_info (a JSON text kept in the file:
// which items of the data file this shard covers and their problems), then
// closes, fsyncs and renames .tmp to the final name. Frees w in all cases.
int shard_writer_finish(ShardWriter *w, const char *prep_info_json, Error *err);
// Closes and deletes the .tmp file. Frees w.
void shard_writer_abort(ShardWriter *w);

// A shard opened for reading. The per-sample tables are read at open (a few
// bytes per sample); tokens and images are read on demand.
typedef struct {
    char path[1024];
    int64_t hid;                // HDF5 file id (hid_t)
    int64_t d_ids, d_labels, d_pixels, d_bytes, d_ids_str;  // dataset ids, -1 when absent
    ShardFormat fmt;
    int64_t n_samples, n_images, n_tokens;
    int64_t *offset;            // [n_samples] start of each sample in the token arrays
    int32_t *length;            // [n_samples]
    uint8_t *modality;          // [n_samples] Modality
    int32_t *image;             // [n_samples] image row, -1 for text-only
    int64_t *item;              // [n_samples] item index in the data file
    int32_t *targets;           // [n_samples] loss targets: labels[1:] != -100
    int64_t *image_offset;      // [n_images] (encoded store) byte offset of each image
    int64_t *image_length;      // [n_images] (encoded store)
} ShardReader;

int shard_reader_open(ShardReader *r, const char *path, Error *err);
void shard_reader_close(ShardReader *r);
// ids/labels: [len] each (labels may be NULL).
int shard_read_tokens(ShardReader *r, int64_t offset, int len, int32_t *ids, int32_t *labels, Error *err);
// dst: [3,S,S]
int shard_read_pixels(ShardReader *r, int64_t image, uint8_t *dst, Error *err);
// dst: [r->image_length[image]] bytes
int shard_read_encoded(ShardReader *r, int64_t image, uint8_t *dst, Error *err);
// The sample's id string into dst (truncated to cap).
int shard_read_id(ShardReader *r, int64_t sample, char *dst, size_t cap, Error *err);
// The image's path as written in the data file (malloc'ed), or NULL + err.
char *shard_read_image_path(ShardReader *r, int64_t image, Error *err);
// The prep_info JSON text (malloc'ed), or NULL + err.
char *shard_read_prep_info(ShardReader *r, Error *err);

// Reads only prep_info of a shard file (used by prep when resuming).
char *shard_file_prep_info(const char *path, Error *err);

#endif
