// llava judge's parts: the review prompt (written out by hand from LLaVA's
// eval_gpt_review_bench.py layout), score parsing and the summary, both
// against a Python implementation of LLaVA's rules
// (scripts/make_judge_fixture.py -> tests/fixtures/judge).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "eval/judge.h"
#include "testlib.h"

static void test_prompt(void) {
    char *p = judge_review_prompt("A cat.\nA sofa.", "What is on the sofa?", "A cat is.", "A dog.", "Assistant",
                                  "Rate them.");
    const char *want =
        "[Context]\nA cat.\nA sofa.\n\n"
        "[Question]\nWhat is on the sofa?\n\n"
        "[Assistant 1]\nA cat is.\n\n[End of Assistant 1]\n\n"
        "[Assistant 2]\nA dog.\n\n[End of Assistant 2]\n\n"
        "[System]\nRate them.\n\n";
    EXPECT(strcmp(p, want) == 0, "review prompt:\n%s", p);
    free(p);
    EXPECT(strcmp(JUDGE_SYSTEM_MESSAGE, "You are a helpful and precise assistant for checking the quality of the "
                                        "answer.") == 0,
           "system message");
}

static void test_scores(const char *src) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/fixtures/judge/score_cases.json", src);
    Error err = {{0}};
    cJSON *cases = json_parse_file(path, &err);
    EXPECT(cases && cJSON_GetArraySize(cases) >= 10, "score cases: %s", err.msg);
    for (const cJSON *c = cases ? cases->child : NULL; c; c = c->next) {
        const char *review = cJSON_GetObjectItem(c, "review")->valuestring;
        const cJSON *want = cJSON_GetObjectItem(c, "scores");
        double w0 = cJSON_GetArrayItem(want, 0)->valuedouble, w1 = cJSON_GetArrayItem(want, 1)->valuedouble;
        double got[2];
        int rc = judge_parse_score(review, got);
        EXPECT(got[0] == w0 && got[1] == w1 && (rc == 0) == !(w0 == -1 && w1 == -1),
               "parse '%s': %g %g (rc %d), want %g %g", review, got[0], got[1], rc, w0, w1);
    }
    cJSON_Delete(cases);
}

static void test_review_summary(const char *src) {
    char path[4096], spath[4096];
    snprintf(path, sizeof path, "%s/tests/fixtures/judge/reviews.jsonl", src);
    snprintf(spath, sizeof spath, "%s/tests/fixtures/judge/summary.json", src);
    JudgeSummary s = {0};
    Error err = {{0}};
    EXPECT(judge_summary_add_file(&s, path, &err) == 0, "reviews: %s", err.msg);
    cJSON *want = json_parse_file(spath, &err);
    const cJSON *cats = want ? cJSON_GetObjectItem(want, "categories") : NULL;
    EXPECT(cats && cJSON_GetArraySize(cats) == s.n, "%d categories, want %d", s.n, cats ? cJSON_GetArraySize(cats) : -1);
    int i = 0;
    for (const cJSON *c = cats ? cats->child : NULL; c && i < s.n; c = c->next, i++) {
        const JudgeCategory *g = &s.cat[i];
        const cJSON *mean = cJSON_GetObjectItem(c, "mean");
        EXPECT(strcmp(g->name, cJSON_GetObjectItem(c, "name")->valuestring) == 0, "category %d: %s", i, g->name);
        EXPECT(judge_category_mean(g, 0) == cJSON_GetArrayItem(mean, 0)->valuedouble &&
                   judge_category_mean(g, 1) == cJSON_GetArrayItem(mean, 1)->valuedouble,
               "%s means %.17g %.17g", g->name, judge_category_mean(g, 0), judge_category_mean(g, 1));
        EXPECT(judge_category_relative(g) == cJSON_GetObjectItem(c, "relative")->valuedouble, "%s relative %.17g",
               g->name, judge_category_relative(g));
        EXPECT(g->n == cJSON_GetObjectItem(c, "n")->valueint &&
                   g->unparseable == cJSON_GetObjectItem(c, "unparseable")->valueint,
               "%s counts %ld %ld", g->name, g->n, g->unparseable);
    }
    // The printed lines are LLaVA's, character for character.
    char buf[4096] = {0};
    FILE *mem = fmemopen(buf, sizeof buf - 1, "w");
    judge_summary_print(&s, NULL, mem);
    fclose(mem);
    const cJSON *lines = want ? cJSON_GetObjectItem(want, "lines") : NULL;
    char expect[2048] = {0};
    for (const cJSON *l = lines ? lines->child : NULL; l; l = l->next) {
        strcat(expect, l->valuestring);
        strcat(expect, "\n");
    }
    EXPECT(strncmp(buf, expect, strlen(expect)) == 0, "printed:\n%s\nwant:\n%s", buf, expect);
    cJSON_Delete(want);
    judge_summary_free(&s);
    // A reference mean of 0: no relative score, no crash.
    JudgeCategory z = {"x", {0, 5}, 2, 0};
    EXPECT(isnan(judge_category_relative(&z)), "relative with a zero reference");
}

int main(int argc, char **argv) {
    const char *src = argc > 1 ? argv[1] : ".";
    test_prompt();
    test_scores(src);
    test_review_summary(src);
    return test_summary("test_judge");
}
