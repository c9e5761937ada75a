#include "waft_log.h"

#include <string.h>

#include "waft_msgpack.h"
#include "waft_wapc.h"

int waft_log(const char *level, const char *text, size_t len) {
    waft_buf msg = WAFT_BUF_INIT;
    waft_mp_write_map(&msg, 2);
    waft_mp_write_cstr(&msg, "level");
    waft_mp_write_cstr(&msg, level);
    waft_mp_write_cstr(&msg, "text");
    waft_mp_write_str(&msg, text, len);
    int rc = WAFT_ERR;
    if (!msg.failed) {
        waft_buf answer = WAFT_BUF_INIT;
        /* Builtins ignore the binding; "default" is the link name wasmbus-rpc sends. */
        rc = waft_host_call("default", WAFT_LOGGING_CONTRACT, WAFT_LOGGING_OPERATION, msg.data, msg.len,
                            &answer);
        waft_buf_free(&answer);
    }
    waft_buf_free(&msg);
    return rc;
}

int waft_log_debug(const char *text) { return waft_log("debug", text, strlen(text)); }
int waft_log_info(const char *text) { return waft_log("info", text, strlen(text)); }
int waft_log_warn(const char *text) { return waft_log("warn", text, strlen(text)); }
int waft_log_error(const char *text) { return waft_log("error", text, strlen(text)); }
