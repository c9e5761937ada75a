/* JPEG decoder (ITU T.81 Huffman: baseline, extended sequential, progressive) for the pre-processor.
 *
 * Design, and why:
 *  - Every read of the input goes through a bounds check: the bytes come from HTTP clients. Errors are
 *    returned as static strings (no setjmp/longjmp: wasm32 would need exception handling for that),
 *    and all allocations are released on every path, so a failed decode leaves the instance as it was.
 *  - Sizes are computed in 64 bits and checked against `max_pixels` before anything large is
 *    allocated; every big buffer is allocated once at its final size (zig's wasm malloc rounds to
 *    powers of two and never coalesces, see docs/actors.md).
 *  - Pixels are meant to agree with Pillow (libjpeg-turbo): the IDCTs are jidctint.c's jpeg_idct_islow
 *    and jidctred.c's 4x4/2x2/1x1 reduced IDCTs, computed in 64-bit like libjpeg's JLONG on 64-bit
 *    hosts (so hostile coefficients cannot overflow: no undefined behaviour); the chroma planes are
 *    scaled up by IDCT where libjpeg does so (scaled decodes), and otherwise "fancy" (triangle)
 *    upsampled exactly as jdsample.c does; YCbCr -> RGB uses jdcolor.c's fixed-point tables.
 *  - Baseline scans are turned into pixels block by block (no coefficient buffer: a 1/8 decode of a
 *    big baseline photo needs only 1/64 of the memory); progressive scans keep all coefficients
 *    (int16, what refinement scans need) and run the IDCT after EOI.
 *  - EXIF orientation is applied while writing the output (one linear index map per orientation), so
 *    rotation costs no second buffer.
 */
#include "jpeg.h"

#include <stdlib.h>
#include <string.h>

#define MAX_COMPS 4
#define FAST_BITS 11 /* Huffman look-up width; at most 11, so that fast_ac values stay within +-1023 */
/* Each scan walks every block of its components, and a scan can be a dozen bytes (EOB runs), so a
 * small hostile file with thousands of scans could burn CPU for seconds; real encoders write <= ~60. */
#define MAX_SCANS 512
/* Block decodes per block of the image, over all its scans. libjpeg's progressive script visits a luma block
 * 6 times and a chroma block 4; a 38 KB file of ~500 refinement scans over a 7071x7071 image asked for ~80
 * and held an instance for its whole deadline. Checked before each scan, so the refusal comes early. */
#define MAX_VISITS_PER_BLOCK 32

/* Zigzag index -> natural (row-major) index. 16 extra entries of 63 so that a corrupt run that
 * overshoots position 63 still indexes inside the table (we also reject it explicitly). */
static const uint8_t ZZ[64 + 16] = {
    0,  1,  8,  16, 9,  2,  3,  10, 17, 24, 32, 25, 18, 11, 4,  5,  12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13,
    6,  7,  14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31,
    39, 46, 53, 60, 61, 54, 47, 55, 62, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63};

/* ---- error messages (static storage: the caller keeps the pointer) ------------------------------ */
#define E_NOT_JPEG "not a JPEG file (no SOI marker)"
#define E_EMPTY "empty JPEG input"
#define E_TRUNC_HDR "truncated JPEG header"
#define E_TRUNC_SCAN "truncated JPEG scan"
#define E_TRUNC_EOI "truncated JPEG: missing scans or end-of-image marker"
#define E_ARITH "unsupported JPEG: arithmetic coding"
#define E_LOSSLESS "unsupported JPEG: lossless coding"
#define E_HIER "unsupported JPEG: hierarchical coding"
#define E_12BIT "unsupported JPEG: 12-bit precision"
#define E_16BIT "unsupported JPEG: 16-bit precision"
#define E_PREC "corrupt JPEG: bad sample precision"
#define E_DNL "unsupported JPEG: height defined by a DNL marker"
#define E_NCOMP "unsupported JPEG: only 1, 3 or 4 components are supported"
#define E_SAMPLING "unsupported JPEG: sampling factors that are not whole multiples of each other"
#define E_MARKER "unsupported JPEG: unknown marker"
#define E_BAD_HUFF "corrupt JPEG: bad Huffman code"
#define E_BAD_HTABLE "corrupt JPEG: bad Huffman table"
#define E_NO_HTABLE "corrupt JPEG: scan uses an undefined Huffman table"
#define E_BAD_QTABLE "corrupt JPEG: bad quantization table"
#define E_NO_QTABLE "corrupt JPEG: component uses an undefined quantization table"
#define E_BAD_SOF "corrupt JPEG: bad frame header"
#define E_TWO_SOF "corrupt JPEG: more than one frame header"
#define E_BAD_SOS "corrupt JPEG: bad scan header"
#define E_SOS_FIRST "corrupt JPEG: scan before frame header"
#define E_BAD_PROG "corrupt JPEG: bad progressive scan parameters"
#define E_BAD_DRI "corrupt JPEG: bad restart interval"
#define E_BAD_LEN "corrupt JPEG: bad marker segment length"
#define E_COEF "corrupt JPEG: coefficient index out of range"
#define E_RST "corrupt JPEG: missing restart marker"
#define E_NO_FRAME "corrupt JPEG: no frame header before end of image"
#define E_NO_SCAN "corrupt JPEG: no image data"
#define E_SOI "corrupt JPEG: unexpected SOI marker"
#define E_SCANS "unsupported JPEG: more than 512 scans"
#define E_WORK "unsupported JPEG: its scans decode each block more than 32 times on average (a real encoder needs <= 6)"
#define E_SCALE "invalid JPEG scale (must be 1, 2, 4 or 8)"
#define E_ARGS "invalid arguments to the JPEG decoder"
#define E_OOM "out of memory decoding JPEG"

/* "JPEG too large: N pixels exceeds the limit of M": needs numbers, so it is built here. */
static char too_large_msg[96];

static char *put_u64(char *p, char *end, uint64_t v) {
    char tmp[20];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v && n < 20);
    while (n && p < end) *p++ = tmp[--n];
    return p;
}

static char *put_str(char *p, char *end, const char *s) {
    while (*s && p < end) *p++ = *s++;
    return p;
}

static const char *too_large(uint64_t pixels, uint64_t limit) {
    char *p = too_large_msg, *end = too_large_msg + sizeof too_large_msg - 1;
    p = put_str(p, end, "JPEG too large: ");
    p = put_u64(p, end, pixels);
    p = put_str(p, end, " pixels exceeds the limit of ");
    p = put_u64(p, end, limit);
    *p = 0;
    return too_large_msg;
}

/* ---- structures ---------------------------------------------------------------------------------- */

typedef struct {
    uint16_t fast[1 << FAST_BITS]; /* (length << 8) | symbol for codes <= FAST_BITS long; 0 = not there */
    /* AC tables: code + magnitude bits together <= FAST_BITS decode in one look-up (as stb_image does):
     * ((value + 1024) << 8) | (run << 4) | total bits; 0 = take the general path. */
    uint32_t fast_ac[1 << FAST_BITS];
    int32_t maxcode[18];           /* largest code of each length, -1 when none (T.81 F.2.2.3) */
    int32_t valoff[17];            /* vals index = valoff[l] + code, for codes of length l */
    uint8_t vals[256];
    uint16_t nvals;
    uint8_t defined;
} huff_t;

typedef struct {
    int id, h, v, tq;
    int td, ta;             /* Huffman table selectors of the current scan */
    uint32_t bw, bh;        /* blocks allocated: the MCU grid of an interleaved scan (>= nbw, nbh) */
    uint32_t nbw, nbh;      /* blocks a non-interleaved scan codes: ceil(component samples / 8) */
    uint32_t ss;            /* IDCT output size (8, 4, 2, 1) of this component */
    uint32_t stride, ph;    /* plane: bw*ss bytes per row, bh*ss rows */
    uint32_t dw, dh;        /* samples that are real image (not MCU padding) at this scale */
    uint32_t hexp, vexp;    /* upsampling factors from plane to output */
    int32_t dcpred;
    int16_t *coefs;         /* progressive: bw*bh blocks of 64, natural order */
    uint64_t *nzmap;        /* progressive: a bit per block, set once it has a non-zero AC coefficient */
    uint8_t *plane;
    uint8_t *row;           /* scratch for one upsampled row */
    uint16_t q[64];         /* quantization table latched at this component's first scan (as libjpeg) */
    int qlatched;
    int scanned;            /* baseline: a scan of this component ran to completion */
} comp_t;

typedef struct {
    const uint8_t *p, *end;
    uint64_t buf; /* bits, MSB first */
    int cnt;      /* valid bits in buf (the rest are zero) */
    uint32_t pad; /* zero bytes fed in after the data stopped */
    int stop;     /* 1 once a marker or the end of input was reached */
    int eof;      /* the stop was the end of input (a truncated file), not a marker */
} bitreader;

typedef struct {
    const uint8_t *data;
    size_t len, pos;
    const char *err;
    uint32_t scale;
    uint64_t max_pixels;
    int info_only;

    int frame, progressive, ncomp, hmax, vmax;
    uint32_t W, H, mcux, mcuy;
    comp_t c[MAX_COMPS];
    uint16_t qt[4][64];
    uint8_t qdef[4];
    huff_t hdc[4], hac[4];
    uint32_t dri;
    int saw_jfif, saw_adobe, adobe_transform, saw_exif;
    uint32_t orientation;
    int allocated, scans;
    uint64_t visits; /* block decodes of the scans so far (the work budget) */

    /* current scan */
    int ns;
    comp_t *sc[MAX_COMPS];
    int Ss, Se, Ah, Al;
    uint32_t eobrun;
    bitreader br;
} dec_t;

/* ---- byte-level helpers -------------------------------------------------------------------------- */

static uint32_t rd16(const uint8_t *p) { return (uint32_t)p[0] << 8 | p[1]; }

/* Next marker code at or after d->pos, skipping garbage and fill bytes (libjpeg does the same, with a
 * warning); d->pos is left just after the code. -1 at the end of input. */
static int next_marker(dec_t *d) {
    while (d->pos < d->len) {
        if (d->data[d->pos] != 0xFF) {
            d->pos++;
            continue;
        }
        size_t p = d->pos + 1;
        while (p < d->len && d->data[p] == 0xFF) p++; /* fill bytes */
        if (p >= d->len) break;
        uint8_t m = d->data[p];
        d->pos = p + 1;
        if (m != 0) return m; /* 0xFF00 is a stuffed data byte, not a marker */
    }
    d->pos = d->len;
    return -1;
}

/* ---- Huffman tables ------------------------------------------------------------------------------ */

/* T.81 F.2.2.1 EXTEND: an s-bit value with a leading 0 is negative. s in 1..16. */
static inline int32_t extend(uint32_t v, int s) {
    return v < (1u << (s - 1)) ? (int32_t)v - (int32_t)((1u << s) - 1) : (int32_t)v;
}

static int build_huff(huff_t *h, const uint8_t counts[17], const uint8_t *vals, int nvals) {
    memset(h, 0, sizeof *h);
    memcpy(h->vals, vals, (size_t)nvals);
    h->nvals = (uint16_t)nvals;
    uint32_t code = 0;
    int k = 0;
    for (int l = 1; l <= 16; l++) {
        h->valoff[l] = k - (int32_t)code;
        for (int i = 0; i < counts[l]; i++) {
            /* Canonical codes must fit in l bits; an over-full table is corrupt. */
            if (code >= (1u << l)) return -1;
            if (l <= FAST_BITS) {
                uint32_t first = code << (FAST_BITS - l), n = 1u << (FAST_BITS - l);
                for (uint32_t j = 0; j < n; j++) h->fast[first + j] = (uint16_t)(l << 8 | vals[k]);
            }
            code++;
            k++;
        }
        h->maxcode[l] = counts[l] ? (int32_t)code - 1 : -1;
        code <<= 1;
    }
    h->maxcode[17] = 0x7fffffff;
    for (uint32_t i = 0; i < (1u << FAST_BITS); i++) {
        uint32_t e = h->fast[i];
        if (!e) continue;
        uint32_t len = e >> 8, sym = e & 0xFF, run = sym >> 4, mag = sym & 15;
        if (mag == 0 || len + mag > FAST_BITS) continue;
        uint32_t bits = ((i << len) & ((1u << FAST_BITS) - 1)) >> (FAST_BITS - mag);
        int32_t v = extend(bits, (int)mag); /* |v| < 2^10 here: the offset keeps it positive */
        h->fast_ac[i] = (uint32_t)(v + 1024) << 8 | run << 4 | (len + mag);
    }
    h->defined = 1;
    return 0;
}

/* ---- bit reader ---------------------------------------------------------------------------------- */

static void br_init(bitreader *br, const uint8_t *p, const uint8_t *end) {
    br->p = p;
    br->end = end;
    br->buf = 0;
    br->cnt = 0;
    br->pad = 0;
    br->stop = 0;
    br->eof = 0;
}

/* Top the buffer up to > 56 bits. Stuffed 0xFF00 becomes 0xFF; at a marker or the end of the input it
 * feeds zero bytes and counts them (`pad`), so decoding never reads past the data and we can tell
 * afterwards whether real bits ran out (br_overran). br->p stays on the marker's 0xFF. */
static inline void br_fill(bitreader *br) {
    if (br->cnt > 56) return;
    /* Fast path: the next 8 bytes hold no 0xFF (so no stuffing and no marker): take as many whole bytes as
     * fit in one go, exactly what the byte loop below would take. */
    if (!br->stop && br->end - br->p >= 8) {
        uint64_t v;
        memcpy(&v, br->p, 8);
        uint64_t inv = ~v;
        if (((inv - 0x0101010101010101ull) & ~inv & 0x8080808080808080ull) == 0) {
            uint64_t be = __builtin_bswap64(v);
            int n = (64 - br->cnt) >> 3; /* 1..8 whole bytes */
            uint64_t take = n == 8 ? be : be >> (64 - 8 * n);
            br->buf |= take << (64 - br->cnt - 8 * n);
            br->p += n;
            br->cnt += 8 * n;
            return;
        }
    }
    while (br->cnt <= 56) {
        uint32_t b = 0;
        if (!br->stop) {
            if (br->p >= br->end) {
                br->stop = br->eof = 1;
            } else if (*br->p != 0xFF) {
                b = *br->p++;
            } else if (br->p + 1 >= br->end) {
                br->stop = br->eof = 1; /* a lone 0xFF as the last byte: the rest is missing */
            } else if (br->p[1] == 0x00) {
                b = 0xFF;
                br->p += 2;
            } else {
                br->stop = 1; /* a marker (or fill bytes before one): the scan's data ends here */
            }
        }
        if (br->stop) br->pad++;
        br->buf |= (uint64_t)b << (56 - br->cnt);
        br->cnt += 8;
    }
}

/* 1 when the decoder has consumed bits that were padding, i.e. the coded data was too short. */
static inline int br_overran(const bitreader *br) { return (int64_t)br->pad * 8 > (int64_t)br->cnt; }

/* n in 1..16; the caller has filled the buffer (>= 57 bits after br_fill). */
static inline uint32_t br_bits(bitreader *br, int n) {
    uint32_t v = (uint32_t)(br->buf >> (64 - n));
    br->buf <<= n;
    br->cnt -= n;
    return v;
}

static inline uint32_t br_bit(bitreader *br) {
    if (br->cnt < 1) br_fill(br);
    return br_bits(br, 1);
}

/* Decode one Huffman symbol; needs >= 16 bits in the buffer. -1 for a code not in the table. */
static inline int huff_decode(bitreader *br, const huff_t *h) {
    uint32_t e = h->fast[br->buf >> (64 - FAST_BITS)];
    if (e) {
        int l = (int)(e >> 8);
        br->buf <<= l;
        br->cnt -= l;
        return (int)(e & 0xFF);
    }
    uint32_t code = (uint32_t)(br->buf >> 48);
    for (int l = FAST_BITS + 1; l <= 16; l++) {
        int32_t c = (int32_t)(code >> (16 - l));
        if (c <= h->maxcode[l]) {
            int32_t idx = h->valoff[l] + c;
            if (idx < 0 || idx >= h->nvals) return -1;
            br->buf <<= l;
            br->cnt -= l;
            return h->vals[idx];
        }
    }
    return -1;
}

/* ---- IDCTs (libjpeg-turbo jidctint.c / jidctred.c, bit-exact; int64 so nothing can overflow) ------ */

#define CONST_BITS 13
#define PASS1_BITS 2
#define DESCALE(x, n) (((x) + ((int64_t)1 << ((n)-1))) >> (n))
#define FIX_0_211164243 1730
#define FIX_0_298631336 2446
#define FIX_0_390180644 3196
#define FIX_0_509795579 4176
#define FIX_0_541196100 4433
#define FIX_0_601344887 4926
#define FIX_0_720959822 5906
#define FIX_0_765366865 6270
#define FIX_0_850430095 6967
#define FIX_0_899976223 7373
#define FIX_1_061594337 8697
#define FIX_1_175875602 9633
#define FIX_1_272758580 10426
#define FIX_1_451774981 11893
#define FIX_1_501321110 12299
#define FIX_1_847759065 15137
#define FIX_1_961570560 16069
#define FIX_2_053119869 16819
#define FIX_2_172734803 17799
#define FIX_2_562915447 20995
#define FIX_3_072711026 25172
#define FIX_3_624509785 29692

/* Level shift and range limit, as libjpeg's IDCT_range_limit table: exact clamping for results in
 * [-512, 511] (all that valid data produces) and libjpeg's wrap-around beyond, so even garbage
 * coefficients give libjpeg's pixels. The mask keeps every index inside the table. */
static uint8_t idct_limit[1024];
static int idct_limit_ready;

static void build_idct_limit(void) {
    if (idct_limit_ready) return;
    for (int i = 0; i < 1024; i++)
        idct_limit[i] = (uint8_t)(i < 128 ? i + 128 : i < 512 ? 255 : i < 896 ? 0 : i - 896);
    idct_limit_ready = 1;
}

static inline uint8_t clamp_px(int64_t v) { return idct_limit[(uint64_t)v & 1023]; }

/* The even half of jidctint.c's 8-point pass: inputs 0, 2, 4, 6 -> tmp10, tmp11, tmp12, tmp13. */
static inline void idct8_even(int64_t in0, int64_t in2, int64_t in4, int64_t in6, int64_t e[4]) {
    int64_t z1 = (in2 + in6) * FIX_0_541196100;
    int64_t tmp2 = z1 + in6 * -FIX_1_847759065;
    int64_t tmp3 = z1 + in2 * FIX_0_765366865;
    int64_t tmp0 = (in0 + in4) * (1 << CONST_BITS);
    int64_t tmp1 = (in0 - in4) * (1 << CONST_BITS);
    e[0] = tmp0 + tmp3;
    e[1] = tmp1 + tmp2;
    e[2] = tmp1 - tmp2;
    e[3] = tmp0 - tmp3;
}

/* The odd half: inputs 7, 5, 3, 1 (as tmp0..tmp3) -> the four odd terms, in place. */
static inline void idct8_odd(int64_t t[4]) {
    int64_t z1 = t[0] + t[3], z2 = t[1] + t[2], z3 = t[0] + t[2], z4 = t[1] + t[3];
    int64_t z5 = (z3 + z4) * FIX_1_175875602;
    t[0] *= FIX_0_298631336;
    t[1] *= FIX_2_053119869;
    t[2] *= FIX_3_072711026;
    t[3] *= FIX_1_501321110;
    z1 *= -FIX_0_899976223;
    z2 *= -FIX_2_562915447;
    z3 *= -FIX_1_961570560;
    z4 *= -FIX_0_390180644;
    z3 += z5;
    z4 += z5;
    t[0] += z1 + z3;
    t[1] += z2 + z4;
    t[2] += z2 + z3;
    t[3] += z1 + z4;
}

static void idct8(const int16_t *in, const uint16_t *q, uint8_t *out, size_t stride) {
    int64_t ws[64];
    for (int c = 0; c < 8; c++) {
        const int16_t *ip = in + c;
        const uint16_t *qp = q + c;
        int64_t *wp = ws + c;
        if (!(ip[8] | ip[16] | ip[24] | ip[32] | ip[40] | ip[48] | ip[56])) {
            int64_t dc = (int64_t)ip[0] * qp[0] * (1 << PASS1_BITS);
            for (int r = 0; r < 8; r++) wp[8 * r] = dc;
            continue;
        }
        int64_t e[4], t[4] = {(int64_t)ip[56] * qp[56], (int64_t)ip[40] * qp[40], (int64_t)ip[24] * qp[24],
                              (int64_t)ip[8] * qp[8]};
        idct8_even((int64_t)ip[0] * qp[0], (int64_t)ip[16] * qp[16], (int64_t)ip[32] * qp[32],
                   (int64_t)ip[48] * qp[48], e);
        idct8_odd(t);
        const int sh = CONST_BITS - PASS1_BITS;
        wp[0] = DESCALE(e[0] + t[3], sh);
        wp[56] = DESCALE(e[0] - t[3], sh);
        wp[8] = DESCALE(e[1] + t[2], sh);
        wp[48] = DESCALE(e[1] - t[2], sh);
        wp[16] = DESCALE(e[2] + t[1], sh);
        wp[40] = DESCALE(e[2] - t[1], sh);
        wp[24] = DESCALE(e[3] + t[0], sh);
        wp[32] = DESCALE(e[3] - t[0], sh);
    }
    for (int r = 0; r < 8; r++) {
        const int64_t *wp = ws + 8 * r;
        uint8_t *op = out + (size_t)r * stride;
        if (!(wp[1] | wp[2] | wp[3] | wp[4] | wp[5] | wp[6] | wp[7])) {
            uint8_t v = clamp_px(DESCALE(wp[0], PASS1_BITS + 3));
            memset(op, v, 8);
            continue;
        }
        int64_t e[4], t[4] = {wp[7], wp[5], wp[3], wp[1]};
        idct8_even(wp[0], wp[2], wp[4], wp[6], e);
        idct8_odd(t);
        const int sh = CONST_BITS + PASS1_BITS + 3;
        op[0] = clamp_px(DESCALE(e[0] + t[3], sh));
        op[7] = clamp_px(DESCALE(e[0] - t[3], sh));
        op[1] = clamp_px(DESCALE(e[1] + t[2], sh));
        op[6] = clamp_px(DESCALE(e[1] - t[2], sh));
        op[2] = clamp_px(DESCALE(e[2] + t[1], sh));
        op[5] = clamp_px(DESCALE(e[2] - t[1], sh));
        op[3] = clamp_px(DESCALE(e[3] + t[0], sh));
        op[4] = clamp_px(DESCALE(e[3] - t[0], sh));
    }
}

/* 4x4 output from the 4x4 low-frequency corner (jidctred.c jpeg_idct_4x4; row/column 4 unused). */
static void idct4(const int16_t *in, const uint16_t *q, uint8_t *out, size_t stride) {
    int64_t ws[32]; /* 8 columns x 4 rows */
    for (int c = 0; c < 8; c++) {
        if (c == 4) continue; /* the second pass does not use column 4 */
        const int16_t *ip = in + c;
        const uint16_t *qp = q + c;
        int64_t *wp = ws + c;
        if (!(ip[8] | ip[16] | ip[24] | ip[40] | ip[48] | ip[56])) {
            int64_t dc = (int64_t)ip[0] * qp[0] * (1 << PASS1_BITS);
            wp[0] = wp[8] = wp[16] = wp[24] = dc;
            continue;
        }
        int64_t tmp0 = (int64_t)ip[0] * qp[0] * (1 << (CONST_BITS + 1));
        int64_t z2 = (int64_t)ip[16] * qp[16], z3 = (int64_t)ip[48] * qp[48];
        int64_t tmp2 = z2 * FIX_1_847759065 + z3 * -FIX_0_765366865;
        int64_t tmp10 = tmp0 + tmp2, tmp12 = tmp0 - tmp2;
        int64_t z1 = (int64_t)ip[56] * qp[56];
        z2 = (int64_t)ip[40] * qp[40];
        z3 = (int64_t)ip[24] * qp[24];
        int64_t z4 = (int64_t)ip[8] * qp[8];
        tmp0 = z1 * -FIX_0_211164243 + z2 * FIX_1_451774981 + z3 * -FIX_2_172734803 + z4 * FIX_1_061594337;
        tmp2 = z1 * -FIX_0_509795579 + z2 * -FIX_0_601344887 + z3 * FIX_0_899976223 + z4 * FIX_2_562915447;
        wp[0] = DESCALE(tmp10 + tmp2, CONST_BITS - PASS1_BITS + 1);
        wp[24] = DESCALE(tmp10 - tmp2, CONST_BITS - PASS1_BITS + 1);
        wp[8] = DESCALE(tmp12 + tmp0, CONST_BITS - PASS1_BITS + 1);
        wp[16] = DESCALE(tmp12 - tmp0, CONST_BITS - PASS1_BITS + 1);
    }
    for (int r = 0; r < 4; r++) {
        const int64_t *wp = ws + 8 * r;
        uint8_t *op = out + (size_t)r * stride;
        if (!(wp[1] | wp[2] | wp[3] | wp[5] | wp[6] | wp[7])) {
            uint8_t v = clamp_px(DESCALE(wp[0], PASS1_BITS + 3));
            op[0] = op[1] = op[2] = op[3] = v;
            continue;
        }
        int64_t tmp0 = wp[0] * (1 << (CONST_BITS + 1));
        int64_t tmp2 = wp[2] * FIX_1_847759065 + wp[6] * -FIX_0_765366865;
        int64_t tmp10 = tmp0 + tmp2, tmp12 = tmp0 - tmp2;
        int64_t z1 = wp[7], z2 = wp[5], z3 = wp[3], z4 = wp[1];
        tmp0 = z1 * -FIX_0_211164243 + z2 * FIX_1_451774981 + z3 * -FIX_2_172734803 + z4 * FIX_1_061594337;
        tmp2 = z1 * -FIX_0_509795579 + z2 * -FIX_0_601344887 + z3 * FIX_0_899976223 + z4 * FIX_2_562915447;
        const int sh = CONST_BITS + PASS1_BITS + 3 + 1;
        op[0] = clamp_px(DESCALE(tmp10 + tmp2, sh));
        op[3] = clamp_px(DESCALE(tmp10 - tmp2, sh));
        op[1] = clamp_px(DESCALE(tmp12 + tmp0, sh));
        op[2] = clamp_px(DESCALE(tmp12 - tmp0, sh));
    }
}

/* 2x2 output (jidctred.c jpeg_idct_2x2: only the odd rows/columns and DC contribute). */
static void idct2(const int16_t *in, const uint16_t *q, uint8_t *out, size_t stride) {
    int64_t ws[16];
    for (int c = 0; c < 8; c++) {
        if (c == 2 || c == 4 || c == 6) continue;
        const int16_t *ip = in + c;
        const uint16_t *qp = q + c;
        int64_t *wp = ws + c;
        if (!(ip[8] | ip[24] | ip[40] | ip[56])) {
            wp[0] = wp[8] = (int64_t)ip[0] * qp[0] * (1 << PASS1_BITS);
            continue;
        }
        int64_t tmp10 = (int64_t)ip[0] * qp[0] * (1 << (CONST_BITS + 2));
        int64_t tmp0 = (int64_t)ip[56] * qp[56] * -FIX_0_720959822 + (int64_t)ip[40] * qp[40] * FIX_0_850430095 +
                       (int64_t)ip[24] * qp[24] * -FIX_1_272758580 + (int64_t)ip[8] * qp[8] * FIX_3_624509785;
        wp[0] = DESCALE(tmp10 + tmp0, CONST_BITS - PASS1_BITS + 2);
        wp[8] = DESCALE(tmp10 - tmp0, CONST_BITS - PASS1_BITS + 2);
    }
    for (int r = 0; r < 2; r++) {
        const int64_t *wp = ws + 8 * r;
        uint8_t *op = out + (size_t)r * stride;
        if (!(wp[1] | wp[3] | wp[5] | wp[7])) {
            op[0] = op[1] = clamp_px(DESCALE(wp[0], PASS1_BITS + 3));
            continue;
        }
        int64_t tmp10 = wp[0] * (1 << (CONST_BITS + 2));
        int64_t tmp0 = wp[7] * -FIX_0_720959822 + wp[5] * FIX_0_850430095 + wp[3] * -FIX_1_272758580 +
                       wp[1] * FIX_3_624509785;
        op[0] = clamp_px(DESCALE(tmp10 + tmp0, CONST_BITS + PASS1_BITS + 3 + 2));
        op[1] = clamp_px(DESCALE(tmp10 - tmp0, CONST_BITS + PASS1_BITS + 3 + 2));
    }
}

static void idct_block(const int16_t *in, const uint16_t *q, uint32_t ss, uint8_t *out, size_t stride) {
    switch (ss) {
    case 8: idct8(in, q, out, stride); break;
    case 4: idct4(in, q, out, stride); break;
    case 2: idct2(in, q, out, stride); break;
    default: out[0] = clamp_px(DESCALE((int64_t)in[0] * q[0], 3)); break; /* jpeg_idct_1x1 */
    }
}

/* ---- marker segments ----------------------------------------------------------------------------- */

static int fail(dec_t *d, const char *msg) {
    if (!d->err) d->err = msg;
    return -1;
}

static int parse_dqt(dec_t *d, const uint8_t *p, size_t n) {
    while (n > 0) {
        int pq = p[0] >> 4, tq = p[0] & 15;
        size_t need = 1 + (pq ? 128u : 64u);
        if (pq > 1 || tq > 3 || n < need) return fail(d, E_BAD_QTABLE);
        for (int i = 0; i < 64; i++)
            d->qt[tq][ZZ[i]] = (uint16_t)(pq ? rd16(p + 1 + 2 * i) : p[1 + i]);
        d->qdef[tq] = 1;
        p += need;
        n -= need;
    }
    return 0;
}

static int parse_dht(dec_t *d, const uint8_t *p, size_t n) {
    while (n > 0) {
        if (n < 17) return fail(d, E_BAD_HTABLE);
        int tc = p[0] >> 4, th = p[0] & 15;
        if (tc > 1 || th > 3) return fail(d, E_BAD_HTABLE);
        uint8_t counts[17] = {0};
        int total = 0;
        for (int l = 1; l <= 16; l++) total += counts[l] = p[l];
        if (total > 256 || n < 17 + (size_t)total) return fail(d, E_BAD_HTABLE);
        if (build_huff(tc ? &d->hac[th] : &d->hdc[th], counts, p + 17, total) < 0) {
            (tc ? &d->hac[th] : &d->hdc[th])->defined = 0;
            return fail(d, E_BAD_HTABLE);
        }
        p += 17 + (size_t)total;
        n -= 17 + (size_t)total;
    }
    return 0;
}

static uint32_t tiff16(const uint8_t *p, int le) { return le ? (uint32_t)p[1] << 8 | p[0] : (uint32_t)p[0] << 8 | p[1]; }
static uint32_t tiff32(const uint8_t *p, int le) {
    return le ? (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0]
              : (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* APP1 "Exif\0\0" + TIFF: orientation is tag 0x0112 of IFD0. Only the first Exif segment counts (as in
 * Pillow). Malformed Exif is ignored, never an error: the pixels are still good. */
static void parse_exif(dec_t *d, const uint8_t *p, size_t n) {
    if (d->saw_exif || n < 6 + 8 || memcmp(p, "Exif\0\0", 6) != 0) return;
    d->saw_exif = 1;
    const uint8_t *t = p + 6;
    size_t tn = n - 6;
    int le;
    if (t[0] == 'I' && t[1] == 'I') le = 1;
    else if (t[0] == 'M' && t[1] == 'M') le = 0;
    else return;
    if (tiff16(t + 2, le) != 42) return;
    uint64_t ifd = tiff32(t + 4, le);
    if (ifd + 2 > tn) return;
    uint32_t count = tiff16(t + ifd, le);
    for (uint32_t i = 0; i < count; i++) {
        uint64_t off = ifd + 2 + 12ull * i;
        if (off + 12 > tn) return;
        const uint8_t *e = t + off;
        if (tiff16(e, le) != 0x0112) continue;
        uint32_t type = tiff16(e + 2, le), v;
        if (type == 3) v = tiff16(e + 8, le);      /* SHORT, the standard type */
        else if (type == 4) v = tiff32(e + 8, le); /* LONG, seen in the wild */
        else return;
        if (v >= 1 && v <= 8) d->orientation = v;
        return;
    }
}

static int parse_sof(dec_t *d, int marker, const uint8_t *p, size_t n) {
    if (d->frame) return fail(d, E_TWO_SOF);
    if (n < 6) return fail(d, E_BAD_SOF);
    if (p[0] != 8) return fail(d, p[0] == 12 ? E_12BIT : p[0] == 16 ? E_16BIT : E_PREC);
    d->H = rd16(p + 1);
    d->W = rd16(p + 3);
    d->ncomp = p[5];
    if (d->H == 0) return fail(d, E_DNL);
    if (d->W == 0) return fail(d, E_BAD_SOF);
    if (d->ncomp != 1 && d->ncomp != 3 && d->ncomp != 4) return fail(d, d->ncomp == 0 ? E_BAD_SOF : E_NCOMP);
    if (n != 6 + 3 * (size_t)d->ncomp) return fail(d, E_BAD_SOF);
    d->hmax = d->vmax = 1;
    for (int i = 0; i < d->ncomp; i++) {
        comp_t *c = &d->c[i];
        c->id = p[6 + 3 * i];
        c->h = p[7 + 3 * i] >> 4;
        c->v = p[7 + 3 * i] & 15;
        c->tq = p[8 + 3 * i];
        if (c->h < 1 || c->h > 4 || c->v < 1 || c->v > 4 || c->tq > 3) return fail(d, E_BAD_SOF);
        if (c->h > d->hmax) d->hmax = c->h;
        if (c->v > d->vmax) d->vmax = c->v;
    }
    d->progressive = marker == 0xC2;
    d->frame = 1;
    return 0;
}

/* Geometry at the requested scale, and the limits check; called once, before the first scan. */
static int setup_frame(dec_t *d) {
    uint64_t pixels = (uint64_t)d->W * d->H;
    if (pixels > d->max_pixels) return fail(d, too_large(pixels, d->max_pixels));
    uint32_t smin = 8 / d->scale; /* IDCT size of the full-resolution components */
    d->mcux = (d->W + 8 * (uint32_t)d->hmax - 1) / (8 * (uint32_t)d->hmax);
    d->mcuy = (d->H + 8 * (uint32_t)d->vmax - 1) / (8 * (uint32_t)d->vmax);
    for (int i = 0; i < d->ncomp; i++) {
        comp_t *c = &d->c[i];
        uint32_t cw = (uint32_t)(((uint64_t)d->W * c->h + d->hmax - 1) / d->hmax);
        uint32_t ch = (uint32_t)(((uint64_t)d->H * c->v + d->vmax - 1) / d->vmax);
        c->nbw = (cw + 7) / 8;
        c->nbh = (ch + 7) / 8;
        c->bw = d->mcux * (uint32_t)c->h;
        c->bh = d->mcuy * (uint32_t)c->v;
        /* libjpeg (jdmaster.c): scale subsampled components up in the IDCT rather than upsample them,
         * as far as the sampling ratios allow (only matters for scaled decodes). */
        uint32_t ss = smin;
        while (ss < 8 && ((uint32_t)d->hmax * smin) % ((uint32_t)c->h * ss * 2) == 0 &&
               ((uint32_t)d->vmax * smin) % ((uint32_t)c->v * ss * 2) == 0)
            ss *= 2;
        c->ss = ss;
        if (((uint32_t)d->hmax * smin) % ((uint32_t)c->h * ss) || ((uint32_t)d->vmax * smin) % ((uint32_t)c->v * ss))
            return fail(d, E_SAMPLING);
        c->hexp = (uint32_t)d->hmax * smin / ((uint32_t)c->h * ss);
        c->vexp = (uint32_t)d->vmax * smin / ((uint32_t)c->v * ss);
        c->dw = (uint32_t)(((uint64_t)d->W * c->h * ss + (uint64_t)d->hmax * 8 - 1) / ((uint64_t)d->hmax * 8));
        c->dh = (uint32_t)(((uint64_t)d->H * c->v * ss + (uint64_t)d->vmax * 8 - 1) / ((uint64_t)d->vmax * 8));
        c->stride = c->bw * ss;
        c->ph = c->bh * ss;
    }
    return 0;
}

/* Allocate the per-component buffers at their final size, at the first scan. */
static int alloc_buffers(dec_t *d) {
    for (int i = 0; i < d->ncomp; i++) {
        comp_t *c = &d->c[i];
        uint64_t blocks = (uint64_t)c->bw * c->bh;
        if (d->progressive) {
            uint64_t bytes = blocks * 64 * sizeof(int16_t);
            if (bytes > SIZE_MAX / 2) return fail(d, E_OOM);
            c->coefs = calloc((size_t)blocks * 64, sizeof(int16_t));
            c->nzmap = calloc((size_t)(blocks + 63) / 64, sizeof(uint64_t));
            if (!c->coefs || !c->nzmap) return fail(d, E_OOM);
        } else {
            uint64_t bytes = (uint64_t)c->stride * c->ph;
            if (bytes > SIZE_MAX / 2) return fail(d, E_OOM);
            c->plane = malloc((size_t)bytes);
            if (!c->plane) return fail(d, E_OOM);
        }
    }
    d->allocated = 1;
    return 0;
}

/* ---- entropy decoding ---------------------------------------------------------------------------- */

/* Sequential: one whole block, natural order; returns 1 if any AC coefficient is non-zero. */
static int decode_block_seq(dec_t *d, comp_t *c, int16_t *blk) {
    bitreader *br = &d->br;
    br_fill(br);
    int s = huff_decode(br, &d->hdc[c->td]);
    if (s < 0) return fail(d, E_BAD_HUFF), -1;
    if (s > 16) return fail(d, E_BAD_HUFF), -1;
    if (s) {
        /* s <= 16 bits: the buffer still holds >= 57-16 bits after the symbol */
        int32_t diff = extend(br_bits(br, s), s);
        c->dcpred = (int32_t)((uint32_t)c->dcpred + (uint32_t)diff); /* wraps like libjpeg, without UB */
    }
    blk[0] = (int16_t)c->dcpred;
    const huff_t *ac = &d->hac[c->ta];
    int any = 0;
    for (int k = 1; k < 64;) {
        br_fill(br);
        uint32_t f = ac->fast_ac[br->buf >> (64 - FAST_BITS)];
        if (f) { /* common case: short code and a small value, in one look-up */
            int total = (int)(f & 15);
            k += (int)(f >> 4 & 15);
            if (k > 63) return fail(d, E_COEF), -1;
            br->buf <<= total;
            br->cnt -= total;
            blk[ZZ[k]] = (int16_t)((int32_t)(f >> 8) - 1024);
            any = 1;
            k++;
            continue;
        }
        int rs = huff_decode(br, ac);
        if (rs < 0) return fail(d, E_BAD_HUFF), -1;
        int r = rs >> 4;
        s = rs & 15;
        if (s) {
            k += r;
            if (k > 63) return fail(d, E_COEF), -1;
            blk[ZZ[k]] = (int16_t)extend(br_bits(br, s), s);
            any = 1;
            k++;
        } else {
            if (r != 15) break; /* EOB */
            k += 16;            /* ZRL: sixteen zeros */
        }
    }
    return any;
}

/* Sequential at 1/8 scale: only the DC coefficient is used (jpeg_idct_1x1), so the AC codes are decoded
 * to advance the bit reader (with the same checks as decode_block_seq) but not stored. Returns the DC. */
static int decode_block_seq_dc(dec_t *d, comp_t *c, int32_t *dc) {
    bitreader *br = &d->br;
    br_fill(br);
    int s = huff_decode(br, &d->hdc[c->td]);
    if (s < 0 || s > 16) return fail(d, E_BAD_HUFF);
    if (s) c->dcpred = (int32_t)((uint32_t)c->dcpred + (uint32_t)extend(br_bits(br, s), s));
    *dc = (int16_t)c->dcpred;
    const huff_t *ac = &d->hac[c->ta];
    for (int k = 1; k < 64;) {
        br_fill(br);
        uint32_t f = ac->fast_ac[br->buf >> (64 - FAST_BITS)];
        if (f) {
            int total = (int)(f & 15);
            k += (int)(f >> 4 & 15);
            if (k > 63) return fail(d, E_COEF);
            br->buf <<= total;
            br->cnt -= total;
            k++;
            continue;
        }
        int rs = huff_decode(br, ac);
        if (rs < 0) return fail(d, E_BAD_HUFF);
        int r = rs >> 4;
        s = rs & 15;
        if (s) {
            k += r;
            if (k > 63) return fail(d, E_COEF);
            br->buf <<= s;
            br->cnt -= s;
            k++;
        } else {
            if (r != 15) break;
            k += 16;
        }
    }
    return 0;
}

static int decode_dc_first(dec_t *d, comp_t *c, int16_t *blk) {
    bitreader *br = &d->br;
    br_fill(br);
    int s = huff_decode(br, &d->hdc[c->td]);
    if (s < 0 || s > 16) return fail(d, E_BAD_HUFF);
    if (s) c->dcpred = (int32_t)((uint32_t)c->dcpred + (uint32_t)extend(br_bits(br, s), s));
    /* Al <= 13: the shift is done on unsigned to stay defined for negative values */
    blk[0] = (int16_t)(uint32_t)((uint32_t)c->dcpred << d->Al);
    return 0;
}

static int decode_dc_refine(dec_t *d, int16_t *blk) {
    if (br_bit(&d->br)) blk[0] = (int16_t)(blk[0] | (1 << d->Al));
    return 0;
}

static inline void mark_nonzero(comp_t *c, const int16_t *blk) {
    size_t i = (size_t)(blk - c->coefs) / 64;
    c->nzmap[i >> 6] |= (uint64_t)1 << (i & 63);
}

static int decode_ac_first(dec_t *d, comp_t *c, int16_t *blk) {
    if (d->eobrun) {
        d->eobrun--;
        return 0;
    }
    bitreader *br = &d->br;
    const huff_t *ac = &d->hac[c->ta];
    for (int k = d->Ss; k <= d->Se;) {
        br_fill(br);
        int rs = huff_decode(br, ac);
        if (rs < 0) return fail(d, E_BAD_HUFF);
        int r = rs >> 4, s = rs & 15;
        if (s) {
            k += r;
            if (k > d->Se) return fail(d, E_COEF);
            blk[ZZ[k]] = (int16_t)(uint32_t)((uint32_t)extend(br_bits(br, s), s) << d->Al);
            mark_nonzero(c, blk);
            k++;
        } else if (r < 15) {
            d->eobrun = (1u << r) - 1; /* this block is the first of the run */
            if (r) d->eobrun += br_bits(br, r);
            break;
        } else {
            k += 16;
        }
    }
    return 0;
}

/* Whether every AC coefficient of a block is still zero (four at a time). */
static int ac_all_zero(const int16_t *blk) {
    uint64_t acc = (uint64_t)(uint16_t)blk[1] | (uint64_t)(uint16_t)blk[2] << 16 | (uint64_t)(uint16_t)blk[3] << 32;
    for (int i = 4; i < 64; i += 4) {
        uint64_t w;
        memcpy(&w, blk + i, sizeof w);
        acc |= w;
    }
    return acc == 0;
}

/* Successive-approximation AC refinement (T.81 G.1.2.3; libjpeg's decode_mcu_AC_refine). */
static int decode_ac_refine(dec_t *d, comp_t *c, int16_t *blk) {
    bitreader *br = &d->br;
    const huff_t *ac = &d->hac[c->ta];
    int p1 = 1 << d->Al, m1 = -p1;
    int k = d->Ss;
    if (d->eobrun == 0) {
        for (; k <= d->Se; k++) {
            br_fill(br);
            int rs = huff_decode(br, ac);
            if (rs < 0) return fail(d, E_BAD_HUFF);
            int r = rs >> 4, s = rs & 15;
            if (s) {
                /* s must be 1 (libjpeg only warns otherwise); the sign comes in the next bit */
                s = br_bits(br, 1) ? p1 : m1;
            } else if (r != 15) {
                d->eobrun = 1u << r;
                if (r) d->eobrun += br_bits(br, r);
                break;
            }
            /* Skip r still-zero coefficients, adding a correction bit to each non-zero one passed. */
            while (k <= d->Se) {
                int16_t *coef = blk + ZZ[k];
                if (*coef) {
                    if (br_bit(br) && (*coef & p1) == 0) *coef = (int16_t)(*coef >= 0 ? *coef + p1 : *coef + m1);
                } else {
                    if (r-- == 0) break;
                }
                k++;
            }
            if (s) {
                if (k > d->Se) return fail(d, E_COEF);
                blk[ZZ[k]] = (int16_t)s;
                mark_nonzero(c, blk);
            }
        }
    }
    if (d->eobrun > 0 && k == d->Ss && ac_all_zero(blk)) {
        d->eobrun--; /* a block of the run with nothing to correct: no bits, no loop over its band */
        return 0;
    }
    if (d->eobrun > 0) {
        /* The rest of the band: correction bits for the already non-zero coefficients only. */
        for (; k <= d->Se; k++) {
            int16_t *coef = blk + ZZ[k];
            if (*coef && br_bit(br) && (*coef & p1) == 0) *coef = (int16_t)(*coef >= 0 ? *coef + p1 : *coef + m1);
        }
        d->eobrun--;
    }
    return 0;
}

/* One block of the current scan at block coordinates (bx, by) of component c. */
static int decode_block(dec_t *d, comp_t *c, uint32_t bx, uint32_t by) {
    if (!d->progressive && c->ss == 1) {
        int32_t dc;
        if (decode_block_seq_dc(d, c, &dc) < 0) return -1;
        c->plane[(size_t)by * c->stride + bx] = clamp_px(DESCALE((int64_t)dc * c->q[0], 3)); /* jpeg_idct_1x1 */
        return 0;
    }
    if (!d->progressive) {
        int16_t blk[64];
        memset(blk, 0, sizeof blk);
        int any = decode_block_seq(d, c, blk);
        if (any < 0) return -1;
        uint8_t *out = c->plane + (size_t)by * c->ss * c->stride + (size_t)bx * c->ss;
        if (any) {
            idct_block(blk, c->q, c->ss, out, c->stride);
        } else {
            /* DC only: every output sample is the same; this is what the IDCT's shortcuts yield. */
            uint8_t v = clamp_px(DESCALE((int64_t)blk[0] * c->q[0] * (1 << PASS1_BITS), PASS1_BITS + 3));
            for (uint32_t r = 0; r < c->ss; r++) memset(out + (size_t)r * c->stride, v, c->ss);
        }
        return 0;
    }
    int16_t *blk = c->coefs + ((size_t)by * c->bw + bx) * 64;
    if (d->Ss == 0) return d->Ah == 0 ? decode_dc_first(d, c, blk) : decode_dc_refine(d, blk);
    return d->Ah == 0 ? decode_ac_first(d, c, blk) : decode_ac_refine(d, c, blk);
}

/* Between restart intervals: find RSTn, reset the predictors and the bit reader. */
static int restart(dec_t *d) {
    bitreader *br = &d->br;
    if (br->eof) return fail(d, E_TRUNC_SCAN);
    const uint8_t *p = br->p, *end = br->end;
    /* Leftover data before the marker (only in corrupt streams) is skipped, as libjpeg does. */
    while (p + 1 < end && !(p[0] == 0xFF && p[1] != 0x00 && p[1] != 0xFF)) p++;
    if (p + 1 >= end) return fail(d, E_TRUNC_SCAN);
    if (p[1] < 0xD0 || p[1] > 0xD7) return fail(d, E_RST);
    br_init(br, p + 2, end);
    for (int i = 0; i < d->ns; i++) d->sc[i]->dcpred = 0;
    d->eobrun = 0;
    return 0;
}

/* Blocks of the current EOB run that need no work, from (mx, my) along the row: all of them in a first AC
 * scan, and in a refinement scan those with no non-zero AC coefficient (nothing to correct, no bits), 64 at a
 * time where the map allows. A file's work then follows its size, not its scan count times the image. */
static uint32_t skip_eob_run(dec_t *d, const comp_t *c, uint32_t mx, uint32_t my, uint32_t nx) {
    uint32_t n = 0, left = nx - mx;
    if (d->Ah == 0) {
        n = d->eobrun < left ? d->eobrun : left;
    } else {
        size_t idx = (size_t)my * c->bw + mx;
        while (n < left && n < d->eobrun) {
            size_t i = idx + n;
            uint64_t w = c->nzmap[i >> 6];
            if ((i & 63) == 0 && w == 0 && left - n >= 64 && d->eobrun - n >= 64) {
                n += 64;
                continue;
            }
            if (w >> (i & 63) & 1) break;
            n++;
        }
    }
    d->eobrun -= n;
    return n;
}

static int decode_scan(dec_t *d) {
    for (int i = 0; i < d->ns; i++) d->sc[i]->dcpred = 0;
    d->eobrun = 0;
    br_init(&d->br, d->data + d->pos, d->data + d->len);
    uint32_t nx, ny;
    if (d->ns == 1) {
        nx = d->sc[0]->nbw;
        ny = d->sc[0]->nbh;
    } else {
        nx = d->mcux;
        ny = d->mcuy;
    }
    uint32_t todo = d->dri;
    int eob_skips = d->progressive && d->ns == 1 && d->Ss > 0 && d->dri == 0;
    for (uint32_t my = 0; my < ny; my++) {
        for (uint32_t mx = 0; mx < nx; mx++) {
            if (eob_skips && d->eobrun > 0) {
                uint32_t n = skip_eob_run(d, d->sc[0], mx, my, nx);
                if (n) {
                    mx += n - 1;
                    continue;
                }
            }
            if (d->dri) {
                if (todo == 0) {
                    if (restart(d) < 0) return -1;
                    todo = d->dri;
                }
                todo--;
            }
            if (d->ns == 1) {
                if (decode_block(d, d->sc[0], mx, my) < 0) return -1;
            } else {
                for (int i = 0; i < d->ns; i++) {
                    comp_t *c = d->sc[i];
                    for (int v = 0; v < c->v; v++)
                        for (int h = 0; h < c->h; h++)
                            if (decode_block(d, c, mx * (uint32_t)c->h + (uint32_t)h, my * (uint32_t)c->v + (uint32_t)v) < 0)
                                return -1;
                }
            }
            /* Data ran out at the end of the input: a truncated file. Checked per MCU so that a
             * truncated big image fails fast instead of decoding megapixels of padding. (Running into
             * a marker early is tolerated and decodes as zeros, like libjpeg.) */
            if (d->br.eof && br_overran(&d->br)) return fail(d, E_TRUNC_SCAN);
        }
    }
    /* Resume marker parsing where the entropy data stopped (at the marker, or before leftovers). */
    d->pos = (size_t)(d->br.p - d->data);
    if (!d->progressive)
        for (int i = 0; i < d->ns; i++) d->sc[i]->scanned = 1;
    d->scans++;
    return 0;
}

static uint64_t planned_visits(const dec_t *d, const uint8_t *first, size_t first_n);

static int parse_sos(dec_t *d, const uint8_t *p, size_t n) {
    if (!d->frame) return fail(d, E_SOS_FIRST);
    if (n < 1) return fail(d, E_BAD_SOS);
    int ns = p[0];
    if (ns < 1 || ns > MAX_COMPS || n != 4 + 2 * (size_t)ns) return fail(d, E_BAD_SOS);
    d->ns = ns;
    int blocks = 0;
    for (int i = 0; i < ns; i++) {
        int id = p[1 + 2 * i], tables = p[2 + 2 * i];
        comp_t *c = NULL;
        for (int j = 0; j < d->ncomp; j++)
            if (d->c[j].id == id) c = &d->c[j];
        if (!c) return fail(d, E_BAD_SOS);
        for (int j = 0; j < i; j++)
            if (d->sc[j] == c) return fail(d, E_BAD_SOS);
        c->td = tables >> 4;
        c->ta = tables & 15;
        if (c->td > 3 || c->ta > 3) return fail(d, E_BAD_SOS);
        d->sc[i] = c;
        blocks += c->h * c->v;
    }
    if (ns > 1 && blocks > 10) return fail(d, E_BAD_SOS); /* T.81 B.2.3: at most 10 blocks per MCU */
    d->Ss = p[1 + 2 * ns];
    d->Se = p[2 + 2 * ns];
    d->Ah = p[3 + 2 * ns] >> 4;
    d->Al = p[3 + 2 * ns] & 15;
    int need_dc, need_ac;
    if (d->progressive) {
        /* The checks libjpeg makes (jdphuff.c start_pass_phuff_decoder). */
        int bad = d->Ss == 0 ? d->Se != 0 : (d->Se < d->Ss || d->Se > 63 || ns != 1);
        if (d->Ah != 0 && d->Al != d->Ah - 1) bad = 1;
        if (d->Al > 13) bad = 1;
        if (bad) return fail(d, E_BAD_PROG);
        need_dc = d->Ss == 0 && d->Ah == 0;
        need_ac = d->Ss != 0;
    } else {
        need_dc = need_ac = 1; /* Ss/Se/Ah/Al are fixed in sequential mode; libjpeg only warns */
    }
    for (int i = 0; i < ns; i++) {
        comp_t *c = d->sc[i];
        if ((need_dc && !d->hdc[c->td].defined) || (need_ac && !d->hac[c->ta].defined)) return fail(d, E_NO_HTABLE);
        if (!c->qlatched) {
            if (!d->qdef[c->tq]) return fail(d, E_NO_QTABLE);
            memcpy(c->q, d->qt[c->tq], sizeof c->q);
            c->qlatched = 1;
        }
    }
    if (d->scans >= MAX_SCANS) return fail(d, E_SCANS);
    uint64_t all = 0, scan = 0;
    if (!d->allocated) {
        if (setup_frame(d) < 0) return -1;
        for (int i = 0; i < d->ncomp; i++) all += (uint64_t)d->c[i].bw * d->c[i].bh;
        if (planned_visits(d, p, n) > all * MAX_VISITS_PER_BLOCK) return fail(d, E_WORK); /* before allocating */
        if (alloc_buffers(d) < 0) return -1;
        all = 0;
    }
    for (int i = 0; i < d->ncomp; i++) all += (uint64_t)d->c[i].bw * d->c[i].bh;
    for (int i = 0; i < d->ns; i++)
        scan += d->ns == 1 ? (uint64_t)d->sc[i]->nbw * d->sc[i]->nbh : (uint64_t)d->sc[i]->bw * d->sc[i]->bh;
    d->visits += scan;
    if (d->visits > all * MAX_VISITS_PER_BLOCK) return fail(d, E_WORK);
    return decode_scan(d);
}

/* Blocks one scan header (`p`, `n` bytes) asks to decode, as parse_sos counts them; 0 if it is malformed. */
static uint64_t scan_blocks(const dec_t *d, const uint8_t *p, size_t n) {
    if (n < 1 || n != 4 + 2 * (size_t)p[0]) return 0;
    int ns = p[0];
    uint64_t blocks = 0;
    for (int i = 0; i < ns; i++)
        for (int j = 0; j < d->ncomp; j++)
            if (d->c[j].id == p[1 + 2 * i])
                blocks += ns == 1 ? (uint64_t)d->c[j].nbw * d->c[j].nbh : (uint64_t)d->c[j].bw * d->c[j].bh;
    return blocks;
}

/* The block decodes all the file's scans will ask for, from their headers, before the first is decoded: a
 * small file of hundreds of cheap scans is refused at once instead of after 32 of them. The entropy-coded
 * data is skipped to each next marker, as the decoder itself resumes; what cannot be parsed counts nothing
 * here (the decoder refuses it when it gets there). */
static uint64_t planned_visits(const dec_t *d, const uint8_t *first, size_t first_n) {
    uint64_t total = scan_blocks(d, first, first_n);
    const uint8_t *b = d->data;
    size_t pos = d->pos, len = d->len;
    for (;;) {
        while (pos + 1 < len && !(b[pos] == 0xFF && b[pos + 1] != 0x00 && b[pos + 1] != 0xFF &&
                                  (b[pos + 1] < 0xD0 || b[pos + 1] > 0xD7)))
            pos++;
        if (pos + 1 >= len) return total;
        int m = b[pos + 1];
        pos += 2;
        if (m == 0xD9) return total;
        if (m == 0x01) continue;
        if (pos + 2 > len) return total;
        size_t seglen = rd16(b + pos);
        if (seglen < 2 || pos + seglen > len) return total;
        if (m == 0xDA) total += scan_blocks(d, b + pos + 2, seglen - 2);
        pos += seglen;
    }
}

/* Walk the marker segments. In info mode, stop at the first scan (Exif may follow SOF). */
static int parse(dec_t *d) {
    if (d->len == 0) return fail(d, E_EMPTY);
    if (d->len < 2 || d->data[0] != 0xFF || d->data[1] != 0xD8) return fail(d, E_NOT_JPEG);
    d->pos = 2;
    for (;;) {
        int m = next_marker(d);
        if (m < 0) {
            if (d->info_only) return d->frame ? 0 : fail(d, E_TRUNC_HDR);
            if (!d->frame) return fail(d, E_TRUNC_HDR);
            if (!d->scans) return fail(d, E_TRUNC_HDR);
            /* No EOI. A sequential image whose every component was fully decoded is complete (the
             * EOI alone is missing); anything else lost data. */
            if (d->progressive) return fail(d, E_TRUNC_EOI);
            for (int i = 0; i < d->ncomp; i++)
                if (!d->c[i].scanned) return fail(d, E_TRUNC_EOI);
            return 0;
        }
        if (m == 0xD9) { /* EOI */
            if (!d->frame) return fail(d, E_NO_FRAME);
            if (d->info_only) return 0;
            if (!d->scans) return fail(d, E_NO_SCAN);
            return 0;
        }
        if (m == 0xD8) return fail(d, E_SOI);
        if ((m >= 0xD0 && m <= 0xD7) || m == 0x01) continue; /* stray RSTn, TEM: no payload */
        if (d->pos + 2 > d->len) return fail(d, E_TRUNC_HDR);
        size_t seglen = rd16(d->data + d->pos);
        if (seglen < 2) return fail(d, E_BAD_LEN);
        if (d->pos + seglen > d->len) return fail(d, E_TRUNC_HDR);
        const uint8_t *p = d->data + d->pos + 2;
        size_t n = seglen - 2;
        d->pos += seglen;
        int rc = 0;
        switch (m) {
        case 0xC0: case 0xC1: case 0xC2: rc = parse_sof(d, m, p, n); break;
        case 0xC3: return fail(d, E_LOSSLESS);
        case 0xC5: case 0xC6: case 0xC7: return fail(d, E_HIER);
        case 0xC9: case 0xCA: case 0xCB: case 0xCD: case 0xCE: case 0xCF: return fail(d, E_ARITH);
        case 0xC4: rc = parse_dht(d, p, n); break;
        case 0xCC: break; /* DAC: arithmetic conditioning, meaningless without an arithmetic SOF */
        case 0xDB: rc = parse_dqt(d, p, n); break;
        case 0xDD:
            if (n != 2) return fail(d, E_BAD_DRI);
            d->dri = rd16(p);
            break;
        case 0xDC: return fail(d, E_DNL);
        case 0xDA:
            if (d->info_only) return d->frame ? 0 : fail(d, E_SOS_FIRST);
            rc = parse_sos(d, p, n);
            break;
        case 0xE0:
            if (n >= 5 && memcmp(p, "JFIF\0", 5) == 0) d->saw_jfif = 1;
            break;
        case 0xE1: parse_exif(d, p, n); break;
        case 0xEE:
            if (n >= 12 && memcmp(p, "Adobe", 5) == 0) {
                d->saw_adobe = 1;
                d->adobe_transform = p[11];
            }
            break;
        default:
            if ((m >= 0xE0 && m <= 0xEF) || m == 0xFE) break; /* other APPn, COM */
            return fail(d, E_MARKER);                         /* JPGn, reserved: libjpeg refuses too */
        }
        if (rc < 0) return -1;
    }
}

/* ---- upsampling (libjpeg-turbo jdsample.c, bit-exact) and colour conversion ----------------------- */

/* The component's samples for output row y, upsampled to at least out_w samples. */
static const uint8_t *comp_row(const comp_t *c, uint32_t y, uint32_t out_w) {
    /* libjpeg: fancy (triangle) upsampling for 2x1, 2x2 and 1x2, except for 1x1 IDCT output and for
     * components 2 samples wide or less (h2 cases); everything else replicates samples. */
    int fancy = c->ss > 1;
    uint8_t *o = c->row;
    if (c->hexp == 1 && c->vexp == 1) return c->plane + (size_t)y * c->stride;
    if (c->hexp == 2 && c->vexp == 1 && fancy && c->dw > 2) {
        const uint8_t *in = c->plane + (size_t)y * c->stride;
        uint32_t n = c->dw;
        o[0] = in[0];
        o[1] = (uint8_t)((in[0] * 3 + in[1] + 2) >> 2);
        for (uint32_t i = 1; i + 1 < n; i++) {
            int v = in[i] * 3;
            o[2 * i] = (uint8_t)((v + in[i - 1] + 1) >> 2);
            o[2 * i + 1] = (uint8_t)((v + in[i + 1] + 2) >> 2);
        }
        o[2 * n - 2] = (uint8_t)((in[n - 1] * 3 + in[n - 2] + 1) >> 2);
        o[2 * n - 1] = in[n - 1];
        return o;
    }
    if (c->vexp == 2 && ((c->hexp == 2 && c->dw > 2) || c->hexp == 1) && fancy) {
        /* nearest input row, and the next nearest (above for even rows, below for odd), edges replicated */
        uint32_t iy = y >> 1, fy = (y & 1) ? (iy + 1 < c->dh ? iy + 1 : iy) : (iy ? iy - 1 : 0);
        const uint8_t *in0 = c->plane + (size_t)iy * c->stride, *in1 = c->plane + (size_t)fy * c->stride;
        uint32_t n = c->dw;
        if (c->hexp == 1) {
            int bias = (y & 1) ? 2 : 1;
            for (uint32_t i = 0; i < n; i++) o[i] = (uint8_t)((in0[i] * 3 + in1[i] + bias) >> 2);
            return o;
        }
        int this_ = in0[0] * 3 + in1[0], next = in0[1] * 3 + in1[1], last;
        o[0] = (uint8_t)((this_ * 4 + 8) >> 4);
        o[1] = (uint8_t)((this_ * 3 + next + 7) >> 4);
        last = this_;
        this_ = next;
        for (uint32_t i = 1; i + 1 < n; i++) {
            next = in0[i + 1] * 3 + in1[i + 1];
            o[2 * i] = (uint8_t)((this_ * 3 + last + 8) >> 4);
            o[2 * i + 1] = (uint8_t)((this_ * 3 + next + 7) >> 4);
            last = this_;
            this_ = next;
        }
        o[2 * n - 2] = (uint8_t)((this_ * 3 + last + 8) >> 4);
        o[2 * n - 1] = (uint8_t)((this_ * 4 + 7) >> 4);
        return o;
    }
    /* Replication (box) for every other whole ratio. */
    const uint8_t *in = c->plane + (size_t)(y / c->vexp) * c->stride;
    if (c->hexp == 1) return in;
    for (uint32_t x = 0; x < out_w; x++) o[x] = in[x / c->hexp];
    return o;
}

/* jdcolor.c build_ycc_rgb_table: 16-bit fixed point, rounding folded into the tables. `clip` is a
 * range-limit table (a clamp without branches): index v + 384 for v in [-384, 640). */
static int32_t cr_r[256], cb_b[256], cr_g[256], cb_g[256];
static uint8_t clip[1024];
static int tables_ready;

static void build_color_tables(void) {
    if (tables_ready) return;
    for (int i = 0; i < 256; i++) {
        int32_t x = i - 128;
        cr_r[i] = (91881 * x + 32768) >> 16; /* FIX(1.40200) */
        cb_b[i] = (116130 * x + 32768) >> 16; /* FIX(1.77200) */
        cr_g[i] = -46802 * x;                 /* -FIX(0.71414) */
        cb_g[i] = -22554 * x + 32768;         /* -FIX(0.34414), plus ONE_HALF */
    }
    for (int i = 0; i < 1024; i++) clip[i] = (uint8_t)(i < 384 ? 0 : i > 384 + 255 ? 255 : i - 384);
    tables_ready = 1;
}

/* Y + table values stay within [-227, 480]: always inside `clip`. */
#define CLIP(v) clip[(v) + 384]

static void ycc_rgb_row(const uint8_t *y, const uint8_t *cb, const uint8_t *cr, uint8_t *o, uint32_t n) {
    for (uint32_t x = 0; x < n; x++, o += 3) {
        int Y = y[x], b = cb[x], c = cr[x];
        o[0] = CLIP(Y + cr_r[c]);
        o[1] = CLIP(Y + ((cb_g[b] + cr_g[c]) >> 16));
        o[2] = CLIP(Y + cb_b[b]);
    }
}

/* Pillow's CMYK -> RGB (Convert.c cmyk2rgb) on true CMYK values: nk - c*nk/255 with its rounding. */
static inline uint8_t cmyk_channel(int c, int nk) {
    int t = c * nk + 128;
    int v = nk - (((t >> 8) + t) >> 8);
    return (uint8_t)(v < 0 ? 0 : v);
}

/* Adobe CMYK is stored inverted and Pillow reads it as "CMYK;I" (true C = 255 - stored); for YCCK,
 * libjpeg first turns YCC into the same stored (inverted) CMY, 255 - RGB. K is stored inverted too. */
static void cmyk_rgb_row(const uint8_t *const *r, int ycck, uint8_t *o, uint32_t n) {
    for (uint32_t x = 0; x < n; x++, o += 3) {
        int sc = r[0][x], sm = r[1][x], sy = r[2][x], sk = r[3][x];
        if (ycck) {
            int Y = sc, b = sm, c = sy;
            sc = 255 - CLIP(Y + cr_r[c]);
            sm = 255 - CLIP(Y + ((cb_g[b] + cr_g[c]) >> 16));
            sy = 255 - CLIP(Y + cb_b[b]);
        }
        o[0] = cmyk_channel(255 - sc, sk);
        o[1] = cmyk_channel(255 - sm, sk);
        o[2] = cmyk_channel(255 - sy, sk);
    }
}

static int emit(dec_t *d, waft_image *out) {
    uint32_t ow = (d->W + d->scale - 1) / d->scale, oh = (d->H + d->scale - 1) / d->scale;
    int swap = d->orientation >= 5;
    uint32_t fw = swap ? oh : ow, fh = swap ? ow : oh;
    uint32_t ch = d->ncomp == 1 ? 1 : 3;
    uint64_t bytes = (uint64_t)fw * fh * ch;
    if (bytes > SIZE_MAX / 2) return fail(d, E_OOM);
    uint8_t *px = malloc((size_t)bytes ? (size_t)bytes : 1);
    if (!px) return fail(d, E_OOM);
    int oriented = d->orientation != 1;
    uint8_t *rowbuf = NULL; /* one converted row, scattered into place when the image is rotated */
    if (oriented) {
        rowbuf = malloc((size_t)ow * ch);
        if (!rowbuf) {
            free(px);
            return fail(d, E_OOM);
        }
    }
    for (int i = 0; i < d->ncomp; i++) {
        comp_t *c = &d->c[i];
        if (c->hexp != 1 || c->vexp != 1) {
            uint64_t rb = (uint64_t)c->stride * c->hexp + 8;
            c->row = malloc((size_t)rb);
            if (!c->row) {
                free(px);
                free(rowbuf);
                return fail(d, E_OOM);
            }
        }
    }
    /* Source (x, y) goes to pixel index base + x*xs + y*ys of the fw x fh output. */
    int64_t base, xs, ys, W1 = ow - 1, H1 = oh - 1, F = fw;
    switch (d->orientation) {
    default: base = 0; xs = 1; ys = F; break;                 /* 1: as stored */
    case 2: base = W1; xs = -1; ys = F; break;                /* mirror left-right */
    case 3: base = H1 * F + W1; xs = -1; ys = -F; break;      /* rotate 180 */
    case 4: base = H1 * F; xs = 1; ys = -F; break;            /* mirror top-bottom */
    case 5: base = 0; xs = F; ys = 1; break;                  /* transpose */
    case 6: base = H1; xs = F; ys = -1; break;                /* rotate 90 clockwise */
    case 7: base = W1 * F + H1; xs = -F; ys = -1; break;      /* transverse */
    case 8: base = W1 * F; xs = -F; ys = 1; break;            /* rotate 90 counter-clockwise */
    }
    int space; /* 0 grey, 1 YCbCr, 2 RGB, 3 CMYK, 4 YCCK: libjpeg's default_decompress_parms */
    if (d->ncomp == 1) space = 0;
    else if (d->ncomp == 3) {
        if (d->saw_jfif) space = 1;
        else if (d->saw_adobe) space = d->adobe_transform == 0 ? 2 : 1;
        else if (d->c[0].id == 'R' && d->c[1].id == 'G' && d->c[2].id == 'B') space = 2;
        else space = 1;
    } else space = d->saw_adobe && d->adobe_transform != 0 ? 4 : 3;
    build_color_tables();
    const uint8_t *r[MAX_COMPS];
    for (uint32_t y = 0; y < oh; y++) {
        for (int i = 0; i < d->ncomp; i++) r[i] = comp_row(&d->c[i], y, ow);
        uint8_t *o = oriented ? rowbuf : px + (size_t)y * ow * ch;
        switch (space) {
        case 0: memcpy(o, r[0], ow); break;
        case 1: ycc_rgb_row(r[0], r[1], r[2], o, ow); break;
        case 2:
            for (uint32_t x = 0; x < ow; x++) {
                o[3 * x] = r[0][x];
                o[3 * x + 1] = r[1][x];
                o[3 * x + 2] = r[2][x];
            }
            break;
        default: cmyk_rgb_row(r, space == 4, o, ow); break;
        }
        if (oriented) {
            int64_t idx = base + (int64_t)y * ys;
            for (uint32_t x = 0; x < ow; x++, idx += xs)
                for (uint32_t k = 0; k < ch; k++) px[idx * ch + k] = rowbuf[x * ch + k];
        }
    }
    free(rowbuf);
    out->width = fw;
    out->height = fh;
    out->channels = ch;
    out->pixels = px;
    return 0;
}

/* Progressive: all scans are in; run the IDCTs into the planes, releasing each coefficient buffer
 * before the next plane is allocated (keeps the peak lower). */
static int finish_progressive(dec_t *d) {
    for (int i = 0; i < d->ncomp; i++) {
        comp_t *c = &d->c[i];
        if (!c->qlatched) { /* never scanned: no quantization table was latched; zeros decode as 128 */
            if (!d->qdef[c->tq]) return fail(d, E_NO_QTABLE);
            memcpy(c->q, d->qt[c->tq], sizeof c->q);
        }
        c->plane = malloc((size_t)c->stride * c->ph);
        if (!c->plane) return fail(d, E_OOM);
        for (uint32_t by = 0; by < c->bh; by++)
            for (uint32_t bx = 0; bx < c->bw; bx++)
                idct_block(c->coefs + ((size_t)by * c->bw + bx) * 64, c->q, c->ss,
                           c->plane + (size_t)by * c->ss * c->stride + (size_t)bx * c->ss, c->stride);
        free(c->coefs);
        c->coefs = NULL;
        free(c->nzmap);
        c->nzmap = NULL;
    }
    return 0;
}

static void release(dec_t *d) {
    for (int i = 0; i < MAX_COMPS; i++) {
        free(d->c[i].coefs);
        free(d->c[i].nzmap);
        free(d->c[i].plane);
        free(d->c[i].row);
    }
    free(d);
}

int waft_jpeg_decode(const uint8_t *data, size_t len, uint32_t scale_denom, uint64_t max_pixels,
                     waft_image *out, const char **err) {
    static const char *dummy;
    if (!err) err = &dummy;
    *err = NULL;
    if (!out) return *err = E_ARGS, -1;
    memset(out, 0, sizeof *out);
    if (!data && len) return *err = E_ARGS, -1;
    if (scale_denom != 1 && scale_denom != 2 && scale_denom != 4 && scale_denom != 8) return *err = E_SCALE, -1;
    dec_t *d = calloc(1, sizeof *d); /* ~12 KB of tables: too big for a 64 KiB stack */
    if (!d) return *err = E_OOM, -1;
    d->data = data;
    d->len = len;
    d->scale = scale_denom;
    d->max_pixels = max_pixels;
    d->orientation = 1;
    build_idct_limit();
    int rc = parse(d);
    if (rc == 0 && d->progressive) rc = finish_progressive(d);
    if (rc == 0) {
        /* Components that never got a scan (a truncated-but-tolerated or odd file) are mid-grey. */
        for (int i = 0; i < d->ncomp; i++)
            if (!d->progressive && !d->c[i].scanned) memset(d->c[i].plane, 128, (size_t)d->c[i].stride * d->c[i].ph);
        rc = emit(d, out);
    }
    if (rc != 0) *err = d->err ? d->err : E_OOM;
    release(d);
    return rc == 0 ? 0 : -1;
}

int waft_jpeg_info(const uint8_t *data, size_t len, uint32_t *width, uint32_t *height, uint32_t *orientation,
                   const char **err) {
    static const char *dummy;
    if (!err) err = &dummy;
    *err = NULL;
    if (!data && len) return *err = E_ARGS, -1;
    dec_t *d = calloc(1, sizeof *d);
    if (!d) return *err = E_OOM, -1;
    d->data = data;
    d->len = len;
    d->info_only = 1;
    d->orientation = 1;
    int rc = parse(d);
    if (rc == 0) {
        if (width) *width = d->W;
        if (height) *height = d->H;
        if (orientation) *orientation = d->orientation;
    } else {
        *err = d->err;
    }
    release(d);
    return rc == 0 ? 0 : -1;
}
