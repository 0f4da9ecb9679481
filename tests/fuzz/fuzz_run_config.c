// Run configs (train/run_config.c): the input as a run config file, then
// validation and the JSON it would save; and as a --set assignment.
#include "tests/fuzz/fuzz_util.h"
#include "train/run_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write_file("run.json", data, size);
    RunConfig c;
    run_config_default(&c);
    Error err = {{0}};
    if (run_config_load_file(&c, path, &err) == 0 && run_config_validate(&c, &err) == 0) free(run_config_to_json(&c));
    char *set = xmalloc(size + 1);
    memcpy(set, data, size);
    set[size] = '\0';
    run_config_default(&c);
    run_config_set(&c, set, &err);
    free(set);
    return 0;
}
