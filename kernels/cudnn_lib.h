// cuDNN through dlopen, only when a run asks for `attention_backend: cudnn`:
// a run that does not ask never needs libcudnn, and the GPU bundle
// (tests/gpu/pack.sh) does not carry it. The entry points are typed with
// plain C types (cuDNN's enums are ints, its handle and descriptors are
// pointers), so this loader builds without cudnn.h and its failure paths are
// tested on every machine; kernels/cuda/cuda_cudnn_attention.cu uses the
// enum names from cudnn.h when it calls them.
#ifndef LLAVA_CUDNN_LIB_H
#define LLAVA_CUDNN_LIB_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// The oldest cuDNN the attention graphs are written for: 9.1 (9.0 needs an
// extra padding select in the backward graph that we do not build).
#define LLAVA_CUDNN_MIN_VERSION 90100

typedef struct CudnnApi {
    size_t version;  // cudnnGetVersion(): 91900 for 9.19.0
    char path[512];  // the file the library was loaded from (for messages)
    size_t (*get_version)(void);
    const char *(*get_error_string)(int status);
    int (*create)(void **handle);
    int (*destroy)(void *handle);
    int (*set_stream)(void *handle, void *stream);
    int (*backend_create_descriptor)(int type, void **desc);
    int (*backend_destroy_descriptor)(void *desc);
    int (*backend_set_attribute)(void *desc, int name, int type, int64_t count, const void *values);
    int (*backend_get_attribute)(void *desc, int name, int type, int64_t requested, int64_t *count, void *values);
    int (*backend_finalize)(void *desc);
    int (*backend_execute)(void *handle, void *plan, void *variant_pack);
} CudnnApi;

// Opens libcudnn.so.9 (LLAVA_CUDNN_LIBRARY overrides the name or path; else
// the dynamic linker's search, then pip wheel folders nvidia/cudnn/lib and
// /usr/local/cuda/lib64), resolves every entry point and checks the
// version. 0, or -1 with what was tried and how to fix it in msg.
int cudnn_lib_load(CudnnApi *api, char *msg, size_t cap);
// Loads the sub-libraries beside api->path (best effort), before the first
// graph: see cudnn_lib.c. Hundreds of MB are mapped: call it only for a GPU run.
void cudnn_lib_preload(const CudnnApi *api);

#ifdef __cplusplus
}
#endif

#endif
