// PNG decoding (libpng) to 8-bit RGB as Pillow's open + convert("RGB"):
//   grey 1/2/4-bit  -> scaled to 0..255 (Pillow modes "1", "L;2", "L;4")
//   grey 16-bit     -> min(v, 255)       (Pillow mode I;16: clamped, not scaled)
//   RGB/RGBA/GA 16  -> the high byte     (Pillow rawmodes RGB;16B, RGBA;16B, LA;16B)
//   alpha, tRNS     -> dropped, no compositing
//   palette         -> looked up; indexes past the PLTE entries give black
// Interlaced files are de-interlaced by libpng. No gamma/colour management
// (Pillow applies none either).
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>

#include "data/image_codecs.h"

typedef struct {
    jmp_buf jump;
    char msg[256];
} PngErrorMgr;

typedef struct {
    const uint8_t *data;
    size_t len, pos;
} PngSource;

// libpng's default error handler would abort the process; ours jumps back.
static void png_on_error(png_structp png, png_const_charp msg) {
    PngErrorMgr *e = png_get_error_ptr(png);
    snprintf(e->msg, sizeof e->msg, "%s", msg);
    longjmp(e->jump, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg;
}

static void png_on_read(png_structp png, png_bytep dst, size_t n) {
    PngSource *s = png_get_io_ptr(png);
    if (s->len - s->pos < n) png_error(png, "truncated file (the data ends before the image does)");
    memcpy(dst, s->data + s->pos, n);
    s->pos += n;
}

// One row of libpng output (after our transforms) to RGB.
static void row_to_rgb(const uint8_t *src, int w, int channels, int depth16, uint8_t *dst) {
    if (depth16) {  // grey 16-bit, big-endian: Pillow's I;16 -> RGB clamps
        for (int x = 0; x < w; x++) {
            int v = (src[2 * x] << 8) | src[2 * x + 1];
            dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = (uint8_t)(v > 255 ? 255 : v);
        }
        return;
    }
    switch (channels) {
    case 1:
    case 2:
        for (int x = 0; x < w; x++) dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = src[channels * x];
        break;
    case 3: memcpy(dst, src, (size_t)w * 3); break;
    default:
        for (int x = 0; x < w; x++) memcpy(dst + 3 * x, src + 4 * x, 3);
        break;
    }
}

int image_decode_png(const uint8_t *buf, size_t len, const char *name, int64_t max_pixels, RgbImage *out,
                     Error *err) {
    PngErrorMgr perr;
    PngSource src = {buf, len, 0};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &perr, png_on_error, png_on_warning);
    if (!png) return err_set(err, "%s: PNG: cannot create a libpng reader", name);
    png_infop info = png_create_info_struct(png);
    uint8_t *volatile raw = NULL;        // rows before conversion, when they are not RGB already
    png_bytep *volatile rows = NULL;     // row pointers for interlaced images
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return err_set(err, "%s: PNG: cannot create a libpng reader", name);
    }
    if (setjmp(perr.jump)) {
        png_destroy_read_struct(&png, &info, NULL);
        free(raw);
        free(rows);
        return err_set(err, "%s: PNG: corrupt or truncated data (libpng: %s)", name, perr.msg);
    }
    png_set_read_fn(png, &src, png_on_read);
    png_read_info(png, info);
    png_uint_32 w = 0, h = 0;
    int depth = 0, color = 0, interlace = 0;
    png_get_IHDR(png, info, &w, &h, &depth, &color, &interlace, NULL, NULL);
    if (image_check_size(name, "PNG", (int64_t)w, (int64_t)h, max_pixels, err) != 0) {
        png_destroy_read_struct(&png, &info, NULL);
        return -1;
    }
    const int grey16 = color == PNG_COLOR_TYPE_GRAY && depth == 16;
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (depth == 16 && !grey16) png_set_strip_16(png);  // keeps the high byte
    png_set_strip_alpha(png);
    const int passes = png_set_interlace_handling(png);
    png_read_update_info(png, info);
    const int channels = png_get_channels(png, info);
    const int out_depth = png_get_bit_depth(png, info);
    const size_t rowbytes = png_get_rowbytes(png, info);
    if (out_depth != (grey16 ? 16 : 8) || channels < 1 || channels > 4 ||
        rowbytes != (size_t)w * channels * (out_depth / 8))
        png_error(png, "unexpected row layout after transforms");

    rgb_image_resize(out, (int)w, (int)h);
    const int direct = channels == 3 && !grey16;  // libpng writes RGB rows straight into out
    const size_t out_stride = (size_t)w * 3;
    if (passes > 1) {
        // De-interlacing needs every row in memory until the last pass.
        uint8_t *base = direct ? out->px : (raw = xmalloc(rowbytes * h));
        rows = xmalloc(sizeof(png_bytep) * h);
        for (png_uint_32 y = 0; y < h; y++) rows[y] = base + (direct ? out_stride : rowbytes) * y;
        png_read_image(png, rows);
        if (!direct)
            for (png_uint_32 y = 0; y < h; y++)
                row_to_rgb(raw + rowbytes * y, (int)w, channels, grey16, out->px + out_stride * y);
    } else {
        if (!direct) raw = xmalloc(rowbytes);
        for (png_uint_32 y = 0; y < h; y++) {
            uint8_t *dst = out->px + out_stride * y;
            png_read_row(png, direct ? dst : raw, NULL);
            if (!direct) row_to_rgb(raw, (int)w, channels, grey16, dst);
        }
    }
    // The rest of the file (chunks after the image data) is not read, as
    // Pillow does not need it either.
    png_destroy_read_struct(&png, &info, NULL);
    free(raw);
    free(rows);
    return 0;
}
