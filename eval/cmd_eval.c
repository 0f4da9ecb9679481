// `llava eval scienceqa`: answer ScienceQA questions with a model (or take
// an existing answers file) and score them as LLaVA and the leaderboard do.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/args.h"
#include "eval/gen_cli.h"
#include "eval/scienceqa.h"
#include "eval/sqa_run.h"
#include "train/commands.h"

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
    char path[4096];
    const char *names[3] = {"result.json", "output.json", "scores.json"};
    int (*writers[3])(const SqaScore *, const char *, Error *) = {sqa_write_result_json, sqa_write_output_json,
                                                                  sqa_write_scores_json};
    if (make_dirs(out_dir, &err) != 0) {
        fprintf(stderr, "llava eval scienceqa: %s\n", err.msg);
        status = EXIT_ERROR;
        goto done;
    }
    for (int i = 0; i < 3; i++) {
        if (path_join(path, sizeof path, out_dir, names[i]) != 0 || writers[i](&s, path, &err) != 0) {
            fprintf(stderr, "llava eval scienceqa: %s\n", err.msg[0] ? err.msg : "output path too long");
            status = EXIT_ERROR;
            goto done;
        }
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
    LlavaModel m;
    if (sqa_questions_load(data, single_pred, &q, &n_q, &err) != 0 || gen_cli_load(cli, &m, &err) != 0) {
        fprintf(stderr, "llava eval scienceqa: %s\n", err.msg);
        sqa_questions_free(q, n_q);
        return EXIT_BAD_INPUT;
    }
    TextPrompt tp = {0};
    ImageInput img = {0};
    char answers[4096];
    if (make_dirs(out_dir, &err) != 0 || path_join(answers, sizeof answers, out_dir, "answers.jsonl") != 0 ||
        text_prompt_init(&tp, gen_cli_tokenizer_dir(cli), cli->template_name, &m.cfg, &err) != 0 ||
        image_input_init(&img, gen_cli_processor_dir(cli), &m.cfg, cli->aspect, &err) != 0) {
        fprintf(stderr, "llava eval scienceqa: %s\n", err.msg[0] ? err.msg : "output path too long");
        goto done;
    }
    const char *model_dir = cli->src.model_dir ? cli->src.model_dir : cli->src.llm_dir;
    const char *slash = strrchr(model_dir, '/');
    SqaRun run = {.m = &m, .tp = &tp, .images = &img, .image_dir = images, .batch_size = batch_size,
                  .opt = gen_cli_options(cli, -1), .model_id = slash && slash[1] ? slash + 1 : model_dir};
    if (sqa_run(&run, q, n_q, answers, pred, &err) != 0) {
        fprintf(stderr, "llava eval scienceqa: %s\n", err.msg);
        status = EXIT_ERROR;
        goto done;
    }
    printf("wrote %s (%d answers)\n", answers, n_q);
    status = EXIT_OK;
done:
    image_input_free(&img);
    text_prompt_free(&tp);
    model_free(&m);
    sqa_questions_free(q, n_q);
    return status;
}

static int eval_scienceqa(int argc, char **argv) {
    GenCli cli;
    gen_cli_default(&cli, 0.0f, 1024);
    const char *answers = NULL, *problems = NULL, *splits = NULL, *split = "test", *out_dir = ".";
    const char *data = NULL, *images = NULL;
    int single_pred = 0, batch_size = 8;
    ArgSpec specs[40];
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
    int rc = args_parse(argc, argv, specs, n,
                        "llava eval scienceqa --model DIR --data llava_test_CQM-A.json --images DIR --problems "
                        "problems.json\n"
                        "                             [--single-pred-prompt] [--out DIR] [options]\n"
                        "       llava eval scienceqa --problems problems.json --answers answers.jsonl [--out DIR]",
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
    sqa_predictions_free(&pred);
    return status;
}

int cmd_eval(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "scienceqa") == 0) return eval_scienceqa(argc - 1, argv + 1);
    FILE *out = argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) ? stdout : stderr;
    fprintf(out, "usage: llava eval <benchmark> [options]   (llava eval <benchmark> --help)\n\nbenchmarks:\n"
                 "  scienceqa   ScienceQA: LLaVA's answer parsing, result files and the leaderboard table\n");
    return out == stdout ? EXIT_OK : EXIT_BAD_INPUT;
}
