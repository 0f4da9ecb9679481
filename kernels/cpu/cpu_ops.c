// Memory functions of the CPU backend and the op table itself.
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "kernels/cpu/cpu_ops.h"

static void *cpu_alloc(size_t bytes) {
    // 64-byte alignment keeps BLAS and vector loops on whole cache lines.
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) FATAL("out of memory allocating %zu bytes", bytes);
    memset(p, 0, bytes);
    return p;
}

static void cpu_free(void *p) { free(p); }
static void cpu_zero(void *p, size_t bytes) { memset(p, 0, bytes); }
static void cpu_copy(void *dst, const void *src, size_t bytes) { memmove(dst, src, bytes); }
static void cpu_upload_act(void *dst, const float *src, size_t n) { memmove(dst, src, n * sizeof(float)); }
static void cpu_download_act(float *dst, const void *src, size_t n) { memmove(dst, src, n * sizeof(float)); }
static void cpu_synchronize(void) {}

static const Ops CPU_OPS = {
    .name = "cpu",
    .act_size = sizeof(float),
    .grad_size = sizeof(float),
    .alloc = cpu_alloc,
    .free = cpu_free,
    .zero = cpu_zero,
    .copy = cpu_copy,
    .upload_act = cpu_upload_act,
    .download_act = cpu_download_act,
    .upload = cpu_copy,
    .download = cpu_copy,
    .synchronize = cpu_synchronize,
    .matmul_forward = cpu_matmul_forward,
    .matmul_backward = cpu_matmul_backward,
    .layernorm_forward = cpu_layernorm_forward,
    .layernorm_backward = cpu_layernorm_backward,
    .rmsnorm_forward = cpu_rmsnorm_forward,
    .rmsnorm_backward = cpu_rmsnorm_backward,
    .residual_rmsnorm_forward = cpu_residual_rmsnorm_forward,
    .residual_forward = cpu_residual_forward,
    .accumulate = cpu_accumulate,
    .gelu_forward = cpu_gelu_forward,
    .gelu_backward = cpu_gelu_backward,
    .quick_gelu_forward = cpu_quick_gelu_forward,
    .quick_gelu_backward = cpu_quick_gelu_backward,
    .swiglu_forward = cpu_swiglu_forward,
    .swiglu_backward = cpu_swiglu_backward,
    .swiglu_backward_recompute = cpu_swiglu_backward_recompute,
    .rope_forward = cpu_rope_forward,
    .rope_backward = cpu_rope_backward,
    .attention_forward = cpu_attention_forward,
    .attention_backward = cpu_attention_backward,
    .kv_cache_write = cpu_kv_cache_write,
    .attention_cached = cpu_attention_cached,
    .embedding_forward = cpu_embedding_forward,
    .embedding_backward = cpu_embedding_backward,
    .scatter_rows = cpu_scatter_rows,
    .gather_rows = cpu_gather_rows,
    .patchify = cpu_patchify,
    .vision_embed = cpu_vision_embed,
    .cross_entropy = cpu_cross_entropy,
    .gelu_tanh_forward = cpu_gelu_tanh_forward,
    .gelu_tanh_backward = cpu_gelu_tanh_backward,
    .rope_freq_forward = cpu_rope_freq_forward,
    .rope_freq_backward = cpu_rope_freq_backward,
    .dropout = cpu_dropout,
    .add_columns = cpu_add_columns,
    .copy_columns = cpu_copy_columns,
    .sum_squares = cpu_sum_squares,
    .adamw_update = cpu_adamw_update,
    .sum_losses = cpu_sum_losses,
    .adamw_update_multi = cpu_adamw_update_multi,
    .sum_squares_multi = cpu_sum_squares_multi,
};

const Ops *ops_cpu(void) { return &CPU_OPS; }
