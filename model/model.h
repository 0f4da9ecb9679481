// The LLaVA model: CLIP vision tower (frozen, forward only) -> projector ->
// LLaMA with image features spliced in at image-token positions -> masked
// cross-entropy. Written once against the op table (kernels/ops.h).
//
// Usage:
//   model_init(&m, &cfg, ops); checkpoint_load_*(&m, ...);
//   model_set_stage(&m, 2); model_set_recompute(&m, 1);
//   model_forward(&m, &batch, ...); model_backward(&m, 1.0f / counted_tokens);
//   gradients are in m.grads[module] (fp32, laid out like m.weights); with
//   model_set_grad_dtype(&m, 1, ...) backward writes bf16 ones into
//   m.grads16 instead (see there).
#ifndef LLAVA_MODEL_H
#define LLAVA_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/ops.h"
#include "model/config.h"
#include "model/params.h"

#define LABEL_IGNORE (-100)

// One micro-batch, in host memory.
typedef struct {
    int B, T;
    const int32_t *input_ids;  // [B*T]; each image is image_seq_length image tokens
    const int32_t *labels;     // [B*T], LABEL_IGNORE = no loss; NULL = no loss at all
    const int32_t *seg;        // [B*T] segment ids (0 = padding, see AttnShape) or NULL
    const int32_t *pos;        // [B*T] positions or NULL for 0..T-1 in every row
    int n_images;
    const float *pixels;       // [n_images, 3, S, S], normalized
    // The same pixels rounded to bf16 (common/util.h f32_to_bf16) or NULL. A
    // backend whose activations are bf16 uploads these bytes as they are (the
    // loader's workers rounded them, and PCIe carries half of fp32's bytes);
    // any other backend uses `pixels`.
    const uint16_t *pixels_bf16;
} LlavaBatch;

// LoRA on the LLM's linear layers: out += scale * B (A dropout(x)), A [r, in],
// B [out, r], in MODULE_LORA. Targets in layer order (PEFT's module names).
typedef enum { LORA_Q, LORA_K, LORA_V, LORA_O, LORA_GATE, LORA_UP, LORA_DOWN, LORA_TARGETS } LoraTarget;

// Per-layer activations of the LLM saved for backward (M = B*T rows).
typedef struct {
    void *ln1;        // [M, C]
    float *ln1_rstd;  // [M]
    void *qkv;        // [M, (NH+2NKV)*HS], q and k after RoPE
    void *att;        // [M, NH*HS]
    float *lse;       // [B, NH, T]
    void *h;          // [M, C] residual after attention
    void *ln2;        // [M, C]
    float *ln2_rstd;  // [M]
    void *gateup;     // [M, 2I]
    void *mlp;        // [M, I] silu(gate) * up
    void *lora_u[LORA_TARGETS];  // [M, r] per LoRA target: dropout(x) A^T (NULL when not targeted)
} LayerActs;

typedef struct {
    int M_cap, N_cap;        // capacity: rows B*T and images
    int B, T, M, N;          // shape of the current batch
    void *arena;             // one allocation for everything below
    size_t arena_bytes;      // its size
    int32_t *ids, *targets, *pos, *seg;  // [M] backend copies
    int32_t *image_rows;     // [N * image_tokens] rows of the spliced features
    int32_t *cls_drop_rows;  // [N * patches] rows of features kept when CLS is dropped
    int has_seg;
    void **x;                // [L+1] residual stream inputs of each layer, [M, C] each
    LayerActs *layer;        // [L], or [1] shared scratch when recomputing
    void *lnf;               // [M, C]
    float *lnf_rstd;         // [M]
    void *logits;            // [M, V] ([K, V] labeled-only); holds dlogits after backward
    int K;                   // labeled-only mode: rows with a target in this batch
    int32_t *head_rows;      // [M] (first K used) those rows, ascending
    int32_t *head_targets;   // [M] (first K used) their targets
    void *head_in;           // [M, C] (first K used) the final norm's output at those rows
    float *losses;           // [M]
    // backward scratch
    void *dres, *dln, *dqkv, *datt, *dgateup, *dmlp;
    // vision tower and projector, NV = N * vision_tokens, NF = N * image_tokens
    void *pixels;            // [N, 3, S, S]
    void *patches;           // [N * patches, 3*P*P]
    void *patch_emb;         // [N * patches, Dv]
    void *vx, *vx2;          // [NV, Dv] residual stream ping-pong
    void *vln, *vqkv, *vatt, *vfc;  // [NV, Dv], [NV, 3Dv], [NV, Dv], [NV, Iv]
    float *vmean, *vrstd;    // [NV]
    float *vlse;             // [N, Hv, patches+1]
    void *feat;              // [NF, Dv] selected vision features
    void *ph1, *pg, *pout;   // [NF, C] projector pre-activation, gelu, output
    void *dpout, *dpg;       // [NF, C]
    // LoRA scratch (only with adapters): K = widest input, N = widest output
    void *lora_x;            // [M, K] dropout(x)
    void *lora_y;            // [M, N] u B^T (forward), scale * d(out) (backward)
    void *lora_du;           // [M, r]
    void *lora_dx;           // [M, K]
} Activations;

// Element offsets of each layer's tensors inside the module buffers (the
// same offsets index weights and gradients).
typedef struct {
    size_t ln1_w, ln1_b, qkv_w, qkv_b, out_w, out_b, ln2_w, ln2_b, fc1_w, fc1_b, fc2_w, fc2_b;
} VisionLayerOffsets;

typedef struct {
    size_t ln1_w, qkv_w, o_w, ln2_w, gateup_w, down_w;
    size_t qkv_b, o_b, gateup_b, down_b;  // SIZE_MAX when the config has no such bias
} LlmLayerOffsets;

typedef struct {
    size_t cls, patch_w, patch_b, pos_emb, pre_w, pre_b;  // vision (CLIP: no patch_b; SigLIP: no cls, pre_*)
    VisionLayerOffsets *vis;                     // [vision layers]
    size_t w1, b1, w2, b2;                       // projector (b* = SIZE_MAX when absent)
    size_t embed, norm_w, head;                  // llm (head = embed when tied)
    LlmLayerOffsets *llm;                        // [llm layers]
} ModelOffsets;

// Where train/zero.c steps in around each layer of the LLM (MODULE_LLM) and
// of the vision tower (MODULE_VISION, forward only): ZeRO-2 reduces a layer's
// gradients as soon as its backward has produced them, ZeRO-3 gathers a
// layer's weights before it runs and frees them after. With recompute, the
// layer's rerun happens between BEFORE_BACKWARD and AFTER_BACKWARD.
typedef enum { LAYER_BEFORE_FORWARD, LAYER_AFTER_FORWARD, LAYER_BEFORE_BACKWARD, LAYER_AFTER_BACKWARD } LayerEvent;
typedef void (*LayerHook)(void *ctx, ModuleId module, int layer, LayerEvent event);

typedef struct {
    int r;                 // rank; 0 = no adapters
    float alpha, dropout;
    int rslora;            // scale = alpha / sqrt(r) instead of alpha / r
    unsigned targets;      // bit mask of 1 << LoraTarget
    float scale;
    size_t *a_off, *b_off; // [layers * LORA_TARGETS] offsets in MODULE_LORA, SIZE_MAX when absent
    int dropout_active;    // training: apply dropout (inference never does)
    uint64_t dropout_seed; // set by the trainer before every forward (seed, step, micro-batch, rank)
} LoraState;

typedef struct {
    LlavaConfig cfg;
    const Ops *ops;
    ModelOffsets off;
    ParamTable params;
    void *weights[MODULE_COUNT];  // act dtype, one allocation per module
    // fp32 gradients, NULL for frozen modules. With bf16 gradients: the fp32
    // accumulator the micro-batches' bf16 gradients are folded into
    // (model_accumulate_grads), allocated only when asked (grad_accum > 1).
    float *grads[MODULE_COUNT];
    // bf16 gradients (grad_bf16 only): what backward writes, through the
    // backend's bf16_grads table (m->ops then is that table). NULL otherwise.
    void *grads16[MODULE_COUNT];
    int grad_bf16;                // 1: bf16 gradients (model_set_grad_dtype)
    int grad_fp32_accumulator;    // with grad_bf16: keep m->grads as the fp32 accumulator
    int trainable[MODULE_COUNT];
    int recompute;                // RECOMPUTE_*: gradient checkpointing per LLM layer
    int head_labeled_only;        // LM head + loss only on rows with a target (training)
    float *rope_inv_freq;         // [head_dim/2] backend fp32, only for scaled RoPE (linear, llama3)
    LoraState lora;               // adapters (model/lora.h), r = 0 when none
    Activations acts;
    int n_counted;                // targets counted by the last forward
    double loss_sum;              // sum of token losses of the last forward (NAN when loss_slot is set)
    // When not NULL (one double, backend memory) and the backend has
    // sum_losses, the forward writes its loss sum there instead of reading it
    // back (the trainer reads all micro-batches' sums once per step).
    double *loss_slot;
    LayerHook layer_hook;         // NULL unless sharded training (train/zero.c) set it
    void *layer_hook_ctx;
} LlavaModel;

// Lays out parameters and allocates weights (zero). Loading fills them.
void model_init(LlavaModel *m, const LlavaConfig *cfg, const Ops *ops);
void model_free(LlavaModel *m);
// Stage 0: nothing trains (inference). 1: projector. 2: projector + LLM, or
// with LoRA adapters attached projector + adapters (the LLM stays frozen).
// The vision tower never trains. Allocates gradients for trainable modules.
void model_set_stage(LlavaModel *m, int stage);
// Gradient checkpointing of the LLM layers. FULL keeps only each layer's
// input and reruns the layer in backward (a third more LLM FLOPs, the least
// memory). SELECTIVE keeps the matmul outputs (qkv, att, h, gateup, and lse)
// and recomputes only the norms (with their rstds) and SwiGLU (no matmul).
// OFF already shares the norm outputs and the SwiGLU output across layers and
// rebuilds them in backward when weights or adapters train (see plan in
// model.c), so SELECTIVE saves beyond OFF only the two per-layer rstd rows
// (M floats each). All three give bitwise the same results, with LoRA adapters too (their r-wide u is
// kept per layer in SELECTIVE; their inputs are the recomputed values).
enum { RECOMPUTE_OFF = 0, RECOMPUTE_FULL = 1, RECOMPUTE_SELECTIVE = 2 };
void model_set_recompute(LlavaModel *m, int mode);
// Training: the LM head and the cross-entropy run only on the rows that have a
// target (gathered first): image tokens, prompts and padding never need
// logits. Same loss and gradients as all rows, a fraction of the head's FLOPs
// and none of its wasted [M, V] traffic. Off (every row's logits) by default,
// for `llava forward`, generation and anything that reads model_logits.
void model_set_head_labeled_only(LlavaModel *m, int on);
// Sizes the activation arena for micro-batches of up to `rows` (B*T) rows and
// `images` images now, so that variable-length batches never reallocate it
// mid-run (on a GPU a reallocation synchronizes). A larger batch later still
// grows it.
void model_reserve(LlavaModel *m, int rows, int images);
// Bytes of the activation arena for micro-batches of `rows` rows and `images`
// images under the current recompute mode, LoRA buffers included when
// adapters are attached (the plan, sized without
// allocating), and of everything else training holds: weights, fp32
// gradients of the trainable modules (fp32, or bf16 plus the fp32
// accumulator when there is one) and AdamW's state (m, v, and fp32 master
// weights where parameters are bf16), unsharded.
size_t model_activation_bytes(const LlavaModel *m, int rows, int images);
size_t model_training_state_bytes(const LlavaModel *m);
// Drops the activation plan (the next forward plans again): after the layout changes (LoRA attached).
void model_replan(LlavaModel *m);
// bf16 parameter gradients (bf16 = 1) on a backend that has them
// (ops->bf16_grads; the CPU has not: -1 with err), with an fp32 accumulator
// when fp32_accumulator (several micro-batches per step: bf16 sums of many
// micro-batches lose precision). Call before model_set_stage.
int model_set_grad_dtype(LlavaModel *m, int bf16, int fp32_accumulator, Error *err);
// (Re)allocates the gradient buffers to the trainable modules and the
// gradient dtype (model_set_stage and model_set_grad_dtype call it).
void model_grads_allocate(LlavaModel *m);
// With bf16 gradients and the accumulator: m->grads += m->grads16, then
// m->grads16 = 0 (after each micro-batch's backward). No-op otherwise.
void model_accumulate_grads(LlavaModel *m);
// The gradient buffer of a module that the optimizer step reads: fp32
// m->grads[mod] (*is_bf16 = 0) when it exists, else the bf16 m->grads16[mod]
// (*is_bf16 = 1), NULL for a frozen module.
void *model_step_grads(const LlavaModel *m, ModuleId mod, int *is_bf16);
// Where backward adds the gradient of element `off` of a module: into the
// fp32 gradients, or the bf16 ones with bf16 gradients; NULL when frozen
// (or off is SIZE_MAX, no such tensor).
void *model_backward_grad(const LlavaModel *m, ModuleId mod, size_t off);
void model_zero_grads(LlavaModel *m);
size_t model_num_params(const LlavaModel *m, int trainable_only);
// Pointer to a tensor's weights / fp32 gradient (NULL if frozen or, with bf16
// gradients, when there is no fp32 accumulator), by canonical name.
void *model_weight(const LlavaModel *m, const ParamInfo *p);
float *model_grad(const LlavaModel *m, const ParamInfo *p);

// Checks the batch against the config (token ids, image count, sizes);
// returns -1 with a message naming the row and position otherwise.
int model_check_batch(const LlavaModel *m, const LlavaBatch *b, Error *err);
// Number of labels that count in the loss (what model_forward will report
// as n_counted), computed on the host without running the model.
int model_count_targets(const LlavaBatch *b);
// Runs the forward pass; fills m->loss_sum and m->n_counted (targets of this
// micro-batch). Returns -1 only for a batch that fails model_check_batch.
int model_forward(LlavaModel *m, const LlavaBatch *b, Error *err);
// Backward from the last forward. dloss_scale multiplies d(sum of token
// losses): 1/n_counted gives the mean; the trainer passes 1/(tokens counted
// over the whole global batch). Gradients accumulate into m->grads.
void model_backward(LlavaModel *m, float dloss_scale);
// RoPE on the q and k heads of qkv[M, (NH+2NKV)*HS] at positions pos[M]
// (backend memory), with the config's scaling; direction +1 forward, -1 the
// inverse (backward). Shared with generation (eval/generate.c).
void model_rope(const LlavaModel *m, void *qkv, const int32_t *pos, int M, int direction);
// Logits of the last forward, [B*T, V] in act dtype (valid until backward);
// with model_set_head_labeled_only, [K, V] for the labeled rows only.
const void *model_logits(const LlavaModel *m);

#endif
