// LayerNorm and RMSNorm, forward and backward, fp32 statistics.
//
// Row work (statistics, the normalized output, the input gradient) runs one
// warp per row. Weight and bias gradients are column sums over all rows; they
// run as a separate two-pass reduction with a fixed partition (row chunks of
// COL_ROWS, summed in chunk order), so the result is bitwise reproducible and
// independent of the GPU model, with no float atomics.
#include "kernels/cuda/cuda_internal.cuh"

#define ROWS_PER_BLOCK 4  // warps per block, one row each
#define COL_ROWS 128      // rows per partial sum in the column reductions
#define COL_TILE 32       // columns per block in the column reductions
#define COL_LANES 8       // row lanes per block in the column reductions

// VEC = 8 needs C % 8 == 0 and 16-byte aligned rows and weights.
template <int VEC>
__global__ void layernorm_forward_kernel(bf16 *out, float *mean, float *rstd, const bf16 *inp, const bf16 *weight,
                                         const bf16 *bias, int M, int C, float eps) {
    const int lane = threadIdx.x & 31;
    const int m = blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    if (m >= M) return;
    const bf16 *x = inp + (size_t)m * C;
    // Two passes over the row (the second from L1/L2): mean, then the variance
    // around it, like the reference, instead of E[x^2] - mean^2.
    float s = 0.0f;
    for (int c = lane * VEC; c < C; c += 32 * VEC) {
        float v[VEC];
        load_bf16<VEC>(x + c, v);
#pragma unroll
        for (int k = 0; k < VEC; k++) s += v[k];
    }
    const float mu = warp_sum(s) / (float)C;
    float var = 0.0f;
    for (int c = lane * VEC; c < C; c += 32 * VEC) {
        float v[VEC];
        load_bf16<VEC>(x + c, v);
#pragma unroll
        for (int k = 0; k < VEC; k++) var += (v[k] - mu) * (v[k] - mu);
    }
    const float rs = 1.0f / sqrtf(warp_sum(var) / (float)C + eps);
    bf16 *y = out + (size_t)m * C;
    for (int c = lane * VEC; c < C; c += 32 * VEC) {
        float v[VEC], w[VEC], b[VEC], o[VEC];
        load_bf16<VEC>(x + c, v);
        load_bf16<VEC>(weight + c, w);
        if (bias) load_bf16<VEC>(bias + c, b);
#pragma unroll
        for (int k = 0; k < VEC; k++) o[k] = (v[k] - mu) * rs * w[k] + (bias ? b[k] : 0.0f);
        store_bf16<VEC>(y + c, o);
    }
    if (lane == 0) {
        if (mean) mean[m] = mu;
        if (rstd) rstd[m] = rs;
    }
}

// dinp += rs * (dy*w - mean(dy*w) - xhat * mean(dy*w*xhat))
template <int VEC>
__global__ void layernorm_backward_dinp_kernel(bf16 *dinp, const bf16 *dout, const bf16 *inp, const bf16 *weight,
                                               const float *mean, const float *rstd, int M, int C) {
    const int lane = threadIdx.x & 31;
    const int m = blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    if (m >= M) return;
    const bf16 *x = inp + (size_t)m * C, *dy = dout + (size_t)m * C;
    bf16 *dx = dinp + (size_t)m * C;
    const float mu = mean[m], rs = rstd[m];
    float s1 = 0.0f, s2 = 0.0f;
    for (int c = lane * VEC; c < C; c += 32 * VEC) {
        float xv[VEC], g[VEC], w[VEC];
        load_bf16<VEC>(x + c, xv);
        load_bf16<VEC>(dy + c, g);
        load_bf16<VEC>(weight + c, w);
#pragma unroll
        for (int k = 0; k < VEC; k++) {
            float dxhat = g[k] * w[k];
            s1 += dxhat;
            s2 += dxhat * (xv[k] - mu) * rs;
        }
    }
    const float a = warp_sum(s1) / (float)C, b = warp_sum(s2) / (float)C;
    for (int c = lane * VEC; c < C; c += 32 * VEC) {
        float xv[VEC], g[VEC], w[VEC], d[VEC];
        load_bf16<VEC>(x + c, xv);
        load_bf16<VEC>(dy + c, g);
        load_bf16<VEC>(weight + c, w);
        load_bf16<VEC>(dx + c, d);
#pragma unroll
        for (int k = 0; k < VEC; k++) d[k] += rs * (g[k] * w[k] - a - (xv[k] - mu) * rs * b);
        store_bf16<VEC>(dx + c, d);
    }
}

template <int VEC>
__global__ void rmsnorm_forward_kernel(bf16 *out, float *rstd, const bf16 *inp, const bf16 *weight, int M, int C,
                                       float eps) {
    const int lane = threadIdx.x & 31;
    const int m = blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    if (m >= M) return;
    const bf16 *x = inp + (size_t)m * C;
    float ss = 0.0f;
    for (int c = lane * VEC; c < C; c += 32 * VEC) {
        float v[VEC];
        load_bf16<VEC>(x + c, v);
#pragma unroll
        for (int k = 0; k < VEC; k++) ss += v[k] * v[k];
    }
    const float rs = 1.0f / sqrtf(warp_sum(ss) / (float)C + eps);
    bf16 *y = out + (size_t)m * C;
    for (int c = lane * VEC; c < C; c += 32 * VEC) {
        float v[VEC], w[VEC], o[VEC];
        load_bf16<VEC>(x + c, v);
        load_bf16<VEC>(weight + c, w);
#pragma unroll
        for (int k = 0; k < VEC; k++) o[k] = w[k] * (v[k] * rs);  // the reference's order
        store_bf16<VEC>(y + c, o);
    }
    if (lane == 0 && rstd) rstd[m] = rs;
}

// res = a + b rounded to bf16 (residual_forward's AddOp), then the RMSNorm of
// the rounded values in rmsnorm_forward_kernel's lane order: bitwise the two
// kernels, with res read back once (from L2, just written) instead of twice.
template <int VEC>
__global__ void residual_rmsnorm_forward_kernel(bf16 *res, bf16 *out, float *rstd, const bf16 *a, const bf16 *b,
                                                const bf16 *weight, int M, int C, float eps) {
    const int lane = threadIdx.x & 31;
    const int m = blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    if (m >= M) return;
    const size_t row = (size_t)m * C;
    float ss = 0.0f;
    for (int c = lane * VEC; c < C; c += 32 * VEC) {
        float x[VEC], y[VEC];
        load_bf16<VEC>(a + row + c, x);
        load_bf16<VEC>(b + row + c, y);
#pragma unroll
        for (int k = 0; k < VEC; k++) {
            x[k] = __bfloat162float(__float2bfloat16_rn(x[k] + y[k]));  // the stored value
            ss += x[k] * x[k];
        }
        store_bf16<VEC>(res + row + c, x);
    }
    const float rs = 1.0f / sqrtf(warp_sum(ss) / (float)C + eps);
    for (int c = lane * VEC; c < C; c += 32 * VEC) {
        float v[VEC], w[VEC], o[VEC];
        load_bf16<VEC>(res + row + c, v);
        load_bf16<VEC>(weight + c, w);
#pragma unroll
        for (int k = 0; k < VEC; k++) o[k] = w[k] * (v[k] * rs);
        store_bf16<VEC>(out + row + c, o);
    }
    if (lane == 0 && rstd) rstd[m] = rs;
}

// dinp += dy*w*rs - x * rs^3 * mean(dy*w*x)
template <int VEC>
__global__ void rmsnorm_backward_dinp_kernel(bf16 *dinp, const bf16 *dout, const bf16 *inp, const bf16 *weight,
                                             const float *rstd, int M, int C) {
    const int lane = threadIdx.x & 31;
    const int m = blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    if (m >= M) return;
    const bf16 *x = inp + (size_t)m * C, *dy = dout + (size_t)m * C;
    bf16 *dx = dinp + (size_t)m * C;
    const float rs = rstd[m];
    float dot = 0.0f;
    for (int c = lane * VEC; c < C; c += 32 * VEC) {
        float xv[VEC], g[VEC], w[VEC];
        load_bf16<VEC>(x + c, xv);
        load_bf16<VEC>(dy + c, g);
        load_bf16<VEC>(weight + c, w);
#pragma unroll
        for (int k = 0; k < VEC; k++) dot += g[k] * w[k] * xv[k];
    }
    const float kcoef = warp_sum(dot) / (float)C * rs * rs * rs;
    for (int c = lane * VEC; c < C; c += 32 * VEC) {
        float xv[VEC], g[VEC], w[VEC], d[VEC];
        load_bf16<VEC>(x + c, xv);
        load_bf16<VEC>(dy + c, g);
        load_bf16<VEC>(weight + c, w);
        load_bf16<VEC>(dx + c, d);
#pragma unroll
        for (int k = 0; k < VEC; k++) d[k] += g[k] * w[k] * rs - xv[k] * kcoef;
        store_bf16<VEC>(dx + c, d);
    }
}

// ---- deterministic column reductions ------------------------------------------------
// MODE 0: out0[c] += sum_m dy                      (bias gradient)
// MODE 1: out0[c] += sum_m dy * (x - mean) * rstd, out1[c] += sum_m dy   (LayerNorm)
// MODE 2: out0[c] += sum_m dy * x * rstd           (RMSNorm)
// Pass 1: block (column tile, row chunk) writes partial[chunk][c]; pass 2 adds
// the chunks in order. Within a block, row lane ty sums rows ty, ty+8, ...
// and the 8 lanes are added in lane order.
template <int MODE>
__global__ void colsum_partial_kernel(float *part0, float *part1, const bf16 *dy, const bf16 *x, const float *mean,
                                      const float *rstd, int M, int C) {
    __shared__ float s0[COL_LANES][COL_TILE];
    __shared__ float s1[COL_LANES][COL_TILE];
    const int tx = threadIdx.x % COL_TILE, ty = threadIdx.x / COL_TILE;
    const int c = blockIdx.x * COL_TILE + tx;
    const int r0 = blockIdx.y * COL_ROWS, r1 = min(M, r0 + COL_ROWS);
    float a0 = 0.0f, a1 = 0.0f;
    if (c < C) {
        for (int r = r0 + ty; r < r1; r += COL_LANES) {
            float g = __bfloat162float(dy[(size_t)r * C + c]);
            if (MODE == 0) {
                a0 += g;
            } else if (MODE == 1) {
                float xv = __bfloat162float(x[(size_t)r * C + c]);
                a0 += g * (xv - mean[r]) * rstd[r];
                a1 += g;
            } else {
                float xv = __bfloat162float(x[(size_t)r * C + c]);
                a0 += g * xv * rstd[r];
            }
        }
    }
    s0[ty][tx] = a0;
    s1[ty][tx] = a1;
    __syncthreads();
    if (ty == 0 && c < C) {
        float t0 = 0.0f, t1 = 0.0f;
        for (int k = 0; k < COL_LANES; k++) {
            t0 += s0[k][tx];
            t1 += s1[k][tx];
        }
        part0[(size_t)blockIdx.y * C + c] = t0;
        if (MODE == 1) part1[(size_t)blockIdx.y * C + c] = t1;
    }
}

// The outputs are parameter gradients, G = float or bf16 (grad_add: the
// chunks summed in fp32, then one add and, for bf16, one rounding).
template <typename G>
__global__ void colsum_final_kernel(G *out0, G *out1, const float *part0, const float *part1, int chunks, int C) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    if (out0) {
        float t = 0.0f;
        for (int k = 0; k < chunks; k++) t += part0[(size_t)k * C + c];
        grad_add(&out0[c], t);
    }
    if (out1) {
        float t = 0.0f;
        for (int k = 0; k < chunks; k++) t += part1[(size_t)k * C + c];
        grad_add(&out1[c], t);
    }
}

template <int MODE, typename G>
static void colsum(G *out0, G *out1, const bf16 *dy, const bf16 *x, const float *mean, const float *rstd, int M,
                   int C) {
    if (M <= 0 || C <= 0) return;
    cudaStream_t st = cuda_ctx()->stream;
    const int chunks = (M + COL_ROWS - 1) / COL_ROWS;
    float *part0 = (float *)cuda_scratch((size_t)2 * chunks * C * sizeof(float));
    float *part1 = part0 + (size_t)chunks * C;
    dim3 grid(cuda_blocks(C, COL_TILE), chunks);
    colsum_partial_kernel<MODE><<<grid, COL_TILE * COL_LANES, 0, st>>>(part0, part1, dy, x, mean, rstd, M, C);
    CUDA_LAUNCH_CHECK();
    colsum_final_kernel<G><<<cuda_blocks(C, 256), 256, 0, st>>>(out0, MODE == 1 ? out1 : nullptr, part0, part1,
                                                                chunks, C);
    CUDA_LAUNCH_CHECK();
}

void cuda_colsum_add(void *dst, bool dst_bf16, const bf16 *src, int M, int N) {
    if (dst_bf16)
        colsum<0, bf16>((bf16 *)dst, nullptr, src, nullptr, nullptr, nullptr, M, N);
    else
        colsum<0, float>((float *)dst, nullptr, src, nullptr, nullptr, nullptr, M, N);
}

// ---- launchers ------------------------------------------------------------------------

static bool vec8_ok(int C, const void *a, const void *b, const void *c = nullptr, const void *d = nullptr) {
    return C % 8 == 0 && aligned16(a, b, c, d);
}

void cuda_layernorm_forward(void *out, float *mean, float *rstd, const void *inp, const void *weight,
                            const void *bias, int M, int C, float eps) {
    if (M <= 0) return;
    cudaStream_t st = cuda_ctx()->stream;
    unsigned grid = cuda_blocks(M, ROWS_PER_BLOCK);
    bf16 *o = (bf16 *)out;
    const bf16 *x = (const bf16 *)inp, *w = (const bf16 *)weight, *b = (const bf16 *)bias;
    if (vec8_ok(C, o, x, w, b))
        layernorm_forward_kernel<8><<<grid, 32 * ROWS_PER_BLOCK, 0, st>>>(o, mean, rstd, x, w, b, M, C, eps);
    else
        layernorm_forward_kernel<1><<<grid, 32 * ROWS_PER_BLOCK, 0, st>>>(o, mean, rstd, x, w, b, M, C, eps);
    CUDA_LAUNCH_CHECK();
}

template <typename G>
static void layernorm_backward(void *dinp, G *dweight, G *dbias, const void *dout, const void *inp, const void *weight,
                               const float *mean, const float *rstd, int M, int C) {
    if (M <= 0) return;
    cudaStream_t st = cuda_ctx()->stream;
    const bf16 *dy = (const bf16 *)dout, *x = (const bf16 *)inp, *w = (const bf16 *)weight;
    if (dinp) {
        bf16 *dx = (bf16 *)dinp;
        unsigned grid = cuda_blocks(M, ROWS_PER_BLOCK);
        if (vec8_ok(C, dx, dy, x, w))
            layernorm_backward_dinp_kernel<8><<<grid, 32 * ROWS_PER_BLOCK, 0, st>>>(dx, dy, x, w, mean, rstd, M, C);
        else
            layernorm_backward_dinp_kernel<1><<<grid, 32 * ROWS_PER_BLOCK, 0, st>>>(dx, dy, x, w, mean, rstd, M, C);
        CUDA_LAUNCH_CHECK();
    }
    if (dweight || dbias) colsum<1, G>(dweight, dbias, dy, x, mean, rstd, M, C);
}

void cuda_layernorm_backward(void *dinp, void *dweight, void *dbias, const void *dout, const void *inp,
                             const void *weight, const float *mean, const float *rstd, int M, int C) {
    layernorm_backward<float>(dinp, (float *)dweight, (float *)dbias, dout, inp, weight, mean, rstd, M, C);
}
void cuda_layernorm_backward_bf16g(void *dinp, void *dweight, void *dbias, const void *dout, const void *inp,
                                   const void *weight, const float *mean, const float *rstd, int M, int C) {
    layernorm_backward<bf16>(dinp, (bf16 *)dweight, (bf16 *)dbias, dout, inp, weight, mean, rstd, M, C);
}

void cuda_residual_rmsnorm_forward(void *res, void *out, float *rstd, const void *a, const void *b,
                                   const void *weight, int M, int C, float eps) {
    if (M <= 0) return;
    cudaStream_t st = cuda_ctx()->stream;
    unsigned grid = cuda_blocks(M, ROWS_PER_BLOCK);
    bf16 *r = (bf16 *)res, *o = (bf16 *)out;
    const bf16 *x = (const bf16 *)a, *y = (const bf16 *)b, *w = (const bf16 *)weight;
    if (vec8_ok(C, r, o, w) && aligned16(x, y))
        residual_rmsnorm_forward_kernel<8><<<grid, 32 * ROWS_PER_BLOCK, 0, st>>>(r, o, rstd, x, y, w, M, C, eps);
    else
        residual_rmsnorm_forward_kernel<1><<<grid, 32 * ROWS_PER_BLOCK, 0, st>>>(r, o, rstd, x, y, w, M, C, eps);
    CUDA_LAUNCH_CHECK();
}

void cuda_rmsnorm_forward(void *out, float *rstd, const void *inp, const void *weight, int M, int C, float eps) {
    if (M <= 0) return;
    cudaStream_t st = cuda_ctx()->stream;
    unsigned grid = cuda_blocks(M, ROWS_PER_BLOCK);
    bf16 *o = (bf16 *)out;
    const bf16 *x = (const bf16 *)inp, *w = (const bf16 *)weight;
    if (vec8_ok(C, o, x, w))
        rmsnorm_forward_kernel<8><<<grid, 32 * ROWS_PER_BLOCK, 0, st>>>(o, rstd, x, w, M, C, eps);
    else
        rmsnorm_forward_kernel<1><<<grid, 32 * ROWS_PER_BLOCK, 0, st>>>(o, rstd, x, w, M, C, eps);
    CUDA_LAUNCH_CHECK();
}

template <typename G>
static void rmsnorm_backward(void *dinp, G *dweight, const void *dout, const void *inp, const void *weight,
                             const float *rstd, int M, int C) {
    if (M <= 0) return;
    cudaStream_t st = cuda_ctx()->stream;
    const bf16 *dy = (const bf16 *)dout, *x = (const bf16 *)inp, *w = (const bf16 *)weight;
    if (dinp) {
        bf16 *dx = (bf16 *)dinp;
        unsigned grid = cuda_blocks(M, ROWS_PER_BLOCK);
        if (vec8_ok(C, dx, dy, x, w))
            rmsnorm_backward_dinp_kernel<8><<<grid, 32 * ROWS_PER_BLOCK, 0, st>>>(dx, dy, x, w, rstd, M, C);
        else
            rmsnorm_backward_dinp_kernel<1><<<grid, 32 * ROWS_PER_BLOCK, 0, st>>>(dx, dy, x, w, rstd, M, C);
        CUDA_LAUNCH_CHECK();
    }
    if (dweight) colsum<2, G>(dweight, nullptr, dy, x, nullptr, rstd, M, C);
}

void cuda_rmsnorm_backward(void *dinp, void *dweight, const void *dout, const void *inp, const void *weight,
                           const float *rstd, int M, int C) {
    rmsnorm_backward<float>(dinp, (float *)dweight, dout, inp, weight, rstd, M, C);
}
void cuda_rmsnorm_backward_bf16g(void *dinp, void *dweight, const void *dout, const void *inp, const void *weight,
                                 const float *rstd, int M, int C) {
    rmsnorm_backward<bf16>(dinp, (bf16 *)dweight, dout, inp, weight, rstd, M, C);
}
