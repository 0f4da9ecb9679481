#include "common/jsonl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/json.h"

cJSON *jsonl_load(const char *path, Error *err) {
    size_t len;
    char *text = read_file(path, &len, err);
    if (!text) return NULL;
    cJSON *arr = cJSON_CreateArray();
    CHECK(arr, "out of memory");
    long lineno = 0;
    for (size_t p = 0; p < len;) {
        char *nl = memchr(text + p, '\n', len - p);
        size_t ll = nl ? (size_t)(nl - (text + p)) : len - p;
        lineno++;
        size_t k = 0;
        while (k < ll && (text[p + k] == ' ' || text[p + k] == '\t' || text[p + k] == '\r')) k++;
        if (k < ll) {
            char what[4200];
            snprintf(what, sizeof what, "%s:%ld", path, lineno);
            cJSON *o = json_parse_text(text + p, ll, what, err);
            if (!o || !cJSON_IsObject(o)) {
                if (o) err_set(err, "%s: expected a JSON object", what);
                cJSON_Delete(o);
                cJSON_Delete(arr);
                free(text);
                return NULL;
            }
            cJSON_AddItemToArray(arr, o);
        }
        p += ll + 1;
    }
    free(text);
    return arr;
}

int jsonl_cut_torn_line(const char *path, Error *err) {
    size_t len;
    char *text = read_file(path, &len, err);
    if (!text) return -1;
    size_t complete = len;
    while (complete > 0 && text[complete - 1] != '\n') complete--;
    free(text);
    if (complete == len) return 0;
    fprintf(stderr, "%s: dropping a torn last line (%zu bytes) left by an interrupted run\n", path, len - complete);
    if (truncate(path, (off_t)complete) != 0)
        return err_set(err, "%s: cannot cut the torn last line: %s", path, strerror(errno));
    return 0;
}
