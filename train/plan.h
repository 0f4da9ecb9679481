// The memory planner behind `llava plan` and the trainer's start-up check:
// what one process (one GPU) holds, by part, for zero_stage 0..3, from the
// model's shape and the run config alone (no weights are read or allocated).
//
// Parts, per process, N processes, T trainable parameters, A bytes per weight
// and activation (2 on CUDA: bf16; 4 on the CPU: fp32):
//   weights     every weight at A bytes; ZeRO-3: the LLM layers 1/N, plus the
//               layers gathered at a time (the one in use and the prefetched one);
//               with shard_frozen the vision tower's layers the same way
//   gradients   fp32 of the trainable tensors; ZeRO-2/3: 1/N, plus the
//               bucket in flight (one layer) and the non-layer tensors
//               (embedding, head, projector: reduced after backward).
//               grad_dtype bf16 (zero_stage 0/1): 2 bytes each, plus the
//               fp32 accumulator (4 more) when grad_accum > 1; the ZeRO-2/3
//               rows stay fp32 (bf16 is refused there for now)
//   optimizer   AdamW's m and v (fp32) and fp32 masters where A < 4; ZeRO-1+: 1/N
//   activations the activation arena of one micro-batch of micro_batch x
//               max_length rows and micro_batch images (the worst case), as
//               train/model.c lays it out, with and without recompute
//   workspace   an allowance for the CUDA context, cuBLASLt workspace and the
//               allocator's slack (0 on the CPU)
//   comm        NCCL's buffers (an allowance), or on the CPU the temporary
//               buffer MPI_Reduce's root takes (the largest reduced message)
#ifndef LLAVA_PLAN_H
#define LLAVA_PLAN_H

#include <stdio.h>

#include "model/config.h"

// The model's recompute modes (train/model.h: RECOMPUTE_OFF/FULL/SELECTIVE).
enum { PLAN_RECOMPUTE_OFF = 0, PLAN_RECOMPUTE_FULL = 1, PLAN_RECOMPUTE_SELECTIVE = 2 };

typedef struct {
    int world;           // processes (GPUs)
    int stage;           // 1 or 2: what trains
    int micro_batch, max_length;
    int recompute;       // PLAN_RECOMPUTE_*: the run's setting (the table shows full and none)
    int act_bytes;       // 2 (CUDA, bf16) or 4 (CPU)
    int shard_frozen;    // ZeRO-3 shards the frozen modules' layers too
    double lora_params;  // > 0: LoRA adapters train (this many elements) and the LLM is frozen
    int lora_r;          // their rank and targets (bit mask of 1 << LoraTarget), for the activations
    unsigned lora_targets;
    double capacity;     // bytes per process; <= 0 = unknown
    int grad_bytes;      // parameter gradient element: 4 (fp32; 0 reads as 4) or 2 (grad_dtype bf16)
    int grad_accum;      // micro-batches per step: with bf16 gradients > 1 adds the fp32 accumulator
} PlanInput;

typedef struct {
    double weights, grads, optimizer, acts, acts_recompute, acts_no_recompute, workspace, comm, total;
    int fits;            // 1 fits, 0 does not, -1 capacity unknown
} PlanRow;

typedef struct {
    size_t vision, projector, llm, llm_layer;  // parameters: per module, one LLM layer
    size_t vision_layer;                       // one vision tower layer
    int layers, vision_layers;
    PlanRow row[4];                            // zero_stage 0..3
} Plan;

void plan_compute(Plan *p, const LlavaConfig *cfg, const PlanInput *in);
// Bytes of the activation arena of M rows and N images (the model's layout),
// recompute a PLAN_RECOMPUTE_* mode, LoRA adapters of rank lora_r on the
// targets in the mask (0: none).
double plan_activation_bytes(const LlavaConfig *cfg, int M, int N, int recompute, int lora_r, unsigned lora_targets,
                             int act_bytes);
void plan_print(const Plan *p, const PlanInput *in, int mark_stage, FILE *out);
void plan_print_json(const Plan *p, const PlanInput *in, FILE *out);
// When zero_stage `zs` does not fit: the first change that makes it fit, as
// "--set key=value" text into buf (higher zero_stage, recompute, then a
// smaller micro_batch), or "" when nothing here fits.
void plan_suggest(const LlavaConfig *cfg, const PlanInput *in, int zs, char *buf, size_t cap);
// "12.3 GiB" / "850.0 MiB" / "12.0 KiB"
void plan_format_bytes(double bytes, char *buf, size_t cap);

#endif
