/*
 * test-ncf-data.c - the NCF data files and GMF checkpoints (fpd_ncf_*,
 * formats/ncf-data.c): the test files and interaction files parsed against the
 * hand-written contents, their errors naming file and line, a GMF checkpoint with a
 * dense and an FPD table written and read back bit for bit, HR@10 / NDCG@10 from
 * files on a hand-computed case, and the NCF GMF-8 checkpoint's published HR@10
 * (skipped without ../shared/data).
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "formats/fpd-formats.h"
#include "tests/test-util.h"

#include <math.h>

static char g_dir[64];

static void tmpdir_init(void) {
    strcpy(g_dir, "/tmp/fpd-ncf-XXXXXX");
    cr_assert(mkdtemp(g_dir) != NULL);
}

static void tmpdir_fini(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", g_dir);
}

/* Write text to g_dir/name; the path into buf. */
static const char *put(const char *name, const char *text, char *buf, size_t len) {
    snprintf(buf, len, "%s/%s", g_dir, name);
    FILE *f = fopen(buf, "w");
    cr_assert(f != NULL);
    fputs(text, f);
    fclose(f);
    return buf;
}

/* ---------------------------------------------------------------- test files */

Test(ncf_data, test_files_parsed_as_written, .init = tmpdir_init, .fini = tmpdir_fini) {
    char r[128], n[128];
    put("t.rating", "0\t5\t4\t978824330\n\n1\t2\t5\t978824331\n", r, sizeof r);
    put("t.negative", "(0,5)\t1\t2\t3\n(1,2)\t7\t8\t9\n", n, sizeof n);
    struct fpd_ncf_test t;
    struct fpd_error err;
    cr_assert(eq(int, fpd_ncf_test_load(r, n, &t, &err), FPD_STATUS_OK), "%s", err.msg);
    cr_assert(eq(i64, t.n, 2));
    cr_assert(eq(i64, t.n_cand, 4));
    const int64_t users[] = {0, 1}, cand[] = {5, 1, 2, 3, 2, 7, 8, 9};
    for (int i = 0; i < 2; i++) cr_assert(eq(i64, t.users[i], users[i]));
    for (int i = 0; i < 8; i++) cr_assert(eq(i64, t.cand[i], cand[i]), "cand[%d]", i);
    fpd_ncf_test_free(&t);
    cr_assert(t.users == NULL && t.cand == NULL && t.n == 0);
    fpd_ncf_test_free(&t); /* twice: a no-op */
}

static void expect_test_fail(const char *rating, const char *negative, enum fpd_status want, const char *substr) {
    char r[128], n[128];
    put("bad.rating", rating, r, sizeof r);
    put("bad.negative", negative, n, sizeof n);
    struct fpd_ncf_test t;
    struct fpd_error err;
    cr_assert(eq(int, fpd_ncf_test_load(r, n, &t, &err), want), "%s", err.msg);
    cr_assert(strstr(err.msg, substr) != NULL, "'%s' lacks '%s'", err.msg, substr);
    cr_assert(t.users == NULL && t.cand == NULL);
    fpd_ncf_test_free(&t);
}

Test(ncf_data, test_file_errors_name_file_and_line, .init = tmpdir_init, .fini = tmpdir_fini) {
    expect_test_fail("0\t5\n1\t2\n", "(0,5)\t1\n(1,3)\t7\n", FPD_STATUS_FORMAT, "bad.negative:2: (1,3) does not match");
    expect_test_fail("0\t5\n1\t2\n", "(0,5)\t1\t2\n(1,2)\t7\n", FPD_STATUS_FORMAT, "bad.negative:2: 1 negatives");
    expect_test_fail("0\t5\nx\t2\n", "(0,5)\t1\n", FPD_STATUS_FORMAT, "bad.rating:2: expected");
    expect_test_fail("0\t5\n1\t2\n", "(0,5)\t1\n", FPD_STATUS_FORMAT, "has 1 lines but");
    expect_test_fail("", "", FPD_STATUS_FORMAT, "no test interactions");
    struct fpd_ncf_test t;
    struct fpd_error err;
    cr_assert(eq(int, fpd_ncf_test_load("/nonexistent/r", "/nonexistent/n", &t, &err), FPD_STATUS_IO));
    cr_assert(strstr(err.msg, "/nonexistent/r") != NULL, "%s", err.msg);
}

/* ---------------------------------------------------------------- interactions */

Test(ncf_data, interactions_header_separators_and_id_base, .init = tmpdir_init, .fini = tmpdir_fini) {
    char p[128];
    put("r.csv", "user,item,rating\n1,1,5\n1 3 2.5\n2\t2\n", p, sizeof p);
    struct fpd_ncf_interactions x;
    struct fpd_error err;
    cr_assert(eq(int, fpd_ncf_interactions_load(p, 1, &x, &err), FPD_STATUS_OK), "%s", err.msg);
    cr_assert(eq(i64, x.n, 3));
    const int64_t u[] = {0, 0, 1}, it[] = {0, 2, 1};
    for (int i = 0; i < 3; i++) {
        cr_assert(eq(i64, x.users[i], u[i]));
        cr_assert(eq(i64, x.items[i], it[i]));
    }
    cr_assert(eq(flt, x.ratings[0], 5.0f));
    cr_assert(eq(flt, x.ratings[1], 2.5f));
    cr_assert(isnan(x.ratings[2]));
    cr_assert(eq(i64, x.n_users, 2));
    cr_assert(eq(i64, x.n_items, 3));
    fpd_ncf_interactions_free(&x);

    /* more than the first growth step (4096 lines): every line kept in order */
    char q[128];
    snprintf(q, sizeof q, "%s/big.txt", g_dir);
    FILE *f = fopen(q, "w");
    for (int i = 0; i < 10000; i++) fprintf(f, "%d\t%d\n", i % 7, i);
    fclose(f);
    cr_assert(eq(int, fpd_ncf_interactions_load(q, 0, &x, &err), FPD_STATUS_OK), "%s", err.msg);
    cr_assert(eq(i64, x.n, 10000));
    for (int i = 0; i < 10000; i++) cr_assert(x.users[i] == i % 7 && x.items[i] == i, "line %d", i + 1);
    fpd_ncf_interactions_free(&x);

    put("low.txt", "1\t1\n0\t4\n", p, sizeof p);
    cr_assert(eq(int, fpd_ncf_interactions_load(p, 1, &x, &err), FPD_STATUS_FORMAT));
    cr_assert(strstr(err.msg, "low.txt:2: id 0 is below the first id 1") != NULL, "%s", err.msg);
    fpd_ncf_interactions_free(&x);
}

/* ---------------------------------------------------------------- models */

/* A model: user table dense [3, 4], item table an FPD layer [6, 4] (k = 2, row
 * shape 2x3, col shape 2x2, ranks 1,2,1, p = 1) with random cores. */
static void make_model(struct fpd_ncf_model *m) {
    struct fpd_error err;
    const int64_t rows[2] = {3, 6};
    float *dense[2] = {fpd_malloc(12 * sizeof(float)), NULL};
    cr_assert(dense[0] != NULL);
    uint64_t seed = 11;
    for (int i = 0; i < 12; i++) dense[0][i] = (float)test_rand_sym(&seed);
    const int64_t n[] = {2, 3}, d[] = {2, 2};
    struct fpd_layer_shape s = test_make_shape(2, 6, n, d, 2, 1);
    struct fpd_init_params ip = {FPD_INIT_KIND_NORMAL, 0.5, 3};
    struct fpd_layer *layer[2] = {NULL, NULL};
    cr_assert(eq(int, fpd_init(&s, &ip, &layer[1], &err), FPD_STATUS_OK), "%s", err.msg);
    const float w[4] = {0.5f, -1.0f, 2.0f, 0.25f};
    cr_assert(eq(int, fpd_ncf_model_init(m, dense, layer, rows, 4, w, 0.125f, &err), FPD_STATUS_OK), "%s",
              err.msg);
}

Test(ncf_data, model_saved_and_loaded_bit_for_bit, .init = tmpdir_init, .fini = tmpdir_fini) {
    struct fpd_ncf_model m, back;
    struct fpd_error err;
    make_model(&m);
    char path[128];
    snprintf(path, sizeof path, "%s/gmf.safetensors", g_dir);
    cr_assert(eq(int, fpd_ncf_model_save(&m, path, false, &err), FPD_STATUS_OK), "%s", err.msg);
    /* no overwrite without the flag */
    cr_assert(eq(int, fpd_ncf_model_save(&m, path, false, &err), FPD_STATUS_IO));
    cr_assert(eq(int, fpd_ncf_model_load(path, &back, &err), FPD_STATUS_OK), "%s", err.msg);
    cr_assert(back.dense[0] != NULL && back.layer[0] == NULL);
    cr_assert(back.dense[1] == NULL && back.layer[1] != NULL);
    cr_assert(eq(i64, back.gmf.user.rows, 3));
    cr_assert(eq(i64, back.gmf.item.rows, 6));
    cr_assert(eq(i64, back.gmf.user.dim, 4));
    cr_assert(memcmp(back.dense[0], m.dense[0], 12 * sizeof(float)) == 0);
    cr_assert(memcmp(back.weight, m.weight, 4 * sizeof(float)) == 0);
    cr_assert(eq(flt, back.gmf.bias, 0.125f));
    /* the FPD table: its rows (the layer's look-up) equal the original's */
    float a[24], b[24];
    int64_t idx[6] = {0, 1, 2, 3, 4, 5};
    cr_assert(fpd_layer_lookup(m.layer[1], idx, 6, a, &err) == 0, "%s", err.msg);
    cr_assert(fpd_layer_lookup(back.layer[1], idx, 6, b, &err) == 0, "%s", err.msg);
    cr_assert(memcmp(a, b, sizeof a) == 0);
    fpd_ncf_model_free(&back);
    fpd_ncf_model_free(&m);
    cr_assert(m.st == NULL && m.weight == NULL);
    fpd_ncf_model_free(&m); /* twice: a no-op */
}

Test(ncf_data, model_load_errors, .init = tmpdir_init, .fini = tmpdir_fini) {
    struct fpd_ncf_model m;
    struct fpd_error err;
    /* a safetensors file with one unrelated tensor: not a GMF checkpoint */
    char path[128];
    snprintf(path, sizeof path, "%s/other.safetensors", g_dir);
    float x[2] = {1, 2};
    struct fpd_tensor_info t = {"other", FPD_DTYPE_F32, 1, {2}, x, sizeof x};
    cr_assert(fpd_safetensors_write(path, &t, 1, NULL, NULL, 0, 0, &err) == 0, "%s", err.msg);
    cr_assert(eq(int, fpd_ncf_model_load(path, &m, &err), FPD_STATUS_FORMAT));
    cr_assert(strstr(err.msg, "not an NCF checkpoint") != NULL, "%s", err.msg);
    cr_assert(strstr(err.msg, "user_embedding.weight") != NULL, "%s", err.msg);
    fpd_ncf_model_free(&m);
    cr_assert(eq(int, fpd_ncf_model_load("/nonexistent/x.safetensors", &m, &err), FPD_STATUS_IO));
    fpd_ncf_model_free(&m);
}

/* ---------------------------------------------------------------- evaluation */

/* 2 users x 5 items, dim 2, w = (1, 1), b = 0: logits are dot products. User 0
 * (1, 0) holds out item 1 (logit 2) among 10 negatives of which 8 score higher
 * (item 0, logit 3): rank 8, a hit with gain 1/log2(8 + 2). User 1 (0, 1) holds out
 * item 2 (logit 0) among 10 negatives scoring 5 (items 3 and 4): rank 10, a miss. */
Test(ncf_data, eval_file_hand_computed, .init = tmpdir_init, .fini = tmpdir_fini) {
    struct fpd_error err;
    const int64_t rows[2] = {2, 5};
    float *dense[2] = {fpd_malloc(4 * sizeof(float)), fpd_malloc(10 * sizeof(float))};
    const float Ut[] = {1, 0, 0, 1}, It[] = {3, 0, 2, 0, 1, 0, 0, 5, 2, 5}, w[] = {1, 1};
    memcpy(dense[0], Ut, sizeof Ut);
    memcpy(dense[1], It, sizeof It);
    struct fpd_layer *layer[2] = {NULL, NULL};
    struct fpd_ncf_model m;
    cr_assert(fpd_ncf_model_init(&m, dense, layer, rows, 2, w, 0.0f, &err) == 0, "%s", err.msg);
    char ckpt[128], r[128], n[128];
    snprintf(ckpt, sizeof ckpt, "%s/gmf.safetensors", g_dir);
    cr_assert(fpd_ncf_model_save(&m, ckpt, false, &err) == 0, "%s", err.msg);
    fpd_ncf_model_free(&m);
    put("t.rating", "0\t1\n1\t2\n", r, sizeof r);
    put("t.negative", "(0,1)\t0\t0\t0\t0\t0\t0\t0\t0\n(1,2)\t3\t4\t3\t4\t3\t4\t3\t4\t3\t4\n", n, sizeof n);
    /* users differ in their number of negatives: refused */
    struct fpd_ncf_metrics met;
    cr_assert(eq(int, fpd_ncf_eval_file(ckpt, r, n, &met, &err), FPD_STATUS_FORMAT));
    put("t.negative", "(0,1)\t0\t0\t0\t0\t0\t0\t0\t0\t2\t2\n(1,2)\t3\t4\t3\t4\t3\t4\t3\t4\t3\t4\n", n,
        sizeof n);
    /* user 0: 8 higher (item 0), item 2 twice lower: rank 8, a hit; user 1: 10 higher: a miss */
    cr_assert(eq(int, fpd_ncf_eval_file(ckpt, r, n, &met, &err), FPD_STATUS_OK), "%s", err.msg);
    cr_assert(eq(i64, met.users, 2));
    cr_assert(eq(dbl, met.hr10, 0.5));
    cr_assert(epsilon_eq(dbl, met.ndcg10, 0.5 / log2(10.0), 1e-12), "%.17g", met.ndcg10);
    /* an item id outside the table: INVALID_ARG naming the checkpoint */
    put("t.negative", "(0,1)\t0\t0\t0\t0\t0\t0\t0\t0\t2\t7\n(1,2)\t3\t4\t3\t4\t3\t4\t3\t4\t3\t4\n", n,
        sizeof n);
    cr_assert(eq(int, fpd_ncf_eval_file(ckpt, r, n, &met, &err), FPD_STATUS_INVALID_ARG), "%s", err.msg);
    cr_assert(strstr(err.msg, ckpt) != NULL, "%s", err.msg);
}

/* The NCF paper's GMF-8 on its ML-1M test set: HR@10 0.6368, NDCG@10 0.3691
 * (shared/data/README.md, from an independent NumPy implementation). */
Test(ncf_data_real, gmf_checkpoint_from_files) {
    char ckpt[4096], rating[4096], negative[4096];
    const char *p;
    if (!(p = test_data_path("ncf/ncf_gmf8_ml1m.safetensors"))) cr_skip_test("shared data (ncf/) not found");
    snprintf(ckpt, sizeof ckpt, "%s", p);
    if (!(p = test_data_path("ncf/ml-1m.test.rating"))) cr_skip_test("ncf test files not found");
    snprintf(rating, sizeof rating, "%s", p);
    if (!(p = test_data_path("ncf/ml-1m.test.negative"))) cr_skip_test("ncf test files not found");
    snprintf(negative, sizeof negative, "%s", p);
    struct fpd_ncf_metrics met;
    struct fpd_error err;
    cr_assert(eq(int, fpd_ncf_eval_file(ckpt, rating, negative, &met, &err), FPD_STATUS_OK), "%s", err.msg);
    cr_assert(eq(i64, met.users, 6040));
    cr_assert(epsilon_eq(dbl, met.hr10, 0.6368, 0.0005), "HR@10 %.5f", met.hr10);
    cr_assert(epsilon_eq(dbl, met.ndcg10, 0.3691, 0.0005), "NDCG@10 %.5f", met.ndcg10);
}
