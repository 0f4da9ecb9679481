// Matmuls through cuBLASLt: bf16 operands, fp32 accumulation, the bias added
// in the epilogue, weight gradients accumulated with beta = 1 into fp32 (or bf16: grad_dtype).
//
// Row-major to cuBLAS's column-major: a row-major [R, Cc] matrix is a
// column-major [Cc, R] one with the same leading dimension Cc. So
//   out[M,N]  = inp[M,K] @ W[N,K]^T   is  out^T[N,M]  = op_T(W) @ inp^T
//   dinp[M,K] = dout[M,N] @ W[N,K]    is  dinp^T[K,M] = W^T @ dout^T   (no transposes)
//   dW[N,K]  += dout^T @ inp          is  dW^T[K,N]  += inp^T @ op_T(dout^T)
// Plans: descriptors and the heuristic's choice, cached (asking the heuristic
// costs more than many small matmuls). Batches of variable length give a new
// token count almost every step, so the key holds each dimension rounded up
// to a bucket (plan_bucket), and the heuristic is asked once per bucket, for
// the bucket's own shape. A length in the bucket re-describes the plan's
// layouts (cheap, host only) and runs the bucket's algorithm if
// cublasLtMatmulAlgoCheck accepts it for that shape, else the heuristic's
// choice for the exact shape. Either way the algorithm is a function of the
// call's shape, never of the order shapes came in: repeated and resumed runs
// use the same ones (docs/cuda.md, Determinism). Dimensions set by a weight
// are pinned by the leading dimensions, which stay exact in the key, so only
// the token dimension really shares plans.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_internal.cuh"

typedef struct {
    int m, n, k;  // bucketed (plan_bucket)
    int lda, ldb, ldc;
    cublasOperation_t opa, opb;
    cudaDataType_t dtype_d;
    int has_bias, accumulate;
    int align_a, align_b, align_c;
} PlanKey;

typedef struct {
    PlanKey key;
    int m, n, k;  // the exact shape the layouts describe now
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, c;
    cublasLtMatmulAlgo_t bucket_algo;  // the heuristic's choice for the bucket's shape
    int bucket_ok;                     // it found one
    cublasLtMatmulAlgo_t algo;         // what runs the exact shape now
    int valid;   // key is meaningful
    int has_desc;  // descriptors exist
    int ok;      // algo runs the shape the layouts describe
} Plan;

#define PLAN_CACHE 64
static Plan g_plans[PLAN_CACHE];
static int g_plan_next = 0;
static CudaPlanStats g_plan_stats;

// Buckets: powers of two up to 256, then quarter steps between powers of two
// (257..320, ..., 449..512, 513..640, ...): at most 25% of padding in the
// shape the heuristic saw, about 4 plans per doubling of the length.
static int plan_bucket(int x) {
    if (x <= 1 || x > (1 << 30)) return x;
    int p = 1;
    while (p < x) p <<= 1;  // smallest power of two >= x
    if (p <= 256) return p;
    const int step = p / 8;  // x > p / 2: quarter steps of the octave (p/2, p]
    return (int)(((long long)x + step - 1) / step * step);
}

// Largest power of two (<= 256) dividing the address: cuBLASLt's heuristic
// assumes 256-byte alignment unless told otherwise, and parameter tensors sit
// at arbitrary offsets inside their module's allocation.
static int ptr_alignment(const void *p) {
    uintptr_t a = (uintptr_t)p;
    int al = 256;
    while (al > 2 && (a % (uintptr_t)al) != 0) al >>= 1;
    return al;
}

static void plan_destroy(Plan *p) {
    if (p->has_desc) {
        CUBLAS_CHECK(cublasLtMatmulDescDestroy(p->desc));
        CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->a));
        CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->b));
        CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->c));
    }
    p->has_desc = 0;
    p->valid = 0;
    p->ok = 0;
}

static void plan_stats_print(void) {
    fprintf(stderr, "llava: cuBLASLt plans: %lld calls, %lld reused as is, %lld re-described and checked "
            "(%lld refused), %lld heuristic queries\n", g_plan_stats.calls, g_plan_stats.hits, g_plan_stats.checks,
            g_plan_stats.check_failures, g_plan_stats.queries);
}

void cuda_matmul_release(void) {
    for (int i = 0; i < PLAN_CACHE; i++) plan_destroy(&g_plans[i]);
}

extern "C" void ops_cuda_matmul_plans(CudaPlanStats *stats, int release) {
    if (stats) *stats = g_plan_stats;
    if (release) {
        cuda_matmul_release();
        memset(&g_plan_stats, 0, sizeof g_plan_stats);
    }
}

// Operand layouts for the exact shape (m, n, k) of the plan's key.
static void plan_describe(Plan *p, int m, int n, int k) {
    const PlanKey *key = &p->key;
    const int a_rows = key->opa == CUBLAS_OP_N ? m : k, a_cols = key->opa == CUBLAS_OP_N ? k : m;
    const int b_rows = key->opb == CUBLAS_OP_N ? k : n, b_cols = key->opb == CUBLAS_OP_N ? n : k;
    if (p->has_desc) {
        CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->a));
        CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->b));
        CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->c));
    }
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->a, CUDA_R_16BF, a_rows, a_cols, key->lda));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->b, CUDA_R_16BF, b_rows, b_cols, key->ldb));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->c, key->dtype_d, m, n, key->ldc));
    p->m = m;
    p->n = n;
    p->k = k;
}

// Asks the heuristic for the shape the layouts describe: 1 and *algo, or 0
// when no algorithm fits.
static int plan_query(Plan *p, cublasLtMatmulAlgo_t *algo) {
    CudaContext *ctx = cuda_ctx();
    const PlanKey *k = &p->key;
    static int print_at_exit = 0;  // registered once, even across ops_cuda_matmul_plans resets
    if (!print_at_exit && getenv("LLAVA_CUDA_DEBUG")) print_at_exit = atexit(plan_stats_print) == 0;
    g_plan_stats.queries++;
    cublasLtMatmulPreference_t pref;
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    size_t ws = ctx->lt_workspace_size;
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                                      sizeof ws));
    uint32_t al;
    al = (uint32_t)k->align_a;
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al, sizeof al));
    al = (uint32_t)k->align_b;
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al, sizeof al));
    al = (uint32_t)k->align_c;
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al, sizeof al));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al, sizeof al));
    cublasLtMatmulHeuristicResult_t res;
    memset(&res, 0, sizeof res);
    int found = 0;
    cublasStatus_t st =
        cublasLtMatmulAlgoGetHeuristic(ctx->lt, p->desc, p->a, p->b, p->c, p->c, pref, 1, &res, &found);
    CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
    if (st != CUBLAS_STATUS_SUCCESS && st != CUBLAS_STATUS_NOT_SUPPORTED)
        cuda_fatal(__FILE__, __LINE__, "cublasLtMatmulAlgoGetHeuristic: %s", cublasLtGetStatusString(st));
    const int ok = st == CUBLAS_STATUS_SUCCESS && found > 0;
    if (ok) *algo = res.algo;
    return ok;
}

// The algorithm for the exact shape the layouts describe: the bucket's if
// cublasLtMatmulAlgoCheck accepts it within the workspace, else the
// heuristic's for this shape. p->ok = 0 when neither exists (remembered
// until the shape changes).
static void plan_select(Plan *p) {
    if (p->bucket_ok) {
        g_plan_stats.checks++;
        cublasLtMatmulHeuristicResult_t res;
        memset(&res, 0, sizeof res);
        const cublasStatus_t st =
            cublasLtMatmulAlgoCheck(cuda_ctx()->lt, p->desc, p->a, p->b, p->c, p->c, &p->bucket_algo, &res);
        if (st == CUBLAS_STATUS_SUCCESS && res.workspaceSize <= cuda_ctx()->lt_workspace_size) {
            p->algo = p->bucket_algo;
            p->ok = 1;
            return;
        }
        if (st != CUBLAS_STATUS_SUCCESS && st != CUBLAS_STATUS_NOT_SUPPORTED && st != CUBLAS_STATUS_INVALID_VALUE &&
            st != CUBLAS_STATUS_ARCH_MISMATCH)
            cuda_fatal(__FILE__, __LINE__, "cublasLtMatmulAlgoCheck: %s", cublasLtGetStatusString(st));
        g_plan_stats.check_failures++;
    }
    p->ok = plan_query(p, &p->algo);
}

// Builds the descriptors for the key, asks the heuristic for the bucket's
// shape (each dimension at its bucket, except where that would make an
// operand's rows exceed its leading dimension: those stay exact), then
// selects the algorithm for the exact shape (m, n, kk).
static void plan_build(Plan *p, const PlanKey *k, int m, int n, int kk) {
    memset(p, 0, sizeof *p);
    p->key = *k;
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &k->opa, sizeof k->opa));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &k->opb, sizeof k->opb));
    if (k->has_bias) {
        cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
        cudaDataType_t bias_type = CUDA_R_16BF;
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type,
                                                    sizeof bias_type));
    }
    int bm = k->m, bn = k->n, bk = k->k;
    if ((k->opa == CUBLAS_OP_N ? bm : bk) > k->lda) *(k->opa == CUBLAS_OP_N ? &bm : &bk) = k->opa == CUBLAS_OP_N ? m : kk;
    if ((k->opb == CUBLAS_OP_N ? bk : bn) > k->ldb) *(k->opb == CUBLAS_OP_N ? &bk : &bn) = k->opb == CUBLAS_OP_N ? kk : n;
    if (bm > k->ldc) bm = m;
    plan_describe(p, bm, bn, bk);
    p->valid = 1;
    p->has_desc = 1;
    p->bucket_ok = plan_query(p, &p->bucket_algo);
    plan_describe(p, m, n, kk);
    plan_select(p);
}

// The plan for exact shape (m, n, k) under key (whose m, n, k are filled in
// here, bucketed); NULL when cuBLASLt has no algorithm for it.
static const Plan *plan_get(PlanKey *key, int m, int n, int k) {
    g_plan_stats.calls++;
    key->m = plan_bucket(m);
    key->n = plan_bucket(n);
    key->k = plan_bucket(k);
    for (int i = 0; i < PLAN_CACHE; i++) {
        Plan *p = &g_plans[i];
        if (!p->valid || memcmp(&p->key, key, sizeof *key) != 0) continue;
        if (p->m == m && p->n == n && p->k == k) {
            g_plan_stats.hits++;
        } else {
            plan_describe(p, m, n, k);
            plan_select(p);
        }
        return p->ok ? p : NULL;
    }
    Plan *slot = &g_plans[g_plan_next];
    g_plan_next = (g_plan_next + 1) % PLAN_CACHE;
    plan_destroy(slot);
    plan_build(slot, key, m, n, k);
    return slot->ok ? slot : NULL;
}

// The fallback when cuBLASLt offers no algorithm (odd alignments or leading
// dimensions on some card): a plain 16x16-tiled kernel, fp32 accumulation,
// same semantics as lt_matmul below. Correct, not fast; announced once.
#define FB_TILE 16
__global__ void fallback_gemm_kernel(void *D, int d_is_f32, const bf16 *A, int ta, int lda, const bf16 *B, int tb,
                                     int ldb, int m, int n, int k, int accumulate, const bf16 *bias) {
    __shared__ float As[FB_TILE][FB_TILE + 1], Bs[FB_TILE][FB_TILE + 1];
    const int i = blockIdx.x * FB_TILE + threadIdx.x, j = blockIdx.y * FB_TILE + threadIdx.y;
    float acc = 0.0f;
    for (int k0 = 0; k0 < k; k0 += FB_TILE) {
        // As[x][y] = op(A)(row blockIdx.x*16 + x, k0 + y); Bs[x][y] = op(B)(k0 + x, col blockIdx.y*16 + y)
        const int ar = blockIdx.x * FB_TILE + threadIdx.x, ak = k0 + threadIdx.y;
        As[threadIdx.x][threadIdx.y] =
            (ar < m && ak < k) ? __bfloat162float(ta ? A[ak + (size_t)ar * lda] : A[ar + (size_t)ak * lda]) : 0.0f;
        const int bk = k0 + threadIdx.x, bc = blockIdx.y * FB_TILE + threadIdx.y;
        Bs[threadIdx.x][threadIdx.y] =
            (bk < k && bc < n) ? __bfloat162float(tb ? B[bc + (size_t)bk * ldb] : B[bk + (size_t)bc * ldb]) : 0.0f;
        __syncthreads();
        for (int kk = 0; kk < FB_TILE; kk++) acc += As[threadIdx.x][kk] * Bs[kk][threadIdx.y];
        __syncthreads();
    }
    if (i >= m || j >= n) return;
    const size_t o = (size_t)i + (size_t)j * m;
    if (bias) acc += __bfloat162float(bias[i]);
    if (d_is_f32) {
        float *d = (float *)D;
        d[o] = accumulate ? d[o] + acc : acc;
    } else {
        bf16 *d = (bf16 *)D;
        d[o] = __float2bfloat16_rn(accumulate ? __bfloat162float(d[o]) + acc : acc);
    }
}

static void fallback_gemm(void *D, cudaDataType_t dtype_d, const void *A, cublasOperation_t opa, int lda,
                          const void *B, cublasOperation_t opb, int ldb, int m, int n, int k, int accumulate,
                          const bf16 *bias) {
    static int announced = 0;
    if (!announced) {
        fprintf(stderr, "llava: cuBLASLt has no algorithm for a %dx%dx%d matmul (lda %d, ldb %d); using the slow "
                "fallback kernel for such shapes\n", m, n, k, lda, ldb);
        announced = 1;
    }
    dim3 grid(cuda_blocks(m, FB_TILE), cuda_blocks(n, FB_TILE)), block(FB_TILE, FB_TILE);
    fallback_gemm_kernel<<<grid, block, 0, cuda_ctx()->stream>>>(D, dtype_d == CUDA_R_32F, (const bf16 *)A,
                                                                 opa == CUBLAS_OP_T, lda, (const bf16 *)B,
                                                                 opb == CUBLAS_OP_T, ldb, m, n, k, accumulate, bias);
    CUDA_LAUNCH_CHECK();
}

// D[m,n] (column-major, ldc = m) = op(A) op(B) (+ bias[m]) (+ D when accumulate).
static void lt_matmul(void *D, cudaDataType_t dtype_d, const void *A, cublasOperation_t opa, int lda, const void *B,
                      cublasOperation_t opb, int ldb, int m, int n, int k, int accumulate, const bf16 *bias) {
    CudaContext *ctx = cuda_ctx();
    PlanKey key;
    memset(&key, 0, sizeof key);  // padding bytes take part in memcmp
    key.lda = lda;
    key.ldb = ldb;
    key.ldc = m;
    key.opa = opa;
    key.opb = opb;
    key.dtype_d = dtype_d;
    key.has_bias = bias != NULL;
    key.accumulate = accumulate;
    key.align_a = ptr_alignment(A);
    key.align_b = ptr_alignment(B);
    key.align_c = ptr_alignment(D);
    // The bias epilogue is used only for a 16-byte aligned bias (an unaligned
    // one has been seen to fail in the epilogue elsewhere) and when the
    // heuristic offers an algorithm with it; otherwise plain matmul + bias kernel.
    const Plan *p = (bias && ((uintptr_t)bias & 15)) ? NULL : plan_get(&key, m, n, k);
    if (!p && bias) {
        lt_matmul(D, dtype_d, A, opa, lda, B, opb, ldb, m, n, k, accumulate, NULL);
        cuda_add_bias((bf16 *)D, bias, n, m);
        return;
    }
    if (!p) {
        fallback_gemm(D, dtype_d, A, opa, lda, B, opb, ldb, m, n, k, accumulate, NULL);
        return;
    }
    if (bias)
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    CUBLAS_CHECK(cublasLtMatmul(ctx->lt, p->desc, &alpha, A, p->a, B, p->b, &beta, D, p->c, D, p->c, &p->algo,
                                ctx->lt_workspace, ctx->lt_workspace_size, ctx->stream));
}

void cuda_matmul_forward(void *out, const void *inp, const void *weight, const void *bias, int M, int K, int N) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {  // empty inner dimension: out = bias (or 0)
        CUDA_CHECK(cudaMemsetAsync(out, 0, (size_t)M * N * sizeof(bf16), cuda_ctx()->stream));
        if (bias) cuda_add_bias((bf16 *)out, (const bf16 *)bias, M, N);
        return;
    }
    // out^T[N,M] = op_T(W)[N,K] @ inp^T[K,M]
    lt_matmul(out, CUDA_R_16BF, weight, CUBLAS_OP_T, K, inp, CUBLAS_OP_N, K, N, M, K, 0, (const bf16 *)bias);
}

// grad_bf16: dweight and dbias are bf16 (D = C = bf16 with beta 1: cuBLASLt
// sums the products in fp32 and rounds the sum with the old value once).
static void matmul_backward(void *dinp, void *dweight, void *dbias, bool grad_bf16, const void *dout, const void *inp,
                            const void *weight, int M, int K, int N) {
    if (M <= 0 || N <= 0 || K <= 0) {
        if (dinp && M > 0 && K > 0)
            CUDA_CHECK(cudaMemsetAsync(dinp, 0, (size_t)M * K * sizeof(bf16), cuda_ctx()->stream));
        return;
    }
    // dinp^T[K,M] = W^T[K,N] @ dout^T[N,M]: W row-major [N,K] is column-major [K,N].
    if (dinp) lt_matmul(dinp, CUDA_R_16BF, weight, CUBLAS_OP_N, K, dout, CUBLAS_OP_N, N, K, M, N, 0, NULL);
    // dW^T[K,N] += inp^T[K,M] @ (dout^T[N,M])^T, in the grad dtype with beta = 1.
    if (dweight)
        lt_matmul(dweight, grad_bf16 ? CUDA_R_16BF : CUDA_R_32F, inp, CUBLAS_OP_N, K, dout, CUBLAS_OP_T, N, K, N, M,
                  1, NULL);
    if (dbias) cuda_colsum_add(dbias, grad_bf16, (const bf16 *)dout, M, N);
}

void cuda_matmul_backward(void *dinp, void *dweight, void *dbias, const void *dout, const void *inp,
                          const void *weight, int M, int K, int N) {
    matmul_backward(dinp, dweight, dbias, false, dout, inp, weight, M, K, N);
}
void cuda_matmul_backward_bf16g(void *dinp, void *dweight, void *dbias, const void *dout, const void *inp,
                                const void *weight, int M, int K, int N) {
    matmul_backward(dinp, dweight, dbias, true, dout, inp, weight, M, K, N);
}
