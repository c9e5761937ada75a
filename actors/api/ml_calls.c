/* The API actor's calls to the other parts of the pipeline, and how their failures become HTTP.
 *
 *   get_metadata  MlInference.GetMetadata, cached per model
 *   list_models   MlInference.ListModels
 *   preprocess    image -> the pre-processor (MlPreprocessing.Convert) with the model's input spec
 *   predict       MlInference.Predict with an encoded Tensor spliced in as is
 *
 * Models' input specs and labels come from MlInference.GetMetadata and are cached per model in the
 * instance (instances persist between calls): at most CACHE_SLOTS models (least recently used goes),
 * entries up to CACHE_MAX_ENTRY bytes, re-fetched every CACHE_REFRESH_USES uses and dropped when the
 * provider says the model is unknown or failed, so a re-linked model is picked up. The routes that report a
 * model's state (/v2/models/{m}, /ready, /config, /stats) fetch afresh (get_metadata_fresh): another instance
 * may have unloaded or loaded the model since this one cached it.
 */
#include <stdlib.h>
#include <string.h>

#include "api.h"

#define CACHE_SLOTS 16
#define CACHE_MAX_ENTRY (4u << 20)
#define CACHE_REFRESH_USES 256u

/* Span [start, end) of the value under `key` in the top-level map `m`; 0 when absent or not a map. */
int mp_field(const uint8_t *m, size_t n, const char *key, size_t *start, size_t *end) {
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
int mp_at(const uint8_t *m, size_t n, const char *key, waft_mp_reader *r) {
    size_t s, e;
    if (!mp_field(m, n, key, &s, &e)) return 0;
    waft_mp_reader_init(r, m + s, e - s);
    return 1;
}

/* A Status at p[0, n); 0 when unreadable. */
static int status_at(const uint8_t *p, size_t n, waft_ml_status *st) {
    waft_mp_reader r;
    waft_mp_reader_init(&r, p, n);
    return waft_ml_read_status(&r, st);
}

/* A Tensor at p[0, n), as views into it; 0 when unreadable or with more than MAX_DIMS dimensions or types. */
static int tensor_at(const uint8_t *p, size_t n, waft_ml_tensor *t) {
    waft_mp_reader r;
    waft_mp_reader_init(&r, p, n);
    return waft_ml_read_tensor(&r, t) && t->dims_declared <= MAX_DIMS && t->types_declared <= MAX_DIMS;
}

/* A failed waft_host_call, by the kind of failure the host names (the detail is its message): 504 timeout,
 * 503 nothing running or linked, 403 a missing claim, 413 a payload too large to carry, 500 anything else. */
int host_error(waft_buf *out, const char *what, const waft_buf *err) {
    waft_str message;
    waft_host_error_kind kind = waft_host_error_parse(err, &message);
    waft_buf d = WAFT_BUF_INIT;
    waft_buf_append_str(&d, what);
    waft_buf_append_str(&d, " failed: ");
    if (message.ptr) waft_buf_append(&d, message.ptr, message.len);
    else waft_buf_append_str(&d, "its answer did not fit in memory");
    int rc;
    switch (kind) {
    case WAFT_HOST_TIMEOUT: rc = http_error_buf(out, 504, "timeout", &d); break;
    case WAFT_HOST_NOT_RUNNING:
    case WAFT_HOST_NOT_LINKED: rc = http_error_buf(out, 503, "service unavailable", &d); break;
    case WAFT_HOST_DENIED: rc = http_error_buf(out, 403, "forbidden", &d); break;
    case WAFT_HOST_TOO_LARGE: rc = http_error_buf(out, 413, "request too large", &d); break;
    default: rc = http_error_buf(out, 500, "internal error", &d); break;
    }
    waft_buf_free(&d);
    return rc;
}

static void cache_drop(waft_str model);

/* An MlError from mlinference (Predict or GetMetadata). */
static int ml_error(waft_buf *out, waft_str model, const waft_ml_status *st) {
    waft_buf d = WAFT_BUF_INIT;
    waft_str v = st->variant;
    int unknown = waft_str_ieq(v, "contextNotFoundError") ||
                  (waft_str_ieq(v, "invalidModel") && waft_str_contains(st->message, "unknown model"));
    /* unloaded through the repository extension: installed, and the provider's message says how to load it */
    int unloaded = unknown && waft_str_contains(st->message, "was unloaded");
    if (unknown && !unloaded) {
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
    if (unknown && !unloaded) waft_buf_append_str(&d, ")");
    uint16_t code;
    const char *error;
    if (unloaded) { code = 404; error = "model unloaded"; }
    else if (unknown) { code = 404; error = "unknown model"; }
    else if (waft_str_ieq(v, "corruptInputTensor")) { code = 400; error = "bad tensor"; }
    else if (waft_str_ieq(v, "invalidEncoding")) { code = 400; error = "bad input"; }
    else if (waft_str_ieq(v, "modelLoading")) { code = 503; error = "model loading"; }
    else if (waft_str_ieq(v, "overloaded")) { code = 429; error = "overloaded"; }
    else if (waft_str_ieq(v, "invalidModel")) { code = 500; error = "model failed to load"; }
    else { code = 500; error = "inference failed"; }
    if (unknown || waft_str_ieq(v, "invalidModel")) cache_drop(model); /* re-learn it next time */
    int rc = http_error_buf(out, code, error, &d);
    waft_buf_free(&d);
    return rc;
}

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

static cache_slot *cache_find(waft_str model) {
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

static void cache_drop(waft_str model) {
    cache_slot *s = cache_find(model);
    if (s) slot_clear(s);
}

void metadata_forget(waft_str model) { cache_drop(model); }

int get_metadata_fresh(waft_str model, metadata *md, waft_buf *out) {
    cache_drop(model);
    return get_metadata(model, md, out);
}

/* Store a copy (replacing the model's slot, else a free one, else the least recently used). */
static cache_slot *cache_put(waft_str model, const uint8_t *meta, size_t len) {
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

/* The model's metadata (cached). 1 on success; 0 after writing the HTTP error into `out`. */
int get_metadata(waft_str model, metadata *md, waft_buf *out) {
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
        waft_ml_status st;
        if (!status_at(md->fresh.data, md->fresh.len, &st) || !st.is_error) {
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

void metadata_free(metadata *md) { waft_buf_free(&md->fresh); }

/* A string field of the metadata (NULL waft_str when absent or not a string). */
waft_str meta_str(const metadata *md, const char *key) {
    waft_mp_reader r;
    const char *s;
    uint32_t l;
    if (mp_at(md->p, md->n, key, &r) && waft_mp_peek(&r) == WAFT_MP_STR && waft_mp_read_str(&r, &s, &l))
        return (waft_str){s, l};
    return (waft_str){NULL, 0};
}

/* ListModels answer, or 0 after writing the HTTP error. */
int list_models(waft_buf *answer, waft_buf *out) {
    static const uint8_t empty_map = 0x80;
    if (waft_host_call(ML_LINK, ML_CONTRACT, "MlInference.ListModels", &empty_map, 1, answer) != WAFT_OK)
        return FAIL(host_error(out, "MlInference.ListModels", answer));
    return 1;
}

/* Read {result, tensor} (ConversionOutput or InferenceOutput). Writes the HTTP error and returns 0 on
 * failure; `what` names the part for messages. */
static int read_output(call_result *c, waft_buf *out, waft_str model, const char *what, int preprocessor) {
    size_t rs, re;
    waft_ml_status st = {0};
    const uint8_t *p = c->answer.data;
    size_t n = c->answer.len;
    int have_result = mp_field(p, n, "result", &rs, &re);
    if ((have_result && !status_at(p + rs, re - rs, &st))) {
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
        waft_str m = st.message;
        int rc;
        if (!waft_str_ieq(st.variant, "invalidEncoding"))
            rc = http_error_buf(out, 500, "pre-processing failed", &d);
        else if (waft_str_contains(m, "pixels exceeds"))
            rc = http_error_buf(out, 400, "image too large", &d);
        else if (waft_str_contains(m, "too large") || waft_str_contains(m, "out of memory"))
            rc = http_error_buf(out, 413, "image too large", &d);
        else if (waft_str_contains(m, "bad input spec"))
            rc = http_error_buf(out, 500, "bad model input spec", &d);
        else
            rc = http_error_buf(out, 400, "undecodable image", &d);
        waft_buf_free(&d);
        return FAIL(rc);
    }
    c->norm_s = c->norm_e = 0;
    if (preprocessor && !mp_field(p, n, "normalize", &c->norm_s, &c->norm_e)) c->norm_s = c->norm_e = 0;
    if (!mp_field(p, n, "tensor", &c->tensor_s, &c->tensor_e) ||
        !tensor_at(p + c->tensor_s, c->tensor_e - c->tensor_s, &c->tensor)) {
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
int predict_message(waft_str model, const waft_buf *req, call_result *c, waft_buf *out) {
    waft_buf_init(&c->answer);
    if (req->failed)
        return FAIL(http_error(out, 413, "request too large", "out of memory encoding the inference request"));
    if (waft_host_call(ML_LINK, ML_CONTRACT, "MlInference.Predict", req->data, req->len, &c->answer) != WAFT_OK)
        return FAIL(host_error(out, "MlInference.Predict", &c->answer));
    return read_output(c, out, model, "MlInference.Predict", 0);
}

int predict(waft_str model, const uint8_t *tensor_mp, size_t tensor_len, const call_result *pre,
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
/* The spec of a fixed pixel form: its own geometry and colour; for digits the model's layout, dtype and
 * normalisation where its spec has them (a digit model may take u8 NHWC or f32 NCHW), else u8 NHWC as the
 * original fed; RGB8 is always u8 NHWC, at the model's size when its spec gives one. */
static void write_fixed_spec(waft_buf *req, const uint8_t *spec, size_t n, pixels_kind kind) {
    static const char *const from_model[] = {"layout", "dtype", "mean", "std", "resample"};
    size_t s[5] = {0}, e[5] = {0}, size_s = 0, size_e = 0;
    int have[5] = {0}, have_size = 0;
    uint32_t count = 4; /* color, resize, crop, size */
    for (int i = 0; i < 5; i++) {
        have[i] = kind == PIXELS_MNIST && spec && mp_field(spec, n, from_model[i], &s[i], &e[i]);
        count += (uint32_t)have[i];
    }
    if (kind == PIXELS_RGB8) have_size = spec && mp_field(spec, n, "size", &size_s, &size_e);
    count += (uint32_t)(!have[0]) + (uint32_t)(!have[1]); /* layout, dtype when not the model's */
    waft_mp_write_map(req, count);
    waft_mp_write_cstr(req, "color");
    waft_mp_write_cstr(req, kind == PIXELS_MNIST ? "GRAY" : "RGB");
    waft_mp_write_cstr(req, "resize");
    waft_mp_write_cstr(req, "stretch");
    waft_mp_write_cstr(req, "crop");
    waft_mp_write_cstr(req, "none");
    waft_mp_write_cstr(req, "size");
    if (have_size) {
        waft_buf_append(req, spec + size_s, size_e - size_s);
    } else {
        uint32_t side = kind == PIXELS_MNIST ? 28 : 224;
        waft_mp_write_array(req, 2);
        waft_mp_write_u64(req, side);
        waft_mp_write_u64(req, side);
    }
    for (int i = 0; i < 5; i++) {
        if (!have[i]) continue;
        waft_mp_write_cstr(req, from_model[i]);
        waft_buf_append(req, spec + s[i], e[i] - s[i]);
    }
    if (!have[0]) {
        waft_mp_write_cstr(req, "layout");
        waft_mp_write_cstr(req, "NHWC");
    }
    if (!have[1]) {
        waft_mp_write_cstr(req, "dtype");
        waft_mp_write_cstr(req, "u8");
    }
}

int preprocess(const metadata *md, const uint8_t *image, size_t len, waft_str model, pixels_kind kind,
               call_result *c, waft_buf *out) {
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
    waft_mp_write_map(&req, spec || kind != PIXELS_MODEL ? 3 : 2);
    waft_mp_write_cstr(&req, "defer_normalize");
    waft_mp_write_bool(&req, 1);
    waft_mp_write_cstr(&req, "data");
    waft_mp_write_bin(&req, image, len);
    if (kind != PIXELS_MODEL) {
        waft_mp_write_cstr(&req, "spec");
        write_fixed_spec(&req, spec ? md->p + ss : NULL, spec ? se - ss : 0, kind);
    } else if (spec) {
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
