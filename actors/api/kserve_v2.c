/* The API actor's KServe v2 / Open Inference Protocol routes: GET /v2, /v2/health/live, /v2/health/ready,
 * /v2/models/{m}, /v2/models/{m}/ready; POST /v2/models/{m}/infer (JSON data, or the binary tensor
 * extension's input side); `/versions/{v}` after the model name is accepted and ignored (one version each).
 */
#include <string.h>

#include "api.h"
#include "jsonread.h"

static int v2_server_metadata(waft_buf *out) {
    static const char body[] = "{\"name\":\"waft\",\"version\":\"0.1.0\",\"extensions\":"
                               "[\"model_configuration\",\"statistics\"]}";
    return respond(out, 200, "application/json", body, sizeof body - 1, NULL, NULL);
}

static int v2_live(waft_buf *out) {
    static const char body[] = "{\"live\":true}";
    return respond(out, 200, "application/json", body, sizeof body - 1, NULL, NULL);
}

/* Ready when every linked model is ready (no models: ready, there is nothing to wait for). */
static int v2_ready(waft_buf *out) {
    waft_buf answer = WAFT_BUF_INIT, waiting = WAFT_BUF_INIT;
    if (!list_models(&answer, out)) goto done;
    waft_mp_reader r;
    uint32_t n = 0;
    if (!mp_at(answer.data, answer.len, "models", &r) || !waft_mp_read_array(&r, &n)) {
        http_error(out, 500, "internal error", "MlInference.ListModels answered without models");
        goto done;
    }
    for (uint32_t i = 0; i < n && !r.err; i++) {
        size_t start = r.pos;
        if (!waft_mp_skip(&r)) break;
        const uint8_t *entry = r.data + start;
        size_t len = r.pos - start;
        waft_mp_reader f;
        const char *s = "";
        uint32_t l = 0;
        if (mp_at(entry, len, "status", &f)) waft_mp_read_str(&f, &s, &l);
        if (!waft_str_eq((waft_str){s, l}, "ready")) {
            const char *name = "?";
            uint32_t nl = 1;
            if (mp_at(entry, len, "name", &f)) waft_mp_read_str(&f, &name, &nl);
            if (waiting.len) waft_buf_append_str(&waiting, ", ");
            waft_buf_append(&waiting, name, nl);
            waft_buf_append_str(&waiting, " (");
            waft_buf_append(&waiting, s, l);
            waft_buf_append_str(&waiting, ")");
        }
    }
    if (r.err) {
        http_error(out, 500, "internal error", "MlInference.ListModels answered something unreadable");
    } else if (waiting.len) {
        waft_buf d = WAFT_BUF_INIT;
        waft_buf_append_str(&d, "models not ready: ");
        waft_buf_append(&d, waiting.data, waiting.len);
        http_error_buf(out, 503, "not ready", &d);
        waft_buf_free(&d);
    } else {
        static const char body[] = "{\"ready\":true}";
        respond(out, 200, "application/json", body, sizeof body - 1, NULL, NULL);
    }
done:
    waft_buf_free(&answer);
    waft_buf_free(&waiting);
    return WAFT_OK;
}

static const char *kserve_of_tensor_type(waft_str t) {
    const waft_ml_vtype *vt = waft_ml_vtype_by_name(t);
    return vt ? vt->kserve : "FP32";
}

static const char *platform_of(waft_str encoding) {
    if (waft_str_ieq(encoding, "onnx")) return "onnx_onnxv1";
    if (waft_str_ieq(encoding, "tensorflow")) return "tensorflow_graphdef";
    if (waft_str_ieq(encoding, "tf_lite")) return "tensorflow_lite";
    if (waft_str_ieq(encoding, "open_vino")) return "openvino";
    return "unknown";
}

/* {"name": ..., <type_key>: <datatype>, <dims_key_out>: [dims]} of the metadata's input or output: a dimension
 * the metadata leaves unknown is -1; with no dimensions at all, `unknown_shape` ([-1] for KServe's metadata,
 * [] for Triton's config). */
static void write_tensor_entry(waft_json *j, const metadata *md, const char *name_key, const char *fallback,
                               const char *dims_key, const char *type_key, const char *datatype,
                               const char *shape_key, int unknown_shape) {
    waft_mp_reader r;
    waft_str name = meta_str(md, name_key);
    waft_json_object_begin(j);
    waft_json_key_c(j, "name");
    if (name.ptr) waft_json_string(j, name.ptr, name.len);
    else waft_json_string_c(j, fallback);
    waft_json_key_c(j, type_key);
    waft_json_string_c(j, datatype);
    waft_json_key_c(j, shape_key);
    waft_json_array_begin(j);
    uint32_t n;
    if (mp_at(md->p, md->n, dims_key, &r) && waft_mp_peek(&r) == WAFT_MP_ARRAY && waft_mp_read_array(&r, &n)) {
        for (uint32_t i = 0; i < n && !r.err; i++) {
            int64_t d = -1;
            if (waft_mp_peek(&r) == WAFT_MP_NIL) waft_mp_read_nil(&r); /* unknown size: -1 in KServe */
            else if (!waft_mp_read_i64(&r, &d)) break;
            waft_json_i64(j, d);
        }
    } else if (unknown_shape) {
        waft_json_i64(j, -1);
    }
    waft_json_array_end(j);
    waft_json_object_end(j);
}

static void write_meta_tensor(waft_json *j, const metadata *md, const char *name_key, const char *fallback,
                              const char *dims_key, const char *datatype) {
    write_tensor_entry(j, md, name_key, fallback, dims_key, "datatype", datatype, "shape", 1);
}

static void write_config_tensor(waft_json *j, const metadata *md, const char *name_key, const char *fallback,
                                const char *dims_key, const char *datatype);

typedef void (*tensor_writer)(waft_json *j, const metadata *md, const char *name_key, const char *fallback,
                              const char *dims_key, const char *datatype);

/* The model's one input and one output as two single-entry lists, in `writer`'s form. */
static void write_io(waft_json *j, const metadata *md, const char *in_key, const char *out_key, const char *dt_in,
                     const char *dt_out, tensor_writer writer) {
    waft_json_key_c(j, in_key);
    waft_json_array_begin(j);
    writer(j, md, "input_name", "input0", "tensor_dimensions_in", dt_in);
    waft_json_array_end(j);
    waft_json_key_c(j, out_key);
    waft_json_array_begin(j);
    writer(j, md, "output_name", "output0", "tensor_dimensions_out", dt_out);
    waft_json_array_end(j);
}

static int v2_model_metadata(waft_str model, waft_buf *out) {
    metadata md;
    if (!get_metadata(model, &md, out)) return WAFT_OK;
    waft_buf body = WAFT_BUF_INIT;
    waft_json j;
    const char *dt_in = kserve_of_tensor_type(meta_str(&md, "tensor_type"));
    waft_str out_type = meta_str(&md, "tensor_type_out");
    const char *dt_out = out_type.ptr ? kserve_of_tensor_type(out_type) : dt_in;
    waft_json_init(&j, &body);
    waft_json_object_begin(&j);
    waft_json_key_c(&j, "name");
    waft_json_string(&j, model.ptr, model.len);
    waft_json_key_c(&j, "versions");
    waft_json_array_begin(&j);
    waft_json_string_c(&j, "1");
    waft_json_array_end(&j);
    waft_json_key_c(&j, "platform");
    waft_str enc = meta_str(&md, "graph_encoding");
    waft_json_string_c(&j, platform_of(enc.ptr ? enc : (waft_str){"onnx", 4}));
    write_io(&j, &md, "inputs", "outputs", dt_in, dt_out, write_meta_tensor);
    waft_json_object_end(&j);
    respond_json(out, 200, &body);
    waft_buf_free(&body);
    metadata_free(&md);
    return WAFT_OK;
}

/* Triton's model configuration extension: what perf_analyzer reads before it sends anything. One version,
 * no batch dimension declared (max_batch_size 0: the dims are the whole shape, as the metadata gives it). */
static void write_config_tensor(waft_json *j, const metadata *md, const char *name_key, const char *fallback,
                                const char *dims_key, const char *datatype) {
    char type[24] = "TYPE_";
    size_t tl = strlen(datatype) < sizeof type - 6 ? strlen(datatype) : sizeof type - 6;
    memcpy(type + 5, datatype, tl);
    type[5 + tl] = 0;
    write_tensor_entry(j, md, name_key, fallback, dims_key, "data_type", type, "dims", 0);
}

static const char *backend_of(waft_str encoding) {
    if (waft_str_ieq(encoding, "tensorflow")) return "tensorflow";
    if (waft_str_ieq(encoding, "tf_lite")) return "tflite";
    return "onnxruntime";
}

static int v2_model_config(waft_str model, waft_buf *out) {
    metadata md;
    if (!get_metadata(model, &md, out)) return WAFT_OK;
    waft_buf body = WAFT_BUF_INIT;
    waft_json j;
    const char *dt_in = kserve_of_tensor_type(meta_str(&md, "tensor_type"));
    waft_str out_type = meta_str(&md, "tensor_type_out");
    const char *dt_out = out_type.ptr ? kserve_of_tensor_type(out_type) : dt_in;
    waft_str enc = meta_str(&md, "graph_encoding");
    if (!enc.ptr) enc = (waft_str){"onnx", 4};
    waft_json_init(&j, &body);
    waft_json_object_begin(&j);
    waft_json_key_c(&j, "name");
    waft_json_string(&j, model.ptr, model.len);
    waft_json_key_c(&j, "platform");
    waft_json_string_c(&j, platform_of(enc));
    waft_json_key_c(&j, "backend");
    waft_json_string_c(&j, backend_of(enc));
    waft_json_key_c(&j, "max_batch_size");
    waft_json_u64(&j, 0);
    write_io(&j, &md, "input", "output", dt_in, dt_out, write_config_tensor);
    waft_json_object_end(&j);
    respond_json(out, 200, &body);
    waft_buf_free(&body);
    metadata_free(&md);
    return WAFT_OK;
}

/* Triton's statistics extension: the provider keeps the counts and nanoseconds in Triton's own field names
 * (ListModels' `stats`); here they are put under {"model_stats": [{name, version, ...}]}. */
static int v2_model_stats(waft_str model, waft_buf *out) {
    metadata md;
    if (!get_metadata(model, &md, out)) return WAFT_OK; /* 404 unknown, 503 loading */
    metadata_free(&md);
    waft_buf answer = WAFT_BUF_INIT, body = WAFT_BUF_INIT;
    if (!list_models(&answer, out)) goto done;
    waft_mp_reader r;
    uint32_t n_models = 0;
    int found = 0;
    waft_json j;
    waft_json_init(&j, &body);
    if (!mp_at(answer.data, answer.len, "models", &r) || !waft_mp_read_array(&r, &n_models)) n_models = 0;
    for (uint32_t m = 0; m < n_models && !r.err && !found; m++) {
        size_t start = r.pos;
        if (!waft_mp_skip(&r)) break;
        const uint8_t *entry = r.data + start;
        size_t entry_len = r.pos - start, ns, ne, ss, se;
        if (!mp_field(entry, entry_len, "name", &ns, &ne)) continue;
        waft_mp_reader name_r;
        const char *name;
        uint32_t name_len;
        waft_mp_reader_init(&name_r, entry + ns, ne - ns);
        if (!waft_mp_read_str(&name_r, &name, &name_len) || name_len != model.len ||
            memcmp(name, model.ptr, model.len) != 0)
            continue;
        found = 1;
        waft_json_object_begin(&j);
        waft_json_key_c(&j, "model_stats");
        waft_json_array_begin(&j);
        waft_json_object_begin(&j);
        waft_json_key_c(&j, "name");
        waft_json_string(&j, model.ptr, model.len);
        waft_json_key_c(&j, "version");
        waft_json_string_c(&j, "1");
        if (mp_field(entry, entry_len, "stats", &ss, &se)) {
            waft_mp_reader sr;
            uint32_t n_keys;
            waft_mp_reader_init(&sr, entry + ss, se - ss);
            if (waft_mp_read_map(&sr, &n_keys)) {
                for (uint32_t k = 0; k < n_keys && !sr.err; k++) {
                    const char *key;
                    uint32_t key_len;
                    if (!waft_mp_read_str(&sr, &key, &key_len)) break;
                    waft_json_key(&j, key, key_len);
                    if (!mp_to_json(&sr, &j, 1)) break;
                }
            }
        }
        waft_json_object_end(&j);
        waft_json_array_end(&j);
        waft_json_object_end(&j);
    }
    if (!found) http_error(out, 503, "model loading", "the provider lists no statistics for this model yet");
    else respond_json(out, 200, &body);
done:
    waft_buf_free(&answer);
    waft_buf_free(&body);
    return WAFT_OK;
}

static int v2_model_ready(waft_str model, waft_buf *out) {
    metadata md;
    if (!get_metadata(model, &md, out)) return WAFT_OK; /* 404 unknown, 503 loading */
    waft_buf body = WAFT_BUF_INIT;
    waft_json j;
    waft_json_init(&j, &body);
    waft_json_object_begin(&j);
    waft_json_key_c(&j, "name");
    waft_json_string(&j, model.ptr, model.len);
    waft_json_key_c(&j, "ready");
    waft_json_bool(&j, 1);
    waft_json_object_end(&j);
    respond_json(out, 200, &body);
    waft_buf_free(&body);
    metadata_free(&md);
    return WAFT_OK;
}

/* Append one scalar JSON value as a little-endian element of type `vt`. */
static int put_scalar(jr *j, const waft_ml_vtype *vt, waft_buf *data) {
    if (vt->kind == 'b') {
        int b;
        if (jr_peek(j) == 't' || jr_peek(j) == 'f') {
            if (!jr_bool(j, &b)) return 0;
        } else {
            int64_t v;
            if (!jr_int64(j, &v) || (v != 0 && v != 1)) return jr_fail(j, "BOOL data must be true/false or 0/1");
            b = (int)v;
        }
        return waft_buf_push(data, (uint8_t)b) == 0;
    }
    if (vt->kind == 'f') {
        if (vt->size == 4) {
            float f;
            if (!jr_float(j, &f)) return jr_fail(j, "FP32 data must be numbers");
            return waft_buf_append(data, &f, 4) == 0; /* wasm32 is little-endian, as the wire */
        }
        double d;
        if (!jr_double(j, &d)) return jr_fail(j, "FP64 data must be numbers");
        return waft_buf_append(data, &d, 8) == 0;
    }
    int64_t v;
    if (!jr_int64(j, &v)) return jr_fail(j, "integer data must be integers in the datatype's range");
    int64_t lo, hi;
    unsigned bits = vt->size * 8u;
    if (vt->kind == 'u') {
        lo = 0;
        hi = bits >= 64 ? INT64_MAX : (int64_t)((1ull << bits) - 1);
    } else {
        lo = bits >= 64 ? INT64_MIN : -(int64_t)(1ull << (bits - 1));
        hi = bits >= 64 ? INT64_MAX : (int64_t)((1ull << (bits - 1)) - 1);
    }
    if (v < lo || v > hi) return jr_fail(j, "integer data out of the datatype's range");
    uint64_t u = (uint64_t)v;
    return waft_buf_append(data, &u, vt->size) == 0; /* low bytes first: little-endian */
}

/* `data` of a KServe input: flat or nested arrays of scalars, flattened row-major. Iterative. */
static int read_kserve_data(jr *j, const waft_ml_vtype *vt, waft_buf *data, uint64_t *count) {
    int first[JR_MAX_DEPTH + 1];
    int depth = 1;
    if (!jr_array_begin(j)) return 0;
    first[1] = 1;
    *count = 0;
    while (depth > 0) {
        if (!jr_array_next(j, &first[depth])) {
            if (j->err) return 0;
            depth--;
            continue;
        }
        if (jr_peek(j) == '[') {
            if (depth >= JR_MAX_DEPTH) return jr_fail(j, "data nested too deeply");
            jr_take(j, '[');
            first[++depth] = 1;
            continue;
        }
        if (!put_scalar(j, vt, data)) return j->err ? 0 : jr_fail(j, "out of memory");
        (*count)++;
    }
    return 1;
}

typedef struct {
    waft_buf id;
    int have_id;
    waft_buf tensor; /* encoded msgpack Tensor */
} v2_request;

/* Parse the inference request into a msgpack Tensor. 1, or 0 with the reason in `why`. */
static int v2_parse(const waft_http_request *req, v2_request *q, waft_buf *why) {
    const uint8_t *json = req->body, *binary = NULL;
    size_t json_len = req->body_len, binary_len = 0;
    waft_str hv;
    if (waft_http_header_get(req, "inference-header-content-length", &hv)) {
        /* Binary tensor extension: the JSON header, then the raw input bytes. */
        uint64_t n = 0;
        if (hv.len == 0 || hv.len > 12) goto bad_header;
        for (size_t i = 0; i < hv.len; i++) {
            if (hv.ptr[i] < '0' || hv.ptr[i] > '9') goto bad_header;
            n = n * 10 + (uint64_t)(hv.ptr[i] - '0');
        }
        if (n > req->body_len) goto bad_header;
        json_len = (size_t)n;
        binary = req->body + n;
        binary_len = req->body_len - n;
    }
    jr j;
    waft_buf key = WAFT_BUF_INIT, text = WAFT_BUF_INIT, data = WAFT_BUF_INIT;
    int first = 1, ok = 0, n_inputs = 0;
    const char *problem = NULL;
    size_t data_pos = 0;
    int have_data = 0, have_shape = 0;
    int64_t binary_size = -1;
    uint32_t shape[MAX_DIMS], n_shape = 0;
    const waft_ml_vtype *vt = NULL;
    jr_init(&j, json, json_len);
    if (json_len == 0) {
        problem = "the body is empty: send {\"inputs\": [{\"name\", \"shape\", \"datatype\", \"data\"}]}";
        goto done;
    }
    if (!jr_object_begin(&j)) { problem = "the body must be a JSON object with \"inputs\""; goto done; }
    while (jr_object_next(&j, &first, &key)) {
        waft_str k = {(const char *)key.data, key.len};
        if (waft_str_eq(k, "id")) {
            if (!jr_string(&j, &q->id)) { problem = "id must be a string"; goto done; }
            q->have_id = 1;
        } else if (waft_str_eq(k, "inputs")) {
            int fa = 1;
            if (!jr_array_begin(&j)) { problem = "inputs must be an array"; goto done; }
            while (jr_array_next(&j, &fa)) {
                int fo = 1;
                if (++n_inputs > 1) { problem = "only models with one input are served: send one input"; goto done; }
                if (!jr_object_begin(&j)) { problem = "each input must be an object"; goto done; }
                while (jr_object_next(&j, &fo, &key)) {
                    waft_str ik = {(const char *)key.data, key.len};
                    if (waft_str_eq(ik, "shape")) {
                        int fs = 1;
                        if (!jr_array_begin(&j)) { problem = "shape must be an array of positive integers"; goto done; }
                        while (jr_array_next(&j, &fs)) {
                            int64_t d;
                            if (!jr_int64(&j, &d) || d < 1 || d > 0xffffffffLL) {
                                problem = "shape must be an array of positive integers";
                                goto done;
                            }
                            if (n_shape >= MAX_DIMS) { problem = "shape: more than 16 dimensions"; goto done; }
                            shape[n_shape++] = (uint32_t)d;
                        }
                        have_shape = 1;
                    } else if (waft_str_eq(ik, "datatype")) {
                        waft_buf_reset(&text);
                        if (!jr_string(&j, &text)) { problem = "datatype must be a string"; goto done; }
                        vt = waft_ml_vtype_by_kserve((waft_str){(const char *)text.data, text.len});
                        if (!vt) {
                            waft_buf_append_str(why, "unsupported datatype \"");
                            waft_buf_append(why, text.data, text.len);
                            waft_buf_append_str(why, "\"; supported: BOOL UINT8 UINT16 UINT32 UINT64 INT8 INT16 "
                                                     "INT32 INT64 FP16 (binary only) FP32 FP64");
                            goto done;
                        }
                    } else if (waft_str_eq(ik, "data")) {
                        data_pos = j.pos; /* read once the datatype is known */
                        have_data = 1;
                        if (!jr_skip(&j)) goto done;
                    } else if (waft_str_eq(ik, "parameters")) {
                        int fp = 1;
                        if (!jr_object_begin(&j)) { problem = "parameters must be an object"; goto done; }
                        while (jr_object_next(&j, &fp, &key)) {
                            if (waft_str_eq((waft_str){(const char *)key.data, key.len}, "binary_data_size")) {
                                if (!jr_int64(&j, &binary_size) || binary_size < 0) {
                                    problem = "binary_data_size must be a non-negative integer";
                                    goto done;
                                }
                            } else if (!jr_skip(&j)) {
                                goto done;
                            }
                        }
                    } else if (!jr_skip(&j)) {
                        goto done;
                    }
                }
            }
        } else if (!jr_skip(&j)) {
            goto done;
        }
    }
    if (j.err) goto done;
    if (!jr_at_end(&j)) { jr_fail(&j, "trailing characters after the JSON value"); goto done; }
    if (n_inputs == 0) { problem = "inputs must hold one input"; goto done; }
    if (!have_shape || n_shape == 0) { problem = "the input needs a shape"; goto done; }
    if (!vt) { problem = "the input needs a datatype"; goto done; }
    uint64_t count = 1, got = 0;
    for (uint32_t i = 0; i < n_shape; i++) {
        count *= shape[i];
        if (count > ((uint64_t)1 << 36)) { problem = "the input is too large"; goto done; }
    }
    if (binary_size >= 0) {
        if (!binary || (uint64_t)binary_size > binary_len) {
            problem = "binary_data_size exceeds the binary data after the JSON header "
                      "(Inference-Header-Content-Length)";
            goto done;
        }
        waft_buf_append(&data, binary, (size_t)binary_size);
        got = (uint64_t)binary_size / vt->size;
        if ((uint64_t)binary_size != count * vt->size) {
            waft_buf_append_str(why, "shape needs ");
            waft_buf_append_u64(why, count * vt->size);
            waft_buf_append_str(why, " bytes of binary data, binary_data_size is ");
            waft_buf_append_u64(why, (uint64_t)binary_size);
            goto done;
        }
    } else {
        if (!have_data) { problem = "the input needs data (or parameters.binary_data_size)"; goto done; }
        if (vt->kind == 'f' && vt->size == 2) { problem = "FP16 cannot be sent as JSON numbers: use binary data"; goto done; }
        j.pos = data_pos;
        if (waft_buf_reserve(&data, (size_t)(count < ((uint64_t)1 << 26) ? count : 0) * vt->size) != 0) {
            problem = "out of memory";
            goto done;
        }
        if (!read_kserve_data(&j, vt, &data, &got)) goto done;
        if (got != count) {
            waft_buf_append_str(why, "shape [");
            for (uint32_t i = 0; i < n_shape; i++) {
                if (i) waft_buf_append_str(why, ",");
                waft_buf_append_u64(why, shape[i]);
            }
            waft_buf_append_str(why, "] needs ");
            waft_buf_append_u64(why, count);
            waft_buf_append_str(why, " values, data has ");
            waft_buf_append_u64(why, got);
            goto done;
        }
    }
    if (data.failed) { problem = "out of memory"; goto done; }
    waft_ml_write_tensor(&q->tensor, shape, n_shape, vt->wire, 0, data.data, data.len);
    ok = !q->tensor.failed;
    if (!ok) problem = "out of memory";
done:
    if (!ok && !why->len) jr_explain(&j, problem, "invalid inference request", why);
    waft_buf_free(&key);
    waft_buf_free(&text);
    waft_buf_free(&data);
    return ok;
bad_header:
    waft_buf_append_str(why, "Inference-Header-Content-Length must be a byte count within the body");
    return 0;
}

/* One output element as a JSON number (or bool). */
static void write_element(waft_json *j, const waft_ml_vtype *vt, const uint8_t *p, int big_endian) {
    uint64_t bits = 0;
    for (size_t b = 0; b < vt->size; b++) bits |= (uint64_t)p[big_endian ? vt->size - 1 - b : b] << (8 * b);
    if (vt->kind == 'b') {
        waft_json_bool(j, bits != 0);
    } else if (vt->kind == 'u') {
        waft_json_u64(j, bits);
    } else if (vt->kind == 'i') {
        unsigned shift = 64u - vt->size * 8u; /* sign-extend */
        waft_json_i64(j, shift ? (int64_t)(bits << shift) >> shift : (int64_t)bits);
    } else if (vt->size == 2) {
        waft_json_f32(j, waft_ml_half_to_float((uint16_t)bits));
    } else if (vt->size == 4) {
        uint32_t u = (uint32_t)bits;
        float f;
        memcpy(&f, &u, 4);
        waft_json_f32(j, f);
    } else {
        double d;
        memcpy(&d, &bits, 8);
        waft_json_f64(j, d);
    }
}

static int v2_infer(waft_str model, const waft_http_request *req, waft_buf *out) {
    if (req->body_len > MAX_JSON_BODY)
        return http_error(out, 413, "request too large", "inference requests are limited to 32 MiB");
    v2_request q;
    waft_buf why = WAFT_BUF_INIT, body = WAFT_BUF_INIT;
    call_result c;
    metadata md;
    int have_md = 0;
    memset(&q, 0, sizeof q);
    waft_buf_init(&c.answer);
    if (!v2_parse(req, &q, &why)) {
        http_error_buf(out, 400, "bad inference request", &why);
        goto done;
    }
    if (!get_metadata(model, &md, out)) goto done; /* the output's name; 404/503 before any work */
    have_md = 1;
    if (!predict(model, q.tensor.data, q.tensor.len, NULL, &c, out)) goto done;
    const waft_ml_tensor *t = &c.tensor;
    const waft_ml_vtype *vt = t->n_types ? waft_ml_vtype_by_name(t->types[0]) : waft_ml_vtype_by_name((waft_str){"ValueF32", 8});
    /* Elements the dimensions claim, stopping once past what the data could hold: a wrapped product
     * must never pass the size check and send the loop below past the data. */
    uint64_t count = 1;
    for (uint32_t i = 0; i < t->n_dims && count <= t->data_len; i++) count *= t->dims[i];
    if (!vt || t->n_dims == 0 || count > t->data_len || count * vt->size != t->data_len || (t->flags & 1)) {
        http_error(out, 500, "internal error", "MlInference.Predict answered a tensor that cannot be written as "
                                               "KServe output (unknown type, size mismatch or column-major)");
        goto done;
    }
    waft_json j;
    waft_json_init(&j, &body);
    waft_buf_reserve(&body, (size_t)count * 12 + 256);
    waft_json_object_begin(&j);
    waft_json_key_c(&j, "model_name");
    waft_json_string(&j, model.ptr, model.len);
    waft_json_key_c(&j, "model_version");
    waft_json_string_c(&j, "1");
    if (q.have_id) {
        waft_json_key_c(&j, "id");
        waft_json_string(&j, (const char *)q.id.data, q.id.len);
    }
    waft_json_key_c(&j, "outputs");
    waft_json_array_begin(&j);
    waft_json_object_begin(&j);
    waft_json_key_c(&j, "name");
    waft_str name = meta_str(&md, "output_name");
    if (name.ptr) waft_json_string(&j, name.ptr, name.len);
    else waft_json_string_c(&j, "output0");
    waft_json_key_c(&j, "datatype");
    waft_json_string_c(&j, vt->kserve);
    waft_json_key_c(&j, "shape");
    waft_json_array_begin(&j);
    for (uint32_t i = 0; i < t->n_dims; i++) waft_json_u64(&j, t->dims[i]);
    waft_json_array_end(&j);
    waft_json_key_c(&j, "data");
    waft_json_array_begin(&j);
    for (uint64_t i = 0; i < count; i++) write_element(&j, vt, t->data + i * vt->size, (t->flags & 2) != 0);
    waft_json_array_end(&j);
    waft_json_object_end(&j);
    waft_json_array_end(&j);
    waft_json_object_end(&j);
    respond_json(out, 200, &body);
done:
    waft_buf_free(&q.id);
    waft_buf_free(&q.tensor);
    waft_buf_free(&why);
    waft_buf_free(&body);
    waft_buf_free(&c.answer);
    if (have_md) metadata_free(&md);
    return WAFT_OK;
}

int route_v2(waft_str *seg, int n, waft_str method, const waft_http_request *req, waft_str path, waft_buf *out) {
    use_kserve_errors(1);
    if (n == 1) return GET_ONLY(v2_server_metadata(out));
    if (n == 3 && waft_str_eq(seg[1], "health") && waft_str_eq(seg[2], "live")) return GET_ONLY(v2_live(out));
    if (n == 3 && waft_str_eq(seg[1], "health") && waft_str_eq(seg[2], "ready")) return GET_ONLY(v2_ready(out));
    if (n >= 3 && waft_str_eq(seg[1], "models")) {
        waft_str model = seg[2];
        int rest = 3;
        if (n >= 5 && waft_str_eq(seg[3], "versions")) {
            if (!waft_str_eq(seg[4], "1")) /* one version per model, named "1" as Triton names a first one */
                return http_error(out, 404, "unknown version", "each model has one version: 1");
            rest = 5;
        }
        if (n == rest) return GET_ONLY(v2_model_metadata(model, out));
        if (n == rest + 1 && waft_str_eq(seg[rest], "config")) return GET_ONLY(v2_model_config(model, out));
        if (n == rest + 1 && waft_str_eq(seg[rest], "stats")) return GET_ONLY(v2_model_stats(model, out));
        if (n == rest + 1 && waft_str_eq(seg[rest], "ready")) return GET_ONLY(v2_model_ready(model, out));
        if (n == rest + 1 && waft_str_eq(seg[rest], "infer"))
            return is_method(method, "POST") ? v2_infer(model, req, out) : not_allowed(out, method, "POST");
    }
    return not_found(out, path);
}
