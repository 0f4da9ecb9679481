// `llava eval vqa`: answers a question file as LLaVA's eval/model_vqa.py does
// (LLaVA-Bench COCO and In-the-Wild, MM-Vet style files, any file of
// {question_id, image?, text} lines), batched and resumable, into LLaVA's
// answers format ({question_id, prompt, text, answer_id, model_id,
// metadata}), the input of `llava judge`.
#ifndef LLAVA_VQA_H
#define LLAVA_VQA_H

#include "eval/sqa_questions.h"

// The questions of a JSONL file: qs = "<image>\n" + text when the line has an
// image (model_vqa's prompt without im_start/im_end), text otherwise; the
// recorded prompt is the text. Questions whose id is in the answers file
// `done_path` (NULL or absent: none) are left out and counted in *skipped.
int vqa_questions_load(const char *path, const char *done_path, SqaQuestion **out, int *n, int *skipped,
                       Error *err);

int eval_vqa(int argc, char **argv);

#endif
