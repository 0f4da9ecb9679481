#include "train/zero.h"

#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kernels/nccl.h"

// ---- giving memory back ------------------------------------------------------------

// Zeroes [p, p + bytes) and returns its whole pages to the kernel: they read
// as zeros afterwards and no longer count in the resident set.
static void release_bytes(void *p, size_t bytes) {
    if (!bytes) return;
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)p, e = a + bytes;
    uintptr_t lo = (a + page - 1) / page * page, hi = e / page * page;
    if (lo >= hi) {
        memset(p, 0, bytes);
        return;
    }
    memset(p, 0, lo - a);
    memset((void *)hi, 0, e - hi);
    // The buffer is private anonymous memory (the CPU backend's allocation):
    // MADV_DONTNEED makes its pages read as zeros from now on.
    if (madvise((void *)lo, hi - lo, MADV_DONTNEED) != 0)
        memset((void *)lo, 0, hi - lo);  // still correct, only the memory is not given back
}

static size_t clamp_lo(size_t a, size_t b) { return a > b ? a : b; }
static size_t clamp_hi(size_t a, size_t b) { return a < b ? a : b; }

// Gives back elements [lo, hi) of a buffer of `elem`-byte elements except the
// part [keep_lo, keep_hi) this process owns.
static void release_except(void *buf, size_t elem, size_t lo, size_t hi, size_t keep_lo, size_t keep_hi) {
    char *b = buf;
    size_t a_hi = clamp_hi(hi, keep_lo), b_lo = clamp_lo(lo, keep_hi);
    if (lo < a_hi) release_bytes(b + lo * elem, (a_hi - lo) * elem);
    if (b_lo < hi) release_bytes(b + b_lo * elem, (hi - b_lo) * elem);
}

// ---- collectives on module ranges ----------------------------------------------------

// Rank r's part of [lo, hi) in module mod: its length (0: none), from *plo.
static size_t owner_part(const Zero *z, ModuleId mod, int r, size_t lo, size_t hi, size_t *plo) {
    size_t a = clamp_lo(lo, z->own_lo[mod][r]), b = clamp_hi(hi, z->own_hi[mod][r]);
    *plo = a;
    return a < b ? b - a : 0;
}

// Every owner's part of weights [lo, hi) of module mod to every process. On a
// GPU: NCCL broadcasts on the communication stream, after the ops so far
// (AdamW) and before the later ones.
static void gather_weights(Zero *z, ModuleId mod, size_t lo, size_t hi) {
    const size_t A = z->m->ops->act_size;
    if (z->dev && !z->nccl) return;  // one GPU process: nothing to exchange
    if (z->dev) nccl_comm_waits_compute(z->nccl);
    if (z->dev) nccl_group_start(z->nccl);  // every owner's part as one NCCL operation
    for (int r = 0; r < z->comm.world; r++) {
        size_t plo, n = owner_part(z, mod, r, lo, hi, &plo);
        if (!n) continue;
        char *p = (char *)z->m->weights[mod] + plo * A, msg[512];
        if (!z->dev)
            comm_broadcast(&z->comm, p, n * A, r);
        else if (nccl_broadcast_bytes_async(z->nccl, p, n * A, r, msg, sizeof msg) != 0)
            FATAL("ZeRO weight gather: %s", msg);
    }
    if (z->dev) nccl_group_end(z->nccl);
    if (z->dev) nccl_compute_waits_comm(z->nccl);
}

static void release_weights(Zero *z, ModuleId mod, size_t lo, size_t hi) {
    int me = z->comm.rank;
    release_except(z->m->weights[mod], z->m->ops->act_size, lo, hi, z->own_lo[mod][me], z->own_hi[mod][me]);
}

// The reduce-scatter of gradient bucket [lo, hi) of module mod: each owner
// gets the sum of its part; everything else of the bucket is given back.
static void reduce_scatter_grads(Zero *z, ModuleId mod, size_t lo, size_t hi) {
    float *g = z->m->grads[mod];
    if (z->dev) {  // a non-layer bucket on a GPU: its chunks stay mapped (zero_after_backward zeroes it)
        zero_device_reduce_range(z->dev, z->m, mod, lo, hi, z->own_lo[mod], z->own_hi[mod], z->comm.world);
        return;
    }
    for (int r = 0; r < z->comm.world; r++) {
        size_t plo, n = owner_part(z, mod, r, lo, hi, &plo);
        if (n) comm_reduce_sum_f32(&z->comm, g + plo, n, r);
    }
    int me = z->comm.rank;
    release_except(g, sizeof(float), lo, hi, z->own_lo[mod][me], z->own_hi[mod][me]);
}

// ---- the layer hook --------------------------------------------------------------------

// Starts the broadcasts of layer l's owner parts without waiting (on a GPU:
// its chunks mapped and the broadcasts queued on the communication stream).
static void prefetch_layer(Zero *z, LayerStack *st, int l) {
    if (l < 0 || l >= st->run_layers || st->gathered[l] || st->prefetched >= 0) return;
    const size_t A = z->m->ops->act_size;
    if (z->dev) {
        zero_device_gather_layer(z->dev, z->m, st->module, l, st->lo[l], st->hi[l], z->own_lo[st->module],
                                 z->own_hi[st->module], z->comm.world);
        st->prefetched = l;
        return;
    }
    for (int r = 0; r < z->comm.world; r++) {
        size_t plo, n = owner_part(z, st->module, r, st->lo[l], st->hi[l], &plo);
        if (n) comm_ibroadcast(&z->comm, (char *)z->m->weights[st->module] + plo * A, n * A, r, &st->pending);
    }
    st->prefetched = l;
}

// Layer l's weights whole here: the prefetch waited for, or a gather now.
static void ensure_layer(Zero *z, LayerStack *st, int l) {
    if (z->dev && !st->gathered[l]) {
        prefetch_layer(z, st, l);  // nothing if l is the layer prefetched
        CHECK(st->prefetched == l, "ZeRO-3: layer %d needed while layer %d is being gathered", l, st->prefetched);
        zero_device_use_layer(z->dev, st->module, l);  // the compute stream waits for its broadcasts
        st->prefetched = -1;
        st->gathered[l] = 1;
    }
    if (st->prefetched == l) {
        comm_wait_all(&z->comm, &st->pending);
        st->prefetched = -1;
        st->gathered[l] = 1;
    }
    if (!st->gathered[l]) {
        gather_weights(z, st->module, st->lo[l], st->hi[l]);
        st->gathered[l] = 1;
    }
}

static void drop_layer(Zero *z, LayerStack *st, int l) {
    if (z->dev)
        zero_device_drop_layer(z->dev, st->module, st->lo[l], st->hi[l]);  // once the compute stream is past it
    else
        release_weights(z, st->module, st->lo[l], st->hi[l]);
    st->gathered[l] = 0;
}

// Every gathered layer given back (their non-owned parts go stale at an update).
static void drop_all_layers(Zero *z) {
    for (int k = 0; k < STACK_COUNT; k++) {
        LayerStack *st = &z->stack[k];
        if (!st->sharded) continue;
        if (st->prefetched >= 0) {
            if (z->dev)
                zero_device_use_layer(z->dev, st->module, st->prefetched);  // its broadcasts done before its chunks go
            else
                comm_wait_all(&z->comm, &st->pending);
            st->gathered[st->prefetched] = 1;
            st->prefetched = -1;
        }
        for (int l = 0; l < st->layers; l++)
            if (st->gathered[l]) drop_layer(z, st, l);
    }
}

// Zeroes elements [lo, hi) of a device buffer except the owned part [keep_lo, keep_hi), on the ops' stream.
static void zero_except(const Ops *ops, float *g, size_t lo, size_t hi, size_t keep_lo, size_t keep_hi) {
    size_t a_hi = clamp_hi(hi, keep_lo), b_lo = clamp_lo(lo, keep_hi);
    if (lo < a_hi) ops->zero(g + lo, (a_hi - lo) * sizeof(float));
    if (b_lo < hi) ops->zero(g + b_lo, (hi - b_lo) * sizeof(float));
}

// A GPU layer bucket before its backward: its chunks mapped, the part this
// process does not own zeroed (backward adds into it; the owned part holds
// the sum of the micro-batches so far).
static void hold_layer_grads(Zero *z, ModuleId mod, size_t lo, size_t hi) {
    int me = z->comm.rank;
    zero_device_hold(z->dev, &z->dev->grads[mod], lo, hi);
    zero_except(z->m->ops, z->m->grads[mod], lo, hi, z->own_lo[mod][me], z->own_hi[mod][me]);
}

static void on_layer(void *ctx, ModuleId mod, int l, LayerEvent ev);

// Every rank must issue the same collectives in the same order: a forward
// whose micro-batch has no image skips the vision tower (model_forward), so
// with its layers sharded the gathers the other ranks make for them are made
// here, before the LLM's first layer (where they come on a rank with images).
static void catch_up_vision(Zero *z) {
    const LayerStack *v = &z->stack[STACK_VISION];
    if (v->sharded && !z->vision_ran)
        for (int l = 0; l < v->run_layers; l++) {
            on_layer(z, MODULE_VISION, l, LAYER_BEFORE_FORWARD);
            on_layer(z, MODULE_VISION, l, LAYER_AFTER_FORWARD);
        }
    z->vision_ran = 0;  // for the next forward
}

static void on_layer(void *ctx, ModuleId mod, int l, LayerEvent ev) {
    Zero *z = ctx;
    LayerStack *st = &z->stack[mod == MODULE_LLM ? STACK_LLM : STACK_VISION];
    const int sharded = st->sharded;
    switch (ev) {
    case LAYER_BEFORE_FORWARD:
        if (mod == MODULE_VISION && l == 0) z->vision_ran = 1;
        if (mod == MODULE_LLM && l == 0) catch_up_vision(z);
        if (!sharded) break;
        ensure_layer(z, st, l);
        prefetch_layer(z, st, l + 1);
        break;
    case LAYER_AFTER_FORWARD:
        // the last LLM layer is the first one backward needs: it stays
        if (sharded && !(st->has_backward && l == st->run_layers - 1)) drop_layer(z, st, l);
        break;
    case LAYER_BEFORE_BACKWARD:
        if (z->dev && z->m->grads[mod]) hold_layer_grads(z, mod, st->lo[l], st->hi[l]);
        if (!sharded) break;
        ensure_layer(z, st, l);
        prefetch_layer(z, st, l - 1);
        break;
    case LAYER_AFTER_BACKWARD:
        if (z->dev && z->m->grads[mod])
            zero_device_reduce_bucket(z->dev, z->m, mod, st->lo[l], st->hi[l], z->own_lo[mod], z->own_hi[mod],
                                      z->comm.world);
        else if (z->m->grads[mod])
            reduce_scatter_grads(z, mod, st->lo[l], st->hi[l]);
        if (sharded) drop_layer(z, st, l);
        break;
    }
}

// ---- setup -------------------------------------------------------------------------------

static void set_owners(Zero *z, ModuleId mod, int by_module_elements) {
    const int W = z->comm.world;
    z->own_lo[mod] = xcalloc((size_t)W, sizeof(size_t));
    z->own_hi[mod] = xcalloc((size_t)W, sizeof(size_t));
    for (int r = 0; r < W; r++) {
        size_t b, e, off;
        if (by_module_elements) {
            optim_slice(z->m->params.module_numel[mod], r, W, &b, &e);
            z->own_lo[mod][r] = b;
            z->own_hi[mod][r] = e;
        } else {
            optim_slice(z->opt->total, r, W, &b, &e);
            size_t n = optim_module_part(z->opt, z->m, mod, b, e, &off);
            z->own_lo[mod][r] = off;
            z->own_hi[mod][r] = off + n;
        }
    }
}

// The element ranges of a module's layers: each layer's tensors are adjacent
// in the layout (train/params.c), from its first tensor to the next layer's
// (or to `after`, the first tensor behind the last layer).
static void stack_init(LayerStack *st, const LlavaModel *m, ModuleId mod, int layers, int run_layers,
                       const char *first_fmt, const char *after) {
    st->module = mod;
    st->layers = layers;
    st->run_layers = run_layers;
    st->has_backward = mod == MODULE_LLM;
    st->prefetched = -1;
    st->lo = xcalloc((size_t)layers + 1, sizeof(size_t));
    st->hi = xcalloc((size_t)layers + 1, sizeof(size_t));
    st->gathered = xcalloc((size_t)layers + 1, sizeof(int));
    for (int l = 0; l < layers; l++) {
        st->lo[l] = params_offset(&m->params, first_fmt, l);
        st->hi[l] = l + 1 < layers ? params_offset(&m->params, first_fmt, l + 1) : params_offset(&m->params, "%s", after);
        CHECK(st->lo[l] < st->hi[l] && (l == 0 || st->lo[l] == st->hi[l - 1]),
              "%s layer %d is not contiguous in the parameter layout", module_name(mod), l);
    }
}

static void stack_free(Zero *z, LayerStack *st) {
    comm_wait_all(&z->comm, &st->pending);
    comm_pending_free(&st->pending);
    free(st->lo);
    free(st->hi);
    free(st->gathered);
}

// At setup (the CPU: the non-owned layer weights given back; a GPU's are
// moved into mapped chunks by init_device instead) and after a save.
static void release_layers(Zero *z, LayerStack *st) {
    if (st->sharded && st->layers && strcmp(z->m->ops->name, "cpu") == 0) release_weights(z, st->module, st->lo[0], st->hi[st->layers - 1]);
    if (st->sharded && st->layers && z->dev && z->saving)
        zero_device_let_go(z->dev, &z->dev->weights[st->module], st->lo[0], st->hi[st->layers - 1]);
    for (int l = 0; l < st->layers; l++) st->gathered[l] = 0;
}

// The non-layer ranges of a module's gradients: the LLM's embedding (and a
// tied head) before the layers and final norm and head after them; all of
// any other module. Returns how many (at most 2).
static int non_layer_ranges(const Zero *z, ModuleId mod, size_t out[2][2]) {
    const LayerStack *st = &z->stack[mod == MODULE_VISION ? STACK_VISION : STACK_LLM];
    const size_t n = z->m->params.module_numel[mod];
    if (mod != MODULE_LLM && mod != MODULE_VISION) {
        out[0][0] = 0, out[0][1] = n;
        return 1;
    }
    out[0][0] = 0, out[0][1] = st->lo[0];
    out[1][0] = st->hi[st->layers - 1], out[1][1] = n;
    return 2;
}

static int init_device(Zero *z, Error *err) {
    size_t own[MODULE_COUNT][2] = {{0}}, keep[MODULE_COUNT][2][2] = {{{0}}};
    int n_keep[MODULE_COUNT] = {0};
    for (int i = 0; i < MODULE_COUNT; i++) {
        if (!z->m->grads[i]) continue;
        own[i][0] = z->own_lo[i][z->comm.rank];
        own[i][1] = z->own_hi[i][z->comm.rank];
        n_keep[i] = non_layer_ranges(z, (ModuleId)i, keep[i]);
    }
    z->dev = xcalloc(1, sizeof *z->dev);
    if (zero_device_init(z->dev, z->m, z->nccl, own, keep, n_keep, err) != 0) return -1;
    // ZeRO-3: the sharded stacks' weights too (the LLM; with zero3_shard_frozen
    // the vision tower); the non-layer ranges stay whole
    const int me = z->comm.rank;
    for (int k = 0; k < STACK_COUNT; k++) {
        const LayerStack *st = &z->stack[k];
        if (!st->sharded) continue;
        const ModuleId mod = st->module;
        const size_t w_own[2] = {z->own_lo[mod][me], z->own_hi[mod][me]};
        size_t w_keep[2][2];
        int n = non_layer_ranges(z, mod, w_keep);
        if (zero_device_init_weights(z->dev, z->m, mod, w_own, w_keep, n, st->layers, err) != 0) return -1;
    }
    return 0;
}

int zero_init(Zero *z, int stage, int shard_frozen, const Comm *comm, void *nccl, LlavaModel *m,
              const Optimizer *opt, Error *err) {
    memset(z, 0, sizeof *z);
    const int on_gpu = strcmp(m->ops->name, "cpu") != 0;
    if (on_gpu && comm->world > 1 && !nccl)
        return err_set(err, "zero_stage %d on GPUs needs NCCL (the warning above says why it could not be opened)",
                       stage);
    z->stage = stage;
    z->nccl = nccl;
    z->comm = *comm;
    z->m = m;
    z->opt = opt;
    const LlavaConfig *c = &m->cfg;
    stack_init(&z->stack[STACK_LLM], m, MODULE_LLM, c->text.layers, c->text.layers, "llm.layers.%d.input_layernorm.weight",
               "llm.norm.weight");
    stack_init(&z->stack[STACK_VISION], m, MODULE_VISION, c->vision.layers, c->vision_layers_run,
               "vision.encoder.layers.%d.layer_norm1.weight", "vision.post_layernorm.weight");
    for (int i = 0; i < MODULE_COUNT; i++)
        if (m->trainable[i]) set_owners(z, (ModuleId)i, 0);
    const int zero3 = stage == 3 && comm->world > 1;
    z->stack[STACK_LLM].sharded = zero3 && (m->trainable[MODULE_LLM] || shard_frozen);
    z->stack[STACK_VISION].sharded = zero3 && shard_frozen && !m->trainable[MODULE_VISION];
    for (int k = 0; k < STACK_COUNT; k++) {
        LayerStack *st = &z->stack[k];
        if (st->sharded && !z->own_lo[st->module]) set_owners(z, st->module, 1);
        release_layers(z, st);
    }
    if (on_gpu && init_device(z, err) != 0) return -1;
    zero_begin_step(z);  // the gradients model_set_stage allocated whole: only the slice stays
    m->layer_hook = on_layer;
    m->layer_hook_ctx = z;
    return 0;
}

void zero_free(Zero *z) {
    if (z->dev) {
        // What a GPU process held (tests/test_zero_cuda.sh checks it against the layer sizes).
        const ZeroDevice *d = z->dev;
        const LayerStack *st = &z->stack[STACK_LLM];
        const double MiB = 1048576.0, layer = st->layers ? (double)(st->hi[0] - st->lo[0]) * sizeof(float) : 0;
        printf("zero: rank %d device gradients: peak %.3f MiB mapped; whole %.3f, kept (slice + non-layer) %.3f, one "
               "layer %.3f, chunk %.3f MiB\n", z->comm.rank, (double)d->grad_mem.peak / MiB,
               (double)d->grad_mem.whole / MiB, (double)d->grad_mem.kept / MiB, layer / MiB,
               (double)d->st->chunk / MiB);
        if (d->weight_mem.whole)
            printf("zero: rank %d device sharded weights: peak %.3f MiB mapped; whole %.3f, kept (slice + non-layer) %.3f "
                   "MiB\n", z->comm.rank, (double)d->weight_mem.peak / MiB, (double)d->weight_mem.whole / MiB,
                   (double)d->weight_mem.kept / MiB);
        fflush(stdout);
        zero_device_free(z->dev, z->m);
        free(z->dev);
    }
    if (z->m && z->m->layer_hook_ctx == z) {
        z->m->layer_hook = NULL;
        z->m->layer_hook_ctx = NULL;
    }
    for (int i = 0; i < MODULE_COUNT; i++) {
        free(z->own_lo[i]);
        free(z->own_hi[i]);
    }
    for (int k = 0; k < STACK_COUNT; k++) stack_free(z, &z->stack[k]);
    memset(z, 0, sizeof *z);
}

// ---- the step ----------------------------------------------------------------------------

void zero_begin_step(Zero *z) {
    int me = z->comm.rank;
    drop_all_layers(z);
    if (z->dev) zero_device_settle(z->dev);  // every layer bucket's chunks let go
    for (int i = 0; i < MODULE_COUNT; i++) {
        float *g = z->m->grads[i];
        if (!g) continue;
        size_t lo = z->own_lo[i][me], hi = z->own_hi[i][me];
        if (z->dev) {  // the slice and the non-layer ranges (all that is mapped) start at zero
            size_t r[2][2];
            int n = non_layer_ranges(z, (ModuleId)i, r);
            z->m->ops->zero(g + lo, (hi - lo) * sizeof(float));
            for (int k = 0; k < n; k++)
                if (r[k][0] < r[k][1]) z->m->ops->zero(g + r[k][0], (r[k][1] - r[k][0]) * sizeof(float));
            continue;
        }
        memset(g + lo, 0, (hi - lo) * sizeof(float));
        release_except(g, sizeof(float), 0, z->m->params.module_numel[i], lo, hi);
    }
}

void zero_after_backward(Zero *z) {
    LlavaModel *m = z->m;
    for (int i = 0; i < MODULE_COUNT; i++) {
        if (!m->grads[i]) continue;
        size_t r[2][2];
        int n = non_layer_ranges(z, (ModuleId)i, r);
        for (int k = 0; k < n; k++) reduce_scatter_grads(z, (ModuleId)i, r[k][0], r[k][1]);
    }
    if (!z->dev) return;
    // GPU: the ops wait for every reduce (the next micro-batch's backward
    // writes these buffers again, the norm and AdamW read the slice), then
    // the non-owned parts of the non-layer ranges start again from zero.
    if (z->nccl) nccl_compute_waits_comm(z->nccl);
    int me = z->comm.rank;
    for (int i = 0; i < MODULE_COUNT; i++) {
        if (!m->grads[i]) continue;
        size_t r[2][2];
        int n = non_layer_ranges(z, (ModuleId)i, r);
        for (int k = 0; k < n; k++)
            zero_except(m->ops, m->grads[i], r[k][0], r[k][1], z->own_lo[i][me], z->own_hi[i][me]);
    }
}

void zero_idle_micro_batch(Zero *z, int backward) {
    const int layers = z->stack[STACK_LLM].layers;
    for (int l = 0; l < layers; l++) {  // the vision tower's gathers come with layer 0's (catch_up_vision)
        on_layer(z, MODULE_LLM, l, LAYER_BEFORE_FORWARD);
        on_layer(z, MODULE_LLM, l, LAYER_AFTER_FORWARD);
    }
    const int *tr = z->m->trainable;
    if (!backward) return;
    // The buckets: this rank's part of each is zero (the held chunks' non-owned
    // parts are zeroed, the owned part keeps the sum so far), as for a
    // micro-batch whose tokens are all masked.
    if (tr[MODULE_PROJECTOR] || tr[MODULE_LLM] || tr[MODULE_LORA]) {  // model_backward's own test
        for (int l = layers - 1; l >= 0; l--) {
            on_layer(z, MODULE_LLM, l, LAYER_BEFORE_BACKWARD);
            on_layer(z, MODULE_LLM, l, LAYER_AFTER_BACKWARD);
        }
    }
    zero_after_backward(z);
}

double zero_grad_norm(const Zero *z) {
    double sq = 0.0;
    int me = z->comm.rank;
    for (int i = 0; i < MODULE_COUNT; i++)
        if (z->m->grads[i])
            sq += z->m->ops->sum_squares(z->m->grads[i] + z->own_lo[i][me], z->own_hi[i][me] - z->own_lo[i][me]);
    comm_allreduce_sum_f64(&z->comm, &sq, 1);
    return sqrt(sq);
}

void zero_after_update(Zero *z) {
    LlavaModel *m = z->m;
    drop_all_layers(z);
    const LayerStack *st = &z->stack[STACK_LLM];
    for (int i = 0; i < MODULE_COUNT; i++) {
        if (!m->trainable[i]) continue;
        size_t n = m->params.module_numel[i];
        if (i == MODULE_LLM && st->sharded) {
            // the layers stay sharded until their next forward
            gather_weights(z, MODULE_LLM, 0, st->lo[0]);
            gather_weights(z, MODULE_LLM, st->hi[st->layers - 1], n);
        } else {
            gather_weights(z, (ModuleId)i, 0, n);
        }
    }
}

void zero_gather_for_save(Zero *z) {
    drop_all_layers(z);
    const int W = z->comm.world;
    size_t *counts = xcalloc((size_t)W, sizeof(size_t)), *displs = xcalloc((size_t)W, sizeof(size_t));
    for (int k = 0; k < STACK_COUNT; k++) {
        const LayerStack *st = &z->stack[k];
        if (!st->sharded) continue;
        const size_t A = z->m->ops->act_size, lo = st->lo[0], hi = st->hi[st->layers - 1];
        for (int r = 0; r < W; r++) {
            size_t plo, n = owner_part(z, st->module, r, lo, hi, &plo);
            counts[r] = n * A;
            displs[r] = (z->dev ? plo - lo : plo) * A;
        }
        if (!z->dev) {
            comm_gatherv_bytes_to0(&z->comm, z->m->weights[st->module], counts, displs);
            continue;
        }
        // A GPU: through host memory (a save is rare): rank 0 maps the whole
        // layer range and uploads what every owner sent.
        char *dev = z->m->weights[st->module], *host = xmalloc((hi - lo) * A);
        const int me = z->comm.rank;
        if (counts[me]) z->m->ops->download(host + displs[me], dev + lo * A + displs[me], counts[me]);
        comm_gatherv_bytes_to0(&z->comm, host, counts, displs);
        if (me == 0) {
            zero_device_hold(z->dev, &z->dev->weights[st->module], lo, hi);
            z->m->ops->upload(dev + lo * A, host, (hi - lo) * A);
            z->m->ops->synchronize();
            z->saving = 1;
        }
        free(host);
    }
    free(counts);
    free(displs);
}

void zero_release_after_save(Zero *z) {
    if (z->comm.rank != 0) return;
    for (int k = 0; k < STACK_COUNT; k++) release_layers(z, &z->stack[k]);
    z->saving = 0;
}
