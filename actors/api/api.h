/* The API actor's private header: what its modules share (see api.c for the routes and the error rules).
 *
 *   api.c            routing: HttpRequest -> one route; the actor's init
 *   http_replies.c   HttpResponse writers: JSON replies, {"error", "detail"} errors, 404/405, ListModels and
 *                    InferenceOutput as JSON
 *   ml_calls.c       the calls behind the routes (pre-processor, MlInference, metadata with its cache), msgpack
 *                    field helpers, and how their failures map to HTTP (host errors, MlError variants)
 *   legacy_routes.c  the original's routes: /{model}, /{model}/preprocess, /{model}/matches, /{model}/mnist/matches,
 *                    /{model}/preprocess/rgb8, /{model}/matches/rgb8; /models, /healthz
 *   kserve_v2.c      KServe v2 / Open Inference Protocol under /v2
 * The mlinference wire itself (Status, Tensor, value types) is the SDK's (waft_ml.h).
 */
#ifndef API_H
#define API_H

#include <stddef.h>
#include <stdint.h>

#include "waft.h"

#define ML_CONTRACT "wasmcloud:mlinference"
#define ML_LINK "default"
#define PREPROCESSOR "waft/preprocessor"
#define POSTPROCESSOR "waft/postprocessor"

#define MAX_DIMS WAFT_ML_MAX_DIMS
#define MAX_JSON_BODY (32u << 20)  /* JSON is ~4x its tensor, and is copied ~3 times on the way: fits 256 MiB */

/* Run an error responder (which writes the HTTP error into `out`) and yield 0: "this step failed". */
#define FAIL(call) ((void)(call), 0)

/* ---- http_replies.c ---------------------------------------------------------------------------- */

/* An HttpResponse with a content type and at most one more header (xname NULL: none). */
int respond(waft_buf *out, uint16_t status, const char *ctype, const void *body, size_t len,
            const char *xname, const char *xvalue);
int respond_json(waft_buf *out, uint16_t status, waft_buf *body);
int http_error_n(waft_buf *out, uint16_t status, const char *error, const char *detail, size_t detail_len,
                 const char *allow);
int http_error(waft_buf *out, uint16_t status, const char *error, const char *detail);
/* Errors as the Open Inference Protocol writes them ({"error": "<what>: <why>", "code": "<what>"}) while
 * on: route_v2 turns it on, handle_request off for every other route ({"error": what, "detail": why}). */
void use_kserve_errors(int on);
int http_error_buf(waft_buf *out, uint16_t status, const char *error, waft_buf *detail);
int mp_to_json(waft_mp_reader *r, waft_json *j, int depth);
int respond_inference_output(waft_buf *out, const waft_ml_tensor *t);
int not_allowed(waft_buf *out, waft_str method, const char *allow);
int not_found(waft_buf *out, waft_str path);

static inline int is_method(waft_str m, const char *name) { return waft_str_ieq(m, name); }

/* Route guards for handle_request and route_v2 (which name their locals `method` and `out`). */
#define GET_ONLY(call) (is_method(method, "GET") ? (call) : not_allowed(out, method, "GET"))
#define INFER_ONLY(call) \
    (is_method(method, "PUT") || is_method(method, "POST") ? (call) : not_allowed(out, method, "PUT, POST"))

/* ---- ml_calls.c -------------------------------------------------------------------------------- */

typedef struct {
    const uint8_t *p; /* the metadata map: in the cache, or in `fresh` when it was not cached */
    size_t n;
    waft_buf fresh;
} metadata;

typedef struct {
    waft_buf answer;       /* the raw answer; spans below point into it */
    size_t tensor_s, tensor_e;
    size_t norm_s, norm_e; /* the pre-processor's deferred normalisation (norm_e == 0: none) */
    waft_ml_tensor tensor;
} call_result;

int mp_field(const uint8_t *m, size_t n, const char *key, size_t *start, size_t *end);
int mp_at(const uint8_t *m, size_t n, const char *key, waft_mp_reader *r);
int host_error(waft_buf *out, const char *what, const waft_buf *err);
int get_metadata(waft_str model, metadata *md, waft_buf *out);
/* As get_metadata, but asks the provider even when cached (and caches the answer): for routes that report
 * whether a model is there, which another instance's repository load or unload may have changed. */
int get_metadata_fresh(waft_str model, metadata *md, waft_buf *out);
void metadata_free(metadata *md);
/* Drop this instance's cached metadata of `model` (after the repository extension loaded or unloaded it). */
void metadata_forget(waft_str model);
waft_str meta_str(const metadata *md, const char *key);
int list_models(waft_buf *answer, waft_buf *out);
int predict(waft_str model, const uint8_t *tensor_mp, size_t tensor_len, const call_result *pre,
            call_result *c, waft_buf *out);
/* MlInference.Predict with an InferenceInput the caller encoded (the /v2 route names inputs and outputs). */
int predict_message(waft_str model, const waft_buf *req, call_result *c, waft_buf *out);
/* Which pixels a route feeds: the model's input spec (given or derived by the provider), or one of the
 * original's fixed forms: 28x28 grey digits (/mnist/...) and raw RGB8 HWC at the model's size (/rgb8). */
typedef enum { PIXELS_MODEL, PIXELS_MNIST, PIXELS_RGB8 } pixels_kind;
int preprocess(const metadata *md, const uint8_t *image, size_t len, waft_str model, pixels_kind kind,
               call_result *c, waft_buf *out);

/* ---- legacy_routes.c --------------------------------------------------------------------------- */

int route_tensor(waft_str model, const waft_http_request *req, waft_buf *out);
int route_preprocess(waft_str model, const waft_http_request *req, pixels_kind kind, waft_buf *out);
int route_matches(waft_str model, const waft_http_request *req, pixels_kind kind, waft_buf *out);
int route_healthz(waft_buf *out);
int route_models(waft_buf *out);

/* ---- kserve_v2.c ------------------------------------------------------------------------------- */

/* seg[0] is "v2". */
int route_v2(waft_str *seg, int n, waft_str method, const waft_http_request *req, waft_str path, waft_buf *out);

#endif
