// The language-only model's responses -> LLaVA conversations, for the three
// response types of the paper:
//   conv     a multi-turn conversation: "Question:\n...\n===\nAnswer:\n..."
//            blocks (the paper's format) or one {"question", "answer"} JSON
//            object per line (LLaVA's newer prompt folder); any number of
//            rounds
//   detail   a detailed description: the whole response is the answer, the
//            question is drawn from a list (the paper's Table 9 style)
//   complex  complex reasoning: exactly one "Question: / === / Answer:" pair
// A response that does not fit is refused with a reason; the caller keeps it
// with its raw text in report.jsonl.
#ifndef LLAVA_DATAGEN_PARSE_H
#define LLAVA_DATAGEN_PARSE_H

#include <stddef.h>

typedef enum { DATAGEN_CONV, DATAGEN_DETAIL, DATAGEN_COMPLEX, DATAGEN_N_TYPES } DatagenType;

const char *datagen_type_name(DatagenType t);    // "conv", "detail", "complex"
const char *datagen_type_folder(DatagenType t);  // LLaVA's: "conversation", "detail_description", "complex_reasoning"
// Parses "conv,detail,complex" into a mask of 1 << type; -1 on an unknown name.
int datagen_types_parse(const char *list, int *mask);

// Alternating human, gpt, human, gpt, ... values (owned).
typedef struct {
    char **value;
    int n;
} DatagenTurns;

void datagen_turns_free(DatagenTurns *t);

// "Question:/===/Answer:" blocks or JSON lines -> question/answer pairs.
// 0 ok; -1 with `why`.
int datagen_parse_qa(const char *text, DatagenTurns *out, char *why, size_t cap);

// The conversation of one response. detail_question is used by DATAGEN_DETAIL.
// image_front: "<image>\n" before the first question, else "\n<image>" after
// it (LLaVA-Instruct has both).
int datagen_build_turns(DatagenType type, const char *response, const char *detail_question, int image_front,
                        DatagenTurns *out, char *why, size_t cap);

// The paper's instructions for a detailed description.
extern const char *const DATAGEN_DETAIL_QUESTIONS[];
extern const int DATAGEN_N_DETAIL_QUESTIONS;

#endif
