/*
 * fpd-suggest - the (r, p) selection heuristic on the command line: ranked
 * candidate configurations (r, p, k, row and column shapes) of an FPD layer for a
 * table given by its size (--rows, --dim) or for every eligible table of a
 * checkpoint, with the padding, parameters, bytes and ratio of each and, from a
 * checkpoint's data, the predicted relative error. --budget, --ratio and
 * --max-error pick the candidate fpd-compress would use under the same options.
 * The heuristic itself is in heuristics/ (fpd-heuristics.h says how it works).
 */
#include "tools/cli.h"
#include "tools/pipe.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "Usage: fpd-suggest --rows N --dim D [options]\n"
            "       fpd-suggest CHECKPOINT [options]\n"
            "Ranked (r, p) configurations of FPD layers, with predicted size and error.\n"
            "\n"
            "With --rows and --dim: the candidates for a table of that size (sizes only).\n"
            "With a CHECKPOINT (safetensors, or one .npy table; - for standard input): every 2-D float\n"
            "table with at least\n"
            "--min-rows rows (or those named by --tables), each with errors predicted from its data.\n"
            "\n"
            "Per candidate: rank, r, p (terms), k (cores), c (free coordinates per row, with\n"
            "--free-coords), row and column shapes, padding rows, parameters, bytes, ratio dense / FPD,\n"
            "predicted relative error. '*' marks the pick: the top-ranked, or the one the targets below\n"
            "select (fpd-compress takes the same one under the same options; a pick with c > 0 is\n"
            "printed as fpd-compress options).\n"
            "\n"
            "Options:\n"
            "  -n, --rows N          rows of the table (without CHECKPOINT; 4e7 is accepted)\n"
            "  -d, --dim D           embedding dimension (without CHECKPOINT)\n"
            "      --dtype T         dtype of the dense table: F32 (default), F64, F16, BF16\n"
            "  -t, --tables A,B,...  only these tensors of CHECKPOINT\n"
            "      --budget BYTES    the largest candidate whose cores fit in BYTES, per table (suffixes:\n"
            "                        K M G T or KiB MiB GiB TiB = 1024^n; kB MB GB TB = 1000^n)\n"
            "      --total-budget BYTES  one budget for all the tables of CHECKPOINT, split among them\n"
            "                        by the data per row (fpd-heuristics.h, \"budgets by data\"): a row\n"
            "                        seen c times is worth min(D, lambda c^alpha) parameters; each table\n"
            "                        gets the largest candidate that fits its share\n"
            "      --row-freq [TABLE=]FILE  training interactions per row of TABLE (.npy [rows], or one\n"
            "                        count a line), for --total-budget; repeat per table (without\n"
            "                        it, every row counts once: a split by row count)\n"
            "      --alpha A         the rule's exponent, 0..4 (default 0.5)\n"
            "      --ratio X         the largest candidate at least X times smaller than its table\n"
            "      --max-error E     the smallest candidate predicted at or below relative error E\n"
            "                        (needs CHECKPOINT)\n"
            "  -r, --rank R          only rank R (without --terms: p = 1)\n"
            "  -p, --terms P         only P terms\n"
            "  -k, --cores K         only K cores (default: 3 and 4, the default by N first)\n"
            "      --free-coords auto|0|C  free coordinates per row (format free/1: row i = FPD(i) + E[i] P,\n"
            "                        c (N + D) more values): 0 none (default); C every candidate carries C;\n"
            "                        auto lists c in 1, 2, 4, 8 (c <= D/8, p = 1) under --budget, --ratio,\n"
            "                        --total-budget or --max-error, and takes the most accurate one\n"
            "                        within the target when predicted 1%% below the c = 0 pick (needs\n"
            "                        CHECKPOINT's data; see README)\n"
            );
    fprintf(f,
            "      --free-dtype T    E of the free coordinates as stored: core (default), int8 or int4\n"
            "                        (row-wise rows, extension free-rowwise/1; int4: ceil(c/2) + 4 bytes\n"
            "                        a row), int8-sym or int4-sym (extension free-sym/1; int4-sym:\n"
            "                        ceil(c/2) + 2 bytes a row): the candidates' bytes count E so (as\n"
            "                        fpd-compress --free-dtype)\n"
            "      --core-dtype T    F32 (default), F16 or BF16 for the cores' bytes\n"
            "      --min-rows N      tables with fewer rows are skipped (default 1000; 0 with --rows)\n"
            "      --min-ratio X     fpd-compress keeps tables dense below this ratio (default 2)\n"
            "      --top N           candidates listed per table (default 10), plus the pick\n"
            "      --all             list every candidate\n"
            "      --no-errors       do not predict errors from the checkpoint's data\n"
            "      --json            print one JSON object (schema \"fpd-suggest/1\") instead\n"
            "  -q, --quiet           print no report (errors still go to stderr); the exit\n"
            "                        status says whether a pick exists\n"
            "  -h, --help            this help\n"
            "      --version         version and build features\n"
            "\n"
            "With a target, only the candidates that meet it are listed.\n"
            "Exit status: 0 ok; 1 unreadable checkpoint, or no candidate predicted to reach\n"
            "--max-error; 2 usage error (bad numbers, a budget or ratio that no candidate meets).\n"
            "Example: fpd-suggest --rows 4e7 --dim 128\n"
            "         fpd-suggest samples/glove-10k.safetensors --max-error 0.92 --json\n");
}

/* ------------------------------------------------------------ parsing */

/* An integer >= min, also written as 4e7 (an exact integer in floating notation). */
static int64_t parse_count(const char *opt, const char *s, int64_t min) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!errno && end && end != s && !*end && v >= min) return (int64_t)v;
    errno = 0;
    double d = strtod(s, &end);
    if (!errno && end && end != s && !*end && d >= (double)min && d <= 4.6e18 && d == floor(d)) return (int64_t)d;
    cli_usage_error("%s expects an integer >= %lld, got '%s'", opt, (long long)min, s);
}

static enum fpd_dtype parse_dtype(const char *opt, const char *s, bool core) {
    enum fpd_dtype t;
    if (!fpd_dtype_from_name(s, strlen(s), &t) || !fpd_dtype_is_float(t) || (core && t == FPD_DTYPE_F64))
        cli_usage_error("%s must be %s, got '%s'", opt, core ? "F32, F16 or BF16" : "F32, F64, F16 or BF16", s);
    return t;
}

/* ------------------------------------------------------------ listing */

struct opts {
    struct fpd_plan_params pp;
    int64_t top;       /* <= 0: all */
    bool json, errors, quiet;
    bool shares;       /* --total-budget: each table has a budget share */
};

/* Indices of the candidates to list: in ranking order, those meeting the targets
 * (all when there is none or none meets them), at most top of them, plus the pick. */
static int64_t listing(const struct fpd_suggestion *sg, const struct opts *o, int64_t *idx) {
    bool targets = o->pp.budget_bytes || o->shares || o->pp.min_ratio_target > 0.0 || o->pp.max_error > 0.0;
    bool any = false;
    for (int64_t i = 0; i < sg->n_candidates; i++) any |= sg->candidates[i].eligible;
    int64_t n = 0;
    bool have_sel = false;
    for (int64_t i = 0; i < sg->n_candidates; i++) {
        if (targets && any && !sg->candidates[i].eligible) continue;
        if (o->top > 0 && n >= o->top) break;
        idx[n++] = i;
        have_sel |= i == sg->selected;
    }
    if (sg->selected >= 0 && !have_sel) idx[n++] = sg->selected;
    return n;
}

static json_t *jints(const int64_t *v, int32_t n) {
    json_t *a = json_array();
    for (int32_t i = 0; i < n; i++) json_array_append_new(a, json_integer(v[i]));
    return a;
}

static json_t *jnum(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static json_t *cand_json(const struct fpd_suggestion *sg, int64_t i) {
    const struct fpd_candidate *c = &sg->candidates[i];
    const struct fpd_layer_shape *s = &c->shape;
    json_t *o = json_object();
    json_object_set_new(o, "rank", json_integer(i + 1));
    json_object_set_new(o, "r", json_integer(c->r));
    json_object_set_new(o, "p", json_integer(s->terms));
    json_object_set_new(o, "k", json_integer(s->k));
    json_object_set_new(o, "free_coords", json_integer(c->free_coords));
    json_object_set_new(o, "row_shape", jints(s->row_shape, s->k));
    json_object_set_new(o, "col_shape", jints(s->col_shape, s->k));
    json_object_set_new(o, "ranks", jints(s->ranks, s->k + 1));
    json_object_set_new(o, "padding", json_integer(c->padding));
    json_object_set_new(o, "params", json_integer(c->params));
    json_object_set_new(o, "bytes", json_integer((json_int_t)c->bytes));
    json_object_set_new(o, "ratio", jnum(c->ratio));
    json_object_set_new(o, "predicted_error", jnum(c->predicted_error));
    json_object_set_new(o, "score", jnum(c->score));
    json_object_set_new(o, "dominated", json_boolean(c->dominated));
    json_object_set_new(o, "selected", json_boolean(i == sg->selected));
    return o;
}

/* The candidate that dominates the pick with the fewest bytes (ties: lower error), or -1. */
static int64_t pick_dominator(const struct fpd_suggestion *sg) {
    if (sg->selected < 0 || !sg->candidates[sg->selected].dominated) return -1;
    const struct fpd_candidate *x = &sg->candidates[sg->selected];
    int64_t best = -1;
    for (int64_t j = 0; j < sg->n_candidates; j++) {
        const struct fpd_candidate *y = &sg->candidates[j];
        if (j == sg->selected || !fpd_candidate_dominates(y, x)) continue;
        if (best < 0 || y->bytes < sg->candidates[best].bytes ||
            (y->bytes == sg->candidates[best].bytes && y->predicted_error < sg->candidates[best].predicted_error))
            best = j;
    }
    return best;
}

static json_t *table_json(const char *name, const struct fpd_suggestion *sg, const struct opts *o, int64_t *idx) {
    json_t *t = json_object();
    json_object_set_new(t, "name", name ? json_string(name) : json_null());
    json_object_set_new(t, "rows", json_integer(sg->rows));
    json_object_set_new(t, "dim", json_integer(sg->dim));
    json_object_set_new(t, "dtype", json_string(fpd_dtype_name(sg->dtype)));
    json_object_set_new(t, "core_dtype", json_string(fpd_dtype_name(sg->core_dtype)));
    json_object_set_new(t, "bytes_before", json_integer((json_int_t)sg->bytes_before));
    json_t *h = json_object();
    json_object_set_new(h, "k", json_integer(sg->k_default));
    json_object_set_new(h, "col_rank", json_integer(sg->col_rank));
    json_object_set_new(h, "saturation_rank", json_integer(sg->saturation_rank));
    json_object_set_new(h, "rank_step", json_integer(sg->rank_step));
    json_object_set_new(h, "target_capacity", json_integer(sg->target_rank));
    json_object_set_new(t, "heuristic", h);
    json_object_set_new(t, "error_estimate", json_string(sg->estimate));
    json_object_set_new(t, "compress", json_boolean(sg->compress));
    json_object_set_new(t, "reason", sg->compress ? json_null() : json_string(sg->reason));
    json_object_set_new(t, "n_candidates", json_integer(sg->n_candidates));
    json_object_set_new(t, "selected", sg->selected >= 0 ? cand_json(sg, sg->selected) : json_null());
    int64_t dom = pick_dominator(sg);
    json_object_set_new(t, "selected_dominated_by", dom >= 0 ? cand_json(sg, dom) : json_null());
    json_t *a = json_array();
    int64_t n = listing(sg, o, idx);
    for (int64_t i = 0; i < n; i++) json_array_append_new(a, cand_json(sg, idx[i]));
    json_object_set_new(t, "candidates", a);
    return t;
}

static void print_row(char cells[][48], const int *w, const bool *right, int ncols) {
    char line[1024];
    size_t o = 0;
    o += (size_t)snprintf(line + o, sizeof line - o, "  ");
    for (int c = 0; c < ncols && o < sizeof line; c++) {
        if (right[c]) o += (size_t)snprintf(line + o, sizeof line - o, "%*s", w[c], cells[c]);
        else o += (size_t)snprintf(line + o, sizeof line - o, "%-*s", w[c], cells[c]);
        if (c < ncols - 1 && o < sizeof line) o += (size_t)snprintf(line + o, sizeof line - o, "  ");
    }
    if (o >= sizeof line) o = sizeof line - 1;
    while (o > 0 && line[o - 1] == ' ') o--;
    line[o] = '\0';
    puts(line);
}

#define NCOLS 13
#define COL_C 4 /* the column of c */
static void fill_row(const struct fpd_suggestion *sg, int64_t i, char cells[][48]) {
    const struct fpd_candidate *c = &sg->candidates[i];
    const struct fpd_layer_shape *s = &c->shape;
    snprintf(cells[0], 48, "%s%lld", i == sg->selected ? "*" : "", (long long)(i + 1));
    snprintf(cells[1], 48, "%lld", (long long)c->r);
    snprintf(cells[2], 48, "%lld", (long long)s->terms);
    snprintf(cells[3], 48, "%d", (int)s->k);
    snprintf(cells[4], 48, "%lld", (long long)c->free_coords);
    cli_shape(s->row_shape, s->k, cells[5], 48);
    cli_shape(s->col_shape, s->k, cells[6], 48);
    snprintf(cells[7], 48, "%lld", (long long)c->padding);
    snprintf(cells[8], 48, "%lld", (long long)c->params);
    snprintf(cells[9], 48, "%zu", c->bytes);
    snprintf(cells[10], 48, "%.1fx", c->ratio);
    if (isnan(c->predicted_error)) snprintf(cells[11], 48, "-");
    else snprintf(cells[11], 48, "%.4f", c->predicted_error);
    snprintf(cells[12], 48, "%s", c->dominated ? "dominated" : "");
}

static void table_text(const char *name, const struct fpd_suggestion *sg, const struct opts *o, int64_t *idx) {
    char b[32];
    printf("%s%s%lld x %lld %s, %zu bytes (%s)\n", name ? name : "", name ? ": " : "table ", (long long)sg->rows,
           (long long)sg->dim, fpd_dtype_name(sg->dtype), sg->bytes_before, cli_bytes(sg->bytes_before, b, sizeof b));
    printf("  heuristic (k=%d): column rank g=%lld, saturation rank R0=%lld, step h=%lld, target p*r=R*=%lld\n",
           (int)sg->k_default, (long long)sg->col_rank, (long long)sg->saturation_rank, (long long)sg->rank_step,
           (long long)sg->target_rank);
    printf("  predicted errors: %s\n", sg->estimate);
    static const char *const head[NCOLS] = {"RANK",    "R",      "P",     "K",     "C",        "ROW SHAPE", "COL SHAPE",
                                           "PADDING", "PARAMS", "BYTES", "RATIO", "PRED.ERR", ""};
    static const bool right[NCOLS] = {true, true, true, true, true, false, false,
                                      true, true, true, true, true, false};
    int64_t n = listing(sg, o, idx);
    char(*cells)[NCOLS][48] = calloc((size_t)n + 1, sizeof *cells);
    if (!cells) return;
    /* the C column only when a candidate has free coordinates (without, as before) */
    bool show_c = false;
    for (int64_t i = 0; i < sg->n_candidates; i++) show_c |= sg->candidates[i].free_coords > 0;
    int ncols = show_c ? NCOLS : NCOLS - 1;
    bool rt[NCOLS];
    int w[NCOLS];
    for (int c = 0, d = 0; c < NCOLS; c++) {
        if (!show_c && c == COL_C) continue;
        snprintf(cells[n][d], 48, "%s", head[c]);
        rt[d++] = right[c];
    }
    for (int64_t r = 0; r < n; r++) {
        fill_row(sg, idx[r], cells[r]);
        if (!show_c) memmove(cells[r][COL_C], cells[r][COL_C + 1], (size_t)(NCOLS - 1 - COL_C) * 48);
    }
    for (int c = 0; c < ncols; c++) {
        w[c] = 0;
        for (int64_t r = 0; r <= n; r++)
            if ((int)strlen(cells[r][c]) > w[c]) w[c] = (int)strlen(cells[r][c]);
    }
    print_row(cells[n], w, rt, ncols);
    for (int64_t r = 0; r < n; r++) print_row(cells[r], w, rt, ncols);
    free(cells);
    if (n < sg->n_candidates) printf("  (%lld of %lld candidates; --all lists every one)\n", (long long)n,
                                     (long long)sg->n_candidates);
    if (sg->selected >= 0) {
        const struct fpd_candidate *c = &sg->candidates[sg->selected];
        const char *why = o->pp.max_error > 0.0 ? "the smallest predicted within --max-error"
                          : o->pp.budget_bytes || o->pp.min_ratio_target > 0.0 ? "the largest within the size target"
                          : o->shares                                          ? "the largest within its share"
                                                                               : "the top-ranked";
        if (c->free_coords > 0 && o->pp.free_coords == FPD_FREE_COORDS_AUTO && o->pp.max_error <= 0.0)
            why = "the most accurate within the target: --free-coords auto";
        char cs[32] = "";
        if (c->free_coords > 0) snprintf(cs, sizeof cs, " c=%lld", (long long)c->free_coords);
        printf("  pick: #%lld, r=%lld p=%lld k=%d%s, %zu bytes, %.1fx (%s)", (long long)(sg->selected + 1),
               (long long)c->r, (long long)c->shape.terms, (int)c->shape.k, cs, c->bytes, c->ratio, why);
        if (!isnan(c->predicted_error)) printf(", predicted error %.4f", c->predicted_error);
        printf("\n");
        int64_t dom = pick_dominator(sg);
        if (dom >= 0) {
            const struct fpd_candidate *d = &sg->candidates[dom];
            char ds[32] = "";
            if (d->free_coords > 0) snprintf(ds, sizeof ds, " c=%lld", (long long)d->free_coords);
            printf("  the pick is dominated by #%lld, r=%lld p=%lld k=%d%s: %zu bytes (%.1f%% smaller), "
                   "predicted error %.4f (%+.1f%%); it is kept as the prior's choice (see README)\n",
                   (long long)(dom + 1), (long long)d->r, (long long)d->shape.terms, (int)d->shape.k, ds, d->bytes,
                   100.0 * (1.0 - (double)d->bytes / (double)c->bytes), d->predicted_error,
                   100.0 * (d->predicted_error / c->predicted_error - 1.0));
        }
    }
    const struct fpd_candidate *pk = sg->selected >= 0 ? &sg->candidates[sg->selected] : NULL;
    if (sg->compress && pk && pk->free_coords > 0)
        printf("  fpd-compress: compresses it with the pick given as --encoding fpd --rank %lld --terms %lld "
               "--cores %d --free-coords %lld%s%s\n\n",
               (long long)pk->r, (long long)pk->shape.terms, (int)pk->shape.k, (long long)pk->free_coords,
               o->pp.free_rowwise ? " --free-dtype " : "", o->pp.free_rowwise ? fpd_free_kind_name(o->pp.free_kind) : "");
    else if (sg->compress) printf("  fpd-compress: compresses it with the pick\n\n");
    else printf("  fpd-compress: keeps it dense: %s\n\n", sg->reason);
}

/* ------------------------------------------------------------ main */

struct entry {
    const char *name;
    struct fpd_suggestion *sg;
    bool have_share;              /* --total-budget: this table's share                  */
    size_t share_bytes;
    double interactions;          /* sum of its row counts (NAN: none given)              */
    bool have_quant;              /* from a checkpoint: the row-wise quantization baselines */
    struct fpd_quant_baseline quant;
};

/* Why a tensor of the checkpoint is not listed (NULL: it is); *named: --tables names it. */
static const char *skip_reason(const struct fpd_tensor_info *ti, char **names, int n_names, int64_t min_rows,
                               bool *named, char *buf, size_t len) {
    *named = false;
    for (int i = 0; i < n_names; i++) *named |= strcmp(names[i], ti->name) == 0;
    if (fpd_tensor_info_not_a_table(ti, buf, len)) return ti->ndim == 2 && fpd_dtype_is_float(ti->dtype) ? buf : "not a 2-D float table";
    if (!*named && ti->shape[0] < min_rows) {
        snprintf(buf, len, "%lld rows < --min-rows %lld", (long long)ti->shape[0], (long long)min_rows);
        return buf;
    }
    return NULL;
}

/* --total-budget: the listed tables' shares (fpd_budget_split) into ent[t] by tensor
 * index t, from the counts of --row-freq [TABLE=]FILE. Returns an exit code. */
static int split_total_budget(const char *path, struct fpd_input *in, char **names, int n_names,
                              const struct opts *o, size_t total, double alpha, const char **specs, int n_specs,
                              struct entry *ent) {
    int64_t n_in = fpd_input_count(in), n = 0;
    int status = CLI_EXIT_OK;
    struct fpd_budget_table *bt = calloc((size_t)n_in + 1, sizeof *bt);
    int64_t *which = calloc((size_t)n_in + 1, sizeof *which);
    double *share = calloc((size_t)n_in + 1, sizeof *share);
    double **counts = calloc((size_t)n_in + 1, sizeof *counts);
    bool *used = calloc((size_t)n_specs + 1, sizeof *used);
    struct fpd_error err = {0};
    if (!bt || !which || !share || !counts || !used) {
        cli_error("out of memory");
        status = CLI_EXIT_FAILURE;
        goto done;
    }
    for (int64_t t = 0; t < n_in; t++) {
        const struct fpd_tensor_info *ti = fpd_input_tensor(in, t);
        bool named;
        char buf[160];
        if (skip_reason(ti, names, n_names, o->pp.min_rows, &named, buf, sizeof buf) || (names && !named)) continue;
        which[n] = t;
        bt[n] = (struct fpd_budget_table){ti->shape[0], ti->shape[1], NULL};
        n++;
    }
    if (n == 0) goto done; /* nothing listed: main says so */
    for (int q = 0; q < n_specs; q++) {
        const char *eq = strchr(specs[q], '=');
        const char *file = eq ? eq + 1 : specs[q];
        int64_t hit = -1;
        for (int64_t j = 0; j < n; j++) {
            const char *nm = fpd_input_tensor(in, which[j])->name;
            if (eq ? (strlen(nm) == (size_t)(eq - specs[q]) && !strncmp(nm, specs[q], (size_t)(eq - specs[q]))) : n == 1)
                hit = j;
        }
        if (hit < 0) {
            if (eq) cli_error("--row-freq %s: '%.*s' is not a table listed from %s", specs[q], (int)(eq - specs[q]),
                              specs[q], path);
            else cli_error("--row-freq %s: %lld tables are listed; name one as TABLE=FILE", specs[q], (long long)n);
            status = CLI_EXIT_USAGE;
            goto done;
        }
        if (counts[hit]) {
            cli_error("--row-freq: two files for table '%s'", fpd_input_tensor(in, which[hit])->name);
            status = CLI_EXIT_USAGE;
            goto done;
        }
        if (fpd_row_freq_load(file, bt[hit].rows, &counts[hit], &err) != FPD_STATUS_OK) {
            cli_error("table '%s': %s", fpd_input_tensor(in, which[hit])->name, err.msg);
            status = CLI_EXIT_FAILURE;
            goto done;
        }
        bt[hit].counts = counts[hit];
    }
    if (n_specs)
        for (int64_t j = 0; j < n; j++)
            if (!counts[j]) {
                cli_error("--row-freq is given for some tables but not for '%s': give one for every listed table "
                          "(or none: a split by row count)", fpd_input_tensor(in, which[j])->name);
                status = CLI_EXIT_USAGE;
                goto done;
            }
    /* the budget in parameters of the cores' dtype */
    double params = (double)total / (double)fpd_dtype_size(o->pp.core_dtype ? o->pp.core_dtype : FPD_DTYPE_F32);
    if (fpd_budget_split(bt, n, params, alpha, share, &err) != FPD_STATUS_OK) {
        cli_error("%s: --total-budget: %s", path, err.msg);
        status = err.status == FPD_STATUS_INVALID_ARG ? CLI_EXIT_USAGE : CLI_EXIT_FAILURE;
        goto done;
    }
    for (int64_t j = 0; j < n; j++) {
        struct entry *e = &ent[which[j]];
        e->have_share = true;
        /* floor, past the split's rounding (1e-12 relative) */
        e->share_bytes = (size_t)floor(share[j] * (double)fpd_dtype_size(o->pp.core_dtype ? o->pp.core_dtype
                                                                                        : FPD_DTYPE_F32) + 1e-3);
        e->interactions = NAN;
        if (counts[j]) {
            double c = 0;
            for (int64_t i = 0; i < bt[j].rows; i++) c += counts[j][i];
            e->interactions = c;
        }
    }
done:
    if (counts)
        for (int64_t j = 0; j < n; j++) fpd_free(counts[j]);
    free(counts);
    free(bt);
    free(which);
    free(share);
    free(used);
    return status;
}

/* Plain words on row-wise quantization against the pick: is a quantized table
 * smaller and more accurate, or can none reach the pick's size? */
static void quant_note(const struct fpd_suggestion *sg, const struct fpd_quant_baseline *q, char *buf, size_t len) {
    const struct fpd_candidate *c = sg->selected >= 0 ? &sg->candidates[sg->selected] : NULL;
    double r8 = (double)sg->bytes_before / (double)q->int8_bytes, r4 = (double)sg->bytes_before / (double)q->int4_bytes;
    if (c && q->int4_bytes <= c->bytes && !isnan(c->predicted_error) && q->int4_rel_error < c->predicted_error)
        snprintf(buf, len, "int4 row-wise (%.1fx, rel.err %.4f) is smaller and more accurate than the pick", r4,
                 q->int4_rel_error);
    else if (c && q->int8_bytes <= c->bytes && !isnan(c->predicted_error) && q->int8_rel_error < c->predicted_error)
        snprintf(buf, len, "int8 row-wise (%.1fx, rel.err %.4f) is smaller and more accurate than the pick", r8,
                 q->int8_rel_error);
    else
        snprintf(buf, len, "row-wise int8 is %.1fx (rel.err %.4f), int4 %.1fx (rel.err %.4f): %s", r8,
                 q->int8_rel_error, r4, q->int4_rel_error,
                 c && q->int4_bytes > c->bytes ? "neither reaches the pick's size" : "compare before choosing");
}

int main(int argc, char **argv) {
    cli_prog = "fpd-suggest";
    setlocale(LC_NUMERIC, "C");
    struct opts o;
    memset(&o, 0, sizeof o);
    o.pp = fpd_plan_default_params();
    o.top = 10;
    o.errors = true;
    int64_t rows = 0, dim = 0;
    bool have_rows = false, have_dim = false, min_rows_set = false;
    enum fpd_dtype dtype = FPD_DTYPE_F32;
    const char *tables_arg = NULL;
    size_t total_budget = 0;
    double alpha = FPD_BUDGET_DEFAULT_ALPHA;
    bool alpha_set = false;
    const char **freq_specs = calloc((size_t)argc + 1, sizeof *freq_specs);
    int n_freq = 0;
    if (!freq_specs) {
        cli_error("out of memory");
        return CLI_EXIT_FAILURE;
    }
    enum { OPT_DTYPE = 256, OPT_BUDGET, OPT_RATIO, OPT_MAX_ERROR, OPT_CORE_DTYPE, OPT_MIN_ROWS, OPT_MIN_RATIO,
           OPT_TOP, OPT_ALL, OPT_NO_ERRORS, OPT_JSON, OPT_VERSION, OPT_TOTAL_BUDGET, OPT_ROW_FREQ, OPT_ALPHA,
           OPT_FREE_COORDS, OPT_FREE_DTYPE };
    static const struct option opts[] = {
        {"rows", required_argument, 0, 'n'},         {"dim", required_argument, 0, 'd'},
        {"dtype", required_argument, 0, OPT_DTYPE},   {"tables", required_argument, 0, 't'},
        {"budget", required_argument, 0, OPT_BUDGET}, {"ratio", required_argument, 0, OPT_RATIO},
        {"max-error", required_argument, 0, OPT_MAX_ERROR}, {"rank", required_argument, 0, 'r'},
        {"terms", required_argument, 0, 'p'},        {"cores", required_argument, 0, 'k'},
        {"core-dtype", required_argument, 0, OPT_CORE_DTYPE}, {"min-rows", required_argument, 0, OPT_MIN_ROWS},
        {"min-ratio", required_argument, 0, OPT_MIN_RATIO}, {"top", required_argument, 0, OPT_TOP},
        {"all", no_argument, 0, OPT_ALL},             {"no-errors", no_argument, 0, OPT_NO_ERRORS},
        {"json", no_argument, 0, OPT_JSON},           {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, OPT_VERSION},     {"quiet", no_argument, 0, 'q'},
        {"total-budget", required_argument, 0, OPT_TOTAL_BUDGET}, {"row-freq", required_argument, 0, OPT_ROW_FREQ},
        {"alpha", required_argument, 0, OPT_ALPHA},   {"free-coords", required_argument, 0, OPT_FREE_COORDS},
        {"free-dtype", required_argument, 0, OPT_FREE_DTYPE},
        {0, 0, 0, 0},
    };
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":n:d:t:r:p:k:hq", opts, NULL)) != -1) {
        switch (c) {
        case 'n': rows = parse_count("--rows", optarg, 1); have_rows = true; break;
        case 'd': dim = parse_count("--dim", optarg, 1); have_dim = true; break;
        case OPT_DTYPE: dtype = parse_dtype("--dtype", optarg, false); break;
        case 't': tables_arg = optarg; break;
        case OPT_BUDGET: o.pp.budget_bytes = cli_parse_bytes("--budget", optarg); break;
        case OPT_TOTAL_BUDGET: total_budget = cli_parse_bytes("--total-budget", optarg); break;
        case OPT_ROW_FREQ: freq_specs[n_freq++] = optarg; break;
        case OPT_ALPHA: {
            char *end = NULL;
            errno = 0;
            double v = strtod(optarg, &end);
            if (errno || !end || end == optarg || *end || !(v >= 0.0 && v <= 4.0))
                cli_usage_error("--alpha expects a number in [0, 4], got '%s'", optarg);
            alpha = v;
            alpha_set = true;
            break;
        }
        case OPT_RATIO: o.pp.min_ratio_target = cli_parse_pos("--ratio", optarg); break;
        case OPT_MAX_ERROR: o.pp.max_error = cli_parse_pos("--max-error", optarg); break;
        case 'r': o.pp.rank = parse_count("--rank", optarg, 1); break;
        case 'p': o.pp.terms = parse_count("--terms", optarg, 1); break;
        case 'k': {
            int64_t k = parse_count("--cores", optarg, 1);
            if (k > FPD_MAX_MODES) cli_usage_error("--cores must be at most %d, got %lld", FPD_MAX_MODES, (long long)k);
            o.pp.k = (int32_t)k;
            break;
        }
        case OPT_FREE_COORDS: o.pp.free_coords = cli_parse_free_coords("--free-coords", optarg); break;
        case OPT_FREE_DTYPE:
            if (strcmp(optarg, "core") == 0) o.pp.free_rowwise = false;
            else if (fpd_free_kind_from_name(optarg, &o.pp.free_kind)) o.pp.free_rowwise = true;
            else cli_usage_error("--free-dtype must be core, int8, int4, int8-sym or int4-sym, got '%s'", optarg);
            break;
        case OPT_CORE_DTYPE: o.pp.core_dtype = parse_dtype("--core-dtype", optarg, true); break;
        case OPT_MIN_ROWS: o.pp.min_rows = parse_count("--min-rows", optarg, 0); min_rows_set = true; break;
        case OPT_MIN_RATIO: {
            char *end = NULL;
            errno = 0;
            double v = strtod(optarg, &end);
            if (errno || !end || end == optarg || *end || !(v >= 0.0) || isinf(v))
                cli_usage_error("--min-ratio expects a number >= 0, got '%s'", optarg);
            o.pp.min_ratio = v;
            break;
        }
        case OPT_TOP: o.top = parse_count("--top", optarg, 1); break;
        case OPT_ALL: o.top = 0; break;
        case OPT_NO_ERRORS: o.errors = false; break;
        case OPT_JSON: o.json = true; break;
        case 'q': o.quiet = true; break;
        case 'h': usage(stdout); return CLI_EXIT_OK;
        case OPT_VERSION: printf("fpd-suggest %s (%s)\n", fpd_version(), fpd_build_features()); return CLI_EXIT_OK;
        case ':': cli_usage_error("option '%s' needs a value", argv[optind - 1]);
        default:
            if (optopt > 0 && optopt < 256) cli_usage_error("unknown option '-%c'", optopt);
            cli_usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    const char *path = optind < argc ? argv[optind] : NULL;
    if (optind + 1 < argc) cli_usage_error("one CHECKPOINT expected, got '%s' too", argv[optind + 1]);
    if (path && (have_rows || have_dim)) cli_usage_error("give either CHECKPOINT or --rows and --dim, not both");
    if (!path && !(have_rows && have_dim))
        cli_usage_error(have_rows || have_dim ? "--rows and --dim go together" : "no CHECKPOINT and no --rows/--dim given");
    if (!path && tables_arg) cli_usage_error("--tables needs a CHECKPOINT");
    if (!path && o.pp.max_error > 0.0)
        cli_usage_error("--max-error needs a CHECKPOINT: errors are predicted from the table's data");
    if (o.pp.max_error > 0.0 && !o.errors) cli_usage_error("--max-error needs predicted errors (drop --no-errors)");
    if (!path && o.pp.free_coords > dim)
        cli_usage_error("--free-coords %lld exceeds --dim %lld (at most one free coordinate per column)",
                        (long long)o.pp.free_coords, (long long)dim);
    if (o.pp.free_rowwise && o.pp.free_coords == 0) /* as fpd-compress */
        cli_usage_error("--free-dtype %s sizes the free coordinates' E: give --free-coords C (C >= 1) or auto",
                        fpd_free_kind_name(o.pp.free_kind));
    if (!path && !min_rows_set) o.pp.min_rows = 0; /* a size alone: every table qualifies */
    if (total_budget && !path) cli_usage_error("--total-budget needs a CHECKPOINT (with --rows/--dim use --budget)");
    if (total_budget && o.pp.budget_bytes) cli_usage_error("give --budget (per table) or --total-budget, not both");
    if ((n_freq || alpha_set) && !total_budget)
        cli_usage_error("%s is part of --total-budget's split", n_freq ? "--row-freq" : "--alpha");

    struct fpd_input in;
    memset(&in, 0, sizeof in);
    void *hold = NULL;
    struct fpd_error err = {0};
    struct entry *ent = NULL;
    int64_t n_ent = 0, n_in = 1;
    char *tables_copy = NULL, **names = NULL;
    int n_names = 0;
    json_t *skipped = json_array();
    int status = CLI_EXIT_OK;
    int64_t *idx = NULL;

    if (path) {
        if (pipe_input_open(path, &in, &hold, &err) != FPD_STATUS_OK) {
            cli_error("%s", err.msg);
            json_decref(skipped);
            return CLI_EXIT_FAILURE;
        }
        n_in = fpd_input_count(&in);
        if (tables_arg) {
            tables_copy = strdup(tables_arg);
            names = calloc(strlen(tables_arg) + 1, sizeof *names);
            if (!tables_copy || !names) goto oom;
            for (char *tok = strtok(tables_copy, ","); tok; tok = strtok(NULL, ","))
                if (*tok) names[n_names++] = tok;
            if (n_names == 0) cli_usage_error("--tables needs at least one name");
            for (int i = 0; i < n_names; i++) {
                const struct fpd_tensor_info *ti = NULL;
                for (int64_t t = 0; t < n_in && !ti; t++)
                    if (strcmp(fpd_input_tensor(&in, t)->name, names[i]) == 0) ti = fpd_input_tensor(&in, t);
                if (!ti) {
                    cli_error("%s: no tensor named '%s' (see fpd-inspect %s)", path, names[i], path);
                    status = CLI_EXIT_USAGE;
                    goto done;
                }
                char why[160];
                if (fpd_tensor_info_not_a_table(ti, why, sizeof why)) {
                    cli_error("%s: tensor '%s' is %s", path, ti->name, why);
                    status = CLI_EXIT_USAGE;
                    goto done;
                }
            }
        }
    }
    ent = calloc((size_t)n_in + 1, sizeof *ent);
    if (!ent) goto oom;

    if (!path) {
        if (fpd_suggest(rows, dim, dtype, &o.pp, &ent[0].sg, &err) != FPD_STATUS_OK) {
            cli_error("%s", err.msg);
            status = err.status == FPD_STATUS_INVALID_ARG ? CLI_EXIT_USAGE : CLI_EXIT_FAILURE;
            goto done;
        }
        n_ent = 1;
    } else {
        if (total_budget) {
            o.shares = true;
            status = split_total_budget(path, &in, names, n_names, &o, total_budget, alpha, freq_specs, n_freq, ent);
            if (status) goto done;
        }
        for (int64_t t = 0; t < n_in; t++) {
            const struct fpd_tensor_info *ti = fpd_input_tensor(&in, t);
            bool named = false;
            char buf[160];
            const char *why = skip_reason(ti, names, n_names, o.pp.min_rows, &named, buf, sizeof buf);
            if (names && !named) continue;
            if (why) {
                json_t *s = json_object();
                json_object_set_new(s, "name", json_string(ti->name));
                json_object_set_new(s, "reason", json_string(why));
                json_array_append_new(skipped, s);
                continue;
            }
            struct fpd_plan_params tp = o.pp;
            if (named) tp.min_rows = 1; /* asked for by name, as fpd-compress does */
            /* ent[t] holds the shares of --total-budget by tensor index until moved to ent[n_ent] */
            bool have_share = ent[t].have_share;
            size_t share = ent[t].share_bytes;
            double inter = ent[t].interactions;
            if (have_share) tp.budget_bytes = share > 0 ? share : 1;
            struct fpd_table_view view = {ti->data, ti->dtype, ti->shape[0], ti->shape[1]};
            if (o.errors) tp.table = &view;
            /* the quantization baselines first: their pass over every row refuses a table
             * with NaN or Inf as bad data (exit 1, as fpd-compress) before the prediction
             * would call it a bad argument */
            struct fpd_quant_baseline quant;
            if (o.errors && fpd_quant_baseline(&view, &quant, &err) != FPD_STATUS_OK) {
                cli_error("%s: tensor '%s': %s", path, ti->name, err.msg);
                status = CLI_EXIT_FAILURE;
                goto done;
            }
            struct fpd_suggestion *sg = NULL;
            if (fpd_suggest(ti->shape[0], ti->shape[1], ti->dtype, &tp, &sg, &err) != FPD_STATUS_OK) {
                if (have_share)
                    cli_error("%s: tensor '%s': its share of --total-budget is %zu bytes: %s", path, ti->name, share,
                              err.msg);
                else
                    cli_error("%s: tensor '%s': %s", path, ti->name, err.msg);
                status = err.status == FPD_STATUS_INVALID_ARG ? CLI_EXIT_USAGE : CLI_EXIT_FAILURE;
                goto done;
            }
            ent[t].have_share = false;
            ent[n_ent].sg = sg;
            ent[n_ent].have_share = have_share;
            ent[n_ent].share_bytes = share;
            ent[n_ent].interactions = inter;
            ent[n_ent].have_quant = o.errors;
            if (o.errors) ent[n_ent].quant = quant;
            ent[n_ent++].name = ti->name;
        }
    }

    int64_t most = 1;
    for (int64_t e = 0; e < n_ent; e++) most = ent[e].sg->n_candidates + 1 > most ? ent[e].sg->n_candidates + 1 : most;
    idx = calloc((size_t)most, sizeof *idx);
    if (!idx) goto oom;
    if (o.quiet) {
        /* the exit status says it */
    } else if (o.json) {
        json_t *root = json_object();
        json_object_set_new(root, "schema", json_string("fpd-suggest/1"));
        json_object_set_new(root, "input", path ? json_string(path) : json_null());
        json_t *tg = json_object();
        json_object_set_new(tg, "budget_bytes", o.pp.budget_bytes ? json_integer((json_int_t)o.pp.budget_bytes) : json_null());
        json_object_set_new(tg, "ratio", o.pp.min_ratio_target > 0.0 ? json_real(o.pp.min_ratio_target) : json_null());
        json_object_set_new(tg, "max_error", o.pp.max_error > 0.0 ? json_real(o.pp.max_error) : json_null());
        json_object_set_new(tg, "total_budget_bytes", total_budget ? json_integer((json_int_t)total_budget) : json_null());
        json_object_set_new(tg, "alpha", total_budget ? json_real(alpha) : json_null());
        json_object_set_new(tg, "free_coords", o.pp.free_coords == FPD_FREE_COORDS_AUTO ? json_string("auto")
                                                                                      : json_integer(o.pp.free_coords));
        json_object_set_new(tg, "free_dtype",
                            json_string(o.pp.free_rowwise ? fpd_free_kind_name(o.pp.free_kind) : "core"));
        json_object_set_new(root, "targets", tg);
        json_t *tabs = json_array();
        for (int64_t e = 0; e < n_ent; e++) {
            json_t *tj = table_json(ent[e].name, ent[e].sg, &o, idx);
            if (total_budget) {
                json_object_set_new(tj, "budget_share_bytes", json_integer((json_int_t)ent[e].share_bytes));
                json_object_set_new(tj, "interactions",
                                    isnan(ent[e].interactions) ? json_null() : json_real(ent[e].interactions));
            }
            if (ent[e].have_quant) {
                const struct fpd_quant_baseline *q = &ent[e].quant;
                json_t *bl = json_object(), *b8 = json_object(), *b4 = json_object();
                json_object_set_new(b8, "bytes", json_integer((json_int_t)q->int8_bytes));
                json_object_set_new(b8, "rel_error", json_real(q->int8_rel_error));
                json_object_set_new(b4, "bytes", json_integer((json_int_t)q->int4_bytes));
                json_object_set_new(b4, "rel_error", json_real(q->int4_rel_error));
                json_object_set_new(bl, "int8_rowwise", b8);
                json_object_set_new(bl, "int4_rowwise", b4);
                json_object_set_new(tj, "baselines", bl);
                char note[256];
                quant_note(ent[e].sg, q, note, sizeof note);
                json_object_set_new(tj, "note", json_string(note));
            }
            json_array_append_new(tabs, tj);
        }
        json_object_set_new(root, "tables", tabs);
        json_object_set_new(root, "skipped", skipped);
        skipped = NULL;
        int rc = json_dumpf(root, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(8));
        if (rc == 0) fputc('\n', stdout);
        json_decref(root);
    } else {
        if (path) printf("%s\n\n", path);
        if (total_budget)
            printf("--total-budget %zu bytes split by data per row (alpha %g): a row seen c times is worth\n"
                   "min(D, lambda c^alpha) parameters; each table takes the largest candidate in its share\n\n",
                   total_budget, alpha);
        for (int64_t e = 0; e < n_ent; e++) {
            if (ent[e].have_share) {
                char b[32];
                printf("%s: share %zu bytes (%s)", ent[e].name, ent[e].share_bytes,
                       cli_bytes(ent[e].share_bytes, b, sizeof b));
                if (!isnan(ent[e].interactions)) printf(", %.0f interactions", ent[e].interactions);
                else printf(", no --row-freq: each row counts once");
                printf("\n");
            }
            table_text(ent[e].name, ent[e].sg, &o, idx);
            if (ent[e].have_quant) {
                char note[256];
                quant_note(ent[e].sg, &ent[e].quant, note, sizeof note);
                printf("  quantization: %s\n\n", note);
            }
        }
        size_t i;
        json_t *s;
        json_array_foreach(skipped, i, s) printf("skipped %s: %s\n", json_string_value(json_object_get(s, "name")),
                                                 json_string_value(json_object_get(s, "reason")));
        if (path && n_ent == 0) printf("no table qualifies (see --min-rows, --tables)\n");
    }
    for (int64_t e = 0; e < n_ent; e++)
        if (ent[e].sg->selected < 0) {
            cli_error("%s%s%s", ent[e].name ? ent[e].name : "", ent[e].name ? ": " : "", ent[e].sg->reason);
            status = CLI_EXIT_FAILURE;
        }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        cli_error("cannot write to stdout");
        status = CLI_EXIT_FAILURE;
    }
    goto done;
oom:
    cli_error("out of memory");
    status = CLI_EXIT_FAILURE;
done:
    if (ent)
        for (int64_t e = 0; e < n_ent; e++) fpd_suggestion_free(ent[e].sg);
    free(ent);
    free(idx);
    free(names);
    free(tables_copy);
    json_decref(skipped);
    free(freq_specs);
    if (path) fpd_input_free(&in);
    free(hold);
    return status;
}
