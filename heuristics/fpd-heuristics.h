/*
 * fpd-heuristics.h - shapes and (r, p) for FPD layers: factor N and D into k
 * modes, pick a default TT-rank and term count, and decide whether a table gains
 * from compression at all.
 *
 * Usage:
 *   struct fpd_plan_params pp = fpd_plan_default_params();
 *   struct fpd_plan plan;
 *   if (fpd_plan_table(20000, 100, FPD_DTYPE_F32, &pp, &plan, &err)) ...;
 *   if (plan.compress) fit with plan.shape; else puts(plan.reason);
 */
#ifndef FPD_HEURISTICS_H
#define FPD_HEURISTICS_H

#include "fpd.h" /* lib/fpd.h; installed side by side in include/fpd/ */

#ifdef __cplusplus
extern "C" {
#endif

/* Factor N >= 1 into k >= 1 row modes n[0..k) with prod(n) >= N: the padding
 * prod(n) - N is minimal among balanced factorizations (each n_m within a small
 * window around N^(1/k)), ties broken by balance. A prime N is padded, never
 * refused. Errors: INVALID_ARG (N < 1, k out of 1..FPD_MAX_MODES). */
FPD_API enum fpd_status fpd_factor_rows(int64_t n_rows, int32_t k, int64_t *row_shape, struct fpd_error *err);

/* Factor D >= 1 into k column modes d[0..k) with prod(d) == D exactly, as balanced
 * as D's prime factors allow; modes of size 1 fill in when D has fewer than k prime
 * factors (a prime D gives (D, 1, ..., 1)). Errors: INVALID_ARG. */
FPD_API enum fpd_status fpd_factor_cols(int64_t dim, int32_t k, int64_t *col_shape, struct fpd_error *err);

/* Options of fpd_plan_table; 0 means "choose". */
struct fpd_plan_params {
    int64_t rank;          /* TT-rank r (0: default rule)                        */
    int64_t terms;         /* p (0: default rule)                                */
    int32_t k;             /* cores (0: default rule)                            */
    int64_t min_rows;      /* tables with fewer rows stay dense (default 1000)   */
    double min_ratio;      /* dense bytes / FPD bytes below this: dense (2.0)    */
    enum fpd_dtype core_dtype; /* dtype of stored cores (default F32)            */
};
FPD_API struct fpd_plan_params fpd_plan_default_params(void);

/* The plan for one table. */
struct fpd_plan {
    bool compress;                 /* false: keep dense, reason says why          */
    char reason[256];              /* "fewer than 1000 rows", "ratio 1.6 < 2" ... */
    struct fpd_layer_shape shape;  /* valid when compress (also filled otherwise  */
                                   /* when a shape could be formed)               */
    int64_t params;                /* parameters of the cores                     */
    int64_t padding;               /* prod(row_shape) - rows                      */
    size_t bytes_before;           /* rows * dim * dtype size                     */
    size_t bytes_after;            /* params * core dtype size                    */
    double ratio;                  /* bytes_before / bytes_after                  */
};

/* Plan the compression of a table [rows, dim] of dtype: shapes, (r, p), size, and
 * whether it qualifies. Errors: INVALID_ARG (rows or dim < 1, params out of range). */
FPD_API enum fpd_status fpd_plan_table(int64_t rows, int64_t dim, enum fpd_dtype dtype,
                                       const struct fpd_plan_params *params, struct fpd_plan *out,
                                       struct fpd_error *err);

#ifdef __cplusplus
}
#endif
#endif /* FPD_HEURISTICS_H */
