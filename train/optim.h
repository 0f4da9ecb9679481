// AdamW over the trainable tensors (decoupled weight decay, none on biases and
// norm weights, as the HF Trainer), parameter groups by module (the projector
// may have its own LR), global-norm clipping, the LR schedules of the HF
// Trainer (linear warmup, then cosine / linear / constant), and ZeRO-1
// sharding of the optimizer state.
//
// The state lives in one flat space: every trainable tensor in layout order,
// trainable modules one after the other (projector, then LLM). A process owns
// the slice [begin, end) of it: everything when the state is replicated, 1/W
// of it with ZeRO-1 (then each process updates its slice and the weights are
// all-gathered; see trainer.c).
#ifndef LLAVA_OPTIM_H
#define LLAVA_OPTIM_H

#include "model/model.h"

typedef struct {
    double beta1, beta2, eps, weight_decay;
    double projector_lr_scale;            // projector LR = lr * this
    int stochastic_rounding;              // low-precision weights rounded stochastically from the masters
    int per_tensor;                       // 1: adamw_update per tensor even when the backend has the multi-tensor op
    size_t total;                         // trainable elements (the flat space)
    size_t begin, end;                    // this process's slice
    size_t module_start[MODULE_COUNT];    // where each trainable module starts in the flat space
    // fp32 state of the slice (backend memory), [end - begin] each:
    float *m, *v;
    float *master;  // fp32 master weights when the act dtype is not fp32, else NULL
} Optimizer;

// shard_rank/shard_world: the slice this process owns (world 1 = all of it).
void optim_init(Optimizer *o, const LlavaModel *m, double beta1, double beta2, double eps, double weight_decay,
                double projector_lr_scale, int shard_rank, int shard_world);
void optim_free(Optimizer *o, const LlavaModel *m);
// sqrt of the sum of squares of every trainable gradient.
double optim_grad_norm(const LlavaModel *m);
// One AdamW step on this process's slice at learning rate lr with the
// gradient multiplied by grad_scale (the clip factor); step is 1-based.
void optim_step(Optimizer *o, LlavaModel *m, double lr, float grad_scale, int step);
// torch.nn.utils.clip_grad_norm_'s factor: min(1, max_norm / (norm + 1e-6)).
float optim_clip_factor(double norm, double max_norm);
// The slice [*begin, *end) of the flat space that process `rank` of `world` owns.
void optim_slice(size_t total, int rank, int world, size_t *begin, size_t *end);
// The part of module `mod`'s buffer (elements from its start) that lies in
// the flat slice [begin, end): returns its length, *module_offset its start.
size_t optim_module_part(const Optimizer *o, const LlavaModel *m, ModuleId mod, size_t begin, size_t end,
                         size_t *module_offset);

// LR multiplier at optimizer step `step` (0-based, as the HF Trainer's
// LambdaLR: the first step with warmup runs at 0). kind: cosine | linear |
// constant.
double schedule_lr_factor(const char *kind, long step, long total_steps, long warmup_steps);
// The HF Trainer's warmup length: ceil(ratio * total).
long schedule_warmup_steps(double warmup_ratio, int warmup_steps, long total_steps);

#endif
