/*
 * bench-engine.c - the FPD engine against a dense EmbeddingBag doing the same
 * work, side by side in one run (these machines are shared and noisy: read the
 * ratios, not the seconds).
 *
 *   forward:  FPD fpd_engine_forward  vs  dense gather + sum pooling
 *   train:    FPD forward + backward + row-wise Adagrad step on the touched core
 *             slices  vs  dense gather, then de-duplicate the batch's rows (the
 *             same radix sort), sum each row's gradient, row-wise Adagrad on the
 *             touched rows (FBGEMM's exact row-wise Adagrad on both sides)
 *
 * Batch of B indices in bags of 1 (DLRM's pooling factor on Criteo), drawn
 * uniformly or Zipf(1.05) (id = popularity rank, as after ordering ids by
 * frequency; "zipf-shuffled": the same draws through a fixed random permutation
 * of the ids, as with arbitrary ids). The dense table is N x D F32 (default
 * 8,388,608 x 128, 4 GiB), written once before timing. FPD layers: random cores
 * of the heuristic's shape for (r, p) (look-up cost does not depend on values).
 * GFLOP/s counts the products the engine executed (fpd_engine_last_flops), next
 * to the one-thread peak measured in the same run (see peaks()).
 *
 * Usage: bench-engine [N [D [B [reps]]]]   (FPD_BENCH_QUICK=1: N = 1,048,576)
 */
#include "heuristics/fpd-heuristics.h"
#include "lib/cpu/kernels-cpu.h"
#include "lib/fpd-impl.h"
#include "tests/bench/bench-util.h"

#include <cblas.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int64_t g_n, g_d, g_b;

/* ------------------------------------------------------------ dense EmbeddingBag */

struct dense {
    float *w;      /* [N, D] */
    float *state;  /* [N] row-wise Adagrad */
    uint64_t *key, *key2;
    int64_t *pos, *pos2;
    float *grad;   /* [B, D] */
};

struct range_arg {
    struct dense *t;
    const int64_t *idx;
    float *out;
    int64_t lo, hi;
    const int64_t *seg; /* training: segment starts */
};

static void *gather_part(void *p) {
    struct range_arg *a = p;
    for (int64_t b = a->lo; b < a->hi; b++) memcpy(a->out + b * g_d, a->t->w + a->idx[b] * g_d, (size_t)g_d * sizeof(float));
    return NULL;
}

static void par(void *(*fn)(void *), struct range_arg *args, int threads) {
    pthread_t th[8];
    for (int i = 1; i < threads; i++) pthread_create(&th[i], NULL, fn, &args[i]);
    fn(&args[0]);
    for (int i = 1; i < threads; i++) pthread_join(th[i], NULL);
}

static void dense_forward(struct dense *t, const int64_t *idx, float *out, int threads) {
    struct range_arg a[8];
    for (int i = 0; i < threads; i++) a[i] = (struct range_arg){t, idx, out, i * g_b / threads, (i + 1) * g_b / threads, NULL};
    par(gather_part, a, threads);
}

static void *update_part(void *p) {
    struct range_arg *a = p;
    struct dense *t = a->t;
    const float lr = 0.01f, eps = 1e-8f;
    float *g = malloc((size_t)g_d * sizeof(float));
    for (int64_t s = a->lo; s < a->hi; s++) {
        int64_t q0 = a->seg[s], q1 = a->seg[s + 1];
        memset(g, 0, (size_t)g_d * sizeof(float));
        for (int64_t q = q0; q < q1; q++) {
            const float *src = a->out + t->pos[q] * g_d; /* grad_out rows */
            for (int64_t j = 0; j < g_d; j++) g[j] += src[j];
        }
        float ss = 0.0f;
        for (int64_t j = 0; j < g_d; j++) ss += g[j] * g[j];
        int64_t row = (int64_t)t->key[q0];
        t->state[row] += ss / (float)g_d;
        float mult = lr / (sqrtf(t->state[row]) + eps);
        float *w = t->w + row * g_d;
        for (int64_t j = 0; j < g_d; j++) w[j] -= mult * g[j];
    }
    free(g);
    return NULL;
}

/* forward, then backward of grad_out (= out) and a row-wise Adagrad step */
static void dense_train(struct dense *t, const int64_t *idx, float *out, int64_t *seg, int threads) {
    dense_forward(t, idx, out, threads);
    for (int64_t b = 0; b < g_b; b++) {
        t->key[b] = (uint64_t)idx[b];
        t->pos[b] = b;
    }
    fpd__cpu_radix_sort(t->key, t->pos, g_b, 33, t->key2, t->pos2); /* as the engine de-duplicates */
    int64_t ns = 0;
    for (int64_t q = 0; q < g_b; q++)
        if (q == 0 || t->key[q] != t->key[q - 1]) seg[ns++] = q;
    seg[ns] = g_b;
    struct range_arg a[8];
    for (int i = 0; i < threads; i++) a[i] = (struct range_arg){t, idx, out, i * ns / threads, (i + 1) * ns / threads, seg};
    par(update_part, a, threads);
}

/* ------------------------------------------------------------ index streams */

/* GFLOP/s of one thread on an in-cache product: cblas_sgemm (n = 1024) and the
 * engine's micro-kernel (n = 128, 64 times), the best of 3 each. OpenBLAS's own
 * kernel choice is printed: a build that does not know the processor falls back
 * to an old kernel (Debian 12's OpenBLAS 0.3.21 picks "Prescott", SSE3, on
 * recent Xeons), and then the micro-kernel is the better measure of the limit. */
static void peaks(double *blas, double *micro) {
    const int n = 1024, m = 128;
    float *a = malloc((size_t)n * n * 4), *b = malloc((size_t)n * n * 4), *c = malloc((size_t)n * n * 4);
    for (int i = 0; i < n * n; i++) a[i] = b[i] = 1e-3f * (float)(i % 97);
    openblas_set_num_threads(1);
    for (int r = 0; r < 4; r++) {
        double t0 = fpd__now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double g = 2.0 * n * (double)n * n / (fpd__now() - t0) / 1e9;
        if (r > 0 && g > *blas) *blas = g;
        t0 = fpd__now();
        for (int q = 0; q < 64; q++) fpd__cpu_gemm_small(m, m, m, a, m, 1, b, m, c, m, false);
        g = 64.0 * 2.0 * m * (double)m * m / (fpd__now() - t0) / 1e9;
        if (r > 0 && g > *micro) *micro = g;
    }
    free(a);
    free(b);
    free(c);
}

int main(int argc, char **argv) {
    const bool quick = getenv("FPD_BENCH_QUICK") != NULL;
    g_n = argc > 1 ? atoll(argv[1]) : quick ? 1048576 : 8388608;
    g_d = argc > 2 ? atoll(argv[2]) : 128;
    g_b = argc > 3 ? atoll(argv[3]) : 65536;
    const int reps = argc > 4 ? atoi(argv[4]) : 5, nbatch = 4;
    struct fpd_error err;
    printf("bench-engine: dense table %lld x %lld F32 (%.2f GiB), batch %lld, bags of 1, %d timed batches\n",
           (long long)g_n, (long long)g_d, (double)g_n * (double)g_d * 4.0 / 1073741824.0, (long long)g_b, reps);
    double blas = 0.0, micro = 0.0;
    peaks(&blas, &micro);
    double peak = blas > micro ? blas : micro;
    printf("one thread: cblas_sgemm 1024^3 %.0f GFLOP/s (OpenBLAS kernel %s), engine micro-kernel 128^3 %.0f GFLOP/s; "
           "%% peak below is of the larger, times the threads\n",
           blas, openblas_get_corename(), micro);
    struct dense t = {0};
    t.w = malloc((size_t)(g_n * g_d) * sizeof(float));
    t.state = calloc((size_t)g_n, sizeof(float));
    t.key = malloc((size_t)g_b * 8);
    t.key2 = malloc((size_t)g_b * 8);
    t.pos = malloc((size_t)g_b * 8);
    t.pos2 = malloc((size_t)g_b * 8);
    if (!t.w || !t.state) {
        fprintf(stderr, "bench-engine: out of memory for the dense table\n");
        return 1;
    }
    for (int64_t e = 0; e < g_n * g_d; e++) t.w[e] = (float)(e % 1000) * 1e-3f;
    int64_t *seg = malloc((size_t)(g_b + 1) * 8);
    float *out = malloc((size_t)(g_b * g_d) * sizeof(float));
    /* index streams */
    const char *dist_name[3] = {"uniform", "zipf", "zipf-shuffled"};
    int64_t *idx[3];
    uint64_t rng = 42;
    double *cdf = bench_zipf_cdf(g_n, 1.05);
    int64_t *shuf = malloc((size_t)g_n * 8);
    for (int64_t i = 0; i < g_n; i++) shuf[i] = i;
    for (int64_t i = g_n - 1; i > 0; i--) {
        int64_t j = (int64_t)(fpd__rand_u64(&rng) % (uint64_t)(i + 1)), x = shuf[i];
        shuf[i] = shuf[j];
        shuf[j] = x;
    }
    for (int ds = 0; ds < 3; ds++) {
        idx[ds] = malloc((size_t)(nbatch * g_b) * 8);
        for (int64_t i = 0; i < nbatch * g_b; i++) {
            if (ds == 0) idx[ds][i] = (int64_t)(fpd__rand_u64(&rng) % (uint64_t)g_n);
            else if (ds == 1) idx[ds][i] = bench_zipf_draw(cdf, g_n, &rng);
            else idx[ds][i] = shuf[bench_zipf_draw(cdf, g_n, &rng)];
        }
    }
    free(cdf);
    free(shuf);
    int64_t distinct[3];
    for (int ds = 0; ds < 3; ds++) {
        dense_train(&t, idx[ds], out, seg, 1);
        int64_t ns = 0;
        for (int64_t q = 0; q <= g_b && seg[q] != g_b; q++) ns++;
        distinct[ds] = ns;
    }
    printf("distinct rows per batch: uniform %lld, zipf %lld, zipf-shuffled %lld\n\n", (long long)distinct[0],
           (long long)distinct[1], (long long)distinct[2]);
    const int64_t cfg[][2] = {{8, 1}, {8, 2}, {16, 2}, {8, 4}, {32, 1}, {0, 0}};
    printf("| (r, p) | k | ratio | dist | thr | dense fwd rows/s | FPD fwd rows/s | fwd x | flops/row | GFLOP/s (%% peak) "
           "| dense train rows/s | FPD train rows/s | train x |\n");
    printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
        struct fpd_plan_params pp = fpd_plan_default_params();
        pp.rank = cfg[c][0];
        pp.terms = cfg[c][1];
        pp.min_ratio = 0.0;
        struct fpd_plan plan;
        if (fpd_plan_table(g_n, g_d, FPD_DTYPE_F32, &pp, &plan, &err)) {
            fprintf(stderr, "bench-engine: %s\n", err.msg);
            return 1;
        }
        struct fpd_layer *layer = NULL;
        if (fpd_layer_init(&plan.shape, &layer, &err)) {
            fprintf(stderr, "bench-engine: %s\n", err.msg);
            return 1;
        }
        uint64_t seed = 7;
        for (int32_t m = 0; m < plan.shape.k; m++) {
            float *core = fpd_layer_core(layer, m);
            for (int64_t e = 0; e < fpd_layer_shape_core_numel(&plan.shape, m); e++)
                core[e] = (float)(fpd__rand_uniform(&seed) - 0.5) * 0.1f;
        }
        for (int threads = 1; threads <= 2; threads++) {
            struct fpd_engine_params ep = fpd_engine_default_params();
            ep.threads = threads;
            ep.optimizer.kind = FPD_OPTIMIZER_KIND_ROWWISE_ADAGRAD;
            ep.optimizer.learning_rate = 0.01;
            struct fpd_engine *eng = NULL;
            if (fpd_engine_init(layer, &ep, &eng, &err)) {
                fprintf(stderr, "bench-engine: %s\n", err.msg);
                return 1;
            }
            for (int ds = 0; ds < 3; ds++) {
                double td = 0, tf = 0, tdt = 0, tft = 0, flops = 0;
                for (int r = -1; r < reps; r++) { /* r = -1: warm-up */
                    const int64_t *ix = idx[ds] + (int64_t)((r + 1) % nbatch) * g_b;
                    struct fpd_bag_batch bb = {.indices = ix, .n_indices = g_b, .bag_size = 1,
                                               .mode = FPD_BAG_MODE_SUM, .padding_idx = -1};
                    double t0 = fpd__now();
                    dense_forward(&t, ix, out, threads);
                    double t1 = fpd__now();
                    fpd_engine_forward(eng, &bb, out, &err);
                    double t2 = fpd__now();
                    dense_train(&t, ix, out, seg, threads);
                    double t3 = fpd__now();
                    fpd_engine_forward(eng, &bb, out, &err);
                    double fl = fpd_engine_last_flops(eng);
                    if (fpd_engine_backward(eng, &bb, out, &err) || fpd_engine_step(eng, &err)) {
                        fprintf(stderr, "bench-engine: %s\n", err.msg);
                        return 1;
                    }
                    double t4 = fpd__now();
                    if (r >= 0) {
                        td += t1 - t0;
                        tf += t2 - t1;
                        tdt += t3 - t2;
                        tft += t4 - t3;
                        flops += fl;
                    }
                }
                double rows = (double)g_b * reps;
                char rp[32];
                if (cfg[c][0]) snprintf(rp, sizeof rp, "(%lld, %lld)", (long long)cfg[c][0], (long long)cfg[c][1]);
                else snprintf(rp, sizeof rp, "default (%lld, %lld)", (long long)plan.shape.ranks[1],
                              (long long)plan.shape.terms);
                printf("| %s | %d | %.0fx | %s | %d | %.2fM | %.2fM | %.2f | %.0f | %.1f (%.0f%%) | %.2fM | %.2fM | %.2f |\n",
                       rp, (int)plan.shape.k, plan.ratio, dist_name[ds], threads, rows / td / 1e6, rows / tf / 1e6,
                       td / tf, flops / rows, flops / tf / 1e9, 100.0 * flops / tf / 1e9 / (peak * threads),
                       rows / tdt / 1e6, rows / tft / 1e6, tdt / tft);
                fflush(stdout);
            }
            fpd_engine_free(eng);
        }
        fpd_layer_free(layer);
    }
    return 0;
}
