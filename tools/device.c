/*
 * device.c - the tools' device selection (device.h).
 */
#include "tools/device.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static enum fpd_status set_err(struct fpd_error *err, enum fpd_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static enum fpd_status set_err(struct fpd_error *err, enum fpd_status st, const char *fmt, ...) {
    if (err) {
        err->status = st;
        err->line = err->column = 0;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return st;
}

bool cli_device_parse(const char *s, struct cli_device *out) {
    if (!s) return false;
    if (!strcmp(s, "auto")) {
        *out = (struct cli_device){CLI_DEVICE_AUTO, 0};
        return true;
    }
    if (!strcmp(s, "cpu")) {
        *out = (struct cli_device){CLI_DEVICE_CPU, 0};
        return true;
    }
    if (strncmp(s, "cuda", 4) != 0) return false;
    if (s[4] == '\0') {
        *out = (struct cli_device){CLI_DEVICE_CUDA, 0};
        return true;
    }
    if (s[4] != ':' || s[5] < '0' || s[5] > '9') return false;
    char *end;
    long n = strtol(s + 5, &end, 10);
    if (*end || n < 0 || n >= 1024) return false;
    *out = (struct cli_device){CLI_DEVICE_CUDA, (int)n};
    return true;
}

const char *cli_device_str(const struct cli_device *d, char *buf, size_t len) {
    if (d->kind == CLI_DEVICE_AUTO) snprintf(buf, len, "auto");
    else if (d->kind == CLI_DEVICE_CPU) snprintf(buf, len, "cpu");
    else snprintf(buf, len, "cuda:%d", d->index);
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
        return set_err(err, FPD_STATUS_UNSUPPORTED,
                       "%s cannot run the FPD engine (the CUDA backend object has no engine operations)", name);
    }
    *out = be;
    return FPD_STATUS_OK;
}

enum fpd_status cli_backend_open(const struct cli_device *d, struct cli_backend *out, struct fpd_error *err) {
    memset(out, 0, sizeof *out);
    cli_device_str(d, out->requested, sizeof out->requested);
    snprintf(out->used, sizeof out->used, "cpu");
    if (d->kind == CLI_DEVICE_CPU) return FPD_STATUS_OK;
    struct fpd_error e;
    memset(&e, 0, sizeof e);
    struct fpd_backend *be = NULL;
    enum fpd_status st = open_cuda(d->index, &be, &e);
    if (st) {
        if (d->kind == CLI_DEVICE_CUDA) {
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

void cli_backend_close(struct cli_backend *b) {
    if (!b) return;
    fpd_backend_free(b->backend);
    b->backend = NULL;
}

void cli_backend_open_or_exit(const struct cli_device *d, const char *opt, bool verbose, struct cli_backend *out) {
    struct fpd_error err;
    memset(&err, 0, sizeof err);
    if (cli_backend_open(d, out, &err)) {
        char spell[32];
        cli_error("%s %s: %s", opt, cli_device_str(d, spell, sizeof spell), err.msg);
        exit(CLI_EXIT_BACKEND);
    }
    if (verbose) {
        if (out->note[0]) fprintf(stderr, "%s: device: %s (auto: %s)\n", cli_prog, out->used, out->note);
        else fprintf(stderr, "%s: device: %s\n", cli_prog, out->used);
    }
}

void cli_backend_json(const struct cli_backend *b, json_t *o) {
    json_object_set_new(o, "device", json_string(b->used));
    json_object_set_new(o, "device_requested", json_string(b->requested));
    if (b->note[0]) json_object_set_new(o, "device_note", json_string(b->note));
}
