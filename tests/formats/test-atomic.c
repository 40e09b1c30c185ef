/*
 * test-atomic.c - atomic outputs and the registries the tools' signal handlers
 * read (issue 14): a writer killed by SIGKILL leaves no file (unnamed temporary),
 * or, on a system without O_TMPFILE, leaves a named one that the next write of the
 * same target removes (but never one a live writer holds, nor a fresh one);
 * fpd_write_remove_temporaries; fpd_mapped_file_at; an input truncated while it is
 * copied gives an error naming it.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "formats/formats-impl.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

static char g_dir[64];

static void dir_init(void) {
    strcpy(g_dir, "/tmp/fpd-atomic-XXXXXX");
    cr_assert(mkdtemp(g_dir) != NULL);
}

static void dir_fini(void) {
    DIR *d = opendir(g_dir);
    if (!d) return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
            unlink(p);
        }
    closedir(d);
    rmdir(g_dir);
}

/* The names in g_dir, sorted, space-separated ("" when empty). */
static const char *listing(void) {
    static char out[2048];
    char names[16][256];
    int n = 0;
    DIR *d = opendir(g_dir);
    struct dirent *e;
    while ((e = readdir(d)) && n < 16)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) snprintf(names[n++], sizeof names[0], "%s", e->d_name);
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], (int (*)(const void *, const void *))strcmp);
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (i) strcat(out, " ");
        strcat(out, names[i]);
    }
    return out;
}

/* The single name in g_dir that starts with prefix, into buf (full path). */
static bool find_prefixed(const char *prefix, char *buf, size_t cap) {
    DIR *d = opendir(g_dir);
    struct dirent *e;
    bool found = false;
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, prefix, strlen(prefix))) {
            snprintf(buf, cap, "%s/%s", g_dir, e->d_name);
            found = true;
        }
    closedir(d);
    return found;
}

static void age(const char *path, int seconds) {
    struct timeval tv[2];
    gettimeofday(&tv[0], NULL);
    tv[0].tv_sec -= seconds;
    tv[1] = tv[0];
    cr_assert(utimes(path, tv) == 0);
}

/* A child opens an atomic output, writes to it and is killed by SIGKILL. */
static void killed_writer(const char *path, bool named) {
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        fpd__atomic_named_only = named;
        struct fpd__atomic_file f;
        struct fpd_error err;
        if (fpd__atomic_open(path, 0, &f, &err) || fpd__atomic_write(&f, "partial", 7, &err)) _exit(3);
        raise(SIGKILL);
        _exit(4);
    }
    int ws = 0;
    cr_assert(waitpid(pid, &ws, 0) == pid);
    bool killed = WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL;
    cr_assert(killed, "the writer was not killed (status %d)", ws);
}

static const struct fpd_tensor_info g_t = {"w", FPD_DTYPE_F32, 1, {2}, "\0\0\x80?\0\0\0@", 8};

Test(atomic, sigkill_leaves_nothing, .init = dir_init, .fini = dir_fini) {
    char path[256];
    snprintf(path, sizeof path, "%s/out.safetensors", g_dir);
    killed_writer(path, false);
    const char *left = listing();
    cr_assert(eq(str, (char *)left, ""));
}

Test(atomic, stale_named_temporary_removed_by_next_write, .init = dir_init, .fini = dir_fini) {
    char path[256], tmp[512];
    snprintf(path, sizeof path, "%s/out.safetensors", g_dir);
    killed_writer(path, true); /* as on a file system without O_TMPFILE */
    cr_assert(find_prefixed(".out.safetensors.tmp-", tmp, sizeof tmp), "no temporary: %s", listing());
    age(tmp, 3600);
    struct fpd_error err;
    cr_assert(eq(int, fpd_safetensors_write(path, &g_t, 1, NULL, NULL, 0, 0, &err), FPD_STATUS_OK), "%s", err.msg);
    cr_assert(eq(str, (char *)listing(), "out.safetensors"));
}

Test(atomic, named_writer_cleans_up_too, .init = dir_init, .fini = dir_fini) {
    char path[256], tmp[512];
    snprintf(path, sizeof path, "%s/out.safetensors", g_dir);
    killed_writer(path, true);
    cr_assert(find_prefixed(".out.safetensors.tmp-", tmp, sizeof tmp));
    age(tmp, 3600);
    fpd__atomic_named_only = true; /* the next write is a named one too */
    struct fpd_error err;
    cr_assert(eq(int, fpd_safetensors_write(path, &g_t, 1, NULL, NULL, 0, 0, &err), FPD_STATUS_OK), "%s", err.msg);
    cr_assert(eq(int, fpd_safetensors_write(path, &g_t, 1, NULL, NULL, 0, FPD_WRITE_OVERWRITE, &err), FPD_STATUS_OK),
              "%s", err.msg);
    cr_assert(eq(str, (char *)listing(), "out.safetensors"));
    fpd__atomic_named_only = false;
}

Test(atomic, live_or_fresh_temporaries_are_kept, .init = dir_init, .fini = dir_fini) {
    char path[256], held[512], fresh[512], other[512];
    snprintf(path, sizeof path, "%s/out.safetensors", g_dir);
    snprintf(held, sizeof held, "%s/.out.safetensors.tmp-AAAAAA", g_dir);
    snprintf(fresh, sizeof fresh, "%s/.out.safetensors.tmp-BBBBBB", g_dir);
    snprintf(other, sizeof other, "%s/.other.safetensors.tmp-CCCCCC", g_dir);
    int hfd = open(held, O_WRONLY | O_CREAT, 0644), ffd = open(fresh, O_WRONLY | O_CREAT, 0644),
        ofd = open(other, O_WRONLY | O_CREAT, 0644);
    cr_assert(hfd >= 0 && ffd >= 0 && ofd >= 0);
    cr_assert(flock(hfd, LOCK_EX) == 0); /* a writer still at work */
    close(ffd);
    close(ofd);
    age(held, 3600);
    age(other, 3600); /* stale, but another target's */
    struct fpd_error err;
    cr_assert(eq(int, fpd_safetensors_write(path, &g_t, 1, NULL, NULL, 0, 0, &err), FPD_STATUS_OK), "%s", err.msg);
    cr_assert(eq(str, (char *)listing(),
                 ".other.safetensors.tmp-CCCCCC .out.safetensors.tmp-AAAAAA .out.safetensors.tmp-BBBBBB out.safetensors"));
    close(hfd);
}

Test(atomic, remove_temporaries_for_signal_handlers, .init = dir_init, .fini = dir_fini) {
    char path[256];
    snprintf(path, sizeof path, "%s/out.npy", g_dir);
    fpd__atomic_named_only = true;
    struct fpd__atomic_file f;
    struct fpd_error err;
    cr_assert(eq(int, fpd__atomic_open(path, 0, &f, &err), FPD_STATUS_OK), "%s", err.msg);
    cr_assert(strncmp(listing(), ".out.npy.tmp-", 13) == 0, "%s", listing());
    fpd_write_remove_temporaries();
    cr_assert(eq(str, (char *)listing(), ""));
    fpd__atomic_abort(&f); /* already gone: nothing to do, nothing else removed */
    fpd__atomic_named_only = false;
    /* an unnamed temporary has nothing to remove, and publishes fine afterwards */
    cr_assert(eq(int, fpd__atomic_open(path, 0, &f, &err), FPD_STATUS_OK), "%s", err.msg);
    cr_assert(f.unnamed, "O_TMPFILE is expected on the test machine's /tmp");
    cr_assert(eq(str, (char *)listing(), ""));
    fpd_write_remove_temporaries();
    cr_assert(eq(int, fpd__atomic_write(&f, "x", 1, &err), FPD_STATUS_OK));
    cr_assert(eq(int, fpd__atomic_commit(&f, 0, &err), FPD_STATUS_OK), "%s", err.msg);
    cr_assert(eq(str, (char *)listing(), "out.npy"));
    struct stat sb;
    cr_assert(stat(path, &sb) == 0 && sb.st_size == 1);
    /* and never replaces an existing file, even when it appears after the open */
    char path2[256];
    snprintf(path2, sizeof path2, "%s/late.npy", g_dir);
    cr_assert(eq(int, fpd__atomic_open(path2, 0, &f, &err), FPD_STATUS_OK));
    close(open(path2, O_WRONLY | O_CREAT, 0644));
    cr_assert(eq(int, fpd__atomic_commit(&f, 0, &err), FPD_STATUS_IO));
    cr_assert(strstr(err.msg, "already exists") != NULL, "%s", err.msg);
    cr_assert(eq(str, (char *)listing(), "late.npy out.npy"));
}

Test(atomic, mapped_file_at, .init = dir_init, .fini = dir_fini) {
    char path[256];
    snprintf(path, sizeof path, "%s/in.safetensors", g_dir);
    struct fpd_error err;
    cr_assert(eq(int, fpd_safetensors_write(path, &g_t, 1, NULL, NULL, 0, 0, &err), FPD_STATUS_OK));
    struct fpd_safetensors *st;
    cr_assert(eq(int, fpd_safetensors_open(path, &st, &err), FPD_STATUS_OK), "%s", err.msg);
    const unsigned char *d = fpd_safetensors_tensor(st, 0)->data;
    cr_assert(eq(str, (char *)fpd_mapped_file_at(d), path));
    cr_assert(eq(str, (char *)fpd_mapped_file_at(d + 7), path));
    cr_assert(fpd_mapped_file_at(d + 4096) == NULL); /* past the mapping's page */
    cr_assert(fpd_mapped_file_at(&err) == NULL);
    fpd_safetensors_free(st);
    cr_assert(fpd_mapped_file_at(d) == NULL);
}

/* issue 14, item 1: an input truncated while its tensors are copied to the output */
Test(atomic, truncated_input_while_copying, .init = dir_init, .fini = dir_fini) {
    char in[256], out[256];
    snprintf(in, sizeof in, "%s/in.safetensors", g_dir);
    snprintf(out, sizeof out, "%s/out.safetensors", g_dir);
    static float big[4096 * 4];
    struct fpd_tensor_info t = {"w", FPD_DTYPE_F32, 2, {4096, 4}, big, sizeof big};
    struct fpd_error err;
    cr_assert(eq(int, fpd_safetensors_write(in, &t, 1, NULL, NULL, 0, 0, &err), FPD_STATUS_OK));
    struct fpd_safetensors *st;
    cr_assert(eq(int, fpd_safetensors_open(in, &st, &err), FPD_STATUS_OK), "%s", err.msg);
    cr_assert(truncate(in, 4096) == 0); /* someone else shortens it */
    enum fpd_status s = fpd_safetensors_write(out, fpd_safetensors_tensor(st, 0), 1, NULL, NULL, 0, 0, &err);
    cr_assert(eq(int, s, FPD_STATUS_IO));
    cr_assert(strstr(err.msg, in) && strstr(err.msg, "the file shrank while it was being read"), "%s", err.msg);
    cr_assert(eq(str, (char *)listing(), "in.safetensors"));
    fpd_safetensors_free(st);
}

Test(atomic, write_file_atomic, .init = dir_init, .fini = dir_fini) {
    char path[256];
    snprintf(path, sizeof path, "%s/report.json", g_dir);
    struct fpd_error err;
    cr_assert(eq(int, fpd_write_file_atomic(path, "{}\n", 3, 0, &err), FPD_STATUS_OK), "%s", err.msg);
    cr_assert(eq(int, fpd_write_file_atomic(path, "[]\n", 3, 0, &err), FPD_STATUS_IO));
    cr_assert(strstr(err.msg, "already exists") != NULL, "%s", err.msg);
    cr_assert(eq(int, fpd_write_file_atomic(path, "[1]\n", 4, FPD_WRITE_OVERWRITE, &err), FPD_STATUS_OK), "%s", err.msg);
    FILE *f = fopen(path, "rb");
    char buf[16] = {0};
    size_t got = fread(buf, 1, sizeof buf, f);
    fclose(f);
    cr_assert(eq(sz, got, 4));
    cr_assert(eq(str, buf, "[1]\n"));
    cr_assert(eq(int, fpd_write_file_atomic(path, NULL, 0, FPD_WRITE_OVERWRITE, &err), FPD_STATUS_OK), "%s", err.msg);
    struct stat sb;
    cr_assert(stat(path, &sb) == 0 && sb.st_size == 0);
    cr_assert(eq(str, (char *)listing(), "report.json"));
    char bad[256];
    snprintf(bad, sizeof bad, "%s/nofolder/x.json", g_dir);
    cr_assert(eq(int, fpd_write_file_atomic(bad, "x", 1, 0, &err), FPD_STATUS_IO));
    cr_assert(strstr(err.msg, bad) != NULL, "%s", err.msg);
}
