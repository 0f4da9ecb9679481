#include "model/model_source.h"

#include <string.h>

#include "model/checkpoint.h"
#include "model/lora_io.h"

void model_source_default(ModelSource *s) {
    memset(s, 0, sizeof *s);
    s->projector_type = "mlp2x_gelu";
    s->feature_layer = -2;
    s->image_token_index = -1;
}

int model_source_args(ModelSource *s, ArgSpec *specs, int n) {
    specs[n++] = (ArgSpec){"model", ARG_STRING, &s->model_dir, "LLaVA model folder (config.json + safetensors)", 0};
    return model_source_args_compose(s, specs, n);
}

int model_source_args_compose(ModelSource *s, ArgSpec *specs, int n) {
    specs[n++] = (ArgSpec){"vision", ARG_STRING, &s->vision_dir, "compose: CLIP vision folder", 0};
    specs[n++] = (ArgSpec){"llm", ARG_STRING, &s->llm_dir, "compose: LLaMA folder", 0};
    specs[n++] = (ArgSpec){"projector", ARG_STRING, &s->projector_path,
                           "compose: projector safetensors (default: fresh init)", 0};
    specs[n++] = (ArgSpec){"projector-type", ARG_STRING, &s->projector_type,
                           "compose: linear | mlp2x_gelu (default mlp2x_gelu)", 0};
    specs[n++] = (ArgSpec){"image-token", ARG_INT, &s->image_token_index,
                           "compose: id of <image> in the LLM vocabulary (default: append <image>, <pad>)", 0, -1, 16777215};
    specs[n++] = (ArgSpec){"seed", ARG_INT, &s->seed, "compose: projector init seed (default 0)", 0};
    specs[n++] = (ArgSpec){"adapter", ARG_STRING, &s->adapter_dir,
                           "PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors) on the model", 0};
    return n;
}

static int load_base(const ModelSource *s, LlavaModel *m, const Ops *ops, Error *err);

int model_source_load(const ModelSource *s, LlavaModel *m, const Ops *ops, Error *err) {
    if (load_base(s, m, ops, err) != 0) return -1;
    if (!s->adapter_dir) return 0;
    if (lora_load_adapter(m, s->adapter_dir, err) != 0) {
        model_free(m);
        return -1;
    }
    if (!s->keep_adapter) lora_merge(m);
    return 0;
}

static int load_base(const ModelSource *s, LlavaModel *m, const Ops *ops, Error *err) {
    if (s->model_dir) {
        if (s->vision_dir || s->llm_dir || s->projector_path)
            return err_set(err, "give either --model DIR or --vision DIR --llm DIR, not both");
        return checkpoint_load_llava(m, s->model_dir, ops, err);
    }
    if (!s->vision_dir || !s->llm_dir) return err_set(err, "no model: give --model DIR, or --vision DIR --llm DIR");
    ComposeOptions o;
    compose_options_default(&o);
    o.vision_dir = s->vision_dir;
    o.llm_dir = s->llm_dir;
    o.projector_path = s->projector_path;
    if (strcmp(s->projector_type, "linear") == 0)
        o.projector = PROJECTOR_LINEAR;
    else if (strcmp(s->projector_type, "mlp2x_gelu") == 0)
        o.projector = PROJECTOR_MLP2X_GELU;
    else
        return err_set(err, "--projector-type '%s' (expected linear or mlp2x_gelu)", s->projector_type);
    o.feature_layer = s->feature_layer;
    o.image_token_index = s->image_token_index;
    o.seed = (unsigned long long)s->seed;
    return checkpoint_compose(m, &o, ops, err);
}
