#include "eval/judge.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

const char JUDGE_SYSTEM_MESSAGE[] = "You are a helpful and precise assistant for checking the quality of the answer.";

char *judge_review_prompt(const char *context, const char *question, const char *answer1, const char *answer2,
                          const char *role, const char *rule_prompt) {
    size_t cap = strlen(context) + strlen(question) + strlen(answer1) + strlen(answer2) + 4 * strlen(role) +
                 strlen(rule_prompt) + 128;
    char *s = xmalloc(cap);
    snprintf(s, cap,
             "[Context]\n%s\n\n[Question]\n%s\n\n[%s 1]\n%s\n\n[End of %s 1]\n\n[%s 2]\n%s\n\n[End of %s 2]\n\n"
             "[System]\n%s\n\n",
             context, question, role, answer1, role, role, answer2, role, rule_prompt);
    return s;
}

// Python's float() on one field: surrounding whitespace allowed, the rest must
// be a number (strtod also takes "inf"/"nan" as Python does).
static int parse_python_float(const char *s, size_t n, double *out) {
    while (n && isspace((unsigned char)*s)) s++, n--;
    while (n && isspace((unsigned char)s[n - 1])) n--;
    if (n == 0 || n > 63) return -1;
    char buf[64];
    memcpy(buf, s, n);
    buf[n] = 0;
    if (buf[0] == '0' && (buf[1] == 'x' || buf[1] == 'X')) return -1;  // strtod reads hex; Python does not
    char *end;
    *out = strtod(buf, &end);
    return *end == 0 ? 0 : -1;
}

int judge_parse_score(const char *review, double out[2]) {
    out[0] = out[1] = -1;
    // The first line (Python's split('\n')[0]: a '\r' stays in it).
    size_t n = strcspn(review, "\n");
    char *line = xmalloc(n + 1);
    memcpy(line, review, n);
    line[n] = 0;
    for (size_t i = 0; i < n; i++)
        if (line[i] == ',') line[i] = ' ';
    // split(' '): every single space separates, so "8  9" has three fields.
    int fields = 1;
    for (size_t i = 0; i < n; i++) fields += line[i] == ' ';
    int rc = -1;
    if (fields == 2) {
        char *sp = strchr(line, ' ');
        double a, b;
        if (parse_python_float(line, (size_t)(sp - line), &a) == 0 &&
            parse_python_float(sp + 1, strlen(sp + 1), &b) == 0) {
            out[0] = a;
            out[1] = b;
            rc = 0;
        }
    }
    free(line);
    return rc;
}

// ---- the summary ------------------------------------------------------------------------

static JudgeCategory *category_get(JudgeSummary *s, const char *name) {
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->cat[i].name, name) == 0) return &s->cat[i];
    s->cat = xrealloc(s->cat, (size_t)(s->n + 1) * sizeof *s->cat);
    int at = s->n++;
    // Keep sorted: insertion.
    while (at > 0 && strcmp(s->cat[at - 1].name, name) > 0) {
        s->cat[at] = s->cat[at - 1];
        at--;
    }
    s->cat[at] = (JudgeCategory){xstrdup(name), {0, 0}, 0, 0};
    return &s->cat[at];
}

static void category_add(JudgeSummary *s, const char *name, const double t[2]) {
    JudgeCategory *c = category_get(s, name);
    c->sum[0] += t[0];
    c->sum[1] += t[1];
    c->n++;
    if (t[0] == -1 && t[1] == -1) c->unparseable++;
}

int judge_summary_add_file(JudgeSummary *s, const char *path, Error *err) {
    size_t len;
    char *text = read_file(path, &len, err);
    if (!text) return -1;
    long lineno = 0;
    int rc = 0;
    for (size_t p = 0; p < len && rc == 0;) {
        char *nl = memchr(text + p, '\n', len - p);
        size_t ll = nl ? (size_t)(nl - (text + p)) : len - p;
        lineno++;
        size_t k = 0;
        while (k < ll && isspace((unsigned char)text[p + k])) k++;
        if (k < ll) {
            cJSON *o = cJSON_ParseWithLength(text + p, ll);
            const cJSON *cat = o ? cJSON_GetObjectItemCaseSensitive(o, "category") : NULL;
            const cJSON *tup = o ? cJSON_GetObjectItemCaseSensitive(o, "tuple") : NULL;
            if (o && !cat && !tup) tup = cJSON_GetObjectItemCaseSensitive(o, "score");
            double t[2];
            int ok = cJSON_IsArray(tup) && cJSON_GetArraySize(tup) == 2 && (!cat || cJSON_IsString(cat));
            for (int i = 0; ok && i < 2; i++) {
                const cJSON *v = cJSON_GetArrayItem(tup, i);
                ok = cJSON_IsNumber(v);
                if (ok) t[i] = v->valuedouble;
            }
            if (!ok) {
                rc = err_set(err, "%s:%ld: expected a review {\"category\"?, \"tuple\": [a, b]}", path, lineno);
            } else {
                if (cat) category_add(s, cat->valuestring, t);
                category_add(s, "all", t);
            }
            cJSON_Delete(o);
        }
        p += ll + 1;
    }
    free(text);
    return rc;
}

void judge_summary_free(JudgeSummary *s) {
    for (int i = 0; i < s->n; i++) free(s->cat[i].name);
    free(s->cat);
    s->cat = NULL;
    s->n = 0;
}

static double round_to(double v, int digits) {
    // Python's round(v, d) is the correctly rounded decimal of the double, as printf's.
    char buf[64];
    snprintf(buf, sizeof buf, "%.*f", digits, v);
    return strtod(buf, NULL);
}

double judge_category_mean(const JudgeCategory *c, int k) {
    return c->n ? round_to(c->sum[k] / (double)c->n, 3) : NAN;
}

double judge_category_relative(const JudgeCategory *c) {
    double m0 = judge_category_mean(c, 0), m1 = judge_category_mean(c, 1);
    if (!(m0 != 0) || isnan(m0)) return NAN;
    return round_to(m1 / m0 * 100.0, 1);
}

void judge_summary_print(const JudgeSummary *s, const char *title, FILE *out) {
    if (title) fprintf(out, "%s\n", title);
    for (int i = 0; i < s->n; i++) fprintf(out, "%s %.1f\n", s->cat[i].name, judge_category_relative(&s->cat[i]));
    fprintf(out, "=================================\n");
    fprintf(out, "%-24s %9s %10s %8s %6s %12s\n", "category", "relative", "reference", "model", "n", "unparseable");
    for (int i = 0; i < s->n; i++) {
        const JudgeCategory *c = &s->cat[i];
        fprintf(out, "%-24s %8.1f%% %10.3f %8.3f %6ld %12ld\n", c->name, judge_category_relative(c),
                judge_category_mean(c, 0), judge_category_mean(c, 1), c->n, c->unparseable);
    }
}
