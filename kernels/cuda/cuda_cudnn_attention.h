// cuDNN's fused attention as the CUDA backend's alternative attention
// (`attention_backend: cudnn`), kernels/cuda/cuda_cudnn_attention.cu. C-callable.
#ifndef LLAVA_CUDA_CUDNN_ATTENTION_H
#define LLAVA_CUDA_CUDNN_ATTENTION_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/cudnn_lib.h"
#include "kernels/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

// The CUDA op table with attention_forward/backward through cuDNN's SDPA
// graphs (every other op the same), after ops_cuda_create succeeded; api is
// copied. NULL with the reason in msg: the backend is not initialized, this
// build has no cuDNN headers, or it is the CPU emulator (which cannot run
// cuDNN's kernels). Cases cuDNN's masks cannot express go to the flash kernel
// (said once on stderr).
const Ops *ops_cuda_cudnn_create(const CudnnApi *api, char *msg, size_t cap);

// Builds the forward (backward = 0) or backward graph of this shape and
// finalizes every descriptor in it, short of the operation graph and its
// plan (those need a GPU); then releases them. 0 (msg: how many operations),
// -1 with cuDNN's complaint in msg, -2 when this build has no cuDNN headers.
// Runs without a GPU: the emulator's check that the graphs are well formed
// for the cuDNN loaded.
int cuda_cudnn_graph_check(const CudnnApi *api, const AttnShape *s, int backward, char *msg, size_t cap);

// Attention calls so far that ran cuDNN's graphs and that went to the flash
// kernel instead (tests: a check must know which ran).
void ops_cuda_cudnn_counts(long *cudnn_calls, long *flash_calls);

// The per-row sequence lengths the graphs take, from segment ids (kernels/ops.h
// AttnShape): lens[0..B) = T (every query row is computed), lens[B..2B) = the
// keys of the row, lens[2B..3B) = 1 when the row is expressible by a padding
// mask: one document (ids s > 0) on rows 0..L-1, L >= 1, then padding (0).
// seg NULL: every row T keys, expressible. Device memory, on the ops' stream.
void cuda_cudnn_seq_lens(int32_t *lens, const int32_t *seg, int B, int T);

#ifdef __cplusplus
}
#endif

#endif
