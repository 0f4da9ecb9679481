#include "model/torch_save.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

typedef struct {
    uint8_t *p;
    size_t len, cap;
} Bytes;

static void put(Bytes *b, const void *data, size_t n) {
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 256;
        b->p = xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
}
static void put_u8(Bytes *b, uint8_t v) { put(b, &v, 1); }
static void put_le(Bytes *b, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++) put_u8(b, (uint8_t)(v >> (8 * i)));
}
static void put_str(Bytes *b, const char *s) { put(b, s, strlen(s)); }

// ---- pickle (protocol 2) ---------------------------------------------------------
static void pk_unicode(Bytes *b, const char *s) {  // BINUNICODE
    put_u8(b, 'X');
    put_le(b, strlen(s), 4);
    put_str(b, s);
}
static void pk_global(Bytes *b, const char *module, const char *name) {  // GLOBAL
    put_u8(b, 'c');
    put_str(b, module);
    put_u8(b, '\n');
    put_str(b, name);
    put_u8(b, '\n');
}
static void pk_int(Bytes *b, int64_t v) {  // BININT (4-byte) or LONG1
    if (v >= INT32_MIN && v <= INT32_MAX) {
        put_u8(b, 'J');
        put_le(b, (uint64_t)(int64_t)v, 4);
        return;
    }
    put_u8(b, 0x8a);  // LONG1: 8 little-endian two's-complement bytes
    put_u8(b, 8);
    put_le(b, (uint64_t)v, 8);
}
static void pk_int_tuple(Bytes *b, const int64_t *v, int n) {
    put_u8(b, '(');  // MARK
    for (int i = 0; i < n; i++) pk_int(b, v[i]);
    put_u8(b, 't');  // TUPLE
}

// torch._utils._rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict())
static void pk_tensor(Bytes *b, const TorchTensor *t, int key) {
    int64_t numel = 1, stride[8];
    for (int i = t->ndim - 1; i >= 0; i--) {
        stride[i] = numel;
        numel *= t->shape[i];
    }
    char key_str[32];
    snprintf(key_str, sizeof key_str, "%d", key);
    pk_global(b, "torch._utils", "_rebuild_tensor_v2");
    put_u8(b, '(');
    put_u8(b, '(');
    pk_unicode(b, "storage");
    pk_global(b, "torch", "FloatStorage");
    pk_unicode(b, key_str);
    pk_unicode(b, "cpu");
    pk_int(b, numel);
    put_u8(b, 't');
    put_u8(b, 'Q');  // BINPERSID: the storage is record data/<key>
    pk_int(b, 0);
    pk_int_tuple(b, t->shape, t->ndim);
    pk_int_tuple(b, stride, t->ndim);
    put_u8(b, 0x89);  // NEWFALSE: requires_grad
    pk_global(b, "collections", "OrderedDict");
    put_u8(b, ')');  // EMPTY_TUPLE
    put_u8(b, 'R');  // REDUCE: OrderedDict()
    put_u8(b, 't');
    put_u8(b, 'R');
}

// ---- zip (stored entries, each payload aligned to 64 bytes like torch) ---------------
typedef struct {
    char name[256];
    uint32_t crc, size, offset;
} ZipEntry;

static void zip_add(Bytes *z, ZipEntry *e, const char *name, const void *data, size_t size) {
    snprintf(e->name, sizeof e->name, "%s", name);
    e->crc = (uint32_t)crc32(0L, data, (uInt)size);
    e->size = (uint32_t)size;
    e->offset = (uint32_t)z->len;
    size_t name_len = strlen(name);
    size_t header_end = z->len + 30 + name_len + 4;  // + an "FB" extra field header
    size_t pad = (64 - header_end % 64) % 64;
    put_le(z, 0x04034b50, 4);
    put_le(z, 20, 2);    // version needed
    put_le(z, 0, 2);     // flags
    put_le(z, 0, 2);     // stored
    put_le(z, 0, 2);     // time
    put_le(z, 0x21, 2);  // date: 1980-01-01
    put_le(z, e->crc, 4);
    put_le(z, e->size, 4);
    put_le(z, e->size, 4);
    put_le(z, name_len, 2);
    put_le(z, 4 + pad, 2);
    put_str(z, name);
    put_le(z, 0x4246, 2);  // "FB": padding so the payload starts on 64 bytes
    put_le(z, pad, 2);
    for (size_t i = 0; i < pad; i++) put_u8(z, 'Z');
    put(z, data, size);
}

static void zip_finish(Bytes *z, const ZipEntry *entries, int n) {
    uint32_t cd_start = (uint32_t)z->len;
    for (int i = 0; i < n; i++) {
        const ZipEntry *e = &entries[i];
        put_le(z, 0x02014b50, 4);
        put_le(z, 20, 2);  // made by
        put_le(z, 20, 2);  // needed
        put_le(z, 0, 2);
        put_le(z, 0, 2);
        put_le(z, 0, 2);
        put_le(z, 0x21, 2);
        put_le(z, e->crc, 4);
        put_le(z, e->size, 4);
        put_le(z, e->size, 4);
        put_le(z, strlen(e->name), 2);
        put_le(z, 0, 2);  // extra
        put_le(z, 0, 2);  // comment
        put_le(z, 0, 2);  // disk
        put_le(z, 0, 2);  // internal attributes
        put_le(z, 0, 4);  // external attributes
        put_le(z, e->offset, 4);
        put_str(z, e->name);
    }
    uint32_t cd_size = (uint32_t)z->len - cd_start;
    put_le(z, 0x06054b50, 4);
    put_le(z, 0, 2);
    put_le(z, 0, 2);
    put_le(z, (uint64_t)n, 2);
    put_le(z, (uint64_t)n, 2);
    put_le(z, cd_size, 4);
    put_le(z, cd_start, 4);
    put_le(z, 0, 2);
}

int torch_save_f32(const char *path, const TorchTensor *tensors, int n, Error *err) {
    Bytes pkl = {0}, zip = {0};
    put_u8(&pkl, 0x80);  // PROTO 2
    put_u8(&pkl, 2);
    put_u8(&pkl, '}');  // EMPTY_DICT
    put_u8(&pkl, '(');
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        pk_unicode(&pkl, tensors[i].name);
        pk_tensor(&pkl, &tensors[i], i);
        size_t numel = 1;
        for (int d = 0; d < tensors[i].ndim; d++) numel *= (size_t)tensors[i].shape[d];
        total += numel * sizeof(float);
    }
    put_u8(&pkl, 'u');  // SETITEMS
    put_u8(&pkl, '.');  // STOP
    if (total > 0xF0000000u) {
        free(pkl.p);
        return err_set(err, "%s: %zu bytes is too large for this writer (no zip64)", path, total);
    }
    ZipEntry *entries = xcalloc((size_t)n + 3, sizeof(ZipEntry));
    int ne = 0;
    zip_add(&zip, &entries[ne++], "archive/data.pkl", pkl.p, pkl.len);
    zip_add(&zip, &entries[ne++], "archive/byteorder", "little", 6);
    for (int i = 0; i < n; i++) {
        char name[64];
        size_t numel = 1;
        for (int d = 0; d < tensors[i].ndim; d++) numel *= (size_t)tensors[i].shape[d];
        snprintf(name, sizeof name, "archive/data/%d", i);
        zip_add(&zip, &entries[ne++], name, tensors[i].data, numel * sizeof(float));
    }
    zip_add(&zip, &entries[ne++], "archive/version", "3\n", 2);
    zip_finish(&zip, entries, ne);
    int rc = write_file_atomic(path, zip.p, zip.len, err);
    free(entries);
    free(pkl.p);
    free(zip.p);
    return rc;
}
