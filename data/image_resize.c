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
// expand2square's canvas is never built: the input is a canvas of one fill
// colour with the image's pixels in a rectangle (a Canvas). Fill pixels
// under a filter's taps are summed as fill * (their coefficients' sum), so
// a pass reads only image pixels, and rows that are all fill are filtered
// once. Integer sums do not depend on their order, so the bytes are those
// of resizing the materialised canvas (a 60000x2 image costs ~3 MB, not the
// 10.8 GB of its 60000x60000 canvas).
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
// input index bounds[2i], the tap count bounds[2i+1], the taps
// k[i * ksize + t] in fixed point and their sum ksum[i].
typedef struct {
    int ksize;
    int *bounds;    // [n][2]
    int32_t *k;     // [n][ksize]
    int32_t *ksum;  // [n]
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
        int32_t *k = c->k + (size_t)i * c->ksize, sum = 0;
        for (int x = 0; x < c->ksize; x++) {
            double v = 0.0;
            if (x < xmax) v = ww != 0.0 ? w[x] / ww : w[x];
            k[x] = v < 0 ? (int32_t)(-0.5 + v * (1 << PRECISION_BITS)) : (int32_t)(0.5 + v * (1 << PRECISION_BITS));
            if (x < xmax) sum += k[x];
        }
        c->bounds[2 * i] = xmin;
        c->bounds[2 * i + 1] = xmax;
        c->ksum[i] = sum;
    }
}

static inline uint8_t clip8(int32_t acc) {
    int32_t v = acc >> PRECISION_BITS;  // arithmetic shift, as Pillow's lookup table index
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

// Horizontal filter of one row whose pixels [b0, b1) are px[0 ..] and whose
// other pixels are all `out`: dst[j] = sum_t row[bounds_j + t] * k_j[t].
static void filter_row(const uint8_t *px, int b0, int b1, const uint8_t out[3], const AxisCoefs *c, int n_out,
                       uint8_t *dst) {
    if (n_out > 0 && b0 <= c->bounds[0] && c->bounds[2 * (n_out - 1)] + c->bounds[2 * (n_out - 1) + 1] <= b1) {
        // Every tap on a real pixel (no padding under this row): the plain loop.
        for (int j = 0; j < n_out; j++) {
            const int32_t *k = c->k + (size_t)j * c->ksize;
            const uint8_t *p = px + (size_t)(c->bounds[2 * j] - b0) * 3;
            const int cnt = c->bounds[2 * j + 1];
            int32_t s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
            for (int t = 0; t < cnt; t++) {
                s0 += p[3 * t + 0] * k[t];
                s1 += p[3 * t + 1] * k[t];
                s2 += p[3 * t + 2] * k[t];
            }
            dst[3 * j + 0] = clip8(s0);
            dst[3 * j + 1] = clip8(s1);
            dst[3 * j + 2] = clip8(s2);
        }
        return;
    }
    for (int j = 0; j < n_out; j++) {
        const int xmin = c->bounds[2 * j], xend = xmin + c->bounds[2 * j + 1];
        const int lo = xmin > b0 ? xmin : b0, hi = xend < b1 ? xend : b1;
        const int32_t *k = c->k + (size_t)j * c->ksize;  // k[x - xmin] for input x
        const int n = hi - lo;  // taps on real pixels (may be <= 0)
        const int32_t *kl = k + (n > 0 ? lo - xmin : 0);
        int32_t s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
        if (n > 0) {
            const uint8_t *p = px + (size_t)(lo - b0) * 3;
            for (int t = 0; t < n; t++) {
                s0 += p[3 * t + 0] * kl[t];
                s1 += p[3 * t + 1] * kl[t];
                s2 += p[3 * t + 2] * kl[t];
            }
        }
        if (lo != xmin || hi != xend) {  // some taps fall on `out` pixels: their weight times `out`
            int32_t kin = 0;
            for (int t = 0; t < n; t++) kin += kl[t];
            const int32_t kout = c->ksum[j] - kin;
            s0 += out[0] * kout, s1 += out[1] * kout, s2 += out[2] * kout;
        }
        dst[3 * j + 0] = clip8(s0);
        dst[3 * j + 1] = clip8(s1);
        dst[3 * j + 2] = clip8(s2);
    }
}

// Vertical filter, output rows [i0, i0 + n_out), `bytes` bytes a row, of
// rows whose rows [b0, b1) are src + (y - b0) * stride and whose other rows
// all equal out_row: dst[i][x] = sum_t row[bounds_i + t][x] * k_i[t]. The
// taps are accumulated row by row over an int32 line (vectorises).
static void filter_rows(const uint8_t *src, size_t stride, int b0, int b1, const uint8_t *out_row,
                        const AxisCoefs *c, int i0, int n_out, int bytes, int32_t *acc, uint8_t *dst,
                        size_t dst_stride) {
    for (int i = i0; i < i0 + n_out; i++) {
        const int ymin = c->bounds[2 * i], yend = ymin + c->bounds[2 * i + 1];
        const int lo = ymin > b0 ? ymin : b0, hi = yend < b1 ? yend : b1;
        const int32_t *k = c->k + (size_t)i * c->ksize;  // k[y - ymin] for input row y
        int32_t kin = 0;
        for (int y = lo; y < hi; y++) kin += k[y - ymin];
        const int32_t kout = c->ksum[i] - kin;
        if (kout)
            for (int x = 0; x < bytes; x++) acc[x] = (1 << (PRECISION_BITS - 1)) + out_row[x] * kout;
        else
            for (int x = 0; x < bytes; x++) acc[x] = 1 << (PRECISION_BITS - 1);
        for (int y = lo; y < hi; y++) {
            const uint8_t *row = src + (size_t)(y - b0) * stride;
            const int32_t kt = k[y - ymin];
            for (int x = 0; x < bytes; x++) acc[x] += row[x] * kt;
        }
        uint8_t *o = dst + (size_t)(i - i0) * dst_stride;
        for (int x = 0; x < bytes; x++) o[x] = clip8(acc[x]);
    }
}

// Grows a reusable buffer (contents are not kept).
static void *grow(void *p, size_t *cap, size_t bytes) {
    if (*cap >= bytes) return p;
    free(p);
    *cap = bytes;
    return xmalloc(bytes);
}

// Copies canvas pixels [x0, x0 + n) of row y to dst.
static void canvas_copy_row(const Canvas *cv, int y, int x0, int n, uint8_t *dst) {
    const RgbImage *im = cv->im;
    const int in_rows = y >= cv->oy && y < cv->oy + im->h;
    for (int x = x0; x < x0 + n; x++, dst += 3) {
        if (in_rows && x >= cv->ox && x < cv->ox + im->w)
            memcpy(dst, im->px + ((size_t)(y - cv->oy) * im->w + (size_t)(x - cv->ox)) * 3, 3);
        else
            memcpy(dst, cv->fill, 3);
    }
}

// The horizontal-first intermediate of one block of output rows stays under
// this many bytes (more rows are filtered twice, at block edges).
#define BLOCK_BYTES ((size_t)16 << 20)

void image_resize_canvas_window(const Canvas *cv, int out_w, int out_h, int x0, int y0, int win_w, int win_h,
                                ImageWork *work, uint8_t *dst) {
    const RgbImage *im = cv->im;
    CHECK(im->w > 0 && im->h > 0 && out_w > 0 && out_h > 0 && win_w >= 0 && win_h >= 0 && cv->ox >= 0 &&
              cv->oy >= 0 && cv->ox + im->w <= cv->w && cv->oy + im->h <= cv->h,
          "bad resize %dx%d on %dx%d -> %dx%d", im->w, im->h, cv->w, cv->h, out_w, out_h);
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
    const size_t in_stride = (size_t)im->w * 3;
    const int need_h = out_w != cv->w, need_v = out_h != cv->h;
    // The image's rectangle on the canvas: columns [ix0, ix1), rows [iy0, iy1).
    const int ix0 = cv->ox, ix1 = cv->ox + im->w, iy0 = cv->oy, iy1 = cv->oy + im->h;

    AxisCoefs ch = {0}, cvc = {0};
    ch.ksize = need_h ? axis_ksize(cv->w, out_w) : 0;
    cvc.ksize = need_v ? axis_ksize(cv->h, out_h) : 0;
    const int kmax = ch.ksize > cvc.ksize ? ch.ksize : cvc.ksize;
    // One block: double scratch, then int32s (bounds, taps, sums of each
    // axis, the accumulator line), then bytes (fill lines).
    const size_t nbh = (size_t)nx * 2, nkh = (size_t)nx * ch.ksize;
    const size_t nbv = (size_t)ny * 2, nkv = (size_t)ny * cvc.ksize;
    // Input columns a window row's taps read: at most nx * scale + 2 * support + 2.
    const int cols = need_h ? ch.ksize + (int)ceil((double)cv->w / out_w * nx) + 4 : nx;
    const size_t line = (size_t)(nx > cols ? nx : cols) * 3;  // widest vertical pass, and fill line
    const size_t ints = nbh + nkh + nx + nbv + nkv + ny + line;
    const size_t bytes = ((size_t)kmax + 1) * sizeof(double) + ints * sizeof(int32_t) + 2 * line + (size_t)ny * 3;
    work->coef = grow(work->coef, &work->coef_cap, bytes);
    char *block = work->coef;
    double *w = (double *)block;  // aligned: block comes from malloc
    int32_t *ip = (int32_t *)(block + ((size_t)kmax + 1) * sizeof(double));
    ch.bounds = ip; ip += nbh;
    ch.k = ip; ip += nkh;
    ch.ksum = ip; ip += nx;
    cvc.bounds = ip; ip += nbv;
    cvc.k = ip; ip += nkv;
    cvc.ksum = ip; ip += ny;
    int32_t *acc = ip; ip += line;
    uint8_t *fill_line = (uint8_t *)ip;      // [line]: the fill colour, repeated
    uint8_t *fill_filtered = fill_line + line;  // [line] or [ny][3]: fill after the first pass
    for (size_t x = 0; x < line; x += 3) memcpy(fill_line + x, cv->fill, 3);
    if (need_h) axis_coefs(cv->w, out_w, wx0, nx, &ch, w);
    if (need_v) axis_coefs(cv->h, out_h, wy0, ny, &cvc, w);

    if (!need_h && !need_v) {
        for (int y = 0; y < ny; y++) canvas_copy_row(cv, wy0 + y, wx0, nx, out + (size_t)y * dst_stride);
    } else if (!need_v) {
        for (int y = 0; y < ny; y++) {
            const int cy = wy0 + y;
            const int inside = cy >= iy0 && cy < iy1;
            filter_row(inside ? im->px + (size_t)(cy - iy0) * in_stride : NULL, inside ? ix0 : 0, inside ? ix1 : 0,
                       cv->fill, &ch, nx, out + (size_t)y * dst_stride);
        }
    } else if (!need_h) {
        // Window columns left of, on and right of the image.
        const int a = wx0 > ix0 ? wx0 : ix0, b = wx1 < ix1 ? wx1 : ix1;
        filter_rows(fill_line, 0, 0, 0, fill_line, &cvc, 0, ny, 3, acc, fill_filtered, 3);
        for (int y = 0; y < ny; y++)
            for (int x = wx0; x < wx1; x++)
                if (x < a || x >= b) memcpy(out + (size_t)y * dst_stride + (size_t)(x - wx0) * 3, fill_filtered + 3 * y, 3);
        if (a < b)
            filter_rows(im->px + (size_t)(a - ix0) * 3, in_stride, iy0, iy1, fill_line, &cvc, 0, ny, (b - a) * 3, acc,
                        out + (size_t)(a - wx0) * 3, dst_stride);
    } else if (cv->h >= out_h && (cv->h - out_h) > (cv->w - out_w) * 2) {
        // Vertical first over the image columns the window's taps read; the
        // canvas columns beside the image are fill in every row.
        const int c0 = ch.bounds[0], c1 = ch.bounds[2 * (nx - 1)] + ch.bounds[2 * (nx - 1) + 1];
        const int a = c0 > ix0 ? c0 : ix0, b = c1 < ix1 ? c1 : ix1, ncol = b > a ? b - a : 0;
        CHECK((size_t)ncol * 3 <= line, "resize: %d columns over the %zu-byte line", ncol, line);
        const size_t tmp_stride = (size_t)ncol * 3;
        uint8_t *tmp = work->tmp = grow(work->tmp, &work->tmp_cap, tmp_stride * ny + 1);
        if (ncol > 0)
            filter_rows(im->px + (size_t)(a - ix0) * 3, in_stride, iy0, iy1, fill_line, &cvc, 0, ny, ncol * 3, acc,
                        tmp, tmp_stride);
        filter_rows(fill_line, 0, 0, 0, fill_line, &cvc, 0, ny, 3, acc, fill_filtered, 3);
        for (int y = 0; y < ny; y++)
            filter_row(tmp + (size_t)y * tmp_stride, a, a + ncol, fill_filtered + 3 * y, &ch, nx,
                       out + (size_t)y * dst_stride);
    } else {
        // Horizontal first over the image rows the window's taps read (rows
        // of pure fill are filtered once), in blocks of output rows.
        const size_t tmp_stride = (size_t)nx * 3;
        filter_row(NULL, 0, 0, cv->fill, &ch, nx, fill_filtered);
        for (int i0 = 0; i0 < ny;) {
            const int r0 = cvc.bounds[2 * i0];
            int i1 = i0 + 1;
            while (i1 < ny && (size_t)(cvc.bounds[2 * i1] + cvc.bounds[2 * i1 + 1] - r0) * tmp_stride <= BLOCK_BYTES)
                i1++;
            const int r1 = cvc.bounds[2 * (i1 - 1)] + cvc.bounds[2 * (i1 - 1) + 1];
            const int a = r0 > iy0 ? r0 : iy0, b = r1 < iy1 ? r1 : iy1, nrow = b > a ? b - a : 0;
            uint8_t *tmp = work->tmp = grow(work->tmp, &work->tmp_cap, tmp_stride * nrow + 1);
            for (int y = a; y < b; y++)
                filter_row(im->px + (size_t)(y - iy0) * in_stride, ix0, ix1, cv->fill, &ch, nx,
                           tmp + (size_t)(y - a) * tmp_stride);
            filter_rows(tmp, tmp_stride, a, a + nrow, fill_filtered, &cvc, i0, i1 - i0, nx * 3, acc,
                        out + (size_t)i0 * dst_stride, dst_stride);
            i0 = i1;
        }
    }
    if (work == &local) image_work_free(&local);
}

void image_resize_bicubic_window(const RgbImage *in, int out_w, int out_h, int x0, int y0, int win_w,
                                 int win_h, ImageWork *work, uint8_t *dst) {
    const Canvas cv = {.im = in, .w = in->w, .h = in->h};
    image_resize_canvas_window(&cv, out_w, out_h, x0, y0, win_w, win_h, work, dst);
}
