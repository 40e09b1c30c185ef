/*
 * test-ncf.c - GMF over dense and FPD tables (lib/ncf.c): logits, the
 * leave-one-out ranking metrics on hand-computed cases, the prefix-sharing core
 * backward against fpd_layer_backward, training (a 1-core FPD layer trains exactly
 * as the dense table; training learns a planted model), and the known HR@10 /
 * NDCG@10 of the NCF GMF checkpoint (skipped without ../shared/data).
 *
 * The file handling (fpd_ncf_*, formats/ncf-data.c: checkpoints with FPD tables,
 * the NCF files, evaluation from files) is tested in tests/formats/test-ncf-data.c;
 * fine-tuning and the MovieLens id map through fpd-eval and sample-train-gmf in
 * tests/cli/test-eval.sh and tests/cli/test-train.sh.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "formats/fpd-formats.h"
#include "tests/test-util.h"


static float *rand_floats(int64_t n, uint64_t seed, double scale) {
    float *x = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) x[i] = (float)(scale * test_rand_sym(&seed));
    return x;
}

/* ---------------------------------------------------------------- metrics */

/* 2 users, dim 2, w = (1, 1), b = 0: logits are dot products. */
Test(ncf, rank_counts_higher_and_places_the_item_among_its_ties) {
    float Ut[] = {1, 0, 0, 1};
    /* items: 0:(3,0) 1:(2,0) 2:(1,0) 3:(0,5) 4:(2,5) */
    float It[] = {3, 0, 2, 0, 1, 0, 0, 5, 2, 5};
    float w[] = {1, 1};
    struct fpd_gmf m = {.user = {.layer = NULL, .dense = Ut, .rows = 2, .dim = 2}, .item = {.layer = NULL, .dense = It, .rows = 5, .dim = 2}, .weight = w, .bias = 0.0f};
    /* user 0 held-out item 1 (logit 2) among 0 (3), 2 (1), 4 (2: a tie), 2 -> rank 1
     * user 1 held-out item 0 (logit 0) among 3 (5), 4 (5), 1 (0), 2 (0) -> rank 2 */
    int64_t users[] = {0, 1};
    int64_t cand5[] = {1, 0, 2, 4, 2, /* user 0 (item 2 twice: both lower) */ 0, 3, 4, 1, 2};
    struct fpd_rank_metrics rm;
    int64_t ranks[2];
    struct fpd_error err;
    /* user 0 ties with item 4: rank 1 (one higher) or 2 (the tie ahead of it);
     * user 1 ties with items 1 and 2: rank 2 (two higher), 3 or 4 */
    cr_assert(eq(int, fpd_gmf_rank(&m, users, cand5, 2, 5, 2, &rm, ranks, &err), 0), "%s", err.msg);
    cr_assert(ranks[0] == 1 || ranks[0] == 2, "rank %lld", (long long)ranks[0]);
    cr_assert(ranks[1] >= 2 && ranks[1] <= 4, "rank %lld", (long long)ranks[1]);
    for (int64_t k = 2; k <= 4; k++) {
        int64_t again[2];
        cr_assert(fpd_gmf_rank(&m, users, cand5, 2, 5, k, &rm, again, &err) == 0);
        cr_assert(eq(i64, again[0], ranks[0])); /* the same call, the same place among ties */
        cr_assert(eq(i64, again[1], ranks[1]));
        double hr = 0.0, nd = 0.0;
        for (int q = 0; q < 2; q++)
            if (ranks[q] < k) {
                hr += 0.5;
                nd += 0.5 / log2((double)ranks[q] + 2.0);
            }
        cr_assert(ieee_ulp_eq(dbl, rm.hr, hr, 4), "k %lld", (long long)k);
        cr_assert(epsilon_eq(dbl, rm.ndcg, nd, 1e-12));
    }
    /* errors */
    int64_t bad[] = {1, 0, 2, 4, 5};
    cr_assert(eq(int, fpd_gmf_rank(&m, users, bad, 1, 5, 2, &rm, NULL, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(strstr(err.msg, "item id 5") != NULL, "%s", err.msg);
    cr_assert(eq(int, fpd_gmf_rank(&m, users, cand5, 2, 0, 2, &rm, NULL, &err), FPD_STATUS_INVALID_ARG));
    struct fpd_gmf bad_dim = {.user = {.layer = NULL, .dense = Ut, .rows = 2, .dim = 2}, .item = {.layer = NULL, .dense = It, .rows = 2, .dim = 5}, .weight = w, .bias = 0.0f};
    cr_assert(eq(int, fpd_gmf_rank(&bad_dim, users, cand5, 2, 5, 2, &rm, NULL, &err), FPD_STATUS_SHAPE));
}

/* A collapsed model (every score equal) ranks like chance: HR@10 among 100
 * candidates is 0.1 (binomial sd 0.0095 over 1,000 users: within 4 sd), not 1. */
Test(ncf, a_model_that_scores_everything_alike_gets_chance_hr) {
    const int64_t NU = 1000, NI = 100;
    float *ut = calloc((size_t)NU * 2, sizeof(float)), *it = calloc((size_t)NI * 2, sizeof(float)), w[2] = {1, 1};
    struct fpd_gmf m = {.user = {.layer = NULL, .dense = ut, .rows = NU, .dim = 2}, .item = {.layer = NULL, .dense = it, .rows = NI, .dim = 2}, .weight = w, .bias = 0.0f};
    int64_t *users = malloc((size_t)NU * sizeof(int64_t)), *cand = malloc((size_t)(NU * NI) * sizeof(int64_t));
    for (int64_t u = 0; u < NU; u++) {
        users[u] = u;
        for (int64_t c = 0; c < NI; c++) cand[u * NI + c] = (u + c) % NI;
    }
    struct fpd_rank_metrics rm;
    struct fpd_error err;
    cr_assert(eq(int, fpd_gmf_rank(&m, users, cand, NU, NI, 10, &rm, NULL, &err), 0), "%s", err.msg);
    cr_assert(le(dbl, fabs(rm.hr - 0.1), 4 * 0.0095), "HR@10 %g", rm.hr);
    free(ut);
    free(it);
    free(users);
    free(cand);
}

/* An FPD table and its reconstruction give the same logits and ranks. */
Test(ncf, fpd_and_dense_tables_agree) {
    const int64_t n[] = {6, 5, 4}, d[] = {2, 2, 2};
    struct fpd_layer_shape s = test_make_shape(3, 111, n, d, 3, 2);
    struct fpd_layer *l = NULL;
    struct fpd_error err;
    cr_assert(fpd_layer_init(&s, &l, &err) == 0);
    test_fill_random(l, 7, 0.7);
    float *items = malloc((size_t)(111 * 8) * sizeof(float));
    cr_assert(fpd_layer_reconstruct(l, 0, 111, items, &err) == 0);
    float *users = rand_floats(40 * 8, 3, 1.0), *w = rand_floats(8, 4, 1.0);
    struct fpd_gmf dense = {.user = {.layer = NULL, .dense = users, .rows = 40, .dim = 8}, .item = {.layer = NULL, .dense = items, .rows = 111, .dim = 8}, .weight = w, .bias = 0.3f};
    struct fpd_gmf fpd = {.user = {.layer = NULL, .dense = users, .rows = 40, .dim = 8}, .item = {.layer = l, .dense = NULL, .rows = 111, .dim = 8}, .weight = w, .bias = 0.3f};
    int64_t uu[200], ii[200];
    uint64_t seed = 11;
    for (int t = 0; t < 200; t++) {
        uu[t] = (int64_t)(test_rand_u64(&seed) % 40);
        ii[t] = (int64_t)(test_rand_u64(&seed) % 111);
    }
    float a[200], b[200];
    cr_assert(fpd_gmf_logits(&dense, uu, ii, 200, a, &err) == 0);
    cr_assert(fpd_gmf_logits(&fpd, uu, ii, 200, b, &err) == 0);
    for (int t = 0; t < 200; t++) {
        double ref = 0.3;
        for (int j = 0; j < 8; j++) ref += (double)users[uu[t] * 8 + j] * items[ii[t] * 8 + j] * w[j];
        cr_assert(epsilon_eq(flt, a[t], (float)ref, 1e-4f), "pair %d: %g vs %g", t, a[t], ref);
        cr_assert(epsilon_eq(flt, b[t], a[t], 1e-4f), "pair %d: fpd %g vs dense %g", t, b[t], a[t]);
    }
    struct fpd_rank_metrics ra, rb;
    cr_assert(fpd_gmf_rank(&dense, uu, ii, 20, 10, 3, &ra, NULL, &err) == 0);
    cr_assert(fpd_gmf_rank(&fpd, uu, ii, 20, 10, 3, &rb, NULL, &err) == 0);
    cr_assert(ieee_ulp_eq(dbl, ra.hr, rb.hr, 0));
    /* a layer whose shape disagrees with the declared table */
    struct fpd_gmf wrong = {.user = {.layer = NULL, .dense = users, .rows = 40, .dim = 8}, .item = {.layer = l, .dense = NULL, .rows = 112, .dim = 8}, .weight = w, .bias = 0.3f};
    cr_assert(eq(int, fpd_gmf_logits(&wrong, uu, ii, 200, b, &err), FPD_STATUS_SHAPE));
    fpd_layer_free(l);
    free(items);
    free(users);
    free(w);
}

/* ---------------------------------------------------------------- backward */

struct bw_case {
    int32_t k;
    int64_t rows, n[4], d[4], r, p;
};

/* fpd_layer_backward (reverse accumulation over the rows' prefix tree) against the
 * gradient by the definition, with repeated and unsorted indices and a permutation. */
Test(ncf, prefix_backward_matches_the_definition) {
    static const struct bw_case cases[] = {
        {1, 9, {9}, {5}, 1, 1},
        {2, 30, {6, 5}, {4, 2}, 3, 1},
        {3, 1000, {10, 11, 10}, {2, 3, 2}, 4, 2},
        {3, 6040, {20, 18, 17}, {4, 4, 4}, 16, 1},
        {4, 200, {3, 4, 5, 4}, {2, 1, 3, 2}, 5, 3},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const struct bw_case *bc = &cases[c];
        struct fpd_layer_shape s = test_make_shape(bc->k, bc->rows, bc->n, bc->d, bc->r, bc->p);
        struct fpd_layer *l = NULL;
        struct fpd_error err;
        cr_assert(fpd_layer_init(&s, &l, &err) == 0, "%s", err.msg);
        test_fill_random(l, 100 + c, 1.0);
        if (c == 2) { /* with a row permutation */
            int64_t *perm = malloc((size_t)s.rows * sizeof(int64_t));
            for (int64_t i = 0; i < s.rows; i++) perm[i] = (i * 37 + 11) % 1100; /* distinct, < 1100 */
            cr_assert(fpd_layer_set_row_perm(l, perm, &err) == 0, "%s", err.msg);
            free(perm);
        }
        const int64_t nb = 300;
        int64_t idx[300];
        uint64_t seed = 5 + c;
        for (int64_t b = 0; b < nb; b++) idx[b] = (int64_t)(test_rand_u64(&seed) % (uint64_t)s.rows); /* repeats */
        float *g = rand_floats(nb * s.dim, 9 + c, 1.0);
        double *ga[FPD_MAX_MODES];
        float *gb[FPD_MAX_MODES];
        for (int32_t m = 0; m < s.k; m++) {
            ga[m] = calloc((size_t)fpd_layer_shape_core_numel(&s, m), sizeof(double));
            gb[m] = calloc((size_t)fpd_layer_shape_core_numel(&s, m), sizeof(float));
        }
        test_naive_backward(l, idx, nb, g, ga);
        cr_assert(fpd_layer_backward(l, idx, nb, g, gb, &err) == 0, "%s", err.msg);
        for (int32_t m = 0; m < s.k; m++) {
            double num = 0, den = 0;
            for (int64_t e = 0; e < fpd_layer_shape_core_numel(&s, m); e++) {
                num += (ga[m][e] - gb[m][e]) * (ga[m][e] - gb[m][e]);
                den += ga[m][e] * ga[m][e];
            }
            cr_assert(num <= 1e-10 * den, "case %zu core %d: NMSE %g", c, (int)m, num / den);
            free(ga[m]);
            free(gb[m]);
        }
        int64_t out_of_range = s.rows;
        cr_assert(eq(int, fpd_layer_backward(l, &out_of_range, 1, g, gb, &err), FPD_STATUS_INVALID_ARG));
        free(g);
        fpd_layer_free(l);
    }
}

/* ---------------------------------------------------------------- training */

/* A planted GMF: users and items in 4 clusters; a user likes the items of its cluster. */
struct planted {
    int64_t nu, ni, n;
    int64_t *users, *items;
    int64_t *tu, *tc; /* test: one held-out positive + 19 negatives per user */
};

static void planted_make(struct planted *p, int64_t nu, int64_t ni) {
    p->nu = nu;
    p->ni = ni;
    p->users = malloc((size_t)(nu * ni) * sizeof(int64_t));
    p->items = malloc((size_t)(nu * ni) * sizeof(int64_t));
    p->tu = malloc((size_t)nu * sizeof(int64_t));
    p->tc = malloc((size_t)(nu * 20) * sizeof(int64_t));
    p->n = 0;
    uint64_t seed = 99;
    for (int64_t u = 0; u < nu; u++) {
        int64_t first = p->n;
        for (int64_t i = 0; i < ni; i++) {
            if (i % 4 != u % 4 || test_rand_u64(&seed) % 3 == 0) continue; /* 2/3 of the cluster's items */
            p->users[p->n] = u;
            p->items[p->n++] = i;
        }
        /* hold out a random one of them */
        int64_t h = first + (int64_t)(test_rand_u64(&seed) % (uint64_t)(p->n - first));
        int64_t held = p->items[h];
        p->users[h] = p->users[p->n - 1];
        p->items[h] = p->items[p->n - 1];
        p->n--;
        p->tu[u] = u;
        p->tc[u * 20] = held;
        for (int c = 1; c < 20; c++) { /* negatives from the other clusters */
            int64_t j;
            do j = (int64_t)(test_rand_u64(&seed) % (uint64_t)ni);
            while (j % 4 == u % 4);
            p->tc[u * 20 + c] = j;
        }
    }
}

static void planted_free(struct planted *p) {
    free(p->users);
    free(p->items);
    free(p->tu);
    free(p->tc);
}

Test(ncf, one_core_fpd_trains_exactly_as_dense) {
    struct planted pl;
    planted_make(&pl, 50, 40);
    const int64_t D = 6;
    float *ud = rand_floats(50 * D, 1, 0.1), *id = rand_floats(40 * D, 2, 0.1), *w = rand_floats(D, 3, 0.5);
    float *w2 = malloc(D * sizeof(float));
    memcpy(w2, w, D * sizeof(float));
    /* the same tables as 1-core layers: core [1, N, 1, D, 1] is the table */
    const int64_t nu[] = {50}, ni[] = {40}, dd[] = {D};
    struct fpd_layer_shape su = test_make_shape(1, 50, nu, dd, 1, 1), si = test_make_shape(1, 40, ni, dd, 1, 1);
    struct fpd_layer *lu = NULL, *li = NULL;
    struct fpd_error err;
    cr_assert(fpd_layer_init(&su, &lu, &err) == 0 && fpd_layer_init(&si, &li, &err) == 0);
    memcpy(fpd_layer_core(lu, 0), ud, (size_t)(50 * D) * sizeof(float));
    memcpy(fpd_layer_core(li, 0), id, (size_t)(40 * D) * sizeof(float));
    struct fpd_gmf a = {.user = {.layer = NULL, .dense = ud, .rows = 50, .dim = D}, .item = {.layer = NULL, .dense = id, .rows = 40, .dim = D}, .weight = w, .bias = 0.1f};
    struct fpd_gmf b = {.user = {.layer = lu, .dense = NULL, .rows = 50, .dim = D}, .item = {.layer = li, .dense = NULL, .rows = 40, .dim = D}, .weight = w2, .bias = 0.1f};
    struct fpd_gmf_train_params tp = fpd_gmf_train_default_params();
    tp.epochs = 3;
    tp.batch_size = 50;
    tp.seed = 17;
    tp.learning_rate = 1e-2;
    double la, lb;
    cr_assert(fpd_gmf_train(&a, pl.users, pl.items, pl.n, &tp, &la, &err) == 0, "%s", err.msg);
    cr_assert(fpd_gmf_train(&b, pl.users, pl.items, pl.n, &tp, &lb, &err) == 0, "%s", err.msg);
    cr_assert(ieee_ulp_eq(dbl, la, lb, 4), "loss %g vs %g", la, lb);
    cr_assert(ieee_ulp_eq(flt, a.bias, b.bias, 4));
    for (int64_t e = 0; e < 50 * D; e++)
        cr_assert(ieee_ulp_eq(flt, ud[e], fpd_layer_core(lu, 0)[e], 4), "user entry %lld", (long long)e);
    for (int64_t e = 0; e < 40 * D; e++)
        cr_assert(ieee_ulp_eq(flt, id[e], fpd_layer_core(li, 0)[e], 4), "item entry %lld", (long long)e);
    fpd_layer_free(lu);
    fpd_layer_free(li);
    free(ud);
    free(id);
    free(w);
    free(w2);
    planted_free(&pl);
}

static double train_planted(bool fpd, bool train_tables, double *hr_before) {
    struct planted pl;
    planted_make(&pl, 240, 120);
    const int64_t D = 8;
    struct fpd_error err;
    float *w = rand_floats(D, 3, 0.6);
    float *ud = NULL, *id = NULL;
    struct fpd_layer *lu = NULL, *li = NULL;
    struct fpd_gmf m = {.user = {.layer = NULL, .dense = NULL, .rows = 240, .dim = D}, .item = {.layer = NULL, .dense = NULL, .rows = 120, .dim = D}, .weight = w, .bias = 0.0f};
    if (fpd) {
        const int64_t nu[] = {8, 6, 5}, ni[] = {6, 5, 4}, d[] = {2, 2, 2};
        struct fpd_layer_shape su = test_make_shape(3, 240, nu, d, 4, 1), si = test_make_shape(3, 120, ni, d, 4, 1);
        struct fpd_init_params ip = {FPD_INIT_KIND_NORMAL, 0.1, 5};
        cr_assert(fpd_init(&su, &ip, &lu, &err) == 0 && fpd_init(&si, &ip, &li, &err) == 0, "%s", err.msg);
        m.user.layer = lu;
        m.item.layer = li;
    } else {
        m.user.dense = ud = rand_floats(240 * D, 1, 0.1);
        m.item.dense = id = rand_floats(120 * D, 2, 0.1);
    }
    struct fpd_rank_metrics rm;
    cr_assert(fpd_gmf_rank(&m, pl.tu, pl.tc, 240, 20, 5, &rm, NULL, &err) == 0);
    *hr_before = rm.hr;
    struct fpd_gmf_train_params tp = fpd_gmf_train_default_params();
    tp.epochs = 15;
    tp.batch_size = 128;
    tp.learning_rate = 2e-2;
    tp.train_tables = train_tables;
    cr_assert(fpd_gmf_train(&m, pl.users, pl.items, pl.n, &tp, NULL, &err) == 0, "%s", err.msg);
    cr_assert(fpd_gmf_rank(&m, pl.tu, pl.tc, 240, 20, 5, &rm, NULL, &err) == 0);
    fpd_layer_free(lu);
    fpd_layer_free(li);
    free(ud);
    free(id);
    free(w);
    planted_free(&pl);
    return rm.hr;
}

Test(ncf, training_learns_a_planted_model) {
    double before, after;
    after = train_planted(false, true, &before);
    cr_assert(after >= 0.9 && after > before + 0.3, "dense: HR@5 %.3f -> %.3f", before, after);
    after = train_planted(true, true, &before);
    cr_assert(after >= 0.9 && after > before + 0.3, "fpd: HR@5 %.3f -> %.3f", before, after);
    /* with the tables frozen only weight and bias move: no better than chance-ish */
    after = train_planted(false, false, &before);
    cr_assert(after < 0.6, "frozen tables: HR@5 %.3f -> %.3f", before, after);
}

Test(ncf, training_rejects_bad_parameters) {
    float Ut[4] = {0}, It[4] = {0}, w[2] = {1, 1};
    struct fpd_gmf m = {.user = {.layer = NULL, .dense = Ut, .rows = 2, .dim = 2}, .item = {.layer = NULL, .dense = It, .rows = 2, .dim = 2}, .weight = w, .bias = 0.0f};
    int64_t us[] = {0, 1}, is[] = {1, 2};
    struct fpd_gmf_train_params tp = fpd_gmf_train_default_params();
    struct fpd_error err;
    cr_assert(eq(int, fpd_gmf_train(&m, us, is, 2, &tp, NULL, &err), FPD_STATUS_INVALID_ARG)); /* item 2 */
    is[1] = 0;
    tp.batch_size = 4; /* < 1 + negatives */
    cr_assert(eq(int, fpd_gmf_train(&m, us, is, 2, &tp, NULL, &err), FPD_STATUS_INVALID_ARG));
    tp.batch_size = 5;
    tp.epochs = 2;
    /* user 0 and 1 each have one of the two items: negatives exist; a user with all items gets none */
    int64_t us2[] = {0, 0, 1}, is2[] = {0, 1, 1};
    cr_assert(eq(int, fpd_gmf_train(&m, us2, is2, 3, &tp, NULL, &err), FPD_STATUS_OK), "%s", err.msg);
}

/* ---------------------------------------------------------------- real data */

/* The NCF paper's GMF-8 on its ML-1M test set: HR@10 0.6368, NDCG@10 0.3691
 * (shared/data/README.md, from an independent NumPy implementation). */
Test(ncf_real, gmf_checkpoint_known_hr_ndcg) {
    char ckpt[4096], rating[4096], negative[4096];
    const char *p;
    if (!(p = test_data_path("ncf/ncf_gmf8_ml1m.safetensors"))) cr_skip_test("shared data (ncf/) not found");
    snprintf(ckpt, sizeof ckpt, "%s", p);
    if (!(p = test_data_path("ncf/ml-1m.test.rating"))) cr_skip_test("ncf test files not found");
    snprintf(rating, sizeof rating, "%s", p);
    if (!(p = test_data_path("ncf/ml-1m.test.negative"))) cr_skip_test("ncf test files not found");
    snprintf(negative, sizeof negative, "%s", p);
    struct fpd_safetensors *st = NULL;
    struct fpd_error err;
    cr_assert(fpd_safetensors_open(ckpt, &st, &err) == 0, "%s", err.msg);
    const struct fpd_tensor_info *tu = fpd_safetensors_find(st, "user_embedding.weight");
    const struct fpd_tensor_info *ti = fpd_safetensors_find(st, "item_embedding.weight");
    const struct fpd_tensor_info *tw = fpd_safetensors_find(st, "prediction.weight");
    const struct fpd_tensor_info *tb = fpd_safetensors_find(st, "prediction.bias");
    cr_assert(tu && ti && tw && tb);
    float *Ut = malloc(tu->nbytes), *It = malloc(ti->nbytes), w[8], b;
    fpd_dtype_to_f32(tu->dtype, tu->data, Ut, fpd_tensor_info_numel(tu));
    fpd_dtype_to_f32(ti->dtype, ti->data, It, fpd_tensor_info_numel(ti));
    fpd_dtype_to_f32(tw->dtype, tw->data, w, 8);
    fpd_dtype_to_f32(tb->dtype, tb->data, &b, 1);
    struct fpd_gmf m = {.user = {.layer = NULL, .dense = Ut, .rows = tu->shape[0], .dim = 8}, .item = {.layer = NULL, .dense = It, .rows = ti->shape[0], .dim = 8}, .weight = w, .bias = b};
    /* the test files: "u\ti..." and "(u,i)\tn1..n99" */
    int64_t *users = malloc(6040 * sizeof(int64_t)), *cand = malloc(6040 * 100 * sizeof(int64_t));
    FILE *fr = fopen(rating, "r"), *fn = fopen(negative, "r");
    cr_assert(fr && fn);
    int64_t n = 0;
    long long u, i;
    while (n < 6040 && fscanf(fr, "%lld\t%lld%*[^\n]", &u, &i) == 2) {
        long long u2, i2;
        cr_assert(fscanf(fn, " (%lld,%lld)", &u2, &i2) == 2 && u2 == u && i2 == i);
        users[n] = u;
        cand[n * 100] = i;
        for (int c = 1; c < 100; c++) {
            long long v;
            cr_assert(fscanf(fn, "%lld", &v) == 1);
            cand[n * 100 + c] = v;
        }
        n++;
    }
    fclose(fr);
    fclose(fn);
    cr_assert(eq(i64, n, 6040));
    struct fpd_rank_metrics rm;
    cr_assert(fpd_gmf_rank(&m, users, cand, n, 100, 10, &rm, NULL, &err) == 0, "%s", err.msg);
    cr_assert(epsilon_eq(dbl, rm.hr, 0.6368, 0.0005), "HR@10 %.5f", rm.hr);
    cr_assert(epsilon_eq(dbl, rm.ndcg, 0.3691, 0.0005), "NDCG@10 %.5f", rm.ndcg);
    free(users);
    free(cand);
    free(Ut);
    free(It);
    fpd_safetensors_free(st);
}
