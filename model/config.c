#include "model/config.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"

// ---- vision (transformers CLIPVisionConfig, SiglipVisionConfig) ------------------

static const VisionConfig SIGLIP_VISION_DEFAULTS = {
    .hidden = 768, .layers = 12, .heads = 12, .intermediate = 3072, .image_size = 224, .patch_size = 16,
    .eps = 1e-6f, .act = VISION_ACT_GELU_TANH, .kind = VISION_SIGLIP};

// `defaults` are the class defaults (CLIPVisionConfig) or LlavaConfig's own
// defaults when the whole vision_config is absent; a SigLIP model_type
// switches to SiglipVisionConfig's defaults.
static int parse_vision(const cJSON *o, VisionConfig *vc, const VisionConfig *defaults, const char *where,
                        Error *err) {
    const char *act = NULL, *model_type = NULL;
    int channels = 3;
    if (json_get_string(o, "model_type", NULL, &model_type, where, err)) return -1;
    if (model_type && (strcmp(model_type, "siglip_vision_model") == 0 || strcmp(model_type, "siglip") == 0))
        defaults = &SIGLIP_VISION_DEFAULTS;
    else if (model_type && strcmp(model_type, "clip_vision_model") != 0 && strcmp(model_type, "clip") != 0)
        return err_set(err,
                       "%s: vision model_type \"%s\" is not supported (CLIP or SigLIP vision towers; refused by "
                       "name: siglip2, dinov2, pixtral, qwen2_vl and other towers)",
                       where, model_type);
    vc->kind = defaults->kind;
    const char *default_act = defaults->act == VISION_ACT_GELU_TANH ? "gelu_pytorch_tanh" : "quick_gelu";
    if (json_get_int(o, "hidden_size", defaults->hidden, &vc->hidden, where, err) ||
        json_get_int(o, "num_hidden_layers", defaults->layers, &vc->layers, where, err) ||
        json_get_int(o, "num_attention_heads", defaults->heads, &vc->heads, where, err) ||
        json_get_int(o, "intermediate_size", defaults->intermediate, &vc->intermediate, where, err) ||
        json_get_int(o, "image_size", defaults->image_size, &vc->image_size, where, err) ||
        json_get_int(o, "patch_size", defaults->patch_size, &vc->patch_size, where, err) ||
        json_get_int(o, "num_channels", 3, &channels, where, err) ||
        json_get_float(o, "layer_norm_eps", defaults->eps, &vc->eps, where, err) ||
        json_get_string(o, "hidden_act", default_act, &act, where, err))
        return -1;
    if (channels != 3) return err_set(err, "%s: num_channels %d is not supported (RGB only)", where, channels);
    if (strcmp(act, "quick_gelu") == 0)
        vc->act = VISION_ACT_QUICK_GELU;
    else if (strcmp(act, "gelu") == 0)
        vc->act = VISION_ACT_GELU;
    else if (strcmp(act, "gelu_pytorch_tanh") == 0 || strcmp(act, "gelu_new") == 0)
        vc->act = VISION_ACT_GELU_TANH;
    else
        return err_set(err, "%s: vision hidden_act \"%s\" is not supported (quick_gelu, gelu or gelu_pytorch_tanh)",
                       where, act);
    return 0;
}

static const VisionConfig CLIP_VISION_DEFAULTS = {
    .hidden = 768, .layers = 12, .heads = 12, .intermediate = 3072, .image_size = 224, .patch_size = 32,
    .eps = 1e-5f, .act = VISION_ACT_QUICK_GELU, .kind = VISION_CLIP};
// LlavaConfig builds this CLIP ViT-L/14-336 when vision_config is absent.
static const VisionConfig LLAVA_VISION_DEFAULTS = {
    .hidden = 1024, .layers = 24, .heads = 16, .intermediate = 4096, .image_size = 336, .patch_size = 14,
    .eps = 1e-5f, .act = VISION_ACT_QUICK_GELU, .kind = VISION_CLIP};

// ---- text (transformers LlamaConfig) -------------------------------------------

// Reads the RoPE base and scaling from either spelling: `rope_theta` +
// `rope_scaling` (4.x) or `rope_parameters` (5.x). default, linear and llama3
// are computed; every other rope_type (yarn, dynamic, longrope, ...) is
// refused by name.
static int parse_rope(const cJSON *o, TextConfig *tc, const char *where, Error *err) {
    if (json_get_float(o, "rope_theta", 10000.0f, &tc->rope_theta, where, err)) return -1;
    tc->rope_kind = ROPE_DEFAULT;
    tc->rope_factor = 1.0f;
    const char *kinds[] = {"rope_parameters", "rope_scaling"};
    for (int k = 0; k < 2; k++) {
        const cJSON *rp = cJSON_GetObjectItemCaseSensitive(o, kinds[k]);
        if (!rp || cJSON_IsNull(rp)) continue;
        if (!cJSON_IsObject(rp)) return err_set(err, "%s: \"%s\" must be an object", where, kinds[k]);
        const char *type = "default";
        if (json_get_string(rp, "rope_type", "default", &type, where, err)) return -1;
        if (json_has(rp, "type") && json_get_string(rp, "type", "default", &type, where, err)) return -1;
        if (json_has(rp, "rope_theta") && json_get_float(rp, "rope_theta", 10000.0f, &tc->rope_theta, where, err))
            return -1;
        if (strcmp(type, "default") == 0) continue;
        if (strcmp(type, "linear") == 0) {
            tc->rope_kind = ROPE_LINEAR;
        } else if (strcmp(type, "llama3") == 0) {
            tc->rope_kind = ROPE_LLAMA3;
            if (json_get_float(rp, "low_freq_factor", 1.0f, &tc->rope_low_freq_factor, where, err) ||
                json_get_float(rp, "high_freq_factor", 4.0f, &tc->rope_high_freq_factor, where, err) ||
                json_get_int(rp, "original_max_position_embeddings", 8192, &tc->rope_original_max, where, err))
                return -1;
            if (!(tc->rope_high_freq_factor > tc->rope_low_freq_factor) || tc->rope_original_max <= 0)
                return err_set(err, "%s: %s: llama3 needs high_freq_factor > low_freq_factor and a positive "
                               "original_max_position_embeddings", where, kinds[k]);
        } else {
            return err_set(err, "%s: %s.rope_type \"%s\" is not supported (default, linear and llama3 are)", where,
                           kinds[k], type);
        }
        if (json_get_float(rp, "factor", 1.0f, &tc->rope_factor, where, err)) return -1;
        if (!(tc->rope_factor > 0.0f)) return err_set(err, "%s: %s.factor must be positive", where, kinds[k]);
    }
    return 0;
}

void config_rope_inv_freq(const TextConfig *t, float *inv_freq) {
    const int HS = t->head_dim, half = HS / 2;
    for (int i = 0; i < half; i++) inv_freq[i] = 1.0f / powf(t->rope_theta, (float)(2 * i) / (float)HS);
    if (t->rope_kind == ROPE_LINEAR) {
        for (int i = 0; i < half; i++) inv_freq[i] /= t->rope_factor;
    } else if (t->rope_kind == ROPE_LLAMA3) {
        // transformers' _compute_llama3_parameters, in fp32 as there.
        const float factor = t->rope_factor, lo = t->rope_low_freq_factor, hi = t->rope_high_freq_factor;
        const float old_len = (float)t->rope_original_max;
        const float low_wavelen = old_len / lo, high_wavelen = old_len / hi, two_pi = (float)(2.0 * M_PI);
        for (int i = 0; i < half; i++) {
            float f = inv_freq[i], wavelen = two_pi / f;
            float scaled = wavelen > low_wavelen ? f / factor : f;
            float smooth = (old_len / wavelen - lo) / (hi - lo);
            float smoothed = (1.0f - smooth) * scaled / factor + smooth * scaled;
            int medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
            inv_freq[i] = medium ? smoothed : scaled;
        }
    }
}

// eos_token_id may be an int or a list (the first is used).
static int parse_token_id(const cJSON *o, const char *key, int def, int *out, const char *where, Error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsArray(v)) {
        const cJSON *first = cJSON_GetArrayItem(v, 0);
        int64_t id;
        if (json_number_to_int64(first, -1, 2147483647.0, &id) != 0)
            return err_set(err, "%s: \"%s\" must hold integers", where, key);
        *out = (int)id;
        return 0;
    }
    return json_get_int(o, key, def, out, where, err);
}

// LlamaConfig and Qwen2Config (their defaults differ: Qwen2's vocabulary,
// widths, eps, no bos/eos, and q/k/v biases always on).
static int parse_text(const cJSON *o, TextConfig *tc, const char *where, Error *err) {
    const char *model_type = NULL, *act = "silu";
    int attention_bias = 0, mlp_bias = 0, pretraining_tp = 1, sliding = 0;
    if (json_get_string(o, "model_type", NULL, &model_type, where, err)) return -1;
    int qwen2 = model_type && strcmp(model_type, "qwen2") == 0;
    if (model_type && !qwen2 && strcmp(model_type, "llama") != 0 && strcmp(model_type, "llava_llama") != 0)
        return err_set(err,
                       "%s: text model_type \"%s\" is not supported (llama and qwen2; refused by name: mistral, "
                       "qwen3, gemma, phi3 and other families)",
                       where, model_type);
    tc->kind = qwen2 ? TEXT_QWEN2 : TEXT_LLAMA;
    if (json_get_int(o, "vocab_size", qwen2 ? 151936 : 32000, &tc->vocab, where, err) ||
        json_get_int(o, "hidden_size", 4096, &tc->hidden, where, err) ||
        json_get_int(o, "intermediate_size", qwen2 ? 22016 : 11008, &tc->intermediate, where, err) ||
        json_get_int(o, "num_hidden_layers", 32, &tc->layers, where, err) ||
        json_get_int(o, "num_attention_heads", 32, &tc->heads, where, err) ||
        json_get_int(o, "num_key_value_heads", tc->heads, &tc->kv_heads, where, err) ||
        json_get_int(o, "head_dim", tc->heads > 0 ? tc->hidden / tc->heads : 0, &tc->head_dim, where, err) ||
        json_get_int(o, "max_position_embeddings", qwen2 ? 32768 : 2048, &tc->max_positions, where, err) ||
        json_get_float(o, "rms_norm_eps", 1e-6f, &tc->eps, where, err) ||
        json_get_bool(o, "tie_word_embeddings", 0, &tc->tied, where, err) ||
        json_get_string(o, "hidden_act", "silu", &act, where, err) ||
        json_get_bool(o, "attention_bias", 0, &attention_bias, where, err) ||
        json_get_bool(o, "mlp_bias", 0, &mlp_bias, where, err) ||
        json_get_bool(o, "use_sliding_window", 0, &sliding, where, err) ||
        json_get_int(o, "pretraining_tp", 1, &pretraining_tp, where, err) ||
        parse_token_id(o, "bos_token_id", qwen2 ? -1 : 1, &tc->bos_id, where, err) ||
        parse_token_id(o, "eos_token_id", qwen2 ? -1 : 2, &tc->eos_id, where, err) ||
        parse_token_id(o, "pad_token_id", -1, &tc->pad_id, where, err) || parse_rope(o, tc, where, err))
        return -1;
    if (strcmp(act, "silu") != 0)
        return err_set(err, "%s: text hidden_act \"%s\" is not supported (silu only)", where, act);
    if (qwen2) {
        // Qwen2Attention: q/k/v with bias, o_proj without, MLP without;
        // attention_bias/mlp_bias are not Qwen2Config fields.
        if (sliding)
            return err_set(err, "%s: use_sliding_window true (sliding-window attention) is not supported", where);
        tc->qkv_bias = 1;
        tc->o_bias = 0;
        tc->mlp_bias = 0;
    } else {
        tc->qkv_bias = tc->o_bias = attention_bias;
        tc->mlp_bias = mlp_bias;
    }
    (void)pretraining_tp;  // only changes how transformers splits matmuls, not the result
    return 0;
}

// LLaVA's mm_projector_type values we support.
static int parse_projector_type(const char *name, ProjectorType *out, const char *where, Error *err) {
    if (strcmp(name, "linear") == 0)
        *out = PROJECTOR_LINEAR;
    else if (strcmp(name, "mlp2x_gelu") == 0)
        *out = PROJECTOR_MLP2X_GELU;
    else
        return err_set(err, "%s: mm_projector_type \"%s\" is not supported (linear or mlp2x_gelu)", where, name);
    return 0;
}

static int parse_llava_fields(const cJSON *o, LlavaConfig *cfg, const char *where, Error *err) {
    const char *strategy = "default", *act = "gelu", *proj = "mlp2x_gelu";
    const cJSON *fl = cJSON_GetObjectItemCaseSensitive(o, "vision_feature_layer");
    if (cJSON_IsArray(fl))
        return err_set(err, "%s: a list vision_feature_layer (multi-layer features) is not supported", where);
    int tok = 32000;
    if (json_has(o, "image_token_id") && json_get_int(o, "image_token_id", 32000, &tok, where, err)) return -1;
    if (json_get_int(o, "image_token_index", tok, &cfg->image_token_index, where, err) ||
        json_get_int(o, "image_seq_length", 576, &cfg->image_seq_length, where, err) ||
        json_get_int(o, "vision_feature_layer", -2, &cfg->feature_layer, where, err) ||
        json_get_string(o, "vision_feature_select_strategy", "default", &strategy, where, err) ||
        json_get_string(o, "projector_hidden_act", "gelu", &act, where, err) ||
        json_get_bool(o, "multimodal_projector_bias", 1, &cfg->projector_bias, where, err) ||
        json_get_string(o, "mm_projector_type", "mlp2x_gelu", &proj, where, err))
        return -1;
    if (strcmp(strategy, "default") == 0)
        cfg->keep_cls = 0;
    else if (strcmp(strategy, "full") == 0)
        cfg->keep_cls = 1;
    else
        return err_set(err, "%s: vision_feature_select_strategy \"%s\" (expected default or full)", where, strategy);
    if (strcmp(act, "gelu") != 0)
        return err_set(err, "%s: projector_hidden_act \"%s\" is not supported (gelu, the exact erf form)", where, act);
    return parse_projector_type(proj, &cfg->projector, where, err);
}

int config_load_llava(LlavaConfig *cfg, const char *path, Error *err) {
    memset(cfg, 0, sizeof *cfg);
    cJSON *root = json_parse_object_file(path, err);
    if (!root) return -1;
    int rc = -1;
    const char *model_type = NULL;
    if (json_get_string(root, "model_type", NULL, &model_type, path, err)) goto done;
    if (!model_type || strcmp(model_type, "llava") != 0) {
        err_set(err, "%s: model_type is \"%s\", expected \"llava\" (LlavaForConditionalGeneration); for separate "
                "CLIP and LLaMA folders use --vision DIR --llm DIR",
                path, model_type ? model_type : "(absent)");
        goto done;
    }
    const cJSON *vis = cJSON_GetObjectItemCaseSensitive(root, "vision_config");
    const cJSON *txt = cJSON_GetObjectItemCaseSensitive(root, "text_config");
    char where[4200];
    snprintf(where, sizeof where, "%s (vision_config)", path);
    if (vis && !cJSON_IsNull(vis)) {
        if (!cJSON_IsObject(vis)) {
            err_set(err, "%s: must be an object", where);
            goto done;
        }
        if (parse_vision(vis, &cfg->vision, &CLIP_VISION_DEFAULTS, where, err)) goto done;
    } else if (parse_vision(NULL, &cfg->vision, &LLAVA_VISION_DEFAULTS, where, err)) {
        goto done;
    }
    snprintf(where, sizeof where, "%s (text_config)", path);
    if (txt && !cJSON_IsNull(txt) && !cJSON_IsObject(txt)) {
        err_set(err, "%s: must be an object", where);
        goto done;
    }
    // The heads default must be known before num_key_value_heads/head_dim
    // default to it: parse_text reads in that order from the same object.
    if (parse_text(txt && cJSON_IsObject(txt) ? txt : NULL, &cfg->text, where, err)) goto done;
    if (parse_llava_fields(root, cfg, path, err)) goto done;
    // transformers forwards a tie flag found at either level.
    int tied_top = 0;
    if (json_get_bool(root, "tie_word_embeddings", 0, &tied_top, path, err)) goto done;
    cfg->text.tied = cfg->text.tied || tied_top;
    int pad = cfg->text.pad_id;
    if (json_get_int(root, "pad_token_id", pad, &pad, path, err)) goto done;
    cfg->text.pad_id = pad;
    rc = config_finish(cfg, err);
    if (rc) err_prefix(err, "%s: ", path);
done:
    cJSON_Delete(root);
    return rc;
}

int config_load_clip_vision(VisionConfig *vc, const char *path, Error *err) {
    cJSON *root = json_parse_object_file(path, err);
    if (!root) return -1;
    int rc = -1;
    const char *model_type = NULL;
    if (json_get_string(root, "model_type", NULL, &model_type, path, err)) goto done;
    const cJSON *o = root;
    if (model_type && (strcmp(model_type, "clip") == 0 || strcmp(model_type, "siglip") == 0)) {
        o = cJSON_GetObjectItemCaseSensitive(root, "vision_config");
        if (!cJSON_IsObject(o)) {
            err_set(err, "%s: a %s config without a vision_config object", path, model_type);
            goto done;
        }
    }
    // A full SiglipModel's vision_config may omit its model_type.
    rc = parse_vision(o, vc, model_type && strcmp(model_type, "siglip") == 0 ? &SIGLIP_VISION_DEFAULTS
                                                                               : &CLIP_VISION_DEFAULTS,
                      path, err);
done:
    cJSON_Delete(root);
    return rc;
}

int config_load_llama(TextConfig *tc, LlavaConfig *llava_fields, const char *path, Error *err) {
    cJSON *root = json_parse_object_file(path, err);
    if (!root) return -1;
    int rc = -1;
    if (parse_text(root, tc, path, err)) goto done;
    if (llava_fields) {
        // Original LLaVA repo checkpoints (model_type llava_llama) keep the
        // multimodal settings in the LLaMA config under mm_* names.
        const char *proj = NULL, *feature = NULL;
        if (json_get_string(root, "mm_projector_type", NULL, &proj, path, err) ||
            json_get_string(root, "mm_vision_select_feature", NULL, &feature, path, err) ||
            json_get_int(root, "mm_vision_select_layer", llava_fields->feature_layer, &llava_fields->feature_layer,
                         path, err))
            goto done;
        if (proj && parse_projector_type(proj, &llava_fields->projector, path, err) != 0) goto done;
        if (feature) {
            if (strcmp(feature, "patch") == 0)
                llava_fields->keep_cls = 0;
            else if (strcmp(feature, "cls_patch") == 0)
                llava_fields->keep_cls = 1;
            else {
                err_set(err, "%s: mm_vision_select_feature \"%s\" (expected patch or cls_patch)", path, feature);
                goto done;
            }
        }
    }
    rc = 0;
done:
    cJSON_Delete(root);
    return rc;
}

// A size from config.json must lie in [lo, hi]: bounds far above any real
// model, low enough that products of sizes cannot overflow (grid^2,
// heads x head_dim, vocab x hidden in size_t) and that a typo is refused
// before minutes of work or a huge allocation.
typedef struct {
    const char *key;
    int64_t value, lo, hi;
} SizeCheck;

static int check_sizes(const SizeCheck *c, int n, Error *err) {
    for (int i = 0; i < n; i++)
        if (c[i].value < c[i].lo || c[i].value > c[i].hi)
            return err_set(err, "%s = %lld is outside [%lld, %lld]", c[i].key, (long long)c[i].value,
                           (long long)c[i].lo, (long long)c[i].hi);
    return 0;
}

int config_finish(LlavaConfig *cfg, Error *err) {
    VisionConfig *v = &cfg->vision;
    TextConfig *t = &cfg->text;
    const SizeCheck sizes[] = {
        {"vision_config.hidden_size", v->hidden, 1, 65536},
        {"vision_config.num_hidden_layers", v->layers, 1, 1024},
        {"vision_config.num_attention_heads", v->heads, 1, 4096},
        {"vision_config.intermediate_size", v->intermediate, 1, 1 << 20},
        {"vision_config.image_size", v->image_size, 1, 8192},
        {"vision_config.patch_size", v->patch_size, 1, 8192},
        {"text_config.vocab_size", t->vocab, 1, 1 << 24},
        {"text_config.hidden_size", t->hidden, 1, 65536},
        {"text_config.intermediate_size", t->intermediate, 1, 1 << 20},
        {"text_config.num_hidden_layers", t->layers, 1, 1024},
        {"text_config.num_attention_heads", t->heads, 1, 4096},
        {"text_config.num_key_value_heads", t->kv_heads, 1, 4096},
        {"text_config.head_dim", t->head_dim, 1, 4096},
        {"text_config.max_position_embeddings", t->max_positions, 1, 1 << 24},
        {"text_config.num_attention_heads x head_dim", (int64_t)t->heads * t->head_dim, 1, 1 << 18},
        {"text_config.bos_token_id", t->bos_id, -1, (1 << 24) - 1},
        {"text_config.eos_token_id", t->eos_id, -1, (1 << 24) - 1},
        {"text_config.pad_token_id", t->pad_id, -1, (1 << 24) - 1},
        {"image_token_index", cfg->image_token_index, 0, (1 << 24) - 1},
        {"image_seq_length", cfg->image_seq_length, 1, 1 << 20},
        {"vision_feature_layer", cfg->feature_layer, -1025, 1024},
    };
    if (check_sizes(sizes, (int)(sizeof sizes / sizeof *sizes), err) != 0) return -1;
    if (!(v->eps > 0.0f) || !(t->eps > 0.0f) || !isfinite(v->eps) || !isfinite(t->eps))
        return err_set(err, "layer_norm_eps and rms_norm_eps must be finite and > 0");
    if (v->hidden <= 0 || v->layers <= 0 || v->heads <= 0 || v->intermediate <= 0 || v->image_size <= 0 ||
        v->patch_size <= 0)
        return err_set(err, "vision sizes must be positive");
    if (v->hidden % v->heads)
        return err_set(err, "vision hidden_size %d is not divisible by num_attention_heads %d", v->hidden, v->heads);
    if (v->patch_size > v->image_size)
        return err_set(err, "vision patch_size %d is larger than image_size %d", v->patch_size, v->image_size);
    if (t->vocab <= 0 || t->hidden <= 0 || t->layers <= 0 || t->heads <= 0 || t->kv_heads <= 0 ||
        t->head_dim <= 0 || t->intermediate <= 0)
        return err_set(err, "text sizes must be positive");
    if (t->heads % t->kv_heads)
        return err_set(err, "num_attention_heads %d is not a multiple of num_key_value_heads %d", t->heads,
                       t->kv_heads);
    if (t->head_dim % 2) return err_set(err, "head_dim %d must be even for rotary embeddings", t->head_dim);
    if (!(t->rope_theta > 0.0f)) return err_set(err, "rope_theta must be positive");
    int L = v->layers;
    int k = cfg->feature_layer >= 0 ? cfg->feature_layer : L + 1 + cfg->feature_layer;
    if (k < 0 || k > L)
        return err_set(err, "vision_feature_layer %d is out of range for %d vision layers", cfg->feature_layer, L);
    cfg->vision_layers_run = k;
    int grid = v->image_size / v->patch_size;
    if ((int64_t)grid * grid > (1 << 20))
        return err_set(err, "vision image_size %d / patch_size %d gives %lld patches (at most %d)", v->image_size,
                       v->patch_size, (long long)grid * grid, 1 << 20);
    cfg->patches = grid * grid;
    cfg->vision_tokens = cfg->patches + (v->kind == VISION_CLIP ? 1 : 0);
    // Strategy default drops the first row, as transformers' LlavaModel does
    // (on SigLIP, which has no CLS, that row is the first patch).
    cfg->image_tokens = cfg->vision_tokens - (cfg->keep_cls ? 0 : 1);
    if (cfg->image_tokens <= 0) return err_set(err, "the vision tower gives no image tokens");
    if (cfg->image_seq_length != cfg->image_tokens)
        return err_set(err,
                       "image_seq_length is %d but the vision tower gives %d tokens per image ((%d/%d)^2 patches%s)",
                       cfg->image_seq_length, cfg->image_tokens, v->image_size, v->patch_size,
                       v->kind == VISION_SIGLIP ? (cfg->keep_cls ? ", SigLIP, strategy full" : ", SigLIP, first patch dropped (strategy default)")
                                                : (cfg->keep_cls ? " + CLS, strategy full" : ", CLS dropped"));
    return 0;
}

static cJSON *add_number(cJSON *o, const char *k, double v) { return cJSON_AddNumberToObject(o, k, v); }

int config_save_llava(const LlavaConfig *cfg, const char *path, Error *err) {
    const VisionConfig *v = &cfg->vision;
    const TextConfig *t = &cfg->text;
    cJSON *root = cJSON_CreateObject();
    cJSON *arch = cJSON_AddArrayToObject(root, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString("LlavaForConditionalGeneration"));
    cJSON_AddStringToObject(root, "model_type", "llava");
    add_number(root, "image_token_index", cfg->image_token_index);
    add_number(root, "image_seq_length", cfg->image_seq_length);
    cJSON_AddStringToObject(root, "projector_hidden_act", "gelu");
    cJSON_AddBoolToObject(root, "multimodal_projector_bias", cfg->projector_bias);
    cJSON_AddStringToObject(root, "mm_projector_type", cfg->projector == PROJECTOR_LINEAR ? "linear" : "mlp2x_gelu");
    add_number(root, "vision_feature_layer", cfg->feature_layer);
    cJSON_AddStringToObject(root, "vision_feature_select_strategy", cfg->keep_cls ? "full" : "default");
    cJSON_AddBoolToObject(root, "tie_word_embeddings", t->tied);
    if (t->pad_id >= 0) add_number(root, "pad_token_id", t->pad_id);

    cJSON *tc = cJSON_AddObjectToObject(root, "text_config");
    cJSON_AddStringToObject(tc, "model_type", t->kind == TEXT_QWEN2 ? "qwen2" : "llama");
    if (t->kind == TEXT_LLAMA) {
        cJSON_AddBoolToObject(tc, "attention_bias", t->qkv_bias);
        cJSON_AddBoolToObject(tc, "mlp_bias", t->mlp_bias);
    }
    add_number(tc, "vocab_size", t->vocab);
    add_number(tc, "hidden_size", t->hidden);
    add_number(tc, "intermediate_size", t->intermediate);
    add_number(tc, "num_hidden_layers", t->layers);
    add_number(tc, "num_attention_heads", t->heads);
    add_number(tc, "num_key_value_heads", t->kv_heads);
    add_number(tc, "head_dim", t->head_dim);
    add_number(tc, "max_position_embeddings", t->max_positions);
    add_number(tc, "rms_norm_eps", t->eps);
    add_number(tc, "rope_theta", t->rope_theta);  // 4.x spelling
    cJSON *rp = cJSON_AddObjectToObject(tc, "rope_parameters");  // 5.x spelling
    add_number(rp, "rope_theta", t->rope_theta);
    static const char *rope_names[] = {"default", "linear", "llama3"};
    cJSON_AddStringToObject(rp, "rope_type", rope_names[t->rope_kind]);
    if (t->rope_kind != ROPE_DEFAULT) {
        add_number(rp, "factor", t->rope_factor);
        if (t->rope_kind == ROPE_LLAMA3) {
            add_number(rp, "low_freq_factor", t->rope_low_freq_factor);
            add_number(rp, "high_freq_factor", t->rope_high_freq_factor);
            add_number(rp, "original_max_position_embeddings", t->rope_original_max);
        }
        cJSON_AddItemToObject(tc, "rope_scaling", cJSON_Duplicate(rp, 1));  // 4.x spelling
    }
    cJSON_AddStringToObject(tc, "hidden_act", "silu");
    cJSON_AddBoolToObject(tc, "tie_word_embeddings", t->tied);
    if (t->bos_id >= 0) add_number(tc, "bos_token_id", t->bos_id);
    if (t->eos_id >= 0) add_number(tc, "eos_token_id", t->eos_id);
    if (t->pad_id >= 0) add_number(tc, "pad_token_id", t->pad_id);

    cJSON *vc = cJSON_AddObjectToObject(root, "vision_config");
    cJSON_AddStringToObject(vc, "model_type", v->kind == VISION_SIGLIP ? "siglip_vision_model" : "clip_vision_model");
    // The pooling head is not part of LLaVA's features and is not kept.
    if (v->kind == VISION_SIGLIP) cJSON_AddBoolToObject(vc, "vision_use_head", 0);
    add_number(vc, "hidden_size", v->hidden);
    add_number(vc, "intermediate_size", v->intermediate);
    add_number(vc, "num_hidden_layers", v->layers);
    add_number(vc, "num_attention_heads", v->heads);
    add_number(vc, "image_size", v->image_size);
    add_number(vc, "patch_size", v->patch_size);
    add_number(vc, "layer_norm_eps", v->eps);
    static const char *act_names[] = {"quick_gelu", "gelu", "gelu_pytorch_tanh"};
    cJSON_AddStringToObject(vc, "hidden_act", act_names[v->act]);
    add_number(vc, "num_channels", 3);

    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    size_t len = strlen(text);
    text = xrealloc(text, len + 2);
    text[len] = '\n';
    text[len + 1] = '\0';
    int rc = write_file_atomic(path, text, len + 1, err);
    free(text);
    return rc;
}

void config_print(const LlavaConfig *cfg, FILE *out) {
    const VisionConfig *v = &cfg->vision;
    const TextConfig *t = &cfg->text;
    fprintf(out, "vision: %s D=%d L=%d (runs %d) H=%d I=%d S=%d P=%d -> %d tokens/image\n",
            v->kind == VISION_SIGLIP ? "SigLIP" : "CLIP", v->hidden, v->layers,
            cfg->vision_layers_run, v->heads, v->intermediate, v->image_size, v->patch_size, cfg->image_tokens);
    fprintf(out, "projector: %s%s\n", cfg->projector == PROJECTOR_LINEAR ? "linear" : "mlp2x_gelu",
            cfg->projector_bias ? "" : " (no bias)");
    fprintf(out, "llm: %s%s V=%d C=%d L=%d NH=%d NKV=%d HS=%d I=%d eps=%g theta=%g%s\n", t->kind == TEXT_QWEN2 ? "Qwen2" : "LLaMA",
            t->rope_kind == ROPE_LLAMA3 ? " (rope llama3)" : t->rope_kind == ROPE_LINEAR ? " (rope linear)" : "", t->vocab, t->hidden,
            t->layers, t->heads, t->kv_heads, t->head_dim, t->intermediate, t->eps, t->rope_theta,
            t->tied ? " tied" : "");
}
