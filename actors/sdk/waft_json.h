/* JSON writer and base64.
 *
 * Actors answer HTTP clients in JSON, so the writer guarantees valid output whatever the input:
 * strings are escaped per RFC 8259 and invalid UTF-8 is replaced by U+FFFD (bytes from the wire are
 * not always text). Commas are inserted automatically, so callers just emit keys and values in order.
 */
#ifndef WAFT_JSON_H
#define WAFT_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "waft_buf.h"

#define WAFT_JSON_MAX_DEPTH 32

typedef struct {
    waft_buf *out;
    int depth;
    uint8_t has_items[WAFT_JSON_MAX_DEPTH + 1]; /* per level: a comma is due before the next item */
    int after_key;                               /* a key was just written: the value needs no comma */
} waft_json;

void waft_json_init(waft_json *j, waft_buf *out);
/* Nesting beyond WAFT_JSON_MAX_DEPTH marks the buffer failed rather than writing broken JSON. */
void waft_json_object_begin(waft_json *j);
void waft_json_object_end(waft_json *j);
void waft_json_array_begin(waft_json *j);
void waft_json_array_end(waft_json *j);
void waft_json_key(waft_json *j, const char *key, size_t len);
void waft_json_key_c(waft_json *j, const char *key);
void waft_json_string(waft_json *j, const char *s, size_t len);
void waft_json_string_c(waft_json *j, const char *s);
void waft_json_u64(waft_json *j, uint64_t v);
void waft_json_i64(waft_json *j, int64_t v);
/* Shortest decimal that round-trips the double; NaN and infinities, which JSON lacks, become null. */
void waft_json_f64(waft_json *j, double v);
/* Shortest decimal that round-trips the float: tensors are f32, and "0.71" beats "0.709999979". */
void waft_json_f32(waft_json *j, float v);
void waft_json_bool(waft_json *j, int v);
void waft_json_null(waft_json *j);
/* A JSON string holding the standard base64 (with padding) of `data`: binary in JSON bodies. */
void waft_json_base64(waft_json *j, const void *data, size_t len);
/* Append raw, already valid JSON as one value (for pre-rendered fragments). */
void waft_json_raw(waft_json *j, const char *json, size_t len);

/* Escaped string contents (no quotes) appended to a plain buffer. */
void waft_json_escape(waft_buf *out, const char *s, size_t len);
/* Standard base64 with padding appended to a plain buffer. */
void waft_base64_encode(waft_buf *out, const void *data, size_t len);
/* Decode standard base64 (padding optional, no whitespace). Returns 0, or -1 on invalid input. */
int waft_base64_decode(waft_buf *out, const char *text, size_t len);

#endif
