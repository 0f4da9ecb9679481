// Checkpoint folders in Hugging Face form: load a LLaVA folder (config.json +
// model.safetensors or sharded with model.safetensors.index.json), compose a
// model from a CLIP folder + a LLaMA folder + a projector, and save.
#ifndef LLAVA_CHECKPOINT_H
#define LLAVA_CHECKPOINT_H

#include "common/safetensors.h"
#include "model/model.h"

// The safetensors files of one folder, with a name -> file map.
typedef struct {
    char dir[4096];
    int n_files;
    StFile *files;
    StrMap where;  // tensor name -> file index
} CheckpointDir;

int ckpt_dir_open(CheckpointDir *d, const char *dir, Error *err);
// A single .safetensors file as a one-file "folder".
int ckpt_dir_open_file(CheckpointDir *d, const char *path, Error *err);
void ckpt_dir_close(CheckpointDir *d);
const StTensor *ckpt_dir_find(const CheckpointDir *d, const char *name, const StFile **file);

// Loads every tensor of the modules in `modules` (bit mask of 1 << ModuleId)
// from d. record_names: remember each tensor's name in d, so gradients and
// saves use it. Fails on a missing tensor, a shape that disagrees with the
// config, or a name that maps twice, naming the tensor and both shapes.
// resize_vocab: embed_tokens/lm_head may have fewer rows than the model; the
// extra rows are set to the mean of the loaded ones (new special tokens).
int checkpoint_load_modules(LlavaModel *m, const CheckpointDir *d, unsigned modules, int record_names,
                            int resize_vocab, Error *err);

// Reads DIR/config.json, builds the model on `ops` and loads all weights.
int checkpoint_load_llava(LlavaModel *m, const char *dir, const Ops *ops, Error *err);

// Composition from parts (stage 1 starts here).
typedef struct {
    const char *vision_dir;      // CLIP folder (CLIPVisionModel or CLIPModel)
    const char *llm_dir;         // LLaMA folder (or an original LLaVA repo folder)
    const char *projector_path;  // safetensors with projector weights, or NULL
    int projector;               // PROJECTOR_* when no config names one
    int feature_layer;           // default -2
    int keep_cls;                // default 0 (strategy "default")
    int image_token_index;       // -1: append <image> (and <pad>) to the vocabulary
    int pad_vocab_to;            // round the grown vocabulary up (64, as llava-hf)
    unsigned long long seed;     // projector init when no weights are given
} ComposeOptions;

void compose_options_default(ComposeOptions *o);
int checkpoint_compose(LlavaModel *m, const ComposeOptions *opt, const Ops *ops, Error *err);

// Projector init as torch.nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
void checkpoint_init_projector(LlavaModel *m, unsigned long long seed);

// Fresh weights in the style of transformers' init: normal(0, 0.02) for
// matrices and embeddings, zero biases, unit norm weights; the projector as
// checkpoint_init_projector.
void checkpoint_init_random(LlavaModel *m, unsigned long long seed);

#endif
