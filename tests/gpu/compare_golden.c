// Compares the output of `llava forward` (logits, loss, grad.<name>) with a
// golden file written by scripts/make_reference.py, norm-wise:
//   compare_golden OUT.safetensors GOLDEN.safetensors [LOGITS_TOL LOSS_TOL GRAD_TOL]
// Every tensor of OUT that the golden file has is compared (a grad the golden
// file lacks is an error; golden grads OUT lacks are skipped: stage 1 writes
// only the projector's). NaN never passes. Exit 0 when all are within tolerance.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/safetensors.h"
#include "common/util.h"
#include "tests/testlib.h"

static float *read_all(const StFile *f, const StTensor *t) {
    float *x = xmalloc((size_t)(t->numel ? t->numel : 1) * sizeof(float));
    Error err = {{0}};
    if (st_read_f32(f, t, x, &err) != 0) {
        fprintf(stderr, "compare_golden: %s\n", err.msg);
        exit(1);
    }
    return x;
}

int main(int argc, char **argv) {
    if (argc != 3 && argc != 6) {
        fprintf(stderr, "usage: %s OUT.safetensors GOLDEN.safetensors [LOGITS_TOL LOSS_TOL GRAD_TOL]\n", argv[0]);
        return 2;
    }
    double tol_logits = argc == 6 ? atof(argv[3]) : 2e-2;
    double tol_loss = argc == 6 ? atof(argv[4]) : 1e-2;
    double tol_grad = argc == 6 ? atof(argv[5]) : 5e-2;
    StFile out, gold;
    Error err = {{0}};
    if (st_open(&out, argv[1], &err) != 0 || st_open(&gold, argv[2], &err) != 0) {
        fprintf(stderr, "compare_golden: %s\n", err.msg);
        return 1;
    }
    int compared = 0, grads = 0;
    double worst_grad = 0.0;
    const char *worst_name = "";
    for (int i = 0; i < out.n; i++) {
        const StTensor *a = &out.tensors[i];
        if (strcmp(a->name, "num_tokens") == 0) continue;
        const StTensor *b = st_find(&gold, a->name);
        if (!b) {
            EXPECT(0, "%s: '%s' is not in the golden file", argv[1], a->name);
            continue;
        }
        if (a->numel != b->numel) {
            EXPECT(0, "%s: %lld elements, golden has %lld", a->name, (long long)a->numel, (long long)b->numel);
            continue;
        }
        float *x = read_all(&out, a), *y = read_all(&gold, b);
        double e = rel_error(x, y, (size_t)a->numel);
        int is_grad = strncmp(a->name, "grad.", 5) == 0;
        double tol = is_grad ? tol_grad : strcmp(a->name, "loss") == 0 ? tol_loss : tol_logits;
        EXPECT(e < tol, "%s: rel error %.3e (tol %.0e)", a->name, e, tol);
        if (!is_grad || !(e < tol)) printf("  %-60s rel err %.3e (tol %.0e)\n", a->name, e, tol);
        if (is_grad) {
            grads++;
            if (!(e <= worst_grad)) {
                worst_grad = e;
                worst_name = a->name;
            }
        }
        compared++;
        free(x);
        free(y);
    }
    EXPECT(st_find(&out, "logits") && st_find(&out, "loss"), "%s has no logits or loss", argv[1]);
    if (grads) printf("  %d gradients, worst %s rel err %.3e (tol %.0e)\n", grads, worst_name, worst_grad, tol_grad);
    printf("  compared %d tensors\n", compared);
    st_close(&out);
    st_close(&gold);
    return test_summary("compare_golden");
}
