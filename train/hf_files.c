#include "train/hf_files.h"

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

int hf_write_tokenizer_files(const char *src, const char *dst, int image_token_id, int pad_id, Error *err) {
    char path[4096];
    path_join(path, sizeof path, src, "tokenizer.json");
    cJSON *tok = json_parse_file(path, err);
    if (!tok) return -1;
    path_join(path, sizeof path, src, "tokenizer_config.json");
    cJSON *cfg = file_exists(path) ? json_parse_file(path, err) : cJSON_CreateObject();
    if (!cfg) {
        cJSON_Delete(tok);
        return -1;
    }
    int rc = -1;
    cJSON *added = cJSON_GetObjectItemCaseSensitive(tok, "added_tokens");
    if (!cJSON_IsArray(added)) {
        added = cJSON_CreateArray();
        cJSON_AddItemToObject(tok, "added_tokens", added);
    }
    cJSON *decoder = cJSON_GetObjectItemCaseSensitive(cfg, "added_tokens_decoder");
    if (!cJSON_IsObject(decoder)) {
        decoder = cJSON_CreateObject();
        cJSON_AddItemToObject(cfg, "added_tokens_decoder", decoder);
    }
    struct {
        const char *content;
        int id;
    } want[2] = {{"<image>", image_token_id}, {"<pad>", pad_id}};
    const cJSON *pad_token = cJSON_GetObjectItemCaseSensitive(cfg, "pad_token");
    for (int i = 0; i < 2; i++) {
        if (want[i].id < 0) continue;
        if (i == 1 && pad_token && !cJSON_IsNull(pad_token)) continue;  // keep an existing pad token
        int have = find_added(added, want[i].content);
        if (have >= 0 && have != want[i].id) {
            err_set(err, "%s/tokenizer.json: %s already has id %d, the model uses %d", src, want[i].content, have,
                    want[i].id);
            goto done;
        }
        if (have < 0) cJSON_AddItemToArray(added, added_token(want[i].id, want[i].content));
        char key[32];
        snprintf(key, sizeof key, "%d", want[i].id);
        if (!cJSON_GetObjectItemCaseSensitive(decoder, key)) {
            cJSON *d = added_token(want[i].id, want[i].content);
            cJSON_DeleteItemFromObject(d, "id");
            cJSON_AddItemToObject(decoder, key, d);
        }
        if (i == 1) {
            cJSON_DeleteItemFromObject(cfg, "pad_token");
            cJSON_AddStringToObject(cfg, "pad_token", "<pad>");
        }
    }
    if (make_dirs(dst, err) != 0) goto done;
    path_join(path, sizeof path, dst, "tokenizer.json");
    if (save_json(path, tok, err) != 0) goto done;
    path_join(path, sizeof path, dst, "tokenizer_config.json");
    if (save_json(path, cfg, err) != 0) goto done;
    if (copy_if_present(src, dst, "special_tokens_map.json", err) != 0) goto done;
    rc = copy_if_present(src, dst, "tokenizer.model", err);
done:
    cJSON_Delete(tok);
    cJSON_Delete(cfg);
    return rc;
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
