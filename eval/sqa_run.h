// Answering ScienceQA questions with a model, as LLaVA's
// eval/model_vqa_science.py does (but batched): each question's text in the
// conversation template, its image through the model's preprocessing,
// generation, the answer decoded and stripped, one line per question in
// LLaVA's answers format.
#ifndef LLAVA_SQA_RUN_H
#define LLAVA_SQA_RUN_H

#include "eval/gen_cli.h"
#include "eval/generate.h"
#include "eval/image_input.h"
#include "eval/scienceqa.h"
#include "eval/sqa_questions.h"
#include "eval/text_prompt.h"

typedef struct {
    LlavaModel *m;
    TextPrompt *tp;
    ImageInput *images;
    const char *image_dir;  // question images are image_dir/<item image>
    int batch_size;
    GenOptions opt;         // sampling, max_new_tokens (eos is the tokenizer's)
    const char *model_id;   // "model_id" of each answer line
    int append;             // add to the answers file (a resumed run) instead of replacing it
    const char *label;      // progress lines' name (NULL: "scienceqa")
} SqaRun;

// Answers the questions in order, batch_size at a time; appends each answer
// to `answers` (a JSONL file, flushed per batch) and to `pred`. Progress goes
// to stderr.
int sqa_run(const SqaRun *r, const SqaQuestion *q, int n, const char *answers_path, SqaPredictions *pred,
            Error *err);

// The model of an answering run with its tokenizer, template and image
// processor, loaded from the generation flags (eval scienceqa, eval vqa).
typedef struct {
    LlavaModel m;
    TextPrompt tp;
    ImageInput img;
    int have_model;
} SqaModel;

int sqa_model_open(SqaModel *sm, const GenCli *cli, Error *err);
void sqa_model_close(SqaModel *sm);
// A run over it: sampling from the flags, model_id = the model folder's name
// unless given.
SqaRun sqa_model_run(SqaModel *sm, const GenCli *cli, const char *image_dir, int batch_size, const char *model_id);

#endif
