#include "waft_http.h"

#include <stdlib.h>
#include <string.h>

#include "waft_msgpack.h"
#include "waft_wapc.h"

static void free_headers(waft_http_header *headers, uint32_t n) {
    if (!headers) return;
    for (uint32_t i = 0; i < n; i++) free(headers[i].values);
    free(headers);
}

/* Read a str-or-bin field into a view (servers and hosts disagree on which one they send). */
static int read_text(waft_mp_reader *r, waft_str *out) {
    const uint8_t *p;
    uint32_t n;
    if (!waft_mp_read_bytes(r, &p, &n)) return 0;
    out->ptr = (const char *)p;
    out->len = n;
    return 1;
}

/* header: map<str, list<str>>; a bare string value is taken as a one-element list, because some
 * clients flatten single-valued headers and rejecting them would help nobody. */
static int read_headers(waft_mp_reader *r, waft_http_request *req) {
    if (waft_mp_peek(r) == WAFT_MP_NIL) return waft_mp_read_nil(r);
    uint32_t n;
    if (!waft_mp_read_map(r, &n)) return 0;
    if (n == 0) return 1;
    /* read_map proved n entries fit in the payload, so this allocation is bounded by its size */
    req->headers = calloc(n, sizeof *req->headers);
    if (!req->headers) return waft_mp_fail(r, "out of memory decoding headers");
    for (uint32_t i = 0; i < n; i++) {
        waft_http_header *h = &req->headers[i];
        req->n_headers = i + 1; /* count it now so a failure below frees its values */
        if (!read_text(r, &h->name)) return 0;
        uint32_t m = 1;
        int single = waft_mp_peek(r) == WAFT_MP_STR || waft_mp_peek(r) == WAFT_MP_BIN;
        if (!single && !waft_mp_read_array(r, &m)) return waft_mp_fail(r, "header values must be a list of strings");
        if (m == 0) continue;
        h->values = calloc(m, sizeof *h->values);
        if (!h->values) return waft_mp_fail(r, "out of memory decoding headers");
        h->n_values = m;
        for (uint32_t k = 0; k < m; k++)
            if (!read_text(r, &h->values[k])) return waft_mp_fail(r, "header values must be strings");
    }
    return 1;
}

int waft_http_request_decode(const uint8_t *payload, size_t len, waft_http_request *req, waft_buf *err) {
    memset(req, 0, sizeof *req);
    waft_mp_reader r;
    waft_mp_reader_init(&r, payload, len);
    uint32_t fields = 0;
    if (waft_mp_read_map(&r, &fields)) {
        for (uint32_t i = 0; i < fields && !r.err; i++) {
            const char *key;
            uint32_t key_len;
            if (!waft_mp_read_str(&r, &key, &key_len)) break;
            if (waft_mp_key_is(key, key_len, "method")) read_text(&r, &req->method);
            else if (waft_mp_key_is(key, key_len, "path")) read_text(&r, &req->path);
            else if (waft_mp_key_is(key, key_len, "queryString")) read_text(&r, &req->query_string);
            else if (waft_mp_key_is(key, key_len, "header")) read_headers(&r, req);
            else if (waft_mp_key_is(key, key_len, "body")) {
                const uint8_t *b;
                uint32_t n;
                if (waft_mp_peek(&r) == WAFT_MP_NIL) {
                    waft_mp_read_nil(&r);
                } else if (waft_mp_read_bytes(&r, &b, &n)) {
                    req->body = b;
                    req->body_len = n;
                }
            } else {
                waft_mp_skip(&r);
            }
        }
    }
    if (!r.err && !waft_mp_at_end(&r)) waft_mp_fail(&r, "trailing bytes after the HttpRequest");
    if (r.err) {
        if (err) {
            waft_buf_reset(err);
            waft_buf_append_str(err, "invalid HttpRequest: ");
            waft_buf_append_str(err, r.err);
            waft_buf_append_str(err, " at byte ");
            waft_buf_append_u64(err, r.pos);
        }
        waft_http_request_free(req);
        return WAFT_ERR;
    }
    return WAFT_OK;
}

void waft_http_request_free(waft_http_request *req) {
    free_headers(req->headers, req->n_headers);
    req->headers = NULL;
    req->n_headers = 0;
}

int waft_http_header_get(const waft_http_request *req, const char *name, waft_str *value) {
    for (uint32_t i = 0; i < req->n_headers; i++) {
        const waft_http_header *h = &req->headers[i];
        if (h->n_values && waft_str_ieq(h->name, name)) {
            *value = h->values[0];
            return 1;
        }
    }
    return 0;
}

void waft_http_response_encode(waft_buf *out, uint16_t status, const waft_http_header *headers,
                               uint32_t n_headers, const void *body, size_t body_len) {
    waft_mp_write_map(out, 3);
    waft_mp_write_cstr(out, "statusCode");
    waft_mp_write_u64(out, status);
    waft_mp_write_cstr(out, "header");
    waft_mp_write_map(out, n_headers);
    for (uint32_t i = 0; i < n_headers; i++) {
        waft_mp_write_str(out, headers[i].name.ptr, headers[i].name.len);
        waft_mp_write_array(out, headers[i].n_values);
        for (uint32_t k = 0; k < headers[i].n_values; k++)
            waft_mp_write_str(out, headers[i].values[k].ptr, headers[i].values[k].len);
    }
    waft_mp_write_cstr(out, "body");
    waft_mp_write_bin(out, body, body_len);
}

int waft_http_respond(waft_buf *out, uint16_t status, const char *content_type, const void *body,
                      size_t body_len) {
    waft_str value = {content_type, content_type ? strlen(content_type) : 0};
    waft_http_header header = {{"content-type", 12}, &value, 1};
    waft_http_response_encode(out, status, &header, content_type ? 1 : 0, body, body_len);
    return WAFT_OK;
}
