#include "train/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void optim_slice(size_t total, int rank, int world, size_t *begin, size_t *end) {
    // total x world stays far below 2^64 for any model we can hold
    *begin = (size_t)((unsigned long long)total * (unsigned)rank / (unsigned)world);
    *end = (size_t)((unsigned long long)total * (unsigned)(rank + 1) / (unsigned)world);
}

void optim_init(Optimizer *o, const LlavaModel *m, double beta1, double beta2, double eps, double weight_decay,
                double projector_lr_scale, int shard_rank, int shard_world) {
    memset(o, 0, sizeof *o);
    o->beta1 = beta1;
    o->beta2 = beta2;
    o->eps = eps;
    o->weight_decay = weight_decay;
    o->projector_lr_scale = projector_lr_scale;
    for (int i = 0; i < MODULE_COUNT; i++) {
        o->module_start[i] = o->total;
        if (m->trainable[i]) o->total += m->params.module_numel[i];
    }
    optim_slice(o->total, shard_rank, shard_world, &o->begin, &o->end);
    const Ops *ops = m->ops;
    size_t n = o->end - o->begin;
    o->m = ops->alloc((n ? n : 1) * sizeof(float));
    o->v = ops->alloc((n ? n : 1) * sizeof(float));
    if (ops->act_size != sizeof(float)) {
        // fp32 master copy of the slice's low-precision weights, via the host
        o->master = ops->alloc((n ? n : 1) * sizeof(float));
        for (int i = 0; i < MODULE_COUNT; i++) {
            if (!m->trainable[i]) continue;
            size_t off, len = optim_module_part(o, m, (ModuleId)i, o->begin, o->end, &off);
            if (!len) continue;
            float *host = xmalloc(len * sizeof(float));
            ops->download_act(host, (char *)m->weights[i] + off * ops->act_size, len);
            ops->upload(o->master + (o->module_start[i] + off - o->begin), host, len * sizeof(float));
            free(host);
        }
    }
}

void optim_free(Optimizer *o, const LlavaModel *m) {
    if (o->m) m->ops->free(o->m);
    if (o->v) m->ops->free(o->v);
    if (o->master) m->ops->free(o->master);
    memset(o, 0, sizeof *o);
}

size_t optim_module_part(const Optimizer *o, const LlavaModel *m, ModuleId mod, size_t begin, size_t end,
                         size_t *module_offset) {
    size_t ms = o->module_start[mod], me = ms + (m->trainable[mod] ? m->params.module_numel[mod] : 0);
    size_t lo = begin > ms ? begin : ms, hi = end < me ? end : me;
    *module_offset = lo >= hi ? 0 : lo - ms;
    return lo >= hi ? 0 : hi - lo;
}

double optim_grad_norm(const LlavaModel *m) {
    const float *grads[MODULE_COUNT];
    const void *grads16[MODULE_COUNT];
    size_t n[MODULE_COUNT], n16[MODULE_COUNT];
    int count = 0, count16 = 0;
    for (int i = 0; i < MODULE_COUNT; i++) {
        int bf16 = 0;
        const void *g = model_step_grads(m, (ModuleId)i, &bf16);
        if (!g) continue;
        if (bf16) {
            grads16[count16] = g;
            n16[count16++] = m->params.module_numel[i];
        } else {
            grads[count] = g;
            n[count++] = m->params.module_numel[i];
        }
    }
    // bf16 gradients read directly (no accumulator): every trainable module's
    // are bf16 then, one pass of the bf16 op.
    if (count16) {
        CHECK(!count && m->ops->sum_squares_bf16_multi, "the %s backend cannot take the norm of bf16 gradients",
              m->ops->name);
        return sqrt(m->ops->sum_squares_bf16_multi(grads16, n16, count16));
    }
    // One read back from the device per step when the backend has the op.
    if (m->ops->sum_squares_multi) return sqrt(m->ops->sum_squares_multi(grads, n, count));
    double total = 0.0;
    for (int i = 0; i < count; i++) total += m->ops->sum_squares(grads[i], n[i]);
    return sqrt(total);
}

float optim_clip_factor(double norm, double max_norm) {
    if (max_norm <= 0 || !isfinite(norm)) return 1.0f;
    double c = max_norm / (norm + 1e-6);
    return c < 1.0 ? (float)c : 1.0f;
}

// Parameter groups: (LLM, projector) x (decay, no decay).
enum { OPTIM_GROUPS = 4 };
static int optim_group(const ParamInfo *p) { return (p->module == MODULE_PROJECTOR ? 2 : 0) + (p->no_decay ? 1 : 0); }

void optim_step(Optimizer *o, LlavaModel *m, double lr, float grad_scale, int step) {
    const size_t A = m->ops->act_size;
    AdamwGroup groups[OPTIM_GROUPS];
    for (int g = 0; g < OPTIM_GROUPS; g++) {
        double group_lr = g >= 2 ? lr * o->projector_lr_scale : lr;
        groups[g].lr = (float)group_lr;
        groups[g].weight_decay = (float)(g & 1 ? 0.0 : o->weight_decay);
    }
    AdamwTensor *tensors = xmalloc((size_t)(m->params.n ? m->params.n : 1) * sizeof *tensors);
    int count = 0;
    for (int i = 0; i < m->params.n; i++) {
        const ParamInfo *p = &m->params.p[i];
        if (!m->trainable[p->module]) continue;
        // The part of this tensor inside the slice, as [lo, hi) in the flat space.
        size_t fs = o->module_start[p->module] + p->offset;
        size_t lo = fs > o->begin ? fs : o->begin, hi = fs + p->numel < o->end ? fs + p->numel : o->end;
        if (lo >= hi) continue;
        size_t in_tensor = lo - fs, in_slice = lo - o->begin;
        // With stochastic rounding on, a seed that differs per step and tensor
        // drives it (never 0, which means round-to-nearest); fp32 backends
        // ignore it.
        uint32_t seed = 0;
        if (o->stochastic_rounding) {
            seed = (uint32_t)(step * 2654435761u) ^ (uint32_t)(i * 40503u + 1u);
            seed = seed ? seed : 1u;
        }
        int bf16 = 0;
        const char *g = model_step_grads(m, p->module, &bf16);
        const size_t G = bf16 ? m->ops->grad_size : sizeof(float);
        tensors[count++] = (AdamwTensor){.param = (char *)model_weight(m, p) + in_tensor * A,
                                         .master = o->master ? o->master + in_slice : NULL,
                                         .grad = (const float *)(g + (p->offset + in_tensor) * G),
                                         .grad_bf16 = bf16,
                                         .m = o->m + in_slice,
                                         .v = o->v + in_slice,
                                         .n = hi - lo,
                                         .group = optim_group(p),
                                         .seed = seed};
    }
    // One pass over the slice (one CUDA launch) when the backend has it, else
    // the same update tensor by tensor.
    // bf16 gradients read directly have only the multi-tensor op
    // (adamw_update reads fp32), whatever per_tensor asks.
    const int direct16 = m->grad_bf16 && !m->grad_fp32_accumulator;
    CHECK(!direct16 || m->ops->adamw_update_multi, "AdamW on bf16 gradients needs the backend's adamw_update_multi");
    if (m->ops->adamw_update_multi && (!o->per_tensor || direct16)) {
        m->ops->adamw_update_multi(tensors, count, groups, OPTIM_GROUPS, (float)o->beta1, (float)o->beta2,
                                   (float)o->eps, grad_scale, step);
    } else {
        for (int k = 0; k < count; k++) {
            const AdamwTensor *t = &tensors[k];
            m->ops->adamw_update(t->param, t->master, t->grad, t->m, t->v, t->n, groups[t->group].lr,
                                 (float)o->beta1, (float)o->beta2, (float)o->eps, groups[t->group].weight_decay,
                                 grad_scale, step, t->seed);
        }
    }
    free(tensors);
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
