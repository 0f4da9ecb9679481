#include "common/jsonl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/json.h"

int jsonl_each(const char *path, JsonlFn fn, void *ctx, Error *err) {
    FILE *f = fopen(path, "r");
    if (!f) return err_set(err, "%s: cannot open: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long lineno = 0;
    int rc = 0;
    while (rc == 0 && (len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        size_t k = 0;
        while (k < (size_t)len && (line[k] == ' ' || line[k] == '\t' || line[k] == '\r' || line[k] == '\n')) k++;
        if (k == (size_t)len) continue;
        char what[4200];
        snprintf(what, sizeof what, "%s:%ld", path, lineno);
        cJSON *o = json_parse_text(line, (size_t)len, what, err);
        if (!o || !cJSON_IsObject(o)) {
            if (o) err_set(err, "%s: expected a JSON object", what);
            cJSON_Delete(o);
            rc = -1;
            break;
        }
        rc = fn(o, lineno, ctx, err);  // fn owns o
    }
    if (rc == 0 && ferror(f)) rc = err_set(err, "%s: read error: %s", path, strerror(errno));
    free(line);
    fclose(f);
    return rc;
}

static int collect(cJSON *o, long lineno, void *ctx, Error *err) {
    (void)lineno;
    (void)err;
    cJSON_AddItemToArray(ctx, o);
    return 0;
}

cJSON *jsonl_load(const char *path, Error *err) {
    cJSON *arr = cJSON_CreateArray();
    CHECK(arr, "out of memory");
    if (jsonl_each(path, collect, arr, err) != 0) {
        cJSON_Delete(arr);
        return NULL;
    }
    return arr;
}

int jsonl_cut_torn_line(const char *path, Error *err) {
    FILE *f = fopen(path, "r");
    if (!f) return err_set(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        fclose(f);
        return err_set(err, "%s: %s", path, strerror(errno));
    }
    // Back from the end to the last newline, a block at a time.
    off_t end = st.st_size, complete = -1;
    char buf[4096];
    while (end > 0 && complete < 0) {
        off_t start = end > (off_t)sizeof buf ? end - (off_t)sizeof buf : 0;
        size_t n = (size_t)(end - start);
        if (fseeko(f, start, SEEK_SET) != 0 || fread(buf, 1, n, f) != n) {
            fclose(f);
            return err_set(err, "%s: read error", path);
        }
        for (size_t i = n; i > 0 && complete < 0; i--)
            if (buf[i - 1] == '\n') complete = start + (off_t)i;
        end = start;
    }
    fclose(f);
    if (complete < 0) complete = 0;
    if (complete == st.st_size) return 0;
    fprintf(stderr, "%s: dropping a torn last line (%lld bytes) left by an interrupted run\n", path,
            (long long)(st.st_size - complete));
    if (truncate(path, complete) != 0)
        return err_set(err, "%s: cannot cut the torn last line: %s", path, strerror(errno));
    return 0;
}
