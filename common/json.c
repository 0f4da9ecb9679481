#include "common/json.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void json_text_position(const char *text, size_t at, int *line, int *col) {
    *line = 1, *col = 1;
    for (size_t i = 0; i < at; i++) {
        if (text[i] == '\n') {
            ++*line;
            *col = 1;
        } else {
            ++*col;
        }
    }
}

long json_find_nul_escape(const char *text, size_t len) {
    // Backslashes occur only inside strings in valid JSON, so escapes can be
    // followed without tracking quotes; each escape is skipped whole so that
    // "\\u0000" (a backslash, then the text u0000) is not a NUL.
    for (size_t i = 0; i + 1 < len; i++) {
        if (text[i] != '\\') continue;
        if (text[i + 1] == 'u' && i + 6 <= len && memcmp(text + i + 2, "0000", 4) == 0) return (long)i;
        i++;
    }
    return -1;
}

int json_number_to_int64(const cJSON *v, double lo, double hi, int64_t *out) {
    // Range first: converting a double outside int64's range is undefined.
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi)) return -1;
    if (v->valuedouble != floor(v->valuedouble)) return -1;
    *out = (int64_t)v->valuedouble;
    return 0;
}

cJSON *json_parse_text(const char *text, size_t len, const char *what, Error *err) {
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    int line, col;
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        if (!at || at < text || at > text + len) at = text + len;
        json_text_position(text, (size_t)(at - text), &line, &col);
        err_set(err, "%s:%d:%d: malformed JSON (byte offset %ld)", what, line, col, (long)(at - text));
        return NULL;
    }
    for (const char *p = end; p && p < text + len; p++) {
        if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t') {
            err_set(err, "%s: unexpected content after the JSON value (byte offset %ld)", what, (long)(p - text));
            cJSON_Delete(root);
            return NULL;
        }
    }
    // cJSON keeps strings NUL-terminated without a length: a decoded NUL would
    // silently cut a name, path or token short.
    long nul = json_find_nul_escape(text, len);
    if (nul >= 0) {
        json_text_position(text, (size_t)nul, &line, &col);
        err_set(err, "%s:%d:%d: a string holds \\u0000 (a NUL character), which is not supported", what, line, col);
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

cJSON *json_parse_file(const char *path, Error *err) {
    size_t len = 0;
    char *text = read_file(path, &len, err);
    if (!text) return NULL;
    cJSON *root = json_parse_text(text, len, path, err);
    free(text);
    return root;
}

cJSON *json_parse_object_file(const char *path, Error *err) {
    cJSON *root = json_parse_file(path, err);
    if (root && !cJSON_IsObject(root)) {
        err_set(err, "%s: expected a JSON object", path);
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

int json_has(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return v && !cJSON_IsNull(v);
}

int json_get_double(const cJSON *obj, const char *key, double def, double *out, const char *where, Error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsNumber(v)) return err_set(err, "%s: \"%s\" must be a number", where, key);
    // cJSON turns 1e400 into inf: no setting is meant to be infinite.
    if (!isfinite(v->valuedouble)) return err_set(err, "%s: \"%s\" must be a finite number", where, key);
    *out = v->valuedouble;
    return 0;
}

int json_get_float(const cJSON *obj, const char *key, float def, float *out, const char *where, Error *err) {
    double d = 0.0;
    if (json_get_double(obj, key, def, &d, where, err) != 0) return -1;
    if (fabs(d) > FLT_MAX) return err_set(err, "%s: \"%s\" = %g is outside the float range", where, key, d);
    *out = (float)d;
    return 0;
}

int json_get_int(const cJSON *obj, const char *key, int def, int *out, const char *where, Error *err) {
    double d = 0.0;
    if (json_get_double(obj, key, def, &d, where, err) != 0) return -1;
    if (d != floor(d) || d < -2147483648.0 || d > 2147483647.0)
        return err_set(err, "%s: \"%s\" must be an integer (got %g)", where, key, d);
    *out = (int)d;
    return 0;
}

int json_get_bool(const cJSON *obj, const char *key, int def, int *out, const char *where, Error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsBool(v)) return err_set(err, "%s: \"%s\" must be true or false", where, key);
    *out = cJSON_IsTrue(v);
    return 0;
}

int json_get_string(const cJSON *obj, const char *key, const char *def, const char **out, const char *where,
                    Error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsString(v)) return err_set(err, "%s: \"%s\" must be a string", where, key);
    *out = v->valuestring;
    return 0;
}
