// The training loop of `llava train`: micro-batches with gradient
// accumulation, the loss as the mean over every counted token of the global
// batch, data-parallel gradient all-reduce, clipping, AdamW, progress lines
// and metrics.jsonl, atomic checkpoints with exact resume, skipping of
// non-finite steps, and a checkpoint on SIGINT/SIGTERM.
#ifndef LLAVA_TRAINER_H
#define LLAVA_TRAINER_H

#include <stdio.h>

#include "data/batch_source.h"
#include "train/dist.h"
#include "train/metrics.h"
#include "train/optim.h"
#include "train/run_config.h"
#include "train/zero.h"

typedef struct {
    RunConfig cfg;
    Comm comm;
    const Ops *ops;
    LlavaModel model;
    Optimizer opt;
    BatchSource data;
    LlavaBatch *micro;   // [data.max_micro] the micro-batches of the current step
    double *loss_slots;  // [data.max_micro] backend memory: each micro-batch's loss sum, read once per step
    long step;           // optimizer steps done
    long total_steps;
    long warmup_steps;
    int bad_streak;      // consecutive non-finite steps
    long skipped;        // all non-finite steps
    MetricsFile metrics; // metrics.jsonl (rank 0)
    void *nccl;          // NCCL communicator for device buffers (CUDA, several processes), or NULL
    double peak_flops;   // per device, 0 = unknown
    double t_start;
    long steps_this_run;
    Zero zero;           // ZeRO-2/3 state (zero_stage >= 2), else unused
} Trainer;

// Sets everything up from the config: model, data, optimizer, resume.
// Returns 0, or the exit code to stop with (message already printed).
int trainer_setup(Trainer *t, const RunConfig *cfg, const Comm *comm);
// Runs until the last step, a signal, or too many non-finite steps.
// Returns the process exit code.
int trainer_run(Trainer *t);
void trainer_free(Trainer *t);

#endif
