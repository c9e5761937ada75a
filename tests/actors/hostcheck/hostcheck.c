/* hostcheck: a test-only actor that pokes at the host's sandbox and the SDK's host-call paths.
 *
 * Each operation exercises one host guarantee: deadlines (Test.Loop), memory caps (Test.Alloc),
 * trap isolation (Test.Trap), host calls and their errors (Test.Call), builtin logging (Test.Log).
 * It is built and signed by actors/build.py like a real actor, but never deployed.
 */
#include <stdlib.h>
#include <string.h>

#include "waft.h"

static int op_echo(const uint8_t *req, size_t len, waft_buf *out) {
    waft_buf_append(out, req, len);
    return WAFT_OK;
}

/* volatile: every iteration has a side effect, so the loop is neither UB nor optimised away. */
static volatile uint32_t spin_counter;

static int op_loop(const uint8_t *req, size_t len, waft_buf *out) {
    (void)req;
    (void)len;
    (void)out;
    for (;;) spin_counter++;
}

#define MIB (1024u * 1024u)
#define PAGE 4096u

static int op_alloc(const uint8_t *req, size_t len, waft_buf *out) {
    if (len < 4) return waft_fail(out, "payload must be a u32 LE count of MiB");
    uint32_t mib = (uint32_t)req[0] | (uint32_t)req[1] << 8 | (uint32_t)req[2] << 16 | (uint32_t)req[3] << 24;
    if (mib > 4095) return waft_fail(out, "alloc failed");
    size_t size = (size_t)mib * MIB;
    /* volatile pointer: clang knows malloc and would elide an allocation whose stores are unused */
    volatile uint8_t *block = malloc(size ? size : 1);
    if (!block) return waft_fail(out, "alloc failed");
    for (size_t i = 0; i < size; i += PAGE) block[i] = (uint8_t)i;
    free((void *)block);
    waft_buf_append_str(out, "ok");
    return WAFT_OK;
}

static int op_trap(const uint8_t *req, size_t len, waft_buf *out) {
    (void)req;
    (void)len;
    (void)out;
    __builtin_trap();
}

/* Copy a str/bin view into a NUL-terminated string for waft_host_call. */
static char *dup_text(const char *s, uint32_t len) {
    char *copy = malloc((size_t)len + 1);
    if (copy) {
        memcpy(copy, s, len);
        copy[len] = 0;
    }
    return copy;
}

/* payload: msgpack {binding, namespace, operation, payload(bin)} */
static int op_call(const uint8_t *req, size_t len, waft_buf *out) {
    waft_mp_reader r;
    waft_mp_reader_init(&r, req, len);
    const char *fields[3] = {0};
    uint32_t lens[3] = {0};
    const uint8_t *payload = NULL;
    uint32_t payload_len = 0;
    uint32_t n = 0;
    if (waft_mp_read_map(&r, &n)) {
        for (uint32_t i = 0; i < n && !r.err; i++) {
            const char *key;
            uint32_t key_len;
            if (!waft_mp_read_str(&r, &key, &key_len)) break;
            int slot = waft_mp_key_is(key, key_len, "binding")     ? 0
                       : waft_mp_key_is(key, key_len, "namespace") ? 1
                       : waft_mp_key_is(key, key_len, "operation") ? 2
                                                                   : -1;
            if (slot >= 0) waft_mp_read_str(&r, &fields[slot], &lens[slot]);
            else if (waft_mp_key_is(key, key_len, "payload")) waft_mp_read_bytes(&r, &payload, &payload_len);
            else waft_mp_skip(&r);
        }
    }
    if (r.err) return waft_fail2(out, "invalid Test.Call request: ", r.err, strlen(r.err));

    char *binding = dup_text(fields[0] ? fields[0] : "", lens[0]);
    char *ns = dup_text(fields[1] ? fields[1] : "", lens[1]);
    char *op = dup_text(fields[2] ? fields[2] : "", lens[2]);
    int rc;
    if (!binding || !ns || !op) {
        rc = waft_fail(out, "out of memory");
    } else {
        waft_buf answer = WAFT_BUF_INIT;
        if (waft_host_call(binding, ns, op, payload, payload_len, &answer) == WAFT_OK) {
            waft_buf_append(out, answer.data, answer.len);
            rc = WAFT_OK;
        } else {
            rc = waft_fail2(out, "host error: ", (const char *)answer.data, answer.len);
        }
        waft_buf_free(&answer);
    }
    free(binding);
    free(ns);
    free(op);
    return rc;
}

static int op_log(const uint8_t *req, size_t len, waft_buf *out) {
    waft_console_log((const char *)req, len);
    if (waft_log("info", (const char *)req, len) != WAFT_OK) return waft_fail(out, "log failed");
    waft_buf_append_str(out, "logged");
    return WAFT_OK;
}

static int op_http(const uint8_t *req, size_t len, waft_buf *out) {
    (void)req;
    (void)len;
    return waft_http_respond(out, 200, "text/plain", "hostcheck", 9);
}

/* SDK pieces no operation above reaches (base64 decode, float and integer edges), rendered as text
 * for test_hostcheck_actor.py to compare with Python's answers. */
static int op_sdk_self_check(const uint8_t *req, size_t len, waft_buf *out) {
    (void)req;
    (void)len;
    waft_buf tmp = WAFT_BUF_INIT;
    static const char *b64[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg", "AP8A", "Z", "Zm9v!"};
    for (size_t i = 0; i < sizeof b64 / sizeof *b64; i++) {
        waft_buf_reset(&tmp);
        if (waft_base64_decode(&tmp, b64[i], strlen(b64[i])) != 0) {
            waft_buf_append_str(out, "bad ");
            continue;
        }
        waft_base64_encode(out, tmp.data, tmp.len); /* re-encode: compare with Python */
        waft_buf_push(out, ' ');
    }
    waft_buf_push(out, '\n');
    waft_json j;
    waft_json_init(&j, out);
    waft_json_array_begin(&j);
    waft_json_f32(&j, 0.71f);
    waft_json_f32(&j, 1e-7f);
    waft_json_f64(&j, 0.1);
    waft_json_f64(&j, 1.0 / 3.0);
    waft_json_i64(&j, INT64_MIN);
    waft_json_u64(&j, UINT64_MAX);
    waft_json_f64(&j, 1.0 / 0.0);
    waft_json_bool(&j, 0);
    waft_json_null(&j);
    waft_json_array_end(&j);
    waft_buf_push(out, '\n');
    static const int64_t ints[] = {0, -1, -32, -33, -128, -129, -32768, -32769, INT32_MIN,
                                   (int64_t)INT32_MIN - 1, INT64_MIN, INT64_MAX, 127, 128, 65535, 65536};
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) {
        waft_buf_reset(&tmp);
        waft_mp_write_i64(&tmp, ints[i]);
        waft_mp_reader r;
        waft_mp_reader_init(&r, tmp.data, tmp.len);
        int64_t v = 0;
        int ok = waft_mp_read_i64(&r, &v) && v == ints[i] && waft_mp_at_end(&r);
        waft_buf_push(out, ok ? '.' : 'F');
    }
    waft_buf_free(&tmp);
    return WAFT_OK;
}

void waft_actor_init(void) {
    waft_register("Test.SdkSelfCheck", op_sdk_self_check);
    waft_register("Test.Echo", op_echo);
    waft_register("Test.Loop", op_loop);
    waft_register("Test.Alloc", op_alloc);
    waft_register("Test.Trap", op_trap);
    waft_register("Test.Call", op_call);
    waft_register("Test.Log", op_log);
    waft_register(WAFT_HTTP_OPERATION, op_http);
}
