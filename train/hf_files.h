// The non-weight files of a Hugging Face LLaVA folder that `llava init`
// writes: the tokenizer files with <image> (and <pad>) added, the CLIP
// image processor config, and a LlavaProcessor config.
#ifndef LLAVA_HF_FILES_H
#define LLAVA_HF_FILES_H

#include "train/config.h"

// Copies tokenizer.json / tokenizer_config.json / special_tokens_map.json
// (and tokenizer.model) from src to dst, adding "<image>" as image_token_id
// and, when pad_id >= 0 and the tokenizer has no pad token, "<pad>" as pad_id.
// Both are added (special, not normalized) only when absent.
int hf_write_tokenizer_files(const char *src, const char *dst, int image_token_id, int pad_id, Error *err);
// preprocessor_config.json: copied from the CLIP folder when it has one, else
// CLIP defaults for the model's image size; processor_config.json for
// LlavaProcessor (image token, patch size, feature strategy).
int hf_write_processor_files(const char *clip_dir, const char *dst, const LlavaConfig *cfg, Error *err);

#endif
