/*
 * device.h - the tools' device selection: --device auto|cpu|cuda[:N] (fpd-compress,
 * fpd-eval, sample-train-gmf) and fpd-batch's `device:`. Not library API.
 *
 *   auto     the CUDA backend when it loads (lib/backend.c finds build/libfpd-cuda.so),
 *            has a device and runs the FPD engine; otherwise the CPU, with the
 *            reason kept in the choice's note. Probes (loads) the CUDA backend.
 *   cpu      the CPU; loads nothing.
 *   cuda[:N] CUDA device N (default 0). Unavailable (not built, object missing or
 *            refused, no driver or device, no engine operations): exit 3 with one
 *            line "PROG: error: --device cuda: WHY".
 */
#ifndef FPD_DEVICE_H
#define FPD_DEVICE_H

#include "tools/cli.h"

#include <jansson.h>

enum cli_device_kind { CLI_DEVICE_AUTO = 0, CLI_DEVICE_CPU, CLI_DEVICE_CUDA };

struct cli_device {
    enum cli_device_kind kind;
    int index; /* CUDA device, 0-based */
};

/* "auto", "cpu", "cuda", "cuda:N" (N a whole number below 1024) into *out; false
 * for anything else. */
bool cli_device_parse(const char *s, struct cli_device *out);
/* The spelling of d ("auto", "cpu", "cuda:1") into buf. */
const char *cli_device_str(const struct cli_device *d, char *buf, size_t len);

/* A device chosen and opened. */
struct cli_backend {
    struct fpd_backend *backend; /* NULL for the CPU (the engines make their own) */
    char requested[32];          /* "auto", "cpu", "cuda:0"                        */
    char used[160];              /* "cpu", "cuda:0 (NVIDIA H200)"                   */
    char note[640];              /* auto on the CPU: why not CUDA; else ""          */
};

/* Open d into *out (see the top of the file). Errors (cuda[:N] only):
 * UNSUPPORTED, IO, BACKEND with the registry's message (fpd_backend_init), or
 * UNSUPPORTED "DEVICE cannot run the FPD engine (...)". Close with cli_backend_close. */
enum fpd_status cli_backend_open(const struct cli_device *d, struct cli_backend *out, struct fpd_error *err);
void cli_backend_close(struct cli_backend *b);

/* cli_backend_open, or "PROG: error: OPT SPELLING: WHY" on stderr and exit 3
 * (CLI_EXIT_BACKEND). With verbose, "PROG: device: USED" (and "(auto: NOTE)") on
 * stderr. */
void cli_backend_open_or_exit(const struct cli_device *d, const char *opt, bool verbose, struct cli_backend *out);

/* o["device"] = used, o["device_requested"] = requested, and o["device_note"] =
 * note when there is one. */
void cli_backend_json(const struct cli_backend *b, json_t *o);

#endif
