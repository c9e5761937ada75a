/* The pre-processor actor: image bytes -> the model's input tensor (`MlPreprocessing.Convert`).
 *
 * Contract: docs/interfaces.md. ConversionRequest{data: bin, spec: InputSpec?, defer_normalize: bool?} ->
 * ConversionOutput{result: Status, tensor: Tensor, normalize?}. With defer_normalize an f32 spec yields
 * the u8 pixels and `normalize` {mean, std, axis}, which Waft's provider applies in the same f32 steps. Anything wrong with the *image* (unknown format,
 * corrupt or truncated data, too large) is a Status error `{"error": {"invalidEncoding": reason}}`
 * so the API can answer 400; only a payload that is not a ConversionRequest at all is a guest error.
 *
 * Pipeline (the reference is Pillow: decode, convert("RGB"), resize, crop, normalise):
 *   1. sniff the format from magic bytes (PNG signature, JPEG SOI + marker; "BM", "GIF8[79]a",
 *      "RIFF....WEBP" go to formats.c: Wuffs for BMP and GIF's first frame, libwebp for WebP and an
 *      animated WebP's first frame);
 *   2. decode to 8-bit grey or RGB (png.c; jpeg.c for JPEG, which may decode at 1/2, 1/4 or 1/8 scale
 *      in the IDCT when the image is much larger than the model needs); any other format is then
 *      box-reduced by the same scale (Pillow's reduce(), resize.c), so one photo gives one tensor
 *      whatever its format;
 *   3. resize ("shorter_side": shorter side to resize_to, longer side truncated like the Python
 *      reference; "stretch": straight to size) with Pillow's exact BILINEAR (or BICUBIC) algorithm,
 *      computing only the pixels the crop keeps (resize.c);
 *   4. centre crop (offsets rounded half to even, as Python's round() in waft.models.preprocess);
 *   5. (x - mean) / std per channel in f32, or raw bytes for dtype u8; RGB, BGR or GRAY; NCHW or NHWC.
 *
 * Extra operations: `Actor.HealthRequest` (the SDK's); `MlPreprocessing.Decode` {data, max_pixels?} -> {result,
 * width, height, channels: 3, pixels: RGB8} (the decoded image, for callers that want pixels and for
 * tests); `Debug.Inflate` {data, zlib: bool, max: u32} -> {result, data} (the SDK's inflate, exposed so
 * tests can hold it to Python's zlib).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "formats.h"
#include "png.h"
#include "resize.h"
#include "waft.h"
#include "waft_inflate.h"

#define DEFAULT_MAX_PIXELS 50000000ull          /* 50 MP: ~150 MB of RGB, the most a 256 MiB cap allows */
#define MAX_INPUT_BYTES (20u * 1024u * 1024u)   /* 20 MiB of compressed image */
#define MAX_SIDE 16384u                          /* largest tensor side a spec may ask for */

typedef struct {
    uint32_t size_h, size_w;
    int nhwc;           /* layout: 0 NCHW, 1 NHWC */
    int stretch;        /* resize: 0 shorter_side, 1 stretch */
    uint32_t resize_to;
    int crop;           /* 1 center, 0 none */
    float mean[3], std[3];
    int u8;             /* dtype: 0 f32, 1 u8 */
    int bgr;            /* color: 0 RGB, 1 BGR */
    int gray;           /* color GRAY: one channel, Pillow's convert("L") */
    waft_filter filter;
    uint64_t max_pixels;
} input_spec;

static void default_spec(input_spec *s) {
    s->size_h = s->size_w = 224;
    s->nhwc = 0;
    s->stretch = 0;
    s->resize_to = 256;
    s->crop = 1;
    for (int i = 0; i < 3; i++) {
        s->mean[i] = 127.0f;
        s->std[i] = 128.0f;
    }
    s->u8 = 0;
    s->bgr = 0;
    s->gray = 0;
    s->filter = WAFT_FILTER_BILINEAR;
    s->max_pixels = DEFAULT_MAX_PIXELS;
}

/* ---- replies ---------------------------------------------------------------------------------- */

static void write_error_status(waft_buf *out, const char *reason, size_t len) {
    waft_mp_write_cstr(out, "result");
    waft_mp_write_map(out, 1);
    waft_mp_write_cstr(out, "error");
    waft_mp_write_map(out, 1);
    waft_mp_write_cstr(out, "invalidEncoding");
    waft_mp_write_str(out, reason, len);
}

/* ConversionOutput with an error Status and an empty tensor (the field is not optional in the model). */
static int convert_error(waft_buf *out, const char *reason) {
    waft_buf_reset(out);
    waft_mp_write_map(out, 2);
    write_error_status(out, reason, strlen(reason));
    waft_mp_write_cstr(out, "tensor");
    waft_ml_write_tensor(out, NULL, 0, NULL, 0, "", 0);
    return WAFT_OK;
}

/* "<prefix><number><suffix>" into a static buffer, for limit messages (no printf in the module). */
static const char *limit_msg(const char *prefix, uint64_t n, const char *mid, uint64_t limit, const char *suffix) {
    static char text[160];
    waft_buf b = WAFT_BUF_INIT;
    waft_buf_append_str(&b, prefix);
    waft_buf_append_u64(&b, n);
    waft_buf_append_str(&b, mid);
    waft_buf_append_u64(&b, limit);
    waft_buf_append_str(&b, suffix);
    size_t len = b.failed ? 0 : (b.len < sizeof text - 1 ? b.len : sizeof text - 1);
    if (len) memcpy(text, b.data, len);
    text[len] = 0;
    waft_buf_free(&b);
    return len ? text : "image exceeds a limit";
}

/* ---- request decoding ------------------------------------------------------------------------- */

static int read_f32x3(waft_mp_reader *r, float v[3]) {
    uint32_t n;
    if (!waft_mp_read_array(r, &n)) return 0;
    if (n != 3) return waft_mp_fail(r, "mean and std need 3 values");
    for (int i = 0; i < 3; i++) {
        double d;
        if (!waft_mp_read_f64(r, &d)) return 0;
        v[i] = (float)d;
    }
    return 1;
}

/* Read a short string value into `buf` (NUL-terminated) for comparison. */
static int read_word(waft_mp_reader *r, char *buf, size_t cap) {
    const char *s;
    uint32_t len;
    if (!waft_mp_read_str(r, &s, &len)) return 0;
    if (len >= cap) return waft_mp_fail(r, "unknown input spec value");
    memcpy(buf, s, len);
    buf[len] = 0;
    return 1;
}

/* InputSpec: every field optional (defaults above); unknown keys skipped (forward compatibility).
 * Returns NULL or the reason the spec is unusable. */
static const char *read_spec(waft_mp_reader *r, input_spec *s) {
    uint32_t n;
    if (waft_mp_peek(r) == WAFT_MP_NIL) {
        waft_mp_read_nil(r);
        return NULL;
    }
    if (!waft_mp_read_map(r, &n)) return r->err;
    char w[16];
    for (uint32_t i = 0; i < n && !r->err; i++) {
        const char *k;
        uint32_t kl;
        if (!waft_mp_read_str(r, &k, &kl)) break;
        if (waft_mp_peek(r) == WAFT_MP_NIL) { /* null = use the default */
            waft_mp_read_nil(r);
            continue;
        }
        if (waft_mp_key_is(k, kl, "size")) {
            uint32_t cnt, h = 0, wd = 0;
            if (!waft_mp_read_array(r, &cnt)) break;
            if (cnt != 2) return "size must be [height, width]";
            if (!waft_mp_read_u32(r, &h) || !waft_mp_read_u32(r, &wd)) break;
            s->size_h = h;
            s->size_w = wd;
        } else if (waft_mp_key_is(k, kl, "layout")) {
            if (!read_word(r, w, sizeof w)) break;
            if (!strcmp(w, "NCHW")) s->nhwc = 0;
            else if (!strcmp(w, "NHWC")) s->nhwc = 1;
            else return "layout must be NCHW or NHWC";
        } else if (waft_mp_key_is(k, kl, "resize")) {
            if (!read_word(r, w, sizeof w)) break;
            if (!strcmp(w, "shorter_side")) s->stretch = 0;
            else if (!strcmp(w, "stretch")) s->stretch = 1;
            else return "resize must be shorter_side or stretch";
        } else if (waft_mp_key_is(k, kl, "resize_to")) {
            if (!waft_mp_read_u32(r, &s->resize_to)) break;
        } else if (waft_mp_key_is(k, kl, "crop")) {
            if (!read_word(r, w, sizeof w)) break;
            if (!strcmp(w, "center")) s->crop = 1;
            else if (!strcmp(w, "none")) s->crop = 0;
            else return "crop must be center or none";
        } else if (waft_mp_key_is(k, kl, "mean")) {
            if (!read_f32x3(r, s->mean)) break;
        } else if (waft_mp_key_is(k, kl, "std")) {
            if (!read_f32x3(r, s->std)) break;
        } else if (waft_mp_key_is(k, kl, "dtype")) {
            if (!read_word(r, w, sizeof w)) break;
            if (!strcmp(w, "f32")) s->u8 = 0;
            else if (!strcmp(w, "u8")) s->u8 = 1;
            else return "dtype must be f32 or u8";
        } else if (waft_mp_key_is(k, kl, "color")) {
            if (!read_word(r, w, sizeof w)) break;
            s->gray = 0;
            if (!strcmp(w, "RGB")) s->bgr = 0;
            else if (!strcmp(w, "BGR")) s->bgr = 1;
            else if (!strcmp(w, "GRAY") || !strcmp(w, "L")) s->gray = 1;
            else return "color must be RGB or BGR";
        } else if (waft_mp_key_is(k, kl, "resample")) {
            if (!read_word(r, w, sizeof w)) break;
            if (!strcmp(w, "bilinear")) s->filter = WAFT_FILTER_BILINEAR;
            else if (!strcmp(w, "bicubic")) s->filter = WAFT_FILTER_BICUBIC;
            else return "resample must be bilinear or bicubic";
        } else if (waft_mp_key_is(k, kl, "max_pixels")) {
            if (!waft_mp_read_u64(r, &s->max_pixels)) break;
        } else {
            waft_mp_skip(r);
        }
    }
    if (r->err) return r->err;
    if (!s->size_h || !s->size_w || s->size_h > MAX_SIDE || s->size_w > MAX_SIDE)
        return "size must be between 1 and 16384 on each side";
    if (!s->stretch && (s->resize_to == 0 || s->resize_to > MAX_SIDE))
        return "resize_to must be between 1 and 16384";
    for (int i = 0; i < 3; i++)
        if (!(s->std[i] != 0.0f) || !isfinite(s->std[i]) || !isfinite(s->mean[i]))
            return "std must be non-zero and mean and std finite";
    return NULL;
}

/* The request map: data (bin or str) and the optional spec. `spec_err` gets a bad-spec reason. */
static int read_request(const uint8_t *req, size_t len, const uint8_t **data, uint32_t *data_len,
                        input_spec *spec, int *defer, const char **spec_err, const char **err) {
    waft_mp_reader r;
    uint32_t n;
    int have_data = 0;
    waft_mp_reader_init(&r, req, len);
    *spec_err = NULL;
    if (!waft_mp_read_map(&r, &n)) {
        *err = r.err;
        return -1;
    }
    for (uint32_t i = 0; i < n && !r.err; i++) {
        const char *k;
        uint32_t kl;
        if (!waft_mp_read_str(&r, &k, &kl)) break;
        if (waft_mp_key_is(k, kl, "data")) {
            if (waft_mp_read_bytes(&r, data, data_len)) have_data = 1;
        } else if (waft_mp_key_is(k, kl, "defer_normalize")) {
            if (waft_mp_peek(&r) == WAFT_MP_NIL) waft_mp_read_nil(&r);
            else waft_mp_read_bool(&r, defer);
        } else if (waft_mp_key_is(k, kl, "spec")) {
            /* A bad *value* in the spec is reported as a Status (the image request is well formed);
             * the reader may have stopped inside the spec, so rewind and skip the spec whole. */
            size_t at = r.pos;
            const char *e = read_spec(&r, spec);
            if (e && !*spec_err) *spec_err = e;
            if (e) {
                r.err = NULL;
                r.pos = at;
                waft_mp_skip(&r);
            }
        } else {
            waft_mp_skip(&r);
        }
    }
    if (r.err) {
        *err = r.err;
        return -1;
    }
    if (!have_data) {
        *err = "ConversionRequest has no data field";
        return -1;
    }
    return 0;
}

/* ---- decoding --------------------------------------------------------------------------------- */

static int is_jpeg(const uint8_t *d, size_t n) { return n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF; }

/* Largest scale denominator (8, 4, 2, 1) whose reduced size still covers what the resize needs, so that
 * the final resize is always a reduction (or exact) from real pixels. A JPEG is decoded at that scale in
 * the IDCT (Pillow's draft()); every other format is box-reduced by the same factor after decoding
 * (Pillow's reduce()), so that one photo answers the same whatever format it was sent in. */
static uint32_t draft_denom(uint32_t w, uint32_t h, const input_spec *s) {
    for (uint32_t d = 8; d > 1; d /= 2) {
        uint32_t sw = (w + d - 1) / d, sh = (h + d - 1) / d;
        int ok = s->stretch ? (sw >= s->size_w && sh >= s->size_h)
                            : ((sw < sh ? sw : sh) >= s->resize_to);
        if (ok) return d;
    }
    return 1;
}

/* Decode `data` into 8-bit grey or RGB; *scaled says the decoder already applied draft_denom (JPEG).
 * Returns NULL or the invalidEncoding reason. */
static const char *decode_image(const uint8_t *data, size_t len, const input_spec *spec, waft_image *img,
                                int *scaled) {
    const char *err = NULL;
    memset(img, 0, sizeof *img);
    *scaled = 0;
    if (len > MAX_INPUT_BYTES)
        return limit_msg("image too large: ", len, " bytes exceeds the limit of ", MAX_INPUT_BYTES, " bytes");
    if (waft_png_sniff(data, len)) {
        if (waft_png_decode(data, len, spec->max_pixels, img, &err) < 0) return err ? err : "bad PNG data";
        return NULL;
    }
    if (is_jpeg(data, len)) {
#ifdef WAFT_WITH_JPEG
        uint32_t w, h, orientation;
        if (waft_jpeg_info(data, len, &w, &h, &orientation, &err) != 0) return err ? err : "bad JPEG data";
        uint64_t pixels = (uint64_t)w * h;
        if (pixels > spec->max_pixels)
            return limit_msg("image too large: ", pixels, " pixels exceeds the limit of ", spec->max_pixels,
                             " pixels");
        /* The decoder applies the EXIF orientation; 5..8 swap the sides, which matters for "stretch". */
        uint32_t ow = orientation >= 5 && orientation <= 8 ? h : w, oh = ow == w ? h : w;
        *scaled = 1;
        if (waft_jpeg_decode(data, len, draft_denom(ow, oh, spec), spec->max_pixels, img, &err) != 0) {
            free(img->pixels);
            img->pixels = NULL;
            return err ? err : "bad JPEG data";
        }
        return NULL;
#else
        return "JPEG support is not built into this pre-processor";
#endif
    }
    if (waft_formats_sniff(data, len)) /* BMP, GIF, WebP: vendored Wuffs and libwebp (formats.c) */
        return waft_formats_decode(data, len, spec->max_pixels, img);
    return "unknown image format (expected JPEG, PNG, BMP, GIF or WebP)";
}

/* Round half to even, as Python's round() in the reference pipeline. */
static int64_t round_even(double v) { return (int64_t)nearbyint(v); }

/* ---- operations ------------------------------------------------------------------------------- */

static int convert(const uint8_t *req, size_t len, waft_buf *out) {
    input_spec spec;
    const uint8_t *data = NULL;
    uint32_t data_len = 0;
    const char *spec_err = NULL, *err = NULL;
    int defer = 0;
    default_spec(&spec);
    if (read_request(req, len, &data, &data_len, &spec, &defer, &spec_err, &err) < 0)
        return waft_fail2(out, "bad ConversionRequest: ", err, strlen(err));
    if (spec_err) {
        const char *prefix = "bad input spec: ";
        static char text[128];
        size_t a = strlen(prefix), b = strlen(spec_err);
        if (a + b >= sizeof text) b = sizeof text - 1 - a;
        memcpy(text, prefix, a);
        memcpy(text + a, spec_err, b);
        text[a + b] = 0;
        return convert_error(out, text);
    }

    waft_image img;
    int scaled;
    const char *reason = decode_image(data, data_len, &spec, &img, &scaled);
    if (reason) return convert_error(out, reason);
    if (spec.gray && img.channels == 3) { /* Pillow's RGB -> L, in place: L = (19595 R + 38470 G + 7471 B + 2^15) >> 16 */
        size_t n = (size_t)img.width * img.height;
        for (size_t i = 0; i < n; i++) {
            const uint8_t *px = img.pixels + i * 3;
            img.pixels[i] = (uint8_t)((px[0] * 19595u + px[1] * 38470u + px[2] * 7471u + 0x8000u) >> 16);
        }
        img.channels = 1;
    }
    uint32_t denom = scaled ? 1 : draft_denom(img.width, img.height, &spec);
    if (denom > 1) {
        uint32_t ow = (img.width + denom - 1) / denom, oh = (img.height + denom - 1) / denom;
        uint8_t *small = malloc((size_t)ow * oh * img.channels);
        if (!small) {
            free(img.pixels);
            return convert_error(out, "out of memory while reducing");
        }
        waft_reduce(img.pixels, img.width, img.height, img.channels, denom, small);
        free(img.pixels);
        img.pixels = small;
        img.width = ow;
        img.height = oh;
    }

    /* Geometry of the resized image and of the window (crop) we keep. */
    uint32_t W = img.width, H = img.height, rw, rh;
    if (spec.stretch) {
        rw = spec.size_w;
        rh = spec.size_h;
    } else {
        /* The long side of the resize, checked before it becomes an integer: a 1 x 50 000 000 image would
         * ask for a side past 2^32 (undefined as a conversion) and for gigabytes of resampling. */
        double ratio = W <= H ? (double)H / W : (double)W / H;
        double longer = (double)spec.resize_to * ratio;
        if (!(longer <= (double)MAX_SIDE * 64)) {
            free(img.pixels);
            return convert_error(out, "image too large: at this aspect ratio the resized long side in pixels exceeds "
                                      "the limit of 1048576");
        }
        if (W <= H) { /* the Python reference: width is the shorter side when equal */
            rw = spec.resize_to;
            rh = (uint32_t)((double)((uint64_t)spec.resize_to * H) / W);
        } else {
            rh = spec.resize_to;
            rw = (uint32_t)((double)((uint64_t)spec.resize_to * W) / H);
        }
    }
    if (rw == 0) rw = 1; /* extreme aspect ratios: Pillow refuses a 0 size, keep one pixel */
    if (rh == 0) rh = 1;
    uint32_t cx = 0, cy = 0, cw = rw, ch = rh;
    if (spec.crop && !spec.stretch) {
        if (rw < spec.size_w || rh < spec.size_h) {
            free(img.pixels);
            return convert_error(out, "bad input spec: resize_to is smaller than the crop size");
        }
        cw = spec.size_w;
        ch = spec.size_h;
        cx = (uint32_t)round_even((rw - cw) / 2.0);
        cy = (uint32_t)round_even((rh - ch) / 2.0);
    }
    if ((uint64_t)cw * ch > (uint64_t)MAX_SIDE * MAX_SIDE / 4) {
        free(img.pixels);
        return convert_error(out, "bad input spec: output tensor too large");
    }

    size_t npix = (size_t)cw * ch;
    uint8_t *win = malloc(npix * img.channels);
    if (!win) {
        free(img.pixels);
        return convert_error(out, "out of memory while resizing");
    }
    if (waft_resize_window(img.pixels, W, H, img.channels, rw, rh, cx, cy, cw, ch, spec.filter, win, &err) < 0) {
        free(win);
        free(img.pixels);
        return convert_error(out, err);
    }
    free(img.pixels);

    /* Normalise and lay out. Grey is replicated to the 3 channels (convert("RGB")). A caller that will
     * hand the tensor to Waft's provider may defer the normalisation to it: the tensor stays u8 pixels
     * (a quarter of the bytes to copy, hash and send) and the answer says what to apply. */
    int deferred = defer && !spec.u8;
    if (deferred) spec.u8 = 1;
    uint32_t oc = spec.gray ? 1 : 3; /* output channels */
    size_t elem = spec.u8 ? 1 : 4, nbytes = npix * oc * elem;
    uint8_t *tensor = malloc(nbytes);
    if (!tensor) {
        free(win);
        return convert_error(out, "out of memory for the tensor");
    }
    for (size_t p = 0; p < npix; p++) {
        const uint8_t *px = win + p * img.channels;
        for (int c = 0; c < (int)oc; c++) {
            int srcc = spec.bgr ? 2 - c : c; /* output channel c takes this source channel */
            uint8_t v = img.channels == 1 ? px[0] : px[srcc];
            size_t idx = spec.nhwc ? p * oc + (size_t)c : (size_t)c * npix + p;
            if (spec.u8) {
                tensor[idx] = v;
            } else {
                /* mean/std are indexed by the *output* channel: the spec describes the tensor */
                float f = ((float)v - spec.mean[c]) / spec.std[c];
                memcpy(tensor + idx * 4, &f, 4); /* wasm is little-endian, as the Tensor wants */
            }
        }
    }
    free(win);

    waft_buf_reset(out);
    waft_mp_write_map(out, deferred ? 3 : 2);
    if (deferred) { /* InferenceInput.normalize, for the caller to pass on as it is */
        waft_mp_write_cstr(out, "normalize");
        waft_mp_write_map(out, 3);
        waft_mp_write_cstr(out, "mean");
        waft_mp_write_array(out, oc);
        for (uint32_t c = 0; c < oc; c++) waft_mp_write_f32(out, spec.mean[c]);
        waft_mp_write_cstr(out, "std");
        waft_mp_write_array(out, oc);
        for (uint32_t c = 0; c < oc; c++) waft_mp_write_f32(out, spec.std[c]);
        waft_mp_write_cstr(out, "axis");
        waft_mp_write_u64(out, spec.nhwc ? 3 : 1);
    }
    waft_mp_write_cstr(out, "result");
    waft_mp_write_map(out, 1);
    waft_mp_write_cstr(out, "success");
    waft_mp_write_nil(out);
    waft_mp_write_cstr(out, "tensor");
    const uint32_t nchw[4] = {1, oc, ch, cw}, nhwc[4] = {1, ch, cw, oc};
    waft_ml_write_tensor(out, spec.nhwc ? nhwc : nchw, 4, spec.u8 ? "ValueU8" : "ValueF32", 0, tensor, nbytes);
    free(tensor);
    return WAFT_OK;
}

/* MlPreprocessing.Decode {data, max_pixels?} -> {result, width, height, channels: 3, pixels} */
static int decode_op(const uint8_t *req, size_t len, waft_buf *out) {
    waft_mp_reader r;
    uint32_t n;
    const uint8_t *data = NULL;
    uint32_t data_len = 0;
    input_spec spec;
    default_spec(&spec);
    waft_mp_reader_init(&r, req, len);
    if (waft_mp_read_map(&r, &n)) {
        for (uint32_t i = 0; i < n && !r.err; i++) {
            const char *k;
            uint32_t kl;
            if (!waft_mp_read_str(&r, &k, &kl)) break;
            if (waft_mp_key_is(k, kl, "data")) waft_mp_read_bytes(&r, &data, &data_len);
            else if (waft_mp_key_is(k, kl, "max_pixels")) waft_mp_read_u64(&r, &spec.max_pixels);
            else waft_mp_skip(&r);
        }
    }
    if (r.err || !data) return waft_fail(out, r.err ? r.err : "request has no data field");
    /* Full-size decode: never scale a JPEG down here. */
    spec.stretch = 1;
    spec.size_w = spec.size_h = MAX_SIDE;
    waft_image img;
    int scaled;
    const char *reason = decode_image(data, data_len, &spec, &img, &scaled);
    waft_buf_reset(out);
    if (reason) {
        waft_mp_write_map(out, 1);
        write_error_status(out, reason, strlen(reason));
        return WAFT_OK;
    }
    size_t npix = (size_t)img.width * img.height;
    waft_mp_write_map(out, 5);
    waft_mp_write_cstr(out, "result");
    waft_mp_write_map(out, 1);
    waft_mp_write_cstr(out, "success");
    waft_mp_write_nil(out);
    waft_mp_write_cstr(out, "width");
    waft_mp_write_u64(out, img.width);
    waft_mp_write_cstr(out, "height");
    waft_mp_write_u64(out, img.height);
    waft_mp_write_cstr(out, "channels");
    waft_mp_write_u64(out, 3);
    waft_mp_write_cstr(out, "pixels");
    if (img.channels == 3) {
        waft_mp_write_bin(out, img.pixels, npix * 3);
    } else {
        /* Replicate grey in place from the end backwards would need a bigger buffer; build the bin
         * header by hand and append RGB triplets straight into the reply. */
        uint64_t nb = (uint64_t)npix * 3;
        uint8_t hdr[5] = {0xC6, (uint8_t)(nb >> 24), (uint8_t)(nb >> 16), (uint8_t)(nb >> 8), (uint8_t)nb};
        waft_buf_append(out, hdr, 5);
        if (waft_buf_reserve(out, (size_t)nb) == 0) {
            uint8_t *o = out->data + out->len;
            for (size_t p = 0; p < npix; p++) o[3 * p] = o[3 * p + 1] = o[3 * p + 2] = img.pixels[p];
            out->len += (size_t)nb;
        }
    }
    free(img.pixels);
    return WAFT_OK;
}

/* Debug.Inflate {data, zlib: bool, max: u32} -> {result, data}: the SDK inflater, for tests. */
static int inflate_op(const uint8_t *req, size_t len, waft_buf *out) {
    waft_mp_reader r;
    uint32_t n, max = 1u << 20;
    const uint8_t *data = NULL;
    uint32_t data_len = 0;
    int zlib = 1;
    waft_mp_reader_init(&r, req, len);
    if (waft_mp_read_map(&r, &n)) {
        for (uint32_t i = 0; i < n && !r.err; i++) {
            const char *k;
            uint32_t kl;
            if (!waft_mp_read_str(&r, &k, &kl)) break;
            if (waft_mp_key_is(k, kl, "data")) waft_mp_read_bytes(&r, &data, &data_len);
            else if (waft_mp_key_is(k, kl, "zlib")) waft_mp_read_bool(&r, &zlib);
            else if (waft_mp_key_is(k, kl, "max")) waft_mp_read_u32(&r, &max);
            else waft_mp_skip(&r);
        }
    }
    if (r.err || !data) return waft_fail(out, r.err ? r.err : "request has no data field");
    if (max > (64u << 20)) return waft_fail(out, "max is at most 64 MiB");
    uint8_t *buf = malloc(max ? max : 1);
    if (!buf) return waft_fail(out, "out of memory");
    size_t got = 0;
    const char *err = NULL;
    int rc = waft_inflate_buffer(data, data_len, zlib, buf, max, &got, &err);
    waft_buf_reset(out);
    waft_mp_write_map(out, 2);
    if (rc < 0) {
        write_error_status(out, err, strlen(err));
    } else {
        waft_mp_write_cstr(out, "result");
        waft_mp_write_map(out, 1);
        waft_mp_write_cstr(out, "success");
        waft_mp_write_nil(out);
    }
    waft_mp_write_cstr(out, "data");
    waft_mp_write_bin(out, buf, rc < 0 ? 0 : got);
    free(buf);
    return WAFT_OK;
}

void waft_actor_init(void) { /* Actor.HealthRequest: the SDK's */
    waft_register("MlPreprocessing.Convert", convert);
    waft_register("MlPreprocessing.Decode", decode_op);
    waft_register("Debug.Inflate", inflate_op);
}
