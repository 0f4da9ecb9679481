// AdamW parameter groups on a real model (tests/fixtures/tiny_llava15):
// decoupled weight decay never touches biases and norm weights (the HF
// Trainer's rule), the projector's LR multiplier applies only to the
// projector, and frozen modules (the vision tower) never change.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/checkpoint.h"
#include "train/optim.h"
#include "tests/testlib.h"

static float *copy_weights(const LlavaModel *m, const ParamInfo *p) {
    float *h = malloc(p->numel * sizeof(float));
    m->ops->download_act(h, model_weight(m, p), p->numel);
    return h;
}

int main(int argc, char **argv) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/tiny_llava15", argc > 1 ? argv[1] : ".");
    LlavaModel m;
    Error err;
    if (checkpoint_load_llava(&m, dir, ops_cpu(), &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    model_set_stage(&m, 2);
    model_zero_grads(&m);  // zero gradients: AdamW's moment terms vanish, only decay acts
    Optimizer opt;
    const double lr = 0.1, wd = 0.5, proj_scale = 3.0;
    optim_init(&opt, &m, 0.9, 0.999, 1e-8, wd, proj_scale, 0, 1);
    float **before = calloc((size_t)m.params.n, sizeof(float *));
    for (int i = 0; i < m.params.n; i++) before[i] = copy_weights(&m, &m.params.p[i]);
    optim_step(&opt, &m, lr, 1.0f, 1);
    int checked_decay = 0, checked_plain = 0;
    for (int i = 0; i < m.params.n; i++) {
        const ParamInfo *p = &m.params.p[i];
        float *after = copy_weights(&m, p);
        double scale = p->module == MODULE_PROJECTOR ? lr * proj_scale : lr;
        int ok = 1;
        for (size_t k = 0; k < p->numel; k++) {
            float want = before[i][k];
            if (p->module != MODULE_VISION && !p->no_decay) want = before[i][k] * (float)(1.0 - scale * wd);
            ok &= fabsf(after[k] - want) <= 1e-6f * (1.0f + fabsf(want));
        }
        const char *name = p->name;
        size_t len = strlen(name);
        int is_bias_or_norm = (len > 5 && strcmp(name + len - 5, ".bias") == 0) || strstr(name, "norm") ||
                              strstr(name, "class_embedding");
        EXPECT(p->no_decay == is_bias_or_norm, "%s: no_decay flag %d", name, p->no_decay);
        EXPECT(ok, "%s (%s, no_decay %d): update not as expected", name, module_name(p->module), p->no_decay);
        checked_decay += !p->no_decay && p->module != MODULE_VISION;
        checked_plain += p->no_decay && p->module != MODULE_VISION;
        free(after);
        free(before[i]);
    }
    EXPECT(checked_decay > 5 && checked_plain > 3, "both kinds of tensors were checked (%d, %d)", checked_decay,
           checked_plain);
    free(before);
    optim_free(&opt, &m);
    model_free(&m);
    return test_summary("test_optim_groups");
}
