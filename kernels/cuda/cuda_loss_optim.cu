// Fused softmax + cross-entropy, the global gradient norm's sum of squares and
// the fused AdamW step.
#include <math.h>
#include <stdlib.h>

#include "kernels/cuda/cuda_internal.cuh"

// ---- cross-entropy ----------------------------------------------------------------------
// Block per row, two passes over the V logits (one read for the statistics,
// one read + one write for the gradient; the minimum for a softmax whose
// normalizer is needed before any gradient can be written).
// Pass 1: every thread keeps a running (max, sum exp(x - max)) over its
// elements, rescaling the sum only when its max grows (about one exp per
// logit), merged across the block. Pass 2 (training) writes
// dlogits = (softmax - onehot) * scale over the logits in place: each element
// is read and written by the same thread, and pass 2 starts after the block
// barrier that ends pass 1, so no thread reads a logit another already overwrote.
// Rows whose start is not 16-byte aligned (V not a multiple of 8) still take
// 16-byte accesses: a scalar head up to the first aligned element, the vector
// body, a scalar tail.
#define CE_THREADS 512

// Merges (m2, s2) into (m, s): s = sum exp(x - m). Two empty states (-inf)
// stay empty instead of producing NaN.
__device__ __forceinline__ void lse_merge(float &m, float &s, float m2, float s2) {
    float mx = fmaxf(m, m2);
    if (mx == -INFINITY) return;
    s = s * expf(m - mx) + s2 * expf(m2 - mx);
    m = mx;
}

// Adds VEC logits to the running (m, s): one exp per logit, one more when
// their max exceeds m. A NaN logit makes s NaN (the loss is then NaN).
template <int VEC>
__device__ __forceinline__ void lse_add(float &m, float &s, const float (&f)[VEC]) {
    float lm = f[0];
#pragma unroll
    for (int k = 1; k < VEC; k++) lm = fmaxf(lm, f[k]);
    if (lm > m) {
        s = m == -INFINITY ? 0.0f : s * expf(m - lm);
        m = lm;
    }
    if (m == -INFINITY) return;  // every logit so far is -inf
#pragma unroll
    for (int k = 0; k < VEC; k++) s += expf(f[k] - m);
}

// dlogits of VEC logits starting at column v.
template <int VEC>
__device__ __forceinline__ void ce_grad(float (&f)[VEC], int v, int t, float lse, float scale) {
#pragma unroll
    for (int k = 0; k < VEC; k++) f[k] = (expf(f[k] - lse) - (v + k == t ? 1.0f : 0.0f)) * scale;
}

// Elements [0, head) and [head + 8 * nvec, V) of a row are scalar, the rest
// 16-byte vectors. head = 0 and nvec = 0 in the all-scalar variant.
struct CeSplit {
    int head, nvec;
};
template <int VEC>
__device__ __forceinline__ CeSplit ce_split(const bf16 *x, int V) {
    CeSplit sp = {0, 0};
    if constexpr (VEC == 8) {
        const int mis = (int)(((uintptr_t)x & 15u) >> 1);  // bf16 elements past a 16-byte boundary
        sp.head = mis ? 8 - mis : 0;
        if (sp.head > V) sp.head = V;
        sp.nvec = (V - sp.head) / 8;
    }
    return sp;
}

template <int VEC>
__global__ void __launch_bounds__(CE_THREADS) cross_entropy_kernel(float *losses, bf16 *dlogits, const bf16 *logits,
                                                                   const int32_t *targets, float scale, int V) {
    __shared__ float s_m[CE_THREADS / 32], s_s[CE_THREADS / 32];
    __shared__ float s_lse;
    const int m = blockIdx.x;
    const int t = targets[m];
    const bf16 *x = logits + (size_t)m * V;
    bf16 *dx = dlogits ? dlogits + (size_t)m * V : nullptr;
    const CeSplit sp = ce_split<VEC>(x, V);
    const int body_end = sp.head + 8 * sp.nvec;
    if (t < 0) {  // ignored row: zero loss and zero gradient
        if (threadIdx.x == 0) losses[m] = 0.0f;
        if (!dx) return;
        for (int v = threadIdx.x; v < sp.head; v += blockDim.x) dx[v] = __float2bfloat16_rn(0.0f);
        for (int i = threadIdx.x; i < sp.nvec; i += blockDim.x)
            *reinterpret_cast<uint4 *>(dx + sp.head + 8 * i) = make_uint4(0u, 0u, 0u, 0u);
        for (int v = body_end + threadIdx.x; v < V; v += blockDim.x) dx[v] = __float2bfloat16_rn(0.0f);
        return;
    }
    // The target's logit, read before anything is overwritten (t < V is
    // checked by the model; an out-of-range target gives a NaN loss).
    const float xt = t < V ? __bfloat162float(x[t]) : NAN;
    float mx = -INFINITY, sum = 0.0f;
    for (int v = threadIdx.x; v < sp.head; v += blockDim.x) {
        const float f[1] = {__bfloat162float(x[v])};
        lse_add<1>(mx, sum, f);
    }
    for (int i = threadIdx.x; i < sp.nvec; i += blockDim.x) {
        float f[8];
        load_bf16<8>(x + sp.head + 8 * i, f);
        lse_add<8>(mx, sum, f);
    }
    for (int v = body_end + threadIdx.x; v < V; v += blockDim.x) {
        const float f[1] = {__bfloat162float(x[v])};
        lse_add<1>(mx, sum, f);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, mx, o), s2 = __shfl_xor_sync(0xffffffffu, sum, o);
        lse_merge(mx, sum, m2, s2);
    }
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (lane == 0) {
        s_m[warp] = mx;
        s_s[warp] = sum;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        float M0 = s_m[0], S0 = s_s[0];
        for (int w = 1; w < (int)(blockDim.x >> 5); w++) lse_merge(M0, S0, s_m[w], s_s[w]);
        const float lse = M0 + logf(S0);
        s_lse = lse;
        losses[m] = lse - xt;
    }
    __syncthreads();
    if (!dx) return;
    const float lse = s_lse;
    for (int v = threadIdx.x; v < sp.head; v += blockDim.x) {
        float f[1] = {__bfloat162float(x[v])};
        ce_grad<1>(f, v, t, lse, scale);
        dx[v] = __float2bfloat16_rn(f[0]);
    }
    for (int i = threadIdx.x; i < sp.nvec; i += blockDim.x) {
        const int v = sp.head + 8 * i;
        float f[8];
        load_bf16<8>(x + v, f);
        ce_grad<8>(f, v, t, lse, scale);
        store_bf16<8>(dx + v, f);
    }
    for (int v = body_end + threadIdx.x; v < V; v += blockDim.x) {
        float f[1] = {__bfloat162float(x[v])};
        ce_grad<1>(f, v, t, lse, scale);
        dx[v] = __float2bfloat16_rn(f[0]);
    }
}

void cuda_cross_entropy(float *losses, void *dlogits, const void *logits, const int32_t *targets, float dloss_scale,
                        int M, int V) {
    if (M <= 0) return;
    cudaStream_t st = cuda_ctx()->stream;
    // Vector accesses need logits and dlogits at the same offset from a
    // 16-byte boundary (always so in place): each row then splits the same way
    // for both (its own head, by where it starts).
    const bool vec = !dlogits || ((((uintptr_t)logits ^ (uintptr_t)dlogits) & 15u) == 0);
    if (vec)
        cross_entropy_kernel<8><<<M, CE_THREADS, 0, st>>>(losses, (bf16 *)dlogits, (const bf16 *)logits, targets,
                                                          dloss_scale, V);
    else
        cross_entropy_kernel<1><<<M, CE_THREADS, 0, st>>>(losses, (bf16 *)dlogits, (const bf16 *)logits, targets,
                                                          dloss_scale, V);
    CUDA_LAUNCH_CHECK();
}

// ---- loss sum ---------------------------------------------------------------------------
// One thread adds the row losses in order in double, as the host loop did
// after reading them back: the same bits, without the read. A few thousand
// rows per micro-batch, a few microseconds.
__global__ void sum_losses_kernel(double *sum, const float *losses, int n) {
    if (threadIdx.x != 0 || blockIdx.x != 0) return;
    double total = 0.0;
    for (int i = 0; i < n; i++) total += losses[i];
    *sum = total;
}

void cuda_sum_losses(double *sum, const float *losses, int n) {
    sum_losses_kernel<<<1, 32, 0, cuda_ctx()->stream>>>(sum, losses, n);
    CUDA_LAUNCH_CHECK();
}

// ---- sum of squares ---------------------------------------------------------------------
// A grid whose size depends only on n (at most SS_BLOCKS blocks), each thread
// summing a fixed strided set of elements in fp64, a fixed-order tree per
// block, then one block adding the partials in order: the same bits on every
// run and every GPU.
#define SS_BLOCKS 1024
#define SS_THREADS 256
#define SS_MIN_PER_THREAD 16

__device__ double block_sum_double(double v) {
    __shared__ double s[SS_THREADS];
    s[threadIdx.x] = v;
    __syncthreads();
    for (int w = SS_THREADS / 2; w > 0; w >>= 1) {
        if ((int)threadIdx.x < w) s[threadIdx.x] += s[threadIdx.x + w];
        __syncthreads();
    }
    return s[0];
}

// G = float, or bf16 for bf16 gradients (each element widened exactly).
template <typename G>
__global__ void __launch_bounds__(SS_THREADS) sum_squares_kernel(double *partial, const G *g, size_t n) {
    double acc = 0.0;
    const size_t stride = (size_t)gridDim.x * SS_THREADS;
    for (size_t i = (size_t)blockIdx.x * SS_THREADS + threadIdx.x; i < n; i += stride) {
        double v = grad_load(&g[i]);
        acc += v * v;
    }
    double total = block_sum_double(acc);
    if (threadIdx.x == 0) partial[blockIdx.x] = total;
}

__global__ void __launch_bounds__(SS_THREADS) sum_partials_kernel(double *out, const double *partial, int count) {
    double acc = 0.0;
    for (int i = threadIdx.x; i < count; i += SS_THREADS) acc += partial[i];
    double total = block_sum_double(acc);
    if (threadIdx.x == 0) *out = total;
}

double cuda_sum_squares(const float *grad, size_t n) {
    if (!n) return 0.0;
    CudaContext *c = cuda_ctx();
    const size_t want = (n + (size_t)SS_THREADS * SS_MIN_PER_THREAD - 1) / ((size_t)SS_THREADS * SS_MIN_PER_THREAD);
    const int blocks = want < SS_BLOCKS ? (int)want : SS_BLOCKS;
    double *partial = (double *)cuda_scratch((SS_BLOCKS + 1) * sizeof(double));
    sum_squares_kernel<float><<<blocks, SS_THREADS, 0, c->stream>>>(partial + 1, grad, n);
    CUDA_LAUNCH_CHECK();
    sum_partials_kernel<<<1, SS_THREADS, 0, c->stream>>>(partial, partial + 1, blocks);
    CUDA_LAUNCH_CHECK();
    double result = 0.0;
    CUDA_CHECK(cudaMemcpyAsync(&result, partial, sizeof result, cudaMemcpyDeviceToHost, c->stream));
    CUDA_CHECK(cudaStreamSynchronize(c->stream));
    return result;
}

// The sum of several buffers' sums of squares with one read back: each
// buffer's two kernels as in cuda_sum_squares write its total to a slot, then
// one thread adds the slots in order from 0.0, as the host loop would.
__global__ void sum_slots_kernel(double *out, const double *slots, int count) {
    if (threadIdx.x != 0) return;
    double total = 0.0;
    for (int i = 0; i < count; i++) total += slots[i];
    *out = total;
}

template <typename G>
static double sum_squares_multi(const G *const *grads, const size_t *n, int count) {
    if (count <= 0) return 0.0;
    CudaContext *c = cuda_ctx();
    // [0] the total, [1, 1 + count) the slots, then the partials of one buffer
    double *buf = (double *)cuda_scratch(((size_t)count + 1 + SS_BLOCKS) * sizeof(double));
    double *slots = buf + 1, *partial = buf + 1 + count;
    for (int k = 0; k < count; k++) {
        if (!n[k]) {
            CUDA_CHECK(cudaMemsetAsync(slots + k, 0, sizeof(double), c->stream));  // +0.0, as sum_squares' 0.0
            continue;
        }
        const size_t per = (size_t)SS_THREADS * SS_MIN_PER_THREAD, want = (n[k] + per - 1) / per;
        const int blocks = want < SS_BLOCKS ? (int)want : SS_BLOCKS;
        sum_squares_kernel<G><<<blocks, SS_THREADS, 0, c->stream>>>(partial, grads[k], n[k]);
        CUDA_LAUNCH_CHECK();
        sum_partials_kernel<<<1, SS_THREADS, 0, c->stream>>>(slots + k, partial, blocks);
        CUDA_LAUNCH_CHECK();
    }
    sum_slots_kernel<<<1, 32, 0, c->stream>>>(buf, slots, count);
    CUDA_LAUNCH_CHECK();
    double result = 0.0;
    CUDA_CHECK(cudaMemcpyAsync(&result, buf, sizeof result, cudaMemcpyDeviceToHost, c->stream));
    CUDA_CHECK(cudaStreamSynchronize(c->stream));
    return result;
}

double cuda_sum_squares_multi(const float *const *grads, const size_t *n, int count) {
    return sum_squares_multi<float>(grads, n, count);
}
double cuda_sum_squares_bf16_multi(const void *const *grads, const size_t *n, int count) {
    return sum_squares_multi<bf16>((const bf16 *const *)grads, n, count);
}

// ---- bf16 gradients into the fp32 accumulator ---------------------------------------------
__global__ void grad_accumulate_kernel(float *acc, bf16 *grad, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    acc[i] += __bfloat162float(grad[i]);
    grad[i] = __float2bfloat16_rn(0.0f);
}

void cuda_grad_accumulate(float *acc, void *grad, size_t n) {
    if (!n) return;
    grad_accumulate_kernel<<<cuda_blocks(n, 256), 256, 0, cuda_ctx()->stream>>>(acc, (bf16 *)grad, n);
    CUDA_LAUNCH_CHECK();
}

// ---- AdamW ------------------------------------------------------------------------------
// The reference's update (kernels/cpu/cpu_optim.c), element by element, on the
// fp32 master weights; the bf16 parameter is written from the new master,
// rounded to nearest even, or stochastically when seed != 0 (unbiased: the
// expected bf16 value equals the fp32 master).

__device__ __forceinline__ uint32_t hash_u32(uint32_t seed, uint64_t i) {
    // splitmix64 finalizer over (seed, index)
    uint64_t z = i * 0x9E3779B97F4A7C15ull + ((uint64_t)seed << 32 | seed);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (uint32_t)z;
}

__device__ __forceinline__ bf16 bf16_stochastic(float f, uint32_t rnd) {
    uint32_t u = __float_as_uint(f);
    if ((u & 0x7f800000u) == 0x7f800000u) return __float2bfloat16_rn(f);  // inf / NaN unchanged
    u += rnd & 0xffffu;  // a carry into the kept bits rounds up with probability = dropped fraction
    return __ushort_as_bfloat16((unsigned short)(u >> 16));
}

// One element of the update: shared by the per-tensor and the multi-tensor
// kernels so that both write the same bits.
// grad holds fp32 elements, or bf16 ones when grad_bf16 (widened exactly:
// the same update as an fp32 gradient of those values).
__device__ __forceinline__ void adamw_element(bf16 *param, float *master, const void *grad, int grad_bf16, float *m,
                                              float *v, size_t i, float beta1, float beta2, float eps,
                                              float grad_scale, float bc2_sqrt, float step_size, float decay,
                                              uint32_t seed) {
    const float gi = grad_bf16 ? grad_load((const bf16 *)grad + i) : ((const float *)grad)[i];
    float g = gi * grad_scale;
    float mi = beta1 * m[i] + (1.0f - beta1) * g;
    float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    float denom = sqrtf(vi) / bc2_sqrt + eps;
    float p = master[i] * decay - step_size * mi / denom;
    master[i] = p;
    param[i] = seed ? bf16_stochastic(p, hash_u32(seed, i)) : __float2bfloat16_rn(p);
}

#define ADAMW_THREADS 256

__global__ void adamw_kernel(bf16 *param, float *master, const float *grad, float *m, float *v, size_t n,
                             float beta1, float beta2, float eps, float grad_scale, float bc2_sqrt,
                             float step_size, float decay, uint32_t seed) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    adamw_element(param, master, grad, 0, m, v, i, beta1, beta2, eps, grad_scale, bc2_sqrt, step_size, decay, seed);
}

// The step's scalars exactly as the reference computes them, on the host; one
// function for both paths so the host compiler cannot contract them differently.
struct AdamwScalars {
    float bc2_sqrt, step_size, decay;
};
static AdamwScalars adamw_scalars(float lr, float beta1, float beta2, float weight_decay, int step) {
    const float bc1 = 1.0f - powf(beta1, (float)step);
    AdamwScalars k;
    k.bc2_sqrt = sqrtf(1.0f - powf(beta2, (float)step));
    k.step_size = lr / bc1;
    k.decay = 1.0f - lr * weight_decay;
    return k;
}

void cuda_adamw_update(void *param, float *master, const float *grad, float *m, float *v, size_t n, float lr,
                       float beta1, float beta2, float eps, float weight_decay, float grad_scale, int step,
                       uint32_t seed) {
    if (!n) return;
    CUDA_REQUIRE(master, "adamw_update on CUDA needs fp32 master weights (the parameters are bf16)");
    const AdamwScalars k = adamw_scalars(lr, beta1, beta2, weight_decay, step);
    adamw_kernel<<<cuda_blocks(n, ADAMW_THREADS), ADAMW_THREADS, 0, cuda_ctx()->stream>>>(
        (bf16 *)param, master, grad, m, v, n, beta1, beta2, eps, grad_scale, k.bc2_sqrt, k.step_size, k.decay, seed);
    CUDA_LAUNCH_CHECK();
}

// ---- multi-tensor AdamW -----------------------------------------------------------------
// One launch over every tensor of the step. The host writes a table (device
// memory, uploaded once per step, a few KB): per tensor its pointers, length,
// seed, group and first block; per group (projector / LLM x decay / no decay)
// step_size and decay. Block b finds its tensor by binary search over the first
// blocks and updates element (b - block0) * 256 + thread of it: the element,
// index (the stochastic-rounding hash) and scalars of the per-tensor launch.
struct AdamwEntry {
    bf16 *param;
    float *master;
    const void *grad;  // fp32, or bf16 when grad_bf16
    float *m, *v;
    size_t n;
    unsigned block0;  // first block of this tensor in the grid
    int group;
    uint32_t seed;
    int grad_bf16;
};
struct AdamwGroupScalars {
    float step_size, decay;
};

__global__ void __launch_bounds__(ADAMW_THREADS)
    adamw_multi_kernel(const AdamwEntry *table, int count, const AdamwGroupScalars *groups, float beta1, float beta2,
                       float eps, float grad_scale, float bc2_sqrt) {
    int lo = 0, hi = count - 1;
    while (lo < hi) {  // the last tensor whose first block is <= this block
        int mid = (lo + hi + 1) >> 1;
        if (table[mid].block0 <= blockIdx.x)
            lo = mid;
        else
            hi = mid - 1;
    }
    const AdamwEntry &t = table[lo];
    size_t i = (size_t)(blockIdx.x - t.block0) * ADAMW_THREADS + threadIdx.x;
    if (i >= t.n) return;
    const AdamwGroupScalars g = groups[t.group];
    adamw_element(t.param, t.master, t.grad, t.grad_bf16, t.m, t.v, i, beta1, beta2, eps, grad_scale, bc2_sqrt,
                  g.step_size, g.decay, t.seed);
}

void cuda_adamw_update_multi(const AdamwTensor *tensors, int count, const AdamwGroup *groups, int n_groups,
                             float beta1, float beta2, float eps, float grad_scale, int step) {
    if (count <= 0) return;
    CUDA_REQUIRE(n_groups > 0, "adamw_update_multi needs at least one parameter group");
    const size_t table_bytes = (size_t)count * sizeof(AdamwEntry);
    const size_t bytes = table_bytes + (size_t)n_groups * sizeof(AdamwGroupScalars);
    unsigned char *host = (unsigned char *)malloc(bytes);
    CUDA_REQUIRE(host, "adamw_update_multi: out of host memory for a %zu-byte table", bytes);
    AdamwEntry *e = (AdamwEntry *)host;
    AdamwGroupScalars *gs = (AdamwGroupScalars *)(host + table_bytes);
    for (int g = 0; g < n_groups; g++) {
        const AdamwScalars k = adamw_scalars(groups[g].lr, beta1, beta2, groups[g].weight_decay, step);
        gs[g].step_size = k.step_size;
        gs[g].decay = k.decay;
    }
    size_t blocks = 0;
    int used = 0;
    for (int i = 0; i < count; i++) {
        const AdamwTensor *t = &tensors[i];
        if (!t->n) continue;  // as the per-tensor op: nothing to do
        CUDA_REQUIRE(t->master, "adamw_update_multi on CUDA needs fp32 master weights (tensor %d)", i);
        CUDA_REQUIRE(t->group >= 0 && t->group < n_groups, "adamw_update_multi: tensor %d has group %d of %d", i,
                     t->group, n_groups);
        AdamwEntry *d = &e[used++];
        d->param = (bf16 *)t->param;
        d->master = t->master;
        d->grad = t->grad;
        d->m = t->m;
        d->v = t->v;
        d->n = t->n;
        d->block0 = (unsigned)blocks;
        d->group = t->group;
        d->seed = t->seed;
        d->grad_bf16 = t->grad_bf16;
        blocks += cuda_blocks(t->n, ADAMW_THREADS);
        CUDA_REQUIRE(blocks <= 0x7fffffffu, "adamw_update_multi: %zu blocks exceed the grid limit", blocks);
    }
    if (used) {
        // The table goes in the scratch buffer (stream order: no op before
        // this one still reads it). The copy is from pageable memory, staged
        // by the driver before it returns, so the host buffer can go at once;
        // the table is moved to the front when tensors were skipped.
        unsigned char *dev = (unsigned char *)cuda_scratch(bytes);
        cudaStream_t st = cuda_ctx()->stream;
        const size_t used_bytes = (size_t)used * sizeof(AdamwEntry);
        CUDA_CHECK(cudaMemcpyAsync(dev, host, used_bytes, cudaMemcpyHostToDevice, st));
        CUDA_CHECK(cudaMemcpyAsync(dev + table_bytes, gs, (size_t)n_groups * sizeof(AdamwGroupScalars),
                                   cudaMemcpyHostToDevice, st));
        const float bc2_sqrt = adamw_scalars(0.0f, beta1, beta2, 0.0f, step).bc2_sqrt;
        adamw_multi_kernel<<<(unsigned)blocks, ADAMW_THREADS, 0, st>>>(
            (const AdamwEntry *)dev, used, (const AdamwGroupScalars *)(dev + table_bytes), beta1, beta2, eps,
            grad_scale, bc2_sqrt);
        CUDA_LAUNCH_CHECK();
    }
    free(host);
}
