#include "eval/judge_run.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/json.h"
#include "common/jsonl.h"
#include "common/strmap.h"
#include "eval/judge.h"

void judge_id_key(const cJSON *v, char *out, size_t cap) {
    if (cJSON_IsString(v))
        snprintf(out, cap, "%s", v->valuestring);
    else if (cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) && fabs(v->valuedouble) < 1e15)
        snprintf(out, cap, "%.0f", v->valuedouble);
    else if (cJSON_IsNumber(v))
        snprintf(out, cap, "%.17g", v->valuedouble);
    else
        out[0] = 0;
}

static const char *str_field(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

// Indexes an answers file by question_id.
static int index_answers(const cJSON *arr, const char *path, StrMap *m, Error *err) {
    int i = 0;
    for (const cJSON *o = arr->child; o; o = o->next, i++) {
        char key[256];
        judge_id_key(cJSON_GetObjectItemCaseSensitive(o, "question_id"), key, sizeof key);
        if (!key[0] || !str_field(o, "text"))
            return err_set(err, "%s: item %d: needs \"question_id\" and a \"text\" string", path, i + 1);
        strmap_put(m, key, i);
    }
    return 0;
}

typedef struct {
    char *prompt;
    ChatMessage msgs[2];
    cJSON *record;  // without content/tuple yet
} Review;

typedef struct {
    Review *reviews;
    FILE *out;
    JudgeStats *st;
    int io_error;
} Ctx;

static void on_done(ChatCall *req, void *ctx) {
    Ctx *c = ctx;
    Review *r = &c->reviews[(intptr_t)req->tag];
    if (!req->ok) {
        char key[256];
        judge_id_key(cJSON_GetObjectItemCaseSensitive(r->record, "question_id"), key, sizeof key);
        fprintf(stderr, "judge: question %s: %s (rerun to ask again)\n", key, req->error);
        c->st->failed++;
        return;
    }
    double t[2];
    if (judge_parse_score(req->text, t) != 0) c->st->unparseable++;
    cJSON_AddStringToObject(r->record, "content", req->text);
    cJSON *tup = cJSON_AddArrayToObject(r->record, "tuple");
    cJSON_AddItemToArray(tup, cJSON_CreateNumber(t[0]));
    cJSON_AddItemToArray(tup, cJSON_CreateNumber(t[1]));
    char *line = cJSON_PrintUnformatted(r->record);
    CHECK(line, "out of memory");
    if (fprintf(c->out, "%s\n", line) < 0 || fflush(c->out) != 0) c->io_error = errno ? errno : EIO;
    free(line);
    c->st->written++;
}

int judge_run(const JudgeFiles *f, ChatClient *client, JudgeStats *st, Error *err) {
    memset(st, 0, sizeof *st);
    cJSON *qs = NULL, *ctxs = NULL, *refs = NULL, *ans = NULL, *rules = NULL, *done_arr = NULL;
    StrMap ctx_by_image, ref_by_q, ans_by_q, done;
    strmap_init(&ctx_by_image);
    strmap_init(&ref_by_q);
    strmap_init(&ans_by_q);
    strmap_init(&done);
    Review *reviews = NULL;
    ChatCall *reqs = NULL;
    int n_reviews = 0, rc = -1;
    FILE *out = NULL;
    if (!(qs = jsonl_load(f->questions, err)) || !(ctxs = jsonl_load(f->context, err)) ||
        !(refs = jsonl_load(f->reference, err)) || !(ans = jsonl_load(f->answers, err)) ||
        !(rules = json_parse_file(f->rules, err)))
        goto done;
    if (file_exists(f->out)) {
        if (jsonl_cut_torn_line(f->out, err) != 0) goto done;
        if (!(done_arr = jsonl_load(f->out, err))) goto done;
        for (const cJSON *o = done_arr->child; o; o = o->next) {
            char key[256];
            judge_id_key(cJSON_GetObjectItemCaseSensitive(o, "question_id"), key, sizeof key);
            strmap_put(&done, key, 1);
        }
    }
    int i = 0;
    for (const cJSON *o = ctxs->child; o; o = o->next, i++) {
        if (!str_field(o, "image")) {
            err_set(err, "%s: item %d: needs an \"image\" string", f->context, i + 1);
            goto done;
        }
        strmap_put(&ctx_by_image, str_field(o, "image"), i);
    }
    if (index_answers(refs, f->reference, &ref_by_q, err) != 0 || index_answers(ans, f->answers, &ans_by_q, err) != 0)
        goto done;
    int n_q = cJSON_GetArraySize(qs);
    reviews = xcalloc((size_t)(n_q ? n_q : 1), sizeof *reviews);
    // Every question is checked before anything is sent: a missing answer or
    // rule is bad input, not a half-judged run.
    i = 0;
    for (const cJSON *q = qs->child; q; q = q->next, i++) {
        char key[256], cat[512];
        const cJSON *qid = cJSON_GetObjectItemCaseSensitive(q, "question_id");
        judge_id_key(qid, key, sizeof key);
        const char *image = str_field(q, "image"), *text = str_field(q, "text"), *category = str_field(q, "category");
        if (!key[0] || !image || !text || !category) {
            err_set(err, "%s: item %d: needs \"question_id\", \"image\", \"text\" and \"category\"", f->questions,
                    i + 1);
            goto done;
        }
        snprintf(cat, sizeof cat, "%s%s", f->category_prefix, category);
        const cJSON *rule = cJSON_GetObjectItemCaseSensitive(rules, cat);
        const char *role = rule ? str_field(rule, "role") : NULL, *rp = rule ? str_field(rule, "prompt") : NULL;
        int ci = strmap_get(&ctx_by_image, image), ri = strmap_get(&ref_by_q, key), ai = strmap_get(&ans_by_q, key);
        if (!role || !rp) {
            err_set(err, "%s: no rule \"%s\" with \"role\" and \"prompt\" (question %s)", f->rules, cat, key);
            goto done;
        }
        if (ci < 0 || ri < 0 || ai < 0) {
            err_set(err, "question %s: no %s for it", key,
                    ci < 0 ? "context (by image) in --context" : ri < 0 ? "answer in --reference" : "answer in --answers");
            goto done;
        }
        if (strmap_get(&done, key) >= 0) {
            st->already_done++;
            continue;
        }
        // The context's captions, one per line (a string is taken as it is).
        const cJSON *c = cJSON_GetArrayItem(ctxs, ci), *caps = cJSON_GetObjectItemCaseSensitive(c, "caption");
        char *cap_str;
        if (cJSON_IsString(caps)) {
            cap_str = xstrdup(caps->valuestring);
        } else if (cJSON_IsArray(caps)) {
            size_t total = 1;
            for (const cJSON *x = caps->child; x; x = x->next) total += (cJSON_IsString(x) ? strlen(x->valuestring) : 0) + 1;
            cap_str = xcalloc(total, 1);
            for (const cJSON *x = caps->child; x; x = x->next) {
                if (!cJSON_IsString(x)) continue;
                if (cap_str[0] || x != caps->child) strcat(cap_str, "\n");
                strcat(cap_str, x->valuestring);
            }
        } else {
            err_set(err, "%s: the context of %s has no \"caption\" (string or list)", f->context, image);
            goto done;
        }
        const cJSON *a1 = cJSON_GetArrayItem(refs, ri), *a2 = cJSON_GetArrayItem(ans, ai);
        Review *r = &reviews[n_reviews++];
        r->prompt = judge_review_prompt(cap_str, text, str_field(a1, "text"), str_field(a2, "text"), role, rp);
        free(cap_str);
        r->msgs[0] = (ChatMessage){"system", JUDGE_SYSTEM_MESSAGE};
        r->msgs[1] = (ChatMessage){"user", r->prompt};
        r->record = cJSON_CreateObject();
        cJSON_AddNumberToObject(r->record, "id", i + 1);
        cJSON_AddItemToObject(r->record, "question_id", cJSON_Duplicate(qid, 1));
        const cJSON *id1 = cJSON_GetObjectItemCaseSensitive(a1, "answer_id");
        const cJSON *id2 = cJSON_GetObjectItemCaseSensitive(a2, "answer_id");
        cJSON_AddItemToObject(r->record, "answer1_id",
                              cJSON_Duplicate(id1 ? id1 : cJSON_GetObjectItemCaseSensitive(a1, "question_id"), 1));
        cJSON_AddItemToObject(r->record, "answer2_id",
                              cJSON_Duplicate(id2 ? id2 : cJSON_GetObjectItemCaseSensitive(a2, "question_id"), 1));
        cJSON_AddStringToObject(r->record, "category", cat);
    }
    out = fopen(f->out, "a");
    if (!out) {
        err_set(err, "%s: cannot open for appending: %s", f->out, strerror(errno));
        goto done;
    }
    reqs = xcalloc((size_t)(n_reviews ? n_reviews : 1), sizeof *reqs);
    for (int k = 0; k < n_reviews; k++)
        reqs[k] = (ChatCall){.messages = reviews[k].msgs, .n_messages = 2, .tag = (void *)(intptr_t)k};
    Ctx ctx = {reviews, out, st, 0};
    st->asked = n_reviews;
    chat_client_run(client, reqs, n_reviews, on_done, &ctx);
    if (ctx.io_error || fsync(fileno(out)) != 0) {
        err_set(err, "%s: write failed: %s", f->out, strerror(ctx.io_error ? ctx.io_error : errno));
        goto done;
    }
    rc = 0;
done:
    if (out && fclose(out) != 0 && rc == 0) rc = err_set(err, "%s: %s", f->out, strerror(errno));
    for (int k = 0; k < n_reviews; k++) {
        free(reviews[k].prompt);
        cJSON_Delete(reviews[k].record);
        if (reqs) chat_call_free(&reqs[k]);
    }
    free(reviews);
    free(reqs);
    cJSON_Delete(qs);
    cJSON_Delete(ctxs);
    cJSON_Delete(refs);
    cJSON_Delete(ans);
    cJSON_Delete(rules);
    cJSON_Delete(done_arr);
    strmap_free(&ctx_by_image);
    strmap_free(&ref_by_q);
    strmap_free(&ans_by_q);
    strmap_free(&done);
    return rc;
}
