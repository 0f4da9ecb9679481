// ZeRO-2/3 on a GPU (train/zero.c's device half). The fp32 gradients of each
// trainable module, and with ZeRO-3 the bf16 weights of the sharded LLM, live
// in reserved virtual address ranges of the device (kernels/streams.h), with
// physical memory mapped, in chunks of 2 MiB, only where something needs it:
// the owned slice and the non-layer tensors (embedding, final norm, head,
// projector) for the whole run, and a LLM layer while it is in flight. A chunk
// shared by two of these is counted once per user and unmapped when the last
// lets go.
//
// Gradients, ordered on the device and never by stopping the host in
// backward: after layer l's backward the communication stream waits for an
// event of the compute stream, reduces every owner's part of the bucket to
// its owner (ncclReduce), and records the bucket's event; the bucket's chunks
// are unmapped once that event has completed (polled at each layer; when more
// than ZERO_BUCKETS_IN_FLIGHT buckets are pending the host waits for the
// oldest: the memory bound). The compute stream waits for the communication
// stream only at the end of backward (before the non-layer buckets are
// zeroed for the next micro-batch and before the norm and AdamW read the
// slice).
//
// ZeRO-3 weights: a layer's chunks are mapped and its owners' parts
// broadcast on the communication stream (after the compute stream's work so
// far), one layer ahead of its use; the compute stream waits for that
// layer's event before using it; after its use an event of the compute
// stream is recorded and the chunks are unmapped once it has completed (the
// same polling and bound).
#ifndef LLAVA_ZERO_DEVICE_H
#define LLAVA_ZERO_DEVICE_H

#include <stddef.h>

#include "kernels/streams.h"
#include "model/model.h"

enum { ZERO_BUCKETS_IN_FLIGHT = 1 };

// Bytes mapped for one kind of buffer (gradients or weights), over modules.
typedef struct {
    size_t mapped, peak, whole;  // now, at most, and what whole buffers would take
    size_t kept;                 // chunks held for the whole run (slice, non-layer ranges)
} ZeroMem;

// One module's reserved range.
typedef struct {
    char *base;  // NULL: none
    size_t bytes, elem;  // a multiple of the chunk; bytes per element
    int *users;  // [chunks] what holds each chunk mapped
    ZeroMem *acct;
} ZeroVm;

typedef struct {
    ZeroVm *vm;
    size_t lo, hi;  // elements of the module
    void *event;    // its completion lets the chunks go
} ZeroRelease;

typedef struct {
    ZeroRelease item[ZERO_BUCKETS_IN_FLIGHT + 1];
    int n;
} ZeroQueue;

typedef struct {
    const BackendStreams *st;
    void *nccl;  // kernels/nccl.h communicator (NULL: one process)
    ZeroVm grads[MODULE_COUNT], weights[MODULE_COUNT];
    ZeroMem grad_mem, weight_mem;
    ZeroQueue buckets, drops;  // gradient buckets reducing; layers used, to unmap
    void *spare[2 * (ZERO_BUCKETS_IN_FLIGHT + 1) + 1];  // events not in use
    int n_spare;
    int early_unmap;  // LLAVA_TEST_EARLY_UNMAP: the negative control of tests/test_zero_cuda.sh
    void **gathered[MODULE_COUNT];  // ZeRO-3: [layers] event recorded on the comm stream after layer l's broadcasts
    int layers[MODULE_COUNT];
} ZeroDevice;

// Replaces the model's whole gradient buffers by reserved ranges; holds the
// chunks of module i's owned elements [own[i][0], own[i][1]) and of its
// non-layer ranges keep[i][k] (k < n_keep[i]) mapped for the whole run.
// 0, or -1 with err.
int zero_device_init(ZeroDevice *d, LlavaModel *m, void *nccl, const size_t own[MODULE_COUNT][2],
                     const size_t keep[MODULE_COUNT][2][2], const int n_keep[MODULE_COUNT], Error *err);
// ZeRO-3: module mod's weights the same way (their owned and non-layer parts
// copied over first); `layers` events for the layer gathers. 0, or -1 with err.
int zero_device_init_weights(ZeroDevice *d, LlavaModel *m, ModuleId mod, const size_t own[2],
                             const size_t keep[2][2], int n_keep, int layers, Error *err);
// Unmaps everything, gives the address ranges back and leaves the model
// without gradients (and without the sharded module's weights).
void zero_device_free(ZeroDevice *d, LlavaModel *m);
// Chunks covering elements [lo, hi) of a range held (mapped on the first hold) or let go.
void zero_device_hold(ZeroDevice *d, ZeroVm *vm, size_t lo, size_t hi);
void zero_device_let_go(ZeroDevice *d, ZeroVm *vm, size_t lo, size_t hi);
// Reduce-scatter of a layer's bucket on the comm stream (owner r gets the sum
// of [lo_r, hi_r) of it), then its chunks let go once that completed.
void zero_device_reduce_bucket(ZeroDevice *d, LlavaModel *m, ModuleId mod, size_t lo, size_t hi,
                               const size_t *own_lo, const size_t *own_hi, int world);
// The non-layer buckets: reduced to their owners; the chunks stay.
void zero_device_reduce_range(ZeroDevice *d, LlavaModel *m, ModuleId mod, size_t lo, size_t hi,
                              const size_t *own_lo, const size_t *own_hi, int world);
// ZeRO-3: layer `l` = weights [lo, hi) of mod mapped and broadcast from its
// owners on the comm stream (gather); the compute stream waits for it (use);
// after its use, its chunks let go once the compute stream's work so far completed (drop).
void zero_device_gather_layer(ZeroDevice *d, LlavaModel *m, ModuleId mod, int l, size_t lo, size_t hi,
                              const size_t *own_lo, const size_t *own_hi, int world);
void zero_device_use_layer(ZeroDevice *d, ModuleId mod, int l);
void zero_device_drop_layer(ZeroDevice *d, ModuleId mod, size_t lo, size_t hi);
// Every pending bucket and drop waited for (host) and let go.
void zero_device_settle(ZeroDevice *d);

#endif
