// Fused softmax + cross-entropy with ignore index: per row, one pass for the
// max, one for the sum, and (when training) one writing dlogits in place.
#include <math.h>

#include "kernels/cpu/cpu_ops.h"

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
            if (dx)
                for (int v = 0; v < V; v++) dx[v] = 0.0f;
            continue;
        }
        float mx = -INFINITY;
        for (int v = 0; v < V; v++) mx = x[v] > mx ? x[v] : mx;
        double sum = 0.0;
        for (int v = 0; v < V; v++) sum += exp((double)x[v] - mx);
        double lse = mx + log(sum);
        losses[m] = (float)(lse - x[t]);
        if (dx) {
            // x and dx may be the same memory: read x[v] before writing dx[v].
            for (int v = 0; v < V; v++) {
                float p = (float)exp((double)x[v] - lse);
                dx[v] = (p - (v == t ? 1.0f : 0.0f)) * dloss_scale;
            }
        }
    }
}
