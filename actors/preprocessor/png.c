/* PNG decoder: see png.h for what it supports and how it maps pixels.
 *
 * Memory: the decompressed, filtered image is never held whole. waft_inflate is pull-based, so rows
 * are inflated one at a time into two row buffers (current and previous, for the Up/Average/Paeth
 * filters), unfiltered and converted straight into the output image. The output is allocated once at
 * its final size, after the pixel limit is checked (the zig allocator rounds to powers of two, so
 * growing buffers would waste memory).
 */
#include "png.h"

#include <stdlib.h>
#include <string.h>

#include "waft_inflate.h"

static const uint8_t SIGNATURE[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};

/* Most bytes of surplus image data (after the last row) we decompress and ignore. libpng treats "too
 * much image data" as a benign warning, so a few stray bytes are tolerated; a large surplus is a
 * decompression bomb and is refused. */
#define MAX_SURPLUS (1u << 20)

/* Messages that carry numbers or chunk names are built here (wasm is single-threaded; the text stays
 * valid until the next decode, which the contract in png.h says). */
static char msgbuf[160];

static const char *msg6(const char *a, const char *b, const char *c, const char *d, const char *e,
                        const char *f) {
    size_t n = 0;
    const char *parts[6] = {a, b, c, d, e, f};
    for (int i = 0; i < 6; i++)
        for (const char *p = parts[i]; p && *p && n + 1 < sizeof msgbuf; p++) msgbuf[n++] = *p;
    msgbuf[n] = 0;
    return msgbuf;
}

static const char *msg(const char *a, const char *b, const char *c, const char *d) {
    return msg6(a, b, c, d, NULL, NULL);
}

/* Unsigned decimal into a small static slot (one of four, so up to four numbers fit in one message). */
static const char *num(uint64_t v) {
    static char slots[4][24];
    static int next;
    char *s = slots[next++ & 3];
    char tmp[24];
    int k = 0;
    do {
        tmp[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (int i = 0; i < k; i++) s[i] = tmp[k - 1 - i];
    s[k] = 0;
    return s;
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int waft_png_sniff(const uint8_t *data, size_t len) {
    return len >= 8 && memcmp(data, SIGNATURE, 8) == 0;
}

/* Chunk type as text for messages; only letters are valid in a chunk type, anything else is refused. */
static int type_ok(const uint8_t *t, char name[5]) {
    for (int i = 0; i < 4; i++) {
        uint8_t c = t[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'))) return 0;
        name[i] = (char)c;
    }
    name[4] = 0;
    return 1;
}

typedef struct {
    uint32_t width, height;
    uint8_t depth, color, interlace;
    uint32_t channels; /* samples per pixel in the file */
} ihdr;

/* One chunk at data[pos]: checks the length fits, the type is letters and the CRC. */
static int read_chunk(const uint8_t *data, size_t len, size_t pos, uint32_t *clen, char name[5],
                      const char **err) {
    if (len - pos < 8) {
        *err = "truncated PNG data";
        return -1;
    }
    *clen = be32(data + pos);
    if (*clen > 0x7FFFFFFFu) {
        *err = "bad PNG chunk length";
        return -1;
    }
    if (!type_ok(data + pos + 4, name)) {
        *err = "bad PNG chunk type";
        return -1;
    }
    if (len - pos - 8 < (size_t)*clen + 4 || (uint64_t)*clen + 12 > len - pos) {
        *err = "truncated PNG data";
        return -1;
    }
    uint32_t crc = waft_crc32(0, data + pos + 4, (size_t)*clen + 4);
    if (crc != be32(data + pos + 8 + *clen)) {
        *err = msg("bad PNG CRC in ", name, " chunk", NULL);
        return -1;
    }
    return 0;
}

static int parse_ihdr(const uint8_t *data, size_t len, ihdr *h, const char **err) {
    uint32_t clen;
    char name[5];
    if (!waft_png_sniff(data, len)) {
        *err = len < 8 && memcmp(data, SIGNATURE, len) == 0 ? "truncated PNG data" : "not a PNG file";
        return -1;
    }
    if (read_chunk(data, len, 8, &clen, name, err) < 0) return -1;
    if (strcmp(name, "IHDR") != 0 || clen != 13) {
        *err = "PNG does not start with an IHDR chunk";
        return -1;
    }
    const uint8_t *p = data + 16;
    h->width = be32(p);
    h->height = be32(p + 4);
    h->depth = p[8];
    h->color = p[9];
    h->interlace = p[12];
    if (h->width == 0 || h->height == 0 || h->width > 0x7FFFFFFFu || h->height > 0x7FFFFFFFu) {
        *err = msg("bad PNG dimensions ", num(h->width), " x ", num(h->height));
        return -1;
    }
    /* Allowed bit depths per colour type (PNG spec table 11.1). */
    int ok;
    switch (h->color) {
    case 0: ok = h->depth == 1 || h->depth == 2 || h->depth == 4 || h->depth == 8 || h->depth == 16;
            h->channels = 1; break;
    case 3: ok = h->depth == 1 || h->depth == 2 || h->depth == 4 || h->depth == 8; h->channels = 1; break;
    case 2: ok = h->depth == 8 || h->depth == 16; h->channels = 3; break;
    case 4: ok = h->depth == 8 || h->depth == 16; h->channels = 2; break;
    case 6: ok = h->depth == 8 || h->depth == 16; h->channels = 4; break;
    default:
        *err = msg("unsupported PNG colour type ", num(h->color), NULL, NULL);
        return -1;
    }
    if (!ok) {
        *err = msg("unsupported PNG bit depth ", num(h->depth), " in colour type ", num(h->color));
        return -1;
    }
    if (p[10] != 0) {
        *err = "unknown PNG compression method";
        return -1;
    }
    if (p[11] != 0) {
        *err = "unknown PNG filter method";
        return -1;
    }
    if (h->interlace > 1) {
        *err = "unknown PNG interlace method";
        return -1;
    }
    return 0;
}

int waft_png_info(const uint8_t *data, size_t len, uint32_t *width, uint32_t *height, const char **err) {
    ihdr h;
    if (parse_ihdr(data, len, &h, err) < 0) return -1;
    *width = h.width;
    *height = h.height;
    return 0;
}

static uint8_t paeth(uint8_t a, uint8_t b, uint8_t c) {
    int p = (int)a + b - c;
    int pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    if (pa <= pb && pa <= pc) return a;
    return pb <= pc ? b : c;
}

/* Undo the row filter in place; `prev` is the previous unfiltered row of the same pass (zeros first). */
static int unfilter(uint8_t ftype, uint8_t *row, const uint8_t *prev, size_t n, size_t bpp) {
    size_t i;
    switch (ftype) {
    case 0: break;
    case 1: for (i = bpp; i < n; i++) row[i] = (uint8_t)(row[i] + row[i - bpp]); break;
    case 2: for (i = 0; i < n; i++) row[i] = (uint8_t)(row[i] + prev[i]); break;
    case 3:
        for (i = 0; i < bpp && i < n; i++) row[i] = (uint8_t)(row[i] + (prev[i] >> 1));
        for (; i < n; i++) row[i] = (uint8_t)(row[i] + ((row[i - bpp] + prev[i]) >> 1));
        break;
    case 4:
        for (i = 0; i < bpp && i < n; i++) row[i] = (uint8_t)(row[i] + prev[i]); /* paeth(0, b, 0) = b */
        for (; i < n; i++) row[i] = (uint8_t)(row[i] + paeth(row[i - bpp], prev[i], prev[i - bpp]));
        break;
    default: return -1;
    }
    return 0;
}

/* Sample `i` of a row packed at `depth` < 8 bits (MSB first). */
static inline unsigned packed(const uint8_t *row, size_t i, unsigned depth) {
    size_t bit = i * depth;
    return (row[bit >> 3] >> (8 - depth - (bit & 7))) & ((1u << depth) - 1);
}

/* Convert one unfiltered row of `pw` pixels into output pixels at x = x0, x0 + dx, ... of `dst`. */
static void emit_row(const ihdr *h, const uint8_t *row, uint32_t pw, uint8_t *dst, uint32_t x0, uint32_t dx,
                     const uint8_t *plte, uint32_t plte_n) {
    uint32_t outch = (h->color == 2 || h->color == 3 || h->color == 6) ? 3 : 1;
    uint8_t *o = dst + (size_t)x0 * outch;
    size_t step = (size_t)dx * outch;
    uint32_t x;
    if (h->color == 3) {
        for (x = 0; x < pw; x++, o += step) {
            unsigned idx = h->depth == 8 ? row[x] : packed(row, x, h->depth);
            if (idx < plte_n) {
                o[0] = plte[3 * idx];
                o[1] = plte[3 * idx + 1];
                o[2] = plte[3 * idx + 2];
            } else {
                o[0] = o[1] = o[2] = 0;
            }
        }
        return;
    }
    if (h->depth < 8) { /* grey only */
        unsigned scale = h->depth == 1 ? 255 : h->depth == 2 ? 85 : 17;
        for (x = 0; x < pw; x++, o += step) o[0] = (uint8_t)(packed(row, x, h->depth) * scale);
        return;
    }
    /* 8 or 16 bits: the first byte of a 16-bit sample is its high byte; grey/RGB come first in the pixel. */
    size_t bps = h->depth / 8, pixel = bps * h->channels;
    const uint8_t *s = row;
    if (outch == 1) {
        for (x = 0; x < pw; x++, o += step, s += pixel) o[0] = s[0];
    } else {
        for (x = 0; x < pw; x++, o += step, s += pixel) {
            o[0] = s[0];
            o[1] = s[bps];
            o[2] = s[2 * bps];
        }
    }
}

int waft_png_decode(const uint8_t *data, size_t len, uint64_t max_pixels, waft_image *out, const char **err) {
    ihdr h;
    memset(out, 0, sizeof *out);
    if (parse_ihdr(data, len, &h, err) < 0) return -1;
    uint64_t pixels = (uint64_t)h.width * h.height;
    if (pixels > max_pixels) {
        *err = msg6("image too large: ", num(h.width), " x ", num(h.height),
                    " pixels exceeds the limit of ", num(max_pixels));
        /* msg6 stops before the unit; append it (there is room: the buffer is 160 bytes) */
        size_t n = strlen(msgbuf);
        memcpy(msgbuf + n, " pixels", 8);
        return -1;
    }

    /* Walk the chunks: collect IDAT pieces (no copying), the palette, and insist on IEND. */
    const uint8_t *plte = NULL;
    uint32_t plte_n = 0;
    waft_inflate_seg *segs = NULL;
    size_t nsegs = 0, capsegs = 0;
    int seen_idat = 0, idat_done = 0, seen_iend = 0;
    size_t pos = 8 + 25;
    while (!seen_iend) {
        uint32_t clen;
        char name[5];
        if (read_chunk(data, len, pos, &clen, name, err) < 0) goto fail;
        const uint8_t *body = data + pos + 8;
        pos += (size_t)clen + 12;
        if (strcmp(name, "IDAT") == 0) {
            if (idat_done) {
                *err = "PNG IDAT chunks are not consecutive";
                goto fail;
            }
            seen_idat = 1;
            if (clen == 0) continue;
            if (nsegs == capsegs) {
                size_t nc = capsegs ? capsegs * 2 : 16;
                if (nc > WAFT_INFLATE_MAX_SEGS) {
                    *err = "too many PNG IDAT chunks";
                    goto fail;
                }
                waft_inflate_seg *ns = realloc(segs, nc * sizeof *segs);
                if (!ns) {
                    *err = "out of memory";
                    goto fail;
                }
                segs = ns;
                capsegs = nc;
            }
            segs[nsegs].data = body;
            segs[nsegs++].len = clen;
            continue;
        }
        if (seen_idat) idat_done = 1;
        if (strcmp(name, "IEND") == 0) {
            seen_iend = 1;
        } else if (strcmp(name, "PLTE") == 0) {
            if (seen_idat || plte || clen == 0 || clen % 3 != 0 || clen > 768) {
                *err = "bad PNG PLTE chunk";
                goto fail;
            }
            plte = body;
            plte_n = clen / 3;
        } else if (strcmp(name, "IHDR") == 0) {
            *err = "duplicate PNG IHDR chunk";
            goto fail;
        } else if (name[0] >= 'A' && name[0] <= 'Z') {
            /* Critical chunks we do not know change how the image must be read: refuse them. */
            *err = msg("unsupported critical PNG chunk ", name, NULL, NULL);
            goto fail;
        }
        /* Ancillary chunks (tRNS, gAMA, text, ...) do not change convert("RGB")'s output: skipped. */
    }
    if (!seen_idat) {
        *err = "missing PNG IDAT chunk";
        goto fail;
    }
    if (h.color == 3 && !plte) {
        *err = "missing PNG PLTE chunk";
        goto fail;
    }

    uint32_t outch = (h.color == 2 || h.color == 3 || h.color == 6) ? 3 : 1;
    uint64_t out_bytes = pixels * outch;
    uint64_t bits_per_pixel = (uint64_t)h.channels * h.depth;
    uint64_t rowbytes = ((uint64_t)h.width * bits_per_pixel + 7) / 8;
    /* wasm32: sizes must fit 31 bits (a 2 GiB buffer would not fit the 4 GiB address space twice). */
    if (out_bytes > 0x7FFFFFFFu || rowbytes > 0x3FFFFFFFu) {
        *err = msg("image too large: ", num(h.width), " x ", num(h.height));
        goto fail;
    }
    uint8_t *pix = malloc((size_t)out_bytes);
    uint8_t *rows = malloc(2 * ((size_t)rowbytes + 1));
    waft_inflate *z = waft_inflate_new(segs, nsegs, 1);
    if (!pix || !rows || !z) {
        free(pix);
        free(rows);
        waft_inflate_free(z);
        *err = msg6("out of memory decoding a ", num(h.width), " x ", num(h.height), " image", NULL);
        goto fail;
    }
    size_t bpp = bits_per_pixel < 8 ? 1 : (size_t)(bits_per_pixel / 8);
    static const uint8_t A7[7][4] = {{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4},
                                     {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2}};
    static const uint8_t NONE[1][4] = {{0, 0, 1, 1}};
    const uint8_t(*passes)[4] = h.interlace ? A7 : NONE;
    int npasses = h.interlace ? 7 : 1;
    const char *e = NULL;
    for (int p = 0; p < npasses && !e; p++) {
        uint32_t x0 = passes[p][0], y0 = passes[p][1], dx = passes[p][2], dy = passes[p][3];
        if (h.width <= x0 || h.height <= y0) continue; /* empty pass: no rows at all in the stream */
        uint32_t pw = (h.width - x0 + dx - 1) / dx, ph = (h.height - y0 + dy - 1) / dy;
        size_t rb = (size_t)(((uint64_t)pw * bits_per_pixel + 7) / 8);
        uint8_t *prev = rows, *cur = rows + rowbytes + 1;
        memset(prev, 0, rb + 1);
        for (uint32_t j = 0; j < ph; j++) {
            size_t got = waft_inflate_read(z, cur, rb + 1);
            if (got != rb + 1) {
                e = waft_inflate_error(z) ? msg("bad PNG zlib data: ", waft_inflate_error(z), NULL, NULL)
                                          : "truncated PNG image data";
                break;
            }
            if (unfilter(cur[0], cur + 1, prev + 1, rb, bpp) < 0) {
                e = msg("bad PNG filter type ", num(cur[0]), NULL, NULL);
                break;
            }
            emit_row(&h, cur + 1, pw, pix + ((size_t)(y0 + (size_t)j * dy) * h.width) * outch, x0, dx,
                     plte, plte_n);
            uint8_t *t = prev;
            prev = cur;
            cur = t;
        }
    }
    if (!e) {
        /* Drain to the end of the zlib stream so the Adler-32 is checked; tolerate a little surplus. */
        size_t surplus = 0;
        while (!waft_inflate_done(z) && !waft_inflate_error(z) && surplus <= MAX_SURPLUS) {
            size_t k = waft_inflate_read(z, rows, (size_t)rowbytes + 1);
            if (k == 0 && !waft_inflate_done(z) && !waft_inflate_error(z)) break;
            surplus += k;
        }
        if (waft_inflate_error(z)) e = msg("bad PNG zlib data: ", waft_inflate_error(z), NULL, NULL);
        else if (!waft_inflate_done(z)) e = "too much PNG image data";
    }
    waft_inflate_free(z);
    free(rows);
    free(segs);
    if (e) {
        free(pix);
        *err = e;
        return -1;
    }
    out->width = h.width;
    out->height = h.height;
    out->channels = outch;
    out->pixels = pix;
    return 0;

fail:
    free(segs);
    return -1;
}
