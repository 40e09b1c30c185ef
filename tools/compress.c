/*
 * compress.c - the compression pipeline behind fpd-compress (and fpd-batch): plan
 * every table of a checkpoint, fit the qualifying ones, copy the rest, write the
 * FPD v1 checkpoint atomically, and build the report (see compress.h).
 */
#include "tools/compress.h"
#include "tools/pipe.h"
#include "lib/fpd-impl.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

struct compress_options compress_default_options(void) {
    struct compress_options o;
    memset(&o, 0, sizeof o);
    o.plan = fpd_plan_default_params();
    o.fit = fpd_fit_default_params();
    o.recall_queries = 200;
    return o;
}

struct table_result {
    const struct fpd_tensor_info *src;
    bool candidate;     /* a 2-D float tensor */
    bool compress;
    char reason[640];
    struct fpd_plan plan;
    struct fpd_layer_shape shape; /* as fitted (ranks may be lowered) */
    struct fpd_fit_report fit;
    struct fpd_quality stats;
    bool weighted;
    /* plain TT-SVD (p = 1, same modes, no permutation) at the largest rank whose
     * cores fit in bytes_after: what our fit is measured against */
    int64_t ttsvd_r;
    size_t ttsvd_bytes;
    double ttsvd_error;
    size_t bytes_before, bytes_after;
    /* encoding written (COMPRESS_ENC_FPD, _INT8, _INT4; dense when !compress), why,
     * and the measured quantization errors when computed */
    enum compress_encoding enc;
    char why[512];
    bool have_quant;
    struct fpd_quant_baseline quant;
    double rowwise_error;
    char fit_name[64];  /* the metadata's "fit" ("tt-svd+als+adam", ...) */
    /* output tensors */
    int32_t n_out;
    struct fpd_tensor_info out[FPD_MAX_MODES + 1];  /* cores, then row_perm if any */
    char *out_names[FPD_MAX_MODES + 1];
    void *out_data[FPD_MAX_MODES + 1];
    char *meta_json;
};

/* r->out[0..k) = the cores of layer as tensors "NAME.fpd.coreM" in dtype dt
 * (F32/F16/BF16), r->n_out and r->bytes_after set. The layer's cores are replaced
 * by their rounded values, so what is measured next is what is stored. Returns
 * false when out of memory. */
static bool core_tensors(struct table_result *r, const char *name, struct fpd_layer *layer, enum fpd_dtype dt) {
    size_t es = fpd_dtype_size(dt);
    r->bytes_after = 0;
    r->n_out = r->shape.k;
    for (int32_t m = 0; m < r->shape.k; m++) {
        int64_t numel = fpd_layer_shape_core_numel(&r->shape, m);
        size_t len = strlen(name) + 32;
        r->out_names[m] = malloc(len);
        r->out_data[m] = malloc((size_t)numel * es);
        if (!r->out_names[m] || !r->out_data[m]) return false;
        snprintf(r->out_names[m], len, "%s.fpd.core%d", name, (int)m);
        fpd_dtype_from_f32(dt, fpd_layer_core_const(layer, m), r->out_data[m], numel);
        fpd_dtype_to_f32(dt, r->out_data[m], fpd_layer_core(layer, m), numel);
        struct fpd_tensor_info *o = &r->out[m];
        o->name = r->out_names[m];
        o->dtype = dt;
        o->ndim = 5;
        o->shape[0] = r->shape.terms;
        o->shape[1] = r->shape.row_shape[m];
        o->shape[2] = r->shape.ranks[m];
        o->shape[3] = r->shape.col_shape[m];
        o->shape[4] = r->shape.ranks[m + 1];
        o->data = r->out_data[m];
        o->nbytes = (size_t)numel * es;
        r->bytes_after += o->nbytes;
    }
    const int64_t *perm = fpd_layer_row_perm(layer);
    if (perm) { /* T.fpd.row_perm: I32 when the padded row count allows, else I64 */
        int64_t padded = 1;
        for (int32_t m = 0; m < r->shape.k; m++) padded *= r->shape.row_shape[m];
        bool i32 = padded <= INT32_MAX;
        int32_t m = r->shape.k;
        size_t len = strlen(name) + 32, pes = i32 ? 4 : 8;
        r->out_names[m] = malloc(len);
        r->out_data[m] = malloc((size_t)r->shape.rows * pes);
        if (!r->out_names[m] || !r->out_data[m]) return false;
        snprintf(r->out_names[m], len, "%s.fpd.row_perm", name);
        for (int64_t i = 0; i < r->shape.rows; i++) {
            if (i32) {
                int32_t v = (int32_t)perm[i];
                memcpy((char *)r->out_data[m] + 4 * i, &v, 4);
            } else {
                memcpy((char *)r->out_data[m] + 8 * i, &perm[i], 8);
            }
        }
        struct fpd_tensor_info *o = &r->out[m];
        memset(o, 0, sizeof *o);
        o->name = r->out_names[m];
        o->dtype = i32 ? FPD_DTYPE_I32 : FPD_DTYPE_I64;
        o->ndim = 1;
        o->shape[0] = r->shape.rows;
        o->data = r->out_data[m];
        o->nbytes = (size_t)r->shape.rows * pes;
        r->bytes_after += o->nbytes;
        r->n_out++;
    }
    return true;
}

/* r->ttsvd_*: plain TT-SVD on the same modes at the largest uniform rank whose
 * cores fit in r->bytes_after (0 when not even rank 1 fits). */
static enum fpd_status ttsvd_baseline(struct table_result *r, const struct fpd_table_view *view, enum fpd_dtype dt,
                                      struct fpd_error *err) {
    struct fpd_layer_shape s = r->shape;
    s.terms = 1;
    int64_t best = 0;
    for (int64_t q = 1; q <= 4096; q++) {
        fpd_layer_shape_set_rank(&s, q);
        size_t bytes = (size_t)fpd_layer_shape_params(&s) * fpd_dtype_size(dt);
        if (bytes > r->bytes_after) break;
        best = q;
        r->ttsvd_bytes = bytes;
        int64_t rmax = 1;
        for (int32_t m = 1; m < s.k; m++) rmax = s.ranks[m] > rmax ? s.ranks[m] : rmax;
        if (rmax < q) break; /* capped by the unfoldings: higher ranks are the same */
    }
    r->ttsvd_r = best;
    r->ttsvd_error = NAN;
    if (!best) return FPD_STATUS_OK;
    fpd_layer_shape_set_rank(&s, best);
    struct fpd_layer *l = NULL;
    struct fpd_error_stats es;
    enum fpd_status st = fpd_fit_ttsvd(view, &s, NULL, &l, err);
    if (!st) st = fpd_layer_error(l, view, &es, err);
    if (!st) r->ttsvd_error = es.rel_error;
    fpd_layer_free(l);
    return st;
}

static void free_result(struct table_result *r) {
    for (int32_t m = 0; m <= FPD_MAX_MODES; m++) {
        free(r->out_names[m]);
        free(r->out_data[m]);
    }
    fpd_free(r->meta_json);
}

/* bytes of the row_perm tensor among a table's outputs (0 without one) */
static size_t fpd_layer_row_perm_bytes(const struct fpd_tensor_info *out, int32_t n) {
    for (int32_t m = 0; m < n; m++)
        if (out[m].ndim == 1) return out[m].nbytes;
    return 0;
}

static bool name_in_list(const char *name, char **list, int n) {
    for (int i = 0; i < n; i++)
        if (strcmp(list[i], name) == 0) return true;
    return false;
}

static json_t *json_dims(const int64_t *d, int32_t n) {
    json_t *a = json_array();
    for (int32_t i = 0; i < n; i++) json_array_append_new(a, json_integer(d[i]));
    return a;
}

/* Number of tables this run compresses (planned), for a --row-freq without a name. */
static int n_candidates_compressed(const struct table_result *res, int64_t n, const char *in_path,
                                   const struct cli_input *in, const struct compress_options *opt) {
    (void)res;
    (void)in_path;
    if (in->npy) return 1;
    int count = 0;
    for (int64_t t = 0; t < n; t++) {
        const struct fpd_tensor_info *ti = cli_input_tensor(in, t);
        if (ti->ndim != 2 || !fpd_dtype_is_float(ti->dtype)) continue;
        if (opt->tables && !name_in_list(ti->name, opt->tables, opt->n_tables)) continue;
        struct fpd_plan plan;
        struct fpd_plan_params tp = opt->plan;
        if (opt->tables) {
            tp.min_rows = 1;
            tp.min_ratio = 0.0;
        }
        if (fpd_plan_table(ti->shape[0], ti->shape[1], ti->dtype, &tp, &plan, NULL) == FPD_STATUS_OK && plan.compress)
            count++;
    }
    return count;
}

const char *compress_encoding_name(enum compress_encoding e) {
    static const char *const names[] = {"fpd", "auto", "int8", "int4", "dense"};
    return (unsigned)e <= COMPRESS_ENC_DENSE ? names[e] : "?";
}

bool compress_encoding_from_name(const char *s, enum compress_encoding *out) {
    for (int e = 0; e <= COMPRESS_ENC_DENSE; e++)
        if (strcmp(s, compress_encoding_name((enum compress_encoding)e)) == 0) {
            *out = (enum compress_encoding)e;
            return true;
        }
    return false;
}

/* r->out[0] = table `name` quantized row-wise (tensor "NAME.rowwise.fused", U8
 * [N, row bytes]) and r->meta_json its "fpd.rowwise.NAME" metadata; r->bytes_after,
 * r->rowwise_error set. */
static enum fpd_status rowwise_tensor(struct table_result *r, const char *name, const struct fpd_table_view *view,
                                      enum fpd_rowwise kind, const double *weights, int64_t queries, uint64_t seed,
                                      struct fpd_error *err) {
    size_t rb = fpd_rowwise_row_bytes(kind, view->dim), len = strlen(name) + 32;
    r->out_names[0] = malloc(len);
    r->out_data[0] = malloc((size_t)view->rows * rb + 1);
    if (!r->out_names[0] || !r->out_data[0]) return fpd__err(err, FPD_STATUS_NOMEM, "out of memory");
    snprintf(r->out_names[0], len, "%s%s", name, FPD_ROWWISE_TENSOR_SUFFIX);
    enum fpd_status st = fpd_rowwise_quantize(view, kind, r->out_data[0], &r->rowwise_error, err);
    if (st) return st;
    struct fpd_tensor_info *o = &r->out[0];
    memset(o, 0, sizeof *o);
    o->name = r->out_names[0];
    o->dtype = FPD_DTYPE_U8;
    o->ndim = 2;
    o->shape[0] = view->rows;
    o->shape[1] = (int64_t)rb;
    o->data = r->out_data[0];
    o->nbytes = (size_t)view->rows * rb;
    r->n_out = 1;
    r->bytes_after = o->nbytes;
    struct fpd_rowwise_table q = {r->out_data[0], kind, view->rows, view->dim};
    if ((st = fpd_rowwise_quality(&q, view, weights, queries, seed, &r->stats, err))) return st;
    r->weighted = weights != NULL;
    struct fpd_rowwise_meta meta = {kind, view->rows, view->dim, view->dtype, r->rowwise_error};
    return fpd_rowwise_meta_to_json(&meta, &r->meta_json, err);
}

/* Progress with a rate and an ETA per stage, "table i/n NAME" as the label
 * (cli_progress_cb draws it). */
struct rate_progress {
    struct cli_progress cli;
    char stage[48];
    double t0;
    int64_t done0;
};
static bool rate_progress_cb(const char *stage, int64_t done, int64_t total, void *user_data) {
    struct rate_progress *p = user_data;
    double now = fpd__now();
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

/* {"int8_rowwise": {bytes, ratio, rel_error}, "int4_rowwise": {...}} */
static json_t *baselines_json(size_t bytes_before, const struct fpd_quant_baseline *q) {
    json_t *bl = json_object();
    const struct { const char *name; size_t bytes; double err; } base[2] = {
        {"int8_rowwise", q->int8_bytes, q->int8_rel_error}, {"int4_rowwise", q->int4_bytes, q->int4_rel_error}};
    for (int i = 0; i < 2; i++) {
        json_t *b = json_object();
        json_object_set_new(b, "bytes", json_integer((json_int_t)base[i].bytes));
        json_object_set_new(b, "ratio", json_real((double)bytes_before / (double)base[i].bytes));
        json_object_set_new(b, "rel_error", json_real(base[i].err));
        json_object_set_new(bl, base[i].name, b);
    }
    return bl;
}

/* Record a warning: on stderr (unless quiet) and in the report's "warnings". */
static void add_warning(json_t *warnings, bool quiet, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void add_warning(json_t *warnings, bool quiet, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!quiet) cli_warn("%s", msg);
    json_array_append_new(warnings, json_string(msg));
}

int compress_checkpoint(const char *in_path, const char *out_path, const struct compress_options *opt,
                        json_t **report_out) {
    int rc = CLI_EXIT_FAILURE;
    struct fpd_error err = {0};
    struct cli_input in;
    struct table_result *res = NULL;
    struct fpd_tensor_info *outs = NULL;
    const char **mkeys = NULL, **mvals = NULL;
    int64_t n = 0;
    json_t *report = NULL, *warnings = NULL, *passed = NULL;
    void *hold = NULL; /* standard input's bytes ("-") */
    double *weights = NULL;
    *report_out = NULL;

    if (pipe_input_open(in_path, &in, &hold, &err)) {
        cli_error("%s", err.msg);
        return CLI_EXIT_FAILURE;
    }
    n = cli_input_count(&in);
    res = calloc((size_t)(n > 0 ? n : 1), sizeof *res);
    if (!res) goto oom;

    for (int i = 0; i < opt->n_tables; i++) {
        bool found = false;
        for (int64_t t = 0; t < n; t++) found |= strcmp(cli_input_tensor(&in, t)->name, opt->tables[i]) == 0;
        if (!found) {
            cli_error("%s: no tensor named '%s' (see fpd-inspect %s)", in_path, opt->tables[i], in_path);
            rc = CLI_EXIT_USAGE;
            goto done;
        }
    }

    /* ---- tables already encoded in the input: check them, pass them through ---- */
    warnings = json_array();
    passed = json_array();
    if (!warnings || !passed) goto oom;
    if (in.st) {
        if (fpd_checkpoint_check_extensions(in.st, &err)) {
            cli_error("%s", err.msg);
            goto done;
        }
        for (int64_t i = 0; i < fpd_safetensors_metadata_count(in.st); i++) {
            const char *key, *val;
            fpd_safetensors_metadata_at(in.st, i, &key, &val);
            const char *tn = NULL;
            if (strncmp(key, FPD_META_TABLE_PREFIX, strlen(FPD_META_TABLE_PREFIX)) == 0)
                tn = key + strlen(FPD_META_TABLE_PREFIX);
            else if (strncmp(key, FPD_META_ROWWISE_PREFIX, strlen(FPD_META_ROWWISE_PREFIX)) == 0)
                tn = key + strlen(FPD_META_ROWWISE_PREFIX);
            if (!tn) continue;
            if (fpd_checkpoint_verify_table(in.st, tn, true, &err)) {
                cli_error("%s (the input's encoded tables are checked before they are copied)", err.msg);
                goto done;
            }
            json_t *pt = json_object();
            const char *encname = "fpd";
            struct fpd_rowwise_table q;
            if (key[4] == 'r' && !fpd_checkpoint_load_rowwise(in.st, tn, &q, NULL, &err))
                encname = fpd_rowwise_name(q.kind);
            json_object_set_new(pt, "name", json_string(tn));
            json_object_set_new(pt, "encoding", json_string(encname));
            json_object_set_new(pt, "verified", json_true());
            json_array_append_new(passed, pt);
        }
    }

    /* ---- plan and fit ---- */
    /* --rank/--terms fix the FPD candidate, --budget/--ratio are FPD size targets: FPD */
    const bool forced_fpd = opt->plan.rank > 0 || opt->plan.terms > 0 || opt->plan.budget_bytes > 0 ||
                            opt->plan.min_ratio_target > 0.0;
    const enum compress_encoding enc0 = forced_fpd ? COMPRESS_ENC_FPD : opt->encoding;
    const double target = opt->max_error > 0.0 ? opt->max_error : opt->plan.max_error;
    struct fpd_fit_params fp = opt->fit;
    struct rate_progress prog;
    memset(&prog, 0, sizeof prog);
    cli_progress_init(&prog.cli, opt->progress_mode);
    cli_install_signals();
    fp.progress = rate_progress_cb;
    fp.progress_user_data = &prog;
    size_t total_before = 0, total_after = 0;
    int64_t n_out = 0, n_cand = 0, i_cand = 0;
    for (int64_t t = 0; t < n; t++) {
        const struct fpd_tensor_info *ti = cli_input_tensor(&in, t);
        n_cand += ti->ndim == 2 && fpd_dtype_is_float(ti->dtype) &&
                  (!opt->tables || name_in_list(ti->name, opt->tables, opt->n_tables));
    }
    char label[384];
    for (int64_t t = 0; t < n; t++) {
        struct table_result *r = &res[t];
        const struct fpd_tensor_info *ti = cli_input_tensor(&in, t);
        r->src = ti;
        r->bytes_before = r->bytes_after = ti->nbytes;
        /* named by --tables: compressed whatever its size (a .npy input too: it obeys
         * --min-rows and --min-ratio like any table unless named) */
        bool named = opt->tables && name_in_list(ti->name, opt->tables, opt->n_tables);
        r->candidate = ti->ndim == 2 && fpd_dtype_is_float(ti->dtype) && ti->shape[0] > 0 && ti->shape[1] > 0;
        enum compress_encoding enc = enc0;
        struct fpd_table_view view = {ti->data, ti->dtype, ti->shape[0], ti->shape[1]};
        if (opt->tables && !named) {
            snprintf(r->reason, sizeof r->reason, "not in --tables");
        } else if (!r->candidate) {
            if (named || in.npy) { /* a .npy input is one table: it must be one */
                char why[160];
                cli_error("%s: tensor '%s' is %s", in_path, ti->name, cli_not_a_table(ti, why, sizeof why));
                rc = CLI_EXIT_USAGE;
                goto done;
            }
        } else if (enc == COMPRESS_ENC_DENSE) {
            snprintf(r->reason, sizeof r->reason, "--encoding dense");
        } else {
            /* row frequencies for this table, if given (checked whatever the encoding) */
            free(weights);
            weights = NULL;
            for (int q = 0; q < opt->n_row_freq; q++) {
                const char *tn = opt->row_freq_tables[q];
                if (tn ? strcmp(tn, ti->name) != 0 : n_candidates_compressed(res, n, in_path, &in, opt) != 1) continue;
                if (cli_load_row_freq(opt->row_freq_files[q], ti->shape[0], &weights, &err)) {
                    cli_error("%s", err.msg);
                    rc = CLI_EXIT_USAGE;
                    goto done;
                }
            }
            i_cand++;
            snprintf(label, sizeof label, "table %lld/%lld %s", (long long)i_cand, (long long)n_cand, ti->name);
            prog.cli.label = label;
            struct fpd_plan_params tp = opt->plan;
            if (named) { /* asked for by name: compressed whatever the size gain (the report shows it) */
                tp.min_rows = 1;
                tp.min_ratio = 0.0;
            }
            /* first the options alone (a bad budget or ratio is a usage error), then with
             * the table's data: --max-error needs it, and the report shows the
             * predicted error (bad data there is a runtime error) */
            double max_error = enc == COMPRESS_ENC_AUTO ? target : enc == COMPRESS_ENC_FPD ? tp.max_error : 0.0;
            tp.max_error = 0.0; /* the only target that needs the data */
            if (fpd_plan_table(ti->shape[0], ti->shape[1], ti->dtype, &tp, &r->plan, &err)) {
                cli_error("%s: tensor '%s': %s", in_path, ti->name, err.msg);
                rc = CLI_EXIT_USAGE;
                goto done;
            }
            if (opt->plan.rank > 0 && r->plan.shape.k > 1) {
                int64_t rmax = 1;
                for (int32_t m = 1; m < r->plan.shape.k; m++)
                    rmax = r->plan.shape.ranks[m] > rmax ? r->plan.shape.ranks[m] : rmax;
                if (rmax < opt->plan.rank)
                    add_warning(warnings, opt->quiet,
                                "%s: --rank %lld is above what the shape allows; the ranks are capped to %lld (TT-SVD "
                                "bound of the unfoldings)", ti->name, (long long)opt->plan.rank, (long long)rmax);
            }
            if (ti->shape[0] < tp.min_rows) {
                snprintf(r->reason, sizeof r->reason, "%s", r->plan.reason);
                goto decided;
            }
            /* a table with NaN or Inf is refused before any fit, naming the row */
            if (fpd_rowwise_quantize(&view, FPD_ROWWISE_INT8, NULL, NULL, &err)) {
                cli_error("%s: tensor '%s': %s", in_path, ti->name, err.msg);
                goto done;
            }
            if (enc != COMPRESS_ENC_FPD) {
                if (fpd_quant_baseline(&view, &r->quant, &err)) {
                    cli_error("%s: tensor '%s': %s", in_path, ti->name, err.msg);
                    goto done;
                }
                r->have_quant = true;
            }
            if (enc == COMPRESS_ENC_FPD || enc == COMPRESS_ENC_AUTO) {
                tp.max_error = max_error;
                tp.table = &view;
                if (fpd_plan_table(ti->shape[0], ti->shape[1], ti->dtype, &tp, &r->plan, &err)) {
                    cli_error("%s: tensor '%s': %s", in_path, ti->name, err.msg);
                    rc = CLI_EXIT_FAILURE;
                    goto done;
                }
            }
            if (enc == COMPRESS_ENC_AUTO) {
                /* the smallest encoding whose error meets the target: FPD first when the
                 * planner found a candidate predicted to meet it that is smaller than the
                 * row-wise ones (fitted and measured below), else int4, int8, dense */
                double ratio4 = (double)r->bytes_before / (double)r->quant.int4_bytes;
                double ratio8 = (double)r->bytes_before / (double)r->quant.int8_bytes;
                bool ok4 = r->quant.int4_rel_error <= target && ratio4 >= tp.min_ratio;
                bool ok8 = r->quant.int8_rel_error <= target && ratio8 >= tp.min_ratio;
                size_t best_q = ok4 ? r->quant.int4_bytes : ok8 ? r->quant.int8_bytes : SIZE_MAX;
                char fpd_part[200];
                if (r->plan.compress)
                    snprintf(fpd_part, sizeof fpd_part, "FPD r=%lld p=%lld %.1fx predicted %.4f",
                             (long long)r->plan.shape.ranks[1], (long long)r->plan.shape.terms, r->plan.ratio,
                             r->plan.predicted_error);
                else
                    snprintf(fpd_part, sizeof fpd_part, "FPD: %s", r->plan.reason);
                snprintf(r->why, sizeof r->why, "target %.4g; %s; int4 %.1fx %.4f; int8 %.1fx %.4f", target, fpd_part,
                         ratio4, r->quant.int4_rel_error, ratio8, r->quant.int8_rel_error);
                if (r->plan.compress && r->plan.bytes_after < best_q) enc = COMPRESS_ENC_FPD;
                else if (ok4) enc = COMPRESS_ENC_INT4;
                else if (ok8) enc = COMPRESS_ENC_INT8;
                else {
                    snprintf(r->reason, sizeof r->reason, "no encoding meets --max-error %.4g (%s)", target, r->why);
                    goto decided;
                }
            }
            if (enc == COMPRESS_ENC_INT8 || enc == COMPRESS_ENC_INT4) {
                enum fpd_rowwise kind = enc == COMPRESS_ENC_INT8 ? FPD_ROWWISE_INT8 : FPD_ROWWISE_INT4;
                if (rowwise_tensor(r, ti->name, &view, kind, weights, opt->recall_queries, fp.seed, &err)) {
                    cli_error("%s: tensor '%s': %s", in_path, ti->name, err.msg);
                    goto done;
                }
                r->compress = true;
                r->enc = enc;
                goto check_out;
            }
            /* FPD */
            r->compress = r->plan.compress;
            if (!r->compress) {
                snprintf(r->reason, sizeof r->reason, "%s", r->plan.reason);
                goto decided;
            }
            r->enc = COMPRESS_ENC_FPD;
        }
    decided:
        if (!r->compress) {
            n_out++;
            continue;
        }
        /* fit */
        struct fpd_layer *layer = NULL;
        r->weighted = weights != NULL;
        fp.row_weights = weights;
        enum fpd_status st = fpd_fit(&view, &r->plan.shape, &fp, &layer, &r->fit, &err);
        cli_progress_done(&prog.cli);
        if (st == FPD_STATUS_CANCELLED || cli_interrupted()) {
            fpd_layer_free(layer);
            cli_error("interrupted; nothing was written");
            rc = cli_interrupt_exit_code();
            goto done;
        }
        if (st) {
            cli_error("%s: tensor '%s': %s", in_path, ti->name, err.msg);
            goto done;
        }
        r->shape = *fpd_layer_get_shape(layer);
        /* output tensors: cores in the requested dtype, metadata JSON */
        if (!core_tensors(r, ti->name, layer, opt->plan.core_dtype)) {
            fpd_layer_free(layer);
            goto oom;
        }
        if (fpd_layer_quality(layer, &view, weights, opt->recall_queries, fp.seed, &r->stats, &err) ||
            ttsvd_baseline(r, &view, opt->plan.core_dtype, &err)) {
            fpd_layer_free(layer);
            cli_error("%s: tensor '%s': %s", in_path, ti->name, err.msg);
            goto done;
        }
        fpd_layer_free(layer);
        if (enc0 == COMPRESS_ENC_AUTO && !(r->stats.rel_error <= target)) {
            /* the fit missed the target its prediction met: the next encoding that meets it */
            free_result(r);
            memset(r->out_names, 0, sizeof r->out_names);
            memset(r->out_data, 0, sizeof r->out_data);
            r->meta_json = NULL;
            double fitted = r->stats.rel_error;
            size_t n4 = strlen(r->why);
            snprintf(r->why + n4, sizeof r->why - n4, "; FPD fitted %.4f, above the target", fitted);
            bool ok4 = r->quant.int4_rel_error <= target &&
                       (double)r->bytes_before / (double)r->quant.int4_bytes >= opt->plan.min_ratio;
            bool ok8 = r->quant.int8_rel_error <= target &&
                       (double)r->bytes_before / (double)r->quant.int8_bytes >= opt->plan.min_ratio;
            memset(&r->stats, 0, sizeof r->stats);
            if (!ok4 && !ok8) {
                r->compress = false;
                r->bytes_after = r->bytes_before;
                snprintf(r->reason, sizeof r->reason, "no encoding meets --max-error %.4g (%s)", target, r->why);
                n_out++;
                continue;
            }
            r->enc = ok4 ? COMPRESS_ENC_INT4 : COMPRESS_ENC_INT8;
            if (rowwise_tensor(r, ti->name, &view, ok4 ? FPD_ROWWISE_INT4 : FPD_ROWWISE_INT8, weights,
                               opt->recall_queries, fp.seed, &err)) {
                cli_error("%s: tensor '%s': %s", in_path, ti->name, err.msg);
                goto done;
            }
            goto check_out;
        }
        struct fpd_table_meta meta;
        memset(&meta, 0, sizeof meta);
        meta.shape = r->shape;
        meta.source_dtype = ti->dtype;
        meta.core_dtype = opt->plan.core_dtype;
        snprintf(meta.fit, sizeof meta.fit, "%s%s%s%s", fp.cluster_rows ? "cluster+" : "",
                 r->shape.terms > 1 ? "backfit" : "tt-svd", r->fit.als_sweeps ? "+als" : "",
                 r->fit.finetune_kept ? "+adam" : "");
        snprintf(r->fit_name, sizeof r->fit_name, "%s", meta.fit);
        meta.seed = fp.seed;
        meta.rel_error = r->stats.rel_error;
        if (fpd_table_meta_to_json(&meta, &r->meta_json, &err)) {
            cli_error("%s", err.msg);
            goto done;
        }
    check_out:
        if (r->enc != COMPRESS_ENC_FPD || enc0 != COMPRESS_ENC_AUTO) {
            if (enc0 == COMPRESS_ENC_AUTO)
                ; /* chosen to meet the target */
            else if (target > 0.0 && !(r->stats.rel_error <= target))
                add_warning(warnings, opt->quiet, "%s: %s has relative error %.4f, above --max-error %.4g%s", ti->name,
                            compress_encoding_name(r->enc), r->stats.rel_error, target,
                            forced_fpd ? " (--rank/--terms force FPD)" : "");
        }
        if (r->bytes_after >= r->bytes_before)
            add_warning(warnings, opt->quiet, "%s: the %s form takes %zu bytes, not less than the %zu bytes of the "
                        "dense table", ti->name, compress_encoding_name(r->enc), r->bytes_after, r->bytes_before);
        if (!r->why[0]) {
            if (forced_fpd)
                snprintf(r->why, sizeof r->why, "--rank/--terms force FPD");
            else
                snprintf(r->why, sizeof r->why, "--encoding %s", compress_encoding_name(r->enc));
        } else {
            size_t n4 = strlen(r->why);
            snprintf(r->why + n4, sizeof r->why - n4, ": %s is the smallest that meets it",
                     compress_encoding_name(r->enc));
        }
        for (int32_t m = 0; m < r->n_out; m++) {
            const struct fpd_tensor_info *o = &r->out[m];
            if (in.st && fpd_safetensors_find(in.st, o->name)) {
                cli_error("%s: the input already has a tensor named '%s'; it cannot hold table '%s' compressed",
                          in_path, o->name, ti->name);
                goto done;
            }
        }
        n_out += r->n_out;
    }
    for (int64_t t = 0; t < n; t++) {
        total_before += res[t].bytes_before;
        total_after += res[t].bytes_after;
    }

    /* ---- assemble and write ---- */
    outs = calloc((size_t)(n_out > 0 ? n_out : 1), sizeof *outs);
    int64_t n_meta_in = in.st ? fpd_safetensors_metadata_count(in.st) : 0;
    mkeys = calloc((size_t)(n_meta_in + n + 2), sizeof *mkeys);
    mvals = calloc((size_t)(n_meta_in + n + 2), sizeof *mvals);
    if (!outs || !mkeys || !mvals) goto oom;
    int64_t k_out = 0, k_meta = 0;
    for (int64_t t = 0; t < n; t++) {
        if (res[t].compress)
            for (int32_t m = 0; m < res[t].n_out; m++) outs[k_out++] = res[t].out[m];
        else outs[k_out++] = *res[t].src;
    }
    char (*meta_keys_buf)[320] = calloc((size_t)(n + 1), sizeof *meta_keys_buf);
    if (!meta_keys_buf) goto oom;
    bool any_rowwise = false;
    for (int64_t i = 0; i < n_meta_in; i++) {
        const char *key, *val;
        fpd_safetensors_metadata_at(in.st, i, &key, &val);
        bool replaced = strcmp(key, FPD_META_VERSION_KEY) == 0 || strcmp(key, FPD_META_EXTENSIONS_KEY) == 0;
        if (strcmp(key, FPD_META_EXTENSIONS_KEY) == 0 && strstr(val, FPD_EXTENSION_ROWWISE)) any_rowwise = true;
        for (int64_t t = 0; t < n && !replaced; t++) {
            if (!res[t].compress) continue;
            const char *pre = strncmp(key, FPD_META_TABLE_PREFIX, strlen(FPD_META_TABLE_PREFIX)) == 0 ? FPD_META_TABLE_PREFIX
                              : strncmp(key, FPD_META_ROWWISE_PREFIX, strlen(FPD_META_ROWWISE_PREFIX)) == 0
                                  ? FPD_META_ROWWISE_PREFIX
                                  : NULL;
            replaced = pre && strcmp(key + strlen(pre), res[t].src->name) == 0;
        }
        if (replaced) continue;
        mkeys[k_meta] = key;
        mvals[k_meta++] = val;
    }
    for (int64_t t = 0; t < n; t++) any_rowwise |= res[t].compress && res[t].enc != COMPRESS_ENC_FPD;
    mkeys[k_meta] = FPD_META_VERSION_KEY;
    mvals[k_meta++] = "1";
    if (any_rowwise) {
        mkeys[k_meta] = FPD_META_EXTENSIONS_KEY;
        mvals[k_meta++] = FPD_EXTENSION_ROWWISE;
    }
    for (int64_t t = 0; t < n; t++) {
        if (!res[t].compress) continue;
        snprintf(meta_keys_buf[t], sizeof meta_keys_buf[t], "%s%s",
                 res[t].enc == COMPRESS_ENC_FPD ? FPD_META_TABLE_PREFIX : FPD_META_ROWWISE_PREFIX, res[t].src->name);
        mkeys[k_meta] = meta_keys_buf[t];
        mvals[k_meta++] = res[t].meta_json;
    }
    enum fpd_status wst = fpd_safetensors_write(out_path, outs, k_out, mkeys, mvals, k_meta,
                                                opt->force ? FPD_WRITE_OVERWRITE : 0, &err);
    free(meta_keys_buf);
    if (wst) {
        cli_error("%s", err.msg);
        goto done;
    }

    /* ---- report ---- */
    int n_compressed = 0;
    for (int64_t t = 0; t < n; t++) n_compressed += res[t].compress;
    if (n_compressed == 0 && !opt->quiet)
        cli_warn("%s: no table qualified for compression, so %s is a copy of it%s", in_path, out_path,
                 in.st && fpd_safetensors_metadata_get(in.st, FPD_META_VERSION_KEY)
                     ? " (it already holds FPD tables; see fpd-inspect)"
                     : " (see --min-rows, --min-ratio, --tables)");
    report = json_object();
    json_object_set_new(report, "schema", json_string("fpd-compress/2"));
    json_object_set_new(report, "input", json_string(in_path));
    json_object_set_new(report, "output", json_string(out_path));
    json_object_set_new(report, "core_dtype", json_string(fpd_dtype_name(opt->plan.core_dtype)));
    json_object_set_new(report, "encoding", json_string(compress_encoding_name(enc0)));
    json_object_set_new(report, "max_error", target > 0.0 ? json_real(target) : json_null());
    json_object_set(report, "warnings", warnings);
    json_object_set(report, "passed_through", passed);
    json_t *tabs = json_array();
    for (int64_t t = 0; t < n; t++) {
        struct table_result *r = &res[t];
        if (!r->candidate) continue;
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(r->src->name));
        json_object_set_new(o, "rows", json_integer(r->src->shape[0]));
        json_object_set_new(o, "dim", json_integer(r->src->shape[1]));
        json_object_set_new(o, "dtype", json_string(fpd_dtype_name(r->src->dtype)));
        json_object_set_new(o, "compressed", json_boolean(r->compress));
        json_object_set_new(o, "encoding", json_string(r->compress ? compress_encoding_name(r->enc) : "dense"));
        if (r->why[0]) json_object_set_new(o, "why", json_string(r->why));
        if (r->compress && r->enc != COMPRESS_ENC_FPD) {
            json_object_set_new(o, "r", json_null());
            json_object_set_new(o, "p", json_null());
            json_object_set_new(o, "layout", json_string(FPD_ROWWISE_LAYOUT));
        } else if (r->compress) {
            int64_t rmax = 1;
            for (int32_t m = 1; m < r->shape.k; m++) rmax = r->shape.ranks[m] > rmax ? r->shape.ranks[m] : rmax;
            json_object_set_new(o, "r", json_integer(rmax));
            json_object_set_new(o, "p", json_integer(r->shape.terms));
            json_object_set_new(o, "k", json_integer(r->shape.k));
            json_object_set_new(o, "row_shape", json_dims(r->shape.row_shape, r->shape.k));
            json_object_set_new(o, "col_shape", json_dims(r->shape.col_shape, r->shape.k));
            json_object_set_new(o, "ranks", json_dims(r->shape.ranks, r->shape.k + 1));
            json_object_set_new(o, "padding", json_integer(r->plan.padding));
            json_object_set_new(o, "params", json_integer(fpd_layer_shape_params(&r->shape)));
            json_object_set_new(o, "core_dtype", json_string(fpd_dtype_name(opt->plan.core_dtype)));
        } else {
            json_object_set_new(o, "r", json_null());
            json_object_set_new(o, "p", json_null());
            json_object_set_new(o, "reason", json_string(r->reason));
        }
        json_object_set_new(o, "bytes_before", json_integer((json_int_t)r->bytes_before));
        json_object_set_new(o, "bytes_after", json_integer((json_int_t)r->bytes_after));
        json_object_set_new(o, "ratio", json_real((double)r->bytes_before / (double)r->bytes_after));
        json_object_set_new(o, "rel_error", json_real(r->compress ? r->stats.rel_error : 0.0));
        if (r->compress) { /* the accuracy report, whatever the encoding */
            const struct fpd_quality *qs = &r->stats;
            if (r->weighted) json_object_set_new(o, "rel_error_weighted", json_real(qs->rel_error_weighted));
            json_object_set_new(o, "cos_mean", json_real(qs->cos_mean));
            json_object_set_new(o, "cos_p5", json_real(qs->cos_p5));
            json_object_set_new(o, "cos_min", json_real(qs->cos_min));
            json_object_set_new(o, "recall10", qs->recall_queries ? json_real(qs->recall10) : json_null());
            json_object_set_new(o, "recall_queries", json_integer(qs->recall_queries));
        }
        if (r->have_quant && !(r->compress && r->enc == COMPRESS_ENC_FPD)) {
            json_object_set_new(o, "baselines", baselines_json(r->bytes_before, &r->quant));
        }
        if (r->compress && r->enc == COMPRESS_ENC_FPD) {
            const struct fpd_quality *qs = &r->stats;
            json_object_set_new(o, "rel_error_fit", json_real(r->fit.rel_error_fit));
            json_object_set_new(o, "predicted_error",
                                isfinite(r->plan.predicted_error) ? json_real(r->plan.predicted_error) : json_null());
            json_object_set_new(o, "fit", json_string(r->fit_name));
            json_object_set_new(o, "rel_error_als", json_real(r->fit.rel_error_als));
            json_object_set_new(o, "als_sweeps", json_integer(r->fit.als_sweeps));
            json_object_set_new(o, "row_perm", json_boolean(fpd_layer_row_perm_bytes(&r->out[0], r->n_out) > 0));
            struct fpd_quant_baseline qb = {qs->int8_rel_error, qs->int4_rel_error, qs->int8_bytes, qs->int4_bytes};
            json_t *bl = baselines_json(r->bytes_before, &qb);
            const struct { const char *name; size_t bytes; double err; } base[2] = {
                {"int8_rowwise", qs->int8_bytes, qs->int8_rel_error}, {"int4_rowwise", qs->int4_bytes, qs->int4_rel_error}};
            const char *better = NULL;
            for (int q = 0; q < 2; q++)
                if (base[q].bytes <= r->bytes_after && base[q].err < qs->rel_error) better = base[q].name;
            if (r->ttsvd_r) {
                json_t *b = json_object();
                json_object_set_new(b, "r", json_integer(r->ttsvd_r));
                json_object_set_new(b, "bytes", json_integer((json_int_t)r->ttsvd_bytes));
                json_object_set_new(b, "ratio", json_real((double)r->bytes_before / (double)r->ttsvd_bytes));
                json_object_set_new(b, "rel_error", json_real(r->ttsvd_error));
                json_object_set_new(bl, "tt_svd", b);
            }
            json_object_set_new(o, "baselines", bl);
            char note[256];
            if (better)
                snprintf(note, sizeof note, "%s quantization is smaller and more accurate than this FPD table", better);
            else if (qs->int4_bytes > r->bytes_after)
                snprintf(note, sizeof note, "no row-wise quantization reaches this size (int4 is %.1fx)",
                         (double)r->bytes_before / (double)qs->int4_bytes);
            else
                snprintf(note, sizeof note, "more accurate than row-wise quantization of the same size");
            json_object_set_new(o, "note", json_string(note));
            json_object_set_new(o, "fit_seconds", json_real(r->fit.fit_seconds));
            json_object_set_new(o, "finetune_seconds", json_real(r->fit.finetune_seconds));
            json_object_set_new(o, "finetune_epochs", json_integer(r->fit.finetune_epochs));
        }
        json_array_append_new(tabs, o);
    }
    json_object_set_new(report, "tables", tabs);
    json_t *tot = json_object();
    json_object_set_new(tot, "tables_compressed", json_integer(n_compressed));
    int n_enc[COMPRESS_ENC_DENSE + 1] = {0};
    for (int64_t t = 0; t < n; t++)
        if (res[t].compress) n_enc[res[t].enc]++;
    json_object_set_new(tot, "tables_fpd", json_integer(n_enc[COMPRESS_ENC_FPD]));
    json_object_set_new(tot, "tables_int8", json_integer(n_enc[COMPRESS_ENC_INT8]));
    json_object_set_new(tot, "tables_int4", json_integer(n_enc[COMPRESS_ENC_INT4]));
    json_object_set_new(tot, "bytes_before", json_integer((json_int_t)total_before));
    json_object_set_new(tot, "bytes_after", json_integer((json_int_t)total_after));
    json_object_set_new(tot, "ratio", json_real(total_after ? (double)total_before / (double)total_after : 1.0));
    json_object_set_new(report, "totals", tot);
    *report_out = report;
    report = NULL;
    rc = CLI_EXIT_OK;
    goto done;
oom:
    cli_error("out of memory");
    rc = CLI_EXIT_FAILURE;
done:
    if (res)
        for (int64_t t = 0; t < n; t++) free_result(&res[t]);
    free(res);
    free(outs);
    free(mkeys);
    free(mvals);
    json_decref(report);
    json_decref(warnings);
    json_decref(passed);
    free(weights);
    cli_input_free(&in);
    free(hold);
    return rc;
}

static const char *jstr(const json_t *o, const char *k);
static double jnum(const json_t *o, const char *k);
static long long jint(const json_t *o, const char *k);
static const char *jdims(const json_t *a, char *buf, size_t len);

int compress_init_checkpoint(const char *out_path, const char *name, int64_t rows, int64_t dim,
                             const struct fpd_init_params *ip, const struct compress_options *opt, json_t **report_out) {
    struct fpd_error err = {0};
    struct table_result r;
    memset(&r, 0, sizeof r);
    struct fpd_layer *layer = NULL;
    int rc = CLI_EXIT_FAILURE;
    *report_out = NULL;
    struct fpd_plan_params pp = opt->plan;
    pp.min_rows = 1;
    pp.min_ratio = 0.0;
    if (fpd_plan_table(rows, dim, FPD_DTYPE_F32, &pp, &r.plan, &err)) {
        cli_error("%s", err.msg);
        return CLI_EXIT_USAGE;
    }
    double t0 = fpd__now();
    if (fpd_init(&r.plan.shape, ip, &layer, &err)) {
        cli_error("%s", err.msg);
        return CLI_EXIT_FAILURE;
    }
    double secs = fpd__now() - t0;
    r.shape = *fpd_layer_get_shape(layer);
    r.bytes_before = (size_t)rows * (size_t)dim * 4;
    if (!core_tensors(&r, name, layer, opt->plan.core_dtype)) {
        cli_error("out of memory");
        goto done;
    }
    /* realized moments of what is stored (after rounding to the core dtype) */
    double sum = 0.0, sumsq = 0.0;
    float *buf = malloc((size_t)(1024 * dim) * sizeof(float));
    if (!buf) {
        cli_error("out of memory");
        goto done;
    }
    for (int64_t r0 = 0; r0 < rows; r0 += 1024) {
        int64_t r1 = r0 + 1024 < rows ? r0 + 1024 : rows;
        fpd_layer_reconstruct(layer, r0, r1, buf, &err);
        for (int64_t e = 0; e < (r1 - r0) * dim; e++) {
            sum += buf[e];
            sumsq += (double)buf[e] * buf[e];
        }
    }
    free(buf);
    double cnt = (double)rows * (double)dim, mean = sum / cnt, var = sumsq / cnt - mean * mean;
    struct fpd_table_meta meta;
    memset(&meta, 0, sizeof meta);
    meta.shape = r.shape;
    meta.source_dtype = FPD_DTYPE_F32;
    meta.core_dtype = opt->plan.core_dtype;
    snprintf(meta.fit, sizeof meta.fit, "init:%s:%g", ip->kind == FPD_INIT_KIND_NORMAL ? "normal" : "uniform",
             ip->scale);
    meta.seed = ip->seed;
    meta.rel_error = NAN; /* no source table */
    if (fpd_table_meta_to_json(&meta, &r.meta_json, &err)) {
        cli_error("%s", err.msg);
        goto done;
    }
    char key[320];
    snprintf(key, sizeof key, "%s%s", FPD_META_TABLE_PREFIX, name);
    const char *keys[2] = {FPD_META_VERSION_KEY, key}, *vals[2] = {"1", r.meta_json};
    if (fpd_safetensors_write(out_path, r.out, r.n_out, keys, vals, 2, opt->force ? FPD_WRITE_OVERWRITE : 0, &err)) {
        cli_error("%s", err.msg);
        goto done;
    }
    json_t *rep = json_object(), *t = json_object();
    json_object_set_new(rep, "schema", json_string("fpd-compress/2"));
    json_object_set_new(rep, "output", json_string(out_path));
    json_object_set_new(t, "name", json_string(name));
    json_object_set_new(t, "rows", json_integer(rows));
    json_object_set_new(t, "dim", json_integer(dim));
    json_object_set_new(t, "init", json_string(meta.fit));
    json_object_set_new(t, "r", json_integer(r.shape.k > 1 ? r.shape.ranks[1] : 1));
    json_object_set_new(t, "p", json_integer(r.shape.terms));
    json_object_set_new(t, "k", json_integer(r.shape.k));
    json_object_set_new(t, "row_shape", json_dims(r.shape.row_shape, r.shape.k));
    json_object_set_new(t, "col_shape", json_dims(r.shape.col_shape, r.shape.k));
    json_object_set_new(t, "ranks", json_dims(r.shape.ranks, r.shape.k + 1));
    json_object_set_new(t, "bytes_before", json_integer((json_int_t)r.bytes_before));
    json_object_set_new(t, "bytes_after", json_integer((json_int_t)r.bytes_after));
    json_object_set_new(t, "ratio", json_real((double)r.bytes_before / (double)r.bytes_after));
    json_object_set_new(t, "target_variance",
                        json_real(ip->kind == FPD_INIT_KIND_NORMAL ? ip->scale * ip->scale : ip->scale * ip->scale / 3));
    json_object_set_new(t, "mean", json_real(mean));
    json_object_set_new(t, "variance", json_real(var));
    json_object_set_new(t, "seconds", json_real(secs));
    json_object_set_new(rep, "init", t);
    *report_out = rep;
    rc = CLI_EXIT_OK;
done:
    free_result(&r);
    fpd_layer_free(layer);
    return rc;
}

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
