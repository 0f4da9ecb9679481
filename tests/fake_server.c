#include "fake_server.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"

typedef struct {
    double t;
    char *body;
    int rule;
} Seen;

struct FakeServer {
    int fd, port;
    FakeRule *rules;
    int *left;
    int n_rules;
    char *key;
    FILE *log;
    pthread_t accept_thread;
    pthread_mutex_t lock;
    pthread_cond_t idle;
    int stop, active;
    int inflight, max_inflight;  // requests read and not yet answered
    Seen *seen;
    int n_seen, cap_seen;
};

static double mono_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int send_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void send_response(int fd, int status, const char *extra_headers, const char *body, size_t announce) {
    size_t bl = strlen(body);
    char head[512];
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n%sConnection: "
                      "close\r\n\r\n",
                      status, announce ? announce : bl, extra_headers);
    if (send_all(fd, head, (size_t)hl) == 0) send_all(fd, body, bl);
}

// The content of message `at` (-1: the last), or "" (owned by root).
static const char *message_content(const cJSON *root, int at) {
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(root, "messages");
    int n = cJSON_GetArraySize(msgs);
    if (at < 0) at = n - 1;
    const cJSON *m = at >= 0 && at < n ? cJSON_GetArrayItem(msgs, at) : NULL;
    const cJSON *c = m ? cJSON_GetObjectItemCaseSensitive(m, "content") : NULL;
    return cJSON_IsString(c) ? c->valuestring : "";
}

static void sleep_ms_unless_stopped(FakeServer *s, int ms) {
    for (int t = 0; t < ms; t += 20) {
        pthread_mutex_lock(&s->lock);
        int stop = s->stop;
        pthread_mutex_unlock(&s->lock);
        if (stop) return;
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static void handle(FakeServer *s, int fd) {
    size_t cap = 1 << 16, len = 0;
    char *buf = xmalloc(cap + 1);
    char *body = NULL;
    size_t head_len = 0, content_len = 0;
    int sent_continue = 0;
    for (;;) {
        if (!head_len) {
            buf[len] = 0;
            char *e = strstr(buf, "\r\n\r\n");
            if (e) {
                head_len = (size_t)(e - buf) + 4;
                for (char *l = strstr(buf, "\r\n"); l && l < e; l = strstr(l + 2, "\r\n")) {
                    if (strncasecmp(l + 2, "content-length:", 15) == 0) content_len = strtoul(l + 17, NULL, 10);
                    if (strncasecmp(l + 2, "expect: 100-continue", 20) == 0 && !sent_continue) {
                        send_all(fd, "HTTP/1.1 100 Continue\r\n\r\n", 25);
                        sent_continue = 1;
                    }
                }
            }
        }
        if (head_len && len >= head_len + content_len) break;
        if (len == cap) {
            cap *= 2;
            buf = xrealloc(buf, cap + 1);
        }
        ssize_t r = recv(fd, buf + len, cap - len, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) goto done;
        len += (size_t)r;
    }
    buf[head_len + content_len] = 0;
    body = buf + head_len;
    int authorized = 1;
    if (s->key) {
        char want[512];
        snprintf(want, sizeof want, "\r\nAuthorization: Bearer %s\r\n", s->key);
        buf[head_len - 2] = 0;  // search the headers only
        authorized = strstr(buf, want) != NULL;
        buf[head_len - 2] = '\r';
    }
    int path_ok = strncmp(buf, "POST /v1/chat/completions ", 26) == 0;
    cJSON *root = cJSON_Parse(body);
    const char *last = root ? message_content(root, -1) : "";
    const char *first = root ? message_content(root, 0) : "";
    int rule = -1;
    pthread_mutex_lock(&s->lock);
    if (authorized && path_ok) {
        for (int i = 0; i < s->n_rules; i++) {
            if (s->left[i] == 0) continue;
            if (s->rules[i].match && !strstr(last, s->rules[i].match)) continue;
            if (s->rules[i].system && !strstr(first, s->rules[i].system)) continue;
            if (s->left[i] > 0) s->left[i]--;
            rule = i;
            break;
        }
    }
    if (s->n_seen == s->cap_seen) {
        s->cap_seen = s->cap_seen ? 2 * s->cap_seen : 64;
        s->seen = xrealloc(s->seen, (size_t)s->cap_seen * sizeof *s->seen);
    }
    s->seen[s->n_seen++] = (Seen){mono_now(), xstrdup(body), rule};
    if (++s->inflight > s->max_inflight) s->max_inflight = s->inflight;
    if (s->log) {
        cJSON *entry = cJSON_CreateObject();
        cJSON_AddNumberToObject(entry, "rule", rule);
        cJSON_AddItemToObject(entry, "request", root ? cJSON_Duplicate(root, 1) : cJSON_CreateString(body));
        char *line = cJSON_PrintUnformatted(entry);
        fprintf(s->log, "%s\n", line);
        fflush(s->log);
        free(line);
        cJSON_Delete(entry);
    }
    pthread_mutex_unlock(&s->lock);
    // Counted down before the answer goes out: the client cannot send its next
    // request before it has this answer, so inflight never overcounts.
    int answer_now = !authorized || !path_ok || rule < 0;
    if (answer_now) {
        pthread_mutex_lock(&s->lock);
        s->inflight--;
        pthread_mutex_unlock(&s->lock);
    }
    if (!authorized) {
        send_response(fd, 401, "", "{\"error\": {\"message\": \"Incorrect API key provided.\"}}", 0);
    } else if (!path_ok) {
        send_response(fd, 404, "", "{\"error\": {\"message\": \"no such route\"}}", 0);
    } else if (rule < 0) {
        send_response(fd, 500, "", "{\"error\": {\"message\": \"fake server: no rule matched\"}}", 0);
    } else {
        const FakeRule *r = &s->rules[rule];
        if (r->hang_ms > 0) sleep_ms_unless_stopped(s, r->hang_ms);
        pthread_mutex_lock(&s->lock);
        s->inflight--;
        pthread_mutex_unlock(&s->lock);
        char extra[96] = "";
        if (r->retry_after >= 0) snprintf(extra, sizeof extra, "Retry-After: %d\r\n", r->retry_after);
        if (r->retry_after_date > 0) {
            time_t when = time(NULL) + r->retry_after_date;
            struct tm tm;
            gmtime_r(&when, &tm);
            strftime(extra, sizeof extra, "Retry-After: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
        }
        int status = r->status ? r->status : 200;
        if (r->raw_body) {
            send_response(fd, status, extra, r->raw_body, r->truncate ? strlen(r->raw_body) + 100 : 0);
        } else if (status != 200) {
            send_response(fd, status, extra, "{\"error\": {\"message\": \"scripted failure\"}}", 0);
        } else {
            cJSON *resp = cJSON_CreateObject();
            cJSON_AddStringToObject(resp, "object", "chat.completion");
            cJSON *choices = cJSON_AddArrayToObject(resp, "choices");
            cJSON *ch = cJSON_CreateObject();
            cJSON_AddNumberToObject(ch, "index", 0);
            cJSON *msg = cJSON_AddObjectToObject(ch, "message");
            cJSON_AddStringToObject(msg, "role", "assistant");
            char *echo = NULL;
            if (!r->content) {
                size_t el = strlen(last) + 8;
                echo = xmalloc(el);
                snprintf(echo, el, "echo: %s", last);
            }
            cJSON_AddStringToObject(msg, "content", r->content ? r->content : echo);
            free(echo);
            cJSON_AddStringToObject(ch, "finish_reason", "stop");
            cJSON_AddItemToArray(choices, ch);
            cJSON *usage = cJSON_AddObjectToObject(resp, "usage");
            cJSON_AddNumberToObject(usage, "prompt_tokens", 11);
            cJSON_AddNumberToObject(usage, "completion_tokens", 7);
            cJSON_AddNumberToObject(usage, "total_tokens", 18);
            char *out = cJSON_PrintUnformatted(resp);
            send_response(fd, 200, extra, out, r->truncate ? strlen(out) + 100 : 0);
            free(out);
            cJSON_Delete(resp);
        }
    }
    cJSON_Delete(root);
done:
    free(buf);
    close(fd);
}

typedef struct {
    FakeServer *s;
    int fd;
} Conn;

static void *conn_main(void *arg) {
    Conn c = *(Conn *)arg;
    free(arg);
    handle(c.s, c.fd);
    pthread_mutex_lock(&c.s->lock);
    c.s->active--;
    pthread_cond_broadcast(&c.s->idle);
    pthread_mutex_unlock(&c.s->lock);
    return NULL;
}

static void *accept_main(void *arg) {
    FakeServer *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        int stop = s->stop;
        pthread_mutex_unlock(&s->lock);
        if (stop) break;
        struct pollfd p = {s->fd, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0) continue;
        int fd = accept(s->fd, NULL, NULL);
        if (fd < 0) continue;
        Conn *c = xmalloc(sizeof *c);
        *c = (Conn){s, fd};
        pthread_mutex_lock(&s->lock);
        s->active++;
        pthread_mutex_unlock(&s->lock);
        pthread_t t;
        if (pthread_create(&t, NULL, conn_main, c) != 0) {
            conn_main(c);
        } else {
            pthread_detach(t);
        }
    }
    return NULL;
}

FakeServer *fake_server_start(const FakeRule *rules, int n_rules, const char *require_key, FILE *log) {
    FakeServer *s = xcalloc(1, sizeof *s);
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (s->fd < 0 || bind(s->fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(s->fd, 64) != 0 ||
        getsockname(s->fd, (struct sockaddr *)&a, &al) != 0) {
        perror("fake_server: socket/bind/listen");
        if (s->fd >= 0) close(s->fd);
        free(s);
        return NULL;
    }
    s->port = ntohs(a.sin_port);
    s->n_rules = n_rules;
    s->rules = xcalloc((size_t)(n_rules ? n_rules : 1), sizeof *s->rules);
    s->left = xcalloc((size_t)(n_rules ? n_rules : 1), sizeof *s->left);
    for (int i = 0; i < n_rules; i++) {
        s->rules[i] = rules[i];
        s->left[i] = rules[i].times;
    }
    s->key = require_key ? xstrdup(require_key) : NULL;
    s->log = log;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->idle, NULL);
    if (pthread_create(&s->accept_thread, NULL, accept_main, s) != 0) {
        perror("fake_server: pthread_create");
        close(s->fd);
        free(s->rules);
        free(s->left);
        free(s->key);
        free(s);
        return NULL;
    }
    return s;
}

int fake_server_port(const FakeServer *s) { return s->port; }

int fake_server_count(FakeServer *s) {
    pthread_mutex_lock(&s->lock);
    int n = s->n_seen;
    pthread_mutex_unlock(&s->lock);
    return n;
}

double fake_server_time(FakeServer *s, int i) {
    pthread_mutex_lock(&s->lock);
    double t = i >= 0 && i < s->n_seen ? s->seen[i].t : -1;
    pthread_mutex_unlock(&s->lock);
    return t;
}

const char *fake_server_body(FakeServer *s, int i) {
    pthread_mutex_lock(&s->lock);
    const char *b = i >= 0 && i < s->n_seen ? s->seen[i].body : NULL;
    pthread_mutex_unlock(&s->lock);
    return b;
}

int fake_server_max_inflight(FakeServer *s) {
    pthread_mutex_lock(&s->lock);
    int m = s->max_inflight;
    pthread_mutex_unlock(&s->lock);
    return m;
}

int fake_server_rule(FakeServer *s, int i) {
    pthread_mutex_lock(&s->lock);
    int r = i >= 0 && i < s->n_seen ? s->seen[i].rule : -2;
    pthread_mutex_unlock(&s->lock);
    return r;
}

void fake_server_stop(FakeServer *s) {
    pthread_mutex_lock(&s->lock);
    s->stop = 1;
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->accept_thread, NULL);
    pthread_mutex_lock(&s->lock);
    while (s->active > 0) pthread_cond_wait(&s->idle, &s->lock);
    pthread_mutex_unlock(&s->lock);
    close(s->fd);
    for (int i = 0; i < s->n_seen; i++) free(s->seen[i].body);
    free(s->seen);
    free(s->rules);
    free(s->left);
    free(s->key);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->idle);
    free(s);
}

static const char *opt_str(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int opt_int(const cJSON *o, const char *k, int def) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valueint : cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

int fake_rules_load(const char *path, FakeRule **rules, int *n, void **keep) {
    Error err = {{0}};
    size_t len;
    char *text = read_file(path, &len, &err);
    if (!text) {
        fprintf(stderr, "fake_server: %s\n", err.msg);
        return -1;
    }
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsArray(root)) {
        fprintf(stderr, "fake_server: %s: expected a JSON array of rules\n", path);
        cJSON_Delete(root);
        return -1;
    }
    *n = cJSON_GetArraySize(root);
    *rules = xcalloc((size_t)(*n ? *n : 1), sizeof **rules);
    for (int i = 0; i < *n; i++) {
        const cJSON *o = cJSON_GetArrayItem(root, i);
        (*rules)[i] = (FakeRule){opt_str(o, "match"), opt_int(o, "times", -1), opt_int(o, "status", 200),
                                 opt_str(o, "content"), opt_str(o, "body"), opt_int(o, "retry_after", -1),
                                 opt_int(o, "hang_ms", 0), opt_int(o, "truncate", 0), opt_str(o, "system"),
                                 opt_int(o, "retry_after_date", 0)};
    }
    *keep = root;
    return 0;
}
