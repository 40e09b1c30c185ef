/*
 * batch.h - the pipeline file of fpd-batch: YAML (libyaml) parsed and validated into
 * a struct batch_pipeline, and the per-table settings it gives. Not library API.
 *
 * Schema (version 1; every key optional unless marked required; relative paths are
 * relative to the folder of the YAML file, so the pipeline runs the same from any
 * working directory, e.g. on every node of a Slurm job array):
 *
 *   version: 1
 *   inputs:                      # required: paths and glob patterns (safetensors or .npy)
 *     - model.safetensors
 *     - "table-*.npy"            # a glob pattern: must match at least one file
 *   output:
 *     folder: out                # required; output = folder/<input stem><suffix>
 *     suffix: .fpd.safetensors   # default
 *   report:
 *     json: out/report.json      # default folder/report.json: every table of every checkpoint
 *     markdown: out/report.md    # default folder/report.md: the summary table
 *   select:                      # which 2-D float tables are compressed, per checkpoint
 *     include: ["*"]             # name patterns (fnmatch), a string or a list
 *     exclude: []
 *     min_rows: 1000             # fewer rows: kept dense
 *     min_bytes: 0               # an integer or "64KiB", "2 MB", "1GiB"
 *     largest: 0                 # only the K largest selected tables (0: all)
 *   defaults:  SETTINGS          # for every table
 *   tables:                      # per-table overrides, applied in order (later wins)
 *     - match: "user_*"          # required: pattern on the table name
 *       checkpoint: "ncf*"       # optional: pattern on the input's file name or path
 *       SETTINGS
 *
 * SETTINGS: rank (r), terms (p), cores (k), core_dtype (F32|F16|BF16), min_ratio,
 * epochs, batch_rows, learning_rate, seed, backfit_sweeps, backfit_tol (mapped onto
 * struct fpd_plan_params and struct fpd_fit_params), recall_queries, row_freq (a
 * row-frequency file for the table, as fpd-compress --row-freq), device (auto|cpu|cuda),
 * compress (true: compress even when select rules out the table; false: keep it
 * dense), and the planner's targets (struct fpd_plan_params): budget (bytes, as
 * min_bytes: the largest candidate within it), ratio (> 1: the largest candidate at
 * least this many times smaller), max_error (> 0: the smallest candidate whose
 * predicted relative error, from the table's data, is at most this).
 */
#ifndef FPD_BATCH_H
#define FPD_BATCH_H

#include "tools/cli.h"
#include "tools/compress.h"
#include "tools/device.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* Which fields of struct batch_settings are set. */
enum {
    BATCH_SET_RANK = 1u << 0, BATCH_SET_TERMS = 1u << 1, BATCH_SET_CORES = 1u << 2,
    BATCH_SET_CORE_DTYPE = 1u << 3, BATCH_SET_MIN_RATIO = 1u << 4, BATCH_SET_EPOCHS = 1u << 5,
    BATCH_SET_BATCH_ROWS = 1u << 6, BATCH_SET_LR = 1u << 7, BATCH_SET_SEED = 1u << 8,
    BATCH_SET_SWEEPS = 1u << 9, BATCH_SET_TOL = 1u << 10, BATCH_SET_DEVICE = 1u << 11,
    BATCH_SET_COMPRESS = 1u << 12, BATCH_SET_BUDGET = 1u << 13, BATCH_SET_RATIO = 1u << 14,
    BATCH_SET_MAX_ERROR = 1u << 15, BATCH_SET_RECALL = 1u << 16, BATCH_SET_ROW_FREQ = 1u << 17,
};

enum batch_device { BATCH_DEVICE_AUTO = 0, BATCH_DEVICE_CPU, BATCH_DEVICE_CUDA };

struct batch_mark {
    int64_t line, column; /* 1-based; 0 when unknown */
};

struct batch_settings {
    unsigned set;
    int64_t rank, terms;
    int32_t cores;
    enum fpd_dtype core_dtype;
    double min_ratio;
    int64_t epochs, batch_rows;
    double learning_rate;
    uint64_t seed;
    int64_t backfit_sweeps;
    double backfit_tol;
    enum batch_device device;
    bool compress;
    int64_t budget;      /* bytes */
    double ratio, max_error;
    int64_t recall_queries;
    char *row_freq;      /* row-frequency file (path resolved); owned by the pipeline */
    struct batch_mark compress_mark; /* where compress was set (for reasons) */
};

struct batch_override {
    char *match;         /* table name pattern                       */
    char *checkpoint;    /* NULL, or a pattern on the input path/name */
    struct batch_settings s;
    struct batch_mark mark;
};

struct batch_input {
    char *path;          /* as resolved (relative to the YAML's folder)   */
    char *name;          /* file name                                     */
    char *output;        /* folder/<stem><suffix>                         */
    char *output_base;   /* <stem><suffix>                                */
    const char *spec;    /* the inputs entry it came from (borrowed)      */
    struct batch_mark mark;
};

struct batch_pipeline {
    char *file;           /* the YAML path as given                          */
    char *dir;            /* its folder                                      */
    struct batch_input *inputs;
    int64_t n_inputs;
    char **specs;         /* the inputs entries as written                   */
    int64_t n_specs;
    char *folder, *suffix;
    char *report_json, *report_md;
    char **include, **exclude;
    int64_t n_include, n_exclude;
    int64_t min_rows, min_bytes, largest;
    struct batch_settings defaults;
    struct batch_override *overrides;
    int64_t n_overrides;
};

/* Parse and validate the pipeline at path: YAML syntax (read event by event:
 * lists and mappings nested at most 64 deep, at most 100,000 nodes counting an
 * alias as the nodes it repeats, no tags such as !!binary or !!str, one document),
 * the schema (unknown keys, types, ranges, duplicates), the inputs (each exists and
 * opens as a checkpoint; each pattern matches), distinct output paths, no input
 * among the outputs, the output folder and the reports' folders (each is a
 * writable folder or can be created as one), and device: cuda (CUDA device 0
 * opened: the backend loads, has the device and the engine's operations;
 * cli_backend_open). Nothing is written. On failure err
 * has the status (CONFIG: a wrong file, with err->line/column 1-based when the
 * problem has a place; BACKEND: device cuda without a CUDA device; IO: the file
 * cannot be read) and a message without the file name. Free with
 * batch_pipeline_free. */
enum fpd_status batch_pipeline_load(const char *path, struct batch_pipeline **out, struct fpd_error *err);
/* The same from the file's bytes (buf[0..len), borrowed); path is used as the
 * YAML file's path (its folder resolves relative paths). For tests and fuzzing. */
enum fpd_status batch_pipeline_parse(const char *path, const unsigned char *buf, size_t len,
                                     struct batch_pipeline **out, struct fpd_error *err);
void batch_pipeline_free(struct batch_pipeline *p);

/* The settings for table `name` of input `in`: defaults, then every matching
 * override in order (later wins per key). */
void batch_settings_for(const struct batch_pipeline *p, const struct batch_input *in, const char *name,
                        struct batch_settings *out);

/* Fill compress options from settings (plan and fit parameters with the planner's
 * targets, recall queries; not row_freq, which is per table). */
void batch_settings_apply(const struct batch_settings *s, struct compress_options *co);

/* The device of settings (device: auto|cpu|cuda; cuda is CUDA device 0). */
struct cli_device batch_settings_device(const struct batch_settings *s);

/* A canonical text of the settings that change the output (not the device: results
 * agree across devices within the tolerance the README states; for grouping tables that
 * share one compression pass, and for the resume fingerprint). */
void batch_settings_key(const struct batch_settings *s, char *buf, size_t len);

/* The settings as a JSON object (every field, defaults filled in; rank/terms/cores
 * null for "chosen by the heuristic"). Caller owns the reference. */
json_t *batch_settings_json(const struct batch_settings *s);

/* A size in bytes with the tools' units (cli_size_from_string: "1000", "64KiB",
 * "2 MB", "512K" = 524288). Returns false when not a size or above INT64_MAX. */
bool batch_parse_size(const char *s, int64_t *out);

/* 64-bit FNV-1a of bytes, and a well-mixed variant for shard assignment. */
uint64_t batch_fnv1a(const void *data, size_t n, uint64_t h);
#define BATCH_FNV_INIT 0xcbf29ce484222325ull

#endif
