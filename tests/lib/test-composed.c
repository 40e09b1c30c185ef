/*
 * test-composed.c - hashed and quotient-remainder tables (lib/composed.c), the
 * GMF/MF trainer with them and with the BPR loss (lib/ncf.c), and full-ranking
 * metrics (lib/rank.c), each against a naive reference written here from the
 * definitions in fpd.h: the hash formula, Q[i / m] * R[i mod m], one Adam step
 * from zero moments, the BPR loss in closed form, and ranking by a full sort.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "tests/test-util.h"

#include <string.h>

/* fpd.h's documented hash: splitmix64's finalizer of i + seed * golden + constant */
static int64_t ref_hash(int64_t i, uint64_t seed, int64_t m) {
    uint64_t z = (uint64_t)i + seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (int64_t)(z % (uint64_t)m);
}

/* the reference row i of a composed table, in double */
static void ref_row(const struct fpd_composed *c, int64_t i, double *out) {
    const int64_t dim = c->shape.dim, m = c->shape.buckets;
    for (int64_t j = 0; j < dim; j++) {
        if (c->shape.kind == FPD_COMPOSED_KIND_HASH)
            out[j] = c->table[0][ref_hash(i, c->shape.hash_seed, m) * dim + j];
        else
            out[j] = (double)c->table[0][(i / m) * dim + j] * (double)c->table[1][(i % m) * dim + j];
    }
}

Test(composed, shapes_and_params) {
    struct fpd_composed_shape h = {FPD_COMPOSED_KIND_HASH, 1000, 8, 37, 5};
    struct fpd_composed_shape q = {FPD_COMPOSED_KIND_QR, 1000, 8, 37, 0};
    cr_assert(eq(i64, fpd_composed_shape_params(&h), 37 * 8));
    cr_assert(eq(i64, fpd_composed_shape_params(&q), (28 + 37) * 8)); /* ceil(1000 / 37) = 28 */
    struct fpd_composed *c = NULL;
    struct fpd_error err;
    cr_assert(eq(int, fpd_composed_init(&q, 0.01, 3, &c, &err), FPD_STATUS_OK));
    cr_assert(eq(i64, c->table_rows[0], 28));
    cr_assert(eq(i64, c->table_rows[1], 37));
    cr_assert(eq(int, c->n_tables, 2));
    fpd_composed_free(c);
    struct fpd_composed_shape bad = {FPD_COMPOSED_KIND_HASH, 10, 4, 0, 0};
    cr_assert(eq(int, fpd_composed_init(&bad, 0.01, 3, &c, &err), FPD_STATUS_SHAPE));
    cr_assert(c == NULL);
    cr_assert(eq(int, fpd_composed_init(&h, -1.0, 3, &c, &err), FPD_STATUS_INVALID_ARG));
}

Test(composed, lookup_matches_definition) {
    for (int kind = 0; kind < 2; kind++) {
        struct fpd_composed_shape s = {(enum fpd_composed_kind)kind, 503, 6, 23, 11};
        struct fpd_composed *c = NULL;
        struct fpd_error err;
        cr_assert(eq(int, fpd_composed_init(&s, 0.5, 7, &c, &err), FPD_STATUS_OK));
        int64_t ids[40];
        uint64_t rs = 9;
        for (int t = 0; t < 40; t++) ids[t] = (int64_t)(test_rand_u64(&rs) % 503);
        ids[0] = 0, ids[1] = 502, ids[2] = 22, ids[3] = 23;
        float out[40 * 6];
        cr_assert(eq(int, fpd_composed_lookup(c, ids, 40, out, &err), FPD_STATUS_OK));
        for (int t = 0; t < 40; t++) {
            double want[6];
            ref_row(c, ids[t], want);
            for (int j = 0; j < 6; j++) cr_assert(ieee_ulp_eq(flt, out[t * 6 + j], (float)want[j], 0), "kind %d", kind);
        }
        /* QR gives distinct ids distinct index pairs; the hash spreads over the buckets */
        int64_t a[2], b[2];
        fpd_composed_index(c, 22, a);
        fpd_composed_index(c, 45, b);
        if (kind == 1) cr_assert(a[0] == 0 && a[1] == 22 && b[0] == 1 && b[1] == 22);
        int used[23] = {0}, n_used = 0;
        for (int64_t i = 0; kind == 0 && i < 503; i++) {
            fpd_composed_index(c, i, a);
            cr_assert(a[0] >= 0 && a[0] < 23 && a[1] == -1);
            n_used += !used[a[0]]++;
        }
        if (kind == 0) cr_assert(eq(int, n_used, 23));
        int64_t bad = 503;
        cr_assert(eq(int, fpd_composed_lookup(c, &bad, 1, out, &err), FPD_STATUS_INVALID_ARG));
        cr_assert(strstr(err.msg, "503") != NULL, "%s", err.msg);
        fpd_composed_free(c);
    }
}

/* backward against central finite differences of L = sum(grad_out * rows) */
Test(composed, backward_matches_finite_differences) {
    struct fpd_composed_shape s = {FPD_COMPOSED_KIND_QR, 40, 3, 7, 0};
    struct fpd_composed *c = NULL;
    struct fpd_error err;
    cr_assert(eq(int, fpd_composed_init(&s, 1.0, 5, &c, &err), FPD_STATUS_OK));
    const int64_t ids[5] = {3, 10, 3, 39, 17};
    float go[15];
    uint64_t rs = 4;
    for (int q = 0; q < 15; q++) go[q] = (float)test_rand_sym(&rs);
    float *g0 = calloc((size_t)(c->table_rows[0] * 3), sizeof(float));
    float *g1 = calloc((size_t)(c->table_rows[1] * 3), sizeof(float));
    float *gt[2] = {g0, g1};
    cr_assert(eq(int, fpd_composed_backward(c, ids, 5, go, gt, &err), FPD_STATUS_OK));
    for (int q = 0; q < 2; q++)
        for (int64_t e = 0; e < c->table_rows[q] * 3; e++) {
            const float keep = c->table[q][e];
            double l[2];
            for (int sgn = 0; sgn < 2; sgn++) {
                c->table[q][e] = keep + (sgn ? -1e-2f : 1e-2f);
                l[sgn] = 0.0;
                for (int t = 0; t < 5; t++) {
                    double r[3];
                    ref_row(c, ids[t], r);
                    for (int j = 0; j < 3; j++) l[sgn] += go[t * 3 + j] * r[j];
                }
            }
            c->table[q][e] = keep;
            const double fd = (l[0] - l[1]) / (double)((keep + 1e-2f) - (keep - 1e-2f));
            cr_assert(fabs(fd - gt[q][e]) < 1e-4, "table %d element %lld: %g vs %g", q, (long long)e, fd, gt[q][e]);
        }
    free(g0);
    free(g1);
    fpd_composed_free(c);
}

/* One lazy Adam step from zero moments: each touched table row moves by
 * -lr * m_hat / (sqrt(v_hat) + eps) with m_hat = g, v_hat = g^2 (t = 1), untouched
 * rows stay; repeated ids accumulate their gradients first. */
Test(composed, adam_step_touches_only_its_rows) {
    struct fpd_composed_shape s = {FPD_COMPOSED_KIND_HASH, 100, 4, 10, 2};
    struct fpd_composed *c = NULL;
    struct fpd_error err;
    cr_assert(eq(int, fpd_composed_init(&s, 0.1, 1, &c, &err), FPD_STATUS_OK));
    float before[40];
    memcpy(before, c->table[0], sizeof before);
    const int64_t ids[3] = {5, 77, 5};
    const float go[12] = {1, -2, 0.5f, 0, 3, 1, -1, 2, 1, -2, 0.5f, 0};
    double acc[40] = {0};
    for (int t = 0; t < 3; t++)
        for (int j = 0; j < 4; j++) acc[ref_hash(ids[t], 2, 10) * 4 + j] += go[t * 4 + j];
    const float lr = 0.01f, bc1 = 1.0f - 0.9f, bc2 = 1.0f - 0.999f;
    cr_assert(eq(int, fpd_composed_adam_step(c, ids, 3, go, lr, bc1, bc2, &err), FPD_STATUS_OK));
    bool touched[10] = {false};
    for (int t = 0; t < 3; t++) touched[ref_hash(ids[t], 2, 10)] = true;
    for (int e = 0; e < 40; e++) {
        double want = before[e];
        if (touched[e / 4]) {
            const double g = acc[e], m = 0.1 * g / 0.1, v = 0.001 * g * g / 0.001;
            want -= lr * m / (sqrt(v) + 1e-8);
        }
        cr_assert(fabs(c->table[0][e] - want) < 1e-6, "element %d: %g vs %g", e, c->table[0][e], want);
    }
    fpd_composed_free(c);
}

static double softplus(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }

/* A GMF step with a hashed user table (BCE, no negatives) and an MF step with the
 * BPR loss (two items: the negative is forced), against the closed form. */
Test(composed, trainer_steps_hashed_table) {
    enum { NU = 6, NI = 3, ND = 4 };
    struct fpd_composed_shape s = {FPD_COMPOSED_KIND_HASH, NU, ND, 3, 1};
    struct fpd_composed *c = NULL;
    struct fpd_error err;
    cr_assert(eq(int, fpd_composed_init(&s, 0.5, 2, &c, &err), FPD_STATUS_OK));
    float items[NI * ND], w[ND] = {1.0f, -0.5f, 2.0f, 0.25f};
    uint64_t rs = 3;
    for (int q = 0; q < NI * ND; q++) items[q] = (float)test_rand_sym(&rs);
    struct fpd_gmf m = {.user = {NULL, NULL, NU, ND, c}, .item = {NULL, items, NI, ND, NULL}, .weight = w, .bias = 0.1f};
    float before[3 * ND], items0[NI * ND];
    memcpy(before, c->table[0], sizeof before);
    memcpy(items0, items, sizeof items0); /* the item table trains too */
    const int64_t u = 4, it = 2, hu = ref_hash(u, 1, 3);
    struct fpd_gmf_train_params p = fpd_gmf_train_default_params();
    p.epochs = 1;
    p.negatives = 0;
    p.batch_size = 1;
    p.learning_rate = 0.01;
    p.train_prediction = false;
    double loss;
    cr_assert(eq(int, fpd_gmf_train(&m, &u, &it, 1, &p, &loss, &err), FPD_STATUS_OK), "%s", err.msg);
    double z = 0.1;
    for (int j = 0; j < ND; j++) z += (double)before[hu * ND + j] * items0[it * ND + j] * w[j];
    cr_assert(fabs(loss - softplus(-z)) < 1e-6, "%g vs %g", loss, softplus(-z));
    const double g = 1.0 / (1.0 + exp(-z)) - 1.0;
    for (int r = 0; r < 3; r++)
        for (int j = 0; j < ND; j++) {
            double want = before[r * ND + j];
            if (r == hu) want -= 0.01 * (g * items0[it * ND + j] * w[j] > 0 ? 1.0 : -1.0);
            cr_assert(fabs(c->table[0][r * ND + j] - want) < 1e-6, "row %d col %d", r, j);
        }
    fpd_composed_free(c);
}

/* A QR table's row order: id i reads Q[perm[i] / m] * R[perm[i] mod m]; bad orders are
 * refused by value, a hashed table refuses any. */
Test(composed, qr_row_order) {
    struct fpd_composed_shape s = {FPD_COMPOSED_KIND_QR, 50, 4, 7, 0}; /* Q 8 rows: padded 56 */
    struct fpd_composed *c = NULL;
    struct fpd_error err;
    cr_assert(eq(int, fpd_composed_init(&s, 0.5, 3, &c, &err), FPD_STATUS_OK));
    int64_t perm[50];
    for (int64_t i = 0; i < 50; i++) perm[i] = (i * 17 + 5) % 56; /* 17 is prime to 56: distinct */
    cr_assert(eq(int, fpd_composed_set_row_perm(c, perm, &err), FPD_STATUS_OK), "%s", err.msg);
    perm[0] = 999; /* copied: the caller's array may change */
    int64_t ids[50];
    for (int64_t i = 0; i < 50; i++) ids[i] = i;
    float out[50 * 4];
    cr_assert(eq(int, fpd_composed_lookup(c, ids, 50, out, &err), FPD_STATUS_OK));
    for (int64_t i = 0; i < 50; i++) {
        const int64_t r = (i * 17 + 5) % 56;
        for (int j = 0; j < 4; j++) {
            const float want = c->table[0][(r / 7) * 4 + j] * c->table[1][(r % 7) * 4 + j];
            cr_assert(ieee_ulp_eq(flt, out[i * 4 + j], want, 0), "id %lld", (long long)i);
        }
    }
    perm[0] = 56;
    cr_assert(eq(int, fpd_composed_set_row_perm(c, perm, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(strstr(err.msg, "row order[0] = 56 is outside [0, 56)") != NULL, "%s", err.msg);
    perm[0] = perm[1];
    cr_assert(eq(int, fpd_composed_set_row_perm(c, perm, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(strstr(err.msg, "row order[1] = 22 repeats an earlier value") != NULL, "%s", err.msg);
    cr_assert(c->row_perm[0] == 5, "a refused order leaves the one before");
    cr_assert(eq(int, fpd_composed_set_row_perm(c, NULL, &err), FPD_STATUS_OK));
    cr_assert(c->row_perm == NULL);
    fpd_composed_free(c);
    struct fpd_composed_shape h = {FPD_COMPOSED_KIND_HASH, 50, 4, 7, 1};
    cr_assert(eq(int, fpd_composed_init(&h, 0.5, 3, &c, &err), FPD_STATUS_OK));
    cr_assert(eq(int, fpd_composed_set_row_perm(c, ids, &err), FPD_STATUS_UNSUPPORTED));
    fpd_composed_free(c);
}

/* fpd_gmf_train's order_rows orders a QR table from the positives, as test-init.sh's
 * FPD case: 40 users in two groups (even users interact with 6 of items 0-9, odd ones
 * with 6 of items 10-19), m = 5: every quotient row (perm / 5: 8 rows of 5 ids) must
 * hold users of one group. */
Test(composed, trainer_orders_qr_table) {
    enum { NU = 40, NI = 20, ND = 4, NP = NU * 6 };
    struct fpd_composed_shape s = {FPD_COMPOSED_KIND_QR, NU, ND, 5, 0};
    struct fpd_composed *c = NULL;
    struct fpd_error err;
    cr_assert(eq(int, fpd_composed_init(&s, 0.1, 2, &c, &err), FPD_STATUS_OK));
    float items[NI * ND], w[ND] = {1.0f, 1.0f, 1.0f, 1.0f};
    uint64_t rs = 5;
    for (int q = 0; q < NI * ND; q++) items[q] = (float)test_rand_sym(&rs);
    int64_t us[NP], is[NP];
    for (int64_t u = 0; u < NU; u++) {
        int64_t pick[10];
        for (int64_t j = 0; j < 10; j++) pick[j] = j;
        for (int64_t j = 0; j < 6; j++) { /* 6 distinct of the 10 (a partial shuffle) */
            const int64_t k = j + (int64_t)(test_rand_u64(&rs) % (uint64_t)(10 - j)), t = pick[j];
            pick[j] = pick[k];
            pick[k] = t;
            us[u * 6 + j] = u;
            is[u * 6 + j] = (u % 2) * 10 + pick[j];
        }
    }
    struct fpd_gmf m = {.user = {NULL, NULL, NU, ND, c}, .item = {NULL, items, NI, ND, NULL}, .weight = w, .bias = 0.0f};
    struct fpd_gmf_train_params p = fpd_gmf_train_default_params();
    p.epochs = 1;
    p.order_rows = true;
    p.seed = 1;
    double loss;
    cr_assert(eq(int, fpd_gmf_train(&m, us, is, NP, &p, &loss, &err), FPD_STATUS_OK), "%s", err.msg);
    cr_assert(c->row_perm != NULL);
    int group[8] = {-1, -1, -1, -1, -1, -1, -1, -1};
    for (int64_t u = 0; u < NU; u++) {
        const int64_t q = c->row_perm[u] / 5;
        cr_assert(q >= 0 && q < 8);
        if (group[q] < 0) group[q] = (int)(u % 2);
        cr_assert(eq(int, group[q], (int)(u % 2)), "quotient row %lld mixes the groups (user %lld at %lld)",
                  (long long)q, (long long)u, (long long)c->row_perm[u]);
    }
    fpd_composed_free(c);
}

Test(composed, bpr_loss_and_step) {
    enum { NU = 2, NI = 2, ND = 3 };
    float users[NU * ND] = {0.3f, -0.2f, 0.5f, 0.1f, 0.1f, 0.1f};
    float items[NI * ND] = {0.4f, 0.1f, -0.3f, -0.2f, 0.6f, 0.2f};
    float u0[NU * ND], i0[NI * ND], w[ND] = {1.0f, 1.0f, 1.0f};
    memcpy(u0, users, sizeof u0);
    memcpy(i0, items, sizeof i0);
    struct fpd_gmf m = {.user = {NULL, users, NU, ND, NULL}, .item = {NULL, items, NI, ND, NULL}, .weight = w, .bias = 0};
    const int64_t u = 0, pos = 0; /* user 0 has item 0: its only negative is item 1 */
    struct fpd_gmf_train_params p = fpd_gmf_train_default_params();
    p.epochs = 1;
    p.negatives = 1;
    p.batch_size = 2;
    p.learning_rate = 0.01;
    p.loss = FPD_GMF_LOSS_BPR;
    p.l2 = 0.5;
    p.train_prediction = false;
    double loss;
    struct fpd_error err;
    cr_assert(eq(int, fpd_gmf_train(&m, &u, &pos, 1, &p, &loss, &err), FPD_STATUS_OK), "%s", err.msg);
    double zp = 0, zn = 0, sq = 0;
    for (int j = 0; j < ND; j++) {
        zp += (double)u0[j] * i0[j];
        zn += (double)u0[j] * i0[ND + j];
        sq += (double)u0[j] * u0[j] + (double)i0[j] * i0[j] + (double)i0[ND + j] * i0[ND + j];
    }
    const double want_loss = softplus(zn - zp) + 0.25 * sq;
    cr_assert(fabs(loss - want_loss) < 1e-6, "%g vs %g", loss, want_loss);
    /* d/dx softplus(-x) = -sigmoid(-x), x = zp - zn; each parameter moves by -lr sign(grad) */
    const double g = -1.0 / (1.0 + exp(zp - zn));
    for (int j = 0; j < ND; j++) {
        const double gu = g * (i0[j] - i0[ND + j]) + 0.5 * u0[j], gp = g * u0[j] + 0.5 * i0[j],
                     gn = -g * u0[j] + 0.5 * i0[ND + j];
        cr_assert(fabs(users[j] - (u0[j] - 0.01 * (gu > 0 ? 1 : -1))) < 1e-6);
        cr_assert(fabs(items[j] - (i0[j] - 0.01 * (gp > 0 ? 1 : -1))) < 1e-6);
        cr_assert(fabs(items[ND + j] - (i0[ND + j] - 0.01 * (gn > 0 ? 1 : -1))) < 1e-6);
        cr_assert(users[ND + j] == u0[ND + j]); /* user 1 untouched */
    }
    cr_assert(w[0] == 1.0f && m.bias == 0.0f);
    p.teacher = &m;
    cr_assert(eq(int, fpd_gmf_train(&m, &u, &pos, 1, &p, &loss, &err), FPD_STATUS_INVALID_ARG));
}

/* full ranking against a full sort of every item's score */
static double *g_scores;
static int cmp_desc(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    if (g_scores[x] != g_scores[y]) return g_scores[x] > g_scores[y] ? -1 : 1;
    return (x > y) - (x < y);
}

Test(composed, full_ranking_matches_sort) {
    enum { NU = 37, NI = 90, ND = 5, NK = 7 };
    float *users = malloc(sizeof(float) * NU * ND), *items = malloc(sizeof(float) * NI * ND), w[ND];
    uint64_t rs = 21;
    for (int q = 0; q < NU * ND; q++) users[q] = (float)test_rand_sym(&rs);
    for (int q = 0; q < NI * ND; q++) items[q] = (float)test_rand_sym(&rs);
    for (int j = 0; j < ND; j++) w[j] = (float)(0.5 + test_rand_sym(&rs));
    struct fpd_gmf m = {.user = {NULL, users, NU, ND, NULL}, .item = {NULL, items, NI, ND, NULL}, .weight = w, .bias = 3};
    int64_t tr_off[NU + 1], te_off[NU + 1], tr[NU * 20], te[NU * 20];
    int64_t ntr = 0, nte = 0;
    tr_off[0] = te_off[0] = 0;
    for (int u = 0; u < NU; u++) {
        for (int i = 0; i < NI; i++) {
            uint64_t r = test_rand_u64(&rs) % 12;
            if (r == 0 && ntr < NU * 20) tr[ntr++] = i;
            else if (r == 1 && u % 5 != 0 && nte < NU * 20) te[nte++] = i; /* every fifth user: no test items */
        }
        tr_off[u + 1] = ntr;
        te_off[u + 1] = nte;
    }
    struct fpd_full_rank_metrics got;
    struct fpd_error err;
    cr_assert(eq(int, fpd_gmf_rank_full(&m, NU, tr_off, tr, te_off, te, NK, &got, &err), FPD_STATUS_OK), "%s", err.msg);
    double recall = 0, prec = 0, ndcg = 0;
    int counted = 0;
    double scores[NI];
    int64_t order[NI];
    g_scores = scores;
    for (int u = 0; u < NU; u++) {
        const int64_t nt = te_off[u + 1] - te_off[u];
        if (!nt) continue;
        int64_t n = 0;
        for (int i = 0; i < NI; i++) {
            bool in_train = false;
            for (int64_t q = tr_off[u]; q < tr_off[u + 1]; q++) in_train |= tr[q] == i;
            double z = 0;
            for (int j = 0; j < ND; j++) z += (double)users[u * ND + j] * items[i * ND + j] * w[j];
            scores[i] = z;
            if (!in_train) order[n++] = i;
        }
        qsort(order, (size_t)n, sizeof *order, cmp_desc);
        double hits = 0, dcg = 0, idcg = 0;
        for (int r = 0; r < NK && r < n; r++)
            for (int64_t q = te_off[u]; q < te_off[u + 1]; q++)
                if (te[q] == order[r]) {
                    hits++;
                    dcg += 1.0 / log2(r + 2.0);
                }
        for (int r = 0; r < NK && r < nt; r++) idcg += 1.0 / log2(r + 2.0);
        recall += hits / (double)nt;
        prec += hits / NK;
        ndcg += dcg / idcg;
        counted++;
    }
    cr_assert(eq(i64, got.users, counted));
    cr_assert(fabs(got.recall - recall / counted) < 1e-9, "%g vs %g", got.recall, recall / counted);
    cr_assert(fabs(got.precision - prec / counted) < 1e-9);
    cr_assert(fabs(got.ndcg - ndcg / counted) < 1e-9, "%g vs %g", got.ndcg, ndcg / counted);
    cr_assert(got.recall > 0.0);
    tr[0] = NI; /* an item out of range */
    cr_assert(eq(int, fpd_gmf_rank_full(&m, NU, tr_off, tr, te_off, te, NK, &got, &err), FPD_STATUS_INVALID_ARG));
    free(users);
    free(items);
}
