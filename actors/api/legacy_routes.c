/* The API actor's routes of the original (PUT|POST /{model}, /{model}/preprocess, /{model}/matches?k=N)
 * and Waft's GET /models and /healthz.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "jsonread.h"

#define DEFAULT_TOP_K 5u

/* Parse the original's JSON Tensor into an encoded msgpack Tensor. 1, or 0 with `why` set. */
static int tensor_from_json(const uint8_t *body, size_t len, waft_buf *tensor_mp, waft_buf *why) {
    jr j;
    waft_buf key = WAFT_BUF_INIT, data = WAFT_BUF_INIT, name = WAFT_BUF_INIT;
    uint32_t dims[MAX_DIMS], n_dims = 0, n_types = 0;
    const waft_ml_vtype *vt = NULL;
    int64_t flags = 0;
    int have_dims = 0, have_data = 0, first = 1, ok = 0;
    const char *problem = NULL;
    jr_init(&j, body, len);
    if (len == 0) {
        problem = "the body is empty: send a JSON Tensor {\"dimensions\", \"valueTypes\", \"flags\", \"data\"}";
        goto done;
    }
    if (!jr_object_begin(&j)) {
        problem = "the body must be a JSON object: a Tensor {\"dimensions\", \"valueTypes\", \"flags\", \"data\"}";
        goto done;
    }
    while (jr_object_next(&j, &first, &key)) {
        waft_str k = {(const char *)key.data, key.len};
        if (waft_str_eq(k, "dimensions")) {
            int f = 1;
            if (!jr_array_begin(&j)) { problem = "dimensions must be an array of positive integers"; goto done; }
            n_dims = 0;
            while (jr_array_next(&j, &f)) {
                int64_t d;
                if (!jr_int64(&j, &d) || d < 1 || d > 0xffffffffLL) {
                    problem = "dimensions must be an array of positive integers";
                    goto done;
                }
                if (n_dims >= MAX_DIMS) { problem = "dimensions: more than 16"; goto done; }
                dims[n_dims++] = (uint32_t)d;
            }
            have_dims = 1;
        } else if (waft_str_eq(k, "valueTypes")) {
            int f = 1, single = jr_peek(&j) == '"';
            if (!single && !jr_array_begin(&j)) { problem = "valueTypes must be an array of names like \"ValueF32\""; goto done; }
            while (single || jr_array_next(&j, &f)) {
                waft_buf_reset(&name);
                if (!jr_string(&j, &name)) { problem = "valueTypes must be an array of names like \"ValueF32\""; goto done; }
                const waft_ml_vtype *t = waft_ml_vtype_by_name((waft_str){(const char *)name.data, name.len});
                if (!t) {
                    waft_buf_append_str(why, "unknown value type \"");
                    waft_buf_append(why, name.data, name.len);
                    waft_buf_append_str(why, "\" in valueTypes; known: ValueU8 ValueI8 ValueU16 ValueI16 ValueU32 "
                                             "ValueI32 ValueU64 ValueI64 ValueF16 ValueF32 ValueF64 ValueBool");
                    goto done;
                }
                if (vt && t != vt) { problem = "valueTypes: mixed types are not supported"; goto done; }
                vt = t;
                n_types++;
                if (single) break;
            }
        } else if (waft_str_eq(k, "flags")) {
            if (!jr_int64(&j, &flags) || flags < 0 || flags > 255) {
                problem = "flags must be an integer 0-255 (1 column-major, 2 big-endian)";
                goto done;
            }
        } else if (waft_str_eq(k, "data")) {
            waft_buf_reset(&data);
            if (jr_peek(&j) == '"') { /* base64, for clients that prefer it to a byte array */
                waft_buf text = WAFT_BUF_INIT;
                int good = jr_string(&j, &text) && !text.failed &&
                           waft_base64_decode(&data, (const char *)text.data, text.len) == 0;
                waft_buf_free(&text);
                if (!good) { problem = "data must be an array of byte values 0-255 (or a base64 string)"; goto done; }
            } else {
                int f = 1;
                if (!jr_array_begin(&j)) { problem = "data must be an array of byte values 0-255"; goto done; }
                /* Each element needs >= 2 characters: reserve once instead of growing step by step. */
                if (waft_buf_reserve(&data, (len - j.pos) / 2 + 1) != 0) { problem = "out of memory"; goto done; }
                while (jr_array_next(&j, &f)) {
                    int64_t b;
                    if (!jr_int64(&j, &b) || b < 0 || b > 255) {
                        waft_buf_append_str(why, "data must be an array of byte values 0-255 (the elements' "
                                                 "little-endian bytes); data[");
                        waft_buf_append_u64(why, data.len);
                        waft_buf_append_str(why, "] is not");
                        goto done;
                    }
                    waft_buf_push(&data, (uint8_t)b);
                }
            }
            have_data = 1;
        } else if (!jr_skip(&j)) {
            break;
        }
    }
    if (j.err) goto done;
    if (!jr_at_end(&j)) { jr_fail(&j, "trailing characters after the JSON value"); goto done; }
    if (!have_dims || n_dims == 0) { problem = "Tensor dimensions MUST be provided (\"dimensions\": [1, 4])"; goto done; }
    if (!have_data || data.len == 0) { problem = "The input tensor MUST NOT be empty (\"data\")"; goto done; }
    if (!vt) vt = waft_ml_vtype_by_name((waft_str){"ValueF32", 8}); /* the original's Tensor::default() */
    if (n_types > 1 && n_types != n_dims) { problem = "valueTypes needs one entry, or one per dimension"; goto done; }
    if (flags & ~3) { problem = "flags set reserved bits (known: 1 column-major, 2 big-endian)"; goto done; }
    uint64_t count = 1;
    for (uint32_t i = 0; i < n_dims; i++) {
        count *= dims[i];
        if (count > ((uint64_t)1 << 40)) break;
    }
    if (count * vt->size != data.len) {
        waft_buf_append_str(why, "dimensions [");
        for (uint32_t i = 0; i < n_dims; i++) {
            if (i) waft_buf_append_str(why, ",");
            waft_buf_append_u64(why, dims[i]);
        }
        waft_buf_append_str(why, "] of ");
        waft_buf_append_str(why, vt->wire);
        waft_buf_append_str(why, " need ");
        waft_buf_append_u64(why, count * vt->size);
        waft_buf_append_str(why, " bytes of data, got ");
        waft_buf_append_u64(why, data.len);
        goto done;
    }
    if (data.failed) { problem = "out of memory"; goto done; }
    waft_ml_write_tensor(tensor_mp, dims, n_dims, vt->wire, (uint64_t)flags, data.data, data.len);
    ok = !tensor_mp->failed;
    if (!ok) problem = "out of memory";
done:
    if (!ok && !why->len) jr_explain(&j, problem, "invalid JSON", why);
    waft_buf_free(&key);
    waft_buf_free(&data);
    waft_buf_free(&name);
    return ok;
}

int route_tensor(waft_str model, const waft_http_request *req, waft_buf *out) {
    if (req->body_len > MAX_JSON_BODY)
        return http_error(out, 413, "request too large", "JSON tensor bodies are limited to 32 MiB");
    waft_buf tensor = WAFT_BUF_INIT, why = WAFT_BUF_INIT;
    int rc;
    if (!tensor_from_json(req->body, req->body_len, &tensor, &why)) {
        rc = http_error_buf(out, 400, "bad tensor JSON", &why);
    } else {
        call_result c;
        if (predict(model, tensor.data, tensor.len, NULL, &c, out)) rc = respond_inference_output(out, &c.tensor);
        else rc = WAFT_OK;
        waft_buf_free(&c.answer);
    }
    waft_buf_free(&tensor);
    waft_buf_free(&why);
    return rc;
}

int route_preprocess(waft_str model, const waft_http_request *req, pixels_kind kind, waft_buf *out) {
    metadata md;
    if (!get_metadata(model, &md, out)) return WAFT_OK;
    call_result pre, inf;
    waft_buf_init(&inf.answer);
    if (preprocess(&md, req->body, req->body_len, model, kind, &pre, out) &&
        predict(model, pre.answer.data + pre.tensor_s, pre.tensor_e - pre.tensor_s, &pre, &inf, out))
        respond_inference_output(out, &inf.tensor);
    waft_buf_free(&pre.answer);
    waft_buf_free(&inf.answer);
    metadata_free(&md);
    return WAFT_OK;
}

/* `k` from the query string: 1..2^32-1 (the post-processor clamps it to the class count). 1 when
 * absent or valid; 0 with the reason in `why`. */
static int parse_k(waft_str query, uint32_t *k, const char **why) {
    *k = DEFAULT_TOP_K;
    size_t i = 0;
    while (i < query.len) {
        size_t end = i;
        while (end < query.len && query.ptr[end] != '&') end++;
        waft_str pair = {query.ptr + i, end - i};
        if (pair.len >= 2 && pair.ptr[0] == 'k' && pair.ptr[1] == '=') {
            waft_str v = {pair.ptr + 2, pair.len - 2};
            uint64_t n = 0;
            if (v.len == 0 || v.len > 10) {
                *why = "k must be an integer from 1 to 4294967295";
                return 0;
            }
            for (size_t d = 0; d < v.len; d++) {
                if (v.ptr[d] < '0' || v.ptr[d] > '9') {
                    *why = "k must be an integer from 1 to 4294967295";
                    return 0;
                }
                n = n * 10 + (uint64_t)(v.ptr[d] - '0');
            }
            if (n < 1 || n > 0xffffffffu) {
                *why = "k must be an integer from 1 to 4294967295";
                return 0;
            }
            *k = (uint32_t)n;
        }
        i = end + 1;
    }
    return 1;
}

int route_matches(waft_str model, const waft_http_request *req, pixels_kind kind, waft_buf *out) {
    uint32_t k;
    const char *why = NULL;
    if (!parse_k(req->query_string, &k, &why))
        return http_error(out, 400, "bad query", why);
    metadata md;
    if (!get_metadata(model, &md, out)) return WAFT_OK;
    call_result pre, inf;
    waft_buf post = WAFT_BUF_INIT, answer = WAFT_BUF_INIT, body = WAFT_BUF_INIT;
    waft_buf_init(&inf.answer);
    if (!preprocess(&md, req->body, req->body_len, model, kind, &pre, out) ||
        !predict(model, pre.answer.data + pre.tensor_s, pre.tensor_e - pre.tensor_s, &pre, &inf, out))
        goto done;
    /* PostprocessRequest{result, tensor, topK, labels?, probabilities}: tensor and labels spliced. */
    size_t ls = 0, le = 0;
    waft_mp_reader r;
    int probabilities = 0;
    int labels = mp_field(md.p, md.n, "labels", &ls, &le);
    if (labels) {
        waft_mp_reader_init(&r, md.p + ls, le - ls);
        labels = waft_mp_peek(&r) == WAFT_MP_ARRAY; /* the metadata file names a label *set*; GetMetadata
                                                       replaces it with the list when the bindle has one */
    }
    if (mp_at(md.p, md.n, "outputs_probabilities", &r) && waft_mp_peek(&r) == WAFT_MP_BOOL)
        waft_mp_read_bool(&r, &probabilities);
    waft_mp_write_map(&post, labels ? 5 : 4);
    waft_mp_write_cstr(&post, "result");
    waft_mp_write_map(&post, 1);
    waft_mp_write_cstr(&post, "success");
    waft_mp_write_nil(&post);
    waft_mp_write_cstr(&post, "tensor");
    waft_buf_append(&post, inf.answer.data + inf.tensor_s, inf.tensor_e - inf.tensor_s);
    waft_mp_write_cstr(&post, "topK");
    waft_mp_write_u64(&post, k);
    waft_mp_write_cstr(&post, "probabilities");
    waft_mp_write_bool(&post, probabilities);
    if (labels) {
        waft_mp_write_cstr(&post, "labels");
        waft_buf_append(&post, md.p + ls, le - ls);
    }
    if (post.failed) {
        http_error(out, 500, "internal error", "out of memory encoding the post-processing request");
        goto done;
    }
    if (waft_host_call("", POSTPROCESSOR, "Imagenet.Postprocess", post.data, post.len, &answer) != WAFT_OK) {
        host_error(out, "the post-processor (" POSTPROCESSOR ")", &answer);
        goto done;
    }
    /* Matches{matches: [{label, probability}], error?} -> [{"label", "probability"}] */
    waft_mp_reader mr;
    if (mp_at(answer.data, answer.len, "error", &mr) && waft_mp_peek(&mr) == WAFT_MP_STR) {
        const char *s;
        uint32_t l;
        waft_mp_read_str(&mr, &s, &l);
        waft_buf d = WAFT_BUF_INIT;
        waft_buf_append_str(&d, "the post-processor: ");
        waft_buf_append(&d, s, l);
        http_error_buf(out, 500, "post-processing failed", &d);
        waft_buf_free(&d);
        goto done;
    }
    uint32_t n = 0;
    if (!mp_at(answer.data, answer.len, "matches", &mr) || !waft_mp_read_array(&mr, &n)) {
        http_error(out, 500, "internal error", "the post-processor answered without matches");
        goto done;
    }
    waft_json j;
    waft_json_init(&j, &body);
    waft_json_array_begin(&j);
    for (uint32_t i = 0; i < n && !mr.err; i++) {
        uint32_t fields;
        const char *label = "";
        uint32_t label_len = 0;
        double p = NAN;
        if (!waft_mp_read_map(&mr, &fields)) break;
        for (uint32_t f = 0; f < fields && !mr.err; f++) {
            const char *key;
            uint32_t kl;
            if (!waft_mp_read_str(&mr, &key, &kl)) break;
            if (waft_mp_key_is(key, kl, "label")) {
                const uint8_t *b;
                if (waft_mp_read_bytes(&mr, &b, &label_len)) label = (const char *)b;
            } else if (waft_mp_key_is(key, kl, "probability")) {
                waft_mp_read_f64(&mr, &p);
            } else {
                waft_mp_skip(&mr);
            }
        }
        waft_json_object_begin(&j);
        waft_json_key_c(&j, "label");
        waft_json_string(&j, label, label_len);
        waft_json_key_c(&j, "probability");
        waft_json_f32(&j, (float)p); /* f32 on the wire: exact; shortest round-trip text, NaN -> null */
        waft_json_object_end(&j);
    }
    waft_json_array_end(&j);
    if (mr.err) {
        waft_buf d = WAFT_BUF_INIT;
        waft_buf_append_str(&d, "unreadable Matches from the post-processor: ");
        waft_buf_append_str(&d, mr.err);
        http_error_buf(out, 500, "internal error", &d);
        waft_buf_free(&d);
        goto done;
    }
    respond_json(out, 200, &body);
done:
    waft_buf_free(&pre.answer);
    waft_buf_free(&inf.answer);
    waft_buf_free(&post);
    waft_buf_free(&answer);
    waft_buf_free(&body);
    metadata_free(&md);
    return WAFT_OK;
}

int route_healthz(waft_buf *out) {
    static const char body[] = "{\"status\":\"ok\"}";
    return respond(out, 200, "application/json", body, sizeof body - 1, NULL, NULL);
}

int route_models(waft_buf *out) {
    waft_buf answer = WAFT_BUF_INIT, body = WAFT_BUF_INIT;
    if (list_models(&answer, out)) {
        waft_mp_reader r;
        waft_json j;
        waft_json_init(&j, &body);
        waft_mp_reader_init(&r, answer.data, answer.len);
        if (waft_mp_peek(&r) != WAFT_MP_MAP || !mp_to_json(&r, &j, 0))
            http_error(out, 500, "internal error", "MlInference.ListModels answered something unreadable");
        else
            respond_json(out, 200, &body);
    }
    waft_buf_free(&answer);
    waft_buf_free(&body);
    return WAFT_OK;
}
