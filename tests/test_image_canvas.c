// expand2square without its canvas (data/image_resize.c, issue 9 item 1):
//  - images whose canvas would take gigabytes (tests/fixtures/images/huge:
//    60000x2 PNG, 33x22575 JPEG) preprocess in pad mode with every scratch
//    buffer under 64 MB (before, the 60000x2 PNG asked for 10.8 GB);
//  - on random images, sizes and configs that reach every pass order
//    (no pass, horizontal only, vertical only, both in either order, with
//    and without a crop), resizing the described canvas gives the bytes of
//    resizing the materialised canvas, which is what Pillow resizes (the
//    Pillow fixtures of test_image pin the materialised path, extreme
//    aspects included).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/rng.h"
#include "data/image.h"
#include "tests/testlib.h"

static size_t work_bytes(const ImageWork *w) { return w->file_cap + w->hwc_cap + w->tmp_cap + w->coef_cap; }

static void test_huge(const char *src) {
    char path[1200];
    snprintf(path, sizeof path, "%s/tests/fixtures/images/manifest.json", src);
    Error err = {{0}};
    cJSON *m = json_parse_file(path, &err);
    CHECK(m, "%s", err.msg);
    ImagePreprocessConfig cfg;
    image_config_default(&cfg, 336);
    uint8_t fill[3];
    image_config_pad_color(&cfg, fill);
    uint8_t *out = xmalloc((size_t)3 * 336 * 336);
    const cJSON *h;
    int n = 0;
    cJSON_ArrayForEach(h, cJSON_GetObjectItemCaseSensitive(m, "huge")) {
        snprintf(path, sizeof path, "%s/tests/fixtures/images/%s", src,
                 cJSON_GetObjectItemCaseSensitive(h, "file")->valuestring);
        RgbImage im = {0};
        ImageWork work = {0};
        EXPECT(image_load_file(path, 0, &work, &im, &err) == 0, "%s: %s", path, err.msg);
        for (int aspect = 0; aspect < 2 && im.px; aspect++) {
            int rc = image_preprocess_u8(&im, &cfg, (ImageAspect)aspect, &work, out, &err);
            EXPECT(rc == 0 || aspect == IMAGE_ASPECT_SQUARE, "%s pad: %s", path, err.msg);
            EXPECT(work_bytes(&work) < ((size_t)64 << 20), "%s %s: %zu bytes of scratch", path,
                   aspect ? "pad" : "square", work_bytes(&work));
        }
        // Pad: the first row and column are the fill colour (up to the
        // fixed-point rounding of a constant), the image is near the middle.
        const size_t plane = (size_t)336 * 336;
        for (int c = 0; c < 3; c++) {
            EXPECT(abs(out[c * plane] - fill[c]) <= 1, "%s: corner channel %d = %d, fill %d", path, c, out[c * plane],
                   fill[c]);
        }
        printf("%s (%dx%d): pad ok, %zu bytes of scratch\n", path, im.w, im.h, work_bytes(&work));
        rgb_image_free(&im);
        image_work_free(&work);
        n++;
    }
    EXPECT(n >= 2, "only %d huge-canvas fixtures", n);
    free(out);
    cJSON_Delete(m);
}

// The canvas as expand2square would build it.
static void materialise(const Canvas *cv, RgbImage *dst) {
    rgb_image_resize(dst, cv->w, cv->h);
    for (int y = 0; y < cv->h; y++)
        for (int x = 0; x < cv->w; x++) {
            uint8_t *p = dst->px + ((size_t)y * cv->w + x) * 3;
            const int in = x >= cv->ox && x < cv->ox + cv->im->w && y >= cv->oy && y < cv->oy + cv->im->h;
            memcpy(p, in ? cv->im->px + ((size_t)(y - cv->oy) * cv->im->w + (x - cv->ox)) * 3 : cv->fill, 3);
        }
}

static int pick(Rng *r, int lo, int hi) { return lo + (int)(rng_next(r) % (uint64_t)(hi - lo + 1)); }

static void test_equivalence(void) {
    Rng r;
    rng_seed(&r, 9);
    RgbImage im = {0}, full = {0};
    ImageWork work = {0};
    int cases = 0, orders[5] = {0};
    for (int t = 0; t < 400; t++) {
        const int w = pick(&r, 1, t < 200 ? 40 : 300), h = pick(&r, 1, t < 200 ? 40 : 300);
        rgb_image_resize(&im, w, h);
        for (size_t i = 0; i < (size_t)w * h * 3; i++) im.px[i] = (uint8_t)rng_next(&r);
        Canvas cv = {.im = &im, .w = w, .h = h};
        for (int c = 0; c < 3; c++) cv.fill[c] = (uint8_t)pick(&r, 0, 255);
        // A canvas at least the image, the image anywhere on it.
        cv.w = w + (pick(&r, 0, 2) ? pick(&r, 0, 3 * w) : 0);
        cv.h = h + (pick(&r, 0, 2) ? pick(&r, 0, 3 * h) : 0);
        cv.ox = pick(&r, 0, cv.w - w);
        cv.oy = pick(&r, 0, cv.h - h);
        // Output sizes that keep an axis (no pass), shrink or grow it.
        const int out_w = pick(&r, 0, 3) == 0 ? cv.w : pick(&r, 1, 2 * cv.w + 4);
        const int out_h = pick(&r, 0, 3) == 0 ? cv.h : pick(&r, 1, 2 * cv.h + 4);
        const int win_w = pick(&r, 1, 48), win_h = pick(&r, 1, 48);
        const int x0 = pick(&r, -4, out_w), y0 = pick(&r, -4, out_h);
        const int need_h = out_w != cv.w, need_v = out_h != cv.h;
        orders[!need_h && !need_v ? 0 : !need_v ? 1 : !need_h ? 2
                : (cv.h >= out_h && cv.h - out_h > 2 * (cv.w - out_w)) ? 3 : 4]++;
        uint8_t *a = xmalloc((size_t)win_w * win_h * 3), *b = xmalloc((size_t)win_w * win_h * 3);
        image_resize_canvas_window(&cv, out_w, out_h, x0, y0, win_w, win_h, &work, a);
        materialise(&cv, &full);
        image_resize_bicubic_window(&full, out_w, out_h, x0, y0, win_w, win_h, NULL, b);
        EXPECT(memcmp(a, b, (size_t)win_w * win_h * 3) == 0,
               "case %d: %dx%d at (%d,%d) on %dx%d -> %dx%d, window %dx%d at (%d,%d): canvas differs", t, w, h, cv.ox,
               cv.oy, cv.w, cv.h, out_w, out_h, win_w, win_h, x0, y0);
        free(a), free(b);
        cases++;
    }
    printf("equivalence: %d cases (no pass %d, horizontal %d, vertical %d, vertical first %d, horizontal first %d)\n",
           cases, orders[0], orders[1], orders[2], orders[3], orders[4]);
    for (int k = 0; k < 5; k++) EXPECT(orders[k] >= 10, "pass order %d reached only %d times", k, orders[k]);
    rgb_image_free(&im);
    rgb_image_free(&full);
    image_work_free(&work);
}

int main(int argc, char **argv) {
    CHECK(argc > 1, "usage: test_image_canvas SOURCE_DIR");
    test_huge(argv[1]);
    test_equivalence();
    return test_summary("test_image_canvas");
}
