// The demo's synthetic multimodal data set: small pictures of one coloured
// shape (circle, square, triangle, diamond) on a noisy light background, with
// captions (stage 1) and multiple-choice questions in ScienceQA's prompt
// format whose answers depend on the picture (stage 2 and evaluation).
#ifndef LLAVA_DEMO_DATA_H
#define LLAVA_DEMO_DATA_H

#include <stdint.h>

#include "common/util.h"

#define DEMO_N_COLORS 4
#define DEMO_N_SHAPES 4

typedef struct {
    int color, shape;     // indices into the demo's colour and shape names
    int cx, cy, radius;   // placement in pixels
    int big;              // "large" vs "small" in captions
} DemoPicture;

const char *demo_color_name(int c);
const char *demo_shape_name(int s);
// Renders a picture into rgb[size*size*3] (HWC). seed drives the noise.
void demo_render(const DemoPicture *p, int size, uint64_t seed, uint8_t *rgb);
// Writes an 8-bit RGB PNG.
int demo_write_png(const char *path, const uint8_t *rgb, int width, int height, Error *err);

typedef struct {
    int n_caption, n_train_qa, n_test_qa;  // samples in each file
    int image_size;                        // rendered size in pixels
    uint64_t seed;
} DemoDataOptions;

// Writes DIR/images/*.png, DIR/stage1.json (captions, LLaVA format),
// DIR/stage2.json (questions), DIR/test.json (held-out questions on new
// pictures, with an "answer" letter and the "options" count per sample) and
// DIR/blank.png (a picture with no shape, for the control).
int demo_write_dataset(const char *dir, const DemoDataOptions *o, Error *err);

#endif
