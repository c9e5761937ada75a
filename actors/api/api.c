/* The API actor: HTTP in, the ML pipeline behind it (`HttpServer.HandleRequest`).
 *
 * Routes (design README "The request path"; PUT and POST are both accepted for inference):
 *   PUT|POST /{model}              JSON Tensor in ({"dimensions":[1,4],"valueTypes":["ValueF32"],"flags":0,
 *                                  "data":[0,0,128,63,...]}) -> MlInference.Predict -> InferenceOutput JSON
 *   PUT|POST /{model}/preprocess   image -> pre-processor -> Predict -> InferenceOutput JSON
 *   PUT|POST /{model}/matches?k=N  image -> pre-processor -> Predict -> post-processor -> [{label, probability}]
 *   PUT|POST /{model}/mnist/matches  the same with 28x28 grey pixels (the original's digit route; no labels:
 *                                  the digit as a string)
 *   PUT|POST /{model}/preprocess/rgb8, /{model}/matches/rgb8  the same with raw u8 RGB HWC pixels at the
 *                                  model's size (the original's route for quantized TF Lite models)
 *   GET /models                    MlInference.ListModels as JSON
 *   GET /healthz                   {"status":"ok"}
 *   KServe v2 / Open Inference Protocol (kserve_v2.c): GET /v2 (the package version, the extensions),
 *   /v2/health/live, /v2/health/ready, /v2/models/{m}, /v2/models/{m}/ready, /v2/models/{m}/config (Triton's
 *   model configuration), /v2/models/{m}/stats (Triton's statistics: counts and ns kept by the provider);
 *   POST /v2/models/{m}/infer (named inputs and outputs, binary tensor data both ways, classification);
 *   POST /v2/repository/index, /v2/repository/models/{m}/load|unload; `/versions/1` after the model name
 *   (each model has one version; another is 404). Errors under /v2 are the protocol's
 *   {"error": "<what>: <why>", "code": "<what>"}.
 * `healthz`, `models` and `v2` are therefore not usable as model names over HTTP, nor `stats` under /v2
 * (GET /v2/models/stats is every model's statistics).
 *
 * Errors are JSON {"error": "<what>", "detail": "<why>"} (design: Conventions): 400 bad tensor JSON or
 * undecodable image, 404 unknown model (the detail says how to install it) or route (the original answered
 * 500 `----N/A-----`), 405 wrong method (with Allow), 413 too large (the body, or an image's bytes; an image
 * whose header declares more pixels than the spec's max_pixels is a 400 "image too large"), 429 overloaded
 * and 503 still loading / part not running (with Retry-After), 504 a host-call timeout, 500 only for what
 * should not happen. A failed host call is mapped by the kind the host names, never by its text (ml_calls.c
 * host_error: 504 timeout, 503 not running or not linked, 403 denied, 413 too large, 500 failed). Every
 * HTTP outcome is an HttpResponse; only an undecodable HttpRequest is a guest error.
 *
 * Models' input specs and labels come from MlInference.GetMetadata, cached per model (ml_calls.c).
 * The modules are listed in api.h.
 */
#include "api.h"

#define MAX_SEGMENTS 8

static int handle_request(const uint8_t *payload, size_t len, waft_buf *out) {
    waft_http_request req;
    if (waft_http_request_decode(payload, len, &req, out) != WAFT_OK) return WAFT_ERR;
    waft_str method = req.method;
    waft_str path = req.path;
    use_kserve_errors(0); /* the instance persists between requests: route_v2 turns it on for its own */
    /* Some hosts leave the query on the path: the query string has its own field. */
    for (size_t i = 0; i < path.len; i++)
        if (path.ptr[i] == '?') path.len = i;
    /* The original's parsing: drop the leading '/', trim trailing '/', split on '/'. */
    waft_str seg[MAX_SEGMENTS];
    int n = 0, too_many = 0, empty = 0;
    size_t i = 0;
    while (i < path.len && path.ptr[i] == '/') i++;
    size_t end = path.len;
    while (end > i && path.ptr[end - 1] == '/') end--;
    while (i < end) {
        size_t s = i;
        while (i < end && path.ptr[i] != '/') i++;
        if (i == s) empty = 1;
        if (n < MAX_SEGMENTS) seg[n++] = (waft_str){path.ptr + s, i - s};
        else too_many = 1;
        if (i < end) i++; /* the '/' */
    }
    int rc;
    if (too_many || empty || n == 0) rc = not_found(out, path);
    else if (waft_str_eq(seg[0], "v2")) rc = route_v2(seg, n, method, &req, path, out);
    else if (n == 1 && waft_str_eq(seg[0], "healthz")) rc = GET_ONLY(route_healthz(out));
    else if (n == 1 && waft_str_eq(seg[0], "models")) rc = GET_ONLY(route_models(out));
    else if (n == 1) rc = INFER_ONLY(route_tensor(seg[0], &req, out));
    else if (n == 2 && waft_str_eq(seg[1], "preprocess"))
        rc = INFER_ONLY(route_preprocess(seg[0], &req, PIXELS_MODEL, out));
    else if (n == 2 && waft_str_eq(seg[1], "matches")) rc = INFER_ONLY(route_matches(seg[0], &req, PIXELS_MODEL, out));
    else if (n == 3 && waft_str_eq(seg[1], "mnist") && waft_str_eq(seg[2], "matches"))
        rc = INFER_ONLY(route_matches(seg[0], &req, PIXELS_MNIST, out));
    else if (n == 3 && waft_str_eq(seg[1], "preprocess") && waft_str_eq(seg[2], "rgb8"))
        rc = INFER_ONLY(route_preprocess(seg[0], &req, PIXELS_RGB8, out));
    else if (n == 3 && waft_str_eq(seg[1], "matches") && waft_str_eq(seg[2], "rgb8"))
        rc = INFER_ONLY(route_matches(seg[0], &req, PIXELS_RGB8, out));
    else rc = not_found(out, path);
    waft_http_request_free(&req);
    return rc;
}

void waft_actor_init(void) { waft_register(WAFT_HTTP_OPERATION, handle_request); } /* health: the SDK's */

