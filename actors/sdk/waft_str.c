#include "waft_str.h"

#include <string.h>

static char ascii_upper(char c) { return c >= 'a' && c <= 'z' ? (char)(c - 32) : c; }

waft_str waft_str_c(const char *s) { return (waft_str){s ? s : "", s ? strlen(s) : 0}; }

int waft_str_eq(waft_str s, const char *lit) { return s.len == strlen(lit) && memcmp(s.ptr, lit, s.len) == 0; }

int waft_str_ieq(waft_str s, const char *lit) {
    if (s.len != strlen(lit)) return 0;
    for (size_t i = 0; i < s.len; i++)
        if (ascii_upper(s.ptr[i]) != ascii_upper(lit[i])) return 0;
    return 1;
}

int waft_str_contains(waft_str s, const char *needle) {
    size_t m = strlen(needle);
    if (!s.ptr || m > s.len) return 0;
    for (size_t i = 0; i + m <= s.len; i++)
        if (memcmp(s.ptr + i, needle, m) == 0) return 1;
    return 0;
}
