/*
 * compare-sizes.c - equal-size comparison of ways to shrink the embedding tables
 * of a recommender: for a parameter budget (the dense D = 64 tables made 4, 10, 30,
 * 100 times smaller), the same trainer (fpd_gmf_train: lazy Adam, same epochs,
 * batch, learning rate, seeds) trains each method, and the test metrics are
 * compared:
 *
 *   dense        a dense table of a smaller dimension d = floor(D / ratio)
 *   int8, int4   a dense table of the largest d <= D whose row-wise quantized form
 *                (fpd_rowwise: FBGEMM's fused layout, as fpd-compress -e int8/int4
 *                stores it: d + 8 or ceil(d / 2) + 4 bytes a row) fits the budget;
 *                trained in F32 by the same trainer, then quantized (post-training,
 *                as a user of fpd-compress would) and tested quantized. Training holds
 *                the F32 table (d floats a row), which the other methods never do: the
 *                budget is the deployed size here, not the training memory
 *   hash         the hashing trick: floor(budget / D) shared rows of dimension D
 *   qr           the quotient-remainder trick (Shi et al. 2020): Q[i / m] * R[i mod m]
 *   qr-ordered   the same over ids ordered from the training interactions as FPD's
 *                (fpd_composed_set_row_perm: the order of a two-core layer whose
 *                digits are quotient and remainder), so that ids sharing Q's or R's
 *                row are alike; its permutation is counted as fpd-ordered's (I32 a
 *                row, or nothing with --order-cost vocabulary)
 *   fpd          an FPD layer (k cores, the largest TT-rank within the budget), ids
 *                in their given (arbitrary) order
 *   fpd-ordered  the same with the ids ordered from the training interactions first
 *                (fpd_row_order_interactions); the permutation is counted as the
 *                format stores it, T.fpd.row_perm: 4 bytes a row (I32; 8 when the
 *                padded row count exceeds INT32_MAX); with --order-cost vocabulary
 *                nothing: the order is folded into the id vocabulary the data
 *                pipeline keeps anyway (raw id -> row; fpd-convert --vocabulary-out),
 *                and the layer stores no permutation
 *   fpd-free     fpd-ordered plus c per-row free coordinates (row i = FPD(i) + E[i] P,
 *                E [rows, c], P [c, D]; fpd_gmf_train_params.free_coords): c is the
 *                largest count whose E and P take at most --free-share (default 0.5)
 *                of each table's budget (one c for both tables, the smaller), the
 *                cores get the rest; where c = 0 it is fpd-ordered and not run again.
 *                P has orthonormal rows, the same in both tables; it steps at the
 *                cores' step (--free-proj core) or stays fixed (--free-proj fixed).
 *                --free-dtype int8|int4|int8-sym|int4-sym: E is sized as its stored
 *                rows and quantized after training by fpd_layer_quantize_free, as
 *                format extension free-rowwise/1 or free-sym/1 stores it
 *                (sample-train-gmf --free-dtype, fpd-convert --free-dtype write such
 *                files). --free-qat: E trains as it will be stored (quantization-aware
 *                training, fpd_gmf_train_params.free_qat), so the rounding after
 *                training changes nothing. The FPD part starts at --core-init-share
 *                (default 0.5) of a row's variance, E[i] P at the rest.
 *
 * Tuning on a validation split of the training positives (one held out per user,
 * the first seed; the test set is not read): --tune-core-lr (the FPD methods' core
 * step), --tune-free-share and --tune-free-proj (fpd-free's share and P's step);
 * every combination is trained, the best validation metric kept (config clr=, share=,
 * P=; JSON "validation").
 *
 * Datasets:
 *   --movielens RATINGS   GMF (NCF) with BCE and 4 negatives, sample-train-gmf's split
 *                         (one random held-out rating per user, 99 negatives, split
 *                         seed 1), HR@10 and NDCG@10;
 *   --gowalla DIR         matrix factorization with BPR loss (one negative per
 *                         positive, L2 1e-4 on the batch rows, init normal(0, 0.1^2),
 *                         as LightGCN's MF baseline) on DIR/train.txt and DIR/test.txt
 *                         (LightGCN's split), Recall@20 and NDCG@20 over all items
 *                         not in the user's training set (fpd_gmf_rank_full).
 *
 * Budgets are per table: a method fits when each of its two tables has at most
 * floor(rows * D / ratio) parameters (4-byte values; the hash and the QR index
 * maps are arithmetic and cost nothing). The prediction weights of GMF (D + 1)
 * are the same small vector for all methods and are not counted. Both tables of
 * a method share one dimension (GMF multiplies them element-wise).
 *
 *   build/sample-compare-sizes --movielens ../shared/data/movielens-1m/ratings.tsv \
 *       --epochs 5 --seeds 1,2,3 -o build/accuracy-ml1m --plot build/accuracy-ml1m.png
 */
#include "formats/fpd-formats.h"
#include "heuristics/fpd-heuristics.h"
#include "lib/fpd.h"
#include "samples/sample-cli.h"

#include <jansson.h>

#include <errno.h>
#include <getopt.h>
#include <locale.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------ methods */

/* int8-sym / int4-sym: the dense table stored as the symmetric rows of format free-sym/1
 * (one F16 scale a row, no bias: d + 2 or ceil(d/2) + 2 bytes), the baseline for an FPD
 * layer whose free coordinates are stored so */
enum method { M_DENSE, M_INT8, M_INT4, M_INT8_SYM, M_INT4_SYM, M_HASH, M_QR, M_QR_ORDERED, M_FPD, M_FPD_ORDERED,
              M_FPD_FREE, M_COUNT };
static const char *const method_names[M_COUNT] = {"dense", "int8", "int4", "int8-sym", "int4-sym", "hash", "qr",
                                                  "qr-ordered", "fpd", "fpd-ordered", "fpd-free"};
/* the plots' colour of each method (the same in every plot; fpd-free, FPD's best form, red) */
static const char *const method_colors[M_COUNT] = {"#8c564b", "#2ca02c", "#17becf", "#7f7f7f", "#000080",
                                                   "#bcbd22", "#e377c2", "#1f77b4", "#ff7f0e", "#9467bd",
                                                   "#d62728"};
static bool is_table_quant(enum method m) {
    return m == M_INT8 || m == M_INT4 || m == M_INT8_SYM || m == M_INT4_SYM;
}
static bool is_sym(enum method m) { return m == M_INT8_SYM || m == M_INT4_SYM; }

struct options {
    const char *movielens, *gowalla, *out, *plot, *merge;
    int64_t dim, epochs, batch, negatives, max_users;
    int64_t cores[4];
    int n_cores;
    double lr, core_lr, init_scale, l2, free_share, free_proj, popularity;
    double core_init_share;     /* fpd-free: the FPD part's share of a row's initial variance */
    int free_dtype;             /* fpd-free's E as stored: -1 F32, else an enum fpd_free_kind */
    bool free_qat;              /* --free-qat: fpd-free trains E as stored (needs free_dtype) */
    bool ablate;                /* --ablate: the FPD methods' cores measured after training */
    bool order_vocab;           /* --order-cost vocabulary: the row order costs nothing */
    bool methods[M_COUNT], reference, json;
    double ratios[8];
    int n_ratios;
    double tune_lr[8];
    int n_tune;
    double tune_share[8];
    int n_tune_share;
    double tune_proj[4];
    int n_tune_proj;
    uint64_t seeds[8];
    int n_seeds;
};

/* A dataset in memory: training positives, and either NCF-style candidates
 * (MovieLens) or per-user test sets for full ranking (Gowalla). */
struct data {
    const char *name;
    bool full_ranking;
    int64_t n_users, n_items, n_train;
    int64_t *tr_users, *tr_items;
    struct fpd_ncf_test test;            /* MovieLens: the split's test set (borrowed) */
    struct fpd_ncf_split split;          /* MovieLens: owns tr_users, tr_items, test */
    int64_t *tr_off, *tr_csr;        /* Gowalla: training items per user (CSR) */
    int64_t *te_off, *te_csr;        /* Gowalla: test items per user (CSR)     */
};

static void data_free(struct data *d) {
    if (d->split.train_users) {
        fpd_ncf_split_free(&d->split);
    } else {
        free(d->tr_users);
        free(d->tr_items);
    }
    free(d->tr_off);
    free(d->tr_csr);
    free(d->te_off);
    free(d->te_csr);
}

/* ------------------------------------------------------------------ MovieLens split */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}


static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* sample-train-gmf's split (the same code, so the same held-out items and
 * negatives for the same seed): per user with >= 2 ratings one random rating held
 * out with n_neg items the user never rated. */
/* ------------------------------------------------------------------ Gowalla */

/* One "user item item ..." line per user (LightGCN's train.txt / test.txt), into a
 * CSR over users [0, *n_users) (users missing from the file have no items). */
static bool read_user_lists(const char *path, int64_t **off_out, int64_t **items_out, int64_t *n_users,
                            int64_t *max_item) {
    FILE *f = fopen(path, "r");
    if (!f) {
        cli_error("%s: cannot open: %s", path, strerror(errno));
        return false;
    }
    int64_t cap_u = 1024, cap_i = 1 << 16, nu = 0, ni = 0, line_no = 0;
    int64_t *uid = malloc((size_t)cap_u * sizeof *uid), *start = malloc((size_t)(cap_u + 1) * sizeof *start);
    int64_t *its = malloc((size_t)cap_i * sizeof *its);
    char *line = NULL;
    size_t lcap = 0;
    bool ok = uid && start && its;
    while (ok && getline(&line, &lcap, f) > 0) {
        line_no++;
        char *p = line, *end;
        while (*p == ' ' || *p == '\t') p++;
        if (*p == '\n' || *p == '\0' || *p == '\r') continue;
        long long u = strtoll(p, &end, 10);
        if (end == p || u < 0) {
            cli_error("%s:%lld: expected 'user item item ...' with ids >= 0", path, (long long)line_no);
            ok = false;
            break;
        }
        if (nu == cap_u) {
            cap_u *= 2;
            int64_t *a = realloc(uid, (size_t)cap_u * sizeof *uid), *b = realloc(start, (size_t)(cap_u + 1) * sizeof *start);
            if (a) uid = a;
            if (b) start = b;
            if (!a || !b) { ok = false; break; }
        }
        uid[nu] = u;
        start[nu++] = ni;
        for (p = end;;) {
            while (*p == ' ' || *p == '\t' || *p == '\r') p++;
            if (*p == '\n' || *p == '\0') break;
            long long it = strtoll(p, &end, 10);
            if (end == p || it < 0) {
                cli_error("%s:%lld: item ids must be integers >= 0", path, (long long)line_no);
                ok = false;
                break;
            }
            if (ni == cap_i) {
                cap_i *= 2;
                int64_t *a = realloc(its, (size_t)cap_i * sizeof *its);
                if (!a) { ok = false; break; }
                its = a;
            }
            its[ni++] = it;
            if (it > *max_item) *max_item = it;
            p = end;
        }
    }
    free(line);
    fclose(f);
    if (ok) {
        int64_t U = 0;
        for (int64_t q = 0; q < nu; q++) U = uid[q] + 1 > U ? uid[q] + 1 : U;
        if (U > *n_users) *n_users = U;
        start[nu] = ni;
        int64_t *off = calloc((size_t)*n_users + 1, sizeof *off), *out = malloc((size_t)(ni ? ni : 1) * sizeof *out);
        if (!off || !out) {
            free(off);
            free(out);
            ok = false;
        } else {
            for (int64_t q = 0; q < nu; q++) off[uid[q] + 1] += start[q + 1] - start[q];
            for (int64_t v = 0; v < *n_users; v++) off[v + 1] += off[v];
            int64_t *fill = calloc((size_t)*n_users, sizeof *fill);
            if (!fill) ok = false;
            for (int64_t q = 0; ok && q < nu; q++)
                for (int64_t s = start[q]; s < start[q + 1]; s++) out[off[uid[q]] + fill[uid[q]]++] = its[s];
            free(fill);
            *off_out = off;
            *items_out = out;
        }
    }
    if (!ok && !uid) cli_error("out of memory reading %s", path);
    free(uid);
    free(start);
    free(its);
    return ok;
}

static bool gowalla_load(const char *dir, struct data *d) {
    char tr[4096], te[4096];
    snprintf(tr, sizeof tr, "%s/train.txt", dir);
    snprintf(te, sizeof te, "%s/test.txt", dir);
    int64_t nu = 0, max_item = -1;
    int64_t *o1 = NULL, *i1 = NULL, *o2 = NULL, *i2 = NULL;
    if (!read_user_lists(tr, &o1, &i1, &nu, &max_item)) return false;
    int64_t nu_train = nu;
    if (!read_user_lists(te, &o2, &i2, &nu, &max_item)) {
        free(o1);
        free(i1);
        return false;
    }
    if (nu > nu_train) { /* users only in test.txt: extend the training CSR with empty lists */
        int64_t *o = realloc(o1, (size_t)(nu + 1) * sizeof *o);
        if (!o) {
            free(o1);
            free(i1);
            free(o2);
            free(i2);
            return false;
        }
        o1 = o;
        for (int64_t u = nu_train + 1; u <= nu; u++) o1[u] = o1[nu_train];
    }
    d->n_users = nu;
    d->n_items = max_item + 1;
    d->tr_off = o1;
    d->tr_csr = i1;
    d->te_off = o2;
    d->te_csr = i2;
    d->n_train = o1[nu];
    if (d->n_train < 1 || d->n_items < 2) {
        cli_error("%s: no training interactions", tr);
        return false;
    }
    d->tr_users = malloc((size_t)d->n_train * sizeof(int64_t));
    d->tr_items = malloc((size_t)d->n_train * sizeof(int64_t));
    if (!d->tr_users || !d->tr_items) return false;
    for (int64_t u = 0; u < nu; u++)
        for (int64_t q = o1[u]; q < o1[u + 1]; q++) {
            d->tr_users[q] = u;
            d->tr_items[q] = i1[q];
        }
    d->full_ranking = true;
    return true;
}

/* The validation split for --tune-core-lr, from the training positives only (the
 * test set is not read): MovieLens, the same leave-one-out as the test split (one
 * random positive of each user with >= 2, 99 negatives the user has no training
 * positive with; split seed 2); Gowalla, one random training item of each user with
 * >= 2 held out (seed 2) and ranked against all items not in the rest. val trains on
 * what remains. Returns false (with a message) on failure. */
static bool data_validation(const struct data *d, struct data *val) {
    memset(val, 0, sizeof *val);
    val->name = d->name;
    val->full_ranking = d->full_ranking;
    if (!d->full_ranking) {
        struct fpd_ncf_interactions r = {d->n_train, d->tr_users, d->tr_items, NULL, d->n_users, d->n_items};
        struct fpd_error err = {0};
        if (!(r.ratings = malloc((size_t)d->n_train * sizeof(float)))) return false;
        for (int64_t t = 0; t < d->n_train; t++) r.ratings[t] = NAN;
        enum fpd_status st = fpd_ncf_split_leave_one_out(&r, 0, 2, 99, &val->split, &err);
        free(r.ratings);
        if (st) {
            cli_error("%s: the validation split: %s", d->name, err.msg);
            return false;
        }
        val->n_users = val->split.n_users;
        val->n_items = val->split.n_items;
        val->n_train = val->split.n_train;
        val->tr_users = val->split.train_users;
        val->tr_items = val->split.train_items;
        val->test = val->split.test;
        return true;
    }
    const int64_t U = d->n_users;
    val->n_users = U;
    val->n_items = d->n_items;
    val->tr_off = calloc((size_t)U + 1, sizeof(int64_t));
    val->te_off = calloc((size_t)U + 1, sizeof(int64_t));
    val->tr_csr = malloc((size_t)(d->n_train ? d->n_train : 1) * sizeof(int64_t));
    val->te_csr = malloc((size_t)(U ? U : 1) * sizeof(int64_t));
    val->tr_users = malloc((size_t)(d->n_train ? d->n_train : 1) * sizeof(int64_t));
    val->tr_items = malloc((size_t)(d->n_train ? d->n_train : 1) * sizeof(int64_t));
    if (!val->tr_off || !val->te_off || !val->tr_csr || !val->te_csr || !val->tr_users || !val->tr_items) {
        cli_error("out of memory for the validation split");
        return false;
    }
    uint64_t rng = 2 * 0x9E3779B97F4A7C15ull + 0x5eedull;
    int64_t nt = 0, nv = 0;
    for (int64_t u = 0; u < U; u++) {
        const int64_t a = d->tr_off[u], m = d->tr_off[u + 1] - a;
        const int64_t h = m >= 2 ? (int64_t)(rng_next(&rng) % (uint64_t)m) : -1;
        for (int64_t q = 0; q < m; q++) {
            if (q == h) {
                val->te_csr[nv++] = d->tr_csr[a + q];
                continue;
            }
            val->tr_csr[nt] = d->tr_csr[a + q];
            val->tr_users[nt] = u;
            val->tr_items[nt++] = d->tr_csr[a + q];
        }
        val->tr_off[u + 1] = nt;
        val->te_off[u + 1] = nv;
    }
    val->n_train = nt;
    return true;
}

/* ------------------------------------------------------------------ sizes */

/* One method at one ratio: the shape of both tables, or why it does not fit. */
struct config {
    enum method method;
    double ratio;               /* 1: the dense D reference */
    bool fits;
    char why[256];              /* when it does not fit */
    int64_t dim;
    int64_t buckets[2];         /* hash / qr */
    int64_t free_coords;        /* fpd-free: c of both tables */
    double core_lr;             /* FPD methods: the cores' Adam step chosen on the
                                   validation split (--tune-core-lr); 0: --core-lr */
    double free_share;          /* fpd-free: the share kept (--free-share or the one
                                   chosen by --tune-free-share) */
    double free_proj;           /* fpd-free: P's step, -1 fixed, 0 the cores', else the step */
    int free_dtype;             /* fpd-free: E stored as F32 (-1) or an enum fpd_free_kind (--free-dtype) */
    int n_tried;                /* the validation runs of the tuning: */
    double tried_lr[256], tried_share[256], tried_proj[256], tried_m1[256]; /* step, share, P, metric */
    struct fpd_layer_shape shape[2];
    int64_t params[2], budget[2];
    char desc[160];
};

/* fpd-free's E [rows, c] and P [c, D] in 4-byte words: E in F32 (dtype -1) or as
 * row-wise int8/int4 rows (bytes rounded up to words); P in F32. */
static int64_t free_params(int dtype, int64_t rows, int64_t D, int64_t c) {
    const int64_t e = dtype < 0 ? rows * c : (rows * (int64_t)fpd_free_row_bytes((enum fpd_free_kind)dtype, c) + 3) / 4;
    return e + c * D;
}

/* The row permutation as the format stores it (T.fpd.row_perm: I32 a row, I64 when
 * prod(row_shape) > INT32_MAX), in 4-byte words. */
static int64_t perm_params(const struct fpd_layer_shape *s) {
    int64_t padded = 1;
    for (int32_t m = 0; m < s->k; m++) padded *= s->row_shape[m];
    return s->rows * (padded > INT32_MAX ? 2 : 1);
}

static bool qr_best(int64_t rows, int64_t dim, int64_t budget, int64_t *m_out, int64_t *params) {
    /* the largest remainder table (fewest collisions in Q) within the budget */
    for (int64_t m = rows; m >= 1; m--) {
        int64_t p = ((rows + m - 1) / m + m) * dim;
        if (p <= budget) {
            *m_out = m;
            *params = p;
            return true;
        }
        if (m * m < rows) break; /* ceil(rows/m) + m only grows below sqrt(rows) */
    }
    return false;
}

static bool fpd_best_k(const struct options *o, int32_t k, int64_t rows, int64_t budget, bool ordered,
                       struct fpd_layer_shape *s, int64_t *params) {
    bool found = false;
    if (o->order_vocab) ordered = false; /* the permutation lives in the vocabulary */
    for (int64_t r = 1; r <= 256; r++) {
        struct fpd_plan_params pp = fpd_plan_default_params();
        pp.rank = r;
        pp.terms = 1;
        pp.k = k;
        pp.min_rows = 1;
        pp.min_ratio = 0.0;
        struct fpd_plan plan;
        struct fpd_error err;
        if (fpd_plan_table(rows, o->dim, FPD_DTYPE_F32, &pp, &plan, &err)) break;
        int64_t p = fpd_layer_shape_params(&plan.shape) + (ordered ? perm_params(&plan.shape) : 0);
        if (p > budget) break;
        if (found && plan.shape.ranks[1] == s->ranks[1] && plan.shape.ranks[k - 1] == s->ranks[k - 1])
            break; /* rank capped: no larger shape */
        *s = plan.shape;
        *params = p;
        found = true;
    }
    return found;
}

/* FPD's shape within the budget: the first core count of --cores with which rank 1
 * fits both tables, and for it the largest TT-rank that fits each table. */
static bool fpd_best(const struct options *o, const int64_t rows[2], const int64_t budget[2], bool ordered,
                     struct fpd_layer_shape s[2], int64_t params[2]) {
    for (int q = 0; q < o->n_cores; q++)
        if (fpd_best_k(o, (int32_t)o->cores[q], rows[0], budget[0], ordered, &s[0], &params[0]) &&
            fpd_best_k(o, (int32_t)o->cores[q], rows[1], budget[1], ordered, &s[1], &params[1]))
            return true;
    return false;
}

static void config_make(const struct options *o, const struct data *d, enum method m, double ratio, struct config *c) {
    memset(c, 0, sizeof *c);
    c->method = m;
    c->ratio = ratio;
    const int64_t rows[2] = {d->n_users, d->n_items}, D = o->dim;
    for (int t = 0; t < 2; t++) c->budget[t] = (int64_t)floor((double)(rows[t] * D) / ratio);
    c->dim = D;
    c->fits = true;
    switch (m) {
    case M_DENSE:
        c->dim = (int64_t)floor((double)D / ratio);
        if (c->dim < 1) {
            c->fits = false;
            snprintf(c->why, sizeof c->why, "d = floor(%lld / %g) = 0", (long long)D, ratio);
            return;
        }
        for (int t = 0; t < 2; t++) c->params[t] = rows[t] * c->dim;
        snprintf(c->desc, sizeof c->desc, "d=%lld", (long long)c->dim);
        return;
    case M_INT8:
    case M_INT4:
    case M_INT8_SYM:
    case M_INT4_SYM: { /* the largest d whose quantized rows fit both budgets (4-byte words, rounded up) */
        const enum fpd_rowwise k = m == M_INT8 ? FPD_ROWWISE_INT8 : FPD_ROWWISE_INT4;
        const enum fpd_free_kind fk = m == M_INT8_SYM ? FPD_FREE_INT8_SYM : FPD_FREE_INT4_SYM;
        for (int64_t dd = D; dd >= 1; dd--) {
            bool fit = true;
            const size_t rb = is_sym(m) ? fpd_free_row_bytes(fk, dd) : fpd_rowwise_row_bytes(k, dd);
            for (int t = 0; t < 2; t++) {
                c->params[t] = (rows[t] * (int64_t)rb + 3) / 4;
                fit = fit && c->params[t] <= c->budget[t];
            }
            if (fit) {
                c->dim = dd;
                snprintf(c->desc, sizeof c->desc, "d=%lld", (long long)dd);
                return;
            }
        }
        c->fits = false;
        snprintf(c->why, sizeof c->why, "one %s value a row (%zu bytes) exceeds the budget", method_names[m],
                 is_sym(m) ? fpd_free_row_bytes(fk, 1) : fpd_rowwise_row_bytes(k, 1));
        return;
    }
    case M_HASH:
        for (int t = 0; t < 2; t++) {
            c->buckets[t] = c->budget[t] / D;
            if (c->buckets[t] > rows[t]) c->buckets[t] = rows[t];
            c->params[t] = c->buckets[t] * D;
        }
        if (c->buckets[0] < 1 || c->buckets[1] < 1) {
            c->fits = false;
            snprintf(c->why, sizeof c->why, "fewer than one row of %lld", (long long)D);
            return;
        }
        snprintf(c->desc, sizeof c->desc, "m=%lld/%lld", (long long)c->buckets[0], (long long)c->buckets[1]);
        return;
    case M_QR:
    case M_QR_ORDERED: {
        /* qr-ordered: the permutation (I32 a row, as fpd-ordered's) first, unless it
         * lives in the vocabulary */
        const bool perm = m == M_QR_ORDERED && !o->order_vocab;
        const int64_t pw[2] = {perm ? rows[0] : 0, perm ? rows[1] : 0};
        for (int64_t dd = D; dd >= 1; dd--) { /* D if it fits, else the largest d that fits both tables */
            if (qr_best(rows[0], dd, c->budget[0] - pw[0], &c->buckets[0], &c->params[0]) &&
                qr_best(rows[1], dd, c->budget[1] - pw[1], &c->buckets[1], &c->params[1])) {
                c->dim = dd;
                c->params[0] += pw[0];
                c->params[1] += pw[1];
                snprintf(c->desc, sizeof c->desc, "d=%lld m=%lld/%lld%s", (long long)dd, (long long)c->buckets[0],
                         (long long)c->buckets[1], m == M_QR_ORDERED && o->order_vocab ? " order=vocab" : "");
                return;
            }
        }
        c->fits = false;
        snprintf(c->why, sizeof c->why, "no quotient/remainder split fits%s",
                 perm ? " beside the row permutation (I32 a row)" : "");
        return;
    }
    case M_FPD:
    case M_FPD_ORDERED:
    case M_FPD_FREE: {
        int64_t core_budget[2] = {c->budget[0], c->budget[1]};
        if (m == M_FPD_FREE) { /* E [rows, c] and P [c, D] take up to free_share of each budget */
            c->free_coords = D;
            c->free_dtype = o->free_dtype;
            for (int t = 0; t < 2; t++) {
                int64_t ct = 0;
                while (ct < D && free_params(c->free_dtype, rows[t], D, ct + 1) <=
                                     (int64_t)floor(o->free_share * (double)c->budget[t]))
                    ct++;
                if (ct < c->free_coords) c->free_coords = ct;
            }
            if (c->free_coords < 1) {
                c->fits = false;
                snprintf(c->why, sizeof c->why, "c = 0: --free-share %g of the budget holds no free coordinate "
                         "(with none it is fpd-ordered)", o->free_share);
                return;
            }
            for (int t = 0; t < 2; t++) core_budget[t] -= free_params(c->free_dtype, rows[t], D, c->free_coords);
            c->free_share = o->free_share;
            c->free_proj = o->free_proj;
        }
        if (m != M_FPD && !o->order_vocab && (rows[0] >= core_budget[0] || rows[1] >= core_budget[1])) {
            c->fits = false;
            if (m == M_FPD_FREE)
                snprintf(c->why, sizeof c->why, "the row permutation (T.fpd.row_perm, I32: %lld/%lld words) and "
                         "E, P (c = %d) leave no budget for the cores", (long long)rows[0], (long long)rows[1],
                         (int)c->free_coords);
            else
                snprintf(c->why, sizeof c->why, "the row permutation alone (T.fpd.row_perm, I32: %lld/%lld words) "
                         "leaves no budget for the cores", (long long)rows[0], (long long)rows[1]);
            return;
        }
        if (!fpd_best(o, rows, core_budget, m != M_FPD, c->shape, c->params)) {
            c->fits = false;
            snprintf(c->why, sizeof c->why, "rank 1 exceeds the budget with every core count of --cores");
            return;
        }
        for (int t = 0; t < 2; t++)
            c->params[t] += m == M_FPD_FREE ? free_params(c->free_dtype, rows[t], D, c->free_coords) : 0;
        if (m == M_FPD_FREE)
            snprintf(c->desc, sizeof c->desc, "k=%d r=%lld/%lld c=%lld%s%s%s%s", (int)c->shape[0].k,
                     (long long)c->shape[0].ranks[1], (long long)c->shape[1].ranks[1], (long long)c->free_coords,
                     c->free_dtype < 0 ? "" : " E=", c->free_dtype < 0 ? "" : fpd_free_kind_name((enum fpd_free_kind)c->free_dtype),
                     o->free_qat ? " qat" : "", o->order_vocab ? " order=vocab" : "");
        else
            snprintf(c->desc, sizeof c->desc, "k=%d r=%lld/%lld%s", (int)c->shape[0].k,
                     (long long)c->shape[0].ranks[1], (long long)c->shape[1].ranks[1],
                     m == M_FPD_ORDERED && o->order_vocab ? " order=vocab" : "");
        return;
    }
    default: break;
    }
}

/* ------------------------------------------------------------------ runs */

struct result {
    double m1, m2;     /* HR@10, NDCG@10 or Recall@20, NDCG@20 */
    double seconds, loss;
    double m1_f32;     /* int8/int4, fpd-free with --free-dtype: metric 1 before quantization; else NAN */
    /* --ablate (FPD methods; else NAN): how far each table's cores moved,
     * ||G - G0|| / ||G0|| over all its cores (G0: the initialization), and metric 1
     * with both tables' cores put back to G0, and (fpd-free) with them zeroed: the
     * rows E[i] P alone; core_init_norm: ||G0|| */
    double core_move[2], core_init_norm[2], m1_cores_init, m1_no_tt;
};

/* x [rows, cols] (row-major F32) replaced by its row-wise int8/int4 rows read back
 * (fpd_rowwise_quantize_row, then fpd_rowwise_dequantize_row): the table a user of
 * fpd-compress -e int8/int4 would deploy. */
static enum fpd_status quantize_rows(enum fpd_rowwise k, float *x, int64_t rows, int64_t cols, const char *what,
                                     struct fpd_error *err) {
    uint8_t *q = malloc(fpd_rowwise_row_bytes(k, cols));
    if (!q) {
        snprintf(err->msg, sizeof err->msg, "out of memory");
        return FPD_STATUS_NOMEM;
    }
    for (int64_t i = 0; i < rows; i++) {
        if (!fpd_rowwise_quantize_row(k, x + i * cols, cols, q)) {
            free(q);
            snprintf(err->msg, sizeof err->msg, "%s: row %lld cannot be quantized to %s (not finite or out of range "
                     "after training)", what, (long long)i, fpd_rowwise_name(k));
            return FPD_STATUS_NUMERIC;
        }
        fpd_rowwise_dequantize_row(k, q, cols, x + i * cols);
    }
    free(q);
    return FPD_STATUS_OK;
}

/* Round x [rows, cols] in place to the symmetric rows of kind (format free-sym/1), with the
 * library's rounding of free coordinates (fpd_layer_quantize_free): x is set as E of a layer
 * of rank-1 cores (c = cols = dim; the cores are not used), rounded and copied back. */
static enum fpd_status round_sym_rows(enum fpd_free_kind kind, float *x, int64_t rows, int64_t cols, const char *what,
                                      struct fpd_error *err) {
    int64_t n0 = 1;
    while (n0 * n0 < rows) n0++;
    struct fpd_layer_shape s = {.rows = rows, .dim = cols, .k = 2, .terms = 1};
    s.row_shape[0] = n0;
    s.row_shape[1] = (rows + n0 - 1) / n0;
    s.col_shape[0] = cols;
    s.col_shape[1] = 1;
    s.ranks[0] = s.ranks[1] = s.ranks[2] = 1;
    struct fpd_layer *l = NULL;
    enum fpd_status st = fpd_layer_init(&s, &l, err);
    if (!st) st = fpd_layer_set_free_coords(l, cols, x, NULL, err);
    if (!st) st = fpd_layer_quantize_free(l, kind, err);
    if (!st) memcpy(x, fpd_layer_get_free_e(l), (size_t)(rows * cols) * sizeof(float));
    else {
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "%s", err->msg);
        snprintf(err->msg, sizeof err->msg, "%.16s: %.480s", what, msg);
    }
    fpd_layer_free(l);
    return st;
}

/* The test metrics of a trained model: HR@10/NDCG@10 (MovieLens) or Recall@20/NDCG@20 (Gowalla). */
static enum fpd_status evaluate(const struct data *d, const struct fpd_gmf *g, double *m1, double *m2,
                                struct fpd_error *err) {
    enum fpd_status st;
    if (d->full_ranking) {
        struct fpd_full_rank_metrics fm;
        st = fpd_gmf_rank_full(g, d->n_users, d->tr_off, d->tr_csr, d->te_off, d->te_csr, 20, &fm, err);
        *m1 = fm.recall;
        *m2 = fm.ndcg;
    } else {
        struct fpd_rank_metrics rm;
        st = fpd_gmf_rank(g, d->test.users, d->test.cand, d->test.n, d->test.n_cand, 10, &rm, NULL, err);
        *m1 = rm.hr;
        *m2 = rm.ndcg;
    }
    return st;
}

/* every core of dst := src's (src NULL: zeros); the same shape */
static void set_cores(struct fpd_layer *dst, const struct fpd_layer *src) {
    const struct fpd_layer_shape *sh = fpd_layer_get_shape(dst);
    for (int32_t m = 0; m < sh->k; m++) {
        const size_t bytes = (size_t)fpd_layer_shape_core_numel(sh, m) * sizeof(float);
        if (src) memcpy(fpd_layer_core(dst, m), fpd_layer_core_const(src, m), bytes);
        else memset(fpd_layer_core(dst, m), 0, bytes);
    }
}

/* --ablate: res->core_move, m1_cores_init, m1_no_tt of a trained model whose tables
 * are the FPD layers l[0] (users) and l[1] (items), initialized by ip[t]. The cores
 * are put back as trained, and the model evaluated again: it must give m1 (a
 * check that the swaps left nothing behind). */
static enum fpd_status ablate(const struct data *d, const struct fpd_gmf *g, struct fpd_layer *const l[2],
                              const struct fpd_init_params ip[2], bool free_rows, struct result *res,
                              struct fpd_error *err) {
    struct fpd_layer *init[2] = {NULL, NULL}, *keep[2] = {NULL, NULL};
    enum fpd_status st = FPD_STATUS_OK;
    double m2;
    for (int t = 0; t < 2 && !st; t++) {
        const struct fpd_layer_shape *sh = fpd_layer_get_shape(l[t]);
        st = fpd_init(sh, &ip[t], &init[t], err);
        if (!st) st = fpd_layer_clone(l[t], &keep[t], err);
        double dd = 0.0, nn = 0.0;
        for (int32_t m = 0; m < sh->k && !st; m++) {
            const float *a = fpd_layer_core_const(l[t], m), *b = fpd_layer_core_const(init[t], m);
            for (int64_t e = 0; e < fpd_layer_shape_core_numel(sh, m); e++) {
                dd += ((double)a[e] - b[e]) * ((double)a[e] - b[e]);
                nn += (double)b[e] * b[e];
            }
        }
        res->core_move[t] = nn > 0.0 ? sqrt(dd / nn) : NAN;
        res->core_init_norm[t] = sqrt(nn);
    }
    /* cores (every table) := G0, then (fpd-free) 0 */
    for (int pass = 0; pass < (free_rows ? 2 : 1) && !st; pass++) {
        for (int t = 0; t < 2; t++) set_cores(l[t], pass ? NULL : init[t]);
        st = evaluate(d, g, pass ? &res->m1_no_tt : &res->m1_cores_init, &m2, err);
    }
    for (int t = 0; t < 2; t++) /* back as trained */
        if (keep[t]) set_cores(l[t], keep[t]);
    double again = NAN;
    if (!st) st = evaluate(d, g, &again, &m2, err);
    if (!st && again != res->m1) { /* a bug */
        snprintf(err->msg, sizeof err->msg, "the ablation changed the model: metric %.6f after, %.6f before", again,
                 res->m1);
        st = err->status = FPD_STATUS_NUMERIC;
    }
    for (int t = 0; t < 2; t++) {
        fpd_layer_free(init[t]);
        fpd_layer_free(keep[t]);
    }
    return st;
}

static bool stop_on_signal(int64_t epoch, double loss, double seconds, void *ud) {
    (void)epoch, (void)loss, (void)seconds, (void)ud;
    return !cli_interrupted();
}

static int run_one(const struct options *o, const struct data *d, const struct config *c, uint64_t seed,
                   struct result *res) {
    struct fpd_error err = {0};
    const int64_t rows[2] = {d->n_users, d->n_items}, D = c->dim;
    const bool mf = d->full_ranking;
    const double scale = mf ? 0.1 : o->init_scale;
    float *dense[2] = {NULL, NULL};
    struct fpd_layer *layer[2] = {NULL, NULL};
    struct fpd_composed *comp[2] = {NULL, NULL};
    struct fpd_init_params ips[2];
    memset(ips, 0, sizeof ips);
    res->core_move[0] = res->core_move[1] = res->m1_cores_init = res->m1_no_tt = NAN;
    res->core_init_norm[0] = res->core_init_norm[1] = NAN;
    float *w = malloc((size_t)D * sizeof(float));
    int rc = 1;
    struct fpd_gmf g;
    memset(&g, 0, sizeof g);
    uint64_t rng = seed * 0x9E3779B97F4A7C15ull + 0x1234567ull;
    if (!w) goto oom;
    for (int t = 0; t < 2; t++) {
        struct fpd_embedding *e = t ? &g.item : &g.user;
        e->rows = rows[t];
        e->dim = D;
        if (c->method == M_DENSE || is_table_quant(c->method)) {
            if (!(dense[t] = malloc((size_t)(rows[t] * D) * sizeof(float)))) goto oom;
            for (int64_t q = 0; q < rows[t] * D; q += 2) { /* Box-Muller pairs, as sample-train-gmf */
                double u1 = ((double)(rng_next(&rng) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
                double u2 = (double)(rng_next(&rng) >> 11) * (1.0 / 9007199254740992.0);
                double rad = sqrt(-2.0 * log(u1));
                dense[t][q] = (float)(scale * rad * cos(6.283185307179586 * u2));
                if (q + 1 < rows[t] * D) dense[t][q + 1] = (float)(scale * rad * sin(6.283185307179586 * u2));
            }
            e->dense = dense[t];
        } else if (c->method == M_HASH || c->method == M_QR || c->method == M_QR_ORDERED) {
            struct fpd_composed_shape cs = {c->method == M_HASH ? FPD_COMPOSED_KIND_HASH : FPD_COMPOSED_KIND_QR,
                                            rows[t], D, c->buckets[t], seed * 31 + (uint64_t)t};
            if (fpd_composed_init(&cs, scale, seed * 2 + (uint64_t)t, &comp[t], &err)) goto fail;
            e->composed = comp[t];
        } else {
            /* fpd-free: the FPD part starts at --core-init-share of the row variance (default
             * half), E[i] P at the rest */
            const double fs = c->method == M_FPD_FREE ? scale * sqrt(o->core_init_share) : scale;
            struct fpd_init_params ip = {FPD_INIT_KIND_NORMAL, fs, seed * 2 + (uint64_t)t};
            ips[t] = ip;
            if (fpd_init(&c->shape[t], &ip, &layer[t], &err)) goto fail;
            e->layer = layer[t];
        }
    }
    if (mf) {
        for (int64_t j = 0; j < D; j++) w[j] = 1.0f; /* MF: plain dot product */
    } else {                                         /* GMF: lecun_uniform, as NCF's Keras Dense(1) */
        const double a = sqrt(3.0 / (double)D);
        for (int64_t j = 0; j < D; j++)
            w[j] = (float)(a * (2.0 * (double)(rng_next(&rng) >> 11) / 9007199254740992.0 - 1.0));
    }
    g.weight = w;
    g.bias = 0.0f;
    struct fpd_gmf_train_params tp = fpd_gmf_train_default_params();
    tp.epochs = o->epochs;
    tp.batch_size = o->batch;
    tp.negatives = o->negatives;
    tp.learning_rate = o->lr;
    tp.core_learning_rate = c->core_lr > 0.0 ? c->core_lr : o->core_lr;
    tp.seed = seed;
    tp.order_rows = c->method == M_FPD_ORDERED || c->method == M_FPD_FREE || c->method == M_QR_ORDERED;
    tp.free_coords = c->method == M_FPD_FREE ? c->free_coords : 0;
    tp.free_proj_learning_rate = c->free_proj > 0.0 ? c->free_proj : 0.0; /* 0: the cores' step */
    tp.free_proj_fixed = c->free_proj < 0.0;
    tp.free_init_scale = c->method == M_FPD_FREE ? scale * sqrt(1.0 - o->core_init_share) : 0.0;
    tp.free_qat = c->method == M_FPD_FREE && o->free_qat;
    tp.free_qat_kind = c->free_dtype;
    tp.epoch_callback = stop_on_signal;
    if (mf) {
        tp.loss = FPD_GMF_LOSS_BPR;
        tp.l2 = o->l2;
        tp.train_prediction = false;
    }
    double t0 = now();
    if (fpd_gmf_train(&g, d->tr_users, d->tr_items, d->n_train, &tp, &res->loss, &err)) goto fail;
    res->seconds = now() - t0;
    if (cli_interrupted()) {
        snprintf(err.msg, sizeof err.msg, "interrupted");
        goto fail;
    }
    res->m1_f32 = NAN;
    const bool q_table = is_table_quant(c->method), q_free = c->method == M_FPD_FREE && c->free_dtype >= 0;
    if (q_table || q_free) { /* post-training row-wise quantization: the tables (int8/int4) or fpd-free's E */
        if (evaluate(d, &g, &res->m1_f32, &res->m2, &err)) goto fail;
        const enum fpd_rowwise k = c->method == M_INT8 ? FPD_ROWWISE_INT8 : FPD_ROWWISE_INT4;
        for (int t = 0; t < 2; t++)
            if (q_table ? (is_sym(c->method) ? round_sym_rows(c->method == M_INT8_SYM ? FPD_FREE_INT8_SYM
                                                                                   : FPD_FREE_INT4_SYM,
                                                              dense[t], rows[t], D, t ? "item table" : "user table",
                                                              &err)
                                             : quantize_rows(k, dense[t], rows[t], D, t ? "item table" : "user table",
                                                             &err))
                        : fpd_layer_quantize_free(layer[t], (enum fpd_free_kind)c->free_dtype, &err)) /* as format free-rowwise/1 stores E */
                goto fail;
    }
    if (evaluate(d, &g, &res->m1, &res->m2, &err)) goto fail;
    if (o->ablate && layer[0] && layer[1] &&
        ablate(d, &g, layer, ips, c->method == M_FPD_FREE, res, &err))
        goto fail;
    rc = 0;
    goto done;
oom:
    snprintf(err.msg, sizeof err.msg, "out of memory");
fail:
    cli_error("%s %s at %gx, seed %llu: %s", d->name, method_names[c->method], c->ratio, (unsigned long long)seed,
              err.msg);
done:
    for (int t = 0; t < 2; t++) {
        free(dense[t]);
        fpd_layer_free(layer[t]);
        fpd_composed_free(comp[t]);
    }
    free(w);
    return rc;
}

/* The most-popular-items baseline, with no per-user parameter: every user scores an
 * item by its count of training positives (ties: the smaller id first, as the ranking
 * breaks them), evaluated by the same ranking as the methods (a one-column dense GMF:
 * user rows 1, item rows the counts, weight 1). Where a method scores near it, the
 * method learned popularity and little of the users. */
static bool popularity(const struct data *d, struct result *res) {
    struct fpd_error err = {0};
    float *ones = malloc((size_t)d->n_users * sizeof(float)), *count = calloc((size_t)d->n_items, sizeof(float));
    float w = 1.0f;
    bool ok = ones && count;
    if (ok) {
        for (int64_t u = 0; u < d->n_users; u++) ones[u] = 1.0f;
        for (int64_t t = 0; t < d->n_train; t++) count[d->tr_items[t]] += 1.0f;
        struct fpd_gmf g;
        memset(&g, 0, sizeof g);
        g.user = (struct fpd_embedding){.dense = ones, .rows = d->n_users, .dim = 1};
        g.item = (struct fpd_embedding){.dense = count, .rows = d->n_items, .dim = 1};
        g.weight = &w;
        if (d->full_ranking) {
            struct fpd_full_rank_metrics fm;
            ok = fpd_gmf_rank_full(&g, d->n_users, d->tr_off, d->tr_csr, d->te_off, d->te_csr, 20, &fm, &err) == 0;
            res->m1 = fm.recall;
            res->m2 = fm.ndcg;
        } else {
            struct fpd_rank_metrics rm;
            ok = fpd_gmf_rank(&g, d->test.users, d->test.cand, d->test.n, d->test.n_cand, 10, &rm, NULL, &err) == 0;
            res->m1 = rm.hr;
            res->m2 = rm.ndcg;
        }
        if (!ok) cli_error("%s: the popularity baseline: %s", d->name, err.msg);
    } else {
        cli_error("out of memory for the popularity baseline");
    }
    free(ones);
    free(count);
    return ok;
}

/* ------------------------------------------------------------------ summary */

struct row {
    struct config c;
    int n;
    double m1, m1_sd, m2, m2_sd, seconds;
};

static void mean_sd(const double *x, int n, double *mean, double *sd) {
    double s = 0.0, ss = 0.0;
    for (int i = 0; i < n; i++) s += x[i];
    *mean = n ? s / n : NAN;
    for (int i = 0; i < n; i++) ss += (x[i] - *mean) * (x[i] - *mean);
    *sd = n > 1 ? sqrt(ss / (n - 1)) : 0.0;
}

static int64_t full_params(const struct data *d, const struct options *o) {
    return (d->n_users + d->n_items) * o->dim;
}

/* The table as TSV (a header, then one line per method and ratio). */
static char *table_tsv(const struct data *d, const struct options *o, const struct row *rows, int n_rows) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    const char *a = d->full_ranking ? "recall20" : "hr10", *b = d->full_ranking ? "ndcg20" : "ndcg10";
    fprintf(f, "dataset\tmethod\tratio\tconfig\tdim\tparams\tbudget\tsize_ratio\t%s\t%s_sd\t%s\t%s_sd\tseconds\truns\n", a,
            a, b, b);
    for (int i = 0; i < n_rows; i++) {
        const struct row *r = &rows[i];
        const int64_t p = r->c.params[0] + r->c.params[1], bud = r->c.budget[0] + r->c.budget[1];
        if (!r->c.fits) {
            fprintf(f, "%s\t%s\t%g\tdoes not fit: %s\t-\t-\t%lld\t-\t-\t-\t-\t-\t-\t0\n", d->name,
                    method_names[r->c.method], r->c.ratio, r->c.why, (long long)bud);
            continue;
        }
        fprintf(f, "%s\t%s\t%g\t%s\t%lld\t%lld\t%lld\t%.2f\t%.4f\t%.4f\t%.4f\t%.4f\t%.1f\t%d\n", d->name,
                r->c.ratio == 1.0 ? "dense-full" : method_names[r->c.method], r->c.ratio, r->c.desc,
                (long long)r->c.dim, (long long)p, (long long)bud, (double)full_params(d, o) / (double)p, r->m1,
                r->m1_sd, r->m2, r->m2_sd, r->seconds, r->n);
    }
    fclose(f);
    return buf;
}

static bool write_text(const char *path, const char *text) {
    struct fpd_error err;
    if (fpd_write_file_atomic(path, text, strlen(text), FPD_WRITE_OVERWRITE, &err)) {
        cli_error("%s", err.msg);
        return false;
    }
    return true;
}

/* PNG: metric 1 against the budget ratio (log x), one line per method with the
 * seeds' sd as error bars, the dense D reference as a horizontal line; gnuplot
 * (Debian gnuplot-nox) renders it from PNG.dat and PNG.gp. */
static bool plot(const char *png, const struct data *d, const struct options *o, const struct row *rows, int n_rows,
                 double pop) {
    char datp[4096], gpp[4096];
    snprintf(datp, sizeof datp, "%s.dat", png);
    snprintf(gpp, sizeof gpp, "%s.gp", png);
    char *dat = NULL, *gp = NULL;
    size_t dl = 0, gl = 0;
    FILE *f = open_memstream(&dat, &dl), *g = open_memstream(&gp, &gl);
    if (!f || !g) {
        if (f) fclose(f);
        if (g) fclose(g);
        free(dat);
        free(gp);
        return false;
    }
    double ref = NAN;
    int blocks = 0;
    char titles[512] = "", colors[512] = "";
    for (int m = 0; m < M_COUNT; m++) {
        int n = 0;
        for (int i = 0; i < n_rows; i++) {
            const struct row *r = &rows[i];
            if (r->c.ratio == 1.0 && r->c.fits) ref = r->m1;
            if (r->c.method != (enum method)m || r->c.ratio == 1.0 || !r->c.fits) continue;
            if (n++ == 0) fprintf(f, "%s# %s\n", blocks ? "\n\n" : "", method_names[m]);
            fprintf(f, "%g\t%.5f\t%.5f\n", r->c.ratio, r->m1, r->m1_sd);
        }
        if (n) {
            blocks++;
            strncat(titles, method_names[m], sizeof titles - strlen(titles) - 2);
            strcat(titles, " ");
            strncat(colors, method_colors[m], sizeof colors - strlen(colors) - 2);
            strcat(colors, " ");
        }
    }
    fclose(f);
    const char *metric = d->full_ranking ? "Recall@20" : "HR@10";
    fprintf(g,
            "set terminal pngcairo size 900,600 noenhanced\n"
            "set output '%s'\n"
            "set title '%s: %s against size (%lld epochs, %d seed(s), mean +- sd)'\n"
            "set logscale x\nset xtics (4, 10, 30, 100)\nset xrange [3:130]\n"
            "set xlabel 'times smaller than the dense D = %lld tables (parameter budget)'\n"
            "set ylabel '%s'\nset key outside right\nset grid\n"
            "names = '%s'\ncolors = '%s'\n",
            png, d->name, metric, (long long)o->epochs, o->n_seeds, (long long)o->dim, metric, titles, colors);
    fprintf(g,
            "plot for [i=0:%d] '%s' index i using 1:2:3 with yerrorlines lw 2 lc rgb word(colors, i+1) pt i+1 "
            "title word(names, i+1)",
            blocks - 1, datp);
    if (isfinite(ref)) fprintf(g, ", %.5f with lines dt 2 lc rgb 'black' title 'dense D = %lld'", ref, (long long)o->dim);
    if (isfinite(pop)) fprintf(g, ", %.5f with lines dt 3 lc rgb 'gray40' title 'most popular items'", pop);
    fprintf(g, "\n");
    fclose(g);
    bool ok = blocks > 0 && write_text(datp, dat) && write_text(gpp, gp);
    free(dat);
    free(gp);
    if (!ok) return false;
    char cmd[8300];
    snprintf(cmd, sizeof cmd, "gnuplot '%s'", gpp);
    int st = system(cmd);
    if (st != 0) {
        cli_error("gnuplot failed on %s (install Debian's gnuplot-nox: make bench-accuracy does)", gpp);
        return false;
    }
    return true;
}

/* ------------------------------------------------------------------ merging */

static int row_cmp(const void *a, const void *b) {
    const struct row *x = a, *y = b;
    if (x->c.ratio != y->c.ratio) return x->c.ratio < y->c.ratio ? -1 : 1;
    return (int)x->c.method - (int)y->c.method;
}

/* --merge: read tables this program wrote (PREFIX.tsv of runs over parts of the grid,
 * e.g. one ratio each), into rows (sorted by ratio, then method). The dataset is the
 * files' (they must agree); d->n_users is set so that full_params() gives the dense
 * reference's parameters (one of the files must hold the dense-full row). */
static bool merge_tables(const char *list, const struct options *o, struct data *d, struct row **rows_out,
                         int *n_out) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", list);
    struct row *rows = NULL;
    int n = 0, cap = 0;
    int64_t ref_params = 0;
    bool ok = true;
    for (char *path = strtok(buf, ","); ok && path; path = strtok(NULL, ",")) {
        FILE *f = fopen(path, "r");
        if (!f) {
            cli_error("%s: cannot open: %s", path, strerror(errno));
            ok = false;
            break;
        }
        char *line = NULL;
        size_t lcap = 0;
        int64_t line_no = 0;
        while (ok && getline(&line, &lcap, f) > 0) {
            line_no++;
            line[strcspn(line, "\n")] = '\0';
            char *field[14];
            int nf = 0;
            for (char *q = line; nf < 14;) {
                field[nf++] = q;
                char *t = strchr(q, '\t');
                if (!t) break;
                *t = '\0';
                q = t + 1;
            }
            if (line_no == 1) {
                bool gw = nf == 14 && strcmp(field[8], "recall20") == 0, ml = nf == 14 && strcmp(field[8], "hr10") == 0;
                if (strcmp(field[0], "dataset") != 0 || (!gw && !ml) || (d->name && d->full_ranking != gw)) {
                    cli_error("%s:1: not a table of sample-compare-sizes, or of another dataset", path);
                    ok = false;
                }
                d->full_ranking = gw;
                d->name = gw ? "gowalla" : "movielens";
                continue;
            }
            if (nf != 14) {
                cli_error("%s:%lld: expected 14 tab-separated fields, got %d", path, (long long)line_no, nf);
                ok = false;
                break;
            }
            if (n == cap) {
                cap = cap ? 2 * cap : 32;
                struct row *r2 = realloc(rows, (size_t)cap * sizeof *rows);
                if (!r2) {
                    ok = false;
                    break;
                }
                rows = r2;
            }
            struct row *r = &rows[n];
            memset(r, 0, sizeof *r);
            int m = 0;
            const bool ref = strcmp(field[1], "dense-full") == 0;
            while (m < M_COUNT && strcmp(field[1], method_names[m]) != 0) m++;
            if (ref) m = M_DENSE;
            if (m == M_COUNT) {
                cli_error("%s:%lld: unknown method '%s'", path, (long long)line_no, field[1]);
                ok = false;
                break;
            }
            r->c.method = (enum method)m;
            r->c.ratio = strtod(field[2], NULL);
            r->c.budget[0] = strtoll(field[6], NULL, 10);
            r->c.fits = strncmp(field[3], "does not fit: ", 14) != 0;
            if (!r->c.fits) {
                snprintf(r->c.why, sizeof r->c.why, "%s", field[3] + 14);
            } else {
                snprintf(r->c.desc, sizeof r->c.desc, "%s", field[3]);
                r->c.dim = strtoll(field[4], NULL, 10);
                r->c.params[0] = strtoll(field[5], NULL, 10);
                r->m1 = strtod(field[8], NULL);
                r->m1_sd = strtod(field[9], NULL);
                r->m2 = strtod(field[10], NULL);
                r->m2_sd = strtod(field[11], NULL);
                r->seconds = strtod(field[12], NULL);
                r->n = (int)strtol(field[13], NULL, 10);
                if (ref) ref_params = r->c.params[0];
            }
            n++;
        }
        free(line);
        fclose(f);
    }
    if (ok && ref_params == 0) {
        cli_error("--merge: no file holds the dense-full reference row");
        ok = false;
    }
    if (!ok) {
        free(rows);
        return false;
    }
    qsort(rows, (size_t)n, sizeof *rows, row_cmp);
    d->n_users = ref_params / o->dim;
    d->n_items = 0;
    *rows_out = rows;
    *n_out = n;
    return true;
}

/* ------------------------------------------------------------------ main */

static void usage(FILE *f) {
    fprintf(f,
            "Usage: sample-compare-sizes (--movielens RATINGS.tsv | --gowalla DIR) [options]\n"
            "Train the same model with embedding tables shrunk by each method to the same parameter\n"
            "budget (dense with a smaller d, row-wise int8/int4 (FBGEMM's or symmetric) after\n"
            "training, hashing trick, quotient-remainder trick, FPD, FPD with ordered ids, FPD with\n"
            "free coordinates) and compare the test metrics (mean and sd over seeds).\n"
            "\n"
            "  --movielens PATH  ratings (user item rating, 1-based ids): GMF, BCE, HR@10/NDCG@10\n"
            "  --gowalla DIR     DIR/train.txt, DIR/test.txt (LightGCN's format): MF with BPR,\n"
            "                    Recall@20/NDCG@20 over all items not in the user's training set\n"
            "  --ratios A,B,..   budgets as times smaller than the dense tables (default 4,10,30,100)\n"
            "  --methods M,..    of dense,int8,int4,int8-sym,int4-sym,hash,qr,qr-ordered,fpd,\n"
            "                    fpd-ordered,fpd-free (int8-sym/int4-sym: the dense table stored\n"
            "                    as free-sym/1's rows, one F16 scale a row and no bias)\n"
            "                    (default all)\n"
            "  --no-reference    skip the dense D reference (ratio 1)\n"
            "  --dim D           dimension of the dense reference (default 64)\n"
            "  --cores K,..      FPD core counts, the first with which the budget fits is used\n"
            "                    (default 2,3)\n"
            "  --epochs E        (default 5)\n"
            "  --batch B         samples per Adam step (default 256 GMF, 4096 MF: 2048 pairs)\n"
            "  --negatives N     negatives per positive (default 4 GMF, 1 MF)\n"
            "  --lr X            Adam step (default 1e-3 GMF, 1e-2 MF)\n"
            "  --core-lr X       Adam step of the FPD cores (default: --lr)\n"
            "  --tune-core-lr A,B,..  FPD methods: train each with these core steps on a\n"
            "                    validation split of the training positives (first seed), keep\n"
            "                    the best (config clr=X), then train and test with it\n"
            "  --free-share F    fpd-free: the share of each table's budget for the per-row free\n"
            "                    coordinates (default 0.5; c = the largest count within it)\n"
            "  --core-init-share S  fpd-free: the FPD part's share of a row's initial\n"
            "                    variance, E[i] P getting the rest (default 0.5; in (0, 1))\n"
            "  --tune-free-share A,B,..  fpd-free: choose the share among these on the\n"
            "                    validation split too (with --tune-core-lr: every pair)\n"
            "  --free-proj P     fpd-free: how the shared projection P steps: 'core' (at the\n"
            "                    cores' step, the default), 'fixed' (not at all), or a step > 0\n"
            "  --tune-free-proj A,B,..  fpd-free: choose P's step among these (values as\n"
            "                    --free-proj) on the validation split too\n"
            "  --order-cost C    fpd-ordered, fpd-free, qr-ordered: what the id order costs:\n"
            "                    'stored' (the default: T.fpd.row_perm, I32 a row) or\n"
            "                    'vocabulary' (or 'vocab'; nothing: it is folded into the id\n"
            "                    vocabulary, fpd-convert --vocabulary-out)\n"
            "  --free-dtype T    fpd-free: E as stored: f32 (default), int8 or int4 (row-wise,\n"
            "                    free-rowwise/1), int8-sym or int4-sym (free-sym/1); quantized after\n"
            "                    training as the file stores it (fpd_layer_quantize_free), sized by\n"
            "                    its bytes\n");
    fprintf(f, /* two calls: one string literal of over 4095 characters is not portable C */
            "  --free-qat        fpd-free with --free-dtype: train E as it is stored\n"
            "                    (quantization-aware training)\n"
            "  --ablate          FPD methods: after each run, how far the cores moved from\n"
            "                    their initialization (||G - G0|| / ||G0||), and the test\n"
            "                    metric with the cores put back to G0 and (fpd-free) zeroed\n"
            "                    (E[i] P alone); on stderr and in the JSON runs (with\n"
            "                    core_init_norm, ||G0||)\n"
            "  --l2 X            MF: L2 weight on the batch rows (default 1e-4, LightGCN's decay)\n"
            "  --init-scale S    GMF tables start as normal(0, S^2) (default 0.01; MF: 0.1)\n"
            "  --seeds A,B,..    training seeds (default 1,2,3)\n"
            "  --max-users N     MovieLens: only the first N users (a quick run)\n"
            "  -o PREFIX         write PREFIX.tsv (the table) and PREFIX.json (every run)\n"
            "  --plot PNG        plot the first metric against the ratio with gnuplot (also\n"
            "                    writes PNG.dat and PNG.gp, its data and script, to redraw)\n"
            "  --json            print the runs and the table as JSON on stdout\n"
            "  --merge A.tsv,..  train nothing: merge tables this program wrote (e.g. one run\n"
            "                    per ratio) into one (stdout, -o PREFIX.tsv) and --plot it\n"
            "  --popularity X    with --merge: the popularity baseline's metric, drawn in the\n"
            "                    plot (the tables do not hold it)\n"
            "  -h, --help, --version\n");
}

/* Up to max numbers separated by commas, each >= 1 (or, positive: each > 0 and finite). */
static int parse_list_of(const char *opt, const char *s, double *out, int max, bool positive) {
    int n = 0;
    while (*s) {
        char *end;
        double v = strtod(s, &end);
        if (end == s || !(positive ? v > 0.0 && isfinite(v) : v >= 1.0) || n == max)
            cli_usage_error("%s expects up to %d numbers %s separated by commas", opt, max, positive ? "> 0" : ">= 1");
        out[n++] = v;
        if (*end && *end != ',') cli_usage_error("%s expects numbers separated by commas, got '%s'", opt, s);
        s = *end ? end + 1 : end;
    }
    if (n == 0) cli_usage_error("%s needs at least one value", opt);
    return n;
}

/* P's step as --free-proj spells it, into buf. */
static const char *proj_name(double v, char *buf, size_t n) {
    if (v < 0.0) return "fixed";
    if (v == 0.0) return "core";
    snprintf(buf, n, "%g", v);
    return buf;
}

static int parse_list(const char *opt, const char *s, double *out, int max) {
    return parse_list_of(opt, s, out, max, false);
}

int main(int argc, char **argv) {
    cli_prog = "sample-compare-sizes";
    setlocale(LC_NUMERIC, "C");
    struct options o;
    memset(&o, 0, sizeof o);
    o.dim = 64;
    o.cores[0] = 2, o.cores[1] = 3;
    o.n_cores = 2;
    o.epochs = 5;
    o.batch = -1;
    o.negatives = -1;
    o.lr = -1.0;
    o.l2 = 1e-4;
    o.init_scale = 0.01;
    o.free_share = 0.5;
    o.core_init_share = 0.5;
    o.free_dtype = -1;
    o.reference = true;
    const double def_ratios[4] = {4, 10, 30, 100};
    memcpy(o.ratios, def_ratios, sizeof def_ratios);
    o.n_ratios = 4;
    o.seeds[0] = 1, o.seeds[1] = 2, o.seeds[2] = 3;
    o.n_seeds = 3;
    for (int m = 0; m < M_COUNT; m++) o.methods[m] = true;
    enum { OPT_ML = 256, OPT_GW, OPT_RATIOS, OPT_METHODS, OPT_NOREF, OPT_DIM, OPT_CORES, OPT_EPOCHS, OPT_BATCH,
           OPT_NEG, OPT_LR, OPT_L2, OPT_INIT, OPT_SEEDS, OPT_MAXU, OPT_PLOT, OPT_JSON, OPT_MERGE, OPT_CORE_LR, OPT_FREE_SHARE, OPT_TUNE, OPT_FREE_PROJ_LR, OPT_TUNE_SHARE, OPT_TUNE_PROJ, OPT_POP, OPT_FREE_DTYPE, OPT_ORDER_COST, OPT_FREE_QAT, OPT_ABLATE, OPT_CORE_INIT, OPT_VERSION };
    static const struct option opts[] = {
        {"movielens", required_argument, 0, OPT_ML}, {"gowalla", required_argument, 0, OPT_GW},
        {"ratios", required_argument, 0, OPT_RATIOS}, {"methods", required_argument, 0, OPT_METHODS},
        {"no-reference", no_argument, 0, OPT_NOREF}, {"dim", required_argument, 0, OPT_DIM},
        {"cores", required_argument, 0, OPT_CORES}, {"epochs", required_argument, 0, OPT_EPOCHS},
        {"batch", required_argument, 0, OPT_BATCH}, {"negatives", required_argument, 0, OPT_NEG},
        {"lr", required_argument, 0, OPT_LR}, {"l2", required_argument, 0, OPT_L2},
        {"init-scale", required_argument, 0, OPT_INIT}, {"seeds", required_argument, 0, OPT_SEEDS},
        {"max-users", required_argument, 0, OPT_MAXU}, {"plot", required_argument, 0, OPT_PLOT},
        {"json", no_argument, 0, OPT_JSON}, {"output", required_argument, 0, 'o'},
        {"merge", required_argument, 0, OPT_MERGE}, {"core-lr", required_argument, 0, OPT_CORE_LR},
        {"free-share", required_argument, 0, OPT_FREE_SHARE}, {"tune-core-lr", required_argument, 0, OPT_TUNE},
        {"free-proj", required_argument, 0, OPT_FREE_PROJ_LR}, {"free-dtype", required_argument, 0, OPT_FREE_DTYPE},
        {"free-qat", no_argument, 0, OPT_FREE_QAT}, {"ablate", no_argument, 0, OPT_ABLATE},
        {"core-init-share", required_argument, 0, OPT_CORE_INIT},
        {"order-cost", required_argument, 0, OPT_ORDER_COST},
        {"tune-free-proj", required_argument, 0, OPT_TUNE_PROJ},
        {"tune-free-share", required_argument, 0, OPT_TUNE_SHARE},
        {"popularity", required_argument, 0, OPT_POP},
        {"help", no_argument, 0, 'h'}, {"version", no_argument, 0, OPT_VERSION}, {0, 0, 0, 0},
    };
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":o:h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_ML: o.movielens = optarg; break;
        case OPT_GW: o.gowalla = optarg; break;
        case OPT_RATIOS: o.n_ratios = parse_list("--ratios", optarg, o.ratios, 8); break;
        case OPT_METHODS: {
            for (int m = 0; m < M_COUNT; m++) o.methods[m] = false;
            char buf[256];
            snprintf(buf, sizeof buf, "%s", optarg);
            for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
                int m = 0;
                while (m < M_COUNT && strcmp(tok, method_names[m]) != 0) m++;
                if (m == M_COUNT)
                    cli_usage_error("--methods: unknown method '%s' (dense, int8, int4, int8-sym, int4-sym, hash, qr, "
                                    "qr-ordered, fpd, fpd-ordered, fpd-free)", tok);
                o.methods[m] = true;
            }
            break;
        }
        case OPT_NOREF: o.reference = false; break;
        case OPT_DIM: o.dim = cli_parse_i64("--dim", optarg, 1); break;
        case OPT_CORES: {
            double v[4];
            o.n_cores = parse_list("--cores", optarg, v, 4);
            for (int i = 0; i < o.n_cores; i++) {
                if (v[i] != floor(v[i]) || v[i] > FPD_MAX_MODES) cli_usage_error("--cores: %g is not a core count", v[i]);
                o.cores[i] = (int64_t)v[i];
            }
            break;
        }
        case OPT_EPOCHS: o.epochs = cli_parse_i64("--epochs", optarg, 1); break;
        case OPT_BATCH: o.batch = cli_parse_i64("--batch", optarg, 1); break;
        case OPT_NEG: o.negatives = cli_parse_i64("--negatives", optarg, 0); break;
        case OPT_LR: o.lr = cli_parse_pos("--lr", optarg); break;
        case OPT_L2: o.l2 = cli_parse_f64("--l2", optarg, 0.0); break;
        case OPT_INIT: o.init_scale = cli_parse_pos("--init-scale", optarg); break;
        case OPT_SEEDS: {
            double v[8];
            o.n_seeds = parse_list("--seeds", optarg, v, 8);
            for (int i = 0; i < o.n_seeds; i++) o.seeds[i] = (uint64_t)v[i];
            break;
        }
        case OPT_MAXU: o.max_users = cli_parse_i64("--max-users", optarg, 1); break;
        case OPT_PLOT: o.plot = optarg; break;
        case OPT_JSON: o.json = true; break;
        case OPT_MERGE: o.merge = optarg; break;
        case OPT_POP: o.popularity = cli_parse_pos("--popularity", optarg); break;
        case OPT_CORE_LR: o.core_lr = cli_parse_pos("--core-lr", optarg); break;
        case OPT_TUNE_PROJ: {
            char buf[256];
            snprintf(buf, sizeof buf, "%s", optarg);
            for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                if (o.n_tune_proj == 4) cli_usage_error("--tune-free-proj takes up to 4 values");
                o.tune_proj[o.n_tune_proj++] = cli_parse_free_proj("--tune-free-proj", tok);
            }
            if (o.n_tune_proj == 0) cli_usage_error("--tune-free-proj needs at least one value");
            break;
        }
        case OPT_TUNE_SHARE:
            o.n_tune_share = parse_list_of("--tune-free-share", optarg, o.tune_share, 8, true);
            for (int q = 0; q < o.n_tune_share; q++)
                if (o.tune_share[q] > 1.0) cli_usage_error("--tune-free-share: %g is not in (0, 1]", o.tune_share[q]);
            break;
        case OPT_FREE_PROJ_LR: o.free_proj = cli_parse_free_proj("--free-proj", optarg); break;
        case OPT_ORDER_COST:
            if (strcmp(optarg, "stored") == 0) o.order_vocab = false;
            else if (strcmp(optarg, "vocabulary") == 0 || strcmp(optarg, "vocab") == 0) o.order_vocab = true;
            else cli_usage_error("--order-cost expects stored or vocabulary, got '%s'", optarg);
            break;
        case OPT_FREE_QAT: o.free_qat = true; break;
        case OPT_ABLATE: o.ablate = true; break;
        case OPT_FREE_DTYPE: {
            enum fpd_free_kind k;
            if (strcmp(optarg, "f32") == 0 || strcmp(optarg, "core") == 0) o.free_dtype = -1;
            else if (fpd_free_kind_from_name(optarg, &k)) o.free_dtype = (int)k;
            else cli_usage_error("--free-dtype expects f32, int8, int4, int8-sym or int4-sym, got '%s'", optarg);
            break;
        }
        case OPT_TUNE: {
            o.n_tune = parse_list_of("--tune-core-lr", optarg, o.tune_lr, 8, true);
            break;
        }
        case OPT_FREE_SHARE:
            o.free_share = cli_parse_pos("--free-share", optarg);
            if (o.free_share > 1.0) cli_usage_error("--free-share must be in (0, 1], got '%s'", optarg);
            break;
        case OPT_CORE_INIT:
            o.core_init_share = cli_parse_pos("--core-init-share", optarg);
            if (o.core_init_share >= 1.0) cli_usage_error("--core-init-share must be in (0, 1), got '%s'", optarg);
            break;
        case 'o': o.out = optarg; break;
        case 'h': usage(stdout); return CLI_EXIT_OK;
        case OPT_VERSION: printf("sample-compare-sizes %s (%s)\n", fpd_version(), fpd_build_features()); return CLI_EXIT_OK;
        case ':': cli_usage_error("option '%s' needs a value", argv[optind - 1]);
        default: cli_usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) cli_usage_error("unexpected argument '%s'", argv[optind]);
    if (o.merge) {
        if (o.movielens || o.gowalla) cli_usage_error("--merge trains nothing: no --movielens or --gowalla");
        struct data md;
        memset(&md, 0, sizeof md);
        struct row *mr = NULL;
        int mn = 0;
        if (!merge_tables(o.merge, &o, &md, &mr, &mn)) return CLI_EXIT_FAILURE;
        char *t = table_tsv(&md, &o, mr, mn);
        bool ok = t != NULL;
        if (ok) fputs(t, stdout);
        if (ok && o.out) {
            char p1[4096];
            snprintf(p1, sizeof p1, "%s.tsv", o.out);
            ok = write_text(p1, t);
        }
        if (ok && o.plot) ok = plot(o.plot, &md, &o, mr, mn, o.popularity > 0.0 ? o.popularity : NAN);
        free(t);
        free(mr);
        return ok ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
    }
    if (!o.movielens == !o.gowalla) cli_usage_error("give exactly one of --movielens PATH and --gowalla DIR");
    if (o.popularity > 0.0) cli_usage_error("--popularity goes with --merge (a training run computes it)");
    if (o.free_qat && (o.free_dtype < 0 || !o.methods[M_FPD_FREE]))
        cli_usage_error("--free-qat trains fpd-free's E as it is stored: it needs fpd-free among --methods and "
                        "--free-dtype int8, int4, int8-sym or int4-sym");
    const bool mf = o.gowalla != NULL;
    if (o.batch < 0) o.batch = mf ? 4096 : 256;
    if (o.negatives < 0) o.negatives = mf ? 1 : 4;
    if (o.lr < 0) o.lr = mf ? 1e-2 : 1e-3;
    if (mf && o.negatives < 1) cli_usage_error("--negatives must be >= 1 with the BPR loss");
    if (o.batch < 1 + o.negatives) cli_usage_error("--batch must be at least 1 + --negatives");
    cli_install_signals();

    struct data d;
    memset(&d, 0, sizeof d);
    int rc = CLI_EXIT_FAILURE;
    struct row *rows = NULL;
    json_t *runs = json_array();
    char *tsv = NULL;
    if (mf) {
        d.name = "gowalla";
        if (!gowalla_load(o.gowalla, &d)) goto done;
    } else {
        struct fpd_ncf_interactions r;
        struct fpd_error err = {0};
        d.name = "movielens";
        if (fpd_ncf_interactions_load(o.movielens, 1, &r, &err)) {
            cli_error("%s", err.msg);
            fpd_ncf_interactions_free(&r);
            goto done;
        }
        /* the split of sample-train-gmf --split-seed 1 */
        enum fpd_status st = fpd_ncf_split_leave_one_out(&r, o.max_users, 1, 99, &d.split, &err);
        fpd_ncf_interactions_free(&r);
        if (st) {
            cli_error("%s: %s", o.movielens, err.msg);
            goto done;
        }
        d.n_users = d.split.n_users;
        d.n_items = d.split.n_items;
        d.n_train = d.split.n_train;
        d.tr_users = d.split.train_users;
        d.tr_items = d.split.train_items;
        d.test = d.split.test;
    }
    fprintf(stderr, "%s: %s: %lld users, %lld items, %lld training positives; %lld epoch%s, seeds %d\n", cli_prog,
            d.name, (long long)d.n_users, (long long)d.n_items, (long long)d.n_train, (long long)o.epochs,
            o.epochs == 1 ? "" : "s", o.n_seeds);
    struct result pop = {NAN, NAN, 0.0, 0.0, NAN, {NAN, NAN}, {NAN, NAN}, NAN, NAN};
    if (!popularity(&d, &pop)) goto done;
    fprintf(stderr, "  %-12s %5s  %-22s          %s %.4f  NDCG %.4f\n", "popularity", "-", "(no parameters)",
            mf ? "Recall@20" : "HR@10", pop.m1, pop.m2);
    const int max_rows = 1 + o.n_ratios * M_COUNT;
    rows = calloc((size_t)max_rows, sizeof *rows);
    if (!rows || !runs) goto done;
    int n_rows = 0;
    if (o.reference) {
        config_make(&o, &d, M_DENSE, 1.0, &rows[n_rows].c);
        snprintf(rows[n_rows++].c.desc, sizeof rows[0].c.desc, "d=%lld (reference)", (long long)o.dim);
    }
    for (int q = 0; q < o.n_ratios; q++)
        for (int m = 0; m < M_COUNT; m++)
            if (o.methods[m]) config_make(&o, &d, (enum method)m, o.ratios[q], &rows[n_rows++].c);
    if (o.n_tune > 0 || o.n_tune_share > 0 || o.n_tune_proj > 0) { /* each FPD row's core step (and fpd-free's
                                                                     share and P), chosen on the validation split */
        struct data val;
        bool vok = data_validation(&d, &val);
        if (vok)
            fprintf(stderr, "%s: validation split (from the training positives only): %lld training, %lld held out; "
                    "seed %llu\n", cli_prog, (long long)val.n_train, (long long)(d.n_train - val.n_train),
                    (unsigned long long)o.seeds[0]);
        for (int i = 0; vok && i < n_rows; i++) {
            struct config *cf = &rows[i].c;
            if (cf->method != M_FPD && cf->method != M_FPD_ORDERED && cf->method != M_FPD_FREE) continue;
            const bool by_share = cf->method == M_FPD_FREE && o.n_tune_share > 0;
            const bool by_proj = cf->method == M_FPD_FREE && o.n_tune_proj > 0;
            if (!by_share && !by_proj && (!cf->fits || o.n_tune == 0)) continue;
            const int ns = by_share ? o.n_tune_share : 1, np = by_proj ? o.n_tune_proj : 1,
                      nl = o.n_tune > 0 ? o.n_tune : 1;
            double best = -1.0;
            struct config win = *cf;
            int nt = 0;
            double t_lr[256], t_share[256], t_proj[256], t_m1[256];
            char share_desc[8][160] = {{0}};
            char nofit[sizeof cf->why] = ""; /* why the largest share tried does not fit */
            double nofit_share = 0.0;
            for (int a = 0; a < ns && vok; a++) {
                struct config base = *cf;
                if (by_share) { /* the sizes for this share */
                    struct options os = o;
                    os.free_share = o.tune_share[a];
                    config_make(&os, &d, M_FPD_FREE, cf->ratio, &base);
                    if (!base.fits) {
                        fprintf(stderr, "  %-12s %5gx  share %g does not fit: %s\n", method_names[cf->method],
                                cf->ratio, o.tune_share[a], base.why);
                        if (o.tune_share[a] >= nofit_share) {
                            nofit_share = o.tune_share[a];
                            memcpy(nofit, base.why, sizeof nofit);
                        }
                        continue;
                    }
                    int same = 0; /* a share whose sizes an earlier one had (e.g. c capped at D): not trained again */
                    while (same < a && strcmp(share_desc[same], base.desc) != 0) same++;
                    snprintf(share_desc[a], sizeof share_desc[a], "%s", base.desc);
                    if (same < a) {
                        fprintf(stderr, "  %-12s %5gx  share %g gives the sizes of share %g (%s): not trained again\n",
                                method_names[cf->method], cf->ratio, o.tune_share[a], o.tune_share[same], base.desc);
                        continue;
                    }
                }
                if (!base.fits) continue;
                for (int b = 0; b < np && vok; b++)
                    for (int q = 0; q < nl && vok; q++) {
                        struct config cc = base;
                        struct result res;
                        memset(&res, 0, sizeof res);
                        cc.core_lr = o.n_tune > 0 ? o.tune_lr[q] : 0.0; /* 0: the common --core-lr */
                        if (by_proj) cc.free_proj = o.tune_proj[b];
                        if (run_one(&o, &val, &cc, o.seeds[0], &res) || cli_interrupted()) {
                            vok = false;
                            break;
                        }
                        t_lr[nt] = cc.core_lr > 0.0 ? cc.core_lr : (o.core_lr > 0.0 ? o.core_lr : o.lr);
                        t_share[nt] = by_share ? o.tune_share[a] : 0.0;
                        t_proj[nt] = by_proj ? o.tune_proj[b] : NAN;
                        t_m1[nt++] = res.m1;
                        char pb[32];
                        fprintf(stderr, "  %-12s %5gx  %-22s core-lr %-8g P %-6s validation %s %.4f  loss %.4f  %.1f s\n",
                                method_names[cf->method], cf->ratio, cc.desc, t_lr[nt - 1],
                                cc.method == M_FPD_FREE ? proj_name(cc.free_proj, pb, sizeof pb) : "-",
                                mf ? "Recall@20" : "HR@10", res.m1, res.loss, res.seconds);
                        if (res.m1 > best) { /* ties: the first tried */
                            best = res.m1;
                            win = cc;
                        }
                    }
            }
            if (best < 0.0 && by_share && nofit[0]) { /* no share of the grid fits: say so, not the default's why */
                cf->fits = false;
                snprintf(cf->why, sizeof cf->why, "no share of --tune-free-share fits (%g: %s)", nofit_share, nofit);
                continue;
            }
            if (best < 0.0) continue; /* nothing fits: the row stays as it was */
            *cf = win;
            cf->n_tried = nt;
            memcpy(cf->tried_lr, t_lr, (size_t)nt * sizeof(double));
            memcpy(cf->tried_share, t_share, (size_t)nt * sizeof(double));
            memcpy(cf->tried_proj, t_proj, (size_t)nt * sizeof(double));
            memcpy(cf->tried_m1, t_m1, (size_t)nt * sizeof(double));
            size_t l = strlen(cf->desc);
            if (o.n_tune > 0) snprintf(cf->desc + l, sizeof cf->desc - l, " clr=%g", cf->core_lr);
            l = strlen(cf->desc);
            if (by_share) snprintf(cf->desc + l, sizeof cf->desc - l, " share=%g", cf->free_share);
            l = strlen(cf->desc);
            char pb[32];
            if (by_proj) snprintf(cf->desc + l, sizeof cf->desc - l, " P=%s", proj_name(cf->free_proj, pb, sizeof pb));
        }
        data_free(&val);
        if (!vok) goto done;
    }
    for (int i = 0; i < n_rows; i++) {
        struct row *r = &rows[i];
        if (!r->c.fits) {
            fprintf(stderr, "  %-12s %5gx  does not fit: %s\n", method_names[r->c.method], r->c.ratio, r->c.why);
            continue;
        }
        for (int t = 0; t < 2; t++)
            if (r->c.params[t] > r->c.budget[t] && r->c.ratio != 1.0) { /* a bug: never run over budget */
                cli_error("%s at %gx: table %d has %lld parameters, over its budget %lld", method_names[r->c.method],
                          r->c.ratio, t, (long long)r->c.params[t], (long long)r->c.budget[t]);
                goto done;
            }
        double m1[8], m2[8], sec = 0.0;
        for (int s = 0; s < o.n_seeds; s++) {
            struct result res;
            memset(&res, 0, sizeof res);
            if (run_one(&o, &d, &r->c, o.seeds[s], &res)) goto done;
            if (cli_interrupted()) goto done;
            m1[s] = res.m1;
            m2[s] = res.m2;
            sec += res.seconds;
            char f32[64] = "";
            if (!isnan(res.m1_f32)) snprintf(f32, sizeof f32, " (F32 before quantization %.4f)", res.m1_f32);
            fprintf(stderr, "  %-12s %5gx  %-22s seed %llu  %s %.4f%s  NDCG %.4f  loss %.4f  %.1f s\n",
                    r->c.ratio == 1.0 ? "dense-full" : method_names[r->c.method], r->c.ratio, r->c.desc,
                    (unsigned long long)o.seeds[s], mf ? "Recall@20" : "HR@10", res.m1, f32, res.m2, res.loss,
                    res.seconds);
            if (!isnan(res.core_move[0])) {
                char no_tt[80] = "";
                if (!isnan(res.m1_no_tt)) snprintf(no_tt, sizeof no_tt, ", cores zeroed (E[i] P alone) %.4f", res.m1_no_tt);
                fprintf(stderr, "    ablation: cores moved %.4f / %.4f (users / items, relative to their initialization); "
                                "%s with the cores at their initialization %.4f%s\n",
                        res.core_move[0], res.core_move[1], mf ? "Recall@20" : "HR@10", res.m1_cores_init, no_tt);
            }
            json_t *run = json_pack("{s:s, s:f, s:s, s:I, s:I, s:I, s:f, s:f, s:f, s:f}", "method",
                                r->c.ratio == 1.0 ? "dense-full" : method_names[r->c.method], "ratio", r->c.ratio,
                                "config", r->c.desc, "seed", (json_int_t)o.seeds[s], "params",
                                (json_int_t)(r->c.params[0] + r->c.params[1]), "budget",
                                (json_int_t)(r->c.budget[0] + r->c.budget[1]), mf ? "recall20" : "hr10", res.m1,
                                mf ? "ndcg20" : "ndcg10", res.m2, "seconds", res.seconds, "final_loss", res.loss);
            if (!isnan(res.m1_f32)) /* int8/int4: the metric of the F32 table the quantized one came from */
                json_object_set_new(run, mf ? "recall20_f32" : "hr10_f32", json_real(res.m1_f32));
            if (!isnan(res.core_move[0])) {
                json_object_set_new(run, "core_move", json_pack("[f, f]", res.core_move[0], res.core_move[1]));
                json_object_set_new(run, "core_init_norm",
                                    json_pack("[f, f]", res.core_init_norm[0], res.core_init_norm[1]));
                json_object_set_new(run, mf ? "recall20_cores_init" : "hr10_cores_init", json_real(res.m1_cores_init));
            }
            if (!isnan(res.m1_no_tt)) json_object_set_new(run, mf ? "recall20_no_tt" : "hr10_no_tt", json_real(res.m1_no_tt));
            json_array_append_new(runs, run);
        }
        r->n = o.n_seeds;
        mean_sd(m1, o.n_seeds, &r->m1, &r->m1_sd);
        mean_sd(m2, o.n_seeds, &r->m2, &r->m2_sd);
        r->seconds = sec / o.n_seeds;
    }
    if (!(tsv = table_tsv(&d, &o, rows, n_rows))) goto done;
    json_t *res = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:I, s:o}", "schema",
                            "sample-compare-sizes/1", "dataset", d.name, "users", (json_int_t)d.n_users, "items",
                            (json_int_t)d.n_items, "train", (json_int_t)d.n_train, "dim", (json_int_t)o.dim, "epochs",
                            (json_int_t)o.epochs, "batch", (json_int_t)o.batch, "negatives", (json_int_t)o.negatives,
                            "lr", o.lr, "core_lr", o.core_lr > 0 ? o.core_lr : o.lr, "free_share", o.free_share, "core_init_share", o.core_init_share, "cores", (json_int_t)o.cores[0], "runs", runs);
    runs = NULL;
    json_t *tab = json_array();
    for (int i = 0; i < n_rows; i++) {
        const struct row *r = &rows[i];
        json_t *x = json_pack("{s:s, s:f, s:b, s:I, s:I}", "method",
                              r->c.ratio == 1.0 ? "dense-full" : method_names[r->c.method], "ratio", r->c.ratio,
                              "fits", r->c.fits, "budget", (json_int_t)(r->c.budget[0] + r->c.budget[1]), "budget_user",
                              (json_int_t)r->c.budget[0]);
        json_object_set_new(x, "budget_item", json_integer(r->c.budget[1]));
        if (r->c.fits) {
            json_object_set_new(x, "config", json_string(r->c.desc));
            json_object_set_new(x, "dim", json_integer(r->c.dim));
            json_object_set_new(x, "params", json_integer(r->c.params[0] + r->c.params[1]));
            json_object_set_new(x, "params_user", json_integer(r->c.params[0]));
            json_object_set_new(x, "params_item", json_integer(r->c.params[1]));
            if (r->c.n_tried > 0) { /* --tune-*: the choice and each trial's validation metric */
                json_t *v = json_array();
                for (int q = 0; q < r->c.n_tried; q++) {
                    json_t *t = json_pack("{s:f, s:f}", "core_lr", r->c.tried_lr[q], mf ? "recall20" : "hr10",
                                          r->c.tried_m1[q]);
                    if (r->c.tried_share[q] > 0.0) json_object_set_new(t, "free_share", json_real(r->c.tried_share[q]));
                    char pb[32];
                    if (!isnan(r->c.tried_proj[q]))
                        json_object_set_new(t, "free_proj", json_string(proj_name(r->c.tried_proj[q], pb, sizeof pb)));
                    json_array_append_new(v, t);
                }
                if (r->c.core_lr > 0.0) json_object_set_new(x, "core_lr", json_real(r->c.core_lr));
                json_object_set_new(x, "validation", v);
            }
            if (r->c.method == M_FPD_ORDERED || r->c.method == M_FPD_FREE || r->c.method == M_QR_ORDERED)
                json_object_set_new(x, "order_cost", json_string(o.order_vocab ? "vocabulary" : "stored"));
            if (r->c.method == M_FPD_FREE) {
                char pb[32];
                json_object_set_new(x, "free_share", json_real(r->c.free_share));
                json_object_set_new(x, "free_proj", json_string(proj_name(r->c.free_proj, pb, sizeof pb)));
                json_object_set_new(x, "free_dtype",
                                    json_string(r->c.free_dtype < 0 ? "f32" : fpd_free_kind_name((enum fpd_free_kind)r->c.free_dtype)));
                json_object_set_new(x, "free_qat", json_boolean(o.free_qat));
            }
            json_object_set_new(x, mf ? "recall20" : "hr10", json_real(r->m1));
            json_object_set_new(x, mf ? "recall20_sd" : "hr10_sd", json_real(r->m1_sd));
            json_object_set_new(x, mf ? "ndcg20" : "ndcg10", json_real(r->m2));
            json_object_set_new(x, mf ? "ndcg20_sd" : "ndcg10_sd", json_real(r->m2_sd));
            json_object_set_new(x, "seconds", json_real(r->seconds));
        } else {
            json_object_set_new(x, "why", json_string(r->c.why));
        }
        json_array_append_new(tab, x);
    }
    json_object_set_new(res, "table", tab);
    json_object_set_new(res, "popularity", json_pack("{s:f, s:f}", mf ? "recall20" : "hr10", pop.m1,
                                                      mf ? "ndcg20" : "ndcg10", pop.m2));
    char *js = json_dumps(res, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    json_decref(res);
    if (!js) goto done;
    if (o.json) printf("%s\n", js);
    else fputs(tsv, stdout);
    bool ok = true;
    if (o.out) {
        char p1[4096], p2[4096];
        snprintf(p1, sizeof p1, "%s.tsv", o.out);
        snprintf(p2, sizeof p2, "%s.json", o.out);
        size_t jl = strlen(js);
        ok = write_text(p1, tsv);
        if (ok) {
            js[jl] = '\0';
            char *withnl = malloc(jl + 2);
            ok = withnl != NULL;
            if (ok) {
                memcpy(withnl, js, jl);
                withnl[jl] = '\n';
                withnl[jl + 1] = '\0';
                ok = write_text(p2, withnl);
                free(withnl);
            }
        }
    }
    free(js);
    if (ok && o.plot) ok = plot(o.plot, &d, &o, rows, n_rows, pop.m1);
    if (ok) rc = CLI_EXIT_OK;
done:
    free(tsv);
    free(rows);
    json_decref(runs);
    data_free(&d);
    return rc;
}
