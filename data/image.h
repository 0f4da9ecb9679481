// Images: decode JPEG / PNG / GIF to 8-bit RGB exactly as Pillow's
// `Image.open(p).convert("RGB")` does, then LLaVA's preprocessing (optional
// expand-to-square, Pillow-exact BICUBIC shortest-edge resize, centre crop,
// rescale, normalize) exactly as transformers' CLIPImageProcessor (PIL path).
// ../docs/data.md ("Images") gives the semantics and how they were verified.
//
// Thread safety: no global state. Every function may be called from several
// threads at once as long as each thread uses its own RgbImage and ImageWork.
// Allocation: an RgbImage and an ImageWork keep their buffers between calls
// (they only grow), so a worker thread that reuses them stops allocating once
// it has seen its largest image.
#ifndef LLAVA_IMAGE_H
#define LLAVA_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "common/util.h"

// Pillow refuses images above 2 * Image.MAX_IMAGE_PIXELS (2 * 89,478,485)
// pixels with DecompressionBombError (it only warns above 1x). Same default.
#define IMAGE_DEFAULT_MAX_PIXELS 178956970LL
// Largest resize or crop side a preprocessor_config.json may ask for.
#define IMAGE_MAX_SIDE 4096

typedef enum { IMAGE_FORMAT_UNKNOWN = 0, IMAGE_FORMAT_JPEG, IMAGE_FORMAT_PNG, IMAGE_FORMAT_GIF } ImageFormat;

// An 8-bit RGB image. px = [h][w][3] (HWC, row-major, no padding).
// Zero-initialise; functions that fill it reuse px when cap is large enough.
typedef struct {
    int w, h;
    uint8_t *px;
    size_t cap;  // bytes allocated at px
} RgbImage;

void rgb_image_free(RgbImage *im);
// Makes room for w*h*3 bytes (keeps the allocation when it is big enough).
void rgb_image_resize(RgbImage *im, int w, int h);

// Per-thread scratch buffers for image_load_file and image_preprocess_u8.
// Zero-initialise, reuse across calls, free with image_work_free.
typedef struct {
    uint8_t *file;      // encoded bytes of the last file read
    size_t file_cap;
    uint8_t *hwc;       // the cropped window, HWC, before the CHW transpose
    size_t hwc_cap;
    uint8_t *tmp;       // the resampler's first-pass output
    size_t tmp_cap;
    void *coef;         // resampler coefficients and bounds
    size_t coef_cap;
} ImageWork;

void image_work_free(ImageWork *w);

// ---- decoding -------------------------------------------------------------
// The format by content (magic bytes), never by file name.
ImageFormat image_sniff(const uint8_t *buf, size_t len);
const char *image_format_name(ImageFormat f);

// Decodes JPEG, PNG or GIF (first frame) bytes into 8-bit RGB as Pillow's
// convert("RGB"): grey and grey+alpha replicate the grey (alpha dropped), RGBA
// drops alpha without compositing, palette images look up the palette
// (transparency ignored, indexes past the palette are black), CMYK JPEGs are
// read Adobe-inverted and converted with Pillow's formula, 16-bit RGB(A) and
// grey+alpha keep the high byte, 16-bit grey is clamped to 255 (Pillow's I;16),
// 1/2/4-bit grey is scaled to 0..255. No EXIF rotation. Images with more than
// max_pixels pixels (w*h) are refused before decoding (<= 0: the default).
// `name` (a path or sample id) starts every error message. 0 ok, -1 + err.
int image_decode(const uint8_t *buf, size_t len, const char *name, int64_t max_pixels, RgbImage *out,
                 Error *err);
// Reads `path` into work->file and decodes it (errors name the path).
// 0 ok; IMAGE_ERR_DATA (-1) when the bytes are not a usable image (corrupt,
// truncated, unsupported, over max_pixels); IMAGE_ERR_OPEN (-2) when the
// file cannot be opened or read (missing, permissions), so that callers can
// tell "missing image" from "corrupt image".
enum { IMAGE_ERR_DATA = -1, IMAGE_ERR_OPEN = -2 };
int image_load_file(const char *path, int64_t max_pixels, ImageWork *work, RgbImage *out, Error *err);

// ---- preprocessing ----------------------------------------------------------
typedef enum {
    IMAGE_ASPECT_SQUARE = 0,  // LLaVA "square" (its default): no padding
    IMAGE_ASPECT_PAD = 1,     // LLaVA "pad": expand2square with the mean colour
} ImageAspect;

// The fields of preprocessor_config.json that matter (CLIPImageProcessor).
typedef struct {
    int do_resize, do_center_crop, do_rescale, do_normalize;
    int do_convert_rgb;       // read but unused: decoding always gives RGB, as LLaVA's convert("RGB")
    int shortest_edge;        // size {"shortest_edge": N} (or a bare int); 0 if height/width given
    int size_h, size_w;       // size {"height": H, "width": W}
    int crop_h, crop_w;       // crop_size; our output is square, so crop_h == crop_w
    int resample;             // PIL filter id; only 3 (BICUBIC) is implemented
    double rescale_factor;    // 1/255
    double image_mean[3], image_std[3];
} ImagePreprocessConfig;

// CLIP ViT-L/14 defaults (OpenAI mean/std, bicubic) at size S:
// shortest_edge = crop = S.
void image_config_default(ImagePreprocessConfig *cfg, int size);
// Reads model_dir/preprocessor_config.json. Returns 0 when read, 1 when the
// file is absent (cfg then holds image_config_default(336)), -1 + err when it
// is malformed or asks for something unsupported.
int image_config_load(ImagePreprocessConfig *cfg, const char *model_dir, Error *err);
// Parses a preprocessor_config.json text (`what` names it in errors).
int image_config_parse(ImagePreprocessConfig *cfg, const char *json_text, size_t len, const char *what,
                       Error *err);
// Side S of the square [3,S,S] output (crop size, or resize size without crop).
int image_config_out_size(const ImagePreprocessConfig *cfg);
// Expand-to-square fill colour: int(m * 255) of the mean, per channel.
void image_config_pad_color(const ImagePreprocessConfig *cfg, uint8_t rgb[3]);

// pad (optional) -> resize -> centre crop of an RGB image into uint8 CHW
// pixels out_chw [3,S,S], S = image_config_out_size(cfg): the values shards
// store, before rescale/normalize. work may be NULL (temporary buffers).
// Fails only when the config's resize does not give a square S x S output
// (do_center_crop off with a non-square resize) or the long side would be
// over 10^9 pixels. Pad mode never builds the canvas: memory and work grow
// with the image, not with its padded square.
int image_preprocess_u8(const RgbImage *in, const ImagePreprocessConfig *cfg, ImageAspect aspect,
                        ImageWork *work, uint8_t *out_chw, Error *err);
// 0 when image_preprocess_u8 succeeds on a w x h image, else -1 + the error
// it would give; does no work (prep checks images it stores encoded).
int image_preprocess_check(int w, int h, const ImagePreprocessConfig *cfg, ImageAspect aspect, Error *err);

// float(v * rescale_factor) computed in double then (x - mean) / std in fp32,
// as numpy does in the processor, for every value v of each channel:
// table[c * 256 + v]. Normalizing is a lookup in this table.
void image_normalize_table(const ImagePreprocessConfig *cfg, float table[3 * 256]);
// out [3,S,S] fp32 from chw [3,S,S] uint8 (rescale and normalize per cfg).
void image_normalize(const uint8_t *chw, int S, const ImagePreprocessConfig *cfg, float *out);

// ---- the resampler (exposed for tests) -----------------------------------------
// Pillow's BICUBIC resize (Resample.c, 8-bit fixed point, both pass orders as
// Pillow 13 picks them) of an RGB image to out_w x out_h, of which only the
// window [x0, x0+win_w) x [y0, y0+win_h) is written to dst (HWC, win_w*3 bytes
// a row). Window pixels outside the resized image are 0 (transformers' crop
// pads with zeros). Computing just the window gives the same bytes as
// resizing everything and cropping. work may be NULL.
void image_resize_bicubic_window(const RgbImage *in, int out_w, int out_h, int x0, int y0, int win_w,
                                 int win_h, ImageWork *work, uint8_t *dst);

// An image on a canvas w x h of colour `fill`, its pixels at (ox, oy):
// expand2square's result, without building it. The canvas of an unpadded
// image is the image itself ({im, im->w, im->h, 0, 0}).
typedef struct {
    const RgbImage *im;
    int w, h, ox, oy;
    uint8_t fill[3];
} Canvas;

// image_resize_bicubic_window of the canvas: the same bytes as materialising
// it first, with memory and work that grow with the image, not the canvas.
void image_resize_canvas_window(const Canvas *cv, int out_w, int out_h, int x0, int y0, int win_w, int win_h,
                                ImageWork *work, uint8_t *dst);

#endif
