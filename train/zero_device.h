// ZeRO-2 on a GPU (train/zero.c's device half): the fp32 gradients of each
// trainable module live in a reserved virtual address range of the device
// (kernels/streams.h), with physical memory mapped, in chunks of 2 MiB, only
// where something needs it: the owned slice and the non-layer tensors
// (embedding, final norm, head, projector: written outside the layers'
// backward) for the whole run, and each LLM layer's bucket from just before
// its backward until its reduce-scatter on the communication stream has
// completed. A chunk shared by two of these is counted once per user and
// unmapped when the last lets go.
//
// Order, on the device and never by stopping the host in backward: after
// layer l's backward the communication stream waits for an event of the
// compute stream, reduces every owner's part of the bucket to its owner
// (ncclReduce), and records the bucket's event; the bucket's chunks are
// unmapped once that event has completed (polled at each layer; when more
// than ZERO_BUCKETS_IN_FLIGHT buckets are pending the host waits for the
// oldest: the memory bound). The compute stream waits for the communication
// stream only at the end of backward (before the non-layer buckets are
// zeroed for the next micro-batch and before the norm and AdamW read the
// slice).
#ifndef LLAVA_ZERO_DEVICE_H
#define LLAVA_ZERO_DEVICE_H

#include <stddef.h>

#include "kernels/streams.h"
#include "model/model.h"

enum { ZERO_BUCKETS_IN_FLIGHT = 2 };

typedef struct {
    ModuleId mod;
    size_t lo, hi;  // elements of the module
    void *event;    // recorded on the comm stream after the bucket's reduces
} ZeroBucket;

typedef struct {
    const BackendStreams *st;
    void *nccl;  // kernels/nccl.h communicator (NULL: one process)
    float *base[MODULE_COUNT];      // the reserved range of each module's gradients (NULL: none)
    size_t bytes[MODULE_COUNT];     // its size, a multiple of st->chunk
    int *users[MODULE_COUNT];       // [chunks] what holds each chunk mapped
    size_t mapped, peak, whole;     // bytes mapped now, at most, and what whole gradients would take
    size_t kept;                    // bytes of chunks held for the whole run (slice, non-layer ranges)
    ZeroBucket pending[ZERO_BUCKETS_IN_FLIGHT + 1];
    int n_pending;
    void *spare[ZERO_BUCKETS_IN_FLIGHT + 1];  // events not in use
    int n_spare;
} ZeroDevice;

// Replaces the model's whole gradient buffers by reserved ranges; holds the
// chunks of module i's owned elements [own[i][0], own[i][1]) and of its
// non-layer ranges keep[i][k] (k < n_keep[i]) mapped for the whole run.
// 0, or -1 with err.
int zero_device_init(ZeroDevice *d, LlavaModel *m, void *nccl, const size_t own[MODULE_COUNT][2],
                     const size_t keep[MODULE_COUNT][2][2], const int n_keep[MODULE_COUNT], Error *err);
// Unmaps everything, gives the address ranges back and leaves the model without gradients.
void zero_device_free(ZeroDevice *d, LlavaModel *m);
// Chunks covering elements [lo, hi) of module mod held (mapped on the first hold) or let go.
void zero_device_hold(ZeroDevice *d, ModuleId mod, size_t lo, size_t hi);
void zero_device_let_go(ZeroDevice *d, ModuleId mod, size_t lo, size_t hi);
// Reduce-scatter of a layer's bucket on the comm stream (owner r gets the sum
// of [lo_r, hi_r) of it), then its chunks let go once that completed.
void zero_device_reduce_bucket(ZeroDevice *d, LlavaModel *m, ModuleId mod, size_t lo, size_t hi,
                               const size_t *own_lo, const size_t *own_hi, int world);
// The non-layer buckets: reduced to their owners; the chunks stay.
void zero_device_reduce_range(ZeroDevice *d, LlavaModel *m, ModuleId mod, size_t lo, size_t hi,
                              const size_t *own_lo, const size_t *own_hi, int world);
// Every pending bucket waited for (host) and let go.
void zero_device_settle(ZeroDevice *d);

#endif
