// Chat request -> job, job -> response objects (completion.h).
#include "serve/completion.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "eval/sqa_questions.h"

int completion_job_build(const ServeModel *sm, const ChatRequest *req, uint64_t fallback_seed, ServeJob **job,
                         ApiError *e) {
    const LlavaConfig *cfg = &sm->m->cfg;
    const int has_image = req->image_url != NULL;
    // The image goes in front of the first question unless the text places
    // "<image>" itself (LLaVA's run_llava.py; `llava generate` does the same).
    char *first = NULL;
    const char **turns = xcalloc((size_t)req->n_turns, sizeof(char *));
    for (int i = 0; i < req->n_turns; i++) turns[i] = req->turns[i];
    if (has_image && !strstr(req->turns[0], "<image>")) {
        first = xmalloc(strlen(req->turns[0]) + 9);
        sprintf(first, "<image>\n%s", req->turns[0]);
        turns[0] = first;
    }
    ConvResult r = {0};
    Error err = {{0}};
    int rc = text_prompt_build_into(sm->tp, turns, req->n_turns, has_image, req->system, &r, &err);
    free(turns);
    free(first);
    if (rc != 0) {
        conv_result_free(&r);
        return api_error_set(e, 400, "invalid_request_error", NULL, "messages", "%s", err.msg);
    }
    const int n = r.ids.n;
    if (n >= sm->T_cap) {
        conv_result_free(&r);
        return api_error_set(e, 400, "invalid_request_error", "context_length_exceeded", "messages",
                             "the prompt is %d tokens (images included); the model's context holds %d, and at "
                             "least one answer token must fit", n, sm->T_cap);
    }
    float *pixels = NULL;
    if (has_image) {
        const int S = cfg->vision.image_size;
        pixels = xmalloc((size_t)3 * S * S * sizeof(float));
        if (image_url_load(&sm->images, cfg, req->image_url, req->image_param, pixels, e) != 0) {
            free(pixels);
            conv_result_free(&r);
            return -1;
        }
    }
    int32_t *ids = xmalloc((size_t)n * sizeof(int32_t));
    memcpy(ids, r.ids.data, (size_t)n * sizeof(int32_t));
    conv_result_free(&r);
    ServeJob *j = serve_job_new(ids, n, pixels, has_image);
    j->sample = (SampleParams){.temperature = req->temperature, .top_p = req->top_p, .top_k = req->top_k};
    const int room = sm->T_cap - n;  // max_tokens past the context: stops there with "length"
    j->max_tokens = req->max_tokens > 0 && req->max_tokens < room ? req->max_tokens : room;
    j->seed = req->has_seed ? req->seed : fallback_seed;
    j->ignore_eos = req->ignore_eos;
    for (int i = 0; i < req->n_stops; i++) j->stops[j->n_stops++] = xstrdup(req->stops[i]);
    *job = j;
    return 0;
}

char *completion_text(const ServeModel *sm, const int32_t *ids, int n, size_t stop_at) {
    size_t len;
    char *text = tokenizer_decode(sm->tp->tok, ids, n, 1, &len);
    if (stop_at < len) text[stop_at] = '\0';
    return py_strip(text);
}

size_t completion_stream_ready(const char *text, const ServeJob *job) {
    size_t len = strlen(text);
    if (len >= 3 && memcmp(text + len - 3, "\xEF\xBF\xBD", 3) == 0) len -= 3;
    size_t hold = 0;
    for (int i = 0; i < job->n_stops; i++) {
        const char *s = job->stops[i];
        const size_t sl = strlen(s);
        for (size_t k = sl - 1; k > hold; k--)  // the longest tail of text that starts s
            if (k <= len && memcmp(text + len - k, s, k) == 0) {
                hold = k;
                break;
            }
    }
    return len - hold;
}

const char *completion_finish_reason(ServeFinish f) { return f == FINISH_STOP ? "stop" : "length"; }

static cJSON *usage_object(int prompt_tokens, int completion_tokens) {
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", prompt_tokens);
    cJSON_AddNumberToObject(u, "completion_tokens", completion_tokens);
    cJSON_AddNumberToObject(u, "total_tokens", prompt_tokens + completion_tokens);
    return u;
}

static cJSON *response_head(const char *id, long created, const char *model, const char *object) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "id", id);
    cJSON_AddStringToObject(root, "object", object);
    cJSON_AddNumberToObject(root, "created", (double)created);
    cJSON_AddStringToObject(root, "model", model);
    return root;
}

static char *print_and_free(cJSON *root) {
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    CHECK(text, "out of memory printing a response");
    return text;
}

char *completion_json(const char *id, long created, const char *model, const char *content, ServeFinish f,
                      int prompt_tokens, int completion_tokens) {
    cJSON *root = response_head(id, created, model, "chat.completion");
    cJSON *choice = cJSON_CreateObject();
    cJSON_AddNumberToObject(choice, "index", 0);
    cJSON *msg = cJSON_AddObjectToObject(choice, "message");
    cJSON_AddStringToObject(msg, "role", "assistant");
    cJSON_AddStringToObject(msg, "content", content);
    cJSON_AddNullToObject(choice, "logprobs");
    cJSON_AddStringToObject(choice, "finish_reason", completion_finish_reason(f));
    cJSON *choices = cJSON_AddArrayToObject(root, "choices");
    cJSON_AddItemToArray(choices, choice);
    cJSON_AddItemToObject(root, "usage", usage_object(prompt_tokens, completion_tokens));
    return print_and_free(root);
}

char *completion_chunk_event(const char *id, long created, const char *model, int with_role, const char *content,
                             size_t content_len, const char *finish_reason, int with_usage, int prompt_tokens,
                             int completion_tokens) {
    cJSON *root = response_head(id, created, model, "chat.completion.chunk");
    cJSON *choices = cJSON_AddArrayToObject(root, "choices");
    if (!with_usage) {
        cJSON *choice = cJSON_CreateObject();
        cJSON_AddNumberToObject(choice, "index", 0);
        cJSON *delta = cJSON_AddObjectToObject(choice, "delta");
        if (with_role) cJSON_AddStringToObject(delta, "role", "assistant");
        if (content) {
            char *piece = xmalloc(content_len + 1);
            memcpy(piece, content, content_len);
            piece[content_len] = '\0';
            cJSON_AddStringToObject(delta, "content", piece);
            free(piece);
        }
        cJSON_AddNullToObject(choice, "logprobs");
        if (finish_reason)
            cJSON_AddStringToObject(choice, "finish_reason", finish_reason);
        else
            cJSON_AddNullToObject(choice, "finish_reason");
        cJSON_AddItemToArray(choices, choice);
    } else {
        cJSON_AddItemToObject(root, "usage", usage_object(prompt_tokens, completion_tokens));
    }
    char *json = print_and_free(root);
    const size_t n = strlen(json);
    char *event = xmalloc(n + 9);
    memcpy(event, "data: ", 6);
    memcpy(event + 6, json, n);
    memcpy(event + 6 + n, "\n\n", 3);
    free(json);
    return event;
}
