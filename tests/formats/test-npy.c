/*
 * test-npy.c - the .npy reader: hand-made v1/v2/v3 files, every refusal with its
 * status and message, a file from NumPy itself (if python3 is there), and the
 * real GloVe table (if the shared data folder is there).
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "formats/fpd-formats.h"
#include "tests/test-util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct nblob {
    unsigned char *p;
    size_t n;
};

/* A .npy file: magic, version major.0, the dict text padded with spaces and '\n'
 * to a multiple of 64 (as numpy does), then data_len bytes of data. Allocated
 * exactly so that a read past the end shows under valgrind/ASan. */
static struct nblob npy_make(int major, const char *dict, const void *data, size_t data_len) {
    size_t pre = major == 1 ? 10 : 12, dl = strlen(dict);
    size_t hlen = dl + 1;
    while ((pre + hlen) % 64) hlen++;
    struct nblob b;
    b.n = pre + hlen + data_len;
    b.p = malloc(b.n);
    memcpy(b.p, "\x93NUMPY", 6);
    b.p[6] = (unsigned char)major;
    b.p[7] = 0;
    for (size_t i = 0; i < pre - 8; i++) b.p[8 + i] = (unsigned char)(hlen >> (8 * i));
    memcpy(b.p + pre, dict, dl);
    memset(b.p + pre + dl, ' ', hlen - dl - 1);
    b.p[pre + hlen - 1] = '\n';
    if (data_len) memcpy(b.p + pre + hlen, data, data_len);
    return b;
}

static void expect_fail(struct nblob b, enum fpd_status want, const char *substr) {
    struct fpd_npy *npy = (struct fpd_npy *)1;
    struct fpd_error err;
    enum fpd_status s = fpd_npy_open_memory(b.p, b.n, "t.npy", &npy, &err);
    cr_assert(eq(int, s, want), "status %s, want %s: %s", fpd_status_str(s), fpd_status_str(want), err.msg);
    cr_assert(npy == NULL);
    cr_assert(strstr(err.msg, "t.npy") != NULL, "message lacks the name: %s", err.msg);
    cr_assert(strstr(err.msg, substr) != NULL, "message '%s' lacks '%s'", err.msg, substr);
    free(b.p);
}

static const float g_f4[6] = {1.0f, -2.0f, 0.5f, 3.25f, -0.125f, 1e6f};
static const double g_f8[3] = {1e-300, -2.0, 3.141592653589793};
static const uint16_t g_f2 = 0x3e00; /* 1.5 */

Test(npy, v1_f4_matrix) {
    struct nblob b = npy_make(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", g_f4, sizeof g_f4);
    struct fpd_npy *npy;
    struct fpd_error err;
    cr_assert(eq(int, fpd_npy_open_memory(b.p, b.n, "t.npy", &npy, &err), FPD_STATUS_OK), "%s", err.msg);
    const struct fpd_tensor_info *t = fpd_npy_tensor(npy);
    cr_assert(eq(int, t->dtype, FPD_DTYPE_F32));
    cr_assert(eq(int, t->ndim, 2));
    cr_assert(eq(i64, t->shape[0], 2));
    cr_assert(eq(i64, t->shape[1], 3));
    cr_assert(eq(sz, t->nbytes, sizeof g_f4));
    cr_assert(eq(str, (char *)t->name, ""));
    cr_assert(t->data == b.p + b.n - sizeof g_f4);
    cr_assert(eq(sz, (size_t)((const unsigned char *)t->data - b.p) % 64, 0));
    cr_assert(memcmp(t->data, g_f4, sizeof g_f4) == 0);
    fpd_npy_free(npy);
    fpd_npy_free(NULL);
    free(b.p);
}

Test(npy, v2_f8_vector) {
    struct nblob b = npy_make(2, "{\"descr\":\"<f8\",\"fortran_order\":False,\"shape\":(3,)}", g_f8, sizeof g_f8);
    struct fpd_npy *npy;
    struct fpd_error err;
    cr_assert(eq(int, fpd_npy_open_memory(b.p, b.n, "t.npy", &npy, &err), FPD_STATUS_OK), "%s", err.msg);
    const struct fpd_tensor_info *t = fpd_npy_tensor(npy);
    cr_assert(eq(int, t->dtype, FPD_DTYPE_F64));
    cr_assert(eq(int, t->ndim, 1));
    cr_assert(eq(i64, t->shape[0], 3));
    float f[3];
    cr_assert(eq(int, fpd_dtype_to_f32(t->dtype, t->data, f, 3), FPD_STATUS_OK));
    cr_assert(eq(flt, f[1], -2.0f));
    cr_assert(eq(flt, f[2], 3.14159274f));
    fpd_npy_free(npy);
    free(b.p);
}

Test(npy, v3_f2_scalar_and_key_order) {
    struct nblob b = npy_make(3, "{'shape': (), 'fortran_order': False, 'descr': '<f2'}", &g_f2, 2);
    struct fpd_npy *npy;
    struct fpd_error err;
    cr_assert(eq(int, fpd_npy_open_memory(b.p, b.n, "t.npy", &npy, &err), FPD_STATUS_OK), "%s", err.msg);
    const struct fpd_tensor_info *t = fpd_npy_tensor(npy);
    cr_assert(eq(int, t->dtype, FPD_DTYPE_F16));
    cr_assert(eq(int, t->ndim, 0));
    cr_assert(eq(i64, fpd_tensor_info_numel(t), 1));
    float f;
    cr_assert(eq(int, fpd_dtype_to_f32(t->dtype, t->data, &f, 1), FPD_STATUS_OK));
    cr_assert(eq(flt, f, 1.5f));
    fpd_npy_free(npy);
    free(b.p);
}

Test(npy, other_accepted_forms) {
    static const unsigned char bytes[16] = {0};
    struct {
        const char *dict;
        enum fpd_dtype dtype;
        size_t nbytes;
        int32_t ndim;
    } cases[] = {
        {"{'descr': '=f4', 'fortran_order': False, 'shape': (4,), }", FPD_DTYPE_F32, 16, 1},
        {"{'descr': '|u1', 'fortran_order': False, 'shape': (2, 8), }", FPD_DTYPE_U8, 16, 2},
        {"{'descr': '|b1', 'fortran_order': False, 'shape': (16,), }", FPD_DTYPE_BOOL, 16, 1},
        {"{'descr': '<i8', 'fortran_order': False, 'shape': (2L, 1L), }", FPD_DTYPE_I64, 16, 2},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (0, 100), }", FPD_DTYPE_F32, 0, 2},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,4), }", FPD_DTYPE_F32, 16, 8},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct nblob b = npy_make(1, cases[i].dict, bytes, cases[i].nbytes);
        struct fpd_npy *npy;
        struct fpd_error err;
        cr_assert(eq(int, fpd_npy_open_memory(b.p, b.n, "t.npy", &npy, &err), FPD_STATUS_OK), "%s: %s",
                  cases[i].dict, err.msg);
        cr_assert(eq(int, fpd_npy_tensor(npy)->dtype, cases[i].dtype));
        cr_assert(eq(sz, fpd_npy_tensor(npy)->nbytes, cases[i].nbytes));
        cr_assert(eq(int, fpd_npy_tensor(npy)->ndim, cases[i].ndim));
        fpd_npy_free(npy);
        free(b.p);
    }
}

Test(npy, refuses_fortran_order) {
    expect_fail(npy_make(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", g_f4, sizeof g_f4),
                FPD_STATUS_UNSUPPORTED, "fortran_order True is not supported; save with np.ascontiguousarray");
}

Test(npy, refuses_big_endian) {
    expect_fail(npy_make(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (6,), }", g_f4, sizeof g_f4),
                FPD_STATUS_UNSUPPORTED, "big-endian dtype '>f4' is not supported");
}

Test(npy, refuses_object_and_structured) {
    expect_fail(npy_make(1, "{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", g_f4, 16),
                FPD_STATUS_UNSUPPORTED, "object dtype '|O' is not supported");
    expect_fail(npy_make(1, "{'descr': [('a', '<f4'), ('b', '<i4')], 'fortran_order': False, 'shape': (2,), }", g_f4,
                         16),
                FPD_STATUS_UNSUPPORTED, "structured dtype");
    expect_fail(npy_make(1, "{'descr': '<U10', 'fortran_order': False, 'shape': (1,), }", g_f4, 16),
                FPD_STATUS_UNSUPPORTED, "dtype '<U10' is not supported");
    expect_fail(npy_make(1, "{'descr': '|f4', 'fortran_order': False, 'shape': (1,), }", g_f4, 4), FPD_STATUS_FORMAT,
                "byte order '|' is only meaningful for single-byte types");
}

Test(npy, refuses_truncated_file) {
    struct nblob b = npy_make(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", g_f4, sizeof g_f4);
    b.n -= 1; /* the last byte is cut off (the buffer stays allocated in full) */
    expect_fail(b, FPD_STATUS_FORMAT, "file truncated: shape (2, 3) of F32 needs 24 data bytes but only 23 follow");
}

Test(npy, refuses_bad_magic_and_version) {
    struct nblob b = npy_make(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }", g_f4, sizeof g_f4);
    b.p[1] = 'n';
    expect_fail(b, FPD_STATUS_FORMAT, "not a .npy file: bad magic");
    b = npy_make(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }", g_f4, sizeof g_f4);
    b.p[6] = 4;
    expect_fail(b, FPD_STATUS_UNSUPPORTED, ".npy format version 4.0 is not supported");
    b = npy_make(1, "{}", NULL, 0);
    b.n = 3;
    expect_fail(b, FPD_STATUS_FORMAT, "bad magic");
    b = npy_make(1, "{}", NULL, 0);
    b.n = 7;
    expect_fail(b, FPD_STATUS_FORMAT, "too short");
    b = npy_make(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }", g_f4, sizeof g_f4);
    b.p[9] = 0x7f; /* header length 32k + ... past the end */
    expect_fail(b, FPD_STATUS_FORMAT, "runs past the end of the file");
}

Test(npy, refuses_malformed_header) {
    expect_fail(npy_make(1, "{'descr': '<f4', 'shape': (6,), }", g_f4, 24), FPD_STATUS_FORMAT,
                "lacks the key 'fortran_order'");
    expect_fail(npy_make(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), 'x': 1}", g_f4, 24),
                FPD_STATUS_FORMAT, "unexpected key 'x'");
    expect_fail(npy_make(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), 'shape': (6,)}", g_f4, 24),
                FPD_STATUS_FORMAT, "key 'shape' repeated");
    expect_fail(npy_make(1, "{'descr': '<f4', 'fortran_order': false, 'shape': (6,)}", g_f4, 24), FPD_STATUS_FORMAT,
                "'fortran_order' must be True or False");
    expect_fail(npy_make(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-6,)}", g_f4, 24), FPD_STATUS_FORMAT,
                "'shape' must hold non-negative integers");
    expect_fail(npy_make(1, "{'descr': '<f4', 'fortran_order': False, 'shape': [6]}", g_f4, 24), FPD_STATUS_FORMAT,
                "'shape' must be a tuple");
    expect_fail(npy_make(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (6,)", g_f4, 24), FPD_STATUS_FORMAT,
                "expected ',' or '}'");
    expect_fail(npy_make(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (6,)} x", g_f4, 24), FPD_STATUS_FORMAT,
                "unexpected bytes after the dict");
    expect_fail(npy_make(1, "{'descr: '<f4'}", g_f4, 24), FPD_STATUS_FORMAT, ".npy header");
    expect_fail(npy_make(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}", g_f4, 24),
                FPD_STATUS_FORMAT, "overflows");
    expect_fail(npy_make(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296)}", g_f4, 24),
                FPD_STATUS_FORMAT, "overflows");
    /* issue 14: a zero dimension does not excuse an overflowing product (NumPy refuses it too) */
    expect_fail(npy_make(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (488888888, 8888888888888, 0)}", g_f4,
                         0),
                FPD_STATUS_FORMAT, "overflows");
    expect_fail(npy_make(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 4294967296, 4294967296)}", g_f4, 0),
                FPD_STATUS_FORMAT, "overflows");
    expect_fail(npy_make(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1)}", g_f4, 4),
                FPD_STATUS_UNSUPPORTED, "9 dimensions; at most 8");
}

/* ------------------------------------------------------------ files */

static char g_dir[64];

static void tmpdir_init(void) {
    strcpy(g_dir, "/tmp/fpd-npy-XXXXXX");
    cr_assert(mkdtemp(g_dir) != NULL);
}

static void tmpdir_fini(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", g_dir);
}

Test(npy, open_file, .init = tmpdir_init, .fini = tmpdir_fini) {
    char path[256];
    snprintf(path, sizeof path, "%s/a.npy", g_dir);
    struct nblob b = npy_make(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", g_f4, sizeof g_f4);
    FILE *f = fopen(path, "wb");
    cr_assert(f && fwrite(b.p, 1, b.n, f) == b.n);
    fclose(f);
    free(b.p);
    struct fpd_npy *npy;
    struct fpd_error err;
    cr_assert(eq(int, fpd_npy_open(path, &npy, &err), FPD_STATUS_OK), "%s", err.msg);
    cr_assert(memcmp(fpd_npy_tensor(npy)->data, g_f4, sizeof g_f4) == 0);
    fpd_npy_free(npy);
    /* an empty file and a missing one */
    f = fopen(path, "wb");
    fclose(f);
    cr_assert(eq(int, fpd_npy_open(path, &npy, &err), FPD_STATUS_FORMAT));
    cr_assert(strstr(err.msg, path) && strstr(err.msg, "bad magic"), "%s", err.msg);
    snprintf(path, sizeof path, "%s/missing.npy", g_dir);
    cr_assert(eq(int, fpd_npy_open(path, &npy, &err), FPD_STATUS_IO));
    cr_assert(strstr(err.msg, "cannot open") != NULL, "%s", err.msg);
}

Test(npy, numpy_written_files, .init = tmpdir_init, .fini = tmpdir_fini) {
    if (system("python3 -c 'import numpy' >/dev/null 2>&1") != 0) cr_skip_test("python3 with numpy is not available");
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "cd '%s' && python3 -c \"import numpy as np; a = (np.arange(20, dtype=np.float32) / 8).reshape(4, 5); "
             "np.save('v1.npy', a); f = open('v2.npy', 'wb'); np.lib.format.write_array(f, a.astype('<f8'), "
             "version=(2, 0)); f.close(); f = open('v3.npy', 'wb'); np.lib.format.write_array(f, a.astype('<f2'), "
             "version=(3, 0)); f.close(); np.save('big.npy', a.astype('>f4')); "
             "np.save('fort.npy', np.asfortranarray(a))\"",
             g_dir);
    cr_assert(eq(int, system(cmd), 0));
    const char *names[3] = {"v1.npy", "v2.npy", "v3.npy"};
    const enum fpd_dtype dts[3] = {FPD_DTYPE_F32, FPD_DTYPE_F64, FPD_DTYPE_F16};
    char path[256];
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", g_dir, names[i]);
        struct fpd_npy *npy;
        struct fpd_error err;
        cr_assert(eq(int, fpd_npy_open(path, &npy, &err), FPD_STATUS_OK), "%s", err.msg);
        const struct fpd_tensor_info *t = fpd_npy_tensor(npy);
        cr_assert(eq(int, t->dtype, dts[i]));
        cr_assert(t->ndim == 2 && t->shape[0] == 4 && t->shape[1] == 5);
        float f[20];
        cr_assert(eq(int, fpd_dtype_to_f32(t->dtype, t->data, f, 20), FPD_STATUS_OK));
        for (int j = 0; j < 20; j++) cr_assert(eq(flt, f[j], (float)j / 8), "%s[%d]", names[i], j);
        fpd_npy_free(npy);
    }
    struct fpd_npy *npy;
    struct fpd_error err;
    snprintf(path, sizeof path, "%s/big.npy", g_dir);
    cr_assert(eq(int, fpd_npy_open(path, &npy, &err), FPD_STATUS_UNSUPPORTED));
    cr_assert(strstr(err.msg, "big-endian") != NULL, "%s", err.msg);
    snprintf(path, sizeof path, "%s/fort.npy", g_dir);
    cr_assert(eq(int, fpd_npy_open(path, &npy, &err), FPD_STATUS_UNSUPPORTED));
    cr_assert(strstr(err.msg, "fortran_order True") != NULL, "%s", err.msg);
}

Test(npy, real_glove_table) {
    const char *path = test_data_path("glove/glove100d_top20k.npy");
    if (!path) cr_skip_test("glove/glove100d_top20k.npy not found under FPD_DATA_DIR (default ../shared/data)");
    struct fpd_npy *npy;
    struct fpd_error err;
    cr_assert(eq(int, fpd_npy_open(path, &npy, &err), FPD_STATUS_OK), "%s", err.msg);
    const struct fpd_tensor_info *t = fpd_npy_tensor(npy);
    cr_assert(eq(int, t->dtype, FPD_DTYPE_F32));
    cr_assert(eq(int, t->ndim, 2));
    cr_assert(eq(i64, t->shape[0], 20000));
    cr_assert(eq(i64, t->shape[1], 100));
    float row[3];
    cr_assert(eq(int, fpd_dtype_to_f32(t->dtype, t->data, row, 3), FPD_STATUS_OK));
    cr_assert(epsilon_eq(flt, row[0], -0.038194f, 1e-6f));
    cr_assert(epsilon_eq(flt, row[1], -0.24487f, 1e-6f));
    cr_assert(epsilon_eq(flt, row[2], 0.72812f, 1e-6f));
    fpd_npy_free(npy);
}
