// Shared by the fuzz targets (tests/fuzz/fuzz_*.c). Each target defines
// LLVMFuzzerTestOneInput; scripts/fuzz.sh links it with libFuzzer (clang
// -fsanitize=fuzzer), tests/fuzz/replay.c with a main that feeds it files
// (the seed corpora and tests/fuzz/regressions, in ctest).
#ifndef LLAVA_FUZZ_UTIL_H
#define LLAVA_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

// Writes the input to a file of this process (the parsers under test read
// paths) and returns its path: /tmp/llava_fuzz_<pid>/<name>.
static inline const char *fuzz_write_file(const char *name, const uint8_t *data, size_t size) {
    static char dir[64], path[256];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/llava_fuzz_%d", (int)getpid());
        Error err = {{0}};
        if (make_dirs(dir, &err) != 0) FATAL("%s", err.msg);
    }
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) FATAL("cannot write %s", path);
    return path;
}

// The folder fuzz_write_file writes into (for loaders that take a folder).
static inline const char *fuzz_dir(void) {
    static char dir[64];
    snprintf(dir, sizeof dir, "/tmp/llava_fuzz_%d", (int)getpid());
    return dir;
}

#endif
