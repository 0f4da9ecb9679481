// The CPU kernels' vectorizable math (kernels/cpu/cpu_math.h) against libm in
// double: cpu_expf_nonpos over [-87.3, 0] within 2 ulp, 0 below, NaN kept;
// the lane sums against a sequential double sum.
#include <math.h>
#include <stdlib.h>

#include "common/rng.h"
#include "kernels/cpu/cpu_math.h"
#include "tests/testlib.h"

static void test_exp(void) {
    double worst = 0.0;
    float worst_x = 0.0f;
    for (int i = 0; i <= 2000000; i++) {
        float x = -87.3f * (float)i / 2000000.0f;
        double want = exp((double)x), got = cpu_expf_nonpos(x);
        double ulp = ldexp(1.0, ilogb(want) - 23);  // float ulp at want
        double e = fabs(got - want) / ulp;
        if (e > worst) {
            worst = e;
            worst_x = x;
        }
    }
    printf("cpu_expf_nonpos: worst %.2f ulp at x = %.9g\n", worst, (double)worst_x);
    EXPECT(worst <= 2.0, "cpu_expf_nonpos: %.2f ulp at x = %.9g", worst, (double)worst_x);
    EXPECT(cpu_expf_nonpos(0.0f) == 1.0f, "exp(0) = 1");
    EXPECT(cpu_expf_nonpos(-INFINITY) == 0.0f, "exp(-inf) = 0");
    EXPECT(cpu_expf_nonpos(-100.0f) == 0.0f, "exp(-100) flushes to 0");
    EXPECT(isnan(cpu_expf_nonpos(NAN)), "exp(NaN) is NaN");
}

static void test_lane_sums(void) {
    Rng r;
    rng_seed(&r, 7);
    for (int n = 0; n < 40; n++) {
        float x[40];
        double s = 0.0, ss = 0.0;
        for (int i = 0; i < n; i++) {
            x[i] = rng_normal(&r);
            s += x[i];
            ss += (double)x[i] * x[i];
        }
        EXPECT(fabs(cpu_sum_lanes(x, n) - s) <= 1e-12 * (1 + fabs(s)), "cpu_sum_lanes n = %d", n);
        EXPECT(fabs(cpu_sumsq_lanes(x, (size_t)n) - ss) <= 1e-12 * (1 + ss), "cpu_sumsq_lanes n = %d", n);
    }
}

int main(void) {
    test_exp();
    test_lane_sums();
    return test_summary("test_cpu_math");
}
