// LoRA against transformers + peft (tests/fixtures/lora/*, from
// scripts/make_lora_reference.py): the PEFT-written adapter loads onto the
// base fixture; logits and loss within 1e-4, every lora_A, lora_B and
// projector gradient within 1e-3 (dropout 0), recompute off, full and
// selective; with dropout, selective and full recompute give bitwise the
// gradients of no recompute, and the LM head on labeled rows only (training's
// mode) the same gradients within 1e-5; the base
// LLM and the vision tower get no gradient memory; merging gives PEFT's
// merge_and_unload weights. Dropout: masks are a pure function of the seed
// (same seed bitwise the same, another seed differs, recompute bitwise), the
// drop rate is p; adapters that do not fit the base are refused naming the
// tensor; the same adapter under transformers 4.x, LLaVA-repo and in-memory
// (".default") names loads to bitwise the same model.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/safetensors.h"
#include "common/util.h"
#include "kernels/lora_mask.h"
#include "model/batch_file.h"
#include "model/checkpoint.h"
#include "model/lora_io.h"
#include "tests/testlib.h"

static const char *src_dir;

typedef struct {
    float *logits;
    float *grads;  // every trainable gradient, concatenated in layout order
    size_t n_logits, n_grads;
} Run;

static Run run_once(LlavaModel *m, const BatchFile *bf, int recompute) {
    Run r = {0};
    Error err = {{0}};
    model_set_recompute(m, recompute);
    model_zero_grads(m);
    EXPECT(model_forward(m, &bf->batch, &err) == 0, "forward: %s", err.msg);
    r.n_logits = (size_t)bf->batch.B * bf->batch.T * m->cfg.text.vocab;
    r.logits = malloc(r.n_logits * sizeof(float));
    m->ops->download_act(r.logits, model_logits(m), r.n_logits);
    model_backward(m, 1.0f / (float)m->n_counted);
    for (int i = 0; i < MODULE_COUNT; i++)
        if (m->grads[i]) r.n_grads += m->params.module_numel[i];
    r.grads = malloc(r.n_grads * sizeof(float));
    size_t at = 0;
    for (int i = 0; i < MODULE_COUNT; i++)
        if (m->grads[i]) {
            memcpy(r.grads + at, m->grads[i], m->params.module_numel[i] * sizeof(float));
            at += m->params.module_numel[i];
        }
    return r;
}

static int same_run(const Run *a, const Run *b) {
    return a->n_logits == b->n_logits && a->n_grads == b->n_grads &&
           memcmp(a->logits, b->logits, a->n_logits * 4) == 0 && memcmp(a->grads, b->grads, a->n_grads * 4) == 0;
}

static void run_free(Run *r) {
    free(r->logits);
    free(r->grads);
}

static int load(LlavaModel *m, const char *base, const char *adapter, Error *err) {
    char dir[4096], ad[4096];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/%s", src_dir, base);
    snprintf(ad, sizeof ad, "%s/tests/fixtures/lora/%s/adapter", src_dir, adapter);
    if (checkpoint_load_llava(m, dir, ops_cpu(), err) != 0) return -1;
    if (lora_load_adapter(m, ad, err) != 0) {
        model_free(m);
        return -1;
    }
    return 0;
}

// Logits, loss and gradients against peft; gradient memory only where trained.
static void check_golden(LlavaModel *m, const BatchFile *bf, const StFile *golden, const char *name, int recompute) {
    Error err = {{0}};
    model_set_stage(m, 2);
    EXPECT(!m->grads[MODULE_LLM] && !m->grads[MODULE_VISION] && m->grads[MODULE_LORA] && m->grads[MODULE_PROJECTOR],
           "%s: only the adapters and the projector may have gradient memory", name);
    model_set_recompute(m, recompute);
    model_zero_grads(m);
    EXPECT(model_forward(m, &bf->batch, &err) == 0, "%s: forward: %s", name, err.msg);
    const size_t MV = (size_t)bf->batch.B * bf->batch.T * m->cfg.text.vocab;
    float *logits = malloc(MV * sizeof(float));
    m->ops->download_act(logits, model_logits(m), MV);
    int64_t n = 0;
    float *gl = test_read_f32(golden, "logits", &n), *gloss = test_read_f32(golden, "loss", NULL);
    EXPECT(gl && (size_t)n == MV, "%s: golden logits", name);
    if (gl && (size_t)n == MV) {
        double e = rel_error(logits, gl, MV);
        EXPECT(e < 1e-4, "%s recompute %d: logits rel error %.3e", name, recompute, e);
    }
    float loss = (float)(m->loss_sum / m->n_counted);
    EXPECT(gloss && fabsf(loss - gloss[0]) <= 1e-4f * fabsf(gloss[0]), "%s: loss %.7f vs peft %.7f", name, loss,
           gloss ? gloss[0] : NAN);
    model_backward(m, 1.0f / (float)m->n_counted);
    int checked = 0, n_golden = 0;
    for (int i = 0; i < m->params.n; i++) {
        const ParamInfo *p = &m->params.p[i];
        const float *g = model_grad(m, p);
        if (!g) continue;
        char key[300];
        snprintf(key, sizeof key, "grad.%s", p->file_name);
        float *gold = test_read_f32(golden, key, &n);
        EXPECT(gold && (size_t)n == p->numel, "%s: golden lacks %s", name, key);
        if (gold && (size_t)n == p->numel) {
            double e = rel_error(g, gold, p->numel);
            EXPECT(e < 1e-3, "%s recompute %d: %s rel error %.3e", name, recompute, key, e);
            checked++;
        }
        free(gold);
    }
    for (int i = 0; i < golden->n; i++) n_golden += strncmp(golden->tensors[i].name, "grad.", 5) == 0;
    EXPECT(checked == n_golden && checked > 0, "%s: compared %d of %d golden gradients", name, checked, n_golden);
    free(gl);
    free(gloss);
    free(logits);
}

// lora_merge against peft's merge_and_unload, then the merged model's logits.
static void check_merge(LlavaModel *m, const BatchFile *bf, const StFile *golden, const char *fixture) {
    char path[4200];
    Error err = {{0}};
    snprintf(path, sizeof path, "%s/tests/fixtures/lora/%s/merged.safetensors", src_dir, fixture);
    StFile merged;
    if (st_open(&merged, path, &err) != 0) {
        EXPECT(0, "%s", err.msg);
        return;
    }
    lora_merge(m);
    EXPECT(m->lora.r == 0 && m->params.module_numel[MODULE_LORA] == 0, "%s: adapters gone after merge", fixture);
    int compared = 0;
    for (int i = 0; i < m->params.n; i++) {
        const ParamInfo *p = &m->params.p[i];
        int64_t n = 0;
        float *want = test_read_f32(&merged, p->file_name, &n);
        if (!want) continue;
        double e = rel_error(model_weight(m, p), want, p->numel);
        EXPECT((size_t)n == p->numel && e < 1e-6, "%s: merged %s rel error %.3e", fixture, p->file_name, e);
        compared++;
        free(want);
    }
    EXPECT(compared == merged.n, "%s: compared %d of %d merged weights", fixture, compared, merged.n);
    model_set_stage(m, 0);
    EXPECT(model_forward(m, &bf->batch, &err) == 0, "merged forward: %s", err.msg);
    const size_t MV = (size_t)bf->batch.B * bf->batch.T * m->cfg.text.vocab;
    float *gl = test_read_f32(golden, "logits", NULL);
    double e = gl ? rel_error(model_logits(m), gl, MV) : INFINITY;
    EXPECT(e < 1e-4, "%s: merged model's logits vs peft's unmerged rel error %.3e", fixture, e);
    free(gl);
    st_close(&merged);
}

static void check_fixture(const char *fixture) {
    LlavaModel m;
    Error err = {{0}};
    if (load(&m, fixture, fixture, &err) != 0) {
        EXPECT(0, "%s: %s", fixture, err.msg);
        return;
    }
    char path[4200];
    BatchFile bf;
    snprintf(path, sizeof path, "%s/tests/fixtures/%s/batch.safetensors", src_dir, fixture);
    EXPECT(batch_file_read(&bf, path, &m.cfg, &err) == 0, "%s: batch: %s", fixture, err.msg);
    StFile golden;
    snprintf(path, sizeof path, "%s/tests/fixtures/lora/%s/golden.safetensors", src_dir, fixture);
    EXPECT(st_open(&golden, path, &err) == 0, "%s: %s", fixture, err.msg);
    check_golden(&m, &bf, &golden, fixture, 0);
    check_golden(&m, &bf, &golden, fixture, RECOMPUTE_FULL);
    check_golden(&m, &bf, &golden, fixture, RECOMPUTE_SELECTIVE);

    // Dropout: reproducible from the seed, recompute-exact, and really dropping.
    m.lora.dropout = 0.3f;
    m.lora.dropout_active = 1;
    m.lora.dropout_seed = 1234;
    Run a = run_once(&m, &bf, 0), b = run_once(&m, &bf, 0), c = run_once(&m, &bf, RECOMPUTE_FULL);
    // Selective: the adapters' u kept per layer, their inputs (ln1, ln2, the
    // SwiGLU output) recomputed, the masks drawn again from the seed.
    Run sel = run_once(&m, &bf, RECOMPUTE_SELECTIVE);
    EXPECT(same_run(&a, &sel), "%s: dropout: selective recompute not bitwise identical to none", fixture);
    // Training's head: labeled rows only (the logits differ in layout; the gradients must not).
    model_set_head_labeled_only(&m, 1);
    Run lab = run_once(&m, &bf, RECOMPUTE_SELECTIVE);
    model_set_head_labeled_only(&m, 0);
    double diff = 0, scale = 0;  // max-norm error relative to the largest gradient
    for (size_t i = 0; i < lab.n_grads && lab.n_grads == a.n_grads; i++) {
        diff = fmax(diff, fabs((double)lab.grads[i] - a.grads[i]));
        scale = fmax(scale, fabs((double)a.grads[i]));
    }
    EXPECT(lab.n_grads == a.n_grads && scale > 0 && diff <= 1e-5 * scale,
           "%s: labeled-only head + selective: gradient error %.3e of %.3e", fixture, diff, scale);
    run_free(&sel), run_free(&lab);
    m.lora.dropout_seed = 1235;
    Run d = run_once(&m, &bf, 0);
    m.lora.dropout = 0.0f;
    Run e = run_once(&m, &bf, 0);
    EXPECT(same_run(&a, &b), "%s: dropout with the same seed is not bitwise reproducible", fixture);
    EXPECT(same_run(&a, &c), "%s: dropout: recompute on/off not bitwise identical", fixture);
    EXPECT(!same_run(&a, &d), "%s: dropout: another seed gives the same result", fixture);
    EXPECT(!same_run(&a, &e), "%s: dropout 0.3 changes nothing", fixture);
    run_free(&a), run_free(&b), run_free(&c), run_free(&d), run_free(&e);
    m.lora.dropout_active = 0;

    check_merge(&m, &bf, &golden, fixture);
    st_close(&golden);
    batch_file_free(&bf);
    model_free(&m);
}

// The dropout op: zeros at rate p, survivors scaled by 1/(1-p), the mask the
// header's pure function, the backward (same call on a gradient) the same mask.
static void check_dropout_op(void) {
    const size_t n = 100000;
    const float p = 0.25f;
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = 1.0f + (float)(i % 7);
    ops_cpu()->dropout(y, x, n, p, 99);
    size_t zeros = 0, bad = 0;
    uint32_t th = lora_mask_threshold(p);
    for (size_t i = 0; i < n; i++) {
        int keep = lora_mask_keep(99, i, th);
        zeros += !keep;
        bad += keep ? fabsf(y[i] - x[i] / (1.0f - p)) > 1e-6f * x[i] : y[i] != 0.0f;
    }
    EXPECT(bad == 0, "dropout: %zu elements disagree with the mask", bad);
    EXPECT(fabs((double)zeros / n - p) < 0.01, "dropout: drop rate %.4f, wanted %.2f", (double)zeros / n, p);
    free(x);
    free(y);
}

// Copies the fixture's adapter into tmp with a new adapter_config.json.
static void write_adapter(const char *tmp, const char *fixture, const char *config) {
    char src[4200], dst[4200], cmd[9000];
    snprintf(src, sizeof src, "%s/tests/fixtures/lora/%s/adapter/adapter_model.safetensors", src_dir, fixture);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp '%s' '%s/'", tmp, src, tmp);
    EXPECT(system(cmd) == 0, "%s", cmd);
    snprintf(dst, sizeof dst, "%s/adapter_config.json", tmp);
    Error err;
    EXPECT(write_file_atomic(dst, config, strlen(config), &err) == 0, "write %s", dst);
}

static void expect_refused(const char *base, const char *adapter_dir, const char *needle, const char *what) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/%s", src_dir, base);
    LlavaModel m;
    Error err = {{0}};
    if (checkpoint_load_llava(&m, dir, ops_cpu(), &err) != 0) {
        EXPECT(0, "%s", err.msg);
        return;
    }
    int rc = lora_load_adapter(&m, adapter_dir, &err);
    EXPECT(rc != 0 && strstr(err.msg, needle), "%s: want an error naming '%s', got rc %d: %s", what, needle, rc,
           err.msg);
    model_free(&m);
}

static void check_refusals(void) {
    char ad[4096];
    // The MHA model's adapter on the GQA model: down_proj's lora_A is [4, 128], the base needs [4, 160].
    snprintf(ad, sizeof ad, "%s/tests/fixtures/lora/tiny_llava15/adapter", src_dir);
    expect_refused("tiny_llava_v1", ad, "layers.0.mlp.down_proj.lora_A.weight has shape [4, 128]",
                   "adapter of another base");
    char tmp[] = "/tmp/llava_lora_XXXXXX";
    EXPECT(mkdtemp(tmp) != NULL, "mkdtemp");
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/ia3", tmp);
    write_adapter(dir, "tiny_llava15", "{\"peft_type\": \"IA3\", \"r\": 4}");
    expect_refused("tiny_llava15", dir, "only LORA", "another PEFT method");
    snprintf(dir, sizeof dir, "%s/dora", tmp);
    write_adapter(dir, "tiny_llava15", "{\"peft_type\": \"LORA\", \"r\": 4, \"use_dora\": true}");
    expect_refused("tiny_llava15", dir, "use_dora", "DoRA");
    snprintf(dir, sizeof dir, "%s/noconfig", tmp);
    write_adapter(dir, "tiny_llava15", "{\"peft_type\": \"LORA\", \"r\": 4}");
    char cfg[4300];
    snprintf(cfg, sizeof cfg, "%s/adapter_config.json", dir);
    remove(cfg);
    expect_refused("tiny_llava15", dir, "adapter_config.json", "missing adapter_config.json");
    // Hand-made adapters with one hostile tensor name each.
    static const struct {
        const char *name, *needle;
    } bad[] = {
        {"base_model.model.model.language_model.layers.-1.self_attn.q_proj.lora_A.weight", "neither a LoRA weight"},
        {"base_model.model.model.language_model.layers.7.self_attn.q_proj.lora_A.weight", "for layer 7"},
        {"base_model.model.model.language_model.layers.99999999999999999999.mlp.up_proj.lora_A.weight", "neither"},
        {"base_model.model.model.vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.lora_A.weight",
         "not supported"},
        {"base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_C.weight", "neither"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(dir, sizeof dir, "%s/bad%zu", tmp, i);
        write_adapter(dir, "tiny_llava15", "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8}");
        StWriter w;
        st_writer_init(&w);
        float zeros[4 * 64] = {0};
        int64_t shape[2] = {4, 64};
        st_writer_add(&w, bad[i].name, ST_F32, 2, shape, zeros);
        snprintf(cfg, sizeof cfg, "%s/adapter_model.safetensors", dir);
        Error err;
        EXPECT(st_writer_save(&w, cfg, NULL, &err) == 0, "write %s", cfg);
        st_writer_free(&w);
        expect_refused("tiny_llava15", dir, bad[i].needle, bad[i].name);
    }
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    EXPECT(system(cmd) == 0, "cleanup");
}

// The same adapter under the other names peft and LLaVA write (transformers
// 4.x's language_model.model.layers, the LLaVA repo's model.layers, the
// in-memory ".default" names) loads to bitwise the same model.
static void check_other_layouts(void) {
    static const struct {
        const char *from, *to;
    } layouts[] = {
        {"base_model.model.model.language_model.layers.", "base_model.model.language_model.model.layers."},
        {"base_model.model.model.language_model.layers.", "base_model.model.model.layers."},
        {".weight", ".default.weight"},
    };
    char src[4200], tmp[] = "/tmp/llava_lora_names_XXXXXX";
    EXPECT(mkdtemp(tmp) != NULL, "mkdtemp");
    snprintf(src, sizeof src, "%s/tests/fixtures/lora/tiny_llava15/adapter/adapter_model.safetensors", src_dir);
    LlavaModel ref;
    Error err = {{0}};
    if (load(&ref, "tiny_llava15", "tiny_llava15", &err) != 0) {
        EXPECT(0, "%s", err.msg);
        return;
    }
    StFile f;
    EXPECT(st_open(&f, src, &err) == 0, "%s", err.msg);
    for (size_t k = 0; k < sizeof layouts / sizeof *layouts; k++) {
        char dir[4200], path[4300], cfg[300];
        snprintf(dir, sizeof dir, "%s/layout%zu", tmp, k);
        snprintf(cfg, sizeof cfg, "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8}");
        write_adapter(dir, "tiny_llava15", cfg);
        StWriter w;
        st_writer_init(&w);
        for (int i = 0; i < f.n; i++) {
            const StTensor *t = &f.tensors[i];
            char name[300];
            const char *hit = strstr(t->name, "lora_") ? strstr(t->name, layouts[k].from) : NULL;
            if (hit)
                snprintf(name, sizeof name, "%.*s%s%s", (int)(hit - t->name), t->name, layouts[k].to,
                         hit + strlen(layouts[k].from));
            else
                snprintf(name, sizeof name, "%s", t->name);
            st_writer_add(&w, name, t->dtype, t->ndim, t->shape, f.data + t->begin);
        }
        snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
        EXPECT(st_writer_save(&w, path, NULL, &err) == 0, "%s", err.msg);
        st_writer_free(&w);
        char base[4096];
        snprintf(base, sizeof base, "%s/tests/fixtures/tiny_llava15", src_dir);
        LlavaModel m;
        if (checkpoint_load_llava(&m, base, ops_cpu(), &err) != 0 || lora_load_adapter(&m, dir, &err) != 0) {
            EXPECT(0, "layout %s -> %s: %s", layouts[k].from, layouts[k].to, err.msg);
            continue;
        }
        int same = m.params.module_numel[MODULE_LORA] == ref.params.module_numel[MODULE_LORA];
        for (int i = 0; same && i < MODULE_COUNT; i++)
            same = memcmp(m.weights[i], ref.weights[i], m.params.module_numel[i] * sizeof(float)) == 0;
        EXPECT(same, "adapter with names %s... loads to another model", layouts[k].to);
        model_free(&m);
    }
    st_close(&f);
    model_free(&ref);
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    EXPECT(system(cmd) == 0, "cleanup");
}

int main(int argc, char **argv) {
    src_dir = argc > 1 ? argv[1] : ".";
    check_dropout_op();
    check_fixture("tiny_llava15");
    check_fixture("tiny_llava_v1");
    check_refusals();
    check_other_layouts();
    return test_summary("test_lora");
}
