#include "waft_wapc.h"

#include <stdlib.h>
#include <string.h>

#include "waft_msgpack.h"

/* ---- imports from the host (wasmcloud-protocol §1.2); module `wapc` like pure waPC guests ---- */
#define WAPC_IMPORT(name) __attribute__((import_module("wapc"), import_name(name)))

WAPC_IMPORT("__guest_request") void wapc_guest_request(uint8_t *op_ptr, uint8_t *ptr);
WAPC_IMPORT("__guest_response") void wapc_guest_response(const uint8_t *ptr, size_t len);
WAPC_IMPORT("__guest_error") void wapc_guest_error(const uint8_t *ptr, size_t len);
WAPC_IMPORT("__host_call") int wapc_host_call(const uint8_t *bd_ptr, size_t bd_len, const uint8_t *ns_ptr,
                                              size_t ns_len, const uint8_t *op_ptr, size_t op_len,
                                              const uint8_t *ptr, size_t len);
WAPC_IMPORT("__host_response_len") size_t wapc_host_response_len(void);
WAPC_IMPORT("__host_response") void wapc_host_response(uint8_t *ptr);
WAPC_IMPORT("__host_error_len") size_t wapc_host_error_len(void);
WAPC_IMPORT("__host_error") void wapc_host_error(uint8_t *ptr);
WAPC_IMPORT("__console_log") void wapc_console_log(const uint8_t *ptr, size_t len);

typedef struct {
    const char *operation;
    size_t operation_len;
    waft_handler handler;
} registration;

static registration handlers[WAFT_MAX_HANDLERS];
static size_t handler_count;
static int initialised;

static int default_health(const uint8_t *req, size_t len, waft_buf *out) {
    (void)req;
    (void)len;
    waft_mp_write_map(out, 2);
    waft_mp_write_cstr(out, "healthy");
    waft_mp_write_bool(out, 1);
    waft_mp_write_cstr(out, "message");
    waft_mp_write_cstr(out, "ok");
    return WAFT_OK;
}

static void ensure_init(void) {
    if (initialised) return;
    initialised = 1; /* set first: a handler registering more handlers must not recurse */
    waft_register(WAFT_HEALTH_OPERATION, default_health);
    waft_actor_init();
}

int waft_register(const char *operation, waft_handler handler) {
    size_t len = strlen(operation);
    for (size_t i = 0; i < handler_count; i++) {
        if (handlers[i].operation_len == len && memcmp(handlers[i].operation, operation, len) == 0) {
            handlers[i].handler = handler;
            return WAFT_OK;
        }
    }
    if (handler_count == WAFT_MAX_HANDLERS) return WAFT_ERR;
    handlers[handler_count++] = (registration){operation, len, handler};
    return WAFT_OK;
}

static waft_handler lookup(const uint8_t *op, size_t len) {
    for (size_t i = 0; i < handler_count; i++)
        if (handlers[i].operation_len == len && memcmp(handlers[i].operation, op, len) == 0)
            return handlers[i].handler;
    return NULL;
}

int waft_fail(waft_buf *out, const char *message) {
    waft_buf_reset(out);
    waft_buf_append_str(out, message);
    return WAFT_ERR;
}

int waft_fail2(waft_buf *out, const char *message, const char *detail, size_t detail_len) {
    waft_fail(out, message);
    waft_buf_append(out, detail, detail_len);
    return WAFT_ERR;
}

static void guest_error_str(const char *text) {
    wapc_guest_error((const uint8_t *)text, strlen(text));
}

/* Exported so hosts that call `wapc_init` (OTP, wapc-rs) run the actor's init eagerly; idempotent. */
__attribute__((export_name("wapc_init"))) void wapc_init(void) { ensure_init(); }

__attribute__((export_name("__guest_call"))) int __guest_call(uint32_t op_len, uint32_t req_len) {
    ensure_init();
    /* op gets a NUL for free; req gets no +1 (a 1 MiB payload must not spill into the 2 MiB size
     * class) but at least 1 byte, since malloc(0) may return NULL. */
    uint8_t *op = malloc((size_t)op_len + 1);
    uint8_t *req = malloc(req_len ? req_len : 1);
    if (!op || !req) {
        free(op);
        free(req);
        guest_error_str("out of memory reading the request");
        return 0;
    }
    wapc_guest_request(op, req);
    op[op_len] = 0;

    int ok = 0;
    waft_handler handler = lookup(op, op_len);
    if (!handler) {
        waft_buf msg = WAFT_BUF_INIT;
        waft_buf_append_str(&msg, "No handler registered for function ");
        waft_buf_append(&msg, op, op_len);
        if (msg.failed) guest_error_str("No handler registered for function");
        else wapc_guest_error(msg.data, msg.len);
        waft_buf_free(&msg);
    } else {
        waft_buf out = WAFT_BUF_INIT;
        int rc = handler(req, req_len, &out);
        if (out.failed) {
            guest_error_str("out of memory building the response");
        } else if (rc == WAFT_OK) {
            wapc_guest_response(out.data, out.len);
            ok = 1;
        } else {
            wapc_guest_error(out.data, out.len);
        }
        waft_buf_free(&out);
    }
    free(op);
    free(req);
    return ok;
}

int waft_host_call(const char *binding, const char *namespace_, const char *operation,
                   const void *payload, size_t len, waft_buf *out) {
    waft_buf_reset(out);
    int rc = wapc_host_call((const uint8_t *)binding, strlen(binding), (const uint8_t *)namespace_,
                            strlen(namespace_), (const uint8_t *)operation, strlen(operation),
                            (const uint8_t *)payload, len);
    int ok = rc == 1;
    size_t n = ok ? wapc_host_response_len() : wapc_host_error_len();
    if (waft_buf_reserve(out, n + 1) != 0) {
        /* No room for the answer: `out->failed` tells the caller why there is no text. */
        return WAFT_ERR;
    }
    if (n) {
        if (ok) wapc_host_response(out->data);
        else wapc_host_error(out->data);
    }
    out->len = n;
    return ok ? WAFT_OK : WAFT_ERR;
}

static const struct {
    const char *prefix;
    waft_host_error_kind kind;
} HOST_ERROR_KINDS[] = {
    {"timeout: ", WAFT_HOST_TIMEOUT},   {"not_running: ", WAFT_HOST_NOT_RUNNING},
    {"not_linked: ", WAFT_HOST_NOT_LINKED}, {"denied: ", WAFT_HOST_DENIED},
    {"too_large: ", WAFT_HOST_TOO_LARGE}, {"failed: ", WAFT_HOST_FAILED},
};

waft_host_error_kind waft_host_error_parse(const waft_buf *err, waft_str *message) {
    if (err->failed) {
        *message = (waft_str){NULL, 0};
        return WAFT_HOST_FAILED;
    }
    waft_str text = {(const char *)err->data, err->len};
    for (size_t i = 0; i < sizeof HOST_ERROR_KINDS / sizeof HOST_ERROR_KINDS[0]; i++) {
        size_t n = strlen(HOST_ERROR_KINDS[i].prefix);
        if (text.len >= n && memcmp(text.ptr, HOST_ERROR_KINDS[i].prefix, n) == 0) {
            *message = (waft_str){text.ptr + n, text.len - n};
            return HOST_ERROR_KINDS[i].kind;
        }
    }
    *message = text;
    return WAFT_HOST_FAILED;
}

void waft_console_log(const char *text, size_t len) { wapc_console_log((const uint8_t *)text, len); }
