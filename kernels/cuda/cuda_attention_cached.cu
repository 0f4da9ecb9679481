// Generation ops: the KV-cache write and attention of new query rows over the
// cache (kernels/ops.h). Decoding reads the whole cache for one query row per
// head, so the work is split over the keys (chunks of CACHE_CHUNK positions,
// each block one chunk of one (sequence, row, head)), and a second kernel
// merges the chunks' partial softmax states in chunk order: deterministic,
// no atomics, and only rows 0..p of a sequence's cache are ever read.
#include <math.h>

#include "kernels/cuda/cuda_internal.cuh"

#define CACHE_CHUNK 256    // keys per block
#define CACHE_THREADS 128  // 4 warps

// k_cache[slots[m]] = k heads of qkv row m, v_cache likewise; block per row.
template <int VEC>
__global__ void kv_cache_write_kernel(bf16 *k_cache, bf16 *v_cache, const bf16 *qkv, const int32_t *slots, int NH,
                                      int NKV, int HS) {
    const int m = blockIdx.x;
    const int slot = slots[m];
    if (slot < 0) return;
    const size_t KV = (size_t)NKV * HS;
    const bf16 *src = qkv + (size_t)m * (NH + 2 * NKV) * HS + (size_t)NH * HS;
    for (size_t c = threadIdx.x * VEC; c < KV; c += blockDim.x * VEC) {
        float k[VEC], v[VEC];
        load_bf16<VEC>(src + c, k);
        load_bf16<VEC>(src + KV + c, v);
        store_bf16<VEC>(k_cache + (size_t)slot * KV + c, k);
        store_bf16<VEC>(v_cache + (size_t)slot * KV + c, v);
    }
}

void cuda_kv_cache_write(void *k_cache, void *v_cache, const void *qkv, const int32_t *slots, int M, int NH, int NKV,
                         int HS) {
    if (M <= 0) return;
    cudaStream_t st = cuda_ctx()->stream;
    if (HS % 8 == 0 && aligned16(k_cache, v_cache, qkv))
        kv_cache_write_kernel<8><<<M, 64, 0, st>>>((bf16 *)k_cache, (bf16 *)v_cache, (const bf16 *)qkv, slots, NH,
                                                   NKV, HS);
    else
        kv_cache_write_kernel<1><<<M, 64, 0, st>>>((bf16 *)k_cache, (bf16 *)v_cache, (const bf16 *)qkv, slots, NH,
                                                   NKV, HS);
    CUDA_LAUNCH_CHECK();
}

// Block-wide max / sum over CACHE_THREADS threads (fixed order).
__device__ float block_reduce(float v, bool is_max, float *red) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    v = is_max ? warp_max(v) : warp_sum(v);
    __syncthreads();  // red may still be read by a previous call
    if (lane == 0) red[warp] = v;
    __syncthreads();
    float r = red[0];
    for (int w = 1; w < CACHE_THREADS / 32; w++) r = is_max ? fmaxf(r, red[w]) : r + red[w];
    return r;
}

// Partial state of chunk c for (sequence b, new row t, head h): the chunk's
// max score m, l = sum exp(s - m) and o = sum exp(s - m) v (fp32, unnormalized).
// grid (B * Tq, NH, chunks). An invalid lens[b] makes the state NaN (the CPU
// op stops there; a device cannot, so the output says it).
__global__ void __launch_bounds__(CACHE_THREADS)
    cached_partial_kernel(float *part_m, float *part_l, float *part_o, const bf16 *qkv, const bf16 *k_cache,
                          const bf16 *v_cache, const int32_t *lens, int Tq, int Tcap, int NH, int NKV, int HS,
                          float scale) {
    LLAVA_DYNAMIC_SMEM(float, cache_smem);  // q [HS], scores [CACHE_CHUNK]
    __shared__ float red[CACHE_THREADS / 32];
    float *q = cache_smem, *s = cache_smem + HS;
    const int z = blockIdx.x, h = blockIdx.y, chunk = blockIdx.z;
    const int b = z / Tq, t = z % Tq, chunks = gridDim.z;
    const size_t idx = ((size_t)z * NH + h) * chunks + chunk;
    const int len = lens[b];
    if (len < Tq || len > Tcap) {
        if (threadIdx.x == 0) part_m[idx] = part_l[idx] = NAN;
        return;
    }
    const int n_keys = len - Tq + t + 1;  // positions 0..p
    const int j0 = chunk * CACHE_CHUNK, j1 = min(n_keys, j0 + CACHE_CHUNK);
    if (j0 >= j1) {  // nothing of this chunk is visible
        if (threadIdx.x == 0) {
            part_m[idx] = -INFINITY;
            part_l[idx] = 0.0f;
        }
        return;
    }
    const size_t KV = (size_t)NKV * HS;
    const int kvh = h / (NH / NKV);
    const bf16 *qrow = qkv + (size_t)z * (NH + 2 * NKV) * HS + (size_t)h * HS;
    const bf16 *kb = k_cache + (size_t)b * Tcap * KV + (size_t)kvh * HS;
    const bf16 *vb = v_cache + (size_t)b * Tcap * KV + (size_t)kvh * HS;
    for (int d = threadIdx.x; d < HS; d += CACHE_THREADS) q[d] = __bfloat162float(qrow[d]);
    __syncthreads();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    for (int j = j0 + warp; j < j1; j += CACHE_THREADS / 32) {  // warp per key, lanes over d
        const bf16 *k = kb + (size_t)j * KV;
        float dot = 0.0f;
        for (int d = lane; d < HS; d += 32) dot += q[d] * __bfloat162float(k[d]);
        dot = warp_sum(dot);
        if (lane == 0) s[j - j0] = dot * scale;
    }
    __syncthreads();
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < j1 - j0; j += CACHE_THREADS) mx = fmaxf(mx, s[j]);
    mx = block_reduce(mx, true, red);
    float l = 0.0f;
    for (int j = threadIdx.x; j < j1 - j0; j += CACHE_THREADS) {
        float p = expf(s[j] - mx);
        s[j] = p;
        l += p;
    }
    l = block_reduce(l, false, red);  // its barriers also publish s[]
    for (int d = threadIdx.x; d < HS; d += CACHE_THREADS) {
        float acc = 0.0f;
        for (int j = j0; j < j1; j++) acc += s[j - j0] * __bfloat162float(vb[(size_t)j * KV + d]);
        part_o[idx * HS + d] = acc;
    }
    if (threadIdx.x == 0) {
        part_m[idx] = mx;
        part_l[idx] = l;
    }
}

// out row z = (b, t), head h = the chunks' states merged in chunk order; grid (B * Tq, NH).
__global__ void cached_combine_kernel(bf16 *out, const float *part_m, const float *part_l, const float *part_o,
                                      int chunks, int NH, int HS) {
    const int z = blockIdx.x, h = blockIdx.y;
    const size_t base = ((size_t)z * NH + h) * chunks;
    float M = -INFINITY;
    bool bad = false;
    for (int c = 0; c < chunks; c++) {
        const float m = part_m[base + c];
        if (isnan(m)) bad = true;
        if (part_l[base + c] > 0.0f) M = fmaxf(M, m);
    }
    float L = 0.0f;
    for (int c = 0; c < chunks; c++)
        if (part_l[base + c] > 0.0f) L += part_l[base + c] * expf(part_m[base + c] - M);
    const float inv = bad ? NAN : 1.0f / L;
    bf16 *o = out + (size_t)z * NH * HS + (size_t)h * HS;
    for (int d = threadIdx.x; d < HS; d += blockDim.x) {
        float acc = 0.0f;
        for (int c = 0; c < chunks; c++)
            if (part_l[base + c] > 0.0f) acc += part_o[(base + c) * HS + d] * expf(part_m[base + c] - M);
        o[d] = __float2bfloat16_rn(acc * inv);
    }
}

void cuda_attention_cached(void *out, const void *qkv, const void *k_cache, const void *v_cache, const int32_t *lens,
                           int B, int Tq, int Tcap, int NH, int NKV, int HS) {
    CUDA_REQUIRE(B >= 0 && Tq > 0 && Tcap > 0 && NH > 0 && NKV > 0 && NH % NKV == 0 && HS > 0,
                 "attention_cached: bad shape B=%d Tq=%d Tcap=%d NH=%d NKV=%d HS=%d", B, Tq, Tcap, NH, NKV, HS);
    if (B == 0) return;
    cudaStream_t st = cuda_ctx()->stream;
    const int chunks = (Tcap + CACHE_CHUNK - 1) / CACHE_CHUNK;
    const size_t states = (size_t)B * Tq * NH * chunks;
    float *part_m = (float *)cuda_scratch(states * (2 + (size_t)HS) * sizeof(float));
    float *part_l = part_m + states, *part_o = part_l + states;
    const size_t smem = ((size_t)HS + CACHE_CHUNK) * sizeof(float);
    CUDA_REQUIRE(smem <= 48 * 1024, "attention_cached: head size %d too large", HS);
    CUDA_REQUIRE(chunks <= 65535, "attention_cached: cache of %d positions is too long", Tcap);
    dim3 grid(B * Tq, NH, chunks);
    cached_partial_kernel<<<grid, CACHE_THREADS, smem, st>>>(part_m, part_l, part_o, (const bf16 *)qkv,
                                                             (const bf16 *)k_cache, (const bf16 *)v_cache, lens, Tq,
                                                             Tcap, NH, NKV, HS, 1.0f / sqrtf((float)HS));
    CUDA_LAUNCH_CHECK();
    cached_combine_kernel<<<dim3(B * Tq, NH), 128, 0, st>>>((bf16 *)out, part_m, part_l, part_o, chunks, NH, HS);
    CUDA_LAUNCH_CHECK();
}
