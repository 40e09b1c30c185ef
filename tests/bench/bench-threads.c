/*
 * bench-threads.c - the engine on 1 and 2 threads, same batch, the two engines
 * interleaved batch by batch (so the machine's load falls on both alike):
 * forward, and forward + backward + row-wise Adagrad step, rows/s and the ratio.
 * Table 8,388,608 x 128 (FPD only: no dense table is allocated), batch 65,536,
 * Zipf(1.05) ids in popularity order, bags of 1; (r, p) = (8,1), (32,1), (16,2).
 * Usage: bench-threads [reps]   (default 6)
 */
#include "heuristics/fpd-heuristics.h"
#include "lib/fpd-impl.h"
#include "tests/bench/bench-util.h"

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    const int64_t N = 8388608, D = 128, B = 65536;
    const int reps = argc > 1 ? atoi(argv[1]) : 6;
    const int64_t cfg[3][2] = {{8, 1}, {32, 1}, {16, 2}};
    struct fpd_error err;
    uint64_t seed = 1;
    double *cdf = bench_zipf_cdf(N, 1.05);
    int64_t *idx = malloc((size_t)B * sizeof(int64_t));
    float *out = malloc((size_t)(B * D) * sizeof(float));
    if (!cdf || !idx || !out) return 1;
    for (int64_t i = 0; i < B; i++) idx[i] = bench_zipf_draw(cdf, N, &seed);
    printf("bench-threads: %lld x %lld, batch %lld, Zipf(1.05), %d timed batches\n", (long long)N, (long long)D,
           (long long)B, reps);
    printf("| (r, p) | forward 1 thr | 2 thr | speed-up | train 1 thr | 2 thr | speed-up |\n"
           "| --- | --- | --- | --- | --- | --- | --- |\n");
    for (int c = 0; c < 3; c++) {
        struct fpd_plan_params pp = fpd_plan_default_params();
        pp.rank = cfg[c][0];
        pp.terms = cfg[c][1];
        pp.min_ratio = 0.0;
        struct fpd_plan plan;
        struct fpd_layer *l = NULL;
        if (fpd_plan_table(N, D, FPD_DTYPE_F32, &pp, &plan, &err) || fpd_layer_init(&plan.shape, &l, &err)) {
            fprintf(stderr, "bench-threads: %s\n", err.msg);
            return 1;
        }
        for (int32_t m = 0; m < plan.shape.k; m++) {
            float *core = fpd_layer_core(l, m);
            for (int64_t e = 0; e < fpd_layer_shape_core_numel(&plan.shape, m); e++)
                core[e] = (float)(fpd__rand_uniform(&seed) - 0.5) * 0.1f;
        }
        struct fpd_engine *e[2] = {NULL, NULL};
        for (int t = 0; t < 2; t++) {
            struct fpd_engine_params ep = fpd_engine_default_params();
            ep.threads = t + 1;
            ep.optimizer.kind = FPD_OPTIMIZER_KIND_ROWWISE_ADAGRAD;
            ep.optimizer.learning_rate = 0.01;
            if (fpd_engine_init(l, &ep, &e[t], &err)) {
                fprintf(stderr, "bench-threads: %s\n", err.msg);
                return 1;
            }
        }
        struct fpd_bag_batch bb = {.indices = idx, .n_indices = B, .bag_size = 1, .mode = FPD_BAG_MODE_SUM,
                                   .padding_idx = -1};
        double tf[2] = {0, 0}, tt[2] = {0, 0};
        for (int rep = -1; rep < reps; rep++) /* rep -1: warm-up */
            for (int t = 0; t < 2; t++) {
                double t0 = fpd__now();
                fpd_engine_forward(e[t], &bb, out, &err);
                double t1 = fpd__now();
                if (fpd_engine_forward(e[t], &bb, out, &err) || fpd_engine_backward(e[t], &bb, out, &err) ||
                    fpd_engine_step(e[t], &err)) {
                    fprintf(stderr, "bench-threads: %s\n", err.msg);
                    return 1;
                }
                double t2 = fpd__now();
                if (rep >= 0) {
                    tf[t] += t1 - t0;
                    tt[t] += t2 - t1;
                }
            }
        const double rows = (double)B * reps;
        printf("| (%lld, %lld) | %.2fM | %.2fM | %.2fx | %.2fM | %.2fM | %.2fx |\n", (long long)cfg[c][0],
               (long long)cfg[c][1], rows / tf[0] / 1e6, rows / tf[1] / 1e6, tf[0] / tf[1], rows / tt[0] / 1e6,
               rows / tt[1] / 1e6, tt[0] / tt[1]);
        fflush(stdout);
        fpd_engine_free(e[0]);
        fpd_engine_free(e[1]);
        fpd_layer_free(l);
    }
    free(cdf);
    free(idx);
    free(out);
    return 0;
}
