// `llava prep --webdataset` on the fixtures of scripts/make_webdataset_fixtures.py
// (tests/fixtures/webdataset): tar shards written as img2dataset writes them.
//   - the tar list: brace ranges, {a,b}, globs, list files, parts
//   - member names: keys, extensions, unsafe names
//   - clean shards give exactly the samples of the same data as a LLaVA JSON
//     + image folder (ids, tokens, labels, pixels), caption from .txt or .json
//   - hostile shards: every problem in report.json with tar, key and reason as
//     expected.json lists them, counts add up, nothing written outside --out
//   - --part 0/N .. N-1/N + merge = one process (N = 1, 2, 3), read back by the
//     loader; a part killed after a shard resumes to the same result
//   - 300 randomly damaged copies of a shard: read to the end, never fatal
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/json.h"
#include "data/loader.h"
#include "data/manifest.h"
#include "data/prep_webdataset.h"
#include "data/shards.h"
#include "tests/testlib.h"

static const char *SRC;
static char TMP[512];

static PrepRequest request(const char *model, const char *out, int shard_samples) {
    PrepRequest rq;
    prep_request_default(&rq);
    rq.model_dir = model;
    rq.template_name = "plain";
    rq.out_dir = out;
    rq.workers = 3;
    rq.shard_max_samples = shard_samples;
    rq.progress = 0;
    return rq;
}

// ---- what a folder holds, sample by sample ---------------------------------------

typedef struct {
    char id[128];
    uint64_t hash;  // FNV-1a of ids, labels and pixels
    int length;
} SampleDigest;

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    for (size_t i = 0; i < n; i++) h = (h ^ ((const uint8_t *)p)[i]) * 1099511628211ull;
    return h;
}

// Every sample of a shard folder in manifest order. Returns the count.
static int read_folder(const char *dir, SampleDigest *out, int cap) {
    Error err = {{0}};
    Manifest m;
    if (manifest_read(&m, dir, &err) != 0) {
        EXPECT(0, "%s", err.msg);
        return -1;
    }
    EXPECT(m.complete, "%s is complete", dir);
    int n = 0;
    for (int k = 0; k < m.n_shards; k++) {
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, m.shards[k].file);
        ShardReader r;
        CHECK(shard_reader_open(&r, path, &err) == 0, "%s", err.msg);
        for (int64_t i = 0; i < r.n_samples && n < cap; i++, n++) {
            int32_t ids[512], labels[512];
            uint8_t px[3 * 28 * 28];
            CHECK(r.length[i] <= 512 && shard_read_tokens(&r, r.offset[i], r.length[i], ids, labels, &err) == 0, "%s",
                  err.msg);
            CHECK(r.image[i] >= 0 && shard_read_pixels(&r, r.image[i], px, &err) == 0, "%s", err.msg);
            CHECK(shard_read_id(&r, i, out[n].id, sizeof out[n].id, &err) == 0, "%s", err.msg);
            uint64_t h = fnv(1469598103934665603ull, ids, (size_t)r.length[i] * 4);
            h = fnv(h, labels, (size_t)r.length[i] * 4);
            out[n].hash = fnv(h, px, sizeof px);
            out[n].length = r.length[i];
        }
        shard_reader_close(&r);
    }
    manifest_free(&m);
    return n;
}

static void expect_same_samples(const char *a, const char *b, int min_samples) {
    SampleDigest x[64], y[64];
    const int n = read_folder(a, x, 64), m = read_folder(b, y, 64);
    EXPECT(n == m && n >= min_samples, "%s has %d samples, %s has %d (at least %d)", a, n, b, m, min_samples);
    for (int i = 0; i < n && i < m; i++)
        EXPECT(strcmp(x[i].id, y[i].id) == 0 && x[i].hash == y[i].hash && x[i].length == y[i].length,
               "sample %d: %s vs %s (%s / %s)", i, x[i].id, y[i].id, a, b);
}

// ---- the tar list, names, parts ---------------------------------------------------

static void test_list(void) {
    Error err = {{0}};
    char spec[1024];
    WdsList l;
    snprintf(spec, sizeof spec, "%s/tests/fixtures/webdataset/clean/{00000..00002}.tar", SRC);
    EXPECT(wds_list_expand(spec, &l, &err) == 0 && l.n == 3 && strstr(l.paths[2], "clean/00002.tar"),
           "brace range: %s", err.msg);
    wds_list_free(&l);
    snprintf(spec, sizeof spec, "%s/tests/fixtures/webdataset/clean/*.tar", SRC);
    EXPECT(wds_list_expand(spec, &l, &err) == 0 && l.n == 3 && strstr(l.paths[0], "00000.tar") &&
               strstr(l.paths[1], "00001.tar"),
           "glob, sorted, the .parquet and _stats.json left out: %s", err.msg);
    wds_list_free(&l);
    snprintf(spec, sizeof spec, "%s/tests/fixtures/webdataset/{clean,hostile}/0000{0,1}.tar", SRC);
    EXPECT(wds_list_expand(spec, &l, &err) == 0 && l.n == 4 && strstr(l.paths[1], "clean/00001.tar") &&
               strstr(l.paths[2], "hostile/00000.tar"),
           "two brace lists: %s", err.msg);
    wds_list_free(&l);
    snprintf(spec, sizeof spec, "%s/tests/fixtures/webdataset/hostile/shards.txt", SRC);
    EXPECT(wds_list_expand(spec, &l, &err) == 0 && l.n == 5 && strstr(l.paths[4], "hostile/00004.tar"),
           "list file (comments, blank lines, a missing tar kept): %s", err.msg);
    wds_list_free(&l);
    const char *bad[] = {"/nonexistent/{0..3}.tar", "/nonexistent/*.tar", "x/{3..1}.tar", "x/{1..2.tar", ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err.msg[0] = 0;
        EXPECT(wds_list_expand(bad[i], &l, &err) != 0 && err.msg[0], "'%s' refused with a message", bad[i]);
    }
    int part = -1, parts = -1;
    EXPECT(wds_part_parse("1/3", &part, &parts, &err) == 0 && part == 1 && parts == 3, "1/3");
    const char *bad_parts[] = {"3/3", "-1/2", "1/0", "1/2x", "one"};
    for (size_t i = 0; i < sizeof bad_parts / sizeof *bad_parts; i++)
        EXPECT(wds_part_parse(bad_parts[i], &part, &parts, &err) != 0, "--part %s refused", bad_parts[i]);
    setenv("OMPI_COMM_WORLD_RANK", "2", 1);
    setenv("OMPI_COMM_WORLD_SIZE", "4", 1);
    EXPECT(wds_part_parse("auto", &part, &parts, &err) == 0 && part == 2 && parts == 4, "--part auto under mpirun");
    unsetenv("OMPI_COMM_WORLD_RANK");
    unsetenv("OMPI_COMM_WORLD_SIZE");
    for (int N = 1; N <= 7; N++) {
        int covered = 0, prev_end = 0;
        for (int i = 0; i < N; i++) {
            int a, b;
            wds_part_range(5, i, N, &a, &b);
            EXPECT(a == prev_end && b >= a, "parts tile the list");
            covered += b - a;
            prev_end = b;
        }
        EXPECT(covered == 5, "%d parts cover 5 tars", N);
    }
    char key[64], ext[64];
    EXPECT(wds_split_name("000000012.jpg", key, 64, ext, 64) == 0 && !strcmp(key, "000000012") && !strcmp(ext, "jpg"),
           "plain key");
    EXPECT(wds_split_name("a.b/x.seg.png", key, 64, ext, 64) == 0 && !strcmp(key, "a.b/x") && !strcmp(ext, "seg.png"),
           "key with a folder, two-part extension");
    const char *unsafe[] = {"../x.jpg", "a/../../x.jpg", "/etc/x.jpg", ".jpg", "", "a/..", "dir/.hidden"};
    for (size_t i = 0; i < sizeof unsafe / sizeof *unsafe; i++)
        EXPECT(wds_split_name(unsafe[i], key, 64, ext, 64) != 0, "'%s' is unsafe", unsafe[i]);
}

// ---- clean shards = the same data as LLaVA JSON -------------------------------------

static void test_same_as_json(const char *model) {
    char json_out[600], wds_out[600], wds_json_out[600], data[1024], images[1024], spec[1024];
    snprintf(json_out, sizeof json_out, "%s/from_json", TMP);
    snprintf(wds_out, sizeof wds_out, "%s/from_tars", TMP);
    snprintf(wds_json_out, sizeof wds_json_out, "%s/from_tars_jsonfield", TMP);
    snprintf(data, sizeof data, "%s/tests/fixtures/webdataset/clean/llava.json", SRC);
    snprintf(images, sizeof images, "%s/tests/fixtures/webdataset/clean/images", SRC);
    snprintf(spec, sizeof spec, "%s/tests/fixtures/webdataset/clean/{00000..00002}.tar", SRC);
    Error err = {{0}};
    PrepSummary sum;
    PrepRequest rq = request(model, json_out, 5);
    rq.data_path = data;
    rq.images_dir = images;
    EXPECT(prep_from_model(&rq, &sum, &err) == 0 && sum.written == 12, "JSON prep: %s", err.msg);
    rq = request(model, wds_out, 4);
    WdsPrepRequest wq = {.spec = spec, .caption_key = "txt", .parts = 1};
    WdsPrepResult res;
    EXPECT(prep_webdataset(&rq, &wq, &sum, &res, &err) == 0 && sum.items == 12 && sum.written == 12 &&
               sum.skipped == 0,
           "webdataset prep: %lld written: %s", (long long)sum.written, err.msg);
    expect_same_samples(json_out, wds_out, 12);
    wq.caption_key = "caption";  // the same caption from KEY.json
    rq = request(model, wds_json_out, 100);
    rq.template_name = NULL;     // webdataset default: plain
    EXPECT(prep_webdataset(&rq, &wq, &sum, &res, &err) == 0 && sum.written == 12, "--caption-key caption: %s", err.msg);
    expect_same_samples(json_out, wds_json_out, 12);
    // A second run on the complete folder does nothing.
    rq = request(model, wds_out, 4);
    wq.caption_key = "txt";
    EXPECT(prep_webdataset(&rq, &wq, &sum, &res, &err) == 0 && sum.already_complete, "complete folder: nothing to do");
}

// ---- hostile shards: the report ---------------------------------------------------------

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static void check_hostile_report(const char *out) {
    Error err = {{0}};
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/webdataset/hostile/expected.json", SRC);
    cJSON *want = json_parse_file(path, &err);
    snprintf(path, sizeof path, "%s/report.json", out);
    cJSON *rep = json_parse_file(path, &err);
    CHECK(want && rep, "%s", err.msg);
    const cJSON *wp = cJSON_GetObjectItem(want, "problems"), *gp = cJSON_GetObjectItem(rep, "problems");
    const cJSON *c = cJSON_GetObjectItem(rep, "counts");
    const int items = cJSON_GetObjectItem(c, "items")->valueint, written = cJSON_GetObjectItem(c, "written")->valueint;
    const int skipped = cJSON_GetObjectItem(c, "skipped")->valueint;
    const int n_written = cJSON_GetArraySize(cJSON_GetObjectItem(want, "written"));
    EXPECT(items == written + skipped && written == n_written && skipped == cJSON_GetArraySize(wp),
           "%s: %d items = %d written (want %d) + %d skipped (want %d)", out, items, written, n_written, skipped,
           cJSON_GetArraySize(wp));
    EXPECT(cJSON_GetArraySize(gp) == cJSON_GetArraySize(wp), "%s: %d report entries, want %d", out,
           cJSON_GetArraySize(gp), cJSON_GetArraySize(wp));
    for (int i = 0; i < cJSON_GetArraySize(wp) && i < cJSON_GetArraySize(gp); i++) {
        const cJSON *w = cJSON_GetArrayItem(wp, i), *g = cJSON_GetArrayItem(gp, i);
        const char *tar = cJSON_GetObjectItem(w, "tar")->valuestring;
        const char *key = cJSON_GetObjectItem(w, "key")->valuestring;
        const char *reason = cJSON_GetObjectItem(w, "reason")->valuestring;
        const char *file = cJSON_GetObjectItem(g, "file")->valuestring;
        // The tar is the file, or the file is the member inside it (image problems).
        char tar_dir[128];
        snprintf(tar_dir, sizeof tar_dir, "/%s/", tar);
        const int names_tar = strcmp(base_name(file), tar) == 0 || strstr(file, tar_dir) != NULL;
        EXPECT(names_tar && strcmp(cJSON_GetObjectItem(g, "id")->valuestring, key) == 0 &&
                   strcmp(cJSON_GetObjectItem(g, "reason")->valuestring, reason) == 0,
               "%s: entry %d: %s '%s' %s, want %s '%s' %s (%s)", out, i, file,
               cJSON_GetObjectItem(g, "id")->valuestring, cJSON_GetObjectItem(g, "reason")->valuestring, tar, key,
               reason, cJSON_GetObjectItem(g, "detail")->valuestring);
    }
    // The written samples are the good ones, in order.
    SampleDigest d[64];
    const int n = read_folder(out, d, 64);
    for (int i = 0; i < n && i < n_written; i++)
        EXPECT(strcmp(d[i].id, cJSON_GetArrayItem(cJSON_GetObjectItem(want, "written"), i)->valuestring) == 0,
               "%s: written sample %d is %s", out, i, d[i].id);
    cJSON_Delete(want);
    cJSON_Delete(rep);
}

// Only prep's own files under out: nothing a member name could have made.
static void check_only_prep_files(const char *dir) {
    DIR *d = opendir(dir);
    CHECK(d, "%s", dir);
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *n = e->d_name;
        if (!strcmp(n, ".") || !strcmp(n, "..")) continue;
        const int ok = !strcmp(n, "manifest.json") || !strcmp(n, "report.json") || !strcmp(n, "tokenizer") ||
                       !strcmp(n, "preprocessor_config.json") || !strcmp(n, "processor_config.json") ||
                       !strncmp(n, "shard-", 6) || !strncmp(n, "part-", 5) || !strcmp(n, "tokenizer.json") ||
                       !strcmp(n, "tokenizer_config.json");
        EXPECT(ok, "%s: unexpected file %s", dir, n);
    }
    closedir(d);
}

static void test_hostile(const char *model) {
    char out[600], spec[1024], evil[700];
    snprintf(out, sizeof out, "%s/hostile", TMP);
    snprintf(spec, sizeof spec, "%s/tests/fixtures/webdataset/hostile/shards.txt", SRC);
    snprintf(evil, sizeof evil, "%s/../evil.jpg", out);
    const int evil_before = file_exists(evil), abs_before = file_exists("/tmp/llava_wds_absolute.txt");
    PrepRequest rq = request(model, out, 2);
    WdsPrepRequest wq = {.spec = spec, .caption_key = "txt", .parts = 1};
    WdsPrepResult res;
    PrepSummary sum;
    Error err = {{0}};
    EXPECT(prep_webdataset(&rq, &wq, &sum, &res, &err) == 0, "hostile prep finishes: %s", err.msg);
    check_hostile_report(out);
    check_only_prep_files(out);
    EXPECT(file_exists(evil) == evil_before && file_exists("/tmp/llava_wds_absolute.txt") == abs_before,
           "nothing written where the traversal and absolute names point");
}

// ---- parts, merge, resume --------------------------------------------------------------

// Clean then hostile tars in one list: samples and problems in every part.
static void write_mixed_list(const char *path) {
    FILE *f = fopen(path, "w");
    CHECK(f, "%s", path);
    for (int i = 0; i < 3; i++) fprintf(f, "%s/tests/fixtures/webdataset/clean/%05d.tar\n", SRC, i);
    for (int i = 0; i < 5; i++) fprintf(f, "%s/tests/fixtures/webdataset/hostile/%05d.tar\n", SRC, i);
    fclose(f);
}

static int64_t report_count(const char *dir, const char *key) {
    char path[1024];
    snprintf(path, sizeof path, "%s/report.json", dir);
    Error err = {{0}};
    cJSON *rep = json_parse_file(path, &err);
    if (!rep) return -1;
    const cJSON *v = strcmp(key, "problems") == 0 ? NULL : cJSON_GetObjectItem(cJSON_GetObjectItem(rep, "counts"), key);
    const int64_t n = v ? (int64_t)v->valuedouble : cJSON_GetArraySize(cJSON_GetObjectItem(rep, "problems"));
    cJSON_Delete(rep);
    return n;
}

// The loader reads a merged folder like any other: every sample once, in file order.
static void check_loader_order(const char *dir, const SampleDigest *want, int n) {
    LoaderOptions o;
    loader_options_default(&o);
    o.dir = dir;
    o.shuffle = 0;
    o.workers = 1;
    Error err = {{0}};
    Loader *L = loader_open(&o, &err);
    EXPECT(L != NULL && loader_num_samples(L) == n, "loader on %s: %s", dir, err.msg);
    for (int i = 0; L && i < n; i++) {
        LoaderBatch b;
        CHECK(loader_next(L, &b, &err) == 0, "%s", err.msg);
        EXPECT(b.n_samples == 1 && strcmp(b.sample_id[0], want[i].id) == 0, "loader sample %d: %s, want %s", i,
               b.n_samples ? b.sample_id[0] : "-", want[i].id);
    }
    loader_close(L);
}

static void test_parts(const char *model) {
    char list[600], one[600];
    snprintf(list, sizeof list, "%s/mixed.txt", TMP);
    snprintf(one, sizeof one, "%s/one", TMP);
    write_mixed_list(list);
    Error err = {{0}};
    PrepSummary sum;
    WdsPrepResult res;
    PrepRequest rq = request(model, one, 3);
    WdsPrepRequest wq = {.spec = list, .caption_key = "txt", .parts = 1};
    CHECK(prep_webdataset(&rq, &wq, &sum, &res, &err) == 0, "%s", err.msg);
    SampleDigest ref[64];
    const int n_ref = read_folder(one, ref, 64);
    EXPECT(n_ref == 12 + 5, "one process: %d samples", n_ref);
    for (int N = 1; N <= 3; N++) {
        char out[600];
        snprintf(out, sizeof out, "%s/parts%d", TMP, N);
        for (int i = 0; i < N; i++) {
            rq = request(model, out, 3);
            wq.part = i;
            wq.parts = N;
            CHECK(prep_webdataset(&rq, &wq, &sum, &res, &err) == 0, "%s", err.msg);
            EXPECT(res.merged == (N > 1 && i == N - 1), "parts %d: merged after part %d: %d", N, i, res.merged);
        }
        expect_same_samples(one, out, 17);
        EXPECT(report_count(out, "items") == report_count(one, "items") &&
                   report_count(out, "problems") == report_count(one, "problems"),
               "parts %d: the merged report has the one-process counts and problems", N);
        check_only_prep_files(out);
        check_loader_order(out, ref, n_ref);
    }
    // --merge by hand gives the same folder; a missing part is named.
    char out2[600];
    snprintf(out2, sizeof out2, "%s/parts2", TMP);
    EXPECT(prep_merge_parts(out2, &sum, &err) == 0 && sum.written == 17, "--merge again: %s", err.msg);
    char missing[700];
    snprintf(missing, sizeof missing, "%s/part-00001-of-00002", TMP);
    char half[600];
    snprintf(half, sizeof half, "%s/half", TMP);
    rq = request(model, half, 3);
    wq.part = 0;
    wq.parts = 2;
    CHECK(prep_webdataset(&rq, &wq, &sum, &res, &err) == 0 && !res.merged && res.parts_complete == 1, "%s", err.msg);
    EXPECT(prep_merge_parts(half, &sum, &err) != 0 && strstr(err.msg, "part-00001-of-00002") &&
               strstr(err.msg, "--part 1/2"),
           "merge names the missing part: %s", err.msg);

    // Parts never write into a one-process folder.
    rq = request(model, one, 3);
    wq.part = 0;
    wq.parts = 2;
    EXPECT(prep_webdataset(&rq, &wq, &sum, &res, &err) != 0 && strstr(err.msg, "one-process prep"),
           "parts refuse a one-process folder: %s", err.msg);
    EXPECT(prep_merge_parts(one, &sum, &err) != 0 && strstr(err.msg, "one-process prep"), "so does --merge: %s",
           err.msg);

    // Crash-resume of one part: part 0 of 2 stops after its first shard (as
    // if killed), the rerun finishes it; the merge equals the one-process run.
    char crash[600];
    snprintf(crash, sizeof crash, "%s/crash", TMP);
    rq = request(model, crash, 2);
    rq.crash_after_shards = 1;
    wq.part = 0;
    CHECK(prep_webdataset(&rq, &wq, &sum, &res, &err) != 0 && strstr(err.msg, "crash_after_shards"), "%s", err.msg);
    char part0[700];
    snprintf(part0, sizeof part0, "%s/part-00000-of-00002", crash);
    Manifest m;
    CHECK(manifest_read(&m, part0, &err) == 0, "%s", err.msg);
    EXPECT(!m.complete && m.n_shards == 1, "the killed part holds 1 finished shard, incomplete");
    manifest_free(&m);
    rq = request(model, crash, 2);
    wq.part = 1;
    CHECK(prep_webdataset(&rq, &wq, &sum, &res, &err) == 0 && !res.merged, "%s", err.msg);
    wq.part = 0;
    CHECK(prep_webdataset(&rq, &wq, &sum, &res, &err) == 0 && res.merged, "resumed part 0 merges: %s", err.msg);
    expect_same_samples(one, crash, 17);
    EXPECT(report_count(crash, "problems") == report_count(one, "problems"), "resumed: same report");
    // Resume across every shard boundary of a hostile tar: stop after k shards, resume, compare.
    for (int k = 1; k <= 4; k++) {
        char out[600], spec[1024];
        snprintf(out, sizeof out, "%s/hostile_resume%d", TMP, k);
        snprintf(spec, sizeof spec, "%s/tests/fixtures/webdataset/hostile/shards.txt", SRC);
        WdsPrepRequest hq = {.spec = spec, .caption_key = "txt", .parts = 1};
        rq = request(model, out, 1);
        rq.crash_after_shards = k;
        prep_webdataset(&rq, &hq, &sum, &res, &err);
        rq.crash_after_shards = 0;
        EXPECT(prep_webdataset(&rq, &hq, &sum, &res, &err) == 0, "hostile resume after %d shards: %s", k, err.msg);
        check_hostile_report(out);
    }
}

// ---- damaged bytes ------------------------------------------------------------------------

// A clean shard with random bytes overwritten or cut short, 300 times: the
// reader always ends, never fails the run, and accounts for every group it
// saw (run under AddressSanitizer as test_webdataset_asan).
static void test_mangled(void) {
    char path[1024], bad[700];
    snprintf(path, sizeof path, "%s/tests/fixtures/webdataset/clean/00001.tar", SRC);
    snprintf(bad, sizeof bad, "%s/mangled.tar", TMP);
    Error err = {{0}};
    size_t len = 0;
    uint8_t *orig = (uint8_t *)read_file(path, &len, &err);
    CHECK(orig, "%s", err.msg);
    uint8_t *buf = xmalloc(len);
    uint64_t r = 12345;
    int ended = 0;
    for (int trial = 0; trial < 300; trial++) {
        memcpy(buf, orig, len);
        size_t n = len;
        const int flips = 1 + trial % 8;
        for (int f = 0; f < flips; f++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            buf[(r >> 33) % len] = (uint8_t)(r >> 13);
        }
        if (trial % 3 == 0) n = (size_t)((r >> 20) % len);
        CHECK(write_file_atomic(bad, buf, n, &err) == 0, "%s", err.msg);
        char *paths[1] = {bad};
        const WdsOptions wo = {.caption_key = trial % 2 ? "caption" : "txt", .max_member_bytes = 1 << 20, .label = "x"};
        WdsSource *ws = wds_source_create(paths, 1, &wo, &err);
        CHECK(ws, "%s", err.msg);
        PrepSource src = wds_source_prep(ws);
        CHECK(src.open(src.ctx, NULL, &err) == 0, "%s", err.msg);
        int rc, items = 0;
        do {
            DatasetSample smp = {0};
            DatasetProblem q;
            rc = src.next(src.ctx, &smp, &q, &err);
            dataset_sample_free(&smp);
            items += rc == DATASET_SAMPLE || rc == DATASET_BAD_ITEM;
        } while (rc != DATASET_END && rc != DATASET_ERROR && items < 1000);
        ended += rc == DATASET_END;
        src.close(src.ctx);
        wds_source_free(ws);
    }
    EXPECT(ended == 300, "every mangled tar read to its end without a fatal error: %d of 300", ended);
    free(buf);
    free(orig);
}

int main(int argc, char **argv) {
    SRC = argc > 1 ? argv[1] : ".";
    snprintf(TMP, sizeof TMP, "/tmp/llava_test_webdataset_XXXXXX");
    if (!mkdtemp(TMP)) return 1;
    // A model folder with a tokenizer: 4008 ids, <image> = 4004, 28 px images.
    char model[600];
    snprintf(model, sizeof model, "%s/tests/fixtures/tiny_llava_text", SRC);
    test_list();
    test_same_as_json(model);
    test_hostile(model);
    test_parts(model);
    test_mangled();
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", TMP);
    if (test_failures == 0 && system(cmd) != 0) fprintf(stderr, "could not remove %s\n", TMP);
    return test_summary("test_webdataset");
}
