// The op table: every compute op the model needs, forward and backward side by
// side. The model (model/model.c) is written once against this table; each
// backend fills it in (kernels/cpu: fp32 reference; kernels/cuda: bf16).
//
// Buffer conventions
// - `void *` buffers hold the backend's activation/parameter dtype ("act":
//   fp32 on the CPU, bf16 on CUDA). `float *` buffers are always fp32: norm
//   statistics, the log-sum-exp of attention, losses, optimizer state.
// - Parameter gradients are in the table's grad dtype (`grad_size` bytes): fp32
//   on every backend's own table; bf16 on the table `bf16_grads` points to
//   (CUDA: grad_dtype "bf16", half the gradient memory). The backward ops take
//   them as `void *`; the other functions of a bf16-gradient table are the
//   fp32 table's, so its fp32 path is bitwise the same. `int32_t *` buffers are token ids, targets, positions and
//   segment ids. All pointers are backend memory (host for CPU, device for CUDA).
// - Shapes use short names: B batch, T sequence, M = B*T rows, C channels,
//   NH query heads, NKV key/value heads, HS head size, V vocabulary, FF MLP
//   width, K/N matmul inner/output sizes.
// - Backward ops accumulate into parameter gradients (`+=`, so accumulation
//   steps add up) and skip them when the pointer is NULL (frozen tensors).
//   Activation gradients are written (`=`), except where marked `+=`: the
//   norms' input gradient, which lands on the residual stream.
// - Every op is deterministic: the same inputs give bitwise the same outputs
//   (no float atomics), which is what makes recompute bitwise-exact.
#ifndef LLAVA_OPS_H
#define LLAVA_OPS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// One tensor of a multi-tensor AdamW step (adamw_update_multi): the part of a
// parameter, its fp32 master (or NULL), gradient and moments, n elements each,
// the parameter group whose lr / weight decay apply, and its seed (0: round to
// nearest). grad_bf16 = 1: grad points to bf16 elements instead (a
// bf16-gradient table's buffers, read directly when no fp32 accumulator is
// kept; backends without bf16 gradients refuse it).
typedef struct {
    void *param;
    float *master;
    const float *grad;
    float *m, *v;
    size_t n;
    int group;
    uint32_t seed;
    int grad_bf16;
} AdamwTensor;
typedef struct {
    float lr, weight_decay;
} AdamwGroup;

// Attention layout: the fused projection output qkv[M, (NH + 2*NKV) * HS] holds
// for each row the NH query heads, then NKV key heads, then NKV value heads.
// Segment ids seg[M] (NULL = one document per row, no padding):
//   0 = padding: never attended to as a key;
//   s > 0 = document s: a query in document s sees only keys of document s.
//   A padding query sees every non-padding key (as transformers does for
//   right-padded batches); a query with no visible key outputs zeros.
typedef struct {
    int B, T, NH, NKV, HS;
    int causal;           // 1 for the LLM, 0 for the vision tower
    const int32_t *seg;   // [M] or NULL
} AttnShape;

typedef struct Ops {
    const char *name;     // "cpu", "cuda"
    size_t act_size;      // bytes per act element: 4 (fp32) or 2 (bf16)
    size_t grad_size;     // bytes per parameter-gradient element: 4 (fp32) or 2 (bf16)
    // The same backend with bf16 parameter gradients (grad_size 2), or NULL
    // when it has none (the CPU: its fp32 gradients are the reference).
    const struct Ops *bf16_grads;

    // ---- memory -------------------------------------------------------------
    void *(*alloc)(size_t bytes);                // zero-filled; aborts on OOM
    void (*free)(void *p);
    void (*zero)(void *p, size_t bytes);
    void (*copy)(void *dst, const void *src, size_t bytes);  // backend to backend
    // host fp32 <-> backend act (converted), host <-> backend fp32/int32 (raw)
    void (*upload_act)(void *dst, const float *src, size_t n);
    void (*download_act)(float *dst, const void *src, size_t n);
    void (*upload)(void *dst, const void *src, size_t bytes);
    void (*download)(void *dst, const void *src, size_t bytes);
    void (*synchronize)(void);

    // ---- linear layers ------------------------------------------------------
    // out[M,N] = inp[M,K] @ weight[N,K]^T (+ bias[N] when not NULL)
    void (*matmul_forward)(void *out, const void *inp, const void *weight, const void *bias,
                           int M, int K, int N);
    // dinp[M,K] = dout[M,N] @ weight[N,K]            (skipped when dinp NULL)
    // dweight[N,K] += dout^T @ inp, dbias[N] += sum_rows dout   (NULL = frozen;
    // grad dtype, products summed in fp32 and added with one rounding)
    void (*matmul_backward)(void *dinp, void *dweight, void *dbias, const void *dout,
                            const void *inp, const void *weight, int M, int K, int N);

    // ---- normalization ------------------------------------------------------
    // out = (inp - mean) * rstd * weight + bias, biased variance, fp32 stats.
    void (*layernorm_forward)(void *out, float *mean, float *rstd, const void *inp,
                              const void *weight, const void *bias, int M, int C, float eps);
    // dinp[M,C] +=, dweight[C] +=, dbias[C] += (NULL = frozen; grad dtype)
    void (*layernorm_backward)(void *dinp, void *dweight, void *dbias, const void *dout,
                               const void *inp, const void *weight, const float *mean,
                               const float *rstd, int M, int C);
    // out = inp * rsqrt(mean(inp^2) + eps) * weight
    void (*rmsnorm_forward)(void *out, float *rstd, const void *inp, const void *weight,
                            int M, int C, float eps);
    // dinp[M,C] +=, dweight[C] += (NULL = frozen; grad dtype)
    void (*rmsnorm_backward)(void *dinp, void *dweight, const void *dout, const void *inp,
                             const void *weight, const float *rstd, int M, int C);
    // Fused: res[M,C] = a + b (residual_forward's rounding), then
    // out = rmsnorm(res) with rstd: bitwise residual_forward followed by
    // rmsnorm_forward when every pointer is 16-byte aligned (the model's
    // buffers are), one pass less over res. res may alias a or b. A backend
    // may leave it NULL: the model then calls the two ops.
    void (*residual_rmsnorm_forward)(void *res, void *out, float *rstd, const void *a, const void *b,
                                     const void *weight, int M, int C, float eps);

    // ---- elementwise --------------------------------------------------------
    void (*residual_forward)(void *out, const void *a, const void *b, size_t n);  // out = a + b
    void (*accumulate)(void *dst, const void *src, size_t n);                     // dst += src
    // gelu: exact erf form 0.5 x (1 + erf(x / sqrt 2)); dinp may alias dout.
    void (*gelu_forward)(void *out, const void *inp, size_t n);
    void (*gelu_backward)(void *dinp, const void *inp, const void *dout, size_t n);
    // quick_gelu: x * sigmoid(1.702 x)
    void (*quick_gelu_forward)(void *out, const void *inp, size_t n);
    void (*quick_gelu_backward)(void *dinp, const void *inp, const void *dout, size_t n);
    // out[M,FF] = silu(gateup[:, :FF]) * gateup[:, FF:]  (gateup[M, 2FF])
    void (*swiglu_forward)(void *out, const void *gateup, int M, int FF);
    // dgateup[M,2FF] = gradients of gate and up halves from dout[M,FF]
    void (*swiglu_backward)(void *dgateup, const void *dout, const void *gateup, int M, int FF);
    // swiglu_backward that also writes out[M,FF] = what swiglu_forward writes,
    // bitwise (skipped when out is NULL), from one read of gateup: backward's
    // recompute of the down projection's input fused with the gradient.
    // Optional (NULL: the model calls swiglu_forward, then swiglu_backward).
    void (*swiglu_backward_recompute)(void *dgateup, void *out, const void *dout, const void *gateup, int M, int FF);

    // ---- rotary embeddings (half-split layout) ------------------------------
    // Rotates the q and k heads of qkv[M, (NH+2NKV)*HS] in place by
    // angle = pos[m] * theta^(-2i/HS); v is untouched.
    void (*rope_forward)(void *qkv, const int32_t *pos, int M, int NH, int NKV, int HS, float theta);
    // The inverse rotation applied in place to the q and k parts of dqkv.
    void (*rope_backward)(void *dqkv, const int32_t *pos, int M, int NH, int NKV, int HS, float theta);

    // ---- attention ----------------------------------------------------------
    // out[M, NH*HS] = softmax(q k^T / sqrt(HS) + mask) v, lse[B, NH, T] saved
    // (natural log of the softmax denominator, -inf for rows with no key).
    void (*attention_forward)(void *out, float *lse, const void *qkv, const AttnShape *s);
    // dqkv[M, (NH+2NKV)*HS] = (written) gradients of q, k, v.
    void (*attention_backward)(void *dqkv, const void *dout, const void *qkv, const void *out,
                               const float *lse, const AttnShape *s);

    // ---- attention over a KV cache (generation) -----------------------------
    // A cache holds, for each of B sequences, the rope'd keys and the values of
    // the tokens seen so far: k_cache and v_cache are [B * Tcap, NKV*HS] each,
    // sequence b in rows b*Tcap .. b*Tcap + Tcap - 1, position t in row b*Tcap + t.
    //
    // kv_cache_write: copies the k heads and the v heads of qkv[M, (NH+2NKV)*HS]
    // row m into row slots[m] of k_cache and v_cache; slots[m] < 0 skips the row.
    void (*kv_cache_write)(void *k_cache, void *v_cache, const void *qkv, const int32_t *slots, int M, int NH,
                           int NKV, int HS);
    // attention_cached: out[B*Tq, NH*HS] for Tq new query rows per sequence
    // whose keys and values are already in the cache. lens[B] (int32, backend
    // memory) = valid cache rows of each sequence, the new ones included; new
    // row t (0 <= t < Tq) of sequence b sits at position p = lens[b] - Tq + t
    // and attends, causally, to cache rows 0..p of its sequence (requires
    // Tq <= lens[b] <= Tcap). The queries are the NH query heads of
    // qkv[B*Tq, (NH+2NKV)*HS] (the k and v parts of qkv are not read). GQA as
    // in attention_forward (query head h uses kv head h / (NH/NKV)), scale
    // HS^-0.5, fp32 softmax. Equals attention_forward's output for the same
    // rows of the full causal sequence. Tq = 1 is the decode step.
    void (*attention_cached)(void *out, const void *qkv, const void *k_cache, const void *v_cache,
                             const int32_t *lens, int B, int Tq, int Tcap, int NH, int NKV, int HS);

    // ---- embeddings, gathers ------------------------------------------------
    // out[M,C] = table[ids[m]]; ids[m] < 0 gives a zero row.
    void (*embedding_forward)(void *out, const int32_t *ids, const void *table, int M, int C);
    // dtable[V,C] += rows of dout for ids >= 0 (grad dtype). Deterministic.
    void (*embedding_backward)(void *dtable, const void *dout, const int32_t *ids, int M, int C, int V);
    // dst[rows[i]] = src[i] for i < n (rows of C)
    void (*scatter_rows)(void *dst, const void *src, const int32_t *rows, int n, int C);
    // dst[i] = src[rows[i]] for i < n
    void (*gather_rows)(void *dst, const void *src, const int32_t *rows, int n, int C);

    // ---- vision embeddings (forward only: the vision tower is frozen) --------
    // patches[N*NP, 3*P*P] from pixels[N, 3, S, S] (act), NP = (S/P)^2, patch
    // index row-major, features ordered (channel, ky, kx) like Conv2d weights.
    void (*patchify)(void *patches, const void *pixels, int N, int S, int P);
    // out[N, NP+1, D]: row 0 = cls + pos[0], row 1+p = patch_emb[N, p] + pos[1+p]
    void (*vision_embed)(void *out, const void *patch_emb, const void *cls, const void *pos,
                         int N, int NP, int D);

    // ---- loss ---------------------------------------------------------------
    // losses[M] = -log softmax(logits[m])[targets[m]], 0 where targets[m] < 0.
    // When dlogits is not NULL also writes dlogits[M,V] = (softmax - onehot) *
    // dloss_scale (0 rows for ignored targets). dlogits may alias logits: the
    // probabilities are never stored anywhere else.
    void (*cross_entropy)(float *losses, void *dlogits, const void *logits, const int32_t *targets,
                          float dloss_scale, int M, int V);
    // Optional (NULL: download the losses and add them on the host). *sum
    // (one double, backend memory) = losses[0] + ... + losses[n-1], added in
    // index order in double from 0.0: the host loop's bits, left on the device
    // so the trainer reads every micro-batch's sum at once.
    void (*sum_losses)(double *sum, const float *losses, int n);

    // ---- modern backbones (SigLIP towers, scaled RoPE) ------------------------
    // gelu_tanh: transformers' gelu_pytorch_tanh,
    // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); dinp may alias dout.
    void (*gelu_tanh_forward)(void *out, const void *inp, size_t n);
    void (*gelu_tanh_backward)(void *dinp, const void *inp, const void *dout, size_t n);
    // rope_forward/backward with the inverse frequencies given:
    // inv_freq[HS/2] (fp32, backend memory) as the rope_type (linear, llama3)
    // computes them; angle = pos[m] * inv_freq[i] in fp32.
    void (*rope_freq_forward)(void *qkv, const int32_t *pos, const float *inv_freq, int M, int NH, int NKV, int HS);
    void (*rope_freq_backward)(void *dqkv, const int32_t *pos, const float *inv_freq, int M, int NH, int NKV,
                               int HS);
    // ---- LoRA (model/lora.c) -------------------------------------------------
    // Inverted dropout: out[i] = keep(seed, i) ? inp[i] / (1 - p) : 0, with the
    // mask of kernels/lora_mask.h (a pure function of seed and i, the same on
    // every backend). Its backward is the same call on the gradient. out may
    // alias inp. 0 <= p < 1.
    void (*dropout)(void *out, const void *inp, size_t n, float p, uint64_t seed);
    // dst[m, col0 + j] += scale * src[m, j] for m < M, j < N; dst has ld columns.
    void (*add_columns)(void *dst, int ld, int col0, const void *src, int M, int N, float scale);
    // dst[m, j] = scale * src[m, col0 + j]; src has ld columns, dst N.
    void (*copy_columns)(void *dst, const void *src, int ld, int col0, int M, int N, float scale);

    // ---- optimizer ----------------------------------------------------------
    // Sum of squares of grad[n], reduced in a fixed order (deterministic).
    double (*sum_squares)(const float *grad, size_t n);
    // AdamW step on n elements. master (fp32) may be NULL when param is itself
    // fp32 (CPU). grad_scale multiplies the gradient first (clipping factor).
    // Bias corrections use `step` (1-based). seed != 0 enables stochastic
    // rounding when writing low-precision params.
    void (*adamw_update)(void *param, float *master, const float *grad, float *m, float *v, size_t n,
                         float lr, float beta1, float beta2, float eps, float weight_decay,
                         float grad_scale, int step, uint32_t seed);
    // Optional (NULL: adamw_update once per tensor). The step on every tensor
    // of the flat trainable space in one pass: bitwise equal to calling
    // adamw_update(t.param, t.master, t.grad, t.m, t.v, t.n, groups[t.group].lr,
    // beta1, beta2, eps, groups[t.group].weight_decay, grad_scale, step, t.seed)
    // for each t in order (CUDA: one launch per optimizer step).
    void (*adamw_update_multi)(const AdamwTensor *tensors, int count, const AdamwGroup *groups, int n_groups,
                               float beta1, float beta2, float eps, float grad_scale, int step);
    // Optional (NULL: sum_squares per buffer). sum_squares of each buffer,
    // added in order into a double starting at 0.0: the same bits as the host
    // loop, with a single read back from the device.
    double (*sum_squares_multi)(const float *const *grads, const size_t *n, int count);

    // ---- bf16 parameter gradients (bf16_grads tables only; NULL elsewhere) ---
    // sum_squares_multi over bf16 buffers: each element widened to fp32 and
    // squared and added as sum_squares does (fp32 per thread, fp64 across).
    double (*sum_squares_bf16_multi)(const void *const *grads, const size_t *n, int count);
    // acc[i] += grad[i] (bf16 widened, fp32 add), then grad[i] = 0, for i < n:
    // folds one micro-batch's bf16 gradient into the fp32 accumulator.
    void (*grad_accumulate)(float *acc, void *grad, size_t n);
} Ops;

// The CPU backend (always available).
const Ops *ops_cpu(void);

#ifdef __cplusplus
}
#endif

#endif
