// `llava eval scienceqa`: answer ScienceQA questions with a model (or take
// an existing answers file) and score them as LLaVA and the leaderboard do.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/args.h"
#include "common/chat_cli.h"
#include "eval/gen_cli.h"
#include "eval/scienceqa.h"
#include "eval/sqa_ensemble.h"
#include "eval/sqa_run.h"
#include "eval/vqa.h"
#include "common/commands.h"

// result.json, output.json, scores.json of one score into dir (made if
// needed); prints the error and returns -1 on failure.
static int write_result_files(const SqaScore *s, const char *dir) {
    Error err = {{0}};
    char path[4096];
    const char *names[3] = {"result.json", "output.json", "scores.json"};
    int (*writers[3])(const SqaScore *, const char *, Error *) = {sqa_write_result_json, sqa_write_output_json,
                                                                  sqa_write_scores_json};
    if (make_dirs(dir, &err) != 0) {
        fprintf(stderr, "llava eval scienceqa: %s\n", err.msg);
        return -1;
    }
    for (int i = 0; i < 3; i++) {
        if (path_join(path, sizeof path, dir, names[i]) != 0 || writers[i](s, path, &err) != 0) {
            fprintf(stderr, "llava eval scienceqa: %s\n", err.msg[0] ? err.msg : "output path too long");
            return -1;
        }
    }
    return 0;
}

// Writes result.json, output.json, scores.json into out_dir and prints the
// summary.
static int score_and_write(const char *problems_path, const char *splits_path, const char *split,
                           const SqaPredictions *pred, const char *out_dir) {
    Error err = {{0}};
    SqaProblems ps;
    char **pids = NULL;
    int n_pids = 0, status = EXIT_BAD_INPUT;
    SqaScore s = {0};
    if (sqa_problems_load(&ps, problems_path, &err) != 0) {
        fprintf(stderr, "llava eval scienceqa: %s\n", err.msg);
        return EXIT_BAD_INPUT;
    }
    if (sqa_split_load(splits_path, split, &pids, &n_pids, &err) != 0 ||
        sqa_score(&ps, pids, n_pids, split, pred, &s, &err) != 0) {
        fprintf(stderr, "llava eval scienceqa: %s\n", err.msg);
        goto done;
    }
    if (write_result_files(&s, out_dir) != 0) {
        status = EXIT_ERROR;
        goto done;
    }
    sqa_print_summary(&s, stdout);
    printf("wrote %s/{result,output,scores}.json\n", out_dir);
    status = EXIT_OK;
done:
    sqa_score_free(&s);
    sqa_split_free(pids, n_pids);
    sqa_problems_free(&ps);
    return status;
}

// The model's answers to the question file, written to out_dir/answers.jsonl.
static int generate_answers(GenCli *cli, const char *data, const char *images, int single_pred, int batch_size,
                            const char *out_dir, SqaPredictions *pred) {
    Error err = {{0}};
    SqaQuestion *q = NULL;
    int n_q = 0, status = EXIT_BAD_INPUT;
    SqaModel sm;
    char answers[4096];
    if (sqa_questions_load(data, single_pred, &q, &n_q, &err) != 0 || make_dirs(out_dir, &err) != 0 ||
        path_join(answers, sizeof answers, out_dir, "answers.jsonl") != 0 || sqa_model_open(&sm, cli, &err) != 0) {
        fprintf(stderr, "llava eval scienceqa: %s\n", err.msg[0] ? err.msg : "output path too long");
        sqa_questions_free(q, n_q);
        return EXIT_BAD_INPUT;
    }
    SqaRun run = sqa_model_run(&sm, cli, images, batch_size, NULL);
    if (sqa_run(&run, q, n_q, answers, pred, &err) != 0) {
        fprintf(stderr, "llava eval scienceqa: %s\n", err.msg);
        status = EXIT_ERROR;
    } else {
        printf("wrote %s (%d answers)\n", answers, n_q);
        status = EXIT_OK;
    }
    sqa_model_close(&sm);
    sqa_questions_free(q, n_q);
    return status;
}

// The judge ensemble: first = pred (this run's or --answers), second =
// --ensemble; writes out_dir/judge.jsonl and out_dir/ensemble/*.json and
// prints the three models side by side.
static int ensemble_and_write(const char *problems_path, const char *splits_path, const char *split,
                              const SqaPredictions *first, const char *other_path, const ChatCli *chat,
                              const char *out_dir) {
    Error err = {{0}};
    SqaProblems ps;
    SqaPredictions second, combined;
    sqa_predictions_init(&second);
    sqa_predictions_init(&combined);
    char **pids = NULL;
    int n_pids = 0, status = EXIT_BAD_INPUT, client_up = 0;
    SqaScore s[3] = {{0}};
    ChatConfig cfg;
    ChatClient client;
    char judge_path[4096], ens_dir[4096];
    if (sqa_problems_load(&ps, problems_path, &err) != 0) {
        fprintf(stderr, "llava eval scienceqa: %s\n", err.msg);
        return EXIT_BAD_INPUT;
    }
    if (sqa_split_load(splits_path, split, &pids, &n_pids, &err) != 0 ||
        sqa_predictions_load(&second, other_path, &err) != 0 || chat_cli_config(chat, &cfg, &err) != 0 ||
        chat_client_init(&client, &cfg, &err) != 0) {
        fprintf(stderr, "llava eval scienceqa: %s\n", err.msg);
        goto done;
    }
    client_up = 1;
    if (path_join(judge_path, sizeof judge_path, out_dir, "judge.jsonl") != 0 ||
        path_join(ens_dir, sizeof ens_dir, out_dir, "ensemble") != 0) {
        fprintf(stderr, "llava eval scienceqa: --out path too long\n");
        goto done;
    }
    SqaEnsembleStats st;
    if (sqa_ensemble_run(problems_path, pids, n_pids, first, &second, &client, judge_path, &combined, &st, &err) != 0) {
        fprintf(stderr, "llava eval scienceqa: %s\n", err.msg);
        status = EXIT_ERROR;
        goto done;
    }
    const SqaPredictions *preds[3] = {first, &second, &combined};
    for (int i = 0; i < 3; i++) {
        if (sqa_score(&ps, pids, n_pids, split, preds[i], &s[i], &err) != 0) {
            fprintf(stderr, "llava eval scienceqa: %s\n", err.msg);
            goto done;
        }
    }
    if (write_result_files(&s[2], ens_dir) != 0) {
        status = EXIT_ERROR;
        goto done;
    }
    printf("\nensemble: %d agree, %d disagree: judge answer used %d, no usable letter %d (first answer kept), "
           "request failed %d, from an earlier run %d\n",
           st.agreed, st.disagreed, st.judged, st.judge_unusable, st.judge_failed, st.reused);
    const char *rows[3] = {"first", "second", "ensemble"};
    sqa_print_comparison(rows, s, 3, stdout);
    chat_client_print_usage(&client, stdout);
    printf("wrote %s and %s/{result,output,scores}.json\n", judge_path, ens_dir);
    status = st.judge_failed || client.stop ? EXIT_ERROR : EXIT_OK;
done:
    if (client_up) chat_client_free(&client);
    for (int i = 0; i < 3; i++) sqa_score_free(&s[i]);
    sqa_predictions_free(&second);
    sqa_predictions_free(&combined);
    sqa_split_free(pids, n_pids);
    sqa_problems_free(&ps);
    return status;
}

static int eval_scienceqa(int argc, char **argv) {
    GenCli cli;
    gen_cli_default(&cli, 0.0f, 1024);
    const char *answers = NULL, *problems = NULL, *splits = NULL, *split = "test", *out_dir = ".";
    const char *data = NULL, *images = NULL;
    int single_pred = 0, batch_size = 8;
    const char *ensemble = NULL;
    ChatCli judge;
    chat_cli_default(&judge, 0.0f, 1024);
    ArgSpec specs[64];
    int n = 0;
    specs[n++] = (ArgSpec){"problems", ARG_STRING, &problems, "ScienceQA problems.json", 1};
    specs[n++] = (ArgSpec){"pid-splits", ARG_STRING, &splits, "pid_splits.json (default: beside problems.json)", 0};
    specs[n++] = (ArgSpec){"split", ARG_STRING, &split, "split to score (default test)", 0};
    specs[n++] = (ArgSpec){"data", ARG_STRING, &data, "questions in LLaVA's format (llava_test_CQM-A.json, "
                                                      "scripts/convert_sqa.py)", 0};
    specs[n++] = (ArgSpec){"images", ARG_STRING, &images, "image folder of the split (ScienceQA's images/test)", 0};
    specs[n++] = (ArgSpec){"single-pred-prompt", ARG_FLAG, &single_pred,
                           "append \"Answer with the option's letter from the given choices directly.\"", 0};
    specs[n++] = (ArgSpec){"batch-size", ARG_INT, &batch_size, "questions generated together (default 8)", 0, 1, 4096};
    n = gen_cli_args(&cli, specs, n);
    specs[n++] = (ArgSpec){"answers", ARG_STRING, &answers,
                           "instead of a model: score this answers JSONL ({question_id, prompt, text} per line, "
                           "LLaVA's format)", 0};
    specs[n++] = (ArgSpec){"out", ARG_STRING, &out_dir, "folder for answers.jsonl, result.json, output.json, "
                                                        "scores.json (default .)", 0};
    specs[n++] = (ArgSpec){"ensemble", ARG_STRING, &ensemble,
                           "a second answers JSONL (e.g. GPT-4's): where the two disagree, ask the judge "
                           "(--judge-endpoint); writes judge.jsonl and ensemble/*.json", 0};
    n = chat_cli_args(&judge, specs, n, 1);
    int rc = args_parse(argc, argv, specs, n,
                        "llava eval scienceqa --model DIR --data llava_test_CQM-A.json --images DIR --problems "
                        "problems.json\n"
                        "                             [--single-pred-prompt] [--out DIR] [options]\n"
                        "       llava eval scienceqa --problems problems.json --answers answers.jsonl [--out DIR]\n"
                        "       llava eval scienceqa ... --ensemble OTHER.jsonl --judge-endpoint URL --judge-model NAME",
                        "Answers ScienceQA questions with a model (greedy by default, as LLaVA's evaluation) and\n"
                        "scores them with LLaVA's parsing rule and the leaderboard's categories. Writes\n"
                        "answers.jsonl (LLaVA's answers format), result.json and output.json as LLaVA's\n"
                        "eval_science_qa.py does, and scores.json (NAT, SOC, LAN, TXT, IMG, NO, G1-6, G7-12, Avg).",
                        NULL, 0, NULL);
    if (rc) return rc == 1 ? EXIT_OK : EXIT_BAD_INPUT;
    const int have_model = cli.src.model_dir || cli.src.llm_dir;
    if (!answers == !have_model || (have_model && (!data || !images)) || batch_size < 1) {
        fprintf(stderr, "llava eval scienceqa: give --model DIR --data FILE --images DIR (to generate answers) or "
                        "--answers FILE (to score existing ones); --batch-size >= 1\n");
        return EXIT_BAD_INPUT;
    }
    if (have_model && gen_cli_check(&cli, "eval scienceqa") != 0) return EXIT_BAD_INPUT;
    if (ensemble && (!judge.endpoint || !judge.model)) {
        fprintf(stderr, "llava eval scienceqa: --ensemble needs --judge-endpoint URL and --judge-model NAME\n");
        return EXIT_BAD_INPUT;
    }
    char splits_buf[4096];
    if (!splits) {
        const char *slash = strrchr(problems, '/');
        int dir_len = slash ? (int)(slash - problems) : 1;
        snprintf(splits_buf, sizeof splits_buf, "%.*s/pid_splits.json", dir_len, slash ? problems : ".");
        splits = splits_buf;
    }
    Error err = {{0}};
    SqaPredictions pred;
    sqa_predictions_init(&pred);
    int status = EXIT_BAD_INPUT;
    if (answers) {
        if (sqa_predictions_load(&pred, answers, &err) != 0)
            fprintf(stderr, "llava eval scienceqa: %s\n", err.msg);
        else
            status = EXIT_OK;
    } else {
        status = generate_answers(&cli, data, images, single_pred, batch_size, out_dir, &pred);
    }
    if (status == EXIT_OK) status = score_and_write(problems, splits, split, &pred, out_dir);
    if (status == EXIT_OK && ensemble)
        status = ensemble_and_write(problems, splits, split, &pred, ensemble, &judge, out_dir);
    sqa_predictions_free(&pred);
    return status;
}

int cmd_eval(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "scienceqa") == 0) return eval_scienceqa(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "vqa") == 0) return eval_vqa(argc - 1, argv + 1);
    FILE *out = argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) ? stdout : stderr;
    if (out == stderr && argc >= 2) fprintf(stderr, "llava eval: unknown benchmark '%s'\n", argv[1]);
    fprintf(out, "usage: llava eval <benchmark> [options]   (llava eval <benchmark> --help)\n\nbenchmarks:\n"
                 "  scienceqa   ScienceQA: LLaVA's answer parsing, result files and the leaderboard table\n"
                 "  vqa         answer a question file as LLaVA's model_vqa.py (LLaVA-Bench, MM-Vet; then llava judge)\n");
    return out == stdout ? EXIT_OK : EXIT_BAD_INPUT;
}
