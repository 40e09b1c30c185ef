/*
 * test-ncf-models.c - NCF's MLP and NeuMF (fpd_ncf_*): logits against a naive double
 * reference written here from the paper's equations; the GMF kind against fpd_gmf_*
 * (logits, and training bit for bit: same sampler, same optimizer); the backward
 * through the hidden layers by the sign of each parameter's first Adam step
 * (Adam's first step is -lr * g / (|g| + eps), so every parameter moves against the
 * sign of its gradient) against central differences of the reference loss; 1-core
 * FPD tables training exactly as dense ones; a planted model learned; refusals.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lib/fpd.h"
#include "tests/test-util.h"

static float *rnd(int64_t n, uint64_t seed, double scale) {
    float *v = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) v[i] = (float)(scale * test_rand_sym(&seed));
    return v;
}

/* A small model of the given kind with dense tables: U users, I items, D_mf = 3,
 * D_mlp = 4, layers 8 -> 5 -> 3. */
struct small {
    struct fpd_ncf m;
    float *t[4], *w[2], *b[2], *pred;
};

static void small_make(struct small *s, enum fpd_ncf_kind kind, int64_t NU, int64_t NI, uint64_t seed) {
    memset(s, 0, sizeof *s);
    s->m.kind = kind;
    s->t[0] = rnd(NU * 3, seed + 1, 0.5);
    s->t[1] = rnd(NI * 3, seed + 2, 0.5);
    s->t[2] = rnd(NU * 4, seed + 3, 0.5);
    s->t[3] = rnd(NI * 4, seed + 4, 0.5);
    s->m.mf_user = (struct fpd_embedding){.layer = NULL, .dense = s->t[0], .rows = NU, .dim = 3};
    s->m.mf_item = (struct fpd_embedding){.layer = NULL, .dense = s->t[1], .rows = NI, .dim = 3};
    s->m.mlp_user = (struct fpd_embedding){.layer = NULL, .dense = s->t[2], .rows = NU, .dim = 4};
    s->m.mlp_item = (struct fpd_embedding){.layer = NULL, .dense = s->t[3], .rows = NI, .dim = 4};
    s->m.n_layers = 2;
    s->m.layer_dim[0] = 8;
    s->m.layer_dim[1] = 5;
    s->m.layer_dim[2] = 3;
    s->w[0] = rnd(5 * 8, seed + 5, 0.6);
    s->b[0] = rnd(5, seed + 6, 0.3);
    s->w[1] = rnd(3 * 5, seed + 7, 0.6);
    s->b[1] = rnd(3, seed + 8, 0.3);
    for (int l = 0; l < 2; l++) {
        s->m.layer_weight[l] = s->w[l];
        s->m.layer_bias[l] = s->b[l];
    }
    s->pred = rnd(6, seed + 9, 0.7);
    s->m.weight = s->pred;
    s->m.bias = 0.2f;
}

static void small_free(struct small *s) {
    for (int q = 0; q < 4; q++) free(s->t[q]);
    for (int q = 0; q < 2; q++) {
        free(s->w[q]);
        free(s->b[q]);
    }
    free(s->pred);
}

/* The reference: NCF section 3 in double, straight from the equations. */
static double ref_logit(const struct fpd_ncf *m, int64_t u, int64_t i) {
    double h[64];
    int64_t nh = 0;
    if (m->kind != FPD_NCF_KIND_MLP) {
        int64_t d = m->mf_user.dim;
        for (int64_t j = 0; j < d; j++) h[nh++] = (double)m->mf_user.dense[u * d + j] * m->mf_item.dense[i * d + j];
    }
    if (m->kind != FPD_NCF_KIND_GMF) {
        double x[64], y[64];
        int64_t d = m->mlp_user.dim, n = 2 * d;
        for (int64_t j = 0; j < d; j++) {
            x[j] = m->mlp_user.dense[u * d + j];
            x[d + j] = m->mlp_item.dense[i * d + j];
        }
        for (int l = 0; l < m->n_layers; l++) {
            int64_t out = m->layer_dim[l + 1];
            for (int64_t o = 0; o < out; o++) {
                double a = m->layer_bias[l][o];
                for (int64_t q = 0; q < n; q++) a += (double)m->layer_weight[l][o * n + q] * x[q];
                y[o] = a > 0 ? a : 0;
            }
            n = out;
            memcpy(x, y, (size_t)n * sizeof(double));
        }
        for (int64_t o = 0; o < n; o++) h[nh++] = x[o];
    }
    double z = m->bias;
    for (int64_t j = 0; j < nh; j++) z += (double)m->weight[j] * h[j];
    return z;
}

Test(ncf_models, logits_match_the_equations) {
    enum fpd_ncf_kind kinds[3] = {FPD_NCF_KIND_GMF, FPD_NCF_KIND_MLP, FPD_NCF_KIND_NEUMF};
    int64_t pd[3] = {3, 3, 6};
    for (int k = 0; k < 3; k++) {
        struct small s;
        small_make(&s, kinds[k], 7, 9, 10 * (uint64_t)k);
        cr_assert(eq(i64, fpd_ncf_predict_dim(&s.m), pd[k]));
        int64_t us[40], is[40];
        float out[40];
        uint64_t r = 5;
        for (int t = 0; t < 40; t++) {
            us[t] = (int64_t)(test_rand_u64(&r) % 7);
            is[t] = (int64_t)(test_rand_u64(&r) % 9);
        }
        struct fpd_error err;
        cr_assert(eq(int, fpd_ncf_logits(&s.m, us, is, 40, out, &err), 0), "%s", err.msg);
        float lo = INFINITY, hi = -INFINITY;
        for (int t = 0; t < 40; t++) {
            double ref = ref_logit(&s.m, us[t], is[t]);
            cr_assert(fabs(out[t] - ref) <= 1e-5 * (1 + fabs(ref)), "kind %d pair %d: %g vs %g", k, t, out[t], ref);
            lo = fminf(lo, out[t]);
            hi = fmaxf(hi, out[t]);
        }
        cr_assert(hi - lo > 0.05f, "kind %d: logits vary (%g .. %g)", k, lo, hi);
        if (kinds[k] == FPD_NCF_KIND_GMF) { /* the same as fpd_gmf_logits */
            struct fpd_gmf g = {s.m.mf_user, s.m.mf_item, s.m.weight, s.m.bias};
            float go[40];
            cr_assert(eq(int, fpd_gmf_logits(&g, us, is, 40, go, &err), 0));
            for (int t = 0; t < 40; t++) cr_assert(eq(flt, go[t], out[t]));
        }
        small_free(&s);
    }
}

/* mean log loss of the positives (labels 1) under the reference */
static double ref_loss(const struct fpd_ncf *m, const int64_t *us, const int64_t *is, int n) {
    double s = 0;
    for (int t = 0; t < n; t++) {
        double z = ref_logit(m, us[t], is[t]);
        s += z > 0 ? log1p(exp(-z)) : -z + log1p(exp(z));
    }
    return s / n;
}

/* every parameter of the model, in one list of pointers */
static int params_of(struct small *s, float **p) {
    int n = 0;
    const struct fpd_ncf *m = &s->m;
    if (m->kind != FPD_NCF_KIND_MLP)
        for (int q = 0; q < 2; q++)
            for (int64_t e = 0; e < (q ? 9 : 7) * 3; e++) p[n++] = &s->t[q][e];
    if (m->kind != FPD_NCF_KIND_GMF) {
        for (int q = 2; q < 4; q++)
            for (int64_t e = 0; e < (q == 2 ? 7 : 9) * 4; e++) p[n++] = &s->t[q][e];
        for (int e = 0; e < 40; e++) p[n++] = &s->w[0][e];
        for (int e = 0; e < 5; e++) p[n++] = &s->b[0][e];
        for (int e = 0; e < 15; e++) p[n++] = &s->w[1][e];
        for (int e = 0; e < 3; e++) p[n++] = &s->b[1][e];
    }
    for (int64_t e = 0; e < fpd_ncf_predict_dim(m); e++) p[n++] = &s->pred[e];
    p[n++] = &s->m.bias;
    return n;
}

Test(ncf_models, first_adam_step_follows_the_gradient) {
    enum fpd_ncf_kind kinds[3] = {FPD_NCF_KIND_GMF, FPD_NCF_KIND_MLP, FPD_NCF_KIND_NEUMF};
    for (int k = 0; k < 3; k++) {
        struct small s;
        small_make(&s, kinds[k], 7, 9, 100 + (uint64_t)k);
        /* positives only (no negatives), one batch holding all: one deterministic step */
        int64_t us[30], is[30];
        uint64_t r = 77;
        for (int t = 0; t < 30; t++) {
            us[t] = (int64_t)(test_rand_u64(&r) % 7);
            is[t] = (int64_t)(test_rand_u64(&r) % 9);
        }
        float *p[400], before[400];
        double grad[400];
        int np = params_of(&s, p);
        cr_assert(np < 400);
        bool kink[400];
        double l0 = ref_loss(&s.m, us, is, 30);
        for (int q = 0; q < np; q++) { /* central differences of the reference loss */
            float x = *p[q];
            const float h = 1e-3f;
            *p[q] = x + h;
            double lp = ref_loss(&s.m, us, is, 30);
            *p[q] = x - h;
            double lm = ref_loss(&s.m, us, is, 30);
            *p[q] = x;
            grad[q] = (lp - lm) / (2.0 * h);
            /* one-sided differences that disagree: a ReLU switches within h */
            double gp = (lp - l0) / h, gm = (l0 - lm) / h;
            kink[q] = fabs(gp - gm) > 0.1 * fmax(fabs(gp), fabs(gm)) + 1e-6;
            before[q] = x;
        }
        struct fpd_gmf_train_params tp = fpd_gmf_train_default_params();
        tp.epochs = 1;
        tp.negatives = 0;
        tp.batch_size = 64;
        tp.learning_rate = 1e-3;
        struct fpd_error err;
        cr_assert(eq(int, fpd_ncf_train(&s.m, us, is, 30, &tp, NULL, &err), 0), "%s", err.msg);
        int checked = 0;
        for (int q = 0; q < np; q++) {
            double moved = (double)*p[q] - before[q];
            if (kink[q]) continue;
            if (fabs(grad[q]) > 1e-4) {
                /* a clear gradient: the step is lr against its sign (|g| >> eps) */
                cr_assert(fabs(moved + 1e-3 * (grad[q] > 0 ? 1 : -1)) < 2e-5, "kind %d param %d: moved %g, grad %g", k,
                          q, moved, grad[q]);
                checked++;
            } else if (grad[q] == 0.0) {
                cr_assert(fabs(moved) < 1e-7, "kind %d param %d: no gradient but moved %g", k, q, moved);
            }
        }
        cr_assert(checked > np / 3, "kind %d: only %d of %d parameters had a clear gradient", k, checked, np);
        small_free(&s);
    }
}

Test(ncf_models, gmf_kind_trains_as_fpd_gmf_train) {
    struct small a, b;
    small_make(&a, FPD_NCF_KIND_GMF, 7, 9, 3);
    small_make(&b, FPD_NCF_KIND_GMF, 7, 9, 3);
    int64_t us[50], is[50];
    uint64_t r = 9;
    for (int t = 0; t < 50; t++) {
        us[t] = (int64_t)(test_rand_u64(&r) % 7);
        is[t] = (int64_t)(test_rand_u64(&r) % 8); /* item 8 never positive: negatives exist */
    }
    struct fpd_gmf_train_params tp = fpd_gmf_train_default_params();
    tp.epochs = 3;
    tp.batch_size = 20;
    tp.seed = 4;
    tp.learning_rate = 1e-2;
    struct fpd_gmf g = {b.m.mf_user, b.m.mf_item, b.m.weight, b.m.bias};
    struct fpd_error err;
    double la, lb;
    cr_assert(eq(int, fpd_ncf_train(&a.m, us, is, 50, &tp, &la, &err), 0), "%s", err.msg);
    cr_assert(eq(int, fpd_gmf_train(&g, us, is, 50, &tp, &lb, &err), 0), "%s", err.msg);
    cr_assert(eq(dbl, la, lb));
    cr_assert(eq(flt, a.m.bias, g.bias));
    for (int e = 0; e < 7 * 3; e++) cr_assert(eq(flt, a.t[0][e], b.t[0][e]));
    for (int e = 0; e < 9 * 3; e++) cr_assert(eq(flt, a.t[1][e], b.t[1][e]));
    for (int e = 0; e < 3; e++) cr_assert(eq(flt, a.pred[e], b.pred[e]));
    cr_assert(a.t[0][0] != 0.0f);
    small_free(&a);
    small_free(&b);
}

Test(ncf_models, one_core_fpd_tables_train_as_dense) {
    struct small a, b;
    small_make(&a, FPD_NCF_KIND_NEUMF, 7, 9, 21);
    small_make(&b, FPD_NCF_KIND_NEUMF, 7, 9, 21);
    struct fpd_embedding *tb[4] = {&b.m.mf_user, &b.m.mf_item, &b.m.mlp_user, &b.m.mlp_item};
    struct fpd_layer *l[4] = {0};
    struct fpd_error err;
    for (int q = 0; q < 4; q++) { /* core [1, N, 1, D, 1] is the table */
        const int64_t n[1] = {tb[q]->rows}, d[1] = {tb[q]->dim};
        struct fpd_layer_shape sh = test_make_shape(1, tb[q]->rows, n, d, 1, 1);
        cr_assert(eq(int, fpd_layer_init(&sh, &l[q], &err), 0), "%s", err.msg);
        memcpy(fpd_layer_core(l[q], 0), tb[q]->dense, (size_t)(tb[q]->rows * tb[q]->dim) * sizeof(float));
        tb[q]->layer = l[q];
        tb[q]->dense = NULL;
    }
    int64_t us[60], is[60];
    uint64_t r = 13;
    for (int t = 0; t < 60; t++) {
        us[t] = (int64_t)(test_rand_u64(&r) % 7);
        is[t] = (int64_t)(test_rand_u64(&r) % 8);
    }
    struct fpd_gmf_train_params tp = fpd_gmf_train_default_params();
    tp.epochs = 2;
    tp.batch_size = 25;
    tp.learning_rate = 1e-2;
    double la, lb;
    cr_assert(eq(int, fpd_ncf_train(&a.m, us, is, 60, &tp, &la, &err), 0), "%s", err.msg);
    cr_assert(eq(int, fpd_ncf_train(&b.m, us, is, 60, &tp, &lb, &err), 0), "%s", err.msg);
    cr_assert(ieee_ulp_eq(dbl, la, lb, 4), "loss %g vs %g", la, lb);
    for (int q = 0; q < 4; q++) {
        const float *c = fpd_layer_core_const(l[q], 0);
        for (int64_t e = 0; e < tb[q]->rows * tb[q]->dim; e++)
            cr_assert(ieee_ulp_eq(flt, a.t[q][e], c[e], 4), "table %d entry %lld", q, (long long)e);
        fpd_layer_free(l[q]);
    }
    for (int e = 0; e < 40; e++) cr_assert(ieee_ulp_eq(flt, a.w[0][e], b.w[0][e], 4));
    small_free(&a);
    small_free(&b);
}

/* A planted preference: users and items in 4 clusters; a user likes 2/3 of its
 * cluster's items; one held out, ranked among 19 items of other clusters. */
Test(ncf_models, mlp_and_neumf_learn_a_planted_model) {
    const int64_t NU = 160, NI = 80;
    int64_t *us = malloc((size_t)(NU * NI) * sizeof(int64_t)), *is = malloc((size_t)(NU * NI) * sizeof(int64_t));
    int64_t tu[160], tc[160 * 20], n = 0;
    uint64_t seed = 99;
    for (int64_t u = 0; u < NU; u++) {
        int64_t first = n;
        for (int64_t i = 0; i < NI; i++) {
            if (i % 4 != u % 4 || test_rand_u64(&seed) % 3 == 0) continue;
            us[n] = u;
            is[n++] = i;
        }
        int64_t h = first + (int64_t)(test_rand_u64(&seed) % (uint64_t)(n - first));
        tc[u * 20] = is[h];
        us[h] = us[n - 1];
        is[h] = is[n - 1];
        n--;
        tu[u] = u;
        for (int c = 1; c < 20; c++) {
            int64_t j;
            do j = (int64_t)(test_rand_u64(&seed) % (uint64_t)NI);
            while (j % 4 == u % 4);
            tc[u * 20 + c] = j;
        }
    }
    enum fpd_ncf_kind kinds[2] = {FPD_NCF_KIND_MLP, FPD_NCF_KIND_NEUMF};
    for (int k = 0; k < 2; k++) {
        /* D_mf = 4, D_mlp = 8, layers 16 -> 16 -> 8 (an MLP needs width to learn a
         * "same cluster" interaction: Rendle et al. 2020 on MLPs and dot products) */
        struct fpd_ncf m = {.kind = kinds[k], .n_layers = 2, .layer_dim = {16, 16, 8}};
        float *t[4], *lw[2], *lb[2], *pw = malloc(12 * sizeof(float));
        for (int q = 0; q < 4; q++) t[q] = rnd((q & 1 ? NI : NU) * (q < 2 ? 4 : 8), 40 + (uint64_t)(10 * k + q), 0.1);
        m.mf_user = (struct fpd_embedding){.layer = NULL, .dense = t[0], .rows = NU, .dim = 4};
        m.mf_item = (struct fpd_embedding){.layer = NULL, .dense = t[1], .rows = NI, .dim = 4};
        m.mlp_user = (struct fpd_embedding){.layer = NULL, .dense = t[2], .rows = NU, .dim = 8};
        m.mlp_item = (struct fpd_embedding){.layer = NULL, .dense = t[3], .rows = NI, .dim = 8};
        for (int l = 0; l < 2; l++) {
            m.layer_weight[l] = lw[l] = malloc(16 * 16 * sizeof(float));
            m.layer_bias[l] = lb[l] = malloc(16 * sizeof(float));
        }
        m.weight = pw;
        struct fpd_error err;
        cr_assert(eq(int, fpd_ncf_init_dense(&m, 5, &err), 0), "%s", err.msg);
        struct fpd_rank_metrics before, after;
        cr_assert(eq(int, fpd_ncf_rank(&m, tu, tc, NU, 20, 5, &before, NULL, &err), 0), "%s", err.msg);
        struct fpd_gmf_train_params tp = fpd_gmf_train_default_params();
        tp.epochs = 20;
        tp.batch_size = 100;
        tp.learning_rate = 1e-2;
        cr_assert(eq(int, fpd_ncf_train(&m, us, is, n, &tp, NULL, &err), 0), "%s", err.msg);
        cr_assert(eq(int, fpd_ncf_rank(&m, tu, tc, NU, 20, 5, &after, NULL, &err), 0), "%s", err.msg);
        cr_assert(after.hr >= 0.9 && after.hr > before.hr + 0.3, "kind %d: HR@5 %.3f -> %.3f", k, before.hr, after.hr);
        for (int q = 0; q < 4; q++) free(t[q]);
        for (int l = 0; l < 2; l++) {
            free(lw[l]);
            free(lb[l]);
        }
        free(pw);
    }
    free(us);
    free(is);
}

Test(ncf_models, refusals) {
    struct small s;
    small_make(&s, FPD_NCF_KIND_MLP, 7, 9, 1);
    int64_t us[1] = {0}, is[1] = {9};
    float out[1];
    struct fpd_error err;
    cr_assert(eq(int, fpd_ncf_logits(&s.m, us, is, 1, out, &err), FPD_STATUS_INVALID_ARG)); /* item 9 of 9 */
    cr_assert(strstr(err.msg, "item id 9") != NULL, "%s", err.msg);
    is[0] = 0;
    s.m.layer_dim[0] = 9;
    cr_assert(eq(int, fpd_ncf_logits(&s.m, us, is, 1, out, &err), FPD_STATUS_SHAPE));
    s.m.layer_dim[0] = 8;
    s.m.n_layers = 0;
    cr_assert(eq(int, fpd_ncf_logits(&s.m, us, is, 1, out, &err), FPD_STATUS_INVALID_ARG));
    s.m.n_layers = 2;
    s.m.kind = FPD_NCF_KIND_NEUMF;
    s.m.mf_item.rows = 8; /* GMF and MLP tables disagree on the items */
    cr_assert(eq(int, fpd_ncf_logits(&s.m, us, is, 1, out, &err), FPD_STATUS_SHAPE));
    s.m.mf_item.rows = 9;
    struct fpd_gmf_train_params tp = fpd_gmf_train_default_params();
    tp.balance_users = true;
    cr_assert(eq(int, fpd_ncf_train(&s.m, us, is, 1, &tp, NULL, &err), FPD_STATUS_INVALID_ARG));
    s.m.kind = (enum fpd_ncf_kind)7;
    cr_assert(eq(int, fpd_ncf_logits(&s.m, us, is, 1, out, &err), FPD_STATUS_INVALID_ARG));
    small_free(&s);
}
