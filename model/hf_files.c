#include "model/hf_files.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"

static int save_json(const char *path, const cJSON *root, Error *err) {
    char *text = cJSON_Print(root);
    size_t len = strlen(text);
    text = xrealloc(text, len + 2);
    text[len] = '\n';
    int rc = write_file_atomic(path, text, len + 1, err);
    free(text);
    return rc;
}

static int copy_if_present(const char *src_dir, const char *dst_dir, const char *name, Error *err) {
    char src[4096], dst[4096];
    path_join(src, sizeof src, src_dir, name);
    path_join(dst, sizeof dst, dst_dir, name);
    if (!file_exists(src)) return 0;
    size_t len;
    char *data = read_file(src, &len, err);
    if (!data) return -1;
    int rc = write_file_atomic(dst, data, len, err);
    free(data);
    return rc;
}

static cJSON *added_token(int id, const char *content) {
    cJSON *t = cJSON_CreateObject();
    cJSON_AddNumberToObject(t, "id", id);
    cJSON_AddStringToObject(t, "content", content);
    cJSON_AddBoolToObject(t, "single_word", 0);
    cJSON_AddBoolToObject(t, "lstrip", 0);
    cJSON_AddBoolToObject(t, "rstrip", 0);
    cJSON_AddBoolToObject(t, "normalized", 0);
    cJSON_AddBoolToObject(t, "special", 1);
    return t;
}

// Returns the id of `content` among added_tokens, or -1.
static int find_added(const cJSON *added, const char *content) {
    const cJSON *t;
    cJSON_ArrayForEach(t, added) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(t, "content");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(t, "id");
        if (cJSON_IsString(c) && cJSON_IsNumber(id) && strcmp(c->valuestring, content) == 0) return id->valueint;
    }
    return -1;
}

// The id of a token: an added token, else an entry of the model's vocab; -1.
static int token_id(const cJSON *tok, const char *content) {
    int id = find_added(cJSON_GetObjectItemCaseSensitive(tok, "added_tokens"), content);
    if (id >= 0) return id;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(tok, "model");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(model, "vocab"), content);
    return cJSON_IsNumber(v) ? v->valueint : -1;
}

// The token with this id (an added token or a vocab entry), or NULL.
static const char *token_at(const cJSON *tok, int id) {
    const cJSON *t;
    cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(tok, "added_tokens")) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(t, "content");
        const cJSON *i = cJSON_GetObjectItemCaseSensitive(t, "id");
        if (cJSON_IsString(c) && cJSON_IsNumber(i) && i->valueint == id) return c->valuestring;
    }
    cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(tok, "model"), "vocab"))
        if (cJSON_IsNumber(t) && t->valueint == id) return t->string;
    return NULL;
}

// A special token in tokenizer_config.json / special_tokens_map.json: a
// string or an AddedToken object {"content": ...}; NULL when null or absent.
static const char *special_content(const cJSON *o, const char *key) {
    const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
    if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

// The tokenizer files of a folder, parsed: tokenizer.json, and
// tokenizer_config.json / special_tokens_map.json when present (else NULL).
typedef struct {
    cJSON *tok, *cfg, *map;
} TokenizerFiles;

static void tokenizer_files_free(TokenizerFiles *f) {
    cJSON_Delete(f->tok);
    cJSON_Delete(f->cfg);
    cJSON_Delete(f->map);
    memset(f, 0, sizeof *f);
}

static int tokenizer_files_load(TokenizerFiles *f, const char *dir, Error *err) {
    memset(f, 0, sizeof *f);
    char path[4096];
    path_join(path, sizeof path, dir, "tokenizer.json");
    if (!(f->tok = json_parse_file(path, err))) return -1;
    path_join(path, sizeof path, dir, "tokenizer_config.json");
    if (file_exists(path) && !(f->cfg = json_parse_file(path, err))) goto fail;
    path_join(path, sizeof path, dir, "special_tokens_map.json");
    if (file_exists(path) && !(f->map = json_parse_file(path, err))) goto fail;
    return 0;
fail:
    tokenizer_files_free(f);
    return -1;
}

// The pad token transformers loads (special_tokens_map.json overrides
// tokenizer_config.json), unless it is missing, null or the unknown token
// (Vicuna's "<unk>"): a real pad token, in short. NULL when there is none.
static const char *real_pad_token(const TokenizerFiles *f) {
    const char *pad = special_content(f->map, "pad_token");
    if (!pad) pad = special_content(f->cfg, "pad_token");
    if (!pad) return NULL;
    const char *unk = special_content(f->map, "unk_token");
    if (!unk) unk = special_content(f->cfg, "unk_token");
    if (!unk) {
        const cJSON *u = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(f->tok, "model"), "unk_token");
        unk = cJSON_IsString(u) ? u->valuestring : NULL;
    }
    return unk && strcmp(pad, unk) == 0 ? NULL : pad;
}

int hf_tokenizer_pad_id(const char *dir, int *pad_id, Error *err) {
    *pad_id = -1;
    char path[4096];
    path_join(path, sizeof path, dir, "tokenizer.json");
    if (!file_exists(path)) return 0;
    TokenizerFiles f;
    if (tokenizer_files_load(&f, dir, err) != 0) return -1;
    const char *pad = real_pad_token(&f);
    int rc = 0;
    if (pad && (*pad_id = token_id(f.tok, pad)) < 0)
        rc = err_set(err, "%s: the pad token '%.64s' is not in tokenizer.json", dir, pad);
    tokenizer_files_free(&f);
    return rc;
}

static void set_pad_token(cJSON *o, const char *content) {
    if (!o) return;
    cJSON_DeleteItemFromObjectCaseSensitive(o, "pad_token");
    cJSON_AddStringToObject(o, "pad_token", content);
}

// Adds an added token (special, not normalized) to tokenizer.json and to
// tokenizer_config.json's added_tokens_decoder.
static void add_special_token(TokenizerFiles *f, int id, const char *content) {
    cJSON *added = cJSON_GetObjectItemCaseSensitive(f->tok, "added_tokens");
    if (!cJSON_IsArray(added)) {
        cJSON_DeleteItemFromObjectCaseSensitive(f->tok, "added_tokens");
        added = cJSON_AddArrayToObject(f->tok, "added_tokens");
    }
    cJSON_AddItemToArray(added, added_token(id, content));
    cJSON *decoder = cJSON_GetObjectItemCaseSensitive(f->cfg, "added_tokens_decoder");
    if (!cJSON_IsObject(decoder)) {
        cJSON_DeleteItemFromObjectCaseSensitive(f->cfg, "added_tokens_decoder");
        decoder = cJSON_AddObjectToObject(f->cfg, "added_tokens_decoder");
    }
    char key[32];
    snprintf(key, sizeof key, "%d", id);
    if (!cJSON_GetObjectItemCaseSensitive(decoder, key)) {
        cJSON *d = added_token(id, content);
        cJSON_DeleteItemFromObject(d, "id");
        cJSON_AddItemToObject(decoder, key, d);
    }
}

// The pad token of the written files, so that transformers, our tokenizer and
// config.json's pad_token_id agree: the tokenizer's own pad token (its id
// must be pad_id); else the token already at pad_id (pad_token_id 0 with no
// pad token: "<unk>"); else "<pad>" added at pad_id, as llava-hf does (32001).
static int settle_pad(TokenizerFiles *f, const char *src, int pad_id, Error *err) {
    if (pad_id < 0) return 0;
    const char *pad = real_pad_token(f);
    if (pad) {
        int have = token_id(f->tok, pad);
        if (have != pad_id)
            return err_set(err, "%s: the tokenizer's pad token '%.64s' has id %d, the model's pad_token_id is %d", src,
                           pad, have, pad_id);
        return 0;
    }
    const char *at = token_at(f->tok, pad_id);
    if (!at) {
        int have = token_id(f->tok, "<pad>");
        if (have >= 0)
            return err_set(err, "%s/tokenizer.json: <pad> already has id %d, the model's pad_token_id is %d", src, have,
                           pad_id);
        add_special_token(f, pad_id, "<pad>");
        at = "<pad>";
    }
    char content[256];
    snprintf(content, sizeof content, "%s", at);  // `at` may live in the object set_pad_token replaces
    set_pad_token(f->cfg, content);
    set_pad_token(f->map, content);
    return 0;
}

int hf_write_tokenizer_files(const char *src, const char *dst, int image_token_id, int pad_id, Error *err) {
    TokenizerFiles f;
    if (tokenizer_files_load(&f, src, err) != 0) return -1;
    if (!f.cfg) f.cfg = cJSON_CreateObject();
    int rc = -1;
    if (image_token_id >= 0) {
        int have = find_added(cJSON_GetObjectItemCaseSensitive(f.tok, "added_tokens"), "<image>");
        if (have >= 0 && have != image_token_id) {
            err_set(err, "%s/tokenizer.json: <image> already has id %d, the model uses %d", src, have, image_token_id);
            goto done;
        }
        if (have < 0) add_special_token(&f, image_token_id, "<image>");
    }
    if (settle_pad(&f, src, pad_id, err) != 0) goto done;
    char path[4096];
    if (make_dirs(dst, err) != 0) goto done;
    path_join(path, sizeof path, dst, "tokenizer.json");
    if (save_json(path, f.tok, err) != 0) goto done;
    path_join(path, sizeof path, dst, "tokenizer_config.json");
    if (save_json(path, f.cfg, err) != 0) goto done;
    path_join(path, sizeof path, dst, "special_tokens_map.json");
    if (f.map && save_json(path, f.map, err) != 0) goto done;
    rc = copy_if_present(src, dst, "tokenizer.model", err);
done:
    tokenizer_files_free(&f);
    return rc;
}

int hf_write_model_files(const char *clip_dir, const char *llm_dir, const char *dst, const LlavaConfig *cfg,
                         Error *err) {
    char path[4096];
    if (llm_dir && path_join(path, sizeof path, llm_dir, "tokenizer.json") == 0 && file_exists(path) &&
        hf_write_tokenizer_files(llm_dir, dst, cfg->image_token_index, cfg->text.pad_id, err) != 0)
        return -1;
    return hf_write_processor_files(clip_dir, dst, cfg, err);
}

int hf_write_processor_files(const char *clip_dir, const char *dst, const LlavaConfig *cfg, Error *err) {
    char path[4096];
    if (make_dirs(dst, err) != 0) return -1;
    if (clip_dir) {
        path_join(path, sizeof path, clip_dir, "preprocessor_config.json");
        if (file_exists(path) && copy_if_present(clip_dir, dst, "preprocessor_config.json", err) != 0) return -1;
    }
    path_join(path, sizeof path, dst, "preprocessor_config.json");
    if (!file_exists(path)) {
        // SiglipImageProcessor (a square resize, no crop, mean/std 0.5) for a
        // SigLIP tower; CLIPImageProcessor with the OpenAI CLIP statistics, as
        // LLaVA uses, otherwise.
        const int S = cfg->vision.image_size, siglip = cfg->vision.kind == VISION_SIGLIP;
        static const double CLIP_MEAN[3] = {0.48145466, 0.4578275, 0.40821073};
        static const double CLIP_STD[3] = {0.26862954, 0.26130258, 0.27577711};
        static const double HALF[3] = {0.5, 0.5, 0.5};
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "image_processor_type", siglip ? "SiglipImageProcessor" : "CLIPImageProcessor");
        cJSON_AddBoolToObject(p, "do_resize", 1);
        cJSON *size = cJSON_AddObjectToObject(p, "size");
        if (siglip) {
            cJSON_AddNumberToObject(size, "height", S);
            cJSON_AddNumberToObject(size, "width", S);
        } else {
            cJSON_AddNumberToObject(size, "shortest_edge", S);
        }
        cJSON_AddNumberToObject(p, "resample", 3);
        cJSON_AddBoolToObject(p, "do_center_crop", !siglip);
        if (!siglip) {
            cJSON *crop = cJSON_AddObjectToObject(p, "crop_size");
            cJSON_AddNumberToObject(crop, "height", S);
            cJSON_AddNumberToObject(crop, "width", S);
        }
        cJSON_AddBoolToObject(p, "do_rescale", 1);
        cJSON_AddNumberToObject(p, "rescale_factor", 1.0 / 255.0);
        cJSON_AddBoolToObject(p, "do_normalize", 1);
        cJSON_AddItemToObject(p, "image_mean", cJSON_CreateDoubleArray(siglip ? HALF : CLIP_MEAN, 3));
        cJSON_AddItemToObject(p, "image_std", cJSON_CreateDoubleArray(siglip ? HALF : CLIP_STD, 3));
        cJSON_AddBoolToObject(p, "do_convert_rgb", 1);
        int rc = save_json(path, p, err);
        cJSON_Delete(p);
        if (rc) return -1;
    }
    cJSON *pc = cJSON_CreateObject();
    cJSON_AddStringToObject(pc, "processor_class", "LlavaProcessor");
    cJSON_AddStringToObject(pc, "image_token", "<image>");
    cJSON_AddNumberToObject(pc, "patch_size", cfg->vision.patch_size);
    cJSON_AddNumberToObject(pc, "num_additional_image_tokens", cfg->vision.kind == VISION_CLIP ? 1 : 0);  // CLS
    cJSON_AddStringToObject(pc, "vision_feature_select_strategy", cfg->keep_cls ? "full" : "default");
    path_join(path, sizeof path, dst, "processor_config.json");
    int rc = save_json(path, pc, err);
    cJSON_Delete(pc);
    return rc;
}
