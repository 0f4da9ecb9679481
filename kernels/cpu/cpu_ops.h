// The CPU backend's functions, gathered into the op table by cpu_ops.c.
// fp32 everywhere; matmuls through BLAS, the rest with OpenMP. This is the
// reference every other backend is tested against. Signatures and shape
// conventions are documented once, in kernels/ops.h.
#ifndef LLAVA_CPU_OPS_H
#define LLAVA_CPU_OPS_H

#include "kernels/ops.h"

void cpu_matmul_forward(void *out, const void *inp, const void *weight, const void *bias, int M, int K, int N);
void cpu_matmul_backward(void *dinp, void *dweight, void *dbias, const void *dout, const void *inp,
                         const void *weight, int M, int K, int N);

void cpu_layernorm_forward(void *out, float *mean, float *rstd, const void *inp, const void *weight,
                           const void *bias, int M, int C, float eps);
void cpu_layernorm_backward(void *dinp, void *dweight, void *dbias, const void *dout, const void *inp,
                            const void *weight, const float *mean, const float *rstd, int M, int C);
void cpu_rmsnorm_forward(void *out, float *rstd, const void *inp, const void *weight, int M, int C, float eps);
void cpu_residual_rmsnorm_forward(void *res, void *out, float *rstd, const void *a, const void *b, const void *weight,
                                  int M, int C, float eps);
void cpu_rmsnorm_backward(void *dinp, void *dweight, const void *dout, const void *inp, const void *weight,
                          const float *rstd, int M, int C);

void cpu_residual_forward(void *out, const void *a, const void *b, size_t n);
void cpu_accumulate(void *dst, const void *src, size_t n);
void cpu_gelu_forward(void *out, const void *inp, size_t n);
void cpu_gelu_backward(void *dinp, const void *inp, const void *dout, size_t n);
void cpu_quick_gelu_forward(void *out, const void *inp, size_t n);
void cpu_quick_gelu_backward(void *dinp, const void *inp, const void *dout, size_t n);
void cpu_swiglu_forward(void *out, const void *gateup, int M, int FF);
void cpu_swiglu_backward(void *dgateup, const void *dout, const void *gateup, int M, int FF);
void cpu_swiglu_backward_recompute(void *dgateup, void *out, const void *dout, const void *gateup, int M, int FF);
void cpu_gelu_tanh_forward(void *out, const void *inp, size_t n);
void cpu_gelu_tanh_backward(void *dinp, const void *inp, const void *dout, size_t n);
void cpu_rope_freq_forward(void *qkv, const int32_t *pos, const float *inv_freq, int M, int NH, int NKV, int HS);
void cpu_rope_freq_backward(void *dqkv, const int32_t *pos, const float *inv_freq, int M, int NH, int NKV, int HS);
void cpu_rope_forward(void *qkv, const int32_t *pos, int M, int NH, int NKV, int HS, float theta);
void cpu_rope_backward(void *dqkv, const int32_t *pos, int M, int NH, int NKV, int HS, float theta);

void cpu_attention_forward(void *out, float *lse, const void *qkv, const AttnShape *s);
void cpu_attention_backward(void *dqkv, const void *dout, const void *qkv, const void *out, const float *lse,
                            const AttnShape *s);

void cpu_kv_cache_write(void *k_cache, void *v_cache, const void *qkv, const int32_t *slots, int M, int NH,
                        int NKV, int HS);
void cpu_attention_cached(void *out, const void *qkv, const void *k_cache, const void *v_cache,
                          const int32_t *lens, int B, int Tq, int Tcap, int NH, int NKV, int HS);

void cpu_embedding_forward(void *out, const int32_t *ids, const void *table, int M, int C);
void cpu_embedding_backward(void *dtable, const void *dout, const int32_t *ids, int M, int C, int V);
void cpu_scatter_rows(void *dst, const void *src, const int32_t *rows, int n, int C);
void cpu_gather_rows(void *dst, const void *src, const int32_t *rows, int n, int C);
void cpu_patchify(void *patches, const void *pixels, int N, int S, int P);
void cpu_vision_embed(void *out, const void *patch_emb, const void *cls, const void *pos, int N, int NP, int D);

void cpu_cross_entropy(float *losses, void *dlogits, const void *logits, const int32_t *targets,
                       float dloss_scale, int M, int V);

void cpu_dropout(void *out, const void *inp, size_t n, float p, uint64_t seed);
void cpu_add_columns(void *dst, int ld, int col0, const void *src, int M, int N, float scale);
void cpu_copy_columns(void *dst, const void *src, int ld, int col0, int M, int N, float scale);

double cpu_sum_squares(const float *grad, size_t n);
void cpu_adamw_update(void *param, float *master, const float *grad, float *m, float *v, size_t n, float lr,
                      float beta1, float beta2, float eps, float weight_decay, float grad_scale, int step,
                      uint32_t seed);
void cpu_sum_losses(double *sum, const float *losses, int n);
void cpu_adamw_update_multi(const AdamwTensor *tensors, int count, const AdamwGroup *groups, int n_groups,
                            float beta1, float beta2, float eps, float grad_scale, int step);
double cpu_sum_squares_multi(const float *const *grads, const size_t *n, int count);

// Shared by attention forward and backward: may query i see key j?
static inline int cpu_attn_visible(const int32_t *seg_row, int causal, int i, int j) {
    if (causal && j > i) return 0;
    if (!seg_row) return 1;
    if (seg_row[j] == 0) return 0;
    return seg_row[i] == 0 || seg_row[i] == seg_row[j];
}

#endif
