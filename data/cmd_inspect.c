// `llava inspect DIR [--sample N]`: what is in a shard folder. Without
// --sample a JSON summary (how it was prepared, counts, problems by reason,
// length statistics); with --sample one sample as JSON: ids, labels, the
// decoded text and the text that carries loss.
#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/args.h"
#include "common/json.h"
#include "data/inspect_text.h"
#include "data/manifest.h"
#include "data/shards.h"
#include "common/commands.h"

static void add_i64(cJSON *o, const char *k, int64_t v) { cJSON_AddItemToObject(o, k, cJSON_CreateNumber((double)v)); }

static void print_json(cJSON *root) {
    char *text = cJSON_Print(root);
    CHECK(text, "cJSON_Print failed");
    printf("%s\n", text);
    cJSON_free(text);
}

static int summary(const char *dir, const Manifest *m, Error *err) {
    // How it was prepared and the counts: the manifest's own sections.
    char mpath[4096];
    if (path_join(mpath, sizeof mpath, dir, MANIFEST_NAME) != 0) return err_set(err, "%s: path too long", dir);
    cJSON *man = json_parse_file(mpath, err);
    if (!man) return -1;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "folder", dir);
    cJSON_AddBoolToObject(root, "complete", m->complete);
    const char *sections[] = {"source", "config", "counts"};
    for (int i = 0; i < 3; i++)
        cJSON_AddItemToObject(root, sections[i], cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(man, sections[i]), 1));
    cJSON_Delete(man);
    cJSON *counts = cJSON_GetObjectItemCaseSensitive(root, "counts");
    add_i64(counts, "shards", m->n_shards);
    // Lengths and targets from the shards' tables.
    int64_t n[2] = {0, 0}, sum[2] = {0, 0}, targets = 0;
    int lo[2] = {0, 0}, hi[2] = {0, 0};
    for (int k = 0; k < m->n_shards; k++) {
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, m->shards[k].file);
        ShardReader r;
        if (shard_reader_open(&r, path, err) != 0) {
            cJSON_Delete(root);
            return -1;
        }
        for (int64_t i = 0; i < r.n_samples; i++) {
            const int mod = r.modality[i] == MODALITY_IMAGE, len = r.length[i];
            if (n[mod] == 0 || len < lo[mod]) lo[mod] = len;
            if (n[mod] == 0 || len > hi[mod]) hi[mod] = len;
            n[mod]++;
            sum[mod] += len;
            targets += r.targets[i];
        }
        shard_reader_close(&r);
    }
    add_i64(counts, "loss_targets", targets);
    cJSON *lengths = cJSON_AddObjectToObject(root, "lengths");
    const char *names[2] = {"text", "image"};
    for (int mod = 0; mod < 2; mod++) {
        cJSON *o = cJSON_AddObjectToObject(lengths, names[mod]);
        add_i64(o, "samples", n[mod]);
        add_i64(o, "min", lo[mod]);
        add_i64(o, "max", hi[mod]);
        cJSON_AddNumberToObject(o, "mean", n[mod] ? (double)sum[mod] / (double)n[mod] : 0.0);
    }
    // Problems by reason, from report.json when prep wrote it.
    char report[2048];
    snprintf(report, sizeof report, "%s/report.json", dir);
    if (file_exists(report)) {
        Error rerr = {{0}};
        cJSON *rep = json_parse_file(report, &rerr);
        const cJSON *by = rep ? cJSON_GetObjectItemCaseSensitive(rep, "by_reason") : NULL;
        if (by) cJSON_AddItemToObject(root, "problems_by_reason", cJSON_Duplicate(by, 1));
        cJSON_AddStringToObject(root, "report", report);
        cJSON_Delete(rep);
    }
    print_json(root);
    cJSON_Delete(root);
    return 0;
}

static cJSON *int_array(const int32_t *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    return a;
}

static int show_sample(const char *dir, const Manifest *m, int64_t want, Error *err) {
    int64_t first = 0;
    int k = 0;
    while (k < m->n_shards && want >= first + m->shards[k].samples) first += m->shards[k++].samples;
    if (want < 0 || k == m->n_shards)
        return err_set(err, "%s: no sample %lld (the folder has %lld samples: 0..%lld)", dir, (long long)want,
                       (long long)first, (long long)first - 1);
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, m->shards[k].file);
    ShardReader r;
    if (shard_reader_open(&r, path, err) != 0) return -1;
    const int64_t i = want - first;
    const int len = r.length[i];
    int32_t *ids = xmalloc((size_t)len * sizeof(int32_t)), *labels = xmalloc((size_t)len * sizeof(int32_t));
    char id[1024];
    int rc = -1;
    cJSON *root = cJSON_CreateObject();
    if (shard_read_tokens(&r, r.offset[i], len, ids, labels, err) != 0 || shard_read_id(&r, i, id, sizeof id, err) != 0)
        goto done;
    add_i64(root, "sample", want);
    cJSON_AddStringToObject(root, "id", id);
    cJSON_AddStringToObject(root, "shard", m->shards[k].file);
    add_i64(root, "index_in_shard", i);
    add_i64(root, "item", r.item[i]);
    cJSON_AddStringToObject(root, "modality", r.modality[i] == MODALITY_IMAGE ? "image" : "text");
    add_i64(root, "length", len);
    add_i64(root, "loss_targets", r.targets[i]);
    if (r.image[i] >= 0) {
        cJSON *img = cJSON_AddObjectToObject(root, "image");
        char *p = shard_read_image_path(&r, r.image[i], err);
        if (!p) goto done;
        cJSON_AddStringToObject(img, "path", p);
        free(p);
        cJSON_AddStringToObject(img, "store", image_store_name(r.fmt.store));
        add_i64(img, "bytes", r.fmt.store == STORE_PIXELS ? 3ll * r.fmt.image_size * r.fmt.image_size
                                                         : r.image_length[r.image[i]]);
    }
    // Text, when the tokenizer copied at prep time can be loaded.
    InspectText t;
    Error terr = {{0}};
    if (inspect_text_decode(&t, dir, m, ids, labels, len, &terr) == 0) {
        cJSON_AddStringToObject(root, "text", t.text);
        cJSON_AddStringToObject(root, "loss_text", t.loss_text);
        inspect_text_free(&t);
    } else {
        cJSON_AddNullToObject(root, "text");
        cJSON_AddStringToObject(root, "text_unavailable", terr.msg);
    }
    cJSON_AddItemToObject(root, "input_ids", int_array(ids, len));
    cJSON_AddItemToObject(root, "labels", int_array(labels, len));
    print_json(root);
    rc = 0;
done:
    cJSON_Delete(root);
    free(ids);
    free(labels);
    shard_reader_close(&r);
    return rc;
}

int cmd_inspect(int argc, char **argv) {
    int sample = INT_MIN;  // not given
    ArgSpec specs[] = {
        {"sample", ARG_INT, &sample, "show sample N (0-based, in shard order) instead of the summary", 0, 0, 2147483647},
    };
    const char *pos[1];
    int n_pos = 0;
    int rc = args_parse(argc, argv, specs, 1, "llava inspect DIR [--sample N]",
                        "Prints a JSON summary of a shard folder made by `llava prep`, or with --sample one\n"
                        "sample: input_ids, labels, the decoded text and the text that carries loss.",
                        pos, 1, &n_pos);
    if (rc) return rc == 1 ? EXIT_OK : EXIT_BAD_INPUT;
    if (n_pos != 1) {
        fprintf(stderr, "llava inspect: give the shard folder (see --help)\n");
        return EXIT_BAD_INPUT;
    }
    Error err = {{0}};
    Manifest m;
    if (manifest_read(&m, pos[0], &err) != 0) {
        fprintf(stderr, "llava inspect: %s\n", err.msg);
        return EXIT_BAD_INPUT;
    }
    if (sample != INT_MIN && sample < 0) {
        fprintf(stderr, "llava inspect: --sample must be >= 0\n");
        manifest_free(&m);
        return EXIT_BAD_INPUT;
    }
    int status = (sample != INT_MIN ? show_sample(pos[0], &m, sample, &err) : summary(pos[0], &m, &err)) == 0
                     ? EXIT_OK
                     : EXIT_BAD_INPUT;
    if (status != EXIT_OK) fprintf(stderr, "llava inspect: %s\n", err.msg);
    manifest_free(&m);
    return status;
}
