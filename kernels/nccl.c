// NCCL through dlopen (see nccl.h). Not yet run on a GPU: docs/gpu-status.md
// lists it among the owed checks (it needs 2+ GPUs).
#include "kernels/nccl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef LLAVA_HAVE_NCCL_H
#include <dlfcn.h>
#include <nccl.h>

#include "common/dynlib.h"
#include "kernels/backend.h"

_Static_assert(LLAVA_NCCL_ID_BYTES == NCCL_UNIQUE_ID_BYTES, "NCCL id size");

// The entry points used, typed from nccl.h itself.
typedef struct {
    __typeof__(&ncclGetUniqueId) get_unique_id;
    __typeof__(&ncclCommInitRank) comm_init_rank;
    __typeof__(&ncclAllReduce) all_reduce;
    __typeof__(&ncclBroadcast) broadcast;
    __typeof__(&ncclCommDestroy) comm_destroy;
    __typeof__(&ncclGetErrorString) error_string;
} NcclApi;

typedef struct {
    NcclApi api;
    ncclComm_t comm;
    void *stream;  // the CUDA ops' cudaStream_t
} NcclComm;

// Opens libnccl.so.2 (dlopen counts references, so calling this again returns
// the library already loaded) and resolves every entry point. 0, or -1 + msg.
static int nccl_load(NcclApi *api, char *msg, size_t cap) {
    const char *name = getenv("LLAVA_NCCL_LIBRARY");
    DynlibDirs dirs;
    void *lib = dynlib_open(name && *name ? name : "libnccl.so.2", dynlib_wheel_dirs(&dirs, "nvidia/nccl/lib"), msg,
                            cap);
    if (!lib) {
        size_t used = strlen(msg);
        snprintf(msg + used, cap - used,
                 " (NCCL is needed for more than one GPU process: install it, or pip install "
                 "nvidia-nccl-cu13, or set LLAVA_NCCL_LIBRARY to libnccl.so.2)");
        return -1;
    }
    struct {
        const char *name;
        void **slot;
    } syms[] = {
        {"ncclGetUniqueId", (void **)&api->get_unique_id},   {"ncclCommInitRank", (void **)&api->comm_init_rank},
        {"ncclAllReduce", (void **)&api->all_reduce},         {"ncclBroadcast", (void **)&api->broadcast},
        {"ncclCommDestroy", (void **)&api->comm_destroy},     {"ncclGetErrorString", (void **)&api->error_string},
    };
    for (size_t i = 0; i < sizeof syms / sizeof *syms; i++) {
        *syms[i].slot = dlsym(lib, syms[i].name);
        if (!*syms[i].slot) {
            snprintf(msg, cap, "the NCCL library found lacks %s (too old?)", syms[i].name);
            return -1;
        }
    }
    return 0;
}

static int nccl_fail(const NcclApi *api, ncclResult_t r, const char *what, char *msg, size_t cap) {
    snprintf(msg, cap, "%s: %s", what, api->error_string(r));
    return -1;
}

int nccl_make_id(void *id, char *msg, size_t cap) {
    NcclApi api;
    if (nccl_load(&api, msg, cap) != 0) return -1;
    ncclUniqueId u;
    ncclResult_t r = api.get_unique_id(&u);
    if (r != ncclSuccess) return nccl_fail(&api, r, "ncclGetUniqueId", msg, cap);
    memcpy(id, &u, sizeof u);
    return 0;
}

void *nccl_join(const void *id, int rank, int world, char *msg, size_t cap) {
    void *stream = backend_cuda_stream();
    if (!stream) {
        snprintf(msg, cap, "NCCL needs the CUDA backend to be initialized first");
        return NULL;
    }
    NcclComm *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(msg, cap, "out of memory");
        return NULL;
    }
    c->stream = stream;
    if (nccl_load(&c->api, msg, cap) != 0) {
        free(c);
        return NULL;
    }
    ncclUniqueId u;
    memcpy(&u, id, sizeof u);
    ncclResult_t r = c->api.comm_init_rank(&c->comm, world, u, rank);
    if (r != ncclSuccess) {
        nccl_fail(&c->api, r, "ncclCommInitRank", msg, cap);
        free(c);
        return NULL;
    }
    return c;
}

int nccl_allreduce_sum_f32(void *comm, float *buf, size_t n, char *msg, size_t cap) {
    NcclComm *c = comm;
    ncclResult_t r = c->api.all_reduce(buf, buf, n, ncclFloat32, ncclSum, c->comm, (cudaStream_t)c->stream);
    return r == ncclSuccess ? 0 : nccl_fail(&c->api, r, "ncclAllReduce", msg, cap);
}

int nccl_allreduce_sum_bf16(void *comm, void *buf, size_t n, char *msg, size_t cap) {
    NcclComm *c = comm;
    ncclResult_t r = c->api.all_reduce(buf, buf, n, ncclBfloat16, ncclSum, c->comm, (cudaStream_t)c->stream);
    return r == ncclSuccess ? 0 : nccl_fail(&c->api, r, "ncclAllReduce", msg, cap);
}

int nccl_broadcast_bytes(void *comm, void *buf, size_t bytes, int root, char *msg, size_t cap) {
    NcclComm *c = comm;
    ncclResult_t r = c->api.broadcast(buf, buf, bytes, ncclUint8, root, c->comm, (cudaStream_t)c->stream);
    return r == ncclSuccess ? 0 : nccl_fail(&c->api, r, "ncclBroadcast", msg, cap);
}

void nccl_leave(void *comm) {
    NcclComm *c = comm;
    if (!c) return;
    c->api.comm_destroy(c->comm);
    free(c);
}

#else  // configured without nccl.h: the trainer falls back to MPI through host memory

int nccl_make_id(void *id, char *msg, size_t cap) {
    (void)id;
    snprintf(msg, cap, "this build has no NCCL (nccl.h was not found when it was configured)");
    return -1;
}
void *nccl_join(const void *id, int rank, int world, char *msg, size_t cap) {
    (void)id, (void)rank, (void)world;
    snprintf(msg, cap, "this build has no NCCL (nccl.h was not found when it was configured)");
    return NULL;
}
int nccl_allreduce_sum_f32(void *comm, float *buf, size_t n, char *msg, size_t cap) {
    (void)comm, (void)buf, (void)n;
    snprintf(msg, cap, "this build has no NCCL");
    return -1;
}
int nccl_allreduce_sum_bf16(void *comm, void *buf, size_t n, char *msg, size_t cap) {
    (void)comm, (void)buf, (void)n;
    snprintf(msg, cap, "this build has no NCCL");
    return -1;
}
int nccl_broadcast_bytes(void *comm, void *buf, size_t bytes, int root, char *msg, size_t cap) {
    (void)comm, (void)buf, (void)bytes, (void)root;
    snprintf(msg, cap, "this build has no NCCL");
    return -1;
}
void nccl_leave(void *comm) { (void)comm; }

#endif
