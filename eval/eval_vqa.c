#include "eval/vqa.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/args.h"
#include "common/jsonl.h"
#include "common/strmap.h"
#include "eval/gen_cli.h"
#include "eval/judge_run.h"
#include "eval/sqa_run.h"

int vqa_questions_load(const char *path, const char *done_path, SqaQuestion **out, int *n, int *skipped,
                       Error *err) {
    *out = NULL;
    *n = *skipped = 0;
    StrMap done;
    strmap_init(&done);
    cJSON *qs = NULL, *answered = NULL;
    int rc = -1;
    if (done_path && file_exists(done_path)) {
        if (jsonl_cut_torn_line(done_path, err) != 0 || !(answered = jsonl_load(done_path, err))) goto done;
        for (const cJSON *a = answered->child; a; a = a->next) {
            char key[256];
            judge_id_key(cJSON_GetObjectItemCaseSensitive(a, "question_id"), key, sizeof key);
            if (key[0]) strmap_put(&done, key, 1);
        }
    }
    if (!(qs = jsonl_load(path, err))) goto done;
    int cap = cJSON_GetArraySize(qs);
    SqaQuestion *q = xcalloc((size_t)(cap ? cap : 1), sizeof *q);
    int i = 0;
    for (const cJSON *o = qs->child; o; o = o->next, i++) {
        char key[256];
        judge_id_key(cJSON_GetObjectItemCaseSensitive(o, "question_id"), key, sizeof key);
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(o, "text");
        const cJSON *image = cJSON_GetObjectItemCaseSensitive(o, "image");
        if (!key[0] || !cJSON_IsString(text) || (image && !cJSON_IsNull(image) && !cJSON_IsString(image))) {
            err_set(err, "%s: item %d: needs \"question_id\", a \"text\" string and optionally an \"image\" string",
                    path, i + 1);
            sqa_questions_free(q, *n);
            goto done;
        }
        if (strmap_get(&done, key) >= 0) {
            (*skipped)++;
            continue;
        }
        SqaQuestion *x = &q[(*n)++];
        x->id = xstrdup(key);
        x->numeric_id = cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(o, "question_id"));
        x->prompt = xstrdup(text->valuestring);
        if (cJSON_IsString(image)) {
            x->image = xstrdup(image->valuestring);
            size_t l = strlen(text->valuestring) + 9;
            x->qs = xmalloc(l);
            snprintf(x->qs, l, "<image>\n%s", text->valuestring);
        } else {
            x->qs = xstrdup(text->valuestring);
        }
    }
    *out = q;
    rc = 0;
done:
    cJSON_Delete(qs);
    cJSON_Delete(answered);
    strmap_free(&done);
    return rc;
}

int eval_vqa(int argc, char **argv) {
    GenCli cli;
    gen_cli_default(&cli, 0.0f, 1024);
    const char *questions = NULL, *images = ".", *out = NULL, *model_id = NULL;
    int batch_size = 8;
    ArgSpec specs[40];
    int n = 0;
    specs[n++] = (ArgSpec){"questions", ARG_STRING, &questions,
                           "question JSONL: {question_id, image?, text, ...} per line (LLaVA-Bench's questions.jsonl)",
                           1};
    specs[n++] = (ArgSpec){"images", ARG_STRING, &images, "folder the questions' images are relative to (default .)",
                           0};
    specs[n++] = (ArgSpec){"out", ARG_STRING, &out, "answers JSONL (appended to; a rerun answers only what is "
                                                    "missing)", 1};
    specs[n++] = (ArgSpec){"batch-size", ARG_INT, &batch_size, "questions generated together (default 8)", 0};
    specs[n++] = (ArgSpec){"model-id", ARG_STRING, &model_id, "\"model_id\" of the answers (default: the model "
                                                              "folder's name)", 0};
    n = gen_cli_args(&cli, specs, n);
    int rc = args_parse(argc, argv, specs, n,
                        "llava eval vqa --model DIR --questions Q.jsonl --images DIR --out answers.jsonl [options]",
                        "Answers a question file as LLaVA's model_vqa.py does: \"<image>\\n\" + the question in the\n"
                        "conversation template, the image through the model's preprocessing, greedy by default\n"
                        "(LLaVA-1.5's evaluation scripts use --temperature 0), up to 1024 new tokens. Writes LLaVA's\n"
                        "answers format, the input of `llava judge`.",
                        NULL, 0, NULL);
    if (rc) return rc == 1 ? EXIT_OK : EXIT_BAD_INPUT;
    if (batch_size < 1 || gen_cli_check(&cli, "eval vqa") != 0) {
        if (batch_size < 1) fprintf(stderr, "llava eval vqa: --batch-size must be >= 1\n");
        return EXIT_BAD_INPUT;
    }
    Error err = {{0}};
    SqaQuestion *q = NULL;
    int n_q = 0, skipped = 0, status = EXIT_BAD_INPUT;
    if (vqa_questions_load(questions, out, &q, &n_q, &skipped, &err) != 0) {
        fprintf(stderr, "llava eval vqa: %s\n", err.msg);
        return EXIT_BAD_INPUT;
    }
    if (n_q == 0) {
        printf("eval vqa: all %d questions already answered in %s\n", skipped, out);
        sqa_questions_free(q, n_q);
        return EXIT_OK;
    }
    SqaModel sm;
    if (sqa_model_open(&sm, &cli, &err) != 0) {
        fprintf(stderr, "llava eval vqa: %s\n", err.msg);
        sqa_questions_free(q, n_q);
        return EXIT_BAD_INPUT;
    }
    SqaRun run = sqa_model_run(&sm, &cli, images, batch_size, model_id);
    run.append = 1;
    run.label = "eval vqa";
    if (sqa_run(&run, q, n_q, out, NULL, &err) != 0) {
        fprintf(stderr, "llava eval vqa: %s\n", err.msg);
        status = EXIT_ERROR;
    } else {
        printf("eval vqa: %d answers written to %s (%d already there)\n", n_q, out, skipped);
        status = EXIT_OK;
    }
    sqa_model_close(&sm);
    sqa_questions_free(q, n_q);
    return status;
}
