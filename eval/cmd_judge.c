// `llava judge`: LLaVA-Bench-style scoring with a chat-completions judge, and
// `llava judge summarize` for review files that exist already. docs/eval.md.
#include <stdio.h>
#include <string.h>

#include "common/args.h"
#include "common/chat_cli.h"
#include "eval/judge.h"
#include "eval/judge_run.h"
#include "common/commands.h"

// LLaVA prints each review file under its name without "gpt4_text_" and ".jsonl".
static void config_name(const char *path, char *out, size_t cap) {
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    if (strncmp(base, "gpt4_text_", 10) == 0) base += 10;
    snprintf(out, cap, "%s", base);
    size_t n = strlen(out);
    if (n > 6 && strcmp(out + n - 6, ".jsonl") == 0) out[n - 6] = 0;
}

static int summarize_file(const char *path) {
    JudgeSummary s = {0};
    Error err = {{0}};
    if (judge_summary_add_file(&s, path, &err) != 0) {
        fprintf(stderr, "llava judge: %s\n", err.msg);
        judge_summary_free(&s);
        return EXIT_BAD_INPUT;
    }
    char name[4096];
    config_name(path, name, sizeof name);
    judge_summary_print(&s, name, stdout);
    judge_summary_free(&s);
    return EXIT_OK;
}

static int judge_summarize(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        FILE *o = argc < 2 ? stderr : stdout;
        fprintf(o, "usage: llava judge summarize REVIEW.jsonl [...]\n\n"
                   "Prints LLaVA's summary of review files (summarize_gpt_review.py): per category and\n"
                   "overall, the relative score 100 x mean(assistant 2) / mean(assistant 1), then both means.\n");
        return argc < 2 ? EXIT_BAD_INPUT : EXIT_OK;
    }
    int status = EXIT_OK;
    for (int i = 1; i < argc; i++) {
        int rc = summarize_file(argv[i]);
        if (rc) status = rc;
    }
    return status;
}

int cmd_judge(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "summarize") == 0) return judge_summarize(argc - 1, argv + 1);
    JudgeFiles f = {.category_prefix = "llava_bench_"};
    ChatCli chat;
    chat_cli_default(&chat, 0.2f, 1024);  // LLaVA's review settings
    ArgSpec specs[32];
    int n = 0;
    specs[n++] = (ArgSpec){"questions", ARG_STRING, &f.questions,
                           "questions JSONL {question_id, image, text, category} (LLaVA-Bench's questions.jsonl)", 1};
    specs[n++] = (ArgSpec){"context", ARG_STRING, &f.context, "context JSONL {image, caption} (context.jsonl)", 1};
    specs[n++] = (ArgSpec){"reference", ARG_STRING, &f.reference,
                           "reference answers JSONL, assistant 1 (answers_gpt4.jsonl)", 1};
    specs[n++] = (ArgSpec){"answers", ARG_STRING, &f.answers, "the model's answers JSONL, assistant 2 "
                                                              "(llava eval vqa / model_vqa output)", 1};
    specs[n++] = (ArgSpec){"rules", ARG_STRING, &f.rules, "rule.json: {category: {role, prompt}} (LLaVA's "
                                                          "llava/eval/table/rule.json)", 1};
    specs[n++] = (ArgSpec){"out", ARG_STRING, &f.out, "review JSONL (appended; a rerun asks only what is missing)",
                           1};
    specs[n++] = (ArgSpec){"category-prefix", ARG_STRING, &f.category_prefix,
                           "prefix of the rule key of a question's category (default llava_bench_)", 0};
    n = chat_cli_args(&chat, specs, n, 0);
    int rc = args_parse(argc, argv, specs, n,
                        "llava judge --questions Q.jsonl --context C.jsonl --reference REF.jsonl --answers A.jsonl\n"
                        "                   --rules rule.json --out review.jsonl --endpoint URL --model NAME "
                        "[--api-key-env VAR]\n"
                        "       llava judge summarize review.jsonl [...]",
                        "LLaVA-Bench's GPT-4 review (LLaVA's eval_gpt_review_bench.py): the judge sees each\n"
                        "question's context, the reference answer (assistant 1) and the model's (assistant 2)\n"
                        "with the rule of the question's category, and scores both on its first line. Prints\n"
                        "LLaVA's summary: per category and overall, 100 x mean(model) / mean(reference).\n"
                        "Unparseable reviews are kept with tuple [-1, -1] and counted, as LLaVA does. Exit 1\n"
                        "when a request failed (rerun the same command to ask again).",
                        NULL, 0, NULL);
    if (rc) return rc == 1 ? EXIT_OK : EXIT_BAD_INPUT;
    Error err = {{0}};
    ChatConfig cfg;
    ChatClient client;
    if (chat_cli_config(&chat, &cfg, &err) != 0 || chat_client_init(&client, &cfg, &err) != 0) {
        fprintf(stderr, "llava judge: %s\n", err.msg);
        return EXIT_BAD_INPUT;
    }
    JudgeStats st;
    int status = EXIT_OK;
    if (judge_run(&f, &client, &st, &err) != 0) {
        fprintf(stderr, "llava judge: %s\n", err.msg);
        chat_client_free(&client);
        return EXIT_BAD_INPUT;
    }
    printf("judge: %ld reviews written to %s (%ld unparseable, scored -1 -1), %ld failed, %ld already there\n",
           st.written, f.out, st.unparseable, st.failed, st.already_done);
    chat_client_print_usage(&client, stdout);
    if (st.failed || client.stop) status = EXIT_ERROR;
    chat_client_free(&client);
    int srt = summarize_file(f.out);
    return status ? status : srt;
}
