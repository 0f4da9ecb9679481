// OpenAI-compatible chat completions over libcurl (see chat_client.h for the
// retry policy). Workers share nothing but the client's lock.
#include "common/chat_client.h"

#include <cjson/cJSON.h>
#ifdef LLAVA_HAVE_CURL
#include <curl/curl.h>
#endif
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/rng.h"

// ---- request body and response parsing ------------------------------------------------

char *chat_call_body(const ChatConfig *cfg, const ChatMessage *msgs, int n) {
    cJSON *root = cJSON_CreateObject();
    CHECK(root, "out of memory");
    cJSON_AddStringToObject(root, "model", cfg->model ? cfg->model : "");
    cJSON *arr = cJSON_AddArrayToObject(root, "messages");
    CHECK(arr, "out of memory");
    const char *system = NULL;
    int first = 0;
    if (cfg->fold_system && n > 1 && strcmp(msgs[0].role, "system") == 0 && strcmp(msgs[1].role, "user") == 0) {
        system = msgs[0].content;
        first = 1;
    }
    for (int i = first; i < n; i++) {
        cJSON *m = cJSON_CreateObject();
        CHECK(m, "out of memory");
        cJSON_AddStringToObject(m, "role", msgs[i].role);
        if (system && i == first) {
            size_t l = strlen(system) + strlen(msgs[i].content) + 3;
            char *joined = xmalloc(l);
            snprintf(joined, l, "%s\n\n%s", system, msgs[i].content);
            cJSON_AddStringToObject(m, "content", joined);
            free(joined);
        } else {
            cJSON_AddStringToObject(m, "content", msgs[i].content);
        }
        cJSON_AddItemToArray(arr, m);
    }
    if (cfg->temperature >= 0) cJSON_AddNumberToObject(root, "temperature", cfg->temperature);
    if (cfg->max_tokens > 0) cJSON_AddNumberToObject(root, "max_tokens", cfg->max_tokens);
    char *s = cJSON_PrintUnformatted(root);
    CHECK(s, "out of memory");
    cJSON_Delete(root);
    return s;
}

#ifdef LLAVA_HAVE_CURL
// A 200 body -> the first choice's content and the usage. 0 ok, -1 with a
// reason (the body is not a chat completion: retried as a transient fault).
static int parse_completion(const char *body, size_t len, ChatCall *req) {
    cJSON *root = cJSON_ParseWithLength(body, len);
    if (!root) {
        snprintf(req->error, sizeof req->error, "response body is not JSON (%zu bytes)", len);
        return -1;
    }
    int rc = -1;
    const cJSON *choices = cJSON_GetObjectItemCaseSensitive(root, "choices");
    const cJSON *first = cJSON_IsArray(choices) ? cJSON_GetArrayItem(choices, 0) : NULL;
    const cJSON *msg = first ? cJSON_GetObjectItemCaseSensitive(first, "message") : NULL;
    const cJSON *content = msg ? cJSON_GetObjectItemCaseSensitive(msg, "content") : NULL;
    if (!cJSON_IsString(content)) {
        snprintf(req->error, sizeof req->error, "response has no choices[0].message.content string");
        goto done;
    }
    free(req->text);
    req->text = xstrdup(content->valuestring);
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(root, "usage");
    const cJSON *pt = usage ? cJSON_GetObjectItemCaseSensitive(usage, "prompt_tokens") : NULL;
    const cJSON *ct = usage ? cJSON_GetObjectItemCaseSensitive(usage, "completion_tokens") : NULL;
    req->prompt_tokens = cJSON_IsNumber(pt) && pt->valuedouble >= 0 ? (long)pt->valuedouble : 0;
    req->completion_tokens = cJSON_IsNumber(ct) && ct->valuedouble >= 0 ? (long)ct->valuedouble : 0;
    rc = 0;
done:
    cJSON_Delete(root);
    return rc;
}

// The server's own message for an error status ({"error": {"message"}} as the
// API has it), shortened; the body otherwise.
static void describe_http_error(const char *body, size_t len, int status, char *out, size_t cap) {
    cJSON *root = cJSON_ParseWithLength(body, len);
    const cJSON *e = root ? cJSON_GetObjectItemCaseSensitive(root, "error") : NULL;
    const cJSON *m = cJSON_IsObject(e) ? cJSON_GetObjectItemCaseSensitive(e, "message") : e;
    if (cJSON_IsString(m))
        snprintf(out, cap, "HTTP %d: %.300s", status, m->valuestring);
    else
        snprintf(out, cap, "HTTP %d: %.*s", status, (int)(len < 300 ? len : 300), len ? body : "(empty body)");
    cJSON_Delete(root);
}

// ---- one attempt ----------------------------------------------------------------------

typedef struct {
    char *data;
    size_t len, cap;
} Buf;

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata) {
    Buf *b = userdata;
    size_t n = size * nmemb;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1) cap *= 2;
        b->data = xrealloc(b->data, cap);
        b->cap = cap;
    }
    memcpy(b->data + b->len, ptr, n);
    b->len += n;
    b->data[b->len] = 0;
    return n;
}

// Retry-After: delay-seconds or an HTTP-date; -1 when absent.
static size_t on_header(char *ptr, size_t size, size_t nmemb, void *userdata) {
    double *retry_after = userdata;
    size_t n = size * nmemb;
    static const char key[] = "retry-after:";
    if (n > sizeof key - 1 && strncasecmp(ptr, key, sizeof key - 1) == 0) {
        char v[128];
        size_t vl = n - (sizeof key - 1);
        if (vl >= sizeof v) vl = sizeof v - 1;
        memcpy(v, ptr + sizeof key - 1, vl);
        v[vl] = 0;
        char *end;
        double secs = strtod(v, &end);
        while (*end == ' ' || *end == '\r' || *end == '\n') end++;
        if (end != v && *end == 0 && secs >= 0) {
            *retry_after = secs;
        } else {
            time_t when = curl_getdate(v, NULL);
            if (when != -1) *retry_after = fmax(0.0, difftime(when, time(NULL)));
        }
    }
    return n;
}

// A server may echo the key in its error message: never let it reach a log.
static void scrub_key(const ChatClient *c, char *msg) {
    if (!c->auth) return;
    const char *key = c->auth + strlen("Authorization: Bearer ");
    size_t kl = strlen(key);
    if (kl < 4) return;
    for (char *at; (at = strstr(msg, key)) != NULL;) {
        memset(at, '*', kl);
    }
}

typedef enum { ATTEMPT_OK, ATTEMPT_RETRY, ATTEMPT_FAIL, ATTEMPT_STOP } AttemptResult;

static AttemptResult attempt_once(ChatClient *c, CURL *h, const char *body, ChatCall *req,
                                  double *retry_after) {
    Buf resp = {0};
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    CHECK(headers, "out of memory");
    // No "Expect: 100-continue" round trip (libcurl's default for large bodies):
    // servers that do not answer it cost a second per request.
    headers = curl_slist_append(headers, "Expect:");
    CHECK(headers, "out of memory");
    if (c->auth) headers = curl_slist_append(headers, c->auth);
    CHECK(headers, "out of memory");
    *retry_after = -1;
    curl_easy_reset(h);
    long timeout_ms = (long)(c->cfg.timeout_s * 1000.0);
    CURLcode set = CURLE_OK;
    // Every option is checked: a libcurl without HTTP support must say so.
    if ((set = curl_easy_setopt(h, CURLOPT_URL, c->url)) != CURLE_OK ||
        (set = curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers)) != CURLE_OK ||
        (set = curl_easy_setopt(h, CURLOPT_POSTFIELDS, body)) != CURLE_OK ||
        (set = curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms)) != CURLE_OK ||
        (set = curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L)) != CURLE_OK ||
        (set = curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body)) != CURLE_OK ||
        (set = curl_easy_setopt(h, CURLOPT_WRITEDATA, &resp)) != CURLE_OK ||
        (set = curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header)) != CURLE_OK ||
        (set = curl_easy_setopt(h, CURLOPT_HEADERDATA, retry_after)) != CURLE_OK ||
        (set = curl_easy_setopt(h, CURLOPT_USERAGENT, "llava.c")) != CURLE_OK) {
        snprintf(req->error, sizeof req->error, "libcurl option refused: %s", curl_easy_strerror(set));
        curl_slist_free_all(headers);
        return ATTEMPT_FAIL;
    }
    CURLcode rc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(headers);
    req->http_status = (int)status;
    AttemptResult out;
    if (rc != CURLE_OK) {
        snprintf(req->error, sizeof req->error, "%s (%s)", curl_easy_strerror(rc), c->url);
        // Down, refused, reset, timed out, a body shorter than its
        // Content-Length: transient. A bad URL or a certificate that does not
        // verify will not get better by waiting.
        out = rc == CURLE_UNSUPPORTED_PROTOCOL || rc == CURLE_URL_MALFORMAT || rc == CURLE_PEER_FAILED_VERIFICATION ||
                      rc == CURLE_SSL_CACERT_BADFILE || rc == CURLE_SSL_CERTPROBLEM || rc == CURLE_NOT_BUILT_IN
                  ? ATTEMPT_FAIL
                  : ATTEMPT_RETRY;
    } else if (status == 200) {
        out = parse_completion(resp.data ? resp.data : "", resp.len, req) == 0 ? ATTEMPT_OK : ATTEMPT_RETRY;
    } else {
        describe_http_error(resp.data ? resp.data : "", resp.len, (int)status, req->error, sizeof req->error);
        scrub_key(c, req->error);
        if (status == 401 || status == 403) {
            size_t l = strlen(req->error);
            snprintf(req->error + l, sizeof req->error - l, " (check the key in $%s)",
                     c->cfg.api_key_env ? c->cfg.api_key_env : "--api-key-env");
            out = ATTEMPT_STOP;
        } else if (status == 408 || status == 429 || status >= 500) {
            out = ATTEMPT_RETRY;
        } else {
            if (status == 400 && !c->cfg.fold_system && strstr(req->error, "system")) {
                size_t l = strlen(req->error);
                snprintf(req->error + l, sizeof req->error - l,
                         " (for a server without a system role, --no-system-role sends it in the first user message)");
            }
            out = ATTEMPT_FAIL;
        }
    }
    free(resp.data);
    return out;
}

static void sleep_seconds(double s) {
    if (s <= 0) return;
    struct timespec ts = {(time_t)s, (long)((s - floor(s)) * 1e9)};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

// Equal jitter: uniform in [cap/2, cap) with cap = min(max, base * 2^retry),
// so concurrent workers spread out but none retries at once; never less than
// the server's Retry-After.
static double backoff_delay(const ChatConfig *cfg, int retry, double retry_after, Rng *rng) {
    double cap = cfg->backoff_s * pow(2.0, retry);
    if (cap > cfg->backoff_max_s) cap = cfg->backoff_max_s;
    double d = cap * (0.5 + 0.5 * rng_uniform(rng));
    if (retry_after >= 0) {
        double ra = retry_after > cfg->retry_after_max_s ? cfg->retry_after_max_s : retry_after;
        if (d < ra) d = ra;
    }
    return d;
}

static void request_execute(ChatClient *c, CURL *h, ChatCall *req, Rng *rng) {
    char *body = chat_call_body(&c->cfg, req->messages, req->n_messages);
    req->ok = 0;
    req->attempts = 0;
    req->error[0] = 0;
    for (int retry = 0;; retry++) {
        pthread_mutex_lock(&c->lock);
        int stop = c->stop;
        if (stop) snprintf(req->error, sizeof req->error, "not sent: %s", c->stop_reason);
        pthread_mutex_unlock(&c->lock);
        if (stop) break;
        req->attempts++;
        double retry_after;
        AttemptResult r = attempt_once(c, h, body, req, &retry_after);
        if (r == ATTEMPT_OK) {
            req->ok = 1;
            break;
        }
        if (r == ATTEMPT_STOP) {
            pthread_mutex_lock(&c->lock);
            if (!c->stop) snprintf(c->stop_reason, sizeof c->stop_reason, "%.399s", req->error);
            c->stop = 1;
            pthread_mutex_unlock(&c->lock);
            break;
        }
        if (r == ATTEMPT_FAIL || retry >= c->cfg.max_retries) break;
        pthread_mutex_lock(&c->lock);
        c->usage.retries++;
        pthread_mutex_unlock(&c->lock);
        sleep_seconds(backoff_delay(&c->cfg, retry, retry_after, rng));
    }
    if (!req->ok && req->attempts > 1) {
        size_t l = strlen(req->error);
        snprintf(req->error + l, sizeof req->error - l, " (after %d attempts)", req->attempts);
    }
    free(body);
}

// ---- the pool -----------------------------------------------------------------------

typedef struct {
    ChatClient *c;
    ChatCall *reqs;
    int n, next, failed;
    ChatDoneFn done;
    void *ctx;
    int worker_count;
} Pool;

typedef struct {
    Pool *pool;
    int index;
} Worker;

static void finish_request(ChatClient *c, ChatCall *req) {
    // Caller holds c->lock.
    c->usage.requests++;
    if (req->ok) {
        c->usage.succeeded++;
        c->usage.prompt_tokens += req->prompt_tokens;
        c->usage.completion_tokens += req->completion_tokens;
    } else {
        c->usage.failed++;
    }
}

static void *worker_main(void *arg) {
    Worker *w = arg;
    Pool *p = w->pool;
    ChatClient *c = p->c;
    CURL *h = curl_easy_init();
    Rng rng;
    rng_seed(&rng, c->cfg.seed * 1000003u + (uint64_t)w->index);
    for (;;) {
        pthread_mutex_lock(&c->lock);
        int i = p->next < p->n ? p->next++ : -1;
        pthread_mutex_unlock(&c->lock);
        if (i < 0) break;
        ChatCall *req = &p->reqs[i];
        if (!h) {
            req->ok = 0;
            snprintf(req->error, sizeof req->error, "curl_easy_init failed (out of memory?)");
        } else {
            request_execute(c, h, req, &rng);
        }
        pthread_mutex_lock(&c->lock);
        finish_request(c, req);
        if (!req->ok) p->failed++;
        if (p->done) p->done(req, p->ctx);
        pthread_mutex_unlock(&c->lock);
    }
    if (h) curl_easy_cleanup(h);
    return NULL;
}

int chat_client_run(ChatClient *c, ChatCall *reqs, int n, ChatDoneFn done, void *ctx) {
    if (n <= 0) return 0;
    Pool p = {.c = c, .reqs = reqs, .n = n, .done = done, .ctx = ctx};
    int nw = c->cfg.concurrency < n ? c->cfg.concurrency : n;
    pthread_t *th = xcalloc((size_t)nw, sizeof *th);
    Worker *ws = xcalloc((size_t)nw, sizeof *ws);
    int started = 0;
    for (int i = 0; i < nw; i++) {
        ws[i] = (Worker){&p, i};
        if (pthread_create(&th[i], NULL, worker_main, &ws[i]) != 0) break;
        started++;
    }
    if (started == 0) worker_main(&ws[0]);  // no thread could start: run here
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    free(th);
    free(ws);
    return p.failed;
}

int chat_client_send(ChatClient *c, ChatCall *req) { return chat_client_run(c, req, 1, NULL, NULL) == 0 ? 0 : -1; }
#else  // built without libcurl (LLAVA_GPU_BUNDLE): chat_client_init refuses, so nothing gets here
#define NO_CURL_MSG "this llava was built without libcurl (-DLLAVA_GPU_BUNDLE=ON, the GPU bundle's build)"

int chat_client_run(ChatClient *c, ChatCall *reqs, int n, ChatDoneFn done, void *ctx) {
    for (int i = 0; i < n; i++) {
        reqs[i].ok = 0;
        snprintf(reqs[i].error, sizeof reqs[i].error, NO_CURL_MSG);
        c->usage.requests++;
        c->usage.failed++;
        if (done) done(&reqs[i], ctx);
    }
    return n > 0 ? n : 0;
}

int chat_client_send(ChatClient *c, ChatCall *req) { return chat_client_run(c, req, 1, NULL, NULL) == 0 ? 0 : -1; }
#endif

void chat_call_free(ChatCall *req) {
    free(req->text);
    req->text = NULL;
}

// ---- setup and reporting ---------------------------------------------------------------

int chat_client_init(ChatClient *c, const ChatConfig *cfg, Error *err) {
    memset(c, 0, sizeof *c);
    if (!cfg->endpoint || (strncmp(cfg->endpoint, "http://", 7) != 0 && strncmp(cfg->endpoint, "https://", 8) != 0))
        return err_set(err, "--endpoint must be an http:// or https:// URL (got '%s')",
                       cfg->endpoint ? cfg->endpoint : "");
    if (!cfg->model || !cfg->model[0]) return err_set(err, "--model (the endpoint's model name) is required");
    if (cfg->concurrency < 1 || cfg->concurrency > 256) return err_set(err, "--concurrency must be in 1..256");
    if (!(cfg->timeout_s > 0)) return err_set(err, "--timeout must be > 0 seconds");
    if (cfg->max_retries < 0) return err_set(err, "--retries must be >= 0");
    c->cfg = *cfg;
    if (!(c->cfg.backoff_s > 0)) c->cfg.backoff_s = 1.0;
    if (!(c->cfg.backoff_max_s > 0)) c->cfg.backoff_max_s = 60.0;
    if (!(c->cfg.retry_after_max_s > 0)) c->cfg.retry_after_max_s = 300.0;
#ifdef LLAVA_HAVE_CURL
    CURLcode g = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (g != CURLE_OK) return err_set(err, "curl_global_init: %s", curl_easy_strerror(g));
#else
    return err_set(err, NO_CURL_MSG "; llava datagen and judge need a build with libcurl (scripts/install_deps.sh)");
#endif
    size_t el = strlen(cfg->endpoint);
    while (el > 0 && cfg->endpoint[el - 1] == '/') el--;
    static const char suffix[] = "/chat/completions";
    size_t sl = sizeof suffix - 1;
    c->url = xmalloc(el + sl + 1);
    memcpy(c->url, cfg->endpoint, el);
    if (el >= sl && memcmp(cfg->endpoint + el - sl, suffix, sl) == 0)
        c->url[el] = 0;
    else
        memcpy(c->url + el, suffix, sl + 1);
    if (cfg->api_key && cfg->api_key[0]) {
        size_t kl = strlen(cfg->api_key);
        if (strpbrk(cfg->api_key, "\r\n")) {
            free(c->url);
            return err_set(err, "the key in $%s contains a line break", cfg->api_key_env ? cfg->api_key_env : "?");
        }
        c->auth = xmalloc(kl + 32);
        snprintf(c->auth, kl + 32, "Authorization: Bearer %s", cfg->api_key);
    }
    c->cfg.api_key = NULL;  // only the header keeps it
    CHECK(pthread_mutex_init(&c->lock, NULL) == 0, "pthread_mutex_init failed");
    return 0;
}

void chat_client_free(ChatClient *c) {
    if (c->auth) {
        // Do not leave the key in freed memory.
        volatile char *p = c->auth;
        while (*p) *p++ = 0;
    }
    free(c->auth);
    free(c->url);
    pthread_mutex_destroy(&c->lock);
#ifdef LLAVA_HAVE_CURL
    curl_global_cleanup();
#endif
    memset(c, 0, sizeof *c);
}

void chat_client_print_usage(const ChatClient *c, FILE *out) {
    const ChatUsage *u = &c->usage;
    fprintf(out, "usage: %ld requests (%ld ok, %ld failed, %ld retries), %ld prompt + %ld completion = %ld tokens",
            u->requests, u->succeeded, u->failed, u->retries, u->prompt_tokens, u->completion_tokens,
            u->prompt_tokens + u->completion_tokens);
    if (c->cfg.price_prompt_1k >= 0) {
        double pc = c->cfg.price_completion_1k >= 0 ? c->cfg.price_completion_1k : c->cfg.price_prompt_1k;
        double cost = (double)u->prompt_tokens / 1000.0 * c->cfg.price_prompt_1k +
                      (double)u->completion_tokens / 1000.0 * pc;
        fprintf(out, ", cost %.4f at %g per 1K prompt and %g per 1K completion tokens", cost,
                c->cfg.price_prompt_1k, pc);
    }
    fputc('\n', out);
    if (c->stop) fprintf(out, "stopped sending after: %s\n", c->stop_reason);
}
