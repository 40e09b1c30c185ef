/*
 * fpd-inspect - size report of a checkpoint: every tensor (dtype, shape, bytes),
 * the encoded tables it holds (FPD tables, "fpd.table.T" of DESIGN.md section 4:
 * shape, ranks, bytes, ratio to the dense table, rel_error; row-wise int8/int4
 * tables, "fpd.rowwise.T" of extension rowwise/1), and totals. By default it reads
 * the header, the metadata and the FPD cores (checked finite), never a table's
 * rows, so its time does not grow with the number of rows; --verify also checks the
 * data (row_perm, every reconstructed or dequantized row finite). FILE is a
 * safetensors file or a .npy array (one tensor named after the file), "-" for
 * standard input. --json prints the same as one JSON object, schema "fpd-inspect/2".
 */
#include "tools/cli.h"
#include "tools/pipe.h"

#include <getopt.h>
#include <jansson.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void usage(FILE *f) {
    fprintf(f,
            "Usage: fpd-inspect [options] FILE\n"
            "Size report of a checkpoint: its tensors, its FPD tables and the totals.\n"
            "\n"
            "FILE is a safetensors file or a .npy array, or - for standard input. Only the header,\n"
            "the metadata, the FPD cores and quantized rows' scales are read (checked to be finite),\n"
            "so the time does not grow much with the tables' rows; --verify checks all the data.\n"
            "\n"
            "Reported per tensor: name, dtype, shape, bytes. Per row-wise table (fpd.rowwise.T):\n"
            "encoding (int8, int4), rows x dim, bytes, dense bytes, ratio, rel_error.\n"
            "Per FPD table (metadata fpd.table.T):\n"
            "rows x dim, source dtype, r (largest inner rank) and the rank list, p (terms), k (cores),\n"
            "row and column shapes, FPD bytes (all T.fpd.* tensors, row_perm and free/1's free\n"
            "coordinates T.fpd.free / T.fpd.free_proj included; c is shown after rel_error), dense bytes\n"
            "(rows x dim x source dtype size), ratio dense / FPD, and rel_error from the metadata.\n"
            "Totals: file bytes, tensor bytes, dense-equivalent bytes (FPD tables at their dense\n"
            "size, every other tensor as stored) and ratio = dense-equivalent / tensor bytes.\n"
            "\n"
            "Options:\n"
            "      --verify     also check every table's data: row_perm entries distinct and in range,\n"
            "                   every reconstructed (FPD) or dequantized (int8/int4) row finite\n"
            "      --json       print one JSON object (schema \"fpd-inspect/2\") instead\n"
            "  -q, --quiet      print no report (errors still go to stderr); the exit status\n"
            "                   says whether the file is valid\n"
            "  -h, --help       this help\n"
            "      --version    version and build features\n"
            "\n"
            "Exit status: 0 ok, 1 unreadable or invalid file, 2 usage error.\n"
            "Example: fpd-inspect model.fpd.safetensors --json\n");
}

/* ------------------------------------------------------------ the report */

struct fpd_table_row {
    char *name;                 /* T (owned)                          */
    bool rowwise;               /* fpd.rowwise.T (meta.shape has rows, dim, k = 0) */
    enum fpd_rowwise kind;
    struct fpd_table_meta meta;
    int64_t r;                  /* largest inner rank (1 when k = 1)  */
    size_t bytes;               /* sum of the T.fpd.* tensors         */
    double dense_bytes;         /* rows * dim * source dtype size     */
};

struct report {
    const char *path;
    const char *format;         /* "safetensors" or "npy"             */
    size_t file_bytes, header_bytes;
    int64_t n_tensors;
    const struct fpd_tensor_info **tensors;
    bool *in_table;             /* tensor i belongs to an FPD table   */
    int64_t n_tables;
    struct fpd_table_row *tables;
    double tensor_bytes, dense_bytes;
    bool verify;                /* --verify: check the tables' data   */
};

static bool starts_with(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

static double ratio_or_nan(double a, double b) { return b > 0 ? a / b : NAN; }

/* Fill rep from an open input. Returns false (message in err, without the path) on
 * an invalid FPD table. */
static bool build_report(const struct fpd_input *in, struct report *rep, struct fpd_error *err) {
    rep->n_tensors = fpd_input_count(in);
    rep->tensors = calloc((size_t)rep->n_tensors + 1, sizeof *rep->tensors);
    rep->in_table = calloc((size_t)rep->n_tensors + 1, sizeof *rep->in_table);
    if (!rep->tensors || !rep->in_table) {
        snprintf(err->msg, sizeof err->msg, "out of memory");
        return false;
    }
    for (int64_t i = 0; i < rep->n_tensors; i++) {
        rep->tensors[i] = fpd_input_tensor(in, i);
        rep->tensor_bytes += (double)rep->tensors[i]->nbytes;
    }
    if (in->st) {
        const struct fpd_safetensors *st = in->st;
        rep->format = "safetensors";
        rep->file_bytes = fpd_safetensors_file_size(st);
        rep->header_bytes = fpd_safetensors_header_size(st);
        int64_t nm = fpd_safetensors_metadata_count(st);
        rep->tables = calloc((size_t)nm + 1, sizeof *rep->tables);
        if (!rep->tables) {
            snprintf(err->msg, sizeof err->msg, "out of memory");
            return false;
        }
        for (int64_t i = 0; i < nm; i++) {
            const char *key, *val;
            fpd_safetensors_metadata_at(st, i, &key, &val);
            bool rowwise = starts_with(key, FPD_META_ROWWISE_PREFIX);
            if (!rowwise && !starts_with(key, FPD_META_TABLE_PREFIX)) continue;
            struct fpd_table_row *t = &rep->tables[rep->n_tables];
            const char *name = key + strlen(rowwise ? FPD_META_ROWWISE_PREFIX : FPD_META_TABLE_PREFIX);
            if (rowwise) {
                struct fpd_rowwise_table q;
                struct fpd_rowwise_meta rm;
                if (fpd_checkpoint_load_rowwise(st, name, &q, &rm, err) != FPD_STATUS_OK) return false;
                t->rowwise = true;
                t->kind = rm.kind;
                t->meta.shape.rows = rm.rows;
                t->meta.shape.dim = rm.dim;
                t->meta.source_dtype = rm.source_dtype;
                t->meta.rel_error = rm.rel_error;
                snprintf(t->meta.fit, sizeof t->meta.fit, "%s", fpd_rowwise_name(rm.kind));
            } else if (fpd_checkpoint_check_table(st, name, &t->meta, err) != FPD_STATUS_OK) {
                return false;
            }
            if (fpd_checkpoint_verify_table(st, name, rep->verify, err) != FPD_STATUS_OK) return false;
            t->name = strdup(name);
            char *prefix = malloc(strlen(name) + 16);
            if (!t->name || !prefix) {
                free(prefix);
                snprintf(err->msg, sizeof err->msg, "out of memory");
                return false;
            }
            rep->n_tables++;
            const struct fpd_layer_shape *s = &t->meta.shape;
            t->r = 1;
            for (int32_t m = 1; m < s->k; m++)
                if (s->ranks[m] > t->r) t->r = s->ranks[m];
            t->dense_bytes = (double)s->rows * (double)s->dim * (double)fpd_dtype_size(t->meta.source_dtype);
            sprintf(prefix, "%s%s", name, rowwise ? ".rowwise." : ".fpd.");
            for (int64_t j = 0; j < rep->n_tensors; j++) {
                if (rep->in_table[j] || !starts_with(rep->tensors[j]->name, prefix)) continue;
                rep->in_table[j] = true;
                t->bytes += rep->tensors[j]->nbytes;
            }
            free(prefix);
        }
    } else {
        rep->format = "npy";
        struct stat sb;
        rep->file_bytes = strcmp(rep->path, "-") != 0 && stat(rep->path, &sb) == 0 ? (size_t)sb.st_size
                                                                                     : rep->tensors[0]->nbytes;
        rep->header_bytes = rep->file_bytes - rep->tensors[0]->nbytes;
    }
    for (int64_t i = 0; i < rep->n_tensors; i++)
        if (!rep->in_table[i]) rep->dense_bytes += (double)rep->tensors[i]->nbytes;
    for (int64_t i = 0; i < rep->n_tables; i++) rep->dense_bytes += rep->tables[i].dense_bytes;
    return true;
}

static void free_report(struct report *rep) {
    for (int64_t i = 0; i < rep->n_tables; i++) free(rep->tables[i].name);
    free(rep->tables);
    free(rep->tensors);
    free(rep->in_table);
}

/* ------------------------------------------------------------ text output */

/* A simple table: cells formatted first, then printed with per-column widths. */
#define MAX_COLS 14
struct text_table {
    int ncols;
    const char *head[MAX_COLS];
    bool right[MAX_COLS];
    int64_t nrows;
    char **cells; /* nrows * ncols, owned */
};

static void tt_set(struct text_table *t, int64_t row, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void tt_set(struct text_table *t, int64_t row, int col, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) s = NULL;
    va_end(ap);
    t->cells[row * t->ncols + col] = s;
}

static void tt_print(const struct text_table *t, const char *indent) {
    size_t w[MAX_COLS];
    for (int c = 0; c < t->ncols; c++) {
        w[c] = strlen(t->head[c]);
        for (int64_t r = 0; r < t->nrows; r++) {
            const char *s = t->cells[r * t->ncols + c];
            if (s && strlen(s) > w[c]) w[c] = strlen(s);
        }
    }
    for (int64_t r = -1; r < t->nrows; r++) {
        fputs(indent, stdout);
        for (int c = 0; c < t->ncols; c++) {
            const char *s = r < 0 ? t->head[c] : t->cells[r * t->ncols + c];
            if (!s) s = "?";
            bool last = c == t->ncols - 1;
            if (t->right[c]) printf("%*s", (int)w[c], s);
            else if (last) fputs(s, stdout);
            else printf("%-*s", (int)w[c], s);
            if (!last) fputs("  ", stdout);
        }
        fputs("\n", stdout);
    }
}

static void tt_free(struct text_table *t) {
    for (int64_t i = 0; i < t->nrows * t->ncols; i++) free(t->cells[i]);
    free(t->cells);
}

static void fmt_ratio(char *buf, size_t n, double r) {
    if (isnan(r)) snprintf(buf, n, "-");
    else snprintf(buf, n, "%.2fx", r);
}

static void print_text(const struct report *rep) {
    char b1[64], b2[64], b3[64], shape[160];
    printf("file: %s\n", rep->path);
    printf("format: %s, %zu bytes (%s), header %zu bytes, %lld tensor%s\n", rep->format, rep->file_bytes,
           cli_bytes(rep->file_bytes, b1, sizeof b1), rep->header_bytes, (long long)rep->n_tensors,
           rep->n_tensors == 1 ? "" : "s");

    struct text_table t = {4, {"TENSOR", "DTYPE", "SHAPE", "BYTES"}, {false, false, false, true}, rep->n_tensors, NULL};
    t.cells = calloc((size_t)(t.nrows * t.ncols) + 1, sizeof *t.cells);
    if (t.cells) {
        for (int64_t i = 0; i < rep->n_tensors; i++) {
            const struct fpd_tensor_info *x = rep->tensors[i];
            size_t o = 0;
            shape[o++] = '[';
            for (int32_t d = 0; d < x->ndim && o < sizeof shape - 24; d++)
                o += (size_t)snprintf(shape + o, sizeof shape - o, "%s%lld", d ? ", " : "", (long long)x->shape[d]);
            snprintf(shape + o, sizeof shape - o, "]");
            tt_set(&t, i, 0, "%s", x->name[0] ? x->name : "(array)");
            tt_set(&t, i, 1, "%s", fpd_dtype_name(x->dtype));
            tt_set(&t, i, 2, "%s", shape);
            tt_set(&t, i, 3, "%zu", x->nbytes);
        }
        printf("\n");
        tt_print(&t, "");
        tt_free(&t);
    }

    int64_t n_rw = 0;
    for (int64_t i = 0; i < rep->n_tables; i++) n_rw += rep->tables[i].rowwise;
    if (n_rw > 0) {
        struct text_table f = {7,
                               {"ROW-WISE TABLE", "ROWS x DIM", "SOURCE", "ENCODING", "BYTES", "DENSE BYTES", "RATIO"},
                               {false, true, false, false, true, true, true},
                               n_rw,
                               NULL};
        f.cells = calloc((size_t)(f.nrows * f.ncols) + 1, sizeof *f.cells);
        if (f.cells) {
            int64_t row = 0;
            for (int64_t i = 0; i < rep->n_tables; i++) {
                const struct fpd_table_row *r = &rep->tables[i];
                if (!r->rowwise) continue;
                fmt_ratio(b1, sizeof b1, ratio_or_nan(r->dense_bytes, (double)r->bytes));
                tt_set(&f, row, 0, "%s", r->name);
                tt_set(&f, row, 1, "%lld x %lld", (long long)r->meta.shape.rows, (long long)r->meta.shape.dim);
                tt_set(&f, row, 2, "%s", fpd_dtype_name(r->meta.source_dtype));
                tt_set(&f, row, 3, "%s (%s)", fpd_rowwise_name(r->kind), FPD_ROWWISE_LAYOUT);
                tt_set(&f, row, 4, "%zu", r->bytes);
                tt_set(&f, row, 5, "%.0f", r->dense_bytes);
                tt_set(&f, row, 6, "%s", b1);
                row++;
            }
            printf("\n");
            tt_print(&f, "");
            for (int64_t i = 0; i < rep->n_tables; i++)
                if (rep->tables[i].rowwise)
                    printf("  %s: rel_error %.4g\n", rep->tables[i].name, rep->tables[i].meta.rel_error);
            tt_free(&f);
        }
    }
    if (rep->n_tables > n_rw) {
        struct text_table f = {12,
                               {"FPD TABLE", "ROWS x DIM", "SOURCE", "R", "RANKS", "P", "K", "ROW SHAPE", "COL SHAPE",
                                "FPD BYTES", "DENSE BYTES", "RATIO"},
                               {false, true, false, true, false, true, true, false, false, true, true, true},
                               rep->n_tables - n_rw,
                               NULL};
        f.cells = calloc((size_t)(f.nrows * f.ncols) + 1, sizeof *f.cells);
        if (f.cells) {
            int64_t i = -1;
            for (int64_t j = 0; j < rep->n_tables; j++) {
                const struct fpd_table_row *r = &rep->tables[j];
                if (r->rowwise) continue;
                i++;
                const struct fpd_layer_shape *s = &r->meta.shape;
                char ranks[160];
                size_t o = 0;
                for (int32_t m = 0; m <= s->k && o < sizeof ranks - 24; m++)
                    o += (size_t)snprintf(ranks + o, sizeof ranks - o, "%s%lld", m ? "," : "", (long long)s->ranks[m]);
                fmt_ratio(b1, sizeof b1, ratio_or_nan(r->dense_bytes, (double)r->bytes));
                tt_set(&f, i, 0, "%s", r->name);
                tt_set(&f, i, 1, "%lld x %lld", (long long)s->rows, (long long)s->dim);
                tt_set(&f, i, 2, "%s", fpd_dtype_name(r->meta.source_dtype));
                tt_set(&f, i, 3, "%lld", (long long)r->r);
                tt_set(&f, i, 4, "%s", ranks);
                tt_set(&f, i, 5, "%lld", (long long)s->terms);
                tt_set(&f, i, 6, "%d", (int)s->k);
                tt_set(&f, i, 7, "%s", cli_shape(s->row_shape, s->k, b2, sizeof b2));
                tt_set(&f, i, 8, "%s", cli_shape(s->col_shape, s->k, b3, sizeof b3));
                tt_set(&f, i, 9, "%zu", r->bytes);
                tt_set(&f, i, 10, "%.0f", r->dense_bytes);
                tt_set(&f, i, 11, "%s", b1);
            }
            printf("\n");
            tt_print(&f, "");
            for (int64_t j = 0; j < rep->n_tables; j++) {
                const struct fpd_table_row *r = &rep->tables[j];
                if (r->rowwise) continue;
                char fr[256] = "";
                if (r->meta.free_coords > 0) /* free/1 */
                    snprintf(fr, sizeof fr, ", free coordinates c = %lld (E [%lld, %lld]%s%s, P [%lld, %lld])",
                             (long long)r->meta.free_coords, (long long)r->meta.shape.rows,
                             (long long)r->meta.free_coords, r->meta.free_rowwise ? " " : "",
                             r->meta.free_rowwise ? fpd_free_kind_name(r->meta.free_kind) : "",
                             (long long)r->meta.free_coords, (long long)r->meta.shape.dim);
                if (r->meta.vocabulary_order) /* fpd-convert --vocabulary-out */
                    snprintf(fr + strlen(fr), sizeof fr - strlen(fr), ", row order in an id vocabulary");
                if (isnan(r->meta.rel_error)) printf("  %s: rel_error -, fit %s%s\n", r->name, r->meta.fit, fr);
                else printf("  %s: rel_error %.4g, fit %s%s\n", r->name, r->meta.rel_error, r->meta.fit, fr);
            }
            tt_free(&f);
        }
    }

    fmt_ratio(b1, sizeof b1, ratio_or_nan(rep->dense_bytes, rep->tensor_bytes));
    printf("\ntotals: file %zu bytes, tensors %.0f bytes, dense-equivalent %.0f bytes (%s), ratio %s\n",
           rep->file_bytes, rep->tensor_bytes, rep->dense_bytes,
           cli_bytes(rep->dense_bytes < 1.8e19 ? (size_t)rep->dense_bytes : SIZE_MAX, b2, sizeof b2), b1);
    if (rep->verify && rep->n_tables > 0) /* reached only when every table passed */
        printf("verified: every encoded table's data read and checked (row_perm, rows finite, quantized rows' "
               "scales); dense tensors are not checked\n");
    else if (rep->verify)
        printf("verified: no FPD or row-wise table to check; dense tensors are not checked\n");
}

/* ------------------------------------------------------------ JSON output */

/* A JSON string; bytes that are not UTF-8 (file names can hold any) become '?'. */
static json_t *jstr(const char *s) {
    json_t *j = json_string(s);
    if (j) return j;
    char *c = strdup(s);
    if (!c) return NULL;
    for (char *p = c; *p; p++)
        if ((unsigned char)*p >= 0x80) *p = '?';
    j = json_string(c);
    free(c);
    return j;
}

static json_t *jnum_or_null(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static json_t *jbytes(double v) { return v < 9.2e18 ? json_integer((json_int_t)v) : json_real(v); }

static json_t *jints(const int64_t *v, int32_t n) {
    json_t *a = json_array();
    for (int32_t i = 0; a && i < n; i++) json_array_append_new(a, json_integer(v[i]));
    return a;
}

static int print_json(const struct report *rep) {
    json_t *root = json_object();
    json_t *tensors = json_array(), *tables = json_array(), *totals = json_object();
    if (!root || !tensors || !tables || !totals) {
        json_decref(root);
        json_decref(tensors);
        json_decref(tables);
        json_decref(totals);
        return -1;
    }
    json_object_set_new(root, "schema", json_string("fpd-inspect/2"));
    json_object_set_new(root, "input", jstr(rep->path));
    json_object_set_new(root, "format", json_string(rep->format));
    for (int64_t i = 0; i < rep->n_tensors; i++) {
        const struct fpd_tensor_info *x = rep->tensors[i];
        json_t *o = json_object();
        json_object_set_new(o, "name", jstr(x->name));
        json_object_set_new(o, "dtype", json_string(fpd_dtype_name(x->dtype)));
        json_object_set_new(o, "shape", jints(x->shape, x->ndim));
        json_object_set_new(o, "bytes", json_integer((json_int_t)x->nbytes));
        json_array_append_new(tensors, o);
    }
    for (int64_t i = 0; i < rep->n_tables; i++) {
        const struct fpd_table_row *r = &rep->tables[i];
        const struct fpd_layer_shape *s = &r->meta.shape;
        json_t *o = json_object();
        json_object_set_new(o, "name", jstr(r->name));
        json_object_set_new(o, "encoding", json_string(r->rowwise ? fpd_rowwise_name(r->kind) : "fpd"));
        json_object_set_new(o, "rows", json_integer(s->rows));
        json_object_set_new(o, "dim", json_integer(s->dim));
        json_object_set_new(o, "source_dtype", json_string(fpd_dtype_name(r->meta.source_dtype)));
        if (!r->rowwise) {
            json_object_set_new(o, "r", json_integer(r->r));
            json_object_set_new(o, "ranks", jints(s->ranks, s->k + 1));
            json_object_set_new(o, "p", json_integer(s->terms));
            json_object_set_new(o, "k", json_integer(s->k));
            json_object_set_new(o, "row_shape", jints(s->row_shape, s->k));
            json_object_set_new(o, "col_shape", jints(s->col_shape, s->k));
            json_object_set_new(o, "core_dtype", r->meta.core_dtype == FPD_DTYPE_COUNT
                                                     ? json_null()
                                                     : json_string(fpd_dtype_name(r->meta.core_dtype)));
            json_object_set_new(o, "fit", jstr(r->meta.fit));
            json_object_set_new(o, "free_coords", json_integer(r->meta.free_coords));
            /* free/1's E: the core dtype, or row-wise int8/int4 (free-rowwise/1) */
            const char *fd = cli_free_dtype_name(&r->meta);
            json_object_set_new(o, "free_dtype", fd ? json_string(fd) : json_null());
            json_object_set_new(o, "vocabulary_order", json_boolean(r->meta.vocabulary_order));
        } else {
            json_object_set_new(o, "layout", json_string(FPD_ROWWISE_LAYOUT));
        }
        json_object_set_new(o, "bytes_before", jbytes(r->dense_bytes));
        json_object_set_new(o, "bytes_after", json_integer((json_int_t)r->bytes));
        json_object_set_new(o, "ratio", jnum_or_null(ratio_or_nan(r->dense_bytes, (double)r->bytes)));
        json_object_set_new(o, "rel_error", jnum_or_null(r->meta.rel_error));
        json_array_append_new(tables, o);
    }
    json_object_set_new(root, "tensors", tensors);
    json_object_set_new(root, "tables", tables);
    json_object_set_new(root, "verified", json_boolean(rep->verify));
    json_object_set_new(totals, "file_bytes", json_integer((json_int_t)rep->file_bytes));
    json_object_set_new(totals, "bytes_before", jbytes(rep->dense_bytes));
    json_object_set_new(totals, "bytes_after", jbytes(rep->tensor_bytes));
    json_object_set_new(totals, "ratio", jnum_or_null(ratio_or_nan(rep->dense_bytes, rep->tensor_bytes)));
    json_object_set_new(root, "totals", totals);
    int rc = json_dumpf(root, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    if (rc == 0) fputc('\n', stdout);
    json_decref(root);
    return rc;
}

/* ------------------------------------------------------------ main */

int main(int argc, char **argv) {
    cli_prog = "fpd-inspect";
    setlocale(LC_NUMERIC, "C");
    bool json = false, quiet = false, verify = false;
    enum { OPT_JSON = 256, OPT_VERSION, OPT_VERIFY };
    static const struct option opts[] = {
        {"json", no_argument, 0, OPT_JSON},
        {"verify", no_argument, 0, OPT_VERIFY},
        {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, OPT_VERSION},
        {0, 0, 0, 0},
    };
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":hq", opts, NULL)) != -1) {
        switch (c) {
        case OPT_JSON: json = true; break;
        case OPT_VERIFY: verify = true; break;
        case 'q': quiet = true; break;
        case 'h': usage(stdout); return CLI_EXIT_OK;
        case OPT_VERSION: printf("fpd-inspect %s (%s)\n", fpd_version(), fpd_build_features()); return CLI_EXIT_OK;
        default:
            if (optopt > 0 && optopt < 256) cli_usage_error("unknown option '-%c'", optopt);
            cli_usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc) cli_usage_error("no FILE given");
    if (optind + 1 < argc) cli_usage_error("one FILE expected, got '%s' too", argv[optind + 1]);

    struct fpd_input in;
    struct fpd_error err = {0};
    struct report rep = {0};
    rep.path = argv[optind];
    rep.verify = verify;
    int status = CLI_EXIT_OK;
    void *hold = NULL;
    if (pipe_input_open(rep.path, &in, &hold, &err) != FPD_STATUS_OK) {
        cli_error("%s", err.msg);
        return CLI_EXIT_FAILURE;
    }
    if (!build_report(&in, &rep, &err)) {
        if (strncmp(err.msg, rep.path, strlen(rep.path)) == 0) cli_error("%s", err.msg); /* already names the file */
        else cli_error("%s: %s", rep.path, err.msg);
        status = CLI_EXIT_FAILURE;
        goto done;
    }
    if (quiet) {
        /* the exit status says it */
    } else if (json) {
        if (print_json(&rep) != 0) {
            cli_error("cannot write the JSON report");
            status = CLI_EXIT_FAILURE;
            goto done;
        }
    } else {
        print_text(&rep);
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        cli_error("cannot write to stdout");
        status = CLI_EXIT_FAILURE;
    }
done:
    free_report(&rep);
    fpd_input_free(&in);
    free(hold);
    return status;
}
