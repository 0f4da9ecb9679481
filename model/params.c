#include "model/params.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "common/safetensors.h"

const char *module_name(ModuleId m) {
    static const char *names[MODULE_COUNT] = {"vision tower", "projector", "language model", "LoRA adapters"};
    return m < MODULE_COUNT ? names[m] : "?";
}

static void add(ParamTable *t, ModuleId mod, int no_decay, int ndim, const int64_t *shape, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static void add(ParamTable *t, ModuleId mod, int no_decay, int ndim, const int64_t *shape, const char *fmt, ...) {
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 256;
        t->p = xrealloc(t->p, (size_t)t->cap * sizeof(ParamInfo));
    }
    ParamInfo *p = &t->p[t->n];
    memset(p, 0, sizeof *p);
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(p->name, sizeof p->name, fmt, ap);
    va_end(ap);
    CHECK(len > 0 && (size_t)len < sizeof p->name, "parameter name too long");
    p->module = mod;
    p->ndim = ndim;
    p->numel = 1;
    for (int i = 0; i < ndim; i++) {
        p->shape[i] = shape[i];
        p->numel *= (size_t)shape[i];
    }
    p->offset = t->module_numel[mod];
    p->no_decay = no_decay;
    p->file_dtype = ST_F32;
    t->module_numel[mod] += p->numel;
    char file_name[160];
    names_default_file_name(p->name, file_name, sizeof file_name);
    p->file_name = xstrdup(file_name);
    CHECK(strmap_put(&t->index, p->name, t->n), "duplicate parameter %s", p->name);
    t->n++;
}

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})
#define W2(mod, rows, cols, ...) add(t, mod, 0, 2, SHAPE(rows, cols), __VA_ARGS__)
#define V1(mod, n, ...) add(t, mod, 1, 1, SHAPE(n), __VA_ARGS__)

void params_build(ParamTable *t, const LlavaConfig *cfg) {
    memset(t, 0, sizeof *t);
    strmap_init(&t->index);
    const VisionConfig *v = &cfg->vision;
    const TextConfig *x = &cfg->text;
    const ModuleId VI = MODULE_VISION, PR = MODULE_PROJECTOR, LM = MODULE_LLM;
    int D = v->hidden, P = v->patch_size;

    // Vision tower. All layers are stored (and saved) even though only
    // vision_layers_run of them run. CLIP: CLS, conv without bias,
    // pre_layrnorm; SigLIP: conv with bias, neither CLS nor pre-layernorm.
    int siglip = v->kind == VISION_SIGLIP;
    if (!siglip) add(t, VI, 1, 1, SHAPE(D), "vision.embeddings.class_embedding");
    add(t, VI, 0, 4, SHAPE(D, 3, P, P), "vision.embeddings.patch_embedding.weight");
    if (siglip) V1(VI, D, "vision.embeddings.patch_embedding.bias");
    W2(VI, cfg->patches + !siglip, D, "vision.embeddings.position_embedding.weight");
    if (!siglip) {
        V1(VI, D, "vision.pre_layrnorm.weight");
        V1(VI, D, "vision.pre_layrnorm.bias");
    }
    for (int l = 0; l < v->layers; l++) {
        const char *pre = "vision.encoder.layers";
        V1(VI, D, "%s.%d.layer_norm1.weight", pre, l);
        V1(VI, D, "%s.%d.layer_norm1.bias", pre, l);
        W2(VI, D, D, "%s.%d.self_attn.q_proj.weight", pre, l);  // q, k, v adjacent: one [3D, D] matmul
        W2(VI, D, D, "%s.%d.self_attn.k_proj.weight", pre, l);
        W2(VI, D, D, "%s.%d.self_attn.v_proj.weight", pre, l);
        V1(VI, D, "%s.%d.self_attn.q_proj.bias", pre, l);
        V1(VI, D, "%s.%d.self_attn.k_proj.bias", pre, l);
        V1(VI, D, "%s.%d.self_attn.v_proj.bias", pre, l);
        W2(VI, D, D, "%s.%d.self_attn.out_proj.weight", pre, l);
        V1(VI, D, "%s.%d.self_attn.out_proj.bias", pre, l);
        V1(VI, D, "%s.%d.layer_norm2.weight", pre, l);
        V1(VI, D, "%s.%d.layer_norm2.bias", pre, l);
        W2(VI, v->intermediate, D, "%s.%d.mlp.fc1.weight", pre, l);
        V1(VI, v->intermediate, "%s.%d.mlp.fc1.bias", pre, l);
        W2(VI, D, v->intermediate, "%s.%d.mlp.fc2.weight", pre, l);
        V1(VI, D, "%s.%d.mlp.fc2.bias", pre, l);
    }
    V1(VI, D, "vision.post_layernorm.weight");
    V1(VI, D, "vision.post_layernorm.bias");

    // Projector.
    int C = x->hidden;
    W2(PR, C, D, "projector.linear_1.weight");
    if (cfg->projector_bias) V1(PR, C, "projector.linear_1.bias");
    if (cfg->projector == PROJECTOR_MLP2X_GELU) {
        W2(PR, C, C, "projector.linear_2.weight");
        if (cfg->projector_bias) V1(PR, C, "projector.linear_2.bias");
    }

    // Language model.
    int HS = x->head_dim, I = x->intermediate;
    W2(LM, x->vocab, C, "llm.embed_tokens.weight");
    for (int l = 0; l < x->layers; l++) {
        V1(LM, C, "llm.layers.%d.input_layernorm.weight", l);
        W2(LM, x->heads * HS, C, "llm.layers.%d.self_attn.q_proj.weight", l);  // q, k, v adjacent
        W2(LM, x->kv_heads * HS, C, "llm.layers.%d.self_attn.k_proj.weight", l);
        W2(LM, x->kv_heads * HS, C, "llm.layers.%d.self_attn.v_proj.weight", l);
        if (x->qkv_bias) {  // adjacent too: one bias vector for the fused matmul
            V1(LM, x->heads * HS, "llm.layers.%d.self_attn.q_proj.bias", l);
            V1(LM, x->kv_heads * HS, "llm.layers.%d.self_attn.k_proj.bias", l);
            V1(LM, x->kv_heads * HS, "llm.layers.%d.self_attn.v_proj.bias", l);
        }
        W2(LM, C, x->heads * HS, "llm.layers.%d.self_attn.o_proj.weight", l);
        if (x->o_bias) V1(LM, C, "llm.layers.%d.self_attn.o_proj.bias", l);
        V1(LM, C, "llm.layers.%d.post_attention_layernorm.weight", l);
        W2(LM, I, C, "llm.layers.%d.mlp.gate_proj.weight", l);  // gate, up adjacent: one [2I, C] matmul
        W2(LM, I, C, "llm.layers.%d.mlp.up_proj.weight", l);
        if (x->mlp_bias) {
            V1(LM, I, "llm.layers.%d.mlp.gate_proj.bias", l);
            V1(LM, I, "llm.layers.%d.mlp.up_proj.bias", l);
        }
        W2(LM, C, I, "llm.layers.%d.mlp.down_proj.weight", l);
        if (x->mlp_bias) V1(LM, C, "llm.layers.%d.mlp.down_proj.bias", l);
    }
    V1(LM, C, "llm.norm.weight");
    if (!x->tied) W2(LM, x->vocab, C, "llm.lm_head.weight");
}

void params_append(ParamTable *t, ModuleId mod, int ndim, const int64_t *shape, const char *canonical,
                   const char *file_name) {
    add(t, mod, 0, ndim, shape, "%s", canonical);
    ParamInfo *p = &t->p[t->n - 1];
    free(p->file_name);
    p->file_name = xstrdup(file_name);
}

void params_free(ParamTable *t) {
    for (int i = 0; i < t->n; i++) free(t->p[i].file_name);
    free(t->p);
    strmap_free(&t->index);
    memset(t, 0, sizeof *t);
}

const ParamInfo *params_find(const ParamTable *t, const char *canonical) {
    int i = strmap_get(&t->index, canonical);
    return i < 0 ? NULL : &t->p[i];
}

size_t params_offset(const ParamTable *t, const char *fmt, ...) {
    char name[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    const ParamInfo *p = params_find(t, name);
    CHECK(p, "parameter %s is not in the layout", name);
    return p->offset;
}

// ---- name mapping ---------------------------------------------------------------

static int starts_with(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

static NameKind emit(char *out, size_t cap, const char *module, const char *rest) {
    int n = snprintf(out, cap, "%s.%s", module, rest);
    return (n > 0 && (size_t)n < cap) ? NAME_PARAM : NAME_UNKNOWN;
}

// `rest` is a path inside CLIPVisionTransformer.
static NameKind vision_rest(const char *rest, char *out, size_t cap) {
    if (strcmp(rest, "embeddings.position_ids") == 0) return NAME_IGNORED;
    // SigLIP's attention-pooling head: not part of LLaVA's features.
    if (starts_with(rest, "head.")) return NAME_IGNORED;
    if (starts_with(rest, "embeddings.") || starts_with(rest, "encoder.") || starts_with(rest, "pre_layrnorm.") ||
        starts_with(rest, "post_layernorm."))
        return emit(out, cap, "vision", rest);
    return NAME_UNKNOWN;
}

// The original LLaVA repo: mm_projector.{0,2}.* (mlp2x_gelu) or mm_projector.* (linear).
static NameKind llava_repo_projector(const char *rest, char *out, size_t cap) {
    if (starts_with(rest, "0.")) return emit(out, cap, "projector.linear_1", rest + 2);
    if (starts_with(rest, "2.")) return emit(out, cap, "projector.linear_2", rest + 2);
    if (strcmp(rest, "weight") == 0 || strcmp(rest, "bias") == 0) return emit(out, cap, "projector.linear_1", rest);
    return NAME_UNKNOWN;
}

static NameKind llm_rest(const char *rest, char *out, size_t cap) {
    if (strstr(rest, "rotary_emb.inv_freq")) return NAME_IGNORED;
    if (starts_with(rest, "embed_tokens.") || starts_with(rest, "layers.") || starts_with(rest, "norm."))
        return emit(out, cap, "llm", rest);
    return NAME_UNKNOWN;
}

NameKind names_to_canonical(const char *f, char *out, size_t cap) {
    // The original LLaVA repo's folders nest the CLIP tower once more
    // (model.vision_tower.vision_tower.vision_model.*).
    static const char *vision_prefixes[] = {"model.vision_tower.vision_tower.vision_model.",
                                            "model.vision_tower.vision_model.", "vision_tower.vision_model.",
                                            "model.vision_tower.", "vision_tower.", "vision_model."};
    for (size_t i = 0; i < sizeof vision_prefixes / sizeof *vision_prefixes; i++)
        if (starts_with(f, vision_prefixes[i])) return vision_rest(f + strlen(vision_prefixes[i]), out, cap);
    if (starts_with(f, "model.multi_modal_projector.")) return emit(out, cap, "projector", f + 28);
    if (starts_with(f, "multi_modal_projector.")) return emit(out, cap, "projector", f + 22);
    if (starts_with(f, "model.mm_projector.")) return llava_repo_projector(f + 19, out, cap);
    if (starts_with(f, "mm_projector.")) return llava_repo_projector(f + 13, out, cap);
    if (strcmp(f, "language_model.lm_head.weight") == 0 || strcmp(f, "lm_head.weight") == 0)
        return emit(out, cap, "llm", "lm_head.weight");
    if (starts_with(f, "language_model.model.")) return llm_rest(f + 21, out, cap);
    if (starts_with(f, "model.language_model.")) return llm_rest(f + 21, out, cap);
    if (starts_with(f, "model.")) return llm_rest(f + 6, out, cap);
    // CLIP folders: a flat CLIPVisionModel (transformers 5) and the parts of a
    // full CLIPModel that LLaVA never uses.
    if (starts_with(f, "text_model.") || starts_with(f, "visual_projection.") ||
        starts_with(f, "text_projection.") || strcmp(f, "logit_scale") == 0 || strcmp(f, "logit_bias") == 0)
        return NAME_IGNORED;
    return vision_rest(f, out, cap);
}

void names_default_file_name(const char *canonical, char *out, size_t cap) {
    if (starts_with(canonical, "vision."))
        snprintf(out, cap, "vision_tower.vision_model.%s", canonical + 7);
    else if (starts_with(canonical, "projector."))
        snprintf(out, cap, "multi_modal_projector.%s", canonical + 10);
    else if (strcmp(canonical, "llm.lm_head.weight") == 0)
        snprintf(out, cap, "language_model.lm_head.weight");
    else if (starts_with(canonical, "llm."))
        snprintf(out, cap, "language_model.model.%s", canonical + 4);
    else
        snprintf(out, cap, "%s", canonical);
}
