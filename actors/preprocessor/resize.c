/* Pillow-exact resampling: see resize.h. Names and steps mirror libImaging/Resample.c so the two can be
 * compared line by line; where we differ (computing only a window, skipping identity passes) the
 * result is provably the same. */
#include "resize.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Pillow: PRECISION_BITS = 32 - 8 - 2, leaving room for 8-bit pixels times coefficients plus a sign. */
#define PRECISION_BITS (32 - 8 - 2)

static double bilinear_filter(double x) {
    if (x < 0.0) x = -x;
    if (x < 1.0) return 1.0 - x;
    return 0.0;
}

static double bicubic_filter(double x) {
    const double a = -0.5; /* Pillow's choice (Keys' cubic with a = -0.5) */
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

typedef struct {
    int ksize;     /* coefficients per output sample */
    int *bounds;   /* per output sample in the window: first input index, number of taps */
    int32_t *kk;   /* fixed-point coefficients, ksize per output sample */
} coeffs;

/* precompute_coeffs + normalize_coeffs_8bpc for output samples [first, first + count) of an axis that
 * maps inSize input samples onto outSize output samples (box = the whole input, as in Image.resize). */
static int precompute(uint32_t inSize, uint32_t outSize, uint32_t first, uint32_t count, waft_filter f,
                      coeffs *c) {
    double (*filter)(double) = f == WAFT_FILTER_BICUBIC ? bicubic_filter : bilinear_filter;
    double fsupport = f == WAFT_FILTER_BICUBIC ? 2.0 : 1.0;
    /* Pillow's box coordinates are C floats: in1 - in0 is computed in float before the division. */
    float in0 = 0.0f, in1 = (float)inSize;
    double scale = (double)(in1 - in0) / outSize, filterscale = scale;
    if (filterscale < 1.0) filterscale = 1.0;
    double support = fsupport * filterscale;
    double ksize_d = ceil(support) * 2 + 1;
    if (ksize_d > 1e6) return -1;
    int ksize = (int)ksize_d;
    c->ksize = ksize;
    c->bounds = malloc((size_t)count * 2 * sizeof(int));
    double *pre = malloc((size_t)count * ksize * sizeof(double));
    c->kk = malloc((size_t)count * ksize * sizeof(int32_t));
    if (!c->bounds || !pre || !c->kk) {
        free(pre);
        return -1;
    }
    for (uint32_t i = 0; i < count; i++) {
        uint32_t xx = first + i;
        double center = in0 + (xx + 0.5) * scale;
        double ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5); /* Pillow rounds by adding 0.5 and truncating */
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > (int)inSize) xmax = (int)inSize;
        xmax -= xmin;
        double *k = &pre[(size_t)i * ksize];
        int x;
        for (x = 0; x < xmax; x++) {
            double w = filter((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        for (x = 0; x < xmax; x++)
            if (ww != 0.0) k[x] /= ww;
        for (; x < ksize; x++) k[x] = 0;
        c->bounds[i * 2] = xmin;
        c->bounds[i * 2 + 1] = xmax;
    }
    for (size_t j = 0; j < (size_t)count * ksize; j++) {
        /* normalize_coeffs_8bpc: round half away from zero into PRECISION_BITS fixed point */
        c->kk[j] = pre[j] < 0 ? (int32_t)(-0.5 + pre[j] * (1 << PRECISION_BITS))
                              : (int32_t)(0.5 + pre[j] * (1 << PRECISION_BITS));
    }
    free(pre);
    return 0;
}

static void free_coeffs(coeffs *c) {
    free(c->bounds);
    free(c->kk);
}

static inline uint8_t clip8(int32_t in) {
    if (in >= (1 << PRECISION_BITS << 8)) return 255;
    if (in <= 0) return 0;
    return (uint8_t)(in >> PRECISION_BITS);
}

/* One horizontal pass: `rows` rows of `in` (row stride `in_stride` bytes; column 0 = input column
 * `col0`), output columns `cw` with coefficients `c`, into `out` (row stride cw * ch). RGB, the common
 * case, sums its three channels in one walk over the taps; integer sums, so the order changes nothing. */
static void hpass(const uint8_t *in, size_t in_stride, uint32_t rows, int col0, const coeffs *c, uint32_t cw,
                  uint32_t ch, uint8_t *out) {
    for (uint32_t y = 0; y < rows; y++) {
        const uint8_t *line = in + (size_t)y * in_stride;
        uint8_t *o = out + (size_t)y * cw * ch;
        for (uint32_t xx = 0; xx < cw; xx++) {
            int xmin = c->bounds[xx * 2] - col0, xmax = c->bounds[xx * 2 + 1];
            const int32_t *k = &c->kk[(size_t)xx * c->ksize];
            if (ch == 3) {
                int32_t s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
                const uint8_t *p = line + (size_t)xmin * 3;
                for (int x = 0; x < xmax; x++, p += 3) {
                    s0 += p[0] * k[x];
                    s1 += p[1] * k[x];
                    s2 += p[2] * k[x];
                }
                o[(size_t)xx * 3] = clip8(s0);
                o[(size_t)xx * 3 + 1] = clip8(s1);
                o[(size_t)xx * 3 + 2] = clip8(s2);
                continue;
            }
            for (uint32_t cc = 0; cc < ch; cc++) {
                int32_t ss = 1 << (PRECISION_BITS - 1);
                const uint8_t *p = line + (size_t)xmin * ch + cc;
                for (int x = 0; x < xmax; x++) ss += p[(size_t)x * ch] * k[x];
                o[(size_t)xx * ch + cc] = clip8(ss);
            }
        }
    }
}

/* One vertical pass: output rows `n` with coefficients `c` (bounds relative to input row `row0`), each
 * `width` bytes wide, from `in` (row stride `in_stride`) into `out` (row stride `width`). Row by row into
 * an i32 accumulator (`acc`, `width` entries) rather than pixel by pixel down the taps: the inner loop is
 * then contiguous and the compiler vectorises it (simd128); integer sums, so the result is the same. */
static void vpass(const uint8_t *in, size_t in_stride, int row0, const coeffs *c, uint32_t n, size_t width,
                  int32_t *acc, uint8_t *out) {
    for (uint32_t yy = 0; yy < n; yy++) {
        int ymin = c->bounds[yy * 2] - row0, ymax = c->bounds[yy * 2 + 1];
        const int32_t *k = &c->kk[(size_t)yy * c->ksize];
        const uint8_t *base = in + (size_t)ymin * in_stride;
        uint8_t *o = out + (size_t)yy * width;
        for (size_t xc = 0; xc < width; xc++) acc[xc] = 1 << (PRECISION_BITS - 1);
        for (int y = 0; y < ymax; y++) {
            const uint8_t *p = base + (size_t)y * in_stride;
            int32_t ky = k[y];
            for (size_t xc = 0; xc < width; xc++) acc[xc] += p[xc] * ky;
        }
        for (size_t xc = 0; xc < width; xc++) o[xc] = clip8(acc[xc]);
    }
}

/* First input index used by the window's taps, and one past the last (Pillow's ybox_first/ybox_last). */
static void span(const coeffs *c, uint32_t n, uint32_t *first, uint32_t *last) {
    *first = (uint32_t)c->bounds[0];
    *last = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t a = (uint32_t)c->bounds[i * 2], b = a + (uint32_t)c->bounds[i * 2 + 1];
        if (a < *first) *first = a;
        if (b > *last) *last = b;
    }
    if (*last < *first) *last = *first;
}

int waft_resize_window(const uint8_t *src, uint32_t sw, uint32_t sh, uint32_t ch, uint32_t dw, uint32_t dh,
                       uint32_t cx, uint32_t cy, uint32_t cw, uint32_t chh, waft_filter filter, uint8_t *dst,
                       const char **err) {
    if (!sw || !sh || !dw || !dh || !cw || !chh || ch < 1 || ch > 4 || cx > dw || cw > dw - cx || cy > dh ||
        chh > dh - cy) {
        *err = "bad resize geometry";
        return -1;
    }
    /* Pillow skips a pass when the size on that axis does not change (box = the whole image). */
    int need_h = sw != dw, need_v = sh != dh;
    /* Pillow 13 (ImagingResampleInner): "if height is being scaled down more than twice the amount the
     * width is, run the vertical pass first". The order changes the 8-bit rounding of the intermediate
     * image, so we must make the same choice to stay bit-exact. */
    int64_t dy = (int64_t)sh - dh, dx = (int64_t)sw - dw;
    int horizontal_first = !(dy > 0 && dy > dx * 2);
    coeffs hc = {0}, vc = {0};
    uint8_t *tmp = NULL;
    int32_t *acc = NULL;
    int rc = -1;
    if ((need_h && precompute(sw, dw, cx, cw, filter, &hc) < 0) ||
        (need_v && precompute(sh, dh, cy, chh, filter, &vc) < 0)) {
        *err = "out of memory while resizing";
        goto done;
    }
    /* The vertical pass's accumulator: one row of the widest span it may sum (the window, or the
     * columns the horizontal taps read when the vertical pass runs first). */
    if (need_v) {
        uint32_t xfirst = 0, xlast = cw + cx;
        if (need_h) span(&hc, cw, &xfirst, &xlast);
        size_t widest = (size_t)(xlast - xfirst > cw ? xlast - xfirst : cw) * ch;
        acc = malloc(widest * sizeof(int32_t));
        if (!acc) {
            *err = "out of memory while resizing";
            goto done;
        }
    }
    if (!need_h && !need_v) { /* same size: a copy of the window */
        for (uint32_t y = 0; y < chh; y++)
            memcpy(dst + (size_t)y * cw * ch, src + ((size_t)(y + cy) * sw + cx) * ch, (size_t)cw * ch);
    } else if (!need_v) { /* horizontal only, straight from the window's rows */
        hpass(src + (size_t)cy * sw * ch, (size_t)sw * ch, chh, 0, &hc, cw, ch, dst);
    } else if (!need_h) { /* vertical only, on the window's columns */
        vpass(src + (size_t)cx * ch, (size_t)sw * ch, 0, &vc, chh, (size_t)cw * ch, acc, dst);
    } else if (horizontal_first) {
        /* Horizontal pass over the input rows the vertical taps read, into an 8-bit intermediate. */
        uint32_t yfirst, ylast;
        span(&vc, chh, &yfirst, &ylast);
        tmp = malloc((size_t)(ylast - yfirst) * cw * ch);
        if (!tmp) {
            *err = "out of memory while resizing";
            goto done;
        }
        hpass(src + (size_t)yfirst * sw * ch, (size_t)sw * ch, ylast - yfirst, 0, &hc, cw, ch, tmp);
        vpass(tmp, (size_t)cw * ch, (int)yfirst, &vc, chh, (size_t)cw * ch, acc, dst);
    } else {
        /* Vertical pass first, over the input columns the horizontal taps read. */
        uint32_t xfirst, xlast;
        span(&hc, cw, &xfirst, &xlast);
        size_t width = (size_t)(xlast - xfirst) * ch;
        tmp = malloc((size_t)chh * width);
        if (!tmp) {
            *err = "out of memory while resizing";
            goto done;
        }
        vpass(src + (size_t)xfirst * ch, (size_t)sw * ch, 0, &vc, chh, width, acc, tmp);
        hpass(tmp, width, chh, (int)xfirst, &hc, cw, ch, dst);
    }
    rc = 0;
done:
    free(acc);
    free(tmp);
    free_coeffs(&hc);
    free_coeffs(&vc);
    return rc;
}

/* Pillow's division_UINT32(n, 8): 2^32 / (256 n) computed in float, truncated. Exact for powers of two;
 * for the edge boxes of other sizes the float rounding is part of what Pillow answers. */
static uint32_t reduce_multiplier(uint32_t n) { return (uint32_t)(4294967296.0f / (float)(256u * n)); }

void waft_reduce(const uint8_t *src, uint32_t sw, uint32_t sh, uint32_t ch, uint32_t d, uint8_t *dst) {
    uint32_t ow = (sw + d - 1) / d, oh = (sh + d - 1) / d;
    for (uint32_t y = 0; y < oh; y++) {
        uint32_t y0 = y * d, y1 = y0 + d < sh ? y0 + d : sh;
        for (uint32_t x = 0; x < ow; x++) {
            uint32_t x0 = x * d, x1 = x0 + d < sw ? x0 + d : sw;
            uint32_t n = (x1 - x0) * (y1 - y0), mul = reduce_multiplier(n);
            uint32_t ss[4];
            for (uint32_t c = 0; c < ch; c++) ss[c] = n / 2;
            for (uint32_t yy = y0; yy < y1; yy++) {
                const uint8_t *row = src + ((size_t)yy * sw + x0) * ch;
                for (uint32_t i = 0; i < (x1 - x0) * ch; i += ch)
                    for (uint32_t c = 0; c < ch; c++) ss[c] += row[i + c];
            }
            uint8_t *out = dst + ((size_t)y * ow + x) * ch;
            for (uint32_t c = 0; c < ch; c++) out[c] = (uint8_t)((ss[c] * mul) >> 24);
        }
    }
}
