/* The wasmcloud:mlinference wire that actors share (docs/interfaces.md; in Python the single source is
 * waft.interfaces.mlinference): value types, Status and Tensor.
 *
 *   Status  nil | "Success" | {"success": nil} | {"error": {variant: message}}  (serde's capitalised keys too)
 *   Tensor  {dimensions: [u32], valueTypes: [name] (or a bare name), flags: u8 (1 column-major,
 *            2 big-endian), data: bytes (little-endian elements unless flag 2)}
 *
 * The readers return views into the payload (valid while it is) and record schema errors in the
 * msgpack reader, like every SDK decoder; what a caller cannot use (a type it does not serve, too many
 * dimensions) is for the caller to judge from what was read.
 */
#ifndef WAFT_ML_H
#define WAFT_ML_H

#include <stddef.h>
#include <stdint.h>

#include "waft_buf.h"
#include "waft_msgpack.h"
#include "waft_str.h"

/* Most dimensions (and valueTypes) a tensor keeps; far beyond any model's rank, bounds fixed arrays. */
#define WAFT_ML_MAX_DIMS 16u

typedef struct {
    const char *wire;   /* the canonical name (ValueF32) */
    const char *kserve; /* Open Inference Protocol datatype (FP32) */
    const char *alias;  /* the original smithy's signed spelling (ValueS8), or NULL */
    uint8_t size;       /* bytes per element */
    char kind;          /* 'u' unsigned, 'i' signed, 'f' float, 'b' bool */
} waft_ml_vtype;

/* Any spelling the Python side accepts: ValueF32, valueF32, F32, f32, ValueS8, bool. NULL if unknown. */
const waft_ml_vtype *waft_ml_vtype_by_name(waft_str name);
/* By Open Inference Protocol datatype (exact: "FP32"). NULL if unknown. */
const waft_ml_vtype *waft_ml_vtype_by_kserve(waft_str name);
/* IEEE half -> float, exactly (subnormals, infinities and NaN included); no F16C on wasm. */
float waft_ml_half_to_float(uint16_t h);

typedef struct {
    int is_error;
    waft_str variant, message; /* when is_error; message is empty when the wire's was not a string */
} waft_ml_status;

/* One Status; 1, or 0 with the reason in r->err. */
int waft_ml_read_status(waft_mp_reader *r, waft_ml_status *st);

typedef struct {
    uint32_t dims[WAFT_ML_MAX_DIMS];
    uint32_t n_dims;         /* dimensions kept: at most WAFT_ML_MAX_DIMS */
    uint32_t dims_declared;  /* dimensions on the wire */
    waft_str types[WAFT_ML_MAX_DIMS];
    uint32_t n_types;        /* valueTypes kept: at most WAFT_ML_MAX_DIMS */
    uint32_t types_declared; /* valueTypes on the wire */
    uint64_t flags;
    const uint8_t *data;
    uint32_t data_len;
} waft_ml_tensor;

/* One Tensor (unknown keys skipped); 1, or 0 with the reason in r->err. */
int waft_ml_read_tensor(waft_mp_reader *r, waft_ml_tensor *t);

/* Append a Tensor map {dimensions, valueTypes: [value_type] ([] when NULL), flags, data}. */
void waft_ml_write_tensor(waft_buf *b, const uint32_t *dims, uint32_t n_dims, const char *value_type,
                          uint64_t flags, const void *data, size_t len);

#endif
