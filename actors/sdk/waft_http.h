/* wasmcloud:httpserver payloads (wasmcloud-protocol §7.1).
 *
 * HttpRequest  {method, path, queryString, header: map<str, list<str>>, body: bytes}
 * HttpResponse {statusCode, header, body}
 * Keys are camelCase as in the smithy model. Decoding is lenient where wasmCloud hosts differ
 * (body and header values as str or bin, missing fields default to empty, unknown keys skipped) and
 * strict about everything else: a wrong type is an error, never a guess.
 */
#ifndef WAFT_HTTP_H
#define WAFT_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "waft_buf.h"
#include "waft_str.h"

#define WAFT_HTTP_OPERATION "HttpServer.HandleRequest"

/* The request's strings are views (waft_str) into the payload: valid while it is (the handler call). */

typedef struct {
    waft_str name;
    waft_str *values;
    uint32_t n_values;
} waft_http_header;

typedef struct {
    waft_str method;
    waft_str path;
    waft_str query_string;
    waft_http_header *headers; /* malloc'd by decode, in the order received */
    uint32_t n_headers;
    const uint8_t *body;
    size_t body_len;
} waft_http_request;

/* Decode; on WAFT_ERR `err` (if not NULL) receives the reason and `req` holds nothing to free.
 * On WAFT_OK release with waft_http_request_free. */
int waft_http_request_decode(const uint8_t *payload, size_t len, waft_http_request *req, waft_buf *err);
void waft_http_request_free(waft_http_request *req);
/* First value of a header, matched case-insensitively (HTTP names are); 1 if found, else 0. */
int waft_http_header_get(const waft_http_request *req, const char *name, waft_str *value);

/* Encode an HttpResponse into `out` (appending). `headers` may be NULL when n_headers is 0. */
void waft_http_response_encode(waft_buf *out, uint16_t status, const waft_http_header *headers,
                               uint32_t n_headers, const void *body, size_t body_len);
/* The common case: one Content-Type header (omitted when NULL). Returns WAFT_OK for `return`. */
int waft_http_respond(waft_buf *out, uint16_t status, const char *content_type, const void *body,
                      size_t body_len);

#endif
