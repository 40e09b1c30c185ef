/*
 * size.c - byte counts with units (fpd_size_parse, lib/fpd.h "Sizes"): the syntax
 * of fpd-compress --budget and fpd-batch's budget settings.
 */
#include "lib/fpd-impl.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

bool fpd_size_parse(const char *s, uint64_t *out) {
    static const struct { const char *suffix; double mult; } units[] = {
        {"", 1.0},        {"B", 1.0},          {"K", 1024.0},  {"KiB", 1024.0}, {"kB", 1e3},   {"KB", 1e3},
        {"M", 1048576.0}, {"MiB", 1048576.0},  {"MB", 1e6},    {"G", 1073741824.0}, {"GiB", 1073741824.0},
        {"GB", 1e9},      {"T", 1099511627776.0}, {"TiB", 1099511627776.0}, {"TB", 1e12},
    };
    if (!s) return false;
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || !end || end == s || !(v >= 0.0) || !isfinite(v)) return false;
    while (*end == ' ') end++;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcmp(end, units[i].suffix) == 0) {
            double b = floor(v * units[i].mult);
            if (b >= 1.8e19) return false;
            *out = (uint64_t)b;
            return true;
        }
    return false;
}
