#include "kernels/backend.h"

#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef LLAVA_HAVE_CUDA
#include <dlfcn.h>

#include "common/dynlib.h"
#include "kernels/cuda/cuda_cudnn_attention.h"

// Defined when the backend is linked into the binary (llava_emu, test_gpu_emu:
// the kernels on the CPU emulator); NULL otherwise, and the plugin is loaded.
extern const Ops *ops_cuda_create(char *msg, size_t cap) __attribute__((weak));
extern void *ops_cuda_stream(void) __attribute__((weak));
extern const BackendStreams *ops_cuda_streams(void) __attribute__((weak));
extern int ops_cuda_memory(size_t *free_bytes, size_t *total_bytes) __attribute__((weak));
extern const Ops *ops_cuda_cudnn_create(const CudnnApi *api, char *msg, size_t cap) __attribute__((weak));
extern void ops_cuda_cudnn_counts(long *cudnn_calls, long *flash_calls) __attribute__((weak));
extern int ops_cuda_set_flash_tiles(int mode) __attribute__((weak));

typedef const Ops *(*CudaCreateFn)(char *msg, size_t cap);
typedef void *(*CudaStreamFn)(void);

// Opens the plugin: $LLAVA_CUDA_PLUGIN, else libllava_cuda.so beside the
// running binary or in its lib/ (a bundle, tests/gpu/pack.sh), else where
// this build put it. dlopen returns the same handle for a library already
// loaded, so this is cheap to call again. If the first try fails (cuBLASLt
// not on the linker's path), cuBLASLt is looked for in CUDA's folder and the
// pip wheels (nvidia-cublas) and the plugin tried once more.
static void *cuda_plugin_open(char *msg, size_t cap) {
    char exe[4096], paths[4][4200];
    int n = 0;
    const char *env = getenv("LLAVA_CUDA_PLUGIN");
    if (env && *env) snprintf(paths[n++], sizeof paths[0], "%s", env);  // then that file alone
    ssize_t len = env && *env ? -1 : readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        snprintf(paths[n++], sizeof paths[0], "%s/libllava_cuda.so", exe);
        snprintf(paths[n++], sizeof paths[0], "%s/lib/libllava_cuda.so", exe);
    }
    if (!(env && *env)) snprintf(paths[n++], sizeof paths[0], "%s", LLAVA_CUDA_PLUGIN_BUILD_PATH);
    for (int attempt = 0; attempt < 2; attempt++) {
        for (int i = 0; i < n; i++) {
            if (access(paths[i], F_OK) != 0) continue;
            void *h = dlopen(paths[i], RTLD_NOW | RTLD_LOCAL);
            if (h) return h;
            const char *e = dlerror();
            snprintf(msg, cap, "cannot load the CUDA backend %.400s: %.500s", paths[i], e ? e : "?");
            break;  // found but unloadable: its dependencies are what is missing
        }
        if (!msg[0]) {
            if (env && *env)
                snprintf(msg, cap, "LLAVA_CUDA_PLUGIN names %.400s, which does not exist", env);
            else
                snprintf(msg, cap, "the CUDA backend libllava_cuda.so is not beside %.300s nor in %.300s (set "
                         "LLAVA_CUDA_PLUGIN)", len > 0 ? exe : "the binary", LLAVA_CUDA_PLUGIN_BUILD_PATH);
            return NULL;
        }
        if (attempt == 0) {
            char why[512];
            DynlibDirs dirs;
            if (!dynlib_open(LLAVA_CUBLASLT_SONAME, dynlib_wheel_dirs(&dirs, "nvidia/cu13/lib"), why, sizeof why) &&
                !dynlib_open(LLAVA_CUBLASLT_SONAME, dynlib_wheel_dirs(&dirs, "nvidia/cublas/lib"), why, sizeof why))
                break;  // cuBLASLt is nowhere: msg says what the linker missed
            msg[0] = 0;
        }
    }
    size_t used = strlen(msg);
    snprintf(msg + used, cap - used, " (CUDA %s libraries must be on LD_LIBRARY_PATH)", LLAVA_CUDA_MAJOR);
    return NULL;
}

static void *cuda_symbol(const char *name, char *msg, size_t cap) {
    void *h = cuda_plugin_open(msg, cap);
    if (!h) return NULL;
    void *sym = dlsym(h, name);
    if (!sym) snprintf(msg, cap, "the CUDA backend lacks %s (a plugin from another build?)", name);
    return sym;
}

static const Ops *cuda_select(Error *err) {
    char msg[1024] = {0};
    CudaCreateFn create = ops_cuda_create;
    if (!create) *(void **)&create = cuda_symbol("ops_cuda_create", msg, sizeof msg);
    const Ops *ops = create ? create(msg, sizeof msg) : NULL;
    if (!ops) err_set(err, "--device cuda: %s", msg);
    return ops;
}

void *backend_cuda_stream(void) {
    char msg[1024] = {0};
    CudaStreamFn stream = ops_cuda_stream;
    if (!stream) *(void **)&stream = cuda_symbol("ops_cuda_stream", msg, sizeof msg);
    return stream ? stream() : NULL;
}

int backend_cuda_set_flash_tiles(int mode) {
    char msg[1024] = {0};
    int (*fn)(int) = ops_cuda_set_flash_tiles;
    if (!fn) *(void **)&fn = cuda_symbol("ops_cuda_set_flash_tiles", msg, sizeof msg);
    return fn ? fn(mode) : -1;
}

const BackendStreams *backend_cuda_streams(void) {
    char msg[1024] = {0};
    const BackendStreams *(*fn)(void) = ops_cuda_streams;
    if (!fn) *(void **)&fn = cuda_symbol("ops_cuda_streams", msg, sizeof msg);
    return fn ? fn() : NULL;
}

static int cuda_memory(size_t *free_bytes, size_t *total_bytes) {
    char msg[1024] = {0};
    int (*fn)(size_t *, size_t *) = ops_cuda_memory;
    if (!fn) *(void **)&fn = cuda_symbol("ops_cuda_memory", msg, sizeof msg);
    return fn ? fn(free_bytes, total_bytes) : -1;
}

// cuDNN is loaded here (llava_core, kernels/cudnn_lib.c), only now, and its
// entry points handed to the backend, which has no other way to reach it.
static const Ops *cudnn_select(Error *err) {
    char msg[1024] = {0};
    CudnnApi api;
    if (cudnn_lib_load(&api, msg, sizeof msg) != 0) {
        err_set(err, "attention_backend \"cudnn\": %s", msg);
        return NULL;
    }
    const Ops *(*create)(const CudnnApi *, char *, size_t) = ops_cuda_cudnn_create;
    if (!create) {  // the plugin (a linked-in backend is the CPU emulator, which refuses cuDNN)
        *(void **)&create = cuda_symbol("ops_cuda_cudnn_create", msg, sizeof msg);
        cudnn_lib_preload(&api);
    }
    const Ops *ops = create ? create(&api, msg, sizeof msg) : NULL;
    if (!ops) err_set(err, "attention_backend \"cudnn\" (%s, cuDNN %zu.%zu.%zu): %s", api.path, api.version / 10000,
                      api.version / 100 % 100, api.version % 100, msg);
    return ops;
}

int backend_cudnn_counts(long *cudnn_calls, long *flash_calls) {
    char msg[1024] = {0};
    void (*fn)(long *, long *) = ops_cuda_cudnn_counts;
    if (!fn) *(void **)&fn = cuda_symbol("ops_cuda_cudnn_counts", msg, sizeof msg);
    if (!fn) return -1;
    fn(cudnn_calls, flash_calls);
    return 0;
}
#else
void *backend_cuda_stream(void) { return NULL; }
int backend_cudnn_counts(long *cudnn_calls, long *flash_calls) {
    *cudnn_calls = *flash_calls = 0;
    return -1;
}
int backend_cuda_set_flash_tiles(int mode) {
    (void)mode;
    return -1;
}
const BackendStreams *backend_cuda_streams(void) { return NULL; }
#endif

const Ops *backend_attention(const Ops *ops, const char *attention, Error *err) {
    if (!attention || !*attention || strcmp(attention, "flash") == 0) return ops;
    if (strcmp(attention, "cudnn") != 0) {
        err_set(err, "unknown attention backend '%s' (flash or cudnn)", attention);
        return NULL;
    }
    if (strcmp(ops->name, "cuda") != 0) {
        err_set(err, "attention_backend \"cudnn\" needs device cuda (this run uses %s); the CPU has one attention",
                ops->name);
        return NULL;
    }
#ifdef LLAVA_HAVE_CUDA
    return cudnn_select(err);
#else
    return NULL;  // unreachable: without CUDA there is no "cuda" table
#endif
}

int backend_device_memory(const Ops *ops, size_t *free_bytes, size_t *total_bytes) {
#ifdef LLAVA_HAVE_CUDA
    if (strcmp(ops->name, "cuda") == 0) return cuda_memory(free_bytes, total_bytes);
#endif
    long pages = sysconf(_SC_PHYS_PAGES), avail = sysconf(_SC_AVPHYS_PAGES), size = sysconf(_SC_PAGE_SIZE);
    if (pages <= 0 || size <= 0) return -1;
    *total_bytes = (size_t)pages * (size_t)size;
    *free_bytes = avail > 0 ? (size_t)avail * (size_t)size : *total_bytes;
    return 0;
}

const Ops *backend_select(const char *device, Error *err) {
    if (!device || strcmp(device, "cpu") == 0) return ops_cpu();
    if (strcmp(device, "cuda") == 0) {
#ifdef LLAVA_HAVE_CUDA
        return cuda_select(err);
#else
        err_set(err, "--device cuda: this build has no CUDA backend (nvcc was not found when it was configured)");
        return NULL;
#endif
    }
    err_set(err, "unknown device '%s' (cpu or cuda)", device);
    return NULL;
}

void backend_set_threads(int n) {
    if (n <= 0) return;
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}

void backend_default_wait_policy(char **argv) {
    if (getenv("OMP_WAIT_POLICY")) return;  // the user's choice (active, passive) wins
    if (setenv("OMP_WAIT_POLICY", "passive", 1) != 0) return;
    execv("/proc/self/exe", argv);
    // No /proc (or exec refused): run on with the runtime's default, as before.
}

const char *backend_compiled(void) {
#ifdef LLAVA_HAVE_CUDA
    return "cpu cuda";
#else
    return "cpu";
#endif
}
