// AdamW over the trainable tensors (decoupled weight decay, none on biases and
// norm weights, as the HF Trainer), parameter groups by module (the projector
// may have its own LR), global-norm clipping, and the LR schedules of the HF
// Trainer (linear warmup, then cosine / linear / constant).
#ifndef LLAVA_OPTIM_H
#define LLAVA_OPTIM_H

#include "train/model.h"

typedef struct {
    double beta1, beta2, eps, weight_decay;
    double projector_lr_scale;  // projector LR = lr * this
    // fp32 state per module, only for trainable ones (backend memory):
    float *m[MODULE_COUNT], *v[MODULE_COUNT];
    float *master[MODULE_COUNT];  // fp32 master weights when the act dtype is not fp32
} Optimizer;

void optim_init(Optimizer *o, const LlavaModel *m, double beta1, double beta2, double eps, double weight_decay,
                double projector_lr_scale);
void optim_free(Optimizer *o, const LlavaModel *m);
// sqrt of the sum of squares of every trainable gradient.
double optim_grad_norm(const LlavaModel *m);
// One AdamW step at learning rate lr with the gradient multiplied by
// grad_scale (the clip factor). step is 1-based (bias correction).
void optim_step(Optimizer *o, LlavaModel *m, double lr, float grad_scale, int step);
// torch.nn.utils.clip_grad_norm_'s factor: min(1, max_norm / (norm + 1e-6)).
float optim_clip_factor(double norm, double max_norm);

// LR multiplier at optimizer step `step` (0-based, as the HF Trainer's
// LambdaLR: the first step with warmup runs at 0). kind: cosine | linear |
// constant.
double schedule_lr_factor(const char *kind, long step, long total_steps, long warmup_steps);
// The HF Trainer's warmup length: ceil(ratio * total).
long schedule_warmup_steps(double warmup_ratio, int warmup_steps, long total_steps);

#endif
