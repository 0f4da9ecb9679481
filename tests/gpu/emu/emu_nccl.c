// A stand-in for libnccl.so.2 on the CPU emulator (libnccl_emu.so, loaded by
// kernels/nccl.c through LLAVA_NCCL_LIBRARY): the subset of NCCL's API the
// trainer uses, done over MPI on the emulator's device memory (host memory).
// Each collective is enqueued on the stream it is given, as a host function
// (cudaLaunchHostFunc, which the emulator defines, tests/gpu/emu_streams.cpp):
// on a deferred (communication) stream it runs only when something waits for
// that stream, so the trainer's events are what orders it, as on GPUs.
// The ranks run the same program, so they reach their deferred collectives in
// the same order and MPI's blocking collectives match up.
//
// Every collective is first checked to be the same one on every rank
// (emu_nccl_check_same). Groups (ncclGroupStart/End) hold the collectives and
// enqueue them in order at the end. Failure: LLAVA_EMU_NCCL_STALL_RANK=r makes
// rank r's first collective block forever after telling its peers, whose
// collectives (nonblocking MPI, polled) then stop with ncclRemoteError, which
// ncclCommGetAsyncError reports (tests/test_nccl_faults.sh). What this cannot show: NCCL's own behaviour (its algorithms' summation
// order, which can differ from MPI's; transports; hangs between real
// streams). docs/gpu-status.md lists those among the GPU-only checks.
#include <mpi.h>
#include <nccl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct ncclComm {
    MPI_Comm mpi;   // a duplicate of MPI_COMM_WORLD: its collectives never match the trainer's own
    MPI_Comm side;  // another: the stall hook's notices (a peer's failure, as NCCL's transports see it)
    int rank, world;
    int stall_rank;                // LLAVA_EMU_NCCL_STALL_RANK: its next collective never completes; -1: none
    ncclResult_t async;            // what ncclCommGetAsyncError reports: ncclRemoteError once a peer failed
    cudaStream_t last_stream;      // where the collectives run: ncclCommGetAsyncError lets it progress
};

// The test hook: the stalled rank tells every peer (as a dead peer's broken
// connection would), then blocks forever inside its collective; kill -9
// or the others' MPI_Abort ends it.
enum { EMU_STALL_TAG = 77 };
static void emu_nccl_stall(ncclComm_t comm) {
    fprintf(stderr, "emulated NCCL: rank %d stalls in its collective (LLAVA_EMU_NCCL_STALL_RANK)\n", comm->rank);
    fflush(stderr);
    int one = 1;
    for (int r = 0; r < comm->world; r++)
        if (r != comm->rank) MPI_Send(&one, 1, MPI_INT, r, EMU_STALL_TAG, comm->side);
    for (;;) {
        struct timespec ts = {1, 0};
        nanosleep(&ts, NULL);
    }
}

// Waits for a nonblocking MPI collective while watching for a peer's stall
// notice: 0 when it completed, -1 (comm->async set) when a peer failed.
static int emu_nccl_finish(ncclComm_t comm, MPI_Request *req) {
    for (;;) {
        int done = 0, notice = 0;
        if (MPI_Test(req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS) return -1;
        if (done) return 0;
        MPI_Iprobe(MPI_ANY_SOURCE, EMU_STALL_TAG, comm->side, &notice, MPI_STATUS_IGNORE);
        if (notice) {
            comm->async = ncclRemoteError;
            return -1;
        }
        struct timespec ts = {0, 100000};  // 0.1 ms: two cores shared with the peers
        nanosleep(&ts, NULL);
    }
}

static void emu_nccl_die(const char *what, int rc) {
    char s[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, s, &len);
    fprintf(stderr, "emulated NCCL: %s failed: %s\n", what, s);
    abort();  // inside a stream's host function: no error can be returned
}

// bf16 (grad_dtype bf16's all-reduce): MPI has no such type; a 2-byte type
// whose sum, like NCCL's, adds two bf16 numbers in fp32 and rounds the partial
// sum back to bf16 (nearest even) at each step.
static float emu_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
static uint16_t emu_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);  // NaN stays NaN
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
static void emu_bf16_sum(void *in, void *inout, int *len, MPI_Datatype *type) {
    (void)type;
    const uint16_t *a = in;
    uint16_t *b = inout;
    for (int i = 0; i < *len; i++) b[i] = emu_f32_to_bf16(emu_bf16_to_f32(a[i]) + emu_bf16_to_f32(b[i]));
}
static MPI_Datatype g_bf16 = MPI_DATATYPE_NULL;  // made once per process (test-only library)
static MPI_Op g_bf16_sum = MPI_OP_NULL;
static MPI_Datatype emu_bf16_type(void) {
    if (g_bf16 == MPI_DATATYPE_NULL) {
        MPI_Type_contiguous(2, MPI_BYTE, &g_bf16);
        MPI_Type_commit(&g_bf16);
        MPI_Op_create(emu_bf16_sum, 1, &g_bf16_sum);
    }
    return g_bf16;
}

static MPI_Datatype emu_nccl_type(ncclDataType_t t, size_t *bytes) {
    switch (t) {
    case ncclInt8:
    case ncclUint8: *bytes = 1; return MPI_BYTE;
    case ncclInt32: *bytes = 4; return MPI_INT;
    case ncclUint32: *bytes = 4; return MPI_UNSIGNED;
    case ncclInt64: *bytes = 8; return MPI_INT64_T;
    case ncclFloat32: *bytes = 4; return MPI_FLOAT;
    case ncclFloat64: *bytes = 8; return MPI_DOUBLE;
    case ncclBfloat16: *bytes = 2; return emu_bf16_type();
    default: *bytes = 0; return MPI_DATATYPE_NULL;  // fp16 and fp8: not used by the trainer
    }
}

static MPI_Op emu_nccl_op(ncclRedOp_t op) {
    switch (op) {
    case ncclSum: return MPI_SUM;
    case ncclProd: return MPI_PROD;
    case ncclMax: return MPI_MAX;
    case ncclMin: return MPI_MIN;
    default: return MPI_OP_NULL;
    }
}

typedef enum { EMU_ALLREDUCE, EMU_BROADCAST, EMU_REDUCE, EMU_REDUCE_SCATTER, EMU_ALLGATHER } EmuKind;

typedef struct {
    EmuKind kind;
    const void *send;
    void *recv;
    size_t count;  // elements: of the whole buffer, or (reduce-scatter, all-gather) of each rank's part
    MPI_Datatype type;
    size_t elem;
    MPI_Op op;
    int root;
    ncclComm_t comm;
} EmuCollective;

// MPI counts are int: the tiny test models never come near INT_MAX.
static int emu_count(size_t n) {
    if (n > 0x7fffffff) {
        fprintf(stderr, "emulated NCCL: %zu elements in one collective (at most 2^31-1)\n", n);
        abort();
    }
    return (int)n;
}

// NCCL needs every rank to issue the same collectives (kind, size, type,
// operation, root) in the same order; one that differs is a hang (or silent
// garbage) on GPUs, and with MPI could even match up by chance (a broadcast
// with a reduce of the same size). Checked before each one: the run stops
// naming both collectives.
static void emu_nccl_check_same(const EmuCollective *c) {
    const long long mine[5] = {(long long)c->kind, (long long)c->count, (long long)c->elem, (long long)c->root,
                               c->op == MPI_SUM || c->op == g_bf16_sum ? 1 : c->op == MPI_OP_NULL ? 0 : 2};
    long long *all = malloc(sizeof mine * (size_t)c->comm->world);
    if (!all) abort();
    int rc = MPI_Allgather(mine, 5, MPI_LONG_LONG, all, 5, MPI_LONG_LONG, c->comm->mpi);
    if (rc != MPI_SUCCESS) emu_nccl_die("the collectives' check", rc);
    static const char *kinds[] = {"AllReduce", "Broadcast", "Reduce", "ReduceScatter", "AllGather"};
    for (int r = 0; r < c->comm->world; r++)
        if (memcmp(all + 5 * r, mine, sizeof mine) != 0) {
            const long long *o = all + 5 * r;
            fprintf(stderr, "emulated NCCL: rank %d issues nccl%s(count %lld, %lld-byte elements, root %lld) where "
                    "rank %d issues nccl%s(count %lld, %lld-byte elements, root %lld): the ranks' collectives differ "
                    "(a hang on GPUs)\n", c->comm->rank, kinds[c->kind], mine[1], mine[2], mine[3], r,
                    kinds[o[0] >= 0 && o[0] < 5 ? o[0] : 0], o[1], o[2], o[3]);
            abort();
        }
    free(all);
}

static void emu_nccl_run(void *arg) {
    EmuCollective *c = arg;
    MPI_Comm mc = c->comm->mpi;
    const int n = emu_count(c->count), me = c->comm->rank;
    if (c->comm->async != ncclSuccess) {  // a peer failed: NCCL's later collectives do not run either
        free(c);
        return;
    }
    emu_nccl_check_same(c);
    if (c->comm->stall_rank == me) emu_nccl_stall(c->comm);
    const int in_place = c->send == c->recv;
    int rc = MPI_SUCCESS;
    MPI_Request req = MPI_REQUEST_NULL;
    void *copy = NULL;
    switch (c->kind) {
    case EMU_ALLREDUCE:
        rc = MPI_Iallreduce(in_place ? MPI_IN_PLACE : c->send, c->recv, n, c->type, c->op, mc, &req);
        break;
    case EMU_BROADCAST:
        if (me == c->root && !in_place) memcpy(c->recv, c->send, c->count * c->elem);
        rc = MPI_Ibcast(c->recv, n, c->type, c->root, mc, &req);
        break;
    case EMU_REDUCE:
        if (me == c->root)
            rc = MPI_Ireduce(in_place ? MPI_IN_PLACE : c->send, c->recv, n, c->type, c->op, c->root, mc, &req);
        else
            rc = MPI_Ireduce(c->send, NULL, n, c->type, c->op, c->root, mc, &req);
        break;
    case EMU_REDUCE_SCATTER: {
        // NCCL's in-place form has recv = send + rank * count, which MPI has no
        // form for: reduce from a copy of the input then.
        const size_t all = c->count * c->elem * (size_t)c->comm->world;
        const char *s = c->send, *r = c->recv;
        copy = r >= s && r < s + all ? malloc(all) : NULL;
        if (copy) memcpy(copy, s, all);
        rc = MPI_Ireduce_scatter_block(copy ? copy : c->send, c->recv, n, c->type, c->op, mc, &req);
        break;
    }
    case EMU_ALLGATHER:
        rc = MPI_Iallgather((const char *)c->send == (const char *)c->recv + (size_t)me * c->count * c->elem
                                ? MPI_IN_PLACE
                                : c->send,
                            n, c->type, c->recv, n, c->type, mc, &req);
        break;
    }
    if (rc != MPI_SUCCESS) emu_nccl_die("an MPI collective", rc);
    if (emu_nccl_finish(c->comm, &req) != 0) {  // a peer failed: the request is left, the job ends
        fprintf(stderr, "emulated NCCL: rank %d: a peer failed during a collective (ncclRemoteError)\n", me);
        return;  // c and copy stay: MPI may still write them
    }
    free(copy);
    free(c);
}

// ncclGroupStart..End: the collectives are held and enqueued in order at the
// end (each still checked to be the same on every rank when it runs).
typedef struct {
    EmuCollective *c;
    cudaStream_t stream;
} EmuHeld;
static int g_group_depth = 0;  // per process (NCCL's groups are per thread; the trainer has one)
static EmuHeld g_held[256];
static int g_n_held = 0;

static ncclResult_t emu_nccl_enqueue(EmuCollective c, cudaStream_t stream) {
    if (!c.comm || c.type == MPI_DATATYPE_NULL || (c.kind != EMU_BROADCAST && c.kind != EMU_ALLGATHER &&
                                                    c.op == MPI_OP_NULL))
        return ncclInvalidArgument;
    if (c.root < 0 || c.root >= c.comm->world) return ncclInvalidArgument;
    EmuCollective *p = malloc(sizeof *p);
    if (!p) return ncclSystemError;
    *p = c;
    c.comm->last_stream = stream;
    if (g_group_depth > 0) {
        if (g_n_held == (int)(sizeof g_held / sizeof *g_held)) {
            free(p);
            return ncclInvalidUsage;  // more than the emulation holds in one group
        }
        g_held[g_n_held++] = (EmuHeld){p, stream};
        return ncclSuccess;
    }
    return cudaLaunchHostFunc(stream, emu_nccl_run, p) == cudaSuccess ? ncclSuccess : ncclUnhandledCudaError;
}

ncclResult_t ncclGetUniqueId(ncclUniqueId *id) {
    memset(id, 0, sizeof *id);
    snprintf(id->internal, sizeof id->internal, "llava.c emulated NCCL over MPI_COMM_WORLD");
    return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank) {
    (void)id;
    int init = 0, size = 0, me = 0;
    MPI_Initialized(&init);
    if (!init) return ncclInvalidUsage;  // the emulation rides on the trainer's MPI
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    if (size != nranks || me != rank) return ncclInvalidArgument;
    ncclComm_t c = calloc(1, sizeof *c);
    if (!c) return ncclSystemError;
    if (MPI_Comm_dup(MPI_COMM_WORLD, &c->mpi) != MPI_SUCCESS || MPI_Comm_dup(MPI_COMM_WORLD, &c->side) != MPI_SUCCESS) {
        free(c);
        return ncclSystemError;
    }
    const char *stall = getenv("LLAVA_EMU_NCCL_STALL_RANK");
    c->stall_rank = stall && *stall ? atoi(stall) : -1;
    c->rank = rank;
    c->world = nranks;
    *comm = c;
    return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
    if (!comm) return ncclInvalidArgument;
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin) MPI_Comm_free(&comm->mpi);
    if (!fin) MPI_Comm_free(&comm->side);
    free(comm);
    return ncclSuccess;
}

const char *ncclGetErrorString(ncclResult_t r) {
    switch (r) {
    case ncclSuccess: return "no error (emulated NCCL)";
    case ncclInvalidArgument: return "invalid argument (emulated NCCL: a type or operation it does not emulate?)";
    case ncclInvalidUsage: return "invalid usage (emulated NCCL: MPI is not initialized)";
    case ncclSystemError: return "system error (emulated NCCL)";
    case ncclRemoteError: return "remote process exited or there was a network error (emulated NCCL)";
    default: return "error (emulated NCCL)";
    }
}

// One collective queued on `stream`, its element type resolved.
static ncclResult_t emu_nccl_submit(EmuKind kind, const void *send, void *recv, size_t count, ncclDataType_t type,
                                    MPI_Op op, int root, ncclComm_t comm, cudaStream_t stream) {
    EmuCollective c = {kind, send, recv, count, MPI_DATATYPE_NULL, 0, op, root, comm};
    c.type = emu_nccl_type(type, &c.elem);
    if (type == ncclBfloat16 && op != MPI_OP_NULL) c.op = op == MPI_SUM ? g_bf16_sum : MPI_OP_NULL;  // sums only
    return emu_nccl_enqueue(c, stream);
}

ncclResult_t ncclAllReduce(const void *send, void *recv, size_t count, ncclDataType_t type, ncclRedOp_t op,
                           ncclComm_t comm, cudaStream_t stream) {
    return emu_nccl_submit(EMU_ALLREDUCE, send, recv, count, type, emu_nccl_op(op), 0, comm, stream);
}
ncclResult_t ncclBroadcast(const void *send, void *recv, size_t count, ncclDataType_t type, int root,
                           ncclComm_t comm, cudaStream_t stream) {
    return emu_nccl_submit(EMU_BROADCAST, send, recv, count, type, MPI_OP_NULL, root, comm, stream);
}
ncclResult_t ncclReduce(const void *send, void *recv, size_t count, ncclDataType_t type, ncclRedOp_t op, int root,
                        ncclComm_t comm, cudaStream_t stream) {
    return emu_nccl_submit(EMU_REDUCE, send, recv, count, type, emu_nccl_op(op), root, comm, stream);
}
ncclResult_t ncclReduceScatter(const void *send, void *recv, size_t recvcount, ncclDataType_t type, ncclRedOp_t op,
                               ncclComm_t comm, cudaStream_t stream) {
    return emu_nccl_submit(EMU_REDUCE_SCATTER, send, recv, recvcount, type, emu_nccl_op(op), 0, comm, stream);
}
ncclResult_t ncclAllGather(const void *send, void *recv, size_t sendcount, ncclDataType_t type, ncclComm_t comm,
                           cudaStream_t stream) {
    return emu_nccl_submit(EMU_ALLGATHER, send, recv, sendcount, type, MPI_OP_NULL, 0, comm, stream);
}

ncclResult_t ncclGroupStart(void) {
    g_group_depth++;
    return ncclSuccess;
}
ncclResult_t ncclGroupEnd(void) {
    if (g_group_depth == 0) return ncclInvalidUsage;
    if (--g_group_depth > 0) return ncclSuccess;
    ncclResult_t r = ncclSuccess;
    for (int i = 0; i < g_n_held; i++)
        if (cudaLaunchHostFunc(g_held[i].stream, emu_nccl_run, g_held[i].c) != cudaSuccess) r = ncclUnhandledCudaError;
    g_n_held = 0;
    return r;
}

// The host polls this while it waits (kernels/nccl.c): the emulated device
// makes progress then, as a GPU would on its own, by running the queued
// collectives (a peer's failure shows as ncclRemoteError once they ran).
ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t *async) {
    if (!comm || !async) return ncclInvalidArgument;
    if (comm->async == ncclSuccess && comm->last_stream) cudaStreamSynchronize(comm->last_stream);
    *async = comm->async;
    return ncclSuccess;
}

// The job ends right after (MPI_Abort): nothing to free that MPI may still write.
ncclResult_t ncclCommAbort(ncclComm_t comm) {
    if (!comm) return ncclInvalidArgument;
    comm->async = ncclRemoteError;
    return ncclSuccess;
}
