/*
 * budget.c - a parameter budget split among tables by the data per row
 * (fpd_budget_split; the rule is in fpd-heuristics.h, "budgets by data").
 */
#include "heuristics/heuristics-impl.h"
#include "lib/fpd-impl.h"

#include <math.h>

/* Sum over every seen row of min(D_t, lambda c_i^alpha); per table into out (may be NULL). */
static double usage_at(const struct fpd_budget_table *t, int64_t n, double lambda, double alpha, double *out) {
    double total = 0.0;
    for (int64_t q = 0; q < n; q++) {
        double d = (double)t[q].dim, s = 0.0;
        if (!t[q].counts) {
            s = (double)t[q].rows * fmin(d, lambda); /* c_i = 1: c^alpha = 1 */
        } else {
            for (int64_t i = 0; i < t[q].rows; i++) {
                double c = t[q].counts[i];
                if (c > 0.0) s += fmin(d, lambda * pow(c, alpha));
            }
        }
        if (out) out[q] = s;
        total += s;
    }
    return total;
}

enum fpd_status fpd_budget_split(const struct fpd_budget_table *tables, int64_t n_tables, double total_params,
                                 double alpha, double *out_params, struct fpd_error *err) {
    if (n_tables < 1) return fpd__err(err, FPD_STATUS_INVALID_ARG, "budget split: no tables");
    if (!isfinite(total_params) || total_params < 0.0)
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "budget split: the budget must be finite and >= 0, got %g",
                        total_params);
    if (!(alpha >= 0.0 && alpha <= 4.0))
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "budget split: alpha must be in [0, 4], got %g", alpha);
    double cmax = 0.0, cmin = INFINITY, dmax = 0.0;
    for (int64_t q = 0; q < n_tables; q++) {
        const struct fpd_budget_table *t = &tables[q];
        if (t->rows < 1 || t->dim < 1)
            return fpd__err(err, FPD_STATUS_INVALID_ARG, "budget split: table %lld has shape [%lld, %lld]", (long long)q,
                            (long long)t->rows, (long long)t->dim);
        dmax = fmax(dmax, (double)t->dim);
        if (!t->counts) {
            cmax = fmax(cmax, 1.0);
            cmin = fmin(cmin, 1.0);
            continue;
        }
        for (int64_t i = 0; i < t->rows; i++) {
            double c = t->counts[i];
            if (!isfinite(c) || c < 0.0)
                return fpd__err(err, FPD_STATUS_INVALID_ARG,
                                "budget split: table %lld row %lld has count %g; counts must be finite and >= 0",
                                (long long)q, (long long)i, c);
            if (c > 0.0) {
                cmax = fmax(cmax, c);
                cmin = fmin(cmin, c);
            }
        }
    }
    if (total_params == 0.0) {
        for (int64_t q = 0; q < n_tables; q++) out_params[q] = 0.0;
        return FPD_STATUS_OK;
    }
    if (cmax == 0.0)
        return fpd__err(err, FPD_STATUS_NUMERIC, "budget split: no row of any table was seen (every count is 0)");
    /* lambda at which every seen row is capped: usage is then its maximum */
    double hi = dmax / pow(cmin, alpha);
    if (usage_at(tables, n_tables, hi, alpha, out_params) <= total_params) return FPD_STATUS_OK;
    double lo = 0.0;
    for (int it = 0; it < 200 && hi - lo > 1e-15 * hi; it++) {
        double mid = 0.5 * (lo + hi);
        if (usage_at(tables, n_tables, mid, alpha, NULL) < total_params)
            lo = mid;
        else
            hi = mid;
    }
    /* usage is continuous and piecewise linear in lambda: interpolate for an exact total */
    double ulo = usage_at(tables, n_tables, lo, alpha, NULL), uhi = usage_at(tables, n_tables, hi, alpha, NULL);
    double lambda = uhi > ulo ? lo + (hi - lo) * (total_params - ulo) / (uhi - ulo) : hi;
    usage_at(tables, n_tables, lambda, alpha, out_params);
    return FPD_STATUS_OK;
}
