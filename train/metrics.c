#include "train/metrics.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// The byte length of the prefix of text made of complete records with
// "step" <= keep_step (stops at the first line that is torn, not a JSON
// object with a numeric step, or past keep_step).
static size_t kept_prefix(const char *text, size_t len, long keep_step) {
    size_t at = 0;
    while (at < len) {
        const char *nl = memchr(text + at, '\n', len - at);
        if (!nl) break;  // torn: no newline
        const size_t n = (size_t)(nl - (text + at));
        cJSON *rec = cJSON_ParseWithLength(text + at, n);
        const cJSON *step = rec ? cJSON_GetObjectItemCaseSensitive(rec, "step") : NULL;
        const int keep = cJSON_IsNumber(step) && step->valuedouble <= (double)keep_step;
        cJSON_Delete(rec);
        if (!keep) break;
        at += n + 1;
    }
    return at;
}

static int count_lines(const char *s, size_t n) {
    int k = 0;
    for (size_t i = 0; i < n; i++) k += s[i] == '\n';
    return k + (n > 0 && s[n - 1] != '\n');
}

int metrics_open(MetricsFile *m, const char *run_dir, long keep_step, int *moved, Error *err) {
    memset(m, 0, sizeof *m);
    *moved = 0;
    if (path_join(m->path, sizeof m->path, run_dir, "metrics.jsonl") != 0)
        return err_set(err, "%s: path too long", run_dir);
    if (file_exists(m->path)) {
        size_t len = 0;
        char *text = read_file(m->path, &len, err);
        if (!text) return -1;
        const size_t keep = kept_prefix(text, len, keep_step);
        if (keep < len) {
            // Set the rest aside first (appended: earlier set-asides stay), then cut.
            char aside[4300];
            snprintf(aside, sizeof aside, "%s.superseded", m->path);
            FILE *a = fopen(aside, "ab");
            int ok = a && fwrite(text + keep, 1, len - keep, a) == len - keep;
            if (ok && text[len - 1] != '\n') ok = fputc('\n', a) != EOF;
            if (a) ok = (fclose(a) == 0) && ok;
            if (!ok) {
                free(text);
                return err_set(err, "%s: cannot write: %s", aside, strerror(errno));
            }
            *moved = count_lines(text + keep, len - keep);
            if (truncate(m->path, (off_t)keep) != 0) {
                free(text);
                return err_set(err, "%s: cannot cut back to step %ld: %s", m->path, keep_step, strerror(errno));
            }
        }
        free(text);
    }
    m->f = fopen(m->path, "a");
    if (!m->f) return err_set(err, "%s: cannot open for writing: %s", m->path, strerror(errno));
    return 0;
}

int metrics_append(MetricsFile *m, const char *record, Error *err) {
    const size_t n = strlen(record);
    errno = 0;
    if (fwrite(record, 1, n, m->f) != n || fputc('\n', m->f) == EOF || fflush(m->f) != 0)
        return err_set(err, "%s: write failed: %s", m->path, errno ? strerror(errno) : "short write");
    return 0;
}

void metrics_close(MetricsFile *m) {
    if (m->f) fclose(m->f);
    m->f = NULL;
}
