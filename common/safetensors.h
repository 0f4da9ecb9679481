// safetensors reading (mmap, strict header validation) and writing (streamed,
// atomic). Format: u64 little-endian header length N, N bytes of JSON, data.
// See ../shared/REFERENCE.md section 4 for the validation rules.
#ifndef LLAVA_SAFETENSORS_H
#define LLAVA_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "common/strmap.h"
#include "common/util.h"

typedef enum {
    ST_F64, ST_F32, ST_F16, ST_BF16, ST_I64, ST_I32, ST_I16, ST_I8, ST_U8, ST_BOOL,
    ST_DTYPE_COUNT
} StDtype;

#define ST_MAX_DIMS 8
// Largest header we accept (the format's own reference reader uses 100 MB).
#define ST_MAX_HEADER_BYTES (100u * 1000u * 1000u)

typedef struct {
    char *name;
    StDtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    int64_t numel;
    uint64_t begin, end;  // byte offsets relative to the data section
} StTensor;

typedef struct {
    char *path;
    uint8_t *map;          // the whole file, mmapped read-only
    size_t file_size;
    const uint8_t *data;   // map + 8 + header length
    int n;                 // number of tensors
    StTensor *tensors;     // [n], in header order
    StrMap by_name;        // name -> index into tensors
    int n_meta;
    char **meta_keys, **meta_values;  // "__metadata__" string map
} StFile;

const char *st_dtype_name(StDtype dt);
size_t st_dtype_size(StDtype dt);
int st_dtype_from_name(const char *s, StDtype *out);

// Opens and validates. On failure returns -1 with a message naming the file
// and what is wrong; the StFile is then empty and st_close is a no-op.
int st_open(StFile *f, const char *path, Error *err);
void st_close(StFile *f);
const StTensor *st_find(const StFile *f, const char *name);
const char *st_metadata(const StFile *f, const char *key);
// "[2, 3, 4]" into buf
const char *st_shape_str(const int64_t *shape, int ndim, char *buf, size_t cap);

// Converts a floating tensor (F64/F32/F16/BF16) to fp32 into dst[numel].
int st_read_f32(const StFile *f, const StTensor *t, float *dst, Error *err);
// Converts an integer or bool tensor to int64 into dst[numel].
int st_read_i64(const StFile *f, const StTensor *t, int64_t *dst, Error *err);

// ---- writing ---------------------------------------------------------------
typedef struct {
    char *name;
    StDtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data;  // borrowed unless owned != NULL
    void *owned;
    size_t bytes;
} StWriteEntry;

typedef struct {
    StWriteEntry *entries;
    int n, cap;
    int n_meta;
    char **meta_keys, **meta_values;
} StWriter;

void st_writer_init(StWriter *w);
void st_writer_free(StWriter *w);
// Adds a tensor whose bytes stay owned by the caller until st_writer_save.
void st_writer_add(StWriter *w, const char *name, StDtype dtype, int ndim,
                   const int64_t *shape, const void *data);
// Same, but copies the bytes.
void st_writer_add_copy(StWriter *w, const char *name, StDtype dtype, int ndim,
                        const int64_t *shape, const void *data);
// Adds an fp32 host tensor converted to `dtype` (F32, BF16 or F16).
void st_writer_add_f32_as(StWriter *w, const char *name, StDtype dtype, int ndim,
                          const int64_t *shape, const float *data);
void st_writer_set_metadata(StWriter *w, const char *key, const char *value);
// Streams the file to path.tmp, fsyncs, renames over path. Total data bytes
// are returned through total_bytes when not NULL.
int st_writer_save(const StWriter *w, const char *path, uint64_t *total_bytes, Error *err);

#endif
