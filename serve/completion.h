// Between the API and the scheduler: a parsed chat request -> a generation
// job (the prompt built with the model's conversation template exactly as
// `llava generate` / `llava chat` build it, the image preprocessed), and a
// job's tokens -> OpenAI's response objects (chat.completion, and the
// chat.completion.chunk events of a stream).
#ifndef LLAVA_SERVE_COMPLETION_H
#define LLAVA_SERVE_COMPLETION_H

#include <stdint.h>

#include "eval/text_prompt.h"
#include "serve/image_url.h"
#include "serve/request.h"
#include "serve/scheduler.h"

// What every request needs to know of the served model (read-only once the
// server runs, shared by the connection threads).
typedef struct {
    const LlavaModel *m;
    const TextPrompt *tp;
    ImageUrlPolicy images;
    const char *model_name;
    int T_cap;  // positions per sequence (prompt + answer)
} ServeModel;

// Builds the job: 0, or -1 with e (400 for the request's faults). The
// job's seed is req->seed when given, else `fallback_seed`.
int completion_job_build(const ServeModel *sm, const ChatRequest *req, uint64_t fallback_seed, ServeJob **job,
                         ApiError *e);

// The answer text of ids as `llava generate` prints it (decoded without
// special tokens, cut at a stop string's stop_at, stripped). Caller frees.
char *completion_text(const ServeModel *sm, const int32_t *ids, int n, size_t stop_at);

// How much of the answer so far can be streamed without being taken back:
// a trailing incomplete UTF-8 character (U+FFFD) and a tail that could be
// the start of a stop string are held back. text is completion_text's.
size_t completion_stream_ready(const char *text, const ServeJob *job);

// OpenAI's finish_reason for a job's finish ("stop", "length").
const char *completion_finish_reason(ServeFinish f);

// {"id", "object": "chat.completion", "created", "model", "choices": [{"index": 0,
//  "message": {"role": "assistant", "content"}, "finish_reason"}], "usage"}. Caller frees.
char *completion_json(const char *id, long created, const char *model, const char *content, ServeFinish f,
                      int prompt_tokens, int completion_tokens);
// One "data: {chunk}\n\n" event: delta {role?, content?} and finish_reason
// (NULL: null). with_usage: the final usage chunk (choices []). Caller frees.
char *completion_chunk_event(const char *id, long created, const char *model, int with_role, const char *content,
                             size_t content_len, const char *finish_reason, int with_usage, int prompt_tokens,
                             int completion_tokens);

#endif
