// cJSON helpers: parse a file with a line:column error, and typed field
// getters that fall back to a default when the key is absent or null and fail
// (naming file and key) when the value has the wrong type.
#ifndef LLAVA_JSON_H
#define LLAVA_JSON_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "common/util.h"

// Parses a whole file; NULL + "path:line:col: message" on failure.
cJSON *json_parse_file(const char *path, Error *err);
// The same, refusing a file whose top level is not an object ("PATH: expected a JSON object").
cJSON *json_parse_object_file(const char *path, Error *err);
// Parses a buffer; `what` names the source in messages. A string holding
// \u0000 is refused (cJSON's strings end at the first NUL).

cJSON *json_parse_text(const char *text, size_t len, const char *what, Error *err);

// Byte offset of the first \u0000 escape in JSON text, or -1.
long json_find_nul_escape(const char *text, size_t len);
// An integer-valued JSON number in [lo, hi] (|lo|, |hi| <= 2^53) into *out;
// -1 (out untouched) for anything else, without undefined conversions.
int json_number_to_int64(const cJSON *v, double lo, double hi, int64_t *out);
// 1-based line and column of byte `at` of text.
void json_text_position(const char *text, size_t at, int *line, int *col);

// Present = not absent and not JSON null.
int json_has(const cJSON *obj, const char *key);
int json_get_int(const cJSON *obj, const char *key, int def, int *out, const char *where, Error *err);
int json_get_double(const cJSON *obj, const char *key, double def, double *out, const char *where, Error *err);
int json_get_float(const cJSON *obj, const char *key, float def, float *out, const char *where, Error *err);
int json_get_bool(const cJSON *obj, const char *key, int def, int *out, const char *where, Error *err);
// *out points into the cJSON tree (or to def).
int json_get_string(const cJSON *obj, const char *key, const char *def, const char **out, const char *where,
                    Error *err);

#endif
