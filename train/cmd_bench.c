// `llava bench`: times training steps (forward + backward + AdamW) of a model
// on synthetic batches of a fixed shape, and prints the figures as JSON so
// scripts/bench_compare.sh can put them beside PyTorch's on the same work.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/args.h"
#include "kernels/backend.h"
#include "model/checkpoint.h"
#include "common/commands.h"
#include "model/flops.h"
#include "model/lora.h"
#include "model/model_source.h"
#include "train/optim.h"
#include "train/synthetic.h"

static double process_cpu_seconds(void) {
    struct timespec ts;
    CHECK(clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) == 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID) failed");
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// The memory plan at this shape: training state + activations for `batch`
// samples of `seq` tokens (one image each), and the largest micro-batch whose
// plan fits in 90% of the device's memory (the rest: CUDA's context,
// cuBLASLt's workspace, scratch, fragmentation). Appends JSON fields.
static void memory_plan(const LlavaModel *m, int batch, int seq, char *out, size_t cap) {
    size_t state = model_training_state_bytes(m), free_b = 0, total_b = 0;
    double gb = 1024.0 * 1024.0 * 1024.0;
    size_t act = model_activation_bytes(m, batch * seq, batch);
    int n = snprintf(out, cap, ", \"grad_dtype\": \"%s\", \"state_gb\": %.3f, \"activations_gb\": %.3f",
                     m->grad_bf16 ? "bf16" : "fp32", state / gb, act / gb);
    if (backend_device_memory(m->ops, &free_b, &total_b) != 0 || n < 0 || (size_t)n >= cap) return;
    double budget = 0.9 * (double)total_b;
    int lo = 0, hi = 1;  // largest B with state + act(B) <= budget: grow, then bisect
    while (hi <= (1 << 20) / seq + 1 && state + model_activation_bytes(m, hi * seq, hi) <= budget) lo = hi, hi *= 2;
    while (hi - lo > 1) {
        int mid = lo + (hi - lo) / 2;
        if (state + model_activation_bytes(m, mid * seq, mid) <= budget) lo = mid;
        else hi = mid;
    }
    snprintf(out + n, cap - (size_t)n, ", \"device_gb\": %.1f, \"max_micro_batch\": %d", total_b / gb, lo);
}

// Times `steps` training steps of one stage after `warmup` untimed ones and
// prints the JSON line. EXIT_OK, or EXIT_BAD_INPUT with err.
static int bench_stage(LlavaModel *m, int stage, int batch, int text, int steps, int warmup, int recompute,
                       double peak_tflops, Error *err) {
    const Ops *ops = m->ops;
    model_set_stage(m, stage);
    model_set_recompute(m, recompute);
    model_set_head_labeled_only(m, 1);  // as llava train runs it
    Optimizer opt;
    optim_init(&opt, m, 0.9, 0.999, 1e-8, 0.0, 1.0, 0, 1);
    BatchSource data;
    SyntheticOptions so = {.n_samples = batch * (steps + warmup), .min_text = text, .max_text = text,
                           .image_every = 0, .micro_batch = batch, .grad_accum = 1, .rank = 0, .world = 1, .seed = 1};
    if (synthetic_open(&data, &so, &m->cfg, err) != 0) {
        optim_free(&opt, m);
        return EXIT_BAD_INPUT;
    }
    // Wall time and process CPU time (all threads): on a shared machine the
    // CPU time is the figure that does not move with the other jobs' load.
    double t_total = 0.0, best = INFINITY, flops = 0.0, cpu_total = 0.0;
    long tokens = 0, images = 0;
    int status = EXIT_OK;
    for (int s = 0; s < warmup + steps; s++) {
        LlavaBatch b;
        int nb = 0;
        data.next_step(&data, &b, &nb, err);
        ops->synchronize();
        double t0 = now_seconds(), c0 = process_cpu_seconds();
        model_zero_grads(m);
        if (model_forward(m, &b, err) != 0) {
            status = EXIT_BAD_INPUT;
            break;
        }
        model_backward(m, 1.0f / (float)(m->n_counted ? m->n_counted : 1));
        optim_step(&opt, m, 1e-5, 1.0f, s + 1);
        ops->synchronize();
        double dt = now_seconds() - t0, dc = process_cpu_seconds() - c0;
        if (s >= warmup) {
            t_total += dt;
            cpu_total += dc;
            best = dt < best ? dt : best;
            tokens += (long)b.B * b.T;
            images += b.n_images;
            flops += flops_micro_batch(&m->cfg, m->trainable[MODULE_LLM], m->params.module_numel[MODULE_LORA], &b);
        }
    }
    if (status == EXIT_OK) {
        double tf = flops / t_total / 1e12;
        char mfu[48] = "", mem[256] = "";
        if (peak_tflops > 0) snprintf(mfu, sizeof mfu, ", \"mfu\": %.4f", tf / peak_tflops);
        memory_plan(m, batch, 1 + m->cfg.image_tokens + text, mem, sizeof mem);
        printf("{\"device\": \"%s\", \"stage\": %d, \"batch\": %d, \"seq\": %d, \"params\": %zu, \"trainable\": %zu, "
               "\"recompute\": %d, \"steps\": %d, \"s_per_step\": %.6f, \"best_s_per_step\": %.6f, "
               "\"cpu_s_per_step\": %.6f, \"tokens_per_s\": %.1f, \"images_per_s\": %.2f, \"model_tflops_per_s\": %.3f, "
               "\"lora_r\": %d, \"max_rss_gb\": %.3f, \"peak_rss_mb\": %.1f%s%s}\n",
               ops->name, stage, batch, 1 + m->cfg.image_tokens + text, model_num_params(m, 0),
               model_num_params(m, 1), recompute, steps, t_total / steps, best, cpu_total / steps, tokens / t_total,
               images / t_total, tf, m->lora.r, max_rss_gb(), max_rss_gb() * 1024.0, mfu, mem);
        fflush(stdout);
    }
    data.close(&data);
    optim_free(&opt, m);
    return status;
}

int cmd_bench(int argc, char **argv) {
    ModelSource src;
    model_source_default(&src);
    const char *config_path = NULL, *device = "cpu", *attention = "flash";
    const char *stages = "2", *grad_dtype = "fp32";
    int batch = 4, text = 64, steps = 5, warmup = 1, recompute = 0, threads = 0, lora_r = 0;
    float peak_tflops = 0;
    ArgSpec specs[22];
    int n = model_source_args(&src, specs, 0);
    specs[n++] = (ArgSpec){"config", ARG_STRING, &config_path, "a LLaVA config.json to bench with random weights", 0};
    specs[n++] = (ArgSpec){"batch", ARG_INT, &batch, "samples per step, each with one image (default 4)", 0, 1, 4096};
    specs[n++] = (ArgSpec){"text", ARG_INT, &text, "text tokens per sample besides the image tokens (default 64)", 0, 0, 1048576};
    specs[n++] = (ArgSpec){"stage", ARG_STRING, &stages,
                           "1, 2 or 1,2: what trains (default 2); 1,2 benches both on one initialized model", 0};
    specs[n++] = (ArgSpec){"peak-tflops", ARG_FLOAT, &peak_tflops, "the device's peak, for an mfu field (default: none)",
                           0, 0, 1e9};
    specs[n++] = (ArgSpec){"lora-r", ARG_INT, &lora_r,
                           "stage 2 with LoRA of this rank on every LLM linear (alpha 2r, dropout 0.05) (default 0: off)", 0,
                           0, 65536};
    specs[n++] = (ArgSpec){"steps", ARG_INT, &steps, "timed steps (default 5)", 0, 1, 1000000};
    specs[n++] = (ArgSpec){"warmup", ARG_INT, &warmup, "untimed steps first (default 1)", 0, 0, 1000000};
    specs[n++] = (ArgSpec){"recompute", ARG_INT, &recompute,
                           "gradient checkpointing: 0 off, 1 full, 2 selective (default 0)", 0, 0, 2};
    specs[n++] = (ArgSpec){"device", ARG_STRING, &device, "cpu | cuda (default cpu)", 0};
    specs[n++] = (ArgSpec){"attention", ARG_STRING, &attention,
                           "device cuda: flash | cudnn (cuDNN's fused attention) (default flash)", 0};
    specs[n++] = (ArgSpec){"grad-dtype", ARG_STRING, &grad_dtype,
                           "fp32 | bf16: parameter gradients (bf16: CUDA only; one micro-batch, no accumulator)", 0};
    specs[n++] = (ArgSpec){"threads", ARG_INT, &threads, "CPU threads (default: all)", 0, 0, 1024};
    int rc = args_parse(argc, argv, specs, n, "llava bench (--model DIR | --config CONFIG.json) [options]",
                        "Times full training steps on synthetic data of a fixed shape (every sample: BOS, one image,\n"
                        "`text` tokens) and prints one JSON line per stage: wall and CPU seconds per step (CPU: all\n"
                        "threads of the process), tokens/s, images/s, the process's peak RSS, model TFLOP/s from the\n"
                        "real lengths (model/flops.h), the memory plan (training state, activations) and the largest\n"
                        "micro-batch of this shape that fits the device.",
                        NULL, 0, NULL);
    if (rc) return rc == 1 ? EXIT_OK : EXIT_BAD_INPUT;
    int stage_list[2], n_stages = 0;
    for (const char *p = stages; *p; p++) {
        if ((*p == '1' || *p == '2') && n_stages < 2) stage_list[n_stages++] = *p - '0';
        else if (*p != ',') n_stages = 3;  // malformed
        if (n_stages > 2) break;
    }
    if (batch < 1 || text < 1 || steps < 1 || warmup < 0 || n_stages < 1 || n_stages > 2 || recompute < 0 ||
        recompute > 2) {
        fprintf(stderr, "llava bench: bad --batch/--text/--steps/--warmup/--stage/--recompute\n");
        return EXIT_BAD_INPUT;
    }
    backend_set_threads(threads);
    Error err = {{0}};
    const Ops *ops = backend_select(device, &err);
    if (ops) ops = backend_attention(ops, attention, &err);
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
        if (n_stages != 1 || stage_list[0] != 2 || !ops->dropout) {
            fprintf(stderr, "llava bench: --lora-r needs --stage 2 and a backend with the LoRA ops\n");
            model_free(&m);
            return EXIT_BAD_INPUT;
        }
        LoraSpec spec = {.r = lora_r, .alpha = 2.0f * lora_r, .dropout = 0.05f, .targets = (1u << LORA_TARGETS) - 1};
        lora_attach(&m, &spec);
        m.lora.dropout_active = 1;
        lora_init_weights(&m, "kaiming", 1, &err);
    }
    const int bf16 = strcmp(grad_dtype, "bf16") == 0;
    if ((!bf16 && strcmp(grad_dtype, "fp32") != 0) || model_set_grad_dtype(&m, bf16, 0, &err) != 0) {
        fprintf(stderr, "llava bench: --grad-dtype %s: %s\n", grad_dtype, err.msg[0] ? err.msg : "give fp32 or bf16");
        model_free(&m);
        return EXIT_BAD_INPUT;
    }
    int status = EXIT_OK;
    for (int si = 0; si < n_stages && status == EXIT_OK; si++)
        status = bench_stage(&m, stage_list[si], batch, text, steps, warmup, recompute, peak_tflops, &err);
    if (status != EXIT_OK) fprintf(stderr, "llava bench: %s\n", err.msg);
    model_free(&m);
    return status;
}
