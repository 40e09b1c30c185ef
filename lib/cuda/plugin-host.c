/*
 * plugin-host.c - linked into a loadable backend object (build/libfpd-cuda.so,
 * the test objects build/libfpd-fakecuda*.so), never into libfpd. It defines the
 * few libfpd functions a backend calls (errors, logging, allocation, the layer
 * and batch accessors, the Adam update, E's rounding for quantization-aware
 * training, E's stored rows) on top of the host table that libfpd
 * passes to fpd_backend_plugin_init (struct fpd_backend_host, backend-impl.h), so
 * the backend's code calls them as code in lib/ does, and they act on libfpd's
 * own state (its allocator hooks, its log callback, its layers).
 */
#include "../backend-impl.h"

#include <string.h>
#include <time.h>

static const struct fpd_backend_host *g_host;

bool fpd__plugin_host_set(const struct fpd_backend_host *host) {
    if (!host || host->abi_version != FPD_BACKEND_ABI_VERSION) return false;
    g_host = host;
    return true;
}

/* ------------------------------------------------------------- errors, log */

enum fpd_status fpd__err(struct fpd_error *err, enum fpd_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    enum fpd_status st = g_host->verr(err, status, fmt, ap);
    va_end(ap);
    return st;
}

void fpd__err_clear(struct fpd_error *err) {
    if (err) {
        err->status = FPD_STATUS_OK;
        err->msg[0] = '\0';
        err->line = err->column = 0;
    }
}

void fpd__log(enum fpd_log_level level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    g_host->vlog(level, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------- allocation */

void *fpd_malloc(size_t size) { return g_host->malloc(size); }

void *fpd_calloc(size_t n, size_t size) {
    size_t total;
    if (!fpd__mul_size(n, size, &total) || total == 0) return NULL;
    void *p = g_host->malloc(total);
    if (p) memset(p, 0, total);
    return p;
}

void fpd_free(void *ptr) { g_host->free(ptr); }

double fpd__now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ------------------------------------------------------------- layers, batches */

const struct fpd_layer_shape *fpd_layer_get_shape(const struct fpd_layer *layer) {
    return g_host->layer_get_shape(layer);
}
float *fpd_layer_core(struct fpd_layer *layer, int32_t m) { return g_host->layer_core(layer, m); }
const float *fpd_layer_core_const(const struct fpd_layer *layer, int32_t m) {
    return g_host->layer_core_const(layer, m);
}
const int64_t *fpd_layer_row_perm(const struct fpd_layer *layer) { return g_host->layer_row_perm(layer); }
int64_t fpd_layer_get_free_coords(const struct fpd_layer *layer) { return g_host->layer_get_free_coords(layer); }
float *fpd_layer_get_free_e(struct fpd_layer *layer) { return g_host->layer_get_free_e(layer); }
const float *fpd_layer_get_free_e_const(const struct fpd_layer *layer) { return g_host->layer_get_free_e_const(layer); }
float *fpd_layer_get_free_p(struct fpd_layer *layer) { return g_host->layer_get_free_p(layer); }
const float *fpd_layer_get_free_p_const(const struct fpd_layer *layer) { return g_host->layer_get_free_p_const(layer); }
int64_t fpd_layer_shape_core_numel(const struct fpd_layer_shape *s, int32_t m) {
    return g_host->layer_shape_core_numel(s, m);
}
int64_t fpd_bag_batch_out_rows(const struct fpd_bag_batch *b) { return g_host->bag_batch_out_rows(b); }

void fpd__adam_update(float *x, const float *g, float *m1, float *m2, int64_t n, float lr, float beta1, float beta2,
                      float eps, float bc1, float bc2) {
    g_host->adam_update(x, g, m1, m2, n, lr, beta1, beta2, eps, bc1, bc2);
}

void fpd__free_fake_quant_row(enum fpd_free_kind kind, const float *x, int64_t c, float *out) {
    g_host->free_fake_quant_row(kind, x, c, out);
}

const uint8_t *fpd_layer_get_free_stored(const struct fpd_layer *layer, enum fpd_free_kind *kind) {
    return g_host->layer_get_free_stored(layer, kind);
}

void fpd_layer_free_row(const struct fpd_layer *layer, int64_t i, float *out) {
    g_host->layer_free_row(layer, i, out);
}
