// Elementwise ops (residual, activations, SwiGLU, bias), rotary embeddings,
// token embeddings and the row gathers/scatters, and the vision tower's
// patch/position embedding input. All memory-bound: 16-byte accesses when
// every pointer is aligned and the row length allows, scalar otherwise.
#include <math.h>
#include <string.h>

#include "kernels/cuda/cuda_internal.cuh"

#define EW_THREADS 256
#define INV_SQRT2 0.70710678118654752440f
#define INV_SQRT_2PI 0.39894228040143267794f

// ---- flat elementwise maps --------------------------------------------------------------
// Each thread handles VEC consecutive elements; the tail (n % VEC) falls to
// the scalar path of the last thread. out may alias any input: every element
// is read before it is written by the same thread.

struct AddOp {
    __device__ float operator()(float a, float b) const { return a + b; }
};
struct GeluOp {
    __device__ float operator()(float x) const { return 0.5f * x * (1.0f + erff(x * INV_SQRT2)); }
};
struct GeluBackOp {  // (x, dout)
    __device__ float operator()(float x, float dy) const {
        float cdf = 0.5f * (1.0f + erff(x * INV_SQRT2));
        float pdf = INV_SQRT_2PI * expf(-0.5f * x * x);
        return dy * (cdf + x * pdf);
    }
};
struct QuickGeluOp {
    __device__ float operator()(float x) const { return x / (1.0f + expf(-1.702f * x)); }
};
struct QuickGeluBackOp {  // (x, dout)
    __device__ float operator()(float x, float dy) const {
        float s = 1.0f / (1.0f + expf(-1.702f * x));
        return dy * (s + 1.702f * x * s * (1.0f - s));
    }
};

template <int VEC, class F>
__global__ void map1_kernel(bf16 *out, const bf16 *a, size_t n, F f) {
    size_t i0 = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * VEC;
    if (i0 >= n) return;
    if (i0 + VEC <= n) {
        float x[VEC], y[VEC];
        load_bf16<VEC>(a + i0, x);
#pragma unroll
        for (int k = 0; k < VEC; k++) y[k] = f(x[k]);
        store_bf16<VEC>(out + i0, y);
    } else {
        for (size_t i = i0; i < n; i++) out[i] = __float2bfloat16_rn(f(__bfloat162float(a[i])));
    }
}

template <int VEC, class F>
__global__ void map2_kernel(bf16 *out, const bf16 *a, const bf16 *b, size_t n, F f) {
    size_t i0 = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * VEC;
    if (i0 >= n) return;
    if (i0 + VEC <= n) {
        float x[VEC], y[VEC], z[VEC];
        load_bf16<VEC>(a + i0, x);
        load_bf16<VEC>(b + i0, y);
#pragma unroll
        for (int k = 0; k < VEC; k++) z[k] = f(x[k], y[k]);
        store_bf16<VEC>(out + i0, z);
    } else {
        for (size_t i = i0; i < n; i++)
            out[i] = __float2bfloat16_rn(f(__bfloat162float(a[i]), __bfloat162float(b[i])));
    }
}

template <class F>
static void map1(void *out, const void *a, size_t n, F f) {
    if (!n) return;
    cudaStream_t st = cuda_ctx()->stream;
    if (aligned16(out, a))
        map1_kernel<8><<<cuda_blocks(n, 8 * EW_THREADS), EW_THREADS, 0, st>>>((bf16 *)out, (const bf16 *)a, n, f);
    else
        map1_kernel<1><<<cuda_blocks(n, EW_THREADS), EW_THREADS, 0, st>>>((bf16 *)out, (const bf16 *)a, n, f);
    CUDA_LAUNCH_CHECK();
}

template <class F>
static void map2(void *out, const void *a, const void *b, size_t n, F f) {
    if (!n) return;
    cudaStream_t st = cuda_ctx()->stream;
    if (aligned16(out, a, b))
        map2_kernel<8><<<cuda_blocks(n, 8 * EW_THREADS), EW_THREADS, 0, st>>>((bf16 *)out, (const bf16 *)a,
                                                                              (const bf16 *)b, n, f);
    else
        map2_kernel<1><<<cuda_blocks(n, EW_THREADS), EW_THREADS, 0, st>>>((bf16 *)out, (const bf16 *)a,
                                                                          (const bf16 *)b, n, f);
    CUDA_LAUNCH_CHECK();
}

void cuda_residual_forward(void *out, const void *a, const void *b, size_t n) { map2(out, a, b, n, AddOp()); }
void cuda_accumulate(void *dst, const void *src, size_t n) { map2(dst, dst, src, n, AddOp()); }
void cuda_gelu_forward(void *out, const void *inp, size_t n) { map1(out, inp, n, GeluOp()); }
void cuda_gelu_backward(void *dinp, const void *inp, const void *dout, size_t n) {
    map2(dinp, inp, dout, n, GeluBackOp());
}
void cuda_quick_gelu_forward(void *out, const void *inp, size_t n) { map1(out, inp, n, QuickGeluOp()); }
void cuda_quick_gelu_backward(void *dinp, const void *inp, const void *dout, size_t n) {
    map2(dinp, inp, dout, n, QuickGeluBackOp());
}

// ---- row-structured elementwise ---------------------------------------------------------

// silu(g) * u: one expression for the forward and for backward's recompute
// (swiglu_backward_recompute_kernel), so both give the same bits.
__device__ __forceinline__ float swiglu_value(float g, float u) { return g / (1.0f + expf(-g)) * u; }

// d(silu(g) * u) from dy, as swiglu_backward has always computed it.
__device__ __forceinline__ void swiglu_grad(float &dg, float &du, float dy, float g, float u) {
    const float s = 1.0f / (1.0f + expf(-g));
    du = dy * g * s;
    dg = dy * u * s * (1.0f + g * (1.0f - s));
}

// out[M, FF] = silu(g) * u with gateup[M, 2FF] = [g | u]; thread per VEC columns of a row.
template <int VEC>
__global__ void swiglu_forward_kernel(bf16 *out, const bf16 *gateup, int M, int FF) {
    const int per_row = FF / VEC;
    size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= (size_t)M * per_row) return;
    const size_t m = t / per_row;
    const int i = (int)(t % per_row) * VEC;
    float g[VEC], u[VEC], o[VEC];
    load_bf16<VEC>(gateup + m * 2 * FF + i, g);
    load_bf16<VEC>(gateup + m * 2 * FF + FF + i, u);
#pragma unroll
    for (int k = 0; k < VEC; k++) o[k] = swiglu_value(g[k], u[k]);
    store_bf16<VEC>(out + m * FF + i, o);
}

template <int VEC>
__global__ void swiglu_backward_kernel(bf16 *dgateup, const bf16 *dout, const bf16 *gateup, int M, int FF) {
    const int per_row = FF / VEC;
    size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= (size_t)M * per_row) return;
    const size_t m = t / per_row;
    const int i = (int)(t % per_row) * VEC;
    float g[VEC], u[VEC], dy[VEC], dg[VEC], du[VEC];
    load_bf16<VEC>(gateup + m * 2 * FF + i, g);
    load_bf16<VEC>(gateup + m * 2 * FF + FF + i, u);
    load_bf16<VEC>(dout + m * FF + i, dy);
#pragma unroll
    for (int k = 0; k < VEC; k++) swiglu_grad(dg[k], du[k], dy[k], g[k], u[k]);
    store_bf16<VEC>(dgateup + m * 2 * FF + i, dg);
    store_bf16<VEC>(dgateup + m * 2 * FF + FF + i, du);
}

// swiglu_backward that also writes out = silu(g) * u (the down projection's
// input, which backward needs for its weight gradient) from the same read of
// gateup: 6 FF bytes per row read and 6 FF written, instead of recomputing
// out first (4 FF read, 2 FF written) and then the gradient (6 read, 4 written).
template <int VEC>
__global__ void swiglu_backward_recompute_kernel(bf16 *dgateup, bf16 *out, const bf16 *dout, const bf16 *gateup,
                                                 int M, int FF) {
    const int per_row = FF / VEC;
    size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= (size_t)M * per_row) return;
    const size_t m = t / per_row;
    const int i = (int)(t % per_row) * VEC;
    float g[VEC], u[VEC], dy[VEC], dg[VEC], du[VEC], o[VEC];
    load_bf16<VEC>(gateup + m * 2 * FF + i, g);
    load_bf16<VEC>(gateup + m * 2 * FF + FF + i, u);
    load_bf16<VEC>(dout + m * FF + i, dy);
#pragma unroll
    for (int k = 0; k < VEC; k++) {
        o[k] = swiglu_value(g[k], u[k]);
        swiglu_grad(dg[k], du[k], dy[k], g[k], u[k]);
    }
    store_bf16<VEC>(dgateup + m * 2 * FF + i, dg);
    store_bf16<VEC>(dgateup + m * 2 * FF + FF + i, du);
    if (out) store_bf16<VEC>(out + m * FF + i, o);
}

void cuda_swiglu_forward(void *out, const void *gateup, int M, int FF) {
    if (M <= 0 || FF <= 0) return;
    cudaStream_t st = cuda_ctx()->stream;
    if (FF % 8 == 0 && aligned16(out, gateup))
        swiglu_forward_kernel<8><<<cuda_blocks((size_t)M * FF / 8, EW_THREADS), EW_THREADS, 0, st>>>(
            (bf16 *)out, (const bf16 *)gateup, M, FF);
    else
        swiglu_forward_kernel<1><<<cuda_blocks((size_t)M * FF, EW_THREADS), EW_THREADS, 0, st>>>(
            (bf16 *)out, (const bf16 *)gateup, M, FF);
    CUDA_LAUNCH_CHECK();
}

void cuda_swiglu_backward(void *dgateup, const void *dout, const void *gateup, int M, int FF) {
    if (M <= 0 || FF <= 0) return;
    cudaStream_t st = cuda_ctx()->stream;
    if (FF % 8 == 0 && aligned16(dgateup, dout, gateup))
        swiglu_backward_kernel<8><<<cuda_blocks((size_t)M * FF / 8, EW_THREADS), EW_THREADS, 0, st>>>(
            (bf16 *)dgateup, (const bf16 *)dout, (const bf16 *)gateup, M, FF);
    else
        swiglu_backward_kernel<1><<<cuda_blocks((size_t)M * FF, EW_THREADS), EW_THREADS, 0, st>>>(
            (bf16 *)dgateup, (const bf16 *)dout, (const bf16 *)gateup, M, FF);
    CUDA_LAUNCH_CHECK();
}

void cuda_swiglu_backward_recompute(void *dgateup, void *out, const void *dout, const void *gateup, int M, int FF) {
    if (M <= 0 || FF <= 0) return;
    cudaStream_t st = cuda_ctx()->stream;
    if (FF % 8 == 0 && aligned16(dgateup, out, dout, gateup))
        swiglu_backward_recompute_kernel<8><<<cuda_blocks((size_t)M * FF / 8, EW_THREADS), EW_THREADS, 0, st>>>(
            (bf16 *)dgateup, (bf16 *)out, (const bf16 *)dout, (const bf16 *)gateup, M, FF);
    else
        swiglu_backward_recompute_kernel<1><<<cuda_blocks((size_t)M * FF, EW_THREADS), EW_THREADS, 0, st>>>(
            (bf16 *)dgateup, (bf16 *)out, (const bf16 *)dout, (const bf16 *)gateup, M, FF);
    CUDA_LAUNCH_CHECK();
}

// out[M, N] += bias[N] (fallback when cuBLASLt has no fused-bias algorithm).
__global__ void add_bias_kernel(bf16 *out, const bf16 *bias, int M, int N) {
    size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= (size_t)M * N) return;
    out[t] = __float2bfloat16_rn(__bfloat162float(out[t]) + __bfloat162float(bias[t % N]));
}

void cuda_add_bias(bf16 *out, const bf16 *bias, int M, int N) {
    if (M <= 0 || N <= 0) return;
    add_bias_kernel<<<cuda_blocks((size_t)M * N, EW_THREADS), EW_THREADS, 0, cuda_ctx()->stream>>>(out, bias, M, N);
    CUDA_LAUNCH_CHECK();
}

// ---- rotary embeddings ------------------------------------------------------------------
// inv_freq is computed on the host with the reference's own expression
// (1 / powf(theta, 2i/HS)), so the angles pos * inv_freq are bitwise the
// reference's; only sin/cos differ (CUDA's are within 2 ulp). Tables are
// cached per (theta, HS).

#define ROPE_CACHE 8
typedef struct {
    float theta;
    int HS;
    float *table;  // device [HS/2]
} RopeTable;
static RopeTable g_rope[ROPE_CACHE];
static int g_rope_next = 0;

static const float *rope_inv_freq(float theta, int HS) {
    for (int i = 0; i < ROPE_CACHE; i++)
        if (g_rope[i].table && g_rope[i].theta == theta && g_rope[i].HS == HS) return g_rope[i].table;
    RopeTable *slot = &g_rope[g_rope_next];
    g_rope_next = (g_rope_next + 1) % ROPE_CACHE;
    if (slot->table) CUDA_CHECK(cudaFree(slot->table));
    const int half = HS / 2;
    float host[1024];
    CUDA_REQUIRE(half <= 1024, "rope: head size %d is larger than 2048", HS);
    for (int i = 0; i < half; i++) host[i] = 1.0f / powf(theta, (float)(2 * i) / (float)HS);
    CUDA_CHECK(cudaMalloc(&slot->table, (size_t)(half > 0 ? half : 1) * sizeof(float)));
    CudaContext *c = cuda_ctx();
    CUDA_CHECK(cudaMemcpyAsync(slot->table, host, (size_t)half * sizeof(float), cudaMemcpyHostToDevice, c->stream));
    CUDA_CHECK(cudaStreamSynchronize(c->stream));  // `host` leaves scope
    slot->theta = theta;
    slot->HS = HS;
    return slot->table;
}

void cuda_rope_release(void) {
    for (int i = 0; i < ROPE_CACHE; i++)
        if (g_rope[i].table) {
            CUDA_CHECK(cudaFree(g_rope[i].table));
            g_rope[i].table = NULL;
        }
}

// Thread per (row m, VEC consecutive frequencies i..i+VEC-1): VEC sincos
// computed once, applied to every q and k head. The two halves of a head
// (x[i..], x[i+half..]) move as one 16-byte access each when VEC = 8. The
// arithmetic per element is the scalar kernel's, so both widths give the same
// bits; only the memory traffic differs.
template <int VEC>
__global__ void rope_vec_kernel(bf16 *qkv, const int32_t *pos, const float *inv_freq, int M, int NH, int NKV,
                                int HS, float direction) {
    const int half = HS / 2, per_row = half / VEC;
    size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= (size_t)M * per_row) return;
    const size_t m = t / per_row;
    const int i = (int)(t % per_row) * VEC;
    const float p = (float)pos[m];
    float s[VEC], c[VEC];
#pragma unroll
    for (int k = 0; k < VEC; k++) {
        sincosf(p * inv_freq[i + k], &s[k], &c[k]);
        s[k] *= direction;
    }
    bf16 *row = qkv + m * (size_t)(NH + 2 * NKV) * HS;
    for (int h = 0; h < NH + NKV; h++) {
        bf16 *x = row + (size_t)h * HS;
        float a[VEC], b[VEC], ya[VEC], yb[VEC];
        load_bf16<VEC>(x + i, a);
        load_bf16<VEC>(x + i + half, b);
#pragma unroll
        for (int k = 0; k < VEC; k++) {
            ya[k] = a[k] * c[k] - b[k] * s[k];
            yb[k] = b[k] * c[k] + a[k] * s[k];
        }
        store_bf16<VEC>(x + i, ya);
        store_bf16<VEC>(x + i + half, yb);
    }
}

// Shared by rope_forward/backward (theta's table) and cuda_modern.cu's
// rope_freq (a scaled table). 16-byte accesses need half % 8 == 0 (head sizes
// 16, 64, 80, 128 all qualify) and an aligned buffer; otherwise scalar.
void cuda_rope_launch(void *qkv, const int32_t *pos, const float *inv_freq, int M, int NH, int NKV, int HS,
                      float dir) {
    if (M <= 0 || HS < 2) return;
    const int half = HS / 2;
    cudaStream_t st = cuda_ctx()->stream;
    if (half % 8 == 0 && aligned16(qkv))
        rope_vec_kernel<8><<<cuda_blocks((size_t)M * (half / 8), EW_THREADS), EW_THREADS, 0, st>>>(
            (bf16 *)qkv, pos, inv_freq, M, NH, NKV, HS, dir);
    else
        rope_vec_kernel<1><<<cuda_blocks((size_t)M * half, EW_THREADS), EW_THREADS, 0, st>>>(
            (bf16 *)qkv, pos, inv_freq, M, NH, NKV, HS, dir);
    CUDA_LAUNCH_CHECK();
}

static void rope_apply(void *qkv, const int32_t *pos, int M, int NH, int NKV, int HS, float theta, float dir) {
    if (M <= 0 || HS < 2) return;
    cuda_rope_launch(qkv, pos, rope_inv_freq(theta, HS), M, NH, NKV, HS, dir);
}

void cuda_rope_forward(void *qkv, const int32_t *pos, int M, int NH, int NKV, int HS, float theta) {
    rope_apply(qkv, pos, M, NH, NKV, HS, theta, 1.0f);
}
void cuda_rope_backward(void *dqkv, const int32_t *pos, int M, int NH, int NKV, int HS, float theta) {
    rope_apply(dqkv, pos, M, NH, NKV, HS, theta, -1.0f);
}

// ---- embeddings and row moves -----------------------------------------------------------

// dst[dst_row(i)] = src[src_row(i)] for rows of C; a negative source row gives zeros.
// Block per row, threads over VEC-wide column groups.
template <int VEC>
__global__ void move_rows_kernel(bf16 *dst, const bf16 *src, const int32_t *dst_rows, const int32_t *src_rows,
                                 int C) {
    const int i = blockIdx.x;
    const long dr = dst_rows ? dst_rows[i] : i;
    const long sr = src_rows ? src_rows[i] : i;
    bf16 *d = dst + (size_t)dr * C;
    for (int c = threadIdx.x * VEC; c < C; c += blockDim.x * VEC) {
        float v[VEC];
        if (sr >= 0) {
            load_bf16<VEC>(src + (size_t)sr * C + c, v);
        } else {
#pragma unroll
            for (int k = 0; k < VEC; k++) v[k] = 0.0f;
        }
        store_bf16<VEC>(d + c, v);
    }
}

static void move_rows(void *dst, const void *src, const int32_t *dst_rows, const int32_t *src_rows, int n, int C) {
    if (n <= 0 || C <= 0) return;
    cudaStream_t st = cuda_ctx()->stream;
    int threads = C >= 1024 ? 128 : 64;
    if (C % 8 == 0 && aligned16(dst, src))
        move_rows_kernel<8><<<n, threads, 0, st>>>((bf16 *)dst, (const bf16 *)src, dst_rows, src_rows, C);
    else
        move_rows_kernel<1><<<n, threads, 0, st>>>((bf16 *)dst, (const bf16 *)src, dst_rows, src_rows, C);
    CUDA_LAUNCH_CHECK();
}

void cuda_embedding_forward(void *out, const int32_t *ids, const void *table, int M, int C) {
    move_rows(out, table, NULL, ids, M, C);
}
void cuda_scatter_rows(void *dst, const void *src, const int32_t *rows, int n, int C) {
    move_rows(dst, src, rows, NULL, n, C);
}
void cuda_gather_rows(void *dst, const void *src, const int32_t *rows, int n, int C) {
    move_rows(dst, src, NULL, rows, n, C);
}

// dtable[V, C] += rows of dout, deterministic without atomics: block (g, column
// chunk) owns the vocabulary rows v with v % G == g and its columns, and walks
// all M ids in order. Every (v, c) is thus updated by one thread, in row order:
// the same summation order as the reference.
#define EMB_OWNERS 256
#define EMB_COLS 1024  // columns per block (4 per thread)
__global__ void embedding_backward_kernel(float *dtable, const bf16 *dout, const int32_t *ids, int M, int C) {
    __shared__ int32_t s_ids[1024];
    const int g = blockIdx.x, G = gridDim.x;
    const int c0 = blockIdx.y * EMB_COLS;
    for (int base = 0; base < M; base += 1024) {
        const int count = min(1024, M - base);
        __syncthreads();
        for (int k = threadIdx.x; k < count; k += blockDim.x) s_ids[k] = ids[base + k];
        __syncthreads();
        for (int k = 0; k < count; k++) {
            const int v = s_ids[k];
            if (v < 0 || v % G != g) continue;  // uniform across the block
            const bf16 *src = dout + (size_t)(base + k) * C;
            float *dst = dtable + (size_t)v * C;
            for (int c = c0 + threadIdx.x; c < min(C, c0 + EMB_COLS); c += blockDim.x)
                dst[c] += __bfloat162float(src[c]);
        }
    }
}

// The same ownership with a bf16 table: adding each row into bf16 would round
// once per occurrence, and a frequent token's small updates would stop
// registering. So per chunk of 1024 ids, at a vocabulary row's first
// occurrence in the chunk, the block sums all its occurrences of the chunk in
// fp32 (in row order) and adds that once: one rounding per (row, chunk).
__global__ void embedding_backward_bf16g_kernel(bf16 *dtable, const bf16 *dout, const int32_t *ids, int M, int C) {
    __shared__ int32_t s_ids[1024];
    const int g = blockIdx.x, G = gridDim.x;
    const int c0 = blockIdx.y * EMB_COLS;
    for (int base = 0; base < M; base += 1024) {
        const int count = min(1024, M - base);
        __syncthreads();
        for (int k = threadIdx.x; k < count; k += blockDim.x) s_ids[k] = ids[base + k];
        __syncthreads();
        for (int k = 0; k < count; k++) {
            const int v = s_ids[k];
            if (v < 0 || v % G != g) continue;  // uniform across the block
            bool seen = false;
            for (int j = 0; j < k && !seen; j++) seen = s_ids[j] == v;
            if (seen) continue;  // summed at its first occurrence
            bf16 *dst = dtable + (size_t)v * C;
            for (int c = c0 + threadIdx.x; c < min(C, c0 + EMB_COLS); c += blockDim.x) {
                float acc = 0.0f;
                for (int j = k; j < count; j++)
                    if (s_ids[j] == v) acc += __bfloat162float(dout[(size_t)(base + j) * C + c]);
                grad_add(&dst[c], acc);
            }
        }
    }
}

void cuda_embedding_backward(void *dtable, const void *dout, const int32_t *ids, int M, int C, int V) {
    if (M <= 0 || C <= 0 || V <= 0) return;
    dim3 grid(V < EMB_OWNERS ? V : EMB_OWNERS, cuda_blocks(C, EMB_COLS));
    embedding_backward_kernel<<<grid, 256, 0, cuda_ctx()->stream>>>((float *)dtable, (const bf16 *)dout, ids, M, C);
    CUDA_LAUNCH_CHECK();
}

void cuda_embedding_backward_bf16g(void *dtable, const void *dout, const int32_t *ids, int M, int C, int V) {
    if (M <= 0 || C <= 0 || V <= 0) return;
    dim3 grid(V < EMB_OWNERS ? V : EMB_OWNERS, cuda_blocks(C, EMB_COLS));
    embedding_backward_bf16g_kernel<<<grid, 256, 0, cuda_ctx()->stream>>>((bf16 *)dtable, (const bf16 *)dout, ids,
                                                                         M, C);
    CUDA_LAUNCH_CHECK();
}

// ---- vision input -------------------------------------------------------------------------

// patches[N*NP, 3*P*P] from pixels[N, 3, S, S]; feature f = (c*P + ky)*P + kx.
__global__ void patchify_kernel(bf16 *patches, const bf16 *pixels, int N, int S, int P) {
    const int G = S / P, NP = G * G, F = 3 * P * P;
    size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= (size_t)N * NP * F) return;
    const int f = (int)(t % F);
    const size_t np = t / F;
    const int p = (int)(np % NP), n = (int)(np / NP);
    const int c = f / (P * P), ky = (f / P) % P, kx = f % P;
    const int py = p / G, px = p % G;
    patches[t] = pixels[(((size_t)n * 3 + c) * S + (size_t)(py * P + ky)) * S + (size_t)px * P + kx];
}

void cuda_patchify(void *patches, const void *pixels, int N, int S, int P) {
    const int G = S / P;
    const size_t total = (size_t)N * G * G * 3 * P * P;
    if (!total) return;
    patchify_kernel<<<cuda_blocks(total, EW_THREADS), EW_THREADS, 0, cuda_ctx()->stream>>>(
        (bf16 *)patches, (const bf16 *)pixels, N, S, P);
    CUDA_LAUNCH_CHECK();
}

// out[N, NP+1, D]: row 0 = cls + pos[0], row 1+p = patch_emb[n, p] + pos[1+p].
__global__ void vision_embed_kernel(bf16 *out, const bf16 *patch_emb, const bf16 *cls, const bf16 *pos, int N, int NP,
                                    int D) {
    size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= (size_t)N * (NP + 1) * D) return;
    const int d = (int)(t % D);
    const size_t nt = t / D;
    const int tok = (int)(nt % (NP + 1)), n = (int)(nt / (NP + 1));
    float src = tok == 0 ? __bfloat162float(cls[d]) : __bfloat162float(patch_emb[((size_t)n * NP + tok - 1) * D + d]);
    out[t] = __float2bfloat16_rn(src + __bfloat162float(pos[(size_t)tok * D + d]));
}

void cuda_vision_embed(void *out, const void *patch_emb, const void *cls, const void *pos, int N, int NP, int D) {
    const size_t total = (size_t)N * (NP + 1) * D;
    if (!total) return;
    vision_embed_kernel<<<cuda_blocks(total, EW_THREADS), EW_THREADS, 0, cuda_ctx()->stream>>>(
        (bf16 *)out, (const bf16 *)patch_emb, (const bf16 *)cls, (const bf16 *)pos, N, NP, D);
    CUDA_LAUNCH_CHECK();
}
