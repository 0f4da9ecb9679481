#include "model/lora.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "kernels/lora_mask.h"

#define NO_TENSOR SIZE_MAX

static const char *MODULES[LORA_TARGETS] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                            "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                            "mlp.down_proj"};
static const char *SHORT[LORA_TARGETS] = {"q", "k", "v", "o", "gate", "up", "down"};

const char *lora_target_module(LoraTarget t) { return t < LORA_TARGETS ? MODULES[t] : "?"; }

LoraGeom lora_geometry(const LlavaConfig *cfg, LoraTarget t) {
    const TextConfig *x = &cfg->text;
    const int C = x->hidden, I = x->intermediate, HS = x->head_dim;
    const int Q = x->heads * HS, KV = x->kv_heads * HS, QKV = Q + 2 * KV;
    switch (t) {
    case LORA_Q: return (LoraGeom){C, Q, QKV, 0};
    case LORA_K: return (LoraGeom){C, KV, QKV, Q};
    case LORA_V: return (LoraGeom){C, KV, QKV, Q + KV};
    case LORA_O: return (LoraGeom){Q, C, C, 0};
    case LORA_GATE: return (LoraGeom){C, I, 2 * I, 0};
    case LORA_UP: return (LoraGeom){C, I, 2 * I, I};
    default: return (LoraGeom){I, C, C, 0};
    }
}

int lora_parse_targets(const char *list, unsigned *mask, Error *err) {
    *mask = 0;
    if (strcmp(list, "all") == 0) {
        *mask = (1u << LORA_TARGETS) - 1;
        return 0;
    }
    char buf[256];
    if (strlen(list) >= sizeof buf) return err_set(err, "lora_targets \"%s\" is too long", list);
    snprintf(buf, sizeof buf, "%s", list);
    for (char *save = NULL, *tok = strtok_r(buf, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
        int found = -1;
        for (int t = 0; t < LORA_TARGETS; t++) {
            const char *leaf = strchr(MODULES[t], '.') + 1;  // q_proj
            if (strcmp(tok, SHORT[t]) == 0 || strcmp(tok, leaf) == 0) found = t;
        }
        if (found < 0)
            return err_set(err, "lora_targets: unknown target \"%s\" (use all, or a list of q, k, v, o, gate, up, down)",
                           tok);
        *mask |= 1u << found;
    }
    if (!*mask) return err_set(err, "lora_targets is empty");
    return 0;
}

void lora_attach(LlavaModel *m, const LoraSpec *spec) {
    CHECK(spec->r > 0 && !m->lora.r, "LoRA attached twice or with rank %d", spec->r);
    LoraState *s = &m->lora;
    const int L = m->cfg.text.layers;
    s->r = spec->r;
    s->alpha = spec->alpha;
    s->dropout = spec->dropout;
    s->rslora = spec->rslora;
    s->targets = spec->targets;
    s->scale = spec->rslora ? spec->alpha / sqrtf((float)spec->r) : spec->alpha / (float)spec->r;
    s->a_off = xmalloc((size_t)L * LORA_TARGETS * sizeof(size_t));
    s->b_off = xmalloc((size_t)L * LORA_TARGETS * sizeof(size_t));
    for (int l = 0; l < L; l++)
        for (int t = 0; t < LORA_TARGETS; t++) {
            size_t *a = &s->a_off[l * LORA_TARGETS + t], *b = &s->b_off[l * LORA_TARGETS + t];
            *a = *b = NO_TENSOR;
            if (!(spec->targets & (1u << t))) continue;
            LoraGeom g = lora_geometry(&m->cfg, (LoraTarget)t);
            char canon[112], file[200];
            for (int ab = 0; ab < 2; ab++) {
                const char *which = ab ? "lora_B" : "lora_A";
                int64_t shape[2] = {ab ? g.N : spec->r, ab ? spec->r : g.K};
                snprintf(canon, sizeof canon, "lora.layers.%d.%s.%s.weight", l, MODULES[t], which);
                // PEFT's name for a LlavaForConditionalGeneration base (transformers >= 4.52 module tree)
                snprintf(file, sizeof file, "base_model.model.model.language_model.layers.%d.%s.%s.weight", l,
                         MODULES[t], which);
                *(ab ? b : a) = m->params.module_numel[MODULE_LORA];
                params_append(&m->params, MODULE_LORA, 2, shape, canon, file);
            }
        }
    if (m->weights[MODULE_LORA]) m->ops->free(m->weights[MODULE_LORA]);
    m->weights[MODULE_LORA] = m->ops->alloc(m->params.module_numel[MODULE_LORA] * m->ops->act_size);
    model_replan(m);
}

int lora_init_weights(LlavaModel *m, const char *init, uint64_t seed, Error *err) {
    int gaussian = strcmp(init, "gaussian") == 0;
    if (!gaussian && strcmp(init, "kaiming") != 0)
        return err_set(err, "lora_init must be kaiming (PEFT's default) or gaussian, not \"%s\"", init);
    Rng rng;
    rng_seed(&rng, seed ^ 0x4c6f5241496e6974ull);
    for (int i = 0; i < m->params.n; i++) {
        const ParamInfo *p = &m->params.p[i];
        if (p->module != MODULE_LORA || !strstr(p->name, "lora_A")) continue;  // B stays zero
        float *host = xmalloc(p->numel * sizeof(float));
        float bound = 1.0f / sqrtf((float)p->shape[1]), std = 1.0f / (float)m->lora.r;
        for (size_t k = 0; k < p->numel; k++)
            host[k] = gaussian ? std * rng_normal(&rng) : (2.0f * rng_uniform(&rng) - 1.0f) * bound;
        m->ops->upload_act(model_weight(m, p), host, p->numel);
        free(host);
    }
    return 0;
}

void lora_free(LlavaModel *m) {
    free(m->lora.a_off);
    free(m->lora.b_off);
    memset(&m->lora, 0, sizeof m->lora);
}

static void *lora_w(const LlavaModel *m, size_t off) {
    return (char *)m->weights[MODULE_LORA] + off * m->ops->act_size;
}
static void *lora_g(const LlavaModel *m, size_t off) { return model_backward_grad(m, MODULE_LORA, off); }

// Each (layer, target) draws its own mask, as PEFT has one Dropout per layer.
static uint64_t dropout_seed(const LlavaModel *m, int layer, LoraTarget t) {
    return lora_mask_hash(m->lora.dropout_seed, (uint64_t)layer * LORA_TARGETS + (uint64_t)t);
}

static int dropout_on(const LlavaModel *m) { return m->lora.dropout_active && m->lora.dropout > 0.0f; }

void lora_forward(LlavaModel *m, int layer, LoraTarget t, LayerActs *L, const void *x, void *out) {
    const LoraState *s = &m->lora;
    if (!s->r) return;
    size_t ao = s->a_off[layer * LORA_TARGETS + t], bo = s->b_off[layer * LORA_TARGETS + t];
    if (ao == NO_TENSOR) return;
    const Ops *o = m->ops;
    Activations *a = &m->acts;
    const int M = a->M, r = s->r;
    LoraGeom g = lora_geometry(&m->cfg, t);
    const void *xd = x;
    if (dropout_on(m)) {
        o->dropout(a->lora_x, x, (size_t)M * g.K, s->dropout, dropout_seed(m, layer, t));
        xd = a->lora_x;
    }
    o->matmul_forward(L->lora_u[t], xd, lora_w(m, ao), NULL, M, g.K, r);          // u[M,r] = xd A^T
    o->matmul_forward(a->lora_y, L->lora_u[t], lora_w(m, bo), NULL, M, r, g.N);   // y[M,N] = u B^T
    o->add_columns(out, g.ld, g.col0, a->lora_y, M, g.N, s->scale);
}

void lora_backward(LlavaModel *m, int layer, LoraTarget t, LayerActs *L, const void *x, const void *dout, void *dx) {
    const LoraState *s = &m->lora;
    if (!s->r) return;
    size_t ao = s->a_off[layer * LORA_TARGETS + t], bo = s->b_off[layer * LORA_TARGETS + t];
    if (ao == NO_TENSOR) return;
    const Ops *o = m->ops;
    Activations *a = &m->acts;
    const int M = a->M, r = s->r;
    LoraGeom g = lora_geometry(&m->cfg, t);
    uint64_t seed = dropout_seed(m, layer, t);
    // dy = scale * d(out)[:, block]; dB += dy^T u; du = dy B
    o->copy_columns(a->lora_y, dout, g.ld, g.col0, M, g.N, s->scale);
    o->matmul_backward(a->lora_du, lora_g(m, bo), NULL, a->lora_y, L->lora_u[t], lora_w(m, bo), M, r, g.N);
    // dA += du^T dropout(x) (the same mask again); d(dropout(x)) = du A
    const void *xd = x;
    if (dropout_on(m)) {
        o->dropout(a->lora_x, x, (size_t)M * g.K, s->dropout, seed);
        xd = a->lora_x;
    }
    o->matmul_backward(a->lora_dx, lora_g(m, ao), NULL, a->lora_du, xd, lora_w(m, ao), M, g.K, r);
    if (dropout_on(m)) o->dropout(a->lora_dx, a->lora_dx, (size_t)M * g.K, s->dropout, seed);
    o->accumulate(dx, a->lora_dx, (size_t)M * g.K);
}

void lora_merge(LlavaModel *m) {
    LoraState *s = &m->lora;
    if (!s->r) return;
    const Ops *o = m->ops;
    const int r = s->r;
    for (int l = 0; l < m->cfg.text.layers; l++)
        for (int t = 0; t < LORA_TARGETS; t++) {
            size_t ao = s->a_off[l * LORA_TARGETS + t], bo = s->b_off[l * LORA_TARGETS + t];
            if (ao == NO_TENSOR) continue;
            LoraGeom g = lora_geometry(&m->cfg, (LoraTarget)t);
            char name[112];
            snprintf(name, sizeof name, "llm.layers.%d.%s.weight", l, MODULES[t]);
            const ParamInfo *w = params_find(&m->params, name);
            CHECK(w && w->shape[0] == g.N && w->shape[1] == g.K, "%s missing or of another shape", name);
            // delta[N,K] = B[N,r] @ (scale A)[r,K] as matmul_forward(B, (scale A)^T) on the backend
            float *A = xmalloc((size_t)r * g.K * sizeof(float)), *At = xmalloc((size_t)r * g.K * sizeof(float));
            o->download_act(A, lora_w(m, ao), (size_t)r * g.K);
            for (int i = 0; i < r; i++)
                for (int k = 0; k < g.K; k++) At[(size_t)k * r + i] = s->scale * A[(size_t)i * g.K + k];
            void *at = o->alloc((size_t)r * g.K * o->act_size), *delta = o->alloc((size_t)g.N * g.K * o->act_size);
            o->upload_act(at, At, (size_t)r * g.K);
            o->matmul_forward(delta, lora_w(m, bo), at, NULL, g.N, r, g.K);
            o->accumulate(model_weight(m, w), delta, (size_t)g.N * g.K);
            o->free(at);
            o->free(delta);
            free(A);
            free(At);
        }
    // Drop the adapters: the table keeps only base tensors again.
    ParamTable *pt = &m->params;
    while (pt->n > 0 && pt->p[pt->n - 1].module == MODULE_LORA) free(pt->p[--pt->n].file_name);
    strmap_free(&pt->index);
    strmap_init(&pt->index);
    for (int i = 0; i < pt->n; i++) CHECK(strmap_put(&pt->index, pt->p[i].name, i), "duplicate %s", pt->p[i].name);
    pt->module_numel[MODULE_LORA] = 0;
    if (m->grads[MODULE_LORA]) o->free(m->grads[MODULE_LORA]);
    if (m->grads16[MODULE_LORA]) o->free(m->grads16[MODULE_LORA]);
    m->grads[MODULE_LORA] = NULL;
    m->grads16[MODULE_LORA] = NULL;
    m->trainable[MODULE_LORA] = 0;
    lora_free(m);
    model_replan(m);
}
