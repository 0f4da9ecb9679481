#include "eval/gen_cli.h"

#include <stdio.h>

#include "kernels/backend.h"

void gen_cli_default(GenCli *c, float temperature, int max_new) {
    model_source_default(&c->src);
    c->device = "cpu";
    c->aspect = "pad";
    c->template_name = "auto";
    c->temperature = temperature;
    c->top_p = 1.0f;
    c->top_k = 0;
    c->max_new = max_new;
    c->seed = 0;
    c->threads = 0;
}

int gen_cli_args(GenCli *c, ArgSpec *specs, int n) {
    n = model_source_args(&c->src, specs, n);
    snprintf(c->help_temperature, sizeof c->help_temperature, "sampling temperature, 0 = greedy (default %g)",
             c->temperature);
    snprintf(c->help_max_new, sizeof c->help_max_new, "stop after this many new tokens (default %d)", c->max_new);
    specs[n++] = (ArgSpec){"template", ARG_STRING, &c->template_name,
                           "conversation template: auto | vicuna_v1 (= v1) | llava_v1 | qwen_2 | llama_3 | plain (default auto: "
                           "qwen_2 for a tokenizer with <|im_start|>, llama_3 for one with <|start_header_id|>, "
                           "else vicuna_v1)", 0};
    specs[n++] = (ArgSpec){"aspect", ARG_STRING, &c->aspect,
                           "pad (LLaVA-1.5: expand to a square first) | square (resize + centre crop) (default pad)", 0};
    specs[n++] = (ArgSpec){"temperature", ARG_FLOAT, &c->temperature, c->help_temperature, 0, 0, 100};
    specs[n++] = (ArgSpec){"top-p", ARG_FLOAT, &c->top_p, "nucleus sampling mass, 1 = off (default 1)", 0, 0, 1};
    specs[n++] = (ArgSpec){"top-k", ARG_INT, &c->top_k, "keep the k most likely tokens, 0 = off (default 0)", 0, 0, 16777216};
    specs[n++] = (ArgSpec){"max-new-tokens", ARG_INT, &c->max_new, c->help_max_new, 0, 0, 1048576};
    specs[n++] = (ArgSpec){"sample-seed", ARG_INT, &c->seed, "sampling seed (default 0)", 0};
    specs[n++] = (ArgSpec){"device", ARG_STRING, &c->device, "cpu | cuda (default cpu)", 0};
    specs[n++] = (ArgSpec){"threads", ARG_INT, &c->threads, "CPU threads (default: all cores)", 0, 0, 1024};
    return n;
}

int gen_cli_check(const GenCli *c, const char *cmd) {
    if (c->max_new < 1 || c->temperature < 0 || c->top_p <= 0 || c->top_p > 1 || c->top_k < 0) {
        fprintf(stderr, "llava %s: need --max-new-tokens >= 1, --temperature >= 0, 0 < --top-p <= 1, --top-k >= 0\n",
                cmd);
        return -1;
    }
    return 0;
}

int gen_cli_load(const GenCli *c, LlavaModel *m, Error *err) {
    backend_set_threads(c->threads);
    const Ops *ops = backend_select(c->device, err);
    if (!ops || model_source_load(&c->src, m, ops, err) != 0) return -1;
    model_set_stage(m, 0);
    return 0;
}

GenOptions gen_cli_options(const GenCli *c, int eos_id) {
    return (GenOptions){.sample = {.temperature = c->temperature, .top_p = c->top_p, .top_k = c->top_k},
                        .max_new_tokens = c->max_new, .eos_id = eos_id, .seed = (uint64_t)c->seed};
}

const char *gen_cli_tokenizer_dir(const GenCli *c) { return c->src.model_dir ? c->src.model_dir : c->src.llm_dir; }
const char *gen_cli_processor_dir(const GenCli *c) {
    return c->src.model_dir ? c->src.model_dir : c->src.vision_dir;
}
