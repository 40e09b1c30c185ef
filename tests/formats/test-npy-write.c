/*
 * test-npy-write.c - the .npy writer: every dtype numpy has round-trips through our
 * reader bit for bit (NaN payloads, -0, denormals included), the header is what
 * numpy writes (64-byte aligned data, the dict spelled as numpy spells it), the
 * refusals (BF16, bad shapes, an existing file) leave nothing behind, and numpy
 * itself reads the files (if python3 with numpy is there).
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "formats/fpd-formats.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char g_dir[256];

static void wdir_init(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/fpd-npyw-XXXXXX");
    cr_assert(mkdtemp(g_dir) != NULL);
}

static void wdir_fini(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", g_dir);
}

static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

/* Write t to DIR/name, read it back, compare everything. */
static void roundtrip(const struct fpd_tensor_info *t, const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    struct fpd_error err;
    cr_assert(eq(int, fpd_npy_write(path, t, 0, &err), FPD_STATUS_OK), "%s", err.msg);
    struct fpd_npy *npy;
    cr_assert(eq(int, fpd_npy_open(path, &npy, &err), FPD_STATUS_OK), "%s: %s", name, err.msg);
    const struct fpd_tensor_info *r = fpd_npy_tensor(npy);
    cr_assert(eq(int, r->dtype, t->dtype), "%s", name);
    cr_assert(eq(int, r->ndim, t->ndim), "%s", name);
    for (int32_t d = 0; d < t->ndim; d++) cr_assert(eq(i64, r->shape[d], t->shape[d]));
    cr_assert(eq(sz, r->nbytes, t->nbytes));
    cr_assert(t->nbytes == 0 || memcmp(r->data, t->data, t->nbytes) == 0, "%s: data differs", name);
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    cr_assert(eq(sz, (size_t)(size - (long)t->nbytes) % 64, 0), "%s: data not 64-byte aligned", name);
    fpd_npy_free(npy);
}

Test(npy_write, every_dtype_bit_exact, .init = wdir_init, .fini = wdir_fini) {
    /* F32 with NaN payloads, -0, infinities and a denormal */
    uint32_t f32[6] = {0x7fc00001u, 0xffa00000u, 0x80000000u, 0x7f800000u, 0x00000001u, 0x3f800000u};
    struct fpd_tensor_info t = {"", FPD_DTYPE_F32, 2, {2, 3}, f32, sizeof f32};
    roundtrip(&t, "f32.npy");
    uint64_t f64[3] = {0x7ff8000000000123ull, 0x8000000000000000ull, 1};
    t = (struct fpd_tensor_info){"", FPD_DTYPE_F64, 1, {3}, f64, sizeof f64};
    roundtrip(&t, "f64.npy");
    uint16_t u16[4] = {0x7e01, 0x8000, 0x0001, 0x3c00};
    t = (struct fpd_tensor_info){"", FPD_DTYPE_F16, 3, {1, 2, 2}, u16, sizeof u16};
    roundtrip(&t, "f16.npy");
    static const enum fpd_dtype ints[] = {FPD_DTYPE_I8,  FPD_DTYPE_I16, FPD_DTYPE_I32, FPD_DTYPE_I64,
                                          FPD_DTYPE_U8,  FPD_DTYPE_U16, FPD_DTYPE_U32, FPD_DTYPE_U64,
                                          FPD_DTYPE_BOOL, FPD_DTYPE_C64};
    unsigned char bytes[64];
    for (int i = 0; i < 64; i++) bytes[i] = (unsigned char)(i * 37 + 1);
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        size_t es = fpd_dtype_size(ints[i]);
        if (ints[i] == FPD_DTYPE_BOOL) memset(bytes, 1, sizeof bytes);
        t = (struct fpd_tensor_info){"", ints[i], 2, {2, 4}, bytes, 8 * es};
        char name[32];
        snprintf(name, sizeof name, "%s.npy", fpd_dtype_name(ints[i]));
        roundtrip(&t, name);
    }
    /* a scalar and an empty array */
    float one = 1.5f;
    t = (struct fpd_tensor_info){"", FPD_DTYPE_F32, 0, {0}, &one, sizeof one};
    roundtrip(&t, "scalar.npy");
    t = (struct fpd_tensor_info){"", FPD_DTYPE_F32, 2, {0, 5}, NULL, 0};
    roundtrip(&t, "empty.npy");
    cr_assert(eq(int, count_entries(g_dir), 15), "no temporary files left");
}

Test(npy_write, header_as_numpy_writes_it, .init = wdir_init, .fini = wdir_fini) {
    float v[3] = {1, 2, 3};
    struct fpd_tensor_info t = {"", FPD_DTYPE_F32, 1, {3}, v, sizeof v};
    char path[512];
    snprintf(path, sizeof path, "%s/v.npy", g_dir);
    struct fpd_error err;
    cr_assert(eq(int, fpd_npy_write(path, &t, 0, &err), FPD_STATUS_OK), "%s", err.msg);
    unsigned char buf[256];
    FILE *f = fopen(path, "rb");
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    /* 10 + 58 dict bytes, padded to 128 as numpy pads */
    cr_assert(eq(sz, n, 128 + sizeof v));
    cr_assert(memcmp(buf, "\x93NUMPY\x01\x00", 8) == 0);
    cr_assert(eq(int, buf[8] | (buf[9] << 8), 118));
    const char *dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }";
    cr_assert(memcmp(buf + 10, dict, strlen(dict)) == 0, "%.58s", (char *)buf + 10);
    cr_assert(eq(int, buf[127], '\n'));
    cr_assert(eq(int, buf[126], ' '));
    cr_assert(memcmp(buf + 128, v, sizeof v) == 0);
}

Test(npy_write, refusals_leave_nothing, .init = wdir_init, .fini = wdir_fini) {
    char path[512];
    snprintf(path, sizeof path, "%s/x.npy", g_dir);
    struct fpd_error err;
    uint16_t bf[2] = {0x3f80, 0x4000};
    struct fpd_tensor_info t = {"", FPD_DTYPE_BF16, 1, {2}, bf, sizeof bf};
    cr_assert(eq(int, fpd_npy_write(path, &t, 0, &err), FPD_STATUS_UNSUPPORTED));
    cr_assert(strstr(err.msg, "BF16") != NULL && strstr(err.msg, "x.npy") != NULL, "%s", err.msg);
    float v[4] = {0};
    t = (struct fpd_tensor_info){"", FPD_DTYPE_F32, 2, {2, 3}, v, sizeof v};
    cr_assert(eq(int, fpd_npy_write(path, &t, 0, &err), FPD_STATUS_INVALID_ARG));
    t = (struct fpd_tensor_info){"", FPD_DTYPE_F32, FPD_MAX_DIMS + 1, {1}, v, sizeof v};
    cr_assert(eq(int, fpd_npy_write(path, &t, 0, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(eq(int, count_entries(g_dir), 0));
    /* an existing file is kept unless FPD_WRITE_OVERWRITE */
    t = (struct fpd_tensor_info){"", FPD_DTYPE_F32, 1, {4}, v, sizeof v};
    cr_assert(eq(int, fpd_npy_write(path, &t, 0, &err), FPD_STATUS_OK), "%s", err.msg);
    v[0] = 7;
    cr_assert(eq(int, fpd_npy_write(path, &t, 0, &err), FPD_STATUS_IO));
    cr_assert(strstr(err.msg, "already exists") != NULL, "%s", err.msg);
    cr_assert(eq(int, fpd_npy_write(path, &t, FPD_WRITE_OVERWRITE, &err), FPD_STATUS_OK), "%s", err.msg);
    struct fpd_npy *npy;
    cr_assert(eq(int, fpd_npy_open(path, &npy, &err), FPD_STATUS_OK));
    cr_assert(eq(flt, ((const float *)fpd_npy_tensor(npy)->data)[0], 7.0f));
    fpd_npy_free(npy);
    /* a folder that does not exist: IO, nothing created */
    snprintf(path, sizeof path, "%s/no/such/x.npy", g_dir);
    cr_assert(eq(int, fpd_npy_write(path, &t, 0, &err), FPD_STATUS_IO));
    cr_assert(eq(int, count_entries(g_dir), 1));
}

Test(npy_write, numpy_reads_it, .init = wdir_init, .fini = wdir_fini) {
    if (system("python3 -c 'import numpy' >/dev/null 2>&1") != 0) cr_skip_test("python3 with numpy is not available");
    float m[6] = {0.5f, -1.0f, 2.25f, 1e-40f, -0.0f, 3.0f};
    int64_t iv[3] = {-1, 0, 1LL << 40};
    struct fpd_error err;
    char p1[512], p2[512], cmd[2048];
    snprintf(p1, sizeof p1, "%s/m.npy", g_dir);
    snprintf(p2, sizeof p2, "%s/i.npy", g_dir);
    struct fpd_tensor_info t = {"", FPD_DTYPE_F32, 2, {2, 3}, m, sizeof m};
    cr_assert(eq(int, fpd_npy_write(p1, &t, 0, &err), FPD_STATUS_OK), "%s", err.msg);
    t = (struct fpd_tensor_info){"", FPD_DTYPE_I64, 1, {3}, iv, sizeof iv};
    cr_assert(eq(int, fpd_npy_write(p2, &t, 0, &err), FPD_STATUS_OK), "%s", err.msg);
    snprintf(cmd, sizeof cmd,
             "python3 -c \"import numpy as np; a = np.load('%s'); b = np.load('%s'); "
             "assert a.dtype == np.float32 and a.shape == (2, 3), a; "
             "assert a.tobytes() == np.array([0.5, -1.0, 2.25, 1e-40, -0.0, 3.0], dtype=np.float32).tobytes(); "
             "assert b.dtype == np.int64 and b.tolist() == [-1, 0, 1 << 40], b\"",
             p1, p2);
    cr_assert(eq(int, system(cmd), 0));
}
