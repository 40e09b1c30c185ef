/*
 * fpd-compress - compress the embedding tables of a trained checkpoint into FPD
 * layers (DESIGN.md sections 2-5): reads a safetensors checkpoint (or one .npy
 * table), fits every qualifying 2-D float table (TT-SVD or backfitting, then
 * Adam finetuning on the reconstruction loss), copies every other tensor byte
 * for byte, writes the compressed checkpoint atomically, and reports sizes and
 * accuracy per table and in total (stdout; --json for the same as JSON).
 */
#include "tools/compress.h"
#include "tools/device.h"
#include "tools/ncf.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <ctype.h>
#include <locale.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "Usage: fpd-compress IN -o OUT [options]\n"
            "       fpd-compress --init normal:S|uniform:A --rows N --dim D -o OUT [--rank R --terms P] [--name T]\n"
            "Compress the embedding tables of a checkpoint into FPD layers (sums of tensor trains).\n"
            "\n"
            "IN is a safetensors checkpoint or a single table as .npy (- for standard input); OUT is\n"
            "safetensors (FPD v1, with the rowwise/1 extension for int8/int4 tables).\n"
            "Every 2-D float tensor that qualifies is compressed; every other tensor is copied.\n"
            "\n"
            "Options:\n"
            "  -o, --output OUT      compressed checkpoint to write (atomically)\n"
            "  -e, --encoding E      auto (default), fpd, int8, int4 or dense, per table; auto writes the\n"
            "                        smallest of FPD, int4 and int8 (FBGEMM row-wise) whose measured error\n"
            "                        meets --max-error, else keeps the table dense, and says why\n"
            "      --max-error E     relative Frobenius error allowed per table (default " COMPRESS_DEFAULT_MAX_ERROR_STR "; see\n"
            "                        README); with --encoding fpd: the smallest FPD candidate predicted to meet it\n"
            "  -r, --rank R          TT-rank (default: from the table's dimension, see README); forces FPD\n"
            "  -p, --terms P         number of tensor-train terms (default 1); forces FPD\n"
            "  -k, --cores K         number of cores, 1..8 (default 3; 4 for 10^8 rows or more)\n"
            "  -t, --tables A,B,...  compress exactly these 2-D float tensors, whatever their size\n"
            "                        (default: every one that qualifies by --min-rows and --min-ratio)\n"
            "      --min-rows N      tables with fewer rows stay dense (default 1000)\n"
            "      --min-ratio X     tables that would shrink less than X times stay dense (default 2)\n"
            "      --budget BYTES    per table: the largest candidate (r, p, k) of the heuristic that fits\n"
            "                        (e.g. 2MiB; see fpd-suggest)\n"
            "      --ratio X         per table: the largest candidate at least X times smaller\n"

            );
    fprintf(f,
            "      --epochs E        Adam finetuning epochs after the fit (default 1; 0 = none)\n"
            "      --core-dtype T    F32, F16 or BF16 for the stored cores (default F32; F16 when\n"
            "                        --encoding auto picks FPD)\n"
            "      --seed S          seed of the finetuning row order (default 0)\n"
            "      --row-freq [T=]FILE  row access counts (text, one per line, or .npy) for table T\n"
            "                        (T may be left out when one table is compressed); the finetune\n"
            "                        then minimizes the frequency-weighted error (repeatable)\n"
            "      --queries Q       query rows of the recall@10 estimate (default 200; 0 = skip)\n"
            "      --cluster-rows    learn a row permutation (balanced hierarchical k-means) so similar rows\n"
            "                        share leading digits; stored as T.fpd.row_perm (4 bytes a row, counted)\n"
            "      --free-coords C   give every FPD table C free coordinates per row (format free/1): row i is\n"
            "                        FPD(i) + E[i] P with E [N, C], P [C, D] fitted to the residual's top C\n"
            "                        directions, stored in the core dtype and counted in the sizes (C (N + D)\n"
            "                        values); C must be at most each table's dimension (default 0). The\n"
            "                        targets size the cores; the C (N + D) values come on top\n"
            "      --free-coords auto  the planner chooses each table's c (0, 1, 2, 4 or 8, from the\n"
            "                        table's data: c > 0 where predicted at least 1%% more accurate at\n"
            "                        the same size, as fpd-suggest --free-coords auto); needs --budget,\n"
            "                        --ratio or --max-error, which then cover cores and free coordinates\n"
            "      --free-dtype T    E of the free coordinates stored as 'core' (the core dtype, the\n"
            "                        default), 'int8' or 'int4': FBGEMM's fused row-wise rows of C\n"
            "                        values (int4: ceil(C/2) + 4 bytes a row; extension free-rowwise/1),\n"
            "                        or 'int8-sym' / 'int4-sym': symmetric codes and one F16 scale a\n"
            "                        row (int4-sym: ceil(C/2) + 2 bytes; extension free-sym/1); counted\n"
            "                        and measured as stored; P stays in the core dtype.\n"
            "                        Needs --free-coords C or auto (the planner then sizes E so)\n"
            "      --order-from [T=]FILE  order table T's rows (T may be left out when one table is\n"
            "                        compressed) from implicit feedback before the fit, as --init-order does\n"
            "                        for a new table (one 'a b [...]' per line; ids that share interactions\n"
            "                        share leading digits: fpd_row_order_interactions), stored as row_perm\n"
            "                        (4 bytes a row, counted); not with --cluster-rows (repeatable)\n"
            "      --order-column [T=]1|2  the column of T's ids in its --order-from file (default 1;\n"
            "                        without T: every table's); --id-base B as for --init-order\n"
            );
    fprintf(f,
            "      --als S           ALS sweeps after TT-SVD (default 2; 0 = none)\n"
            "      --device D        where the engine work runs (finetuning, ALS's backward passes, task-aware\n"
            "                        finetuning): auto (default: CUDA when its backend loads and has a\n"
            "                        device, else the CPU), cpu, cuda[:N]; TT-SVD and backfitting run on\n"
            "                        the CPU (README: \"Backends and devices\")\n"
            "      --verbose         say on stderr which device runs the work\n"
            "  -f, --force           overwrite OUT if it exists\n"
            "      --json            print the report as JSON on stdout\n"
            "      --progress        show progress on stderr even when it is not a terminal\n"
            "      --no-progress     never show progress\n"
            "  -q, --quiet           no human-readable report (--json still prints; errors go to stderr)\n"
            "      --eval-ncf TEST.rating TEST.negative  evaluate the GMF model of IN and OUT (NCF leave-one-out:\n"
            "                        HR@10, NDCG@10) and report them as \"eval\" (see fpd-eval)\n"
            "      --train-interactions FILE  task-aware finetuning of OUT's tables on the model's own loss\n"
            "                        (GMF, logistic, sampled negatives; 'user item' per line, 0-based)\n"
            "      --task-epochs E   epochs of it (10); --balance-users, --distill A (teacher = IN),\n"
            "                        --fixed-prediction as fpd-eval --finetune\n"
            "      --init normal:S|uniform:A  no input: write random cores for training from scratch whose\n"
            "                        table has mean 0 and exactly the variance of normal(0, S^2) (as\n"
            "                        torch.nn.Embedding) or uniform(-A, A) (as DLRM); needs --rows, --dim\n"
            "      --rows N, --dim D the table's shape for --init; --name T its name (default 'weight')\n"
            "      --init-order FILE order the new table's ids from implicit feedback before training\n"
            "                        (one 'a b [...]' per line; related ids share leading digits:\n"
            "                        fpd_row_order_interactions), stored as row_perm; --init-column 1|2\n"
            "                        the column of the table's ids (default 1), --id-base B (default 0)\n"
            "  -h, --help            this help\n"
            "      --version         version and build features\n"
            "\n"
            "Exit status: 0 ok, 1 runtime failure, 2 usage error, 3 --device cuda unavailable, 128+N killed by\n"
            "signal N (nothing written).\n"
            "Example: fpd-compress samples/glove-10k.safetensors -o glove.fpd.safetensors --rank 16\n");
}

/* "[T=]FILE" of a per-table file option (--row-freq, --order-from): a copy of arg in
 * *copy (free it), split into *table (NULL without "T=": the only compressed table)
 * and *file, which must exist (else exit 2). A whole arg that names a file is a file,
 * even with '=' in it. */
static void table_file_arg(const char *opt, const char *arg, char **copy, const char **table, const char **file) {
    const char *eq = strchr(arg, '=');
    *copy = strdup(arg);
    if (!*copy) cli_usage_error("out of memory");
    if (eq && !cli_exists(arg)) {
        (*copy)[eq - arg] = '\0';
        *table = *copy;
        *file = *copy + (eq - arg) + 1;
    } else {
        *table = NULL;
        *file = *copy;
    }
    if (!cli_exists(*file)) cli_usage_error("%s: %s: no such file", opt, *file);
}

/* A column option's value, 1 or 2 (else exit 2), as 0 or 1. */
static int32_t column_arg(const char *opt, const char *arg) {
    int64_t col = cli_parse_i64(opt, arg, 1);
    if (col > 2) cli_usage_error("%s must be 1 or 2, got '%s'", opt, arg);
    return (int32_t)(col - 1);
}

int main(int argc, char **argv) {
    cli_prog = "fpd-compress";
    setlocale(LC_NUMERIC, "C");
    const char *out_path = NULL, *tables_arg = NULL;
    struct fpd_plan_params pp = fpd_plan_default_params();
    struct fpd_fit_params fp = fpd_fit_default_params();
    bool force = false, json = false, quiet = false;
    enum compress_encoding encoding = COMPRESS_ENC_AUTO;
    bool encoding_given = false, core_dtype_given = false;
    double max_error = 0.0;
    int progress_mode = 0;
    const char *rf_tables[64], *rf_files[64];
    int n_rf = 0;
    int64_t queries = 200;
    const char *ncf_rating = NULL, *ncf_negative = NULL, *train_path = NULL;
    struct fpd_gmf_train_params tparams = fpd_ncf_finetune_default_params();
    const char *init_arg = NULL, *init_name = "weight", *init_order = NULL;
    int32_t init_column = 0;
    int64_t init_id_base = 0;
    bool id_base_given = false;
    /* --order-from [T=]FILE and --order-column [T=]1|2 (T: the table; none: all) */
    const char *ord_tables[64], *ord_files[64], *ocol_tables[64];
    char *ord_copies[64], *ocol_copies[64];
    int32_t ord_columns[64], ocol_values[64];
    int n_ord = 0, n_ocol = 0;
    int64_t init_rows = 0, init_dim = 0;
    char *rf_copies[64];
    struct fpd_device device = {FPD_DEVICE_REQUEST_AUTO, 0};
    bool verbose = false;
    bool free_rowwise = false, free_dtype_given = false;
    enum fpd_free_kind free_kind = FPD_FREE_INT4;
    enum { OPT_MIN_ROWS = 256, OPT_MIN_RATIO, OPT_EPOCHS, OPT_CORE_DTYPE, OPT_SEED, OPT_JSON, OPT_PROGRESS,
           OPT_NO_PROGRESS, OPT_VERSION, OPT_ROW_FREQ, OPT_QUERIES, OPT_INIT, OPT_ROWS, OPT_INIT_ORDER, OPT_INIT_COLUMN, OPT_ID_BASE, OPT_CLUSTER, OPT_ALS, OPT_BUDGET, OPT_RATIO, OPT_MAX_ERROR, OPT_EVAL_NCF, OPT_TRAIN, OPT_TASK_EPOCHS,
           OPT_BALANCE, OPT_DISTILL, OPT_FIXED_PRED,
           OPT_DIM, OPT_NAME, OPT_DEVICE, OPT_VERBOSE, OPT_FREE_COORDS, OPT_ORDER_FROM, OPT_ORDER_COLUMN,
           OPT_FREE_DTYPE };
    static const struct option opts[] = {
        {"output", required_argument, 0, 'o'},     {"rank", required_argument, 0, 'r'},
        {"encoding", required_argument, 0, 'e'},
        {"terms", required_argument, 0, 'p'},      {"cores", required_argument, 0, 'k'},
        {"tables", required_argument, 0, 't'},     {"min-rows", required_argument, 0, OPT_MIN_ROWS},
        {"min-ratio", required_argument, 0, OPT_MIN_RATIO}, {"epochs", required_argument, 0, OPT_EPOCHS},
        {"core-dtype", required_argument, 0, OPT_CORE_DTYPE}, {"seed", required_argument, 0, OPT_SEED},
        {"force", no_argument, 0, 'f'},            {"json", no_argument, 0, OPT_JSON},
        {"progress", no_argument, 0, OPT_PROGRESS}, {"no-progress", no_argument, 0, OPT_NO_PROGRESS},
        {"quiet", no_argument, 0, 'q'},            {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, OPT_VERSION},  {"row-freq", required_argument, 0, OPT_ROW_FREQ},
        {"queries", required_argument, 0, OPT_QUERIES},  {"init", required_argument, 0, OPT_INIT},
        {"init-order", required_argument, 0, OPT_INIT_ORDER}, {"init-column", required_argument, 0, OPT_INIT_COLUMN},
        {"id-base", required_argument, 0, OPT_ID_BASE},
        {"rows", required_argument, 0, OPT_ROWS},        {"dim", required_argument, 0, OPT_DIM},
        {"name", required_argument, 0, OPT_NAME},       {"cluster-rows", no_argument, 0, OPT_CLUSTER},
        {"als", required_argument, 0, OPT_ALS},          {"budget", required_argument, 0, OPT_BUDGET},
        {"ratio", required_argument, 0, OPT_RATIO},      {"max-error", required_argument, 0, OPT_MAX_ERROR},
        {"eval-ncf", required_argument, 0, OPT_EVAL_NCF}, {"train-interactions", required_argument, 0, OPT_TRAIN},
        {"task-epochs", required_argument, 0, OPT_TASK_EPOCHS}, {"balance-users", no_argument, 0, OPT_BALANCE},
        {"distill", required_argument, 0, OPT_DISTILL},  {"fixed-prediction", no_argument, 0, OPT_FIXED_PRED},
        {"device", required_argument, 0, OPT_DEVICE},    {"verbose", no_argument, 0, OPT_VERBOSE},
        {"free-coords", required_argument, 0, OPT_FREE_COORDS}, {"order-from", required_argument, 0, OPT_ORDER_FROM},
        {"order-column", required_argument, 0, OPT_ORDER_COLUMN}, {"free-dtype", required_argument, 0, OPT_FREE_DTYPE},
        {0, 0, 0, 0},
    };
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":o:r:p:k:t:e:fqh", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out_path = optarg; break;
        case 'e':
            if (!compress_encoding_from_name(optarg, &encoding))
                cli_usage_error("--encoding must be auto, fpd, int8, int4 or dense, got '%s'", optarg);
            encoding_given = true;
            break;
        case 'r': pp.rank = cli_parse_i64("--rank", optarg, 1); break;
        case 'p': pp.terms = cli_parse_i64("--terms", optarg, 1); break;
        case 'k': {
            int64_t k = cli_parse_i64("--cores", optarg, 1);
            if (k > FPD_MAX_MODES) cli_usage_error("--cores must be at most %d, got %lld", FPD_MAX_MODES, (long long)k);
            pp.k = (int32_t)k;
            break;
        }
        case 't': tables_arg = optarg; break;
        case OPT_MIN_ROWS: pp.min_rows = cli_parse_i64("--min-rows", optarg, 1); break;
        case OPT_MIN_RATIO: pp.min_ratio = cli_parse_f64("--min-ratio", optarg, 0.0); break;
        case OPT_EPOCHS: fp.finetune_epochs = cli_parse_i64("--epochs", optarg, 0); break;
        case OPT_CORE_DTYPE:
            for (char *ch = optarg; *ch; ch++) *ch = (char)toupper((unsigned char)*ch);
            if (!fpd_dtype_from_name(optarg, strlen(optarg), &pp.core_dtype) ||
                !(pp.core_dtype == FPD_DTYPE_F32 || pp.core_dtype == FPD_DTYPE_F16 || pp.core_dtype == FPD_DTYPE_BF16))
                cli_usage_error("--core-dtype must be F32, F16 or BF16, got '%s'", optarg);
            core_dtype_given = true;
            break;
        case OPT_SEED: fp.seed = (uint64_t)cli_parse_i64("--seed", optarg, 0); break;
        case OPT_QUERIES: queries = cli_parse_i64("--queries", optarg, 0); break;
        case OPT_INIT: init_arg = optarg; break;
        case OPT_INIT_ORDER: init_order = optarg; break;
        case OPT_INIT_COLUMN: init_column = column_arg("--init-column", optarg); break;
        case OPT_ID_BASE:
            init_id_base = cli_parse_i64("--id-base", optarg, 0);
            id_base_given = true;
            break;
        case OPT_ORDER_FROM:
            if (n_ord == 64) cli_usage_error("at most 64 --order-from options");
            table_file_arg("--order-from", optarg, &ord_copies[n_ord], &ord_tables[n_ord], &ord_files[n_ord]);
            n_ord++;
            break;
        case OPT_ORDER_COLUMN: {
            if (n_ocol == 64) cli_usage_error("at most 64 --order-column options");
            const char *eq = strchr(optarg, '=');
            ocol_copies[n_ocol] = strdup(optarg);
            if (!ocol_copies[n_ocol]) cli_usage_error("out of memory");
            ocol_tables[n_ocol] = NULL;
            if (eq) {
                ocol_copies[n_ocol][eq - optarg] = '\0';
                ocol_tables[n_ocol] = ocol_copies[n_ocol];
            }
            ocol_values[n_ocol] = column_arg("--order-column", eq ? eq + 1 : optarg);
            n_ocol++;
            break;
        }
        case OPT_CLUSTER: fp.cluster_rows = true; break;
        case OPT_FREE_COORDS: fp.free_coords = cli_parse_free_coords("--free-coords", optarg); break;
        case OPT_FREE_DTYPE: /* the core dtype's name means "as the cores": E not quantized */
            if (strcmp(optarg, "core") == 0) free_rowwise = false;
            else if (fpd_free_kind_from_name(optarg, &free_kind)) free_rowwise = true;
            else cli_usage_error("--free-dtype must be core, int8, int4, int8-sym or int4-sym, got '%s'", optarg);
            free_dtype_given = true;
            break;
        case OPT_EVAL_NCF:
            ncf_rating = optarg;
            if (optind >= argc || argv[optind][0] == '-')
                cli_usage_error("--eval-ncf needs two files: TEST.rating TEST.negative");
            ncf_negative = argv[optind++];
            break;
        case OPT_TRAIN: train_path = optarg; break;
        case OPT_TASK_EPOCHS: tparams.epochs = cli_parse_i64("--task-epochs", optarg, 1); break;
        case OPT_BALANCE: tparams.balance_users = true; break;
        case OPT_FIXED_PRED: tparams.train_prediction = false; break;
        case OPT_DISTILL:
            tparams.distill = cli_parse_f64("--distill", optarg, 0.0);
            if (tparams.distill > 1.0) cli_usage_error("--distill must be in [0, 1], got '%s'", optarg);
            break;
        case OPT_BUDGET: pp.budget_bytes = cli_parse_bytes("--budget", optarg); break;
        case OPT_RATIO:
            pp.min_ratio_target = cli_parse_f64("--ratio", optarg, 0.0);
            if (!(pp.min_ratio_target > 0.0)) cli_usage_error("--ratio must be > 0, got '%s'", optarg);
            break;
        case OPT_MAX_ERROR:
            max_error = cli_parse_f64("--max-error", optarg, 0.0);
            if (!(max_error > 0.0)) cli_usage_error("--max-error must be > 0, got '%s'", optarg);
            break;
        case OPT_ALS: fp.als_sweeps = cli_parse_i64("--als", optarg, 0); break;
        case OPT_ROWS: init_rows = cli_parse_i64("--rows", optarg, 1); break;
        case OPT_DIM: init_dim = cli_parse_i64("--dim", optarg, 1); break;
        case OPT_NAME:
            if (!*optarg) cli_usage_error("--name must not be empty");
            init_name = optarg;
            break;
        case OPT_ROW_FREQ:
            if (n_rf == 64) cli_usage_error("at most 64 --row-freq options");
            table_file_arg("--row-freq", optarg, &rf_copies[n_rf], &rf_tables[n_rf], &rf_files[n_rf]);
            n_rf++;
            break;
        case OPT_DEVICE:
            if (!fpd_device_parse(optarg, &device))
                cli_usage_error("--device must be auto, cpu, cuda or cuda:N, got '%s'", optarg);
            break;
        case OPT_VERBOSE: verbose = true; break;
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
    if (init_arg) {
        struct fpd_init_params ip = {FPD_INIT_KIND_NORMAL, 0.0, fp.seed};
        const char *colon = strchr(init_arg, ':');
        size_t kl = colon ? (size_t)(colon - init_arg) : strlen(init_arg);
        if (kl == 6 && strncmp(init_arg, "normal", 6) == 0) ip.kind = FPD_INIT_KIND_NORMAL;
        else if (kl == 7 && strncmp(init_arg, "uniform", 7) == 0) ip.kind = FPD_INIT_KIND_UNIFORM;
        else cli_usage_error("--init expects normal:S or uniform:A, got '%s'", init_arg);
        ip.scale = colon ? cli_parse_f64("--init", colon + 1, 0.0) : 0.0;
        if (!(ip.scale > 0.0)) cli_usage_error("--init needs a positive scale, as in normal:0.01 or uniform:0.05");
        if (optind < argc) cli_usage_error("--init takes no input checkpoint (got '%s')", argv[optind]);
        if (n_ord || n_ocol) cli_usage_error("--order-from orders a trained table's rows; with --init use --init-order");
        if (!init_rows || !init_dim) cli_usage_error("--init needs --rows N and --dim D");
        if (!out_path) cli_usage_error("no output given (use -o OUT)");
        struct stat ist;
        if (stat(out_path, &ist) == 0 && S_ISDIR(ist.st_mode)) cli_usage_error("output '%s' is a folder", out_path);
        if (cli_exists(out_path) && !force) cli_usage_error("output '%s' exists; use --force to overwrite it", out_path);
        struct compress_options io = compress_default_options();
        io.plan = pp;
        io.force = force;
        io.init_interactions = init_order;
        io.init_id_base = init_id_base;
        io.init_column = init_column;
        json_t *rep = NULL;
        int irc = compress_init_checkpoint(out_path, init_name, init_rows, init_dim, &ip, &io, &rep);
        if (irc == CLI_EXIT_OK && json) {
            json_dumpf(rep, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(8));
            fputc('\n', stdout);
        } else if (irc == CLI_EXIT_OK && !quiet) {
            compress_print_init_report(rep, stdout);
        }
        json_decref(rep);
        return irc;
    }
    if (init_rows || init_dim) cli_usage_error("--rows and --dim go with --init");
    if (init_order) cli_usage_error("--init-order goes with --init (a trained table: --order-from)");
    if (n_ocol && !n_ord) cli_usage_error("--order-column goes with --order-from");
    if (id_base_given && !n_ord) cli_usage_error("--id-base goes with --init-order or --order-from");
    if (n_ord && fp.cluster_rows)
        cli_usage_error("--order-from and --cluster-rows both order the rows (from the interactions, from the "
                        "table's own rows); give one");
    /* each --order-from's column: its table's --order-column, else one without a table, else 1 */
    for (int i = 0; i < n_ord; i++) {
        ord_columns[i] = 0;
        for (int q = 0; q < n_ocol; q++)
            if (!ocol_tables[q]) ord_columns[i] = ocol_values[q];
        for (int q = 0; q < n_ocol; q++)
            if (ocol_tables[q] && ord_tables[i] && strcmp(ocol_tables[q], ord_tables[i]) == 0)
                ord_columns[i] = ocol_values[q];
    }
    for (int q = 0; q < n_ocol; q++) {
        bool used = !ocol_tables[q];
        for (int i = 0; i < n_ord; i++) used |= ord_tables[i] && strcmp(ocol_tables[q], ord_tables[i]) == 0;
        if (!used) cli_usage_error("--order-column %s=...: no --order-from %s=FILE", ocol_tables[q], ocol_tables[q]);
    }
    if (optind >= argc) cli_usage_error("no input checkpoint given");
    if (optind + 1 < argc) cli_usage_error("one input checkpoint expected, got '%s' too", argv[optind + 1]);
    const char *in_path = argv[optind];
    if (!out_path) cli_usage_error("no output given (use -o OUT)");
    if (strcmp(out_path, "-") == 0)
        cli_usage_error("-o - is not supported: the report goes to standard output; write a file and use "
                        "fpd-convert or cat to pipe it");
    if (strcmp(in_path, "-") == 0 && (ncf_rating || train_path))
        cli_usage_error("--eval-ncf and --train-interactions read IN again; give a file, not -");
    if (strcmp(in_path, "-") != 0 && !cli_exists(in_path)) {
        cli_error("%s: no such file", in_path);
        return CLI_EXIT_FAILURE;
    }
    if (strcmp(in_path, out_path) == 0 || cli_same_file(in_path, out_path))
        cli_usage_error("output '%s' is the input; choose another path (the input is never overwritten)", out_path);
    struct stat ost;
    size_t olen = strlen(out_path);
    if ((stat(out_path, &ost) == 0 && S_ISDIR(ost.st_mode)) || (olen > 0 && out_path[olen - 1] == '/'))
        cli_usage_error("output '%s' is a folder; give a file name such as %s/model.fpd.safetensors", out_path,
                        out_path);
    if (olen >= 4 && strcmp(out_path + olen - 4, ".npy") == 0)
        cli_usage_error("output '%s' ends in .npy, but the output is a safetensors checkpoint; name it *.safetensors",
                        out_path);
    if (cli_exists(out_path) && !force)
        cli_usage_error("output '%s' exists; use --force to overwrite it", out_path);

    if (train_path) { /* task-aware finetuning trains FPD cores */
        if (encoding_given && encoding != COMPRESS_ENC_FPD)
            cli_usage_error("--train-interactions finetunes FPD tables; it does not go with --encoding %s",
                            compress_encoding_name(encoding));
        encoding = COMPRESS_ENC_FPD;
    }
    if ((pp.rank || pp.terms) && encoding_given && encoding != COMPRESS_ENC_FPD)
        cli_usage_error("--rank/--terms force FPD; they do not go with --encoding %s", compress_encoding_name(encoding));
    if ((fp.free_coords != 0 || free_dtype_given) && (encoding == COMPRESS_ENC_INT8 || encoding == COMPRESS_ENC_INT4 ||
                                                      encoding == COMPRESS_ENC_DENSE))
        cli_usage_error("--free-coords/--free-dtype give FPD tables free coordinates; --encoding %s writes no FPD "
                        "table", compress_encoding_name(encoding));
    /* auto stores FPD cores in F16 unless told otherwise: half the bytes of F32 for an
     * error that does not show at the targets auto meets (README: 0.00036 on an exact fit) */
    if (encoding == COMPRESS_ENC_AUTO && !core_dtype_given && !pp.rank && !pp.terms && !pp.budget_bytes &&
        !(pp.min_ratio_target > 0.0))
        pp.core_dtype = FPD_DTYPE_F16;
    /* the quality target; the planner's FPD target only with an explicit --encoding fpd
     * (auto passes it itself; --rank/--terms fix the candidate) */
    if (encoding == COMPRESS_ENC_FPD && !pp.rank && !pp.terms) pp.max_error = max_error;
    if (fp.free_coords == FPD_FREE_COORDS_AUTO && !pp.budget_bytes && !(pp.min_ratio_target > 0.0) &&
        !(max_error > 0.0))
        cli_usage_error("--free-coords auto needs a target to trade the free coordinates against: give --budget, "
                        "--ratio or --max-error (or a count: --free-coords C)");
    if (free_dtype_given && free_rowwise && fp.free_coords < 1 && fp.free_coords != FPD_FREE_COORDS_AUTO)
        cli_usage_error("--free-dtype %s stores the free coordinates' E: give --free-coords C (C >= 1) or auto",
                        fpd_free_kind_name(free_kind));
    struct compress_options co = compress_default_options();
    co.encoding = encoding;
    co.free_rowwise = free_rowwise;
    co.free_kind = free_kind;
    co.max_error = max_error > 0.0 ? max_error : COMPRESS_DEFAULT_MAX_ERROR;
    co.quiet = quiet;
    co.plan = pp;
    co.plan.free_rowwise = free_rowwise; /* --free-coords auto: the planner sizes E so */
    co.plan.free_kind = free_kind;
    co.fit = fp;
    co.force = force;
    co.progress_mode = progress_mode;
    co.recall_queries = queries;
    co.row_freq_tables = rf_tables;
    co.row_freq_files = rf_files;
    co.n_row_freq = n_rf;
    co.order_tables = ord_tables;
    co.order_files = ord_files;
    co.order_columns = ord_columns;
    co.n_order = n_ord;
    co.init_id_base = init_id_base;
    char *tables_copy = NULL;
    if (tables_arg) {
        tables_copy = strdup(tables_arg);
        co.tables = calloc(strlen(tables_arg) + 1, sizeof *co.tables);
        if (!tables_copy || !co.tables) {
            cli_error("out of memory");
            return CLI_EXIT_FAILURE;
        }
        for (char *tok = strtok(tables_copy, ","); tok; tok = strtok(NULL, ","))
            if (*tok) co.tables[co.n_tables++] = tok;
        if (co.n_tables == 0) cli_usage_error("--tables needs at least one name");
    }
    json_t *report = NULL;
    struct fpd_error nerr = {0};
    struct fpd_ncf_metrics before = {0}, after = {0};
    if (ncf_rating) {
        if (!cli_exists(ncf_rating) || !cli_exists(ncf_negative))
            cli_usage_error("--eval-ncf: %s: no such file", cli_exists(ncf_rating) ? ncf_negative : ncf_rating);
        if (fpd_ncf_eval_file(in_path, ncf_rating, ncf_negative, &before, &nerr)) {
            cli_error("--eval-ncf: %s", nerr.msg);
            return CLI_EXIT_FAILURE;
        }
    }
    tparams.seed = fp.seed; /* one --seed for the fit and the task-aware finetune */
    if (train_path && !cli_exists(train_path)) cli_usage_error("--train-interactions: %s: no such file", train_path);
    /* the device of the engine work (finetuning, ALS); auto probes CUDA only when there is some */
    struct fpd_device_choice dev;
    struct fpd_device want = device;
    if (want.request == FPD_DEVICE_REQUEST_AUTO && fp.finetune_epochs == 0 && fp.als_sweeps == 0 && !train_path)
        want.request = FPD_DEVICE_REQUEST_CPU;
    cli_device_open_or_exit(&want, "--device", verbose, &dev);
    fpd_device_str(&device, dev.requested, sizeof dev.requested);
    co.fit.backend = dev.backend;
    tparams.backend = dev.backend;
    int rc = compress_checkpoint(in_path, out_path, &co, &report);
    if (rc == CLI_EXIT_OK) cli_device_json(&dev, report);
    if (rc == CLI_EXIT_OK && train_path) {
        struct fpd_ncf_finetune_report frep;
        if (fpd_ncf_finetune_file(out_path, train_path, out_path, true, &tparams, ncf_rating, ncf_negative, in_path, &frep,
                              &nerr)) {
            cli_error("--train-interactions: %s", nerr.msg);
            unlink(out_path); /* the compressed file without its finetune is not what was asked for */
            rc = CLI_EXIT_FAILURE;
        } else {
            after = frep.after;
            json_t *ft = json_object();
            json_object_set_new(ft, "interactions", json_string(train_path));
            json_object_set_new(ft, "positives", json_integer(frep.positives));
            json_object_set_new(ft, "epochs", json_integer(frep.epochs));
            json_object_set_new(ft, "final_loss", json_real(frep.final_loss));
            json_object_set_new(ft, "seconds", json_real(frep.seconds));
            json_object_set_new(ft, "seconds_per_epoch", json_real(frep.seconds_per_epoch));
            if (frep.evaluated) {
                json_object_set_new(ft, "hr10_before_finetune", json_real(frep.before.hr10));
                json_object_set_new(ft, "ndcg10_before_finetune", json_real(frep.before.ndcg10));
            }
            json_object_set_new(report, "task_finetune", ft);
        }
    } else if (rc == CLI_EXIT_OK && ncf_rating) {
        if (fpd_ncf_eval_file(out_path, ncf_rating, ncf_negative, &after, &nerr)) {
            cli_error("--eval-ncf: %s", nerr.msg);
            rc = CLI_EXIT_FAILURE;
        }
    }
    if (rc == CLI_EXIT_OK && ncf_rating) json_object_set_new(report, "eval", ncf_eval_json(&before, &after));
    if (rc == CLI_EXIT_OK && json) {
        json_dumpf(report, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
        fputc('\n', stdout);
    } else if (rc == CLI_EXIT_OK && !quiet) {
        compress_print_report(report, stdout);
        if (train_path) {
            const json_t *ft = json_object_get(report, "task_finetune");
            const long long ep = (long long)json_integer_value(json_object_get(ft, "epochs"));
            printf("task-aware finetune: %lld positives, %lld epoch%s, %.1f s\n",
                   (long long)json_integer_value(json_object_get(ft, "positives")), ep, ep == 1 ? "" : "s",
                   json_number_value(json_object_get(ft, "seconds")));
        }
        if (ncf_rating)
            printf("NCF eval: HR@10 %.4f -> %.4f, NDCG@10 %.4f -> %.4f (%lld users)\n", before.hr10, after.hr10,
                   before.ndcg10, after.ndcg10, (long long)before.users);
    }
    json_decref(report);
    fpd_device_close(&dev);
    free(co.tables);
    free(tables_copy);
    for (int q = 0; q < n_rf; q++) free(rf_copies[q]);
    for (int q = 0; q < n_ord; q++) free(ord_copies[q]);
    for (int q = 0; q < n_ocol; q++) free(ocol_copies[q]);
    return rc;
}
