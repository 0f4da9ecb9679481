#include "data/manifest.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"

void manifest_free(Manifest *m) {
    free(m->shards);
    memset(m, 0, sizeof *m);
}

void manifest_add_shard(Manifest *m, const ManifestShard *s) {
    m->shards = xrealloc(m->shards, (size_t)(m->n_shards + 1) * sizeof *m->shards);
    m->shards[m->n_shards++] = *s;
}

static void add_i64(cJSON *o, const char *k, int64_t v) { cJSON_AddItemToObject(o, k, cJSON_CreateNumber((double)v)); }

static void add_doubles(cJSON *o, const char *k, const double *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    cJSON_AddItemToObject(o, k, a);
}

int manifest_write(const Manifest *m, const char *dir, Error *err) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "format", MANIFEST_FORMAT);
    add_i64(root, "version", MANIFEST_VERSION);
    cJSON_AddBoolToObject(root, "complete", m->complete);
    cJSON *src = cJSON_AddObjectToObject(root, "source");
    cJSON_AddStringToObject(src, "data", m->data_path);
    add_i64(src, "data_size", m->data_size);
    // Split: a JSON number holds integers exactly only up to 2^53.
    add_i64(src, "data_mtime_s", m->data_mtime_ns / 1000000000);
    add_i64(src, "data_mtime_ns", m->data_mtime_ns % 1000000000);
    cJSON_AddStringToObject(src, "images", m->images_dir);
    cJSON_AddStringToObject(src, "model", m->model_dir);
    cJSON *cfg = cJSON_AddObjectToObject(root, "config");
    cJSON_AddStringToObject(cfg, "template", m->template_name);
    add_i64(cfg, "max_length", m->max_length);
    cJSON_AddStringToObject(cfg, "image_store", image_store_name(m->store));
    cJSON_AddStringToObject(cfg, "aspect", m->aspect);
    add_i64(cfg, "image_size", m->image_size);
    add_i64(cfg, "image_seq_length", m->image_seq_length);
    add_i64(cfg, "image_token_index", m->image_token_index);
    add_i64(cfg, "pad_token_id", m->pad_token_id);
    add_doubles(cfg, "image_mean", m->image_mean, 3);
    add_doubles(cfg, "image_std", m->image_std, 3);
    add_i64(cfg, "max_pixels", m->max_pixels);
    cJSON_AddStringToObject(cfg, "tokenizer_hash", m->tokenizer_hash);
    cJSON_AddStringToObject(cfg, "tokenizer", m->tokenizer_dir);
    add_i64(cfg, "shard_max_samples", m->shard_max_samples);
    add_i64(cfg, "shard_max_mb", m->shard_max_mb);
    cJSON *counts = cJSON_AddObjectToObject(root, "counts");
    add_i64(counts, "items", m->items);
    add_i64(counts, "written", m->written);
    add_i64(counts, "skipped", m->skipped);
    add_i64(counts, "truncated", m->truncated);
    add_i64(counts, "images", m->images);
    add_i64(counts, "tokens", m->tokens);
    cJSON *shards = cJSON_AddArrayToObject(root, "shards");
    for (int i = 0; i < m->n_shards; i++) {
        const ManifestShard *s = &m->shards[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "file", s->file);
        add_i64(o, "samples", s->samples);
        add_i64(o, "images", s->images);
        add_i64(o, "tokens", s->tokens);
        add_i64(o, "first_item", s->first_item);
        add_i64(o, "end_item", s->end_item);
        cJSON_AddItemToArray(shards, o);
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    CHECK(text, "cJSON_Print failed");
    char path[4096];
    int rc;
    if (path_join(path, sizeof path, dir, MANIFEST_NAME) != 0) {
        rc = err_set(err, "%s: path too long", dir);
    } else {
        size_t n = strlen(text);
        text[n] = '\n';  // cJSON_Print leaves room: the buffer holds n + 1 bytes
        rc = write_file_atomic(path, text, n + 1, err);
    }
    cJSON_free(text);
    return rc;
}

// ---- reading --------------------------------------------------------------------------

static int get_i64(const cJSON *o, const char *k, int64_t *out, const char *where, Error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(v)) return err_set(err, "%s: \"%s\" must be a number", where, k);
    *out = (int64_t)v->valuedouble;
    return 0;
}

static int get_int(const cJSON *o, const char *k, int *out, const char *where, Error *err) {
    int64_t v = 0;
    if (get_i64(o, k, &v, where, err) != 0) return -1;
    *out = (int)v;
    return 0;
}

static int get_str(const cJSON *o, const char *k, char *dst, size_t cap, const char *where, Error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsString(v)) return err_set(err, "%s: \"%s\" must be a string", where, k);
    if (strlen(v->valuestring) >= cap) return err_set(err, "%s: \"%s\" is too long", where, k);
    snprintf(dst, cap, "%s", v->valuestring);
    return 0;
}

static int get_doubles(const cJSON *o, const char *k, double *dst, int n, const char *where, Error *err) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != n)
        return err_set(err, "%s: \"%s\" must be a list of %d numbers", where, k, n);
    for (int i = 0; i < n; i++) {
        const cJSON *v = cJSON_GetArrayItem(a, i);
        if (!cJSON_IsNumber(v)) return err_set(err, "%s: \"%s\" must be a list of %d numbers", where, k, n);
        dst[i] = v->valuedouble;
    }
    return 0;
}

static const cJSON *get_obj(const cJSON *o, const char *k, const char *where, Error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsObject(v)) err_set(err, "%s: \"%s\" must be an object", where, k);
    return cJSON_IsObject(v) ? v : NULL;
}

int manifest_read(Manifest *m, const char *dir, Error *err) {
    memset(m, 0, sizeof *m);
    char path[4096];
    if (path_join(path, sizeof path, dir, MANIFEST_NAME) != 0) return err_set(err, "%s: path too long", dir);
    if (!file_exists(path))
        return err_set(err, "%s: no %s: not a shard folder (make one with llava prep)", dir, MANIFEST_NAME);
    cJSON *root = json_parse_file(path, err);
    if (!root) return -1;
    const char *w = path;
    char format[64];
    int64_t version = 0;
    const cJSON *src, *cfg, *counts, *shards;
    char store[16];
    if (get_str(root, "format", format, sizeof format, w, err) != 0) goto fail;
    if (strcmp(format, MANIFEST_FORMAT) != 0) {
        err_set(err, "%s: \"format\" is \"%s\", not \"%s\"", w, format, MANIFEST_FORMAT);
        goto fail;
    }
    if (get_i64(root, "version", &version, w, err) != 0) goto fail;
    if (version != MANIFEST_VERSION) {
        err_set(err, "%s: version %lld, this build reads version %d: re-run llava prep", w, (long long)version,
                MANIFEST_VERSION);
        goto fail;
    }
    m->complete = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "complete"));
    int64_t mtime_s = 0;
    if (!(src = get_obj(root, "source", w, err)) || !(cfg = get_obj(root, "config", w, err)) ||
        !(counts = get_obj(root, "counts", w, err)))
        goto fail;
    if (get_str(src, "data", m->data_path, sizeof m->data_path, w, err) ||
        get_i64(src, "data_size", &m->data_size, w, err) || get_i64(src, "data_mtime_s", &mtime_s, w, err) ||
        get_i64(src, "data_mtime_ns", &m->data_mtime_ns, w, err) ||
        get_str(src, "images", m->images_dir, sizeof m->images_dir, w, err) ||
        get_str(src, "model", m->model_dir, sizeof m->model_dir, w, err) ||
        get_str(cfg, "template", m->template_name, sizeof m->template_name, w, err) ||
        get_int(cfg, "max_length", &m->max_length, w, err) ||
        get_str(cfg, "image_store", store, sizeof store, w, err) ||
        get_str(cfg, "aspect", m->aspect, sizeof m->aspect, w, err) ||
        get_int(cfg, "image_size", &m->image_size, w, err) ||
        get_int(cfg, "image_seq_length", &m->image_seq_length, w, err) ||
        get_int(cfg, "image_token_index", &m->image_token_index, w, err) ||
        get_int(cfg, "pad_token_id", &m->pad_token_id, w, err) ||
        get_doubles(cfg, "image_mean", m->image_mean, 3, w, err) ||
        get_doubles(cfg, "image_std", m->image_std, 3, w, err) ||
        get_i64(cfg, "max_pixels", &m->max_pixels, w, err) ||
        get_str(cfg, "tokenizer_hash", m->tokenizer_hash, sizeof m->tokenizer_hash, w, err) ||
        get_str(cfg, "tokenizer", m->tokenizer_dir, sizeof m->tokenizer_dir, w, err) ||
        get_i64(cfg, "shard_max_samples", &m->shard_max_samples, w, err) ||
        get_i64(cfg, "shard_max_mb", &m->shard_max_mb, w, err) || get_i64(counts, "items", &m->items, w, err) ||
        get_i64(counts, "written", &m->written, w, err) || get_i64(counts, "skipped", &m->skipped, w, err) ||
        get_i64(counts, "truncated", &m->truncated, w, err) || get_i64(counts, "images", &m->images, w, err) ||
        get_i64(counts, "tokens", &m->tokens, w, err))
        goto fail;
    m->data_mtime_ns += mtime_s * 1000000000;
    if (image_store_parse(store) < 0) {
        err_set(err, "%s: \"image_store\" is \"%s\", not pixels or encoded", w, store);
        goto fail;
    }
    m->store = (ImageStore)image_store_parse(store);
    shards = cJSON_GetObjectItemCaseSensitive(root, "shards");
    if (!cJSON_IsArray(shards)) {
        err_set(err, "%s: \"shards\" must be a list", w);
        goto fail;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, shards) {
        ManifestShard s;
        memset(&s, 0, sizeof s);
        if (!cJSON_IsObject(it) || get_str(it, "file", s.file, sizeof s.file, w, err) ||
            get_i64(it, "samples", &s.samples, w, err) || get_i64(it, "images", &s.images, w, err) ||
            get_i64(it, "tokens", &s.tokens, w, err) || get_i64(it, "first_item", &s.first_item, w, err) ||
            get_i64(it, "end_item", &s.end_item, w, err)) {
            err_prefix(err, "shard entry %d: ", m->n_shards);
            goto fail;
        }
        // Relative, inside the folder ("part-00000-of-00002/shard-00000.h5" after a merge).
        if (s.file[0] == '/' || strstr(s.file, "..") || s.samples < 0) {
            err_set(err, "%s: shard entry %d is invalid", w, m->n_shards);
            goto fail;
        }
        manifest_add_shard(m, &s);
    }
    cJSON_Delete(root);
    return 0;
fail:
    cJSON_Delete(root);
    manifest_free(m);
    return -1;
}

int manifest_same_recipe(const Manifest *a, const Manifest *b, char *why, size_t cap) {
#define DIFF_STR(f) if (strcmp(a->f, b->f) != 0) return snprintf(why, cap, #f ": \"%s\" vs \"%s\"", a->f, b->f), 0
#define DIFF_INT(f) if (a->f != b->f) return snprintf(why, cap, #f ": %lld vs %lld", (long long)a->f, (long long)b->f), 0
    DIFF_STR(data_path);
    DIFF_INT(data_size);
    DIFF_INT(data_mtime_ns);
    DIFF_STR(images_dir);
    DIFF_STR(template_name);
    DIFF_INT(max_length);
    DIFF_INT(store);
    DIFF_STR(aspect);
    DIFF_INT(image_size);
    DIFF_INT(image_seq_length);
    DIFF_INT(image_token_index);
    DIFF_INT(max_pixels);
    DIFF_STR(tokenizer_hash);
    DIFF_INT(shard_max_samples);
    DIFF_INT(shard_max_mb);
    for (int i = 0; i < 3; i++)
        if (a->image_mean[i] != b->image_mean[i] || a->image_std[i] != b->image_std[i])
            return snprintf(why, cap, "image_mean/image_std differ"), 0;
#undef DIFF_STR
#undef DIFF_INT
    return 1;
}
