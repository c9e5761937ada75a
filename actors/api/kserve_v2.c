/* The API actor's KServe v2 / Open Inference Protocol routes: GET /v2, /v2/health/live, /v2/health/ready,
 * /v2/models/{m}, /v2/models/{m}/ready, /config, /stats; POST /v2/models/{m}/infer (several named inputs and
 * outputs, requested outputs only, JSON or the binary tensor data extension both ways, the classification
 * extension); POST /v2/repository/index and /v2/repository/models/{m}/load|unload (the model repository
 * extension). `/versions/1` after the model name is the one version each model has; another is 404.
 */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "jsonread.h"

#ifndef WAFT_VERSION
#error "WAFT_VERSION is the package version; actors/build.py defines it"
#endif

static int v2_server_metadata(waft_buf *out) {
    static const char body[] = "{\"name\":\"waft\",\"version\":\"" WAFT_VERSION "\",\"extensions\":"
                               "[\"binary_tensor_data\",\"classification\",\"model_repository\","
                               "\"model_configuration\",\"statistics\"]}";
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
        /* an unloaded model (the repository extension's unload) is not waited for */
        if (!waft_str_eq((waft_str){s, l}, "ready") && !waft_str_eq((waft_str){s, l}, "unloaded")) {
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
    uint32_t listed;
    /* a parcel that names no tensor: the engine's own name for its one input or output */
    if (!name.ptr && mp_at(md->p, md->n, strcmp(name_key, "input_name") == 0 ? "inputs" : "outputs", &r) &&
        waft_mp_peek(&r) == WAFT_MP_ARRAY && waft_mp_read_array(&r, &listed) && listed == 1) {
        size_t start = r.pos;
        waft_mp_reader f;
        const char *s;
        uint32_t l;
        if (waft_mp_skip(&r) && mp_at(r.data + start, r.pos - start, "name", &f) && waft_mp_peek(&f) == WAFT_MP_STR &&
            waft_mp_read_str(&f, &s, &l))
            name = (waft_str){s, l};
    }
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

/* The engine's own list of inputs or outputs in the metadata (`inputs`/`outputs`: {name, valueType,
 * dimensions}), when it has more than one: the metadata parcel describes one input and one output only. */
static int engine_list(const metadata *md, const char *key, waft_mp_reader *r, uint32_t *n) {
    return mp_at(md->p, md->n, key, r) && waft_mp_peek(r) == WAFT_MP_ARRAY && waft_mp_read_array(r, n) && *n > 1;
}

/* One engine spec as {name, <type_key>, <shape_key>}; `config`: Triton's TYPE_ names and [] for an unknown rank. */
static void write_engine_spec(waft_json *j, waft_mp_reader *r, int config) {
    uint32_t keys;
    const char *name = "", *vtype = "";
    uint32_t name_len = 0, vtype_len = 0;
    int64_t dims[MAX_DIMS];
    uint32_t n_dims = 0;
    int known_rank = 0;
    if (!waft_mp_read_map(r, &keys)) return;
    for (uint32_t k = 0; k < keys && !r->err; k++) {
        const char *key;
        uint32_t kl;
        if (!waft_mp_read_str(r, &key, &kl)) return;
        waft_str ks = {key, kl};
        if (waft_str_eq(ks, "name") && waft_mp_peek(r) == WAFT_MP_STR) {
            waft_mp_read_str(r, &name, &name_len);
        } else if (waft_str_eq(ks, "valueType") && waft_mp_peek(r) == WAFT_MP_STR) {
            waft_mp_read_str(r, &vtype, &vtype_len);
        } else if (waft_str_eq(ks, "dimensions") && waft_mp_peek(r) == WAFT_MP_ARRAY) {
            uint32_t n;
            waft_mp_read_array(r, &n);
            known_rank = 1;
            for (uint32_t d = 0; d < n && !r->err; d++) {
                int64_t v = -1;
                if (!waft_mp_read_i64(r, &v)) return;
                if (n_dims < MAX_DIMS) dims[n_dims++] = v;
            }
        } else if (!waft_mp_skip(r)) {
            return;
        }
    }
    const char *dt = kserve_of_tensor_type((waft_str){vtype, vtype_len});
    waft_json_object_begin(j);
    waft_json_key_c(j, "name");
    waft_json_string(j, name, name_len);
    if (config) {
        char type[24] = "TYPE_";
        size_t tl = strlen(dt) < sizeof type - 6 ? strlen(dt) : sizeof type - 6;
        memcpy(type + 5, dt, tl);
        type[5 + tl] = 0;
        waft_json_key_c(j, "data_type");
        waft_json_string_c(j, type);
        waft_json_key_c(j, "dims");
    } else {
        waft_json_key_c(j, "datatype");
        waft_json_string_c(j, dt);
        waft_json_key_c(j, "shape");
    }
    waft_json_array_begin(j);
    for (uint32_t d = 0; d < n_dims; d++) waft_json_i64(j, dims[d]);
    if (!known_rank && !config) waft_json_i64(j, -1);
    waft_json_array_end(j);
    waft_json_object_end(j);
}

/* The model's inputs and outputs as two lists, in `writer`'s form: the parcel's one input and one output, or the
 * engine's lists where a model has more. */
static void write_io(waft_json *j, const metadata *md, const char *in_key, const char *out_key, const char *dt_in,
                     const char *dt_out, tensor_writer writer) {
    waft_mp_reader ri, ro;
    uint32_t ni, no;
    if (engine_list(md, "inputs", &ri, &ni) || engine_list(md, "outputs", &ro, &no)) {
        int config = writer != write_meta_tensor;
        if (!mp_at(md->p, md->n, "inputs", &ri) || !waft_mp_read_array(&ri, &ni)) ni = 0;
        if (!mp_at(md->p, md->n, "outputs", &ro) || !waft_mp_read_array(&ro, &no)) no = 0;
        waft_json_key_c(j, in_key);
        waft_json_array_begin(j);
        for (uint32_t i = 0; i < ni && !ri.err; i++) write_engine_spec(j, &ri, config);
        waft_json_array_end(j);
        waft_json_key_c(j, out_key);
        waft_json_array_begin(j);
        for (uint32_t i = 0; i < no && !ro.err; i++) write_engine_spec(j, &ro, config);
        waft_json_array_end(j);
        return;
    }
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
    if (!get_metadata_fresh(model, &md, out)) return WAFT_OK;
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
    if (!get_metadata_fresh(model, &md, out)) return WAFT_OK;
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
 * (ListModels' `stats`); here they are put under {"model_stats": [{name, version, ...}]}: of one model, or of
 * every model with statistics (GET /v2/models/stats) when `model` is empty. */
static int v2_model_stats(waft_str model, waft_buf *out) {
    if (model.len) {
        metadata md;
        if (!get_metadata_fresh(model, &md, out)) return WAFT_OK; /* 404 unknown, 503 loading */
        metadata_free(&md);
    }
    waft_buf answer = WAFT_BUF_INIT, body = WAFT_BUF_INIT;
    if (!list_models(&answer, out)) goto done;
    waft_mp_reader r;
    uint32_t n_models = 0;
    int found = 0;
    waft_json j;
    waft_json_init(&j, &body);
    waft_json_object_begin(&j);
    waft_json_key_c(&j, "model_stats");
    waft_json_array_begin(&j);
    if (!mp_at(answer.data, answer.len, "models", &r) || !waft_mp_read_array(&r, &n_models)) n_models = 0;
    for (uint32_t m = 0; m < n_models && !r.err; m++) {
        size_t start = r.pos;
        if (!waft_mp_skip(&r)) break;
        const uint8_t *entry = r.data + start;
        size_t entry_len = r.pos - start, ns, ne, ss, se;
        if (!mp_field(entry, entry_len, "name", &ns, &ne)) continue;
        waft_mp_reader name_r;
        const char *name;
        uint32_t name_len;
        waft_mp_reader_init(&name_r, entry + ns, ne - ns);
        if (!waft_mp_read_str(&name_r, &name, &name_len)) continue;
        if (model.len && (name_len != model.len || memcmp(name, model.ptr, model.len) != 0)) continue;
        if (!mp_field(entry, entry_len, "stats", &ss, &se)) continue; /* not loaded: nothing counted */
        found = 1;
        waft_json_object_begin(&j);
        waft_json_key_c(&j, "name");
        waft_json_string(&j, name, name_len);
        waft_json_key_c(&j, "version");
        waft_json_string_c(&j, "1");
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
        waft_json_object_end(&j);
    }
    waft_json_array_end(&j);
    waft_json_object_end(&j);
    if (model.len && !found) http_error(out, 503, "model loading", "the provider lists no statistics for this model yet");
    else respond_json(out, 200, &body);
done:
    waft_buf_free(&answer);
    waft_buf_free(&body);
    return WAFT_OK;
}

static int v2_model_ready(waft_str model, waft_buf *out) {
    metadata md;
    if (!get_metadata_fresh(model, &md, out)) return WAFT_OK; /* 404 unknown, 503 loading */
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

/* At most this many inputs and requested outputs in one request (far beyond any model served here). */
#define MAX_IO 16
/* The largest `classification` count: Triton's top-k is for labels a person reads. */
#define MAX_CLASSES 1000u

typedef struct {
    waft_buf name;
    int binary;              /* -1: not said (the request's binary_data_output decides), 0 or 1 */
    uint32_t classification; /* 0: the tensor itself; k: the top k as "value:index[:label]" strings */
} v2_output_req;

typedef struct {
    waft_buf id;
    int have_id;
    waft_buf first;   /* the first input's msgpack Tensor (InferenceInput.tensor, for readers of one input) */
    waft_buf inputs;  /* the msgpack {name, tensor} maps of every input, in order (InferenceInput.inputs) */
    uint32_t n_inputs;
    v2_output_req outs[MAX_IO];
    uint32_t n_outs;
    int binary_output; /* the request's parameters.binary_data_output */
} v2_request;

static void v2_request_free(v2_request *q) {
    waft_buf_free(&q->id);
    waft_buf_free(&q->first);
    waft_buf_free(&q->inputs);
    for (uint32_t i = 0; i < q->n_outs; i++) waft_buf_free(&q->outs[i].name);
}

typedef struct {
    const uint8_t *at; /* binary tensor data not yet taken by an input (binary tensor data extension) */
    size_t left;
} binary_rest;

/* One entry of `inputs`: {name, shape, datatype, data | parameters.binary_data_size}, appended to q as a
 * {name, tensor} map. 1, or 0 with the reason in `why` (or in j). */
static int v2_parse_input(jr *j, binary_rest *bin, v2_request *q, waft_buf *why, const char **problem) {
    waft_buf key = WAFT_BUF_INIT, text = WAFT_BUF_INIT, name = WAFT_BUF_INIT, data = WAFT_BUF_INIT;
    int fo = 1, ok = 0, have_data = 0, have_shape = 0, have_name = 0;
    size_t data_pos = 0;
    int64_t binary_size = -1;
    uint32_t shape[MAX_DIMS], n_shape = 0;
    const waft_ml_vtype *vt = NULL;
    if (!jr_object_begin(j)) { *problem = "each input must be an object"; goto done; }
    while (jr_object_next(j, &fo, &key)) {
        waft_str ik = {(const char *)key.data, key.len};
        if (waft_str_eq(ik, "name")) {
            if (!jr_string(j, &name) || name.len == 0) { *problem = "an input's name must be a non-empty string"; goto done; }
            have_name = 1;
        } else if (waft_str_eq(ik, "shape")) {
            int fs = 1;
            if (!jr_array_begin(j)) { *problem = "shape must be an array of positive integers"; goto done; }
            while (jr_array_next(j, &fs)) {
                int64_t d;
                if (!jr_int64(j, &d) || d < 1 || d > 0xffffffffLL) {
                    *problem = "shape must be an array of positive integers";
                    goto done;
                }
                if (n_shape >= MAX_DIMS) { *problem = "shape: more than 16 dimensions"; goto done; }
                shape[n_shape++] = (uint32_t)d;
            }
            have_shape = 1;
        } else if (waft_str_eq(ik, "datatype")) {
            waft_buf_reset(&text);
            if (!jr_string(j, &text)) { *problem = "datatype must be a string"; goto done; }
            vt = waft_ml_vtype_by_kserve((waft_str){(const char *)text.data, text.len});
            if (!vt) {
                waft_buf_append_str(why, "unsupported datatype \"");
                waft_buf_append(why, text.data, text.len);
                waft_buf_append_str(why, "\"; supported: BOOL UINT8 UINT16 UINT32 UINT64 INT8 INT16 "
                                         "INT32 INT64 FP16 (binary only) FP32 FP64");
                goto done;
            }
        } else if (waft_str_eq(ik, "data")) {
            data_pos = j->pos; /* read once the datatype is known */
            have_data = 1;
            if (!jr_skip(j)) goto done;
        } else if (waft_str_eq(ik, "parameters")) {
            int fp = 1;
            if (!jr_object_begin(j)) { *problem = "parameters must be an object"; goto done; }
            while (jr_object_next(j, &fp, &key)) {
                if (waft_str_eq((waft_str){(const char *)key.data, key.len}, "binary_data_size")) {
                    if (!jr_int64(j, &binary_size) || binary_size < 0) {
                        *problem = "binary_data_size must be a non-negative integer";
                        goto done;
                    }
                } else if (!jr_skip(j)) {
                    goto done;
                }
            }
        } else if (!jr_skip(j)) {
            goto done;
        }
    }
    if (j->err) goto done;
    if (!have_name) { *problem = "each input needs a name (the model's input names are in GET /v2/models/{m})"; goto done; }
    if (!have_shape || n_shape == 0) { *problem = "each input needs a shape"; goto done; }
    if (!vt) { *problem = "each input needs a datatype"; goto done; }
    uint64_t count = 1, got = 0;
    for (uint32_t i = 0; i < n_shape; i++) {
        count *= shape[i];
        if (count > ((uint64_t)1 << 36)) { *problem = "an input is too large"; goto done; }
    }
    if (binary_size >= 0) {
        if (!bin->at || (uint64_t)binary_size > bin->left) {
            *problem = "binary_data_size exceeds the binary data after the JSON header "
                       "(Inference-Header-Content-Length)";
            goto done;
        }
        if ((uint64_t)binary_size != count * vt->size) {
            waft_buf_append_str(why, "input ");
            waft_buf_append(why, name.data, name.len);
            waft_buf_append_str(why, ": shape needs ");
            waft_buf_append_u64(why, count * vt->size);
            waft_buf_append_str(why, " bytes of binary data, binary_data_size is ");
            waft_buf_append_u64(why, (uint64_t)binary_size);
            goto done;
        }
        waft_buf_append(&data, bin->at, (size_t)binary_size);
        bin->at += binary_size;
        bin->left -= (size_t)binary_size;
    } else {
        if (!have_data) { *problem = "each input needs data (or parameters.binary_data_size)"; goto done; }
        if (vt->kind == 'f' && vt->size == 2) { *problem = "FP16 cannot be sent as JSON numbers: use binary data"; goto done; }
        size_t end = j->pos;
        j->pos = data_pos;
        if (waft_buf_reserve(&data, (size_t)(count < ((uint64_t)1 << 26) ? count : 0) * vt->size) != 0) {
            *problem = "out of memory";
            goto done;
        }
        if (!read_kserve_data(j, vt, &data, &got)) goto done;
        j->pos = end;
        if (got != count) {
            waft_buf_append_str(why, "input ");
            waft_buf_append(why, name.data, name.len);
            waft_buf_append_str(why, ": shape [");
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
    if (data.failed) { *problem = "out of memory"; goto done; }
    if (q->n_inputs == 0) waft_ml_write_tensor(&q->first, shape, n_shape, vt->wire, 0, data.data, data.len);
    waft_mp_write_map(&q->inputs, 2);
    waft_mp_write_cstr(&q->inputs, "name");
    waft_mp_write_str(&q->inputs, (const char *)name.data, name.len);
    waft_mp_write_cstr(&q->inputs, "tensor");
    waft_ml_write_tensor(&q->inputs, shape, n_shape, vt->wire, 0, data.data, data.len);
    q->n_inputs++;
    ok = !q->inputs.failed && !q->first.failed;
    if (!ok) *problem = "out of memory";
done:
    waft_buf_free(&key);
    waft_buf_free(&text);
    waft_buf_free(&name);
    waft_buf_free(&data);
    return ok;
}

/* One entry of `outputs`: {name, parameters: {binary_data, classification}}. */
static int v2_parse_output(jr *j, v2_request *q, const char **problem) {
    waft_buf key = WAFT_BUF_INIT;
    v2_output_req *o = &q->outs[q->n_outs];
    int fo = 1, ok = 0, have_name = 0;
    waft_buf_init(&o->name);
    o->binary = -1;
    o->classification = 0;
    q->n_outs++; /* owned from here: freed with the request */
    if (!jr_object_begin(j)) { *problem = "each requested output must be an object"; goto done; }
    while (jr_object_next(j, &fo, &key)) {
        waft_str k = {(const char *)key.data, key.len};
        if (waft_str_eq(k, "name")) {
            if (!jr_string(j, &o->name) || o->name.len == 0) { *problem = "an output's name must be a non-empty string"; goto done; }
            have_name = 1;
        } else if (waft_str_eq(k, "parameters")) {
            int fp = 1;
            if (!jr_object_begin(j)) { *problem = "an output's parameters must be an object"; goto done; }
            while (jr_object_next(j, &fp, &key)) {
                waft_str pk = {(const char *)key.data, key.len};
                if (waft_str_eq(pk, "binary_data")) {
                    if (!jr_bool(j, &o->binary)) { *problem = "binary_data must be true or false"; goto done; }
                } else if (waft_str_eq(pk, "classification")) {
                    int64_t k2;
                    if (!jr_int64(j, &k2) || k2 < 1 || k2 > MAX_CLASSES) {
                        *problem = "classification must be a count of classes from 1 to 1000";
                        goto done;
                    }
                    o->classification = (uint32_t)k2;
                } else if (!jr_skip(j)) {
                    goto done;
                }
            }
        } else if (!jr_skip(j)) {
            goto done;
        }
    }
    if (j->err) goto done;
    if (!have_name) { *problem = "each requested output needs a name"; goto done; }
    for (uint32_t i = 0; i + 1 < q->n_outs; i++)
        if (q->outs[i].name.len == o->name.len && memcmp(q->outs[i].name.data, o->name.data, o->name.len) == 0) {
            *problem = "an output is requested twice";
            goto done;
        }
    ok = 1;
done:
    waft_buf_free(&key);
    return ok;
}

/* Parse the inference request: every input as a msgpack {name, tensor}, the requested outputs and how each is
 * wanted. 1, or 0 with the reason in `why`. */
static int v2_parse(const waft_http_request *req, v2_request *q, waft_buf *why) {
    const uint8_t *json = req->body;
    size_t json_len = req->body_len;
    binary_rest bin = {NULL, 0};
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
        bin.at = req->body + n;
        bin.left = req->body_len - n;
    }
    jr j;
    waft_buf key = WAFT_BUF_INIT;
    int first = 1, ok = 0;
    const char *problem = NULL;
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
                if (q->n_inputs >= MAX_IO) { problem = "more than 16 inputs"; goto done; }
                if (!v2_parse_input(&j, &bin, q, why, &problem)) goto done;
            }
        } else if (waft_str_eq(k, "outputs")) {
            int fa = 1;
            if (!jr_array_begin(&j)) { problem = "outputs must be an array"; goto done; }
            while (jr_array_next(&j, &fa)) {
                if (q->n_outs >= MAX_IO) { problem = "more than 16 requested outputs"; goto done; }
                if (!v2_parse_output(&j, q, &problem)) goto done;
            }
        } else if (waft_str_eq(k, "parameters")) {
            int fp = 1;
            if (!jr_object_begin(&j)) { problem = "parameters must be an object"; goto done; }
            while (jr_object_next(&j, &fp, &key)) {
                if (waft_str_eq((waft_str){(const char *)key.data, key.len}, "binary_data_output")) {
                    if (!jr_bool(&j, &q->binary_output)) { problem = "binary_data_output must be true or false"; goto done; }
                } else if (!jr_skip(&j)) {
                    goto done;
                }
            }
        } else if (!jr_skip(&j)) {
            goto done;
        }
    }
    if (j.err) goto done;
    if (!jr_at_end(&j)) { jr_fail(&j, "trailing characters after the JSON value"); goto done; }
    if (q->n_inputs == 0) { problem = "inputs must hold at least one input"; goto done; }
    ok = 1;
done:
    if (!ok && !why->len) jr_explain(&j, problem, "invalid inference request", why);
    waft_buf_free(&key);
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

/* One element as a double, for ranking classes in the output's own type (exact for every type but the widest
 * integers, whose neighbours may tie). */
static double element_value(const waft_ml_vtype *vt, const uint8_t *p, int big_endian) {
    uint64_t bits = 0;
    for (size_t b = 0; b < vt->size; b++) bits |= (uint64_t)p[big_endian ? vt->size - 1 - b : b] << (8 * b);
    if (vt->kind == 'b' || vt->kind == 'u') return (double)bits;
    if (vt->kind == 'i') {
        unsigned shift = 64u - vt->size * 8u;
        return (double)(shift ? (int64_t)(bits << shift) >> shift : (int64_t)bits);
    }
    if (vt->size == 2) return waft_ml_half_to_float((uint16_t)bits);
    if (vt->size == 4) {
        uint32_t u = (uint32_t)bits;
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    double d;
    memcpy(&d, &bits, 8);
    return d;
}

/* An output of the answer: its name, and its tensor checked to be writable (row-major, sizes agreeing). */
typedef struct {
    waft_str name;
    waft_ml_tensor t;
    const waft_ml_vtype *vt;
    uint64_t count;
} v2_output;

static int check_output(v2_output *o) {
    o->vt = o->t.n_types ? waft_ml_vtype_by_name(o->t.types[0]) : waft_ml_vtype_by_name((waft_str){"ValueF32", 8});
    /* Elements the dimensions claim, stopping once past what the data could hold: a wrapped product must
     * never pass the size check and send a loop past the data. */
    uint64_t count = 1;
    for (uint32_t i = 0; i < o->t.n_dims && count <= o->t.data_len; i++) count *= o->t.dims[i];
    o->count = count;
    return o->vt && o->t.n_dims && count <= o->t.data_len && count * o->vt->size == o->t.data_len &&
           !(o->t.flags & 1);
}

/* The labels parcel as views (NULL entries when the model has none). */
typedef struct {
    waft_str *at;
    uint32_t n;
} label_list;

static void read_labels(const metadata *md, label_list *l) {
    waft_mp_reader r;
    uint32_t n;
    l->at = NULL;
    l->n = 0;
    if (!mp_at(md->p, md->n, "labels", &r) || waft_mp_peek(&r) != WAFT_MP_ARRAY || !waft_mp_read_array(&r, &n) || !n)
        return;
    l->at = malloc(sizeof *l->at * n);
    if (!l->at) return;
    for (uint32_t i = 0; i < n && !r.err; i++) {
        const char *s = NULL;
        uint32_t len = 0;
        if (waft_mp_peek(&r) == WAFT_MP_STR) waft_mp_read_str(&r, &s, &len);
        else waft_mp_skip(&r);
        l->at[i] = (waft_str){s, len};
        l->n = i + 1;
    }
}

typedef struct {
    double v;
    uint32_t i;
} ranked;

static int by_value_desc(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->v != y->v) return x->v > y->v ? -1 : 1; /* NaN ranks last: it compares unequal and not greater */
    return x->i < y->i ? -1 : x->i > y->i;         /* ties: the lower index first, as a stable sort */
}

/* Triton's classification extension: each row's top k as "<value>:<index>[:<label>]" strings (BYTES), in
 * `strings` as 4-byte little-endian lengths each followed by the bytes (the binary form of BYTES). A tensor of
 * two or more dimensions is one row per index of the first ([batch, k]); one dimension is one row ([k]). */
static int classify(const v2_output *o, uint32_t k, const label_list *labels, waft_buf *strings, uint32_t *rows_out,
                    uint32_t *k_out) {
    uint32_t rows = o->t.n_dims >= 2 ? o->t.dims[0] : 1;
    uint64_t per_row = rows ? o->count / rows : 0;
    if (per_row == 0 || per_row > (1u << 24)) return 0;
    if (k > per_row) k = (uint32_t)per_row;
    ranked *rank = malloc(sizeof *rank * (size_t)per_row);
    if (!rank) return 0;
    waft_buf text = WAFT_BUF_INIT;
    for (uint32_t row = 0; row < rows; row++) {
        for (uint64_t i = 0; i < per_row; i++) {
            const uint8_t *p = o->t.data + (row * per_row + i) * o->vt->size;
            rank[i] = (ranked){element_value(o->vt, p, (o->t.flags & 2) != 0), (uint32_t)i};
        }
        qsort(rank, (size_t)per_row, sizeof *rank, by_value_desc);
        for (uint32_t c = 0; c < k; c++) {
            waft_json tj;
            waft_buf_reset(&text);
            waft_json_init(&tj, &text);
            write_element(&tj, o->vt, o->t.data + (row * per_row + rank[c].i) * o->vt->size, (o->t.flags & 2) != 0);
            waft_buf_append_str(&text, ":");
            waft_buf_append_u64(&text, rank[c].i);
            if (rank[c].i < labels->n && labels->at[rank[c].i].ptr) {
                waft_buf_append_str(&text, ":");
                waft_buf_append(&text, labels->at[rank[c].i].ptr, labels->at[rank[c].i].len);
            }
            uint32_t len = (uint32_t)text.len;
            waft_buf_append(strings, &len, 4); /* little-endian on wasm32 */
            waft_buf_append(strings, text.data, text.len);
        }
    }
    free(rank);
    waft_buf_free(&text);
    *rows_out = rows;
    *k_out = k;
    return !strings->failed;
}

/* The outputs the provider answered: InferenceOutput.outputs ({name, tensor} each), or, from a provider that
 * does not know it, the one `tensor` under the metadata's output name. */
static int read_outputs(const call_result *c, const metadata *md, v2_output *outs, uint32_t *n_outs) {
    size_t s, e;
    *n_outs = 0;
    if (!mp_field(c->answer.data, c->answer.len, "outputs", &s, &e)) {
        waft_str name = meta_str(md, "output_name");
        outs[0].name = name.ptr ? name : (waft_str){"output0", 7};
        outs[0].t = c->tensor;
        *n_outs = 1;
        return 1;
    }
    waft_mp_reader r;
    uint32_t n;
    waft_mp_reader_init(&r, c->answer.data + s, e - s);
    if (!waft_mp_read_array(&r, &n) || n > MAX_IO) return 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t keys;
        int have_name = 0, have_tensor = 0;
        if (!waft_mp_read_map(&r, &keys)) return 0;
        for (uint32_t k = 0; k < keys && !r.err; k++) {
            const char *key;
            uint32_t kl;
            if (!waft_mp_read_str(&r, &key, &kl)) return 0;
            if (kl == 4 && memcmp(key, "name", 4) == 0) {
                const char *v;
                uint32_t vl;
                if (!waft_mp_read_str(&r, &v, &vl)) return 0;
                outs[i].name = (waft_str){v, vl};
                have_name = 1;
            } else if (kl == 6 && memcmp(key, "tensor", 6) == 0) {
                if (!waft_ml_read_tensor(&r, &outs[i].t)) return 0;
                have_tensor = 1;
            } else if (!waft_mp_skip(&r)) {
                return 0;
            }
        }
        if (!have_name || !have_tensor) return 0;
    }
    *n_outs = n;
    return !r.err;
}

static int v2_infer(waft_str model, const waft_http_request *req, waft_buf *out) {
    if (req->body_len > MAX_JSON_BODY)
        return http_error(out, 413, "request too large", "inference requests are limited to 32 MiB");
    v2_request q;
    waft_buf why = WAFT_BUF_INIT, body = WAFT_BUF_INIT, binary = WAFT_BUF_INIT, msg = WAFT_BUF_INIT;
    waft_buf strings[MAX_IO];
    call_result c;
    metadata md;
    label_list labels = {NULL, 0};
    v2_output outs[MAX_IO];
    uint32_t n_outs = 0;
    int have_md = 0;
    memset(&q, 0, sizeof q);
    for (uint32_t i = 0; i < MAX_IO; i++) waft_buf_init(&strings[i]);
    waft_buf_init(&c.answer);
    if (!v2_parse(req, &q, &why)) {
        http_error_buf(out, 400, "bad inference request", &why);
        goto done;
    }
    if (!get_metadata(model, &md, out)) goto done; /* labels and output names; 404/503 before any work */
    have_md = 1;
    /* InferenceInput with Waft's `inputs` (each by name) and `outputs` (the names wanted; [] all) */
    waft_mp_write_map(&msg, 5);
    waft_mp_write_cstr(&msg, "model");
    waft_mp_write_str(&msg, model.ptr, model.len);
    waft_mp_write_cstr(&msg, "tensor");
    waft_buf_append(&msg, q.first.data, q.first.len);
    waft_mp_write_cstr(&msg, "index");
    waft_mp_write_u64(&msg, 0);
    waft_mp_write_cstr(&msg, "inputs");
    waft_mp_write_array(&msg, q.n_inputs);
    waft_buf_append(&msg, q.inputs.data, q.inputs.len);
    waft_mp_write_cstr(&msg, "outputs");
    waft_mp_write_array(&msg, q.n_outs);
    for (uint32_t i = 0; i < q.n_outs; i++)
        waft_mp_write_str(&msg, (const char *)q.outs[i].name.data, q.outs[i].name.len);
    if (!predict_message(model, &msg, &c, out)) goto done;
    if (!read_outputs(&c, &md, outs, &n_outs)) {
        http_error(out, 500, "internal error", "MlInference.Predict answered outputs that cannot be read");
        goto done;
    }
    for (uint32_t i = 0; i < n_outs; i++)
        if (!check_output(&outs[i])) {
            http_error(out, 500, "internal error", "MlInference.Predict answered a tensor that cannot be written as "
                                                   "KServe output (unknown type, size mismatch or column-major)");
            goto done;
        }
    read_labels(&md, &labels);
    waft_json j;
    waft_json_init(&j, &body);
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
    for (uint32_t i = 0; i < n_outs; i++) {
        const v2_output *o = &outs[i];
        const v2_output_req *wanted = NULL;
        for (uint32_t w = 0; w < q.n_outs; w++)
            if (o->name.len == q.outs[w].name.len && memcmp(o->name.ptr, q.outs[w].name.data, o->name.len) == 0)
                wanted = &q.outs[w];
        int as_binary = wanted && wanted->binary >= 0 ? wanted->binary : q.binary_output;
        uint32_t classes = wanted ? wanted->classification : 0, rows = 0, k = 0;
        if (classes && !classify(o, classes, &labels, &strings[i], &rows, &k)) {
            http_error(out, 400, "bad inference request", "classification needs an output with at least one "
                                                           "class per row");
            goto done;
        }
        waft_json_object_begin(&j);
        waft_json_key_c(&j, "name");
        waft_json_string(&j, o->name.ptr, o->name.len);
        waft_json_key_c(&j, "datatype");
        waft_json_string_c(&j, classes ? "BYTES" : o->vt->kserve);
        waft_json_key_c(&j, "shape");
        waft_json_array_begin(&j);
        if (classes) {
            if (o->t.n_dims >= 2) waft_json_u64(&j, rows);
            waft_json_u64(&j, k);
        } else {
            for (uint32_t d = 0; d < o->t.n_dims; d++) waft_json_u64(&j, o->t.dims[d]);
        }
        waft_json_array_end(&j);
        if (as_binary) {
            /* the binary tensor data extension: the bytes follow the JSON, little-endian, row-major */
            size_t before = binary.len;
            if (classes) {
                waft_buf_append(&binary, strings[i].data, strings[i].len);
            } else if (o->t.flags & 2) {
                for (uint64_t e = 0; e < o->count; e++)
                    for (size_t b = 0; b < o->vt->size; b++)
                        waft_buf_push(&binary, o->t.data[e * o->vt->size + o->vt->size - 1 - b]);
            } else {
                waft_buf_append(&binary, o->t.data, o->t.data_len);
            }
            waft_json_key_c(&j, "parameters");
            waft_json_object_begin(&j);
            waft_json_key_c(&j, "binary_data_size");
            waft_json_u64(&j, binary.len - before);
            waft_json_object_end(&j);
        } else {
            waft_json_key_c(&j, "data");
            waft_json_array_begin(&j);
            if (classes) {
                size_t at = 0;
                while (at + 4 <= strings[i].len) {
                    uint32_t len;
                    memcpy(&len, strings[i].data + at, 4);
                    waft_json_string(&j, (const char *)strings[i].data + at + 4, len);
                    at += 4 + len;
                }
            } else {
                for (uint64_t e = 0; e < o->count; e++)
                    write_element(&j, o->vt, o->t.data + e * o->vt->size, (o->t.flags & 2) != 0);
            }
            waft_json_array_end(&j);
        }
        waft_json_object_end(&j);
    }
    waft_json_array_end(&j);
    waft_json_object_end(&j);
    if (!binary.len) {
        respond_json(out, 200, &body);
    } else {
        char header_len[24];
        size_t json_len = body.len, l = 0;
        char digits[24];
        do {
            digits[l++] = (char)('0' + json_len % 10);
            json_len /= 10;
        } while (json_len);
        for (size_t d = 0; d < l; d++) header_len[d] = digits[l - 1 - d];
        header_len[l] = 0;
        waft_buf_append(&body, binary.data, binary.len);
        if (body.failed) {
            waft_fail(out, "out of memory building the response");
            goto done;
        }
        respond(out, 200, "application/octet-stream", body.data, body.len, "inference-header-content-length",
                header_len);
    }
done:
    v2_request_free(&q);
    for (uint32_t i = 0; i < MAX_IO; i++) waft_buf_free(&strings[i]);
    free(labels.at);
    waft_buf_free(&why);
    waft_buf_free(&body);
    waft_buf_free(&binary);
    waft_buf_free(&msg);
    waft_buf_free(&c.answer);
    if (have_md) metadata_free(&md);
    return WAFT_OK;
}

/* Triton's model repository extension, over the models this actor's link names. POST /v2/repository/index:
 * [{name, version, state, reason}] with READY, LOADING or UNAVAILABLE (failed, or unloaded), only READY ones
 * when the body says {"ready": true}. */
static int v2_repository_index(const waft_http_request *req, waft_buf *out) {
    int ready_only = 0;
    if (req->body_len) {
        jr j;
        waft_buf key = WAFT_BUF_INIT, why = WAFT_BUF_INIT;
        int first = 1, ok = 1;
        jr_init(&j, req->body, req->body_len);
        if (!jr_object_begin(&j)) ok = 0;
        while (ok && jr_object_next(&j, &first, &key)) {
            if (waft_str_eq((waft_str){(const char *)key.data, key.len}, "ready")) ok = jr_bool(&j, &ready_only);
            else ok = jr_skip(&j);
        }
        if (ok && (j.err || !jr_at_end(&j))) ok = 0;
        waft_buf_free(&key);
        if (!ok) {
            jr_explain(&j, j.err ? NULL : "the body must be a JSON object such as {\"ready\": true}",
                       "invalid repository index request", &why);
            http_error_buf(out, 400, "bad repository request", &why);
            waft_buf_free(&why);
            return WAFT_OK;
        }
    }
    waft_buf answer = WAFT_BUF_INIT, body = WAFT_BUF_INIT;
    if (!list_models(&answer, out)) goto done;
    waft_mp_reader r;
    uint32_t n = 0;
    if (!mp_at(answer.data, answer.len, "models", &r) || !waft_mp_read_array(&r, &n)) {
        http_error(out, 500, "internal error", "MlInference.ListModels answered without models");
        goto done;
    }
    waft_json j;
    waft_json_init(&j, &body);
    waft_json_array_begin(&j);
    for (uint32_t i = 0; i < n && !r.err; i++) {
        size_t start = r.pos;
        if (!waft_mp_skip(&r)) break;
        const uint8_t *entry = r.data + start;
        size_t len = r.pos - start;
        waft_mp_reader f;
        const char *name = "", *status = "", *reason = "";
        uint32_t nl = 0, sl = 0, rl = 0;
        if (mp_at(entry, len, "name", &f)) waft_mp_read_str(&f, &name, &nl);
        if (mp_at(entry, len, "status", &f)) waft_mp_read_str(&f, &status, &sl);
        if (mp_at(entry, len, "reason", &f) && waft_mp_peek(&f) == WAFT_MP_STR) waft_mp_read_str(&f, &reason, &rl);
        waft_str st = {status, sl};
        const char *state = waft_str_eq(st, "ready") ? "READY" : waft_str_eq(st, "loading") ? "LOADING" : "UNAVAILABLE";
        if (ready_only && strcmp(state, "READY") != 0) continue;
        waft_json_object_begin(&j);
        waft_json_key_c(&j, "name");
        waft_json_string(&j, name, nl);
        waft_json_key_c(&j, "version");
        waft_json_string_c(&j, "1");
        waft_json_key_c(&j, "state");
        waft_json_string_c(&j, state);
        waft_json_key_c(&j, "reason");
        if (rl) waft_json_string(&j, reason, rl);
        else waft_json_string(&j, waft_str_eq(st, "unloaded") ? "unloaded" : "", waft_str_eq(st, "unloaded") ? 8 : 0);
        waft_json_object_end(&j);
    }
    waft_json_array_end(&j);
    if (r.err) http_error(out, 500, "internal error", "MlInference.ListModels answered something unreadable");
    else respond_json(out, 200, &body);
done:
    waft_buf_free(&answer);
    waft_buf_free(&body);
    return WAFT_OK;
}

/* POST /v2/repository/models/{m}/load|unload: MlInference.LoadModel / UnloadModel (Waft's) for this actor's
 * route. Load answers 200 once the model is loaded, as Triton's does; a failure is 400 with the provider's reason,
 * as Triton answers a load it refuses. The provider waits for the load at most 3/4 of the RPC timeout (the
 * HTTP request itself is bounded by it): a load still going on then is answered 503 "model loading", never
 * 200, saying that it goes on and where to see when it is ready. */
static int model_listed_as(waft_str model, const char *status, waft_buf *out, int *listed) {
    waft_buf answer = WAFT_BUF_INIT;
    *listed = 0;
    if (!list_models(&answer, out)) return 0;
    waft_mp_reader r;
    uint32_t n = 0;
    if (mp_at(answer.data, answer.len, "models", &r) && waft_mp_read_array(&r, &n)) {
        for (uint32_t i = 0; i < n && !r.err; i++) {
            size_t start = r.pos;
            if (!waft_mp_skip(&r)) break;
            waft_mp_reader f;
            const char *name = "", *st = "";
            uint32_t nl = 0, sl = 0;
            if (mp_at(r.data + start, r.pos - start, "name", &f)) waft_mp_read_str(&f, &name, &nl);
            if (nl == model.len && memcmp(name, model.ptr, nl) == 0 &&
                mp_at(r.data + start, r.pos - start, "status", &f) && waft_mp_read_str(&f, &st, &sl))
                *listed = waft_str_eq((waft_str){st, sl}, status);
        }
    }
    waft_buf_free(&answer);
    return 1;
}

static int v2_repository_load(waft_str model, int load, waft_buf *out) {
    waft_buf req = WAFT_BUF_INIT, answer = WAFT_BUF_INIT;
    waft_mp_write_map(&req, 1);
    waft_mp_write_cstr(&req, "model");
    waft_mp_write_str(&req, model.ptr, model.len);
    const char *op = load ? "MlInference.LoadModel" : "MlInference.UnloadModel";
    metadata_forget(model);
    if (req.failed || waft_host_call(ML_LINK, ML_CONTRACT, op, req.data, req.len, &answer) != WAFT_OK) {
        host_error(out, op, &answer);
        goto done;
    }
    waft_mp_reader r;
    uint32_t keys;
    if (mp_at(answer.data, answer.len, "error", &r) && waft_mp_read_map(&r, &keys) && keys == 1) {
        const char *variant, *message = "";
        uint32_t vl, ml = 0;
        waft_buf d = WAFT_BUF_INIT;
        if (waft_mp_read_str(&r, &variant, &vl)) {
            if (waft_mp_peek(&r) == WAFT_MP_STR) waft_mp_read_str(&r, &message, &ml);
            waft_buf_append(&d, variant, vl);
            waft_buf_append_str(&d, ": ");
        }
        waft_buf_append(&d, message, ml);
        http_error_buf(out, 400, load ? "load failed" : "unload failed", &d);
        waft_buf_free(&d);
        goto done;
    }
    int loading = 0;
    if (load && !model_listed_as(model, "loading", out, &loading)) goto done;
    if (loading) {
        waft_buf d = WAFT_BUF_INIT;
        waft_buf_append_str(&d, "model ");
        waft_buf_append(&d, model.ptr, model.len);
        waft_buf_append_str(&d, " is still loading (its load goes on): GET /v2/models/");
        waft_buf_append(&d, model.ptr, model.len);
        waft_buf_append_str(&d, "/ready answers 200 once it is ready; a larger WAFT_RPC_TIMEOUT_MS lets this "
                                "request wait longer");
        http_error_buf(out, 503, "model loading", &d);
        waft_buf_free(&d);
        goto done;
    }
    respond(out, 200, "application/json", "", 0, NULL, NULL);
done:
    waft_buf_free(&req);
    waft_buf_free(&answer);
    return WAFT_OK;
}

int route_v2(waft_str *seg, int n, waft_str method, const waft_http_request *req, waft_str path, waft_buf *out) {
    use_kserve_errors(1);
    if (n == 1) return GET_ONLY(v2_server_metadata(out));
    if (n == 3 && waft_str_eq(seg[1], "health") && waft_str_eq(seg[2], "live")) return GET_ONLY(v2_live(out));
    if (n == 3 && waft_str_eq(seg[1], "health") && waft_str_eq(seg[2], "ready")) return GET_ONLY(v2_ready(out));
    if (n == 3 && waft_str_eq(seg[1], "repository") && waft_str_eq(seg[2], "index"))
        return is_method(method, "POST") ? v2_repository_index(req, out) : not_allowed(out, method, "POST");
    if (n == 5 && waft_str_eq(seg[1], "repository") && waft_str_eq(seg[2], "models") &&
        (waft_str_eq(seg[4], "load") || waft_str_eq(seg[4], "unload")))
        return is_method(method, "POST") ? v2_repository_load(seg[3], waft_str_eq(seg[4], "load"), out)
                                         : not_allowed(out, method, "POST");
    if (n == 3 && waft_str_eq(seg[1], "models") && waft_str_eq(seg[2], "stats"))
        return GET_ONLY(v2_model_stats((waft_str){"", 0}, out)); /* every model's */
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
