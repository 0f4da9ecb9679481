#include "train/plan.h"
#include "train/zero_device.h"

#include <string.h>

#include "model/params.h"

#define GIB (1024.0 * 1024.0 * 1024.0)

// Buffers of the arena start on 256-byte boundaries.
static double buf(double bytes) { return (double)(((size_t)bytes + 255) & ~(size_t)255); }

double plan_activation_bytes(const LlavaConfig *cfg, int Mi, int Ni, int recompute, int lora_r, unsigned lora_targets,
                             int act_bytes) {
    const TextConfig *t = &cfg->text;
    const VisionConfig *v = &cfg->vision;
    const double A = act_bytes, F = 4, I32 = 4, M = Mi, N = Ni;
    const double C = t->hidden, QKV = (double)(t->heads + 2 * t->kv_heads) * t->head_dim;
    const double ATT = (double)t->heads * t->head_dim, I = t->intermediate, V = t->vocab;
    const double NP = cfg->patches, NT = cfg->vision_tokens, NV = N * NT, NF = N * cfg->image_tokens, Dv = v->hidden;
    const double S = v->image_size, PP = 3.0 * v->patch_size * v->patch_size;
    int adapters = 0;
    for (unsigned k = lora_r > 0 ? lora_targets : 0; k; k &= k - 1) adapters++;
    // batch copies: ids, targets, positions, segments, splice rows
    double b = 4 * buf(M * I32) + 2 * buf((NF > 0 ? NF : 1) * I32);
    // the residual stream at every layer boundary
    b += (t->layers + 1) * buf(M * C * A);
    // What a layer keeps for backward. The normed matmul inputs and the SwiGLU
    // output exist once (every layer writes them into layer 0's, backward
    // recomputes them); selective recompute keeps only the matmul outputs and
    // lse per layer; full recompute one layer of everything.
    const double kept = buf(M * QKV * A) + buf(M * ATT * A) + buf(M * t->heads * F) + buf(M * C * A) +
                        buf(M * 2 * I * A) + adapters * buf(M * lora_r * A);
    const double shared = 2 * buf(M * C * A) + buf(M * I * A);
    const double rstds = 2 * buf(M * F);
    if (recompute == PLAN_RECOMPUTE_FULL)
        b += shared + rstds + kept;
    else if (recompute == PLAN_RECOMPUTE_SELECTIVE)
        b += shared + rstds + t->layers * kept;
    else
        b += shared + t->layers * (rstds + kept);
    if (lora_r > 0) {  // the adapters' scratch: three of the widest input/output, one r wide
        double wide = C > ATT ? C : ATT;
        wide = wide > I ? wide : I;
        b += 3 * buf(M * wide * A) + buf(M * lora_r * A);
    }
    // final norm, logits, the labeled rows' index, targets and inputs, losses
    b += buf(M * C * A) + buf(M * F) + buf(M * V * A) + 2 * buf(M * I32) + buf(M * C * A) + buf(M * F);
    // backward scratch of one layer (dqkv shares with dgateup, datt with dmlp)
    b += 2 * buf(M * C * A) + buf(M * (QKV > 2 * I ? QKV : 2 * I) * A) + buf(M * (ATT > I ? ATT : I) * A);
    if (N > 0) {  // vision tower (forward only, one layer of scratch) and projector
        b += buf(N * 3 * S * S * A) + buf(N * NP * PP * A) + buf(N * NP * Dv * A);
        b += 4 * buf(NV * Dv * A) + buf(NV * 3 * Dv * A) + buf(NV * v->intermediate * A) + 2 * buf(NV * F) +
             buf(NV * v->heads * F);
        b += buf(NF * Dv * A) + 5 * buf(NF * C * A);
    }
    return b;
}

static void count_params(Plan *p, const LlavaConfig *cfg) {
    ParamTable t;
    params_build(&t, cfg);
    p->vision = t.module_numel[MODULE_VISION];
    p->projector = t.module_numel[MODULE_PROJECTOR];
    p->llm = t.module_numel[MODULE_LLM];
    p->layers = cfg->text.layers;
    p->llm_layer = cfg->text.layers > 1 ? params_offset(&t, "llm.layers.1.input_layernorm.weight") -
                                              params_offset(&t, "llm.layers.0.input_layernorm.weight")
                                        : params_offset(&t, "llm.norm.weight") -
                                              params_offset(&t, "llm.layers.0.input_layernorm.weight");
    p->vision_layers = cfg->vision.layers;
    p->vision_layer = cfg->vision.layers > 0
                          ? params_offset(&t, "vision.post_layernorm.weight") -
                                params_offset(&t, "vision.encoder.layers.0.layer_norm1.weight")
                          : 0;
    if (cfg->vision.layers > 0) p->vision_layer /= (size_t)cfg->vision.layers;
    params_free(&t);
}

// Bytes per trainable element for its gradient (zero_stage 0/1): fp32, or bf16
// plus the fp32 accumulator when several micro-batches make a step.
static double plan_grad_element_bytes(const PlanInput *in) {
    if (in->grad_bytes != 2) return 4;
    return in->grad_accum > 1 ? 2 + 4 : 2;
}

static void compute_row(const Plan *p, const LlavaConfig *cfg, const PlanInput *in, int zs, PlanRow *r) {
    const double N = in->world > 0 ? in->world : 1, A = in->act_bytes;
    const int gpu = in->act_bytes < 4;
    const double layers_all = (double)p->llm_layer * p->layers, llm_rest = (double)p->llm - layers_all;
    const int llm_trains = in->stage >= 2 && in->lora_params <= 0;
    const double lora = in->stage >= 2 ? in->lora_params : 0;
    const double trainable = (double)p->projector + (llm_trains ? (double)p->llm : 0) + lora;
    memset(r, 0, sizeof *r);
    // weights
    double llm_w = (double)p->llm;
    if (zs == 3 && N > 1 && (llm_trains || in->shard_frozen)) {
        // the layer in use and the prefetched one; a GPU also holds up to
        // ZERO_BUCKETS_IN_FLIGHT used layers until the compute stream is past them
        double in_flight = gpu ? ZERO_BUCKETS_IN_FLIGHT + 2 : 2;
        llm_w = llm_rest + layers_all / N + in_flight * (double)p->llm_layer;
    }
    double vision_w = (double)p->vision;
    if (zs == 3 && N > 1 && in->shard_frozen) {
        double layers = (double)p->vision_layer * p->vision_layers;
        vision_w = (double)p->vision - layers + layers / N + 2 * (double)p->vision_layer;
    }
    r->weights = (vision_w + (double)p->projector + llm_w + lora) * A;
    // gradients
    if (zs >= 2 && N > 1) {
        // LoRA's adapters are one bucket, reduced after backward: whole until
        // then. The CPU holds one layer's bucket at a time; a GPU up to
        // ZERO_BUCKETS_IN_FLIGHT + 1 (the one in backward and those whose
        // reduce-scatter is still running, train/zero_device.h), plus the
        // rounding of each mapped range to 2 MiB chunks (not counted here).
        double buckets = gpu ? ZERO_BUCKETS_IN_FLIGHT + 1 : 1;
        double resident = (double)p->projector + lora + (llm_trains ? llm_rest + buckets * (double)p->llm_layer : 0);
        r->grads = (trainable / N + resident) * 4;
    } else {
        r->grads = trainable * plan_grad_element_bytes(in);
    }
    // optimizer: m, v (+ fp32 masters when weights are low precision)
    double per = 8 + (A < 4 ? 4 : 0);
    r->optimizer = trainable * per / (zs >= 1 ? N : 1);
    int M = in->micro_batch * in->max_length, imgs = in->micro_batch;
    r->acts_recompute = plan_activation_bytes(cfg, M, imgs, PLAN_RECOMPUTE_FULL, in->lora_r, in->lora_targets, in->act_bytes);
    r->acts_no_recompute = plan_activation_bytes(cfg, M, imgs, PLAN_RECOMPUTE_OFF, in->lora_r, in->lora_targets, in->act_bytes);
    r->acts = in->recompute == PLAN_RECOMPUTE_FULL ? r->acts_recompute
              : in->recompute == PLAN_RECOMPUTE_OFF
                  ? r->acts_no_recompute
                  : plan_activation_bytes(cfg, M, imgs, in->recompute, in->lora_r, in->lora_targets, in->act_bytes);
    r->workspace = gpu ? 1.0 * GIB : 0;
    if (gpu) {
        r->comm = N > 1 ? 0.5 * GIB : 0;
    } else if (N > 1) {
        // MPI_Reduce's root takes a temporary buffer of the message: the
        // largest module's gradients (rank 0, up to dist.c's 2^28-element
        // chunks), or with ZeRO-2/3 the largest bucket (one layer, or the
        // embedding/head), whichever owner it lands on.
        double chunk = (double)((size_t)1 << 28), biggest;
        if (zs >= 2) {
            biggest = (double)p->projector;
            if (llm_trains && (double)p->llm_layer > biggest) biggest = (double)p->llm_layer;
            if (llm_trains && llm_rest > biggest) biggest = llm_rest;  // embedding + head (the worst case: one owner)
        } else {
            biggest = llm_trains && (double)p->llm > (double)p->projector ? (double)p->llm : (double)p->projector;
        }
        r->comm = (biggest < chunk ? biggest : chunk) * 4;
    }
    r->total = r->weights + r->grads + r->optimizer + r->acts + r->workspace + r->comm;
    r->fits = in->capacity > 0 ? r->total <= in->capacity : -1;
}

void plan_compute(Plan *p, const LlavaConfig *cfg, const PlanInput *in) {
    memset(p, 0, sizeof *p);
    count_params(p, cfg);
    for (int zs = 0; zs < 4; zs++) compute_row(p, cfg, in, zs, &p->row[zs]);
}

void plan_format_bytes(double b, char *out, size_t cap) {
    if (b >= GIB)
        snprintf(out, cap, "%.2f GiB", b / GIB);
    else if (b >= 1024.0 * 1024.0)
        snprintf(out, cap, "%.1f MiB", b / (1024.0 * 1024.0));
    else
        snprintf(out, cap, "%.1f KiB", b / 1024.0);
}

void plan_print(const Plan *p, const PlanInput *in, int mark, FILE *out) {
    char cap[32] = "unknown";
    if (in->capacity > 0) plan_format_bytes(in->capacity, cap, sizeof cap);
    const char *grads = in->grad_bytes != 2                   ? ""
                        : plan_grad_element_bytes(in) > 2 ? ", bf16 gradients + fp32 accumulator"
                                                          : ", bf16 gradients";
    fprintf(out, "memory per process: %d process(es), stage %d, micro_batch %d x max_length %d, %s%s, capacity %s\n",
            in->world, in->stage, in->micro_batch, in->max_length, in->act_bytes < 4 ? "bf16 weights" : "fp32", grads,
            cap);
    fprintf(out, "  %-6s %11s %11s %11s %13s %13s %10s %10s %11s  %s\n", "zero", "weights", "gradients", "optim",
            "acts(recomp)", "acts(none)", "workspace", "comm", "total", "fits");
    for (int zs = 0; zs < 4; zs++) {
        const PlanRow *r = &p->row[zs];
        double v[9] = {r->weights, r->grads, r->optimizer, r->acts_recompute, r->acts_no_recompute, r->workspace,
                       r->comm, r->total};
        char s[9][32];
        for (int i = 0; i < 8; i++) plan_format_bytes(v[i], s[i], sizeof s[i]);
        fprintf(out, "%s %-6d %11s %11s %11s %13s %13s %10s %10s %11s  %s\n", zs == mark ? "*" : " ", zs, s[0], s[1],
                s[2], s[3], s[4], s[5], s[6], s[7], r->fits < 0 ? "?" : r->fits ? "yes" : "NO");
    }
    static const char *modes[] = {"without", "with full", "with selective"};
    fprintf(out, "  (total counts activations %s recompute; * = this run)\n", modes[in->recompute % 3]);
    if (in->grad_bytes == 2)
        fprintf(out, "  (zero 2 and 3: fp32 gradients; grad_dtype bf16 runs with zero_stage 0 or 1)\n");
}

void plan_print_json(const Plan *p, const PlanInput *in, FILE *out) {
    fprintf(out, "{\"world\": %d, \"stage\": %d, \"micro_batch\": %d, \"max_length\": %d, \"capacity\": %.0f, "
            "\"grad_dtype\": \"%s\", \"params\": {\"vision\": %zu, \"projector\": %zu, \"llm\": %zu}, \"zero\": [",
            in->world, in->stage, in->micro_batch, in->max_length, in->capacity, in->grad_bytes == 2 ? "bf16" : "fp32",
            p->vision, p->projector, p->llm);
    for (int zs = 0; zs < 4; zs++) {
        const PlanRow *r = &p->row[zs];
        fprintf(out, "%s{\"zero_stage\": %d, \"weights\": %.0f, \"gradients\": %.0f, \"optimizer\": %.0f, "
                "\"activations\": %.0f, \"activations_recompute\": %.0f, \"activations_no_recompute\": %.0f, "
                "\"workspace\": %.0f, \"comm\": %.0f, \"total\": %.0f, \"fits\": %s}",
                zs ? ", " : "", zs, r->weights, r->grads, r->optimizer, r->acts, r->acts_recompute,
                r->acts_no_recompute, r->workspace, r->comm, r->total,
                r->fits < 0 ? "null" : r->fits ? "true" : "false");
    }
    fprintf(out, "]}\n");
}

void plan_suggest(const LlavaConfig *cfg, const PlanInput *in, int zs, char *out, size_t cap) {
    out[0] = '\0';
    Plan p;
    plan_compute(&p, cfg, in);
    // bf16 gradients are refused with ZeRO-2/3: never suggest those.
    for (int z = zs + 1; z < (in->grad_bytes == 2 ? 2 : 4) && in->world > 1; z++)
        if (p.row[z].fits == 1) {
            snprintf(out, cap, "--set zero_stage=%d", z);
            return;
        }
    PlanInput t = *in;
    if (in->recompute != PLAN_RECOMPUTE_FULL) {
        t.recompute = PLAN_RECOMPUTE_FULL;
        plan_compute(&p, cfg, &t);
        if (p.row[zs].fits == 1) {
            snprintf(out, cap, "--set recompute=true");
            return;
        }
    }
    for (int mb = in->micro_batch / 2; mb >= 1; mb /= 2) {
        t.micro_batch = mb;
        t.grad_accum = (in->grad_accum > 0 ? in->grad_accum : 1) * (in->micro_batch / mb);  // bf16: the accumulator
        plan_compute(&p, cfg, &t);
        if (p.row[zs].fits == 1) {
            snprintf(out, cap, "--set micro_batch=%d (and grad_accum x%d for the same global batch)%s", mb,
                     in->micro_batch / mb, t.recompute != in->recompute ? " --set recompute=true" : "");
            return;
        }
    }
}
