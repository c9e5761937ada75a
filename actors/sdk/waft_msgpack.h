/* MessagePack reader and writer.
 *
 * Every wasmCloud interface payload is msgpack, and the reader parses bytes that come from outside
 * the sandbox (HTTP clients, other actors), so it is strictly bounded: it never reads past `len`,
 * rejects declared lengths that cannot fit in what is left, limits nesting depth, and reports the
 * first problem in `err` instead of crashing. Errors are sticky, like waft_buf failures: decode a
 * whole struct, then check `r.err` once.
 *
 * Strings and byte strings are returned as views into the input (no copy, not NUL-terminated),
 * because payloads can be megabytes and the input outlives the handler call.
 */
#ifndef WAFT_MSGPACK_H
#define WAFT_MSGPACK_H

#include <stddef.h>
#include <stdint.h>

#include "waft_buf.h"

/* Deepest nesting waft_mp_skip follows; deeper input is reported as malformed, not recursed into. */
#define WAFT_MP_MAX_DEPTH 64

typedef enum {
    WAFT_MP_NIL,
    WAFT_MP_BOOL,
    WAFT_MP_UINT,   /* positive fixint, uint 8..64 */
    WAFT_MP_INT,    /* negative fixint, int 8..64 (may still hold a non-negative value) */
    WAFT_MP_FLOAT,  /* float 32 / 64 */
    WAFT_MP_STR,
    WAFT_MP_BIN,
    WAFT_MP_ARRAY,
    WAFT_MP_MAP,
    WAFT_MP_EXT,
    WAFT_MP_INVALID /* 0xc1 (never used), or no bytes left */
} waft_mp_type;

typedef struct {
    const uint8_t *data;
    size_t len;
    size_t pos;
    const char *err; /* NULL while all is well; a static message after the first failure */
} waft_mp_reader;

void waft_mp_reader_init(waft_mp_reader *r, const void *data, size_t len);
/* Record a failure (keeps the first one); decoders use it for schema errors too. Returns 0. */
int waft_mp_fail(waft_mp_reader *r, const char *msg);
/* Type of the next value without consuming it. */
waft_mp_type waft_mp_peek(const waft_mp_reader *r);
int waft_mp_at_end(const waft_mp_reader *r);

/* Each reader returns 1 on success, 0 on failure (type mismatch, truncation: see r->err). */
int waft_mp_read_nil(waft_mp_reader *r);
int waft_mp_read_bool(waft_mp_reader *r, int *out);
/* Any integer encoding whose value fits the destination. */
int waft_mp_read_u64(waft_mp_reader *r, uint64_t *out);
int waft_mp_read_i64(waft_mp_reader *r, int64_t *out);
int waft_mp_read_u32(waft_mp_reader *r, uint32_t *out);
/* float 32/64, and integers (JSON-born payloads often carry 1 for 1.0). */
int waft_mp_read_f64(waft_mp_reader *r, double *out);
int waft_mp_read_str(waft_mp_reader *r, const char **s, uint32_t *len);
/* bin OR str: wasmCloud's OTP host writes arbitrary bytes as msgpack str (protocol gotcha #1). */
int waft_mp_read_bytes(waft_mp_reader *r, const uint8_t **b, uint32_t *len);
/* Container headers; the count is checked against the bytes left (each element needs >= 1 byte). */
int waft_mp_read_array(waft_mp_reader *r, uint32_t *count);
int waft_mp_read_map(waft_mp_reader *r, uint32_t *count);
/* Skip one complete value of any type (unknown map keys, fields we do not use). */
int waft_mp_skip(waft_mp_reader *r);
/* 1 when the str/bin view equals the NUL-terminated `lit` (for matching map keys). */
int waft_mp_key_is(const char *s, uint32_t len, const char *lit);

/* Writers append to a waft_buf; failures are the buffer's sticky `failed` flag. Integers use the
 * smallest encoding, as rmp_serde and msgpack-python do, so outputs compare byte for byte. */
void waft_mp_write_nil(waft_buf *b);
void waft_mp_write_bool(waft_buf *b, int v);
void waft_mp_write_u64(waft_buf *b, uint64_t v);
void waft_mp_write_i64(waft_buf *b, int64_t v);
void waft_mp_write_f32(waft_buf *b, float v);
void waft_mp_write_f64(waft_buf *b, double v);
void waft_mp_write_str(waft_buf *b, const char *s, size_t len);
void waft_mp_write_cstr(waft_buf *b, const char *s);
void waft_mp_write_bin(waft_buf *b, const void *data, size_t len);
void waft_mp_write_array(waft_buf *b, uint32_t count);
void waft_mp_write_map(waft_buf *b, uint32_t count);

#endif
