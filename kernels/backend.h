// Picks the op table for a device name ("cpu", "cuda"). The CUDA backend is
// compiled in when nvcc was found; it is usable when a GPU is present.
#ifndef LLAVA_BACKEND_H
#define LLAVA_BACKEND_H

#include "common/util.h"
#include "kernels/ops.h"

const Ops *backend_select(const char *device, Error *err);
// Sets the OpenMP and BLAS thread counts (n <= 0: leave the defaults).
void backend_set_threads(int n);
// OpenMP reads OMP_WAIT_POLICY once, when its library loads (before main),
// and its default (threads spin after each parallel region) makes 2 threads
// several times slower than 1 when another process holds a core. When the
// user has not set OMP_WAIT_POLICY, this sets it to passive and re-executes
// the program (same argv) so the runtime starts with it; returns only when no
// re-execution was needed or it failed. docs/performance.md has the figures.
void backend_default_wait_policy(char **argv);
// "cpu" or "cpu cuda": the backends this build holds (for --version).
const char *backend_compiled(void);

#endif
