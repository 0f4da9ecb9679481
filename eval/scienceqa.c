// ScienceQA answer parsing and scoring (see scienceqa.h for the rules).
#include "eval/scienceqa.h"

#include <stdlib.h>
#include <string.h>

#include "common/json.h"

// ---- answer parsing -----------------------------------------------------------------

static int is_option(char c) { return c >= 'A' && c <= 'E'; }

// Bytes of the UTF-8 character starting at s (1 for a stray byte).
static int utf8_len(const unsigned char *s) {
    if (*s < 0x80) return 1;
    int n = (*s & 0xE0) == 0xC0 ? 2 : (*s & 0xF0) == 0xE0 ? 3 : (*s & 0xF8) == 0xF0 ? 4 : 1;
    for (int i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80) return 1;
    return n;
}

char sqa_parse_answer(const char *text) {
    const size_t len = strlen(text);
    if (len == 1 && is_option(text[0])) return text[0];
    if (len >= 3 && is_option(text[0]) && text[1] == '.' && text[2] == ' ') return text[0];
    // re.findall(r'The answer is ([A-Z]).', text): scan left to right, each
    // match resumes after the end of the previous one.
    static const char lead[] = "The answer is ";
    const size_t nl = sizeof lead - 1;
    int matches = 0;
    char letter = 0;
    const char *p = text;
    while ((p = strstr(p, lead)) != NULL) {
        const char *c = p + nl;
        if (*c >= 'A' && *c <= 'Z' && c[1] != '\0' && c[1] != '\n') {
            matches++;
            letter = *c;
            p = c + 1 + utf8_len((const unsigned char *)c + 1);
        } else {
            p++;
        }
    }
    return matches == 1 ? letter : 0;
}

int sqa_pred_index(char letter, int n_choices) {
    if (!is_option(letter)) return -1;
    int i = letter - 'A';
    return i < n_choices ? i : -1;
}

// ---- problems and splits ----------------------------------------------------------------

static int json_string_field(const cJSON *obj, const char *key, const char *path, const char *pid, char **out,
                             Error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsString(v)) return err_set(err, "%s: problem %s: \"%s\" must be a string", path, pid, key);
    *out = xstrdup(v->valuestring);
    return 0;
}

int sqa_problems_load(SqaProblems *ps, const char *path, Error *err) {
    memset(ps, 0, sizeof *ps);
    strmap_init(&ps->index);
    cJSON *root = json_parse_file(path, err);
    if (!root) return -1;
    int rc = -1;
    if (!cJSON_IsObject(root)) {
        err_set(err, "%s: expected an object {pid: problem}", path);
        goto done;
    }
    ps->n = cJSON_GetArraySize(root);
    ps->p = xcalloc((size_t)(ps->n ? ps->n : 1), sizeof(SqaProblem));
    int i = 0;
    for (const cJSON *it = root->child; it; it = it->next, i++) {
        SqaProblem *p = &ps->p[i];
        p->pid = xstrdup(it->string);
        if (!cJSON_IsObject(it)) {
            err_set(err, "%s: problem %s is not an object", path, p->pid);
            goto done;
        }
        const cJSON *choices = cJSON_GetObjectItemCaseSensitive(it, "choices");
        const cJSON *answer = cJSON_GetObjectItemCaseSensitive(it, "answer");
        if (!cJSON_IsArray(choices) || cJSON_GetArraySize(choices) < 1) {
            err_set(err, "%s: problem %s: \"choices\" must be a non-empty list", path, p->pid);
            goto done;
        }
        p->n_choices = cJSON_GetArraySize(choices);
        if (!cJSON_IsNumber(answer) || answer->valuedouble != (double)answer->valueint || answer->valueint < 0 ||
            answer->valueint >= p->n_choices) {
            err_set(err, "%s: problem %s: \"answer\" must be an index into its %d choices", path, p->pid,
                    p->n_choices);
            goto done;
        }
        p->answer = answer->valueint;
        if (json_string_field(it, "subject", path, p->pid, &p->subject, err) ||
            json_string_field(it, "grade", path, p->pid, &p->grade, err) ||
            json_string_field(it, "split", path, p->pid, &p->split, err))
            goto done;
        const cJSON *hint = cJSON_GetObjectItemCaseSensitive(it, "hint");
        const cJSON *image = cJSON_GetObjectItemCaseSensitive(it, "image");
        if (hint && !cJSON_IsNull(hint) && !cJSON_IsString(hint)) {
            err_set(err, "%s: problem %s: \"hint\" must be a string", path, p->pid);
            goto done;
        }
        if (image && !cJSON_IsNull(image) && !cJSON_IsString(image)) {
            err_set(err, "%s: problem %s: \"image\" must be a file name or null", path, p->pid);
            goto done;
        }
        // Python truthiness, as the leaderboard tests them.
        p->has_hint = cJSON_IsString(hint) && hint->valuestring[0] != '\0';
        p->has_image = cJSON_IsString(image) && image->valuestring[0] != '\0';
        strmap_put(&ps->index, p->pid, i);
    }
    rc = 0;
done:
    cJSON_Delete(root);
    if (rc) sqa_problems_free(ps);
    return rc;
}

void sqa_problems_free(SqaProblems *ps) {
    for (int i = 0; ps->p && i < ps->n; i++) {
        free(ps->p[i].pid);
        free(ps->p[i].subject);
        free(ps->p[i].grade);
        free(ps->p[i].split);
    }
    free(ps->p);
    strmap_free(&ps->index);
    memset(ps, 0, sizeof *ps);
}

int sqa_split_load(const char *path, const char *split, char ***pids, int *n, Error *err) {
    *pids = NULL;
    *n = 0;
    cJSON *root = json_parse_file(path, err);
    if (!root) return -1;
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, split);
    if (!cJSON_IsArray(list)) {
        cJSON_Delete(root);
        return err_set(err, "%s: no split \"%s\" (a list of problem ids)", path, split);
    }
    int count = cJSON_GetArraySize(list);
    char **out = xcalloc((size_t)(count ? count : 1), sizeof(char *));
    int i = 0;
    for (const cJSON *it = list->child; it; it = it->next, i++) {
        if (!cJSON_IsString(it)) {
            sqa_split_free(out, i);
            cJSON_Delete(root);
            return err_set(err, "%s: split \"%s\" item %d is not a string", path, split, i);
        }
        out[i] = xstrdup(it->valuestring);
    }
    cJSON_Delete(root);
    *pids = out;
    *n = count;
    return 0;
}

void sqa_split_free(char **pids, int n) {
    for (int i = 0; pids && i < n; i++) free(pids[i]);
    free(pids);
}

// ---- predictions ------------------------------------------------------------------------

void sqa_predictions_init(SqaPredictions *s) {
    memset(s, 0, sizeof *s);
    strmap_init(&s->index);
}

void sqa_predictions_free(SqaPredictions *s) {
    for (int i = 0; i < s->n; i++) {
        free(s->p[i].question_id);
        free(s->p[i].prompt);
        free(s->p[i].text);
    }
    free(s->p);
    strmap_free(&s->index);
    memset(s, 0, sizeof *s);
}

void sqa_predictions_add(SqaPredictions *s, const char *question_id, const char *prompt, const char *text) {
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->p = xrealloc(s->p, (size_t)s->cap * sizeof(SqaPrediction));
    }
    s->p[s->n] = (SqaPrediction){xstrdup(question_id), xstrdup(prompt), xstrdup(text)};
    strmap_put(&s->index, question_id, s->n);
    s->n++;
}

int sqa_predictions_load(SqaPredictions *s, const char *path, Error *err) {
    size_t len = 0;
    char *text = read_file(path, &len, err);
    if (!text) return -1;
    int line_no = 0, rc = 0;
    char *line = text;
    while (line && *line && rc == 0) {
        line_no++;
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        const char *q = line;
        while (*q == ' ' || *q == '\t' || *q == '\r') q++;
        if (*q) {
            char what[64];
            snprintf(what, sizeof what, "line %d", line_no);
            cJSON *obj = json_parse_text(line, strlen(line), what, err);
            if (!obj) {
                err_prefix(err, "%s: ", path);
                rc = -1;
                break;
            }
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(obj, "question_id");
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(obj, "text");
            const cJSON *pr = cJSON_GetObjectItemCaseSensitive(obj, "prompt");
            char idbuf[64];
            const char *idstr = NULL;
            if (cJSON_IsString(id)) {
                idstr = id->valuestring;
            } else if (cJSON_IsNumber(id) && id->valuedouble == (double)(long long)id->valuedouble) {
                snprintf(idbuf, sizeof idbuf, "%lld", (long long)id->valuedouble);
                idstr = idbuf;
            }
            if (!idstr || !cJSON_IsString(t) || (pr && !cJSON_IsString(pr))) {
                rc = err_set(err, "%s:%d: needs \"question_id\" (string or integer), \"text\" (string) and "
                                  "optionally \"prompt\" (string)", path, line_no);
            } else {
                sqa_predictions_add(s, idstr, pr ? pr->valuestring : "", t->valuestring);
            }
            cJSON_Delete(obj);
        }
        line = nl ? nl + 1 : NULL;
    }
    free(text);
    return rc;
}

// ---- scoring ------------------------------------------------------------------------------

static int grade_number(const char *grade) {
    if (strncmp(grade, "grade", 5) != 0) return 0;
    char *end = NULL;
    long g = strtol(grade + 5, &end, 10);
    return (*end == '\0' && g >= 1 && g <= 12) ? (int)g : 0;
}

int sqa_score(const SqaProblems *ps, char *const *pids, int n_pids, const char *split, const SqaPredictions *pred,
              SqaScore *out, Error *err) {
    memset(out, 0, sizeof *out);
    out->items = xcalloc((size_t)(n_pids ? n_pids : 1), sizeof(SqaItem));
    out->n = n_pids;
    StrMap result;  // pid -> predicted index, for the leaderboard pass
    strmap_init(&result);
    for (int i = 0; i < n_pids; i++) {
        int k = strmap_get(&ps->index, pids[i]);
        if (k < 0) {
            strmap_free(&result);
            sqa_score_free(out);
            return err_set(err, "problem %s of the split is not in problems.json", pids[i]);
        }
        const SqaProblem *p = &ps->p[k];
        SqaItem *it = &out->items[i];
        int j = strmap_get(&pred->index, pids[i]);
        it->pid = pids[i];
        it->prompt = j >= 0 ? pred->p[j].prompt : "Unknown";
        it->text = j >= 0 ? pred->p[j].text : "FAILED";
        out->missing += j < 0;
        it->parsed = sqa_parse_answer(it->text);
        it->pred_idx = sqa_pred_index(it->parsed, p->n_choices);
        it->truth = p->answer;
        it->multimodal = strstr(it->prompt, "<image>") != NULL;
        const int ok = it->pred_idx == p->answer;
        out->correct += ok;
        out->multimodal.total += it->multimodal;
        out->multimodal.correct += it->multimodal && ok;
        strmap_put(&result, pids[i], it->pred_idx);
    }
    // The leaderboard: every problem of the split (by its "split" field).
    for (int k = 0; k < ps->n; k++) {
        const SqaProblem *p = &ps->p[k];
        if (strcmp(p->split, split) != 0) continue;
        int r = strmap_get(&result, p->pid);  // -1 = absent (a FAILED answer is -1 too)
        const int ok = r >= 0 && r == p->answer;
        const int g = grade_number(p->grade);
        const int in[SQA_N_CATEGORIES] = {
            strcmp(p->subject, "natural science") == 0, strcmp(p->subject, "social science") == 0,
            strcmp(p->subject, "language science") == 0, p->has_hint, p->has_image, !p->has_hint && !p->has_image,
            g >= 1 && g <= 6, g >= 7 && g <= 12};
        for (int c = 0; c < SQA_N_CATEGORIES; c++) {
            out->cat[c].total += in[c];
            out->cat[c].correct += in[c] && ok;
        }
        out->leaderboard_correct += ok;
    }
    strmap_free(&result);
    return 0;
}

void sqa_score_free(SqaScore *s) {
    free(s->items);
    memset(s, 0, sizeof *s);
}

double sqa_accuracy(const SqaScore *s) { return s->n ? (double)s->correct / s->n * 100 : 0.0; }

double sqa_category_accuracy(const SqaScore *s, int c) {
    return s->cat[c].total ? (double)s->cat[c].correct / s->cat[c].total * 100 : -1.0;
}

double sqa_leaderboard_average(const SqaScore *s) {
    return s->n ? (double)s->leaderboard_correct / s->n * 100 : -1.0;
}

const char *sqa_category_name(int c) {
    static const char *names[SQA_N_CATEGORIES] = {"NAT", "SOC", "LAN", "TXT", "IMG", "NO", "G1-6", "G7-12"};
    return names[c];
}

// ---- files --------------------------------------------------------------------------------

static int write_json(cJSON *root, const char *path, Error *err) {
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return err_set(err, "%s: out of memory formatting JSON", path);
    size_t n = strlen(text);
    text[n] = '\n';  // the file ends with a newline: it takes the terminator's byte
    int rc = write_file_atomic(path, text, n + 1, err);
    free(text);
    return rc;
}


int sqa_write_result_json(const SqaScore *s, const char *path, Error *err) {
    cJSON *root = cJSON_CreateObject(), *results = cJSON_CreateObject(), *outputs = cJSON_CreateObject();
    cJSON_AddNumberToObject(root, "acc", sqa_accuracy(s));
    cJSON_AddNumberToObject(root, "correct", s->correct);
    cJSON_AddNumberToObject(root, "count", s->n);
    for (int i = 0; i < s->n; i++) {
        cJSON_AddNumberToObject(results, s->items[i].pid, s->items[i].pred_idx);
        cJSON_AddStringToObject(outputs, s->items[i].pid, s->items[i].text);
    }
    cJSON_AddItemToObject(root, "results", results);
    cJSON_AddItemToObject(root, "outputs", outputs);
    return write_json(root, path, err);
}

int sqa_write_output_json(const SqaScore *s, const char *path, Error *err) {
    cJSON *root = cJSON_CreateObject(), *correct = cJSON_CreateArray(), *incorrect = cJSON_CreateArray();
    for (int i = 0; i < s->n; i++) {
        const SqaItem *it = &s->items[i];
        const char parsed[2] = {it->parsed, '\0'}, truth[2] = {(char)('A' + it->truth), '\0'};
        cJSON *a = cJSON_CreateObject();
        cJSON_AddStringToObject(a, "question_id", it->pid);
        cJSON_AddStringToObject(a, "parsed_ans", it->parsed ? parsed : "FAILED");
        cJSON_AddStringToObject(a, "ground_truth", truth);
        cJSON_AddStringToObject(a, "question", it->prompt);
        cJSON_AddStringToObject(a, "pred", it->text);
        cJSON_AddBoolToObject(a, "is_multimodal", it->multimodal);
        cJSON_AddItemToArray(it->pred_idx == it->truth ? correct : incorrect, a);
    }
    cJSON_AddItemToObject(root, "correct", correct);
    cJSON_AddItemToObject(root, "incorrect", incorrect);
    return write_json(root, path, err);
}

static void add_percent(cJSON *obj, const char *key, double v) {
    if (v < 0) {
        cJSON_AddNullToObject(obj, key);
        return;
    }
    char buf[32];
    snprintf(buf, sizeof buf, "%.2f", v);
    cJSON_AddStringToObject(obj, key, buf);
}

int sqa_write_scores_json(const SqaScore *s, const char *path, Error *err) {
    static const char *keys[SQA_N_CATEGORIES] = {"acc_natural",   "acc_social",    "acc_language",
                                                 "acc_has_text",  "acc_has_image", "acc_no_context",
                                                 "acc_grade_1_6", "acc_grade_7_12"};
    cJSON *root = cJSON_CreateObject(), *counts = cJSON_CreateObject();
    for (int c = 0; c < SQA_N_CATEGORIES; c++) {
        add_percent(root, keys[c], sqa_category_accuracy(s, c));
        cJSON *t = cJSON_CreateObject();
        cJSON_AddNumberToObject(t, "correct", s->cat[c].correct);
        cJSON_AddNumberToObject(t, "total", s->cat[c].total);
        cJSON_AddItemToObject(counts, sqa_category_name(c), t);
    }
    add_percent(root, "acc_average", sqa_leaderboard_average(s));
    cJSON_AddItemToObject(root, "counts", counts);
    cJSON_AddNumberToObject(root, "missing_predictions", s->missing);
    return write_json(root, path, err);
}

void sqa_print_summary(const SqaScore *s, FILE *out) {
    fprintf(out, "Total: %d, Correct: %d, Accuracy: %.2f%%", s->n, s->correct, sqa_accuracy(s));
    if (s->multimodal.total)
        fprintf(out, ", IMG-Accuracy: %.2f%%", (double)s->multimodal.correct / s->multimodal.total * 100);
    fprintf(out, "\n");
    if (s->missing) fprintf(out, "(%d question(s) had no answer and count as FAILED)\n", s->missing);
    for (int c = 0; c < SQA_N_CATEGORIES; c++) fprintf(out, "%-7s", sqa_category_name(c));
    fprintf(out, "%-7s\n", "Avg");
    for (int c = 0; c < SQA_N_CATEGORIES; c++) {
        double a = sqa_category_accuracy(s, c);
        if (a < 0)
            fprintf(out, "%-7s", "-");
        else
            fprintf(out, "%-7.2f", a);
    }
    fprintf(out, "%-7.2f\n", sqa_leaderboard_average(s));
}
