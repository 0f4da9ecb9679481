// The paper's "LLaVA + GPT-4 (judge)" on ScienceQA: where two answer files
// disagree (their parsed letters differ), a judge model sees the question,
// context, options and both answers and gives a final "The answer is X.";
// that answer counts when X is one of the question's options, otherwise the
// first file's answer stands (LLaVA's eval_science_qa_gpt4_requery.py rule;
// LLaVA draws a random option for an out-of-range letter, we keep the first
// answer so that results reproduce). The judge's replies are kept in a JSONL
// file in LLaVA's answers format, so a rerun does not ask again.
#ifndef LLAVA_SQA_ENSEMBLE_H
#define LLAVA_SQA_ENSEMBLE_H

#include "common/chat_client.h"
#include "eval/scienceqa.h"

typedef struct {
    int agreed, disagreed;
    int judged;          // the judge's letter was used
    int judge_unusable;  // no option letter in the reply: the first answer stands
    int judge_failed;    // the request failed: the first answer stands (rerun to ask)
    int reused;          // replies taken from the judge file of an earlier run
} SqaEnsembleStats;

// The judge's user message for one problem (malloc'd).
char *sqa_judge_prompt(const char *question, const char *hint, const char *const *choices, int n_choices,
                       const char *answer1, const char *answer2);
extern const char SQA_JUDGE_SYSTEM_MESSAGE[];

// Builds `combined` (one prediction per pid) from a and b, asking the judge
// through client (NULL: only replies already in judge_path are used).
int sqa_ensemble_run(const char *problems_json, char *const *pids, int n_pids, const SqaPredictions *a,
                     const SqaPredictions *b, ChatClient *client, const char *judge_path, SqaPredictions *combined,
                     SqaEnsembleStats *st, Error *err);

// One row per model: accuracy, then the leaderboard's categories.
void sqa_print_comparison(const char *const *names, const SqaScore *scores, int n, FILE *out);

#endif
