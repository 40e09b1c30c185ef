/*
 * cli.c - shared code of the fpd-* tools (see cli.h).
 */
#include "tools/cli.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const char *cli_prog = "fpd";

static void vmsg(const char *kind, const char *fmt, va_list ap) {
    fprintf(stderr, "%s: %s: ", cli_prog, kind);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void cli_usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vmsg("error", fmt, ap);
    va_end(ap);
    fprintf(stderr, "Try '%s --help'.\n", cli_prog);
    exit(CLI_EXIT_USAGE);
}

static char g_last_error[512];

void cli_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    va_list ap2;
    va_copy(ap2, ap);
    vsnprintf(g_last_error, sizeof g_last_error, fmt, ap2);
    va_end(ap2);
    vmsg("error", fmt, ap);
    va_end(ap);
}

const char *cli_last_error(void) { return g_last_error; }

void cli_clear_last_error(void) { g_last_error[0] = '\0'; }

void cli_warn(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vmsg("warning", fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------ progress */

static volatile sig_atomic_t g_interrupted;
static volatile sig_atomic_t g_deferred; /* 1 once cli_install_signals: the work polls g_interrupted */
static volatile sig_atomic_t g_progress_drawn; /* a progress line is on stderr */

/* write(2) of a NUL-terminated string, for signal handlers. */
static void put_err(const char *s) {
    size_t n = strlen(s);
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, s, n);
        if (w <= 0) return;
        s += w;
        n -= (size_t)w;
    }
}

/* "PROG: error: " on a line of its own (clearing a progress line). */
static void put_error_start(void) {
    if (g_progress_drawn) put_err("\r\033[K");
    put_err(cli_prog);
    put_err(": error: ");
}

static void on_signal(int sig) {
    g_interrupted = sig;
    if (g_deferred) return;
    /* before the work polls the flag (start-up, argument and input checks): stop now */
    put_error_start();
    put_err("interrupted; nothing was written\n");
    fpd_write_remove_temporaries();
    _exit(128 + sig);
}

/* SIGBUS: a read past the end of a mapped input that someone truncated meanwhile
 * (a mapping is read lazily, so a file that shrinks under us faults there). Named
 * by the formats' registry; any other SIGBUS is a bug and keeps its default action. */
static void on_sigbus(int sig, siginfo_t *si, void *uctx) {
    (void)uctx;
    const char *path = si ? fpd_mapped_file_at(si->si_addr) : NULL;
    if (!path) {
        signal(sig, SIG_DFL);
        raise(sig); /* delivered on return (a fault re-executes and gets it anyway) */
        return;
    }
    put_error_start();
    put_err(path);
    put_err(": the file shrank while it was being read (truncated during the run)\n");
    fpd_write_remove_temporaries();
    _exit(CLI_EXIT_FAILURE);
}

static void install(int sig, void (*fn)(int)) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = fn;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, NULL);
}

/* Every tool gets its handlers before main runs, so no signal finds it without
 * them (a SIGTERM 55 ms after the start used to kill fpd-compress silently): SIGBUS
 * (any tool may map an input), and SIGINT/SIGTERM in their immediate form. They
 * are unblocked too, in case the tool was started with them blocked (the mask is
 * inherited): one sent meanwhile is delivered now, to these handlers. */
__attribute__((constructor)) static void cli_install_handlers(void) {
    if (program_invocation_short_name && *program_invocation_short_name)
        cli_prog = program_invocation_short_name; /* until main sets it: messages name the tool */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, NULL);
    install(SIGINT, on_signal);
    install(SIGTERM, on_signal);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGBUS);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
}

void cli_install_signals(void) {
    g_deferred = 1;
    install(SIGINT, on_signal);
    install(SIGTERM, on_signal);
}

bool cli_interrupted(void) { return g_interrupted != 0; }

int cli_interrupt_exit_code(void) { return 128 + (g_interrupted ? (int)g_interrupted : SIGINT); }

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void cli_progress_init(struct cli_progress *p, int mode) {
    memset(p, 0, sizeof *p);
    p->enabled = mode > 0 || (mode == 0 && isatty(STDERR_FILENO));
    p->label = "";
}

bool cli_progress_cb(const char *stage, int64_t done, int64_t total, void *user_data) {
    struct cli_progress *p = user_data;
    if (g_interrupted) return false;
    if (!p || !p->enabled) return true;
    double t = now_s();
    if (t - p->last < 1.0 / 6.0 && done < total) return true;
    p->last = t;
    double pct = total > 0 ? 100.0 * (double)done / (double)total : 0.0;
    fprintf(stderr, "\r%s: %s: %s %5.1f%%\033[K", cli_prog, p->label, stage, pct);
    fflush(stderr);
    p->drawn = true;
    g_progress_drawn = 1;
    return true;
}

void cli_progress_done(struct cli_progress *p) {
    if (p->enabled && p->drawn) {
        fprintf(stderr, "\r\033[K");
        fflush(stderr);
    }
    p->drawn = false;
    g_progress_drawn = 0;
}

/* ------------------------------------------------------------ paths */

bool cli_same_file(const char *a, const char *b) {
    struct stat sa, sb;
    if (stat(a, &sa) != 0 || stat(b, &sb) != 0) return false;
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

bool cli_exists(const char *path) {
    struct stat s;
    return lstat(path, &s) == 0;
}

/* ------------------------------------------------------------ parsing */

int64_t cli_parse_free_coords(const char *opt, const char *s) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (strcmp(s, "auto") == 0) return FPD_FREE_COORDS_AUTO;
    if (errno || !end || *end || end == s || v < 0)
        cli_usage_error("%s expects auto, 0 or a count C >= 1, got '%s'", opt, s);
    return (int64_t)v;
}

int64_t cli_parse_i64(const char *opt, const char *s, int64_t min) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || !end || *end || end == s || v < min)
        cli_usage_error("%s expects an integer >= %lld, got '%s'", opt, (long long)min, s);
    return (int64_t)v;
}

double cli_parse_f64(const char *opt, const char *s, double min) {
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || !end || *end || end == s || !(v >= min) || !isfinite(v))
        cli_usage_error("%s expects a number >= %g, got '%s'", opt, min, s);
    return v;
}

double cli_parse_pos(const char *opt, const char *s) {
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || !end || *end || end == s || !(v > 0.0) || !isfinite(v))
        cli_usage_error("%s expects a positive number, got '%s'", opt, s);
    return v;
}

bool cli_size_from_string(const char *s, uint64_t *out) { return fpd_size_parse(s, out); }

size_t cli_parse_bytes(const char *opt, const char *s) {
    uint64_t b = 0;
    if (!cli_size_from_string(s, &b) || b < 1 || b > SIZE_MAX)
        cli_usage_error("%s expects a size in bytes >= 1 (e.g. 1048576, 512K, 1.5MiB, 2GB), got '%s'", opt, s);
    return (size_t)b;
}

/* ------------------------------------------------------------ format */

const char *cli_bytes(size_t n, char *buf, size_t len) {
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    int u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        u++;
    }
    if (u == 0) snprintf(buf, len, "%zu B", n);
    else snprintf(buf, len, "%.2f %s", v, units[u]);
    return buf;
}

const char *cli_free_dtype_name(const struct fpd_table_meta *meta) {
    if (meta->free_coords == 0) return NULL;
    if (meta->free_rowwise) return fpd_free_kind_name(meta->free_kind);
    return meta->core_dtype < FPD_DTYPE_COUNT ? fpd_dtype_name(meta->core_dtype) : NULL;
}

const char *cli_shape(const int64_t *dims, int32_t n, char *buf, size_t len) {
    size_t off = 0;
    buf[0] = '\0';
    for (int32_t i = 0; i < n && off < len; i++)
        off += (size_t)snprintf(buf + off, len - off, "%s%lld", i ? "x" : "", (long long)dims[i]);
    return buf;
}
