// Decoding entry points: format sniffing, file reading, the bomb guard and
// the JPEG decoder (libjpeg-turbo). PNG and GIF live in their own files.
#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>

#include "data/image_codecs.h"

void rgb_image_free(RgbImage *im) {
    free(im->px);
    memset(im, 0, sizeof *im);
}

void rgb_image_resize(RgbImage *im, int w, int h) {
    size_t bytes = (size_t)w * (size_t)h * 3;
    if (im->cap < bytes) {
        free(im->px);
        im->px = xmalloc(bytes);
        im->cap = bytes;
    }
    im->w = w;
    im->h = h;
}

void image_work_free(ImageWork *w) {
    free(w->file);
    free(w->hwc);
    free(w->tmp);
    free(w->coef);
    memset(w, 0, sizeof *w);
}

ImageFormat image_sniff(const uint8_t *b, size_t n) {
    if (n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) return IMAGE_FORMAT_JPEG;
    if (n >= 8 && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0) return IMAGE_FORMAT_PNG;
    if (n >= 6 && (memcmp(b, "GIF87a", 6) == 0 || memcmp(b, "GIF89a", 6) == 0)) return IMAGE_FORMAT_GIF;
    return IMAGE_FORMAT_UNKNOWN;
}

const char *image_format_name(ImageFormat f) {
    switch (f) {
    case IMAGE_FORMAT_JPEG: return "JPEG";
    case IMAGE_FORMAT_PNG: return "PNG";
    case IMAGE_FORMAT_GIF: return "GIF";
    default: return "unknown";
    }
}

// Names formats we recognise but do not decode, for a better message.
static const char *other_format(const uint8_t *b, size_t n) {
    if (n >= 12 && memcmp(b, "RIFF", 4) == 0 && memcmp(b + 8, "WEBP", 4) == 0) return "WebP";
    if (n >= 4 && (memcmp(b, "II*\0", 4) == 0 || memcmp(b, "MM\0*", 4) == 0)) return "TIFF";
    if (n >= 2 && b[0] == 'B' && b[1] == 'M') return "BMP";
    if (n >= 12 && memcmp(b + 4, "ftyp", 4) == 0) return "HEIF/AVIF";
    if (n >= 4 && memcmp(b, "\0\0\1\0", 4) == 0) return "ICO";
    return NULL;
}

int image_check_size(const char *name, const char *format, int64_t w, int64_t h, int64_t max_pixels, Error *err) {
    if (max_pixels <= 0) max_pixels = IMAGE_DEFAULT_MAX_PIXELS;
    if (w <= 0 || h <= 0) return err_set(err, "%s: %s: image has no pixels (%lldx%lld)", name, format, (long long)w, (long long)h);
    if (w * h > max_pixels)
        return err_set(err,
                       "%s: %s image of %lldx%lld = %lld pixels is over the limit of %lld pixels "
                       "(decompression bomb guard, as Pillow's; raise it with --max-pixels if the file is trusted)",
                       name, format, (long long)w, (long long)h, (long long)(w * h), (long long)max_pixels);
    return 0;
}

int image_decode(const uint8_t *buf, size_t len, const char *name, int64_t max_pixels, RgbImage *out,
                 Error *err) {
    if (len == 0) return err_set(err, "%s: empty file (0 bytes), not an image", name);
    switch (image_sniff(buf, len)) {
    case IMAGE_FORMAT_JPEG: return image_decode_jpeg(buf, len, name, max_pixels, out, err);
    case IMAGE_FORMAT_PNG: return image_decode_png(buf, len, name, max_pixels, out, err);
    case IMAGE_FORMAT_GIF: return image_decode_gif(buf, len, name, max_pixels, out, err);
    default: break;
    }
    const char *other = other_format(buf, len);
    if (other) return err_set(err, "%s: %s images are not supported (only JPEG, PNG and GIF)", name, other);
    char head[64] = "";
    for (size_t i = 0; i < len && i < 8; i++) snprintf(head + 3 * i, sizeof head - 3 * i, "%02x ", buf[i]);
    return err_set(err, "%s: not a JPEG, PNG or GIF image (content starts with %s; the format is read from the "
                   "content, not the file name)", name, head);
}

int image_load_file(const char *path, int64_t max_pixels, ImageWork *work, RgbImage *out, Error *err) {
    FILE *f = file_open_regular(path, err);
    if (!f) {
        err_prefix(err, "image ");
        return IMAGE_ERR_OPEN;
    }
    size_t len = 0;
    for (;;) {
        if (work->file_cap - len < 65536) {
            work->file_cap = work->file_cap ? work->file_cap * 2 : 1 << 20;
            work->file = xrealloc(work->file, work->file_cap);
        }
        size_t got = fread(work->file + len, 1, work->file_cap - len, f);
        len += got;
        if (got == 0) break;
    }
    int bad = ferror(f), saved = errno;
    fclose(f);
    if (bad) {
        err_set(err, "%s: cannot read image: %s", path, strerror(saved));
        return IMAGE_ERR_OPEN;
    }
    return image_decode(work->file, len, path, max_pixels, out, err);
}

// ---- JPEG --------------------------------------------------------------------
// libjpeg's default error handler calls exit(): ours jumps back instead.
// Warnings (corrupt-but-decodable data) are ignored, as Pillow ignores them;
// running out of data is an error, as it is for Pillow ("image file is
// truncated"), even when only the EOI marker is missing.
typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
} JpegErrorMgr;

static void jpeg_on_error(j_common_ptr cinfo) {
    longjmp(((JpegErrorMgr *)cinfo->err)->jump, 1);
}

static void jpeg_on_message(j_common_ptr cinfo) { (void)cinfo; }

static void src_init(j_decompress_ptr cinfo) { (void)cinfo; }
static void src_term(j_decompress_ptr cinfo) { (void)cinfo; }

static boolean src_fill(j_decompress_ptr cinfo) {
    ERREXIT(cinfo, JERR_INPUT_EOF);
    return FALSE;
}

static void src_skip(j_decompress_ptr cinfo, long n) {
    struct jpeg_source_mgr *src = cinfo->src;
    if (n <= 0) return;
    if ((size_t)n > src->bytes_in_buffer) ERREXIT(cinfo, JERR_INPUT_EOF);
    src->next_input_byte += n;
    src->bytes_in_buffer -= (size_t)n;
}

// Pillow reads 4-component JPEGs as Adobe-inverted CMYK ("CMYK;I": every
// byte inverted) and converts CMYK to RGB with nk = 255 - K,
// R = clip(nk - muldiv255(C, nk)). With the inversion folded in:
// nk = raw K, C = 255 - raw C.
static inline uint8_t cmyk_channel(int raw_c, int raw_k) {
    int c = 255 - raw_c, nk = raw_k;
    int t = c * nk + 128;
    int v = nk - (((t >> 8) + t) >> 8);
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

int image_decode_jpeg(const uint8_t *buf, size_t len, const char *name, int64_t max_pixels, RgbImage *out,
                      Error *err) {
    struct jpeg_decompress_struct cinfo;
    JpegErrorMgr jerr;
    struct jpeg_source_mgr src;
    uint8_t *volatile row = NULL;  // grey / CMYK scanline before conversion

    cinfo.err = jpeg_std_error(&jerr.pub);
    jerr.pub.error_exit = jpeg_on_error;
    jerr.pub.output_message = jpeg_on_message;
    if (setjmp(jerr.jump)) {
        char msg[JMSG_LENGTH_MAX];
        (*cinfo.err->format_message)((j_common_ptr)&cinfo, msg);
        int eof = jerr.pub.msg_code == JERR_INPUT_EOF;
        jpeg_destroy_decompress(&cinfo);
        free(row);
        if (eof) return err_set(err, "%s: JPEG: truncated file (the data ends before the image does)", name);
        return err_set(err, "%s: JPEG: corrupt or unsupported data (libjpeg: %s)", name, msg);
    }
    jpeg_create_decompress(&cinfo);
    src.next_input_byte = buf;
    src.bytes_in_buffer = len;
    src.init_source = src_init;
    src.fill_input_buffer = src_fill;
    src.skip_input_data = src_skip;
    src.resync_to_restart = jpeg_resync_to_restart;
    src.term_source = src_term;
    cinfo.src = &src;
    jpeg_read_header(&cinfo, TRUE);

    const int nc = cinfo.num_components;
    const char *why = NULL;
    if (cinfo.data_precision != 8) why = "only 8-bit JPEGs are supported";
    else if (nc == 1) cinfo.out_color_space = JCS_GRAYSCALE;
    else if (nc == 3) cinfo.out_color_space = JCS_RGB;
    else if (nc == 4) cinfo.out_color_space = JCS_CMYK;
    else why = "only 1, 3 or 4 components are supported";
    if (why) {
        err_set(err, "%s: JPEG with %d-bit samples and %d components: %s", name, cinfo.data_precision, nc, why);
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    if (image_check_size(name, "JPEG", cinfo.image_width, cinfo.image_height, max_pixels, err) != 0) {
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    // Pillow's defaults: ISLOW IDCT, fancy upsampling, no scaling.
    cinfo.dct_method = JDCT_ISLOW;
    cinfo.do_fancy_upsampling = TRUE;
    jpeg_start_decompress(&cinfo);
    const int w = (int)cinfo.output_width, h = (int)cinfo.output_height;
    rgb_image_resize(out, w, h);
    if (nc != 3) row = xmalloc((size_t)w * nc);
    while (cinfo.output_scanline < cinfo.output_height) {
        const int y = (int)cinfo.output_scanline;
        uint8_t *dst = out->px + (size_t)y * w * 3;
        JSAMPROW rows[1] = {nc == 3 ? dst : row};
        jpeg_read_scanlines(&cinfo, rows, 1);
        if (nc == 1) {
            for (int x = 0; x < w; x++) dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = row[x];
        } else if (nc == 4) {
            for (int x = 0; x < w; x++) {
                const uint8_t *p = row + 4 * x;
                dst[3 * x + 0] = cmyk_channel(p[0], p[3]);
                dst[3 * x + 1] = cmyk_channel(p[1], p[3]);
                dst[3 * x + 2] = cmyk_channel(p[2], p[3]);
            }
        }
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    free(row);
    return 0;
}
