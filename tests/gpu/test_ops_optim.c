// Emulator / device checks of the once-per-step optimizer ops: the
// multi-tensor AdamW launch against the per-tensor launches (bitwise) and the
// CPU (tolerance), the many-buffer sum of squares and the on-device loss sum
// against the host loops they replace (bitwise).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "tests/gpu/gpu_harness.h"
#include "tests/testlib.h"

#define TOL_BF16 2e-2
#define TOL_F32 1e-5
#define MULTI_MAX 16

// count tensors of lengths len[] (0 allowed) laid end to end in one buffer per
// field, as the optimizer's slice; groups with different lr / decay.
static void check_adamw_multi(Harness *h, const size_t *len, int count, int stochastic) {
    char op[64];
    snprintf(op, sizeof op, "adamw_multi %d tensors sr=%d", count, stochastic);
    size_t off[MULTI_MAX], n = 0;
    for (int k = 0; k < count; k++) off[k] = n, n += len[k];
    const AdamwGroup groups[4] = {{1e-3f, 0.1f}, {1e-3f, 0.0f}, {2.5e-3f, 0.05f}, {2.5e-3f, 0.0f}};
    float *master = h_rand(h, n, 0.5f);
    for (size_t i = 0; i < n; i++) master[i] *= 1.0f + 1e-3f * (float)(i % 7);  // not bf16-exact
    float *grad = h_rand(h, n, 0.1f), *m0 = h_rand(h, n, 0.01f), *v0 = h_rand(h, n, 0.03f);
    for (size_t i = 0; i < n; i++) v0[i] *= v0[i];
    // Two device copies of the state: [0] per-tensor launches, [1] one multi launch.
    void *dp[2];
    float *dmw[2], *dm[2], *dv[2];
    float *dg = d_f32(h, grad, n);
    for (int c = 0; c < 2; c++) {
        dp[c] = d_act(h, master, n);
        dmw[c] = d_f32(h, master, n), dm[c] = d_f32(h, m0, n), dv[c] = d_f32(h, v0, n);
    }
    AdamwTensor t[2][MULTI_MAX], tc[MULTI_MAX];
    float *p_c = h_copy(master, n), *m_c = h_copy(m0, n), *v_c = h_copy(v0, n), *p_c1 = h_copy(master, n);
    float *m_c1 = h_copy(m0, n), *v_c1 = h_copy(v0, n);
    for (int k = 0; k < count; k++) {
        uint32_t seed = stochastic ? 1000u + 7u * (uint32_t)k : 0u;
        for (int c = 0; c < 2; c++)
            t[c][k] = (AdamwTensor){(char *)dp[c] + off[k] * 2, dmw[c] + off[k], dg + off[k], dm[c] + off[k],
                                    dv[c] + off[k], len[k], k % 4, seed};
        tc[k] = (AdamwTensor){p_c1 + off[k], NULL, grad + off[k], m_c1 + off[k], v_c1 + off[k], len[k], k % 4, seed};
        const AdamwGroup *g = &groups[k % 4];
        h->gpu->adamw_update(t[0][k].param, t[0][k].master, t[0][k].grad, t[0][k].m, t[0][k].v, len[k], g->lr, 0.9f,
                             0.95f, 1e-8f, g->weight_decay, 0.7f, 3, seed);
        h->cpu->adamw_update(p_c + off[k], NULL, grad + off[k], m_c + off[k], v_c + off[k], len[k], g->lr, 0.9f,
                             0.95f, 1e-8f, g->weight_decay, 0.7f, 3, seed);
    }
    h->gpu->adamw_update_multi(t[1], count, groups, 4, 0.9f, 0.95f, 1e-8f, 0.7f, 3);
    h->cpu->adamw_update_multi(tc, count, groups, 4, 0.9f, 0.95f, 1e-8f, 0.7f, 3);
    float *got[2][4];
    for (int c = 0; c < 2; c++) {
        got[c][0] = down_act(h, dp[c], n), got[c][1] = down_f32(h, dmw[c], n);
        got[c][2] = down_f32(h, dm[c], n), got[c][3] = down_f32(h, dv[c], n);
    }
    const char *what[4] = {"bf16 param", "master", "m", "v"};
    char name[96];
    for (int f = 0; f < 4; f++) {
        snprintf(name, sizeof name, "%s %s multi vs per-tensor", op, what[f]);
        h_check_bitwise(h, name, got[1][f], got[0][f], n);
    }
    h_check(h, op, "master vs cpu", got[1][1], p_c, n, TOL_F32);
    h_check(h, op, "bf16 param vs cpu", got[1][0], p_c, n, TOL_BF16);
    h_check(h, op, "m vs cpu", got[1][2], m_c, n, TOL_F32);
    snprintf(name, sizeof name, "%s cpu multi vs per-tensor", op);
    h_check_bitwise(h, name, p_c1, p_c, n);
    h_check_bitwise(h, name, m_c1, m_c, n);
    h_check_bitwise(h, name, v_c1, v_c, n);
    for (int c = 0; c < 2; c++)
        for (int f = 0; f < 4; f++) free(got[c][f]);
    free(master), free(grad), free(m0), free(v0), free(p_c), free(m_c), free(v_c), free(p_c1), free(m_c1), free(v_c1);
    h_release(h);
}

static void check_sum_squares_multi(Harness *h, const size_t *len, int count) {
    const float *dg[MULTI_MAX], *hg[MULTI_MAX];
    double per = 0.0, cpu = 0.0;
    for (int k = 0; k < count; k++) {
        float *g = h_rand(h, len[k] ? len[k] : 1, 1e-2f);
        hg[k] = g;
        dg[k] = d_f32(h, g, len[k] ? len[k] : 1);
        per += h->gpu->sum_squares(dg[k], len[k]);
        cpu += h->cpu->sum_squares(g, len[k]);
    }
    double multi = h->gpu->sum_squares_multi(dg, len, count);
    double cpu_multi = h->cpu->sum_squares_multi(hg, len, count);
    double err = fabs(multi - cpu) / cpu;
    EXPECT(multi == per && cpu_multi == cpu && err < 1e-10,
           "sum_squares_multi %d buffers: gpu %s per-buffer loop, cpu %s, rel err vs cpu %.3e", count,
           multi == per ? "==" : "!=", cpu_multi == cpu ? "==" : "!=", err);
    if (h->verbose) printf("  %-28s %-22s %s, rel err %.3e\n", "sum_squares_multi", "vs loop", "bitwise", err);
    for (int k = 0; k < count; k++) free((void *)hg[k]);
    h_release(h);
}

static void check_sum_losses(Harness *h, int n) {
    float *losses = h_rand(h, (size_t)(n ? n : 1), 3.0f);
    for (int i = 0; i < n; i++) losses[i] = fabsf(losses[i]);
    double want = 0.0;
    for (int i = 0; i < n; i++) want += losses[i];
    float *dl = d_f32(h, losses, (size_t)(n ? n : 1));
    double *dsum = d_poison(h, sizeof(double)), got = -1.0, cpu = -1.0;
    h->gpu->sum_losses(dsum, dl, n);
    h->gpu->download(&got, dsum, sizeof got);
    h->cpu->sum_losses(&cpu, losses, n);
    EXPECT(got == want && cpu == want, "sum_losses n=%d: gpu %.17g cpu %.17g host loop %.17g", n, got, cpu, want);
    if (h->verbose) printf("  sum_losses n=%-15d %-22s %s\n", n, "vs host loop", got == want ? "bitwise" : "DIFFER");
    free(losses);
    h_release(h);
}

void run_optim_checks(Harness *h, int large) {
    // Lengths around the 256-thread block edge, an empty tensor, a long one.
    const size_t small[] = {1, 255, 256, 257, 0, 10007, 3, 513};
    const size_t big[] = {4096, 11008 * 64 + 1, 0, 1, 4096 * 4096 + 5, 255};
    const int ns = (int)(sizeof small / sizeof *small), nb = (int)(sizeof big / sizeof *big);
    check_adamw_multi(h, small, ns, 0);
    check_adamw_multi(h, small, ns, 1);
    if (large) check_adamw_multi(h, big, nb, 1);
    check_sum_squares_multi(h, small, ns);
    if (large) check_sum_squares_multi(h, big, nb);
    check_sum_losses(h, 0);
    check_sum_losses(h, 1);
    check_sum_losses(h, large ? 4093 : 1031);
}
