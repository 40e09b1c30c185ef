/*
 * bench-fit.c - ratio vs relative error on the GloVe table (20,000 x 100; row modes
 * 25x28x29, column modes 4x5x5): plain TT-SVD at ranks 8..48, our best fit
 * (learned row permutation + 4 ALS sweeps + 1 Adam epoch, the permutation's bytes
 * counted) at ranks 8..32, the plain error interpolated (in log bytes) at the best
 * fit's size, and the row-wise int8/int4 baselines. Skips without the data.
 * Usage: bench-fit [GLOVE.npy]
 */
#include "formats/fpd-formats.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct fpd_layer_shape glove_shape(int64_t r) {
    struct fpd_layer_shape s;
    memset(&s, 0, sizeof s);
    s.k = 3;
    s.rows = 20000;
    s.dim = 100;
    s.terms = 1;
    const int64_t n[3] = {25, 28, 29}, d[3] = {4, 5, 5};
    for (int m = 0; m < 3; m++) {
        s.row_shape[m] = n[m];
        s.col_shape[m] = d[m];
    }
    fpd_layer_shape_set_rank(&s, r);
    return s;
}

int main(int argc, char **argv) {
    char path[4096];
    const char *dir = getenv("FPD_DATA_DIR");
    snprintf(path, sizeof path, "%s", argc > 1 ? argv[1] : "");
    if (!path[0]) snprintf(path, sizeof path, "%s/glove/glove100d_top20k.npy", dir && *dir ? dir : "../shared/data");
    struct fpd_error err;
    struct fpd_npy *npy = NULL;
    if (fpd_npy_open(path, &npy, &err)) {
        printf("bench-fit: skipped (%s)\n", err.msg);
        return 0;
    }
    const struct fpd_tensor_info *t = fpd_npy_tensor(npy);
    struct fpd_table_view v = {t->data, t->dtype, t->shape[0], t->shape[1]};
    const double dense = 20000.0 * 100 * 4;
    const int64_t plain_r[] = {8, 12, 16, 20, 24, 28, 32, 40, 48}, best_r[] = {8, 12, 16, 20, 24, 32};
    double pb[9], pe[9];
    printf("bench-fit: GloVe 20000x100, rows 25x28x29, cols 4x5x5, F32 cores\n");
    printf("  plain TT-SVD:   r  bytes     ratio   rel.err\n");
    for (int q = 0; q < 9; q++) {
        struct fpd_layer_shape s = glove_shape(plain_r[q]);
        struct fpd_layer *l = NULL;
        struct fpd_error_stats es;
        if (fpd_fit_ttsvd(&v, &s, NULL, &l, &err) || fpd_layer_error(l, &v, &es, &err)) {
            fprintf(stderr, "bench-fit: %s\n", err.msg);
            return 1;
        }
        pb[q] = 4.0 * (double)fpd_layer_shape_params(fpd_layer_get_shape(l));
        pe[q] = es.rel_error;
        printf("                %3lld  %8.0f %6.1fx  %.4f\n", (long long)plain_r[q], pb[q], dense / pb[q], pe[q]);
        fpd_layer_free(l);
    }
    printf("  best fit (--cluster-rows, 4 ALS sweeps, 1 epoch; row_perm bytes counted):\n");
    printf("                  r  bytes     ratio   rel.err  plain@same bytes  change   fit s\n");
    struct fpd_quality qr = {0};
    for (int q = 0; q < 6; q++) {
        struct fpd_layer_shape s = glove_shape(best_r[q]);
        struct fpd_fit_params fp = fpd_fit_default_params();
        fp.cluster_rows = true;
        fp.als_sweeps = 4;
        fp.finetune_epochs = 1;
        struct fpd_layer *l = NULL;
        struct fpd_fit_report rep;
        if (fpd_fit(&v, &s, &fp, &l, &rep, &err)) {
            fprintf(stderr, "bench-fit: %s\n", err.msg);
            return 1;
        }
        double bytes = 4.0 * (double)fpd_layer_shape_params(fpd_layer_get_shape(l)) + 4.0 * 20000;
        /* plain error at the same bytes, linear in log(bytes) between measured ranks */
        double ref = NAN;
        for (int z = 0; z + 1 < 9; z++)
            if (pb[z] <= bytes && bytes <= pb[z + 1]) {
                double f = (log(bytes) - log(pb[z])) / (log(pb[z + 1]) - log(pb[z]));
                ref = pe[z] + f * (pe[z + 1] - pe[z]);
            }
        printf("                %3lld  %8.0f %6.1fx  %.4f   %.4f           %+5.1f%%  %5.2f\n", (long long)best_r[q], bytes,
               dense / bytes, rep.rel_error_final, ref, 100.0 * (rep.rel_error_final / ref - 1.0),
               rep.fit_seconds + rep.finetune_seconds);
        if (q == 0) fpd_layer_quality(l, &v, NULL, 0, 0, &qr, &err);
        fpd_layer_free(l);
    }
    printf("  int8 row-wise: %.1fx rel.err %.4f;  int4 row-wise: %.1fx rel.err %.4f\n", dense / (double)qr.int8_bytes,
           qr.int8_rel_error, dense / (double)qr.int4_bytes, qr.int4_rel_error);
    fpd_npy_free(npy);
    return 0;
}
