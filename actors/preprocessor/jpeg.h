/* JPEG decoder for the pre-processor: untrusted bytes in, 8-bit grey or RGB pixels out.
 *
 * Baseline and extended sequential (SOF0/SOF1) and progressive (SOF2) Huffman JPEGs, 8-bit precision,
 * 1 (grey), 3 (YCbCr or RGB) or 4 (Adobe CMYK / YCCK) components, any h/v sampling factors whose ratios
 * are whole numbers, restart intervals, EXIF orientation. Arithmetic coding, lossless, hierarchical,
 * 12-bit and DNL-defined heights are refused with a clear message.
 *
 * Pixels match libjpeg-turbo as Pillow uses it (`Image.open(...).convert("RGB")`): the same accurate
 * integer IDCT (jidctint.c / jidctred.c), the same "fancy" chroma upsampling and YCbCr tables, and
 * Pillow's CMYK -> RGB arithmetic. See jpeg.c for the details and the few places that differ.
 */
#ifndef WAFT_JPEG_H
#define WAFT_JPEG_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t width, height;   /* of the decoded (possibly downscaled) image, after EXIF orientation */
    uint32_t channels;        /* 1 (grayscale) or 3 (RGB); CMYK/YCCK are converted to RGB */
    uint8_t *pixels;          /* width*height*channels, row-major, malloc'd; caller frees with free() */
} waft_image;

/* Decode `data`. `scale_denom` is 1, 2, 4 or 8: decode directly at 1/scale in the DCT domain (only
   the low-frequency coefficients, as libjpeg's scaled IDCT does) — the caller picks the largest that
   keeps both sides >= its target size. `max_pixels` bounds width*height of the FULL-size image (refuse
   before allocating). Returns 0 on success; else non-zero with a static, human-readable reason in *err
   such as "truncated JPEG scan", "unsupported JPEG: arithmetic coding", "JPEG too large: 60000000 pixels
   exceeds the limit of 50000000", "corrupt JPEG: bad Huffman code". Never reads out of bounds, never
   traps, on any input.
   On failure out->pixels is NULL (nothing to free). The "too large" message lives in a static buffer
   that the next call overwrites (actors are single-threaded). */
int waft_jpeg_decode(const uint8_t *data, size_t len, uint32_t scale_denom, uint64_t max_pixels,
                     waft_image *out, const char **err);

/* Header only: full-size dimensions (before orientation) and EXIF orientation 1..8. */
int waft_jpeg_info(const uint8_t *data, size_t len, uint32_t *width, uint32_t *height, uint32_t *orientation,
                   const char **err);

#endif
