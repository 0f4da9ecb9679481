// Gradient norm and AdamW for fp32 parameters.
#include <math.h>

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
            double s = 0.0;
            for (size_t i = lo; i < hi; i++) s += (double)grad[i] * grad[i];
            partial[c] = s;
        }
        for (size_t c = 0; c < count; c++) total += partial[c];
    }
    return total;
}

// The update of torch.optim.AdamW (decoupled weight decay), step by step:
//   p *= 1 - lr*wd;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
//   p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
void cpu_adamw_update(void *param_, float *master, const float *grad, float *m, float *v, size_t n, float lr,
                      float beta1, float beta2, float eps, float weight_decay, float grad_scale, int step,
                      uint32_t seed) {
    (void)seed;  // fp32 parameters: no rounding to do
    float *p = master ? master : (float *)param_;
    float bc1 = 1.0f - powf(beta1, (float)step);
    float bc2_sqrt = sqrtf(1.0f - powf(beta2, (float)step));
    float step_size = lr / bc1;
    float decay = 1.0f - lr * weight_decay;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float g = grad[i] * grad_scale;
        m[i] = beta1 * m[i] + (1.0f - beta1) * g;
        v[i] = beta2 * v[i] + (1.0f - beta2) * g * g;
        float denom = sqrtf(v[i]) / bc2_sqrt + eps;
        p[i] = p[i] * decay - step_size * m[i] / denom;
    }
    if (master) {
        float *param = param_;
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) param[i] = master[i];
    }
}
