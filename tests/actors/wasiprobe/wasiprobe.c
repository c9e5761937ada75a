/* wasiprobe: a test-only actor that tries every WASI door an actor should find shut.
 *
 * Real actors are built in the reactor model with zero WASI imports; this one calls libc functions
 * that import `wasi_snapshot_preview1` (path_open, environ_get, clock_time_get, poll_oneoff,
 * sock_accept, ...) so that tests/limits/test_limits_wasi_lockdown.py can show the host refuses each.
 * Every operation answers one line of text: "ok ..." when the door opened, "refused errno=N" when not.
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "waft.h"

extern char **environ;

static int refused(waft_buf *out, int err) {
    char line[64];
    snprintf(line, sizeof line, "refused errno=%d", err);
    waft_buf_append_str(out, line);
    return WAFT_OK;
}

static int opened(waft_buf *out, const char *what) {
    waft_buf_append_str(out, "ok ");
    waft_buf_append_str(out, what);
    return WAFT_OK;
}

/* payload: a path; read it, else list it as a directory */
static int op_read_file(const uint8_t *req, size_t len, waft_buf *out) {
    char path[256];
    if (len >= sizeof path) return waft_fail(out, "path too long");
    memcpy(path, req, len);
    path[len] = 0;
    errno = 0;
    FILE *f = fopen(path, "r");
    if (f) {
        char data[64] = {0};
        size_t n = fread(data, 1, sizeof data - 1, f);
        fclose(f);
        data[n] = 0;
        return opened(out, data);
    }
    return refused(out, errno);
}

static int op_write_file(const uint8_t *req, size_t len, waft_buf *out) {
    char path[256];
    if (len >= sizeof path) return waft_fail(out, "path too long");
    memcpy(path, req, len);
    path[len] = 0;
    errno = 0;
    FILE *f = fopen(path, "w");
    if (f) {
        fputs("written by wasiprobe", f);
        fclose(f);
        return opened(out, path);
    }
    return refused(out, errno);
}

static int op_list_dir(const uint8_t *req, size_t len, waft_buf *out) {
    char path[256];
    if (len >= sizeof path) return waft_fail(out, "path too long");
    memcpy(path, req, len);
    path[len] = 0;
    errno = 0;
    DIR *d = opendir(path);
    if (d) {
        closedir(d);
        return opened(out, path);
    }
    return refused(out, errno);
}

/* payload: a variable name; also counts the whole environment */
static int op_getenv(const uint8_t *req, size_t len, waft_buf *out) {
    char name[128];
    if (len >= sizeof name) return waft_fail(out, "name too long");
    memcpy(name, req, len);
    name[len] = 0;
    int count = 0;
    for (char **e = environ; e && *e; e++) count++;
    const char *value = getenv(name);
    if (value || count) {
        char line[256];
        snprintf(line, sizeof line, "%d variables, %s=%s", count, name, value ? value : "(unset)");
        return opened(out, line);
    }
    return refused(out, ENOENT);
}

static int op_clock(const uint8_t *req, size_t len, waft_buf *out) {
    (void)req;
    (void)len;
    struct timespec ts = {0, 0};
    errno = 0;
    if (clock_gettime(CLOCK_REALTIME, &ts) == 0) {
        char line[64];
        snprintf(line, sizeof line, "realtime %lld", (long long)ts.tv_sec);
        return opened(out, line);
    }
    int err = errno;
    errno = 0;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) == 0) return opened(out, "monotonic");
    return refused(out, err);
}

/* sleeping is a clock too (poll_oneoff): a guest that could sleep in the host would hold its worker
 * thread past the epoch deadline, which only interrupts wasm code */
static int op_sleep(const uint8_t *req, size_t len, waft_buf *out) {
    (void)req;
    (void)len;
    struct timespec ts = {3600, 0};
    errno = 0;
    int rc = nanosleep(&ts, NULL);
    if (rc == 0) return opened(out, "slept");
    return refused(out, rc > 0 ? rc : errno);
}

/* WASI preview 1 has no socket() or connect(); the only network calls work on inherited sockets */
static int op_accept(const uint8_t *req, size_t len, waft_buf *out) {
    (void)req;
    (void)len;
    for (int fd = 3; fd < 16; fd++) {
        errno = 0;
        int conn = accept(fd, NULL, NULL);
        if (conn >= 0) return opened(out, "accepted");
        if (errno != EBADF && errno != ENOTSOCK) return refused(out, errno);
    }
    return refused(out, EBADF);
}

static int op_stdin(const uint8_t *req, size_t len, waft_buf *out) {
    (void)req;
    (void)len;
    char data[64];
    errno = 0;
    ssize_t n = read(0, data, sizeof data);
    if (n > 0) return opened(out, "read stdin");
    return refused(out, n == 0 ? 0 : errno);
}

void waft_actor_init(void) {
    waft_register("Probe.ReadFile", op_read_file);
    waft_register("Probe.WriteFile", op_write_file);
    waft_register("Probe.ListDir", op_list_dir);
    waft_register("Probe.Getenv", op_getenv);
    waft_register("Probe.Clock", op_clock);
    waft_register("Probe.Sleep", op_sleep);
    waft_register("Probe.Accept", op_accept);
    waft_register("Probe.Stdin", op_stdin);
}
