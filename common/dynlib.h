// Opening shared libraries at run time (dlopen) for the optional GPU parts:
// the CUDA backend (libllava_cuda.so), NCCL, and the CUDA libraries they need.
// A GPU machine may have those only inside Python wheels
// (site-packages/nvidia/<package>/lib, e.g. the nvidia-nccl-cu13 wheel that
// PyTorch installs), which the dynamic linker does not search.
#ifndef LLAVA_DYNLIB_H
#define LLAVA_DYNLIB_H

#include <stddef.h>

// dlopen(name, RTLD_NOW | RTLD_GLOBAL) through the dynamic linker's own search
// (LD_LIBRARY_PATH, rpath, the ld cache); when that fails, name inside each
// directory matching one of the glob patterns of dirs (NULL-terminated, "$VAR"
// at the start of a pattern is replaced by that environment variable, and a
// pattern whose variable is unset is skipped). RTLD_GLOBAL: a library opened
// later that needs `name` finds it by its soname. Returns the handle, or NULL
// with what was tried in msg.
void *dynlib_open(const char *name, const char *const *dirs, char *msg, size_t cap);

// One entry point to resolve from a library opened by dynlib_open.
typedef struct {
    const char *name;
    void **slot;
} DynlibSymbol;
// dlsym of each name into its slot: NULL when all resolve, else the first
// name the library lacks.
const char *dynlib_resolve(void *lib, const DynlibSymbol *syms, size_t n);

// The folder patterns where pip installs a wheel's libraries, wheel_lib being
// the path inside site-packages ("nvidia/nccl/lib", "nvidia/cu13/lib"):
// $VIRTUAL_ENV, $CONDA_PREFIX, /opt/*/.venv (and /opt/*), /usr/local, the
// user's ~/.local, the distribution's dist-packages; then CUDA's own
// /usr/local/cuda/lib64 (often missing from the ld cache). Fills d and
// returns its NULL-terminated list, for dynlib_open.
typedef struct {
    char text[12][256];
    const char *list[13];
} DynlibDirs;
const char *const *dynlib_wheel_dirs(DynlibDirs *d, const char *wheel_lib);

#endif
