// The CPU emulator's runtime (see emu_cuda.h): fiber scheduling of one block
// at a time, warp collectives with the PTX semantics the kernels assume, the
// CUDA runtime calls the backend makes, and cuBLASLt as a plain GEMM.
//
// PTX semantics assumed (PTX ISA, "Matrix fragments for mma.m16n8k16" and
// "ldmatrix"), g = lane / 4, t = lane % 4:
//   mma.m16n8k16.row.col bf16: A regs a0 (row g, cols 2t,2t+1), a1 (g+8, 2t..),
//     a2 (g, 2t+8..), a3 (g+8, 2t+8..); B regs b0 (rows k 2t,2t+1, col g),
//     b1 (k 2t+8.., col g); C/D c0,c1 (g, 2t..), c2,c3 (g+8, 2t..); the lower
//     16 bits of a register hold the lower column (or k) index.
//   ldmatrix.m8n8.x4.b16: lanes 8j..8j+7 give the row addresses of matrix j;
//     register j of lane l = row l/4, elements 2t, 2t+1 of matrix j; with
//     .trans, elements (rows 2t and 2t+1, column l/4) instead.
//   cp.async.cg 16 with src-size 0: the 16 destination bytes are zero-filled.
//   cuBLASLt: column-major; D = alpha op(A) op(B) + beta C (+ bias[row] for
//     CUBLASLT_EPILOGUE_BIAS); a layout of rows x cols with leading dimension
//     ld >= rows; op = T means the stored matrix is the transpose.
#include "tests/gpu/emu/emu_cuda.h"  // first: it defines __shared__ before the CUDA headers

#include <cublasLt.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include <functional>
#include <vector>


namespace emu {

enum { STACK_BYTES = 256 * 1024 };

struct Pending {
    unsigned char *dst;
    const unsigned char *src;
    bool pred;
    int group;
};

struct Fiber {
    ucontext_t ctx;
    char *stack = nullptr;
    uint3 tid;
    int warp = 0, lane = 0;
    bool done = false;
    std::vector<Pending> pend;
    int committed = 0;  // groups committed so far
};

struct Warp {
    int arrived = 0;
    unsigned gen = 0;
    const void *ins[32];
    void *outs[32];
    CollectiveFn fn = nullptr;
    const void *arg = nullptr;
};

// What the race checks know of one 16-byte chunk of dynamic shared memory
// (cp.async and ldmatrix move whole chunks). An epoch is the block's barrier
// count: a running thread has passed exactly bar_gen __syncthreads, so two
// accesses by different threads in the same epoch have no barrier between them.
struct Chunk {
    int writer = -1;         // the thread whose cp.async wrote it last (-1: none)
    bool pending = false;    // that copy has not landed (no cp.async.wait_group yet)
    unsigned landed = 0;     // epoch in which it landed
    int reader_warp = -1;    // the warp that last read it by ldmatrix (-2: several)
    unsigned read = 0;       // epoch of that read
};

struct Block {
    std::vector<Fiber> f;
    std::vector<Warp> warps;
    int live = 0, bar_arrived = 0;
    unsigned bar_gen = 0;
    std::vector<unsigned char> smem;
    std::vector<Chunk> chunks;  // per 16 bytes of smem
    uint3 bidx;
};

static Block g_block;
static Fiber *g_cur = nullptr;
static ucontext_t g_sched;
static dim3 g_grid_dim, g_block_dim;
static std::function<void()> *g_body = nullptr;
static unsigned long g_progress = 0;
static std::vector<char *> g_stack_pool;

uint3 &thread_idx() { return g_cur->tid; }
uint3 &block_idx() { return g_block.bidx; }
dim3 &block_dim() { return g_block_dim; }
dim3 &grid_dim() { return g_grid_dim; }
void *dynamic_smem() { return g_block.smem.data(); }

static void yield() { swapcontext(&g_cur->ctx, &g_sched); }

static int live_in_warp(int w) {
    int n = 0;
    for (int l = 0; l < 32; l++) {
        size_t i = (size_t)w * 32 + l;
        if (i < g_block.f.size() && !g_block.f[i].done) n++;
    }
    return n;
}

static void warp_complete(int w) {
    Warp &W = g_block.warps[w];
    bool live[32];
    for (int l = 0; l < 32; l++) {
        size_t i = (size_t)w * 32 + l;
        live[l] = i < g_block.f.size() && !g_block.f[i].done;
    }
    W.fn(W.ins, W.outs, live, W.arg);
    W.arrived = 0;
    W.gen++;
    g_progress++;
}

void collective(const void *in, void *out, CollectiveFn fn, const void *arg) {
    Warp &W = g_block.warps[g_cur->warp];
    W.ins[g_cur->lane] = in;
    W.outs[g_cur->lane] = out;
    W.fn = fn;
    W.arg = arg;
    W.arrived++;
    g_progress++;
    const unsigned gen = W.gen;
    if (W.arrived == live_in_warp(g_cur->warp)) {
        warp_complete(g_cur->warp);
        return;
    }
    while (W.gen == gen) yield();
}

void syncthreads() {
    g_block.bar_arrived++;
    g_progress++;
    const unsigned gen = g_block.bar_gen;
    if (g_block.bar_arrived == g_block.live) {
        g_block.bar_arrived = 0;
        g_block.bar_gen++;
        return;
    }
    while (g_block.bar_gen == gen) yield();
}

static void fiber_exit() {
    Fiber *f = g_cur;
    f->done = true;
    g_block.live--;
    g_progress++;
    // Waiters may now be complete without this thread.
    if (g_block.bar_arrived > 0 && g_block.bar_arrived == g_block.live) {
        g_block.bar_arrived = 0;
        g_block.bar_gen++;
    }
    Warp &W = g_block.warps[f->warp];
    if (W.arrived > 0 && W.arrived == live_in_warp(f->warp)) warp_complete(f->warp);
}

static void fiber_main() {
    (*g_body)();
    fiber_exit();
}  // returns to g_sched through uc_link

void run_grid(dim3 grid, dim3 block, size_t smem, std::function<void()> body) {
    const size_t nthreads = (size_t)block.x * block.y * block.z;
    if (nthreads == 0 || nthreads > 1024) EMU_FAIL("block of %zu threads", nthreads);
    if (smem > 232448) EMU_FAIL("%zu bytes of dynamic shared memory (the limit is 227 KiB)", smem);
    if (grid.y > 65535 || grid.z > 65535) EMU_FAIL("grid %u x %u x %u", grid.x, grid.y, grid.z);
    g_grid_dim = grid;
    g_block_dim = block;
    g_body = &body;
    while (g_stack_pool.size() < nthreads) g_stack_pool.push_back((char *)malloc(STACK_BYTES));
    for (unsigned bz = 0; bz < grid.z; bz++)
        for (unsigned by = 0; by < grid.y; by++)
            for (unsigned bx = 0; bx < grid.x; bx++) {
                Block &B = g_block;
                B.bidx = make_uint3(bx, by, bz);
                B.f.assign(nthreads, Fiber());
                B.warps.assign((nthreads + 31) / 32, Warp());
                B.live = (int)nthreads;
                B.bar_arrived = 0;
                B.smem.assign(smem + 16, 0xff);  // uninitialized shared memory reads as NaN
                B.chunks.assign(smem / 16 + 2, Chunk());
                B.bar_gen = 0;
                for (size_t i = 0; i < nthreads; i++) {
                    Fiber &f = B.f[i];
                    f.tid = make_uint3((unsigned)(i % block.x), (unsigned)((i / block.x) % block.y),
                                       (unsigned)(i / ((size_t)block.x * block.y)));
                    f.warp = (int)(i / 32);
                    f.lane = (int)(i % 32);
                    f.stack = g_stack_pool[i];
                    getcontext(&f.ctx);
                    f.ctx.uc_stack.ss_sp = f.stack;
                    f.ctx.uc_stack.ss_size = STACK_BYTES;
                    f.ctx.uc_link = &g_sched;
                    makecontext(&f.ctx, fiber_main, 0);
                }
                size_t remaining = nthreads;
                while (remaining) {
                    unsigned long before = g_progress;
                    remaining = 0;
                    for (size_t i = 0; i < nthreads; i++) {
                        if (B.f[i].done) continue;
                        g_cur = &B.f[i];
                        swapcontext(&g_sched, &B.f[i].ctx);
                        if (!B.f[i].done) remaining++;
                    }
                    if (remaining && g_progress == before)
                        EMU_FAIL("deadlock in block (%u,%u,%u): %zu threads wait at a barrier or warp collective "
                                 "that the others never reach",
                                 bx, by, bz, remaining);
                }
            }
    g_cur = nullptr;
}

// ---- cp.async --------------------------------------------------------------------------

// The hardware's ordering rules the cooperative scheduler would hide (it runs
// a thread until it waits, so a missing barrier rarely changes what is read):
// a cp.async destination is read by another thread only after the writer's
// wait_group and a __syncthreads; it is overwritten only after a barrier
// that follows every other warp's ldmatrix of it.
static Chunk &chunk_of(const unsigned char *p) { return g_block.chunks[(size_t)(p - g_block.smem.data()) / 16]; }
static int fiber_index() { return (int)(g_cur - g_block.f.data()); }

void cp_async(void *dst, const void *src, bool pred) {
    if (((uintptr_t)dst | (uintptr_t)src) & 15) EMU_FAIL("cp.async of 16 bytes at unaligned addresses");
    unsigned char *d = (unsigned char *)dst;
    unsigned char *s0 = g_block.smem.data();
    if (d < s0 || d + 16 > s0 + g_block.smem.size() - 16) EMU_FAIL("cp.async destination outside shared memory");
    Chunk &c = chunk_of(d);
    if (c.reader_warp != -1 && c.read == g_block.bar_gen && c.reader_warp != g_cur->warp)
        EMU_FAIL("cp.async into shared memory (byte %zu) that %s read by ldmatrix with no __syncthreads "
                 "between (a write-after-read race on the GPU)", (size_t)(d - s0),
                 c.reader_warp == -2 ? "several warps" : "another warp");
    c.writer = fiber_index();
    c.pending = true;
    memset(d, 0xff, 16);  // reads before the wait see NaN
    g_cur->pend.push_back({d, (const unsigned char *)src, pred, g_cur->committed});
}

void cp_commit() { g_cur->committed++; }

void cp_wait(int allowed) {
    std::vector<Pending> keep;
    for (const Pending &p : g_cur->pend) {
        if (p.group < g_cur->committed - allowed) {
            if (p.pred)
                memcpy(p.dst, p.src, 16);
            else
                memset(p.dst, 0, 16);
            Chunk &c = chunk_of(p.dst);
            if (c.writer == fiber_index()) {
                c.pending = false;
                c.landed = g_block.bar_gen;
            }
        } else {
            keep.push_back(p);
        }
    }
    g_cur->pend.swap(keep);
}

// An ldmatrix row read by warp w: its data landed before the last barrier.
static void chunk_read(const unsigned char *p, int w) {
    Chunk &c = chunk_of(p);
    const size_t at = (size_t)(p - g_block.smem.data());
    if (c.writer >= 0 && c.pending)
        EMU_FAIL("ldmatrix reads shared memory (byte %zu) whose cp.async (thread %d) has not been waited for "
                 "(cp.async.wait_group)", at, c.writer);
    if (c.writer >= 0 && c.landed == g_block.bar_gen)
        EMU_FAIL("ldmatrix reads shared memory (byte %zu) that thread %d's cp.async filled with no __syncthreads "
                 "after its wait_group (a read-after-write race on the GPU)", at, c.writer);
    if (c.reader_warp == -1 || c.read != g_block.bar_gen)
        c.reader_warp = w;
    else if (c.reader_warp != w)
        c.reader_warp = -2;
    c.read = g_block.bar_gen;
}

// ---- ldmatrix, mma, shuffles -------------------------------------------------------------

static uint16_t ld16(const void *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

struct LdsmArg {
    bool trans;
};

static void ldsm_fn(const void *const *ins, void *const *outs, const bool *live, const void *arg) {
    const bool trans = ((const LdsmArg *)arg)->trans;
    const unsigned char *s0 = g_block.smem.data();
    for (int l = 0; l < 32; l++) {
        if (!live[l]) EMU_FAIL("ldmatrix.x4 with an exited lane");
        const unsigned char *p = (const unsigned char *)ins[l];
        if ((uintptr_t)p & 15) EMU_FAIL("ldmatrix row address not 16-byte aligned");
        if (p < s0 || p + 16 > s0 + g_block.smem.size() - 16) EMU_FAIL("ldmatrix row outside dynamic shared memory");
        chunk_read(p, g_cur->warp);
    }
    for (int l = 0; l < 32; l++) {
        uint32_t *r = (uint32_t *)outs[l];
        const int g = l / 4, t = l % 4;
        for (int j = 0; j < 4; j++) {
            uint16_t lo, hi;
            if (!trans) {
                const unsigned char *row = (const unsigned char *)ins[j * 8 + g];
                lo = ld16(row + 2 * (2 * t));
                hi = ld16(row + 2 * (2 * t + 1));
            } else {
                lo = ld16((const unsigned char *)ins[j * 8 + 2 * t] + 2 * g);
                hi = ld16((const unsigned char *)ins[j * 8 + 2 * t + 1] + 2 * g);
            }
            r[j] = (uint32_t)lo | ((uint32_t)hi << 16);
        }
    }
}

void ldmatrix_x4(uint32_t (&r)[4], const void *p, bool trans) {
    static const LdsmArg plain = {false}, transposed = {true};
    collective(p, r, ldsm_fn, trans ? &transposed : &plain);
}

static float bf16_lo(uint32_t u) {
    uint32_t x = (u & 0xffffu) << 16;
    float f;
    memcpy(&f, &x, 4);
    return f;
}
static float bf16_hi(uint32_t u) {
    uint32_t x = u & 0xffff0000u;
    float f;
    memcpy(&f, &x, 4);
    return f;
}

struct MmaIn {
    uint32_t a[4], b0, b1;
};

static void mma_fn(const void *const *ins, void *const *outs, const bool *live, const void *) {
    float A[16][16], Bm[16][8], C[16][8];
    for (int l = 0; l < 32; l++) {
        if (!live[l]) EMU_FAIL("mma.sync with an exited lane");
        const MmaIn *in = (const MmaIn *)ins[l];
        const float *c = (const float *)outs[l];
        const int g = l / 4, t = l % 4;
        A[g][2 * t] = bf16_lo(in->a[0]), A[g][2 * t + 1] = bf16_hi(in->a[0]);
        A[g + 8][2 * t] = bf16_lo(in->a[1]), A[g + 8][2 * t + 1] = bf16_hi(in->a[1]);
        A[g][2 * t + 8] = bf16_lo(in->a[2]), A[g][2 * t + 9] = bf16_hi(in->a[2]);
        A[g + 8][2 * t + 8] = bf16_lo(in->a[3]), A[g + 8][2 * t + 9] = bf16_hi(in->a[3]);
        Bm[2 * t][g] = bf16_lo(in->b0), Bm[2 * t + 1][g] = bf16_hi(in->b0);
        Bm[2 * t + 8][g] = bf16_lo(in->b1), Bm[2 * t + 9][g] = bf16_hi(in->b1);
        C[g][2 * t] = c[0], C[g][2 * t + 1] = c[1], C[g + 8][2 * t] = c[2], C[g + 8][2 * t + 1] = c[3];
    }
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 8; j++) {
            float s = C[i][j];
            for (int k = 0; k < 16; k++) s += A[i][k] * Bm[k][j];
            C[i][j] = s;
        }
    for (int l = 0; l < 32; l++) {
        float *c = (float *)outs[l];
        const int g = l / 4, t = l % 4;
        c[0] = C[g][2 * t], c[1] = C[g][2 * t + 1], c[2] = C[g + 8][2 * t], c[3] = C[g + 8][2 * t + 1];
    }
}

void mma_m16n8k16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    MmaIn in = {{a[0], a[1], a[2], a[3]}, b0, b1};
    collective(&in, c, mma_fn, nullptr);
}

struct ShflArg {
    size_t bytes;
    int mask;
};

static void shfl_fn(const void *const *ins, void *const *outs, const bool *live, const void *arg) {
    const ShflArg *s = (const ShflArg *)arg;
    for (int l = 0; l < 32; l++) {
        if (!live[l]) continue;
        int src = l ^ s->mask;
        if (!live[src]) EMU_FAIL("shuffle from an exited lane");
        memcpy(outs[l], ins[src], s->bytes);
    }
}

void shfl_xor(const void *in, void *out, size_t bytes, int mask) {
    ShflArg a = {bytes, mask};
    collective(in, out, shfl_fn, &a);
}

}  // namespace emu

// ---- CUDA runtime ----------------------------------------------------------------------------

extern "C" {

cudaError_t cudaGetDeviceCount(int *count) {
    *count = 1;
    return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *prop, int device) {
    memset(prop, 0, sizeof *prop);
    snprintf(prop->name, sizeof prop->name, "CPU emulation of sm_90");
    prop->major = 9;
    prop->minor = 0;
    prop->multiProcessorCount = 4;
    prop->sharedMemPerBlockOptin = 232448;
    prop->sharedMemPerBlock = 49152;
    prop->totalGlobalMem = (size_t)16 << 30;
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int) { return cudaSuccess; }
cudaError_t cudaFuncGetAttributes(struct cudaFuncAttributes *attr, const void *) {
    memset(attr, 0, sizeof *attr);
    return cudaSuccess;
}
cudaError_t cudaFuncSetAttribute(const void *, enum cudaFuncAttribute, int value) {
    return value <= 232448 ? cudaSuccess : cudaErrorInvalidValue;
}
cudaError_t cudaGetLastError(void) { return cudaSuccess; }
const char *cudaGetErrorString(cudaError_t) { return "error (CPU emulation)"; }

// ---- cuBLASLt ----------------------------------------------------------------------------

struct EmuDesc {
    cublasOperation_t ta = CUBLAS_OP_N, tb = CUBLAS_OP_N;
    cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_DEFAULT;
    const void *bias = nullptr;
    cudaDataType_t bias_type = CUDA_R_32F;
    cublasComputeType_t compute;
    cudaDataType_t scale;
};
struct EmuLayout {
    cudaDataType_t type;
    uint64_t rows, cols;
    int64_t ld;
};

const char *cublasLtGetStatusString(cublasStatus_t) { return "cuBLASLt error (CPU emulation)"; }
cublasStatus_t cublasLtCreate(cublasLtHandle_t *h) {
    static int dummy;
    *h = (cublasLtHandle_t)&dummy;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t c, cudaDataType_t s) {
    EmuDesc *e = new EmuDesc();
    e->compute = c;
    e->scale = s;
    *d = (cublasLtMatmulDesc_t)e;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
    delete (EmuDesc *)d;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a,
                                              const void *buf, size_t size) {
    EmuDesc *e = (EmuDesc *)d;
    switch (a) {
    case CUBLASLT_MATMUL_DESC_TRANSA: memcpy(&e->ta, buf, size); break;
    case CUBLASLT_MATMUL_DESC_TRANSB: memcpy(&e->tb, buf, size); break;
    case CUBLASLT_MATMUL_DESC_EPILOGUE: memcpy(&e->epi, buf, size); break;
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER: memcpy(&e->bias, buf, size); break;
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE: memcpy(&e->bias_type, buf, size); break;
    default: return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType t, uint64_t rows, uint64_t cols,
                                          int64_t ld) {
    if (ld < (int64_t)rows) return CUBLAS_STATUS_INVALID_VALUE;  // column-major: ld >= rows
    *l = (cublasLtMatrixLayout_t) new EmuLayout{t, rows, cols, ld};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
    delete (EmuLayout *)l;
    return CUBLAS_STATUS_SUCCESS;
}
// Preferences: only the smallest promised alignment matters here. The
// emulated heuristic refuses operands aligned to less than 4 bytes, so that
// the backend's fallback kernel runs in the emulated tests (the real library
// may or may not accept them).
struct EmuPref {
    uint32_t min_align = 256;
};
cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p) {
    *p = (cublasLtMatmulPreference_t) new EmuPref();
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
    delete (EmuPref *)p;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                    cublasLtMatmulPreferenceAttributes_t a, const void *buf,
                                                    size_t size) {
    if (a == CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES || a == CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES ||
        a == CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES || a == CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES) {
        uint32_t v = 0;
        memcpy(&v, buf, size < sizeof v ? size : sizeof v);
        if (v < ((EmuPref *)p)->min_align) ((EmuPref *)p)->min_align = v;
    }
    return CUBLAS_STATUS_SUCCESS;
}

// Checks the shapes agree (what the real heuristic would reject).
static bool emu_shapes(const EmuDesc *d, const EmuLayout *A, const EmuLayout *B, const EmuLayout *C,
                       const EmuLayout *D, uint64_t *m, uint64_t *n, uint64_t *k) {
    *m = D->rows;
    *n = D->cols;
    *k = d->ta == CUBLAS_OP_N ? A->cols : A->rows;
    const uint64_t am = d->ta == CUBLAS_OP_N ? A->rows : A->cols;
    const uint64_t bk = d->tb == CUBLAS_OP_N ? B->rows : B->cols, bn = d->tb == CUBLAS_OP_N ? B->cols : B->rows;
    return am == *m && bk == *k && bn == *n && C->rows == D->rows && C->cols == D->cols && A->type == CUDA_R_16BF &&
           B->type == CUDA_R_16BF && (D->type == CUDA_R_16BF || D->type == CUDA_R_32F) &&
           d->compute == CUBLAS_COMPUTE_32F;
}

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t, cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t a,
                                              cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c,
                                              cublasLtMatrixLayout_t dd, cublasLtMatmulPreference_t pref,
                                              int requested, cublasLtMatmulHeuristicResult_t results[], int *count) {
    uint64_t m, n, k;
    if (!emu_shapes((EmuDesc *)d, (EmuLayout *)a, (EmuLayout *)b, (EmuLayout *)c, (EmuLayout *)dd, &m, &n, &k) ||
        ((EmuPref *)pref)->min_align < 4) {
        *count = 0;
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    memset(&results[0], 0, sizeof results[0]);
    // The emulated algorithm remembers the shape it was chosen for (as a
    // real one is tiled for it): AlgoCheck refuses larger shapes.
    results[0].algo.data[0] = m;
    results[0].algo.data[1] = n;
    results[0].algo.data[2] = k;
    results[0].state = CUBLAS_STATUS_SUCCESS;
    *count = requested > 0 ? 1 : 0;
    return CUBLAS_STATUS_SUCCESS;
}

// A cached algorithm for a new shape: accepted when the shapes agree and none
// of m, n, k exceeds the shape the heuristic chose it for (the emulated GEMM
// runs anything; the rule makes a plan queried for too small a shape show up
// as refusals). LLAVA_EMU_REFUSE_ALGO_CHECK refuses every check (the backend
// must then ask the heuristic for the exact shape).
cublasStatus_t cublasLtMatmulAlgoCheck(cublasLtHandle_t, cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t a,
                                       cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t dd,
                                       const cublasLtMatmulAlgo_t *algo, cublasLtMatmulHeuristicResult_t *result) {
    uint64_t m, n, k;
    if (!emu_shapes((EmuDesc *)d, (EmuLayout *)a, (EmuLayout *)b, (EmuLayout *)c, (EmuLayout *)dd, &m, &n, &k))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (m > algo->data[0] || n > algo->data[1] || k > algo->data[2]) return CUBLAS_STATUS_NOT_SUPPORTED;
    const char *refuse = getenv("LLAVA_EMU_REFUSE_ALGO_CHECK");
    if (refuse && *refuse && strcmp(refuse, "0") != 0) return CUBLAS_STATUS_NOT_SUPPORTED;
    memset(result, 0, sizeof *result);
    result->state = CUBLAS_STATUS_SUCCESS;
    return CUBLAS_STATUS_SUCCESS;
}

static float emu_get(const void *p, cudaDataType_t t, size_t i) {
    if (t == CUDA_R_32F) return ((const float *)p)[i];
    return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t, cublasLtMatmulDesc_t desc, const void *alpha, const void *A,
                              cublasLtMatrixLayout_t Al, const void *B, cublasLtMatrixLayout_t Bl, const void *beta,
                              const void *C, cublasLtMatrixLayout_t Cl, void *D, cublasLtMatrixLayout_t Dl,
                              const cublasLtMatmulAlgo_t *, void *, size_t, cudaStream_t stream) {
    emu::observe(stream, "cublasLtMatmul");
    const EmuDesc *d = (const EmuDesc *)desc;
    const EmuLayout *a = (const EmuLayout *)Al, *b = (const EmuLayout *)Bl, *c = (const EmuLayout *)Cl,
                    *dl = (const EmuLayout *)Dl;
    uint64_t m, n, k;
    if (!emu_shapes(d, a, b, c, dl, &m, &n, &k)) return CUBLAS_STATUS_INVALID_VALUE;
    if (d->epi == CUBLASLT_EPILOGUE_BIAS && (!d->bias || d->bias_type != CUDA_R_16BF))
        return CUBLAS_STATUS_INVALID_VALUE;
    const float al = *(const float *)alpha, be = *(const float *)beta;
    std::vector<float> out((size_t)m * n);
    for (uint64_t j = 0; j < n; j++)
        for (uint64_t i = 0; i < m; i++) {
            float s = 0.0f;
            for (uint64_t kk = 0; kk < k; kk++) {
                size_t ai = d->ta == CUBLAS_OP_N ? i + kk * a->ld : kk + i * a->ld;
                size_t bi = d->tb == CUBLAS_OP_N ? kk + j * b->ld : j + kk * b->ld;
                s += emu_get(A, a->type, ai) * emu_get(B, b->type, bi);
            }
            float v = al * s;
            if (be != 0.0f) v += be * emu_get(C, c->type, i + j * c->ld);
            if (d->epi == CUBLASLT_EPILOGUE_BIAS) v += __bfloat162float(((const __nv_bfloat16 *)d->bias)[i]);
            out[i + j * m] = v;
        }
    for (uint64_t j = 0; j < n; j++)
        for (uint64_t i = 0; i < m; i++) {
            size_t o = i + j * dl->ld;
            if (dl->type == CUDA_R_32F)
                ((float *)D)[o] = out[i + j * m];
            else
                ((__nv_bfloat16 *)D)[o] = __float2bfloat16_rn(out[i + j * m]);
        }
    return CUBLAS_STATUS_SUCCESS;
}

}  // extern "C"
