/*
 * sample-cli.h - the samples' few command-line helpers (samples use only the public
 * headers, lib/fpd.h, formats/fpd-formats.h and heuristics/fpd-heuristics.h, and
 * link only libfpd). They keep the names and behaviour of the tools' tools/cli.h so
 * the option code reads the same: exit codes 0 ok, 1 failure, 2 usage, 3 backend;
 * "PROG: error: MSG" on stderr. Static: each sample has its own copy.
 */
#ifndef FPD_SAMPLE_CLI_H
#define FPD_SAMPLE_CLI_H

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { CLI_EXIT_OK = 0, CLI_EXIT_FAILURE = 1, CLI_EXIT_USAGE = 2, CLI_EXIT_BACKEND = 3 };
static const char *cli_prog = "sample"; /* set by main */

static void cli_verror(const char *fmt, va_list ap) {
    fprintf(stderr, "%s: error: ", cli_prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

static void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void cli_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    cli_verror(fmt, ap);
    va_end(ap);
}

/* The message, "Try 'PROG --help'." and exit 2. */
static void cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void cli_usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    cli_verror(fmt, ap);
    va_end(ap);
    fprintf(stderr, "Try '%s --help'.\n", cli_prog);
    exit(CLI_EXIT_USAGE);
}

/* A whole number >= min, else a usage error naming opt. */
__attribute__((unused)) static int64_t cli_parse_i64(const char *opt, const char *s, int64_t min) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || !end || *end || end == s || v < min)
        cli_usage_error("%s expects an integer >= %lld, got '%s'", opt, (long long)min, s);
    return (int64_t)v;
}

/* A finite number >= min, else a usage error naming opt. */
__attribute__((unused)) static double cli_parse_f64(const char *opt, const char *s, double min) {
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || !end || *end || end == s || !(v >= min) || !isfinite(v))
        cli_usage_error("%s expects a number >= %g, got '%s'", opt, min, s);
    return v;
}

/* A finite number > 0, else a usage error naming opt. */
__attribute__((unused)) static double cli_parse_pos(const char *opt, const char *s) {
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || !end || *end || end == s || !(v > 0.0) || !isfinite(v))
        cli_usage_error("%s expects a positive number, got '%s'", opt, s);
    return v;
}

/* How the free coordinates' projection P steps (fpd_gmf_train_params): "fixed" -> -1
 * (free_proj_fixed), "core" -> 0 (the cores' step), else a step > 0
 * (free_proj_learning_rate); anything else is a usage error naming opt. */
__attribute__((unused)) static double cli_parse_free_proj(const char *opt, const char *s) {
    if (!strcmp(s, "fixed")) return -1.0;
    if (!strcmp(s, "core")) return 0.0;
    char *end = NULL;
    double v = strtod(s, &end);
    if (!end || end == s || *end || !(v > 0.0 && isfinite(v)))
        cli_usage_error("%s expects 'fixed', 'core' or a step > 0, got '%s'", opt, s);
    return v;
}

/* SIGINT/SIGTERM set a flag; the trainers' epoch callbacks return false on it, so
 * training stops after the epoch in progress. */
static volatile sig_atomic_t g_interrupted;
static void on_signal(int sig) { g_interrupted = sig; }
__attribute__((unused)) static void cli_install_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}
__attribute__((unused)) static bool cli_interrupted(void) { return g_interrupted != 0; }

#endif
