/* The API actor: HTTP in, the ML pipeline behind it (`HttpServer.HandleRequest`).
 *
 * Routes (design README "The request path"; PUT and POST are both accepted for inference):
 *   PUT|POST /{model}              JSON Tensor in ({"dimensions":[1,4],"valueTypes":["ValueF32"],"flags":0,
 *                                  "data":[0,0,128,63,...]}) -> MlInference.Predict -> InferenceOutput JSON
 *   PUT|POST /{model}/preprocess   image -> pre-processor -> Predict -> InferenceOutput JSON
 *   PUT|POST /{model}/matches?k=N  image -> pre-processor -> Predict -> post-processor -> [{label, probability}]
 *   GET /models                    MlInference.ListModels as JSON
 *   GET /healthz                   {"status":"ok"}
 *   KServe v2 / Open Inference Protocol: GET /v2, /v2/health/live, /v2/health/ready, /v2/models/{m},
 *   /v2/models/{m}/ready; POST /v2/models/{m}/infer (JSON data, or the binary tensor extension's
 *   input side); `/versions/{v}` after the model name is accepted and ignored (one version each).
 * `healthz`, `models` and `v2` are therefore not usable as model names over HTTP.
 *
 * Errors are JSON {"error": "<what>", "detail": "<why>"} (design: Conventions): 400 bad tensor JSON or
 * undecodable image, 404 unknown model (the detail says how to install it) or route (the original answered
 * 500 `----N/A-----`), 405 wrong method (with Allow), 413 too large (the body, or an image's bytes; an image
 * whose header declares more pixels than the spec's max_pixels is a 400 "image too large"), 429 overloaded and 503 still loading / part not running (with Retry-After), 504
 * a host-call timeout, 500 only for what should not happen. Every HTTP outcome is an HttpResponse; only an
 * undecodable HttpRequest is a guest error.
 *
 * Models' input specs and labels come from MlInference.GetMetadata and are cached per model in the
 * instance (instances persist between calls): at most CACHE_SLOTS models (least recently used goes),
 * entries up to CACHE_MAX_ENTRY bytes, re-fetched every CACHE_REFRESH_USES uses and dropped when the
 * provider says the model is unknown or failed, so a re-linked model is picked up.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "jsonread.h"
#include "waft.h"

#define ML_CONTRACT "wasmcloud:mlinference"
#define ML_LINK "default"
#define PREPROCESSOR "waft/preprocessor"
#define POSTPROCESSOR "waft/postprocessor"

#define CACHE_SLOTS 16
#define CACHE_MAX_ENTRY (4u << 20)
#define CACHE_REFRESH_USES 256u
#define MAX_DIMS 16u
#define MAX_SEGMENTS 8
#define MAX_JSON_BODY (32u << 20)  /* JSON is ~4x its tensor, and is copied ~3 times on the way: fits 256 MiB */
#define DEFAULT_TOP_K 5u

typedef struct {
    const char *ptr;
    size_t len;
} view;

/* Run an error responder (which writes the HTTP error into `out`) and yield 0: "this step failed". */
#define FAIL(call) ((void)(call), 0)

static int view_eq(view v, const char *lit) { return v.len == strlen(lit) && memcmp(v.ptr, lit, v.len) == 0; }

static int view_ieq(view v, const char *lit) {
    if (v.len != strlen(lit)) return 0;
    for (size_t i = 0; i < v.len; i++) {
        char c = v.ptr[i];
        if (c >= 'a' && c <= 'z') c = (char)(c - 32);
        char d = lit[i];
        if (d >= 'a' && d <= 'z') d = (char)(d - 32);
        if (c != d) return 0;
    }
    return 1;
}

static int contains(const void *hay, size_t n, const char *needle) {
    size_t m = strlen(needle);
    const char *h = hay;
    if (!h || m > n) return 0;
    for (size_t i = 0; i + m <= n; i++)
        if (memcmp(h + i, needle, m) == 0) return 1;
    return 0;
}

/* ---- responses -------------------------------------------------------------------------------- */

static int respond(waft_buf *out, uint16_t status, const char *ctype, const void *body, size_t len,
                   const char *xname, const char *xvalue) {
    waft_str ct = {ctype, strlen(ctype)};
    waft_str xv = {xvalue ? xvalue : "", xvalue ? strlen(xvalue) : 0};
    waft_http_header h[2] = {{{"content-type", 12}, &ct, 1}, {{xname ? xname : "", xname ? strlen(xname) : 0}, &xv, 1}};
    waft_buf_reset(out);
    waft_http_response_encode(out, status, h, xname ? 2 : 1, body, len);
    return WAFT_OK;
}

static int respond_json(waft_buf *out, uint16_t status, waft_buf *body) {
    if (body->failed) return waft_fail(out, "out of memory building the response");
    return respond(out, status, "application/json", body->data, body->len, NULL, NULL);
}

/* {"error": error, "detail": detail}; 429/503 also say Retry-After, 405 says Allow. */
static int http_error_n(waft_buf *out, uint16_t status, const char *error, const char *detail, size_t detail_len,
                        const char *allow) {
    waft_buf body = WAFT_BUF_INIT;
    waft_json j;
    waft_json_init(&j, &body);
    waft_json_object_begin(&j);
    waft_json_key_c(&j, "error");
    waft_json_string_c(&j, error);
    waft_json_key_c(&j, "detail");
    waft_json_string(&j, detail ? detail : "", detail ? detail_len : 0);
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

static int http_error(waft_buf *out, uint16_t status, const char *error, const char *detail) {
    return http_error_n(out, status, error, detail, detail ? strlen(detail) : 0, NULL);
}

static int http_error_buf(waft_buf *out, uint16_t status, const char *error, waft_buf *detail) {
    if (detail->failed) return http_error(out, status, error, "");
    return http_error_n(out, status, error, (const char *)detail->data, detail->len, NULL);
}

/* ---- msgpack helpers -------------------------------------------------------------------------- */

/* Span [start, end) of the value under `key` in the top-level map `m`; 0 when absent or not a map. */
static int mp_field(const uint8_t *m, size_t n, const char *key, size_t *start, size_t *end) {
    waft_mp_reader r;
    uint32_t count;
    waft_mp_reader_init(&r, m, n);
    if (!waft_mp_read_map(&r, &count)) return 0;
    for (uint32_t i = 0; i < count && !r.err; i++) {
        if (waft_mp_peek(&r) != WAFT_MP_STR) {
            waft_mp_skip(&r);
            waft_mp_skip(&r);
            continue;
        }
        const char *k;
        uint32_t kl;
        waft_mp_read_str(&r, &k, &kl);
        size_t at = r.pos;
        if (!waft_mp_skip(&r)) return 0;
        if (waft_mp_key_is(k, kl, key)) {
            *start = at;
            *end = r.pos;
            return 1;
        }
    }
    return 0;
}

/* A reader positioned on `key`'s value in the map; 0 when absent. */
static int mp_at(const uint8_t *m, size_t n, const char *key, waft_mp_reader *r) {
    size_t s, e;
    if (!mp_field(m, n, key, &s, &e)) return 0;
    waft_mp_reader_init(r, m + s, e - s);
    return 1;
}

typedef struct {
    int is_error;
    view variant, message;
} status;

/* Status in every form seen on the wire (as mlwire.status_error): nil, "Success", {"success": nil},
 * {"error": {variant: message}}, serde's capitalised keys. Returns 0 when unreadable. */
static int read_status(const uint8_t *p, size_t n, status *st) {
    waft_mp_reader r;
    memset(st, 0, sizeof *st);
    waft_mp_reader_init(&r, p, n);
    waft_mp_type t = waft_mp_peek(&r);
    if (t == WAFT_MP_NIL) return 1;
    if (t == WAFT_MP_STR) {
        const char *s;
        uint32_t l;
        waft_mp_read_str(&r, &s, &l);
        return view_ieq((view){s, l}, "success");
    }
    uint32_t count;
    if (!waft_mp_read_map(&r, &count)) return 0;
    for (uint32_t i = 0; i < count && !r.err; i++) {
        const char *k;
        uint32_t kl;
        if (!waft_mp_read_str(&r, &k, &kl)) return 0;
        if (view_ieq((view){k, kl}, "error")) {
            uint32_t m;
            const uint8_t *v, *msg;
            uint32_t vl, ml;
            if (!waft_mp_read_map(&r, &m) || m != 1 || !waft_mp_read_bytes(&r, &v, &vl)) return 0;
            st->is_error = 1;
            st->variant = (view){(const char *)v, vl};
            if (waft_mp_peek(&r) == WAFT_MP_STR || waft_mp_peek(&r) == WAFT_MP_BIN) {
                waft_mp_read_bytes(&r, &msg, &ml);
                st->message = (view){(const char *)msg, ml};
            } else {
                waft_mp_skip(&r);
            }
        } else {
            waft_mp_skip(&r);
        }
    }
    return !r.err;
}

/* A Tensor map, as views into the payload. */
typedef struct {
    uint32_t dims[MAX_DIMS];
    uint32_t n_dims;
    view types[MAX_DIMS];
    uint32_t n_types;
    uint64_t flags;
    const uint8_t *data;
    uint32_t data_len;
} tview;

static int read_tensor(const uint8_t *p, size_t n, tview *t) {
    waft_mp_reader r;
    uint32_t count;
    memset(t, 0, sizeof *t);
    waft_mp_reader_init(&r, p, n);
    if (!waft_mp_read_map(&r, &count)) return 0;
    for (uint32_t i = 0; i < count && !r.err; i++) {
        const char *k;
        uint32_t kl;
        if (!waft_mp_read_str(&r, &k, &kl)) return 0;
        if (waft_mp_key_is(k, kl, "dimensions")) {
            uint32_t c;
            if (!waft_mp_read_array(&r, &c) || c > MAX_DIMS) return 0;
            for (uint32_t d = 0; d < c; d++)
                if (!waft_mp_read_u32(&r, &t->dims[d])) return 0;
            t->n_dims = c;
        } else if (waft_mp_key_is(k, kl, "valueTypes")) {
            uint32_t c = 1;
            if (waft_mp_peek(&r) != WAFT_MP_STR && !waft_mp_read_array(&r, &c)) return 0;
            if (c > MAX_DIMS) return 0;
            for (uint32_t v = 0; v < c; v++) {
                const char *s;
                uint32_t sl;
                if (!waft_mp_read_str(&r, &s, &sl)) return 0;
                t->types[v] = (view){s, sl};
            }
            t->n_types = c;
        } else if (waft_mp_key_is(k, kl, "flags")) {
            if (waft_mp_peek(&r) == WAFT_MP_NIL) waft_mp_read_nil(&r);
            else if (!waft_mp_read_u64(&r, &t->flags)) return 0;
        } else if (waft_mp_key_is(k, kl, "data")) {
            if (!waft_mp_read_bytes(&r, &t->data, &t->data_len)) return 0;
        } else {
            waft_mp_skip(&r);
        }
    }
    return !r.err;
}

/* ---- value types ------------------------------------------------------------------------------ */

typedef struct {
    const char *wire;   /* mlwire's canonical name */
    const char *kserve; /* Open Inference Protocol datatype */
    const char *alias;  /* the original smithy's signed spelling */
    uint8_t size;
    char kind; /* 'u' unsigned, 'i' signed, 'f' float, 'b' bool */
} vtype;

static const vtype VTYPES[] = {
    {"ValueU8", "UINT8", NULL, 1, 'u'},    {"ValueI8", "INT8", "ValueS8", 1, 'i'},
    {"ValueU16", "UINT16", NULL, 2, 'u'},  {"ValueI16", "INT16", "ValueS16", 2, 'i'},
    {"ValueU32", "UINT32", NULL, 4, 'u'},  {"ValueI32", "INT32", "ValueS32", 4, 'i'},
    {"ValueU64", "UINT64", NULL, 8, 'u'},  {"ValueI64", "INT64", "ValueS64", 8, 'i'},
    {"ValueF16", "FP16", NULL, 2, 'f'},    {"ValueF32", "FP32", NULL, 4, 'f'},
    {"ValueF64", "FP64", NULL, 8, 'f'},    {"ValueBool", "BOOL", NULL, 1, 'b'},
};
#define N_VTYPES (sizeof VTYPES / sizeof VTYPES[0])

/* Any spelling mlwire.value_type_name accepts: ValueF32, valueF32, F32, f32, ValueS8, bool. */
static const vtype *vtype_by_name(view v) {
    if (v.len >= 5 && view_ieq((view){v.ptr, 5}, "value")) {
        v.ptr += 5;
        v.len -= 5;
    }
    for (size_t i = 0; i < N_VTYPES; i++) {
        const vtype *t = &VTYPES[i];
        if (view_ieq(v, t->wire + 5) || (t->alias && view_ieq(v, t->alias + 5))) return t;
    }
    return NULL;
}

static const vtype *vtype_by_kserve(view v) {
    for (size_t i = 0; i < N_VTYPES; i++)
        if (view_eq(v, VTYPES[i].kserve)) return &VTYPES[i];
    return NULL;
}

static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, mant = h & 0x3ffu, bits;
    if (exp == 0x1f) bits = sign | 0x7f800000u | (mant << 13);
    else if (exp) bits = sign | ((exp + 112) << 23) | (mant << 13);
    else if (!mant) bits = sign;
    else {
        float f = (float)mant * 5.9604644775390625e-8f; /* subnormal: exact */
        return sign ? -f : f;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* ---- error mapping ---------------------------------------------------------------------------- */

/* A failed waft_host_call: the host's text says what happened (wasmcloud-protocol wording). */
static int host_error(waft_buf *out, const char *what, const waft_buf *err) {
    const uint8_t *t = err->failed ? NULL : err->data;
    size_t n = err->failed ? 0 : err->len;
    waft_buf d = WAFT_BUF_INIT;
    waft_buf_append_str(&d, what);
    waft_buf_append_str(&d, " failed: ");
    if (t) waft_buf_append(&d, t, n);
    else waft_buf_append_str(&d, "its answer did not fit in memory");
    int rc;
    if (contains(t, n, "timeout") || contains(t, n, "timed out") || contains(t, n, "in time") ||
        contains(t, n, "deadline"))
        rc = http_error_buf(out, 504, "timeout", &d);
    else if (contains(t, n, "no one is serving") || contains(t, n, "not found") ||
             contains(t, n, "missing link definition") || contains(t, n, "not running"))
        rc = http_error_buf(out, 503, "service unavailable", &d);
    else
        rc = http_error_buf(out, 500, "internal error", &d);
    waft_buf_free(&d);
    return rc;
}

static void cache_drop(view model);

/* An MlError from mlinference (Predict or GetMetadata). */
static int ml_error(waft_buf *out, view model, const status *st) {
    waft_buf d = WAFT_BUF_INIT;
    view v = st->variant;
    int unknown = view_ieq(v, "contextNotFoundError") ||
                  (view_ieq(v, "invalidModel") && contains(st->message.ptr, st->message.len, "unknown model"));
    if (unknown) {
        /* Not served by the link: usually a zoo model whose file was never added (issue 6). Say how. */
        waft_buf_append_str(&d, "model ");
        waft_buf_append(&d, model.ptr, model.len);
        waft_buf_append_str(&d, " is not installed: add it with `waft models add ");
        waft_buf_append(&d, model.ptr, model.len);
        waft_buf_append_str(&d, " FILE` (or `waft models fetch ");
        waft_buf_append(&d, model.ptr, model.len);
        waft_buf_append_str(&d, "`), then redeploy (");
    }
    waft_buf_append(&d, st->variant.ptr, st->variant.len);
    waft_buf_append_str(&d, ": ");
    waft_buf_append(&d, st->message.ptr, st->message.len);
    if (unknown) waft_buf_append_str(&d, ")");
    uint16_t code;
    const char *error;
    if (unknown) { code = 404; error = "unknown model"; }
    else if (view_ieq(v, "corruptInputTensor")) { code = 400; error = "bad tensor"; }
    else if (view_ieq(v, "invalidEncoding")) { code = 400; error = "bad input"; }
    else if (view_ieq(v, "modelLoading")) { code = 503; error = "model loading"; }
    else if (view_ieq(v, "overloaded")) { code = 429; error = "overloaded"; }
    else if (view_ieq(v, "invalidModel")) { code = 500; error = "model failed to load"; }
    else { code = 500; error = "inference failed"; }
    if (unknown || view_ieq(v, "invalidModel")) cache_drop(model); /* re-learn it next time */
    int rc = http_error_buf(out, code, error, &d);
    waft_buf_free(&d);
    return rc;
}

/* ---- metadata cache --------------------------------------------------------------------------- */

typedef struct {
    char *model;
    size_t model_len;
    uint8_t *meta; /* the GetMetadata answer, msgpack */
    size_t meta_len;
    uint64_t stamp;
    uint32_t uses;
} cache_slot;

static cache_slot cache[CACHE_SLOTS];
static uint64_t cache_clock;

static cache_slot *cache_find(view model) {
    for (int i = 0; i < CACHE_SLOTS; i++)
        if (cache[i].model && cache[i].model_len == model.len && memcmp(cache[i].model, model.ptr, model.len) == 0)
            return &cache[i];
    return NULL;
}

static void slot_clear(cache_slot *s) {
    free(s->model);
    free(s->meta);
    memset(s, 0, sizeof *s);
}

static void cache_drop(view model) {
    cache_slot *s = cache_find(model);
    if (s) slot_clear(s);
}

/* Store a copy (replacing the model's slot, else a free one, else the least recently used). */
static cache_slot *cache_put(view model, const uint8_t *meta, size_t len) {
    cache_slot *s = cache_find(model);
    if (!s) {
        s = &cache[0];
        for (int i = 0; i < CACHE_SLOTS; i++) {
            if (!cache[i].model) {
                s = &cache[i];
                break;
            }
            if (cache[i].stamp < s->stamp) s = &cache[i];
        }
    }
    slot_clear(s);
    s->model = malloc(model.len ? model.len : 1);
    s->meta = malloc(len ? len : 1);
    if (!s->model || !s->meta) {
        slot_clear(s); /* no room to cache: the caller still has its own copy */
        return NULL;
    }
    memcpy(s->model, model.ptr, model.len);
    memcpy(s->meta, meta, len);
    s->model_len = model.len;
    s->meta_len = len;
    s->stamp = ++cache_clock;
    return s;
}

typedef struct {
    const uint8_t *p; /* the metadata map: in the cache, or in `fresh` when it was not cached */
    size_t n;
    waft_buf fresh;
} metadata;

/* The model's metadata (cached). 1 on success; 0 after writing the HTTP error into `out`. */
static int get_metadata(view model, metadata *md, waft_buf *out) {
    waft_buf_init(&md->fresh);
    cache_slot *s = cache_find(model);
    if (s && s->uses < CACHE_REFRESH_USES) {
        s->uses++;
        s->stamp = ++cache_clock;
        md->p = s->meta;
        md->n = s->meta_len;
        return 1;
    }
    waft_buf req = WAFT_BUF_INIT;
    waft_mp_write_map(&req, 1);
    waft_mp_write_cstr(&req, "model");
    waft_mp_write_str(&req, model.ptr, model.len);
    int ok = !req.failed && waft_host_call(ML_LINK, ML_CONTRACT, "MlInference.GetMetadata", req.data, req.len,
                                           &md->fresh) == WAFT_OK;
    waft_buf_free(&req);
    if (!ok) {
        host_error(out, "MlInference.GetMetadata", &md->fresh);
        waft_buf_free(&md->fresh);
        return 0;
    }
    size_t es, ee;
    waft_mp_reader r;
    uint32_t count;
    waft_mp_reader_init(&r, md->fresh.data, md->fresh.len);
    if (!waft_mp_read_map(&r, &count)) {
        waft_buf_free(&md->fresh);
        http_error(out, 500, "internal error", "MlInference.GetMetadata answered something that is not a map");
        return 0;
    }
    if (mp_field(md->fresh.data, md->fresh.len, "error", &es, &ee)) {
        status st;
        if (!read_status(md->fresh.data, md->fresh.len, &st) || !st.is_error) {
            waft_buf_free(&md->fresh);
            http_error(out, 500, "internal error", "MlInference.GetMetadata answered an unreadable error");
            return 0;
        }
        ml_error(out, model, &st);
        waft_buf_free(&md->fresh);
        return 0;
    }
    if (md->fresh.len <= CACHE_MAX_ENTRY && (s = cache_put(model, md->fresh.data, md->fresh.len)) != NULL) {
        waft_buf_free(&md->fresh);
        md->p = s->meta;
        md->n = s->meta_len;
        return 1;
    }
    md->p = md->fresh.data;
    md->n = md->fresh.len;
    return 1;
}

static void metadata_free(metadata *md) { waft_buf_free(&md->fresh); }

/* A string field of the metadata (NULL view when absent or not a string). */
static view meta_str(const metadata *md, const char *key) {
    waft_mp_reader r;
    const char *s;
    uint32_t l;
    if (mp_at(md->p, md->n, key, &r) && waft_mp_peek(&r) == WAFT_MP_STR && waft_mp_read_str(&r, &s, &l))
        return (view){s, l};
    return (view){NULL, 0};
}

/* ---- JSON writers ----------------------------------------------------------------------------- */

/* Any msgpack value as JSON (for ListModels): bin as base64, non-string keys as text, depth bounded. */
static int mp_to_json(waft_mp_reader *r, waft_json *j, int depth) {
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
static int respond_inference_output(waft_buf *out, const tview *t) {
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
        const vtype *vt = vtype_by_name(t->types[i]);
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

/* ---- calls to the other parts ----------------------------------------------------------------- */

typedef struct {
    waft_buf answer;       /* the raw answer; spans below point into it */
    size_t tensor_s, tensor_e;
    size_t norm_s, norm_e; /* the pre-processor's deferred normalisation (norm_e == 0: none) */
    tview tensor;
} call_result;

/* Read {result, tensor} (ConversionOutput or InferenceOutput). Writes the HTTP error and returns 0 on
 * failure; `what` names the part for messages. */
static int read_output(call_result *c, waft_buf *out, view model, const char *what, int preprocessor) {
    size_t rs, re;
    status st = {0};
    const uint8_t *p = c->answer.data;
    size_t n = c->answer.len;
    int have_result = mp_field(p, n, "result", &rs, &re);
    if ((have_result && !read_status(p + rs, re - rs, &st))) {
        waft_buf d = WAFT_BUF_INIT;
        waft_buf_append_str(&d, what);
        waft_buf_append_str(&d, " answered an unreadable result status");
        int rc = http_error_buf(out, 500, "internal error", &d);
        waft_buf_free(&d);
        return FAIL(rc);
    }
    if (st.is_error) {
        if (!preprocessor) return FAIL(ml_error(out, model, &st));
        /* The pre-processor's errors are about the image (400, including a header declaring more pixels
           than allowed: a decompression bomb is bad input, not a big body), its bytes (413), or the spec. */
        waft_buf d = WAFT_BUF_INIT;
        waft_buf_append(&d, st.variant.ptr, st.variant.len);
        waft_buf_append_str(&d, ": ");
        waft_buf_append(&d, st.message.ptr, st.message.len);
        view m = st.message;
        int rc;
        if (!view_ieq(st.variant, "invalidEncoding"))
            rc = http_error_buf(out, 500, "pre-processing failed", &d);
        else if (contains(m.ptr, m.len, "pixels exceeds"))
            rc = http_error_buf(out, 400, "image too large", &d);
        else if (contains(m.ptr, m.len, "too large") || contains(m.ptr, m.len, "out of memory"))
            rc = http_error_buf(out, 413, "image too large", &d);
        else if (contains(m.ptr, m.len, "bad input spec"))
            rc = http_error_buf(out, 500, "bad model input spec", &d);
        else
            rc = http_error_buf(out, 400, "undecodable image", &d);
        waft_buf_free(&d);
        return FAIL(rc);
    }
    c->norm_s = c->norm_e = 0;
    if (preprocessor && !mp_field(p, n, "normalize", &c->norm_s, &c->norm_e)) c->norm_s = c->norm_e = 0;
    if (!mp_field(p, n, "tensor", &c->tensor_s, &c->tensor_e) ||
        !read_tensor(p + c->tensor_s, c->tensor_e - c->tensor_s, &c->tensor)) {
        waft_buf d = WAFT_BUF_INIT;
        waft_buf_append_str(&d, what);
        waft_buf_append_str(&d, " answered without a readable tensor");
        http_error_buf(out, 500, "internal error", &d);
        waft_buf_free(&d);
        return 0;
    }
    return 1;
}

/* MlInference.Predict with `tensor_mp` (an encoded Tensor map) spliced in as is, and the pre-processor's
 * `normalize` map when `pre` deferred it. */
static int predict(view model, const uint8_t *tensor_mp, size_t tensor_len, const call_result *pre,
                   call_result *c, waft_buf *out) {
    waft_buf req = WAFT_BUF_INIT;
    waft_buf_init(&c->answer);
    int norm = pre && pre->norm_e > pre->norm_s;
    waft_mp_write_map(&req, norm ? 4 : 3);
    if (norm) {
        waft_mp_write_cstr(&req, "normalize");
        waft_buf_append(&req, pre->answer.data + pre->norm_s, pre->norm_e - pre->norm_s);
    }
    waft_mp_write_cstr(&req, "model");
    waft_mp_write_str(&req, model.ptr, model.len);
    waft_mp_write_cstr(&req, "tensor");
    waft_buf_append(&req, tensor_mp, tensor_len);
    waft_mp_write_cstr(&req, "index");
    waft_mp_write_u64(&req, 0);
    if (req.failed) {
        waft_buf_free(&req);
        return FAIL(http_error(out, 413, "request too large", "out of memory encoding the inference request"));
    }
    int ok = waft_host_call(ML_LINK, ML_CONTRACT, "MlInference.Predict", req.data, req.len, &c->answer) == WAFT_OK;
    waft_buf_free(&req);
    if (!ok) return FAIL(host_error(out, "MlInference.Predict", &c->answer));
    return read_output(c, out, model, "MlInference.Predict", 0);
}

/* Image bytes -> the model's input tensor, through the pre-processor with the model's input spec. Our
 * own provider normalises for us, so the pre-processor hands back u8 pixels and what to apply. */
static int preprocess(const metadata *md, const uint8_t *image, size_t len, view model, call_result *c,
                      waft_buf *out) {
    waft_buf_init(&c->answer);
    if (len == 0) return FAIL(http_error(out, 400, "undecodable image", "the request body is empty: send an image"));
    size_t ss = 0, se = 0;
    waft_mp_reader r;
    int spec = mp_field(md->p, md->n, "input_spec", &ss, &se);
    if (spec) {
        waft_mp_reader_init(&r, md->p + ss, se - ss);
        spec = waft_mp_peek(&r) == WAFT_MP_MAP; /* null: the pre-processor's default */
    }
    waft_buf req = WAFT_BUF_INIT;
    waft_mp_write_map(&req, spec ? 3 : 2);
    waft_mp_write_cstr(&req, "defer_normalize");
    waft_mp_write_bool(&req, 1);
    waft_mp_write_cstr(&req, "data");
    waft_mp_write_bin(&req, image, len);
    if (spec) {
        waft_mp_write_cstr(&req, "spec");
        waft_buf_append(&req, md->p + ss, se - ss);
    }
    if (req.failed) {
        waft_buf_free(&req);
        return FAIL(http_error(out, 413, "image too large", "out of memory passing the image on"));
    }
    int ok = waft_host_call("", PREPROCESSOR, "MlPreprocessing.Convert", req.data, req.len, &c->answer) == WAFT_OK;
    waft_buf_free(&req);
    if (!ok) return FAIL(host_error(out, "the pre-processor (" PREPROCESSOR ")", &c->answer));
    return read_output(c, out, model, "the pre-processor", 1);
}

/* ---- routes: the original's three ------------------------------------------------------------- */

/* Parse the original's JSON Tensor into an encoded msgpack Tensor. 1, or 0 with `why` set. */
static int tensor_from_json(const uint8_t *body, size_t len, waft_buf *tensor_mp, waft_buf *why) {
    jr j;
    waft_buf key = WAFT_BUF_INIT, data = WAFT_BUF_INIT, name = WAFT_BUF_INIT;
    uint32_t dims[MAX_DIMS], n_dims = 0, n_types = 0;
    const vtype *vt = NULL;
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
        view k = {(const char *)key.data, key.len};
        if (view_eq(k, "dimensions")) {
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
        } else if (view_eq(k, "valueTypes")) {
            int f = 1, single = jr_peek(&j) == '"';
            if (!single && !jr_array_begin(&j)) { problem = "valueTypes must be an array of names like \"ValueF32\""; goto done; }
            while (single || jr_array_next(&j, &f)) {
                waft_buf_reset(&name);
                if (!jr_string(&j, &name)) { problem = "valueTypes must be an array of names like \"ValueF32\""; goto done; }
                const vtype *t = vtype_by_name((view){(const char *)name.data, name.len});
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
        } else if (view_eq(k, "flags")) {
            if (!jr_int64(&j, &flags) || flags < 0 || flags > 255) {
                problem = "flags must be an integer 0-255 (1 column-major, 2 big-endian)";
                goto done;
            }
        } else if (view_eq(k, "data")) {
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
    if (!vt) vt = vtype_by_name((view){"ValueF32", 8}); /* the original's Tensor::default() */
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
    waft_mp_write_map(tensor_mp, 4);
    waft_mp_write_cstr(tensor_mp, "dimensions");
    waft_mp_write_array(tensor_mp, n_dims);
    for (uint32_t i = 0; i < n_dims; i++) waft_mp_write_u64(tensor_mp, dims[i]);
    waft_mp_write_cstr(tensor_mp, "valueTypes");
    waft_mp_write_array(tensor_mp, 1);
    waft_mp_write_cstr(tensor_mp, vt->wire);
    waft_mp_write_cstr(tensor_mp, "flags");
    waft_mp_write_u64(tensor_mp, (uint64_t)flags);
    waft_mp_write_cstr(tensor_mp, "data");
    waft_mp_write_bin(tensor_mp, data.data, data.len);
    ok = !tensor_mp->failed;
    if (!ok) problem = "out of memory";
done:
    if (!ok && !why->len) {
        if (problem) {
            waft_buf_append_str(why, problem);
        } else if (j.err) {
            waft_buf_append_str(why, "invalid JSON: ");
            waft_buf_append_str(why, j.err);
            waft_buf_append_str(why, " at byte ");
            waft_buf_append_u64(why, j.err_pos);
        }
    }
    waft_buf_free(&key);
    waft_buf_free(&data);
    waft_buf_free(&name);
    return ok;
}

static int route_tensor(view model, const waft_http_request *req, waft_buf *out) {
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

static int route_preprocess(view model, const waft_http_request *req, waft_buf *out) {
    metadata md;
    if (!get_metadata(model, &md, out)) return WAFT_OK;
    call_result pre, inf;
    waft_buf_init(&inf.answer);
    if (preprocess(&md, req->body, req->body_len, model, &pre, out) &&
        predict(model, pre.answer.data + pre.tensor_s, pre.tensor_e - pre.tensor_s, &pre, &inf, out))
        respond_inference_output(out, &inf.tensor);
    waft_buf_free(&pre.answer);
    waft_buf_free(&inf.answer);
    metadata_free(&md);
    return WAFT_OK;
}

/* `k` from the query string: 1..2^32-1 (the post-processor clamps it to the class count). 1 when
 * absent or valid; 0 with the reason in `why`. */
static int parse_k(view query, uint32_t *k, const char **why) {
    *k = DEFAULT_TOP_K;
    size_t i = 0;
    while (i < query.len) {
        size_t end = i;
        while (end < query.len && query.ptr[end] != '&') end++;
        view pair = {query.ptr + i, end - i};
        if (pair.len >= 2 && pair.ptr[0] == 'k' && pair.ptr[1] == '=') {
            view v = {pair.ptr + 2, pair.len - 2};
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

static int route_matches(view model, const waft_http_request *req, waft_buf *out) {
    uint32_t k;
    const char *why = NULL;
    if (!parse_k((view){req->query_string.ptr, req->query_string.len}, &k, &why))
        return http_error(out, 400, "bad query", why);
    metadata md;
    if (!get_metadata(model, &md, out)) return WAFT_OK;
    call_result pre, inf;
    waft_buf post = WAFT_BUF_INIT, answer = WAFT_BUF_INIT, body = WAFT_BUF_INIT;
    waft_buf_init(&inf.answer);
    if (!preprocess(&md, req->body, req->body_len, model, &pre, out) ||
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

/* ---- routes: Waft's additions ----------------------------------------------------------------- */

static int route_healthz(waft_buf *out) {
    static const char body[] = "{\"status\":\"ok\"}";
    return respond(out, 200, "application/json", body, sizeof body - 1, NULL, NULL);
}

/* ListModels answer, or 0 after writing the HTTP error. */
static int list_models(waft_buf *answer, waft_buf *out) {
    static const uint8_t empty_map = 0x80;
    if (waft_host_call(ML_LINK, ML_CONTRACT, "MlInference.ListModels", &empty_map, 1, answer) != WAFT_OK)
        return FAIL(host_error(out, "MlInference.ListModels", answer));
    return 1;
}

static int route_models(waft_buf *out) {
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

/* ---- KServe v2 / Open Inference Protocol ------------------------------------------------------ */

static int v2_server_metadata(waft_buf *out) {
    static const char body[] = "{\"name\":\"waft\",\"version\":\"0.1.0\",\"extensions\":[]}";
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
        if (!view_eq((view){s, l}, "ready")) {
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

static const char *kserve_of_tensor_type(view t) {
    const vtype *vt = vtype_by_name(t);
    return vt ? vt->kserve : "FP32";
}

static const char *platform_of(view encoding) {
    if (view_ieq(encoding, "onnx")) return "onnx_onnxv1";
    if (view_ieq(encoding, "tensorflow")) return "tensorflow_graphdef";
    if (view_ieq(encoding, "tf_lite")) return "tensorflow_lite";
    if (view_ieq(encoding, "open_vino")) return "openvino";
    return "unknown";
}

static void write_meta_tensor(waft_json *j, const metadata *md, const char *name_key, const char *fallback,
                              const char *dims_key, const char *datatype) {
    waft_mp_reader r;
    view name = meta_str(md, name_key);
    waft_json_object_begin(j);
    waft_json_key_c(j, "name");
    if (name.ptr) waft_json_string(j, name.ptr, name.len);
    else waft_json_string_c(j, fallback);
    waft_json_key_c(j, "datatype");
    waft_json_string_c(j, datatype);
    waft_json_key_c(j, "shape");
    waft_json_array_begin(j);
    uint32_t n;
    if (mp_at(md->p, md->n, dims_key, &r) && waft_mp_peek(&r) == WAFT_MP_ARRAY && waft_mp_read_array(&r, &n)) {
        for (uint32_t i = 0; i < n && !r.err; i++) {
            int64_t d = -1;
            if (waft_mp_peek(&r) == WAFT_MP_NIL) waft_mp_read_nil(&r); /* unknown size: -1 in KServe */
            else if (!waft_mp_read_i64(&r, &d)) break;
            waft_json_i64(j, d);
        }
    } else {
        waft_json_i64(j, -1);
    }
    waft_json_array_end(j);
    waft_json_object_end(j);
}

static int v2_model_metadata(view model, waft_buf *out) {
    metadata md;
    if (!get_metadata(model, &md, out)) return WAFT_OK;
    waft_buf body = WAFT_BUF_INIT;
    waft_json j;
    const char *dt_in = kserve_of_tensor_type(meta_str(&md, "tensor_type"));
    view out_type = meta_str(&md, "tensor_type_out");
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
    view enc = meta_str(&md, "graph_encoding");
    waft_json_string_c(&j, platform_of(enc.ptr ? enc : (view){"onnx", 4}));
    waft_json_key_c(&j, "inputs");
    waft_json_array_begin(&j);
    write_meta_tensor(&j, &md, "input_name", "input0", "tensor_dimensions_in", dt_in);
    waft_json_array_end(&j);
    waft_json_key_c(&j, "outputs");
    waft_json_array_begin(&j);
    write_meta_tensor(&j, &md, "output_name", "output0", "tensor_dimensions_out", dt_out);
    waft_json_array_end(&j);
    waft_json_object_end(&j);
    respond_json(out, 200, &body);
    waft_buf_free(&body);
    metadata_free(&md);
    return WAFT_OK;
}

static int v2_model_ready(view model, waft_buf *out) {
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
static int put_scalar(jr *j, const vtype *vt, waft_buf *data) {
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
static int read_kserve_data(jr *j, const vtype *vt, waft_buf *data, uint64_t *count) {
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
    const vtype *vt = NULL;
    jr_init(&j, json, json_len);
    if (json_len == 0) {
        problem = "the body is empty: send {\"inputs\": [{\"name\", \"shape\", \"datatype\", \"data\"}]}";
        goto done;
    }
    if (!jr_object_begin(&j)) { problem = "the body must be a JSON object with \"inputs\""; goto done; }
    while (jr_object_next(&j, &first, &key)) {
        view k = {(const char *)key.data, key.len};
        if (view_eq(k, "id")) {
            if (!jr_string(&j, &q->id)) { problem = "id must be a string"; goto done; }
            q->have_id = 1;
        } else if (view_eq(k, "inputs")) {
            int fa = 1;
            if (!jr_array_begin(&j)) { problem = "inputs must be an array"; goto done; }
            while (jr_array_next(&j, &fa)) {
                int fo = 1;
                if (++n_inputs > 1) { problem = "only models with one input are served: send one input"; goto done; }
                if (!jr_object_begin(&j)) { problem = "each input must be an object"; goto done; }
                while (jr_object_next(&j, &fo, &key)) {
                    view ik = {(const char *)key.data, key.len};
                    if (view_eq(ik, "shape")) {
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
                    } else if (view_eq(ik, "datatype")) {
                        waft_buf_reset(&text);
                        if (!jr_string(&j, &text)) { problem = "datatype must be a string"; goto done; }
                        vt = vtype_by_kserve((view){(const char *)text.data, text.len});
                        if (!vt) {
                            waft_buf_append_str(why, "unsupported datatype \"");
                            waft_buf_append(why, text.data, text.len);
                            waft_buf_append_str(why, "\"; supported: BOOL UINT8 UINT16 UINT32 UINT64 INT8 INT16 "
                                                     "INT32 INT64 FP16 (binary only) FP32 FP64");
                            goto done;
                        }
                    } else if (view_eq(ik, "data")) {
                        data_pos = j.pos; /* read once the datatype is known */
                        have_data = 1;
                        if (!jr_skip(&j)) goto done;
                    } else if (view_eq(ik, "parameters")) {
                        int fp = 1;
                        if (!jr_object_begin(&j)) { problem = "parameters must be an object"; goto done; }
                        while (jr_object_next(&j, &fp, &key)) {
                            if (view_eq((view){(const char *)key.data, key.len}, "binary_data_size")) {
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
    waft_mp_write_map(&q->tensor, 4);
    waft_mp_write_cstr(&q->tensor, "dimensions");
    waft_mp_write_array(&q->tensor, n_shape);
    for (uint32_t i = 0; i < n_shape; i++) waft_mp_write_u64(&q->tensor, shape[i]);
    waft_mp_write_cstr(&q->tensor, "valueTypes");
    waft_mp_write_array(&q->tensor, 1);
    waft_mp_write_cstr(&q->tensor, vt->wire);
    waft_mp_write_cstr(&q->tensor, "flags");
    waft_mp_write_u64(&q->tensor, 0);
    waft_mp_write_cstr(&q->tensor, "data");
    waft_mp_write_bin(&q->tensor, data.data, data.len);
    ok = !q->tensor.failed;
    if (!ok) problem = "out of memory";
done:
    if (!ok && !why->len) {
        if (problem) {
            waft_buf_append_str(why, problem);
        } else if (j.err) {
            waft_buf_append_str(why, "invalid inference request: ");
            waft_buf_append_str(why, j.err);
            waft_buf_append_str(why, " at byte ");
            waft_buf_append_u64(why, j.err_pos);
        }
    }
    waft_buf_free(&key);
    waft_buf_free(&text);
    waft_buf_free(&data);
    return ok;
bad_header:
    waft_buf_append_str(why, "Inference-Header-Content-Length must be a byte count within the body");
    return 0;
}

/* One output element as a JSON number (or bool). */
static void write_element(waft_json *j, const vtype *vt, const uint8_t *p, int big_endian) {
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
        waft_json_f32(j, half_to_float((uint16_t)bits));
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

static int v2_infer(view model, const waft_http_request *req, waft_buf *out) {
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
    const tview *t = &c.tensor;
    const vtype *vt = t->n_types ? vtype_by_name(t->types[0]) : vtype_by_name((view){"ValueF32", 8});
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
    view name = meta_str(&md, "output_name");
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

/* ---- routing ---------------------------------------------------------------------------------- */

static int is_method(view m, const char *name) { return view_ieq(m, name); }

static int not_allowed(waft_buf *out, view method, const char *allow) {
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

static int not_found(waft_buf *out, view path) {
    waft_buf d = WAFT_BUF_INIT;
    waft_buf_append_str(&d, "no route for ");
    waft_buf_append(&d, path.ptr, path.len);
    waft_buf_append_str(&d, "; routes: PUT|POST /{model}, /{model}/preprocess, /{model}/matches?k=N; "
                            "GET /models, /healthz; KServe v2 under /v2");
    int rc = http_error_buf(out, 404, "not found", &d);
    waft_buf_free(&d);
    return rc;
}

#define GET_ONLY(call) (is_method(method, "GET") ? (call) : not_allowed(out, method, "GET"))
#define INFER_ONLY(call) \
    (is_method(method, "PUT") || is_method(method, "POST") ? (call) : not_allowed(out, method, "PUT, POST"))

static int route_v2(view *seg, int n, view method, const waft_http_request *req, view path, waft_buf *out) {
    /* seg[0] is "v2" */
    if (n == 1) return GET_ONLY(v2_server_metadata(out));
    if (n == 3 && view_eq(seg[1], "health") && view_eq(seg[2], "live")) return GET_ONLY(v2_live(out));
    if (n == 3 && view_eq(seg[1], "health") && view_eq(seg[2], "ready")) return GET_ONLY(v2_ready(out));
    if (n >= 3 && view_eq(seg[1], "models")) {
        view model = seg[2];
        int rest = 3;
        if (n >= 5 && view_eq(seg[3], "versions")) rest = 5; /* one version per model: accept any */
        if (n == rest) return GET_ONLY(v2_model_metadata(model, out));
        if (n == rest + 1 && view_eq(seg[rest], "ready")) return GET_ONLY(v2_model_ready(model, out));
        if (n == rest + 1 && view_eq(seg[rest], "infer"))
            return is_method(method, "POST") ? v2_infer(model, req, out) : not_allowed(out, method, "POST");
    }
    return not_found(out, path);
}

static int handle_request(const uint8_t *payload, size_t len, waft_buf *out) {
    waft_http_request req;
    if (waft_http_request_decode(payload, len, &req, out) != WAFT_OK) return WAFT_ERR;
    view method = {req.method.ptr, req.method.len};
    view path = {req.path.ptr, req.path.len};
    /* Some hosts leave the query on the path: the query string has its own field. */
    for (size_t i = 0; i < path.len; i++)
        if (path.ptr[i] == '?') path.len = i;
    /* The original's parsing: drop the leading '/', trim trailing '/', split on '/'. */
    view seg[MAX_SEGMENTS];
    int n = 0, too_many = 0, empty = 0;
    size_t i = 0;
    while (i < path.len && path.ptr[i] == '/') i++;
    size_t end = path.len;
    while (end > i && path.ptr[end - 1] == '/') end--;
    while (i < end) {
        size_t s = i;
        while (i < end && path.ptr[i] != '/') i++;
        if (i == s) empty = 1;
        if (n < MAX_SEGMENTS) seg[n++] = (view){path.ptr + s, i - s};
        else too_many = 1;
        if (i < end) i++; /* the '/' */
    }
    int rc;
    if (too_many || empty || n == 0) rc = not_found(out, path);
    else if (view_eq(seg[0], "v2")) rc = route_v2(seg, n, method, &req, path, out);
    else if (n == 1 && view_eq(seg[0], "healthz")) rc = GET_ONLY(route_healthz(out));
    else if (n == 1 && view_eq(seg[0], "models")) rc = GET_ONLY(route_models(out));
    else if (n == 1) rc = INFER_ONLY(route_tensor(seg[0], &req, out));
    else if (n == 2 && view_eq(seg[1], "preprocess")) rc = INFER_ONLY(route_preprocess(seg[0], &req, out));
    else if (n == 2 && view_eq(seg[1], "matches")) rc = INFER_ONLY(route_matches(seg[0], &req, out));
    else rc = not_found(out, path);
    waft_http_request_free(&req);
    return rc;
}

static int handle_health(const uint8_t *payload, size_t len, waft_buf *out) {
    (void)payload;
    (void)len;
    waft_mp_write_map(out, 2);
    waft_mp_write_cstr(out, "healthy");
    waft_mp_write_bool(out, 1);
    waft_mp_write_cstr(out, "message");
    waft_mp_write_cstr(out, "ok");
    return WAFT_OK;
}

void waft_actor_init(void) {
    waft_register(WAFT_HTTP_OPERATION, handle_request);
    waft_register("Actor.HealthRequest", handle_health);
}
