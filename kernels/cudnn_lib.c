// cuDNN through dlopen (see cudnn_lib.h). Not yet run on a GPU:
// docs/gpu-status.md lists what the first device call checks.
#define _GNU_SOURCE  // dladdr
#include "kernels/cudnn_lib.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/dynlib.h"

// cuDNN 9 splits into a front library (libcudnn.so.9) and sub-libraries it
// dlopens by soname when first needed. When the front library came from a
// folder the dynamic linker does not search (a pip wheel), those dlopens
// would fail at the first graph; loading the siblings now, from the same
// folder, makes the later dlopens find them already loaded (by soname).
void cudnn_lib_preload(const CudnnApi *api) {
    const char *slash = strrchr(api->path, '/');
    if (!slash) return;
    static const char *const subs[] = {"libcudnn_graph.so.9", "libcudnn_engines_precompiled.so.9",
                                       "libcudnn_engines_runtime_compiled.so.9", "libcudnn_heuristic.so.9",
                                       "libcudnn_ops.so.9", "libcudnn_adv.so.9"};
    for (size_t i = 0; i < sizeof subs / sizeof *subs; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%.*s/%s", (int)(slash - api->path), api->path, subs[i]);
        dlopen(path, RTLD_LAZY | RTLD_GLOBAL);  // best effort: a missing one fails later with cuDNN's own message
    }
}

static void cudnn_loaded_path(void *front, char *out, size_t cap) {
    Dl_info info;
    void *sym = dlsym(front, "cudnnGetVersion");
    snprintf(out, cap, "%s", sym && dladdr(sym, &info) && info.dli_fname ? info.dli_fname : "libcudnn.so.9");
}

int cudnn_lib_load(CudnnApi *api, char *msg, size_t cap) {
    memset(api, 0, sizeof *api);
    const char *env = getenv("LLAVA_CUDNN_LIBRARY");
    const char *name = env && *env ? env : "libcudnn.so.9";
    DynlibDirs dirs;
    // An explicit path is tried as given, nowhere else: a typo must not pick up another copy.
    const char *const none[] = {NULL};
    void *lib = dynlib_open(name, strchr(name, '/') ? none : dynlib_wheel_dirs(&dirs, "nvidia/cudnn/lib"), msg, cap);
    if (!lib) {
        size_t used = strlen(msg);
        snprintf(msg + used, cap - used,
                 " (attention_backend \"cudnn\" needs cuDNN 9: install it (the CUDA toolkit's cudnn package, or pip "
                 "install nvidia-cudnn-cu13), set LLAVA_CUDNN_LIBRARY to the path of libcudnn.so.9, or use "
                 "attention_backend \"flash\")");
        return -1;
    }
    const DynlibSymbol syms[] = {
        {"cudnnGetVersion", (void **)&api->get_version},
        {"cudnnGetErrorString", (void **)&api->get_error_string},
        {"cudnnCreate", (void **)&api->create},
        {"cudnnDestroy", (void **)&api->destroy},
        {"cudnnSetStream", (void **)&api->set_stream},
        {"cudnnBackendCreateDescriptor", (void **)&api->backend_create_descriptor},
        {"cudnnBackendDestroyDescriptor", (void **)&api->backend_destroy_descriptor},
        {"cudnnBackendSetAttribute", (void **)&api->backend_set_attribute},
        {"cudnnBackendGetAttribute", (void **)&api->backend_get_attribute},
        {"cudnnBackendFinalize", (void **)&api->backend_finalize},
        {"cudnnBackendExecute", (void **)&api->backend_execute},
    };
    const char *missing = dynlib_resolve(lib, syms, sizeof syms / sizeof *syms);
    if (missing) {
        snprintf(msg, cap, "%s lacks %s: not a cuDNN 9 library (LLAVA_CUDNN_LIBRARY=%s)", name, missing,
                 env && *env ? env : "unset");
        return -1;
    }
    cudnn_loaded_path(lib, api->path, sizeof api->path);
    api->version = api->get_version();
    if (api->version < LLAVA_CUDNN_MIN_VERSION) {
        snprintf(msg, cap, "%s is cuDNN %zu.%zu.%zu; attention_backend \"cudnn\" needs 9.1 or newer", api->path,
                 api->version / 10000, api->version / 100 % 100, api->version % 100);
        return -1;
    }
    return 0;
}
