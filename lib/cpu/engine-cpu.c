/*
 * engine-cpu.c - the FPD engine on the CPU: EmbeddingBag forward, backward to
 * sparse core gradients, and optimizer steps (fpd.h, "The engine"; DESIGN.md
 * sections 3 and 7).
 *
 * Notation (fpd.h): k cores, p terms, row digits i_0..i_{k-1}, D_m = d_0 .. d_m,
 * w_m = d_m r_{m+1} (a core slice G_m[t, i] is [r_m, w_m]). The partial product
 * of a prefix (i_0..i_m) is L_m = G_0[i_0] .. G_m[i_m], [D_m, r_{m+1}] row-major,
 * and L_m = L_{m-1} [D_{m-1}, r_m] @ G_m[t, i_m] [r_m, w_m] read as [D_m, r_{m+1}]
 * (the C order of the column digits). L_0 is the slice itself (no work).
 *
 * Plan (per batch). The non-padding entries' stored rows (permutation applied)
 * are radix sorted with their positions (LSD, 11-bit digits, 8-bit for small
 * batches): sorted stored rows are sorted by their digits, first digit most
 * significant, so equal rows are adjacent (de-duplication) and rows with a
 * common prefix form one run at every level (the prefix tree, implicit in the
 * order). The entries of one distinct row are contiguous in the sorted order,
 * so gradients are summed per row without atomics.
 *
 * Forward (depth first over the sorted distinct rows). A "group" is the run of
 * rows sharing their first k-1 digits. For each group, the partials of the
 * levels whose digit changed since the previous group are recomputed for every
 * term (each distinct prefix once), then the group's rows come out of ONE
 * product: the last core's slices of its q rows are gathered as the columns of
 * B [r_{k-1}, q d_{k-1}], and L_{k-2} @ B, accumulated over the terms, holds the
 * q rows (row c is the columns c d_{k-1}.. of it). The distinct rows are then
 * pooled into the bags in output order, each output row written once. Flops:
 * 2 D r per distinct row, 2 D_{m-1} r_m w_m per distinct prefix of length m+1,
 * per term.
 *
 * Backward: the reverse pass over the same tree. dL_m is summed over the rows
 * under a prefix and pushed to G_m and to dL_{m-1} once, when the walk leaves the
 * prefix (dG_m[i_m] += L_{m-1}^T dL_m, dL_{m-1} += dL_m G_m[i_m]^T); the last core's
 * gradient of a group is one product L_{k-2}^T E with E [D_{k-2}, q d_{k-1}] the
 * group's row gradients laid out as columns.
 *
 * Threads: the distinct rows are cut into contiguous ranges at group boundaries,
 * one per thread (a subtree walk needs nothing from another's). Each thread
 * keeps its own gradient of the cores (slices of deeper cores are shared across
 * subtrees), summed over the touched slices after the walk. The products use
 * the engine's own single-threaded micro-kernel (gemm-small.c), never a BLAS
 * that starts threads of its own, so the engine's threads are the only ones:
 * with OpenBLAS, an application that calls BLAS itself from several threads
 * should set OPENBLAS_NUM_THREADS=1, as for any threaded caller.
 */
#include "../backend-impl.h"
#include "kernels-cpu.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#if defined(__SSE2__)
#include <immintrin.h>
#endif

struct worker;
/* The worker pool (see run_workers). */
struct pool {
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    uint64_t gen;
    int32_t pending, started;
    bool quit;
    void (*fn)(struct worker *w, void *arg);
    void *arg;
    int32_t active;
};

struct worker {
    struct cpu_engine *e;
    struct pool *pool;
    int32_t id;
    int64_t u0, u1;            /* distinct rows [u0, u1) (forward/backward walk) */
    int64_t b0, b1;            /* bags (or entries for NONE) [b0, b1) (pooling)  */
    float *part[FPD_MAX_MODES];  /* p blocks of L_m [D_m, r_{m+1}], m = 1..k-2      */
    float *dpart[FPD_MAX_MODES]; /* p blocks of dL_m, m = 0..k-2                    */
    float *bg, *bgt, *cg;      /* gathered last-core slices, transposed, product  */
    float *rowtmp;             /* [D] one row, contiguous                         */
    float *grad[FPD_MAX_MODES];/* private core gradients (threads > 1)            */
    float *gp;                 /* private gradient of P [c, D] (threads > 1)      */
    float *eq;                 /* [c] a row of E as stored (QAT, or E held stored) */
    double flops;
};

struct cpu_engine {
    struct fpd_layer *layer;
    struct fpd_layer_shape s;
    int32_t k;
    int64_t p, D;
    int64_t Dm[FPD_MAX_MODES], w[FPD_MAX_MODES], slice[FPD_MAX_MODES], nslices[FPD_MAX_MODES];
    int64_t psz[FPD_MAX_MODES]; /* floats of one term's L_m: D_m r_{m+1}           */
    int64_t nlast;             /* n_{k-1}: rows per group at most                 */
    int32_t threads;           /* workers allocated                              */
    int32_t active;            /* workers the last plan uses                      */
    struct pool pool;
    bool pool_init;
    struct worker *wk;         /* [threads]                                       */
    pthread_t *tid;            /* [threads]; 1..pool.started run pool_main        */

    /* plan of the last forward */
    int64_t cap_n;             /* entries the scratch holds                       */
    uint64_t *key, *key2;      /* [n] stored rows, radix scratch                  */
    int64_t *pos, *pos2;       /* [n] entry positions                             */
    int64_t *slot;             /* [n] distinct row of each entry, -1 for padding  */
    int64_t *urow, *ustart;    /* [nu] distinct stored rows; [nu + 1] sorted-entry start */
    int64_t *uorig;            /* [nu] original row id of each distinct row       */
    float *rows, *drow;        /* [nu * D] values and gradients of the distinct rows */
    int64_t *bag_of;           /* [n] bag of each entry (SUM/MEAN)                */
    float *coef;               /* [n] weight of each entry in its bag's output    */
    float *out;                /* the forward's output                            */
    bool stream;               /* write it with streaming stores (a large output) */
    int64_t n, nu, n_bags;
    struct fpd_bag_batch last; /* identity of the planned batch                   */
    bool planned;

    /* the batch's slices of cores 1..k-1, transposed ([w_m, r_m] each), for the
     * backward: each distinct slice once, not once per prefix or row */
    float *gT[FPD_MAX_MODES];

    /* gradient and optimizer */
    float *grad[FPD_MAX_MODES];
    unsigned char *touched[FPD_MAX_MODES];
    int64_t *tlist[FPD_MAX_MODES], ntl[FPD_MAX_MODES];
    int64_t *blist[FPD_MAX_MODES], nbl[FPD_MAX_MODES]; /* this batch's slices  */
    float *m1[FPD_MAX_MODES], *m2[FPD_MAX_MODES];
    int64_t step;
    double flops;

    /* free coordinates (fpd_layer_set_free_coords): row i += E[i] P, E [N, fc],
     * P [fc, D]; gradients dE (rows touched, listed) and dP (dense) */
    int64_t fc, N;
    float *ge, *gp;            /* [N * fc], [fc * D]                              */
    unsigned char *etouched;   /* [N]                                             */
    int64_t *elist, nel;       /* touched rows of E                               */
    int64_t *plist;            /* [fc] 0..fc-1: P's slices (its rows)             */
    bool ptouched;
    float *em1, *em2, *pm1, *pm2; /* optimizer state of E and P                  */
    bool qat;                  /* forward/backward with E's rows as stored in     */
    enum fpd_free_kind qkind;  /* this kind (fpd_engine_params.free_qat)          */
};

/* ------------------------------------------------------------ helpers */

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static enum fpd_status grow(void **buf, size_t need, size_t *cap_bytes, struct fpd_error *err) {
    if (need <= *cap_bytes) return FPD_STATUS_OK;
    fpd_free(*buf);
    *buf = fpd_malloc(need);
    *cap_bytes = *buf ? need : 0;
    if (!*buf) return fpd__err(err, FPD_STATUS_NOMEM, "out of memory for the engine's scratch (%zu bytes)", need);
    return FPD_STATUS_OK;
}

static const float *slice_ptr(const struct cpu_engine *e, int32_t m, int64_t t, int64_t i) {
    return fpd_layer_core_const(e->layer, m) + (t * e->s.row_shape[m] + i) * e->slice[m];
}

/* The engine's threads: started once with the engine and parked on a condition
 * variable between calls (a training loop starts no thread per batch). A call
 * publishes (fn, arg, active) under the lock, bumps the generation and wakes
 * them; workers 1..active-1 run fn, worker 0 runs in the caller, and the caller
 * waits until the others are done. */
typedef void (*work_fn)(struct worker *w, void *arg);

static void *pool_main(void *p) {
    struct worker *w = p;
    struct pool *pl = w->pool;
    uint64_t seen = 0;
    pthread_mutex_lock(&pl->mu);
    for (;;) {
        while (!pl->quit && pl->gen == seen) pthread_cond_wait(&pl->go, &pl->mu);
        if (pl->quit) break;
        seen = pl->gen;
        if (w->id >= pl->active) continue;
        work_fn fn = pl->fn;
        void *arg = pl->arg;
        pthread_mutex_unlock(&pl->mu);
        fn(w, arg);
        pthread_mutex_lock(&pl->mu);
        if (--pl->pending == 0) pthread_cond_signal(&pl->done);
    }
    pthread_mutex_unlock(&pl->mu);
    return NULL;
}

/* Run fn on workers 0..active-1, worker 0 in the calling thread. Workers whose
 * thread could not be started run in the caller after the others (same result). */
static void run_workers(struct cpu_engine *e, work_fn fn, void *arg) {
    struct pool *pl = &e->pool;
    const int32_t T = e->active, live = T < pl->started + 1 ? T : pl->started + 1;
    if (live > 1) {
        pthread_mutex_lock(&pl->mu);
        pl->fn = fn;
        pl->arg = arg;
        pl->active = live;
        pl->pending = live - 1;
        pl->gen++;
        pthread_cond_broadcast(&pl->go);
        pthread_mutex_unlock(&pl->mu);
    }
    fn(&e->wk[0], arg);
    for (int32_t i = live; i < T; i++) fn(&e->wk[i], arg);
    if (live > 1) {
        pthread_mutex_lock(&pl->mu);
        while (pl->pending > 0) pthread_cond_wait(&pl->done, &pl->mu);
        pthread_mutex_unlock(&pl->mu);
    }
}

/* ------------------------------------------------------------ lifetime */

static void engine_destroy(void *ctx, void *state) {
    (void)ctx;
    struct cpu_engine *e = state;
    if (!e) return;
    if (e->pool_init) {
        pthread_mutex_lock(&e->pool.mu);
        e->pool.quit = true;
        pthread_cond_broadcast(&e->pool.go);
        pthread_mutex_unlock(&e->pool.mu);
        for (int32_t i = 1; i <= e->pool.started; i++) pthread_join(e->tid[i], NULL);
        pthread_mutex_destroy(&e->pool.mu);
        pthread_cond_destroy(&e->pool.go);
        pthread_cond_destroy(&e->pool.done);
    }
    if (e->wk)
        for (int32_t i = 0; i < e->threads; i++) {
            struct worker *w = &e->wk[i];
            for (int32_t m = 0; m < FPD_MAX_MODES; m++) {
                fpd_free(w->part[m]);
                fpd_free(w->dpart[m]);
                fpd_free(w->grad[m]);
            }
            fpd_free(w->bg);
            fpd_free(w->bgt);
            fpd_free(w->cg);
            fpd_free(w->rowtmp);
            fpd_free(w->gp);
            fpd_free(w->eq);
        }
    fpd_free(e->wk);
    fpd_free(e->tid);
    fpd_free(e->key);
    fpd_free(e->key2);
    fpd_free(e->pos);
    fpd_free(e->pos2);
    fpd_free(e->slot);
    fpd_free(e->urow);
    fpd_free(e->ustart);
    fpd_free(e->rows);
    fpd_free(e->drow);
    fpd_free(e->bag_of);
    fpd_free(e->coef);
    fpd_free(e->uorig);
    fpd_free(e->ge);
    fpd_free(e->gp);
    fpd_free(e->etouched);
    fpd_free(e->elist);
    fpd_free(e->plist);
    fpd_free(e->em1);
    fpd_free(e->em2);
    fpd_free(e->pm1);
    fpd_free(e->pm2);
    for (int32_t m = 0; m < FPD_MAX_MODES; m++) {
        fpd_free(e->grad[m]);
        fpd_free(e->gT[m]);
        fpd_free(e->touched[m]);
        fpd_free(e->tlist[m]);
        fpd_free(e->blist[m]);
        fpd_free(e->m1[m]);
        fpd_free(e->m2[m]);
    }
    fpd_free(e);
}

static enum fpd_status engine_create(void *ctx, struct fpd_layer *layer, const struct fpd_engine_params *params,
                                     void **state, struct fpd_error *err) {
    (void)ctx;
    *state = NULL;
    struct cpu_engine *e = fpd_calloc(1, sizeof *e);
    if (!e) return fpd__err(err, FPD_STATUS_NOMEM, "out of memory for an engine");
    e->layer = layer;
    e->s = *fpd_layer_get_shape(layer);
    const struct fpd_layer_shape *s = &e->s;
    e->k = s->k;
    e->p = s->terms;
    e->D = s->dim;
    for (int32_t m = 0; m < e->k; m++) {
        e->Dm[m] = (m ? e->Dm[m - 1] : 1) * s->col_shape[m];
        e->w[m] = s->col_shape[m] * s->ranks[m + 1];
        e->slice[m] = s->ranks[m] * e->w[m];
        e->nslices[m] = e->p * s->row_shape[m];
        e->psz[m] = e->Dm[m] * s->ranks[m + 1];
    }
    e->nlast = s->row_shape[e->k - 1];
    e->fc = fpd_layer_get_free_coords(layer);
    e->N = s->rows;
    e->qat = params->free_qat && e->fc > 0;
    e->qkind = (enum fpd_free_kind)params->free_qat_kind;
    int32_t T = params->threads;
    if (T <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        T = c > 0 ? (int32_t)c : 1;
    }
    if (T > 64) T = 64;
    e->threads = T;
    enum fpd_status st = FPD_STATUS_OK;
    e->wk = fpd_calloc((size_t)T, sizeof *e->wk);
    e->tid = fpd_calloc((size_t)T, sizeof *e->tid);
    bool ok = e->wk && e->tid;
    const int32_t k = e->k;
    const int64_t rl = s->ranks[k - 1], dl = s->col_shape[k - 1], Dl = k > 1 ? e->Dm[k - 2] : 1;
    for (int32_t i = 0; ok && i < T; i++) {
        struct worker *w = &e->wk[i];
        w->e = e;
        w->id = i;
        for (int32_t m = 0; ok && m + 1 < k; m++) {
            size_t sz = (size_t)(e->p * e->psz[m]);
            ok = (m == 0 || (w->part[m] = fpd_malloc(sz * sizeof(float)))) &&
                 (w->dpart[m] = fpd_calloc(sz, sizeof(float)));
        }
        ok = ok && (w->rowtmp = fpd_malloc((size_t)e->D * sizeof(float)));
        ok = ok && (w->bg = fpd_malloc((size_t)(rl * e->nlast * dl) * sizeof(float))) &&
             (w->bgt = fpd_malloc((size_t)(rl * e->nlast * dl) * sizeof(float))) &&
             (w->cg = fpd_malloc((size_t)(Dl * e->nlast * dl + rl * e->nlast * dl) * sizeof(float)));
        for (int32_t m = 0; ok && T > 1 && m < k; m++)
            ok = (w->grad[m] = fpd_calloc((size_t)fpd_layer_shape_core_numel(s, m), sizeof(float))) != NULL;
        if (ok && T > 1 && e->fc > 0) ok = (w->gp = fpd_calloc((size_t)(e->fc * e->D), sizeof(float))) != NULL;
        if (ok && e->fc > 0) ok = (w->eq = fpd_malloc((size_t)e->fc * sizeof(float))) != NULL;
    }
    if (ok && e->fc > 0) { /* dE's O(N c) buffers wait for the first backward (look-ups need none) */
        ok = (e->gp = fpd_calloc((size_t)(e->fc * e->D), sizeof(float))) &&
             (e->plist = fpd_malloc((size_t)e->fc * sizeof(int64_t)));
        for (int64_t j = 0; ok && j < e->fc; j++) e->plist[j] = j;
    }
    for (int32_t m = 0; ok && m < k; m++)
        ok = (m == 0 || (e->gT[m] = fpd_malloc((size_t)fpd_layer_shape_core_numel(s, m) * sizeof(float)))) &&
             (e->grad[m] = fpd_calloc((size_t)fpd_layer_shape_core_numel(s, m), sizeof(float))) &&
             (e->touched[m] = fpd_calloc((size_t)e->nslices[m], 1)) &&
             (e->tlist[m] = fpd_malloc((size_t)e->nslices[m] * sizeof(int64_t))) &&
             (e->blist[m] = fpd_malloc((size_t)e->nslices[m] * sizeof(int64_t)));
    if (!ok) {
        st = fpd__err(err, FPD_STATUS_NOMEM, "out of memory for the engine's workspace");
        engine_destroy(NULL, e);
        return st;
    }
    e->active = 1;
    if (T > 1) {
        if (pthread_mutex_init(&e->pool.mu, NULL) || pthread_cond_init(&e->pool.go, NULL) ||
            pthread_cond_init(&e->pool.done, NULL)) {
            engine_destroy(NULL, e);
            return fpd__err(err, FPD_STATUS_NOMEM, "cannot create the engine's thread pool");
        }
        e->pool_init = true;
        for (int32_t i = 1; i < T; i++) {
            e->wk[i].pool = &e->pool;
            if (pthread_create(&e->tid[i], NULL, pool_main, &e->wk[i])) break; /* fewer threads: still correct */
            e->pool.started = i;
        }
    }
    *state = e;
    return FPD_STATUS_OK;
}

/* ------------------------------------------------------------ plan */

static bool same_batch(const struct fpd_bag_batch *a, const struct fpd_bag_batch *b) {
    return a->indices == b->indices && a->n_indices == b->n_indices && a->offsets == b->offsets &&
           a->n_bags == b->n_bags && a->bag_size == b->bag_size && a->include_last_offset == b->include_last_offset &&
           a->per_sample_weights == b->per_sample_weights && a->mode == b->mode && a->padding_idx == b->padding_idx;
}

/* Bag b's entries [*lo, *hi). */
static inline void bag_range(const struct fpd_bag_batch *b, int64_t n_bags, int64_t bag, int64_t *lo, int64_t *hi) {
    if (!b->offsets) {
        *lo = bag * b->bag_size;
        *hi = *lo + b->bag_size;
        return;
    }
    *lo = b->offsets[bag];
    *hi = bag + 1 < n_bags || b->include_last_offset ? b->offsets[bag + 1] : b->n_indices;
}

static enum fpd_status plan(struct cpu_engine *e, const struct fpd_bag_batch *b, int64_t n_bags,
                            struct fpd_error *err) {
    enum fpd_status st;
    const int64_t n = b->n_indices, D = e->D;
    if (n > e->cap_n || !e->key) { /* an empty batch gets buffers too (ustart[0] is written) */
        const int64_t cap = n > 0 ? n : 1;
        size_t z = 0;
        void **bufs[] = {(void **)&e->key, (void **)&e->key2, (void **)&e->pos, (void **)&e->pos2,
                         (void **)&e->slot, (void **)&e->bag_of, (void **)&e->coef};
        size_t sizes[] = {8, 8, 8, 8, 8, 8, 4};
        for (size_t q = 0; q < sizeof bufs / sizeof bufs[0]; q++) {
            z = 0;
            if ((st = grow(bufs[q], (size_t)cap * sizes[q], &z, err))) return st;
        }
        /* distinct rows: at most n */
        z = 0;
        if ((st = grow((void **)&e->urow, (size_t)cap * 8, &z, err))) return st;
        z = 0;
        if ((st = grow((void **)&e->ustart, (size_t)(cap + 1) * 8, &z, err))) return st;
        z = 0;
        if ((st = grow((void **)&e->uorig, (size_t)cap * 8, &z, err))) return st;
        z = 0;
        if ((st = grow((void **)&e->rows, (size_t)(cap * D) * 4, &z, err))) return st;
        z = 0;
        if ((st = grow((void **)&e->drow, (size_t)(cap * D) * 4, &z, err))) return st;
        e->cap_n = cap;
    }
    const int64_t *perm = fpd_layer_row_perm(e->layer);
    /* with include_last_offset, entries past the last offset are in no bag: skipped
     * like padding (they have no bag, coefficient or output row) */
    const int64_t n_used =
        b->mode != FPD_BAG_MODE_NONE && b->offsets && b->include_last_offset ? b->offsets[b->n_bags - 1] : n;
    int64_t nv = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t id = b->indices[i];
        e->slot[i] = -1;
        if ((id == b->padding_idx && b->padding_idx >= 0) || i >= n_used) continue;
        e->key[nv] = (uint64_t)(perm ? perm[id] : id);
        e->pos[nv++] = i;
    }
    int64_t padded = 1;
    for (int32_t m = 0; m < e->k; m++) padded *= e->s.row_shape[m];
    int bits = 1;
    while (bits < 63 && ((uint64_t)1 << bits) < (uint64_t)padded) bits++;
    fpd__cpu_radix_sort(e->key, e->pos, nv, bits, e->key2, e->pos2);
    int64_t nu = 0;
    for (int64_t q = 0; q < nv; q++) {
        if (q == 0 || e->key[q] != e->key[q - 1]) {
            e->urow[nu] = (int64_t)e->key[q];
            e->uorig[nu] = b->indices[e->pos[q]];
            e->ustart[nu++] = q;
        }
        e->slot[e->pos[q]] = nu - 1;
    }
    e->ustart[nu] = nv;
    e->nu = nu;
    e->n = n;
    e->n_bags = n_bags;
    /* each entry's bag and coefficient */
    if (b->mode != FPD_BAG_MODE_NONE) {
        for (int64_t bag = 0; bag < n_bags; bag++) {
            int64_t lo, hi, cnt = 0;
            bag_range(b, n_bags, bag, &lo, &hi);
            for (int64_t i = lo; i < hi; i++) cnt += e->slot[i] >= 0;
            for (int64_t i = lo; i < hi; i++) {
                e->bag_of[i] = bag;
                e->coef[i] = b->mode == FPD_BAG_MODE_MEAN   ? 1.0f / (float)(cnt ? cnt : 1)
                             : b->per_sample_weights ? b->per_sample_weights[i]
                                                     : 1.0f;
            }
        }
    }
    /* slices this batch touches, per core, ascending */
    for (int32_t m = 0; m < e->k; m++) {
        const int64_t nm = e->s.row_shape[m];
        int64_t div = 1;
        for (int32_t l = m + 1; l < e->k; l++) div *= e->s.row_shape[l];
        unsigned char *mark = e->touched[m]; /* borrow the flags: restored below */
        int64_t cntm = 0;
        for (int64_t u = 0; u < nu; u++) {
            int64_t dgt = (e->urow[u] / div) % nm;
            if (!(mark[dgt] & 2)) {
                mark[dgt] |= 2;
                e->blist[m][cntm++] = dgt;
            }
        }
        for (int64_t q = 0; q < cntm; q++) mark[e->blist[m][q]] &= (unsigned char)~2;
        if (m > 0) qsort(e->blist[m], (size_t)cntm, sizeof(int64_t), cmp_i64); /* level 0 comes sorted */
        for (int64_t t = 1; t < e->p; t++)
            for (int64_t q = 0; q < cntm; q++) e->blist[m][t * cntm + q] = t * nm + e->blist[m][q];
        e->nbl[m] = cntm * e->p;
    }
    /* the walk's ranges: contiguous distinct rows cut at group boundaries; a
     * thread gets at least ROWS_PER_THREAD rows (below that, starting it costs
     * more than it saves) */
    enum { ROWS_PER_THREAD = 2048 };
    int64_t T = nu / ROWS_PER_THREAD;
    if (T > e->threads) T = e->threads;
    if (T < 1) T = 1;
    e->active = (int32_t)T;
    /* balance by work, not by rows: a row costs its last product, and a row that
     * starts a new prefix of length k-1 also the partials above it (in a Zipf batch
     * the head's rows share prefixes and the tail's do not) */
    double c_row = 1.0, c_group = 0.0, total = 0.0;
    if (e->k >= 2) {
        c_row = (double)(e->Dm[e->k - 2] * e->s.ranks[e->k - 1] * e->s.col_shape[e->k - 1]);
        for (int32_t m = 1; m <= e->k - 2; m++) c_group += (double)(e->Dm[m - 1] * e->s.ranks[m] * e->w[m]);
    }
    for (int64_t v = 0; v < nu; v++)
        total += c_row + ((v == 0 || e->urow[v] / e->nlast != e->urow[v - 1] / e->nlast) ? c_group : 0.0);
    int64_t u = 0;
    double acc = 0.0;
    for (int64_t i = 0; i < T; i++) {
        struct worker *w = &e->wk[i];
        w->u0 = u;
        const double goal = (double)(i + 1) * total / (double)T;
        int64_t target = u;
        if (i == T - 1) target = nu;
        else
            while (target < nu && (acc < goal || (target > 0 && e->urow[target] / e->nlast ==
                                                                   e->urow[target - 1] / e->nlast))) {
                acc += c_row + ((target == 0 || e->urow[target] / e->nlast != e->urow[target - 1] / e->nlast)
                                    ? c_group : 0.0);
                target++;
            }
        u = target;
        w->u1 = u;
        int64_t nout = b->mode == FPD_BAG_MODE_NONE ? n : n_bags;
        w->b0 = i * nout / T;
        w->b1 = (i + 1) * nout / T;
    }
    e->last = *b;
    e->planned = true;
    return FPD_STATUS_OK;
}

/* ------------------------------------------------------------ the walk */

/* Recompute the partials L_m, m = max(from, 1)..k-2, of every term for the
 * prefix digits dig. */
static void partials(struct worker *w, const int64_t *dig, int32_t from) {
    struct cpu_engine *e = w->e;
    const struct fpd_layer_shape *s = &e->s;
    for (int64_t t = 0; t < e->p; t++)
        for (int32_t m = from > 1 ? from : 1; m <= e->k - 2; m++) {
            const float *prev = m == 1 ? slice_ptr(e, 0, t, dig[0]) : w->part[m - 1] + t * e->psz[m - 1];
            fpd__cpu_gemm_small(e->Dm[m - 1], e->w[m], s->ranks[m], prev, s->ranks[m], 1, slice_ptr(e, m, t, dig[m]),
                                e->w[m], w->part[m] + t * e->psz[m], e->w[m], false);
            w->flops += 2.0 * (double)(e->Dm[m - 1] * s->ranks[m] * e->w[m]);
        }
}

/* L_{k-2} of term t for the current prefix (k >= 2). */
static const float *last_partial(struct worker *w, int64_t t, const int64_t *dig) {
    struct cpu_engine *e = w->e;
    return e->k == 2 ? slice_ptr(e, 0, t, dig[0]) : w->part[e->k - 2] + t * e->psz[e->k - 2];
}

/* Digits 0..k-2 of stored row `row`. */
static inline void prefix_digits(const struct cpu_engine *e, int64_t row, int64_t *dig) {
    int64_t x = row / e->nlast;
    for (int32_t m = e->k - 2; m >= 0; m--) {
        dig[m] = x % e->s.row_shape[m];
        x /= e->s.row_shape[m];
    }
}

/* dst[i, 0..cols) = src[i, 0..cols) for i < rows (leading dimensions ldd, lds):
 * the few floats a row of a slice or of a product holds, without a call each. */
typedef float fpd__v4 __attribute__((vector_size(16), aligned(4)));
static inline void copy_cols(float *restrict dst, int64_t ldd, const float *restrict src, int64_t lds, int64_t rows,
                             int64_t cols) {
    /* in 16-byte moves without an inner loop: GCC turns a contiguous inner copy
     * loop into a memcpy call per row, which costs more than the copy */
    if (cols == 4) {
        for (int64_t i = 0; i < rows; i++) *(fpd__v4 *)(dst + i * ldd) = *(const fpd__v4 *)(src + i * lds);
        return;
    }
    if (cols == 8) {
        for (int64_t i = 0; i < rows; i++) {
            *(fpd__v4 *)(dst + i * ldd) = *(const fpd__v4 *)(src + i * lds);
            *(fpd__v4 *)(dst + i * ldd + 4) = *(const fpd__v4 *)(src + i * lds + 4);
        }
        return;
    }
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) dst[i * ldd + j] = src[i * lds + j];
}

/* dst[j] = a src[j] (first) or dst[j] += a src[j]. */
FPD__VECTORIZE static void axpy(float *restrict dst, const float *restrict src, float a, int64_t n, bool first) {
    if (first)
        for (int64_t j = 0; j < n; j++) dst[j] = a * src[j];
    else
        for (int64_t j = 0; j < n; j++) dst[j] += a * src[j];
}

/* dst[0..n) = src[0..n), with non-temporal stores when `stream` (and the
 * processor has them, dst is 16-byte aligned, n a multiple of 4): a large batch's
 * output is written once, in order, and not read back by the engine, so
 * ordinary stores would first read every line (read for ownership) and push the
 * distinct rows out of the cache. A small output is about to be read by the
 * caller: it stays in the cache. The caller fences (store_fence). */
static inline void copy_stream(float *restrict dst, const float *restrict src, int64_t n, bool stream) {
#if defined(__SSE2__)
    if (stream && ((uintptr_t)dst & 15) == 0 && (n & 3) == 0) {
        for (int64_t j = 0; j < n; j += 4) _mm_stream_ps(dst + j, _mm_loadu_ps(src + j));
        return;
    }
#endif
    memcpy(dst, src, (size_t)n * sizeof(float));
}

static inline void store_fence(void) {
#if defined(__SSE2__)
    _mm_sfence();
#endif
}

/* Row i of E as the forward uses it: E's own, or with quantization-aware
 * training the row as a checkpoint stores it (in the worker's buffer); E NULL:
 * the layer holds E as stored rows (look-ups only), decoded into the buffer. */
static inline const float *free_row(struct worker *w, const float *E, int64_t i) {
    const struct cpu_engine *e = w->e;
    if (!E) {
        fpd_layer_free_row(e->layer, i, w->eq);
        return w->eq;
    }
    if (!e->qat) return E + i * e->fc;
    fpd__free_fake_quant_row(e->qkind, E + i * e->fc, e->fc, w->eq);
    return w->eq;
}

/* Free coordinates: rows[u] += E[i] P for the worker's distinct rows (i the
 * row's original id). */
static void free_forward(struct worker *w) {
    struct cpu_engine *e = w->e;
    const int64_t D = e->D, c = e->fc;
    if (c == 0) return;
    const float *E = fpd_layer_get_free_e_const(e->layer), *P = fpd_layer_get_free_p_const(e->layer);
    for (int64_t u = w->u0; u < w->u1; u++) {
        const float *eu = free_row(w, E, e->uorig[u]);
        for (int64_t j = 0; j < c; j++) axpy(e->rows + u * D, P + j * D, eu[j], D, false);
    }
    w->flops += 2.0 * (double)((w->u1 - w->u0) * c * D);
}

/* Their backward, from drow: dE[i] += drow[u] P^T (rows distinct: no two workers
 * write one row), dP += E[i]^T drow[u] (private per worker when threads > 1);
 * quantization-aware: E[i] as the forward used it in dP, dE straight through. */
static void free_backward(struct worker *w) {
    struct cpu_engine *e = w->e;
    const int64_t D = e->D, c = e->fc;
    if (c == 0) return;
    const float *E = fpd_layer_get_free_e_const(e->layer), *P = fpd_layer_get_free_p_const(e->layer);
    float *gp = e->active > 1 ? w->gp : e->gp;
    for (int64_t u = w->u0; u < w->u1; u++) {
        const int64_t i = e->uorig[u];
        const float *dr = e->drow + u * D, *eu = free_row(w, E, i); /* E in F32 (engine.c) */
        for (int64_t j = 0; j < c; j++) {
            double dot = 0.0;
            for (int64_t x = 0; x < D; x++) dot += (double)dr[x] * P[j * D + x];
            e->ge[i * c + j] += (float)dot;
            axpy(gp + j * D, dr, eu[j], D, false);
        }
    }
}

static void forward_walk(struct worker *w, void *arg) {
    (void)arg;
    struct cpu_engine *e = w->e;
    const struct fpd_layer_shape *s = &e->s;
    const int32_t k = e->k;
    const int64_t D = e->D;
    w->flops = 0.0;
    if (k == 1) {
        for (int64_t u = w->u0; u < w->u1; u++)
            for (int64_t t = 0; t < e->p; t++) axpy(e->rows + u * D, slice_ptr(e, 0, t, e->urow[u]), 1.0f, D, t == 0);
        free_forward(w);
        return;
    }
    const int64_t r = s->ranks[k - 1], d = s->col_shape[k - 1], Dp = e->Dm[k - 2];
    int64_t prev[FPD_MAX_MODES], dig[FPD_MAX_MODES];
    bool have = false;
    for (int64_t g0 = w->u0; g0 < w->u1;) {
        const int64_t pre = e->urow[g0] / e->nlast;
        int64_t g1 = g0 + 1;
        while (g1 < w->u1 && e->urow[g1] / e->nlast == pre) g1++;
        const int64_t q = g1 - g0, qd = q * d;
        prefix_digits(e, e->urow[g0], dig);
        int32_t lev = 0;
        if (have)
            while (lev < k - 1 && dig[lev] == prev[lev]) lev++;
        if (lev < k - 1) partials(w, dig, lev);
        memcpy(prev, dig, sizeof dig);
        have = true;
        /* the group's rows, summed over the terms: C [Dp, q d] += L_{k-2} [Dp, r] @ B [r, q d]
         * (one row: C is the row itself, written in place) */
        float *C = q == 1 ? e->rows + g0 * D : w->cg;
        for (int64_t t = 0; t < e->p; t++) {
            for (int64_t c = 0; c < q; c++) {
                const float *gl = slice_ptr(e, k - 1, t, e->urow[g0 + c] % e->nlast);
                copy_cols(w->bg + c * d, qd, gl, d, r, d);
            }
            fpd__cpu_gemm_small(Dp, qd, r, last_partial(w, t, dig), r, 1, w->bg, qd, C, qd, t > 0);
        }
        w->flops += 2.0 * (double)(e->p * Dp * r * qd);
        for (int64_t c = 0; q > 1 && c < q; c++) copy_cols(e->rows + (g0 + c) * D, d, w->cg + c * d, qd, Dp, d);
        g0 = g1;
    }
    free_forward(w);
}

/* Pool the distinct rows into the output (rows [b0, b1) of it): each output row
 * is summed in the worker's row buffer and written once, streaming. */
static void pool_forward(struct worker *w, void *arg) {
    struct cpu_engine *e = w->e;
    const struct fpd_bag_batch *b = arg;
    const int64_t D = e->D;
    for (int64_t o = w->b0; o < w->b1; o++) {
        float *dst = e->out + o * D;
        if (b->mode == FPD_BAG_MODE_NONE) {
            if (e->slot[o] < 0) memset(dst, 0, (size_t)D * sizeof(float));
            else copy_stream(dst, e->rows + e->slot[o] * D, D, e->stream);
            continue;
        }
        int64_t lo, hi, used = 0;
        const float *one = NULL;
        bag_range(b, e->n_bags, o, &lo, &hi);
        for (int64_t i = lo; i < hi; i++) {
            if (e->slot[i] < 0) continue;
            const float *src = e->rows + e->slot[i] * D;
            if (used == 0 && e->coef[i] == 1.0f) one = src; /* a single unscaled row: no arithmetic */
            else {
                if (one) axpy(w->rowtmp, one, 1.0f, D, true);
                axpy(w->rowtmp, src, e->coef[i], D, used == 0);
                one = NULL;
            }
            used++;
        }
        if (used == 0) memset(dst, 0, (size_t)D * sizeof(float)); /* an empty bag */
        else copy_stream(dst, one ? one : w->rowtmp, D, e->stream);
    }
    store_fence();
}

static enum fpd_status engine_forward(void *ctx, void *state, const struct fpd_bag_batch *b, int64_t n_bags,
                                      float *out, struct fpd_error *err) {
    (void)ctx;
    struct cpu_engine *e = state;
    enum fpd_status st = plan(e, b, n_bags, err);
    if (st) return st;
    e->out = out;
    /* streaming stores from 8 MiB of output (beyond what the caches keep for the caller) */
    e->stream = (double)fpd_bag_batch_out_rows(b) * (double)e->D * sizeof(float) >= 8.0 * 1048576.0;
    run_workers(e, forward_walk, NULL);
    run_workers(e, pool_forward, (void *)b);
    e->flops = 0.0;
    for (int32_t i = 0; i < e->active; i++) e->flops += e->wk[i].flops;
    return FPD_STATUS_OK;
}

/* ------------------------------------------------------------ backward */

/* Push dL_m of the prefix `dig` (every term) into dG_m and dL_{m-1}, then clear it. */
static void flush_level(struct worker *w, float *const *grad, const int64_t *dig, int32_t m) {
    struct cpu_engine *e = w->e;
    const struct fpd_layer_shape *s = &e->s;
    const int64_t sz = e->psz[m];
    for (int64_t t = 0; t < e->p; t++) {
        float *dg = grad[m] + (t * s->row_shape[m] + dig[m]) * e->slice[m];
        float *dl = w->dpart[m] + t * sz;
        if (m == 0) {
            for (int64_t q = 0; q < sz; q++) dg[q] += dl[q];
        } else {
            const int64_t rm = s->ranks[m], Dp = e->Dm[m - 1], wm = e->w[m];
            const float *lp = m == 1 ? slice_ptr(e, 0, t, dig[0]) : w->part[m - 1] + t * e->psz[m - 1];
            /* dG [rm, wm] += L_{m-1}^T [rm, Dp] @ dL_m [Dp, wm] */
            fpd__cpu_gemm_small(rm, wm, Dp, lp, 1, rm, dl, wm, dg, wm, true);
            /* dL_{m-1} [Dp, rm] += dL_m [Dp, wm] @ G^T [wm, rm] */
            const float *gt = e->gT[m] + (t * s->row_shape[m] + dig[m]) * e->slice[m];
            fpd__cpu_gemm_small(Dp, rm, wm, dl, wm, 1, gt, rm, w->dpart[m - 1] + t * e->psz[m - 1], rm, true);
            w->flops += 4.0 * (double)(rm * wm * Dp);
        }
        memset(dl, 0, (size_t)sz * sizeof(float));
    }
}

static void backward_walk(struct worker *w) {
    struct cpu_engine *e = w->e;
    const struct fpd_layer_shape *s = &e->s;
    const int32_t k = e->k;
    const int64_t D = e->D;
    float *const *grad = e->active > 1 ? w->grad : e->grad;
    w->flops = 0.0;
    if (k == 1) {
        for (int64_t u = w->u0; u < w->u1; u++)
            for (int64_t t = 0; t < e->p; t++)
                axpy(grad[0] + (t * s->row_shape[0] + e->urow[u]) * e->slice[0], e->drow + u * D, 1.0f, D, false);
        return;
    }
    const int64_t r = s->ranks[k - 1], d = s->col_shape[k - 1], Dp = e->Dm[k - 2];
    int64_t prev[FPD_MAX_MODES], dig[FPD_MAX_MODES];
    bool have = false;
    for (int64_t g0 = w->u0; g0 <= w->u1;) {
        int32_t lev = 0;
        int64_t g1 = g0;
        if (g0 < w->u1) {
            const int64_t pre = e->urow[g0] / e->nlast;
            g1 = g0 + 1;
            while (g1 < w->u1 && e->urow[g1] / e->nlast == pre) g1++;
            prefix_digits(e, e->urow[g0], dig);
            if (have)
                while (lev < k - 1 && dig[lev] == prev[lev]) lev++;
        }
        /* leaving the prefixes at levels >= lev: flush them, deepest first */
        if (have)
            for (int32_t m = k - 2; m >= lev; m--) flush_level(w, grad, prev, m);
        if (g0 == w->u1) break;
        if (lev < k - 1) partials(w, dig, lev);
        memcpy(prev, dig, sizeof dig);
        have = true;
        const int64_t q = g1 - g0, qd = q * d;
        /* E [Dp, q d]: the rows' gradients as columns */
        float *E = w->cg, *dB = w->cg + Dp * qd;
        if (q == 1) {
            E = e->drow + g0 * D; /* already [Dp, d] */
        } else {
            for (int64_t c = 0; c < q; c++) {
                const float *src = e->drow + (g0 + c) * D;
                copy_cols(E + c * d, qd, src, d, Dp, d);
            }
        }
        for (int64_t t = 0; t < e->p; t++) {
            for (int64_t c = 0; c < q; c++) /* B^T [q d, r]: the slices, transposed */
                memcpy(w->bgt + c * d * r, e->gT[k - 1] + (t * e->nlast + e->urow[g0 + c] % e->nlast) * e->slice[k - 1],
                       (size_t)(d * r) * sizeof(float));
            const float *L = last_partial(w, t, dig);
            /* dB [r, q d] = L^T [r, Dp] @ E; scattered into the slices */
            fpd__cpu_gemm_small(r, qd, Dp, L, 1, r, E, qd, dB, qd, false);
            for (int64_t c = 0; c < q; c++) {
                float *dg = grad[k - 1] + (t * e->nlast + e->urow[g0 + c] % e->nlast) * e->slice[k - 1];
                for (int64_t l = 0; l < r; l++) axpy(dg + l * d, dB + l * qd + c * d, 1.0f, d, false);
            }
            /* dL_{k-2} [Dp, r] += E [Dp, q d] @ B^T [q d, r] */
            fpd__cpu_gemm_small(Dp, r, qd, E, qd, 1, w->bgt, r, w->dpart[k - 2] + t * e->psz[k - 2], r, true);
        }
        w->flops += 4.0 * (double)(e->p * Dp * r * qd);
        g0 = g1;
    }
}

/* drow[u] = sum over u's entries of coef * grad_out[bag], for the worker's rows. */
static void row_grads(struct worker *w, void *arg) {
    struct cpu_engine *e = w->e;
    const struct fpd_bag_batch *b = ((void **)arg)[0];
    const float *gout = ((void **)arg)[1];
    const int64_t D = e->D;
    for (int64_t u = w->u0; u < w->u1; u++) {
        float *dst = e->drow + u * D;
        for (int64_t q = e->ustart[u]; q < e->ustart[u + 1]; q++) {
            const int64_t i = e->pos[q];
            const float *src;
            float cf = 1.0f;
            if (b->mode == FPD_BAG_MODE_NONE) {
                src = gout + i * D;
            } else {
                src = gout + e->bag_of[i] * D;
                cf = e->coef[i];
            }
            axpy(dst, src, cf, D, q == e->ustart[u]);
        }
    }
    backward_walk(w);
    free_backward(w);
}

static enum fpd_status engine_backward(void *ctx, void *state, const struct fpd_bag_batch *b, int64_t n_bags,
                                       const float *grad_out, struct fpd_error *err) {
    (void)ctx;
    (void)n_bags;
    struct cpu_engine *e = state;
    if (!e->planned || !same_batch(&e->last, b))
        return fpd__err(err, FPD_STATUS_INVALID_ARG,
                        "fpd_engine_backward needs the batch of the last fpd_engine_forward call");
    if (e->fc > 0 && !e->ge) { /* the free coordinates' row gradients, on first use */
        if (!(e->ge = fpd_calloc((size_t)(e->N * e->fc), sizeof(float))) ||
            !(e->etouched = fpd_calloc((size_t)e->N, 1)) ||
            !(e->elist = fpd_malloc((size_t)e->N * sizeof(int64_t))))
            return fpd__err(err, FPD_STATUS_NOMEM, "out of memory for the gradient of %lld x %lld free coordinates",
                            (long long)e->N, (long long)e->fc);
    }
    for (int32_t m = 1; m < e->k; m++) {
        const int64_t rm = e->s.ranks[m], wm = e->w[m];
        for (int64_t q = 0; q < e->nbl[m]; q++) {
            const int64_t off = e->blist[m][q] * e->slice[m];
            fpd__cpu_transpose(rm, wm, fpd_layer_core_const(e->layer, m) + off, wm, e->gT[m] + off, rm);
        }
    }
    const void *args[2] = {b, grad_out};
    run_workers(e, row_grads, (void *)args);
    for (int32_t m = 0; m < e->k; m++) {
        const int64_t sl = e->slice[m];
        for (int64_t q = 0; q < e->nbl[m]; q++) {
            const int64_t id = e->blist[m][q];
            if (e->active > 1) {
                float *dst = e->grad[m] + id * sl;
                for (int32_t i = 0; i < e->active; i++) {
                    float *src = e->wk[i].grad[m] + id * sl;
                    for (int64_t x = 0; x < sl; x++) dst[x] += src[x];
                    memset(src, 0, (size_t)sl * sizeof(float));
                }
            }
            if (!e->touched[m][id]) {
                e->touched[m][id] = 1;
                e->tlist[m][e->ntl[m]++] = id;
            }
        }
    }
    if (e->fc > 0) {
        for (int32_t i = 0; e->active > 1 && i < e->active; i++) {
            float *src = e->wk[i].gp;
            for (int64_t x = 0; x < e->fc * e->D; x++) e->gp[x] += src[x];
            memset(src, 0, (size_t)(e->fc * e->D) * sizeof(float));
        }
        for (int64_t u = 0; u < e->nu; u++) {
            const int64_t i = e->uorig[u];
            if (!e->etouched[i]) {
                e->etouched[i] = 1;
                e->elist[e->nel++] = i;
            }
        }
        e->ptouched |= e->nu > 0;
    }
    return FPD_STATUS_OK;
}

/* ------------------------------------------------------------ gradient and step */

static void engine_grad(void *ctx, void *state, int32_t m, const float **grad, const int64_t **slices,
                        int64_t *n_slices) {
    (void)ctx;
    struct cpu_engine *e = state;
    if (m == e->k) { /* E: slices are rows */
        if (!e->ge) /* no backward yet: a zero gradient */
            e->ge = fpd_calloc((size_t)(e->N * e->fc), sizeof(float));
        if (e->elist) qsort(e->elist, (size_t)e->nel, sizeof(int64_t), cmp_i64);
        *grad = e->ge;
        if (slices) *slices = e->elist;
        if (n_slices) *n_slices = e->nel;
        return;
    }
    if (m == e->k + 1) { /* P: slices are its rows, all touched by any row */
        *grad = e->gp;
        if (slices) *slices = e->plist;
        if (n_slices) *n_slices = e->ptouched ? e->fc : 0;
        return;
    }
    qsort(e->tlist[m], (size_t)e->ntl[m], sizeof(int64_t), cmp_i64);
    *grad = e->grad[m];
    if (slices) *slices = e->tlist[m];
    if (n_slices) *n_slices = e->ntl[m];
}

static void engine_zero_grad(void *ctx, void *state) {
    (void)ctx;
    struct cpu_engine *e = state;
    for (int32_t m = 0; m < e->k; m++) {
        for (int64_t q = 0; q < e->ntl[m]; q++) {
            memset(e->grad[m] + e->tlist[m][q] * e->slice[m], 0, (size_t)e->slice[m] * sizeof(float));
            e->touched[m][e->tlist[m][q]] = 0;
        }
        e->ntl[m] = 0;
    }
    for (int64_t q = 0; q < e->nel; q++) {
        memset(e->ge + e->elist[q] * e->fc, 0, (size_t)e->fc * sizeof(float));
        e->etouched[e->elist[q]] = 0;
    }
    e->nel = 0;
    if (e->ptouched) memset(e->gp, 0, (size_t)(e->fc * e->D) * sizeof(float));
    e->ptouched = false;
}

/* Optimizer state of one parameter of nel floats in nsl slices of sl floats:
 * row-wise Adagrad one float per slice (*m1), Adam two per entry. */
static bool state_alloc(enum fpd_optimizer_kind kind, int64_t nel, int64_t nsl, float **m1, float **m2) {
    if (kind == FPD_OPTIMIZER_KIND_ROWWISE_ADAGRAD && !*m1) {
        *m1 = fpd_calloc((size_t)nsl, sizeof(float));
        return *m1 != NULL;
    }
    if ((kind == FPD_OPTIMIZER_KIND_ADAM || kind == FPD_OPTIMIZER_KIND_LAZY_ADAM) && !*m2) {
        fpd_free(*m1);
        *m1 = fpd_calloc((size_t)nel, sizeof(float));
        *m2 = fpd_calloc((size_t)nel, sizeof(float));
        return *m1 && *m2;
    }
    return true;
}

/* One step of x [nel] (slices of sl floats; the touched ones listed) from g. */
static void step_param(enum fpd_optimizer_kind kind, float *x, const float *g, float *m1, float *m2, int64_t nel,
                       const int64_t *list, int64_t nlist, int64_t sl, float lr, float b1, float b2, float eps,
                       float bc1, float bc2) {
    if (kind == FPD_OPTIMIZER_KIND_ADAM) {
        fpd__adam_update(x, g, m1, m2, nel, lr, b1, b2, eps, bc1, bc2);
        return;
    }
    for (int64_t q = 0; q < nlist; q++) {
        const int64_t off = list[q] * sl;
        const float *gs = g + off;
        if (kind == FPD_OPTIMIZER_KIND_SGD) {
            for (int64_t j = 0; j < sl; j++) x[off + j] -= lr * gs[j];
        } else if (kind == FPD_OPTIMIZER_KIND_ROWWISE_ADAGRAD) {
            float ss = 0.0f;
            for (int64_t j = 0; j < sl; j++) ss += gs[j] * gs[j];
            float *st = m1 + list[q];
            *st += ss / (float)sl;
            const float mult = lr / (sqrtf(*st) + eps);
            for (int64_t j = 0; j < sl; j++) x[off + j] -= mult * gs[j];
        } else {
            fpd__adam_update(x + off, gs, m1 + off, m2 + off, sl, lr, b1, b2, eps, bc1, bc2);
        }
    }
}

static enum fpd_status engine_step(void *ctx, void *state, const struct fpd_optimizer_params *o,
                                   struct fpd_error *err) {
    struct cpu_engine *e = state;
    const enum fpd_optimizer_kind kind = o->kind;
    for (int32_t m = 0; m < e->k; m++)
        if (!state_alloc(kind, fpd_layer_shape_core_numel(&e->s, m), e->nslices[m], &e->m1[m], &e->m2[m]))
            return fpd__err(err, FPD_STATUS_NOMEM, "out of memory for the optimizer state");
    if (e->fc > 0 && !e->ge && !(e->ge = fpd_calloc((size_t)(e->N * e->fc), sizeof(float))))
        return fpd__err(err, FPD_STATUS_NOMEM, "out of memory for the gradient of the free coordinates");
    if (e->fc > 0 && (!state_alloc(kind, e->N * e->fc, e->N, &e->em1, &e->em2) ||
                      !state_alloc(kind, e->fc * e->D, e->fc, &e->pm1, &e->pm2)))
        return fpd__err(err, FPD_STATUS_NOMEM, "out of memory for the optimizer state of the free coordinates");
    e->step++;
    const float b1 = (float)o->beta1, b2 = (float)o->beta2, eps = (float)o->eps;
    const float bc1 = 1.0f - powf(b1, (float)e->step), bc2 = 1.0f - powf(b2, (float)e->step);
    for (int32_t m = 0; m < e->k; m++) {
        const float lr = (float)(o->learning_rate * (o->lr_scale[m] > 0.0 ? o->lr_scale[m] : 1.0));
        step_param(kind, fpd_layer_core(e->layer, m), e->grad[m], e->m1[m], e->m2[m],
                   fpd_layer_shape_core_numel(&e->s, m), e->tlist[m], e->ntl[m], e->slice[m], lr, b1, b2, eps, bc1,
                   bc2);
    }
    if (e->fc > 0) {
        const float lr = (float)(o->learning_rate * (o->free_lr_scale > 0.0 ? o->free_lr_scale : 1.0));
        step_param(kind, fpd_layer_get_free_e(e->layer), e->ge, e->em1, e->em2, e->N * e->fc, e->elist, e->nel, e->fc,
                   lr, b1, b2, eps, bc1, bc2);
        const double ps = o->free_proj_lr_scale > 0.0 ? o->free_proj_lr_scale
                          : o->free_lr_scale > 0.0   ? o->free_lr_scale
                                                     : 1.0;
        if (!o->free_proj_fixed)
            step_param(kind, fpd_layer_get_free_p(e->layer), e->gp, e->pm1, e->pm2, e->fc * e->D, e->plist,
                       e->ptouched ? e->fc : 0, e->D, (float)(o->learning_rate * ps), b1, b2, eps, bc1, bc2);
    }
    engine_zero_grad(ctx, state);
    return FPD_STATUS_OK;
}

static double engine_flops(void *ctx, void *state) {
    (void)ctx;
    return ((struct cpu_engine *)state)->flops;
}

void fpd__cpu_engine_ops(struct fpd_backend_i *iface) {
    iface->engine_create = engine_create;
    iface->engine_forward = engine_forward;
    iface->engine_backward = engine_backward;
    iface->engine_step = engine_step;
    iface->engine_grad = engine_grad;
    iface->engine_zero_grad = engine_zero_grad;
    iface->engine_flops = engine_flops;
    iface->engine_destroy = engine_destroy;
}
