/*
 * compress.h - how fpd-compress and fpd-batch call the library's compression
 * pipeline (fpd_compress_checkpoint, fpd_compress_write_init in lib/fpd.h) and
 * print its report. The work is in lib/compress.c; this is the command-line side:
 * the tools' options struct, progress on stderr, SIGINT/SIGTERM, warnings on
 * stderr, errors printed and statuses mapped to exit codes. Not library API.
 */
#ifndef FPD_COMPRESS_H
#define FPD_COMPRESS_H

#include "tools/cli.h"

#include <jansson.h>

/* The tools' names of the library's encodings (enum fpd_compress_encoding, same
 * values). AUTO: per table, the smallest of FPD, INT4 and INT8 that meets the
 * target; dense when none does. */
enum compress_encoding { COMPRESS_ENC_FPD = FPD_COMPRESS_ENCODING_FPD, COMPRESS_ENC_AUTO = FPD_COMPRESS_ENCODING_AUTO,
                         COMPRESS_ENC_INT8 = FPD_COMPRESS_ENCODING_INT8, COMPRESS_ENC_INT4 = FPD_COMPRESS_ENCODING_INT4,
                         COMPRESS_ENC_DENSE = FPD_COMPRESS_ENCODING_DENSE };
/* "fpd" "auto" "int8" "int4" "dense", and back (false if unknown): the library's. */
const char *compress_encoding_name(enum compress_encoding e);
bool compress_encoding_from_name(const char *s, enum compress_encoding *out);

/* fpd-compress's default quality target (README: "Choosing --max-error"). */
#define COMPRESS_DEFAULT_MAX_ERROR FPD_COMPRESS_DEFAULT_MAX_ERROR
#define COMPRESS_DEFAULT_MAX_ERROR_STR "0.1"

struct compress_options {
    enum compress_encoding encoding; /* COMPRESS_ENC_FPD by default (fpd-batch);
                                    fpd-compress defaults to AUTO                 */
    bool quiet;                   /* warnings only in the report, not on stderr      */
    bool interrupt_said_by_caller; /* an interruption is not reported here (fpd-batch
                                     says what it kept)                              */
    double max_error;             /* quality target per table (relative Frobenius
                                     error); 0: plan.max_error, which is also the
                                     planner's target for FPD                       */
    struct fpd_plan_params plan;  /* shapes, (r, p), eligibility                     */
    struct fpd_fit_params fit;    /* fit and finetune (progress is set internally)   */
    char **tables;                /* compress only these (NULL: every qualifying)    */
    int n_tables;
    bool force;                   /* overwrite an existing output                    */
    int progress_mode;            /* -1 off, 0 when stderr is a terminal, 1 on       */
    /* row-frequency files: row_freq_tables[i] (NULL: the only compressed table)
     * uses the counts in row_freq_files[i] (fpd_row_freq_load) */
    const char **row_freq_tables, **row_freq_files;
    int n_row_freq;
    int64_t recall_queries;       /* query rows of the recall@10 estimate (200)      */
    /* --init only: the row order from interactions (fpd_compress_params.init_*) */
    const char *init_interactions;
    int64_t init_id_base;         /* also the id base of order_files                  */
    int32_t init_column;
    /* --order-from: table order_tables[i] (NULL: the only compressed table) ordered from
     * the interactions order_files[i], ids in column order_columns[i] (0 or 1)
     * (fpd_compress_params.order_*) */
    const char **order_tables, **order_files;
    const int32_t *order_columns;
    int n_order;
    /* --free-dtype int8|int4: E stored row-wise (fpd_compress_params.free_rowwise) */
    bool free_rowwise;
    enum fpd_free_kind free_kind;
};
struct compress_options compress_default_options(void);

/* fpd_compress_input on in_path ("-": standard input, read into memory) with opt:
 * progress drawn on stderr (opt->progress_mode, with a rate and an ETA), SIGINT and
 * SIGTERM turned into a cancellation (cli_install_signals), the library's warnings
 * printed on stderr unless opt->quiet. On success *report is the report (schema
 * "fpd-compress/2"; free with json_decref). Errors are printed to stderr and nothing
 * is written. Returns a CLI exit code: 0, 1 (runtime), 2 (FPD_STATUS_CONFIG: a
 * table named in tables is missing or not a 2-D float tensor, a bad row-frequency
 * file, plan options no candidate meets; a .npy input that is not a 2-D float table
 * is bad data: 1), 128 + signal (interrupted by SIGINT/SIGTERM). */
int compress_checkpoint(const char *in_path, const char *out_path, const struct compress_options *opt,
                        json_t **report);

/* fpd_compress_write_init with opt->plan and opt->force; *report (schema
 * "fpd-compress/2", key "init"). Returns a CLI exit code (2: no shape for the plan
 * options). */
int compress_init_checkpoint(const char *out_path, const char *name, int64_t rows, int64_t dim,
                             const struct fpd_init_params *ip, const struct compress_options *opt, json_t **report);
void compress_print_init_report(const json_t *report, FILE *f);

/* The human-readable table of a report. */
void compress_print_report(const json_t *report, FILE *f);

#endif
