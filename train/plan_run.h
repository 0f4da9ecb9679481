// The memory plan of a run config: the planner's input from the config, the
// model's shape from its config.json, and the trainer's start-up check.
#ifndef LLAVA_PLAN_RUN_H
#define LLAVA_PLAN_RUN_H

#include <stdio.h>

#include "train/plan.h"
#include "train/run_config.h"

// The model's shape: `model_config` (a LLaVA config.json) when given, else
// <model>/config.json of the run config. 0, or -1 with err.
int plan_load_model_config(LlavaConfig *cfg, const RunConfig *rc, const char *model_config, Error *err);
// world processes; act_bytes 0 = from the config's device (cuda: 2, cpu: 4).
// Capacity: memory_limit_gb when set, else on the CPU the physical memory
// divided by the processes on this node, else unknown.
void plan_input_from_run(PlanInput *in, const RunConfig *rc, const LlavaConfig *cfg, int world, int act_bytes);
// Prints the table (when out is not NULL) and returns 0 when the run's
// zero_stage fits or the capacity is unknown, or -1 with the reason and the
// setting to change in msg.
int plan_check_run(const LlavaConfig *cfg, const PlanInput *in, int zero_stage, FILE *out, char *msg, size_t cap);

#endif
