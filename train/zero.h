// ZeRO-2 and ZeRO-3 on top of ZeRO-1's slices of the flat trainable space
// (train/optim.h: process r owns [begin_r, end_r) of it, the same slice for
// the optimizer state, the gradients and, with ZeRO-3, the weights).
//
// ZeRO-2: as backward produces a LLM layer's gradients (train/model.h's layer
// hook, layers in reverse order) that bucket is reduce-scattered: each slice
// goes to its owner (one MPI reduce per owner), and the rest of the bucket is
// given back to the system. The non-layer tensors (embedding, final norm, LM
// head, projector) form the last bucket, after backward. So a process holds
// the fp32 gradient of its slice plus about one layer, not the whole model.
// The global norm is the square root of the sum of every slice's sum of
// squares (one all-reduce of a scalar); AdamW runs on the slice; the updated
// slices are all-gathered as in ZeRO-1.
//
// ZeRO-3: in addition, the weights of the LLM's layers live only in their
// owners' slices. A layer is all-gathered just before its forward and again
// just before its backward, and its non-owned part is given back right after;
// the next layer's broadcasts are started before the current layer computes
// (forward: l+1, backward: l-1) and waited for when it is needed. The last
// layer stays whole from its forward to its backward.
// The non-layer tensors stay replicated (gathered after each update). With
// zero3_shard_frozen the frozen modules' layers are sharded the same way,
// over each module's own elements: the vision tower's (forward only) and, in
// stage 1, the frozen LLM's.
//
// "Given back": on the CPU the pages are returned to the kernel
// (madvise(MADV_DONTNEED): the address range stays, reads give zeros, RSS
// falls); the partial pages at a range's ends are zeroed instead. Checkpoint
// contents do not change: rank 0 assembles the whole model to write it.
//
// On a GPU the collectives are NCCL's on the backend's communication stream,
// ordered by events, and the gradients (and ZeRO-3's LLM weights) live in
// device virtual memory mapped only for the slice, the non-layer tensors and
// the layers in flight (train/zero_device.h).
#ifndef LLAVA_ZERO_H
#define LLAVA_ZERO_H

#include "train/dist.h"
#include "model/model.h"
#include "train/optim.h"
#include "train/zero_device.h"

// The layers of one module in the layout, and which of them are whole here.
typedef struct {
    ModuleId module;
    int layers;         // in the layout
    int run_layers;     // that run (the vision tower stops at its feature layer)
    int has_backward;   // LLM: forward and backward; vision tower: forward only
    size_t *lo, *hi;    // [layers] each layer's element range in the module
    int sharded;        // ZeRO-3: the layers' weights live in their owners' slices
    int *gathered;      // [layers] 1 while layer l's weights are whole here
    int prefetched;     // the layer whose broadcasts are in flight (-1: none)
    CommPending pending;
} LayerStack;

enum { STACK_LLM, STACK_VISION, STACK_COUNT };

typedef struct {
    int stage;                    // 2 or 3
    Comm comm;
    LlavaModel *m;
    const Optimizer *opt;
    LayerStack stack[STACK_COUNT];
    // [world] per module: rank r owns elements [own_lo[mod][r], own_hi[mod][r]) of the
    // module (gradients of trainable modules; with ZeRO-3 also the sharded layers' weights)
    size_t *own_lo[MODULE_COUNT], *own_hi[MODULE_COUNT];
    void *nccl;       // GPU: the kernels/nccl.h communicator (NULL: one process)
    ZeroDevice *dev;  // GPU: the device gradients and ZeRO-3 weights (NULL on the CPU)
    int saving;       // GPU, rank 0: the whole layer range held for a save
    int vision_ran;   // this forward ran the vision tower's layers (a text-only micro-batch does not)
} Zero;

// stage 2 or 3; shard_frozen: ZeRO-3 shards the frozen modules' layers too. Call after the
// optimizer is set up and any resume is done (this gives back non-owned
// weights under ZeRO-3). Installs the model's layer hook. 0, or -1 with err.
// nccl: the trainer's NCCL communicator on GPUs (NULL on the CPU or with one process).
int zero_init(Zero *z, int stage, int shard_frozen, const Comm *comm, void *nccl, LlavaModel *m,
              const Optimizer *opt, Error *err);
void zero_free(Zero *z);
// Before a step's first backward: the gradients of the slice zeroed, the rest given back.
void zero_begin_step(Zero *z);
// After each micro-batch's backward: the last bucket (non-layer tensors, projector).
void zero_after_backward(Zero *z);
// A micro-batch this process does not have (a short last step leaves some
// ranks without one; kernels/nccl.h and MPI need every rank to issue the
// same collectives in the same order, else they hang): the collectives of a
// forward (ZeRO-3 gathers) and, when `backward`, of a backward and
// zero_after_backward, with nothing computed (this rank's gradients add zero).
void zero_idle_micro_batch(Zero *z, int backward);
// The global gradient norm from the slices.
double zero_grad_norm(const Zero *z);
// After AdamW updated the slice: every process gets the updated weights it
// must hold (ZeRO-2: all; ZeRO-3: all but the LLM layers).
void zero_after_update(Zero *z);
// Rank 0 assembles every weight (to save the model); zero_release_after_save gives them back.
void zero_gather_for_save(Zero *z);
void zero_release_after_save(Zero *z);

#endif
