// Fused softmax + cross-entropy with ignore index: per row, one pass for the
// max, one for exp(x - max) and its sum, and (when training) one turning
// those exponentials into dlogits in place. fp32 exp (cpu_expf_nonpos), the
// sum and the log-sum-exp in double; the loops vectorize (see cpu_math.h).
#include <math.h>
#include <string.h>

#include "kernels/cpu/cpu_math.h"
#include "kernels/cpu/cpu_ops.h"

// e[j] = exp(x[j] - mx) (e may be x itself).
CPU_SIMD_CLONES
static void ce_row_exp(float *e, const float *x, float mx, int n) {
    for (int j = 0; j < n; j++) e[j] = cpu_expf_nonpos(x[j] - mx);
}

// sum of exp(x[j] - mx) without storing the exponentials, in 8 double lanes.
CPU_SIMD_CLONES
static double ce_row_expsum(const float *x, float mx, int n) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; l++) acc[l] += (double)cpu_expf_nonpos(x[j + l] - mx);
    for (int l = 0; j < n; j++, l++) acc[l] += (double)cpu_expf_nonpos(x[j] - mx);
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

CPU_SIMD_CLONES
static void ce_row_scale(float *dx, float mul, int n) {
    for (int j = 0; j < n; j++) dx[j] *= mul;
}

void cpu_cross_entropy(float *losses, void *dlogits_, const void *logits_, const int32_t *targets, float dloss_scale,
                       int M, int V) {
    float *dlogits = dlogits_;
    const float *logits = logits_;
#pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++) {
        const float *x = logits + (size_t)m * V;
        float *dx = dlogits ? dlogits + (size_t)m * V : NULL;
        int t = targets[m];
        if (t < 0) {
            losses[m] = 0.0f;
            if (dx) memset(dx, 0, (size_t)V * sizeof(float));
            continue;
        }
        const float mx = cpu_max_lanes(x, V), xt = x[t];
        double sum;
        if (dx) {
            // x and dx may be the same memory: x[t] is read above, then
            // every element is read before it is overwritten.
            ce_row_exp(dx, x, mx, V);
            sum = cpu_sum_lanes(dx, V);
        } else {
            sum = ce_row_expsum(x, mx, V);
        }
        losses[m] = (float)((double)mx + log(sum) - xt);
        if (dx) {
            // dlogits = (softmax - onehot(t)) * dloss_scale
            const float inv = (float)(1.0 / sum);
            const float pt = dx[t] * inv;
            ce_row_scale(dx, inv * dloss_scale, V);
            dx[t] = (pt - 1.0f) * dloss_scale;
        }
    }
}
