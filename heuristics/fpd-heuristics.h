/*
 * fpd-heuristics.h - shapes and (r, p) for FPD layers: factor N and D into k
 * modes, rank candidate (r, p, k, row shape, column shape) configurations,
 * predict their size and (given the table's data) their error, and decide
 * whether a table gains from compression at all.
 *
 * Usage:
 *   struct fpd_plan_params pp = fpd_plan_default_params();
 *   struct fpd_plan plan;
 *   if (fpd_plan_table(20000, 100, FPD_DTYPE_F32, &pp, &plan, &err)) ...;
 *   if (plan.compress) fit with plan.shape; else puts(plan.reason);
 *
 *   struct fpd_table_view w = { data, FPD_DTYPE_F32, N, D };
 *   pp.table = &w;             // optional: predicted errors from the data
 *   pp.budget_bytes = 1 << 20; // optional: the largest candidate within 1 MiB
 *   struct fpd_suggestion *sg;
 *   if (fpd_suggest(N, D, FPD_DTYPE_F32, &pp, &sg, &err) == FPD_STATUS_OK)
 *       for (int64_t i = 0; i < sg->n_candidates; i++) ... sg->candidates[i] ...;
 *   fpd_suggestion_free(sg);
 *
 * THE (r, p) HEURISTIC (from N and D alone; implemented in suggest.c)
 *
 * For each k (k = 3 below 10^8 rows, 4 from 10^8: the default; the other of 3
 * and 4 is listed too, one step lower in the ranking):
 *
 *   n = fpd_factor_rows(N, k)      minimal padding among balanced shapes
 *   d = fpd_factor_cols(D, k), arranged outside-in: largest mode first, second
 *       largest last, the rest in the middle (D = 128: 8x4x4, k = 4: 4x4x2x4;
 *       a prime D: D x 1 x 1). Middle cores cost n_m r^2 d_m, end cores n_m r d_m,
 *       so small modes belong in the middle.
 *   g  = max over bonds m of min(prod_{l<m} d_l, prod_{l>=m} d_l), the TT-rank of
 *       one generic row in column shape d (8 for 8x4x4). A term of rank below g
 *       cannot reproduce even a single arbitrary row: the smallest useful rank.
 *   R0 = ceil(D / min(d_0, d_{k-1})), the saturation rank. With the digits
 *       i_0..i_{k-2} fixed, the n_{k-1} rows that share them are (L G_{k-1}[i_{k-1}])
 *       for one fixed D/d_{k-1} x r matrix L per term, so they lie in a subspace
 *       of dimension p r d_{k-1}; rows sharing i_1..i_{k-1} lie in one of
 *       dimension p r d_0. Below R = p r = R0 every such group of rows is confined
 *       to a proper subspace of R^D; at R0 neither group is. Capacity is R = p r,
 *       not r: a sum of p trains of rank r is a train of rank p r with block-
 *       diagonal cores, whose middle cores cost p r^2 = R^2 / p, not R^2.
 *   h  = g * max(1, floor(R0 / (4 g))), the rank step (at least g; a quarter of R0
 *       when that is larger, so that p = 4 still has r >= h).
 *   R* = h * max(1, round(R0 / h)), the target capacity.
 *
 * Candidates: r in {h, 2h, ...}, p in {1, 2, 4, 8}, R = p r <= 4 R*; each inner
 * rank is capped by the TT-SVD bound (fpd_layer_shape_set_rank) and duplicates
 * are dropped. Prior score (lower is better):
 *
 *   s = log2(R* / R)      for R <= R*  (capacity short of saturation)
 *   s = 2 log2(R / R*)    for R >  R*  (past saturation, parameters grow as R^2
 *                                       and the subspace argument gains nothing)
 *   s += 1 when k is not the default k,
 *
 * ties broken by fewer terms, then fewer bytes. D = 128 (N = 10^6 .. 10^8): g = 8,
 * R0 = 32, h = 8, R* = 32, and the ranking starts with (32, 1), (16, 2), (8, 4)
 * (s = 0) and (24, 1) (s = 0.415), the seed paper's four pairs (Hajgato 2023,
 * section 3.1); next are (40, 1) (s = 0.64) and (16, 1), (8, 2) (s = 1). Other D
 * scale through the column shape: D = 64 (4x4x4): (16,1), (8,2), (4,4), (12,1);
 * D = 100 (5x4x5): (20,1), (10,2), (5,4), (15,1); D = 8 (2x2x2, g = 2, R* = 4):
 * (4,1), (2,2), (2,1); D = 1024 (16x8x8, h = 32): (128,1), (64,2), (32,4), (96,1);
 * D = 300 (10x5x6, h = 10): (50,1), (40,1), (20,2), (10,4); a prime D
 * (D x 1 x 1) has R0 = D: rows that share their leading digits only differ
 * through the rank. For a balanced k = 3 shape R* grows like D^(2/3).
 *
 * DATA-DRIVEN ERRORS (predict.c): with the table's data each candidate gets a
 * predicted relative Frobenius error. p = 1: the error of uniform-rank TT-SVD,
 * computed exactly (one streamed Gram matrix of the first unfolding, shared by all
 * ranks, then the remaining sequential SVDs per rank) on the whole table when
 * N D <= 2^24, else on row samples that keep the outer modes whole and take s and
 * 2s random digits of each middle mode, extrapolated to the full middle modes by
 * the model e^2(s) = A - c / s (the sample's bias is the over-fit of its fewer
 * middle slices). p > 1: a sum of p trains of rank r lies between one train of
 * equal middle-core parameters (rank r sqrt(p), p r^2 = (r sqrt(p))^2) and one of
 * equal bond dimension (rank p r, which contains it); the prediction is the
 * geometric mean of the p = 1 errors at those two ranks.
 * The prediction is of the fit's first stage (TT-SVD / backfitting); the ALS
 * sweeps and Adam epochs that follow lower the error a little (0.1% to 3% on
 * GloVe and the NCF tables), so it is slightly pessimistic.
 * With errors the ranking stays the prior's, ties broken by the predicted error,
 * and a candidate that another beats on size and error (no larger and no less
 * accurate, and 5% smaller or 1% more accurate) is flagged "dominated" but not
 * moved: between near-equal candidates the predicted differences are often
 * smaller than the prediction's own error, and a default that jumped on them
 * would be unstable. The errors pick the candidate under max_error.
 *
 * FREE COORDINATES (c; fpd_plan_params.free_coords; suggest.c, predict.c)
 *
 * A layer may carry c free coordinates per row (format free/1): row i = FPD(i) +
 * E[i] P, E [N, c], P [c, D], c (N + D) more values in the cores' dtype. Where the
 * cores' parameters grow with N only through the mode sizes n_m (about N^(1/k)), E
 * grows with N itself: c = 1 on 4 * 10^7 x 128 costs 4 * 10^7 values, 27 times the
 * (32, 1) cores. What they buy is each row's own part, which the train ties to the
 * rows that share its digits; how much of it a table has is a property of its data,
 * not of N and D (GloVe 10000 x 100: r = 8 plus c = 2 fits to 0.855 where r = 17 at
 * the same size reaches 0.885; an exact train gains nothing from them). So:
 *
 *   0 (the default): no free coordinates, the candidates and pick as above.
 *   C >= 1: every candidate carries C (their sizes include it; the pick is the
 *       rule above over them; C <= D, else INVALID_ARG).
 *   FPD_FREE_COORDS_AUTO, the rule: with a budget, ratio or max_error target, each
 *       c in {1, 2, 4, 8} with 8 c <= D is listed with every candidate of the
 *       smallest listed p (1 unless params->terms), in addition to c = 0. c <= D/8:
 *       E alone limits the layer to D/c times smaller than the dense table; past
 *       D/8 (8x) a narrower dense table or row-wise int8 (4x, error ~0.01) is the
 *       better tool. Prior score: the (r, p) score + 1 + log2(c): below every c = 0
 *       candidate of equal (r, p), one step per doubling of the per-row cost, as
 *       nothing in N and D says what c buys. Without a target there is nothing to
 *       trade c against and no c > 0 is listed.
 *       The pick: first the c = 0 pick by the rule above (the largest within the
 *       size target); then, when the errors are predicted (params->table), the c > 0
 *       candidate within the target with the lowest predicted error replaces it if
 *       that error is at least 1% (relative) and 1e-6 (absolute) lower, the margin
 *       keeping differences at the level of the prediction's noise (or float
 *       rounding of an exact fit) from choosing c. So at equal bytes (r, c > 0) wins
 *       over a larger r exactly when predicted more accurate. Without the data c = 0
 *       is kept. Under max_error the c > 0 candidates compete like the others (the
 *       smallest predicted to meet it).
 *
 * Predicted error with c > 0 (predict.c): what fpd_fit(free_coords = c) does after
 * its first stage, exactly: on the same rows the c = 0 prediction uses (the whole
 * table, or the two middle-mode samples), fpd_fit_ttsvd at each p = 1 rank needed
 * (floor and ceil of r sqrt(p), and p r), then fpd_fit_free_coords with the largest
 * c listed: E = U_c S_c, so the squared norms of E's columns are the residual's top
 * squared singular values and the error for each smaller c follows from one fit.
 * Samples are extrapolated in 1/s as above; p > 1 takes the same geometric mean of
 * the two p = 1 errors with c. Known bias: as for c = 0, the ALS sweeps and the
 * finetuning epoch that fpd_fit runs before the free coordinates lower the error a
 * little, so p = 1 is slightly pessimistic (GloVe 10000 x 100, c = 2: the first
 * stage to 0.01%, the default fit 0.1-0.2% lower); p > 1 is the geometric-mean
 * approximation of backfitting and was 0.1-1.8% optimistic there (c = 2, p = 2, 4).
 * The samples (400 and 1600 of GloVe's rows) stayed within 1.1% of the whole table
 * for r <= 20 and 7.3% at most (c = 0: 7.7%); at scale, on 300000 x 100 rows drawn
 * with GloVe's mean and covariance under a 4 MB budget (samples of 32000 and 128000
 * rows), the pick (60, 1, k = 4, c = 2) was predicted 0.9068 against 0.9066 for the
 * first stage of fpd_fit, and the c = 0 pick (60, 1, k = 3) 0.9345 against 0.9352.
 * Cost: one TT-SVD and two passes of D^2 flops per row for each rank, on the rows
 * used (GloVe 10k: 3.7 s instead of 0.8 s; the 300000-row table: 51 s, not 18 s).
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

/* Options of fpd_plan_table and fpd_suggest; 0 (or NULL) means "choose" / "none". */
struct fpd_plan_params {
    int64_t rank;          /* TT-rank r (0: the heuristic; given alone, p = 1)   */
    int64_t terms;         /* p (0: the heuristic)                               */
    int32_t k;             /* cores (0: 3 and 4, the default by N ranked first)  */
    int64_t min_rows;      /* tables with fewer rows stay dense (default 1000)   */
    double min_ratio;      /* dense bytes / FPD bytes below this: dense (2.0)    */
    enum fpd_dtype core_dtype; /* dtype of stored cores (default F32)            */
    /* Selection targets (all optional; those given must all hold). With none, the
     * top-ranked candidate is taken. */
    size_t budget_bytes;       /* > 0: the largest candidate whose cores take at
                                  most this many bytes                           */
    double min_ratio_target;   /* > 0: the largest candidate at least this many
                                  times smaller than the dense table             */
    double max_error;          /* > 0: the smallest candidate whose predicted
                                  relative error is at most this (needs table)   */
    const struct fpd_table_view *table; /* the table's data (borrowed), for
                                  predicted errors; NULL: sizes only             */
    int64_t free_coords;       /* c, free coordinates per row (format free/1; the
                                  rule for c is above): 0: none (default);
                                  C in 1..dim: every candidate carries C;
                                  FPD_FREE_COORDS_AUTO: the rule lists c > 0 too */
    bool free_rowwise;         /* E of the free coordinates stored as free_kind
                                  rows (extensions free-rowwise/1, free-sym/1,
                                  fpd-compress --free-dtype): a candidate's bytes
                                  count E as rows * fpd_free_row_bytes(free_kind, c) and P
                                  as c dim values of the core dtype (its params
                                  stay c (rows + dim)); predicted errors are those
                                  of F32 E (the rounding of E is not predicted:
                                  measured +0.0003 on GloVe at c = 8, int4)      */
    enum fpd_free_kind free_kind;
};
/* fpd_plan_params.free_coords: choose c by the rule (see "FREE COORDINATES"). */
#define FPD_FREE_COORDS_AUTO INT64_C(-1)
FPD_API struct fpd_plan_params fpd_plan_default_params(void);

/* The plan for one table. */
struct fpd_plan {
    bool compress;                 /* false: keep dense, reason says why          */
    char reason[256];              /* "fewer than 1000 rows", "ratio 1.6 < 2" ... */
    struct fpd_layer_shape shape;  /* valid when compress (also filled otherwise  */
                                   /* when a shape could be formed)               */
    int64_t params;                /* parameters: the cores' plus free_coords     */
                                   /* (rows + dim)                                */
    int64_t padding;               /* prod(row_shape) - rows                      */
    size_t bytes_before;           /* rows * dim * dtype size                     */
    size_t bytes_after;            /* params * core dtype size                    */
    double ratio;                  /* bytes_before / bytes_after                  */
    double predicted_error;        /* predicted relative error (NAN: no table)    */
    int64_t free_coords;           /* c of the pick (0: none); params and bytes   */
                                   /* include its c (rows + dim) values           */
};

/* Plan the compression of a table [rows, dim] of dtype: the selected candidate of
 * fpd_suggest under params (shapes, (r, p), c, size, predicted error) and whether it
 * qualifies (free_coords: c of the pick; params and bytes_after include it). The
 * table stays dense (compress = false, with a reason), checked in this order, when:
 * dtype is not a float dtype, rows < min_rows, no candidate is predicted to reach
 * max_error, or bytes_before / bytes_after < min_ratio.
 * Errors: INVALID_ARG (rows or dim < 1, params out of range (free_coords > dim, or
 * negative other than FPD_FREE_COORDS_AUTO), max_error without a table, or a
 * budget / ratio target that no candidate meets: the message names the closest
 * candidate), and those of the error prediction (DTYPE, SHAPE, NOMEM). */
FPD_API enum fpd_status fpd_plan_table(int64_t rows, int64_t dim, enum fpd_dtype dtype,
                                       const struct fpd_plan_params *params, struct fpd_plan *out,
                                       struct fpd_error *err);

/* One candidate configuration. */
struct fpd_candidate {
    struct fpd_layer_shape shape;  /* k, row/col shapes, terms = p, capped ranks  */
    int64_t r;                     /* nominal rank (ranks[m] = min(r, bound_m))   */
    int64_t params;                /* parameters: the cores' plus c (rows + dim)  */
    int64_t padding;               /* prod(row_shape) - rows                      */
    size_t bytes;                  /* params * core dtype size (free/1 stores E   */
                                   /* and P in the cores' dtype)                  */
    double ratio;                  /* bytes_before / bytes                        */
    double score;                  /* prior score, lower is better (see above)    */
    double predicted_error;        /* relative Frobenius error after the fit;     */
                                   /* NAN when not estimated                      */
    bool dominated;                /* another candidate is no larger and no less  */
                                   /* accurate (only with predicted errors)       */
    bool eligible;                 /* meets budget, ratio and max_error targets   */
    int64_t free_coords;           /* c free coordinates per row (0: none)        */
};

/* The ranked candidates for one table. */
struct fpd_suggestion {
    int64_t rows, dim;
    enum fpd_dtype dtype, core_dtype;
    size_t bytes_before;           /* rows * dim * dtype size                     */
    int32_t k_default;             /* 3, or 4 from 10^8 rows (or params->k)       */
    int64_t col_rank, saturation_rank, rank_step, target_rank; /* g, R0, h, R* of  */
                                   /* the default k                               */
    int64_t n_candidates;
    struct fpd_candidate *candidates; /* ranking order, best first (owned)        */
    int64_t selected;              /* index picked under params' targets; -1 when */
                                   /* no candidate meets max_error                */
    bool compress;                 /* as fpd_plan_table decides for the selected  */
    char reason[256];              /* why not, when !compress                     */
    bool errors_known;             /* predicted errors were estimated             */
    char estimate[256];            /* how they were estimated, or why not         */
};

/* True when y dominates x as the header says (both predicted errors known; y no larger
 * and no less accurate, and 5% smaller or 1% more accurate): what sets "dominated". */
FPD_API bool fpd_candidate_dominates(const struct fpd_candidate *y, const struct fpd_candidate *x);

/* Rank the candidate configurations of a table [rows, dim] of dtype (the heuristic
 * above), restricted to params->rank / terms / k when given, with predicted errors
 * when params->table is set (its rows and dim must match; any float dtype), and
 * pick one: the largest within budget_bytes / min_ratio_target, the smallest
 * within max_error (both: the smallest that meets all), else the top-ranked; with
 * free_coords = FPD_FREE_COORDS_AUTO the c > 0 candidates are listed and weighed
 * as "FREE COORDINATES" above says.
 * Allocates *out (free with fpd_suggestion_free).
 * Errors: as fpd_plan_table (a budget or ratio no candidate meets is INVALID_ARG;
 * an unmet max_error is not an error: selected = -1), NOMEM. */
FPD_API enum fpd_status fpd_suggest(int64_t rows, int64_t dim, enum fpd_dtype dtype,
                                    const struct fpd_plan_params *params, struct fpd_suggestion **out,
                                    struct fpd_error *err);
/* Free a suggestion; NULL is a no-op. */
FPD_API void fpd_suggestion_free(struct fpd_suggestion *s);

/* The column shape used by the heuristic: fpd_factor_cols(D, k) arranged outside-in
 * (largest mode first, second largest last, the rest non-increasing between).
 * Errors: as fpd_factor_cols. */
FPD_API enum fpd_status fpd_factor_cols_outside_in(int64_t dim, int32_t k, int64_t *col_shape,
                                                   struct fpd_error *err);

/* ---------------------------------------------------------------- budgets by data
 *
 * How a parameter budget shared by several tables is split among them
 * (fpd_budget_split; budget.c). A table's row count alone says little about how many
 * parameters it can use: a row seen in few training interactions cannot be fitted
 * with many free parameters, and a row never seen is never trained. The rule follows
 * mixed-dimension embeddings (Ginart et al., "Mixed Dimension Embeddings with
 * Application to Memory-Efficient Recommendation Systems", ISIT 2021, section 3:
 * a row's dimension grows as a power alpha of its frequency): row i of table t,
 * seen c_i times, is worth
 *
 *     w_i = min(D_t, lambda * c_i^alpha)     parameters,
 *
 * one lambda for all tables, chosen (by bisection on the monotone total) so that the
 * w_i sum to the budget; table t's share is the sum of its rows' w_i. alpha = 0 with
 * every row seen is the split by row count (each row an equal share, capped at D);
 * alpha = 1 is the split by interactions. Rows never seen (c_i = 0) are worth
 * nothing. A budget at or above every table's dense size gives each its dense size.
 * FPD tables realize a share as the largest candidate whose cores fit in it
 * (fpd_plan_params.budget_bytes); the rule sizes tables, not single rows.
 */

/* One table of fpd_budget_split. */
struct fpd_budget_table {
    int64_t rows;          /* N >= 1                                              */
    int64_t dim;           /* D >= 1                                              */
    const double *counts;  /* [rows] training interactions (look-ups) per row, each
                              finite and >= 0 (borrowed); NULL: every row seen once */
};
#define FPD_BUDGET_DEFAULT_ALPHA 0.5

/* Split total_params parameters among n_tables tables by the rule above:
 * out_params[t] (caller's array [n_tables]) receives table t's share, in parameters
 * (not rounded; the shares sum to min(total_params, what the tables can use: the
 * sum over seen rows of D_t) to within 1e-9 relative). alpha in [0, 4].
 * Errors: INVALID_ARG (n_tables < 1, rows or dim < 1, total_params not finite or
 * < 0, alpha out of range, a count negative or not finite: the message names the
 * table index and the row), NUMERIC (no row of any table was seen while the budget
 * is positive). */
FPD_API enum fpd_status fpd_budget_split(const struct fpd_budget_table *tables, int64_t n_tables, double total_params,
                                         double alpha, double *out_params, struct fpd_error *err);

#ifdef __cplusplus
}
#endif
#endif /* FPD_HEURISTICS_H */
