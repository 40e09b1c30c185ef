/*
 * common.c - status strings, errors, logging, allocation hooks, dtypes, version.
 */
#include "fpd-impl.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------- status */

const char *fpd_status_str(enum fpd_status s) {
    static const char *const names[FPD_STATUS_COUNT] = {
        [FPD_STATUS_OK] = "ok",
        [FPD_STATUS_NOMEM] = "out of memory",
        [FPD_STATUS_IO] = "i/o error",
        [FPD_STATUS_FORMAT] = "invalid file format",
        [FPD_STATUS_INVALID_ARG] = "invalid argument",
        [FPD_STATUS_SHAPE] = "shape mismatch",
        [FPD_STATUS_DTYPE] = "unsupported dtype",
        [FPD_STATUS_UNSUPPORTED] = "unsupported",
        [FPD_STATUS_BACKEND] = "backend failure",
        [FPD_STATUS_NUMERIC] = "numerical failure",
        [FPD_STATUS_CONFIG] = "configuration error",
        [FPD_STATUS_CANCELLED] = "cancelled",
    };
    if ((unsigned)s >= FPD_STATUS_COUNT) return "unknown status";
    return names[s];
}

enum fpd_status fpd__err(struct fpd_error *err, enum fpd_status status, const char *fmt, ...) {
    if (err) {
        err->status = status;
        err->line = err->column = 0;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return status;
}

void fpd__err_clear(struct fpd_error *err) {
    if (err) {
        err->status = FPD_STATUS_OK;
        err->msg[0] = '\0';
        err->line = err->column = 0;
    }
}

/* ------------------------------------------------------------- logging */

static fpd_log_callback g_log_cb;
static void *g_log_user;

void fpd_log_set(fpd_log_callback cb, void *user_data) {
    g_log_cb = cb;
    g_log_user = user_data;
}

void fpd__log(enum fpd_log_level level, const char *fmt, ...) {
    if (!g_log_cb) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    g_log_cb(level, buf, g_log_user);
}

/* ------------------------------------------------------------- allocation */

static struct fpd_allocator g_alloc;

void fpd_allocator_set(const struct fpd_allocator *a) {
    if (a) g_alloc = *a;
    else memset(&g_alloc, 0, sizeof g_alloc);
}

void *fpd_malloc(size_t size) {
    if (size == 0) return NULL;
    if (g_alloc.malloc_fn) return g_alloc.malloc_fn(size, g_alloc.user_data);
    return malloc(size);
}

void *fpd_calloc(size_t n, size_t size) {
    size_t total;
    if (!fpd__mul_size(n, size, &total) || total == 0) return NULL;
    void *p = fpd_malloc(total);
    if (p) memset(p, 0, total);
    return p;
}

void fpd_free(void *ptr) {
    if (!ptr) return;
    if (g_alloc.free_fn) g_alloc.free_fn(ptr, g_alloc.user_data);
    else free(ptr);
}

/* ------------------------------------------------------------- misc */

double fpd__now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double fpd__rand_normal(uint64_t *state) {
    double u1 = fpd__rand_uniform(state), u2 = fpd__rand_uniform(state);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

const char *fpd_version(void) { return FPD_VERSION_STRING; }

/* fpd_build_features: lib/backend.c (it reports the CUDA backend object) */
