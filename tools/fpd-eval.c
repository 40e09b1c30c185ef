/*
 * fpd-eval - downstream accuracy of a recommender checkpoint, dense or FPD: the
 * NCF leave-one-out protocol (He et al., WWW 2017) on a GMF, MLP or NeuMF checkpoint,
 * HR@10 and NDCG@10. Also task-aware finetuning of a checkpoint's tables on interaction data
 * (--finetune), and the NCF training interactions rebuilt from MovieLens-1M
 * ratings (--movielens ... --write-train). The work is in the library (fpd_ncf_*,
 * formats/ncf-data.c); tools/ncf.c has the JSON forms.
 */
#include "tools/ncf.h"
#include "tools/device.h"

#include <errno.h>
#include <getopt.h>
#include <locale.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "Usage: fpd-eval CHECKPOINT --ncf TEST.rating TEST.negative [options]\n"
            "Evaluate an NCF checkpoint (GMF, MLP or NeuMF), with dense or FPD tables, on the NCF\n"
            "leave-one-out test set: each user's held-out item is ranked among itself and its\n"
            "negatives (99 in NCF); a hit when fewer than 10 score higher (ties placed at random).\n"
            "Prints HR@10 and NDCG@10.\n"
            "\n"
            "GMF: user_embedding.weight, item_embedding.weight (dense, row-wise or FPD v1),\n"
            "prediction.weight [1, D], prediction.bias [1]; score = sigmoid(sum(u * i * w) + b).\n"
            "MLP: the same tables, layer1.weight/.bias .. layerL (ReLU), prediction over the last.\n"
            "NeuMF: mf_embedding_user/item.weight, mlp_embedding_user/item.weight, layer1..L,\n"
            "prediction over [GMF part, MLP part]. Other models: 'this model is not supported'.\n"
            "\n"
            "Options:\n"
            "      --ncf R N          the NCF test files: R = TEST.rating, N = TEST.negative (0-based ids)\n"
            "      --vocabulary MAP   the checkpoint's row order lives in an id vocabulary (the TSV that\n"
            "                         fpd-convert --vocabulary-out wrote): its FPD tables are looked up\n"
            "                         by the test files' ids through MAP (not with --finetune)\n"
            "      --json             print the result as JSON (schema fpd-eval/2)\n"
            "  -q, --quiet            no human-readable result (--json still prints; errors and\n"
            "                         warnings go to stderr); the exit status says whether it ran\n"
            "  -h, --help             this help\n"
            "      --version          version and build features\n"
            "\n"
            "Task-aware finetuning (then evaluate before and after):\n"
            "      --finetune TRAIN   train the tables (FPD cores or dense rows) on the model's own loss:\n"
            "                         logistic loss, NEG sampled negatives per positive, Adam.\n"
            "                         TRAIN has one 'user item [rating]' per line, 0-based ids\n"
            "  -o, --output OUT       the finetuned checkpoint (written atomically; needs --finetune)\n"
            "      --epochs E         passes over TRAIN (default 10)\n"
            "      --batch B          samples per Adam step, positives and negatives (default 1024)\n"
            "      --negatives NEG    negatives per positive (default 4)\n"
            "      --lr X             Adam step of dense rows and prediction weights (default 1e-3)\n"
            "      --core-lr X        Adam step of FPD cores, relative to each core's RMS (default 1e-2)\n"
            "      --core-lr-absolute the core step is absolute, not relative\n"
            "      --fixed-prediction keep prediction.weight and prediction.bias fixed\n"
            "      --balance-users    weigh every user the same in the loss (as HR@10 does), not every\n"
            "                         interaction\n"
            "      --distill A        blend the reference's scores into the targets: (1-A) label + A score\n"
            "                         (knowledge distillation; needs --reference)\n"
            "      --seed S           order of the positives and the negatives (default 0)\n"
            "      --reference DENSE  the uncompressed checkpoint: rel_error of the finetuned tables\n"
            "  -f, --force            overwrite OUT if it exists\n"
            "  -v, --verbose          each epoch's loss and time, and the device, on stderr\n"
            "      --device D         where the FPD tables train: auto (default: CUDA when its backend\n"
            "                         loads and has a device, else the CPU), cpu, cuda[:N]\n"
            "\n"
            "NCF training data from MovieLens-1M:\n"
            "      --movielens RATINGS  ratings.tsv (header, 1-based user and item ids, items 1..3706):\n"
            "                         rebuild the NCF item ids (checked against --ncf; ties broken by\n"
            "                         CHECKPOINT's scores) and report the checks\n"
            "      --write-train OUT  write every rating but each user's held-out item, in NCF ids\n"
            "\n"
            "Exit status: 0 ok, 1 runtime failure, 2 usage error, 3 --device cuda unavailable.\n"
            "Example: fpd-eval ncf_gmf8_ml1m.safetensors --ncf ml-1m.test.rating ml-1m.test.negative\n");
}

static json_t *tables_json(const struct fpd_ncf_model *m) {
    json_t *a = json_array();
    /* every table of the model's kind (GMF, MLP: 2; NeuMF: 4), by its tensor name */
    const struct fpd_embedding *views[4] = {&m->net.mf_user, &m->net.mf_item, &m->net.mlp_user, &m->net.mlp_item};
    const char *names[4];
    const struct fpd_embedding *e[4];
    for (int i = 0; i < m->n_tables; i++) {
        names[i] = fpd_ncf_model_table_name(m->kind, i);
        e[i] = views[m->kind == FPD_NCF_KIND_MLP ? i + 2 : i];
    }
    for (int i = 0; i < m->n_tables; i++) {
        json_t *o = json_pack("{s:s, s:s, s:I, s:I}", "name", names[i], "kind",
                              m->layer[i] ? "fpd" : m->encoding[i] ? m->encoding[i] : "dense", "rows",
                              (json_int_t)e[i]->rows, "dim", (json_int_t)e[i]->dim);
        if (m->layer[i]) {
            const struct fpd_layer_shape *s = fpd_layer_get_shape(m->layer[i]);
            int64_t r = 1;
            for (int32_t k = 1; k < s->k; k++) r = s->ranks[k] > r ? s->ranks[k] : r;
            json_object_set_new(o, "r", json_integer(r));
            json_object_set_new(o, "p", json_integer(s->terms));
            /* as stored: the cores, row_perm and free/1's E and P in their file dtypes,
             * against the dense table in its source dtype (as fpd-inspect counts) */
            json_object_set_new(o, "params", json_integer(fpd_layer_param_count(m->layer[i])));
            const int64_t fc = fpd_layer_get_free_coords(m->layer[i]);
            json_object_set_new(o, "free_coords", json_integer(fc));
            /* E's form in the file (as fpd-inspect names it) and the bytes E and P take in
             * memory here: stored rows when only evaluating, F32 with --finetune */
            const char *fd = cli_free_dtype_name(&m->meta[i]);
            json_object_set_new(o, "free_dtype", fd ? json_string(fd) : json_null());
            json_object_set_new(o, "free_stored", json_boolean(fpd_layer_get_free_stored(m->layer[i], NULL) != NULL));
            json_object_set_new(o, "free_memory_bytes", json_integer((json_int_t)fpd_layer_free_memory_bytes(m->layer[i])));
            size_t bytes = 0; /* the file's tensors "T.fpd.*" (cores, row_perm, free, free_proj) */
            const size_t nl = strlen(names[i]);
            for (int64_t q = 0; m->st && q < fpd_safetensors_count(m->st); q++) {
                const struct fpd_tensor_info *ti = fpd_safetensors_tensor(m->st, q);
                if (strncmp(ti->name, names[i], nl) == 0 && strncmp(ti->name + nl, ".fpd.", 5) == 0) bytes += ti->nbytes;
            }
            const enum fpd_dtype sd = m->meta[i].source_dtype < FPD_DTYPE_COUNT ? m->meta[i].source_dtype
                                                                                 : FPD_DTYPE_F32;
            const double dense = (double)(e[i]->rows * e[i]->dim) * (double)fpd_dtype_size(sd);
            json_object_set_new(o, "bytes", json_integer((json_int_t)bytes));
            json_object_set_new(o, "ratio", bytes ? json_real(dense / (double)bytes) : json_null());
        }
        json_array_append_new(a, o);
    }
    return a;
}

static bool print_epoch(int64_t epoch, double loss, double seconds, void *ud) {
    if (*(int *)ud) fprintf(stderr, "fpd-eval: epoch %lld: loss %.5f (%.2f s)\n", (long long)epoch, loss, seconds);
    return !cli_interrupted();
}

int main(int argc, char **argv) {
    cli_prog = "fpd-eval";
    setlocale(LC_NUMERIC, "C");
    const char *rating = NULL, *negative = NULL, *train = NULL, *out = NULL, *movielens = NULL, *write_train = NULL,
               *reference = NULL, *vocab = NULL;
    bool json = false, force = false, quiet = false;
    int verbose = 0;
    struct fpd_gmf_train_params tp = fpd_ncf_finetune_default_params();
    struct fpd_device device = {FPD_DEVICE_REQUEST_AUTO, 0};
    struct fpd_device_choice dev;
    memset(&dev, 0, sizeof dev);
    enum { OPT_NCF = 256, OPT_JSON, OPT_VERSION, OPT_FINETUNE, OPT_EPOCHS, OPT_BATCH, OPT_NEG, OPT_LR, OPT_CORE_LR,
           OPT_CORE_ABS, OPT_FIXED, OPT_SEED, OPT_REF, OPT_ML, OPT_WRITE_TRAIN, OPT_BALANCE, OPT_DISTILL, OPT_DEVICE,
           OPT_VOCAB };
    static const struct option opts[] = {
        {"ncf", required_argument, 0, OPT_NCF},          {"json", no_argument, 0, OPT_JSON},
        {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},                   {"version", no_argument, 0, OPT_VERSION},
        {"finetune", required_argument, 0, OPT_FINETUNE}, {"output", required_argument, 0, 'o'},
        {"epochs", required_argument, 0, OPT_EPOCHS},    {"batch", required_argument, 0, OPT_BATCH},
        {"negatives", required_argument, 0, OPT_NEG},    {"lr", required_argument, 0, OPT_LR},
        {"core-lr", required_argument, 0, OPT_CORE_LR},  {"core-lr-absolute", no_argument, 0, OPT_CORE_ABS},
        {"fixed-prediction", no_argument, 0, OPT_FIXED}, {"seed", required_argument, 0, OPT_SEED},
        {"reference", required_argument, 0, OPT_REF},    {"force", no_argument, 0, 'f'},
        {"movielens", required_argument, 0, OPT_ML},     {"write-train", required_argument, 0, OPT_WRITE_TRAIN},
        {"verbose", no_argument, 0, 'v'},                {"balance-users", no_argument, 0, OPT_BALANCE},
        {"distill", required_argument, 0, OPT_DISTILL},  {"device", required_argument, 0, OPT_DEVICE},
        {"vocabulary", required_argument, 0, OPT_VOCAB}, {0, 0, 0, 0},
    };
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":o:fhqv", opts, NULL)) != -1) {
        switch (c) {
        case OPT_NCF:
            rating = optarg;
            if (optind >= argc || argv[optind][0] == '-')
                cli_usage_error("--ncf needs two files: TEST.rating TEST.negative");
            negative = argv[optind++];
            break;
        case OPT_JSON: json = true; break;
        case 'q': quiet = true; break;
        case 'h': usage(stdout); return CLI_EXIT_OK;
        case OPT_VERSION: printf("fpd-eval %s (%s)\n", fpd_version(), fpd_build_features()); return CLI_EXIT_OK;
        case OPT_FINETUNE: train = optarg; break;
        case 'o': out = optarg; break;
        case OPT_EPOCHS: tp.epochs = cli_parse_i64("--epochs", optarg, 0); break;
        case OPT_BATCH: tp.batch_size = cli_parse_i64("--batch", optarg, 1); break;
        case OPT_NEG: tp.negatives = cli_parse_i64("--negatives", optarg, 0); break;
        case OPT_LR: tp.learning_rate = cli_parse_pos("--lr", optarg); break;
        case OPT_CORE_LR: tp.core_learning_rate = cli_parse_pos("--core-lr", optarg); break;
        case OPT_CORE_ABS: tp.core_lr_relative = false; break;
        case OPT_FIXED: tp.train_prediction = false; break;
        case OPT_SEED: tp.seed = (uint64_t)cli_parse_i64("--seed", optarg, 0); break;
        case OPT_BALANCE: tp.balance_users = true; break;
        case OPT_DISTILL:
            tp.distill = cli_parse_pos("--distill", optarg);
            if (tp.distill > 1.0) cli_usage_error("--distill must be in (0, 1], got '%s'", optarg);
            break;
        case OPT_REF: reference = optarg; break;
        case 'f': force = true; break;
        case 'v': verbose = 1; break;
        case OPT_DEVICE:
            if (!fpd_device_parse(optarg, &device))
                cli_usage_error("--device must be auto, cpu, cuda or cuda:N, got '%s'", optarg);
            break;
        case OPT_ML: movielens = optarg; break;
        case OPT_VOCAB: vocab = optarg; break;
        case OPT_WRITE_TRAIN: write_train = optarg; break;
        case ':': cli_usage_error("option '%s' needs a value", argv[optind - 1]);
        default: cli_usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc) cli_usage_error("no checkpoint given");
    if (optind + 1 < argc) cli_usage_error("one checkpoint expected, got '%s' too", argv[optind + 1]);
    const char *ckpt = argv[optind];
    if (!rating) cli_usage_error("no test set given (use --ncf TEST.rating TEST.negative)");
    if (train && !out) cli_usage_error("--finetune needs an output (-o OUT)");
    if (out && !train) cli_usage_error("-o is only used with --finetune");
    if (tp.distill > 0.0 && !reference) cli_usage_error("--distill needs --reference DENSE (the teacher)");
    if (write_train && !movielens) cli_usage_error("--write-train needs --movielens RATINGS");
    if (vocab && train)
        cli_usage_error("--vocabulary goes with evaluation only; finetune the checkpoint before the fold "
                        "(fpd-convert --vocabulary-out), or fold the finetuned one");
    if (tp.batch_size < 1 + tp.negatives)
        cli_usage_error("--batch must be at least 1 + --negatives (%lld)", (long long)(1 + tp.negatives));
    if (out) {
        if (strcmp(out, ckpt) == 0 || cli_same_file(out, ckpt))
            cli_usage_error("output '%s' is the input; choose another path (the input is never overwritten)", out);
        if (cli_exists(out) && !force) cli_usage_error("output '%s' exists; use --force to overwrite it", out);
    }
    if (write_train && cli_exists(write_train) && !force)
        cli_usage_error("output '%s' exists; use --force to overwrite it", write_train);

    /* the device of the finetune (the only engine work here) */
    if (train) {
        cli_device_open_or_exit(&device, "--device", verbose, &dev);
        tp.backend = dev.backend;
    }
    struct fpd_error err = {0};
    struct fpd_ncf_model m;
    struct fpd_ncf_test t;
    memset(&t, 0, sizeof t);
    json_t *res = NULL;
    int rc = CLI_EXIT_FAILURE;
    json_t *tabs = NULL; /* the tables as the file stores them (before --vocabulary) */
    /* evaluation alone keeps E as the file stores it (a fraction of the memory, the same scores) */
    if ((train ? fpd_ncf_model_load : fpd_ncf_model_load_stored)(ckpt, &m, &err) ||
        fpd_ncf_test_load(rating, negative, &t, &err) || !(tabs = tables_json(&m)) ||
        (vocab && fpd_ncf_model_apply_vocabulary(&m, vocab, &err))) {
        cli_error("%s", err.msg[0] ? err.msg : "out of memory");
        json_decref(tabs);
        goto done;
    }
    for (int32_t i = 0; i < m.n_tables; i++) /* a folded order without its map: the ids are not its rows */
        if (m.layer[i] && m.meta[i].vocabulary_order)
            cli_warn("%s: table '%s' has its row order in an id vocabulary (fpd-convert --vocabulary-out): its rows "
                     "are the vocabulary's, not the test files' ids, unless those were mapped; give --vocabulary MAP",
                     ckpt, fpd_ncf_model_table_name(m.kind, i));
    struct fpd_ncf_metrics met;
    if (fpd_ncf_model_eval(&m, &t, &met, &err)) {
        cli_error("%s: %s", ckpt, err.msg);
        json_decref(tabs);
        goto done;
    }
    res = json_pack("{s:s, s:s, s:o, s:{s:s, s:s, s:I, s:I}, s:f, s:f}", "schema", "fpd-eval/2", "input", ckpt,
                    "tables", tabs, "test", "rating", rating, "negative", negative, "users",
                    (json_int_t)t.n, "candidates", (json_int_t)t.n_cand, "hr10", met.hr10, "ndcg10", met.ndcg10);
    if (vocab) json_object_set_new(res, "vocabulary", json_string(vocab));

    if (movielens) {
        struct fpd_ncf_interactions r;
        struct fpd_ncf_map_report mr;
        int64_t *map = NULL;
        if (fpd_ncf_interactions_load(movielens, 1, &r, &err)) {
            cli_error("%s", err.msg);
            fpd_ncf_interactions_free(&r);
            goto done;
        }
        map = malloc((size_t)r.n_items * sizeof *map);
        enum fpd_status st = map ? fpd_ncf_movielens_map(&r, &t, &m, map, &mr, &err) : FPD_STATUS_NOMEM;
        int64_t nw = 0;
        if (!st && write_train) st = fpd_ncf_write_train(write_train, &r, map, &t, force, &nw, &err);
        fpd_ncf_interactions_free(&r);
        free(map);
        if (st) {
            cli_error("%s: %s", movielens, st == FPD_STATUS_NOMEM && !err.msg[0] ? "out of memory" : err.msg);
            goto done;
        }
        json_t *mj = ncf_map_report_json(&mr);
        if (write_train) {
            json_object_set_new(mj, "written", json_string(write_train));
            json_object_set_new(mj, "written_lines", json_integer(nw));
        }
        json_object_set_new(res, "movielens_map", mj);
    }

    if (train) {
        fpd_ncf_model_free(&m); /* fpd_ncf_finetune_file loads its own copy */
        cli_install_signals();
        tp.epoch_callback = print_epoch;
        tp.epoch_user_data = &verbose;
        struct fpd_ncf_finetune_report rep;
        if (fpd_ncf_finetune_file(ckpt, train, out, force, &tp, rating, negative, reference, &rep, &err)) {
            cli_error("%s", err.msg);
            goto done;
        }
        json_t *fj = ncf_finetune_report_json(&rep);
        json_object_set_new(fj, "output", json_string(out));
        json_object_set_new(res, "output", json_string(out)); /* the file written, as every tool's */
        json_object_set_new(fj, "rel_error_user", isfinite(rep.rel_error[0]) ? json_real(rep.rel_error[0]) : json_null());
        json_object_set_new(fj, "rel_error_item", isfinite(rep.rel_error[1]) ? json_real(rep.rel_error[1]) : json_null());
        cli_device_json(&dev, fj);
        json_object_set_new(res, "finetune", fj);
    }

    if (json) {
        json_dumpf(res, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
        fputc('\n', stdout);
    } else if (!quiet) {
        printf("checkpoint  %s\n", ckpt);
        if (vocab) printf("vocabulary  %s (ids looked up through it)\n", vocab);
        json_t *tab;
        size_t i;
        json_array_foreach(json_object_get(res, "tables"), i, tab) {
            const char *kind = json_string_value(json_object_get(tab, "kind"));
            printf("table       %-22s %-5s [%lld, %lld]", json_string_value(json_object_get(tab, "name")), kind,
                   (long long)json_integer_value(json_object_get(tab, "rows")),
                   (long long)json_integer_value(json_object_get(tab, "dim")));
            if (strcmp(kind, "fpd") == 0) {
                printf("  r=%lld p=%lld", (long long)json_integer_value(json_object_get(tab, "r")),
                       (long long)json_integer_value(json_object_get(tab, "p")));
                const json_int_t fc = json_integer_value(json_object_get(tab, "free_coords"));
                if (fc > 0) {
                    const char *fd = json_string_value(json_object_get(tab, "free_dtype"));
                    char mb[32];
                    printf(" c=%lld, E %s (in memory %s: %s with P)", (long long)fc, fd ? fd : "?",
                           json_is_true(json_object_get(tab, "free_stored")) ? "as stored" : "in F32",
                           cli_bytes((size_t)json_integer_value(json_object_get(tab, "free_memory_bytes")), mb,
                                     sizeof mb));
                }
                printf("  %.1fx smaller", json_real_value(json_object_get(tab, "ratio")));
            }
            else if (strcmp(kind, "dense") != 0)
                printf("  row-wise, read dequantized");
            printf("\n");
        }
        printf("test        %lld users, %lld candidates each\n", (long long)t.n, (long long)t.n_cand);
        printf("HR@10       %.4f\nNDCG@10     %.4f\n", met.hr10, met.ndcg10);
        json_t *mj = json_object_get(res, "movielens_map");
        if (mj) {
            printf("movielens   %lld ratings, %lld users, %lld items in %lld first-rater groups\n",
                   (long long)json_integer_value(json_object_get(mj, "ratings")),
                   (long long)json_integer_value(json_object_get(mj, "users")),
                   (long long)json_integer_value(json_object_get(mj, "items")),
                   (long long)json_integer_value(json_object_get(mj, "groups")));
            printf("  held-out items the user did not rate   %lld (0 expected)\n",
                   (long long)json_integer_value(json_object_get(mj, "test_unrated")));
            printf("  held-out ids outside their user groups %lld (0 expected)\n",
                   (long long)json_integer_value(json_object_get(mj, "test_out_of_group")));
            printf("  test negatives the user did rate       %lld of %lld\n",
                   (long long)json_integer_value(json_object_get(mj, "neg_rated")),
                   (long long)json_integer_value(json_object_get(mj, "neg_total")));
            printf("  ids left tied by the test files        %lld (%lld ratings), broken by %s\n",
                   (long long)json_integer_value(json_object_get(mj, "tied_ids")),
                   (long long)json_integer_value(json_object_get(mj, "tied_ratings")),
                   json_is_true(json_object_get(mj, "model_tiebreak")) ? "the checkpoint's scores" : "order");
            printf("  HR@10 on a training positive per user  %.4f (item ids shuffled: %.4f)\n",
                   json_real_value(json_object_get(mj, "hr10_train")),
                   json_real_value(json_object_get(mj, "hr10_train_shuffled")));
            printf("  training interactions                  %lld\n",
                   (long long)json_integer_value(json_object_get(mj, "train")));
            if (json_object_get(mj, "written"))
                printf("  written                                %s (%lld lines)\n",
                       json_string_value(json_object_get(mj, "written")),
                       (long long)json_integer_value(json_object_get(mj, "written_lines")));
        }
        json_t *fj = json_object_get(res, "finetune");
        if (fj) {
            json_t *b = json_object_get(fj, "before"), *a = json_object_get(fj, "after");
            const long long ep = (long long)json_integer_value(json_object_get(fj, "epochs"));
            printf("finetune    %lld positives, %lld epoch%s, %.1f s (%.2f s/epoch), final loss %.4f -> %s\n",
                   (long long)json_integer_value(json_object_get(fj, "positives")), ep, ep == 1 ? "" : "s",
                   json_real_value(json_object_get(fj, "seconds")),
                   json_real_value(json_object_get(fj, "seconds_per_epoch")),
                   json_real_value(json_object_get(fj, "final_loss")), out);
            printf("  HR@10     %.4f -> %.4f\n  NDCG@10   %.4f -> %.4f\n",
                   json_real_value(json_object_get(b, "hr10")), json_real_value(json_object_get(a, "hr10")),
                   json_real_value(json_object_get(b, "ndcg10")), json_real_value(json_object_get(a, "ndcg10")));
        }
    }
    rc = CLI_EXIT_OK;
done:
    json_decref(res);
    fpd_device_close(&dev);
    fpd_ncf_test_free(&t);
    fpd_ncf_model_free(&m);
    return rc;
}
