// ScienceQA scoring, usable without a model: LLaVA's answer parsing
// (llava/eval/eval_science_qa.py), its results files, and the leaderboard's
// per-category accuracies (ScienceQA's get_scores: NAT, SOC, LAN, TXT, IMG,
// NO, G1-6, G7-12, Avg). See docs/eval.md for the rules spelled out.
#ifndef LLAVA_SCIENCEQA_H
#define LLAVA_SCIENCEQA_H

#include <stdio.h>

#include "common/strmap.h"
#include "common/util.h"

// ---- answer parsing -----------------------------------------------------------------

// LLaVA's rule, in order: the whole text is one of "A".."E" -> that letter;
// else the text starts with a letter A-E followed by ". " -> that letter; else
// the regex `The answer is ([A-Z]).` ('.' = any character but a newline) must
// match exactly once (non-overlapping) -> its letter; else 0 (LLaVA's
// "FAILED"). Case-sensitive, no stripping.
char sqa_parse_answer(const char *text);
// The choice index a parsed letter names: A -> 0 ... when it is one of the
// first n_choices letters of A-E, else -1 (FAILED and out-of-range letters
// count as wrong).
int sqa_pred_index(char letter, int n_choices);

// ---- the data set -------------------------------------------------------------------

typedef struct {
    char *pid;
    int answer;     // index of the right choice
    int n_choices;
    char *subject;  // "natural science", "social science", "language science"
    char *grade;    // "grade1" .. "grade12"
    char *split;    // "train", "val", "test", ...
    int has_hint;   // non-empty hint (the leaderboard's TXT)
    int has_image;  // image is set (IMG)
} SqaProblem;

typedef struct {
    SqaProblem *p;  // in problems.json order
    int n;
    StrMap index;   // pid -> position in p
} SqaProblems;

int sqa_problems_load(SqaProblems *ps, const char *problems_json, Error *err);
void sqa_problems_free(SqaProblems *ps);
// The pids of one split of pid_splits.json, in file order (owned strings).
int sqa_split_load(const char *pid_splits_json, const char *split, char ***pids, int *n, Error *err);
void sqa_split_free(char **pids, int n);

// ---- predictions (LLaVA's answers JSONL) ----------------------------------------------

typedef struct {
    char *question_id;  // the pid (a number in the file is turned into its decimal string)
    char *prompt;       // what the model was asked ("<image>" in it marks a multimodal question)
    char *text;         // the model's answer
} SqaPrediction;

typedef struct {
    SqaPrediction *p;
    int n, cap;
    StrMap index;  // question_id -> position (a repeated id: the last line wins, as in LLaVA)
} SqaPredictions;

void sqa_predictions_init(SqaPredictions *s);
void sqa_predictions_free(SqaPredictions *s);
// Takes copies of the strings.
void sqa_predictions_add(SqaPredictions *s, const char *question_id, const char *prompt, const char *text);
// Reads a JSONL file of {"question_id", "prompt", "text", ...}; errors name the line.
int sqa_predictions_load(SqaPredictions *s, const char *path, Error *err);

// ---- scoring --------------------------------------------------------------------------

enum { SQA_NAT, SQA_SOC, SQA_LAN, SQA_TXT, SQA_IMG, SQA_NO, SQA_G1_6, SQA_G7_12, SQA_N_CATEGORIES };

typedef struct {
    int correct, total;
} SqaTally;

typedef struct {
    const char *pid;     // borrowed from the split list
    char parsed;         // letter, or 0 = FAILED
    int pred_idx;        // -1 = wrong by construction
    int truth;           // the right choice
    const char *prompt;  // borrowed from the prediction, or "Unknown" when missing
    const char *text;    // borrowed, or "FAILED" when missing
    int multimodal;      // "<image>" in the prompt (LLaVA's IMG-Accuracy)
} SqaItem;

typedef struct {
    SqaItem *items;  // one per pid of the split, in split order
    int n;
    int correct;
    int missing;         // pids with no prediction (scored FAILED)
    SqaTally multimodal; // LLaVA's IMG-Accuracy, from the prompts
    // The leaderboard's table over problems whose "split" field is the split
    // scored; Avg divides by the number of scored pids, as get_scores does.
    SqaTally cat[SQA_N_CATEGORIES];
    int leaderboard_correct;
} SqaScore;

// Scores the predictions for the given pids (a pid missing from problems is
// an error naming it). `split` selects the problems the leaderboard table
// counts.
int sqa_score(const SqaProblems *ps, char *const *pids, int n_pids, const char *split, const SqaPredictions *pred,
              SqaScore *out, Error *err);
void sqa_score_free(SqaScore *s);

// LLaVA's accuracy: correct / count * 100.
double sqa_accuracy(const SqaScore *s);
// A category's accuracy in percent, or -1 when the category is empty.
double sqa_category_accuracy(const SqaScore *s, int category);
double sqa_leaderboard_average(const SqaScore *s);
const char *sqa_category_name(int category);  // "NAT", ..., "G7-12"

// Files, as LLaVA's eval_science_qa.py writes them:
//   result.json  {"acc", "correct", "count", "results": {pid: index}, "outputs": {pid: text}}
//   output.json  {"correct": [analysis], "incorrect": [analysis]}
// and scores.json: the leaderboard's get_scores keys ("acc_natural", ...,
// "acc_average") as "%.2f" strings, null for an empty category, plus counts.
int sqa_write_result_json(const SqaScore *s, const char *path, Error *err);
int sqa_write_output_json(const SqaScore *s, const char *path, Error *err);
int sqa_write_scores_json(const SqaScore *s, const char *path, Error *err);
// The summary line LLaVA prints and the leaderboard table.
void sqa_print_summary(const SqaScore *s, FILE *out);

#endif
