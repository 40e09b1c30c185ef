/*
 * ncf.h - NCF GMF checkpoints and data for the fpd tools: load a GMF checkpoint
 * whose tables are dense or FPD v1, read the NCF leave-one-out test files and
 * interaction files, evaluate HR@10 / NDCG@10, finetune the tables on the model's
 * own loss (task-aware finetuning) and write the checkpoint back, and rebuild the
 * NCF item numbering from MovieLens-1M ratings. The math is in lib/ncf.c
 * (fpd_gmf_rank, fpd_gmf_train); this is the file handling. Not library API.
 *
 * A GMF checkpoint (He et al., WWW 2017; the NCF authors' Pretrain/ml-1m_GMF_8)
 * holds user_embedding.weight [U, D], item_embedding.weight [I, D] (each dense,
 * or compressed as FPD v1: T.fpd.core*, fpd.table.T), prediction.weight [1, D]
 * and prediction.bias [1]; score = sigmoid(sum((u * i) * w) + b).
 *
 * Calls for fpd-compress (before/after metrics and task-aware finetuning):
 *
 *   struct ncf_metrics before, after;
 *   ncf_eval_file(in_path, rating, negative, &before, &err);
 *   ... compress_checkpoint(in_path, out_path, ...) ...
 *   struct fpd_gmf_train_params tp = ncf_finetune_default_params();
 *   struct ncf_finetune_report rep;
 *   ncf_finetune_file(out_path, train_path, out_path, true, &tp, rating, negative, in_path, &rep, &err);
 *   json_object_set_new(report, "eval", ncf_eval_json(&before, &rep.after));
 */
#ifndef FPD_NCF_H
#define FPD_NCF_H

#include "tools/cli.h"

#include <jansson.h>

#define NCF_USER_TABLE "user_embedding.weight"
#define NCF_ITEM_TABLE "item_embedding.weight"
#define NCF_PRED_WEIGHT "prediction.weight"
#define NCF_PRED_BIAS "prediction.bias"

/* ---------------------------------------------------------------- data files */

/* The NCF leave-one-out test set: per user, the held-out item and its sampled
 * negatives. */
struct ncf_test {
    int64_t n;         /* users (lines)                                            */
    int64_t n_cand;    /* 1 + negatives per user (100 in NCF)                      */
    int64_t *users;    /* [n]                                                      */
    int64_t *cand;     /* [n * n_cand]; cand[t * n_cand] is the held-out item      */
};
/* Read TEST.rating ("user\titem[\trating\ttimestamp]" per line, 0-based ids) and
 * TEST.negative ("(user,item)\tneg1\t...\tnegK" per line, in the same order; every
 * line the same K). Errors: IO, FORMAT ("PATH:LINE: ..."), NOMEM. Free with
 * ncf_test_free (also after a failure). */
enum fpd_status ncf_test_load(const char *rating, const char *negative, struct ncf_test *out,
                              struct fpd_error *err);
void ncf_test_free(struct ncf_test *t);

/* Interactions (implicit feedback): one "user item [rating ...]" per line,
 * separated by tabs, spaces or commas; a first line that does not start with a
 * number is a header and skipped; extra fields are ignored. Ids are id_base-based
 * in the file (0 for NCF's files, 1 for MovieLens) and 0-based in memory. */
struct ncf_interactions {
    int64_t n;
    int64_t *users, *items;   /* [n], 0-based                    */
    float *ratings;           /* [n], NAN where the line has none */
    int64_t n_users, n_items; /* 1 + the largest ids             */
};
/* Errors: IO, FORMAT ("PATH:LINE: ..."; an id below id_base), NOMEM. Free with
 * ncf_interactions_free (also after a failure). */
enum fpd_status ncf_interactions_load(const char *path, int64_t id_base, struct ncf_interactions *out,
                                      struct fpd_error *err);
void ncf_interactions_free(struct ncf_interactions *x);

/* ---------------------------------------------------------------- models */

/* A GMF model in memory. Tables are F32 copies (dense) or layers (FPD). */
struct ncf_model {
    struct fpd_safetensors *st;     /* the checkpoint it came from, or NULL          */
    struct fpd_gmf gmf;             /* views of the members below                    */
    float *dense[2];                /* user, item: dense F32 [rows, dim] or NULL     */
    struct fpd_layer *layer[2];     /* user, item: FPD layers or NULL                */
    struct fpd_table_meta meta[2];  /* FPD metadata (written with the layer)         */
    enum fpd_dtype dtype[2];        /* stored dtype of a dense table                 */
    const char *encoding[2];        /* "int8"/"int4" for a row-wise table read
                                       dequantized into dense[], else NULL (static)  */
    enum fpd_dtype pred_dtype[2];   /* stored dtypes of prediction weight, bias      */
    float *weight;                  /* [dim]                                          */
};
/* Open a GMF checkpoint: each of the two tables dense (2-D float tensor) or FPD
 * (fpd.table.T metadata and cores, via fpd_checkpoint_load_layer); prediction.weight
 * [1, D] or [D] and prediction.bias [1] or a scalar. Errors: IO, FORMAT (a missing
 * tensor, shapes that do not fit: "PATH: ..."), NOMEM. Free with ncf_model_free
 * (also after a failure). */
enum fpd_status ncf_model_load(const char *path, struct ncf_model *m, struct fpd_error *err);
/* A model from parts (for a trainer): table i (0 user, 1 item) is dense[i] (F32
 * [rows[i], dim]) or layer[i]; the model takes ownership of both (freed by
 * ncf_model_free, also after a failure); weight [dim] is copied. Set meta[i] of an
 * FPD table before ncf_model_save. Errors: SHAPE, NOMEM. */
enum fpd_status ncf_model_init(struct ncf_model *m, float *const dense[2], struct fpd_layer *const layer[2],
                               const int64_t rows[2], int64_t dim, const float *weight, float bias,
                               struct fpd_error *err);
/* Free everything the model owns (and the checkpoint handle); zeroes it. */
void ncf_model_free(struct ncf_model *m);
/* Write the model as a safetensors checkpoint (atomic; FPD_WRITE_OVERWRITE when
 * overwrite): dense tables as F32 (or their source dtype when loaded), FPD tables as
 * cores in meta.core_dtype (F32 when unknown) with their row_perm and "fpd.table.T",
 * prediction.weight [1, D] and prediction.bias [1]. Every other tensor and metadata
 * entry of the source checkpoint (m->st) is copied unchanged. Errors: as
 * fpd_safetensors_write, NOMEM. */
enum fpd_status ncf_model_save(const struct ncf_model *m, const char *path, bool overwrite, struct fpd_error *err);

/* ---------------------------------------------------------------- evaluation */

struct ncf_metrics {
    double hr10, ndcg10;   /* HR@10, NDCG@10 (NCF protocol)      */
    int64_t users;
};
/* Rank each user's held-out item among its candidates (fpd_gmf_rank, k = 10). */
enum fpd_status ncf_model_eval(const struct ncf_model *m, const struct ncf_test *t, struct ncf_metrics *out,
                               struct fpd_error *err);
/* Load ckpt (dense or FPD) and the test files, evaluate, free. Errors: as
 * ncf_model_load, ncf_test_load, INVALID_ARG (a test id outside the tables; the
 * message names the checkpoint and the id). */
enum fpd_status ncf_eval_file(const char *ckpt, const char *rating, const char *negative, struct ncf_metrics *out,
                              struct fpd_error *err);
/* {"hr10": .., "ndcg10": .., "users": ..} */
json_t *ncf_metrics_json(const struct ncf_metrics *m);
/* {"hr10_before", "ndcg10_before", "hr10_after", "ndcg10_after", "hr10_drop"} (the
 * object fpd-compress reports as "eval"). */
json_t *ncf_eval_json(const struct ncf_metrics *before, const struct ncf_metrics *after);

/* ---------------------------------------------------------------- task-aware finetune */

/* The defaults of task-aware finetuning: fpd_gmf_train_default_params() with 10
 * epochs, batch 1024 samples, 4 negatives, learning rate 1e-3 for weight and bias,
 * core step 1e-2 relative to each core's RMS, prediction weights trainable. */
struct fpd_gmf_train_params ncf_finetune_default_params(void);

struct ncf_finetune_report {
    bool evaluated;                 /* test files given                             */
    struct ncf_metrics before, after;
    int64_t positives, epochs;
    double final_loss, seconds, seconds_per_epoch;
    double rel_error[2];            /* user, item vs the reference (NAN: none)      */
};
/* Task-aware finetuning: load ckpt_in (a GMF checkpoint, typically with FPD
 * tables), read the interactions (0-based ids matching the tables), train with
 * fpd_gmf_train (gradients through the FPD cores; dense tables are trained as
 * dense rows), and write ckpt_out (may be ckpt_in with overwrite). Each FPD
 * table's metadata gets fit "+task" and, when ref_ckpt (may be NULL) has the dense
 * table, rel_error against it (else null). With params->distill > 0 and no
 * params->teacher, ref_ckpt (required then) is loaded as the teacher. With
 * rating/negative (may be NULL) the
 * model is evaluated before and after. rep (may be NULL). Errors: as the loaders,
 * fpd_gmf_train and ncf_model_save; INVALID_ARG (an interaction id outside the
 * tables). */
enum fpd_status ncf_finetune_file(const char *ckpt_in, const char *interactions, const char *ckpt_out,
                                  bool overwrite, const struct fpd_gmf_train_params *params, const char *rating,
                                  const char *negative, const char *ref_ckpt, struct ncf_finetune_report *rep,
                                  struct fpd_error *err);
/* The report as JSON: {"positives", "epochs", "seconds", "seconds_per_epoch",
 * "final_loss", "before": {...}, "after": {...}} (before/after only when evaluated). */
json_t *ncf_finetune_report_json(const struct ncf_finetune_report *rep);

/* ---------------------------------------------------------------- MovieLens -> NCF ids */

/* What ncf_movielens_map found; see ncf.c for the method. */
struct ncf_map_report {
    int64_t users, items, ratings, groups;
    int64_t test_unrated;      /* held-out items the user has no rating for (0 expected)     */
    int64_t test_out_of_group; /* held-out ids outside their user's first-rater groups (0)   */
    int64_t neg_rated, neg_total; /* test negatives that the user did rate, of all negatives */
    int64_t tied_ids;          /* ids whose constraints did not single out one item          */
    int64_t tied_ratings;      /* ratings of those items                                     */
    bool model_tiebreak;       /* ties broken by the checkpoint's scores (else by order)     */
    int64_t train;             /* training interactions (ratings minus held-out)             */
    double hr10_test;          /* the model on the test set                                  */
    double hr10_train;         /* the model on one random training positive per user, ranked
                                  among that user's 99 test negatives (untied items only)    */
    double hr10_train_shuffled;/* the same with item ids shuffled: what a wrong map gives    */
};
/* Rebuild the NCF Data/ item numbering from MovieLens-1M ratings (users 1..6040,
 * items renumbered 1..3706, no timestamps; ratings 0-based in memory, as read by
 * ncf_interactions_load(path, 1, ...)). item_map[j] receives the NCF id of rating
 * item j (users are the same, minus one). model (may be NULL) breaks ties and
 * gives the HR checks. Errors: SHAPE (user or item counts differ from the test
 * set's or the model's), FORMAT (the structure the method relies on is absent),
 * NOMEM. */
enum fpd_status ncf_movielens_map(const struct ncf_interactions *ratings, const struct ncf_test *test,
                                  const struct ncf_model *model, int64_t *item_map, struct ncf_map_report *rep,
                                  struct fpd_error *err);
/* Write the training interactions (every rating except each user's held-out item)
 * in NCF ids as "user\titem\trating" lines, sorted, atomically (temporary file and
 * rename; refuses an existing path unless overwrite). *n_out (may be NULL) gets the
 * line count. Errors: IO, NOMEM. */
enum fpd_status ncf_write_train(const char *path, const struct ncf_interactions *ratings, const int64_t *item_map,
                                const struct ncf_test *test, bool overwrite, int64_t *n_out, struct fpd_error *err);
json_t *ncf_map_report_json(const struct ncf_map_report *r);

#endif
