/* BMP, GIF (first frame) and WebP (lossy and lossless; an animation's first frame) for the pre-processor,
 * through vendored libraries: Wuffs for BMP and GIF, libwebp's decoder and demuxer for WebP (both fetched
 * at build time: actors/vendor.py).
 *
 * Output matches Pillow's `Image.open(...).convert("RGB")`: always 3 channels (RGB8); alpha is dropped,
 * not composited (Pillow's convert("RGB") drops it); palettes are looked up. */
#ifndef WAFT_FORMATS_H
#define WAFT_FORMATS_H

#include <stddef.h>
#include <stdint.h>

#include "jpeg.h" /* waft_image */

/* "BMP", "GIF" or "WebP" when `data` starts with that format's magic ("BM", "GIF87a"/"GIF89a",
 * "RIFF....WEBP"); NULL otherwise. */
const char *waft_formats_sniff(const uint8_t *data, size_t len);

/* Decode a sniffed file into img (pixels malloc'd; free()). Width*height is checked against `max_pixels`
 * from the header before any pixel buffer is allocated. Returns NULL or the invalidEncoding reason
 * ("truncated GIF", "unsupported BMP file", ...), valid until the next call. */
const char *waft_formats_decode(const uint8_t *data, size_t len, uint64_t max_pixels, waft_image *img);

#endif
