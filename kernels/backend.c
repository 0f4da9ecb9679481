#include "kernels/backend.h"

#include <cblas.h>
#include <omp.h>
#include <string.h>

#ifdef LLAVA_HAVE_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

const Ops *backend_select(const char *device, Error *err) {
    if (!device || strcmp(device, "cpu") == 0) return ops_cpu();
    if (strcmp(device, "cuda") == 0) {
#ifdef LLAVA_HAVE_CUDA
        char msg[1024] = {0};
        const Ops *ops = ops_cuda_create(msg, sizeof msg);
        if (!ops) err_set(err, "--device cuda: %s", msg);
        return ops;
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
