/*
 * finetune.c - minibatch Adam (Kingma & Ba, ICLR 2015) on the FPD cores against
 * the dense table, loss = sum_i w_i ||W_i - What_i||^2 / sum_i w_i (DESIGN.md section 3,
 * row weights optional), through the engine (forward, backward, Adam step). The step size of
 * core m is learning_rate * RMS(core m at the start), since TT-SVD leaves the
 * scale of the table in the last core and unit-norm columns in the others.
 * The best epoch (by the loss over all rows) is kept, so finetuning never
 * returns a worse layer than it was given.
 */
#include "fpd-impl.h"

#include <math.h>
#include <string.h>

/* sum_i w_i ||W_i - What_i||^2 / sum_i w_i (w_i = 1 without weights), streaming. */
static enum fpd_status full_loss(const struct fpd_layer *layer, const struct fpd_table_view *w,
                                 const double *weights, double *loss, struct fpd_error *err) {
    const int64_t block = 1024, dim = w->dim;
    float *a = fpd_malloc((size_t)(block * dim) * sizeof(float)), *b = fpd_malloc((size_t)(block * dim) * sizeof(float));
    enum fpd_status st = FPD_STATUS_OK;
    struct fpd__reconstructor rc = {0};
    double num = 0.0, den = 0.0;
    if (!a || !b) {
        st = fpd__err(err, FPD_STATUS_NOMEM, "out of memory for the loss workspace");
        goto done;
    }
    for (int64_t r0 = 0; r0 < w->rows; r0 += block) {
        int64_t r1 = r0 + block < w->rows ? r0 + block : w->rows;
        if ((st = fpd_table_view_rows(w, r0, r1, a, err))) goto done;
        if ((st = fpd__reconstruct_rows(&rc, layer, r0, r1, b, err))) goto done;
        for (int64_t i = 0; i < r1 - r0; i++) {
            double e = 0.0, wi = weights ? weights[r0 + i] : 1.0;
            for (int64_t j = 0; j < dim; j++) {
                double d = (double)a[i * dim + j] - (double)b[i * dim + j];
                e += d * d;
            }
            num += wi * e;
            den += wi;
        }
    }
    *loss = den > 0.0 ? num / den : 0.0;
done:
    fpd__reconstructor_free(&rc);
    fpd_free(a);
    fpd_free(b);
    return st;
}

/* Index of the first cdf[i] > u (cdf increasing, cdf[n-1] = total). */
static int64_t draw_row(const double *cdf, int64_t n, double u) {
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (cdf[mid] > u) hi = mid;
        else lo = mid + 1;
    }
    return lo;
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
    if (fpd_layer_get_free_stored(layer, NULL))
        return fpd__err(err, FPD_STATUS_INVALID_ARG,
                        "finetuning needs E of the free coordinates in F32; the layer holds it as stored rows "
                        "(fpd_layer_expand_free; Python: Layer.expand_free())");

    int64_t *order = fpd_malloc((size_t)n * sizeof(int64_t));
    float *pred = fpd_malloc((size_t)(bsz * dim) * sizeof(float));
    float *target = fpd_malloc((size_t)dim * sizeof(float));
    struct fpd_layer *best = NULL;
    struct fpd_engine *eng = NULL;
    const double *wts = params->row_weights;
    double *cdf = NULL;
    bool ok = order && pred && target;
    if (wts && ok) {
        cdf = fpd_malloc((size_t)n * sizeof(double));
        ok = cdf != NULL;
        double acc = 0.0;
        for (int64_t i = 0; ok && i < n; i++) {
            if (!(wts[i] >= 0.0) || !isfinite(wts[i])) {
                st = fpd__err(err, FPD_STATUS_INVALID_ARG, "row weight %lld is %g; weights must be finite and >= 0",
                              (long long)i, wts[i]);
                goto done;
            }
            acc += wts[i];
            cdf[i] = acc;
        }
        if (ok && !(acc > 0.0)) {
            st = fpd__err(err, FPD_STATUS_INVALID_ARG, "all %lld row weights are zero", (long long)n);
            goto done;
        }
    }
    if (!ok) {
        st = fpd__err(err, FPD_STATUS_NOMEM, "out of memory for finetuning state");
        goto done;
    }
    /* Adam on every core entry (the gradient is dense over a batch's slices and
     * the moments of all entries decay, as torch.optim.Adam), step relative to
     * each core's RMS */
    struct fpd_engine_params ep = fpd_engine_default_params();
    ep.optimizer.kind = FPD_OPTIMIZER_KIND_ADAM;
    ep.optimizer.learning_rate = params->learning_rate;
    ep.optimizer.eps = 1e-12;
    ep.backend = params->backend; /* NULL: the CPU */
    for (int32_t m = 0; m < k; m++) {
        int64_t nel = fpd_layer_shape_core_numel(s, m);
        const float *c = fpd_layer_core(layer, m);
        double ss = 0.0;
        for (int64_t e = 0; e < nel; e++) ss += (double)c[e] * c[e];
        double rms = sqrt(ss / (double)nel);
        ep.optimizer.lr_scale[m] = rms > 0.0 ? rms : 1e-2;
    }
    const int64_t fc = fpd_layer_get_free_coords(layer), ne = fc * s->rows, np = fc * dim;
    if (fc > 0) { /* free coordinates: a step relative to their RMS too */
        double ss = 0.0;
        for (int64_t e = 0; e < ne; e++) ss += (double)fpd_layer_get_free_e(layer)[e] * fpd_layer_get_free_e(layer)[e];
        for (int64_t e = 0; e < np; e++) ss += (double)fpd_layer_get_free_p(layer)[e] * fpd_layer_get_free_p(layer)[e];
        double rms = sqrt(ss / (double)(ne + np));
        ep.optimizer.free_lr_scale = rms > 0.0 ? rms : 1e-2;
    }
    if ((st = fpd_engine_init(layer, &ep, &eng, err))) goto done;
    double best_loss;
    if ((st = full_loss(layer, w, wts, &best_loss, err))) goto done;
    if (loss_before) *loss_before = best_loss;
    if ((st = fpd_layer_clone(layer, &best, err))) goto done;

    for (int64_t i = 0; i < n; i++) order[i] = i;
    uint64_t rng = params->seed ^ 0x6a09e667f3bcc909ull;
    int64_t nbatches = (n + bsz - 1) / bsz;
    for (int64_t epoch = 0; epoch < params->finetune_epochs; epoch++) {
        if (cdf) { /* n rows drawn with probability w_i / sum w */
            for (int64_t i = 0; i < n; i++) order[i] = draw_row(cdf, n, fpd__rand_uniform(&rng) * cdf[n - 1]);
        } else {
            for (int64_t i = n - 1; i > 0; i--) { /* Fisher-Yates */
                int64_t j = (int64_t)(fpd__rand_u64(&rng) % (uint64_t)(i + 1));
                int64_t t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
        }
        for (int64_t b0 = 0; b0 < n; b0 += bsz) {
            int64_t nb = b0 + bsz <= n ? bsz : n - b0;
            struct fpd_bag_batch bb = {.indices = order + b0, .n_indices = nb, .mode = FPD_BAG_MODE_NONE,
                                       .padding_idx = -1};
            if ((st = fpd_engine_forward(eng, &bb, pred, err))) goto done;
            float scale = 2.0f / (float)nb;
            for (int64_t b = 0; b < nb; b++) {
                if ((st = fpd_table_view_rows(w, order[b0 + b], order[b0 + b] + 1, target, err))) goto done;
                float *p = pred + b * dim;
                for (int64_t j = 0; j < dim; j++) p[j] = scale * (p[j] - target[j]);
            }
            if ((st = fpd_engine_backward(eng, &bb, pred, err)) || (st = fpd_engine_step(eng, err))) goto done;
            if (params->progress &&
                !params->progress("finetune", epoch * nbatches + b0 / bsz + 1, params->finetune_epochs * nbatches,
                                  params->progress_user_data)) {
                st = fpd__err(err, FPD_STATUS_CANCELLED, "finetuning cancelled");
                goto done;
            }
        }
        double loss;
        if ((st = full_loss(layer, w, wts, &loss, err))) goto done;
        fpd__log(FPD_LOG_LEVEL_DEBUG, "finetune epoch %lld: loss %.6g", (long long)epoch + 1, loss);
        if (loss < best_loss) {
            best_loss = loss;
            for (int32_t m = 0; m < k; m++)
                memcpy(fpd_layer_core(best, m), fpd_layer_core(layer, m),
                       (size_t)fpd_layer_shape_core_numel(s, m) * sizeof(float));
            if (fc > 0) {
                memcpy(fpd_layer_get_free_e(best), fpd_layer_get_free_e(layer), (size_t)ne * sizeof(float));
                memcpy(fpd_layer_get_free_p(best), fpd_layer_get_free_p(layer), (size_t)np * sizeof(float));
            }
        }
    }
    if (fc > 0) {
        memcpy(fpd_layer_get_free_e(layer), fpd_layer_get_free_e(best), (size_t)ne * sizeof(float));
        memcpy(fpd_layer_get_free_p(layer), fpd_layer_get_free_p(best), (size_t)np * sizeof(float));
    }
    for (int32_t m = 0; m < k; m++)
        memcpy(fpd_layer_core(layer, m), fpd_layer_core(best, m),
               (size_t)fpd_layer_shape_core_numel(s, m) * sizeof(float));
    if (loss_after) *loss_after = best_loss;
done:
    fpd_engine_free(eng);
    fpd_free(order);
    fpd_free(cdf);
    fpd_free(pred);
    fpd_free(target);
    fpd_layer_free(best);
    return st;
}
