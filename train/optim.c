#include "train/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void optim_init(Optimizer *o, const LlavaModel *m, double beta1, double beta2, double eps, double weight_decay,
                double projector_lr_scale) {
    memset(o, 0, sizeof *o);
    o->beta1 = beta1;
    o->beta2 = beta2;
    o->eps = eps;
    o->weight_decay = weight_decay;
    o->projector_lr_scale = projector_lr_scale;
    const Ops *ops = m->ops;
    for (int i = 0; i < MODULE_COUNT; i++) {
        if (!m->trainable[i]) continue;
        size_t n = m->params.module_numel[i];
        o->m[i] = ops->alloc(n * sizeof(float));
        o->v[i] = ops->alloc(n * sizeof(float));
        if (ops->act_size != sizeof(float)) {
            // fp32 master copy of low-precision weights, converted via the host
            float *host = xmalloc(n * sizeof(float));
            ops->download_act(host, m->weights[i], n);
            o->master[i] = ops->alloc(n * sizeof(float));
            ops->upload(o->master[i], host, n * sizeof(float));
            free(host);
        }
    }
}

void optim_free(Optimizer *o, const LlavaModel *m) {
    for (int i = 0; i < MODULE_COUNT; i++) {
        if (o->m[i]) m->ops->free(o->m[i]);
        if (o->v[i]) m->ops->free(o->v[i]);
        if (o->master[i]) m->ops->free(o->master[i]);
    }
    memset(o, 0, sizeof *o);
}

double optim_grad_norm(const LlavaModel *m) {
    double total = 0.0;
    for (int i = 0; i < MODULE_COUNT; i++)
        if (m->grads[i]) total += m->ops->sum_squares(m->grads[i], m->params.module_numel[i]);
    return sqrt(total);
}

float optim_clip_factor(double norm, double max_norm) {
    if (max_norm <= 0 || !isfinite(norm)) return 1.0f;
    double c = max_norm / (norm + 1e-6);
    return c < 1.0 ? (float)c : 1.0f;
}

void optim_step(Optimizer *o, LlavaModel *m, double lr, float grad_scale, int step) {
    for (int i = 0; i < m->params.n; i++) {
        const ParamInfo *p = &m->params.p[i];
        if (!m->trainable[p->module]) continue;
        double tensor_lr = p->module == MODULE_PROJECTOR ? lr * o->projector_lr_scale : lr;
        double wd = p->no_decay ? 0.0 : o->weight_decay;
        float *master = o->master[p->module] ? o->master[p->module] + p->offset : NULL;
        // A seed that differs per step and tensor drives stochastic rounding
        // of low-precision weights (ignored by fp32 backends).
        uint32_t seed = (uint32_t)(step * 2654435761u) ^ (uint32_t)(i * 40503u + 1u);
        m->ops->adamw_update(model_weight(m, p), master, model_grad(m, p), o->m[p->module] + p->offset,
                             o->v[p->module] + p->offset, p->numel, (float)tensor_lr, (float)o->beta1,
                             (float)o->beta2, (float)o->eps, (float)wd, grad_scale, step, seed);
    }
}

long schedule_warmup_steps(double warmup_ratio, int warmup_steps, long total_steps) {
    if (warmup_steps > 0) return warmup_steps;
    return (long)ceil(warmup_ratio * (double)total_steps);
}

double schedule_lr_factor(const char *kind, long step, long total, long warmup) {
    if (step < warmup) return (double)step / (double)(warmup > 1 ? warmup : 1);
    if (strcmp(kind, "constant") == 0) return 1.0;
    double span = (double)(total - warmup > 1 ? total - warmup : 1);
    double progress = (double)(step - warmup) / span;
    if (strcmp(kind, "linear") == 0) return progress >= 1.0 ? 0.0 : 1.0 - progress;
    // cosine with half a period, as transformers' get_cosine_schedule_with_warmup
    return progress >= 1.0 ? 0.0 : 0.5 * (1.0 + cos(M_PI * progress));
}
