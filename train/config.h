// Model configuration: what config.json of a Hugging Face
// LlavaForConditionalGeneration (transformers 4.x and 5 spellings), a CLIP
// vision folder and a LLaMA folder say, with the defaults of each class.
#ifndef LLAVA_CONFIG_H
#define LLAVA_CONFIG_H

#include "common/util.h"

typedef enum { PROJECTOR_LINEAR, PROJECTOR_MLP2X_GELU } ProjectorType;
typedef enum { VISION_ACT_QUICK_GELU, VISION_ACT_GELU } VisionAct;

typedef struct {
    int hidden;        // D  (hidden_size)
    int layers;        // L  (num_hidden_layers)
    int heads;         // H  (num_attention_heads), head size D/H
    int intermediate;  // I  (intermediate_size)
    int image_size;    // S
    int patch_size;    // P
    float eps;         // layer_norm_eps
    VisionAct act;     // hidden_act
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
    int image_tokens;       // patches (+1 with CLS): tokens one image becomes
} LlavaConfig;

// Parses a LlavaForConditionalGeneration config.json.
int config_load_llava(LlavaConfig *cfg, const char *path, Error *err);
// Parses the vision part of a CLIP folder's config.json (CLIPVisionModel or
// a full CLIPModel, whose vision_config is used).
int config_load_clip_vision(VisionConfig *vc, const char *path, Error *err);
// Parses a LlamaForCausalLM config.json. Also reports the original LLaVA
// repo's projector fields when present (mm_projector_type,
// mm_vision_select_layer, mm_vision_select_feature) through the optional
// LlavaConfig (fields left untouched when absent).
int config_load_llama(TextConfig *tc, LlavaConfig *llava_fields, const char *path, Error *err);
// Fills derived fields and checks the whole config for consistency.
int config_finish(LlavaConfig *cfg, Error *err);
// Writes config.json for the model in the transformers 5 spelling (also read
// by transformers 4.x) plus `mm_projector_type`.
int config_save_llava(const LlavaConfig *cfg, const char *path, Error *err);
void config_print(const LlavaConfig *cfg, FILE *out);

#endif
