// Gradient norm and AdamW for fp32 parameters.
#include <math.h>

#include "kernels/cpu/cpu_math.h"
#include "common/util.h"
#include "kernels/cpu/cpu_ops.h"

// Fixed-size chunks summed in index order: the result does not depend on the
// number of threads.
#define SUMSQ_CHUNK 65536

double cpu_sum_squares(const float *grad, size_t n) {
    size_t chunks = (n + SUMSQ_CHUNK - 1) / SUMSQ_CHUNK;
    double total = 0.0;
    double partial[256];
    for (size_t base = 0; base < chunks; base += 256) {
        size_t count = chunks - base < 256 ? chunks - base : 256;
#pragma omp parallel for schedule(static)
        for (size_t c = 0; c < count; c++) {
            size_t lo = (base + c) * SUMSQ_CHUNK, hi = lo + SUMSQ_CHUNK < n ? lo + SUMSQ_CHUNK : n;
            partial[c] = cpu_sumsq_lanes(grad + lo, hi - lo);
        }
        for (size_t c = 0; c < count; c++) total += partial[c];
    }
    return total;
}

// The update of torch.optim.AdamW (decoupled weight decay), step by step:
//   p *= 1 - lr*wd;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
//   p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// Elementwise IEEE operations only (sqrt and division are correctly
// rounded, the file has no contraction): the same bits at any vector width.
typedef struct {
    float beta1, beta2, eps, grad_scale, bc2_sqrt, step_size, decay;
} AdamwCoefs;

CPU_SIMD_CLONES
static void adamw_chunk(float *p, float *param_copy, const float *grad, float *m, float *v, size_t n,
                        const AdamwCoefs *k) {
    const float beta1 = k->beta1, beta2 = k->beta2, eps = k->eps, grad_scale = k->grad_scale;
    const float bc2_sqrt = k->bc2_sqrt, step_size = k->step_size, decay = k->decay;
    for (size_t i = 0; i < n; i++) {
        float g = grad[i] * grad_scale;
        float mi = beta1 * m[i] + (1.0f - beta1) * g;
        float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] * decay - step_size * mi / denom;
    }
    if (param_copy)
        for (size_t i = 0; i < n; i++) param_copy[i] = p[i];
}

#define ADAMW_CHUNK 16384

void cpu_adamw_update(void *param_, float *master, const float *grad, float *m, float *v, size_t n, float lr,
                      float beta1, float beta2, float eps, float weight_decay, float grad_scale, int step,
                      uint32_t seed) {
    (void)seed;  // fp32 parameters: no rounding to do
    float *p = master ? master : (float *)param_;
    float *copy = master ? (float *)param_ : NULL;
    float bc1 = 1.0f - powf(beta1, (float)step);
    AdamwCoefs k = {.beta1 = beta1, .beta2 = beta2, .eps = eps, .grad_scale = grad_scale,
                    .bc2_sqrt = sqrtf(1.0f - powf(beta2, (float)step)), .step_size = lr / bc1,
                    .decay = 1.0f - lr * weight_decay};
    const size_t chunks = (n + ADAMW_CHUNK - 1) / ADAMW_CHUNK;
#pragma omp parallel for schedule(static)
    for (size_t c = 0; c < chunks; c++) {
        size_t lo = c * ADAMW_CHUNK, len = n - lo < ADAMW_CHUNK ? n - lo : ADAMW_CHUNK;
        adamw_chunk(p + lo, copy ? copy + lo : NULL, grad + lo, m + lo, v + lo, len, &k);
    }
}

// The multi-tensor ops: the per-tensor ones in order (the CPU has no launches
// to save; these keep the backends' tables alike and are the reference the
// CUDA versions are checked against).
void cpu_adamw_update_multi(const AdamwTensor *tensors, int count, const AdamwGroup *groups, int n_groups,
                            float beta1, float beta2, float eps, float grad_scale, int step) {
    (void)n_groups;
    for (int i = 0; i < count; i++) {
        const AdamwTensor *t = &tensors[i];
        if (!t->n) continue;
        CHECK(!t->grad_bf16, "adamw_update_multi: tensor %d has bf16 gradients, which the CPU backend does not have",
              i);
        cpu_adamw_update(t->param, t->master, t->grad, t->m, t->v, t->n, groups[t->group].lr, beta1, beta2, eps,
                         groups[t->group].weight_decay, grad_scale, step, t->seed);
    }
}

double cpu_sum_squares_multi(const float *const *grads, const size_t *n, int count) {
    double total = 0.0;
    for (int i = 0; i < count; i++) total += cpu_sum_squares(grads[i], n[i]);
    return total;
}

void cpu_sum_losses(double *sum, const float *losses, int n) {
    double total = 0.0;
    for (int i = 0; i < n; i++) total += losses[i];
    *sum = total;
}
