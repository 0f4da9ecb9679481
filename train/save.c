#include "train/save.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/safetensors.h"

// ---- optimizer state -------------------------------------------------------------

// Copies the fp32 values of the flat range [lo, hi) of the trainable weights
// (from the master copy when there is one) into host[hi - lo].
static void read_flat_weights(const LlavaModel *m, const Optimizer *o, size_t lo, size_t hi, float *host) {
    const Ops *ops = m->ops;
    if (o->master) {  // the slice's masters are exact; ranges outside it never get asked for
        ops->download(host, o->master + (lo - o->begin), (hi - lo) * sizeof(float));
        return;
    }
    for (int i = 0; i < MODULE_COUNT; i++) {
        size_t off, len = optim_module_part(o, m, (ModuleId)i, lo, hi, &off);
        if (len) ops->download_act(host + (o->module_start[i] + off - lo), (char *)m->weights[i] + off * ops->act_size, len);
    }
}

int save_optimizer_shard(const LlavaModel *m, const Optimizer *o, const char *dir, int rank, int world, Error *err) {
    size_t n = o->end - o->begin;
    float *master = xmalloc((n ? n : 1) * sizeof(float)), *mm = xmalloc((n ? n : 1) * sizeof(float));
    float *vv = xmalloc((n ? n : 1) * sizeof(float));
    read_flat_weights(m, o, o->begin, o->end, master);
    m->ops->download(mm, o->m, n * sizeof(float));
    m->ops->download(vv, o->v, n * sizeof(float));
    StWriter w;
    st_writer_init(&w);
    char num[32];
    snprintf(num, sizeof num, "%zu", o->begin);
    st_writer_set_metadata(&w, "begin", num);
    snprintf(num, sizeof num, "%zu", o->end);
    st_writer_set_metadata(&w, "end", num);
    snprintf(num, sizeof num, "%zu", o->total);
    st_writer_set_metadata(&w, "total", num);
    int64_t shape[1] = {(int64_t)n};
    st_writer_add(&w, "master", ST_F32, 1, shape, master);
    st_writer_add(&w, "exp_avg", ST_F32, 1, shape, mm);
    st_writer_add(&w, "exp_avg_sq", ST_F32, 1, shape, vv);
    char path[4200];
    snprintf(path, sizeof path, "%s/optimizer-%05d-of-%05d.safetensors", dir, rank, world);
    int rc = st_writer_save(&w, path, NULL, err);
    st_writer_free(&w);
    free(master);
    free(mm);
    free(vv);
    return rc;
}

static int meta_size(const StFile *f, const char *key, size_t *out, Error *err) {
    const char *v = st_metadata(f, key);
    char *end = NULL;
    unsigned long long x = v ? strtoull(v, &end, 10) : 0;
    if (!v || !*v || *end) return err_set(err, "%s: metadata \"%s\" missing or not a number", f->path, key);
    *out = (size_t)x;
    return 0;
}

// Writes host values of the flat range [lo, hi) into the trainable weights.
static void write_flat_weights(LlavaModel *m, const Optimizer *o, size_t lo, size_t hi, const float *host) {
    const Ops *ops = m->ops;
    for (int i = 0; i < MODULE_COUNT; i++) {
        size_t off, len = optim_module_part(o, m, (ModuleId)i, lo, hi, &off);
        if (len) ops->upload_act((char *)m->weights[i] + off * ops->act_size, host + (o->module_start[i] + off - lo), len);
    }
}

static int compare_ranges(const void *a, const void *b) {
    const size_t *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0];
}

int load_optimizer_shards(LlavaModel *m, Optimizer *o, const char *dir, Error *err) {
    DIR *d = opendir(dir);
    if (!d) return err_set(err, "%s: cannot open the checkpoint folder", dir);
    size_t (*ranges)[2] = NULL;  // [files] (begin, end) of every slice read
    int rc = 0, files = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d))) {
        if (strncmp(e->d_name, "optimizer-", 10) != 0 || !strstr(e->d_name, ".safetensors")) continue;
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        StFile f;
        if (st_open(&f, path, err) != 0) {
            rc = -1;
            break;
        }
        size_t b = 0, en = 0, total = 0;
        const StTensor *tm = st_find(&f, "master"), *ta = st_find(&f, "exp_avg"), *tv = st_find(&f, "exp_avg_sq");
        rc = meta_size(&f, "begin", &b, err) || meta_size(&f, "end", &en, err) || meta_size(&f, "total", &total, err);
        if (rc == 0 && total != o->total)
            rc = err_set(err, "%s: written for %zu trainable elements, this model trains %zu (another stage or model?)",
                         path, total, o->total);
        if (rc == 0 && (!tm || !ta || !tv || en < b || en > total || (size_t)tm->numel != en - b ||
                        ta->numel != tm->numel || tv->numel != tm->numel))
            rc = err_set(err, "%s: malformed optimizer shard", path);
        if (rc == 0) {
            float *host = xmalloc((en - b ? en - b : 1) * sizeof(float));
            rc = st_read_f32(&f, tm, host, err);
            if (rc == 0) write_flat_weights(m, o, b, en, host);  // every process needs every weight
            // the moments (and masters) of the overlap with our own slice
            size_t lo = b > o->begin ? b : o->begin, hi = en < o->end ? en : o->end;
            if (rc == 0 && lo < hi) {
                if (o->master) m->ops->upload(o->master + (lo - o->begin), host + (lo - b), (hi - lo) * sizeof(float));
                rc = st_read_f32(&f, ta, host, err);
                if (rc == 0) m->ops->upload(o->m + (lo - o->begin), host + (lo - b), (hi - lo) * sizeof(float));
                if (rc == 0) rc = st_read_f32(&f, tv, host, err);
                if (rc == 0) m->ops->upload(o->v + (lo - o->begin), host + (lo - b), (hi - lo) * sizeof(float));
            }
            free(host);
            ranges = xrealloc(ranges, (size_t)(files + 1) * sizeof *ranges);
            ranges[files][0] = b;
            ranges[files][1] = en;
            files++;
        }
        st_close(&f);
    }
    closedir(d);
    // The slices must tile the flat space exactly: no gap, no overlap.
    if (rc == 0) {
        if (files) qsort(ranges, (size_t)files, sizeof *ranges, compare_ranges);
        size_t cursor = 0;
        for (int i = 0; i < files && rc == 0; i++) {
            if (ranges[i][0] != cursor)
                rc = err_set(err, "%s: the optimizer slices %s at element %zu (files missing or from two runs?)", dir,
                             ranges[i][0] > cursor ? "leave a gap" : "overlap", cursor);
            cursor = ranges[i][1];
        }
        if (rc == 0 && (files == 0 || cursor != o->total))
            rc = err_set(err, "%s: the optimizer slices cover %zu of %zu elements (files missing?)", dir, cursor,
                         o->total);
    }
    free(ranges);
    return rc;
}

// ---- checkpoint folders ------------------------------------------------------------

void checkpoint_dir_name(char *out, size_t cap, const char *run_dir, long step) {
    snprintf(out, cap, "%s/checkpoint-%08ld", run_dir, step);
}

// Steps of the complete checkpoint folders, ascending. Caller frees.
static long *list_checkpoints(const char *run_dir, int *n_out) {
    *n_out = 0;
    DIR *d = opendir(run_dir);
    if (!d) return NULL;
    long *steps = NULL;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        long step;
        char tail[8];
        // exactly "checkpoint-<digits>" (a ".tmp" suffix means incomplete)
        if (sscanf(e->d_name, "checkpoint-%ld%7s", &step, tail) != 1) continue;
        char path[4096], marker[4200];
        checkpoint_dir_name(path, sizeof path, run_dir, step);
        snprintf(marker, sizeof marker, "%s/trainer_state.json", path);
        if (!file_exists(marker)) continue;
        steps = xrealloc(steps, (size_t)(n + 1) * sizeof(long));
        steps[n++] = step;
    }
    closedir(d);
    for (int i = 1; i < n; i++)  // insertion sort: a handful of entries
        for (int j = i; j > 0 && steps[j - 1] > steps[j]; j--) {
            long tmp = steps[j];
            steps[j] = steps[j - 1];
            steps[j - 1] = tmp;
        }
    *n_out = n;
    return steps;
}

int checkpoint_find_latest(const char *run_dir, char *out, size_t cap, long *step) {
    int n;
    long *steps = list_checkpoints(run_dir, &n);
    if (n == 0) {
        free(steps);
        return 0;
    }
    *step = steps[n - 1];
    checkpoint_dir_name(out, cap, run_dir, *step);
    free(steps);
    return 1;
}

int checkpoint_set_aside_after(const char *run_dir, long step, const char *suffix) {
    int n, moved = 0;
    long *steps = list_checkpoints(run_dir, &n);
    for (int i = 0; i < n; i++) {
        if (steps[i] <= step) continue;
        char path[4096], dst[4200];
        checkpoint_dir_name(path, sizeof path, run_dir, steps[i]);
        snprintf(dst, sizeof dst, "%s%s", path, suffix);
        for (int k = 2; dir_exists(dst) && k < 1000; k++) snprintf(dst, sizeof dst, "%s%s-%d", path, suffix, k);
        if (rename(path, dst) == 0) moved++;
    }
    free(steps);
    return moved;
}

int checkpoint_supersede_after(const char *run_dir, long step) {
    return checkpoint_set_aside_after(run_dir, step, ".superseded");
}

int remove_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : -1;
    if (!S_ISDIR(st.st_mode)) return unlink(path);
    DIR *d = opendir(path);
    if (!d) return -1;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char child[4096];
        if (path_join(child, sizeof child, path, e->d_name) != 0) {
            rc = -1;
            continue;
        }
        rc |= remove_tree(child);
    }
    closedir(d);
    return rmdir(path) | rc;
}

void checkpoint_prune(const char *run_dir, int keep, long current) {
    int n;
    long *steps = list_checkpoints(run_dir, &n);
    while (n > 0 && steps[n - 1] > current) n--;  // ascending: drop the newer ones from the count
    for (int i = 0; i < n - keep; i++) {
        char path[4096];
        checkpoint_dir_name(path, sizeof path, run_dir, steps[i]);
        remove_tree(path);
    }
    free(steps);
    DIR *d = opendir(run_dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (strncmp(e->d_name, "checkpoint-", 11) == 0 && len > 4 && strcmp(e->d_name + len - 4, ".tmp") == 0) {
            char path[4096];
            path_join(path, sizeof path, run_dir, e->d_name);
            remove_tree(path);
        }
    }
    closedir(d);
}

int rename_durable(const char *src, const char *dst, Error *err) {
    if (rename(src, dst) != 0) return err_set(err, "rename %s -> %s: %s", src, dst, strerror(errno));
    fsync_parent_dir(dst);
    return 0;
}
