/*
 * cli.c - shared code of the fpd-* tools (see cli.h).
 */
#include "tools/cli.h"

#include <errno.h>
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

void cli_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vmsg("error", fmt, ap);
    va_end(ap);
}

void cli_warn(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vmsg("warning", fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------ progress */

static volatile sig_atomic_t g_interrupted;

static void on_signal(int sig) {
    (void)sig;
    g_interrupted = 1;
}

void cli_install_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

bool cli_interrupted(void) { return g_interrupted != 0; }

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
    return true;
}

void cli_progress_done(struct cli_progress *p) {
    if (p->enabled && p->drawn) {
        fprintf(stderr, "\r\033[K");
        fflush(stderr);
    }
    p->drawn = false;
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

/* ------------------------------------------------------------ input */

enum fpd_status cli_input_open(const char *path, struct cli_input *in, struct fpd_error *err) {
    memset(in, 0, sizeof *in);
    unsigned char magic[6] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err->msg, sizeof err->msg, "%s: %s", path, strerror(errno));
        err->status = FPD_STATUS_IO;
        return FPD_STATUS_IO;
    }
    size_t got = fread(magic, 1, sizeof magic, f);
    fclose(f);
    if (got == 6 && memcmp(magic, "\x93NUMPY", 6) == 0) {
        enum fpd_status st = fpd_npy_open(path, &in->npy, err);
        if (st) return st;
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        snprintf(in->npy_name, sizeof in->npy_name, "%s", base);
        char *dot = strrchr(in->npy_name, '.');
        if (dot && strcmp(dot, ".npy") == 0) *dot = '\0';
        if (!in->npy_name[0]) snprintf(in->npy_name, sizeof in->npy_name, "weight");
        in->npy_tensor = *fpd_npy_tensor(in->npy);
        in->npy_tensor.name = in->npy_name;
        return FPD_STATUS_OK;
    }
    return fpd_safetensors_open(path, &in->st, err);
}

void cli_input_free(struct cli_input *in) {
    fpd_safetensors_free(in->st);
    fpd_npy_free(in->npy);
    memset(in, 0, sizeof *in);
}

int64_t cli_input_count(const struct cli_input *in) { return in->npy ? 1 : fpd_safetensors_count(in->st); }

const struct fpd_tensor_info *cli_input_tensor(const struct cli_input *in, int64_t i) {
    return in->npy ? &in->npy_tensor : fpd_safetensors_tensor(in->st, i);
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

const char *cli_shape(const int64_t *dims, int32_t n, char *buf, size_t len) {
    size_t off = 0;
    buf[0] = '\0';
    for (int32_t i = 0; i < n && off < len; i++)
        off += (size_t)snprintf(buf + off, len - off, "%s%lld", i ? "x" : "", (long long)dims[i]);
    return buf;
}
