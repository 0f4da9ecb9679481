// LoRA adapters on the LLM's linear layers, PEFT's formulation:
//   out = W x + scale * B (A dropout(x)),  A [r, in], B [out, r],
//   scale = alpha / r (rsLoRA: alpha / sqrt(r)).
// The adapters live in MODULE_LORA (one allocation, trainable, with the
// gradients and optimizer state of any trainable module); the base LLM stays
// frozen (no gradient, no optimizer state). q, k, v and gate, up keep their
// fused base matmuls: each adapter adds into its column block of the fused
// output, and B A is never materialized (except by lora_merge).
#ifndef LLAVA_LORA_H
#define LLAVA_LORA_H

#include "model/model.h"

typedef struct {
    int r;
    float alpha, dropout;
    int rslora;
    unsigned targets;  // bit mask of 1 << LoraTarget
} LoraSpec;

// The input width K and output width N of a target, and where its output
// columns sit in the (fused) base output: columns [col0, col0 + N) of ld.
typedef struct {
    int K, N, ld, col0;
} LoraGeom;

LoraGeom lora_geometry(const LlavaConfig *cfg, LoraTarget t);
// PEFT / transformers module name of a target inside a decoder layer: "self_attn.q_proj", "mlp.down_proj".
const char *lora_target_module(LoraTarget t);
// Parses "all" or a comma list of q,k,v,o,gate,up,down (or q_proj, ..., down_proj).
int lora_parse_targets(const char *list, unsigned *mask, Error *err);

// Lays out and allocates the adapters (zero) and re-plans the activations.
// Call after loading the base and before model_set_stage.
void lora_attach(LlavaModel *m, const LoraSpec *spec);
// PEFT's initializations: "kaiming" (its default: A ~ U(-1/sqrt(in), 1/sqrt(in)),
// as kaiming_uniform_(a=sqrt(5)); B = 0) or "gaussian" (A ~ N(0, 1/r), B = 0).
int lora_init_weights(LlavaModel *m, const char *init, uint64_t seed, Error *err);
// Folds every adapter into its base weight (W += scale B A) and removes the
// adapters: what inference and `llava merge` use.
void lora_merge(LlavaModel *m);
void lora_free(LlavaModel *m);

// Model hooks (model/model.c). x: the target's input [M, K]; out: the base
// output (the target writes columns [col0, col0 + N)); u saved in L.
void lora_forward(LlavaModel *m, int layer, LoraTarget t, LayerActs *L, const void *x, void *out);
// dout: gradient of the base output (same layout as out); dx += the adapter's
// input gradient; adapter gradients accumulate.
void lora_backward(LlavaModel *m, int layer, LoraTarget t, LayerActs *L, const void *x, const void *dout, void *dx);

#endif
