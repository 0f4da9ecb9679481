// Attention: the op-table entry points and the flash-attention kernels for
// head sizes 64 and 128 (the hand-written fast path; other head sizes and
// unaligned buffers go to cuda_attention_ref.cu).
//
// Flash attention (the FlashAttention-2 schedule) on bf16 tensor cores
// through mma.sync m16n8k16 with fp32 accumulation, ldmatrix from shared
// memory and cp.async double buffering. It runs on sm_80 and sm_90 alike.
// Every warp owns 16 rows (queries, or keys in dK/dV) of the tile its block
// computes; a block of W warps covers 16 W rows. Two configurations:
//
//   kernel      | "64-row" (HS 64; HS 128 when chosen)    | "128-row" (HS 128)
//   forward     | 4 warps, 64 queries x 64-key tiles,     | 8 warps, 128 queries x 64-key tiles,
//               | Q read from smem by ldmatrix per tile   | Q fragments in registers for all tiles
//   dK/dV       | 4 warps, 64 keys x query tiles of 64    | 8 warps, 128 keys x query tiles of 32
//               | (HS 64) or 32 (HS 128)                  |
//   dQ          | 4 warps, 64 queries x 64-key tiles      | 8 warps, 128 queries x 64-key tiles
//
// Why these sizes. A block re-reads the other operand once per 16 W of its
// own rows, so doubling the rows a block owns halves the K/V traffic of the
// forward and dQ (and the Q/dO traffic of dK/dV) per FLOP; at HS 128 the
// 64-row kernels read K and V T/64 times per head. What bounds the rows per
// warp is registers: at HS 128 one warp's 16 x 128 fp32 accumulator is 64
// registers per thread (dK and dV: 128), S or dP of a 16 x 64 tile 32, Q's
// 16 x 128 bf16 A fragments 32. So a warp keeps 16 rows and the block gets
// more warps instead. ptxas (sm_90, CUDA 13, -O3, 2026-12-01; registers per
// thread, no spills, no stack in any of them; sm_80 in docs/cuda.md):
//   64-row:  forward 167 / 128 (HS 128 / 64), dK/dV 252 / 168, dQ 178 / 128;
//   128-row: forward 217, dK/dV 252, dQ 217.
// Both run one 8-warp "slot" per SM at HS 128 (65536 registers / SM): the
// 64-row kernels as two 4-warp blocks, the 128-row ones as one 8-warp block,
// so occupancy is the same and what differs is traffic (half the K/V tile
// fills and, in the forward, no Q ldmatrix per tile): unmeasured until a GPU
// runs tests/gpu's bench, which times both.
// The forward keeps Q in registers because it reads it against every K tile
// (T / 64 ldmatrix passes of Q in the 64-row kernel, one here); dK/dV keeps
// its query tile at 32 rows because dK + dV already take 128 registers
// (252 in all: 64-row query tiles would spill). Shared memory per
// block, rows padded by FA_PAD (16 bytes) so ldmatrix has no bank conflicts:
//   64-row:  forward 85 / 45 KiB, dK/dV 68 / 54 KiB, dQ 102 / 54 KiB;
//   128-row: forward 68 KiB (Q is staged in the second K/V buffer and read
//            into registers before that buffer is first refilled), dK/dV
//            102 KiB (K, V: 128 rows; Q, dO: 2 x 32 rows), dQ 136 KiB (Q,
//            dO: 128 rows; K, V: 2 x 64 rows).
// The 128-row kernels need 136 KiB of opt-in shared memory (sm_80, sm_90);
// with less (sm_86/89: 99 KiB) the 64-row kernels run where they fit, else
// the generic path. Each kernel takes its 128-row form when its grid has a
// block per SM (flash_tiles below); LLAVA_FLASH_TILES=0 / 2 (or
// backend_cuda_set_flash_tiles) selects the 64-row / 128-row kernels at
// HS 128 always, for comparison and as a fallback.
//
//   forward:  block = 16 W query rows of one head; loops over 64-key tiles
//             with an online softmax; writes out and lse (natural log).
//   backward: no float atomics (the op table promises bitwise determinism),
//             so it runs as two kernels that each own what they write:
//             dK/dV: block = 16 W keys of one kv head, looping over every
//                    query head of its group and every query tile;
//             dQ:    block = 16 W query rows of one head, looping over key tiles.
//             S and dP are computed in both (7 tile matmuls instead of 5).
// Masking: causal, padding keys and packed documents through segment ids, by
// the same rule as the CPU op (attn_visible), evaluated only on the tiles that
// need it (segments or padding present, the diagonal, the edge of T), forward
// and backward (tested per warp in the forward and the 8-warp dK/dV and dQ,
// per block in the 4-warp backward); the other tiles take every pair as is. A warp whose 16
// rows all come before a causal tile (or, in the 8-warp dK/dV, whose keys all
// come after a query tile) skips that tile's work: it would add exact zeros. A row with
// no visible key keeps l = 0: out = 0 and lse = -inf; backward treats
// lse = -inf as P = 0.
//
// Fragment layouts of mma.m16n8k16 (g = lane / 4, t = lane % 4):
//   A (16x16, row): a0 = (g, 2t..2t+1), a1 = (g+8, 2t..), a2 = (g, 2t+8..), a3 = (g+8, 2t+8..)
//   B (16x8, col):  b0 = (k 2t..2t+1, n g), b1 = (k 2t+8.., n g)
//   C (16x8):       c0,c1 = (g, 2t..2t+1), c2,c3 = (g+8, 2t..2t+1)
// so the C tiles of a 16x16 block of S are, packed to bf16, the A fragment
// of P for the next matmul, without a trip through shared memory.
#include <math.h>

#include "kernels/cuda/cuda_internal.cuh"
#include "kernels/cuda/cuda_ptx.cuh"

#define FA_PAD 8  // bf16 elements of padding per smem row: ldmatrix without bank conflicts
#define LOG2E 1.4426950408889634f

// ---- tile helpers -----------------------------------------------------------------------

// smem[ROWS][HS + FA_PAD] = rows r0.. of a head slice g[row * ld + 0..HS);
// rows at or past T are zero-filled (so 0 * garbage never makes a NaN).
// THREADS = the block's threads, which share the copies.
template <int HS, int ROWS, int THREADS>
__device__ __forceinline__ void load_tile(bf16 *smem, const bf16 *g, size_t ld, int r0, int T) {
    constexpr int CH = HS / 8;
    for (int idx = threadIdx.x; idx < ROWS * CH; idx += THREADS) {
        const int r = idx / CH, ch = idx % CH;
        const int gr = r0 + r;
        const bool ok = gr < T;
        cp_async16(smem + r * (HS + FA_PAD) + ch * 8, g + (size_t)(ok ? gr : 0) * ld + ch * 8, ok);
    }
}

// A fragment (16 rows x 16 cols at (row0, col0)) of a row-major smem tile.
template <int LDS>
__device__ __forceinline__ void ldsm_a(uint32_t (&a)[4], const bf16 *s, int row0, int col0, int lane) {
    ldsm_x4(a, s + (row0 + (lane & 15)) * LDS + col0 + (lane >> 4) * 8);
}
// B fragments for two n-tiles (n rows n0..n0+15 of a row-major [n][k] smem
// tile, k = col0..col0+15): r0,r1 = tile n0, r2,r3 = tile n0+8. For S = Q K^T.
template <int LDS>
__device__ __forceinline__ void ldsm_b_nk(uint32_t (&b)[4], const bf16 *s, int n0, int col0, int lane) {
    ldsm_x4(b, s + (n0 + (lane & 7) + (lane >> 4) * 8) * LDS + col0 + ((lane >> 3) & 1) * 8);
}
// B fragments for two n-tiles of a row-major [k][n] smem tile (k = k0..k0+15,
// n = n0..n0+15): r0,r1 = tile n0, r2,r3 = tile n0+8. For O = P V.
template <int LDS>
__device__ __forceinline__ void ldsm_b_kn(uint32_t (&b)[4], const bf16 *s, int k0, int n0, int lane) {
    ldsm_x4_trans(b, s + (k0 + (lane & 7) + ((lane >> 3) & 1) * 8) * LDS + n0 + (lane >> 4) * 8);
}

// acc[16 x 8*NT] += A[16 x 16 cols kc*16..] @ B^T where B is a row-major
// [n][k] smem tile of NT*8 rows: one k-chunk of a Q K^T-style product.
template <int LDS, int NT>
__device__ __forceinline__ void mm_abt_chunk(float (&acc)[NT][4], const uint32_t (&a)[4], const bf16 *Bs, int kc,
                                             int lane) {
#pragma unroll
    for (int np = 0; np < NT / 2; np++) {
        uint32_t b[4];
        ldsm_b_nk<LDS>(b, Bs, np * 16, kc * 16, lane);
        mma_bf16(acc[2 * np], a, b[0], b[1]);
        mma_bf16(acc[2 * np + 1], a, b[2], b[3]);
    }
}
// acc[16 x 8*NT] += A[16 x 16*KC] (fragments from smem rows row0..) @ B^T.
template <int LDS, int KC, int NT>
__device__ __forceinline__ void mm_abt(float (&acc)[NT][4], const bf16 *As, int row0, const bf16 *Bs, int lane) {
#pragma unroll
    for (int kc = 0; kc < KC; kc++) {
        uint32_t a[4];
        ldsm_a<LDS>(a, As, row0, kc * 16, lane);
        mm_abt_chunk<LDS, NT>(acc, a, Bs, kc, lane);
    }
}
// The same with A's fragments already in registers (Q kept across K tiles).
template <int LDS, int KC, int NT>
__device__ __forceinline__ void mm_rbt(float (&acc)[NT][4], const uint32_t (&a)[KC][4], const bf16 *Bs, int lane) {
#pragma unroll
    for (int kc = 0; kc < KC; kc++) mm_abt_chunk<LDS, NT>(acc, a[kc], Bs, kc, lane);
}

// acc[16 x 8*ND] += P[16 x 8*NP] (C-fragments in registers, rounded to bf16)
// @ B where B is a row-major [k][n] smem tile of NP*8 rows and ND*8 columns.
template <int LDS, int NP, int ND>
__device__ __forceinline__ void mm_pb(float (&acc)[ND][4], const float (&p)[NP][4], const bf16 *Bs, int lane) {
#pragma unroll
    for (int kc = 0; kc < NP / 2; kc++) {
        uint32_t a[4];
        a[0] = pack_bf16(p[2 * kc][0], p[2 * kc][1]);
        a[1] = pack_bf16(p[2 * kc][2], p[2 * kc][3]);
        a[2] = pack_bf16(p[2 * kc + 1][0], p[2 * kc + 1][1]);
        a[3] = pack_bf16(p[2 * kc + 1][2], p[2 * kc + 1][3]);
#pragma unroll
        for (int dp = 0; dp < ND / 2; dp++) {
            uint32_t b[4];
            ldsm_b_kn<LDS>(b, Bs, kc * 16, dp * 16, lane);
            mma_bf16(acc[2 * dp], a, b[0], b[1]);
            mma_bf16(acc[2 * dp + 1], a, b[2], b[3]);
        }
    }
}

template <int N>
__device__ __forceinline__ void zero_acc(float (&acc)[N][4]) {
#pragma unroll
    for (int i = 0; i < N; i++) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.0f;
}

// Query i may see key j (both inside the sequence); seg_i / seg_j are only
// read when the batch has segment ids.
__device__ __forceinline__ bool tile_visible(bool has_seg, int causal, int i, int j, int T, int seg_i, int seg_j) {
    if (i >= T || j >= T || (causal && j > i)) return false;
    return !has_seg || attn_visible_seg(causal, i, j, seg_i, seg_j);
}

// Writes a warp's 16 x HS accumulator rows (scaled per row) to a global bf16
// matrix with row stride ld; rows at or past T are skipped.
template <int ND>
__device__ __forceinline__ void store_rows(bf16 *g, size_t ld, int row0, int T, const float (&acc)[ND][4],
                                           float scale0, float scale1, int lane) {
    const int gq = lane >> 2, tq = lane & 3;
#pragma unroll
    for (int half = 0; half < 2; half++) {
        const int r = row0 + gq + half * 8;
        if (r >= T) continue;
        const float sc = half ? scale1 : scale0;
        bf16 *dst = g + (size_t)r * ld;
#pragma unroll
        for (int nt = 0; nt < ND; nt++)
            *reinterpret_cast<__nv_bfloat162 *>(dst + nt * 8 + 2 * tq) =
                __floats2bfloat162_rn(acc[nt][2 * half] * sc, acc[nt][2 * half + 1] * sc);
    }
}

// ---- forward ----------------------------------------------------------------------------

// WARPS warps own 16 query rows each (BR = 16 WARPS); QREG: Q's A fragments
// are read once into registers (staged in K/V buffer 1, which then holds
// exactly BR rows) instead of from smem for every K tile.
template <int HS, int WARPS, bool QREG>
__global__ void __launch_bounds__(WARPS * 32) flash_fwd_kernel(bf16 *out, float *lse, const bf16 *qkv,
                                                               const int32_t *seg, int T, int NH, int NKV,
                                                               int causal, float scale) {
    constexpr int TH = WARPS * 32, BR = 16 * WARPS, BC = 64, LDS = HS + FA_PAD, KC = HS / 16, NS = BC / 8,
                  ND = HS / 8;
    constexpr int KVB = 2 * BC * LDS;  // one K/V buffer: K[BC][LDS], then V[BC][LDS]
    static_assert(!QREG || BR * LDS == KVB, "Q is staged in the second K/V buffer");
    LLAVA_DYNAMIC_SMEM(unsigned char, fa_smem);
    bf16 *kv = reinterpret_cast<bf16 *>(fa_smem);  // [2][KVB]
    bf16 *Qs = QREG ? kv + KVB : kv + 2 * KVB;     // [BR][LDS]
    __shared__ int segq[BR], segk[2][BC];

    const int qt = gridDim.x - 1 - blockIdx.x;  // the longest (causal) tiles start first
    const int h = blockIdx.y, b = blockIdx.z, kvh = h / (NH / NKV);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gq = lane >> 2, tq = lane & 3;
    const size_t ld = (size_t)(NH + 2 * NKV) * HS;
    const bf16 *base = qkv + (size_t)b * T * ld;
    const bf16 *qg = base + (size_t)h * HS, *kg = base + (size_t)(NH + kvh) * HS,
               *vg = base + (size_t)(NH + NKV + kvh) * HS;
    const int32_t *segb = seg ? seg + (size_t)b * T : nullptr;
    const int q0 = qt * BR;
    const float sl2 = scale * LOG2E;
    int n_kt = (T + BC - 1) / BC;
    if (causal) n_kt = min(n_kt, min(T - 1, q0 + BR - 1) / BC + 1);

    load_tile<HS, BR, TH>(Qs, qg, ld, q0, T);
    load_tile<HS, BC, TH>(kv, kg, ld, 0, T);
    load_tile<HS, BC, TH>(kv + BC * LDS, vg, ld, 0, T);
    cp_async_commit();
    if (segb) {
        for (int i = threadIdx.x; i < BR; i += TH) segq[i] = q0 + i < T ? segb[q0 + i] : 0;
        for (int j = threadIdx.x; j < BC; j += TH) segk[0][j] = j < T ? segb[j] : 0;
    }

    const int row0 = warp * 16;  // this warp's rows in the tile
    uint32_t qf[QREG ? KC : 1][4];
    if constexpr (QREG) {
        cp_async_wait<0>();
        __syncthreads();
#pragma unroll
        for (int kc = 0; kc < KC; kc++) ldsm_a<LDS>(qf[kc], Qs, row0, kc * 16, lane);
        __syncthreads();  // every warp holds its Q before buffer 1 is first refilled
    } else {
        (void)qf;
    }
    float o[ND][4];
    zero_acc(o);
    float mrow[2] = {-INFINITY, -INFINITY}, lrow[2] = {0.0f, 0.0f};

    for (int kt = 0; kt < n_kt; kt++) {
        const int buf = kt & 1;
        if (kt + 1 < n_kt) {
            const int k1 = (kt + 1) * BC;
            load_tile<HS, BC, TH>(kv + (buf ^ 1) * KVB, kg, ld, k1, T);
            load_tile<HS, BC, TH>(kv + (buf ^ 1) * KVB + BC * LDS, vg, ld, k1, T);
            cp_async_commit();
            if (segb)
                for (int j = threadIdx.x; j < BC; j += TH) segk[buf ^ 1][j] = k1 + j < T ? segb[k1 + j] : 0;
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const bf16 *Kb = kv + buf * KVB, *Vb = Kb + BC * LDS;
        const int k0 = kt * BC;
        // Causal: a warp whose rows all precede the tile sees none of it; its
        // state would stay as it is (p = 0 adds nothing), so it waits out the tile.
        if (!(causal && k0 > q0 + row0 + 15)) {
            float s[NS][4];
            zero_acc(s);
            if constexpr (QREG)
                mm_rbt<LDS, KC, NS>(s, qf, Kb, lane);
            else
                mm_abt<LDS, KC, NS>(s, Qs, row0, Kb, lane);

            if (segb || k0 + BC > T || (causal && k0 + BC - 1 > q0 + row0)) {
#pragma unroll
                for (int nt = 0; nt < NS; nt++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const int il = row0 + gq + (e >> 1) * 8, jl = nt * 8 + 2 * tq + (e & 1);
                        const int i = q0 + il, j = k0 + jl;
                        if (!tile_visible(segb != nullptr, causal, i, j, T, segq[il], segk[buf][jl]))
                            s[nt][e] = -INFINITY;
                    }
            }
            // Online softmax for this thread's two rows (gq and gq+8); the four
            // threads of a quad hold one row between them.
#pragma unroll
            for (int r = 0; r < 2; r++) {
                float mx = -INFINITY;
#pragma unroll
                for (int nt = 0; nt < NS; nt++) mx = fmaxf(mx, fmaxf(s[nt][2 * r], s[nt][2 * r + 1]));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                const float m_new = fmaxf(mrow[r], mx);
                const float m_use = m_new == -INFINITY ? 0.0f : m_new;  // nothing visible yet: avoid inf - inf
                const float alpha = exp2f((mrow[r] - m_use) * sl2);
                mrow[r] = m_new;
                lrow[r] *= alpha;
#pragma unroll
                for (int nt = 0; nt < ND; nt++) {
                    o[nt][2 * r] *= alpha;
                    o[nt][2 * r + 1] *= alpha;
                }
                const float ms = m_use * sl2;
#pragma unroll
                for (int nt = 0; nt < NS; nt++) {
                    float p0 = exp2f(fmaf(s[nt][2 * r], sl2, -ms)), p1 = exp2f(fmaf(s[nt][2 * r + 1], sl2, -ms));
                    s[nt][2 * r] = p0;
                    s[nt][2 * r + 1] = p1;
                    lrow[r] += p0 + p1;
                }
            }
            mm_pb<LDS, NS, ND>(o, s, Vb, lane);
        }
        __syncthreads();  // everyone is done with buffer `buf` before it is refilled
    }

    float inv[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        float l = lrow[r];
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        inv[r] = l > 0.0f ? 1.0f / l : 0.0f;  // no visible key: zeros
        const int i = q0 + row0 + gq + r * 8;
        if (tq == 0 && i < T)
            lse[((size_t)b * NH + h) * T + i] = l > 0.0f ? mrow[r] * scale + logf(l) : -INFINITY;
    }
    store_rows<ND>(out + (size_t)b * T * NH * HS + (size_t)h * HS, (size_t)NH * HS, q0 + row0, T, o, inv[0], inv[1],
                   lane);
}

// ---- backward: dK and dV ----------------------------------------------------------------

// Per query row of a tile: lse * log2(e) (+inf for rows with no visible key
// and rows past T, so that exp2(s - lse2) = 0), D = rowsum(dO * O), segment.
template <int THREADS>
__device__ __forceinline__ void load_row_stats(float *lse2_s, float *D_s, int *seg_s, const float *lse_bh,
                                               const float *D_bh, const int32_t *segb, int i0, int rows, int T) {
    for (int r = threadIdx.x; r < rows; r += THREADS) {
        const int i = i0 + r;
        const float l = i < T ? lse_bh[i] : -INFINITY;
        lse2_s[r] = l == -INFINITY ? INFINITY : l * LOG2E;
        D_s[r] = i < T ? D_bh[i] : 0.0f;
        seg_s[r] = (segb && i < T) ? segb[i] : 0;
    }
}

// WARPS warps own 16 keys each (BC = 16 WARPS); query tiles of BRQ rows.
template <int HS, int BRQ, int WARPS>
__global__ void __launch_bounds__(WARPS * 32) flash_bwd_dkdv_kernel(bf16 *dqkv, const bf16 *dout, const bf16 *qkv,
                                                                    const float *lse, const float *Dsum,
                                                                    const int32_t *seg, int T, int NH, int NKV,
                                                                    int causal, float scale) {
    constexpr int TH = WARPS * 32, BC = 16 * WARPS, LDS = HS + FA_PAD, KC = HS / 16, NS = BRQ / 8, ND = HS / 8;
    LLAVA_DYNAMIC_SMEM(unsigned char, fa_smem);
    bf16 *Ks = reinterpret_cast<bf16 *>(fa_smem);
    bf16 *Vs = Ks + BC * LDS;
    bf16 *Qs = Vs + BC * LDS;        // [2][BRQ][LDS]
    bf16 *dOs = Qs + 2 * BRQ * LDS;  // [2][BRQ][LDS]
    __shared__ float lse2_s[2][BRQ], D_s[2][BRQ];
    __shared__ int segq[2][BRQ], segk[BC];

    const int jt = blockIdx.x, kvh = blockIdx.y, b = blockIdx.z;
    const int group = NH / NKV;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gq = lane >> 2, tq = lane & 3;
    const size_t ld = (size_t)(NH + 2 * NKV) * HS, ldo = (size_t)NH * HS;
    const bf16 *base = qkv + (size_t)b * T * ld;
    const bf16 *dob = dout + (size_t)b * T * ldo;
    const int32_t *segb = seg ? seg + (size_t)b * T : nullptr;
    const int j0 = jt * BC;
    const float sl2 = scale * LOG2E;
    const int qt_first = causal ? j0 / BRQ : 0;
    const int n_q = (T + BRQ - 1) / BRQ - qt_first;  // query tiles per head
    const int n_it = group * n_q;

    load_tile<HS, BC, TH>(Ks, base + (size_t)(NH + kvh) * HS, ld, j0, T);
    load_tile<HS, BC, TH>(Vs, base + (size_t)(NH + NKV + kvh) * HS, ld, j0, T);
    for (int j = threadIdx.x; j < BC; j += TH) segk[j] = (segb && j0 + j < T) ? segb[j0 + j] : 0;
    auto issue = [&](int it, int buf) {
        const int h = kvh * group + it / n_q, i0 = (qt_first + it % n_q) * BRQ;
        load_tile<HS, BRQ, TH>(Qs + buf * BRQ * LDS, base + (size_t)h * HS, ld, i0, T);
        load_tile<HS, BRQ, TH>(dOs + buf * BRQ * LDS, dob + (size_t)h * HS, ldo, i0, T);
        cp_async_commit();
        const size_t bh = ((size_t)b * NH + h) * T;
        load_row_stats<TH>(lse2_s[buf], D_s[buf], segq[buf], lse + bh, Dsum + bh, segb, i0, BRQ, T);
    };
    if (n_it > 0) issue(0, 0);  // (the K/V copies join this first group)

    float dk[ND][4], dv[ND][4];
    zero_acc(dk);
    zero_acc(dv);
    const int row0 = warp * 16;  // this warp's keys in the tile
    const int jw = j0 + row0;    // its first key
    // Per-warp tile tests only in the 8-warp kernel: at 4 warps (64 keys, little
    // to skip) they cost HS 64 twelve registers, a block per SM, or a spill.
    constexpr bool WIDE = WARPS > 4;
    const int km = WIDE ? jw : j0, kn = WIDE ? 16 : BC;  // the keys the mask test covers

    for (int it = 0; it < n_it; it++) {
        const int buf = it & 1;
        if (it + 1 < n_it) {
            issue(it + 1, buf ^ 1);
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const int i0 = (qt_first + it % n_q) * BRQ;
        const bf16 *Qb = Qs + buf * BRQ * LDS, *dOb = dOs + buf * BRQ * LDS;
        // Causal: this warp's keys all after the tile's queries: P = 0 there.
        if (!(WIDE && causal && jw > i0 + BRQ - 1)) {
            // Every (query, key) pair of the warp's (WIDE) or the block's keys
            // visible: no padding or segments, inside T, and (causal) every key
            // at or before every query.
            const bool unmasked = !segb && i0 + BRQ <= T && km + kn <= T && (!causal || km + kn - 1 <= i0);

            // S^T[16 keys x BRQ queries] = K Q^T, then P^T = exp(S^T * scale - lse)
            float p[NS][4];
            zero_acc(p);
            mm_abt<LDS, KC, NS>(p, Ks, row0, Qb, lane);
#pragma unroll
            for (int nt = 0; nt < NS; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int jl = row0 + gq + (e >> 1) * 8, il = nt * 8 + 2 * tq + (e & 1);
                    const int j = j0 + jl, i = i0 + il;
                    const bool vis =
                        unmasked || tile_visible(segb != nullptr, causal, i, j, T, segq[buf][il], segk[jl]);
                    p[nt][e] = vis ? exp2f(fmaf(p[nt][e], sl2, -lse2_s[buf][il])) : 0.0f;
                }
            // dV += P^T dO
            mm_pb<LDS, NS, ND>(dv, p, dOb, lane);
            // dP^T = V dO^T, then dS^T = P^T (dP^T - D) * scale
            float ds[NS][4];
            zero_acc(ds);
            mm_abt<LDS, KC, NS>(ds, Vs, row0, dOb, lane);
#pragma unroll
            for (int nt = 0; nt < NS; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int il = nt * 8 + 2 * tq + (e & 1);
                    ds[nt][e] = p[nt][e] * (ds[nt][e] - D_s[buf][il]) * scale;
                }
            // dK += dS^T Q
            mm_pb<LDS, NS, ND>(dk, ds, Qb, lane);
        }
        __syncthreads();
    }
    store_rows<ND>(dqkv + (size_t)b * T * ld + (size_t)(NH + kvh) * HS, ld, jw, T, dk, 1.0f, 1.0f, lane);
    store_rows<ND>(dqkv + (size_t)b * T * ld + (size_t)(NH + NKV + kvh) * HS, ld, jw, T, dv, 1.0f, 1.0f, lane);
}

// ---- backward: dQ -----------------------------------------------------------------------

// WARPS warps own 16 query rows each (BR = 16 WARPS); 64-key tiles.
template <int HS, int WARPS>
__global__ void __launch_bounds__(WARPS * 32) flash_bwd_dq_kernel(bf16 *dqkv, const bf16 *dout, const bf16 *qkv,
                                                                  const float *lse, const float *Dsum,
                                                                  const int32_t *seg, int T, int NH, int NKV,
                                                                  int causal, float scale) {
    constexpr int TH = WARPS * 32, BR = 16 * WARPS, BC = 64, LDS = HS + FA_PAD, KC = HS / 16, NS = BC / 8,
                  ND = HS / 8;
    constexpr int KVB = 2 * BC * LDS;  // one K/V buffer: K[BC][LDS], then V[BC][LDS]
    LLAVA_DYNAMIC_SMEM(unsigned char, fa_smem);
    bf16 *Qs = reinterpret_cast<bf16 *>(fa_smem);
    bf16 *dOs = Qs + BR * LDS;
    bf16 *kv = dOs + BR * LDS;  // [2][KVB]
    __shared__ float lse2_s[BR], D_s[BR];
    __shared__ int segq[BR], segk[2][BC];

    const int qt = gridDim.x - 1 - blockIdx.x;
    const int h = blockIdx.y, b = blockIdx.z, kvh = h / (NH / NKV);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gq = lane >> 2, tq = lane & 3;
    const size_t ld = (size_t)(NH + 2 * NKV) * HS, ldo = (size_t)NH * HS;
    const bf16 *base = qkv + (size_t)b * T * ld;
    const bf16 *kg = base + (size_t)(NH + kvh) * HS, *vg = base + (size_t)(NH + NKV + kvh) * HS;
    const int32_t *segb = seg ? seg + (size_t)b * T : nullptr;
    const int q0 = qt * BR;
    const float sl2 = scale * LOG2E;
    int n_kt = (T + BC - 1) / BC;
    if (causal) n_kt = min(n_kt, min(T - 1, q0 + BR - 1) / BC + 1);

    load_tile<HS, BR, TH>(Qs, base + (size_t)h * HS, ld, q0, T);
    load_tile<HS, BR, TH>(dOs, dout + (size_t)b * T * ldo + (size_t)h * HS, ldo, q0, T);
    load_tile<HS, BC, TH>(kv, kg, ld, 0, T);
    load_tile<HS, BC, TH>(kv + BC * LDS, vg, ld, 0, T);
    cp_async_commit();
    const size_t bh = ((size_t)b * NH + h) * T;
    load_row_stats<TH>(lse2_s, D_s, segq, lse + bh, Dsum + bh, segb, q0, BR, T);
    for (int j = threadIdx.x; j < BC; j += TH) segk[0][j] = (segb && j < T) ? segb[j] : 0;

    float dq[ND][4];
    zero_acc(dq);
    const int row0 = warp * 16;
    const int iw = q0 + row0;  // this warp's first query
    // The mask test per warp in the 8-warp kernel, per block at 4 warps (where
    // per warp costs HS 64 thirty registers).
    constexpr bool WIDE = WARPS > 4;
    const int qm = WIDE ? iw : q0, qn = WIDE ? 16 : BR;  // the queries the test covers

    for (int kt = 0; kt < n_kt; kt++) {
        const int buf = kt & 1;
        if (kt + 1 < n_kt) {
            const int k1 = (kt + 1) * BC;
            load_tile<HS, BC, TH>(kv + (buf ^ 1) * KVB, kg, ld, k1, T);
            load_tile<HS, BC, TH>(kv + (buf ^ 1) * KVB + BC * LDS, vg, ld, k1, T);
            cp_async_commit();
            for (int j = threadIdx.x; j < BC; j += TH) segk[buf ^ 1][j] = (segb && k1 + j < T) ? segb[k1 + j] : 0;
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const bf16 *Kb = kv + buf * KVB, *Vb = Kb + BC * LDS;
        const int k0 = kt * BC;
        if (!(causal && k0 > iw + 15)) {  // causal: keys all after this warp's rows add nothing
            const bool unmasked = !segb && qm + qn <= T && k0 + BC <= T && (!causal || k0 + BC - 1 <= qm);

            float p[NS][4];
            zero_acc(p);
            mm_abt<LDS, KC, NS>(p, Qs, row0, Kb, lane);
#pragma unroll
            for (int nt = 0; nt < NS; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int il = row0 + gq + (e >> 1) * 8, jl = nt * 8 + 2 * tq + (e & 1);
                    const int i = q0 + il, j = k0 + jl;
                    const bool vis =
                        unmasked || tile_visible(segb != nullptr, causal, i, j, T, segq[il], segk[buf][jl]);
                    p[nt][e] = vis ? exp2f(fmaf(p[nt][e], sl2, -lse2_s[il])) : 0.0f;
                }
            float ds[NS][4];
            zero_acc(ds);
            mm_abt<LDS, KC, NS>(ds, dOs, row0, Vb, lane);  // dP = dO V^T
#pragma unroll
            for (int nt = 0; nt < NS; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int il = row0 + gq + (e >> 1) * 8;
                    ds[nt][e] = p[nt][e] * (ds[nt][e] - D_s[il]) * scale;
                }
            mm_pb<LDS, NS, ND>(dq, ds, Kb, lane);  // dQ += dS K
        }
        __syncthreads();
    }
    store_rows<ND>(dqkv + (size_t)b * T * ld + (size_t)h * HS, ld, iw, T, dq, 1.0f, 1.0f, lane);
}

// ---- launchers ----------------------------------------------------------------------------

#define SMEM_ROWS(HS, rows) ((size_t)(rows) * ((HS) + FA_PAD) * sizeof(bf16))
// forward: 2 K/V buffers of 64 + 64 rows, and Q's BR rows unless staged in buffer 1
#define FWD_SMEM(HS, BR, QREG) SMEM_ROWS(HS, 4 * 64 + ((QREG) ? 0 : (BR)))
#define DKDV_SMEM(HS, BRQ, BC) SMEM_ROWS(HS, 2 * (BC) + 4 * (BRQ))
#define DQ_SMEM(HS, BR) SMEM_ROWS(HS, 2 * (BR) + 4 * 64)
#define BRQ_64 64   // query tile of the dK/dV kernel at HS = 64
#define BRQ_128 32  // at HS = 128 (keeps dK, dV, S and dP in registers without spills)
// The largest of each path's three kernels (dQ in both).
#define SMALL_SMEM(HS) DQ_SMEM(HS, 64)
#define TILES_SMEM DQ_SMEM(128, 128)
static_assert(SMALL_SMEM(64) >= FWD_SMEM(64, 64, 0) && SMALL_SMEM(64) >= DKDV_SMEM(64, BRQ_64, 64), "dq: most smem");
static_assert(SMALL_SMEM(128) >= FWD_SMEM(128, 64, 0) && SMALL_SMEM(128) >= DKDV_SMEM(128, BRQ_128, 64),
              "dq needs the most smem");
static_assert(TILES_SMEM >= FWD_SMEM(128, 128, 1) && TILES_SMEM >= DKDV_SMEM(128, BRQ_128, 128),
              "dq needs the most smem");

// Raises each flash kernel's dynamic shared-memory limit where the card
// allows it; on cards with less (sm_86/89: 99 KiB) the head-size-128 kernels
// stay off and the launchers send those shapes to a path that fits.
// A kernel's static shared memory (row statistics, segment ids: at most 2 KiB
// here) counts against the same opt-in limit as its dynamic shared memory.
#define FA_STATIC_SMEM 4096
static bool smem_fits(size_t dynamic_bytes) { return dynamic_bytes + FA_STATIC_SMEM <= cuda_ctx()->smem_optin; }

template <class K>
static void allow_smem(K *kernel, size_t bytes) {
    if (smem_fits(bytes))
        CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

void cuda_attention_init(void) {
    allow_smem(flash_fwd_kernel<64, 4, false>, FWD_SMEM(64, 64, 0));
    allow_smem(flash_fwd_kernel<128, 4, false>, FWD_SMEM(128, 64, 0));
    allow_smem(flash_fwd_kernel<128, 8, true>, FWD_SMEM(128, 128, 1));
    allow_smem(flash_bwd_dkdv_kernel<64, BRQ_64, 4>, DKDV_SMEM(64, BRQ_64, 64));
    allow_smem(flash_bwd_dkdv_kernel<128, BRQ_128, 4>, DKDV_SMEM(128, BRQ_128, 64));
    allow_smem(flash_bwd_dkdv_kernel<128, BRQ_128, 8>, DKDV_SMEM(128, BRQ_128, 128));
    allow_smem(flash_bwd_dq_kernel<64, 4>, DQ_SMEM(64, 64));
    allow_smem(flash_bwd_dq_kernel<128, 4>, DQ_SMEM(128, 64));
    allow_smem(flash_bwd_dq_kernel<128, 8>, DQ_SMEM(128, 128));
}

// Whether a head-size-128 kernel over `heads` heads runs in its 128-row form:
// not switched off (flash_tiles 0), the card's opt-in shared memory holds the
// largest 128-row kernel, and (flash_tiles 1, the default) its grid gives
// every SM a block: one 8-warp block fills an SM's registers, so a grid of
// fewer blocks than SMs (dK/dV with few kv heads and short sequences) would
// leave SMs idle that the 64-row kernel's twice as many blocks would use.
// flash_tiles 2 takes the 128-row kernels at any size (tests, benchmark).
static bool flash_tiles(const AttnShape *s, int heads) {
    const CudaContext *c = cuda_ctx();
    if (s->HS != 128 || c->flash_tiles == 0 || !smem_fits(TILES_SMEM)) return false;
    return c->flash_tiles == 2 || (size_t)cuda_blocks(s->T, 128) * heads * s->B >= (size_t)c->sm_count;
}

bool cuda_flash_supported(const AttnShape *s, const void *a, const void *b, const void *c, const void *d) {
    if (s->HS != 64 && s->HS != 128) return false;
    // the 64-row kernels fit wherever the 128-row ones do (TILES_SMEM is larger)
    return aligned16(a, b, c, d) && smem_fits(s->HS == 64 ? SMALL_SMEM(64) : SMALL_SMEM(128));
}

// Launches one flash kernel over grid with the config's threads and smem.
#define FA_LAUNCH(kernel, grid, warps, smem, ...)                                    \
    do {                                                                           \
        kernel<<<grid, (warps) * 32, smem, cuda_ctx()->stream>>>(__VA_ARGS__);     \
        CUDA_LAUNCH_CHECK();                                                       \
    } while (0)

void cuda_flash_forward(bf16 *out, float *lse, const bf16 *qkv, const AttnShape *s) {
    const float scale = 1.0f / sqrtf((float)s->HS);
    if (flash_tiles(s, s->NH)) {
        dim3 grid(cuda_blocks(s->T, 128), s->NH, s->B);
        FA_LAUNCH((flash_fwd_kernel<128, 8, true>), grid, 8, FWD_SMEM(128, 128, 1), out, lse, qkv, s->seg, s->T,
                  s->NH, s->NKV, s->causal, scale);
        return;
    }
    dim3 grid(cuda_blocks(s->T, 64), s->NH, s->B);
    if (s->HS == 64)
        FA_LAUNCH((flash_fwd_kernel<64, 4, false>), grid, 4, FWD_SMEM(64, 64, 0), out, lse, qkv, s->seg, s->T, s->NH,
                  s->NKV, s->causal, scale);
    else
        FA_LAUNCH((flash_fwd_kernel<128, 4, false>), grid, 4, FWD_SMEM(128, 64, 0), out, lse, qkv, s->seg, s->T,
                  s->NH, s->NKV, s->causal, scale);
}

// dK/dV and dQ write disjoint parts of dqkv, so each picks its form alone.
void cuda_flash_backward(bf16 *dqkv, const bf16 *dout, const bf16 *qkv, const float *lse, const float *D,
                         const AttnShape *s) {
    const float scale = 1.0f / sqrtf((float)s->HS);
    const int T = s->T, NH = s->NH, NKV = s->NKV, B = s->B;
    if (flash_tiles(s, NKV))
        FA_LAUNCH((flash_bwd_dkdv_kernel<128, BRQ_128, 8>), dim3(cuda_blocks(T, 128), NKV, B), 8,
                  DKDV_SMEM(128, BRQ_128, 128), dqkv, dout, qkv, lse, D, s->seg, T, NH, NKV, s->causal, scale);
    else if (s->HS == 128)
        FA_LAUNCH((flash_bwd_dkdv_kernel<128, BRQ_128, 4>), dim3(cuda_blocks(T, 64), NKV, B), 4,
                  DKDV_SMEM(128, BRQ_128, 64), dqkv, dout, qkv, lse, D, s->seg, T, NH, NKV, s->causal, scale);
    else
        FA_LAUNCH((flash_bwd_dkdv_kernel<64, BRQ_64, 4>), dim3(cuda_blocks(T, 64), NKV, B), 4,
                  DKDV_SMEM(64, BRQ_64, 64), dqkv, dout, qkv, lse, D, s->seg, T, NH, NKV, s->causal, scale);
    if (flash_tiles(s, NH))
        FA_LAUNCH((flash_bwd_dq_kernel<128, 8>), dim3(cuda_blocks(T, 128), NH, B), 8, DQ_SMEM(128, 128), dqkv, dout,
                  qkv, lse, D, s->seg, T, NH, NKV, s->causal, scale);
    else if (s->HS == 128)
        FA_LAUNCH((flash_bwd_dq_kernel<128, 4>), dim3(cuda_blocks(T, 64), NH, B), 4, DQ_SMEM(128, 64), dqkv, dout,
                  qkv, lse, D, s->seg, T, NH, NKV, s->causal, scale);
    else
        FA_LAUNCH((flash_bwd_dq_kernel<64, 4>), dim3(cuda_blocks(T, 64), NH, B), 4, DQ_SMEM(64, 64), dqkv, dout, qkv,
                  lse, D, s->seg, T, NH, NKV, s->causal, scale);
}

// ---- op-table entry points ----------------------------------------------------------------

static void check_shape(const AttnShape *s) {
    CUDA_REQUIRE(s->B >= 0 && s->T >= 0 && s->NH > 0 && s->NKV > 0 && s->HS > 0 && s->NH % s->NKV == 0,
                 "attention: bad shape B=%d T=%d NH=%d NKV=%d HS=%d", s->B, s->T, s->NH, s->NKV, s->HS);
}

void cuda_attention_forward(void *out, float *lse, const void *qkv, const AttnShape *s) {
    check_shape(s);
    if (s->B == 0 || s->T == 0) return;
    if (cuda_flash_supported(s, out, qkv, nullptr, nullptr))
        cuda_flash_forward((bf16 *)out, lse, (const bf16 *)qkv, s);
    else
        cuda_attention_ref_forward((bf16 *)out, lse, (const bf16 *)qkv, s);
}

void cuda_attention_backward(void *dqkv, const void *dout, const void *qkv, const void *out, const float *lse,
                             const AttnShape *s) {
    check_shape(s);
    if (s->B == 0 || s->T == 0) return;
    float *D = (float *)cuda_scratch((size_t)s->B * s->NH * s->T * sizeof(float));
    cuda_attention_rowdot(D, (const bf16 *)dout, (const bf16 *)out, s);
    if (cuda_flash_supported(s, dqkv, dout, qkv, out))
        cuda_flash_backward((bf16 *)dqkv, (const bf16 *)dout, (const bf16 *)qkv, lse, D, s);
    else
        cuda_attention_ref_backward((bf16 *)dqkv, (const bf16 *)dout, (const bf16 *)qkv, lse, D, s);
}
