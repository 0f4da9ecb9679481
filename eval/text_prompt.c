#include "eval/text_prompt.h"

#include <stdlib.h>
#include <string.h>

#include "eval/sqa_questions.h"

int text_prompt_init(TextPrompt *tp, const char *dir, const char *template_name, const LlavaConfig *cfg,
                     Error *err) {
    memset(tp, 0, sizeof *tp);
    int automatic = strcmp(template_name, "auto") == 0;
    if (!automatic && conv_template_from_name(template_name, &tp->tmpl) != 0)
        return err_set(err, "unknown template '%s' (auto, plain, vicuna_v1, v1, llava_v1, qwen_2, llama_3)",
                       template_name);
    if (tokenizer_load(&tp->tok, dir, err) != 0) return -1;
    if (automatic)  // the chat format the tokenizer's special tokens belong to
        tp->tmpl = tokenizer_token_to_id(tp->tok, "<|im_start|>") >= 0          ? CONV_QWEN_2
                   : tokenizer_token_to_id(tp->tok, "<|start_header_id|>") >= 0 ? CONV_LLAMA_3
                                                                                : CONV_VICUNA_V1;
    const int tv = tokenizer_vocab_size(tp->tok);
    if (tv > cfg->text.vocab) {
        text_prompt_free(tp);
        return err_set(err, "%s: the tokenizer has %d tokens but the model's vocabulary only %d", dir, tv,
                       cfg->text.vocab);
    }
    tp->image_seq_length = cfg->image_tokens;
    tp->image_token_index = cfg->image_token_index;
    tp->eos_id = tokenizer_eos_id(tp->tok) >= 0 ? tokenizer_eos_id(tp->tok) : cfg->text.eos_id;
    return 0;
}

void text_prompt_free(TextPrompt *tp) {
    if (tp->tok) tokenizer_free(tp->tok);
    conv_result_free(&tp->r);
    memset(tp, 0, sizeof *tp);
}

int text_prompt_build(TextPrompt *tp, const char *const *turns, int n, int has_image, const int32_t **ids,
                      int *n_ids, Error *err) {
    if (text_prompt_build_into(tp, turns, n, has_image, NULL, &tp->r, err) != 0) return -1;
    *ids = tp->r.ids.data;
    *n_ids = tp->r.ids.n;
    return 0;
}

int text_prompt_build_into(const TextPrompt *tp, const char *const *turns, int n, int has_image, const char *system,
                           ConvResult *r, Error *err) {
    if (system && tp->tmpl == CONV_PLAIN)
        return err_set(err, "the plain template has no system prompt to replace");
    ConvTurn *ct = xcalloc((size_t)(n > 0 ? n : 1), sizeof(ConvTurn));
    for (int i = 0; i < n; i++) ct[i] = (ConvTurn){.role = i % 2 ? CONV_GPT : CONV_HUMAN, .text = turns[i],
                                                   .len = strlen(turns[i])};
    Conversation c = {.turns = ct, .n_turns = n, .has_image = has_image};
    ConvOptions o = {.tmpl = tp->tmpl, .image_seq_length = tp->image_seq_length,
                     .image_token_index = tp->image_token_index, .max_length = 0, .generation_prompt = 1,
                     .system = system};
    ConvStatus st = conv_build(tp->tok, &c, &o, r);
    free(ct);
    if (st != CONV_OK && st != CONV_MASK_MISMATCH)
        return err_set(err, "cannot build the prompt: %s (%s)", conv_status_reason(st), r->reason);
    if (st == CONV_MASK_MISMATCH)  // only possible with earlier answers in the prompt
        fprintf(stderr, "warning: %s; generating from the piecewise tokenization\n", r->reason);
    return 0;
}

char *text_prompt_answer(const TextPrompt *tp, const int32_t *ids, int n) {
    return py_strip(tokenizer_decode(tp->tok, ids, n, 1, NULL));
}
