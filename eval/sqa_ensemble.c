#include "eval/sqa_ensemble.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/json.h"
#include "common/jsonl.h"

const char SQA_JUDGE_SYSTEM_MESSAGE[] =
    "You are a careful science teacher who checks answers to multiple-choice questions.";

char *sqa_judge_prompt(const char *question, const char *hint, const char *const *choices, int n_choices,
                       const char *answer1, const char *answer2) {
    size_t cap = strlen(question) + strlen(hint) + strlen(answer1) + strlen(answer2) + 1024;
    for (int i = 0; i < n_choices; i++) cap += strlen(choices[i]) + 8;
    char *s = xmalloc(cap);
    size_t n = (size_t)snprintf(s, cap,
                                "Two assistants answered the multiple-choice question below. They disagree. Decide "
                                "which option is correct.\n\nContext: %s\nQuestion: %s\nOptions:",
                                hint[0] ? hint : "N/A", question);
    for (int i = 0; i < n_choices; i++) n += (size_t)snprintf(s + n, cap - n, " (%c) %s", 'A' + i, choices[i]);
    snprintf(s + n, cap - n,
             "\n\n[Assistant 1]\n%s\n[End of Assistant 1]\n\n[Assistant 2]\n%s\n[End of Assistant 2]\n\n"
             "Reason about the question briefly, then end with one line of the form \"The answer is X.\", where X "
             "is the letter of the correct option.",
             answer1, answer2);
    return s;
}

typedef struct {
    const char *pid;
    char *prompt;
    ChatMessage msgs[2];
    int n_choices;
} Ask;

typedef struct {
    Ask *asks;
    FILE *judge_file;
    SqaPredictions *replies;
    int io_error;
} Ctx;

static void on_done(ChatCall *req, void *ctx) {
    Ctx *c = ctx;
    Ask *a = &c->asks[(intptr_t)req->tag];
    if (!req->ok) {
        fprintf(stderr, "scienceqa ensemble: judge on %s: %s (rerun to ask again)\n", a->pid, req->error);
        return;
    }
    sqa_predictions_add(c->replies, a->pid, a->prompt, req->text);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "question_id", a->pid);
    cJSON_AddStringToObject(o, "prompt", a->prompt);
    cJSON_AddStringToObject(o, "text", req->text);
    cJSON_AddStringToObject(o, "model_id", "judge");
    char *line = cJSON_PrintUnformatted(o);
    CHECK(line, "out of memory");
    if (fprintf(c->judge_file, "%s\n", line) < 0 || fflush(c->judge_file) != 0) c->io_error = errno ? errno : EIO;
    free(line);
    cJSON_Delete(o);
}

static const char *text_of(const SqaPredictions *p, const char *pid) {
    int i = strmap_get(&p->index, pid);
    return i >= 0 ? p->p[i].text : "FAILED";
}

static const char *prompt_of(const SqaPredictions *p, const char *pid) {
    int i = strmap_get(&p->index, pid);
    return i >= 0 ? p->p[i].prompt : "Unknown";
}

int sqa_ensemble_run(const char *problems_json, char *const *pids, int n_pids, const SqaPredictions *a,
                     const SqaPredictions *b, ChatClient *client, const char *judge_path, SqaPredictions *combined,
                     SqaEnsembleStats *st, Error *err) {
    memset(st, 0, sizeof *st);
    SqaPredictions replies;
    sqa_predictions_init(&replies);
    cJSON *problems = json_parse_file(problems_json, err);
    Ask *asks = xcalloc((size_t)(n_pids ? n_pids : 1), sizeof *asks);
    int n_asks = 0, rc = -1;
    FILE *jf = NULL;
    ChatCall *reqs = NULL;
    if (!problems) goto done;
    if (file_exists(judge_path) &&
        (jsonl_cut_torn_line(judge_path, err) != 0 || sqa_predictions_load(&replies, judge_path, err) != 0))
        goto done;
    for (int i = 0; i < n_pids; i++) {
        const char *pid = pids[i];
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(problems, pid);
        const cJSON *choices = p ? cJSON_GetObjectItemCaseSensitive(p, "choices") : NULL;
        const cJSON *q = p ? cJSON_GetObjectItemCaseSensitive(p, "question") : NULL;
        const cJSON *h = p ? cJSON_GetObjectItemCaseSensitive(p, "hint") : NULL;
        if (!cJSON_IsArray(choices) || !cJSON_IsString(q)) {
            err_set(err, "%s: problem %s: needs \"question\" and \"choices\"", problems_json, pid);
            goto done;
        }
        const char *ta = text_of(a, pid), *tb = text_of(b, pid);
        if (sqa_parse_answer(ta) == sqa_parse_answer(tb)) {
            st->agreed++;
            continue;
        }
        st->disagreed++;
        if (strmap_get(&replies.index, pid) >= 0) {
            st->reused++;
            continue;
        }
        int nc = cJSON_GetArraySize(choices);
        const char **cs = xcalloc((size_t)(nc ? nc : 1), sizeof *cs);
        int k = 0;
        for (const cJSON *c = choices->child; c; c = c->next, k++) cs[k] = cJSON_IsString(c) ? c->valuestring : "";
        Ask *ask = &asks[n_asks++];
        ask->pid = pid;
        ask->n_choices = nc;
        ask->prompt = sqa_judge_prompt(q->valuestring, cJSON_IsString(h) ? h->valuestring : "", cs, nc, ta, tb);
        free(cs);
        ask->msgs[0] = (ChatMessage){"system", SQA_JUDGE_SYSTEM_MESSAGE};
        ask->msgs[1] = (ChatMessage){"user", ask->prompt};
    }
    if (n_asks > 0 && client) {
        jf = fopen(judge_path, "a");
        if (!jf) {
            err_set(err, "%s: cannot open for appending: %s", judge_path, strerror(errno));
            goto done;
        }
        reqs = xcalloc((size_t)n_asks, sizeof *reqs);
        for (int k = 0; k < n_asks; k++)
            reqs[k] = (ChatCall){.messages = asks[k].msgs, .n_messages = 2, .tag = (void *)(intptr_t)k};
        Ctx ctx = {asks, jf, &replies, 0};
        chat_client_run(client, reqs, n_asks, on_done, &ctx);
        if (ctx.io_error || fsync(fileno(jf)) != 0) {
            err_set(err, "%s: write failed: %s", judge_path, strerror(ctx.io_error ? ctx.io_error : errno));
            goto done;
        }
    }
    // The combination.
    for (int i = 0; i < n_pids; i++) {
        const char *pid = pids[i];
        const char *ta = text_of(a, pid), *tb = text_of(b, pid);
        const char *use = ta;
        if (sqa_parse_answer(ta) != sqa_parse_answer(tb)) {
            int r = strmap_get(&replies.index, pid);
            if (r < 0) {
                st->judge_failed++;
            } else {
                const cJSON *choices =
                    cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(problems, pid), "choices");
                if (sqa_pred_index(sqa_parse_answer(replies.p[r].text), cJSON_GetArraySize(choices)) >= 0) {
                    use = replies.p[r].text;
                    st->judged++;
                } else {
                    st->judge_unusable++;
                }
            }
        }
        if (strmap_get(&a->index, pid) >= 0 || use != ta) sqa_predictions_add(combined, pid, prompt_of(a, pid), use);
    }
    rc = 0;
done:
    if (jf && fclose(jf) != 0 && rc == 0) rc = err_set(err, "%s: %s", judge_path, strerror(errno));
    for (int k = 0; k < n_asks; k++) {
        free(asks[k].prompt);
        if (reqs) chat_call_free(&reqs[k]);
    }
    free(asks);
    free(reqs);
    cJSON_Delete(problems);
    sqa_predictions_free(&replies);
    return rc;
}

void sqa_print_comparison(const char *const *names, const SqaScore *scores, int n, FILE *out) {
    fprintf(out, "%-12s %-8s", "", "acc");
    for (int c = 0; c < SQA_N_CATEGORIES; c++) fprintf(out, "%-7s", sqa_category_name(c));
    fprintf(out, "%-7s\n", "Avg");
    for (int m = 0; m < n; m++) {
        fprintf(out, "%-12s %-8.2f", names[m], sqa_accuracy(&scores[m]));
        for (int c = 0; c < SQA_N_CATEGORIES; c++) {
            double a = sqa_category_accuracy(&scores[m], c);
            if (a < 0)
                fprintf(out, "%-7s", "-");
            else
                fprintf(out, "%-7.2f", a);
        }
        fprintf(out, "%-7.2f\n", sqa_leaderboard_average(&scores[m]));
    }
}
