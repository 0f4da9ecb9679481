#include "train/dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef LLAVA_HAVE_MPI
#include <mpi.h>

#define MPI_CHECK(call)                                                                     \
    do {                                                                                    \
        int rc_ = (call);                                                                   \
        if (rc_ != MPI_SUCCESS) FATAL("MPI call failed (%d): %s", rc_, #call);              \
    } while (0)

// MPI counts are int: move big buffers in chunks.
#define CHUNK ((size_t)1 << 28)

static void reduce_bcast(void *buf, size_t n, size_t elem, MPI_Datatype type) {
    int rank;
    MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
    for (size_t off = 0; off < n; off += CHUNK) {
        int count = (int)(n - off < CHUNK ? n - off : CHUNK);
        char *p = (char *)buf + off * elem;
        MPI_CHECK(MPI_Reduce(rank == 0 ? MPI_IN_PLACE : p, rank == 0 ? p : NULL, count, type, MPI_SUM, 0,
                             MPI_COMM_WORLD));
        MPI_CHECK(MPI_Bcast(p, count, type, 0, MPI_COMM_WORLD));
    }
}
#endif

static int launched_by_mpi(void) {
    static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MV2_COMM_WORLD_SIZE",
                                 "SLURM_STEP_NUM_TASKS"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
        if (getenv(vars[i])) return 1;
    return 0;
}

int comm_init(Comm *c, int *argc, char ***argv, Error *err) {
    memset(c, 0, sizeof *c);
    c->kind = COMM_SINGLE;
    c->world = 1;
    if (!launched_by_mpi()) return 0;
#ifdef LLAVA_HAVE_MPI
    int provided = 0;
    // Only the main thread calls MPI (loader threads never do).
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return err_set(err, "MPI_Init_thread failed");
    c->kind = COMM_MPI;
    MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &c->rank));
    MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &c->world));
    return 0;
#else
    (void)argc;
    (void)argv;
    return err_set(err, "launched by mpirun/srun, but this build has no MPI (install libopenmpi-dev and rebuild)");
#endif
}

void comm_finalize(Comm *c) {
#ifdef LLAVA_HAVE_MPI
    if (c->kind == COMM_MPI) MPI_Finalize();
#endif
    c->kind = COMM_SINGLE;
}

void comm_allreduce_sum_f32(const Comm *c, float *buf, size_t n) {
#ifdef LLAVA_HAVE_MPI
    if (c->kind == COMM_MPI) reduce_bcast(buf, n, sizeof(float), MPI_FLOAT);
#else
    (void)c, (void)buf, (void)n;
#endif
}

void comm_allreduce_sum_f64(const Comm *c, double *buf, size_t n) {
#ifdef LLAVA_HAVE_MPI
    if (c->kind == COMM_MPI) reduce_bcast(buf, n, sizeof(double), MPI_DOUBLE);
#else
    (void)c, (void)buf, (void)n;
#endif
}

void comm_allreduce_sum_i64(const Comm *c, int64_t *buf, size_t n) {
#ifdef LLAVA_HAVE_MPI
    if (c->kind == COMM_MPI) reduce_bcast(buf, n, sizeof(int64_t), MPI_INT64_T);
#else
    (void)c, (void)buf, (void)n;
#endif
}

void comm_broadcast(const Comm *c, void *buf, size_t bytes, int root) {
#ifdef LLAVA_HAVE_MPI
    if (c->kind != COMM_MPI) return;
    for (size_t off = 0; off < bytes; off += CHUNK) {
        int count = (int)(bytes - off < CHUNK ? bytes - off : CHUNK);
        MPI_CHECK(MPI_Bcast((char *)buf + off, count, MPI_BYTE, root, MPI_COMM_WORLD));
    }
#else
    (void)c, (void)buf, (void)bytes, (void)root;
#endif
}

void comm_allgatherv_bytes(const Comm *c, void *buf, const size_t *counts, const size_t *displs) {
#ifdef LLAVA_HAVE_MPI
    if (c->kind != COMM_MPI) return;
    // Broadcast each rank's part from its owner: counts beyond INT_MAX bytes
    // are common (a 7B LLM's slice), which MPI_Allgatherv's int counts cannot say.
    for (int r = 0; r < c->world; r++)
        for (size_t off = 0; off < counts[r]; off += CHUNK) {
            int count = (int)(counts[r] - off < CHUNK ? counts[r] - off : CHUNK);
            MPI_CHECK(MPI_Bcast((char *)buf + displs[r] + off, count, MPI_BYTE, r, MPI_COMM_WORLD));
        }
#else
    (void)c, (void)buf, (void)counts, (void)displs;
#endif
}

void comm_reduce_sum_f32(const Comm *c, float *buf, size_t n, int root) {
#ifdef LLAVA_HAVE_MPI
    if (c->kind != COMM_MPI) return;
    for (size_t off = 0; off < n; off += CHUNK) {
        int count = (int)(n - off < CHUNK ? n - off : CHUNK);
        float *p = buf + off;
        MPI_CHECK(MPI_Reduce(c->rank == root ? MPI_IN_PLACE : p, c->rank == root ? p : NULL, count, MPI_FLOAT, MPI_SUM,
                             root, MPI_COMM_WORLD));
    }
#else
    (void)c, (void)buf, (void)n, (void)root;
#endif
}

void comm_gatherv_bytes_to0(const Comm *c, void *buf, const size_t *counts, const size_t *displs) {
#ifdef LLAVA_HAVE_MPI
    if (c->kind != COMM_MPI) return;
    for (int r = 1; r < c->world; r++) {
        if (c->rank != 0 && c->rank != r) continue;
        for (size_t off = 0; off < counts[r]; off += CHUNK) {
            int count = (int)(counts[r] - off < CHUNK ? counts[r] - off : CHUNK);
            char *p = (char *)buf + displs[r] + off;
            if (c->rank == r)
                MPI_CHECK(MPI_Send(p, count, MPI_BYTE, 0, 7, MPI_COMM_WORLD));
            else
                MPI_CHECK(MPI_Recv(p, count, MPI_BYTE, r, 7, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
        }
    }
#else
    (void)c, (void)buf, (void)counts, (void)displs;
#endif
}

void comm_ibroadcast(const Comm *c, void *buf, size_t bytes, int root, CommPending *pending) {
#ifdef LLAVA_HAVE_MPI
    if (c->kind != COMM_MPI) return;
    for (size_t off = 0; off < bytes; off += CHUNK) {
        int count = (int)(bytes - off < CHUNK ? bytes - off : CHUNK);
        if (pending->n == pending->cap) {
            pending->cap = pending->cap ? 2 * pending->cap : 16;
            pending->requests = xrealloc(pending->requests, (size_t)pending->cap * sizeof(MPI_Request));
        }
        MPI_Request *r = (MPI_Request *)pending->requests + pending->n++;
        MPI_CHECK(MPI_Ibcast((char *)buf + off, count, MPI_BYTE, root, MPI_COMM_WORLD, r));
    }
#else
    (void)c, (void)buf, (void)bytes, (void)root, (void)pending;
#endif
}

void comm_wait_all(const Comm *c, CommPending *pending) {
#ifdef LLAVA_HAVE_MPI
    if (c->kind == COMM_MPI && pending->n)
        MPI_CHECK(MPI_Waitall(pending->n, (MPI_Request *)pending->requests, MPI_STATUSES_IGNORE));
#else
    (void)c;
#endif
    pending->n = 0;
}

void comm_pending_free(CommPending *pending) {
    free(pending->requests);
    memset(pending, 0, sizeof *pending);
}

void comm_barrier(const Comm *c) {
#ifdef LLAVA_HAVE_MPI
    if (c->kind == COMM_MPI) MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
#else
    (void)c;
#endif
}

void comm_abort(const Comm *c, int code) {
    fflush(stdout);
    fflush(stderr);
#ifdef LLAVA_HAVE_MPI
    if (c->kind == COMM_MPI) MPI_Abort(MPI_COMM_WORLD, code);
#else
    (void)c;
#endif
    exit(code);
}

int comm_all(const Comm *c, int flag) {
    int64_t v = flag ? 0 : 1;
    comm_allreduce_sum_i64(c, &v, 1);
    return v == 0;
}
