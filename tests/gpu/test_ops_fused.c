// Emulator / device checks of the fused and cached paths of the GPU step:
// the two-pass cross-entropy at real vocabulary sizes, odd ones and rows at
// every alignment (against the CPU op); the cuBLASLt plans shared by the
// lengths of one bucket (results against the CPU op and, on the emulator,
// bitwise against fresh plans, with the number of heuristic queries counted);
// the SwiGLU gradient that recomputes its output, bitwise against the two ops
// it replaces; bf16 pixels rounded on the host (as the loader's workers do) against the
// backend's own conversion, bitwise.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "tests/gpu/gpu_harness.h"
#include "tests/testlib.h"
#ifdef LLAVA_GPU_EMU
#include "kernels/cuda/cuda_backend.h"  // the plan counters: linked in, no plugin
#endif

#define A (h->gpu->act_size)

// ---- cross-entropy ----------------------------------------------------------------------
// Logits at `off` elements past an allocation (rows then start at every
// offset from a 16-byte boundary when V is odd), a separate dlogits at
// `doff` (doff != off mod 8: the all-scalar variant), and in place.
static void check_ce_rows(Harness *h, int M, int V, int off, int doff) {
    char op[80];
    snprintf(op, sizeof op, "cross_entropy M=%d V=%d off=%d/%d", M, V, off, doff);
    const size_t n = (size_t)M * V;
    float *x = h_rand(h, n, 2.0f);
    // A spike late in some rows: a thread's running max grows after it has
    // summed (the rescale path), and a row with a dominant logit.
    for (int m = 1; m < M; m += 3) x[(size_t)m * V + V - 1 - m % V] = 24.0f;
    int32_t *t = h_ids(h, M, 0, V);
    for (int m = 0; m < M; m += 5) t[m] = -1;
    if (M > 1) t[1] = V - 1;
    const float scale = 1.0f / (float)M;
    float *loss_c = xmalloc(M * sizeof(float)), *dx_c = xmalloc(n * sizeof(float));
    h->cpu->cross_entropy(loss_c, dx_c, x, t, scale, M, V);
    char *base = d_act(h, NULL, n + (size_t)off);
    void *dx = base + (size_t)off * A, *dt = d_i32(h, t, M);
    h->gpu->upload_act(dx, x, n);
    float *dl = d_poison(h, M * sizeof(float));
    h->gpu->cross_entropy(dl, NULL, dx, dt, 0.0f, M, V);  // forward: losses only
    float *loss_g = down_f32(h, dl, M);
    h_check(h, op, "losses", loss_g, loss_c, M, TOL_F32);
    free(loss_g);
    char *dbase = d_poison(h, (n + (size_t)doff) * A);
    void *dd = dbase + (size_t)doff * A;
    h_poison(h, dl, M * sizeof(float));
    h->gpu->cross_entropy(dl, dd, dx, dt, scale, M, V);
    float *dd_g = down_act(h, dd, n);
    loss_g = down_f32(h, dl, M);
    h_check(h, op, "dlogits", dd_g, dx_c, n, TOL_BF16);
    h_check(h, op, "losses (training)", loss_g, loss_c, M, TOL_F32);
    free(dd_g), free(loss_g);
    h->gpu->cross_entropy(dl, dx, dx, dt, scale, M, V);  // in place, as in training
    dd_g = down_act(h, dx, n);
    loss_g = down_f32(h, dl, M);
    h_check(h, op, "dlogits in place", dd_g, dx_c, n, TOL_BF16);
    h_check(h, op, "losses (in place)", loss_g, loss_c, M, TOL_F32);
    // Ignored rows: exactly zero loss and gradient.
    int zero = 1;
    for (int m = 0; m < M; m += 5) {
        zero &= loss_g[m] == 0.0f;
        for (int v = 0; v < V; v++) zero &= dd_g[(size_t)m * V + v] == 0.0f;
    }
    EXPECT(zero, "%s: ignored rows have a zero loss and gradient", op);
    free(x), free(t), free(loss_c), free(dx_c), free(loss_g), free(dd_g);
    h_release(h);
}

static void run_ce_checks(Harness *h, int large) {
    const int M = large ? 64 : 3;
    check_ce_rows(h, M, 32000, 0, 0);   // LLaMA / Vicuna
    check_ce_rows(h, M, 151936, 0, 0);  // Qwen2
    check_ce_rows(h, M, 128256, 0, 0);  // LLaMA-3
    check_ce_rows(h, 2 * M + 1, 32001, 0, 0);  // odd V: rows at every offset from a 16-byte boundary
    check_ce_rows(h, 9, 163, 3, 3);            // logits themselves unaligned, dlogits alike
    check_ce_rows(h, 9, 163, 3, 0);            // misaligned against each other: the scalar variant
    check_ce_rows(h, 7, 5, 1, 1);              // V shorter than one vector
    check_ce_rows(h, 7, 13, 0, 0);
}

// ---- cuBLASLt plans for variable lengths ------------------------------------------------
#define PLAN_LENGTHS 100

// One matmul forward and backward (dinp, dweight) at each of n_len token
// counts M = m0 + 10 i, on one weight; the results of every keep-th length
// into slot i / keep of out/dinp/dwt (each slot the size of the longest of
// PLAN_LENGTHS lengths). fresh = 1
// drops every plan before each length: each shape asked of the heuristic
// itself, as before plans were bucketed.
static void plan_run(Harness *h, int m0, int n_len, int keep, int K, int N, const void *dx, const void *dw,
                     const void *ddy, int fresh, float *out, float *dinp, float *dwt) {
    const int Mmax = m0 + 10 * (PLAN_LENGTHS - 1);  // the slot size
    void *dout = d_act(h, NULL, (size_t)Mmax * N), *ddinp = d_act(h, NULL, (size_t)Mmax * K);
    float *ddw = d_f32(h, NULL, (size_t)N * K);
    for (int i = 0; i < n_len; i++) {
        const int M = m0 + 10 * i;
#ifdef LLAVA_GPU_EMU
        if (fresh) ops_cuda_matmul_plans(NULL, 1);
#else
        (void)fresh;
#endif
        h->gpu->zero(ddw, (size_t)N * K * sizeof(float));
        h->gpu->matmul_forward(dout, dx, dw, NULL, M, K, N);
        h->gpu->matmul_backward(ddinp, ddw, NULL, ddy, dx, dw, M, K, N);
        if (i % keep) continue;
        const size_t s = (size_t)(i / keep);
        h->gpu->download_act(out + s * Mmax * N, dout, (size_t)M * N);
        h->gpu->download_act(dinp + s * Mmax * K, ddinp, (size_t)M * K);
        h->gpu->download(dwt + s * N * K, ddw, (size_t)N * K * sizeof(float));
    }
}

static void check_plans(Harness *h, int K, int N, int keep) {
    char op[80];
    const int m0 = 1000, Mmax = m0 + 10 * (PLAN_LENGTHS - 1), slots = (PLAN_LENGTHS + keep - 1) / keep;
    snprintf(op, sizeof op, "matmul plans M=%d..%d K=%d N=%d", m0, Mmax, K, N);
    float *x = h_rand(h, (size_t)Mmax * K, 1.0f), *w = h_rand(h, (size_t)N * K, 0.05f);
    float *dy = h_rand(h, (size_t)Mmax * N, 1.0f);
    void *dx = d_act(h, x, (size_t)Mmax * K), *dw = d_act(h, w, (size_t)N * K), *ddy = d_act(h, dy, (size_t)Mmax * N);
    const size_t n_out = (size_t)slots * Mmax * N, n_dinp = (size_t)slots * Mmax * K, n_dw = (size_t)slots * N * K;
    float *out[2], *dinp[2], *dwt[2];
    for (int r = 0; r < 2; r++) {
        out[r] = xcalloc(n_out, sizeof(float));
        dinp[r] = xcalloc(n_dinp, sizeof(float));
        dwt[r] = xcalloc(n_dw, sizeof(float));
    }
#ifdef LLAVA_GPU_EMU
    ops_cuda_matmul_plans(NULL, 1);
#endif
    plan_run(h, m0, PLAN_LENGTHS, keep, K, N, dx, dw, ddy, 0, out[0], dinp[0], dwt[0]);
#ifdef LLAVA_GPU_EMU
    // Three kinds of matmul (forward, dinp, dweight), each seeing M in 5
    // buckets (1000..1024, ..1280, ..1536, ..1792, ..2048): 15 queries, one
    // per bucket; every call (a new length each) re-describes its plan and
    // passes the algorithm check.
    CudaPlanStats st;
    ops_cuda_matmul_plans(&st, 0);
    printf("  %s: %lld calls, %lld checks, %lld queries\n", op, st.calls, st.checks, st.queries);
    EXPECT(st.calls == 3 * PLAN_LENGTHS && st.queries == 15 && st.checks == 3 * PLAN_LENGTHS &&
               st.check_failures == 0 && st.hits == 0,
           "%s: %lld heuristic queries for %d lengths (15 expected), %lld checks, %lld refused", op, st.queries,
           PLAN_LENGTHS, st.checks, st.check_failures);
    // Fresh plans for every length (the same algorithms, by construction:
    // they depend on the shape, not on the history) and the same bits; the
    // emulated GEMM ignores the algorithm, so this checks that a
    // re-described plan computes exactly its new shape.
    plan_run(h, m0, PLAN_LENGTHS, keep, K, N, dx, dw, ddy, 1, out[1], dinp[1], dwt[1]);
    h_check_bitwise(h, "matmul plans: bucketed vs fresh plans (out)", out[0], out[1], n_out);
    h_check_bitwise(h, "matmul plans: bucketed vs fresh plans (dinp)", dinp[0], dinp[1], n_dinp);
    h_check_bitwise(h, "matmul plans: bucketed vs fresh plans (dweight)", dwt[0], dwt[1], n_dw);
    // A refused check: the heuristic is asked again for that very shape.
    ops_cuda_matmul_plans(NULL, 1);
    setenv("LLAVA_EMU_REFUSE_ALGO_CHECK", "1", 1);
    memset(out[1], 0, n_out * sizeof(float));
    plan_run(h, m0, 10, keep, K, N, dx, dw, ddy, 0, out[1], dinp[1], dwt[1]);
    unsetenv("LLAVA_EMU_REFUSE_ALGO_CHECK");
    ops_cuda_matmul_plans(&st, 1);
    // M = 1000..1090: buckets 1024 and 1280, 2 plans per kind (6 queries
    // for the buckets' shapes), each of the 30 calls refused and asked again.
    EXPECT(st.queries == 36 && st.check_failures == 30, "%s: refused checks: %lld queries (36), %lld refused (30)",
           op, st.queries, st.check_failures);
    h_check_bitwise(h, "matmul plans: after refused checks (out)", out[0], out[1], (size_t)((10 + keep - 1) / keep) * Mmax * N);
#endif
    // Every length against the CPU op.
    float *out_c = xmalloc((size_t)Mmax * N * sizeof(float)), *dinp_c = xmalloc((size_t)Mmax * K * sizeof(float));
    float *dw_c = xmalloc((size_t)N * K * sizeof(float));
    double worst[3] = {0, 0, 0};
    int ok = 1;
    const int step = keep > 1 ? keep : 9;  // a dozen lengths (the CPU op is the slow side)
    for (int i = 0; i < PLAN_LENGTHS; i += step) {
        const int M = m0 + 10 * i;
        const size_t s = (size_t)(i / keep);
        memset(dw_c, 0, (size_t)N * K * sizeof(float));
        h->cpu->matmul_forward(out_c, x, w, NULL, M, K, N);
        h->cpu->matmul_backward(dinp_c, dw_c, NULL, dy, x, w, M, K, N);
        const float *got[3] = {out[0] + s * Mmax * N, dinp[0] + s * Mmax * K, dwt[0] + s * N * K};
        const float *want[3] = {out_c, dinp_c, dw_c};
        const size_t len[3] = {(size_t)M * N, (size_t)M * K, (size_t)N * K};
        for (int f = 0; f < 3; f++) {
            double num = 0, den = 0;
            for (size_t j = 0; j < len[f]; j++) {
                double d = (double)got[f][j] - want[f][j];
                num += d * d;
                den += (double)want[f][j] * want[f][j];
            }
            const double e = den > 0 ? sqrt(num / den) : (num > 0 ? INFINITY : 0);
            if (!(e < TOL_BF16)) ok = 0;
            if (e > worst[f] || isnan(e)) worst[f] = e;
        }
    }
    EXPECT(ok, "%s vs cpu: worst rel error out %.2e dinp %.2e dweight %.2e (tol %.0e)", op, worst[0], worst[1],
           worst[2], TOL_BF16);
    if (h->verbose || !ok)
        printf("  %-28s vs cpu: out %.2e dinp %.2e dweight %.2e\n", op, worst[0], worst[1], worst[2]);
    for (int r = 0; r < 2; r++) free(out[r]), free(dinp[r]), free(dwt[r]);
    free(x), free(w), free(dy), free(out_c), free(dinp_c), free(dw_c);
    h_release(h);
}

// ---- bf16 pixels -------------------------------------------------------------------------
// The loader's workers round pixels with f32_to_bf16 and the model uploads
// those bytes as they are; before, the backend's upload_act rounded them on
// the step's thread. The same bits on the device either way, for values that
// are not bf16-exact, ties, signed zeros, subnormals, overflow, inf and NaN.
static void check_pixels_bf16(Harness *h, size_t n) {
    float *x = h_rand(h, n, 1.5f);
    for (size_t i = 0; i < n; i++) x[i] *= 1.0f + 1e-3f * (float)(i % 7);  // not bf16-exact
    const uint32_t special[] = {0x3f808000u /* tie, even below */, 0x3f818000u /* tie, odd below */,
                                0x80000000u, 0x00000001u, 0x807fffffu, 0x7f7fffffu /* rounds to inf */,
                                0x7f800000u, 0xff800000u, 0x7fc00001u, 0xffa00000u /* signalling NaN */};
    for (size_t k = 0; k < sizeof special / sizeof *special && k < n; k++) memcpy(&x[k * 13 % n], &special[k], 4);
    uint16_t *host = xmalloc(n * sizeof(uint16_t)), *a = xmalloc(n * sizeof(uint16_t)), *b = xmalloc(n * 2);
    for (size_t i = 0; i < n; i++) host[i] = f32_to_bf16(x[i]);
    void *da = d_act(h, x, n), *db = d_act(h, NULL, n);
    h->gpu->upload(db, host, n * sizeof(uint16_t));
    h->gpu->download(a, da, n * sizeof(uint16_t));
    h->gpu->download(b, db, n * sizeof(uint16_t));
    EXPECT(memcmp(a, b, n * sizeof(uint16_t)) == 0 && memcmp(a, host, n * sizeof(uint16_t)) == 0,
           "pixels: bf16 rounded on the host (loader) = rounded by upload_act, %zu values", n);
    if (h->verbose) printf("  %-28s %-22s bitwise equal\n", "pixels bf16 (loader)", "vs upload_act");
    free(x), free(host), free(a), free(b);
    h_release(h);
}

// ---- SwiGLU gradient with the recompute of its output ------------------------------------
// swiglu_backward_recompute against swiglu_forward + swiglu_backward: the
// same bits on each backend (out NULL too), and the GPU against the CPU.
static void check_swiglu_recompute(Harness *h, int M, int FF) {
    char op[64];
    snprintf(op, sizeof op, "swiglu_backward_recompute %dx%d", M, FF);
    const size_t n = (size_t)M * FF;
    float *gu = h_rand(h, 2 * n, 2.0f), *dy = h_rand(h, n, 1.0f);
    float *out_c = xmalloc(n * sizeof(float)), *dgu_c = xmalloc(2 * n * sizeof(float));
    float *out_f = xmalloc(n * sizeof(float)), *dgu_f = xmalloc(2 * n * sizeof(float));
    h->cpu->swiglu_forward(out_c, gu, M, FF);
    h->cpu->swiglu_backward(dgu_c, dy, gu, M, FF);
    h->cpu->swiglu_backward_recompute(dgu_f, out_f, dy, gu, M, FF);
    h_check_bitwise(h, "swiglu_backward_recompute cpu: out vs swiglu_forward", out_f, out_c, n);
    h_check_bitwise(h, "swiglu_backward_recompute cpu: dgateup vs swiglu_backward", dgu_f, dgu_c, 2 * n);
    void *dgu = d_act(h, gu, 2 * n), *ddy = d_act(h, dy, n);
    void *dout = d_poison(h, n * A), *ddgu = d_poison(h, 2 * n * A);
    h->gpu->swiglu_forward(dout, dgu, M, FF);
    h->gpu->swiglu_backward(ddgu, ddy, dgu, M, FF);
    float *out_g = down_act(h, dout, n), *dgu_g = down_act(h, ddgu, 2 * n);
    h_poison(h, dout, n * A);
    h_poison(h, ddgu, 2 * n * A);
    h->gpu->swiglu_backward_recompute(ddgu, dout, ddy, dgu, M, FF);
    float *out_gf = down_act(h, dout, n), *dgu_gf = down_act(h, ddgu, 2 * n);
    char name[112];
    snprintf(name, sizeof name, "%s: out vs swiglu_forward", op);
    h_check_bitwise(h, name, out_gf, out_g, n);
    snprintf(name, sizeof name, "%s: dgateup vs swiglu_backward", op);
    h_check_bitwise(h, name, dgu_gf, dgu_g, 2 * n);
    h_check(h, op, "out vs cpu", out_gf, out_c, n, TOL_BF16);
    h_check(h, op, "dgateup vs cpu", dgu_gf, dgu_c, 2 * n, TOL_BF16);
    // out NULL (a frozen down projection): only the gradient, the same bits.
    h_poison(h, ddgu, 2 * n * A);
    h->gpu->swiglu_backward_recompute(ddgu, NULL, ddy, dgu, M, FF);
    free(dgu_gf);
    dgu_gf = down_act(h, ddgu, 2 * n);
    snprintf(name, sizeof name, "%s: out NULL, dgateup", op);
    h_check_bitwise(h, name, dgu_gf, dgu_g, 2 * n);
    free(gu), free(dy), free(out_c), free(dgu_c), free(out_f), free(dgu_f), free(out_g), free(dgu_g), free(out_gf);
    free(dgu_gf);
    h_release(h);
}

void run_fused_checks(Harness *h, int large) {
    run_ce_checks(h, large);
    check_swiglu_recompute(h, 33, 45);  // the scalar variant
    check_swiglu_recompute(h, 17, 64);
    if (large) check_swiglu_recompute(h, 2048, 11008);  // LLaMA-7B
    check_pixels_bf16(h, large ? (size_t)16 * 3 * 336 * 336 : (size_t)2 * 3 * 28 * 28 + 5);
    check_plans(h, large ? 512 : 32, large ? 1024 : 16, large ? 9 : 1);
}
