// ScienceQA scoring against the Python references of
// scripts/make_sqa_fixture.py (tests/fixtures/scienceqa):
//  - the answer parser on a table of tricky outputs (LLaVA's rule run with
//    Python's re);
//  - LLaVA's result.json / output.json for answers.jsonl;
//  - the leaderboard's per-category accuracies (golden_scores.json);
//  - the files we write parse back to the same content;
//  - the question text model_vqa_science.py builds from a question file.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/json.h"
#include "eval/scienceqa.h"
#include "eval/sqa_questions.h"
#include "tests/testlib.h"

static cJSON *load(const char *dir, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    Error err = {{0}};
    cJSON *j = json_parse_file(path, &err);
    if (!j) FATAL("%s", err.msg);
    return j;
}

static void check_parse_table(const char *dir) {
    cJSON *cases = load(dir, "parse_cases.json");
    int n = 0;
    for (const cJSON *c = cases->child; c; c = c->next, n++) {
        const char *text = cJSON_GetObjectItem(c, "text")->valuestring;
        const char *want = cJSON_GetObjectItem(c, "parsed")->valuestring;
        int n_choices = cJSON_GetObjectItem(c, "n_choices")->valueint;
        int want_idx = cJSON_GetObjectItem(c, "pred_idx")->valueint;
        char got = sqa_parse_answer(text);
        char got_s[8] = {got, 0};
        EXPECT(strcmp(got ? got_s : "FAILED", want) == 0, "parse \"%s\": got %s, LLaVA's rule gives %s", text,
               got ? got_s : "FAILED", want);
        EXPECT(sqa_pred_index(got, n_choices) == want_idx, "parse \"%s\" with %d choices: index %d, expected %d", text,
               n_choices, sqa_pred_index(got, n_choices), want_idx);
    }
    EXPECT(n >= 20, "parse table has only %d cases", n);
    cJSON_Delete(cases);
}

// result.json content equals the golden one (numbers exactly: the same
// expression in the same order gives the same double).
static void compare_result(const cJSON *got, const cJSON *want, const char *what) {
    EXPECT(cJSON_GetObjectItem(got, "acc")->valuedouble == cJSON_GetObjectItem(want, "acc")->valuedouble,
           "%s: acc %.17g vs %.17g", what, cJSON_GetObjectItem(got, "acc")->valuedouble,
           cJSON_GetObjectItem(want, "acc")->valuedouble);
    EXPECT(cJSON_GetObjectItem(got, "correct")->valueint == cJSON_GetObjectItem(want, "correct")->valueint,
           "%s: correct", what);
    EXPECT(cJSON_GetObjectItem(got, "count")->valueint == cJSON_GetObjectItem(want, "count")->valueint,
           "%s: count", what);
    EXPECT(cJSON_Compare(cJSON_GetObjectItem(got, "results"), cJSON_GetObjectItem(want, "results"), 1),
           "%s: results by pid differ", what);
    EXPECT(cJSON_Compare(cJSON_GetObjectItem(got, "outputs"), cJSON_GetObjectItem(want, "outputs"), 1),
           "%s: outputs by pid differ", what);
    // Same keys in the same order (pid_splits order).
    const cJSON *a = cJSON_GetObjectItem(got, "results")->child, *b = cJSON_GetObjectItem(want, "results")->child;
    int same_order = 1;
    for (; a && b; a = a->next, b = b->next) same_order &= strcmp(a->string, b->string) == 0;
    EXPECT(same_order && !a && !b, "%s: results not in split order", what);
}

static void check_question_prompts(const char *dir) {
    cJSON *golden = load(dir, "golden_prompts.json");
    for (const cJSON *file = golden->child; file; file = file->next) {
        for (int single = 0; single <= 1; single++) {
            char path[4200], key[4] = {(char)('0' + single), 0};
            snprintf(path, sizeof path, "%s/%s", dir, file->string);
            SqaQuestion *q;
            int n;
            Error err = {{0}};
            if (sqa_questions_load(path, single, &q, &n, &err) != 0) FATAL("%s", err.msg);
            const cJSON *want = cJSON_GetObjectItem(file, key);
            EXPECT(n == cJSON_GetArraySize(want), "%s: %d questions", file->string, n);
            int i = 0;
            for (const cJSON *w = want->child; w && i < n; w = w->next, i++)
                EXPECT(strcmp(q[i].qs, w->valuestring) == 0, "%s single=%d item %d: question text \"%s\", LLaVA's "
                       "is \"%s\"", file->string, single, i, q[i].qs, w->valuestring);
            sqa_questions_free(q, n);
        }
    }
    cJSON_Delete(golden);
}

int main(int argc, char **argv) {
    const char *src = argc > 1 ? argv[1] : ".";
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/scienceqa", src);
    check_parse_table(dir);
    check_question_prompts(dir);

    Error err = {{0}};
    SqaProblems ps;
    snprintf(path, sizeof path, "%s/problems.json", dir);
    EXPECT(sqa_problems_load(&ps, path, &err) == 0, "%s", err.msg);
    char **pids;
    int n_pids;
    snprintf(path, sizeof path, "%s/pid_splits.json", dir);
    EXPECT(sqa_split_load(path, "test", &pids, &n_pids, &err) == 0, "%s", err.msg);
    SqaPredictions pred;
    sqa_predictions_init(&pred);
    snprintf(path, sizeof path, "%s/answers.jsonl", dir);
    EXPECT(sqa_predictions_load(&pred, path, &err) == 0, "%s", err.msg);
    SqaScore s;
    EXPECT(sqa_score(&ps, pids, n_pids, "test", &pred, &s, &err) == 0, "%s", err.msg);
    EXPECT(s.missing == 1, "one test question has no answer in the fixture, got %d", s.missing);

    // The files, written to a scratch folder and read back.
    char tmp[] = "/tmp/test_sqa_XXXXXX";
    if (!mkdtemp(tmp)) FATAL("mkdtemp");
    char rpath[4200], opath[4200], spath[4200];
    snprintf(rpath, sizeof rpath, "%s/result.json", tmp);
    snprintf(opath, sizeof opath, "%s/output.json", tmp);
    snprintf(spath, sizeof spath, "%s/scores.json", tmp);
    EXPECT(sqa_write_result_json(&s, rpath, &err) == 0, "%s", err.msg);
    EXPECT(sqa_write_output_json(&s, opath, &err) == 0, "%s", err.msg);
    EXPECT(sqa_write_scores_json(&s, spath, &err) == 0, "%s", err.msg);
    cJSON *got_r = load(tmp, "result.json"), *want_r = load(dir, "golden_result.json");
    compare_result(got_r, want_r, "result.json");
    cJSON *got_o = load(tmp, "output.json"), *want_o = load(dir, "golden_output.json");
    EXPECT(cJSON_Compare(got_o, want_o, 1), "output.json (correct/incorrect analyses) differs from LLaVA's");
    // Leaderboard categories: the same "%.2f" strings (null when empty).
    cJSON *got_s = load(tmp, "scores.json"), *want_s = load(dir, "golden_scores.json");
    for (const cJSON *w = want_s->child; w; w = w->next) {
        const cJSON *g = cJSON_GetObjectItem(got_s, w->string);
        int same = g && ((cJSON_IsNull(w) && cJSON_IsNull(g)) ||
                         (cJSON_IsString(w) && cJSON_IsString(g) && strcmp(w->valuestring, g->valuestring) == 0));
        EXPECT(same, "scores.json %s: %s, the leaderboard formula gives %s", w->string,
               g && cJSON_IsString(g) ? g->valuestring : "(missing/null)", cJSON_IsString(w) ? w->valuestring : "null");
    }
    printf("fixture: acc %.2f, leaderboard avg %.2f\n", sqa_accuracy(&s), sqa_leaderboard_average(&s));
    sqa_print_summary(&s, stdout);
    cJSON_Delete(got_r);
    cJSON_Delete(want_r);
    cJSON_Delete(got_o);
    cJSON_Delete(want_o);
    cJSON_Delete(got_s);
    cJSON_Delete(want_s);
    unlink(rpath);
    unlink(opath);
    unlink(spath);
    rmdir(tmp);

    // Bad input names the problem.
    SqaPredictions bad;
    sqa_predictions_init(&bad);
    FILE *f = fopen("/tmp/test_sqa_bad.jsonl", "w");
    fputs("{\"question_id\": \"1\", \"text\": \"A\"}\n{\"question_id\": [1], \"text\": \"B\"}\n", f);
    fclose(f);
    EXPECT(sqa_predictions_load(&bad, "/tmp/test_sqa_bad.jsonl", &err) != 0 && strstr(err.msg, ":2:"),
           "a bad answers line must be reported with its line number: %s", err.msg);
    unlink("/tmp/test_sqa_bad.jsonl");
    sqa_predictions_free(&bad);
    char *missing_pid[1] = {"no-such-pid"};
    SqaScore s2;
    memset(&err, 0, sizeof err);
    EXPECT(sqa_score(&ps, missing_pid, 1, "test", &pred, &s2, &err) != 0 && strstr(err.msg, "no-such-pid"),
           "an unknown pid must be named: %s", err.msg);

    sqa_score_free(&s);
    sqa_predictions_free(&pred);
    sqa_split_free(pids, n_pids);
    sqa_problems_free(&ps);
    return test_summary("test_scienceqa");
}
