// Internal to data/image_*.c: one decoder per format, each producing 8-bit
// RGB as Pillow's convert("RGB") does. `name` starts every error message.
#ifndef LLAVA_IMAGE_CODECS_H
#define LLAVA_IMAGE_CODECS_H

#include "data/image.h"

int image_decode_jpeg(const uint8_t *buf, size_t len, const char *name, int64_t max_pixels, RgbImage *out,
                      Error *err);
int image_decode_png(const uint8_t *buf, size_t len, const char *name, int64_t max_pixels, RgbImage *out,
                     Error *err);
int image_decode_gif(const uint8_t *buf, size_t len, const char *name, int64_t max_pixels, RgbImage *out,
                     Error *err);

// The decompression-bomb guard every decoder runs on the declared size
// before allocating: 0, or -1 + err naming the size and the limit.
int image_check_size(const char *name, const char *format, int64_t w, int64_t h, int64_t max_pixels, Error *err);

#endif
