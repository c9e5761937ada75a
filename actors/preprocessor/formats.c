/* BMP and GIF through Wuffs, WebP through libwebp: see formats.h. The libraries are compiled from the
 * pinned registry packages by actors/build.py (actors/vendor.py); only their headers are included here. */
#include "formats.h"

#include <stdlib.h>
#include <string.h>

#define WUFFS_CONFIG__MODULES
#define WUFFS_CONFIG__MODULE__BASE
#define WUFFS_CONFIG__MODULE__BMP
#define WUFFS_CONFIG__MODULE__GIF
#define WUFFS_CONFIG__MODULE__LZW
#include "wuffs-unsupported-snapshot.c"

#include "webp/decode.h"
#include "webp/demux.h"

static char reason_text[160];

/* "<what><detail>" into the static reason buffer. */
static const char *reason(const char *what, const char *detail) {
    size_t a = strlen(what), b = detail ? strlen(detail) : 0;
    if (a > sizeof reason_text - 1) a = sizeof reason_text - 1;
    if (a + b > sizeof reason_text - 1) b = sizeof reason_text - 1 - a;
    memcpy(reason_text, what, a);
    if (b) memcpy(reason_text + a, detail, b);
    reason_text[a + b] = 0;
    return reason_text;
}

/* "image too large: W x H pixels exceeds the limit of N pixels", as the PNG decoder says it. */
static const char *too_large(uint64_t w, uint64_t h, uint64_t limit) {
    char num[3][24]; /* no printf in the module: digits by hand */
    uint64_t v[3] = {w, h, limit};
    for (int k = 0; k < 3; k++) {
        char tmp[24];
        int n = 0;
        do { tmp[n++] = (char)('0' + v[k] % 10); v[k] /= 10; } while (v[k] && n < 23);
        for (int i = 0; i < n; i++) num[k][i] = tmp[n - 1 - i];
        num[k][n] = 0;
    }
    size_t at = 0;
    const char *parts[] = {"image too large: ", num[0], " x ", num[1], " pixels exceeds the limit of ", num[2],
                           " pixels"};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        size_t n = strlen(parts[i]);
        if (at + n >= sizeof reason_text) break;
        memcpy(reason_text + at, parts[i], n);
        at += n;
    }
    reason_text[at] = 0;
    return reason_text;
}

const char *waft_formats_sniff(const uint8_t *d, size_t n) {
    if (n >= 2 && d[0] == 'B' && d[1] == 'M') return "BMP";
    if (n >= 6 && (!memcmp(d, "GIF87a", 6) || !memcmp(d, "GIF89a", 6))) return "GIF";
    if (n >= 12 && !memcmp(d, "RIFF", 4) && !memcmp(d + 8, "WEBP", 4)) return "WebP";
    return NULL;
}

/* A Wuffs status as a reason: a short read on closed input is truncation; an error keeps Wuffs' text
 * without its "#pkg: " prefix. */
static const char *wuffs_reason(const char *fmt, wuffs_base__status st) {
    char what[32];
    size_t n = strlen(fmt);
    if (st.repr == wuffs_base__suspension__short_read || st.repr == wuffs_base__note__end_of_data ||
        (st.repr && strstr(st.repr, ": truncated input"))) {
        memcpy(what, "truncated ", 10);
        memcpy(what + 10, fmt, n + 1);
        return reason(what, NULL);
    }
    const char *msg = st.repr ? st.repr : "unknown error";
    const char *colon = strchr(msg, ':');
    if ((msg[0] == '#' || msg[0] == '$' || msg[0] == '@') && colon && colon[1] == ' ') msg = colon + 2;
    memcpy(what, "bad ", 4);
    memcpy(what + 4, fmt, n);
    memcpy(what + 4 + n, " data: ", 8);
    return reason(what, msg);
}

/* What Wuffs does not tell: the first frame's transparent index (its Graphic Control Extension) and the
 * colour table entry behind it. Wuffs zeroes that palette entry (transparent black); Pillow's convert("RGB")
 * of the "P" frame shows the table's colour, and fills what the frame does not cover with that index.
 * Parsed from the file itself (before the frame is decoded; Wuffs has checked the header); every read is
 * bounds-checked, and a file that is not what it seems just gets no transparency. */
static void gif_transparency(const uint8_t *d, size_t n, int *has, uint8_t *index, uint8_t rgb[3]) {
    size_t pos = 13, table = 0, entries = 0;
    *has = 0;
    if (n < 13) return;
    if (d[10] & 0x80) {
        table = 13;
        entries = (size_t)2 << (d[10] & 7);
        pos += 3 * entries;
    }
    while (pos < n) {
        if (d[pos] == 0x21 && pos + 1 < n) { /* extension: label, then sub-blocks */
            if (d[pos + 1] == 0xF9 && pos + 6 < n && d[pos + 2] == 4) {
                *has = d[pos + 3] & 1;
                *index = d[pos + 6];
            }
            pos += 2;
            while (pos < n && d[pos]) pos += (size_t)d[pos] + 1;
            pos++;
        } else if (d[pos] == 0x2C && pos + 9 < n) { /* the first image descriptor */
            if (d[pos + 9] & 0x80) {
                table = pos + 10;
                entries = (size_t)2 << (d[pos + 9] & 7);
            }
            break;
        } else {
            *has = 0;
            return;
        }
    }
    if (*has && table && *index < entries && table + 3 * (size_t)*index + 3 <= n)
        memcpy(rgb, d + table + 3 * (size_t)*index, 3);
    else
        rgb[0] = rgb[1] = rgb[2] = 0;
}

static const char *decode_wuffs(const char *fmt, const uint8_t *data, size_t len, uint64_t max_pixels,
                                waft_image *img) {
    int gif = fmt[0] == 'G';
    wuffs_base__image_decoder *dec = gif ? wuffs_gif__decoder__alloc_as__wuffs_base__image_decoder()
                                         : wuffs_bmp__decoder__alloc_as__wuffs_base__image_decoder();
    if (!dec) return "out of memory for the decoder";
    const char *err = NULL;
    uint8_t *rgba = NULL, *work = NULL;
    wuffs_base__io_buffer src = wuffs_base__ptr_u8__reader((uint8_t *)data, len, true);
    wuffs_base__image_config ic;
    wuffs_base__status st = wuffs_base__image_decoder__decode_image_config(dec, &ic, &src);
    if (st.repr) {
        err = wuffs_reason(fmt, st);
        goto done;
    }
    uint32_t w = wuffs_base__pixel_config__width(&ic.pixcfg), h = wuffs_base__pixel_config__height(&ic.pixcfg);
    uint64_t pixels = (uint64_t)w * h;
    if (!pixels) {
        err = reason(fmt, " has no pixels");
        goto done;
    }
    if (pixels > max_pixels || pixels > (SIZE_MAX / 8)) {
        err = too_large(w, h, max_pixels);
        goto done;
    }
    /* BMP: decode to non-premultiplied RGBA and drop alpha, what convert("RGB") does (an RGB destination
     * would composite alpha onto black). GIF: to palette indices (1024 bytes of palette first), looked up
     * below as Pillow looks up its "P" frame. */
    wuffs_base__pixel_config__set(&ic.pixcfg, gif ? WUFFS_BASE__PIXEL_FORMAT__INDEXED__BGRA_BINARY
                                                  : WUFFS_BASE__PIXEL_FORMAT__RGBA_NONPREMUL,
                                  WUFFS_BASE__PIXEL_SUBSAMPLING__NONE, w, h);
    uint64_t wlen = wuffs_base__image_decoder__workbuf_len(dec).max_incl;
    if (wlen > pixels * 4 + (1u << 20)) {
        err = reason(fmt, " needs an unbounded work buffer");
        goto done;
    }
    size_t nbytes = gif ? 1024 + (size_t)pixels : (size_t)pixels * 4;
    rgba = malloc(nbytes);
    work = wlen ? malloc((size_t)wlen) : NULL;
    if (!rgba || (wlen && !work)) {
        err = "out of memory while decoding";
        goto done;
    }
    /* What a GIF frame smaller than its screen leaves uncovered is index 0, or the transparent index. */
    int has_t = 0;
    uint8_t t_index = 0, t_rgb[3] = {0, 0, 0};
    if (gif) gif_transparency(data, len, &has_t, &t_index, t_rgb);
    memset(rgba, has_t ? t_index : 0, nbytes);
    wuffs_base__pixel_buffer pb;
    st = wuffs_base__pixel_buffer__set_from_slice(&pb, &ic.pixcfg, wuffs_base__make_slice_u8(rgba, nbytes));
    if (st.repr) {
        err = wuffs_reason(fmt, st);
        goto done;
    }
    st = wuffs_base__image_decoder__decode_frame(dec, &pb, &src, WUFFS_BASE__PIXEL_BLEND__SRC,
                                                 wuffs_base__make_slice_u8(work, (size_t)wlen), NULL);
    if (st.repr) {
        err = wuffs_reason(fmt, st);
        goto done;
    }
    if (gif) {
        uint8_t pal[256][3];
        const uint8_t *bgra = rgba; /* the palette Wuffs wrote, BGRA */
        for (int i = 0; i < 256; i++) {
            pal[i][0] = bgra[4 * i + 2];
            pal[i][1] = bgra[4 * i + 1];
            pal[i][2] = bgra[4 * i];
        }
        if (has_t) memcpy(pal[t_index], t_rgb, 3);
        uint8_t *rgb = malloc((size_t)pixels * 3);
        if (!rgb) {
            err = "out of memory while decoding";
            goto done;
        }
        const uint8_t *idx = rgba + 1024;
        for (size_t i = 0; i < (size_t)pixels; i++) memcpy(rgb + 3 * i, pal[idx[i]], 3);
        img->pixels = rgb;
    } else {
        /* An RLE BMP's skipped pixels (deltas, an early end): Wuffs writes transparent black, Pillow leaves
         * index 0, i.e. palette entry 0. Decoded palette pixels are opaque, so alpha 0 marks them. */
        uint32_t info = len >= 18 ? (uint32_t)data[14] | (uint32_t)data[15] << 8 | (uint32_t)data[16] << 16 |
                                        (uint32_t)data[17] << 24 : 0;
        uint32_t compression = len >= 34 ? (uint32_t)data[30] | (uint32_t)data[31] << 8 : 0;
        size_t pal0 = 14 + (size_t)info;
        if ((compression == 1 || compression == 2) && info >= 40 && info <= 124 && pal0 + 3 <= len) {
            for (size_t i = 0; i < (size_t)pixels; i++)
                if (!rgba[4 * i + 3]) {
                    rgba[4 * i] = data[pal0 + 2];
                    rgba[4 * i + 1] = data[pal0 + 1];
                    rgba[4 * i + 2] = data[pal0];
                }
        }
        for (size_t i = 0; i < (size_t)pixels; i++) { /* RGBA -> RGB in place */
            rgba[3 * i] = rgba[4 * i];
            rgba[3 * i + 1] = rgba[4 * i + 1];
            rgba[3 * i + 2] = rgba[4 * i + 2];
        }
        uint8_t *shrunk = realloc(rgba, (size_t)pixels * 3);
        img->pixels = shrunk ? shrunk : rgba;
        rgba = NULL;
    }
    img->width = w;
    img->height = h;
    img->channels = 3;
done:
    free(work);
    free(rgba);
    free(dec);
    return err;
}

static const char *webp_reason(VP8StatusCode code) {
    switch (code) {
    case VP8_STATUS_NOT_ENOUGH_DATA: return "truncated WebP";
    case VP8_STATUS_UNSUPPORTED_FEATURE: return "unsupported WebP feature";
    case VP8_STATUS_OUT_OF_MEMORY: return "out of memory while decoding WebP";
    case VP8_STATUS_INVALID_PARAM: return "bad WebP data: invalid parameter";
    default: return "bad WebP data";
    }
}

/* An animated WebP is its first frame as Pillow shows it: libwebp's animation decoder (which Pillow uses)
 * decodes frame 1 into a zeroed canvas without blending (the canvas background colour is only a hint),
 * and convert("RGB") drops alpha; so the frame's own RGB at its offset, black around it. The demuxer finds
 * the frame; its bitstream is decoded straight into the canvas, so memory stays 3 bytes a canvas pixel. */
static const char *first_frame(const uint8_t *data, size_t len, int canvas_w, int canvas_h, WebPDemuxer **demux,
                               WebPIterator *iter) {
    WebPData whole = {data, len};
    WebPDemuxState state;
    *demux = WebPDemuxPartial(&whole, &state);
    if (!*demux || state == WEBP_DEMUX_PARSE_ERROR) return "bad WebP data: animation";
    if (!WebPDemuxGetFrame(*demux, 1, iter)) return state == WEBP_DEMUX_DONE ? "animated WebP has no frames"
                                                                             : "truncated WebP";
    if (!iter->complete) return "truncated WebP";
    if (iter->x_offset < 0 || iter->y_offset < 0 || iter->width <= 0 || iter->height <= 0 ||
        iter->x_offset + iter->width > canvas_w || iter->y_offset + iter->height > canvas_h)
        return "bad WebP data: frame outside the canvas";
    WebPBitstreamFeatures ff;
    if (WebPGetFeatures(iter->fragment.bytes, iter->fragment.size, &ff) != VP8_STATUS_OK ||
        ff.width != iter->width || ff.height != iter->height)
        return "bad WebP data: frame size";
    return NULL;
}

static const char *decode_webp(const uint8_t *data, size_t len, uint64_t max_pixels, waft_image *img) {
    WebPBitstreamFeatures f;
    VP8StatusCode code = WebPGetFeatures(data, len, &f);
    if (code != VP8_STATUS_OK) return webp_reason(code);
    if (f.width <= 0 || f.height <= 0) return "WebP has no pixels";
    uint64_t pixels = (uint64_t)f.width * (uint64_t)f.height; /* an animation's canvas */
    if (pixels > max_pixels || pixels > (SIZE_MAX / 8))
        return too_large((uint64_t)f.width, (uint64_t)f.height, max_pixels);
    const uint8_t *bits = data;
    size_t nbits = len, offset = 0;
    WebPDemuxer *demux = NULL;
    WebPIterator iter;
    WebPDecoderConfig config;
    uint8_t *rgb = NULL;
    memset(&iter, 0, sizeof iter);
    size_t stride = (size_t)f.width * 3, nbytes = stride * (size_t)f.height;
    const char *err = NULL;
    if (f.has_animation) {
        err = first_frame(data, len, f.width, f.height, &demux, &iter);
        if (err) goto done;
        bits = iter.fragment.bytes;
        nbits = iter.fragment.size;
        offset = (size_t)iter.y_offset * stride + (size_t)iter.x_offset * 3;
    }
    /* calloc: what an animation's first frame does not cover is black */
    rgb = f.has_animation ? calloc(nbytes, 1) : malloc(nbytes);
    if (!rgb) {
        err = "out of memory while decoding";
        goto done;
    }
    /* The default options (fancy upsampling, no dithering), as Pillow's libwebp decode. */
    if (!WebPInitDecoderConfig(&config)) {
        free(rgb);
        err = "WebP decoder version mismatch";
        goto done;
    }
    config.output.colorspace = MODE_RGB;
    config.output.is_external_memory = 1;
    config.output.u.RGBA.rgba = rgb + offset;
    config.output.u.RGBA.stride = (int)stride;
    config.output.u.RGBA.size = nbytes - offset;
    code = WebPDecode(bits, nbits, &config);
    WebPFreeDecBuffer(&config.output);
    if (code != VP8_STATUS_OK) {
        free(rgb);
        err = webp_reason(code);
        goto done;
    }
    img->pixels = rgb;
    img->width = (uint32_t)f.width;
    img->height = (uint32_t)f.height;
    img->channels = 3;
done:
    if (demux) {
        WebPDemuxReleaseIterator(&iter);
        WebPDemuxDelete(demux);
    }
    return err;
}

const char *waft_formats_decode(const uint8_t *data, size_t len, uint64_t max_pixels, waft_image *img) {
    const char *fmt = waft_formats_sniff(data, len);
    memset(img, 0, sizeof *img);
    if (!fmt) return "unknown image format";
    if (fmt[0] == 'W') return decode_webp(data, len, max_pixels, img);
    return decode_wuffs(fmt, data, len, max_pixels, img);
}
