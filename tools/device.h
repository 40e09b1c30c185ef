/*
 * device.h - the tools' --device option (fpd-compress, fpd-eval) and fpd-batch's
 * `device:` on top of the library's device selection (fpd_device_parse,
 * fpd_device_open in lib/fpd.h): exit 3 and one line for an unavailable cuda, the
 * choice on stderr and in the JSON reports. Not library API.
 */
#ifndef FPD_DEVICE_H
#define FPD_DEVICE_H

#include "tools/cli.h"

#include <jansson.h>

/* fpd_device_open, or "PROG: error: OPT SPELLING: WHY" on stderr and exit 3
 * (CLI_EXIT_BACKEND). With verbose, "PROG: device: USED" (and "(auto: NOTE)") on
 * stderr. */
void cli_device_open_or_exit(const struct fpd_device *d, const char *opt, bool verbose,
                             struct fpd_device_choice *out);

/* o["device"] = used, o["device_requested"] = requested, and o["device_note"] =
 * note when there is one. */
void cli_device_json(const struct fpd_device_choice *b, json_t *o);

#endif
