// Every backward op of the CPU backend against central finite differences of
// its forward op: L = sum(out * r) for a fixed random r, dL/dx from backward
// (with dout = r) vs (L(x+h) - L(x-h)) / 2h accumulated in double, on a random
// subset of elements of each input. Also forward-only ops against direct
// definitions, and the attention masks (padding, packing, causal, GQA).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "kernels/ops.h"
#include "tests/testlib.h"

static const Ops *ops;
static Rng rng;

static float *randv(size_t n, float scale) {
    float *v = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) v[i] = scale * rng_normal(&rng);
    return v;
}

static float *zeros(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

// The op under test, as a closure: run() recomputes `out` from the inputs.
typedef struct {
    void (*run)(void *ctx);
    void *ctx;
    float *out;
    size_t n_out;
    const float *r;  // the random projection
} Probe;

static double probe_loss(const Probe *p) {
    p->run(p->ctx);
    double s = 0.0;
    for (size_t i = 0; i < p->n_out; i++) s += (double)p->out[i] * p->r[i];
    return s;
}

// Compares analytic[] with finite differences on up to 40 elements of x.
static void check_grad(const char *what, const Probe *p, float *x, size_t n, const float *analytic, float h,
                       double tol) {
    enum { K = 40 };
    float num[K], ana[K];
    int k = 0;
    for (int t = 0; t < K && (size_t)t < n; t++) {
        size_t i = n <= K ? (size_t)t : (size_t)rng_below(&rng, n);
        float saved = x[i];
        x[i] = saved + h;
        double lp = probe_loss(p);
        x[i] = saved - h;
        double lm = probe_loss(p);
        x[i] = saved;
        num[k] = (float)((lp - lm) / (2.0 * h));
        ana[k] = analytic[i];
        k++;
    }
    probe_loss(p);  // restore outputs
    double e = rel_error(ana, num, (size_t)k);
    EXPECT(e < tol, "%s: finite-difference rel error %.3e (tol %.0e)", what, e, tol);
}

// ---- matmul ------------------------------------------------------------------
typedef struct { float *out, *inp, *w, *b; int M, K, N; } MatmulCtx;
static void matmul_run(void *c) {
    MatmulCtx *m = c;
    ops->matmul_forward(m->out, m->inp, m->w, m->b, m->M, m->K, m->N);
}

static void test_matmul(void) {
    int M = 7, K = 13, N = 5;
    MatmulCtx c = {zeros((size_t)M * N), randv((size_t)M * K, 1), randv((size_t)N * K, 1), randv(N, 1), M, K, N};
    float *r = randv((size_t)M * N, 1);
    Probe p = {matmul_run, &c, c.out, (size_t)M * N, r};
    float *dinp = zeros((size_t)M * K), *dw = randv((size_t)N * K, 1), *db = randv(N, 1);
    float *dw0 = malloc((size_t)N * K * sizeof(float)), *db0 = malloc((size_t)N * sizeof(float));
    memcpy(dw0, dw, (size_t)N * K * sizeof(float));
    memcpy(db0, db, (size_t)N * sizeof(float));
    probe_loss(&p);
    ops->matmul_backward(dinp, dw, db, r, c.inp, c.w, M, K, N);
    // weight/bias gradients accumulate: subtract what was there before
    for (int i = 0; i < N * K; i++) dw[i] -= dw0[i];
    for (int i = 0; i < N; i++) db[i] -= db0[i];
    check_grad("matmul dinp", &p, c.inp, (size_t)M * K, dinp, 1e-2f, 1e-3);
    check_grad("matmul dweight", &p, c.w, (size_t)N * K, dw, 1e-2f, 1e-3);
    check_grad("matmul dbias", &p, c.b, N, db, 1e-2f, 1e-3);
    // frozen: NULL dweight/dbias must be accepted
    ops->matmul_backward(dinp, NULL, NULL, r, c.inp, c.w, M, K, N);
    free(c.out); free(c.inp); free(c.w); free(c.b); free(r); free(dinp); free(dw); free(db); free(dw0); free(db0);
}

// ---- norms ---------------------------------------------------------------------
typedef struct { float *out, *mean, *rstd, *inp, *w, *b; int M, C; float eps; int rms; } NormCtx;
static void norm_run(void *c) {
    NormCtx *n = c;
    if (n->rms)
        ops->rmsnorm_forward(n->out, n->rstd, n->inp, n->w, n->M, n->C, n->eps);
    else
        ops->layernorm_forward(n->out, n->mean, n->rstd, n->inp, n->w, n->b, n->M, n->C, n->eps);
}

static void test_norm(int rms) {
    int M = 37, C = 19;  // several of the CPU op's 16-row chunks, a tail of 3 columns past the 8-wide lanes
    NormCtx c = {zeros((size_t)M * C), zeros(M), zeros(M), randv((size_t)M * C, 1), randv(C, 1), randv(C, 1),
                 M, C, 1e-5f, rms};
    for (int i = 0; i < C; i++) c.w[i] += 1.0f;
    float *r = randv((size_t)M * C, 1);
    Probe p = {norm_run, &c, c.out, (size_t)M * C, r};
    float *dinp = zeros((size_t)M * C), *dw = zeros(C), *db = zeros(C);
    probe_loss(&p);
    if (rms)
        ops->rmsnorm_backward(dinp, dw, r, c.inp, c.w, c.rstd, M, C);
    else
        ops->layernorm_backward(dinp, dw, db, r, c.inp, c.w, c.mean, c.rstd, M, C);
    const char *name = rms ? "rmsnorm" : "layernorm";
    char what[64];
    snprintf(what, sizeof what, "%s dinp", name);
    check_grad(what, &p, c.inp, (size_t)M * C, dinp, 1e-2f, 2e-3);
    snprintf(what, sizeof what, "%s dweight", name);
    check_grad(what, &p, c.w, C, dw, 1e-2f, 2e-3);
    if (!rms) check_grad("layernorm dbias", &p, c.b, C, db, 1e-2f, 2e-3);
    // dinp accumulates (+=): a second call doubles it
    float *twice = malloc((size_t)M * C * sizeof(float));
    memcpy(twice, dinp, (size_t)M * C * sizeof(float));
    if (rms)
        ops->rmsnorm_backward(twice, NULL, r, c.inp, c.w, c.rstd, M, C);
    else
        ops->layernorm_backward(twice, NULL, NULL, r, c.inp, c.w, c.mean, c.rstd, M, C);
    int ok = 1;
    for (int i = 0; i < M * C; i++) ok &= fabsf(twice[i] - 2 * dinp[i]) <= 1e-5f * (1 + fabsf(dinp[i]));
    EXPECT(ok, "%s backward accumulates into dinp", name);
    free(twice); free(c.out); free(c.mean); free(c.rstd); free(c.inp); free(c.w); free(c.b); free(r); free(dinp);
    free(dw); free(db);
}

// ---- activations -------------------------------------------------------------------
typedef struct { float *out, *inp; size_t n; int kind; int M, FF; } ActCtx;
static void act_run(void *c) {
    ActCtx *a = c;
    if (a->kind == 0) ops->gelu_forward(a->out, a->inp, a->n);
    if (a->kind == 1) ops->quick_gelu_forward(a->out, a->inp, a->n);
    if (a->kind == 2) ops->swiglu_forward(a->out, a->inp, a->M, a->FF);
    if (a->kind == 3) ops->gelu_tanh_forward(a->out, a->inp, a->n);
}

static void test_activations(void) {
    const char *names[] = {"gelu", "quick_gelu", "swiglu", "gelu_tanh"};
    for (int kind = 0; kind < 4; kind++) {
        int M = 5, FF = 11;
        size_t n_in = kind == 2 ? (size_t)M * 2 * FF : 57, n_out = kind == 2 ? (size_t)M * FF : 57;
        ActCtx c = {zeros(n_out), randv(n_in, 2), n_in, kind, M, FF};
        float *r = randv(n_out, 1), *din = zeros(n_in);
        Probe p = {act_run, &c, c.out, n_out, r};
        probe_loss(&p);
        if (kind == 0) ops->gelu_backward(din, c.inp, r, n_in);
        if (kind == 1) ops->quick_gelu_backward(din, c.inp, r, n_in);
        if (kind == 2) ops->swiglu_backward(din, r, c.inp, M, FF);
        if (kind == 3) ops->gelu_tanh_backward(din, c.inp, r, n_in);
        char what[64];
        snprintf(what, sizeof what, "%s dinp", names[kind]);
        check_grad(what, &p, c.inp, n_in, din, 1e-2f, 2e-3);
        free(c.out); free(c.inp); free(r); free(din);
    }
    // gelu is the exact erf form: gelu(1) = 0.5 * (1 + erf(1/sqrt 2))
    float one = 1.0f, g;
    ops->gelu_forward(&g, &one, 1);
    EXPECT(fabs(g - 0.5 * (1.0 + erf(1.0 / sqrt(2.0)))) < 1e-6, "gelu(1) = %.8f", g);
    ops->quick_gelu_forward(&g, &one, 1);
    EXPECT(fabs(g - 1.0 / (1.0 + exp(-1.702))) < 1e-6, "quick_gelu(1) = %.8f", g);
    // gelu_tanh is gelu_pytorch_tanh: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), at x = -1.5
    float xm = -1.5f;
    ops->gelu_tanh_forward(&g, &xm, 1);
    double want = 0.5 * -1.5 * (1.0 + tanh(sqrt(2.0 / M_PI) * (-1.5 + 0.044715 * -3.375)));
    EXPECT(fabs(g - want) < 1e-6, "gelu_tanh(-1.5) = %.8f, want %.8f", g, want);
}

// ---- rope ------------------------------------------------------------------------
typedef struct { float *qkv, *src; int32_t *pos; int M, NH, NKV, HS; float theta; size_t n; } RopeCtx;
static void rope_run(void *c) {
    RopeCtx *r = c;
    memcpy(r->qkv, r->src, r->n * sizeof(float));
    ops->rope_forward(r->qkv, r->pos, r->M, r->NH, r->NKV, r->HS, r->theta);
}

static void test_rope(void) {
    int M = 4, NH = 4, NKV = 2, HS = 8;
    size_t n = (size_t)M * (NH + 2 * NKV) * HS;
    int32_t pos[4] = {0, 3, 17, 250};
    RopeCtx c = {zeros(n), randv(n, 1), pos, M, NH, NKV, HS, 10000.0f, n};
    float *r = randv(n, 1);
    Probe p = {rope_run, &c, c.qkv, n, r};
    probe_loss(&p);
    float *d = malloc(n * sizeof(float));
    memcpy(d, r, n * sizeof(float));
    ops->rope_backward(d, pos, M, NH, NKV, HS, c.theta);
    check_grad("rope", &p, c.src, n, d, 1e-2f, 1e-3);
    // position 0 is the identity; v heads are never rotated
    int ok = 1;
    for (int i = 0; i < (NH + 2 * NKV) * HS; i++) ok &= c.qkv[i] == c.src[i];
    for (int m = 0; m < M; m++)
        for (int i = (NH + NKV) * HS; i < (NH + 2 * NKV) * HS; i++) {
            size_t k = (size_t)m * (NH + 2 * NKV) * HS + i;
            ok &= c.qkv[k] == c.src[k];
        }
    EXPECT(ok, "rope leaves position 0 and the v heads unchanged");
    // pair (i, i + HS/2) at position p turns by p * theta^(-2i/HS)
    int m = 2, i = 1, h = 0;
    double ang = 17.0 * pow(10000.0, -2.0 * i / HS);
    const float *x = c.src + (size_t)m * (NH + 2 * NKV) * HS + h * HS;
    const float *y = c.qkv + (size_t)m * (NH + 2 * NKV) * HS + h * HS;
    double want = x[i] * cos(ang) - x[i + HS / 2] * sin(ang);
    EXPECT(fabs(y[i] - want) < 1e-5, "rope half-split rotation: %g vs %g", y[i], want);
    free(c.qkv); free(c.src); free(r); free(d);
}

// rope_freq: the table form. With theta's own table it is bitwise rope_forward;
// with a scaled table its backward is the exact inverse rotation.
typedef struct { RopeCtx r; const float *table; } RopeFreqCtx;
static void rope_freq_run(void *c) {
    RopeFreqCtx *f = c;
    memcpy(f->r.qkv, f->r.src, f->r.n * sizeof(float));
    ops->rope_freq_forward(f->r.qkv, f->r.pos, f->table, f->r.M, f->r.NH, f->r.NKV, f->r.HS);
}

static void test_rope_freq(void) {
    int M = 4, NH = 2, NKV = 1, HS = 16;
    size_t n = (size_t)M * (NH + 2 * NKV) * HS;
    int32_t pos[4] = {0, 5, 31, 200};
    float table[8], scaled[8];
    for (int i = 0; i < HS / 2; i++) {
        table[i] = 1.0f / powf(500000.0f, (float)(2 * i) / (float)HS);
        scaled[i] = table[i] / (i < 4 ? 1.0f : 8.0f);
    }
    RopeFreqCtx c = {{zeros(n), randv(n, 1), pos, M, NH, NKV, HS, 500000.0f, n}, table};
    float *plain = malloc(n * sizeof(float));
    memcpy(plain, c.r.src, n * sizeof(float));
    ops->rope_forward(plain, pos, M, NH, NKV, HS, 500000.0f);
    rope_freq_run(&c);
    EXPECT(memcmp(plain, c.r.qkv, n * sizeof(float)) == 0, "rope_freq with theta's table == rope_forward");
    c.table = scaled;
    float *r = randv(n, 1), *d = malloc(n * sizeof(float));
    Probe p = {rope_freq_run, &c, c.r.qkv, n, r};
    probe_loss(&p);
    memcpy(d, r, n * sizeof(float));
    ops->rope_freq_backward(d, pos, scaled, M, NH, NKV, HS);
    check_grad("rope_freq", &p, c.r.src, n, d, 1e-2f, 1e-3);
    free(c.r.qkv); free(c.r.src); free(plain); free(r); free(d);
}

// ---- attention -------------------------------------------------------------------------
typedef struct { float *out, *lse, *qkv; AttnShape s; } AttnCtx;
static void attn_run(void *c) {
    AttnCtx *a = c;
    ops->attention_forward(a->out, a->lse, a->qkv, &a->s);
}

// Direct definition: softmax over visible keys, in double.
static void attention_reference(const float *qkv, const AttnShape *s, double *out) {
    int row = (s->NH + 2 * s->NKV) * s->HS;
    for (int b = 0; b < s->B; b++)
        for (int h = 0; h < s->NH; h++)
            for (int i = 0; i < s->T; i++) {
                const int32_t *seg = s->seg ? s->seg + b * s->T : NULL;
                double *w = malloc((size_t)s->T * sizeof(double)), mx = -INFINITY, sum = 0.0;
                int kvh = h / (s->NH / s->NKV);
                for (int j = 0; j < s->T; j++) {
                    int vis = !(s->causal && j > i);
                    if (seg) vis = vis && seg[j] != 0 && (seg[i] == 0 || seg[i] == seg[j]);
                    w[j] = -INFINITY;
                    if (!vis) continue;
                    double dot = 0.0;
                    for (int d = 0; d < s->HS; d++)
                        dot += (double)qkv[(b * s->T + i) * row + h * s->HS + d] *
                               qkv[(b * s->T + j) * row + (s->NH + kvh) * s->HS + d];
                    w[j] = dot / sqrt((double)s->HS);
                    if (w[j] > mx) mx = w[j];
                }
                double *o = out + ((size_t)(b * s->T + i) * s->NH + h) * s->HS;
                for (int d = 0; d < s->HS; d++) o[d] = 0.0;
                if (mx == -INFINITY) {
                    free(w);
                    continue;
                }
                for (int j = 0; j < s->T; j++) sum += w[j] == -INFINITY ? 0.0 : exp(w[j] - mx);
                for (int j = 0; j < s->T; j++) {
                    if (w[j] == -INFINITY) continue;
                    double pj = exp(w[j] - mx) / sum;
                    for (int d = 0; d < s->HS; d++)
                        o[d] += pj * qkv[(b * s->T + j) * row + (s->NH + s->NKV + kvh) * s->HS + d];
                }
                free(w);
            }
}

static void test_attention_case(const char *name, int B, int T, int NH, int NKV, int HS, int causal,
                                const int32_t *seg) {
    size_t nqkv = (size_t)B * T * (NH + 2 * NKV) * HS, nout = (size_t)B * T * NH * HS;
    AttnCtx c = {zeros(nout), zeros((size_t)B * NH * T), randv(nqkv, 1),
                 {.B = B, .T = T, .NH = NH, .NKV = NKV, .HS = HS, .causal = causal, .seg = seg}};
    float *r = randv(nout, 1), *dqkv = zeros(nqkv);
    Probe p = {attn_run, &c, c.out, nout, r};
    probe_loss(&p);
    double *ref = calloc(nout, sizeof(double));
    attention_reference(c.qkv, &c.s, ref);
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < nout; i++) {
        num += (c.out[i] - ref[i]) * (c.out[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    EXPECT(sqrt(num / (den + 1e-30)) < 1e-5, "%s: forward vs definition %.3e", name, sqrt(num / (den + 1e-30)));
    ops->attention_backward(dqkv, r, c.qkv, c.out, c.lse, &c.s);
    char what[96];
    snprintf(what, sizeof what, "attention %s dqkv", name);
    check_grad(what, &p, c.qkv, nqkv, dqkv, 1e-2f, 3e-3);
    free(ref); free(c.out); free(c.lse); free(c.qkv); free(r); free(dqkv);
}

static void test_attention(void) {
    test_attention_case("bidirectional MHA", 2, 5, 3, 3, 4, 0, NULL);
    test_attention_case("causal GQA", 2, 6, 4, 2, 8, 1, NULL);
    test_attention_case("causal MQA", 1, 7, 3, 1, 4, 1, NULL);
    // row 0: right padding; row 1: two packed documents then padding
    int32_t seg[2 * 7] = {1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 2, 2, 2, 0};
    test_attention_case("causal padded+packed", 2, 7, 2, 1, 4, 1, seg);
    // Longer than the CPU op's query blocks (128 rows): causal windows start
    // at the first key of a block's documents and stop at its last row.
    enum { TL = 300 };
    int32_t segl[2 * TL];
    for (int t = 0; t < TL; t++) {
        segl[t] = t < 270 ? 1 : 0;                                   // right padding
        segl[TL + t] = t < 100 ? 1 : t < 140 ? 2 : t < 290 ? 3 : 0;  // 3 packed documents, one across a block edge
    }
    test_attention_case("causal padded+packed, 3 query blocks", 2, TL, 2, 1, 8, 1, segl);
    test_attention_case("bidirectional padded, 3 query blocks", 2, TL, 2, 2, 8, 0, segl);
    // left padding: the first query sees no key at all -> zeros, lse -inf
    int32_t left[5] = {0, 0, 1, 1, 1};
    size_t nqkv = (size_t)5 * 3 * 4;
    float *qkv = randv(nqkv, 1), *out = zeros(5 * 4), *lse = zeros(5);
    AttnShape s = {.B = 1, .T = 5, .NH = 1, .NKV = 1, .HS = 4, .causal = 1, .seg = left};
    ops->attention_forward(out, lse, qkv, &s);
    EXPECT(out[0] == 0 && out[1] == 0 && isinf(lse[0]) && lse[0] < 0, "a query with no visible key gives zeros");
    // packing: changing document 2 must not change document 1's outputs
    int32_t packed[6] = {1, 1, 1, 2, 2, 2};
    size_t n2 = (size_t)6 * 3 * 4;
    float *q2 = randv(n2, 1), *o1 = zeros(24), *o2 = zeros(24), *l2 = zeros(6);
    AttnShape s2 = {.B = 1, .T = 6, .NH = 1, .NKV = 1, .HS = 4, .causal = 0, .seg = packed};
    ops->attention_forward(o1, l2, q2, &s2);
    for (size_t i = 3 * 12; i < n2; i++) q2[i] += 1.0f;
    ops->attention_forward(o2, l2, q2, &s2);
    EXPECT(memcmp(o1, o2, 12 * sizeof(float)) == 0, "packed documents do not see each other");
    free(qkv); free(out); free(lse); free(q2); free(o1); free(o2); free(l2);
}

// ---- embedding, gathers, vision embeddings --------------------------------------------
typedef struct { float *out, *table; int32_t *ids; int M, C; } EmbCtx;
static void emb_run(void *c) {
    EmbCtx *e = c;
    ops->embedding_forward(e->out, e->ids, e->table, e->M, e->C);
}

static void test_embedding(void) {
    int V = 9, C = 6, M = 8;
    int32_t ids[8] = {3, 0, 3, -1, 8, 3, 5, -1};  // repeats and skipped (image) rows
    EmbCtx c = {zeros((size_t)M * C), randv((size_t)V * C, 1), ids, M, C};
    float *r = randv((size_t)M * C, 1), *dt = zeros((size_t)V * C);
    Probe p = {emb_run, &c, c.out, (size_t)M * C, r};
    probe_loss(&p);
    EXPECT(c.out[3 * C] == 0.0f && c.out[7 * C + 5] == 0.0f, "id -1 gives a zero row");
    ops->embedding_backward(dt, r, ids, M, C, V);
    check_grad("embedding dtable", &p, c.table, (size_t)V * C, dt, 1e-2f, 1e-4);
    free(c.out); free(c.table); free(r); free(dt);

    float src[6] = {1, 2, 3, 4, 5, 6}, dst[8] = {0}, back[6] = {0};
    int32_t rows[3] = {3, 0, 2};
    ops->scatter_rows(dst, src, rows, 3, 2);
    EXPECT(dst[6] == 1 && dst[7] == 2 && dst[0] == 3 && dst[1] == 4 && dst[4] == 5 && dst[2] == 0, "scatter_rows");
    ops->gather_rows(back, dst, rows, 3, 2);
    EXPECT(memcmp(back, src, sizeof src) == 0, "gather_rows inverts scatter_rows");

    // patchify: feature (c, ky, kx) of patch (py, px) is pixel (c, py*P+ky, px*P+kx)
    int N = 2, S = 6, P = 3, G = S / P;
    float *px = randv((size_t)N * 3 * S * S, 1), *patches = zeros((size_t)N * G * G * 3 * P * P);
    ops->patchify(patches, px, N, S, P);
    int ok = 1;
    for (int n = 0; n < N; n++)
        for (int pp = 0; pp < G * G; pp++)
            for (int ch = 0; ch < 3; ch++)
                for (int ky = 0; ky < P; ky++)
                    for (int kx = 0; kx < P; kx++) {
                        float a = patches[((size_t)n * G * G + pp) * 3 * P * P + (ch * P + ky) * P + kx];
                        float b = px[(((size_t)n * 3 + ch) * S + (pp / G) * P + ky) * S + (pp % G) * P + kx];
                        ok &= a == b;
                    }
    EXPECT(ok, "patchify layout matches Conv2d(stride = kernel)");
    float pe[2 * 4 * 2], cls[2] = {10, 20}, pos[5 * 2], vo[2 * 5 * 2];
    for (int i = 0; i < 16; i++) pe[i] = (float)i;
    for (int i = 0; i < 10; i++) pos[i] = 100.0f * (float)i;
    ops->vision_embed(vo, pe, cls, pos, 2, 4, 2);
    EXPECT(vo[0] == 10 && vo[1] == 120 && vo[2] == 200 && vo[10] == 10 && vo[12] == 8 + 200, "vision_embed");
    free(px); free(patches);
}

// ---- cross-entropy ---------------------------------------------------------------------------
typedef struct { float *losses, *logits; int32_t *targets; int M, V; } CeCtx;
static void ce_run(void *c) {
    CeCtx *e = c;
    ops->cross_entropy(e->losses, NULL, e->logits, e->targets, 0.0f, e->M, e->V);
}

static void test_cross_entropy(void) {
    int M = 5, V = 17;
    int32_t targets[5] = {3, -1, 16, 0, 3};
    CeCtx c = {zeros(M), randv((size_t)M * V, 3), targets, M, V};
    float r[5] = {0.25f, 0.25f, 0.25f, 0.25f, 0.25f};  // dloss_scale applied to every row
    Probe p = {ce_run, &c, c.losses, (size_t)M, r};
    probe_loss(&p);
    EXPECT(c.losses[1] == 0.0f, "ignored target gives zero loss");
    double lse = 0.0;
    for (int v = 0; v < V; v++) lse += exp((double)c.logits[v]);
    lse = log(lse);
    EXPECT(fabs(c.losses[0] - (lse - c.logits[3])) < 1e-5, "loss = logsumexp - logit[target]");
    float *d = malloc((size_t)M * V * sizeof(float));
    memcpy(d, c.logits, (size_t)M * V * sizeof(float));
    float *losses2 = zeros(M);
    ops->cross_entropy(losses2, d, d, targets, 0.25f, M, V);  // in place over a copy of the logits
    EXPECT(memcmp(losses2, c.losses, (size_t)M * sizeof(float)) == 0, "in-place call gives the same losses");
    check_grad("cross_entropy dlogits (in place)", &p, c.logits, (size_t)M * V, d, 1e-2f, 1e-3);
    int zero_row = 1;
    for (int v = 0; v < V; v++) zero_row &= d[V + v] == 0.0f;
    EXPECT(zero_row, "ignored row has zero dlogits");
    free(c.losses); free(c.logits); free(d); free(losses2);
}

// ---- optimizer helpers ---------------------------------------------------------------------------
static void test_sum_squares(void) {
    size_t n = 200001;
    float *g = randv(n, 1);
    double ref = 0.0;
    for (size_t i = 0; i < n; i++) ref += (double)g[i] * g[i];
    double got = ops->sum_squares(g, n);
    EXPECT(fabs(got - ref) <= 1e-9 * ref, "sum_squares %.10g vs %.10g", got, ref);
    EXPECT(ops->sum_squares(g, n) == got, "sum_squares is deterministic");
    free(g);
}

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    ops = ops_cpu();
    rng_seed(&rng, 1234);
    test_matmul();
    test_norm(0);
    test_norm(1);
    test_activations();
    test_rope();
    test_rope_freq();
    test_attention();
    test_embedding();
    test_cross_entropy();
    test_sum_squares();
    return test_summary("test_ops_grad");
}
