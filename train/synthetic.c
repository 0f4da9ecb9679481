#include "train/synthetic.h"

#include <stdlib.h>
#include <string.h>

#include "common/rng.h"

typedef struct {
    SyntheticOptions o;
    LlavaConfig cfg;
    DataPosition pos;
    int *order;  // permutation of the current epoch
    // buffers of the micro-batches handed out last, [grad_accum] each
    int32_t **ids, **labels, **seg;
    float **pixels;
} Synthetic;

static void shuffle_epoch(Synthetic *s) {
    Rng r;
    rng_seed(&r, s->o.seed * 1000003ull + (unsigned long long)s->pos.epoch);
    for (int i = 0; i < s->o.n_samples; i++) s->order[i] = i;
    for (int i = s->o.n_samples - 1; i > 0; i--) {
        int j = (int)rng_below(&r, (uint64_t)i + 1);
        int t = s->order[i];
        s->order[i] = s->order[j];
        s->order[j] = t;
    }
}

static int sample_text_len(const Synthetic *s, int idx) {
    Rng r;
    rng_seed(&r, s->o.seed ^ (0x9E37ull * (unsigned long long)(idx + 1)));
    return s->o.min_text + (int)rng_below(&r, (uint64_t)(s->o.max_text - s->o.min_text + 1));
}

static int sample_has_image(const Synthetic *s, int idx) { return !(s->o.image_every && idx % s->o.image_every == 0); }

static int sample_len(const Synthetic *s, int idx) {
    return 1 + (sample_has_image(s, idx) ? s->cfg.image_tokens : 0) + sample_text_len(s, idx);
}

// Writes sample idx at ids/labels (length sample_len) and its image.
static void make_sample(const Synthetic *s, int idx, int32_t *ids, int32_t *labels, float *pixels) {
    Rng r;
    rng_seed(&r, s->o.seed ^ (0xA5A5ull * (unsigned long long)(idx + 7)));
    int n = 0, text = sample_text_len(s, idx), V = s->cfg.text.vocab;
    ids[n] = 1;
    labels[n++] = LABEL_IGNORE;
    if (sample_has_image(s, idx)) {
        for (int i = 0; i < s->cfg.image_tokens; i++) {
            ids[n] = s->cfg.image_token_index;
            labels[n++] = LABEL_IGNORE;
        }
        int S = s->cfg.vision.image_size;
        for (int i = 0; i < 3 * S * S; i++) pixels[i] = rng_normal(&r);
    }
    for (int i = 0; i < text; i++) {
        int id;
        do id = 3 + (int)rng_below(&r, (uint64_t)(V - 3));
        while (id == s->cfg.image_token_index);
        ids[n] = id;
        labels[n++] = i < text / 3 ? LABEL_IGNORE : id;  // a "prompt" third without loss
    }
}

static int syn_next_step(BatchSource *bs, LlavaBatch *out, int *n_out, Error *err) {
    Synthetic *s = bs->impl;
    const SyntheticOptions *o = &s->o;
    if (s->pos.step >= bs->steps_per_epoch) {
        s->pos.epoch++;
        s->pos.step = 0;
        shuffle_epoch(s);
    }
    long G = (long)o->micro_batch * o->grad_accum * o->world;
    long begin = s->pos.step * G, end = begin + G < o->n_samples ? begin + G : o->n_samples;
    int n = 0;
    int S = s->cfg.vision.image_size;
    // Chunk c of the global batch (micro_batch samples) goes to rank c % world.
    for (int j = 0; j < o->grad_accum; j++) {
        long c = (long)j * o->world + o->rank;
        long lo = begin + c * o->micro_batch, hi = lo + o->micro_batch < end ? lo + o->micro_batch : end;
        if (lo >= end) break;
        int B = (int)(hi - lo), T = 0, n_img = 0;
        for (long k = lo; k < hi; k++) {
            int idx = s->order[k];
            if (sample_len(s, idx) > T) T = sample_len(s, idx);
            n_img += sample_has_image(s, idx);
        }
        free(s->ids[n]);
        free(s->labels[n]);
        free(s->seg[n]);
        free(s->pixels[n]);
        s->ids[n] = xcalloc((size_t)B * T, sizeof(int32_t));
        s->labels[n] = xmalloc((size_t)B * T * sizeof(int32_t));
        s->seg[n] = xcalloc((size_t)B * T, sizeof(int32_t));
        s->pixels[n] = xmalloc(((size_t)n_img * 3 * S * S + 1) * sizeof(float));
        int padded = 0, img = 0;
        for (long k = lo; k < hi; k++) {
            int idx = s->order[k], row = (int)(k - lo), len = sample_len(s, idx);
            int32_t *ids = s->ids[n] + (size_t)row * T, *lab = s->labels[n] + (size_t)row * T;
            make_sample(s, idx, ids, lab, s->pixels[n] + (size_t)img * 3 * S * S);
            img += sample_has_image(s, idx);
            for (int t = 0; t < T; t++) s->seg[n][(size_t)row * T + t] = t < len ? 1 : 0;
            for (int t = len; t < T; t++) lab[t] = LABEL_IGNORE;  // ids stay 0 (a valid id), masked by seg
            padded |= len < T;
        }
        out[n] = (LlavaBatch){.B = B, .T = T, .input_ids = s->ids[n], .labels = s->labels[n],
                              .seg = padded ? s->seg[n] : NULL, .pos = NULL, .n_images = n_img,
                              .pixels = s->pixels[n]};
        n++;
    }
    s->pos.step++;
    *n_out = n;
    (void)err;
    return 0;
}

static DataPosition syn_position(const BatchSource *bs) {
    const Synthetic *s = bs->impl;
    DataPosition p = s->pos;
    if (p.step >= bs->steps_per_epoch) {  // normalized: the next batch opens the next epoch
        p.epoch++;
        p.step = 0;
    }
    return p;
}

static int syn_seek(BatchSource *bs, DataPosition pos, Error *err) {
    Synthetic *s = bs->impl;
    if (pos.step < 0 || pos.step > bs->steps_per_epoch || pos.epoch < 0)
        return err_set(err, "synthetic data: cannot seek to epoch %ld step %ld", pos.epoch, pos.step);
    s->pos = pos;
    shuffle_epoch(s);
    return 0;
}

static void syn_close(BatchSource *bs) {
    Synthetic *s = bs->impl;
    for (int i = 0; i < s->o.grad_accum; i++) {
        free(s->ids[i]);
        free(s->labels[i]);
        free(s->seg[i]);
        free(s->pixels[i]);
    }
    free(s->ids);
    free(s->labels);
    free(s->seg);
    free(s->pixels);
    free(s->order);
    free(s);
    memset(bs, 0, sizeof *bs);
}

int synthetic_open(BatchSource *bs, const SyntheticOptions *o, const LlavaConfig *cfg, Error *err) {
    if (o->n_samples < 1 || o->min_text < 1 || o->max_text < o->min_text || o->micro_batch < 1 ||
        o->grad_accum < 1 || o->world < 1 || o->rank < 0 || o->rank >= o->world)
        return err_set(err, "synthetic data: bad options");
    if (cfg->text.vocab < 8) return err_set(err, "synthetic data: vocabulary too small");
    Synthetic *s = xcalloc(1, sizeof *s);
    s->o = *o;
    s->cfg = *cfg;
    s->order = xmalloc((size_t)o->n_samples * sizeof(int));
    s->ids = xcalloc((size_t)o->grad_accum, sizeof(int32_t *));
    s->labels = xcalloc((size_t)o->grad_accum, sizeof(int32_t *));
    s->seg = xcalloc((size_t)o->grad_accum, sizeof(int32_t *));
    s->pixels = xcalloc((size_t)o->grad_accum, sizeof(float *));
    shuffle_epoch(s);
    long G = (long)o->micro_batch * o->grad_accum * o->world;
    memset(bs, 0, sizeof *bs);
    bs->impl = s;
    bs->steps_per_epoch = (o->n_samples + G - 1) / G;
    bs->max_micro = o->grad_accum;
    bs->next_step = syn_next_step;
    bs->position = syn_position;
    bs->seek = syn_seek;
    bs->close = syn_close;
    return 0;
}
