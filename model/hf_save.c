#include "model/hf_save.h"

#include <stdlib.h>
#include <string.h>

#include "common/safetensors.h"
#include "model/torch_save.h"

static StDtype dtype_for(const ParamInfo *p, const char *save_dtype) {
    if (strcmp(save_dtype, "bf16") == 0) return ST_BF16;
    if (strcmp(save_dtype, "f32") == 0) return ST_F32;
    return (p->file_dtype == ST_BF16 || p->file_dtype == ST_F16) ? (StDtype)p->file_dtype : ST_F32;
}

static float *download_param(const LlavaModel *m, const ParamInfo *p) {
    float *host = xmalloc(p->numel * sizeof(float));
    m->ops->download_act(host, model_weight(m, p), p->numel);
    return host;
}

// Tokenizer and processor files travel with the weights.
static const char *COMPANION_FILES[] = {
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
    "added_tokens.json", "preprocessor_config.json", "processor_config.json", "chat_template.json",
    "chat_template.jinja", "generation_config.json",
};

static int copy_file(const char *src, const char *dst, Error *err) {
    size_t len = 0;
    char *data = read_file(src, &len, err);
    if (!data) return -1;
    int rc = write_file_atomic(dst, data, len, err);
    free(data);
    return rc;
}

int save_model_folder(const LlavaModel *m, const char *dir, const char *copy_from, const char *save_dtype,
                      uint64_t max_shard_bytes, Error *err) {
    if (make_dirs(dir, err) != 0) return -1;
    char path[4096];
    path_join(path, sizeof path, dir, "config.json");
    if (config_save_llava(&m->cfg, path, err) != 0) return -1;
    // Assign tensors to shards in layout order.
    const ParamTable *t = &m->params;
    // LoRA adapters (appended last) are not part of a model folder: they are
    // saved as an adapter (lora_io.h) or merged first.
    int n_base = t->n;
    while (n_base > 0 && t->p[n_base - 1].module == MODULE_LORA) n_base--;
    int *shard_of = xcalloc((size_t)t->n, sizeof(int));
    int n_shards = 1;
    uint64_t used = 0;
    for (int i = 0; i < n_base; i++) {
        uint64_t bytes = t->p[i].numel * st_dtype_size(dtype_for(&t->p[i], save_dtype));
        if (used > 0 && used + bytes > max_shard_bytes) {
            n_shards++;
            used = 0;
        }
        shard_of[i] = n_shards - 1;
        used += bytes;
    }
    int rc = 0;
    uint64_t total = 0;
    for (int s = 0; s < n_shards && rc == 0; s++) {
        StWriter w;
        st_writer_init(&w);
        st_writer_set_metadata(&w, "format", "pt");
        for (int i = 0; i < n_base; i++) {
            if (shard_of[i] != s) continue;
            const ParamInfo *p = &t->p[i];
            float *host = download_param(m, p);
            st_writer_add_f32_as(&w, p->file_name, dtype_for(p, save_dtype), p->ndim, p->shape, host);
            free(host);
        }
        char name[64];
        if (n_shards == 1)
            snprintf(name, sizeof name, "model.safetensors");
        else
            snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, n_shards);
        path_join(path, sizeof path, dir, name);
        uint64_t bytes = 0;
        rc = st_writer_save(&w, path, &bytes, err);
        total += bytes;
        st_writer_free(&w);
    }
    if (rc == 0 && n_shards > 1) {
        // model.safetensors.index.json: {"metadata": {"total_size"}, "weight_map"}
        size_t cap = 256 + (size_t)n_base * 200, len = 0;
        char *json = xmalloc(cap);
        len += (size_t)snprintf(json + len, cap - len, "{\n  \"metadata\": {\"total_size\": %llu},\n  \"weight_map\": {\n",
                                (unsigned long long)total);
        for (int i = 0; i < n_base; i++)
            len += (size_t)snprintf(json + len, cap - len, "    \"%s\": \"model-%05d-of-%05d.safetensors\"%s\n",
                                    t->p[i].file_name, shard_of[i] + 1, n_shards, i + 1 < n_base ? "," : "");
        len += (size_t)snprintf(json + len, cap - len, "  }\n}\n");
        path_join(path, sizeof path, dir, "model.safetensors.index.json");
        rc = write_file_atomic(path, json, len, err);
        free(json);
    }
    free(shard_of);
    for (size_t i = 0; rc == 0 && copy_from && i < sizeof COMPANION_FILES / sizeof *COMPANION_FILES; i++) {
        char src[4096];
        path_join(src, sizeof src, copy_from, COMPANION_FILES[i]);
        if (!file_exists(src)) continue;
        path_join(path, sizeof path, dir, COMPANION_FILES[i]);
        rc = copy_file(src, path, err);
    }
    return rc;
}

void save_llava_projector_name(const LlavaModel *m, const ParamInfo *p, const char *prefix, char *out, size_t cap) {
    // LLaVA: mm_projector = Sequential(Linear, GELU, Linear) -> indices 0 and 2;
    // a linear projector is the bare Linear.
    const char *leaf = strrchr(p->name, '.') + 1;  // weight | bias
    if (m->cfg.projector == PROJECTOR_LINEAR)
        snprintf(out, cap, "%smodel.mm_projector.%s", prefix, leaf);
    else
        snprintf(out, cap, "%smodel.mm_projector.%d.%s", prefix, strstr(p->name, "linear_1") ? 0 : 2, leaf);
}

int save_projector_files(const LlavaModel *m, const char *dir, Error *err) {
    if (make_dirs(dir, err) != 0) return -1;
    const ParamTable *t = &m->params;
    StWriter w;
    st_writer_init(&w);
    st_writer_set_metadata(&w, "format", "pt");
    TorchTensor tt[4];
    char names[4][64];
    float *hosts[4] = {0};
    int n = 0;
    for (int i = 0; i < t->n; i++) {
        const ParamInfo *p = &t->p[i];
        if (p->module != MODULE_PROJECTOR) continue;
        CHECK(n < 4, "more than 4 projector tensors");
        hosts[n] = download_param(m, p);
        st_writer_add(&w, p->file_name, ST_F32, p->ndim, p->shape, hosts[n]);
        save_llava_projector_name(m, p, "", names[n], sizeof names[n]);
        tt[n] = (TorchTensor){names[n], p->ndim, p->shape, hosts[n]};
        n++;
    }
    char path[4096];
    path_join(path, sizeof path, dir, "projector.safetensors");
    int rc = st_writer_save(&w, path, NULL, err);
    st_writer_free(&w);
    if (rc == 0) {
        path_join(path, sizeof path, dir, "mm_projector.bin");
        rc = torch_save_f32(path, tt, n, err);
    }
    for (int i = 0; i < n; i++) free(hosts[i]);
    return rc;
}
