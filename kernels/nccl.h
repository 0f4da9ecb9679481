// NCCL for data parallelism on GPUs: the gradient all-reduce, the ZeRO-1
// weight exchange and ZeRO-2/3's per-layer collectives on device buffers, on
// the CUDA backend's communication stream (kernels/streams.h), ordered
// against the ops' stream by events, never by stopping the host. NCCL is opened
// with dlopen at the first call, which the trainer makes only when more than
// one GPU process runs: a one-GPU run never needs libnccl.so.2, and a machine
// that has it only in the nvidia-nccl-cu13 Python wheel is searched
// (common/dynlib.h; LLAVA_NCCL_LIBRARY names the file outright).
// Bootstrap: rank 0 makes a unique id, MPI broadcasts it, every rank joins.
#ifndef LLAVA_NCCL_H
#define LLAVA_NCCL_H

#include <stddef.h>

#define LLAVA_NCCL_ID_BYTES 128

// Whether this process can open NCCL (every rank asks before any joins:
// ncclCommInitRank is collective, so a rank that cannot load the library
// while the others join would leave them waiting forever). 0, or -1 with msg.
int nccl_probe(char *msg, size_t cap);
// Fills id[LLAVA_NCCL_ID_BYTES] (rank 0 only). 0, or -1 with msg.
int nccl_make_id(void *id, char *msg, size_t cap);
// Joins the communicator; NULL with msg on failure. The CUDA op table must
// exist (its device and stream are used).
void *nccl_join(const void *id, int rank, int world, char *msg, size_t cap);
// In place, in order with the ops: after every op enqueued so far and before
// every later one (the comm stream waits for the compute stream, then the
// compute stream for the collective). 0, or -1 with msg.
int nccl_allreduce_sum_f32(void *comm, float *buf, size_t n, char *msg, size_t cap);
// The same on n bf16 elements (bf16 gradients: half the traffic; NCCL rounds
// the partial sums to bf16 between its steps).
int nccl_allreduce_sum_bf16(void *comm, void *buf, size_t n, char *msg, size_t cap);
int nccl_broadcast_bytes(void *comm, void *buf, size_t bytes, int root, char *msg, size_t cap);
// The pieces, for collectives that overlap the ops: the comm stream waits for
// the ops enqueued so far; the ops enqueued later wait for the collectives
// enqueued so far (LLAVA_TEST_DROP_COMM_WAIT=1 skips that wait: the negative
// control of tests/test_zero_cuda.sh, whose results must then be wrong).
void nccl_comm_waits_compute(void *comm);
void nccl_compute_waits_comm(void *comm);
// On the comm stream only, ordered by the two calls above. In place: root
// gets the sum of every rank's buf[n] (the others' buf is left as it was).
int nccl_reduce_sum_f32_async(void *comm, float *buf, size_t n, int root, char *msg, size_t cap);
int nccl_broadcast_bytes_async(void *comm, void *buf, size_t bytes, int root, char *msg, size_t cap);
void nccl_leave(void *comm);

#endif
