/*
 * bench-gmf.c - GMF training throughput (samples/s) with dense tables against FPD
 * tables, the same trainer (fpd_gmf_train), optimizer, batch and data, side by
 * side in one run, epochs interleaved (dense, FPD, dense, FPD, ...) so that the
 * shared machine's load falls on both alike.
 *
 * Data: MovieLens-1M's shape (6,040 users, 3,706 items, 994,169 positives) with
 * synthetic positives (throughput does not depend on which pairs they are):
 * users uniform (~165 positives each, as ML-1M's mean) and items Zipf(1.05), as
 * item popularity is heavy-tailed. D = 64,
 * NCF's batch 256 with 4 negatives a positive; FPD tables of the heuristic's shape
 * for (k, r) (default k = 2, r = 24, as the accuracy issue measured).
 *
 * Usage: bench-gmf [epochs [k [r]]]   (default 2 2 24)
 */
#include "heuristics/fpd-heuristics.h"
#include "lib/fpd-impl.h"
#include "tests/bench/bench-util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct fpd_layer *make_layer(int64_t rows, int64_t dim, int32_t k, int64_t r, uint64_t seed) {
    struct fpd_error err;
    struct fpd_plan_params pp = fpd_plan_default_params();
    pp.rank = r;
    pp.terms = 1;
    pp.k = k;
    pp.min_ratio = 0.0;
    pp.min_rows = 1;
    struct fpd_plan plan;
    struct fpd_layer *l = NULL;
    struct fpd_init_params ip = {FPD_INIT_KIND_NORMAL, 0.01, seed};
    if (fpd_plan_table(rows, dim, FPD_DTYPE_F32, &pp, &plan, &err) || fpd_init(&plan.shape, &ip, &l, &err)) {
        fprintf(stderr, "bench-gmf: %s\n", err.msg);
        exit(1);
    }
    return l;
}

int main(int argc, char **argv) {
    const int64_t epochs = argc > 1 ? atoll(argv[1]) : 2, r = argc > 3 ? atoll(argv[3]) : 24;
    const int32_t k = argc > 2 ? atoi(argv[2]) : 2;
    const int64_t U = 6040, I = 3706, N = 994169, D = 64;
    uint64_t rng = 11;
    double *ci = bench_zipf_cdf(I, 1.05);
    int64_t *users = malloc((size_t)N * sizeof(int64_t)), *items = malloc((size_t)N * sizeof(int64_t));
    for (int64_t t = 0; t < N; t++) {
        users[t] = (int64_t)(fpd__rand_u64(&rng) % (uint64_t)U);
        items[t] = bench_zipf_draw(ci, I, &rng);
    }
    float *ud = malloc((size_t)(U * D) * sizeof(float)), *id = malloc((size_t)(I * D) * sizeof(float));
    for (int64_t e = 0; e < U * D; e++) ud[e] = (float)(0.01 * (fpd__rand_uniform(&rng) - 0.5));
    for (int64_t e = 0; e < I * D; e++) id[e] = (float)(0.01 * (fpd__rand_uniform(&rng) - 0.5));
    float wd[64], wf[64];
    for (int j = 0; j < 64; j++) wd[j] = wf[j] = 1.0f;
    struct fpd_layer *ul = make_layer(U, D, k, r, 1), *il = make_layer(I, D, k, r, 2);
    struct fpd_gmf dense = {.user = {.layer = NULL, .dense = ud, .rows = U, .dim = D}, .item = {.layer = NULL, .dense = id, .rows = I, .dim = D}, .weight = wd, .bias = 0.0f};
    struct fpd_gmf fpd = {.user = {.layer = ul, .dense = NULL, .rows = U, .dim = D}, .item = {.layer = il, .dense = NULL, .rows = I, .dim = D}, .weight = wf, .bias = 0.0f};
    struct fpd_gmf_train_params p = fpd_gmf_train_default_params();
    p.epochs = 1;
    struct fpd_error err;
    double td = 0.0, tf = 0.0;
    for (int64_t e = 0; e < epochs; e++) {
        p.seed = (uint64_t)e;
        double t0 = fpd__now();
        if (fpd_gmf_train(&dense, users, items, N, &p, NULL, &err)) goto fail;
        double t1 = fpd__now();
        if (fpd_gmf_train(&fpd, users, items, N, &p, NULL, &err)) goto fail;
        td += t1 - t0;
        tf += fpd__now() - t1;
    }
    const double samples = (double)epochs * (double)N * (1.0 + (double)p.negatives);
    printf("bench-gmf: MovieLens-1M shape (%lld users, %lld items, %lld positives, 4 negatives), D = %lld, batch %lld, "
           "%lld epochs\n",
           (long long)U, (long long)I, (long long)N, (long long)D, (long long)p.batch_size, (long long)epochs);
    const struct fpd_layer_shape *su = fpd_layer_get_shape(ul), *si = fpd_layer_get_shape(il);
    printf("FPD tables: k = %d, r = %lld, %lld + %lld parameters (dense %lld + %lld)\n", (int)k, (long long)r,
           (long long)fpd_layer_shape_params(su), (long long)fpd_layer_shape_params(si), (long long)(U * D),
           (long long)(I * D));
    printf("| tables | samples/s | ratio to dense |\n| --- | --- | --- |\n");
    printf("| dense | %.0f | 1.00 |\n| FPD | %.0f | %.2f |\n", samples / td, samples / tf, td / tf);
    fpd_layer_free(ul);
    fpd_layer_free(il);
    free(ci);
    free(users);
    free(items);
    free(ud);
    free(id);
    return 0;
fail:
    fprintf(stderr, "bench-gmf: %s\n", err.msg);
    return 1;
}
