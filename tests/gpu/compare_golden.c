// Compares the output of `llava forward` (logits, loss, grad.<name>) with a
// golden file written by scripts/make_reference.py, norm-wise:
//   compare_golden OUT.safetensors GOLDEN.safetensors [LOGITS_TOL LOSS_TOL GRAD_TOL]
// Every tensor of OUT that the golden file has is compared (a grad the golden
// file lacks is an error; golden grads OUT lacks are skipped: stage 1 writes
// only the projector's; a --labeled-only output's labeled_logits are compared
// with the golden rows it names). NaN never passes. Exit 0 when all are within tolerance.
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

// labeled_logits [K, V] against the golden logits' rows labeled_rows[k].
static void compare_labeled(const StFile *out, const StTensor *a, const StFile *gold, double tol) {
    const StTensor *r = st_find(out, "labeled_rows"), *g = st_find(gold, "logits");
    EXPECT(r && g && a->ndim == 2 && r->numel == a->shape[0], "labeled_logits without labeled_rows or golden logits");
    if (!r || !g || a->ndim != 2 || r->numel != a->shape[0]) return;
    int64_t K = a->shape[0], V = a->shape[1];
    float *x = read_all(out, a), *y = read_all(gold, g), *sel = xmalloc((size_t)(K * V) * sizeof(float) + 1);
    int64_t *rows = xmalloc((size_t)K * sizeof(int64_t) + 1);
    Error err = {{0}};
    int ok = st_read_i64(out, r, rows, &err) == 0;
    EXPECT(ok, "labeled_rows: %s", err.msg);
    for (int64_t k = 0; ok && k < K; k++) {
        EXPECT(rows[k] >= 0 && (rows[k] + 1) * V <= g->numel, "labeled_rows[%lld] = %lld", (long long)k,
               (long long)rows[k]);
        if (rows[k] < 0 || (rows[k] + 1) * V > g->numel) { ok = 0; break; }
        memcpy(sel + k * V, y + rows[k] * V, (size_t)V * sizeof(float));
    }
    if (ok) {
        double e = rel_error(x, sel, (size_t)(K * V));
        EXPECT(e < tol, "labeled_logits: rel error %.3e (tol %.0e)", e, tol);
        printf("  %-60s rel err %.3e (tol %.0e)\n", "labeled_logits (the head on labeled rows only)", e, tol);
    }
    free(x), free(y), free(sel), free(rows);
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
        if (strcmp(a->name, "num_tokens") == 0 || strcmp(a->name, "labeled_rows") == 0) continue;
        if (strcmp(a->name, "labeled_logits") == 0) {  // `llava forward --labeled-only 1`
            compare_labeled(&out, a, &gold, tol_logits);
            compared++;
            continue;
        }
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
    EXPECT((st_find(&out, "logits") || st_find(&out, "labeled_logits")) && st_find(&out, "loss"),
           "%s has no logits or loss", argv[1]);
    if (grads) printf("  %d gradients, worst %s rel err %.3e (tol %.0e)\n", grads, worst_name, worst_grad, tol_grad);
    printf("  compared %d tensors\n", compared);
    st_close(&out);
    st_close(&gold);
    return test_summary("compare_golden");
}
