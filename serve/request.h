// Requests of `llava serve`: the body of POST /v1/chat/completions (OpenAI's
// chat-completions shape) -> a ChatRequest, with every bad field reported as
// an OpenAI error object naming it. Pure parsing: no model, no files, no
// threads (tests/fuzz/fuzz_request.c runs it on arbitrary bytes).
//
// Accepted (docs/serve.md is the reference):
//   messages: [{role: "user"|"assistant", content: string | [parts]}], user
//     first and last, alternating, after an optional first {role: "system"}
//     (or "developer") that replaces the template's system prompt; parts {"type":"text","text":...} and
//     {"type":"image_url","image_url":{"url":...}} (at most one image, in the
//     first user message: LLaVA's template places it there)
//   model (any string), temperature [0, 2] (default 1), top_p (0, 1],
//   top_k >= 0 (extension), max_tokens / max_completion_tokens >= 1,
//   stop (string or up to 4 strings), seed (integer), stream (bool),
//   stream_options.include_usage (bool), ignore_eos (bool, extension), n = 1.
// Refused: tool/function roles, system messages after the first, n > 1, logprobs, tools,
// response_format other than text. Other keys are ignored.
#ifndef LLAVA_SERVE_REQUEST_H
#define LLAVA_SERVE_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "serve/scheduler.h"

// An OpenAI error: {"error": {"message", "type", "param", "code"}}.
typedef struct {
    int status;        // HTTP status
    const char *type;  // "invalid_request_error", "server_error", ...
    const char *code;  // or NULL
    char param[128];   // the field ("messages[1].content"), "" for none
    char message[768];
} ApiError;

int api_error_set(ApiError *e, int status, const char *type, const char *code, const char *param,
                  const char *fmt, ...) __attribute__((format(printf, 6, 7)));
// The error object as JSON text (caller frees).
char *api_error_json(const ApiError *e);

typedef struct {
    char **turns;  // [n_turns] user, assistant, ..., user texts (owned)
    int n_turns;
    char *system;      // the system message's text, or NULL: the template's (owned)
    char *image_url;   // the one image's url, or NULL (owned)
    char image_param[128];  // where it was ("messages[0].content[1].image_url.url")
    char *model;       // as given, or NULL
    float temperature, top_p;
    int top_k;
    int max_tokens;  // 0: not given
    char *stops[SERVE_MAX_STOPS];
    int n_stops;
    int has_seed;
    uint64_t seed;
    int stream, include_usage, ignore_eos;
} ChatRequest;

// 0, or -1 with e filled (status 400).
int chat_request_parse(const char *body, size_t len, ChatRequest *r, ApiError *e);
void chat_request_free(ChatRequest *r);

#endif
