// st_diff: compares the tensors of two safetensors files (or model folders)
// by name, for the shell tests.
//   st_diff A B [--tol REL] [--only PREFIX] [--skip PREFIX] [--expect-diff PREFIX]
// Without --tol tensors must be bitwise equal (after conversion to fp32);
// with it, ||a-b||/||b|| <= REL. --only/--skip restrict which names are
// compared (repeatable); --expect-diff PREFIX: tensors with that prefix must
// DIFFER (at least one element). Exit 0 when everything holds, 1 otherwise.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/checkpoint.h"

static int has_prefix(const char *s, char **list, int n) {
    for (int i = 0; i < n; i++)
        if (strncmp(s, list[i], strlen(list[i])) == 0) return 1;
    return 0;
}

static int open_any(CheckpointDir *d, const char *path, Error *err) {
    return dir_exists(path) ? ckpt_dir_open(d, path, err) : ckpt_dir_open_file(d, path, err);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: st_diff A B [--tol REL] [--only P] [--skip P] [--expect-diff P]\n");
        return 2;
    }
    double tol = -1;
    char *only[16], *skip[16], *differ[16];
    int n_only = 0, n_skip = 0, n_differ = 0;
    for (int i = 3; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--tol") == 0) tol = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--only") == 0 && n_only < 16) only[n_only++] = argv[i + 1];
        else if (strcmp(argv[i], "--skip") == 0 && n_skip < 16) skip[n_skip++] = argv[i + 1];
        else if (strcmp(argv[i], "--expect-diff") == 0 && n_differ < 16) differ[n_differ++] = argv[i + 1];
        else {
            fprintf(stderr, "st_diff: bad option %s\n", argv[i]);
            return 2;
        }
    }
    CheckpointDir a, b;
    Error err;
    if (open_any(&a, argv[1], &err) || open_any(&b, argv[2], &err)) {
        fprintf(stderr, "st_diff: %s\n", err.msg);
        return 2;
    }
    int bad = 0, compared = 0;
    for (int fi = 0; fi < a.n_files; fi++)
        for (int i = 0; i < a.files[fi].n; i++) {
            const StTensor *ta = &a.files[fi].tensors[i];
            if ((n_only && !has_prefix(ta->name, only, n_only)) || has_prefix(ta->name, skip, n_skip)) continue;
            const StFile *fb;
            const StTensor *tb = ckpt_dir_find(&b, ta->name, &fb);
            if (!tb || tb->numel != ta->numel) {
                printf("%s: %s in %s\n", ta->name, tb ? "different size" : "missing", argv[2]);
                bad++;
                continue;
            }
            float *x = malloc((size_t)ta->numel * 4 + 4), *y = malloc((size_t)tb->numel * 4 + 4);
            if (st_read_f32(&a.files[fi], ta, x, &err) || st_read_f32(fb, tb, y, &err)) {
                printf("%s: %s\n", ta->name, err.msg);
                bad++;
            } else {
                double num = 0, den = 0;
                int identical = memcmp(x, y, (size_t)ta->numel * 4) == 0;
                for (int64_t k = 0; k < ta->numel; k++) {
                    num += ((double)x[k] - y[k]) * ((double)x[k] - y[k]);
                    den += (double)y[k] * y[k];
                }
                double rel = den > 0 ? sqrt(num / den) : sqrt(num);
                int want_diff = has_prefix(ta->name, differ, n_differ);
                int ok = want_diff ? !identical : (tol < 0 ? identical : rel <= tol);
                if (!ok) {
                    printf("%s: %s (rel %.3e)\n", ta->name, want_diff ? "unchanged but expected to differ" : "differs",
                           rel);
                    bad++;
                }
                compared++;
            }
            free(x);
            free(y);
        }
    printf("st_diff: %d tensors compared, %d mismatches\n", compared, bad);
    ckpt_dir_close(&a);
    ckpt_dir_close(&b);
    return bad || !compared ? 1 : 0;
}
