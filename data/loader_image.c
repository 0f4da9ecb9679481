#include "data/loader_image.h"

#include <string.h>

int loader_image_init(LoaderImage *li, const Manifest *m, const char *dir, Error *err) {
    memset(li, 0, sizeof *li);
    li->S = m->image_size;
    li->store = m->store;
    for (int c = 0; c < 3; c++) {
        if (!(m->image_std[c] > 0.0f)) return err_set(err, "%s: image_std[%d] must be positive", dir, c);
        for (int v = 0; v < 256; v++) {
            const float x = (float)((double)v * (1.0 / 255.0));
            li->lut[c][v] = (x - m->image_mean[c]) / m->image_std[c];
        }
    }
    if (li->store == STORE_ENCODED)
        return err_set(err, "%s: shards with encoded images need the image decoder (data/image.h), not built yet",
                       dir);
    return 0;
}

int loader_image_convert(const LoaderImage *li, const uint8_t *bytes, size_t len, float *dst, Error *err) {
    const size_t plane = (size_t)li->S * li->S;
    if (len != 3 * plane) return err_set(err, "pixel image of %zu bytes, expected 3x%dx%d", len, li->S, li->S);
    for (int c = 0; c < 3; c++) {
        const float *lut = li->lut[c];
        const uint8_t *src = bytes + c * plane;
        float *out = dst + c * plane;
        for (size_t i = 0; i < plane; i++) out[i] = lut[src[i]];
    }
    return 0;
}

void loader_image_free(LoaderImage *li) { memset(li, 0, sizeof *li); }
