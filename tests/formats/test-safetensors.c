/*
 * test-safetensors.c - the safetensors reader on one hand-made file per failure
 * class (status and a distinctive part of the message), valid files, and the
 * writer: round trip bit for bit, deterministic bytes, no overwrite, atomicity.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "formats/fpd-formats.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------ fixtures */

static char g_dir[64];

static void tmpdir_init(void) {
    strcpy(g_dir, "/tmp/fpd-st-XXXXXX");
    cr_assert(mkdtemp(g_dir) != NULL, "mkdtemp failed");
}

static void tmpdir_fini(void) {
    DIR *d = opendir(g_dir);
    if (!d) return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(g_dir);
}

static void path_in(char *buf, size_t cap, const char *name) { snprintf(buf, cap, "%s/%s", g_dir, name); }

/* Names in g_dir, space-separated and sorted (for "no temp file left" checks). */
static void dir_listing(char *out, size_t cap) {
    char names[32][256];
    int n = 0;
    DIR *d = opendir(g_dir);
    cr_assert(d != NULL);
    struct dirent *e;
    while ((e = readdir(d)) && n < 32) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(names[n++], sizeof names[0], "%s", e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], (int (*)(const void *, const void *))strcmp);
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (i) strncat(out, " ", cap - strlen(out) - 1);
        strncat(out, names[i], cap - strlen(out) - 1);
    }
}

static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    cr_assert(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(n > 0 ? (size_t)n : 1);
    cr_assert(fread(b, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert(f != NULL);
    cr_assert(fwrite(p, 1, n, f) == n);
    fclose(f);
}

/* ------------------------------------------------------------ hand-made files */

/* 8-byte prefix `n_claimed`, then the header text, then data_len bytes; allocated
 * exactly (no slack) so that a read past the end shows under valgrind/ASan. */
struct blob {
    unsigned char *p;
    size_t n;
};

static struct blob blob_raw(uint64_t n_claimed, const char *hdr, size_t hdr_len, size_t data_len) {
    struct blob b;
    b.n = 8 + hdr_len + data_len;
    b.p = malloc(b.n);
    for (int i = 0; i < 8; i++) b.p[i] = (unsigned char)(n_claimed >> (8 * i));
    memcpy(b.p + 8, hdr, hdr_len);
    for (size_t i = 0; i < data_len; i++) b.p[8 + hdr_len + i] = (unsigned char)(i * 7 + 1);
    return b;
}

static struct blob blob(const char *hdr, size_t data_len) {
    return blob_raw(strlen(hdr), hdr, strlen(hdr), data_len);
}

static void expect_fail_buf(const unsigned char *p, size_t n, enum fpd_status want, const char *substr) {
    struct fpd_safetensors *st = (struct fpd_safetensors *)1;
    struct fpd_error err;
    enum fpd_status s = fpd_safetensors_open_memory(p, n, "mem.safetensors", &st, &err);
    cr_assert(eq(int, s, want), "status %s, want %s; message: %s", fpd_status_str(s), fpd_status_str(want), err.msg);
    cr_assert(eq(int, err.status, want));
    cr_assert(st == NULL);
    cr_assert(strstr(err.msg, "mem.safetensors") != NULL, "message lacks the name: %s", err.msg);
    cr_assert(strstr(err.msg, substr) != NULL, "message '%s' lacks '%s'", err.msg, substr);
}

static void expect_fail(const char *hdr, size_t data_len, enum fpd_status want, const char *substr) {
    struct blob b = blob(hdr, data_len);
    expect_fail_buf(b.p, b.n, want, substr);
    free(b.p);
}

/* Same through a real file and fpd_safetensors_open (the mmap path). */
static void expect_fail_file(const char *hdr, size_t data_len, enum fpd_status want, const char *substr) {
    char path[256];
    path_in(path, sizeof path, "bad.safetensors");
    struct blob b = blob(hdr, data_len);
    write_file(path, b.p, b.n);
    free(b.p);
    struct fpd_safetensors *st = (struct fpd_safetensors *)1;
    struct fpd_error err;
    enum fpd_status s = fpd_safetensors_open(path, &st, &err);
    cr_assert(eq(int, s, want), "status %s; message: %s", fpd_status_str(s), err.msg);
    cr_assert(st == NULL);
    cr_assert(strstr(err.msg, path) != NULL, "message lacks the path: %s", err.msg);
    cr_assert(strstr(err.msg, substr) != NULL, "message '%s' lacks '%s'", err.msg, substr);
    unlink(path);
}

#define ENTRY(name, dtype, shape, b, e) \
    "\"" name "\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":[" #b "," #e "]}"

/* ------------------------------------------------------------ failure classes */

Test(safetensors, length_prefix_too_short) {
    static const unsigned char z[7] = {0};
    expect_fail_buf(z, 0, FPD_STATUS_FORMAT, "too short for the 8-byte header length");
    expect_fail_buf(z, 7, FPD_STATUS_FORMAT, "file is 7 bytes");
}

Test(safetensors, empty_file_on_disk, .init = tmpdir_init, .fini = tmpdir_fini) {
    char path[256];
    path_in(path, sizeof path, "empty.safetensors");
    write_file(path, "", 0); /* never mapped: mmap of 0 bytes fails */
    struct fpd_safetensors *st;
    struct fpd_error err;
    cr_assert(eq(int, fpd_safetensors_open(path, &st, &err), FPD_STATUS_FORMAT));
    cr_assert(strstr(err.msg, "file is 0 bytes") != NULL, "%s", err.msg);
}

Test(safetensors, missing_file) {
    struct fpd_safetensors *st;
    struct fpd_error err;
    cr_assert(eq(int, fpd_safetensors_open("/nonexistent/x.safetensors", &st, &err), FPD_STATUS_IO));
    cr_assert(strstr(err.msg, "/nonexistent/x.safetensors: cannot open") != NULL, "%s", err.msg);
}

Test(safetensors, header_length_over_limit) {
    struct blob b = blob_raw(100000001ull, "{}", 2, 0);
    expect_fail_buf(b.p, b.n, FPD_STATUS_FORMAT, "header length 100000001 exceeds the limit of 100000000");
    free(b.p);
    b = blob_raw(UINT64_MAX, "{}", 2, 0);
    expect_fail_buf(b.p, b.n, FPD_STATUS_FORMAT, "exceeds the limit");
    free(b.p);
}

Test(safetensors, header_past_eof) {
    struct blob b = blob_raw(100, "{}      ", 8, 0);
    expect_fail_buf(b.p, b.n, FPD_STATUS_FORMAT, "header length 100 runs past the end of the file (16 bytes");
    free(b.p);
}

Test(safetensors, invalid_utf8) {
    expect_fail("{\"w\xff\":{}}", 0, FPD_STATUS_FORMAT, "not valid UTF-8 (byte 0xff at header offset 3)");
    expect_fail("{\"\xc0\xaf\":{}}", 0, FPD_STATUS_FORMAT, "not valid UTF-8"); /* overlong '/' */
    expect_fail("{\"\xed\xa0\x80\":{}}", 0, FPD_STATUS_FORMAT, "not valid UTF-8"); /* surrogate */
    expect_fail("{\"\xe2\x82\":{}}", 0, FPD_STATUS_FORMAT, "not valid UTF-8"); /* cut sequence */
    expect_fail("{\"\xf4\x90\x80\x80\":{}}", 0, FPD_STATUS_FORMAT, "not valid UTF-8"); /* > U+10FFFF */
}

Test(safetensors, not_json) {
    expect_fail("{\"w\":", 0, FPD_STATUS_FORMAT, "header is not valid JSON");
    expect_fail("", 0, FPD_STATUS_FORMAT, "header is not valid JSON");
    expect_fail("{} x", 0, FPD_STATUS_FORMAT, "header is not valid JSON");
    struct blob b = blob_raw(4, "{}\0 ", 4, 0); /* NUL byte inside the header */
    expect_fail_buf(b.p, b.n, FPD_STATUS_FORMAT, "not valid JSON");
    free(b.p);
}

Test(safetensors, json_not_an_object) {
    expect_fail("[1, 2]", 0, FPD_STATUS_FORMAT, "header is an array, not a JSON object");
    expect_fail("\"x\"", 0, FPD_STATUS_FORMAT, "header is a string, not a JSON object");
}

Test(safetensors, entry_not_an_object) {
    expect_fail("{\"w\":5}", 0, FPD_STATUS_FORMAT, "tensor 'w': entry is an integer, not an object");
}

Test(safetensors, unknown_dtype) {
    expect_fail("{" ENTRY("w", "F17", "[1]", 0, 4) "}", 4, FPD_STATUS_FORMAT, "tensor 'w': unknown dtype 'F17'");
    expect_fail("{" ENTRY("w", "f32", "[1]", 0, 4) "}", 4, FPD_STATUS_FORMAT, "unknown dtype 'f32'");
    expect_fail("{\"w\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, FPD_STATUS_FORMAT,
                "dtype is an integer, not a string");
}

Test(safetensors, missing_key) {
    expect_fail("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, FPD_STATUS_FORMAT,
                "tensor 'w': missing key 'shape'");
    expect_fail("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, FPD_STATUS_FORMAT, "missing key 'data_offsets'");
    expect_fail("{\"w\":{}}", 0, FPD_STATUS_FORMAT, "missing key 'dtype'");
}

Test(safetensors, extra_key) {
    expect_fail("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"foo\":1}}", 4, FPD_STATUS_FORMAT,
                "tensor 'w': unexpected key 'foo'");
}

Test(safetensors, shape_negative_or_not_integer) {
    expect_fail("{" ENTRY("w", "F32", "[2, -1]", 0, 4) "}", 4, FPD_STATUS_FORMAT,
                "tensor 'w': shape [2, -1]: element 1 is negative (-1)");
    expect_fail("{" ENTRY("w", "F32", "[1.5]", 0, 4) "}", 4, FPD_STATUS_FORMAT,
                "element 0 is a real number, not an integer");
    expect_fail("{" ENTRY("w", "F32", "[\"1\"]", 0, 4) "}", 4, FPD_STATUS_FORMAT,
                "element 0 is a string, not an integer");
    expect_fail("{" ENTRY("w", "F32", "4", 0, 16) "}", 16, FPD_STATUS_FORMAT, "shape is an integer, not an array");
}

Test(safetensors, shape_product_overflow) {
    expect_fail("{" ENTRY("w", "F32", "[4611686018427387904, 8]", 0, 4) "}", 4, FPD_STATUS_FORMAT,
                "shape [4611686018427387904, 8] of F32 overflows (more than 2^63-1 elements)");
    /* elements fit in int64, bytes do not fit in size_t */
    expect_fail("{" ENTRY("w", "F64", "[2305843009213693952]", 0, 4) "}", 4, FPD_STATUS_FORMAT,
                "overflows (more than SIZE_MAX bytes)");
    /* issue 14: a zero dimension after an overflowing product is refused (the
     * reference's checked product in order; the library refuses it too) ... */
    expect_fail("{" ENTRY("w", "F32", "[488888888, 8888888888888, 0]", 0, 0) "}", 0, FPD_STATUS_FORMAT,
                "shape [488888888, 8888888888888, 0] of F32 overflows");
    /* ... while a zero before it makes an empty tensor, as the reference has it */
    struct blob b = blob("{" ENTRY("w", "F32", "[0, 4611686018427387904, 8]", 0, 0) "}", 0);
    struct fpd_safetensors *st;
    struct fpd_error err;
    cr_assert(eq(int, fpd_safetensors_open_memory(b.p, b.n, "mem", &st, &err), FPD_STATUS_OK), "%s", err.msg);
    cr_assert(eq(sz, fpd_safetensors_tensor(st, 0)->nbytes, 0));
    cr_assert(eq(i64, fpd_tensor_info_numel(fpd_safetensors_tensor(st, 0)), 0));
    fpd_safetensors_free(st);
    free(b.p);
}

Test(safetensors, offsets_begin_after_end) {
    expect_fail("{" ENTRY("w", "F32", "[1]", 8, 4) "}", 8, FPD_STATUS_FORMAT,
                "tensor 'w': data_offsets [8, 4) has begin > end");
    expect_fail("{" ENTRY("w", "F32", "[1]", -4, 0) "}", 4, FPD_STATUS_FORMAT,
                "data_offsets [-4, 0]: element 0 is negative");
    expect_fail("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, FPD_STATUS_FORMAT,
                "data_offsets is [0], not [begin, end]");
}

Test(safetensors, offsets_not_matching_size) {
    expect_fail("{" ENTRY("emb.weight", "F32", "[5, 6]", 0, 100) "}", 100, FPD_STATUS_FORMAT,
                "mem.safetensors: tensor 'emb.weight': data_offsets [0, 100) but shape [5, 6] of F32 needs 120 bytes");
}

Test(safetensors, hole_between_tensors, .init = tmpdir_init, .fini = tmpdir_fini) {
    const char *h = "{" ENTRY("a", "F32", "[1]", 0, 4) "," ENTRY("b", "F32", "[1]", 8, 12) "}";
    expect_fail(h, 12, FPD_STATUS_FORMAT, "hole in the data section: bytes [4, 8) belong to no tensor (tensor 'b'");
    expect_fail_file(h, 12, FPD_STATUS_FORMAT, "hole in the data section");
    /* a hole at the start */
    expect_fail("{" ENTRY("a", "F32", "[1]", 4, 8) "}", 8, FPD_STATUS_FORMAT, "bytes [0, 4) belong to no tensor");
}

Test(safetensors, overlapping_tensors) {
    expect_fail("{" ENTRY("a", "F32", "[2]", 0, 8) "," ENTRY("b", "F32", "[2]", 4, 12) "}", 12, FPD_STATUS_FORMAT,
                "tensor 'b' data_offsets [4, 12) overlap tensor 'a' [0, 8)");
    /* the same range twice */
    expect_fail("{" ENTRY("a", "F32", "[1]", 0, 4) "," ENTRY("b", "F32", "[1]", 0, 4) "}", 4, FPD_STATUS_FORMAT,
                "overlap");
}

Test(safetensors, trailing_bytes, .init = tmpdir_init, .fini = tmpdir_fini) {
    const char *h = "{" ENTRY("a", "F32", "[1]", 0, 4) "}";
    expect_fail(h, 5, FPD_STATUS_FORMAT,
                "1 trailing bytes: the tensors end at data offset 4 but the data section is 5 bytes");
    expect_fail_file(h, 9, FPD_STATUS_FORMAT, "5 trailing bytes");
    expect_fail("{}", 3, FPD_STATUS_FORMAT, "3 trailing bytes");
}

Test(safetensors, truncated_data, .init = tmpdir_init, .fini = tmpdir_fini) {
    const char *h = "{" ENTRY("a", "F32", "[1]", 0, 4) "," ENTRY("b", "F32", "[4]", 4, 20) "}";
    expect_fail(h, 19, FPD_STATUS_FORMAT,
                "tensor 'b' data_offsets [4, 20) run past the end of the data section (19 bytes): file truncated?");
    expect_fail_file(h, 3, FPD_STATUS_FORMAT, "run past the end of the data section (3 bytes)");
}

Test(safetensors, duplicate_name) {
    expect_fail("{" ENTRY("a", "F32", "[1]", 0, 4) "," ENTRY("a", "F32", "[1]", 4, 8) "}", 8, FPD_STATUS_FORMAT,
                "duplicate tensor name 'a' at header offset");
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                FPD_STATUS_FORMAT, "duplicate key 'dtype' inside an entry");
    expect_fail("{\"__metadata__\":{},\"__metadata__\":{}}", 0, FPD_STATUS_FORMAT, "duplicate tensor name");
}

Test(safetensors, metadata_value_not_string) {
    expect_fail("{\"__metadata__\":{\"fpd.version\":1}}", 0, FPD_STATUS_FORMAT,
                "__metadata__ key 'fpd.version': value is an integer (1), not a string");
    expect_fail("{\"__metadata__\":{\"k\":{\"x\":\"y\"}}}", 0, FPD_STATUS_FORMAT, "value is an object");
    expect_fail("{\"__metadata__\":[\"k\"]}", 0, FPD_STATUS_FORMAT, "__metadata__ is an array, not an object");
}

/* issue 14: the reference implementation reads "__metadata__": null as no metadata. */
Test(safetensors, metadata_null_is_none) {
    struct blob b = blob("{\"__metadata__\":null," ENTRY("w", "F32", "[2]", 0, 8) "}", 8);
    struct fpd_safetensors *st;
    struct fpd_error err;
    cr_assert(eq(int, fpd_safetensors_open_memory(b.p, b.n, "mem", &st, &err), FPD_STATUS_OK), "%s", err.msg);
    cr_assert(eq(i64, fpd_safetensors_metadata_count(st), 0));
    cr_assert(eq(i64, fpd_safetensors_count(st), 1));
    cr_assert(eq(str, (char *)fpd_safetensors_tensor(st, 0)->name, "w"));
    cr_assert(fpd_safetensors_metadata_get(st, "__metadata__") == NULL);
    fpd_safetensors_free(st);
    free(b.p);
}

Test(safetensors, too_many_dims) {
    expect_fail("{" ENTRY("w", "F32", "[1,1,1,1,1,1,1,1,2]", 0, 8) "}", 8, FPD_STATUS_UNSUPPORTED,
                "tensor 'w' has 9 dimensions; at most 8 are supported");
    /* a FORMAT problem anywhere in the file wins over UNSUPPORTED */
    expect_fail("{" ENTRY("w", "F32", "[1,1,1,1,1,1,1,1,2]", 0, 8) "," ENTRY("v", "F32", "[1]", 9, 13) "}", 13,
                FPD_STATUS_FORMAT, "hole");
}

Test(safetensors, name_shown_escaped) {
    expect_fail("{\"a\\nb\":5}", 0, FPD_STATUS_FORMAT, "tensor 'a\\x0ab'");
}

/* ------------------------------------------------------------ valid files */

Test(safetensors, order_by_offset_and_find) {
    const char *h = "{\"__metadata__\":{\"z\":\"1\",\"a\":\"2\"}," ENTRY("x", "F32", "[2]", 8, 16) "," ENTRY(
        "y", "U8", "[8]", 0, 8) "," ENTRY("e", "F32", "[0, 3]", 8, 8) "," ENTRY("s", "I64", "[]", 16, 24) "}    ";
    struct blob b = blob(h, 24);
    struct fpd_safetensors *st;
    struct fpd_error err;
    cr_assert(eq(int, fpd_safetensors_open_memory(b.p, b.n, "mem", &st, &err), FPD_STATUS_OK), "%s", err.msg);
    cr_assert(eq(i64, fpd_safetensors_count(st), 4));
    const char *order[4] = {"y", "e", "x", "s"};
    for (int i = 0; i < 4; i++) cr_assert(eq(str, (char *)fpd_safetensors_tensor(st, i)->name, (char *)order[i]));
    size_t data0 = 8 + strlen(h);
    const struct fpd_tensor_info *x = fpd_safetensors_find(st, "x");
    cr_assert(x != NULL);
    cr_assert(eq(int, x->dtype, FPD_DTYPE_F32));
    cr_assert(eq(int, x->ndim, 1));
    cr_assert(eq(i64, x->shape[0], 2));
    cr_assert(eq(sz, x->nbytes, 8));
    cr_assert(x->data == b.p + data0 + 8);
    const struct fpd_tensor_info *s = fpd_safetensors_find(st, "s");
    cr_assert(eq(int, s->ndim, 0));
    cr_assert(eq(i64, fpd_tensor_info_numel(s), 1));
    cr_assert(eq(i64, fpd_tensor_info_numel(fpd_safetensors_find(st, "e")), 0));
    cr_assert(fpd_safetensors_find(st, "nope") == NULL);
    cr_assert(fpd_safetensors_find(st, "__metadata__") == NULL);
    cr_assert(eq(i64, fpd_safetensors_metadata_count(st), 2));
    const char *k, *v;
    fpd_safetensors_metadata_at(st, 0, &k, &v); /* header order */
    cr_assert(eq(str, (char *)k, "z"));
    cr_assert(eq(str, (char *)v, "1"));
    cr_assert(eq(str, (char *)fpd_safetensors_metadata_get(st, "a"), "2"));
    cr_assert(fpd_safetensors_metadata_get(st, "b") == NULL);
    cr_assert(eq(sz, fpd_safetensors_header_size(st), strlen(h)));
    cr_assert(eq(sz, fpd_safetensors_file_size(st), b.n));
    cr_assert(eq(str, (char *)fpd_safetensors_path(st), "mem"));
    fpd_safetensors_free(st);
    free(b.p);
    fpd_safetensors_free(NULL);
}

Test(safetensors, empty_data_section_on_disk, .init = tmpdir_init, .fini = tmpdir_fini) {
    char path[256];
    path_in(path, sizeof path, "empty.safetensors");
    struct blob b = blob("{\"__metadata__\":{\"k\":\"v\"}}     ", 0);
    write_file(path, b.p, b.n);
    free(b.p);
    struct fpd_safetensors *st;
    struct fpd_error err;
    cr_assert(eq(int, fpd_safetensors_open(path, &st, &err), FPD_STATUS_OK), "%s", err.msg);
    cr_assert(eq(i64, fpd_safetensors_count(st), 0));
    cr_assert(eq(str, (char *)fpd_safetensors_metadata_get(st, "k"), "v"));
    fpd_safetensors_free(st);
}

/* Fail the n-th allocation and every later one. */
static long g_alloc_left;
static void *failing_malloc(size_t n, void *u) {
    (void)u;
    if (g_alloc_left-- <= 0) return NULL;
    return malloc(n);
}
static void plain_free(void *p, void *u) {
    (void)u;
    free(p);
}

Test(safetensors, allocation_failures_are_clean) {
    const char *h = "{\"__metadata__\":{\"a\":\"b\",\"c\":\"d\"}," ENTRY("x", "F32", "[2]", 0, 8) "," ENTRY(
        "y", "U8", "[8]", 8, 16) "}";
    struct blob b = blob(h, 16);
    struct fpd_allocator a = {failing_malloc, plain_free, NULL};
    bool ok = false;
    for (long k = 0; k < 64 && !ok; k++) {
        g_alloc_left = k;
        fpd_allocator_set(&a);
        struct fpd_safetensors *st = NULL;
        struct fpd_error err;
        enum fpd_status s = fpd_safetensors_open_memory(b.p, b.n, "mem", &st, &err);
        fpd_allocator_set(NULL);
        cr_assert(s == FPD_STATUS_OK || s == FPD_STATUS_NOMEM, "k=%ld: %s", k, err.msg);
        ok = s == FPD_STATUS_OK;
        if (ok) cr_assert(eq(i64, fpd_safetensors_count(st), 2));
        fpd_safetensors_free(st);
    }
    cr_assert(ok);
    free(b.p);
}

/* ------------------------------------------------------------ writer */

static const float g_f32[6] = {1.0f, -2.5f, 3.25f, 0.0f, -0.0f, 1e-30f};
static const uint16_t g_f16[4] = {0x3c00, 0xc000, 0x7bff, 0x0001};
static const uint16_t g_bf16[4] = {0x3f80, 0xbf80, 0x7f7f, 0x0080};
static const int64_t g_i64[3] = {-1, INT64_MAX, 42};
static const uint8_t g_u8[5] = {0, 1, 2, 254, 255};
static const double g_scalar = 3.141592653589793;

static int make_tensors(struct fpd_tensor_info *t) {
    memset(t, 0, 7 * sizeof *t);
    t[0] = (struct fpd_tensor_info){"w.f32", FPD_DTYPE_F32, 2, {2, 3}, g_f32, sizeof g_f32};
    t[1] = (struct fpd_tensor_info){"f16", FPD_DTYPE_F16, 1, {4}, g_f16, sizeof g_f16};
    t[2] = (struct fpd_tensor_info){"bf16", FPD_DTYPE_BF16, 2, {2, 2}, g_bf16, sizeof g_bf16};
    t[3] = (struct fpd_tensor_info){"i64", FPD_DTYPE_I64, 1, {3}, g_i64, sizeof g_i64};
    t[4] = (struct fpd_tensor_info){"u8", FPD_DTYPE_U8, 1, {5}, g_u8, sizeof g_u8};
    t[5] = (struct fpd_tensor_info){"scalar", FPD_DTYPE_F64, 0, {0}, &g_scalar, sizeof g_scalar};
    t[6] = (struct fpd_tensor_info){"empty", FPD_DTYPE_F32, 2, {0, 4}, NULL, 0};
    return 7;
}

static const char *g_keys[3] = {"fpd.version", "b", "a\"quote"};
static const char *g_vals[3] = {"1", "line\nbreak \xc3\xa9", "{\"rows\":3}"};

Test(safetensors, write_round_trip, .init = tmpdir_init, .fini = tmpdir_fini) {
    struct fpd_tensor_info t[7];
    int n = make_tensors(t);
    char path[256], path2[256], listing[512];
    path_in(path, sizeof path, "out.safetensors");
    path_in(path2, sizeof path2, "out2.safetensors");
    struct fpd_error err;
    cr_assert(eq(int, fpd_safetensors_write(path, t, n, g_keys, g_vals, 3, 0, &err), FPD_STATUS_OK), "%s", err.msg);

    struct fpd_safetensors *st;
    cr_assert(eq(int, fpd_safetensors_open(path, &st, &err), FPD_STATUS_OK), "%s", err.msg);
    cr_assert(eq(i64, fpd_safetensors_count(st), n));
    cr_assert(eq(sz, fpd_safetensors_header_size(st) % 8, 0));
    for (int i = 0; i < n; i++) {
        const struct fpd_tensor_info *r = fpd_safetensors_find(st, t[i].name);
        cr_assert(r != NULL, "%s missing", t[i].name);
        cr_assert(eq(int, r->dtype, t[i].dtype));
        cr_assert(eq(int, r->ndim, t[i].ndim));
        for (int d = 0; d < t[i].ndim; d++) cr_assert(eq(i64, r->shape[d], t[i].shape[d]));
        cr_assert(eq(sz, r->nbytes, t[i].nbytes));
        if (t[i].nbytes) cr_assert(memcmp(r->data, t[i].data, t[i].nbytes) == 0, "%s differs", t[i].name);
    }
    /* data laid out in name order (bytewise), so file order is name order */
    for (int64_t i = 1; i < n; i++)
        cr_assert(strcmp(fpd_safetensors_tensor(st, i - 1)->name, fpd_safetensors_tensor(st, i)->name) < 0);
    cr_assert(eq(i64, fpd_safetensors_metadata_count(st), 3));
    for (int i = 0; i < 3; i++)
        cr_assert(eq(str, (char *)fpd_safetensors_metadata_get(st, g_keys[i]), (char *)g_vals[i]));
    const char *k0;
    fpd_safetensors_metadata_at(st, 0, &k0, NULL);
    cr_assert(eq(str, (char *)k0, "a\"quote")); /* keys sorted */
    fpd_safetensors_free(st);

    /* Deterministic: reversed input order gives the same bytes. */
    struct fpd_tensor_info rev[7];
    for (int i = 0; i < n; i++) rev[i] = t[n - 1 - i];
    const char *rk[3] = {g_keys[2], g_keys[0], g_keys[1]}, *rv[3] = {g_vals[2], g_vals[0], g_vals[1]};
    cr_assert(eq(int, fpd_safetensors_write(path2, rev, n, rk, rv, 3, 0, &err), FPD_STATUS_OK), "%s", err.msg);
    size_t n1, n2;
    unsigned char *b1 = read_file(path, &n1), *b2 = read_file(path2, &n2);
    cr_assert(eq(sz, n1, n2));
    cr_assert(memcmp(b1, b2, n1) == 0);
    cr_assert(memcmp(b1 + 8, "{\"__metadata__\":{\"a\\\"quote\":", 28) == 0, "%.40s", b1 + 8);
    free(b2);

    /* An existing file is refused without FPD_WRITE_OVERWRITE and left unchanged. */
    cr_assert(eq(int, fpd_safetensors_write(path, t, 2, NULL, NULL, 0, 0, &err), FPD_STATUS_IO));
    cr_assert(strstr(err.msg, "already exists") != NULL, "%s", err.msg);
    cr_assert(strstr(err.msg, path) != NULL, "%s", err.msg);
    b2 = read_file(path, &n2);
    cr_assert(n2 == n1 && memcmp(b1, b2, n1) == 0);
    free(b2);
    dir_listing(listing, sizeof listing);
    cr_assert(eq(str, listing, "out.safetensors out2.safetensors"));

    /* With it, the file is replaced. */
    cr_assert(eq(int, fpd_safetensors_write(path, t, 2, NULL, NULL, 0, FPD_WRITE_OVERWRITE, &err), FPD_STATUS_OK),
              "%s", err.msg);
    cr_assert(eq(int, fpd_safetensors_open(path, &st, &err), FPD_STATUS_OK), "%s", err.msg);
    cr_assert(eq(i64, fpd_safetensors_count(st), 2));
    cr_assert(eq(i64, fpd_safetensors_metadata_count(st), 0));
    fpd_safetensors_free(st);
    dir_listing(listing, sizeof listing);
    cr_assert(eq(str, listing, "out.safetensors out2.safetensors"));
    free(b1);

    /* Permissions follow the umask (not mkstemp's 0600). */
    struct stat sb;
    mode_t um = umask(0);
    umask(um);
    cr_assert(stat(path, &sb) == 0);
    cr_assert(eq(int, (int)(sb.st_mode & 0777), (int)(0666 & ~um)));
}

Test(safetensors, write_empty_file, .init = tmpdir_init, .fini = tmpdir_fini) {
    char path[256];
    path_in(path, sizeof path, "none.safetensors");
    struct fpd_error err;
    cr_assert(eq(int, fpd_safetensors_write(path, NULL, 0, NULL, NULL, 0, 0, &err), FPD_STATUS_OK), "%s", err.msg);
    size_t n;
    unsigned char *b = read_file(path, &n);
    cr_assert(eq(sz, n, 16));
    cr_assert(memcmp(b + 8, "{}      ", 8) == 0);
    free(b);
    struct fpd_safetensors *st;
    cr_assert(eq(int, fpd_safetensors_open(path, &st, &err), FPD_STATUS_OK), "%s", err.msg);
    cr_assert(eq(i64, fpd_safetensors_count(st), 0));
    fpd_safetensors_free(st);
}

Test(safetensors, write_invalid_arguments, .init = tmpdir_init, .fini = tmpdir_fini) {
    char path[256], listing[256];
    path_in(path, sizeof path, "bad.safetensors");
    struct fpd_error err;
    struct fpd_tensor_info t[7];
    int n = make_tensors(t);
    t[1].name = t[0].name;
    cr_assert(eq(int, fpd_safetensors_write(path, t, n, NULL, NULL, 0, 0, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(strstr(err.msg, "duplicate tensor name 'w.f32'") != NULL, "%s", err.msg);
    make_tensors(t);
    t[0].nbytes = 20;
    cr_assert(eq(int, fpd_safetensors_write(path, t, n, NULL, NULL, 0, 0, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(strstr(err.msg, "nbytes 20 (data set) does not match shape [2, 3] of F32") != NULL, "%s", err.msg);
    make_tensors(t);
    t[0].name = "__metadata__";
    cr_assert(eq(int, fpd_safetensors_write(path, t, n, NULL, NULL, 0, 0, &err), FPD_STATUS_INVALID_ARG));
    t[0].name = "";
    cr_assert(eq(int, fpd_safetensors_write(path, t, n, NULL, NULL, 0, 0, &err), FPD_STATUS_INVALID_ARG));
    make_tensors(t);
    const char *k[2] = {"a", "a"}, *v[2] = {"1", "2"};
    cr_assert(eq(int, fpd_safetensors_write(path, t, n, k, v, 2, 0, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(strstr(err.msg, "duplicate metadata key 'a'") != NULL, "%s", err.msg);
    /* a folder that does not exist */
    char deep[300];
    snprintf(deep, sizeof deep, "%s/no/such/dir/x.safetensors", g_dir);
    cr_assert(eq(int, fpd_safetensors_write(deep, t, n, NULL, NULL, 0, 0, &err), FPD_STATUS_IO));
    cr_assert(strstr(err.msg, "cannot create a temporary file") != NULL, "%s", err.msg);
    dir_listing(listing, sizeof listing);
    cr_assert(eq(str, listing, ""));
}

Test(safetensors, write_failure_leaves_nothing, .init = tmpdir_init, .fini = tmpdir_fini) {
    /* A file size limit makes write() fail part way: no temp file, no target. */
    static unsigned char big[1 << 16];
    struct fpd_tensor_info t = {"big", FPD_DTYPE_U8, 1, {sizeof big}, big, sizeof big};
    char path[256], listing[256];
    path_in(path, sizeof path, "big.safetensors");
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {4096, 4096};
    cr_assert(setrlimit(RLIMIT_FSIZE, &rl) == 0);
    struct fpd_error err;
    cr_assert(eq(int, fpd_safetensors_write(path, &t, 1, NULL, NULL, 0, 0, &err), FPD_STATUS_IO));
    cr_assert(strstr(err.msg, "write failed") != NULL, "%s", err.msg);
    dir_listing(listing, sizeof listing);
    cr_assert(eq(str, listing, ""));
}

/* ------------------------------------------------------------ Python interop */

static bool have_python(void) {
    return system("python3 -c 'import numpy, safetensors.numpy' >/dev/null 2>&1") == 0;
}

Test(safetensors, read_python_written_file, .init = tmpdir_init, .fini = tmpdir_fini) {
    if (!have_python()) cr_skip_test("python3 with numpy and safetensors is not available");
    char path[256], cmd[1024];
    path_in(path, sizeof path, "py.safetensors");
    snprintf(cmd, sizeof cmd,
             "python3 -c \"import numpy as np; from safetensors.numpy import save_file; "
             "save_file({'emb.weight': np.arange(12, dtype=np.float32).reshape(3, 4) / 4, "
             "'half': np.array([1.5, -2], dtype=np.float16), 'ids': np.array([7, -8, 9], dtype=np.int64), "
             "'flag': np.array([True, False]), 'empty': np.zeros((0, 3), dtype=np.float32)}, '%s', "
             "metadata={'fpd.version': '1'})\"",
             path);
    cr_assert(eq(int, system(cmd), 0));
    struct fpd_safetensors *st;
    struct fpd_error err;
    cr_assert(eq(int, fpd_safetensors_open(path, &st, &err), FPD_STATUS_OK), "%s", err.msg);
    cr_assert(eq(i64, fpd_safetensors_count(st), 5));
    const struct fpd_tensor_info *e = fpd_safetensors_find(st, "emb.weight");
    cr_assert(e && e->dtype == FPD_DTYPE_F32 && e->ndim == 2 && e->shape[0] == 3 && e->shape[1] == 4);
    float f[12];
    memcpy(f, e->data, sizeof f);
    for (int i = 0; i < 12; i++) cr_assert(eq(flt, f[i], (float)i / 4));
    const struct fpd_tensor_info *h = fpd_safetensors_find(st, "half");
    float hf[2];
    cr_assert(eq(int, fpd_dtype_to_f32(h->dtype, h->data, hf, 2), FPD_STATUS_OK));
    cr_assert(eq(flt, hf[0], 1.5f));
    cr_assert(eq(flt, hf[1], -2.0f));
    const struct fpd_tensor_info *ids = fpd_safetensors_find(st, "ids");
    int64_t iv[3];
    memcpy(iv, ids->data, sizeof iv);
    cr_assert(iv[0] == 7 && iv[1] == -8 && iv[2] == 9);
    cr_assert(eq(int, fpd_safetensors_find(st, "flag")->dtype, FPD_DTYPE_BOOL));
    cr_assert(eq(str, (char *)fpd_safetensors_metadata_get(st, "fpd.version"), "1"));
    fpd_safetensors_free(st);
}

Test(safetensors, python_reads_our_file, .init = tmpdir_init, .fini = tmpdir_fini) {
    if (!have_python()) cr_skip_test("python3 with numpy and safetensors is not available");
    struct fpd_tensor_info t[7];
    int n = make_tensors(t);
    /* safetensors.numpy has no BF16 without torch: leave it out */
    t[2] = t[--n];
    char path[256], cmd[1024];
    path_in(path, sizeof path, "ours.safetensors");
    struct fpd_error err;
    cr_assert(eq(int, fpd_safetensors_write(path, t, n, g_keys, g_vals, 3, 0, &err), FPD_STATUS_OK), "%s", err.msg);
    snprintf(cmd, sizeof cmd,
             "python3 -c \"import sys, numpy as np; from safetensors.numpy import load_file; "
             "from safetensors import safe_open; d = load_file('%s'); "
             "ok = d['w.f32'].shape == (2, 3) and d['w.f32'][0, 1] == -2.5 and d['i64'][1] == 2**63 - 1 "
             "and d['scalar'].shape == () and d['empty'].shape == (0, 4) and list(d['u8']) == [0, 1, 2, 254, 255]; "
             "m = safe_open('%s', 'np').metadata(); ok = ok and m['b'] == 'line\\nbreak \\u00e9'; "
             "sys.exit(0 if ok else 1)\"",
             path, path);
    cr_assert(eq(int, system(cmd), 0));
}
