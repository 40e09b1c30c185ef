/*
 * compress.h - the compression pipeline of fpd-compress, shared with fpd-batch.
 * Not library API.
 */
#ifndef FPD_COMPRESS_H
#define FPD_COMPRESS_H

#include "tools/cli.h"

#include <jansson.h>

/* How a table is stored. AUTO: per table, the smallest of FPD (the planner's pick
 * under plan.max_error), INT4 and INT8 whose measured relative error is at most
 * plan.max_error; dense when none is. */
enum compress_encoding { COMPRESS_ENC_FPD = 0, COMPRESS_ENC_AUTO, COMPRESS_ENC_INT8, COMPRESS_ENC_INT4,
                         COMPRESS_ENC_DENSE };
/* "fpd" "auto" "int8" "int4" "dense", and back (false if unknown). */
const char *compress_encoding_name(enum compress_encoding e);
bool compress_encoding_from_name(const char *s, enum compress_encoding *out);

/* fpd-compress's default quality target (README: "Choosing --max-error"). */
#define COMPRESS_DEFAULT_MAX_ERROR 0.1
#define COMPRESS_DEFAULT_MAX_ERROR_STR "0.1"

struct compress_options {
    enum compress_encoding encoding; /* COMPRESS_ENC_FPD by default (fpd-batch);
                                    fpd-compress defaults to AUTO                 */
    bool quiet;                   /* warnings only in the report, not on stderr      */
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
     * uses the counts in row_freq_files[i] (cli_load_row_freq) */
    const char **row_freq_tables, **row_freq_files;
    int n_row_freq;
    int64_t recall_queries;       /* query rows of the recall@10 estimate (200)      */
};
struct compress_options compress_default_options(void);

/* Compress the checkpoint at in_path (safetensors, or one .npy table) into
 * out_path (FPD v1 safetensors, written atomically; the caller has checked that
 * out_path is not in_path). On success *report is the report (schema
 * "fpd-compress/2"; free with json_decref). max_error is the quality target:
 * AUTO meets it or keeps the table dense; FPD (and --rank/--terms), INT8 and INT4
 * that miss it, and tables that grow, get an entry in the report's "warnings" (also
 * printed unless quiet). FPD and row-wise tables already in the input are checked
 * (fpd_checkpoint_verify_table, deep) and copied. Errors are printed to stderr (naming
 * the file and tensor) and nothing is written. Returns a CLI exit code: 0, 1
 * (runtime), 2 (a table named in tables is missing or not a 2-D float tensor, or
 * a .npy input that is not one), 128 + signal (interrupted by SIGINT/SIGTERM). */
int compress_checkpoint(const char *in_path, const char *out_path, const struct compress_options *opt,
                        json_t **report);

/* Training from scratch: write an FPD table `name` [rows, dim] of random cores
 * from fpd_init (shape and (r, p) from opt->plan, cores in opt->plan.core_dtype) to
 * out_path; *report (schema "fpd-compress/2", key "init") gives the shape, sizes and
 * the realized mean and variance of the stored table. Returns a CLI exit code. */
int compress_init_checkpoint(const char *out_path, const char *name, int64_t rows, int64_t dim,
                             const struct fpd_init_params *ip, const struct compress_options *opt, json_t **report);
void compress_print_init_report(const json_t *report, FILE *f);

/* The human-readable table of a report. */
void compress_print_report(const json_t *report, FILE *f);

#endif
