// HDF5 shard files (layout in docs/formats.md). Token arrays and per-sample
// tables are buffered in memory and written once when the shard is finished;
// images go straight to extendible chunked datasets (one chunk per image for
// pixels) so a shard of a few GB never sits in memory.
#include "data/shards.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ENCODED_CHUNK (1 << 20)

const char *image_store_name(ImageStore s) { return s == STORE_ENCODED ? "encoded" : "pixels"; }

int image_store_parse(const char *name) {
    if (strcmp(name, "pixels") == 0) return STORE_PIXELS;
    if (strcmp(name, "encoded") == 0) return STORE_ENCODED;
    return -1;
}

// We report our own errors (file + dataset); HDF5's stack dump would only
// repeat them less clearly.
// No library cleanup at exit: when H5Fclose fails (its final flush hit a full
// disk), HDF5 1.10 leaves the half-closed file in its ID table and its atexit
// handler then segfaults on it, turning the write error we reported into a
// crash. Every file is closed explicitly anyway. H5dont_atexit only works
// before the library initializes, so it comes first; later calls fail
// harmlessly.
static void h5_quiet(void) {
    (void)H5dont_atexit();
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

static hid_t vlen_string_type(void) {
    hid_t t = H5Tcopy(H5T_C_S1);
    CHECK(t >= 0 && H5Tset_size(t, H5T_VARIABLE) >= 0 && H5Tset_cset(t, H5T_CSET_UTF8) >= 0,
          "HDF5 string type");
    return t;
}

// ---- writer -------------------------------------------------------------------------

struct ShardWriter {
    char path[1024], tmp[1100];
    ShardFormat fmt;
    hid_t file, d_pixels, d_bytes;
    int64_t n_samples, n_images, n_tokens, n_encoded, payload;
    int32_t *ids, *labels;           // [n_tokens]
    size_t tok_cap;
    int64_t *offset, *item;          // [n_samples]
    int32_t *length, *image, *targets;
    uint8_t *modality;
    char **sample_id;
    size_t sample_cap;
    char **image_path;               // [n_images]
    int64_t *image_offset, *image_length;
    size_t image_cap;
};

static void writer_free(ShardWriter *w) {
    for (int64_t i = 0; i < w->n_samples; i++) free(w->sample_id[i]);
    for (int64_t i = 0; i < w->n_images; i++) free(w->image_path[i]);
    free(w->ids); free(w->labels); free(w->offset); free(w->item); free(w->length); free(w->image); free(w->targets);
    free(w->modality); free(w->sample_id); free(w->image_path); free(w->image_offset); free(w->image_length);
    free(w);
}

static hid_t create_extendible(hid_t file, const char *name, int rank, const hsize_t *dims, const hsize_t *chunk) {
    hsize_t zero[4] = {0}, maxdims[4];
    for (int i = 0; i < rank; i++) {
        zero[i] = i == 0 ? 0 : dims[i];
        maxdims[i] = i == 0 ? H5S_UNLIMITED : dims[i];
    }
    hid_t space = H5Screate_simple(rank, zero, maxdims);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hid_t d = -1;
    if (space >= 0 && dcpl >= 0 && H5Pset_chunk(dcpl, rank, chunk) >= 0)
        d = H5Dcreate2(file, name, H5T_STD_U8LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl);
    H5Sclose(space);
    return d;
}

ShardWriter *shard_writer_create(const char *path, const ShardFormat *fmt, Error *err) {
    h5_quiet();
    ShardWriter *w = xcalloc(1, sizeof *w);
    w->fmt = *fmt;
    w->d_pixels = w->d_bytes = -1;
    if (snprintf(w->path, sizeof w->path, "%s", path) >= (int)sizeof w->path) {
        err_set(err, "%s: path too long", path);
        free(w);
        return NULL;
    }
    snprintf(w->tmp, sizeof w->tmp, "%s.tmp", path);
    unlink(w->tmp);
    w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (w->file < 0) {
        err_set(err, "%s: cannot create the HDF5 file", w->tmp);
        free(w);
        return NULL;
    }
    int ok = 1;
    for (const char *g = "samples\0tokens\0images\0"; *g; g += strlen(g) + 1) {
        hid_t gid = H5Gcreate2(w->file, g, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        ok &= gid >= 0;
        H5Gclose(gid);
    }
    if (ok && fmt->store == STORE_PIXELS) {
        const hsize_t S = (hsize_t)fmt->image_size, dims[4] = {0, 3, S, S}, chunk[4] = {1, 3, S, S};
        ok = S > 0 && (w->d_pixels = create_extendible(w->file, "images/pixels", 4, dims, chunk)) >= 0;
    } else if (ok) {
        const hsize_t dims[1] = {0}, chunk[1] = {ENCODED_CHUNK};
        ok = (w->d_bytes = create_extendible(w->file, "images/bytes", 1, dims, chunk)) >= 0;
    }
    if (!ok) {
        err_set(err, "%s: cannot create the shard's datasets", w->tmp);
        shard_writer_abort(w);
        return NULL;
    }
    return w;
}

int64_t shard_writer_samples(const ShardWriter *w) { return w->n_samples; }
int64_t shard_writer_bytes(const ShardWriter *w) { return w->payload; }

// Appends `n` bytes (count[0] rows) at row `at` of an extendible dataset.
static int append_rows(hid_t d, int rank, hsize_t at, const hsize_t *count, const void *data) {
    hsize_t dims[4], start[4] = {0};
    for (int i = 0; i < rank; i++) dims[i] = count[i];
    dims[0] = at + count[0];
    start[0] = at;
    if (H5Dset_extent(d, dims) < 0) return -1;
    hid_t fs = H5Dget_space(d), ms = H5Screate_simple(rank, count, NULL);
    int rc = (fs >= 0 && ms >= 0 && H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) >= 0 &&
              H5Dwrite(d, H5T_NATIVE_UINT8, ms, fs, H5P_DEFAULT, data) >= 0)
                 ? 0
                 : -1;
    H5Sclose(ms);
    H5Sclose(fs);
    return rc;
}

// Capacity for `need` elements of parallel arrays that share one capacity:
// returns the new capacity (the caller reallocs each array) or 0 when enough.
static size_t grown_cap(size_t cap, size_t need) {
    if (need <= cap) return 0;
    size_t c = cap ? cap : 256;
    while (c < need) c *= 2;
    return c;
}

int shard_writer_add(ShardWriter *w, const ShardSample *s, Error *err) {
    CHECK(s->length > 0, "empty sample %s", s->id);
    const int has_image = s->image_path != NULL;
    if (has_image) {
        const int64_t k = w->n_images;
        size_t cap = grown_cap(w->image_cap, (size_t)k + 1);
        if (cap) {
            w->image_path = xrealloc(w->image_path, cap * sizeof(char *));
            w->image_offset = xrealloc(w->image_offset, cap * sizeof(int64_t));
            w->image_length = xrealloc(w->image_length, cap * sizeof(int64_t));
            w->image_cap = cap;
        }
        if (w->fmt.store == STORE_PIXELS) {
            CHECK(s->pixels, "pixels missing for %s", s->id);
            const hsize_t S = (hsize_t)w->fmt.image_size, count[4] = {1, 3, S, S};
            if (append_rows(w->d_pixels, 4, (hsize_t)k, count, s->pixels) != 0)
                return err_set(err, "%s: cannot write the pixels of sample '%s'", w->tmp, s->id);
            w->image_offset[k] = k * 3 * (int64_t)S * (int64_t)S;
            w->image_length[k] = 3 * (int64_t)S * (int64_t)S;
        } else {
            CHECK(s->encoded && s->encoded_len > 0, "encoded image missing for %s", s->id);
            const hsize_t count[1] = {s->encoded_len};
            if (append_rows(w->d_bytes, 1, (hsize_t)w->n_encoded, count, s->encoded) != 0)
                return err_set(err, "%s: cannot write the image bytes of sample '%s'", w->tmp, s->id);
            w->image_offset[k] = w->n_encoded;
            w->image_length[k] = (int64_t)s->encoded_len;
            w->n_encoded += (int64_t)s->encoded_len;
        }
        w->image_path[k] = xstrdup(s->image_path);
        w->payload += w->image_length[k];
        w->n_images++;
    }
    size_t cap = grown_cap(w->tok_cap, (size_t)(w->n_tokens + s->length));
    if (cap) {
        w->ids = xrealloc(w->ids, cap * sizeof(int32_t));
        w->labels = xrealloc(w->labels, cap * sizeof(int32_t));
        w->tok_cap = cap;
    }
    memcpy(w->ids + w->n_tokens, s->input_ids, (size_t)s->length * sizeof(int32_t));
    memcpy(w->labels + w->n_tokens, s->labels, (size_t)s->length * sizeof(int32_t));

    cap = grown_cap(w->sample_cap, (size_t)w->n_samples + 1);
    if (cap) {
        w->offset = xrealloc(w->offset, cap * sizeof(int64_t));
        w->item = xrealloc(w->item, cap * sizeof(int64_t));
        w->length = xrealloc(w->length, cap * sizeof(int32_t));
        w->image = xrealloc(w->image, cap * sizeof(int32_t));
        w->targets = xrealloc(w->targets, cap * sizeof(int32_t));
        w->modality = xrealloc(w->modality, cap);
        w->sample_id = xrealloc(w->sample_id, cap * sizeof(char *));
        w->sample_cap = cap;
    }
    const int64_t i = w->n_samples;
    w->offset[i] = w->n_tokens;
    w->length[i] = s->length;
    w->item[i] = s->item;
    w->modality[i] = has_image ? MODALITY_IMAGE : MODALITY_TEXT;
    w->image[i] = has_image ? (int32_t)(w->n_images - 1) : -1;
    w->sample_id[i] = xstrdup(s->id ? s->id : "");
    // Position t is trained to predict label t+1: the first label never counts.
    int32_t targets = 0;
    for (int t = 1; t < s->length; t++) targets += s->labels[t] != -100;
    w->targets[i] = targets;
    w->n_tokens += s->length;
    w->payload += 8 * (int64_t)s->length;
    w->n_samples++;
    return 0;
}

static int write_array(hid_t file, const char *name, hid_t file_type, hid_t mem_type, int64_t n, const void *data) {
    hsize_t dims[1] = {(hsize_t)n};
    hid_t space = H5Screate_simple(1, dims, NULL);
    hid_t d = H5Dcreate2(file, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = (space >= 0 && d >= 0 && (n == 0 || H5Dwrite(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0))
                 ? 0
                 : -1;
    H5Dclose(d);
    H5Sclose(space);
    return rc;
}

static int write_attr_i64(hid_t obj, const char *name, int64_t v) {
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT);
    int rc = (a >= 0 && H5Awrite(a, H5T_NATIVE_INT64, &v) >= 0) ? 0 : -1;
    H5Aclose(a);
    H5Sclose(space);
    return rc;
}

static int write_attr_str(hid_t obj, const char *name, const char *v) {
    hid_t space = H5Screate(H5S_SCALAR), t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(v) + 1);
    H5Tset_strpad(t, H5T_STR_NULLTERM);
    hid_t a = H5Acreate2(obj, name, t, space, H5P_DEFAULT, H5P_DEFAULT);
    int rc = (a >= 0 && H5Awrite(a, t, v) >= 0) ? 0 : -1;
    H5Aclose(a);
    H5Tclose(t);
    H5Sclose(space);
    return rc;
}

static int write_strings(hid_t file, const char *name, int64_t n, char **strings) {
    hid_t t = vlen_string_type();
    int rc = write_array(file, name, t, t, n, strings);
    H5Tclose(t);
    return rc;
}

static int write_scalar_string(hid_t file, const char *name, const char *s) {
    hid_t t = vlen_string_type(), space = H5Screate(H5S_SCALAR);
    hid_t d = H5Dcreate2(file, name, t, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = (d >= 0 && H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, &s) >= 0) ? 0 : -1;
    H5Dclose(d);
    H5Sclose(space);
    H5Tclose(t);
    return rc;
}

static int fsync_path(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int shard_writer_finish(ShardWriter *w, const char *prep_info_json, Error *err) {
    const hid_t f = w->file;
    int ok = 1;
    ok &= write_array(f, "tokens/input_ids", H5T_STD_I32LE, H5T_NATIVE_INT32, w->n_tokens, w->ids) == 0;
    ok &= write_array(f, "tokens/labels", H5T_STD_I32LE, H5T_NATIVE_INT32, w->n_tokens, w->labels) == 0;
    ok &= write_array(f, "samples/offset", H5T_STD_I64LE, H5T_NATIVE_INT64, w->n_samples, w->offset) == 0;
    ok &= write_array(f, "samples/length", H5T_STD_I32LE, H5T_NATIVE_INT32, w->n_samples, w->length) == 0;
    ok &= write_array(f, "samples/modality", H5T_STD_U8LE, H5T_NATIVE_UINT8, w->n_samples, w->modality) == 0;
    ok &= write_array(f, "samples/image", H5T_STD_I32LE, H5T_NATIVE_INT32, w->n_samples, w->image) == 0;
    ok &= write_array(f, "samples/num_targets", H5T_STD_I32LE, H5T_NATIVE_INT32, w->n_samples, w->targets) == 0;
    ok &= write_array(f, "samples/item", H5T_STD_I64LE, H5T_NATIVE_INT64, w->n_samples, w->item) == 0;
    ok &= write_strings(f, "samples/id", w->n_samples, w->sample_id) == 0;
    ok &= write_strings(f, "images/path", w->n_images, w->image_path) == 0;
    if (w->fmt.store == STORE_ENCODED) {
        ok &= write_array(f, "images/offset", H5T_STD_I64LE, H5T_NATIVE_INT64, w->n_images, w->image_offset) == 0;
        ok &= write_array(f, "images/length", H5T_STD_I64LE, H5T_NATIVE_INT64, w->n_images, w->image_length) == 0;
    }
    ok &= write_scalar_string(f, "prep_info", prep_info_json ? prep_info_json : "{}") == 0;
    ok &= write_attr_str(f, "format", SHARD_FORMAT_NAME) == 0;
    ok &= write_attr_i64(f, "version", SHARD_FORMAT_VERSION) == 0;
    ok &= write_attr_str(f, "image_store", image_store_name(w->fmt.store)) == 0;
    ok &= write_attr_i64(f, "image_size", w->fmt.image_size) == 0;
    ok &= write_attr_i64(f, "num_samples", w->n_samples) == 0;
    ok &= write_attr_i64(f, "num_images", w->n_images) == 0;
    ok &= write_attr_i64(f, "num_tokens", w->n_tokens) == 0;
    if (w->d_pixels >= 0) H5Dclose(w->d_pixels);
    if (w->d_bytes >= 0) H5Dclose(w->d_bytes);
    w->d_pixels = w->d_bytes = -1;
    ok &= H5Fclose(w->file) >= 0;
    w->file = -1;
    if (!ok) {
        err_set(err, "%s: writing the shard failed (disk full?)", w->tmp);
        shard_writer_abort(w);
        return -1;
    }
    if (fsync_path(w->tmp) != 0 || rename(w->tmp, w->path) != 0) {
        err_set(err, "%s: cannot fsync/rename to %s: %s", w->tmp, w->path, strerror(errno));
        shard_writer_abort(w);
        return -1;
    }
    writer_free(w);
    return 0;
}

void shard_writer_abort(ShardWriter *w) {
    if (!w) return;
    if (w->d_pixels >= 0) H5Dclose(w->d_pixels);
    if (w->d_bytes >= 0) H5Dclose(w->d_bytes);
    if (w->file >= 0) H5Fclose(w->file);
    unlink(w->tmp);
    writer_free(w);
}

// ---- reader -------------------------------------------------------------------------

static int read_attr_i64(hid_t obj, const char *name, int64_t *v) {
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    int rc = (a >= 0 && H5Aread(a, H5T_NATIVE_INT64, v) >= 0) ? 0 : -1;
    if (a >= 0) H5Aclose(a);
    return rc;
}

static int read_attr_str(hid_t obj, const char *name, char *dst, size_t cap) {
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return -1;
    hid_t t = H5Aget_type(a);
    int rc = -1;
    size_t n = t >= 0 ? H5Tget_size(t) : 0;
    if (t >= 0 && H5Tget_class(t) == H5T_STRING && !H5Tis_variable_str(t) && n > 0 && n < cap) {
        memset(dst, 0, cap);
        rc = H5Aread(a, t, dst) >= 0 ? 0 : -1;
    }
    if (t >= 0) H5Tclose(t);
    H5Aclose(a);
    return rc;
}

// Reads a whole 1-D dataset of n elements (checked) into a new buffer.
static void *read_array(hid_t file, const char *name, hid_t mem_type, size_t elem, int64_t n, int64_t *d_out) {
    hid_t d = H5Dopen2(file, name, H5P_DEFAULT);
    if (d < 0) return NULL;
    hid_t space = H5Dget_space(d);
    hsize_t dims[1] = {0};
    void *buf = NULL;
    if (space >= 0 && H5Sget_simple_extent_ndims(space) == 1 && H5Sget_simple_extent_dims(space, dims, NULL) == 1 &&
        (int64_t)dims[0] == n) {
        buf = xmalloc((size_t)(n ? n : 1) * elem);
        if (n > 0 && H5Dread(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
            free(buf);
            buf = NULL;
        }
    }
    H5Sclose(space);
    if (d_out && buf) *d_out = d;
    else H5Dclose(d);
    return buf;
}

static int64_t open_dataset(hid_t file, const char *name) { return H5Dopen2(file, name, H5P_DEFAULT); }

int shard_reader_open(ShardReader *r, const char *path, Error *err) {
    h5_quiet();
    memset(r, 0, sizeof *r);
    r->d_ids = r->d_labels = r->d_pixels = r->d_bytes = r->d_ids_str = -1;
    snprintf(r->path, sizeof r->path, "%s", path);
    r->hid = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (r->hid < 0) return err_set(err, "%s: cannot open as an HDF5 file", path);
    char format[64], store[32];
    int64_t version = 0, S = 0;
    if (read_attr_str(r->hid, "format", format, sizeof format) != 0 || strcmp(format, SHARD_FORMAT_NAME) != 0) {
        err_set(err, "%s: not a llava.c shard (no 'format' attribute \"%s\")", path, SHARD_FORMAT_NAME);
        goto fail;
    }
    if (read_attr_i64(r->hid, "version", &version) != 0 || version != SHARD_FORMAT_VERSION) {
        err_set(err, "%s: shard format version %lld, this build reads version %d: re-run llava prep", path,
                (long long)version, SHARD_FORMAT_VERSION);
        goto fail;
    }
    if (read_attr_str(r->hid, "image_store", store, sizeof store) != 0 || image_store_parse(store) < 0 ||
        read_attr_i64(r->hid, "image_size", &S) != 0 || read_attr_i64(r->hid, "num_samples", &r->n_samples) != 0 ||
        read_attr_i64(r->hid, "num_images", &r->n_images) != 0 ||
        read_attr_i64(r->hid, "num_tokens", &r->n_tokens) != 0 || r->n_samples < 0 || r->n_images < 0 ||
        r->n_tokens < 0) {
        err_set(err, "%s: missing or invalid shard attributes", path);
        goto fail;
    }
    r->fmt.store = (ImageStore)image_store_parse(store);
    r->fmt.image_size = (int)S;
    const int64_t n = r->n_samples;
    r->offset = read_array(r->hid, "samples/offset", H5T_NATIVE_INT64, 8, n, NULL);
    r->length = read_array(r->hid, "samples/length", H5T_NATIVE_INT32, 4, n, NULL);
    r->modality = read_array(r->hid, "samples/modality", H5T_NATIVE_UINT8, 1, n, NULL);
    r->image = read_array(r->hid, "samples/image", H5T_NATIVE_INT32, 4, n, NULL);
    r->item = read_array(r->hid, "samples/item", H5T_NATIVE_INT64, 8, n, NULL);
    r->targets = read_array(r->hid, "samples/num_targets", H5T_NATIVE_INT32, 4, n, NULL);
    if (!r->offset || !r->length || !r->modality || !r->image || !r->item || !r->targets) {
        err_set(err, "%s: a samples/ table is missing or has the wrong size (expected %lld)", path, (long long)n);
        goto fail;
    }
    r->d_ids = open_dataset(r->hid, "tokens/input_ids");
    r->d_labels = open_dataset(r->hid, "tokens/labels");
    r->d_ids_str = open_dataset(r->hid, "samples/id");
    if (r->d_ids < 0 || r->d_labels < 0 || r->d_ids_str < 0) {
        err_set(err, "%s: tokens/input_ids, tokens/labels or samples/id is missing", path);
        goto fail;
    }
    if (r->fmt.store == STORE_PIXELS) {
        r->d_pixels = open_dataset(r->hid, "images/pixels");
        if (r->d_pixels < 0 || S <= 0) {
            err_set(err, "%s: images/pixels is missing", path);
            goto fail;
        }
    } else {
        r->d_bytes = open_dataset(r->hid, "images/bytes");
        r->image_offset = read_array(r->hid, "images/offset", H5T_NATIVE_INT64, 8, r->n_images, NULL);
        r->image_length = read_array(r->hid, "images/length", H5T_NATIVE_INT64, 8, r->n_images, NULL);
        if (r->d_bytes < 0 || !r->image_offset || !r->image_length) {
            err_set(err, "%s: images/bytes, images/offset or images/length is missing", path);
            goto fail;
        }
    }
    // Validate the tables once so that reads never go out of range.
    for (int64_t i = 0; i < n; i++) {
        if (r->length[i] <= 0 || r->offset[i] < 0 || r->offset[i] + r->length[i] > r->n_tokens ||
            r->image[i] < -1 || r->image[i] >= r->n_images ||
            (r->modality[i] == MODALITY_IMAGE) != (r->image[i] >= 0)) {
            err_set(err, "%s: sample %lld has an invalid offset/length/image entry", path, (long long)i);
            goto fail;
        }
    }
    return 0;
fail:
    shard_reader_close(r);
    return -1;
}

void shard_reader_close(ShardReader *r) {
    int64_t ds[] = {r->d_ids, r->d_labels, r->d_pixels, r->d_bytes, r->d_ids_str};
    for (int i = 0; i < 5; i++)
        if (ds[i] > 0) H5Dclose(ds[i]);
    if (r->hid > 0) H5Fclose(r->hid);
    free(r->offset); free(r->length); free(r->modality); free(r->image); free(r->item);
    free(r->targets); free(r->image_offset); free(r->image_length);
    memset(r, 0, sizeof *r);
    r->hid = -1;
}

// Reads count[] elements at start[] of dataset d into dst.
static int read_slab(hid_t d, int rank, const hsize_t *start, const hsize_t *count, hid_t mem_type, void *dst) {
    hid_t fs = H5Dget_space(d), ms = H5Screate_simple(rank, count, NULL);
    int rc = (fs >= 0 && ms >= 0 && H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) >= 0 &&
              H5Dread(d, mem_type, ms, fs, H5P_DEFAULT, dst) >= 0)
                 ? 0
                 : -1;
    H5Sclose(ms);
    H5Sclose(fs);
    return rc;
}

int shard_read_tokens(ShardReader *r, int64_t offset, int len, int32_t *ids, int32_t *labels, Error *err) {
    if (offset < 0 || len <= 0 || offset + len > r->n_tokens)
        return err_set(err, "%s: token range [%lld, +%d) out of bounds", r->path, (long long)offset, len);
    const hsize_t start[1] = {(hsize_t)offset}, count[1] = {(hsize_t)len};
    if (read_slab(r->d_ids, 1, start, count, H5T_NATIVE_INT32, ids) != 0 ||
        (labels && read_slab(r->d_labels, 1, start, count, H5T_NATIVE_INT32, labels) != 0))
        return err_set(err, "%s: cannot read tokens at %lld", r->path, (long long)offset);
    return 0;
}

int shard_read_pixels(ShardReader *r, int64_t image, uint8_t *dst, Error *err) {
    if (r->fmt.store != STORE_PIXELS || image < 0 || image >= r->n_images)
        return err_set(err, "%s: no pixel image %lld", r->path, (long long)image);
    const hsize_t S = (hsize_t)r->fmt.image_size, start[4] = {(hsize_t)image, 0, 0, 0}, count[4] = {1, 3, S, S};
    if (read_slab(r->d_pixels, 4, start, count, H5T_NATIVE_UINT8, dst) != 0)
        return err_set(err, "%s: cannot read the pixels of image %lld", r->path, (long long)image);
    return 0;
}

int shard_read_encoded(ShardReader *r, int64_t image, uint8_t *dst, Error *err) {
    if (r->fmt.store != STORE_ENCODED || image < 0 || image >= r->n_images)
        return err_set(err, "%s: no encoded image %lld", r->path, (long long)image);
    const hsize_t start[1] = {(hsize_t)r->image_offset[image]}, count[1] = {(hsize_t)r->image_length[image]};
    if (r->image_length[image] <= 0 || read_slab(r->d_bytes, 1, start, count, H5T_NATIVE_UINT8, dst) != 0)
        return err_set(err, "%s: cannot read the bytes of image %lld", r->path, (long long)image);
    return 0;
}

// One element of a 1-D variable-length string dataset (malloc'ed copy).
static char *read_string_at(hid_t d, int64_t i) {
    hid_t t = vlen_string_type();
    const hsize_t start[1] = {(hsize_t)i}, count[1] = {1};
    char *s = NULL, *copy = NULL;
    if (read_slab(d, 1, start, count, t, &s) == 0 && s) {
        copy = xstrdup(s);
        H5free_memory(s);
    }
    H5Tclose(t);
    return copy;
}

int shard_read_id(ShardReader *r, int64_t sample, char *dst, size_t cap, Error *err) {
    if (sample < 0 || sample >= r->n_samples)
        return err_set(err, "%s: sample %lld out of range", r->path, (long long)sample);
    char *s = read_string_at(r->d_ids_str, sample);
    if (!s) return err_set(err, "%s: cannot read the id of sample %lld", r->path, (long long)sample);
    snprintf(dst, cap, "%s", s);
    free(s);
    return 0;
}

char *shard_read_image_path(ShardReader *r, int64_t image, Error *err) {
    hid_t d = image >= 0 && image < r->n_images ? H5Dopen2(r->hid, "images/path", H5P_DEFAULT) : -1;
    char *s = d >= 0 ? read_string_at(d, image) : NULL;
    if (d >= 0) H5Dclose(d);
    if (!s) err_set(err, "%s: cannot read the path of image %lld", r->path, (long long)image);
    return s;
}

static char *read_prep_info(hid_t file, const char *path, Error *err) {
    hid_t d = H5Dopen2(file, "prep_info", H5P_DEFAULT);
    hid_t t = vlen_string_type();
    char *s = NULL, *copy = NULL;
    if (d >= 0 && H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, &s) >= 0 && s) {
        copy = xstrdup(s);
        H5free_memory(s);
    }
    if (d >= 0) H5Dclose(d);
    H5Tclose(t);
    if (!copy) err_set(err, "%s: cannot read prep_info", path);
    return copy;
}

char *shard_read_prep_info(ShardReader *r, Error *err) { return read_prep_info(r->hid, r->path, err); }

char *shard_file_prep_info(const char *path, Error *err) {
    h5_quiet();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        err_set(err, "%s: cannot open as an HDF5 file", path);
        return NULL;
    }
    char *s = read_prep_info(f, path, err);
    H5Fclose(f);
    return s;
}
