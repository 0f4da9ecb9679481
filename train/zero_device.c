#include "train/zero_device.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/nccl.h"

// Chunk index range [*c0, *c1] covering elements [lo, hi) of a module (fp32).
static int chunk_span(const ZeroDevice *d, size_t lo, size_t hi, size_t *c0, size_t *c1) {
    if (lo >= hi) return 0;
    *c0 = lo * sizeof(float) / d->st->chunk;
    *c1 = (hi * sizeof(float) - 1) / d->st->chunk;
    return 1;
}

void zero_device_hold(ZeroDevice *d, ModuleId mod, size_t lo, size_t hi) {
    size_t c0, c1;
    if (!d->base[mod] || !chunk_span(d, lo, hi, &c0, &c1)) return;
    for (size_t c = c0; c <= c1; c++)
        if (d->users[mod][c]++ == 0) {
            d->st->map((char *)d->base[mod] + c * d->st->chunk);
            d->mapped += d->st->chunk;
            if (d->mapped > d->peak) d->peak = d->mapped;
        }
}

void zero_device_let_go(ZeroDevice *d, ModuleId mod, size_t lo, size_t hi) {
    size_t c0, c1;
    if (!d->base[mod] || !chunk_span(d, lo, hi, &c0, &c1)) return;
    for (size_t c = c0; c <= c1; c++) {
        CHECK(d->users[mod][c] > 0, "ZeRO-2: a gradient chunk let go more often than held");
        if (--d->users[mod][c] == 0) {
            d->st->unmap((char *)d->base[mod] + c * d->st->chunk);
            d->mapped -= d->st->chunk;
        }
    }
}

int zero_device_init(ZeroDevice *d, LlavaModel *m, void *nccl, const size_t own[MODULE_COUNT][2],
                     const size_t keep[MODULE_COUNT][2][2], const int n_keep[MODULE_COUNT], Error *err) {
    memset(d, 0, sizeof *d);
    d->st = backend_cuda_streams();
    if (!d->st) return err_set(err, "ZeRO-2 on a GPU: the CUDA backend's streams are not available");
    d->nccl = nccl;
    for (int k = 0; k <= ZERO_BUCKETS_IN_FLIGHT; k++) d->spare[d->n_spare++] = d->st->event_new();
    m->ops->synchronize();  // nothing queued still touches the whole buffers given back below
    for (int i = 0; i < MODULE_COUNT; i++) {
        if (!m->grads[i]) continue;
        const size_t n = m->params.module_numel[i], chunk = d->st->chunk;
        d->bytes[i] = (n * sizeof(float) + chunk - 1) / chunk * chunk;
        d->whole += n * sizeof(float);
        d->base[i] = d->st->reserve(d->bytes[i]);
        if (!d->base[i])
            return err_set(err, "ZeRO-2: cannot reserve %zu MiB of device address space for the %s gradients",
                           d->bytes[i] >> 20, module_name((ModuleId)i));
        d->users[i] = xcalloc(d->bytes[i] / chunk, sizeof(int));
        m->ops->free(m->grads[i]);
        m->grads[i] = d->base[i];
        zero_device_hold(d, (ModuleId)i, own[i][0], own[i][1]);
        for (int k = 0; k < n_keep[i]; k++) zero_device_hold(d, (ModuleId)i, keep[i][k][0], keep[i][k][1]);
    }
    d->kept = d->mapped;
    return 0;
}

// Buckets whose reduces completed let go, oldest first; while more than
// `limit` are pending, the host waits for the oldest.
static void settle(ZeroDevice *d, int limit) {
    while (d->n_pending > limit || (d->n_pending > 0 && d->st->event_done(d->pending[0].event))) {
        ZeroBucket b = d->pending[0];
        d->st->event_sync(b.event);  // completed already unless over the limit
        zero_device_let_go(d, b.mod, b.lo, b.hi);
        d->spare[d->n_spare++] = b.event;
        memmove(d->pending, d->pending + 1, (size_t)(d->n_pending - 1) * sizeof *d->pending);
        d->n_pending--;
    }
}

void zero_device_settle(ZeroDevice *d) { settle(d, 0); }

static void reduce_owners(ZeroDevice *d, LlavaModel *m, ModuleId mod, size_t lo, size_t hi, const size_t *own_lo,
                          const size_t *own_hi, int world) {
    if (!d->nccl) return;  // one process: the sum is the gradient
    char msg[512];
    nccl_comm_waits_compute(d->nccl);  // the bucket's backward is done
    for (int r = 0; r < world; r++) {
        size_t a = lo > own_lo[r] ? lo : own_lo[r], b = hi < own_hi[r] ? hi : own_hi[r];
        if (a < b && nccl_reduce_sum_f32_async(d->nccl, m->grads[mod] + a, b - a, r, msg, sizeof msg) != 0)
            FATAL("ZeRO-2 reduce-scatter: %s", msg);
    }
}

void zero_device_reduce_bucket(ZeroDevice *d, LlavaModel *m, ModuleId mod, size_t lo, size_t hi,
                               const size_t *own_lo, const size_t *own_hi, int world) {
    reduce_owners(d, m, mod, lo, hi, own_lo, own_hi, world);
    CHECK(d->n_spare > 0, "ZeRO-2: no free bucket event");
    ZeroBucket b = {mod, lo, hi, d->spare[--d->n_spare]};
    d->st->record(b.event, d->st->comm);
    d->pending[d->n_pending++] = b;
    settle(d, ZERO_BUCKETS_IN_FLIGHT);
}

void zero_device_reduce_range(ZeroDevice *d, LlavaModel *m, ModuleId mod, size_t lo, size_t hi,
                              const size_t *own_lo, const size_t *own_hi, int world) {
    reduce_owners(d, m, mod, lo, hi, own_lo, own_hi, world);
    settle(d, ZERO_BUCKETS_IN_FLIGHT);
}

void zero_device_free(ZeroDevice *d, LlavaModel *m) {
    if (!d->st) return;
    settle(d, 0);
    // the communication stream's last work done (nccl_leave may have ended the communicator already)
    d->st->record(d->spare[0], d->st->comm);
    d->st->event_sync(d->spare[0]);
    m->ops->synchronize();
    for (int i = 0; i < MODULE_COUNT; i++) {
        if (!d->base[i]) continue;
        const size_t chunks = d->bytes[i] / d->st->chunk;
        for (size_t c = 0; c < chunks; c++)
            if (d->users[i][c]) d->st->unmap((char *)d->base[i] + c * d->st->chunk);
        d->st->unreserve(d->base[i], d->bytes[i]);
        free(d->users[i]);
        if (m->grads[i] == d->base[i]) m->grads[i] = NULL;
    }
    for (int k = 0; k < d->n_spare; k++) d->st->event_free(d->spare[k]);
    memset(d, 0, sizeof *d);
}
