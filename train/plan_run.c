#include "train/plan_run.h"

#include "model/lora.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int plan_load_model_config(LlavaConfig *cfg, const RunConfig *rc, const char *model_config, Error *err) {
    char path[4200];
    if (model_config && model_config[0])
        snprintf(path, sizeof path, "%s", model_config);
    else if (rc->model[0])
        snprintf(path, sizeof path, "%s/config.json", rc->model);
    else
        return err_set(err, "the run composes its model from vision + llm: give the LLaVA config.json with "
                       "--model-config (assets/models/ has LLaVA-1.5 7B and 13B)");
    if (!file_exists(path))
        return err_set(err, "%s: not found (give the model's LLaVA config.json with --model-config; assets/models/ "
                       "has LLaVA-1.5 7B and 13B)", path);
    return config_load_llava(cfg, path, err);
}

// Processes of this job on this node, from the launcher's environment.
static int local_processes(int world) {
    static const char *vars[] = {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) {
        const char *v = getenv(vars[i]);
        if (v && atoi(v) > 0) return atoi(v);
    }
    return world;
}

// Elements of the LoRA adapters the run attaches: r x (in + out) per targeted
// linear of every layer.
static double lora_elements(const RunConfig *rc, const LlavaConfig *cfg, unsigned *targets) {
    unsigned mask = 0;
    Error err = {{0}};
    *targets = 0;
    if (rc->lora_r <= 0 || lora_parse_targets(rc->lora_targets, &mask, &err) != 0) return 0;
    *targets = mask;
    double n = 0;
    for (int k = 0; k < LORA_TARGETS; k++)
        if (mask & (1u << k)) {
            LoraGeom g = lora_geometry(cfg, (LoraTarget)k);
            n += (double)rc->lora_r * (g.K + g.N);
        }
    return n * cfg->text.layers;
}

void plan_input_from_run(PlanInput *in, const RunConfig *rc, const LlavaConfig *cfg, int world, int act_bytes) {
    memset(in, 0, sizeof *in);
    in->world = world;
    in->stage = rc->stage;
    in->micro_batch = rc->micro_batch;
    in->max_length = rc->max_length > 0 ? rc->max_length
                                        : (cfg->text.max_positions < 2048 ? cfg->text.max_positions : 2048);
    in->recompute = rc->recompute             ? PLAN_RECOMPUTE_FULL
                    : rc->selective_recompute ? PLAN_RECOMPUTE_SELECTIVE
                                              : PLAN_RECOMPUTE_OFF;
    in->act_bytes = act_bytes ? act_bytes : strcmp(rc->device, "cuda") == 0 ? 2 : 4;
    in->shard_frozen = rc->zero3_shard_frozen;
    in->lora_params = lora_elements(rc, cfg, &in->lora_targets);
    in->lora_r = in->lora_params > 0 ? rc->lora_r : 0;
    in->grad_bytes = strcmp(rc->grad_dtype, "bf16") == 0 ? 2 : 4;
    // global_batch sets grad_accum as the trainer does (checked to divide by then)
    const int per = rc->micro_batch * (world > 0 ? world : 1);
    in->grad_accum = rc->global_batch > 0 && per > 0 ? rc->global_batch / per : rc->grad_accum;
    if (rc->memory_limit_gb > 0) {
        in->capacity = rc->memory_limit_gb * 1024.0 * 1024.0 * 1024.0;
    } else if (in->act_bytes == 4) {
        long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
        if (pages > 0 && page > 0) in->capacity = (double)pages * (double)page / local_processes(world);
    }
}

int plan_check_run(const LlavaConfig *cfg, const PlanInput *in, int zs, FILE *out, char *msg, size_t cap) {
    Plan p;
    plan_compute(&p, cfg, in);
    if (out) plan_print(&p, in, zs, out);
    msg[0] = '\0';
    if (p.row[zs].fits != 0) return 0;
    char need[32], have[32], fix[256];
    plan_format_bytes(p.row[zs].total, need, sizeof need);
    plan_format_bytes(in->capacity, have, sizeof have);
    plan_suggest(cfg, in, zs, fix, sizeof fix);
    snprintf(msg, cap, "zero_stage %d needs %s per process but a process has %s (memory_limit_gb, or the %s's "
             "memory): %s%s. The plan sizes micro-batches of max_length %d tokens: if your longest sample is "
             "shorter, set max_length to it", zs, need, have, in->act_bytes < 4 ? "GPU" : "node",
             fix[0] ? "change " : "nothing in the table fits: use more processes or a smaller model",
             fix[0] ? fix : "", in->max_length);
    return -1;
}
