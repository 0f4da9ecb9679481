// The image of a chat request: an image_url -> the model's pixel_values.
// Accepted: "data:image/<any>;base64,<bytes>" (what the OpenAI clients and
// the web page send), and, only when the server was given --image-root, a
// "file://" URL or a plain path that resolves (symlinks and ".." followed)
// to a file inside that folder. Nothing is fetched from the network.
#ifndef LLAVA_SERVE_IMAGE_URL_H
#define LLAVA_SERVE_IMAGE_URL_H

#include <stddef.h>
#include <stdint.h>

#include "eval/image_input.h"
#include "serve/request.h"

typedef struct {
    const char *processor_dir;  // preprocessor_config.json's folder (NULL: CLIP defaults)
    const char *aspect;         // "pad" | "square"
    const char *image_root;     // realpath of --image-root, or NULL
    int64_t max_pixels;         // decoded images above this many pixels are refused
    size_t max_bytes;           // encoded images above this many bytes are refused
} ImageUrlPolicy;

// Decodes base64 text (RFC 4648, '=' padding optional, no whitespace) into
// out (at least len * 3 / 4 + 3 bytes). Returns the byte count, -1 if bad.
long base64_decode(const char *text, size_t len, uint8_t *out);

// url -> pixels[3 * S * S] (S = the vision tower's image size). Errors are
// 400s naming `param`.
int image_url_load(const ImageUrlPolicy *p, const LlavaConfig *mc, const char *url, const char *param,
                   float *pixels, ApiError *e);

#endif
