// The memory plan `llava bench` reports (model_activation_bytes,
// model_training_state_bytes) against what the model really allocates: the
// arena of a reserved shape has exactly the planned size, for each recompute
// mode; full recompute < selective < none; the plan grows with rows; the
// training state counts weights, fp32 gradients and AdamW's m and v.
#include <stdio.h>

#include "tests/testlib.h"
#include "train/checkpoint.h"
#include "train/model.h"

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
    model_free(&m);
    return test_summary("test_memory_plan");
}
