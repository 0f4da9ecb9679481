// A real HTTP/1.1 server on loopback that speaks just enough of the chat-
// completions protocol to put the client through its faults: scripted
// statuses, Retry-After, hangs, malformed and truncated bodies, a required
// key. Used in-process by test_chat_client and as the fake_chat_server tool by
// the shell tests of datagen and judge. Test code only.
#ifndef LLAVA_TEST_FAKE_SERVER_H
#define LLAVA_TEST_FAKE_SERVER_H

#include <stdio.h>

typedef struct {
    const char *match;     // substring of the last message's content; NULL = any request
    int times;             // requests this rule answers; -1 = unlimited
    int status;            // HTTP status; 0 = 200
    const char *content;   // the assistant's text for a 200; NULL = "echo: " + the last message
    const char *raw_body;  // sent verbatim as the body instead (malformed JSON)
    int retry_after;       // >= 0: a Retry-After header in seconds; -1: none
    int hang_ms;           // wait this long before answering
    int truncate;          // announce a longer Content-Length than sent, then close
    const char *system;    // also required: substring of the first message's content (NULL: any)
    int retry_after_date;  // > 0: a Retry-After header as an HTTP date this many seconds ahead
} FakeRule;

typedef struct FakeServer FakeServer;

// Starts listening on 127.0.0.1 (an ephemeral port). Rules are copied; the
// first rule that matches and has answers left answers. require_key: requests
// without "Authorization: Bearer <key>" get 401. NULL on failure (printed).
FakeServer *fake_server_start(const FakeRule *rules, int n_rules, const char *require_key, FILE *log);
int fake_server_port(const FakeServer *s);
// Requests seen so far, and one's arrival time (seconds, monotonic clock),
// body and the rule that answered it (-1: none matched, 404 or 401).
int fake_server_count(FakeServer *s);
double fake_server_time(FakeServer *s, int i);
const char *fake_server_body(FakeServer *s, int i);
int fake_server_rule(FakeServer *s, int i);
// The most requests that were being answered at the same moment.
int fake_server_max_inflight(FakeServer *s);
void fake_server_stop(FakeServer *s);

// Loads rules from a JSON array of objects with the FakeRule field names
// ("match", "times", "status", "content", "body", "retry_after", "hang_ms",
// "truncate", "system", "retry_after_date"). The strings stay owned by the returned cJSON tree (*keep).
int fake_rules_load(const char *path, FakeRule **rules, int *n, void **keep);

#endif
