// LoRA adapters on disk in PEFT's format, so the ecosystem loads what we write
// (PeftModel.from_pretrained on a LlavaForConditionalGeneration base) and we
// load what PEFT and the LLaVA repo write:
//   adapter_config.json        peft_type LORA, r, lora_alpha, target_modules
//                              (a regex limited to the language model), ...
//   adapter_model.safetensors  base_model.model.model.language_model.layers.N.
//                              <module>.lora_{A,B}.weight, plus the projector in
//                              modules_to_save form (base_model.model.model.
//                              multi_modal_projector.*)
//   non_lora_trainables.bin    the projector as LLaVA's train.py saves it
//                              (torch.save, base_model.model.model.mm_projector.*)
//   config.json                the base model's config
#ifndef LLAVA_LORA_IO_H
#define LLAVA_LORA_IO_H

#include "model/lora.h"

// Writes the adapter folder. base_name goes into base_model_name_or_path.
// dropout is recorded as trained with (inference ignores it).
int lora_save_adapter(const LlavaModel *m, const char *dir, const char *base_name, Error *err);
// Reads an adapter folder onto a loaded base: attaches adapters of the rank
// and targets found (every layer must carry the same targets) and loads them,
// and the projector when the adapter carries one. A tensor that names no LLM
// linear layer of this base, or whose shape disagrees with it, is refused
// naming the tensor, both shapes and the file.
int lora_load_adapter(LlavaModel *m, const char *dir, Error *err);

#endif
