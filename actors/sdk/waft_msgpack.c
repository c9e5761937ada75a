#include "waft_msgpack.h"

#include <string.h>

void waft_mp_reader_init(waft_mp_reader *r, const void *data, size_t len) {
    r->data = data;
    r->len = len;
    r->pos = 0;
    r->err = NULL;
}

int waft_mp_fail(waft_mp_reader *r, const char *msg) {
    if (!r->err) r->err = msg;
    return 0;
}

int waft_mp_at_end(const waft_mp_reader *r) { return r->pos >= r->len; }

static size_t remaining(const waft_mp_reader *r) { return r->len - r->pos; }

/* Big-endian load of n (1, 2, 4, 8) bytes at the cursor; caller has checked they exist. */
static uint64_t load_be(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = (v << 8) | p[i];
    return v;
}

/* Consume the marker plus an n-byte big-endian argument. */
static int take_be(waft_mp_reader *r, int n, uint64_t *out) {
    if (remaining(r) < (size_t)n + 1) return waft_mp_fail(r, "truncated msgpack value");
    *out = load_be(r->data + r->pos + 1, n);
    r->pos += (size_t)n + 1;
    return 1;
}

waft_mp_type waft_mp_peek(const waft_mp_reader *r) {
    if (r->err || r->pos >= r->len) return WAFT_MP_INVALID;
    uint8_t m = r->data[r->pos];
    if (m <= 0x7f) return WAFT_MP_UINT;
    if (m <= 0x8f) return WAFT_MP_MAP;
    if (m <= 0x9f) return WAFT_MP_ARRAY;
    if (m <= 0xbf) return WAFT_MP_STR;
    if (m >= 0xe0) return WAFT_MP_INT;
    switch (m) {
    case 0xc0: return WAFT_MP_NIL;
    case 0xc2: case 0xc3: return WAFT_MP_BOOL;
    case 0xc4: case 0xc5: case 0xc6: return WAFT_MP_BIN;
    case 0xc7: case 0xc8: case 0xc9: return WAFT_MP_EXT;
    case 0xca: case 0xcb: return WAFT_MP_FLOAT;
    case 0xcc: case 0xcd: case 0xce: case 0xcf: return WAFT_MP_UINT;
    case 0xd0: case 0xd1: case 0xd2: case 0xd3: return WAFT_MP_INT;
    case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8: return WAFT_MP_EXT;
    case 0xd9: case 0xda: case 0xdb: return WAFT_MP_STR;
    case 0xdc: case 0xdd: return WAFT_MP_ARRAY;
    case 0xde: case 0xdf: return WAFT_MP_MAP;
    default: return WAFT_MP_INVALID;
    }
}

static int need_marker(waft_mp_reader *r) {
    if (r->err) return 0;
    if (r->pos >= r->len) return waft_mp_fail(r, "truncated msgpack: value expected");
    return 1;
}

int waft_mp_read_nil(waft_mp_reader *r) {
    if (!need_marker(r)) return 0;
    if (r->data[r->pos] != 0xc0) return waft_mp_fail(r, "msgpack nil expected");
    r->pos++;
    return 1;
}

int waft_mp_read_bool(waft_mp_reader *r, int *out) {
    if (!need_marker(r)) return 0;
    uint8_t m = r->data[r->pos];
    if (m != 0xc2 && m != 0xc3) return waft_mp_fail(r, "msgpack bool expected");
    *out = m == 0xc3;
    r->pos++;
    return 1;
}

/* Reads any integer as sign + magnitude so u64 and i64 values both survive intact. */
static int read_integer(waft_mp_reader *r, int *negative, uint64_t *magnitude) {
    if (!need_marker(r)) return 0;
    uint8_t m = r->data[r->pos];
    uint64_t raw;
    *negative = 0;
    if (m <= 0x7f) {
        *magnitude = m;
        r->pos++;
        return 1;
    }
    if (m >= 0xe0) {
        *negative = 1;
        *magnitude = (uint64_t)(256 - m);
        r->pos++;
        return 1;
    }
    switch (m) {
    case 0xcc: return take_be(r, 1, magnitude);
    case 0xcd: return take_be(r, 2, magnitude);
    case 0xce: return take_be(r, 4, magnitude);
    case 0xcf: return take_be(r, 8, magnitude);
    case 0xd0: case 0xd1: case 0xd2: case 0xd3: {
        int n = 1 << (m - 0xd0);
        if (!take_be(r, n, &raw)) return 0;
        int bits = n * 8;
        uint64_t sign = (uint64_t)1 << (bits - 1);
        if (raw & sign) {
            *negative = 1;
            /* two's complement magnitude within `bits`; 0 - raw mod 2^bits */
            uint64_t mask = bits == 64 ? UINT64_MAX : (((uint64_t)1 << bits) - 1);
            *magnitude = ((~raw) + 1) & mask;
        } else {
            *magnitude = raw;
        }
        return 1;
    }
    default:
        return waft_mp_fail(r, "msgpack integer expected");
    }
}

int waft_mp_read_u64(waft_mp_reader *r, uint64_t *out) {
    int neg;
    uint64_t mag;
    size_t start = r->pos;
    if (!read_integer(r, &neg, &mag)) return 0;
    if (neg && mag != 0) {
        r->pos = start;
        return waft_mp_fail(r, "negative integer where an unsigned one is expected");
    }
    *out = mag;
    return 1;
}

int waft_mp_read_i64(waft_mp_reader *r, int64_t *out) {
    int neg;
    uint64_t mag;
    if (!read_integer(r, &neg, &mag)) return 0;
    if (!neg) {
        if (mag > (uint64_t)INT64_MAX) return waft_mp_fail(r, "integer out of range");
        *out = (int64_t)mag;
    } else {
        if (mag > (uint64_t)INT64_MAX + 1) return waft_mp_fail(r, "integer out of range");
        *out = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
    }
    return 1;
}

int waft_mp_read_u32(waft_mp_reader *r, uint32_t *out) {
    uint64_t v;
    if (!waft_mp_read_u64(r, &v)) return 0;
    if (v > UINT32_MAX) return waft_mp_fail(r, "integer out of range for u32");
    *out = (uint32_t)v;
    return 1;
}

int waft_mp_read_f64(waft_mp_reader *r, double *out) {
    if (!need_marker(r)) return 0;
    uint8_t m = r->data[r->pos];
    uint64_t raw;
    if (m == 0xca) {
        if (!take_be(r, 4, &raw)) return 0;
        uint32_t bits = (uint32_t)raw;
        float f;
        memcpy(&f, &bits, 4);
        *out = f;
        return 1;
    }
    if (m == 0xcb) {
        if (!take_be(r, 8, &raw)) return 0;
        memcpy(out, &raw, 8);
        return 1;
    }
    int64_t i;
    if (waft_mp_peek(r) == WAFT_MP_INT || waft_mp_peek(r) == WAFT_MP_UINT) {
        if (waft_mp_peek(r) == WAFT_MP_UINT) {
            uint64_t u;
            if (!waft_mp_read_u64(r, &u)) return 0;
            *out = (double)u;
            return 1;
        }
        if (!waft_mp_read_i64(r, &i)) return 0;
        *out = (double)i;
        return 1;
    }
    return waft_mp_fail(r, "msgpack number expected");
}

/* Length header of a str (is_str) or bin; leaves the cursor on the first content byte. */
static int read_blob_header(waft_mp_reader *r, int want_str, int want_bin, uint32_t *len) {
    if (!need_marker(r)) return 0;
    uint8_t m = r->data[r->pos];
    uint64_t n;
    if (want_str && m >= 0xa0 && m <= 0xbf) {
        n = m & 0x1f;
        r->pos++;
    } else if (want_str && m >= 0xd9 && m <= 0xdb) {
        if (!take_be(r, 1 << (m - 0xd9), &n)) return 0;
    } else if (want_bin && m >= 0xc4 && m <= 0xc6) {
        if (!take_be(r, 1 << (m - 0xc4), &n)) return 0;
    } else {
        return waft_mp_fail(r, want_bin ? "msgpack bytes (bin or str) expected" : "msgpack str expected");
    }
    if (n > remaining(r)) return waft_mp_fail(r, "msgpack length runs past the end of the payload");
    *len = (uint32_t)n;
    return 1;
}

int waft_mp_read_str(waft_mp_reader *r, const char **s, uint32_t *len) {
    if (!read_blob_header(r, 1, 0, len)) return 0;
    *s = (const char *)r->data + r->pos;
    r->pos += *len;
    return 1;
}

int waft_mp_read_bytes(waft_mp_reader *r, const uint8_t **b, uint32_t *len) {
    if (!read_blob_header(r, 1, 1, len)) return 0;
    *b = r->data + r->pos;
    r->pos += *len;
    return 1;
}

/* Shared by array and map headers. */
static int read_container(waft_mp_reader *r, int is_map, uint32_t *count) {
    if (!need_marker(r)) return 0;
    uint8_t m = r->data[r->pos];
    uint64_t n;
    uint8_t fix_lo = is_map ? 0x80 : 0x90;
    uint8_t m16 = is_map ? 0xde : 0xdc;
    if (m >= fix_lo && m <= fix_lo + 0x0f) {
        n = m & 0x0f;
        r->pos++;
    } else if (m == m16) {
        if (!take_be(r, 2, &n)) return 0;
    } else if (m == m16 + 1) {
        if (!take_be(r, 4, &n)) return 0;
    } else {
        return waft_mp_fail(r, is_map ? "msgpack map expected" : "msgpack array expected");
    }
    /* A count that cannot fit in the bytes left is hostile or truncated: refuse it before anyone
     * sizes an allocation from it. */
    uint64_t min_bytes = is_map ? n * 2 : n;
    if (min_bytes > remaining(r)) return waft_mp_fail(r, "msgpack element count runs past the end of the payload");
    *count = (uint32_t)n;
    return 1;
}

int waft_mp_read_array(waft_mp_reader *r, uint32_t *count) { return read_container(r, 0, count); }
int waft_mp_read_map(waft_mp_reader *r, uint32_t *count) { return read_container(r, 1, count); }

/* Advance past `n` content bytes after a header. */
static int skip_bytes(waft_mp_reader *r, uint64_t n) {
    if (n > remaining(r)) return waft_mp_fail(r, "msgpack length runs past the end of the payload");
    r->pos += (size_t)n;
    return 1;
}

static int skip_value(waft_mp_reader *r, int depth) {
    if (!need_marker(r)) return 0;
    if (depth > WAFT_MP_MAX_DEPTH) return waft_mp_fail(r, "msgpack nested too deeply");
    uint8_t m = r->data[r->pos];
    uint64_t n;
    uint32_t count;
    switch (waft_mp_peek(r)) {
    case WAFT_MP_NIL:
    case WAFT_MP_BOOL:
        r->pos++;
        return 1;
    case WAFT_MP_UINT:
    case WAFT_MP_INT: {
        int neg;
        return read_integer(r, &neg, &n);
    }
    case WAFT_MP_FLOAT:
        return skip_bytes(r, m == 0xca ? 5 : 9);
    case WAFT_MP_STR:
    case WAFT_MP_BIN: {
        const uint8_t *b;
        return waft_mp_read_bytes(r, &b, &count);
    }
    case WAFT_MP_ARRAY:
    case WAFT_MP_MAP: {
        int is_map = waft_mp_peek(r) == WAFT_MP_MAP;
        if (!read_container(r, is_map, &count)) return 0;
        uint64_t items = is_map ? (uint64_t)count * 2 : count;
        for (uint64_t i = 0; i < items; i++)
            if (!skip_value(r, depth + 1)) return 0;
        return 1;
    }
    case WAFT_MP_EXT:
        if (m >= 0xd4 && m <= 0xd8) return skip_bytes(r, 2 + ((uint64_t)1 << (m - 0xd4)));
        /* ext 8/16/32: length, then a type byte, then the data */
        if (!take_be(r, 1 << (m - 0xc7), &n)) return 0;
        return skip_bytes(r, n + 1);
    default:
        return waft_mp_fail(r, "invalid msgpack marker");
    }
}

int waft_mp_skip(waft_mp_reader *r) { return skip_value(r, 0); }

int waft_mp_key_is(const char *s, uint32_t len, const char *lit) {
    size_t n = strlen(lit);
    return n == len && memcmp(s, lit, n) == 0;
}

/* ---- writer ---- */

static void put_be(waft_buf *b, uint8_t marker, uint64_t v, int n) {
    uint8_t tmp[9];
    tmp[0] = marker;
    for (int i = 0; i < n; i++) tmp[1 + i] = (uint8_t)(v >> (8 * (n - 1 - i)));
    waft_buf_append(b, tmp, (size_t)n + 1);
}

void waft_mp_write_nil(waft_buf *b) { waft_buf_push(b, 0xc0); }
void waft_mp_write_bool(waft_buf *b, int v) { waft_buf_push(b, v ? 0xc3 : 0xc2); }

void waft_mp_write_u64(waft_buf *b, uint64_t v) {
    if (v <= 0x7f) waft_buf_push(b, (uint8_t)v);
    else if (v <= 0xff) put_be(b, 0xcc, v, 1);
    else if (v <= 0xffff) put_be(b, 0xcd, v, 2);
    else if (v <= 0xffffffffu) put_be(b, 0xce, v, 4);
    else put_be(b, 0xcf, v, 8);
}

void waft_mp_write_i64(waft_buf *b, int64_t v) {
    if (v >= 0) {
        waft_mp_write_u64(b, (uint64_t)v);
        return;
    }
    if (v >= -32) waft_buf_push(b, (uint8_t)(int8_t)v);
    else if (v >= INT8_MIN) put_be(b, 0xd0, (uint64_t)v & 0xff, 1);
    else if (v >= INT16_MIN) put_be(b, 0xd1, (uint64_t)v & 0xffff, 2);
    else if (v >= INT32_MIN) put_be(b, 0xd2, (uint64_t)v & 0xffffffffu, 4);
    else put_be(b, 0xd3, (uint64_t)v, 8);
}

void waft_mp_write_f32(waft_buf *b, float v) {
    uint32_t bits;
    memcpy(&bits, &v, 4);
    put_be(b, 0xca, bits, 4);
}

void waft_mp_write_f64(waft_buf *b, double v) {
    uint64_t bits;
    memcpy(&bits, &v, 8);
    put_be(b, 0xcb, bits, 8);
}

static void blob_header(waft_buf *b, size_t len, int is_str) {
    if (len > UINT32_MAX) {
        b->failed = 1; /* msgpack cannot express it; report like an allocation failure */
        return;
    }
    if (is_str && len <= 31) waft_buf_push(b, (uint8_t)(0xa0 | len));
    else if (len <= 0xff) put_be(b, is_str ? 0xd9 : 0xc4, len, 1);
    else if (len <= 0xffff) put_be(b, is_str ? 0xda : 0xc5, len, 2);
    else put_be(b, is_str ? 0xdb : 0xc6, len, 4);
}

void waft_mp_write_str(waft_buf *b, const char *s, size_t len) {
    blob_header(b, len, 1);
    waft_buf_append(b, s, len);
}

void waft_mp_write_cstr(waft_buf *b, const char *s) { waft_mp_write_str(b, s, strlen(s)); }

void waft_mp_write_bin(waft_buf *b, const void *data, size_t len) {
    blob_header(b, len, 0);
    waft_buf_append(b, data, len);
}

void waft_mp_write_array(waft_buf *b, uint32_t count) {
    if (count <= 15) waft_buf_push(b, (uint8_t)(0x90 | count));
    else if (count <= 0xffff) put_be(b, 0xdc, count, 2);
    else put_be(b, 0xdd, count, 4);
}

void waft_mp_write_map(waft_buf *b, uint32_t count) {
    if (count <= 15) waft_buf_push(b, (uint8_t)(0x80 | count));
    else if (count <= 0xffff) put_be(b, 0xde, count, 2);
    else put_be(b, 0xdf, count, 4);
}
