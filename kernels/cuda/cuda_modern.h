// The modern backbones' CUDA ops (cuda_modern.cu): tanh GELU and table RoPE.
#ifndef LLAVA_CUDA_MODERN_H
#define LLAVA_CUDA_MODERN_H

#include "kernels/ops.h"

// Sets gelu_tanh_forward/backward and rope_freq_forward/backward in o.
void cuda_modern_fill(Ops *o);

#endif
