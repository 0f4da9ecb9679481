// cuDNN's fused attention (SDPA forward and backward) as the CUDA backend's
// alternative to the flash kernels, chosen by `attention_backend: cudnn`.
//
// cuDNN is reached through its backend descriptor API (cudnn_graph.h, the C
// API cudnn-frontend wraps; the frontend itself is C++ and not installed on
// our machines) and loaded with dlopen by kernels/cudnn_lib.c, so a run that
// does not ask for it never needs libcudnn. The graphs are the composite
// patterns cuDNN's fused-attention engines recognize, node for node as
// cudnn-frontend lowers its SDPA and SDPA-backward nodes (for cuDNN < 9.21):
//   forward:  S = Q K^T; S *= scale; padding mask; causal mask (row >= col);
//             softmax with stats (max, x - max, exp, sum, log, stats = max +
//             log sum, P = exp / sum); O = P V
//   backward: softmax_sum = rowsum(dO * O); S = scale Q K^T; padding mask;
//             S - stats; (9.0-9.9: padding mask again); causal mask;
//             P = exp; dV = P^T dO; dS = scale P (dO V^T - softmax_sum);
//             dK = dS^T Q; dQ = dS K (accumulated in fp32, then cast)
//   GQA: K and V carry NKV heads, broadcast over the NH / NKV query heads of
//   a group; dK and dV are formed per query head and reduced onto the group.
//
// Layout: Q, K, V are read in place from our fused qkv[M, (NH + 2NKV) * HS]
// rows through strides (no copy), O and dO are [M, NH * HS], dqkv is written
// in the qkv layout. The stats tensor [B, NH, T, 1] is our lse[B, NH, T]
// (natural log of the softmax denominator, max + log(sum exp(x - max))):
// cuDNN writes it in place, no conversion. Our convention's -inf (rows with no
// visible key) never arises on this path: such rows go to the flash kernel.
//
// Masks: the padding mask always (seq_len_q = T: every query row is computed;
// seq_len_kv = the row's keys), plus the causal mask for the LLM. That
// expresses exactly our rule (kernels/ops.h AttnShape) for segment ids that
// are one document per row followed by right padding (a padding query sees
// every non-padding key, as ours does), and for no segment ids. Packed
// documents (several ids in a row), left padding and rows of padding alone
// need per-document ragged offsets and per-row query windows this file does
// not build yet: they go to the flash kernel, said once. Also to the flash
// kernel: head sizes that are not a multiple of 8 or above 128, unaligned
// buffers, and shapes cuDNN has no engine for (said once per shape).
//
// Not run on a GPU yet (docs/gpu-status.md): the first device call checks it
// against the CPU op (tests/gpu/test_ops_cudnn.c). cuDNN's backward
// accumulates dQ with atomics: it is not bitwise deterministic, unlike the
// flash kernels (ops.h's rule; recompute only repeats forwards, which are).
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_cudnn_attention.h"
#include "kernels/cuda/cuda_internal.cuh"

// ---- per-row sequence lengths (the padding mask's input) ---------------------------------

#define SEQ_THREADS 256

// One block per batch row b: L = first padding position (T when none); the
// row is expressible when seg[0] > 0 and every t < L holds seg[0], every
// t >= L holds 0.
__global__ void cudnn_seq_lens_kernel(int32_t *lens, const int32_t *seg, int B, int T) {
    __shared__ int red[SEQ_THREADS];
    const int b = blockIdx.x, tid = threadIdx.x;
    const int32_t *s = seg ? seg + (size_t)b * T : nullptr;
    int first_pad = T;
    for (int t = tid; t < T; t += SEQ_THREADS)
        if (s && s[t] == 0 && t < first_pad) first_pad = t;
    red[tid] = first_pad;
    __syncthreads();
    for (int w = SEQ_THREADS / 2; w > 0; w >>= 1) {
        if (tid < w && red[tid + w] < red[tid]) red[tid] = red[tid + w];
        __syncthreads();
    }
    const int L = red[0];
    __syncthreads();
    int bad = 0;
    if (s) {
        const int32_t doc = T > 0 ? s[0] : 0;
        for (int t = tid; t < T; t += SEQ_THREADS) bad |= s[t] != (t < L ? doc : 0);
        if (tid == 0) bad |= doc <= 0 || L == 0;
    }
    red[tid] = bad;
    __syncthreads();
    for (int w = SEQ_THREADS / 2; w > 0; w >>= 1) {
        if (tid < w) red[tid] |= red[tid + w];
        __syncthreads();
    }
    if (tid == 0) {
        lens[b] = T;
        lens[B + b] = L;
        lens[2 * B + b] = !red[0];
    }
}

extern "C" void cuda_cudnn_seq_lens(int32_t *lens, const int32_t *seg, int B, int T) {
    if (B <= 0) return;
    cudnn_seq_lens_kernel<<<B, SEQ_THREADS, 0, cuda_ctx()->stream>>>(lens, seg, B, T);
    CUDA_LAUNCH_CHECK();
}

static long g_cudnn_calls, g_flash_calls;  // see ops_cuda_cudnn_counts

extern "C" void ops_cuda_cudnn_counts(long *cudnn_calls, long *flash_calls) {
    *cudnn_calls = g_cudnn_calls;
    *flash_calls = g_flash_calls;
}

#ifndef LLAVA_HAVE_CUDNN_H

static const char k_no_headers[] = "this build has no cuDNN headers (cudnn.h was not found when it was configured); "
                                   "rebuild with cuDNN 9 installed, or use attention_backend \"flash\"";

extern "C" const Ops *ops_cuda_cudnn_create(const CudnnApi *api, char *msg, size_t cap) {
    (void)api;
    snprintf(msg, cap, "%s", k_no_headers);
    return NULL;
}

extern "C" int cuda_cudnn_graph_check(const CudnnApi *api, const AttnShape *s, int backward, char *msg, size_t cap) {
    (void)api, (void)s, (void)backward;
    snprintf(msg, cap, "%s", k_no_headers);
    return -2;
}

#else  // with cuDNN headers: the graphs (also built by the emulator, up to the plan), then running them

#include <cudnn.h>

// ---- graph building -------------------------------------------------------------------

enum {  // tensor uids of the variant packs
    UID_Q = 1, UID_K, UID_V, UID_O, UID_STATS, UID_SCALE, UID_SEQ_Q, UID_SEQ_KV, UID_NEG_INF,
    UID_DO, UID_DQ, UID_DK, UID_DV, UID_SOFTMAX_SUM, UID_DQ_ACCUM, UID_ONE, UID_VIRTUAL = 100
};

#define MAX_DESCS 160
#define MAX_OPS 48
#define MAX_PLANS 16

typedef struct {
    int in_use, backward, supported;
    int B, T, NH, NKV, HS, causal;
    void *descs[MAX_DESCS];  // every descriptor the graph holds, destroyed with the plan
    int n_descs;
    void *plan;
    int64_t workspace;       // bytes the execution plan asks for
} CudnnPlan;

typedef struct {
    CudnnApi api;
    void *handle;
    CudnnPlan plans[MAX_PLANS];
    int next_victim;
    int32_t *lens;  // device [3 * lens_cap]: see cuda_cudnn_seq_lens
    int lens_cap;
    int said_fallback;  // FALLBACK_* reasons already said
    Ops table;
} CudnnState;

static CudnnState g_cudnn;  // the backend's one context (cuda_internal.cuh explains why)

typedef struct {
    CudnnPlan *p;
    const CudnnApi *api;
    void *ops[MAX_OPS];
    int n_ops;
    int64_t next_uid;
    char err[256];  // the first failure
} GraphBuilder;

static void *gb_desc(GraphBuilder *g, cudnnBackendDescriptorType_t type) {
    void *d = NULL;
    if (g->err[0]) return NULL;
    if (g->p->n_descs == MAX_DESCS) {
        snprintf(g->err, sizeof g->err, "graph needs more than %d descriptors", MAX_DESCS);
        return NULL;
    }
    int st = g->api->backend_create_descriptor((int)type, &d);
    if (st != CUDNN_STATUS_SUCCESS) {
        snprintf(g->err, sizeof g->err, "cudnnBackendCreateDescriptor(%d): %s", (int)type,
                 g->api->get_error_string(st));
        return NULL;
    }
    g->p->descs[g->p->n_descs++] = d;
    return d;
}

static void gb_set(GraphBuilder *g, void *d, cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type,
                   int64_t count, const void *values, const char *what) {
    if (g->err[0] || !d) return;
    int st = g->api->backend_set_attribute(d, (int)name, (int)type, count, values);
    if (st != CUDNN_STATUS_SUCCESS)
        snprintf(g->err, sizeof g->err, "cudnnBackendSetAttribute(%s): %s", what, g->api->get_error_string(st));
}
#define GB_SET(g, d, name, type, count, values) gb_set(g, d, name, type, count, values, #name)

static void gb_finalize(GraphBuilder *g, void *d, const char *what) {
    if (g->err[0] || !d) return;
    int st = g->api->backend_finalize(d);
    if (st != CUDNN_STATUS_SUCCESS)
        snprintf(g->err, sizeof g->err, "cudnnBackendFinalize(%s): %s", what, g->api->get_error_string(st));
}

// A 4-d tensor; strides NULL = dense row-major; uid 0 = a virtual one.
static void *gb_tensor(GraphBuilder *g, int64_t uid, cudnnDataType_t dtype, const int64_t dims[4],
                       const int64_t *strides, bool by_value = false) {
    int64_t dense[4] = {dims[1] * dims[2] * dims[3], dims[2] * dims[3], dims[3], 1};
    const bool is_virtual = uid == 0;
    if (is_virtual) uid = g->next_uid++;
    const int64_t align = 16;
    void *t = gb_desc(g, CUDNN_BACKEND_TENSOR_DESCRIPTOR);
    GB_SET(g, t, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &dtype);
    GB_SET(g, t, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims);
    GB_SET(g, t, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, strides ? strides : dense);
    GB_SET(g, t, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid);
    GB_SET(g, t, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align);
    GB_SET(g, t, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &is_virtual);
    if (by_value) GB_SET(g, t, CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &by_value);
    gb_finalize(g, t, "tensor");
    return t;
}

static void *gb_virtual(GraphBuilder *g, cudnnDataType_t dtype, const int64_t dims[4]) {
    return gb_tensor(g, 0, dtype, dims, NULL);
}

static void gb_add_op(GraphBuilder *g, void *op, const char *what) {
    gb_finalize(g, op, what);
    if (g->err[0]) return;
    if (g->n_ops == MAX_OPS) {
        snprintf(g->err, sizeof g->err, "graph has more than %d operations", MAX_OPS);
        return;
    }
    g->ops[g->n_ops++] = op;
}

typedef struct {
    cudnnBackendAttributeName_t name;
    void *desc;  // NULL: the attribute is left unset
} GbLink;

// An operation of `type` whose attributes are the descriptors of links.
static void gb_operation(GraphBuilder *g, cudnnBackendDescriptorType_t type, const GbLink *links, int n,
                         const char *what) {
    void *op = gb_desc(g, type);
    for (int i = 0; i < n; i++)
        if (links[i].desc) gb_set(g, op, links[i].name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &links[i].desc, what);
    gb_add_op(g, op, what);
}

// y = mode(x, b, t): b and t optional (NULL); axis >= 0 for GEN_INDEX.
static void gb_pointwise(GraphBuilder *g, cudnnPointwiseMode_t mode, cudnnDataType_t math, void *x, void *b, void *t,
                         void *y, int64_t axis = -1) {
    void *pw = gb_desc(g, CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
    GB_SET(g, pw, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode);
    GB_SET(g, pw, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &math);
    if (axis >= 0) GB_SET(g, pw, CUDNN_ATTR_POINTWISE_AXIS, CUDNN_TYPE_INT64, 1, &axis);
    gb_finalize(g, pw, "pointwise descriptor");
    const GbLink links[] = {{CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, pw},
                            {CUDNN_ATTR_OPERATION_POINTWISE_XDESC, x},
                            {CUDNN_ATTR_OPERATION_POINTWISE_BDESC, b},
                            {CUDNN_ATTR_OPERATION_POINTWISE_TDESC, t},
                            {CUDNN_ATTR_OPERATION_POINTWISE_YDESC, y}};
    gb_operation(g, CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR, links, 5, "pointwise operation");
}

// c = a @ b over the last two dims; the overrides (seq-len tensors) bound M, N, K.
static void gb_matmul(GraphBuilder *g, void *a, void *b, void *c, void *m_ov, void *n_ov, void *k_ov) {
    cudnnDataType_t fp32 = CUDNN_DATA_FLOAT;
    void *mm = gb_desc(g, CUDNN_BACKEND_MATMUL_DESCRIPTOR);
    GB_SET(g, mm, CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &fp32);
    gb_finalize(g, mm, "matmul descriptor");
    const GbLink links[] = {{CUDNN_ATTR_OPERATION_MATMUL_ADESC, a},
                            {CUDNN_ATTR_OPERATION_MATMUL_BDESC, b},
                            {CUDNN_ATTR_OPERATION_MATMUL_CDESC, c},
                            {CUDNN_ATTR_OPERATION_MATMUL_DESC, mm},
                            {CUDNN_ATTR_OPERATION_MATMUL_GEMM_M_OVERRIDE_DESC, m_ov},
                            {CUDNN_ATTR_OPERATION_MATMUL_GEMM_N_OVERRIDE_DESC, n_ov},
                            {CUDNN_ATTR_OPERATION_MATMUL_GEMM_K_OVERRIDE_DESC, k_ov}};
    gb_operation(g, CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR, links, 7, "matmul operation");
}

static void gb_reduction(GraphBuilder *g, cudnnReduceTensorOp_t mode, void *x, void *y) {
    cudnnDataType_t fp32 = CUDNN_DATA_FLOAT;
    void *rd = gb_desc(g, CUDNN_BACKEND_REDUCTION_DESCRIPTOR);
    GB_SET(g, rd, CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &mode);
    GB_SET(g, rd, CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &fp32);
    gb_finalize(g, rd, "reduction descriptor");
    const GbLink links[] = {{CUDNN_ATTR_OPERATION_REDUCTION_XDESC, x},
                            {CUDNN_ATTR_OPERATION_REDUCTION_YDESC, y},
                            {CUDNN_ATTR_OPERATION_REDUCTION_DESC, rd}};
    gb_operation(g, CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR, links, 3, "reduction operation");
}

// y = x seen with other dims/strides (the virtual transposes of the pattern).
static void gb_reshape(GraphBuilder *g, void *x, void *y) {
    const GbLink links[] = {{CUDNN_ATTR_OPERATION_RESHAPE_XDESC, x}, {CUDNN_ATTR_OPERATION_RESHAPE_YDESC, y}};
    gb_operation(g, CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR, links, 2, "reshape operation");
}

// The tensors both graphs share, in our fused layouts (element strides).
typedef struct {
    void *q, *kt, *v, *stats, *scale, *seq_q, *seq_kv, *neg_inf;
    int64_t score[4], rowvec[4];  // [B, NH, T, T] and [B, NH, T, 1]
} SdpaInputs;

static void gb_inputs(GraphBuilder *g, const CudnnPlan *p, SdpaInputs *in) {
    const int64_t B = p->B, T = p->T, NH = p->NH, NKV = p->NKV, HS = p->HS, row = (NH + 2 * NKV) * HS;
    const int64_t qd[4] = {B, NH, T, HS}, qs[4] = {T * row, HS, row, 1};
    const int64_t ktd[4] = {B, NKV, HS, T}, kts[4] = {T * row, HS, 1, row};  // K^T: a transposed view
    const int64_t vd[4] = {B, NKV, T, HS};
    const int64_t sd[4] = {B, NH, T, 1}, one[4] = {1, 1, 1, 1}, lens[4] = {B, 1, 1, 1};
    in->q = gb_tensor(g, UID_Q, CUDNN_DATA_BFLOAT16, qd, qs);
    in->kt = gb_tensor(g, UID_K, CUDNN_DATA_BFLOAT16, ktd, kts);
    // V as [B, NKV, T, HS] for P V; the backward graph reads it as V^T instead (same uid)
    in->v = p->backward ? NULL : gb_tensor(g, UID_V, CUDNN_DATA_BFLOAT16, vd, qs);
    in->stats = gb_tensor(g, UID_STATS, CUDNN_DATA_FLOAT, sd, NULL);  // = our lse[B, NH, T]
    in->scale = gb_tensor(g, UID_SCALE, CUDNN_DATA_FLOAT, one, NULL, true);
    in->neg_inf = gb_tensor(g, UID_NEG_INF, CUDNN_DATA_FLOAT, one, NULL, true);
    in->seq_q = gb_tensor(g, UID_SEQ_Q, CUDNN_DATA_INT32, lens, NULL);
    in->seq_kv = gb_tensor(g, UID_SEQ_KV, CUDNN_DATA_INT32, lens, NULL);
    const int64_t score[4] = {B, NH, T, T};
    memcpy(in->score, score, sizeof score);
    memcpy(in->rowvec, sd, sizeof sd);
}

// scores outside [0, seq_q) x [0, seq_kv) become the mask value (cudnn-frontend's
// padding_mask: row < seq_q AND col < seq_kv selects the score).
static void *gb_padding_mask(GraphBuilder *g, const SdpaInputs *in, void *s) {
    void *row = gb_virtual(g, CUDNN_DATA_INT32, in->score), *col = gb_virtual(g, CUDNN_DATA_INT32, in->score);
    gb_pointwise(g, CUDNN_POINTWISE_GEN_INDEX, CUDNN_DATA_INT32, s, NULL, NULL, row, 2);
    gb_pointwise(g, CUDNN_POINTWISE_GEN_INDEX, CUDNN_DATA_INT32, s, NULL, NULL, col, 3);
    void *rm = gb_virtual(g, CUDNN_DATA_BOOLEAN, in->score), *cm = gb_virtual(g, CUDNN_DATA_BOOLEAN, in->score);
    gb_pointwise(g, CUDNN_POINTWISE_CMP_LT, CUDNN_DATA_BOOLEAN, row, in->seq_q, NULL, rm);
    gb_pointwise(g, CUDNN_POINTWISE_CMP_LT, CUDNN_DATA_BOOLEAN, col, in->seq_kv, NULL, cm);
    void *pm = gb_virtual(g, CUDNN_DATA_BOOLEAN, in->score);
    gb_pointwise(g, CUDNN_POINTWISE_LOGICAL_AND, CUDNN_DATA_BOOLEAN, rm, cm, NULL, pm);
    void *padded = gb_virtual(g, CUDNN_DATA_FLOAT, in->score);
    gb_pointwise(g, CUDNN_POINTWISE_BINARY_SELECT, CUDNN_DATA_FLOAT, s, in->neg_inf, pm, padded);
    return padded;
}

// scores above the diagonal become the mask value (cudnn-frontend's top-left
// diagonal band with right bound 0: row >= col selects the score).
static void *gb_causal_mask(GraphBuilder *g, const SdpaInputs *in, void *s) {
    void *row = gb_virtual(g, CUDNN_DATA_INT32, in->score), *col = gb_virtual(g, CUDNN_DATA_INT32, in->score);
    gb_pointwise(g, CUDNN_POINTWISE_GEN_INDEX, CUDNN_DATA_INT32, s, NULL, NULL, row, 2);
    gb_pointwise(g, CUDNN_POINTWISE_GEN_INDEX, CUDNN_DATA_INT32, s, NULL, NULL, col, 3);
    void *keep = gb_virtual(g, CUDNN_DATA_BOOLEAN, in->score);
    gb_pointwise(g, CUDNN_POINTWISE_CMP_GE, CUDNN_DATA_BOOLEAN, row, col, NULL, keep);
    void *masked = gb_virtual(g, CUDNN_DATA_FLOAT, in->score);
    gb_pointwise(g, CUDNN_POINTWISE_BINARY_SELECT, CUDNN_DATA_FLOAT, s, in->neg_inf, keep, masked);
    return masked;
}

static void gb_forward(GraphBuilder *g, const CudnnPlan *p) {
    SdpaInputs in;
    gb_inputs(g, p, &in);
    const int64_t B = p->B, T = p->T, NH = p->NH, HS = p->HS, ldo = NH * HS;
    const int64_t od[4] = {B, NH, T, HS}, os[4] = {T * ldo, HS, ldo, 1};
    void *o = gb_tensor(g, UID_O, CUDNN_DATA_BFLOAT16, od, os);
    void *s = gb_virtual(g, CUDNN_DATA_FLOAT, in.score);
    gb_matmul(g, in.q, in.kt, s, in.seq_q, in.seq_kv, NULL);
    void *ss = gb_virtual(g, CUDNN_DATA_FLOAT, in.score);
    gb_pointwise(g, CUDNN_POINTWISE_MUL, CUDNN_DATA_FLOAT, s, in.scale, NULL, ss);
    void *pad = gb_padding_mask(g, &in, ss);
    void *sm = p->causal ? gb_causal_mask(g, &in, pad) : pad;
    void *mx = gb_virtual(g, CUDNN_DATA_FLOAT, in.rowvec), *sub = gb_virtual(g, CUDNN_DATA_FLOAT, in.score);
    gb_reduction(g, CUDNN_REDUCE_TENSOR_MAX, sm, mx);
    gb_pointwise(g, CUDNN_POINTWISE_SUB, CUDNN_DATA_FLOAT, sm, mx, NULL, sub);
    void *e = gb_virtual(g, CUDNN_DATA_FLOAT, in.score), *sum = gb_virtual(g, CUDNN_DATA_FLOAT, in.rowvec);
    gb_pointwise(g, CUDNN_POINTWISE_EXP, CUDNN_DATA_FLOAT, sub, NULL, NULL, e);
    gb_reduction(g, CUDNN_REDUCE_TENSOR_ADD, e, sum);
    void *lg = gb_virtual(g, CUDNN_DATA_FLOAT, in.rowvec);
    gb_pointwise(g, CUDNN_POINTWISE_LOG, CUDNN_DATA_FLOAT, sum, NULL, NULL, lg);
    gb_pointwise(g, CUDNN_POINTWISE_ADD, CUDNN_DATA_FLOAT, mx, lg, NULL, in.stats);
    void *prob = gb_virtual(g, CUDNN_DATA_BFLOAT16, in.score);  // bmm2 reads P in the io type
    gb_pointwise(g, CUDNN_POINTWISE_DIV, CUDNN_DATA_FLOAT, e, sum, NULL, prob);
    gb_matmul(g, prob, in.v, o, in.seq_q, NULL, in.seq_kv);
}

static void gb_backward(GraphBuilder *g, const CudnnPlan *p) {
    SdpaInputs in;
    gb_inputs(g, p, &in);
    const int64_t B = p->B, T = p->T, NH = p->NH, NKV = p->NKV, HS = p->HS, ldo = NH * HS;
    const int64_t row = (NH + 2 * NKV) * HS;
    const int64_t od[4] = {B, NH, T, HS}, os[4] = {T * ldo, HS, ldo, 1}, qs[4] = {T * row, HS, row, 1};
    const int64_t kvd[4] = {B, NKV, T, HS}, vtd[4] = {B, NKV, HS, T}, vts[4] = {T * row, HS, 1, row};
    const int64_t one[4] = {1, 1, 1, 1}, full[4] = {B, NH, T, HS};
    const int64_t trans[4] = {B, NH, T, T}, trans_s[4] = {NH * T * T, T * T, 1, T};
    void *o = gb_tensor(g, UID_O, CUDNN_DATA_BFLOAT16, od, os);
    void *dO = gb_tensor(g, UID_DO, CUDNN_DATA_BFLOAT16, od, os);
    void *vt = gb_tensor(g, UID_V, CUDNN_DATA_BFLOAT16, vtd, vts);  // V^T for dO V^T
    void *dq = gb_tensor(g, UID_DQ, CUDNN_DATA_BFLOAT16, od, qs);
    void *dk = gb_tensor(g, UID_DK, CUDNN_DATA_BFLOAT16, kvd, qs);
    void *dv = gb_tensor(g, UID_DV, CUDNN_DATA_BFLOAT16, kvd, qs);
    void *ones = gb_tensor(g, UID_ONE, CUDNN_DATA_FLOAT, one, NULL, true);
    // workspace tensors (densely packed, as the engines assume)
    void *softmax_sum = gb_tensor(g, UID_SOFTMAX_SUM, CUDNN_DATA_FLOAT, in.rowvec, NULL);
    void *dq_accum = gb_tensor(g, UID_DQ_ACCUM, CUDNN_DATA_FLOAT, full, NULL);

    // softmax_sum = rowsum(dO * O) * 1 (the 1 is the pattern's dropout-scale slot)
    const int64_t doo_s[4] = {NH * T * HS, T * HS, NH * HS, 1};  // as cudnn-frontend lays it out
    void *doo = gb_tensor(g, 0, CUDNN_DATA_FLOAT, full, doo_s), *rs = gb_virtual(g, CUDNN_DATA_FLOAT, in.rowvec);
    gb_pointwise(g, CUDNN_POINTWISE_MUL, CUDNN_DATA_FLOAT, dO, o, NULL, doo);
    gb_reduction(g, CUDNN_REDUCE_TENSOR_ADD, doo, rs);
    gb_pointwise(g, CUDNN_POINTWISE_MUL, CUDNN_DATA_FLOAT, rs, ones, NULL, softmax_sum);

    // P = exp(scale Q K^T - stats), masked
    void *s = gb_virtual(g, CUDNN_DATA_FLOAT, in.score), *ss = gb_virtual(g, CUDNN_DATA_FLOAT, in.score);
    gb_matmul(g, in.q, in.kt, s, in.seq_q, in.seq_kv, NULL);
    gb_pointwise(g, CUDNN_POINTWISE_MUL, CUDNN_DATA_FLOAT, s, in.scale, NULL, ss);
    // In cudnn-frontend's order (the engines match the pattern): padding mask,
    // minus stats, (cuDNN 9.0-9.9: the padding mask again, as the frontend
    // re-applies it after the stats load), causal mask.
    void *pad = gb_padding_mask(g, &in, ss);
    void *sm = gb_virtual(g, CUDNN_DATA_FLOAT, in.score);
    gb_pointwise(g, CUDNN_POINTWISE_SUB, CUDNN_DATA_FLOAT, pad, in.stats, NULL, sm);
    if (g->api->version >= 90000 && g->api->version < 91000) sm = gb_padding_mask(g, &in, sm);
    void *masked = p->causal ? gb_causal_mask(g, &in, sm) : sm;
    void *prob = gb_virtual(g, CUDNN_DATA_FLOAT, in.score);
    gb_pointwise(g, CUDNN_POINTWISE_EXP, CUDNN_DATA_FLOAT, masked, NULL, NULL, prob);

    // dV = P^T dO (per query head, then summed over each kv group)
    void *pt = gb_tensor(g, 0, CUDNN_DATA_BFLOAT16, trans, trans_s);
    gb_reshape(g, prob, pt);
    if (NH == NKV) {
        gb_matmul(g, pt, dO, dv, in.seq_kv, NULL, in.seq_q);
    } else {
        void *dv_full = gb_virtual(g, CUDNN_DATA_BFLOAT16, full);
        gb_matmul(g, pt, dO, dv_full, in.seq_kv, NULL, in.seq_q);
        gb_reduction(g, CUDNN_REDUCE_TENSOR_ADD, dv_full, dv);
    }

    // dS = scale * P * (dO V^T - softmax_sum)
    void *dp = gb_virtual(g, CUDNN_DATA_FLOAT, in.score), *dps = gb_virtual(g, CUDNN_DATA_FLOAT, in.score);
    gb_matmul(g, dO, vt, dp, in.seq_q, in.seq_kv, NULL);
    gb_pointwise(g, CUDNN_POINTWISE_SUB, CUDNN_DATA_FLOAT, dp, softmax_sum, NULL, dps);
    void *ds0 = gb_virtual(g, CUDNN_DATA_FLOAT, in.score), *ds = gb_virtual(g, CUDNN_DATA_FLOAT, in.score);
    gb_pointwise(g, CUDNN_POINTWISE_MUL, CUDNN_DATA_FLOAT, dps, prob, NULL, ds0);
    gb_pointwise(g, CUDNN_POINTWISE_MUL, CUDNN_DATA_FLOAT, ds0, in.scale, NULL, ds);

    // dK = dS^T Q
    void *dst = gb_tensor(g, 0, CUDNN_DATA_BFLOAT16, trans, trans_s);
    gb_reshape(g, ds, dst);
    if (NH == NKV) {
        gb_matmul(g, dst, in.q, dk, in.seq_kv, NULL, in.seq_q);
    } else {
        void *dk_full = gb_virtual(g, CUDNN_DATA_BFLOAT16, full);
        gb_matmul(g, dst, in.q, dk_full, in.seq_kv, NULL, in.seq_q);
        gb_reduction(g, CUDNN_REDUCE_TENSOR_ADD, dk_full, dk);
    }

    // dQ = dS K, in fp32, then cast into dqkv
    void *kview = gb_tensor(g, 0, CUDNN_DATA_BFLOAT16, kvd, qs);
    gb_reshape(g, in.kt, kview);
    gb_matmul(g, ds, kview, dq_accum, in.seq_q, NULL, in.seq_kv);
    gb_pointwise(g, CUDNN_POINTWISE_IDENTITY, CUDNN_DATA_FLOAT, dq_accum, NULL, NULL, dq);
}

static void plan_release(const CudnnApi *api, CudnnPlan *p) {
    if (p->plan) api->backend_destroy_descriptor(p->plan);
    for (int i = p->n_descs - 1; i >= 0; i--) api->backend_destroy_descriptor(p->descs[i]);
    memset(p, 0, sizeof *p);
}

static void gb_build(GraphBuilder *g, CudnnPlan *p, const CudnnApi *api) {
    memset(g, 0, sizeof *g);
    g->p = p, g->api = api, g->next_uid = UID_VIRTUAL;
    if (p->backward) gb_backward(g, p);
    else gb_forward(g, p);
}

extern "C" int cuda_cudnn_graph_check(const CudnnApi *api, const AttnShape *s, int backward, char *msg, size_t cap) {
    CudnnPlan *p = (CudnnPlan *)calloc(1, sizeof *p);
    GraphBuilder *g = (GraphBuilder *)malloc(sizeof *g);
    CUDA_REQUIRE(p && g, "out of host memory");
    p->backward = backward, p->B = s->B, p->T = s->T, p->NH = s->NH, p->NKV = s->NKV, p->HS = s->HS;
    p->causal = s->causal != 0;
    gb_build(g, p, api);
    int rc = g->err[0] ? -1 : 0;
    snprintf(msg, cap, "%s", rc ? g->err : "");
    if (!rc) snprintf(msg, cap, "%d operations, %d descriptors", g->n_ops, p->n_descs);
    plan_release(api, p);
    free(p), free(g);
    return rc;
}

#ifdef LLAVA_EMU_CUDA_H

extern "C" const Ops *ops_cuda_cudnn_create(const CudnnApi *api, char *msg, size_t cap) {
    (void)api, (void)g_cudnn;
    snprintf(msg, cap, "attention_backend \"cudnn\" cannot run on the CPU emulator (cuDNN's kernels need a GPU); "
                       "use attention_backend \"flash\"");
    return NULL;
}

#else  // the real plugin: plans, then running them

// The operation graph, heuristics mode A, and the first engine config that
// finalizes into an execution plan. 0, or -1 with the reason in g->err.
static int gb_make_plan(GraphBuilder *g, void *handle) {
    void *graph = gb_desc(g, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
    GB_SET(g, graph, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, g->n_ops, g->ops);
    GB_SET(g, graph, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
    gb_finalize(g, graph, "operation graph");
    void *heur = gb_desc(g, CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
    cudnnBackendHeurMode_t mode = CUDNN_HEUR_MODE_A;
    GB_SET(g, heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &graph);
    GB_SET(g, heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode);
    gb_finalize(g, heur, "engine heuristics");
    if (g->err[0]) return -1;
    int64_t count = 0;
    int st = g->api->backend_get_attribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0,
                                           &count, NULL);
    if (st != CUDNN_STATUS_SUCCESS || count <= 0) {
        snprintf(g->err, sizeof g->err, "cuDNN's heuristics found no engine for this graph (%s)",
                 g->api->get_error_string(st));
        return -1;
    }
    void *cfgs[8];
    const int64_t want = count < 8 ? count : 8;
    for (int64_t i = 0; i < want; i++) cfgs[i] = gb_desc(g, CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
    if (g->err[0]) return -1;
    int64_t got = 0;
    st = g->api->backend_get_attribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, want, &got,
                                       cfgs);
    if (st != CUDNN_STATUS_SUCCESS) {
        snprintf(g->err, sizeof g->err, "engine configs: %s", g->api->get_error_string(st));
        return -1;
    }
    for (int64_t i = 0; i < got; i++) {
        void *plan = NULL;
        if (g->api->backend_create_descriptor(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, &plan) != CUDNN_STATUS_SUCCESS)
            continue;
        int ok = g->api->backend_set_attribute(plan, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1,
                                               &handle) == CUDNN_STATUS_SUCCESS &&
                 g->api->backend_set_attribute(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG,
                                               CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cfgs[i]) == CUDNN_STATUS_SUCCESS;
        st = ok ? g->api->backend_finalize(plan) : CUDNN_STATUS_BAD_PARAM;
        int64_t ws = 0, n = 0;
        if (st == CUDNN_STATUS_SUCCESS &&
            g->api->backend_get_attribute(plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1, &n,
                                          &ws) == CUDNN_STATUS_SUCCESS) {
            g->p->plan = plan;
            g->p->workspace = ws;
            return 0;
        }
        g->api->backend_destroy_descriptor(plan);
    }
    snprintf(g->err, sizeof g->err, "none of cuDNN's %lld engine configs finalized (last: %s)", (long long)got,
             g->api->get_error_string(st));
    return -1;
}

// The cached plan of this shape (built on first use); NULL when cuDNN cannot
// run it (said once per shape, then the flash kernel runs it).
static CudnnPlan *plan_get(const AttnShape *s, int backward) {
    CudnnState *c = &g_cudnn;
    for (int i = 0; i < MAX_PLANS; i++) {
        CudnnPlan *p = &c->plans[i];
        if (p->in_use && p->backward == backward && p->B == s->B && p->T == s->T && p->NH == s->NH &&
            p->NKV == s->NKV && p->HS == s->HS && p->causal == (s->causal != 0))
            return p->supported ? p : NULL;
    }
    CudnnPlan *p = &c->plans[c->next_victim];
    c->next_victim = (c->next_victim + 1) % MAX_PLANS;
    plan_release(&c->api, p);
    p->in_use = 1, p->backward = backward, p->B = s->B, p->T = s->T, p->NH = s->NH, p->NKV = s->NKV;
    p->HS = s->HS, p->causal = s->causal != 0;
    GraphBuilder g;
    gb_build(&g, p, &c->api);
    if (g.err[0] || gb_make_plan(&g, c->handle) != 0) {
        fprintf(stderr, "cuDNN attention: %s for B=%d T=%d NH=%d NKV=%d HS=%d %s %s: that shape uses the flash "
                        "kernel\n", g.err, s->B, s->T, s->NH, s->NKV, s->HS, s->causal ? "causal" : "bidirectional",
                backward ? "backward" : "forward");
        const int keep_key[7] = {p->backward, p->B, p->T, p->NH, p->NKV, p->HS, p->causal};
        plan_release(&c->api, p);
        p->in_use = 1, p->backward = keep_key[0], p->B = keep_key[1], p->T = keep_key[2], p->NH = keep_key[3];
        p->NKV = keep_key[4], p->HS = keep_key[5], p->causal = keep_key[6];
        return NULL;
    }
    p->supported = 1;
    return p;
}

// ---- running ------------------------------------------------------------------------------

enum { FALLBACK_HEAD_SIZE = 1, FALLBACK_ALIGNMENT = 2, FALLBACK_SEGMENTS = 4 };

static void say_fallback_once(int reason, const char *why) {
    if (g_cudnn.said_fallback & reason) return;
    g_cudnn.said_fallback |= reason;
    fprintf(stderr, "cuDNN attention: %s: those calls use the flash kernel (said once)\n", why);
}

// The seq-len tensors of this call on the device; 0 when cuDNN can run it,
// -1 (said once) when the flash kernel must: see the file comment.
static int prepare_lens(const AttnShape *s, const void *a, const void *b, const void *c, const void *d) {
    CudnnState *st = &g_cudnn;
    if (s->HS % 8 != 0 || s->HS > 128) return say_fallback_once(FALLBACK_HEAD_SIZE, "head size not a multiple of 8 or above 128"), -1;
    if (!aligned16(a, b, c, d)) return say_fallback_once(FALLBACK_ALIGNMENT, "a buffer not 16-byte aligned"), -1;
    if (s->B > st->lens_cap) {
        CUDA_CHECK(cudaStreamSynchronize(cuda_ctx()->stream));
        if (st->lens) CUDA_CHECK(cudaFree(st->lens));
        CUDA_CHECK(cudaMalloc(&st->lens, (size_t)3 * s->B * sizeof(int32_t)));
        st->lens_cap = s->B;
    }
    cuda_cudnn_seq_lens(st->lens, s->seg, s->B, s->T);
    if (!s->seg) return 0;
    // One small read per call with segment ids: whether every row is one
    // document + right padding decides the path (a host decision).
    int32_t *ok = (int32_t *)malloc((size_t)s->B * sizeof(int32_t));
    CUDA_REQUIRE(ok, "out of host memory");
    CUDA_CHECK(cudaMemcpyAsync(ok, st->lens + 2 * s->B, (size_t)s->B * sizeof(int32_t), cudaMemcpyDeviceToHost,
                               cuda_ctx()->stream));
    CUDA_CHECK(cudaStreamSynchronize(cuda_ctx()->stream));
    int all = 1;
    for (int i = 0; i < s->B; i++) all &= ok[i] != 0;
    free(ok);
    if (!all) say_fallback_once(FALLBACK_SEGMENTS, "packed documents, left padding or a row of padding alone");
    return all ? 0 : -1;
}

// Executes the plan; 0, or -1 after saying why, with the plan marked
// unsupported (the caller runs the flash kernel; so do later calls).
static int run_plan(CudnnPlan *p, const int64_t *uids, void **ptrs, int n, void *workspace) {
    const CudnnApi *api = &g_cudnn.api;
    void *pack = NULL;
    int st = api->backend_create_descriptor(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &pack);
    if (st == CUDNN_STATUS_SUCCESS)
        st = api->backend_set_attribute(pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, n, uids);
    if (st == CUDNN_STATUS_SUCCESS)
        st = api->backend_set_attribute(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, n, ptrs);
    if (st == CUDNN_STATUS_SUCCESS)
        st = api->backend_set_attribute(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &workspace);
    if (st == CUDNN_STATUS_SUCCESS) st = api->backend_finalize(pack);
    if (st == CUDNN_STATUS_SUCCESS) st = api->backend_execute(g_cudnn.handle, p->plan, pack);
    if (pack) api->backend_destroy_descriptor(pack);
    if (st != CUDNN_STATUS_SUCCESS) {
        fprintf(stderr, "cuDNN attention: executing the %s plan for B=%d T=%d NH=%d NKV=%d HS=%d failed: %s: that "
                        "shape uses the flash kernel\n", p->backward ? "backward" : "forward", p->B, p->T, p->NH,
                p->NKV, p->HS, api->get_error_string(st));
        p->supported = 0;
        return -1;
    }
    CUDA_LAUNCH_CHECK();
    return 0;
}

// The masked scores' value: -inf from cuDNN 9.10 on, the lowest finite float
// before (what cudnn-frontend's get_negative_inf_value passes: older engines
// expect a finite mask value in their softmax).
static float cudnn_mask_value(void) { return g_cudnn.api.version < 91000 ? -FLT_MAX : -INFINITY; }

static size_t align256(size_t n) { return (n + 255) & ~(size_t)255; }

// Runs cuDNN's forward graph; 0, or -1 when the flash kernel must run the call.
static int cudnn_forward_run(void *out, float *lse, const void *qkv, const AttnShape *s) {
    bf16 *q = (bf16 *)qkv;
    if (prepare_lens(s, out, qkv, q + (size_t)s->NH * s->HS, lse) != 0) return -1;
    CudnnPlan *p = plan_get(s, 0);
    if (!p) return -1;
    float scale = 1.0f / sqrtf((float)s->HS), neg_inf = cudnn_mask_value();
    const int64_t uids[] = {UID_Q, UID_K, UID_V, UID_O, UID_STATS, UID_SCALE, UID_NEG_INF, UID_SEQ_Q, UID_SEQ_KV};
    void *ptrs[] = {q, q + (size_t)s->NH * s->HS, q + (size_t)(s->NH + s->NKV) * s->HS, out, lse, &scale, &neg_inf,
                    g_cudnn.lens, g_cudnn.lens + s->B};
    return run_plan(p, uids, ptrs, 9, p->workspace ? cuda_scratch((size_t)p->workspace) : NULL);
}

static void cudnn_attention_forward(void *out, float *lse, const void *qkv, const AttnShape *s) {
    if (s->B == 0 || s->T == 0) return;
    if (cudnn_forward_run(out, lse, qkv, s) == 0) {
        g_cudnn_calls++;
        return;
    }
    g_flash_calls++;
    cuda_attention_forward(out, lse, qkv, s);
}

// Runs cuDNN's backward graph; 0, or -1 when the flash kernel must run the call.
static int cudnn_backward_run(void *dqkv, const void *dout, const void *qkv, const void *out, const float *lse,
                              const AttnShape *s) {
    if (prepare_lens(s, dqkv, dout, qkv, out) != 0) return -1;
    CudnnPlan *p = plan_get(s, 1);
    if (!p) return -1;
    const size_t M = (size_t)s->B * s->T, row = (size_t)(s->NH + 2 * s->NKV) * s->HS;
    const size_t rows = (size_t)s->B * s->NH * s->T;
    // workspace: [the plan's][softmax_sum: rows fp32][dQ_accum: rows x HS fp32]
    const size_t ws = align256((size_t)p->workspace), sum_bytes = align256(rows * sizeof(float));
    unsigned char *w = (unsigned char *)cuda_scratch(ws + sum_bytes + rows * s->HS * sizeof(float));
    // cuDNN < 9.6 expects dQ_accum zeroed; padding keys' dK/dV rows may be
    // skipped under the seq-len overrides: both start from zero.
    CUDA_CHECK(cudaMemsetAsync(w + ws + sum_bytes, 0, rows * s->HS * sizeof(float), cuda_ctx()->stream));
    if (s->seg) CUDA_CHECK(cudaMemsetAsync(dqkv, 0, M * row * sizeof(bf16), cuda_ctx()->stream));
    bf16 *q = (bf16 *)qkv, *dq = (bf16 *)dqkv;
    const size_t ko = (size_t)s->NH * s->HS, vo = (size_t)(s->NH + s->NKV) * s->HS;
    float scale = 1.0f / sqrtf((float)s->HS), neg_inf = cudnn_mask_value(), one = 1.0f;
    // the variant pack: uid -> pointer (by-value tensors point at host floats)
    const int64_t uids[] = {UID_Q,     UID_K,   UID_V,       UID_O,     UID_DO,     UID_STATS,
                            UID_DQ,    UID_DK,  UID_DV,      UID_SCALE, UID_ONE,    UID_NEG_INF,
                            UID_SEQ_Q, UID_SEQ_KV, UID_SOFTMAX_SUM, UID_DQ_ACCUM};
    void *ptrs[] = {q,     q + ko,  q + vo,  (void *)out, (void *)dout,  (void *)lse,
                    dq,    dq + ko, dq + vo, &scale,      &one,          &neg_inf,
                    g_cudnn.lens, g_cudnn.lens + s->B, w + ws, w + ws + sum_bytes};
    return run_plan(p, uids, ptrs, 16, w);
}

static void cudnn_attention_backward(void *dqkv, const void *dout, const void *qkv, const void *out, const float *lse,
                                     const AttnShape *s) {
    if (s->B == 0 || s->T == 0) return;
    if (cudnn_backward_run(dqkv, dout, qkv, out, lse, s) == 0) {
        g_cudnn_calls++;
        return;
    }
    g_flash_calls++;
    cuda_attention_backward(dqkv, dout, qkv, out, lse, s);
}

extern "C" const Ops *ops_cuda_cudnn_create(const CudnnApi *api, char *msg, size_t cap) {
    CudnnState *c = &g_cudnn;
    if (c->handle) return &c->table;
    const Ops *base = ops_cuda_create(msg, cap);
    if (!base) return NULL;
    c->api = *api;
    int st = c->api.create(&c->handle);
    if (st != CUDNN_STATUS_SUCCESS) {
        snprintf(msg, cap, "cudnnCreate (%s, cuDNN %zu): %s", c->api.path, c->api.version,
                 c->api.get_error_string(st));
        c->handle = NULL;
        return NULL;
    }
    st = c->api.set_stream(c->handle, cuda_ctx()->stream);
    if (st != CUDNN_STATUS_SUCCESS) {
        snprintf(msg, cap, "cudnnSetStream: %s", c->api.get_error_string(st));
        c->api.destroy(c->handle);
        c->handle = NULL;
        return NULL;
    }
    c->table = *base;
    c->table.attention_forward = cudnn_attention_forward;
    c->table.attention_backward = cudnn_attention_backward;
    return &c->table;
}

#endif  // LLAVA_EMU_CUDA_H
#endif  // LLAVA_HAVE_CUDNN_H
