// The prep pipeline (see prep.h). Slot protocol: slot k carries item seq with
// seq % W == k through EMPTY --reader--> FILLED --worker--> BUSY --> DONE
// --writer--> EMPTY. The reader fills in order, workers claim in order, the
// writer consumes in order; one mutex guards the states.
#include "data/prep.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/json.h"
#include "data/shards.h"

enum { SLOT_EMPTY, SLOT_FILLED, SLOT_BUSY, SLOT_DONE };

typedef struct {
    int state;
    int64_t seq;
    int kind;                 // DATASET_SAMPLE or DATASET_BAD_ITEM
    DatasetSample sample;
    DatasetProblem parse_problem;
    DatasetPos end_pos;       // reader position after this item
    PrepResult res;
} PrepSlot;

typedef struct {
    const PrepOptions *o;
    const PrepProcessor *proc;
    Manifest man;             // recipe, finished shards, counts (writer thread once started)
    ShardFormat fmt;
    PrepSlot *slots;
    int W;
    int64_t next_work, next_write;
    int reader_done;
    int64_t total_seq;
    int fatal, stop_workers;
    Error fatal_err;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int shards_at_start;
    // the shard being written (writer thread)
    ShardWriter *shard;
    int64_t sh_first, sh_end, sh_written, sh_skipped, sh_truncated, sh_images, sh_tokens;
    DatasetPos sh_end_pos;
    cJSON *sh_problems;
    double t0, last_progress;
} Prep;

static void set_fatal(Prep *p, const Error *e) {
    pthread_mutex_lock(&p->mu);
    if (!p->fatal) {
        p->fatal = 1;
        p->fatal_err = *e;
    }
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static void result_free(PrepResult *r) {
    free(r->ids);
    free(r->labels);
    free(r->pixels);
    free(r->encoded);
    memset(r, 0, sizeof *r);
}

// ---- report entries ---------------------------------------------------------------------

static cJSON *problem_json(const Prep *p, const DatasetProblem *q, int written) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "index", (double)q->index);
    cJSON_AddNumberToObject(o, "line", (double)q->line);
    cJSON_AddStringToObject(o, "id", q->id);
    cJSON_AddStringToObject(o, "file", q->file[0] ? q->file : p->o->data_path);
    cJSON_AddStringToObject(o, "reason", problem_reason_name(q->reason));
    cJSON_AddStringToObject(o, "action", written ? "written" : "skipped");
    cJSON_AddStringToObject(o, "detail", q->detail);
    return o;
}

// ---- the writer thread ------------------------------------------------------------------

static void shard_name(char *dst, size_t cap, int k) { snprintf(dst, cap, "shard-%05d.h5", k); }

static int finish_shard(Prep *p, Error *err) {
    cJSON *info = cJSON_CreateObject();
    cJSON_AddNumberToObject(info, "first_item", (double)p->sh_first);
    cJSON_AddNumberToObject(info, "end_item", (double)p->sh_end);
    cJSON *pos = cJSON_AddObjectToObject(info, "end_pos");
    cJSON_AddNumberToObject(pos, "offset", (double)p->sh_end_pos.offset);
    cJSON_AddNumberToObject(pos, "index", (double)p->sh_end_pos.index);
    cJSON_AddNumberToObject(pos, "line", (double)p->sh_end_pos.line);
    cJSON_AddNumberToObject(pos, "col", (double)p->sh_end_pos.col);
    cJSON_AddNumberToObject(pos, "list_ended", p->sh_end_pos.list_ended);
    cJSON_AddNumberToObject(info, "written", (double)p->sh_written);
    cJSON_AddNumberToObject(info, "skipped", (double)p->sh_skipped);
    cJSON_AddNumberToObject(info, "truncated", (double)p->sh_truncated);
    cJSON_AddItemToObject(info, "problems", p->sh_problems);
    p->sh_problems = NULL;
    char *text = cJSON_PrintUnformatted(info);
    cJSON_Delete(info);
    CHECK(text, "cJSON_PrintUnformatted failed");
    ManifestShard ms;
    memset(&ms, 0, sizeof ms);
    shard_name(ms.file, sizeof ms.file, p->man.n_shards);
    ms.samples = shard_writer_samples(p->shard);
    ms.images = p->sh_images;
    ms.tokens = p->sh_tokens;
    ms.first_item = p->sh_first;
    ms.end_item = p->sh_end;
    int rc = shard_writer_finish(p->shard, text, err);
    p->shard = NULL;
    cJSON_free(text);
    if (rc != 0) return -1;
    manifest_add_shard(&p->man, &ms);
    p->man.items += p->sh_end - p->sh_first;
    p->sh_first = p->sh_end;  // the progress line counts the open shard's items from here
    p->man.written += p->sh_written;
    p->man.skipped += p->sh_skipped;
    p->man.truncated += p->sh_truncated;
    p->man.images += p->sh_images;
    p->man.tokens += p->sh_tokens;
    p->sh_written = p->sh_skipped = p->sh_truncated = p->sh_images = p->sh_tokens = 0;
    return manifest_write(&p->man, p->o->out_dir, err);
}

static int open_shard(Prep *p, int64_t first_item, Error *err) {
    char name[64], path[4096];
    shard_name(name, sizeof name, p->man.n_shards);
    if (path_join(path, sizeof path, p->o->out_dir, name) != 0) return err_set(err, "%s: path too long", name);
    p->shard = shard_writer_create(path, &p->fmt, err);
    if (!p->shard) return -1;
    p->sh_first = p->sh_end = first_item;
    p->sh_written = p->sh_skipped = p->sh_truncated = p->sh_images = p->sh_tokens = 0;
    p->sh_problems = cJSON_CreateArray();
    return 0;
}

static void progress(Prep *p, int force) {
    const double now = now_seconds();
    if (!p->o->progress || (!force && now - p->last_progress < 2.0)) return;
    p->last_progress = now;
    const int64_t items = p->man.items + (p->sh_end - p->sh_first);
    const int64_t run_items = p->next_write;
    fprintf(stderr, "prep: %lld items (%lld written, %lld skipped), %.1f items/s, shard %d\n", (long long)items,
            (long long)(p->man.written + p->sh_written), (long long)(p->man.skipped + p->sh_skipped),
            (double)run_items / (now - p->t0 + 1e-9), p->man.n_shards);
}

// Writes one finished item into the current shard.
static int write_item(Prep *p, PrepSlot *s, Error *err) {
    const int64_t index = s->kind == DATASET_SAMPLE ? s->sample.index : s->parse_problem.index;
    if (!p->shard && open_shard(p, index, err) != 0) return -1;
    PrepResult *r = &s->res;
    CHECK(r->write || r->has_problem, "item %lld skipped without a reason", (long long)index);
    if (r->write) {
        ShardSample ss = {.id = s->sample.id, .item = index, .input_ids = r->ids, .labels = r->labels,
                          .length = r->length, .image_path = s->sample.image, .pixels = r->pixels,
                          .encoded = r->encoded, .encoded_len = r->encoded_len};
        if (shard_writer_add(p->shard, &ss, err) != 0) return -1;
        p->sh_written++;
        p->sh_truncated += r->truncated;
        p->sh_images += s->sample.image != NULL;
        p->sh_tokens += r->length;
    } else {
        p->sh_skipped++;
    }
    if (r->has_problem) cJSON_AddItemToArray(p->sh_problems, problem_json(p, &r->problem, r->write));
    p->sh_end = index + 1;
    p->sh_end_pos = s->end_pos;
    return 0;
}

static int shard_full(const Prep *p) {
    const int64_t n = shard_writer_samples(p->shard), mb = shard_writer_bytes(p->shard) >> 20;
    return (p->o->shard_max_samples > 0 && n >= p->o->shard_max_samples) ||
           (p->o->shard_max_mb > 0 && mb >= p->o->shard_max_mb);
}

static void *writer_main(void *arg) {
    Prep *p = arg;
    Error err = {{0}};
    for (;;) {
        PrepSlot *s = &p->slots[p->next_write % p->W];
        pthread_mutex_lock(&p->mu);
        while (!p->fatal && !(s->state == SLOT_DONE && s->seq == p->next_write) &&
               !(p->reader_done && p->next_write == p->total_seq))
            pthread_cond_wait(&p->cv, &p->mu);
        const int stop = p->fatal || s->state != SLOT_DONE || s->seq != p->next_write;
        pthread_mutex_unlock(&p->mu);
        if (stop) break;
        if (write_item(p, s, &err) != 0) {
            set_fatal(p, &err);
            break;
        }
        dataset_sample_free(&s->sample);
        result_free(&s->res);
        pthread_mutex_lock(&p->mu);
        s->state = SLOT_EMPTY;
        p->next_write++;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        if (shard_full(p)) {
            if (finish_shard(p, &err) != 0) {
                set_fatal(p, &err);
                break;
            }
            if (p->o->crash_after_shards && p->man.n_shards - p->shards_at_start >= p->o->crash_after_shards) {
                err_set(&err, "stopped after %d shards (crash_after_shards)", p->o->crash_after_shards);
                set_fatal(p, &err);
                break;
            }
        }
        progress(p, 0);
    }
    // The last, partial shard, once everything was read.
    if (!p->fatal && p->shard && finish_shard(p, &err) != 0) set_fatal(p, &err);
    if (p->shard) {
        shard_writer_abort(p->shard);
        p->shard = NULL;
    }
    cJSON_Delete(p->sh_problems);
    p->sh_problems = NULL;
    return NULL;
}

// ---- workers ----------------------------------------------------------------------------

typedef struct {
    Prep *p;
    int index;
} PrepWorker;

static void *worker_main(void *arg) {
    const PrepWorker *w = arg;
    Prep *p = w->p;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        PrepSlot *s = NULL;
        while (!p->stop_workers && !p->fatal) {
            PrepSlot *c = &p->slots[p->next_work % p->W];
            if (c->state == SLOT_FILLED && c->seq == p->next_work) {
                s = c;
                s->state = SLOT_BUSY;
                p->next_work++;
                break;
            }
            pthread_cond_wait(&p->cv, &p->mu);
        }
        pthread_mutex_unlock(&p->mu);
        if (!s) return NULL;
        memset(&s->res, 0, sizeof s->res);
        if (s->kind == DATASET_SAMPLE) {
            // The processor fills reason, detail and file; the item is known here.
            DatasetProblem *q = &s->res.problem;
            q->index = s->sample.index;
            q->line = s->sample.line;
            snprintf(q->id, sizeof q->id, "%s", s->sample.id);
            Error err = {{0}};
            if (p->proc->process(p->proc->ctx, w->index, &s->sample, &s->res, &err) != 0) {
                err_prefix(&err, "sample '%s' (item %lld): ", s->sample.id, (long long)s->sample.index);
                set_fatal(p, &err);
            } else if (!s->res.write && !s->res.has_problem) {
                FATAL("the processor skipped sample %lld without a reason", (long long)s->sample.index);
            }
        } else {
            s->res.has_problem = 1;
            s->res.problem = s->parse_problem;
        }
        pthread_mutex_lock(&p->mu);
        s->state = SLOT_DONE;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
}

// ---- starting, resuming, finishing ----------------------------------------------------------

// Removes unfinished (.tmp) shards and shard files the manifest does not list
// (finished but not yet recorded when the previous run stopped).
static int clean_folder(const char *dir, int n_listed, Error *err) {
    DIR *d = opendir(dir);
    if (!d) return err_set(err, "%s: cannot list: %s", dir, strerror(errno));
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        int k = -1, end = 0;
        const size_t n = strlen(e->d_name);
        const int tmp = n > 4 && strcmp(e->d_name + n - 4, ".tmp") == 0;
        const int shard = sscanf(e->d_name, "shard-%d.h5%n", &k, &end) == 1 && (size_t)end == n;
        if (!tmp && !(shard && k >= n_listed)) continue;
        char path[4096];
        if (path_join(path, sizeof path, dir, e->d_name) != 0 || unlink(path) != 0) {
            rc = err_set(err, "%s/%s: cannot remove: %s", dir, e->d_name, strerror(errno));
            break;
        }
    }
    closedir(d);
    return rc;
}

static int dir_is_empty(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 1;
    struct dirent *e;
    int empty = 1;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) empty = 0;
    closedir(d);
    return empty;
}

// Where the last finished shard ends in the data file.
static int resume_position(const Prep *p, DatasetPos *pos, Error *err) {
    memset(pos, 0, sizeof *pos);
    if (p->man.n_shards == 0) return 1;  // start from the beginning
    char path[4096];
    if (path_join(path, sizeof path, p->o->out_dir, p->man.shards[p->man.n_shards - 1].file) != 0)
        return err_set(err, "path too long");
    char *text = shard_file_prep_info(path, err);
    if (!text) return -1;
    cJSON *info = json_parse_text(text, strlen(text), path, err);
    free(text);
    if (!info) return -1;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(info, "end_pos");
    const char *keys[] = {"offset", "index", "line", "col", "list_ended"};
    int64_t v[5];
    int ok = cJSON_IsObject(e);
    for (int i = 0; ok && i < 5; i++) {
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(e, keys[i]);
        ok = cJSON_IsNumber(x);
        if (ok) v[i] = (int64_t)x->valuedouble;
    }
    cJSON_Delete(info);
    if (!ok) return err_set(err, "%s: prep_info has no valid end_pos: delete the folder and prep again", path);
    *pos = (DatasetPos){.offset = v[0], .index = v[1], .line = v[2], .col = v[3], .list_ended = (int)v[4]};
    if (pos->index != p->man.shards[p->man.n_shards - 1].end_item)
        return err_set(err, "%s: end_pos disagrees with the manifest: delete the folder and prep again", path);
    return 0;
}

// Prepares p->man: a fresh recipe, or the state of an interrupted run.
// Returns 1 when the folder is already complete.
static int start_or_resume(Prep *p, const Manifest *recipe, Error *err) {
    const char *dir = p->o->out_dir;
    char mpath[4096];
    if (path_join(mpath, sizeof mpath, dir, MANIFEST_NAME) != 0) return err_set(err, "%s: path too long", dir);
    if (dir_exists(dir) && file_exists(mpath)) {
        Manifest old;
        if (manifest_read(&old, dir, err) != 0) return -1;
        char why[1200];
        if (!manifest_same_recipe(&old, recipe, why, sizeof why)) {
            manifest_free(&old);
            return err_set(err,
                           "%s was prepared with a different recipe (%s): use another --out (llava train: data_cache), or delete the folder "
                           "to prepare it again",
                           dir, why);
        }
        p->man = old;
        if (p->man.complete) return 1;
        return clean_folder(dir, p->man.n_shards, err);
    }
    if (dir_exists(dir) && !dir_is_empty(dir))
        return err_set(err, "%s exists, is not empty and has no %s: refusing to write shards there", dir,
                       MANIFEST_NAME);
    if (make_dirs(dir, err) != 0) return -1;
    p->man = *recipe;
    p->man.shards = NULL;
    p->man.n_shards = 0;
    p->man.complete = 0;
    p->man.items = p->man.written = p->man.skipped = p->man.truncated = p->man.images = p->man.tokens = 0;
    return manifest_write(&p->man, dir, err);
}

// report.json from every shard's prep_info.
static int write_report(Prep *p, Error *err) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "data", p->man.data_path);
    cJSON_AddStringToObject(root, "out", p->o->out_dir);
    cJSON *counts = cJSON_AddObjectToObject(root, "counts");
    cJSON_AddNumberToObject(counts, "items", (double)p->man.items);
    cJSON_AddNumberToObject(counts, "written", (double)p->man.written);
    cJSON_AddNumberToObject(counts, "skipped", (double)p->man.skipped);
    cJSON_AddNumberToObject(counts, "truncated", (double)p->man.truncated);
    cJSON_AddNumberToObject(counts, "images", (double)p->man.images);
    cJSON_AddNumberToObject(counts, "tokens", (double)p->man.tokens);
    int64_t by[PROBLEM_COUNT] = {0};
    cJSON *problems = cJSON_CreateArray();
    int rc = 0;
    for (int k = 0; k < p->man.n_shards && rc == 0; k++) {
        char path[4096];
        path_join(path, sizeof path, p->o->out_dir, p->man.shards[k].file);
        char *text = shard_file_prep_info(path, err);
        cJSON *info = text ? json_parse_text(text, strlen(text), path, err) : NULL;
        free(text);
        const cJSON *list = info ? cJSON_GetObjectItemCaseSensitive(info, "problems") : NULL;
        if (!cJSON_IsArray(list)) {
            if (info) err_set(err, "%s: prep_info has no problem list", path);
            rc = -1;
        } else {
            const cJSON *q;
            cJSON_ArrayForEach(q, list) {
                const cJSON *reason = cJSON_GetObjectItemCaseSensitive(q, "reason");
                int r = cJSON_IsString(reason) ? problem_reason_parse(reason->valuestring) : -1;
                if (r >= 0) by[r]++;
                cJSON_AddItemToArray(problems, cJSON_Duplicate(q, 1));
            }
        }
        cJSON_Delete(info);
    }
    cJSON *by_reason = cJSON_AddObjectToObject(root, "by_reason");
    for (int r = 0; r < PROBLEM_COUNT; r++)
        if (by[r]) cJSON_AddNumberToObject(by_reason, problem_reason_name((ProblemReason)r), (double)by[r]);
    cJSON_AddItemToObject(root, "problems", problems);
    if (rc == 0) {
        char *text = cJSON_Print(root);
        CHECK(text, "cJSON_Print failed");
        char path[4096];
        path_join(path, sizeof path, p->o->out_dir, "report.json");
        rc = write_file_atomic(path, text, strlen(text), err);
        cJSON_free(text);
    }
    cJSON_Delete(root);
    return rc;
}

static int fill_source(Manifest *m, const char *data_path, Error *err) {
    struct stat st;
    if (stat(data_path, &st) != 0) return err_set(err, "%s: %s", data_path, strerror(errno));
    m->data_size = (int64_t)st.st_size;
    m->data_mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec;
    char real[PATH_MAX];
    if (!realpath(data_path, real)) return err_set(err, "%s: %s", data_path, strerror(errno));
    const size_t n = strlen(real);
    if (n >= sizeof m->data_path) return err_set(err, "%s: path too long", real);
    memcpy(m->data_path, real, n + 1);
    return 0;
}

// The default PrepSource: a LLaVA JSON / JSONL file.
typedef struct {
    const char *path;
    DatasetReader *r;
} JsonSource;

static int json_describe(void *ctx, Manifest *m, Error *err) { return fill_source(m, ((JsonSource *)ctx)->path, err); }
static int json_open(void *ctx, const DatasetPos *pos, Error *err) {
    JsonSource *js = ctx;
    if (!(js->r = dataset_open(js->path, err))) return -1;
    return pos ? dataset_seek(js->r, pos, err) : 0;
}
static int json_next(void *ctx, DatasetSample *s, DatasetProblem *q, Error *err) {
    return dataset_next(((JsonSource *)ctx)->r, s, q, err);
}
static void json_tell(void *ctx, DatasetPos *pos) { dataset_tell(((JsonSource *)ctx)->r, pos); }
static void json_close(void *ctx) {
    JsonSource *js = ctx;
    dataset_close(js->r);
    js->r = NULL;
}

// Reads items into slots until the end of the file (main thread).
static void read_items(Prep *p, const PrepSource *src) {
    int64_t seq = 0;
    for (;; seq++) {
        PrepSlot *s = &p->slots[seq % p->W];
        pthread_mutex_lock(&p->mu);
        while (!p->fatal && s->state != SLOT_EMPTY) pthread_cond_wait(&p->cv, &p->mu);
        const int fatal = p->fatal;
        pthread_mutex_unlock(&p->mu);
        if (fatal) break;
        Error err = {{0}};
        const int rc = src->next(src->ctx, &s->sample, &s->parse_problem, &err);
        if (rc == DATASET_END) break;
        if (rc == DATASET_ERROR) {
            set_fatal(p, &err);
            break;
        }
        src->tell(src->ctx, &s->end_pos);
        s->kind = rc;
        s->seq = seq;
        pthread_mutex_lock(&p->mu);
        s->state = SLOT_FILLED;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    pthread_mutex_lock(&p->mu);
    p->reader_done = 1;
    p->total_seq = seq;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

int prep_default_workers(void) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    return cores > 0 ? (int)cores : 1;
}

int prep_run(const PrepOptions *o, const Manifest *recipe_in, const PrepProcessor *proc, PrepSummary *sum,
             Error *err) {
    memset(sum, 0, sizeof *sum);
    const double t0 = now_seconds();
    Manifest recipe = *recipe_in;
    recipe.shards = NULL;
    recipe.n_shards = 0;
    recipe.shard_max_samples = o->shard_max_samples;
    recipe.shard_max_mb = o->shard_max_mb;
    JsonSource json = {o->data_path, NULL};
    const PrepSource json_source = {&json, json_describe, json_open, json_next, json_tell, json_close};
    const PrepSource *src = o->source ? o->source : &json_source;
    if (src->describe(src->ctx, &recipe, err) != 0) return -1;
    Prep *p = xcalloc(1, sizeof *p);
    p->o = o;
    p->proc = proc;
    p->fmt = (ShardFormat){recipe.store, recipe.image_size};
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    int rc = start_or_resume(p, &recipe, err);
    int opened = 0;
    if (rc == 1) {
        sum->already_complete = 1;
        rc = 0;
        goto done;
    }
    if (rc != 0) goto done;
    p->shards_at_start = p->man.n_shards;
    DatasetPos pos;
    int fresh = resume_position(p, &pos, err);
    opened = fresh >= 0;  // close() is also safe after a failed open()
    if (fresh < 0 || src->open(src->ctx, fresh ? NULL : &pos, err) != 0) {
        rc = -1;
        goto done;
    }
    if (o->prepare_folder && o->prepare_folder(o->prepare_ctx, o->out_dir, err) != 0) {
        rc = -1;
        goto done;
    }
    const int n_workers = o->workers > 0 ? o->workers : prep_default_workers();
    p->W = 4 * n_workers + 8;
    p->slots = xcalloc((size_t)p->W, sizeof *p->slots);
    p->t0 = p->last_progress = now_seconds();
    pthread_t writer, *workers = xcalloc((size_t)n_workers, sizeof(pthread_t));
    PrepWorker *wargs = xcalloc((size_t)n_workers, sizeof(PrepWorker));
    if (pthread_create(&writer, NULL, writer_main, p) != 0) FATAL("cannot start the prep writer thread");
    for (int i = 0; i < n_workers; i++) {
        wargs[i] = (PrepWorker){p, i};
        if (pthread_create(&workers[i], NULL, worker_main, &wargs[i]) != 0) FATAL("cannot start prep worker %d", i);
    }
    read_items(p, src);
    pthread_join(writer, NULL);
    pthread_mutex_lock(&p->mu);
    p->stop_workers = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < n_workers; i++) pthread_join(workers[i], NULL);
    free(workers);
    free(wargs);
    for (int i = 0; i < p->W; i++) {
        dataset_sample_free(&p->slots[i].sample);
        result_free(&p->slots[i].res);
    }
    if (p->fatal) {
        *err = p->fatal_err;
        rc = -1;
        goto done;
    }
    CHECK(p->man.items == p->man.written + p->man.skipped, "prep lost items: %lld != %lld + %lld",
          (long long)p->man.items, (long long)p->man.written, (long long)p->man.skipped);
    p->man.complete = 1;
    if (write_report(p, err) != 0 || manifest_write(&p->man, o->out_dir, err) != 0) rc = -1;
    progress(p, 1);
done:
    sum->items = p->man.items;
    sum->written = p->man.written;
    sum->skipped = p->man.skipped;
    sum->truncated = p->man.truncated;
    sum->images = p->man.images;
    sum->tokens = p->man.tokens;
    sum->shards = p->man.n_shards;
    sum->seconds = now_seconds() - t0;
    if (opened) src->close(src->ctx);
    manifest_free(&p->man);
    free(p->slots);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
    return rc;
}
