// A minimal test harness: EXPECT records a failure and goes on, the process
// exits non-zero when any check failed. Plus comparison helpers.
#ifndef LLAVA_TESTLIB_H
#define LLAVA_TESTLIB_H

#include <stddef.h>
#include <stdio.h>

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

#endif
