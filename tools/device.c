/*
 * device.c - the tools' device selection (device.h).
 */
#include "tools/device.h"

#include <stdlib.h>
#include <string.h>

void cli_device_open_or_exit(const struct fpd_device *d, const char *opt, bool verbose,
                             struct fpd_device_choice *out) {
    struct fpd_error err;
    memset(&err, 0, sizeof err);
    if (fpd_device_open(d, out, &err)) {
        char spell[32];
        cli_error("%s %s: %s", opt, fpd_device_str(d, spell, sizeof spell), err.msg);
        exit(CLI_EXIT_BACKEND);
    }
    if (verbose) {
        if (out->note[0]) fprintf(stderr, "%s: device: %s (auto: %s)\n", cli_prog, out->used, out->note);
        else fprintf(stderr, "%s: device: %s\n", cli_prog, out->used);
    }
}

void cli_device_json(const struct fpd_device_choice *b, json_t *o) {
    json_object_set_new(o, "device", json_string(b->used));
    json_object_set_new(o, "device_requested", json_string(b->requested));
    if (b->note[0]) json_object_set_new(o, "device_note", json_string(b->note));
}
