#include "train/trainer.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/json.h"
#include "data/loader_source.h"
#include "data/manifest.h"
#include "data/mixture.h"
#include "data/prep_model.h"
#include "kernels/backend.h"
#include "model/checkpoint.h"
#include "model/flops.h"
#include "model/hf_files.h"
#include "model/lora_io.h"
#include "train/memstat.h"
#include "train/plan_run.h"
#include "kernels/lora_mask.h"
#include "train/save.h"
#include "train/trainer_save.h"
#include "train/synthetic.h"

#include "kernels/nccl.h"

// Set by the signal handler, read by the loop: the one piece of process-wide
// mutable state, because a signal handler can reach nothing else.
static volatile sig_atomic_t stop_signal = 0;

static void on_signal(int sig) { stop_signal = sig; }

#define LOG0(t, ...) do { if ((t)->comm.rank == 0) { printf(__VA_ARGS__); fflush(stdout); } } while (0)

// ---- setup -----------------------------------------------------------------------

static int load_model(Trainer *t, Error *err) {
    const RunConfig *c = &t->cfg;
    if (c->model[0]) return checkpoint_load_llava(&t->model, c->model, t->ops, err);
    ComposeOptions o;
    compose_options_default(&o);
    o.vision_dir = c->vision;
    o.llm_dir = c->llm;
    o.projector_path = c->projector[0] ? c->projector : NULL;
    o.projector = strcmp(c->projector_type, "linear") == 0 ? PROJECTOR_LINEAR : PROJECTOR_MLP2X_GELU;
    o.image_token_index = c->image_token;
    o.seed = (unsigned long long)c->seed;
    return checkpoint_compose(&t->model, &o, t->ops, err);
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

// A composed model has no folder for prep to read: write the parts prep
// needs (config.json, tokenizer, processor files) into the cache.
static int write_prep_model_folder(Trainer *t, const char *dir, Error *err) {
    char path[4400];
    if (make_dirs(dir, err) != 0) return -1;
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (config_save_llava(&t->model.cfg, path, err) != 0) return -1;
    return hf_write_model_files(t->cfg.vision, t->cfg.llm, dir, &t->model.cfg, err);
}

// A LLaVA .json/.jsonl is prepped into data_cache first (rank 0; a complete
// cache is reused as is). Returns the shard folder through shard_dir.
static int prep_if_needed(Trainer *t, char *shard_dir, size_t cap, Error *err) {
    const RunConfig *c = &t->cfg;
    if (!ends_with(c->data, ".json") && !ends_with(c->data, ".jsonl")) {
        snprintf(shard_dir, cap, "%s", c->data);
        return 0;
    }
    if (c->data_cache[0])
        snprintf(shard_dir, cap, "%s", c->data_cache);
    else
        snprintf(shard_dir, cap, "%s/data", c->output_dir);
    int rc = 0;
    if (t->comm.rank == 0) {
        char model_dir[4100];
        if (c->model[0]) {
            snprintf(model_dir, sizeof model_dir, "%s", c->model);
        } else {
            snprintf(model_dir, sizeof model_dir, "%.4000s.model", shard_dir);
            rc = write_prep_model_folder(t, model_dir, err);
        }
        PrepRequest rq;
        prep_request_default(&rq);
        rq.data_path = c->data;
        rq.images_dir = c->images[0] ? c->images : NULL;
        rq.model_dir = model_dir;
        rq.template_name = c->template_name;
        rq.out_dir = shard_dir;
        rq.max_length = c->max_length;
        rq.workers = c->workers > 0 ? c->workers : 0;
        rq.aspect = strcmp(c->aspect, "pad") == 0 ? IMAGE_ASPECT_PAD : IMAGE_ASPECT_SQUARE;
        PrepSummary sum;
        if (rc == 0) {
            printf("preparing %s into %s (once; see report.json there)\n", c->data, shard_dir);
            fflush(stdout);
            rc = prep_from_model(&rq, &sum, err);
        }
        if (rc == 0 && !sum.already_complete)
            printf("prep: %lld samples written, %lld skipped, %lld truncated in %.1fs\n", (long long)sum.written,
                   (long long)sum.skipped, (long long)sum.truncated, sum.seconds);
    }
    // Every rank learns whether prep worked before opening the shards.
    if (!comm_all(&t->comm, rc == 0)) return rc ? -1 : err_set(err, "prep failed on rank 0");
    return 0;
}

// The shards must have been made for this model: same image size, image
// token and tokens per image.
static int check_shards_fit(Trainer *t, const char *dir, Error *err) {
    Manifest mf;
    if (manifest_read(&mf, dir, err) != 0) return -1;
    const LlavaConfig *mc = &t->model.cfg;
    int rc = 0;
    if (mf.image_size != mc->vision.image_size || mf.image_seq_length != mc->image_tokens ||
        mf.image_token_index != mc->image_token_index)
        rc = err_set(err, "%s was prepared for images of %d px, %d tokens per image, image token %d; the model "
                     "needs %d px, %d, %d: prep the data again for this model", dir, mf.image_size,
                     mf.image_seq_length, mf.image_token_index, mc->vision.image_size, mc->image_tokens,
                     mc->image_token_index);
    else if (mf.max_length > mc->text.max_positions)
        rc = err_set(err, "%s was prepared with max_length %d, beyond the model's %d positions", dir, mf.max_length,
                     mc->text.max_positions);
    manifest_free(&mf);
    return rc;
}

static int open_data(Trainer *t, Error *err) {
    const RunConfig *c = &t->cfg;
    int n = 0;
    if (sscanf(c->data, "synthetic:%d", &n) == 1) {
        SyntheticOptions o = {.n_samples = n, .min_text = 8, .max_text = 40, .image_every = 5,
                              .micro_batch = c->micro_batch, .grad_accum = c->grad_accum, .rank = t->comm.rank,
                              .world = t->comm.world, .seed = (unsigned long long)c->seed};
        if (o.max_text + 1 + t->model.cfg.image_tokens > c->max_length)
            o.max_text = c->max_length - 1 - t->model.cfg.image_tokens;
        if (o.max_text < o.min_text) return err_set(err, "max_length %d is too small for the synthetic data", c->max_length);
        return synthetic_open(&t->data, &o, &t->model.cfg, err);
    }
    char dir[4096];
    Mixture mix = {0};
    if (mixture_is_list(c->data)) {
        if (mixture_parse(c->data, &mix, err) != 0) return -1;
        for (int j = 0; j < mix.n; j++)
            if (check_shards_fit(t, mix.e[j].path, err) != 0) {
                mixture_free(&mix);
                return -1;
            }
    } else {
        if (prep_if_needed(t, dir, sizeof dir, err) != 0) return -1;
        if (check_shards_fit(t, dir, err) != 0) return -1;
    }
    LoaderOptions o;
    loader_options_default(&o);
    o.dir = dir;
    o.seed = (uint64_t)c->seed;
    o.micro_batch = c->micro_batch;
    o.grad_accum = c->grad_accum;
    o.rank = t->comm.rank;
    o.world = t->comm.world;
    o.group_by_modality = c->group_by_modality_length;
    o.pack = c->pack;
    o.max_length = c->max_length;
    o.workers = c->workers;
    o.pixels_bf16 = t->ops->act_size == sizeof(uint16_t);  // the CUDA backend: bf16 made by the workers
    if (mix.n) {
        const int rc = mixture_source_open(&t->data, &o, &mix, err);
        mixture_free(&mix);
        return rc;
    }
    return loader_source_open(&t->data, &o, err);
}

static int resume_from(Trainer *t, const char *dir, Error *err) {
    char path[4200];
    snprintf(path, sizeof path, "%s/trainer_state.json", dir);
    cJSON *st = json_parse_file(path, err);
    if (!st) return -1;
    int step = 0, epoch = 0, data_step = 0, bad = 0, global = 0, stage = 0, lora_r = 0;
    double skipped = 0;
    int rc = json_get_int(st, "step", 0, &step, path, err) || json_get_int(st, "data_epoch", 0, &epoch, path, err) ||
             json_get_int(st, "data_step", 0, &data_step, path, err) ||
             json_get_int(st, "bad_streak", 0, &bad, path, err) ||
             json_get_double(st, "skipped", 0, &skipped, path, err) ||
             json_get_int(st, "global_batch", 0, &global, path, err) || json_get_int(st, "stage", 0, &stage, path, err) ||
             json_get_int(st, "lora_r", 0, &lora_r, path, err);
    cJSON_Delete(st);
    if (rc) return -1;
    int G = t->cfg.micro_batch * t->cfg.grad_accum * t->comm.world;
    if (global != G)
        return err_set(err, "%s: saved with a global batch of %d samples, this run has %d (micro_batch x grad_accum "
                       "x processes); resume with the same global batch", dir, global, G);
    if (stage != t->cfg.stage)
        return err_set(err, "%s: saved by a stage-%d run, this is stage %d", dir, stage, t->cfg.stage);
    if (lora_r != t->cfg.lora_r)
        return err_set(err, "%s: saved by a run with lora_r %d, this run has %d", dir, lora_r, t->cfg.lora_r);
    if (load_optimizer_shards(&t->model, &t->opt, dir, err) != 0) return -1;
    DataPosition pos = {epoch, data_step};
    if (t->data.seek(&t->data, pos, err) != 0) return -1;
    t->step = step;
    t->bad_streak = bad;
    t->skipped = (long)skipped;
    return 0;
}

// LoRA: adapters on the frozen LLM, initialized as PEFT does (a resume then
// overwrites them with the checkpoint's masters). Dropout runs in training.
static int attach_lora(Trainer *t, Error *err) {
    const RunConfig *c = &t->cfg;
    LoraSpec spec = {.r = c->lora_r, .alpha = (float)c->lora_alpha, .dropout = (float)c->lora_dropout,
                     .rslora = c->lora_rslora};
    if (lora_parse_targets(c->lora_targets, &spec.targets, err) != 0) return -1;
    if (!t->ops->dropout || !t->ops->add_columns || !t->ops->copy_columns)
        return err_set(err, "the %s backend has no LoRA ops yet: train LoRA with device cpu", t->ops->name);
    lora_attach(&t->model, &spec);
    t->model.lora.dropout_active = 1;
    return lora_init_weights(&t->model, c->lora_init, (uint64_t)c->seed, err);
}

#ifdef LLAVA_HAVE_CUDA
// A rank whose NCCL peer failed or got stuck ends the whole job (kernels/nccl.c).
static void nccl_end_job(void *comm) { comm_abort(comm, 1); }
#endif

// Several processes on GPUs exchange gradients and weights with NCCL on the
// device; without NCCL they go through host memory over MPI (slow).
static void setup_nccl(Trainer *t) {
    if (t->comm.world == 1 || strcmp(t->ops->name, "cuda") != 0) return;
#ifdef LLAVA_HAVE_CUDA
    unsigned char id[LLAVA_NCCL_ID_BYTES] = {0};
    char msg[512] = "";
    if (nccl_check_timeout_setting(msg, sizeof msg) != 0) {  // a typo must not fall back to host memory
        fprintf(stderr, "llava train: %s\n", msg);
        comm_abort(&t->comm, 2);
    }
    // every rank can open NCCL before any joins (ncclCommInitRank waits for all of them)
    int ok = nccl_probe(msg, sizeof msg) == 0 && (t->comm.rank != 0 || nccl_make_id(id, msg, sizeof msg) == 0);
    if (comm_all(&t->comm, ok)) {
        comm_broadcast(&t->comm, id, sizeof id, 0);
        t->nccl = nccl_join(id, t->comm.rank, t->comm.world, nccl_end_job, (void *)&t->comm, msg, sizeof msg);
    }
    if (!comm_all(&t->comm, t->nccl != NULL)) {
        if (t->nccl) nccl_leave(t->nccl);
        t->nccl = NULL;
        if (t->comm.rank == 0)
            fprintf(stderr, "llava train: warning: no NCCL (%s); gradients cross GPUs through host memory\n",
                    msg[0] ? msg : "another rank failed");
    }
#endif
}

// The memory plan of this run (train/plan.h), printed by rank 0; a run that
// cannot fit is refused now, with the setting to change, not hours later.
// Every process checks its own capacity (nodes may differ); all refuse together.
static int check_memory_plan(Trainer *t) {
    PlanInput in;
    plan_input_from_run(&in, &t->cfg, &t->model.cfg, t->comm.world, (int)t->ops->act_size);
    char msg[768];
    int rc = plan_check_run(&t->model.cfg, &in, t->cfg.zero_stage, t->comm.rank == 0 ? stdout : NULL, msg, sizeof msg);
    fflush(stdout);
    if (rc != 0 && t->comm.rank == 0) fprintf(stderr, "llava train: refused: %s\n", msg);
    if (rc != 0 && t->comm.rank != 0) fprintf(stderr, "llava train: refused by rank %d: %s\n", t->comm.rank, msg);
    fflush(stderr);
    // Said before any rank ends the job.
    return comm_all(&t->comm, rc == 0) ? 0 : -1;
}

int trainer_setup(Trainer *t, const RunConfig *cfg, const Comm *comm) {
    memset(t, 0, sizeof *t);
    t->cfg = *cfg;
    t->comm = *comm;
    RunConfig *c = &t->cfg;
    Error err = {{0}};
    if (c->global_batch > 0) {
        int per = c->micro_batch * comm->world;
        if (c->global_batch % per != 0) {
            fprintf(stderr, "llava train: global_batch %d is not a multiple of micro_batch x processes = %d\n",
                    c->global_batch, per);
            return EXIT_BAD_INPUT;
        }
        c->grad_accum = c->global_batch / per;
    }
    backend_set_threads(c->threads);
    t->ops = backend_select(c->device, &err);
    if (t->ops) t->ops = backend_attention(t->ops, c->attention_backend, &err);
    if (t->ops) setup_nccl(t);
    if (!t->ops || load_model(t, &err) != 0) {
        fprintf(stderr, "llava train: %s\n", err.msg);
        return EXIT_BAD_INPUT;
    }
    if (c->lora_r > 0 && attach_lora(t, &err) != 0) {
        fprintf(stderr, "llava train: %s\n", err.msg);
        return EXIT_BAD_INPUT;
    }
    model_set_stage(&t->model, c->stage);
    // bf16 gradients; several micro-batches a step are summed in fp32 (the
    // accumulator), one micro-batch's gradient is used as it is.
    if (strcmp(c->grad_dtype, "bf16") == 0 && model_set_grad_dtype(&t->model, 1, c->grad_accum > 1, &err) != 0) {
        fprintf(stderr, "llava train: %s\n", err.msg);
        return EXIT_BAD_INPUT;
    }
    model_set_recompute(&t->model, c->recompute             ? RECOMPUTE_FULL
                                   : c->selective_recompute ? RECOMPUTE_SELECTIVE
                                                            : RECOMPUTE_OFF);
    model_set_head_labeled_only(&t->model, 1);  // training never reads the logits of unlabeled rows
    if (c->max_length == 0)  // the default, as LLaVA's model_max_length 2048, within the model's reach
        c->max_length = t->model.cfg.text.max_positions < 2048 ? t->model.cfg.text.max_positions : 2048;
    if (c->max_length > t->model.cfg.text.max_positions) {
        fprintf(stderr, "llava train: max_length %d exceeds the model's max_position_embeddings %d: set max_length "
                "(--set max_length=%d)\n", c->max_length, t->model.cfg.text.max_positions,
                t->model.cfg.text.max_positions);
        return EXIT_BAD_INPUT;
    }
    if (check_memory_plan(t) != 0) return EXIT_BAD_INPUT;
    if (open_data(t, &err) != 0) {
        fprintf(stderr, "llava train: %s\n", err.msg);
        return EXIT_BAD_INPUT;
    }
    t->micro = xcalloc((size_t)t->data.max_micro, sizeof(LlavaBatch));
    if (t->ops->sum_losses) t->loss_slots = t->ops->alloc((size_t)t->data.max_micro * sizeof(double));
    // On a GPU the activation arena is sized once, for the longest micro-batch
    // (one image per sample, as LLaVA's data has): variable lengths never
    // reallocate it, which would synchronize. On the CPU growing costs nothing
    // and keeps the memory to what the batches really need.
    if (strcmp(t->ops->name, "cpu") != 0)
        model_reserve(&t->model, c->micro_batch * c->max_length, c->micro_batch);
    long per_epoch = t->data.steps_per_epoch;
    t->total_steps = c->max_steps > 0 ? c->max_steps : per_epoch * c->epochs;
    t->warmup_steps = schedule_warmup_steps(c->warmup_ratio, c->warmup_steps, t->total_steps);
    // As transformers' schedules, step 1 of a warmup runs at LR 0. That is
    // invisible in a real run but is the whole run on a tiny data set.
    if (comm->rank == 0 && t->warmup_steps > 0 && t->warmup_steps >= t->total_steps)
        fprintf(stderr,
                "llava train: warning: the warmup (%ld steps) covers the whole run (%ld steps): %s; set "
                "warmup_ratio=0 or fewer warmup_steps for a run this short\n",
                t->warmup_steps, t->total_steps,
                t->total_steps == 1 ? "its only step runs at LR 0 (warmup starts at 0, as in transformers), so "
                                      "nothing is learned"
                                    : "the first step runs at LR 0 (as in transformers) and the peak lr is never "
                                      "reached");
    double proj_scale = c->projector_lr > 0 && c->lr > 0 ? c->projector_lr / c->lr : 1.0;
    int sharded = c->zero_stage >= 1;
    optim_init(&t->opt, &t->model, c->adam_beta1, c->adam_beta2, c->adam_eps, c->weight_decay, proj_scale,
               sharded ? comm->rank : 0, sharded ? comm->world : 1);
    t->opt.stochastic_rounding = c->stochastic_rounding;
    t->peak_flops = t->cfg.peak_tflops > 0 ? t->cfg.peak_tflops * 1e12 : 0.0;

    char resume_dir[4096] = "";
    long found_step = 0;
    if (strcmp(c->resume, "auto") == 0) {
        if (!checkpoint_find_latest(c->output_dir, resume_dir, sizeof resume_dir, &found_step)) resume_dir[0] = '\0';
    } else if (strcmp(c->resume, "none") != 0) {
        snprintf(resume_dir, sizeof resume_dir, "%s", c->resume);
    }
    if (resume_dir[0]) {
        if (resume_from(t, resume_dir, &err) != 0) {
            fprintf(stderr, "llava train: cannot resume: %s\n", err.msg);
            return EXIT_BAD_INPUT;
        }
        LOG0(t, "resumed from %s at step %ld\n", resume_dir, t->step);
    }
    // After the resume, which writes every trainable weight: ZeRO-3 then gives back what it does not own.
    if (c->zero_stage >= 2 && zero_init(&t->zero, c->zero_stage, c->zero3_shard_frozen, comm, t->nccl, &t->model, &t->opt, &err) != 0) {
        fprintf(stderr, "llava train: %s\n", err.msg);
        return EXIT_BAD_INPUT;
    }
    if (comm->rank == 0) {
        int moved = checkpoint_supersede_after(c->output_dir, t->step);
        if (moved)
            printf("llava train: %d later checkpoint(s) of an earlier run in %s renamed *.superseded (this run "
                   "starts at step %ld)\n", moved, c->output_dir, t->step);
        if (make_dirs(c->output_dir, &err) != 0) {
            fprintf(stderr, "llava train: %s\n", err.msg);
            return EXIT_ERROR;
        }
        char path[4200];
        snprintf(path, sizeof path, "%s/config.json", c->output_dir);
        char *json = run_config_to_json(c);
        int rc = write_file_atomic(path, json, strlen(json), &err);
        free(json);
        int cut = 0;
        if (rc == 0) rc = metrics_open(&t->metrics, c->output_dir, t->step, &cut, &err);
        if (rc != 0) {
            fprintf(stderr, "llava train: cannot write in %s: %s\n", c->output_dir, err.msg);
            return EXIT_ERROR;
        }
        if (cut)
            printf("llava train: %d record(s) of metrics.jsonl after step %ld (or torn) moved to "
                   "metrics.jsonl.superseded\n", cut, t->step);
    }
    LOG0(t, "llava train: stage %d on %s x%d, %zu trainable of %zu parameters, %ld steps (%ld per epoch), global "
            "batch %d = %d x %d x %d\n",
         c->stage, t->ops->name, comm->world, model_num_params(&t->model, 1), model_num_params(&t->model, 0),
         t->total_steps, per_epoch, c->micro_batch * c->grad_accum * comm->world, c->micro_batch, c->grad_accum,
         comm->world);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    return 0;
}

void trainer_free(Trainer *t) {
#ifdef LLAVA_HAVE_CUDA
    if (t->nccl) nccl_leave(t->nccl);
#endif
    metrics_close(&t->metrics);
    zero_free(&t->zero);
    if (t->data.close) t->data.close(&t->data);
    free(t->micro);
    if (t->loss_slots) t->ops->free(t->loss_slots);
    optim_free(&t->opt, &t->model);
    if (t->model.ops) model_free(&t->model);
    memset(t, 0, sizeof *t);
}

// ---- checkpoints -------------------------------------------------------------------

// ---- the loop --------------------------------------------------------------------

typedef struct {
    double loss, norm, lr, seconds;
    double flops;  // model FLOPs of the step, all ranks (model/flops.h)
    int64_t tokens, counted, images;
    int skipped;  // non-finite loss or gradient: no update
    int empty;    // no counted token in the whole global batch: no update
} StepStats;

// metrics.jsonl record and progress line of a step. -1 + err when the
// record could not be written (a full disk): the caller stops the run.
static int log_step(Trainer *t, const StepStats *s, Error *err) {
    if (t->comm.rank != 0) return 0;
    double elapsed = now_seconds() - t->t_start;
    double eta = t->steps_this_run ? elapsed / (double)t->steps_this_run * (double)(t->total_steps - t->step) : 0;
    double tok_s = s->tokens / s->seconds, img_s = s->images / s->seconds;
    double mfu = t->peak_flops > 0 ? s->flops / s->seconds / (t->peak_flops * t->comm.world) : -1.0;
    DataPosition pos = t->data.position(&t->data);
    // JSON has no NaN or Infinity: a non-finite loss or norm is written as null.
    char loss_s[32] = "null", norm_s[32] = "null";
    if (isfinite(s->loss)) snprintf(loss_s, sizeof loss_s, "%.6f", s->loss);
    if (isfinite(s->norm)) snprintf(norm_s, sizeof norm_s, "%.6f", s->norm);
    char info[4096] = "";
    if (t->data.step_info && t->data.step_info(&t->data, info + 2, sizeof info - 2) == 0) memcpy(info, ", ", 2);
    else info[0] = '\0';
    char record[8192];
    snprintf(record, sizeof record,
            "{\"step\": %ld, \"total_steps\": %ld, \"epoch\": %.4f, \"loss\": %s, \"lr\": %.6e, \"grad_norm\": %s, "
            "\"tokens\": %lld, \"counted_tokens\": %lld, \"images\": %lld, \"tokens_per_s\": %.1f, \"images_per_s\": "
            "%.2f, \"mfu\": %.4f, \"max_rss_gb\": %.3f, \"step_s\": %.4f, \"eta_s\": %.0f, \"skipped\": %d, "
            "\"empty\": %d%s}",
            t->step, t->total_steps, (double)pos.epoch + (double)pos.step / (double)t->data.steps_per_epoch, loss_s,
            s->lr, norm_s, (long long)s->tokens, (long long)s->counted, (long long)s->images, tok_s, img_s, mfu,
            max_rss_gb(), s->seconds, eta, s->skipped, s->empty, info);
    if (metrics_append(&t->metrics, record, err) != 0) return -1;
    if (t->step % t->cfg.log_every != 0 && t->step != t->total_steps && !s->skipped && !s->empty) return 0;
    char mfu_s[16] = "-";
    if (mfu >= 0) snprintf(mfu_s, sizeof mfu_s, "%.1f%%", 100 * mfu);
    printf("step %ld/%ld | epoch %.2f | loss %.4f | lr %.3e | norm %.3f | %.0f tok/s | %.1f img/s | mfu %s | mem "
           "%.2f GB | eta %.0fs%s\n",
           t->step, t->total_steps, (double)pos.epoch + (double)pos.step / (double)t->data.steps_per_epoch, s->loss,
           s->lr, s->norm, tok_s, img_s, mfu_s, max_rss_gb(), eta,
           s->skipped ? " | SKIPPED (non-finite)" : s->empty ? " | no update (no counted token)" : "");
    fflush(stdout);
    return 0;
}

// Sums a gradient buffer over the processes. MPI works on host memory, so
// device gradients travel through a host copy.
static void allreduce_grads(Trainer *t, float *grads, size_t n) {
    if (t->comm.world == 1) return;
#ifdef LLAVA_HAVE_CUDA
    if (t->nccl) {
        char msg[512];
        if (nccl_allreduce_sum_f32(t->nccl, grads, n, msg, sizeof msg) != 0) FATAL("%s", msg);
        return;
    }
#endif
    if (strcmp(t->ops->name, "cpu") == 0) {
        comm_allreduce_sum_f32(&t->comm, grads, n);
        return;
    }
    float *host = xmalloc(n * sizeof(float));
    t->ops->download(host, grads, n * sizeof(float));
    comm_allreduce_sum_f32(&t->comm, host, n);
    t->ops->upload(grads, host, n * sizeof(float));
    free(host);
}

// The same for bf16 gradients (grad_dtype bf16, one micro-batch a step):
// NCCL sums bf16 (half the traffic); through MPI they are widened to fp32 on
// the host, summed and rounded back once.
static void allreduce_grads_bf16(Trainer *t, void *grads, size_t n) {
    if (t->comm.world == 1) return;
#ifdef LLAVA_HAVE_CUDA
    if (t->nccl) {
        char msg[512];
        if (nccl_allreduce_sum_bf16(t->nccl, grads, n, msg, sizeof msg) != 0) FATAL("%s", msg);
        return;
    }
#endif
    uint16_t *raw = xmalloc(n * sizeof(uint16_t));
    float *host = xmalloc(n * sizeof(float));
    t->ops->download(raw, grads, n * sizeof(uint16_t));
    for (size_t i = 0; i < n; i++) host[i] = bf16_to_f32(raw[i]);
    comm_allreduce_sum_f32(&t->comm, host, n);
    for (size_t i = 0; i < n; i++) raw[i] = f32_to_bf16(host[i]);
    t->ops->upload(grads, raw, n * sizeof(uint16_t));
    free(host);
    free(raw);
}

// ZeRO-1: each rank updated only its slice of the trainable weights; every
// rank gets every slice. MPI works on host memory, so device weights travel
// through a host copy.
static void allgather_weights(Trainer *t) {
    if (t->comm.world == 1) return;
    LlavaModel *m = &t->model;
    const Ops *ops = t->ops;
    const size_t A = ops->act_size;
    size_t *counts = xcalloc((size_t)t->comm.world, sizeof(size_t)), *displs = xcalloc((size_t)t->comm.world, sizeof(size_t));
    for (int i = 0; i < MODULE_COUNT; i++) {
        if (!m->trainable[i]) continue;
        for (int r = 0; r < t->comm.world; r++) {
            size_t b, e, off;
            optim_slice(t->opt.total, r, t->comm.world, &b, &e);
            counts[r] = optim_module_part(&t->opt, m, (ModuleId)i, b, e, &off) * A;
            displs[r] = off * A;
        }
        size_t bytes = m->params.module_numel[i] * A;
#ifdef LLAVA_HAVE_CUDA
        if (t->nccl) {
            char msg[512];
            for (int r = 0; r < t->comm.world; r++)
                if (counts[r] && nccl_broadcast_bytes(t->nccl, (char *)m->weights[i] + displs[r], counts[r], r, msg,
                                                      sizeof msg) != 0)
                    FATAL("%s", msg);
            continue;
        }
#endif
        if (strcmp(ops->name, "cpu") == 0) {
            comm_allgatherv_bytes(&t->comm, m->weights[i], counts, displs);
        } else {
            void *host = xmalloc(bytes);
            ops->download(host, m->weights[i], bytes);
            comm_allgatherv_bytes(&t->comm, host, counts, displs);
            ops->upload(m->weights[i], host, bytes);
            free(host);
        }
    }
    free(counts);
    free(displs);
}

// LLAVA_TEST_STEP_DELAY_MS slows every step down so that the test suite can
// reliably kill a run between two checkpoints.
static void maybe_delay_for_test(void) {
    const char *v = getenv("LLAVA_TEST_STEP_DELAY_MS");
    if (v) usleep((useconds_t)(atoi(v) * 1000));
}

// ZeRO-2/3's collectives run per layer inside forward and backward, so every
// rank must run as many micro-batches as the one with the most (a short last
// step leaves some ranks with fewer, or none), else all of them hang.
static int64_t most_micro_batches(const Trainer *t, int n) {
    int64_t *per_rank = xcalloc((size_t)t->comm.world, sizeof(int64_t)), most = 0;
    per_rank[t->comm.rank] = n;
    comm_allreduce_sum_i64(&t->comm, per_rank, (size_t)t->comm.world);
    for (int r = 0; r < t->comm.world; r++) most = per_rank[r] > most ? per_rank[r] : most;
    free(per_rank);
    return most;
}

// One optimizer step. Returns 0, or -1 on a data error (err set).
static int train_step(Trainer *t, StepStats *s, Error *err) {
    LlavaModel *m = &t->model;
    const RunConfig *c = &t->cfg;
    double t0 = now_seconds();
    maybe_delay_for_test();
    LlavaBatch *micro = t->micro;
    int n = 0;
    if (t->data.next_step(&t->data, micro, &n, err) != 0) return -1;
    // The loss is the mean over every counted token of the whole global
    // batch: count them first, over every micro-batch and rank.
    int64_t counts[3] = {0, 0, 0};  // counted targets, input tokens, images
    for (int i = 0; i < n; i++) {
        counts[0] += model_count_targets(&micro[i]);
        for (int k = 0; k < micro[i].B * micro[i].T; k++) counts[1] += !micro[i].seg || micro[i].seg[k] != 0;
        counts[2] += micro[i].n_images;
    }
    comm_allreduce_sum_i64(&t->comm, counts, 3);
    const int zero2 = c->zero_stage >= 2;
    const int64_t most = zero2 ? most_micro_batches(t, n) : n;
    if (zero2)
        zero_begin_step(&t->zero);
    else
        model_zero_grads(m);
    double sums[2] = {0.0, 0.0};  // loss sum, model FLOPs
    const size_t adapters = m->params.module_numel[MODULE_LORA];
    for (int i = 0; i < n; i++) sums[1] += flops_micro_batch(&m->cfg, m->trainable[MODULE_LLM], adapters, &micro[i]);
    float scale = counts[0] > 0 ? 1.0f / (float)counts[0] : 0.0f;
    for (int i = 0; i < n; i++) {
        // LoRA dropout masks: a function of (seed, step, micro-batch, rank), so resume and recompute redraw them
        m->lora.dropout_seed = lora_mask_hash(lora_mask_hash((uint64_t)c->seed, (uint64_t)t->step),
                                              (uint64_t)i * 65536u + (uint64_t)t->comm.rank);
        m->loss_slot = t->loss_slots ? t->loss_slots + i : NULL;
        if (model_forward(m, &micro[i], err) != 0) return -1;
        if (!t->loss_slots) sums[0] += m->loss_sum;
        if (counts[0] > 0) model_backward(m, scale);
        if (counts[0] > 0) model_accumulate_grads(m);  // bf16 gradients into the fp32 accumulator, if kept
        // ZeRO-2/3 reduce-scattered the layers' gradients during backward; the rest now.
        if (counts[0] > 0 && zero2) zero_after_backward(&t->zero);
    }
    // A rank that a short last step left with fewer micro-batches issues ZeRO-2/3's
    // per-layer collectives for the missing ones anyway (see most_micro_batches).
    for (int64_t i = n; zero2 && i < most; i++) zero_idle_micro_batch(&t->zero, counts[0] > 0);
    m->loss_slot = NULL;
    if (t->loss_slots && n > 0) {
        // One read of every micro-batch's loss sum, added in order as the
        // host did per micro-batch (the same bits).
        double *host = xmalloc((size_t)n * sizeof(double));
        t->ops->download(host, t->loss_slots, (size_t)n * sizeof(double));
        for (int i = 0; i < n; i++) sums[0] += host[i];
        free(host);
    }
    for (int i = 0; i < MODULE_COUNT && !zero2; i++) {
        int bf16 = 0;
        void *g = model_step_grads(m, (ModuleId)i, &bf16);
        if (g && bf16) allreduce_grads_bf16(t, g, m->params.module_numel[i]);
        if (g && !bf16) allreduce_grads(t, g, m->params.module_numel[i]);
    }
#ifdef LLAVA_HAVE_CUDA
    // The step's collectives done (or a failed peer named) before the host
    // joins an MPI collective that a stuck peer would hang forever.
    if (t->nccl) nccl_wait_all(t->nccl, "this step's gradient collectives");
#endif
    comm_allreduce_sum_f64(&t->comm, sums, 2);
    s->loss = counts[0] > 0 ? sums[0] / (double)counts[0] : NAN;
    s->flops = sums[1];
    s->norm = zero2 ? zero_grad_norm(&t->zero) : optim_grad_norm(m);
    s->lr = c->lr * schedule_lr_factor(c->schedule, t->step, t->total_steps, t->warmup_steps);
    s->empty = counts[0] == 0;
    s->skipped = !s->empty && (!isfinite(s->loss) || !isfinite(s->norm));
    if (s->empty) {
        // Nothing to learn from (every label masked): no update, not an error.
    } else if (s->skipped) {
        t->bad_streak++;
        t->skipped++;
    } else {
        t->bad_streak = 0;
        optim_step(&t->opt, m, s->lr, optim_clip_factor(s->norm, c->max_grad_norm), (int)(t->step + 1));
        if (c->zero_stage == 1) allgather_weights(t);
        if (zero2) zero_after_update(&t->zero);
    }
    t->step++;
    t->steps_this_run++;
    s->tokens = counts[1];
    s->counted = counts[0];
    s->images = counts[2];
    s->seconds = now_seconds() - t0;
    return 0;
}

// Every process's resident high-water mark of the loop (the model load before
// it excluded), in one line from rank 0: what `llava plan` predicts.
static void report_loop_peak(Trainer *t, int peak_reset) {
    double *peak = xcalloc((size_t)t->comm.world, sizeof(double));
    peak[t->comm.rank] = memstat_peak_bytes();
    comm_allreduce_sum_f64(&t->comm, peak, (size_t)t->comm.world);
    if (t->comm.rank == 0) {
        printf("peak resident memory of the training loop%s, MiB per process:", peak_reset ? "" : " (and setup)");
        for (int r = 0; r < t->comm.world; r++) printf(" %.1f", peak[r] / (1024.0 * 1024.0));
        printf("\n");
        fflush(stdout);
    }
    free(peak);
}

// After max_bad_steps non-finite steps in a row (steps first..t->step; the
// weights stopped changing at step first - 1, whose update may be what
// diverged): the checkpoints of step first - 1 and later are set aside as
// *.diverged, so that rerunning with a lower learning rate (resume "auto")
// starts from the newest checkpoint saved before that update. Says which.
static void report_divergence(Trainer *t) {
    const char *run = t->cfg.output_dir;
    const long first = t->step - t->bad_streak + 1;
    const int moved = checkpoint_set_aside_after(run, first - 2, ".diverged");
    char good[4096];
    long good_step = 0;
    fprintf(stderr, "llava train: %d non-finite steps in a row (loss or gradient NaN/inf, steps %ld-%ld); stopped. "
            "The weights of step %ld are in %s/checkpoint-%08ld.diverged",
            t->bad_streak, first, t->step, t->step, run, t->step);
    if (moved) fprintf(stderr, "; %d checkpoint(s) from step %ld on set aside as *.diverged", moved, first - 1);
    if (checkpoint_find_latest(run, good, sizeof good, &good_step))
        fprintf(stderr, ".\nResume from %s (step %ld, the last checkpoint with finite weights saved before the update "
                "of step %ld): lower the learning rate (or check the data) and rerun; resume \"auto\" picks it.\n",
                good, good_step, first - 1);
    else
        fprintf(stderr, ".\nNo checkpoint was saved before the update of step %ld: lower the learning rate (or check "
                "the data) and start over (set save_every to keep earlier checkpoints).\n", first - 1);
}

int trainer_run(Trainer *t) {
    Error err = {{0}};
    int peak_reset = memstat_reset_peak() == 0;
    t->t_start = now_seconds();
    int exit_code = EXIT_OK;
    long last_saved = t->step;
    while (t->step < t->total_steps) {
        StepStats s;
        memset(&s, 0, sizeof s);
        if (train_step(t, &s, &err) != 0) {
            fprintf(stderr, "llava train: step %ld: %s\n", t->step + 1, err.msg);
            return EXIT_BAD_INPUT;
        }
        if (!comm_all(&t->comm, log_step(t, &s, &err) == 0)) {
            fprintf(stderr, "llava train: step %ld: %s; stopped. Free space and rerun: the run resumes from its last "
                    "checkpoint and metrics.jsonl is cut back to it\n", t->step,
                    t->comm.rank == 0 ? err.msg : "rank 0 could not write metrics.jsonl");
            return EXIT_ERROR;
        }
        int stop = !comm_all(&t->comm, stop_signal == 0);
        int too_bad = t->bad_streak >= t->cfg.max_bad_steps;
        int periodic = t->cfg.save_every > 0 && t->step % t->cfg.save_every == 0;
        if (periodic || stop || too_bad) {
            int resumable = 0;
            if (trainer_save_checkpoint(t, too_bad, &resumable, &err) != 0) {
                fprintf(stderr, "llava train: saving step %ld failed: %s\n", t->step, err.msg);
                return EXIT_ERROR;
            }
            last_saved = t->step;
            if (resumable)
                LOG0(t, "saved checkpoint at step %ld\n", t->step);
            else if (!too_bad)
                LOG0(t, "step %ld: the weights are not finite: saved as checkpoint-%08ld.diverged (not resumable)\n",
                     t->step, t->step);
        }
        if (too_bad) {
            if (t->comm.rank == 0) report_divergence(t);
            return EXIT_ERROR;
        }
        if (stop) {
            LOG0(t, "interrupted by signal %d at step %ld: checkpoint saved; rerun with resume \"auto\" (the default) "
                    "to continue\n",
                 (int)stop_signal, t->step);
            return EXIT_OK;
        }
    }
    report_loop_peak(t, peak_reset);
    int resumable = 0;
    if (last_saved != t->step && trainer_save_checkpoint(t, 0, &resumable, &err) != 0) {
        fprintf(stderr, "llava train: saving the last checkpoint failed: %s\n", err.msg);
        return EXIT_ERROR;
    }
    if (trainer_save_final(t, &err) != 0) {
        fprintf(stderr, "llava train: saving the final model failed: %s\n", err.msg);
        return EXIT_ERROR;
    }
    LOG0(t, "done: %ld steps (%ld skipped as non-finite), final model in %s/final\n", t->step, t->skipped,
         t->cfg.output_dir);
    return exit_code;
}
