/*
 * test-free-format.c - format extension free/1: a layer's free coordinates written
 * (fpd_checkpoint_tensors_init, fpd_checkpoint_write_layer) and read back
 * (fpd_checkpoint_load_layer), the bytes checked against the definition
 * (little-endian F32/F16 of E [rows, c] and P [c, dim]), and every malformed form
 * refused by name. Then free-rowwise/1: E stored as FBGEMM's fused row-wise int4/int8
 * rows, checked against the bytes the README lays out (4-bit codes, column j in byte
 * j/2, even j in the low nibble, then scale and bias as F16; int8: codes, then F32 scale
 * and bias) on rows chosen so that int4 is exact (hand-computed codes and F16 bit
 * patterns); the rounding fpd_layer_quantize_free against the row-wise bound and the
 * file; every malformed form refused by name.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "formats/fpd-formats.h"
#include "tests/test-util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char g_dir[64];

static void dir_init(void) {
    strcpy(g_dir, "/tmp/fpd-free-XXXXXX");
    cr_assert(mkdtemp(g_dir) != NULL);
}

static void dir_fini(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", g_dir);
}

/* k = 2 layer of 10 rows, D = 6, a row permutation, c = 2 free coordinates. */
static struct fpd_layer *layer_with_free(void) {
    const int64_t n[2] = {3, 4}, d[2] = {2, 3};
    struct fpd_layer_shape s = test_make_shape(2, 10, n, d, 2, 1);
    struct fpd_layer *l = NULL;
    cr_assert(eq(int, fpd_layer_init(&s, &l, NULL), 0));
    test_fill_random(l, 4, 0.5);
    const int64_t perm[10] = {11, 0, 3, 5, 7, 1, 2, 9, 4, 6};
    cr_assert(eq(int, fpd_layer_set_row_perm(l, perm, NULL), 0));
    float e[20], p[12];
    for (int i = 0; i < 20; i++) e[i] = 0.125f * (float)(i - 7);
    for (int i = 0; i < 12; i++) p[i] = 0.25f * (float)(i % 5) - 0.5f;
    cr_assert(eq(int, fpd_layer_set_free_coords(l, 2, e, p, NULL), 0));
    return l;
}

static struct fpd_table_meta meta_of(enum fpd_dtype cd) {
    struct fpd_table_meta m;
    memset(&m, 0, sizeof m);
    m.source_dtype = FPD_DTYPE_F32;
    m.core_dtype = cd;
    snprintf(m.fit, sizeof m.fit, "train");
    m.rel_error = NAN;
    return m;
}

static struct fpd_safetensors *open_path(const char *path) {
    struct fpd_safetensors *st = NULL;
    struct fpd_error err;
    cr_assert(eq(int, fpd_safetensors_open(path, &st, &err), 0), "%s", err.msg);
    return st;
}

Test(free_format, round_trip_f32_and_f16, .init = dir_init, .fini = dir_fini) {
    struct fpd_layer *l = layer_with_free();
    const enum fpd_dtype dts[2] = {FPD_DTYPE_F32, FPD_DTYPE_F16};
    for (int q = 0; q < 2; q++) {
        char path[128];
        snprintf(path, sizeof path, "%s/t%d.safetensors", g_dir, q);
        struct fpd_table_meta meta = meta_of(dts[q]);
        struct fpd_error err;
        cr_assert(eq(int, fpd_checkpoint_write_layer(path, "emb", l, &meta, 0, &err), 0), "%s", err.msg);
        struct fpd_safetensors *st = open_path(path);
        /* the declared extension, the metadata key and the tensors as the README lays them out */
        cr_assert(eq(str, (char *)fpd_safetensors_metadata_get(st, FPD_META_EXTENSIONS_KEY), "free/1"));
        cr_assert(strstr(fpd_safetensors_metadata_get(st, "fpd.table.emb"), "\"free_coords\":2") != NULL);
        const struct fpd_tensor_info *te = fpd_safetensors_find(st, "emb.fpd.free");
        const struct fpd_tensor_info *tp = fpd_safetensors_find(st, "emb.fpd.free_proj");
        cr_assert(te && tp);
        cr_assert(eq(int, te->dtype, dts[q]));
        cr_assert(eq(int, te->ndim, 2));
        cr_assert(eq(i64, te->shape[0], 10));
        cr_assert(eq(i64, te->shape[1], 2));
        cr_assert(eq(int, tp->ndim, 2));
        cr_assert(eq(i64, tp->shape[0], 2));
        cr_assert(eq(i64, tp->shape[1], 6));
        /* E's bytes: original row order (row 3's second coordinate at element 7);
         * the values are exact in F16 (multiples of 1/8 below 2) */
        float v;
        fpd_dtype_to_f32(dts[q], (const unsigned char *)te->data + 7 * fpd_dtype_size(dts[q]), &v, 1);
        cr_assert(eq(flt, v, 0.0f)); /* 0.125 * (7 - 7) */
        fpd_dtype_to_f32(dts[q], (const unsigned char *)te->data + 19 * fpd_dtype_size(dts[q]), &v, 1);
        cr_assert(eq(flt, v, 1.5f));
        struct fpd_layer *back = NULL;
        cr_assert(eq(int, fpd_checkpoint_load_layer(st, "emb", &back, &err), 0), "%s", err.msg);
        cr_assert(eq(i64, fpd_layer_get_free_coords(back), 2));
        cr_assert(eq(int, memcmp(fpd_layer_get_free_e_const(back), fpd_layer_get_free_e_const(l), 20 * sizeof(float)),
                     0));
        cr_assert(eq(int, memcmp(fpd_layer_get_free_p_const(back), fpd_layer_get_free_p_const(l), 12 * sizeof(float)),
                     0));
        cr_assert(eq(int, memcmp(fpd_layer_row_perm(back), fpd_layer_row_perm(l), 10 * sizeof(int64_t)), 0));
        cr_assert(eq(int, fpd_checkpoint_verify_table(st, "emb", true, &err), 0), "%s", err.msg);
        if (q == 0) { /* F32: the rows are the same bit for bit */
            float a[60], b[60];
            cr_assert(eq(int, fpd_layer_reconstruct(l, 0, 10, a, NULL), 0));
            cr_assert(eq(int, fpd_layer_reconstruct(back, 0, 10, b, NULL), 0));
            cr_assert(eq(int, memcmp(a, b, sizeof a), 0));
        }
        fpd_layer_free(back);
        fpd_safetensors_free(st);
    }
    /* a layer without free coordinates writes no extension and no free tensors */
    cr_assert(eq(int, fpd_layer_set_free_coords(l, 0, NULL, NULL, NULL), 0));
    char path[128];
    snprintf(path, sizeof path, "%s/plain.safetensors", g_dir);
    struct fpd_table_meta meta = meta_of(FPD_DTYPE_F32);
    cr_assert(eq(int, fpd_checkpoint_write_layer(path, "emb", l, &meta, 0, NULL), 0));
    struct fpd_safetensors *st = open_path(path);
    cr_assert(fpd_safetensors_metadata_get(st, FPD_META_EXTENSIONS_KEY) == NULL);
    cr_assert(fpd_safetensors_find(st, "emb.fpd.free") == NULL);
    cr_assert(strstr(fpd_safetensors_metadata_get(st, "fpd.table.emb"), "free_coords") == NULL);
    fpd_safetensors_free(st);
    fpd_layer_free(l);
}

/* Write the tensors and metadata as a checkpoint of table "emb" (file m<tag>), then
 * its header check (header_ok), the shallow verify (shallow_ok, may be NULL) and the
 * load's status and message; the load must give no layer. */
static enum fpd_status write_and_load(int tag, const struct fpd_tensor_info *ts, int64_t n, const char *const *keys,
                                      const char *const *vals, int64_t nm, struct fpd_error *err, bool *header_ok,
                                      bool *shallow_ok) {
    char path[128];
    snprintf(path, sizeof path, "%s/m%d.safetensors", g_dir, tag);
    cr_assert(eq(int, fpd_safetensors_write(path, ts, n, keys, vals, nm, FPD_WRITE_OVERWRITE, err), 0), "%s",
              err->msg);
    struct fpd_safetensors *st = open_path(path);
    struct fpd_layer *back = NULL;
    struct fpd_table_meta m3;
    struct fpd_error e2;
    *header_ok = fpd_checkpoint_check_table(st, "emb", &m3, &e2) == FPD_STATUS_OK;
    if (shallow_ok) *shallow_ok = fpd_checkpoint_verify_table(st, "emb", false, &e2) == FPD_STATUS_OK;
    enum fpd_status s = fpd_checkpoint_load_layer(st, "emb", &back, err);
    cr_assert(back == NULL);
    fpd_safetensors_free(st);
    return s;
}

enum fmut { F_NO_EXT, F_NO_PROJ, F_NO_E, F_E_SHAPE, F_P_SHAPE, F_E_INT, F_P_DTYPE, F_NO_META, F_E_NAN, F_EXT_V2 };

/* Write the layer with one fault; return the load's status and message. */
static enum fpd_status load_mutated(enum fmut mut, struct fpd_error *err, bool *shallow_ok) {
    struct fpd_layer *l = layer_with_free();
    struct fpd_table_meta meta = meta_of(FPD_DTYPE_F32);
    struct fpd_checkpoint_tensors t;
    cr_assert(eq(int, fpd_checkpoint_tensors_init(l, "emb", &meta, &t, NULL), 0));
    struct fpd_tensor_info ts[FPD_MAX_MODES + 3];
    memcpy(ts, t.tensors, sizeof ts);
    int64_t n = t.n, fe = n - 2, fp = n - 1;
    const char *keys[3] = {FPD_META_VERSION_KEY, t.meta_key, FPD_META_EXTENSIONS_KEY};
    const char *vals[3] = {"1", t.meta_value, "free/1"};
    int64_t nm = 3;
    static int32_t ints[20];
    static uint16_t halfp[12];
    char *plain_json = NULL;
    switch (mut) {
    case F_NO_EXT: nm = 2; break;
    case F_NO_PROJ: n--; break;
    case F_NO_E: ts[fe] = ts[fp]; n--; break;
    case F_E_SHAPE: ts[fe].shape[0] = 5, ts[fe].shape[1] = 4; break; /* same bytes */
    case F_P_SHAPE: ts[fp].shape[0] = 3, ts[fp].shape[1] = 4; break;
    case F_E_INT: ts[fe].dtype = FPD_DTYPE_I32, ts[fe].data = ints; break;
    case F_P_DTYPE: /* F16 while the metadata says core_dtype F32 */
        ts[fp].dtype = FPD_DTYPE_F16, ts[fp].data = halfp, ts[fp].nbytes = sizeof halfp;
        break;
    case F_NO_META: { /* tensors present, free_coords absent from the JSON */
        struct fpd_table_meta m2 = meta;
        m2.shape = *fpd_layer_get_shape(l);
        cr_assert(eq(int, fpd_table_meta_to_json(&m2, &plain_json, NULL), 0));
        vals[1] = plain_json;
        break;
    }
    case F_E_NAN: ((float *)ts[fe].data)[13] = NAN; break;
    case F_EXT_V2: vals[2] = "free/2"; break;
    }
    enum fpd_status s = write_and_load((int)mut, ts, n, keys, vals, nm, err, shallow_ok, NULL);
    fpd_free(plain_json);
    fpd_checkpoint_tensors_free(&t);
    fpd_layer_free(l);
    return s;
}

static void expect_refused(enum fmut mut, enum fpd_status want, bool header_catches, const char *substr) {
    struct fpd_error err;
    bool shallow_ok;
    enum fpd_status s = load_mutated(mut, &err, &shallow_ok);
    cr_assert(eq(int, s, want), "mutation %d: status %d (%s)", (int)mut, (int)s, err.msg);
    cr_assert(strstr(err.msg, substr) != NULL, "mutation %d: message '%s' lacks '%s'", (int)mut, err.msg, substr);
    cr_assert(eq(int, shallow_ok, !header_catches), "mutation %d: header check", (int)mut);
}

Test(free_format, malformed_tables_are_refused_by_name, .init = dir_init, .fini = dir_fini) {
    expect_refused(F_NO_EXT, FPD_STATUS_FORMAT, true, "does not list 'free/1'");
    expect_refused(F_NO_PROJ, FPD_STATUS_FORMAT, true, "tensor 'emb.fpd.free_proj' is missing");
    expect_refused(F_NO_E, FPD_STATUS_FORMAT, true, "tensor 'emb.fpd.free' is missing");
    expect_refused(F_E_SHAPE, FPD_STATUS_FORMAT, true, "'emb.fpd.free' has shape [5, 4]");
    expect_refused(F_P_SHAPE, FPD_STATUS_FORMAT, true, "'emb.fpd.free_proj' has shape [3, 4]");
    expect_refused(F_E_INT, FPD_STATUS_FORMAT, true, "'emb.fpd.free' has dtype I32");
    expect_refused(F_P_DTYPE, FPD_STATUS_FORMAT, true, "'emb.fpd.free_proj' has dtype F16; F32 expected");
    expect_refused(F_NO_META, FPD_STATUS_FORMAT, true, "has no 'free_coords'");
    expect_refused(F_E_NAN, FPD_STATUS_FORMAT, false, "'emb.fpd.free' element 13 is nan");
    expect_refused(F_EXT_V2, FPD_STATUS_UNSUPPORTED, true, "'free/2'");
}

Test(free_format, meta_json_free_coords) {
    struct fpd_table_meta m = meta_of(FPD_DTYPE_F32), back;
    const int64_t n[2] = {3, 4}, d[2] = {2, 3};
    m.shape = test_make_shape(2, 10, n, d, 2, 1);
    m.free_coords = 4;
    char *js = NULL;
    struct fpd_error err;
    cr_assert(eq(int, fpd_table_meta_to_json(&m, &js, &err), 0));
    cr_assert(strstr(js, ",\"free_coords\":4}") != NULL, "%s", js);
    cr_assert(eq(int, fpd_table_meta_from_json(js, "emb", &back, &err), 0), "%s", err.msg);
    cr_assert(eq(i64, back.free_coords, 4));
    fpd_free(js);
    const char *bad[] = {
        "{\"rows\":10,\"dim\":6,\"row_shape\":[3,4],\"col_shape\":[2,3],\"ranks\":[1,2,1],\"terms\":1,"
        "\"source_dtype\":\"F32\",\"fit\":\"x\",\"seed\":0,\"rel_error\":null,\"free_coords\":0}",
        "{\"rows\":10,\"dim\":6,\"row_shape\":[3,4],\"col_shape\":[2,3],\"ranks\":[1,2,1],\"terms\":1,"
        "\"source_dtype\":\"F32\",\"fit\":\"x\",\"seed\":0,\"rel_error\":null,\"free_coords\":7}",
        "{\"rows\":10,\"dim\":6,\"row_shape\":[3,4],\"col_shape\":[2,3],\"ranks\":[1,2,1],\"terms\":1,"
        "\"source_dtype\":\"F32\",\"fit\":\"x\",\"seed\":0,\"rel_error\":null,\"free_coords\":\"2\"}",
    };
    const char *why[] = {"'free_coords' is 0, below 1", "'free_coords' is 7, above dim 6", "not an integer"};
    for (int q = 0; q < 3; q++) {
        cr_assert(eq(int, fpd_table_meta_from_json(bad[q], "emb", &back, &err), FPD_STATUS_FORMAT));
        cr_assert(strstr(err.msg, why[q]) != NULL, "%s", err.msg);
    }
}

/* ------------------------------------------------------------ free-rowwise/1 */

/* Row i of E (c = 3): bias a_i, then a_i + 1.5, a_i + 7.5: int4 scale 7.5 / 15 = 0.5,
 * codes 0, 3, 15, all exact. a_i and its F16 bits: */
static const float g_a[5] = {-1.0f, -2.0f, -0.5f, 0.25f, 1.0f};
static const uint16_t g_a16[5] = {0xBC00, 0xC000, 0xB800, 0x3400, 0x3C00};

/* k = 2 layer of 10 rows, D = 6, a row permutation, c = 3 free coordinates as above. */
static struct fpd_layer *layer_exact(void) {
    const int64_t n[2] = {3, 4}, d[2] = {2, 3};
    struct fpd_layer_shape s = test_make_shape(2, 10, n, d, 2, 1);
    struct fpd_layer *l = NULL;
    cr_assert(eq(int, fpd_layer_init(&s, &l, NULL), 0));
    test_fill_random(l, 4, 0.5);
    const int64_t perm[10] = {11, 0, 3, 5, 7, 1, 2, 9, 4, 6};
    cr_assert(eq(int, fpd_layer_set_row_perm(l, perm, NULL), 0));
    float e[30], p[18];
    for (int i = 0; i < 10; i++) {
        e[3 * i] = g_a[i % 5];
        e[3 * i + 1] = g_a[i % 5] + 1.5f;
        e[3 * i + 2] = g_a[i % 5] + 7.5f;
    }
    for (int i = 0; i < 18; i++) p[i] = 0.25f * (float)(i % 5) - 0.5f;
    cr_assert(eq(int, fpd_layer_set_free_coords(l, 3, e, p, NULL), 0));
    return l;
}

static struct fpd_table_meta meta_rowwise(enum fpd_free_kind kind) {
    struct fpd_table_meta m = meta_of(FPD_DTYPE_F32);
    m.free_rowwise = true;
    m.free_kind = kind;
    return m;
}

static uint16_t le16(const uint8_t *b) { return (uint16_t)(b[0] | b[1] << 8); }

Test(free_rowwise, int4_bytes_by_hand_and_exact_round_trip, .init = dir_init, .fini = dir_fini) {
    struct fpd_layer *l = layer_exact();
    char path[128];
    snprintf(path, sizeof path, "%s/q4.safetensors", g_dir);
    struct fpd_table_meta meta = meta_rowwise(FPD_FREE_INT4);
    struct fpd_error err;
    cr_assert(eq(int, fpd_checkpoint_write_layer(path, "emb", l, &meta, 0, &err), 0), "%s", err.msg);
    struct fpd_safetensors *st = open_path(path);
    cr_assert(eq(str, (char *)fpd_safetensors_metadata_get(st, FPD_META_EXTENSIONS_KEY), "free/1,free-rowwise/1"));
    cr_assert(strstr(fpd_safetensors_metadata_get(st, "fpd.table.emb"), "\"free_coords\":3,\"free_dtype\":\"int4\"}") !=
              NULL);
    const struct fpd_tensor_info *te = fpd_safetensors_find(st, "emb.fpd.free");
    const struct fpd_tensor_info *tp = fpd_safetensors_find(st, "emb.fpd.free_proj");
    cr_assert(te && tp);
    /* U8 [10, ceil(3/2) + 4 = 6]; P stays F32 [3, 6] */
    cr_assert(eq(int, te->dtype, FPD_DTYPE_U8));
    cr_assert(eq(int, te->ndim, 2));
    cr_assert(eq(i64, te->shape[0], 10));
    cr_assert(eq(i64, te->shape[1], 6));
    cr_assert(eq(int, tp->dtype, FPD_DTYPE_F32));
    for (int i = 0; i < 10; i++) { /* codes 0, 3, 15: bytes 0x30, 0x0F; scale 0.5 = F16 0x3800; bias a_i */
        const uint8_t *r = (const uint8_t *)te->data + 6 * i;
        cr_assert(eq(u8, r[0], 0x30), "row %d", i);
        cr_assert(eq(u8, r[1], 0x0F), "row %d", i);
        cr_assert(eq(u16, le16(r + 2), 0x3800), "row %d", i);
        cr_assert(eq(u16, le16(r + 4), g_a16[i % 5]), "row %d", i);
    }
    /* read back: E exact, the same cores, P and permutation, rows bit for bit */
    struct fpd_layer *back = NULL;
    cr_assert(eq(int, fpd_checkpoint_load_layer(st, "emb", &back, &err), 0), "%s", err.msg);
    cr_assert(eq(int, memcmp(fpd_layer_get_free_e_const(back), fpd_layer_get_free_e_const(l), 30 * sizeof(float)), 0));
    cr_assert(eq(int, memcmp(fpd_layer_get_free_p_const(back), fpd_layer_get_free_p_const(l), 18 * sizeof(float)), 0));
    cr_assert(eq(int, memcmp(fpd_layer_row_perm(back), fpd_layer_row_perm(l), 10 * sizeof(int64_t)), 0));
    float a[60], b[60];
    cr_assert(eq(int, fpd_layer_reconstruct(l, 0, 10, a, NULL), 0));
    cr_assert(eq(int, fpd_layer_reconstruct(back, 0, 10, b, NULL), 0));
    cr_assert(eq(int, memcmp(a, b, sizeof a), 0));
    struct fpd_table_meta m2;
    cr_assert(eq(int, fpd_checkpoint_check_table(st, "emb", &m2, &err), 0), "%s", err.msg);
    cr_assert(m2.free_rowwise);
    cr_assert(eq(int, m2.free_kind, FPD_FREE_INT4));
    cr_assert(eq(int, fpd_checkpoint_verify_table(st, "emb", false, &err), 0), "%s", err.msg);
    cr_assert(eq(int, fpd_checkpoint_verify_table(st, "emb", true, &err), 0), "%s", err.msg);
    /* fpd_layer_quantize_free leaves an exact E as it is */
    cr_assert(eq(int, fpd_layer_quantize_free(back, FPD_FREE_INT4, &err), 0), "%s", err.msg);
    cr_assert(eq(int, memcmp(fpd_layer_get_free_e_const(back), fpd_layer_get_free_e_const(l), 30 * sizeof(float)), 0));
    fpd_layer_free(back);
    fpd_safetensors_free(st);
    fpd_layer_free(l);
}

Test(free_rowwise, int8_layout_and_bound, .init = dir_init, .fini = dir_fini) {
    struct fpd_layer *l = layer_exact();
    char path[128];
    snprintf(path, sizeof path, "%s/q8.safetensors", g_dir);
    struct fpd_table_meta meta = meta_rowwise(FPD_FREE_INT8);
    struct fpd_error err;
    cr_assert(eq(int, fpd_checkpoint_write_layer(path, "emb", l, &meta, 0, &err), 0), "%s", err.msg);
    struct fpd_safetensors *st = open_path(path);
    const struct fpd_tensor_info *te = fpd_safetensors_find(st, "emb.fpd.free");
    cr_assert(te && te->dtype == FPD_DTYPE_U8 && te->shape[0] == 10 && te->shape[1] == 3 + 8);
    struct fpd_layer *back = NULL;
    cr_assert(eq(int, fpd_checkpoint_load_layer(st, "emb", &back, &err), 0), "%s", err.msg);
    const float *e = fpd_layer_get_free_e_const(l), *eb = fpd_layer_get_free_e_const(back);
    for (int i = 0; i < 10; i++) {
        const uint8_t *r = (const uint8_t *)te->data + 11 * i;
        float scale, bias;
        memcpy(&scale, r + 3, 4);
        memcpy(&bias, r + 7, 4);
        /* bias = the row's minimum, scale = range / 255, the first and last codes 0 and 255 */
        cr_assert(eq(flt, bias, g_a[i % 5]), "row %d", i);
        cr_assert(ieee_ulp_eq(flt, scale, 7.5f / 255.0f, 1), "row %d: scale %g", i, (double)scale);
        cr_assert(eq(u8, r[0], 0));
        cr_assert(eq(u8, r[2], 255));
        cr_assert(eq(u8, r[1], 51)); /* 1.5 / (7.5 / 255) */
        for (int q = 0; q < 3; q++) /* value = code * scale + bias, within half a step of E */
            cr_assert(le(dbl, fabs((double)eb[3 * i + q] - e[3 * i + q]), 0.5 * 7.5 / 255.0 + 1e-6), "E[%d,%d]", i, q);
    }
    fpd_layer_free(back);
    fpd_safetensors_free(st);
    fpd_layer_free(l);
}

/* fpd_layer_quantize_free on random E: within the row-wise bound, equal to what a file
 * stores, the same again when repeated (int4), and refusals that leave E unchanged. */
Test(free_rowwise, quantize_free_bound_file_and_refusals, .init = dir_init, .fini = dir_fini) {
    const int64_t n[2] = {8, 8}, d[2] = {4, 4}, rows = 60, c = 5;
    struct fpd_layer_shape s = test_make_shape(2, rows, n, d, 3, 1);
    struct fpd_layer *l = NULL;
    struct fpd_error err;
    cr_assert(eq(int, fpd_layer_init(&s, &l, NULL), 0));
    test_fill_random(l, 9, 0.3);
    cr_assert(eq(int, fpd_layer_quantize_free(l, FPD_FREE_INT4, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(strstr(err.msg, "no free coordinates") != NULL, "%s", err.msg);
    float *e0 = malloc((size_t)(rows * c) * sizeof(float));
    uint64_t x = 12345;
    for (int64_t i = 0; i < rows * c; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        e0[i] = (float)((double)(x >> 11) / 9007199254740992.0 * 4.0 - 2.0) * (float)(1 + i % 7);
    }
    cr_assert(eq(int, fpd_layer_set_free_coords(l, c, e0, NULL, NULL), 0));
    struct fpd_layer *l8 = NULL;
    cr_assert(eq(int, fpd_layer_clone(l, &l8, NULL), 0));
    cr_assert(eq(int, fpd_layer_quantize_free(l, FPD_FREE_INT4, &err), 0), "%s", err.msg);
    cr_assert(eq(int, fpd_layer_quantize_free(l8, FPD_FREE_INT8, &err), 0), "%s", err.msg);
    const float *e4 = fpd_layer_get_free_e_const(l), *e8 = fpd_layer_get_free_e_const(l8);
    for (int64_t i = 0; i < rows; i++) {
        double lo = e0[i * c], hi = lo;
        for (int64_t q = 1; q < c; q++) {
            lo = fmin(lo, e0[i * c + q]);
            hi = fmax(hi, e0[i * c + q]);
        }
        /* int4: half a step of range / 15, plus F16's rounding of the scale (2^-11
         * relative, times 15 codes) and of the bias */
        const double b4 = 0.5 * (hi - lo) / 15.0 + (hi - lo) * 15.0 * 0x1p-11 / 15.0 + fabs(lo) * 0x1p-11;
        const double b8 = 0.5 * (hi - lo) / 255.0 + 1e-6 * (fabs(lo) + fabs(hi));
        for (int64_t q = 0; q < c; q++) {
            cr_assert(le(dbl, fabs((double)e4[i * c + q] - e0[i * c + q]), b4), "int4 E[%lld,%lld]", (long long)i,
                      (long long)q);
            cr_assert(le(dbl, fabs((double)e8[i * c + q] - e0[i * c + q]), b8), "int8 E[%lld,%lld]", (long long)i,
                      (long long)q);
        }
    }
    /* what the file stores equals the rounded layer: written from the original E */
    struct fpd_layer *orig = NULL;
    cr_assert(eq(int, fpd_layer_init(&s, &orig, NULL), 0));
    test_fill_random(orig, 9, 0.3);
    cr_assert(eq(int, fpd_layer_set_free_coords(orig, c, e0, NULL, NULL), 0));
    char path[128];
    snprintf(path, sizeof path, "%s/r.safetensors", g_dir);
    struct fpd_table_meta meta = meta_rowwise(FPD_FREE_INT4);
    cr_assert(eq(int, fpd_checkpoint_write_layer(path, "t", orig, &meta, 0, &err), 0), "%s", err.msg);
    struct fpd_safetensors *st = open_path(path);
    struct fpd_layer *back = NULL;
    cr_assert(eq(int, fpd_checkpoint_load_layer(st, "t", &back, &err), 0), "%s", err.msg);
    cr_assert(eq(int, memcmp(fpd_layer_get_free_e_const(back), e4, (size_t)(rows * c) * sizeof(float)), 0));
    fpd_layer_free(back);
    fpd_safetensors_free(st);
    /* int4 again: the same E, bit for bit; int8 again: within F32 rounding */
    float *again = malloc((size_t)(rows * c) * sizeof(float));
    memcpy(again, e4, (size_t)(rows * c) * sizeof(float));
    cr_assert(eq(int, fpd_layer_quantize_free(l, FPD_FREE_INT4, &err), 0));
    cr_assert(eq(int, memcmp(again, e4, (size_t)(rows * c) * sizeof(float)), 0));
    memcpy(again, e8, (size_t)(rows * c) * sizeof(float));
    cr_assert(eq(int, fpd_layer_quantize_free(l8, FPD_FREE_INT8, &err), 0));
    for (int64_t i = 0; i < rows * c; i++) cr_assert(le(dbl, fabs((double)again[i] - e8[i]), 1e-5 * (1 + fabs(again[i]))));
    /* refusals: a NaN row, an int4 row beyond F16; E unchanged after either; a bad kind */
    float *ew = fpd_layer_get_free_e(l);
    memcpy(again, ew, (size_t)(rows * c) * sizeof(float));
    ew[7 * c + 2] = NAN;
    cr_assert(eq(int, fpd_layer_quantize_free(l, FPD_FREE_INT4, &err), FPD_STATUS_NUMERIC));
    cr_assert(strstr(err.msg, "row 7 of E cannot be stored as int4") != NULL, "%s", err.msg);
    ew[7 * c + 2] = again[7 * c + 2];
    ew[9 * c] = 1e6f;
    cr_assert(eq(int, fpd_layer_quantize_free(l, FPD_FREE_INT4, &err), FPD_STATUS_NUMERIC));
    cr_assert(strstr(err.msg, "row 9") != NULL, "%s", err.msg);
    cr_assert(eq(flt, ew[9 * c], 1e6f)); /* nothing changed, the other rows neither */
    cr_assert(eq(int, memcmp(ew, again, (size_t)(9 * c) * sizeof(float)), 0));
    cr_assert(eq(int, fpd_layer_quantize_free(l, (enum fpd_free_kind)7, &err), FPD_STATUS_INVALID_ARG));
    /* the writer refuses such a row too, naming it */
    struct fpd_checkpoint_tensors t;
    cr_assert(eq(int, fpd_checkpoint_tensors_init(l, "t", &meta, &t, &err), FPD_STATUS_NUMERIC));
    cr_assert(strstr(err.msg, "row 9 of the free coordinates E cannot be stored as int4") != NULL, "%s", err.msg);
    free(again);
    free(e0);
    fpd_layer_free(orig);
    fpd_layer_free(l8);
    fpd_layer_free(l);
}

enum qmut { Q_NO_EXT, Q_E_F32, Q_E_SHAPE, Q_BAD_KIND, Q_NO_COORDS, Q_NAN_SCALE, Q_INF_BIAS };

/* Write the exact layer with int4 E and one fault; the load's status and message. */
static enum fpd_status load_mutated_q(enum qmut mut, struct fpd_error *err, bool *header_ok, bool *shallow_ok) {
    struct fpd_layer *l = layer_exact();
    struct fpd_table_meta meta = meta_rowwise(FPD_FREE_INT4);
    struct fpd_checkpoint_tensors t;
    cr_assert(eq(int, fpd_checkpoint_tensors_init(l, "emb", &meta, &t, NULL), 0));
    struct fpd_tensor_info ts[FPD_MAX_MODES + 3];
    memcpy(ts, t.tensors, sizeof ts);
    int64_t n = t.n, fe = n - 2;
    const char *keys[3] = {FPD_META_VERSION_KEY, t.meta_key, FPD_META_EXTENSIONS_KEY};
    const char *vals[3] = {"1", t.meta_value, "free/1,free-rowwise/1"};
    static float f32e[30];
    static uint8_t bytes[60];
    char json[1024];
    snprintf(json, sizeof json, "%s", t.meta_value);
    char *at = strstr(json, "\"free_dtype\":\"int4\"");
    cr_assert(at != NULL);
    switch (mut) {
    case Q_NO_EXT: vals[2] = "free/1"; break;
    case Q_E_F32: ts[fe].dtype = FPD_DTYPE_F32, ts[fe].data = f32e, ts[fe].nbytes = sizeof f32e, ts[fe].shape[1] = 3; break;
    case Q_E_SHAPE: ts[fe].shape[0] = 6, ts[fe].shape[1] = 10; break; /* same bytes */
    case Q_BAD_KIND: memcpy(at + 14, "int2", 4), vals[1] = json; break;
    case Q_NO_COORDS: { /* "free_dtype" without "free_coords": drop ',"free_coords":3' */
        char *fc = strstr(json, ",\"free_coords\":3");
        memmove(fc, fc + 16, strlen(fc + 16) + 1);
        vals[1] = json;
        break;
    }
    case Q_NAN_SCALE: /* row 4's scale F16 NaN */
        memcpy(bytes, ts[fe].data, 60);
        bytes[4 * 6 + 2] = 0x00, bytes[4 * 6 + 3] = 0x7E;
        ts[fe].data = bytes;
        break;
    case Q_INF_BIAS: /* row 8's bias F16 -Inf */
        memcpy(bytes, ts[fe].data, 60);
        bytes[8 * 6 + 4] = 0x00, bytes[8 * 6 + 5] = 0xFC;
        ts[fe].data = bytes;
        break;
    }
    enum fpd_status s = write_and_load(100 + (int)mut, ts, n, keys, vals, 3, err, header_ok, shallow_ok);
    fpd_checkpoint_tensors_free(&t);
    fpd_layer_free(l);
    return s;
}

static void expect_refused_q(enum qmut mut, bool header_catches, const char *substr) {
    struct fpd_error err;
    bool header_ok, shallow_ok;
    enum fpd_status s = load_mutated_q(mut, &err, &header_ok, &shallow_ok);
    cr_assert(eq(int, s, FPD_STATUS_FORMAT), "mutation %d: status %d (%s)", (int)mut, (int)s, err.msg);
    cr_assert(strstr(err.msg, substr) != NULL, "mutation %d: message '%s' lacks '%s'", (int)mut, err.msg, substr);
    cr_assert(eq(int, header_ok, !header_catches), "mutation %d: header check", (int)mut);
    cr_assert(not(shallow_ok), "mutation %d: fpd_checkpoint_verify_table (not deep) passed it", (int)mut);
}

Test(free_rowwise, malformed_tables_are_refused_by_name, .init = dir_init, .fini = dir_fini) {
    expect_refused_q(Q_NO_EXT, true, "'free_dtype' = 'int4' but 'fpd.extensions' does not list 'free-rowwise/1'");
    expect_refused_q(Q_E_F32, true, "tensor 'emb.fpd.free' is F32 [10, 3] but the metadata (rows 10, free_coords 3, "
                                  "free_dtype int4) needs U8 [10, 6]");
    expect_refused_q(Q_E_SHAPE, true, "tensor 'emb.fpd.free' is U8 [6, 10]");
    expect_refused_q(Q_BAD_KIND, true, "key 'free_dtype' is 'int2'");
    expect_refused_q(Q_NO_COORDS, true, "'free_dtype' is given but 'free_coords' is not");
    expect_refused_q(Q_NAN_SCALE, false, "row 4 of 'emb.fpd.free' (int4) has a scale or bias that is NaN or Inf");
    expect_refused_q(Q_INF_BIAS, false, "row 8 of 'emb.fpd.free' (int4)");
}

Test(free_rowwise, meta_json_free_dtype) {
    struct fpd_table_meta m = meta_rowwise(FPD_FREE_INT8), back;
    const int64_t n[2] = {3, 4}, d[2] = {2, 3};
    m.shape = test_make_shape(2, 10, n, d, 2, 1);
    char *js = NULL;
    struct fpd_error err;
    /* free_rowwise without free coordinates: the writer refuses */
    cr_assert(eq(int, fpd_table_meta_to_json(&m, &js, &err), FPD_STATUS_INVALID_ARG));
    m.free_coords = 4;
    cr_assert(eq(int, fpd_table_meta_to_json(&m, &js, &err), 0), "%s", err.msg);
    cr_assert(strstr(js, ",\"free_coords\":4,\"free_dtype\":\"int8\"}") != NULL, "%s", js);
    cr_assert(eq(int, fpd_table_meta_from_json(js, "emb", &back, &err), 0), "%s", err.msg);
    cr_assert(back.free_rowwise);
    cr_assert(eq(int, back.free_kind, FPD_FREE_INT8));
    fpd_free(js);
    m.free_rowwise = false; /* absent key: E in the core dtype */
    cr_assert(eq(int, fpd_table_meta_to_json(&m, &js, &err), 0));
    cr_assert(strstr(js, "free_dtype") == NULL, "%s", js);
    cr_assert(eq(int, fpd_table_meta_from_json(js, "emb", &back, &err), 0));
    cr_assert(not(back.free_rowwise));
    fpd_free(js);
    cr_assert(eq(int, fpd_table_meta_from_json(
                          "{\"rows\":10,\"dim\":6,\"row_shape\":[3,4],\"col_shape\":[2,3],\"ranks\":[1,2,1],\"terms\":1,"
                          "\"source_dtype\":\"F32\",\"fit\":\"x\",\"seed\":0,\"rel_error\":null,\"free_coords\":2,"
                          "\"free_dtype\":4}",
                          "emb", &back, &err),
                 FPD_STATUS_FORMAT));
    cr_assert(strstr(err.msg, "key 'free_dtype' is an integer") != NULL, "%s", err.msg);
}

/* ------------------------------------------------------------ free-sym/1 */

/* Row i of E (c = 3): s_i * (qmax, -3, 1) with s_i exact in F16 (scale = s_i, codes qmax,
 * -3, 1: int4 nibbles 15, 5, 9, bytes 0x5F 0x89 with the pad nibble 8; int8 bytes 255,
 * 125, 129); row 5 zero (scale 0, codes 0); row 6 (0.7, -0.35, 0.1): int4: 0.7 / 7 = 0.1
 * is not an F16, rounded up to 0x2E67 = 0.10003662109375 (0x2E66 = 0.0999755859375 is
 * below), codes round(6.99744) = 7, round(-3.49872) = -3, round(0.99963) = 1; int8:
 * 0.7 / 127 = 0.00551181 = 2^-8 * (1 + 420.88 / 1024), rounded up to 0x1DA5 =
 * 2^-8 * (1 + 421 / 1024) = 0.005512237548828125, codes 127, round(-63.495) = -63,
 * round(18.141) = 18: bytes 255, 65, 146. */
static const float g_s[5] = {0.5f, 0.25f, 1.0f, 2.0f, 0.125f};
static const uint16_t g_s16[5] = {0x3800, 0x3400, 0x3C00, 0x4000, 0x3000};

static struct fpd_layer *layer_sym(float qmax) {
    const int64_t n[2] = {3, 4}, d[2] = {2, 3};
    struct fpd_layer_shape s = test_make_shape(2, 10, n, d, 2, 1);
    struct fpd_layer *l = NULL;
    cr_assert(eq(int, fpd_layer_init(&s, &l, NULL), 0));
    test_fill_random(l, 4, 0.5);
    float e[30] = {0}, p[18];
    for (int i = 0; i < 10; i++)
        if (i != 5 && i != 6) {
            e[3 * i] = qmax * g_s[i % 5];
            e[3 * i + 1] = -3.0f * g_s[i % 5];
            e[3 * i + 2] = g_s[i % 5];
        }
    e[18] = 0.7f, e[19] = -0.35f, e[20] = 0.1f;
    for (int i = 0; i < 18; i++) p[i] = 0.25f * (float)(i % 5) - 0.5f;
    cr_assert(eq(int, fpd_layer_set_free_coords(l, 3, e, p, NULL), 0));
    return l;
}

Test(free_sym, int4_int8_bytes_by_hand_and_round_trip, .init = dir_init, .fini = dir_fini) {
    for (int q8 = 0; q8 < 2; q8++) {
        struct fpd_layer *l = layer_sym(q8 ? 127.0f : 7.0f);
        const float s6 = q8 ? 0.005512237548828125f : 0.10003662109375f;
        char path[128];
        snprintf(path, sizeof path, "%s/s%d.safetensors", g_dir, q8 ? 8 : 4);
        struct fpd_table_meta meta = meta_rowwise(q8 ? FPD_FREE_INT8_SYM : FPD_FREE_INT4_SYM);
        struct fpd_error err;
        cr_assert(eq(int, fpd_checkpoint_write_layer(path, "emb", l, &meta, 0, &err), 0), "%s", err.msg);
        struct fpd_safetensors *st = open_path(path);
        cr_assert(eq(str, (char *)fpd_safetensors_metadata_get(st, FPD_META_EXTENSIONS_KEY), "free/1,free-sym/1"));
        cr_assert(strstr(fpd_safetensors_metadata_get(st, "fpd.table.emb"),
                         q8 ? "\"free_coords\":3,\"free_dtype\":\"int8-sym\"}" : "\"free_coords\":3,\"free_dtype\":\"int4-sym\"}") != NULL);
        const struct fpd_tensor_info *te = fpd_safetensors_find(st, "emb.fpd.free");
        const int64_t rb = q8 ? 3 + 2 : 2 + 2;
        cr_assert(te && te->dtype == FPD_DTYPE_U8 && te->ndim == 2 && te->shape[0] == 10 && te->shape[1] == rb);
        cr_assert(eq(int, fpd_safetensors_find(st, "emb.fpd.free_proj")->dtype, FPD_DTYPE_F32));
        for (int i = 0; i < 10; i++) {
            const uint8_t *r = (const uint8_t *)te->data + rb * i;
            const uint16_t sc = le16(r + rb - 2);
            if (i == 5) { /* zero row: codes 0, scale 0 */
                cr_assert(eq(u16, sc, 0));
                for (int b = 0; b < rb - 2; b++) cr_assert(eq(u8, r[b], q8 ? 128 : 0x88), "row 5 byte %d", b);
                continue;
            }
            cr_assert(eq(u16, sc, i == 6 ? (q8 ? 0x1DA5 : 0x2E67) : g_s16[i % 5]), "row %d: scale bits %04x", i, sc);
            if (q8) {
                cr_assert(eq(u8, r[0], 255), "row %d", i);
                cr_assert(eq(u8, r[1], i == 6 ? 65 : 125), "row %d", i);
                cr_assert(eq(u8, r[2], i == 6 ? 146 : 129), "row %d", i);
            } else {
                cr_assert(eq(u8, r[0], 0x5F), "row %d", i);
                cr_assert(eq(u8, r[1], 0x89), "row %d", i);
            }
        }
        /* read back: the exact rows bit for bit, row 6 = codes * its F16 scale */
        struct fpd_layer *back = NULL;
        cr_assert(eq(int, fpd_checkpoint_load_layer(st, "emb", &back, &err), 0), "%s", err.msg);
        const float *e = fpd_layer_get_free_e_const(l), *eb = fpd_layer_get_free_e_const(back);
        for (int x = 0; x < 30; x++)
            if (x / 3 != 6) cr_assert(eq(flt, eb[x], e[x]), "E[%d, %d]", x / 3, x % 3);
        cr_assert(eq(flt, eb[18], (q8 ? 127.0f : 7.0f) * s6));
        cr_assert(eq(flt, eb[19], (q8 ? -63.0f : -3.0f) * s6));
        cr_assert(eq(flt, eb[20], (q8 ? 18.0f : 1.0f) * s6));
        cr_assert(eq(int, memcmp(fpd_layer_get_free_p_const(back), fpd_layer_get_free_p_const(l), 18 * sizeof(float)), 0));
        struct fpd_table_meta m2;
        cr_assert(eq(int, fpd_checkpoint_check_table(st, "emb", &m2, &err), 0), "%s", err.msg);
        cr_assert(m2.free_rowwise);
        cr_assert(eq(int, m2.free_kind, q8 ? FPD_FREE_INT8_SYM : FPD_FREE_INT4_SYM));
        cr_assert(eq(int, fpd_checkpoint_verify_table(st, "emb", false, &err), 0), "%s", err.msg);
        cr_assert(eq(int, fpd_checkpoint_verify_table(st, "emb", true, &err), 0), "%s", err.msg);
        /* fpd_layer_quantize_free on the original gives what the file holds; again, the same */
        struct fpd_layer *ql = NULL;
        cr_assert(eq(int, fpd_layer_clone(l, &ql, NULL), 0));
        cr_assert(eq(int, fpd_layer_quantize_free(ql, meta.free_kind, &err), 0), "%s", err.msg);
        cr_assert(eq(int, memcmp(fpd_layer_get_free_e_const(ql), eb, 30 * sizeof(float)), 0));
        cr_assert(eq(int, fpd_layer_quantize_free(back, meta.free_kind, &err), 0), "%s", err.msg);
        cr_assert(eq(int, memcmp(fpd_layer_get_free_e_const(ql), eb, 30 * sizeof(float)), 0));
        fpd_layer_free(ql);
        fpd_layer_free(back);
        fpd_safetensors_free(st);
        fpd_layer_free(l);
    }
    cr_assert(eq(sz, fpd_free_row_bytes(FPD_FREE_INT4_SYM, 3), 4));
    cr_assert(eq(sz, fpd_free_row_bytes(FPD_FREE_INT4_SYM, 10), 7));
    cr_assert(eq(sz, fpd_free_row_bytes(FPD_FREE_INT8_SYM, 10), 12));
    cr_assert(eq(sz, fpd_free_row_bytes(FPD_FREE_INT4, 10), 9));
    cr_assert(eq(str, (char *)fpd_free_kind_name(FPD_FREE_INT4_SYM), "int4-sym"));
    enum fpd_free_kind k;
    cr_assert(fpd_free_kind_from_name("int8-sym", &k) && k == FPD_FREE_INT8_SYM);
    cr_assert(not(fpd_free_kind_from_name("int4-col", &k)));
}

/* Random E: within half a step of the row's scale (max|x| / qmax, F16 rounded up: at
 * most 2^-10 relative above), reference computed here in double; NaN and beyond-F16
 * rows refused with E unchanged. */
Test(free_sym, quantize_bound_and_refusals) {
    const int64_t n[2] = {8, 8}, d[2] = {4, 4}, rows = 60, c = 5;
    struct fpd_layer_shape s = test_make_shape(2, rows, n, d, 3, 1);
    float *e0 = malloc((size_t)(rows * c) * sizeof(float));
    uint64_t x = 777;
    for (int64_t i = 0; i < rows * c; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        e0[i] = (float)((double)(x >> 11) / 9007199254740992.0 * 4.0 - 2.0) * (float)(1 + i % 7);
    }
    for (int q8 = 0; q8 < 2; q8++) {
        const double qmax = q8 ? 127.0 : 7.0;
        struct fpd_layer *l = NULL;
        struct fpd_error err;
        cr_assert(eq(int, fpd_layer_init(&s, &l, NULL), 0));
        cr_assert(eq(int, fpd_layer_set_free_coords(l, c, e0, NULL, NULL), 0));
        const enum fpd_free_kind kind = q8 ? FPD_FREE_INT8_SYM : FPD_FREE_INT4_SYM;
        cr_assert(eq(int, fpd_layer_quantize_free(l, kind, &err), 0), "%s", err.msg);
        const float *e = fpd_layer_get_free_e_const(l);
        for (int64_t i = 0; i < rows; i++) {
            double m = 0;
            for (int64_t q = 0; q < c; q++) m = fmax(m, fabs(e0[i * c + q]));
            const double step = m / qmax * (1 + 0x1p-10);
            for (int64_t q = 0; q < c; q++) {
                cr_assert(le(dbl, fabs((double)e[i * c + q] - e0[i * c + q]), 0.5 * step + 1e-7),
                          "%s E[%lld,%lld]", q8 ? "int8-sym" : "int4-sym", (long long)i, (long long)q);
            }
        }
        float *ew = fpd_layer_get_free_e(l), keep = ew[3 * c + 1];
        ew[3 * c + 1] = NAN;
        cr_assert(eq(int, fpd_layer_quantize_free(l, kind, &err), FPD_STATUS_NUMERIC));
        cr_assert(strstr(err.msg, q8 ? "row 3 of E cannot be stored as int8-sym" : "row 3 of E cannot be stored as int4-sym") != NULL, "%s", err.msg);
        ew[3 * c + 1] = keep;
        if (!q8) { /* 1e6 / 7 is beyond F16 (65504) */
            ew[2 * c] = 1e6f;
            cr_assert(eq(int, fpd_layer_quantize_free(l, kind, &err), FPD_STATUS_NUMERIC));
            cr_assert(eq(flt, ew[2 * c], 1e6f));
        }
        fpd_layer_free(l);
    }
    free(e0);
}

enum smut { S_ROWWISE_EXT, S_SHAPE, S_NAN_SCALE, S_NEG_SCALE };

static enum fpd_status load_mutated_s(enum smut mut, struct fpd_error *err, bool *header_ok, bool *shallow_ok) {
    struct fpd_layer *l = layer_sym(7.0f);
    struct fpd_table_meta meta = meta_rowwise(FPD_FREE_INT4_SYM);
    struct fpd_checkpoint_tensors t;
    cr_assert(eq(int, fpd_checkpoint_tensors_init(l, "emb", &meta, &t, NULL), 0));
    cr_assert(eq(str, (char *)t.extension, "free/1,free-sym/1"));
    struct fpd_tensor_info ts[FPD_MAX_MODES + 3];
    memcpy(ts, t.tensors, sizeof ts);
    int64_t fe = t.n - 2;
    const char *keys[3] = {FPD_META_VERSION_KEY, t.meta_key, FPD_META_EXTENSIONS_KEY};
    const char *vals[3] = {"1", t.meta_value, "free/1,free-sym/1"};
    static uint8_t bytes[40];
    switch (mut) {
    case S_ROWWISE_EXT: vals[2] = "free/1,free-rowwise/1"; break;
    case S_SHAPE: ts[fe].shape[0] = 5, ts[fe].shape[1] = 8; break; /* same bytes */
    case S_NAN_SCALE: /* row 4's scale F16 NaN */
        memcpy(bytes, ts[fe].data, 40);
        bytes[4 * 4 + 2] = 0x00, bytes[4 * 4 + 3] = 0x7E;
        ts[fe].data = bytes;
        break;
    case S_NEG_SCALE: /* row 7's scale -1 (F16 0xBC00) */
        memcpy(bytes, ts[fe].data, 40);
        bytes[7 * 4 + 2] = 0x00, bytes[7 * 4 + 3] = 0xBC;
        ts[fe].data = bytes;
        break;
    }
    enum fpd_status s = write_and_load(200 + (int)mut, ts, t.n, keys, vals, 3, err, header_ok, shallow_ok);
    fpd_checkpoint_tensors_free(&t);
    fpd_layer_free(l);
    return s;
}

Test(free_sym, malformed_tables_are_refused_by_name, .init = dir_init, .fini = dir_fini) {
    const struct {
        enum smut mut;
        bool header;
        const char *msg;
    } cases[] = {
        {S_ROWWISE_EXT, true, "'free_dtype' = 'int4-sym' but 'fpd.extensions' does not list 'free-sym/1'"},
        {S_SHAPE, true, "tensor 'emb.fpd.free' is U8 [5, 8] but the metadata (rows 10, free_coords 3, free_dtype "
                        "int4-sym) needs U8 [10, 4]"},
        {S_NAN_SCALE, false, "row 4 of 'emb.fpd.free' (int4-sym) has a scale that is negative, NaN or Inf"},
        {S_NEG_SCALE, false, "row 7 of 'emb.fpd.free' (int4-sym) has a scale that is negative, NaN or Inf"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct fpd_error err;
        bool header_ok, shallow_ok;
        enum fpd_status s = load_mutated_s(cases[i].mut, &err, &header_ok, &shallow_ok);
        cr_assert(eq(int, s, FPD_STATUS_FORMAT), "case %zu: status %d (%s)", i, (int)s, err.msg);
        cr_assert(strstr(err.msg, cases[i].msg) != NULL, "case %zu: message '%s'", i, err.msg);
        cr_assert(eq(int, header_ok, !cases[i].header), "case %zu: header check", i);
        cr_assert(not(shallow_ok), "case %zu: fpd_checkpoint_verify_table (not deep) passed it", i);
    }
}

/* The tensor NAME's bytes of the file at path (a copy; caller frees) and its size. */
static uint8_t *tensor_bytes(const char *path, const char *name, size_t *n) {
    struct fpd_safetensors *st = open_path(path);
    const struct fpd_tensor_info *t = fpd_safetensors_find(st, name);
    cr_assert(t != NULL, "%s: no %s", path, name);
    *n = t->nbytes;
    uint8_t *b = malloc(*n);
    memcpy(b, t->data, *n);
    fpd_safetensors_free(st);
    return b;
}

/* fpd_checkpoint_load_layer_stored keeps E as the file's rows (bytes equal to the
 * tensor's), looks up bit for bit as the F32 layer fpd_checkpoint_load_layer gives,
 * and writing it back copies the rows (the file's E tensor again, byte for byte);
 * written in another kind or in F32 it gives what the F32 layer gives. A free/1 file
 * (F32 E) loads in F32 either way. */
Test(free_stored, load_keeps_the_rows_and_write_copies_them, .init = dir_init, .fini = dir_fini) {
    struct fpd_layer *l = layer_with_free();
    struct fpd_error err;
    float re[20];
    uint64_t seed = 5;
    for (int i = 0; i < 20; i++) re[i] = (float)(3.0 * test_rand_sym(&seed)); /* rows int8's F32 scale rounds */
    cr_assert(eq(int, fpd_layer_set_free_coords(l, 2, re, fpd_layer_get_free_p_const(l), NULL), 0));
    char a[128], b[128], c2[128], d[128];
    for (int kind = 0; kind < FPD_FREE_KIND_COUNT; kind++) {
        const enum fpd_free_kind k = (enum fpd_free_kind)kind;
        const enum fpd_free_kind k2 = (enum fpd_free_kind)((kind + 1) % FPD_FREE_KIND_COUNT);
        snprintf(a, sizeof a, "%s/a%d.safetensors", g_dir, kind);
        snprintf(b, sizeof b, "%s/b%d.safetensors", g_dir, kind);
        struct fpd_table_meta m = meta_rowwise(k), m2 = meta_rowwise(k2), mf = meta_of(FPD_DTYPE_F32);
        cr_assert(eq(int, fpd_checkpoint_write_layer(a, "emb", l, &m, 0, &err), 0), "%s", err.msg);
        struct fpd_safetensors *st = open_path(a);
        struct fpd_layer *ls = NULL, *lf = NULL;
        cr_assert(eq(int, fpd_checkpoint_load_layer_stored(st, "emb", &ls, &err), 0), "%s", err.msg);
        cr_assert(eq(int, fpd_checkpoint_load_layer(st, "emb", &lf, &err), 0), "%s", err.msg);
        const struct fpd_tensor_info *te = fpd_safetensors_find(st, "emb.fpd.free");
        enum fpd_free_kind held;
        const uint8_t *q = fpd_layer_get_free_stored(ls, &held);
        cr_assert(q != NULL && held == k && fpd_layer_get_free_e_const(ls) == NULL, "%s", fpd_free_kind_name(k));
        cr_assert(eq(int, memcmp(q, te->data, te->nbytes), 0));
        cr_assert(eq(sz, fpd_layer_free_memory_bytes(ls), te->nbytes + 2 * 6 * 4));
        float x[60], y[60];
        cr_assert(eq(int, fpd_layer_reconstruct(ls, 0, 10, x, &err), 0), "%s", err.msg);
        cr_assert(eq(int, fpd_layer_reconstruct(lf, 0, 10, y, &err), 0), "%s", err.msg);
        cr_assert(eq(int, memcmp(x, y, sizeof x), 0), "%s", fpd_free_kind_name(k));
        fpd_safetensors_free(st);
        /* written back in its kind: the same bytes; in another kind or F32: as the F32 layer */
        cr_assert(eq(int, fpd_checkpoint_write_layer(b, "emb", ls, &m, 0, &err), 0), "%s", err.msg);
        size_t na, nb;
        uint8_t *ea = tensor_bytes(a, "emb.fpd.free", &na), *eb = tensor_bytes(b, "emb.fpd.free", &nb);
        cr_assert(na == nb && memcmp(ea, eb, na) == 0, "%s: E's rows changed on the way back", fpd_free_kind_name(k));
        free(ea);
        free(eb);
        for (int t = 0; t < 2; t++) {
            const struct fpd_table_meta *mt = t ? &mf : &m2;
            snprintf(c2, sizeof c2, "%s/c%d-%d.safetensors", g_dir, kind, t);
            snprintf(d, sizeof d, "%s/d%d-%d.safetensors", g_dir, kind, t);
            cr_assert(eq(int, fpd_checkpoint_write_layer(c2, "emb", ls, mt, 0, &err), 0), "%s", err.msg);
            cr_assert(eq(int, fpd_checkpoint_write_layer(d, "emb", lf, mt, 0, &err), 0), "%s", err.msg);
            ea = tensor_bytes(c2, "emb.fpd.free", &na);
            eb = tensor_bytes(d, "emb.fpd.free", &nb);
            cr_assert(na == nb && memcmp(ea, eb, na) == 0, "%s -> %s", fpd_free_kind_name(k),
                      t ? "f32" : fpd_free_kind_name(k2));
            free(ea);
            free(eb);
        }
        fpd_layer_free(ls);
        fpd_layer_free(lf);
    }
    /* F32 E (free/1): held in F32 */
    struct fpd_table_meta mf = meta_of(FPD_DTYPE_F32);
    snprintf(a, sizeof a, "%s/f32.safetensors", g_dir);
    cr_assert(eq(int, fpd_checkpoint_write_layer(a, "emb", l, &mf, 0, &err), 0), "%s", err.msg);
    struct fpd_safetensors *st = open_path(a);
    struct fpd_layer *ls = NULL;
    cr_assert(eq(int, fpd_checkpoint_load_layer_stored(st, "emb", &ls, &err), 0), "%s", err.msg);
    cr_assert(fpd_layer_get_free_stored(ls, NULL) == NULL);
    cr_assert(eq(int, memcmp(fpd_layer_get_free_e_const(ls), re, sizeof re), 0));
    fpd_layer_free(ls);
    fpd_safetensors_free(st);
    fpd_layer_free(l);
}
