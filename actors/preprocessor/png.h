/* PNG decoder for the pre-processor: untrusted bytes in, 8-bit grey or RGB pixels out.
 *
 * Supports the whole PNG 1.2 / ISO 15948 core: colour types 0, 2, 3, 4, 6 with every bit depth the
 * spec allows (1/2/4/8/16 as applicable), palettes (with or without tRNS), Adam7 interlacing, all five
 * filters, multiple IDAT chunks, CRCs checked on every chunk and the zlib Adler-32 checked.
 *
 * Output matches Pillow's `Image.open(...).convert("RGB")` (grey types are returned as 1 channel; the
 * caller replicates them, which is what convert("RGB") does):
 *   - alpha (types 4 and 6) and tRNS are dropped, not composited: Pillow's convert("RGB") drops them;
 *   - 1/2/4-bit grey is scaled to 0..255 (x255, x85, x17), as Pillow's "1", "L;2", "L;4" unpackers do;
 *   - 16-bit samples keep their high byte (Pillow does this for RGB, RGBA and LA). For 16-bit *grey*
 *     Pillow opens an "I;16" image whose convert("RGB") clips values above 255 to white, which turns any
 *     real 16-bit photo into a white sheet; we take the high byte there too, on purpose;
 *   - palette indices beyond the PLTE entries decode as black, as in Pillow.
 */
#ifndef WAFT_PNG_H
#define WAFT_PNG_H

#include <stddef.h>
#include <stdint.h>

/* waft_image (8-bit grey or RGB pixels) is shared with the JPEG decoder, whose header defines it. */
#include "jpeg.h"

/* 1 when `data` starts with the PNG signature. */
int waft_png_sniff(const uint8_t *data, size_t len);

/* Dimensions from IHDR (checks the signature, the IHDR CRC and its fields). 0 on success, -1 + *err. */
int waft_png_info(const uint8_t *data, size_t len, uint32_t *width, uint32_t *height, const char **err);

/* Decode into out->pixels (malloc'd once at its final size; free() it). Images with more than
 * `max_pixels` pixels are refused before anything large is allocated. 0 on success, -1 with *err set
 * to a message that stays valid until the next call (e.g. "bad PNG CRC in IDAT chunk"). */
int waft_png_decode(const uint8_t *data, size_t len, uint64_t max_pixels, waft_image *out, const char **err);

#endif
