/*
 * device.c - device selection as the tools spell it (fpd_device_*, fpd.h): parse
 * auto|cpu|cuda[:N] and open the backend it names, falling back to the CPU for auto.
 */
#include "fpd-impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool fpd_device_parse(const char *s, struct fpd_device *out) {
    if (!s) return false;
    if (!strcmp(s, "auto")) {
        *out = (struct fpd_device){FPD_DEVICE_REQUEST_AUTO, 0};
        return true;
    }
    if (!strcmp(s, "cpu")) {
        *out = (struct fpd_device){FPD_DEVICE_REQUEST_CPU, 0};
        return true;
    }
    if (strncmp(s, "cuda", 4) != 0) return false;
    if (s[4] == '\0') {
        *out = (struct fpd_device){FPD_DEVICE_REQUEST_CUDA, 0};
        return true;
    }
    if (s[4] != ':' || s[5] < '0' || s[5] > '9') return false;
    char *end;
    long n = strtol(s + 5, &end, 10);
    if (*end || n < 0 || n >= 1024) return false;
    *out = (struct fpd_device){FPD_DEVICE_REQUEST_CUDA, (int32_t)n};
    return true;
}

const char *fpd_device_str(const struct fpd_device *d, char *buf, size_t len) {
    if (d->request == FPD_DEVICE_REQUEST_AUTO) snprintf(buf, len, "auto");
    else if (d->request == FPD_DEVICE_REQUEST_CPU) snprintf(buf, len, "cpu");
    else snprintf(buf, len, "cuda:%d", (int)d->index);
    return buf;
}

/* CUDA device `index` with the engine's operations, or an error saying why not. */
static enum fpd_status open_cuda(int index, struct fpd_backend **out, struct fpd_error *err) {
    *out = NULL;
    struct fpd_backend *be = NULL;
    enum fpd_status st = fpd_backend_init(FPD_BACKEND_KIND_CUDA, index, &be, err);
    if (st) return st;
    if (!fpd_backend_has_engine(be)) {
        char name[160];
        snprintf(name, sizeof name, "%s", fpd_backend_name(be));
        fpd_backend_free(be);
        return fpd__err(err, FPD_STATUS_UNSUPPORTED,
                        "%s cannot run the FPD engine (the CUDA backend object has no engine operations)", name);
    }
    *out = be;
    return FPD_STATUS_OK;
}

enum fpd_status fpd_device_open(const struct fpd_device *d, struct fpd_device_choice *out, struct fpd_error *err) {
    memset(out, 0, sizeof *out);
    fpd_device_str(d, out->requested, sizeof out->requested);
    snprintf(out->used, sizeof out->used, "cpu");
    if (d->request == FPD_DEVICE_REQUEST_CPU) return FPD_STATUS_OK;
    struct fpd_error e;
    memset(&e, 0, sizeof e);
    struct fpd_backend *be = NULL;
    enum fpd_status st = open_cuda(d->index, &be, &e);
    if (st) {
        if (d->request == FPD_DEVICE_REQUEST_CUDA) {
            if (err) *err = e;
            return st;
        }
        snprintf(out->note, sizeof out->note, "%s", e.msg); /* auto: the CPU, and why */
        return FPD_STATUS_OK;
    }
    out->backend = be;
    snprintf(out->used, sizeof out->used, "%s", fpd_backend_name(be));
    return FPD_STATUS_OK;
}

void fpd_device_close(struct fpd_device_choice *c) {
    if (!c) return;
    fpd_backend_free(c->backend);
    c->backend = NULL;
}
