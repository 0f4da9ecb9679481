// The run configuration of `llava train`: a JSON file (configs/*.json) plus
// `--set key=value` overrides. Every field is documented in docs/configs.md;
// unknown keys are rejected by name.
#ifndef LLAVA_RUN_CONFIG_H
#define LLAVA_RUN_CONFIG_H

#include "common/util.h"

typedef struct {
    // model source: a LLaVA folder, or CLIP + LLM (+ projector) to compose
    char model[1024], vision[1024], llm[1024], projector[1024];
    char projector_type[32];  // linear | mlp2x_gelu (composition only)
    int image_token;          // composition: id of <image>, -1 = append
    int stage;                // 1: projector; 2: projector + LLM
    // data
    char data[4096];          // shard folder, a LLaVA .json / .jsonl (prepped first), or a
                              // mixture: the JSON text of a [{"path", "weight"}, ...] list (data/mixture.h)
    char images[1024];        // image folder of a .json / .jsonl
    char data_cache[1024];    // where a .json is prepped (default <output_dir>/data)
    char template_name[32];   // plain | vicuna_v1 | v1 | llava_v1
    int max_length;
    char aspect[16];          // square | pad
    int group_by_modality_length;
    int pack;
    int workers;
    // schedule
    int epochs;
    int max_steps;            // > 0 overrides epochs
    int micro_batch;
    int grad_accum;
    int global_batch;         // > 0: grad_accum = global_batch / (micro_batch * world)
    double lr, projector_lr;  // projector_lr 0 = lr
    char schedule[16];        // cosine | linear | constant
    double warmup_ratio;
    int warmup_steps;         // > 0 overrides warmup_ratio
    double weight_decay, adam_beta1, adam_beta2, adam_eps;
    double max_grad_norm;     // <= 0: no clipping
    // LoRA (model/lora.h): lora_r > 0 trains adapters on the LLM's linears
    // instead of the LLM itself (stage 2); the projector still trains in full
    int lora_r;
    double lora_alpha, lora_dropout;
    char lora_targets[128];   // all | comma list of q, k, v, o, gate, up, down
    char lora_init[16];       // kaiming (PEFT's default) | gaussian
    int lora_rslora;          // scale alpha / sqrt(r) instead of alpha / r
    // execution
    int recompute;
    int selective_recompute;  // recompute false: keep matmul outputs, recompute norms + SwiGLU
    int zero_stage;           // 0: optimizer state on every process; 1: sharded (ZeRO-1); 2: + gradients; 3: + weights
    int zero3_shard_frozen;   // ZeRO-3: the frozen modules (vision tower, a stage-1 LLM) sharded too
    double memory_limit_gb;   // capacity of one process for the memory plan, 0 = automatic
    int stochastic_rounding;  // bf16 weights rounded stochastically from the fp32 masters
    char grad_dtype[8];       // fp32 | bf16 (CUDA: bf16 parameter gradients, fp32 accumulator when grad_accum > 1)
    char device[16];
    char attention_backend[16];  // flash | cudnn (device cuda)
    int threads;
    int seed;
    double peak_tflops;       // for MFU; 0 = known peak of the device, if any
    // output
    char output_dir[1024];
    int save_every;           // steps; 0 = only at the end
    int keep_last;
    int log_every;
    char resume[1024];        // auto | none | a checkpoint folder
    int max_bad_steps;        // non-finite steps in a row before stopping
    char save_dtype[16];      // auto (each tensor's input dtype) | bf16 | f32
} RunConfig;

void run_config_default(RunConfig *c);
// Applies the keys of a JSON object file. Unknown keys and wrong types fail.
int run_config_load_file(RunConfig *c, const char *path, Error *err);
// Applies one "key=value" (value parsed as JSON when it parses, else a string).
int run_config_set(RunConfig *c, const char *assignment, Error *err);
// Checks values and combinations after everything is applied.
int run_config_validate(const RunConfig *c, Error *err);
// The effective config as JSON text (saved next to checkpoints). Caller frees.
char *run_config_to_json(const RunConfig *c);
// Prints every key with its type and help (for `llava train --help`).
void run_config_print_keys(FILE *out);

#endif
