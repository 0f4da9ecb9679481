// Generation against transformers and against our own full forward:
//  1. greedy gen_generate reproduces exactly the tokens transformers'
//     generate produced (tests/fixtures/generation, make_generation_reference.py),
//     single prompts with and without an image, a batch of different lengths,
//     and a batch where one sequence stops on its eos;
//  2. teacher-forced on those tokens, every step's logits match transformers'
//     (rel. error < 1e-4 per row);
//  3. the KV-cache path (prefill + one-token steps, and multi-token chunks)
//     gives the logits of a full forward over the whole sequence at every step;
//  4. continuous batching (gen_join / gen_leave, as llava serve runs it):
//     sequences that join late and leave early, their slots moving down as
//     others leave, still produce transformers' tokens.
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/safetensors.h"
#include "eval/generate.h"
#include "tests/testlib.h"
#include "model/checkpoint.h"

typedef struct {
    char name[128], model[64];
    int B, max_new, eos;
    int32_t *ids[3];
    int n[3], n_images[3];
    int32_t *want[3];
    int n_want[3];
} Case;

static int32_t *int_array(const cJSON *a, int *n) {
    *n = cJSON_GetArraySize(a);
    int32_t *v = malloc((size_t)(*n ? *n : 1) * sizeof(int32_t));
    for (int i = 0; i < *n; i++) v[i] = (int32_t)cJSON_GetArrayItem(a, i)->valueint;
    return v;
}

static int read_cases(const char *path, Case **out) {
    Error err = {{0}};
    cJSON *root = json_parse_file(path, &err);
    if (!root) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    const cJSON *cs = cJSON_GetObjectItem(root, "cases");
    int n = cJSON_GetArraySize(cs);
    Case *c = calloc((size_t)n, sizeof(Case));
    for (int i = 0; i < n; i++) {
        const cJSON *j = cJSON_GetArrayItem(cs, i);
        snprintf(c[i].name, sizeof c[i].name, "%s", cJSON_GetObjectItem(j, "name")->valuestring);
        snprintf(c[i].model, sizeof c[i].model, "%s", cJSON_GetObjectItem(j, "model")->valuestring);
        c[i].max_new = cJSON_GetObjectItem(j, "max_new_tokens")->valueint;
        c[i].eos = cJSON_GetObjectItem(j, "eos_id")->valueint;
        const cJSON *p = cJSON_GetObjectItem(j, "prompts"), *o = cJSON_GetObjectItem(j, "outputs");
        const cJSON *ic = cJSON_GetObjectItem(j, "image_counts");
        c[i].B = cJSON_GetArraySize(p);
        for (int b = 0; b < c[i].B; b++) {
            c[i].ids[b] = int_array(cJSON_GetArrayItem(p, b), &c[i].n[b]);
            c[i].want[b] = int_array(cJSON_GetArrayItem(o, b), &c[i].n_want[b]);
            c[i].n_images[b] = cJSON_GetArrayItem(ic, b)->valueint;
        }
    }
    cJSON_Delete(root);
    *out = c;
    return n;
}

static float *read_f32(const StFile *f, const char *name, int64_t *numel) {
    const StTensor *t = st_find(f, name);
    if (!t) return NULL;
    float *x = malloc((size_t)t->numel * sizeof(float));
    Error err = {{0}};
    if (st_read_f32(f, t, x, &err) != 0) FATAL("%s", err.msg);
    if (numel) *numel = t->numel;
    return x;
}

// Prompts of a case, pointing into its pixel buffer.
static void case_prompts(const Case *c, const float *pixels, int img_floats, GenPrompt *p) {
    int k = 0;
    for (int b = 0; b < c->B; b++) {
        p[b] = (GenPrompt){.ids = c->ids[b], .n = c->n[b], .n_images = c->n_images[b],
                           .pixels = c->n_images[b] ? pixels + (size_t)k * img_floats : NULL};
        k += c->n_images[b];
    }
}

// 1 + 2: transformers parity.
static void check_against_transformers(LlavaModel *m, const Case *c, const StFile *golden) {
    char key[192];
    snprintf(key, sizeof key, "%s.pixel_values", c->name);
    float *pixels = read_f32(golden, key, NULL);
    snprintf(key, sizeof key, "%s.logits", c->name);
    int64_t nl = 0;
    float *hf_logits = read_f32(golden, key, &nl);  // [steps, B, V]
    const int V = m->cfg.text.vocab, S = m->cfg.vision.image_size;
    GenPrompt p[3];
    case_prompts(c, pixels, 3 * S * S, p);
    int T_max = 0;
    for (int b = 0; b < c->B; b++) T_max = c->n[b] > T_max ? c->n[b] : T_max;
    Generator g;
    Error err = {{0}};
    EXPECT(gen_init(&g, m, 3, T_max + c->max_new, &err) == 0, "%s: gen_init: %s", c->name, err.msg);
    GenOptions opt = {.sample = {.temperature = 0.0f, .top_p = 1.0f}, .max_new_tokens = c->max_new,
                      .eos_id = c->eos, .seed = 1};
    GenOutput out[3];
    EXPECT(gen_generate(&g, p, c->B, &opt, out, &err) == 0, "%s: %s", c->name, err.msg);
    for (int b = 0; b < c->B; b++) {
        int first_diff = 0;
        while (first_diff < out[b].n && first_diff < c->n_want[b] && out[b].ids[first_diff] == c->want[b][first_diff])
            first_diff++;
        EXPECT(out[b].n == c->n_want[b] && first_diff == out[b].n,
               "%s row %d: %d tokens generated, transformers gave %d; first difference at %d", c->name, b, out[b].n,
               c->n_want[b], first_diff);
        GenStop want_stop = c->want[b][c->n_want[b] - 1] == c->eos ? GEN_STOP_EOS : GEN_STOP_LENGTH;
        EXPECT(out[b].stop == want_stop, "%s row %d: stop reason %s", c->name, b, gen_stop_name(out[b].stop));
        // The cache holds exactly prompt + fed tokens (the last one is never fed).
        EXPECT(g.lens[b] == c->n[b] + out[b].n - 1, "%s row %d: cache length %d, expected %d", c->name, b,
               g.lens[b], c->n[b] + out[b].n - 1);
        gen_output_free(&out[b]);
    }
    // Teacher forcing on transformers' tokens: logits at every step.
    const int steps = (int)(nl / ((int64_t)c->B * V));
    float *logits = malloc((size_t)c->B * V * sizeof(float));
    int32_t *feed = malloc((size_t)c->B * sizeof(int32_t));
    EXPECT(gen_prefill(&g, p, c->B, logits, &err) == 0, "%s: %s", c->name, err.msg);
    double worst = 0.0;
    for (int s = 0; s < steps; s++) {
        for (int b = 0; b < c->B; b++) {
            if (s >= c->n_want[b]) continue;  // transformers pads finished rows
            double e = rel_error(logits + (size_t)b * V, hf_logits + ((size_t)s * c->B + b) * V, (size_t)V);
            worst = e > worst ? e : worst;
        }
        if (s + 1 == steps) break;
        for (int b = 0; b < c->B; b++) feed[b] = s < c->n_want[b] ? c->want[b][s] : 0;
        if (gen_step(&g, feed, 1, logits, &err) != 0) {
            EXPECT(0, "%s step %d: %s", c->name, s, err.msg);
            break;
        }
    }
    EXPECT(worst < 1e-4, "%s: logits differ from transformers' by %.3g (rel.)", c->name, worst);
    printf("%s: tokens match, logits rel. error %.2e over %d steps\n", c->name, worst, steps);
    gen_free(&g);
    free(logits);
    free(feed);
    free(pixels);
    free(hf_logits);
}

// Logits [n, V] of a full forward over one sequence.
static void full_forward(LlavaModel *m, const int32_t *ids, int n, int n_images, const float *pixels, float *logits) {
    LlavaBatch b = {.B = 1, .T = n, .input_ids = ids, .n_images = n_images, .pixels = pixels};
    Error err = {{0}};
    if (model_forward(m, &b, &err) != 0) FATAL("full forward: %s", err.msg);
    m->ops->download_act(logits, model_logits(m), (size_t)n * m->cfg.text.vocab);
}

// 3: prefill + steps against full forwards of each whole sequence, teacher-
// forced on the case's tokens. chunk > 1 also appends several tokens per step.
static void check_cache_vs_full(LlavaModel *m, const Case *c, const StFile *golden, int chunk) {
    char key[192];
    snprintf(key, sizeof key, "%s.pixel_values", c->name);
    float *pixels = read_f32(golden, key, NULL);
    const int V = m->cfg.text.vocab, S = m->cfg.vision.image_size;
    GenPrompt p[3];
    case_prompts(c, pixels, 3 * S * S, p);
    // Every sequence = prompt + its generated tokens, n_steps of them fed.
    int n_steps = c->max_new;
    for (int b = 0; b < c->B; b++) n_steps = c->n_want[b] < n_steps ? c->n_want[b] : n_steps;
    n_steps -= 1;
    n_steps -= n_steps % chunk;
    int T_max = 0;
    int32_t *seq[3];
    for (int b = 0; b < c->B; b++) {
        T_max = c->n[b] + n_steps > T_max ? c->n[b] + n_steps : T_max;
        seq[b] = malloc((size_t)(c->n[b] + n_steps) * sizeof(int32_t));
        memcpy(seq[b], c->ids[b], (size_t)c->n[b] * sizeof(int32_t));
        memcpy(seq[b] + c->n[b], c->want[b], (size_t)n_steps * sizeof(int32_t));
    }
    Generator g;
    Error err = {{0}};
    EXPECT(gen_init(&g, m, c->B, T_max, &err) == 0, "%s", err.msg);
    float *step_logits = malloc((size_t)c->B * chunk * V * sizeof(float));
    float *full = malloc((size_t)T_max * V * sizeof(float));
    int32_t *feed = malloc((size_t)c->B * chunk * sizeof(int32_t));
    EXPECT(gen_prefill(&g, p, c->B, step_logits, &err) == 0, "%s", err.msg);
    double worst = 0.0;
    for (int s = 0; s <= n_steps; s += chunk) {
        const int rows = s == 0 ? 1 : chunk;  // prefill gives the last prompt row only
        // Compare before the next step: the full forward reuses the model's
        // activations, which only the prefill reads.
        for (int b = 0; b < c->B; b++) {
            const int n = c->n[b] + s;
            full_forward(m, seq[b], n, c->n_images[b], p[b].pixels, full);
            for (int r = 0; r < rows; r++) {
                const float *mine = step_logits + ((size_t)b * rows + r) * V;
                const float *want = full + (size_t)(n - rows + r) * V;
                double e = rel_error(mine, want, (size_t)V);
                worst = e > worst ? e : worst;
            }
        }
        if (s == n_steps) break;
        for (int b = 0; b < c->B; b++)
            for (int r = 0; r < chunk; r++) feed[b * chunk + r] = seq[b][c->n[b] + s + r];
        if (gen_step(&g, feed, chunk, step_logits, &err) != 0) {
            EXPECT(0, "%s: %s", c->name, err.msg);
            break;
        }
    }
    EXPECT(worst < 1e-5, "%s, %d token(s) per step: cache logits differ from a full forward by %.3g (rel.)", c->name,
           chunk, worst);
    printf("%s, %d token(s) per step: cache vs full forward rel. error %.2e over %d steps\n", c->name, chunk, worst,
           n_steps / chunk);
    for (int b = 0; b < c->B; b++) free(seq[b]);
    gen_free(&g);
    free(step_logits);
    free(full);
    free(feed);
    free(pixels);
}

// gen_continue: extending a cached conversation reuses the shared prefix and
// gives the tokens a fresh generation gives.
static void check_continue(LlavaModel *m, const Case *c, const StFile *golden) {
    char key[192];
    snprintf(key, sizeof key, "%s.pixel_values", c->name);
    float *pixels = read_f32(golden, key, NULL);
    GenPrompt p;
    case_prompts(c, pixels, 3 * m->cfg.vision.image_size * m->cfg.vision.image_size, &p);
    GenOptions opt = {.sample = {.temperature = 0.0f, .top_p = 1.0f}, .max_new_tokens = 8, .eos_id = -1};
    Generator g;
    Error err = {{0}};
    EXPECT(gen_init(&g, m, 1, p.n + 64, &err) == 0, "%s", err.msg);
    GenOutput first, again, fresh;
    EXPECT(gen_generate(&g, &p, 1, &opt, &first, &err) == 0, "%s", err.msg);
    // Next "turn": prompt + answer + 3 more tokens.
    int n2 = p.n + first.n + 3;
    int32_t *ids2 = malloc((size_t)n2 * sizeof(int32_t));
    memcpy(ids2, p.ids, (size_t)p.n * sizeof(int32_t));
    memcpy(ids2 + p.n, first.ids, (size_t)first.n * sizeof(int32_t));
    for (int i = 0; i < 3; i++) ids2[p.n + first.n + i] = 5 + i;
    GenPrompt p2 = {.ids = ids2, .n = n2, .n_images = p.n_images, .pixels = p.pixels};
    EXPECT(gen_continue(&g, &p2, &opt, &again, &err) == 0, "%s", err.msg);
    EXPECT(g.stats.prefill_tokens == 4, "%s: continue ran %ld tokens, expected 4 (the uncached suffix)", c->name,
           g.stats.prefill_tokens);
    EXPECT(gen_generate(&g, &p2, 1, &opt, &fresh, &err) == 0, "%s", err.msg);
    EXPECT(again.n == fresh.n && memcmp(again.ids, fresh.ids, (size_t)again.n * sizeof(int32_t)) == 0,
           "%s: gen_continue and a fresh generation disagree", c->name);
    gen_output_free(&first);
    gen_output_free(&again);
    gen_output_free(&fresh);
    gen_free(&g);
    free(ids2);
    free(pixels);
}

// 4: the batch case run as llava serve's scheduler runs it: sequence b joins
// after 2b steps; each leaves as soon as it is done (freeing its slot, which
// the last slot's sequence moves into); tokens must be transformers'.
static void check_join_leave(LlavaModel *m, const Case *c, const StFile *golden) {
    char key[192];
    snprintf(key, sizeof key, "%s.pixel_values", c->name);
    float *pixels = read_f32(golden, key, NULL);
    const int V = m->cfg.text.vocab;
    GenPrompt p[3];
    case_prompts(c, pixels, 3 * m->cfg.vision.image_size * m->cfg.vision.image_size, p);
    Generator g;
    Error err = {{0}};
    EXPECT(gen_init(&g, m, c->B, 256, &err) == 0, "%s", err.msg);
    float *logits = malloc((size_t)c->B * V * sizeof(float));
    int32_t *out[3], n_out[3] = {0}, seq_of[3], feed[3];
    int joined = 0, left = 0, moves = 0;
    for (int b = 0; b < c->B; b++) out[b] = malloc((size_t)c->max_new * sizeof(int32_t));
    SampleParams greedy = {.temperature = 0.0f, .top_p = 1.0f};
    Rng rng;
    rng_seed(&rng, 1);
    for (int step = 0; left < c->B && step < 1000; step++) {
        if (joined < c->B && step >= 2 * joined) {  // a late joiner: prefilled alone into slot g.B
            int slot = gen_join(&g, &p[joined], logits + (size_t)g.B * V, &err);
            EXPECT(slot == g.B - 1, "%s: join gave slot %d (%s)", c->name, slot, err.msg);
            if (slot < 0) break;
            seq_of[slot] = joined++;
            out[seq_of[slot]][n_out[seq_of[slot]]++] =
                sample_token(logits + (size_t)slot * V, V, &greedy, &rng, g.sample_scratch);
        }
        for (int b = g.B - 1; b >= 0; b--) {  // leave when done: eos or max_new
            int q = seq_of[b], last = out[q][n_out[q] - 1];
            if (last != c->eos && n_out[q] < c->max_new) continue;
            int moved = gen_leave(&g, b);
            if (moved >= 0) {
                seq_of[b] = seq_of[moved];
                moves++;
            }
            left++;
        }
        if (g.B == 0) continue;
        for (int b = 0; b < g.B; b++) feed[b] = out[seq_of[b]][n_out[seq_of[b]] - 1];
        if (gen_step(&g, feed, 1, logits, &err) != 0) {
            EXPECT(0, "%s: %s", c->name, err.msg);
            break;
        }
        for (int b = 0; b < g.B; b++)
            out[seq_of[b]][n_out[seq_of[b]]++] = sample_token(logits + (size_t)b * V, V, &greedy, &rng,
                                                              g.sample_scratch);
    }
    for (int b = 0; b < c->B; b++) {
        EXPECT(n_out[b] == c->n_want[b] && memcmp(out[b], c->want[b], (size_t)n_out[b] * sizeof(int32_t)) == 0,
               "%s row %d: joined late / batched with others, %d tokens, differs from transformers'", c->name, b,
               n_out[b]);
        free(out[b]);
    }
    printf("%s: join/leave batching gives transformers' tokens (%d slot moves)\n", c->name, moves);
    gen_free(&g);
    free(logits);
    free(pixels);
}

int main(int argc, char **argv) {
    const char *src = argc > 1 ? argv[1] : ".";
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/fixtures/generation/cases.json", src);
    Case *cases;
    int n = read_cases(path, &cases);
    snprintf(path, sizeof path, "%s/tests/fixtures/generation/logits.safetensors", src);
    StFile golden;
    Error err = {{0}};
    if (st_open(&golden, path, &err) != 0) FATAL("%s", err.msg);
    const char *models[2] = {"tiny_llava15", "tiny_llava_v1"};
    for (int k = 0; k < 2; k++) {
        LlavaModel m;
        snprintf(path, sizeof path, "%s/tests/fixtures/%s", src, models[k]);
        if (checkpoint_load_llava(&m, path, ops_cpu(), &err) != 0) FATAL("%s", err.msg);
        model_set_stage(&m, 0);
        for (int i = 0; i < n; i++)
            if (strcmp(cases[i].model, models[k]) == 0) check_against_transformers(&m, &cases[i], &golden);
        for (int i = 0; i < n; i++) {
            if (strcmp(cases[i].model, models[k]) != 0) continue;
            // Sequences whose generated tokens include the image token cannot
            // go through a full forward (it would take them for image slots).
            int clean = 1;
            for (int b = 0; b < cases[i].B; b++)
                for (int j = 0; j < cases[i].n_want[b]; j++) clean &= cases[i].want[b][j] != m.cfg.image_token_index;
            if (!clean) continue;
            check_cache_vs_full(&m, &cases[i], &golden, 1);
            if (strstr(cases[i].name, ".batch") || strstr(cases[i].name, ".image")) check_cache_vs_full(&m, &cases[i], &golden, 4);
            if (strstr(cases[i].name, ".image")) check_continue(&m, &cases[i], &golden);
            if (cases[i].B > 1) check_join_leave(&m, &cases[i], &golden);
        }
        model_free(&m);
    }
    st_close(&golden);
    for (int i = 0; i < n; i++)
        for (int b = 0; b < cases[i].B; b++) {
            free(cases[i].ids[b]);
            free(cases[i].want[b]);
        }
    free(cases);
    return test_summary("test_generate");
}
