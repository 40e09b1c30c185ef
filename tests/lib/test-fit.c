/*
 * test-fit.c - TT-SVD, backfitting and finetuning against independent
 * references: exact recovery of a table built as an FPD (a known exact
 * decomposition), published NumPy TT-SVD errors on the GloVe table, and
 * monotonicity of the error in the rank and over finetuning.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "formats/fpd-formats.h"
#include "tests/test-util.h"

#include <stdlib.h>

static struct fpd_layer_shape shape3(int64_t rows, int64_t n0, int64_t n1, int64_t n2, int64_t d0, int64_t d1,
                                     int64_t d2, int64_t r, int64_t p) {
    struct fpd_layer_shape s;
    memset(&s, 0, sizeof s);
    s.k = 3;
    s.rows = rows;
    s.dim = d0 * d1 * d2;
    s.terms = p;
    s.row_shape[0] = n0;
    s.row_shape[1] = n1;
    s.row_shape[2] = n2;
    s.col_shape[0] = d0;
    s.col_shape[1] = d1;
    s.col_shape[2] = d2;
    fpd_layer_shape_set_rank(&s, r);
    return s;
}

/* Dense table from a layer by the naive definition (double, then F32). */
static float *naive_dense(const struct fpd_layer *l) {
    const struct fpd_layer_shape *s = fpd_layer_get_shape(l);
    float *w = malloc((size_t)(s->rows * s->dim) * sizeof(float));
    double row[512];
    for (int64_t i = 0; i < s->rows; i++) {
        test_naive_row(l, i, row);
        for (int64_t j = 0; j < s->dim; j++) w[i * s->dim + j] = (float)row[j];
    }
    return w;
}

static char g_dir[256];

static void mk_tmpdir(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/fpd-test-fit-XXXXXX");
    cr_assert(ne(ptr, mkdtemp(g_dir), NULL));
}

static void rm_tmpdir(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    cr_assert(eq(int, system(cmd), 0));
}

/* A table that is exactly an FPD of rank 3 (random cores, 1100 rows = 11x10x10;
 * with padding rows the zero-padded tensor is no longer of that TT-rank, since
 * TT-SVD fits zeros there) goes to a safetensors file, is read back, fitted by TT-SVD at rank 3, the
 * cores go into an FPD v1 checkpoint, are loaded back, and reproduce the table. */
Test(fit, exact_fpd_recovered_through_files, .init = mk_tmpdir, .fini = rm_tmpdir) {
    struct fpd_error err;
    struct fpd_layer_shape s = shape3(1100, 11, 10, 10, 2, 3, 2, 3, 1);
    struct fpd_layer *truth = NULL;
    cr_assert(eq(int, fpd_layer_init(&s, &truth, &err), 0));
    test_fill_random(truth, 2024, 1.0);
    float *w = naive_dense(truth);

    char dense_path[300], fpd_path[300];
    snprintf(dense_path, sizeof dense_path, "%s/dense.safetensors", g_dir);
    snprintf(fpd_path, sizeof fpd_path, "%s/fpd.safetensors", g_dir);
    struct fpd_tensor_info t = {.name = "emb.weight", .dtype = FPD_DTYPE_F32, .ndim = 2, .shape = {s.rows, s.dim},
                                .data = w, .nbytes = (size_t)(s.rows * s.dim) * 4};
    cr_assert(eq(int, fpd_safetensors_write(dense_path, &t, 1, NULL, NULL, 0, 0, &err), 0), "%s", err.msg);

    struct fpd_safetensors *st = NULL;
    cr_assert(eq(int, fpd_safetensors_open(dense_path, &st, &err), 0), "%s", err.msg);
    const struct fpd_tensor_info *ti = fpd_safetensors_find(st, "emb.weight");
    cr_assert(ne(ptr, (void *)ti, NULL));
    struct fpd_table_view v = {ti->data, ti->dtype, ti->shape[0], ti->shape[1]};
    struct fpd_fit_params fp = fpd_fit_default_params();
    fp.finetune_epochs = 0;
    struct fpd_layer *fit = NULL;
    struct fpd_fit_report rep;
    cr_assert(eq(int, fpd_fit(&v, &s, &fp, &fit, &rep, &err), 0), "%s", err.msg);
    cr_assert(lt(dbl, rep.rel_error_fit, 1e-5), "TT-SVD error %g", rep.rel_error_fit);

    /* cores -> FPD v1 checkpoint -> layer */
    const struct fpd_layer_shape *fs = fpd_layer_get_shape(fit);
    struct fpd_tensor_info cores[3];
    char names[3][32];
    for (int m = 0; m < 3; m++) {
        snprintf(names[m], sizeof names[m], "emb.weight.fpd.core%d", m);
        cores[m] = (struct fpd_tensor_info){.name = names[m], .dtype = FPD_DTYPE_F32, .ndim = 5,
                                            .shape = {fs->terms, fs->row_shape[m], fs->ranks[m], fs->col_shape[m],
                                                      fs->ranks[m + 1]},
                                            .data = fpd_layer_core_const(fit, m),
                                            .nbytes = (size_t)fpd_layer_shape_core_numel(fs, m) * 4};
    }
    struct fpd_table_meta meta;
    memset(&meta, 0, sizeof meta);
    meta.shape = *fs;
    meta.source_dtype = FPD_DTYPE_F32;
    meta.core_dtype = FPD_DTYPE_F32;
    snprintf(meta.fit, sizeof meta.fit, "tt-svd");
    meta.rel_error = rep.rel_error_fit;
    char *json = NULL;
    cr_assert(eq(int, fpd_table_meta_to_json(&meta, &json, &err), 0), "%s", err.msg);
    const char *keys[2] = {"fpd.version", "fpd.table.emb.weight"}, *vals[2] = {"1", json};
    cr_assert(eq(int, fpd_safetensors_write(fpd_path, cores, 3, keys, vals, 2, 0, &err), 0), "%s", err.msg);
    fpd_free(json);

    struct fpd_safetensors *st2 = NULL;
    cr_assert(eq(int, fpd_safetensors_open(fpd_path, &st2, &err), 0), "%s", err.msg);
    struct fpd_layer *loaded = NULL;
    cr_assert(eq(int, fpd_checkpoint_load_layer(st2, "emb.weight", &loaded, &err), 0), "%s", err.msg);
    struct fpd_error_stats es;
    cr_assert(eq(int, fpd_layer_error(loaded, &v, &es, &err), 0), "%s", err.msg);
    cr_assert(lt(dbl, es.rel_error, 1e-5), "reloaded error %g", es.rel_error);
    cr_assert(gt(dbl, es.cos_min, 1.0 - 1e-6));

    fpd_layer_free(loaded);
    fpd_safetensors_free(st2);
    fpd_layer_free(fit);
    fpd_safetensors_free(st);
    fpd_layer_free(truth);
    free(w);
}

/* k = 2 and k = 4, F16 input, and rank above what the unfoldings allow (capped). */
Test(fit, exact_recovery_other_k_and_dtypes) {
    struct fpd_error err;
    struct fpd_layer_shape s;
    memset(&s, 0, sizeof s);
    s.k = 4;
    s.rows = 320;
    s.dim = 12;
    s.terms = 1;
    int64_t n[4] = {5, 4, 4, 4}, d[4] = {2, 1, 3, 2};
    for (int m = 0; m < 4; m++) {
        s.row_shape[m] = n[m];
        s.col_shape[m] = d[m];
    }
    fpd_layer_shape_set_rank(&s, 2);
    struct fpd_layer *truth = NULL;
    cr_assert(eq(int, fpd_layer_init(&s, &truth, &err), 0));
    test_fill_random(truth, 7, 1.0);
    float *w = naive_dense(truth);
    struct fpd_table_view v = {w, FPD_DTYPE_F32, s.rows, s.dim};
    struct fpd_layer *fit = NULL;
    cr_assert(eq(int, fpd_fit_ttsvd(&v, &s, NULL, &fit, &err), 0), "%s", err.msg);
    struct fpd_error_stats es;
    cr_assert(eq(int, fpd_layer_error(fit, &v, &es, &err), 0));
    cr_assert(lt(dbl, es.rel_error, 1e-5), "k=4 error %g", es.rel_error);
    fpd_layer_free(fit);

    /* the same table stored as F16: converted on the fly; the error is F16's rounding */
    uint16_t *h = malloc((size_t)(s.rows * s.dim) * 2);
    cr_assert(eq(int, fpd_dtype_from_f32(FPD_DTYPE_F16, w, h, s.rows * s.dim), 0));
    struct fpd_table_view vh = {h, FPD_DTYPE_F16, s.rows, s.dim};
    cr_assert(eq(int, fpd_fit_ttsvd(&vh, &s, NULL, &fit, &err), 0), "%s", err.msg);
    cr_assert(eq(int, fpd_layer_error(fit, &v, &es, &err), 0));
    cr_assert(lt(dbl, es.rel_error, 2e-3), "F16 error %g", es.rel_error);
    cr_assert(gt(dbl, es.rel_error, 1e-6), "F16 rounding must show: %g", es.rel_error);
    fpd_layer_free(fit);
    free(h);

    /* full rank is exact for any table, padded or not: rank 1000 is capped per unfolding */
    s.rows = 300;
    v.rows = 300;
    struct fpd_layer_shape full = s;
    fpd_layer_shape_set_rank(&full, 1000);
    uint64_t seed = 1;
    for (int64_t e = 0; e < s.rows * s.dim; e++) w[e] = (float)test_rand_sym(&seed);
    cr_assert(eq(int, fpd_fit_ttsvd(&v, &full, NULL, &fit, &err), 0), "%s", err.msg);
    cr_assert(eq(int, fpd_layer_error(fit, &v, &es, &err), 0));
    cr_assert(lt(dbl, es.rel_error, 1e-5), "full-rank error %g", es.rel_error);
    fpd_layer_free(fit);
    fpd_layer_free(truth);
    free(w);
}

struct glove {
    struct fpd_npy *npy;
    struct fpd_table_view v;
};

static bool load_glove(struct glove *g) {
    const char *path = test_data_path("glove/glove100d_top20k.npy");
    if (!path) return false;
    struct fpd_error err;
    cr_assert(eq(int, fpd_npy_open(path, &g->npy, &err), 0), "%s", err.msg);
    const struct fpd_tensor_info *t = fpd_npy_tensor(g->npy);
    g->v = (struct fpd_table_view){t->data, t->dtype, t->shape[0], t->shape[1]};
    return true;
}

/* The NumPy TT-SVD (shared/data/README and the fitting issue, interleaved modes,
 * rows 25x28x29, cols 4x5x5) gives 0.938 (r 8), 0.928 (r 16), 0.894 (r 32),
 * 0.764 (r 64); ours must agree and must not increase with r. */
Test(fit_real, glove_ttsvd_matches_numpy_and_decreases_with_rank) {
    struct glove g;
    if (!load_glove(&g)) cr_skip_test("GloVe table not found (set FPD_DATA_DIR)");
    const int64_t ranks[] = {2, 4, 8, 16, 32, 64};
    const double numpy_ref[] = {-1, -1, 0.938, 0.928, 0.894, 0.764};
    double prev = 1.0;
    for (int q = 0; q < 6; q++) {
        struct fpd_layer_shape s = shape3(20000, 25, 28, 29, 4, 5, 5, ranks[q], 1);
        struct fpd_layer *l = NULL;
        struct fpd_error err;
        cr_assert(eq(int, fpd_fit_ttsvd(&g.v, &s, NULL, &l, &err), 0), "%s", err.msg);
        struct fpd_error_stats es;
        cr_assert(eq(int, fpd_layer_error(l, &g.v, &es, &err), 0));
        cr_assert(le(dbl, es.rel_error, prev + 1e-9), "r=%lld error %g > %g at the smaller rank",
                  (long long)ranks[q], es.rel_error, prev);
        if (numpy_ref[q] > 0)
            cr_assert(le(dbl, fabs(es.rel_error - numpy_ref[q]), 0.0015), "r=%lld: %g vs NumPy %g",
                      (long long)ranks[q], es.rel_error, numpy_ref[q]);
        prev = es.rel_error;
        fpd_layer_free(l);
    }
    fpd_npy_free(g.npy);
}

/* Finetuning never returns a worse objective (it keeps the best epoch) and, on
 * 4000 real rows, improves on TT-SVD; p = 2 backfitting beats p = 1 at equal r. */
Test(fit_real, finetune_and_backfit_do_not_increase_error) {
    struct glove g;
    if (!load_glove(&g)) cr_skip_test("GloVe table not found (set FPD_DATA_DIR)");
    g.v.rows = 4000; /* 20x20x10 */
    struct fpd_error err;
    struct fpd_layer_shape s = shape3(4000, 20, 20, 10, 5, 5, 4, 8, 1);
    struct fpd_fit_params fp = fpd_fit_default_params();
    fp.finetune_epochs = 3;
    struct fpd_layer *l = NULL;
    struct fpd_fit_report rep;
    cr_assert(eq(int, fpd_fit(&g.v, &s, &fp, &l, &rep, &err), 0), "%s", err.msg);
    cr_assert(le(dbl, rep.rel_error_final, rep.rel_error_fit));
    cr_assert(lt(dbl, rep.rel_error_final, rep.rel_error_fit - 1e-4), "finetune: %g -> %g", rep.rel_error_fit,
              rep.rel_error_final);
    /* the report agrees with an independent evaluation of the returned layer */
    struct fpd_error_stats es;
    cr_assert(eq(int, fpd_layer_error(l, &g.v, &es, &err), 0));
    cr_assert(le(dbl, fabs(es.rel_error - rep.rel_error_final), 1e-6));
    fpd_layer_free(l);

    struct fpd_layer_shape s2 = shape3(4000, 20, 20, 10, 5, 5, 4, 8, 2);
    fp.finetune_epochs = 0;
    struct fpd_fit_report rep2;
    cr_assert(eq(int, fpd_fit(&g.v, &s2, &fp, &l, &rep2, &err), 0), "%s", err.msg);
    cr_assert(lt(dbl, rep2.rel_error_fit, rep.rel_error_fit), "p=2 %g vs p=1 %g", rep2.rel_error_fit,
              rep.rel_error_fit);
    cr_assert(ge(i64, rep2.backfit_sweeps, 1));
    cr_assert(eq(i64, fpd_layer_get_shape(l)->terms, 2));
    fpd_layer_free(l);
    fpd_npy_free(g.npy);
}

static bool cancel_cb(const char *stage, int64_t done, int64_t total, void *user) {
    (void)stage;
    (void)total;
    (void)user;
    return done < 2;
}

Test(fit, cancel_and_bad_arguments) {
    struct fpd_error err;
    struct fpd_layer_shape s = shape3(1000, 10, 10, 10, 2, 2, 2, 2, 1);
    float *w = calloc(1000 * 8, sizeof(float));
    uint64_t seed = 3;
    for (int e = 0; e < 8000; e++) w[e] = (float)test_rand_sym(&seed);
    struct fpd_table_view v = {w, FPD_DTYPE_F32, 1000, 8};
    struct fpd_fit_params fp = fpd_fit_default_params();
    fp.finetune_epochs = 2;
    fp.batch_rows = 10;
    fp.progress = cancel_cb;
    struct fpd_layer *l = NULL;
    cr_assert(eq(int, fpd_fit(&v, &s, &fp, &l, NULL, &err), FPD_STATUS_CANCELLED));
    cr_assert(eq(ptr, l, NULL));
    struct fpd_table_view wrong = {w, FPD_DTYPE_F32, 999, 8};
    cr_assert(eq(int, fpd_fit(&wrong, &s, NULL, &l, NULL, &err), FPD_STATUS_SHAPE));
    struct fpd_table_view ints = {w, FPD_DTYPE_I32, 1000, 8};
    cr_assert(eq(int, fpd_fit(&ints, &s, NULL, &l, NULL, &err), FPD_STATUS_DTYPE));
    free(w);
}

/* Row weights (Zipf(1.05) access counts in frequency order, as GloVe's rows are):
 * the weighted finetune lowers the weighted error below that of the unweighted
 * fit, and the weighted objective never increases. */
Test(fit_real, row_weights_lower_the_weighted_error) {
    struct glove g;
    if (!load_glove(&g)) cr_skip_test("GloVe table not found (set FPD_DATA_DIR)");
    g.v.rows = 4000;
    struct fpd_error err;
    struct fpd_layer_shape s = shape3(4000, 20, 20, 10, 5, 5, 4, 8, 1);
    double *wts = malloc(4000 * sizeof(double));
    for (int i = 0; i < 4000; i++) wts[i] = 1e6 / pow(i + 1.0, 1.05);
    struct fpd_fit_params fp = fpd_fit_default_params();
    fp.finetune_epochs = 3;
    struct fpd_layer *plain = NULL, *weighted = NULL;
    cr_assert(eq(int, fpd_fit(&g.v, &s, &fp, &plain, NULL, &err), 0), "%s", err.msg);
    fp.row_weights = wts;
    struct fpd_fit_report rep;
    cr_assert(eq(int, fpd_fit(&g.v, &s, &fp, &weighted, &rep, &err), 0), "%s", err.msg);
    struct fpd_quality qp, qw;
    cr_assert(eq(int, fpd_layer_quality(plain, &g.v, wts, 0, 1, &qp, &err), 0));
    cr_assert(eq(int, fpd_layer_quality(weighted, &g.v, wts, 0, 1, &qw, &err), 0));
    cr_assert(lt(dbl, qw.rel_error_weighted, qp.rel_error_weighted - 0.01), "weighted error: weighted fit %g, plain fit %g",
              qw.rel_error_weighted, qp.rel_error_weighted);
    /* the TT-SVD start is the same for both; weighted finetuning must not make its objective worse */
    struct fpd_layer *start = NULL;
    cr_assert(eq(int, fpd_fit_ttsvd(&g.v, &s, NULL, &start, &err), 0));
    struct fpd_quality q0;
    cr_assert(eq(int, fpd_layer_quality(start, &g.v, wts, 0, 1, &q0, &err), 0));
    cr_assert(le(dbl, qw.rel_error_weighted, q0.rel_error_weighted));
    fpd_layer_free(start);
    fpd_layer_free(plain);
    fpd_layer_free(weighted);
    free(wts);
    fpd_npy_free(g.npy);
}

/* f = ||W_pad - What||^2 evaluated independently: rows < N against the table, and
 * the padding rows of a copy of the layer that spans every stored row. */
static double padded_objective(const struct fpd_layer *l, const struct fpd_table_view *v) {
    struct fpd_layer_shape ps = *fpd_layer_get_shape(l);
    int64_t padded = 1;
    for (int32_t m = 0; m < ps.k; m++) padded *= ps.row_shape[m];
    ps.rows = padded;
    struct fpd_layer *full = NULL;
    struct fpd_error err;
    cr_assert(eq(int, fpd_layer_init(&ps, &full, &err), 0));
    for (int32_t m = 0; m < ps.k; m++)
        memcpy(fpd_layer_core(full, m), fpd_layer_core_const(l, m), (size_t)fpd_layer_shape_core_numel(&ps, m) * 4);
    double f = 0, row[512];
    for (int64_t i = 0; i < padded; i++) {
        test_naive_row(full, i, row);
        float w[512];
        if (i < v->rows) fpd_table_view_rows(v, i, i + 1, w, &err);
        for (int64_t j = 0; j < ps.dim; j++) {
            double d = (i < v->rows ? w[j] : 0.0) - row[j];
            f += d * d;
        }
    }
    fpd_layer_free(full);
    return f;
}

/* ALS never increases its objective, sweep after sweep, on real rows (with
 * padding: 3000 rows in 16x16x12 = 3072), for p = 1 and p = 2; the objective it
 * reports equals an independent evaluation. */
Test(fit_real, als_never_increases_its_objective) {
    struct glove g;
    if (!load_glove(&g)) cr_skip_test("GloVe table not found (set FPD_DATA_DIR)");
    g.v.rows = 3000;
    struct fpd_error err;
    for (int p = 1; p <= 2; p++) {
        struct fpd_layer_shape s = shape3(3000, 16, 16, 12, 5, 5, 4, 6, p);
        struct fpd_fit_params fp = fpd_fit_default_params();
        fp.finetune_epochs = 0;
        fp.als_sweeps = 0;
        struct fpd_layer *l = NULL;
        cr_assert(eq(int, fpd_fit(&g.v, &s, &fp, &l, NULL, &err), 0), "%s", err.msg);
        double prev = padded_objective(l, &g.v), f = 0;
        for (int sweep = 0; sweep < 4; sweep++) {
            int64_t ran = 0;
            cr_assert(eq(int, fpd_als(l, &g.v, 1, 0.0, NULL, &f, &ran, &err), 0), "%s", err.msg);
            cr_assert(eq(i64, ran, 1));
            double direct = padded_objective(l, &g.v);
            cr_assert(le(dbl, fabs(f - direct), 1e-6 * direct), "p=%d sweep %d: reported %g, direct %g", p, sweep, f,
                      direct);
            cr_assert(le(dbl, direct, prev * (1 + 1e-9)), "p=%d sweep %d: %g > %g", p, sweep, direct, prev);
            prev = direct;
        }
        fpd_layer_free(l);
    }
    fpd_npy_free(g.npy);
}

/* The learned row permutation is a valid FPD row map and lowers the TT-SVD error
 * on the real table at the same rank (0.928 -> about 0.85 at r = 16). */
Test(fit_real, clustered_rows_lower_the_error) {
    struct glove g;
    if (!load_glove(&g)) cr_skip_test("GloVe table not found (set FPD_DATA_DIR)");
    struct fpd_error err;
    struct fpd_layer_shape s = shape3(20000, 25, 28, 29, 4, 5, 5, 16, 1);
    int64_t *perm = malloc(20000 * sizeof(int64_t));
    cr_assert(eq(int, fpd_row_perm_cluster(&g.v, &s, 1, perm, &err), 0), "%s", err.msg);
    char *seen = calloc(20300, 1);
    for (int i = 0; i < 20000; i++) {
        cr_assert(ge(i64, perm[i], 0));
        cr_assert(lt(i64, perm[i], 20300));
        cr_assert(eq(int, seen[perm[i]], 0), "row %d reuses FPD row %lld", i, (long long)perm[i]);
        seen[perm[i]] = 1;
    }
    struct fpd_fit_params fp = fpd_fit_default_params();
    fp.finetune_epochs = 0;
    fp.als_sweeps = 0;
    struct fpd_fit_report plain, clustered;
    struct fpd_layer *l = NULL;
    cr_assert(eq(int, fpd_fit(&g.v, &s, &fp, &l, &plain, &err), 0));
    fpd_layer_free(l);
    fp.cluster_rows = true;
    cr_assert(eq(int, fpd_fit(&g.v, &s, &fp, &l, &clustered, &err), 0), "%s", err.msg);
    cr_assert(ne(ptr, (void *)fpd_layer_row_perm(l), NULL));
    cr_assert(lt(dbl, clustered.rel_error_fit, plain.rel_error_fit - 0.05), "clustered %g vs plain %g",
              clustered.rel_error_fit, plain.rel_error_fit);
    /* the reported error is the error of the layer as it maps original rows */
    struct fpd_error_stats es;
    cr_assert(eq(int, fpd_layer_error(l, &g.v, &es, &err), 0));
    cr_assert(le(dbl, fabs(es.rel_error - clustered.rel_error_final), 1e-6));
    fpd_layer_free(l);
    /* a permutation given by the caller (fit.row_perm): carried as given, and the fit
     * is the one cluster_rows makes with the same permutation (its seed, 1) */
    fp.seed = 1;
    struct fpd_fit_report given, seeded;
    cr_assert(eq(int, fpd_fit(&g.v, &s, &fp, &l, &seeded, &err), 0), "%s", err.msg);
    fpd_layer_free(l);
    fp.cluster_rows = false;
    fp.row_perm = perm;
    cr_assert(eq(int, fpd_fit(&g.v, &s, &fp, &l, &given, &err), 0), "%s", err.msg);
    cr_assert(eq(int, memcmp(fpd_layer_row_perm(l), perm, 20000 * sizeof(int64_t)), 0));
    cr_assert(ieee_ulp_eq(dbl, given.rel_error_fit, seeded.rel_error_fit, 0));
    fpd_layer_free(l);
    fp.cluster_rows = true; /* both: refused */
    cr_assert(eq(int, fpd_fit(&g.v, &s, &fp, &l, &given, &err), FPD_STATUS_INVALID_ARG));
    fp.cluster_rows = false;
    int64_t keep = perm[7];
    perm[7] = 20300; /* out of [0, prod(row_shape)) */
    cr_assert(eq(int, fpd_fit(&g.v, &s, &fp, &l, &given, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(strstr(err.msg, "row_perm[7] = 20300 is outside [0, 20300)") != NULL, "%s", err.msg);
    perm[7] = perm[8]; /* repeated */
    cr_assert(eq(int, fpd_fit(&g.v, &s, &fp, &l, &given, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(strstr(err.msg, "appears twice") != NULL, "%s", err.msg);
    perm[7] = keep;
    free(perm);
    free(seen);
    fpd_npy_free(g.npy);
}
