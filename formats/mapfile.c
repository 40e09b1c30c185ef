/*
 * mapfile.c - read-only file mapping and small helpers shared by the readers.
 */
#include "formats/formats-impl.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

enum fpd_status fpd__map_file(const char *path, void **map, size_t *size, struct fpd_error *err) {
    enum fpd_status status = FPD_STATUS_OK;
    char eb[128];
    *map = NULL;
    *size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fpd__err(err, FPD_STATUS_IO, "%s: cannot open: %s", path, strerror_r(errno, eb, sizeof eb));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        status = fpd__err(err, FPD_STATUS_IO, "%s: cannot stat: %s", path, strerror_r(errno, eb, sizeof eb));
        goto done;
    }
    if (!S_ISREG(sb.st_mode)) {
        status = fpd__err(err, FPD_STATUS_IO, "%s: not a regular file", path);
        goto done;
    }
    if ((uint64_t)sb.st_size > SIZE_MAX) {
        status = fpd__err(err, FPD_STATUS_IO, "%s: file too large to map", path);
        goto done;
    }
    *size = (size_t)sb.st_size;
    if (*size > 0) {
        void *m = mmap(NULL, *size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            status = fpd__err(err, FPD_STATUS_IO, "%s: cannot mmap %zu bytes: %s", path, *size,
                              strerror_r(errno, eb, sizeof eb));
            *size = 0;
            goto done;
        }
        *map = m;
    }
done:
    close(fd);
    return status;
}

void fpd__unmap_file(void *map, size_t size) {
    if (map) munmap(map, size);
}

const char *fpd__json_type_name(const json_t *j) {
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE: return "true";
    case JSON_FALSE: return "false";
    case JSON_NULL: return "null";
    }
    return "?";
}
