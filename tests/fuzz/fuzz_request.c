// Fuzz target for the request JSON of `llava serve` (serve/request.c): any
// bytes must give either a parsed request or an OpenAI error object with a
// 4xx status, never a crash, a leak or undefined behaviour. Built two ways:
//   - with libFuzzer (scripts/fuzz_request.sh: clang -fsanitize=fuzzer,...);
//   - with tests/fuzz/replay_main.c as the ctest test_fuzz_request, which
//     replays the seed corpus and a fixed-seed mutation of it (sanitized in
//     the ASan build).
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "serve/request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ChatRequest r;
    ApiError e;
    if (chat_request_parse((const char *)data, size, &r, &e) == 0) {
        // A parsed request is complete and within its documented ranges.
        CHECK(r.n_turns % 2 == 1 && r.turns, "parsed request with %d turns", r.n_turns);
        for (int i = 0; i < r.n_turns; i++) CHECK(r.turns[i], "turn %d missing", i);
        CHECK(r.temperature >= 0 && r.temperature <= 2 && r.top_p > 0 && r.top_p <= 1 && r.top_k >= 0 &&
                  r.max_tokens >= 0 && r.n_stops <= SERVE_MAX_STOPS,
              "parsed values out of range");
        chat_request_free(&r);
    } else {
        CHECK(e.status >= 400 && e.status < 500 && e.message[0], "error without a 4xx status or message");
        char *json = api_error_json(&e);
        CHECK(json && strstr(json, "\"error\""), "error object not printed");
        free(json);
    }
    return 0;
}
