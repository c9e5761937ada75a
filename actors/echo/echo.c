/* Echo actor: answers every HTTP request with a JSON description of what it received.
 *
 * It is the smallest end-to-end proof of the request path (httpserver provider -> host -> actor)
 * and the reference for decoding an HttpRequest exactly: the body is returned as base64 so binary
 * bodies (NULs, invalid UTF-8) survive the trip into JSON byte for byte.
 */
#include "waft.h"

static void write_header_object(waft_json *j, const waft_http_request *req) {
    waft_json_object_begin(j);
    for (uint32_t i = 0; i < req->n_headers; i++) {
        const waft_http_header *h = &req->headers[i];
        waft_json_key(j, h->name.ptr, h->name.len);
        waft_json_array_begin(j);
        for (uint32_t k = 0; k < h->n_values; k++) waft_json_string(j, h->values[k].ptr, h->values[k].len);
        waft_json_array_end(j);
    }
    waft_json_object_end(j);
}

static int handle_request(const uint8_t *payload, size_t len, waft_buf *out) {
    waft_http_request req;
    if (waft_http_request_decode(payload, len, &req, out) != WAFT_OK) return WAFT_ERR;

    waft_buf body = WAFT_BUF_INIT;
    waft_json j;
    waft_json_init(&j, &body);
    waft_json_object_begin(&j);
    waft_json_key_c(&j, "method");
    waft_json_string(&j, req.method.ptr, req.method.len);
    waft_json_key_c(&j, "path");
    waft_json_string(&j, req.path.ptr, req.path.len);
    waft_json_key_c(&j, "queryString");
    waft_json_string(&j, req.query_string.ptr, req.query_string.len);
    waft_json_key_c(&j, "header");
    write_header_object(&j, &req);
    waft_json_key_c(&j, "body");
    waft_json_base64(&j, req.body, req.body_len);
    waft_json_key_c(&j, "bodyLength");
    waft_json_u64(&j, req.body_len);
    waft_json_object_end(&j);
    waft_http_request_free(&req);

    int rc = body.failed ? waft_fail(out, "out of memory building the echo body")
                         : waft_http_respond(out, 200, "application/json", body.data, body.len);
    waft_buf_free(&body);
    return rc;
}

void waft_actor_init(void) { waft_register(WAFT_HTTP_OPERATION, handle_request); } /* health: the SDK's */
