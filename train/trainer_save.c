#include "train/trainer_save.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "model/hf_files.h"
#include "model/hf_save.h"
#include "model/lora_io.h"
#include "train/save.h"

// A full model folder: the weights, and the tokenizer and processor files,
// copied from `model`, or for a composed model (vision + llm) written as
// `llava init` writes them, so the folder loads in transformers as is.
static int save_full_model(Trainer *t, const char *dir, Error *err) {
    const RunConfig *c = &t->cfg;
    if (c->model[0]) return save_model_folder(&t->model, dir, c->model, c->save_dtype, 5000000000ull, err);
    if (save_model_folder(&t->model, dir, NULL, c->save_dtype, 5000000000ull, err) != 0) return -1;
    return hf_write_model_files(c->vision, c->llm, dir, &t->model.cfg, err);
}

static int write_json_file(const char *path, cJSON *root, Error *err) {
    char *s = cJSON_Print(root);
    int rc = write_file_atomic(path, s, strlen(s), err);
    free(s);
    return rc;
}


// The test suite sets LLAVA_TEST_CRASH_DURING_SAVE=<step> to die halfway
// through writing that step's checkpoint (the previous one must survive).
static void maybe_crash_for_test(long step) {
    const char *v = getenv("LLAVA_TEST_CRASH_DURING_SAVE");
    if (v && atol(v) == step) raise(SIGKILL);
}

static int save_model_outputs(Trainer *t, const char *dir, Error *err) {
    const RunConfig *c = &t->cfg;
    if (c->stage == 1) return save_projector_files(&t->model, dir, err);
    const char *source = c->model[0] ? c->model : c->llm;
    if (c->lora_r > 0) return lora_save_adapter(&t->model, dir, source, err);
    return save_full_model(t, dir, err);
}

// 1 when every trainable weight is finite on every rank (the fp32 masters
// where the weights are low precision; each rank checks its slice).
static int weights_finite(Trainer *t) {
    const LlavaModel *m = &t->model;
    double sum = 0.0;
    if (t->opt.master) {
        sum = t->ops->sum_squares(t->opt.master, t->opt.end - t->opt.begin);
    } else {
        for (int i = 0; i < MODULE_COUNT; i++)
            if (m->trainable[i]) sum += t->ops->sum_squares((const float *)m->weights[i], m->params.module_numel[i]);
    }
    return comm_all(&t->comm, isfinite(sum));
}

// Rank 0 writes the model and the trainer state; the optimizer state is
// written by rank 0 alone, or with ZeRO-1 by every rank (its own slice, into
// the same folder: the run folder must be on a filesystem all ranks share).
// A checkpoint of diverged weights (non-finite ones, or `diverged` set at a
// divergence stop) is written as checkpoint-N.diverged: kept to look at,
// never resumed from or counted by keep_last. *resumable says which it was.
int trainer_save_checkpoint(Trainer *t, int diverged, int *resumable, Error *err) {
    char dir[4096], tmp[4200], path[4300];
    const int finite = weights_finite(t);
    *resumable = finite && !diverged;
    checkpoint_dir_name(dir, sizeof dir, t->cfg.output_dir, t->step);
    if (!*resumable) strncat(dir, ".diverged", sizeof dir - strlen(dir) - 1);
    snprintf(tmp, sizeof tmp, "%s.tmp", dir);
    int rc = 0;
    if (t->cfg.zero_stage >= 2) zero_gather_for_save(&t->zero);
    if (t->comm.rank == 0) {
        remove_tree(tmp);
        rc = make_dirs(tmp, err);
        snprintf(path, sizeof path, "%s/model", tmp);
        if (rc == 0) rc = save_model_outputs(t, path, err);
    }
    if (t->cfg.zero_stage >= 2) zero_release_after_save(&t->zero);
    if (!comm_all(&t->comm, rc == 0)) return rc ? -1 : err_set(err, "rank 0 could not write the checkpoint");
    if (t->cfg.zero_stage >= 1 || t->comm.rank == 0)
        rc = save_optimizer_shard(&t->model, &t->opt, tmp, t->comm.rank, t->cfg.zero_stage >= 1 ? t->comm.world : 1,
                                  err);
    if (!comm_all(&t->comm, rc == 0)) return rc ? -1 : err_set(err, "another rank could not write its optimizer state");
    if (t->comm.rank == 0) {
        maybe_crash_for_test(t->step);
        DataPosition pos = t->data.position(&t->data);
        cJSON *st = cJSON_CreateObject();
        cJSON_AddNumberToObject(st, "step", (double)t->step);
        cJSON_AddNumberToObject(st, "total_steps", (double)t->total_steps);
        cJSON_AddNumberToObject(st, "data_epoch", (double)pos.epoch);
        cJSON_AddNumberToObject(st, "data_step", (double)pos.step);
        cJSON_AddNumberToObject(st, "bad_streak", t->bad_streak);
        cJSON_AddNumberToObject(st, "skipped", (double)t->skipped);
        cJSON_AddNumberToObject(st, "global_batch", t->cfg.micro_batch * t->cfg.grad_accum * t->comm.world);
        cJSON_AddNumberToObject(st, "world", t->comm.world);
        cJSON_AddNumberToObject(st, "stage", t->cfg.stage);
        cJSON_AddNumberToObject(st, "lora_r", t->cfg.lora_r);
        cJSON_AddBoolToObject(st, "weights_finite", finite);
        snprintf(path, sizeof path, "%s/trainer_state.json", tmp);
        rc = write_json_file(path, st, err);  // its presence marks the checkpoint complete
        cJSON_Delete(st);
        if (rc == 0) {
            remove_tree(dir);  // a stale complete folder of the same step (resume=none)
            rc = rename_durable(tmp, dir, err);
        }
        if (rc == 0 && *resumable) checkpoint_prune(t->cfg.output_dir, t->cfg.keep_last, t->step);
    }
    if (!comm_all(&t->comm, rc == 0)) return rc ? -1 : err_set(err, "rank 0 could not finish the checkpoint");
    return 0;
}

int trainer_save_final(Trainer *t, Error *err) {
    if (t->cfg.zero_stage >= 2) zero_gather_for_save(&t->zero);  // collective: before the rank test
    if (t->comm.rank != 0) return 0;
    char dir[4200], tmp[4300];
    snprintf(dir, sizeof dir, "%s/final", t->cfg.output_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", dir);
    remove_tree(tmp);
    // The final folder is always a complete LLaVA model (usable as `model` of
    // the next stage and by eval); stage 1 adds its projector files.
    const char *source = t->cfg.model[0] ? t->cfg.model : t->cfg.llm;
    // A LoRA run's final folder is the adapter, as PEFT writes it (`llava merge` makes a full model of it).
    if (t->cfg.lora_r > 0) {
        if (lora_save_adapter(&t->model, tmp, source, err) != 0) return -1;
        remove_tree(dir);
        return rename_durable(tmp, dir, err);
    }
    if (save_full_model(t, tmp, err) != 0) return -1;
    if (t->cfg.stage == 1 && save_projector_files(&t->model, tmp, err) != 0) return -1;
    remove_tree(dir);
    return rename_durable(tmp, dir, err);
}
