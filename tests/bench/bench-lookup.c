/*
 * bench-lookup.c - FPD row look-up vs a dense table gather, side by side in one
 * run (the machines are shared and noisy: compare the ratio, not the seconds).
 * Table: a dense [N, D] F32 table and an FPD layer of the default plan for it
 * (random cores: look-up cost does not depend on the values). Batches of B
 * uniform random indices, unsorted and sorted (sorted rows share prefixes).
 * Usage: bench-lookup [N [D [B [R]]]]  (defaults 1000000 128 4096 32)
 */
#include "heuristics/fpd-heuristics.h"
#include "lib/fpd-impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int64_t n = argc > 1 ? atoll(argv[1]) : 1000000, d = argc > 2 ? atoll(argv[2]) : 128;
    int64_t b = argc > 3 ? atoll(argv[3]) : 4096, r = argc > 4 ? atoll(argv[4]) : 32;
    struct fpd_error err;
    struct fpd_plan_params pp = fpd_plan_default_params();
    pp.rank = r;
    struct fpd_plan plan;
    if (fpd_plan_table(n, d, FPD_DTYPE_F32, &pp, &plan, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    struct fpd_layer *layer = NULL;
    if (fpd_layer_init(&plan.shape, &layer, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    uint64_t seed = 1;
    for (int32_t m = 0; m < plan.shape.k; m++) {
        float *c = fpd_layer_core(layer, m);
        for (int64_t e = 0; e < fpd_layer_shape_core_numel(&plan.shape, m); e++)
            c[e] = (float)(fpd__rand_uniform(&seed) - 0.5);
    }
    float *dense = malloc((size_t)(n * d) * sizeof(float));
    for (int64_t e = 0; e < n * d; e++) dense[e] = (float)e;
    int64_t *idx = malloc((size_t)b * sizeof(int64_t)), *sorted = malloc((size_t)b * sizeof(int64_t));
    float *out = malloc((size_t)(b * d) * sizeof(float));
    const int reps = 20;
    double t_dense = 0, t_fpd = 0, t_sorted = 0, sink = 0;
    for (int rep = 0; rep < reps; rep++) {
        for (int64_t i = 0; i < b; i++) idx[i] = (int64_t)(fpd__rand_u64(&seed) % (uint64_t)n);
        memcpy(sorted, idx, (size_t)b * sizeof(int64_t));
        qsort(sorted, (size_t)b, sizeof(int64_t), cmp_i64);
        double t0 = fpd__now();
        for (int64_t i = 0; i < b; i++) memcpy(out + i * d, dense + idx[i] * d, (size_t)d * sizeof(float));
        t_dense += fpd__now() - t0;
        sink += out[0];
        t0 = fpd__now();
        fpd_layer_lookup(layer, idx, b, out, &err);
        t_fpd += fpd__now() - t0;
        sink += out[0];
        t0 = fpd__now();
        fpd_layer_lookup(layer, sorted, b, out, &err);
        t_sorted += fpd__now() - t0;
        sink += out[0];
    }
    double rows = (double)b * reps;
    char shp[64];
    int off = 0;
    for (int32_t m = 0; m < plan.shape.k; m++)
        off += snprintf(shp + off, sizeof shp - (size_t)off, "%s%lld", m ? "x" : "", (long long)plan.shape.row_shape[m]);
    printf("bench-lookup: N=%lld D=%lld batch=%lld r=%lld k=%d rows %s, FPD %.1f KiB vs dense %.1f MiB (%.0fx)\n",
           (long long)n, (long long)d, (long long)b, (long long)r, (int)plan.shape.k, shp,
           (double)plan.bytes_after / 1024.0, (double)plan.bytes_before / 1048576.0, plan.ratio);
    printf("  dense gather      %10.0f rows/s\n", rows / t_dense);
    printf("  FPD look-up       %10.0f rows/s  (%.1fx slower than dense)\n", rows / t_fpd, t_fpd / t_dense);
    printf("  FPD sorted batch  %10.0f rows/s  (%.1fx slower than dense)\n", rows / t_sorted, t_sorted / t_dense);
    if (sink == 12345.678) puts("");
    free(dense);
    free(idx);
    free(sorted);
    free(out);
    fpd_layer_free(layer);
    return 0;
}
