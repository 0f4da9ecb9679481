// `llava prep --webdataset`: WebDataset tar shards -> the same HDF5 shards,
// manifest.json and report.json as JSON prep, optionally spread over
// machines with --part i/N, and the merge of the parts into one folder.
//
// Parts. N processes on any hosts share one output folder OUT (a shared
// file system): part i preps tars [i*T/N, (i+1)*T/N) of the T named tars into
// OUT/part-<i>-of-<N>/, an ordinary prep folder (resumable after a crash,
// untouched once complete). When a part finishes and finds every part
// complete it merges: OUT/manifest.json then lists the shards of all parts
// in part order (the order one process would have written), OUT/report.json
// holds every part's problems with their part number, and OUT/tokenizer and
// the processor files are copied from part 0. `llava prep --merge --out OUT`
// does the same by hand. The loader and `llava inspect` read OUT like any
// shard folder.
#ifndef LLAVA_PREP_WEBDATASET_H
#define LLAVA_PREP_WEBDATASET_H

#include "data/prep_model.h"
#include "data/webdataset.h"

typedef struct {
    const char *spec;          // the --webdataset argument (data/webdataset.h: braces, globs, list file)
    const char *caption_key;   // "txt" (default) or a field of KEY.json
    int64_t max_member_bytes;  // 0: WDS_DEFAULT_MAX_MEMBER_MB
    int part, parts;           // this process's part; parts == 1: no part folders
} WdsPrepRequest;

typedef struct {
    int merged;                // the parts were merged into rq->out_dir by this call
    int parts_complete;        // parts complete after this call (of parts)
    char part_dir[4096];       // where this part was written ("" when parts == 1)
} WdsPrepResult;

// Runs (or resumes) prep of this part; rq->data_path, images_dir and out_dir
// are filled in here (out_dir: the folder of all parts). 0, or -1 + err.
int prep_webdataset(const PrepRequest *rq, const WdsPrepRequest *w, PrepSummary *sum, WdsPrepResult *res,
                    Error *err);

// Merges OUT/part-*-of-N/ (all N complete, one recipe) into OUT/manifest.json
// and OUT/report.json. 0, or -1 + err naming the missing or incomplete part.
int prep_merge_parts(const char *out_dir, PrepSummary *sum, Error *err);

// The folder name of part i of N: "part-00001-of-00004".
void prep_part_name(char *dst, size_t cap, int part, int parts);

#endif
