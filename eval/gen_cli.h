// Flags and model loading shared by the generating commands (generate, chat,
// eval): the model source, device, sampling, template and image aspect.
#ifndef LLAVA_GEN_CLI_H
#define LLAVA_GEN_CLI_H

#include "common/args.h"
#include "eval/generate.h"
#include "model/model_source.h"

typedef struct {
    ModelSource src;
    const char *device, *aspect, *template_name;
    float temperature, top_p;
    int top_k, max_new, seed, threads;
    char help_temperature[96], help_max_new[96];  // --help texts with this command's defaults
} GenCli;

// Defaults: cpu, aspect pad, template vicuna_v1, top_p 1, top_k 0, seed 0;
// temperature and max_new as the command's.
void gen_cli_default(GenCli *c, float temperature, int max_new);
// Appends the flags (room for 16 specs needed).
int gen_cli_args(GenCli *c, ArgSpec *specs, int n);
// Checks the values; prints "llava CMD: ..." and returns -1 when bad.
int gen_cli_check(const GenCli *c, const char *cmd);
// Sets threads, selects the backend and loads the model for inference.
int gen_cli_load(const GenCli *c, LlavaModel *m, Error *err);
// Sampling settings with the given stop token.
GenOptions gen_cli_options(const GenCli *c, int eos_id);
// Where the tokenizer and the image processor config live: the model folder,
// or for a composed model the LLM folder and the CLIP folder.
const char *gen_cli_tokenizer_dir(const GenCli *c);
const char *gen_cli_processor_dir(const GenCli *c);

#endif
