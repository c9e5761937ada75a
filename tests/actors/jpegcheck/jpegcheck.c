/* jpegcheck: a test-only actor around the pre-processor's JPEG decoder (actors/preprocessor/jpeg.c).
 *
 *   Jpeg.Decode {data: bin, scale: u32 = 1, maxPixels: u64 = 50M} -> {width, height, channels, pixels: bin}
 *   Jpeg.Info   {data: bin}                                       -> {width, height, orientation}
 *   Jpeg.Bench  {data: bin, scale: u32 = 1, repeat: u32 = 1}      -> {width, height}  (decodes `repeat`
 *               times and returns no pixels, so the host can time the decoder without the copy-out)
 * Decoder failures come back as guest errors carrying the decoder's message.
 */
#include <stdlib.h>
#include <string.h>

#include "../../../actors/preprocessor/jpeg.h"
#include "waft.h"

typedef struct {
    const uint8_t *data;
    uint32_t len, scale, repeat;
    uint64_t max_pixels;
} request;

static int parse_request(const uint8_t *req, size_t len, request *r, waft_buf *out) {
    waft_mp_reader rd;
    uint32_t n;
    memset(r, 0, sizeof *r);
    r->scale = 1;
    r->repeat = 1;
    r->max_pixels = 50000000;
    waft_mp_reader_init(&rd, req, len);
    if (!waft_mp_read_map(&rd, &n)) return waft_fail(out, "request must be a msgpack map");
    for (uint32_t i = 0; i < n && !rd.err; i++) {
        const char *k;
        uint32_t kl;
        if (!waft_mp_read_str(&rd, &k, &kl)) break;
        if (waft_mp_key_is(k, kl, "data")) waft_mp_read_bytes(&rd, &r->data, &r->len);
        else if (waft_mp_key_is(k, kl, "scale")) waft_mp_read_u32(&rd, &r->scale);
        else if (waft_mp_key_is(k, kl, "repeat")) waft_mp_read_u32(&rd, &r->repeat);
        else if (waft_mp_key_is(k, kl, "maxPixels")) waft_mp_read_u64(&rd, &r->max_pixels);
        else waft_mp_skip(&rd);
    }
    if (rd.err) return waft_fail2(out, "bad request: ", rd.err, strlen(rd.err));
    return WAFT_OK;
}

static int fail_with(waft_buf *out, const char *err) {
    return waft_fail(out, err ? err : "unknown JPEG error");
}

static int op_decode(const uint8_t *req, size_t len, waft_buf *out) {
    request r;
    if (parse_request(req, len, &r, out) != WAFT_OK) return WAFT_ERR;
    waft_image img;
    const char *err = NULL;
    if (waft_jpeg_decode(r.data, r.len, r.scale, r.max_pixels, &img, &err) != 0) return fail_with(out, err);
    size_t n = (size_t)img.width * img.height * img.channels;
    waft_mp_write_map(out, 4);
    waft_mp_write_cstr(out, "width");
    waft_mp_write_u64(out, img.width);
    waft_mp_write_cstr(out, "height");
    waft_mp_write_u64(out, img.height);
    waft_mp_write_cstr(out, "channels");
    waft_mp_write_u64(out, img.channels);
    waft_mp_write_cstr(out, "pixels");
    waft_mp_write_bin(out, img.pixels, n);
    free(img.pixels);
    return WAFT_OK;
}

static int op_info(const uint8_t *req, size_t len, waft_buf *out) {
    request r;
    if (parse_request(req, len, &r, out) != WAFT_OK) return WAFT_ERR;
    uint32_t w = 0, h = 0, o = 0;
    const char *err = NULL;
    if (waft_jpeg_info(r.data, r.len, &w, &h, &o, &err) != 0) return fail_with(out, err);
    waft_mp_write_map(out, 3);
    waft_mp_write_cstr(out, "width");
    waft_mp_write_u64(out, w);
    waft_mp_write_cstr(out, "height");
    waft_mp_write_u64(out, h);
    waft_mp_write_cstr(out, "orientation");
    waft_mp_write_u64(out, o);
    return WAFT_OK;
}

static int op_bench(const uint8_t *req, size_t len, waft_buf *out) {
    request r;
    if (parse_request(req, len, &r, out) != WAFT_OK) return WAFT_ERR;
    waft_image img = {0, 0, 0, NULL};
    for (uint32_t i = 0; i < r.repeat; i++) {
        const char *err = NULL;
        if (waft_jpeg_decode(r.data, r.len, r.scale, r.max_pixels, &img, &err) != 0) return fail_with(out, err);
        free(img.pixels);
    }
    waft_mp_write_map(out, 2);
    waft_mp_write_cstr(out, "width");
    waft_mp_write_u64(out, img.width);
    waft_mp_write_cstr(out, "height");
    waft_mp_write_u64(out, img.height);
    return WAFT_OK;
}

void waft_actor_init(void) {
    waft_register("Jpeg.Decode", op_decode);
    waft_register("Jpeg.Info", op_info);
    waft_register("Jpeg.Bench", op_bench);
}
