#include "model/lora_io.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/safetensors.h"
#include "model/hf_save.h"
#include "model/torch_save.h"

#define PEFT_PREFIX "base_model.model."

static float *download(const LlavaModel *m, const ParamInfo *p) {
    float *host = xmalloc(p->numel * sizeof(float));
    m->ops->download_act(host, model_weight(m, p), p->numel);
    return host;
}

static int write_json(const char *path, cJSON *root, Error *err) {
    char *text = cJSON_Print(root);
    CHECK(text, "cJSON_Print failed");
    int rc = write_file_atomic(path, text, strlen(text), err);
    free(text);
    return rc;
}

// target_modules as a regex PEFT fullmatches against module names: only the
// language model's linears (a plain list such as ["q_proj"] would also hit
// the CLIP tower's q_proj, k_proj, v_proj).
static void target_regex(unsigned targets, char *out, size_t cap) {
    size_t n = (size_t)snprintf(out, cap, ".*language_model.*\\.(");
    for (int t = 0, first = 1; t < LORA_TARGETS; t++) {
        if (!(targets & (1u << t))) continue;
        n += (size_t)snprintf(out + n, cap - n, "%s%s", first ? "" : "|", strchr(lora_target_module((LoraTarget)t), '.') + 1);
        first = 0;
    }
    snprintf(out + n, cap - n, ")");
}

static int save_config(const LlavaModel *m, const char *dir, const char *base_name, Error *err) {
    const LoraState *s = &m->lora;
    cJSON *c = cJSON_CreateObject();
    char regex[256], path[4200];
    target_regex(s->targets, regex, sizeof regex);
    cJSON_AddStringToObject(c, "peft_type", "LORA");
    cJSON_AddNullToObject(c, "task_type");
    cJSON_AddStringToObject(c, "base_model_name_or_path", base_name ? base_name : "");
    cJSON_AddNumberToObject(c, "r", s->r);
    cJSON_AddNumberToObject(c, "lora_alpha", s->alpha);
    cJSON_AddNumberToObject(c, "lora_dropout", s->dropout);
    cJSON_AddStringToObject(c, "target_modules", regex);
    cJSON_AddBoolToObject(c, "use_rslora", s->rslora);
    cJSON_AddStringToObject(c, "bias", "none");
    cJSON_AddBoolToObject(c, "fan_in_fan_out", 0);
    cJSON_AddBoolToObject(c, "init_lora_weights", 1);
    cJSON_AddBoolToObject(c, "inference_mode", 1);
    cJSON_AddBoolToObject(c, "use_dora", 0);
    cJSON *mts = cJSON_AddArrayToObject(c, "modules_to_save");
    if (m->trainable[MODULE_PROJECTOR]) cJSON_AddItemToArray(mts, cJSON_CreateString("multi_modal_projector"));
    path_join(path, sizeof path, dir, "adapter_config.json");
    int rc = write_json(path, c, err);
    cJSON_Delete(c);
    return rc;
}

int lora_save_adapter(const LlavaModel *m, const char *dir, const char *base_name, Error *err) {
    CHECK(m->lora.r > 0, "no adapters to save");
    if (make_dirs(dir, err) != 0 || save_config(m, dir, base_name, err) != 0) return -1;
    char path[4200];
    path_join(path, sizeof path, dir, "config.json");
    if (config_save_llava(&m->cfg, path, err) != 0) return -1;
    const ParamTable *t = &m->params;
    StWriter w;
    st_writer_init(&w);
    st_writer_set_metadata(&w, "format", "pt");
    TorchTensor tt[4];
    char llava_names[4][96];
    float *proj[4] = {0};
    int n_proj = 0;
    for (int i = 0; i < t->n; i++) {
        const ParamInfo *p = &t->p[i];
        if (p->module == MODULE_LORA) {
            float *host = download(m, p);
            st_writer_add_copy(&w, p->file_name, ST_F32, p->ndim, p->shape, host);
            free(host);
        } else if (p->module == MODULE_PROJECTOR && m->trainable[MODULE_PROJECTOR]) {
            CHECK(n_proj < 4, "more than 4 projector tensors");
            // modules_to_save: PEFT stores the wrapped module's copy under the module's own name
            char name[200];
            names_default_file_name(p->name, name, sizeof name);  // multi_modal_projector.*
            char full[240];
            snprintf(full, sizeof full, PEFT_PREFIX "model.%s", name);
            proj[n_proj] = download(m, p);
            st_writer_add(&w, full, ST_F32, p->ndim, p->shape, proj[n_proj]);
            save_llava_projector_name(m, p, PEFT_PREFIX, llava_names[n_proj], sizeof llava_names[n_proj]);
            tt[n_proj] = (TorchTensor){llava_names[n_proj], p->ndim, p->shape, proj[n_proj]};
            n_proj++;
        }
    }
    path_join(path, sizeof path, dir, "adapter_model.safetensors");
    int rc = st_writer_save(&w, path, NULL, err);
    st_writer_free(&w);
    if (rc == 0 && n_proj) {
        path_join(path, sizeof path, dir, "non_lora_trainables.bin");
        rc = torch_save_f32(path, tt, n_proj, err);
    }
    for (int i = 0; i < n_proj; i++) free(proj[i]);
    return rc;
}

// ---- loading ---------------------------------------------------------------------

// "…<module path>.lora_A[.default].weight" -> module path, which A/B, or -1.
static int split_lora_name(const char *name, char *module, size_t cap, int *is_b) {
    const char *hit = strstr(name, ".lora_A.");
    *is_b = 0;
    if (!hit) {
        hit = strstr(name, ".lora_B.");
        *is_b = 1;
    }
    if (!hit) return -1;
    const char *tail = hit + 8;
    if (strcmp(tail, "weight") != 0 && strcmp(tail, "default.weight") != 0) return -1;
    size_t len = (size_t)(hit - name);
    if (len + 8 > cap) return -1;
    memcpy(module, name, len);
    snprintf(module + len, cap - len, ".weight");
    return 0;
}

// A LoRA tensor name -> (layer, target) of the LLM, through the loader's name
// mapping (both transformers layouts and the LLaVA repo's model.layers.*).
static int lora_site(const char *name, int *layer, int *target, int *is_b) {
    const char *rest = strncmp(name, PEFT_PREFIX, strlen(PEFT_PREFIX)) == 0 ? name + strlen(PEFT_PREFIX) : name;
    char module[256], canon[256], leaf[64];
    if (split_lora_name(rest, module, sizeof module, is_b) != 0) return -1;
    if (names_to_canonical(module, canon, sizeof canon) != NAME_PARAM) return -1;
    // "llm.layers.<digits>.<module>.weight"; %[..] also takes ".weight", so compare with it
    const char *digits = canon + strlen("llm.layers.");
    if (strncmp(canon, "llm.layers.", strlen("llm.layers.")) != 0 || *digits < '0' || *digits > '9') return -1;
    char *end = NULL;
    long l = strtol(digits, &end, 10);
    if (l < 0 || l > 1000000 || *end != '.' || sscanf(end + 1, "%63[a-z_.]", leaf) != 1) return -1;
    *layer = (int)l;
    for (int t = 0; t < LORA_TARGETS; t++) {
        char want[64];
        snprintf(want, sizeof want, "%s.weight", lora_target_module((LoraTarget)t));
        if (strcmp(leaf, want) == 0) {
            *target = t;
            return 0;
        }
    }
    return -1;
}

static int read_spec(const char *dir, LoraSpec *spec, Error *err) {
    char path[4200];
    path_join(path, sizeof path, dir, "adapter_config.json");
    cJSON *c = json_parse_file(path, err);
    if (!c) return -1;
    const char *type = NULL, *bias = NULL;
    int fifo = 0, dora = 0, rc = -1;
    memset(spec, 0, sizeof *spec);
    if (json_get_string(c, "peft_type", "", &type, path, err) || json_get_int(c, "r", 0, &spec->r, path, err) ||
        json_get_float(c, "lora_alpha", 8.0f, &spec->alpha, path, err) ||
        json_get_float(c, "lora_dropout", 0.0f, &spec->dropout, path, err) ||
        json_get_bool(c, "use_rslora", 0, &spec->rslora, path, err) ||
        json_get_bool(c, "fan_in_fan_out", 0, &fifo, path, err) || json_get_bool(c, "use_dora", 0, &dora, path, err) ||
        json_get_string(c, "bias", "none", &bias, path, err))
        goto done;
    if (strcmp(type, "LORA") != 0)
        err_set(err, "%s: peft_type is \"%s\"; only LORA adapters are supported", path, type);
    else if (spec->r < 1)
        err_set(err, "%s: \"r\" must be a positive integer", path);
    else if (fifo || dora || strcmp(bias, "none") != 0)
        err_set(err, "%s: fan_in_fan_out, use_dora and bias other than \"none\" are not supported", path);
    else
        rc = 0;
done:
    cJSON_Delete(c);
    return rc;
}

static int load_tensor(LlavaModel *m, const StFile *f, const StTensor *st, const ParamInfo *p, Error *err) {
    char a[64], b[64];
    if (st->ndim != p->ndim || memcmp(st->shape, p->shape, (size_t)p->ndim * sizeof(int64_t)) != 0)
        return err_set(err, "%s: tensor %s has shape %s, this base model needs %s (an adapter for another base "
                       "model, or another rank?)", f->path, st->name, st_shape_str(st->shape, st->ndim, a, sizeof a),
                       st_shape_str(p->shape, p->ndim, b, sizeof b));
    float *host = xmalloc(p->numel * sizeof(float));
    int rc = st_read_f32(f, st, host, err);
    if (rc == 0) m->ops->upload_act(model_weight(m, p), host, p->numel);
    free(host);
    return rc;
}

int lora_load_adapter(LlavaModel *m, const char *dir, Error *err) {
    LoraSpec spec;
    if (read_spec(dir, &spec, err) != 0) return -1;
    char path[4200];
    path_join(path, sizeof path, dir, "adapter_model.safetensors");
    char bin[4200];
    path_join(bin, sizeof bin, dir, "adapter_model.bin");
    if (!file_exists(path) && file_exists(bin))
        return err_set(err, "%s: only adapter_model.bin (torch.save, older peft); save it as safetensors first "
                       "(PeftModel.save_pretrained with safe_serialization=True)", dir);
    StFile f;
    if (st_open(&f, path, err) != 0) return -1;
    const int L = m->cfg.text.layers;
    int rc = 0;
    // Pass 1: which targets, and is every name one we understand?
    for (int i = 0; i < f.n && rc == 0; i++) {
        const char *name = f.tensors[i].name;
        int layer, target, is_b;
        char canon[256];
        const char *rest = strncmp(name, PEFT_PREFIX, strlen(PEFT_PREFIX)) == 0 ? name + strlen(PEFT_PREFIX) : name;
        if (lora_site(name, &layer, &target, &is_b) == 0) {
            if (layer >= L)
                rc = err_set(err, "%s: tensor %s is for layer %d, this base model has %d layers", path, name, layer, L);
            spec.targets |= 1u << target;
        } else if (!(names_to_canonical(rest, canon, sizeof canon) == NAME_PARAM &&
                     strncmp(canon, "projector.", 10) == 0)) {
            rc = err_set(err, "%s: tensor %s is neither a LoRA weight of a language-model linear layer nor the "
                         "projector (LoRA on other modules is not supported)", path, name);
        }
    }
    if (rc == 0 && !spec.targets) rc = err_set(err, "%s holds no LoRA weights", path);
    if (rc != 0) {
        st_close(&f);
        return -1;
    }
    lora_attach(m, &spec);
    // Pass 2: load, checking shapes; every (layer, target) must be present.
    unsigned char *seen = xcalloc((size_t)L * LORA_TARGETS * 2, 1);
    for (int i = 0; i < f.n && rc == 0; i++) {
        const StTensor *st = &f.tensors[i];
        int layer, target, is_b;
        char canon[256];
        if (lora_site(st->name, &layer, &target, &is_b) == 0) {
            snprintf(canon, sizeof canon, "lora.layers.%d.%s.lora_%c.weight", layer,
                     lora_target_module((LoraTarget)target), is_b ? 'B' : 'A');
            seen[((size_t)layer * LORA_TARGETS + target) * 2 + is_b] = 1;
        } else {
            const char *rest = strncmp(st->name, PEFT_PREFIX, strlen(PEFT_PREFIX)) == 0 ? st->name + strlen(PEFT_PREFIX)
                                                                                        : st->name;
            names_to_canonical(rest, canon, sizeof canon);
        }
        const ParamInfo *p = params_find(&m->params, canon);
        if (!p)
            rc = err_set(err, "%s: tensor %s has no place in this base model (%s)", path, st->name, canon);
        else
            rc = load_tensor(m, &f, st, p, err);
    }
    for (int k = 0; rc == 0 && k < L * LORA_TARGETS * 2; k++) {
        int t = (k / 2) % LORA_TARGETS;
        if ((spec.targets & (1u << t)) && !seen[k])
            rc = err_set(err, "%s: no lora_%c weight for layer %d %s (every layer must carry the same targets)", path,
                         k % 2 ? 'B' : 'A', k / 2 / LORA_TARGETS, lora_target_module((LoraTarget)t));
    }
    free(seen);
    st_close(&f);
    return rc;
}
