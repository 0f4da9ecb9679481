// The dropout mask of LoRA as a pure function of (seed, element index):
// element i is kept when the top 32 bits of a splitmix64 hash of seed and i
// are at or above p * 2^32. Header-only so the CPU backend, the CUDA kernels
// (host/device inline) and the tests share one definition.
#ifndef LLAVA_LORA_MASK_H
#define LLAVA_LORA_MASK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __CUDACC__
#define LORA_MASK_FN __host__ __device__ static inline
#else
#define LORA_MASK_FN static inline
#endif

LORA_MASK_FN uint64_t lora_mask_hash(uint64_t seed, uint64_t i) {
    uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// p in [0, 1): elements whose 32-bit draw is below p * 2^32 are dropped.
LORA_MASK_FN uint32_t lora_mask_threshold(float p) {
    double t = (double)p * 4294967296.0;
    return t >= 4294967295.0 ? 4294967295u : (uint32_t)t;
}

LORA_MASK_FN int lora_mask_keep(uint64_t seed, size_t i, uint32_t threshold) {
    return (uint32_t)(lora_mask_hash(seed, (uint64_t)i) >> 32) >= threshold;
}

#endif
