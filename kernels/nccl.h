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
// Checks LLAVA_NCCL_TIMEOUT_S (seconds >= 0; the trainer refuses a bad one
// before any rank joins). 0, or -1 with msg. Fine without NCCL too.
int nccl_check_timeout_setting(char *msg, size_t cap);
// Ends the whole job (the trainer's comm_abort): a rank whose peer failed
// cannot leave on its own, the others would wait for it in their collectives.
typedef void (*NcclDieFn)(void *ctx);
// Joins the communicator; NULL with msg on failure. The CUDA op table must
// exist (its device and stream are used). LLAVA_NCCL_TIMEOUT_S (seconds,
// default 1800, 0 = forever) bounds every host wait below on NCCL work.
void *nccl_join(const void *id, int rank, int world, NcclDieFn die, void *die_ctx, char *msg, size_t cap);
// The host waits for `event` (recorded on any stream whose work may wait for
// the collectives) as a poll: the event, ncclCommGetAsyncError, a short
// sleep. On an asynchronous NCCL error (a peer died) or after
// LLAVA_NCCL_TIMEOUT_S: ncclCommAbort, a message naming this rank, `what` is
// waited for and the setting, then die() (never returns).
void nccl_wait_event(void *comm, void *event, const char *what);
// The same for every collective enqueued so far (before a host read of their
// results or a host collective over MPI that a stuck peer would hang).
void nccl_wait_all(void *comm, const char *what);
// Collectives enqueued between the two are launched by NCCL as one operation
// (ZeRO-2's per-owner reduces of a layer, ZeRO-3's per-owner broadcasts).
void nccl_group_start(void *comm);
void nccl_group_end(void *comm);
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
