// Buffers, comparisons and the timing table of the GPU tests (gpu_harness.h).
#include "tests/gpu/gpu_harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "tests/testlib.h"

float *h_rand(Harness *h, size_t n, float scale) {
    float *x = xmalloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        float v = rng_normal(&h->rng) * scale;
        x[i] = bf16_to_f32(f32_to_bf16(v));
        if (x[i] == 0.0f) x[i] = scale * 0.5f;  // never zero
    }
    return x;
}

void h_round_bf16(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = bf16_to_f32(f32_to_bf16(x[i]));
}

void *d_offset(Harness *h, void *base, int off) { return (char *)base + (size_t)off * h->gpu->act_size; }

float *h_copy(const float *src, size_t n) {
    float *x = xmalloc((n ? n : 1) * sizeof(float));
    memcpy(x, src, n * sizeof(float));
    return x;
}

int32_t *h_ids(Harness *h, size_t n, int lo, int hi) {
    int32_t *x = xmalloc((n ? n : 1) * sizeof(int32_t));
    for (size_t i = 0; i < n; i++) x[i] = lo + (int32_t)rng_below(&h->rng, (uint64_t)(hi - lo));
    return x;
}

static void *track(Harness *h, void *p) {
    CHECK(h->n_tracked < MAX_TRACKED, "too many device buffers in one test");
    h->tracked[h->n_tracked++] = p;
    return p;
}

void *d_act(Harness *h, const float *src, size_t n) {
    void *p = track(h, h->gpu->alloc(n * h->gpu->act_size));
    if (src) h->gpu->upload_act(p, src, n);
    return p;
}

void *d_f32(Harness *h, const float *src, size_t n) {
    void *p = track(h, h->gpu->alloc(n * sizeof(float)));
    if (src) h->gpu->upload(p, src, n * sizeof(float));
    return p;
}

void *d_i32(Harness *h, const int32_t *src, size_t n) {
    void *p = track(h, h->gpu->alloc(n * sizeof(int32_t)));
    if (src) h->gpu->upload(p, src, n * sizeof(int32_t));
    return p;
}

void h_poison(Harness *h, void *dev, size_t bytes) {
    unsigned char *ff = xmalloc(bytes ? bytes : 1);
    memset(ff, 0xff, bytes);
    h->gpu->upload(dev, ff, bytes);
    free(ff);
}

void *d_poison(Harness *h, size_t bytes) {
    void *p = track(h, h->gpu->alloc(bytes));
    h_poison(h, p, bytes);
    return p;
}

void h_release(Harness *h) {
    h->gpu->synchronize();
    for (int i = 0; i < h->n_tracked; i++) h->gpu->free(h->tracked[i]);
    h->n_tracked = 0;
}

float *down_act(Harness *h, const void *dev, size_t n) {
    float *x = xmalloc((n ? n : 1) * sizeof(float));
    h->gpu->download_act(x, dev, n);
    return x;
}

float *down_f32(Harness *h, const void *dev, size_t n) {
    float *x = xmalloc((n ? n : 1) * sizeof(float));
    h->gpu->download(x, dev, n * sizeof(float));
    return x;
}

// rel_error with -inf allowed where both sides are -inf.
static double rel_error_inf(const float *a, const float *b, size_t n, int *inf_mismatch) {
    double num = 0.0, den = 0.0;
    *inf_mismatch = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) || isnan(b[i])) return INFINITY;
        if (isinf(a[i]) || isinf(b[i])) {
            if (a[i] != b[i]) (*inf_mismatch)++;
            continue;
        }
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    if (den == 0.0) return num == 0.0 ? 0.0 : INFINITY;
    return sqrt(num / den);
}

void h_check(Harness *h, const char *op, const char *what, const float *gpu, const float *cpu, size_t n, double tol) {
    int inf_mismatch = 0;
    double err = rel_error_inf(gpu, cpu, n, &inf_mismatch);
    int ok = err < tol && inf_mismatch == 0;
    EXPECT(ok, "%s %s: rel error %.3e (tol %.0e), %d inf mismatches", op, what, err, tol, inf_mismatch);
    if (h->verbose || !ok)
        printf("  %-28s %-22s rel err %.3e  (tol %.0e)%s\n", op, what, err, tol, ok ? "" : "  FAIL");
}

void h_check_bitwise(Harness *h, const char *op, const float *a, const float *b, size_t n) {
    int same = memcmp(a, b, n * sizeof(float)) == 0;
    EXPECT(same, "%s: differ bitwise (two runs on the same inputs, or two paths that must agree)", op);
    if (h->verbose || !same) printf("  %-28s %-22s %s\n", op, "same bits", same ? "bitwise equal" : "DIFFER  FAIL");
}

void h_add_row(Harness *h, const char *name, double seconds, double bytes, double flops) {
    if (h->n_rows >= MAX_ROWS) return;
    TimingRow *r = &h->rows[h->n_rows++];
    snprintf(r->name, sizeof r->name, "%s", name);
    r->seconds = seconds;
    r->bytes = bytes;
    r->flops = flops;
}

void h_print_table(const Harness *h, double peak_gbs, double peak_tflops) {
    printf("\n%-52s %10s %10s %7s %10s %7s\n", "kernel (shape)", "time us", "GB/s", "% bw", "TFLOP/s", "% mm");
    for (int i = 0; i < h->n_rows; i++) {
        const TimingRow *r = &h->rows[i];
        double gbs = r->bytes / r->seconds * 1e-9, tf = r->flops / r->seconds * 1e-12;
        printf("%-52s %10.1f", r->name, r->seconds * 1e6);
        if (r->bytes > 0)
            printf(" %10.0f %6.0f%%", gbs, peak_gbs > 0 ? 100.0 * gbs / peak_gbs : 0.0);
        else
            printf(" %10s %7s", "-", "-");
        if (r->flops > 0)
            printf(" %10.1f %6.0f%%", tf, peak_tflops > 0 ? 100.0 * tf / peak_tflops : 0.0);
        else
            printf(" %10s %7s", "-", "-");
        printf("\n");
    }
    printf("(%% bw: of the measured device-to-device copy rate %.0f GB/s; %% mm: of the measured bf16 matmul rate "
           "%.1f TFLOP/s)\n",
           peak_gbs, peak_tflops);
}
