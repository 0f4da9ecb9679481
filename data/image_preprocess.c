// preprocessor_config.json, and LLaVA's image preprocessing on decoded RGB:
// expand2square (pad mode) -> shortest-edge BICUBIC resize -> centre crop ->
// rescale -> normalize, as transformers' CLIPImageProcessor (PIL backend,
// numpy arithmetic) computes it; SiglipImageProcessor is the same pipeline
// with a square height/width resize, no crop and mean/std 0.5. See
// docs/data.md, "Images".
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "data/image.h"

static const double CLIP_MEAN[3] = {0.48145466, 0.4578275, 0.40821073};
static const double CLIP_STD[3] = {0.26862954, 0.26130258, 0.27577711};

void image_config_default(ImagePreprocessConfig *cfg, int size) {
    memset(cfg, 0, sizeof *cfg);
    cfg->do_resize = cfg->do_center_crop = cfg->do_rescale = cfg->do_normalize = cfg->do_convert_rgb = 1;
    cfg->shortest_edge = size;
    cfg->crop_h = cfg->crop_w = size;
    cfg->resample = 3;
    cfg->rescale_factor = 1.0 / 255.0;
    memcpy(cfg->image_mean, CLIP_MEAN, sizeof CLIP_MEAN);
    memcpy(cfg->image_std, CLIP_STD, sizeof CLIP_STD);
}

// "size": 336 | {"shortest_edge": 336} | {"height": H, "width": W}.
static int parse_size(const cJSON *v, ImagePreprocessConfig *cfg, const char *what, Error *err) {
    if (cJSON_IsNumber(v)) {
        int64_t n;
        if (json_number_to_int64(v, 0, IMAGE_MAX_SIDE, &n) != 0)
            return err_set(err, "%s: \"size\" must be an integer in [1, %d]", what, IMAGE_MAX_SIDE);
        cfg->shortest_edge = (int)n;
        cfg->size_h = cfg->size_w = 0;
    } else if (cJSON_IsObject(v) && json_has(v, "shortest_edge")) {
        if (json_has(v, "longest_edge"))
            return err_set(err, "%s: size.longest_edge is not supported (only shortest_edge or height/width)", what);
        if (json_get_int(v, "shortest_edge", 0, &cfg->shortest_edge, what, err) != 0) return -1;
        cfg->size_h = cfg->size_w = 0;
    } else if (cJSON_IsObject(v) && json_has(v, "height") && json_has(v, "width")) {
        if (json_get_int(v, "height", 0, &cfg->size_h, what, err) != 0 ||
            json_get_int(v, "width", 0, &cfg->size_w, what, err) != 0)
            return -1;
        cfg->shortest_edge = 0;
    } else {
        return err_set(err, "%s: \"size\" must be a number, {\"shortest_edge\": N} or {\"height\": H, \"width\": W}",
                       what);
    }
    if (cfg->shortest_edge < 0 || cfg->size_h < 0 || cfg->size_w < 0 ||
        (cfg->shortest_edge == 0 && (cfg->size_h == 0 || cfg->size_w == 0)))
        return err_set(err, "%s: \"size\" must be positive", what);
    return 0;
}

static int parse_triple(const cJSON *obj, const char *key, double out[3], const char *what, Error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (cJSON_IsNumber(v)) {
        if (!isfinite(v->valuedouble)) return err_set(err, "%s: \"%s\" must be a finite number", what, key);
        out[0] = out[1] = out[2] = v->valuedouble;
        return 0;
    }
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 3)
        return err_set(err, "%s: \"%s\" must be a number or a list of 3 numbers (RGB)", what, key);
    for (int c = 0; c < 3; c++) {
        const cJSON *e = cJSON_GetArrayItem(v, c);
        if (!cJSON_IsNumber(e) || !isfinite(e->valuedouble))
            return err_set(err, "%s: \"%s\"[%d] must be a finite number", what, key, c);
        out[c] = e->valuedouble;
    }
    return 0;
}

int image_config_parse(ImagePreprocessConfig *cfg, const char *text, size_t len, const char *what, Error *err) {
    cJSON *root = json_parse_text(text, len, what, err);
    if (!root) return -1;
    int rc = -1;
    // Keys that are absent take CLIPImageProcessor's class defaults (224).
    image_config_default(cfg, 224);
    const char *type = NULL;
    if (!cJSON_IsObject(root)) {
        err_set(err, "%s: must be a JSON object", what);
        goto done;
    }
    if (json_get_string(root, "image_processor_type", NULL, &type, what, err) != 0) goto done;
    int siglip = type && (strcmp(type, "SiglipImageProcessor") == 0 || strcmp(type, "SiglipImageProcessorFast") == 0 ||
                          strcmp(type, "SiglipImageProcessorPil") == 0);
    if (type && !siglip && strcmp(type, "CLIPImageProcessor") != 0 && strcmp(type, "CLIPImageProcessorFast") != 0 &&
        strcmp(type, "CLIPImageProcessorPil") != 0) {
        err_set(err,
                "%s: image_processor_type \"%s\" is not supported (CLIPImageProcessor or SiglipImageProcessor; "
                "refused by name: Siglip2ImageProcessor, LlavaNextImageProcessor, LlavaOnevisionImageProcessor)",
                what, type);
        goto done;
    }
    if (siglip) {  // SiglipImageProcessor's class defaults: 224x224, no crop, mean/std 0.5
        cfg->do_center_crop = 0;
        cfg->shortest_edge = 0;
        cfg->size_h = cfg->size_w = 224;
        for (int c = 0; c < 3; c++) cfg->image_mean[c] = cfg->image_std[c] = 0.5;
    }
    if (json_get_bool(root, "do_resize", 1, &cfg->do_resize, what, err) != 0 ||
        json_get_bool(root, "do_center_crop", !siglip, &cfg->do_center_crop, what, err) != 0 ||
        json_get_bool(root, "do_rescale", 1, &cfg->do_rescale, what, err) != 0 ||
        json_get_bool(root, "do_normalize", 1, &cfg->do_normalize, what, err) != 0 ||
        json_get_bool(root, "do_convert_rgb", 1, &cfg->do_convert_rgb, what, err) != 0 ||
        json_get_int(root, "resample", 3, &cfg->resample, what, err) != 0 ||
        json_get_double(root, "rescale_factor", 1.0 / 255.0, &cfg->rescale_factor, what, err) != 0 ||
        parse_triple(root, "image_mean", cfg->image_mean, what, err) != 0 ||
        parse_triple(root, "image_std", cfg->image_std, what, err) != 0)
        goto done;
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(root, "size");
    if (size && !cJSON_IsNull(size) && parse_size(size, cfg, what, err) != 0) goto done;
    const cJSON *crop = cJSON_GetObjectItemCaseSensitive(root, "crop_size");
    if (cJSON_IsNumber(crop)) {
        int64_t n;
        if (json_number_to_int64(crop, 1, IMAGE_MAX_SIDE, &n) != 0) {
            err_set(err, "%s: \"crop_size\" must be an integer in [1, %d]", what, IMAGE_MAX_SIDE);
            goto done;
        }
        cfg->crop_h = cfg->crop_w = (int)n;
    } else if (cJSON_IsObject(crop)) {
        if (json_get_int(crop, "height", 0, &cfg->crop_h, what, err) != 0 ||
            json_get_int(crop, "width", 0, &cfg->crop_w, what, err) != 0)
            goto done;
    } else if (crop && !cJSON_IsNull(crop)) {
        err_set(err, "%s: \"crop_size\" must be a number or {\"height\": H, \"width\": W}", what);
        goto done;
    }
    // Sides far above any vision tower's, low enough that S*S*3 floats and
    // the resize arithmetic stay small.
    const int sides[] = {cfg->shortest_edge, cfg->size_h, cfg->size_w, cfg->crop_h, cfg->crop_w};
    for (int i = 0; i < 5; i++)
        if (sides[i] < 0 || sides[i] > IMAGE_MAX_SIDE) {
            err_set(err, "%s: size/crop_size %d is outside [1, %d]", what, sides[i], IMAGE_MAX_SIDE);
            goto done;
        }
    if (!(cfg->rescale_factor > 0)) {
        err_set(err, "%s: rescale_factor must be > 0", what);
        goto done;
    }
    if (cfg->resample != 3) {
        err_set(err, "%s: resample = %d is not supported (only 3, BICUBIC, as CLIP uses)", what, cfg->resample);
        goto done;
    }
    for (int c = 0; c < 3; c++)
        if (!(cfg->image_std[c] != 0.0)) {
            err_set(err, "%s: image_std[%d] must be non-zero", what, c);
            goto done;
        }
    if (image_config_out_size(cfg) <= 0) {
        err_set(err,
                "%s: the output is not a fixed square: needs do_center_crop with a square crop_size "
                "(got %dx%d), or a square height/width resize without crop",
                what, cfg->crop_h, cfg->crop_w);
        goto done;
    }
    rc = 0;
done:
    cJSON_Delete(root);
    return rc;
}

int image_config_load(ImagePreprocessConfig *cfg, const char *model_dir, Error *err) {
    char path[4096];
    if (path_join(path, sizeof path, model_dir, "preprocessor_config.json") != 0)
        return err_set(err, "%s: path too long", model_dir);
    if (!file_exists(path)) {
        image_config_default(cfg, 336);
        return 1;
    }
    size_t len = 0;
    char *text = read_file(path, &len, err);
    if (!text) return -1;
    int rc = image_config_parse(cfg, text, len, path, err);
    free(text);
    return rc;
}

int image_config_out_size(const ImagePreprocessConfig *cfg) {
    if (cfg->do_center_crop) return cfg->crop_h > 0 && cfg->crop_h == cfg->crop_w ? cfg->crop_h : -1;
    if (cfg->do_resize && cfg->shortest_edge == 0 && cfg->size_h > 0 && cfg->size_h == cfg->size_w)
        return cfg->size_h;
    return -1;
}

void image_config_pad_color(const ImagePreprocessConfig *cfg, uint8_t rgb[3]) {
    for (int c = 0; c < 3; c++) {
        double v = cfg->image_mean[c] * 255;  // LLaVA: tuple(int(x * 255) for x in image_mean)
        rgb[c] = (uint8_t)(v <= 0 ? 0 : v >= 255 ? 255 : (int)v);
    }
}

// LLaVA's expand2square: a square image as is; otherwise a canvas of the
// longer side filled with `fill`, the image pasted centred on the short axis
// at offset (long - short) // 2. Described, not built: the resampler reads
// the canvas through the image (data/image_resize.c).
static Canvas expand_to_square(const RgbImage *in, const uint8_t fill[3]) {
    Canvas cv = {.im = in, .w = in->w, .h = in->h};
    memcpy(cv.fill, fill, 3);
    if (in->w > in->h) {
        cv.h = in->w;
        cv.oy = (in->w - in->h) / 2;
    } else if (in->h > in->w) {
        cv.w = in->h;
        cv.ox = (in->h - in->w) / 2;
    }
    return cv;
}

// Python's a // b for b > 0.
static int floor_div(int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// The resize output size of a w x h canvas (after expand2square when
// padding): transformers' get_resize_output_image_size(default_to_square=
// False): short side -> shortest_edge, long side -> int(shortest_edge * long
// / short). -1 + err when it cannot give the S x S output.
static int resize_size(int w, int h, const ImagePreprocessConfig *cfg, int S, int *ow, int *oh, Error *err) {
    *ow = w, *oh = h;
    if (cfg->do_resize) {
        if (cfg->shortest_edge > 0) {
            const int shrt = w <= h ? w : h, lng = w <= h ? h : w;
            const double q = (double)((int64_t)cfg->shortest_edge * lng) / (double)shrt;
            if (q > 1e9) return err_set(err, "image of %dx%d: aspect ratio too extreme to resize", w, h);
            const int new_long = (int)q;
            *ow = w <= h ? cfg->shortest_edge : new_long;
            *oh = w <= h ? new_long : cfg->shortest_edge;
        } else {
            *ow = cfg->size_w;
            *oh = cfg->size_h;
        }
    }
    if (!cfg->do_center_crop && (*ow != S || *oh != S))
        return err_set(err, "image of %dx%d resizes to %dx%d, not the %dx%d the config promises", w, h, *ow, *oh,
                       S, S);
    return 0;
}

int image_preprocess_check(int w, int h, const ImagePreprocessConfig *cfg, ImageAspect aspect, Error *err) {
    const int S = image_config_out_size(cfg);
    if (S <= 0) return err_set(err, "image preprocessing: the config does not give a square output");
    if (w <= 0 || h <= 0) return err_set(err, "empty image (%dx%d)", w, h);
    if (aspect == IMAGE_ASPECT_PAD) w = h = w > h ? w : h;
    int ow, oh;
    return resize_size(w, h, cfg, S, &ow, &oh, err);
}

int image_preprocess_u8(const RgbImage *in, const ImagePreprocessConfig *cfg, ImageAspect aspect,
                        ImageWork *work, uint8_t *out_chw, Error *err) {
    const int S = image_config_out_size(cfg);
    if (S <= 0) return err_set(err, "image preprocessing: the config does not give a square output");
    CHECK(in->w > 0 && in->h > 0 && in->px, "empty image");
    Canvas cv = {.im = in, .w = in->w, .h = in->h};
    if (aspect == IMAGE_ASPECT_PAD) {
        uint8_t fill[3];
        image_config_pad_color(cfg, fill);
        cv = expand_to_square(in, fill);
    }
    int ow, oh;
    if (resize_size(cv.w, cv.h, cfg, S, &ow, &oh, err) != 0) return -1;
    ImageWork local = {0};
    if (!work) work = &local;
    const Canvas *src = &cv;
    // transformers' center_crop: top = (H - S) // 2, zero padding outside.
    const int x0 = cfg->do_center_crop ? floor_div(ow - S, 2) : 0;
    const int y0 = cfg->do_center_crop ? floor_div(oh - S, 2) : 0;
    const size_t plane = (size_t)S * S;
    if (work->hwc_cap < plane * 3) {
        free(work->hwc);
        work->hwc = xmalloc(plane * 3);
        work->hwc_cap = plane * 3;
    }
    image_resize_canvas_window(src, ow, oh, x0, y0, S, S, work, work->hwc);
    for (size_t i = 0; i < plane; i++) {
        out_chw[i] = work->hwc[3 * i];
        out_chw[plane + i] = work->hwc[3 * i + 1];
        out_chw[2 * plane + i] = work->hwc[3 * i + 2];
    }
    if (work == &local) image_work_free(&local);
    return 0;
}

void image_normalize_table(const ImagePreprocessConfig *cfg, float table[3 * 256]) {
    for (int c = 0; c < 3; c++) {
        // numpy: mean/std become float32 arrays; rescale is float64 then cast.
        const float mean = (float)cfg->image_mean[c], std = (float)cfg->image_std[c];
        for (int v = 0; v < 256; v++) {
            float x = cfg->do_rescale ? (float)((double)v * cfg->rescale_factor) : (float)v;
            if (cfg->do_normalize) x = (x - mean) / std;
            table[c * 256 + v] = x;
        }
    }
}

void image_normalize(const uint8_t *chw, int S, const ImagePreprocessConfig *cfg, float *out) {
    float table[3 * 256];
    image_normalize_table(cfg, table);
    const size_t plane = (size_t)S * S;
    for (int c = 0; c < 3; c++) {
        const float *t = table + c * 256;
        const uint8_t *p = chw + c * plane;
        float *o = out + c * plane;
        for (size_t i = 0; i < plane; i++) o[i] = t[p[i]];
    }
}
