/*
 * pipe.c - "-" as standard input or output for the fpd tools (pipe.h).
 */
#include "tools/pipe.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum fpd_status pipe_input_open(const char *path, struct fpd_input *in, void **hold, struct fpd_error *err) {
    *hold = NULL;
    if (strcmp(path, "-") != 0) return fpd_input_open(path, in, err);
    memset(in, 0, sizeof *in);
    size_t cap = 1 << 16, len = 0;
    unsigned char *buf = malloc(cap);
    if (!buf) goto nomem;
    for (;;) {
        if (len == cap) {
            unsigned char *nb = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap * 2);
            if (!nb) goto nomem;
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + len, 1, cap - len, stdin);
        len += got;
        if (got == 0) break;
    }
    if (ferror(stdin)) {
        free(buf);
        snprintf(err->msg, sizeof err->msg, "-: cannot read standard input: %s", strerror(errno));
        return err->status = FPD_STATUS_IO;
    }
    enum fpd_status st = fpd_input_open_memory(buf, len, "-", in, err);
    if (st) free(buf);
    else *hold = buf;
    return st;
nomem:
    free(buf);
    snprintf(err->msg, sizeof err->msg, "-: out of memory reading standard input");
    return err->status = FPD_STATUS_NOMEM;
}

bool pipe_tmp_output(const char *base, char **dir, char **path) {
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp) tmp = "/tmp";
    *path = NULL;
    if (asprintf(dir, "%s/fpd-stdout-XXXXXX", tmp) < 0) {
        *dir = NULL;
        cli_error("out of memory");
        return false;
    }
    if (!mkdtemp(*dir)) {
        cli_error("%s: cannot create a temporary folder for standard output: %s", *dir, strerror(errno));
        free(*dir);
        *dir = NULL;
        return false;
    }
    if (asprintf(path, "%s/%s", *dir, base) < 0) {
        *path = NULL;
        rmdir(*dir);
        cli_error("out of memory");
        return false;
    }
    return true;
}

bool pipe_send_and_remove(const char *path, const char *dir) {
    bool ok = true;
    FILE *f = fopen(path, "rb");
    if (!f) {
        cli_error("%s: %s", path, strerror(errno));
        ok = false;
    } else {
        char b[1 << 16];
        size_t n;
        while ((n = fread(b, 1, sizeof b, f)) > 0)
            if (fwrite(b, 1, n, stdout) != n) {
                cli_error("cannot write to standard output: %s", strerror(errno));
                ok = false;
                break;
            }
        fclose(f);
        if (ok && fflush(stdout) != 0) {
            cli_error("cannot write to standard output: %s", strerror(errno));
            ok = false;
        }
    }
    unlink(path);
    rmdir(dir);
    return ok;
}
