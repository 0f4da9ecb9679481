// metrics.jsonl of a training run: one JSON object a line, appended with
// every write checked (a full disk stops the run instead of tearing records
// unnoticed). On open, the file is cut back to the records of the steps the
// run resumes from: records after that step (from a run that went on past
// its last checkpoint) and a torn last line move to metrics.jsonl.superseded,
// so the file stays valid JSONL and holds each step once.
#ifndef LLAVA_METRICS_H
#define LLAVA_METRICS_H

#include <stdio.h>

#include "common/util.h"

typedef struct {
    FILE *f;
    char path[4200];
} MetricsFile;

// Opens run_dir/metrics.jsonl for appending after keeping only its complete
// records with "step" <= keep_step (0 for a fresh start). *moved = lines set
// aside. 0 ok, -1 + err.
int metrics_open(MetricsFile *m, const char *run_dir, long keep_step, int *moved, Error *err);
// Appends one record (a JSON object without the newline) and flushes.
// -1 + err (naming the file and the reason) when it is not all written.
int metrics_append(MetricsFile *m, const char *record, Error *err);
void metrics_close(MetricsFile *m);

#endif
