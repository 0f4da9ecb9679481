// LLaVA data files: a JSON list of samples or JSONL (one sample per line),
// read one item at a time so that files larger than memory stream through.
//
//   {"id": "000000033471", "image": "coco/train2017/000000033471.jpg",
//    "conversations": [{"from": "human", "value": "<image>\nWhat ...?"},
//                      {"from": "gpt", "value": "The bus ..."}]}
//
// "image" is optional (text-only sample) and relative to the image folder.
// Every item of the file either becomes a DatasetSample or a DatasetProblem
// naming the file, item index, line and (when readable) sample id, so that a
// caller can account for every item. Only damage to the file's structure
// itself (an unterminated list, text after the list, an I/O error) stops the
// reader; a malformed item is reported and reading goes on.
//
// Usage:
//   DatasetReader *r = dataset_open(path, &err);
//   for (;;) {
//       int rc = dataset_next(r, &sample, &problem, &err);
//       if (rc == DATASET_END) break;
//       if (rc == DATASET_ERROR) fail(err.msg);
//       if (rc == DATASET_BAD_ITEM) report(&problem); else use(&sample);
//       dataset_sample_free(&sample);
//   }
//   dataset_close(r);
#ifndef LLAVA_DATASET_H
#define LLAVA_DATASET_H

#include <stdint.h>

#include "common/util.h"

// Why a sample was skipped (or, for PROBLEM_TRUNCATED, written shortened).
// The names (problem_reason_name) appear in report.json.
typedef enum {
    PROBLEM_MALFORMED_JSON,          // the item is not valid JSON (line:column given)
    PROBLEM_MALFORMED_SAMPLE,        // not an object; "id" or "image" of the wrong type
    PROBLEM_MALFORMED_CONVERSATION,  // "conversations" missing/wrong, bad turn, no gpt turn
    PROBLEM_MISSING_IMAGE,           // the image file does not exist or cannot be read
    PROBLEM_CORRUPT_IMAGE,           // the image file does not decode
    PROBLEM_EMPTY_ANSWER,            // no answer token left after truncation
    PROBLEM_IMAGE_TRUNCATED,         // truncation would cut through the image tokens
    PROBLEM_MASK_MISMATCH,           // our tokens differ from tokenizing the whole prompt
    PROBLEM_TRUNCATED,               // written, cut to the maximum length
    // WebDataset tar shards (data/webdataset.h)
    PROBLEM_MISSING_CAPTION,         // no .txt member / no caption field in the .json member
    PROBLEM_CORRUPT_ARCHIVE,         // a tar that ends early or has a damaged header
    PROBLEM_DUPLICATE_KEY,           // a key seen before in the same tar
    PROBLEM_UNSAFE_MEMBER,           // a member name with "..", an absolute path, or too big a size
    PROBLEM_COUNT
} ProblemReason;

const char *problem_reason_name(ProblemReason r);
// Inverse of problem_reason_name; -1 for an unknown name.
int problem_reason_parse(const char *name);

typedef enum { ROLE_HUMAN = 0, ROLE_GPT = 1 } TurnRole;

typedef struct {
    TurnRole role;  // "from": "human" | "gpt"
    char *value;
} DatasetTurn;

typedef struct {
    int64_t index;        // 0-based position of the item in the file (every item counts)
    int64_t line;         // 1-based line where the item starts
    char *id;             // "" when the item has no "id"; numbers as written
    char *image;          // NULL for a text-only sample
    int n_turns;
    DatasetTurn *turns;   // [n_turns], in file order (a leading gpt turn is kept)
    uint8_t *image_data;  // the image's bytes when they come from an archive (image names
    size_t image_len;     // the member then), NULL when the image is a file to read
} DatasetSample;

typedef struct {
    int64_t index, line;
    char id[256];         // "" when unknown
    char file[1024];      // the file at fault when not the data file (an image); "" otherwise
    ProblemReason reason;
    char detail[768];     // what is wrong, with line:column for malformed JSON
} DatasetProblem;

// A position between items, for resuming a partial read (dataset_tell /
// dataset_seek). `offset` is the byte offset of the next unread byte.
typedef struct {
    int64_t offset, index, line, col;
    int list_ended;       // JSON list: the closing ']' was read
} DatasetPos;

typedef struct DatasetReader DatasetReader;

enum { DATASET_END = 0, DATASET_SAMPLE = 1, DATASET_BAD_ITEM = 2, DATASET_ERROR = -1 };

// Opens a data file. The format is chosen by content: a file whose first
// non-blank character is '[' is a JSON list, anything else JSONL.
DatasetReader *dataset_open(const char *path, Error *err);
// Next item: DATASET_SAMPLE (sample filled; free it with dataset_sample_free),
// DATASET_BAD_ITEM (problem filled), DATASET_END, or DATASET_ERROR (err set:
// the file's structure is broken at the given line:column; nothing more can
// be read).
int dataset_next(DatasetReader *r, DatasetSample *sample, DatasetProblem *problem, Error *err);
void dataset_tell(const DatasetReader *r, DatasetPos *pos);
// Continues reading at a position returned by dataset_tell on the same file.
int dataset_seek(DatasetReader *r, const DatasetPos *pos, Error *err);
int dataset_is_jsonl(const DatasetReader *r);
const char *dataset_path(const DatasetReader *r);
void dataset_close(DatasetReader *r);

void dataset_sample_free(DatasetSample *s);

// Validates one parsed item (a cJSON object) and fills sample; on failure
// fills problem and returns -1. `index`/`line` are copied into both. Exposed
// for callers that hold items in memory (tests, `llava train` on a list).
struct cJSON;
int dataset_sample_from_json(const struct cJSON *item, int64_t index, int64_t line, DatasetSample *sample,
                             DatasetProblem *problem);

#endif
