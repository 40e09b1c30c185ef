/*
 * compress.c - the compression pipeline (lib/fpd.h, "Compression pipeline"): plan
 * every table of a checkpoint, fit the qualifying ones (or quantize them row-wise),
 * copy the rest, write the FPD v1 checkpoint atomically, and build the report
 * (schema "fpd-compress/2"). fpd-compress, fpd-batch and the Python package call it.
 * It never prints: errors go to struct fpd_error, warnings to the report and the
 * log callback (fpd_log_set), progress to the params' callback.
 */
#include "formats/fpd-formats.h"
#include "heuristics/fpd-heuristics.h"
#include "lib/fpd-impl.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

struct fpd_compress_params fpd_compress_default_params(void) {
    struct fpd_compress_params p;
    memset(&p, 0, sizeof p);
    p.encoding = FPD_COMPRESS_ENCODING_AUTO;
    p.max_error = FPD_COMPRESS_DEFAULT_MAX_ERROR;
    p.fit = fpd_fit_default_params();
    p.recall_queries = 200;
    return p;
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
    /* encoding written (FPD_COMPRESS_ENCODING_FPD, _INT8, _INT4; dense when !compress), why,
     * and the measured quantization errors when computed */
    enum fpd_compress_encoding enc;
    char why[512];
    bool have_quant;
    struct fpd_quant_baseline quant;
    double rowwise_error;
    char fit_name[64];  /* the metadata's "fit" ("tt-svd+als+adam", ...) */
    char row_order[320]; /* what ordered the rows (fpd_compress_params.order_*); "" none */
    int64_t free_coords; /* c fitted (fit.free_coords, or the plan's c under FPD_FREE_COORDS_AUTO) */
    /* output tensors: FPD's (ct: cores, row_perm, free/1's E and P) or the row-wise one */
    int32_t n_out;
    struct fpd_tensor_info out[FPD_MAX_MODES + 3];
    struct fpd_checkpoint_tensors ct; /* FPD: owns the tensors out[] lists */
    char *out_names[1];               /* row-wise: out[0]'s name and data */
    void *out_data[1];
    char *meta_json;
};

/* Round the layer's cores and free coordinates (free/1's E and P) to dt (F32, F16 or
 * BF16) in place, so that what is measured next is what fpd_checkpoint_tensors_init
 * stores. Returns false when out of memory. */
static bool round_layer(struct fpd_layer *layer, enum fpd_dtype dt) {
    if (dt == FPD_DTYPE_F32) return true;
    const struct fpd_layer_shape *s = fpd_layer_get_shape(layer);
    const int64_t c = fpd_layer_get_free_coords(layer);
    float *part[FPD_MAX_MODES + 2];
    int64_t numel[FPD_MAX_MODES + 2], n = 0, most = 1;
    for (int32_t m = 0; m < s->k; m++, n++) {
        part[n] = fpd_layer_core(layer, m);
        numel[n] = fpd_layer_shape_core_numel(s, m);
    }
    if (c > 0) {
        part[n] = fpd_layer_get_free_e(layer);
        numel[n++] = s->rows * c;
        part[n] = fpd_layer_get_free_p(layer);
        numel[n++] = c * s->dim;
    }
    for (int64_t q = 0; q < n; q++) most = numel[q] > most ? numel[q] : most;
    void *tmp = fpd_malloc((size_t)most * fpd_dtype_size(dt));
    if (!tmp) return false;
    for (int64_t q = 0; q < n; q++) {
        fpd_dtype_from_f32(dt, part[q], tmp, numel[q]);
        fpd_dtype_to_f32(dt, tmp, part[q], numel[q]);
    }
    fpd_free(tmp);
    return true;
}

/* r->out[], r->n_out, r->bytes_after and r->meta_json: layer stored as FPD table
 * `name` with meta (fpd_checkpoint_tensors_init; r->ct owns the tensors). */
static enum fpd_status stored_tensors(struct table_result *r, const char *name, const struct fpd_layer *layer,
                                      const struct fpd_table_meta *meta, struct fpd_error *err) {
    enum fpd_status st = fpd_checkpoint_tensors_init(layer, name, meta, &r->ct, err);
    if (st) return st;
    r->n_out = (int32_t)r->ct.n;
    r->bytes_after = 0;
    for (int32_t m = 0; m < r->n_out; m++) {
        r->out[m] = r->ct.tensors[m];
        r->bytes_after += r->out[m].nbytes;
    }
    r->meta_json = r->ct.meta_value; /* taken over: free_result frees it */
    r->ct.meta_value = NULL;
    return FPD_STATUS_OK;
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
    fpd_free(r->out_names[0]);
    fpd_free(r->out_data[0]);
    fpd_checkpoint_tensors_free(&r->ct);
    fpd_free(r->meta_json);
    r->out_names[0] = NULL;
    r->out_data[0] = NULL;
    r->meta_json = NULL;
    r->n_out = 0;
}

/* bytes of the row_perm tensor among a table's outputs (0 without one) */
static size_t fpd_layer_row_perm_bytes(const struct fpd_tensor_info *out, int32_t n) {
    for (int32_t m = 0; m < n; m++)
        if (out[m].ndim == 1) return out[m].nbytes;
    return 0;
}

static bool name_in_list(const char *name, const char *const *list, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (strcmp(list[i], name) == 0) return true;
    return false;
}

static json_t *json_dims(const int64_t *d, int32_t n) {
    json_t *a = json_array();
    for (int32_t i = 0; i < n; i++) json_array_append_new(a, json_integer(d[i]));
    return a;
}

/* *perm_out [rows] (fpd_malloc; the caller frees it): the ids of a table of `rows` rows,
 * in column col (0 or 1) of the interactions file `path` (ids id_base-based), ordered
 * by fpd_row_order_interactions for shape (16 dimensions, seed); desc gets "N
 * interactions of PATH, column C". Errors name path: those of
 * fpd_ncf_interactions_load, CONFIG (an id beyond the table's rows), NOMEM, those of
 * fpd_row_order_interactions. */
static enum fpd_status interaction_order(const char *path, int64_t id_base, int32_t col, int64_t rows,
                                         const struct fpd_layer_shape *shape, uint64_t seed, int64_t **perm_out,
                                         char *desc, size_t desc_len, struct fpd_error *err) {
    struct fpd_ncf_interactions x;
    struct fpd_error e = {0};
    int64_t *perm = NULL;
    enum fpd_status st, cst;
    *perm_out = NULL;
    if ((cst = fpd_ncf_interactions_load(path, id_base, &x, &e))) return fpd__err(err, cst, "%s", e.msg);
    if ((col ? x.n_items : x.n_users) > rows) {
        st = fpd__err(err, FPD_STATUS_CONFIG, "%s: ids up to %lld in column %d, but the table has %lld rows", path,
                      (long long)((col ? x.n_items : x.n_users) - 1), (int)col + 1, (long long)rows);
    } else if (!(perm = fpd_malloc((size_t)rows * sizeof(int64_t)))) {
        st = fpd__err(err, FPD_STATUS_NOMEM, "out of memory for a row order of %lld ids", (long long)rows);
    } else if ((cst = fpd_row_order_interactions(col ? x.items : x.users, col ? x.users : x.items, x.n, rows,
                                                 col ? x.n_users : x.n_items, shape, 16, seed, perm, &e))) {
        st = fpd__err(err, cst, "%s: %s", path, e.msg);
    } else {
        st = FPD_STATUS_OK;
        snprintf(desc, desc_len, "%lld interactions of %s, column %d", (long long)x.n, path, (int)col + 1);
        *perm_out = perm;
        perm = NULL;
    }
    fpd_free(perm);
    fpd_ncf_interactions_free(&x);
    return st;
}

/* The last i of names[0..n) that is `name`, or whose entry is NULL (NULL names: every
 * entry) when only one table is compressed; -1 when none. */
static int64_t entry_for(const char *const *names, int64_t n, const char *name, bool only_one) {
    int64_t found = -1;
    for (int64_t q = 0; q < n; q++) {
        const char *tn = names ? names[q] : NULL;
        if (tn ? strcmp(tn, name) == 0 : only_one) found = q;
    }
    return found;
}

/* Number of tables this run compresses (planned), for a --row-freq without a name. */
static int n_candidates_compressed(int64_t n, const struct fpd_input *in, const struct fpd_compress_params *opt,
                                   const struct fpd_plan_params *plan0) {
    if (in->npy) return 1;
    int count = 0;
    for (int64_t t = 0; t < n; t++) {
        const struct fpd_tensor_info *ti = fpd_input_tensor(in, t);
        char why[160];
        if (fpd_tensor_info_not_a_table(ti, why, sizeof why)) continue;
        if (opt->tables && !name_in_list(ti->name, opt->tables, opt->n_tables)) continue;
        struct fpd_plan plan;
        struct fpd_plan_params tp = *plan0;
        if (opt->tables) {
            tp.min_rows = 1;
            tp.min_ratio = 0.0;
        }
        if (fpd_plan_table(ti->shape[0], ti->shape[1], ti->dtype, &tp, &plan, NULL) == FPD_STATUS_OK && plan.compress)
            count++;
    }
    return count;
}

const char *fpd_compress_encoding_name(enum fpd_compress_encoding e) {
    static const char *const names[] = {"fpd", "auto", "int8", "int4", "dense"};
    return (unsigned)e < FPD_COMPRESS_ENCODING_COUNT ? names[e] : "?";
}

bool fpd_compress_encoding_from_name(const char *s, enum fpd_compress_encoding *out) {
    for (int e = 0; e <= FPD_COMPRESS_ENCODING_DENSE; e++)
        if (strcmp(s, fpd_compress_encoding_name((enum fpd_compress_encoding)e)) == 0) {
            *out = (enum fpd_compress_encoding)e;
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
    r->out_names[0] = fpd_malloc(len);
    r->out_data[0] = fpd_malloc((size_t)view->rows * rb + 1);
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

/* The fit's progress, passed on as "table i/n NAME: STAGE" to the params' callback;
 * false (stop the fit) when that callback or the cancel callback says so. */
struct stage_progress {
    const struct fpd_compress_params *params;
    const char *label; /* "table i/n NAME" */
    char stage[448];
};
static bool cancelled(const struct fpd_compress_params *p) { return p->cancel && p->cancel(p->cancel_user_data); }
static bool stage_progress_cb(const char *stage, int64_t done, int64_t total, void *user_data) {
    struct stage_progress *p = user_data;
    if (cancelled(p->params)) return false;
    if (!p->params->progress) return true;
    snprintf(p->stage, sizeof p->stage, "%s: %s", p->label, stage);
    return p->params->progress(p->stage, done, total, p->params->progress_user_data);
}

/* {"int8_rowwise": {bytes, ratio, rel_error}, "int4_rowwise": {...}} */
/* c free coordinates per row of tensor ti: at most its dimension (FPD_STATUS_CONFIG) */
static enum fpd_status check_free_coords(const char *in_path, const struct fpd_tensor_info *ti, int64_t c,
                                         struct fpd_error *err) {
    if (c <= ti->shape[1]) return FPD_STATUS_OK;
    return fpd__err(err, FPD_STATUS_CONFIG, "%s: tensor '%s' has dimension %lld; %lld free coordinates per row need "
                    "at most that", in_path, ti->name, (long long)ti->shape[1], (long long)c);
}

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

/* Record a warning: in the report's "warnings" and through the log callback
 * (FPD_LOG_LEVEL_WARN). */
static void add_warning(json_t *warnings, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_warning(json_t *warnings, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fpd__log(FPD_LOG_LEVEL_WARN, "%s", msg);
    json_array_append_new(warnings, json_string(msg));
}

/* The report as compact JSON text in fpd_malloc'd memory (jansson allocates with
 * its own malloc); NULL when out of memory. Reals keep 17 digits: the text parses
 * back to the same numbers. */
static char *report_text(const json_t *report) {
    char *j = json_dumps(report, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!j) return NULL;
    size_t len = strlen(j) + 1;
    char *out = fpd_malloc(len);
    if (out) memcpy(out, j, len);
    free(j);
    return out;
}

/* Add extension `name` ("NAME/VERSION") to the comma-separated list *ext (NULL:
 * empty) unless it is there: *ext then points to a new string that *owned holds
 * (the one it held before is freed). Returns false when out of memory. */
static bool ext_add(const char **ext, char **owned, const char *name) {
    size_t nl = strlen(name);
    for (const char *p = *ext; p && (p = strstr(p, name)); p += nl)
        if ((p == *ext || p[-1] == ',') && (p[nl] == '\0' || p[nl] == ',')) return true;
    size_t l = (*ext ? strlen(*ext) + 1 : 0) + nl + 1;
    char *s = fpd_malloc(l);
    if (!s) return false;
    snprintf(s, l, "%s%s%s", *ext ? *ext : "", *ext ? "," : "", name);
    fpd_free(*owned);
    *ext = *owned = s;
    return true;
}

enum fpd_status fpd_compress_input(const struct fpd_input *in, const char *in_path, const char *out_path,
                                   const struct fpd_compress_params *opt, char **report_json, struct fpd_error *err) {
    FPD_ASSERT(in && in_path && out_path && opt && report_json);
    enum fpd_status st = FPD_STATUS_OK, cst;
    struct fpd_error e = {0}; /* the callees' errors; err gets them with the file and tensor */
    struct table_result *res = NULL;
    struct fpd_tensor_info *outs = NULL;
    const char **mkeys = NULL, **mvals = NULL;
    char (*meta_keys_buf)[320] = NULL;
    int64_t n = 0;
    json_t *report = NULL, *warnings = NULL, *passed = NULL;
    double *weights = NULL;
    char *ext_buf = NULL;
    /* --free-coords auto: the planner chooses each table's c (its sizes include it) */
    const bool free_auto = opt->fit.free_coords == FPD_FREE_COORDS_AUTO;
    struct fpd_plan_params plan_in = opt->plan ? *opt->plan : fpd_plan_default_params();
    if (free_auto) plan_in.free_coords = FPD_FREE_COORDS_AUTO;
    if (opt->free_rowwise) { /* the planner sizes E as it will be stored */
        plan_in.free_rowwise = true;
        plan_in.free_kind = opt->free_kind;
    }
    const struct fpd_plan_params plan0 = plan_in;
    *report_json = NULL;

    if ((unsigned)opt->encoding >= FPD_COMPRESS_ENCODING_COUNT || opt->n_tables < 0 || opt->n_row_freq < 0 ||
        (opt->n_tables > 0 && !opt->tables) || (opt->n_row_freq > 0 && !opt->row_freq_files) ||
        (opt->fit.free_coords < 0 && !free_auto) || opt->fit.row_perm || opt->n_order < 0 || (opt->n_order > 0 && !opt->order_files))
        return fpd__err(err, FPD_STATUS_INVALID_ARG,
                        "fpd_compress: encoding %d, %lld tables, %lld row-frequency files, %lld free coordinates, "
                        "fit.row_perm %s, %lld order files",
                        (int)opt->encoding, (long long)opt->n_tables, (long long)opt->n_row_freq,
                        (long long)opt->fit.free_coords, opt->fit.row_perm ? "set (per table: use order_files)" : "NULL",
                        (long long)opt->n_order);
    for (int64_t i = 0; i < opt->n_order; i++)
        if (!opt->order_files[i] || (opt->order_columns && (unsigned)opt->order_columns[i] > 1))
            return fpd__err(err, FPD_STATUS_INVALID_ARG, "fpd_compress: order_files[%lld] %s, column %d (0 or 1)",
                            (long long)i, opt->order_files[i] ? opt->order_files[i] : "NULL",
                            opt->order_columns ? (int)opt->order_columns[i] : 0);
    if (free_auto && !(plan0.budget_bytes > 0 || plan0.min_ratio_target > 0.0 || plan0.max_error > 0.0 ||
                       (opt->encoding == FPD_COMPRESS_ENCODING_AUTO && opt->max_error > 0.0)))
        return fpd__err(err, FPD_STATUS_INVALID_ARG,
                        "fpd_compress: free coordinates chosen by the planner (FPD_FREE_COORDS_AUTO) need a target "
                        "to trade them against: a budget, a ratio or a max_error");
    if (opt->free_rowwise && ((unsigned)opt->free_kind >= FPD_FREE_KIND_COUNT || (!free_auto && opt->fit.free_coords < 1)))
        return fpd__err(err, FPD_STATUS_INVALID_ARG,
                        "fpd_compress: free coordinates stored quantized (free_rowwise, kind %d) need free coordinates "
                        "(fit.free_coords %lld: a count, or FPD_FREE_COORDS_AUTO)",
                        (int)opt->free_kind, (long long)opt->fit.free_coords);
    n = fpd_input_count(in);
    res = fpd_calloc((size_t)(n > 0 ? n : 1), sizeof *res);
    if (!res) goto oom;

    for (int64_t i = 0; i < opt->n_tables + opt->n_order; i++) { /* --tables and the ordered tables exist */
        const char *want = i < opt->n_tables ? opt->tables[i]
                           : opt->order_tables  ? opt->order_tables[i - opt->n_tables]
                                                : NULL;
        bool found = !want;
        for (int64_t t = 0; t < n && !found; t++) found = strcmp(fpd_input_tensor(in, t)->name, want) == 0;
        if (!found) {
            st = fpd__err(err, FPD_STATUS_CONFIG, "%s: no tensor named '%s' (see fpd-inspect %s)", in_path, want,
                          in_path);
            goto done;
        }
    }

    /* ---- tables already encoded in the input: check them, pass them through ---- */
    warnings = json_array();
    passed = json_array();
    if (!warnings || !passed) goto oom;
    if (in->st) {
        if ((cst = fpd_checkpoint_check_extensions(in->st, &e))) {
            st = fpd__err(err, cst, "%s", e.msg);
            goto done;
        }
        for (int64_t i = 0; i < fpd_safetensors_metadata_count(in->st); i++) {
            const char *key, *val;
            fpd_safetensors_metadata_at(in->st, i, &key, &val);
            const char *tn = NULL;
            if (strncmp(key, FPD_META_TABLE_PREFIX, strlen(FPD_META_TABLE_PREFIX)) == 0)
                tn = key + strlen(FPD_META_TABLE_PREFIX);
            else if (strncmp(key, FPD_META_ROWWISE_PREFIX, strlen(FPD_META_ROWWISE_PREFIX)) == 0)
                tn = key + strlen(FPD_META_ROWWISE_PREFIX);
            if (!tn) continue;
            if ((cst = fpd_checkpoint_verify_table(in->st, tn, true, &e))) {
                st = fpd__err(err, cst, "%s (the input's encoded tables are checked before they are copied)", e.msg);
                goto done;
            }
            json_t *pt = json_object();
            const char *encname = "fpd";
            struct fpd_rowwise_table q;
            if (key[4] == 'r' && !fpd_checkpoint_load_rowwise(in->st, tn, &q, NULL, &e))
                encname = fpd_rowwise_name(q.kind);
            json_object_set_new(pt, "name", json_string(tn));
            json_object_set_new(pt, "encoding", json_string(encname));
            json_object_set_new(pt, "verified", json_true());
            json_array_append_new(passed, pt);
        }
    }

    /* ---- plan and fit ---- */
    /* --rank/--terms fix the FPD candidate, --budget/--ratio are FPD size targets: FPD */
    const bool forced_fpd = plan0.rank > 0 || plan0.terms > 0 || plan0.budget_bytes > 0 ||
                            plan0.min_ratio_target > 0.0;
    const enum fpd_compress_encoding enc0 = forced_fpd ? FPD_COMPRESS_ENCODING_FPD : opt->encoding;
    /* what forced it, in the report's words (a size target alone is not --rank/--terms) */
    const char *const forced_by = plan0.rank > 0 || plan0.terms > 0 ? "--rank/--terms force FPD"
                                  : plan0.budget_bytes > 0           ? "--budget is an FPD size target"
                                                                     : "--ratio is an FPD size target";
    const double target = opt->max_error > 0.0 ? opt->max_error : plan0.max_error;
    struct fpd_fit_params fp = opt->fit;
    struct stage_progress prog;
    memset(&prog, 0, sizeof prog);
    prog.params = opt;
    prog.label = "";
    fp.progress = stage_progress_cb;
    fp.progress_user_data = &prog;
    size_t total_before = 0, total_after = 0;
    int64_t n_out = 0, n_cand = 0, i_cand = 0;
    for (int64_t t = 0; t < n; t++) {
        const struct fpd_tensor_info *ti = fpd_input_tensor(in, t);
        char why[160];
        n_cand += !fpd_tensor_info_not_a_table(ti, why, sizeof why) &&
                  (!opt->tables || name_in_list(ti->name, opt->tables, opt->n_tables));
    }
    char label[384];
    for (int64_t t = 0; t < n; t++) {
        struct table_result *r = &res[t];
        const struct fpd_tensor_info *ti = fpd_input_tensor(in, t);
        if (cancelled(opt)) goto cancel;
        r->src = ti;
        r->bytes_before = r->bytes_after = ti->nbytes;
        /* named by --tables: compressed whatever its size (a .npy input too: it obeys
         * --min-rows and --min-ratio like any table unless named) */
        bool named = opt->tables && name_in_list(ti->name, opt->tables, opt->n_tables);
        char nat[160]; /* T.fpd.free / free_proj are 2-D floats but parts of FPD table T */
        r->candidate = !fpd_tensor_info_not_a_table(ti, nat, sizeof nat);
        enum fpd_compress_encoding enc = enc0;
        struct fpd_table_view view = {ti->data, ti->dtype, ti->shape[0], ti->shape[1]};
        if (opt->tables && !named) {
            snprintf(r->reason, sizeof r->reason, "not in --tables");
        } else if (!r->candidate) {
            if (named || in->npy) { /* a .npy input is one table: it must be one (bad data, not
                                       * a bad option, unless the caller named it) */
                char why[160];
                st = fpd__err(err, named ? FPD_STATUS_CONFIG : FPD_STATUS_DTYPE, "%s: tensor '%s' is %s", in_path,
                              ti->name, fpd_tensor_info_not_a_table(ti, why, sizeof why));
                goto done;
            }
        } else if (enc == FPD_COMPRESS_ENCODING_DENSE) {
            snprintf(r->reason, sizeof r->reason, "--encoding dense");
        } else {
            /* row frequencies for this table, if given (checked whatever the encoding) */
            fpd_free(weights);
            weights = NULL;
            const int64_t fi = entry_for(opt->row_freq_tables, opt->n_row_freq, ti->name,
                                         opt->n_row_freq > 0 && n_candidates_compressed(n, in, opt, &plan0) == 1);
            if (fi >= 0 && fpd_row_freq_load(opt->row_freq_files[fi], ti->shape[0], &weights, &e)) {
                st = fpd__err(err, FPD_STATUS_CONFIG, "%s", e.msg);
                goto done;
            }
            i_cand++;
            snprintf(label, sizeof label, "table %lld/%lld %s", (long long)i_cand, (long long)n_cand, ti->name);
            prog.label = label;
            struct fpd_plan_params tp = plan0;
            if (named) { /* asked for by name: compressed whatever the size gain (the report shows it) */
                tp.min_rows = 1;
                tp.min_ratio = 0.0;
            }
            /* first the options alone (a bad budget or ratio is a usage error), then with
             * the table's data: --max-error needs it, and the report shows the
             * predicted error (bad data there is a runtime error) */
            double max_error = enc == FPD_COMPRESS_ENCODING_AUTO ? target : enc == FPD_COMPRESS_ENCODING_FPD ? tp.max_error : 0.0;
            tp.max_error = 0.0; /* the only target that needs the data */
            if (fpd_plan_table(ti->shape[0], ti->shape[1], ti->dtype, &tp, &r->plan, &e)) {
                st = fpd__err(err, FPD_STATUS_CONFIG, "%s: tensor '%s': %s", in_path, ti->name, e.msg);
                goto done;
            }
            if (ti->shape[0] < tp.min_rows) {
                snprintf(r->reason, sizeof r->reason, "%s", r->plan.reason);
                goto decided;
            }
            if (plan0.rank > 0 && r->plan.shape.k > 1) { /* a table kept dense above gets no warning */
                int64_t rmax = 1;
                for (int32_t m = 1; m < r->plan.shape.k; m++)
                    rmax = r->plan.shape.ranks[m] > rmax ? r->plan.shape.ranks[m] : rmax;
                if (rmax < plan0.rank)
                    add_warning(warnings,
                                "%s: --rank %lld is above what the shape allows; the ranks are capped to %lld (TT-SVD "
                                "bound of the unfoldings)", ti->name, (long long)plan0.rank, (long long)rmax);
            }
            /* a given C above the dimension, before any work and whatever encoding auto
             * picks (the planner's c under --free-coords auto is checked at the fit) */
            if (!free_auto && (st = check_free_coords(in_path, ti, opt->fit.free_coords, err))) goto done;
            /* a table with NaN or Inf is refused before any fit, naming the row: by the
             * baselines' pass where they are needed, else by a pass of its own */
            if (enc != FPD_COMPRESS_ENCODING_FPD) cst = fpd_quant_baseline(&view, &r->quant, &e);
            else cst = fpd_rowwise_quantize(&view, FPD_ROWWISE_INT8, NULL, NULL, &e);
            if (cst) {
                st = fpd__err(err, cst, "%s: tensor '%s': %s", in_path, ti->name, e.msg);
                goto done;
            }
            r->have_quant = enc != FPD_COMPRESS_ENCODING_FPD;
            if (enc == FPD_COMPRESS_ENCODING_FPD || enc == FPD_COMPRESS_ENCODING_AUTO) {
                tp.max_error = max_error;
                tp.table = &view;
                if ((cst = fpd_plan_table(ti->shape[0], ti->shape[1], ti->dtype, &tp, &r->plan, &e))) {
                    st = fpd__err(err, cst, "%s: tensor '%s': %s", in_path, ti->name, e.msg);
                    goto done;
                }
            }
            if (enc == FPD_COMPRESS_ENCODING_AUTO) {
                /* the smallest encoding whose error meets the target: FPD first when the
                 * planner found a candidate predicted to meet it that is smaller than the
                 * row-wise ones (fitted and measured below), else int4, int8, dense */
                double ratio4 = (double)r->bytes_before / (double)r->quant.int4_bytes;
                double ratio8 = (double)r->bytes_before / (double)r->quant.int8_bytes;
                bool ok4 = r->quant.int4_rel_error <= target && ratio4 >= tp.min_ratio;
                bool ok8 = r->quant.int8_rel_error <= target && ratio8 >= tp.min_ratio;
                size_t best_q = ok4 ? r->quant.int4_bytes : ok8 ? r->quant.int8_bytes : SIZE_MAX;
                /* FPD's size with the free coordinates it would get (c (N + D) values) */
                const size_t free_bytes = free_auto ? 0 /* in the plan's bytes */
                                                    : fpd_free_coords_bytes(ti->shape[0], ti->shape[1],
                                                                            opt->fit.free_coords, plan0.core_dtype,
                                                                            opt->free_rowwise, opt->free_kind);
                char fpd_part[200];
                char cpart[32] = ""; /* c: the planner's (--free-coords auto) or the given count */
                const int64_t fc = free_auto ? r->plan.free_coords : opt->fit.free_coords;
                if (fc > 0) snprintf(cpart, sizeof cpart, " c=%lld", (long long)fc);
                if (r->plan.compress) /* the ratio counts the free coordinates, as the choice below does */
                    snprintf(fpd_part, sizeof fpd_part, "FPD r=%lld p=%lld%s %.1fx predicted %.4f",
                             (long long)r->plan.shape.ranks[1], (long long)r->plan.shape.terms, cpart,
                             (double)r->bytes_before / (double)(r->plan.bytes_after + free_bytes),
                             r->plan.predicted_error);
                else
                    snprintf(fpd_part, sizeof fpd_part, "FPD: %s", r->plan.reason);
                snprintf(r->why, sizeof r->why, "target %.4g; %s; int4 %.1fx %.4f; int8 %.1fx %.4f", target, fpd_part,
                         ratio4, r->quant.int4_rel_error, ratio8, r->quant.int8_rel_error);
                if (r->plan.compress && r->plan.bytes_after + free_bytes < best_q) enc = FPD_COMPRESS_ENCODING_FPD;
                else if (ok4) enc = FPD_COMPRESS_ENCODING_INT4;
                else if (ok8) enc = FPD_COMPRESS_ENCODING_INT8;
                else {
                    snprintf(r->reason, sizeof r->reason, "no encoding meets --max-error %.4g (%s)", target, r->why);
                    goto decided;
                }
            }
            if (enc == FPD_COMPRESS_ENCODING_INT8 || enc == FPD_COMPRESS_ENCODING_INT4) {
                enum fpd_rowwise kind = enc == FPD_COMPRESS_ENCODING_INT8 ? FPD_ROWWISE_INT8 : FPD_ROWWISE_INT4;
                if ((cst = rowwise_tensor(r, ti->name, &view, kind, weights, opt->recall_queries, fp.seed, &e))) {
                    st = fpd__err(err, cst, "%s: tensor '%s': %s", in_path, ti->name, e.msg);
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
            r->enc = FPD_COMPRESS_ENCODING_FPD;
        }
    decided:
        if (!r->compress) {
            n_out++;
            continue;
        }
        /* fit */
        r->free_coords = fp.free_coords = free_auto ? r->plan.free_coords : opt->fit.free_coords;
        if ((st = check_free_coords(in_path, ti, fp.free_coords, err))) goto done;
        /* the row order from interactions (order_*), for the planned shape */
        int64_t *order = NULL;
        const int64_t oi = entry_for(opt->order_tables, opt->n_order, ti->name,
                                     opt->n_order > 0 && n_candidates_compressed(n, in, opt, &plan0) == 1);
        if (oi >= 0 && fp.cluster_rows) {
            st = fpd__err(err, FPD_STATUS_INVALID_ARG,
                          "%s: tensor '%s': fit.cluster_rows and the interactions of %s both order its rows; give one",
                          in_path, ti->name, opt->order_files[oi]);
            goto done;
        }
        if (oi >= 0 && (cst = interaction_order(opt->order_files[oi], opt->init_id_base,
                                                opt->order_columns ? opt->order_columns[oi] : 0, ti->shape[0],
                                                &r->plan.shape, fp.seed, &order, r->row_order, sizeof r->row_order,
                                                &e))) {
            st = fpd__err(err, cst == FPD_STATUS_NOMEM ? cst : FPD_STATUS_CONFIG, "%s: tensor '%s': %s", in_path,
                          ti->name, e.msg);
            goto done;
        }
        struct fpd_layer *layer = NULL;
        r->weighted = weights != NULL;
        fp.row_weights = weights;
        fp.row_perm = order;
        cst = fpd_fit(&view, &r->plan.shape, &fp, &layer, &r->fit, &e);
        fp.row_perm = NULL;
        fpd_free(order);
        if (cst == FPD_STATUS_CANCELLED || cancelled(opt)) {
            fpd_layer_free(layer);
            goto cancel;
        }
        if (cst) {
            st = fpd__err(err, cst, "%s: tensor '%s': %s", in_path, ti->name, e.msg);
            goto done;
        }
        r->shape = *fpd_layer_get_shape(layer);
        /* measured as stored: cores (and free coordinates) rounded to the core dtype, E
         * to its row-wise rows (free-rowwise/1) */
        if (!round_layer(layer, plan0.core_dtype)) {
            fpd_layer_free(layer);
            goto oom;
        }
        if (opt->free_rowwise && fp.free_coords > 0 && (cst = fpd_layer_quantize_free(layer, opt->free_kind, &e))) {
            fpd_layer_free(layer);
            st = fpd__err(err, cst, "%s: tensor '%s': %s", in_path, ti->name, e.msg);
            goto done;
        }
        if ((cst = fpd_layer_quality(layer, &view, weights, opt->recall_queries, fp.seed, &r->stats, &e))) {
            fpd_layer_free(layer);
            st = fpd__err(err, cst, "%s: tensor '%s': %s", in_path, ti->name, e.msg);
            goto done;
        }
        if (enc0 == FPD_COMPRESS_ENCODING_AUTO && !(r->stats.rel_error <= target)) {
            /* the fit missed the target its prediction met: the next encoding that meets it */
            fpd_layer_free(layer);
            double fitted = r->stats.rel_error;
            size_t n4 = strlen(r->why);
            snprintf(r->why + n4, sizeof r->why - n4, "; FPD fitted %.4f, above the target", fitted);
            bool ok4 = r->quant.int4_rel_error <= target &&
                       (double)r->bytes_before / (double)r->quant.int4_bytes >= plan0.min_ratio;
            bool ok8 = r->quant.int8_rel_error <= target &&
                       (double)r->bytes_before / (double)r->quant.int8_bytes >= plan0.min_ratio;
            memset(&r->stats, 0, sizeof r->stats);
            if (!ok4 && !ok8) {
                r->compress = false;
                r->bytes_after = r->bytes_before;
                snprintf(r->reason, sizeof r->reason, "no encoding meets --max-error %.4g (%s)", target, r->why);
                n_out++;
                continue;
            }
            r->enc = ok4 ? FPD_COMPRESS_ENCODING_INT4 : FPD_COMPRESS_ENCODING_INT8;
            if ((cst = rowwise_tensor(r, ti->name, &view, ok4 ? FPD_ROWWISE_INT4 : FPD_ROWWISE_INT8, weights,
                                      opt->recall_queries, fp.seed, &e))) {
                st = fpd__err(err, cst, "%s: tensor '%s': %s", in_path, ti->name, e.msg);
                goto done;
            }
            goto check_out;
        }
        /* output tensors (cores, row_perm, free/1's E and P in the core dtype) and metadata */
        struct fpd_table_meta meta;
        memset(&meta, 0, sizeof meta);
        meta.source_dtype = ti->dtype;
        meta.core_dtype = plan0.core_dtype;
        snprintf(meta.fit, sizeof meta.fit, "%s%s%s%s%s", fp.cluster_rows ? "cluster+" : r->row_order[0] ? "order+" : "",
                 r->shape.terms > 1 ? "backfit" : "tt-svd", r->fit.als_sweeps ? "+als" : "",
                 r->fit.finetune_kept ? "+adam" : "", fp.free_coords > 0 ? "+free" : "");
        snprintf(r->fit_name, sizeof r->fit_name, "%s", meta.fit);
        meta.seed = fp.seed;
        meta.rel_error = r->stats.rel_error;
        meta.free_rowwise = opt->free_rowwise && fp.free_coords > 0;
        meta.free_kind = opt->free_kind;
        cst = stored_tensors(r, ti->name, layer, &meta, &e);
        fpd_layer_free(layer);
        /* the TT-SVD baseline at the size of everything stored */
        if (cst || (cst = ttsvd_baseline(r, &view, plan0.core_dtype, &e))) {
            st = fpd__err(err, cst, "%s: tensor '%s': %s", in_path, ti->name, e.msg);
            goto done;
        }
    check_out:
        if (r->enc != FPD_COMPRESS_ENCODING_FPD || enc0 != FPD_COMPRESS_ENCODING_AUTO) {
            if (enc0 == FPD_COMPRESS_ENCODING_AUTO)
                ; /* chosen to meet the target */
            else if (target > 0.0 && !(r->stats.rel_error <= target))
                add_warning(warnings,
                            "%s: %s has relative error %.4f, above the error target %.4g (--max-error, %g by "
                            "default%s%s)",
                            ti->name, fpd_compress_encoding_name(r->enc), r->stats.rel_error, target,
                            fpd_compress_default_params().max_error, forced_fpd ? "; " : "",
                            forced_fpd ? forced_by : "");
        }
        if (r->bytes_after >= r->bytes_before)
            add_warning(warnings, "%s: the %s form takes %zu bytes, not less than the %zu bytes of the "
                        "dense table", ti->name, fpd_compress_encoding_name(r->enc), r->bytes_after, r->bytes_before);
        if (!r->why[0]) {
            if (forced_fpd)
                snprintf(r->why, sizeof r->why, "%s", forced_by);
            else
                snprintf(r->why, sizeof r->why, "--encoding %s", fpd_compress_encoding_name(r->enc));
        } else {
            size_t n4 = strlen(r->why);
            snprintf(r->why + n4, sizeof r->why - n4, ": %s is the smallest that meets it",
                     fpd_compress_encoding_name(r->enc));
        }
        for (int32_t m = 0; m < r->n_out; m++) {
            const struct fpd_tensor_info *o = &r->out[m];
            if (in->st && fpd_safetensors_find(in->st, o->name)) {
                st = fpd__err(err, FPD_STATUS_FORMAT,
                              "%s: the input already has a tensor named '%s'; it cannot hold table '%s' compressed",
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
    outs = fpd_calloc((size_t)(n_out > 0 ? n_out : 1), sizeof *outs);
    int64_t n_meta_in = in->st ? fpd_safetensors_metadata_count(in->st) : 0;
    mkeys = fpd_calloc((size_t)(n_meta_in + n + 2), sizeof *mkeys);
    mvals = fpd_calloc((size_t)(n_meta_in + n + 2), sizeof *mvals);
    if (!outs || !mkeys || !mvals) goto oom;
    int64_t k_out = 0, k_meta = 0;
    for (int64_t t = 0; t < n; t++) {
        if (res[t].compress)
            for (int32_t m = 0; m < res[t].n_out; m++) outs[k_out++] = res[t].out[m];
        else outs[k_out++] = *res[t].src;
    }
    meta_keys_buf = fpd_calloc((size_t)(n + 1), sizeof *meta_keys_buf);
    if (!meta_keys_buf) goto oom;
    bool any_rowwise = false;
    const char *in_ext = NULL; /* the input's extensions: its encoded tables pass through */
    for (int64_t i = 0; i < n_meta_in; i++) {
        const char *key, *val;
        fpd_safetensors_metadata_at(in->st, i, &key, &val);
        bool replaced = strcmp(key, FPD_META_VERSION_KEY) == 0 || strcmp(key, FPD_META_EXTENSIONS_KEY) == 0;
        if (strcmp(key, FPD_META_EXTENSIONS_KEY) == 0) in_ext = val;
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
    bool any_free = false, any_free_rowwise = false;
    for (int64_t t = 0; t < n; t++) {
        any_rowwise |= res[t].compress && res[t].enc != FPD_COMPRESS_ENCODING_FPD;
        any_free |= res[t].compress && res[t].ct.extension != NULL;
        any_free_rowwise |= res[t].compress && res[t].ct.extension != NULL && opt->free_rowwise;
        /* (the quantized kind is one for every table: opt->free_kind) */
    }
    mkeys[k_meta] = FPD_META_VERSION_KEY;
    mvals[k_meta++] = "1";
    /* "fpd.extensions": the input's (its encoded tables pass through), plus those written */
    const char *ext = in_ext;
    if ((any_rowwise && !ext_add(&ext, &ext_buf, FPD_EXTENSION_ROWWISE)) ||
        (any_free && !ext_add(&ext, &ext_buf, FPD_EXTENSION_FREE)) ||
        (any_free_rowwise && !ext_add(&ext, &ext_buf,
                                      fpd_free_kind_is_sym(opt->free_kind) ? FPD_EXTENSION_FREE_SYM
                                                                           : FPD_EXTENSION_FREE_ROWWISE)))
        goto oom;
    if (ext) {
        mkeys[k_meta] = FPD_META_EXTENSIONS_KEY;
        mvals[k_meta++] = ext;
    }
    for (int64_t t = 0; t < n; t++) {
        if (!res[t].compress) continue;
        snprintf(meta_keys_buf[t], sizeof meta_keys_buf[t], "%s%s",
                 res[t].enc == FPD_COMPRESS_ENCODING_FPD ? FPD_META_TABLE_PREFIX : FPD_META_ROWWISE_PREFIX, res[t].src->name);
        mkeys[k_meta] = meta_keys_buf[t];
        mvals[k_meta++] = res[t].meta_json;
    }
    if (cancelled(opt)) goto cancel;
    if ((cst = fpd_safetensors_write(out_path, outs, k_out, mkeys, mvals, k_meta,
                                     opt->overwrite ? FPD_WRITE_OVERWRITE : 0, &e))) {
        st = fpd__err(err, cst, "%s", e.msg);
        goto done;
    }

    /* ---- report ---- */
    int n_compressed = 0;
    for (int64_t t = 0; t < n; t++) n_compressed += res[t].compress;
    if (n_compressed == 0)
        fpd__log(FPD_LOG_LEVEL_WARN, "%s: no table qualified for compression, so %s is a copy of it%s", in_path, out_path,
                 in->st && fpd_safetensors_metadata_get(in->st, FPD_META_VERSION_KEY)
                     ? " (it already holds FPD tables; see fpd-inspect)"
                     : " (see --min-rows, --min-ratio, --tables)");
    report = json_object();
    json_object_set_new(report, "schema", json_string("fpd-compress/2"));
    json_object_set_new(report, "input", json_string(in_path));
    json_object_set_new(report, "output", json_string(out_path));
    json_object_set_new(report, "core_dtype", json_string(fpd_dtype_name(plan0.core_dtype)));
    json_object_set_new(report, "encoding", json_string(fpd_compress_encoding_name(enc0)));
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
        json_object_set_new(o, "encoding", json_string(r->compress ? fpd_compress_encoding_name(r->enc) : "dense"));
        if (r->why[0]) json_object_set_new(o, "why", json_string(r->why));
        if (r->compress && r->enc != FPD_COMPRESS_ENCODING_FPD) {
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
            /* parameters of everything stored as floats: cores, then free/1's E [N, c] and
             * P [c, D] (fpd_layer_param_count), all in the core dtype */
            const int64_t fc = r->ct.extension ? r->free_coords : 0, free_params = fc * (r->shape.rows + r->shape.dim);
            json_object_set_new(o, "params", json_integer(fpd_layer_shape_params(&r->shape) + free_params));
            json_object_set_new(o, "core_dtype", json_string(fpd_dtype_name(plan0.core_dtype)));
            json_object_set_new(o, "free_coords", json_integer(fc));
            if (fc > 0) {
                json_object_set_new(o, "free_params", json_integer(free_params));
                json_object_set_new(o, "free_dtype", json_string(opt->free_rowwise ? fpd_free_kind_name(opt->free_kind)
                                                                                   : fpd_dtype_name(plan0.core_dtype)));
                json_object_set_new(o, "free_bytes", /* E and P as stored */
                                    json_integer((json_int_t)fpd_free_coords_bytes(r->shape.rows, r->shape.dim, fc,
                                                                                   plan0.core_dtype, opt->free_rowwise,
                                                                                   opt->free_kind)));
                /* the fit's error of the cores alone (F32, before rounding to the core dtype) */
                json_object_set_new(o, "rel_error_without_free", json_real(r->fit.rel_error_final));
            }
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
        if (r->have_quant && !(r->compress && r->enc == FPD_COMPRESS_ENCODING_FPD)) {
            json_object_set_new(o, "baselines", baselines_json(r->bytes_before, &r->quant));
        }
        if (r->compress && r->enc == FPD_COMPRESS_ENCODING_FPD) {
            const struct fpd_quality *qs = &r->stats;
            json_object_set_new(o, "rel_error_fit", json_real(r->fit.rel_error_fit));
            json_object_set_new(o, "predicted_error",
                                isfinite(r->plan.predicted_error) ? json_real(r->plan.predicted_error) : json_null());
            json_object_set_new(o, "fit", json_string(r->fit_name));
            json_object_set_new(o, "rel_error_als", json_real(r->fit.rel_error_als));
            json_object_set_new(o, "als_sweeps", json_integer(r->fit.als_sweeps));
            json_object_set_new(o, "row_perm", json_boolean(fpd_layer_row_perm_bytes(&r->out[0], r->n_out) > 0));
            json_object_set_new(o, "row_order", r->row_order[0] ? json_string(r->row_order) : json_null());
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
    int n_enc[FPD_COMPRESS_ENCODING_DENSE + 1] = {0};
    for (int64_t t = 0; t < n; t++)
        if (res[t].compress) n_enc[res[t].enc]++;
    json_object_set_new(tot, "tables_fpd", json_integer(n_enc[FPD_COMPRESS_ENCODING_FPD]));
    json_object_set_new(tot, "tables_int8", json_integer(n_enc[FPD_COMPRESS_ENCODING_INT8]));
    json_object_set_new(tot, "tables_int4", json_integer(n_enc[FPD_COMPRESS_ENCODING_INT4]));
    json_object_set_new(tot, "bytes_before", json_integer((json_int_t)total_before));
    json_object_set_new(tot, "bytes_after", json_integer((json_int_t)total_after));
    json_object_set_new(tot, "ratio", json_real(total_after ? (double)total_before / (double)total_after : 1.0));
    json_object_set_new(report, "totals", tot);
    if (!(*report_json = report_text(report))) goto oom;
    goto done;
cancel:
    st = fpd__err(err, FPD_STATUS_CANCELLED, "cancelled; nothing was written");
    goto done;
oom:
    st = fpd__err(err, FPD_STATUS_NOMEM, "out of memory");
done:
    if (res)
        for (int64_t t = 0; t < n; t++) free_result(&res[t]);
    fpd_free(res);
    fpd_free(outs);
    fpd_free(mkeys);
    fpd_free(mvals);
    fpd_free(meta_keys_buf);
    json_decref(report);
    json_decref(warnings);
    json_decref(passed);
    fpd_free(weights);
    fpd_free(ext_buf);
    return st;
}

enum fpd_status fpd_compress_checkpoint(const char *in_path, const char *out_path,
                                        const struct fpd_compress_params *params, char **report_json,
                                        struct fpd_error *err) {
    FPD_ASSERT(in_path && out_path && params && report_json);
    *report_json = NULL;
    struct fpd_input in;
    enum fpd_status st = fpd_input_open(in_path, &in, err);
    if (!st) st = fpd_compress_input(&in, in_path, out_path, params, report_json, err);
    fpd_input_free(&in);
    return st;
}


enum fpd_status fpd_compress_write_init(const char *out_path, const char *name, int64_t rows, int64_t dim,
                                        const struct fpd_init_params *ip, const struct fpd_compress_params *params,
                                        char **report_json, struct fpd_error *err) {
    FPD_ASSERT(out_path && name && ip && params && report_json);
    enum fpd_status st = FPD_STATUS_OK, cst;
    struct fpd_error e = {0};
    struct table_result r;
    memset(&r, 0, sizeof r);
    struct fpd_layer *layer = NULL;
    float *buf = NULL;
    struct fpd__reconstructor rc = {0};
    json_t *rep = NULL;
    *report_json = NULL;
    struct fpd_plan_params pp = params->plan ? *params->plan : fpd_plan_default_params();
    pp.min_rows = 1;
    pp.min_ratio = 0.0;
    if (fpd_plan_table(rows, dim, FPD_DTYPE_F32, &pp, &r.plan, &e))
        return fpd__err(err, FPD_STATUS_CONFIG, "%s", e.msg);
    double t0 = fpd__now();
    if ((cst = fpd_init(&r.plan.shape, ip, &layer, &e))) return fpd__err(err, cst, "%s", e.msg);
    char order_desc[320] = "";
    if (params->init_interactions) { /* row order from the interactions, stored as row_perm */
        int64_t *perm = NULL;
        if ((cst = interaction_order(params->init_interactions, params->init_id_base, params->init_column ? 1 : 0,
                                     rows, fpd_layer_get_shape(layer), ip->seed, &perm, order_desc,
                                     sizeof order_desc, &e)) ||
            (cst = fpd_layer_set_row_perm(layer, perm, &e)))
            st = fpd__err(err, cst, "%s", e.msg);
        fpd_free(perm);
        if (st) goto done;
    }
    double secs = fpd__now() - t0;
    r.shape = *fpd_layer_get_shape(layer);
    r.bytes_before = (size_t)rows * (size_t)dim * 4;
    if (!round_layer(layer, pp.core_dtype)) goto oom;
    /* realized moments of what is stored (after rounding to the core dtype) */
    double sum = 0.0, sumsq = 0.0;
    if (!(buf = fpd_malloc((size_t)(1024 * dim) * sizeof(float)))) goto oom;
    for (int64_t r0 = 0; r0 < rows; r0 += 1024) {
        int64_t r1 = r0 + 1024 < rows ? r0 + 1024 : rows;
        if ((cst = fpd__reconstruct_rows(&rc, layer, r0, r1, buf, &e))) {
            st = fpd__err(err, cst, "%s", e.msg);
            goto done;
        }
        for (int64_t q = 0; q < (r1 - r0) * dim; q++) {
            sum += buf[q];
            sumsq += (double)buf[q] * buf[q];
        }
    }
    double cnt = (double)rows * (double)dim, mean = sum / cnt, var = sumsq / cnt - mean * mean;
    struct fpd_table_meta meta;
    memset(&meta, 0, sizeof meta);
    meta.shape = r.shape;
    meta.source_dtype = FPD_DTYPE_F32;
    meta.core_dtype = pp.core_dtype;
    snprintf(meta.fit, sizeof meta.fit, "init:%s:%g", ip->kind == FPD_INIT_KIND_NORMAL ? "normal" : "uniform",
             ip->scale);
    meta.seed = ip->seed;
    meta.rel_error = NAN; /* no source table */
    if ((cst = stored_tensors(&r, name, layer, &meta, &e))) {
        st = fpd__err(err, cst, "%s", e.msg);
        goto done;
    }
    const char *keys[2] = {FPD_META_VERSION_KEY, r.ct.meta_key}, *vals[2] = {"1", r.meta_json};
    if ((cst = fpd_safetensors_write(out_path, r.out, r.n_out, keys, vals, 2,
                                     params->overwrite ? FPD_WRITE_OVERWRITE : 0, &e))) {
        st = fpd__err(err, cst, "%s", e.msg);
        goto done;
    }
    json_t *t = json_object();
    if (!(rep = json_object()) || !t) {
        json_decref(t);
        goto oom;
    }
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
    json_object_set_new(t, "row_order", order_desc[0] ? json_string(order_desc) : json_null());
    json_object_set_new(rep, "init", t);
    if (!(*report_json = report_text(rep))) goto oom;
    goto done;
oom:
    st = fpd__err(err, FPD_STATUS_NOMEM, "out of memory");
done:
    json_decref(rep);
    fpd__reconstructor_free(&rc);
    fpd_free(buf);
    free_result(&r);
    fpd_layer_free(layer);
    return st;
}
