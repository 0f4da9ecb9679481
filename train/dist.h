// The communicator for data parallelism. Implementations: a single process
// (no-op), and MPI on host buffers (the CPU backend; also the bootstrap of
// multi-GPU runs). Processes are started by mpirun or srun, one per device.
// Reductions are reduce-to-0 + broadcast so every rank gets bitwise the same
// result (weights then stay identical across ranks).
#ifndef LLAVA_DIST_H
#define LLAVA_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "common/util.h"

typedef enum { COMM_SINGLE, COMM_MPI } CommKind;

typedef struct {
    CommKind kind;
    int rank, world;
} Comm;

// MPI when the process was launched by mpirun/srun (their environment
// variables are present) and the build has MPI; a single process otherwise.
int comm_init(Comm *c, int *argc, char ***argv, Error *err);
void comm_finalize(Comm *c);
void comm_allreduce_sum_f32(const Comm *c, float *buf, size_t n);
void comm_allreduce_sum_f64(const Comm *c, double *buf, size_t n);
void comm_allreduce_sum_i64(const Comm *c, int64_t *buf, size_t n);
void comm_broadcast(const Comm *c, void *buf, size_t bytes, int root);
// In place: rank r's bytes [displs[r], displs[r] + counts[r]) of buf are sent
// to every rank (counts and displs in bytes, one entry per rank).
void comm_allgatherv_bytes(const Comm *c, void *buf, const size_t *counts, const size_t *displs);
// In place: the sum over ranks of buf[0..n) lands in root's buf (the others'
// buf is left as it was). ZeRO-2 reduce-scatters a bucket as one of these per
// slice owner.
void comm_reduce_sum_f32(const Comm *c, float *buf, size_t n, int root);
// In place: rank r's bytes [displs[r], displs[r] + counts[r]) of buf reach
// rank 0 only (ZeRO-3 assembles the whole model on rank 0 to save it).
void comm_gatherv_bytes_to0(const Comm *c, void *buf, const size_t *counts, const size_t *displs);
// Broadcasts started without waiting (ZeRO-3's prefetch of the next layer):
// comm_ibroadcast adds to `pending`, comm_wait_all completes them all. MPI
// moves the data while the process is inside MPI calls.
typedef struct {
    void *requests;  // MPI_Request[cap]
    int n, cap;
} CommPending;
void comm_ibroadcast(const Comm *c, void *buf, size_t bytes, int root, CommPending *pending);
void comm_wait_all(const Comm *c, CommPending *pending);
void comm_pending_free(CommPending *pending);
void comm_barrier(const Comm *c);
// Ends every process of the job (MPI_Abort) with `code`: for an error on one
// rank that the others cannot learn about without hanging in a collective.
// A single process just exits.
void comm_abort(const Comm *c, int code) __attribute__((noreturn));
// 1 on every rank when `flag` is 1 on every rank.
int comm_all(const Comm *c, int flag);

#endif
