#include "train/zero.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

// ---- giving memory back ------------------------------------------------------------

// Zeroes [p, p + bytes) and returns its whole pages to the kernel: they read
// as zeros afterwards and no longer count in the resident set.
static size_t release_bytes(void *p, size_t bytes) {
    if (!bytes) return 0;
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)p, e = a + bytes;
    uintptr_t lo = (a + page - 1) / page * page, hi = e / page * page;
    if (lo >= hi) {
        memset(p, 0, bytes);
        return 0;
    }
    memset(p, 0, lo - a);
    memset((void *)hi, 0, e - hi);
    // The buffer is private anonymous memory (the CPU backend's allocation):
    // MADV_DONTNEED makes its pages read as zeros from now on.
    if (madvise((void *)lo, hi - lo, MADV_DONTNEED) != 0) {
        memset((void *)lo, 0, hi - lo);  // still correct, only the memory is not given back
        return 0;
    }
    return hi - lo;
}

static size_t clamp_lo(size_t a, size_t b) { return a > b ? a : b; }
static size_t clamp_hi(size_t a, size_t b) { return a < b ? a : b; }

// Gives back elements [lo, hi) of a buffer of `elem`-byte elements except the
// part [keep_lo, keep_hi) this process owns.
static void release_except(Zero *z, void *buf, size_t elem, size_t lo, size_t hi, size_t keep_lo, size_t keep_hi) {
    char *b = buf;
    size_t a_hi = clamp_hi(hi, keep_lo), b_lo = clamp_lo(lo, keep_hi);
    if (lo < a_hi) z->bytes_released += release_bytes(b + lo * elem, (a_hi - lo) * elem);
    if (b_lo < hi) z->bytes_released += release_bytes(b + b_lo * elem, (hi - b_lo) * elem);
}

// ---- collectives on module ranges ----------------------------------------------------

// Rank r's part of [lo, hi) in module mod: [*plo, *phi), possibly empty.
static size_t owner_part(const Zero *z, ModuleId mod, int r, size_t lo, size_t hi, size_t *plo) {
    size_t a = clamp_lo(lo, z->own_lo[mod][r]), b = clamp_hi(hi, z->own_hi[mod][r]);
    *plo = a;
    return a < b ? b - a : 0;
}

// Every owner's part of weights [lo, hi) of module mod to every process.
static void gather_weights(Zero *z, ModuleId mod, size_t lo, size_t hi) {
    const size_t A = z->m->ops->act_size;
    for (int r = 0; r < z->comm.world; r++) {
        size_t plo, n = owner_part(z, mod, r, lo, hi, &plo);
        if (n) comm_broadcast(&z->comm, (char *)z->m->weights[mod] + plo * A, n * A, r);
    }
}

static void release_weights(Zero *z, ModuleId mod, size_t lo, size_t hi) {
    int me = z->comm.rank;
    release_except(z, z->m->weights[mod], z->m->ops->act_size, lo, hi, z->own_lo[mod][me], z->own_hi[mod][me]);
}

// The reduce-scatter of gradient bucket [lo, hi) of module mod: each owner
// gets the sum of its part; everything else of the bucket is given back.
static void reduce_scatter_grads(Zero *z, ModuleId mod, size_t lo, size_t hi) {
    float *g = z->m->grads[mod];
    for (int r = 0; r < z->comm.world; r++) {
        size_t plo, n = owner_part(z, mod, r, lo, hi, &plo);
        if (n) comm_reduce_sum_f32(&z->comm, g + plo, n, r);
    }
    int me = z->comm.rank;
    release_except(z, g, sizeof(float), lo, hi, z->own_lo[mod][me], z->own_hi[mod][me]);
}

// ---- the layer hook --------------------------------------------------------------------

// Starts the broadcasts of layer l's owner parts without waiting.
static void prefetch_layer(Zero *z, int l) {
    if (l < 0 || l >= z->layers || z->gathered[l] || z->prefetched >= 0) return;
    const size_t A = z->m->ops->act_size;
    for (int r = 0; r < z->comm.world; r++) {
        size_t plo, n = owner_part(z, MODULE_LLM, r, z->layer_lo[l], z->layer_hi[l], &plo);
        if (n) comm_ibroadcast(&z->comm, (char *)z->m->weights[MODULE_LLM] + plo * A, n * A, r, &z->pending);
    }
    z->prefetched = l;
}

// Layer l's weights whole here: the prefetch waited for, or a gather now.
static void ensure_layer(Zero *z, int l) {
    if (z->prefetched == l) {
        comm_wait_all(&z->comm, &z->pending);
        z->prefetched = -1;
        z->gathered[l] = 1;
    }
    if (!z->gathered[l]) {
        gather_weights(z, MODULE_LLM, z->layer_lo[l], z->layer_hi[l]);
        z->gathered[l] = 1;
    }
}

static void drop_layer(Zero *z, int l) {
    release_weights(z, MODULE_LLM, z->layer_lo[l], z->layer_hi[l]);
    z->gathered[l] = 0;
}

// Every gathered layer given back (their non-owned parts go stale at an update).
static void drop_all_layers(Zero *z) {
    if (!z->llm_weights_sharded) return;
    if (z->prefetched >= 0) {
        comm_wait_all(&z->comm, &z->pending);
        z->gathered[z->prefetched] = 1;
        z->prefetched = -1;
    }
    for (int l = 0; l < z->layers; l++)
        if (z->gathered[l]) drop_layer(z, l);
}

static void on_layer(void *ctx, int l, LayerEvent ev) {
    Zero *z = ctx;
    const int sharded = z->llm_weights_sharded, last = z->layers - 1;
    switch (ev) {
    case LAYER_BEFORE_FORWARD:
        if (!sharded) break;
        ensure_layer(z, l);
        prefetch_layer(z, l + 1);
        break;
    case LAYER_AFTER_FORWARD:
        if (sharded && l < last) drop_layer(z, l);  // the last one is needed first in backward
        break;
    case LAYER_BEFORE_BACKWARD:
        if (!sharded) break;
        ensure_layer(z, l);
        prefetch_layer(z, l - 1);
        break;
    case LAYER_AFTER_BACKWARD:
        if (z->m->grads[MODULE_LLM]) reduce_scatter_grads(z, MODULE_LLM, z->layer_lo[l], z->layer_hi[l]);
        if (sharded) drop_layer(z, l);
        break;
    }
}

// ---- setup -------------------------------------------------------------------------------

static void set_owners(Zero *z, ModuleId mod, int by_module_elements) {
    const int W = z->comm.world;
    z->own_lo[mod] = xcalloc((size_t)W, sizeof(size_t));
    z->own_hi[mod] = xcalloc((size_t)W, sizeof(size_t));
    z->has_owner[mod] = 1;
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

static void release_layers(Zero *z) {
    if (z->layers) release_weights(z, MODULE_LLM, z->layer_lo[0], z->layer_hi[z->layers - 1]);
    for (int l = 0; l < z->layers; l++) z->gathered[l] = 0;
}

int zero_init(Zero *z, int stage, int shard_frozen, const Comm *comm, LlavaModel *m, const Optimizer *opt,
              Error *err) {
    memset(z, 0, sizeof *z);
    if (strcmp(m->ops->name, "cpu") != 0)
        return err_set(err, "zero_stage %d runs on the CPU backend only in this build (device %s): use zero_stage 1 "
                       "on GPUs for now (docs/training.md, ZeRO-2/3)", stage, m->ops->name);
    z->stage = stage;
    z->comm = *comm;
    z->m = m;
    z->opt = opt;
    const TextConfig *t = &m->cfg.text;
    z->layers = t->layers;
    z->layer_lo = xcalloc((size_t)t->layers + 1, sizeof(size_t));
    z->layer_hi = xcalloc((size_t)t->layers + 1, sizeof(size_t));
    for (int l = 0; l < t->layers; l++) {
        // Each layer's tensors are adjacent in the layout (train/params.c), from its
        // input norm to the next layer's (or the final norm).
        z->layer_lo[l] = params_offset(&m->params, "llm.layers.%d.input_layernorm.weight", l);
        z->layer_hi[l] = l + 1 < t->layers ? params_offset(&m->params, "llm.layers.%d.input_layernorm.weight", l + 1)
                                           : params_offset(&m->params, "llm.norm.weight");
        CHECK(z->layer_lo[l] < z->layer_hi[l] && (l == 0 || z->layer_lo[l] == z->layer_hi[l - 1]),
              "LLM layer %d is not contiguous in the parameter layout", l);
    }
    for (int i = 0; i < MODULE_COUNT; i++)
        if (m->trainable[i]) set_owners(z, (ModuleId)i, 0);
    z->gathered = xcalloc((size_t)t->layers + 1, sizeof(int));
    z->prefetched = -1;
    z->llm_weights_sharded = stage == 3 && comm->world > 1 && (m->trainable[MODULE_LLM] || shard_frozen);
    if (z->llm_weights_sharded && !m->trainable[MODULE_LLM]) set_owners(z, MODULE_LLM, 1);
    if (z->llm_weights_sharded) release_layers(z);
    zero_begin_step(z);  // the gradients model_set_stage allocated whole: only the slice stays
    m->layer_hook = on_layer;
    m->layer_hook_ctx = z;
    return 0;
}

void zero_free(Zero *z) {
    if (z->m && z->m->layer_hook_ctx == z) {
        z->m->layer_hook = NULL;
        z->m->layer_hook_ctx = NULL;
    }
    for (int i = 0; i < MODULE_COUNT; i++) {
        free(z->own_lo[i]);
        free(z->own_hi[i]);
    }
    comm_wait_all(&z->comm, &z->pending);
    comm_pending_free(&z->pending);
    free(z->gathered);
    free(z->layer_lo);
    free(z->layer_hi);
    memset(z, 0, sizeof *z);
}

// ---- the step ----------------------------------------------------------------------------

void zero_begin_step(Zero *z) {
    int me = z->comm.rank;
    drop_all_layers(z);
    for (int i = 0; i < MODULE_COUNT; i++) {
        float *g = z->m->grads[i];
        if (!g) continue;
        size_t lo = z->own_lo[i][me], hi = z->own_hi[i][me];
        memset(g + lo, 0, (hi - lo) * sizeof(float));
        release_except(z, g, sizeof(float), 0, z->m->params.module_numel[i], lo, hi);
    }
}

void zero_after_backward(Zero *z) {
    LlavaModel *m = z->m;
    for (int i = 0; i < MODULE_COUNT; i++) {
        if (!m->grads[i]) continue;
        size_t n = m->params.module_numel[i];
        if (i == MODULE_LLM) {
            // embedding (and a tied head) before the layers, final norm and head after them
            reduce_scatter_grads(z, MODULE_LLM, 0, z->layer_lo[0]);
            reduce_scatter_grads(z, MODULE_LLM, z->layer_hi[z->layers - 1], n);
        } else {
            reduce_scatter_grads(z, (ModuleId)i, 0, n);  // the projector: one bucket
        }
    }
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
    for (int i = 0; i < MODULE_COUNT; i++) {
        if (!m->trainable[i]) continue;
        size_t n = m->params.module_numel[i];
        if (i == MODULE_LLM && z->llm_weights_sharded) {
            // the layers stay sharded until their next forward
            gather_weights(z, MODULE_LLM, 0, z->layer_lo[0]);
            gather_weights(z, MODULE_LLM, z->layer_hi[z->layers - 1], n);
        } else {
            gather_weights(z, (ModuleId)i, 0, n);
        }
    }
}

void zero_gather_for_save(Zero *z) {
    if (!z->llm_weights_sharded) return;
    drop_all_layers(z);
    const int W = z->comm.world;
    const size_t A = z->m->ops->act_size, lo = z->layer_lo[0], hi = z->layer_hi[z->layers - 1];
    size_t *counts = xcalloc((size_t)W, sizeof(size_t)), *displs = xcalloc((size_t)W, sizeof(size_t));
    for (int r = 0; r < W; r++) {
        size_t plo, n = owner_part(z, MODULE_LLM, r, lo, hi, &plo);
        counts[r] = n * A;
        displs[r] = plo * A;
    }
    comm_gatherv_bytes_to0(&z->comm, z->m->weights[MODULE_LLM], counts, displs);
    free(counts);
    free(displs);
}

void zero_release_after_save(Zero *z) {
    if (z->llm_weights_sharded && z->comm.rank == 0) release_layers(z);
}
