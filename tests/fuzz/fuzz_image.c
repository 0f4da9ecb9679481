// Image files (data/image*.c): decoding by content (JPEG, PNG, GIF), then
// preprocessing in both aspect modes.
#include "data/image.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    RgbImage im = {0};
    Error err = {{0}};
    // A small pixel limit keeps each run fast; the limit check itself is under test.
    if (image_decode(data, size, "fuzz", 1 << 22, &im, &err) == 0) {
        ImagePreprocessConfig cfg;
        image_config_default(&cfg, 32);
        uint8_t out[3 * 32 * 32];
        ImageWork work = {0};
        for (int a = 0; a < 2; a++) image_preprocess_u8(&im, &cfg, (ImageAspect)a, &work, out, &err);
        image_work_free(&work);
    }
    rgb_image_free(&im);
    return 0;
}
