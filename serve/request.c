// Parsing and checking a chat-completions request body (request.h).
#include "serve/request.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

int api_error_set(ApiError *e, int status, const char *type, const char *code, const char *param,
                  const char *fmt, ...) {
    e->status = status;
    e->type = type;
    e->code = code;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -1;
}

char *api_error_json(const ApiError *e) {
    cJSON *root = cJSON_CreateObject(), *o = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(o, "message", e->message);
    cJSON_AddStringToObject(o, "type", e->type ? e->type : "invalid_request_error");
    if (e->param[0])
        cJSON_AddStringToObject(o, "param", e->param);
    else
        cJSON_AddNullToObject(o, "param");
    if (e->code)
        cJSON_AddStringToObject(o, "code", e->code);
    else
        cJSON_AddNullToObject(o, "code");
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    CHECK(text, "out of memory printing an error");
    return text;
}

static int bad(ApiError *e, const char *param, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(ApiError *e, const char *param, const char *fmt, ...) {
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return api_error_set(e, 400, "invalid_request_error", NULL, param, "%s", msg);
}

static const char *json_type_name(const cJSON *v) {
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    if (cJSON_IsNull(v)) return "null";
    return "invalid";
}

static const cJSON *field(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

// A number field within [lo, hi] (open at the bottom when lo_open).
static int get_number(const cJSON *root, const char *key, double lo, int lo_open, double hi, float *out,
                      ApiError *e) {
    const cJSON *v = field(root, key);
    if (!v) return 0;
    if (!cJSON_IsNumber(v)) return bad(e, key, "'%s' must be a number, got %s", key, json_type_name(v));
    const double d = v->valuedouble;
    if (!isfinite(d) || d > hi || (lo_open ? d <= lo : d < lo))
        return bad(e, key, "'%s' is %g; it must be in %s%g, %g]", key, d, lo_open ? "(" : "[", lo, hi);
    *out = (float)d;
    return 0;
}

static int get_int(const cJSON *root, const char *key, double lo, double hi, int *out, ApiError *e) {
    const cJSON *v = field(root, key);
    if (!v) return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
        return bad(e, key, "'%s' must be an integer, got %s", key, json_type_name(v));
    if (v->valuedouble < lo || v->valuedouble > hi)
        return bad(e, key, "'%s' is %g; it must be in [%g, %g]", key, v->valuedouble, lo, hi);
    *out = (int)v->valuedouble;
    return 0;
}

static int get_bool(const cJSON *root, const char *key, int *out, ApiError *e) {
    const cJSON *v = field(root, key);
    if (!v) return 0;
    if (!cJSON_IsBool(v)) return bad(e, key, "'%s' must be true or false, got %s", key, json_type_name(v));
    *out = cJSON_IsTrue(v);
    return 0;
}

static int parse_stops(const cJSON *root, ChatRequest *r, ApiError *e) {
    const cJSON *v = field(root, "stop");
    if (!v) return 0;
    if (cJSON_IsString(v)) {
        if (!v->valuestring[0]) return bad(e, "stop", "'stop' must not be an empty string");
        r->stops[r->n_stops++] = xstrdup(v->valuestring);
        return 0;
    }
    if (!cJSON_IsArray(v)) return bad(e, "stop", "'stop' must be a string or an array of strings");
    if (cJSON_GetArraySize(v) > SERVE_MAX_STOPS)
        return bad(e, "stop", "'stop' has %d strings; at most %d", cJSON_GetArraySize(v), SERVE_MAX_STOPS);
    int i = 0;
    for (const cJSON *s = v->child; s; s = s->next, i++) {
        char param[32];
        snprintf(param, sizeof param, "stop[%d]", i);
        if (!cJSON_IsString(s) || !s->valuestring[0]) return bad(e, param, "'%s' must be a non-empty string", param);
        r->stops[r->n_stops++] = xstrdup(s->valuestring);
    }
    return 0;
}

// Appends text to a growing message text, parts joined by "\n".
static void text_append(char **acc, const char *text) {
    size_t old = *acc ? strlen(*acc) : 0, add = strlen(text);
    *acc = xrealloc(*acc, old + add + 2);
    if (old) (*acc)[old++] = '\n';
    memcpy(*acc + old, text, add + 1);
}

// One message's content -> its text; an image part is recorded in r.
static int parse_content(const cJSON *content, int msg, int is_user, int is_first_user, ChatRequest *r,
                         char **text, ApiError *e) {
    char param[128];
    snprintf(param, sizeof param, "messages[%d].content", msg);
    if (!content) return bad(e, param, "'%s' is missing", param);
    if (cJSON_IsString(content)) {
        text_append(text, content->valuestring);
        return 0;
    }
    if (!cJSON_IsArray(content))
        return bad(e, param, "'%s' must be a string or an array of content parts, got %s", param,
                   json_type_name(content));
    int k = 0;
    for (const cJSON *part = content->child; part; part = part->next, k++) {
        snprintf(param, sizeof param, "messages[%d].content[%d]", msg, k);
        if (!cJSON_IsObject(part)) return bad(e, param, "'%s' must be an object with a 'type'", param);
        const cJSON *type = field(part, "type");
        if (!cJSON_IsString(type)) return bad(e, param, "'%s.type' must be \"text\" or \"image_url\"", param);
        if (strcmp(type->valuestring, "text") == 0) {
            const cJSON *t = field(part, "text");
            if (!cJSON_IsString(t)) return bad(e, param, "'%s.text' must be a string", param);
            text_append(text, t->valuestring);
        } else if (strcmp(type->valuestring, "image_url") == 0) {
            if (!is_user) return bad(e, param, "'%s': only user messages can hold images", param);
            const cJSON *iu = field(part, "image_url"), *url = NULL;
            if (cJSON_IsString(iu))
                url = iu;  // some clients send the url directly
            else if (cJSON_IsObject(iu))
                url = field(iu, "url");
            if (!cJSON_IsString(url) || !url->valuestring[0])
                return bad(e, param, "'%s.image_url.url' must be a non-empty string (a data: URL or a file "
                                     "under --image-root)", param);
            if (r->image_url)
                return api_error_set(e, 400, "invalid_request_error", "too_many_images", param,
                                     "'%s': a second image; the conversation template holds one image", param);
            if (!is_first_user)
                return api_error_set(e, 400, "invalid_request_error", "image_not_in_first_message", param,
                                     "'%s': the image must be in the first user message (LLaVA's template puts "
                                     "it in front of the first question)", param);
            r->image_url = xstrdup(url->valuestring);
            snprintf(r->image_param, sizeof r->image_param, "%.100s.image_url.url", param);
        } else {
            return bad(e, param, "'%s.type' is \"%s\"; supported: \"text\", \"image_url\"", param,
                       type->valuestring);
        }
    }
    return 0;
}

static int parse_messages(const cJSON *root, ChatRequest *r, ApiError *e) {
    const cJSON *msgs = field(root, "messages");
    if (!msgs) return bad(e, "messages", "'messages' is missing");
    if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0)
        return bad(e, "messages", "'messages' must be a non-empty array of {role, content}");
    const int n = cJSON_GetArraySize(msgs);
    r->turns = xcalloc((size_t)n, sizeof(char *));
    int i = 0;
    for (const cJSON *m = msgs->child; m; m = m->next, i++) {
        char param[64];
        snprintf(param, sizeof param, "messages[%d]", i);
        if (!cJSON_IsObject(m)) return bad(e, param, "'%s' must be an object with 'role' and 'content'", param);
        const cJSON *role = field(m, "role");
        snprintf(param, sizeof param, "messages[%d].role", i);
        if (!cJSON_IsString(role)) return bad(e, param, "'%s' must be a string", param);
        const char *rn = role->valuestring;
        int is_user = strcmp(rn, "user") == 0, is_asst = strcmp(rn, "assistant") == 0;
        if (strcmp(rn, "system") == 0 || strcmp(rn, "developer") == 0) {
            if (i != 0)
                return bad(e, param, "'%s' is \"%s\": a system message can only come first", param, rn);
            char *text = NULL;
            int rc = parse_content(field(m, "content"), i, 0, 0, r, &text, e);
            r->system = text ? text : xstrdup("");
            if (rc != 0) return -1;
            continue;
        }
        if (!is_user && !is_asst)
            return bad(e, param, "'%s' is \"%s\"; supported roles: \"system\" (first), \"user\", \"assistant\"",
                       param, rn);
        const int k = r->n_turns;  // the turn's place in the conversation
        if (is_user != (k % 2 == 0))
            return bad(e, param, "'%s' is \"%s\": messages must alternate user, assistant, user, ... starting "
                                 "with user (after an optional system message)", param, rn);
        char *text = NULL;
        int rc = parse_content(field(m, "content"), i, is_user, k == 0, r, &text, e);
        r->turns[r->n_turns++] = text ? text : xstrdup("");
        if (rc != 0) return -1;
        if (is_asst && !r->turns[k][0]) {
            snprintf(param, sizeof param, "messages[%d].content", i);
            return bad(e, param, "'%s' is empty: the template cannot hold an empty answer", param);
        }
    }
    if (r->n_turns == 0) return bad(e, "messages", "'messages' has no user message");
    if (r->n_turns % 2 == 0) {
        char param[64];
        snprintf(param, sizeof param, "messages[%d].role", n - 1);
        return bad(e, param, "the last message must be from the user");
    }
    return 0;
}

// Keys we know but do not implement: refused rather than silently ignored.
static int refuse_unsupported(const cJSON *root, ApiError *e) {
    const cJSON *v;
    if ((v = field(root, "n")) && !(cJSON_IsNumber(v) && v->valuedouble == 1))
        return bad(e, "n", "'n' must be 1: one choice per request");
    if ((v = field(root, "logprobs")) && !cJSON_IsFalse(v)) return bad(e, "logprobs", "'logprobs' is not supported");
    if ((v = field(root, "tools")) && !(cJSON_IsArray(v) && cJSON_GetArraySize(v) == 0))
        return bad(e, "tools", "'tools' is not supported");
    if ((v = field(root, "response_format"))) {
        const cJSON *t = cJSON_IsObject(v) ? field(v, "type") : NULL;
        if (!cJSON_IsString(t) || strcmp(t->valuestring, "text") != 0)
            return bad(e, "response_format", "'response_format' must be {\"type\": \"text\"}");
    }
    return 0;
}

int chat_request_parse(const char *body, size_t len, ChatRequest *r, ApiError *e) {
    memset(r, 0, sizeof *r);
    r->temperature = 1.0f;
    r->top_p = 1.0f;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (!root) {
        size_t at = end && end >= body ? (size_t)(end - body) : 0;
        return bad(e, "", "the body is not valid JSON (error near byte %zu)", at);
    }
    int rc = -1;
    if (!cJSON_IsObject(root)) {
        bad(e, "", "the body must be a JSON object, got %s", json_type_name(root));
        goto out;
    }
    const cJSON *v, *so;
    if ((v = field(root, "model")) && !cJSON_IsString(v)) {
        bad(e, "model", "'model' must be a string");
        goto out;
    }
    if (v) r->model = xstrdup(v->valuestring);
    int max_tokens = 0, seed = 0;
    if (refuse_unsupported(root, e) || parse_messages(root, r, e) ||
        get_number(root, "temperature", 0, 0, 2, &r->temperature, e) ||
        get_number(root, "top_p", 0, 1, 1, &r->top_p, e) || get_int(root, "top_k", 0, 1e9, &r->top_k, e) ||
        get_int(root, "max_tokens", 1, 1e9, &max_tokens, e) ||
        get_int(root, "max_completion_tokens", 1, 1e9, &max_tokens, e) ||
        get_int(root, "seed", -2147483648.0, 2147483647.0, &seed, e) || parse_stops(root, r, e) ||
        get_bool(root, "stream", &r->stream, e) || get_bool(root, "ignore_eos", &r->ignore_eos, e))
        goto out;
    r->max_tokens = max_tokens;
    if (field(root, "seed")) {
        r->has_seed = 1;
        r->seed = (uint64_t)(int64_t)seed;
    }
    if ((so = field(root, "stream_options"))) {
        if (!cJSON_IsObject(so)) {
            bad(e, "stream_options", "'stream_options' must be an object");
            goto out;
        }
        if (get_bool(so, "include_usage", &r->include_usage, e)) {
            snprintf(e->param, sizeof e->param, "stream_options.include_usage");
            goto out;
        }
    }
    rc = 0;
out:
    cJSON_Delete(root);
    if (rc != 0) chat_request_free(r);
    return rc;
}

void chat_request_free(ChatRequest *r) {
    for (int i = 0; i < r->n_turns; i++) free(r->turns[i]);
    free(r->turns);
    free(r->image_url);
    free(r->system);
    free(r->model);
    for (int i = 0; i < r->n_stops; i++) free(r->stops[i]);
    memset(r, 0, sizeof *r);
}
