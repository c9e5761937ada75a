/* The API actor's HttpResponse writers: JSON replies, {"error", "detail"} errors (Retry-After on 429/503,
 * Allow on 405, a log line for 5xx), 404/405 for routing, and JSON renderings of ListModels and InferenceOutput.
 */
#include <string.h>

#include "api.h"

int respond(waft_buf *out, uint16_t status, const char *ctype, const void *body, size_t len,
            const char *xname, const char *xvalue) {
    waft_str ct = {ctype, strlen(ctype)};
    waft_str xv = {xvalue ? xvalue : "", xvalue ? strlen(xvalue) : 0};
    waft_http_header h[2] = {{{"content-type", 12}, &ct, 1}, {{xname ? xname : "", xname ? strlen(xname) : 0}, &xv, 1}};
    waft_buf_reset(out);
    waft_http_response_encode(out, status, h, xname ? 2 : 1, body, len);
    return WAFT_OK;
}

int respond_json(waft_buf *out, uint16_t status, waft_buf *body) {
    if (body->failed) return waft_fail(out, "out of memory building the response");
    return respond(out, status, "application/json", body->data, body->len, NULL, NULL);
}

/* {"error": error, "detail": detail}; 429/503 also say Retry-After, 405 says Allow. */
static int kserve_errors;

void use_kserve_errors(int on) { kserve_errors = on; }

int http_error_n(waft_buf *out, uint16_t status, const char *error, const char *detail, size_t detail_len,
                 const char *allow) {
    waft_buf body = WAFT_BUF_INIT;
    waft_json j;
    waft_json_init(&j, &body);
    waft_json_object_begin(&j);
    if (kserve_errors) { /* the Open Inference Protocol's {"error": message}; clients show only that */
        waft_buf text = WAFT_BUF_INIT;
        waft_buf_append_str(&text, error);
        if (detail && detail_len) {
            waft_buf_append_str(&text, ": ");
            waft_buf_append(&text, detail, detail_len);
        }
        waft_json_key_c(&j, "error");
        if (text.failed) waft_json_string_c(&j, error);
        else waft_json_string(&j, (const char *)text.data, text.len);
        waft_buf_free(&text);
        waft_json_key_c(&j, "code");
        waft_json_string_c(&j, error);
    } else {
        waft_json_key_c(&j, "error");
        waft_json_string_c(&j, error);
        waft_json_key_c(&j, "detail");
        waft_json_string(&j, detail ? detail : "", detail ? detail_len : 0);
    }
    waft_json_object_end(&j);
    const char *xname = NULL, *xvalue = NULL;
    if (status == 429 || status == 503) {
        xname = "retry-after";
        xvalue = "1";
    } else if (status == 405) {
        xname = "allow";
        xvalue = allow;
    }
    if (status >= 500) { /* our side: worth a log line */
        if (detail && detail_len) waft_log("warn", detail, detail_len);
        else waft_log_warn(error);
    }
    int rc = body.failed ? waft_fail(out, error)
                         : respond(out, status, "application/json", body.data, body.len, xname, xvalue);
    waft_buf_free(&body);
    return rc;
}

int http_error(waft_buf *out, uint16_t status, const char *error, const char *detail) {
    return http_error_n(out, status, error, detail, detail ? strlen(detail) : 0, NULL);
}

int http_error_buf(waft_buf *out, uint16_t status, const char *error, waft_buf *detail) {
    if (detail->failed) return http_error(out, status, error, "");
    return http_error_n(out, status, error, (const char *)detail->data, detail->len, NULL);
}

/* Any msgpack value as JSON (for ListModels): bin as base64, non-string keys as text, depth bounded. */
int mp_to_json(waft_mp_reader *r, waft_json *j, int depth) {
    if (depth > 16) return waft_mp_fail(r, "nested too deeply");
    switch (waft_mp_peek(r)) {
    case WAFT_MP_NIL: waft_mp_read_nil(r); waft_json_null(j); return 1;
    case WAFT_MP_BOOL: { int b; if (!waft_mp_read_bool(r, &b)) return 0; waft_json_bool(j, b); return 1; }
    case WAFT_MP_UINT: { uint64_t u; if (!waft_mp_read_u64(r, &u)) return 0; waft_json_u64(j, u); return 1; }
    case WAFT_MP_INT: { int64_t i; if (!waft_mp_read_i64(r, &i)) return 0; waft_json_i64(j, i); return 1; }
    case WAFT_MP_FLOAT: {
        uint8_t marker = r->data[r->pos];
        double d;
        if (!waft_mp_read_f64(r, &d)) return 0;
        if (marker == 0xca) waft_json_f32(j, (float)d);
        else waft_json_f64(j, d);
        return 1;
    }
    case WAFT_MP_STR: {
        const char *s;
        uint32_t l;
        if (!waft_mp_read_str(r, &s, &l)) return 0;
        waft_json_string(j, s, l);
        return 1;
    }
    case WAFT_MP_BIN: {
        const uint8_t *b;
        uint32_t l;
        if (!waft_mp_read_bytes(r, &b, &l)) return 0;
        waft_json_base64(j, b, l);
        return 1;
    }
    case WAFT_MP_ARRAY: {
        uint32_t n;
        if (!waft_mp_read_array(r, &n)) return 0;
        waft_json_array_begin(j);
        for (uint32_t i = 0; i < n; i++)
            if (!mp_to_json(r, j, depth + 1)) return 0;
        waft_json_array_end(j);
        return 1;
    }
    case WAFT_MP_MAP: {
        uint32_t n;
        if (!waft_mp_read_map(r, &n)) return 0;
        waft_json_object_begin(j);
        for (uint32_t i = 0; i < n; i++) {
            if (waft_mp_peek(r) == WAFT_MP_STR) {
                const char *s;
                uint32_t l;
                waft_mp_read_str(r, &s, &l);
                waft_json_key(j, s, l);
            } else if (waft_mp_peek(r) == WAFT_MP_UINT) {
                uint64_t u;
                waft_buf k = WAFT_BUF_INIT;
                waft_mp_read_u64(r, &u);
                waft_buf_append_u64(&k, u);
                waft_json_key(j, k.failed ? "" : (const char *)k.data, k.failed ? 0 : k.len);
                waft_buf_free(&k);
            } else {
                return waft_mp_fail(r, "map key is not a string");
            }
            if (!mp_to_json(r, j, depth + 1)) return 0;
        }
        waft_json_object_end(j);
        return 1;
    }
    default: return waft_mp_fail(r, "unsupported msgpack value");
    }
}

/* The InferenceOutput JSON of the original (serde): {"result":"Success","tensor":{...,"data":[bytes]}}. */
int respond_inference_output(waft_buf *out, const waft_ml_tensor *t) {
    waft_buf body = WAFT_BUF_INIT;
    waft_json j;
    waft_json_init(&j, &body);
    waft_json_object_begin(&j);
    waft_json_key_c(&j, "result");
    waft_json_string_c(&j, "Success");
    waft_json_key_c(&j, "tensor");
    waft_json_object_begin(&j);
    waft_json_key_c(&j, "dimensions");
    waft_json_array_begin(&j);
    for (uint32_t i = 0; i < t->n_dims; i++) waft_json_u64(&j, t->dims[i]);
    waft_json_array_end(&j);
    waft_json_key_c(&j, "valueTypes");
    waft_json_array_begin(&j);
    for (uint32_t i = 0; i < t->n_types; i++) {
        const waft_ml_vtype *vt = waft_ml_vtype_by_name(t->types[i]);
        if (vt) waft_json_string_c(&j, vt->wire);
        else waft_json_string(&j, t->types[i].ptr, t->types[i].len);
    }
    waft_json_array_end(&j);
    waft_json_key_c(&j, "flags");
    waft_json_u64(&j, t->flags);
    waft_json_key_c(&j, "data");
    /* One byte per element, written directly: 4000 bytes of logits become ~14 KB of JSON. */
    if (waft_buf_reserve(&body, (size_t)t->data_len * 4 + 2) == 0) {
        waft_json_array_begin(&j);
        for (uint32_t i = 0; i < t->data_len; i++) waft_json_u64(&j, t->data[i]);
        waft_json_array_end(&j);
    }
    waft_json_object_end(&j);
    waft_json_object_end(&j);
    int rc = respond_json(out, 200, &body);
    waft_buf_free(&body);
    return rc;
}

int not_allowed(waft_buf *out, waft_str method, const char *allow) {
    waft_buf d = WAFT_BUF_INIT;
    waft_buf_append_str(&d, "method ");
    waft_buf_append(&d, method.ptr, method.len);
    waft_buf_append_str(&d, " is not allowed here; use ");
    waft_buf_append_str(&d, allow);
    int rc = d.failed ? http_error_n(out, 405, "method not allowed", "", 0, allow)
                      : http_error_n(out, 405, "method not allowed", (const char *)d.data, d.len, allow);
    waft_buf_free(&d);
    return rc;
}

int not_found(waft_buf *out, waft_str path) {
    waft_buf d = WAFT_BUF_INIT;
    waft_buf_append_str(&d, "no route for ");
    waft_buf_append(&d, path.ptr, path.len);
    waft_buf_append_str(&d, "; routes: PUT|POST /{model}, /{model}/preprocess, /{model}/matches?k=N; "
                            "GET /models, /healthz; KServe v2 under /v2");
    int rc = http_error_buf(out, 404, "not found", &d);
    waft_buf_free(&d);
    return rc;
}
