/*
 * test-free-format.c - format extension free/1: a layer's free coordinates written
 * (fpd_checkpoint_tensors_init, fpd_checkpoint_write_layer) and read back
 * (fpd_checkpoint_load_layer), the bytes checked against the definition
 * (little-endian F32/F16 of E [rows, c] and P [c, dim]), and every malformed form
 * refused by name.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "formats/fpd-formats.h"
#include "tests/test-util.h"

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
    char path[128];
    snprintf(path, sizeof path, "%s/m%d.safetensors", g_dir, (int)mut);
    cr_assert(eq(int, fpd_safetensors_write(path, ts, n, keys, vals, nm, FPD_WRITE_OVERWRITE, err), 0), "%s",
              err->msg);
    fpd_free(plain_json);
    struct fpd_safetensors *st = open_path(path);
    struct fpd_layer *back = NULL;
    struct fpd_table_meta m3;
    struct fpd_error e2;
    *shallow_ok = fpd_checkpoint_check_table(st, "emb", &m3, &e2) == FPD_STATUS_OK;
    enum fpd_status s = fpd_checkpoint_load_layer(st, "emb", &back, err);
    cr_assert(back == NULL);
    fpd_safetensors_free(st);
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
