// A minimal test harness: EXPECT records a failure and goes on, the process
// exits non-zero when any check failed. Plus comparison helpers.
#ifndef LLAVA_TESTLIB_H
#define LLAVA_TESTLIB_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/safetensors.h"

extern int test_failures;
extern int test_checks;

#define EXPECT(cond, ...)                                                          \
    do {                                                                           \
        test_checks++;                                                             \
        if (!(cond)) {                                                             \
            test_failures++;                                                       \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                   \
            fprintf(stderr, __VA_ARGS__);                                          \
            fputc('\n', stderr);                                                   \
        }                                                                          \
    } while (0)

// ||a - b|| / ||b|| in double; NaN anywhere gives +inf.
double rel_error(const float *a, const float *b, size_t n);
// Exit status for main: prints a summary.
int test_summary(const char *name);

// A tensor of a safetensors file as fp32 (malloc'ed; *numel set when given),
// or NULL when the file has no tensor of that name or it cannot be read.
float *test_read_f32(const StFile *f, const char *name, int64_t *numel);

#endif
