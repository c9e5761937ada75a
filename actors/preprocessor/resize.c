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

int waft_resize_window(const uint8_t *src, uint32_t sw, uint32_t sh, uint32_t ch, uint32_t dw, uint32_t dh,
                       uint32_t cx, uint32_t cy, uint32_t cw, uint32_t chh, waft_filter filter, uint8_t *dst,
                       const char **err) {
    if (!sw || !sh || !dw || !dh || !cw || !chh || ch < 1 || ch > 4 || cx > dw || cw > dw - cx || cy > dh ||
        chh > dh - cy) {
        *err = "bad resize geometry";
        return -1;
    }
    /* Pillow skips a pass when the size on that axis does not change; with box = the whole image the
     * identity pass would give the same pixels anyway (one coefficient of exactly 1 << 22). */
    int need_h = sw != dw, need_v = sh != dh;
    coeffs hc = {0}, vc = {0};
    uint8_t *tmp = NULL;
    int rc = -1;
    if ((need_h && precompute(sw, dw, cx, cw, filter, &hc) < 0) ||
        (need_v && precompute(sh, dh, cy, chh, filter, &vc) < 0)) {
        *err = "out of memory while resizing";
        goto done;
    }
    /* Input rows the vertical pass reads (Pillow's ybox_first / ybox_last, for our window). */
    uint32_t yfirst = cy, ylast = cy + chh;
    if (need_v) {
        yfirst = (uint32_t)vc.bounds[0];
        ylast = (uint32_t)(vc.bounds[(chh - 1) * 2] + vc.bounds[(chh - 1) * 2 + 1]);
        for (uint32_t i = 1; i < chh; i++) { /* bounds are monotonic, but be safe */
            if ((uint32_t)vc.bounds[i * 2] < yfirst) yfirst = (uint32_t)vc.bounds[i * 2];
            uint32_t end = (uint32_t)(vc.bounds[i * 2] + vc.bounds[i * 2 + 1]);
            if (end > ylast) ylast = end;
        }
    }
    uint32_t trows = ylast - yfirst;

    /* Horizontal pass into an 8-bit intermediate of trows x cw (Pillow's imTemp, narrowed to the window). */
    const uint8_t *hsrc;
    size_t hstride;
    if (need_h) {
        tmp = malloc((size_t)trows * cw * ch);
        if (!tmp) {
            *err = "out of memory while resizing";
            goto done;
        }
        for (uint32_t y = 0; y < trows; y++) {
            const uint8_t *in = src + (size_t)(y + yfirst) * sw * ch;
            uint8_t *o = tmp + (size_t)y * cw * ch;
            for (uint32_t xx = 0; xx < cw; xx++) {
                int xmin = hc.bounds[xx * 2], xmax = hc.bounds[xx * 2 + 1];
                const int32_t *k = &hc.kk[(size_t)xx * hc.ksize];
                for (uint32_t c = 0; c < ch; c++) {
                    int32_t ss = 1 << (PRECISION_BITS - 1);
                    const uint8_t *p = in + (size_t)xmin * ch + c;
                    for (int x = 0; x < xmax; x++) ss += p[(size_t)x * ch] * k[x];
                    o[(size_t)xx * ch + c] = clip8(ss);
                }
            }
        }
        hsrc = tmp;
        hstride = (size_t)cw * ch;
    } else {
        /* No horizontal change: read the window's columns straight from the source. */
        hsrc = src + (size_t)yfirst * sw * ch + (size_t)cx * ch;
        hstride = (size_t)sw * ch;
    }

    /* Vertical pass from the intermediate (row 0 = input row yfirst) into dst. */
    for (uint32_t yy = 0; yy < chh; yy++) {
        uint8_t *o = dst + (size_t)yy * cw * ch;
        if (!need_v) {
            memcpy(o, hsrc + (size_t)(yy + cy - yfirst) * hstride, (size_t)cw * ch);
            continue;
        }
        int ymin = vc.bounds[yy * 2] - (int)yfirst, ymax = vc.bounds[yy * 2 + 1];
        const int32_t *k = &vc.kk[(size_t)yy * vc.ksize];
        for (size_t xc = 0; xc < (size_t)cw * ch; xc++) {
            int32_t ss = 1 << (PRECISION_BITS - 1);
            const uint8_t *p = hsrc + (size_t)ymin * hstride + xc;
            for (int y = 0; y < ymax; y++) ss += p[(size_t)y * hstride] * k[y];
            o[xc] = clip8(ss);
        }
    }
    rc = 0;
done:
    free(tmp);
    free_coeffs(&hc);
    free_coeffs(&vc);
    return rc;
}
