/* waPC guest glue: the `wapc` imports, the `__guest_call` export and an operation table.
 *
 * An actor defines `waft_actor_init()` and registers one handler per operation in it:
 *
 *     static int echo(const uint8_t *req, size_t len, waft_buf *out) { ... return WAFT_OK; }
 *     void waft_actor_init(void) { waft_register("HttpServer.HandleRequest", echo); }
 *
 * The SDK calls waft_actor_init once, before the first dispatch (not from `_initialize`), because
 * hosts disagree on which init export they call: wasmtime-based hosts call `_initialize`, the OTP
 * host calls `start`/`wapc_init`, wapc-rs calls `_start`/`wapc_init`. Lazy init works with all.
 */
#ifndef WAFT_WAPC_H
#define WAFT_WAPC_H

#include <stddef.h>
#include <stdint.h>

#include "waft_buf.h"
#include "waft_str.h"

#define WAFT_OK 0
#define WAFT_ERR 1

/* Most operations one actor can register; a fixed table keeps dispatch allocation-free. */
#define WAFT_MAX_HANDLERS 32

/* A handler gets the request payload (valid only during the call) and an empty `out` buffer.
 * On success it writes the response into `out` and returns WAFT_OK; on failure it writes a
 * human-readable message into `out` (see waft_fail) and returns WAFT_ERR: the host receives that
 * message as the guest error. If `out` ran out of memory, the SDK reports that instead. */
typedef int (*waft_handler)(const uint8_t *req, size_t len, waft_buf *out);

/* wasmCloud's actor health check. The SDK answers it for every actor with msgpack
 * {healthy: true, message: "ok"} (registered before waft_actor_init, which may replace it). */
#define WAFT_HEALTH_OPERATION "Actor.HealthRequest"

/* Defined by the actor. */
void waft_actor_init(void);

/* Register `handler` for `operation` (a string literal: the table keeps the pointer).
 * Returns WAFT_OK, or WAFT_ERR when the table is full. Re-registering replaces the handler. */
int waft_register(const char *operation, waft_handler handler);

/* Replace the contents of `out` with `message` and return WAFT_ERR: `return waft_fail(out, "...")`. */
int waft_fail(waft_buf *out, const char *message);
/* Same with a detail appended (for example a decoder's error), without needing printf. */
int waft_fail2(waft_buf *out, const char *message, const char *detail, size_t detail_len);

/* Call the host: a capability provider (binding = link name, namespace = contract id), another actor
 * (binding "", namespace = its public key or call alias) or a builtin. On WAFT_OK `out` holds the
 * response; on WAFT_ERR `out` holds the host's error text (or `out->failed` is set when the answer
 * did not fit in memory). `out` is reset first. */
int waft_host_call(const char *binding, const char *namespace_, const char *operation,
                   const void *payload, size_t len, waft_buf *out);

/* What a failed waft_host_call was. Waft's host writes its error text as "<kind>: <message>"
 * (kinds as in waft.host.wapc.HOST_ERROR_KINDS), so callers map kinds, never sentences. */
typedef enum {
    WAFT_HOST_FAILED,      /* "failed", or a text that names no kind (another host's plain sentence) */
    WAFT_HOST_TIMEOUT,     /* "timeout": the target did not answer in time */
    WAFT_HOST_NOT_RUNNING, /* "not_running": nothing serves the target */
    WAFT_HOST_NOT_LINKED,  /* "not_linked": no link definition for the contract */
    WAFT_HOST_DENIED,      /* "denied": a capability claim is missing */
    WAFT_HOST_TOO_LARGE,   /* "too_large": the payload cannot be carried */
} waft_host_error_kind;

/* The kind of the error text a failed waft_host_call left in `err`, and its message without the kind
 * prefix (the whole text when it names none). When `err->failed` (no text: it did not fit in memory)
 * the kind is WAFT_HOST_FAILED and `message->ptr` is NULL. */
waft_host_error_kind waft_host_error_parse(const waft_buf *err, waft_str *message);

/* One line to the host's console log (`__console_log`); no capability claim needed. */
void waft_console_log(const char *text, size_t len);

#endif
