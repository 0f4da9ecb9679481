#include "common/json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

cJSON *json_parse_text(const char *text, size_t len, const char *what, Error *err) {
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        if (!at || at < text || at > text + len) at = text + len;
        int line = 1, col = 1;
        for (const char *p = text; p < at; p++) {
            if (*p == '\n') {
                line++;
                col = 1;
            } else {
                col++;
            }
        }
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
    *out = v->valuedouble;
    return 0;
}

int json_get_float(const cJSON *obj, const char *key, float def, float *out, const char *where, Error *err) {
    double d = 0.0;
    if (json_get_double(obj, key, def, &d, where, err) != 0) return -1;
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
