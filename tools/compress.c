/*
 * compress.c - the command-line side of the compression pipeline (see compress.h):
 * fpd-compress and fpd-batch options turned into struct fpd_compress_params, the
 * library's progress drawn with a rate and an ETA, SIGINT/SIGTERM as a
 * cancellation, warnings on stderr, statuses as exit codes, and the report printed
 * as a table. The pipeline itself is lib/compress.c.
 */
#include "tools/compress.h"
#include "tools/pipe.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *compress_encoding_name(enum compress_encoding e) {
    return fpd_compress_encoding_name((enum fpd_compress_encoding)e);
}

bool compress_encoding_from_name(const char *s, enum compress_encoding *out) {
    enum fpd_compress_encoding e;
    if (!fpd_compress_encoding_from_name(s, &e)) return false;
    *out = (enum compress_encoding)e;
    return true;
}

struct compress_options compress_default_options(void) {
    struct compress_options o;
    memset(&o, 0, sizeof o);
    o.plan = fpd_plan_default_params();
    o.fit = fpd_fit_default_params();
    o.recall_queries = 200;
    return o;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Progress with a rate and an ETA per stage. The library's stage is
 * "table i/n NAME: STAGE": "table i/n NAME" is the label cli_progress_cb draws. */
struct rate_progress {
    struct cli_progress cli;
    char label[384];
    char stage[48];
    double t0;
    int64_t done0;
};
static bool rate_progress_cb(const char *lib_stage, int64_t done, int64_t total, void *user_data) {
    struct rate_progress *p = user_data;
    const char *sep = strstr(lib_stage, ": "), *stage = lib_stage;
    for (const char *q = sep; q; q = strstr(q + 2, ": ")) sep = q; /* the last ": " */
    if (sep) {
        size_t l = (size_t)(sep - lib_stage);
        snprintf(p->label, sizeof p->label, "%.*s", (int)(l < sizeof p->label ? l : sizeof p->label - 1), lib_stage);
        stage = sep + 2;
    }
    p->cli.label = p->label;
    double now = now_s();
    if (strncmp(p->stage, stage, sizeof p->stage - 1) != 0 || done < p->done0) {
        snprintf(p->stage, sizeof p->stage, "%s", stage);
        p->t0 = now;
        p->done0 = done;
    }
    double el = now - p->t0, rate = el > 0.0 ? (double)(done - p->done0) / el : 0.0;
    char buf[160];
    if (rate > 0.0 && done < total) {
        double eta = (double)(total - done) / rate;
        snprintf(buf, sizeof buf, "%s %lld/%lld, %.3g/s, ETA %d:%02d", stage, (long long)done, (long long)total, rate,
                 (int)(eta / 60.0), (int)fmod(eta, 60.0));
    } else {
        snprintf(buf, sizeof buf, "%s %lld/%lld", stage, (long long)done, (long long)total);
    }
    return cli_progress_cb(buf, done, total, &p->cli);
}

static bool interrupted_cb(void *user_data) {
    (void)user_data;
    return cli_interrupted();
}

/* The library's warnings on stderr ("PROG: warning: ..."), the progress line
 * cleared first; nothing when quiet. */
struct log_ctx {
    bool quiet;
    struct rate_progress *prog;
};
static void log_cb(enum fpd_log_level level, const char *msg, void *user_data) {
    struct log_ctx *c = user_data;
    if (level < FPD_LOG_LEVEL_WARN || c->quiet) return;
    if (c->prog) cli_progress_done(&c->prog->cli);
    if (level == FPD_LOG_LEVEL_WARN) cli_warn("%s", msg);
    else cli_error("%s", msg);
}

static struct fpd_compress_params params_of(const struct compress_options *opt) {
    struct fpd_compress_params cp = fpd_compress_default_params();
    cp.encoding = (enum fpd_compress_encoding)opt->encoding;
    cp.max_error = opt->max_error;
    cp.plan = &opt->plan;
    cp.fit = opt->fit;
    cp.tables = (const char *const *)opt->tables;
    cp.n_tables = opt->n_tables;
    cp.row_freq_tables = (const char *const *)opt->row_freq_tables;
    cp.row_freq_files = (const char *const *)opt->row_freq_files;
    cp.n_row_freq = opt->n_row_freq;
    cp.recall_queries = opt->recall_queries;
    cp.overwrite = opt->force;
    cp.init_interactions = opt->init_interactions;
    cp.init_id_base = opt->init_id_base;
    cp.init_column = opt->init_column;
    cp.order_tables = (const char *const *)opt->order_tables;
    cp.order_files = (const char *const *)opt->order_files;
    cp.order_columns = opt->order_columns;
    cp.n_order = opt->n_order;
    cp.free_rowwise = opt->free_rowwise;
    cp.free_kind = opt->free_kind;
    return cp;
}

/* The report text parsed back (reals print the same: the text keeps 17 digits). */
static int report_of(char *text, json_t **report) {
    json_error_t je;
    *report = json_loads(text, 0, &je);
    fpd_free(text);
    if (!*report) {
        cli_error("the library's report does not parse: %s", je.text);
        return CLI_EXIT_FAILURE;
    }
    return CLI_EXIT_OK;
}

/* The exit code of a failed call, its message printed. */
static int failure(enum fpd_status st, const struct fpd_error *err, const struct compress_options *opt) {
    if (st == FPD_STATUS_CANCELLED) {
        if (!opt->interrupt_said_by_caller) cli_error("interrupted; nothing was written");
        return cli_interrupt_exit_code();
    }
    cli_error("%s", err->msg);
    return st == FPD_STATUS_CONFIG ? CLI_EXIT_USAGE : CLI_EXIT_FAILURE;
}

int compress_checkpoint(const char *in_path, const char *out_path, const struct compress_options *opt,
                        json_t **report) {
    struct fpd_error err = {0};
    struct fpd_input in;
    void *hold = NULL; /* standard input's bytes ("-") */
    *report = NULL;
    if (pipe_input_open(in_path, &in, &hold, &err)) {
        cli_error("%s", err.msg);
        return CLI_EXIT_FAILURE;
    }
    struct rate_progress prog;
    memset(&prog, 0, sizeof prog);
    cli_progress_init(&prog.cli, opt->progress_mode);
    struct log_ctx lc = {opt->quiet, &prog};
    struct fpd_compress_params cp = params_of(opt);
    cp.progress = rate_progress_cb;
    cp.progress_user_data = &prog;
    cp.cancel = interrupted_cb;
    cli_install_signals();
    fpd_log_set(log_cb, &lc);
    char *text = NULL;
    enum fpd_status st = fpd_compress_input(&in, in_path, out_path, &cp, &text, &err);
    fpd_log_set(NULL, NULL);
    cli_progress_done(&prog.cli);
    fpd_input_free(&in);
    free(hold);
    if (st) return failure(st, &err, opt);
    return report_of(text, report);
}

int compress_init_checkpoint(const char *out_path, const char *name, int64_t rows, int64_t dim,
                             const struct fpd_init_params *ip, const struct compress_options *opt, json_t **report) {
    struct fpd_error err = {0};
    struct fpd_compress_params cp = params_of(opt);
    char *text = NULL;
    *report = NULL;
    enum fpd_status st = fpd_compress_write_init(out_path, name, rows, dim, ip, &cp, &text, &err);
    if (st) return failure(st, &err, opt);
    return report_of(text, report);
}

static const char *jstr(const json_t *o, const char *k);
static double jnum(const json_t *o, const char *k);
static long long jint(const json_t *o, const char *k);
static const char *jdims(const json_t *a, char *buf, size_t len);

void compress_print_init_report(const json_t *report, FILE *f) {
    const json_t *t = json_object_get(report, "init");
    char b1[32], b2[32], sh1[64], sh2[64];
    fprintf(f, "%s: %s [%lld, %lld] as FPD r=%lld p=%lld k=%lld rows %s cols %s: %s (dense %s, %.1fx)\n",
            jstr(report, "output"), jstr(t, "name"), jint(t, "rows"), jint(t, "dim"), jint(t, "r"), jint(t, "p"),
            jint(t, "k"), jdims(json_object_get(t, "row_shape"), sh1, sizeof sh1),
            jdims(json_object_get(t, "col_shape"), sh2, sizeof sh2),
            cli_bytes((size_t)jint(t, "bytes_after"), b1, sizeof b1),
            cli_bytes((size_t)jint(t, "bytes_before"), b2, sizeof b2), jnum(t, "ratio"));
    fprintf(f, "%s: entries have mean %.3g and variance %.6g (target %.6g)\n", jstr(t, "init"), jnum(t, "mean"),
            jnum(t, "variance"), jnum(t, "target_variance"));
    if (json_is_string(json_object_get(t, "row_order")))
        fprintf(f, "row order: from the %s (stored as row_perm)\n", jstr(t, "row_order"));
}

static const char *jstr(const json_t *o, const char *k) {
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}
static double jnum(const json_t *o, const char *k) { return json_number_value(json_object_get(o, k)); }
static long long jint(const json_t *o, const char *k) { return (long long)json_integer_value(json_object_get(o, k)); }

static const char *jdims(const json_t *a, char *buf, size_t len) {
    size_t off = 0, i;
    json_t *v;
    buf[0] = '\0';
    json_array_foreach(a, i, v) {
        if (off >= len) break;
        off += (size_t)snprintf(buf + off, len - off, "%s%lld", i ? "x" : "", (long long)json_integer_value(v));
    }
    return buf;
}

void compress_print_report(const json_t *report, FILE *f) {
    char b1[32], b2[32], sh1[64], sh2[64];
    const json_t *tabs = json_object_get(report, "tables"), *tot = json_object_get(report, "totals");
    size_t i;
    json_t *t;
    fprintf(f, "%s -> %s\n", jstr(report, "input"), jstr(report, "output"));
    fprintf(f, "%-24s %-12s %-5s %4s %2s %1s %-12s %-9s %11s %11s %7s %8s %8s %8s %7s %7s\n", "table", "shape",
            "dtype", "r", "p", "k", "row shape", "col shape", "before", "after", "ratio", "rel.err", "cos.mean",
            "cos.min", "fit s", "tune s");
    json_array_foreach(tabs, i, t) {
        char shp[48];
        snprintf(shp, sizeof shp, "%lldx%lld", jint(t, "rows"), jint(t, "dim"));
        const char *enc = jstr(t, "encoding");
        if (strcmp(enc, "int8") == 0 || strcmp(enc, "int4") == 0) {
            /* the encoding spans the r .. col shape columns (4+1+2+1+1+1+12+1+9 = 32) */
            fprintf(f, "%-24s %-12s %-5s %-32s %11s %11s %6.1fx %8.4f %8.4f %8.4f\n", jstr(t, "name"), shp,
                    jstr(t, "dtype"), strcmp(enc, "int8") == 0 ? "int8 row-wise (FBGEMM)" : "int4 row-wise (FBGEMM)",
                    cli_bytes((size_t)jint(t, "bytes_before"), b1, sizeof b1),
                    cli_bytes((size_t)jint(t, "bytes_after"), b2, sizeof b2), jnum(t, "ratio"), jnum(t, "rel_error"),
                    jnum(t, "cos_mean"), jnum(t, "cos_min"));
            fprintf(f, "%24s cosine mean %.4f, p5 %.4f, min %.4f, recall@10 %.3f (%lld queries)\n", "",
                    jnum(t, "cos_mean"), jnum(t, "cos_p5"), jnum(t, "cos_min"), jnum(t, "recall10"),
                    jint(t, "recall_queries"));
            fprintf(f, "%24s encoding %s: %s\n", "", enc, jstr(t, "why"));
        } else if (json_is_true(json_object_get(t, "compressed"))) {
            fprintf(f, "%-24s %-12s %-5s %4lld %2lld %1lld %-12s %-9s %11s %11s %6.1fx %8.4f %8.4f %8.4f %7.2f %7.2f\n",
                    jstr(t, "name"), shp, jstr(t, "dtype"), jint(t, "r"), jint(t, "p"), jint(t, "k"),
                    jdims(json_object_get(t, "row_shape"), sh1, sizeof sh1),
                    jdims(json_object_get(t, "col_shape"), sh2, sizeof sh2),
                    cli_bytes((size_t)jint(t, "bytes_before"), b1, sizeof b1),
                    cli_bytes((size_t)jint(t, "bytes_after"), b2, sizeof b2), jnum(t, "ratio"), jnum(t, "rel_error"),
                    jnum(t, "cos_mean"), jnum(t, "cos_min"), jnum(t, "fit_seconds"), jnum(t, "finetune_seconds"));
            const json_t *bl = json_object_get(t, "baselines");
            const json_t *i8 = json_object_get(bl, "int8_rowwise"), *i4 = json_object_get(bl, "int4_rowwise");
            fprintf(f, "%24s cosine p5 %.4f, recall@10 %.3f (%lld queries)%s", "", jnum(t, "cos_p5"),
                    jnum(t, "recall10"), jint(t, "recall_queries"), "");
            if (json_object_get(t, "rel_error_weighted"))
                fprintf(f, ", weighted rel.err %.4f", jnum(t, "rel_error_weighted"));
            if (json_is_true(json_object_get(t, "compressed")) && jnum(t, "rel_error_fit") != jnum(t, "rel_error"))
                fprintf(f, ", first stage (%s) alone %.4f", jnum(t, "p") > 1 ? "backfit" : "tt-svd",
                        jnum(t, "rel_error_fit"));
            if (json_is_string(json_object_get(t, "row_order")))
                fprintf(f, "\n%24s row order: from the %s (stored as row_perm)", "", jstr(t, "row_order"));
            if (jint(t, "free_coords") > 0)
                fprintf(f, "\n%24s free coordinates c = %lld: E [%lld, %lld] (%s) + P [%lld, %lld] (%s) = %lld values, %s "
                        "(in 'after'); rel.err without them %.4f", "", jint(t, "free_coords"), jint(t, "rows"),
                        jint(t, "free_coords"), jstr(t, "free_dtype"), jint(t, "free_coords"), jint(t, "dim"),
                        jstr(t, "core_dtype"), jint(t, "free_params"),
                        cli_bytes((size_t)jint(t, "free_bytes"), b1, sizeof b1), jnum(t, "rel_error_without_free"));
            const json_t *tt = json_object_get(bl, "tt_svd");
            if (tt)
                fprintf(f, "\n%24s plain TT-SVD at the same size (r=%lld, %.1fx): rel.err %.4f", "", jint(tt, "r"),
                        jnum(tt, "ratio"), jnum(tt, "rel_error"));
            fprintf(f, "\n%24s baselines: int8 row-wise %.1fx rel.err %.4f, int4 row-wise %.1fx rel.err %.4f: %s\n", "",
                    jnum(i8, "ratio"), jnum(i8, "rel_error"), jnum(i4, "ratio"), jnum(i4, "rel_error"),
                    jstr(t, "note"));
            fprintf(f, "%24s encoding fpd: %s\n", "", jstr(t, "why"));
        } else {
            fprintf(f, "%-24s %-12s %-5s kept dense: %s\n", jstr(t, "name"), shp, jstr(t, "dtype"), jstr(t, "reason"));
        }
    }
    const json_t *pt = json_object_get(report, "passed_through");
    json_array_foreach(pt, i, t)
        fprintf(f, "%-24s already %s in the input: checked (cores/rows finite, row_perm valid) and copied\n",
                jstr(t, "name"), jstr(t, "encoding"));
    fprintf(f, "total: %lld table(s) compressed (%lld FPD, %lld int8, %lld int4), %s -> %s (%.2fx)",
            jint(tot, "tables_compressed"), jint(tot, "tables_fpd"), jint(tot, "tables_int8"), jint(tot, "tables_int4"),
            cli_bytes((size_t)jint(tot, "bytes_before"), b1, sizeof b1),
            cli_bytes((size_t)jint(tot, "bytes_after"), b2, sizeof b2), jnum(tot, "ratio"));
    if (jint(tot, "tables_fpd") > 0) /* the core dtype means nothing without FPD tables */
        fprintf(f, ", core dtype %s", jstr(report, "core_dtype"));
    if (json_is_number(json_object_get(report, "max_error")))
        fprintf(f, ", target rel.err %.4g", jnum(report, "max_error"));
    fputc('\n', f);
}
