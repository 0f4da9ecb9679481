// safetensors files (common/safetensors.c): header parsing and validation,
// then reading every tensor that is small enough as fp32.
#include "common/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write_file("in.safetensors", data, size);
    StFile f;
    Error err = {{0}};
    if (st_open(&f, path, &err) != 0) return 0;
    for (int i = 0; i < f.n; i++) {
        const StTensor *t = &f.tensors[i];
        if (t->numel > (1 << 20)) continue;
        float *buf = xmalloc((size_t)t->numel * sizeof(float) + 1);
        st_read_f32(&f, t, buf, &err);
        free(buf);
        (void)st_find(&f, t->name);
    }
    st_close(&f);
    return 0;
}
