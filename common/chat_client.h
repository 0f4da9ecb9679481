// One client for OpenAI-compatible chat completions (POST {endpoint}/chat/
// completions), used by `llava datagen` and `llava judge`: a hosted model with
// the user's key, a local server, or our own `llava serve`.
//
// A batch of requests runs on `concurrency` worker threads (one libcurl easy
// handle each). Each attempt has a whole-transfer timeout. Timeouts, refused
// or reset connections, truncated bodies, HTTP 408/429/5xx and 200 responses
// whose body is not a chat completion are retried with exponential backoff
// and jitter, waiting at least what a Retry-After header asks for. A 401
// or 403 stops the batch (the key is wrong; every further request would fail
// the same way); other 4xx fail the one request. The API key is only ever put
// in the Authorization header: it is never printed, logged or stored.
#ifndef LLAVA_CHAT_CLIENT_H
#define LLAVA_CHAT_CLIENT_H

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>

#include "common/util.h"

typedef struct {
    const char *endpoint;     // base URL (".../v1") or the full ".../chat/completions" URL
    const char *model;        // "model" field of each request
    const char *api_key;      // NULL: no Authorization header (local servers)
    const char *api_key_env;  // the variable the key came from, for messages only
    int concurrency;          // requests in flight at once (>= 1)
    double timeout_s;         // per attempt, connect + transfer
    int max_retries;          // retries after the first attempt
    double backoff_s;         // first backoff; doubles per retry
    double backoff_max_s;     // cap of the exponential part
    double retry_after_max_s; // a Retry-After beyond this is cut to it
    double temperature;       // < 0: not sent (the server's default)
    int max_tokens;           // <= 0: not sent
    uint64_t seed;            // jitter draws (reproducible schedules in tests)
    int fold_system;          // send a system message as the head of the first user message
                              // (servers without a system role, e.g. `llava serve`)
    double price_prompt_1k;   // cost per 1K prompt tokens; < 0: no cost line
    double price_completion_1k;
} ChatConfig;

typedef struct {
    const char *role;  // "system", "user", "assistant"
    const char *content;
} ChatMessage;

typedef struct {
    // in
    const ChatMessage *messages;
    int n_messages;
    void *tag;  // the caller's: which item this answers
    // out (filled before the done callback runs)
    int ok;
    char *text;         // the first choice's message content (malloc'd) when ok
    int http_status;    // of the last attempt; 0 when no response came
    int attempts;
    char error[512];    // why it failed (the last attempt's reason) when !ok
    long prompt_tokens; // from "usage", 0 when absent
    long completion_tokens;
} ChatCall;

typedef struct {
    long requests, succeeded, failed, retries;
    long prompt_tokens, completion_tokens;
} ChatUsage;

typedef struct {
    ChatConfig cfg;
    char *url;        // resolved chat/completions URL
    char *auth;       // "Authorization: Bearer ..." or NULL
    pthread_mutex_t lock;  // usage, stop, the done callback, the job cursor
    ChatUsage usage;
    int stop;             // set after a 401/403: nothing more is sent
    char stop_reason[400];
} ChatClient;

// Checks the config (URL scheme, positive limits) and resolves the URL.
int chat_client_init(ChatClient *c, const ChatConfig *cfg, Error *err);
void chat_client_free(ChatClient *c);

// Called once per request when it finished (ok or not), one call at a time
// (under the client's lock), in completion order.
typedef void (*ChatDoneFn)(ChatCall *req, void *ctx);

// Runs the requests with the concurrency limit; returns how many failed.
int chat_client_run(ChatClient *c, ChatCall *reqs, int n, ChatDoneFn done, void *ctx);
// Convenience for one request on the calling thread.
int chat_client_send(ChatClient *c, ChatCall *req);
void chat_call_free(ChatCall *req);

// "usage: 12 requests (12 ok, 0 failed, 3 retries), 1234 prompt + 567
// completion = 1801 tokens[, cost $0.0541 at ...]"
void chat_client_print_usage(const ChatClient *c, FILE *out);

// The body of a request (exposed for tests): {"model", "messages",
// "temperature"?, "max_tokens"?} as compact JSON (malloc'd). With
// fold_system, a leading system message becomes "SYSTEM\n\nUSER" of the first
// user message.
char *chat_call_body(const ChatConfig *cfg, const ChatMessage *msgs, int n);

#endif
