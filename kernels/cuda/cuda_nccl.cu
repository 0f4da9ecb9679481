// NCCL collectives for the trainer (see cuda_nccl.h). Not yet run on a GPU:
// docs/gpu-status.md lists it among the owed checks (it needs 2+ GPUs).
#include "kernels/cuda/cuda_nccl.h"

#include <stdio.h>
#include <string.h>

#ifdef LLAVA_HAVE_NCCL
#include <cuda_runtime.h>
#include <nccl.h>

#include "kernels/cuda/cuda_backend.h"

static_assert(LLAVA_NCCL_ID_BYTES == NCCL_UNIQUE_ID_BYTES, "NCCL id size");

static int nccl_fail(ncclResult_t r, const char *what, char *msg, size_t cap) {
    snprintf(msg, cap, "%s: %s", what, ncclGetErrorString(r));
    return -1;
}

extern "C" int nccl_make_id(void *id, char *msg, size_t cap) {
    ncclUniqueId u;
    ncclResult_t r = ncclGetUniqueId(&u);
    if (r != ncclSuccess) return nccl_fail(r, "ncclGetUniqueId", msg, cap);
    memcpy(id, &u, sizeof u);
    return 0;
}

extern "C" void *nccl_join(const void *id, int rank, int world, char *msg, size_t cap) {
    if (!ops_cuda_stream()) {
        snprintf(msg, cap, "NCCL needs the CUDA backend to be initialized first");
        return NULL;
    }
    ncclUniqueId u;
    memcpy(&u, id, sizeof u);
    ncclComm_t comm;
    ncclResult_t r = ncclCommInitRank(&comm, world, u, rank);
    if (r != ncclSuccess) {
        nccl_fail(r, "ncclCommInitRank", msg, cap);
        return NULL;
    }
    return comm;
}

extern "C" int nccl_allreduce_sum_f32(void *comm, float *buf, size_t n, char *msg, size_t cap) {
    ncclResult_t r = ncclAllReduce(buf, buf, n, ncclFloat32, ncclSum, (ncclComm_t)comm, (cudaStream_t)ops_cuda_stream());
    return r == ncclSuccess ? 0 : nccl_fail(r, "ncclAllReduce", msg, cap);
}

extern "C" int nccl_broadcast_bytes(void *comm, void *buf, size_t bytes, int root, char *msg, size_t cap) {
    ncclResult_t r = ncclBroadcast(buf, buf, bytes, ncclUint8, root, (ncclComm_t)comm, (cudaStream_t)ops_cuda_stream());
    return r == ncclSuccess ? 0 : nccl_fail(r, "ncclBroadcast", msg, cap);
}

extern "C" void nccl_leave(void *comm) {
    if (comm) ncclCommDestroy((ncclComm_t)comm);
}

#else  // built without NCCL: the trainer falls back to MPI through host memory

extern "C" int nccl_make_id(void *id, char *msg, size_t cap) {
    (void)id;
    snprintf(msg, cap, "this build has no NCCL");
    return -1;
}
extern "C" void *nccl_join(const void *id, int rank, int world, char *msg, size_t cap) {
    (void)id, (void)rank, (void)world;
    snprintf(msg, cap, "this build has no NCCL");
    return NULL;
}
extern "C" int nccl_allreduce_sum_f32(void *comm, float *buf, size_t n, char *msg, size_t cap) {
    (void)comm, (void)buf, (void)n;
    snprintf(msg, cap, "this build has no NCCL");
    return -1;
}
extern "C" int nccl_broadcast_bytes(void *comm, void *buf, size_t bytes, int root, char *msg, size_t cap) {
    (void)comm, (void)buf, (void)bytes, (void)root;
    snprintf(msg, cap, "this build has no NCCL");
    return -1;
}
extern "C" void nccl_leave(void *comm) { (void)comm; }

#endif
