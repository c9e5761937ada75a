/* The post-processor actor: a classifier's output tensor -> the top-k labelled matches
 * (`Imagenet.Postprocess`, contract in docs/interfaces.md).
 *
 *   PostprocessRequest{result: Status, tensor: Tensor, topK: u32 = 5, labels: [str]?, probabilities: bool}
 *     -> Matches{matches: [{label: str, probability: f32}], error?: str}      best first
 *
 * What it fixes relative to the original (the wasmCloud example post-processor), which trapped on
 * anything but 1000 f32 logits and on NaN:
 *   - any class count: dimensions [N], [1, N] or any shape with at most one dimension above 1
 *     ([1, N, 1, 1] is the original's); a batch of several images is an error, not a guess;
 *   - f32, f64 and f16 scores, little- or big-endian (the Tensor flags' bit 1), and a quantized model's raw
 *     u8/i8 scores (the provider answers TF Lite's quantized outputs already dequantized);
 *   - TF Lite's 1001 classes (background first, already probabilities): sorted without a softmax as the
 *     original did, a 1000-line label list applied one place down and index 0 named "background";
 *   - a numerically stable softmax (the maximum is subtracted, the sums are done in double), skipped
 *     when `probabilities` says the model already outputs probabilities;
 *   - top-k for any k (clamped to the class count; 0 gives no matches) with a heap, O(N log k);
 *   - labels from the request (the API gets them from MlInference.GetMetadata); without labels, or for
 *     an index past the end of a short label list, the label is the class index in decimal;
 *   - NaN never crashes and never wins: NaN scores (or a softmax made NaN by them) rank below every
 *     number, ties rank the lower class index first, so the order is total and deterministic. A +inf
 *     logit takes all the probability (shared evenly among +inf logits: the softmax's limit); if every
 *     score is -inf the classes are equally likely. NaN probabilities are returned as msgpack NaN (the
 *     API writes them as JSON null).
 *
 * Anything wrong with the *input* (an error Status, a tensor that is not a row of float scores, a bad
 * label list) is answered in-band as `{matches: [], error: "<reason>"}`; only a payload that is not a
 * msgpack map at all is a guest error. The actor never traps on bad input.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "waft.h"

#define DEFAULT_TOP_K 5u
#define FLAG_COLUMN_MAJOR 0x01u
#define FLAG_BIG_ENDIAN 0x02u
#define MAX_DIMS WAFT_ML_MAX_DIMS /* far beyond any classifier's output rank; bounds a fixed array */

typedef enum { VT_F32, VT_F64, VT_F16, VT_U8, VT_I8 } value_type;

typedef struct {
    uint32_t dims[MAX_DIMS];
    uint32_t n_dims;
    int have_type;
    value_type type;
    uint64_t flags;
    const uint8_t *data;
    uint32_t data_len;
} tensor;

typedef struct {
    waft_ml_status result; /* views into the request when is_error */
    tensor tensor;
    uint32_t top_k;
    waft_str *labels; /* malloc'd array of views; NULL when absent */
    uint32_t n_labels;
    int probabilities;
} request;

/* ---- replies ---------------------------------------------------------------------------------- */

/* `{matches: [], error: reason}`; the reason is assembled from up to three parts (no printf here). */
static int reply_error3(waft_buf *out, const char *a, const char *b, size_t b_len, const char *c) {
    waft_buf text = WAFT_BUF_INIT;
    waft_buf_append_str(&text, a);
    if (b) waft_buf_append(&text, b, b_len);
    if (c) waft_buf_append_str(&text, c);
    waft_buf_reset(out);
    waft_mp_write_map(out, 2);
    waft_mp_write_cstr(out, "matches");
    waft_mp_write_array(out, 0);
    waft_mp_write_cstr(out, "error");
    if (text.failed) waft_mp_write_cstr(out, a);
    else waft_mp_write_str(out, (const char *)text.data, text.len);
    waft_buf_free(&text);
    return WAFT_OK;
}

static int reply_error(waft_buf *out, const char *reason) { return reply_error3(out, reason, NULL, 0, NULL); }

/* ---- request decoding ------------------------------------------------------------------------- */

/* Value type names as the SDK reads them (`ValueF32`, `valueF32`, `F32`, `f32`). Returns 1 for a float
 * type, 0 for a known-but-unsupported or unknown one. */
static int parse_value_type(waft_str name, value_type *vt) {
    const waft_ml_vtype *t = waft_ml_vtype_by_name(name);
    if (!t) return 0;
    if (t->kind == 'f') {
        *vt = t->size == 8 ? VT_F64 : t->size == 4 ? VT_F32 : VT_F16;
        return 1;
    }
    if (t->size == 1 && (t->kind == 'u' || t->kind == 'i')) { /* a quantized model's raw scores */
        *vt = t->kind == 'u' ? VT_U8 : VT_I8;
        return 1;
    }
    return 0;
}

static size_t value_size(value_type vt) { return vt == VT_F64 ? 8 : vt == VT_F32 ? 4 : vt == VT_F16 ? 2 : 1; }

/* Tensor{dimensions, valueTypes, flags, data} through the SDK's reader, which records type problems (schema
 * errors of the message) in `r`; semantic problems (unsupported type, sizes) are returned or checked later
 * and answered in-band. */
static const char *read_tensor(waft_mp_reader *r, tensor *t, const char **bad_type, uint32_t *bad_type_len) {
    waft_ml_tensor wire;
    memset(t, 0, sizeof *t);
    if (!waft_ml_read_tensor(r, &wire)) return NULL;
    const char *semantic = wire.dims_declared > MAX_DIMS ? "the tensor has more than 16 dimensions" : NULL;
    memcpy(t->dims, wire.dims, sizeof t->dims);
    t->n_dims = wire.n_dims;
    t->flags = wire.flags;
    t->data = wire.data;
    t->data_len = wire.data_len;
    for (uint32_t v = 0; v < wire.n_types; v++) {
        value_type vt;
        if (!parse_value_type(wire.types[v], &vt)) {
            if (!*bad_type) {
                *bad_type = wire.types[v].ptr;
                *bad_type_len = (uint32_t)wire.types[v].len;
            }
        } else if (t->have_type && vt != t->type) {
            if (!semantic) semantic = "mixed valueTypes are not supported";
        } else {
            t->type = vt;
            t->have_type = 1;
        }
    }
    return semantic;
}

/* labels: nil or a list of strings (str or bin); kept as views into the request. */
static void read_labels(waft_mp_reader *r, request *q) {
    if (waft_mp_peek(r) == WAFT_MP_NIL) {
        waft_mp_read_nil(r);
        return;
    }
    uint32_t n;
    if (!waft_mp_read_array(r, &n)) return;
    if (n == 0) return;
    /* read_array proved n elements fit in the payload, so this allocation is bounded by its size */
    q->labels = calloc(n, sizeof *q->labels);
    if (!q->labels) {
        waft_mp_fail(r, "out of memory reading labels");
        return;
    }
    for (uint32_t i = 0; i < n && !r->err; i++) {
        const uint8_t *s;
        uint32_t sl;
        if (!waft_mp_read_bytes(r, &s, &sl)) {
            r->err = "labels must be a list of strings";
            return;
        }
        q->labels[i] = (waft_str){(const char *)s, sl};
        q->n_labels = i + 1;
    }
}

/* ---- scores ----------------------------------------------------------------------------------- */

/* Element i of the data as a double, in the tensor's byte order. The caller checked the size. */
static double load_value(const tensor *t, size_t i) {
    if (t->type == VT_U8) return t->data[i];
    if (t->type == VT_I8) return (int8_t)t->data[i];
    int be = (t->flags & FLAG_BIG_ENDIAN) != 0;
    size_t size = value_size(t->type);
    const uint8_t *p = t->data + i * size;
    uint64_t bits = 0;
    for (size_t b = 0; b < size; b++) bits |= (uint64_t)p[be ? size - 1 - b : b] << (8 * b);
    if (t->type == VT_F64) {
        double d;
        memcpy(&d, &bits, 8);
        return d;
    }
    if (t->type == VT_F32) {
        uint32_t u = (uint32_t)bits;
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    return waft_ml_half_to_float((uint16_t)bits);
}

/* Probabilities as f32 (what the reply carries, so ranking and reply agree bit for bit). Softmax in
 * double: exp(x - max) / sum. NaN inputs stay NaN and are excluded from the max and the sum. */
static void softmax(const tensor *t, size_t n, float *p, int already_probabilities) {
    if (already_probabilities) {
        for (size_t i = 0; i < n; i++) p[i] = (float)load_value(t, i);
        return;
    }
    double max = -INFINITY;
    size_t n_pos_inf = 0, n_numbers = 0;
    for (size_t i = 0; i < n; i++) {
        double v = load_value(t, i);
        if (isnan(v)) continue;
        n_numbers++;
        if (v > max) max = v;
        if (v == INFINITY) n_pos_inf++;
    }
    if (n_pos_inf || (n_numbers && max == -INFINITY)) {
        /* exp(x - max) is inf - inf = NaN here; use the limit instead: the mass is shared evenly by
         * the +inf scores, or by every score when all are -inf. */
        double share = 1.0 / (double)(n_pos_inf ? n_pos_inf : n_numbers);
        for (size_t i = 0; i < n; i++) {
            double v = load_value(t, i);
            p[i] = isnan(v) ? NAN : (n_pos_inf ? (v == INFINITY ? (float)share : 0.0f) : (float)share);
        }
        return;
    }
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        double v = load_value(t, i);
        if (!isnan(v)) sum += exp(v - max); /* each term in (0, 1]; the max's term is 1, so sum >= 1 */
    }
    for (size_t i = 0; i < n; i++) {
        double v = load_value(t, i);
        p[i] = isnan(v) ? NAN : (float)(exp(v - max) / sum);
    }
}

/* The ranking order: a number beats NaN, a larger number beats a smaller one, and on a tie (NaN vs
 * NaN included) the lower index wins. A strict total order, so the result is deterministic. */
static int better(const float *p, uint32_t a, uint32_t b) {
    float x = p[a], y = p[b];
    int xn = isnan(x), yn = isnan(y);
    if (xn != yn) return yn;
    if (!xn && x != y) return x > y;
    return a < b;
}

/* Min-heap by `better` (root = the worst of the kept indices). */
static void sift_down(uint32_t *h, size_t n, size_t i, const float *p) {
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && better(p, h[w], h[l])) w = l;
        if (r < n && better(p, h[w], h[r])) w = r;
        if (w == i) return;
        uint32_t tmp = h[i];
        h[i] = h[w];
        h[w] = tmp;
        i = w;
    }
}

/* The k best indices, best first, into `best` (k <= n). */
static void top_k(const float *p, size_t n, uint32_t *best, size_t k) {
    if (k == 0) return;
    for (size_t i = 0; i < k; i++) best[i] = (uint32_t)i;
    for (size_t i = k / 2; i-- > 0;) sift_down(best, k, i, p);
    for (size_t i = k; i < n; i++) {
        if (better(p, (uint32_t)i, best[0])) {
            best[0] = (uint32_t)i;
            sift_down(best, k, 0, p);
        }
    }
    /* Heap sort: repeatedly move the worst to the end, leaving the best first. */
    for (size_t end = k; end > 1; end--) {
        uint32_t tmp = best[0];
        best[0] = best[end - 1];
        best[end - 1] = tmp;
        sift_down(best, end - 1, 0, p);
    }
}

/* ---- the operation ---------------------------------------------------------------------------- */

static int postprocess(const uint8_t *req, size_t len, waft_buf *out) {
    request q;
    memset(&q, 0, sizeof q);
    q.top_k = DEFAULT_TOP_K;
    const char *bad_type = NULL, *semantic = NULL;
    uint32_t bad_type_len = 0, n;
    int have_tensor = 0;
    waft_mp_reader r;
    waft_mp_reader_init(&r, req, len);
    if (!waft_mp_read_map(&r, &n)) return waft_fail2(out, "bad PostprocessRequest: ", r.err, strlen(r.err));
    for (uint32_t i = 0; i < n && !r.err; i++) {
        const char *k;
        uint32_t kl;
        if (!waft_mp_read_str(&r, &k, &kl)) break;
        if (waft_mp_key_is(k, kl, "result")) {
            waft_ml_read_status(&r, &q.result);
        } else if (waft_mp_key_is(k, kl, "tensor")) {
            semantic = read_tensor(&r, &q.tensor, &bad_type, &bad_type_len);
            have_tensor = 1;
        } else if (waft_mp_key_is(k, kl, "topK")) {
            if (waft_mp_peek(&r) == WAFT_MP_NIL) waft_mp_read_nil(&r);
            else waft_mp_read_u32(&r, &q.top_k);
        } else if (waft_mp_key_is(k, kl, "labels")) {
            read_labels(&r, &q);
        } else if (waft_mp_key_is(k, kl, "probabilities")) {
            if (waft_mp_peek(&r) == WAFT_MP_NIL) waft_mp_read_nil(&r);
            else waft_mp_read_bool(&r, &q.probabilities);
        } else {
            waft_mp_skip(&r);
        }
    }
    int rc = WAFT_OK;
    float *p = NULL;
    uint32_t *best = NULL;
    if (r.err) {
        rc = reply_error3(out, "bad PostprocessRequest: ", r.err, strlen(r.err), NULL);
        goto done;
    }
    /* Checks in the order a caller would want to hear about them. */
    if (q.result.is_error) {
        waft_buf text = WAFT_BUF_INIT;
        waft_buf_append(&text, q.result.variant.ptr, q.result.variant.len);
        waft_buf_append_str(&text, ": ");
        waft_buf_append(&text, q.result.message.ptr, q.result.message.len);
        rc = reply_error3(out, "the inference failed: ", text.failed ? "" : (const char *)text.data,
                          text.failed ? 0 : text.len, NULL);
        waft_buf_free(&text);
        goto done;
    }
    tensor *t = &q.tensor;
    if (!have_tensor) {
        rc = reply_error(out, "the request has no tensor");
        goto done;
    }
    if (bad_type) {
        rc = reply_error3(out, "unsupported value type ", bad_type, bad_type_len,
                          ": the post-processor reads ValueF32, ValueF64, ValueF16, ValueU8 and ValueI8 scores");
        goto done;
    }
    if (semantic) {
        rc = reply_error(out, semantic);
        goto done;
    }
    if (!t->have_type) t->type = VT_F32; /* the original's Tensor::default() */
    if (t->flags & ~(uint64_t)(FLAG_COLUMN_MAJOR | FLAG_BIG_ENDIAN)) {
        rc = reply_error(out, "tensor flags set reserved bits (known: 1 column-major, 2 big-endian)");
        goto done;
    }
    if (t->n_dims == 0) {
        rc = reply_error(out, "the tensor has no dimensions");
        goto done;
    }
    /* Exactly one row of scores: at most one dimension above 1 (so row/column-major is moot). */
    uint64_t count = 1;
    uint32_t above_one = 0;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        count *= t->dims[d]; /* <= 16 factors of < 2^32 can overflow: checked against the data below */
        if (t->dims[d] > 1) above_one++;
        if (count > UINT32_MAX) break;
    }
    size_t size = value_size(t->type);
    if (count == 0) {
        rc = reply_error(out, "the tensor holds no class scores (a dimension is 0)");
        goto done;
    }
    if (above_one > 1) {
        rc = reply_error(out, "expected one row of class scores (dimensions [N], [1, N] or [1, N, 1, 1]); "
                              "a batch of several images is not supported");
        goto done;
    }
    if (count > UINT32_MAX || (uint64_t)t->data_len != count * size) {
        waft_buf text = WAFT_BUF_INIT;
        waft_buf_append_u64(&text, t->data_len);
        waft_buf_append_str(&text, " bytes of data but the dimensions need ");
        waft_buf_append_u64(&text, count <= UINT32_MAX ? count * size : count);
        waft_buf_append_str(&text, count <= UINT32_MAX ? " bytes" : " elements");
        rc = reply_error3(out, "tensor size mismatch: ", text.failed ? "" : (const char *)text.data,
                          text.failed ? 0 : text.len, NULL);
        waft_buf_free(&text);
        goto done;
    }
    if (count > SIZE_MAX / sizeof(float)) { /* wasm32: size_t is 32 bits; the float array must fit */
        rc = reply_error(out, "too many classes for this actor's memory");
        goto done;
    }
    size_t classes = (size_t)count;
    size_t k = q.top_k < classes ? q.top_k : classes;
    p = malloc(classes * sizeof *p);
    best = malloc((k ? k : 1) * sizeof *best);
    if (!p || !best) {
        rc = reply_error(out, "out of memory for the class scores");
        goto done;
    }
    /* TF Lite's ImageNet models answer 1001 classes, background first, already probabilities: sorted as
     * they are (the original did the same), and named by a 1000-line label list one place down. */
    int background_first = classes == 1001;
    softmax(t, classes, p, q.probabilities || background_first);
    top_k(p, classes, best, k);

    waft_buf_reset(out);
    waft_mp_write_map(out, 1);
    waft_mp_write_cstr(out, "matches");
    waft_mp_write_array(out, (uint32_t)k);
    for (size_t i = 0; i < k; i++) {
        uint32_t idx = best[i];
        waft_mp_write_map(out, 2);
        waft_mp_write_cstr(out, "label");
        uint32_t shift = background_first && q.n_labels == 1000 ? 1 : 0;
        if (shift && idx == 0) {
            waft_mp_write_cstr(out, "background");
        } else if (idx - shift < q.n_labels) {
            waft_mp_write_str(out, q.labels[idx - shift].ptr, q.labels[idx - shift].len);
        } else {
            char digits[16];
            size_t nd = 0;
            uint32_t v = idx;
            do digits[nd++] = (char)('0' + v % 10); while ((v /= 10) && nd < sizeof digits);
            char text[16];
            for (size_t d = 0; d < nd; d++) text[d] = digits[nd - 1 - d];
            waft_mp_write_str(out, text, nd);
        }
        waft_mp_write_cstr(out, "probability");
        waft_mp_write_f32(out, p[idx]);
    }
done:
    free(p);
    free(best);
    free(q.labels);
    return rc;
}

void waft_actor_init(void) { waft_register("Imagenet.Postprocess", postprocess); } /* health: the SDK's */
