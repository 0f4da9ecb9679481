#include "model/flops.h"

double flops_micro_batch(const LlavaConfig *c, int llm_trains, size_t adapter_params, const LlavaBatch *b) {
    const TextConfig *x = &c->text;
    double C = x->hidden, HS = x->head_dim, I = x->intermediate, L = x->layers;
    double layer = C * (x->heads + 2.0 * x->kv_heads) * HS + x->heads * HS * C + 3.0 * C * I;
    double tokens = 0, pairs = 0, labeled = model_count_targets(b);
    for (int r = 0; r < b->B; r++) {
        const int32_t *seg = b->seg ? b->seg + (size_t)r * b->T : NULL;
        double run = 0;  // length of the current document
        int32_t doc = -1;
        for (int t = 0; t < b->T; t++) {
            if (seg && seg[t] == 0) continue;  // padding
            int32_t s = seg ? seg[t] : 1;
            if (s != doc && run > 0) {
                pairs += run * (run + 1) / 2;
                run = 0;
            }
            doc = s;
            run++;
            tokens++;
        }
        pairs += run * (run + 1) / 2;
    }
    double mult = llm_trains ? 3.0 : 2.0;
    double llm = 2.0 * L * layer * tokens * mult + 3.0 * 4.0 * L * x->heads * HS * pairs +
                 2.0 * (double)x->vocab * C * labeled * mult + 6.0 * (double)adapter_params * tokens;
    const VisionConfig *v = &c->vision;
    double D = v->hidden, NT = c->vision_tokens;  // rows per image in the tower (CLIP: + CLS)
    double vis_layer = 4.0 * D * D + 2.0 * D * v->intermediate;
    double vis = 2.0 * NT * (c->vision_layers_run * vis_layer + 3.0 * v->patch_size * v->patch_size * D) +
                 4.0 * c->vision_layers_run * NT * NT * D;
    double proj = c->projector == PROJECTOR_MLP2X_GELU ? 2.0 * c->image_tokens * (2.0 * D * C + 3.0 * C * C)
                                                       : 2.0 * c->image_tokens * 2.0 * D * C;
    return llm + (double)b->n_images * (vis + proj);
}
