/*
 * mapfile.c - read-only file mapping and small helpers shared by the readers.
 */
#include "formats/formats-impl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
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

/* ------------------------------------------------------------ atomic output */

static int create_temp(char *tmp, size_t suffix_at) {
    static const char chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    static uint64_t counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t state = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ ((uint64_t)getpid() << 16) ^
                     (uint64_t)(uintptr_t)tmp ^ __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
    for (int attempt = 0; attempt < 100; attempt++) {
        uint64_t r = fpd__rand_u64(&state);
        for (int i = 0; i < 6; i++, r /= 62) tmp[suffix_at + (size_t)i] = chars[r % 62];
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0 || errno != EEXIST) return fd;
    }
    errno = EEXIST;
    return -1;
}

enum fpd_status fpd__atomic_open(const char *path, unsigned flags, struct fpd__atomic_file *f, struct fpd_error *err) {
    char eb[128];
    memset(f, 0, sizeof *f);
    f->path = path;
    f->fd = -1;
    struct stat sb;
    if (!(flags & FPD_WRITE_OVERWRITE) && lstat(path, &sb) == 0) /* early; publishing re-checks atomically */
        return fpd__err(err, FPD_STATUS_IO, "%s already exists", path);
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    size_t dlen = slash ? (size_t)(slash - path) : 0;
    if (!*base) return fpd__err(err, FPD_STATUS_INVALID_ARG, "%s: path names a folder, not a file", path);
    size_t dirlen = slash ? (dlen ? dlen : 1) : 1, tlen = dlen + 2 + strlen(base) + strlen(".tmp-XXXXXX") + 1;
    f->dir = fpd_malloc(dirlen + 1);
    f->tmp = fpd_malloc(tlen);
    if (!f->dir || !f->tmp) {
        fpd__atomic_abort(f);
        return fpd__err(err, FPD_STATUS_NOMEM, "%s: out of memory", path);
    }
    memcpy(f->dir, slash ? (dlen ? path : "/") : ".", dirlen);
    f->dir[dirlen] = '\0';
    snprintf(f->tmp, tlen, "%.*s%s.%s.tmp-XXXXXX", (int)dlen, path, slash ? "/" : "", base);
    f->fd = create_temp(f->tmp, strlen(f->tmp) - 6);
    if (f->fd < 0) {
        enum fpd_status st = fpd__err(err, FPD_STATUS_IO, "%s: cannot create a temporary file in '%s': %s", path, f->dir,
                                      strerror_r(errno, eb, sizeof eb));
        fpd__atomic_abort(f);
        return st;
    }
    f->made = true;
    return FPD_STATUS_OK;
}

enum fpd_status fpd__atomic_write(struct fpd__atomic_file *f, const void *buf, size_t n, struct fpd_error *err) {
    const unsigned char *p = buf;
    char eb[128];
    while (n > 0) {
        size_t chunk = n > (1u << 30) ? (1u << 30) : n;
        ssize_t w = write(f->fd, p, chunk);
        if (w < 0) {
            if (errno == EINTR) continue;
            return fpd__err(err, FPD_STATUS_IO, "%s: write failed: %s", f->tmp, strerror_r(errno, eb, sizeof eb));
        }
        if (w == 0) return fpd__err(err, FPD_STATUS_IO, "%s: write wrote nothing (disk full?)", f->tmp);
        p += w;
        n -= (size_t)w;
    }
    return FPD_STATUS_OK;
}

enum fpd_status fpd__atomic_commit(struct fpd__atomic_file *f, unsigned flags, struct fpd_error *err) {
    enum fpd_status st = FPD_STATUS_OK;
    char eb[128];
    if (fsync(f->fd) != 0) {
        st = fpd__err(err, FPD_STATUS_IO, "%s: fsync failed: %s", f->tmp, strerror_r(errno, eb, sizeof eb));
        goto done;
    }
    int rc = close(f->fd);
    f->fd = -1;
    if (rc != 0) {
        st = fpd__err(err, FPD_STATUS_IO, "%s: close failed: %s", f->tmp, strerror_r(errno, eb, sizeof eb));
        goto done;
    }
    if (flags & FPD_WRITE_OVERWRITE) {
        rc = rename(f->tmp, f->path);
    } else {
        rc = renameat2(AT_FDCWD, f->tmp, AT_FDCWD, f->path, RENAME_NOREPLACE);
        if (rc != 0 && (errno == EINVAL || errno == ENOSYS || errno == ENOTSUP)) {
            rc = link(f->tmp, f->path); /* link() never replaces either */
            if (rc == 0) unlink(f->tmp);
        }
    }
    if (rc != 0) {
        if (errno == EEXIST) st = fpd__err(err, FPD_STATUS_IO, "%s already exists", f->path);
        else
            st = fpd__err(err, FPD_STATUS_IO, "%s: cannot move the temporary file into place: %s", f->path,
                          strerror_r(errno, eb, sizeof eb));
        goto done;
    }
    f->made = false;
    int dfd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || (fsync(dfd) != 0 && errno != EINVAL && errno != ENOTSUP))
        fpd__log(FPD_LOG_LEVEL_WARN, "%s: cannot fsync folder '%s': %s", f->path, f->dir,
                 strerror_r(errno, eb, sizeof eb));
    if (dfd >= 0) close(dfd);
done:
    fpd__atomic_abort(f);
    return st;
}

void fpd__atomic_abort(struct fpd__atomic_file *f) {
    if (f->fd >= 0) close(f->fd);
    f->fd = -1;
    if (f->made && f->tmp) unlink(f->tmp);
    f->made = false;
    fpd_free(f->tmp);
    fpd_free(f->dir);
    f->tmp = f->dir = NULL;
}
