// The memory plan `llava bench` reports (model_activation_bytes,
// model_training_state_bytes) against what the model really allocates: the
// arena of a reserved shape has exactly the planned size, for each recompute
// mode; full recompute < selective < none; the plan grows with rows; the
// training state counts weights, fp32 gradients and AdamW's m and v. With
// LoRA adapters attached the plan counts their buffers too: the arena still
// matches it, and it grows by exactly the adapters' u per kept layer and
// target ([M, r]) and their four scratch buffers, in every recompute mode.
#include <stdio.h>

#include "tests/testlib.h"
#include "model/checkpoint.h"
#include "model/lora.h"
#include "model/model.h"

int main(int argc, char **argv) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/tiny_llava15", argc > 1 ? argv[1] : ".");
    LlavaModel m;
    Error err = {{0}};
    if (checkpoint_load_llava(&m, dir, ops_cpu(), &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    model_set_stage(&m, 2);
    size_t bytes[3];
    for (int mode = RECOMPUTE_OFF; mode <= RECOMPUTE_SELECTIVE; mode++) {
        model_set_recompute(&m, mode);
        bytes[mode] = model_activation_bytes(&m, 3 * 50, 3);
        model_reserve(&m, 3 * 50, 3);
        EXPECT(m.acts.arena_bytes == bytes[mode], "recompute %d: arena %zu bytes, plan %zu", mode,
               m.acts.arena_bytes, bytes[mode]);
        EXPECT(model_activation_bytes(&m, 3 * 50, 3) < model_activation_bytes(&m, 4 * 50, 4), "grows with rows");
    }
    EXPECT(bytes[RECOMPUTE_FULL] < bytes[RECOMPUTE_SELECTIVE] && bytes[RECOMPUTE_SELECTIVE] < bytes[RECOMPUTE_OFF],
           "full %zu < selective %zu < none %zu", bytes[1], bytes[2], bytes[0]);
    size_t all = model_num_params(&m, 0), trainable = model_num_params(&m, 1);
    EXPECT(model_training_state_bytes(&m) == all * 4 + trainable * 12, "fp32: weights + grads + m + v");

    // LoRA on every target, r 4: what the adapters add, computed here from the
    // shapes (each carved buffer rounds up to 256 bytes, as model/model.c does).
    const int M = 3 * 50, r = 4, layers = m.cfg.text.layers;
    const TextConfig *t = &m.cfg.text;
    size_t wide = (size_t)t->hidden, att = (size_t)t->heads * t->head_dim;
    wide = wide > att ? wide : att;
    wide = wide > (size_t)t->intermediate ? wide : (size_t)t->intermediate;
#define ROUND256(x) (((x) + 255) & ~(size_t)255)
    size_t u = ROUND256((size_t)M * r * 4), scratch = 3 * ROUND256((size_t)M * wide * 4) + u;
    LoraSpec spec = {.r = r, .alpha = 8, .dropout = 0.1f, .targets = (1u << LORA_TARGETS) - 1};
    lora_attach(&m, &spec);
    model_set_stage(&m, 2);
    for (int mode = RECOMPUTE_OFF; mode <= RECOMPUTE_SELECTIVE; mode++) {
        model_set_recompute(&m, mode);
        size_t plan = model_activation_bytes(&m, M, 3), kept = mode == RECOMPUTE_FULL ? 1 : (size_t)layers;
        model_reserve(&m, M, 3);
        EXPECT(m.acts.arena_bytes == plan, "LoRA, recompute %d: arena %zu bytes, plan %zu", mode, m.acts.arena_bytes,
               plan);
        EXPECT(plan == bytes[mode] + kept * LORA_TARGETS * u + scratch,
               "LoRA, recompute %d: plan %zu = %zu without + %zu for the adapters", mode, plan, bytes[mode],
               kept * LORA_TARGETS * u + scratch);
    }
    all = model_num_params(&m, 0), trainable = model_num_params(&m, 1);
    EXPECT(trainable == m.params.module_numel[MODULE_PROJECTOR] + m.params.module_numel[MODULE_LORA],
           "LoRA: the projector and the adapters train");
    EXPECT(model_training_state_bytes(&m) == all * 4 + trainable * 12, "LoRA, fp32: weights + grads + m + v");
    model_free(&m);
    return test_summary("test_memory_plan");
}
