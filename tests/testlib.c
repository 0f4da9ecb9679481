#include "tests/testlib.h"

#include <math.h>
#include <stdlib.h>

#include "common/safetensors.h"

int test_failures = 0;
int test_checks = 0;

double rel_error(const float *a, const float *b, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) || isnan(b[i])) return INFINITY;
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    if (den == 0.0) return num == 0.0 ? 0.0 : INFINITY;
    return sqrt(num / den);
}

int test_summary(const char *name) {
    printf("%s: %d checks, %d failures\n", name, test_checks, test_failures);
    return test_failures ? 1 : 0;
}

float *test_read_f32(const StFile *f, const char *name, int64_t *numel) {
    const StTensor *t = st_find(f, name);
    if (!t) return NULL;
    float *v = malloc((size_t)(t->numel ? t->numel : 1) * sizeof(float));
    Error err = {{0}};
    if (!v || st_read_f32(f, t, v, &err) != 0) {
        free(v);
        return NULL;
    }
    if (numel) *numel = t->numel;
    return v;
}
