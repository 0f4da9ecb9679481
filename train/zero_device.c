#include "train/zero_device.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/nccl.h"

// Chunk index range [*c0, *c1] covering elements [lo, hi) of a range.
static int chunk_span(const ZeroDevice *d, const ZeroVm *vm, size_t lo, size_t hi, size_t *c0, size_t *c1) {
    if (!vm->base || lo >= hi) return 0;
    *c0 = lo * vm->elem / d->st->chunk;
    *c1 = (hi * vm->elem - 1) / d->st->chunk;
    return 1;
}

void zero_device_hold(ZeroDevice *d, ZeroVm *vm, size_t lo, size_t hi) {
    size_t c0, c1;
    if (!chunk_span(d, vm, lo, hi, &c0, &c1)) return;
    for (size_t c = c0; c <= c1; c++)
        if (vm->users[c]++ == 0) {
            d->st->map(vm->base + c * d->st->chunk);
            vm->acct->mapped += d->st->chunk;
            if (vm->acct->mapped > vm->acct->peak) vm->acct->peak = vm->acct->mapped;
        }
}

void zero_device_let_go(ZeroDevice *d, ZeroVm *vm, size_t lo, size_t hi) {
    size_t c0, c1;
    if (!chunk_span(d, vm, lo, hi, &c0, &c1)) return;
    for (size_t c = c0; c <= c1; c++) {
        CHECK(vm->users[c] > 0, "ZeRO: a device chunk let go more often than held");
        if (--vm->users[c] == 0) {
            d->st->unmap(vm->base + c * d->st->chunk);
            vm->acct->mapped -= d->st->chunk;
        }
    }
}

#define BUCKET_WHAT "a ZeRO-2 layer bucket's reduce-scatter"
#define DROP_WHAT "the ops on a ZeRO-3 layer gathered earlier"

static void *take_event(ZeroDevice *d) {
    CHECK(d->n_spare > 0, "ZeRO: no free device event");
    return d->spare[--d->n_spare];
}

// Items whose event completed let go, oldest first; while more than `limit`
// are pending, the host waits for the oldest (`what`: for the message if NCCL
// fails or the wait runs out, kernels/nccl.h).
static void settle(ZeroDevice *d, ZeroQueue *q, int limit, const char *what) {
    while (q->n > limit || (q->n > 0 && d->st->event_done(q->item[0].event))) {
        ZeroRelease r = q->item[0];
        // completed already unless over the limit; its stream may wait for a collective
        if (d->nccl) {
            char named[160];
            const int in_grads = r.vm >= d->grads && r.vm < d->grads + MODULE_COUNT;
            const ModuleId mod = (ModuleId)(in_grads ? r.vm - d->grads : r.vm - d->weights);
            snprintf(named, sizeof named, "%s (%s elements %zu-%zu)", what, module_name(mod), r.lo, r.hi);
            nccl_wait_event(d->nccl, r.event, named);
        } else
            d->st->event_sync(r.event);
        zero_device_let_go(d, r.vm, r.lo, r.hi);
        d->spare[d->n_spare++] = r.event;
        memmove(q->item, q->item + 1, (size_t)(q->n - 1) * sizeof *q->item);
        q->n--;
    }
}

// Lets [lo, hi) of vm go once the work so far of `stream` has completed.
static void release_after(ZeroDevice *d, ZeroQueue *q, ZeroVm *vm, size_t lo, size_t hi, void *stream,
                          const char *what) {
    if (d->early_unmap) {  // unmapped under the queued work that still touches it: must crash on the emulator
        zero_device_let_go(d, vm, lo, hi);
        return;
    }
    ZeroRelease r = {vm, lo, hi, take_event(d)};
    d->st->record(r.event, stream);
    q->item[q->n++] = r;
    settle(d, q, ZERO_BUCKETS_IN_FLIGHT, what);
}

void zero_device_settle(ZeroDevice *d) {
    settle(d, &d->buckets, 0, BUCKET_WHAT);
    settle(d, &d->drops, 0, DROP_WHAT);
}

// Reserves a module's range in place of its whole buffer `*buf`, with the
// chunks of own and keep held; their contents copied over when `copy`.
static int vm_init(ZeroDevice *d, LlavaModel *m, ZeroVm *vm, ZeroMem *acct, void *buf, size_t n, size_t elem,
                   const size_t own[2], const size_t keep[][2], int n_keep, int copy, const char *what, Error *err) {
    const size_t chunk = d->st->chunk;
    vm->elem = elem;
    vm->acct = acct;
    vm->bytes = (n * elem + chunk - 1) / chunk * chunk;
    acct->whole += n * elem;
    vm->base = d->st->reserve(vm->bytes);
    if (!vm->base)
        return err_set(err, "ZeRO: cannot reserve %zu MiB of device address space for %s", vm->bytes >> 20, what);
    vm->users = xcalloc(vm->bytes / chunk, sizeof(int));
    zero_device_hold(d, vm, own[0], own[1]);
    for (int k = 0; k < n_keep; k++) zero_device_hold(d, vm, keep[k][0], keep[k][1]);
    if (copy) {
        m->ops->copy(vm->base + own[0] * elem, (char *)buf + own[0] * elem, (own[1] - own[0]) * elem);
        for (int k = 0; k < n_keep; k++)
            m->ops->copy(vm->base + keep[k][0] * elem, (char *)buf + keep[k][0] * elem, (keep[k][1] - keep[k][0]) * elem);
    }
    m->ops->synchronize();  // nothing queued still touches the whole buffer given back now
    m->ops->free(buf);
    acct->kept = acct->mapped;
    return 0;
}

int zero_device_init(ZeroDevice *d, LlavaModel *m, void *nccl, const size_t own[MODULE_COUNT][2],
                     const size_t keep[MODULE_COUNT][2][2], const int n_keep[MODULE_COUNT], Error *err) {
    memset(d, 0, sizeof *d);
    d->st = backend_cuda_streams();
    if (!d->st) return err_set(err, "ZeRO on a GPU: the CUDA backend's streams are not available");
    d->nccl = nccl;
    const char *early = getenv("LLAVA_TEST_EARLY_UNMAP");
    d->early_unmap = early && atoi(early) != 0;
    while (d->n_spare < (int)(sizeof d->spare / sizeof *d->spare)) d->spare[d->n_spare++] = d->st->event_new();
    for (int i = 0; i < MODULE_COUNT; i++) {
        if (!m->grads[i]) continue;
        char what[64];
        snprintf(what, sizeof what, "the %s gradients", module_name((ModuleId)i));
        if (vm_init(d, m, &d->grads[i], &d->grad_mem, m->grads[i], m->params.module_numel[i], sizeof(float), own[i],
                    keep[i], n_keep[i], 0, what, err) != 0)
            return -1;
        m->grads[i] = (float *)d->grads[i].base;
    }
    return 0;
}

int zero_device_init_weights(ZeroDevice *d, LlavaModel *m, ModuleId mod, const size_t own[2],
                             const size_t keep[2][2], int n_keep, int layers, Error *err) {
    char what[64];
    snprintf(what, sizeof what, "the %s weights", module_name(mod));
    d->gathered[mod] = xcalloc((size_t)layers, sizeof(void *));
    d->layers[mod] = layers;
    for (int l = 0; l < layers; l++) d->gathered[mod][l] = d->st->event_new();
    if (vm_init(d, m, &d->weights[mod], &d->weight_mem, m->weights[mod], m->params.module_numel[mod],
                m->ops->act_size, own, keep, n_keep, 1, what, err) != 0)
        return -1;
    m->weights[mod] = d->weights[mod].base;
    return 0;
}

static void reduce_owners(ZeroDevice *d, LlavaModel *m, ModuleId mod, size_t lo, size_t hi, const size_t *own_lo,
                          const size_t *own_hi, int world) {
    if (!d->nccl) return;  // one process: the sum is the gradient
    char msg[512];
    nccl_comm_waits_compute(d->nccl);  // the bucket's backward is done
    nccl_group_start(d->nccl);  // one operation for NCCL: every owner's part of the bucket
    for (int r = 0; r < world; r++) {
        size_t a = lo > own_lo[r] ? lo : own_lo[r], b = hi < own_hi[r] ? hi : own_hi[r];
        if (a < b && nccl_reduce_sum_f32_async(d->nccl, m->grads[mod] + a, b - a, r, msg, sizeof msg) != 0)
            FATAL("ZeRO-2 reduce-scatter: %s", msg);
    }
    nccl_group_end(d->nccl);
}

void zero_device_reduce_bucket(ZeroDevice *d, LlavaModel *m, ModuleId mod, size_t lo, size_t hi,
                               const size_t *own_lo, const size_t *own_hi, int world) {
    reduce_owners(d, m, mod, lo, hi, own_lo, own_hi, world);
    release_after(d, &d->buckets, &d->grads[mod], lo, hi, d->st->comm, BUCKET_WHAT);
}

void zero_device_reduce_range(ZeroDevice *d, LlavaModel *m, ModuleId mod, size_t lo, size_t hi,
                              const size_t *own_lo, const size_t *own_hi, int world) {
    reduce_owners(d, m, mod, lo, hi, own_lo, own_hi, world);
    settle(d, &d->buckets, ZERO_BUCKETS_IN_FLIGHT, BUCKET_WHAT);
}

void zero_device_gather_layer(ZeroDevice *d, LlavaModel *m, ModuleId mod, int l, size_t lo, size_t hi,
                              const size_t *own_lo, const size_t *own_hi, int world) {
    ZeroVm *vm = &d->weights[mod];
    zero_device_hold(d, vm, lo, hi);
    if (d->nccl) {
        char msg[512];
        nccl_comm_waits_compute(d->nccl);  // AdamW has written the owned parts; earlier uses are done
        nccl_group_start(d->nccl);          // one operation for NCCL: every owner's part of the layer
        for (int r = 0; r < world; r++) {
            size_t a = lo > own_lo[r] ? lo : own_lo[r], b = hi < own_hi[r] ? hi : own_hi[r];
            if (a < b && nccl_broadcast_bytes_async(d->nccl, vm->base + a * vm->elem, (b - a) * vm->elem, r, msg,
                                                    sizeof msg) != 0)
                FATAL("ZeRO-3 layer gather: %s", msg);
        }
        nccl_group_end(d->nccl);
    }
    d->st->record(d->gathered[mod][l], d->st->comm);
    settle(d, &d->drops, ZERO_BUCKETS_IN_FLIGHT, DROP_WHAT);
}

void zero_device_use_layer(ZeroDevice *d, ModuleId mod, int l) { d->st->wait(d->st->compute, d->gathered[mod][l]); }

void zero_device_drop_layer(ZeroDevice *d, ModuleId mod, size_t lo, size_t hi) {
    release_after(d, &d->drops, &d->weights[mod], lo, hi, d->st->compute, DROP_WHAT);
}

// Unmaps and gives back a range; 1 when there was one (the model's pointer then dangles).
static int vm_free(ZeroDevice *d, ZeroVm *vm) {
    if (!vm->base) return 0;
    const size_t chunks = vm->bytes / d->st->chunk;
    for (size_t c = 0; c < chunks; c++)
        if (vm->users[c]) d->st->unmap(vm->base + c * d->st->chunk);
    d->st->unreserve(vm->base, vm->bytes);
    free(vm->users);
    return 1;
}

void zero_device_free(ZeroDevice *d, LlavaModel *m) {
    if (!d->st) return;
    d->nccl = NULL;  // the trainer may have left NCCL already (its last collectives are done then)
    zero_device_settle(d);
    // the communication stream's last work done (nccl_leave may have ended the communicator already)
    d->st->record(d->spare[0], d->st->comm);
    d->st->event_sync(d->spare[0]);
    m->ops->synchronize();
    for (int i = 0; i < MODULE_COUNT; i++) {
        if (vm_free(d, &d->grads[i])) m->grads[i] = NULL;
        if (vm_free(d, &d->weights[i])) m->weights[i] = NULL;
    }
    for (int k = 0; k < d->n_spare; k++) d->st->event_free(d->spare[k]);
    for (int i = 0; i < MODULE_COUNT; i++) {
        for (int l = 0; l < d->layers[i]; l++) d->st->event_free(d->gathered[i][l]);
        free(d->gathered[i]);
    }
    memset(d, 0, sizeof *d);
}
