// `llava plan --config FILE [--set key=value ...] --world N [--gpu-memory 80GB]`:
// the per-process memory of a run for zero_stage 0..3 (train/plan.h), and
// whether it fits.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/commands.h"
#include "train/plan_run.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: llava plan --config FILE [--set key=value ...] [--world N] [--gpu-memory SIZE]\n"
            "                  [--model-config CONFIG.json] [--device cpu|cuda] [--json]\n\n"
            "Prints what one process (one GPU) holds for the run, by part (weights, gradients (fp32, or bf16 with\n"
            "grad_dtype bf16, plus an fp32 accumulator when grad_accum > 1), AdamW state,\n"
            "activations of one micro-batch with and without recompute, workspace, communication buffers), for\n"
            "zero_stage 0, 1, 2 and 3, and whether it fits. No weights are read: the model's shape comes from\n"
            "<model>/config.json, or --model-config (assets/models/llava-v1.5-{7b,13b}.json).\n\n"
            "  --world N          processes / GPUs (default 1)\n"
            "  --gpu-memory SIZE  memory of one device: 80GB, 40GiB, 24 (GiB; cards are sold in GiB, so GB = GiB)\n"
            "                     (default: memory_limit_gb of the config, else unknown on GPUs, else the node's\n"
            "                     memory / processes on the CPU)\n"
            "  --device D         override the config's device (cuda: bf16 weights and activations)\n"
            "  --json             one JSON object (bytes) instead of the table\n"
            "Exit 0 when the config's zero_stage fits (or the capacity is unknown), 3 when it does not.\n");
}

static int parse_size_gib(const char *s, double *gib) {
    char *end = NULL;
    double v = strtod(s, &end);
    if (end == s || v <= 0) return -1;
    if (*end && strcmp(end, "GB") != 0 && strcmp(end, "GiB") != 0 && strcmp(end, "G") != 0) return -1;
    *gib = v;
    return 0;
}

int cmd_plan(int argc, char **argv) {
    RunConfig rc;
    run_config_default(&rc);
    Error err = {{0}};
    const char *config_path = NULL, *model_config = NULL, *device = NULL;
    int world = 1, json = 0;
    double gib = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return EXIT_OK;
        } else if (strcmp(a, "--json") == 0) {
            json = 1;
        } else if (strcmp(a, "--config") == 0 && has) {
            config_path = argv[++i];
        } else if (strcmp(a, "--model-config") == 0 && has) {
            model_config = argv[++i];
        } else if (strcmp(a, "--device") == 0 && has) {
            device = argv[++i];
        } else if (strcmp(a, "--world") == 0 && has) {
            world = atoi(argv[++i]);
            if (world < 1) {
                fprintf(stderr, "llava plan: --world %s: give a positive process count\n", argv[i]);
                return EXIT_BAD_INPUT;
            }
        } else if (strcmp(a, "--gpu-memory") == 0 && has) {
            if (parse_size_gib(argv[++i], &gib) != 0) {
                fprintf(stderr, "llava plan: --gpu-memory %s: give a size such as 80GB, 40GiB or 24\n", argv[i]);
                return EXIT_BAD_INPUT;
            }
        } else if (strcmp(a, "--set") == 0 && has) {
            i++;
        } else {
            fprintf(stderr, "llava plan: unexpected argument '%s' (see --help)\n", a);
            return EXIT_BAD_INPUT;
        }
    }
    if (config_path && run_config_load_file(&rc, config_path, &err) != 0) {
        fprintf(stderr, "llava plan: %s\n", err.msg);
        return EXIT_BAD_INPUT;
    }
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--set") == 0 && i + 1 < argc && run_config_set(&rc, argv[++i], &err) != 0) {
            fprintf(stderr, "llava plan: %s\n", err.msg);
            return EXIT_BAD_INPUT;
        }
    if (device) snprintf(rc.device, sizeof rc.device, "%s", device);
    if (gib > 0) rc.memory_limit_gb = gib;
    LlavaConfig mc;
    if (plan_load_model_config(&mc, &rc, model_config, &err) != 0) {
        fprintf(stderr, "llava plan: %s\n", err.msg);
        return EXIT_BAD_INPUT;
    }
    if (rc.global_batch > 0 && rc.global_batch % (rc.micro_batch * world) != 0) {
        fprintf(stderr, "llava plan: global_batch %d is not a multiple of micro_batch x world = %d\n", rc.global_batch,
                rc.micro_batch * world);
        return EXIT_BAD_INPUT;
    }
    PlanInput in;
    plan_input_from_run(&in, &rc, &mc, world, 0);
    char msg[768];
    int rc_fit;
    if (json) {
        Plan p;
        plan_compute(&p, &mc, &in);
        plan_print_json(&p, &in, stdout);
        rc_fit = plan_check_run(&mc, &in, rc.zero_stage, NULL, msg, sizeof msg);
    } else {
        rc_fit = plan_check_run(&mc, &in, rc.zero_stage, stdout, msg, sizeof msg);
        if (rc_fit != 0) printf("does not fit: %s\n", msg);
    }
    return rc_fit == 0 ? EXIT_OK : 3;
}
