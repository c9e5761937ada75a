/* Logging through the host.
 *
 * waft_log goes through the `wasmcloud:builtin:logging` builtin (op `Logging.WriteLog`, msgpack
 * {level, text}), which is how wasmCloud actors log: the host attributes the line to the actor and
 * filters by level, but the actor must claim the capability. waft_console_log (waft_wapc.h) needs no
 * claim and is the fallback for actors that do not.
 */
#ifndef WAFT_LOG_H
#define WAFT_LOG_H

#include <stddef.h>

#define WAFT_LOGGING_CONTRACT "wasmcloud:builtin:logging"
#define WAFT_LOGGING_OPERATION "Logging.WriteLog"

/* `level` is "debug", "info", "warn" or "error". Returns WAFT_OK or WAFT_ERR (host refused it, for
 * instance because the actor lacks the claim): callers usually ignore it, logging must not fail a
 * request. */
int waft_log(const char *level, const char *text, size_t len);
int waft_log_debug(const char *text);
int waft_log_info(const char *text);
int waft_log_warn(const char *text);
int waft_log_error(const char *text);

#endif
