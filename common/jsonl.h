// JSONL files written and read by the commands that append one record per
// line (datagen, judge): whole-file loading with line numbers in errors, and
// the repair of a torn last line that a killed process leaves behind.
#ifndef LLAVA_JSONL_H
#define LLAVA_JSONL_H

#include <cjson/cJSON.h>

#include "common/util.h"

// Calls fn on each object of a JSONL file in order, one line in memory at a
// time (outputs of a long run can be larger than memory as a tree). fn owns
// the object; a non-zero return stops. Blank lines are skipped; a line that
// is not a JSON object is an error naming path:line.
typedef int (*JsonlFn)(cJSON *obj, long lineno, void *ctx, Error *err);
int jsonl_each(const char *path, JsonlFn fn, void *ctx, Error *err);
// A JSONL file -> a cJSON array of its objects (for small inputs).
cJSON *jsonl_load(const char *path, Error *err);
// Cuts a last line that has no newline (the process died inside a write):
// records are one write of one line each, so only that line can be torn.
// Says on stderr what it cut. 0 ok (also when there was nothing to cut).
int jsonl_cut_torn_line(const char *path, Error *err);

#endif
