/*
 * backend.c - backend selection. The only file that tests FPD_USE_CUDA.
 */
#include "backend-impl.h"

#include <string.h>

bool fpd_backend_available(enum fpd_backend_kind kind) {
    switch (kind) {
    case FPD_BACKEND_KIND_CPU:
        return true;
    case FPD_BACKEND_KIND_CUDA:
#ifdef FPD_USE_CUDA
        return fpd__cuda_device_count() > 0;
#else
        return false;
#endif
    default:
        return false;
    }
}

enum fpd_status fpd_backend_init(enum fpd_backend_kind kind, int device, struct fpd_backend **out,
                                 struct fpd_error *err) {
    *out = NULL;
    struct fpd_backend *be = fpd_calloc(1, sizeof *be);
    if (!be) return fpd__err(err, FPD_STATUS_NOMEM, "out of memory for a backend");
    enum fpd_status st;
    be->kind = kind;
    switch (kind) {
    case FPD_BACKEND_KIND_CPU:
        st = fpd__cpu_backend_create(be, err);
        break;
    case FPD_BACKEND_KIND_CUDA:
#ifdef FPD_USE_CUDA
        st = fpd__cuda_backend_create(be, device, err);
#else
        (void)device;
        st = fpd__err(err, FPD_STATUS_UNSUPPORTED, "built without CUDA; rebuild with make CUDA=1");
#endif
        break;
    default:
        st = fpd__err(err, FPD_STATUS_INVALID_ARG, "unknown backend kind %d", (int)kind);
    }
    if (st) {
        fpd_free(be);
        return st;
    }
    *out = be;
    return FPD_STATUS_OK;
}

enum fpd_status fpd_backend_init_best(struct fpd_backend **out, struct fpd_error *err) {
    if (fpd_backend_available(FPD_BACKEND_KIND_CUDA) && fpd_backend_init(FPD_BACKEND_KIND_CUDA, 0, out, NULL) == 0)
        return FPD_STATUS_OK;
    return fpd_backend_init(FPD_BACKEND_KIND_CPU, 0, out, err);
}

const char *fpd_backend_name(const struct fpd_backend *be) { return be->name; }

void fpd_backend_free(struct fpd_backend *be) {
    if (!be) return;
    if (be->iface.destroy) be->iface.destroy(be->ctx);
    fpd_free(be);
}

const struct fpd_backend_i *fpd__backend_iface(const struct fpd_backend *be, void **ctx) {
    if (ctx) *ctx = be->ctx;
    return &be->iface;
}
