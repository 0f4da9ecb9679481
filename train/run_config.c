#include "train/run_config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "data/mixture.h"
#include "model/lora.h"

typedef enum { K_STR, K_INT, K_DBL, K_BOOL } KeyType;

typedef struct {
    const char *key;
    KeyType type;
    size_t offset;
    size_t size;  // for strings
    const char *help;
    double lo, hi;  // numbers: the allowed range (a value outside is refused naming key and range)
} KeySpec;

#define S(field, help) {#field, K_STR, offsetof(RunConfig, field), sizeof(((RunConfig *)0)->field), help, 0, 0}
#define I(field, lo, hi, help) {#field, K_INT, offsetof(RunConfig, field), 0, help, lo, hi}
#define D(field, lo, hi, help) {#field, K_DBL, offsetof(RunConfig, field), 0, help, lo, hi}
#define B(field, help) {#field, K_BOOL, offsetof(RunConfig, field), 0, help, 0, 1}
#define MAXI 2147483647.0

static const KeySpec KEYS[] = {
    S(model, "LLaVA model folder to start from (stage 2, ScienceQA, continued pre-training)"),
    S(vision, "CLIP vision folder (composition, usually stage 1)"),
    S(llm, "LLaMA/Vicuna folder (composition)"),
    S(projector, "projector weights (safetensors) for composition; empty = fresh init"),
    S(projector_type, "linear | mlp2x_gelu, for composition"),
    I(image_token, -1, 16777215, "composition: id of <image> in the LLM vocabulary; -1 = append <image>, <pad>"),
    I(stage, 1, 2, "1 = projector only, 2 = projector + LLM (the vision tower never trains)"),
    S(data, "shard folder from `llava prep`, a LLaVA .json/.jsonl (prepped into data_cache first), or a mixture "
            "[{\"path\": DIR, \"weight\": W}, ...]"),
    S(images, "image folder for a .json/.jsonl data file"),
    S(data_cache, "where a .json/.jsonl is prepped (default: <output_dir>/data)"),
    {"template", K_STR, offsetof(RunConfig, template_name), sizeof(((RunConfig *)0)->template_name),
     "conversation template: plain | vicuna_v1 | v1 | llava_v1 | qwen_2 | llama_3", 0, 0},
    I(max_length, 0, 1048576, "maximum tokens per sample, truncated beyond (0 = min(2048, the model's positions))"),
    S(aspect, "square | pad (LLaVA-1.5 stage 2 pads images to a square)"),
    B(group_by_modality_length, "batches of only-image or only-text samples of similar length"),
    B(pack, "pack several samples into one row (attention never crosses samples)"),
    I(workers, 0, 256, "loader threads"),
    I(epochs, 0, 1000000, "passes over the data"),
    I(max_steps, -1, 1e9, "optimizer steps; > 0 overrides epochs"),
    I(micro_batch, 1, 65536, "samples per forward/backward on one process"),
    I(grad_accum, 1, 65536, "micro-batches accumulated per optimizer step"),
    I(global_batch, 0, 16777216, "> 0: samples per optimizer step over all processes (sets grad_accum)"),
    D(lr, 0, 1e30, "peak learning rate"),
    D(projector_lr, 0, 1e30, "peak learning rate of the projector (0 = lr)"),
    S(schedule, "cosine | linear | constant (after warmup)"),
    D(warmup_ratio, 0, 1, "fraction of the steps spent warming up linearly from 0"),
    I(warmup_steps, 0, 1e9, "> 0: warmup steps (overrides warmup_ratio)"),
    D(weight_decay, 0, 1e6, "decoupled weight decay (never on biases and norm weights)"),
    D(adam_beta1, 0, 1, "AdamW beta1"),
    D(adam_beta2, 0, 1, "AdamW beta2"),
    D(adam_eps, 0, 1, "AdamW epsilon"),
    D(max_grad_norm, -1, 1e9, "clip the global gradient norm to this (<= 0: no clipping)"),
    I(lora_r, 0, 65536, "> 0: LoRA rank; trains adapters on the LLM's linear layers instead of the LLM (stage 2)"),
    D(lora_alpha, 0, 1e9, "LoRA alpha: the adapter output is scaled by alpha / r"),
    D(lora_dropout, 0, 0.999, "dropout on the adapters' input while training"),
    S(lora_targets, "LLM linears that get adapters: all (LLaVA's find_all_linear_names) or a list of q,k,v,o,gate,up,down"),
    S(lora_init, "kaiming (PEFT's default: A Kaiming-uniform, B zero) | gaussian (A normal 1/r, B zero)"),
    B(lora_rslora, "rank-stabilized LoRA: scale alpha / sqrt(r)"),
    B(recompute, "gradient checkpointing: recompute each LLM layer in backward"),
    B(selective_recompute, "with recompute false: keep the matmul outputs, recompute only norms and SwiGLU"),
    I(zero_stage, 0, 3, "0: every process holds the optimizer state; 1: ZeRO-1, each holds 1/N of it; 2: ZeRO-2, also "
                        "1/N of the gradients; 3: ZeRO-3, also 1/N of the LLM's weights (docs/training.md)"),
    D(memory_limit_gb, 0, 1e9, "memory of one process (GPU) in GiB for the start-up check (0 = the node's memory / "
                               "its processes on the CPU, unchecked on GPUs)"),
    B(zero3_shard_frozen, "ZeRO-3: shard the frozen modules' layers too (vision tower; the LLM in stage 1)"),
    B(stochastic_rounding, "CUDA: round the bf16 weights stochastically from the fp32 masters (default: nearest)"),
    S(grad_dtype, "fp32 | bf16: parameter gradients; bf16 (CUDA, zero_stage 0/1) halves their memory and keeps an "
                  "fp32 accumulator when grad_accum > 1 (docs/training.md)"),
    S(device, "cpu | cuda"),
    S(attention_backend, "device cuda: flash (our kernels) | cudnn (cuDNN's fused attention, loaded only then; "
                         "docs/cuda.md)"),
    I(threads, 0, 1024, "CPU threads (0 = all cores)"),
    I(seed, -MAXI, MAXI, "seed of data order and any fresh weights"),
    D(peak_tflops, 0, 1e9, "peak TFLOP/s of one device for the MFU column (0 = known devices only)"),
    S(output_dir, "run folder: checkpoints, metrics.jsonl, config.json"),
    I(save_every, 0, 1e9, "save a checkpoint every N steps (0 = only at the end)"),
    I(keep_last, 1, 1e6, "checkpoints to keep (older ones are deleted)"),
    I(log_every, 1, 1e9, "print a progress line every N steps"),
    S(resume, "auto (newest complete checkpoint in output_dir) | none | a checkpoint folder"),
    I(max_bad_steps, 1, 1e6, "stop (with a checkpoint) after this many non-finite steps in a row"),
    S(save_dtype, "auto (each tensor as the input stored it) | bf16 | f32"),
};

#define N_KEYS ((int)(sizeof KEYS / sizeof *KEYS))

void run_config_default(RunConfig *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->projector_type, sizeof c->projector_type, "mlp2x_gelu");
    c->image_token = -1;
    c->stage = 2;
    snprintf(c->template_name, sizeof c->template_name, "vicuna_v1");
    c->max_length = 0;
    snprintf(c->aspect, sizeof c->aspect, "square");
    c->workers = 2;
    c->epochs = 1;
    c->max_steps = -1;
    c->micro_batch = 1;
    c->grad_accum = 1;
    c->lr = 2e-5;
    snprintf(c->schedule, sizeof c->schedule, "cosine");
    c->warmup_ratio = 0.03;
    c->adam_beta1 = 0.9;
    c->adam_beta2 = 0.999;
    c->adam_eps = 1e-8;
    c->max_grad_norm = 1.0;
    c->lora_alpha = 16;
    c->lora_dropout = 0.05;
    snprintf(c->lora_targets, sizeof c->lora_targets, "all");
    snprintf(c->lora_init, sizeof c->lora_init, "kaiming");
    c->recompute = 1;
    snprintf(c->device, sizeof c->device, "cpu");
    snprintf(c->attention_backend, sizeof c->attention_backend, "flash");
    c->seed = 42;
    snprintf(c->output_dir, sizeof c->output_dir, "runs/llava");
    c->keep_last = 2;
    c->log_every = 1;
    snprintf(c->resume, sizeof c->resume, "auto");
    c->max_bad_steps = 5;
    snprintf(c->save_dtype, sizeof c->save_dtype, "auto");
    snprintf(c->grad_dtype, sizeof c->grad_dtype, "fp32");
}

static const KeySpec *find_key(const char *key) {
    for (int i = 0; i < N_KEYS; i++)
        if (strcmp(KEYS[i].key, key) == 0) return &KEYS[i];
    return NULL;
}

static int apply(RunConfig *c, const KeySpec *k, const cJSON *v, const char *where, Error *err) {
    char *field = (char *)c + k->offset;
    // "data" may be a mixture list: kept as its JSON text, parsed by data/mixture.h.
    if (k->offset == offsetof(RunConfig, data) && cJSON_IsArray(v)) {
        char *text = cJSON_PrintUnformatted(v);
        CHECK(text, "cJSON_PrintUnformatted failed");
        const int fits = strlen(text) < k->size;
        if (fits) snprintf(field, k->size, "%s", text);
        cJSON_free(text);
        return fits ? 0 : err_set(err, "%s: the \"data\" list is longer than %zu characters", where, k->size - 1);
    }
    switch (k->type) {
    case K_STR:
        if (!cJSON_IsString(v)) return err_set(err, "%s: \"%s\" must be a string", where, k->key);
        if (strlen(v->valuestring) >= k->size)
            return err_set(err, "%s: \"%s\" is longer than %zu characters", where, k->key, k->size - 1);
        snprintf(field, k->size, "%s", v->valuestring);
        return 0;
    case K_INT:
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
            return err_set(err, "%s: \"%s\" must be an integer", where, k->key);
        if (!(v->valuedouble >= k->lo && v->valuedouble <= k->hi))
            return err_set(err, "%s: \"%s\" = %.17g is outside [%.10g, %.10g]", where, k->key, v->valuedouble, k->lo,
                           k->hi);
        *(int *)field = (int)v->valuedouble;
        return 0;
    case K_DBL:
        if (!cJSON_IsNumber(v)) return err_set(err, "%s: \"%s\" must be a number", where, k->key);
        // cJSON reads 1e2222 as inf, which `lr >= 0` would let through.
        if (!(v->valuedouble >= k->lo && v->valuedouble <= k->hi))
            return err_set(err, "%s: \"%s\" = %g is outside [%.10g, %.10g]", where, k->key, v->valuedouble, k->lo,
                           k->hi);
        *(double *)field = v->valuedouble;
        return 0;
    case K_BOOL:
        if (!cJSON_IsBool(v)) return err_set(err, "%s: \"%s\" must be true or false", where, k->key);
        *(int *)field = cJSON_IsTrue(v);
        return 0;
    }
    return -1;
}

int run_config_load_file(RunConfig *c, const char *path, Error *err) {
    cJSON *root = json_parse_file(path, err);
    if (!root) return -1;
    int rc = -1;
    if (!cJSON_IsObject(root)) {
        err_set(err, "%s: a run config is a JSON object", path);
        goto done;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, root) {
        if (e->string[0] == '_') continue;  // "_comment" and friends
        const KeySpec *k = find_key(e->string);
        if (!k) {
            err_set(err, "%s: unknown key \"%s\" (see docs/configs.md or `llava train --help`)", path, e->string);
            goto done;
        }
        if (apply(c, k, e, path, err) != 0) goto done;
    }
    rc = 0;
done:
    cJSON_Delete(root);
    return rc;
}

int run_config_set(RunConfig *c, const char *assignment, Error *err) {
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment) return err_set(err, "--set expects key=value, got '%s'", assignment);
    char key[128];
    size_t klen = (size_t)(eq - assignment);
    if (klen >= sizeof key) return err_set(err, "--set: key too long");
    memcpy(key, assignment, klen);
    key[klen] = '\0';
    const KeySpec *k = find_key(key);
    if (!k) return err_set(err, "--set: unknown key \"%s\" (see `llava train --help`)", key);
    const char *value = eq + 1;
    cJSON *v = k->type == K_STR ? cJSON_CreateString(value) : cJSON_Parse(value);
    if (!v) return err_set(err, "--set %s: cannot parse value '%s'", key, value);
    char where[160];
    snprintf(where, sizeof where, "--set %s", key);
    int rc = apply(c, k, v, where, err);
    cJSON_Delete(v);
    return rc;
}

static int one_of(const char *s, const char *const *options) {
    for (; *options; options++)
        if (strcmp(s, *options) == 0) return 1;
    return 0;
}

int run_config_validate(const RunConfig *c, Error *err) {
    if (!c->model[0] && !(c->vision[0] && c->llm[0]))
        return err_set(err, "no model: set \"model\" (a LLaVA folder) or \"vision\" and \"llm\"");
    if (c->model[0] && (c->vision[0] || c->llm[0]))
        return err_set(err, "set either \"model\" or \"vision\" + \"llm\", not both");
    if (c->stage != 1 && c->stage != 2) return err_set(err, "\"stage\" must be 1 or 2");
    if (!c->data[0]) return err_set(err, "no data: set \"data\" (a shard folder or a LLaVA .json/.jsonl)");
    Mixture mix;
    if (mixture_is_list(c->data)) {
        if (mixture_parse(c->data, &mix, err) != 0) return -1;
        mixture_free(&mix);
    }
    if (!one_of(c->template_name,
                (const char *const[]){"plain", "vicuna_v1", "v1", "llava_v1", "qwen_2", "qwen_1_5", "llama_3",
                                      "llava_llama_3", NULL}))
        return err_set(err, "\"template\" must be plain, vicuna_v1, v1, llava_v1, qwen_2 or llama_3");
    if (!one_of(c->aspect, (const char *const[]){"square", "pad", NULL}))
        return err_set(err, "\"aspect\" must be square or pad");
    if (!one_of(c->schedule, (const char *const[]){"cosine", "linear", "constant", NULL}))
        return err_set(err, "\"schedule\" must be cosine, linear or constant");
    if (!one_of(c->projector_type, (const char *const[]){"linear", "mlp2x_gelu", NULL}))
        return err_set(err, "\"projector_type\" must be linear or mlp2x_gelu");
    if (!one_of(c->attention_backend, (const char *const[]){"flash", "cudnn", NULL}))
        return err_set(err, "\"attention_backend\" must be flash or cudnn (got \"%s\")", c->attention_backend);
    if (strcmp(c->attention_backend, "cudnn") == 0 && strcmp(c->device, "cuda") != 0)
        return err_set(err, "\"attention_backend\": cudnn needs device cuda (device is %s)", c->device);
    if (!one_of(c->save_dtype, (const char *const[]){"auto", "bf16", "f32", NULL}))
        return err_set(err, "\"save_dtype\" must be auto, bf16 or f32");
    if (c->micro_batch < 1 || c->grad_accum < 1) return err_set(err, "micro_batch and grad_accum must be >= 1");
    // The global batch (x processes) is counted in int: keep the product far from overflowing.
    if ((int64_t)c->micro_batch * c->grad_accum > 16777216)
        return err_set(err, "micro_batch x grad_accum = %lld is over 16777216 samples a step",
                       (long long)c->micro_batch * c->grad_accum);
    if (c->epochs < 1 && c->max_steps <= 0) return err_set(err, "set epochs >= 1 or max_steps > 0");
    if (c->max_length != 0 && c->max_length < 8) return err_set(err, "max_length %d is too small", c->max_length);
    if (!(c->lr >= 0) || !(c->projector_lr >= 0)) return err_set(err, "learning rates must be >= 0");
    if (c->warmup_ratio < 0 || c->warmup_ratio > 1) return err_set(err, "warmup_ratio must be in [0, 1]");
    if (c->adam_beta1 < 0 || c->adam_beta1 >= 1 || c->adam_beta2 < 0 || c->adam_beta2 >= 1 || c->adam_eps <= 0)
        return err_set(err, "AdamW betas must be in [0, 1) and eps > 0");
    if (c->keep_last < 1) return err_set(err, "keep_last must be >= 1");
    if (c->zero_stage < 0 || c->zero_stage > 3) return err_set(err, "zero_stage must be 0, 1, 2 or 3");
    if (!one_of(c->grad_dtype, (const char *const[]){"fp32", "bf16", NULL}))
        return err_set(err, "\"grad_dtype\" must be fp32 or bf16");
    if (strcmp(c->grad_dtype, "bf16") == 0 && strcmp(c->device, "cuda") != 0)
        return err_set(err, "grad_dtype \"bf16\" needs device cuda: the %s backend keeps fp32 gradients (it is the "
                       "fp32 reference); drop grad_dtype or set device=cuda", c->device);
    if (strcmp(c->grad_dtype, "bf16") == 0 && c->zero_stage >= 2)
        return err_set(err, "grad_dtype \"bf16\" works with zero_stage 0 or 1 for now, not %d (bf16 gradients with "
                       "ZeRO-2/3 are future work, docs/training.md)", c->zero_stage);
    if (c->log_every < 1) return err_set(err, "log_every must be >= 1");
    if (c->max_bad_steps < 1) return err_set(err, "max_bad_steps must be >= 1");
    if (!c->output_dir[0]) return err_set(err, "output_dir must be set");
    if (c->lora_r < 0) return err_set(err, "lora_r must be >= 0 (0 = no LoRA)");
    if (c->lora_r > 0 && c->stage != 2)
        return err_set(err, "lora_r is set but stage is %d: LoRA trains the LLM's layers, a stage-2 setting", c->stage);
    if (c->lora_dropout < 0 || c->lora_dropout >= 1) return err_set(err, "lora_dropout must be in [0, 1)");
    if (c->lora_r > 0 && !(c->lora_alpha > 0)) return err_set(err, "lora_alpha must be > 0");
    if (!one_of(c->lora_init, (const char *const[]){"kaiming", "gaussian", NULL}))
        return err_set(err, "\"lora_init\" must be kaiming or gaussian");
    unsigned mask;
    if (lora_parse_targets(c->lora_targets, &mask, err) != 0) return -1;
    return 0;
}

char *run_config_to_json(const RunConfig *c) {
    cJSON *root = cJSON_CreateObject();
    for (int i = 0; i < N_KEYS; i++) {
        const KeySpec *k = &KEYS[i];
        const char *field = (const char *)c + k->offset;
        cJSON *list = k->offset == offsetof(RunConfig, data) && mixture_is_list(field) ? cJSON_Parse(field) : NULL;
        if (list) {
            cJSON_AddItemToObject(root, k->key, list);
            continue;
        }
        switch (k->type) {
        case K_STR: cJSON_AddStringToObject(root, k->key, field); break;
        case K_INT: cJSON_AddNumberToObject(root, k->key, *(const int *)field); break;
        case K_DBL: cJSON_AddNumberToObject(root, k->key, *(const double *)field); break;
        case K_BOOL: cJSON_AddBoolToObject(root, k->key, *(const int *)field); break;
        }
    }
    char *s = cJSON_Print(root);
    cJSON_Delete(root);
    return s;
}

void run_config_print_keys(FILE *out) {
    RunConfig d;
    run_config_default(&d);
    static const char *type_names[] = {"string", "int", "number", "bool"};
    for (int i = 0; i < N_KEYS; i++) {
        const KeySpec *k = &KEYS[i];
        const char *field = (const char *)&d + k->offset;
        char def[64];
        switch (k->type) {
        case K_STR: snprintf(def, sizeof def, "\"%s\"", field); break;
        case K_INT: snprintf(def, sizeof def, "%d", *(const int *)field); break;
        case K_DBL: snprintf(def, sizeof def, "%g", *(const double *)field); break;
        case K_BOOL: snprintf(def, sizeof def, "%s", *(const int *)field ? "true" : "false"); break;
        }
        char range[64] = "";
        if (k->type == K_INT || k->type == K_DBL) snprintf(range, sizeof range, " [%.6g, %.6g]", k->lo, k->hi);
        fprintf(out, "  %-26s %-6s default %-12s %s%s\n", k->key, type_names[k->type], def, k->help, range);
    }
}
