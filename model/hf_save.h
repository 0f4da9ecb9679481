// Writing a model as Hugging Face files: the LLaVA folder (config.json,
// safetensors weights, tokenizer / processor files) and the stage-1
// projector files the original LLaVA repo loads.
#ifndef LLAVA_HF_SAVE_H
#define LLAVA_HF_SAVE_H

#include "model/model.h"

// A complete LLaVA folder: config.json, model.safetensors (or shards of at
// most max_shard_bytes with model.safetensors.index.json), and the tokenizer
// / processor files copied from copy_from (when not NULL). save_dtype: auto
// (each tensor as its input stored it), bf16 or f32.
int save_model_folder(const LlavaModel *m, const char *dir, const char *copy_from, const char *save_dtype,
                      uint64_t max_shard_bytes, Error *err);
// Stage-1 outputs: projector.safetensors (the input checkpoint's tensor
// names) and mm_projector.bin (torch.save format, the original LLaVA names
// model.mm_projector.*, what LLaVA's --pretrain_mm_mlp_adapter loads).
int save_projector_files(const LlavaModel *m, const char *dir, Error *err);
// The original LLaVA repo's name of a projector tensor, after prefix:
// model.mm_projector.{0,2}.{weight,bias} (mlp2x_gelu) or model.mm_projector.*.
void save_llava_projector_name(const LlavaModel *m, const ParamInfo *p, const char *prefix, char *out, size_t cap);

#endif
