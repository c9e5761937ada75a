#include "jsonread.h"

#include <stdlib.h>
#include <string.h>

/* Longest number literal accepted: strtod needs a NUL-terminated copy on the (64 KiB) stack, and no
 * honest float needs more digits than this to be exact. */
#define JR_MAX_NUMBER 400

void jr_init(jr *j, const void *text, size_t len) {
    j->s = text;
    j->n = len;
    j->pos = 0;
    j->err = NULL;
    j->err_pos = 0;
}

int jr_fail(jr *j, const char *msg) {
    if (!j->err) {
        j->err = msg;
        j->err_pos = j->pos;
    }
    return 0;
}

void jr_explain(const jr *j, const char *problem, const char *what, waft_buf *why) {
    if (problem) {
        waft_buf_append_str(why, problem);
    } else if (j->err) {
        waft_buf_append_str(why, what);
        waft_buf_append_str(why, ": ");
        waft_buf_append_str(why, j->err);
        waft_buf_append_str(why, " at byte ");
        waft_buf_append_u64(why, j->err_pos);
    }
}

static void skip_ws(jr *j) {
    while (j->pos < j->n) {
        char c = j->s[j->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        j->pos++;
    }
}

char jr_peek(jr *j) {
    if (j->err) return 0;
    skip_ws(j);
    return j->pos < j->n ? j->s[j->pos] : 0;
}

int jr_take(jr *j, char c) {
    if (jr_peek(j) != c || c == 0) return 0;
    j->pos++;
    return 1;
}

int jr_at_end(jr *j) {
    skip_ws(j);
    return j->pos >= j->n;
}

static int hex4(jr *j, uint32_t *out) {
    if (j->n - j->pos < 4) return jr_fail(j, "truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = j->s[j->pos++];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (uint32_t)(c - 'A' + 10);
        else return jr_fail(j, "bad \\u escape");
    }
    *out = v;
    return 1;
}

static void put_utf8(waft_buf *out, uint32_t cp) {
    uint8_t b[4];
    size_t n;
    if (cp < 0x80) { b[0] = (uint8_t)cp; n = 1; }
    else if (cp < 0x800) { b[0] = (uint8_t)(0xc0 | cp >> 6); b[1] = (uint8_t)(0x80 | (cp & 0x3f)); n = 2; }
    else if (cp < 0x10000) {
        b[0] = (uint8_t)(0xe0 | cp >> 12); b[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
        b[2] = (uint8_t)(0x80 | (cp & 0x3f)); n = 3;
    } else {
        b[0] = (uint8_t)(0xf0 | cp >> 18); b[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
        b[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f)); b[3] = (uint8_t)(0x80 | (cp & 0x3f)); n = 4;
    }
    waft_buf_append(out, b, n);
}

int jr_string(jr *j, waft_buf *out) {
    if (!jr_take(j, '"')) return jr_fail(j, "string expected");
    for (;;) {
        size_t run = j->pos;
        while (run < j->n && j->s[run] != '"' && j->s[run] != '\\' && (unsigned char)j->s[run] >= 0x20) run++;
        waft_buf_append(out, j->s + j->pos, run - j->pos);
        j->pos = run;
        if (j->pos >= j->n) return jr_fail(j, "unterminated string");
        char c = j->s[j->pos++];
        if (c == '"') return 1;
        if (c != '\\') return jr_fail(j, "control character in string");
        if (j->pos >= j->n) return jr_fail(j, "unterminated string");
        c = j->s[j->pos++];
        switch (c) {
        case '"': waft_buf_push(out, '"'); break;
        case '\\': waft_buf_push(out, '\\'); break;
        case '/': waft_buf_push(out, '/'); break;
        case 'b': waft_buf_push(out, '\b'); break;
        case 'f': waft_buf_push(out, '\f'); break;
        case 'n': waft_buf_push(out, '\n'); break;
        case 'r': waft_buf_push(out, '\r'); break;
        case 't': waft_buf_push(out, '\t'); break;
        case 'u': {
            uint32_t cp, lo;
            if (!hex4(j, &cp)) return 0;
            if (cp >= 0xd800 && cp <= 0xdbff && j->n - j->pos >= 6 && j->s[j->pos] == '\\' &&
                j->s[j->pos + 1] == 'u') {
                size_t at = j->pos;
                j->pos += 2;
                if (!hex4(j, &lo)) return 0;
                if (lo >= 0xdc00 && lo <= 0xdfff) cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                else j->pos = at; /* not a pair: the lone high surrogate becomes U+FFFD below */
            }
            if (cp >= 0xd800 && cp <= 0xdfff) cp = 0xfffd; /* lone surrogates cannot be UTF-8 */
            put_utf8(out, cp);
            break;
        }
        default: return jr_fail(j, "bad escape in string");
        }
    }
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

int jr_number_text(jr *j, const char **text, size_t *len, int *is_integer) {
    char c = jr_peek(j);
    if (c != '-' && !is_digit(c)) return jr_fail(j, "number expected");
    size_t start = j->pos, p = j->pos;
    int integer = 1;
    if (p < j->n && j->s[p] == '-') p++;
    if (p >= j->n || !is_digit(j->s[p])) return jr_fail(j, "bad number");
    if (j->s[p] == '0') p++;
    else while (p < j->n && is_digit(j->s[p])) p++;
    if (p < j->n && j->s[p] == '.') {
        integer = 0;
        p++;
        if (p >= j->n || !is_digit(j->s[p])) return jr_fail(j, "bad number: digits expected after '.'");
        while (p < j->n && is_digit(j->s[p])) p++;
    }
    if (p < j->n && (j->s[p] == 'e' || j->s[p] == 'E')) {
        integer = 0;
        p++;
        if (p < j->n && (j->s[p] == '+' || j->s[p] == '-')) p++;
        if (p >= j->n || !is_digit(j->s[p])) return jr_fail(j, "bad number: exponent digits expected");
        while (p < j->n && is_digit(j->s[p])) p++;
    }
    j->pos = p;
    *text = j->s + start;
    *len = p - start;
    *is_integer = integer;
    return 1;
}

int jr_int64(jr *j, int64_t *out) {
    const char *t;
    size_t len;
    int integer;
    if (!jr_number_text(j, &t, &len, &integer)) return 0;
    if (!integer) return jr_fail(j, "integer expected");
    int neg = t[0] == '-';
    uint64_t v = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (size_t i = (size_t)neg; i < len; i++) {
        uint64_t d = (uint64_t)(t[i] - '0');
        if (v > (limit - d) / 10) return jr_fail(j, "integer out of range");
        v = v * 10 + d;
    }
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 1;
}

/* Copy a validated literal into a NUL-terminated stack buffer for strtod/strtof. */
static int literal(jr *j, char *buf, size_t cap) {
    const char *t;
    size_t len;
    int integer;
    if (!jr_number_text(j, &t, &len, &integer)) return 0;
    if (len >= cap) return jr_fail(j, "number literal too long");
    memcpy(buf, t, len);
    buf[len] = 0;
    return 1;
}

int jr_double(jr *j, double *out) {
    char buf[JR_MAX_NUMBER + 1];
    if (!literal(j, buf, sizeof buf)) return 0;
    *out = strtod(buf, NULL); /* out-of-range literals become +-inf, as Python's json does */
    return 1;
}

int jr_float(jr *j, float *out) {
    char buf[JR_MAX_NUMBER + 1];
    if (!literal(j, buf, sizeof buf)) return 0;
    *out = strtof(buf, NULL); /* direct: strtod then (float) could round twice */
    return 1;
}

static int word(jr *j, const char *w) {
    size_t n = strlen(w);
    if (j->n - j->pos < n || memcmp(j->s + j->pos, w, n) != 0) return 0;
    j->pos += n;
    return 1;
}

int jr_bool(jr *j, int *out) {
    char c = jr_peek(j);
    if (c == 't' && word(j, "true")) *out = 1;
    else if (c == 'f' && word(j, "false")) *out = 0;
    else return jr_fail(j, "true or false expected");
    return 1;
}

int jr_null(jr *j) { return jr_peek(j) == 'n' && word(j, "null"); }

static int skip_key_or_string(jr *j) {
    waft_buf scratch = WAFT_BUF_INIT;
    int ok = jr_string(j, &scratch);
    waft_buf_free(&scratch);
    return ok;
}

/* `"key":` inside an object being skipped (the key is validated, not kept). */
static int skip_key(jr *j) {
    waft_buf scratch = WAFT_BUF_INIT;
    int ok = jr_string(j, &scratch);
    waft_buf_free(&scratch);
    if (!ok) return 0;
    return jr_take(j, ':') ? 1 : jr_fail(j, "':' expected");
}

int jr_skip(jr *j) {
    char kinds[JR_MAX_DEPTH + 1]; /* '{' or '[' per open container: an explicit stack, no recursion */
    int depth = 0;
    for (;;) {
        char c = jr_peek(j);
        if (c == '{' || c == '[') {
            if (depth >= JR_MAX_DEPTH) return jr_fail(j, "nested too deeply");
            j->pos++;
            kinds[++depth] = c;
            if (!jr_take(j, c == '{' ? '}' : ']')) {
                if (c == '{' && !skip_key(j)) return 0;
                continue; /* at the container's first value */
            }
            depth--; /* empty container: a complete value */
        } else if (c == '"') {
            if (!skip_key_or_string(j)) return 0;
        } else if (c == 't' || c == 'f') {
            int b;
            if (!jr_bool(j, &b)) return 0;
        } else if (c == 'n') {
            if (!jr_null(j)) return jr_fail(j, "null expected");
        } else {
            const char *t;
            size_t len;
            int integer;
            if (!jr_number_text(j, &t, &len, &integer)) return 0;
        }
        /* After a complete value: close finished containers, or step to the next element. */
        for (;;) {
            if (depth == 0) return 1;
            if (jr_take(j, ',')) {
                if (kinds[depth] == '{' && !skip_key(j)) return 0;
                break;
            }
            if (jr_take(j, kinds[depth] == '{' ? '}' : ']')) {
                depth--;
                continue;
            }
            return jr_fail(j, kinds[depth] == '{' ? "',' or '}' expected" : "',' or ']' expected");
        }
    }
}

int jr_object_begin(jr *j) { return jr_take(j, '{') ? 1 : jr_fail(j, "object expected"); }
int jr_array_begin(jr *j) { return jr_take(j, '[') ? 1 : jr_fail(j, "array expected"); }

int jr_object_next(jr *j, int *first, waft_buf *key) {
    if (j->err) return 0;
    if (*first) {
        *first = 0;
        if (jr_take(j, '}')) return 0;
    } else {
        if (jr_take(j, '}')) return 0;
        if (!jr_take(j, ',')) return jr_fail(j, "',' or '}' expected");
    }
    waft_buf_reset(key);
    if (!jr_string(j, key)) return 0;
    if (!jr_take(j, ':')) return jr_fail(j, "':' expected");
    return 1;
}

int jr_array_next(jr *j, int *first) {
    if (j->err) return 0;
    if (*first) {
        *first = 0;
        return jr_take(j, ']') ? 0 : 1;
    }
    if (jr_take(j, ']')) return 0;
    if (!jr_take(j, ',')) return jr_fail(j, "',' or ']' expected");
    return 1;
}
