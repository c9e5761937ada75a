/* A string view: a pointer and a length into bytes someone else owns (a payload, a literal), not
 * NUL-terminated. Every SDK decoder hands strings out this way; these helpers compare them. */
#ifndef WAFT_STR_H
#define WAFT_STR_H

#include <stddef.h>

typedef struct {
    const char *ptr;
    size_t len;
} waft_str;

/* A view of a NUL-terminated string (NULL gives the empty view). */
waft_str waft_str_c(const char *s);
/* 1 when `s` equals the NUL-terminated `lit` byte for byte. */
int waft_str_eq(waft_str s, const char *lit);
/* The same, ignoring ASCII case (HTTP methods and header names, status variants). */
int waft_str_ieq(waft_str s, const char *lit);
/* 1 when `needle` occurs in `s`; a view with a NULL pointer holds nothing. */
int waft_str_contains(waft_str s, const char *needle);

#endif
