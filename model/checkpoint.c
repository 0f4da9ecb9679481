#include "model/checkpoint.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "data/tokenizer.h"
#include "common/rng.h"
#include "model/hf_files.h"

// ---- folders of safetensors files ------------------------------------------------

static int add_file(CheckpointDir *d, const char *path, Error *err) {
    d->files = xrealloc(d->files, (size_t)(d->n_files + 1) * sizeof(StFile));
    if (st_open(&d->files[d->n_files], path, err) != 0) return -1;
    d->n_files++;
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

// Sharded folder: the index names a file for every tensor.
static int open_sharded(CheckpointDir *d, const char *index_path, Error *err) {
    cJSON *root = json_parse_file(index_path, err);
    if (!root) return -1;
    int rc = -1;
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    StrMap file_ids;
    strmap_init(&file_ids);
    if (!cJSON_IsObject(map)) {
        err_set(err, "%s: missing \"weight_map\" object", index_path);
        goto done;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, map) {
        if (!cJSON_IsString(e) || strchr(e->valuestring, '/') || strstr(e->valuestring, "..")) {
            err_set(err, "%s: weight_map entry '%s' must name a file in the folder", index_path, e->string);
            goto done;
        }
        int fi = strmap_get(&file_ids, e->valuestring);
        if (fi < 0) {
            char path[4096];
            if (path_join(path, sizeof path, d->dir, e->valuestring) != 0) {
                err_set(err, "%s: path too long", index_path);
                goto done;
            }
            if (add_file(d, path, err) != 0) goto done;
            fi = d->n_files - 1;
            strmap_put(&file_ids, e->valuestring, fi);
        }
        if (!st_find(&d->files[fi], e->string)) {
            err_set(err, "%s: tensor '%s' is mapped to %s but that file does not contain it", index_path, e->string,
                    e->valuestring);
            goto done;
        }
        strmap_put(&d->where, e->string, fi);
    }
    rc = 0;
done:
    strmap_free(&file_ids);
    cJSON_Delete(root);
    return rc;
}

int ckpt_dir_open(CheckpointDir *d, const char *dir, Error *err) {
    memset(d, 0, sizeof *d);
    strmap_init(&d->where);
    snprintf(d->dir, sizeof d->dir, "%s", dir);
    char path[4096];
    if (!dir_exists(dir)) {
        err_set(err, "%s: not a directory", dir);
        goto fail;
    }
    path_join(path, sizeof path, dir, "model.safetensors.index.json");
    if (file_exists(path)) {
        if (open_sharded(d, path, err) != 0) goto fail;
        return 0;
    }
    path_join(path, sizeof path, dir, "model.safetensors");
    if (file_exists(path)) {
        if (add_file(d, path, err) != 0) goto fail;
    } else {
        // Any other *.safetensors files, in name order.
        DIR *dh = opendir(dir);
        if (!dh) {
            err_set(err, "%s: cannot list directory", dir);
            goto fail;
        }
        char **names = NULL;
        int n = 0;
        struct dirent *de;
        while ((de = readdir(dh))) {
            size_t len = strlen(de->d_name);
            if (len > 12 && strcmp(de->d_name + len - 12, ".safetensors") == 0) {
                names = xrealloc(names, (size_t)(n + 1) * sizeof(char *));
                names[n++] = xstrdup(de->d_name);
            }
        }
        closedir(dh);
        qsort(names, (size_t)n, sizeof(char *), cmp_str);
        int bad = 0;
        for (int i = 0; i < n; i++) {
            if (!bad && path_join(path, sizeof path, dir, names[i]) == 0) bad = add_file(d, path, err) != 0;
            free(names[i]);
        }
        free(names);
        if (bad) goto fail;
        if (n == 0) {
            err_set(err, "%s: no safetensors weights found (model.safetensors or model.safetensors.index.json); "
                    "PyTorch .bin checkpoints must be converted to safetensors first", dir);
            goto fail;
        }
    }
    for (int fi = 0; fi < d->n_files; fi++)
        for (int i = 0; i < d->files[fi].n; i++) {
            const char *name = d->files[fi].tensors[i].name;
            int prev = strmap_get(&d->where, name);
            if (prev >= 0) {
                err_set(err, "%s: tensor '%s' is in both %s and %s", dir, name, d->files[prev].path,
                        d->files[fi].path);
                goto fail;
            }
            strmap_put(&d->where, name, fi);
        }
    return 0;
fail:
    ckpt_dir_close(d);
    return -1;
}

int ckpt_dir_open_file(CheckpointDir *d, const char *path, Error *err) {
    memset(d, 0, sizeof *d);
    strmap_init(&d->where);
    snprintf(d->dir, sizeof d->dir, "%s", path);
    if (add_file(d, path, err) != 0) {
        ckpt_dir_close(d);
        return -1;
    }
    for (int i = 0; i < d->files[0].n; i++) strmap_put(&d->where, d->files[0].tensors[i].name, 0);
    return 0;
}

void ckpt_dir_close(CheckpointDir *d) {
    for (int i = 0; i < d->n_files; i++) st_close(&d->files[i]);
    free(d->files);
    if (d->where.cap) strmap_free(&d->where);
    memset(d, 0, sizeof *d);
}

const StTensor *ckpt_dir_find(const CheckpointDir *d, const char *name, const StFile **file) {
    int fi = strmap_get(&d->where, name);
    if (fi < 0) return NULL;
    if (file) *file = &d->files[fi];
    return st_find(&d->files[fi], name);
}

// ---- loading into a model --------------------------------------------------------

static int shapes_equal(const ParamInfo *p, const StTensor *t) {
    if (p->ndim != t->ndim) return 0;
    for (int i = 0; i < p->ndim; i++)
        if (p->shape[i] != t->shape[i]) return 0;
    return 1;
}

static int is_vocab_tensor(const ParamInfo *p) {
    return strcmp(p->name, "llm.embed_tokens.weight") == 0 || strcmp(p->name, "llm.lm_head.weight") == 0;
}

// Uploads a tensor whose file holds only the first `rows` rows; the rest get
// the mean of those rows (how LLaVA and transformers initialize new tokens).
static void upload_resized(LlavaModel *m, const ParamInfo *p, float *host, int64_t rows) {
    int64_t cols = p->shape[1], total = p->shape[0];
    float *full = xcalloc((size_t)(total * cols), sizeof(float));
    memcpy(full, host, (size_t)(rows * cols) * sizeof(float));
    for (int64_t c = 0; c < cols; c++) {
        double s = 0.0;
        for (int64_t r = 0; r < rows; r++) s += host[r * cols + c];
        float mean = rows ? (float)(s / (double)rows) : 0.0f;
        for (int64_t r = rows; r < total; r++) full[r * cols + c] = mean;
    }
    m->ops->upload_act(model_weight(m, p), full, p->numel);
    free(full);
}

// A tied config whose file still carries a head: transformers 5 uses the
// file's lm_head, so one that differs from embed_tokens is refused instead of
// being silently replaced by the embedding.
static int check_tied_head(const LlavaModel *m, const StFile *f, const StTensor *head, Error *err) {
    const ParamInfo *emb = params_find(&m->params, "llm.embed_tokens.weight");
    if (head->ndim != 2 || head->shape[1] != emb->shape[1] || head->shape[0] > emb->shape[0])
        return err_set(err, "%s: tie_word_embeddings is true but '%s' has a shape unlike '%s'", f->path, head->name,
                       emb->file_name);
    float *h = xmalloc((size_t)head->numel * sizeof(float)), *e = xmalloc(emb->numel * sizeof(float));
    int rc = st_read_f32(f, head, h, err);
    if (rc == 0) {
        m->ops->download_act(e, model_weight(m, emb), emb->numel);
        double diff = 0.0;
        for (int64_t k = 0; k < head->numel; k++) diff = fmax(diff, fabs((double)h[k] - e[k]));
        if (diff > 0.0)
            rc = err_set(err,
                         "%s: config.json says tie_word_embeddings true, but '%s' differs from '%s' (max |diff| "
                         "%g); transformers would use the file's head: set tie_word_embeddings to false to keep "
                         "both, or drop '%s' from the file to tie them",
                         f->path, head->name, emb->file_name, diff, head->name);
    }
    free(h);
    free(e);
    return rc;
}

int checkpoint_load_modules(LlavaModel *m, const CheckpointDir *d, unsigned modules, int record_names,
                            int resize_vocab, Error *err) {
    const ParamTable *t = &m->params;
    char *loaded = xcalloc((size_t)t->n, 1);
    int rc = -1, unknown = 0;
    const StFile *tied_head_file = NULL;  // an lm_head in a tied model's files: checked once all is loaded
    const StTensor *tied_head = NULL;
    for (int fi = 0; fi < d->n_files; fi++) {
        const StFile *f = &d->files[fi];
        for (int i = 0; i < f->n; i++) {
            const StTensor *st = &f->tensors[i];
            char canon[160], sh1[128], sh2[128];
            NameKind kind = names_to_canonical(st->name, canon, sizeof canon);
            if (kind == NAME_IGNORED) continue;
            if (kind == NAME_UNKNOWN) {
                if (unknown++ < 5) fprintf(stderr, "llava: warning: %s: ignoring unrecognized tensor '%s'\n", f->path, st->name);
                continue;
            }
            const ParamInfo *p = params_find(t, canon);
            if (!p) {
                // A tied model may still carry an lm_head copy; anything else
                // is a tensor the config does not describe.
                if (strcmp(canon, "llm.lm_head.weight") == 0 && m->cfg.text.tied) {
                    tied_head_file = f;
                    tied_head = st;
                    continue;
                }
                if (strncmp(canon, "projector.", 10) == 0 && !(modules & (1u << MODULE_PROJECTOR))) continue;
                err_set(err, "%s: tensor '%s' does not exist in the model config.json describes (too many layers, "
                        "or a projector/bias the config does not have?)", f->path, st->name);
                goto done;
            }
            if (!(modules & (1u << p->module))) continue;
            int pi = (int)(p - t->p);
            if (loaded[pi]) {
                err_set(err, "%s: tensor '%s' maps to %s, which was already loaded from another name", f->path,
                        st->name, canon);
                goto done;
            }
            int resized = 0;
            if (!shapes_equal(p, st)) {
                resized = resize_vocab && is_vocab_tensor(p) && st->ndim == 2 && st->shape[1] == p->shape[1] &&
                          st->shape[0] < p->shape[0];
                if (!resized) {
                    err_set(err, "%s: tensor '%s': expected shape %s (from the config), found %s", f->path,
                            st->name, st_shape_str(p->shape, p->ndim, sh1, sizeof sh1),
                            st_shape_str(st->shape, st->ndim, sh2, sizeof sh2));
                    goto done;
                }
            }
            // The CPU backend's weights are host fp32: read straight into them
            // (no second copy of the tensor while loading).
            const int direct = !resized && strcmp(m->ops->name, "cpu") == 0;
            float *host = direct ? model_weight(m, p) : xmalloc((size_t)st->numel * sizeof(float));
            if (st_read_f32(f, st, host, err) != 0) {
                if (!direct) free(host);
                goto done;
            }
            if (resized)
                upload_resized(m, p, host, st->shape[0]);
            else if (!direct)
                m->ops->upload_act(model_weight(m, p), host, p->numel);
            if (!direct) free(host);
            loaded[pi] = 1;
            m->params.p[pi].file_dtype = st->dtype;
            if (record_names) {
                ParamInfo *pm = &m->params.p[pi];
                free(pm->file_name);
                pm->file_name = xstrdup(st->name);
            }
        }
    }
    for (int i = 0; i < t->n; i++) {
        const ParamInfo *p = &t->p[i];
        if (!(modules & (1u << p->module)) || loaded[i]) continue;
        char sh[128];
        err_set(err, "%s: missing tensor '%s' (%s, shape %s)", d->dir, p->file_name, p->name,
                st_shape_str(p->shape, p->ndim, sh, sizeof sh));
        goto done;
    }
    if (tied_head && (modules & (1u << MODULE_LLM)) && check_tied_head(m, tied_head_file, tied_head, err) != 0)
        goto done;
    rc = 0;
done:
    free(loaded);
    return rc;
}

int checkpoint_load_llava(LlavaModel *m, const char *dir, const Ops *ops, Error *err) {
    char path[4096];
    LlavaConfig cfg;
    if (path_join(path, sizeof path, dir, "config.json") != 0) return err_set(err, "%s: path too long", dir);
    if (config_load_llava(&cfg, path, err) != 0) return -1;
    CheckpointDir d;
    if (ckpt_dir_open(&d, dir, err) != 0) return -1;
    model_init(m, &cfg, ops);
    unsigned all = (1u << MODULE_VISION) | (1u << MODULE_PROJECTOR) | (1u << MODULE_LLM);
    int rc = checkpoint_load_modules(m, &d, all, 1, 0, err);
    ckpt_dir_close(&d);
    if (rc != 0) model_free(m);
    return rc;
}

// ---- composition from parts -------------------------------------------------------

void compose_options_default(ComposeOptions *o) {
    memset(o, 0, sizeof *o);
    o->projector = PROJECTOR_MLP2X_GELU;
    o->feature_layer = -2;
    o->image_token_index = -1;
    o->pad_vocab_to = 64;
    o->seed = 0;
}

void checkpoint_init_projector(LlavaModel *m, unsigned long long seed) {
    Rng rng;
    rng_seed(&rng, seed ^ 0x5052304a45435452ull);
    for (int i = 0; i < m->params.n; i++) {
        const ParamInfo *p = &m->params.p[i];
        if (p->module != MODULE_PROJECTOR) continue;
        // Both weight and bias of a Linear use bound 1/sqrt(in_features).
        int fan_in = p->ndim == 2 ? (int)p->shape[1]
                     : strstr(p->name, "linear_1") ? m->cfg.vision.hidden : m->cfg.text.hidden;
        float bound = 1.0f / sqrtf((float)fan_in);
        float *host = xmalloc(p->numel * sizeof(float));
        for (size_t k = 0; k < p->numel; k++) host[k] = (2.0f * rng_uniform(&rng) - 1.0f) * bound;
        m->ops->upload_act(model_weight(m, p), host, p->numel);
        free(host);
    }
}

void checkpoint_init_random(LlavaModel *m, unsigned long long seed) {
    Rng rng;
    rng_seed(&rng, seed);
    for (int i = 0; i < m->params.n; i++) {
        const ParamInfo *p = &m->params.p[i];
        if (p->module == MODULE_PROJECTOR) continue;
        float *host = xmalloc(p->numel * sizeof(float));
        size_t len = strlen(p->name);
        int is_bias = len > 5 && strcmp(p->name + len - 5, ".bias") == 0;
        int is_cls = strstr(p->name, "class_embedding") != NULL;
        float std = is_cls ? 1.0f / sqrtf((float)m->cfg.vision.hidden) : 0.02f;
        for (size_t k = 0; k < p->numel; k++) {
            if (is_bias)
                host[k] = 0.0f;
            else if (p->ndim == 1 && !is_cls)
                host[k] = 1.0f;  // norm weights
            else
                host[k] = std * rng_normal(&rng);
        }
        m->ops->upload_act(model_weight(m, p), host, p->numel);
        free(host);
    }
    checkpoint_init_projector(m, seed);
}

// 1 when the folder holds tensors of the module whose canonical names start
// with `prefix` ("projector.", "vision.").
static int has_module_tensors(const CheckpointDir *d, const char *prefix) {
    for (int fi = 0; fi < d->n_files; fi++)
        for (int i = 0; i < d->files[fi].n; i++) {
            char canon[160];
            if (names_to_canonical(d->files[fi].tensors[i].name, canon, sizeof canon) == NAME_PARAM &&
                strncmp(canon, prefix, strlen(prefix)) == 0)
                return 1;
        }
    return 0;
}

int checkpoint_compose(LlavaModel *m, const ComposeOptions *opt, const Ops *ops, Error *err) {
    LlavaConfig cfg;
    memset(&cfg, 0, sizeof cfg);
    char path[4096];
    cfg.projector = opt->projector;
    cfg.projector_bias = 1;
    cfg.feature_layer = opt->feature_layer;
    cfg.keep_cls = opt->keep_cls;
    path_join(path, sizeof path, opt->vision_dir, "config.json");
    if (config_load_clip_vision(&cfg.vision, path, err) != 0) return -1;
    path_join(path, sizeof path, opt->llm_dir, "config.json");
    if (config_load_llama(&cfg.text, &cfg, path, err) != 0) return -1;
    int resize = 0;
    // A tokenizer that already has <image> inside the vocabulary (LLaVA-NeXT
    // style Qwen2 / Llama-3 folders) keeps it; the vocabulary is not grown.
    int32_t existing_image = -1, tokenizer_size = -1;
    char tok_json[4096];
    if (opt->image_token_index < 0 && path_join(tok_json, sizeof tok_json, opt->llm_dir, "tokenizer.json") == 0 &&
        file_exists(tok_json)) {
        Tokenizer *tok = NULL;
        Error terr = {{0}};
        if (tokenizer_load(&tok, opt->llm_dir, &terr) == 0) {
            existing_image = tokenizer_token_to_id(tok, "<image>");
            tokenizer_size = tokenizer_vocab_size(tok);
            tokenizer_free(tok);
        }
        if (existing_image >= cfg.text.vocab) existing_image = -1;
    }
    if (opt->image_token_index >= 0) {
        cfg.image_token_index = opt->image_token_index;
    } else {
        // The pad id is the tokenizer's, not config.json's: Vicuna-1.5 says
        // pad_token_id 0 (<unk>) with no pad token, and HF numbers <pad> V + 1;
        // Qwen2's is <|endoftext|>.
        int V = cfg.text.vocab, pad_to = opt->pad_vocab_to > 0 ? opt->pad_vocab_to : 1, tok_pad = -1;
        if (hf_tokenizer_pad_id(opt->llm_dir, &tok_pad, err) != 0) return -1;
        if (existing_image >= 0) {
            cfg.image_token_index = existing_image;
            if (tok_pad >= 0 && tok_pad < V) cfg.text.pad_id = tok_pad;
        } else {
            // Append <image> and <pad> as llava-hf does (32000, 32001 -> vocab
            // 32064), right after the tokenizer's last id: that is the id
            // tokenizers gives a new added token whatever the file says.
            // Qwen2.5's tokenizer ends at 151665 inside 151936 embedding rows,
            // so <image> is 151665 and the rows are not grown.
            int first = tokenizer_size >= 0 && tokenizer_size < V ? tokenizer_size : V;
            cfg.image_token_index = first;
            cfg.text.pad_id = tok_pad >= 0 ? tok_pad : first + 1;
            int needed = cfg.text.pad_id > first ? first + 2 : first + 1;
            if (needed > V) {
                cfg.text.vocab = (needed + pad_to - 1) / pad_to * pad_to;
                resize = 1;
            }
        }
    }
    // A SigLIP tower has no CLS: its features are the full patch grid (as
    // LLaVA-OneVision uses it); strategy default would drop the first patch.
    if (cfg.vision.kind == VISION_SIGLIP) cfg.keep_cls = 1;
    int grid = cfg.vision.image_size / cfg.vision.patch_size;
    cfg.image_seq_length = grid * grid + (cfg.vision.kind == VISION_CLIP ? 1 : 0) - (cfg.keep_cls ? 0 : 1);
    if (config_finish(&cfg, err) != 0) return -1;

    model_init(m, &cfg, ops);
    CheckpointDir d;
    // An original LLaVA folder carries its projector beside the LLM weights,
    // and, when it was saved with its tower, the tower too
    // (model.vision_tower.vision_tower.*): those weights win over --vision's,
    // whose config still describes the tower.
    if (ckpt_dir_open(&d, opt->llm_dir, err) != 0) goto fail;
    int vision_in_llm = has_module_tensors(&d, "vision.");
    int projector_in_llm = !opt->projector_path && has_module_tensors(&d, "projector.");
    ckpt_dir_close(&d);
    int rc;
    if (!vision_in_llm) {
        if (ckpt_dir_open(&d, opt->vision_dir, err) != 0) goto fail;
        rc = checkpoint_load_modules(m, &d, 1u << MODULE_VISION, 0, 0, err);
        ckpt_dir_close(&d);
        if (rc) goto fail;
    }
    fprintf(stderr, "llava: vision tower weights from %s%s (config from %s)\n",
            vision_in_llm ? opt->llm_dir : opt->vision_dir, vision_in_llm ? " (the LLaVA folder's own tower)" : "",
            opt->vision_dir);
    if (ckpt_dir_open(&d, opt->llm_dir, err) != 0) goto fail;
    unsigned llm_modules = 1u << MODULE_LLM;
    if (projector_in_llm) llm_modules |= 1u << MODULE_PROJECTOR;
    if (vision_in_llm) llm_modules |= 1u << MODULE_VISION;
    rc = checkpoint_load_modules(m, &d, llm_modules, 0, resize, err);
    ckpt_dir_close(&d);
    if (rc) goto fail;
    if (opt->projector_path) {
        if (ckpt_dir_open_file(&d, opt->projector_path, err) != 0) goto fail;
        rc = checkpoint_load_modules(m, &d, 1u << MODULE_PROJECTOR, 0, 0, err);
        ckpt_dir_close(&d);
        if (rc) goto fail;
    } else if (!projector_in_llm) {
        checkpoint_init_projector(m, opt->seed);
    }
    return 0;
fail:
    model_free(m);
    return -1;
}
