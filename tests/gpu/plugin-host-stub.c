/*
 * plugin-host-stub.c - for the GPU check's programs, which link the CUDA backend's
 * objects next to libfpd.a (tests/gpu/gpu-backend.h): the backend object's entry
 * point refers to fpd__plugin_host_set (lib/cuda/plugin-host.c), whose other
 * definitions would clash with libfpd's own. The programs never call the entry
 * point; this refuses any host.
 */
#include "lib/backend-impl.h"

bool fpd__plugin_host_set(const struct fpd_backend_host *host) {
    (void)host;
    return false;
}
