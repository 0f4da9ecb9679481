// The ScienceQA judge ensemble on the ScienceQA fixture with a scripted judge
// (a real loopback server answering per question), against the result of a
// Python implementation of the rule (scripts/make_sqa_ensemble_fixture.py):
// which questions go to the judge, the combined predictions' accuracy and
// leaderboard categories; the judge's replies are kept and not asked again.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/json.h"
#include "eval/sqa_ensemble.h"
#include "fake_server.h"
#include "testlib.h"

static const char *leaderboard_key(int c) {
    static const char *keys[SQA_N_CATEGORIES] = {"acc_natural",  "acc_social",     "acc_language",
                                                 "acc_has_text", "acc_has_image",  "acc_no_context",
                                                 "acc_grade_1_6", "acc_grade_7_12"};
    return keys[c];
}

static void check_scores(const SqaScore *s, const cJSON *want, const char *what) {
    char buf[32];
    snprintf(buf, sizeof buf, "%.2f", sqa_accuracy(s));
    EXPECT(strcmp(buf, cJSON_GetObjectItem(want, "acc")->valuestring) == 0, "%s acc %s", what, buf);
    const cJSON *sc = cJSON_GetObjectItem(want, "scores");
    for (int c = 0; c < SQA_N_CATEGORIES; c++) {
        const cJSON *w = cJSON_GetObjectItem(sc, leaderboard_key(c));
        double a = sqa_category_accuracy(s, c);
        if (cJSON_IsNull(w)) {
            EXPECT(a < 0, "%s %s: %g, want none", what, leaderboard_key(c), a);
            continue;
        }
        snprintf(buf, sizeof buf, "%.2f", a);
        EXPECT(strcmp(buf, w->valuestring) == 0, "%s %s: %s, want %s", what, leaderboard_key(c), buf, w->valuestring);
    }
    snprintf(buf, sizeof buf, "%.2f", sqa_leaderboard_average(s));
    EXPECT(strcmp(buf, cJSON_GetObjectItem(sc, "acc_average")->valuestring) == 0, "%s average %s", what, buf);
}

int main(int argc, char **argv) {
    const char *src = argc > 1 ? argv[1] : ".";
    char fx[2048], p[4096];
    snprintf(fx, sizeof fx, "%s/tests/fixtures/scienceqa", src);
    Error err = {{0}};
    FakeRule *rules;
    int n_rules;
    void *keep;
    snprintf(p, sizeof p, "%s/ensemble/judge_rules.json", fx);
    if (fake_rules_load(p, &rules, &n_rules, &keep) != 0) return 1;
    FakeServer *srv = fake_server_start(rules, n_rules, NULL, NULL);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", fake_server_port(srv));
    ChatConfig cfg = {.endpoint = url, .model = "judge", .concurrency = 3, .timeout_s = 10, .max_retries = 1,
                      .backoff_s = 0.01, .temperature = 0, .max_tokens = 256, .price_prompt_1k = -1};
    ChatClient client;
    EXPECT(chat_client_init(&client, &cfg, &err) == 0, "client: %s", err.msg);

    SqaProblems ps;
    char **pids;
    int n_pids;
    SqaPredictions a, b, combined;
    sqa_predictions_init(&a);
    sqa_predictions_init(&b);
    sqa_predictions_init(&combined);
    char problems[4096], splits[4096], golden_path[4096];
    snprintf(problems, sizeof problems, "%s/problems.json", fx);
    snprintf(splits, sizeof splits, "%s/pid_splits.json", fx);
    snprintf(golden_path, sizeof golden_path, "%s/ensemble/golden.json", fx);
    snprintf(p, sizeof p, "%s/answers.jsonl", fx);
    EXPECT(sqa_problems_load(&ps, problems, &err) == 0 && sqa_split_load(splits, "test", &pids, &n_pids, &err) == 0 &&
               sqa_predictions_load(&a, p, &err) == 0,
           "fixture: %s", err.msg);
    snprintf(p, sizeof p, "%s/ensemble/other_answers.jsonl", fx);
    EXPECT(sqa_predictions_load(&b, p, &err) == 0, "other: %s", err.msg);
    cJSON *golden = json_parse_file(golden_path, &err);
    EXPECT(golden != NULL, "golden: %s", err.msg);
    if (!golden) return test_summary("test_sqa_ensemble");

    char judge_path[] = "/tmp/llava_sqa_judge_XXXXXX";
    int fd = mkstemp(judge_path);
    close(fd);
    remove(judge_path);  // a fresh run: no earlier replies
    SqaEnsembleStats st;
    EXPECT(sqa_ensemble_run(problems, pids, n_pids, &a, &b, &client, judge_path, &combined, &st, &err) == 0,
           "ensemble: %s", err.msg);
    // The judge was asked exactly about the disagreements, once each.
    const cJSON *dis = cJSON_GetObjectItem(golden, "disagree");
    int n_dis = cJSON_GetArraySize(dis);
    EXPECT(st.disagreed == n_dis && st.agreed == n_pids - n_dis, "disagreed %d agreed %d, want %d", st.disagreed,
           st.agreed, n_dis);
    EXPECT(fake_server_count(srv) == n_dis, "judge asked %d times for %d disagreements", fake_server_count(srv), n_dis);
    for (const cJSON *d = dis->child; d; d = d->next) {
        char needle[64];
        snprintf(needle, sizeof needle, "Other model on pid %s:", d->valuestring);
        int hits = 0;
        for (int i = 0; i < fake_server_count(srv); i++) hits += strstr(fake_server_body(srv, i), needle) != NULL;
        EXPECT(hits == 1, "pid %s asked %d times", d->valuestring, hits);
        // What the judge sees: the problem's question and options, both answers.
        int r = strmap_get(&b.index, d->valuestring);
        EXPECT(r >= 0, "other answer of %s", d->valuestring);
    }
    const char *body0 = fake_server_count(srv) ? fake_server_body(srv, 0) : "";
    EXPECT(strstr(body0, "Options: (A) choice 0 of") && strstr(body0, "[Assistant 2]\\nOther model on pid") &&
               strstr(body0, "The answer is X."),
           "judge prompt: %s", body0);
    // Judge letters: valid ones used, FAILED / out of range keep the first answer.
    const cJSON *letters = cJSON_GetObjectItem(golden, "judge_letters");
    int usable = 0;
    for (const cJSON *l = letters->child; l; l = l->next) {
        int pi = strmap_get(&ps.index, l->string);
        usable += sqa_pred_index(l->valuestring[0] && strcmp(l->valuestring, "FAILED") ? l->valuestring[0] : 0,
                                 ps.p[pi].n_choices) >= 0;
    }
    EXPECT(st.judged == usable && st.judge_unusable == n_dis - usable && st.judge_failed == 0,
           "judged %d unusable %d failed %d (want %d %d 0)", st.judged, st.judge_unusable, st.judge_failed, usable,
           n_dis - usable);
    SqaScore s[3] = {{0}};
    const SqaPredictions *preds[3] = {&a, &b, &combined};
    const char *names[3] = {"first", "second", "ensemble"};
    for (int i = 0; i < 3; i++) {
        EXPECT(sqa_score(&ps, pids, n_pids, "test", preds[i], &s[i], &err) == 0, "score: %s", err.msg);
        check_scores(&s[i], cJSON_GetObjectItem(golden, names[i]), names[i]);
    }
    char table[2048] = {0};
    FILE *mem = fmemopen(table, sizeof table - 1, "w");
    sqa_print_comparison(names, s, 3, mem);
    fclose(mem);
    EXPECT(strstr(table, "ensemble") && strstr(table, "NAT") && strstr(table, "G7-12"), "table:\n%s", table);

    // A rerun takes the replies from the judge file: nothing asked again.
    int before = fake_server_count(srv);
    SqaPredictions again;
    sqa_predictions_init(&again);
    SqaEnsembleStats st2;
    EXPECT(sqa_ensemble_run(problems, pids, n_pids, &a, &b, &client, judge_path, &again, &st2, &err) == 0,
           "rerun: %s", err.msg);
    EXPECT(fake_server_count(srv) == before && st2.reused == n_dis && st2.judged == st.judged,
           "rerun asked %d, reused %d", fake_server_count(srv) - before, st2.reused);
    SqaScore s2 = {0};
    EXPECT(sqa_score(&ps, pids, n_pids, "test", &again, &s2, &err) == 0 && s2.correct == s[2].correct,
           "rerun ensemble %d correct vs %d", s2.correct, s[2].correct);
    sqa_score_free(&s2);
    sqa_predictions_free(&again);
    remove(judge_path);

    for (int i = 0; i < 3; i++) sqa_score_free(&s[i]);
    cJSON_Delete(golden);
    sqa_predictions_free(&a);
    sqa_predictions_free(&b);
    sqa_predictions_free(&combined);
    sqa_split_free(pids, n_pids);
    sqa_problems_free(&ps);
    chat_client_free(&client);
    fake_server_stop(srv);
    free(rules);
    cJSON_Delete(keep);
    return test_summary("test_sqa_ensemble");
}
