// Entry point of the CUDA backend (kernels/cuda/*.cu), callable from C.
#ifndef LLAVA_CUDA_BACKEND_H
#define LLAVA_CUDA_BACKEND_H

#include <stddef.h>

#include "kernels/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

// Initializes the first visible GPU and returns the CUDA op table, or NULL
// with a reason in msg (no GPU, driver missing, op table incomplete).
const Ops *ops_cuda_create(char *msg, size_t cap);

#ifdef __cplusplus
}
#endif

#endif
