// Picks the op table for a device name ("cpu", "cuda"). The CUDA backend is
// compiled in when nvcc was found; it is usable when a GPU is present.
#ifndef LLAVA_BACKEND_H
#define LLAVA_BACKEND_H

#include "common/util.h"
#include "kernels/ops.h"

const Ops *backend_select(const char *device, Error *err);
// Sets the OpenMP and BLAS thread counts (n <= 0: leave the defaults).
void backend_set_threads(int n);

#endif
