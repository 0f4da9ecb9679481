// The CUDA backend's entry point: device initialization, the context, memory
// functions and the op table. Kernels live in the other kernels/cuda/*.cu files.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_internal.cuh"
#include "kernels/cuda/cuda_modern.h"

// cuBLASLt's recommended workspace on Hopper (smaller cards need less; 32 MiB
// is noise next to activations).
#define LT_WORKSPACE_BYTES (32u << 20)

static CudaContext g_ctx;
static bool g_ready = false;
static Ops g_ops;
static Ops g_ops_bf16g;  // g_ops with bf16 parameter gradients (grad_dtype "bf16")

// Like common/util.c's fatal_at, repeated here so that llava_cuda needs no
// symbol from llava_core (the two static libraries link in that order).
void cuda_fatal(const char *file, int line, const char *fmt, ...) {
    fflush(stdout);
    fprintf(stderr, "llava: CUDA error at %s:%d: ", file, line);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

CudaContext *cuda_ctx(void) { return &g_ctx; }

void *cuda_scratch(size_t bytes) {
    CudaContext *c = &g_ctx;
    if (bytes <= c->scratch_size) return c->scratch;
    size_t want = bytes + bytes / 4;  // grow with headroom to avoid repeated reallocation
    if (c->scratch) CUDA_CHECK(cudaFree(c->scratch));  // cudaFree waits for pending work
    c->scratch = NULL;
    c->scratch_size = 0;
    cudaError_t e = cudaMalloc(&c->scratch, want);
    if (e != cudaSuccess) cuda_fatal(__FILE__, __LINE__, "out of GPU memory for %zu bytes of scratch", want);
    c->scratch_size = want;
    return c->scratch;
}

// ---- memory ---------------------------------------------------------------------------

static void *cu_alloc(size_t bytes) {
    void *p = NULL;
    size_t n = bytes < 256 ? 256 : bytes;  // never NULL, even for empty tensors
    cudaError_t e = cudaMalloc(&p, n);
    if (e != cudaSuccess) {
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        cuda_fatal(__FILE__, __LINE__, "out of GPU memory allocating %zu bytes (%zu of %zu bytes free): %s", n,
                   free_b, total_b, cudaGetErrorString(e));
    }
    CUDA_CHECK(cudaMemsetAsync(p, 0, n, g_ctx.stream));
    return p;
}

static void cu_free(void *p) {
    if (p) CUDA_CHECK(cudaFree(p));
}

static void cu_zero(void *p, size_t bytes) {
    if (bytes) CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, g_ctx.stream));
}

static void cu_copy(void *dst, const void *src, size_t bytes) {
    if (bytes && dst != src) CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, g_ctx.stream));
}

// The next `bytes` of the pinned staging ring. When they would run past its
// end, wait for every copy out of it so far (stage_done is recorded after the
// latest one; the stream runs them in order) and start again at 0.
static unsigned char *stage_take(size_t bytes) {
    CudaContext *c = &g_ctx;
    size_t n = (bytes + 255) & ~(size_t)255;
    if (c->stage_used + n > c->stage_size) {
        CUDA_CHECK(cudaEventSynchronize(c->stage_done));
        c->stage_used = 0;
    }
    unsigned char *p = c->stage + c->stage_used;
    c->stage_used += n;
    return p;
}

// Copies out of the ring just filled at p, then marks it.
static void stage_send(void *dst, const void *p, size_t bytes) {
    CUDA_CHECK(cudaMemcpyAsync(dst, p, bytes, cudaMemcpyHostToDevice, g_ctx.stream));
    CUDA_CHECK(cudaEventRecord(g_ctx.stage_done, g_ctx.stream));
}

// Uploads return without waiting for the GPU: the bytes are first copied into
// pinned staging (so the caller may reuse its buffer at once), then sent
// asynchronously in stream order. Chunks of half the ring keep one chunk
// filling while the previous one is in flight.
static void cu_upload(void *dst, const void *src, size_t bytes) {
    size_t chunk = g_ctx.stage_size / 2;
    for (size_t off = 0; off < bytes; off += chunk) {
        size_t k = bytes - off < chunk ? bytes - off : chunk;
        unsigned char *p = stage_take(k);
        memcpy(p, (const unsigned char *)src + off, k);
        stage_send((unsigned char *)dst + off, p, k);
    }
}

// Downloads wait for the stream: the caller reads dst on return.
static void cu_download(void *dst, const void *src, size_t bytes) {
    if (!bytes) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, g_ctx.stream));
    CUDA_CHECK(cudaStreamSynchronize(g_ctx.stream));
}

// fp32 -> bf16 round-to-nearest-even on the host (NaN stays NaN), the same
// rounding as __float2bfloat16_rn on the device.
static uint16_t host_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

// fp32 -> bf16 straight into the staging ring, chunk by chunk.
static void cu_upload_act(void *dst, const float *src, size_t n) {
    size_t chunk = g_ctx.stage_size / 2 / sizeof(uint16_t);
    for (size_t off = 0; off < n; off += chunk) {
        size_t k = n - off < chunk ? n - off : chunk;
        uint16_t *stage = (uint16_t *)stage_take(k * sizeof(uint16_t));
        for (size_t i = 0; i < k; i++) stage[i] = host_f32_to_bf16(src[off + i]);
        stage_send((uint16_t *)dst + off, stage, k * sizeof(uint16_t));
    }
}

// Through the staging ring too (pinned: the fastest copy back); a region it
// hands out never overlaps a copy still in flight.
static void cu_download_act(float *dst, const void *src, size_t n) {
    size_t chunk = g_ctx.stage_size / 2 / sizeof(uint16_t);
    for (size_t off = 0; off < n; off += chunk) {
        size_t k = n - off < chunk ? n - off : chunk;
        uint16_t *stage = (uint16_t *)stage_take(k * sizeof(uint16_t));
        cu_download(stage, (const uint16_t *)src + off, k * sizeof(uint16_t));
        for (size_t i = 0; i < k; i++) {
            uint32_t u = (uint32_t)stage[i] << 16;
            memcpy(&dst[off + i], &u, 4);
        }
    }
}

static void cu_synchronize(void) {
    CUDA_CHECK(cudaStreamSynchronize(g_ctx.stream));
    CUDA_CHECK(cudaGetLastError());
}

// ---- creation -------------------------------------------------------------------------

static void fill_table(Ops *o) {
    memset(o, 0, sizeof *o);
    o->name = "cuda";
    o->act_size = sizeof(bf16);
    o->grad_size = sizeof(float);
    o->bf16_grads = &g_ops_bf16g;
    o->alloc = cu_alloc;
    o->free = cu_free;
    o->zero = cu_zero;
    o->copy = cu_copy;
    o->upload_act = cu_upload_act;
    o->download_act = cu_download_act;
    o->upload = cu_upload;
    o->download = cu_download;
    o->synchronize = cu_synchronize;
    o->matmul_forward = cuda_matmul_forward;
    o->matmul_backward = cuda_matmul_backward;
    o->layernorm_forward = cuda_layernorm_forward;
    o->layernorm_backward = cuda_layernorm_backward;
    o->rmsnorm_forward = cuda_rmsnorm_forward;
    o->rmsnorm_backward = cuda_rmsnorm_backward;
    o->residual_rmsnorm_forward = cuda_residual_rmsnorm_forward;
    o->residual_forward = cuda_residual_forward;
    o->accumulate = cuda_accumulate;
    o->gelu_forward = cuda_gelu_forward;
    o->gelu_backward = cuda_gelu_backward;
    o->quick_gelu_forward = cuda_quick_gelu_forward;
    o->quick_gelu_backward = cuda_quick_gelu_backward;
    o->swiglu_forward = cuda_swiglu_forward;
    o->swiglu_backward = cuda_swiglu_backward;
    o->swiglu_backward_recompute = cuda_swiglu_backward_recompute;
    o->rope_forward = cuda_rope_forward;
    o->rope_backward = cuda_rope_backward;
    o->attention_forward = cuda_attention_forward;
    o->attention_backward = cuda_attention_backward;
    o->kv_cache_write = cuda_kv_cache_write;
    o->attention_cached = cuda_attention_cached;
    o->embedding_forward = cuda_embedding_forward;
    o->embedding_backward = cuda_embedding_backward;
    o->scatter_rows = cuda_scatter_rows;
    o->gather_rows = cuda_gather_rows;
    o->patchify = cuda_patchify;
    o->vision_embed = cuda_vision_embed;
    o->cross_entropy = cuda_cross_entropy;
    o->sum_losses = cuda_sum_losses;
    o->dropout = cuda_dropout;
    o->add_columns = cuda_add_columns;
    o->copy_columns = cuda_copy_columns;
    o->sum_squares = cuda_sum_squares;
    o->adamw_update = cuda_adamw_update;
    o->adamw_update_multi = cuda_adamw_update_multi;
    o->sum_squares_multi = cuda_sum_squares_multi;
    cuda_modern_fill(o);  // tanh GELU, table RoPE (cuda_modern.cu)
}

// The fp32 table with the ops that write parameter gradients swapped for
// their bf16 versions, and the two ops only bf16 gradients need.
static void fill_table_bf16g(Ops *o, const Ops *fp32) {
    *o = *fp32;
    o->grad_size = sizeof(bf16);
    o->bf16_grads = o;
    o->matmul_backward = cuda_matmul_backward_bf16g;
    o->layernorm_backward = cuda_layernorm_backward_bf16g;
    o->rmsnorm_backward = cuda_rmsnorm_backward_bf16g;
    o->embedding_backward = cuda_embedding_backward_bf16g;
    o->sum_squares_bf16_multi = cuda_sum_squares_bf16_multi;
    o->grad_accumulate = cuda_grad_accumulate;
}

// A kernel of this build, used to ask whether the build has code for the card.
__global__ void probe_kernel(int *p) {
    if (p) *p = 1;
}

// One process per GPU: a process started by mpirun/srun takes the GPU of its
// rank on the node (the launchers' local-rank variables), else GPU 0.
static int pick_device(int count) {
    const char *vars[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID", "LOCAL_RANK"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v) return atoi(v) % count;
    }
    return 0;
}

extern "C" const Ops *ops_cuda_create(char *msg, size_t cap) {
    if (g_ready) return &g_ops;
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
        // Without any NVIDIA driver the runtime reports an "insufficient
        // driver", which reads as if updating it would help: tell the cases apart.
        const int driver_loaded = access("/proc/driver/nvidia/version", F_OK) == 0;
        if (e == cudaSuccess || e == cudaErrorNoDevice || (e == cudaErrorInsufficientDriver && !driver_loaded))
            snprintf(msg, cap, "no GPU found (%s); use --device cpu (the default)",
                     e == cudaSuccess        ? "0 CUDA devices"
                     : e == cudaErrorNoDevice ? "the driver sees no CUDA device"
                                              : "no NVIDIA driver is loaded: /proc/driver/nvidia/version is absent");
        else if (e == cudaErrorInsufficientDriver)
            snprintf(msg, cap, "the NVIDIA driver is older than the CUDA runtime this build uses (%s); update the "
                     "driver or build with an older CUDA toolkit", cudaGetErrorString(e));
        else
            snprintf(msg, cap, "no usable CUDA device (%s)", cudaGetErrorString(e));
        cudaGetLastError();  // clear the sticky error so the CPU path is unaffected
        return NULL;
    }
    CudaContext *c = &g_ctx;
    memset(c, 0, sizeof *c);
    c->device = pick_device(count);
    cudaDeviceProp prop;
    e = cudaGetDeviceProperties(&prop, c->device);
    if (e != cudaSuccess) {
        snprintf(msg, cap, "cannot query CUDA device %d: %s", c->device, cudaGetErrorString(e));
        return NULL;
    }
    if (prop.major < 8) {
        snprintf(msg, cap, "%s has compute capability %d.%d; the bf16 kernels need 8.0 or newer", prop.name,
                 prop.major, prop.minor);
        return NULL;
    }
    e = cudaSetDevice(c->device);
    if (e != cudaSuccess) {
        snprintf(msg, cap, "cannot use CUDA device %d (%s): %s", c->device, prop.name, cudaGetErrorString(e));
        return NULL;
    }
    cudaFuncAttributes fa;
    e = cudaFuncGetAttributes(&fa, probe_kernel);
    if (e != cudaSuccess) {
        snprintf(msg, cap,
                 "this build has no kernels for %s (sm_%d%d): %s; rebuild with "
                 "-DCMAKE_CUDA_ARCHITECTURES=%d%d",
                 prop.name, prop.major, prop.minor, cudaGetErrorString(e), prop.major, prop.minor);
        cudaGetLastError();
        return NULL;
    }
    c->sm_count = prop.multiProcessorCount;
    c->cc_major = prop.major;
    c->cc_minor = prop.minor;
    c->smem_optin = prop.sharedMemPerBlockOptin;
    CUDA_CHECK(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    CUBLAS_CHECK(cublasLtCreate(&c->lt));
    c->lt_workspace_size = LT_WORKSPACE_BYTES;
    CUDA_CHECK(cudaMalloc(&c->lt_workspace, c->lt_workspace_size));
    // 64 MiB of pinned staging: a micro-batch's ids, positions, labels and
    // pixels (16 CLIP-336 images: 11 MB of bf16) fit many times over.
    // LLAVA_CUDA_STAGING_KB makes it small (tests: the ring wraps often).
    const char *kb = getenv("LLAVA_CUDA_STAGING_KB");
    c->stage_size = kb && atol(kb) >= 4 ? (size_t)atol(kb) << 10 : (size_t)64 << 20;
    CUDA_CHECK(cudaMallocHost((void **)&c->stage, c->stage_size));
    CUDA_CHECK(cudaEventCreateWithFlags(&c->stage_done, cudaEventDisableTiming));
    // LLAVA_FLASH_TILES=0 / 2: the 64-row / 128-row flash kernels at head
    // size 128 whatever the shape (a fallback; the benchmark's baseline);
    // unset or 1: the 128-row kernels where their grid fills the card.
    const char *tiles = getenv("LLAVA_FLASH_TILES");
    c->flash_tiles = tiles && (strcmp(tiles, "0") == 0 || strcmp(tiles, "2") == 0) ? atoi(tiles) : 1;
    cuda_attention_init();
    fill_table(&g_ops);
    fill_table_bf16g(&g_ops_bf16g, &g_ops);
    g_ready = true;
    return &g_ops;
}

extern "C" void *ops_cuda_stream(void) { return g_ready ? (void *)g_ctx.stream : NULL; }

// The head-size-128 flash kernels: 0 = 64-row, 1 = 128-row where the grid
// fills the card, 2 = 128-row (cuda_attention.cu); returns the previous
// setting, or -1 before the backend exists or for another value.
extern "C" int ops_cuda_set_flash_tiles(int mode) {
    if (!g_ready || mode < 0 || mode > 2) return -1;
    const int was = g_ctx.flash_tiles;
    g_ctx.flash_tiles = mode;
    return was;
}

extern "C" int ops_cuda_memory(size_t *free_bytes, size_t *total_bytes) {
    if (!g_ready) return -1;
    return cudaMemGetInfo(free_bytes, total_bytes) == cudaSuccess ? 0 : -1;
}
