// `llava demo`: the embedded default job. It makes a small synthetic
// multimodal data set (pictures of coloured shapes with captions, and
// ScienceQA-style multiple-choice questions about them), initializes a tiny
// LLaVA, trains stage 1 (projector) then stage 2 (projector + LLM) through the
// real pipeline (prep -> shards -> loader -> trainer), and evaluates on
// held-out questions next to chance and next to the same model shown a blank
// picture. Runs in about a minute on 2 CPU cores.
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <dirent.h>
#include <errno.h>

#include "common/args.h"
#include "common/json.h"
#include "eval/generate.h"
#include "eval/image_input.h"
#include "eval/scienceqa.h"
#include "eval/text_prompt.h"
#include "kernels/backend.h"
#include "model/checkpoint.h"
#include "common/commands.h"
#include "train/demo_data.h"
#include "model/hf_files.h"
#include "train/save.h"
#include "train/trainer.h"

// cmake/embed_assets.cmake compiles assets/demo into the binary.
extern const unsigned char demo_config_json[], demo_tokenizer_json[], demo_tokenizer_config_json[];
extern const size_t demo_config_json_size, demo_tokenizer_json_size, demo_tokenizer_config_json_size;

typedef struct {
    const char *out;
    int seed, threads, quick, force;
} DemoOptions;

// Paths here are built from --out and fixed names: a path too long for the
// buffers is refused up front (cmd_demo), so joins cannot truncate.
static void join(char *dst, size_t cap, const char *dir, const char *name) {
    if (path_join(dst, cap, dir, name) != 0) FATAL("path too long: %s/%s", dir, name);
}

// Written into --out first thing: a folder holding it is a previous demo's
// output and may be replaced; any other non-empty folder is refused.
#define DEMO_MARKER ".llava-demo"

// 0 when `out` may be replaced: absent, an empty folder, a previous demo's
// output, or --force. Else -1 + err (the caller exits 2).
static int demo_check_out(const char *out, int force, Error *err) {
    struct stat st;
    if (lstat(out, &st) != 0) return 0;
    if (force) return 0;
    if (!S_ISDIR(st.st_mode))
        return err_set(err, "--out %s exists and is not a folder: choose another path (or pass --force to replace "
                       "it)", out);
    char marker[4200];
    join(marker, sizeof marker, out, DEMO_MARKER);
    if (file_exists(marker)) return 0;
    DIR *d = opendir(out);
    if (!d) return err_set(err, "--out %s: cannot read the folder: %s", out, strerror(errno));
    int empty = 1;
    for (struct dirent *e; empty && (e = readdir(d));)
        empty = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
    closedir(d);
    if (empty) return 0;
    return err_set(err, "--out %s holds files and is not a previous demo's output (no %s in it): the demo replaces "
                   "its folder, so choose an empty or new one (or pass --force to replace it)", out, DEMO_MARKER);
}

// The initial model folder: random weights of the embedded config, the
// embedded tokenizer, CLIP processor defaults.
static int write_initial_model(const DemoOptions *o, const char *dir, Error *err) {
    char assets[4200], path[4400];
    join(assets, sizeof assets, o->out, "assets");
    if (make_dirs(assets, err) != 0) return -1;
    join(path, sizeof path, assets, "config.json");
    if (write_file_atomic(path, demo_config_json, demo_config_json_size, err) != 0) return -1;
    LlavaConfig cfg;
    if (config_load_llava(&cfg, path, err) != 0) return -1;
    join(path, sizeof path, assets, "tokenizer.json");
    if (write_file_atomic(path, demo_tokenizer_json, demo_tokenizer_json_size, err) != 0) return -1;
    join(path, sizeof path, assets, "tokenizer_config.json");
    if (write_file_atomic(path, demo_tokenizer_config_json, demo_tokenizer_config_json_size, err) != 0) return -1;
    LlavaModel m;
    model_init(&m, &cfg, ops_cpu());
    checkpoint_init_random(&m, (unsigned long long)o->seed);
    int rc = save_model_folder(&m, dir, NULL, "f32", 5000000000ull, err);
    if (rc == 0) rc = hf_write_tokenizer_files(assets, dir, cfg.image_token_index, cfg.text.pad_id, err);
    if (rc == 0) rc = hf_write_processor_files(NULL, dir, &cfg, err);
    model_free(&m);
    return rc;
}

// Mean loss of the first and of the last tenth of a run's steps.
static int loss_trend(const char *run_dir, double *first, double *last, Error *err) {
    char path[4200];
    join(path, sizeof path, run_dir, "metrics.jsonl");
    size_t len;
    char *text = read_file(path, &len, err);
    if (!text) return -1;
    double *loss = NULL;
    int n = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *rec = cJSON_Parse(line);
        const cJSON *l = cJSON_GetObjectItemCaseSensitive(rec, "loss");
        if (cJSON_IsNumber(l) && isfinite(l->valuedouble)) {
            loss = xrealloc(loss, (size_t)(n + 1) * sizeof(double));
            loss[n++] = l->valuedouble;
        }
        cJSON_Delete(rec);
    }
    free(text);
    if (n == 0) {
        free(loss);
        return err_set(err, "%s: no losses recorded", path);
    }
    int k = n / 10 > 0 ? n / 10 : 1;
    *first = *last = 0.0;
    for (int i = 0; i < k; i++) {
        *first += loss[i] / k;
        *last += loss[n - 1 - i] / k;
    }
    free(loss);
    return 0;
}

static int train_stage(const DemoOptions *o, int stage, const char *model, const char *data, const char *images,
                       const char *out, double *first, double *last, Error *err) {
    RunConfig c;
    run_config_default(&c);
    snprintf(c.model, sizeof c.model, "%s", model);
    snprintf(c.data, sizeof c.data, "%s", data);
    snprintf(c.images, sizeof c.images, "%s", images);
    snprintf(c.output_dir, sizeof c.output_dir, "%s", out);
    snprintf(c.resume, sizeof c.resume, "none");
    snprintf(c.template_name, sizeof c.template_name, "%s", stage == 1 ? "plain" : "vicuna_v1");
    c.stage = stage;
    c.micro_batch = 16;
    c.epochs = stage == 1 ? 1 : (o->quick ? 1 : 3);
    c.lr = stage == 1 ? 1e-3 : 2e-3;
    c.max_length = 160;
    c.recompute = 0;
    c.seed = o->seed;
    c.threads = o->threads;
    c.workers = 1;
    c.log_every = stage == 1 ? 25 : 50;
    if (run_config_validate(&c, err) != 0) return -1;
    remove_tree(out);
    Comm comm = {.kind = COMM_SINGLE, .rank = 0, .world = 1};
    Trainer t;
    int rc = trainer_setup(&t, &c, &comm);
    if (rc == 0) rc = trainer_run(&t);
    trainer_free(&t);
    if (rc != 0) return err_set(err, "stage %d training failed (exit code %d)", stage, rc);
    return loss_trend(out, first, last, err);
}

typedef struct {
    int correct[2], total[2];  // [0] colour questions, [1] shape questions
} Accuracy;

static double acc_all(const Accuracy *a) {
    int c = a->correct[0] + a->correct[1], t = a->total[0] + a->total[1];
    return t ? (double)c / t : 0.0;
}

// Greedy answers to every held-out question, with each question's own
// picture (blank = 0) or the blank picture (blank = 1), parsed with LLaVA's
// ScienceQA rule.
static int evaluate(const DemoOptions *o, const char *model_dir, int blank, Accuracy *acc, Error *err) {
    char path[4200], images[4200];
    join(path, sizeof path, o->out, "data/test.json");
    join(images, sizeof images, o->out, "data/images");
    cJSON *test = json_parse_file(path, err);
    if (!test) return -1;
    LlavaModel m;
    TextPrompt tp;
    ImageInput in;
    Generator g;
    memset(acc, 0, sizeof *acc);
    int rc = checkpoint_load_llava(&m, model_dir, ops_cpu(), err);
    if (rc) {
        cJSON_Delete(test);
        return -1;
    }
    enum { BATCH = 20 };
    rc = text_prompt_init(&tp, model_dir, "vicuna_v1", &m.cfg, err) || image_input_init(&in, model_dir, &m.cfg, "square", err) ||
         gen_init(&g, &m, BATCH, m.cfg.text.max_positions, err);
    const int S = m.cfg.vision.image_size, n = cJSON_GetArraySize(test);
    float *pixels = xmalloc((size_t)BATCH * 3 * S * S * sizeof(float));
    int32_t *ids[BATCH] = {0};
    char answers[BATCH];
    int kinds[BATCH];
    for (int start = 0; rc == 0 && start < n; start += BATCH) {
        int B = n - start < BATCH ? n - start : BATCH;
        GenPrompt prompts[BATCH];
        for (int b = 0; b < B && rc == 0; b++) {
            const cJSON *s = cJSON_GetArrayItem(test, start + b);
            const cJSON *conv = cJSON_GetObjectItemCaseSensitive(s, "conversations");
            const char *question = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(conv, 0), "value")->valuestring;
            answers[b] = cJSON_GetObjectItemCaseSensitive(s, "answer")->valuestring[0];
            kinds[b] = strstr(question, "color") ? 0 : 1;
            const int32_t *p_ids;
            int n_ids;
            rc = text_prompt_build(&tp, &question, 1, 1, &p_ids, &n_ids, err);
            if (rc) break;
            free(ids[b]);
            ids[b] = xmalloc((size_t)n_ids * sizeof(int32_t));
            memcpy(ids[b], p_ids, (size_t)n_ids * sizeof(int32_t));
            char img[4400];
            if (blank)
                join(img, sizeof img, o->out, "data/blank.png");
            else
                join(img, sizeof img, images, cJSON_GetObjectItemCaseSensitive(s, "image")->valuestring);
            rc = image_input_load(&in, img, pixels + (size_t)b * 3 * S * S, err);
            prompts[b] = (GenPrompt){ids[b], n_ids, 1, pixels + (size_t)b * 3 * S * S};
        }
        if (rc) break;
        GenOptions go = {.sample = {.temperature = 0, .top_p = 1, .top_k = 0}, .max_new_tokens = 4,
                         .eos_id = tp.eos_id, .seed = 0};
        GenOutput outs[BATCH];
        rc = gen_generate(&g, prompts, B, &go, outs, err);
        for (int b = 0; rc == 0 && b < B; b++) {
            char *text = text_prompt_answer(&tp, outs[b].ids, outs[b].n);
            acc->total[kinds[b]]++;
            acc->correct[kinds[b]] += sqa_parse_answer(text) == answers[b];
            free(text);
            gen_output_free(&outs[b]);
        }
    }
    for (int b = 0; b < BATCH; b++) free(ids[b]);
    free(pixels);
    gen_free(&g);
    image_input_free(&in);
    text_prompt_free(&tp);
    model_free(&m);
    cJSON_Delete(test);
    return rc ? -1 : 0;
}

static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

int cmd_demo(int argc, char **argv) {
    DemoOptions o = {.out = "runs/demo", .seed = 1, .threads = 0, .quick = 0};
    ArgSpec specs[] = {
        {"out", ARG_STRING, &o.out, "folder for the data, models and summary (default runs/demo; replaced when "
                                    "empty or a previous demo's output)", 0},
        {"seed", ARG_INT, &o.seed, "seed of the data and the initial weights (default 1)", 0},
        {"threads", ARG_INT, &o.threads, "CPU threads (default: all cores)", 0, 0, 1024},
        {"quick", ARG_FLAG, &o.quick, "one stage-2 epoch instead of two (for tests)", 0},
        {"force", ARG_FLAG, &o.force, "replace --out even when it is not a previous demo's output", 0},
    };
    int rc = args_parse(argc, argv, specs, (int)(sizeof specs / sizeof *specs), "llava demo [options]",
                        "The embedded default: synthetic pictures of coloured shapes, a tiny LLaVA trained in both\n"
                        "stages on the CPU, and held-out accuracy next to chance and next to a blank-picture control.",
                        NULL, 0, NULL);
    if (rc) return rc == 1 ? EXIT_OK : EXIT_BAD_INPUT;
    if (strlen(o.out) > 3000) {
        fprintf(stderr, "llava demo: --out path too long\n");
        return EXIT_BAD_INPUT;
    }
    backend_set_threads(o.threads);
    double t0 = now_seconds();
    Error err = {{0}};
    char data[4200], images[4200], init[4200], s1[4200], s2[4200], final1[4300], final2[4300], path[4300];
    join(data, sizeof data, o.out, "data");
    join(images, sizeof images, data, "images");
    join(init, sizeof init, o.out, "init");
    join(s1, sizeof s1, o.out, "stage1");
    join(s2, sizeof s2, o.out, "stage2");
    join(final1, sizeof final1, s1, "final");
    join(final2, sizeof final2, s2, "final");
    if (demo_check_out(o.out, o.force, &err) != 0) {
        fprintf(stderr, "llava demo: %s\n", err.msg);
        return EXIT_BAD_INPUT;
    }
    remove_tree(o.out);
    join(path, sizeof path, o.out, DEMO_MARKER);
    if (make_dirs(o.out, &err) != 0 || write_file_atomic(path, "llava demo output\n", 18, &err) != 0) goto fail;
    printf("== llava demo: data, model and runs in %s\n", o.out);
    DemoDataOptions dopt = {.n_caption = 2000, .n_train_qa = 3000, .n_test_qa = 200, .image_size = 32,
                            .seed = (uint64_t)o.seed};
    double l1a = 0, l1b = 0, l2a = 0, l2b = 0;
    Accuracy real, blank;
    if (demo_write_dataset(data, &dopt, &err) != 0 || write_initial_model(&o, init, &err) != 0) goto fail;
    printf("== data: %d captions (stage 1), %d questions (stage 2), %d held-out questions; model: %s\n",
           dopt.n_caption, dopt.n_train_qa, dopt.n_test_qa, init);
    printf("== stage 1: feature alignment (projector only, plain template)\n");
    join(path, sizeof path, data, "stage1.json");
    if (train_stage(&o, 1, init, path, images, s1, &l1a, &l1b, &err) != 0) goto fail;
    printf("== stage 2: visual instruction tuning (projector + LLM, vicuna_v1 template)\n");
    join(path, sizeof path, data, "stage2.json");
    if (train_stage(&o, 2, final1, path, images, s2, &l2a, &l2b, &err) != 0) goto fail;
    printf("== evaluation on %d held-out questions (greedy, LLaVA's ScienceQA answer rule)\n", dopt.n_test_qa);
    if (evaluate(&o, final2, 0, &real, &err) != 0 || evaluate(&o, final2, 1, &blank, &err) != 0) goto fail;

    double seconds = now_seconds() - t0, chance = 1.0 / DEMO_N_COLORS;
    printf("\n%-34s %8s %8s %8s\n", "", "colour", "shape", "all");
    printf("%-34s %7.1f%% %7.1f%% %7.1f%%\n", "accuracy, with the pictures", 100.0 * real.correct[0] / real.total[0],
           100.0 * real.correct[1] / real.total[1], 100 * acc_all(&real));
    printf("%-34s %7.1f%% %7.1f%% %7.1f%%\n", "accuracy, blank picture (control)",
           100.0 * blank.correct[0] / blank.total[0], 100.0 * blank.correct[1] / blank.total[1], 100 * acc_all(&blank));
    printf("%-34s %7.1f%% %7.1f%% %7.1f%%\n", "chance (4 options)", 100 * chance, 100 * chance, 100 * chance);
    printf("\nstage 1 loss %.3f -> %.3f, stage 2 loss %.3f -> %.3f (first vs last tenth of the steps)\n", l1a, l1b,
           l2a, l2b);
    printf("%.0f s, peak memory %.0f MB; models in %s and %s\n", seconds, peak_rss_mb(), final1, final2);

    cJSON *sum = cJSON_CreateObject();
    cJSON_AddNumberToObject(sum, "accuracy", acc_all(&real));
    cJSON_AddNumberToObject(sum, "accuracy_color", (double)real.correct[0] / real.total[0]);
    cJSON_AddNumberToObject(sum, "accuracy_shape", (double)real.correct[1] / real.total[1]);
    cJSON_AddNumberToObject(sum, "blank_accuracy", acc_all(&blank));
    cJSON_AddNumberToObject(sum, "chance", chance);
    cJSON_AddNumberToObject(sum, "stage1_loss_first", l1a);
    cJSON_AddNumberToObject(sum, "stage1_loss_last", l1b);
    cJSON_AddNumberToObject(sum, "stage2_loss_first", l2a);
    cJSON_AddNumberToObject(sum, "stage2_loss_last", l2b);
    cJSON_AddNumberToObject(sum, "seconds", seconds);
    cJSON_AddNumberToObject(sum, "peak_rss_mb", peak_rss_mb());
    char *text = cJSON_Print(sum);
    cJSON_Delete(sum);
    join(path, sizeof path, o.out, "summary.json");
    rc = write_file_atomic(path, text, strlen(text), &err);
    free(text);
    if (rc) goto fail;
    return EXIT_OK;
fail:
    fprintf(stderr, "llava demo: %s\n", err.msg);
    return EXIT_ERROR;
}
