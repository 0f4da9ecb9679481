// Vectorizable math for the CPU kernels.
//
// cpu_expf_nonpos: exp(x) for x <= 0 (softmax and cross-entropy arguments are
// always x - max), branch-free so that GCC vectorizes the loops that call it
// (libm's expf is a call per element). Cody-Waite range reduction
// x = n ln2 + r, |r| <= ln2/2, and Cephes' degree-6 polynomial: within 2 ulp
// of expf over [-87, 0]; exp(x) = 0 below -87.3 (where expf returns
// denormals, which add nothing to a sum that is >= 1); NaN stays NaN (x above
// 88 is clamped there: callers pass x <= 0, or tiny rounding excesses).
// Every step is an elementwise IEEE operation, so a loop gives the same bits
// whatever its vector width (the files are compiled without FP contraction
// (ISO C mode) and without reassociation).
//
// CPU_SIMD_CLONES: compiles a function for AVX-512, AVX2 and the baseline and
// picks one at load time (GCC function multi-versioning). Used on leaf loops
// only (no OpenMP inside: outlined regions do not inherit the clones). The
// clones give identical bits, by the argument above.
#ifndef LLAVA_CPU_MATH_H
#define LLAVA_CPU_MATH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define CPU_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CPU_SIMD_CLONES
#endif

static inline float cpu_expf_nonpos(float x) {
    const float lo = -87.3f, hi = 88.0f;
    float xc = x < lo ? lo : x > hi ? hi : x;
    xc = xc == xc ? xc : 0.0f;  // NaN: any finite value here (the cast below needs one), NaN returned at the end
    const float magic = 12582912.0f;                                   // 1.5 * 2^23: round to nearest
    float nf = (xc * 1.44269504088896341f + magic) - magic;          // round(x / ln2), in [-126, 127]
    float r = (xc - nf * 0.693359375f) - nf * -2.12194440e-4f;       // x - n ln2 in two parts
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * r * r + r + 1.0f;
    int32_t n = (int32_t)nf;
    uint32_t bits = (uint32_t)(n + 127) << 23;  // 2^n, n >= -126: a normal number
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    y *= scale;
    y = x < lo ? 0.0f : y;
    return x != x ? x : y;
}

// Max of x[0..n), n >= 1, in 16 lanes (max is exact in any order).
CPU_SIMD_CLONES
static inline float cpu_max_lanes(const float *x, int n) {
    float acc[16];
    for (int l = 0; l < 16; l++) acc[l] = x[0];
    int j = 0;
    for (; j + 16 <= n; j += 16)
        for (int l = 0; l < 16; l++) acc[l] = x[j + l] > acc[l] ? x[j + l] : acc[l];
    float mx = x[0];
    for (; j < n; j++) mx = x[j] > mx ? x[j] : mx;
    for (int l = 0; l < 16; l++) mx = acc[l] > mx ? acc[l] : mx;
    return mx;
}

// Sum of x[0..n) in double, in 8 interleaved lanes (lane l takes the
// elements j with j % 8 == l, in order) combined in a fixed order at the end:
// the same bits for any vector width, and 8 independent add chains instead
// of one (a sequential double sum costs an add's latency per element).
CPU_SIMD_CLONES
static inline double cpu_sum_lanes(const float *x, int n) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; l++) acc[l] += (double)x[j + l];
    for (int l = 0; j < n; j++, l++) acc[l] += (double)x[j];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// Sum of x^2 in double, in the same 8 lanes.
CPU_SIMD_CLONES
static inline double cpu_sumsq_lanes(const float *x, size_t n) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; l++) acc[l] += (double)x[j + l] * x[j + l];
    for (int l = 0; j < n; j++, l++) acc[l] += (double)x[j] * x[j];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

#endif
