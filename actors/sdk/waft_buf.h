/* Growable byte buffer: the one place the SDK allocates output.
 *
 * Failure is sticky: once an append cannot allocate, `failed` is set and every later append is a
 * no-op. Writers (msgpack, JSON, HTTP) can therefore emit a whole structure and check once at the
 * end, instead of testing every call; the waPC glue turns a failed buffer into a guest error.
 */
#ifndef WAFT_BUF_H
#define WAFT_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint8_t *data;  /* malloc'd; NULL while empty */
    size_t len;
    size_t cap;
    int failed;     /* non-zero after an allocation failure (sticky) */
} waft_buf;

#define WAFT_BUF_INIT {0, 0, 0, 0}

void waft_buf_init(waft_buf *b);
void waft_buf_free(waft_buf *b);
/* Forget the contents (and a previous failure) but keep the allocation for reuse. */
void waft_buf_reset(waft_buf *b);
/* Make room for `extra` more bytes; returns 0, or -1 (and sets `failed`) when out of memory. */
int waft_buf_reserve(waft_buf *b, size_t extra);
int waft_buf_append(waft_buf *b, const void *data, size_t len);
int waft_buf_push(waft_buf *b, uint8_t byte);
/* Append a NUL-terminated string (without its NUL). */
int waft_buf_append_str(waft_buf *b, const char *s);
/* Append an unsigned integer in decimal: error messages need numbers and printf is 10+ KB of wasm. */
int waft_buf_append_u64(waft_buf *b, uint64_t v);

#endif
