// `llava datagen`: the paper's instruction-data pipeline. Captions and boxes
// (COCO annotations or a JSONL) -> a language-only model on any chat-
// completions endpoint, with LLaVA-layout prompt folders -> LLaVA JSONL that
// `llava prep` reads. docs/datagen.md.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/args.h"
#include "common/chat_cli.h"
#include "data/datagen.h"
#include "common/commands.h"

// A questions file: one question per non-blank line.
static int load_questions(const char *path, char ***out, int *n, char **keep, Error *err) {
    size_t len;
    char *text = read_file(path, &len, err);
    if (!text) return -1;
    *n = 0;
    *out = NULL;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        size_t l = strlen(line);
        while (l && (line[l - 1] == '\r' || line[l - 1] == ' ')) line[--l] = 0;
        if (!l) continue;
        *out = xrealloc(*out, (size_t)(*n + 1) * sizeof **out);
        (*out)[(*n)++] = line;
    }
    *keep = text;
    if (*n == 0) return err_set(err, "%s: no question in it (one per line)", path);
    return 0;
}

int cmd_datagen(int argc, char **argv) {
    const char *captions = NULL, *instances = NULL, *input = NULL, *prompts = NULL, *out = NULL, *report = NULL;
    const char *types = "conv,detail,complex", *questions_path = NULL;
    int limit = 0, seed = 0, batch = 0, conv_boxes = 0;
    ChatCli chat;
    chat_cli_default(&chat, -1.0f, 0);
    ArgSpec specs[40];
    int n = 0;
    specs[n++] = (ArgSpec){"coco-captions", ARG_STRING, &captions, "COCO captions_*.json (images + captions)", 0};
    specs[n++] = (ArgSpec){"coco-instances", ARG_STRING, &instances,
                           "COCO instances_*.json (boxes with category names; optional)", 0};
    specs[n++] = (ArgSpec){"input", ARG_STRING, &input,
                           "instead of COCO: JSONL of {id?, image, captions[], boxes[{label, bbox[x1,y1,x2,y2]}]}", 0};
    specs[n++] = (ArgSpec){"prompts", ARG_STRING, &prompts,
                           "folder of prompt folders in LLaVA's layout: conversation/, detail_description/, "
                           "complex_reasoning/ (ours: configs/datagen)", 1};
    specs[n++] = (ArgSpec){"out", ARG_STRING, &out, "output LLaVA JSONL (appended to; a rerun resumes)", 1};
    specs[n++] = (ArgSpec){"report", ARG_STRING, &report, "what did not become a sample (default: report.jsonl "
                                                          "beside --out)", 0};
    specs[n++] = (ArgSpec){"types", ARG_STRING, &types, "response types (default conv,detail,complex)", 0};
    specs[n++] = (ArgSpec){"limit", ARG_INT, &limit, "only the first N images (default all)", 0};
    specs[n++] = (ArgSpec){"seed", ARG_INT, &seed, "seed of the detail question and <image> placement (default 0)",
                           0};
    specs[n++] = (ArgSpec){"batch", ARG_INT, &batch, "requests between fsyncs of the output (default 8 x "
                                                     "concurrency)", 0};
    specs[n++] = (ArgSpec){"conv-boxes", ARG_FLAG, &conv_boxes,
                           "give conversations the boxes too (default: captions only, as LLaVA's prompts)", 0};
    specs[n++] = (ArgSpec){"detail-questions", ARG_STRING, &questions_path,
                           "file of detail-description questions, one per line (default: the paper's list)", 0};
    n = chat_cli_args(&chat, specs, n, 0);
    int rc = args_parse(argc, argv, specs, n,
                        "llava datagen (--coco-captions F [--coco-instances F] | --input F.jsonl) --prompts DIR "
                        "--out OUT.jsonl\n"
                        "                     --endpoint URL --model NAME [--api-key-env VAR] [options]",
                        "Generates LLaVA instruction data as the paper does: each image's captions (and boxes)\n"
                        "go to a language-only model with a prompt folder's system message and few-shot\n"
                        "examples; its answers become conversations (conv), detailed descriptions (detail) and\n"
                        "complex-reasoning questions (complex). Output lines: {id, image, conversations}.\n"
                        "Unparseable answers and failed requests go to the report with their reason (and raw\n"
                        "text); rerun the same command to retry them. Exit 1 when a request failed.",
                        NULL, 0, NULL);
    if (rc) return rc == 1 ? EXIT_OK : EXIT_BAD_INPUT;
    Error err = {{0}};
    int mask = 0;
    if ((!captions == !input) || (instances && !captions)) {
        fprintf(stderr, "llava datagen: give --coco-captions (and optionally --coco-instances) or --input\n");
        return EXIT_BAD_INPUT;
    }
    if (datagen_types_parse(types, &mask) != 0) {
        fprintf(stderr, "llava datagen: --types: a comma list of conv, detail, complex (got '%s')\n", types);
        return EXIT_BAD_INPUT;
    }
    ChatConfig cfg;
    if (chat_cli_config(&chat, &cfg, &err) != 0) {
        fprintf(stderr, "llava datagen: %s\n", err.msg);
        return EXIT_BAD_INPUT;
    }
    char report_buf[4096];
    if (!report) {
        const char *slash = strrchr(out, '/');
        snprintf(report_buf, sizeof report_buf, "%.*s%sreport.jsonl", slash ? (int)(slash - out) : 0, out,
                 slash ? "/" : "");
        report = report_buf;
    }
    // The output's folder is made here, so a typo in it costs no request.
    char out_dir[4096];
    const char *slash = strrchr(out, '/');
    if (slash && slash != out) {
        snprintf(out_dir, sizeof out_dir, "%.*s", (int)(slash - out), out);
        if (make_dirs(out_dir, &err) != 0) {
            fprintf(stderr, "llava datagen: %s\n", err.msg);
            return EXIT_ERROR;
        }
    }
    int status = EXIT_BAD_INPUT;
    PromptFolder folders[DATAGEN_N_TYPES] = {{0}};
    DatagenRun run = {.seed = (uint64_t)seed, .limit = limit, .out_path = out, .report_path = report,
                      .batch = batch > 0 ? batch : 8 * cfg.concurrency};
    run.with_boxes[DATAGEN_CONV] = conv_boxes;
    run.with_boxes[DATAGEN_DETAIL] = run.with_boxes[DATAGEN_COMPLEX] = 1;
    char **questions = NULL, *questions_text = NULL;
    DatagenImages images = {0};
    ChatClient client;
    int client_up = 0;
    for (int t = 0; t < DATAGEN_N_TYPES; t++) {
        if (!(mask & (1 << t))) continue;
        char dir[4096];
        if (path_join(dir, sizeof dir, prompts, datagen_type_folder((DatagenType)t)) != 0 ||
            prompt_folder_load(&folders[t], dir, &err) != 0) {
            fprintf(stderr, "llava datagen: %s\n", err.msg[0] ? err.msg : "--prompts path too long");
            goto done;
        }
        run.prompts[t] = &folders[t];
    }
    if (questions_path) {
        int nq;
        if (load_questions(questions_path, &questions, &nq, &questions_text, &err) != 0) {
            fprintf(stderr, "llava datagen: %s\n", err.msg);
            goto done;
        }
        run.detail_questions = (const char *const *)questions;
        run.n_detail_questions = nq;
    } else {
        run.detail_questions = DATAGEN_DETAIL_QUESTIONS;
        run.n_detail_questions = DATAGEN_N_DETAIL_QUESTIONS;
    }
    if ((captions ? datagen_load_coco(&images, captions, instances, &err) : datagen_load_jsonl(&images, input, &err)) !=
        0) {
        fprintf(stderr, "llava datagen: %s\n", err.msg);
        goto done;
    }
    run.images = &images;
    if (chat_client_init(&client, &cfg, &err) != 0) {
        fprintf(stderr, "llava datagen: %s\n", err.msg);
        goto done;
    }
    client_up = 1;
    DatagenStats st;
    if (datagen_run(&run, &client, &st, &err) != 0) {
        fprintf(stderr, "llava datagen: %s\n", err.msg);
        status = EXIT_ERROR;
        goto done;
    }
    printf("datagen: %ld samples written to %s (conv %ld, detail %ld, complex %ld), %ld already there\n", st.written,
           out, st.per_type[DATAGEN_CONV], st.per_type[DATAGEN_DETAIL], st.per_type[DATAGEN_COMPLEX], st.already_done);
    printf("datagen: %ld unparseable responses, %ld failed requests, %ld samples of unusable images -> %s\n",
           st.parse_failed, st.request_failed, st.bad_images, report);
    chat_client_print_usage(&client, stdout);
    status = st.request_failed || client.stop ? EXIT_ERROR : EXIT_OK;
done:
    if (client_up) chat_client_free(&client);
    datagen_images_free(&images);
    for (int t = 0; t < DATAGEN_N_TYPES; t++)
        if (run.prompts[t]) prompt_folder_free(&folders[t]);
    free(questions);
    free(questions_text);
    return status;
}
