/*
 * finetune.c - minibatch Adam (Kingma & Ba, ICLR 2015) on the FPD cores against
 * the dense table, loss = mean over rows of ||W_i - What_i||^2 (DESIGN.md section 3,
 * uniform row weights). Gradients come from fpd_layer_backward. The step size of
 * core m is learning_rate * RMS(core m at the start), since TT-SVD leaves the
 * scale of the table in the last core and unit-norm columns in the others.
 * The best epoch (by the loss over all rows) is kept, so finetuning never
 * returns a worse layer than it was given.
 */
#include "fpd-impl.h"

#include <math.h>
#include <string.h>

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static enum fpd_status full_loss(const struct fpd_layer *layer, const struct fpd_table_view *w, double *loss,
                                 struct fpd_error *err) {
    struct fpd_error_stats es;
    enum fpd_status st = fpd_layer_error(layer, w, &es, err);
    if (!st) *loss = es.sq_error / (double)w->rows;
    return st;
}

enum fpd_status fpd_finetune(struct fpd_layer *layer, const struct fpd_table_view *w,
                             const struct fpd_fit_params *params, double *loss_before, double *loss_after,
                             struct fpd_error *err) {
    const struct fpd_layer_shape *s = fpd_layer_get_shape(layer);
    const int32_t k = s->k;
    const int64_t n = w->rows, dim = w->dim;
    int64_t bsz = params->batch_rows > 0 ? params->batch_rows : 256;
    if (bsz > n) bsz = n;
    enum fpd_status st = FPD_STATUS_OK;
    if (w->rows != s->rows || w->dim != s->dim)
        return fpd__err(err, FPD_STATUS_SHAPE, "table [%lld, %lld] does not match the layer's [%lld, %lld]",
                        (long long)w->rows, (long long)w->dim, (long long)s->rows, (long long)s->dim);

    float *grad[FPD_MAX_MODES] = {0}, *mom[FPD_MAX_MODES] = {0}, *vel[FPD_MAX_MODES] = {0};
    float lr[FPD_MAX_MODES];
    int64_t *order = fpd_malloc((size_t)n * sizeof(int64_t));
    int64_t *idx = fpd_malloc((size_t)bsz * sizeof(int64_t));
    float *pred = fpd_malloc((size_t)(bsz * dim) * sizeof(float));
    float *target = fpd_malloc((size_t)dim * sizeof(float));
    struct fpd_layer *best = NULL;
    bool ok = order && idx && pred && target;
    for (int32_t m = 0; m < k && ok; m++) {
        size_t nel = (size_t)fpd_layer_shape_core_numel(s, m);
        grad[m] = fpd_calloc(nel, sizeof(float));
        mom[m] = fpd_calloc(nel, sizeof(float));
        vel[m] = fpd_calloc(nel, sizeof(float));
        ok = grad[m] && mom[m] && vel[m];
    }
    if (!ok) {
        st = fpd__err(err, FPD_STATUS_NOMEM, "out of memory for finetuning state");
        goto done;
    }
    for (int32_t m = 0; m < k; m++) {
        int64_t nel = fpd_layer_shape_core_numel(s, m);
        const float *c = fpd_layer_core(layer, m);
        double ss = 0.0;
        for (int64_t e = 0; e < nel; e++) ss += (double)c[e] * c[e];
        double rms = sqrt(ss / (double)nel);
        lr[m] = (float)(params->learning_rate * (rms > 0.0 ? rms : 1e-2));
    }
    double best_loss;
    if ((st = full_loss(layer, w, &best_loss, err))) goto done;
    if (loss_before) *loss_before = best_loss;
    if ((st = fpd_layer_clone(layer, &best, err))) goto done;

    for (int64_t i = 0; i < n; i++) order[i] = i;
    uint64_t rng = params->seed ^ 0x6a09e667f3bcc909ull;
    const float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-12f;
    int64_t step = 0;
    int64_t nbatches = (n + bsz - 1) / bsz;
    for (int64_t epoch = 0; epoch < params->finetune_epochs; epoch++) {
        for (int64_t i = n - 1; i > 0; i--) { /* Fisher-Yates */
            int64_t j = (int64_t)(fpd__rand_u64(&rng) % (uint64_t)(i + 1));
            int64_t t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        for (int64_t b0 = 0; b0 < n; b0 += bsz) {
            int64_t nb = b0 + bsz <= n ? bsz : n - b0;
            memcpy(idx, order + b0, (size_t)nb * sizeof(int64_t));
            qsort(idx, (size_t)nb, sizeof(int64_t), cmp_i64); /* rows sharing digits share work */
            if ((st = fpd_layer_lookup(layer, idx, nb, pred, err))) goto done;
            float scale = 2.0f / (float)nb;
            for (int64_t b = 0; b < nb; b++) {
                if ((st = fpd_table_view_rows(w, idx[b], idx[b] + 1, target, err))) goto done;
                float *p = pred + b * dim;
                for (int64_t j = 0; j < dim; j++) p[j] = scale * (p[j] - target[j]);
            }
            for (int32_t m = 0; m < k; m++)
                memset(grad[m], 0, (size_t)fpd_layer_shape_core_numel(s, m) * sizeof(float));
            if ((st = fpd_layer_backward(layer, idx, nb, pred, grad, err))) goto done;
            step++;
            float bc1 = 1.0f - powf(beta1, (float)step), bc2 = 1.0f - powf(beta2, (float)step);
            for (int32_t m = 0; m < k; m++) {
                float *c = fpd_layer_core(layer, m);
                int64_t nel = fpd_layer_shape_core_numel(s, m);
                for (int64_t e = 0; e < nel; e++) {
                    float gval = grad[m][e];
                    mom[m][e] = beta1 * mom[m][e] + (1.0f - beta1) * gval;
                    vel[m][e] = beta2 * vel[m][e] + (1.0f - beta2) * gval * gval;
                    c[e] -= lr[m] * (mom[m][e] / bc1) / (sqrtf(vel[m][e] / bc2) + eps);
                }
            }
            if (params->progress &&
                !params->progress("finetune", epoch * nbatches + b0 / bsz + 1, params->finetune_epochs * nbatches,
                                  params->progress_user_data)) {
                st = fpd__err(err, FPD_STATUS_CANCELLED, "finetuning cancelled");
                goto done;
            }
        }
        double loss;
        if ((st = full_loss(layer, w, &loss, err))) goto done;
        fpd__log(FPD_LOG_LEVEL_DEBUG, "finetune epoch %lld: loss %.6g", (long long)epoch + 1, loss);
        if (loss < best_loss) {
            best_loss = loss;
            for (int32_t m = 0; m < k; m++)
                memcpy(fpd_layer_core(best, m), fpd_layer_core(layer, m),
                       (size_t)fpd_layer_shape_core_numel(s, m) * sizeof(float));
        }
    }
    for (int32_t m = 0; m < k; m++)
        memcpy(fpd_layer_core(layer, m), fpd_layer_core(best, m),
               (size_t)fpd_layer_shape_core_numel(s, m) * sizeof(float));
    if (loss_after) *loss_after = best_loss;
done:
    for (int32_t m = 0; m < FPD_MAX_MODES; m++) {
        fpd_free(grad[m]);
        fpd_free(mom[m]);
        fpd_free(vel[m]);
    }
    fpd_free(order);
    fpd_free(idx);
    fpd_free(pred);
    fpd_free(target);
    fpd_layer_free(best);
    return st;
}
