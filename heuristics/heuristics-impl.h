/*
 * heuristics-impl.h - private helpers of heuristics/ (the error prediction of
 * predict.c, used by suggest.c and the tests). Not API: nothing here is installed.
 */
#ifndef FPD_HEURISTICS_IMPL_H
#define FPD_HEURISTICS_IMPL_H

#include "heuristics/fpd-heuristics.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Tables of at most this many cells (rows * dim) are predicted from all their rows;
 * larger ones from row samples (predict.c). */
#define FPD__PREDICT_FULL_CELLS (INT64_C(1) << 24)

/* The relative error ||W - TT||_F^2 / ||W||_F^2 of uniform-rank TT-SVD (the
 * sequential truncations of fpd_fit_ttsvd, on the zero-padded table) of w in the
 * row and column shape of `shape` (its ranks and terms are ignored), for each
 * rank ranks[0..n) (each capped as fpd_fit_ttsvd caps it), into err2[0..n).
 * Streams over w's rows; extra memory (n_0 d_0)^2 + max_rank * N D / (n_0 d_0)
 * doubles. All ranks share the first (dominant) step. Errors: SHAPE (w does not
 * match the shape), DTYPE, INVALID_ARG (a non-finite entry), NOMEM, NUMERIC. */
enum fpd_status fpd__ttsvd_profile(const struct fpd_table_view *w, const struct fpd_layer_shape *shape,
                                   const int64_t *ranks, int64_t n, double *err2, struct fpd_error *err);

/* Fill predicted_error of cands[0..n) (all of w's rows and dim; any k, shapes,
 * (r, p) and free_coords c <= dim) from the data of w, as the header of
 * fpd-heuristics.h describes (c > 0: "FREE COORDINATES"); NAN where no estimate is
 * made (k <= 2 on a table too large to use whole, or a rank beyond what the sample
 * resolves). full_cells: tables up to this many cells are
 * used whole (FPD__PREDICT_FULL_CELLS; tests pass smaller values to exercise the
 * sampled path). estimate (len bytes) receives a one-line description of the
 * method. Errors: as fpd__ttsvd_profile. */
enum fpd_status fpd__predict_errors(const struct fpd_table_view *w, struct fpd_candidate *cands, int64_t n,
                                    int64_t full_cells, char *estimate, size_t len, struct fpd_error *err);

/* The suggestion machinery behind fpd_suggest with an explicit full_cells (see
 * fpd__predict_errors). */
enum fpd_status fpd__suggest_ex(int64_t rows, int64_t dim, enum fpd_dtype dtype, const struct fpd_plan_params *params,
                                int64_t full_cells, struct fpd_suggestion **out, struct fpd_error *err);

#ifdef __cplusplus
}
#endif
#endif /* FPD_HEURISTICS_IMPL_H */
