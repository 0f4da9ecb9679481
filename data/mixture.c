// Weighted mixtures of shard folders as one BatchSource (see mixture.h).
#include "data/mixture.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "data/loader_source.h"
#include "data/manifest.h"

int mixture_is_list(const char *data) {
    while (*data == ' ' || *data == '\t' || *data == '\n' || *data == '\r') data++;
    return *data == '[';
}

void mixture_free(Mixture *m) {
    free(m->e);
    m->e = NULL;
    m->n = 0;
}

static int parse_entry(const cJSON *it, int i, MixtureEntry *e, Error *err) {
    memset(e, 0, sizeof *e);
    if (!cJSON_IsObject(it)) return err_set(err, "\"data\" entry %d must be an object {\"path\": ..., \"weight\": ...}", i);
    const cJSON *v;
    cJSON_ArrayForEach(v, it) {
        const char *k = v->string;
        if (strcmp(k, "path") == 0 || strcmp(k, "name") == 0) {
            char *dst = strcmp(k, "path") == 0 ? e->path : e->name;
            const size_t cap = strcmp(k, "path") == 0 ? sizeof e->path : sizeof e->name;
            if (!cJSON_IsString(v) || !v->valuestring[0] || strlen(v->valuestring) >= cap)
                return err_set(err, "\"data\" entry %d: \"%s\" must be a non-empty string shorter than %zu", i, k, cap);
            snprintf(dst, cap, "%s", v->valuestring);
        } else if (strcmp(k, "weight") == 0 || strcmp(k, "epochs") == 0) {
            if (!cJSON_IsNumber(v) || !(v->valuedouble > 0) || !isfinite(v->valuedouble) || v->valuedouble > 1e12)
                return err_set(err, "\"data\" entry %d: \"%s\" must be a positive number", i, k);
            *(strcmp(k, "weight") == 0 ? &e->weight : &e->epochs) = v->valuedouble;
        } else if (k[0] != '_') {
            return err_set(err, "\"data\" entry %d: unknown key \"%s\" (path, weight or epochs, name)", i, k);
        }
    }
    if (!e->path[0]) return err_set(err, "\"data\" entry %d has no \"path\" (a shard folder from llava prep)", i);
    const size_t plen = strlen(e->path);
    if ((plen > 5 && strcmp(e->path + plen - 5, ".json") == 0) || (plen > 6 && strcmp(e->path + plen - 6, ".jsonl") == 0))
        return err_set(err, "\"data\" entry %d: %s is a data file; in a mixture give shard folders (llava prep ... --out DIR)",
                       i, e->path);
    if ((e->weight > 0) == (e->epochs > 0)) return err_set(err, "\"data\" entry %d: give either \"weight\" or \"epochs\"", i);
    if (!e->name[0]) {
        char tmp[1024];
        snprintf(tmp, sizeof tmp, "%s", e->path);
        size_t n = strlen(tmp);
        while (n > 1 && tmp[n - 1] == '/') tmp[--n] = '\0';
        const char *base = strrchr(tmp, '/');
        snprintf(e->name, sizeof e->name, "%.127s", base ? base + 1 : tmp);
    }
    for (const char *c = e->name; *c; c++)
        if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20)
            return err_set(err, "\"data\" entry %d: name \"%s\" must not hold quotes, backslashes or controls", i, e->name);
    return 0;
}

int mixture_parse(const char *json_text, Mixture *m, Error *err) {
    memset(m, 0, sizeof *m);
    cJSON *root = cJSON_Parse(json_text);
    if (!cJSON_IsArray(root) || cJSON_GetArraySize(root) < 1) {
        cJSON_Delete(root);
        return err_set(err, "\"data\" as a mixture must be a non-empty list of {\"path\": ..., \"weight\": ...}");
    }
    m->n = cJSON_GetArraySize(root);
    m->e = xcalloc((size_t)m->n, sizeof *m->e);
    int rc = 0;
    for (int i = 0; i < m->n && rc == 0; i++) {
        rc = parse_entry(cJSON_GetArrayItem(root, i), i, &m->e[i], err);
        for (int j = 0; rc == 0 && j < i; j++)
            if (strcmp(m->e[i].name, m->e[j].name) == 0)
                rc = err_set(err, "\"data\" entries %d and %d have the same name \"%s\": set \"name\"", j, i, m->e[i].name);
    }
    cJSON_Delete(root);
    if (rc) mixture_free(m);
    return rc;
}

int mixture_draw(const double *cum, int n, uint64_t seed, int64_t k) {
    Rng r;
    rng_seed(&r, seed * 0xD1B54A32D192ED03ull ^ (uint64_t)k * 0x9E3779B97F4A7C15ull ^ 0x6d69787475726521ull);
    const double u = (double)(rng_next(&r) >> 11) * 0x1.0p-53 * cum[n - 1];
    for (int j = 0; j < n - 1; j++)
        if (u < cum[j]) return j;
    return n - 1;
}

// ---- the BatchSource ------------------------------------------------------------------

typedef struct {
    Mixture m;
    BatchSource *sub;   // [n] one loader per source
    int64_t *N;         // [n] samples of each source
    int64_t *steps;     // [n] global batches drawn from each so far
    double *cum;        // [n] cumulative weights
    int64_t G;          // samples per global batch
    int drop_last;
    uint64_t seed;
    int64_t k;          // the next global batch
    int last;           // source of the last batch returned (-1: none yet)
} MixSource;

// Samples in the first n global batches of a source of N samples.
static int64_t samples_of(const MixSource *x, int j, int64_t n) {
    const int64_t spe = x->sub[j].steps_per_epoch, N = x->drop_last ? spe * x->G : x->N[j];
    const int64_t in_epoch = (n % spe) * x->G;
    return (n / spe) * N + (in_epoch < N ? in_epoch : N);
}

static int mix_next_step(BatchSource *s, LlavaBatch *out, int *n, Error *err) {
    MixSource *x = s->impl;
    const int j = mixture_draw(x->cum, x->m.n, x->seed, x->k);
    if (x->sub[j].next_step(&x->sub[j], out, n, err) != 0) {
        err_prefix(err, "data source \"%s\": ", x->m.e[j].name);
        return -1;
    }
    x->steps[j]++;
    x->k++;
    x->last = j;
    return 0;
}

static DataPosition mix_position(const BatchSource *s) {
    const MixSource *x = s->impl;
    return (DataPosition){.epoch = (long)(x->k / s->steps_per_epoch), .step = (long)(x->k % s->steps_per_epoch)};
}

static int mix_seek(BatchSource *s, DataPosition pos, Error *err) {
    MixSource *x = s->impl;
    if (pos.epoch < 0 || pos.step < 0) return err_set(err, "mixture position %ld/%ld is invalid", pos.epoch, pos.step);
    const int64_t k = (int64_t)pos.epoch * s->steps_per_epoch + pos.step;
    memset(x->steps, 0, (size_t)x->m.n * sizeof *x->steps);
    int last = -1;
    for (int64_t i = 0; i < k; i++) x->steps[last = mixture_draw(x->cum, x->m.n, x->seed, i)]++;
    for (int j = 0; j < x->m.n; j++) {
        const long spe = x->sub[j].steps_per_epoch;
        const DataPosition p = {.epoch = (long)(x->steps[j] / spe), .step = (long)(x->steps[j] % spe)};
        if (x->sub[j].seek(&x->sub[j], p, err) != 0) {
            err_prefix(err, "data source \"%s\": ", x->m.e[j].name);
            return -1;
        }
    }
    x->k = k;
    x->last = last;
    return 0;
}

// "source": the last batch's, then cumulative steps and samples per source.
static int mix_step_info(const BatchSource *s, char *buf, size_t cap) {
    const MixSource *x = s->impl;
    size_t at = 0;
#define PUT(...) at += (size_t)snprintf(buf + at, at < cap ? cap - at : 0, __VA_ARGS__)
    PUT("\"source\": \"%s\", \"source_steps\": {", x->last >= 0 ? x->m.e[x->last].name : "");
    for (int j = 0; j < x->m.n; j++) PUT("%s\"%s\": %lld", j ? ", " : "", x->m.e[j].name, (long long)x->steps[j]);
    PUT("}, \"source_samples\": {");
    for (int j = 0; j < x->m.n; j++)
        PUT("%s\"%s\": %lld", j ? ", " : "", x->m.e[j].name, (long long)samples_of(x, j, x->steps[j]));
    PUT("}");
#undef PUT
    return at < cap ? 0 : -1;
}

static void mix_close(BatchSource *s) {
    MixSource *x = s->impl;
    if (!x) return;
    for (int j = 0; j < x->m.n; j++)
        if (x->sub[j].close) x->sub[j].close(&x->sub[j]);
    free(x->sub);
    free(x->N);
    free(x->steps);
    free(x->cum);
    mixture_free(&x->m);
    free(x);
    s->impl = NULL;
}

int mixture_source_open(BatchSource *s, const LoaderOptions *base, const Mixture *m, Error *err) {
    memset(s, 0, sizeof *s);
    MixSource *x = xcalloc(1, sizeof *x);
    x->m.n = m->n;
    x->m.e = xcalloc((size_t)m->n, sizeof *m->e);
    memcpy(x->m.e, m->e, (size_t)m->n * sizeof *m->e);
    x->sub = xcalloc((size_t)m->n, sizeof *x->sub);
    x->N = xcalloc((size_t)m->n, sizeof *x->N);
    x->steps = xcalloc((size_t)m->n, sizeof *x->steps);
    x->cum = xcalloc((size_t)m->n, sizeof *x->cum);
    x->G = (int64_t)base->micro_batch * base->grad_accum * base->world;
    x->drop_last = base->drop_last;
    x->seed = base->seed;
    x->last = -1;
    s->impl = x;
    s->close = mix_close;
    double total = 0, epoch_steps = 0;
    for (int j = 0; j < m->n; j++) {
        const MixtureEntry *e = &m->e[j];
        Manifest man;
        LoaderOptions o = *base;
        o.dir = e->path;
        o.seed = base->seed + (uint64_t)j;  // source 0 alone = the plain loader
        o.resume = (LoaderPos){0, 0, 0};
        if (manifest_read(&man, e->path, err) != 0 || loader_source_open(&x->sub[j], &o, err) != 0) {
            err_prefix(err, "data source \"%s\" (entry %d): ", e->name, j);
            mix_close(s);
            return -1;
        }
        x->N[j] = man.written;
        manifest_free(&man);
        const double spe = (double)x->sub[j].steps_per_epoch;
        const double w = e->weight > 0 ? e->weight : e->epochs * spe;
        total += w;
        x->cum[j] = total;
        epoch_steps += (e->epochs > 0 ? e->epochs : 1) * spe;
        if (x->sub[j].max_micro > s->max_micro) s->max_micro = x->sub[j].max_micro;
    }
    s->steps_per_epoch = (long)ceil(epoch_steps);
    s->next_step = mix_next_step;
    s->position = mix_position;
    s->seek = mix_seek;
    s->step_info = mix_step_info;
    return 0;
}
