// KV-cache generation. Shapes: B sequences, Tq new tokens per sequence per
// step, rows = B*Tq, C LLM width, QKV = (NH+2NKV)*HS, ATT = NH*HS, I MLP
// width, V vocabulary, KV = NKV*HS cache row width.
#include "eval/generate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

static void *act_at(const Generator *g, const void *base, size_t elems) {
    return (char *)base + elems * g->ops->act_size;
}

// NULL for an absent (SIZE_MAX) bias.
static void *llm_weight(const Generator *g, size_t off) {
    return off == SIZE_MAX ? NULL : act_at(g, g->m->weights[MODULE_LLM], off);
}

int gen_init(Generator *g, LlavaModel *m, int B_cap, int T_cap, Error *err) {
    memset(g, 0, sizeof *g);
    const Ops *o = m->ops;
    const TextConfig *t = &m->cfg.text;
    if (!o->kv_cache_write || !o->attention_cached)
        return err_set(err, "the %s backend has no KV-cache ops (kv_cache_write, attention_cached): generation "
                            "needs them", o->name);
    if (B_cap <= 0 || T_cap <= 0) return err_set(err, "generation cache of %d x %d positions is empty", B_cap, T_cap);
    if (T_cap > t->max_positions) T_cap = t->max_positions;
    g->m = m;
    g->ops = o;
    g->B_cap = B_cap;
    g->T_cap = T_cap;
    g->L = t->layers;
    g->KV = t->kv_heads * t->head_dim;
    model_set_recompute(m, 0);
    const size_t cache_bytes = (size_t)B_cap * T_cap * g->KV * o->act_size;
    g->k = xcalloc((size_t)g->L, sizeof(void *));
    g->v = xcalloc((size_t)g->L, sizeof(void *));
    for (int l = 0; l < g->L; l++) {
        g->k[l] = o->alloc(cache_bytes);
        g->v[l] = o->alloc(cache_bytes);
    }
    g->lens = xcalloc((size_t)B_cap, sizeof(int32_t));
    g->tokens = xmalloc((size_t)B_cap * T_cap * sizeof(int32_t));
    for (size_t i = 0; i < (size_t)B_cap * T_cap; i++) g->tokens[i] = -1;
    g->d_lens = o->alloc((size_t)B_cap * sizeof(int32_t));
    g->sample_scratch = xmalloc(sample_scratch_bytes(t->vocab));
    return 0;
}

void gen_free(Generator *g) {
    if (!g->m) return;
    const Ops *o = g->ops;
    for (int l = 0; l < g->L; l++) {
        o->free(g->k[l]);
        o->free(g->v[l]);
    }
    free(g->k);
    free(g->v);
    free(g->lens);
    free(g->tokens);
    o->free(g->d_lens);
    if (g->arena) o->free(g->arena);
    free(g->host_logits);
    free(g->sample_scratch);
    memset(g, 0, sizeof *g);
}

const char *gen_stop_name(GenStop s) {
    switch (s) {
        case GEN_STOP_EOS: return "eos";
        case GEN_STOP_LENGTH: return "length";
        case GEN_STOP_CONTEXT: return "context";
    }
    return "?";
}

void gen_output_free(GenOutput *o) {
    free(o->ids);
    memset(o, 0, sizeof *o);
}

// ---- step buffers -------------------------------------------------------------------

static void step_reserve(Generator *g, int rows) {
    if (rows <= g->rows_cap) return;
    const Ops *o = g->ops;
    const TextConfig *t = &g->m->cfg.text;
    const size_t A = o->act_size, R = (size_t)rows;
    const size_t C = (size_t)t->hidden, QKV = (size_t)(t->heads + 2 * t->kv_heads) * t->head_dim;
    const size_t ATT = (size_t)t->heads * t->head_dim, I = (size_t)t->intermediate, V = (size_t)t->vocab;
    const size_t sizes[] = {R * C * A,     R * C * A, R * QKV * A, R * ATT * A, R * C * A,
                            R * 2 * I * A, R * I * A, R * V * A,   R * sizeof(float),
                            R * 4,         R * 4,     R * 4};
    const size_t n = sizeof sizes / sizeof *sizes;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += (sizes[i] + 255) & ~(size_t)255;
    if (g->arena) o->free(g->arena);
    g->arena = o->alloc(total);
    void **slots[] = {&g->x,      &g->ln,  &g->qkv,    &g->att,           &g->h,
                      &g->gateup, &g->mlp, &g->logits, (void **)&g->rstd, (void **)&g->d_ids,
                      (void **)&g->d_pos, (void **)&g->d_slots};
    char *p = g->arena;
    for (size_t i = 0; i < n; i++) {
        *slots[i] = p;
        p += (sizes[i] + 255) & ~(size_t)255;
    }
    free(g->host_logits);
    g->host_logits = xmalloc(R * V * sizeof(float));
    g->rows_cap = rows;
}

// ---- prefill ------------------------------------------------------------------------

// Runs B prompts through model_forward and writes their keys and values into
// cache slots first .. first + B - 1; the slots below `first` keep theirs.
static int prefill_into(Generator *g, const GenPrompt *prompts, int B, int first, float *logits, Error *err) {
    LlavaModel *m = g->m;
    const Ops *o = g->ops;
    const LlavaConfig *c = &m->cfg;
    const TextConfig *t = &c->text;
    if (B <= 0 || first + B > g->B_cap)
        return err_set(err, "%d prompts after %d sequences for a generation cache of %d sequences", B, first,
                       g->B_cap);
    int T = 0, N = 0;
    for (int b = 0; b < B; b++) {
        if (prompts[b].n <= 0) return err_set(err, "prompt %d is empty", b);
        if (prompts[b].n > g->T_cap)
            return err_set(err, "prompt %d has %d tokens; the cache holds %d positions (max_position_embeddings %d)",
                           b, prompts[b].n, g->T_cap, t->max_positions);
        if (prompts[b].n > T) T = prompts[b].n;
        N += prompts[b].n_images;
    }
    // Right-padded batch: padding is segment 0, which no real token attends to.
    const size_t M = (size_t)B * T;
    int32_t *ids = xmalloc(M * sizeof(int32_t)), *seg = xmalloc(M * sizeof(int32_t));
    int32_t *slots = xmalloc(M * sizeof(int32_t));
    const size_t img = (size_t)3 * c->vision.image_size * c->vision.image_size;
    float *pixels = N ? xmalloc((size_t)N * img * sizeof(float)) : NULL;
    int has_pad = 0, n_img = 0;
    const int pad_id = c->image_token_index == 0 ? 1 : 0;
    for (int b = 0; b < B; b++) {
        const GenPrompt *p = &prompts[b];
        for (int i = 0; i < T; i++) {
            size_t r = (size_t)b * T + i;
            ids[r] = i < p->n ? p->ids[i] : pad_id;
            seg[r] = i < p->n;
            slots[r] = i < p->n ? (first + b) * g->T_cap + i : -1;
            has_pad |= i >= p->n;
        }
        if (p->n_images) memcpy(pixels + (size_t)n_img * img, p->pixels, (size_t)p->n_images * img * sizeof(float));
        n_img += p->n_images;
    }
    LlavaBatch batch = {.B = B, .T = T, .input_ids = ids, .labels = NULL, .seg = has_pad ? seg : NULL, .pos = NULL,
                        .n_images = N, .pixels = pixels};
    double t0 = now_seconds();
    int rc = model_forward(m, &batch, err);
    if (rc == 0) {
        int32_t *d_slots = o->alloc(M * sizeof(int32_t));
        o->upload(d_slots, slots, M * sizeof(int32_t));
        for (int l = 0; l < g->L; l++)
            o->kv_cache_write(g->k[l], g->v[l], m->acts.layer[l].qkv, d_slots, (int)M, t->heads, t->kv_heads,
                              t->head_dim);
        o->synchronize();
        o->free(d_slots);
        g->B = first + B;
        for (int b = 0; b < B; b++) {
            g->lens[first + b] = prompts[b].n;
            for (int i = 0; i < g->T_cap; i++)
                g->tokens[(size_t)(first + b) * g->T_cap + i] = i < prompts[b].n ? ids[(size_t)b * T + i] : -1;
            if (logits)
                o->download_act(logits + (size_t)b * t->vocab,
                                act_at(g, model_logits(m), ((size_t)b * T + prompts[b].n - 1) * t->vocab),
                                (size_t)t->vocab);
        }
        o->synchronize();
        g->stats.prefill_s += now_seconds() - t0;
        g->stats.prefill_tokens += (long)M;
    } else {
        err_prefix(err, "prefill: ");
    }
    free(ids);
    free(seg);
    free(slots);
    free(pixels);
    return rc;
}

int gen_prefill(Generator *g, const GenPrompt *prompts, int B, float *logits, Error *err) {
    return prefill_into(g, prompts, B, 0, logits, err);
}

// ---- continuous batching: sequences join and leave between steps ------------------

int gen_join(Generator *g, const GenPrompt *prompt, float *logits, Error *err) {
    if (g->B >= g->B_cap) return err_set(err, "the generation cache is full (%d sequences)", g->B_cap);
    const int slot = g->B;
    return prefill_into(g, prompt, 1, slot, logits, err) == 0 ? slot : -1;
}

int gen_leave(Generator *g, int b) {
    CHECK(b >= 0 && b < g->B, "gen_leave(%d) with %d sequences", b, g->B);
    const int last = g->B - 1;
    const size_t T = (size_t)g->T_cap;
    if (b != last) {
        // The last sequence takes the freed slot: its cache rows, length and
        // tokens move down, so slots 0 .. B-1 stay the ones gen_step runs.
        const size_t row_bytes = (size_t)g->KV * g->ops->act_size, n = (size_t)g->lens[last];
        for (int l = 0; l < g->L; l++) {
            g->ops->copy(act_at(g, g->k[l], (size_t)b * T * g->KV), act_at(g, g->k[l], (size_t)last * T * g->KV),
                         n * row_bytes);
            g->ops->copy(act_at(g, g->v[l], (size_t)b * T * g->KV), act_at(g, g->v[l], (size_t)last * T * g->KV),
                         n * row_bytes);
        }
        memcpy(g->tokens + (size_t)b * T, g->tokens + (size_t)last * T, T * sizeof(int32_t));
        g->lens[b] = g->lens[last];
    }
    for (size_t i = 0; i < T; i++) g->tokens[(size_t)last * T + i] = -1;
    g->lens[last] = 0;
    g->B = last;
    return b != last ? last : -1;
}

// ---- decode step --------------------------------------------------------------------

void gen_truncate(Generator *g, int b, int n) {
    CHECK(b >= 0 && b < g->B && n >= 0 && n <= g->lens[b], "gen_truncate(%d, %d)", b, n);
    for (int i = n; i < g->lens[b]; i++) g->tokens[(size_t)b * g->T_cap + i] = -1;
    g->lens[b] = n;
}

int gen_step(Generator *g, const int32_t *tokens, int Tq, float *logits, Error *err) {
    const LlavaModel *m = g->m;
    const Ops *o = g->ops;
    const TextConfig *t = &m->cfg.text;
    const int B = g->B, rows = B * Tq;
    if (B <= 0) return err_set(err, "generation step before any prefill");
    if (Tq <= 0) return err_set(err, "generation step with %d tokens", Tq);
    for (int b = 0; b < B; b++) {
        if (g->lens[b] + Tq > g->T_cap)
            return err_set(err, "sequence %d: %d cached + %d new tokens exceed the cache of %d positions", b,
                           g->lens[b], Tq, g->T_cap);
        for (int i = 0; i < Tq; i++) {
            int id = tokens[b * Tq + i];
            if (id < 0 || id >= t->vocab)
                return err_set(err, "token %d of sequence %d is %d, outside the vocabulary [0, %d)", i, b, id,
                               t->vocab);
        }
    }
    step_reserve(g, rows);
    int32_t *pos = xmalloc((size_t)rows * sizeof(int32_t)), *slots = xmalloc((size_t)rows * sizeof(int32_t));
    for (int b = 0; b < B; b++) {
        for (int i = 0; i < Tq; i++) {
            pos[b * Tq + i] = g->lens[b] + i;
            slots[b * Tq + i] = b * g->T_cap + g->lens[b] + i;
            g->tokens[(size_t)b * g->T_cap + g->lens[b] + i] = tokens[b * Tq + i];
        }
        g->lens[b] += Tq;
    }
    o->upload(g->d_ids, tokens, (size_t)rows * sizeof(int32_t));
    o->upload(g->d_pos, pos, (size_t)rows * sizeof(int32_t));
    o->upload(g->d_slots, slots, (size_t)rows * sizeof(int32_t));
    o->upload(g->d_lens, g->lens, (size_t)B * sizeof(int32_t));
    free(pos);
    free(slots);

    const int C = t->hidden, NH = t->heads, NKV = t->kv_heads, HS = t->head_dim, I = t->intermediate;
    const int QKV = (NH + 2 * NKV) * HS, ATT = NH * HS;
    o->embedding_forward(g->x, g->d_ids, llm_weight(g, m->off.embed), rows, C);
    for (int l = 0; l < g->L; l++) {
        // The layer of model.c's llm_layer_forward, with the cache in the middle.
        const LlmLayerOffsets *w = &m->off.llm[l];
        o->rmsnorm_forward(g->ln, g->rstd, g->x, llm_weight(g, w->ln1_w), rows, C, t->eps);
        o->matmul_forward(g->qkv, g->ln, llm_weight(g, w->qkv_w), llm_weight(g, w->qkv_b), rows, C, QKV);
        model_rope(m, g->qkv, g->d_pos, rows, 1);
        o->kv_cache_write(g->k[l], g->v[l], g->qkv, g->d_slots, rows, NH, NKV, HS);
        o->attention_cached(g->att, g->qkv, g->k[l], g->v[l], g->d_lens, B, Tq, g->T_cap, NH, NKV, HS);
        o->matmul_forward(g->h, g->att, llm_weight(g, w->o_w), llm_weight(g, w->o_b), rows, ATT, C);
        o->residual_forward(g->h, g->h, g->x, (size_t)rows * C);
        o->rmsnorm_forward(g->ln, g->rstd, g->h, llm_weight(g, w->ln2_w), rows, C, t->eps);
        o->matmul_forward(g->gateup, g->ln, llm_weight(g, w->gateup_w), llm_weight(g, w->gateup_b), rows, C, 2 * I);
        o->swiglu_forward(g->mlp, g->gateup, rows, I);
        o->matmul_forward(g->x, g->mlp, llm_weight(g, w->down_w), llm_weight(g, w->down_b), rows, I, C);
        o->residual_forward(g->x, g->x, g->h, (size_t)rows * C);
    }
    o->rmsnorm_forward(g->ln, g->rstd, g->x, llm_weight(g, m->off.norm_w), rows, C, t->eps);
    o->matmul_forward(g->logits, g->ln, llm_weight(g, m->off.head), NULL, rows, C, t->vocab);
    if (logits) o->download_act(logits, g->logits, (size_t)rows * t->vocab);
    o->synchronize();
    return 0;
}

// ---- the generation loop ------------------------------------------------------------

// Samples from logits[B, V] (the distribution after each sequence's last
// cached row) and steps until every sequence has stopped.
static int decode_loop(Generator *g, int B, float *logits, const GenOptions *opt, GenOutput *out, Error *err) {
    const int V = g->m->cfg.text.vocab;
    const int max_new = opt->max_new_tokens;
    Rng base, *rng = xmalloc((size_t)B * sizeof(Rng));
    rng_seed(&base, opt->seed);
    for (int b = 0; b < B; b++) rng_seed(&rng[b], rng_next(&base));
    int *done = xcalloc((size_t)B, sizeof(int)), *real_len = xmalloc((size_t)B * sizeof(int));
    int32_t *feed = xmalloc((size_t)B * sizeof(int32_t));
    for (int b = 0; b < B; b++) {
        out[b] = (GenOutput){.ids = xmalloc((size_t)(max_new > 0 ? max_new : 1) * sizeof(int32_t)), .n = 0,
                             .stop = GEN_STOP_LENGTH};
        real_len[b] = g->lens[b];
        if (max_new <= 0) done[b] = 1;
    }
    int rc = 0;
    double t0 = now_seconds();
    for (;;) {
        int active = 0;
        for (int b = 0; b < B; b++) {
            if (done[b]) continue;
            int tok = sample_token(logits + (size_t)b * V, V, &opt->sample, &rng[b], g->sample_scratch);
            out[b].ids[out[b].n++] = tok;
            if (opt->on_token) opt->on_token(opt->ctx, b, tok);
            if (tok == opt->eos_id) {
                done[b] = 1;
                out[b].stop = GEN_STOP_EOS;
            } else if (out[b].n >= max_new) {
                done[b] = 1;
                out[b].stop = GEN_STOP_LENGTH;
            } else if (g->lens[b] >= g->T_cap) {
                done[b] = 1;
                out[b].stop = GEN_STOP_CONTEXT;
            } else {
                active++;
            }
            feed[b] = tok;
        }
        if (!active) break;
        // Stopped sequences keep stepping (their extra rows are dropped at the
        // end) so that one batched step serves everyone.
        for (int b = 0; b < B; b++) {
            if (!done[b]) continue;
            feed[b] = 0;
            if (g->lens[b] >= g->T_cap) gen_truncate(g, b, g->lens[b] - 1);
        }
        if ((rc = gen_step(g, feed, 1, logits, err)) != 0) break;
        for (int b = 0; b < B; b++)
            if (!done[b]) real_len[b] = g->lens[b];
        g->stats.decode_steps++;
        g->stats.decode_tokens += active;
    }
    g->stats.decode_s += now_seconds() - t0;
    // The cache keeps exactly each sequence's prompt + fed tokens.
    for (int b = 0; b < B && rc == 0; b++)
        if (g->lens[b] > real_len[b]) gen_truncate(g, b, real_len[b]);
    free(rng);
    free(done);
    free(real_len);
    free(feed);
    return rc;
}

int gen_generate(Generator *g, const GenPrompt *prompts, int B, const GenOptions *opt, GenOutput *out,
                 Error *err) {
    memset(&g->stats, 0, sizeof g->stats);
    float *logits = xmalloc((size_t)B * g->m->cfg.text.vocab * sizeof(float));
    int rc = gen_prefill(g, prompts, B, logits, err);
    if (rc == 0) rc = decode_loop(g, B, logits, opt, out, err);
    free(logits);
    return rc;
}

int gen_continue(Generator *g, const GenPrompt *prompt, const GenOptions *opt, GenOutput *out, Error *err) {
    const int V = g->m->cfg.text.vocab;
    int keep = 0;
    if (g->B == 1) {
        while (keep < g->lens[0] && keep < prompt->n && g->tokens[keep] == prompt->ids[keep]) keep++;
        if (keep == prompt->n) keep--;  // the last prompt token must run again for its logits
    }
    for (int i = keep; i < prompt->n && keep > 0; i++)
        if (prompt->ids[i] == g->m->cfg.image_token_index) keep = 0;  // new images: prefill
    if (keep <= 0) return gen_generate(g, prompt, 1, opt, out, err);
    memset(&g->stats, 0, sizeof g->stats);
    const int Tq = prompt->n - keep;
    gen_truncate(g, 0, keep);
    float *logits = xmalloc((size_t)Tq * V * sizeof(float));
    double t0 = now_seconds();
    int rc = gen_step(g, prompt->ids + keep, Tq, logits, err);
    g->stats.prefill_s = now_seconds() - t0;
    g->stats.prefill_tokens = Tq;
    if (rc == 0) rc = decode_loop(g, 1, logits + (size_t)(Tq - 1) * V, opt, out, err);
    free(logits);
    return rc;
}

// ---- self-check -----------------------------------------------------------------------

static double rel_err(const float *a, const float *b, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    if (isnan(num) || isnan(den)) return INFINITY;
    return den > 0 ? sqrt(num / den) : (num > 0 ? INFINITY : 0.0);
}

int gen_verify(Generator *g, const GenPrompt *prompt, const int32_t *tokens, int n, double *max_rel, int *checked,
               Error *err) {
    LlavaModel *m = g->m;
    const int V = m->cfg.text.vocab;
    *max_rel = 0.0;
    *checked = 0;
    int32_t *seq = xmalloc((size_t)(prompt->n + n) * sizeof(int32_t));
    memcpy(seq, prompt->ids, (size_t)prompt->n * sizeof(int32_t));
    float *step = xmalloc((size_t)V * sizeof(float)), *full = xmalloc((size_t)V * sizeof(float));
    int rc = gen_prefill(g, prompt, 1, step, err);
    for (int s = 0; rc == 0 && s <= n; s++) {
        // The full forward reuses the model's activations: run it after the
        // cache has what it needs, before the next step.
        const int len = prompt->n + s;
        LlavaBatch b = {.B = 1, .T = len, .input_ids = seq, .n_images = prompt->n_images, .pixels = prompt->pixels};
        if ((rc = model_forward(m, &b, err)) != 0) break;
        g->ops->download_act(full, act_at(g, model_logits(m), (size_t)(len - 1) * V), (size_t)V);
        double e = rel_err(step, full, (size_t)V);
        *max_rel = e > *max_rel ? e : *max_rel;
        (*checked)++;
        // A sequence stopped for context ends with a token that has no cache
        // row left to go into: nothing after it to check.
        if (s == n || tokens[s] == m->cfg.image_token_index || len >= g->T_cap) break;
        seq[len] = tokens[s];
        rc = gen_step(g, &tokens[s], 1, step, err);
    }
    free(seq);
    free(step);
    free(full);
    return rc;
}
