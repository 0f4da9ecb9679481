// The non-weight files of a Hugging Face LLaVA folder that `llava init`
// writes: the tokenizer files with <image> (and <pad>) added, the CLIP
// image processor config, and a LlavaProcessor config.
#ifndef LLAVA_HF_FILES_H
#define LLAVA_HF_FILES_H

#include "model/config.h"

// Copies tokenizer.json / tokenizer_config.json / special_tokens_map.json
// (and tokenizer.model) from src to dst, adding "<image>" as image_token_id
// (special, not normalized) when absent, and making the pad token agree with
// pad_id (>= 0): the tokenizer's own pad token must have that id; without one
// (pad_token null, or the unknown token as Vicuna's), the token at pad_id
// becomes the pad token, or "<pad>" is added there (llava-hf: 32001).
int hf_write_tokenizer_files(const char *src, const char *dst, int image_token_id, int pad_id, Error *err);
// The id of the tokenizer's real pad token in folder dir (not null, not the
// unknown token; special_tokens_map.json overrides tokenizer_config.json as
// in transformers), or -1 when it has none or no tokenizer.json.
int hf_tokenizer_pad_id(const char *dir, int *pad_id, Error *err);
// preprocessor_config.json: copied from the CLIP folder when it has one, else
// CLIP defaults for the model's image size; processor_config.json for
// LlavaProcessor (image token, patch size, feature strategy).
int hf_write_processor_files(const char *clip_dir, const char *dst, const LlavaConfig *cfg, Error *err);
// Every non-weight file `llava init` writes for a model composed from a CLIP
// folder and an LLM folder: the tokenizer files (when the LLM has a
// tokenizer.json) and the processor files. The final folder and checkpoints
// of a composed training run get the same.
int hf_write_model_files(const char *clip_dir, const char *llm_dir, const char *dst, const LlavaConfig *cfg,
                         Error *err);

#endif
