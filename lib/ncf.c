/*
 * ncf.c - GMF, the generalized matrix factorization model of Neural Collaborative
 * Filtering (He et al., WWW 2017), over dense or FPD embedding tables: logits,
 * leave-one-out ranking metrics (HR@k, NDCG@k) and training on implicit feedback
 * with sampled negatives (see the "Recommender models" section of fpd.h).
 *
 * Training. Each step takes batch_size samples: positives in a shuffled order,
 * each followed by its `negatives` sampled negatives (NCF's instance generation;
 * NCF then shuffles instances, which changes nothing in expectation). The loss is
 * the mean binary cross-entropy of sigmoid(logit) over the batch. Each distinct
 * user and item row of the batch is looked up once and its gradient is
 * accumulated once; FPD tables run through the engine (fpd_engine_forward,
 * fpd_engine_backward, fpd_engine_step with lazy Adam). Adam is "lazy": a dense row or a core
 * slice G_m[t, i_m] moves only in steps where the batch touches it (SparseAdam),
 * so dense and FPD tables see the same optimizer and a 1-core FPD layer trains
 * exactly like the dense table it is.
 */
#include "fpd-impl.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------ helpers */


static enum fpd_status emb_check(const struct fpd_embedding *e, const char *what, struct fpd_error *err) {
    if (e->rows < 1 || e->dim < 1)
        return fpd__err(err, FPD_STATUS_SHAPE, "%s table [%lld, %lld] must have at least one row and column", what,
                        (long long)e->rows, (long long)e->dim);
    if (e->layer) {
        const struct fpd_layer_shape *s = fpd_layer_get_shape(e->layer);
        if (s->rows != e->rows || s->dim != e->dim)
            return fpd__err(err, FPD_STATUS_SHAPE, "%s table: FPD layer is [%lld, %lld] but the table says [%lld, %lld]",
                            what, (long long)s->rows, (long long)s->dim, (long long)e->rows, (long long)e->dim);
    } else if (e->composed) {
        const struct fpd_composed_shape *s = &e->composed->shape;
        if (s->rows != e->rows || s->dim != e->dim)
            return fpd__err(err, FPD_STATUS_SHAPE, "%s table: %s table is [%lld, %lld] but the table says [%lld, %lld]",
                            what, fpd_composed_kind_name(s->kind), (long long)s->rows, (long long)s->dim,
                            (long long)e->rows, (long long)e->dim);
    } else if (!e->dense) {
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "%s table has neither an FPD layer nor dense rows", what);
    }
    return FPD_STATUS_OK;
}

static enum fpd_status gmf_check(const struct fpd_gmf *m, struct fpd_error *err) {
    FPD_ASSERT(m && m->weight);
    enum fpd_status st;
    if ((st = emb_check(&m->user, "user", err)) || (st = emb_check(&m->item, "item", err))) return st;
    if (m->user.dim != m->item.dim)
        return fpd__err(err, FPD_STATUS_SHAPE, "user table dim %lld != item table dim %lld", (long long)m->user.dim,
                        (long long)m->item.dim);
    return FPD_STATUS_OK;
}

static enum fpd_status ids_check(const int64_t *ids, int64_t n, int64_t rows, const char *what,
                                 struct fpd_error *err) {
    for (int64_t t = 0; t < n; t++)
        if (ids[t] < 0 || ids[t] >= rows)
            return fpd__err(err, FPD_STATUS_INVALID_ARG, "%s id %lld (entry %lld) is outside [0, %lld)", what,
                            (long long)ids[t], (long long)t, (long long)rows);
    return FPD_STATUS_OK;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Distinct values of ids[n], sorted, into uniq (n slots), count in *nu; slot[t]
 * (if non-NULL) is the position of ids[t] in uniq. */
static void distinct_ids(const int64_t *ids, int64_t n, int64_t *uniq, int64_t *nu, int64_t *slot) {
    memcpy(uniq, ids, (size_t)n * sizeof(int64_t));
    qsort(uniq, (size_t)n, sizeof(int64_t), cmp_i64);
    int64_t u = 0;
    for (int64_t t = 0; t < n; t++)
        if (u == 0 || uniq[u - 1] != uniq[t]) uniq[u++] = uniq[t];
    *nu = u;
    if (slot)
        for (int64_t t = 0; t < n; t++) {
            const int64_t *p = bsearch(&ids[t], uniq, (size_t)u, sizeof(int64_t), cmp_i64);
            slot[t] = p - uniq;
        }
}

/* The same for a training batch in O(n): mark[rows] is -1 everywhere on entry and
 * on return; uniq is in order of first appearance. */
static void distinct_ids_marked(const int64_t *ids, int64_t n, int64_t *uniq, int64_t *nu, int64_t *slot,
                                int64_t *mark) {
    int64_t u = 0;
    for (int64_t t = 0; t < n; t++) {
        if (mark[ids[t]] < 0) {
            mark[ids[t]] = u;
            uniq[u++] = ids[t];
        }
        slot[t] = mark[ids[t]];
    }
    for (int64_t q = 0; q < u; q++) mark[uniq[q]] = -1;
    *nu = u;
}

/* Rows ids[0..n) of a table into out[n * dim]. */
static enum fpd_status emb_rows(const struct fpd_embedding *e, const int64_t *ids, int64_t n, float *out,
                                struct fpd_error *err) {
    if (e->layer) return fpd_layer_lookup(e->layer, ids, n, out, err);
    if (e->composed) return fpd_composed_lookup(e->composed, ids, n, out, err);
    for (int64_t t = 0; t < n; t++)
        memcpy(out + t * e->dim, e->dense + ids[t] * e->dim, (size_t)e->dim * sizeof(float));
    return FPD_STATUS_OK;
}

static inline double gmf_logit(const float *u, const float *i, const float *w, float b, int64_t dim) {
    double z = 0.0;
    for (int64_t j = 0; j < dim; j++) z += (double)u[j] * (double)i[j] * (double)w[j];
    return z + (double)b;
}

/* ------------------------------------------------------------ evaluation */

/* The held-out item's place among `ties` other candidates with its logit: uniform
 * in 0..ties, seeded by the user (so a call is repeatable). */
static int64_t rank_tie_place(int64_t user, int64_t ties) {
    if (ties <= 0) return 0;
    uint64_t rs = 0x5851f42d4c957f2dull ^ (uint64_t)user;
    return (int64_t)(fpd__rand_u64(&rs) % (uint64_t)(ties + 1));
}

/* The distinct user and item rows of a set of pairs, each computed once: ub
 * [nu, dim] holds the rows of users uu[0..nu), and the row of users[t] is
 * ub + su[t] * dim; the same for items. */
struct pair_rows {
    int64_t *uu, *su, *ui, *si;
    float *ub, *ib;
    int64_t nu, ni;
};

static void pair_rows_free(struct pair_rows *p) {
    fpd_free(p->uu);
    fpd_free(p->su);
    fpd_free(p->ui);
    fpd_free(p->si);
    fpd_free(p->ub);
    fpd_free(p->ib);
    memset(p, 0, sizeof *p);
}

static enum fpd_status pair_rows_load(const struct fpd_gmf *m, const int64_t *users, int64_t n_users,
                                      const int64_t *items, int64_t n_items, struct pair_rows *p,
                                      struct fpd_error *err) {
    enum fpd_status st = FPD_STATUS_OK;
    const int64_t dim = m->user.dim;
    memset(p, 0, sizeof *p);
    p->uu = fpd_malloc((size_t)n_users * sizeof(int64_t));
    p->su = fpd_malloc((size_t)n_users * sizeof(int64_t));
    p->ui = fpd_malloc((size_t)n_items * sizeof(int64_t));
    p->si = fpd_malloc((size_t)n_items * sizeof(int64_t));
    if (!p->uu || !p->su || !p->ui || !p->si) {
        st = fpd__err(err, FPD_STATUS_NOMEM, "out of memory for %lld GMF pairs", (long long)n_items);
        goto fail;
    }
    distinct_ids(users, n_users, p->uu, &p->nu, p->su);
    distinct_ids(items, n_items, p->ui, &p->ni, p->si);
    p->ub = fpd_malloc((size_t)(p->nu * dim) * sizeof(float));
    p->ib = fpd_malloc((size_t)(p->ni * dim) * sizeof(float));
    if (!p->ub || !p->ib) {
        st = fpd__err(err, FPD_STATUS_NOMEM, "out of memory for %lld + %lld embedding rows", (long long)p->nu,
                      (long long)p->ni);
        goto fail;
    }
    if ((st = emb_rows(&m->user, p->uu, p->nu, p->ub, err)) || (st = emb_rows(&m->item, p->ui, p->ni, p->ib, err)))
        goto fail;
    return FPD_STATUS_OK;
fail:
    pair_rows_free(p);
    return st;
}

enum fpd_status fpd_embedding_lookup(const struct fpd_embedding *e, const int64_t *ids, int64_t n, float *out,
                                     struct fpd_error *err) {
    enum fpd_status st;
    if ((st = emb_check(e, "embedding", err)) || (st = ids_check(ids, n, e->rows, "embedding", err))) return st;
    return n > 0 ? emb_rows(e, ids, n, out, err) : FPD_STATUS_OK;
}

/* The NCF model of kind GMF over m's tables (views). */
static struct fpd_ncf gmf_as_ncf(const struct fpd_gmf *m) {
    struct fpd_ncf n;
    memset(&n, 0, sizeof n);
    n.kind = FPD_NCF_KIND_GMF;
    n.mf_user = m->user;
    n.mf_item = m->item;
    n.weight = m->weight;
    n.bias = m->bias;
    return n;
}

enum fpd_status fpd_gmf_logits(const struct fpd_gmf *m, const int64_t *users, const int64_t *items, int64_t n,
                               float *out, struct fpd_error *err) {
    enum fpd_status st;
    if ((st = gmf_check(m, err))) return st;
    const struct fpd_ncf g = gmf_as_ncf(m);
    return fpd_ncf_logits(&g, users, items, n, out, err);
}

enum fpd_status fpd_gmf_rank(const struct fpd_gmf *m, const int64_t *users, const int64_t *cand, int64_t n,
                             int64_t n_cand, int64_t k, struct fpd_rank_metrics *out, int64_t *rank_out,
                             struct fpd_error *err) {
    enum fpd_status st;
    memset(out, 0, sizeof *out);
    out->k = k;
    if ((st = gmf_check(m, err))) return st;
    const struct fpd_ncf g = gmf_as_ncf(m);
    return fpd_ncf_rank(&g, users, cand, n, n_cand, k, out, rank_out, err);
}

/* ------------------------------------------------------------ training */

struct fpd_gmf_train_params fpd_gmf_train_default_params(void) {
    struct fpd_gmf_train_params p;
    memset(&p, 0, sizeof p);
    p.epochs = 20;
    p.batch_size = 256;
    p.negatives = 4;
    p.learning_rate = 1e-3;
    p.train_tables = true;
    p.train_prediction = true;
    return p;
}

#define ADAM_B1 0.9f
#define ADAM_B2 0.999f
#define ADAM_EPS 1e-8f

/* Optimizer state of one table. */
struct table_state {
    const struct fpd_embedding *e;
    int64_t max_rows;               /* distinct rows a batch can touch              */
    int64_t *uniq, *slot;           /* [batch] distinct ids, slot of each sample   */
    int64_t *mark;                  /* [rows] -1, or a row's slot while a batch is gathered */
    int64_t nu;
    float *rows, *grad;             /* [max_rows * dim] looked-up rows, their grads */
    float *trows;                   /* [max_rows * tdim] the teacher's rows, or NULL */
    float *mo, *ve;                 /* dense: Adam moments [rows * dim]             */
    struct fpd_engine *eng;         /* FPD: the engine (lazy Adam on core slices)   */
    struct fpd_bag_batch batch;     /* FPD: the batch of distinct rows              */
};

static void table_state_free(struct table_state *ts) {
    fpd_free(ts->uniq);
    fpd_free(ts->slot);
    fpd_free(ts->mark);
    fpd_free(ts->rows);
    fpd_free(ts->grad);
    fpd_free(ts->trows);
    fpd_free(ts->mo);
    fpd_free(ts->ve);
    fpd_engine_free(ts->eng);
}

static enum fpd_status table_state_init(struct table_state *ts, const struct fpd_embedding *e, int64_t batch,
                                        const struct fpd_gmf_train_params *p, struct fpd_error *err) {
    memset(ts, 0, sizeof *ts);
    ts->e = e;
    ts->max_rows = batch;
    const int64_t dim = e->dim;
    bool ok = (ts->uniq = fpd_malloc((size_t)batch * sizeof(int64_t))) &&
              (ts->slot = fpd_malloc((size_t)batch * sizeof(int64_t))) &&
              (ts->mark = fpd_malloc((size_t)e->rows * sizeof(int64_t))) &&
              (ts->rows = fpd_malloc((size_t)(batch * dim) * sizeof(float))) &&
              (ts->grad = fpd_malloc((size_t)(batch * dim) * sizeof(float))) &&
              (!p->teacher || (ts->trows = fpd_malloc((size_t)(batch * p->teacher->user.dim) * sizeof(float))));
    if (ok)
        for (int64_t r = 0; r < e->rows; r++) ts->mark[r] = -1;
    if (ok && p->train_tables && !e->layer && !e->composed)
        ok = (ts->mo = fpd_calloc((size_t)(e->rows * dim), sizeof(float))) &&
             (ts->ve = fpd_calloc((size_t)(e->rows * dim), sizeof(float)));
    if (!ok) {
        table_state_free(ts);
        return fpd__err(err, FPD_STATUS_NOMEM, "out of memory for the training state");
    }
    if (e->layer) {
        const struct fpd_layer_shape *s = fpd_layer_get_shape(e->layer);
        struct fpd_engine_params ep = fpd_engine_default_params();
        ep.optimizer.kind = FPD_OPTIMIZER_KIND_LAZY_ADAM;
        ep.backend = p->backend; /* NULL: the CPU */
        ep.optimizer.learning_rate = p->core_learning_rate > 0.0 ? p->core_learning_rate : p->learning_rate;
        for (int32_t m = 0; p->core_lr_relative && m < s->k; m++) {
            const float *c = fpd_layer_core_const(e->layer, m);
            const int64_t nel = fpd_layer_shape_core_numel(s, m);
            double ss = 0.0;
            for (int64_t q = 0; q < nel; q++) ss += (double)c[q] * c[q];
            double scale = sqrt(ss / (double)nel);
            ep.optimizer.lr_scale[m] = scale > 0.0 ? scale : 1e-2;
        }
        /* free coordinates (if any): E steps at the dense rows' learning rate, P at
         * free_proj_learning_rate (0: the cores'), or not at all */
        ep.optimizer.free_lr_scale = p->learning_rate / ep.optimizer.learning_rate;
        ep.optimizer.free_proj_lr_scale =
            p->free_proj_learning_rate > 0.0 ? p->free_proj_learning_rate / ep.optimizer.learning_rate : 1.0;
        ep.optimizer.free_proj_fixed = p->free_proj_fixed;
        ep.free_qat = p->free_qat && fpd_layer_get_free_coords(e->layer) > 0;
        ep.free_qat_kind = p->free_qat_kind;
        enum fpd_status st = fpd_engine_init(e->layer, &ep, &ts->eng, err);
        if (st) {
            table_state_free(ts);
            return st;
        }
    }
    return FPD_STATUS_OK;
}

/* The batch's distinct rows ts->uniq[0..nu) into ts->rows (FPD: through the
 * engine, which keeps the batch for the backward). */
static enum fpd_status table_rows(struct table_state *ts, struct fpd_error *err) {
    if (!ts->eng) return emb_rows(ts->e, ts->uniq, ts->nu, ts->rows, err);
    ts->batch = (struct fpd_bag_batch){.indices = ts->uniq, .n_indices = ts->nu, .mode = FPD_BAG_MODE_NONE,
                                       .padding_idx = -1};
    return fpd_engine_forward(ts->eng, &ts->batch, ts->rows, err);
}

/* Lazy Adam step on the rows (dense) or core slices (FPD) that the batch
 * touched, from ts->grad [nu, dim]. */
static enum fpd_status table_update(struct table_state *ts, float lr, float bc1, float bc2, struct fpd_error *err) {
    const struct fpd_embedding *e = ts->e;
    const int64_t dim = e->dim;
    if (e->composed) return fpd_composed_adam_step(e->composed, ts->uniq, ts->nu, ts->grad, lr, bc1, bc2, err);
    if (!e->layer) {
        for (int64_t q = 0; q < ts->nu; q++) {
            int64_t off = ts->uniq[q] * dim;
            fpd__adam_update(e->dense + off, ts->grad + q * dim, ts->mo + off, ts->ve + off, dim, lr, ADAM_B1,
                             ADAM_B2, ADAM_EPS, bc1, bc2);
        }
        return FPD_STATUS_OK;
    }
    enum fpd_status st = fpd_engine_backward(ts->eng, &ts->batch, ts->grad, err);
    return st ? st : fpd_engine_step(ts->eng, err);
}

/* Per-user sorted positive items (CSR), for negative sampling. */
struct user_items {
    int64_t *off;      /* [n_users + 1] */
    int64_t *items;    /* [n] sorted within each user */
    int64_t *distinct; /* [n_users] distinct items per user */
};

static void user_items_free(struct user_items *ui) {
    fpd_free(ui->off);
    fpd_free(ui->items);
    fpd_free(ui->distinct);
}

static enum fpd_status user_items_init(struct user_items *ui, const int64_t *users, const int64_t *items, int64_t n,
                                       int64_t n_users, struct fpd_error *err) {
    memset(ui, 0, sizeof *ui);
    ui->off = fpd_calloc((size_t)(n_users + 1), sizeof(int64_t));
    ui->items = fpd_malloc((size_t)n * sizeof(int64_t));
    ui->distinct = fpd_calloc((size_t)n_users, sizeof(int64_t));
    int64_t *fill = fpd_calloc((size_t)n_users, sizeof(int64_t));
    if (!ui->off || !ui->items || !ui->distinct || !fill) {
        fpd_free(fill);
        user_items_free(ui);
        return fpd__err(err, FPD_STATUS_NOMEM, "out of memory for the positives of %lld users", (long long)n_users);
    }
    for (int64_t t = 0; t < n; t++) ui->off[users[t] + 1]++;
    for (int64_t u = 0; u < n_users; u++) ui->off[u + 1] += ui->off[u];
    for (int64_t t = 0; t < n; t++) ui->items[ui->off[users[t]] + fill[users[t]]++] = items[t];
    for (int64_t u = 0; u < n_users; u++) {
        int64_t a = ui->off[u], b = ui->off[u + 1];
        qsort(ui->items + a, (size_t)(b - a), sizeof(int64_t), cmp_i64);
        for (int64_t q = a; q < b; q++) ui->distinct[u] += q == a || ui->items[q] != ui->items[q - 1];
    }
    fpd_free(fill);
    return FPD_STATUS_OK;
}

static bool user_has(const struct user_items *ui, int64_t u, int64_t item) {
    int64_t a = ui->off[u], b = ui->off[u + 1];
    return bsearch(&item, ui->items + a, (size_t)(b - a), sizeof(int64_t), cmp_i64) != NULL;
}

/* log(1 + exp(x)) without overflow */
static inline double softplus(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }

/* order_rows: give the FPD layer or QR table of table e (the ids `ids` of the
 * positives, the other side `other` with other_rows ids) a row order from the
 * interactions, unless it has one (fpd_row_order_interactions, 16 dims). */
static enum fpd_status order_table_rows(const struct fpd_embedding *e, const int64_t *ids, const int64_t *other,
                                        int64_t n, int64_t other_rows, uint64_t seed, struct fpd_error *err) {
    struct fpd_layer *l = e->layer;
    struct fpd_composed *qr = !l && e->composed && e->composed->shape.kind == FPD_COMPOSED_KIND_QR ? e->composed : NULL;
    if (l ? fpd_layer_row_perm(l) != NULL : !qr || qr->row_perm) return FPD_STATUS_OK;
    /* a QR table is ordered as a two-core layer whose digits are its quotient and
     * remainder: row shape (ceil(rows / m), m); the column shape only has to be valid */
    struct fpd_layer_shape qs;
    memset(&qs, 0, sizeof qs);
    if (qr) {
        qs.rows = e->rows;
        qs.dim = e->dim;
        qs.k = 2;
        qs.terms = 1;
        qs.row_shape[0] = qr->table_rows[0];
        qs.row_shape[1] = qr->shape.buckets;
        qs.col_shape[0] = e->dim;
        qs.col_shape[1] = 1;
        qs.ranks[0] = qs.ranks[1] = qs.ranks[2] = 1;
    }
    int64_t *perm = fpd_malloc((size_t)e->rows * sizeof(int64_t));
    if (!perm) return fpd__err(err, FPD_STATUS_NOMEM, "out of memory for a row order of %lld ids", (long long)e->rows);
    enum fpd_status st = fpd_row_order_interactions(ids, other, n, e->rows, other_rows,
                                                    l ? fpd_layer_get_shape(l) : &qs, 16, seed, perm, err);
    if (!st) st = l ? fpd_layer_set_row_perm(l, perm, err) : fpd_composed_set_row_perm(qr, perm, err);
    fpd_free(perm);
    return st;
}

/* free_coords: give the FPD layer of table e (when it has none) c free coordinates:
 * P with orthonormal rows (P P^T = I_c; Gram-Schmidt of a Gaussian [c, dim] drawn
 * from p_seed, which the caller makes the same for every table of a model, so that
 * at the start the free parts of two tables meet as E_u E_v^T: a dense d = c model's
 * dot product), E = 0 (training starts from the table as given) or, with
 * e_scale > 0, E ~ N(0, e_scale^2) from e_seed (see fpd_gmf_train_params.free_coords
 * and .free_init_scale). */
#define FREE_P_SEED 0x2545f4914f6cdd1dull /* one P stream for all tables of a model */
static enum fpd_status add_free_coords(const struct fpd_embedding *e, int64_t c, double e_scale, uint64_t p_seed,
                                       uint64_t e_seed, struct fpd_error *err) {
    struct fpd_layer *l = e->layer;
    if (!l || fpd_layer_get_free_coords(l) > 0) return FPD_STATUS_OK;
    const int64_t D = e->dim;
    if (c > D)
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "%lld free coordinates exceed the table's dimension %lld",
                        (long long)c, (long long)D);
    double *q = fpd_malloc((size_t)(c * D) * sizeof(double));
    if (!q) return fpd__err(err, FPD_STATUS_NOMEM, "out of memory for the free coordinates' projection");
    for (int64_t a = 0; a < c; a++) { /* modified Gram-Schmidt; a degenerate draw (probability 0 for c <= D)
                                         is redrawn */
        double *r = q + a * D, nrm = 0.0;
        while (!(nrm > 1e-6)) {
            for (int64_t j = 0; j < D; j++) r[j] = fpd__rand_normal(&p_seed);
            for (int64_t b = 0; b < a; b++) {
                double dot = 0.0;
                for (int64_t j = 0; j < D; j++) dot += r[j] * q[b * D + j];
                for (int64_t j = 0; j < D; j++) r[j] -= dot * q[b * D + j];
            }
            nrm = 0.0;
            for (int64_t j = 0; j < D; j++) nrm += r[j] * r[j];
            nrm = sqrt(nrm);
        }
        for (int64_t j = 0; j < D; j++) r[j] /= nrm;
    }
    enum fpd_status st = fpd_layer_set_free_coords(l, c, NULL, NULL, err);
    if (!st) {
        float *pr = fpd_layer_get_free_p(l);
        for (int64_t x = 0; x < c * D; x++) pr[x] = (float)q[x];
        if (e_scale > 0.0) {
            float *er = fpd_layer_get_free_e(l);
            for (int64_t x = 0; x < c * e->rows; x++) er[x] = (float)(e_scale * fpd__rand_normal(&e_seed));
        }
    }
    fpd_free(q);
    return st;
}

/* order[0..n) shuffled in place (Fisher-Yates) with rng's stream. */
static void shuffle(int64_t *order, int64_t n, uint64_t *rng) {
    for (int64_t t = n - 1; t > 0; t--) {
        int64_t j = (int64_t)(fpd__rand_u64(rng) % (uint64_t)(t + 1));
        int64_t x = order[t];
        order[t] = order[j];
        order[j] = x;
    }
}

/* The samples of one batch: each of the np positives order[0..np) (label 1), then
 * its `negatives` items drawn uniformly among those the user has no positive with
 * (none for a user who has every item), into su, si, lab; returns their count. */
static int64_t sample_batch(const int64_t *order, int64_t np, const int64_t *users, const int64_t *items,
                            const struct user_items *ui, int64_t n_items, int64_t negatives, uint64_t *rng,
                            int64_t *su, int64_t *si, unsigned char *lab) {
    int64_t ns = 0;
    for (int64_t q = 0; q < np; q++) {
        int64_t pidx = order[q], u = users[pidx];
        su[ns] = u;
        si[ns] = items[pidx];
        lab[ns++] = 1;
        if (ui->distinct[u] >= n_items) continue; /* no negative possible */
        for (int64_t c = 0; c < negatives; c++) {
            int64_t j;
            do j = (int64_t)(fpd__rand_u64(rng) % (uint64_t)n_items);
            while (user_has(ui, u, j));
            su[ns] = u;
            si[ns] = j;
            lab[ns++] = 0;
        }
    }
    return ns;
}

/* The BPR loss of one batch (Rendle et al., UAI 2009; as LightGCN's MF baseline,
 * LightGCN-PyTorch model.py PureMF.bpr_loss and utils.BPRLoss): samples come as a
 * positive followed by its negatives (none for a user who has every item), and
 * each (positive, negative) pair adds softplus(z_neg - z_pos) + l2 / 2 (|u|^2 +
 * |i_pos|^2 + |i_neg|^2) to the loss, averaged over the pairs. Fills the row
 * gradients of tu, ti and gw (the bias cancels); adds the batch's pair losses to
 * *loss_sum and the pairs to *loss_n. */
static void bpr_batch(const struct fpd_gmf *m, struct table_state *tu, struct table_state *ti,
                      const unsigned char *lab, int64_t ns, double l2, float *gw, double *loss_sum, int64_t *loss_n) {
    const int64_t dim = m->user.dim;
    int64_t pairs = 0;
    for (int64_t q = 0; q < ns; q++) pairs += lab[q] == 0;
    if (pairs == 0) return;
    const double inv = 1.0 / (double)pairs;
    const float reg = (float)(l2 * inv);
    for (int64_t q0 = 0; q0 < ns;) {
        const int64_t qp = q0++;
        const float *ur = tu->rows + tu->slot[qp] * dim, *pr = ti->rows + ti->slot[qp] * dim;
        float *gu = tu->grad + tu->slot[qp] * dim, *gp = ti->grad + ti->slot[qp] * dim;
        const double zp = gmf_logit(ur, pr, m->weight, m->bias, dim);
        double up = 0.0;
        for (int64_t j = 0; j < dim; j++) up += (double)ur[j] * ur[j] + (double)pr[j] * pr[j];
        for (; q0 < ns && lab[q0] == 0; q0++) {
            const float *nr = ti->rows + ti->slot[q0] * dim;
            float *gn = ti->grad + ti->slot[q0] * dim;
            const double x = zp - gmf_logit(ur, nr, m->weight, m->bias, dim);
            double nn = 0.0;
            for (int64_t j = 0; j < dim; j++) nn += (double)nr[j] * nr[j];
            *loss_sum += softplus(-x) + 0.5 * l2 * (up + nn);
            (*loss_n)++;
            const float g = (float)(-inv / (1.0 + exp(x))); /* d softplus(-x) / dx, over the pairs */
            for (int64_t j = 0; j < dim; j++) {
                const float wj = m->weight[j];
                gu[j] += g * (pr[j] - nr[j]) * wj + reg * ur[j];
                gp[j] += g * ur[j] * wj + reg * pr[j];
                gn[j] += -g * ur[j] * wj + reg * nr[j];
                gw[j] += g * ur[j] * (pr[j] - nr[j]);
            }
        }
    }
}

enum fpd_status fpd_gmf_train(struct fpd_gmf *m, const int64_t *users, const int64_t *items, int64_t n,
                              const struct fpd_gmf_train_params *params, double *mean_loss, struct fpd_error *err) {
    enum fpd_status st;
    struct fpd_gmf_train_params p = params ? *params : fpd_gmf_train_default_params();
    if ((st = gmf_check(m, err))) return st;
    if (p.epochs < 0 || p.negatives < 0 || p.batch_size < 1 + p.negatives || !(p.learning_rate > 0.0) ||
        !(p.core_learning_rate >= 0.0) || !(p.free_proj_learning_rate >= 0.0) || p.free_coords < 0 || p.free_coords > m->user.dim ||
        !(p.free_init_scale >= 0.0 && isfinite(p.free_init_scale)))
        return fpd__err(err, FPD_STATUS_INVALID_ARG,
                        "training parameters out of range: epochs %lld, negatives %lld, batch_size %lld (must be "
                        ">= 1 + negatives), learning rates %g, %g, %g, free_coords %lld (in [0, dim]), "
                        "free_init_scale %g (finite, >= 0)",
                        (long long)p.epochs, (long long)p.negatives, (long long)p.batch_size, p.learning_rate,
                        p.core_learning_rate, p.free_proj_learning_rate, (long long)p.free_coords, p.free_init_scale);
    if (n <= 0) return fpd__err(err, FPD_STATUS_INVALID_ARG, "no positives to train on");
    if (p.teacher) {
        if ((st = gmf_check(p.teacher, err))) return st;
        if (p.teacher->user.rows != m->user.rows || p.teacher->item.rows != m->item.rows)
            return fpd__err(err, FPD_STATUS_SHAPE, "teacher has %lld users and %lld items, the model %lld and %lld",
                            (long long)p.teacher->user.rows, (long long)p.teacher->item.rows,
                            (long long)m->user.rows, (long long)m->item.rows);
    }
    if (p.loss != FPD_GMF_LOSS_BCE && p.loss != FPD_GMF_LOSS_BPR)
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "unknown loss %d", (int)p.loss);
    if (!(p.l2 >= 0.0) || !isfinite(p.l2))
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "l2 weight %g must be finite and >= 0", p.l2);
    if (p.loss == FPD_GMF_LOSS_BPR && (p.negatives < 1 || p.teacher))
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "the BPR loss needs negatives >= 1 and no teacher");
    if (!(p.distill >= 0.0 && p.distill <= 1.0))
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "distill weight %g is outside [0, 1]", p.distill);
    const double alpha = p.teacher ? p.distill : 0.0;
    if ((st = ids_check(users, n, m->user.rows, "user", err)) || (st = ids_check(items, n, m->item.rows, "item", err)))
        return st;
    const int64_t dim = m->user.dim, group = 1 + p.negatives;
    const int64_t bpos = p.batch_size / group, bsz = bpos * group;
    const int64_t steps_per_epoch = (n + bpos - 1) / bpos;
    struct table_state tu, ti;
    struct user_items ui;
    memset(&tu, 0, sizeof tu);
    memset(&ti, 0, sizeof ti);
    memset(&ui, 0, sizeof ui);
    int64_t *order = fpd_malloc((size_t)n * sizeof(int64_t));
    int64_t *su = fpd_malloc((size_t)bsz * sizeof(int64_t)), *si = fpd_malloc((size_t)bsz * sizeof(int64_t));
    float *gw = fpd_malloc((size_t)dim * sizeof(float)), *mw = fpd_calloc((size_t)dim, sizeof(float));
    float *vw = fpd_calloc((size_t)dim, sizeof(float));
    unsigned char *lab = fpd_malloc((size_t)bsz);
    double *uweight = NULL;
    float mb = 0.0f, vb = 0.0f;
    if (!order || !su || !si || !lab || !gw || !mw || !vw) {
        st = fpd__err(err, FPD_STATUS_NOMEM, "out of memory for the training state");
        goto done;
    }
    if (p.order_rows && /* before any state that depends on the cores' layout */
        ((st = order_table_rows(&m->user, users, items, n, m->item.rows, p.seed, err)) ||
         (st = order_table_rows(&m->item, items, users, n, m->user.rows, p.seed, err))))
        goto done;
    if (p.free_coords > 0 && /* after the row order (E is in original row order either way) */
        ((st = add_free_coords(&m->user, p.free_coords, p.free_init_scale, p.seed ^ FREE_P_SEED,
                               p.seed ^ 0x14057b7ef767814full, err)) ||
         (st = add_free_coords(&m->item, p.free_coords, p.free_init_scale, p.seed ^ FREE_P_SEED,
                               p.seed ^ 0x5851f42d4c957f2dull, err))))
        goto done;
    if ((st = user_items_init(&ui, users, items, n, m->user.rows, err)) ||
        (st = table_state_init(&tu, &m->user, bsz, &p, err)) || (st = table_state_init(&ti, &m->item, bsz, &p, err)))
        goto done;
    if (p.balance_users) {
        int64_t active = 0;
        if (!(uweight = fpd_malloc((size_t)m->user.rows * sizeof(double)))) {
            st = fpd__err(err, FPD_STATUS_NOMEM, "out of memory for the user weights");
            goto done;
        }
        for (int64_t u = 0; u < m->user.rows; u++) active += ui.off[u + 1] > ui.off[u];
        for (int64_t u = 0; u < m->user.rows; u++) {
            int64_t c = ui.off[u + 1] - ui.off[u];
            uweight[u] = c ? (double)n / ((double)active * (double)c) : 0.0;
        }
    }
    for (int64_t t = 0; t < n; t++) order[t] = t;
    uint64_t rng = p.seed ^ 0x3c6ef372fe94f82bull;
    int64_t step = 0;
    const float lr = (float)p.learning_rate;
    for (int64_t epoch = 0; epoch < p.epochs; epoch++) {
        double t0 = fpd__now(), loss_sum = 0.0;
        int64_t loss_n = 0;
        shuffle(order, n, &rng);
        for (int64_t b0 = 0; b0 < n; b0 += bpos) {
            const int64_t np = b0 + bpos <= n ? bpos : n - b0;
            const int64_t ns = sample_batch(order + b0, np, users, items, &ui, m->item.rows, p.negatives, &rng, su,
                                            si, lab);
            distinct_ids_marked(su, ns, tu.uniq, &tu.nu, tu.slot, tu.mark);
            distinct_ids_marked(si, ns, ti.uniq, &ti.nu, ti.slot, ti.mark);
            if ((st = table_rows(&tu, err)) || (st = table_rows(&ti, err))) goto done;
            if (alpha > 0.0 && ((st = emb_rows(&p.teacher->user, tu.uniq, tu.nu, tu.trows, err)) ||
                                (st = emb_rows(&p.teacher->item, ti.uniq, ti.nu, ti.trows, err))))
                goto done;
            memset(tu.grad, 0, (size_t)(tu.nu * dim) * sizeof(float));
            memset(ti.grad, 0, (size_t)(ti.nu * dim) * sizeof(float));
            memset(gw, 0, (size_t)dim * sizeof(float));
            double gb = 0.0;
            const double inv = 1.0 / (double)ns;
            if (p.loss == FPD_GMF_LOSS_BPR) {
                bpr_batch(m, &tu, &ti, lab, ns, p.l2, gw, &loss_sum, &loss_n);
                goto step;
            }
            for (int64_t q = 0; q < ns; q++) {
                const float *ur = tu.rows + tu.slot[q] * dim, *ir = ti.rows + ti.slot[q] * dim;
                float *gu = tu.grad + tu.slot[q] * dim, *gi = ti.grad + ti.slot[q] * dim;
                double target = lab[q];
                if (alpha > 0.0) {
                    const int64_t td = p.teacher->user.dim;
                    double zt = gmf_logit(tu.trows + tu.slot[q] * td, ti.trows + ti.slot[q] * td, p.teacher->weight,
                                          p.teacher->bias, td);
                    target = (1.0 - alpha) * target + alpha / (1.0 + exp(-zt));
                }
                double z = gmf_logit(ur, ir, m->weight, m->bias, dim);
                const double sw = uweight ? uweight[su[q]] : 1.0;
                loss_sum += sw * (target * softplus(-z) + (1.0 - target) * softplus(z));
                loss_n++;
                double prob = 1.0 / (1.0 + exp(-z));
                float g = (float)(sw * (prob - target) * inv);
                for (int64_t j = 0; j < dim; j++) {
                    float wj = m->weight[j];
                    gu[j] += g * ir[j] * wj;
                    gi[j] += g * ur[j] * wj;
                    gw[j] += g * ur[j] * ir[j];
                }
                gb += g;
            }
        step:
            if (!isfinite(loss_sum)) {
                st = fpd__err(err, FPD_STATUS_NUMERIC, "training loss is not finite at epoch %lld, step %lld (lower "
                              "the learning rate)", (long long)epoch + 1, (long long)step + 1);
                goto done;
            }
            step++;
            const float bc1 = 1.0f - powf(ADAM_B1, (float)step), bc2 = 1.0f - powf(ADAM_B2, (float)step);
            if (p.train_tables) {
                if ((st = table_update(&tu, lr, bc1, bc2, err)) || (st = table_update(&ti, lr, bc1, bc2, err)))
                    goto done;
            }
            if (p.train_prediction) {
                float gbf = (float)gb;
                fpd__adam_update(m->weight, gw, mw, vw, dim, lr, ADAM_B1, ADAM_B2, ADAM_EPS, bc1, bc2);
                fpd__adam_update(&m->bias, &gbf, &mb, &vb, 1, lr, ADAM_B1, ADAM_B2, ADAM_EPS, bc1, bc2);
            }
            if (p.progress && !p.progress("train", step, p.epochs * steps_per_epoch, p.progress_user_data)) {
                st = fpd__err(err, FPD_STATUS_CANCELLED, "training cancelled");
                goto done;
            }
        }
        double mean = loss_n ? loss_sum / (double)loss_n : 0.0;
        if (mean_loss) *mean_loss = mean;
        fpd__log(FPD_LOG_LEVEL_DEBUG, "gmf epoch %lld: loss %.6f", (long long)epoch + 1, mean);
        if (p.epoch_callback && !p.epoch_callback(epoch + 1, mean, fpd__now() - t0, p.epoch_user_data)) break;
    }
done:
    table_state_free(&tu);
    table_state_free(&ti);
    user_items_free(&ui);
    fpd_free(order);
    fpd_free(su);
    fpd_free(si);
    fpd_free(lab);
    fpd_free(uweight);
    fpd_free(gw);
    fpd_free(mw);
    fpd_free(vw);
    return st;
}

/* ------------------------------------------------------------ NCF's MLP and NeuMF
 *
 * fpd_ncf_*: GMF, MLP and NeuMF (fpd.h, "NCF's three models"). The tables use the
 * helpers above (distinct rows once, lazy Adam through table_state); the hidden
 * layers are small (NCF: 64 -> 32 -> 16 -> 8), so they are plain loops over the
 * batch's samples, accumulated in double, with dense Adam.
 */

int64_t fpd_ncf_predict_dim(const struct fpd_ncf *m) {
    switch (m->kind) {
    case FPD_NCF_KIND_GMF: return m->mf_user.dim;
    case FPD_NCF_KIND_MLP: return m->n_layers >= 1 && m->n_layers <= FPD_NCF_MAX_LAYERS ? m->layer_dim[m->n_layers] : 0;
    case FPD_NCF_KIND_NEUMF:
        return m->n_layers >= 1 && m->n_layers <= FPD_NCF_MAX_LAYERS ? m->mf_user.dim + m->layer_dim[m->n_layers] : 0;
    default: return 0;
    }
}

static bool ncf_has_mf(const struct fpd_ncf *m) { return m->kind != FPD_NCF_KIND_MLP; }
static bool ncf_has_mlp(const struct fpd_ncf *m) { return m->kind != FPD_NCF_KIND_GMF; }

static enum fpd_status ncf_check_shapes(const struct fpd_ncf *m, struct fpd_error *err) {
    enum fpd_status st;
    if (m->kind < 0 || m->kind >= FPD_NCF_KIND_COUNT)
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "unknown NCF model kind %d", (int)m->kind);
    int64_t users = -1, items = -1;
    if (ncf_has_mf(m)) {
        if ((st = emb_check(&m->mf_user, "GMF user", err)) || (st = emb_check(&m->mf_item, "GMF item", err))) return st;
        if (m->mf_user.dim != m->mf_item.dim)
            return fpd__err(err, FPD_STATUS_SHAPE, "GMF user table dim %lld != item table dim %lld",
                            (long long)m->mf_user.dim, (long long)m->mf_item.dim);
        users = m->mf_user.rows;
        items = m->mf_item.rows;
    }
    if (ncf_has_mlp(m)) {
        if ((st = emb_check(&m->mlp_user, "MLP user", err)) || (st = emb_check(&m->mlp_item, "MLP item", err)))
            return st;
        if (m->mlp_user.dim != m->mlp_item.dim)
            return fpd__err(err, FPD_STATUS_SHAPE, "MLP user table dim %lld != item table dim %lld",
                            (long long)m->mlp_user.dim, (long long)m->mlp_item.dim);
        if (users >= 0 && (m->mlp_user.rows != users || m->mlp_item.rows != items))
            return fpd__err(err, FPD_STATUS_SHAPE, "NeuMF: GMF tables have %lld users and %lld items, MLP tables %lld "
                            "and %lld", (long long)users, (long long)items, (long long)m->mlp_user.rows,
                            (long long)m->mlp_item.rows);
        if (m->n_layers < 1 || m->n_layers > FPD_NCF_MAX_LAYERS)
            return fpd__err(err, FPD_STATUS_INVALID_ARG, "MLP needs 1..%d hidden layers, got %d", FPD_NCF_MAX_LAYERS,
                            (int)m->n_layers);
        if (m->layer_dim[0] != 2 * m->mlp_user.dim)
            return fpd__err(err, FPD_STATUS_SHAPE, "MLP input is %lld wide but the tables give 2 x %lld",
                            (long long)m->layer_dim[0], (long long)m->mlp_user.dim);
        for (int32_t l = 0; l < m->n_layers; l++) {
            if (m->layer_dim[l + 1] < 1 || m->layer_dim[l + 1] > 65536)
                return fpd__err(err, FPD_STATUS_SHAPE, "MLP layer %d has %lld units", (int)l + 1,
                                (long long)m->layer_dim[l + 1]);
            if (!m->layer_weight[l] || !m->layer_bias[l])
                return fpd__err(err, FPD_STATUS_INVALID_ARG, "MLP layer %d has no weight or bias", (int)l + 1);
        }
    }
    if (!m->weight) return fpd__err(err, FPD_STATUS_INVALID_ARG, "NCF model has no prediction weight");
    return FPD_STATUS_OK;
}

static const struct fpd_embedding *ncf_user_table(const struct fpd_ncf *m) {
    return ncf_has_mf(m) ? &m->mf_user : &m->mlp_user;
}
static const struct fpd_embedding *ncf_item_table(const struct fpd_ncf *m) {
    return ncf_has_mf(m) ? &m->mf_item : &m->mlp_item;
}

enum fpd_status fpd_ncf_init_dense(struct fpd_ncf *m, uint64_t seed, struct fpd_error *err) {
    enum fpd_status st;
    if ((st = ncf_check_shapes(m, err))) return st;
    uint64_t rs = seed ^ 0x6a09e667f3bcc909ull;
    for (int32_t l = 0; ncf_has_mlp(m) && l < m->n_layers; l++) {
        const int64_t in = m->layer_dim[l], out = m->layer_dim[l + 1];
        const double lim = sqrt(6.0 / (double)(in + out));
        for (int64_t q = 0; q < in * out; q++) m->layer_weight[l][q] = (float)((2.0 * fpd__rand_uniform(&rs) - 1.0) * lim);
        memset(m->layer_bias[l], 0, (size_t)out * sizeof(float));
    }
    const int64_t pd = fpd_ncf_predict_dim(m);
    const double lim = sqrt(3.0 / (double)pd);
    for (int64_t q = 0; q < pd; q++) m->weight[q] = (float)((2.0 * fpd__rand_uniform(&rs) - 1.0) * lim);
    m->bias = 0.0f;
    return FPD_STATUS_OK;
}

/* The widest hidden activation, for scratch sizes. */
static int64_t ncf_widest(const struct fpd_ncf *m) {
    int64_t w = 1;
    for (int32_t l = 0; ncf_has_mlp(m) && l <= m->n_layers; l++) w = m->layer_dim[l] > w ? m->layer_dim[l] : w;
    return w;
}

/* Forward of one pair from its rows (NULL for an absent part): the activations
 * x_0..x_L into act (layer_dim[l] floats at act + off_l, off_l the running sum), h is
 * read from them; returns the logit. */
static double ncf_forward_one(const struct fpd_ncf *m, const float *umf, const float *imf, const float *umlp,
                              const float *imlp, float *act) {
    double z = 0.0; /* the bias last, as gmf_logit: the GMF kind's logits equal fpd_gmf_logits' */
    int64_t pw = 0;
    if (ncf_has_mf(m)) {
        const int64_t d = m->mf_user.dim;
        for (int64_t j = 0; j < d; j++) z += (double)umf[j] * (double)imf[j] * (double)m->weight[j];
        pw = d;
    }
    if (ncf_has_mlp(m)) {
        const int64_t d = m->mlp_user.dim;
        memcpy(act, umlp, (size_t)d * sizeof(float));
        memcpy(act + d, imlp, (size_t)d * sizeof(float));
        float *x = act;
        for (int32_t l = 0; l < m->n_layers; l++) {
            const int64_t in = m->layer_dim[l], out = m->layer_dim[l + 1];
            float *y = x + in;
            const float *W = m->layer_weight[l];
            for (int64_t o = 0; o < out; o++) {
                double a = (double)m->layer_bias[l][o];
                for (int64_t q = 0; q < in; q++) a += (double)W[o * in + q] * (double)x[q];
                y[o] = a > 0.0 ? (float)a : 0.0f;
            }
            x = y;
        }
        const int64_t nl = m->layer_dim[m->n_layers];
        for (int64_t o = 0; o < nl; o++) z += (double)x[o] * (double)m->weight[pw + o];
    }
    return z + (double)m->bias;
}

/* floats of act for one pair: the sum of layer_dim[0..L] */
static int64_t ncf_act_len(const struct fpd_ncf *m) {
    int64_t s = 1;
    for (int32_t l = 0; ncf_has_mlp(m) && l <= m->n_layers; l++) s += m->layer_dim[l];
    return s;
}

/* Distinct rows of up to four tables for a set of pairs. */
struct ncf_rows {
    struct pair_rows mf, mlp;
};

static void ncf_rows_free(struct ncf_rows *r) {
    pair_rows_free(&r->mf);
    pair_rows_free(&r->mlp);
}

static enum fpd_status ncf_rows_load(const struct fpd_ncf *m, const int64_t *users, int64_t n_users,
                                     const int64_t *items, int64_t n_items, struct ncf_rows *r, struct fpd_error *err) {
    enum fpd_status st = FPD_STATUS_OK;
    memset(r, 0, sizeof *r);
    if (ncf_has_mf(m)) {
        struct fpd_gmf g = {m->mf_user, m->mf_item, m->weight, m->bias};
        if ((st = pair_rows_load(&g, users, n_users, items, n_items, &r->mf, err))) return st;
    }
    if (ncf_has_mlp(m)) {
        struct fpd_gmf g = {m->mlp_user, m->mlp_item, m->weight, m->bias};
        if ((st = pair_rows_load(&g, users, n_users, items, n_items, &r->mlp, err))) {
            ncf_rows_free(r);
            return st;
        }
    }
    return FPD_STATUS_OK;
}

/* Logit of pair (t_user, t_item) (indices into the users / items arrays of the load). */
static double ncf_rows_logit(const struct fpd_ncf *m, const struct ncf_rows *r, int64_t tu, int64_t ti, float *act) {
    const float *umf = NULL, *imf = NULL, *umlp = NULL, *imlp = NULL;
    if (ncf_has_mf(m)) {
        umf = r->mf.ub + r->mf.su[tu] * m->mf_user.dim;
        imf = r->mf.ib + r->mf.si[ti] * m->mf_user.dim;
    }
    if (ncf_has_mlp(m)) {
        umlp = r->mlp.ub + r->mlp.su[tu] * m->mlp_user.dim;
        imlp = r->mlp.ib + r->mlp.si[ti] * m->mlp_user.dim;
    }
    return ncf_forward_one(m, umf, imf, umlp, imlp, act);
}

enum fpd_status fpd_ncf_logits(const struct fpd_ncf *m, const int64_t *users, const int64_t *items, int64_t n,
                               float *out, struct fpd_error *err) {
    enum fpd_status st;
    if ((st = ncf_check_shapes(m, err))) return st;
    if (n <= 0) return FPD_STATUS_OK;
    if ((st = ids_check(users, n, ncf_user_table(m)->rows, "user", err)) ||
        (st = ids_check(items, n, ncf_item_table(m)->rows, "item", err)))
        return st;
    float *act = fpd_malloc((size_t)ncf_act_len(m) * sizeof(float));
    if (!act) return fpd__err(err, FPD_STATUS_NOMEM, "out of memory for the MLP activations");
    struct ncf_rows r;
    if ((st = ncf_rows_load(m, users, n, items, n, &r, err))) {
        fpd_free(act);
        return st;
    }
    for (int64_t t = 0; t < n; t++) out[t] = (float)ncf_rows_logit(m, &r, t, t, act);
    ncf_rows_free(&r);
    fpd_free(act);
    return FPD_STATUS_OK;
}

enum fpd_status fpd_ncf_rank(const struct fpd_ncf *m, const int64_t *users, const int64_t *cand, int64_t n,
                             int64_t n_cand, int64_t k, struct fpd_rank_metrics *out, int64_t *rank_out,
                             struct fpd_error *err) {
    enum fpd_status st;
    memset(out, 0, sizeof *out);
    out->k = k;
    if ((st = ncf_check_shapes(m, err))) return st;
    if (n_cand < 1 || k < 1)
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "ranking needs n_cand >= 1 and k >= 1 (got %lld, %lld)",
                        (long long)n_cand, (long long)k);
    if (n <= 0) return FPD_STATUS_OK;
    int64_t nc;
    if (!fpd__mul_i64(n, n_cand, &nc) || nc > (int64_t)(SIZE_MAX / 16))
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "%lld users x %lld candidates overflows", (long long)n,
                        (long long)n_cand);
    if ((st = ids_check(users, n, ncf_user_table(m)->rows, "user", err)) ||
        (st = ids_check(cand, nc, ncf_item_table(m)->rows, "item", err)))
        return st;
    float *act = fpd_malloc((size_t)ncf_act_len(m) * sizeof(float));
    if (!act) return fpd__err(err, FPD_STATUS_NOMEM, "out of memory for the MLP activations");
    struct ncf_rows r;
    if ((st = ncf_rows_load(m, users, n, cand, nc, &r, err))) {
        fpd_free(act);
        return st;
    }
    double hits = 0.0, ndcg = 0.0;
    for (int64_t t = 0; t < n; t++) {
        double z0 = ncf_rows_logit(m, &r, t, t * n_cand, act);
        int64_t rank = 0, ties = 0;
        for (int64_t c = 1; c < n_cand; c++) {
            double z = ncf_rows_logit(m, &r, t, t * n_cand + c, act);
            rank += z > z0;
            ties += z == z0 && cand[t * n_cand + c] != cand[t * n_cand];
        }
        rank += rank_tie_place(users[t], ties);
        if (rank_out) rank_out[t] = rank;
        if (rank < k) {
            hits += 1.0;
            ndcg += 1.0 / log2((double)rank + 2.0);
        }
    }
    out->users = n;
    out->hr = hits / (double)n;
    out->ndcg = ndcg / (double)n;
    ncf_rows_free(&r);
    fpd_free(act);
    return FPD_STATUS_OK;
}

/* Dense Adam state of the hidden layers and the prediction. */
struct ncf_dense_state {
    float *g, *m1, *m2;   /* gradient and moments, every dense parameter in one array */
    int64_t n;            /* parameters: layers (weight, bias each), then weight, bias */
};

static int64_t ncf_dense_params(const struct fpd_ncf *m) {
    int64_t s = fpd_ncf_predict_dim(m) + 1;
    for (int32_t l = 0; ncf_has_mlp(m) && l < m->n_layers; l++) s += m->layer_dim[l + 1] * (m->layer_dim[l] + 1);
    return s;
}

/* Adam on one dense array x[n] with its slice of the state at *off. */
static void ncf_dense_adam(struct ncf_dense_state *ds, int64_t *off, float *x, int64_t n, float lr, float bc1,
                           float bc2) {
    fpd__adam_update(x, ds->g + *off, ds->m1 + *off, ds->m2 + *off, n, lr, ADAM_B1, ADAM_B2, ADAM_EPS, bc1, bc2);
    *off += n;
}

enum fpd_status fpd_ncf_train(struct fpd_ncf *m, const int64_t *users, const int64_t *items, int64_t n,
                              const struct fpd_gmf_train_params *params, double *mean_loss, struct fpd_error *err) {
    enum fpd_status st;
    struct fpd_gmf_train_params p = params ? *params : fpd_gmf_train_default_params();
    if ((st = ncf_check_shapes(m, err))) return st;
    if (p.teacher || p.distill != 0.0 || p.balance_users || p.loss != FPD_GMF_LOSS_BCE)
        return fpd__err(err, FPD_STATUS_INVALID_ARG,
                        "NCF training: teacher, distill, balance_users and the BPR loss are GMF-only");
    if (p.epochs < 0 || p.negatives < 0 || p.batch_size < 1 + p.negatives || !(p.learning_rate > 0.0) ||
        !(p.core_learning_rate >= 0.0) || !(p.free_proj_learning_rate >= 0.0) || p.free_coords < 0 || !(p.free_init_scale >= 0.0 && isfinite(p.free_init_scale)))
        return fpd__err(err, FPD_STATUS_INVALID_ARG,
                        "training parameters out of range: epochs %lld, negatives %lld, batch_size %lld (must be "
                        ">= 1 + negatives), learning rates %g, %g, %g, free_coords %lld (>= 0), free_init_scale %g "
                        "(finite, >= 0)",
                        (long long)p.epochs, (long long)p.negatives, (long long)p.batch_size, p.learning_rate,
                        p.core_learning_rate, p.free_proj_learning_rate, (long long)p.free_coords, p.free_init_scale);
    if (n <= 0) return fpd__err(err, FPD_STATUS_INVALID_ARG, "no positives to train on");
    const int64_t n_users = ncf_user_table(m)->rows, n_items = ncf_item_table(m)->rows;
    if ((st = ids_check(users, n, n_users, "user", err)) || (st = ids_check(items, n, n_items, "item", err))) return st;
    const bool mf = ncf_has_mf(m), mlp = ncf_has_mlp(m);
    const int64_t group = 1 + p.negatives, bpos = p.batch_size / group, bsz = bpos * group;
    const int64_t steps_per_epoch = (n + bpos - 1) / bpos, pd = fpd_ncf_predict_dim(m);
    const int64_t dmf = mf ? m->mf_user.dim : 0, dmlp = mlp ? m->mlp_user.dim : 0, alen = ncf_act_len(m);
    const int64_t wide = ncf_widest(m);
    struct table_state ts[4]; /* mf user, mf item, mlp user, mlp item */
    memset(ts, 0, sizeof ts);
    struct user_items ui;
    memset(&ui, 0, sizeof ui);
    struct ncf_dense_state ds = {0};
    ds.n = ncf_dense_params(m);
    int64_t *order = fpd_malloc((size_t)n * sizeof(int64_t));
    int64_t *su = fpd_malloc((size_t)bsz * sizeof(int64_t)), *si = fpd_malloc((size_t)bsz * sizeof(int64_t));
    unsigned char *lab = fpd_malloc((size_t)bsz);
    float *act = fpd_malloc((size_t)alen * sizeof(float));
    double *dx = fpd_malloc((size_t)(2 * wide) * sizeof(double));
    ds.g = fpd_malloc((size_t)ds.n * sizeof(float));
    ds.m1 = fpd_calloc((size_t)ds.n, sizeof(float));
    ds.m2 = fpd_calloc((size_t)ds.n, sizeof(float));
    if (!order || !su || !si || !lab || !act || !dx || !ds.g || !ds.m1 || !ds.m2) {
        st = fpd__err(err, FPD_STATUS_NOMEM, "out of memory for the training state");
        goto done;
    }
    struct fpd_embedding *tabs[4] = {&m->mf_user, &m->mf_item, &m->mlp_user, &m->mlp_item};
    bool used[4] = {mf, mf, mlp, mlp};
    for (int q = 0; p.order_rows && q < 4; q++) /* before any state that depends on the cores' layout */
        if (used[q] && (st = order_table_rows(tabs[q], q & 1 ? items : users, q & 1 ? users : items, n,
                                              q & 1 ? n_users : n_items, p.seed, err)))
            goto done;
    for (int q = 0; p.free_coords > 0 && q < 4; q++)
        if (used[q] && (st = add_free_coords(tabs[q], p.free_coords, p.free_init_scale, p.seed ^ FREE_P_SEED,
                                             p.seed ^ (0x9e3779b97f4a7c15ull * (uint64_t)(q + 1)), err)))
            goto done;
    if ((st = user_items_init(&ui, users, items, n, n_users, err))) goto done;
    for (int q = 0; q < 4; q++)
        if (used[q] && (st = table_state_init(&ts[q], tabs[q], bsz, &p, err))) goto done;
    for (int64_t t = 0; t < n; t++) order[t] = t;
    uint64_t rng = p.seed ^ 0x3c6ef372fe94f82bull;
    int64_t step = 0;
    const float lr = (float)p.learning_rate;
    for (int64_t epoch = 0; epoch < p.epochs; epoch++) {
        double t0 = fpd__now(), loss_sum = 0.0;
        int64_t loss_n = 0;
        shuffle(order, n, &rng);
        for (int64_t b0 = 0; b0 < n; b0 += bpos) {
            const int64_t np = b0 + bpos <= n ? bpos : n - b0;
            const int64_t ns = sample_batch(order + b0, np, users, items, &ui, n_items, p.negatives, &rng, su, si, lab);
            for (int q = 0; q < 4; q++) {
                if (!used[q]) continue;
                distinct_ids_marked(q & 1 ? si : su, ns, ts[q].uniq, &ts[q].nu, ts[q].slot, ts[q].mark);
                if ((st = table_rows(&ts[q], err))) goto done;
                memset(ts[q].grad, 0, (size_t)(ts[q].nu * tabs[q]->dim) * sizeof(float));
            }
            memset(ds.g, 0, (size_t)ds.n * sizeof(float));
            /* dense gradient layout: layer l weight, layer l bias (l < L), weight, bias */
            float *gpred = ds.g + ds.n - pd - 1;
            double gb = 0.0;
            const double inv = 1.0 / (double)ns;
            for (int64_t q = 0; q < ns; q++) {
                const float *umf = mf ? ts[0].rows + ts[0].slot[q] * dmf : NULL;
                const float *imf = mf ? ts[1].rows + ts[1].slot[q] * dmf : NULL;
                const float *umlp = mlp ? ts[2].rows + ts[2].slot[q] * dmlp : NULL;
                const float *imlp = mlp ? ts[3].rows + ts[3].slot[q] * dmlp : NULL;
                double z = ncf_forward_one(m, umf, imf, umlp, imlp, act);
                double target = lab[q];
                loss_sum += target * softplus(-z) + (1.0 - target) * softplus(z);
                loss_n++;
                float g = (float)((1.0 / (1.0 + exp(-z)) - target) * inv);
                if (mf) {
                    float *gu = ts[0].grad + ts[0].slot[q] * dmf, *gi = ts[1].grad + ts[1].slot[q] * dmf;
                    for (int64_t j = 0; j < dmf; j++) {
                        float wj = m->weight[j];
                        gu[j] += g * imf[j] * wj;
                        gi[j] += g * umf[j] * wj;
                        gpred[j] += g * umf[j] * imf[j];
                    }
                }
                if (mlp) {
                    /* act: x_0 | x_1 | ... | x_L; walk back from x_L */
                    int64_t off[FPD_NCF_MAX_LAYERS + 1];
                    off[0] = 0;
                    for (int32_t l = 0; l < m->n_layers; l++) off[l + 1] = off[l] + m->layer_dim[l];
                    const int64_t nl = m->layer_dim[m->n_layers];
                    const float *xl = act + off[m->n_layers];
                    double *dcur = dx, *dnext = dx + wide;
                    for (int64_t o = 0; o < nl; o++) {
                        gpred[dmf + o] += g * xl[o];
                        dcur[o] = (double)g * (double)m->weight[dmf + o];
                    }
                    /* the gradient offsets of layer l in ds.g */
                    int64_t goff[FPD_NCF_MAX_LAYERS];
                    int64_t run = 0;
                    for (int32_t l = 0; l < m->n_layers; l++) {
                        goff[l] = run;
                        run += m->layer_dim[l + 1] * (m->layer_dim[l] + 1);
                    }
                    for (int32_t l = m->n_layers - 1; l >= 0; l--) {
                        const int64_t in = m->layer_dim[l], out = m->layer_dim[l + 1];
                        const float *x = act + off[l], *y = act + off[l + 1], *W = m->layer_weight[l];
                        float *gW = ds.g + goff[l], *gc = gW + out * in;
                        for (int64_t q2 = 0; q2 < in; q2++) dnext[q2] = 0.0;
                        for (int64_t o = 0; o < out; o++) {
                            if (!(y[o] > 0.0f)) continue; /* relu' (0 at 0, as torch) */
                            const double d = dcur[o];
                            gc[o] += (float)d;
                            for (int64_t q2 = 0; q2 < in; q2++) {
                                gW[o * in + q2] += (float)(d * (double)x[q2]);
                                dnext[q2] += d * (double)W[o * in + q2];
                            }
                        }
                        double *sw = dcur;
                        dcur = dnext;
                        dnext = sw;
                    }
                    float *gu = ts[2].grad + ts[2].slot[q] * dmlp, *gi = ts[3].grad + ts[3].slot[q] * dmlp;
                    for (int64_t j = 0; j < dmlp; j++) {
                        gu[j] += (float)dcur[j];
                        gi[j] += (float)dcur[dmlp + j];
                    }
                }
                gb += g;
            }
            ds.g[ds.n - 1] = (float)gb;
            if (!isfinite(loss_sum)) {
                st = fpd__err(err, FPD_STATUS_NUMERIC, "training loss is not finite at epoch %lld, step %lld (lower "
                              "the learning rate)", (long long)epoch + 1, (long long)step + 1);
                goto done;
            }
            step++;
            const float bc1 = 1.0f - powf(ADAM_B1, (float)step), bc2 = 1.0f - powf(ADAM_B2, (float)step);
            if (p.train_tables)
                for (int q = 0; q < 4; q++)
                    if (used[q] && (st = table_update(&ts[q], lr, bc1, bc2, err))) goto done;
            if (p.train_prediction) {
                int64_t off = 0;
                for (int32_t l = 0; mlp && l < m->n_layers; l++) {
                    ncf_dense_adam(&ds, &off, m->layer_weight[l], m->layer_dim[l + 1] * m->layer_dim[l], lr, bc1, bc2);
                    ncf_dense_adam(&ds, &off, m->layer_bias[l], m->layer_dim[l + 1], lr, bc1, bc2);
                }
                ncf_dense_adam(&ds, &off, m->weight, pd, lr, bc1, bc2);
                ncf_dense_adam(&ds, &off, &m->bias, 1, lr, bc1, bc2);
            }
            if (p.progress && !p.progress("train", step, p.epochs * steps_per_epoch, p.progress_user_data)) {
                st = fpd__err(err, FPD_STATUS_CANCELLED, "training cancelled");
                goto done;
            }
        }
        double mean = loss_n ? loss_sum / (double)loss_n : 0.0;
        if (mean_loss) *mean_loss = mean;
        fpd__log(FPD_LOG_LEVEL_DEBUG, "ncf epoch %lld: loss %.6f", (long long)epoch + 1, mean);
        if (p.epoch_callback && !p.epoch_callback(epoch + 1, mean, fpd__now() - t0, p.epoch_user_data)) break;
    }
done:
    for (int q = 0; q < 4; q++) table_state_free(&ts[q]);
    user_items_free(&ui);
    fpd_free(order);
    fpd_free(su);
    fpd_free(si);
    fpd_free(lab);
    fpd_free(act);
    fpd_free(dx);
    fpd_free(ds.g);
    fpd_free(ds.m1);
    fpd_free(ds.m2);
    return st;
}
