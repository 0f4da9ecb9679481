// Images in the loader: stored bytes -> normalized float pixels [3,S,S].
// Pixels store: a per-channel lookup table computes exactly
// (float)((double)v * (1/255)) then (x - mean) / std in float32, as the CLIP
// processor does. Encoded store: decode + resize + crop first (data/image.h).
#ifndef LLAVA_LOADER_IMAGE_H
#define LLAVA_LOADER_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "common/util.h"
#include "data/manifest.h"

typedef struct {
    int S;
    ImageStore store;
    float lut[3][256];  // normalized value of each uint8 level per channel
    void *proc;         // image processor state for the encoded store
} LoaderImage;

int loader_image_init(LoaderImage *li, const Manifest *m, const char *dir, Error *err);
// bytes: [3,S,S] uint8 (pixels store, len = 3*S*S) or a whole image file
// (encoded store). dst: [3,S,S] float. Thread-safe (li is read only).
int loader_image_convert(const LoaderImage *li, const uint8_t *bytes, size_t len, float *dst, Error *err);
void loader_image_free(LoaderImage *li);

#endif
