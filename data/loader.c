// The loader's machinery: sample tables, the reader thread (all HDF5 calls),
// the worker threads (rows, padding, packing, pixels) and the ring of
// prefetched micro-batches. The order and slicing live in loader_order.c.
//
// Ring protocol: slot k holds micro-batch seq with seq % P == k.
//   FREE --reader fills raw samples--> RAW --a worker builds--> READY
//   --loader_next hands it out--> OUT --the next loader_next--> FREE
// The reader fills seqs in order, workers claim them in order, loader_next
// takes them in order; the state of each slot is guarded by one mutex.
#include "data/loader.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/loader_image.h"
#include "data/manifest.h"
#include "data/shards.h"

#define MAX_OPEN_SHARDS 64

enum { SLOT_FREE, SLOT_RAW, SLOT_BUSY, SLOT_READY, SLOT_OUT };

typedef struct {
    int state;
    int64_t seq;
    LoaderPos pos;
    int failed;
    Error err;
    // raw samples (reader)
    int n;
    int64_t *index;          // [n]
    char **ids;              // [n]
    int32_t *len;            // [n]
    int64_t *tok_off;        // [n] into tok/lab
    int32_t *tok, *lab;      // [sum len]
    int *img;                // [n] image number in this micro-batch or -1
    int n_img;
    uint8_t *img_bytes;      // images one after the other (pixels [3,S,S] or file bytes)
    size_t *img_off, *img_len;  // [n_img]
    int64_t targets, step_targets, step_samples;
    size_t cap_n, cap_tok, cap_img, cap_img_bytes;
    // built batch (worker)
    LlavaBatch batch;
    int32_t *b_ids, *b_labels, *b_seg, *b_pos;  // [B*T]
    float *pixels;                              // [n_img, 3, S, S]
    uint16_t *pixels_bf16;                      // [n_img, 3, S, S] with LoaderOptions.pixels_bf16
    size_t cap_bt, cap_pixels;
    int *row_of, *place;                        // [n] packing scratch
    int64_t *out_index;                         // [n] samples in row-major document order
    char **out_ids;                             // [n] (pointers into ids)
} Slot;

typedef struct Worker Worker;

struct Loader {
    LoaderOptions o;
    Manifest man;
    char dir[1024];
    int S;                       // image size
    LoaderImage img;             // pixel conversion / decoding
    // sample tables [N]
    int64_t N;
    int32_t *len, *targets, *shard;
    int64_t *local;
    uint8_t *is_image;
    int64_t steps_per_epoch, G;
    // reader state (reader thread only)
    ShardReader *open;           // [n_shards], hid <= 0 when closed
    int64_t *last_use, use_clock;
    int n_open;
    int64_t order_epoch;
    int64_t *order;              // [N]
    // ring
    int P;
    Slot *slots;
    int64_t next_fill, next_build, next_out, g0;
    int n_out;                   // micro-batches handed out and not yet released
    int failed;                  // a read/decode error was reported: no more batches
    Error fail_err;
    int stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t reader;
    pthread_t *workers;
    Worker *worker_state;        // [n_workers]
    int n_workers, threads_started;
};

void loader_options_default(LoaderOptions *o) {
    memset(o, 0, sizeof *o);
    o->seed = 42;
    o->micro_batch = 1;
    o->grad_accum = 1;
    o->world = 1;
    o->shuffle = 1;
}

int64_t loader_num_steps_per_epoch(const Loader *L) { return L->steps_per_epoch; }
int64_t loader_num_samples(const Loader *L) { return L->N; }
int loader_image_size(const Loader *L) { return L->S; }

static void pos_of(const Loader *L, int64_t g, LoaderPos *p) {
    const int64_t per_epoch = L->steps_per_epoch * L->o.grad_accum;
    p->epoch = g / per_epoch;
    p->step = (g % per_epoch) / L->o.grad_accum;
    p->micro = (int)(g % L->o.grad_accum);
}

void loader_state(const Loader *L, LoaderPos *pos) { pos_of(L, L->g0 + L->next_out, pos); }

// ---- reader thread ---------------------------------------------------------------

static ShardReader *reader_shard(Loader *L, int k, Error *err) {
    ShardReader *r = &L->open[k];
    L->last_use[k] = ++L->use_clock;
    if (r->hid > 0) return r;
    if (L->n_open >= MAX_OPEN_SHARDS) {  // close the least recently used
        int lru = -1;
        for (int i = 0; i < L->man.n_shards; i++)
            if (L->open[i].hid > 0 && (lru < 0 || L->last_use[i] < L->last_use[lru])) lru = i;
        shard_reader_close(&L->open[lru]);
        L->n_open--;
    }
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", L->dir, L->man.shards[k].file);
    if (shard_reader_open(r, path, err) != 0) return NULL;
    L->n_open++;
    return r;
}

static void slot_reserve(Slot *s, int n, int64_t tokens) {
    if ((size_t)n > s->cap_n) {
        size_t c = (size_t)n;
        s->index = xrealloc(s->index, c * sizeof *s->index);
        s->ids = xrealloc(s->ids, c * sizeof *s->ids);
        for (size_t i = s->cap_n; i < c; i++) s->ids[i] = xcalloc(1, 256);
        s->len = xrealloc(s->len, c * sizeof *s->len);
        s->tok_off = xrealloc(s->tok_off, c * sizeof *s->tok_off);
        s->img = xrealloc(s->img, c * sizeof *s->img);
        s->img_off = xrealloc(s->img_off, c * sizeof *s->img_off);
        s->img_len = xrealloc(s->img_len, c * sizeof *s->img_len);
        s->row_of = xrealloc(s->row_of, c * sizeof *s->row_of);
        s->place = xrealloc(s->place, c * sizeof *s->place);
        s->out_index = xrealloc(s->out_index, c * sizeof *s->out_index);
        s->out_ids = xrealloc(s->out_ids, c * sizeof *s->out_ids);
        s->cap_n = c;
    }
    if ((size_t)tokens > s->cap_tok) {
        s->tok = xrealloc(s->tok, (size_t)tokens * sizeof(int32_t));
        s->lab = xrealloc(s->lab, (size_t)tokens * sizeof(int32_t));
        s->cap_tok = (size_t)tokens;
    }
}

// Reads the samples of micro-batch g into slot s.
static int reader_fill(Loader *L, Slot *s, int64_t g, Error *err) {
    pos_of(L, g, &s->pos);
    if (s->pos.epoch != L->order_epoch) {
        loader_epoch_order(L->order, L->N, L->len, L->is_image, L->o.seed, s->pos.epoch, L->G, L->o.world * L->o.grad_accum,
                           L->o.group_by_modality, L->o.shuffle);
        L->order_epoch = s->pos.epoch;
    }
    int64_t b, e;
    loader_slice(L->N, s->pos.step, s->pos.micro, L->o.rank, L->o.world, L->o.micro_batch, L->o.grad_accum, &b, &e);
    const int n = (int)(e - b);
    int64_t tokens = 0;
    for (int i = 0; i < n; i++) tokens += L->len[L->order[b + i]];
    slot_reserve(s, n, tokens);
    s->n = n;
    s->n_img = 0;
    s->targets = 0;
    // The divisor of the step: every rank computes the same sum from the tables.
    const int64_t s0 = s->pos.step * L->G, s1 = s0 + L->G < L->N ? s0 + L->G : L->N;
    s->step_targets = 0;
    for (int64_t p = s0; p < s1; p++) s->step_targets += L->targets[L->order[p]];
    s->step_samples = s1 - s0;
    int64_t off = 0;
    size_t img_bytes = 0;
    for (int i = 0; i < n; i++) {
        const int64_t x = L->order[b + i];
        ShardReader *r = reader_shard(L, L->shard[x], err);
        if (!r) return -1;
        const int64_t li = L->local[x];
        s->index[i] = x;
        s->len[i] = L->len[x];
        s->tok_off[i] = off;
        s->targets += L->targets[x];
        if (shard_read_tokens(r, r->offset[li], r->length[li], s->tok + off, s->lab + off, err) != 0 ||
            shard_read_id(r, li, s->ids[i], 256, err) != 0)
            return -1;
        off += L->len[x];
        s->img[i] = -1;
        if (r->image[li] < 0) continue;
        const int64_t im = r->image[li];
        const size_t need = r->fmt.store == STORE_PIXELS ? (size_t)3 * L->S * L->S : (size_t)r->image_length[im];
        if (img_bytes + need > s->cap_img_bytes) {
            s->cap_img_bytes = 2 * (img_bytes + need);
            s->img_bytes = xrealloc(s->img_bytes, s->cap_img_bytes);
        }
        uint8_t *dst = s->img_bytes + img_bytes;
        if ((r->fmt.store == STORE_PIXELS ? shard_read_pixels(r, im, dst, err) : shard_read_encoded(r, im, dst, err)) !=
            0)
            return -1;
        s->img[i] = s->n_img;
        s->img_off[s->n_img] = img_bytes;
        s->img_len[s->n_img] = need;
        s->n_img++;
        img_bytes += need;
    }
    return 0;
}

static void *reader_main(void *arg) {
    Loader *L = arg;
    for (int64_t seq = 0;; seq++) {
        Slot *s = &L->slots[seq % L->P];
        pthread_mutex_lock(&L->mu);
        while (!L->stop && s->state != SLOT_FREE) pthread_cond_wait(&L->cv, &L->mu);
        int stop = L->stop;
        pthread_mutex_unlock(&L->mu);
        if (stop) return NULL;
        s->seq = seq;
        s->failed = reader_fill(L, s, L->g0 + seq, &s->err) != 0;
        pthread_mutex_lock(&L->mu);
        s->state = SLOT_RAW;
        L->next_fill = seq + 1;
        pthread_cond_broadcast(&L->cv);
        pthread_mutex_unlock(&L->mu);
        if (s->failed) return NULL;  // the consumer reports it; nothing after it is valid
    }
}

// ---- workers: rows, padding, packing, pixels ----------------------------------------

static void build_batch(Loader *L, Slot *s, LoaderImageScratch *scratch) {
    const int n = s->n;
    int rows;
    if (L->o.pack) {
        rows = loader_pack_rows(s->len, n, L->o.max_length, s->row_of, s->place);
    } else {
        rows = n;
        for (int i = 0; i < n; i++) s->row_of[i] = s->place[i] = i;
    }
    // Row lengths: T is the longest.
    int T = 0;
    int *row_len = xcalloc((size_t)(rows ? rows : 1), sizeof(int));
    for (int i = 0; i < n; i++) {
        row_len[s->row_of[i]] += s->len[i];
        if (row_len[s->row_of[i]] > T) T = row_len[s->row_of[i]];
    }
    const size_t BT = (size_t)rows * T;
    if (BT > s->cap_bt) {
        s->b_ids = xrealloc(s->b_ids, BT * sizeof(int32_t));
        s->b_labels = xrealloc(s->b_labels, BT * sizeof(int32_t));
        s->b_seg = xrealloc(s->b_seg, BT * sizeof(int32_t));
        s->b_pos = xrealloc(s->b_pos, BT * sizeof(int32_t));
        s->cap_bt = BT;
    }
    for (size_t i = 0; i < BT; i++) {
        s->b_ids[i] = L->man.pad_token_id;
        s->b_labels[i] = LABEL_IGNORE;
        s->b_seg[i] = 0;
        s->b_pos[i] = 0;
    }
    int padded = 0;
    for (int r = 0; r < rows; r++) padded |= row_len[r] < T;
    // Place documents row by row in placement order; images follow the
    // row-major order of their tokens.
    const size_t img_elems = (size_t)3 * L->S * L->S;
    if ((size_t)s->n_img * img_elems > s->cap_pixels) {
        s->cap_pixels = (size_t)s->n_img * img_elems;
        s->pixels = xrealloc(s->pixels, s->cap_pixels * sizeof(float));
        if (L->o.pixels_bf16) s->pixels_bf16 = xrealloc(s->pixels_bf16, s->cap_pixels * sizeof(uint16_t));
    }
    int *fill = xcalloc((size_t)(rows ? rows : 1), sizeof(int));
    int *docs = xcalloc((size_t)(rows ? rows : 1), sizeof(int));
    int n_img = 0, n_doc = 0;
    for (int r = 0; r < rows && !s->failed; r++) {
        for (int k = 0; k < n; k++) {
            const int i = s->place[k];
            if (s->row_of[i] != r) continue;
            s->out_index[n_doc] = s->index[i];
            s->out_ids[n_doc++] = s->ids[i];
            const size_t at = (size_t)r * T + fill[r];
            memcpy(s->b_ids + at, s->tok + s->tok_off[i], (size_t)s->len[i] * sizeof(int32_t));
            memcpy(s->b_labels + at, s->lab + s->tok_off[i], (size_t)s->len[i] * sizeof(int32_t));
            docs[r]++;
            for (int t = 0; t < s->len[i]; t++) {
                s->b_seg[at + t] = docs[r];
                s->b_pos[at + t] = t;
            }
            fill[r] += s->len[i];
            if (s->img[i] >= 0) {
                const int m = s->img[i];
                if (loader_image_convert(&L->img, scratch, s->img_bytes + s->img_off[m], s->img_len[m],
                                         s->pixels + (size_t)n_img * img_elems, &s->err) != 0) {
                    err_prefix(&s->err, "sample '%s': ", s->ids[i]);
                    s->failed = 1;
                    break;
                }
                // Rounded here, on this worker, so that the step's thread
                // only copies: the very function (and bits) the CUDA upload used.
                if (L->o.pixels_bf16) {
                    const float *src = s->pixels + (size_t)n_img * img_elems;
                    uint16_t *dst = s->pixels_bf16 + (size_t)n_img * img_elems;
                    for (size_t e = 0; e < img_elems; e++) dst[e] = f32_to_bf16(src[e]);
                }
                n_img++;
            }
        }
    }
    free(fill);
    free(docs);
    free(row_len);
    s->batch = (LlavaBatch){
        .B = rows,
        .T = T,
        .input_ids = s->b_ids,
        .labels = s->b_labels,
        .seg = (L->o.pack || padded) ? s->b_seg : NULL,
        .pos = L->o.pack ? s->b_pos : NULL,
        .n_images = n_img,
        .pixels = n_img ? s->pixels : NULL,
        .pixels_bf16 = n_img && L->o.pixels_bf16 ? s->pixels_bf16 : NULL,
    };
}

struct Worker {
    Loader *L;
    LoaderImageScratch scratch;  // this thread's decode buffers
};

static void *worker_main(void *arg) {
    Worker *w = arg;
    Loader *L = w->L;
    for (;;) {
        pthread_mutex_lock(&L->mu);
        Slot *s = NULL;
        while (!L->stop) {
            Slot *c = &L->slots[L->next_build % L->P];
            if (c->state == SLOT_RAW && c->seq == L->next_build) {
                s = c;
                s->state = SLOT_BUSY;
                L->next_build++;
                break;
            }
            pthread_cond_wait(&L->cv, &L->mu);
        }
        pthread_mutex_unlock(&L->mu);
        if (!s) return NULL;
        if (!s->failed) build_batch(L, s, &w->scratch);
        pthread_mutex_lock(&L->mu);
        s->state = SLOT_READY;
        pthread_cond_broadcast(&L->cv);
        pthread_mutex_unlock(&L->mu);
    }
}

// ---- open / next / close ------------------------------------------------------------

static int load_tables(Loader *L, Error *err) {
    int64_t N = 0;
    for (int k = 0; k < L->man.n_shards; k++) N += L->man.shards[k].samples;
    L->N = N;
    L->len = xmalloc((size_t)(N ? N : 1) * sizeof(int32_t));
    L->targets = xmalloc((size_t)(N ? N : 1) * sizeof(int32_t));
    L->shard = xmalloc((size_t)(N ? N : 1) * sizeof(int32_t));
    L->local = xmalloc((size_t)(N ? N : 1) * sizeof(int64_t));
    L->is_image = xmalloc((size_t)(N ? N : 1));
    int64_t x = 0;
    for (int k = 0; k < L->man.n_shards; k++) {
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", L->dir, L->man.shards[k].file);
        ShardReader r;
        if (shard_reader_open(&r, path, err) != 0) return -1;
        if (r.n_samples != L->man.shards[k].samples || r.fmt.store != L->man.store ||
            (r.fmt.store == STORE_PIXELS && r.fmt.image_size != L->S)) {
            err_set(err, "%s: %lld samples / store %s / size %d, the manifest says %lld / %s / %d: the folder is "
                    "inconsistent, re-run llava prep", path, (long long)r.n_samples, image_store_name(r.fmt.store),
                    r.fmt.image_size, (long long)L->man.shards[k].samples, image_store_name(L->man.store), L->S);
            shard_reader_close(&r);
            return -1;
        }
        for (int64_t i = 0; i < r.n_samples; i++, x++) {
            L->len[x] = r.length[i];
            L->targets[x] = r.targets[i];
            L->shard[x] = k;
            L->local[x] = i;
            L->is_image[x] = r.modality[i] == MODALITY_IMAGE;
            if (r.length[i] > L->o.max_length) {
                err_set(err, "%s: sample %lld has %d tokens, more than max_length %d (prepared with max_length %d)",
                        path, (long long)i, r.length[i], L->o.max_length, L->man.max_length);
                shard_reader_close(&r);
                return -1;
            }
        }
        shard_reader_close(&r);
    }
    return 0;
}

static int check_options(const LoaderOptions *o, Error *err) {
    if (!o->dir) return err_set(err, "loader: no shard folder given");
    if (o->micro_batch < 1 || o->grad_accum < 1 || o->world < 1 || o->rank < 0 || o->rank >= o->world)
        return err_set(err, "loader: need micro_batch >= 1, grad_accum >= 1, 0 <= rank < world (got %d, %d, %d/%d)",
                       o->micro_batch, o->grad_accum, o->rank, o->world);
    if (o->group_by_modality && !o->shuffle)
        return err_set(err, "loader: group_by_modality needs shuffling");
    if (o->max_length < 0 || o->workers < 0 || o->prefetch < 0) return err_set(err, "loader: negative option");
    if (o->resume.epoch < 0 || o->resume.step < 0 || o->resume.micro < 0 || o->resume.micro >= o->grad_accum)
        return err_set(err, "loader: invalid resume position (epoch %lld, step %lld, micro %d)",
                       (long long)o->resume.epoch, (long long)o->resume.step, o->resume.micro);
    return 0;
}

Loader *loader_open(const LoaderOptions *opts, Error *err) {
    if (check_options(opts, err) != 0) return NULL;
    Loader *L = xcalloc(1, sizeof *L);
    L->o = *opts;
    snprintf(L->dir, sizeof L->dir, "%s", opts->dir);
    L->o.dir = L->dir;
    pthread_mutex_init(&L->mu, NULL);
    pthread_cond_init(&L->cv, NULL);
    if (manifest_read(&L->man, L->dir, err) != 0) goto fail;
    if (!L->man.complete) {
        err_set(err, "%s: llava prep has not finished on this folder: run it again to complete the shards", L->dir);
        goto fail;
    }
    L->S = L->man.image_size;
    if (L->o.max_length == 0) L->o.max_length = L->man.max_length;
    if (loader_image_init(&L->img, &L->man, L->dir, err) != 0) goto fail;
    if (load_tables(L, err) != 0) goto fail;
    L->G = (int64_t)L->o.micro_batch * L->o.grad_accum * L->o.world;
    L->steps_per_epoch = L->o.drop_last ? L->N / L->G : (L->N + L->G - 1) / L->G;
    if (L->steps_per_epoch == 0) {
        err_set(err, "%s: %lld samples are fewer than one global batch of %lld (micro_batch x grad_accum x world)",
                L->dir, (long long)L->N, (long long)L->G);
        goto fail;
    }
    if (L->o.resume.step >= L->steps_per_epoch) {
        err_set(err, "loader: resume step %lld is outside the epoch's %lld steps (different batch size or data?)",
                (long long)L->o.resume.step, (long long)L->steps_per_epoch);
        goto fail;
    }
    L->g0 = (L->o.resume.epoch * L->steps_per_epoch + L->o.resume.step) * L->o.grad_accum + L->o.resume.micro;
    L->order = xmalloc((size_t)L->N * sizeof(int64_t));
    L->order_epoch = -1;
    L->open = xcalloc((size_t)L->man.n_shards, sizeof(ShardReader));
    L->last_use = xcalloc((size_t)L->man.n_shards, sizeof(int64_t));
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    L->n_workers = L->o.workers ? L->o.workers : (cores > 2 ? (int)cores - 1 : 1);
    // A whole step may be out at once (loader_next_step), plus the prefetch.
    L->P = L->o.grad_accum + (L->o.prefetch ? L->o.prefetch : 2 * L->n_workers + 2);
    L->slots = xcalloc((size_t)L->P, sizeof(Slot));
    L->workers = xcalloc((size_t)L->n_workers, sizeof(pthread_t));
    L->worker_state = xcalloc((size_t)L->n_workers, sizeof(Worker));
    for (int i = 0; i < L->n_workers; i++) L->worker_state[i].L = L;
    if (pthread_create(&L->reader, NULL, reader_main, L) != 0) {
        err_set(err, "loader: cannot start the reader thread");
        goto fail;
    }
    L->threads_started = 1;
    for (int i = 0; i < L->n_workers; i++)
        if (pthread_create(&L->workers[i], NULL, worker_main, &L->worker_state[i]) != 0)
            FATAL("loader: cannot start worker thread %d", i);
    return L;
fail:
    loader_close(L);
    return NULL;
}

// Marks the micro-batches handed out by earlier calls free (under the lock).
static void release_out(Loader *L) {
    for (; L->n_out > 0; L->n_out--) L->slots[(L->next_out - L->n_out) % L->P].state = SLOT_FREE;
    pthread_cond_broadcast(&L->cv);
}

// Waits for the next micro-batch and hands it out (under the lock).
static int take_next(Loader *L, LoaderBatch *out, Error *err) {
    Slot *s = &L->slots[L->next_out % L->P];
    while (!(s->state == SLOT_READY && s->seq == L->next_out)) pthread_cond_wait(&L->cv, &L->mu);
    s->state = SLOT_OUT;
    if (s->failed) {  // nothing after a read or decode error is valid
        L->failed = 1;
        L->fail_err = s->err;
        return err_set(err, "%s", s->err.msg);
    }
    L->next_out++;
    L->n_out++;
    memset(out, 0, sizeof *out);
    out->batch = s->batch;
    out->pos = s->pos;
    out->last_of_step = s->pos.micro == L->o.grad_accum - 1;
    out->last_of_epoch = out->last_of_step && s->pos.step == L->steps_per_epoch - 1;
    out->n_samples = s->n;
    out->sample_index = s->out_index;
    out->sample_id = (const char *const *)s->out_ids;
    out->targets = s->targets;
    out->step_targets = s->step_targets;
    out->step_samples = s->step_samples;
    return 0;
}

int loader_next(Loader *L, LoaderBatch *out, Error *err) {
    if (L->failed) return err_set(err, "%s", L->fail_err.msg);
    pthread_mutex_lock(&L->mu);
    release_out(L);
    int rc = take_next(L, out, err);
    pthread_mutex_unlock(&L->mu);
    return rc;
}

int loader_next_step(Loader *L, LoaderBatch *out, int *n, Error *err) {
    *n = 0;
    if (L->failed) return err_set(err, "%s", L->fail_err.msg);
    pthread_mutex_lock(&L->mu);
    release_out(L);
    int rc = 0;
    do rc = take_next(L, &out[(*n)++], err);
    while (rc == 0 && !out[*n - 1].last_of_step);
    pthread_mutex_unlock(&L->mu);
    if (rc != 0) *n = 0;
    return rc;
}

static void slot_free(Slot *s) {
    for (size_t i = 0; i < s->cap_n; i++) free(s->ids[i]);
    free(s->index); free(s->ids); free(s->len); free(s->tok_off); free(s->tok); free(s->lab); free(s->img);
    free(s->img_bytes); free(s->img_off); free(s->img_len); free(s->b_ids); free(s->b_labels); free(s->b_seg);
    free(s->b_pos); free(s->pixels); free(s->pixels_bf16); free(s->row_of); free(s->place);
    free(s->out_index); free(s->out_ids);
}

void loader_close(Loader *L) {
    if (!L) return;
    if (L->threads_started) {
        pthread_mutex_lock(&L->mu);
        L->stop = 1;
        pthread_cond_broadcast(&L->cv);
        pthread_mutex_unlock(&L->mu);
        pthread_join(L->reader, NULL);
        for (int i = 0; i < L->n_workers; i++)
            if (L->workers[i]) pthread_join(L->workers[i], NULL);
    }
    for (int k = 0; L->open && k < L->man.n_shards; k++)
        if (L->open[k].hid > 0) shard_reader_close(&L->open[k]);
    for (int i = 0; L->slots && i < L->P; i++) slot_free(&L->slots[i]);
    for (int i = 0; L->worker_state && i < L->n_workers; i++) loader_image_scratch_free(&L->worker_state[i].scratch);
    free(L->worker_state);
    manifest_free(&L->man);
    free(L->slots); free(L->workers); free(L->open); free(L->last_use); free(L->order);
    free(L->len); free(L->targets); free(L->shard); free(L->local); free(L->is_image);
    pthread_mutex_destroy(&L->mu);
    pthread_cond_destroy(&L->cv);
    free(L);
}
