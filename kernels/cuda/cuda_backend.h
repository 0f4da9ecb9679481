// Entry point of the CUDA backend (kernels/cuda/*.cu), callable from C.
#ifndef LLAVA_CUDA_BACKEND_H
#define LLAVA_CUDA_BACKEND_H

#include <stddef.h>

#include "kernels/ops.h"
#include "kernels/streams.h"

#ifdef __cplusplus
extern "C" {
#endif

// Initializes the GPU of this process (its local rank on the node when
// started by mpirun/srun, else the first visible one) and returns the CUDA op table, or NULL
// with a reason in msg (no GPU, driver too old, compute capability below 8.0,
// no kernels in this build for the card). Later calls return the same table.
const Ops *ops_cuda_create(char *msg, size_t cap);
// The cudaStream_t every op of the table runs on (NULL before creation), for
// code that must order its own work after the ops' (NCCL, copies).
void *ops_cuda_stream(void);
// The compute and communication streams and their events (kernels/streams.h,
// cuda_streams.cu); NULL before creation.
const BackendStreams *ops_cuda_streams(void);
// The device's free and total memory (cudaMemGetInfo). 0, or -1 before creation.
int ops_cuda_memory(size_t *free_bytes, size_t *total_bytes);

// cuBLASLt plan cache counters (kernels/cuda/cuda_matmul.cu): a call is a
// hit (the same exact shape as its plan's last) or a check
// (cublasLtMatmulAlgoCheck of the bucket's algorithm on a new shape;
// check_failures of them refused, each then a heuristic query for that
// shape); queries also counts one per bucket, for the bucket's shape.
// LLAVA_CUDA_DEBUG=1 prints them at exit.
typedef struct {
    long long calls, hits, checks, check_failures, queries;
} CudaPlanStats;
// Copies the counters to *stats (if not NULL); release != 0 then destroys
// every plan and zeroes the counters (the next call of each shape queries).
void ops_cuda_matmul_plans(CudaPlanStats *stats, int release);

#ifdef __cplusplus
}
#endif

#endif
