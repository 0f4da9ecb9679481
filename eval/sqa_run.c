#include "eval/sqa_run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/json.h"

// One answers line, as model_vqa_science.py writes it (answer_id: ours is the
// question id and the line number instead of a random uuid).
static int write_answer(FILE *f, const SqaQuestion *q, const char *text, const char *model_id, int line) {
    cJSON *o = cJSON_CreateObject();
    char answer_id[64];
    snprintf(answer_id, sizeof answer_id, "%s-%d", q->id, line);
    if (q->numeric_id)
        cJSON_AddNumberToObject(o, "question_id", strtod(q->id, NULL));
    else
        cJSON_AddStringToObject(o, "question_id", q->id);
    cJSON_AddStringToObject(o, "prompt", q->prompt ? q->prompt : q->qs);
    cJSON_AddStringToObject(o, "text", text);
    cJSON_AddStringToObject(o, "answer_id", answer_id);
    cJSON_AddStringToObject(o, "model_id", model_id);
    cJSON_AddItemToObject(o, "metadata", cJSON_CreateObject());
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    int ok = s && fprintf(f, "%s\n", s) >= 0;
    free(s);
    return ok ? 0 : -1;
}

int sqa_run(const SqaRun *r, const SqaQuestion *q, int n, const char *answers_path, SqaPredictions *pred,
            Error *err) {
    const int S = r->m->cfg.vision.image_size, B = r->batch_size;
    const size_t img_floats = (size_t)3 * S * S;
    // Every prompt first: the cache is sized for the longest.
    int32_t **ids = xcalloc((size_t)(n ? n : 1), sizeof(int32_t *));
    int *n_ids = xcalloc((size_t)(n ? n : 1), sizeof(int)), T_max = 1, rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        const int32_t *built;
        const char *turns[1] = {q[i].qs};
        if (text_prompt_build(r->tp, turns, 1, q[i].image != NULL, &built, &n_ids[i], err) != 0) {
            err_prefix(err, "question %s: ", q[i].id);
            rc = -1;
            break;
        }
        ids[i] = xmalloc((size_t)n_ids[i] * sizeof(int32_t));
        memcpy(ids[i], built, (size_t)n_ids[i] * sizeof(int32_t));
        T_max = n_ids[i] > T_max ? n_ids[i] : T_max;
    }
    FILE *f = rc == 0 ? fopen(answers_path, r->append ? "a" : "w") : NULL;
    if (rc == 0 && !f) rc = err_set(err, "%s: cannot write the answers file", answers_path);
    Generator g = {0};
    if (rc == 0) rc = gen_init(&g, r->m, B, T_max + r->opt.max_new_tokens, err);
    GenPrompt *prompts = xcalloc((size_t)B, sizeof(GenPrompt));
    GenOutput *out = xcalloc((size_t)B, sizeof(GenOutput));
    float *pixels = xmalloc((size_t)B * img_floats * sizeof(float));
    GenOptions opt = r->opt;
    opt.eos_id = r->tp->eos_id;
    // On a terminal the progress line rewrites itself (\r); in a captured log
    // (stderr a file or a pipe) it is a plain line every 30 s and at the end.
    const int tty = isatty(fileno(stderr));
    double t0 = now_seconds(), last_line = t0;
    for (int start = 0; rc == 0 && start < n; start += B) {
        const int nb = n - start < B ? n - start : B;
        int n_img = 0;
        for (int b = 0; b < nb && rc == 0; b++) {
            const SqaQuestion *qi = &q[start + b];
            prompts[b] = (GenPrompt){.ids = ids[start + b], .n = n_ids[start + b]};
            if (!qi->image) continue;
            char path[4096];
            if (path_join(path, sizeof path, r->image_dir, qi->image) != 0) {
                rc = err_set(err, "question %s: image path too long", qi->id);
                break;
            }
            if ((rc = image_input_load(r->images, path, pixels + (size_t)n_img * img_floats, err)) != 0) {
                err_prefix(err, "question %s: ", qi->id);
                break;
            }
            prompts[b].n_images = 1;
            prompts[b].pixels = pixels + (size_t)n_img++ * img_floats;
        }
        if (rc != 0 || (rc = gen_generate(&g, prompts, nb, &opt, out, err)) != 0) break;
        for (int b = 0; b < nb && rc == 0; b++) {
            char *text = text_prompt_answer(r->tp, out[b].ids, out[b].n);
            if (write_answer(f, &q[start + b], text, r->model_id, start + b) != 0)
                rc = err_set(err, "%s: write failed", answers_path);
            if (pred) sqa_predictions_add(pred, q[start + b].id, q[start + b].qs, text);
            free(text);
        }
        for (int b = 0; b < nb; b++) gen_output_free(&out[b]);
        if (rc == 0 && fflush(f) != 0) rc = err_set(err, "%s: write failed", answers_path);
        const int done = start + nb;
        const double now = now_seconds();
        if (tty) {
            fprintf(stderr, "\r%s: %d/%d answered (%.1f questions/s)", r->label ? r->label : "scienceqa", done, n, done / (now - t0));
            if (done == n) fprintf(stderr, "\n");
        } else if (done == n || now - last_line >= 30.0) {
            fprintf(stderr, "%s: %d/%d answered (%.1f questions/s)\n", r->label ? r->label : "scienceqa", done, n, done / (now - t0));
            last_line = now;
        }
    }
    if (f && fclose(f) != 0 && rc == 0) rc = err_set(err, "%s: write failed", answers_path);
    gen_free(&g);
    for (int i = 0; i < n; i++) free(ids[i]);
    free(ids);
    free(n_ids);
    free(prompts);
    free(out);
    free(pixels);
    return rc;
}

int sqa_model_open(SqaModel *sm, const GenCli *cli, Error *err) {
    memset(sm, 0, sizeof *sm);
    if (gen_cli_load(cli, &sm->m, err) != 0) return -1;
    sm->have_model = 1;
    if (text_prompt_init(&sm->tp, gen_cli_tokenizer_dir(cli), cli->template_name, &sm->m.cfg, err) != 0 ||
        image_input_init(&sm->img, gen_cli_processor_dir(cli), &sm->m.cfg, cli->aspect, err) != 0) {
        sqa_model_close(sm);
        return -1;
    }
    return 0;
}

void sqa_model_close(SqaModel *sm) {
    image_input_free(&sm->img);
    text_prompt_free(&sm->tp);
    if (sm->have_model) model_free(&sm->m);
    memset(sm, 0, sizeof *sm);
}

SqaRun sqa_model_run(SqaModel *sm, const GenCli *cli, const char *image_dir, int batch_size, const char *model_id) {
    const char *model_dir = cli->src.model_dir ? cli->src.model_dir : cli->src.llm_dir;
    const char *slash = strrchr(model_dir, '/');
    return (SqaRun){.m = &sm->m, .tp = &sm->tp, .images = &sm->img, .image_dir = image_dir,
                    .batch_size = batch_size, .opt = gen_cli_options(cli, -1),
                    .model_id = model_id ? model_id : slash && slash[1] ? slash + 1 : model_dir};
}
