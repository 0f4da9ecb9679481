// Parameter-gradient buffers of the model (model.h): fp32, or bf16 with the
// optional fp32 accumulator (grad_dtype "bf16"), and which one backward
// writes and the optimizer step reads.
#include "model/model.h"

#include <stdint.h>

void *model_backward_grad(const LlavaModel *m, ModuleId mod, size_t off) {
    if (off == SIZE_MAX) return NULL;
    if (m->grad_bf16) return m->grads16[mod] ? (char *)m->grads16[mod] + off * m->ops->grad_size : NULL;
    return m->grads[mod] ? m->grads[mod] + off : NULL;
}

// Gradient buffers for the trainable modules, none for the frozen ones: fp32
// (m->grads) unless gradients are bf16 (m->grads16, plus m->grads as the
// fp32 accumulator when asked for).
void model_grads_allocate(LlavaModel *m) {
    for (int i = 0; i < MODULE_COUNT; i++) {
        const size_t n = m->params.module_numel[i];
        const int fp32 = m->trainable[i] && (!m->grad_bf16 || m->grad_fp32_accumulator);
        const int bf16 = m->trainable[i] && m->grad_bf16;
        if (fp32 && !m->grads[i]) m->grads[i] = m->ops->alloc(n * sizeof(float));
        if (!fp32 && m->grads[i]) {
            m->ops->free(m->grads[i]);
            m->grads[i] = NULL;
        }
        if (bf16 && !m->grads16[i]) m->grads16[i] = m->ops->alloc(n * m->ops->grad_size);
        if (!bf16 && m->grads16[i]) {
            m->ops->free(m->grads16[i]);
            m->grads16[i] = NULL;
        }
    }
}

int model_set_grad_dtype(LlavaModel *m, int bf16, int fp32_accumulator, Error *err) {
    if (bf16 && !m->ops->bf16_grads)
        return err_set(err, "grad_dtype \"bf16\" needs --device cuda: the %s backend keeps fp32 gradients (it is "
                       "the fp32 reference)", m->ops->name);
    if (!bf16 && m->grad_bf16)  // the model holds the bf16 table now, which has no way back
        return err_set(err, "this model already has bf16 gradients: load it again for fp32 ones");
    if (bf16) m->ops = m->ops->bf16_grads;
    m->grad_bf16 = !!bf16;
    m->grad_fp32_accumulator = bf16 && fp32_accumulator;
    model_grads_allocate(m);
    return 0;
}

void model_accumulate_grads(LlavaModel *m) {
    if (!m->grad_bf16 || !m->grad_fp32_accumulator) return;
    for (int i = 0; i < MODULE_COUNT; i++)
        if (m->grads[i] && m->grads16[i])
            m->ops->grad_accumulate(m->grads[i], m->grads16[i], m->params.module_numel[i]);
}

void *model_step_grads(const LlavaModel *m, ModuleId mod, int *is_bf16) {
    *is_bf16 = !m->grads[mod] && m->grads16[mod];
    return m->grads[mod] ? (void *)m->grads[mod] : m->grads16[mod];
}

void model_zero_grads(LlavaModel *m) {
    for (int i = 0; i < MODULE_COUNT; i++) {
        if (m->grads[i]) m->ops->zero(m->grads[i], m->params.module_numel[i] * sizeof(float));
        if (m->grads16[i]) m->ops->zero(m->grads16[i], m->params.module_numel[i] * m->ops->grad_size);
    }
}

float *model_grad(const LlavaModel *m, const ParamInfo *p) {
    return m->grads[p->module] ? m->grads[p->module] + p->offset : NULL;
}
