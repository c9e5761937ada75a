#include "waft_json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void waft_json_init(waft_json *j, waft_buf *out) {
    memset(j, 0, sizeof *j);
    j->out = out;
}

/* Comma bookkeeping before any value or key. */
static void before_item(waft_json *j) {
    if (j->after_key) {
        j->after_key = 0;
        return;
    }
    if (j->has_items[j->depth]) waft_buf_push(j->out, ',');
    j->has_items[j->depth] = 1;
}

static void open_level(waft_json *j, char c) {
    before_item(j);
    if (j->depth >= WAFT_JSON_MAX_DEPTH) {
        j->out->failed = 1;
        return;
    }
    waft_buf_push(j->out, (uint8_t)c);
    j->depth++;
    j->has_items[j->depth] = 0;
}

static void close_level(waft_json *j, char c) {
    if (j->depth > 0) j->depth--;
    j->after_key = 0;
    waft_buf_push(j->out, (uint8_t)c);
}

void waft_json_object_begin(waft_json *j) { open_level(j, '{'); }
void waft_json_object_end(waft_json *j) { close_level(j, '}'); }
void waft_json_array_begin(waft_json *j) { open_level(j, '['); }
void waft_json_array_end(waft_json *j) { close_level(j, ']'); }

/* Length of the valid UTF-8 sequence at s (1-4), or 0 if the bytes there are not valid UTF-8
 * (overlongs, surrogates and code points above U+10FFFF included: Python's decoder rejects them). */
static size_t utf8_seq(const uint8_t *s, size_t left) {
    uint8_t c = s[0];
    if (c < 0x80) return 1;
    size_t n;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) { n = 2; cp = c & 0x1f; }
    else if (c >= 0xe0 && c <= 0xef) { n = 3; cp = c & 0x0f; }
    else if (c >= 0xf0 && c <= 0xf4) { n = 4; cp = c & 0x07; }
    else return 0;
    if (left < n) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) return 0;
    if (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) return 0;
    return n;
}

void waft_json_escape(waft_buf *out, const char *text, size_t len) {
    static const char hex[] = "0123456789abcdef";
    const uint8_t *s = (const uint8_t *)text;
    size_t i = 0;
    while (i < len) {
        /* Copy the longest run that needs no escaping in one append. */
        size_t run = i;
        while (run < len && s[run] >= 0x20 && s[run] < 0x80 && s[run] != '"' && s[run] != '\\') run++;
        waft_buf_append(out, s + i, run - i);
        i = run;
        if (i >= len) break;
        uint8_t c = s[i];
        if (c >= 0x80) {
            size_t n = utf8_seq(s + i, len - i);
            if (n) waft_buf_append(out, s + i, n);
            else waft_buf_append(out, "\xef\xbf\xbd", 3); /* U+FFFD for each bad byte */
            i += n ? n : 1;
            continue;
        }
        switch (c) {
        case '"': waft_buf_append(out, "\\\"", 2); break;
        case '\\': waft_buf_append(out, "\\\\", 2); break;
        case '\n': waft_buf_append(out, "\\n", 2); break;
        case '\r': waft_buf_append(out, "\\r", 2); break;
        case '\t': waft_buf_append(out, "\\t", 2); break;
        case '\b': waft_buf_append(out, "\\b", 2); break;
        case '\f': waft_buf_append(out, "\\f", 2); break;
        default: {
            char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            waft_buf_append(out, u, 6);
        }
        }
        i++;
    }
}

void waft_json_key(waft_json *j, const char *key, size_t len) {
    before_item(j);
    waft_buf_push(j->out, '"');
    waft_json_escape(j->out, key, len);
    waft_buf_append(j->out, "\":", 2);
    j->after_key = 1;
}

void waft_json_key_c(waft_json *j, const char *key) { waft_json_key(j, key, strlen(key)); }

void waft_json_string(waft_json *j, const char *s, size_t len) {
    before_item(j);
    waft_buf_push(j->out, '"');
    waft_json_escape(j->out, s, len);
    waft_buf_push(j->out, '"');
}

void waft_json_string_c(waft_json *j, const char *s) { waft_json_string(j, s, strlen(s)); }

void waft_json_u64(waft_json *j, uint64_t v) {
    before_item(j);
    waft_buf_append_u64(j->out, v);
}

void waft_json_i64(waft_json *j, int64_t v) {
    before_item(j);
    if (v < 0) {
        waft_buf_push(j->out, '-');
        waft_buf_append_u64(j->out, (uint64_t)0 - (uint64_t)v);
    } else {
        waft_buf_append_u64(j->out, (uint64_t)v);
    }
}

/* Shortest decimal that parses back to the same value: try precisions from 1 up to `hi` (which
 * always round-trips: 9 digits for f32, 17 for f64). Clients then see 0.71, not 0.709999979.
 * Starting at 1, not 6/15: subnormals carry fewer digits (the smallest f32 is 1e-45, not 1.4013e-45),
 * and the original's f32 Display (ryu) printed the shortest form. */
static void write_float(waft_json *j, double v, int is_f32) {
    before_item(j);
    if (!isfinite(v)) {
        waft_buf_append(j->out, "null", 4);
        return;
    }
    char tmp[32];
    int n = 0;
    int hi = is_f32 ? 9 : 17;
    for (int precision = 1; precision <= hi; precision++) {
        n = snprintf(tmp, sizeof tmp, "%.*g", precision, v);
        if (n <= 0 || (size_t)n >= sizeof tmp) break;
        if (is_f32 ? strtof(tmp, NULL) == (float)v : strtod(tmp, NULL) == v) break;
    }
    if (n > 0 && (size_t)n < sizeof tmp) waft_buf_append(j->out, tmp, (size_t)n);
    else j->out->failed = 1;
}

void waft_json_f64(waft_json *j, double v) { write_float(j, v, 0); }
void waft_json_f32(waft_json *j, float v) { write_float(j, (double)v, 1); }

void waft_json_bool(waft_json *j, int v) {
    before_item(j);
    if (v) waft_buf_append(j->out, "true", 4);
    else waft_buf_append(j->out, "false", 5);
}

void waft_json_null(waft_json *j) {
    before_item(j);
    waft_buf_append(j->out, "null", 4);
}

void waft_json_raw(waft_json *j, const char *json, size_t len) {
    before_item(j);
    waft_buf_append(j->out, json, len);
}

void waft_json_base64(waft_json *j, const void *data, size_t len) {
    before_item(j);
    waft_buf_push(j->out, '"');
    waft_base64_encode(j->out, data, len);
    waft_buf_push(j->out, '"');
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void waft_base64_encode(waft_buf *out, const void *data, size_t len) {
    const uint8_t *s = data;
    size_t groups = (len + 2) / 3;
    if (groups > (SIZE_MAX - 1) / 4 || waft_buf_reserve(out, groups * 4) != 0) {
        out->failed = 1;
        return;
    }
    uint8_t *d = out->data + out->len;
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        *d++ = (uint8_t)B64[v >> 18];
        *d++ = (uint8_t)B64[(v >> 12) & 63];
        *d++ = (uint8_t)B64[(v >> 6) & 63];
        *d++ = (uint8_t)B64[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < len ? (uint32_t)s[i + 1] << 8 : 0);
        *d++ = (uint8_t)B64[v >> 18];
        *d++ = (uint8_t)B64[(v >> 12) & 63];
        *d++ = i + 1 < len ? (uint8_t)B64[(v >> 6) & 63] : '=';
        *d++ = '=';
    }
    out->len += groups * 4;
}

static int b64_value(uint8_t c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

int waft_base64_decode(waft_buf *out, const char *text, size_t len) {
    const uint8_t *s = (const uint8_t *)text;
    while (len && s[len - 1] == '=') len--; /* padding is optional: strip it, then count */
    if (len % 4 == 1) return -1;
    if (waft_buf_reserve(out, len / 4 * 3 + 2) != 0) return -1;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value(s[i]);
        if (v < 0) return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out->data[out->len++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    return 0;
}
