#include "data/datagen.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "common/json.h"
#include "common/jsonl.h"
#include "common/rng.h"
#include "common/strmap.h"

void datagen_sample_id(const char *image_id, DatagenType t, char *out, size_t cap) {
    snprintf(out, cap, "%s_%s", image_id, datagen_type_name(t));
}

void datagen_choose(uint64_t seed, const char *sample_id, int n_questions, int *question, int *image_front) {
    uint64_t h = 1469598103934665603ull;  // FNV-1a of the id, mixed with the seed
    for (const unsigned char *p = (const unsigned char *)sample_id; *p; p++) h = (h ^ *p) * 1099511628211ull;
    Rng r;
    rng_seed(&r, h ^ (seed * 0x9E3779B97F4A7C15ull));
    *question = (int)rng_below(&r, (uint64_t)(n_questions > 0 ? n_questions : 1));
    *image_front = (int)(rng_next(&r) & 1);
}

// ---- resume: ids already written ----------------------------------------------------

// Reads the ids of out_path into done after cutting a torn last line; any
// other line that is not a record is an error (not ours, or edited).
static int note_done(cJSON *o, long lineno, void *ctx, Error *err) {
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");
    int rc = 0;
    if (!cJSON_IsString(id))
        rc = err_set(err, "line %ld has no \"id\" string: not our output? Move it away to start over", lineno);
    else
        strmap_put(ctx, id->valuestring, 1);
    cJSON_Delete(o);
    return rc;
}

static int load_done(const char *path, StrMap *done, Error *err) {
    if (!file_exists(path)) return 0;
    if (jsonl_cut_torn_line(path, err) != 0) return -1;
    if (jsonl_each(path, note_done, done, err) != 0) {
        err_prefix(err, "the output to resume (%s) is damaged: ", path);
        return -1;
    }
    return 0;
}

// ---- writing ------------------------------------------------------------------------

static int write_line(int fd, cJSON *obj) {
    char *s = cJSON_PrintUnformatted(obj);
    CHECK(s, "out of memory");
    size_t n = strlen(s);
    char *line = xmalloc(n + 2);
    memcpy(line, s, n);
    line[n++] = '\n';
    free(s);
    // One write of the whole line: an interruption leaves at most a torn last line.
    size_t off = 0;
    int rc = 0;
    while (off < n) {
        ssize_t w = write(fd, line + off, n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            rc = -1;
            break;
        }
        off += (size_t)w;
    }
    free(line);
    return rc;
}

typedef struct {
    const DatagenImage *img;
    DatagenType type;
    char *id;
    char *context;
    ChatMessage *msgs;
    int n_msgs;
} Job;

typedef struct {
    const DatagenRun *run;
    Job *jobs;
    int out_fd, report_fd;
    int io_error;
    DatagenStats *st;
    StrMap *done;
} Ctx;

static void report(Ctx *c, const char *id, const char *image, const char *type, const char *reason,
                   const char *raw) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "image", image);
    cJSON_AddStringToObject(o, "type", type);
    cJSON_AddStringToObject(o, "reason", reason);
    if (raw) cJSON_AddStringToObject(o, "raw", raw);
    if (write_line(c->report_fd, o) != 0) c->io_error = errno ? errno : EIO;
    cJSON_Delete(o);
}

static void on_done(ChatCall *req, void *ctx) {
    Ctx *c = ctx;
    Job *j = &c->jobs[(intptr_t)req->tag];
    const char *tname = datagen_type_name(j->type);
    if (!req->ok) {
        char why[700];
        snprintf(why, sizeof why, "request failed: %s", req->error);
        report(c, j->id, j->img->image, tname, why, NULL);
        c->st->request_failed++;
        return;
    }
    int q = 0, front = 1;
    datagen_choose(c->run->seed, j->id, c->run->n_detail_questions, &q, &front);
    DatagenTurns turns;
    char why[256];
    if (datagen_build_turns(j->type, req->text, c->run->detail_questions[q], front, &turns, why, sizeof why) != 0) {
        char reason[300];
        snprintf(reason, sizeof reason, "unparseable response: %s", why);
        report(c, j->id, j->img->image, tname, reason, req->text);
        c->st->parse_failed++;
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", j->id);
    cJSON_AddStringToObject(o, "image", j->img->image);
    cJSON *conv = cJSON_AddArrayToObject(o, "conversations");
    for (int i = 0; i < turns.n; i++) {
        cJSON *t = cJSON_CreateObject();
        cJSON_AddStringToObject(t, "from", i % 2 ? "gpt" : "human");
        cJSON_AddStringToObject(t, "value", turns.value[i]);
        cJSON_AddItemToArray(conv, t);
    }
    if (write_line(c->out_fd, o) != 0) {
        c->io_error = errno ? errno : EIO;
    } else {
        strmap_put(c->done, j->id, 1);
        c->st->written++;
        c->st->per_type[j->type]++;
    }
    cJSON_Delete(o);
    datagen_turns_free(&turns);
}

// The report keeps one entry (the latest) per item still missing from the output.
static int compact_report(const char *path, const StrMap *done, Error *err) {
    if (!file_exists(path)) return 0;
    size_t len;
    char *text = read_file(path, &len, err);
    if (!text) return -1;
    StrMap last;
    strmap_init(&last);
    int n_lines = 0;
    char **lines = NULL;
    char **keys = NULL;
    for (size_t p = 0; p < len;) {
        char *nl = memchr(text + p, '\n', len - p);
        size_t ll = nl ? (size_t)(nl - (text + p)) : len - p;
        cJSON *o = cJSON_ParseWithLength(text + p, ll);
        const cJSON *id = o ? cJSON_GetObjectItemCaseSensitive(o, "id") : NULL;
        if (cJSON_IsString(id)) {
            lines = xrealloc(lines, (size_t)(n_lines + 1) * sizeof *lines);
            keys = xrealloc(keys, (size_t)(n_lines + 1) * sizeof *keys);
            lines[n_lines] = xmalloc(ll + 2);
            memcpy(lines[n_lines], text + p, ll);
            lines[n_lines][ll] = '\n';
            lines[n_lines][ll + 1] = 0;
            keys[n_lines] = xstrdup(id->valuestring);
            strmap_put(&last, id->valuestring, n_lines);
            n_lines++;
        }
        cJSON_Delete(o);
        p += ll + 1;
    }
    size_t cap = len + 1, n = 0;
    char *out = xmalloc(cap);
    for (int i = 0; i < n_lines; i++) {
        if (strmap_get(&last, keys[i]) != i || strmap_get(done, keys[i]) >= 0) continue;
        size_t l = strlen(lines[i]);
        memcpy(out + n, lines[i], l);
        n += l;
    }
    int rc = write_file_atomic(path, out, n, err);
    for (int i = 0; i < n_lines; i++) {
        free(lines[i]);
        free(keys[i]);
    }
    free(lines);
    free(keys);
    free(out);
    free(text);
    strmap_free(&last);
    return rc;
}

int datagen_run(const DatagenRun *run, ChatClient *client, DatagenStats *st, Error *err) {
    memset(st, 0, sizeof *st);
    StrMap done;
    strmap_init(&done);
    int rc = -1, out_fd = -1, report_fd = -1;
    Job *jobs = NULL;
    int n_jobs = 0;
    out_fd = open(run->out_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out_fd < 0) {
        err_set(err, "%s: cannot open for appending: %s", run->out_path, strerror(errno));
        goto done;
    }
    // Two runs appending to one output would both ask for the same ids.
    if (flock(out_fd, LOCK_EX | LOCK_NB) != 0) {
        err_set(err, "%s: another llava datagen is writing this file (%s)", run->out_path, strerror(errno));
        goto done;
    }
    if (load_done(run->out_path, &done, err) != 0) goto done;
    report_fd = open(run->report_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (report_fd < 0) {
        err_set(err, "%s: cannot open for appending: %s", run->report_path, strerror(errno));
        goto done;
    }
    int n_img = run->limit > 0 && run->limit < run->images->n ? run->limit : run->images->n;
    jobs = xcalloc((size_t)n_img * DATAGEN_N_TYPES + 1, sizeof *jobs);
    Ctx ctx = {run, jobs, out_fd, report_fd, 0, st, &done};
    for (int i = 0; i < n_img; i++) {
        const DatagenImage *img = &run->images->items[i];
        for (int t = 0; t < DATAGEN_N_TYPES; t++) {
            if (!run->prompts[t]) continue;
            char id[512];
            datagen_sample_id(img->id, (DatagenType)t, id, sizeof id);
            if (strmap_get(&done, id) >= 0) {
                st->already_done++;
                continue;
            }
            if (img->problem) {  // one entry per sample it costs
                report(&ctx, id, img->image, datagen_type_name((DatagenType)t), img->problem, NULL);
                st->bad_images++;
                continue;
            }
            Job *j = &jobs[n_jobs++];
            j->img = img;
            j->type = (DatagenType)t;
            j->id = xstrdup(id);
        }
    }
    int batch = run->batch > 0 ? run->batch : 32;
    for (int b0 = 0; b0 < n_jobs && !ctx.io_error; b0 += batch) {
        int nb = n_jobs - b0 < batch ? n_jobs - b0 : batch;
        ChatCall *reqs = xcalloc((size_t)nb, sizeof *reqs);
        for (int k = 0; k < nb; k++) {
            Job *j = &jobs[b0 + k];
            j->context = datagen_context(j->img, run->with_boxes[j->type]);
            j->msgs = prompt_folder_messages(run->prompts[j->type], j->context, &j->n_msgs);
            reqs[k] = (ChatCall){.messages = j->msgs, .n_messages = j->n_msgs, .tag = (void *)(intptr_t)(b0 + k)};
        }
        chat_client_run(client, reqs, nb, on_done, &ctx);
        if (fsync(out_fd) != 0 || fsync(report_fd) != 0) ctx.io_error = errno;
        for (int k = 0; k < nb; k++) {
            chat_call_free(&reqs[k]);
            free(jobs[b0 + k].context);
            free(jobs[b0 + k].msgs);
        }
        free(reqs);
        fprintf(stderr, "datagen: %d/%d requests done (%ld written, %ld unparseable, %ld failed)\n", b0 + nb, n_jobs,
                st->written, st->parse_failed, st->request_failed);
    }
    if (ctx.io_error) {
        err_set(err, "%s: write failed: %s", run->out_path, strerror(ctx.io_error));
        goto done;
    }
    if (close(report_fd) != 0) {
        report_fd = -1;
        err_set(err, "%s: %s", run->report_path, strerror(errno));
        goto done;
    }
    report_fd = -1;
    rc = compact_report(run->report_path, &done, err);
done:
    if (out_fd >= 0 && close(out_fd) != 0 && rc == 0) rc = err_set(err, "%s: %s", run->out_path, strerror(errno));
    if (report_fd >= 0) close(report_fd);
    for (int k = 0; jobs && k < n_jobs; k++) free(jobs[k].id);
    free(jobs);
    strmap_free(&done);
    return rc;
}
