// Attention for any head size (and the fallback when buffers are not 16-byte
// aligned): plain CUDA, one warp per query row (forward, dQ) or per key row
// (dK, dV), fp32 throughout, scores or probabilities of one row kept in
// shared memory. Exact softmax like the CPU op; correct rather than fast (the
// tiny test models and unusual head sizes use it, the real models the flash path).
#include <math.h>

#include "kernels/cuda/cuda_internal.cuh"

#define REF_MAX_WARPS 4  // rows per block, fewer when a row's buffers are large

// Each warp keeps arrays_T floats per key (or query) and arrays_HS per head
// dimension in shared memory. Picks the warps per block that fit the card and
// raises the kernel's limit; a sequence too long for even one warp is fatal.
typedef struct {
    int warps;
    size_t smem;
} RefLaunch;

static RefLaunch ref_prepare(const void *kernel, int T, int HS, int arrays_T, int arrays_HS) {
    CudaContext *c = cuda_ctx();
    const size_t per_warp = ((size_t)arrays_T * T + (size_t)arrays_HS * HS) * sizeof(float);
    RefLaunch l;
    l.warps = REF_MAX_WARPS;
    while (l.warps > 1 && l.warps * per_warp > c->smem_optin) l.warps--;
    l.smem = l.warps * per_warp;
    CUDA_REQUIRE(l.smem <= c->smem_optin,
                 "attention (generic path, head size %d): sequence length %d needs %zu bytes of shared memory, the "
                 "GPU allows %zu",
                 HS, T, l.smem, c->smem_optin);
    if (l.smem > 48 * 1024)
        CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)l.smem));
    return l;
}

// dot(a[0..HS), b[0..HS)) with a in shared fp32 and b in global bf16
__device__ __forceinline__ float dot_sg(const float *a, const bf16 *b, int HS) {
    float s = 0.0f;
    for (int d = 0; d < HS; d++) s += a[d] * __bfloat162float(b[d]);
    return s;
}

// grid (ceil(T / warps), NH, B); warp per query row i.
__global__ void ref_fwd_kernel(bf16 *out, float *lse, const bf16 *qkv, const int32_t *seg, int T, int NH, int NKV,
                               int HS, int causal, float scale) {
    LLAVA_DYNAMIC_SMEM(float, ref_smem_f);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int i = blockIdx.x * (blockDim.x >> 5) + warp, h = blockIdx.y, b = blockIdx.z;
    float *sc = ref_smem_f + (size_t)warp * (T + HS);  // scores [T], then q [HS]
    float *q = sc + T;
    if (i >= T) return;
    const size_t ld = (size_t)(NH + 2 * NKV) * HS;
    const int kvh = h / (NH / NKV);
    const bf16 *base = qkv + (size_t)b * T * ld;
    const int32_t *segb = seg ? seg + (size_t)b * T : nullptr;
    for (int d = lane; d < HS; d += 32) q[d] = __bfloat162float(base[(size_t)i * ld + (size_t)h * HS + d]);
    __syncwarp();
    float mx = -INFINITY;
    for (int j = lane; j < T; j += 32) {
        float s = -INFINITY;
        if (attn_visible(segb, causal, i, j)) s = dot_sg(q, base + (size_t)j * ld + (size_t)(NH + kvh) * HS, HS) * scale;
        sc[j] = s;
        mx = fmaxf(mx, s);
    }
    mx = warp_max(mx);
    bf16 *o = out + ((size_t)b * T + i) * NH * HS + (size_t)h * HS;
    if (mx == -INFINITY) {  // no visible key
        for (int d = lane; d < HS; d += 32) o[d] = __float2bfloat16_rn(0.0f);
        if (lane == 0) lse[((size_t)b * NH + h) * T + i] = -INFINITY;
        return;
    }
    float sum = 0.0f;
    for (int j = lane; j < T; j += 32) {
        float p = sc[j] == -INFINITY ? 0.0f : expf(sc[j] - mx);
        sc[j] = p;
        sum += p;
    }
    sum = warp_sum(sum);
    __syncwarp();
    const float inv = 1.0f / sum;
    const bf16 *vb = base + (size_t)(NH + NKV + kvh) * HS;
    for (int d = lane; d < HS; d += 32) {
        float acc = 0.0f;
        for (int j = 0; j < T; j++)
            if (sc[j] != 0.0f) acc += sc[j] * __bfloat162float(vb[(size_t)j * ld + d]);
        o[d] = __float2bfloat16_rn(acc * inv);
    }
    if (lane == 0) lse[((size_t)b * NH + h) * T + i] = mx + logf(sum);
}

// grid (ceil(T / warps), NH, B); warp per query row: dq = sum_j dS_ij k_j.
__global__ void ref_bwd_dq_kernel(bf16 *dqkv, const bf16 *dout, const bf16 *qkv, const float *lse, const float *Dsum,
                                  const int32_t *seg, int T, int NH, int NKV, int HS, int causal, float scale) {
    LLAVA_DYNAMIC_SMEM(float, ref_smem_f);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int i = blockIdx.x * (blockDim.x >> 5) + warp, h = blockIdx.y, b = blockIdx.z;
    float *ds = ref_smem_f + (size_t)warp * (T + 2 * HS);  // dS [T], q [HS], dO [HS]
    float *q = ds + T, *dO = q + HS;
    if (i >= T) return;
    const size_t ld = (size_t)(NH + 2 * NKV) * HS;
    const int kvh = h / (NH / NKV);
    const bf16 *base = qkv + (size_t)b * T * ld;
    const int32_t *segb = seg ? seg + (size_t)b * T : nullptr;
    const size_t bh = ((size_t)b * NH + h) * T;
    const float l = lse[bh + i], D = Dsum[bh + i];
    for (int d = lane; d < HS; d += 32) {
        q[d] = __bfloat162float(base[(size_t)i * ld + (size_t)h * HS + d]);
        dO[d] = __bfloat162float(dout[((size_t)b * T + i) * NH * HS + (size_t)h * HS + d]);
    }
    __syncwarp();
    for (int j = lane; j < T; j += 32) {
        float v = 0.0f;
        if (l != -INFINITY && attn_visible(segb, causal, i, j)) {
            const size_t kr = (size_t)j * ld;
            float p = expf(dot_sg(q, base + kr + (size_t)(NH + kvh) * HS, HS) * scale - l);
            float dp = dot_sg(dO, base + kr + (size_t)(NH + NKV + kvh) * HS, HS);
            v = p * (dp - D) * scale;
        }
        ds[j] = v;
    }
    __syncwarp();
    const bf16 *kb = base + (size_t)(NH + kvh) * HS;
    bf16 *dq = dqkv + ((size_t)b * T + i) * ld + (size_t)h * HS;
    for (int d = lane; d < HS; d += 32) {
        float acc = 0.0f;
        for (int j = 0; j < T; j++)
            if (ds[j] != 0.0f) acc += ds[j] * __bfloat162float(kb[(size_t)j * ld + d]);
        dq[d] = __float2bfloat16_rn(acc);
    }
}

// grid (ceil(T / warps), NKV, B); warp per key row j, over the query heads
// of its group in order: dk = sum_i dS_ij q_i, dv = sum_i P_ij dO_i.
__global__ void ref_bwd_dkdv_kernel(bf16 *dqkv, const bf16 *dout, const bf16 *qkv, const float *lse,
                                    const float *Dsum, const int32_t *seg, int T, int NH, int NKV, int HS, int causal,
                                    float scale) {
    LLAVA_DYNAMIC_SMEM(float, ref_smem_f);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int j = blockIdx.x * (blockDim.x >> 5) + warp, kvh = blockIdx.y, b = blockIdx.z;
    // P [T], dS [T], k [HS], v [HS], dk [HS], dv [HS]
    float *P = ref_smem_f + (size_t)warp * (2 * T + 4 * HS);
    float *dS = P + T, *k = dS + T, *v = k + HS, *dk = v + HS, *dv = dk + HS;
    if (j >= T) return;
    const size_t ld = (size_t)(NH + 2 * NKV) * HS, ldo = (size_t)NH * HS;
    const int group = NH / NKV;
    const bf16 *base = qkv + (size_t)b * T * ld;
    const bf16 *dob = dout + (size_t)b * T * ldo;
    const int32_t *segb = seg ? seg + (size_t)b * T : nullptr;
    for (int d = lane; d < HS; d += 32) {
        k[d] = __bfloat162float(base[(size_t)j * ld + (size_t)(NH + kvh) * HS + d]);
        v[d] = __bfloat162float(base[(size_t)j * ld + (size_t)(NH + NKV + kvh) * HS + d]);
        dk[d] = 0.0f;
        dv[d] = 0.0f;
    }
    __syncwarp();
    for (int h = kvh * group; h < (kvh + 1) * group; h++) {
        const size_t bh = ((size_t)b * NH + h) * T;
        for (int i = lane; i < T; i += 32) {
            float p = 0.0f, g = 0.0f;
            const float l = lse[bh + i];
            if (l != -INFINITY && attn_visible(segb, causal, i, j)) {
                p = expf(dot_sg(k, base + (size_t)i * ld + (size_t)h * HS, HS) * scale - l);
                float dp = dot_sg(v, dob + (size_t)i * ldo + (size_t)h * HS, HS);
                g = p * (dp - Dsum[bh + i]) * scale;
            }
            P[i] = p;
            dS[i] = g;
        }
        __syncwarp();
        for (int d = lane; d < HS; d += 32) {
            float ak = 0.0f, av = 0.0f;
            for (int i = 0; i < T; i++) {
                if (P[i] == 0.0f && dS[i] == 0.0f) continue;
                ak += dS[i] * __bfloat162float(base[(size_t)i * ld + (size_t)h * HS + d]);
                av += P[i] * __bfloat162float(dob[(size_t)i * ldo + (size_t)h * HS + d]);
            }
            dk[d] += ak;
            dv[d] += av;
        }
        __syncwarp();  // P and dS are rewritten for the next head
    }
    bf16 *row = dqkv + ((size_t)b * T + j) * ld;
    for (int d = lane; d < HS; d += 32) {
        row[(size_t)(NH + kvh) * HS + d] = __float2bfloat16_rn(dk[d]);
        row[(size_t)(NH + NKV + kvh) * HS + d] = __float2bfloat16_rn(dv[d]);
    }
}

// D[b, h, i] = sum_d dout * out over head h of row (b, i); warp per (row, head).
__global__ void rowdot_kernel(float *D, const bf16 *dout, const bf16 *out, int B, int T, int NH, int HS) {
    const size_t w = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    if (w >= (size_t)B * T * NH) return;
    const int h = (int)(w % NH);
    const size_t m = w / NH;  // row b * T + i
    const bf16 *a = dout + m * NH * HS + (size_t)h * HS, *o = out + m * NH * HS + (size_t)h * HS;
    float s = 0.0f;
    for (int d = lane; d < HS; d += 32) s += __bfloat162float(a[d]) * __bfloat162float(o[d]);
    s = warp_sum(s);
    if (lane == 0) {
        const size_t b = m / T, i = m % T;
        D[(b * NH + h) * T + i] = s;
    }
}

void cuda_attention_rowdot(float *D, const bf16 *dout, const bf16 *out, const AttnShape *s) {
    const size_t warps = (size_t)s->B * s->T * s->NH;
    rowdot_kernel<<<cuda_blocks(warps * 32, 256), 256, 0, cuda_ctx()->stream>>>(D, dout, out, s->B, s->T, s->NH,
                                                                                 s->HS);
    CUDA_LAUNCH_CHECK();
}

void cuda_attention_ref_forward(bf16 *out, float *lse, const bf16 *qkv, const AttnShape *s) {
    const RefLaunch l = ref_prepare((const void *)ref_fwd_kernel, s->T, s->HS, 1, 1);
    dim3 grid(cuda_blocks(s->T, l.warps), s->NH, s->B);
    ref_fwd_kernel<<<grid, 32 * l.warps, l.smem, cuda_ctx()->stream>>>(out, lse, qkv, s->seg, s->T, s->NH, s->NKV,
                                                                       s->HS, s->causal, 1.0f / sqrtf((float)s->HS));
    CUDA_LAUNCH_CHECK();
}

void cuda_attention_ref_backward(bf16 *dqkv, const bf16 *dout, const bf16 *qkv, const float *lse, const float *D,
                                 const AttnShape *s) {
    const float scale = 1.0f / sqrtf((float)s->HS);
    cudaStream_t st = cuda_ctx()->stream;
    const RefLaunch lq = ref_prepare((const void *)ref_bwd_dq_kernel, s->T, s->HS, 1, 2);
    const RefLaunch lkv = ref_prepare((const void *)ref_bwd_dkdv_kernel, s->T, s->HS, 2, 4);
    dim3 grid_q(cuda_blocks(s->T, lq.warps), s->NH, s->B), grid_kv(cuda_blocks(s->T, lkv.warps), s->NKV, s->B);
    ref_bwd_dq_kernel<<<grid_q, 32 * lq.warps, lq.smem, st>>>(dqkv, dout, qkv, lse, D, s->seg, s->T, s->NH, s->NKV,
                                                              s->HS, s->causal, scale);
    CUDA_LAUNCH_CHECK();
    ref_bwd_dkdv_kernel<<<grid_kv, 32 * lkv.warps, lkv.smem, st>>>(dqkv, dout, qkv, lse, D, s->seg, s->T, s->NH,
                                                                   s->NKV, s->HS, s->causal, scale);
    CUDA_LAUNCH_CHECK();
}
