// NCCL for data parallelism on GPUs: the gradient all-reduce and the ZeRO-1
// weight exchange on device buffers, on the CUDA ops' stream. NCCL is opened
// with dlopen at the first call, which the trainer makes only when more than
// one GPU process runs: a one-GPU run never needs libnccl.so.2, and a machine
// that has it only in the nvidia-nccl-cu13 Python wheel is searched
// (common/dynlib.h; LLAVA_NCCL_LIBRARY names the file outright).
// Bootstrap: rank 0 makes a unique id, MPI broadcasts it, every rank joins.
#ifndef LLAVA_NCCL_H
#define LLAVA_NCCL_H

#include <stddef.h>

#define LLAVA_NCCL_ID_BYTES 128

// Fills id[LLAVA_NCCL_ID_BYTES] (rank 0 only). 0, or -1 with msg.
int nccl_make_id(void *id, char *msg, size_t cap);
// Joins the communicator; NULL with msg on failure. The CUDA op table must
// exist (its device and stream are used).
void *nccl_join(const void *id, int rank, int world, char *msg, size_t cap);
// In place, on the ops' stream. 0, or -1 with msg.
int nccl_allreduce_sum_f32(void *comm, float *buf, size_t n, char *msg, size_t cap);
// The same on n bf16 elements (bf16 gradients: half the traffic; NCCL rounds
// the partial sums to bf16 between its steps).
int nccl_allreduce_sum_bf16(void *comm, void *buf, size_t n, char *msg, size_t cap);
int nccl_broadcast_bytes(void *comm, void *buf, size_t bytes, int root, char *msg, size_t cap);
void nccl_leave(void *comm);

#endif
