/*
 * init.c - random FPD cores with an exact realized variance of the table they
 * stand for (see fpd_init in fpd.h).
 */
#include "fpd-impl.h"

#include <math.h>
#include <string.h>

enum fpd_status fpd_init(const struct fpd_layer_shape *shape, const struct fpd_init_params *params,
                         struct fpd_layer **out, struct fpd_error *err) {
    *out = NULL;
    if ((unsigned)params->kind >= FPD_INIT_KIND_COUNT)
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "unknown init kind %d", (int)params->kind);
    if (!(params->scale > 0.0) || !isfinite(params->scale))
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "init scale must be a positive number, got %g", params->scale);
    struct fpd_layer *l = NULL;
    enum fpd_status st = fpd_layer_init(shape, &l, err);
    if (st) return st;
    const struct fpd_layer_shape *s = fpd_layer_get_shape(l);
    const double target = params->kind == FPD_INIT_KIND_NORMAL ? params->scale * params->scale
                                                               : params->scale * params->scale / 3.0;
    double rprod = 1.0;
    for (int32_t m = 1; m < s->k; m++) rprod *= (double)s->ranks[m];
    const double c = pow(target / ((double)s->terms * rprod), 1.0 / (2.0 * s->k));
    uint64_t rng = params->seed ^ 0x5851f42d4c957f2dull;
    for (int32_t m = 0; m < s->k; m++) {
        float *core = fpd_layer_core(l, m);
        for (int64_t e = 0; e < fpd_layer_shape_core_numel(s, m); e++) core[e] = (float)(c * fpd__rand_normal(&rng));
    }
    /* Center core 0 over its (row digit, column digit) entries for each term and
     * right-rank index: then sum_{i_0, j_0} G_0[t, i_0, 0, j_0, :] = 0, so every
     * term sums to 0 over the padded table and its mean is exactly 0 there (and
     * within the padding's share of it over the first N rows). */
    {
        const int64_t n0 = s->row_shape[0], d0 = s->col_shape[0], r1 = s->ranks[1];
        float *g = fpd_layer_core(l, 0);
        for (int64_t t = 0; t < s->terms; t++)
            for (int64_t b = 0; b < r1; b++) {
                double mu = 0.0;
                for (int64_t i = 0; i < n0; i++)
                    for (int64_t j = 0; j < d0; j++) mu += g[((t * n0 + i) * d0 + j) * r1 + b];
                mu /= (double)(n0 * d0);
                for (int64_t i = 0; i < n0; i++)
                    for (int64_t j = 0; j < d0; j++) g[((t * n0 + i) * d0 + j) * r1 + b] -= (float)mu;
            }
    }
    /* realized mean and variance over all N x D entries, streaming */
    const int64_t block = 1024;
    float *buf = fpd_malloc((size_t)(block * s->dim) * sizeof(float));
    if (!buf) {
        fpd_layer_free(l);
        return fpd__err(err, FPD_STATUS_NOMEM, "out of memory for the init workspace");
    }
    double sum = 0.0, sumsq = 0.0;
    struct fpd__reconstructor rc = {0};
    for (int64_t r0 = 0; r0 < s->rows; r0 += block) {
        int64_t r1 = r0 + block < s->rows ? r0 + block : s->rows;
        if ((st = fpd__reconstruct_rows(&rc, l, r0, r1, buf, err))) break;
        for (int64_t e = 0; e < (r1 - r0) * s->dim; e++) {
            sum += buf[e];
            sumsq += (double)buf[e] * buf[e];
        }
    }
    fpd__reconstructor_free(&rc);
    fpd_free(buf);
    if (st) {
        fpd_layer_free(l);
        return st;
    }
    double n = (double)s->rows * (double)s->dim;
    double mean = sum / n, var = sumsq / n - mean * mean;
    if (!(var > 0.0)) {
        fpd_layer_free(l);
        return fpd__err(err, FPD_STATUS_NUMERIC, "drawn cores give a constant table (variance %g)", var);
    }
    const float f = (float)pow(target / var, 1.0 / (2.0 * s->k));
    for (int32_t m = 0; m < s->k; m++) {
        float *core = fpd_layer_core(l, m);
        for (int64_t e = 0; e < fpd_layer_shape_core_numel(s, m); e++) core[e] *= f;
    }
    *out = l;
    return FPD_STATUS_OK;
}
