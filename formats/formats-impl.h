/*
 * formats-impl.h - private helpers shared by the readers in formats/. Not API.
 */
#ifndef FPD_FORMATS_IMPL_H
#define FPD_FORMATS_IMPL_H

#include "formats/fpd-formats.h"
#include "lib/fpd-impl.h"

#include <jansson.h>

/* Open path read-only, check it is a regular file, and map it (PROT_READ,
 * MAP_PRIVATE). *map is NULL for an empty file (0 bytes cannot be mapped); *size
 * is the file's length. Release with fpd__unmap_file. Errors: IO with the path and
 * the system's reason (cannot open, cannot stat, not a regular file, too large,
 * cannot mmap). */
enum fpd_status fpd__map_file(const char *path, void **map, size_t *size, struct fpd_error *err);
/* munmap; NULL is a no-op. */
void fpd__unmap_file(void *map, size_t size);

/* "an object", "an array", "a string", "an integer", ... for messages. */
const char *fpd__json_type_name(const json_t *j);

#endif
