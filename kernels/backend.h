// Picks the op table for a device name ("cpu", "cuda"). The CUDA backend is
// built (when nvcc was found) as a plugin, libllava_cuda.so, loaded with
// dlopen at the first `--device cuda`: a CPU run never maps the CUDA
// runtime or cuBLASLt (~150 MB of RSS), and a machine without CUDA's
// libraries runs the CPU path of the same binary. Binaries that link the
// backend in (the emulator builds) use it directly.
#ifndef LLAVA_BACKEND_H
#define LLAVA_BACKEND_H

#include "common/util.h"
#include "kernels/ops.h"
#include "kernels/streams.h"

const Ops *backend_select(const char *device, Error *err);
// The cudaStream_t every CUDA op runs on, for code that must order its own
// work after the ops' (NCCL); NULL before backend_select("cuda") succeeded.
void *backend_cuda_stream(void);
// Its communication stream and events (kernels/streams.h); NULL likewise.
const BackendStreams *backend_cuda_streams(void);
// The memory of the device ops runs on (the GPU's, or the machine's RAM for
// the CPU backend): total and currently free bytes. 0, or -1 if unknown.
int backend_device_memory(const Ops *ops, size_t *free_bytes, size_t *total_bytes);
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
