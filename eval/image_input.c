#include "eval/image_input.h"

#include <stdlib.h>
#include <string.h>

int image_input_init(ImageInput *in, const char *dir, const LlavaConfig *mc, const char *aspect, Error *err) {
    memset(in, 0, sizeof *in);
    if (strcmp(aspect, "pad") == 0)
        in->aspect = IMAGE_ASPECT_PAD;
    else if (strcmp(aspect, "square") == 0)
        in->aspect = IMAGE_ASPECT_SQUARE;
    else
        return err_set(err, "--aspect must be pad or square, got '%s'", aspect);
    const int S = mc->vision.image_size;
    int got = dir ? image_config_load(&in->cfg, dir, err) : 1;
    if (got < 0) return -1;
    if (got == 1) image_config_default(&in->cfg, S);
    in->S = image_config_out_size(&in->cfg);
    if (in->S != S)
        return err_set(err, "%s/preprocessor_config.json gives %d px images but the vision tower takes %d px",
                       dir ? dir : ".", in->S, S);
    in->u8 = xmalloc((size_t)3 * S * S);
    return 0;
}

int image_input_load(ImageInput *in, const char *path, float *out, Error *err) {
    if (image_load_file(path, IMAGE_DEFAULT_MAX_PIXELS, &in->work, &in->im, err) != 0 ||
        image_preprocess_u8(&in->im, &in->cfg, in->aspect, &in->work, in->u8, err) != 0)
        return -1;
    image_normalize(in->u8, in->S, &in->cfg, out);
    return 0;
}

int image_input_decode(ImageInput *in, const uint8_t *bytes, size_t len, const char *name, int64_t max_pixels,
                       float *out, Error *err) {
    if (image_decode(bytes, len, name, max_pixels, &in->im, err) != 0 ||
        image_preprocess_u8(&in->im, &in->cfg, in->aspect, &in->work, in->u8, err) != 0)
        return -1;
    image_normalize(in->u8, in->S, &in->cfg, out);
    return 0;
}

void image_input_free(ImageInput *in) {
    rgb_image_free(&in->im);
    image_work_free(&in->work);
    free(in->u8);
    memset(in, 0, sizeof *in);
}
