/* Image resampling that reproduces Pillow's `Image.resize` (libImaging/Resample.c) bit for bit.
 *
 * Why exact and not "a bilinear": the models' accuracy figures and our tests use Pillow as the
 * reference, and Pillow's BILINEAR is not textbook bilinear when reducing: it is a triangle filter
 * whose support grows with the reduction factor (antialiasing). We follow its algorithm step by step:
 * per-axis coefficients in double (precompute_coeffs), converted to 22-bit fixed point
 * (normalize_coeffs_8bpc), one pass per axis through an 8-bit intermediate image (rounded and
 * clipped). Pass order matters for that rounding: like Pillow 13 we run the horizontal pass first unless
 * the height shrinks by more than twice as many pixels as the width, then the vertical pass first.
 * Enlarging uses the same code with support 1, i.e. plain bilinear.
 *
 * Only a window of the resized image is computed (the centre crop), which gives the same pixels as
 * resizing everything and cropping afterwards, because each output pixel depends only on its own
 * coefficients.
 */
#ifndef WAFT_RESIZE_H
#define WAFT_RESIZE_H

#include <stdint.h>

typedef enum { WAFT_FILTER_BILINEAR = 0, WAFT_FILTER_BICUBIC = 1 } waft_filter;

/* Equivalent of Pillow's `im.resize((dw, dh), filter).crop((cx, cy, cx + cw, cy + chh))` for an 8-bit
 * image `src` of sw x sh pixels with `ch` interleaved channels (1..4). Writes cw * chh * ch bytes to
 * `dst`. The window must lie inside dw x dh. Returns 0, or -1 with *err set (bad sizes, out of memory). */
int waft_resize_window(const uint8_t *src, uint32_t sw, uint32_t sh, uint32_t ch, uint32_t dw, uint32_t dh,
                       uint32_t cx, uint32_t cy, uint32_t cw, uint32_t chh, waft_filter filter, uint8_t *dst,
                       const char **err);

/* Equivalent of Pillow's `im.reduce(d)` (libImaging/Reduce.c): each output pixel is the rounded mean of
 * a d x d box, the last row and column averaging what is left; output ceil(sw/d) x ceil(sh/d). Pillow's
 * fixed-point division (a float-derived multiplier, then >> 24) is reproduced, not a plain divide, so
 * that boxes of 3, 5, 6 or 7 pixels round as Pillow's do. Writes to `dst` (may not alias `src`). */
void waft_reduce(const uint8_t *src, uint32_t sw, uint32_t sh, uint32_t ch, uint32_t d, uint8_t *dst);

#endif
