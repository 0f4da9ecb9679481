// Model configuration: what config.json of a Hugging Face
// LlavaForConditionalGeneration (transformers 4.x and 5 spellings), a CLIP
// vision folder and a LLaMA folder say, with the defaults of each class.
#ifndef LLAVA_CONFIG_H
#define LLAVA_CONFIG_H

#include "common/util.h"

typedef enum { PROJECTOR_LINEAR, PROJECTOR_MLP2X_GELU } ProjectorType;
typedef enum { VISION_ACT_QUICK_GELU, VISION_ACT_GELU, VISION_ACT_GELU_TANH } VisionAct;
// CLIP: CLS token, pre_layrnorm, patch conv without bias. SigLIP: no CLS, no
// pre-layernorm, patch conv with bias (post_layernorm/head are not features).
typedef enum { VISION_CLIP, VISION_SIGLIP } VisionKind;
typedef enum { TEXT_LLAMA, TEXT_QWEN2 } TextKind;
// rope_type of rope_scaling / rope_parameters that we compute.
typedef enum { ROPE_DEFAULT, ROPE_LINEAR, ROPE_LLAMA3 } RopeKind;

typedef struct {
    int hidden;        // D  (hidden_size)
    int layers;        // L  (num_hidden_layers)
    int heads;         // H  (num_attention_heads), head size D/H
    int intermediate;  // I  (intermediate_size)
    int image_size;    // S
    int patch_size;    // P
    float eps;         // layer_norm_eps
    VisionAct act;     // hidden_act
    VisionKind kind;
} VisionConfig;

typedef struct {
    int vocab;         // V
    int hidden;        // C
    int layers;        // L
    int heads;         // NH
    int kv_heads;      // NKV
    int head_dim;      // HS
    int intermediate;  // I
    int max_positions;
    float eps;         // rms_norm_eps
    float rope_theta;
    int tied;          // lm_head shares embed_tokens
    TextKind kind;     // llama or qwen2 (what config.json is saved as)
    int qkv_bias;      // q/k/v projections carry biases (Qwen2; Llama attention_bias)
    int o_bias;        // o_proj bias (Llama attention_bias; never Qwen2)
    int mlp_bias;      // gate/up/down biases (Llama mlp_bias)
    RopeKind rope_kind;
    float rope_factor;            // linear, llama3
    float rope_low_freq_factor;   // llama3
    float rope_high_freq_factor;  // llama3
    int rope_original_max;        // llama3 original_max_position_embeddings
    int bos_id, eos_id, pad_id;  // pad_id -1 when unset
} TextConfig;

typedef struct {
    VisionConfig vision;
    TextConfig text;
    ProjectorType projector;
    int projector_bias;
    int image_token_index;
    int image_seq_length;
    int feature_layer;    // as written: negative counts from the end
    int keep_cls;         // vision_feature_select_strategy "full"
    // derived by config_finish:
    int vision_layers_run;  // encoder layers to run for the feature layer
    int patches;            // (S/P)^2
    int vision_tokens;      // patches (+1 for CLIP's CLS): rows per image in the tower
    int image_tokens;       // vision_tokens, minus the first row with strategy default
} LlavaConfig;

// Parses a LlavaForConditionalGeneration config.json.
int config_load_llava(LlavaConfig *cfg, const char *path, Error *err);
// Parses the vision part of a CLIP or SigLIP folder's config.json
// (CLIPVisionModel / SiglipVisionModel, or a full CLIPModel / SiglipModel,
// whose vision_config is used).
int config_load_clip_vision(VisionConfig *vc, const char *path, Error *err);
// Parses a LlamaForCausalLM or Qwen2ForCausalLM config.json. Also reports the original LLaVA
// repo's projector fields when present (mm_projector_type,
// mm_vision_select_layer, mm_vision_select_feature) through the optional
// LlavaConfig (fields left untouched when absent).
int config_load_llama(TextConfig *tc, LlavaConfig *llava_fields, const char *path, Error *err);
// Fills derived fields and checks the whole config for consistency.
int config_finish(LlavaConfig *cfg, Error *err);
// RoPE inverse frequencies inv_freq[HS/2] in fp32, computed as transformers'
// rope init functions do (default, linear, llama3).
void config_rope_inv_freq(const TextConfig *t, float *inv_freq);
// Writes config.json for the model in the transformers 5 spelling (also read
// by transformers 4.x) plus `mm_projector_type`.
int config_save_llava(const LlavaConfig *cfg, const char *path, Error *err);
void config_print(const LlavaConfig *cfg, FILE *out);

#endif
