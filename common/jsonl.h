// JSONL files written and read by the commands that append one record per
// line (datagen, judge): whole-file loading with line numbers in errors, and
// the repair of a torn last line that a killed process leaves behind.
#ifndef LLAVA_JSONL_H
#define LLAVA_JSONL_H

#include <cjson/cJSON.h>

#include "common/util.h"

// A JSONL file -> a cJSON array of its objects (blank lines skipped); errors
// name the line.
cJSON *jsonl_load(const char *path, Error *err);
// Cuts a last line that has no newline (the process died inside a write):
// records are one write of one line each, so only that line can be torn.
// Says on stderr what it cut. 0 ok (also when there was nothing to cut).
int jsonl_cut_torn_line(const char *path, Error *err);

#endif
