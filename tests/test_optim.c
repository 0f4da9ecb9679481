// The CPU AdamW op against torch.optim.AdamW trajectories
// (tests/fixtures/optim, from scripts/make_optim_reference.py), and the clip
// factor (grad_scale) applied inside the update.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/safetensors.h"
#include "kernels/ops.h"
#include "train/optim.h"
#include "tests/testlib.h"

static float *get(const StFile *f, const char *name, int64_t *n) {
    const StTensor *t = st_find(f, name);
    if (!t) {
        fprintf(stderr, "missing %s\n", name);
        exit(1);
    }
    float *v = malloc((size_t)t->numel * sizeof(float));
    Error err;
    if (st_read_f32(f, t, v, &err) != 0) exit(1);
    if (n) *n = t->numel;
    return v;
}

int main(int argc, char **argv) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/fixtures/optim/adamw.safetensors", argc > 1 ? argv[1] : ".");
    StFile f;
    Error err = {{0}};
    if (st_open(&f, path, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    const Ops *ops = ops_cpu();
    for (int k = 0; k < 2; k++) {
        char name[64];
        int64_t n;
        snprintf(name, sizeof name, "case%d.p0", k);
        float *p = get(&f, name, &n);
        snprintf(name, sizeof name, "case%d.hparams", k);
        float *hp = get(&f, name, NULL);
        float *m = calloc((size_t)n, sizeof(float)), *v = calloc((size_t)n, sizeof(float));
        for (int step = 1; step <= 3; step++) {
            snprintf(name, sizeof name, "case%d.g%d", k, step);
            float *g = get(&f, name, NULL);
            ops->adamw_update(p, NULL, g, m, v, (size_t)n, hp[0], hp[1], hp[2], hp[3], hp[4], 1.0f, step, 0);
            snprintf(name, sizeof name, "case%d.p%d", k, step);
            float *want = get(&f, name, NULL);
            double e = rel_error(p, want, (size_t)n);
            EXPECT(e < 1e-6, "case %d step %d: rel error %.3e vs torch AdamW", k, step, e);
            free(g);
            free(want);
        }
        free(p); free(hp); free(m); free(v);
    }
    // grad_scale s on gradient g equals an unscaled update on s*g.
    float p1[4] = {1, -2, 3, -4}, p2[4] = {1, -2, 3, -4}, g[4] = {0.5f, -1, 2, 0.1f}, gs[4];
    float m1[4] = {0}, v1[4] = {0}, m2[4] = {0}, v2[4] = {0};
    for (int i = 0; i < 4; i++) gs[i] = 0.25f * g[i];
    ops->adamw_update(p1, NULL, g, m1, v1, 4, 0.1f, 0.9f, 0.999f, 1e-8f, 0.01f, 0.25f, 1, 0);
    ops->adamw_update(p2, NULL, gs, m2, v2, 4, 0.1f, 0.9f, 0.999f, 1e-8f, 0.01f, 1.0f, 1, 0);
    EXPECT(memcmp(p1, p2, sizeof p1) == 0 && memcmp(v1, v2, sizeof v1) == 0, "grad_scale is applied to the gradient");
    // LR schedules vs transformers' get_*_schedule_with_warmup, step by step.
    const char *kinds[] = {"cosine", "linear", "constant"};
    for (int k = 0; k < 3; k++)
        for (int w = 0; w <= 2; w += 2) {
            char name[64];
            snprintf(name, sizeof name, "sched.%s.w%d", kinds[k], w);
            int64_t n = 0;
            float *want = get(&f, name, &n);
            EXPECT(schedule_warmup_steps(0.03, 0, n) == 2, "warmup ceil(0.03 * 50) = 2");
            for (int64_t s = 0; s < n; s++) {
                double got = schedule_lr_factor(kinds[k], (long)s, (long)n, w);
                if (fabs(got - want[s]) > 1e-6) {
                    EXPECT(0, "%s warmup %d step %lld: %.7f vs transformers %.7f", kinds[k], w, (long long)s, got,
                           want[s]);
                    break;
                }
            }
            free(want);
        }
    st_close(&f);
    return test_summary("test_optim");
}
