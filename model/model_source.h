// The model flags shared by commands that load a model: --model DIR (a LLaVA
// folder) or --vision DIR --llm DIR [--projector FILE] (composition).
#ifndef LLAVA_MODEL_SOURCE_H
#define LLAVA_MODEL_SOURCE_H

#include "common/args.h"
#include "model/model.h"

typedef struct {
    const char *model_dir;
    const char *vision_dir, *llm_dir, *projector_path;
    const char *projector_type;  // for composition: linear | mlp2x_gelu
    int feature_layer;
    int image_token_index;
    int seed;
    const char *adapter_dir;  // PEFT LoRA adapter folder applied on top, or NULL
    int keep_adapter;         // 1: keep the adapters separate (forward/backward through them); 0: merge at load
} ModelSource;

void model_source_default(ModelSource *s);
// Appends the flags to specs (returns the new count; specs must have room for 8 more).
int model_source_args(ModelSource *s, ArgSpec *specs, int n);
// The composition flags alone (--vision, --llm, ...; 6 more), for commands
// such as `llava init` that make a folder rather than read one.
int model_source_args_compose(ModelSource *s, ArgSpec *specs, int n);
// Loads per the flags, then the adapter when given; err names what was wrong.
int model_source_load(const ModelSource *s, LlavaModel *m, const Ops *ops, Error *err);

#endif
