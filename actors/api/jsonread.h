/* A bounded pull parser for JSON request bodies (the SDK only writes JSON).
 *
 * Bodies come from HTTP clients, so the reader never reads past `n`, never recurses (skipping and
 * nested arrays use explicit depth counters, bounded by JR_MAX_DEPTH: the actor's stack is 64 KiB),
 * and records the first problem with its byte offset instead of crashing. Errors are sticky like the
 * msgpack reader's: once `err` is set every call returns 0.
 *
 * Objects and arrays are walked in place, so a 600 KB tensor is read without building a tree:
 *
 *     int first = 1;
 *     if (!jr_object_begin(&j)) ...;
 *     while (jr_object_next(&j, &first, &key)) { if (key is "data") ...; else jr_skip(&j); }
 *     if (j.err) ...;
 */
#ifndef WAFT_API_JSONREAD_H
#define WAFT_API_JSONREAD_H

#include <stddef.h>
#include <stdint.h>

#include "waft.h"

#define JR_MAX_DEPTH 32

typedef struct {
    const char *s;
    size_t n;
    size_t pos;
    const char *err; /* static message of the first failure */
    size_t err_pos;  /* where it happened */
} jr;

void jr_init(jr *j, const void *text, size_t len);
int jr_fail(jr *j, const char *msg);
/* Append why a parse failed to `why`: `problem` when set, else "<what>: <err> at byte <pos>" when the
 * reader failed, else nothing. */
void jr_explain(const jr *j, const char *problem, const char *what, waft_buf *why);
/* Next non-whitespace character without consuming it ('\0' at the end or after an error). */
char jr_peek(jr *j);
/* Consume `c` if it is next (after whitespace); 1 if it was. Never fails. */
int jr_take(jr *j, char c);
/* 1 when only whitespace is left. */
int jr_at_end(jr *j);

/* A string value, unescaped to UTF-8 (\uXXXX and surrogate pairs included) and appended to `out`. */
int jr_string(jr *j, waft_buf *out);
/* A number's literal text (validated against the JSON grammar); `is_integer` when it has neither a
 * fraction nor an exponent. The view points into the input. */
int jr_number_text(jr *j, const char **text, size_t *len, int *is_integer);
/* A JSON integer that fits int64 (no fraction, no exponent). */
int jr_int64(jr *j, int64_t *out);
/* Any JSON number as a double / float, correctly rounded (strtod/strtof on the literal). */
int jr_double(jr *j, double *out);
int jr_float(jr *j, float *out);
/* true / false. */
int jr_bool(jr *j, int *out);
/* null, if it is next: 1 and consumed; otherwise 0 and nothing happens (no error). */
int jr_null(jr *j);
/* Skip one complete value of any kind (iteratively). */
int jr_skip(jr *j);

/* Containers. `first` starts at 1 for each container; *_next returns 1 when another element (or
 * key + ':') follows, 0 at the closing bracket (consumed) or on an error (check j->err). */
int jr_object_begin(jr *j);
int jr_object_next(jr *j, int *first, waft_buf *key);
int jr_array_begin(jr *j);
int jr_array_next(jr *j, int *first);

#endif
