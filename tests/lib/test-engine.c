/*
 * test-engine.c - the FPD engine (batched EmbeddingBag forward, backward,
 * optimizer steps) against references written here from the definitions:
 * pooling over the naive rows of tests/test-util.h (DESIGN.md section 2, in
 * double), the gradient by the definition and by central differences, the
 * optimizers' closed forms on hand-sized examples, and the previous row-by-row
 * look-up on the committed GloVe sample.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "formats/fpd-formats.h"
#include "lib/cpu/kernels-cpu.h"
#include "tests/test-util.h"

struct ecase {
    int32_t k;
    int64_t rows, n[4], d[4], r, p;
    bool perm;
};

/* k = 1..4, p = 1..3, odd and prime D, padded N (prod(n) > rows), d_m = 1, a
 * row permutation */
static const struct ecase g_cases[] = {
    {1, 9, {9}, {5}, 1, 2, false},
    {2, 30, {6, 5}, {3, 1}, 3, 1, true},          /* D = 3 */
    {2, 41, {7, 7}, {7, 1}, 4, 3, false},         /* D = 7 prime, padded 49 */
    {3, 1000, {10, 11, 10}, {2, 3, 2}, 4, 1, true}, /* padded 1100 */
    {3, 97, {5, 5, 4}, {97, 1, 1}, 6, 2, false},  /* D = 97 prime in one mode */
    {3, 500, {8, 8, 8}, {5, 3, 1}, 5, 3, true},   /* D = 15 odd */
    {4, 200, {3, 4, 5, 4}, {2, 1, 3, 2}, 5, 2, true},
};
#define NCASES (sizeof g_cases / sizeof g_cases[0])

static struct fpd_layer *make_layer(const struct ecase *c, uint64_t seed) {
    struct fpd_layer_shape s = test_make_shape(c->k, c->rows, c->n, c->d, c->r, c->p);
    struct fpd_layer *l = NULL;
    struct fpd_error err;
    cr_assert(eq(int, fpd_layer_init(&s, &l, &err), FPD_STATUS_OK), "%s", err.msg);
    test_fill_random(l, seed, 0.7);
    if (c->perm) { /* a random injection into the padded rows */
        int64_t padded = 1;
        for (int32_t m = 0; m < c->k; m++) padded *= c->n[m];
        int64_t *all = malloc((size_t)padded * sizeof(int64_t));
        for (int64_t i = 0; i < padded; i++) all[i] = i;
        for (int64_t i = padded - 1; i > 0; i--) {
            int64_t j = (int64_t)(test_rand_u64(&seed) % (uint64_t)(i + 1)), x = all[i];
            all[i] = all[j];
            all[j] = x;
        }
        cr_assert(eq(int, fpd_layer_set_row_perm(l, all, &err), FPD_STATUS_OK), "%s", err.msg);
        free(all);
    }
    return l;
}

/* Original row `id` by the definition, in double. */
static void ref_row(const struct fpd_layer *l, int64_t id, double *out) {
    const int64_t *perm = fpd_layer_row_perm(l);
    test_naive_row(l, perm ? perm[id] : id, out);
}

/* The pooled output of a batch by PyTorch's definition, in double. */
static void ref_forward(const struct fpd_layer *l, const struct fpd_bag_batch *b, double *out) {
    const int64_t D = fpd_layer_get_shape(l)->dim, nout = fpd_bag_batch_out_rows(b);
    double row[512];
    memset(out, 0, (size_t)(nout * D) * sizeof(double));
    for (int64_t o = 0; o < nout; o++) {
        int64_t lo, hi;
        if (b->mode == FPD_BAG_MODE_NONE) {
            lo = o;
            hi = o + 1;
        } else if (!b->offsets) {
            lo = o * b->bag_size;
            hi = lo + b->bag_size;
        } else {
            lo = b->offsets[o];
            hi = (o + 1 < nout || b->include_last_offset) ? b->offsets[o + 1] : b->n_indices;
        }
        int64_t cnt = 0;
        for (int64_t i = lo; i < hi; i++) {
            if (b->padding_idx >= 0 && b->indices[i] == b->padding_idx) continue;
            cnt++;
            ref_row(l, b->indices[i], row);
            double wgt = b->per_sample_weights ? b->per_sample_weights[i] : 1.0;
            for (int64_t j = 0; j < D; j++) out[o * D + j] += wgt * row[j];
        }
        if (b->mode == FPD_BAG_MODE_MEAN && cnt > 0)
            for (int64_t j = 0; j < D; j++) out[o * D + j] /= (double)cnt;
    }
}

/* A CPU engine on `threads` threads (default optimizer). */
static struct fpd_engine *engine_on(struct fpd_layer *l, int32_t threads) {
    struct fpd_engine_params ep = fpd_engine_default_params();
    ep.threads = threads;
    struct fpd_engine *e = NULL;
    struct fpd_error err;
    cr_assert(eq(int, fpd_engine_init(l, &ep, &e, &err), FPD_STATUS_OK), "%s", err.msg);
    return e;
}

/* The batches every case runs: 24 indices, repeats within and across bags. */
struct batch_set {
    int64_t idx[24], off[9], off_last[10];
    float wts[24];
};

static void make_batches(const struct ecase *c, uint64_t seed, struct batch_set *bs) {
    for (int i = 0; i < 24; i++) bs->idx[i] = (int64_t)(test_rand_u64(&seed) % (uint64_t)c->rows);
    bs->idx[3] = bs->idx[2];                 /* a repeat inside a bag    */
    bs->idx[20] = bs->idx[2];                /* and across bags          */
    bs->idx[21] = c->rows - 1;
    bs->idx[5] = 0;                          /* the padding id (below)   */
    bs->idx[6] = 0;
    for (int i = 0; i < 24; i++) bs->wts[i] = (float)(0.5 + 0.1 * i);
    /* bags: [0,4) [4,4) empty, [4,7) holds two padding entries, ... */
    const int64_t off[9] = {0, 4, 4, 7, 12, 12, 15, 20, 23};
    memcpy(bs->off, off, sizeof off);
    memcpy(bs->off_last, off, sizeof off);
    bs->off_last[9] = 24;
}

Test(engine, pooled_forward_matches_the_definition) {
    for (size_t ci = 0; ci < NCASES; ci++) {
        const struct ecase *c = &g_cases[ci];
        struct fpd_layer *l = make_layer(c, 100 + ci);
        const int64_t D = fpd_layer_get_shape(l)->dim;
        struct batch_set bs;
        make_batches(c, 7 + ci, &bs);
        struct fpd_bag_batch batches[] = {
            {.indices = bs.idx, .n_indices = 24, .offsets = bs.off, .n_bags = 9, .mode = FPD_BAG_MODE_SUM, .padding_idx = 0},
            {.indices = bs.idx, .n_indices = 24, .offsets = bs.off, .n_bags = 9, .mode = FPD_BAG_MODE_MEAN, .padding_idx = 0},
            {.indices = bs.idx, .n_indices = 24, .offsets = bs.off, .n_bags = 9, .mode = FPD_BAG_MODE_SUM,
             .per_sample_weights = bs.wts, .padding_idx = -1},
            {.indices = bs.idx, .n_indices = 24, .offsets = bs.off_last, .n_bags = 10, .include_last_offset = true,
             .mode = FPD_BAG_MODE_MEAN, .padding_idx = -1},
            {.indices = bs.idx, .n_indices = 24, .bag_size = 3, .mode = FPD_BAG_MODE_SUM, .padding_idx = 0},
            {.indices = bs.idx, .n_indices = 24, .mode = FPD_BAG_MODE_NONE, .padding_idx = 0},
            {.indices = bs.idx, .n_indices = 24, .mode = FPD_BAG_MODE_NONE, .padding_idx = -1},
        };
        for (int32_t threads = 1; threads <= 3; threads += 2) {
            struct fpd_engine *e = engine_on(l, threads);
            struct fpd_error err;
            for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++) {
                const int64_t nout = fpd_bag_batch_out_rows(&batches[bi]);
                float *out = malloc((size_t)(nout * D) * sizeof(float));
                double *ref = malloc((size_t)(nout * D) * sizeof(double));
                cr_assert(eq(int, fpd_engine_forward(e, &batches[bi], out, &err), FPD_STATUS_OK), "%s", err.msg);
                ref_forward(l, &batches[bi], ref);
                for (int64_t o = 0; o < nout; o++)
                    cr_assert(le(dbl, test_rel_diff(out + o * D, ref + o * D, D), 1e-5), "case %zu batch %zu out %lld",
                              ci, bi, (long long)o);
                if (batches[bi].mode != FPD_BAG_MODE_NONE && batches[bi].offsets) { /* the empty bag is exactly zero */
                    for (int64_t j = 0; j < D; j++) cr_assert(eq(flt, out[1 * D + j], 0.0f));
                }
                free(out);
                free(ref);
            }
            fpd_engine_free(e);
        }
        fpd_layer_free(l);
    }
}

/* L = sum <g, out> as a function of the cores, in double through the definition. */
static double loss_of(const struct fpd_layer *l, const struct fpd_bag_batch *b, const float *g) {
    const int64_t D = fpd_layer_get_shape(l)->dim, nout = fpd_bag_batch_out_rows(b);
    double *out = malloc((size_t)(nout * D) * sizeof(double)), s = 0.0;
    ref_forward(l, b, out);
    for (int64_t i = 0; i < nout * D; i++) s += (double)g[i] * out[i];
    free(out);
    return s;
}

Test(engine, backward_matches_the_definition_and_central_differences) {
    for (size_t ci = 0; ci < NCASES; ci++) {
        const struct ecase *c = &g_cases[ci];
        struct fpd_layer *l = make_layer(c, 300 + ci);
        const struct fpd_layer_shape *s = fpd_layer_get_shape(l);
        const int64_t D = s->dim;
        struct batch_set bs;
        make_batches(c, 17 + ci, &bs);
        struct fpd_bag_batch b = {.indices = bs.idx, .n_indices = 24, .offsets = bs.off, .n_bags = 9,
                                  .per_sample_weights = bs.wts, .mode = FPD_BAG_MODE_SUM, .padding_idx = 0};
        const int64_t nout = fpd_bag_batch_out_rows(&b);
        float *g = malloc((size_t)(nout * D) * sizeof(float)), *out = malloc((size_t)(nout * D) * sizeof(float));
        uint64_t seed = 5 + ci;
        for (int64_t i = 0; i < nout * D; i++) g[i] = (float)test_rand_sym(&seed);
        /* the per-entry gradient: the bag's gradient times the entry's weight */
        int64_t ent[24], nent = 0;
        float *ge = calloc((size_t)(24 * D), sizeof(float));
        for (int64_t o = 0; o < nout; o++) {
            int64_t hi = o + 1 < nout ? bs.off[o + 1] : 24;
            for (int64_t i = bs.off[o]; i < hi; i++) {
                if (bs.idx[i] == 0) continue;
                for (int64_t j = 0; j < D; j++) ge[nent * D + j] = bs.wts[i] * g[o * D + j];
                ent[nent++] = bs.idx[i];
            }
        }
        double *ref[FPD_MAX_MODES];
        for (int32_t m = 0; m < s->k; m++) ref[m] = calloc((size_t)fpd_layer_shape_core_numel(s, m), sizeof(double));
        test_naive_backward(l, ent, nent, ge, ref);
        for (int32_t threads = 1; threads <= 2; threads++) {
            struct fpd_engine *e = engine_on(l, threads);
            struct fpd_error err;
            cr_assert(eq(int, fpd_engine_forward(e, &b, out, &err), 0), "%s", err.msg);
            cr_assert(eq(int, fpd_engine_backward(e, &b, g, &err), 0), "%s", err.msg);
            for (int32_t m = 0; m < s->k; m++) {
                const float *gm;
                const int64_t *sl;
                int64_t nsl;
                fpd_engine_grad(e, m, &gm, &sl, &nsl);
                const int64_t nel = fpd_layer_shape_core_numel(s, m), slice = nel / (s->terms * s->row_shape[m]);
                double num = 0.0, den = 0.0;
                for (int64_t x = 0; x < nel; x++) {
                    num += (gm[x] - ref[m][x]) * (gm[x] - ref[m][x]);
                    den += ref[m][x] * ref[m][x];
                }
                cr_assert(le(dbl, sqrt(num / (den > 0 ? den : 1)), 1e-5), "case %zu core %d", ci, (int)m);
                /* the touched list is exactly the slices with a nonzero reference */
                int64_t expect = 0;
                for (int64_t q = 0; q < nel / slice; q++) {
                    bool nz = false;
                    for (int64_t x = q * slice; x < (q + 1) * slice; x++) nz |= ref[m][x] != 0.0;
                    expect += nz;
                }
                cr_assert(eq(i64, nsl, expect), "case %zu core %d touched slices", ci, (int)m);
                for (int64_t q = 1; q < nsl; q++) cr_assert(lt(i64, sl[q - 1], sl[q]));
            }
            /* central differences (the loss is linear in each core entry: exact up to rounding) */
            for (int32_t m = 0; m < s->k && threads == 1; m++) {
                const float *gm;
                fpd_engine_grad(e, m, &gm, NULL, NULL);
                float *core = fpd_layer_core(l, m);
                const int64_t nel = fpd_layer_shape_core_numel(s, m);
                for (int64_t x = 0; x < nel; x += 1 + nel / 13) {
                    const float keep = core[x], h = 0.25f;
                    core[x] = keep + h;
                    double lp = loss_of(l, &b, g);
                    core[x] = keep - h;
                    double lm = loss_of(l, &b, g);
                    core[x] = keep;
                    double fd = (lp - lm) / (2.0 * h);
                    cr_assert(le(dbl, fabs(fd - gm[x]), 1e-4 * (1.0 + fabs(fd))), "case %zu core %d entry %lld: fd %g, "
                              "engine %g", ci, (int)m, (long long)x, fd, (double)gm[x]);
                }
            }
            fpd_engine_free(e);
        }
        for (int32_t m = 0; m < s->k; m++) free(ref[m]);
        free(g);
        free(out);
        free(ge);
        fpd_layer_free(l);
    }
}

/* A 1-core layer with one term: slices are rows, so the optimizers act on a table
 * of 3 rows of 2, checked against their closed forms. */
static struct fpd_layer *tiny_table(void) {
    const int64_t n[1] = {3}, d[1] = {2};
    struct fpd_layer_shape s = test_make_shape(1, 3, n, d, 1, 1);
    struct fpd_layer *l = NULL;
    cr_assert(eq(int, fpd_layer_init(&s, &l, NULL), 0));
    float *c = fpd_layer_core(l, 0);
    const float init[6] = {1.0f, -2.0f, 0.5f, 0.25f, 3.0f, 4.0f};
    memcpy(c, init, sizeof init);
    return l;
}

/* One forward/backward/step on rows {0, 0, 2} (row 0 twice) with gradient rows
 * g0, g1, g2: row 0 receives g0 + g1, row 2 receives g2, row 1 nothing. */
static void one_step(struct fpd_engine *e) {
    int64_t idx[3] = {0, 0, 2};
    float out[6], g[6] = {0.5f, -1.0f, 0.25f, 0.75f, 2.0f, -4.0f};
    struct fpd_bag_batch b = {.indices = idx, .n_indices = 3, .mode = FPD_BAG_MODE_NONE, .padding_idx = -1};
    struct fpd_error err;
    cr_assert(eq(int, fpd_engine_forward(e, &b, out, &err), 0), "%s", err.msg);
    cr_assert(eq(int, fpd_engine_backward(e, &b, g, &err), 0), "%s", err.msg);
    cr_assert(eq(int, fpd_engine_step(e, &err), 0), "%s", err.msg);
}

static struct fpd_engine *tiny_engine(struct fpd_layer *l, enum fpd_optimizer_kind kind) {
    struct fpd_engine_params ep = fpd_engine_default_params();
    ep.optimizer.kind = kind;
    ep.optimizer.learning_rate = 0.1;
    ep.optimizer.eps = 1e-8;
    struct fpd_engine *e = NULL;
    cr_assert(eq(int, fpd_engine_init(l, &ep, &e, NULL), 0));
    return e;
}

#define EXPECT(l, i, v) cr_assert(epsilon_eq(flt, fpd_layer_core(l, 0)[i], (float)(v), 1e-6f), "entry %d: %g vs %g", \
                                  (int)(i), (double)fpd_layer_core(l, 0)[i], (double)(v))

Test(engine, sgd_and_rowwise_adagrad_closed_forms) {
    struct fpd_layer *l = tiny_table();
    struct fpd_engine *e = tiny_engine(l, FPD_OPTIMIZER_KIND_SGD);
    one_step(e);
    /* row 0: g = (0.75, -0.25); row 2: g = (2, -4) */
    EXPECT(l, 0, 1.0 - 0.1 * 0.75);
    EXPECT(l, 1, -2.0 + 0.1 * 0.25);
    EXPECT(l, 2, 0.5);
    EXPECT(l, 3, 0.25);
    EXPECT(l, 4, 3.0 - 0.1 * 2.0);
    EXPECT(l, 5, 4.0 + 0.1 * 4.0);
    fpd_engine_free(e);
    fpd_layer_free(l);

    l = tiny_table();
    e = tiny_engine(l, FPD_OPTIMIZER_KIND_ROWWISE_ADAGRAD);
    one_step(e);
    /* FBGEMM: s = mean(g^2); x -= lr g / (sqrt(s) + eps) */
    double s0 = (0.75 * 0.75 + 0.25 * 0.25) / 2.0, s2 = (4.0 + 16.0) / 2.0;
    EXPECT(l, 0, 1.0 - 0.1 * 0.75 / (sqrt(s0) + 1e-8));
    EXPECT(l, 1, -2.0 + 0.1 * 0.25 / (sqrt(s0) + 1e-8));
    EXPECT(l, 2, 0.5);
    EXPECT(l, 4, 3.0 - 0.1 * 2.0 / (sqrt(s2) + 1e-8));
    EXPECT(l, 5, 4.0 + 0.1 * 4.0 / (sqrt(s2) + 1e-8));
    /* a second step: the state accumulates */
    float before0 = fpd_layer_core(l, 0)[0];
    one_step(e);
    double s0b = 2.0 * s0;
    EXPECT(l, 0, before0 - 0.1 * 0.75 / (sqrt(s0b) + 1e-8));
    fpd_engine_free(e);
    fpd_layer_free(l);
}

Test(engine, adam_and_lazy_adam_closed_forms) {
    /* Step 1 of Adam: m = 0.1 g, v = 0.001 g^2, bias-corrected m/bc1 = g,
     * v/bc2 = g^2: x -= lr g / (|g| + eps) = lr sign(g) (for g != 0). */
    for (int lazy = 0; lazy <= 1; lazy++) {
        struct fpd_layer *l = tiny_table();
        struct fpd_engine *e = tiny_engine(l, lazy ? FPD_OPTIMIZER_KIND_LAZY_ADAM : FPD_OPTIMIZER_KIND_ADAM);
        one_step(e);
        EXPECT(l, 0, 1.0 - 0.1 * 0.75 / (0.75 + 1e-8));
        EXPECT(l, 1, -2.0 + 0.1 * 0.25 / (0.25 + 1e-8));
        EXPECT(l, 2, 0.5);
        EXPECT(l, 4, 3.0 - 0.1);
        EXPECT(l, 5, 4.0 + 0.1);
        /* step 2 touches only row 1: lazy Adam leaves rows 0 and 2 alone, Adam
         * moves them by its momentum: m = 0.9 * 0.1 g, v = 0.999 * 0.001 g^2,
         * bc1 = 1 - 0.81 = 0.19, bc2 = 1 - 0.998001 */
        float r0 = fpd_layer_core(l, 0)[0], r1 = fpd_layer_core(l, 0)[2];
        int64_t idx[1] = {1};
        float out[2], g[2] = {1.0f, 1.0f};
        struct fpd_bag_batch b = {.indices = idx, .n_indices = 1, .mode = FPD_BAG_MODE_NONE, .padding_idx = -1};
        cr_assert(eq(int, fpd_engine_forward(e, &b, out, NULL), 0));
        cr_assert(eq(int, fpd_engine_backward(e, &b, g, NULL), 0));
        cr_assert(eq(int, fpd_engine_step(e, NULL), 0));
        const double bc1 = 1.0 - 0.81, bc2 = 1.0 - 0.998001;
        if (lazy) {
            EXPECT(l, 0, r0);
            /* row 1's first update, at the global step 2's bias correction */
            double m = 0.1, v = 0.001;
            EXPECT(l, 2, r1 - 0.1 * (m / bc1) / (sqrt(v / bc2) + 1e-8));
        } else {
            double m = 0.9 * 0.1 * 0.75, v = 0.999 * 0.001 * 0.75 * 0.75;
            EXPECT(l, 0, r0 - 0.1 * (m / bc1) / (sqrt(v / bc2) + 1e-8));
            double m1 = 0.1, v1 = 0.001;
            EXPECT(l, 2, r1 - 0.1 * (m1 / bc1) / (sqrt(v1 / bc2) + 1e-8));
        }
        fpd_engine_free(e);
        fpd_layer_free(l);
    }
}

Test(engine, lazy_adam_touches_only_the_rows_slices) {
    const int64_t n[3] = {4, 5, 6}, d[3] = {2, 2, 2};
    struct fpd_layer_shape s = test_make_shape(3, 120, n, d, 3, 2);
    struct fpd_layer *l = NULL, *before = NULL;
    cr_assert(eq(int, fpd_layer_init(&s, &l, NULL), 0));
    test_fill_random(l, 9, 0.5);
    cr_assert(eq(int, fpd_layer_clone(l, &before, NULL), 0));
    struct fpd_engine *e = NULL;
    cr_assert(eq(int, fpd_engine_init(l, NULL, &e, NULL), 0));
    int64_t idx[2] = {7, 93}; /* digits (0,1,1) and (3,0,3) */
    float out[16], g[16];
    for (int i = 0; i < 16; i++) g[i] = 1.0f + (float)i;
    struct fpd_bag_batch b = {.indices = idx, .n_indices = 2, .mode = FPD_BAG_MODE_NONE, .padding_idx = -1};
    cr_assert(eq(int, fpd_engine_forward(e, &b, out, NULL), 0));
    cr_assert(eq(int, fpd_engine_backward(e, &b, g, NULL), 0));
    cr_assert(eq(int, fpd_engine_step(e, NULL), 0));
    const int64_t digits[2][3] = {{0, 1, 1}, {3, 0, 3}};
    for (int32_t m = 0; m < 3; m++) {
        const int64_t slice = fpd_layer_shape_core_numel(&s, m) / (s.terms * n[m]);
        for (int64_t q = 0; q < s.terms * n[m]; q++) {
            bool used = (q % n[m]) == digits[0][m] || (q % n[m]) == digits[1][m];
            bool moved = memcmp(fpd_layer_core(l, m) + q * slice, fpd_layer_core(before, m) + q * slice,
                                (size_t)slice * sizeof(float)) != 0;
            cr_assert(eq(int, used, moved), "core %d slice %lld: used %d moved %d", (int)m, (long long)q, used, moved);
        }
    }
    fpd_engine_free(e);
    fpd_layer_free(before);
    fpd_layer_free(l);
}

Test(engine, bad_batches_are_refused) {
    struct fpd_layer *l = tiny_table();
    struct fpd_engine *e = NULL;
    struct fpd_error err;
    cr_assert(eq(int, fpd_engine_init(l, NULL, &e, &err), 0));
    int64_t idx[3] = {0, 3, 1}, off[2] = {0, 2}, bad_off[2] = {1, 2};
    float out[6], w[3] = {1, 1, 1};
    struct fpd_bag_batch b = {.indices = idx, .n_indices = 3, .mode = FPD_BAG_MODE_NONE, .padding_idx = -1};
    cr_assert(eq(int, fpd_engine_forward(e, &b, out, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(ne(ptr, strstr(err.msg, "indices[1] = 3 is outside [0, 3)"), NULL), "%s", err.msg);
    idx[1] = 2;
    b = (struct fpd_bag_batch){.indices = idx, .n_indices = 3, .offsets = bad_off, .n_bags = 2,
                               .mode = FPD_BAG_MODE_SUM, .padding_idx = -1};
    cr_assert(eq(int, fpd_engine_forward(e, &b, out, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(ne(ptr, strstr(err.msg, "offsets[0] = 1"), NULL), "%s", err.msg);
    b.offsets = off;
    b.mode = FPD_BAG_MODE_MEAN;
    b.per_sample_weights = w;
    cr_assert(eq(int, fpd_engine_forward(e, &b, out, &err), FPD_STATUS_INVALID_ARG));
    b = (struct fpd_bag_batch){.indices = idx, .n_indices = 3, .bag_size = 2, .mode = FPD_BAG_MODE_SUM, .padding_idx = -1};
    cr_assert(eq(int, fpd_engine_forward(e, &b, out, &err), FPD_STATUS_INVALID_ARG));
    /* a backward for a batch that was not the last forward's */
    struct fpd_bag_batch b1 = {.indices = idx, .n_indices = 3, .mode = FPD_BAG_MODE_NONE, .padding_idx = -1};
    struct fpd_bag_batch b2 = {.indices = idx, .n_indices = 2, .mode = FPD_BAG_MODE_NONE, .padding_idx = -1};
    cr_assert(eq(int, fpd_engine_forward(e, &b1, out, &err), 0), "%s", err.msg);
    cr_assert(eq(int, fpd_engine_backward(e, &b2, out, &err), FPD_STATUS_INVALID_ARG));
    /* an empty batch: nothing to do, no error */
    struct fpd_bag_batch b0 = {.indices = idx, .n_indices = 0, .offsets = off, .n_bags = 1,
                               .mode = FPD_BAG_MODE_SUM, .padding_idx = -1};
    out[0] = 9.0f;
    cr_assert(eq(int, fpd_engine_forward(e, &b0, out, &err), 0), "%s", err.msg);
    cr_assert(eq(flt, out[0], 0.0f));
    fpd_engine_free(e);
    fpd_layer_free(l);
}

/* The previous look-up (row by row, left to right, cblas/naive products with the
 * previous row's prefix kept) as it was before the engine, for the GloVe check. */
static void old_lookup_row(const struct fpd_layer *l, int64_t row, float *out, float *ws) {
    const struct fpd_layer_shape *s = fpd_layer_get_shape(l);
    int64_t dig[FPD_MAX_MODES], x = row, Dm = 1;
    for (int32_t m = s->k - 1; m >= 0; m--) {
        dig[m] = x % s->row_shape[m];
        x /= s->row_shape[m];
    }
    memset(out, 0, (size_t)s->dim * sizeof(float));
    for (int64_t t = 0; t < s->terms; t++) {
        const float *prev = NULL;
        Dm = 1;
        for (int32_t m = 0; m < s->k; m++) {
            const int64_t ra = s->ranks[m], w = s->col_shape[m] * s->ranks[m + 1];
            const float *g = fpd_layer_core_const(l, m) + (t * s->row_shape[m] + dig[m]) * ra * w;
            float *dst = (m == s->k - 1) ? ws + 4096 : ws + (m % 2) * 2048;
            if (m == 0) memcpy(dst, g, (size_t)w * sizeof(float));
            else fpd__cpu_sgemm(false, false, Dm, w, ra, 1.0f, prev, ra, g, w, 0.0f, dst, w);
            Dm *= s->col_shape[m];
            prev = dst;
        }
        for (int64_t j = 0; j < s->dim; j++) out[j] += prev[j];
    }
}

Test(engine, glove_sample_lookups_equal_the_previous_lookup) {
    struct fpd_safetensors *st = NULL;
    struct fpd_error err;
    cr_assert(eq(int, fpd_safetensors_open("samples/glove-10k.safetensors", &st, &err), 0), "%s", err.msg);
    const struct fpd_tensor_info *t = fpd_safetensors_find(st, "word_embeddings.weight");
    cr_assert(not(eq(ptr, (void *)t, NULL)));
    struct fpd_table_view w = {t->data, t->dtype, t->shape[0], t->shape[1]};
    const int64_t n[3] = {20, 25, 20}, d[3] = {5, 4, 5};
    struct fpd_layer_shape s = test_make_shape(3, w.rows, n, d, 16, 1);
    struct fpd_fit_params fp = fpd_fit_default_params();
    fp.als_sweeps = 0;
    fp.finetune_epochs = 0;
    struct fpd_layer *l = NULL;
    cr_assert(eq(int, fpd_fit(&w, &s, &fp, &l, NULL, &err), 0), "%s", err.msg);
    const int64_t B = 4096, D = w.dim;
    int64_t *idx = malloc((size_t)B * sizeof(int64_t));
    uint64_t seed = 3;
    for (int64_t i = 0; i < B; i++) idx[i] = (int64_t)(test_rand_u64(&seed) % (uint64_t)w.rows);
    float *out = malloc((size_t)(B * D) * sizeof(float)), *ws = malloc(8192 * sizeof(float)), row[100];
    struct fpd_engine *e = NULL;
    cr_assert(eq(int, fpd_engine_init(l, NULL, &e, &err), 0), "%s", err.msg);
    struct fpd_bag_batch b = {.indices = idx, .n_indices = B, .mode = FPD_BAG_MODE_NONE, .padding_idx = -1};
    cr_assert(eq(int, fpd_engine_forward(e, &b, out, &err), 0), "%s", err.msg);
    double worst = 0.0;
    for (int64_t i = 0; i < B; i++) {
        old_lookup_row(l, idx[i], row, ws);
        double num = 0.0, den = 0.0;
        for (int64_t j = 0; j < D; j++) {
            num += ((double)out[i * D + j] - row[j]) * ((double)out[i * D + j] - row[j]);
            den += (double)row[j] * row[j];
        }
        double r = sqrt(num / den);
        worst = r > worst ? r : worst;
    }
    /* the same products summed in another order (FMA, blocking): float rounding only */
    cr_assert(le(dbl, worst, 1e-6), "worst relative row difference %g", worst);
    fpd_engine_free(e);
    fpd_layer_free(l);
    fpd_safetensors_free(st);
    free(idx);
    free(out);
    free(ws);
}

/* Large enough batches that the engine splits them over its threads (at least
 * 2048 distinct rows a thread): forward bit for bit and gradients within
 * rounding of one thread's, for sum pooling with weights and repeats. */
Test(engine, threads_split_large_batches_with_the_same_results) {
    const int64_t n[3] = {30, 40, 25}, d[3] = {4, 2, 4};
    struct fpd_layer_shape s = test_make_shape(3, 30000, n, d, 6, 2);
    struct fpd_layer *l = NULL;
    cr_assert(eq(int, fpd_layer_init(&s, &l, NULL), 0));
    test_fill_random(l, 21, 0.5);
    const int64_t B = 20000, D = s.dim;
    int64_t *idx = malloc((size_t)B * sizeof(int64_t));
    float *wts = malloc((size_t)B * sizeof(float)), *g = malloc((size_t)(B / 2 * D) * sizeof(float));
    uint64_t seed = 8;
    for (int64_t i = 0; i < B; i++) {
        idx[i] = (int64_t)(test_rand_u64(&seed) % 30000);
        wts[i] = (float)test_rand_sym(&seed);
    }
    for (int64_t i = 0; i < B / 2 * D; i++) g[i] = (float)test_rand_sym(&seed);
    struct fpd_bag_batch b = {.indices = idx, .n_indices = B, .bag_size = 2, .per_sample_weights = wts,
                              .mode = FPD_BAG_MODE_SUM, .padding_idx = -1};
    float *out[2], *grads[2][3];
    for (int32_t threads = 1; threads <= 2; threads++) {
        struct fpd_engine *e = engine_on(l, threads);
        struct fpd_error err;
        out[threads - 1] = malloc((size_t)(B / 2 * D) * sizeof(float));
        cr_assert(eq(int, fpd_engine_forward(e, &b, out[threads - 1], &err), 0), "%s", err.msg);
        cr_assert(eq(int, fpd_engine_backward(e, &b, g, &err), 0), "%s", err.msg);
        for (int32_t m = 0; m < 3; m++) {
            const float *gm;
            fpd_engine_grad(e, m, &gm, NULL, NULL);
            size_t nel = (size_t)fpd_layer_shape_core_numel(&s, m);
            grads[threads - 1][m] = malloc(nel * sizeof(float));
            memcpy(grads[threads - 1][m], gm, nel * sizeof(float));
        }
        fpd_engine_free(e);
    }
    cr_assert(eq(int, memcmp(out[0], out[1], (size_t)(B / 2 * D) * sizeof(float)), 0));
    for (int32_t m = 0; m < 3; m++) {
        double num = 0.0, den = 0.0;
        for (int64_t x = 0; x < fpd_layer_shape_core_numel(&s, m); x++) {
            double dlt = (double)grads[0][m][x] - grads[1][m][x];
            num += dlt * dlt;
            den += (double)grads[0][m][x] * grads[0][m][x];
        }
        cr_assert(gt(dbl, den, 0.0));
        cr_assert(le(dbl, sqrt(num / den), 1e-5), "core %d", (int)m);
        free(grads[0][m]);
        free(grads[1][m]);
    }
    free(out[0]);
    free(out[1]);
    free(idx);
    free(wts);
    free(g);
    fpd_layer_free(l);
}

/* A 60 x 6 layer, k = 2 (8 x 8 rows, 3 x 2 columns), rank 2, random cores. */
static struct fpd_layer *small_layer(uint64_t seed, struct fpd_layer_shape *s) {
    *s = (struct fpd_layer_shape){.rows = 60, .dim = 6, .k = 2, .terms = 1, .row_shape = {8, 8}, .col_shape = {3, 2}};
    fpd_layer_shape_set_rank(s, 2);
    struct fpd_init_params ip = {FPD_INIT_KIND_NORMAL, 1.0, seed};
    struct fpd_layer *l = NULL;
    struct fpd_error err;
    cr_assert(eq(int, fpd_init(s, &ip, &l, &err), 0), "%s", err.msg);
    return l;
}

/* include_last_offset with a last offset below n_indices (PyTorch's 2-D input with
 * include_last_offset gives this): the entries past it are in no bag. They must not
 * be written anywhere (direct mode: one entry per bag) nor read in the backward. */
Test(engine, entries_past_the_last_offset_are_in_no_bag) {
    struct fpd_layer_shape s;
    struct fpd_layer *l = small_layer(5, &s);
    struct fpd_error err;
    int64_t idx[12] = {3, 7, 59, 0, 12, 3, 44, 45, 46, 47, 58, 1}, off[4] = {0, 1, 2, 3};
    float out[3 * 6 + 6], ref[12 * 6], g[3 * 6];
    for (int i = 0; i < 3 * 6 + 6; i++) out[i] = 7.0f; /* the last 6: a guard past the output */
    for (int i = 0; i < 3 * 6; i++) g[i] = (float)(i % 5) - 2.0f;
    struct fpd_bag_batch b = {.indices = idx, .n_indices = 12, .offsets = off, .n_bags = 4,
                              .include_last_offset = true, .mode = FPD_BAG_MODE_SUM, .padding_idx = -1};
    cr_assert(eq(i64, fpd_bag_batch_out_rows(&b), 3));
    struct fpd_engine *e = NULL;
    cr_assert(eq(int, fpd_engine_init(l, NULL, &e, &err), 0), "%s", err.msg);
    cr_assert(eq(int, fpd_engine_forward(e, &b, out, &err), 0), "%s", err.msg);
    cr_assert(eq(int, fpd_layer_lookup(l, idx, 12, ref, &err), 0), "%s", err.msg);
    for (int i = 0; i < 3 * 6; i++) cr_assert(epsilon_eq(flt, out[i], ref[i], 1e-6f), "out[%d]", i);
    for (int i = 3 * 6; i < 4 * 6; i++) cr_assert(eq(flt, out[i], 7.0f), "written past the output at %d", i);
    /* backward: the gradient of the first 3 entries only */
    cr_assert(eq(int, fpd_engine_backward(e, &b, g, &err), 0), "%s", err.msg);
    float *want[2] = {calloc((size_t)fpd_layer_shape_core_numel(&s, 0), sizeof(float)),
                      calloc((size_t)fpd_layer_shape_core_numel(&s, 1), sizeof(float))};
    cr_assert(eq(int, fpd_layer_backward(l, idx, 3, g, want, &err), 0), "%s", err.msg);
    for (int32_t m = 0; m < 2; m++) {
        const float *gm;
        fpd_engine_grad(e, m, &gm, NULL, NULL);
        for (int64_t x = 0; x < fpd_layer_shape_core_numel(&s, m); x++)
            cr_assert(epsilon_eq(flt, gm[x], want[m][x], 1e-5f), "core %d entry %lld", (int)m, (long long)x);
        free(want[m]);
    }
    fpd_engine_free(e);
    fpd_layer_free(l);
}

/* A batch without indices (PyTorch allows it: every bag empty) gives zero rows and
 * no gradient, on a fresh engine (no scratch yet) and after a real batch. */
Test(engine, a_batch_without_indices_gives_empty_bags) {
    struct fpd_layer_shape s;
    struct fpd_layer *l = small_layer(6, &s);
    struct fpd_error err;
    int64_t none[1] = {0}, off[3] = {0, 0, 0}, idx[2] = {5, 9};
    float out[3 * 6], g[3 * 6];
    for (int i = 0; i < 3 * 6; i++) out[i] = 7.0f, g[i] = 1.0f;
    struct fpd_bag_batch empty = {.indices = none, .n_indices = 0, .offsets = off, .n_bags = 3,
                                  .mode = FPD_BAG_MODE_MEAN, .padding_idx = -1};
    struct fpd_bag_batch two = {.indices = idx, .n_indices = 2, .offsets = off, .n_bags = 1,
                                .mode = FPD_BAG_MODE_SUM, .padding_idx = -1};
    for (int round = 0; round < 2; round++) { /* round 1: the engine has scratch from `two` */
        struct fpd_engine *e = NULL;
        cr_assert(eq(int, fpd_engine_init(l, NULL, &e, &err), 0), "%s", err.msg);
        if (round == 1) cr_assert(eq(int, fpd_engine_forward(e, &two, out, &err), 0), "%s", err.msg);
        cr_assert(eq(int, fpd_engine_forward(e, &empty, out, &err), 0), "%s", err.msg);
        for (int i = 0; i < 3 * 6; i++) cr_assert(eq(flt, out[i], 0.0f), "out[%d]", i);
        cr_assert(eq(int, fpd_engine_backward(e, &empty, g, &err), 0), "%s", err.msg);
        for (int32_t m = 0; m < 2; m++) {
            int64_t ns = -1;
            const float *gm;
            fpd_engine_grad(e, m, &gm, NULL, &ns);
            cr_assert(eq(i64, ns, 0));
        }
        fpd_engine_free(e);
    }
    fpd_layer_free(l);
}

/* scr[0..n) = a seeded random permutation of the ids 0..n-1 (Fisher-Yates). */
static void scramble_ids(int64_t *scr, int64_t n, uint64_t *seed) {
    for (int64_t u = 0; u < n; u++) scr[u] = u;
    for (int64_t u = n - 1; u > 0; u--) {
        int64_t j = (int64_t)(test_rand_u64(seed) % (uint64_t)(u + 1)), x = scr[u];
        scr[u] = scr[j];
        scr[j] = x;
    }
}

/* The last digit aligned across groups: 512 users in 8 taste groups (30 positives
 * among the group's 40 items) and, across the groups, 8 types (10 positives among the
 * type's 20 items; 8 users of each type in each group). Ordered on 8 x 64 rows, each
 * group fills a first-digit block, and slot j of the last digit must hold users of
 * one type in (nearly) every block: the users sharing a last-core slice are alike.
 * Placed by the clustering alone, a slot's 8 users would be of ~5 types. */
Test(engine, row_order_aligns_the_last_digit_across_groups) {
    const int64_t U = 512, G = 8, T = 8, NG = 40, NT = 20, NI = G * NG + T * NT;
    const int64_t n[2] = {8, 64}, d[2] = {4, 2};
    struct fpd_layer_shape s = test_make_shape(2, U, n, d, 4, 1);
    int64_t *users = malloc((size_t)(U * 40) * sizeof(int64_t)), *items = malloc((size_t)(U * 40) * sizeof(int64_t));
    int64_t *group = malloc((size_t)U * sizeof(int64_t)), *type = malloc((size_t)U * sizeof(int64_t));
    int64_t *scr = malloc((size_t)U * sizeof(int64_t)), *perm = malloc((size_t)U * sizeof(int64_t));
    uint64_t seed = 91;
    scramble_ids(scr, U, &seed);
    int64_t nnz = 0;
    for (int64_t u = 0; u < U; u++) {
        const int64_t id = scr[u];
        group[id] = u % G;
        type[id] = (u / G) % T;
        for (int64_t q = 0; q < 40; q++) {
            users[nnz] = id;
            items[nnz++] = q < 30 ? group[id] * NG + (int64_t)(test_rand_u64(&seed) % (uint64_t)NG)
                                  : G * NG + type[id] * NT + (int64_t)(test_rand_u64(&seed) % (uint64_t)NT);
        }
    }
    struct fpd_error err;
    cr_assert(eq(int, fpd_row_order_interactions(users, items, nnz, U, NI, &s, 16, 5, perm, &err), 0), "%s", err.msg);
    int64_t blk[8][8] = {{0}}, pure_g = 0, pure_t = 0;
    for (int64_t u = 0; u < U; u++) blk[perm[u] / 64][group[u]]++;
    for (int64_t b = 0; b < 8; b++) {
        int64_t best = 0;
        for (int64_t g = 0; g < G; g++) best = blk[b][g] > best ? blk[b][g] : best;
        pure_g += best;
    }
    cr_assert(ge(dbl, (double)pure_g / (double)U, 0.95), "group purity of the blocks %g", (double)pure_g / (double)U);
    for (int64_t j = 0; j < 64; j++) { /* the type purity of slot j over the 8 blocks */
        int64_t c[8] = {0}, best = 0;
        for (int64_t u = 0; u < U; u++)
            if (perm[u] % 64 == j) c[type[u]]++;
        for (int64_t t = 0; t < T; t++) best = c[t] > best ? c[t] : best;
        pure_t += best;
    }
    cr_assert(ge(dbl, (double)pure_t / (double)U, 0.9), "type purity of the slots %g", (double)pure_t / (double)U);
    free(users);
    free(items);
    free(group);
    free(type);
    free(scr);
    free(perm);
}

/* fpd_row_order_interactions on planted taste groups: 512 users in 8 groups, each
 * group interacting only with its own 40 of 320 items, ids scrambled. Ordered, the
 * users of one group must share their leading digit (8 x 64 rows: a group fills
 * one first-digit block); a random order would split every group over ~8 blocks. */
Test(engine, row_order_from_interactions_groups_users_by_taste) {
    const int64_t U = 512, NI = 320, G = 8, per = 30;
    const int64_t n[2] = {8, 64}, d[2] = {4, 2};
    struct fpd_layer_shape s = test_make_shape(2, U, n, d, 4, 1);
    int64_t *users = malloc((size_t)(U * per) * sizeof(int64_t)), *items = malloc((size_t)(U * per) * sizeof(int64_t));
    int64_t *group = malloc((size_t)U * sizeof(int64_t)), *scr = malloc((size_t)U * sizeof(int64_t));
    uint64_t seed = 77;
    scramble_ids(scr, U, &seed);
    int64_t nnz = 0;
    for (int64_t u = 0; u < U; u++) {
        const int64_t g = u % G, id = scr[u];
        group[id] = g;
        for (int64_t q = 0; q < per; q++) {
            users[nnz] = id;
            items[nnz++] = g * (NI / G) + (int64_t)(test_rand_u64(&seed) % (uint64_t)(NI / G));
        }
    }
    int64_t *perm = malloc((size_t)U * sizeof(int64_t));
    struct fpd_error err;
    cr_assert(eq(int, fpd_row_order_interactions(users, items, nnz, U, NI, &s, 16, 5, perm, &err), 0), "%s", err.msg);
    /* a permutation into [0, 512) */
    struct fpd_layer *l = NULL;
    cr_assert(eq(int, fpd_layer_init(&s, &l, NULL), 0));
    cr_assert(eq(int, fpd_layer_set_row_perm(l, perm, &err), 0), "%s", err.msg);
    /* purity: for each first-digit block, the share of its users from its most common group */
    int64_t cnt[8][8] = {{0}};
    for (int64_t u = 0; u < U; u++) cnt[perm[u] / 64][group[u]]++;
    int64_t pure = 0;
    for (int64_t b = 0; b < 8; b++) {
        int64_t best = 0;
        for (int64_t g = 0; g < G; g++) best = cnt[b][g] > best ? cnt[b][g] : best;
        pure += best;
    }
    cr_assert(ge(dbl, (double)pure / (double)U, 0.95), "purity %g", (double)pure / (double)U);
    /* errors: a pair out of range, a shape of other rows */
    items[3] = NI;
    cr_assert(eq(int, fpd_row_order_interactions(users, items, nnz, U, NI, &s, 16, 5, perm, &err),
                 FPD_STATUS_INVALID_ARG));
    cr_assert(ne(ptr, strstr(err.msg, "interaction 3"), NULL), "%s", err.msg);
    cr_assert(eq(int, fpd_row_order_interactions(users, items, nnz, U - 1, NI, &s, 16, 5, perm, &err),
                 FPD_STATUS_SHAPE));
    fpd_layer_free(l);
    free(users);
    free(items);
    free(group);
    free(scr);
    free(perm);
}
