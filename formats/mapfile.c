/*
 * mapfile.c - read-only file mapping and small helpers shared by the readers.
 */
#include "formats/formats-impl.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------ registries for signal handlers
 *
 * Both are read by async-signal-safe functions (no lock, no allocation): a slot is
 * claimed with a compare-and-swap, filled, and published by its last store (release);
 * it is withdrawn by its first store. */

#define MAP_SLOTS 256
struct map_slot {
    atomic_int used;
    atomic_uintptr_t begin; /* 0: empty */
    size_t len;
    char *path;
};
static struct map_slot g_maps[MAP_SLOTS];

/* Remember that [m, m + len) maps path (best effort: without a free slot or memory,
 * the mapping is simply not named to a signal handler). */
static void map_register(const void *m, size_t len, const char *path) {
    size_t n = strlen(path);
    char *copy = fpd_malloc(n + 1);
    if (!copy) return;
    memcpy(copy, path, n + 1);
    for (int i = 0; i < MAP_SLOTS; i++) {
        int expect = 0;
        if (!atomic_compare_exchange_strong(&g_maps[i].used, &expect, 1)) continue;
        g_maps[i].len = len;
        g_maps[i].path = copy;
        atomic_store_explicit(&g_maps[i].begin, (uintptr_t)m, memory_order_release);
        return;
    }
    fpd_free(copy);
}

static void map_unregister(const void *m) {
    for (int i = 0; i < MAP_SLOTS; i++) {
        if (atomic_load_explicit(&g_maps[i].begin, memory_order_acquire) != (uintptr_t)m) continue;
        atomic_store_explicit(&g_maps[i].begin, 0, memory_order_release);
        fpd_free(g_maps[i].path);
        g_maps[i].path = NULL;
        atomic_store_explicit(&g_maps[i].used, 0, memory_order_release);
        return;
    }
}

const char *fpd_mapped_file_at(const void *addr) {
    uintptr_t a = (uintptr_t)addr;
    for (int i = 0; i < MAP_SLOTS; i++) {
        uintptr_t b = atomic_load_explicit(&g_maps[i].begin, memory_order_acquire);
        if (b && a >= b && a - b < g_maps[i].len) return g_maps[i].path;
    }
    return NULL;
}

/* Named temporary files of the writes in progress (fpd__atomic_file.tmp while it
 * exists under that name). */
#define PENDING_SLOTS 64
static _Atomic(char *) g_pending[PENDING_SLOTS];

static void pending_add(char *tmp) {
    for (int i = 0; i < PENDING_SLOTS; i++) {
        char *expect = NULL;
        if (atomic_compare_exchange_strong(&g_pending[i], &expect, tmp)) return;
    }
}

static void pending_remove(const char *tmp) {
    for (int i = 0; i < PENDING_SLOTS; i++) {
        char *expect = (char *)tmp;
        if (atomic_compare_exchange_strong(&g_pending[i], &expect, NULL)) return;
    }
}

void fpd_write_remove_temporaries(void) {
    for (int i = 0; i < PENDING_SLOTS; i++) {
        char *t = atomic_exchange(&g_pending[i], NULL);
        if (t) unlink(t);
    }
}

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
        map_register(m, *size, path);
    }
done:
    close(fd);
    return status;
}

void fpd__unmap_file(void *map, size_t size) {
    if (!map) return;
    map_unregister(map);
    munmap(map, size);
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

bool fpd__atomic_named_only;

/* An unlocked temporary at least this old was left by a process that died. */
#define STALE_AGE_S 2

/* True if nm is ".<base>.tmp-" and six letters or digits: a temporary of base. */
static bool is_temp_of(const char *nm, const char *base) {
    size_t bl = strlen(base);
    if (nm[0] != '.' || strncmp(nm + 1, base, bl) != 0 || strncmp(nm + 1 + bl, ".tmp-", 5) != 0) return false;
    const char *x = nm + 1 + bl + 5;
    for (int i = 0; i < 6; i++)
        if (!((x[i] >= 'a' && x[i] <= 'z') || (x[i] >= 'A' && x[i] <= 'Z') || (x[i] >= '0' && x[i] <= '9')))
            return false;
    return x[6] == '\0';
}

/* Remove the temporaries of base in dir that no writer holds: a writer keeps an
 * exclusive flock on its named temporary from its creation (or, for an unnamed one,
 * from before it gets a name) until it is published or removed; so one that is
 * unlocked and not touched for STALE_AGE_S seconds was left by a killed process. */
static void remove_stale_temporaries(const char *dir, const char *base, const char *path) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    time_t now = time(NULL);
    while ((e = readdir(d))) {
        if (!is_temp_of(e->d_name, base)) continue;
        int fd = openat(dirfd(d), e->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) continue;
        struct stat sb;
        if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && now - sb.st_mtime >= STALE_AGE_S &&
            flock(fd, LOCK_EX | LOCK_NB) == 0 && unlinkat(dirfd(d), e->d_name, 0) == 0)
            fpd__log(FPD_LOG_LEVEL_INFO, "%s: removed '%s/%s', the temporary file of an interrupted write", path,
                     dir, e->d_name);
        close(fd);
    }
    closedir(d);
}

/* Link the open unnamed file fd at path (never replacing: EEXIST). */
static int link_unnamed(int fd, const char *path) {
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    return linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW);
}

/* Give f->tmp's last six characters random values until a new name is made: by
 * creating the file (O_EXCL, mode 0666 less the umask; returns its descriptor), or,
 * with unnamed >= 0, by linking that unnamed file there (returns 0). -1 and errno. */
static int create_temp(struct fpd__atomic_file *f, int unnamed) {
    static const char chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    static uint64_t counter;
    char *tmp = f->tmp;
    size_t suffix_at = strlen(tmp) - 6;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t state = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ ((uint64_t)getpid() << 16) ^
                     (uint64_t)(uintptr_t)tmp ^ __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
    for (int attempt = 0; attempt < 100; attempt++) {
        uint64_t r = fpd__rand_u64(&state);
        for (int i = 0; i < 6; i++, r /= 62) tmp[suffix_at + (size_t)i] = chars[r % 62];
        int rc = unnamed >= 0 ? link_unnamed(unnamed, tmp) : open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (rc >= 0 || errno != EEXIST) return rc;
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
    remove_stale_temporaries(f->dir, base, path);
    /* An unnamed file (O_TMPFILE) vanishes with the process, whatever kills it; it
     * is published by linkat through /proc/self/fd, so both must be there. */
    if (!fpd__atomic_named_only && access("/proc/self/fd", X_OK) == 0) {
        f->fd = open(f->dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0666);
        if (f->fd >= 0) {
            f->unnamed = true;
            return FPD_STATUS_OK;
        }
    }
    f->fd = create_temp(f, -1);
    if (f->fd < 0) {
        enum fpd_status st = fpd__err(err, FPD_STATUS_IO, "%s: cannot create a temporary file in '%s': %s", path, f->dir,
                                      strerror_r(errno, eb, sizeof eb));
        fpd__atomic_abort(f);
        return st;
    }
    f->made = true;
    flock(f->fd, LOCK_EX | LOCK_NB); /* a new file: nobody else holds it */
    pending_add(f->tmp);
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
            const char *src = errno == EFAULT ? fpd_mapped_file_at(p) : NULL;
            if (src) /* the source is a mapped input that someone truncated meanwhile */
                return fpd__err(err, FPD_STATUS_IO, "%s: the file shrank while it was being read (truncated during the run)",
                                src);
            return fpd__err(err, FPD_STATUS_IO, "%s: write failed: %s", f->path, strerror_r(errno, eb, sizeof eb));
        }
        if (w == 0) return fpd__err(err, FPD_STATUS_IO, "%s: write wrote nothing (disk full?)", f->path);
        p += w;
        n -= (size_t)w;
    }
    return FPD_STATUS_OK;
}

/* Publish the unnamed file f->fd at f->path. */
static int publish_unnamed(struct fpd__atomic_file *f, unsigned flags) {
    if (!(flags & FPD_WRITE_OVERWRITE)) return link_unnamed(f->fd, f->path);
    /* rename() is what replaces atomically, and it needs a name: a temporary one,
     * locked before it exists so that no other run takes it for a stale one */
    flock(f->fd, LOCK_EX | LOCK_NB);
    if (create_temp(f, f->fd) != 0) return -1;
    f->made = true;
    pending_add(f->tmp);
    return rename(f->tmp, f->path);
}

enum fpd_status fpd__atomic_commit(struct fpd__atomic_file *f, unsigned flags, struct fpd_error *err) {
    enum fpd_status st = FPD_STATUS_OK;
    char eb[128];
    int rc;
    if (fsync(f->fd) != 0) {
        st = fpd__err(err, FPD_STATUS_IO, "%s: fsync failed: %s", f->path, strerror_r(errno, eb, sizeof eb));
        goto done;
    }
    if (f->unnamed) {
        rc = publish_unnamed(f, flags);
    } else {
        rc = close(f->fd);
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
    }
    if (rc != 0) {
        if (errno == EEXIST) st = fpd__err(err, FPD_STATUS_IO, "%s already exists", f->path);
        else
            st = fpd__err(err, FPD_STATUS_IO, "%s: cannot move the temporary file into place: %s", f->path,
                          strerror_r(errno, eb, sizeof eb));
        goto done;
    }
    if (f->made) pending_remove(f->tmp);
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
    if (f->made && f->tmp) { /* removed while still locked, then closed */
        pending_remove(f->tmp);
        unlink(f->tmp);
    }
    f->made = false;
    if (f->fd >= 0) close(f->fd);
    f->fd = -1;
    fpd_free(f->tmp);
    fpd_free(f->dir);
    f->tmp = f->dir = NULL;
}

enum fpd_status fpd_write_file_atomic(const char *path, const void *data, size_t n, unsigned flags,
                                      struct fpd_error *err) {
    FPD_ASSERT(path && (data || n == 0));
    struct fpd__atomic_file af = {.fd = -1};
    enum fpd_status st = fpd__atomic_open(path, flags, &af, err);
    if (!st && n) st = fpd__atomic_write(&af, data, n, err);
    if (!st) st = fpd__atomic_commit(&af, flags, err);
    fpd__atomic_abort(&af);
    return st;
}
