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

const char *cli_not_a_table(const struct fpd_tensor_info *t, char *buf, size_t len) {
    if (t->ndim != 2 || !fpd_dtype_is_float(t->dtype)) {
        snprintf(buf, len, "an %s tensor with %d dimension(s); only 2-D float tables (F32, F64, F16, BF16) can be "
                 "compressed", fpd_dtype_name(t->dtype), (int)t->ndim);
        return buf;
    }
    if (t->shape[0] < 1 || t->shape[1] < 1) {
        char sh[64];
        snprintf(buf, len, "an empty %s table (shape %s): it has no %s to compress", fpd_dtype_name(t->dtype),
                 cli_shape(t->shape, t->ndim, sh, sizeof sh), t->shape[0] < 1 ? "rows" : "columns");
        return buf;
    }
    return NULL;
}

/* ------------------------------------------------------------ parsing */

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

bool cli_size_from_string(const char *s, uint64_t *out) {
    static const struct { const char *suffix; double mult; } units[] = {
        {"", 1.0},        {"B", 1.0},          {"K", 1024.0},  {"KiB", 1024.0}, {"kB", 1e3},   {"KB", 1e3},
        {"M", 1048576.0}, {"MiB", 1048576.0},  {"MB", 1e6},    {"G", 1073741824.0}, {"GiB", 1073741824.0},
        {"GB", 1e9},      {"T", 1099511627776.0}, {"TiB", 1099511627776.0}, {"TB", 1e12},
    };
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || !end || end == s || !(v >= 0.0) || !isfinite(v)) return false;
    while (*end == ' ') end++;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcmp(end, units[i].suffix) == 0) {
            double b = floor(v * units[i].mult);
            if (b >= 1.8e19) return false;
            *out = (uint64_t)b;
            return true;
        }
    return false;
}

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

const char *cli_shape(const int64_t *dims, int32_t n, char *buf, size_t len) {
    size_t off = 0;
    buf[0] = '\0';
    for (int32_t i = 0; i < n && off < len; i++)
        off += (size_t)snprintf(buf + off, len - off, "%s%lld", i ? "x" : "", (long long)dims[i]);
    return buf;
}

/* ------------------------------------------------------------ row frequencies */

static enum fpd_status freq_err(struct fpd_error *err, enum fpd_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static enum fpd_status freq_err(struct fpd_error *err, enum fpd_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    err->status = st;
    return st;
}

static bool npy_value(enum fpd_dtype t, const unsigned char *p, double *v) {
    switch (t) {
    case FPD_DTYPE_F32: { float x; memcpy(&x, p, 4); *v = x; return true; }
    case FPD_DTYPE_F64: { double x; memcpy(&x, p, 8); *v = x; return true; }
    case FPD_DTYPE_F16: { float x; fpd_dtype_to_f32(t, p, &x, 1); *v = x; return true; }
    case FPD_DTYPE_I8: *v = (int8_t)p[0]; return true;
    case FPD_DTYPE_U8: *v = p[0]; return true;
    case FPD_DTYPE_I16: { int16_t x; memcpy(&x, p, 2); *v = x; return true; }
    case FPD_DTYPE_U16: { uint16_t x; memcpy(&x, p, 2); *v = x; return true; }
    case FPD_DTYPE_I32: { int32_t x; memcpy(&x, p, 4); *v = x; return true; }
    case FPD_DTYPE_U32: { uint32_t x; memcpy(&x, p, 4); *v = x; return true; }
    case FPD_DTYPE_I64: { int64_t x; memcpy(&x, p, 8); *v = (double)x; return true; }
    case FPD_DTYPE_U64: { uint64_t x; memcpy(&x, p, 8); *v = (double)x; return true; }
    default: return false;
    }
}

enum fpd_status cli_load_row_freq(const char *path, int64_t rows, double **out, struct fpd_error *err) {
    *out = NULL;
    double *v = malloc((size_t)(rows > 0 ? rows : 1) * sizeof(double));
    if (!v) return freq_err(err, FPD_STATUS_NOMEM, "%s: out of memory for %lld row frequencies", path, (long long)rows);
    unsigned char magic[6] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) {
        free(v);
        return freq_err(err, FPD_STATUS_IO, "%s: %s", path, strerror(errno));
    }
    size_t got = fread(magic, 1, 6, f);
    if (got == 6 && memcmp(magic, "\x93NUMPY", 6) == 0) {
        fclose(f);
        struct fpd_npy *npy = NULL;
        enum fpd_status st = fpd_npy_open(path, &npy, err);
        if (st) {
            free(v);
            return st;
        }
        const struct fpd_tensor_info *t = fpd_npy_tensor(npy);
        bool shape_ok = (t->ndim == 1 && t->shape[0] == rows) || (t->ndim == 2 && t->shape[0] == rows && t->shape[1] == 1);
        size_t es = fpd_dtype_size(t->dtype);
        double x = 0;
        if (!shape_ok || !npy_value(t->dtype, t->data, &x)) {
            char sh[64];
            freq_err(err, FPD_STATUS_SHAPE, "%s: row frequencies must be a numeric [%lld] array, got %s %s", path,
                     (long long)rows, fpd_dtype_name(t->dtype), cli_shape(t->shape, t->ndim, sh, sizeof sh));
            fpd_npy_free(npy);
            free(v);
            return FPD_STATUS_SHAPE;
        }
        for (int64_t i = 0; i < rows; i++) {
            npy_value(t->dtype, (const unsigned char *)t->data + (size_t)i * es, &v[i]);
            if (!(v[i] >= 0.0) || !isfinite(v[i])) {
                freq_err(err, FPD_STATUS_FORMAT, "%s: row %lld has frequency %g; counts must be finite and >= 0", path,
                         (long long)i, v[i]);
                fpd_npy_free(npy);
                free(v);
                return FPD_STATUS_FORMAT;
            }
        }
        fpd_npy_free(npy);
        *out = v;
        return FPD_STATUS_OK;
    }
    rewind(f);
    char line[256];
    int64_t count = 0, lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (*p == '\n' || *p == '\r' || *p == '\0' || *p == '#') continue;
        char *end = NULL;
        errno = 0;
        double x = strtod(p, &end);
        while (end && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r')) end++;
        if (errno || end == p || (end && *end) || !(x >= 0.0) || !isfinite(x)) {
            line[strcspn(line, "\r\n")] = '\0';
            freq_err(err, FPD_STATUS_FORMAT, "%s:%lld: '%.40s' is not a non-negative count", path, (long long)lineno, line);
            fclose(f);
            free(v);
            return FPD_STATUS_FORMAT;
        }
        if (count == rows) {
            freq_err(err, FPD_STATUS_SHAPE, "%s: more than %lld counts (the table has %lld rows)", path, (long long)rows,
                     (long long)rows);
            fclose(f);
            free(v);
            return FPD_STATUS_SHAPE;
        }
        v[count++] = x;
    }
    fclose(f);
    if (count != rows) {
        free(v);
        return freq_err(err, FPD_STATUS_SHAPE, "%s: %lld counts for a table of %lld rows", path, (long long)count,
                        (long long)rows);
    }
    *out = v;
    return FPD_STATUS_OK;
}
