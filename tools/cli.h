/*
 * cli.h - what the fpd-* tools share: error and usage messages, progress on
 * stderr, path checks, option parsing. Not library API.
 *
 * Exit codes (all tools): 0 ok, 1 runtime failure, 2 usage or config error,
 * 3 backend unavailable.
 */
#ifndef FPD_CLI_H
#define FPD_CLI_H

#include "formats/fpd-formats.h"
#include "heuristics/fpd-heuristics.h"
#include "lib/fpd.h"

#include <stdbool.h>
#include <stdio.h>

enum { CLI_EXIT_OK = 0, CLI_EXIT_FAILURE = 1, CLI_EXIT_USAGE = 2, CLI_EXIT_BACKEND = 3 };

/* The program name used in messages ("fpd-compress"). */
extern const char *cli_prog;

/* "PROG: error: MSG" and "Try 'PROG --help'." on stderr; exits 2. */
void cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* "PROG: error: MSG" on stderr (no exit). */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The MSG of the last cli_error since cli_clear_last_error ("" if none; truncated
 * to 511 bytes; owned by the module, valid until the next cli_error). */
const char *cli_last_error(void);
void cli_clear_last_error(void);
/* "PROG: warning: MSG" on stderr unless quiet. */
void cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Progress on stderr: enabled when stderr is a terminal, or forced. At most ~6
 * updates a second; cli_progress_done() clears the line. */
struct cli_progress {
    bool enabled;
    double last;
    const char *label;   /* e.g. the table's name */
    bool drawn;
};
void cli_progress_init(struct cli_progress *p, int mode /* -1 off, 0 auto (tty), 1 on */);
/* An fpd_progress_callback; user_data is a struct cli_progress *. Returns false
 * once SIGINT or SIGTERM was received (see cli_install_signals), so long work stops. */
bool cli_progress_cb(const char *stage, int64_t done, int64_t total, void *user_data);
void cli_progress_done(struct cli_progress *p);
/* Signals. Every tool that links cli.c has its handlers before main (a
 * constructor), with SIGBUS, SIGINT and SIGTERM unblocked:
 * - SIGBUS from a read past the end of a mapped input that was truncated during the
 *   run (fpd_mapped_file_at names it): "PROG: error: FILE: the file shrank while it
 *   was being read (truncated during the run)", the named temporary outputs
 *   removed (fpd_write_remove_temporaries), exit 1: the output being made is not
 *   written (fpd-batch's finished ones stay). Another SIGBUS keeps its default action.
 * - SIGINT/SIGTERM: "PROG: error: interrupted; nothing was written", the named
 *   temporary outputs removed, exit 128+N at once; after cli_install_signals (called
 *   before long work that polls), they only set a flag that cli_progress_cb turns
 *   into a cancellation and the tool reports (cli_interrupted). */
void cli_install_signals(void);
bool cli_interrupted(void);
/* 128 + the signal received (130 for SIGINT, 143 for SIGTERM), the shell's convention. */
int cli_interrupt_exit_code(void);

/* True if both paths name the same existing file (same device and inode). */
bool cli_same_file(const char *a, const char *b);
/* True if path exists (any type). */
bool cli_exists(const char *path);

/* Inputs (a safetensors file or one .npy table: fpd_input_open), the table check
 * (fpd_tensor_info_not_a_table) and row-frequency files (fpd_row_freq_load) are
 * library API: formats/fpd-formats.h, section "Inputs". */

/* Numeric options; each exits 2 with "OPT expects ..., got 'S'" when S is not a
 * whole number >= min / a finite number >= min / a finite number > 0. */
int64_t cli_parse_i64(const char *opt, const char *s, int64_t min);
double cli_parse_f64(const char *opt, const char *s, double min);
double cli_parse_pos(const char *opt, const char *s);
/* --free-coords auto|0|C: FPD_FREE_COORDS_AUTO for "auto", else a count >= 0 (exits 2
 * with "OPT expects auto, 0 or a count C >= 1, got 'S'"). */
int64_t cli_parse_free_coords(const char *opt, const char *s);

/* A size option: bytes >= 1, with K/M/G/T or KiB/MiB/GiB/TiB (powers of 1024) or
 * kB/MB/GB/TB (powers of 1000), e.g. 512K, 1.5MiB, 2GB. Exits 2 with a message
 * naming opt otherwise. */
size_t cli_parse_bytes(const char *opt, const char *s);
/* The same syntax without exiting (0 allowed, a space before the unit too), for
 * config files: false when s is not a size. fpd_size_parse (lib/fpd.h). */
bool cli_size_from_string(const char *s, uint64_t *out);

/* Human-readable bytes: "3.81 MiB" into buf. */
const char *cli_bytes(size_t n, char *buf, size_t len);
/* "25x28x29" into buf. */
const char *cli_shape(const int64_t *dims, int32_t n, char *buf, size_t len);
/* How an FPD table stores E of its free coordinates, as the tools' JSON names it: "int8",
 * "int4", "int8-sym", "int4-sym" (free-rowwise/1, free-sym/1), else the core dtype's name;
 * NULL without free coordinates or with the core dtype unknown. */
const char *cli_free_dtype_name(const struct fpd_table_meta *meta);

#endif
