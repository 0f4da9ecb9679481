// The HTTP side of `llava serve` (libmicrohttpd, one thread per connection so
// a request may block while its answer is generated): routes, body limits,
// bearer-token auth, JSON and server-sent-event responses, one log line per
// request.
//   GET  /                     the chat page (serve/page.html, embedded)
//   GET  /health               {"status": "ok", "queued", "running", "largest_batch", "steps", "tokens"}
//   GET  /v1/models[/ID]       the served model
//   POST /v1/chat/completions  OpenAI's chat completions (stream or not)
#ifndef LLAVA_SERVE_HTTP_H
#define LLAVA_SERVE_HTTP_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "serve/completion.h"
#include "serve/scheduler.h"

typedef struct {
    ServeModel model;
    Scheduler *sched;
    const char *api_key;  // NULL: no auth
    size_t max_body;      // bytes
    const char *host;
    int port;
    // mutable, under mu
    pthread_mutex_t mu;
    pthread_cond_t idle;  // signalled when `active` drops to 0
    long next_id;
    int active;  // requests being answered (drain waits for 0)
    uint64_t seed_base;
    struct MHD_Daemon *daemon;
} HttpServer;

// Binds host:port (port 0: any free port; http_server_port tells which) and
// starts answering. The caller fills model, sched, api_key, max_body.
int http_server_start(HttpServer *h, const char *host, int port, Error *err);
int http_server_port(const HttpServer *h);
// Stops accepting connections (the ones open keep going).
void http_server_quiesce(HttpServer *h);
// Waits up to timeout_s for the requests being answered to finish; returns
// how many are still going.
int http_server_wait_idle(HttpServer *h, double timeout_s);
void http_server_stop(HttpServer *h);

#endif
