// LLaVA conversation templates and label masks: a parsed conversation (turns
// of human / gpt text, whether the sample has an image) -> input ids with the
// image placeholder expanded, and labels (-100 everywhere but the answers).
//
// Templates, exactly as LLaVA's train.py / conversation.py build the prompt:
//   plain      (stage 1)  <image> + caption + "\n"; loss on caption + "\n"
//   vicuna_v1  (= v1)     SYS + " USER: <image>\nQ1 ASSISTANT: A1</s>USER: Q2 ASSISTANT: A2</s>"
//   llava_v1              the same with "curious human" / "human's questions"
// Loss only on each answer (with the space before it, as LLaVA counts it) and
// its "</s>"; BOS, system, questions, roles and image positions are -100.
// And as LLaVA-NeXT's train.py (preprocess_qwen / preprocess_llama3) builds them:
//   qwen_2    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
//             + per turn "<|im_start|>user|assistant\n" + text + "<|im_end|>\n"
//   llama_3   "<|begin_of_text|>" + per message "<|start_header_id|>ROLE
//             <|end_header_id|>\n\n" + text.strip() + "<|eot_id|>", NeXT's
//             system prompt first
// each message tokenized on its own; targets: every token of the assistant
// messages (header and end token included), plus, anywhere, the tokens NeXT
// unmasks by id: qwen_2 "\n" (its id 198 in Qwen2's vocabulary is the
// byte-level "Ċ"), <|im_start|>, <|im_end|>; llama_3 <|begin_of_text|>,
// <|start_header_id|>, <|end_header_id|>, <|eot_id|> (NeXT's "\n\n" entry
// names no token of a byte-level vocabulary, so it unmasks nothing).
//
// Masks are computed by construction: the prompt is tokenized once per
// <image>-separated chunk (as LLaVA's tokenizer_image_token does) with BPE
// forced to break where masked and unmasked text meet, so every token belongs
// to exactly one side. The same chunks are also tokenized without the forced
// breaks, which is the sequence LLaVA would feed the model; where the two
// differ the result is CONV_MASK_MISMATCH (never a silently masked sample).
// docs/data.md ("Conversation") has the details and the LLaVA differences.
//
// Thread-safe: conv_build only reads the tokenizer.
#ifndef LLAVA_CONVERSATION_H
#define LLAVA_CONVERSATION_H

#include <stddef.h>
#include <stdint.h>

#include "data/tokenizer.h"

#define CONV_IGNORE_INDEX (-100)

typedef enum { CONV_PLAIN = 0, CONV_VICUNA_V1 = 1, CONV_LLAVA_V1 = 2, CONV_QWEN_2 = 3, CONV_LLAMA_3 = 4 } ConvTemplate;

// "plain", "v1", "vicuna_v1", "llava_v1", "qwen_2" (= "qwen_1_5"), "llama_3"
// (= "llava_llama_3") -> 0 and *out; anything else -1.
int conv_template_from_name(const char *name, ConvTemplate *out);
// "plain", "vicuna_v1", "llava_v1", "qwen_2", "llama_3"
const char *conv_template_name(ConvTemplate t);

typedef enum { CONV_HUMAN = 0, CONV_GPT = 1 } ConvRole;

// LLaVA's "from" values: "human" -> CONV_HUMAN, "gpt" -> CONV_GPT, else -1.
int conv_role_from_name(const char *name);

typedef struct {
    ConvRole role;
    const char *text;  // UTF-8, len bytes (need not be NUL-terminated); the caller keeps it alive
    size_t len;
} ConvTurn;

typedef struct {
    const ConvTurn *turns;  // [n_turns], in file order
    int n_turns;
    int has_image;          // the sample has an "image": its <image> placeholder is expanded
} Conversation;

typedef struct {
    ConvTemplate tmpl;
    int image_seq_length;       // model config: image positions per image (576 for CLIP-L/14 at 336 px)
    int32_t image_token_index;  // model config: the id those positions hold (32000 in llava-1.5-hf)
    int max_length;             // model_max_length: keep the first max_length tokens; <= 0: no limit
    int generation_prompt;      // 1: a prompt to generate from (last turn human, ends in "ASSISTANT:",
                                // no labels, never truncated); 0: a training sample
    const char *system;         // NULL: the template's system prompt; else this text in its place, as
                                // LLaVA's serving code sets conv.system (not for plain, which has none)
} ConvOptions;

typedef enum {
    CONV_OK = 0,
    CONV_MALFORMED,               // the conversation cannot be a sample (reason says why)
    CONV_EMPTY_AFTER_TRUNCATION,  // max_length left no answer token
    CONV_IMAGE_TRUNCATED,         // max_length cuts through the image positions
    CONV_MASK_MISMATCH,           // our tokens differ from tokenizing the whole prompt (ids/labels still filled)
} ConvStatus;

// The report.json reason for a status: "ok", "malformed conversation",
// "empty answer after truncation", "image cut by truncation", "mask mismatch".
const char *conv_status_reason(ConvStatus s);

typedef struct {
    TokenIds ids;             // [n] input ids; image positions hold image_token_index
    TokenIds labels;          // [n] ids[i] where loss is taken, CONV_IGNORE_INDEX elsewhere; aligned with
                              // ids, not shifted (as transformers takes labels: position i predicts labels[i+1])
    int n_before_truncation;  // length before max_length applied
    int truncated;            // 1 when max_length cut the sample
    int n_targets;            // labels that are not CONV_IGNORE_INDEX
    int image_start;          // index of the first image position, -1 without image
    int mismatch_at;          // CONV_MASK_MISMATCH: first index where the two tokenizations differ, else -1
    char reason[256];         // detail for any status but CONV_OK ("" for CONV_OK)
} ConvResult;

// Builds one sample. `r` is overwritten (initialize it with {0} once; it may
// be reused across calls, its buffers are kept). ids/labels are filled for
// CONV_OK, CONV_MASK_MISMATCH and the truncation statuses (after truncation);
// for CONV_MALFORMED they are empty.
ConvStatus conv_build(const Tokenizer *t, const Conversation *c, const ConvOptions *o, ConvResult *r);
void conv_result_free(ConvResult *r);

#endif
