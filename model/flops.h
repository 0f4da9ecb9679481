// Model FLOPs of one training micro-batch (forward + backward), from the
// batch's real lengths, for the MFU column of `llava train` and `llava bench`
// (PaLM / llm.c style: 2 FLOPs per multiply-add of every matmul the step
// needs, attention scores and weighted sums over the key/query pairs a causal
// mask leaves visible, nothing for norms or elementwise ops). What counts:
// - LLM matmuls on every non-padding token; backward 2x forward where the
//   LLM trains (input + weight gradients), 1x where only activation gradients
//   flow (stage 1);
// - attention over each document's visible pairs, n (n + 1) / 2 for a
//   document of n tokens (packed documents see only their own keys; padding
//   queries are work, not model FLOPs); backward 2x forward in both stages;
// - the LM head only on labeled rows (a prompt or image row needs no logits);
// - the vision tower forward only (frozen), the projector forward + weight
//   gradients (+ the input gradient of its second linear);
// - LoRA adapters (adapter_params weights, model/lora.h) on every non-padding
//   token: 2 FLOPs per weight forward (x A^T, u B^T), 4 backward (their input
//   and weight gradients), as main's trainer counted them.
#ifndef LLAVA_FLOPS_H
#define LLAVA_FLOPS_H

#include "model/config.h"
#include "model/model.h"

double flops_micro_batch(const LlavaConfig *c, int llm_trains, size_t adapter_params, const LlavaBatch *b);

#endif
