// `llava bench`: times training steps (forward + backward + AdamW) of a model
// on synthetic batches of a fixed shape, and prints the figures as JSON so
// scripts/bench_compare.sh can put them beside PyTorch's on the same work.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "common/args.h"
#include "kernels/backend.h"
#include "train/checkpoint.h"
#include "train/lora.h"
#include "train/commands.h"
#include "train/model_source.h"
#include "train/optim.h"
#include "train/synthetic.h"

static double process_cpu_seconds(void) {
    struct timespec ts;
    CHECK(clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) == 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID) failed");
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int cmd_bench(int argc, char **argv) {
    ModelSource src;
    model_source_default(&src);
    const char *config_path = NULL, *device = "cpu";
    int batch = 4, text = 64, stage = 2, steps = 5, warmup = 1, recompute = 0, threads = 0, lora_r = 0;
    ArgSpec specs[20];
    int n = model_source_args(&src, specs, 0);
    specs[n++] = (ArgSpec){"config", ARG_STRING, &config_path, "a LLaVA config.json to bench with random weights", 0};
    specs[n++] = (ArgSpec){"batch", ARG_INT, &batch, "samples per step, each with one image (default 4)", 0, 1, 4096};
    specs[n++] = (ArgSpec){"text", ARG_INT, &text, "text tokens per sample besides the image tokens (default 64)", 0, 0, 1048576};
    specs[n++] = (ArgSpec){"stage", ARG_INT, &stage, "1 or 2: what trains (default 2)", 0, 1, 2};
    specs[n++] = (ArgSpec){"lora-r", ARG_INT, &lora_r,
                           "stage 2 with LoRA of this rank on every LLM linear (alpha 2r, dropout 0.05) (default 0: off)", 0,
                           0, 65536};
    specs[n++] = (ArgSpec){"steps", ARG_INT, &steps, "timed steps (default 5)", 0, 1, 1000000};
    specs[n++] = (ArgSpec){"warmup", ARG_INT, &warmup, "untimed steps first (default 1)", 0, 0, 1000000};
    specs[n++] = (ArgSpec){"recompute", ARG_INT, &recompute, "gradient checkpointing 0|1 (default 0)", 0, 0, 1};
    specs[n++] = (ArgSpec){"device", ARG_STRING, &device, "cpu | cuda (default cpu)", 0};
    specs[n++] = (ArgSpec){"threads", ARG_INT, &threads, "CPU threads (default: all)", 0, 0, 1024};
    int rc = args_parse(argc, argv, specs, n, "llava bench (--model DIR | --config CONFIG.json) [options]",
                        "Times full training steps on synthetic data of a fixed shape (every sample: BOS, one image,\n"
                        "`text` tokens) and prints one JSON line: wall and CPU seconds per step (CPU: all threads of\n"
                        "the process), tokens/s, images/s, the process's peak RSS.",
                        NULL, 0, NULL);
    if (rc) return rc == 1 ? EXIT_OK : EXIT_BAD_INPUT;
    if (batch < 1 || text < 1 || steps < 1 || warmup < 0 || (stage != 1 && stage != 2)) {
        fprintf(stderr, "llava bench: bad --batch/--text/--steps/--warmup/--stage\n");
        return EXIT_BAD_INPUT;
    }
    backend_set_threads(threads);
    Error err = {{0}};
    const Ops *ops = backend_select(device, &err);
    LlavaModel m;
    if (!ops) {
        fprintf(stderr, "llava bench: %s\n", err.msg);
        return EXIT_BAD_INPUT;
    }
    if (config_path) {
        LlavaConfig cfg;
        if (config_load_llava(&cfg, config_path, &err) != 0) {
            fprintf(stderr, "llava bench: %s\n", err.msg);
            return EXIT_BAD_INPUT;
        }
        model_init(&m, &cfg, ops);
        checkpoint_init_random(&m, 1);
    } else if (model_source_load(&src, &m, ops, &err) != 0) {
        fprintf(stderr, "llava bench: %s\n", err.msg);
        return EXIT_BAD_INPUT;
    }
    if (lora_r > 0) {
        if (stage != 2 || !ops->dropout) {
            fprintf(stderr, "llava bench: --lora-r needs --stage 2 and a backend with the LoRA ops\n");
            model_free(&m);
            return EXIT_BAD_INPUT;
        }
        LoraSpec spec = {.r = lora_r, .alpha = 2.0f * lora_r, .dropout = 0.05f, .targets = (1u << LORA_TARGETS) - 1};
        lora_attach(&m, &spec);
        m.lora.dropout_active = 1;
        lora_init_weights(&m, "kaiming", 1, &err);
    }
    model_set_stage(&m, stage);
    model_set_recompute(&m, recompute);
    Optimizer opt;
    optim_init(&opt, &m, 0.9, 0.999, 1e-8, 0.0, 1.0, 0, 1);
    BatchSource data;
    SyntheticOptions so = {.n_samples = batch * (steps + warmup), .min_text = text, .max_text = text,
                           .image_every = 0, .micro_batch = batch, .grad_accum = 1, .rank = 0, .world = 1, .seed = 1};
    if (synthetic_open(&data, &so, &m.cfg, &err) != 0) {
        fprintf(stderr, "llava bench: %s\n", err.msg);
        return EXIT_BAD_INPUT;
    }
    // Wall time and process CPU time (all threads): on a shared machine the
    // CPU time is the figure that does not move with the other jobs' load.
    double t_total = 0.0, best = INFINITY, cpu_total = 0.0;
    long tokens = 0, images = 0;
    int status = EXIT_OK;
    for (int s = 0; s < warmup + steps; s++) {
        LlavaBatch b;
        int nb = 0;
        data.next_step(&data, &b, &nb, &err);
        ops->synchronize();
        double t0 = now_seconds(), c0 = process_cpu_seconds();
        model_zero_grads(&m);
        if (model_forward(&m, &b, &err) != 0) {
            fprintf(stderr, "llava bench: %s\n", err.msg);
            status = EXIT_BAD_INPUT;
            break;
        }
        model_backward(&m, 1.0f / (float)(m.n_counted ? m.n_counted : 1));
        optim_step(&opt, &m, 1e-5, 1.0f, s + 1);
        ops->synchronize();
        double dt = now_seconds() - t0, dc = process_cpu_seconds() - c0;
        if (s >= warmup) {
            cpu_total += dc;
            t_total += dt;
            best = dt < best ? dt : best;
            tokens += (long)b.B * b.T;
            images += b.n_images;
        }
    }
    struct rusage ru;
    CHECK(getrusage(RUSAGE_SELF, &ru) == 0, "getrusage failed");
    if (status == EXIT_OK)
        printf("{\"device\": \"%s\", \"stage\": %d, \"batch\": %d, \"seq\": %d, \"params\": %zu, \"trainable\": %zu, "
               "\"recompute\": %d, \"steps\": %d, \"s_per_step\": %.6f, \"best_s_per_step\": %.6f, "
               "\"cpu_s_per_step\": %.6f, \"tokens_per_s\": %.1f, \"images_per_s\": %.2f, \"lora_r\": %d, \"max_rss_gb\": %.3f, "
               "\"peak_rss_mb\": %.1f}\n",
               ops->name, stage, batch, 1 + m.cfg.image_tokens + text, model_num_params(&m, 0),
               model_num_params(&m, 1), recompute, steps, t_total / steps, best, cpu_total / steps, tokens / t_total,
               images / t_total, lora_r, max_rss_gb(), ru.ru_maxrss / 1024.0);
    data.close(&data);
    optim_free(&opt, &m);
    model_free(&m);
    return status;
}
