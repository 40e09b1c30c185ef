/*
 * train-gmf.c - train GMF (the generalized matrix factorization of NCF, He et al.,
 * WWW 2017) on MovieLens-1M from scratch, with dense embedding tables and with FPD
 * tables (fpd_init, then trained end to end through the cores), with the same
 * optimizer and schedule (Adam, logistic loss, 4 sampled negatives per positive;
 * fpd_gmf_train), and compare HR@10 / NDCG@10 and the time per epoch.
 *
 * Split (deterministic by --split-seed): ratings.tsv has no timestamps, so each
 * user's held-out item is one of the user's ratings drawn at random (not the
 * latest, as NCF does), and its 99 negatives are drawn among the items the user
 * never rated. Everything else is training data (implicit feedback: every rating
 * is a positive). The metrics are those of the last epoch (no selection on the
 * test set).
 *
 *   build/sample-train-gmf ../shared/data/movielens-1m/ratings.tsv --dim 64 --seeds 1,2,3
 *   build/sample-train-gmf RATINGS --epochs 1 --max-users 300 -o /tmp/gmf   # smoke run
 *
 * Writes (with -o PREFIX) PREFIX.dense.safetensors and PREFIX.fpd.safetensors (the
 * last seed's models; the FPD one is FPD v1 with fpd.table metadata, readable by
 * fpd-inspect and fpd-eval) and, with --write-test, the split's test set in NCF's
 * format (PREFIX.test.rating, PREFIX.test.negative) for fpd-eval.
 */
#include "formats/fpd-formats.h"
#include "heuristics/fpd-heuristics.h"
#include "lib/fpd.h"
#include "samples/sample-cli.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <locale.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------ command line */

/* This sample uses only the public headers and links only libfpd; its command-line
 * helpers are samples/sample-cli.h. */
/* --device: fpd_device_open, or "PROG: error: --device SPELLING: WHY" and exit 3;
 * the choice on stderr. */
static void open_device(const struct fpd_device *d, struct fpd_device_choice *out) {
    struct fpd_error err;
    memset(&err, 0, sizeof err);
    if (fpd_device_open(d, out, &err)) {
        char spell[32];
        cli_error("--device %s: %s", fpd_device_str(d, spell, sizeof spell), err.msg);
        exit(CLI_EXIT_BACKEND);
    }
    if (out->note[0]) fprintf(stderr, "%s: device: %s (auto: %s)\n", cli_prog, out->used, out->note);
    else fprintf(stderr, "%s: device: %s\n", cli_prog, out->used);
}

struct options {
    const char *ratings, *out;
    int64_t dim, epochs, batch, negatives, rank, terms, k, max_users, eval_every;
    int64_t free_coords;
    double free_init_scale;      /* --free-init-scale: E ~ N(0, S^2) at the start (0: E = 0) */
    bool free_init_given;
    double free_proj;            /* --free-proj: -1 fixed, 0 the cores' step, else P's step */
    bool free_proj_given;
    bool free_rowwise;           /* --free-dtype: E stored quantized (free-rowwise/1 or free-sym/1) */
    enum fpd_free_kind free_kind;
    bool free_qat;               /* --free-qat: E trains as stored (quantization-aware) */
    double lr, core_lr, init_scale;
    bool core_lr_relative, order_rows;
    uint64_t split_seed;
    uint64_t seeds[16];
    int n_seeds;
    bool dense, fpd, json, write_test;
    struct fpd_device device;    /* --device: where the FPD tables train */
    enum fpd_ncf_kind model;     /* --model: GMF (default), MLP or NeuMF */
    int64_t layers[FPD_NCF_MAX_LAYERS + 1]; /* --layers: MLP widths, layers[0] = 2 D_mlp */
    int n_layers;                /* entries of layers (L + 1)                        */
    size_t budget;               /* --budget: bytes of all FPD tables' cores, split  */
    double alpha;                /* by the data per row (fpd_budget_split)           */
    size_t share[4];             /* each table's share (bytes): mf user, mf item, mlp user,
                                    mlp item (GMF: the first two)                     */
    struct fpd_backend *backend; /* opened from it; NULL: the CPU */
};

static void usage(FILE *f) {
    fprintf(f,
            "Usage: sample-train-gmf RATINGS.tsv [options]\n"
            "Train GMF on MovieLens-1M with dense and with FPD embedding tables (same optimizer and\n"
            "schedule) and report HR@10 / NDCG@10 on a leave-one-out split and the time per epoch.\n"
            "\n"
            "  --model M         gmf (default), mlp or neumf: NCF's three models (He et al. 2017);\n"
            "                    (-o writes them under the NCF authors' tensor names, fpd-eval reads them)\n"
            "  --layers A,B,..   the MLP's widths (mlp, neumf; default 64,32,16,8 as NCF): input\n"
            "                    A = 2 x the MLP tables' dim, then the hidden layers\n"
            "  --dim D           embedding dimension of GMF (and NeuMF's GMF part) (default 64)\n"
            "  --tables T        dense, fpd or both (default both)\n"
            "  --rank R          FPD TT-rank (default 16)\n"
            "  --budget BYTES    instead of --rank: the FPD tables' cores share BYTES, split among\n"
            "                    the tables by the data per row (fpd_budget_split: a row seen c\n"
            "                    times in training is worth min(D, lambda c^alpha) parameters);\n"
            "                    each takes the largest rank that fits its share\n"
            "  --alpha A         the split's exponent (default 0.5; 0: by row count)\n"
            "  --terms P         FPD terms (default 1)\n"
            "  --cores K         FPD cores (default 3)\n"
            "  --epochs E        (default 20)\n"
            "  --batch B         samples per Adam step (default 256)\n"
            "  --negatives N     negatives per positive (default 4)\n"
            "  --lr X            Adam step (default 1e-3)\n"
            "  --core-lr X       Adam step of FPD cores (default: --lr)\n"
            "  --core-lr-relative  the core step is relative to each core's RMS at init\n"
            "  --order-rows      order each FPD table's ids from the training interactions\n"
            "                    first (fpd_row_order_interactions; the permutation's 4 bytes\n"
            "                    a row count in the ratio)\n"
            "  --free-coords C   C free coordinates per row on top of each FPD table (row i =\n"
            "                    FPD(i) + E[i] P; E = 0 and P with orthonormal rows, the same\n"
            "                    in both tables, at the start; C (N + D) parameters a table,\n"
            "                    counted in the ratio) (default 0)\n"
            "  --free-proj P     with --free-coords: P steps at the cores' step ('core', the\n"
            "                    default), not at all ('fixed'), or at the step P > 0\n"
            "  --free-init-scale S  with --free-coords: E starts ~ normal(0, S^2) instead of 0\n"
            "                    (fpd_gmf_train_params.free_init_scale; S >= 0, default 0)\n"
            "  --free-dtype T    with --free-coords: E stored as int8 or int4 rows after training\n"
            "                    (FBGEMM's fused row-wise layout, extension free-rowwise/1) or as\n"
            "                    int8-sym or int4-sym rows (one F16 scale a row, free-sym/1; trained\n"
            "                    in F32, rounded once at the end: the metrics and the file are\n"
            "                    those of the stored E, the F32 ones are printed beside; the ratio\n"
            "                    counts E's bytes / 4 as parameters) (default f32)\n"
            "  --free-qat        with --free-dtype: train E as it will be stored (quantization-\n"
            "                    aware training, straight-through: the stored model is the one\n"
            "                    trained; the F32 metrics beside it are the unrounded E's)\n"
            "  --init-scale S    tables start as normal(0, S^2) (default 0.01, as NCF)\n"
            "  --seeds A,B,..    training seeds, one run each (default 1)\n"
            "  --split-seed S    seed of the held-out items and negatives (default 1)\n"
            "  --max-users N     only the first N users (a quick run)\n"
            "  --eval-every E    evaluate every E epochs (default 1; the last is always evaluated)\n"
            "  -o PREFIX         write PREFIX.dense.safetensors, PREFIX.fpd.safetensors\n"
            "  --write-test      also write the split in NCF's format (0-based ids): PREFIX.test.rating,\n"
            "                    PREFIX.test.negative (fpd-eval --ncf) and PREFIX.train.rating (the\n"
            "                    training positives: fpd-eval --finetune)\n"
            "  --json            print the summary as JSON\n"
            "  --device D        where the FPD tables train: auto (default; CUDA when its backend\n"
            "                    loads and has a device, else the CPU), cpu, cuda[:N]; 3 when cuda\n"
            "                    is asked for and unavailable\n"
            "  -h, --help, --version\n");
}

/* ------------------------------------------------------------------ split */

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* One file of --write-test, written to PATH.tmp-PID and renamed (no partial file). */
static bool write_split_file(const struct fpd_ncf_split *sp, const char *path, int which) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp-%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) {
        cli_error("%s: %s", tmp, strerror(errno));
        return false;
    }
    if (which == 2) { /* the training positives, as NCF's train.rating (fpd-eval --finetune reads it) */
        for (int64_t q = 0; q < sp->n_train; q++)
            fprintf(f, "%lld\t%lld\t5\t0\n", (long long)sp->train_users[q], (long long)sp->train_items[q]);
    } else { /* the held-out item (test.rating), or it and its negatives (test.negative) */
        for (int64_t t = 0; t < sp->test.n; t++) {
            const int64_t *c = sp->test.cand + t * sp->test.n_cand;
            const long long u = (long long)sp->test.users[t];
            if (which == 0) fprintf(f, "%lld\t%lld\t5\t0\n", u, (long long)c[0]);
            else {
                fprintf(f, "(%lld,%lld)", u, (long long)c[0]);
                for (int64_t q = 1; q < sp->test.n_cand; q++) fprintf(f, "\t%lld", (long long)c[q]);
                fputc('\n', f);
            }
        }
    }
    bool ok = fflush(f) == 0 && !ferror(f);
    ok &= fclose(f) == 0;
    if (!ok || rename(tmp, path)) {
        cli_error("%s: %s", ok ? path : tmp, strerror(errno));
        remove(tmp);
        return false;
    }
    return true;
}

/* --write-test: PREFIX.test.rating, PREFIX.test.negative (NCF's format, 0-based ids)
 * and PREFIX.train.rating (every training positive of the split). */
static bool write_test(const struct fpd_ncf_split *sp, const char *prefix) {
    static const char *const ext[3] = {"test.rating", "test.negative", "train.rating"};
    for (int w = 0; w < 3; w++) {
        char path[4096];
        snprintf(path, sizeof path, "%s.%s", prefix, ext[w]);
        if (!write_split_file(sp, path, w)) return false;
    }
    return true;
}

/* ------------------------------------------------------------------ runs */

struct run {
    const char *kind;
    uint64_t seed;
    int64_t params;
    double ratio, hr, ndcg, best_hr, sec_per_epoch, loss;
    double hr_f32, ndcg_f32;      /* --free-dtype: before E was rounded; NAN otherwise */
    int64_t best_epoch, epochs;
};

struct epoch_ctx {
    const struct options *o;
    struct fpd_ncf_model *m;      /* GMF, or NULL and net */
    const struct fpd_ncf *net;    /* MLP, NeuMF */
    const struct fpd_ncf_split *sp;
    struct run *run;
    double train_seconds;
    struct fpd_layer *const *layers; /* the FPD tables (NULL entries: dense) */
    int n_layers;
};

/* HR@10 and NDCG@10 of the model now on the test split; false (printed) on failure. */
static bool evaluate(const struct epoch_ctx *c, struct fpd_ncf_metrics *mt) {
    struct fpd_error err;
    struct fpd_rank_metrics rm;
    enum fpd_status st = c->m ? fpd_ncf_model_eval(c->m, &c->sp->test, mt, &err)
                              : fpd_ncf_rank(c->net, c->sp->test.users, c->sp->test.cand, c->sp->test.n,
                                             c->sp->test.n_cand, 10, &rm, NULL, &err);
    if (st) {
        cli_error("evaluation: %s", err.msg);
        return false;
    }
    if (!c->m) {
        mt->hr10 = rm.hr;
        mt->ndcg10 = rm.ndcg;
    }
    return true;
}

/* --free-qat: the metrics of the model as it will be stored (E of each FPD table
 * rounded as --free-dtype stores it, then put back: training goes on with the F32 E). */
static bool evaluate_stored(const struct epoch_ctx *c, struct fpd_ncf_metrics *mt) {
    float *keep[4] = {0}; /* n_layers <= 4: user, item (and MLP user, item) */
    struct fpd_error err;
    bool ok = true;
    for (int i = 0; ok && i < c->n_layers; i++) {
        struct fpd_layer *l = c->layers[i];
        const int64_t fc = l ? fpd_layer_get_free_coords(l) : 0;
        if (fc == 0) continue;
        const size_t bytes = (size_t)(fpd_layer_get_shape(l)->rows * fc) * sizeof(float);
        if (!(keep[i] = malloc(bytes))) {
            cli_error("out of memory for a copy of E");
            ok = false;
            break;
        }
        memcpy(keep[i], fpd_layer_get_free_e_const(l), bytes);
        if (fpd_layer_quantize_free(l, c->o->free_kind, &err)) {
            cli_error("table %d: %s", i, err.msg);
            ok = false;
        }
    }
    ok = ok && evaluate(c, mt);
    for (int i = 0; i < c->n_layers; i++)
        if (keep[i]) {
            struct fpd_layer *l = c->layers[i];
            memcpy(fpd_layer_get_free_e(l), keep[i],
                   (size_t)(fpd_layer_get_shape(l)->rows * fpd_layer_get_free_coords(l)) * sizeof(float));
            free(keep[i]);
        }
    return ok;
}

/* The parameters of a table's free coordinates, as the ratio counts them: c (N + D),
 * or with --free-dtype their stored bytes over 4 (E's row-wise rows, P in F32). */
static int64_t free_params(const struct options *o, int64_t rows, int64_t dim) {
    const size_t bytes = fpd_free_coords_bytes(rows, dim, o->free_coords, FPD_DTYPE_F32, o->free_rowwise, o->free_kind);
    return (int64_t)((bytes + sizeof(float) - 1) / sizeof(float)); /* F32: exactly c (rows + dim) */
}

/* --free-dtype: round E of each FPD table to its stored rows (fpd_layer_quantize_free)
 * and evaluate again, so the metrics reported (and the file written) are the stored
 * model's; the F32 metrics before go to hr_f32 / ndcg_f32 (with --free-qat the epochs
 * measured the stored model already: the F32 E is measured here first). */
static bool store_free(const struct epoch_ctx *c, struct fpd_layer *const *layers, int n) {
    struct fpd_error err;
    /* the last epoch measured the F32 E, or with --free-qat the stored model already
     * (evaluate_stored): then the F32 E is measured now, before rounding */
    struct fpd_ncf_metrics f32 = {.hr10 = c->run->hr, .ndcg10 = c->run->ndcg}, mt = f32;
    if (c->o->free_qat && !evaluate(c, &f32)) return false;
    for (int i = 0; i < n; i++)
        if (layers[i] && fpd_layer_get_free_coords(layers[i]) > 0 &&
            fpd_layer_quantize_free(layers[i], c->o->free_kind, &err)) {
            cli_error("table %d: %s", i, err.msg);
            return false;
        }
    if (!c->o->free_qat && !evaluate(c, &mt)) return false;
    c->run->hr_f32 = f32.hr10;
    c->run->ndcg_f32 = f32.ndcg10;
    c->run->hr = mt.hr10;
    c->run->ndcg = mt.ndcg10;
    fprintf(stderr, "  %-5s seed %llu E stored as %s: HR@10 %.4f  NDCG@10 %.4f  (F32 %.4f, %.4f)\n", c->run->kind,
            (unsigned long long)c->run->seed, fpd_free_kind_name(c->o->free_kind), mt.hr10, mt.ndcg10, f32.hr10,
            f32.ndcg10);
    return true;
}

static bool on_epoch(int64_t epoch, double loss, double seconds, void *ud) {
    struct epoch_ctx *c = ud;
    c->train_seconds += seconds;
    c->run->epochs = epoch;
    c->run->loss = loss;
    bool last = epoch == c->o->epochs;
    if (last || (c->o->eval_every > 0 && epoch % c->o->eval_every == 0)) {
        struct fpd_ncf_metrics mt;
        if (!(c->o->free_qat ? evaluate_stored(c, &mt) : evaluate(c, &mt))) return false;
        c->run->hr = mt.hr10;
        c->run->ndcg = mt.ndcg10;
        if (mt.hr10 > c->run->best_hr) {
            c->run->best_hr = mt.hr10;
            c->run->best_epoch = epoch;
        }
        char tag[48] = "";
        if (c->o->free_qat) snprintf(tag, sizeof tag, "  (E as stored: %s)", fpd_free_kind_name(c->o->free_kind));
        fprintf(stderr, "  %-5s seed %llu epoch %3lld  loss %.4f  %6.2f s  HR@10 %.4f  NDCG@10 %.4f%s\n",
                c->run->kind, (unsigned long long)c->run->seed, (long long)epoch, loss, seconds, mt.hr10, mt.ndcg10,
                tag);
    } else {
        fprintf(stderr, "  %-5s seed %llu epoch %3lld  loss %.4f  %6.2f s\n", c->run->kind,
                (unsigned long long)c->run->seed, (long long)epoch, loss, seconds);
    }
    return !cli_interrupted();
}

/* The FPD shape of a table: the heuristic's shapes for (rows, dim) with the
 * requested r, p, k. */
static enum fpd_status fpd_shape_dim(const struct options *o, int64_t rows, int64_t dim, size_t share,
                                     struct fpd_layer_shape *s, struct fpd_error *err) {
    struct fpd_plan_params pp = fpd_plan_default_params();
    pp.rank = share ? 0 : o->rank; /* --budget: the largest rank whose cores fit the share */
    pp.budget_bytes = share;
    pp.terms = o->terms;
    pp.k = (int32_t)o->k;
    pp.min_rows = 1;
    pp.min_ratio = 0.0;
    struct fpd_plan plan;
    enum fpd_status st = fpd_plan_table(rows, dim, FPD_DTYPE_F32, &pp, &plan, err);
    if (!st) *s = plan.shape;
    return st;
}

/* x[0..n) from normal(0, scale^2) (Box-Muller pairs) */
static void fill_normal(float *x, int64_t n, double scale, uint64_t *rng) {
    for (int64_t q = 0; q < n; q += 2) {
        double u1 = ((double)(rng_next(rng) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
        double u2 = (double)(rng_next(rng) >> 11) * (1.0 / 9007199254740992.0);
        double rad = sqrt(-2.0 * log(u1));
        x[q] = (float)(scale * rad * cos(6.283185307179586 * u2));
        if (q + 1 < n) x[q + 1] = (float)(scale * rad * sin(6.283185307179586 * u2));
    }
}

/* The training parameters of both trainers from the options. */
static struct fpd_gmf_train_params train_params(const struct options *o, bool fpd, uint64_t seed) {
    struct fpd_gmf_train_params tp = fpd_gmf_train_default_params();
    tp.epochs = o->epochs;
    tp.batch_size = o->batch;
    tp.negatives = o->negatives;
    tp.learning_rate = o->lr;
    tp.core_learning_rate = o->core_lr;
    tp.core_lr_relative = o->core_lr_relative;
    tp.order_rows = o->order_rows;
    if (fpd) {
        tp.free_coords = o->free_coords;
        tp.free_init_scale = o->free_init_scale;
        tp.free_proj_learning_rate = o->free_proj > 0.0 ? o->free_proj : 0.0;
        tp.free_proj_fixed = o->free_proj < 0.0;
        tp.free_qat = o->free_qat;
        tp.free_qat_kind = o->free_kind;
    }
    tp.seed = seed;
    tp.backend = o->backend;
    return tp;
}

/* MLP or NeuMF (fpd_ncf_train) with dense or FPD tables: NCF's initialization
 * (tables normal(0, init_scale^2), layers Glorot, prediction LeCun), trained,
 * evaluated and written (-o) as GMF is. */
static int train_ncf_one(const struct options *o, const struct fpd_ncf_split *sp, bool fpd, uint64_t seed, struct run *run) {
    struct fpd_error err = {0};
    memset(run, 0, sizeof *run);
    run->hr_f32 = run->ndcg_f32 = NAN;
    run->kind = fpd ? "fpd" : "dense";
    run->seed = seed;
    struct fpd_ncf m;
    memset(&m, 0, sizeof m);
    m.kind = o->model;
    m.n_layers = o->n_layers - 1;
    for (int l = 0; l < o->n_layers; l++) m.layer_dim[l] = o->layers[l];
    struct fpd_embedding *tabs[4] = {&m.mf_user, &m.mf_item, &m.mlp_user, &m.mlp_item};
    bool used[4] = {o->model != FPD_NCF_KIND_MLP, o->model != FPD_NCF_KIND_MLP, true, true};
    float *mem[4 + 2 * FPD_NCF_MAX_LAYERS + 1] = {0};
    struct fpd_layer *lay[4] = {0};
    uint64_t rng = seed * 0x9E3779B97F4A7C15ull + 0x1234567ull;
    int64_t params = 0, dense_params = 0;
    int rc = 1;
    for (int q = 0; q < 4; q++) {
        if (!used[q]) continue;
        const int64_t rows = q & 1 ? sp->n_items : sp->n_users, dim = q < 2 ? o->dim : o->layers[0] / 2;
        *tabs[q] = (struct fpd_embedding){.rows = rows, .dim = dim};
        dense_params += rows * dim;
        if (fpd) {
            struct fpd_layer_shape s;
            struct fpd_init_params ip = {FPD_INIT_KIND_NORMAL, o->init_scale, seed * 4 + (uint64_t)q};
            if (fpd_shape_dim(o, rows, dim, o->share[q], &s, &err) || fpd_init(&s, &ip, &lay[q], &err)) {
                cli_error("FPD table %d: %s", q, err.msg);
                goto done;
            }
            tabs[q]->layer = lay[q];
            params += fpd_layer_shape_params(fpd_layer_get_shape(lay[q])) + (o->order_rows ? rows : 0) +
                      free_params(o, rows, dim);
        } else {
            if (!(mem[q] = fpd_malloc((size_t)(rows * dim) * sizeof(float)))) goto oom;
            fill_normal(mem[q], rows * dim, o->init_scale, &rng);
            tabs[q]->dense = mem[q];
            params += rows * dim;
        }
    }
    int64_t other = 1;
    for (int32_t l = 0; l < m.n_layers; l++) {
        const int64_t in = m.layer_dim[l], out = m.layer_dim[l + 1];
        if (!(m.layer_weight[l] = mem[4 + 2 * l] = fpd_malloc((size_t)(in * out) * sizeof(float))) ||
            !(m.layer_bias[l] = mem[5 + 2 * l] = fpd_malloc((size_t)out * sizeof(float))))
            goto oom;
        other += out * (in + 1);
    }
    const int64_t pd = fpd_ncf_predict_dim(&m);
    if (!(m.weight = mem[4 + 2 * FPD_NCF_MAX_LAYERS] = fpd_malloc((size_t)pd * sizeof(float)))) goto oom;
    other += pd;
    if (fpd_ncf_init_dense(&m, seed, &err)) {
        cli_error("%s", err.msg);
        goto done;
    }
    run->params = params + other;
    run->ratio = (double)(dense_params + other) / (double)(params + other);
    struct fpd_gmf_train_params tp = train_params(o, fpd, seed);
    struct epoch_ctx ec = {o, NULL, &m, sp, run, 0.0, lay, 4};
    tp.epoch_callback = on_epoch;
    tp.epoch_user_data = &ec;
    if (fpd_ncf_train(&m, sp->train_users, sp->train_items, sp->n_train, &tp, NULL, &err)) {
        cli_error("training: %s", err.msg);
        goto done;
    }
    if (cli_interrupted()) goto done;
    run->sec_per_epoch = run->epochs ? ec.train_seconds / (double)run->epochs : 0.0;
    if (fpd && o->free_rowwise && !store_free(&ec, lay, 4)) goto done;
    if (o->out) {
        struct fpd_ncf_model cm;
        enum fpd_status st = fpd_ncf_model_init_net(&cm, &m, &err); /* takes the tables, layers and weight */
        memset(mem, 0, sizeof mem);
        memset(lay, 0, sizeof lay);
        char path[4096];
        snprintf(path, sizeof path, "%s.%s.safetensors", o->out, run->kind);
        for (int i = 0; i < cm.n_tables; i++) {
            snprintf(cm.meta[i].fit, sizeof cm.meta[i].fit, "init+%s", o->model == FPD_NCF_KIND_MLP ? "mlp" : "neumf");
            cm.meta[i].seed = seed;
            cm.meta[i].rel_error = NAN;
            cm.meta[i].free_rowwise = o->free_rowwise;
            cm.meta[i].free_kind = o->free_kind;
        }
        if (st || (st = fpd_ncf_model_save(&cm, path, true, &err))) {
            cli_error("%s", err.msg);
            fpd_ncf_model_free(&cm);
            goto done;
        }
        fpd_ncf_model_free(&cm);
    }
    rc = 0;
    goto done;
oom:
    cli_error("out of memory");
done:
    for (int q = 0; q < 4; q++) fpd_layer_free(lay[q]);
    for (size_t q = 0; q < sizeof mem / sizeof *mem; q++) fpd_free(mem[q]);
    return rc;
}

/* --budget: the FPD tables' shares (o->share) by the data per row of the training
 * split (fpd_budget_split over the model's tables); printed on stderr. */
static int split_budget(struct options *o, const struct fpd_ncf_split *sp) {
    double *cnt[2] = {calloc((size_t)sp->n_users, sizeof(double)), calloc((size_t)sp->n_items, sizeof(double))};
    int rc = 1;
    if (!cnt[0] || !cnt[1]) {
        cli_error("out of memory");
        goto done;
    }
    for (int64_t t = 0; t < sp->n_train; t++) {
        cnt[0][sp->train_users[t]] += 1.0;
        cnt[1][sp->train_items[t]] += 1.0;
    }
    struct fpd_budget_table bt[4];
    int slot[4], n = 0;
    for (int q = 0; q < 4; q++) {
        bool used = o->model == FPD_NCF_KIND_GMF ? q < 2 : o->model == FPD_NCF_KIND_MLP ? q >= 2 : true;
        if (!used) continue;
        const int64_t dim = q < 2 ? o->dim : o->layers[0] / 2;
        bt[n] = (struct fpd_budget_table){q & 1 ? sp->n_items : sp->n_users, dim, cnt[q & 1]};
        slot[n++] = q;
    }
    double share[4];
    struct fpd_error err;
    if (fpd_budget_split(bt, n, (double)o->budget / sizeof(float), o->alpha, share, &err)) {
        cli_error("--budget: %s", err.msg);
        goto done;
    }
    static const char *const names[4] = {"users", "items", "MLP users", "MLP items"};
    fprintf(stderr, "%s: --budget %zu bytes split by data per row (alpha %g):", cli_prog, o->budget, o->alpha);
    for (int j = 0; j < n; j++) { /* floor, past the split's rounding */
        o->share[slot[j]] = (size_t)floor(share[j] * sizeof(float) + 1e-3);
        fprintf(stderr, " %s %zu", names[o->model == FPD_NCF_KIND_MLP ? slot[j] - 2 : slot[j]], o->share[slot[j]]);
    }
    fprintf(stderr, "\n");
    rc = 0;
done:
    free(cnt[0]);
    free(cnt[1]);
    return rc;
}

static int train_one(const struct options *o, const struct fpd_ncf_split *sp, bool fpd, uint64_t seed, struct run *run) {
    if (o->model != FPD_NCF_KIND_GMF) return train_ncf_one(o, sp, fpd, seed, run);
    struct fpd_error err = {0};
    struct fpd_ncf_model m;
    memset(&m, 0, sizeof m);
    memset(run, 0, sizeof *run);
    run->hr_f32 = run->ndcg_f32 = NAN;
    run->kind = fpd ? "fpd" : "dense";
    run->seed = seed;
    const int64_t rows[2] = {sp->n_users, sp->n_items}, D = o->dim;
    float *dense[2] = {NULL, NULL};
    struct fpd_layer *layer[2] = {NULL, NULL};
    float *w = malloc((size_t)D * sizeof(float));
    uint64_t rng = seed * 0x9E3779B97F4A7C15ull + 0x1234567ull;
    int64_t params = D + 1;
    for (int i = 0; i < 2 && w; i++) {
        if (fpd) {
            struct fpd_layer_shape s;
            struct fpd_init_params ip = {FPD_INIT_KIND_NORMAL, o->init_scale, seed * 2 + (uint64_t)i};
            if (fpd_shape_dim(o, rows[i], D, o->share[i], &s, &err) || fpd_init(&s, &ip, &layer[i], &err)) {
                cli_error("FPD table %d: %s", i, err.msg);
                goto fail;
            }
            params += fpd_layer_shape_params(fpd_layer_get_shape(layer[i])) + (o->order_rows ? rows[i] : 0) +
                      free_params(o, rows[i], D);
        } else {
            dense[i] = fpd_malloc((size_t)(rows[i] * D) * sizeof(float)); /* owned by the model */
            if (!dense[i]) goto oom;
            fill_normal(dense[i], rows[i] * D, o->init_scale, &rng);
            params += rows[i] * D;
        }
    }
    if (!w) goto oom;
    /* prediction layer: lecun_uniform as NCF's Keras Dense(1), bias 0 */
    const double a = sqrt(3.0 / (double)D);
    for (int64_t j = 0; j < D; j++) w[j] = (float)(a * (2.0 * (double)(rng_next(&rng) >> 11) / 9007199254740992.0 - 1.0));
    if (fpd_ncf_model_init(&m, dense, layer, rows, D, w, 0.0f, &err)) {
        dense[0] = dense[1] = NULL;
        layer[0] = layer[1] = NULL;
        cli_error("%s", err.msg);
        goto fail;
    }
    dense[0] = dense[1] = NULL;
    layer[0] = layer[1] = NULL;
    run->params = params;
    run->ratio = (double)((rows[0] + rows[1]) * D + D + 1) / (double)params;
    struct fpd_gmf_train_params tp = train_params(o, fpd, seed);
    struct epoch_ctx ec = {o, &m, NULL, sp, run, 0.0, m.layer, 2};
    tp.epoch_callback = on_epoch;
    tp.epoch_user_data = &ec;
    if (fpd_gmf_train(&m.gmf, sp->train_users, sp->train_items, sp->n_train, &tp, NULL, &err)) {
        cli_error("training: %s", err.msg);
        goto fail;
    }
    if (cli_interrupted()) goto fail;
    run->sec_per_epoch = run->epochs ? ec.train_seconds / (double)run->epochs : 0.0;
    if (fpd && o->free_rowwise && !store_free(&ec, m.layer, 2)) goto fail;
    if (o->out) {
        char path[4096];
        snprintf(path, sizeof path, "%s.%s.safetensors", o->out, run->kind);
        for (int i = 0; i < 2; i++) {
            snprintf(m.meta[i].fit, sizeof m.meta[i].fit, "init+gmf");
            m.meta[i].seed = seed;
            m.meta[i].rel_error = NAN;
            m.meta[i].free_rowwise = o->free_rowwise;
            m.meta[i].free_kind = o->free_kind;
        }
        if (fpd_ncf_model_save(&m, path, true, &err)) {
            cli_error("%s", err.msg);
            goto fail;
        }
    }
    fpd_ncf_model_free(&m);
    free(w);
    return 0;
oom:
    cli_error("out of memory");
fail:
    for (int i = 0; i < 2; i++) {
        fpd_free(dense[i]);
        fpd_layer_free(layer[i]);
    }
    fpd_ncf_model_free(&m);
    free(w);
    return 1;
}

static void mean_sd(const struct run *r, int n, const char *kind, double *mean, double *sd, double *spe) {
    double s = 0, ss = 0, t = 0;
    int c = 0;
    for (int i = 0; i < n; i++)
        if (strcmp(r[i].kind, kind) == 0) {
            s += r[i].hr;
            ss += r[i].hr * r[i].hr;
            t += r[i].sec_per_epoch;
            c++;
        }
    *mean = c ? s / c : NAN;
    *sd = c > 1 ? sqrt(fmax(0.0, (ss - s * s / c) / (c - 1))) : 0.0;
    *spe = c ? t / c : NAN;
}

int main(int argc, char **argv) {
    cli_prog = "sample-train-gmf";
    setlocale(LC_NUMERIC, "C");
    struct options o = {0};
    o.dim = 64;
    o.epochs = 20;
    o.batch = 256;
    o.negatives = 4;
    o.rank = 16;
    o.terms = 1;
    o.k = 3;
    o.lr = 1e-3;
    o.init_scale = 0.01;
    o.split_seed = 1;
    o.seeds[0] = 1;
    o.n_seeds = 1;
    o.alpha = FPD_BUDGET_DEFAULT_ALPHA;
    o.n_layers = 4; /* NCF's MLP: 64 -> 32 -> 16 -> 8 */
    o.layers[0] = 64;
    o.layers[1] = 32;
    o.layers[2] = 16;
    o.layers[3] = 8;
    o.dense = o.fpd = true;
    o.eval_every = 1;
    enum { OPT_DIM = 256, OPT_TABLES, OPT_RANK, OPT_TERMS, OPT_CORES, OPT_EPOCHS, OPT_BATCH, OPT_NEG, OPT_LR,
           OPT_CORE_LR, OPT_CORE_REL, OPT_ORDER, OPT_FREE, OPT_FREE_INIT, OPT_FREE_PROJ, OPT_FREE_DTYPE, OPT_FREE_QAT, OPT_INIT, OPT_SEEDS, OPT_SPLIT, OPT_MAXU, OPT_EVAL, OPT_WTEST, OPT_JSON, OPT_DEVICE,
           OPT_MODEL, OPT_LAYERS, OPT_BUDGET, OPT_ALPHA, OPT_VERSION };
    static const struct option opts[] = {
        {"dim", required_argument, 0, OPT_DIM},         {"tables", required_argument, 0, OPT_TABLES},
        {"rank", required_argument, 0, OPT_RANK},       {"terms", required_argument, 0, OPT_TERMS},
        {"cores", required_argument, 0, OPT_CORES},     {"epochs", required_argument, 0, OPT_EPOCHS},
        {"batch", required_argument, 0, OPT_BATCH},     {"negatives", required_argument, 0, OPT_NEG},
        {"lr", required_argument, 0, OPT_LR},           {"core-lr", required_argument, 0, OPT_CORE_LR},
        {"core-lr-relative", no_argument, 0, OPT_CORE_REL}, {"init-scale", required_argument, 0, OPT_INIT},
        {"order-rows", no_argument, 0, OPT_ORDER},      {"free-coords", required_argument, 0, OPT_FREE},
        {"seeds", required_argument, 0, OPT_SEEDS},     {"split-seed", required_argument, 0, OPT_SPLIT},
        {"max-users", required_argument, 0, OPT_MAXU},  {"eval-every", required_argument, 0, OPT_EVAL},
        {"write-test", no_argument, 0, OPT_WTEST},      {"json", no_argument, 0, OPT_JSON},
        {"output", required_argument, 0, 'o'},          {"help", no_argument, 0, 'h'},
        {"device", required_argument, 0, OPT_DEVICE},
        {"model", required_argument, 0, OPT_MODEL},     {"layers", required_argument, 0, OPT_LAYERS},
        {"budget", required_argument, 0, OPT_BUDGET},   {"alpha", required_argument, 0, OPT_ALPHA},
        {"free-init-scale", required_argument, 0, OPT_FREE_INIT},
        {"free-proj", required_argument, 0, OPT_FREE_PROJ}, {"free-dtype", required_argument, 0, OPT_FREE_DTYPE},
        {"free-qat", no_argument, 0, OPT_FREE_QAT},     {"version", no_argument, 0, OPT_VERSION},
        {0, 0, 0, 0},
    };
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":o:h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_DIM: o.dim = cli_parse_i64("--dim", optarg, 1); break;
        case OPT_TABLES:
            o.dense = strcmp(optarg, "dense") == 0 || strcmp(optarg, "both") == 0;
            o.fpd = strcmp(optarg, "fpd") == 0 || strcmp(optarg, "both") == 0;
            if (!o.dense && !o.fpd) cli_usage_error("--tables must be dense, fpd or both, got '%s'", optarg);
            break;
        case OPT_RANK: o.rank = cli_parse_i64("--rank", optarg, 1); break;
        case OPT_TERMS: o.terms = cli_parse_i64("--terms", optarg, 1); break;
        case OPT_CORES: o.k = cli_parse_i64("--cores", optarg, 1); break;
        case OPT_EPOCHS: o.epochs = cli_parse_i64("--epochs", optarg, 1); break;
        case OPT_BATCH: o.batch = cli_parse_i64("--batch", optarg, 1); break;
        case OPT_NEG: o.negatives = cli_parse_i64("--negatives", optarg, 0); break;
        case OPT_LR: o.lr = cli_parse_pos("--lr", optarg); break;
        case OPT_CORE_LR: o.core_lr = cli_parse_pos("--core-lr", optarg); break;
        case OPT_CORE_REL: o.core_lr_relative = true; break;
        case OPT_ORDER: o.order_rows = true; break;
        case OPT_FREE: o.free_coords = cli_parse_i64("--free-coords", optarg, 0); break;
        case OPT_FREE_INIT:
            o.free_init_scale = cli_parse_f64("--free-init-scale", optarg, 0.0);
            o.free_init_given = true;
            break;
        case OPT_FREE_QAT: o.free_qat = true; break;
        case OPT_FREE_DTYPE:
            if (strcmp(optarg, "f32") == 0 || strcmp(optarg, "core") == 0) o.free_rowwise = false;
            else if (fpd_free_kind_from_name(optarg, &o.free_kind)) o.free_rowwise = true;
            else cli_usage_error("--free-dtype must be f32 (or core), int8, int4, int8-sym or int4-sym, got '%s'", optarg);
            break;
        case OPT_FREE_PROJ:
            o.free_proj_given = true;
            o.free_proj = cli_parse_free_proj("--free-proj", optarg);
            break;
        case OPT_INIT: o.init_scale = cli_parse_pos("--init-scale", optarg); break;
        case OPT_SEEDS: {
            o.n_seeds = 0;
            char *s = optarg;
            while (*s && o.n_seeds < 16) {
                char *end;
                unsigned long long v = strtoull(s, &end, 10);
                if (end == s) cli_usage_error("--seeds expects numbers separated by commas, got '%s'", optarg);
                o.seeds[o.n_seeds++] = v;
                s = *end == ',' ? end + 1 : end;
                if (*end && *end != ',') cli_usage_error("--seeds expects numbers separated by commas, got '%s'", optarg);
            }
            if (o.n_seeds == 0) cli_usage_error("--seeds needs at least one seed");
            break;
        }
        case OPT_SPLIT: o.split_seed = (uint64_t)cli_parse_i64("--split-seed", optarg, 0); break;
        case OPT_MAXU: o.max_users = cli_parse_i64("--max-users", optarg, 1); break;
        case OPT_BUDGET: {
            uint64_t b;
            if (!fpd_size_parse(optarg, &b) || b < 1 || b > SIZE_MAX)
                cli_usage_error("--budget expects a size in bytes (suffixes K M G or KiB MiB GiB), got '%s'", optarg);
            o.budget = (size_t)b;
            break;
        }
        case OPT_ALPHA: o.alpha = cli_parse_f64("--alpha", optarg, 0.0); break;
        case OPT_EVAL: o.eval_every = cli_parse_i64("--eval-every", optarg, 0); break;
        case OPT_WTEST: o.write_test = true; break;
        case OPT_JSON: o.json = true; break;
        case OPT_DEVICE:
            if (!fpd_device_parse(optarg, &o.device))
                cli_usage_error("--device must be auto, cpu, cuda or cuda:N, got '%s'", optarg);
            break;
        case OPT_MODEL:
            if (!strcmp(optarg, "gmf")) o.model = FPD_NCF_KIND_GMF;
            else if (!strcmp(optarg, "mlp")) o.model = FPD_NCF_KIND_MLP;
            else if (!strcmp(optarg, "neumf")) o.model = FPD_NCF_KIND_NEUMF;
            else cli_usage_error("--model must be gmf, mlp or neumf, got '%s'", optarg);
            break;
        case OPT_LAYERS: {
            o.n_layers = 0;
            for (char *q = optarg; *q;) {
                char *end;
                long long v = strtoll(q, &end, 10);
                if (end == q || v < 1 || v > 4096 || (*end && *end != ',') || o.n_layers > FPD_NCF_MAX_LAYERS)
                    cli_usage_error("--layers expects 2 to %d widths in 1..4096 separated by commas, got '%s'",
                                    FPD_NCF_MAX_LAYERS + 1, optarg);
                o.layers[o.n_layers++] = v;
                q = *end ? end + 1 : end;
            }
            if (o.n_layers < 2 || o.layers[0] % 2)
                cli_usage_error("--layers needs an even input width and at least one hidden layer, got '%s'", optarg);
            break;
        }
        case 'o': o.out = optarg; break;
        case 'h': usage(stdout); return CLI_EXIT_OK;
        case OPT_VERSION: printf("sample-train-gmf %s (%s)\n", fpd_version(), fpd_build_features()); return CLI_EXIT_OK;
        case ':': cli_usage_error("option '%s' needs a value", argv[optind - 1]);
        default: cli_usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc) cli_usage_error("no ratings file given");
    if (optind + 1 < argc) cli_usage_error("one ratings file expected, got '%s' too", argv[optind + 1]);
    if (o.write_test && !o.out) cli_usage_error("--write-test needs -o PREFIX");
    if (o.free_coords > o.dim) cli_usage_error("--free-coords must be at most --dim (%lld)", (long long)o.dim);
    if (o.free_init_given && o.free_coords == 0)
        cli_usage_error("--free-init-scale sets how the free coordinates start; it goes with --free-coords C (C >= 1)");
    if (o.free_proj_given && o.free_coords == 0)
        cli_usage_error("--free-proj sets how the free coordinates' P steps; it goes with --free-coords C (C >= 1)");
    if (o.free_qat && (!o.free_rowwise || o.free_coords == 0 || !o.fpd))
        cli_usage_error("--free-qat trains the free coordinates' E of FPD tables as it is stored: it needs --tables "
                        "fpd (or both), --free-coords C and --free-dtype int8, int4, int8-sym or int4-sym%s",
                        o.free_rowwise || o.free_coords == 0 ? "" : " (f32 E has nothing to round)");
    if (o.free_rowwise && o.free_coords == 0)
        cli_usage_error("--free-dtype %s stores the free coordinates' E; it goes with --free-coords C (C >= 1)",
                        fpd_free_kind_name(o.free_kind));
    if (o.batch < 1 + o.negatives) cli_usage_error("--batch must be at least 1 + --negatives");
    o.ratings = argv[optind];
    /* the device of the FPD tables' engines (dense tables train on the host) */
    struct fpd_device_choice dev;
    struct fpd_device want = o.device;
    if (!o.fpd && want.request == FPD_DEVICE_REQUEST_AUTO) want.request = FPD_DEVICE_REQUEST_CPU;
    open_device(&want, &dev);
    o.backend = dev.backend;
    cli_install_signals();

    struct fpd_error err = {0};
    struct fpd_ncf_interactions r;
    struct fpd_ncf_split sp;
    memset(&sp, 0, sizeof sp);
    int rc = CLI_EXIT_FAILURE;
    struct run runs[32];
    int n_runs = 0;
    if (fpd_ncf_interactions_load(o.ratings, 1, &r, &err)) {
        cli_error("%s", err.msg);
        fpd_ncf_interactions_free(&r);
        fpd_device_close(&dev);
        return CLI_EXIT_FAILURE;
    }
    if (fpd_ncf_split_leave_one_out(&r, o.max_users, o.split_seed, 99, &sp, &err)) {
        cli_error("%s: %s", o.ratings, err.msg);
        goto done;
    }
    fprintf(stderr, "%s: %lld users, %lld items, %lld training positives, %lld test users (split seed %llu)\n",
            cli_prog, (long long)sp.n_users, (long long)sp.n_items, (long long)sp.n_train, (long long)sp.test.n,
            (unsigned long long)o.split_seed);
    if (o.write_test && !write_test(&sp, o.out)) goto done;
    if (o.budget && o.fpd && split_budget(&o, &sp)) goto done;
    for (int s = 0; s < o.n_seeds; s++)
        for (int f = 0; f < 2; f++) {
            if ((f == 0 && !o.dense) || (f == 1 && !o.fpd)) continue;
            if (train_one(&o, &sp, f == 1, o.seeds[s], &runs[n_runs])) goto done;
            n_runs++;
        }
    double md, sd, td, mf, sf, tf;
    mean_sd(runs, n_runs, "dense", &md, &sd, &td);
    mean_sd(runs, n_runs, "fpd", &mf, &sf, &tf);
    if (o.json) {
        json_t *a = json_array();
        for (int i = 0; i < n_runs; i++)
            json_array_append_new(
                a, json_pack("{s:s, s:I, s:I, s:f, s:f, s:f, s:f, s:I, s:f, s:f, s:o, s:o}", "tables", runs[i].kind,
                             "seed", (json_int_t)runs[i].seed, "params", (json_int_t)runs[i].params, "ratio",
                             runs[i].ratio, "hr10", runs[i].hr, "ndcg10", runs[i].ndcg, "best_hr10", runs[i].best_hr,
                             "best_epoch", (json_int_t)runs[i].best_epoch, "seconds_per_epoch",
                             runs[i].sec_per_epoch, "final_loss", runs[i].loss, "hr10_f32",
                             isnan(runs[i].hr_f32) ? json_null() : json_real(runs[i].hr_f32), "ndcg10_f32",
                             isnan(runs[i].ndcg_f32) ? json_null() : json_real(runs[i].ndcg_f32)));
        json_t *res = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o}", "schema", "sample-train-gmf/1", "dim",
                                (json_int_t)o.dim, "rank", (json_int_t)o.rank, "terms", (json_int_t)o.terms,
                                "epochs", (json_int_t)o.epochs, "users", (json_int_t)sp.n_users, "items",
                                (json_int_t)sp.n_items, "train", (json_int_t)sp.n_train, "runs", a);
        static const char *const model_names[FPD_NCF_KIND_COUNT] = {"gmf", "mlp", "neumf"};
        json_object_set_new(res, "model", json_string(model_names[o.model]));
        json_object_set_new(res, "free_coords", json_integer(o.free_coords));
        json_object_set_new(res, "free_qat", json_boolean(o.free_qat));
        /* what the FPD runs' best_hr10 measured: E in F32 each epoch, unless trained as stored */
        json_object_set_new(res, "best_hr10_free_dtype",
                            o.free_coords == 0 ? json_null()
                            : json_string(o.free_rowwise && o.free_qat ? fpd_free_kind_name(o.free_kind) : "F32"));
        json_object_set_new(res, "free_dtype", o.free_coords == 0 ? json_null()
                                               : json_string(o.free_rowwise ? fpd_free_kind_name(o.free_kind) : "F32"));
        if (o.model != FPD_NCF_KIND_GMF) {
            json_t *ls = json_array();
            for (int l = 0; l < o.n_layers; l++) json_array_append_new(ls, json_integer(o.layers[l]));
            json_object_set_new(res, "layers", ls);
        }
        json_object_set_new(res, "device", json_string(dev.used));
        json_object_set_new(res, "device_requested", json_string(dev.requested));
        if (dev.note[0]) json_object_set_new(res, "device_note", json_string(dev.note));
        json_dumpf(res, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
        fputc('\n', stdout);
        json_decref(res);
    } else {
        printf("%-6s %6s %10s %8s %8s %8s %10s %8s\n", "tables", "seed", "params", "ratio", "HR@10", "NDCG@10",
               "best HR", "s/epoch");
        for (int i = 0; i < n_runs; i++)
            printf("%-6s %6llu %10lld %7.1fx %8.4f %8.4f %6.4f@%-3lld %8.2f\n", runs[i].kind,
                   (unsigned long long)runs[i].seed, (long long)runs[i].params, runs[i].ratio, runs[i].hr,
                   runs[i].ndcg, runs[i].best_hr, (long long)runs[i].best_epoch, runs[i].sec_per_epoch);
        if (o.fpd && o.free_rowwise && o.free_coords > 0 && !o.free_qat)
            printf("(fpd: HR@10 and NDCG@10 are of E stored as %s, rounded once after training, and the ratio "
                   "counts its bytes (params: the bytes / 4); best HR is of the epochs' F32 E; with --free-qat "
                   "every epoch is measured as stored)\n",
                   fpd_free_kind_name(o.free_kind));
        if (o.dense) printf("dense  HR@10 mean %.4f sd %.4f  (%.2f s/epoch)\n", md, sd, td);
        if (o.fpd) printf("fpd    HR@10 mean %.4f sd %.4f  (%.2f s/epoch)\n", mf, sf, tf);
        if (o.dense && o.fpd) printf("fpd - dense: %+.4f\n", mf - md);
    }
    rc = CLI_EXIT_OK;
done:
    fpd_device_close(&dev);
    fpd_ncf_interactions_free(&r);
    fpd_ncf_split_free(&sp);
    return rc;
}
