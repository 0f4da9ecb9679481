// Images for generation and evaluation: a file -> the model's pixel_values
// [3, S, S], with the model folder's preprocessor_config.json (CLIP defaults
// at the vision tower's image_size when absent) and LLaVA's aspect handling.
#ifndef LLAVA_IMAGE_INPUT_H
#define LLAVA_IMAGE_INPUT_H

#include "data/image.h"
#include "model/config.h"

typedef struct {
    ImagePreprocessConfig cfg;
    ImageAspect aspect;
    int S;  // output side = the vision tower's image_size
    ImageWork work;
    RgbImage im;
    uint8_t *u8;  // [3, S, S]
} ImageInput;

// dir: the folder with preprocessor_config.json (the model folder, or the
// CLIP folder of a composed model); NULL = CLIP defaults. aspect: "pad"
// (LLaVA-1.5: expand to a square with the mean colour) or "square" (resize
// + centre crop). Fails when the processor's output size differs from the
// vision tower's image_size.
int image_input_init(ImageInput *in, const char *dir, const LlavaConfig *mc, const char *aspect, Error *err);
// Decodes and preprocesses one image into out[3 * S * S].
int image_input_load(ImageInput *in, const char *path, float *out, Error *err);
// The same from encoded bytes in memory (`name` starts error messages);
// images over max_pixels pixels are refused before decoding.
int image_input_decode(ImageInput *in, const uint8_t *bytes, size_t len, const char *name, int64_t max_pixels,
                       float *out, Error *err);
void image_input_free(ImageInput *in);

#endif
