// The prep pipeline with a stand-in processor (no tokenizer or image decoder
// needed): counts add up and every problem is reported, the shards do not
// depend on the worker count, an interrupted run resumes to the same result,
// a complete folder is a no-op, a different recipe is refused, a broken file
// stops with line:column.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common/json.h"
#include "data/manifest.h"
#include "data/prep.h"
#include "data/shards.h"
#include "tests/testlib.h"

#define S 3

// Stand-in for templates + tokenizer + images: tokens from the text length,
// one turn only -> malformed conversation (as a template refuses it),
// "missing" in an image name -> missing image, "long" in the id -> truncated.
static int fake_process(void *ctx, int worker, const DatasetSample *s, PrepResult *out, Error *err) {
    (void)ctx;
    (void)worker;
    (void)err;
    if (s->n_turns < 2) {
        out->has_problem = 1;
        out->problem.reason = PROBLEM_MALFORMED_CONVERSATION;
        snprintf(out->problem.detail, sizeof out->problem.detail, "no gpt turn");
        return 0;
    }
    if (s->image && strstr(s->image, "missing")) {
        out->has_problem = 1;
        out->problem.reason = PROBLEM_MISSING_IMAGE;
        snprintf(out->problem.file, sizeof out->problem.file, "/images/%s", s->image);
        snprintf(out->problem.detail, sizeof out->problem.detail, "no such file");
        return 0;
    }
    size_t chars = 0;
    for (int t = 0; t < s->n_turns; t++) chars += strlen(s->turns[t].value);
    const int len = 2 + (int)(chars % 17);
    out->write = 1;
    out->length = len;
    out->ids = xmalloc((size_t)len * sizeof(int32_t));
    out->labels = xmalloc((size_t)len * sizeof(int32_t));
    for (int t = 0; t < len; t++) {
        out->ids[t] = (int32_t)(chars + (size_t)t) % 100;
        out->labels[t] = t == 0 ? -100 : out->ids[t];
    }
    if (s->image) {
        out->pixels = xmalloc(3 * S * S);
        for (int k = 0; k < 3 * S * S; k++) out->pixels[k] = (uint8_t)(chars * 3 + (size_t)k);
    }
    if (strstr(s->id, "long")) {
        out->truncated = 1;
        out->has_problem = 1;
        out->problem.reason = PROBLEM_TRUNCATED;
        snprintf(out->problem.detail, sizeof out->problem.detail, "cut to %d tokens", len);
    }
    return 0;
}

static const PrepProcessor FAKE = {NULL, fake_process};

static int n_items, n_bad_json, n_missing, n_long, n_nogpt;

static void write_data(const char *path) {
    FILE *f = fopen(path, "wb");
    n_items = n_bad_json = n_missing = n_long = n_nogpt = 0;
    for (int i = 0; i < 60; i++, n_items++) {
        if (i % 13 == 5) {  // malformed JSON
            fprintf(f, "{\"id\": \"bad%d\", \"conversations\": [}\n", i);
            n_bad_json++;
        } else if (i % 11 == 3) {
            fprintf(f, "{\"id\": \"nogpt%d\", \"conversations\": [{\"from\": \"human\", \"value\": \"q\"}]}\n", i);
            n_nogpt++;
        } else {
            const char *image = i % 3 == 0 ? NULL : (i % 7 == 1 ? "missing.jpg" : "ok.jpg");
            n_missing += image && strstr(image, "missing");
            const int is_long = i % 9 == 4 && !(image && strstr(image, "missing"));
            n_long += is_long;
            fprintf(f, "{\"id\": \"%s%d\", %s%s%s \"conversations\": [{\"from\": \"human\", \"value\": \"question %d %.*s\"}, {\"from\": \"gpt\", \"value\": \"answer\"}]}\n",
                    is_long ? "long" : "s", i, image ? "\"image\": \"" : "", image ? image : "", image ? "\"," : "", i,
                    i % 10, "xxxxxxxxxx");
        }
    }
    fclose(f);
}

static Manifest recipe(const char *template_name) {
    Manifest m;
    memset(&m, 0, sizeof m);
    snprintf(m.images_dir, sizeof m.images_dir, "/images");
    snprintf(m.model_dir, sizeof m.model_dir, "/model");
    snprintf(m.template_name, sizeof m.template_name, "%s", template_name);
    snprintf(m.aspect, sizeof m.aspect, "pad");
    snprintf(m.tokenizer_hash, sizeof m.tokenizer_hash, "fnv1a64:0123456789abcdef");
    snprintf(m.tokenizer_dir, sizeof m.tokenizer_dir, "tokenizer");
    m.max_length = 64;
    m.store = STORE_PIXELS;
    m.image_size = S;
    m.image_seq_length = 4;
    m.image_token_index = 99;
    for (int c = 0; c < 3; c++) {
        m.image_mean[c] = 0.5f;
        m.image_std[c] = 0.25f;
    }
    return m;
}

static int run(const char *data, const char *out, int workers, int crash_after, const char *tmpl, PrepSummary *sum,
               Error *err) {
    PrepOptions o = {.data_path = data, .out_dir = out, .workers = workers, .shard_max_samples = 7,
                     .crash_after_shards = crash_after};
    Manifest r = recipe(tmpl);
    return prep_run(&o, &r, &FAKE, sum, err);
}

// Everything the shards of a folder hold, hashed in order.
static uint64_t folder_digest(const char *dir) {
    Manifest m;
    Error err = {{0}};
    if (manifest_read(&m, dir, &err) != 0) return 0;
    uint64_t h = 1469598103934665603ull;
#define MIX(p, n) for (size_t q_ = 0; q_ < (size_t)(n); q_++) h = (h ^ ((const uint8_t *)(p))[q_]) * 1099511628211ull
    for (int k = 0; k < m.n_shards; k++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, m.shards[k].file);
        ShardReader r;
        if (shard_reader_open(&r, path, &err) != 0) return 0;
        for (int64_t i = 0; i < r.n_samples; i++) {
            int32_t ids[64], labels[64];
            char id[256];
            uint8_t px[3 * S * S];
            shard_read_tokens(&r, r.offset[i], r.length[i], ids, labels, &err);
            shard_read_id(&r, i, id, sizeof id, &err);
            MIX(ids, r.length[i] * 4);
            MIX(labels, r.length[i] * 4);
            MIX(id, strlen(id));
            MIX(&r.item[i], 8);
            if (r.image[i] >= 0) {
                shard_read_pixels(&r, r.image[i], px, &err);
                MIX(px, sizeof px);
            }
        }
        char *info = shard_read_prep_info(&r, &err);
        MIX(info, strlen(info));
        free(info);
        shard_reader_close(&r);
    }
#undef MIX
    manifest_free(&m);
    return h;
}

static void check_report(const char *dir) {
    char path[1024];
    snprintf(path, sizeof path, "%s/report.json", dir);
    Error err = {{0}};
    cJSON *rep = json_parse_file(path, &err);
    EXPECT(rep != NULL, "report.json: %s", err.msg);
    if (!rep) return;
    const cJSON *c = cJSON_GetObjectItem(rep, "counts");
    const int items = cJSON_GetObjectItem(c, "items")->valueint, written = cJSON_GetObjectItem(c, "written")->valueint;
    const int skipped = cJSON_GetObjectItem(c, "skipped")->valueint;
    const int truncated = cJSON_GetObjectItem(c, "truncated")->valueint;
    EXPECT(items == n_items && written + skipped == items, "counts add up: %d = %d + %d", items, written, skipped);
    EXPECT(skipped == n_bad_json + n_nogpt + n_missing && truncated == n_long, "skipped %d, truncated %d", skipped,
           truncated);
    const cJSON *by = cJSON_GetObjectItem(rep, "by_reason");
    EXPECT(cJSON_GetObjectItem(by, "malformed_json")->valueint == n_bad_json &&
               cJSON_GetObjectItem(by, "malformed_conversation")->valueint == n_nogpt &&
               cJSON_GetObjectItem(by, "missing_image")->valueint == n_missing &&
               cJSON_GetObjectItem(by, "truncated")->valueint == n_long,
           "by_reason");
    const cJSON *problems = cJSON_GetObjectItem(rep, "problems"), *q;
    EXPECT(cJSON_GetArraySize(problems) == skipped + truncated, "one entry per problem (%d)",
           cJSON_GetArraySize(problems));
    int64_t last = -1;
    int ok = 1;
    cJSON_ArrayForEach(q, problems) {
        const int64_t index = (int64_t)cJSON_GetObjectItem(q, "index")->valuedouble;
        const int64_t line = (int64_t)cJSON_GetObjectItem(q, "line")->valuedouble;
        const char *reason = cJSON_GetObjectItem(q, "reason")->valuestring;
        const char *id = cJSON_GetObjectItem(q, "id")->valuestring;
        const char *file = cJSON_GetObjectItem(q, "file")->valuestring;
        const char *action = cJSON_GetObjectItem(q, "action")->valuestring;
        ok &= index > last && line == index + 1;  // JSONL: item i on line i + 1; entries in file order
        last = index;
        char want_id[32];
        if (strcmp(reason, "malformed_json") == 0) {
            ok &= index % 13 == 5 && strstr(cJSON_GetObjectItem(q, "detail")->valuestring, "column") != NULL;
        } else if (strcmp(reason, "missing_image") == 0) {
            snprintf(want_id, sizeof want_id, "s%lld", (long long)index);
            ok &= strcmp(id, want_id) == 0 && strcmp(file, "/images/missing.jpg") == 0 && strcmp(action, "skipped") == 0;
        } else if (strcmp(reason, "truncated") == 0) {
            snprintf(want_id, sizeof want_id, "long%lld", (long long)index);
            ok &= strcmp(id, want_id) == 0 && strcmp(action, "written") == 0;
        } else if (strcmp(reason, "malformed_conversation") == 0) {
            snprintf(want_id, sizeof want_id, "nogpt%lld", (long long)index);
            ok &= strcmp(id, want_id) == 0 && strstr(file, "data.jsonl") != NULL;
        } else {
            ok = 0;
        }
    }
    EXPECT(ok, "report entries name the item, line, id, file and reason");
    cJSON_Delete(rep);
}

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    char dir[] = "/tmp/llava_test_prep_XXXXXX";
    if (!mkdtemp(dir)) return 1;
    char data[600], a[600], b[600], c[600], d[600];
    snprintf(data, sizeof data, "%s/data.jsonl", dir);
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(b, sizeof b, "%s/b", dir);
    snprintf(c, sizeof c, "%s/c", dir);
    snprintf(d, sizeof d, "%s/d", dir);
    write_data(data);
    PrepSummary sum;
    Error err = {{0}};

    EXPECT(run(data, a, 4, 0, "plain", &sum, &err) == 0, "prep a: %s", err.msg);
    EXPECT(sum.items == n_items && sum.written + sum.skipped == sum.items && !sum.already_complete,
           "summary counts %lld = %lld + %lld", (long long)sum.items, (long long)sum.written, (long long)sum.skipped);
    EXPECT(sum.shards == (int)((sum.written + 6) / 7), "shards of at most 7 samples: %d", sum.shards);
    check_report(a);
    const uint64_t want = folder_digest(a);
    EXPECT(want != 0, "digest of a");

    EXPECT(run(data, b, 1, 0, "plain", &sum, &err) == 0, "prep b: %s", err.msg);
    EXPECT(folder_digest(b) == want, "one worker writes the same shards as four");

    // Interrupted after 2 shards, plus the debris of a crash, then resumed.
    EXPECT(run(data, c, 3, 2, "plain", &sum, &err) != 0 && strstr(err.msg, "stopped after 2 shards"),
           "simulated crash: %s", err.msg);
    Manifest m;
    EXPECT(manifest_read(&m, c, &err) == 0 && !m.complete && m.n_shards == 2, "interrupted folder lists 2 shards");
    manifest_free(&m);
    char junk[700];
    snprintf(junk, sizeof junk, "%s/shard-00002.h5.tmp", c);
    FILE *f = fopen(junk, "wb");
    fputs("partial", f);
    fclose(f);
    snprintf(junk, sizeof junk, "%s/shard-00003.h5", c);
    f = fopen(junk, "wb");
    fputs("finished but not recorded", f);
    fclose(f);
    EXPECT(run(data, c, 2, 0, "plain", &sum, &err) == 0, "resume c: %s", err.msg);
    EXPECT(sum.items == n_items, "resumed run counts all items: %lld", (long long)sum.items);
    EXPECT(folder_digest(c) == want, "resumed shards equal an uninterrupted run");
    check_report(c);

    // A complete folder: nothing to do, nothing touched.
    char mpath[700];
    snprintf(mpath, sizeof mpath, "%s/manifest.json", a);
    struct stat st0, st1;
    stat(mpath, &st0);
    EXPECT(run(data, a, 2, 0, "plain", &sum, &err) == 0 && sum.already_complete, "complete folder is a no-op");
    stat(mpath, &st1);
    EXPECT(st0.st_mtim.tv_sec == st1.st_mtim.tv_sec && st0.st_mtim.tv_nsec == st1.st_mtim.tv_nsec,
           "manifest untouched");
    EXPECT(run(data, a, 2, 0, "vicuna_v1", &sum, &err) != 0 && strstr(err.msg, "different recipe") &&
               strstr(err.msg, "template_name"),
           "other recipe refused: %s", err.msg);

    // A folder with other files is not overwritten.
    EXPECT(make_dirs(d, &err) == 0, "mkdir");
    snprintf(junk, sizeof junk, "%s/notes.txt", d);
    f = fopen(junk, "wb");
    fputs("mine", f);
    fclose(f);
    EXPECT(run(data, d, 2, 0, "plain", &sum, &err) != 0 && strstr(err.msg, "not empty"), "foreign folder: %s",
           err.msg);

    // A broken list stops with its position.
    char broken[600], e[600];
    snprintf(broken, sizeof broken, "%s/broken.json", dir);
    snprintf(e, sizeof e, "%s/e", dir);
    f = fopen(broken, "wb");
    fputs("[{\"id\": \"1\", \"conversations\": [{\"from\": \"human\", \"value\": \"q\"}, {\"from\": \"gpt\", \"value\": \"a\"}]},\n"
          " {\"id\": \"2\", \"conversations\": \"unterminated}\n",
          f);
    fclose(f);
    EXPECT(run(broken, e, 2, 0, "plain", &sum, &err) != 0 && strstr(err.msg, "broken.json:3:1") &&
               strstr(err.msg, "unterminated string"),
           "broken list: %s", err.msg);

    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", dir);
    return test_summary("test_prep_pipeline");
}
