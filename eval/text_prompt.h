// The text side of generation: a conversation (questions and earlier
// answers) -> the prompt ids LLaVA feeds the model, and generated ids -> the
// answer text. Prompts are built by data/conversation.c in generation mode:
// the template's text ending in "ASSISTANT:", split at <image> and tokenized
// chunk by chunk as LLaVA's tokenizer_image_token does, each image expanded
// to image_seq_length image tokens.
#ifndef LLAVA_TEXT_PROMPT_H
#define LLAVA_TEXT_PROMPT_H

#include "data/conversation.h"
#include "data/tokenizer.h"
#include "model/config.h"

typedef struct {
    Tokenizer *tok;
    ConvTemplate tmpl;
    int image_seq_length;
    int32_t image_token_index;
    int32_t eos_id;  // the tokenizer's eos_token (else the model's)
    ConvResult r;
} TextPrompt;

// Loads dir's tokenizer (tokenizer.json + tokenizer_config.json) and checks
// it against the model (vocabulary size, the image token).
int text_prompt_init(TextPrompt *tp, const char *dir, const char *template_name, const LlavaConfig *cfg,
                     Error *err);
void text_prompt_free(TextPrompt *tp);

// turns[0..n): human, gpt, human, ... ending with a human turn. With
// has_image, the first human turn must hold "<image>" (LLaVA's CLI and
// evaluation put "<image>\n" in front of the first question). The ids stay
// valid until the next build.
int text_prompt_build(TextPrompt *tp, const char *const *turns, int n, int has_image, const int32_t **ids,
                      int *n_ids, Error *err);
// The same into the caller's result (thread-safe: several threads may build
// prompts with one TextPrompt at once, each with its own ConvResult), with
// `system` (NULL: the template's) as the system prompt.
int text_prompt_build_into(const TextPrompt *tp, const char *const *turns, int n, int has_image, const char *system,
                           ConvResult *r, Error *err);
// The answer text: ids decoded with special tokens skipped, then stripped
// (Python's str.strip), as LLaVA's scripts do. Caller frees.
char *text_prompt_answer(const TextPrompt *tp, const int32_t *ids, int n);

#endif
