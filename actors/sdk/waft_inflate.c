/* DEFLATE / zlib decompression: see waft_inflate.h for the contract.
 *
 * Structure follows RFC 1951 directly (and zlib's `puff.c` for the Huffman checks), made resumable on
 * the *output* side: the whole compressed input is in memory, so the only place decoding pauses is when
 * the caller's buffer is full. The state that has to survive a pause is small: the block mode, the
 * remaining stored length, or a pending back-reference (length, distance).
 */
#include "waft_inflate.h"

#include <stdlib.h>
#include <string.h>

#define MAXBITS 15      /* longest code allowed by DEFLATE */
#define MAXLCODES 286   /* literal/length symbols that may have a length */
#define MAXDCODES 30    /* distance symbols */
#define FIXLCODES 288   /* the fixed code assigns lengths to 288 symbols */
#define FASTBITS 9      /* one table lookup decodes any code of up to 9 bits */
#define WSIZE 32768u    /* DEFLATE distances reach at most 32768 bytes back */

typedef struct {
    uint16_t count[MAXBITS + 1]; /* codes of each length (count[0]: unused symbols) */
    uint16_t symbol[FIXLCODES];  /* symbols in canonical order */
    /* Fast path: indexed by the next FASTBITS input bits (LSB first); entry = len << 9 | symbol, 0 = use
     * the bit-by-bit canonical decode (the code is longer than FASTBITS, or not assigned). */
    uint16_t fast[1u << FASTBITS];
} huffman;

enum { M_HEADER, M_STORED, M_HUFF, M_TRAILER, M_DONE, M_ERROR };

struct waft_inflate {
    waft_inflate_seg *segs;
    size_t nsegs, seg, pos;   /* reading position: segment index, byte within it */
    size_t taken;             /* bytes pulled from the segments into the bit buffer */
    uint64_t bitbuf;          /* pending input bits, LSB first */
    unsigned bitcnt;
    int mode, last, zlib;
    uint32_t stored_left;
    uint32_t match_len, match_dist;
    uint64_t total;           /* bytes output so far (bounds back-references) */
    uint32_t adler;
    const char *err;
    huffman lencode, distcode;
    uint8_t window[WSIZE];
};

/* ---- checksums ------------------------------------------------------------------------------- */

uint32_t waft_adler32(uint32_t adler, const uint8_t *data, size_t len) {
    uint32_t a = adler & 0xFFFF, b = adler >> 16;
    while (len) {
        /* 5552 is the most bytes that cannot overflow b before the modulo (zlib's NMAX). */
        size_t n = len < 5552 ? len : 5552;
        len -= n;
        while (n--) {
            a += *data++;
            b += a;
        }
        a %= 65521;
        b %= 65521;
    }
    return (b << 16) | a;
}

static uint32_t crc_table[256];
static int crc_ready;

uint32_t waft_crc32(uint32_t crc, const uint8_t *data, size_t len) {
    if (!crc_ready) {
        for (uint32_t n = 0; n < 256; n++) {
            uint32_t c = n;
            for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            crc_table[n] = c;
        }
        crc_ready = 1;
    }
    crc = ~crc;
    for (size_t i = 0; i < len; i++) crc = crc_table[(crc ^ data[i]) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

/* ---- input bits ------------------------------------------------------------------------------ */

static int fail(waft_inflate *s, const char *msg) {
    if (!s->err) s->err = msg;
    s->mode = M_ERROR;
    return -1;
}

/* Top the bit buffer up to at least 57 bits, or with everything that is left. */
static void fill(waft_inflate *s) {
    /* Fast path: 8 readable bytes in the current segment -> take as many whole bytes as fit at once.
     * Only those bytes are kept (masked): bits above bitcnt must stay zero for the next OR. */
    if (s->bitcnt <= 56 && s->seg < s->nsegs && s->segs[s->seg].len - s->pos >= 8) {
        uint64_t v = 0;
        const uint8_t *p = s->segs[s->seg].data + s->pos;
        for (int i = 7; i >= 0; i--) v = v << 8 | p[i]; /* little-endian load; clang folds it to one */
        unsigned take = (63 - s->bitcnt) >> 3;
        s->bitbuf |= (v & ((1ull << (take * 8)) - 1)) << s->bitcnt;
        s->bitcnt += take * 8;
        s->pos += take;
        s->taken += take;
        return;
    }
    while (s->bitcnt <= 56) {
        while (s->seg < s->nsegs && s->pos >= s->segs[s->seg].len) {
            s->seg++;
            s->pos = 0;
        }
        if (s->seg >= s->nsegs) return;
        s->bitbuf |= (uint64_t)s->segs[s->seg].data[s->pos++] << s->bitcnt;
        s->bitcnt += 8;
        s->taken++;
    }
}

/* n <= 32 bits, or -1 (and the error set) when the input ends first. */
static int64_t getbits(waft_inflate *s, unsigned n) {
    if (s->bitcnt < n) {
        fill(s);
        if (s->bitcnt < n) return fail(s, "unexpected end of compressed data");
    }
    uint64_t v = s->bitbuf & ((n == 64 ? 0 : (1ull << n)) - 1);
    s->bitbuf >>= n;
    s->bitcnt -= n;
    return (int64_t)v;
}

/* ---- Huffman codes --------------------------------------------------------------------------- */

/* Build `h` from code lengths. Returns 0 for a complete code, > 0 for an incomplete one (the caller
 * decides whether that is allowed), < 0 for an over-subscribed one (always invalid). */
static int construct(huffman *h, const uint8_t *length, int n) {
    uint16_t offs[MAXBITS + 1];
    memset(h->count, 0, sizeof h->count);
    for (int sym = 0; sym < n; sym++) h->count[length[sym]]++;
    memset(h->fast, 0, sizeof h->fast);
    if (h->count[0] == n) return 0; /* no codes: complete, but any decode will fail */
    int left = 1;
    for (int len = 1; len <= MAXBITS; len++) {
        left <<= 1;
        left -= h->count[len];
        if (left < 0) return -1;
    }
    offs[1] = 0;
    for (int len = 1; len < MAXBITS; len++) offs[len + 1] = offs[len] + h->count[len];
    for (int sym = 0; sym < n; sym++)
        if (length[sym] != 0) h->symbol[offs[length[sym]]++] = (uint16_t)sym;

    /* Fast table: walk the canonical codes in order, reverse each (DEFLATE sends codes MSB first but
     * we read bits LSB first) and fill every table slot whose low `len` bits match. */
    unsigned code = 0, index = 0;
    for (unsigned len = 1; len <= MAXBITS; len++) {
        for (unsigned k = 0; k < h->count[len]; k++, index++, code++) {
            if (len > FASTBITS) continue;
            unsigned rev = 0;
            for (unsigned b = 0; b < len; b++) rev |= ((code >> b) & 1u) << (len - 1 - b);
            for (unsigned slot = rev; slot < (1u << FASTBITS); slot += 1u << len)
                h->fast[slot] = (uint16_t)(len << 9 | h->symbol[index]);
        }
        code <<= 1;
    }
    return left;
}

/* Next symbol, or -1 with the error set. */
static int decode(waft_inflate *s, const huffman *h) {
    if (s->bitcnt < MAXBITS) fill(s);
    uint16_t e = h->fast[s->bitbuf & ((1u << FASTBITS) - 1)];
    if (e && (unsigned)(e >> 9) <= s->bitcnt) {
        s->bitbuf >>= e >> 9;
        s->bitcnt -= e >> 9;
        return e & 0x1FF;
    }
    /* Canonical decode one bit at a time (puff's decode()): codes longer than FASTBITS, and the end of
     * the input where fewer than FASTBITS bits are left. */
    int code = 0, first = 0, index = 0;
    for (int len = 1; len <= MAXBITS; len++) {
        int64_t bit = getbits(s, 1);
        if (bit < 0) return -1;
        code |= (int)bit;
        int count = h->count[len];
        if (code - count < first) return h->symbol[index + (code - first)];
        index += count;
        first += count;
        first <<= 1;
        code <<= 1;
    }
    return fail(s, "invalid Huffman code");
}

static const uint16_t LBASE[29] = {3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31,
                                   35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
static const uint8_t LEXT[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2,
                                 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
static const uint16_t DBASE[30] = {1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193,
                                   257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145,
                                   8193, 12289, 16385, 24577};
static const uint8_t DEXT[30] = {0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6,
                                 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};

static void fixed_tables(waft_inflate *s) {
    uint8_t lengths[FIXLCODES];
    int sym = 0;
    for (; sym < 144; sym++) lengths[sym] = 8;
    for (; sym < 256; sym++) lengths[sym] = 9;
    for (; sym < 280; sym++) lengths[sym] = 7;
    for (; sym < FIXLCODES; sym++) lengths[sym] = 8;
    construct(&s->lencode, lengths, FIXLCODES);
    for (sym = 0; sym < MAXDCODES; sym++) lengths[sym] = 5;
    construct(&s->distcode, lengths, MAXDCODES);
}

static int dynamic_tables(waft_inflate *s) {
    static const uint8_t order[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};
    uint8_t lengths[MAXLCODES + MAXDCODES];
    int64_t v;
    if ((v = getbits(s, 14)) < 0) return -1;
    int nlen = (int)(v & 31) + 257, ndist = (int)((v >> 5) & 31) + 1, ncode = (int)(v >> 10) + 4;
    if (nlen > MAXLCODES || ndist > MAXDCODES) return fail(s, "too many length or distance symbols");

    int index = 0;
    for (; index < ncode; index++) {
        if ((v = getbits(s, 3)) < 0) return -1;
        lengths[order[index]] = (uint8_t)v;
    }
    for (; index < 19; index++) lengths[order[index]] = 0;
    /* The code-length code must be complete: an incomplete one cannot describe the lengths. */
    if (construct(&s->lencode, lengths, 19) != 0) return fail(s, "invalid code lengths set");

    index = 0;
    while (index < nlen + ndist) {
        int sym = decode(s, &s->lencode);
        if (sym < 0) return -1;
        if (sym < 16) {
            lengths[index++] = (uint8_t)sym;
            continue;
        }
        uint8_t len = 0;
        int rep;
        if (sym == 16) {
            if (index == 0) return fail(s, "invalid bit length repeat");
            len = lengths[index - 1];
            if ((v = getbits(s, 2)) < 0) return -1;
            rep = 3 + (int)v;
        } else if (sym == 17) {
            if ((v = getbits(s, 3)) < 0) return -1;
            rep = 3 + (int)v;
        } else {
            if ((v = getbits(s, 7)) < 0) return -1;
            rep = 11 + (int)v;
        }
        if (index + rep > nlen + ndist) return fail(s, "invalid bit length repeat");
        while (rep--) lengths[index++] = len;
    }
    if (lengths[256] == 0) return fail(s, "invalid code -- missing end-of-block");

    /* Incomplete codes are allowed only for a single code of length 1 (as zlib and puff do). */
    int err = construct(&s->lencode, lengths, nlen);
    if (err < 0 || (err > 0 && nlen - s->lencode.count[0] != 1))
        return fail(s, "invalid literal/lengths set");
    err = construct(&s->distcode, lengths + nlen, ndist);
    if (err < 0 || (err > 0 && ndist - s->distcode.count[0] != 1))
        return fail(s, "invalid distances set");
    return 0;
}

/* ---- the decoder ----------------------------------------------------------------------------- */

waft_inflate *waft_inflate_new(const waft_inflate_seg *segs, size_t nsegs, int zlib) {
    if (nsegs > WAFT_INFLATE_MAX_SEGS) return NULL;
    waft_inflate *s = malloc(sizeof *s);
    if (!s) return NULL;
    memset(s, 0, offsetof(waft_inflate, window)); /* the window needs no clearing: distances are checked */
    s->segs = malloc((nsegs ? nsegs : 1) * sizeof *segs);
    if (!s->segs) {
        free(s);
        return NULL;
    }
    if (nsegs) memcpy(s->segs, segs, nsegs * sizeof *segs);
    s->nsegs = nsegs;
    s->zlib = zlib;
    s->adler = 1;
    s->mode = M_HEADER;
    if (zlib) {
        int64_t v = getbits(s, 16);
        if (v >= 0) {
            unsigned cmf = (unsigned)(v & 0xFF), flg = (unsigned)(v >> 8);
            if ((cmf & 0x0F) != 8) fail(s, "unknown compression method");
            else if ((cmf >> 4) > 7) fail(s, "invalid window size");
            else if ((cmf * 256 + flg) % 31 != 0) fail(s, "incorrect header check");
            else if (flg & 0x20) fail(s, "preset dictionary not supported");
        }
    }
    return s;
}

void waft_inflate_free(waft_inflate *s) {
    if (!s) return;
    free(s->segs);
    free(s);
}

int waft_inflate_done(const waft_inflate *s) { return s->mode == M_DONE; }
const char *waft_inflate_error(const waft_inflate *s) { return s->err; }
size_t waft_inflate_consumed(const waft_inflate *s) { return s->taken - s->bitcnt / 8; }

static inline void put(waft_inflate *s, uint8_t *out, size_t *n, uint8_t byte) {
    out[(*n)++] = byte;
    s->window[s->total++ & (WSIZE - 1)] = byte;
}

static int block_header(waft_inflate *s) {
    int64_t v = getbits(s, 3);
    if (v < 0) return -1;
    s->last = (int)(v & 1);
    switch (v >> 1) {
    case 0: {
        /* Stored: skip to a byte boundary; what is left in the bit buffer is whole bytes. */
        s->bitbuf >>= s->bitcnt & 7;
        s->bitcnt -= s->bitcnt & 7;
        int64_t len = getbits(s, 16), nlen = getbits(s, 16);
        if (len < 0 || nlen < 0) return -1;
        if (len != (~nlen & 0xFFFF)) return fail(s, "invalid stored block lengths");
        s->stored_left = (uint32_t)len;
        s->mode = M_STORED;
        return 0;
    }
    case 1:
        fixed_tables(s);
        s->mode = M_HUFF;
        return 0;
    case 2:
        if (dynamic_tables(s) < 0) return -1;
        s->mode = M_HUFF;
        return 0;
    default:
        return fail(s, "invalid block type");
    }
}

size_t waft_inflate_read(waft_inflate *s, uint8_t *out, size_t want) {
    size_t n = 0, checked = 0; /* out[0..checked) is already in the Adler-32 */
    while (n < want || s->mode == M_TRAILER) {
        if (s->mode == M_ERROR || s->mode == M_DONE) break;
        if (s->mode == M_HEADER) {
            if (s->last) {
                s->mode = s->zlib ? M_TRAILER : M_DONE;
                continue;
            }
            if (block_header(s) < 0) break;
        } else if (s->mode == M_STORED) {
            while (s->stored_left && n < want) {
                if (s->bitcnt >= 8) { /* bytes already in the bit buffer come first */
                    put(s, out, &n, (uint8_t)s->bitbuf);
                    s->bitbuf >>= 8;
                    s->bitcnt -= 8;
                    s->stored_left--;
                    continue;
                }
                while (s->seg < s->nsegs && s->pos >= s->segs[s->seg].len) {
                    s->seg++;
                    s->pos = 0;
                }
                if (s->seg >= s->nsegs) {
                    fail(s, "unexpected end of compressed data");
                    break;
                }
                size_t k = s->segs[s->seg].len - s->pos;
                if (k > s->stored_left) k = s->stored_left;
                if (k > want - n) k = want - n;
                const uint8_t *src = s->segs[s->seg].data + s->pos;
                memcpy(out + n, src, k);
                for (size_t i = 0; i < k; i++) s->window[(s->total + i) & (WSIZE - 1)] = src[i];
                s->total += k;
                n += k;
                s->pos += k;
                s->taken += k;
                s->stored_left -= (uint32_t)k;
            }
            if (s->mode == M_ERROR) break;
            if (!s->stored_left) s->mode = M_HEADER;
        } else if (s->mode == M_HUFF) {
            if (s->match_len) {
                uint32_t k = s->match_len;
                if (k > want - n) k = (uint32_t)(want - n);
                /* Copy from the caller's buffer when the source is there (the usual case): no ring
                 * masking on the read; overlapping copies (dist < len) work byte by byte as required. */
                if (s->match_dist <= n) {
                    const uint8_t *from = out + n - s->match_dist;
                    for (uint32_t i = 0; i < k; i++) out[n + i] = from[i];
                    for (uint32_t i = 0; i < k; i++) s->window[(s->total + i) & (WSIZE - 1)] = out[n + i];
                    s->total += k;
                    n += k;
                } else {
                    for (uint32_t i = 0; i < k; i++)
                        put(s, out, &n, s->window[(s->total - s->match_dist) & (WSIZE - 1)]);
                }
                s->match_len -= k;
                continue;
            }
            int sym = decode(s, &s->lencode);
            if (sym < 0) break;
            if (sym < 256) {
                put(s, out, &n, (uint8_t)sym);
            } else if (sym == 256) {
                s->mode = M_HEADER;
            } else {
                sym -= 257;
                if (sym >= 29) {
                    fail(s, "invalid literal/length code");
                    break;
                }
                int64_t e = getbits(s, LEXT[sym]);
                if (e < 0) break;
                uint32_t len = LBASE[sym] + (uint32_t)e;
                int dsym = decode(s, &s->distcode);
                if (dsym < 0) break;
                if (dsym >= 30) {
                    fail(s, "invalid distance code");
                    break;
                }
                e = getbits(s, DEXT[dsym]);
                if (e < 0) break;
                uint32_t dist = DBASE[dsym] + (uint32_t)e;
                if (dist > s->total) {
                    fail(s, "invalid distance too far back");
                    break;
                }
                s->match_len = len;
                s->match_dist = dist;
            }
        } else { /* M_TRAILER: Adler-32 of everything output, big-endian, byte aligned */
            s->adler = waft_adler32(s->adler, out + checked, n - checked);
            checked = n;
            s->bitbuf >>= s->bitcnt & 7;
            s->bitcnt -= s->bitcnt & 7;
            int64_t hi = getbits(s, 16), lo = getbits(s, 16);
            if (hi < 0 || lo < 0) break;
            uint32_t want_adler = (uint32_t)(((hi & 0xFF) << 24) | ((hi >> 8) << 16) | ((lo & 0xFF) << 8) | (lo >> 8));
            if (want_adler != s->adler) {
                fail(s, "incorrect data check");
                break;
            }
            s->mode = M_DONE;
        }
    }
    if (s->zlib && checked < n) s->adler = waft_adler32(s->adler, out + checked, n - checked);
    return n;
}

int waft_inflate_buffer(const uint8_t *in, size_t in_len, int zlib, uint8_t *out, size_t cap,
                        size_t *out_len, const char **err) {
    waft_inflate_seg seg = {in, in_len};
    waft_inflate *s = waft_inflate_new(&seg, 1, zlib);
    *out_len = 0;
    if (!s) {
        *err = "out of memory";
        return -1;
    }
    size_t n = waft_inflate_read(s, out, cap);
    int rc = 0;
    if (waft_inflate_error(s)) {
        *err = waft_inflate_error(s);
        rc = -1;
    } else if (!waft_inflate_done(s)) {
        /* Full buffer: the stream must end now, without producing another byte. */
        uint8_t extra;
        if (waft_inflate_read(s, &extra, 1) != 0) {
            *err = "output larger than the buffer";
            rc = -1;
        } else if (waft_inflate_error(s)) {
            *err = waft_inflate_error(s);
            rc = -1;
        }
    }
    *out_len = n;
    waft_inflate_free(s);
    return rc;
}
