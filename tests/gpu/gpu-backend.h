/*
 * gpu-backend.h - the CUDA backend linked into the GPU check's programs themselves
 * (the lib/cuda .cu objects, not build/libfpd-cuda.so through dlopen): the private
 * engine functions the checks call (fpd__cuda_engine_set_direct_forward,
 * fpd__cuda_engine_*_device) live in the object, whose symbols are hidden, so the
 * programs link the same sources and create the backend from them directly.
 */
#ifndef FPD_GPU_BACKEND_H
#define FPD_GPU_BACKEND_H

#include "lib/backend-impl.h"

#include <stdio.h>

static inline enum fpd_status gpu_backend_create(struct fpd_backend **out, struct fpd_error *err) {
    *out = NULL;
    struct fpd_backend *be = (struct fpd_backend *)fpd_calloc(1, sizeof *be);
    if (!be) return fpd__err(err, FPD_STATUS_NOMEM, "out of memory for a backend");
    be->kind = FPD_BACKEND_KIND_CUDA;
    enum fpd_status st = fpd__cuda_backend_create(be, 0, err);
    if (st) {
        fpd_free(be);
        return st;
    }
    *out = be;
    return FPD_STATUS_OK;
}

#endif
