/*
 * fuzz-util.h - what the fuzz targets share.
 */
#ifndef FPD_FUZZ_UTIL_H
#define FPD_FUZZ_UTIL_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A private copy of exactly size bytes (plus a NUL when nul is true), so that a
 * read past the input's end is an ASan error; NULL when out of memory. free() it. */
static inline uint8_t *fuzz_copy(const uint8_t *data, size_t size, int nul) {
    uint8_t *buf = malloc(size + (nul ? 1 : 0) + (size == 0));
    if (!buf) return NULL;
    if (size) memcpy(buf, data, size);
    if (nul) buf[size] = 0;
    return buf;
}

#endif
