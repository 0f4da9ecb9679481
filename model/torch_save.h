// Writes a dict of fp32 tensors in PyTorch's torch.save format (a zip of
// data.pkl + one raw storage per tensor), so that the original LLaVA code's
// `torch.load("mm_projector.bin")` reads our stage-1 projector. Only the
// subset of the format that dict-of-tensors needs: pickle protocol 2,
// FloatStorage, _rebuild_tensor_v2, stored (uncompressed) zip entries. Loads
// with torch.load(weights_only=True).
#ifndef LLAVA_TORCH_SAVE_H
#define LLAVA_TORCH_SAVE_H

#include <stdint.h>

#include "common/util.h"

typedef struct {
    const char *name;
    int ndim;
    const int64_t *shape;
    const float *data;  // contiguous, row-major
} TorchTensor;

int torch_save_f32(const char *path, const TorchTensor *tensors, int n, Error *err);

#endif
