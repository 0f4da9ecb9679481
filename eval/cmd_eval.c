// `llava eval scienceqa`: answer ScienceQA questions with a model (or take
// an existing answers file) and score them as LLaVA and the leaderboard do.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/args.h"
#include "eval/scienceqa.h"
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

static int eval_scienceqa(int argc, char **argv) {
    const char *answers = NULL, *problems = NULL, *splits = NULL, *split = "test", *out_dir = ".";
    ArgSpec specs[8];
    int n = 0;
    specs[n++] = (ArgSpec){"problems", ARG_STRING, &problems, "ScienceQA problems.json", 1};
    specs[n++] = (ArgSpec){"pid-splits", ARG_STRING, &splits, "pid_splits.json (default: beside problems.json)", 0};
    specs[n++] = (ArgSpec){"split", ARG_STRING, &split, "split to score (default test)", 0};
    specs[n++] = (ArgSpec){"answers", ARG_STRING, &answers,
                           "score this answers JSONL ({question_id, prompt, text} per line, LLaVA's format)", 1};
    specs[n++] = (ArgSpec){"out", ARG_STRING, &out_dir, "folder for result.json, output.json, scores.json "
                                                        "(default .)", 0};
    int rc = args_parse(argc, argv, specs, n,
                        "llava eval scienceqa --problems problems.json --answers answers.jsonl [--out DIR]",
                        "Scores ScienceQA answers with LLaVA's parsing rule and the leaderboard's categories.\n"
                        "Writes result.json and output.json as LLaVA's eval_science_qa.py does, and scores.json\n"
                        "(NAT, SOC, LAN, TXT, IMG, NO, G1-6, G7-12, Avg).",
                        NULL, 0, NULL);
    if (rc) return rc == 1 ? EXIT_OK : EXIT_BAD_INPUT;
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
    if (sqa_predictions_load(&pred, answers, &err) != 0)
        fprintf(stderr, "llava eval scienceqa: %s\n", err.msg);
    else
        status = score_and_write(problems, splits, split, &pred, out_dir);
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
