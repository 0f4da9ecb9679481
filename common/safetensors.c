#include "common/safetensors.h"

#include "common/json.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct {
    const char *name;
    size_t size;
} dtype_info[ST_DTYPE_COUNT] = {
    [ST_F64] = {"F64", 8}, [ST_F32] = {"F32", 4}, [ST_F16] = {"F16", 2},
    [ST_BF16] = {"BF16", 2}, [ST_I64] = {"I64", 8}, [ST_I32] = {"I32", 4},
    [ST_I16] = {"I16", 2}, [ST_I8] = {"I8", 1}, [ST_U8] = {"U8", 1},
    [ST_BOOL] = {"BOOL", 1},
};

const char *st_dtype_name(StDtype dt) { return dt < ST_DTYPE_COUNT ? dtype_info[dt].name : "?"; }
size_t st_dtype_size(StDtype dt) { return dt < ST_DTYPE_COUNT ? dtype_info[dt].size : 0; }

int st_dtype_from_name(const char *s, StDtype *out) {
    for (int i = 0; i < ST_DTYPE_COUNT; i++) {
        if (strcmp(s, dtype_info[i].name) == 0) {
            *out = (StDtype)i;
            return 0;
        }
    }
    return -1;
}

const char *st_shape_str(const int64_t *shape, int ndim, char *buf, size_t cap) {
    size_t used = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (used < cap) snprintf(buf + used, cap - used, "]");
    return buf;
}

// ---- reading -----------------------------------------------------------------

static int compare_by_begin(const void *a, const void *b) {
    const StTensor *x = *(const StTensor *const *)a, *y = *(const StTensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : (x->end > y->end);
}

// Parses one header entry into t. Returns -1 with err naming the tensor.
static int parse_entry(const cJSON *e, StTensor *t, uint64_t data_size, const char *path, Error *err) {
    const char *name = e->string;
    if (!cJSON_IsObject(e)) return err_set(err, "%s: tensor '%s': header entry is not an object", path, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt)) return err_set(err, "%s: tensor '%s': missing or non-string \"dtype\"", path, name);
    if (st_dtype_from_name(dt->valuestring, &t->dtype) != 0)
        return err_set(err, "%s: tensor '%s': unknown dtype \"%s\" (supported: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL)",
                       path, name, dt->valuestring);
    if (!cJSON_IsArray(shape)) return err_set(err, "%s: tensor '%s': missing or non-array \"shape\"", path, name);
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > ST_MAX_DIMS) return err_set(err, "%s: tensor '%s': %d dimensions (at most %d)", path, name, ndim, ST_MAX_DIMS);
    t->ndim = ndim;
    uint64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        const cJSON *d = cJSON_GetArrayItem(shape, i);
        int64_t dim;
        if (json_number_to_int64(d, 0, 9.0e15, &dim) != 0)
            return err_set(err, "%s: tensor '%s': shape[%d] is not an integer in [0, 9e15]", path, name, i);
        t->shape[i] = dim;
        if (t->shape[i] != 0 && numel > UINT64_MAX / (uint64_t)t->shape[i])
            return err_set(err, "%s: tensor '%s': element count overflows", path, name);
        numel *= (uint64_t)t->shape[i];
    }
    t->numel = (int64_t)numel;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2)
        return err_set(err, "%s: tensor '%s': \"data_offsets\" must be [begin, end]", path, name);
    int64_t b, en;
    if (json_number_to_int64(cJSON_GetArrayItem(offs, 0), 0, 9.0e15, &b) != 0 ||
        json_number_to_int64(cJSON_GetArrayItem(offs, 1), 0, 9.0e15, &en) != 0)
        return err_set(err, "%s: tensor '%s': data_offsets are not integers in [0, 9e15]", path, name);
    t->begin = (uint64_t)b;
    t->end = (uint64_t)en;
    if (t->end < t->begin)
        return err_set(err, "%s: tensor '%s': data_offsets end %llu < begin %llu", path, name,
                       (unsigned long long)t->end, (unsigned long long)t->begin);
    if (t->end > data_size)
        return err_set(err, "%s: tensor '%s': data_offsets [%llu, %llu] out of range (data section is %llu bytes)",
                       path, name, (unsigned long long)t->begin, (unsigned long long)t->end,
                       (unsigned long long)data_size);
    size_t isz = st_dtype_size(t->dtype);
    if (numel > UINT64_MAX / isz || numel * isz != t->end - t->begin) {
        char sh[256];
        return err_set(err, "%s: tensor '%s': %s %s needs %llu bytes but data_offsets span %llu", path, name,
                       st_dtype_name(t->dtype), st_shape_str(t->shape, ndim, sh, sizeof sh),
                       (unsigned long long)(numel * isz), (unsigned long long)(t->end - t->begin));
    }
    return 0;
}

static int parse_metadata(StFile *f, const cJSON *meta, Error *err) {
    if (!cJSON_IsObject(meta)) return err_set(err, "%s: \"__metadata__\" is not an object", f->path);
    if (f->meta_keys) return err_set(err, "%s: \"__metadata__\" appears twice in the header", f->path);
    int n = cJSON_GetArraySize(meta);
    f->meta_keys = xcalloc((size_t)n, sizeof(char *));
    f->meta_values = xcalloc((size_t)n, sizeof(char *));
    const cJSON *it;
    cJSON_ArrayForEach(it, meta) {
        if (!cJSON_IsString(it))
            return err_set(err, "%s: \"__metadata__\" value for '%s' is not a string", f->path, it->string);
        f->meta_keys[f->n_meta] = xstrdup(it->string);
        f->meta_values[f->n_meta] = xstrdup(it->valuestring);
        f->n_meta++;
    }
    return 0;
}

static int parse_header(StFile *f, const char *json, size_t len, uint64_t data_size, Error *err) {
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!root)
        return err_set(err, "%s: header is not valid JSON (near byte %ld of the header)", f->path,
                       (long)(cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() - json : 0));
    int rc = -1;
    if (json_find_nul_escape(json, len) >= 0) {
        err_set(err, "%s: the header holds \\u0000 (a NUL character) in a name or value", f->path);
        goto done;
    }
    for (const char *p = end; p && p < json + len; p++) {
        if (*p != ' ' && *p != '\n' && *p != '\t' && *p != '\r' && *p != '\0') {
            err_set(err, "%s: trailing bytes after the header JSON", f->path);
            goto done;
        }
    }
    if (!cJSON_IsObject(root)) {
        err_set(err, "%s: header is not a JSON object", f->path);
        goto done;
    }
    int count = cJSON_GetArraySize(root);
    f->tensors = xcalloc((size_t)count, sizeof(StTensor));
    strmap_init(&f->by_name);
    const cJSON *e;
    cJSON_ArrayForEach(e, root) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (parse_metadata(f, e, err) != 0) goto done;
            continue;
        }
        StTensor *t = &f->tensors[f->n];
        if (parse_entry(e, t, data_size, f->path, err) != 0) goto done;
        t->name = xstrdup(e->string);
        if (!strmap_put(&f->by_name, t->name, f->n)) {
            err_set(err, "%s: tensor '%s' appears twice in the header", f->path, t->name);
            f->n++;
            goto done;
        }
        f->n++;
    }
    // Data must be tiled exactly: sorted by begin, each tensor starts where the
    // previous ended, and the last one ends at the end of the file.
    StTensor **order = xmalloc((size_t)(f->n ? f->n : 1) * sizeof(StTensor *));
    for (int i = 0; i < f->n; i++) order[i] = &f->tensors[i];
    qsort(order, (size_t)f->n, sizeof(StTensor *), compare_by_begin);
    uint64_t cursor = 0;
    for (int i = 0; i < f->n; i++) {
        if (order[i]->begin != cursor) {
            if (order[i]->begin < cursor)
                err_set(err, "%s: tensor '%s' data [%llu, %llu] overlaps the previous tensor '%s'", f->path,
                        order[i]->name, (unsigned long long)order[i]->begin, (unsigned long long)order[i]->end,
                        order[i - 1]->name);
            else
                err_set(err, "%s: gap in the data section before tensor '%s' (bytes %llu..%llu unused)", f->path,
                        order[i]->name, (unsigned long long)cursor, (unsigned long long)order[i]->begin);
            free(order);
            goto done;
        }
        cursor = order[i]->end;
    }
    free(order);
    if (cursor != data_size) {
        err_set(err, "%s: file size %zu does not match the header (expected %llu = 8 + header + data)", f->path,
                f->file_size, (unsigned long long)(f->file_size - data_size + cursor));
        goto done;
    }
    rc = 0;
done:
    cJSON_Delete(root);
    return rc;
}

int st_open(StFile *f, const char *path, Error *err) {
    memset(f, 0, sizeof *f);
    f->path = xstrdup(path);
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        err_set(err, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        err_set(err, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        err_set(err, "%s: is %s, not a safetensors file", path, S_ISDIR(st.st_mode) ? "a directory" : "not a regular file");
        close(fd);
        goto fail;
    }
    f->file_size = (size_t)st.st_size;
    if (f->file_size < 8) {
        err_set(err, "%s: truncated safetensors file (%zu bytes, less than the 8-byte header length)", path,
                f->file_size);
        close(fd);
        goto fail;
    }
    void *map = mmap(NULL, f->file_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        err_set(err, "%s: mmap failed: %s", path, strerror(errno));
        goto fail;
    }
    f->map = map;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | f->map[i];
    if (n > ST_MAX_HEADER_BYTES) {
        err_set(err, "%s: header length %llu exceeds the %u-byte limit (corrupt or not a safetensors file)", path,
                (unsigned long long)n, ST_MAX_HEADER_BYTES);
        goto fail;
    }
    if (n > f->file_size - 8) {
        err_set(err, "%s: header length %llu is larger than the file (%zu bytes): truncated file?", path,
                (unsigned long long)n, f->file_size);
        goto fail;
    }
    f->data = f->map + 8 + n;
    if (parse_header(f, (const char *)f->map + 8, (size_t)n, f->file_size - 8 - n, err) != 0) goto fail;
    return 0;
fail:
    st_close(f);
    return -1;
}

void st_close(StFile *f) {
    if (f->map) munmap(f->map, f->file_size);
    for (int i = 0; i < f->n; i++) free(f->tensors[i].name);
    free(f->tensors);
    if (f->by_name.cap) strmap_free(&f->by_name);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    free(f->meta_keys);
    free(f->meta_values);
    free(f->path);
    memset(f, 0, sizeof *f);
}

const StTensor *st_find(const StFile *f, const char *name) {
    if (!f->by_name.cap) return NULL;
    int i = strmap_get(&f->by_name, name);
    return i < 0 ? NULL : &f->tensors[i];
}

const char *st_metadata(const StFile *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_values[i];
    return NULL;
}

// Gives back the mapped pages of a tensor that has been read: file pages
// of a mapping count in the process's RSS, so loading a checkpoint would
// otherwise hold the whole file next to the weights it was copied into. A
// later read of the same tensor pages it in again from the file. Failure
// only means the pages stay resident, so its result is not an error.
static void st_release_pages(const StFile *f, const StTensor *t) {
    const long page_size = sysconf(_SC_PAGESIZE);
    if (page_size <= 0) return;
    const uintptr_t page = (uintptr_t)page_size, lo = ((uintptr_t)(f->data + t->begin) + page - 1) & ~(page - 1);
    const uintptr_t hi = (uintptr_t)(f->data + t->end) & ~(page - 1);
    if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

int st_read_f32(const StFile *f, const StTensor *t, float *dst, Error *err) {
    const uint8_t *src = f->data + t->begin;
    int64_t n = t->numel;
    switch (t->dtype) {
    case ST_F32: memcpy(dst, src, (size_t)n * 4); break;
    case ST_F64:
        for (int64_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, src + 8 * i, 8);
            dst[i] = (float)d;
        }
        break;
    case ST_BF16:
    case ST_F16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            dst[i] = t->dtype == ST_BF16 ? bf16_to_f32(h) : f16_to_f32(h);
        }
        break;
    default:
        return err_set(err, "%s: tensor '%s' has dtype %s, expected a floating type (F32, F16, BF16)", f->path,
                       t->name, st_dtype_name(t->dtype));
    }
    st_release_pages(f, t);
    return 0;
}

int st_read_i64(const StFile *f, const StTensor *t, int64_t *dst, Error *err) {
    const uint8_t *src = f->data + t->begin;
    for (int64_t i = 0; i < t->numel; i++) {
        switch (t->dtype) {
        case ST_I64: memcpy(&dst[i], src + 8 * i, 8); break;
        case ST_I32: { int32_t v; memcpy(&v, src + 4 * i, 4); dst[i] = v; break; }
        case ST_I16: { int16_t v; memcpy(&v, src + 2 * i, 2); dst[i] = v; break; }
        case ST_I8: dst[i] = (int8_t)src[i]; break;
        case ST_U8: dst[i] = src[i]; break;
        case ST_BOOL: dst[i] = src[i] != 0; break;
        default:
            return err_set(err, "%s: tensor '%s' has dtype %s, expected an integer type (I64, I32, U8, BOOL)",
                           f->path, t->name, st_dtype_name(t->dtype));
        }
    }
    return 0;
}

// ---- writing -----------------------------------------------------------------

void st_writer_init(StWriter *w) { memset(w, 0, sizeof *w); }

void st_writer_free(StWriter *w) {
    for (int i = 0; i < w->n; i++) {
        free(w->entries[i].name);
        free(w->entries[i].owned);
    }
    free(w->entries);
    for (int i = 0; i < w->n_meta; i++) {
        free(w->meta_keys[i]);
        free(w->meta_values[i]);
    }
    free(w->meta_keys);
    free(w->meta_values);
    memset(w, 0, sizeof *w);
}

static StWriteEntry *writer_push(StWriter *w, const char *name, StDtype dtype, int ndim, const int64_t *shape) {
    CHECK(ndim >= 0 && ndim <= ST_MAX_DIMS, "tensor '%s': bad ndim %d", name, ndim);
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 64;
        w->entries = xrealloc(w->entries, (size_t)w->cap * sizeof(StWriteEntry));
    }
    StWriteEntry *e = &w->entries[w->n++];
    memset(e, 0, sizeof *e);
    e->name = xstrdup(name);
    e->dtype = dtype;
    e->ndim = ndim;
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        e->shape[i] = shape[i];
        numel *= (size_t)shape[i];
    }
    e->bytes = numel * st_dtype_size(dtype);
    return e;
}

void st_writer_add(StWriter *w, const char *name, StDtype dtype, int ndim, const int64_t *shape, const void *data) {
    writer_push(w, name, dtype, ndim, shape)->data = data;
}

void st_writer_add_copy(StWriter *w, const char *name, StDtype dtype, int ndim, const int64_t *shape,
                        const void *data) {
    StWriteEntry *e = writer_push(w, name, dtype, ndim, shape);
    e->owned = xmalloc(e->bytes);
    memcpy(e->owned, data, e->bytes);
    e->data = e->owned;
}

void st_writer_add_f32_as(StWriter *w, const char *name, StDtype dtype, int ndim, const int64_t *shape,
                          const float *data) {
    if (dtype == ST_F32) {
        st_writer_add_copy(w, name, dtype, ndim, shape, data);
        return;
    }
    CHECK(dtype == ST_BF16 || dtype == ST_F16, "tensor '%s': cannot convert fp32 to %s", name, st_dtype_name(dtype));
    StWriteEntry *e = writer_push(w, name, dtype, ndim, shape);
    size_t n = e->bytes / 2;
    uint16_t *out = xmalloc(e->bytes);
    for (size_t i = 0; i < n; i++) out[i] = dtype == ST_BF16 ? f32_to_bf16(data[i]) : f32_to_f16(data[i]);
    e->owned = out;
    e->data = out;
}

void st_writer_set_metadata(StWriter *w, const char *key, const char *value) {
    w->meta_keys = xrealloc(w->meta_keys, (size_t)(w->n_meta + 1) * sizeof(char *));
    w->meta_values = xrealloc(w->meta_values, (size_t)(w->n_meta + 1) * sizeof(char *));
    w->meta_keys[w->n_meta] = xstrdup(key);
    w->meta_values[w->n_meta] = xstrdup(value);
    w->n_meta++;
}

// Appends s to the growing buffer as a JSON string literal.
typedef struct {
    char *p;
    size_t len, cap;
} Buf;

static void buf_put(Buf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_printf(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(Buf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    CHECK(n >= 0 && (size_t)n < sizeof tmp, "formatted header piece too long");
    buf_put(b, tmp, (size_t)n);
}

static void buf_json_string(Buf *b, const char *s) {
    buf_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            buf_put(b, esc, 2);
        } else if (c < 0x20) {
            buf_printf(b, "\\u%04x", c);
        } else {
            buf_put(b, (const char *)&c, 1);
        }
    }
    buf_put(b, "\"", 1);
}

static int write_all(int fd, const void *data, size_t len) {
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int st_writer_save(const StWriter *w, const char *path, uint64_t *total_bytes, Error *err) {
    Buf h = {0};
    buf_put(&h, "{", 1);
    int first = 1;
    if (w->n_meta) {
        buf_put(&h, "\"__metadata__\":{", 16);
        for (int i = 0; i < w->n_meta; i++) {
            if (i) buf_put(&h, ",", 1);
            buf_json_string(&h, w->meta_keys[i]);
            buf_put(&h, ":", 1);
            buf_json_string(&h, w->meta_values[i]);
        }
        buf_put(&h, "}", 1);
        first = 0;
    }
    uint64_t offset = 0;
    for (int i = 0; i < w->n; i++) {
        const StWriteEntry *e = &w->entries[i];
        if (!first) buf_put(&h, ",", 1);
        first = 0;
        buf_json_string(&h, e->name);
        buf_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", st_dtype_name(e->dtype));
        for (int d = 0; d < e->ndim; d++) buf_printf(&h, "%s%lld", d ? "," : "", (long long)e->shape[d]);
        buf_printf(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)offset,
                   (unsigned long long)(offset + e->bytes));
        offset += e->bytes;
    }
    buf_put(&h, "}", 1);
    while (h.len % 8) buf_put(&h, " ", 1);  // the format pads the header to 8 bytes

    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        free(h.p);
        return err_set(err, "%s: path too long", path);
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        free(h.p);
        return err_set(err, "%s: cannot create: %s", tmp, strerror(errno));
    }
    uint8_t len_le[8];
    for (int i = 0; i < 8; i++) len_le[i] = (uint8_t)((uint64_t)h.len >> (8 * i));
    int bad = write_all(fd, len_le, 8) || write_all(fd, h.p, h.len);
    for (int i = 0; i < w->n && !bad; i++) bad = write_all(fd, w->entries[i].data, w->entries[i].bytes);
    free(h.p);
    if (bad || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return err_set(err, "%s: write failed: %s", tmp, strerror(e));
    }
    if (close(fd) != 0 || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return err_set(err, "%s: could not finish writing: %s", path, strerror(e));
    }
    fsync_parent_dir(path);
    if (total_bytes) *total_bytes = offset;
    return 0;
}
