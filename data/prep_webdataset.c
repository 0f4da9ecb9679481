// `llava prep --webdataset`: parts and their merge (see prep_webdataset.h).
#include "data/prep_webdataset.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"

void prep_part_name(char *dst, size_t cap, int part, int parts) {
    snprintf(dst, cap, "part-%05d-of-%05d", part, parts);
}

// Parts and their merge write into OUT: refuse a folder that holds a
// one-process prep (its manifest lists shards outside part folders).
static int check_parts_folder(const char *out, Error *err) {
    char path[4200];
    snprintf(path, sizeof path, "%.4000s/%s", out, MANIFEST_NAME);
    if (!file_exists(path)) return 0;
    Manifest m;
    if (manifest_read(&m, out, err) != 0) return -1;
    int rc = 0;
    for (int k = 0; k < m.n_shards && rc == 0; k++)
        if (strncmp(m.shards[k].file, "part-", 5) != 0)
            rc = err_set(err, "%s holds a one-process prep (%s): parts need another --out", out, m.shards[k].file);
    manifest_free(&m);
    return rc;
}

int prep_webdataset(const PrepRequest *rq_in, const WdsPrepRequest *w, PrepSummary *sum, WdsPrepResult *res,
                    Error *err) {
    memset(sum, 0, sizeof *sum);
    memset(res, 0, sizeof *res);
    if (!rq_in->out_dir) return err_set(err, "prep needs an output folder (--out)");
    if (w->parts < 1 || w->part < 0 || w->part >= w->parts) return err_set(err, "part %d of %d", w->part, w->parts);
    if (w->parts > 1 && check_parts_folder(rq_in->out_dir, err) != 0) return -1;
    WdsList list;
    if (wds_list_expand(w->spec, &list, err) != 0) return -1;
    int first = 0, end = 0;
    wds_part_range(list.n, w->part, w->parts, &first, &end);
    // The images "folder" of the recipe: where the first existing tar lies
    // (the same for every part, so the parts' recipes agree).
    char images_dir[PATH_MAX] = ".";
    for (int i = 0; i < list.n; i++)
        if (file_exists(list.paths[i])) {
            char tmp[PATH_MAX];
            snprintf(tmp, sizeof tmp, "%s", list.paths[i]);
            snprintf(images_dir, sizeof images_dir, "%s", dirname(tmp));
            break;
        }
    char label[1200], out[4096];
    PrepRequest rq = *rq_in;
    if (w->parts > 1) {
        char name[64];
        prep_part_name(name, sizeof name, w->part, w->parts);
        if (make_dirs(rq_in->out_dir, err) != 0 || path_join(out, sizeof out, rq_in->out_dir, name) != 0) {
            wds_list_free(&list);
            return err->msg[0] ? -1 : err_set(err, "%s: path too long", rq_in->out_dir);
        }
        snprintf(res->part_dir, sizeof res->part_dir, "%s", out);
        snprintf(label, sizeof label, "webdataset:%.1000s (part %d/%d: tars [%d, %d) of %d)", w->spec, w->part,
                 w->parts, first, end, list.n);
        rq.out_dir = out;
    } else {
        snprintf(label, sizeof label, "webdataset:%.1000s (%d tars)", w->spec, list.n);
    }
    const WdsOptions wo = {.caption_key = w->caption_key, .max_member_bytes = w->max_member_bytes, .label = label};
    WdsSource *ws = wds_source_create(list.paths + first, end - first, &wo, err);
    int rc = -1;
    if (ws) {
        const PrepSource src = wds_source_prep(ws);
        rq.source = &src;
        rq.data_path = label;
        rq.images_dir = images_dir;
        if (!rq.template_name) rq.template_name = "plain";
        rc = prep_from_model(&rq, sum, err);
        wds_source_free(ws);
    }
    wds_list_free(&list);
    if (rc != 0 || w->parts == 1) return rc;
    // The last part to finish merges (a part that finds others unfinished
    // leaves it to them; a merge repeated by two parts writes the same files).
    for (int i = 0; i < w->parts; i++) {
        char name[64], dir[4200];
        prep_part_name(name, sizeof name, i, w->parts);
        snprintf(dir, sizeof dir, "%s/%s", rq_in->out_dir, name);
        Manifest m;
        Error e2 = {{0}};
        if (manifest_read(&m, dir, &e2) == 0) {
            res->parts_complete += m.complete;
            manifest_free(&m);
        }
    }
    if (res->parts_complete < w->parts) return 0;
    PrepSummary all;
    if (prep_merge_parts(rq_in->out_dir, &all, err) != 0) return -1;
    res->merged = 1;
    return 0;
}

// ---- merge ------------------------------------------------------------------------------

// The N of the part folders in dir (all must agree), or -1 + err.
static int count_parts(const char *dir, Error *err) {
    DIR *d = opendir(dir);
    if (!d) return err_set(err, "%s: cannot list the folder", dir);
    struct dirent *e;
    int parts = 0, rc = 0;
    while ((e = readdir(d))) {
        int i, n, end = 0;
        if (sscanf(e->d_name, "part-%5d-of-%5d%n", &i, &n, &end) != 2 || e->d_name[end]) continue;
        if (parts && n != parts) {
            rc = err_set(err, "%s holds parts of %d and of %d: one prep per folder", dir, parts, n);
            break;
        }
        parts = n;
    }
    closedir(d);
    if (rc == 0 && parts == 0) rc = err_set(err, "%s has no part-*-of-* folders: run llava prep --part i/N first", dir);
    return rc ? -1 : parts;
}

static int copy_one(const char *src_dir, const char *dst_dir, const char *name, Error *err) {
    char src[PATH_MAX + 300], dst[PATH_MAX + 300];
    snprintf(src, sizeof src, "%s/%s", src_dir, name);
    snprintf(dst, sizeof dst, "%s/%s", dst_dir, name);
    size_t len = 0;
    char *b = read_file(src, &len, err);
    if (!b) return -1;
    const int rc = write_file_atomic(dst, b, len, err);
    free(b);
    return rc;
}

// Copies the regular *.json files of src into dst (tokenizer and processor files).
static int copy_json_files(const char *src, const char *dst, Error *err) {
    DIR *d = opendir(src);
    if (!d) return 0;
    if (make_dirs(dst, err) != 0) {
        closedir(d);
        return -1;
    }
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d))) {
        const size_t n = strlen(e->d_name);
        if (n < 6 || strcmp(e->d_name + n - 5, ".json") != 0 || strcmp(e->d_name, MANIFEST_NAME) == 0 ||
            strcmp(e->d_name, "report.json") == 0)
            continue;
        rc = copy_one(src, dst, e->d_name, err);
    }
    closedir(d);
    return rc;
}

// Adds part's report.json problems (with "part") and its reason counts.
static int merge_report(cJSON *problems, cJSON *by_reason, const char *part_dir, int part, Error *err) {
    char path[4300];
    snprintf(path, sizeof path, "%.4200s/report.json", part_dir);
    cJSON *rep = json_parse_file(path, err);
    if (!rep) return -1;
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(rep, "problems");
    const cJSON *by = cJSON_GetObjectItemCaseSensitive(rep, "by_reason");
    int rc = 0;
    if (!cJSON_IsArray(list) || !cJSON_IsObject(by)) {
        rc = err_set(err, "%s: no \"problems\" list or \"by_reason\": prep that part again", path);
    } else {
        const cJSON *q;
        cJSON_ArrayForEach(q, list) {
            cJSON *c = cJSON_Duplicate(q, 1);
            cJSON_AddNumberToObject(c, "part", part);
            cJSON_AddItemToArray(problems, c);
        }
        cJSON_ArrayForEach(q, by) {
            cJSON *have = cJSON_GetObjectItemCaseSensitive(by_reason, q->string);
            if (have) cJSON_SetNumberValue(have, have->valuedouble + q->valuedouble);
            else cJSON_AddNumberToObject(by_reason, q->string, q->valuedouble);
        }
    }
    cJSON_Delete(rep);
    return rc;
}

static int write_merged_report(const Manifest *m, cJSON *problems, cJSON *by_reason, const char *out, Error *err) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "data", m->data_path);
    cJSON_AddStringToObject(root, "out", out);
    cJSON *counts = cJSON_AddObjectToObject(root, "counts");
    cJSON_AddNumberToObject(counts, "items", (double)m->items);
    cJSON_AddNumberToObject(counts, "written", (double)m->written);
    cJSON_AddNumberToObject(counts, "skipped", (double)m->skipped);
    cJSON_AddNumberToObject(counts, "truncated", (double)m->truncated);
    cJSON_AddNumberToObject(counts, "images", (double)m->images);
    cJSON_AddNumberToObject(counts, "tokens", (double)m->tokens);
    cJSON_AddItemToObject(root, "by_reason", by_reason);
    cJSON_AddItemToObject(root, "problems", problems);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    CHECK(text, "cJSON_Print failed");
    char path[4200];
    snprintf(path, sizeof path, "%s/report.json", out);
    const int rc = write_file_atomic(path, text, strlen(text), err);
    cJSON_free(text);
    return rc;
}

int prep_merge_parts(const char *out, PrepSummary *sum, Error *err) {
    memset(sum, 0, sizeof *sum);
    const double t0 = now_seconds();
    const int parts = check_parts_folder(out, err) == 0 ? count_parts(out, err) : -1;
    if (parts < 0) return -1;
    Manifest merged;
    memset(&merged, 0, sizeof merged);
    cJSON *problems = cJSON_CreateArray(), *by_reason = cJSON_CreateObject();
    int rc = 0;
    for (int i = 0; rc == 0 && i < parts; i++) {
        char name[64], dir[4200];
        prep_part_name(name, sizeof name, i, parts);
        snprintf(dir, sizeof dir, "%s/%s", out, name);
        Manifest m;
        if (!dir_exists(dir)) {
            rc = err_set(err, "%s is missing: run llava prep ... --part %d/%d --out %s", dir, i, parts, out);
            break;
        }
        if (manifest_read(&m, dir, err) != 0) {
            rc = -1;
            break;
        }
        if (!m.complete) {
            rc = err_set(err, "%s is not complete: run (or rerun, to resume) llava prep ... --part %d/%d", dir, i, parts);
        } else if (i == 0) {
            merged = m;
            merged.shards = NULL;
            merged.n_shards = 0;
            merged.items = merged.written = merged.skipped = merged.truncated = merged.images = merged.tokens = 0;
            merged.data_size = 0;
            char *cut = strstr(merged.data_path, " (part ");
            if (cut) snprintf(cut, sizeof merged.data_path - (size_t)(cut - merged.data_path), " (%d parts)", parts);
        } else {
            // Same recipe: everything but the source's own description.
            Manifest cmp = m;
            snprintf(cmp.data_path, sizeof cmp.data_path, "%s", merged.data_path);
            cmp.data_size = merged.data_size;
            cmp.data_mtime_ns = merged.data_mtime_ns;
            char why[1200];
            if (!manifest_same_recipe(&merged, &cmp, why, sizeof why))
                rc = err_set(err, "%s was prepared with another recipe than part 0 (%s): prep it again", dir, why);
        }
        const int64_t item_base = merged.items;
        for (int k = 0; rc == 0 && k < m.n_shards; k++) {
            ManifestShard s = m.shards[k];
            if ((size_t)snprintf(s.file, sizeof s.file, "%s/%s", name, m.shards[k].file) >= sizeof s.file) {
                rc = err_set(err, "%s/%s: name too long", name, m.shards[k].file);
                break;
            }
            s.first_item += item_base;
            s.end_item += item_base;
            manifest_add_shard(&merged, &s);
        }
        if (rc == 0) {
            merged.items += m.items;
            merged.written += m.written;
            merged.skipped += m.skipped;
            merged.truncated += m.truncated;
            merged.images += m.images;
            merged.tokens += m.tokens;
            merged.data_size += m.data_size;
            rc = merge_report(problems, by_reason, dir, i, err);
        }
        if (rc == 0 && i == 0) {
            char tok_src[4300], tok_dst[4300];
            snprintf(tok_src, sizeof tok_src, "%s/%s", dir, m.tokenizer_dir);
            snprintf(tok_dst, sizeof tok_dst, "%s/%s", out, m.tokenizer_dir);
            rc = copy_json_files(dir, out, err) || copy_json_files(tok_src, tok_dst, err) ? -1 : 0;
        }
        manifest_free(&m);
    }
    merged.complete = 1;
    if (rc == 0) rc = write_merged_report(&merged, problems, by_reason, out, err);
    else {
        cJSON_Delete(problems);
        cJSON_Delete(by_reason);
    }
    // The manifest last: a folder with a complete manifest is usable.
    if (rc == 0) rc = manifest_write(&merged, out, err);
    sum->items = merged.items;
    sum->written = merged.written;
    sum->skipped = merged.skipped;
    sum->truncated = merged.truncated;
    sum->images = merged.images;
    sum->tokens = merged.tokens;
    sum->shards = merged.n_shards;
    sum->seconds = now_seconds() - t0;
    manifest_free(&merged);
    return rc;
}
