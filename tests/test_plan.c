// The memory planner's activation estimate (train/plan.c, written from the
// shapes alone) against what a real forward + backward on the CPU makes
// resident: the high-water mark of the resident set during one micro-batch,
// minus the resident set before it, within 10% for several shapes (text
// only and with images; recompute full, selective and off; LoRA adapters),
// and to the byte what the model's own arena sizing says. Also: the plan's parameter
// counts are the model's, and the per-process total falls with zero_stage
// and with the process count.
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "tests/testlib.h"
#include "model/checkpoint.h"
#include "model/lora.h"
#include "train/memstat.h"
#include "train/plan.h"

typedef struct {
    int B, T, images, recompute, lora_r;  // recompute: PLAN_RECOMPUTE_*
} Shape;

// Measured resident growth of one forward + backward of shape s, in bytes.
static double measure(const char *dir, const Shape *s, double *planned) {
    LlavaModel m;
    Error err = {{0}};
    if (checkpoint_load_llava(&m, dir, ops_cpu(), &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    LoraSpec spec = {.r = s->lora_r, .alpha = 16, .dropout = 0, .targets = (1u << LORA_TARGETS) - 1};
    if (s->lora_r) lora_attach(&m, &spec);
    model_set_stage(&m, 2);
    model_set_recompute(&m, s->recompute);
    const LlavaConfig *c = &m.cfg;
    const int M = s->B * s->T, S = c->vision.image_size, IT = c->image_tokens;
    int32_t *ids = malloc((size_t)M * sizeof(int32_t)), *labels = malloc((size_t)M * sizeof(int32_t));
    float *pixels = calloc((size_t)(s->images ? s->images : 1) * 3 * S * S, sizeof(float));
    unsigned x = 7;
    for (int b = 0; b < s->B; b++)
        for (int t = 0; t < s->T; t++) {
            int k = b * s->T + t, image = b < s->images && t >= 1 && t < 1 + IT;
            x = x * 1103515245u + 12345u;
            ids[k] = image ? c->image_token_index : 3 + (int)(x >> 8) % (c->image_token_index - 3);
            labels[k] = image || t == 0 ? LABEL_IGNORE : ids[k];
        }
    for (size_t i = 0; i < (size_t)s->images * 3 * S * S; i++) pixels[i] = (float)((i * 37) % 101) / 101.0f - 0.5f;
    LlavaBatch batch = {.B = s->B, .T = s->T, .input_ids = ids, .labels = labels, .n_images = s->images,
                        .pixels = pixels};
    double before = memstat_rss_bytes();
    EXPECT(memstat_reset_peak() == 0, "clear_refs");
    EXPECT(model_forward(&m, &batch, &err) == 0, "forward: %s", err.msg);
    model_backward(&m, 1.0f / (float)M);
    double grown = memstat_peak_bytes() - before;
    *planned = plan_activation_bytes(c, M, s->images, s->recompute, s->lora_r, spec.targets, 4);
    // the model's own sizing of its arena (written separately) agrees to the byte
    EXPECT((double)model_activation_bytes(&m, M, s->images) == *planned, "planned %.0f, the model sizes %zu",
           *planned, model_activation_bytes(&m, M, s->images));
    model_free(&m);
    free(ids);
    free(labels);
    free(pixels);
    return grown;
}

int main(int argc, char **argv) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/tiny_llava15", argc > 1 ? argv[1] : ".");
    // Every large block straight from mmap and back to the kernel on free, so
    // one shape's arena is never reused by the next and the growth is its own.
    EXPECT(mallopt(M_MMAP_THRESHOLD, 64 * 1024) == 1, "mallopt");
    EXPECT(mallopt(M_TRIM_THRESHOLD, 64 * 1024) == 1, "mallopt");
    // One thread: each thread's own scratch would count as growth too.
    backend_set_threads(1);
    // The first run also warms up BLAS's own buffers: not measured.
    double planned;
    Shape warm = {2, 64, 1, 1, 0};
    measure(dir, &warm, &planned);
    const Shape shapes[] = {{8, 256, 8, 1, 0}, {8, 256, 8, 0, 0}, {4, 256, 0, 1, 0}, {16, 128, 4, 0, 0},
                            {12, 200, 6, 2, 0}, {8, 256, 8, 2, 8}, {8, 200, 4, 0, 8}};
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        const Shape *s = &shapes[i];
        double grown = measure(dir, s, &planned);
        double rel = fabs(grown - planned) / planned;
        printf("B %2d x T %3d, %2d images, recompute %d, LoRA r %d: planned %.2f MiB, measured %.2f MiB (%+.1f%%)\n", s->B, s->T,
               s->images, s->recompute, s->lora_r, planned / 1048576, grown / 1048576, 100 * (grown - planned) / planned);
        EXPECT(rel <= 0.10, "shape %zu: planned %.0f, measured %.0f bytes", i, planned, grown);
    }

    // The modern fixtures (SigLIP without CLS + Qwen2 with biases, CLIP + Llama-3):
    // the plan equals the model's own arena sizing and parameter count.
    const char *modern[] = {"tiny_siglip_qwen2", "tiny_clip_llama3"};
    for (int k = 0; k < 2; k++) {
        char mdir[4200];
        snprintf(mdir, sizeof mdir, "%s/tests/fixtures/%s", argc > 1 ? argv[1] : ".", modern[k]);
        LlavaModel mm;
        Error e = {{0}};
        if (checkpoint_load_llava(&mm, mdir, ops_cpu(), &e) != 0) {
            EXPECT(0, "%s: %s", modern[k], e.msg);
            continue;
        }
        model_set_stage(&mm, 2);
        for (int mode = PLAN_RECOMPUTE_OFF; mode <= PLAN_RECOMPUTE_SELECTIVE; mode++) {
            model_set_recompute(&mm, mode);
            double want = (double)model_activation_bytes(&mm, 3 * 100, 3);
            double got = plan_activation_bytes(&mm.cfg, 3 * 100, 3, mode, 0, 0, 4);
            EXPECT(got == want, "%s, recompute %d: planned %.0f, the model sizes %.0f", modern[k], mode, got, want);
        }
        PlanInput mi = {.world = 1, .stage = 2, .micro_batch = 1, .max_length = 64, .act_bytes = 4};
        Plan mp;
        plan_compute(&mp, &mm.cfg, &mi);
        EXPECT(mp.vision + mp.projector + mp.llm == model_num_params(&mm, 0), "%s: parameter count", modern[k]);
        model_free(&mm);
    }

    // Parameter counts and the order of the totals.
    LlavaModel m;
    Error err = {{0}};
    EXPECT(checkpoint_load_llava(&m, dir, ops_cpu(), &err) == 0, "%s", err.msg);
    PlanInput in = {.world = 2, .stage = 2, .micro_batch = 4, .max_length = 128, .recompute = PLAN_RECOMPUTE_FULL,
                    .act_bytes = 4};
    Plan p, p3;
    plan_compute(&p, &m.cfg, &in);
    EXPECT(p.vision + p.projector + p.llm == model_num_params(&m, 0), "parameter count");
    for (int z = 1; z < 3; z++)
        EXPECT(p.row[z].total < p.row[z - 1].total, "zero_stage %d total below %d", z, z - 1);
    // (zero_stage 3 vs 2 is no test here: with 2 layers, the two in flight are all of them)
    in.world = 3;
    plan_compute(&p3, &m.cfg, &in);
    EXPECT(p3.row[3].total < p.row[3].total, "3 processes below 2 with ZeRO-3");
    EXPECT(p3.row[0].total == p.row[0].total, "zero_stage 0 does not depend on the process count");

    // Gradients by dtype, against counts worked out by hand from the fixture's
    // config.json (C 64, FF 128, 2 layers, V 160, vision width 32, mlp2x_gelu):
    // projector 32*64+64 + 64*64+64 = 6272; LLM 160*64 (embed) + 2 * (4*64*64
    // + 3*64*128 + 2*64) + 64 + 160*64 (head) = 102720; stage 2 trains both.
    const double trainable = 6272 + 102720;
    EXPECT(p.projector == 6272 && p.llm == 102720, "projector %zu, LLM %zu parameters", p.projector, p.llm);
    PlanInput g = in;
    g.act_bytes = 2;
    for (int accum = 1; accum <= 4; accum += 3)
        for (int bytes = 2; bytes <= 4; bytes += 2) {
            g.grad_bytes = bytes;
            g.grad_accum = accum;
            Plan pg;
            plan_compute(&pg, &m.cfg, &g);
            // fp32: 4 bytes; bf16: 2, plus the fp32 accumulator (4) when grad_accum > 1
            double want = trainable * (bytes == 4 ? 4 : accum > 1 ? 6 : 2);
            for (int z = 0; z < 2; z++)
                EXPECT(pg.row[z].grads == want,
                       "grad_bytes %d, grad_accum %d, zero_stage %d: gradients %.0f, want %.0f", bytes, accum, z,
                       pg.row[z].grads, want);
            if (bytes == 2 && accum == 1) {
                Plan pf;
                PlanInput f = g;
                f.grad_bytes = 4;
                plan_compute(&pf, &m.cfg, &f);
                EXPECT(pf.row[0].total - pg.row[0].total == trainable * 2, "bf16 gradients save 2 bytes a parameter");
            }
        }
    model_free(&m);
    return test_summary("test_plan");
}
