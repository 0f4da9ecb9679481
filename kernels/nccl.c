// NCCL through dlopen (see nccl.h). Not yet run on GPUs: docs/gpu-status.md
// lists it among the owed checks (it needs 2+ GPUs). On the CPU emulator it
// runs against tests/gpu/emu/emu_nccl.c (LLAVA_NCCL_LIBRARY), which does the
// collectives over MPI on the emulated stream.
#include "kernels/nccl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

// LLAVA_NCCL_TIMEOUT_S: seconds >= 0 (0: forever), 1800 when unset. 0, or -1 + msg.
static int nccl_timeout_from_env(double *out, char *msg, size_t cap) {
    const char *v = getenv("LLAVA_NCCL_TIMEOUT_S");
    *out = 1800.0;
    if (!v || !*v) return 0;
    char *end = NULL;
    double t = strtod(v, &end);
    if (end == v || *end || !(t >= 0.0) || t > 1e9) {
        snprintf(msg, cap, "LLAVA_NCCL_TIMEOUT_S=%s: not a number of seconds >= 0 (0 waits forever)", v);
        return -1;
    }
    *out = t;
    return 0;
}

int nccl_check_timeout_setting(char *msg, size_t cap) {
    double t;
    return nccl_timeout_from_env(&t, msg, cap);
}

#ifdef LLAVA_HAVE_NCCL_H
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
    __typeof__(&ncclReduce) reduce;
    __typeof__(&ncclCommDestroy) comm_destroy;
    __typeof__(&ncclGetErrorString) error_string;
    __typeof__(&ncclCommGetAsyncError) async_error;
    __typeof__(&ncclCommAbort) comm_abort;
    __typeof__(&ncclGroupStart) group_start;
    __typeof__(&ncclGroupEnd) group_end;
} NcclApi;

typedef struct {
    NcclApi api;
    ncclComm_t comm;
    const BackendStreams *st;  // every collective runs on st->comm
    void *compute_done;        // recorded on st->compute: the ops enqueued so far
    void *comm_done;           // recorded on st->comm: the collectives enqueued so far
    int drop_wait;             // LLAVA_TEST_DROP_COMM_WAIT: the negative control of the stream tests
    int rank;
    double timeout_s;          // LLAVA_NCCL_TIMEOUT_S; 0: wait forever
    NcclDieFn die;
    void *die_ctx;
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
    const DynlibSymbol syms[] = {
        {"ncclGetUniqueId", (void **)&api->get_unique_id},   {"ncclCommInitRank", (void **)&api->comm_init_rank},
        {"ncclAllReduce", (void **)&api->all_reduce},         {"ncclBroadcast", (void **)&api->broadcast},
        {"ncclCommDestroy", (void **)&api->comm_destroy},     {"ncclGetErrorString", (void **)&api->error_string},
        {"ncclReduce", (void **)&api->reduce},               {"ncclCommGetAsyncError", (void **)&api->async_error},
        {"ncclCommAbort", (void **)&api->comm_abort},         {"ncclGroupStart", (void **)&api->group_start},
        {"ncclGroupEnd", (void **)&api->group_end},
    };
    const char *missing = dynlib_resolve(lib, syms, sizeof syms / sizeof *syms);
    if (missing) {
        snprintf(msg, cap, "the NCCL library found lacks %s (too old?)", missing);
        return -1;
    }
    return 0;
}

static int nccl_fail(const NcclApi *api, ncclResult_t r, const char *what, char *msg, size_t cap) {
    snprintf(msg, cap, "%s: %s", what, api->error_string(r));
    return -1;
}

int nccl_probe(char *msg, size_t cap) {
    NcclApi api;
    return nccl_load(&api, msg, cap);
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

void *nccl_join(const void *id, int rank, int world, NcclDieFn die, void *die_ctx, char *msg, size_t cap) {
    const BackendStreams *st = backend_cuda_streams();
    if (!st) {
        snprintf(msg, cap, "NCCL needs the CUDA backend to be initialized first");
        return NULL;
    }
    NcclComm *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(msg, cap, "out of memory");
        return NULL;
    }
    c->st = st;
    c->rank = rank;
    c->die = die;
    c->die_ctx = die_ctx;
    if (nccl_timeout_from_env(&c->timeout_s, msg, cap) != 0 || nccl_load(&c->api, msg, cap) != 0) {
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
    c->compute_done = st->event_new();
    c->comm_done = st->event_new();
    const char *drop = getenv("LLAVA_TEST_DROP_COMM_WAIT");
    c->drop_wait = drop && atoi(drop) != 0;
    return c;
}

static double nccl_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// A peer failed or the wait ran out: this rank cannot go on (its next
// collective would hang), nor leave alone (the others would wait for it).
__attribute__((noreturn)) static void nccl_give_up(NcclComm *c, ncclResult_t r, const char *what) {
    if (r != ncclSuccess)
        fprintf(stderr, "llava train: rank %d: NCCL failed while waiting for %s: %s (a peer died or its network "
                "failed?; LLAVA_NCCL_TIMEOUT_S=%g s had not run out); ending the job\n", c->rank, what,
                c->api.error_string(r), c->timeout_s);
    else
        fprintf(stderr, "llava train: rank %d: %s did not complete within LLAVA_NCCL_TIMEOUT_S=%g s (a peer is "
                "stuck or died?); ending the job (raise LLAVA_NCCL_TIMEOUT_S, 0 waits forever)\n", c->rank, what,
                c->timeout_s);
    fflush(stderr);
    c->api.comm_abort(c->comm);  // NCCL's kernels stop, so nothing queued spins on the GPU
    c->die(c->die_ctx);
    abort();  // die() does not return
}

// The poll of nccl_wait_event; `always`: NCCL's error state is read even when
// the event has completed (a collective ended by a peer's failure completes
// too), which a wait for every collective so far needs and a wait for one
// layer does not (the step's end reads it).
static void nccl_poll(NcclComm *c, void *event, int always, const char *what) {
    if (!always && c->st->event_done(event)) return;
    const double start = nccl_now_s();
    long sleep_ns = 20000;  // 20 us, doubling up to 10 ms: short waits stay short, long ones cost no CPU
    for (;;) {
        const int done = c->st->event_done(event);
        ncclResult_t async = ncclSuccess;
        ncclResult_t r = c->api.async_error(c->comm, &async);
        if (r != ncclSuccess) nccl_give_up(c, r, what);
        if (async != ncclSuccess && async != ncclInProgress) nccl_give_up(c, async, what);
        if (done) return;
        if (c->timeout_s > 0 && nccl_now_s() - start > c->timeout_s) nccl_give_up(c, ncclSuccess, what);
        struct timespec ts = {0, sleep_ns};
        nanosleep(&ts, NULL);
        if (sleep_ns < 10000000) sleep_ns *= 2;
    }
}

void nccl_wait_event(void *comm, void *event, const char *what) { nccl_poll(comm, event, 0, what); }

void nccl_wait_all(void *comm, const char *what) {
    NcclComm *c = comm;
    c->st->record(c->comm_done, c->st->comm);
    nccl_poll(c, c->comm_done, 1, what);
}

// Group calls fail only on misuse (an unbalanced end) or an error of the
// collectives queued inside: fatal, as the collectives' own errors.
void nccl_group_start(void *comm) {
    NcclComm *c = comm;
    ncclResult_t r = c->api.group_start();
    if (r != ncclSuccess) {
        fprintf(stderr, "llava train: rank %d: ncclGroupStart: %s\n", c->rank, c->api.error_string(r));
        c->die(c->die_ctx);
    }
}
void nccl_group_end(void *comm) {
    NcclComm *c = comm;
    ncclResult_t r = c->api.group_end();
    if (r != ncclSuccess) {
        fprintf(stderr, "llava train: rank %d: ncclGroupEnd: %s\n", c->rank, c->api.error_string(r));
        c->die(c->die_ctx);
    }
}

void nccl_comm_waits_compute(void *comm) {
    NcclComm *c = comm;
    c->st->record(c->compute_done, c->st->compute);
    c->st->wait(c->st->comm, c->compute_done);
}

void nccl_compute_waits_comm(void *comm) {
    NcclComm *c = comm;
    c->st->record(c->comm_done, c->st->comm);  // nccl_leave waits for it
    if (c->drop_wait) return;  // the negative control: the ops read what the collectives have not written yet
    c->st->wait(c->st->compute, c->comm_done);
}

// The collectives, in place on the comm stream (r: what NCCL returned).
static ncclResult_t nccl_enqueue(NcclComm *c, int reduce, void *buf, size_t n, int root) {
    cudaStream_t s = (cudaStream_t)c->st->comm;
    if (reduce && root < 0) return c->api.all_reduce(buf, buf, n, ncclFloat32, ncclSum, c->comm, s);
    if (reduce) return c->api.reduce(buf, buf, n, ncclFloat32, ncclSum, root, c->comm, s);
    return c->api.broadcast(buf, buf, n, ncclUint8, root, c->comm, s);
}

// One collective, ordered with the ops when `ordered` (see nccl.h).
static int nccl_collective(void *comm, int ordered, int reduce, void *buf, size_t n, int root, const char *what,
                           char *msg, size_t cap) {
    NcclComm *c = comm;
    if (ordered) nccl_comm_waits_compute(c);
    ncclResult_t r = nccl_enqueue(c, reduce, buf, n, root);
    if (ordered) nccl_compute_waits_comm(c);
    return r == ncclSuccess ? 0 : nccl_fail(&c->api, r, what, msg, cap);
}

int nccl_allreduce_sum_f32(void *comm, float *buf, size_t n, char *msg, size_t cap) {
    return nccl_collective(comm, 1, 1, buf, n, -1, "ncclAllReduce", msg, cap);
}
// bf16 gradients (grad_dtype bf16): summed by NCCL in bf16, ordered with the ops as the fp32 one.
int nccl_allreduce_sum_bf16(void *comm, void *buf, size_t n, char *msg, size_t cap) {
    NcclComm *c = comm;
    nccl_comm_waits_compute(c);
    ncclResult_t r = c->api.all_reduce(buf, buf, n, ncclBfloat16, ncclSum, c->comm, (cudaStream_t)c->st->comm);
    nccl_compute_waits_comm(c);
    return r == ncclSuccess ? 0 : nccl_fail(&c->api, r, "ncclAllReduce", msg, cap);
}
int nccl_broadcast_bytes(void *comm, void *buf, size_t bytes, int root, char *msg, size_t cap) {
    return nccl_collective(comm, 1, 0, buf, bytes, root, "ncclBroadcast", msg, cap);
}
int nccl_reduce_sum_f32_async(void *comm, float *buf, size_t n, int root, char *msg, size_t cap) {
    return nccl_collective(comm, 0, 1, buf, n, root, "ncclReduce", msg, cap);
}
int nccl_broadcast_bytes_async(void *comm, void *buf, size_t bytes, int root, char *msg, size_t cap) {
    return nccl_collective(comm, 0, 0, buf, bytes, root, "ncclBroadcast", msg, cap);
}

void nccl_leave(void *comm) {
    NcclComm *c = comm;
    if (!c) return;
    nccl_wait_all(c, "the last collectives (before leaving NCCL)");  // done before the communicator goes
    c->api.comm_destroy(c->comm);
    c->st->event_free(c->compute_done);
    c->st->event_free(c->comm_done);
    free(c);
}

#else  // configured without nccl.h: the trainer falls back to MPI through host memory

int nccl_probe(char *msg, size_t cap) {
    snprintf(msg, cap, "this build has no NCCL (nccl.h was not found when it was configured)");
    return -1;
}
int nccl_make_id(void *id, char *msg, size_t cap) {
    (void)id;
    snprintf(msg, cap, "this build has no NCCL (nccl.h was not found when it was configured)");
    return -1;
}
void *nccl_join(const void *id, int rank, int world, NcclDieFn die, void *die_ctx, char *msg, size_t cap) {
    (void)id, (void)rank, (void)world, (void)die, (void)die_ctx;
    snprintf(msg, cap, "this build has no NCCL (nccl.h was not found when it was configured)");
    return NULL;
}
static int nccl_missing(char *msg, size_t cap) {
    snprintf(msg, cap, "this build has no NCCL");
    return -1;
}
int nccl_allreduce_sum_f32(void *comm, float *buf, size_t n, char *msg, size_t cap) {
    (void)comm, (void)buf, (void)n;
    return nccl_missing(msg, cap);
}
int nccl_allreduce_sum_bf16(void *comm, void *buf, size_t n, char *msg, size_t cap) {
    (void)comm, (void)buf, (void)n;
    return nccl_missing(msg, cap);
}
int nccl_broadcast_bytes(void *comm, void *buf, size_t bytes, int root, char *msg, size_t cap) {
    (void)comm, (void)buf, (void)bytes, (void)root;
    return nccl_missing(msg, cap);
}
int nccl_reduce_sum_f32_async(void *comm, float *buf, size_t n, int root, char *msg, size_t cap) {
    (void)root;
    return nccl_allreduce_sum_f32(comm, buf, n, msg, cap);
}
int nccl_broadcast_bytes_async(void *comm, void *buf, size_t bytes, int root, char *msg, size_t cap) {
    return nccl_broadcast_bytes(comm, buf, bytes, root, msg, cap);
}
void nccl_comm_waits_compute(void *comm) { (void)comm; }
void nccl_compute_waits_comm(void *comm) { (void)comm; }
void nccl_leave(void *comm) { (void)comm; }
void nccl_wait_event(void *comm, void *event, const char *what) { (void)comm, (void)event, (void)what; }
void nccl_wait_all(void *comm, const char *what) { (void)comm, (void)what; }
void nccl_group_start(void *comm) { (void)comm; }
void nccl_group_end(void *comm) { (void)comm; }

#endif
