/*
 * ncf-data.c - NCF GMF checkpoints and data files (fpd_ncf_*, formats/fpd-formats.h):
 * loaders for the NCF test files and interaction files, GMF checkpoints with
 * dense or FPD tables (load, save), HR@10 / NDCG@10 evaluation, task-aware
 * finetuning, and the reconstruction of the NCF item numbering from the
 * MovieLens-1M ratings.
 */
#include "formats/fpd-formats.h"
#include "lib/fpd-impl.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Grow *p (n elements of es bytes in use) to cap elements through fpd_malloc
 * (the library has no realloc hook); false when out of memory (*p unchanged). */
static bool grow(void **p, int64_t n, int64_t cap, size_t es) {
    void *q = fpd_malloc((size_t)cap * es);
    if (!q) return false;
    if (n) memcpy(q, *p, (size_t)n * es);
    fpd_free(*p);
    *p = q;
    return true;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Append v to a growing array (*a, *n, *cap); false when out of memory. */
static bool push_i64(int64_t **a, int64_t *n, int64_t *cap, int64_t v) {
    if (*n == *cap) {
        int64_t nc = *cap ? *cap * 2 : 1024;
        if (!grow((void **)a, *n, nc, sizeof **a)) return false;
        *cap = nc;
    }
    (*a)[(*n)++] = v;
    return true;
}

/* Parse a non-negative decimal integer at *s (after separators); advances *s. */
static bool parse_id(const char **s, int64_t *out) {
    const char *p = *s;
    while (*p == ' ' || *p == '\t' || *p == ',' || *p == '(' || *p == ')') p++;
    if (!isdigit((unsigned char)*p) && *p != '-') return false;
    char *end;
    errno = 0;
    long long v = strtoll(p, &end, 10);
    if (errno || end == p) return false;
    *out = (int64_t)v;
    *s = end;
    return true;
}

/* ---------------------------------------------------------------- test files */

void fpd_ncf_test_free(struct fpd_ncf_test *t) {
    fpd_free(t->users);
    fpd_free(t->cand);
    memset(t, 0, sizeof *t);
}

enum fpd_status fpd_ncf_test_load(const char *rating, const char *negative, struct fpd_ncf_test *out,
                                  struct fpd_error *err) {
    memset(out, 0, sizeof *out);
    enum fpd_status st = FPD_STATUS_OK;
    FILE *fr = fopen(rating, "r"), *fn = NULL;
    char *line = NULL;
    size_t cap = 0;
    int64_t *pos = NULL, npos = 0, cappos = 0, *users = NULL, nu = 0, capu = 0, *cand = NULL, nc = 0, capc = 0;
    if (!fr) return fpd__err(err, FPD_STATUS_IO, "%s: %s", rating, strerror(errno));
    int64_t lineno = 0;
    while (getline(&line, &cap, fr) > 0) {
        lineno++;
        const char *s = line;
        while (*s == ' ' || *s == '\t') s++;
        if (*s == '\n' || *s == '\r' || *s == '\0') continue;
        int64_t u, i;
        if (!parse_id(&s, &u) || !parse_id(&s, &i) || u < 0 || i < 0) {
            st = fpd__err(err, FPD_STATUS_FORMAT, "%s:%lld: expected 'user<TAB>item...' with ids >= 0", rating,
                         (long long)lineno);
            goto done;
        }
        if (!push_i64(&users, &nu, &capu, u) || !push_i64(&pos, &npos, &cappos, i)) goto oom;
    }
    if (nu == 0) {
        st = fpd__err(err, FPD_STATUS_FORMAT, "%s: no test interactions", rating);
        goto done;
    }
    fn = fopen(negative, "r");
    if (!fn) {
        st = fpd__err(err, FPD_STATUS_IO, "%s: %s", negative, strerror(errno));
        goto done;
    }
    lineno = 0;
    int64_t t = 0, per = -1;
    while (getline(&line, &cap, fn) > 0) {
        lineno++;
        const char *s = line;
        while (*s == ' ' || *s == '\t') s++;
        if (*s == '\n' || *s == '\r' || *s == '\0') continue;
        int64_t u, i, v, cnt = 0;
        if (*s != '(' || !parse_id(&s, &u) || !parse_id(&s, &i)) {
            st = fpd__err(err, FPD_STATUS_FORMAT, "%s:%lld: expected '(user,item)<TAB>neg1<TAB>...'", negative,
                         (long long)lineno);
            goto done;
        }
        if (t >= nu || u != users[t] || i != pos[t]) {
            st = fpd__err(err, FPD_STATUS_FORMAT,
                         "%s:%lld: (%lld,%lld) does not match line %lld of %s", negative, (long long)lineno,
                         (long long)u, (long long)i, (long long)t + 1, rating);
            goto done;
        }
        if (!push_i64(&cand, &nc, &capc, i)) goto oom;
        while (parse_id(&s, &v)) {
            if (v < 0) {
                st = fpd__err(err, FPD_STATUS_FORMAT, "%s:%lld: negative id %lld", negative, (long long)lineno,
                             (long long)v);
                goto done;
            }
            if (!push_i64(&cand, &nc, &capc, v)) goto oom;
            cnt++;
        }
        if (per < 0) per = cnt;
        if (cnt != per || cnt == 0) {
            st = fpd__err(err, FPD_STATUS_FORMAT, "%s:%lld: %lld negatives; the first line had %lld", negative,
                         (long long)lineno, (long long)cnt, (long long)per);
            goto done;
        }
        t++;
    }
    if (t != nu) {
        st = fpd__err(err, FPD_STATUS_FORMAT, "%s has %lld lines but %s has %lld", negative, (long long)t, rating,
                     (long long)nu);
        goto done;
    }
    out->n = nu;
    out->n_cand = per + 1;
    out->users = users;
    out->cand = cand;
    users = cand = NULL;
    goto done;
oom:
    st = fpd__err(err, FPD_STATUS_NOMEM, "out of memory reading the test files");
done:
    if (fr) fclose(fr);
    if (fn) fclose(fn);
    free(line);
    fpd_free(pos);
    fpd_free(users);
    fpd_free(cand);
    return st;
}

/* ---------------------------------------------------------------- interactions */

void fpd_ncf_interactions_free(struct fpd_ncf_interactions *x) {
    fpd_free(x->users);
    fpd_free(x->items);
    fpd_free(x->ratings);
    memset(x, 0, sizeof *x);
}

enum fpd_status fpd_ncf_interactions_load(const char *path, int64_t id_base, struct fpd_ncf_interactions *out,
                                          struct fpd_error *err) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "r");
    if (!f) return fpd__err(err, FPD_STATUS_IO, "%s: %s", path, strerror(errno));
    enum fpd_status st = FPD_STATUS_OK;
    char *line = NULL;
    size_t cap = 0;
    int64_t lineno = 0, n = 0, capn = 0;
    while (getline(&line, &cap, f) > 0) {
        lineno++;
        const char *s = line;
        while (*s == ' ' || *s == '\t') s++;
        if (*s == '\n' || *s == '\r' || *s == '\0') continue;
        if (lineno == 1 && !isdigit((unsigned char)*s)) continue; /* header */
        int64_t u, i;
        if (!parse_id(&s, &u) || !parse_id(&s, &i)) {
            st = fpd__err(err, FPD_STATUS_FORMAT, "%s:%lld: expected 'user item [rating]'", path, (long long)lineno);
            goto done;
        }
        if (u < id_base || i < id_base) {
            st = fpd__err(err, FPD_STATUS_FORMAT, "%s:%lld: id %lld is below the first id %lld", path,
                         (long long)lineno, (long long)(u < id_base ? u : i), (long long)id_base);
            goto done;
        }
        float r = NAN;
        while (*s == ' ' || *s == '\t' || *s == ',') s++;
        if (*s && *s != '\n' && *s != '\r') {
            char *end;
            double v = strtod(s, &end);
            if (end != s) r = (float)v;
        }
        if (n == capn) {
            int64_t nc = capn ? capn * 2 : 4096;
            if (!grow((void **)&out->users, n, nc, sizeof(int64_t)) ||
                !grow((void **)&out->items, n, nc, sizeof(int64_t)) ||
                !grow((void **)&out->ratings, n, nc, sizeof(float))) {
                st = fpd__err(err, FPD_STATUS_NOMEM, "%s: out of memory after %lld interactions", path, (long long)n);
                goto done;
            }
            capn = nc;
        }
        out->users[n] = u - id_base;
        out->items[n] = i - id_base;
        out->ratings[n] = r;
        if (u - id_base + 1 > out->n_users) out->n_users = u - id_base + 1;
        if (i - id_base + 1 > out->n_items) out->n_items = i - id_base + 1;
        n++;
    }
    if (n == 0) st = fpd__err(err, FPD_STATUS_FORMAT, "%s: no interactions", path);
    out->n = n;
done:
    fclose(f);
    free(line);
    return st;
}

/* ---------------------------------------------------------------- leave-one-out split */

void fpd_ncf_split_free(struct fpd_ncf_split *s) {
    fpd_free(s->train_users);
    fpd_free(s->train_items);
    fpd_ncf_test_free(&s->test);
    memset(s, 0, sizeof *s);
}

static uint64_t split_rng_next(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

enum fpd_status fpd_ncf_split_leave_one_out(const struct fpd_ncf_interactions *r, int64_t max_users, uint64_t seed,
                                            int64_t n_neg, struct fpd_ncf_split *sp, struct fpd_error *err) {
    memset(sp, 0, sizeof *sp);
    if (n_neg < 0) return fpd__err(err, FPD_STATUS_INVALID_ARG, "leave-one-out split: %lld negatives", (long long)n_neg);
    int64_t U = r->n_users, I = r->n_items;
    if (max_users > 0 && max_users < U) U = max_users;
    sp->n_users = U;
    sp->n_items = I;
    enum fpd_status st = FPD_STATUS_OK;
    int64_t *off = fpd_calloc((size_t)U + 1, sizeof *off), *its = fpd_malloc((size_t)(r->n > 0 ? r->n : 1) * sizeof *its);
    int64_t *fill = fpd_calloc((size_t)(U > 0 ? U : 1), sizeof *fill);
    sp->train_users = fpd_malloc((size_t)(r->n > 0 ? r->n : 1) * sizeof(int64_t));
    sp->train_items = fpd_malloc((size_t)(r->n > 0 ? r->n : 1) * sizeof(int64_t));
    sp->test.users = fpd_malloc((size_t)(U > 0 ? U : 1) * sizeof(int64_t));
    sp->test.cand = fpd_malloc((size_t)((U > 0 ? U : 1) * (1 + n_neg)) * sizeof(int64_t));
    if (!off || !its || !fill || !sp->train_users || !sp->train_items || !sp->test.users || !sp->test.cand) {
        st = fpd__err(err, FPD_STATUS_NOMEM, "out of memory for a split of %lld interactions", (long long)r->n);
        goto done;
    }
    for (int64_t q = 0; q < r->n; q++)
        if (r->users[q] < U) off[r->users[q] + 1]++;
    for (int64_t u = 0; u < U; u++) off[u + 1] += off[u];
    for (int64_t q = 0; q < r->n; q++)
        if (r->users[q] < U) its[off[r->users[q]] + fill[r->users[q]]++] = r->items[q];
    uint64_t rng = seed * 0x2545F4914F6CDD1Dull + 7;
    sp->test.n_cand = 1 + n_neg;
    for (int64_t u = 0; u < U; u++) {
        int64_t a = off[u], b = off[u + 1];
        if (b - a < 2) { /* too few interactions to hold one out: all train */
            for (int64_t q = a; q < b; q++) {
                sp->train_users[sp->n_train] = u;
                sp->train_items[sp->n_train++] = its[q];
            }
            continue;
        }
        qsort(its + a, (size_t)(b - a), sizeof *its, cmp_i64);
        int64_t distinct = 0;
        for (int64_t q = a; q < b; q++) distinct += q == a || its[q] != its[q - 1];
        if (n_neg > 0 && distinct >= I) {
            st = fpd__err(err, FPD_STATUS_INVALID_ARG, "leave-one-out split: user %lld has every item, no negative",
                          (long long)u);
            goto done;
        }
        int64_t h = a + (int64_t)(split_rng_next(&rng) % (uint64_t)(b - a));
        int64_t t = sp->test.n++;
        sp->test.users[t] = u;
        int64_t *cand = sp->test.cand + t * (1 + n_neg);
        cand[0] = its[h];
        for (int64_t c = 1; c <= n_neg; c++) {
            int64_t j;
            do j = (int64_t)(split_rng_next(&rng) % (uint64_t)I);
            while (bsearch(&j, its + a, (size_t)(b - a), sizeof *its, cmp_i64));
            cand[c] = j;
        }
        for (int64_t q = a; q < b; q++) {
            if (q == h) continue;
            sp->train_users[sp->n_train] = u;
            sp->train_items[sp->n_train++] = its[q];
        }
    }
done:
    fpd_free(off);
    fpd_free(its);
    fpd_free(fill);
    return st;
}

/* ---------------------------------------------------------------- models */

static const char *const gmf_names[2] = {FPD_NCF_USER_TABLE, FPD_NCF_ITEM_TABLE};
static const char *const neumf_names[4] = {"mf_embedding_user.weight", "mf_embedding_item.weight",
                                           "mlp_embedding_user.weight", "mlp_embedding_item.weight"};

const char *fpd_ncf_model_table_name(enum fpd_ncf_kind kind, int32_t i) {
    if (kind == FPD_NCF_KIND_NEUMF) return i >= 0 && i < 4 ? neumf_names[i] : "?";
    return i >= 0 && i < 2 ? gmf_names[i] : "?";
}

void fpd_ncf_model_free(struct fpd_ncf_model *m) {
    for (int i = 0; i < 4; i++) {
        fpd_free(m->dense[i]);
        fpd_layer_free(m->layer[i]);
    }
    for (int l = 0; l < 2 * FPD_NCF_MAX_LAYERS; l++) fpd_free(m->hidden[l]);
    fpd_free(m->weight);
    fpd_safetensors_free(m->st);
    memset(m, 0, sizeof *m);
}

/* The views: gmf (GMF), net (every kind) onto the tables, layers and prediction;
 * rows[i], dims[i] of table i. */
static void model_bind(struct fpd_ncf_model *m, const int64_t *rows, const int64_t *dims, float bias) {
    struct fpd_embedding e[4];
    for (int i = 0; i < m->n_tables; i++)
        e[i] = (struct fpd_embedding){.layer = m->layer[i], .dense = m->dense[i], .rows = rows[i], .dim = dims[i]};
    m->net.kind = m->kind;
    if (m->kind == FPD_NCF_KIND_GMF) {
        m->gmf.user = m->net.mf_user = e[0];
        m->gmf.item = m->net.mf_item = e[1];
        m->gmf.weight = m->weight;
        m->gmf.bias = bias;
    } else if (m->kind == FPD_NCF_KIND_MLP) {
        m->net.mlp_user = e[0];
        m->net.mlp_item = e[1];
    } else {
        m->net.mf_user = e[0];
        m->net.mf_item = e[1];
        m->net.mlp_user = e[2];
        m->net.mlp_item = e[3];
    }
    for (int32_t l = 0; l < m->net.n_layers; l++) {
        m->net.layer_weight[l] = m->hidden[2 * l];
        m->net.layer_bias[l] = m->hidden[2 * l + 1];
    }
    m->net.weight = m->weight;
    m->net.bias = bias;
}

/* The prediction bias of any kind (GMF trains gmf.bias, the others net.bias). */
static float model_bias(const struct fpd_ncf_model *m) { return m->kind == FPD_NCF_KIND_GMF ? m->gmf.bias : m->net.bias; }

enum fpd_status fpd_ncf_model_init_net(struct fpd_ncf_model *m, const struct fpd_ncf *net, struct fpd_error *err) {
    memset(m, 0, sizeof *m);
    m->kind = net->kind;
    m->n_tables = net->kind == FPD_NCF_KIND_NEUMF ? 4 : 2;
    const struct fpd_embedding *src[4] = {&net->mf_user, &net->mf_item, &net->mlp_user, &net->mlp_item};
    const int off = net->kind == FPD_NCF_KIND_MLP ? 2 : 0;
    int64_t rows[4] = {0}, dims[4] = {0};
    /* take ownership first, so that a failure below frees everything */
    for (int i = 0; i < m->n_tables; i++) {
        const struct fpd_embedding *e = src[i + off];
        m->dense[i] = e->layer ? NULL : e->dense;
        m->layer[i] = e->layer;
        rows[i] = e->rows;
        dims[i] = e->dim;
        m->dtype[i] = FPD_DTYPE_F32;
        m->meta[i].core_dtype = FPD_DTYPE_F32;
        m->meta[i].source_dtype = FPD_DTYPE_F32;
        if (e->layer) m->meta[i].shape = *fpd_layer_get_shape(e->layer);
    }
    m->net.n_layers = net->kind == FPD_NCF_KIND_GMF ? 0 : net->n_layers;
    for (int32_t l = 0; l < m->net.n_layers && l < FPD_NCF_MAX_LAYERS; l++) {
        m->hidden[2 * l] = net->layer_weight[l];
        m->hidden[2 * l + 1] = net->layer_bias[l];
    }
    memcpy(m->net.layer_dim, net->layer_dim, sizeof m->net.layer_dim);
    m->weight = net->weight;
    m->pred_dtype[0] = m->pred_dtype[1] = FPD_DTYPE_F32;
    enum fpd_status st = fpd_ncf_logits(net, NULL, NULL, 0, NULL, err); /* the model's checks */
    if (st) return st;
    model_bind(m, rows, dims, net->bias);
    return FPD_STATUS_OK;
}

enum fpd_status fpd_ncf_model_init(struct fpd_ncf_model *m, float *const dense[2], struct fpd_layer *const layer[2],
                                   const int64_t rows[2], int64_t dim, const float *weight, float bias,
                                   struct fpd_error *err) {
    memset(m, 0, sizeof *m);
    m->kind = FPD_NCF_KIND_GMF;
    m->n_tables = 2;
    for (int i = 0; i < 2; i++) {
        m->dense[i] = dense[i];
        m->layer[i] = layer[i];
    }
    for (int i = 0; i < 2; i++) {
        m->dtype[i] = FPD_DTYPE_F32;
        m->meta[i].core_dtype = FPD_DTYPE_F32;
        m->meta[i].source_dtype = FPD_DTYPE_F32;
        if (layer[i]) {
            m->meta[i].shape = *fpd_layer_get_shape(layer[i]);
            if (m->meta[i].shape.rows != rows[i] || m->meta[i].shape.dim != dim)
                return fpd__err(err, FPD_STATUS_SHAPE, "%s: FPD layer shape does not match [%lld, %lld]",
                               gmf_names[i], (long long)rows[i], (long long)dim);
        } else if (!dense[i]) {
            return fpd__err(err, FPD_STATUS_INVALID_ARG, "%s: neither dense rows nor an FPD layer", gmf_names[i]);
        }
    }
    m->pred_dtype[0] = m->pred_dtype[1] = FPD_DTYPE_F32;
    m->weight = fpd_malloc((size_t)dim * sizeof(float));
    if (!m->weight) return fpd__err(err, FPD_STATUS_NOMEM, "out of memory");
    memcpy(m->weight, weight, (size_t)dim * sizeof(float));
    const int64_t dims[2] = {dim, dim};
    model_bind(m, rows, dims, bias);
    return FPD_STATUS_OK;
}


/* Table T of the checkpoint into slot i of m: dense (converted to F32), row-wise
 * (dequantized) or FPD (stored: E kept as the file's rows); *rows, *dim its shape. */
static enum fpd_status load_table(struct fpd_ncf_model *m, const char *path, int i, const char *T, bool stored,
                                  int64_t *rows, int64_t *dim, struct fpd_error *err) {
    enum fpd_status st;
    const struct fpd_tensor_info *t = fpd_safetensors_find(m->st, T);
    char key[256];
    snprintf(key, sizeof key, "%s%s", FPD_META_TABLE_PREFIX, T);
    const char *meta = fpd_safetensors_metadata_get(m->st, key);
    if (t) {
        if (t->ndim != 2 || !fpd_dtype_is_float(t->dtype) || t->shape[0] < 1 || t->shape[1] < 1)
            return fpd__err(err, FPD_STATUS_FORMAT, "%s: tensor '%s' is %s with %d dims; a 2-D float table is "
                            "expected", path, T, fpd_dtype_name(t->dtype), (int)t->ndim);
        *rows = t->shape[0];
        *dim = t->shape[1];
        m->dtype[i] = t->dtype;
        m->dense[i] = fpd_malloc((size_t)(*rows * *dim) * sizeof(float));
        if (!m->dense[i]) return fpd__err(err, FPD_STATUS_NOMEM, "%s: out of memory for '%s'", path, T);
        if ((st = fpd_dtype_to_f32(t->dtype, t->data, m->dense[i], *rows * *dim)))
            return fpd__err(err, st, "%s: tensor '%s': cannot convert %s", path, T, fpd_dtype_name(t->dtype));
    } else if (snprintf(key, sizeof key, "%s%s", FPD_META_ROWWISE_PREFIX, T) > 0 &&
               fpd_safetensors_metadata_get(m->st, key)) { /* row-wise int8/int4: dequantized, dense */
        struct fpd_rowwise_table q;
        struct fpd_rowwise_meta rm;
        if ((st = fpd_checkpoint_load_rowwise(m->st, T, &q, &rm, err))) return st;
        *rows = q.rows;
        *dim = q.dim;
        m->dtype[i] = rm.source_dtype;
        m->encoding[i] = fpd_rowwise_name(q.kind);
        if (!(m->dense[i] = fpd_malloc((size_t)(*rows * *dim) * sizeof(float))))
            return fpd__err(err, FPD_STATUS_NOMEM, "%s: out of memory for '%s'", path, T);
        if ((st = fpd_rowwise_reconstruct(&q, 0, q.rows, m->dense[i], err))) return st;
    } else if (meta) {
        if ((st = fpd_table_meta_from_json(meta, T, &m->meta[i], err)) ||
            (st = (stored ? fpd_checkpoint_load_layer_stored : fpd_checkpoint_load_layer)(m->st, T, &m->layer[i], err)))
            return st;
        *rows = fpd_layer_get_shape(m->layer[i])->rows;
        *dim = fpd_layer_get_shape(m->layer[i])->dim;
    } else {
        return fpd__err(err, FPD_STATUS_FORMAT, "%s: no tensor '%s' and no FPD table '%s'", path, T, T);
    }
    return FPD_STATUS_OK;
}

/* A float tensor NAME of numel n into a new F32 array, or an error naming it. */
static enum fpd_status load_floats(const struct fpd_safetensors *st, const char *path, const char *name, int64_t n0,
                                   int64_t n1, float **out, enum fpd_dtype *dtype, struct fpd_error *err) {
    const struct fpd_tensor_info *t = fpd_safetensors_find(st, name);
    if (!t) return fpd__err(err, FPD_STATUS_FORMAT, "%s: no tensor '%s'", path, name);
    /* [n0, n1]; a row vector (n0 = 1) also as [n1] or [n1, 1] */
    bool shape_ok = fpd_tensor_info_numel(t) == n0 * n1 && t->ndim >= 1 && t->ndim <= 2 &&
                    (t->ndim == 1 ? n0 == 1 || n1 == 1
                                  : (t->shape[0] == n0 && t->shape[1] == n1) || (n0 == 1 && t->shape[1] == 1));
    if (!fpd_dtype_is_float(t->dtype) || !shape_ok)
        return fpd__err(err, FPD_STATUS_FORMAT, "%s: '%s' must be a float [%lld, %lld] tensor", path, name,
                        (long long)n0, (long long)n1);
    if (!(*out = fpd_malloc((size_t)(n0 * n1) * sizeof(float))))
        return fpd__err(err, FPD_STATUS_NOMEM, "%s: out of memory for '%s'", path, name);
    if (dtype) *dtype = t->dtype;
    return fpd_dtype_to_f32(t->dtype, t->data, *out, n0 * n1);
}

static enum fpd_status model_load(const char *path, bool stored, struct fpd_ncf_model *m, struct fpd_error *err) {
    memset(m, 0, sizeof *m);
    enum fpd_status st = fpd_safetensors_open(path, &m->st, err);
    if (st) return st;
    /* the kind, by the tensor names of the NCF authors' Keras models */
    bool mf_named = false;
    for (int i = 0; i < 4; i++) {
        char key[256];
        snprintf(key, sizeof key, "%s%s", FPD_META_TABLE_PREFIX, neumf_names[i]);
        mf_named |= fpd_safetensors_find(m->st, neumf_names[i]) || fpd_safetensors_metadata_get(m->st, key);
        snprintf(key, sizeof key, "%s%s", FPD_META_ROWWISE_PREFIX, neumf_names[i]);
        mf_named |= fpd_safetensors_metadata_get(m->st, key) != NULL;
    }
    m->kind = mf_named ? FPD_NCF_KIND_NEUMF
              : fpd_safetensors_find(m->st, "layer1.weight") ? FPD_NCF_KIND_MLP
                                                              : FPD_NCF_KIND_GMF;
    m->n_tables = m->kind == FPD_NCF_KIND_NEUMF ? 4 : 2;
    static const char *const kind_names[FPD_NCF_KIND_COUNT] = {"GMF", "MLP", "NeuMF"};
    int64_t rows[4] = {0}, dims[4] = {0};
    for (int i = 0; i < m->n_tables; i++) {
        const char *T = fpd_ncf_model_table_name(m->kind, i);
        if ((st = load_table(m, path, i, T, stored, &rows[i], &dims[i], err))) {
            char fk[256], rk[256]; /* the table absent in every form (not a damaged one): another model */
            snprintf(fk, sizeof fk, "%s%s", FPD_META_TABLE_PREFIX, T);
            snprintf(rk, sizeof rk, "%s%s", FPD_META_ROWWISE_PREFIX, T);
            if (st == FPD_STATUS_FORMAT && m->kind == FPD_NCF_KIND_GMF && !fpd_safetensors_find(m->st, T) &&
                !fpd_safetensors_metadata_get(m->st, fk) && !fpd_safetensors_metadata_get(m->st, rk))
                return fpd__err(err, FPD_STATUS_FORMAT,
                                "%s: no tensor '%s' and no FPD table '%s': not an NCF checkpoint (GMF, MLP or NeuMF "
                                "as fpd-formats.h names their tensors); this model is not supported",
                                path, T, T);
            return st;
        }
    }
    for (int i = 0; i + 1 < m->n_tables; i += 2)
        if (dims[i] != dims[i + 1])
            return fpd__err(err, FPD_STATUS_FORMAT, "%s: %s: '%s' dim %lld != '%s' dim %lld", path,
                            kind_names[m->kind], fpd_ncf_model_table_name(m->kind, i), (long long)dims[i],
                            fpd_ncf_model_table_name(m->kind, i + 1), (long long)dims[i + 1]);
    if (m->kind == FPD_NCF_KIND_NEUMF && (rows[2] != rows[0] || rows[3] != rows[1]))
        return fpd__err(err, FPD_STATUS_FORMAT, "%s: NeuMF: GMF tables have %lld users and %lld items, MLP tables "
                        "%lld and %lld", path, (long long)rows[0], (long long)rows[1], (long long)rows[2],
                        (long long)rows[3]);
    /* hidden layers layer1..layerL: weight [n_l, n_{l-1}], bias [n_l] */
    m->net.kind = m->kind;
    if (m->kind != FPD_NCF_KIND_GMF) {
        const int mi = m->kind == FPD_NCF_KIND_NEUMF ? 2 : 0;
        m->net.layer_dim[0] = 2 * dims[mi];
        int32_t L = 0;
        for (;; L++) {
            char wn[32], bn[32];
            snprintf(wn, sizeof wn, "layer%d.weight", (int)L + 1);
            snprintf(bn, sizeof bn, "layer%d.bias", (int)L + 1);
            const struct fpd_tensor_info *w = fpd_safetensors_find(m->st, wn);
            if (!w) break;
            if (L == FPD_NCF_MAX_LAYERS)
                return fpd__err(err, FPD_STATUS_FORMAT, "%s: more than %d hidden layers", path, FPD_NCF_MAX_LAYERS);
            if (w->ndim != 2 || w->shape[0] < 1 || w->shape[1] != m->net.layer_dim[L])
                return fpd__err(err, FPD_STATUS_FORMAT, "%s: '%s' must be [units, %lld] (the previous layer's width)",
                                path, wn, (long long)m->net.layer_dim[L]);
            m->net.layer_dim[L + 1] = w->shape[0];
            if ((st = load_floats(m->st, path, wn, w->shape[0], w->shape[1], &m->hidden[2 * L], NULL, err)) ||
                (st = load_floats(m->st, path, bn, 1, w->shape[0], &m->hidden[2 * L + 1], NULL, err)))
                return st;
        }
        if (L == 0) return fpd__err(err, FPD_STATUS_FORMAT, "%s: %s without 'layer1.weight'", path, kind_names[m->kind]);
        m->net.n_layers = L;
    }
    const int64_t pd = m->kind == FPD_NCF_KIND_GMF   ? dims[0]
                       : m->kind == FPD_NCF_KIND_MLP ? m->net.layer_dim[m->net.n_layers]
                                                     : dims[0] + m->net.layer_dim[m->net.n_layers];
    if ((st = load_floats(m->st, path, FPD_NCF_PRED_WEIGHT, 1, pd, &m->weight, &m->pred_dtype[0], err))) return st;
    const struct fpd_tensor_info *bt = fpd_safetensors_find(m->st, FPD_NCF_PRED_BIAS);
    if (!bt) return fpd__err(err, FPD_STATUS_FORMAT, "%s: no tensor '%s'", path, FPD_NCF_PRED_BIAS);
    if (!fpd_dtype_is_float(bt->dtype) || fpd_tensor_info_numel(bt) != 1)
        return fpd__err(err, FPD_STATUS_FORMAT, "%s: '%s' must hold one float", path, FPD_NCF_PRED_BIAS);
    m->pred_dtype[1] = bt->dtype;
    float b;
    fpd_dtype_to_f32(bt->dtype, bt->data, &b, 1);
    model_bind(m, rows, dims, b);
    return FPD_STATUS_OK;
}

enum fpd_status fpd_ncf_model_load(const char *path, struct fpd_ncf_model *m, struct fpd_error *err) {
    return model_load(path, false, m, err);
}

enum fpd_status fpd_ncf_model_load_stored(const char *path, struct fpd_ncf_model *m, struct fpd_error *err) {
    return model_load(path, true, m, err);
}

/* Is `name` a tensor the model writes itself? */
static bool model_owns(const struct fpd_ncf_model *m, const char *name) {
    if (strcmp(name, FPD_NCF_PRED_WEIGHT) == 0 || strcmp(name, FPD_NCF_PRED_BIAS) == 0) return true;
    int L;
    char rest[16];
    if (m->kind != FPD_NCF_KIND_GMF && sscanf(name, "layer%d.%15s", &L, rest) == 2 && L >= 1 && L <= m->net.n_layers &&
        (!strcmp(rest, "weight") || !strcmp(rest, "bias")))
        return true;
    for (int i = 0; i < m->n_tables; i++) {
        const char *T = fpd_ncf_model_table_name(m->kind, i);
        size_t l = strlen(T);
        if (strcmp(name, T) == 0) return true;
        if (strncmp(name, T, l) == 0 && strncmp(name + l, ".fpd.", 5) == 0) return true;
        if (strncmp(name, T, l) == 0 && strncmp(name + l, ".rowwise.", 9) == 0) return true;
    }
    return false;
}

enum fpd_status fpd_ncf_model_save(const struct fpd_ncf_model *m, const char *path, bool overwrite,
                                   struct fpd_error *err) {
    enum fpd_status st = FPD_STATUS_OK;
    const int64_t pd = fpd_ncf_predict_dim(&m->net);
    int64_t n_src = m->st ? fpd_safetensors_count(m->st) : 0, n_meta_src = m->st ? fpd_safetensors_metadata_count(m->st) : 0;
    int64_t cap = n_src + 4 * (FPD_MAX_MODES + 3) + 2 * FPD_NCF_MAX_LAYERS + 2;
    struct fpd_tensor_info *ts = fpd_calloc((size_t)cap, sizeof *ts);
    void **bufs = fpd_calloc((size_t)cap, sizeof *bufs);
    char **names = fpd_calloc((size_t)cap, sizeof *names);
    const char **keys = fpd_calloc((size_t)(n_meta_src + 6), sizeof *keys);
    const char **vals = fpd_calloc((size_t)(n_meta_src + 6), sizeof *vals);
    const char *json[4] = {NULL, NULL, NULL, NULL};
    char metakey[4][256];
    struct fpd_checkpoint_tensors ct[4];
    memset(ct, 0, sizeof ct);
    const char *free_ext = NULL, *src_ext = NULL;
    char *ext = NULL;
    int64_t n = 0, nm = 0;
    if (!ts || !bufs || !names || !keys || !vals) goto oom;
    bool any_fpd = false;
    const struct fpd_embedding *views[4] = {&m->net.mf_user, &m->net.mf_item, &m->net.mlp_user, &m->net.mlp_item};
    for (int i = 0; i < m->n_tables; i++) {
        const char *T = fpd_ncf_model_table_name(m->kind, i);
        const struct fpd_embedding *view = views[m->kind == FPD_NCF_KIND_MLP ? i + 2 : i];
        if (!m->layer[i]) {
            struct fpd_tensor_info *t = &ts[n];
            const int64_t rows = view->rows, dim = view->dim;
            size_t es = fpd_dtype_size(m->dtype[i]);
            if (!(bufs[n] = fpd_malloc((size_t)(rows * dim) * es))) goto oom;
            fpd_dtype_from_f32(m->dtype[i], m->dense[i], bufs[n], rows * dim);
            t->name = T;
            t->dtype = m->dtype[i];
            t->ndim = 2;
            t->shape[0] = rows;
            t->shape[1] = dim;
            t->data = bufs[n];
            t->nbytes = (size_t)(rows * dim) * es;
            n++;
            continue;
        }
        any_fpd = true;
        /* cores, row_perm and free/1's tensors, and the table's metadata */
        struct fpd_table_meta meta = m->meta[i];
        if (!(meta.core_dtype == FPD_DTYPE_F32 || meta.core_dtype == FPD_DTYPE_F16 || meta.core_dtype == FPD_DTYPE_BF16))
            meta.core_dtype = FPD_DTYPE_F32;
        if ((st = fpd_checkpoint_tensors_init(m->layer[i], T, &meta, &ct[i], err))) goto done;
        for (int64_t q = 0; q < ct[i].n; q++) ts[n++] = ct[i].tensors[q];
        json[i] = ct[i].meta_value;
        snprintf(metakey[i], sizeof metakey[i], "%s", ct[i].meta_key);
        if (ct[i].extension) { /* free/1, with free-rowwise/1 or free-sym/1; tables of both: all three */
            if (free_ext && strcmp(free_ext, ct[i].extension) != 0 && strchr(free_ext, ',') && strchr(ct[i].extension, ','))
                free_ext = FPD_EXTENSION_FREE "," FPD_EXTENSION_FREE_ROWWISE "," FPD_EXTENSION_FREE_SYM;
            else if (!free_ext || strlen(ct[i].extension) > strlen(free_ext))
                free_ext = ct[i].extension;
        }
    }
    /* hidden layers, F32 [out, in] and [out] */
    for (int32_t l = 0; l < m->net.n_layers && m->kind != FPD_NCF_KIND_GMF; l++)
        for (int q = 0; q < 2; q++) {
            struct fpd_tensor_info *t = &ts[n];
            const int64_t out = m->net.layer_dim[l + 1], in = m->net.layer_dim[l];
            if (!(names[n] = fpd_malloc(32))) goto oom;
            snprintf(names[n], 32, "layer%d.%s", (int)l + 1, q ? "bias" : "weight");
            t->name = names[n];
            t->dtype = FPD_DTYPE_F32;
            t->ndim = q ? 1 : 2;
            t->shape[0] = out;
            t->shape[1] = in;
            t->data = m->hidden[2 * l + q];
            t->nbytes = (size_t)(q ? out : out * in) * sizeof(float);
            n++;
        }
    /* prediction weight and bias, in the source's shapes and dtypes */
    const struct fpd_tensor_info *srcw = m->st ? fpd_safetensors_find(m->st, FPD_NCF_PRED_WEIGHT) : NULL;
    const struct fpd_tensor_info *srcb = m->st ? fpd_safetensors_find(m->st, FPD_NCF_PRED_BIAS) : NULL;
    for (int q = 0; q < 2; q++) {
        struct fpd_tensor_info *t = &ts[n];
        const struct fpd_tensor_info *src = q == 0 ? srcw : srcb;
        int64_t numel = q == 0 ? pd : 1;
        size_t es = fpd_dtype_size(m->pred_dtype[q]);
        const float bias = model_bias(m);
        if (!(bufs[n] = fpd_malloc((size_t)numel * es))) goto oom;
        fpd_dtype_from_f32(m->pred_dtype[q], q == 0 ? m->weight : &bias, bufs[n], numel);
        t->name = q == 0 ? FPD_NCF_PRED_WEIGHT : FPD_NCF_PRED_BIAS;
        t->dtype = m->pred_dtype[q];
        if (src) {
            t->ndim = src->ndim;
            memcpy(t->shape, src->shape, sizeof t->shape);
        } else {
            t->ndim = q == 0 ? 2 : 1;
            t->shape[0] = 1;
            t->shape[1] = pd;
        }
        t->data = bufs[n];
        t->nbytes = (size_t)numel * es;
        n++;
    }
    for (int64_t q = 0; q < n_src; q++) {
        const struct fpd_tensor_info *t = fpd_safetensors_tensor(m->st, q);
        if (!model_owns(m, t->name)) ts[n++] = *t;
    }
    for (int64_t q = 0; q < n_meta_src; q++) {
        const char *k, *v;
        fpd_safetensors_metadata_at(m->st, q, &k, &v);
        bool skip = strcmp(k, FPD_META_VERSION_KEY) == 0;
        if (strcmp(k, FPD_META_EXTENSIONS_KEY) == 0) {
            src_ext = v;
            skip = true;
        }
        for (int i = 0; i < m->n_tables; i++) {
            char key[256];
            snprintf(key, sizeof key, "%s%s", FPD_META_TABLE_PREFIX, fpd_ncf_model_table_name(m->kind, i));
            skip |= strcmp(k, key) == 0;
            snprintf(key, sizeof key, "%s%s", FPD_META_ROWWISE_PREFIX, fpd_ncf_model_table_name(m->kind, i));
            skip |= strcmp(k, key) == 0;
        }
        if (!skip) {
            keys[nm] = k;
            vals[nm++] = v;
        }
    }
    /* fpd.extensions: the source's, plus free/1 when a table has free coordinates */
    if (src_ext || free_ext) {
        bool have = false;
        if (src_ext && free_ext) /* free/1 already listed? */
            for (const char *q = strstr(src_ext, free_ext); q && !have; q = strstr(q + 1, free_ext)) {
                size_t l = strlen(free_ext);
                have = (q == src_ext || q[-1] == ',') && (q[l] == '\0' || q[l] == ',');
            }
        size_t len = (src_ext ? strlen(src_ext) : 0) + (free_ext ? strlen(free_ext) : 0) + 2;
        if (!(ext = fpd_malloc(len))) goto oom;
        snprintf(ext, len, "%s%s%s", src_ext ? src_ext : "", src_ext && free_ext && !have ? "," : "",
                 free_ext && !have ? free_ext : "");
        keys[nm] = FPD_META_EXTENSIONS_KEY;
        vals[nm++] = ext;
    }
    if (any_fpd) {
        keys[nm] = FPD_META_VERSION_KEY;
        vals[nm++] = "1";
        for (int i = 0; i < 4; i++)
            if (json[i]) {
                keys[nm] = metakey[i];
                vals[nm++] = json[i];
            }
    }
    st = fpd_safetensors_write(path, ts, n, keys, vals, nm, overwrite ? FPD_WRITE_OVERWRITE : 0u, err);
    goto done;
oom:
    st = fpd__err(err, FPD_STATUS_NOMEM, "%s: out of memory assembling the checkpoint", path);
done:
    if (bufs)
        for (int64_t q = 0; q < cap; q++) fpd_free(bufs[q]);
    if (names)
        for (int64_t q = 0; q < cap; q++) fpd_free(names[q]);
    fpd_free(ts);
    fpd_free(bufs);
    fpd_free(names);
    fpd_free(keys);
    fpd_free(vals);
    for (int i = 0; i < 4; i++) fpd_checkpoint_tensors_free(&ct[i]);
    fpd_free(ext);
    return st;
}

/* ---------------------------------------------------------------- evaluation */

enum fpd_status fpd_ncf_model_eval(const struct fpd_ncf_model *m, const struct fpd_ncf_test *t,
                                   struct fpd_ncf_metrics *out, struct fpd_error *err) {
    struct fpd_rank_metrics rm;
    memset(out, 0, sizeof *out);
    enum fpd_status st = m->kind == FPD_NCF_KIND_GMF
                             ? fpd_gmf_rank(&m->gmf, t->users, t->cand, t->n, t->n_cand, 10, &rm, NULL, err)
                             : fpd_ncf_rank(&m->net, t->users, t->cand, t->n, t->n_cand, 10, &rm, NULL, err);
    if (st) return st;
    out->hr10 = rm.hr;
    out->ndcg10 = rm.ndcg;
    out->users = rm.users;
    return FPD_STATUS_OK;
}

enum fpd_status fpd_ncf_eval_file(const char *ckpt, const char *rating, const char *negative,
                                  struct fpd_ncf_metrics *out, struct fpd_error *err) {
    struct fpd_ncf_model m;
    struct fpd_ncf_test t;
    memset(&t, 0, sizeof t);
    enum fpd_status st = fpd_ncf_model_load_stored(ckpt, &m, err); /* evaluation only: E as stored */
    if (!st) st = fpd_ncf_test_load(rating, negative, &t, err);
    if (!st && (st = fpd_ncf_model_eval(&m, &t, out, err))) {
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "%s", err->msg);
        fpd__err(err, st, "%s with %s: %s", ckpt, rating, msg);
    }
    fpd_ncf_test_free(&t);
    fpd_ncf_model_free(&m);
    return st;
}

/* ---------------------------------------------------------------- task-aware finetune */

struct fpd_gmf_train_params fpd_ncf_finetune_default_params(void) {
    struct fpd_gmf_train_params p = fpd_gmf_train_default_params();
    p.epochs = 10;
    p.batch_size = 1024;
    p.negatives = 4;
    p.learning_rate = 1e-3;
    p.core_learning_rate = 1e-2;
    p.core_lr_relative = true;
    p.train_prediction = true;
    return p;
}

struct epoch_count {
    int64_t epochs;
    double seconds;
    fpd_epoch_callback inner;
    void *inner_data;
};

static bool count_epoch(int64_t epoch, double loss, double seconds, void *ud) {
    struct epoch_count *c = ud;
    c->epochs = epoch;
    c->seconds += seconds;
    return c->inner ? c->inner(epoch, loss, seconds, c->inner_data) : true;
}

enum fpd_status fpd_ncf_finetune_file(const char *ckpt_in, const char *interactions, const char *ckpt_out,
                                      bool overwrite, const struct fpd_gmf_train_params *params, const char *rating,
                                      const char *negative, const char *ref_ckpt, struct fpd_ncf_finetune_report *rep,
                                      struct fpd_error *err) {
    struct fpd_ncf_finetune_report local;
    if (!rep) rep = &local;
    memset(rep, 0, sizeof *rep);
    rep->rel_error[0] = rep->rel_error[1] = NAN;
    struct fpd_ncf_model m;
    struct fpd_ncf_test t;
    struct fpd_ncf_interactions x;
    struct fpd_ncf_model teacher;
    struct fpd_safetensors *ref = NULL;
    memset(&teacher, 0, sizeof teacher);
    memset(&t, 0, sizeof t);
    memset(&x, 0, sizeof x);
    enum fpd_status st = fpd_ncf_model_load(ckpt_in, &m, err);
    if (st) goto done;
    if ((st = fpd_ncf_interactions_load(interactions, 0, &x, err))) goto done;
    const struct fpd_embedding *ue = m.kind == FPD_NCF_KIND_MLP ? &m.net.mlp_user : &m.net.mf_user;
    const struct fpd_embedding *ie = m.kind == FPD_NCF_KIND_MLP ? &m.net.mlp_item : &m.net.mf_item;
    if (x.n_users > ue->rows || x.n_items > ie->rows) {
        st = fpd__err(err, FPD_STATUS_INVALID_ARG,
                     "%s: ids up to user %lld, item %lld, but %s has %lld users and %lld items (ids are 0-based)",
                     interactions, (long long)x.n_users - 1, (long long)x.n_items - 1, ckpt_in,
                     (long long)ue->rows, (long long)ie->rows);
        goto done;
    }
    rep->positives = x.n;
    if (rating && negative) {
        if ((st = fpd_ncf_test_load(rating, negative, &t, err)) || (st = fpd_ncf_model_eval(&m, &t, &rep->before, err)))
            goto done;
        rep->evaluated = true;
    }
    struct fpd_gmf_train_params p = params ? *params : fpd_ncf_finetune_default_params();
    if (p.distill > 0.0 && !p.teacher) {
        if (!ref_ckpt) {
            st = fpd__err(err, FPD_STATUS_INVALID_ARG, "distillation needs the uncompressed checkpoint (reference)");
            goto done;
        }
        if ((st = fpd_ncf_model_load(ref_ckpt, &teacher, err))) goto done;
        p.teacher = &teacher.gmf;
    }
    struct epoch_count ec = {0, 0.0, p.epoch_callback, p.epoch_user_data};
    p.epoch_callback = count_epoch;
    p.epoch_user_data = &ec;
    double t0 = fpd__now();
    if ((st = m.kind == FPD_NCF_KIND_GMF ? fpd_gmf_train(&m.gmf, x.users, x.items, x.n, &p, &rep->final_loss, err)
                                         : fpd_ncf_train(&m.net, x.users, x.items, x.n, &p, &rep->final_loss, err)))
        goto done;
    rep->seconds = fpd__now() - t0;
    rep->epochs = ec.epochs;
    rep->seconds_per_epoch = ec.epochs ? ec.seconds / (double)ec.epochs : 0.0;
    /* E trained in F32 is written as the file stored it (int4-sym rows, ...): round it
     * now, so that "after" and rel_error describe the checkpoint written, not the F32 E
     * (the writer's encoding of these values gives the same rows again) */
    for (int i = 0; i < m.n_tables; i++)
        if (m.layer[i] && m.meta[i].free_rowwise && fpd_layer_get_free_coords(m.layer[i]) > 0 &&
            (st = fpd_layer_quantize_free(m.layer[i], m.meta[i].free_kind, err))) {
            char msg[sizeof err->msg];
            snprintf(msg, sizeof msg, "%s", err->msg);
            fpd__err(err, st, "%s: table '%s' after finetuning: %s", ckpt_in, fpd_ncf_model_table_name(m.kind, i), msg);
            goto done;
        }
    if (rep->evaluated && (st = fpd_ncf_model_eval(&m, &t, &rep->after, err))) goto done;
    if (ref_ckpt && (st = fpd_safetensors_open(ref_ckpt, &ref, err))) goto done;
    for (int i = 0; i < m.n_tables; i++) {
        if (!m.layer[i]) continue;
        size_t l = strlen(m.meta[i].fit);
        if (l + 5 < sizeof m.meta[i].fit && !strstr(m.meta[i].fit, "+task")) strcat(m.meta[i].fit, "+task");
        m.meta[i].rel_error = NAN;
        const struct fpd_tensor_info *d = ref ? fpd_safetensors_find(ref, fpd_ncf_model_table_name(m.kind, i)) : NULL;
        const struct fpd_layer_shape *s = fpd_layer_get_shape(m.layer[i]);
        if (d && d->ndim == 2 && fpd_dtype_is_float(d->dtype) && d->shape[0] == s->rows && d->shape[1] == s->dim) {
            struct fpd_table_view v = {d->data, d->dtype, d->shape[0], d->shape[1]};
            struct fpd_error_stats es;
            if ((st = fpd_layer_error(m.layer[i], &v, &es, err))) goto done;
            m.meta[i].rel_error = es.rel_error;
        }
        if (i < 2) rep->rel_error[i] = m.meta[i].rel_error;
    }
    st = fpd_ncf_model_save(&m, ckpt_out, overwrite, err);
done:
    fpd_safetensors_free(ref);
    fpd_ncf_model_free(&teacher);
    fpd_ncf_interactions_free(&x);
    fpd_ncf_test_free(&t);
    fpd_ncf_model_free(&m);
    return st;
}

/* ---------------------------------------------------------------- MovieLens -> NCF ids */

/*
 * The method. NCF's Data/ files number users 0.. (MovieLens id - 1) and items in
 * order of first appearance in ml-1m ratings.dat, which is grouped by user in
 * increasing id. So the items whose first rater (smallest user id) is user g get
 * the consecutive NCF ids right after those of users < g, in an order inside the
 * group that ratings.tsv does not keep (no timestamps, no file order). Within each
 * group the items are matched to the ids by a minimum-cost assignment (Hungarian
 * method, Kuhn 1955 / Munkres 1957) whose cost counts the test file's evidence:
 * 1000 per test user holding the id as its held-out item who did not rate the item,
 * plus 1 per test user holding the id among its negatives who did rate it (NCF's
 * negatives are unrated items, up to a few dozen exceptions in the file). Where
 * that leaves ties (rare items no test user touches), the checkpoint breaks them:
 * the item goes to the id whose scores rank the item's raters highest among all
 * users (Mann-Whitney AUC), scaled to stay below one unit of evidence.
 */

/* Hungarian method, minimum cost perfect matching of an n x n matrix a (row-major);
 * col_of_row[i] receives the column of row i. O(n^3); workspace allocated. */
static bool hungarian(int64_t n, const double *a, int64_t *col_of_row) {
    double *u = fpd_calloc((size_t)(n + 1), sizeof(double)), *v = fpd_calloc((size_t)(n + 1), sizeof(double));
    double *minv = fpd_malloc((size_t)(n + 1) * sizeof(double));
    int64_t *p = fpd_calloc((size_t)(n + 1), sizeof(int64_t)), *way = fpd_calloc((size_t)(n + 1), sizeof(int64_t));
    char *used = fpd_malloc((size_t)(n + 1));
    bool ok = u && v && minv && p && way && used;
    for (int64_t i = 1; ok && i <= n; i++) {
        p[0] = i;
        int64_t j0 = 0;
        for (int64_t j = 0; j <= n; j++) {
            minv[j] = INFINITY;
            used[j] = 0;
        }
        do {
            used[j0] = 1;
            int64_t i0 = p[j0], j1 = 0;
            double delta = INFINITY;
            for (int64_t j = 1; j <= n; j++) {
                if (used[j]) continue;
                double cur = a[(i0 - 1) * n + (j - 1)] - u[i0] - v[j];
                if (cur < minv[j]) {
                    minv[j] = cur;
                    way[j] = j0;
                }
                if (minv[j] < delta) {
                    delta = minv[j];
                    j1 = j;
                }
            }
            for (int64_t j = 0; j <= n; j++) {
                if (used[j]) {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
        } while (p[j0] != 0);
        do {
            int64_t j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
        } while (j0);
    }
    if (ok)
        for (int64_t j = 1; j <= n; j++) col_of_row[p[j] - 1] = j - 1;
    fpd_free(u);
    fpd_free(v);
    fpd_free(minv);
    fpd_free(p);
    fpd_free(way);
    fpd_free(used);
    return ok;
}

/* CSR: rows of (key -> values), values sorted within a row. */
struct csr {
    int64_t n;
    int64_t *off, *val;
};

static void csr_free(struct csr *c) {
    fpd_free(c->off);
    fpd_free(c->val);
    memset(c, 0, sizeof *c);
}

static bool csr_build(struct csr *c, int64_t n, const int64_t *key, const int64_t *val, int64_t m) {
    c->n = n;
    c->off = fpd_calloc((size_t)(n + 1), sizeof(int64_t));
    c->val = fpd_malloc((size_t)(m > 0 ? m : 1) * sizeof(int64_t));
    int64_t *fill = fpd_calloc((size_t)(n > 0 ? n : 1), sizeof(int64_t));
    if (!c->off || !c->val || !fill) {
        fpd_free(fill);
        return false;
    }
    for (int64_t t = 0; t < m; t++) c->off[key[t] + 1]++;
    for (int64_t r = 0; r < n; r++) c->off[r + 1] += c->off[r];
    for (int64_t t = 0; t < m; t++) c->val[c->off[key[t]] + fill[key[t]]++] = val[t];
    for (int64_t r = 0; r < n; r++)
        qsort(c->val + c->off[r], (size_t)(c->off[r + 1] - c->off[r]), sizeof(int64_t), cmp_i64);
    fpd_free(fill);
    return true;
}

static bool csr_has(const struct csr *c, int64_t r, int64_t v) {
    return bsearch(&v, c->val + c->off[r], (size_t)(c->off[r + 1] - c->off[r]), sizeof(int64_t), cmp_i64) != NULL;
}

struct scored {
    double z;
    int64_t user;
};
static int cmp_scored(const void *a, const void *b) {
    double x = ((const struct scored *)a)->z, y = ((const struct scored *)b)->z;
    return (x > y) - (x < y);
}

/* HR@10 of the model on one rating per user (item picked by pick[] in NCF ids),
 * ranked among the user's test negatives. */
static enum fpd_status hr_on_picks(const struct fpd_ncf_model *model, const struct fpd_ncf_test *test, const int64_t *pick,
                                   double *hr, struct fpd_error *err) {
    int64_t *users = fpd_malloc((size_t)test->n * sizeof(int64_t));
    int64_t *cand = fpd_malloc((size_t)(test->n * test->n_cand) * sizeof(int64_t));
    int64_t n = 0;
    enum fpd_status st = FPD_STATUS_OK;
    if (!users || !cand) {
        st = fpd__err(err, FPD_STATUS_NOMEM, "out of memory");
        goto done;
    }
    for (int64_t t = 0; t < test->n; t++) {
        if (pick[t] < 0) continue;
        users[n] = test->users[t];
        memcpy(cand + n * test->n_cand, test->cand + t * test->n_cand, (size_t)test->n_cand * sizeof(int64_t));
        cand[n * test->n_cand] = pick[t];
        n++;
    }
    struct fpd_rank_metrics rm;
    st = fpd_gmf_rank(&model->gmf, users, cand, n, test->n_cand, 10, &rm, NULL, err);
    *hr = rm.hr;
done:
    fpd_free(users);
    fpd_free(cand);
    return st;
}

enum fpd_status fpd_ncf_movielens_map(const struct fpd_ncf_interactions *ratings, const struct fpd_ncf_test *test,
                                      const struct fpd_ncf_model *model, int64_t *item_map,
                                      struct fpd_ncf_map_report *rep, struct fpd_error *err) {
    memset(rep, 0, sizeof *rep);
    const int64_t U = ratings->n_users, I = ratings->n_items, R = ratings->n, C = test->n_cand;
    enum fpd_status st = FPD_STATUS_OK;
    rep->users = U;
    rep->items = I;
    rep->ratings = R;
    if (test->n != U)
        return fpd__err(err, FPD_STATUS_SHAPE, "the ratings have %lld users but the test set %lld", (long long)U,
                       (long long)test->n);
    if (model && model->kind != FPD_NCF_KIND_GMF)
        return fpd__err(err, FPD_STATUS_UNSUPPORTED, "the MovieLens id map's tie-breaking and checks need a GMF model");
    if (model && (model->gmf.user.rows != U || model->gmf.item.rows != I))
        return fpd__err(err, FPD_STATUS_SHAPE, "the ratings have %lld users and %lld items but the model %lld and %lld",
                       (long long)U, (long long)I, (long long)model->gmf.user.rows, (long long)model->gmf.item.rows);
    for (int64_t q = 0; q < test->n * C; q++)
        if (test->cand[q] < 0 || test->cand[q] >= I)
            return fpd__err(err, FPD_STATUS_SHAPE, "test item id %lld is outside the %lld items of the ratings",
                           (long long)test->cand[q], (long long)I);
    struct csr by_user = {0}, by_item = {0}, pos_of = {0}, neg_of = {0};
    int64_t *minuser = NULL, *gsize = NULL, *gstart = NULL, *group_of_id = NULL, *heldout = NULL;
    int64_t *inv = NULL, *order = NULL, *tu = NULL, *ti = NULL, *col = NULL, *col2 = NULL, *pick = NULL;
    double *cost = NULL, *icost = NULL;
    struct scored *sc = NULL;
    double *rankpos = NULL, *ufac = NULL;
    float *urows = NULL, *irow = NULL;
    unsigned char *tied = NULL;
    int64_t nneg = test->n * (C - 1);
    minuser = fpd_malloc((size_t)I * sizeof(int64_t));
    gsize = fpd_calloc((size_t)U + 1, sizeof(int64_t));
    gstart = fpd_calloc((size_t)U + 1, sizeof(int64_t));
    group_of_id = fpd_malloc((size_t)I * sizeof(int64_t));
    heldout = fpd_malloc((size_t)U * sizeof(int64_t));
    inv = fpd_malloc((size_t)I * sizeof(int64_t));
    order = fpd_malloc((size_t)I * sizeof(int64_t));
    int64_t nwork = nneg > U ? nneg : U;
    nwork = nwork > I ? nwork : I;
    tu = fpd_malloc((size_t)nwork * sizeof(int64_t));
    ti = fpd_malloc((size_t)nwork * sizeof(int64_t));
    tied = fpd_calloc((size_t)I, 1);
    pick = fpd_malloc((size_t)U * sizeof(int64_t));
    if (!minuser || !gsize || !gstart || !group_of_id || !heldout || !inv || !order || !tu || !ti || !tied || !pick ||
        !csr_build(&by_user, U, ratings->users, ratings->items, R) ||
        !csr_build(&by_item, I, ratings->items, ratings->users, R))
        goto oom;
    /* held-out item per user; test users must be 0..U-1, each once */
    for (int64_t u = 0; u < U; u++) heldout[u] = -1;
    for (int64_t t = 0; t < test->n; t++) {
        int64_t u = test->users[t];
        if (u < 0 || u >= U || heldout[u] >= 0) {
            st = fpd__err(err, FPD_STATUS_FORMAT, "test line %lld: user %lld is out of range or repeated",
                         (long long)t + 1, (long long)u);
            goto done;
        }
        heldout[u] = test->cand[t * C];
    }
    /* evidence per NCF id: users holding it as held-out, and as a negative */
    for (int64_t t = 0; t < test->n; t++) {
        tu[t] = test->cand[t * C];
        ti[t] = test->users[t];
    }
    if (!csr_build(&pos_of, I, tu, ti, test->n)) goto oom;
    for (int64_t t = 0, q = 0; t < test->n; t++)
        for (int64_t c = 1; c < C; c++, q++) {
            tu[q] = test->cand[t * C + c];
            ti[q] = test->users[t];
        }
    if (!csr_build(&neg_of, I, tu, ti, nneg)) goto oom;
    /* first-rater groups */
    for (int64_t j = 0; j < I; j++) minuser[j] = by_item.off[j + 1] > by_item.off[j] ? by_item.val[by_item.off[j]] : -1;
    for (int64_t j = 0; j < I; j++) {
        if (minuser[j] < 0) {
            st = fpd__err(err, FPD_STATUS_FORMAT, "item %lld has no rating; the NCF numbering cannot hold it",
                         (long long)j + 1);
            goto done;
        }
        gsize[minuser[j]]++;
    }
    for (int64_t g = 1; g <= U; g++) gstart[g] = gstart[g - 1] + gsize[g - 1];
    for (int64_t g = 0; g < U; g++) {
        if (gsize[g]) rep->groups++;
        for (int64_t x = gstart[g]; x < gstart[g] + gsize[g]; x++) group_of_id[x] = g;
    }
    for (int64_t u = 0; u < U; u++)
        if (group_of_id[heldout[u]] > u) rep->test_out_of_group++;
    /* items of each group, ascending (order[] sorted by (minuser, item)) */
    {
        int64_t *fill = fpd_calloc((size_t)U, sizeof(int64_t));
        if (!fill) goto oom;
        for (int64_t j = 0; j < I; j++) order[gstart[minuser[j]] + fill[minuser[j]]++] = j;
        fpd_free(fill);
    }
    int64_t gmax = 1;
    for (int64_t g = 0; g < U; g++) gmax = gsize[g] > gmax ? gsize[g] : gmax;
    cost = fpd_malloc((size_t)(gmax * gmax) * sizeof(double));
    icost = fpd_malloc((size_t)(gmax * gmax) * sizeof(double));
    col = fpd_malloc((size_t)gmax * sizeof(int64_t));
    col2 = fpd_malloc((size_t)gmax * sizeof(int64_t));
    if (!cost || !icost || !col || !col2) goto oom;
    if (model) {
        /* user rows times the prediction weights, for the tie-break scores */
        const int64_t D = model->gmf.user.dim;
        urows = fpd_malloc((size_t)(U * D) * sizeof(float));
        irow = fpd_malloc((size_t)D * sizeof(float));
        ufac = fpd_malloc((size_t)(U * D) * sizeof(double));
        sc = fpd_malloc((size_t)U * sizeof *sc);
        rankpos = fpd_malloc((size_t)U * sizeof(double));
        if (!urows || !irow || !ufac || !sc || !rankpos) goto oom;
        for (int64_t u = 0; u < U; u++) ti[u] = u;
        const struct fpd_embedding *ue = &model->gmf.user;
        if (ue->layer) {
            if ((st = fpd_layer_lookup(ue->layer, ti, U, urows, err))) goto done;
        } else {
            memcpy(urows, ue->dense, (size_t)(U * D) * sizeof(float));
        }
        for (int64_t q = 0; q < U * D; q++) ufac[q] = (double)urows[q] * model->weight[q % D];
        rep->model_tiebreak = true;
    }
    for (int64_t g = 0; g < U; g++) {
        const int64_t s = gsize[g], x0 = gstart[g];
        if (s == 0) continue;
        const int64_t *items = order + x0;
        for (int64_t a = 0; a < s; a++) {
            int64_t x = x0 + a;
            for (int64_t c = 0; c < s; c++) {
                int64_t j = items[c], pv = 0, nv = 0;
                for (int64_t q = pos_of.off[x]; q < pos_of.off[x + 1]; q++) pv += !csr_has(&by_user, pos_of.val[q], j);
                for (int64_t q = neg_of.off[x]; q < neg_of.off[x + 1]; q++) nv += csr_has(&by_user, neg_of.val[q], j);
                cost[a * s + c] = 1000.0 * (double)pv + (double)nv;
            }
        }
        /* Which ids do the test files leave open? Screen: every row with a unique
         * minimum and those minima in distinct columns means one optimal assignment.
         * Otherwise an id is open when forbidding its optimal item keeps the optimal
         * (integer) cost. */
        bool any_tie = false;
        {
            int64_t *argmin = col2;
            for (int64_t a = 0; a < s; a++) {
                double best = INFINITY;
                int64_t nbest = 0;
                for (int64_t c = 0; c < s; c++) {
                    if (cost[a * s + c] < best) {
                        best = cost[a * s + c];
                        nbest = 1;
                        argmin[a] = c;
                    } else if (cost[a * s + c] == best) {
                        nbest++;
                    }
                }
                any_tie |= nbest > 1;
            }
            for (int64_t a = 0; a < s && !any_tie; a++)
                for (int64_t b = a + 1; b < s && !any_tie; b++) any_tie |= argmin[a] == argmin[b];
        }
        if (any_tie) {
            memcpy(icost, cost, (size_t)(s * s) * sizeof(double));
            if (!hungarian(s, icost, col)) goto oom;
            double opt = 0.0;
            for (int64_t a = 0; a < s; a++) opt += icost[a * s + col[a]];
            for (int64_t a = 0; a < s; a++) {
                double keep = icost[a * s + col[a]];
                icost[a * s + col[a]] = 1e12;
                if (!hungarian(s, icost, col2)) goto oom;
                double alt = 0.0;
                for (int64_t b = 0; b < s; b++) alt += icost[b * s + col2[b]];
                icost[a * s + col[a]] = keep;
                if (alt <= opt) tied[x0 + a] = 1;
            }
            any_tie = false;
            for (int64_t a = 0; a < s; a++) any_tie |= tied[x0 + a];
        }
        if (any_tie && model) {
            const int64_t D = model->gmf.user.dim;
            for (int64_t a = 0; a < s; a++) {
                int64_t x = x0 + a;
                const struct fpd_embedding *ie = &model->gmf.item;
                if (ie->layer) {
                    if ((st = fpd_layer_lookup(ie->layer, &x, 1, irow, err))) goto done;
                } else {
                    memcpy(irow, ie->dense + x * D, (size_t)D * sizeof(float));
                }
                for (int64_t u = 0; u < U; u++) {
                    double z = 0.0;
                    for (int64_t d = 0; d < D; d++) z += ufac[u * D + d] * irow[d];
                    sc[u].z = z;
                    sc[u].user = u;
                }
                qsort(sc, (size_t)U, sizeof *sc, cmp_scored);
                for (int64_t r = 0; r < U; r++) rankpos[sc[r].user] = (double)(r + 1);
                for (int64_t c = 0; c < s; c++) {
                    int64_t j = items[c], nr = by_item.off[j + 1] - by_item.off[j];
                    double sum = 0.0;
                    for (int64_t q = by_item.off[j]; q < by_item.off[j + 1]; q++) sum += rankpos[by_item.val[q]];
                    double auc = nr < U ? (sum - (double)nr * (double)(nr + 1) / 2.0) / ((double)nr * (double)(U - nr))
                                        : 0.5;
                    cost[a * s + c] += (1.0 - auc) / (double)(s + 1);
                }
            }
        }
        if (!hungarian(s, cost, col)) goto oom;
        for (int64_t a = 0; a < s; a++) item_map[items[col[a]]] = x0 + a;
    }
    /* checks under the map */
    for (int64_t j = 0; j < I; j++) inv[item_map[j]] = j;
    for (int64_t t = 0; t < test->n; t++) {
        int64_t u = test->users[t];
        rep->test_unrated += !csr_has(&by_user, u, inv[test->cand[t * C]]);
        for (int64_t c = 1; c < C; c++) rep->neg_rated += csr_has(&by_user, u, inv[test->cand[t * C + c]]);
    }
    rep->neg_total = nneg;
    for (int64_t x = 0; x < I; x++)
        if (tied[x]) {
            rep->tied_ids++;
            rep->tied_ratings += by_item.off[inv[x] + 1] - by_item.off[inv[x]];
        }
    rep->train = R;
    for (int64_t u = 0; u < U; u++) rep->train -= csr_has(&by_user, u, inv[heldout[u]]);
    if (model) {
        struct fpd_ncf_metrics mt;
        if ((st = fpd_ncf_model_eval(model, test, &mt, err))) goto done;
        rep->hr10_test = mt.hr10;
        /* one random training positive per user among untied items (seed fixed) */
        uint64_t rng = 12345;
        int64_t *perm = tu; /* shuffled ids: the control */
        for (int64_t x = 0; x < I; x++) perm[x] = x;
        for (int64_t x = I - 1; x > 0; x--) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            int64_t y = (int64_t)((rng >> 33) % (uint64_t)(x + 1)), tmp = perm[x];
            perm[x] = perm[y];
            perm[y] = tmp;
        }
        for (int64_t t = 0; t < test->n; t++) {
            int64_t u = test->users[t], a = by_user.off[u], b = by_user.off[u + 1], n_ok = 0;
            pick[t] = -1;
            for (int64_t q = a; q < b; q++) {
                int64_t x = item_map[by_user.val[q]];
                if (x == heldout[u] || tied[x]) continue;
                n_ok++;
                rng = rng * 6364136223846793005ull + 1442695040888963407ull;
                if ((rng >> 33) % (uint64_t)n_ok == 0) pick[t] = x; /* reservoir sample */
            }
        }
        if ((st = hr_on_picks(model, test, pick, &rep->hr10_train, err))) goto done;
        for (int64_t t = 0; t < test->n; t++)
            if (pick[t] >= 0) pick[t] = perm[pick[t]];
        if ((st = hr_on_picks(model, test, pick, &rep->hr10_train_shuffled, err))) goto done;
    }
    goto done;
oom:
    st = fpd__err(err, FPD_STATUS_NOMEM, "out of memory building the NCF item map");
done:
    csr_free(&by_user);
    csr_free(&by_item);
    csr_free(&pos_of);
    csr_free(&neg_of);
    fpd_free(minuser);
    fpd_free(gsize);
    fpd_free(gstart);
    fpd_free(group_of_id);
    fpd_free(heldout);
    fpd_free(inv);
    fpd_free(order);
    fpd_free(tu);
    fpd_free(ti);
    fpd_free(col);
    fpd_free(col2);
    fpd_free(pick);
    fpd_free(cost);
    fpd_free(icost);
    fpd_free(sc);
    fpd_free(rankpos);
    fpd_free(ufac);
    fpd_free(urows);
    fpd_free(irow);
    fpd_free(tied);
    return st;
}

struct pair {
    int64_t u, x;
    float r;
};
static int cmp_pair(const void *a, const void *b) {
    const struct pair *p = a, *q = b;
    if (p->u != q->u) return (p->u > q->u) - (p->u < q->u);
    return (p->x > q->x) - (p->x < q->x);
}

enum fpd_status fpd_ncf_write_train(const char *path, const struct fpd_ncf_interactions *ratings,
                                    const int64_t *item_map, const struct fpd_ncf_test *test, bool overwrite,
                                    int64_t *n_out, struct fpd_error *err) {
    if (!overwrite && access(path, F_OK) == 0)
        return fpd__err(err, FPD_STATUS_IO, "%s already exists", path);
    int64_t U = ratings->n_users;
    int64_t *heldout = fpd_malloc((size_t)U * sizeof(int64_t));
    struct pair *pr = fpd_malloc((size_t)ratings->n * sizeof *pr);
    char *tmp = fpd_malloc(strlen(path) + 16);
    FILE *f = NULL;
    enum fpd_status st = FPD_STATUS_OK;
    if (!heldout || !pr || !tmp) {
        st = fpd__err(err, FPD_STATUS_NOMEM, "out of memory");
        goto done;
    }
    for (int64_t u = 0; u < U; u++) heldout[u] = -1;
    for (int64_t t = 0; t < test->n; t++)
        if (test->users[t] >= 0 && test->users[t] < U) heldout[test->users[t]] = test->cand[t * test->n_cand];
    int64_t n = 0;
    for (int64_t q = 0; q < ratings->n; q++) {
        int64_t u = ratings->users[q], x = item_map[ratings->items[q]];
        if (x == heldout[u]) {
            heldout[u] = -2; /* drop it once */
            continue;
        }
        pr[n].u = u;
        pr[n].x = x;
        pr[n++].r = ratings->ratings[q];
    }
    qsort(pr, (size_t)n, sizeof *pr, cmp_pair);
    sprintf(tmp, "%s.tmp-%d", path, (int)getpid());
    f = fopen(tmp, "w");
    if (!f) {
        st = fpd__err(err, FPD_STATUS_IO, "%s: %s", tmp, strerror(errno));
        goto done;
    }
    for (int64_t q = 0; q < n; q++) {
        if (isnan(pr[q].r)) fprintf(f, "%lld\t%lld\n", (long long)pr[q].u, (long long)pr[q].x);
        else fprintf(f, "%lld\t%lld\t%g\n", (long long)pr[q].u, (long long)pr[q].x, (double)pr[q].r);
    }
    if (fflush(f) || fsync(fileno(f)) || ferror(f)) {
        st = fpd__err(err, FPD_STATUS_IO, "%s: %s", tmp, strerror(errno));
        goto done;
    }
    fclose(f);
    f = NULL;
    if (rename(tmp, path)) {
        st = fpd__err(err, FPD_STATUS_IO, "%s: %s", path, strerror(errno));
        goto done;
    }
    if (n_out) *n_out = n;
done:
    if (f) fclose(f);
    if (st && tmp) unlink(tmp);
    fpd_free(tmp);
    fpd_free(heldout);
    fpd_free(pr);
    return st;
}

/* ------------------------------------------------------------ vocabulary maps */

enum fpd_status fpd_ncf_model_apply_vocabulary(struct fpd_ncf_model *m, const char *map_path, struct fpd_error *err) {
    FPD_ASSERT(m && map_path);
    enum fpd_status st = FPD_STATUS_OK;
    FILE *f = fopen(map_path, "r");
    if (!f) return fpd__err(err, FPD_STATUS_IO, "%s: cannot read the vocabulary map: %s", map_path, strerror(errno));
    int64_t *rows[4] = {NULL, NULL, NULL, NULL}, cap[4] = {0, 0, 0, 0}, cnt[4] = {0, 0, 0, 0};
    struct fpd_layer *nl[4] = {NULL, NULL, NULL, NULL};
    char *line = NULL;
    size_t lcap = 0;
    int64_t ln = 0;
    ssize_t len;
    while ((len = getline(&line, &lcap, f)) >= 0) {
        ln++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (ln == 1) {
            if (strcmp(line, "table\tid\trow") != 0) {
                st = fpd__err(err, FPD_STATUS_FORMAT,
                              "%s:1: not a vocabulary map (the header 'table<TAB>id<TAB>row' that fpd-convert "
                              "--vocabulary-out writes is missing)",
                              map_path);
                goto done;
            }
            continue;
        }
        if (len == 0) continue;
        char *t1 = strchr(line, '\t'), *t2 = t1 ? strchr(t1 + 1, '\t') : NULL, *end1, *end2;
        if (!t1 || !t2) {
            st = fpd__err(err, FPD_STATUS_FORMAT, "%s:%lld: expected 'table<TAB>id<TAB>row'", map_path, (long long)ln);
            goto done;
        }
        *t1 = '\0';
        errno = 0;
        const long long id = strtoll(t1 + 1, &end1, 10), row = strtoll(t2 + 1, &end2, 10);
        if (errno || end1 != t2 || *end2 || end1 == t1 + 1 || end2 == t2 + 1 || id < 0 || row < 0) {
            st = fpd__err(err, FPD_STATUS_FORMAT, "%s:%lld: id and row must be integers >= 0", map_path,
                          (long long)ln);
            goto done;
        }
        int32_t i = 0;
        while (i < m->n_tables && strcmp(line, fpd_ncf_model_table_name(m->kind, i)) != 0) i++;
        if (i == m->n_tables || !m->layer[i]) {
            st = fpd__err(err, FPD_STATUS_FORMAT, "%s:%lld: table '%.200s' is %s", map_path, (long long)ln, line,
                          i == m->n_tables ? "not a table of this model" : "not an FPD table of this model");
            goto done;
        }
        const int64_t R = fpd_layer_get_shape(m->layer[i])->rows; /* a fold keeps at least as many rows as ids */
        if (id >= R) {
            st = fpd__err(err, FPD_STATUS_FORMAT, "%s:%lld: table '%.200s': id %lld is beyond its %lld rows", map_path,
                          (long long)ln, line, id, (long long)R);
            goto done;
        }
        if (id >= cap[i]) { /* grow as ids come (-1: not seen) */
            int64_t nc = cap[i] ? cap[i] : 1024;
            while (nc <= id) nc *= 2;
            int64_t *g = fpd_malloc((size_t)nc * sizeof(int64_t));
            if (!g) {
                st = fpd__err(err, FPD_STATUS_NOMEM, "%s: out of memory", map_path);
                goto done;
            }
            if (cap[i]) memcpy(g, rows[i], (size_t)cap[i] * sizeof(int64_t));
            for (int64_t q = cap[i]; q < nc; q++) g[q] = -1;
            fpd_free(rows[i]);
            rows[i] = g;
            cap[i] = nc;
        }
        if (rows[i][id] >= 0) {
            st = fpd__err(err, FPD_STATUS_FORMAT, "%s:%lld: table '%.200s': id %lld appears twice", map_path,
                          (long long)ln, line, id);
            goto done;
        }
        rows[i][id] = row;
        cnt[i] = id + 1 > cnt[i] ? id + 1 : cnt[i];
    }
    for (int32_t i = 0; i < m->n_tables; i++) {
        if (!rows[i]) continue;
        const char *T = fpd_ncf_model_table_name(m->kind, i);
        for (int64_t id = 0; id < cnt[i]; id++)
            if (rows[i][id] < 0) {
                st = fpd__err(err, FPD_STATUS_FORMAT, "%s: table '%s': id %lld is missing (ids run 0..%lld)", map_path,
                              T, (long long)id, (long long)(cnt[i] - 1));
                goto done;
            }
        struct fpd_error e2;
        if ((st = fpd_layer_select_rows(m->layer[i], rows[i], cnt[i], &nl[i], &e2))) {
            st = fpd__err(err, st == FPD_STATUS_NOMEM ? st : FPD_STATUS_FORMAT, "%s: table '%s': %s", map_path, T,
                          e2.msg);
            goto done;
        }
    }
    /* every table mapped: swap the layers in and bind the views anew */
    int64_t nrows[4], dims[4];
    const struct fpd_embedding *views[4] = {&m->net.mf_user, &m->net.mf_item, &m->net.mlp_user, &m->net.mlp_item};
    for (int32_t i = 0; i < m->n_tables; i++) {
        const struct fpd_embedding *v = views[m->kind == FPD_NCF_KIND_MLP ? i + 2 : i];
        if (nl[i]) {
            fpd_layer_free(m->layer[i]);
            m->layer[i] = nl[i];
            nl[i] = NULL;
            m->meta[i].vocabulary_order = false; /* indexed by the original ids again */
        }
        nrows[i] = m->layer[i] ? fpd_layer_get_shape(m->layer[i])->rows : v->rows;
        dims[i] = v->dim;
    }
    model_bind(m, nrows, dims, m->net.bias);
done:
    for (int q = 0; q < 4; q++) {
        fpd_free(rows[q]);
        fpd_layer_free(nl[q]);
    }
    free(line);
    fclose(f);
    return st;
}
