// The chat-completions client against a real HTTP server on loopback
// (tests/fake_server.c): request bodies, answers, usage sums, and every fault
// the client must survive or report: endpoint down, 429 with Retry-After, 500
// then success, a hang past the timeout, malformed and truncated bodies, a
// wrong key (401), a 400 that must not be retried, the concurrency limit.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/chat_client.h"
#include "fake_server.h"
#include "testlib.h"

static ChatConfig config_for(int port, char *url, size_t cap) {
    snprintf(url, cap, "http://127.0.0.1:%d/v1", port);
    return (ChatConfig){.endpoint = url, .model = "judge-model", .concurrency = 1, .timeout_s = 5.0,
                        .max_retries = 3, .backoff_s = 0.01, .backoff_max_s = 0.05, .retry_after_max_s = 30,
                        .temperature = 0.2, .max_tokens = 64, .seed = 1, .price_prompt_1k = -1,
                        .price_completion_1k = -1};
}

static const ChatMessage HELLO[2] = {{"system", "be brief"}, {"user", "hello"}};

// One request through a fresh client; returns the request (caller frees text).
static ChatCall send_one(const ChatConfig *cfg, const ChatMessage *msgs, int n, ChatUsage *usage) {
    ChatClient c;
    Error err = {{0}};
    ChatCall r = {.messages = msgs, .n_messages = n};
    if (chat_client_init(&c, cfg, &err) != 0) {
        EXPECT(0, "init: %s", err.msg);
        return r;
    }
    chat_client_send(&c, &r);
    if (usage) *usage = c.usage;
    chat_client_free(&c);
    return r;
}

static void test_success_body_and_usage(void) {
    FakeRule rules[] = {{NULL, -1, 200, "Hi there.", NULL, -1, 0, 0, NULL, 0}};
    FakeServer *s = fake_server_start(rules, 1, NULL, NULL);
    char url[128];
    ChatConfig cfg = config_for(fake_server_port(s), url, sizeof url);
    ChatUsage u;
    ChatCall r = send_one(&cfg, HELLO, 2, &u);
    EXPECT(r.ok && r.text && strcmp(r.text, "Hi there.") == 0, "answer: %s", r.text ? r.text : r.error);
    EXPECT(r.attempts == 1 && r.http_status == 200, "attempts %d status %d", r.attempts, r.http_status);
    EXPECT(u.prompt_tokens == 11 && u.completion_tokens == 7 && u.requests == 1, "usage %ld %ld",
           u.prompt_tokens, u.completion_tokens);
    EXPECT(fake_server_count(s) == 1, "server saw %d requests", fake_server_count(s));
    // The body the server received is the one built for these messages, in order.
    char *want = chat_call_body(&cfg, HELLO, 2);
    const char *got = fake_server_body(s, 0);
    EXPECT(got && strcmp(got, want) == 0, "body %s vs %s", got, want);
    EXPECT(strstr(want, "\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},{\"role\":\"user\","
                        "\"content\":\"hello\"}]") != NULL && strstr(want, "\"model\":\"judge-model\"") &&
               strstr(want, "\"max_tokens\":64") && strstr(want, "\"temperature\":0.2"),
           "body layout: %s", want);
    free(want);
    // --no-system-role: the system text heads the first user message.
    cfg.fold_system = 1;
    char *folded = chat_call_body(&cfg, HELLO, 2);
    EXPECT(strstr(folded, "\"messages\":[{\"role\":\"user\",\"content\":\"be brief\\n\\nhello\"}]") != NULL,
           "folded: %s", folded);
    free(folded);
    chat_call_free(&r);
    fake_server_stop(s);
}

static void test_retry_after_is_honoured(void) {
    FakeRule rules[] = {{NULL, 1, 429, NULL, NULL, 1, 0, 0, NULL, 0}, {NULL, -1, 200, "after the wait", NULL, -1, 0, 0, NULL, 0}};
    FakeServer *s = fake_server_start(rules, 2, NULL, NULL);
    char url[128];
    ChatConfig cfg = config_for(fake_server_port(s), url, sizeof url);
    ChatUsage u;
    ChatCall r = send_one(&cfg, HELLO, 2, &u);
    EXPECT(r.ok && strcmp(r.text, "after the wait") == 0, "429 then ok: %s", r.ok ? r.text : r.error);
    EXPECT(r.attempts == 2 && u.retries == 1, "attempts %d retries %ld", r.attempts, u.retries);
    // Correctness, not speed: the backoff alone is 10-50 ms, so a retry that
    // arrives a second later proves the Retry-After header was obeyed.
    double gap = fake_server_time(s, 1) - fake_server_time(s, 0);
    EXPECT(gap >= 0.95, "retry came %.3f s after the 429 with Retry-After: 1", gap);
    chat_call_free(&r);
    fake_server_stop(s);
    // The other form: an HTTP date 2 s ahead (second resolution: at least ~1 s of wait).
    FakeRule dated[] = {{.times = 1, .status = 429, .retry_after = -1, .retry_after_date = 2},
                        {.times = -1, .status = 200, .content = "after the date", .retry_after = -1}};
    s = fake_server_start(dated, 2, NULL, NULL);
    cfg = config_for(fake_server_port(s), url, sizeof url);
    r = send_one(&cfg, HELLO, 2, NULL);
    gap = fake_server_time(s, 1) - fake_server_time(s, 0);
    EXPECT(r.ok && r.attempts == 2 && gap >= 0.9, "Retry-After date: ok %d attempts %d gap %.3f s", r.ok, r.attempts,
           gap);
    chat_call_free(&r);
    fake_server_stop(s);
}

static void test_transient_faults_are_retried(void) {
    struct {
        const char *what;
        FakeRule first;
        const char *reason;  // of the failure when retries run out
    } cases[] = {
        {"500", {NULL, 1, 500, NULL, NULL, -1, 0, 0, NULL, 0}, "HTTP 500"},
        {"503", {NULL, 1, 503, NULL, NULL, -1, 0, 0, NULL, 0}, "HTTP 503"},
        {"hang past the timeout", {NULL, 1, 200, "late", NULL, -1, 3000, 0, NULL, 0}, "Timeout"},
        {"malformed JSON", {NULL, 1, 200, NULL, "{\"choices\": [ {\"message\": ", -1, 0, 0, NULL, 0}, "not JSON"},
        {"no content", {NULL, 1, 200, NULL, "{\"choices\": []}", -1, 0, 0, NULL, 0}, "no choices[0].message.content"},
        {"truncated body", {NULL, 1, 200, "cut", NULL, -1, 0, 1, NULL, 0}, "ransfer"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        // First: the fault once, then a good answer -> retried, answered once.
        FakeRule rules[2] = {cases[i].first, {NULL, -1, 200, "recovered", NULL, -1, 0, 0, NULL, 0}};
        FakeServer *s = fake_server_start(rules, 2, NULL, NULL);
        char url[128];
        ChatConfig cfg = config_for(fake_server_port(s), url, sizeof url);
        cfg.timeout_s = 0.5;
        ChatCall r = send_one(&cfg, HELLO, 2, NULL);
        EXPECT(r.ok && strcmp(r.text, "recovered") == 0 && r.attempts == 2, "%s then ok: ok=%d attempts=%d %s",
               cases[i].what, r.ok, r.attempts, r.ok ? r.text : r.error);
        EXPECT(fake_server_count(s) == 2, "%s: server saw %d requests", cases[i].what, fake_server_count(s));
        chat_call_free(&r);
        fake_server_stop(s);
        // Then: the fault every time -> reported with its reason after all retries.
        FakeRule always = cases[i].first;
        always.times = -1;
        s = fake_server_start(&always, 1, NULL, NULL);
        cfg = config_for(fake_server_port(s), url, sizeof url);
        cfg.timeout_s = 0.5;
        cfg.max_retries = 2;
        r = send_one(&cfg, HELLO, 2, NULL);
        EXPECT(!r.ok && r.attempts == 3 && strstr(r.error, cases[i].reason) && strstr(r.error, "after 3 attempts"),
               "%s always: ok=%d attempts=%d error '%s'", cases[i].what, r.ok, r.attempts, r.error);
        chat_call_free(&r);
        fake_server_stop(s);
    }
}

static void test_client_errors_are_not_retried(void) {
    FakeRule rules[] = {{NULL, -1, 400, NULL, NULL, -1, 0, 0, NULL, 0}};
    FakeServer *s = fake_server_start(rules, 1, NULL, NULL);
    char url[128];
    ChatConfig cfg = config_for(fake_server_port(s), url, sizeof url);
    ChatCall r = send_one(&cfg, HELLO, 2, NULL);
    EXPECT(!r.ok && r.attempts == 1 && r.http_status == 400 && strstr(r.error, "scripted failure"),
           "400: ok=%d attempts=%d '%s'", r.ok, r.attempts, r.error);
    EXPECT(fake_server_count(s) == 1, "400 sent %d times", fake_server_count(s));
    chat_call_free(&r);
    fake_server_stop(s);
}

static void test_wrong_key_stops_the_batch(void) {
    FakeRule rules[] = {{NULL, -1, 200, "ok", NULL, -1, 0, 0, NULL, 0}};
    FakeServer *s = fake_server_start(rules, 1, "right-key-123", NULL);
    char url[128];
    ChatConfig cfg = config_for(fake_server_port(s), url, sizeof url);
    // The right key works.
    cfg.api_key = "right-key-123";
    cfg.api_key_env = "TEST_KEY";
    ChatCall r = send_one(&cfg, HELLO, 2, NULL);
    EXPECT(r.ok, "right key: %s", r.error);
    chat_call_free(&r);
    // No key and a wrong key: 401, not retried, the rest of the batch not sent.
    for (int with_key = 0; with_key < 2; with_key++) {
        cfg.api_key = with_key ? "Incorrect" : NULL;
        ChatClient c;
        Error err = {{0}};
        EXPECT(chat_client_init(&c, &cfg, &err) == 0, "init: %s", err.msg);
        ChatCall reqs[5];
        for (int i = 0; i < 5; i++) reqs[i] = (ChatCall){.messages = HELLO, .n_messages = 2};
        int before = fake_server_count(s);
        int failed = chat_client_run(&c, reqs, 5, NULL, NULL);
        EXPECT(failed == 5, "401 batch: %d failed", failed);
        EXPECT(fake_server_count(s) - before == 1, "401: %d requests sent", fake_server_count(s) - before);
        EXPECT(reqs[0].http_status == 401 && strstr(reqs[0].error, "$TEST_KEY") &&
                   strstr(reqs[4].error, "not sent"),
               "401 messages: '%s' / '%s'", reqs[0].error, reqs[4].error);
        // The server's message "Incorrect API key provided." contains the
        // wrong key here: it must be masked.
        EXPECT(!with_key || !strstr(reqs[0].error, "Incorrect"), "key leaked into '%s'", reqs[0].error);
        EXPECT(c.usage.retries == 0, "401 retried");
        for (int i = 0; i < 5; i++) chat_call_free(&reqs[i]);
        chat_client_free(&c);
    }
    fake_server_stop(s);
}

static void test_endpoint_down(void) {
    // A port that was just free: nothing listens there.
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    EXPECT(bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &al) == 0,
           "bind");
    close(fd);
    char url[128];
    ChatConfig cfg = config_for(ntohs(a.sin_port), url, sizeof url);
    cfg.max_retries = 2;
    ChatCall r = send_one(&cfg, HELLO, 2, NULL);
    EXPECT(!r.ok && r.attempts == 3 && r.http_status == 0 && strstr(r.error, "onnect"), "down: attempts %d '%s'",
           r.attempts, r.error);
    chat_call_free(&r);
}

typedef struct {
    int calls;
    int seen[64];
} DoneLog;

static void on_done(ChatCall *req, void *ctx) {
    DoneLog *d = ctx;
    d->calls++;
    d->seen[(int)(intptr_t)req->tag]++;
}

static void test_concurrent_batch_exactly_once(void) {
    FakeRule rules[] = {{"#7", 1, 500, NULL, NULL, -1, 0, 0, NULL, 0}, {NULL, -1, 200, NULL, NULL, -1, 150, 0, NULL, 0}};
    FakeServer *s = fake_server_start(rules, 2, NULL, NULL);
    char url[128];
    ChatConfig cfg = config_for(fake_server_port(s), url, sizeof url);
    cfg.concurrency = 3;
    enum { N = 20 };
    char texts[N][32];
    ChatMessage msgs[N][1];
    ChatCall reqs[N];
    for (int i = 0; i < N; i++) {
        snprintf(texts[i], sizeof texts[i], "question #%d", i);
        msgs[i][0] = (ChatMessage){"user", texts[i]};
        reqs[i] = (ChatCall){.messages = msgs[i], .n_messages = 1, .tag = (void *)(intptr_t)i};
    }
    ChatClient c;
    Error err = {{0}};
    EXPECT(chat_client_init(&c, &cfg, &err) == 0, "init: %s", err.msg);
    DoneLog d = {0};
    int failed = chat_client_run(&c, reqs, N, on_done, &d);
    EXPECT(failed == 0 && d.calls == N, "batch: %d failed, %d callbacks", failed, d.calls);
    for (int i = 0; i < N; i++) {
        char want[64];
        snprintf(want, sizeof want, "echo: question #%d", i);
        EXPECT(d.seen[i] == 1 && reqs[i].ok && strcmp(reqs[i].text, want) == 0, "request %d: %d calls, '%s'", i,
               d.seen[i], reqs[i].ok ? reqs[i].text : reqs[i].error);
        chat_call_free(&reqs[i]);
    }
    EXPECT(fake_server_count(s) == N + 1, "server saw %d requests for %d + 1 retry", fake_server_count(s), N);
    EXPECT(fake_server_max_inflight(s) <= 3 && fake_server_max_inflight(s) >= 2,
           "in flight at once: %d with --concurrency 3", fake_server_max_inflight(s));
    EXPECT(c.usage.prompt_tokens == 11 * N && c.usage.completion_tokens == 7 * N && c.usage.retries == 1,
           "usage %ld + %ld, %ld retries", c.usage.prompt_tokens, c.usage.completion_tokens, c.usage.retries);
    c.cfg.price_prompt_1k = 0.03;
    c.cfg.price_completion_1k = 0.06;
    char line[512] = {0};
    FILE *mem = fmemopen(line, sizeof line - 1, "w");
    chat_client_print_usage(&c, mem);
    fclose(mem);
    // 220 prompt tokens * 0.03/1K + 140 completion * 0.06/1K = 0.0150
    EXPECT(strstr(line, "20 requests (20 ok, 0 failed, 1 retries), 220 prompt + 140 completion = 360 tokens") &&
               strstr(line, "cost 0.0150"),
           "usage line: %s", line);
    chat_client_free(&c);
    fake_server_stop(s);
}

static void test_config_checks(void) {
    ChatClient c;
    Error err = {{0}};
    ChatConfig cfg = {.endpoint = "ftp://x", .model = "m", .concurrency = 1, .timeout_s = 1};
    EXPECT(chat_client_init(&c, &cfg, &err) != 0 && strstr(err.msg, "http"), "scheme: %s", err.msg);
    cfg.endpoint = "http://127.0.0.1:1/v1/chat/completions/";
    err.msg[0] = 0;
    EXPECT(chat_client_init(&c, &cfg, &err) == 0 && strcmp(c.url, "http://127.0.0.1:1/v1/chat/completions") == 0,
           "full URL kept: %s", c.url);
    chat_client_free(&c);
    cfg.concurrency = 0;
    EXPECT(chat_client_init(&c, &cfg, &err) != 0, "concurrency 0 accepted");
}

int main(void) {
    test_config_checks();
    test_success_body_and_usage();
    test_retry_after_is_honoured();
    test_transient_faults_are_retried();
    test_client_errors_are_not_retried();
    test_wrong_key_stops_the_batch();
    test_endpoint_down();
    test_concurrent_batch_exactly_once();
    return test_summary("test_chat_client");
}
