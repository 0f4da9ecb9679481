#include "kernels/backend.h"

#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
