// Pillow's BICUBIC resize (src/libImaging/Resample.c), bit-exact: filter
// weights in double, normalised by their sum, rounded to 22-bit fixed point;
// 8-bit samples accumulated in int32 from 2^21 and clipped to 0..255 after
// each pass. Two separable passes; the first writes a clipped 8-bit
// intermediate. The pass order is Pillow 13's: horizontal first, except when
// the height shrinks and shrinks by more than twice as many pixels as the
// width (in_h >= out_h && in_h - out_h > 2 * (in_w - out_w)), when vertical
// goes first (found by probing Pillow 13.0; older Pillow was always
// horizontal first). A pass whose size does not change is skipped.
//
// Each output pixel depends only on its own coefficient row, so computing
// only the centre-crop window gives the same bytes as resizing the whole
// image and cropping, at a fraction of the work (a 1x1000 image resized to
// 336x336000 costs one 336x336 window).
//
// Built with -ffp-contract=off (CMakeLists.txt): a fused multiply-add in the
// filter polynomial would change the double weights in their last bit and,
// rarely, a fixed-point coefficient.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/image.h"

#define PRECISION_BITS 22

// Pillow's bicubic kernel with a = -0.5, support 2.
static double bicubic_filter(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

// Coefficients of one axis: for output index o in [o0, o0 + n), the first
// input index bounds[2i], the tap count bounds[2i+1] and the taps
// k[i * ksize + t] in fixed point. w[] is scratch of ksize doubles.
typedef struct {
    int ksize;
    int *bounds;  // [n][2]
    int32_t *k;   // [n][ksize]
} AxisCoefs;

static int axis_ksize(int in_size, int out_size) {
    double scale = (double)(float)in_size / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    return (int)ceil(2.0 * filterscale) * 2 + 1;
}

static void axis_coefs(int in_size, int out_size, int o0, int n, AxisCoefs *c, double *w) {
    // Pillow: scale = (double)(in1 - in0) / outSize with float box edges.
    const double scale = (double)((float)in_size - 0.0f) / out_size;
    const double filterscale = scale < 1.0 ? 1.0 : scale;
    const double support = 2.0 * filterscale;
    const double ss = 1.0 / filterscale;
    for (int i = 0; i < n; i++) {
        const int xx = o0 + i;
        const double center = 0.0 + (xx + 0.5) * scale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double ww = 0.0;
        for (int x = 0; x < xmax; x++) {
            w[x] = bicubic_filter((x + xmin - center + 0.5) * ss);
            ww += w[x];
        }
        int32_t *k = c->k + (size_t)i * c->ksize;
        for (int x = 0; x < c->ksize; x++) {
            double v = 0.0;
            if (x < xmax) v = ww != 0.0 ? w[x] / ww : w[x];
            k[x] = v < 0 ? (int32_t)(-0.5 + v * (1 << PRECISION_BITS)) : (int32_t)(0.5 + v * (1 << PRECISION_BITS));
        }
        c->bounds[2 * i] = xmin;
        c->bounds[2 * i + 1] = xmax;
    }
}

static inline uint8_t clip8(int32_t acc) {
    int32_t v = acc >> PRECISION_BITS;  // arithmetic shift, as Pillow's lookup table index
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

// Horizontal pass over `rows` rows: dst[r][j] = sum_t src[r][bounds_j + t - base] * k_j[t].
// src points at input column `base`; strides in bytes.
static void pass_horizontal(const uint8_t *src, size_t src_stride, int base, int rows, const AxisCoefs *c,
                            int n_out, uint8_t *dst, size_t dst_stride) {
    for (int r = 0; r < rows; r++) {
        const uint8_t *in = src + (size_t)r * src_stride;
        uint8_t *out = dst + (size_t)r * dst_stride;
        for (int j = 0; j < n_out; j++) {
            const int xmin = c->bounds[2 * j] - base, cnt = c->bounds[2 * j + 1];
            const int32_t *k = c->k + (size_t)j * c->ksize;
            const uint8_t *p = in + (size_t)xmin * 3;
            int32_t s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
            for (int t = 0; t < cnt; t++) {
                s0 += p[3 * t + 0] * k[t];
                s1 += p[3 * t + 1] * k[t];
                s2 += p[3 * t + 2] * k[t];
            }
            out[3 * j + 0] = clip8(s0);
            out[3 * j + 1] = clip8(s1);
            out[3 * j + 2] = clip8(s2);
        }
    }
}

// Vertical pass: dst[i][x] = sum_t src[bounds_i + t - base][x] * k_i[t] for
// `bytes` bytes a row. Integer sums do not depend on their order, so the
// taps are accumulated row by row over an int32 line (vectorises).
static void pass_vertical(const uint8_t *src, size_t src_stride, int base, const AxisCoefs *c, int n_out,
                          int bytes, int32_t *acc, uint8_t *dst, size_t dst_stride) {
    for (int i = 0; i < n_out; i++) {
        const int ymin = c->bounds[2 * i] - base, cnt = c->bounds[2 * i + 1];
        const int32_t *k = c->k + (size_t)i * c->ksize;
        for (int x = 0; x < bytes; x++) acc[x] = 1 << (PRECISION_BITS - 1);
        for (int t = 0; t < cnt; t++) {
            const uint8_t *row = src + (size_t)(ymin + t) * src_stride;
            const int32_t kt = k[t];
            for (int x = 0; x < bytes; x++) acc[x] += row[x] * kt;
        }
        uint8_t *out = dst + (size_t)i * dst_stride;
        for (int x = 0; x < bytes; x++) out[x] = clip8(acc[x]);
    }
}

// Grows a reusable buffer (contents are not kept).
static void *grow(void *p, size_t *cap, size_t bytes) {
    if (*cap >= bytes) return p;
    free(p);
    *cap = bytes;
    return xmalloc(bytes);
}

void image_resize_bicubic_window(const RgbImage *in, int out_w, int out_h, int x0, int y0, int win_w,
                                 int win_h, ImageWork *work, uint8_t *dst) {
    CHECK(in->w > 0 && in->h > 0 && out_w > 0 && out_h > 0 && win_w >= 0 && win_h >= 0,
          "bad resize %dx%d -> %dx%d", in->w, in->h, out_w, out_h);
    ImageWork local = {0};
    if (!work) work = &local;
    const size_t dst_stride = (size_t)win_w * 3;
    memset(dst, 0, dst_stride * win_h);
    // The part of the window inside the resized image.
    const int wx0 = x0 > 0 ? x0 : 0, wx1 = x0 + win_w < out_w ? x0 + win_w : out_w;
    const int wy0 = y0 > 0 ? y0 : 0, wy1 = y0 + win_h < out_h ? y0 + win_h : out_h;
    if (wx0 >= wx1 || wy0 >= wy1) return;
    const int nx = wx1 - wx0, ny = wy1 - wy0;
    uint8_t *out = dst + (size_t)(wy0 - y0) * dst_stride + (size_t)(wx0 - x0) * 3;
    const size_t in_stride = (size_t)in->w * 3;
    const int need_h = out_w != in->w, need_v = out_h != in->h;

    AxisCoefs ch = {0}, cv = {0};
    ch.ksize = need_h ? axis_ksize(in->w, out_w) : 0;
    cv.ksize = need_v ? axis_ksize(in->h, out_h) : 0;
    const int kmax = ch.ksize > cv.ksize ? ch.ksize : cv.ksize;
    // One block: bounds (int), taps (int32), double scratch, int32 line.
    const size_t nbh = (size_t)nx * 2, nkh = (size_t)nx * ch.ksize;
    const size_t nbv = (size_t)ny * 2, nkv = (size_t)ny * cv.ksize;
    const size_t line = (size_t)(nx > in->w ? nx : in->w) * 3;  // widest vertical pass
    const size_t ints = nbh + nkh + nbv + nkv + line;
    const size_t bytes = ints * sizeof(int32_t) + (size_t)kmax * sizeof(double) + sizeof(double);
    work->coef = grow(work->coef, &work->coef_cap, bytes);
    char *block = work->coef;
    double *w = (double *)block;  // aligned: block comes from malloc
    int32_t *ip = (int32_t *)(block + ((size_t)kmax + 1) * sizeof(double));
    ch.bounds = ip; ip += nbh;
    ch.k = ip; ip += nkh;
    cv.bounds = ip; ip += nbv;
    cv.k = ip; ip += nkv;
    int32_t *acc = ip;
    if (need_h) axis_coefs(in->w, out_w, wx0, nx, &ch, w);
    if (need_v) axis_coefs(in->h, out_h, wy0, ny, &cv, w);

    if (!need_h && !need_v) {
        for (int y = 0; y < ny; y++)
            memcpy(out + (size_t)y * dst_stride, in->px + (size_t)(wy0 + y) * in_stride + (size_t)wx0 * 3,
                   (size_t)nx * 3);
    } else if (!need_v) {
        pass_horizontal(in->px + (size_t)wy0 * in_stride, in_stride, 0, ny, &ch, nx, out, dst_stride);
    } else if (!need_h) {
        pass_vertical(in->px + (size_t)wx0 * 3, in_stride, 0, &cv, ny, nx * 3, acc, out, dst_stride);
    } else if (in->h >= out_h && (in->h - out_h) > (in->w - out_w) * 2) {
        // Vertical first over the input columns the window's taps read.
        const int c0 = ch.bounds[0], c1 = ch.bounds[2 * (nx - 1)] + ch.bounds[2 * (nx - 1) + 1];
        const size_t tmp_stride = (size_t)(c1 - c0) * 3;
        uint8_t *tmp = work->tmp = grow(work->tmp, &work->tmp_cap, tmp_stride * ny);
        pass_vertical(in->px + (size_t)c0 * 3, in_stride, 0, &cv, ny, (c1 - c0) * 3, acc, tmp, tmp_stride);
        pass_horizontal(tmp, tmp_stride, c0, ny, &ch, nx, out, dst_stride);
    } else {
        // Horizontal first over the input rows the window's taps read.
        const int r0 = cv.bounds[0], r1 = cv.bounds[2 * (ny - 1)] + cv.bounds[2 * (ny - 1) + 1];
        const size_t tmp_stride = (size_t)nx * 3;
        uint8_t *tmp = work->tmp = grow(work->tmp, &work->tmp_cap, tmp_stride * (r1 - r0));
        pass_horizontal(in->px + (size_t)r0 * in_stride, in_stride, 0, r1 - r0, &ch, nx, tmp, tmp_stride);
        pass_vertical(tmp, tmp_stride, r0, &cv, ny, nx * 3, acc, out, dst_stride);
    }
    if (work == &local) image_work_free(&local);
}
