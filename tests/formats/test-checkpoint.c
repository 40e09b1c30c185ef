/*
 * test-checkpoint.c - the "fpd.table.T" metadata JSON (round trip, every malformed
 * form) and loading FPD v1 tables from safetensors checkpoints into layers.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "formats/fpd-formats.h"
#include "tests/test-util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct fpd_table_meta sample_meta(void) {
    struct fpd_table_meta m;
    memset(&m, 0, sizeof m);
    m.shape.rows = 20000;
    m.shape.dim = 100;
    m.shape.k = 3;
    m.shape.terms = 2;
    int64_t rs[3] = {25, 28, 29}, cs[3] = {4, 5, 5}, rk[4] = {1, 16, 16, 1};
    memcpy(m.shape.row_shape, rs, sizeof rs);
    memcpy(m.shape.col_shape, cs, sizeof cs);
    memcpy(m.shape.ranks, rk, sizeof rk);
    m.source_dtype = FPD_DTYPE_F32;
    m.core_dtype = FPD_DTYPE_F16;
    snprintf(m.fit, sizeof m.fit, "tt-svd+adam");
    m.seed = 12345;
    m.rel_error = 0.012345678901234567;
    return m;
}

static void assert_meta_eq(const struct fpd_table_meta *a, const struct fpd_table_meta *b) {
    cr_assert(eq(i64, a->shape.rows, b->shape.rows));
    cr_assert(eq(i64, a->shape.dim, b->shape.dim));
    cr_assert(eq(int, a->shape.k, b->shape.k));
    cr_assert(eq(i64, a->shape.terms, b->shape.terms));
    for (int m = 0; m < a->shape.k; m++) {
        cr_assert(eq(i64, a->shape.row_shape[m], b->shape.row_shape[m]));
        cr_assert(eq(i64, a->shape.col_shape[m], b->shape.col_shape[m]));
    }
    for (int m = 0; m <= a->shape.k; m++) cr_assert(eq(i64, a->shape.ranks[m], b->shape.ranks[m]));
    cr_assert(eq(int, a->source_dtype, b->source_dtype));
    cr_assert(eq(int, a->core_dtype, b->core_dtype));
    cr_assert(eq(str, (char *)a->fit, (char *)b->fit));
    cr_assert(eq(u64, a->seed, b->seed));
    if (isnan(a->rel_error)) cr_assert(isnan(b->rel_error));
    else cr_assert(eq(dbl, a->rel_error, b->rel_error)); /* exact: 17 significant digits */
}

Test(checkpoint, meta_json_round_trip) {
    struct fpd_table_meta m = sample_meta(), back;
    char *js = NULL;
    struct fpd_error err;
    cr_assert(eq(int, fpd_table_meta_to_json(&m, &js, &err), FPD_STATUS_OK), "%s", err.msg);
    const char *want = "{\"rows\":20000,\"dim\":100,\"row_shape\":[25,28,29],\"col_shape\":[4,5,5],"
                       "\"ranks\":[1,16,16,1],\"terms\":2,\"source_dtype\":\"F32\",\"core_dtype\":\"F16\","
                       "\"fit\":\"tt-svd+adam\",\"seed\":12345,\"rel_error\":0.01234567890123456";
    cr_assert(strncmp(js, want, strlen(want)) == 0, "%s", js);
    cr_assert(eq(int, fpd_table_meta_from_json(js, "emb", &back, &err), FPD_STATUS_OK), "%s", err.msg);
    assert_meta_eq(&m, &back);
    fpd_free(js);

    /* a seed above INT64_MAX, a non-finite error, no core dtype */
    m.seed = UINT64_MAX;
    m.rel_error = NAN;
    m.core_dtype = FPD_DTYPE_COUNT;
    cr_assert(eq(int, fpd_table_meta_to_json(&m, &js, &err), FPD_STATUS_OK), "%s", err.msg);
    cr_assert(strstr(js, "\"seed\":\"18446744073709551615\"") != NULL, "%s", js);
    cr_assert(strstr(js, "\"rel_error\":null") != NULL, "%s", js);
    cr_assert(strstr(js, "core_dtype") == NULL, "%s", js);
    cr_assert(eq(int, fpd_table_meta_from_json(js, "emb", &back, &err), FPD_STATUS_OK), "%s", err.msg);
    assert_meta_eq(&m, &back);
    fpd_free(js);
}

Test(checkpoint, meta_json_accepts_other_writers) {
    /* any key order, unknown keys ignored, integer rel_error, k = 1 */
    const char *js = "{\"fit\":\"x\",\"extra\":[1],\"rel_error\":0,\"seed\":7,\"terms\":1,\"source_dtype\":\"BF16\","
                     "\"ranks\":[1,1],\"col_shape\":[8],\"row_shape\":[10],\"dim\":8,\"rows\":9}";
    struct fpd_table_meta m;
    struct fpd_error err;
    cr_assert(eq(int, fpd_table_meta_from_json(js, "t", &m, &err), FPD_STATUS_OK), "%s", err.msg);
    cr_assert(eq(int, m.shape.k, 1));
    cr_assert(eq(int, m.source_dtype, FPD_DTYPE_BF16));
    cr_assert(eq(int, m.core_dtype, FPD_DTYPE_COUNT));
    cr_assert(eq(dbl, m.rel_error, 0.0));
}

static void expect_meta_fail(const char *js, const char *substr) {
    struct fpd_table_meta m;
    struct fpd_error err;
    enum fpd_status s = fpd_table_meta_from_json(js, "emb", &m, &err);
    cr_assert(eq(int, s, FPD_STATUS_FORMAT), "%s: status %s: %s", js, fpd_status_str(s), err.msg);
    cr_assert(strstr(err.msg, "table 'emb'") != NULL, "message lacks the table: %s", err.msg);
    cr_assert(strstr(err.msg, substr) != NULL, "message '%s' lacks '%s'", err.msg, substr);
}

#define GOOD_TAIL "\"terms\":1,\"source_dtype\":\"F32\",\"fit\":\"tt-svd\",\"seed\":0,\"rel_error\":0.5}"

Test(checkpoint, meta_json_malformed) {
    expect_meta_fail("{\"rows\":", "not valid JSON");
    expect_meta_fail("[1]", "is an array, not a JSON object");
    expect_meta_fail("{\"rows\":1,\"rows\":2}", "not valid JSON: duplicate object key");
    expect_meta_fail("{\"dim\":4,\"row_shape\":[2],\"col_shape\":[4],\"ranks\":[1,1]," GOOD_TAIL,
                     "metadata lacks the key 'rows'");
    expect_meta_fail("{\"rows\":\"2\",\"dim\":4,\"row_shape\":[2],\"col_shape\":[4],\"ranks\":[1,1]," GOOD_TAIL,
                     "key 'rows' is a string, not an integer");
    expect_meta_fail("{\"rows\":-2,\"dim\":4,\"row_shape\":[2],\"col_shape\":[4],\"ranks\":[1,1]," GOOD_TAIL,
                     "key 'rows' is -2, below 0");
    expect_meta_fail("{\"rows\":2,\"dim\":4,\"row_shape\":2,\"col_shape\":[4],\"ranks\":[1,1]," GOOD_TAIL,
                     "key 'row_shape' is an integer, not an array");
    expect_meta_fail("{\"rows\":2,\"dim\":4,\"row_shape\":[],\"col_shape\":[4],\"ranks\":[1,1]," GOOD_TAIL,
                     "key 'row_shape' has 0 values; 1..8 expected");
    expect_meta_fail("{\"rows\":2,\"dim\":4,\"row_shape\":[2.5],\"col_shape\":[4],\"ranks\":[1,1]," GOOD_TAIL,
                     "key 'row_shape': element 0 is a real number");
    expect_meta_fail("{\"rows\":2,\"dim\":4,\"row_shape\":[2],\"col_shape\":[2,2],\"ranks\":[1,1]," GOOD_TAIL,
                     "key 'col_shape' has 2 values; 1 expected");
    expect_meta_fail("{\"rows\":2,\"dim\":4,\"row_shape\":[2],\"col_shape\":[4],\"ranks\":[1]," GOOD_TAIL,
                     "key 'ranks' has 1 values; 2 expected");
    expect_meta_fail("{\"rows\":2,\"dim\":4,\"row_shape\":[2],\"col_shape\":[4],\"ranks\":[1,1],\"terms\":1,"
                     "\"source_dtype\":\"F33\",\"fit\":\"a\",\"seed\":0,\"rel_error\":0}",
                     "key 'source_dtype': unknown dtype 'F33'");
    expect_meta_fail("{\"rows\":2,\"dim\":4,\"row_shape\":[2],\"col_shape\":[4],\"ranks\":[1,1],\"terms\":1,"
                     "\"source_dtype\":\"F32\",\"fit\":7,\"seed\":0,\"rel_error\":0}",
                     "key 'fit' is an integer, not a string");
    expect_meta_fail("{\"rows\":2,\"dim\":4,\"row_shape\":[2],\"col_shape\":[4],\"ranks\":[1,1],\"terms\":1,"
                     "\"source_dtype\":\"F32\",\"fit\":\"a\",\"seed\":-1,\"rel_error\":0}",
                     "key 'seed' is an integer, not a non-negative integer");
    expect_meta_fail("{\"rows\":2,\"dim\":4,\"row_shape\":[2],\"col_shape\":[4],\"ranks\":[1,1],\"terms\":1,"
                     "\"source_dtype\":\"F32\",\"fit\":\"a\",\"seed\":\"99999999999999999999\",\"rel_error\":0}",
                     "key 'seed' does not fit in 64 bits");
    expect_meta_fail("{\"rows\":2,\"dim\":4,\"row_shape\":[2],\"col_shape\":[4],\"ranks\":[1,1],\"terms\":1,"
                     "\"source_dtype\":\"F32\",\"fit\":\"a\",\"seed\":0,\"rel_error\":\"low\"}",
                     "key 'rel_error' is a string, not a number");
    expect_meta_fail("{\"rows\":2,\"dim\":4,\"row_shape\":[2],\"col_shape\":[4],\"ranks\":[1,1],\"terms\":1,"
                     "\"source_dtype\":\"F32\",\"fit\":\"a\",\"seed\":0}",
                     "key 'rel_error' is missing");
    /* valid JSON, invalid FPD shape (fpd_layer_shape_check) */
    expect_meta_fail("{\"rows\":2,\"dim\":5,\"row_shape\":[2],\"col_shape\":[4],\"ranks\":[1,1]," GOOD_TAIL,
                     "invalid FPD shape: column shape product 4 != dim 5");
    expect_meta_fail("{\"rows\":9,\"dim\":4,\"row_shape\":[2],\"col_shape\":[4],\"ranks\":[1,1]," GOOD_TAIL,
                     "invalid FPD shape: row shape product 2 < 9 rows");
    expect_meta_fail("{\"rows\":2,\"dim\":4,\"row_shape\":[1,2],\"col_shape\":[2,2],\"ranks\":[2,1,1]," GOOD_TAIL,
                     "invalid FPD shape: end ranks must be 1");
    char longfit[200];
    snprintf(longfit, sizeof longfit,
             "{\"rows\":2,\"dim\":4,\"row_shape\":[2],\"col_shape\":[4],\"ranks\":[1,1],\"terms\":1,"
             "\"source_dtype\":\"F32\",\"fit\":\"%070d\",\"seed\":0,\"rel_error\":0}", 0);
    expect_meta_fail(longfit, "key 'fit' is 70 bytes, longer than 63");
}

/* ------------------------------------------------------------ loading layers */

static char g_dir[64];

static void tmpdir_init(void) {
    strcpy(g_dir, "/tmp/fpd-ckpt-XXXXXX");
    cr_assert(mkdtemp(g_dir) != NULL);
}

static void tmpdir_fini(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", g_dir);
}

/* The small table used below: 10 rows x 6, k = 2, row shape 3x4, col shape 2x3,
 * ranks 1,3,1, p = 2. */
static struct fpd_table_meta small_meta(enum fpd_dtype core_dtype) {
    struct fpd_table_meta m;
    memset(&m, 0, sizeof m);
    m.shape.rows = 10;
    m.shape.dim = 6;
    m.shape.k = 2;
    m.shape.terms = 2;
    m.shape.row_shape[0] = 3, m.shape.row_shape[1] = 4;
    m.shape.col_shape[0] = 2, m.shape.col_shape[1] = 3;
    m.shape.ranks[0] = 1, m.shape.ranks[1] = 3, m.shape.ranks[2] = 1;
    m.source_dtype = FPD_DTYPE_F32;
    m.core_dtype = core_dtype;
    snprintf(m.fit, sizeof m.fit, "tt-svd");
    m.rel_error = 0.25;
    return m;
}

enum mutation { MUT_NONE, MUT_NO_META, MUT_NO_CORE1, MUT_CORE_SHAPE, MUT_CORE_INT, MUT_EXTRA_CORE, MUT_PERM_F32,
                MUT_PERM_SHAPE, MUT_PERM_REPEAT, MUT_PERM_RANGE, MUT_BAD_META, MUT_CORE_NAN, MUT_CORE_INF,
                MUT_CORE_HUGE, MUT_PERM_NEG, MUT_UNKNOWN_TENSOR };

/* Write a checkpoint holding table "emb" (cores from `layer`, stored as core_dtype)
 * and an unrelated tensor, mutated as asked; open it. */
static struct fpd_safetensors *write_ckpt(const struct fpd_layer *layer, enum fpd_dtype core_dtype,
                                          enum fpd_dtype meta_core_dtype, const int32_t *perm, enum mutation mut) {
    const struct fpd_layer_shape *s = fpd_layer_get_shape(layer);
    struct fpd_table_meta meta = small_meta(meta_core_dtype);
    struct fpd_tensor_info t[8];
    memset(t, 0, sizeof t);
    int n = 0;
    static unsigned char bufs[FPD_MAX_MODES][4096];
    static char names[FPD_MAX_MODES][64];
    for (int32_t m = 0; m < s->k; m++) {
        int64_t numel = fpd_layer_shape_core_numel(s, m);
        cr_assert(eq(int, fpd_dtype_from_f32(core_dtype, fpd_layer_core_const(layer, m), bufs[m], numel),
                     FPD_STATUS_OK));
        snprintf(names[m], sizeof names[m], "emb.fpd.core%d", (int)m);
        t[n] = (struct fpd_tensor_info){names[m], core_dtype, 5,
                                        {s->terms, s->row_shape[m], s->ranks[m], s->col_shape[m], s->ranks[m + 1]},
                                        bufs[m], (size_t)numel * fpd_dtype_size(core_dtype)};
        n++;
    }
    static const float other[3] = {1, 2, 3};
    t[n++] = (struct fpd_tensor_info){"dense.bias", FPD_DTYPE_F32, 1, {3}, other, sizeof other};
    static int32_t p32[10];
    static float pf[10];
    if (perm) {
        memcpy(p32, perm, sizeof p32);
        t[n++] = (struct fpd_tensor_info){"emb.fpd.row_perm", FPD_DTYPE_I32, 1, {10}, p32, sizeof p32};
    }
    static float extra[6 * 3];
    switch (mut) {
    case MUT_NO_CORE1: t[1] = t[--n]; break;
    case MUT_CORE_SHAPE: t[1].shape[2] = 1, t[1].shape[4] = 3; break; /* same bytes, ranks swapped */
    case MUT_CORE_INT: t[0].dtype = FPD_DTYPE_I32, t[0].nbytes = (size_t)fpd_layer_shape_core_numel(s, 0) * 4; break;
    case MUT_EXTRA_CORE:
        t[n++] = (struct fpd_tensor_info){"emb.fpd.core2", FPD_DTYPE_F32, 1, {18}, extra, sizeof extra};
        break;
    case MUT_PERM_F32:
        t[n - 1].dtype = FPD_DTYPE_F32;
        t[n - 1].data = pf;
        break;
    case MUT_PERM_SHAPE: t[n - 1].ndim = 2, t[n - 1].shape[0] = 5, t[n - 1].shape[1] = 2; break;
    case MUT_PERM_REPEAT: p32[9] = p32[0]; break;
    case MUT_PERM_RANGE: p32[3] = 12; break;
    case MUT_PERM_NEG: p32[4] = -1; break;
    case MUT_CORE_NAN: ((float *)bufs[1])[5] = NAN; break;
    case MUT_CORE_INF: ((float *)bufs[0])[2] = -INFINITY; break;
    case MUT_CORE_HUGE: /* finite cores whose products overflow F32 */
        for (int64_t e = 0; e < fpd_layer_shape_core_numel(s, 0); e++) ((float *)bufs[0])[e] = 1e30f;
        for (int64_t e = 0; e < fpd_layer_shape_core_numel(s, 1); e++) ((float *)bufs[1])[e] = 1e30f;
        break;
    case MUT_UNKNOWN_TENSOR:
        t[n++] = (struct fpd_tensor_info){"emb.fpd.scales", FPD_DTYPE_F32, 1, {18}, extra, sizeof extra};
        break;
    default: break;
    }
    char *js = NULL;
    struct fpd_error err;
    cr_assert(eq(int, fpd_table_meta_to_json(&meta, &js, &err), FPD_STATUS_OK));
    const char *keys[2] = {FPD_META_VERSION_KEY, "fpd.table.emb"};
    const char *vals[2] = {"1", mut == MUT_BAD_META ? "{\"rows\":10}" : js};
    char path[256];
    snprintf(path, sizeof path, "%s/ckpt.safetensors", g_dir);
    cr_assert(eq(int,
                 fpd_safetensors_write(path, t, n, keys, vals, mut == MUT_NO_META ? 1 : 2, FPD_WRITE_OVERWRITE, &err),
                 FPD_STATUS_OK),
              "%s", err.msg);
    fpd_free(js);
    struct fpd_safetensors *st;
    cr_assert(eq(int, fpd_safetensors_open(path, &st, &err), FPD_STATUS_OK), "%s", err.msg);
    return st;
}

static struct fpd_layer *random_layer(void) {
    struct fpd_table_meta meta = small_meta(FPD_DTYPE_F32);
    struct fpd_layer *l;
    struct fpd_error err;
    cr_assert(eq(int, fpd_layer_init(&meta.shape, &l, &err), FPD_STATUS_OK), "%s", err.msg);
    test_fill_random(l, 42, 1.0);
    return l;
}

static const int32_t g_perm[10] = {11, 0, 5, 3, 9, 1, 2, 7, 4, 8};

Test(checkpoint, load_layer_f32_with_perm, .init = tmpdir_init, .fini = tmpdir_fini) {
    struct fpd_layer *src = random_layer();
    struct fpd_safetensors *st = write_ckpt(src, FPD_DTYPE_F32, FPD_DTYPE_F32, g_perm, MUT_NONE);
    struct fpd_layer *l = NULL;
    struct fpd_error err;
    cr_assert(eq(int, fpd_checkpoint_load_layer(st, "emb", &l, &err), FPD_STATUS_OK), "%s", err.msg);
    const struct fpd_layer_shape *s = fpd_layer_get_shape(l);
    cr_assert(eq(int, s->k, 2));
    cr_assert(eq(i64, s->terms, 2));
    for (int32_t m = 0; m < 2; m++)
        cr_assert(memcmp(fpd_layer_core_const(l, m), fpd_layer_core_const(src, m),
                         (size_t)fpd_layer_shape_core_numel(s, m) * 4) == 0);
    const int64_t *perm = fpd_layer_row_perm(l);
    cr_assert(perm != NULL);
    for (int i = 0; i < 10; i++) cr_assert(eq(i64, perm[i], g_perm[i]));
    fpd_layer_free(l);
    fpd_safetensors_free(st);
    fpd_layer_free(src);
}

Test(checkpoint, load_layer_f16_and_bf16, .init = tmpdir_init, .fini = tmpdir_fini) {
    struct fpd_layer *src = random_layer();
    const enum fpd_dtype dts[2] = {FPD_DTYPE_F16, FPD_DTYPE_BF16};
    for (int d = 0; d < 2; d++) {
        /* metadata with this core dtype, and without any (any float dtype is taken) */
        for (int with_meta_dtype = 0; with_meta_dtype < 2; with_meta_dtype++) {
            struct fpd_safetensors *st =
                write_ckpt(src, dts[d], with_meta_dtype ? dts[d] : FPD_DTYPE_COUNT, NULL, MUT_NONE);
            struct fpd_layer *l = NULL;
            struct fpd_error err;
            cr_assert(eq(int, fpd_checkpoint_load_layer(st, "emb", &l, &err), FPD_STATUS_OK), "%s", err.msg);
            cr_assert(fpd_layer_row_perm(l) == NULL);
            const struct fpd_layer_shape *s = fpd_layer_get_shape(l);
            for (int32_t m = 0; m < 2; m++) {
                int64_t n = fpd_layer_shape_core_numel(s, m);
                unsigned char tmp[4096];
                float want[1024];
                fpd_dtype_from_f32(dts[d], fpd_layer_core_const(src, m), tmp, n);
                fpd_dtype_to_f32(dts[d], tmp, want, n);
                cr_assert(memcmp(fpd_layer_core_const(l, m), want, (size_t)n * 4) == 0);
            }
            fpd_layer_free(l);
            fpd_safetensors_free(st);
        }
    }
    fpd_layer_free(src);
}

static void expect_load_fail(enum mutation mut, enum fpd_dtype meta_core, const char *table, const char *substr) {
    struct fpd_layer *src = random_layer();
    struct fpd_safetensors *st = write_ckpt(src, FPD_DTYPE_F32, meta_core, g_perm, mut);
    struct fpd_layer *l = (struct fpd_layer *)1;
    struct fpd_error err;
    enum fpd_status s = fpd_checkpoint_load_layer(st, table, &l, &err);
    cr_assert(eq(int, s, FPD_STATUS_FORMAT), "mutation %d: status %s: %s", (int)mut, fpd_status_str(s), err.msg);
    cr_assert(l == NULL);
    cr_assert(strstr(err.msg, "ckpt.safetensors: ") != NULL, "message lacks the path: %s", err.msg);
    cr_assert(strstr(err.msg, substr) != NULL, "message '%s' lacks '%s'", err.msg, substr);
    fpd_safetensors_free(st);
    fpd_layer_free(src);
}

Test(checkpoint, load_layer_errors, .init = tmpdir_init, .fini = tmpdir_fini) {
    expect_load_fail(MUT_NONE, FPD_DTYPE_F32, "user", "no FPD table 'user' (metadata key 'fpd.table.user' is missing)");
    expect_load_fail(MUT_NO_META, FPD_DTYPE_F32, "emb", "no FPD table 'emb'");
    expect_load_fail(MUT_BAD_META, FPD_DTYPE_F32, "emb", "table 'emb': metadata lacks the key 'dim'");
    expect_load_fail(MUT_NO_CORE1, FPD_DTYPE_F32, "emb", "table 'emb': core tensor 'emb.fpd.core1' is missing");
    expect_load_fail(MUT_CORE_SHAPE, FPD_DTYPE_F32, "emb",
                     "core 'emb.fpd.core1' has shape [2, 4, 1, 3, 3] but the metadata needs [2, 4, 3, 3, 1]");
    expect_load_fail(MUT_CORE_INT, FPD_DTYPE_COUNT, "emb",
                     "core 'emb.fpd.core0' has dtype I32; F32, F64, F16 or BF16 expected");
    expect_load_fail(MUT_NONE, FPD_DTYPE_F16, "emb", "core 'emb.fpd.core0' has dtype F32; F16 expected");
    expect_load_fail(MUT_EXTRA_CORE, FPD_DTYPE_F32, "emb", "tensor 'emb.fpd.core2' exists but the metadata says k = 2");
    expect_load_fail(MUT_PERM_F32, FPD_DTYPE_F32, "emb", "'emb.fpd.row_perm' has dtype F32; I32 or I64 expected");
    expect_load_fail(MUT_PERM_SHAPE, FPD_DTYPE_F32, "emb", "'emb.fpd.row_perm' has shape [5, 2]; [10] expected");
    expect_load_fail(MUT_PERM_REPEAT, FPD_DTYPE_F32, "emb", "tensor 'emb.fpd.row_perm': row_perm[9] = 11 repeats");
    expect_load_fail(MUT_PERM_RANGE, FPD_DTYPE_F32, "emb", "row_perm[3] = 12 is outside [0, 12)");
}

Test(checkpoint, outside_reference_accepts_our_layout, .init = tmpdir_init, .fini = tmpdir_fini) {
    /* shared/tools/fpd_check.py: an independent NumPy reading of FPD v1 files. */
    const char *tool = getenv("FPD_CHECK_PY");
    char toolbuf[512];
    if (!tool) {
        const char *data = getenv("FPD_DATA_DIR");
        snprintf(toolbuf, sizeof toolbuf, "%s/../tools/fpd_check.py", data && *data ? data : "../shared/data");
        tool = toolbuf;
    }
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "test -r '%s' && python3 -c 'import numpy' >/dev/null 2>&1", tool);
    if (system(cmd) != 0) cr_skip_test("python3/numpy or %s not available", tool);
    struct fpd_layer *src = random_layer();
    struct fpd_safetensors *st = write_ckpt(src, FPD_DTYPE_F32, FPD_DTYPE_F32, g_perm, MUT_NONE);
    fpd_safetensors_free(st);
    snprintf(cmd, sizeof cmd,
             "python3 '%s' check '%s/ckpt.safetensors' | python3 -c \"import json, sys; r = json.load(sys.stdin); "
             "t = r['tables'][0]; sys.exit(0 if r['fpd_version'] == '1' and t['name'] == 'emb' and t['shapes_ok'] "
             "and t['prod_rows_ok'] and t['prod_cols_ok'] and t['row_perm_ok'] and t['terms'] == 2 else 1)\"",
             tool, g_dir);
    cr_assert(eq(int, system(cmd), 0));
    fpd_layer_free(src);
}

/* ---------------------------------------------------------------- issue 14: data checks */

/* The header checks pass; verify (deep or not) and loading refuse, naming the fault. */
static void expect_data_fault(enum mutation mut, bool shallow_catches, const char *substr) {
    struct fpd_layer *src = random_layer();
    struct fpd_safetensors *st = write_ckpt(src, FPD_DTYPE_F32, FPD_DTYPE_F32, g_perm, mut);
    struct fpd_table_meta meta;
    struct fpd_error err;
    cr_assert(eq(int, fpd_checkpoint_check_table(st, "emb", &meta, &err), FPD_STATUS_OK), "%s", err.msg);
    enum fpd_status s0 = fpd_checkpoint_verify_table(st, "emb", false, &err);
    if (shallow_catches) {
        cr_assert(eq(int, s0, FPD_STATUS_FORMAT), "mutation %d passes the core check", (int)mut);
        cr_assert(strstr(err.msg, substr) != NULL, "message '%s' lacks '%s'", err.msg, substr);
    } else {
        cr_assert(eq(int, s0, FPD_STATUS_OK), "%s", err.msg);
    }
    cr_assert(eq(int, fpd_checkpoint_verify_table(st, "emb", true, &err), FPD_STATUS_FORMAT), "mutation %d", (int)mut);
    cr_assert(strstr(err.msg, substr) != NULL, "message '%s' lacks '%s'", err.msg, substr);
    fpd_safetensors_free(st);
    fpd_layer_free(src);
}

Test(checkpoint, verify_finds_bad_data, .init = tmpdir_init, .fini = tmpdir_fini) {
    expect_data_fault(MUT_CORE_NAN, true, "core 'emb.fpd.core1' element 5 is nan");
    expect_data_fault(MUT_CORE_INF, true, "core 'emb.fpd.core0' element 2 is -inf");
    expect_data_fault(MUT_CORE_HUGE, false, "row 0, column 0 of the reconstructed table is inf");
    expect_data_fault(MUT_PERM_REPEAT, false, "row_perm[9] = 11 repeats");
    expect_data_fault(MUT_PERM_RANGE, false, "row_perm[3] = 12 is outside [0, 12)");
    expect_data_fault(MUT_PERM_NEG, false, "row_perm[4] = -1 is outside [0, 12)");
    /* a clean table passes both */
    struct fpd_layer *src = random_layer();
    struct fpd_safetensors *st = write_ckpt(src, FPD_DTYPE_F32, FPD_DTYPE_F32, g_perm, MUT_NONE);
    struct fpd_error err;
    cr_assert(eq(int, fpd_checkpoint_verify_table(st, "emb", true, &err), FPD_STATUS_OK), "%s", err.msg);
    fpd_safetensors_free(st);
    fpd_layer_free(src);
}

Test(checkpoint, load_layer_refuses_non_finite_cores, .init = tmpdir_init, .fini = tmpdir_fini) {
    expect_load_fail(MUT_CORE_NAN, FPD_DTYPE_F32, "emb", "core 'emb.fpd.core1' element 5 is nan; cores must be finite");
}

Test(checkpoint, unknown_fpd_tensor_is_refused, .init = tmpdir_init, .fini = tmpdir_fini) {
    struct fpd_layer *src = random_layer();
    struct fpd_safetensors *st = write_ckpt(src, FPD_DTYPE_F32, FPD_DTYPE_F32, NULL, MUT_UNKNOWN_TENSOR);
    struct fpd_table_meta meta;
    struct fpd_error err;
    cr_assert(eq(int, fpd_checkpoint_check_table(st, "emb", &meta, &err), FPD_STATUS_UNSUPPORTED));
    cr_assert(strstr(err.msg, "tensor 'emb.fpd.scales' is not part of its encoding") != NULL, "%s", err.msg);
    fpd_safetensors_free(st);
    fpd_layer_free(src);
}

/* ---------------------------------------------------------------- rowwise/1 */

Test(checkpoint, rowwise_meta_json) {
    struct fpd_rowwise_meta m = {FPD_ROWWISE_INT4, 6040, 8, FPD_DTYPE_BF16, 0.125}, back;
    char *js = NULL;
    struct fpd_error err;
    cr_assert(eq(int, fpd_rowwise_meta_to_json(&m, &js, &err), FPD_STATUS_OK), "%s", err.msg);
    cr_assert(eq(str, js,
                 "{\"encoding\":\"int4\",\"layout\":\"fbgemm-fused\",\"rows\":6040,\"dim\":8,"
                 "\"source_dtype\":\"BF16\",\"rel_error\":0.125}"));
    cr_assert(eq(int, fpd_rowwise_meta_from_json(js, "u", &back, &err), FPD_STATUS_OK), "%s", err.msg);
    cr_assert(eq(int, back.kind, FPD_ROWWISE_INT4));
    cr_assert(eq(i64, back.rows, 6040));
    cr_assert(eq(i64, back.dim, 8));
    cr_assert(eq(int, back.source_dtype, FPD_DTYPE_BF16));
    cr_assert(eq(dbl, back.rel_error, 0.125));
    fpd_free(js);
    static const struct { const char *js, *msg; } bad[] = {
        {"{\"encoding\":\"int2\",\"layout\":\"fbgemm-fused\",\"rows\":1,\"dim\":1,\"source_dtype\":\"F32\",\"rel_error\":0}",
         "key 'encoding' is 'int2'; int8 or int4 expected"},
        {"{\"encoding\":\"int8\",\"layout\":\"tbe\",\"rows\":1,\"dim\":1,\"source_dtype\":\"F32\",\"rel_error\":0}",
         "key 'layout' is 'tbe'; 'fbgemm-fused' expected"},
        {"{\"encoding\":\"int8\",\"layout\":\"fbgemm-fused\",\"rows\":1,\"dim\":1,\"source_dtype\":\"F32\",\"rel_error\":0,"
         "\"block\":32}",
         "metadata key 'block' is not part of rowwise/1"},
        {"{\"encoding\":\"int8\",\"layout\":\"fbgemm-fused\",\"rows\":1,\"source_dtype\":\"F32\",\"rel_error\":0}",
         "lacks the key 'dim'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cr_assert(eq(int, fpd_rowwise_meta_from_json(bad[i].js, "u", &back, &err), FPD_STATUS_FORMAT));
        cr_assert(strstr(err.msg, bad[i].msg) != NULL, "'%s' lacks '%s'", err.msg, bad[i].msg);
    }
}

/* A checkpoint with row-wise table "u" (5 x 3, int8) and the given metadata. */
static struct fpd_safetensors *write_rowwise_ex(const char *ext, const char *extra_key, const char *tensor_name,
                                                int64_t cols, unsigned char *data, int nan_scale_row) {
    static const float w[15] = {0, 1, 2, -1, -2, -3, 5, 5, 5, 0.5f, 0.25f, 0.125f, 100, -100, 0};
    for (int i = 0; i < 5; i++) test_rowwise_ref_quantize(8, w + 3 * i, 3, data + 11 * i);
    float nan = NAN;
    if (nan_scale_row >= 0) memcpy(data + 11 * nan_scale_row + 3, &nan, 4);
    struct fpd_rowwise_meta m = {FPD_ROWWISE_INT8, 5, 3, FPD_DTYPE_F32, 0.01};
    char *js = NULL;
    struct fpd_error err;
    cr_assert(eq(int, fpd_rowwise_meta_to_json(&m, &js, &err), FPD_STATUS_OK));
    struct fpd_tensor_info t[2] = {{tensor_name, FPD_DTYPE_U8, 2, {5, cols}, data, (size_t)(5 * cols)},
                                   {"bias", FPD_DTYPE_F32, 1, {3}, w, 12}};
    const char *keys[4] = {FPD_META_VERSION_KEY, "fpd.rowwise.u", FPD_META_EXTENSIONS_KEY, extra_key};
    const char *vals[4] = {"1", js, ext, "x"};
    char path[256];
    snprintf(path, sizeof path, "%s/rw.safetensors", g_dir);
    int nk = ext ? (extra_key ? 4 : 3) : 2;
    cr_assert(eq(int, fpd_safetensors_write(path, t, 2, keys, vals, nk, FPD_WRITE_OVERWRITE, &err), FPD_STATUS_OK),
              "%s", err.msg);
    fpd_free(js);
    struct fpd_safetensors *st;
    cr_assert(eq(int, fpd_safetensors_open(path, &st, &err), FPD_STATUS_OK), "%s", err.msg);
    return st;
}

static struct fpd_safetensors *write_rowwise(const char *ext, const char *extra_key, const char *tensor_name,
                                             int64_t cols, unsigned char *data) {
    return write_rowwise_ex(ext, extra_key, tensor_name, cols, data, -1);
}

Test(checkpoint, rowwise_load_and_refusals, .init = tmpdir_init, .fini = tmpdir_fini) {
    unsigned char data[5 * 11 + 16];
    struct fpd_error err;
    struct fpd_rowwise_table q;
    struct fpd_rowwise_meta m;
    struct fpd_safetensors *st = write_rowwise(FPD_EXTENSION_ROWWISE, NULL, "u.rowwise.fused", 11, data);
    cr_assert(eq(int, fpd_checkpoint_load_rowwise(st, "u", &q, &m, &err), FPD_STATUS_OK), "%s", err.msg);
    cr_assert(eq(int, q.kind, FPD_ROWWISE_INT8));
    cr_assert(eq(i64, q.rows, 5));
    cr_assert(memcmp(q.data, data, 55) == 0);
    float out[3];
    cr_assert(eq(int, fpd_rowwise_lookup(&q, (int64_t[]){4}, 1, out, &err), FPD_STATUS_OK));
    for (int j = 0; j < 3; j++) cr_assert(eq(flt, out[j], test_rowwise_ref_value(8, data + 44, 3, j)));
    cr_assert(eq(int, fpd_checkpoint_verify_table(st, "u", true, &err), FPD_STATUS_OK), "%s", err.msg);
    fpd_safetensors_free(st);

    /* an extension this build does not know: the whole checkpoint is refused */
    st = write_rowwise("rowwise/1,blockwise/2", NULL, "u.rowwise.fused", 11, data);
    cr_assert(eq(int, fpd_checkpoint_load_rowwise(st, "u", &q, &m, &err), FPD_STATUS_UNSUPPORTED));
    cr_assert(strstr(err.msg, "names the extension 'blockwise/2', which this build") != NULL, "%s", err.msg);
    fpd_safetensors_free(st);
    /* rowwise tables without the declaration; an unknown fpd.* key */
    st = write_rowwise(NULL, NULL, "u.rowwise.fused", 11, data);
    cr_assert(eq(int, fpd_checkpoint_load_rowwise(st, "u", &q, &m, &err), FPD_STATUS_FORMAT));
    cr_assert(strstr(err.msg, "does not list 'rowwise/1'") != NULL, "%s", err.msg);
    fpd_safetensors_free(st);
    st = write_rowwise(FPD_EXTENSION_ROWWISE, "fpd.codebook.u", "u.rowwise.fused", 11, data);
    cr_assert(eq(int, fpd_checkpoint_check_extensions(st, &err), FPD_STATUS_UNSUPPORTED));
    cr_assert(strstr(err.msg, "metadata key 'fpd.codebook.u' is not part of FPD v1") != NULL, "%s", err.msg);
    fpd_safetensors_free(st);
    /* wrong row bytes; missing tensor */
    st = write_rowwise(FPD_EXTENSION_ROWWISE, NULL, "u.rowwise.fused", 10, data);
    cr_assert(eq(int, fpd_checkpoint_load_rowwise(st, "u", &q, &m, &err), FPD_STATUS_FORMAT));
    cr_assert(strstr(err.msg, "is U8 [5, 10]; the metadata (int8, 5 x 3) needs U8 [5, 11]") != NULL, "%s", err.msg);
    fpd_safetensors_free(st);
    st = write_rowwise(FPD_EXTENSION_ROWWISE, NULL, "u.rowwise.codes", 11, data);
    cr_assert(eq(int, fpd_checkpoint_load_rowwise(st, "u", &q, &m, &err), FPD_STATUS_FORMAT));
    cr_assert(strstr(err.msg, "tensor 'u.rowwise.fused' is missing") != NULL, "%s", err.msg);
    fpd_safetensors_free(st);
    /* a NaN scale passes the header, not --verify */
    st = write_rowwise_ex(FPD_EXTENSION_ROWWISE, NULL, "u.rowwise.fused", 11, data, 2);
    cr_assert(eq(int, fpd_checkpoint_verify_table(st, "u", false, &err), FPD_STATUS_OK), "%s", err.msg);
    cr_assert(eq(int, fpd_checkpoint_verify_table(st, "u", true, &err), FPD_STATUS_FORMAT));
    cr_assert(strstr(err.msg, "row 2 of 'u.rowwise.fused' has a scale or bias that is NaN") != NULL, "%s", err.msg);
    fpd_safetensors_free(st);
}
