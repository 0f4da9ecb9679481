// The parameter layout: every tensor of the model, its canonical name, shape,
// and place in its module's single allocation. Load, save, the optimizer and
// the model all find tensors through this table.
//
// Canonical names are our own, independent of the checkpoint layout:
//   vision.<CLIPVisionTransformer path>   e.g. vision.encoder.layers.0.mlp.fc1.weight
//   projector.linear_{1,2}.{weight,bias}
//   llm.<LlamaModel path>, llm.lm_head.weight
// Each tensor also remembers the name it had in the checkpoint it came from,
// so outputs (gradients, saved checkpoints) use the user's own names.
#ifndef LLAVA_PARAMS_H
#define LLAVA_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "common/strmap.h"
#include "model/config.h"

// MODULE_LORA holds LoRA adapters (model/lora.c) when a run attaches them:
// empty otherwise, never saved into a model folder.
typedef enum { MODULE_VISION, MODULE_PROJECTOR, MODULE_LLM, MODULE_LORA, MODULE_COUNT } ModuleId;

typedef struct {
    char name[112];       // canonical
    char *file_name;      // name in the source checkpoint (owned)
    ModuleId module;
    size_t offset;        // elements from the start of the module's buffer
    size_t numel;
    int ndim;
    int64_t shape[4];
    int no_decay;         // biases and norm weights (the HF Trainer's rule)
    int file_dtype;       // StDtype it was stored as (saving keeps it); F32 when fresh
} ParamInfo;

typedef struct {
    ParamInfo *p;
    int n, cap;
    size_t module_numel[MODULE_COUNT];
    StrMap index;         // canonical name -> position in p
} ParamTable;

// Lays out every tensor of the configured model (fused blocks such as q/k/v
// and gate/up are adjacent so one matmul serves them).
void params_build(ParamTable *t, const LlavaConfig *cfg);
// Appends one tensor to module `mod` (LoRA adapters are added after loading).
void params_append(ParamTable *t, ModuleId mod, int ndim, const int64_t *shape, const char *canonical,
                   const char *file_name);
void params_free(ParamTable *t);
const ParamInfo *params_find(const ParamTable *t, const char *canonical);
// Offset (elements) of a tensor that must exist; the name is printf-formatted.
size_t params_offset(const ParamTable *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *module_name(ModuleId m);

// Name mapping between checkpoint files and canonical names.
typedef enum { NAME_PARAM, NAME_IGNORED, NAME_UNKNOWN } NameKind;
// Accepts every layout we read: transformers LLaVA (legacy Hub
// `vision_tower.vision_model.*` / `language_model.model.*`, 4.52+
// `model.vision_tower.*` / `model.language_model.*` / `lm_head.*`, 5.x saves
// with a flat `vision_tower.*`), CLIP folders (`vision_model.*` or flat), LLaMA
// folders (`model.*`, `lm_head.*`) and the original LLaVA repo's
// `model.mm_projector.*`. Ignored: CLIP text tower, position_ids buffers,
// rotary inv_freq buffers.
NameKind names_to_canonical(const char *file_name, char *canonical, size_t cap);
// The name a tensor gets in a LLaVA folder we write (transformers' Hub
// layout, loaded by transformers 4.x and 5.x).
void names_default_file_name(const char *canonical, char *out, size_t cap);

#endif
