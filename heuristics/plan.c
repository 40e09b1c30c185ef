/*
 * plan.c - plan the FPD compression of one table: the candidate that the (r, p)
 * heuristic picks (suggest.c: shapes, (r, p), size, predicted error) and whether
 * the table qualifies (fpd_plan_default_params, fpd_plan_table; contract in
 * fpd-heuristics.h, where the heuristic is written down).
 *
 * Any of k, r, p given in the params restricts the candidates to it (a rank given
 * without terms means p = 1, as fpd-compress --rank always meant). Each inner rank
 * is capped by the TT-SVD bound (fpd_layer_shape_set_rank).
 *
 * The table stays dense (compress = false, with a reason) when, checked in this
 * order: its dtype is not a float dtype, N < min_rows, no candidate is predicted
 * to reach max_error, or bytes_before / bytes_after < min_ratio. A table with
 * D = 1 is planned like any other; the ratio decides.
 */
#include "heuristics/heuristics-impl.h"
#include "lib/fpd-impl.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

struct fpd_plan_params fpd_plan_default_params(void) {
    struct fpd_plan_params p;
    memset(&p, 0, sizeof p);
    p.rank = 0;
    p.terms = 0;
    p.k = 0;
    p.min_rows = 1000;
    p.min_ratio = 2.0;
    p.core_dtype = FPD_DTYPE_F32;
    p.budget_bytes = 0;
    p.min_ratio_target = 0.0;
    p.max_error = 0.0;
    p.table = NULL;
    p.free_coords = 0;
    return p;
}

enum fpd_status fpd_plan_table(int64_t rows, int64_t dim, enum fpd_dtype dtype,
                               const struct fpd_plan_params *params, struct fpd_plan *out,
                               struct fpd_error *err) {
    FPD_ASSERT(out != NULL);
    memset(out, 0, sizeof *out);
    out->predicted_error = NAN;
    struct fpd_suggestion *sg = NULL;
    /* Without max_error the pick does not need every candidate's error (the ranking
     * is the prior's; errors only break ties of equal score, which the top group of
     * one k never has: there the error grows with p, the first tie-break): rank
     * without the data, then predict the pick's error alone. Not when c is chosen
     * by the rule under a size target: that weighs the errors. */
    struct fpd_plan_params pp = params ? *params : fpd_plan_default_params();
    const struct fpd_table_view *data = NULL;
    bool weighs = pp.free_coords == FPD_FREE_COORDS_AUTO && (pp.budget_bytes > 0 || pp.min_ratio_target > 0.0);
    if (pp.max_error <= 0.0 && pp.table && !weighs) {
        data = pp.table;
        pp.table = NULL;
        if (data->rows != rows || data->dim != dim)
            return fpd__err(err, FPD_STATUS_SHAPE, "plan: table data [%lld, %lld] does not match [%lld, %lld]",
                            (long long)data->rows, (long long)data->dim, (long long)rows, (long long)dim);
        if (!fpd_dtype_is_float(data->dtype))
            return fpd__err(err, FPD_STATUS_DTYPE, "plan: table data of dtype %s is not a float table",
                            fpd_dtype_name(data->dtype));
    }
    enum fpd_status st = fpd_suggest(rows, dim, dtype, &pp, &sg, err);
    if (st) return st;
    struct fpd_candidate *c = &sg->candidates[sg->selected >= 0 ? sg->selected : 0];
    if (data && (st = fpd__predict_errors(data, c, 1, FPD__PREDICT_FULL_CELLS, NULL, 0, err))) {
        fpd_suggestion_free(sg);
        return st;
    }
    out->shape = c->shape;
    out->params = c->params;
    out->padding = c->padding;
    out->bytes_before = sg->bytes_before;
    out->bytes_after = c->bytes;
    out->ratio = c->ratio;
    out->predicted_error = c->predicted_error;
    out->free_coords = c->free_coords;
    out->compress = sg->compress;
    snprintf(out->reason, sizeof out->reason, "%s", sg->reason);
    fpd_suggestion_free(sg);
    fpd__err_clear(err);
    return FPD_STATUS_OK;
}
