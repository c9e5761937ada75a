#include "waft_ml.h"

#include <string.h>

static const waft_ml_vtype VTYPES[] = {
    {"ValueU8", "UINT8", NULL, 1, 'u'},    {"ValueI8", "INT8", "ValueS8", 1, 'i'},
    {"ValueU16", "UINT16", NULL, 2, 'u'},  {"ValueI16", "INT16", "ValueS16", 2, 'i'},
    {"ValueU32", "UINT32", NULL, 4, 'u'},  {"ValueI32", "INT32", "ValueS32", 4, 'i'},
    {"ValueU64", "UINT64", NULL, 8, 'u'},  {"ValueI64", "INT64", "ValueS64", 8, 'i'},
    {"ValueF16", "FP16", NULL, 2, 'f'},    {"ValueF32", "FP32", NULL, 4, 'f'},
    {"ValueF64", "FP64", NULL, 8, 'f'},    {"ValueBool", "BOOL", NULL, 1, 'b'},
};
#define N_VTYPES (sizeof VTYPES / sizeof VTYPES[0])

const waft_ml_vtype *waft_ml_vtype_by_name(waft_str v) {
    if (v.len >= 5 && waft_str_ieq((waft_str){v.ptr, 5}, "value")) {
        v.ptr += 5;
        v.len -= 5;
    }
    for (size_t i = 0; i < N_VTYPES; i++) {
        const waft_ml_vtype *t = &VTYPES[i];
        if (waft_str_ieq(v, t->wire + 5) || (t->alias && waft_str_ieq(v, t->alias + 5))) return t;
    }
    return NULL;
}

const waft_ml_vtype *waft_ml_vtype_by_kserve(waft_str v) {
    for (size_t i = 0; i < N_VTYPES; i++)
        if (waft_str_eq(v, VTYPES[i].kserve)) return &VTYPES[i];
    return NULL;
}

float waft_ml_half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, mant = h & 0x3ffu, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13); /* inf or NaN (payload kept) */
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (mant << 13); /* rebias 15 -> 127 */
    } else if (mant == 0) {
        bits = sign; /* signed zero */
    } else {
        /* subnormal: mant * 2^-24 is exact in float */
        float f = (float)mant * 5.9604644775390625e-8f;
        return sign ? -f : f;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

int waft_ml_read_status(waft_mp_reader *r, waft_ml_status *st) {
    memset(st, 0, sizeof *st);
    waft_mp_type t = waft_mp_peek(r);
    if (t == WAFT_MP_NIL) return waft_mp_read_nil(r);
    if (t == WAFT_MP_STR) {
        const char *s;
        uint32_t n;
        waft_mp_read_str(r, &s, &n);
        if (!waft_str_ieq((waft_str){s, n}, "success")) waft_mp_fail(r, "result must be a Status");
        return !r->err;
    }
    uint32_t n;
    if (!waft_mp_read_map(r, &n)) return 0;
    for (uint32_t i = 0; i < n && !r->err; i++) {
        const char *k;
        uint32_t kl;
        if (!waft_mp_read_str(r, &k, &kl)) return 0;
        if (waft_str_ieq((waft_str){k, kl}, "error")) {
            uint32_t m;
            if (!waft_mp_read_map(r, &m)) return 0;
            if (m != 1) return waft_mp_fail(r, "result.error must hold one variant");
            const uint8_t *v, *msg;
            uint32_t vl, ml = 0;
            if (!waft_mp_read_bytes(r, &v, &vl)) return 0;
            st->is_error = 1;
            st->variant = (waft_str){(const char *)v, vl};
            if (waft_mp_peek(r) == WAFT_MP_STR || waft_mp_peek(r) == WAFT_MP_BIN) {
                if (!waft_mp_read_bytes(r, &msg, &ml)) return 0;
                st->message = (waft_str){(const char *)msg, ml};
            } else {
                waft_mp_skip(r); /* a non-string message: keep the variant, drop the text */
            }
        } else {
            waft_mp_skip(r); /* "success": nil, or a key from the future */
        }
    }
    return !r->err;
}

int waft_ml_read_tensor(waft_mp_reader *r, waft_ml_tensor *t) {
    uint32_t n;
    memset(t, 0, sizeof *t);
    if (!waft_mp_read_map(r, &n)) return 0;
    for (uint32_t i = 0; i < n && !r->err; i++) {
        const char *k;
        uint32_t kl;
        if (!waft_mp_read_str(r, &k, &kl)) break;
        if (waft_mp_key_is(k, kl, "dimensions")) {
            uint32_t cnt;
            if (!waft_mp_read_array(r, &cnt)) break;
            for (uint32_t d = 0; d < cnt && !r->err; d++) {
                uint32_t v;
                if (!waft_mp_read_u32(r, &v)) break;
                if (d < WAFT_ML_MAX_DIMS) t->dims[d] = v;
            }
            t->dims_declared = cnt;
            t->n_dims = cnt < WAFT_ML_MAX_DIMS ? cnt : WAFT_ML_MAX_DIMS;
        } else if (waft_mp_key_is(k, kl, "valueTypes")) {
            /* A list of names (one, or one per dimension), or a bare name as some clients send. */
            uint32_t cnt = 1;
            if (waft_mp_peek(r) != WAFT_MP_STR && !waft_mp_read_array(r, &cnt)) break;
            for (uint32_t v = 0; v < cnt && !r->err; v++) {
                const char *s;
                uint32_t sl;
                if (!waft_mp_read_str(r, &s, &sl)) break;
                if (v < WAFT_ML_MAX_DIMS) t->types[v] = (waft_str){s, sl};
            }
            t->types_declared = cnt;
            t->n_types = cnt < WAFT_ML_MAX_DIMS ? cnt : WAFT_ML_MAX_DIMS;
        } else if (waft_mp_key_is(k, kl, "flags")) {
            if (waft_mp_peek(r) == WAFT_MP_NIL) waft_mp_read_nil(r);
            else waft_mp_read_u64(r, &t->flags);
        } else if (waft_mp_key_is(k, kl, "data")) {
            waft_mp_read_bytes(r, &t->data, &t->data_len);
        } else {
            waft_mp_skip(r);
        }
    }
    return !r->err;
}

void waft_ml_write_tensor(waft_buf *b, const uint32_t *dims, uint32_t n_dims, const char *value_type,
                          uint64_t flags, const void *data, size_t len) {
    waft_mp_write_map(b, 4);
    waft_mp_write_cstr(b, "dimensions");
    waft_mp_write_array(b, n_dims);
    for (uint32_t i = 0; i < n_dims; i++) waft_mp_write_u64(b, dims[i]);
    waft_mp_write_cstr(b, "valueTypes");
    waft_mp_write_array(b, value_type ? 1 : 0);
    if (value_type) waft_mp_write_cstr(b, value_type);
    waft_mp_write_cstr(b, "flags");
    waft_mp_write_u64(b, flags);
    waft_mp_write_cstr(b, "data");
    waft_mp_write_bin(b, data, len);
}
