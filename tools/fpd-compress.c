/*
 * fpd-compress - compress the embedding tables of a trained checkpoint into FPD
 * layers (DESIGN.md sections 2-5): reads a safetensors checkpoint (or one .npy
 * table), fits every qualifying 2-D float table (TT-SVD or backfitting, then
 * Adam finetuning on the reconstruction loss), copies every other tensor byte
 * for byte, writes the compressed checkpoint atomically, and reports sizes and
 * accuracy per table and in total (stdout; --json for the same as JSON).
 */
#include "tools/cli.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <locale.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "Usage: fpd-compress IN -o OUT [options]\n"
            "Compress the embedding tables of a checkpoint into FPD layers (sums of tensor trains).\n"
            "\n"
            "IN is a safetensors checkpoint or a single table as .npy; OUT is safetensors (FPD v1).\n"
            "Every 2-D float tensor that qualifies is compressed; every other tensor is copied.\n"
            "\n"
            "Options:\n"
            "  -o, --output OUT      compressed checkpoint to write (atomically)\n"
            "  -r, --rank R          TT-rank (default: from the table's dimension, see README)\n"
            "  -p, --terms P         number of tensor-train terms (default 1)\n"
            "  -k, --cores K         number of cores (default 3; 4 for 10^8 rows or more)\n"
            "  -t, --tables A,B,...  compress only these tensors (default: every qualifying one)\n"
            "      --min-rows N      tables with fewer rows stay dense (default 1000)\n"
            "      --min-ratio X     tables that would shrink less than X times stay dense (default 2)\n"
            "      --epochs E        Adam finetuning epochs after the fit (default 4; 0 = none)\n"
            "      --core-dtype T    F32 (default), F16 or BF16 for the stored cores\n"
            "      --seed S          seed of the finetuning row order (default 0)\n"
            "  -f, --force           overwrite OUT if it exists\n"
            "      --json            print the report as JSON on stdout\n"
            "      --progress        show progress on stderr even when it is not a terminal\n"
            "      --no-progress     never show progress\n"
            "  -q, --quiet           no report on stdout (errors still go to stderr)\n"
            "  -h, --help            this help\n"
            "      --version         version and build features\n"
            "\n"
            "Exit status: 0 ok, 1 runtime failure, 2 usage error.\n"
            "Example: fpd-compress samples/glove-10k.safetensors -o glove.fpd.safetensors --rank 16\n");
}

/* Parse a positive integer option or exit 2. */
static int64_t parse_i64(const char *opt, const char *s, int64_t min) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || !end || *end || end == s || v < min)
        cli_usage_error("%s expects an integer >= %lld, got '%s'", opt, (long long)min, s);
    return (int64_t)v;
}

static double parse_f64(const char *opt, const char *s, double min) {
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || !end || *end || end == s || !(v >= min))
        cli_usage_error("%s expects a number >= %g, got '%s'", opt, min, s);
    return v;
}

struct table_result {
    const struct fpd_tensor_info *src;
    bool candidate;     /* a 2-D float tensor */
    bool compress;
    char reason[256];
    struct fpd_plan plan;
    struct fpd_layer_shape shape; /* as fitted (ranks may be lowered) */
    struct fpd_fit_report fit;
    struct fpd_error_stats stats;
    size_t bytes_before, bytes_after;
    /* output tensors */
    int32_t n_out;
    struct fpd_tensor_info out[FPD_MAX_MODES];
    char *out_names[FPD_MAX_MODES];
    void *out_data[FPD_MAX_MODES];
    char *meta_json;
};

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

int main(int argc, char **argv) {
    cli_prog = "fpd-compress";
    setlocale(LC_NUMERIC, "C");
    const char *out_path = NULL, *tables_arg = NULL;
    struct fpd_plan_params pp = fpd_plan_default_params();
    struct fpd_fit_params fp = fpd_fit_default_params();
    bool force = false, json = false, quiet = false;
    int progress_mode = 0;
    enum { OPT_MIN_ROWS = 256, OPT_MIN_RATIO, OPT_EPOCHS, OPT_CORE_DTYPE, OPT_SEED, OPT_JSON, OPT_PROGRESS,
           OPT_NO_PROGRESS, OPT_VERSION };
    static const struct option opts[] = {
        {"output", required_argument, 0, 'o'},     {"rank", required_argument, 0, 'r'},
        {"terms", required_argument, 0, 'p'},      {"cores", required_argument, 0, 'k'},
        {"tables", required_argument, 0, 't'},     {"min-rows", required_argument, 0, OPT_MIN_ROWS},
        {"min-ratio", required_argument, 0, OPT_MIN_RATIO}, {"epochs", required_argument, 0, OPT_EPOCHS},
        {"core-dtype", required_argument, 0, OPT_CORE_DTYPE}, {"seed", required_argument, 0, OPT_SEED},
        {"force", no_argument, 0, 'f'},            {"json", no_argument, 0, OPT_JSON},
        {"progress", no_argument, 0, OPT_PROGRESS}, {"no-progress", no_argument, 0, OPT_NO_PROGRESS},
        {"quiet", no_argument, 0, 'q'},            {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, OPT_VERSION},  {0, 0, 0, 0},
    };
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":o:r:p:k:t:fqh", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out_path = optarg; break;
        case 'r': pp.rank = parse_i64("--rank", optarg, 1); break;
        case 'p': pp.terms = parse_i64("--terms", optarg, 1); break;
        case 'k': {
            int64_t k = parse_i64("--cores", optarg, 1);
            if (k > FPD_MAX_MODES) cli_usage_error("--cores must be at most %d, got %lld", FPD_MAX_MODES, (long long)k);
            pp.k = (int32_t)k;
            break;
        }
        case 't': tables_arg = optarg; break;
        case OPT_MIN_ROWS: pp.min_rows = parse_i64("--min-rows", optarg, 1); break;
        case OPT_MIN_RATIO: pp.min_ratio = parse_f64("--min-ratio", optarg, 0.0); break;
        case OPT_EPOCHS: fp.finetune_epochs = parse_i64("--epochs", optarg, 0); break;
        case OPT_CORE_DTYPE:
            if (!fpd_dtype_from_name(optarg, strlen(optarg), &pp.core_dtype) ||
                !(pp.core_dtype == FPD_DTYPE_F32 || pp.core_dtype == FPD_DTYPE_F16 || pp.core_dtype == FPD_DTYPE_BF16))
                cli_usage_error("--core-dtype must be F32, F16 or BF16, got '%s'", optarg);
            break;
        case OPT_SEED: fp.seed = (uint64_t)parse_i64("--seed", optarg, 0); break;
        case 'f': force = true; break;
        case OPT_JSON: json = true; break;
        case OPT_PROGRESS: progress_mode = 1; break;
        case OPT_NO_PROGRESS: progress_mode = -1; break;
        case 'q': quiet = true; break;
        case 'h': usage(stdout); return CLI_EXIT_OK;
        case OPT_VERSION: printf("fpd-compress %s (%s)\n", fpd_version(), fpd_build_features()); return CLI_EXIT_OK;
        case ':': cli_usage_error("option '%s' needs a value", argv[optind - 1]);
        default: cli_usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc) cli_usage_error("no input checkpoint given");
    if (optind + 1 < argc) cli_usage_error("one input checkpoint expected, got '%s' too", argv[optind + 1]);
    const char *in_path = argv[optind];
    if (!out_path) cli_usage_error("no output given (use -o OUT)");
    if (!cli_exists(in_path)) {
        cli_error("%s: no such file", in_path);
        return CLI_EXIT_FAILURE;
    }
    if (strcmp(in_path, out_path) == 0 || cli_same_file(in_path, out_path))
        cli_usage_error("output '%s' is the input; choose another path (the input is never overwritten)", out_path);
    if (cli_exists(out_path) && !force)
        cli_usage_error("output '%s' exists; use --force to overwrite it", out_path);

    int rc = CLI_EXIT_FAILURE;
    struct fpd_error err = {0};
    struct cli_input in;
    struct table_result *res = NULL;
    struct fpd_tensor_info *outs = NULL;
    const char **mkeys = NULL, **mvals = NULL;
    char **table_list = NULL;
    int n_table_list = 0;
    char *tables_copy = NULL;
    int64_t n = 0;
    json_t *report = NULL;

    if (cli_input_open(in_path, &in, &err)) {
        cli_error("%s", err.msg);
        return CLI_EXIT_FAILURE;
    }
    n = cli_input_count(&in);
    res = calloc((size_t)(n > 0 ? n : 1), sizeof *res);
    if (!res) goto oom;

    if (tables_arg) {
        tables_copy = strdup(tables_arg);
        table_list = calloc(strlen(tables_arg) + 1, sizeof *table_list);
        if (!tables_copy || !table_list) goto oom;
        for (char *tok = strtok(tables_copy, ","); tok; tok = strtok(NULL, ","))
            if (*tok) table_list[n_table_list++] = tok;
        for (int i = 0; i < n_table_list; i++) {
            bool found = false;
            for (int64_t t = 0; t < n; t++) found |= strcmp(cli_input_tensor(&in, t)->name, table_list[i]) == 0;
            if (!found) {
                cli_error("%s: no tensor named '%s' (see fpd-inspect %s)", in_path, table_list[i], in_path);
                rc = CLI_EXIT_USAGE;
                goto done;
            }
        }
    }

    /* ---- plan and fit ---- */
    struct cli_progress prog;
    cli_progress_init(&prog, progress_mode);
    cli_install_signals();
    fp.progress = cli_progress_cb;
    fp.progress_user_data = &prog;
    size_t total_before = 0, total_after = 0;
    int64_t n_out = 0;
    for (int64_t t = 0; t < n; t++) {
        struct table_result *r = &res[t];
        const struct fpd_tensor_info *ti = cli_input_tensor(&in, t);
        r->src = ti;
        r->bytes_before = r->bytes_after = ti->nbytes;
        bool named = table_list && name_in_list(ti->name, table_list, n_table_list);
        r->candidate = ti->ndim == 2 && fpd_dtype_is_float(ti->dtype) && ti->shape[0] > 0 && ti->shape[1] > 0;
        if (table_list && !named) {
            snprintf(r->reason, sizeof r->reason, "not in --tables");
        } else if (!r->candidate) {
            if (named) {
                cli_error("%s: tensor '%s' is %s of %d dims; only 2-D float tables can be compressed", in_path,
                          ti->name, fpd_dtype_name(ti->dtype), (int)ti->ndim);
                rc = CLI_EXIT_USAGE;
                goto done;
            }
        } else {
            struct fpd_plan_params tp = pp;
            if (named) tp.min_rows = 1; /* asked for by name: only the size gain decides */
            if (fpd_plan_table(ti->shape[0], ti->shape[1], ti->dtype, &tp, &r->plan, &err)) {
                cli_error("%s: tensor '%s': %s", in_path, ti->name, err.msg);
                rc = CLI_EXIT_USAGE;
                goto done;
            }
            r->compress = r->plan.compress;
            if (!r->compress) snprintf(r->reason, sizeof r->reason, "%s", r->plan.reason);
        }
        if (!r->compress) {
            n_out++;
            continue;
        }
        /* fit */
        struct fpd_table_view view = {ti->data, ti->dtype, ti->shape[0], ti->shape[1]};
        struct fpd_layer *layer = NULL;
        prog.label = ti->name;
        enum fpd_status st = fpd_fit(&view, &r->plan.shape, &fp, &layer, &r->fit, &err);
        cli_progress_done(&prog);
        if (st == FPD_STATUS_CANCELLED || cli_interrupted()) {
            fpd_layer_free(layer);
            cli_error("interrupted; nothing was written");
            rc = 130;
            goto done;
        }
        if (st) {
            cli_error("%s: tensor '%s': %s", in_path, ti->name, err.msg);
            goto done;
        }
        r->shape = *fpd_layer_get_shape(layer);
        if (fpd_layer_error(layer, &view, &r->stats, &err)) {
            fpd_layer_free(layer);
            cli_error("%s: tensor '%s': %s", in_path, ti->name, err.msg);
            goto done;
        }
        /* output tensors: cores in the requested dtype, metadata JSON */
        size_t es = fpd_dtype_size(pp.core_dtype);
        r->bytes_after = 0;
        r->n_out = r->shape.k;
        for (int32_t m = 0; m < r->shape.k; m++) {
            int64_t numel = fpd_layer_shape_core_numel(&r->shape, m);
            size_t len = strlen(ti->name) + 32;
            r->out_names[m] = malloc(len);
            r->out_data[m] = malloc((size_t)numel * es);
            if (!r->out_names[m] || !r->out_data[m]) {
                fpd_layer_free(layer);
                goto oom;
            }
            snprintf(r->out_names[m], len, "%s.fpd.core%d", ti->name, (int)m);
            fpd_dtype_from_f32(pp.core_dtype, fpd_layer_core_const(layer, m), r->out_data[m], numel);
            struct fpd_tensor_info *o = &r->out[m];
            o->name = r->out_names[m];
            o->dtype = pp.core_dtype;
            o->ndim = 5;
            o->shape[0] = r->shape.terms;
            o->shape[1] = r->shape.row_shape[m];
            o->shape[2] = r->shape.ranks[m];
            o->shape[3] = r->shape.col_shape[m];
            o->shape[4] = r->shape.ranks[m + 1];
            o->data = r->out_data[m];
            o->nbytes = (size_t)numel * es;
            r->bytes_after += o->nbytes;
            if (in.st && fpd_safetensors_find(in.st, o->name)) {
                fpd_layer_free(layer);
                cli_error("%s: the input already has a tensor named '%s'; it cannot hold table '%s' compressed",
                          in_path, o->name, ti->name);
                goto done;
            }
        }
        struct fpd_table_meta meta;
        memset(&meta, 0, sizeof meta);
        meta.shape = r->shape;
        meta.source_dtype = ti->dtype;
        meta.core_dtype = pp.core_dtype;
        snprintf(meta.fit, sizeof meta.fit, "%s%s", r->shape.terms > 1 ? "backfit" : "tt-svd",
                 r->fit.finetune_kept ? "+adam" : "");
        meta.seed = fp.seed;
        meta.rel_error = r->stats.rel_error;
        fpd_layer_free(layer);
        if (fpd_table_meta_to_json(&meta, &r->meta_json, &err)) {
            cli_error("%s", err.msg);
            goto done;
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
    mkeys = calloc((size_t)(n_meta_in + n + 1), sizeof *mkeys);
    mvals = calloc((size_t)(n_meta_in + n + 1), sizeof *mvals);
    if (!outs || !mkeys || !mvals) goto oom;
    int64_t k_out = 0, k_meta = 0;
    for (int64_t t = 0; t < n; t++) {
        if (res[t].compress)
            for (int32_t m = 0; m < res[t].n_out; m++) outs[k_out++] = res[t].out[m];
        else outs[k_out++] = *res[t].src;
    }
    char (*meta_keys_buf)[320] = calloc((size_t)(n + 1), sizeof *meta_keys_buf);
    if (!meta_keys_buf) goto oom;
    for (int64_t i = 0; i < n_meta_in; i++) {
        const char *key, *val;
        fpd_safetensors_metadata_at(in.st, i, &key, &val);
        bool replaced = strcmp(key, FPD_META_VERSION_KEY) == 0;
        for (int64_t t = 0; t < n && !replaced; t++)
            replaced = res[t].compress && strncmp(key, FPD_META_TABLE_PREFIX, strlen(FPD_META_TABLE_PREFIX)) == 0 &&
                       strcmp(key + strlen(FPD_META_TABLE_PREFIX), res[t].src->name) == 0;
        if (replaced) continue;
        mkeys[k_meta] = key;
        mvals[k_meta++] = val;
    }
    mkeys[k_meta] = FPD_META_VERSION_KEY;
    mvals[k_meta++] = "1";
    for (int64_t t = 0; t < n; t++) {
        if (!res[t].compress) continue;
        snprintf(meta_keys_buf[t], sizeof meta_keys_buf[t], "%s%s", FPD_META_TABLE_PREFIX, res[t].src->name);
        mkeys[k_meta] = meta_keys_buf[t];
        mvals[k_meta++] = res[t].meta_json;
    }
    enum fpd_status wst = fpd_safetensors_write(out_path, outs, k_out, mkeys, mvals, k_meta,
                                                force ? FPD_WRITE_OVERWRITE : 0, &err);
    free(meta_keys_buf);
    if (wst) {
        cli_error("%s", err.msg);
        goto done;
    }

    /* ---- report ---- */
    int n_compressed = 0;
    for (int64_t t = 0; t < n; t++) n_compressed += res[t].compress;
    if (json) {
        report = json_object();
        json_object_set_new(report, "schema", json_string("fpd-compress/1"));
        json_object_set_new(report, "input", json_string(in_path));
        json_object_set_new(report, "output", json_string(out_path));
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
            if (r->compress) {
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
                json_object_set_new(o, "core_dtype", json_string(fpd_dtype_name(pp.core_dtype)));
            } else {
                json_object_set_new(o, "r", json_null());
                json_object_set_new(o, "p", json_null());
                json_object_set_new(o, "reason", json_string(r->reason));
            }
            json_object_set_new(o, "bytes_before", json_integer((json_int_t)r->bytes_before));
            json_object_set_new(o, "bytes_after", json_integer((json_int_t)r->bytes_after));
            json_object_set_new(o, "ratio", json_real((double)r->bytes_before / (double)r->bytes_after));
            json_object_set_new(o, "rel_error", json_real(r->compress ? r->stats.rel_error : 0.0));
            if (r->compress) {
                json_object_set_new(o, "rel_error_fit", json_real(r->fit.rel_error_fit));
                json_object_set_new(o, "cos_mean", json_real(r->stats.cos_mean));
                json_object_set_new(o, "cos_min", json_real(r->stats.cos_min));
                json_object_set_new(o, "fit_seconds", json_real(r->fit.fit_seconds));
                json_object_set_new(o, "finetune_seconds", json_real(r->fit.finetune_seconds));
                json_object_set_new(o, "finetune_epochs", json_integer(r->fit.finetune_epochs));
            }
            json_array_append_new(tabs, o);
        }
        json_object_set_new(report, "tables", tabs);
        json_t *tot = json_object();
        json_object_set_new(tot, "tables_compressed", json_integer(n_compressed));
        json_object_set_new(tot, "bytes_before", json_integer((json_int_t)total_before));
        json_object_set_new(tot, "bytes_after", json_integer((json_int_t)total_after));
        json_object_set_new(tot, "ratio", json_real(total_after ? (double)total_before / (double)total_after : 1.0));
        json_object_set_new(report, "totals", tot);
        json_dumpf(report, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
        fputc('\n', stdout);
    } else if (!quiet) {
        char b1[32], b2[32], sh1[64], sh2[64];
        printf("%s -> %s\n", in_path, out_path);
        printf("%-24s %-12s %-5s %4s %2s %1s %-12s %-9s %11s %11s %7s %8s %8s %8s %7s %7s\n", "table", "shape",
               "dtype", "r", "p", "k", "row shape", "col shape", "before", "after", "ratio", "rel.err", "cos.mean",
               "cos.min", "fit s", "tune s");
        for (int64_t t = 0; t < n; t++) {
            struct table_result *r = &res[t];
            if (!r->candidate) continue;
            char shp[48];
            snprintf(shp, sizeof shp, "%lldx%lld", (long long)r->src->shape[0], (long long)r->src->shape[1]);
            if (r->compress) {
                int64_t rmax = 1;
                for (int32_t m = 1; m < r->shape.k; m++) rmax = r->shape.ranks[m] > rmax ? r->shape.ranks[m] : rmax;
                printf("%-24s %-12s %-5s %4lld %2lld %1d %-12s %-9s %11s %11s %6.1fx %8.4f %8.4f %8.4f %7.2f %7.2f\n",
                       r->src->name, shp, fpd_dtype_name(r->src->dtype), (long long)rmax, (long long)r->shape.terms,
                       (int)r->shape.k, cli_shape(r->shape.row_shape, r->shape.k, sh1, sizeof sh1),
                       cli_shape(r->shape.col_shape, r->shape.k, sh2, sizeof sh2),
                       cli_bytes(r->bytes_before, b1, sizeof b1), cli_bytes(r->bytes_after, b2, sizeof b2),
                       (double)r->bytes_before / (double)r->bytes_after, r->stats.rel_error, r->stats.cos_mean,
                       r->stats.cos_min, r->fit.fit_seconds, r->fit.finetune_seconds);
            } else {
                printf("%-24s %-12s %-5s kept dense: %s\n", r->src->name, shp, fpd_dtype_name(r->src->dtype),
                       r->reason);
            }
        }
        printf("total: %d table(s) compressed, %s -> %s (%.2fx), core dtype %s\n", n_compressed,
               cli_bytes(total_before, b1, sizeof b1), cli_bytes(total_after, b2, sizeof b2),
               total_after ? (double)total_before / (double)total_after : 1.0, fpd_dtype_name(pp.core_dtype));
    }
    rc = CLI_EXIT_OK;
    goto done;
oom:
    cli_error("out of memory");
    rc = CLI_EXIT_FAILURE;
done:
    if (res)
        for (int64_t t = 0; t < n; t++) {
            for (int32_t m = 0; m < FPD_MAX_MODES; m++) {
                free(res[t].out_names[m]);
                free(res[t].out_data[m]);
            }
            fpd_free(res[t].meta_json);
        }
    free(res);
    free(outs);
    free(mkeys);
    free(mvals);
    free(table_list);
    free(tables_copy);
    json_decref(report);
    cli_input_free(&in);
    return rc;
}
