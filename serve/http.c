// libmicrohttpd glue for `llava serve` (http.h).
#include "serve/http.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "serve/page.h"

#if MHD_VERSION < 0x00097002
typedef int MhdResult;
#else
typedef enum MHD_Result MhdResult;
#endif

// One request on a connection.
typedef struct {
    HttpServer *h;
    long id;
    double t0;
    char *body;
    size_t len;
    int too_big;
    int status;                // for the log line (-1: a stream, which logs itself)
    char method[16], url[96];
    char note[160];            // what the log line adds (tokens, finish)
} Request;

// A streamed answer: the content reader's state, owned by the response.
typedef struct {
    HttpServer *h;
    ServeJob *job;
    JobView view;
    int fd;
    int include_usage, sent_role, finished;
    size_t sent;  // bytes of the answer text already sent
    char id[48], *model;
    long created;
    char *out;  // events ready to send: out[off .. len)
    size_t off, len;
    Request log;  // copied from the request, logged when the stream ends
} Stream;

static void log_request(const Request *r, const char *method, const char *url) {
    fprintf(stderr, "[serve] req %ld %s %s %d %.1f ms%s%s\n", r->id, method ? method : "-", url ? url : "-",
            r->status, (now_seconds() - r->t0) * 1e3, r->note[0] ? " " : "", r->note);
}

static MhdResult send_buffer(struct MHD_Connection *c, Request *r, int status, const char *type, const char *data,
                             size_t len, int copy) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        len, (void *)data, copy ? MHD_RESPMEM_MUST_COPY : MHD_RESPMEM_MUST_FREE);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", type);
    if (status == 503) MHD_add_response_header(resp, "Retry-After", "1");
    if (status == 401) MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
    r->status = status;
    MhdResult rc = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return rc;
}

static MhdResult send_json(struct MHD_Connection *c, Request *r, int status, char *json) {
    return send_buffer(c, r, status, "application/json", json, strlen(json), 0);
}

static MhdResult send_error(struct MHD_Connection *c, Request *r, const ApiError *e) {
    snprintf(r->note, sizeof r->note, "error=%s%s%s", e->code ? e->code : e->type, e->param[0] ? " param=" : "",
             e->param);
    return send_json(c, r, e->status, api_error_json(e));
}

static MhdResult send_error_simple(struct MHD_Connection *c, Request *r, int status, const char *type,
                                   const char *code, const char *fmt, const char *arg) {
    ApiError e;
    api_error_set(&e, status, type, code, NULL, fmt, arg);
    return send_error(c, r, &e);
}

// 1 when the peer has closed its side (a client that went away).
static int peer_closed(int fd) {
    if (fd < 0) return 0;
    char byte;
    ssize_t n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static int connection_fd(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? (int)ci->connect_fd : -1;
}

// ---- auth -----------------------------------------------------------------------------

static int authorized(const HttpServer *h, struct MHD_Connection *c) {
    if (!h->api_key) return 1;
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!auth || strncmp(auth, "Bearer ", 7) != 0) return 0;
    const char *given = auth + 7;
    const size_t n = strlen(h->api_key);
    if (strlen(given) != n) return 0;
    unsigned diff = 0;  // constant time in the key's length
    for (size_t i = 0; i < n; i++) diff |= (unsigned char)given[i] ^ (unsigned char)h->api_key[i];
    return diff == 0;
}

// ---- streaming ------------------------------------------------------------------------

static void stream_push(Stream *st, char *event) {
    const size_t n = strlen(event);
    if (st->off == st->len) st->off = st->len = 0;
    st->out = xrealloc(st->out, st->len + n + 1);
    memcpy(st->out + st->len, event, n);
    st->len += n;
    free(event);
}

// Turns the job's progress into events: new answer text, and at the end the
// finish chunk, the usage chunk (when asked) and [DONE].
static void stream_advance(Stream *st) {
    const ServeModel *sm = &st->h->model;
    char *text = completion_text(sm, st->view.ids, st->view.n, st->view.stop_at);
    size_t ready = st->view.done ? strlen(text) : completion_stream_ready(text, st->job);
    if (ready > st->sent) {
        stream_push(st, completion_chunk_event(st->id, st->created, st->model, 0, text + st->sent, ready - st->sent,
                                               NULL, 0, 0, 0));
        st->sent = ready;
    }
    free(text);
    if (!st->view.done) return;
    st->finished = 1;
    if (st->view.finish == FINISH_ERROR || st->view.finish == FINISH_CANCELLED) {
        ApiError e;
        api_error_set(&e, 500, "server_error", NULL, NULL, "generation failed: %s", st->view.error);
        char *json = api_error_json(&e), *event = xmalloc(strlen(json) + 9);
        sprintf(event, "data: %s\n\n", json);
        free(json);
        stream_push(st, event);
        snprintf(st->log.note, sizeof st->log.note, "error=%.140s", st->view.error);
        return;
    }
    stream_push(st, completion_chunk_event(st->id, st->created, st->model, 0, NULL, 0,
                                           completion_finish_reason(st->view.finish), 0, 0, 0));
    if (st->include_usage)
        stream_push(st, completion_chunk_event(st->id, st->created, st->model, 0, NULL, 0, NULL, 1,
                                               st->job->n_prompt, st->view.n));
    stream_push(st, xstrdup("data: [DONE]\n\n"));
    snprintf(st->log.note, sizeof st->log.note, "stream prompt=%d completion=%d finish=%s", st->job->n_prompt,
             st->view.n, serve_finish_name(st->view.finish));
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    Stream *st = cls;
    while (st->off == st->len) {
        if (st->finished) return MHD_CONTENT_READER_END_OF_STREAM;
        if (!st->sent_role) {
            st->sent_role = 1;
            stream_push(st, completion_chunk_event(st->id, st->created, st->model, 1, "", 0, NULL, 0, 0, 0));
            break;
        }
        if (sched_wait(st->h->sched, st->job, st->view.n, 200, &st->view)) {
            stream_advance(st);
        } else if (peer_closed(st->fd)) {
            sched_cancel(st->h->sched, st->job);
            snprintf(st->log.note, sizeof st->log.note, "client gone after %d tokens", st->view.n);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
    size_t n = st->len - st->off < max ? st->len - st->off : max;
    memcpy(buf, st->out + st->off, n);
    st->off += n;
    return (ssize_t)n;
}

static void stream_free(void *cls) {
    Stream *st = cls;
    if (!st->finished)  // the client went away (MHD could not send)
        snprintf(st->log.note, sizeof st->log.note, "client gone after %d tokens", st->view.n);
    sched_cancel(st->h->sched, st->job);  // no-op when it finished
    sched_release(st->h->sched, st->job);
    st->log.status = 200;
    log_request(&st->log, "POST", "/v1/chat/completions");
    job_view_free(&st->view);
    free(st->out);
    free(st->model);
    free(st);
}

// ---- /v1/chat/completions ---------------------------------------------------------------

static MhdResult chat_completions(struct MHD_Connection *c, Request *r) {
    HttpServer *h = r->h;
    ChatRequest req;
    ApiError e;
    if (chat_request_parse(r->body ? r->body : "", r->len, &req, &e) != 0) return send_error(c, r, &e);
    pthread_mutex_lock(&h->mu);
    const uint64_t seed = h->seed_base + (uint64_t)r->id;
    pthread_mutex_unlock(&h->mu);
    ServeJob *job;
    if (completion_job_build(&h->model, &req, seed, &job, &e) != 0) {
        chat_request_free(&req);
        return send_error(c, r, &e);
    }
    const int stream = req.stream, include_usage = req.include_usage;
    chat_request_free(&req);
    int rc = sched_submit(h->sched, job);
    if (rc != SCHED_OK) {
        sched_release(h->sched, job);
        if (rc == SCHED_FULL)
            api_error_set(&e, 503, "server_error", "queue_full", NULL,
                          "the server is busy: every slot is generating and %d more requests wait; retry later",
                          h->sched->max_queue);
        else
            api_error_set(&e, 503, "server_error", "shutting_down", NULL, "the server is shutting down");
        return send_error(c, r, &e);
    }
    char id[48];
    snprintf(id, sizeof id, "chatcmpl-%08lx%06lx", (long)time(NULL), r->id);
    const long created = (long)time(NULL);
    const int fd = connection_fd(c);
    if (stream) {
        Stream *st = xcalloc(1, sizeof *st);
        st->h = h;
        st->job = job;
        st->fd = fd;
        st->include_usage = include_usage;
        snprintf(st->id, sizeof st->id, "%s", id);
        st->model = xstrdup(h->model.model_name);
        st->created = created;
        st->log = *r;
        st->log.body = NULL;
        struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, st,
                                                                      stream_free);
        if (!resp) {
            stream_free(st);
            return MHD_NO;
        }
        MHD_add_response_header(resp, "Content-Type", "text/event-stream");
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
        r->status = -1;  // the stream logs itself when it ends
        MhdResult q = MHD_queue_response(c, 200, resp);
        MHD_destroy_response(resp);
        return q;
    }
    // Not streamed: wait for the whole answer, watching for a client that leaves.
    JobView v = {0};
    for (;;) {
        sched_wait(h->sched, job, v.n, 200, &v);
        if (v.done) break;
        if (peer_closed(fd)) {
            sched_cancel(h->sched, job);
            while (!v.done) sched_wait(h->sched, job, v.n, 200, &v);
            break;
        }
    }
    MhdResult q;
    if (v.finish == FINISH_CANCELLED) {
        snprintf(r->note, sizeof r->note, "client gone after %d tokens", v.n);
        r->status = 499;
        q = MHD_NO;
    } else if (v.finish == FINISH_ERROR) {
        api_error_set(&e, 500, "server_error", NULL, NULL, "generation failed: %s", v.error);
        q = send_error(c, r, &e);
    } else {
        char *content = completion_text(&h->model, v.ids, v.n, v.stop_at);
        snprintf(r->note, sizeof r->note, "prompt=%d completion=%d finish=%s", job->n_prompt, v.n,
                 serve_finish_name(v.finish));
        q = send_json(c, r, 200, completion_json(id, created, h->model.model_name, content, v.finish, job->n_prompt,
                                                 v.n));
        free(content);
    }
    job_view_free(&v);
    sched_release(h->sched, job);
    return q;
}

// ---- other routes ---------------------------------------------------------------------

static MhdResult health(struct MHD_Connection *c, Request *r) {
    int queued, running;
    SchedStats st;
    sched_counts(r->h->sched, &queued, &running, &st);
    char *json = xmalloc(256);
    snprintf(json, 256, "{\"status\":\"ok\",\"queued\":%d,\"running\":%d,\"largest_batch\":%ld,\"steps\":%ld,"
             "\"tokens\":%ld}", queued, running, st.max_batch_seen, st.steps, st.tokens);
    return send_json(c, r, 200, json);
}

static cJSON *model_object(const HttpServer *h) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "id", h->model.model_name);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", 0);
    cJSON_AddStringToObject(m, "owned_by", "llava.c");
    return m;
}

// GET /v1/models, or /v1/models/ID when id is not NULL.
static MhdResult models(struct MHD_Connection *c, Request *r, const char *id) {
    cJSON *root;
    if (id) {
        if (strcmp(id, r->h->model.model_name) != 0)
            return send_error_simple(c, r, 404, "invalid_request_error", "model_not_found",
                                     "no model '%s' here (GET /v1/models lists the one served)", id);
        root = model_object(r->h);
    } else {
        root = cJSON_CreateObject();
        cJSON_AddStringToObject(root, "object", "list");
        cJSON_AddItemToArray(cJSON_AddArrayToObject(root, "data"), model_object(r->h));
    }
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    CHECK(json, "out of memory");
    return send_json(c, r, 200, json);
}

static MhdResult route(struct MHD_Connection *c, Request *r, const char *url, const char *method) {
    const int get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0, post = strcmp(method, "POST") == 0;
    if (strcmp(url, "/") == 0 || strcmp(url, "/index.html") == 0) {
        if (!get) return send_error_simple(c, r, 405, "invalid_request_error", NULL, "%s / : use GET", method);
        return send_buffer(c, r, 200, "text/html; charset=utf-8", (const char *)serve_page_html, serve_page_html_size,
                           1);
    }
    if (strcmp(url, "/health") == 0) return health(c, r);
    if (strncmp(url, "/v1/", 4) != 0)
        return send_error_simple(c, r, 404, "invalid_request_error", "not_found", "no such route: %s", url);
    if (!authorized(r->h, c))
        return send_error_simple(c, r, 401, "invalid_request_error", "invalid_api_key", "%s",
                                 "missing or wrong API key: send 'Authorization: Bearer KEY' (the server's "
                                 "--api-key-env variable)");
    if (strcmp(url, "/v1/models") == 0 || strncmp(url, "/v1/models/", 11) == 0) {
        if (!get) return send_error_simple(c, r, 405, "invalid_request_error", NULL, "%s /v1/models: use GET", method);
        return models(c, r, url[10] == '/' ? url + 11 : NULL);
    }
    if (strcmp(url, "/v1/chat/completions") == 0) {
        if (!post)
            return send_error_simple(c, r, 405, "invalid_request_error", NULL, "%s /v1/chat/completions: use POST",
                                     method);
        if (r->too_big) {
            ApiError e;
            api_error_set(&e, 413, "invalid_request_error", "request_too_large", NULL,
                          "the request body is over the server's limit of %zu bytes (--max-body-mb)", r->h->max_body);
            return send_error(c, r, &e);
        }
        return chat_completions(c, r);
    }
    return send_error_simple(c, r, 404, "invalid_request_error", "not_found", "no such route: %s", url);
}

static MhdResult on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                            const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    HttpServer *h = cls;
    Request *r = *con_cls;
    if (!r) {
        r = xcalloc(1, sizeof *r);
        r->h = h;
        r->t0 = now_seconds();
        pthread_mutex_lock(&h->mu);
        r->id = ++h->next_id;
        h->active++;
        pthread_mutex_unlock(&h->mu);
        snprintf(r->method, sizeof r->method, "%s", method);
        snprintf(r->url, sizeof r->url, "%s", url);
        *con_cls = r;
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        // Refused before its body is read: the response goes out at once and
        // MHD closes the connection instead of reading the rest.
        if (cl && strtoull(cl, NULL, 10) > h->max_body) {
            r->too_big = 1;
            return route(c, r, url, method);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        if (!r->too_big && r->len + *upload_size > h->max_body) r->too_big = 1;
        if (!r->too_big) {
            r->body = xrealloc(r->body, r->len + *upload_size + 1);
            memcpy(r->body + r->len, upload, *upload_size);
            r->len += *upload_size;
            r->body[r->len] = '\0';
        }
        *upload_size = 0;
        return MHD_YES;
    }
    return route(c, r, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode tc) {
    (void)c;
    (void)tc;
    HttpServer *h = cls;
    Request *r = *con_cls;
    if (!r) return;
    if (r->status >= 0) log_request(r, r->method, r->url);
    free(r->body);
    free(r);
    *con_cls = NULL;
    pthread_mutex_lock(&h->mu);
    if (--h->active == 0) pthread_cond_broadcast(&h->idle);
    pthread_mutex_unlock(&h->mu);
}

int http_server_start(HttpServer *h, const char *host, int port, Error *err) {
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1)
        return err_set(err, "--host %s is not an IPv4 address (e.g. 127.0.0.1, or 0.0.0.0 for every interface)",
                       host);
    h->host = host;
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->idle, NULL);
    h->seed_base = (uint64_t)time(NULL) * 1000003u;
    h->daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ITC |
                                     MHD_USE_ERROR_LOG,
                                 (uint16_t)port, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR, &addr,
                                 MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_CONNECTION_TIMEOUT,
                                 (unsigned)120, MHD_OPTION_CONNECTION_LIMIT, (unsigned)256, MHD_OPTION_END);
    if (!h->daemon)
        return err_set(err, "cannot listen on %s:%d (%s): is the port in use? pick another with --port", host, port,
                       strerror(errno));
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    h->port = di && di->port ? di->port : port;
    return 0;
}

int http_server_port(const HttpServer *h) { return h->port; }

void http_server_quiesce(HttpServer *h) {
    MHD_socket fd = MHD_quiesce_daemon(h->daemon);
    if (fd != MHD_INVALID_SOCKET) close(fd);
}

int http_server_wait_idle(HttpServer *h, double timeout_s) {
    const double until = now_seconds() + timeout_s;
    pthread_mutex_lock(&h->mu);
    while (h->active > 0 && now_seconds() < until) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&h->idle, &h->mu, &ts);
    }
    int left = h->active;
    pthread_mutex_unlock(&h->mu);
    return left;
}

void http_server_stop(HttpServer *h) {
    if (h->daemon) MHD_stop_daemon(h->daemon);
    h->daemon = NULL;
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->idle);
}
