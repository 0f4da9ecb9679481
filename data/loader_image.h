// Images in the loader: stored bytes -> normalized float pixels [3,S,S].
// Pixels store: a per-channel lookup table (image_normalize_table, the CLIP
// processor's rescale + normalize) per stored uint8 value. Encoded store:
// decode, pad/resize/crop as prep would have (data/image.h), then the table.
// The image settings come from the shard folder: its preprocessor_config.json
// (copied at prep time) and the manifest's aspect mode.
#ifndef LLAVA_LOADER_IMAGE_H
#define LLAVA_LOADER_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "common/util.h"
#include "data/image.h"
#include "data/manifest.h"

typedef struct {
    int S;
    ImageStore store;
    ImageAspect aspect;
    ImagePreprocessConfig cfg;
    int64_t max_pixels;    // as prep used (manifest)
    float table[3 * 256];  // normalized value of each uint8 level per channel
} LoaderImage;

// One worker thread's buffers (zero-initialize; free with loader_image_scratch_free).
typedef struct {
    ImageWork work;
    RgbImage rgb;
    uint8_t *chw;  // [3,S,S]
} LoaderImageScratch;

int loader_image_init(LoaderImage *li, const Manifest *m, const char *dir, Error *err);
// bytes: [3,S,S] uint8 (pixels store, len = 3*S*S) or a whole image file
// (encoded store). dst: [3,S,S] float. li is read only: any number of
// threads may call this at once, each with its own scratch.
int loader_image_convert(const LoaderImage *li, LoaderImageScratch *scratch, const uint8_t *bytes, size_t len,
                         float *dst, Error *err);
void loader_image_scratch_free(LoaderImageScratch *s);

#endif
