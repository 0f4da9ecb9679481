// The CPU model against transformers (tests/fixtures/*/golden.safetensors from
// scripts/make_reference.py): logits and loss rel. error < 1e-4, every
// gradient < 1e-3, for both fixtures, both stages, recompute off, full and
// selective (all three bitwise equal), the LM head on labeled rows only; stage 1 has gradients for the projector
// only. Also: composing from CLIP + LLaMA + projector parts gives the same
// model, and checkpoints that disagree with their config are refused.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/json.h"
#include "common/safetensors.h"
#include "model/batch_file.h"
#include "model/checkpoint.h"
#include "tests/testlib.h"

static const char *src_dir;

typedef struct {
    float *logits;   // [B*T*V]
    float **grads;   // per parameter, NULL when frozen
} RunResult;

static void result_free(RunResult *r, int n) {
    free(r->logits);
    for (int i = 0; i < n; i++) free(r->grads[i]);
    free(r->grads);
}

// labeled_only: the LM head and loss on the labeled rows alone (training's
// mode); its logits are then compared with the golden rows it kept.
static RunResult run_and_check(LlavaModel *m, const BatchFile *bf, const StFile *golden, int stage, int recompute,
                               int labeled_only, const char *fixture) {
    RunResult res = {0};
    Error err = {{0}};
    model_set_stage(m, stage);
    model_set_recompute(m, recompute);
    model_set_head_labeled_only(m, labeled_only);
    model_zero_grads(m);
    int rc = model_forward(m, &bf->batch, &err);
    EXPECT(rc == 0, "%s: forward failed: %s", fixture, err.msg);
    if (rc) return res;
    const size_t V = (size_t)m->cfg.text.vocab, MV = (size_t)bf->batch.B * bf->batch.T * V;
    const size_t R = labeled_only ? (size_t)m->acts.K : (size_t)bf->batch.B * bf->batch.T;
    EXPECT(!labeled_only || m->acts.K == model_count_targets(&bf->batch), "%s: %d labeled rows", fixture, m->acts.K);
    res.logits = malloc(R * V * sizeof(float) + 1);
    m->ops->download_act(res.logits, model_logits(m), R * V);
    int64_t n_gold = 0;
    float *gold_logits = test_read_f32(golden, "logits", &n_gold), *gold_loss = test_read_f32(golden, "loss", NULL);
    EXPECT(gold_logits && (size_t)n_gold == MV, "%s: golden logits shape", fixture);
    if (gold_logits && (size_t)n_gold == MV && labeled_only) {  // the golden rows the head kept
        int32_t *rows = malloc(R * sizeof(int32_t) + 1);
        m->ops->download(rows, m->acts.head_rows, R * sizeof(int32_t));
        for (size_t k = 0; k < R; k++) memmove(gold_logits + k * V, gold_logits + (size_t)rows[k] * V, V * 4);
        free(rows);
    }
    if (gold_logits && (size_t)n_gold == MV) {
        double e = rel_error(res.logits, gold_logits, R * V);
        EXPECT(e < 1e-4, "%s stage %d recompute %d labeled-only %d: logits rel error %.3e", fixture, stage, recompute,
               labeled_only, e);
    }
    float loss = (float)(m->loss_sum / m->n_counted);
    EXPECT(gold_loss && fabsf(loss - gold_loss[0]) <= 1e-4f * fabsf(gold_loss[0]), "%s: loss %.7f vs %.7f",
           fixture, loss, gold_loss ? gold_loss[0] : NAN);
    model_backward(m, 1.0f / (float)m->n_counted);
    res.grads = calloc((size_t)m->params.n, sizeof(float *));
    int n_checked = 0;
    for (int i = 0; i < m->params.n; i++) {
        const ParamInfo *p = &m->params.p[i];
        const float *g = model_grad(m, p);
        int want = p->module == MODULE_PROJECTOR || (stage == 2 && p->module == MODULE_LLM);
        EXPECT(!!g == want, "%s stage %d: %s %s a gradient", fixture, stage, p->name, g ? "has" : "lacks");
        if (!g) continue;
        res.grads[i] = malloc(p->numel * sizeof(float));
        m->ops->download(res.grads[i], g, p->numel * sizeof(float));
        char name[256];
        snprintf(name, sizeof name, "grad.%s", p->file_name);
        int64_t n = 0;
        float *gold = test_read_f32(golden, name, &n);
        EXPECT(gold && (size_t)n == p->numel, "%s: golden lacks %s", fixture, name);
        if (gold && (size_t)n == p->numel) {
            double e = rel_error(res.grads[i], gold, p->numel);
            EXPECT(e < 1e-3, "%s stage %d recompute %d: %s rel error %.3e", fixture, stage, recompute, name, e);
            n_checked++;
        }
        free(gold);
    }
    if (stage == 2) {  // every golden gradient was compared
        int n_golden = 0;
        for (int i = 0; i < golden->n; i++) n_golden += strncmp(golden->tensors[i].name, "grad.", 5) == 0;
        EXPECT(n_checked == n_golden, "%s: compared %d of %d golden gradients", fixture, n_checked, n_golden);
    }
    free(gold_logits);
    free(gold_loss);
    return res;
}

static void check_fixture(const char *name) {
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/%s", src_dir, name);
    LlavaModel m;
    Error err = {{0}};
    if (checkpoint_load_llava(&m, dir, ops_cpu(), &err) != 0) {
        EXPECT(0, "%s: load failed: %s", name, err.msg);
        return;
    }
    BatchFile bf;
    snprintf(path, sizeof path, "%s/batch.safetensors", dir);
    EXPECT(batch_file_read(&bf, path, &m.cfg, &err) == 0, "%s: batch: %s", name, err.msg);
    StFile golden;
    snprintf(path, sizeof path, "%s/golden.safetensors", dir);
    EXPECT(st_open(&golden, path, &err) == 0, "%s: golden: %s", name, err.msg);
    for (int stage = 1; stage <= 2; stage++) {
        RunResult plain = run_and_check(&m, &bf, &golden, stage, 0, 0, name);
        RunResult recomputed = run_and_check(&m, &bf, &golden, stage, RECOMPUTE_FULL, 0, name);
        RunResult selective = run_and_check(&m, &bf, &golden, stage, RECOMPUTE_SELECTIVE, 0, name);
        // Training's mode: the head on labeled rows only, the same gradients.
        RunResult labeled = run_and_check(&m, &bf, &golden, stage, 0, 1, name);
        for (int i = 0; i < m.params.n && plain.grads && labeled.grads; i++) {
            if (!plain.grads[i]) continue;
            double e = labeled.grads[i] ? rel_error(labeled.grads[i], plain.grads[i], m.params.p[i].numel) : INFINITY;
            EXPECT(e < 1e-5, "%s stage %d: %s: labeled-only head vs all rows rel error %.3e", name, stage,
                   m.params.p[i].name, e);
        }
        if (labeled.grads) result_free(&labeled, m.params.n);
        const size_t MV = (size_t)bf.batch.B * bf.batch.T * m.cfg.text.vocab;
        const RunResult *modes[2] = {&recomputed, &selective};
        for (int k = 0; k < 2; k++) {
            const RunResult *r = modes[k];
            int same = plain.logits && r->logits && memcmp(plain.logits, r->logits, MV * 4) == 0;
            for (int i = 0; i < m.params.n && plain.grads && r->grads; i++) {
                if (!plain.grads[i]) continue;
                same &= r->grads[i] && memcmp(plain.grads[i], r->grads[i], m.params.p[i].numel * 4) == 0;
            }
            EXPECT(same, "%s stage %d: %s recompute and none not bitwise identical", name, stage,
                   k ? "selective" : "full");
        }
        if (plain.grads) result_free(&plain, m.params.n);
        if (recomputed.grads) result_free(&recomputed, m.params.n);
        if (selective.grads) result_free(&selective, m.params.n);
    }
    const StTensor *rf = st_find(&golden, "rope_inv_freq");
    if (rf) {  // the modern fixtures: scaled RoPE frequencies as transformers computes them
        int half = m.cfg.text.head_dim / 2;
        float *gold = test_read_f32(&golden, "rope_inv_freq", NULL), *ours = malloc((size_t)half * sizeof(float));
        config_rope_inv_freq(&m.cfg.text, ours);
        EXPECT(rf->numel == half && gold, "%s: rope_inv_freq shape", name);
        if (gold && rf->numel == half) {
            double e = rel_error(ours, gold, (size_t)half);
            EXPECT(e < 1e-6, "%s: rope inv_freq rel error %.3e", name, e);
        }
        free(gold);
        free(ours);
    }
    st_close(&golden);
    batch_file_free(&bf);
    model_free(&m);
}

// CLIP folder + LLaMA folder + projector file (the original LLaVA names) must
// give exactly the LLaVA fixture's logits.
static void check_compose(void) {
    char clip[4096], llama[4096], proj[4096], path[4200];
    snprintf(clip, sizeof clip, "%s/tests/fixtures/tiny_parts/clip", src_dir);
    snprintf(llama, sizeof llama, "%s/tests/fixtures/tiny_parts/llama", src_dir);
    snprintf(proj, sizeof proj, "%s/tests/fixtures/tiny_parts/mm_projector.safetensors", src_dir);
    ComposeOptions o;
    compose_options_default(&o);
    o.vision_dir = clip;
    o.llm_dir = llama;
    o.projector_path = proj;
    o.image_token_index = 150;
    LlavaModel m;
    Error err = {{0}};
    if (checkpoint_compose(&m, &o, ops_cpu(), &err) != 0) {
        EXPECT(0, "compose failed: %s", err.msg);
        return;
    }
    BatchFile bf;
    snprintf(path, sizeof path, "%s/tests/fixtures/tiny_llava15/batch.safetensors", src_dir);
    EXPECT(batch_file_read(&bf, path, &m.cfg, &err) == 0, "batch: %s", err.msg);
    StFile golden;
    snprintf(path, sizeof path, "%s/tests/fixtures/tiny_llava15/golden.safetensors", src_dir);
    EXPECT(st_open(&golden, path, &err) == 0, "golden: %s", err.msg);
    RunResult r = run_and_check(&m, &bf, &golden, 2, 0, 0, "composed tiny_parts");
    if (r.grads) result_free(&r, m.params.n);
    st_close(&golden);
    batch_file_free(&bf);
    model_free(&m);

    // Without --image-token the vocabulary grows by <image> and <pad>, padded
    // to 64; the new rows are the mean of the old ones.
    compose_options_default(&o);
    o.vision_dir = clip;
    o.llm_dir = llama;
    o.projector_path = proj;
    if (checkpoint_compose(&m, &o, ops_cpu(), &err) != 0) {
        EXPECT(0, "compose (grow vocab) failed: %s", err.msg);
        return;
    }
    EXPECT(m.cfg.text.vocab == 192 && m.cfg.image_token_index == 160 && m.cfg.text.pad_id == 161,
           "grown vocab %d, image token %d, pad %d", m.cfg.text.vocab, m.cfg.image_token_index, m.cfg.text.pad_id);
    const ParamInfo *emb = params_find(&m.params, "llm.embed_tokens.weight");
    const float *w = model_weight(&m, emb);
    int C = m.cfg.text.hidden;
    double mean0 = 0.0;
    for (int r2 = 0; r2 < 160; r2++) mean0 += w[r2 * C];
    mean0 /= 160.0;
    EXPECT(fabs(w[170 * C] - mean0) < 1e-6 && w[191 * C] == w[160 * C], "new rows are the mean of the old");
    model_free(&m);
}

// Writes a copy of tiny_llava15 into tmp with config.json edited by `edit`
// (a sed expression) and, optionally, one tensor dropped.
static int make_broken_copy(const char *tmp, const char *sed_expr, const char *drop_tensor) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s && sed -e '%s' %s/tests/fixtures/tiny_llava15/config.json > %s/config.json",
             tmp, tmp, sed_expr, src_dir, tmp);
    if (system(cmd) != 0) return -1;
    char src[4200], dst[4200];
    snprintf(src, sizeof src, "%s/tests/fixtures/tiny_llava15/model.safetensors", src_dir);
    snprintf(dst, sizeof dst, "%s/model.safetensors", tmp);
    StFile f;
    Error err;
    if (st_open(&f, src, &err) != 0) return -1;
    StWriter w;
    st_writer_init(&w);
    for (int i = 0; i < f.n; i++) {
        const StTensor *t = &f.tensors[i];
        if (drop_tensor && strcmp(t->name, drop_tensor) == 0) continue;
        st_writer_add(&w, t->name, t->dtype, t->ndim, t->shape, f.data + t->begin);
    }
    int rc = st_writer_save(&w, dst, NULL, &err);
    st_writer_free(&w);
    st_close(&f);
    return rc;
}

static void check_refusals(void) {
    char tmp[256], cmd_sed[8192];
    snprintf(tmp, sizeof tmp, "/tmp/llava_test_golden_%d", (int)getpid());
    LlavaModel m;
    Error err = {{0}};
    // hidden_size 64 -> 72 in text_config: every LLM tensor disagrees.
    make_broken_copy(tmp, "s/\"hidden_size\": 64/\"hidden_size\": 72/", NULL);
    EXPECT(checkpoint_load_llava(&m, tmp, ops_cpu(), &err) == -1 && strstr(err.msg, "expected shape") &&
               strstr(err.msg, "found"),
           "config/weights mismatch: %s", err.msg);
    make_broken_copy(tmp, "s/\"num_hidden_layers\": 2/\"num_hidden_layers\": 3/", NULL);
    EXPECT(checkpoint_load_llava(&m, tmp, ops_cpu(), &err) == -1 && strstr(err.msg, "missing tensor") &&
               strstr(err.msg, "layers.2"),
           "more layers in config than in the file: %s", err.msg);
    make_broken_copy(tmp, "s/x/x/", "language_model.model.norm.weight");
    EXPECT(checkpoint_load_llava(&m, tmp, ops_cpu(), &err) == -1 &&
               strstr(err.msg, "missing tensor 'language_model.model.norm.weight'"),
           "dropped tensor: %s", err.msg);
    make_broken_copy(tmp, "s/\"image_seq_length\": 16/\"image_seq_length\": 17/", NULL);
    EXPECT(checkpoint_load_llava(&m, tmp, ops_cpu(), &err) == -1 && strstr(err.msg, "image_seq_length"),
           "image_seq_length disagrees with the vision tower: %s", err.msg);
    // What transformers computes and we do not is refused by name (docs/models.md).
    static const struct {
        const char *sed, *needle;
    } refused[] = {
        {"s/\"rope_type\": \"default\"/\"rope_type\": \"yarn\"/", "\"yarn\" is not supported"},
        {"s/\"model_type\": \"llama\"/\"model_type\": \"mistral\"/", "\"mistral\" is not supported"},
        {"s/\"model_type\": \"clip_vision_model\"/\"model_type\": \"siglip2_vision_model\"/",
         "\"siglip2_vision_model\" is not supported"},
        {"s/\"model_type\": \"llama\"/\"model_type\": \"qwen2\", \"use_sliding_window\": true/",
         "sliding-window attention"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        make_broken_copy(tmp, refused[i].sed, NULL);
        EXPECT(checkpoint_load_llava(&m, tmp, ops_cpu(), &err) == -1 && strstr(err.msg, refused[i].needle),
               "refused by name (%s): %s", refused[i].needle, err.msg);
    }
    // SigLIP with strategy default: transformers drops the first patch, so
    // an image is (S/P)^2 - 1 tokens.
    LlavaConfig cfg;
    char path[4200];
    snprintf(path, sizeof path, "%s/tests/fixtures/tiny_siglip_qwen2/config.json", src_dir);
    snprintf(cmd_sed, sizeof cmd_sed,
             "mkdir -p %s && sed -e 's/\"full\"/\"default\"/; s/\"image_seq_length\": 16/\"image_seq_length\": 15/' %s "
             "> %s/config.json", tmp, path, tmp);
    EXPECT(system(cmd_sed) == 0, "sed");
    snprintf(path, sizeof path, "%s/config.json", tmp);
    EXPECT(config_load_llava(&cfg, path, &err) == 0 && cfg.image_tokens == 15 && cfg.vision_tokens == 16,
           "SigLIP + default: 15 image tokens: %s", err.msg);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0) EXPECT(0, "cleanup");
}

// Issue 10 item 8b: an original LLaVA folder saved with its tower
// (model.vision_tower.vision_tower.vision_model.*) gives that tower, not the
// --vision folder's weights.
static void check_tower_in_llava_folder(void) {
    char tmp[256], cmd[8192], path[4200];
    snprintf(tmp, sizeof tmp, "/tmp/llava_test_tower_%d", (int)getpid());
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s && cp %s/tests/fixtures/tiny_parts/llama/config.json %s/", tmp,
             tmp, src_dir, tmp);
    EXPECT(system(cmd) == 0, "copy config");
    StFile llm, clip;
    Error err = {{0}};
    snprintf(path, sizeof path, "%s/tests/fixtures/tiny_parts/llama/model.safetensors", src_dir);
    EXPECT(st_open(&llm, path, &err) == 0, "open llama: %s", err.msg);
    snprintf(path, sizeof path, "%s/tests/fixtures/tiny_parts/clip/model.safetensors", src_dir);
    EXPECT(st_open(&clip, path, &err) == 0, "open clip: %s", err.msg);
    StWriter w;
    st_writer_init(&w);
    for (int i = 0; i < llm.n; i++) {
        const StTensor *t = &llm.tensors[i];
        st_writer_add(&w, t->name, t->dtype, t->ndim, t->shape, llm.data + t->begin);
    }
    float **bufs = calloc((size_t)clip.n, sizeof(float *));
    for (int i = 0; i < clip.n; i++) {  // the folder's own tower: the CLIP weights x 2
        const StTensor *t = &clip.tensors[i];
        bufs[i] = malloc((size_t)t->numel * sizeof(float));
        st_read_f32(&clip, t, bufs[i], &err);
        for (int64_t k = 0; k < t->numel; k++) bufs[i][k] *= 2.0f;
        char name[300];
        snprintf(name, sizeof name, "model.vision_tower.vision_tower.vision_model.%s", t->name);
        st_writer_add_copy(&w, name, ST_F32, t->ndim, t->shape, bufs[i]);
    }
    snprintf(path, sizeof path, "%s/model.safetensors", tmp);
    EXPECT(st_writer_save(&w, path, NULL, &err) == 0, "save: %s", err.msg);
    st_writer_free(&w);
    ComposeOptions o;
    compose_options_default(&o);
    char clip_dir[4096], proj[4096];
    snprintf(clip_dir, sizeof clip_dir, "%s/tests/fixtures/tiny_parts/clip", src_dir);
    snprintf(proj, sizeof proj, "%s/tests/fixtures/tiny_parts/mm_projector.safetensors", src_dir);
    o.vision_dir = clip_dir;
    o.llm_dir = tmp;
    o.projector_path = proj;
    o.image_token_index = 150;
    LlavaModel m;
    int rc = checkpoint_compose(&m, &o, ops_cpu(), &err);
    EXPECT(rc == 0, "compose with the folder's own tower: %s", err.msg);
    if (rc == 0) {
        const ParamInfo *p = params_find(&m.params, "vision.encoder.layers.0.mlp.fc1.weight");
        const float *got = model_weight(&m, p);
        int found = 0;
        for (int i = 0; i < clip.n; i++)
            if (strcmp(clip.tensors[i].name, "encoder.layers.0.mlp.fc1.weight") == 0) {
                found = 1;
                EXPECT(memcmp(got, bufs[i], p->numel * sizeof(float)) == 0, "the tower is the LLaVA folder's");
            }
        EXPECT(found, "fc1 in the CLIP fixture");
        model_free(&m);
    }
    for (int i = 0; i < clip.n; i++) free(bufs[i]);
    free(bufs);
    st_close(&llm);
    st_close(&clip);
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0) EXPECT(0, "cleanup");
}

// Composing with a tokenizer that ends inside the embedding rows (as
// Qwen2.5's: 151665 ids, 151936 rows) puts <image> right after its last id,
// which is the id tokenizers gives a new added token, and grows nothing.
static void check_compose_padded_vocab(void) {
    char tmp[256], cmd[8192], path[4200];
    snprintf(tmp, sizeof tmp, "/tmp/llava_test_padvocab_%d", (int)getpid());
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s && cp %s/tests/fixtures/tiny_parts_modern/qwen2/* %s/", tmp, tmp,
             src_dir, tmp);
    EXPECT(system(cmd) == 0, "copy the Qwen2 folder");
    // The fixture tokenizer without <image> (2573), the later added tokens renumbered down.
    snprintf(path, sizeof path, "%s/tokenizer.json", tmp);
    Error err = {{0}};
    cJSON *tok = json_parse_file(path, &err);
    EXPECT(tok != NULL, "%s", err.msg);
    if (!tok) return;
    cJSON *added = cJSON_GetObjectItemCaseSensitive(tok, "added_tokens");
    int n = cJSON_GetArraySize(added), removed = -1;
    for (int i = 0; i < n; i++) {
        cJSON *t = cJSON_GetArrayItem(added, i);
        if (strcmp(cJSON_GetObjectItemCaseSensitive(t, "content")->valuestring, "<image>") == 0) removed = i;
    }
    EXPECT(removed >= 0, "the fixture tokenizer has <image>");
    int removed_id = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(added, removed), "id")->valueint;
    cJSON_DeleteItemFromArray(added, removed);
    cJSON *t;
    cJSON_ArrayForEach(t, added) {
        cJSON *id = cJSON_GetObjectItemCaseSensitive(t, "id");
        if (id->valueint > removed_id) cJSON_SetNumberValue(id, id->valueint - 1);
    }
    char *text = cJSON_Print(tok);
    EXPECT(write_file_atomic(path, text, strlen(text), &err) == 0, "%s", err.msg);
    free(text);
    cJSON_Delete(tok);
    ComposeOptions o;
    compose_options_default(&o);
    char vis[4096];
    snprintf(vis, sizeof vis, "%s/tests/fixtures/tiny_parts_modern/siglip", src_dir);
    o.vision_dir = vis;
    o.llm_dir = tmp;
    LlavaModel m;
    int rc = checkpoint_compose(&m, &o, ops_cpu(), &err);
    EXPECT(rc == 0, "compose: %s", err.msg);
    if (rc == 0) {
        // 2576 ids in the tokenizer, 2577 rows: <image> = 2576, pad = <|endoftext|> (2570), no growth.
        EXPECT(m.cfg.image_token_index == 2576 && m.cfg.text.vocab == 2577 && m.cfg.text.pad_id == 2570,
               "image %d, vocab %d, pad %d", m.cfg.image_token_index, m.cfg.text.vocab, m.cfg.text.pad_id);
        model_free(&m);
    }
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0) EXPECT(0, "cleanup");
}

// Issue 10 item 8a: a tied config whose file carries an lm_head.weight. The
// same values as embed_tokens load (tied); different values are refused,
// naming both tensors, since transformers 5 would use the file's head.
static void check_tied_head(void) {
    char tmp[256], cmd[8192], src[4200], dst[4200];
    snprintf(tmp, sizeof tmp, "/tmp/llava_test_tied_%d", (int)getpid());
    for (int differ = 0; differ <= 1; differ++) {
        snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s && cp %s/tests/fixtures/tiny_siglip_qwen2/config.json %s/",
                 tmp, tmp, src_dir, tmp);
        EXPECT(system(cmd) == 0, "copy config");
        snprintf(src, sizeof src, "%s/tests/fixtures/tiny_siglip_qwen2/model.safetensors", src_dir);
        snprintf(dst, sizeof dst, "%s/model.safetensors", tmp);
        StFile f;
        Error err = {{0}};
        EXPECT(st_open(&f, src, &err) == 0, "open: %s", err.msg);
        StWriter w;
        st_writer_init(&w);
        float *head = NULL;
        for (int i = 0; i < f.n; i++) {
            const StTensor *t = &f.tensors[i];
            st_writer_add(&w, t->name, t->dtype, t->ndim, t->shape, f.data + t->begin);
            if (strcmp(t->name, "language_model.model.embed_tokens.weight") == 0) {
                head = malloc((size_t)t->numel * sizeof(float));
                st_read_f32(&f, t, head, &err);
                if (differ) head[7] += 0.25f;
                st_writer_add(&w, "language_model.lm_head.weight", ST_F32, t->ndim, t->shape, head);
            }
        }
        EXPECT(st_writer_save(&w, dst, NULL, &err) == 0, "save: %s", err.msg);
        st_writer_free(&w);
        st_close(&f);
        free(head);
        LlavaModel m;
        int rc = checkpoint_load_llava(&m, tmp, ops_cpu(), &err);
        if (differ)
            EXPECT(rc == -1 && strstr(err.msg, "tie_word_embeddings") && strstr(err.msg, "language_model.lm_head.weight") &&
                       strstr(err.msg, "embed_tokens.weight"),
                   "a differing head in a tied model is refused: %s", err.msg);
        else
            EXPECT(rc == 0, "an lm_head equal to embed_tokens loads tied: %s", err.msg);
        if (rc == 0) model_free(&m);
    }
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0) EXPECT(0, "cleanup");
}

int main(int argc, char **argv) {
    src_dir = argc > 1 ? argv[1] : ".";
    check_fixture("tiny_llava15");
    check_fixture("tiny_llava_v1");
    check_fixture("tiny_siglip_qwen2");  // SigLIP + Qwen2 (q/k/v bias, tanh GELU, no CLS)
    check_fixture("tiny_clip_llama3");   // CLIP + Llama-3 (rope llama3, attention/mlp bias)
    check_compose();
    check_refusals();
    check_tied_head();
    check_tower_in_llava_folder();
    check_compose_padded_vocab();
    return test_summary("test_model_golden");
}
