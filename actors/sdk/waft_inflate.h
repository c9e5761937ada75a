/* DEFLATE / zlib decompression (RFC 1950, RFC 1951) for untrusted input.
 *
 * Why our own: actors link no third-party C, and image formats (PNG) and payloads need inflate. The
 * decoder is *pull-based*: waft_inflate_read() produces exactly as many bytes as the caller asks for
 * (fewer only at the end of the stream), so a PNG decoder can take one scanline at a time and never
 * hold the whole decompressed image. The compressed input must be fully in memory, but may be split
 * over several segments (PNG IDAT chunks) without being copied together.
 *
 * Safety: every read is bounds-checked against the segments; malformed streams (bad block type,
 * over-subscribed or incomplete Huffman codes, distances before the start of the output, stored
 * length mismatch, bad zlib header or Adler-32) are reported as an error string, never a trap.
 * Memory: the state holds a 32 KiB history window and the Huffman tables (~40 KiB in all); allocate
 * it with waft_inflate_new (not on the 64 KiB stack).
 */
#ifndef WAFT_INFLATE_H
#define WAFT_INFLATE_H

#include <stddef.h>
#include <stdint.h>

/* One contiguous piece of the compressed stream. */
typedef struct {
    const uint8_t *data;
    size_t len;
} waft_inflate_seg;

typedef struct waft_inflate waft_inflate;

/* Most segments one stream may have: a bound on the segment table (8 bytes each in wasm32), far
 * above what real files use (PNG encoders write IDATs of 8 KiB or more; a 20 MiB PNG cut into 1-byte
 * IDATs would need 1.7 M). */
#define WAFT_INFLATE_MAX_SEGS (1u << 22)

/* `zlib`: 1 for a zlib stream (2-byte header, Adler-32 trailer checked), 0 for raw DEFLATE.
 * The segment array is copied (at most WAFT_INFLATE_MAX_SEGS); the bytes it points to are not, and must
 * outlive the state. Returns NULL when out of memory or with too many segments. */
waft_inflate *waft_inflate_new(const waft_inflate_seg *segs, size_t nsegs, int zlib);
void waft_inflate_free(waft_inflate *s);

/* Decompress up to `want` bytes into `out`. Returns the number written: `want`, unless the stream
 * ended first (then waft_inflate_done() is 1) or failed (then waft_inflate_error() is non-NULL and
 * the return value counts the bytes that were good). Later calls after an error return 0. */
size_t waft_inflate_read(waft_inflate *s, uint8_t *out, size_t want);
/* 1 once the final block and (for zlib) the verified Adler-32 have been consumed. */
int waft_inflate_done(const waft_inflate *s);
/* NULL, or a static description of the first error ("invalid distance too far back", ...). */
const char *waft_inflate_error(const waft_inflate *s);
/* Compressed bytes consumed so far (for trailing-data checks). */
size_t waft_inflate_consumed(const waft_inflate *s);

/* One-shot helper: inflate a whole buffer into `out` (capacity `cap`). Returns 0 and sets *out_len on
 * success; returns -1 with *err set on a malformed stream, or when the output would exceed `cap`
 * ("output larger than the buffer"). */
int waft_inflate_buffer(const uint8_t *in, size_t in_len, int zlib, uint8_t *out, size_t cap,
                        size_t *out_len, const char **err);

/* Adler-32 (RFC 1950) of `len` bytes, continuing from `adler` (start with 1). */
uint32_t waft_adler32(uint32_t adler, const uint8_t *data, size_t len);
/* CRC-32 (ISO 3309, as in zlib and PNG), continuing from `crc` (start with 0). */
uint32_t waft_crc32(uint32_t crc, const uint8_t *data, size_t len);

#endif
