#include "waft_buf.h"

#include <stdlib.h>
#include <string.h>

void waft_buf_init(waft_buf *b) {
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->failed = 0;
}

void waft_buf_free(waft_buf *b) {
    free(b->data);
    waft_buf_init(b);
}

void waft_buf_reset(waft_buf *b) {
    b->len = 0;
    b->failed = 0;
}

int waft_buf_reserve(waft_buf *b, size_t extra) {
    if (b->failed) return -1;
    if (extra <= b->cap - b->len) return 0;
    if (extra > SIZE_MAX - b->len) {
        b->failed = 1;
        return -1;
    }
    size_t need = b->len + extra;
    /* Capacities are 2^k - 32: zig's wasm libc malloc rounds every request plus a ~20-byte header
     * up to a power of two, so exact powers of two would each take a slot twice their size. */
    size_t cap = b->cap ? b->cap : 96;
    while (cap < need) {
        if (cap > SIZE_MAX / 2 - 32) {
            cap = need;
            break;
        }
        cap = (cap + 32) * 2 - 32;
    }
    uint8_t *data = realloc(b->data, cap);
    if (!data) {
        b->failed = 1;
        return -1;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

int waft_buf_append(waft_buf *b, const void *data, size_t len) {
    if (len == 0) return b->failed ? -1 : 0;
    if (waft_buf_reserve(b, len) != 0) return -1;
    memcpy(b->data + b->len, data, len);
    b->len += len;
    return 0;
}

int waft_buf_push(waft_buf *b, uint8_t byte) {
    if (waft_buf_reserve(b, 1) != 0) return -1;
    b->data[b->len++] = byte;
    return 0;
}

int waft_buf_append_str(waft_buf *b, const char *s) {
    return waft_buf_append(b, s, strlen(s));
}

int waft_buf_append_u64(waft_buf *b, uint64_t v) {
    char digits[20];
    size_t n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    char out[20];
    for (size_t i = 0; i < n; i++) out[i] = digits[n - 1 - i];
    return waft_buf_append(b, out, n);
}
