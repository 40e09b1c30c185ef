/*
 * plan.c - plan the FPD compression of one table: shapes, (r, p), sizes, and
 * whether it qualifies (fpd_plan_default_params, fpd_plan_table; contract in
 * fpd-heuristics.h).
 *
 * Default rules of this first version (a later issue completes the (r, p)
 * heuristic; any of k, r, p given in the params overrides its rule):
 *
 *   k = 3 for N < 10^8, k = 4 for N >= 10^8.
 *       TT-Rec (arXiv 2101.11714) uses 3 cores for DLRM tables, and the seed
 *       paper's tables are DLRM tables (N up to 4e7, D = 128). At N >= 10^8 three
 *       row modes would each exceed ~460, so the first and last cores (n*d*r
 *       each) grow; a fourth core keeps every mode near N^(1/4) <= ~1000.
 *   row_shape = fpd_factor_rows(N, k), col_shape = fpd_factor_cols(D, k).
 *   p = 1 (a plain TT embedding).
 *   r = clamp(4 * ceil(D / 16), 4, 32), i.e. D/4 rounded up to a multiple of 4,
 *       at least 4 and at most 32: D = 128 -> 32 (the seed's recommended (32, 1)
 *       for D = 128), D = 100 -> 28, D = 64 -> 16, D = 8 -> 4.
 *       The TT-rank bounds the capacity carried between neighbouring modes,
 *       while a middle core costs n_m * r^2 * d_m parameters; r ~ D/4 keeps that
 *       core far below the N * D of the dense table (N = 4e7, D = 128: rows
 *       400x400x250, columns 8x4x4, middle core 400 * 32^2 * 4 = 1.6e6 floats
 *       against 5.1e9; N = 6040, D = 8: rows 31x15x13, columns 2x2x2, middle core
 *       15 * 4^2 * 2 = 480 against 48320), and the cap of 32 keeps the r^2 term
 *       bounded for wide tables.
 *   Each inner rank is then capped by the TT-SVD bound (fpd_layer_shape_set_rank).
 *
 * The table stays dense (compress = false, with a reason) when, checked in this
 * order: its dtype is not a float dtype, N < min_rows, or bytes_before /
 * bytes_after < min_ratio. A table with D = 1 is planned like any other; the
 * ratio decides.
 */
#include "heuristics/fpd-heuristics.h"
#include "lib/fpd-impl.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Rows from which the default uses 4 cores instead of 3. */
#define PLAN_K4_ROWS INT64_C(100000000)

struct fpd_plan_params fpd_plan_default_params(void) {
    struct fpd_plan_params p;
    memset(&p, 0, sizeof p);
    p.rank = 0;
    p.terms = 0;
    p.k = 0;
    p.min_rows = 1000;
    p.min_ratio = 2.0;
    p.core_dtype = FPD_DTYPE_F32;
    return p;
}

/* The default TT-rank for dimension D (see the file comment). */
static int64_t default_rank(int64_t dim) {
    int64_t r = 4 * ((dim + 15) / 16);
    if (r < 4) r = 4;
    if (r > 32) r = 32;
    return r;
}

enum fpd_status fpd_plan_table(int64_t rows, int64_t dim, enum fpd_dtype dtype,
                               const struct fpd_plan_params *params, struct fpd_plan *out,
                               struct fpd_error *err) {
    FPD_ASSERT(out != NULL);
    struct fpd_plan_params pp = params ? *params : fpd_plan_default_params();
    enum fpd_status st;

    memset(out, 0, sizeof *out);
    if (rows < 1) return fpd__err(err, FPD_STATUS_INVALID_ARG, "plan: rows = %lld < 1", (long long)rows);
    if (dim < 1) return fpd__err(err, FPD_STATUS_INVALID_ARG, "plan: dim = %lld < 1", (long long)dim);
    if ((unsigned)dtype >= FPD_DTYPE_COUNT)
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "plan: dtype %d out of range", (int)dtype);
    if (pp.rank < 0)
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "plan: rank = %lld < 1", (long long)pp.rank);
    if (pp.terms < 0)
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "plan: terms = %lld < 1", (long long)pp.terms);
    if (pp.k < 0 || pp.k > FPD_MAX_MODES)
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "plan: k = %d not in 1..%d", (int)pp.k, FPD_MAX_MODES);
    if (pp.min_rows < 0)
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "plan: min_rows = %lld < 0", (long long)pp.min_rows);
    if (!(pp.min_ratio >= 0.0) || isinf(pp.min_ratio))
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "plan: min_ratio = %g is not a finite value >= 0",
                        pp.min_ratio);
    if (!fpd_dtype_is_float(pp.core_dtype))
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "plan: core dtype %s is not a float dtype",
                        fpd_dtype_name(pp.core_dtype));

    int32_t k = pp.k ? pp.k : (rows >= PLAN_K4_ROWS ? 4 : 3);
    int64_t r = pp.rank ? pp.rank : default_rank(dim);
    int64_t p = pp.terms ? pp.terms : 1;

    struct fpd_layer_shape *s = &out->shape;
    s->rows = rows;
    s->dim = dim;
    s->k = k;
    s->terms = p;
    st = fpd_factor_rows(rows, k, s->row_shape, err);
    if (st != FPD_STATUS_OK) return st;
    st = fpd_factor_cols(dim, k, s->col_shape, err);
    if (st != FPD_STATUS_OK) return st;
    fpd_layer_shape_set_rank(s, r);

    struct fpd_error cerr;
    if (fpd_layer_shape_check(s, &cerr) != FPD_STATUS_OK)
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "plan: rank %lld, terms %lld give an invalid shape: %s",
                        (long long)r, (long long)p, cerr.msg);
    out->params = fpd_layer_shape_params(s);

    int64_t prod = 1;
    for (int32_t m = 0; m < k; m++) prod *= s->row_shape[m]; /* fits: shape checked */
    out->padding = prod - rows;

    size_t cells;
    if (!fpd__mul_size((size_t)rows, (size_t)dim, &cells) ||
        !fpd__mul_size(cells, fpd_dtype_size(dtype), &out->bytes_before))
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "plan: table [%lld, %lld] %s is too large for size_t",
                        (long long)rows, (long long)dim, fpd_dtype_name(dtype));
    if (!fpd__mul_size((size_t)out->params, fpd_dtype_size(pp.core_dtype), &out->bytes_after))
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "plan: %lld parameters overflow size_t",
                        (long long)out->params);
    out->ratio = (double)out->bytes_before / (double)out->bytes_after;

    out->compress = false;
    if (!fpd_dtype_is_float(dtype)) {
        snprintf(out->reason, sizeof out->reason, "dtype %s is not a float table", fpd_dtype_name(dtype));
    } else if (rows < pp.min_rows) {
        snprintf(out->reason, sizeof out->reason, "%lld rows < --min-rows %lld", (long long)rows,
                 (long long)pp.min_rows);
    } else if (out->ratio < pp.min_ratio) {
        if (out->ratio >= 1.0)
            snprintf(out->reason, sizeof out->reason, "FPD would be only %.1fx smaller (< %gx)", out->ratio,
                     pp.min_ratio);
        else
            snprintf(out->reason, sizeof out->reason, "FPD would be %.2fx larger than dense (ratio < %gx)",
                     1.0 / out->ratio, pp.min_ratio);
    } else {
        out->compress = true;
    }
    fpd__err_clear(err);
    return FPD_STATUS_OK;
}
