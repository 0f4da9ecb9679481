// LLaVA forward and backward on the op table. Shapes: M = B*T text rows, C
// LLM width, N images, NP patches per image, NT = vision_tokens per image
// (NP+1 with CLIP's CLS, NP for SigLIP),
// NF = N * image_tokens spliced rows, Dv vision width.
#include "model/model.h"

#include "model/lora.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NO_TENSOR SIZE_MAX

// Address of element `elems` of an act-dtype buffer.
static void *act_at(const LlavaModel *m, const void *base, size_t elems) {
    return (char *)base + elems * m->ops->act_size;
}

// Weight and gradient addresses by offset inside a module. G is what
// backward writes (model_backward_grad, model/model_grads.c).
static void *W(const LlavaModel *m, ModuleId mod, size_t off) {
    return off == NO_TENSOR ? NULL : act_at(m, m->weights[mod], off);
}
static void *G(const LlavaModel *m, ModuleId mod, size_t off) { return model_backward_grad(m, mod, off); }

static size_t optional_offset(const ParamTable *t, const char *name) {
    const ParamInfo *p = params_find(t, name);
    return p ? p->offset : NO_TENSOR;
}

static void resolve_offsets(LlavaModel *m) {
    const ParamTable *t = &m->params;
    ModelOffsets *o = &m->off;
    const LlavaConfig *c = &m->cfg;
    o->cls = optional_offset(t, "vision.embeddings.class_embedding");
    o->patch_w = params_offset(t, "vision.embeddings.patch_embedding.weight");
    o->patch_b = optional_offset(t, "vision.embeddings.patch_embedding.bias");
    o->pos_emb = params_offset(t, "vision.embeddings.position_embedding.weight");
    o->pre_w = optional_offset(t, "vision.pre_layrnorm.weight");
    o->pre_b = optional_offset(t, "vision.pre_layrnorm.bias");
    o->vis = xcalloc((size_t)c->vision.layers, sizeof(VisionLayerOffsets));
    for (int l = 0; l < c->vision.layers; l++) {
        VisionLayerOffsets *v = &o->vis[l];
        const char *pre = "vision.encoder.layers";
        v->ln1_w = params_offset(t, "%s.%d.layer_norm1.weight", pre, l);
        v->ln1_b = params_offset(t, "%s.%d.layer_norm1.bias", pre, l);
        v->qkv_w = params_offset(t, "%s.%d.self_attn.q_proj.weight", pre, l);
        v->qkv_b = params_offset(t, "%s.%d.self_attn.q_proj.bias", pre, l);
        v->out_w = params_offset(t, "%s.%d.self_attn.out_proj.weight", pre, l);
        v->out_b = params_offset(t, "%s.%d.self_attn.out_proj.bias", pre, l);
        v->ln2_w = params_offset(t, "%s.%d.layer_norm2.weight", pre, l);
        v->ln2_b = params_offset(t, "%s.%d.layer_norm2.bias", pre, l);
        v->fc1_w = params_offset(t, "%s.%d.mlp.fc1.weight", pre, l);
        v->fc1_b = params_offset(t, "%s.%d.mlp.fc1.bias", pre, l);
        v->fc2_w = params_offset(t, "%s.%d.mlp.fc2.weight", pre, l);
        v->fc2_b = params_offset(t, "%s.%d.mlp.fc2.bias", pre, l);
    }
    o->w1 = params_offset(t, "projector.linear_1.weight");
    o->b1 = optional_offset(t, "projector.linear_1.bias");
    o->w2 = optional_offset(t, "projector.linear_2.weight");
    o->b2 = optional_offset(t, "projector.linear_2.bias");
    o->embed = params_offset(t, "llm.embed_tokens.weight");
    o->norm_w = params_offset(t, "llm.norm.weight");
    o->head = c->text.tied ? o->embed : params_offset(t, "llm.lm_head.weight");
    o->llm = xcalloc((size_t)c->text.layers, sizeof(LlmLayerOffsets));
    for (int l = 0; l < c->text.layers; l++) {
        LlmLayerOffsets *x = &o->llm[l];
        x->ln1_w = params_offset(t, "llm.layers.%d.input_layernorm.weight", l);
        x->qkv_w = params_offset(t, "llm.layers.%d.self_attn.q_proj.weight", l);
        x->o_w = params_offset(t, "llm.layers.%d.self_attn.o_proj.weight", l);
        x->ln2_w = params_offset(t, "llm.layers.%d.post_attention_layernorm.weight", l);
        x->gateup_w = params_offset(t, "llm.layers.%d.mlp.gate_proj.weight", l);
        x->down_w = params_offset(t, "llm.layers.%d.mlp.down_proj.weight", l);
        char name[160];
        snprintf(name, sizeof name, "llm.layers.%d.self_attn.q_proj.bias", l);
        x->qkv_b = optional_offset(t, name);
        snprintf(name, sizeof name, "llm.layers.%d.self_attn.o_proj.bias", l);
        x->o_b = optional_offset(t, name);
        snprintf(name, sizeof name, "llm.layers.%d.mlp.gate_proj.bias", l);
        x->gateup_b = optional_offset(t, name);
        snprintf(name, sizeof name, "llm.layers.%d.mlp.down_proj.bias", l);
        x->down_b = optional_offset(t, name);
    }
    // The fused matmuls rely on q/k/v and gate/up being adjacent.
    CHECK(params_offset(t, "llm.layers.0.mlp.up_proj.weight") ==
              o->llm[0].gateup_w + (size_t)c->text.intermediate * c->text.hidden,
          "gate/up not adjacent");
}

void model_init(LlavaModel *m, const LlavaConfig *cfg, const Ops *ops) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->ops = ops;
    params_build(&m->params, cfg);
    for (int i = 0; i < MODULE_COUNT; i++)
        if (m->params.module_numel[i]) m->weights[i] = ops->alloc(m->params.module_numel[i] * ops->act_size);
    resolve_offsets(m);
    if (cfg->text.rope_kind != ROPE_DEFAULT) {
        CHECK(ops->rope_freq_forward && ops->rope_freq_backward, "the %s backend has no scaled RoPE", ops->name);
        int half = cfg->text.head_dim / 2;
        float *host = xmalloc((size_t)half * sizeof(float));
        config_rope_inv_freq(&cfg->text, host);
        m->rope_inv_freq = ops->alloc((size_t)half * sizeof(float));
        ops->upload(m->rope_inv_freq, host, (size_t)half * sizeof(float));
        free(host);
    }
    if (cfg->vision.act == VISION_ACT_GELU_TANH)
        CHECK(ops->gelu_tanh_forward, "the %s backend has no tanh GELU", ops->name);
}

void model_rope(const LlavaModel *m, void *qkv, const int32_t *pos, int M, int direction) {
    const TextConfig *t = &m->cfg.text;
    const Ops *o = m->ops;
    if (m->rope_inv_freq) {
        if (direction > 0)
            o->rope_freq_forward(qkv, pos, m->rope_inv_freq, M, t->heads, t->kv_heads, t->head_dim);
        else
            o->rope_freq_backward(qkv, pos, m->rope_inv_freq, M, t->heads, t->kv_heads, t->head_dim);
    } else if (direction > 0) {
        o->rope_forward(qkv, pos, M, t->heads, t->kv_heads, t->head_dim, t->rope_theta);
    } else {
        o->rope_backward(qkv, pos, M, t->heads, t->kv_heads, t->head_dim, t->rope_theta);
    }
}

static void acts_free(LlavaModel *m) {
    Activations *a = &m->acts;
    if (a->arena) m->ops->free(a->arena);
    free(a->x);
    free(a->layer);
    memset(a, 0, sizeof *a);
}

void model_free(LlavaModel *m) {
    acts_free(m);
    for (int i = 0; i < MODULE_COUNT; i++) {
        if (m->weights[i]) m->ops->free(m->weights[i]);
        if (m->grads[i]) m->ops->free(m->grads[i]);
        if (m->grads16[i]) m->ops->free(m->grads16[i]);
    }
    if (m->rope_inv_freq) m->ops->free(m->rope_inv_freq);
    free(m->off.vis);
    free(m->off.llm);
    lora_free(m);
    params_free(&m->params);
    memset(m, 0, sizeof *m);
}

void model_set_stage(LlavaModel *m, int stage) {
    CHECK(stage >= 0 && stage <= 2, "stage %d", stage);
    // With adapters the LLM stays frozen and the adapters train in its place.
    int lora = m->lora.r > 0;
    int want[MODULE_COUNT] = {0, stage >= 1, stage >= 2 && !lora, stage >= 2 && lora};
    for (int i = 0; i < MODULE_COUNT; i++) m->trainable[i] = want[i];
    model_grads_allocate(m);
}

void model_replan(LlavaModel *m) { acts_free(m); }

void model_set_recompute(LlavaModel *m, int mode) {
    CHECK(mode >= RECOMPUTE_OFF && mode <= RECOMPUTE_SELECTIVE, "recompute mode %d", mode);
    if (m->recompute != mode) acts_free(m);  // the plan differs: re-plan on next forward
    m->recompute = mode;
}

void model_set_head_labeled_only(LlavaModel *m, int on) { m->head_labeled_only = !!on; }

size_t model_num_params(const LlavaModel *m, int trainable_only) {
    size_t n = 0;
    for (int i = 0; i < MODULE_COUNT; i++)
        if (!trainable_only || m->trainable[i]) n += m->params.module_numel[i];
    return n;
}

void *model_weight(const LlavaModel *m, const ParamInfo *p) { return W(m, p->module, p->offset); }
const void *model_logits(const LlavaModel *m) { return m->acts.logits; }

// ---- activation plan --------------------------------------------------------------

// Carves buffers out of one allocation. Pass 1 runs with base 0 to size it.
typedef struct {
    uintptr_t base;
    size_t used;
} Carver;

static void *carve(Carver *c, size_t bytes) {
    void *p = (void *)(c->base + c->used);
    c->used += (bytes + 255) & ~(size_t)255;
    return p;
}

static void plan(LlavaModel *m, Carver *cv, int M, int N) {
    const LlavaConfig *c = &m->cfg;
    const TextConfig *t = &c->text;
    const VisionConfig *v = &c->vision;
    Activations *a = &m->acts;
    const size_t A = m->ops->act_size, F = sizeof(float), I32 = sizeof(int32_t);
    const size_t Mz = (size_t)M, C = (size_t)t->hidden, QKV = (size_t)(t->heads + 2 * t->kv_heads) * t->head_dim;
    const size_t ATT = (size_t)t->heads * t->head_dim, I = (size_t)t->intermediate, V = (size_t)t->vocab;
    const size_t NP = (size_t)c->patches, NT = (size_t)c->vision_tokens, NV = (size_t)N * NT;
    const size_t NF = (size_t)N * c->image_tokens;
    const size_t Dv = (size_t)v->hidden, PP = (size_t)3 * v->patch_size * v->patch_size;
    const size_t S = (size_t)v->image_size;

    a->ids = carve(cv, Mz * I32);
    a->targets = carve(cv, Mz * I32);
    a->pos = carve(cv, Mz * I32);
    a->seg = carve(cv, Mz * I32);
    a->image_rows = carve(cv, (NF ? NF : 1) * I32);
    a->cls_drop_rows = carve(cv, (NF ? NF : 1) * I32);
    for (int l = 0; l <= t->layers; l++) a->x[l] = carve(cv, Mz * C * A);
    int n_layer_acts = m->recompute == RECOMPUTE_FULL ? 1 : t->layers;
    // The normed inputs of the qkv and gate/up matmuls and the swiglu output
    // (the down matmul's input) are read by backward only for weight
    // gradients (the LLM's or its LoRA adapters'), and each is one cheap
    // elementwise op away from what the layer saves anyway (x, h with the
    // rstds; gateup): every layer writes them into layer 0's buffers, and
    // backward recomputes a layer's, bitwise, when it needs them
    // (llm_layer_recompute_cheap). A third of the saved activations, with no
    // recompute setting at all.
    for (int l = 0; l < n_layer_acts; l++) {
        LayerActs *L = &a->layer[l];
        if (m->recompute == RECOMPUTE_SELECTIVE && l > 0) {
            // Selective recompute keeps per layer only the matmul outputs
            // (qkv after RoPE, att, h, gateup), lse and the adapters' u =
            // dropout(x) A^T (a matmul output too, r wide: dB needs it). The
            // norms with their rstds and SwiGLU are recomputed in backward in
            // layer 0's buffers; the adapters' inputs are those recomputed
            // values (or att, kept) and their dropout masks come again from
            // the seed.
            *L = a->layer[0];
            L->qkv = carve(cv, Mz * QKV * A);
            L->att = carve(cv, Mz * ATT * A);
            L->lse = carve(cv, Mz * t->heads * F);
            L->h = carve(cv, Mz * C * A);
            L->gateup = carve(cv, Mz * 2 * I * A);
            for (int k = 0; k < LORA_TARGETS; k++)
                L->lora_u[k] = (m->lora.targets >> k & 1) ? carve(cv, Mz * (size_t)m->lora.r * A) : NULL;
            continue;
        }
        const int own = l == 0;
        L->ln1 = own ? carve(cv, Mz * C * A) : a->layer[0].ln1;
        L->ln1_rstd = carve(cv, Mz * F);
        L->qkv = carve(cv, Mz * QKV * A);
        L->att = carve(cv, Mz * ATT * A);
        L->lse = carve(cv, Mz * t->heads * F);
        L->h = carve(cv, Mz * C * A);
        L->ln2 = own ? carve(cv, Mz * C * A) : a->layer[0].ln2;
        L->ln2_rstd = carve(cv, Mz * F);
        L->gateup = carve(cv, Mz * 2 * I * A);
        L->mlp = own ? carve(cv, Mz * I * A) : a->layer[0].mlp;
        for (int k = 0; k < LORA_TARGETS; k++)
            L->lora_u[k] = (m->lora.targets >> k & 1) ? carve(cv, Mz * (size_t)m->lora.r * A) : NULL;
    }
    if (m->lora.r) {
        // Inputs and outputs of the targets are C, NH*HS, NKV*HS or I wide.
        size_t wide = C > ATT ? C : ATT;
        wide = wide > I ? wide : I;
        a->lora_x = carve(cv, Mz * wide * A);
        a->lora_y = carve(cv, Mz * wide * A);
        a->lora_du = carve(cv, Mz * (size_t)m->lora.r * A);
        a->lora_dx = carve(cv, Mz * wide * A);
    }
    a->lnf = carve(cv, Mz * C * A);
    a->lnf_rstd = carve(cv, Mz * F);
    a->logits = carve(cv, Mz * V * A);
    a->head_rows = carve(cv, Mz * I32);
    a->head_targets = carve(cv, Mz * I32);
    a->head_in = carve(cv, Mz * C * A);
    a->losses = carve(cv, Mz * F);
    a->dres = carve(cv, Mz * C * A);
    a->dln = carve(cv, Mz * C * A);
    // A layer's backward is done with dmlp before it writes datt, and with
    // dgateup before it writes dqkv (llm_layer_backward): each pair shares.
    a->dqkv = a->dgateup = carve(cv, Mz * (QKV > 2 * I ? QKV : 2 * I) * A);
    a->datt = a->dmlp = carve(cv, Mz * (ATT > I ? ATT : I) * A);
    if (N > 0) {
        a->pixels = carve(cv, (size_t)N * 3 * S * S * A);
        a->patches = carve(cv, (size_t)N * NP * PP * A);
        a->patch_emb = carve(cv, (size_t)N * NP * Dv * A);
        a->vx = carve(cv, NV * Dv * A);
        a->vx2 = carve(cv, NV * Dv * A);
        a->vln = carve(cv, NV * Dv * A);
        a->vqkv = carve(cv, NV * 3 * Dv * A);
        a->vatt = carve(cv, NV * Dv * A);
        a->vfc = carve(cv, NV * (size_t)v->intermediate * A);
        a->vmean = carve(cv, NV * F);
        a->vrstd = carve(cv, NV * F);
        a->vlse = carve(cv, NV * (size_t)v->heads * F);
        a->feat = carve(cv, NF * Dv * A);
        a->ph1 = carve(cv, NF * C * A);
        a->pg = carve(cv, NF * C * A);
        a->pout = carve(cv, NF * C * A);
        a->dpout = carve(cv, NF * C * A);
        a->dpg = carve(cv, NF * C * A);
    }
}

// Makes sure the activation arena holds M rows and N images.
static void acts_reserve(LlavaModel *m, int M, int N) {
    Activations *a = &m->acts;
    if (a->arena && M <= a->M_cap && N <= a->N_cap) return;
    int M_cap = M > a->M_cap ? M : a->M_cap, N_cap = N > a->N_cap ? N : a->N_cap;
    acts_free(m);
    a->x = xcalloc((size_t)m->cfg.text.layers + 1, sizeof(void *));
    a->layer = xcalloc(m->recompute == RECOMPUTE_FULL ? 1 : (size_t)m->cfg.text.layers, sizeof(LayerActs));
    Carver sizing = {0, 0};
    plan(m, &sizing, M_cap, N_cap);
    a->arena = m->ops->alloc(sizing.used);
    a->arena_bytes = sizing.used;
    Carver real = {(uintptr_t)a->arena, 0};
    plan(m, &real, M_cap, N_cap);
    a->M_cap = M_cap;
    a->N_cap = N_cap;
}

void model_reserve(LlavaModel *m, int rows, int images) { acts_reserve(m, rows, images); }

size_t model_activation_bytes(const LlavaModel *m, int rows, int images) {
    LlavaModel scratch = *m;  // plan() writes pointers into acts: never the live ones
    memset(&scratch.acts, 0, sizeof scratch.acts);
    scratch.acts.x = xcalloc((size_t)m->cfg.text.layers + 1, sizeof(void *));
    scratch.acts.layer = xcalloc((size_t)m->cfg.text.layers, sizeof(LayerActs));
    Carver sizing = {0, 0};
    plan(&scratch, &sizing, rows, images);
    free(scratch.acts.x);
    free(scratch.acts.layer);
    return sizing.used;
}

size_t model_training_state_bytes(const LlavaModel *m) {
    size_t all = model_num_params(m, 0), trainable = model_num_params(m, 1);
    size_t master = m->ops->act_size < sizeof(float) ? sizeof(float) : 0;
    size_t grads = m->grad_bf16 ? m->ops->grad_size + (m->grad_fp32_accumulator ? sizeof(float) : 0) : sizeof(float);
    return all * m->ops->act_size + trainable * (grads + sizeof(float) * 2 + master);
}

// ---- batch checks and host-side preparation ---------------------------------------

int model_check_batch(const LlavaModel *m, const LlavaBatch *b, Error *err) {
    const LlavaConfig *c = &m->cfg;
    if (b->B <= 0 || b->T <= 0) return err_set(err, "batch shape [%d, %d] is empty", b->B, b->T);
    if (b->T > c->text.max_positions)
        return err_set(err, "sequence length %d exceeds max_position_embeddings %d", b->T, c->text.max_positions);
    if (b->n_images < 0 || (b->n_images > 0 && !b->pixels))
        return err_set(err, "%d images declared but no pixel values given", b->n_images);
    long image_tokens = 0;
    for (int r = 0; r < b->B; r++)
        for (int t = 0; t < b->T; t++) {
            size_t i = (size_t)r * b->T + t;
            int id = b->input_ids[i];
            if (id == c->image_token_index) {
                image_tokens++;
            } else if (id < 0 || id >= c->text.vocab) {
                return err_set(err, "input_ids[%d][%d] = %d is outside the vocabulary [0, %d)", r, t, id,
                               c->text.vocab);
            }
            if (b->labels) {
                int l = b->labels[i];
                if (l != LABEL_IGNORE && (l < 0 || l >= c->text.vocab))
                    return err_set(err, "labels[%d][%d] = %d is neither -100 nor a token id in [0, %d)", r, t, l,
                                   c->text.vocab);
            }
            if (b->seg && b->seg[i] < 0) return err_set(err, "segment id [%d][%d] is negative", r, t);
            if (b->pos && (b->pos[i] < 0 || b->pos[i] >= c->text.max_positions))
                return err_set(err, "position [%d][%d] = %d is out of range", r, t, b->pos[i]);
        }
    if (image_tokens != (long)b->n_images * c->image_tokens)
        return err_set(err,
                       "the batch has %ld image tokens (id %d) but %d images x %d tokens per image = %ld: each "
                       "image must be expanded to image_seq_length tokens",
                       image_tokens, c->image_token_index, b->n_images, c->image_tokens,
                       (long)b->n_images * c->image_tokens);
    return 0;
}

// Position t predicts label t+1 of the same row, never across packed
// documents.
static int target_at(const LlavaBatch *b, int i) {
    int t = i % b->T;
    if (!b->labels || t + 1 >= b->T) return LABEL_IGNORE;
    if (b->seg && b->seg[i] && b->seg[i + 1] && b->seg[i] != b->seg[i + 1]) return LABEL_IGNORE;
    return b->labels[i + 1];
}

int model_count_targets(const LlavaBatch *b) {
    int n = 0;
    for (int i = 0; i < b->B * b->T; i++) n += target_at(b, i) >= 0;
    return n;
}

// Builds the backend's int buffers: embedding ids (image positions -> -1),
// shifted targets, positions, segments and the rows that receive image
// features. Returns the number of counted targets.
static int upload_batch(LlavaModel *m, const LlavaBatch *b) {
    const LlavaConfig *c = &m->cfg;
    Activations *a = &m->acts;
    const int M = b->B * b->T, T = b->T;
    int32_t *ids = xmalloc((size_t)M * sizeof(int32_t)), *targets = xmalloc((size_t)M * sizeof(int32_t));
    int32_t *pos = xmalloc((size_t)M * sizeof(int32_t));
    int32_t *rows = xmalloc((size_t)(b->n_images * c->image_tokens + 1) * sizeof(int32_t));
    int32_t *head_rows = xmalloc((size_t)M * sizeof(int32_t)), *head_targets = xmalloc((size_t)M * sizeof(int32_t));
    int n_rows = 0, counted = 0;
    for (int i = 0; i < M; i++) {
        int t = i % T;
        int is_image = b->input_ids[i] == c->image_token_index;
        ids[i] = is_image ? -1 : b->input_ids[i];
        if (is_image) rows[n_rows++] = i;
        pos[i] = b->pos ? b->pos[i] : t;
        int tgt = target_at(b, i);
        targets[i] = tgt < 0 ? -1 : tgt;
        if (tgt >= 0) {
            head_rows[counted] = i;
            head_targets[counted] = tgt;
        }
        counted += tgt >= 0;
    }
    a->K = counted;
    const Ops *o = m->ops;
    o->upload(a->ids, ids, (size_t)M * sizeof(int32_t));
    o->upload(a->targets, targets, (size_t)M * sizeof(int32_t));
    if (m->head_labeled_only && counted) {
        o->upload(a->head_rows, head_rows, (size_t)counted * sizeof(int32_t));
        o->upload(a->head_targets, head_targets, (size_t)counted * sizeof(int32_t));
    }
    o->upload(a->pos, pos, (size_t)M * sizeof(int32_t));
    a->has_seg = b->seg != NULL;
    if (b->seg) o->upload(a->seg, b->seg, (size_t)M * sizeof(int32_t));
    if (n_rows) o->upload(a->image_rows, rows, (size_t)n_rows * sizeof(int32_t));
    if (b->n_images > 0 && !c->keep_cls) {
        // Rows of the vision output kept when the first is dropped: 1..NT-1
        // of each image (CLIP: the patches; SigLIP: all but the first patch).
        int NT = c->vision_tokens, K = c->image_tokens;
        int32_t *keep = xmalloc((size_t)b->n_images * K * sizeof(int32_t));
        for (int n = 0; n < b->n_images; n++)
            for (int p = 0; p < K; p++) keep[n * K + p] = n * NT + 1 + p;
        o->upload(a->cls_drop_rows, keep, (size_t)b->n_images * K * sizeof(int32_t));
        free(keep);
    }
    free(ids);
    free(targets);
    free(pos);
    free(rows);
    free(head_rows);
    free(head_targets);
    return counted;
}

static void layer_event(LlavaModel *m, ModuleId mod, int l, LayerEvent ev) {
    if (m->layer_hook) m->layer_hook(m->layer_hook_ctx, mod, l, ev);
}

// ---- vision tower (frozen: forward only, one layer of scratch) ---------------------

static void vision_forward(LlavaModel *m, const float *pixels, const uint16_t *pixels_bf16, int N) {
    const Ops *o = m->ops;
    const LlavaConfig *c = &m->cfg;
    const VisionConfig *v = &c->vision;
    const ModelOffsets *off = &m->off;
    Activations *a = &m->acts;
    const ModuleId VI = MODULE_VISION;
    const int S = v->image_size, P = v->patch_size, Dv = v->hidden, NP = c->patches, NT = c->vision_tokens;
    const int NV = N * NT;
    const int PP = 3 * P * P, Iv = v->intermediate;

    const size_t n_pix = (size_t)N * 3 * S * S;
    if (pixels_bf16 && o->act_size == sizeof(uint16_t))
        o->upload(a->pixels, pixels_bf16, n_pix * sizeof(uint16_t));  // rounded already: a plain copy
    else
        o->upload_act(a->pixels, pixels, n_pix);
    o->patchify(a->patches, a->pixels, N, S, P);
    void *h;
    if (v->kind == VISION_SIGLIP) {
        // Conv with bias, + position embedding per image; hidden_states[0] is
        // the embeddings themselves (no pre-layernorm, no CLS).
        o->matmul_forward(a->vx2, a->patches, W(m, VI, off->patch_w), W(m, VI, off->patch_b), N * NP, PP, Dv);
        for (int n = 0; n < N; n++) {
            void *rows = act_at(m, a->vx2, (size_t)n * NP * Dv);
            o->residual_forward(rows, rows, W(m, VI, off->pos_emb), (size_t)NP * Dv);
        }
    } else {
        o->matmul_forward(a->patch_emb, a->patches, W(m, VI, off->patch_w), NULL, N * NP, PP, Dv);
        o->vision_embed(a->vx, a->patch_emb, W(m, VI, off->cls), W(m, VI, off->pos_emb), N, NP, Dv);
        // hidden_states[0] is the output of pre_layrnorm; layer k's output is [k].
        o->layernorm_forward(a->vx2, NULL, NULL, a->vx, W(m, VI, off->pre_w), W(m, VI, off->pre_b), NV, Dv, v->eps);
    }
    h = a->vx2;
    AttnShape as = {.B = N, .T = NT, .NH = v->heads, .NKV = v->heads, .HS = Dv / v->heads, .causal = 0, .seg = NULL};
    for (int l = 0; l < c->vision_layers_run; l++) {
        const VisionLayerOffsets *L = &off->vis[l];
        layer_event(m, VI, l, LAYER_BEFORE_FORWARD);
        o->layernorm_forward(a->vln, a->vmean, a->vrstd, h, W(m, VI, L->ln1_w), W(m, VI, L->ln1_b), NV, Dv, v->eps);
        o->matmul_forward(a->vqkv, a->vln, W(m, VI, L->qkv_w), W(m, VI, L->qkv_b), NV, Dv, 3 * Dv);
        o->attention_forward(a->vatt, a->vlse, a->vqkv, &as);
        o->matmul_forward(a->vln, a->vatt, W(m, VI, L->out_w), W(m, VI, L->out_b), NV, Dv, Dv);
        o->residual_forward(h, h, a->vln, (size_t)NV * Dv);
        o->layernorm_forward(a->vln, a->vmean, a->vrstd, h, W(m, VI, L->ln2_w), W(m, VI, L->ln2_b), NV, Dv, v->eps);
        o->matmul_forward(a->vfc, a->vln, W(m, VI, L->fc1_w), W(m, VI, L->fc1_b), NV, Dv, Iv);
        if (v->act == VISION_ACT_QUICK_GELU)
            o->quick_gelu_forward(a->vfc, a->vfc, (size_t)NV * Iv);
        else if (v->act == VISION_ACT_GELU_TANH)
            o->gelu_tanh_forward(a->vfc, a->vfc, (size_t)NV * Iv);
        else
            o->gelu_forward(a->vfc, a->vfc, (size_t)NV * Iv);
        o->matmul_forward(a->vln, a->vfc, W(m, VI, L->fc2_w), W(m, VI, L->fc2_b), NV, Iv, Dv);
        o->residual_forward(h, h, a->vln, (size_t)NV * Dv);
        layer_event(m, VI, l, LAYER_AFTER_FORWARD);
    }
    if (c->keep_cls)
        o->copy(a->feat, h, (size_t)NV * Dv * o->act_size);
    else
        o->gather_rows(a->feat, h, a->cls_drop_rows, N * c->image_tokens, Dv);
}

// ---- projector --------------------------------------------------------------------

static void projector_forward(LlavaModel *m, int NF) {
    const Ops *o = m->ops;
    const ModelOffsets *off = &m->off;
    Activations *a = &m->acts;
    const int Dv = m->cfg.vision.hidden, C = m->cfg.text.hidden;
    const ModuleId PR = MODULE_PROJECTOR;
    if (m->cfg.projector == PROJECTOR_LINEAR) {
        o->matmul_forward(a->pout, a->feat, W(m, PR, off->w1), W(m, PR, off->b1), NF, Dv, C);
        return;
    }
    o->matmul_forward(a->ph1, a->feat, W(m, PR, off->w1), W(m, PR, off->b1), NF, Dv, C);
    o->gelu_forward(a->pg, a->ph1, (size_t)NF * C);
    o->matmul_forward(a->pout, a->pg, W(m, PR, off->w2), W(m, PR, off->b2), NF, C, C);
}

static void projector_backward(LlavaModel *m, int NF) {
    const Ops *o = m->ops;
    const ModelOffsets *off = &m->off;
    Activations *a = &m->acts;
    const int Dv = m->cfg.vision.hidden, C = m->cfg.text.hidden;
    const ModuleId PR = MODULE_PROJECTOR;
    // Only weight gradients: nothing upstream (the frozen vision tower) needs more.
    if (m->cfg.projector == PROJECTOR_LINEAR) {
        o->matmul_backward(NULL, G(m, PR, off->w1), G(m, PR, off->b1), a->dpout, a->feat, W(m, PR, off->w1), NF, Dv,
                           C);
        return;
    }
    o->matmul_backward(a->dpg, G(m, PR, off->w2), G(m, PR, off->b2), a->dpout, a->pg, W(m, PR, off->w2), NF, C, C);
    o->gelu_backward(a->dpg, a->ph1, a->dpg, (size_t)NF * C);
    o->matmul_backward(NULL, G(m, PR, off->w1), G(m, PR, off->b1), a->dpg, a->feat, W(m, PR, off->w1), NF, Dv, C);
}

// ---- language model ---------------------------------------------------------------

static AttnShape llm_attn_shape(const LlavaModel *m) {
    const TextConfig *t = &m->cfg.text;
    AttnShape s = {.B = m->acts.B, .T = m->acts.T, .NH = t->heads, .NKV = t->kv_heads, .HS = t->head_dim,
                   .causal = 1, .seg = m->acts.has_seg ? m->acts.seg : NULL};
    return s;
}

// x_out = layer l applied to x_in, saving what backward needs in L.
static void llm_layer_forward(LlavaModel *m, int l, LayerActs *L, const void *x_in, void *x_out) {
    const Ops *o = m->ops;
    const TextConfig *t = &m->cfg.text;
    const LlmLayerOffsets *w = &m->off.llm[l];
    const ModuleId LM = MODULE_LLM;
    const int M = m->acts.M, C = t->hidden, HS = t->head_dim, I = t->intermediate;
    const int QKV = (t->heads + 2 * t->kv_heads) * HS, ATT = t->heads * HS;
    AttnShape as = llm_attn_shape(m);
    o->rmsnorm_forward(L->ln1, L->ln1_rstd, x_in, W(m, LM, w->ln1_w), M, C, t->eps);
    o->matmul_forward(L->qkv, L->ln1, W(m, LM, w->qkv_w), W(m, LM, w->qkv_b), M, C, QKV);
    for (int k = LORA_Q; k <= LORA_V; k++) lora_forward(m, l, (LoraTarget)k, L, L->ln1, L->qkv);
    model_rope(m, L->qkv, m->acts.pos, M, 1);
    o->attention_forward(L->att, L->lse, L->qkv, &as);
    o->matmul_forward(L->h, L->att, W(m, LM, w->o_w), W(m, LM, w->o_b), M, ATT, C);
    // o_proj's adapter adds into its output before the residual joins it.
    lora_forward(m, l, LORA_O, L, L->att, L->h);
    if (o->residual_rmsnorm_forward) {  // h += x_in; ln2 = rmsnorm(h), in one pass
        o->residual_rmsnorm_forward(L->h, L->ln2, L->ln2_rstd, L->h, x_in, W(m, LM, w->ln2_w), M, C, t->eps);
    } else {
        o->residual_forward(L->h, L->h, x_in, (size_t)M * C);
        o->rmsnorm_forward(L->ln2, L->ln2_rstd, L->h, W(m, LM, w->ln2_w), M, C, t->eps);
    }
    o->matmul_forward(L->gateup, L->ln2, W(m, LM, w->gateup_w), W(m, LM, w->gateup_b), M, C, 2 * I);
    lora_forward(m, l, LORA_GATE, L, L->ln2, L->gateup);
    lora_forward(m, l, LORA_UP, L, L->ln2, L->gateup);
    o->swiglu_forward(L->mlp, L->gateup, M, I);
    o->matmul_forward(x_out, L->mlp, W(m, LM, w->down_w), W(m, LM, w->down_b), M, I, C);
    lora_forward(m, l, LORA_DOWN, L, L->mlp, x_out);
    o->residual_forward(x_out, x_out, L->h, (size_t)M * C);
}

// Does layer l's backward recompute the SwiGLU output inside its gradient
// kernel (ops swiglu_backward_recompute: gateup read once)? Not when the full
// forward has just run again (the output is there), nor with an adapter on
// down_proj, whose backward needs that output before the SwiGLU gradient's
// input (dmlp) is complete.
static int swiglu_recompute_in_backward(const LlavaModel *m, int l) {
    const LoraState *s = &m->lora;
    const int lora_down = s->r && s->a_off[l * LORA_TARGETS + LORA_DOWN] != NO_TENSOR;
    return m->ops->swiglu_backward_recompute && m->recompute != RECOMPUTE_FULL && !lora_down;
}

// ln1, ln2 (with their rstds) and the SwiGLU output of layer l, again from
// the kept inputs, into the buffers the layers share (see plan): the same ops
// on the same values as the forward, so bitwise what the forward had. (The
// SwiGLU output comes later, from the fused backward, when it can.)
static void llm_layer_recompute_cheap(LlavaModel *m, int l, LayerActs *L, const void *x_in) {
    const Ops *o = m->ops;
    const TextConfig *t = &m->cfg.text;
    const LlmLayerOffsets *w = &m->off.llm[l];
    const int M = m->acts.M, C = t->hidden;
    o->rmsnorm_forward(L->ln1, L->ln1_rstd, x_in, W(m, MODULE_LLM, w->ln1_w), M, C, t->eps);
    o->rmsnorm_forward(L->ln2, L->ln2_rstd, L->h, W(m, MODULE_LLM, w->ln2_w), M, C, t->eps);
    if (!swiglu_recompute_in_backward(m, l)) o->swiglu_forward(L->mlp, L->gateup, M, t->intermediate);
}

// On entry acts.dres holds d(x_out); on exit d(x_in).
static void llm_layer_backward(LlavaModel *m, int l, LayerActs *L, const void *x_in) {
    const Ops *o = m->ops;
    const TextConfig *t = &m->cfg.text;
    const LlmLayerOffsets *w = &m->off.llm[l];
    Activations *a = &m->acts;
    const ModuleId LM = MODULE_LLM;
    const int M = a->M, C = t->hidden, HS = t->head_dim, I = t->intermediate;
    const int QKV = (t->heads + 2 * t->kv_heads) * HS, ATT = t->heads * HS;
    AttnShape as = llm_attn_shape(m);
    // MLP branch: x_out = h + down(swiglu(gateup(ln2(h))))
    if (swiglu_recompute_in_backward(m, l)) {
        // dmlp first (it needs no input), then the SwiGLU gradient writing the
        // down projection's input as it goes (only if its weight gradient
        // wants it), then that weight gradient.
        float *g_down = G(m, LM, w->down_w);
        o->matmul_backward(a->dmlp, NULL, NULL, a->dres, L->mlp, W(m, LM, w->down_w), M, I, C);
        o->swiglu_backward_recompute(a->dgateup, g_down ? L->mlp : NULL, a->dmlp, L->gateup, M, I);
        if (g_down)
            o->matmul_backward(NULL, g_down, G(m, LM, w->down_b), a->dres, L->mlp, W(m, LM, w->down_w), M, I, C);
    } else {
        o->matmul_backward(a->dmlp, G(m, LM, w->down_w), G(m, LM, w->down_b), a->dres, L->mlp, W(m, LM, w->down_w),
                           M, I, C);
        lora_backward(m, l, LORA_DOWN, L, L->mlp, a->dres, a->dmlp);
        o->swiglu_backward(a->dgateup, a->dmlp, L->gateup, M, I);
    }
    o->matmul_backward(a->dln, G(m, LM, w->gateup_w), G(m, LM, w->gateup_b), a->dgateup, L->ln2,
                       W(m, LM, w->gateup_w), M, C, 2 * I);
    lora_backward(m, l, LORA_GATE, L, L->ln2, a->dgateup, a->dln);
    lora_backward(m, l, LORA_UP, L, L->ln2, a->dgateup, a->dln);
    o->rmsnorm_backward(a->dres, G(m, LM, w->ln2_w), a->dln, L->h, W(m, LM, w->ln2_w), L->ln2_rstd, M, C);
    // Attention branch: h = x_in + o_proj(attn(rope(qkv(ln1(x_in)))))
    o->matmul_backward(a->datt, G(m, LM, w->o_w), G(m, LM, w->o_b), a->dres, L->att, W(m, LM, w->o_w), M, ATT, C);
    lora_backward(m, l, LORA_O, L, L->att, a->dres, a->datt);
    o->attention_backward(a->dqkv, a->datt, L->qkv, L->att, L->lse, &as);
    model_rope(m, a->dqkv, a->pos, M, -1);
    o->matmul_backward(a->dln, G(m, LM, w->qkv_w), G(m, LM, w->qkv_b), a->dqkv, L->ln1, W(m, LM, w->qkv_w), M, C,
                       QKV);
    for (int k = LORA_Q; k <= LORA_V; k++) lora_backward(m, l, (LoraTarget)k, L, L->ln1, a->dqkv, a->dln);
    o->rmsnorm_backward(a->dres, G(m, LM, w->ln1_w), a->dln, x_in, W(m, LM, w->ln1_w), L->ln1_rstd, M, C);
}


int model_forward(LlavaModel *m, const LlavaBatch *b, Error *err) {
    if (model_check_batch(m, b, err) != 0) return -1;
    const Ops *o = m->ops;
    const LlavaConfig *c = &m->cfg;
    const TextConfig *t = &c->text;
    const int M = b->B * b->T, N = b->n_images, NF = N * c->image_tokens, C = t->hidden;
    acts_reserve(m, M, N);
    Activations *a = &m->acts;
    a->B = b->B;
    a->T = b->T;
    a->M = M;
    a->N = N;
    m->n_counted = upload_batch(m, b);

    if (N > 0) {
        vision_forward(m, b->pixels, b->pixels_bf16, N);
        projector_forward(m, NF);
    }
    o->embedding_forward(a->x[0], a->ids, W(m, MODULE_LLM, m->off.embed), M, C);
    if (NF > 0) o->scatter_rows(a->x[0], a->pout, a->image_rows, NF, C);
    for (int l = 0; l < t->layers; l++) {
        layer_event(m, MODULE_LLM, l, LAYER_BEFORE_FORWARD);
        llm_layer_forward(m, l, &a->layer[m->recompute == RECOMPUTE_FULL ? 0 : l], a->x[l], a->x[l + 1]);
        layer_event(m, MODULE_LLM, l, LAYER_AFTER_FORWARD);
    }
    o->rmsnorm_forward(a->lnf, a->lnf_rstd, a->x[t->layers], W(m, MODULE_LLM, m->off.norm_w), M, C, t->eps);
    // The head on every row, or on the K labeled rows gathered first.
    int R = m->head_labeled_only ? a->K : M;
    const void *head_in = a->lnf;
    const int32_t *head_targets = a->targets;
    if (m->head_labeled_only) {
        if (R) o->gather_rows(a->head_in, a->lnf, a->head_rows, R, C);
        head_in = a->head_in;
        head_targets = a->head_targets;
    }
    double sum = 0.0;
    if (R) {
        o->matmul_forward(a->logits, head_in, W(m, MODULE_LLM, m->off.head), NULL, R, C, t->vocab);
        o->cross_entropy(a->losses, NULL, a->logits, head_targets, 0.0f, R, t->vocab);
    }
    if (m->loss_slot && o->sum_losses) {
        if (R)
            o->sum_losses(m->loss_slot, a->losses, R);
        else
            o->zero(m->loss_slot, sizeof(double));
        m->loss_sum = NAN;
        return 0;
    }
    if (R) {
        float *losses = xmalloc((size_t)R * sizeof(float));
        o->download(losses, a->losses, (size_t)R * sizeof(float));
        for (int i = 0; i < R; i++) sum += losses[i];
        free(losses);
    }
    m->loss_sum = sum;
    return 0;
}

void model_backward(LlavaModel *m, float dloss_scale) {
    if (!m->trainable[MODULE_PROJECTOR] && !m->trainable[MODULE_LLM] && !m->trainable[MODULE_LORA]) return;
    const Ops *o = m->ops;
    const LlavaConfig *c = &m->cfg;
    const TextConfig *t = &c->text;
    Activations *a = &m->acts;
    const int M = a->M, C = t->hidden, NF = a->N * c->image_tokens;
    const ModuleId LM = MODULE_LLM;
    const ModelOffsets *off = &m->off;

    // dlogits overwrite the logits in place. Labeled-only: the head's input
    // gradient for the K rows lands in dres first, then is scattered into
    // dln (zero elsewhere: a row without a target gets no gradient here).
    if (!m->head_labeled_only) {
        o->cross_entropy(a->losses, a->logits, a->logits, a->targets, dloss_scale, M, t->vocab);
        o->matmul_backward(a->dln, G(m, LM, off->head), NULL, a->logits, a->lnf, W(m, LM, off->head), M, C,
                           t->vocab);
    } else {
        const int K = a->K;
        o->zero(a->dln, (size_t)M * C * o->act_size);
        if (K) {
            o->cross_entropy(a->losses, a->logits, a->logits, a->head_targets, dloss_scale, K, t->vocab);
            o->matmul_backward(a->dres, G(m, LM, off->head), NULL, a->logits, a->head_in, W(m, LM, off->head), K, C,
                               t->vocab);
            o->scatter_rows(a->dln, a->dres, a->head_rows, K, C);
        }
    }
    o->zero(a->dres, (size_t)M * C * o->act_size);
    o->rmsnorm_backward(a->dres, G(m, LM, off->norm_w), a->dln, a->x[t->layers], W(m, LM, off->norm_w), a->lnf_rstd,
                        M, C);
    for (int l = t->layers - 1; l >= 0; l--) {
        LayerActs *L = &a->layer[m->recompute == RECOMPUTE_FULL ? 0 : l];
        // Recompute the layer from its saved input. It rewrites x[l+1] with
        // bitwise the same values, which nothing reads any more.
        layer_event(m, MODULE_LLM, l, LAYER_BEFORE_BACKWARD);
        if (m->recompute == RECOMPUTE_FULL)
            llm_layer_forward(m, l, L, a->x[l], a->x[l + 1]);
        else if (m->recompute == RECOMPUTE_SELECTIVE || m->trainable[LM] || m->trainable[MODULE_LORA])
            llm_layer_recompute_cheap(m, l, L, a->x[l]);  // selective: rstds too; else the weight-gradient inputs
        llm_layer_backward(m, l, L, a->x[l]);
        layer_event(m, MODULE_LLM, l, LAYER_AFTER_BACKWARD);
    }
    // a->dres now holds d(inputs_embeds).
    if (G(m, LM, off->embed)) o->embedding_backward(G(m, LM, off->embed), a->dres, a->ids, M, C, t->vocab);
    if (NF > 0 && m->trainable[MODULE_PROJECTOR]) {
        o->gather_rows(a->dpout, a->dres, a->image_rows, NF, C);
        projector_backward(m, NF);
    }
}
