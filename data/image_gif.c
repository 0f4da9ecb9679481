// GIF decoding (giflib, first frame only) to 8-bit RGB as Pillow's open +
// convert("RGB") gives it (GifImagePlugin, frame 0):
//   - the canvas is the logical screen, grown to hold the frame if the frame
//     reaches past it; an empty (0-wide or 0-high) frame is refused; pixels outside the frame hold index 0, or the frame's
//     transparent index when its graphic control extension sets one;
//   - the frame's palette is its local colour table, else the global one;
//     with no palette, or one that maps every index i to (i, i, i), Pillow
//     opens the image as mode L and the pixel value is the index itself;
//     otherwise indexes past the table are black;
//   - transparency does not change colours (convert("RGB") ignores it).
#include <stdlib.h>
#include <string.h>

#include "data/image_codecs.h"

#ifdef LLAVA_HAVE_GIF
#include <gif_lib.h>

typedef struct {
    const uint8_t *data;
    size_t len, pos;
} GifSource;

static int gif_on_read(GifFileType *g, GifByteType *dst, int n) {
    GifSource *s = g->UserData;
    size_t avail = s->len - s->pos, k = (size_t)n < avail ? (size_t)n : avail;
    memcpy(dst, s->data + s->pos, k);
    s->pos += k;
    return (int)k;
}

static int gif_fail(GifFileType *g, const char *name, const char *what, Error *err) {
    int code = g->Error;
    const char *msg = GifErrorString(code);
    err_set(err, "%s: GIF: %s (giflib: %s)", name, what, msg ? msg : "unknown error");
    DGifCloseFile(g, &code);
    return -1;
}

// 1 when the colour table maps every index i to (i, i, i): Pillow then
// treats the image as greyscale (GifImagePlugin._is_palette_needed).
static int palette_is_identity(const ColorMapObject *cm) {
    for (int i = 0; i < cm->ColorCount; i++) {
        const GifColorType *c = &cm->Colors[i];
        if (c->Red != i || c->Green != i || c->Blue != i) return 0;
    }
    return 1;
}

int image_decode_gif(const uint8_t *buf, size_t len, const char *name, int64_t max_pixels, RgbImage *out,
                     Error *err) {
    GifSource src = {buf, len, 0};
    int code = 0;
    GifFileType *g = DGifOpen(&src, gif_on_read, &code);
    if (!g) {
        const char *msg = GifErrorString(code);
        return err_set(err, "%s: GIF: cannot read the header (giflib: %s)", name, msg ? msg : "unknown error");
    }
    int transparent = -1;
    for (;;) {
        GifRecordType type;
        if (DGifGetRecordType(g, &type) == GIF_ERROR) return gif_fail(g, name, "truncated or corrupt data", err);
        if (type == TERMINATE_RECORD_TYPE) return gif_fail(g, name, "the file holds no image", err);
        if (type == EXTENSION_RECORD_TYPE) {
            int ext_code = 0;
            GifByteType *ext = NULL;
            if (DGifGetExtension(g, &ext_code, &ext) == GIF_ERROR)
                return gif_fail(g, name, "truncated or corrupt extension block", err);
            if (ext_code == GRAPHICS_EXT_FUNC_CODE && ext && ext[0] >= 4)
                transparent = (ext[1] & 1) ? ext[4] : -1;
            while (ext)
                if (DGifGetExtensionNext(g, &ext) == GIF_ERROR)
                    return gif_fail(g, name, "truncated or corrupt extension block", err);
            continue;
        }
        if (type != IMAGE_DESC_RECORD_TYPE) continue;
        if (DGifGetImageDesc(g) == GIF_ERROR) return gif_fail(g, name, "corrupt image descriptor", err);
        break;
    }
    const GifImageDesc *d = &g->Image;
    // An empty frame leaves nothing to decode; Pillow refuses it ("tile
    // cannot extend outside image") rather than returning a blank canvas.
    if (d->Width <= 0 || d->Height <= 0) {
        err_set(err, "%s: GIF: the first frame is empty (%d x %d at %d, %d)", name, d->Width, d->Height, d->Left,
                d->Top);
        DGifCloseFile(g, &code);
        return -1;
    }
    const int64_t fx1 = (int64_t)d->Left + d->Width, fy1 = (int64_t)d->Top + d->Height;
    const int64_t W = fx1 > g->SWidth ? fx1 : g->SWidth, H = fy1 > g->SHeight ? fy1 : g->SHeight;
    if (image_check_size(name, "GIF", W, H, max_pixels, err) != 0) {
        DGifCloseFile(g, &code);
        return -1;
    }
    // Decode indexes into the last third of the RGB buffer, then expand them
    // in place front to back: pixel i's three bytes end at or before index
    // byte i, which has been read by then.
    rgb_image_resize(out, (int)W, (int)H);
    uint8_t *idx = out->px + (size_t)W * H * 2;  // last third of the buffer
    memset(idx, transparent >= 0 ? transparent : 0, (size_t)W * H);
    static const int start[4] = {0, 4, 2, 1}, step[4] = {8, 8, 4, 2};
    const int npass = d->Interlace ? 4 : 1;
    for (int p = 0; p < npass; p++) {
        for (int y = d->Interlace ? start[p] : 0; y < d->Height; y += d->Interlace ? step[p] : 1) {
            GifPixelType *row = idx + (size_t)(d->Top + y) * W + d->Left;
            if (DGifGetLine(g, row, d->Width) == GIF_ERROR)
                return gif_fail(g, name, "truncated or corrupt image data", err);
        }
    }
    const ColorMapObject *cm = d->ColorMap ? d->ColorMap : g->SColorMap;
    const int grey = !cm || palette_is_identity(cm);
    for (size_t i = 0; i < (size_t)W * H; i++) {
        const int v = idx[i];
        uint8_t *o = out->px + 3 * i;
        if (grey) {
            o[0] = o[1] = o[2] = (uint8_t)v;
        } else if (v < cm->ColorCount) {
            o[0] = cm->Colors[v].Red;
            o[1] = cm->Colors[v].Green;
            o[2] = cm->Colors[v].Blue;
        } else {
            o[0] = o[1] = o[2] = 0;
        }
    }
    DGifCloseFile(g, &code);
    return 0;
}

#else

int image_decode_gif(const uint8_t *buf, size_t len, const char *name, int64_t max_pixels, RgbImage *out,
                     Error *err) {
    (void)buf, (void)len, (void)max_pixels, (void)out;
    return err_set(err, "%s: GIF images need giflib, which this build lacks (install libgif-dev and rebuild)", name);
}

#endif
