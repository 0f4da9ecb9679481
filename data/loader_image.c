#include "data/loader_image.h"

#include <stdlib.h>
#include <string.h>

int loader_image_init(LoaderImage *li, const Manifest *m, const char *dir, Error *err) {
    memset(li, 0, sizeof *li);
    li->S = m->image_size;
    li->store = m->store;
    li->max_pixels = m->max_pixels;
    li->aspect = strcmp(m->aspect, "pad") == 0 ? IMAGE_ASPECT_PAD : IMAGE_ASPECT_SQUARE;
    char path[4096];
    if (path_join(path, sizeof path, dir, "preprocessor_config.json") != 0 || !file_exists(path))
        return err_set(err, "%s: no preprocessor_config.json (prep copies it there): prep the folder again", dir);
    if (image_config_load(&li->cfg, dir, err) != 0) return -1;
    if (image_config_out_size(&li->cfg) != li->S)
        return err_set(err, "%s: preprocessor_config.json gives %d px images but the shards hold %d px", dir,
                       image_config_out_size(&li->cfg), li->S);
    image_normalize_table(&li->cfg, li->table);
    return 0;
}

static void normalize(const LoaderImage *li, const uint8_t *chw, float *dst) {
    const size_t plane = (size_t)li->S * li->S;
    for (int c = 0; c < 3; c++) {
        const float *t = li->table + 256 * c;
        const uint8_t *src = chw + c * plane;
        float *out = dst + c * plane;
        for (size_t i = 0; i < plane; i++) out[i] = t[src[i]];
    }
}

int loader_image_convert(const LoaderImage *li, LoaderImageScratch *s, const uint8_t *bytes, size_t len,
                         float *dst, Error *err) {
    const size_t n = (size_t)3 * li->S * li->S;
    if (li->store == STORE_PIXELS) {
        if (len != n) return err_set(err, "pixel image of %zu bytes, expected 3x%dx%d", len, li->S, li->S);
        normalize(li, bytes, dst);
        return 0;
    }
    if (!s->chw) s->chw = xmalloc(n);
    if (image_decode(bytes, len, "stored image", li->max_pixels, &s->rgb, err) != 0 ||
        image_preprocess_u8(&s->rgb, &li->cfg, li->aspect, &s->work, s->chw, err) != 0)
        return -1;
    normalize(li, s->chw, dst);
    return 0;
}

void loader_image_scratch_free(LoaderImageScratch *s) {
    image_work_free(&s->work);
    rgb_image_free(&s->rgb);
    free(s->chw);
    memset(s, 0, sizeof *s);
}
