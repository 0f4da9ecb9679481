// Text generation on the LLaVA model with a KV cache, through the op table.
//
// Prefill runs the prompt through model_forward (vision tower, projector,
// splice, LLM) and copies each layer's rope'd keys and values out of the saved
// activations into the cache; each decode step then runs only the new tokens
// through the LLM layers, attending to the cache (ops kv_cache_write and
// attention_cached). Prompts of different lengths share a batch: each sequence
// keeps its own length in the cache, so there is no padding inside it and
// positions are 0..n-1 per sequence, as transformers' left-padded generate
// computes them.
//
// Usage:
//   Generator g; gen_init(&g, &model, B_cap, T_cap, &err);
//   gen_generate(&g, prompts, B, &opt, outputs, &err);   // or prefill/step
//   gen_free(&g);
#ifndef LLAVA_GENERATE_H
#define LLAVA_GENERATE_H

#include <stdint.h>

#include "common/rng.h"
#include "eval/sample.h"
#include "model/model.h"

// One prompt: token ids with each image already expanded to image_seq_length
// image tokens (what model_forward takes), and that prompt's images.
typedef struct {
    const int32_t *ids;
    int n;
    int n_images;
    const float *pixels;  // [n_images, 3, S, S], normalized
} GenPrompt;

typedef struct {
    SampleParams sample;
    int max_new_tokens;
    int eos_id;     // stop a sequence when it produces this token; -1: never
    uint64_t seed;  // sequence b samples from its own stream seeded by (seed, b)
    // Called for every new token as it is chosen (streaming), or NULL.
    void (*on_token)(void *ctx, int seq, int token);
    void *ctx;
} GenOptions;

typedef enum { GEN_STOP_EOS, GEN_STOP_LENGTH, GEN_STOP_CONTEXT } GenStop;

typedef struct {
    int32_t *ids;  // new tokens (the eos token included when it stopped there); owned
    int n;
    GenStop stop;
} GenOutput;

typedef struct {
    double prefill_s, decode_s;  // wall time of the last gen_generate
    long prefill_tokens, decode_tokens, decode_steps;
} GenStats;

typedef struct {
    LlavaModel *m;
    const Ops *ops;
    int B_cap, T_cap;  // sequences and positions per sequence the cache holds
    int L, KV;         // layers, NKV*HS
    void **k, **v;     // [L] caches, [B_cap * T_cap, KV] each (act dtype)
    int B;             // sequences in the cache now
    int32_t *lens;     // [B_cap] host: cache rows filled per sequence
    int32_t *tokens;   // [B_cap * T_cap] host: the token id at each cache row (-1 unknown)
    // step buffers for up to rows_cap = B * Tq rows, one backend allocation
    int rows_cap;
    void *arena;
    void *x, *ln, *qkv, *att, *h, *gateup, *mlp, *logits;  // [rows, C|QKV|ATT|C|2I|I|V]
    float *rstd;                                           // [rows]
    int32_t *d_ids, *d_pos, *d_slots, *d_lens;             // [rows], [rows], [rows], [B_cap]
    float *host_logits;                                    // [rows_cap, V]
    void *sample_scratch;
    GenStats stats;
} Generator;

// Allocates a cache for B_cap sequences of up to T_cap positions (capped at
// the model's max_position_embeddings). Turns recompute off on the model
// (prefill reads every layer's saved activations). Fails when the backend
// lacks the cache ops.
int gen_init(Generator *g, LlavaModel *m, int B_cap, int T_cap, Error *err);
void gen_free(Generator *g);

// Runs the B prompts through the model, filling the cache (it is reset
// first). logits[B, V] (host fp32, may be NULL) receives the logits at each
// prompt's last position: the distribution of the first new token.
int gen_prefill(Generator *g, const GenPrompt *prompts, int B, float *logits, Error *err);
// Appends Tq tokens to every sequence (tokens[B * Tq], sequence-major; text
// tokens only) and runs them through the LLM against the cache. logits
// [B * Tq, V] (host fp32, may be NULL) receives the logits of every new row.
int gen_step(Generator *g, const int32_t *tokens, int Tq, float *logits, Error *err);
// Keeps the first n cache rows of sequence b (drops the rest), so a sequence
// can be extended from a shared prefix (chat turns).
void gen_truncate(Generator *g, int b, int n);

// Continuous batching (llava serve): a sequence joins between steps by
// prefilling its prompt alone into slot B (the others keep their cache rows)
// and leaves by handing its slot to the last sequence, so slots 0 .. B-1 are
// always the ones gen_step runs. gen_join returns the new slot (-1 + err when
// the cache is full or the prompt is refused) and writes the logits of its
// first new token to logits[V]. gen_leave frees slot b and returns the slot
// whose sequence moved into b (-1 when none moved).
int gen_join(Generator *g, const GenPrompt *prompt, float *logits, Error *err);
int gen_leave(Generator *g, int b);

// Prefill + decode until every sequence stops (eos, max_new_tokens, or the
// cache is full). out[B] is filled; free each with gen_output_free.
int gen_generate(Generator *g, const GenPrompt *prompts, int B, const GenOptions *opt, GenOutput *out,
                 Error *err);
// Continues sequence 0 alone (B must be 1) from `ids`: keeps the cache rows
// whose tokens equal a prefix of ids, runs the rest as one step, then decodes
// like gen_generate. A prompt whose changed part holds image tokens is
// prefilled from scratch with its images.
int gen_continue(Generator *g, const GenPrompt *prompt, const GenOptions *opt, GenOutput *out, Error *err);
// Self-check of the cache path for one prompt: teacher-forces `tokens`
// through prefill + one-token steps and compares every step's logits with a
// full forward over the whole sequence so far. *max_rel gets the largest
// relative error (norm-wise, per step); *checked the steps compared (a
// generated image token id stops the check: a full forward would take it for
// an image slot; so does a full cache, after a stop for context).
int gen_verify(Generator *g, const GenPrompt *prompt, const int32_t *tokens, int n, double *max_rel, int *checked,
               Error *err);
void gen_output_free(GenOutput *o);
const char *gen_stop_name(GenStop s);

#endif
