// Model configs (model/config.c, data/image_preprocess.c): the input as a
// LLaVA config.json, a LLaMA config.json, a CLIP config.json and a
// preprocessor_config.json.
#include "data/image.h"
#include "tests/fuzz/fuzz_util.h"
#include "model/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write_file("config.json", data, size);
    Error err = {{0}};
    LlavaConfig cfg;
    config_load_llava(&cfg, path, &err);
    TextConfig tc;
    memset(&tc, 0, sizeof tc);
    LlavaConfig fields;
    memset(&fields, 0, sizeof fields);
    config_load_llama(&tc, &fields, path, &err);
    VisionConfig vc;
    config_load_clip_vision(&vc, path, &err);
    ImagePreprocessConfig ic;
    if (image_config_parse(&ic, (const char *)data, size, "fuzz", &err) == 0) {
        const int S = image_config_out_size(&ic);
        if (S > 0 && S <= 64) {
            RgbImage im = {0};
            rgb_image_resize(&im, 7, 3);
            memset(im.px, 99, 7 * 3 * 3);
            uint8_t *out = xmalloc((size_t)3 * S * S);
            for (int a = 0; a < 2; a++) image_preprocess_u8(&im, &ic, (ImageAspect)a, NULL, out, &err);
            free(out);
            rgb_image_free(&im);
        }
    }
    return 0;
}
