// LLaVA-Bench-style judging (LLaVA's eval_gpt_review_bench.py and
// summarize_gpt_review.py, rewritten): for each question, a judge model
// compares a reference answer (assistant 1, e.g. GPT-4's) with the model's
// (assistant 2) given the image's context and the rule of the question's
// category; its first line holds the two scores. The summary is LLaVA's: per
// category and overall, the mean of each score and the relative score
// 100 x mean(model) / mean(reference).
#ifndef LLAVA_JUDGE_H
#define LLAVA_JUDGE_H

#include <stdio.h>

#include "common/util.h"

// The user message LLaVA builds: [Context], [Question], the two answers
// between "[{role} 1]" / "[End of {role} 1]" markers, then "[System]" and the
// rule's prompt. malloc'd.
char *judge_review_prompt(const char *context, const char *question, const char *answer1, const char *answer2,
                          const char *role, const char *rule_prompt);
// The system message LLaVA sends with it.
extern const char JUDGE_SYSTEM_MESSAGE[];

// LLaVA's parse_score: the first line, commas turned into spaces, split on
// single spaces; exactly two fields that are numbers -> 0 and the scores;
// anything else -> -1 and out = {-1, -1} (recorded and counted, as LLaVA does).
int judge_parse_score(const char *review, double out[2]);

// ---- the summary ------------------------------------------------------------------------

typedef struct {
    char *name;     // "all" or the review's category
    double sum[2];
    long n;
    long unparseable;  // tuples of -1, -1
} JudgeCategory;

typedef struct {
    JudgeCategory *cat;  // sorted by name (Python's sorted: byte order)
    int n;
} JudgeSummary;

// Adds the reviews of one JSONL file ({"category"?, "tuple": [a, b]} or
// {"score": [a, b]} per line, as summarize_gpt_review.py reads them).
int judge_summary_add_file(JudgeSummary *s, const char *path, Error *err);
void judge_summary_free(JudgeSummary *s);
// mean of score k, rounded to 3 decimals as LLaVA does before dividing.
double judge_category_mean(const JudgeCategory *c, int k);
// round(mean2 / mean1 * 100, 1) from the rounded means; NAN when mean1 is 0.
double judge_category_relative(const JudgeCategory *c);
// LLaVA's lines ("<category> <relative>"), then a table with both means.
void judge_summary_print(const JudgeSummary *s, const char *title, FILE *out);

#endif
