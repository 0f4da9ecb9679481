// ScienceQA questions in LLaVA's format (llava_test_CQM-A.json, written by
// scripts/convert_sqa.py) and the question text LLaVA's model_vqa_science.py
// builds from each, before the conversation template.
#ifndef LLAVA_SQA_QUESTIONS_H
#define LLAVA_SQA_QUESTIONS_H

#include "common/util.h"

#define SQA_SINGLE_PRED_PROMPT "Answer with the option's letter from the given choices directly."

typedef struct {
    char *id;          // the problem id
    char *image;       // relative to the image folder, or NULL
    char *qs;          // the user turn: ["<image>\n"] + text [+ "\n" + SQA_SINGLE_PRED_PROMPT];
                       // also the "prompt" the answers file records, unless:
    char *prompt;      // what the answers file records as "prompt" (NULL: qs); model_vqa
                       // records the question's text without "<image>\n"
    int numeric_id;    // write "question_id" as a number (the question file had one)
} SqaQuestion;

// Reads the list; for each item takes the first turn's value, removes every
// "<image>", strips whitespace (Python's str.strip), then prefixes
// "<image>\n" when the item has an image and appends the single-prediction
// instruction when asked.
int sqa_questions_load(const char *path, int single_pred, SqaQuestion **out, int *n, Error *err);
void sqa_questions_free(SqaQuestion *q, int n);

// Python's str.strip() on UTF-8: removes leading and trailing characters for
// which str.isspace() is true (ASCII whitespace, \x1c-\x1f, U+0085, U+00A0,
// U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000). In place;
// returns s.
char *py_strip(char *s);

#endif
