/*
 * test-compress.c - the compression pipeline (fpd_compress_*, lib/compress.c) and
 * what it reads (fpd_input_*, fpd_row_freq_load, fpd_size_parse): the report's
 * sizes against the bytes of the tensors actually written, its relative error
 * against the definition of the stored FPD table (rows multiplied out core by
 * core), int8 sizes against FBGEMM's row layout (dim + 8 bytes), the statuses the
 * tools map to exit codes (CONFIG, CANCELLED) with nothing written, warnings in the
 * report and through the log callback, and the init path's moments.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <jansson.h>

#include "formats/fpd-formats.h"
#include "heuristics/fpd-heuristics.h"
#include "tests/test-util.h"

#include <math.h>
#include <unistd.h>

static char g_dir[64];

static void tmpdir_init(void) {
    strcpy(g_dir, "/tmp/fpd-compress-XXXXXX");
    cr_assert(mkdtemp(g_dir) != NULL);
}

static void tmpdir_fini(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", g_dir);
}

#define ROWS 1500
#define DIM 16

/* g_dir/in.safetensors: "emb" [ROWS, DIM] F32 (uniform in [-1, 1), seed 5), "bias"
 * [DIM] F32, "ids" [4] I32; *w gets emb (malloc). */
static void write_input(char *path, size_t len, float **w) {
    snprintf(path, len, "%s/in.safetensors", g_dir);
    float *emb = malloc((size_t)ROWS * DIM * sizeof(float));
    uint64_t seed = 5;
    for (int64_t i = 0; i < (int64_t)ROWS * DIM; i++) emb[i] = (float)test_rand_sym(&seed);
    float bias[DIM] = {0};
    int32_t ids[4] = {1, 2, 3, 4};
    struct fpd_tensor_info t[3] = {
        {"emb", FPD_DTYPE_F32, 2, {ROWS, DIM}, emb, (size_t)ROWS * DIM * sizeof(float)},
        {"bias", FPD_DTYPE_F32, 1, {DIM}, bias, sizeof bias},
        {"ids", FPD_DTYPE_I32, 1, {4}, ids, sizeof ids},
    };
    struct fpd_error err;
    cr_assert(fpd_safetensors_write(path, t, 3, NULL, NULL, 0, 0, &err) == 0, "%s", err.msg);
    *w = emb;
}

static json_t *parse(char *text) {
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    cr_assert(j != NULL, "report: %s", je.text);
    fpd_free(text);
    return j;
}

static const json_t *table_of(const json_t *report, const char *name) {
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(report, "tables"), i, t)
        if (strcmp(json_string_value(json_object_get(t, "name")), name) == 0) return t;
    cr_assert(false, "no table '%s' in the report", name);
    return NULL;
}

/* bytes of the written emb.fpd.* tensors (cores, row_perm, free/1's E and P) */
static size_t emb_fpd_bytes(const struct fpd_safetensors *st) {
    size_t n = 0;
    for (int64_t i = 0; i < fpd_safetensors_count(st); i++) {
        const struct fpd_tensor_info *ti = fpd_safetensors_tensor(st, i);
        if (strncmp(ti->name, "emb.fpd.", 8) == 0) n += ti->nbytes;
    }
    return n;
}

/* fast FPD fits: no ALS, no finetune */
static struct fpd_compress_params fast_params(struct fpd_plan_params *pp) {
    *pp = fpd_plan_default_params();
    struct fpd_compress_params cp = fpd_compress_default_params();
    cp.plan = pp;
    cp.fit.als_sweeps = 0;
    cp.fit.finetune_epochs = 0;
    cp.recall_queries = 0;
    return cp;
}

Test(compress, fpd_report_sizes_are_the_written_bytes_and_error_the_definition, .init = tmpdir_init,
     .fini = tmpdir_fini) {
    char in[128], out[128];
    float *w;
    write_input(in, sizeof in, &w);
    snprintf(out, sizeof out, "%s/out.safetensors", g_dir);
    struct fpd_plan_params pp;
    struct fpd_compress_params cp = fast_params(&pp);
    cp.encoding = FPD_COMPRESS_ENCODING_FPD;
    pp.rank = 4;
    pp.min_ratio = 0.0;
    char *text = NULL;
    struct fpd_error err;
    cr_assert(eq(int, fpd_compress_checkpoint(in, out, &cp, &text, &err), FPD_STATUS_OK), "%s", err.msg);
    json_t *rep = parse(text);
    cr_assert_str_eq(json_string_value(json_object_get(rep, "schema")), "fpd-compress/2");
    const json_t *t = table_of(rep, "emb");
    cr_assert(true == json_is_true(json_object_get(t, "compressed")));
    cr_assert_str_eq(json_string_value(json_object_get(t, "encoding")), "fpd");

    /* the output: its emb.fpd.* tensors hold bytes_after bytes; bias and ids copied */
    struct fpd_safetensors *st;
    cr_assert(fpd_safetensors_open(out, &st, &err) == 0, "%s", err.msg);
    size_t fpd_bytes = emb_fpd_bytes(st);
    cr_assert(eq(sz, fpd_bytes, (size_t)json_integer_value(json_object_get(t, "bytes_after"))));
    cr_assert(eq(i64, json_integer_value(json_object_get(t, "bytes_before")), (int64_t)ROWS * DIM * 4));
    cr_assert(fpd_safetensors_find(st, "emb") == NULL);
    const struct fpd_tensor_info *ids = fpd_safetensors_find(st, "ids");
    cr_assert(ids && ids->dtype == FPD_DTYPE_I32 && ((const int32_t *)ids->data)[3] == 4);
    const json_t *tot = json_object_get(rep, "totals");
    size_t total_after = 0;
    for (int64_t i = 0; i < fpd_safetensors_count(st); i++) total_after += fpd_safetensors_tensor(st, i)->nbytes;
    cr_assert(eq(sz, total_after, (size_t)json_integer_value(json_object_get(tot, "bytes_after"))));
    cr_assert(eq(i64, json_integer_value(json_object_get(tot, "tables_fpd")), 1));

    /* rel_error: ||W - What||_F / ||W||_F with What's rows multiplied out */
    struct fpd_layer *l;
    cr_assert(fpd_checkpoint_load_layer(st, "emb", &l, &err) == 0, "%s", err.msg);
    cr_assert(fpd_layer_row_perm(l) == NULL);
    double num = 0.0, den = 0.0, row[DIM];
    for (int64_t i = 0; i < ROWS; i++) {
        test_naive_row(l, i, row);
        for (int j = 0; j < DIM; j++) {
            double d = (double)w[i * DIM + j] - row[j];
            num += d * d;
            den += (double)w[i * DIM + j] * w[i * DIM + j];
        }
    }
    double rel = sqrt(num / den), got = json_real_value(json_object_get(t, "rel_error"));
    cr_assert(epsilon_eq(dbl, got, rel, 1e-5 * rel), "report %.8f, definition %.8f", got, rel);
    /* an incompressible table at r = 4 misses 0.1: a warning in the report */
    cr_assert(json_array_size(json_object_get(rep, "warnings")) >= 1);
    fpd_layer_free(l);
    fpd_safetensors_free(st);
    json_decref(rep);
    free(w);
}

Test(compress, int8_sizes_follow_the_fbgemm_row_layout, .init = tmpdir_init, .fini = tmpdir_fini) {
    char in[128], out[128];
    float *w;
    write_input(in, sizeof in, &w);
    snprintf(out, sizeof out, "%s/out.safetensors", g_dir);
    struct fpd_plan_params pp;
    struct fpd_compress_params cp = fast_params(&pp);
    cp.encoding = FPD_COMPRESS_ENCODING_INT8;
    char *text = NULL;
    struct fpd_error err;
    cr_assert(eq(int, fpd_compress_checkpoint(in, out, &cp, &text, &err), FPD_STATUS_OK), "%s", err.msg);
    json_t *rep = parse(text);
    const json_t *t = table_of(rep, "emb");
    cr_assert_str_eq(json_string_value(json_object_get(t, "encoding")), "int8");
    /* FBGEMM fused int8 rows: DIM bytes, then an F32 scale and bias */
    cr_assert(eq(i64, json_integer_value(json_object_get(t, "bytes_after")), (int64_t)ROWS * (DIM + 8)));
    struct fpd_safetensors *st;
    cr_assert(fpd_safetensors_open(out, &st, &err) == 0, "%s", err.msg);
    const struct fpd_tensor_info *q = fpd_safetensors_find(st, "emb" FPD_ROWWISE_TENSOR_SUFFIX);
    cr_assert(q != NULL && q->nbytes == (size_t)ROWS * (DIM + 8));
    /* the report's error: the dequantized rows against the table */
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < ROWS; i++) {
        const uint8_t *r = (const uint8_t *)q->data + i * (DIM + 8);
        float scale, bias;
        memcpy(&scale, r + DIM, 4);
        memcpy(&bias, r + DIM + 4, 4);
        for (int j = 0; j < DIM; j++) {
            double d = (double)w[i * DIM + j] - ((double)r[j] * scale + bias);
            num += d * d;
            den += (double)w[i * DIM + j] * w[i * DIM + j];
        }
    }
    double rel = sqrt(num / den), got = json_real_value(json_object_get(t, "rel_error"));
    cr_assert(epsilon_eq(dbl, got, rel, 1e-4 * rel), "report %.8f, dequantized %.8f", got, rel);
    fpd_safetensors_free(st);
    json_decref(rep);
    free(w);
}

static int g_warnings;
static char g_last_warning[512];
static void count_warnings(enum fpd_log_level level, const char *msg, void *ud) {
    (void)ud;
    if (level == FPD_LOG_LEVEL_WARN) {
        g_warnings++;
        snprintf(g_last_warning, sizeof g_last_warning, "%s", msg);
    }
}

Test(compress, warnings_go_to_the_report_and_the_log, .init = tmpdir_init, .fini = tmpdir_fini) {
    char in[128], out[128];
    float *w;
    write_input(in, sizeof in, &w);
    snprintf(out, sizeof out, "%s/out.safetensors", g_dir);
    struct fpd_plan_params pp;
    struct fpd_compress_params cp = fast_params(&pp);
    pp.rank = 4;
    pp.min_ratio = 0.0;
    g_warnings = 0;
    fpd_log_set(count_warnings, NULL);
    char *text = NULL;
    struct fpd_error err;
    enum fpd_status st = fpd_compress_checkpoint(in, out, &cp, &text, &err);
    fpd_log_set(NULL, NULL);
    cr_assert(eq(int, st, FPD_STATUS_OK), "%s", err.msg);
    json_t *rep = parse(text);
    const json_t *ws = json_object_get(rep, "warnings");
    cr_assert(eq(int, g_warnings, (int)json_array_size(ws)));
    cr_assert(g_warnings >= 1);
    cr_assert_str_eq(json_string_value(json_array_get(ws, json_array_size(ws) - 1)), g_last_warning);
    cr_assert(strstr(g_last_warning, "emb: fpd has relative error") != NULL, "%s", g_last_warning);
    json_decref(rep);
    free(w);
}

static bool cancel_now(void *ud) {
    (void)ud;
    return true;
}

Test(compress, config_and_cancelled_write_nothing, .init = tmpdir_init, .fini = tmpdir_fini) {
    char in[128], out[128], freq[128];
    float *w;
    write_input(in, sizeof in, &w);
    free(w);
    snprintf(out, sizeof out, "%s/out.safetensors", g_dir);
    struct fpd_plan_params pp;
    struct fpd_compress_params cp = fast_params(&pp);
    cp.encoding = FPD_COMPRESS_ENCODING_FPD;
    char *text = (char *)1;
    struct fpd_error err;
    /* a named table that is not there */
    const char *names[] = {"nope"};
    cp.tables = names;
    cp.n_tables = 1;
    cr_assert(eq(int, fpd_compress_checkpoint(in, out, &cp, &text, &err), FPD_STATUS_CONFIG));
    cr_assert(strstr(err.msg, "no tensor named 'nope'") != NULL, "%s", err.msg);
    cr_assert(text == NULL);
    /* a named tensor that is not a table */
    names[0] = "ids";
    cr_assert(eq(int, fpd_compress_checkpoint(in, out, &cp, &text, &err), FPD_STATUS_CONFIG));
    cr_assert(strstr(err.msg, "tensor 'ids' is an I32 tensor") != NULL, "%s", err.msg);
    cp.tables = NULL;
    cp.n_tables = 0;
    /* row frequencies of the wrong length */
    snprintf(freq, sizeof freq, "%s/freq.txt", g_dir);
    FILE *f = fopen(freq, "w");
    fputs("1\n2\n3\n", f);
    fclose(f);
    const char *files[] = {freq};
    cp.row_freq_files = files;
    cp.n_row_freq = 1;
    cr_assert(eq(int, fpd_compress_checkpoint(in, out, &cp, &text, &err), FPD_STATUS_CONFIG));
    cr_assert(strstr(err.msg, "3 counts for a table of 1500 rows") != NULL, "%s", err.msg);
    cp.n_row_freq = 0;
    /* cancelled */
    cp.cancel = cancel_now;
    cr_assert(eq(int, fpd_compress_checkpoint(in, out, &cp, &text, &err), FPD_STATUS_CANCELLED));
    cr_assert(text == NULL);
    cr_assert(access(out, F_OK) != 0, "an output was written");
    cp.cancel = NULL;
    /* an existing output without overwrite */
    f = fopen(out, "w");
    fclose(f);
    cp.encoding = FPD_COMPRESS_ENCODING_DENSE;
    cr_assert(eq(int, fpd_compress_checkpoint(in, out, &cp, &text, &err), FPD_STATUS_IO));
    cp.overwrite = true;
    cr_assert(eq(int, fpd_compress_checkpoint(in, out, &cp, &text, &err), FPD_STATUS_OK), "%s", err.msg);
    json_t *rep = parse(text);
    cr_assert(eq(i64, json_integer_value(json_object_get(json_object_get(rep, "totals"), "tables_compressed")), 0));
    json_decref(rep);
}

Test(compress, init_writes_the_planned_table_with_its_moments, .init = tmpdir_init, .fini = tmpdir_fini) {
    char out[128];
    snprintf(out, sizeof out, "%s/init.safetensors", g_dir);
    struct fpd_plan_params pp = fpd_plan_default_params();
    pp.rank = 8;
    struct fpd_compress_params cp = fpd_compress_default_params();
    cp.plan = &pp;
    struct fpd_init_params ip = {FPD_INIT_KIND_NORMAL, 0.05, 3};
    char *text = NULL;
    struct fpd_error err;
    cr_assert(eq(int, fpd_compress_write_init(out, "t", 5000, 32, &ip, &cp, &text, &err), FPD_STATUS_OK), "%s",
              err.msg);
    json_t *rep = parse(text);
    const json_t *t = json_object_get(rep, "init");
    struct fpd_safetensors *st;
    cr_assert(fpd_safetensors_open(out, &st, &err) == 0, "%s", err.msg);
    size_t bytes = 0;
    for (int64_t i = 0; i < fpd_safetensors_count(st); i++) bytes += fpd_safetensors_tensor(st, i)->nbytes;
    cr_assert(eq(sz, bytes, (size_t)json_integer_value(json_object_get(t, "bytes_after"))));
    /* the stored table's moments, rows multiplied out */
    struct fpd_layer *l;
    cr_assert(fpd_checkpoint_load_layer(st, "t", &l, &err) == 0, "%s", err.msg);
    double s = 0.0, ss = 0.0, row[32];
    for (int64_t i = 0; i < 5000; i++) {
        test_naive_row(l, i, row);
        for (int j = 0; j < 32; j++) {
            s += row[j];
            ss += row[j] * row[j];
        }
    }
    double n = 5000.0 * 32.0, mean = s / n, var = ss / n - mean * mean;
    cr_assert(epsilon_eq(dbl, json_real_value(json_object_get(t, "variance")), var, 1e-6 * var));
    cr_assert(epsilon_eq(dbl, json_real_value(json_object_get(t, "target_variance")), 0.0025, 1e-15));
    fpd_layer_free(l);
    fpd_safetensors_free(st);
    json_decref(rep);
}

/* ---------------------------------------------------------------- inputs, sizes */

Test(compress, npy_input_is_named_after_its_stem, .init = tmpdir_init, .fini = tmpdir_fini) {
    char p[128];
    snprintf(p, sizeof p, "%s/item_table.npy", g_dir);
    float x[6] = {1, 2, 3, 4, 5, 6};
    struct fpd_tensor_info t = {"", FPD_DTYPE_F32, 2, {3, 2}, x, sizeof x};
    struct fpd_error err;
    cr_assert(fpd_npy_write(p, &t, 0, &err) == 0, "%s", err.msg);
    struct fpd_input in;
    cr_assert(eq(int, fpd_input_open(p, &in, &err), FPD_STATUS_OK), "%s", err.msg);
    cr_assert(in.npy != NULL && in.st == NULL);
    cr_assert(eq(i64, fpd_input_count(&in), 1));
    const struct fpd_tensor_info *ti = fpd_input_tensor(&in, 0);
    cr_assert_str_eq(ti->name, "item_table");
    cr_assert(ti->shape[0] == 3 && ti->shape[1] == 2 && ((const float *)ti->data)[5] == 6.0f);
    char why[160];
    cr_assert(fpd_tensor_info_not_a_table(ti, why, sizeof why) == NULL);
    fpd_input_free(&in);
    fpd_input_free(&in);
    cr_assert(eq(int, fpd_input_open("/nonexistent/x.npy", &in, &err), FPD_STATUS_IO));
    struct fpd_tensor_info empty = {"e", FPD_DTYPE_F32, 2, {0, 16}, NULL, 0};
    cr_assert_str_eq(fpd_tensor_info_not_a_table(&empty, why, sizeof why),
                     "an empty F32 table (shape 0x16): it has no rows to compress");
}

Test(compress, row_freq_text_and_npy, .init = tmpdir_init, .fini = tmpdir_fini) {
    char p[128];
    snprintf(p, sizeof p, "%s/f.txt", g_dir);
    FILE *f = fopen(p, "w");
    fputs("# counts\n3\n\n0.5\n7\n", f);
    fclose(f);
    double *v = NULL;
    struct fpd_error err;
    cr_assert(eq(int, fpd_row_freq_load(p, 3, &v, &err), FPD_STATUS_OK), "%s", err.msg);
    cr_assert(v[0] == 3.0 && v[1] == 0.5 && v[2] == 7.0);
    fpd_free(v);
    cr_assert(eq(int, fpd_row_freq_load(p, 4, &v, &err), FPD_STATUS_SHAPE));
    cr_assert(v == NULL);
    f = fopen(p, "w");
    fputs("1\n-2\n", f);
    fclose(f);
    cr_assert(eq(int, fpd_row_freq_load(p, 2, &v, &err), FPD_STATUS_FORMAT));
    cr_assert(strstr(err.msg, "f.txt:2: '-2' is not a non-negative count") != NULL, "%s", err.msg);
    snprintf(p, sizeof p, "%s/f.npy", g_dir);
    int64_t c[3] = {10, 0, 4};
    struct fpd_tensor_info t = {"", FPD_DTYPE_I64, 1, {3}, c, sizeof c};
    cr_assert(fpd_npy_write(p, &t, 0, &err) == 0, "%s", err.msg);
    cr_assert(eq(int, fpd_row_freq_load(p, 3, &v, &err), FPD_STATUS_OK), "%s", err.msg);
    cr_assert(v[0] == 10.0 && v[1] == 0.0 && v[2] == 4.0);
    fpd_free(v);
}

Test(compress, size_parse) {
    uint64_t b = 0;
    cr_assert(fpd_size_parse("1048576", &b) && b == 1048576u);
    cr_assert(fpd_size_parse("512K", &b) && b == 524288u);
    cr_assert(fpd_size_parse("1.5MiB", &b) && b == 1572864u);
    cr_assert(fpd_size_parse("2 GB", &b) && b == 2000000000u);
    cr_assert(fpd_size_parse("0", &b) && b == 0u);
    b = 7;
    cr_assert(false == fpd_size_parse("x", &b) && b == 7);
    cr_assert(false == fpd_size_parse("-1K", &b));
    cr_assert(false == fpd_size_parse("1 parsec", &b));
    cr_assert(false == fpd_size_parse("20000000TB", &b));
    cr_assert(false == fpd_size_parse(NULL, &b));
}

Test(compress, encoding_names_round_trip) {
    for (int e = 0; e < FPD_COMPRESS_ENCODING_COUNT; e++) {
        enum fpd_compress_encoding back;
        cr_assert(fpd_compress_encoding_from_name(fpd_compress_encoding_name((enum fpd_compress_encoding)e), &back));
        cr_assert(eq(int, (int)back, e));
    }
    enum fpd_compress_encoding x = FPD_COMPRESS_ENCODING_FPD;
    cr_assert(false == fpd_compress_encoding_from_name("int2", &x) && x == FPD_COMPRESS_ENCODING_FPD);
    cr_assert_str_eq(fpd_compress_encoding_name(FPD_COMPRESS_ENCODING_COUNT), "?");
}

/* ------------------------------------------------- row order from interactions */

/* Planted groups (the --init-order test, on the compress path): 40 users, even ones
 * interacting with items 0-9 only and odd ones with items 10-19, in a table "emb"
 * [40, 8] whose rows are the group's vector plus noise, interleaved. Ordered from
 * the interactions (row shape 8 x 5 at k = 2), every block of 5 rows that share a
 * leading digit holds users of one group, and the order is stored as row_perm. */
static void write_groups(const char *in, const char *tsv, int64_t max_user) {
    float emb[40 * 8];
    uint64_t seed = 9;
    for (int64_t u = 0; u < 40; u++)
        for (int64_t j = 0; j < 8; j++)
            emb[u * 8 + j] = (float)((u % 2 ? (j % 2 ? 1.0 : -1.0) : (j < 4 ? 1.0 : -0.5)) + 0.05 * test_rand_sym(&seed));
    struct fpd_tensor_info t = {"emb", FPD_DTYPE_F32, 2, {40, 8}, emb, sizeof emb};
    struct fpd_error err;
    cr_assert(fpd_safetensors_write(in, &t, 1, NULL, NULL, 0, FPD_WRITE_OVERWRITE, &err) == 0, "%s", err.msg);
    FILE *f = fopen(tsv, "w");
    for (int64_t u = 0; u <= max_user; u++)
        for (int64_t q = 0; q < 6; q++) /* 6 distinct items of the user's group */
            fprintf(f, "%lld\t%lld\n", (long long)u, (long long)((u * 7 + q * 3) % 10 + (u % 2 ? 10 : 0)));
    fclose(f);
}

Test(compress, order_from_interactions_groups_the_planted_users, .init = tmpdir_init, .fini = tmpdir_fini) {
    char in[128], out[128], tsv[128], bad[128];
    snprintf(in, sizeof in, "%s/groups.safetensors", g_dir);
    snprintf(out, sizeof out, "%s/out.safetensors", g_dir);
    snprintf(tsv, sizeof tsv, "%s/x.tsv", g_dir);
    snprintf(bad, sizeof bad, "%s/beyond.tsv", g_dir);
    write_groups(in, tsv, 39);
    struct fpd_plan_params pp;
    struct fpd_compress_params cp = fast_params(&pp);
    cp.encoding = FPD_COMPRESS_ENCODING_FPD;
    pp.rank = 2;
    pp.k = 2;
    pp.min_rows = 1;
    pp.min_ratio = 0.0;
    const char *files[1] = {tsv};
    cp.order_files = files;
    cp.n_order = 1;
    char *text = NULL;
    struct fpd_error err;
    cr_assert(eq(int, fpd_compress_checkpoint(in, out, &cp, &text, &err), FPD_STATUS_OK), "%s", err.msg);
    json_t *rep = parse(text);
    const json_t *t = table_of(rep, "emb");
    char want[256];
    snprintf(want, sizeof want, "240 interactions of %s, column 1", tsv);
    cr_assert_str_eq(json_string_value(json_object_get(t, "row_order")), want);
    cr_assert_str_eq(json_string_value(json_object_get(t, "fit")), "order+tt-svd");
    cr_assert(true == json_is_true(json_object_get(t, "row_perm")));
    struct fpd_safetensors *st;
    cr_assert(fpd_safetensors_open(out, &st, &err) == 0, "%s", err.msg);
    cr_assert(eq(int, fpd_checkpoint_verify_table(st, "emb", true, &err), 0), "%s", err.msg);
    struct fpd_layer *l;
    cr_assert(fpd_checkpoint_load_layer(st, "emb", &l, &err) == 0, "%s", err.msg);
    const struct fpd_layer_shape *s = fpd_layer_get_shape(l);
    cr_assert(eq(i64, s->row_shape[0], 8));
    cr_assert(eq(i64, s->row_shape[1], 5));
    const int64_t *perm = fpd_layer_row_perm(l);
    cr_assert(perm != NULL);
    for (int64_t blk = 0; blk < 8; blk++) {
        int parity = -1;
        for (int64_t u = 0; u < 40; u++) {
            if (perm[u] / 5 != blk) continue;
            if (parity < 0) parity = (int)(u % 2);
            cr_assert(eq(int, (int)(u % 2), parity), "block %lld mixes the groups (user %lld)", (long long)blk,
                      (long long)u);
        }
    }
    fpd_layer_free(l);
    fpd_safetensors_free(st);
    json_decref(rep);

    /* refusals; nothing written */
    unlink(out);
    cp.fit.cluster_rows = true;
    cr_assert(eq(int, fpd_compress_checkpoint(in, out, &cp, &text, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(strstr(err.msg, "both order its rows") != NULL, "%s", err.msg);
    cp.fit.cluster_rows = false;
    const int32_t col3[1] = {2};
    cp.order_columns = col3;
    cr_assert(eq(int, fpd_compress_checkpoint(in, out, &cp, &text, &err), FPD_STATUS_INVALID_ARG));
    cp.order_columns = NULL;
    const char *nope[1] = {"nope"};
    cp.order_tables = nope;
    cr_assert(eq(int, fpd_compress_checkpoint(in, out, &cp, &text, &err), FPD_STATUS_CONFIG));
    cr_assert(strstr(err.msg, "no tensor named 'nope'") != NULL, "%s", err.msg);
    cp.order_tables = NULL;
    write_groups(in, bad, 49);
    files[0] = bad;
    cr_assert(eq(int, fpd_compress_checkpoint(in, out, &cp, &text, &err), FPD_STATUS_CONFIG));
    cr_assert(strstr(err.msg, "ids up to 49 in column 1, but the table has 40 rows") != NULL, "%s", err.msg);
    snprintf(bad, sizeof bad, "%s/missing.tsv", g_dir);
    cr_assert(eq(int, fpd_compress_checkpoint(in, out, &cp, &text, &err), FPD_STATUS_CONFIG));
    cr_assert(strstr(err.msg, "missing.tsv") != NULL, "%s", err.msg);
    cr_assert(text == NULL);
    cr_assert(access(out, F_OK) != 0, "an output was written");
}

/* fit.free_coords = FPD_FREE_COORDS_AUTO: each table gets the planner's c
 * (fpd_plan_table with the same target and the table's data), the budget covers
 * the cores and E, P (the written bytes), and a call without a target is refused. */
Test(compress, free_coords_auto_fits_the_planned_c_within_the_budget, .init = tmpdir_init, .fini = tmpdir_fini) {
    char in[128], out[128];
    snprintf(in, sizeof in, "%s/in.safetensors", g_dir);
    snprintf(out, sizeof out, "%s/out.safetensors", g_dir);
    /* rows = A[i] B + 0.01 noise with A [ROWS, 2] random: two directions per row that
     * no train over the row digits shares; the planner gives them c = 2 (asserted) */
    float *w = malloc((size_t)ROWS * DIM * sizeof(float));
    double a[ROWS][2], b[2][DIM];
    uint64_t seed = 11;
    for (int i = 0; i < ROWS; i++) a[i][0] = test_rand_sym(&seed), a[i][1] = test_rand_sym(&seed);
    for (int k = 0; k < 2; k++)
        for (int j = 0; j < DIM; j++) b[k][j] = test_rand_sym(&seed);
    for (int i = 0; i < ROWS; i++)
        for (int j = 0; j < DIM; j++)
            w[i * DIM + j] = (float)(a[i][0] * b[0][j] + a[i][1] * b[1][j] + 0.01 * test_rand_sym(&seed));
    struct fpd_tensor_info t0 = {"emb", FPD_DTYPE_F32, 2, {ROWS, DIM}, w, (size_t)ROWS * DIM * sizeof(float)};
    struct fpd_error err;
    cr_assert(fpd_safetensors_write(in, &t0, 1, NULL, NULL, 0, 0, &err) == 0, "%s", err.msg);

    struct fpd_plan_params pp;
    struct fpd_compress_params cp = fast_params(&pp);
    cp.fit.free_coords = FPD_FREE_COORDS_AUTO;
    char *text = (char *)1;
    /* no budget, ratio or max_error (encoding FPD, plan max_error 0): refused */
    cp.encoding = FPD_COMPRESS_ENCODING_FPD;
    cr_assert(eq(int, fpd_compress_checkpoint(in, out, &cp, &text, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(strstr(err.msg, "need a target") != NULL, "%s", err.msg);
    cr_assert(text == NULL);
    cr_assert(access(out, F_OK) != 0, "an output was written");

    pp.budget_bytes = 40000;
    pp.min_ratio = 0.0;
    struct fpd_plan plan;
    struct fpd_plan_params tp = pp;
    struct fpd_table_view view = {w, FPD_DTYPE_F32, ROWS, DIM};
    tp.free_coords = FPD_FREE_COORDS_AUTO;
    tp.table = &view;
    cr_assert(fpd_plan_table(ROWS, DIM, FPD_DTYPE_F32, &tp, &plan, &err) == 0, "%s", err.msg);
    cr_assert(eq(i64, plan.free_coords, 2), "the planner's c: %lld", (long long)plan.free_coords);
    cr_assert(eq(int, fpd_compress_checkpoint(in, out, &cp, &text, &err), FPD_STATUS_OK), "%s", err.msg);
    json_t *rep = parse(text);
    const json_t *t = table_of(rep, "emb");
    cr_assert(eq(i64, json_integer_value(json_object_get(t, "free_coords")), plan.free_coords));
    cr_assert(eq(i64, json_integer_value(json_object_get(t, "r")), plan.shape.ranks[1]));
    struct fpd_safetensors *st;
    cr_assert(fpd_safetensors_open(out, &st, &err) == 0, "%s", err.msg);
    size_t fpd_bytes = emb_fpd_bytes(st);
    const struct fpd_tensor_info *e = fpd_safetensors_find(st, "emb.fpd.free");
    cr_assert(e && e->shape[0] == ROWS && e->shape[1] == 2);
    /* everything written, cores and E, P, within the budget and as planned */
    cr_assert(eq(sz, fpd_bytes, plan.bytes_after));
    cr_assert(fpd_bytes <= pp.budget_bytes, "%zu bytes", fpd_bytes);
    cr_assert(eq(sz, fpd_bytes, (size_t)json_integer_value(json_object_get(t, "bytes_after"))));
    /* no ALS, no finetune: the fit is the prediction's first stage (TT-SVD, then E, P
     * from the residual), so the prediction holds to float rounding */
    double rel = json_real_value(json_object_get(t, "rel_error"));
    cr_assert(epsilon_eq(dbl, rel, plan.predicted_error, 1e-4 * rel), "rel_error %.6f, predicted %.6f", rel,
              plan.predicted_error);
    fpd_safetensors_free(st);
    json_decref(rep);
    free(w);
}
