/*
 * fpd.h - libfpd public API: the FPD embedding layer (a sum of tensor-train
 * decompositions), its fit, finetune and look-ups.
 *
 * An FPD layer replaces a dense embedding table W of shape [N, D] (row-major,
 * C order) by p terms of a k-core tensor train (DESIGN.md section 2; Hajgato
 * 2023, arXiv 2306.13724; TT-Rec, arXiv 2101.11714):
 *
 *   row shape  n = (n_0..n_{k-1}), prod(n) >= N (rows >= N are padding)
 *   col shape  d = (d_0..d_{k-1}), prod(d) == D
 *   TT-ranks   r_0 = r_k = 1, r_1..r_{k-1}
 *   core m     G_m, F32, shape [p, n_m, r_m, d_m, r_{m+1}], C order
 *   row digit  i_m = (i / prod_{l>m} n_l) mod n_m   (first core most significant)
 *   col index  j   = sum_m j_m * prod_{l>m} d_l
 *   W[i, j]    = sum_t G_0[t,i_0,0,j_0,:] G_1[t,i_1,:,j_1,:] ... G_{k-1}[t,i_{k-1},:,j_{k-1},0]
 *
 * Ranks here are indexed as in the header's C code: ranks[0] = ranks[k] = 1 and
 * core m has left rank ranks[m] and right rank ranks[m+1].
 *
 * Usage:
 *
 *   struct fpd_error err;
 *   struct fpd_table_view w = { data, FPD_DTYPE_F32, N, D };
 *   struct fpd_layer_shape shape;   // from fpd_plan_table() in heuristics/fpd-heuristics.h
 *   struct fpd_fit_params fp = fpd_fit_default_params();
 *   struct fpd_layer *layer = NULL;
 *   if (fpd_fit(&w, &shape, &fp, &layer, NULL, &err) != FPD_STATUS_OK)
 *       fprintf(stderr, "%s\n", err.msg);
 *   float out[2 * D];
 *   int64_t idx[2] = { 7, 42 };
 *   fpd_layer_lookup(layer, idx, 2, out, &err);
 *   fpd_layer_free(layer);
 *
 * Conventions: dimensions, indices and counts are int64_t; byte counts are size_t.
 * Shapes are in C order (last index fastest), as safetensors and .npy store them.
 * Fallible functions return enum fpd_status and fill the caller's struct fpd_error
 * (NULL allowed). The library never prints; see fpd_log_set().
 */
#ifndef FPD_H
#define FPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define FPD_API
#else
#define FPD_API __attribute__((visibility("default")))
#endif

#define FPD_VERSION_STRING "0.2.0"
#define FPD_MAX_DIMS 8  /* most dimensions of a tensor handled by the formats */
#define FPD_MAX_MODES 8 /* most cores (k) of an FPD layer                    */

/* ------------------------------------------------------------------------ */
/* Errors                                                                    */
/* ------------------------------------------------------------------------ */

enum fpd_status {
    FPD_STATUS_OK = 0,
    FPD_STATUS_NOMEM,         /* an allocation failed                          */
    FPD_STATUS_IO,            /* open/read/write/mmap/rename failed            */
    FPD_STATUS_FORMAT,        /* a file breaks its format's rules              */
    FPD_STATUS_INVALID_ARG,   /* an argument is out of range                   */
    FPD_STATUS_SHAPE,         /* shapes do not fit together                    */
    FPD_STATUS_DTYPE,         /* a dtype that this operation does not take     */
    FPD_STATUS_UNSUPPORTED,   /* valid, but not supported (by this build)      */
    FPD_STATUS_BACKEND,       /* a BLAS/LAPACK/CUDA call failed                */
    FPD_STATUS_NUMERIC,       /* a numerical method failed (no convergence)    */
    FPD_STATUS_CONFIG,        /* a configuration file is wrong                 */
    FPD_STATUS_CANCELLED,     /* the progress callback asked to stop           */
    FPD_STATUS_COUNT
};

/* Filled by a failing call. msg names the file, tensor, shape, offset and limit
 * involved. line/column are 1-based for config errors, else 0. */
struct fpd_error {
    enum fpd_status status;
    char msg[512];
    int64_t line, column;
};

/* Static string for a status ("ok", "out of memory", ...); never NULL. */
FPD_API const char *fpd_status_str(enum fpd_status s);

/* ------------------------------------------------------------------------ */
/* Version, logging, allocation                                              */
/* ------------------------------------------------------------------------ */

/* "0.1.0"; static. */
FPD_API const char *fpd_version(void);
/* Space-separated build features: "cpu openblas lapacke", and in a build with the
 * CUDA backend "cuda-backend=PATH (STATE)", the object the registry would open and
 * whether it loaded ("not loaded" until CUDA is asked for: this call loads
 * nothing; "loaded, N devices"; "does not load: WHY"), or "cuda-backend=not-found".
 * Borrowed, per thread, until the next call. */
FPD_API const char *fpd_build_features(void);

enum fpd_log_level { FPD_LOG_LEVEL_DEBUG, FPD_LOG_LEVEL_INFO, FPD_LOG_LEVEL_WARN,
                     FPD_LOG_LEVEL_ERROR, FPD_LOG_LEVEL_COUNT };
typedef void (*fpd_log_callback)(enum fpd_log_level level, const char *msg, void *user_data);
/* Route library log lines to cb (NULL: drop them, the default). Not thread-safe. */
FPD_API void fpd_log_set(fpd_log_callback cb, void *user_data);

/* Allocation hooks, so tests can inject failures. All library allocations go
 * through fpd_malloc/fpd_calloc/fpd_free. fpd_allocator_set(NULL) restores libc. */
struct fpd_allocator {
    void *(*malloc_fn)(size_t size, void *user_data);
    void (*free_fn)(void *ptr, void *user_data);
    void *user_data;
};
FPD_API void fpd_allocator_set(const struct fpd_allocator *a);
/* malloc(size) through the hooks; NULL on failure or size 0. Free with fpd_free. */
FPD_API void *fpd_malloc(size_t size);
/* n*size zeroed bytes; NULL on failure, on overflow of n*size or when it is 0. */
FPD_API void *fpd_calloc(size_t n, size_t size);
/* Frees what fpd_malloc/fpd_calloc returned; NULL is a no-op. */
FPD_API void fpd_free(void *ptr);

/* ------------------------------------------------------------------------ */
/* Dtypes (safetensors names)                                                */
/* ------------------------------------------------------------------------ */

enum fpd_dtype {
    FPD_DTYPE_F32 = 0, FPD_DTYPE_F64, FPD_DTYPE_F16, FPD_DTYPE_BF16,
    FPD_DTYPE_I8, FPD_DTYPE_I16, FPD_DTYPE_I32, FPD_DTYPE_I64,
    FPD_DTYPE_U8, FPD_DTYPE_U16, FPD_DTYPE_U32, FPD_DTYPE_U64,
    FPD_DTYPE_BOOL, FPD_DTYPE_F8_E4M3, FPD_DTYPE_F8_E5M2, FPD_DTYPE_F8_E8M0,
    FPD_DTYPE_C64,
    FPD_DTYPE_COUNT
};

/* Safetensors name ("F32", "BF16", ...); "?" for a value out of range. */
FPD_API const char *fpd_dtype_name(enum fpd_dtype t);
/* Parse a safetensors dtype name (exact, case-sensitive). Returns false if unknown. */
FPD_API bool fpd_dtype_from_name(const char *name, size_t len, enum fpd_dtype *out);
/* Bytes per element; 0 for a value out of range. */
FPD_API size_t fpd_dtype_size(enum fpd_dtype t);
/* True for F32, F64, F16, BF16: the dtypes libfpd converts to F32 to compute. */
FPD_API bool fpd_dtype_is_float(enum fpd_dtype t);
/* Convert n little-endian elements of a float dtype (F32/F64/F16/BF16) to F32.
 * src may be unaligned. Returns FPD_STATUS_DTYPE for other dtypes. */
FPD_API enum fpd_status fpd_dtype_to_f32(enum fpd_dtype t, const void *src, float *dst, int64_t n);
/* Convert n F32 values to F32/F16/BF16 (round to nearest even) little-endian
 * bytes at dst. Returns FPD_STATUS_DTYPE for other dtypes. */
FPD_API enum fpd_status fpd_dtype_from_f32(enum fpd_dtype t, const float *src, void *dst, int64_t n);

/* A dense table [rows, dim], row-major, borrowed (typically a view into an
 * mmapped file). dtype is one of the float dtypes; data may be unaligned. */
struct fpd_table_view {
    const void *data;
    enum fpd_dtype dtype;
    int64_t rows, dim;
};

/* Copy rows [row_begin, row_end) of a view into dst[(row_end-row_begin) * dim] as F32.
 * Errors: INVALID_ARG (range outside the table), DTYPE. */
FPD_API enum fpd_status fpd_table_view_rows(const struct fpd_table_view *v, int64_t row_begin,
                                            int64_t row_end, float *dst, struct fpd_error *err);

/* ------------------------------------------------------------------------ */
/* The FPD layer                                                             */
/* ------------------------------------------------------------------------ */

/* Everything that fixes the layer's parameter layout (DESIGN.md section 2). */
struct fpd_layer_shape {
    int64_t rows;                       /* N: rows of the table it stands for     */
    int64_t dim;                        /* D: embedding dimension                  */
    int32_t k;                          /* number of cores, 1..FPD_MAX_MODES      */
    int64_t terms;                      /* p >= 1                                  */
    int64_t row_shape[FPD_MAX_MODES];   /* n_m >= 1, prod >= rows                  */
    int64_t col_shape[FPD_MAX_MODES];   /* d_m >= 1, prod == dim                   */
    int64_t ranks[FPD_MAX_MODES + 1];   /* ranks[0] = ranks[k] = 1, others >= 1    */
};

/* Check a shape: k in range, n_m, d_m, ranks >= 1, prod(n) >= rows, prod(d) == dim,
 * end ranks 1, no overflow of the parameter count. Errors: SHAPE with a message. */
FPD_API enum fpd_status fpd_layer_shape_check(const struct fpd_layer_shape *s, struct fpd_error *err);
/* Set ranks[1..k-1] = r and ranks[0] = ranks[k] = 1, each inner rank capped by
 * the TT-SVD bound min(prod_{l<m} n_l d_l, prod_{l>=m} n_l d_l). */
FPD_API void fpd_layer_shape_set_rank(struct fpd_layer_shape *s, int64_t r);
/* Elements of core m: p * n_m * r_m * d_m * r_{m+1}. */
FPD_API int64_t fpd_layer_shape_core_numel(const struct fpd_layer_shape *s, int32_t m);
/* Parameters of all cores: p * sum_m n_m r_m d_m r_{m+1}. Shape must be checked. */
FPD_API int64_t fpd_layer_shape_params(const struct fpd_layer_shape *s);

struct fpd_layer; /* opaque */

/* Allocate a layer with zeroed F32 cores. Free with fpd_layer_free.
 * Errors: SHAPE (see fpd_layer_shape_check), NOMEM. */
FPD_API enum fpd_status fpd_layer_init(const struct fpd_layer_shape *shape, struct fpd_layer **out,
                                       struct fpd_error *err);
/* Free a layer; NULL is a no-op. */
FPD_API void fpd_layer_free(struct fpd_layer *layer);
/* The layer's shape; borrowed, valid until fpd_layer_free. */
FPD_API const struct fpd_layer_shape *fpd_layer_get_shape(const struct fpd_layer *layer);
/* Core m, F32 [p, n_m, r_m, d_m, r_{m+1}], C order; borrowed and writable, valid
 * until fpd_layer_free. m must be < k. */
FPD_API float *fpd_layer_core(struct fpd_layer *layer, int32_t m);
FPD_API const float *fpd_layer_core_const(const struct fpd_layer *layer, int32_t m);
/* Deep copy (cores, row permutation, free coordinates). Free with fpd_layer_free.
 * Errors: NOMEM. */
FPD_API enum fpd_status fpd_layer_clone(const struct fpd_layer *layer, struct fpd_layer **out,
                                        struct fpd_error *err);

/* Optional row permutation (DESIGN.md section 4): original row i is stored at FPD
 * row perm[i]. perm has `rows` distinct values in [0, prod(row_shape)); it is
 * copied. NULL removes it (identity). Errors: INVALID_ARG (a value out of range or
 * repeated), NOMEM. */
FPD_API enum fpd_status fpd_layer_set_row_perm(struct fpd_layer *layer, const int64_t *perm,
                                               struct fpd_error *err);
/* The permutation [rows], borrowed, or NULL for the identity. */
FPD_API const int64_t *fpd_layer_row_perm(const struct fpd_layer *layer);

/* The row order moved out of the layer, into the id vocabulary (README "The order in the
 * id vocabulary"; fpd-convert --vocabulary-out): a new layer *out without a permutation,
 * rows = max(perm) + 1 (the stored rows the ids reach; some below it are reached by none),
 * the same cores and P, and E'[perm[i]] = E[i] (zero rows elsewhere). Row perm[i] of *out
 * equals row i of layer (to F32 rounding: look-ups group rows differently). Free with
 * fpd_layer_free. Errors: INVALID_ARG (no permutation), NOMEM. */
FPD_API enum fpd_status fpd_layer_fold_row_perm(const struct fpd_layer *layer, struct fpd_layer **out,
                                                struct fpd_error *err);
/* The layer over n chosen rows: row i of *out is row rows[i] of layer (rows distinct, in
 * [0, layer rows)): the same cores, shape and P, the permutation i -> perm[rows[i]] (or
 * rows[i] without one), E'[i] = E[rows[i]]. With the map of a fold (rows[id] = the row of
 * id) it undoes fpd_layer_fold_row_perm: a checkpoint whose order lives in a vocabulary
 * is looked up by the original ids again (fpd-eval --vocabulary). Free with
 * fpd_layer_free. Errors: INVALID_ARG (n < 1, a row out of range or repeated, naming
 * it), NOMEM. */
FPD_API enum fpd_status fpd_layer_select_rows(const struct fpd_layer *layer, const int64_t *rows, int64_t n,
                                              struct fpd_layer **out, struct fpd_error *err);

/* Free coordinates per row (libfpd 0.2.0; format extension free/1, README): a layer
 * may carry c >= 1 extra coordinates per row, E [N, c], and a shared projection
 * P [c, D] (both F32, C order), and then row i of the table is
 *
 *   W[i, :] = FPD(i) + E[i, :] P
 *
 * E is indexed by the ORIGINAL row id i (the id callers look up, before the row
 * permutation), so setting or removing a permutation does not move E. The engine
 * pools, differentiates and steps E and P with the cores (fpd_engine_grad, index
 * k and k + 1); look-ups, reconstruction, errors and quality include E P.
 *
 * Set c free coordinates, copying e [rows, c] and p [c, dim] (NULL: zeros), or
 * remove them (c = 0; e and p ignored). An engine created over the layer before
 * must not be used after c changes (its calls return INVALID_ARG).
 * Errors: INVALID_ARG (c < 0 or c > dim, a NaN or infinite value, naming it), NOMEM. */
FPD_API enum fpd_status fpd_layer_set_free_coords(struct fpd_layer *layer, int64_t c, const float *e, const float *p,
                                                  struct fpd_error *err);
/* c, the free coordinates per row (0: none). */
FPD_API int64_t fpd_layer_get_free_coords(const struct fpd_layer *layer);
/* E [rows, c] (original row order) and P [c, dim], F32 C order; borrowed and
 * writable, valid until fpd_layer_free or the next fpd_layer_set_free_coords (or
 * fpd_layer_set_free_stored, fpd_layer_store_free, fpd_layer_expand_free); NULL when
 * c = 0. E is also NULL while the layer holds E as stored rows (fpd_layer_store_free,
 * fpd_checkpoint_load_layer_stored): read its rows with fpd_layer_free_row then. */
FPD_API float *fpd_layer_get_free_e(struct fpd_layer *layer);
FPD_API const float *fpd_layer_get_free_e_const(const struct fpd_layer *layer);
FPD_API float *fpd_layer_get_free_p(struct fpd_layer *layer);
FPD_API const float *fpd_layer_get_free_p_const(const struct fpd_layer *layer);
/* Parameters of the layer: the cores' (fpd_layer_shape_params) plus c (rows + dim)
 * of the free coordinates. The row permutation (integers) is not counted. */
FPD_API int64_t fpd_layer_param_count(const struct fpd_layer *layer);

/* Rows idx[0..n) of the table (original row numbers, permutation applied, free
 * coordinates E[i] P added) into out[n * D], F32 row-major: fpd_engine_forward with mode NONE on a transient
 * one-thread CPU engine (each distinct row computed once, rows sharing leading
 * digits share their partial products, in any order of idx). For repeated calls
 * (training, serving) keep an engine instead. n = 0 does nothing.
 * Errors: INVALID_ARG (an index < 0 or >= rows, naming it), NOMEM. */
FPD_API enum fpd_status fpd_layer_lookup(const struct fpd_layer *layer, const int64_t *idx, int64_t n,
                                         float *out, struct fpd_error *err);
/* Dense rows [row_begin, row_end) into out[(row_end - row_begin) * D], F32.
 * Errors: INVALID_ARG (range), NOMEM. */
FPD_API enum fpd_status fpd_layer_reconstruct(const struct fpd_layer *layer, int64_t row_begin,
                                              int64_t row_end, float *out, struct fpd_error *err);

/* Relative Frobenius error ||W - What||_F / ||W||_F over all rows of w, in double,
 * streaming in row blocks (no dense copy). Also returns, if non-NULL, the mean
 * and minimum over rows of cos(W_i, What_i) (rows where both are zero count as 1,
 * one zero as 0). Errors: SHAPE (w not [rows, dim]), DTYPE, NOMEM. */
struct fpd_error_stats {
    double rel_error;
    double cos_mean, cos_min;
    double sq_error, sq_norm;  /* sum of squares of W - What and of W */
};
FPD_API enum fpd_status fpd_layer_error(const struct fpd_layer *layer, const struct fpd_table_view *w,
                                        struct fpd_error_stats *out, struct fpd_error *err);

/* The accuracy report of a compressed table (DESIGN.md section 5), in one
 * streaming pass over w's rows (row blocks; extra memory O(queries * N / 64 +
 * block), not a dense copy):
 *  - relative Frobenius error, plain and weighted by row_weights (if given),
 *  - per-row cosine similarity: mean, 5th percentile (from a 4096-bin histogram,
 *    exact to 1/2048, and within [minimum, maximum]), minimum,
 *  - nearest-neighbour recall@10: for `queries` rows sampled uniformly (seed),
 *    the 10 most cosine-similar other rows in W and in What; recall is the mean
 *    overlap / 10,
 *  - the baselines a user would pick instead, on the same rows: row-wise int8 and
 *    int4 quantization with a per-row scale and bias, as FBGEMM stores them
 *    ("fused rowwise": int8 with F32 scale and bias, 8 extra bytes a row; int4 with
 *    F16 scale and bias, 4 extra bytes a row), their relative errors and bytes.
 * row_weights: NULL (uniform) or [rows] non-negative counts. queries: 0 skips
 * recall; it is capped at rows.
 * Errors: SHAPE, DTYPE, INVALID_ARG (a negative or non-finite weight), NOMEM. */
struct fpd_quality {
    double rel_error, rel_error_weighted;     /* weighted == plain without weights */
    double cos_mean, cos_p5, cos_min;
    int64_t recall_queries;                   /* queries used (0: not computed)   */
    double recall10;
    double int8_rel_error, int4_rel_error;
    size_t int8_bytes, int4_bytes;            /* bytes of the quantized table     */
};
/* The row-wise quantization baselines alone (the int8/int4 fields of
 * fpd_layer_quality, same definitions), in one streaming pass over w.
 * Errors: DTYPE, NUMERIC (a NaN/Inf value, naming its row and column, as
 * fpd_rowwise_quantize), NOMEM. */
struct fpd_quant_baseline {
    double int8_rel_error, int4_rel_error;
    size_t int8_bytes, int4_bytes;
};
FPD_API enum fpd_status fpd_quant_baseline(const struct fpd_table_view *w, struct fpd_quant_baseline *out,
                                           struct fpd_error *err);

FPD_API enum fpd_status fpd_layer_quality(const struct fpd_layer *layer, const struct fpd_table_view *w,
                                          const double *row_weights, int64_t queries, uint64_t seed,
                                          struct fpd_quality *out, struct fpd_error *err);

/* ------------------------------------------------------------------------ */
/* Fit and finetune                                                          */
/* ------------------------------------------------------------------------ */

/* Progress: stage ("tt-svd", "backfit", "finetune"), done out of total units.
 * Return false to cancel (the call then returns FPD_STATUS_CANCELLED). */
typedef bool (*fpd_progress_callback)(const char *stage, int64_t done, int64_t total, void *user_data);

struct fpd_fit_params {
    int64_t backfit_sweeps;   /* p > 1: most sweeps over the terms (default 8)            */
    double backfit_tol;       /* p > 1: stop when the relative error improves by less
                                 than this (relative) in a sweep (default 1e-3)           */
    int64_t als_sweeps;       /* ALS sweeps after TT-SVD / backfitting (default 2; 0 off) */
    double als_tol;           /* stop ALS when the objective improves by less (1e-4)     */
    int64_t finetune_epochs;  /* Adam epochs over all rows after the fit; 0 = none (1)   */
    int64_t batch_rows;       /* rows per Adam minibatch (default 256)                    */
    double learning_rate;     /* Adam step, relative to each core's RMS (default 3e-3)    */
    uint64_t seed;            /* PRNG seed for the row order of finetuning (default 0)    */
    bool cluster_rows;        /* learn a row permutation first (fpd_row_perm_cluster); the
                                 layer then carries it (T.fpd.row_perm, N * 4 bytes)     */
    const double *row_weights;/* [rows] non-negative row weights (access counts) for
                                 finetuning, or NULL for uniform (default). Borrowed.     */
    fpd_progress_callback progress;
    void *progress_user_data;
    struct fpd_backend *backend; /* where the engine work of finetuning and of ALS's
                                 right-hand sides runs (fpd_engine_params); NULL: the
                                 CPU (default). TT-SVD, backfitting and ALS's small
                                 solves stay on the CPU. Borrowed. */
    int64_t free_coords;      /* c > 0: fpd_fit ends with fpd_fit_free_coords(c): free
                                 coordinates E [N, c], P [c, D] from the residual's top c
                                 directions (c (N + D) parameters, format free/1);
                                 0: none (default)                                        */
    const int64_t *row_perm;  /* [rows]: a row permutation chosen by the caller (original
                                 row i at FPD row row_perm[i], distinct values in
                                 [0, prod(row_shape)); e.g. fpd_row_order_interactions):
                                 the fit uses it as cluster_rows uses its own and the
                                 layer carries it (k = 1: ignored, as cluster_rows).
                                 NULL: none (default). With cluster_rows: INVALID_ARG.
                                 Borrowed.                                                */
};
/* Defaults as documented above. */
FPD_API struct fpd_fit_params fpd_fit_default_params(void);

/* TT-SVD (Oseledets 2011, SIAM J. Sci. Comput. 33(5), Algorithm 1) of one term:
 * the table w, zero-padded to prod(row_shape) rows, is viewed as a tensor with
 * interleaved modes (n_0 d_0, ..., n_{k-1} d_{k-1}) and decomposed by sequential
 * truncated SVDs of its unfoldings at the ranks in shape (shape->terms must be 1).
 * The first unfolding is never formed: its Gram matrix and its projection are
 * accumulated by streaming over w's rows, so peak extra memory is about
 * ranks[1] / (n_0 d_0) times the table's F32 size plus (n_0 d_0)^2 doubles.
 * SVDs are eigen-decompositions of Gram matrices in double precision (LAPACKE dsyevd).
 * Ranks above what the unfoldings support are lowered in the result's shape.
 * Allocates *out (free with fpd_layer_free).
 * Errors: SHAPE (w is not [shape->rows, shape->dim] or the shape is invalid),
 * DTYPE, INVALID_ARG (a NaN or infinite entry, naming its row and column), NOMEM,
 * NUMERIC (eigensolver failure), CANCELLED. */
FPD_API enum fpd_status fpd_fit_ttsvd(const struct fpd_table_view *w, const struct fpd_layer_shape *shape,
                                      const struct fpd_fit_params *params, struct fpd_layer **out,
                                      struct fpd_error *err);

/* Fit a layer of any p: p = 1 is TT-SVD; p > 1 is backfitting (fit each term by
 * TT-SVD to the residual of the others, sweep until the error stops improving;
 * Hastie & Tibshirani's backfitting, as DESIGN.md section 3), which holds one F32
 * residual copy of the table. Then als_sweeps of fpd_als (all terms jointly), then
 * finetune_epochs of fpd_finetune, then (params->free_coords > 0)
 * fpd_fit_free_coords. Errors also: INVALID_ARG (free_coords < 0 or > dim; row_perm
 * with cluster_rows, or with a value out of range or repeated, naming it). The returned
 * layer is the best one seen (finetuning never makes the result worse).
 * report (may be NULL) receives the error after each stage.
 * Errors: as fpd_fit_ttsvd and fpd_finetune. */
struct fpd_fit_report {
    double rel_error_fit;       /* after TT-SVD / backfitting             */
    double rel_error_als;       /* after ALS (== fit when none)           */
    int64_t als_sweeps;         /* ALS sweeps run                         */
    double rel_error_final;     /* after finetuning (== fit if none/worse) */
    int64_t backfit_sweeps;     /* sweeps run (0 for p = 1)               */
    int64_t finetune_epochs;    /* epochs run                             */
    bool finetune_kept;         /* the finetuned cores were kept          */
    double fit_seconds, finetune_seconds;
    double rel_error_free;      /* after the free coordinates (== final without) */
};
FPD_API enum fpd_status fpd_fit(const struct fpd_table_view *w, const struct fpd_layer_shape *shape,
                                const struct fpd_fit_params *params, struct fpd_layer **out,
                                struct fpd_fit_report *report, struct fpd_error *err);

/* Free coordinates from the residual (format free/1): with R = W - FPD(layer) (the
 * cores alone; free coordinates the layer already has are replaced), take the top c
 * right singular vectors V_c [D, c] of R and set E = R V_c (= U_c S_c) and
 * P = V_c^T, so E P is R's best rank-c approximation (Eckart-Young) and the squared
 * Frobenius error drops from ||R||^2 to the sum of R's discarded squared singular
 * values, returned in *discarded (may be NULL; clamped at 0). Unweighted (row
 * weights are not used). Two streaming passes over w in row blocks: the Gram
 * matrix R^T R [D, D] in double, its top c eigenvectors (LAPACKE dsyevr), then
 * E = R V_c. Extra memory O(D^2 + N c). Errors: SHAPE (w not [rows, dim]),
 * INVALID_ARG (c outside [1, dim]), DTYPE, NOMEM, NUMERIC (eigensolver). */
FPD_API enum fpd_status fpd_fit_free_coords(struct fpd_layer *layer, const struct fpd_table_view *w, int64_t c,
                                            double *discarded, struct fpd_error *err);

/* Minibatch Adam (Kingma & Ba 2015) on all cores of layer (and its free
 * coordinates E and P, if any, with a step relative to their RMS), minimizing
 * sum_i w_i ||W_i - What_i||^2 / sum_i w_i (DESIGN.md section 3) for
 * params->finetune_epochs epochs of `rows` samples each (seeded by params->seed):
 * uniform weights take every row once per epoch in shuffled order; with
 * params->row_weights rows are drawn with probability w_i / sum w (an unbiased
 * estimate of the weighted objective with far less variance than weighting the
 * loss of uniformly drawn rows, since access counts are heavy-tailed). Gradients flow through the core
 * contractions (fpd_layer_backward). Updates layer in place; keeps the best epoch.
 * loss_before/loss_after (may be NULL): the (weighted) objective over all rows
 * before and after. Errors: SHAPE, DTYPE, INVALID_ARG (weights negative, not
 * finite, or all zero), NOMEM, CANCELLED. */
FPD_API enum fpd_status fpd_finetune(struct fpd_layer *layer, const struct fpd_table_view *w,
                                     const struct fpd_fit_params *params, double *loss_before,
                                     double *loss_after, struct fpd_error *err);

/* A row permutation that puts similar rows under shared leading digits: rows
 * are split into n_0 groups of at most prod(n_1..) rows by balanced k-means, each
 * group into n_1 groups, and so on (the hierarchy of the row modes); perm[i] is the
 * FPD row of original row i (distinct, in [0, prod(row_shape))), as
 * fpd_layer_set_row_perm takes it. Seeded, deterministic. Holds one F32 copy of
 * the table's rows; about 8 N D (n_0 + .. + n_{k-2}) flops. perm: caller-allocated
 * [rows]. Errors: SHAPE, DTYPE, INVALID_ARG (a non-finite entry), NOMEM. */
FPD_API enum fpd_status fpd_row_perm_cluster(const struct fpd_table_view *w, const struct fpd_layer_shape *shape,
                                             uint64_t seed, int64_t *perm, struct fpd_error *err);

/* A row permutation for training a table from scratch, from the interaction data
 * alone (lib/order.c): ids that interact with the same things get the same leading
 * digits. The n pairs (rows[t], cols[t]) are the table's ids (in [0, n_rows)) and
 * what they interact with (in [0, n_cols)), e.g. (user, item) for the user table
 * and (item, user) for the item table; each id's coordinates are its projection
 * on the top `dims` right singular vectors of the interaction matrix (randomized
 * SVD, Halko, Martinsson & Tropp 2011, seeded), and fpd_row_perm_cluster places
 * the ids over the row modes of shape (shape->rows must be n_rows); then the last
 * digit is aligned across the groups of the other digits: slot j of every group
 * holds the id whose coordinates less its group's mean are nearest a center C_j
 * common to all groups (balanced k-means, one id per slot and group), so the ids
 * sharing a slice of the last core are alike too (skipped where it would cost
 * above ~2e10 flops: G L^2 (dims + 24) x 6 for G groups of L = row_shape[k-1]). perm:
 * caller-allocated [n_rows], as fpd_layer_set_row_perm takes it; ids without
 * interactions get coordinates 0. Errors: SHAPE, INVALID_ARG (a pair out of
 * range, n < 1, dims < 1), NOMEM, NUMERIC. */
FPD_API enum fpd_status fpd_row_order_interactions(const int64_t *rows, const int64_t *cols, int64_t n,
                                                   int64_t n_rows, int64_t n_cols,
                                                   const struct fpd_layer_shape *shape, int64_t dims, uint64_t seed,
                                                   int64_t *perm, struct fpd_error *err);

/* ALS sweeps (one core at a time, all p terms, by exact least squares; the TT-ALS
 * of Holtz, Rohwedder & Schneider 2012, SIAM J. Sci. Comput. 34(2)) over layer,
 * minimizing f = ||W_pad - What||_F^2 on the zero-padded table (unweighted, as
 * TT-SVD). Each core update solves normal equations whose matrix is shared by
 * all slices of the core (one Cholesky, LAPACKE dposv); right-hand sides come from
 * a backward pass with W as the output gradient, streamed over row blocks (extra
 * memory: the gradient cores and O((p r)^4) for the normal matrix, independent of
 * N). f never increases from sweep to sweep; stops after `sweeps` or when f
 * improves by less than tol * f. objective (may be NULL): f after the last sweep;
 * sweeps_run (may be NULL): sweeps done. params may be NULL (only its progress
 * callback, stage "als", and its backend are used: with a backend the backward
 * passes run there, on an engine made anew from the updated cores before each
 * core's pass). Errors: SHAPE, DTYPE, NOMEM, CANCELLED; UNSUPPORTED, BACKEND
 * from the backend's engine; INVALID_ARG (the layer has free coordinates: fit them
 * after ALS). */
FPD_API enum fpd_status fpd_als(struct fpd_layer *layer, const struct fpd_table_view *w, int64_t sweeps, double tol,
                                const struct fpd_fit_params *params, double *objective, int64_t *sweeps_run,
                                struct fpd_error *err);

/* Backward of fpd_layer_lookup: given dL/dout for rows idx[0..n) (grad_out[n * D],
 * F32), add dL/dG_m to grad_cores[m] (each of fpd_layer_shape_core_numel(m)
 * floats, same layout as the core). The cores only: the gradients of free
 * coordinates come from an engine (fpd_engine_grad, m = k and k + 1). idx may repeat and need not be sorted. Runs
 * fpd_engine_forward and fpd_engine_backward on a transient one-thread CPU engine
 * (reverse accumulation over the rows' prefix tree); training loops keep an
 * engine and use its optimizer steps instead. Errors: INVALID_ARG (index), NOMEM. */
FPD_API enum fpd_status fpd_layer_backward(const struct fpd_layer *layer, const int64_t *idx, int64_t n,
                                           const float *grad_out, float *const *grad_cores,
                                           struct fpd_error *err);

/* ------------------------------------------------------------------------ */
/* Initialization for training from scratch                                  */
/* ------------------------------------------------------------------------ */

enum fpd_init_kind {
    FPD_INIT_KIND_NORMAL = 0, /* entries ~ mean 0, variance scale^2 (torch.nn.Embedding: normal(0, 1)) */
    FPD_INIT_KIND_UNIFORM,    /* mean 0, variance scale^2 / 3, as uniform(-scale, scale) (DLRM)       */
    FPD_INIT_KIND_COUNT
};

struct fpd_init_params {
    enum fpd_init_kind kind;
    double scale;   /* s of normal(0, s^2), or a of uniform(-a, a); > 0 */
    uint64_t seed;
};

/* Random cores whose reconstructed table (rows [0, shape->rows)) has mean about 0
 * and EXACTLY the target variance (DESIGN.md section 3, "Init"). Core entries are
 * drawn iid N(0, c^2) with c^(2k) = target / (p * prod_m r_m) (then
 * Var(W_ij) = target in expectation), after which the realized variance of the
 * reconstructed entries is measured (one streaming pass over the rows) and every
 * core is scaled by (target / realized)^(1/(2k)), so the realized variance equals
 * the target up to rounding. The first core is centered over its (row digit,
 * column digit) entries, so each term sums to 0 over the padded table: the mean
 * is exactly 0 there (a TT cannot shift its mean without raising a rank; over the
 * first N rows it is 0 up to the padding's share). Only the first two moments match
 * uniform(-a, a): the entries of a product of cores are not uniform (as in TT-Rec).
 * Allocates *out (fpd_layer_free). Errors: SHAPE, INVALID_ARG (scale <= 0, kind),
 * NOMEM. */
FPD_API enum fpd_status fpd_init(const struct fpd_layer_shape *shape, const struct fpd_init_params *params,
                                 struct fpd_layer **out, struct fpd_error *err);

/* ------------------------------------------------------------------------ */
/* The engine: batched EmbeddingBag forward, backward and optimizer steps     */
/* ------------------------------------------------------------------------ */

/* How the rows of a bag are combined (torch.nn.EmbeddingBag's `mode`). NONE gives
 * one output row per index (torch.nn.Embedding). */
enum fpd_bag_mode { FPD_BAG_MODE_SUM = 0, FPD_BAG_MODE_MEAN, FPD_BAG_MODE_NONE, FPD_BAG_MODE_COUNT };

/* One batch of look-ups, shaped as torch.nn.functional.embedding_bag takes it
 * (indices, offsets, mode, per_sample_weights, padding_idx, include_last_offset)
 * and FBGEMM's table-batched embedding does. Everything is borrowed.
 *   indices            [n_indices] original row ids in [0, rows) (the layer's
 *                      row permutation is applied inside)
 *   offsets            NULL: bags of bag_size consecutive indices (n_bags =
 *                      n_indices / bag_size, n_indices must be a multiple);
 *                      else [n_bags] (or [n_bags + 1] with include_last_offset):
 *                      bag b is indices[offsets[b] .. offsets[b+1]) with
 *                      offsets[n_bags] = n_indices when not included;
 *                      offsets[0] must be 0 and the offsets non-decreasing
 *   per_sample_weights [n_indices] or NULL; mode SUM only (as PyTorch); each
 *                      row is scaled by its weight before the sum
 *   mode               SUM, MEAN (sum / number of non-padding entries), NONE
 *                      (n_bags, offsets and bag_size ignored; out is [n_indices, D])
 *   padding_idx        an id in [0, rows) whose entries are skipped (no row, no
 *                      gradient, not counted by MEAN); any negative value: none
 *                      (PyTorch's negative padding_idx counts from the end: pass
 *                      rows + padding_idx)
 * Empty bags (and bags of padding only) give zero rows. */
struct fpd_bag_batch {
    const int64_t *indices;
    int64_t n_indices;
    const int64_t *offsets;
    int64_t n_bags;
    int64_t bag_size;
    bool include_last_offset;
    const float *per_sample_weights;
    enum fpd_bag_mode mode;
    int64_t padding_idx;
};
/* Rows of out (and grad_out) for a batch: n_indices for NONE, else the bags. */
FPD_API int64_t fpd_bag_batch_out_rows(const struct fpd_bag_batch *b);

/* Optimizers of the core slices G_m[t, i] (a slice is what one row digit of one
 * term selects: r_m * d_m * r_{m+1} floats; it plays the part of a dense table's
 * row). Step size of core m: learning_rate * lr_scale[m] (lr_scale[m] = 0 counts
 * as 1), so callers can make steps relative to each core's RMS. Free coordinates
 * step alike: E with learning_rate * free_lr_scale, its slices its rows (c floats,
 * a row touched when the batch looks it up: sparse like a dense table's rows);
 * P with learning_rate * free_proj_lr_scale, its slices its c rows of D floats
 * (touched whenever the batch has a row: P is a dense parameter shared by every
 * row, like a core, so LAZY_ADAM steps it as ADAM does), or not at all with
 * free_proj_fixed (its gradient is still computed: fpd_engine_grad).
 *  SGD              x -= lr g, on touched slices.
 *  ROWWISE_ADAGRAD  FBGEMM's exact row-wise Adagrad (fbgemm_gpu
 *                   split_embedding_codegen, EXACT_ROWWISE_ADAGRAD): one state s
 *                   per slice, s += mean(g^2) over the slice, x -= lr g / (sqrt(s)
 *                   + eps); touched slices only.
 *  ADAM             Adam (Kingma & Ba, ICLR 2015) on every core entry each step,
 *                   untouched entries with gradient 0 (torch.optim.Adam on a dense
 *                   gradient): moments of all slices decay.
 *  LAZY_ADAM        Adam on touched slices only, with the global step's bias
 *                   correction (torch.optim.SparseAdam; TensorFlow's LazyAdam). */
enum fpd_optimizer_kind {
    FPD_OPTIMIZER_KIND_SGD = 0,
    FPD_OPTIMIZER_KIND_ROWWISE_ADAGRAD,
    FPD_OPTIMIZER_KIND_ADAM,
    FPD_OPTIMIZER_KIND_LAZY_ADAM,
    FPD_OPTIMIZER_KIND_COUNT
};

struct fpd_optimizer_params {
    enum fpd_optimizer_kind kind;
    double learning_rate;              /* > 0                                        */
    double beta1, beta2;               /* Adam: 0.9, 0.999                           */
    double eps;                        /* Adam 1e-8; row-wise Adagrad 1e-8 (FBGEMM)  */
    double lr_scale[FPD_MAX_MODES];    /* per-core multiplier of the step (0 = 1)    */
    double free_lr_scale;              /* multiplier of the step of the free
                                          coordinates' per-row part E (0 = 1)        */
    double free_proj_lr_scale;         /* multiplier of the step of their shared
                                          projection P (0 = free_lr_scale's)         */
    bool free_proj_fixed;              /* true: the step leaves P as it is           */
};
/* LAZY_ADAM, learning rate 1e-3, betas 0.9/0.999, eps 1e-8, scales 1. */
FPD_API struct fpd_optimizer_params fpd_optimizer_default_params(void);

struct fpd_engine_params {
    struct fpd_backend *backend;       /* where the work runs; NULL: the CPU. Borrowed,
                                          must outlive the engine                      */
    int32_t threads;                   /* CPU threads; 0: all online processors      */
    struct fpd_optimizer_params optimizer;
    /* Quantization-aware training of the free coordinates' E (libfpd 0.2.0; Jacob et
     * al. 2018, "Quantization and training of neural networks for efficient
     * integer-arithmetic-only inference", s. 3, with the straight-through estimator
     * of Bengio et al. 2013): with free_qat, the forward uses each row of E as the
     * checkpoint will store it, dequant(quant(E[i])) in the kind free_qat_kind (an
     * enum fpd_free_kind, declared below; the writer's exact rounding:
     * fpd_layer_quantize_free gives the same floats), and the backward passes dE
     * through the rounding unchanged (dE[i] = drow P^T) while dP takes the rounded
     * rows (dP += dequant(quant(E[i]))^T drow). E itself stays F32 (the "shadow"
     * weights the optimizer steps), so steps smaller than half a code accumulate.
     * A layer trained so and then quantized by fpd_layer_quantize_free (or saved
     * with that free_kind) looks up exactly the rows the training saw. A row of E
     * that no file could store (a NaN or Inf, a range beyond F16's) is used as it
     * is. The CPU and the CUDA engine both
     * (the same rounding code, lib/free-round-impl.h; the CUDA engine's is checked
     * in emulation on the CPU and on an H200, tests/gpu/gpu-equal.c; with it the
     * CUDA engine does not take the direct forward). Needs a layer with free
     * coordinates.                                                              */
    bool free_qat;                     /* default false                              */
    int32_t free_qat_kind;             /* enum fpd_free_kind (default 0: int8)       */
};
/* backend NULL, threads 0, fpd_optimizer_default_params(), free_qat false. */
FPD_API struct fpd_engine_params fpd_engine_default_params(void);

struct fpd_engine; /* opaque */

/* An engine over `layer` (borrowed and updated in place by fpd_engine_step; it
 * must outlive the engine and keep its shape and its free coordinate count c;
 * the CPU and CUDA engines both compute free coordinates: CUDA keeps E and P on
 * the device and writes them back with the cores at each step). The engine owns
 * reusable scratch
 * that grows to the largest batch seen, so a training loop allocates nothing per
 * batch once its batch size is reached, plus the optimizer state (Adam: two
 * floats per core entry; row-wise Adagrad: one per slice) and the gradient
 * (one float per core entry). params may be NULL (defaults).
 * Free with fpd_engine_free.
 * Errors: INVALID_ARG (a parameter out of range), UNSUPPORTED (a backend without
 * the engine's operations), NOMEM. */
FPD_API enum fpd_status fpd_engine_init(struct fpd_layer *layer, const struct fpd_engine_params *params,
                                        struct fpd_engine **out, struct fpd_error *err);
/* NULL is a no-op. */
FPD_API void fpd_engine_free(struct fpd_engine *e);

/* Forward: out[fpd_bag_batch_out_rows(b), D], F32 row-major, the pooled rows
 * (DESIGN.md section 3, "Look-up"; algorithm in lib/cpu/engine-cpu.c): the
 * batch's distinct stored rows are sorted by their row digits (radix sort), the
 * prefix tree of their digits is walked depth first, each distinct prefix's
 * partial product is computed once per term, all rows under one prefix of length
 * k-1 come out of one product (they are columns of it), and the rows are then
 * pooled into the bags. Work: about 2 D r flops per distinct row plus
 * 2 D_{m-1} r_m d_m r_{m+1} per distinct prefix of length m+1 (1 <= m <= k-2),
 * per term. The engine keeps this batch's plan for fpd_engine_backward.
 * Errors: INVALID_ARG (an index outside [0, rows) other than padding_idx,
 * offsets that are not 0-based and non-decreasing or exceed n_indices, weights
 * with mode MEAN/NONE, bag_size < 1 or not dividing n_indices), NOMEM. */
FPD_API enum fpd_status fpd_engine_forward(struct fpd_engine *e, const struct fpd_bag_batch *b, float *out,
                                           struct fpd_error *err);

/* Backward of the last fpd_engine_forward, whose batch b must be passed again
 * unchanged: adds dL/dG_m for grad_out [out rows, D] (dL/dout) to the engine's
 * gradient, touching only the core slices the batch's rows use (reverse
 * accumulation over the same prefix tree: a prefix's gradient is summed over
 * its rows and pushed to its cores once). Repeated rows accumulate. Several
 * backward calls before a step accumulate. Errors: INVALID_ARG (no forward
 * before, or a different batch), NOMEM. */
FPD_API enum fpd_status fpd_engine_backward(struct fpd_engine *e, const struct fpd_bag_batch *b,
                                            const float *grad_out, struct fpd_error *err);

/* The accumulated gradient of core m: *grad points to fpd_layer_shape_core_numel(m)
 * floats in the core's layout (entries of untouched slices are 0), and
 * slices/n_slices (may be NULL) list the touched slice numbers t * n_m + i_m,
 * ascending. Borrowed until the next engine call.
 * A layer with c free coordinates (fpd_layer_set_free_coords) has two more:
 * m = k is dL/dE, [rows, c] (original row order), whose slices are the touched
 * rows i (c floats each, ascending; rows of other rows are 0); m = k + 1 is dL/dP,
 * [c, dim], whose slices are P's c rows, listed 0..c-1 when the batches since the
 * last step had a row, else none. m must be < k (< k + 2 with free coordinates).
 * (dE's [rows, c] buffer is allocated by the first backward, so that look-up
 * engines need no O(rows) memory; asked for before any backward, *grad is NULL
 * only if that allocation fails.) */
FPD_API void fpd_engine_grad(const struct fpd_engine *e, int32_t m, const float **grad, const int64_t **slices,
                             int64_t *n_slices);

/* Apply the optimizer to the accumulated gradient, updating the layer's cores,
 * and clear the gradient. A step without a backward before it changes nothing
 * for SGD, Adagrad and lazy Adam (Adam still decays its moments). Errors: NOMEM,
 * BACKEND. */
FPD_API enum fpd_status fpd_engine_step(struct fpd_engine *e, struct fpd_error *err);
/* Clear the accumulated gradient without a step. */
FPD_API void fpd_engine_zero_grad(struct fpd_engine *e);
/* Flops the last forward executed (multiply and add count 2), for benchmarks. */
FPD_API double fpd_engine_last_flops(const struct fpd_engine *e);

/* ------------------------------------------------------------------------ */
/* Dense linear algebra (double, row-major, CPU: OpenBLAS and LAPACKE)       */
/* ------------------------------------------------------------------------ */

/* C[m,n] = alpha op(A) op(B) + beta C (cblas_dgemm); A is [m,k] ([k,m] when
 * trans_a), B is [k,n] ([n,k] when trans_b). */
FPD_API void fpd_linalg_dgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha,
                              const double *a, int64_t lda, const double *b, int64_t ldb, double beta, double *c,
                              int64_t ldc);
/* Upper triangle of G[n,n] += X X^T with X [n,m] (trans false), or += X^T X with
 * X [m,n] (trans true) (cblas_dsyrk); the lower triangle is not written. */
FPD_API void fpd_linalg_dsyrk(bool trans, int64_t n, int64_t m, const double *x, int64_t ldx, double *g, int64_t ldg);
/* The r largest eigenvalues of the symmetric g[n,n] (upper triangle read; g is
 * destroyed) into w[r], descending, and, if vec is non-NULL, their eigenvectors
 * as the columns of vec[n, r] (LAPACKE_dsyevr, which computes only these). r is
 * capped at n; r <= 0 does nothing. Errors: NOMEM, INVALID_ARG (LAPACK info < 0:
 * a bug), NUMERIC (no convergence). */
FPD_API enum fpd_status fpd_linalg_eig_top(int64_t n, double *g, int64_t r, double *w, double *vec,
                                           struct fpd_error *err);

/* ------------------------------------------------------------------------ */
/* Backends                                                                  */
/* ------------------------------------------------------------------------ */

enum fpd_backend_kind { FPD_BACKEND_KIND_CPU = 0, FPD_BACKEND_KIND_CUDA, FPD_BACKEND_KIND_COUNT };

struct fpd_backend; /* opaque */

/* The CPU backend is linked in. The CUDA backend is a shared object,
 * libfpd-cuda.so (built by `make CUDA=1`), that the first request for CUDA
 * (fpd_backend_available, fpd_backend_init, fpd_backend_init_best,
 * fpd_backend_device_count) opens with dlopen; a program that never asks for
 * CUDA never loads a CUDA library. It is looked for, first found wins, at
 * $FPD_CUDA_BACKEND (a path; when set, only there), next to libfpd.so, next to
 * the executable, and in the install libdir (README, "Backends and devices").
 * The outcome of that first load is kept for the life of the process
 * (thread-safe). */

/* True when the backend can be created: for CUDA, the object loads and reports
 * at least one device. */
FPD_API bool fpd_backend_available(enum fpd_backend_kind kind);
/* Devices of a kind: 1 for the CPU; for CUDA, loading the object first, the
 * devices the driver reports, or 0 with the reason in err (not built, object
 * missing or refused, no driver, no device). */
FPD_API int fpd_backend_device_count(enum fpd_backend_kind kind, struct fpd_error *err);
/* Create a backend on device index `device` (0 for the CPU). Free with
 * fpd_backend_free. Errors: UNSUPPORTED (no CUDA backend in this build: "this
 * build has no CUDA backend; rebuild with make CUDA=1"; the object not found; a
 * stale object of another backend ABI), IO, BACKEND (dlopen's error, the entry
 * symbol missing, no device, a driver error), NOMEM. */
FPD_API enum fpd_status fpd_backend_init(enum fpd_backend_kind kind, int device, struct fpd_backend **out,
                                         struct fpd_error *err);
/* CUDA when available, else the CPU. Free with fpd_backend_free. */
FPD_API enum fpd_status fpd_backend_init_best(struct fpd_backend **out, struct fpd_error *err);
/* The kind a backend was created as. */
FPD_API enum fpd_backend_kind fpd_backend_get_kind(const struct fpd_backend *be);
/* True when the backend has the FPD engine's operations (fpd_engine_init accepts
 * it): always for the CPU; for CUDA once its engine kernels are built in. */
FPD_API bool fpd_backend_has_engine(const struct fpd_backend *be);
/* "cpu" or "cuda:0 (NVIDIA H200)"; borrowed. */
FPD_API const char *fpd_backend_name(const struct fpd_backend *be);
/* NULL is a no-op. */
FPD_API void fpd_backend_free(struct fpd_backend *be);

/* Device selection as the tools and samples spell it: --device auto|cpu|cuda[:N]
 * (lib/device.c).
 *   auto     the CUDA backend when it loads, has a device and runs the FPD engine
 *            (fpd_backend_has_engine); otherwise the CPU, the reason kept in note.
 *            Probes (loads) the CUDA backend object.
 *   cpu      the CPU; loads nothing.
 *   cuda[:N] CUDA device N (default 0), or an error saying why not. */
enum fpd_device_request { FPD_DEVICE_REQUEST_AUTO = 0, FPD_DEVICE_REQUEST_CPU, FPD_DEVICE_REQUEST_CUDA,
                          FPD_DEVICE_REQUEST_COUNT };
struct fpd_device {
    enum fpd_device_request request;
    int32_t index;                 /* CUDA device, 0-based                           */
};
/* "auto", "cpu", "cuda", "cuda:N" (N a whole number below 1024) into *out; false
 * (and *out untouched) for anything else, NULL included. */
FPD_API bool fpd_device_parse(const char *s, struct fpd_device *out);
/* The spelling of d ("auto", "cpu", "cuda:1") into buf[len]; returns buf. */
FPD_API const char *fpd_device_str(const struct fpd_device *d, char *buf, size_t len);

/* A device chosen and opened (caller-allocated). */
struct fpd_device_choice {
    struct fpd_backend *backend;   /* owned; NULL for the CPU (engines make their own) */
    char requested[32];            /* "auto", "cpu", "cuda:0"                          */
    char used[160];                /* "cpu", "cuda:0 (NVIDIA H200)"                    */
    char note[640];                /* auto on the CPU: why not CUDA; else ""           */
};
/* Choose and open d into *out (zeroed first). Errors (cuda[:N] only; auto falls back
 * to the CPU): those of fpd_backend_init (UNSUPPORTED: not built; IO: the backend
 * object missing; BACKEND: no driver or device, refused object), or UNSUPPORTED
 * "DEVICE cannot run the FPD engine (...)". Close with fpd_device_close. */
FPD_API enum fpd_status fpd_device_open(const struct fpd_device *d, struct fpd_device_choice *out,
                                        struct fpd_error *err);
/* Frees the backend (NULL and a CPU choice are no-ops). */
FPD_API void fpd_device_close(struct fpd_device_choice *c);

/* ------------------------------------------------------------------------ */
/* Hashed and quotient-remainder tables (lib/composed.c)                    */
/* ------------------------------------------------------------------------ */

/* The baselines FPD is compared against at equal size (samples/compare-sizes.c),
 * as table kinds the GMF/MF trainer (fpd_gmf_train) trains with the same lazy Adam:
 *  - HASH, the hashing trick (Weinberger et al., ICML 2009; DLRM's hashed tables):
 *    row i of the [rows, dim] table is row h(i) mod buckets of one F32 table
 *    [buckets, dim]; h is splitmix64's finalizer of i + hash_seed * 0x9E3779B97F4A7C15
 *    (fixed, so a table is reproducible from its seed).
 *  - QR, the quotient-remainder trick (Shi et al., KDD 2020, "Compositional
 *    Embeddings Using Complementary Partitions", arXiv 1909.02107): row i =
 *    Q[i / buckets] * R[i mod buckets] element-wise (their best operation), with
 *    Q F32 [ceil(rows / buckets), dim] and R F32 [buckets, dim]; distinct ids get
 *    distinct rows. */
enum fpd_composed_kind { FPD_COMPOSED_KIND_HASH = 0, FPD_COMPOSED_KIND_QR, FPD_COMPOSED_KIND_COUNT };

struct fpd_composed_shape {
    enum fpd_composed_kind kind;
    int64_t rows, dim;         /* the table it stands for                            */
    int64_t buckets;           /* m: rows of the hashed table, or of R (QR)          */
    uint64_t hash_seed;        /* HASH only                                          */
};

/* A hashed or QR table (owned; free with fpd_composed_free). table[0] is the
 * hashed table or Q, table[1] is R (QR) or NULL; both F32 row-major [table_rows[q],
 * dim], writable. The other members are the optimizer state of
 * fpd_composed_adam_step, allocated at its first call. */
struct fpd_composed {
    struct fpd_composed_shape shape;
    int32_t n_tables;                 /* 1 (HASH) or 2 (QR)                         */
    int64_t table_rows[2];
    float *table[2];
    float *adam_m[2], *adam_v[2], *grad[2];
    unsigned char *mark[2];
    int64_t *touched[2], n_touched[2];
    int64_t *row_perm;                /* QR: id i reads row row_perm[i] (owned), or NULL
                                         for the identity; fpd_composed_set_row_perm  */
};

/* "hash", "qr"; "?" out of range. */
FPD_API const char *fpd_composed_kind_name(enum fpd_composed_kind k);
/* Check a shape: a known kind, rows, dim, buckets >= 1, no overflow. Errors: SHAPE. */
FPD_API enum fpd_status fpd_composed_shape_check(const struct fpd_composed_shape *s, struct fpd_error *err);
/* Trainable parameters: buckets * dim (HASH), (ceil(rows / buckets) + buckets) * dim
 * (QR). The shape must be checked. */
FPD_API int64_t fpd_composed_shape_params(const struct fpd_composed_shape *s);
/* A table with entries drawn from normal(0, init_scale^2) (HASH), or with Q and R
 * entries from normal(0, init_scale) (QR, so that a row's entries have variance
 * init_scale^2 as a dense table's), from seed. Errors: SHAPE, INVALID_ARG (a
 * negative or non-finite init_scale), NOMEM. */
FPD_API enum fpd_status fpd_composed_init(const struct fpd_composed_shape *shape, double init_scale, uint64_t seed,
                                          struct fpd_composed **out, struct fpd_error *err);
/* Frees the tables and the optimizer state; NULL is a no-op. */
FPD_API void fpd_composed_free(struct fpd_composed *c);
/* An id order for a QR table (libfpd 0.2.x; the row order of FPD layers, applied to
 * the quotient-remainder split): id i becomes row perm[i] before the split, so ids
 * with equal perm[i] / buckets share Q's row and ids with equal perm[i] mod buckets
 * share R's row (fpd_gmf_train's order_rows places similar ids there:
 * fpd_row_order_interactions over the row shape (ceil(rows / buckets), buckets)).
 * perm has `rows` distinct values in [0, ceil(rows / buckets) * buckets); it is
 * copied. NULL removes it. Errors: UNSUPPORTED (a HASH table: the hash ignores any
 * order), INVALID_ARG (a value out of range or repeated, naming it), NOMEM. */
FPD_API enum fpd_status fpd_composed_set_row_perm(struct fpd_composed *c, const int64_t *perm,
                                                  struct fpd_error *err);
/* The table rows that row i (0 <= i < rows, unchecked) reads: idx[0] (hashed row, or
 * Q's row) and idx[1] (R's row; -1 for HASH); QR applies the row order first. */
FPD_API void fpd_composed_index(const struct fpd_composed *c, int64_t i, int64_t idx[2]);
/* Rows ids[0..n) into out[n * dim] (F32). Errors: INVALID_ARG (an index outside
 * [0, rows), naming it; nothing written). */
FPD_API enum fpd_status fpd_composed_lookup(const struct fpd_composed *c, const int64_t *ids, int64_t n, float *out,
                                            struct fpd_error *err);
/* Backward of fpd_composed_lookup: adds dL/dtable[q] for grad_out [n, dim] (dL/d the
 * looked-up rows) to grad_tables[q] (caller-allocated, [table_rows[q], dim]; q <
 * n_tables). Errors: INVALID_ARG (an index, nothing added). */
FPD_API enum fpd_status fpd_composed_backward(struct fpd_composed *c, const int64_t *ids, int64_t n,
                                              const float *grad_out, float *const grad_tables[2],
                                              struct fpd_error *err);
/* One lazy Adam step (beta 0.9, 0.999, eps 1e-8; torch.optim.SparseAdam) from the
 * gradient grad_out [n, dim] of the rows ids[0..n) (distinct or not): the gradient
 * of every table row they read is accumulated (from the values before the step),
 * then each such table row, and only those, moves with step lr and the bias
 * corrections bc1 = 1 - 0.9^t, bc2 = 1 - 0.999^t of the global step t. Errors:
 * INVALID_ARG (an index; nothing changed), NOMEM. */
FPD_API enum fpd_status fpd_composed_adam_step(struct fpd_composed *c, const int64_t *ids, int64_t n,
                                               const float *grad_out, float lr, float bc1, float bc2,
                                               struct fpd_error *err);

/* ------------------------------------------------------------------------ */
/* Recommender models: GMF (NCF) evaluation and training (lib/ncf.c)         */
/* ------------------------------------------------------------------------ */

/* GMF, the generalized matrix factorization of Neural Collaborative Filtering
 * (He et al., WWW 2017): score(u, i) = sigmoid(sum_j U[u,j] I[i,j] w[j] + b).
 * Either table may be dense or an FPD layer, so one model type covers the
 * original checkpoint, the compressed one and training from scratch.
 *
 *   struct fpd_gmf m = { .user = {NULL, udata, 6040, 8}, .item = {ilayer, NULL, 3706, 8},
 *                        .weight = w, .bias = b };
 *   struct fpd_rank_metrics rm;
 *   fpd_gmf_rank(&m, users, cand, n_users, 100, 10, &rm, NULL, &err);   // rm.hr, rm.ndcg
 */

/* An embedding table: an FPD layer, or dense F32 rows. Borrowed by the calls below. */
struct fpd_embedding {
    struct fpd_layer *layer;  /* the FPD table, or NULL for a dense one                */
    float *dense;             /* [rows, dim] F32 row-major; used when layer is NULL    */
    int64_t rows, dim;        /* must equal the layer's shape when layer is set        */
    struct fpd_composed *composed; /* a hashed or QR table (used when layer is NULL and
                                  this is set; rows, dim must equal its shape's)       */
};

/* A GMF model (caller-owned; every pointer borrowed). Training updates the tables
 * (dense rows or FPD cores), weight[] and bias in place. */
struct fpd_gmf {
    struct fpd_embedding user, item;  /* same dim                                     */
    float *weight;                    /* [dim] prediction weights                     */
    float bias;                       /* prediction bias                              */
};

/* Rows ids[0..n) of an embedding table (dense, FPD or composed) into out[n * dim],
 * F32. Errors: SHAPE, INVALID_ARG (a table with no data, an id out of range), NOMEM. */
FPD_API enum fpd_status fpd_embedding_lookup(const struct fpd_embedding *e, const int64_t *ids, int64_t n,
                                             float *out, struct fpd_error *err);

/* Logits sum_j U[u,j] I[i,j] w[j] + b (accumulated in double) of the pairs
 * (users[t], items[t]), t < n, into out[n]. The score is sigmoid(logit).
 * Errors: SHAPE (tables of different dim, a layer whose shape differs from rows/dim),
 * INVALID_ARG (an id out of range, naming it), NOMEM. */
FPD_API enum fpd_status fpd_gmf_logits(const struct fpd_gmf *m, const int64_t *users, const int64_t *items,
                                       int64_t n, float *out, struct fpd_error *err);

/* Leave-one-out ranking metrics (the NCF protocol). */
struct fpd_rank_metrics {
    double hr;        /* hit ratio at k: share of users whose held-out item ranks < k */
    double ndcg;      /* mean of 1 / log2(rank + 2) over hits (0 for a miss)          */
    int64_t users;    /* users evaluated                                              */
    int64_t k;
};

/* For each user users[t] (t < n), the candidates cand[t * n_cand + c], c < n_cand,
 * where cand[t * n_cand] is the held-out item and the others its sampled
 * negatives: rank = number of candidates whose logit is higher than the held-out
 * item's, plus its place among the candidates that tie with it (other items with
 * an equal logit), drawn uniformly with a seed fixed by the user id (so a model
 * that scores everything alike gets the HR@k of a random ranking, k / n_cand, not
 * 1, and the same call gives the same ranks); a hit when rank < k. Rows of
 * FPD tables are computed once per distinct id. rank_out (may be NULL) receives the
 * n ranks. n = 0 gives zeros. Errors: as fpd_gmf_logits; INVALID_ARG (n_cand < 1,
 * k < 1). */
FPD_API enum fpd_status fpd_gmf_rank(const struct fpd_gmf *m, const int64_t *users, const int64_t *cand,
                                     int64_t n, int64_t n_cand, int64_t k, struct fpd_rank_metrics *out,
                                     int64_t *rank_out, struct fpd_error *err);

/* Called after each training epoch (1-based) with the mean training loss of the
 * epoch and its wall time; return false to stop training early (not an error). */
typedef bool (*fpd_epoch_callback)(int64_t epoch, double mean_loss, double seconds, void *user_data);

/* The training loss of fpd_gmf_train:
 *  BCE: binary cross-entropy of sigmoid(logit) against the label (1 for a positive,
 *       0 for a sampled negative), the mean over the batch's samples (NCF's GMF);
 *  BPR: Bayesian personalized ranking (Rendle et al., UAI 2009), softplus(z_neg -
 *       z_pos) for each positive and each of its sampled negatives, the mean over
 *       the batch's pairs (with weight = 1 and bias = 0 held fixed, train_prediction
 *       false, this is matrix factorization with BPR, LightGCN's MF baseline). */
enum fpd_gmf_loss { FPD_GMF_LOSS_BCE = 0, FPD_GMF_LOSS_BPR, FPD_GMF_LOSS_COUNT };

struct fpd_gmf_train_params {
    int64_t epochs;            /* passes over the positives (default 20)                    */
    int64_t batch_size;        /* samples per Adam step, positives with their negatives;
                                  rounded down to a multiple of 1 + negatives (default 256) */
    int64_t negatives;         /* negatives sampled per positive, uniformly among the items
                                  the user has no positive with (default 4)                  */
    double learning_rate;      /* Adam step of dense rows, weight and bias (default 1e-3)   */
    double core_learning_rate; /* Adam step of FPD cores; 0: learning_rate (default 0)       */
    bool core_lr_relative;     /* multiply the core step by each core's RMS at the start
                                  (scale-free; suits cores from a fit) (default false)       */
    bool train_tables;         /* update the user and item tables (default true)            */
    bool train_prediction;     /* update weight and bias (default true)                     */
    const struct fpd_gmf *teacher; /* knowledge distillation (Hinton et al. 2015): a model over
                                  the same ids whose scores blend into the targets; NULL: none */
    double distill;            /* weight a in [0, 1] of the teacher: a sample's target is
                                  (1 - a) * label + a * sigmoid(teacher logit) (default 0)   */
    bool balance_users;        /* weight each sample by 1 / (the user's positives), scaled to
                                  mean 1, so every user weighs the same in the loss, as in the
                                  per-user metrics (HR@k), instead of heavy users dominating
                                  (default false: NCF's plain mean)                           */
    uint64_t seed;             /* order of the positives and the negatives (default 0)      */
    fpd_epoch_callback epoch_callback;
    void *epoch_user_data;
    fpd_progress_callback progress; /* stage "train", in steps; false cancels                */
    void *progress_user_data;
    bool order_rows;           /* before training, give each FPD table that has no row
                                  permutation one from the positives
                                  (fpd_row_order_interactions, 16 dims, the seed): users
                                  (items) that share items (users) share leading digits;
                                  QR tables (fpd_composed) get one too, over the row shape
                                  (quotients, remainders): fpd_composed_set_row_perm
                                  (default false)                                          */
    struct fpd_backend *backend; /* where the engines of FPD tables run (forward, backward,
                                  optimizer step); NULL: the CPU (default). Dense tables,
                                  weight and bias stay on the host. Borrowed.               */
    int64_t free_coords;       /* c > 0: before training, give each FPD table without free
                                  coordinates c of them (fpd_layer_set_free_coords; row i =
                                  FPD(i) + E[i] P): E = 0, so training starts from the FPD
                                  table as given (a fitted one keeps its rows), and P with
                                  orthonormal rows (P P^T = I_c; Gram-Schmidt of a Gaussian
                                  drawn from the seed), the same P for every table of the
                                  model that has the same dim, so that the free parts of a
                                  user and an item meet as E_u E_v^T, as a dense d = c
                                  model's rows do (independent random P per table made that
                                  a random c x c form and trained worse). E steps with lazy
                                  Adam at learning_rate
                                  (its rows sparse, as a dense table's), P (dense, shared by
                                  every row, stepped at every step like a core) at
                                  free_proj_learning_rate, or not at all with
                                  free_proj_fixed; c <= dim (default 0)                     */
    double free_proj_learning_rate; /* Adam step of P; 0: the cores' step (default)        */
    bool free_proj_fixed;      /* P stays as attached (default false). A fixed P makes the
                                  free part a dense d = c table in a fixed c-dimensional
                                  subspace of the rows: E trains as that table would. Which
                                  is better depends on the task (seed 1, 10x, ordered FPD +
                                  free coordinates: MF-BPR on Gowalla, Recall@20 0.0785
                                  fixed, 0.0675 at 1e-4; GMF on MovieLens-1M, HR@10 0.7197
                                  fixed, 0.7399 at the cores' 1e-3; README, "Equal-size
                                  comparison"): choose it on a validation split           */
    double free_init_scale;    /* with free_coords: E entries start ~ N(0, s^2) (seeded)
                                  instead of 0, so the free part starts as a dense d = c
                                  table of normal(0, s^2) entries (|E[i] P| = |E[i]|: P
                                  has orthonormal rows); for training
                                  from scratch, where E = 0 in BOTH tables of a product
                                  model (MF, GMF) is a saddle of their E-E term (each E
                                  gets a gradient only through the other table's FPD
                                  part). 0: E = 0 (default: a fitted table keeps its
                                  rows)                                                     */
    enum fpd_gmf_loss loss;    /* FPD_GMF_LOSS_BCE (default) or FPD_GMF_LOSS_BPR            */
    double l2;                 /* BPR only: each (user, positive, negative) triple adds
                                  l2 / 2 (|u|^2 + |i+|^2 + |i-|^2) to the loss, averaged over
                                  the pairs of the batch, on the rows (as LightGCN's MF
                                  "decay"; default 0)                                       */
    bool free_qat;             /* quantization-aware training of the free coordinates' E
                                  (fpd_engine_params.free_qat): every FPD table with free
                                  coordinates trains with its E rows rounded as the kind
                                  free_qat_kind stores them (straight-through). For a
                                  model that will be saved with that E kind (default
                                  false)                                                    */
    int32_t free_qat_kind;     /* enum fpd_free_kind (declared below; default 0)            */
};
FPD_API struct fpd_gmf_train_params fpd_gmf_train_default_params(void);

/* Train m on implicit feedback: the positives (users[t], items[t]), t < n (repeats
 * allowed), against sampled negatives, minimizing the mean logistic loss
 * (binary cross-entropy of sigmoid(logit)) per minibatch with Adam (Kingma & Ba
 * 2015; beta 0.9, 0.999, eps 1e-8), as NCF trains GMF. The optimizer is the same for
 * dense and FPD tables: "lazy" Adam over parameter slices, i.e. a dense row, or the
 * core slice G_m[t, i_m] of a row digit, and the prediction weights, is updated
 * (moments and value) only in steps where the batch touches it, with the global
 * step's bias correction (torch.optim.SparseAdam). Gradients flow through the core
 * contractions (as fpd_layer_backward gives them, by one reverse pass over the
 * batch's sorted rows in which rows sharing leading digits share their partial
 * products and gradients); each distinct row of a batch is looked up and
 * differentiated once. A 1-core FPD layer thus trains exactly as the dense table.
 * A user with a positive for every item gets no negatives. mean_loss (may be NULL)
 * receives the last epoch's mean loss (cross-entropy against the targets, so with
 * a teacher it does not reach 0; with BPR the mean pair loss, L2 term included).
 * Tables may also be hashed or QR tables (fpd_composed), trained with the same lazy
 * Adam on their table rows (fpd_composed_adam_step). Errors: as fpd_gmf_logits; SHAPE (a teacher of
 * other table sizes); INVALID_ARG (a parameter out of range), NOMEM, NUMERIC (the
 * loss became NaN/inf), CANCELLED. */
FPD_API enum fpd_status fpd_gmf_train(struct fpd_gmf *m, const int64_t *users, const int64_t *items, int64_t n,
                                      const struct fpd_gmf_train_params *params, double *mean_loss,
                                      struct fpd_error *err);

/* Full-ranking metrics at k, as LightGCN's code computes them (LightGCN-PyTorch,
 * Procedure.Test and utils.RecallPrecision_ATk / NDCGatK_r). */
struct fpd_full_rank_metrics {
    double recall;     /* mean over users of |top-k  and  test| / |test|               */
    double precision;  /* mean of |top-k  and  test| / k                               */
    double ndcg;       /* mean of DCG / IDCG, DCG = sum over hits at rank r (0-based) of
                          1 / log2(r + 2), IDCG the same for min(k, |test|) hits         */
    int64_t users;     /* users with at least one test item (the others are skipped)  */
    int64_t k;
};
/* Rank every item for each user u < n_users by its logit (U diag(w) I^T, F32 sgemm
 * in blocks of users; the bias does not change the order), leaving out the items of
 * the user's training set (train_items[train_off[u] .. train_off[u + 1])), take the
 * top k (ties: lower item id first) and compare with the test set
 * (test_items[test_off[u] .. test_off[u + 1]], distinct). CSR offsets are
 * [n_users + 1]. n_users must not exceed the user table's rows. Errors: as
 * fpd_gmf_logits; INVALID_ARG (k < 1, n_users out of range, an item out of range,
 * decreasing offsets), NOMEM. */
FPD_API enum fpd_status fpd_gmf_rank_full(const struct fpd_gmf *m, int64_t n_users, const int64_t *train_off,
                                          const int64_t *train_items, const int64_t *test_off,
                                          const int64_t *test_items, int64_t k, struct fpd_full_rank_metrics *out,
                                          struct fpd_error *err);

/* ------------------------------------------------------------------------ */
/* NCF's three models: GMF, MLP and NeuMF (lib/ncf-models.c)                 */
/* ------------------------------------------------------------------------ */

/* The models of Neural Collaborative Filtering (He et al., WWW 2017, section 3):
 *
 *   GMF:   h = U_mf[u] * I_mf[i]                         (element-wise, [D_mf])
 *   MLP:   x_0 = [U_mlp[u], I_mlp[i]]                    ([2 D_mlp], concatenated)
 *          x_{l+1} = relu(W_l x_l + c_l), l < L;  h = x_L ([n_L])
 *   NeuMF: h = [U_mf[u] * I_mf[i], x_L]                  ([D_mf + n_L]; its own four tables)
 *   score(u, i) = sigmoid(w . h + b)
 *
 * The NCF paper's MLP is layers [64, 32, 16, 8]: D_mlp = 32, L = 3 hidden layers of
 * 32, 16, 8 units. Every table may be dense or an FPD layer.
 *
 *   struct fpd_ncf m = {.kind = FPD_NCF_KIND_MLP, .mlp_user = {NULL, u, 6040, 32},
 *                       .mlp_item = {ilayer, NULL, 3706, 32}, .n_layers = 3,
 *                       .layer_dim = {64, 32, 16, 8}, ...};
 *   fpd_ncf_rank(&m, users, cand, n_users, 100, 10, &rm, NULL, &err);
 */
enum fpd_ncf_kind { FPD_NCF_KIND_GMF = 0, FPD_NCF_KIND_MLP, FPD_NCF_KIND_NEUMF, FPD_NCF_KIND_COUNT };
#define FPD_NCF_MAX_LAYERS 8

/* An NCF model (caller-owned; every pointer borrowed). Training updates the tables,
 * the layers, weight and bias in place. */
struct fpd_ncf {
    enum fpd_ncf_kind kind;
    struct fpd_embedding mf_user, mf_item;   /* GMF, NeuMF: same dim D_mf; unused for MLP   */
    struct fpd_embedding mlp_user, mlp_item; /* MLP, NeuMF: same dim D_mlp; unused for GMF  */
    int32_t n_layers;                        /* L, 1..FPD_NCF_MAX_LAYERS (MLP, NeuMF)        */
    int64_t layer_dim[FPD_NCF_MAX_LAYERS + 1]; /* layer_dim[0] = 2 D_mlp, layer_dim[l + 1]
                                                 the units of hidden layer l                 */
    float *layer_weight[FPD_NCF_MAX_LAYERS]; /* [layer_dim[l + 1], layer_dim[l]] row-major
                                                (torch.nn.Linear's weight)                 */
    float *layer_bias[FPD_NCF_MAX_LAYERS];   /* [layer_dim[l + 1]]                          */
    float *weight;                           /* [fpd_ncf_predict_dim(m)]: the GMF part
                                                first, then the MLP part                   */
    float bias;
};

/* The length of h (and weight): D_mf (GMF), layer_dim[L] (MLP), D_mf + layer_dim[L]
 * (NeuMF); 0 for an unknown kind. */
FPD_API int64_t fpd_ncf_predict_dim(const struct fpd_ncf *m);

/* Fill the hidden layers and the prediction as the NCF authors' Keras code
 * initializes them: each layer weight Glorot-uniform (limit sqrt(6 / (in + out))),
 * biases 0, the prediction weight LeCun-uniform (limit sqrt(3 / in)), bias 0; a
 * fixed seed gives the same values. The tables are not touched. Errors: as
 * fpd_ncf_logits' shape checks. */
FPD_API enum fpd_status fpd_ncf_init_dense(struct fpd_ncf *m, uint64_t seed, struct fpd_error *err);

/* Logits w . h + b (accumulated in double) of the pairs (users[t], items[t]),
 * t < n, into out[n]. Each distinct user and item row is looked up once.
 * Errors: SHAPE (tables of one part with different dims or rows, layer_dim[0] !=
 * 2 D_mlp, a layer whose shape differs from the table's rows/dim), INVALID_ARG (an
 * unknown kind, n_layers out of range, a NULL layer or weight, an id out of range,
 * naming it), NOMEM. */
FPD_API enum fpd_status fpd_ncf_logits(const struct fpd_ncf *m, const int64_t *users, const int64_t *items,
                                       int64_t n, float *out, struct fpd_error *err);

/* Leave-one-out HR@k / NDCG@k exactly as fpd_gmf_rank (ties placed uniformly with
 * a seed fixed by the user id). Errors: as fpd_ncf_logits; INVALID_ARG (n_cand < 1,
 * k < 1). */
FPD_API enum fpd_status fpd_ncf_rank(const struct fpd_ncf *m, const int64_t *users, const int64_t *cand, int64_t n,
                                     int64_t n_cand, int64_t k, struct fpd_rank_metrics *out, int64_t *rank_out,
                                     struct fpd_error *err);

/* Train m on implicit feedback as fpd_gmf_train does (the same sampler, batches,
 * loss, lazy Adam on table rows and core slices), with dense Adam (the global step's
 * bias correction) on the hidden layers; params as fpd_gmf_train's except that
 * teacher, distill, balance_users and loss = BPR are not supported (INVALID_ARG);
 * train_prediction covers the hidden layers and the prediction; order_rows orders
 * every FPD table without a row permutation. The NCF paper trains MLP and NeuMF
 * this way (Adam, 4 negatives, log loss; NeuMF may start from trained GMF and MLP
 * models, which the caller does by filling the tables and layers first).
 * Errors: as fpd_ncf_logits, fpd_gmf_train. */
FPD_API enum fpd_status fpd_ncf_train(struct fpd_ncf *m, const int64_t *users, const int64_t *items, int64_t n,
                                      const struct fpd_gmf_train_params *params, double *mean_loss,
                                      struct fpd_error *err);

/* ------------------------------------------------------------------------ */
/* Row-wise quantized tables (FBGEMM's fused row-wise int8 and int4)         */
/* ------------------------------------------------------------------------ */

/* The two layouts FBGEMM's quantized embedding bags read (fbgemm QuantUtils.h,
 * "Fused8BitRowwise" and "FusedNBitRowwise" with bit_rate 4). A table [N, D] is
 * stored as N rows of fpd_rowwise_row_bytes(kind, D) bytes (safetensors U8 [N, bytes]):
 *   FPD_ROWWISE_INT8: D uint8 codes, then scale and bias as F32 little-endian (D + 8);
 *   FPD_ROWWISE_INT4: ceil(D / 2) bytes of 4-bit codes, column j in byte j / 2, even j
 *                     in the low nibble, then scale and bias as F16 (ceil(D / 2) + 4).
 * Value = code * scale + bias. Quantization (lib/quant.c) follows FBGEMM's reference
 * kernels: bias = the row's minimum (int4: rounded to F16 first), scale = range / 255
 * (int4: F16(range / 15), 1 for a constant row), codes rounded to nearest even. */
enum fpd_rowwise {
    FPD_ROWWISE_INT8 = 0,
    FPD_ROWWISE_INT4,
    FPD_ROWWISE_COUNT
};

/* "int8" / "int4"; "?" out of range. */
FPD_API const char *fpd_rowwise_name(enum fpd_rowwise kind);
/* Parse "int8" / "int4" (exact). Returns false if unknown. */
FPD_API bool fpd_rowwise_from_name(const char *name, enum fpd_rowwise *out);
/* Bytes of one stored row of dim columns (D + 8, or ceil(D / 2) + 4). */
FPD_API size_t fpd_rowwise_row_bytes(enum fpd_rowwise kind, int64_t dim);
/* Quantize one row x[dim] into out[fpd_rowwise_row_bytes(kind, dim)]. Returns false
 * (out undefined) when x holds NaN or Inf, or its range or minimum overflows the
 * scale/bias dtype (int4: F16, |value| > 65504). */
FPD_API bool fpd_rowwise_quantize_row(enum fpd_rowwise kind, const float *x, int64_t dim, uint8_t *out);
/* Dequantize one stored row q into out[dim] (F32). */
FPD_API void fpd_rowwise_dequantize_row(enum fpd_rowwise kind, const uint8_t *q, int64_t dim, float *out);
/* True when a stored row's scale, bias and largest value are finite (a reader's check
 * against NaN/Inf rows). */
FPD_API bool fpd_rowwise_row_finite(enum fpd_rowwise kind, const uint8_t *q, int64_t dim);

/* How a checkpoint stores E [rows, c] of a table's free coordinates when it is
 * quantized (fpd_table_meta.free_kind, fpd_compress_params.free_kind; README, format
 * extensions free-rowwise/1 and free-sym/1), one row of fpd_free_row_bytes(kind, c)
 * bytes a table row (safetensors U8 [rows, bytes]):
 *   FPD_FREE_INT8, FPD_FREE_INT4 (free-rowwise/1): FBGEMM's fused row-wise int8/int4
 *     row (enum fpd_rowwise above: codes, then the row's scale and bias; c + 8 or
 *     ceil(c / 2) + 4 bytes). Equal in value to FPD_ROWWISE_INT8 / FPD_ROWWISE_INT4.
 *   FPD_FREE_INT8_SYM, FPD_FREE_INT4_SYM (free-sym/1): symmetric codes q in
 *     [-127, 127] / [-7, 7] and one scale a row, E[i, j] = q * scale_i, no bias
 *     (c + 2 or ceil(c / 2) + 2 bytes). Codes are offset-binary: int8-sym byte j =
 *     q + 128; int4-sym column j in byte j / 2, even j in the low nibble, nibble = q + 8
 *     (an odd c's last high nibble is 8); then the scale as F16 little-endian.
 *     Quantization: scale = max_j |E[i, j]| / qmax rounded up to F16 (0 for a zero
 *     row), code = round-half-even(E[i, j] / scale). Readers decode every code (-8 and
 *     -128 included, which writers do not produce) and refuse a negative, NaN or Inf
 *     scale.
 * Why the symmetric kinds: E P is linear in E, and E's rows are centred (initialized
 * at zero mean, trained with P), so a bias buys little while FBGEMM's int4 row spends 4
 * of its ceil(c/2) + 4 bytes on scale and bias; in 7 bytes a row (30x with 0.9 of the
 * budget to E and P) int4-sym holds c = 10 where int4 holds c = 6. Measured against a scale per column folded into P (no
 * bytes a row): on Gowalla at 30x (c = 14) that lost Recall@20 0.0960 -> 0.0785, a
 * symmetric F16 row scale 0.0945, FBGEMM's rows 0.0952 (README). */
enum fpd_free_kind {
    FPD_FREE_INT8 = FPD_ROWWISE_INT8,
    FPD_FREE_INT4 = FPD_ROWWISE_INT4,
    FPD_FREE_INT8_SYM,
    FPD_FREE_INT4_SYM,
    FPD_FREE_KIND_COUNT
};
/* "int8", "int4", "int8-sym", "int4-sym"; "?" out of range. */
FPD_API const char *fpd_free_kind_name(enum fpd_free_kind kind);
/* Parse one of those names (exact). Returns false if unknown. */
FPD_API bool fpd_free_kind_from_name(const char *name, enum fpd_free_kind *out);
/* True for FPD_FREE_INT8_SYM and FPD_FREE_INT4_SYM (format extension free-sym/1). */
FPD_API bool fpd_free_kind_is_sym(enum fpd_free_kind kind);
/* Bytes of one stored row of E with c columns: c + 8, ceil(c / 2) + 4, c + 2,
 * ceil(c / 2) + 2 (kind in range, c >= 0). */
FPD_API size_t fpd_free_row_bytes(enum fpd_free_kind kind, int64_t c);

/* Encode E [rows, c] (F32, row-major) as a checkpoint stores it with kind: rows *
 * fpd_free_row_bytes(kind, c) bytes into out (caller-owned). Returns the index of the
 * first row that cannot be stored (NaN or Inf, or a scale beyond F16's range; out
 * undefined), or -1 when all were. */
FPD_API int64_t fpd_free_quantize_rows(enum fpd_free_kind kind, const float *e, int64_t rows, int64_t c,
                                       uint8_t *out);

/* Round E to what a file stores when its free coordinates are quantized (enum
 * fpd_free_kind above; format extensions free-rowwise/1 and free-sym/1, README): each
 * row E[i, :] (c values) is replaced by its stored row decoded, as a reader loads it.
 * P and the cores are unchanged; the layer stays F32 in memory. Used to measure a
 * layer as it will be stored (fpd-compress --free-dtype) or to emulate quantization
 * after training. Every row is checked before any is changed. Rounding again moves no
 * code (int4, int4-sym and int8-sym give the same E; int8 within F32 rounding of its F32
 * scale).
 * Errors: INVALID_ARG (no free coordinates, kind out of range), NOMEM, NUMERIC (a row
 * with NaN/Inf or, int4 and the symmetric kinds, beyond F16's range, naming it; E
 * unchanged). */
FPD_API enum fpd_status fpd_layer_quantize_free(struct fpd_layer *layer, enum fpd_free_kind kind,
                                                struct fpd_error *err);
/* E held as stored (inference): a layer can keep E [rows, c] in memory as the
 * rows a checkpoint of kind stores (fpd_free_row_bytes(kind, c) bytes a row, e.g.
 * int4-sym c = 10: 7 bytes instead of 40 in F32); look-ups (fpd_engine_forward on the
 * CPU engine, fpd_layer_lookup, fpd_layer_reconstruct, ...) decode the rows they use,
 * to exactly the floats fpd_checkpoint_load_layer gives, so results are bit for bit
 * those of the F32 layer loaded from the same file. Training needs E in F32:
 * fpd_engine_backward and fpd_engine_step refuse such a layer (INVALID_ARG) and the
 * CUDA engine does not take it (UNSUPPORTED); fpd_layer_expand_free converts back.
 * P, the cores and the row permutation are unchanged by all of these.
 *
 * Set c free coordinates with E given as stored rows: rows_q [rows,
 * fpd_free_row_bytes(kind, c)] bytes (enum fpd_free_kind's layout) and p [c, dim] F32
 * (NULL: zeros), both copied; replaces any E and P the layer had. Errors: INVALID_ARG
 * (kind out of range, c outside [1, dim], rows_q NULL, a row whose scale or bias is
 * negative (symmetric kinds), NaN or Inf or that decodes beyond F32, naming it; a
 * non-finite P value), NOMEM. */
FPD_API enum fpd_status fpd_layer_set_free_stored(struct fpd_layer *layer, int64_t c, enum fpd_free_kind kind,
                                                  const uint8_t *rows_q, const float *p, struct fpd_error *err);
/* The stored rows of E (borrowed, valid until E or c next changes) and their kind
 * into *kind (if kind is non-NULL), or NULL when E is F32 or there is none. */
FPD_API const uint8_t *fpd_layer_get_free_stored(const struct fpd_layer *layer, enum fpd_free_kind *kind);
/* Row i of E (0 <= i < rows, c > 0) as F32 into out[0..c): the F32 row, or the stored
 * row decoded. */
FPD_API void fpd_layer_free_row(const struct fpd_layer *layer, int64_t i, float *out);
/* Keep E as stored rows of kind: an F32 E is encoded as fpd_free_quantize_rows does
 * (the checkpoint writer's bytes; its values become those fpd_layer_quantize_free
 * gives) and its F32 array freed; a stored E of another kind is decoded and encoded
 * again; of the same kind, nothing changes. Errors: INVALID_ARG (no free coordinates,
 * kind out of range), NOMEM, NUMERIC (a row that kind cannot store, naming it; E's
 * values unchanged, though an E stored in another kind is then held in F32). */
FPD_API enum fpd_status fpd_layer_store_free(struct fpd_layer *layer, enum fpd_free_kind kind,
                                             struct fpd_error *err);
/* Hold E in F32 again (its stored rows decoded; the values do not change); nothing
 * to do when E is F32 or absent. Errors: NOMEM (the layer unchanged). */
FPD_API enum fpd_status fpd_layer_expand_free(struct fpd_layer *layer, struct fpd_error *err);
/* Bytes E and P take in memory now: rows * fpd_free_row_bytes(kind, c) (stored) or
 * 4 rows c (F32), plus 4 c dim for P; 0 without free coordinates. */
FPD_API size_t fpd_layer_free_memory_bytes(const struct fpd_layer *layer);

/* Bytes of c free coordinates of a [rows, dim] table as a checkpoint stores them:
 * E [rows, c] and P [c, dim] in dtype (free/1), or with quantized E (quantized true)
 * as rows of fpd_free_row_bytes(kind, c) bytes and P in dtype. 0 for c <= 0; SIZE_MAX
 * when the count overflows size_t. */
FPD_API size_t fpd_free_coords_bytes(int64_t rows, int64_t dim, int64_t c, enum fpd_dtype dtype, bool quantized,
                                     enum fpd_free_kind kind);

/* A quantized table: borrowed bytes, rows * fpd_rowwise_row_bytes(kind, dim) of them
 * (e.g. a view into an mmapped checkpoint; see fpd_checkpoint_load_rowwise). */
struct fpd_rowwise_table {
    const void *data;
    enum fpd_rowwise kind;
    int64_t rows, dim;
};

/* Quantize every row of w (a float table) into out[rows * row_bytes] (out may be
 * NULL to measure only) and, if rel_error is non-NULL, give the relative Frobenius
 * error ||W - deq(Q(W))||_F / ||W||_F (0 for an all-zero table), in one streaming
 * pass (double accumulation). Errors: DTYPE, NUMERIC (a NaN/Inf value, naming its row
 * and column, or an int4 row beyond F16's range), NOMEM. */
FPD_API enum fpd_status fpd_rowwise_quantize(const struct fpd_table_view *w, enum fpd_rowwise kind, void *out,
                                             double *rel_error, struct fpd_error *err);
/* Rows idx[0..n) of q, dequantized, into out[n * dim] (F32). Errors: INVALID_ARG (an
 * index outside [0, rows), naming it; nothing written). */
FPD_API enum fpd_status fpd_rowwise_lookup(const struct fpd_rowwise_table *q, const int64_t *idx, int64_t n,
                                           float *out, struct fpd_error *err);
/* Rows [row_begin, row_end) of q, dequantized, into out (F32). Errors: INVALID_ARG. */
FPD_API enum fpd_status fpd_rowwise_reconstruct(const struct fpd_rowwise_table *q, int64_t row_begin,
                                                int64_t row_end, float *out, struct fpd_error *err);

/* The accuracy report of fpd_layer_quality (same fields and definitions, baselines
 * included) for a row-wise quantized table q standing for w. Errors: SHAPE (q and w
 * differ in shape), DTYPE, INVALID_ARG, NOMEM. */
FPD_API enum fpd_status fpd_rowwise_quality(const struct fpd_rowwise_table *q, const struct fpd_table_view *w,
                                            const double *row_weights, int64_t queries, uint64_t seed,
                                            struct fpd_quality *out, struct fpd_error *err);

/* ------------------------------------------------------------------------ */
/* Compression pipeline (lib/compress.c)                                     */
/* ------------------------------------------------------------------------ */
/*
 * What fpd-compress does, as one call: open a checkpoint (safetensors, or one .npy
 * table), check and copy the FPD and row-wise tables it already holds, plan every
 * 2-D float table (heuristics/fpd-heuristics.h, fpd_plan_table), store each as FPD
 * (fpd_fit, then the accuracy report fpd_layer_quality and a plain TT-SVD of the
 * same size), as row-wise int8/int4 (fpd_rowwise_quantize) or dense, copy every
 * other tensor and metadata entry, write the FPD v1 checkpoint atomically and
 * return the report as JSON text. fpd-compress, fpd-batch and the Python package
 * (fpd.compress) call it; they differ only in how they print.
 *
 *   struct fpd_compress_params cp = fpd_compress_default_params();   // auto, 0.1
 *   char *report;
 *   if (fpd_compress_checkpoint("model.safetensors", "model.fpd.safetensors", &cp, &report, &err))
 *       ... err.msg names the file and the tensor; nothing was written ...
 *   ... report: {"schema": "fpd-compress/2", "tables": [...], "totals": {...}, ...} ...
 *   fpd_free(report);
 *
 * The report (schema "fpd-compress/2", README "JSON reports"): "input", "output",
 * "core_dtype", "encoding", "max_error", "warnings" (strings), "passed_through"
 * (tables already encoded in the input), "tables" (one object per 2-D float
 * tensor: name, rows, dim, dtype, compressed, encoding, why/reason, r, p, k, shapes,
 * bytes_before, bytes_after, ratio, rel_error, cosines, recall@10, baselines) and
 * "totals" (tables_compressed, tables_fpd, tables_int8, tables_int4, bytes_before,
 * bytes_after, ratio). bytes_after counts the tensors the table is written as.
 *
 * The library never prints: each warning (a target missed, a table that grows, a
 * rank capped by the shape) is in the report's "warnings" and goes through the log
 * callback (fpd_log_set) at FPD_LOG_LEVEL_WARN, as does "no table qualified".
 */

struct fpd_plan_params; /* heuristics/fpd-heuristics.h */
struct fpd_input;       /* formats/fpd-formats.h */

/* How a table is stored. AUTO: per table, the smallest of FPD (the planner's pick
 * under the target), INT4 and INT8 whose measured relative error is at most
 * max_error; dense when none is. */
enum fpd_compress_encoding { FPD_COMPRESS_ENCODING_FPD = 0, FPD_COMPRESS_ENCODING_AUTO, FPD_COMPRESS_ENCODING_INT8,
                             FPD_COMPRESS_ENCODING_INT4, FPD_COMPRESS_ENCODING_DENSE, FPD_COMPRESS_ENCODING_COUNT };
/* "fpd" "auto" "int8" "int4" "dense" ("?" out of range); static. */
FPD_API const char *fpd_compress_encoding_name(enum fpd_compress_encoding e);
/* The encoding named s; false (out untouched) when s names none. */
FPD_API bool fpd_compress_encoding_from_name(const char *s, enum fpd_compress_encoding *out);

/* The default quality target, a relative Frobenius error (README: "Choosing
 * --max-error"). */
#define FPD_COMPRESS_DEFAULT_MAX_ERROR 0.1

/* Polled between tables and stages; return true to stop (the call then returns
 * FPD_STATUS_CANCELLED and writes nothing). A tool's signal handler sets a flag
 * that its callback reads. */
typedef bool (*fpd_cancel_callback)(void *user_data);

struct fpd_compress_params {
    enum fpd_compress_encoding encoding; /* default AUTO                                  */
    double max_error;      /* quality target per table (default 0.1); 0: plan->max_error,
                              the planner's FPD target. AUTO meets it or keeps the table
                              dense; FPD, INT8 and INT4 that miss it get a warning      */
    const struct fpd_plan_params *plan; /* shapes, (r, p), k, eligibility, core dtype;
                              borrowed; NULL: fpd_plan_default_params(). A rank, terms,
                              budget or ratio target forces FPD                         */
    struct fpd_fit_params fit; /* fit and finetune (fpd_fit_default_params()); its
                              progress and progress_user_data are replaced: use the
                              fields below. free_coords c > 0: every FPD table gets c
                              free coordinates (fpd_fit_free_coords; format free/1:
                              T.fpd.free [N, c] and T.fpd.free_proj [c, D] in the core
                              dtype, "free/1" in fpd.extensions); c above a table's
                              dimension is a CONFIG error naming it. The planner's
                              targets (budget, ratio, max_error) size the cores; the
                              c (N + D) values come on top and are in the report's
                              bytes_after, ratio and params. free_coords =
                              FPD_FREE_COORDS_AUTO (fpd-heuristics.h, "FREE
                              COORDINATES"): the planner chooses each table's c
                              from the table's data (per table, possibly 0), and
                              then its targets cover the cores and the c (N + D)
                              values together; it needs a target (plan->budget_bytes,
                              plan->min_ratio_target or a max_error: INVALID_ARG
                              without one). fit.row_perm must be NULL
                              (INVALID_ARG; a table's order: order_files below)        */
    const char *const *tables; /* compress only these names [n_tables] (each must
                              exist and be a 2-D float table, compressed whatever its
                              size); NULL: every qualifying table. Borrowed            */
    int64_t n_tables;
    /* row-frequency files (fpd_row_freq_load): table row_freq_tables[i] (NULL, or a
     * NULL array: the only table compressed) is fitted weighted by the counts in
     * row_freq_files[i] [n_row_freq]. Borrowed. */
    const char *const *row_freq_tables;
    const char *const *row_freq_files;
    int64_t n_row_freq;
    int64_t recall_queries; /* query rows of the recall@10 estimate (default 200; 0 off) */
    bool overwrite;         /* replace an existing output (default false)              */
    /* progress: stage "table i/n NAME: STAGE" (STAGE as fpd_fit reports it, e.g.
     * "finetune"), done out of total; return false to cancel. NULL: none. */
    fpd_progress_callback progress;
    void *progress_user_data;
    fpd_cancel_callback cancel; /* NULL: never cancelled                               */
    void *cancel_user_data;
    /* fpd_compress_write_init only: order the new table's rows from implicit feedback
     * before training (issue: training with the layer needs related ids to share
     * leading digits): the interactions file (fpd_ncf_interactions_load, ids
     * init_id_base-based), the table's ids in column init_column (0: the first, e.g.
     * users; 1: the second, items); fpd_row_order_interactions (16 dimensions, the
     * init seed), stored as the table's row_perm. NULL: no order. */
    const char *init_interactions;
    int64_t init_id_base;     /* also the id base of order_files                          */
    int32_t init_column;
    /* fpd_compress_checkpoint / fpd_compress_input: order a trained table's rows from
     * implicit feedback before the fit, as init_interactions orders a new table's:
     * table order_tables[i] (NULL array or entry: the only table compressed) from the
     * interactions file order_files[i] (fpd_ncf_interactions_load, ids
     * init_id_base-based), its ids in column order_columns[i] (0: the first, 1: the
     * second; NULL array: 0); fpd_row_order_interactions (16 dimensions, fit.seed) on the
     * planned shape, passed to fpd_fit as fit.row_perm and stored as the table's
     * row_perm [n_order]. An ordered table must not also get fit.cluster_rows
     * (INVALID_ARG). The report's FPD tables carry "row_order" (null, or what ordered
     * them). Borrowed. */
    const char *const *order_tables;
    const char *const *order_files;
    const int32_t *order_columns;
    int64_t n_order;
    /* E of the free coordinates stored quantized as free_kind rows (enum
     * fpd_free_kind: int8/int4, FBGEMM's fused rows, extension free-rowwise/1, c + 8 or
     * ceil(c/2) + 4 bytes a row; int8-sym/int4-sym, extension free-sym/1, c + 2 or
     * ceil(c/2) + 2 bytes a row; P stays in the core dtype): every FPD table with
     * free coordinates is measured as stored (fpd_layer_quantize_free before its
     * quality report) and its free_bytes, bytes_after and ratio count those bytes.
     * Needs free coordinates: fit.free_coords = c >= 1, or FPD_FREE_COORDS_AUTO (the
     * planner then sizes E as these rows: fpd_plan_params.free_rowwise); INVALID_ARG
     * with none. false: E in the core dtype. */
    bool free_rowwise;
    enum fpd_free_kind free_kind;
};
/* Defaults: AUTO, max_error 0.1, plan NULL, fpd_fit_default_params(), every table,
 * no row frequencies, 200 recall queries, no overwrite, no callbacks. */
FPD_API struct fpd_compress_params fpd_compress_default_params(void);

/* Compress the checkpoint at in_path (safetensors, or one .npy table whose tensor
 * is named after the file's stem) into out_path (FPD v1 safetensors, written
 * atomically; the caller checks that out_path is not in_path). On success
 * *report_json is the report as JSON text (fpd_malloc; free with fpd_free); on
 * failure it is NULL and nothing is written. Errors name the file and the tensor:
 * DTYPE (a .npy input that is not a 2-D float table, not named in params->tables),
 * CONFIG (the params do not fit the input: a table in params->tables missing or
 * not a 2-D float table, a row-frequency file
 * that cannot be read or does not fit its table, a budget or ratio target that no
 * candidate meets, free coordinates above a table's dimension), CANCELLED
 * (params->progress or params->cancel), INVALID_ARG (a bad params field, such as
 * fit.free_coords < 0 other than FPD_FREE_COORDS_AUTO, or that without a target),
 * FORMAT (an input that already has a tensor an output needs),
 * IO, and those of the readers, fpd_checkpoint_verify_table, fpd_plan_table,
 * fpd_fit, fpd_layer_quality, fpd_rowwise_quantize and fpd_safetensors_write
 * (IO: out_path exists without overwrite), NOMEM. */
FPD_API enum fpd_status fpd_compress_checkpoint(const char *in_path, const char *out_path,
                                                const struct fpd_compress_params *params, char **report_json,
                                                struct fpd_error *err);
/* The same on an input already open (fpd_input_open, fpd_input_open_memory, e.g.
 * standard input read into memory), named in_path in messages and in the report.
 * The input is borrowed and stays open. */
FPD_API enum fpd_status fpd_compress_input(const struct fpd_input *in, const char *in_path, const char *out_path,
                                           const struct fpd_compress_params *params, char **report_json,
                                           struct fpd_error *err);
/* Training from scratch: write to out_path (atomically; params->overwrite) an FPD
 * table `name` [rows, dim] of random cores from fpd_init (ip; shape and (r, p) from
 * params->plan, min_rows and min_ratio ignored; cores in its core_dtype).
 * *report_json (free with fpd_free) has schema "fpd-compress/2" and key "init": the
 * shape, sizes, the init and the realized mean and variance of the stored table
 * (after rounding to the core dtype) with the target variance, and "row_order"
 * (null, or what params->init_interactions gave: the rows ordered from implicit
 * feedback and stored as row_perm). Errors: CONFIG (no shape for rows, dim and the
 * plan options; an interaction id beyond rows), those of fpd_init,
 * fpd_ncf_interactions_load, fpd_row_order_interactions and fpd_safetensors_write,
 * NOMEM. */
FPD_API enum fpd_status fpd_compress_write_init(const char *out_path, const char *name, int64_t rows, int64_t dim,
                                                const struct fpd_init_params *ip,
                                                const struct fpd_compress_params *params, char **report_json,
                                                struct fpd_error *err);

/* ------------------------------------------------------------------------ */
/* Sizes                                                                     */
/* ------------------------------------------------------------------------ */

/* A byte count written as a number (a fraction allowed, rounded down) with an
 * optional unit, a space allowed before it: none or B, K/KiB, M/MiB, G/GiB, T/TiB
 * (powers of 1024), kB/KB, MB, GB, TB (powers of 1000); e.g. "1048576", "512K",
 * "1.5MiB", "2 GB". True and *out set when s is one and below 1.8e19; false
 * otherwise (out untouched). 0 is a size. */
FPD_API bool fpd_size_parse(const char *s, uint64_t *out);

#ifdef __cplusplus
}
#endif
#endif /* FPD_H */
