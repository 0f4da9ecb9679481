// What of the cuDNN attention backend runs without a GPU: the loader's
// errors (LLAVA_CUDNN_LIBRARY naming a missing file, a library that is not
// cuDNN), loading the real libcudnn where the machine has one (every entry
// point resolved, version >= 9.1), the choice of attention backend
// (backend_attention: flash is a no-op, cudnn needs device cuda, an unknown
// name is refused) and the run config key attention_backend.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/backend.h"
#include "kernels/cudnn_lib.h"
#include "tests/testlib.h"
#include "train/run_config.h"

static void check_missing_file(void) {
    setenv("LLAVA_CUDNN_LIBRARY", "/nonexistent/llava-test/libcudnn.so.9", 1);
    CudnnApi api;
    char msg[2048] = {0};
    EXPECT(cudnn_lib_load(&api, msg, sizeof msg) == -1, "a missing LLAVA_CUDNN_LIBRARY must fail");
    EXPECT(strstr(msg, "/nonexistent/llava-test/libcudnn.so.9"), "the message names the file: %s", msg);
    EXPECT(strstr(msg, "LLAVA_CUDNN_LIBRARY") && strstr(msg, "attention_backend \"flash\""),
           "the message says how to fix it: %s", msg);
    printf("missing library: %s\n", msg);
}

static void check_not_cudnn(void) {
    setenv("LLAVA_CUDNN_LIBRARY", "libm.so.6", 1);  // loads, but is no cuDNN
    CudnnApi api;
    char msg[2048] = {0};
    EXPECT(cudnn_lib_load(&api, msg, sizeof msg) == -1, "libm must not pass for cuDNN");
    EXPECT(strstr(msg, "lacks cudnnGetVersion"), "the message says what is missing: %s", msg);
}

static void check_real_library(void) {
    unsetenv("LLAVA_CUDNN_LIBRARY");
    CudnnApi api;
    char msg[2048] = {0};
    if (cudnn_lib_load(&api, msg, sizeof msg) != 0) {
        printf("real libcudnn: not on this machine (%s): that part is skipped\n", msg);
        return;
    }
    EXPECT(api.version >= LLAVA_CUDNN_MIN_VERSION, "version %zu", api.version);
    EXPECT(api.path[0] == '/', "the loaded path is known: %s", api.path);
    EXPECT(api.get_version() == api.version, "cudnnGetVersion callable");
    EXPECT(api.backend_create_descriptor && api.backend_execute && api.set_stream, "entry points resolved");
    printf("real libcudnn: %s, version %zu\n", api.path, api.version);
}

static void check_backend_choice(void) {
    Error err = {{0}};
    const Ops *cpu = ops_cpu();
    EXPECT(backend_attention(cpu, "flash", &err) == cpu, "flash leaves the table alone");
    EXPECT(backend_attention(cpu, NULL, &err) == cpu, "no choice leaves the table alone");
    EXPECT(backend_attention(cpu, "cudnn", &err) == NULL && strstr(err.msg, "needs device cuda"),
           "cudnn on the CPU is refused: %s", err.msg);
    EXPECT(backend_attention(cpu, "xformers", &err) == NULL && strstr(err.msg, "flash or cudnn"),
           "an unknown name is refused: %s", err.msg);
}

// Defaults plus what validation needs besides (a model and data).
static void config_base(RunConfig *c) {
    Error err = {{0}};
    run_config_default(c);
    EXPECT(run_config_set(c, "model=tests/fixtures/tiny_llava15", &err) == 0, "%s", err.msg);
    EXPECT(run_config_set(c, "data=synthetic:16", &err) == 0, "%s", err.msg);
}

static void check_config_key(void) {
    RunConfig c;
    Error err = {{0}};
    config_base(&c);
    EXPECT(strcmp(c.attention_backend, "flash") == 0, "default flash, got %s", c.attention_backend);
    EXPECT(run_config_validate(&c, &err) == 0, "defaults validate: %s", err.msg);
    EXPECT(run_config_set(&c, "attention_backend=sdpa", &err) == 0, "the string is taken: %s", err.msg);
    EXPECT(run_config_validate(&c, &err) != 0 && strstr(err.msg, "flash or cudnn"), "sdpa refused: %s", err.msg);
    config_base(&c);
    EXPECT(run_config_set(&c, "attention_backend=cudnn", &err) == 0, "set: %s", err.msg);
    EXPECT(run_config_validate(&c, &err) != 0 && strstr(err.msg, "needs device cuda"), "cudnn on cpu: %s", err.msg);
    EXPECT(run_config_set(&c, "device=cuda", &err) == 0 && run_config_validate(&c, &err) == 0,
           "cudnn on cuda validates: %s", err.msg);
    char *json = run_config_to_json(&c);
    EXPECT(json && strstr(json, "\"attention_backend\""), "the saved config records the key");
    free(json);
}

int main(void) {
    check_missing_file();
    check_not_cudnn();
    check_real_library();
    check_backend_choice();
    check_config_key();
    return test_summary("test_cudnn_lib");
}
