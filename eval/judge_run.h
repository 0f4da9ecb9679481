// `llava judge`'s run: load the question, context, reference and answer
// files, build one review request per question, send them through the chat
// client and append each review to the output JSONL as LLaVA's
// eval_gpt_review_bench.py writes it ({id, question_id, answer1_id,
// answer2_id, category, content, tuple}). Resumable: question_ids already in
// the output are not asked again; a failed request is not written (a rerun
// asks again), an unparseable review is written with tuple [-1, -1].
#ifndef LLAVA_JUDGE_RUN_H
#define LLAVA_JUDGE_RUN_H

#include <cjson/cJSON.h>

#include "common/chat_client.h"
#include "common/util.h"

typedef struct {
    const char *questions, *context, *reference, *answers, *rules, *out;
    const char *category_prefix;  // LLaVA's "llava_bench_"
} JudgeFiles;

typedef struct {
    long asked, written, unparseable, failed, already_done;
} JudgeStats;

// A question_id / answer id as a map key: strings as they are, numbers in
// decimal (LLaVA-Bench uses integers).
void judge_id_key(const cJSON *v, char *out, size_t cap);

int judge_run(const JudgeFiles *f, ChatClient *client, JudgeStats *st, Error *err);

#endif
