// Shared by the GPU test program (test_ops.c: every op against the CPU op;
// gpu_bench.c: the timing table and the flash-attention benchmark).
//
// Inputs are random normals rounded to bf16, so the CPU reference (fp32) and
// the GPU (bf16) start from the same numbers and any difference is the GPU's
// arithmetic. Outputs are poisoned (all bytes 0xFF: NaN in bf16 and fp32)
// before each GPU run, so an element the kernel never writes fails.
#ifndef LLAVA_GPU_HARNESS_H
#define LLAVA_GPU_HARNESS_H

#include <stddef.h>
#include <stdint.h>

#include "common/rng.h"
#include "kernels/ops.h"

#define TOL_BF16 2e-2  // outputs stored in bf16
#define TOL_F32 1e-5   // fp32 outputs computed from the (bf16-exact) inputs in fp32

#define MAX_TRACKED 256
#define MAX_ROWS 96

typedef struct {
    char name[80];
    double seconds;
    double bytes;  // minimum bytes moved (each input read once, each output written once)
    double flops;
} TimingRow;

typedef struct {
    const Ops *cpu, *gpu;
    Rng rng;
    void *tracked[MAX_TRACKED];  // device buffers of the current test, freed by h_release
    int n_tracked;
    TimingRow rows[MAX_ROWS];
    int n_rows;
    int verbose;
} Harness;

// Host buffers (malloc'd, caller frees).
float *h_rand(Harness *h, size_t n, float scale);      // bf16-exact normals * scale
float *h_copy(const float *src, size_t n);
void h_round_bf16(float *x, size_t n);               // in place: what the GPU stores
void *d_offset(Harness *h, void *base, int off);     // base + off activation elements
int32_t *h_ids(Harness *h, size_t n, int lo, int hi);  // uniform in [lo, hi)

// Device buffers (tracked: freed by h_release at the end of a test).
void *d_act(Harness *h, const float *src, size_t n);   // bf16 copy of host fp32
void *d_f32(Harness *h, const float *src, size_t n);
void *d_i32(Harness *h, const int32_t *src, size_t n);
void *d_poison(Harness *h, size_t bytes);               // every byte 0xFF
void h_poison(Harness *h, void *dev, size_t bytes);
void h_release(Harness *h);

float *down_act(Harness *h, const void *dev, size_t n);
float *down_f32(Harness *h, const void *dev, size_t n);

// Records a comparison: ||gpu - cpu|| / ||cpu|| < tol, NaN fails; -inf must
// match -inf exactly (lse of rows with no visible key).
void h_check(Harness *h, const char *op, const char *what, const float *gpu, const float *cpu, size_t n, double tol);
void h_check_bitwise(Harness *h, const char *op, const float *a, const float *b, size_t n);

// Timing: median-free mean of `reps` runs after one warm-up, host clock
// around a synchronized loop (what the model sees, launch gaps included).
void h_add_row(Harness *h, const char *name, double seconds, double bytes, double flops);
void h_print_table(const Harness *h, double peak_gbs, double peak_tflops);

// Correctness suite (test_ops.c) and timings (gpu_bench.c).
void run_checks(Harness *h);
// The once-per-step optimizer ops (test_ops_optim.c); large = device sizes.
void run_optim_checks(Harness *h, int large);
// The attention ops, generic and flash, and the KV-cache ops (test_ops_attention.c).
void run_attention_checks(Harness *h, int large);
// cuDNN attention (test_ops_cudnn.c): its layout kernel on the emulator,
// cuDNN against the CPU op on a GPU with libcudnn (skipped, with the reason, without).
void run_cudnn_checks(Harness *h);
// The 128-row flash-attention kernels at HS 128 (test_ops_attention_tiles.c).
void run_attention_tiles_checks(Harness *h, int large);
// Fused cross-entropy, bucketed cuBLASLt plans, bf16 pixels (test_ops_fused.c).
void run_fused_checks(Harness *h, int large);
// bf16 parameter gradients (test_ops_bf16grad.c); large = device sizes.
void run_bf16grad_checks(Harness *h, int large);
void run_timings(Harness *h, double *peak_gbs, double *peak_tflops);
void run_flash_bench(Harness *h, double peak_tflops);

#endif
