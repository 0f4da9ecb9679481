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
// Head size 128 flash attention of the CUDA backend: 0 = the 64-row kernels,
// 1 = the 128-row kernels where their grid gives every SM a block (the
// default), 2 = the 128-row kernels always (LLAVA_FLASH_TILES=0/1/2 at start
// does the same). For the benchmark and the tests that compare the two;
// returns the previous setting, -1 before backend_select("cuda") succeeded.
int backend_cuda_set_flash_tiles(int mode);
// Its communication stream and events (kernels/streams.h); NULL likewise.
const BackendStreams *backend_cuda_streams(void);
// The memory of the device ops runs on (the GPU's, or the machine's RAM for
// the CPU backend): total and currently free bytes. 0, or -1 if unknown.
int backend_device_memory(const Ops *ops, size_t *free_bytes, size_t *total_bytes);
// The op table with the attention backend `attention` ("flash" or NULL/""
// = ops unchanged; "cudnn" = cuDNN's fused attention, loaded now, device cuda
// only, kernels/cuda/cuda_cudnn_attention.cu). NULL with err set when that
// cannot be had (no libcudnn, too old, the CPU emulator, another device).
const Ops *backend_attention(const Ops *ops, const char *attention, Error *err);
// Attention calls so far that ran cuDNN's graphs and that went to the flash
// kernel instead (tests). 0, or -1 when there is no CUDA backend.
int backend_cudnn_counts(long *cudnn_calls, long *flash_calls);
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
