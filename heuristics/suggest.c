/*
 * suggest.c - the (r, p) heuristic: candidate configurations of an FPD layer for
 * a table [N, D] (with c free coordinates per row when asked), their prior ranking,
 * predicted errors (predict.c), and the pick under a size, ratio or error target
 * (fpd_suggest, fpd_suggestion_free, fpd_factor_cols_outside_in). The formula and
 * its reasoning are in the header comment of fpd-heuristics.h; the constants below
 * are the ones it names.
 */
#include "heuristics/heuristics-impl.h"
#include "lib/fpd-impl.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Rows from which the default uses 4 cores instead of 3. */
#define SUGGEST_K4_ROWS INT64_C(100000000)
/* Term counts of the grid, and the largest capacity p r listed, in units of R*. */
static const int64_t SUGGEST_TERMS[] = {1, 2, 4, 8};
#define SUGGEST_MAX_CAPACITY 4
/* Scores closer than this are equal (they are logs of rational numbers). */
#define SCORE_EPS 1e-9
/* Free coordinates listed by the rule (FPD_FREE_COORDS_AUTO): c in this set with
 * c <= D / SUGGEST_FREE_DIV. */
static const int64_t SUGGEST_FREE[] = {1, 2, 4, 8};
#define SUGGEST_FREE_DIV 8
/* A c > 0 candidate replaces the c = 0 pick when its predicted error is lower by at
 * least this much, relative and absolute (below that the difference is the
 * prediction's own noise, or float rounding of an exact fit). */
#define FREE_MARGIN_REL 0.01
#define FREE_MARGIN_ABS 1e-6

static int cmp_desc_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x < y) - (x > y);
}

enum fpd_status fpd_factor_cols_outside_in(int64_t dim, int32_t k, int64_t *col_shape, struct fpd_error *err) {
    int64_t d[FPD_MAX_MODES];
    enum fpd_status st = fpd_factor_cols(dim, k, d, err);
    if (st) return st;
    qsort(d, (size_t)k, sizeof *d, cmp_desc_i64);
    /* largest first, second largest last, the rest (non-increasing) between */
    col_shape[0] = d[0];
    if (k > 1) {
        col_shape[k - 1] = d[1];
        for (int32_t m = 1; m < k - 1; m++) col_shape[m] = d[m + 1];
    }
    return FPD_STATUS_OK;
}

/* ------------------------------------------------------------- per k */

struct kinfo {
    int32_t k;
    bool is_default;
    int64_t n[FPD_MAX_MODES], d[FPD_MAX_MODES];
    int64_t g, r0, h, rstar;
};

/* g: the TT-rank of one generic row in column shape d. */
static int64_t col_rank(const int64_t *d, int32_t k) {
    int64_t g = 1;
    for (int32_t m = 1; m < k; m++) {
        double left = 1.0, right = 1.0;
        for (int32_t l = 0; l < m; l++) left *= (double)d[l];
        for (int32_t l = m; l < k; l++) right *= (double)d[l];
        double c = left < right ? left : right;
        if (c > (double)g) g = (int64_t)c;
    }
    return g;
}

static enum fpd_status kinfo_init(struct kinfo *ki, int64_t rows, int64_t dim, int32_t k, bool is_default,
                                  struct fpd_error *err) {
    memset(ki, 0, sizeof *ki);
    ki->k = k;
    ki->is_default = is_default;
    enum fpd_status st = fpd_factor_rows(rows, k, ki->n, err);
    if (st) return st;
    if ((st = fpd_factor_cols_outside_in(dim, k, ki->d, err))) return st;
    ki->g = col_rank(ki->d, k);
    int64_t dmin = ki->d[0] < ki->d[k - 1] ? ki->d[0] : ki->d[k - 1];
    ki->r0 = k == 1 ? 1 : (dim + dmin - 1) / dmin;
    int64_t q = ki->r0 / (4 * ki->g);
    ki->h = ki->g * (q > 1 ? q : 1);
    int64_t m = (int64_t)floor((double)ki->r0 / (double)ki->h + 0.5);
    ki->rstar = ki->h * (m > 1 ? m : 1);
    return FPD_STATUS_OK;
}

/* Prior score of capacity R = p r against R*, and of c free coordinates (the rule's
 * 1 + log2(c), 0 for c = 0). */
static double prior_score(const struct kinfo *ki, int64_t r, int64_t p, int64_t c) {
    double R = (double)r * (double)p, t = (double)ki->rstar;
    double s = R <= t ? log2(t / R) : 2.0 * log2(R / t);
    return s + (ki->is_default ? 0.0 : 1.0) + (c > 0 ? 1.0 + log2((double)c) : 0.0);
}

/* ------------------------------------------------------------- candidates */

struct cand_list {
    struct fpd_candidate *v;
    int64_t n, cap;
};

/* Add (r, p) with c free coordinates for ki. A shape whose size overflows is skipped
 * (grid) or an error (a configuration the caller fixed). */
static enum fpd_status add_candidate(struct cand_list *L, const struct kinfo *ki, int64_t rows, int64_t dim,
                                     const struct fpd_plan_params *pp, size_t bytes_before, int64_t r, int64_t p,
                                     int64_t fc, bool fixed, struct fpd_error *err) {
    const enum fpd_dtype core_dtype = pp->core_dtype;
    struct fpd_candidate c;
    memset(&c, 0, sizeof c);
    struct fpd_layer_shape *s = &c.shape;
    s->rows = rows;
    s->dim = dim;
    s->k = ki->k;
    s->terms = p;
    memcpy(s->row_shape, ki->n, sizeof ki->n);
    memcpy(s->col_shape, ki->d, sizeof ki->d);
    fpd_layer_shape_set_rank(s, r);
    struct fpd_error cerr;
    if (fpd_layer_shape_check(s, &cerr) != FPD_STATUS_OK) {
        if (!fixed) return FPD_STATUS_OK;
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "plan: rank %lld, terms %lld give an invalid shape: %s",
                        (long long)r, (long long)p, cerr.msg);
    }
    c.r = r;
    c.params = fpd_layer_shape_params(s);
    c.free_coords = fc;
    /* E [N, c] and P [c, D] */
    if ((double)c.params + (double)fc * ((double)rows + (double)dim) > 4.0e18) {
        if (!fixed) return FPD_STATUS_OK;
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "plan: %lld free coordinates of [%lld, %lld] overflow",
                        (long long)fc, (long long)rows, (long long)dim);
    }
    /* bytes: the cores in the core dtype, then E and P as stored (fpd_free_coords_bytes) */
    const size_t free_bytes = fpd_free_coords_bytes(rows, dim, fc, core_dtype, pp->free_rowwise, pp->free_kind);
    if (!fpd__mul_size((size_t)c.params, fpd_dtype_size(core_dtype), &c.bytes) || free_bytes == SIZE_MAX ||
        c.bytes + free_bytes < c.bytes) {
        if (!fixed) return FPD_STATUS_OK;
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "plan: %lld parameters overflow size_t",
                        (long long)(c.params + fc * (rows + dim)));
    }
    c.bytes += free_bytes;
    c.params += fc * (rows + dim);
    int64_t prod = 1;
    for (int32_t m = 0; m < s->k; m++) prod *= s->row_shape[m]; /* fits: shape checked */
    c.padding = prod - rows;
    c.ratio = (double)bytes_before / (double)c.bytes;
    c.score = prior_score(ki, r, p, fc);
    c.predicted_error = NAN;
    /* the same layer from another (r, p) (ranks capped alike): keep the better score */
    for (int64_t i = 0; i < L->n; i++) {
        const struct fpd_layer_shape *t = &L->v[i].shape;
        if (t->k == s->k && t->terms == s->terms && L->v[i].free_coords == fc &&
            !memcmp(t->ranks, s->ranks, sizeof s->ranks) &&
            !memcmp(t->row_shape, s->row_shape, sizeof s->row_shape) &&
            !memcmp(t->col_shape, s->col_shape, sizeof s->col_shape)) {
            if (c.score < L->v[i].score) L->v[i] = c;
            return FPD_STATUS_OK;
        }
    }
    if (L->n == L->cap) {
        int64_t cap = L->cap ? 2 * L->cap : 64;
        struct fpd_candidate *v = fpd_malloc((size_t)cap * sizeof *v);
        if (!v) return fpd__err(err, FPD_STATUS_NOMEM, "out of memory for the candidate list");
        if (L->n) memcpy(v, L->v, (size_t)L->n * sizeof *v);
        fpd_free(L->v);
        L->v = v;
        L->cap = cap;
    }
    L->v[L->n++] = c;
    return FPD_STATUS_OK;
}

/* Ranking order: score; then, when both are known, the predicted error; then fewer
 * terms, fewer bytes, fewer cores, smaller rank. */
static int cmp_rank(const void *a, const void *b) {
    const struct fpd_candidate *x = a, *y = b;
    if (fabs(x->score - y->score) > SCORE_EPS) return x->score < y->score ? -1 : 1;
    if (!isnan(x->predicted_error) && !isnan(y->predicted_error) && x->predicted_error != y->predicted_error)
        return x->predicted_error < y->predicted_error ? -1 : 1;
    if (x->shape.terms != y->shape.terms) return x->shape.terms < y->shape.terms ? -1 : 1;
    if (x->bytes != y->bytes) return x->bytes < y->bytes ? -1 : 1;
    if (x->shape.k != y->shape.k) return x->shape.k < y->shape.k ? -1 : 1;
    return (x->r > y->r) - (x->r < y->r);
}

/* y dominates x: no larger and no less accurate (errors known), and clearly better
 * in one of the two: at least DOMINATE_BYTES smaller, or a predicted error at least
 * DOMINATE_ERROR (relative) lower. The margins keep differences at the level of the
 * prediction's own noise from reordering the prior ranking. */
#define DOMINATE_BYTES 0.05
#define DOMINATE_ERROR 0.01
bool fpd_candidate_dominates(const struct fpd_candidate *y, const struct fpd_candidate *x) {
    if (isnan(x->predicted_error) || isnan(y->predicted_error)) return false;
    if (y->bytes > x->bytes || y->predicted_error > x->predicted_error) return false;
    return (double)y->bytes <= (1.0 - DOMINATE_BYTES) * (double)x->bytes ||
           y->predicted_error <= (1.0 - DOMINATE_ERROR) * x->predicted_error;
}

/* ------------------------------------------------------------- fpd_suggest */

void fpd_suggestion_free(struct fpd_suggestion *s) {
    if (!s) return;
    fpd_free(s->candidates);
    fpd_free(s);
}

/* "r=24, p=1, k=3, c=0: B bytes, X.Xx" */
static void describe(const struct fpd_candidate *c, char *buf, size_t len) {
    snprintf(buf, len, "r=%lld, p=%lld, k=%d, c=%lld: %zu bytes, %.1fx", (long long)c->r, (long long)c->shape.terms,
             (int)c->shape.k, (long long)c->free_coords, c->bytes, c->ratio);
}

static enum fpd_status check_params(int64_t rows, int64_t dim, enum fpd_dtype dtype, const struct fpd_plan_params *pp,
                                    struct fpd_error *err) {
    if (rows < 1) return fpd__err(err, FPD_STATUS_INVALID_ARG, "plan: rows = %lld < 1", (long long)rows);
    if (dim < 1) return fpd__err(err, FPD_STATUS_INVALID_ARG, "plan: dim = %lld < 1", (long long)dim);
    if ((unsigned)dtype >= FPD_DTYPE_COUNT)
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "plan: dtype %d out of range", (int)dtype);
    if (pp->rank < 0) return fpd__err(err, FPD_STATUS_INVALID_ARG, "plan: rank = %lld < 1", (long long)pp->rank);
    if (pp->terms < 0) return fpd__err(err, FPD_STATUS_INVALID_ARG, "plan: terms = %lld < 1", (long long)pp->terms);
    if (pp->k < 0 || pp->k > FPD_MAX_MODES)
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "plan: k = %d not in 1..%d", (int)pp->k, FPD_MAX_MODES);
    if (pp->min_rows < 0)
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "plan: min_rows = %lld < 0", (long long)pp->min_rows);
    if (!(pp->min_ratio >= 0.0) || isinf(pp->min_ratio))
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "plan: min_ratio = %g is not a finite value >= 0", pp->min_ratio);
    if (!fpd_dtype_is_float(pp->core_dtype))
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "plan: core dtype %s is not a float dtype",
                        fpd_dtype_name(pp->core_dtype));
    if (!(pp->min_ratio_target >= 0.0) || isinf(pp->min_ratio_target))
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "plan: ratio target %g is not a finite value >= 0",
                        pp->min_ratio_target);
    if (!(pp->max_error >= 0.0) || isinf(pp->max_error))
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "plan: max_error %g is not a finite value >= 0", pp->max_error);
    if (pp->max_error > 0.0 && !pp->table)
        return fpd__err(err, FPD_STATUS_INVALID_ARG,
                        "plan: max_error %g needs the table's data to predict errors (params.table)", pp->max_error);
    if (pp->free_coords < 0 && pp->free_coords != FPD_FREE_COORDS_AUTO)
        return fpd__err(err, FPD_STATUS_INVALID_ARG,
                        "plan: free_coords = %lld is neither >= 0 nor FPD_FREE_COORDS_AUTO (-1)",
                        (long long)pp->free_coords);
    if (pp->free_rowwise && (unsigned)pp->free_kind >= FPD_FREE_KIND_COUNT)
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "plan: free_kind %d is not int8 or int4", (int)pp->free_kind);
    if (pp->free_coords > dim)
        return fpd__err(err, FPD_STATUS_INVALID_ARG,
                        "plan: free_coords = %lld > dim = %lld (at most one free coordinate per column)",
                        (long long)pp->free_coords, (long long)dim);
    if (pp->table && (pp->table->rows != rows || pp->table->dim != dim))
        return fpd__err(err, FPD_STATUS_SHAPE, "plan: table data [%lld, %lld] does not match [%lld, %lld]",
                        (long long)pp->table->rows, (long long)pp->table->dim, (long long)rows, (long long)dim);
    if (pp->table && !fpd_dtype_is_float(pp->table->dtype))
        return fpd__err(err, FPD_STATUS_DTYPE, "plan: table data of dtype %s is not a float table",
                        fpd_dtype_name(pp->table->dtype));
    return FPD_STATUS_OK;
}

enum fpd_status fpd__suggest_ex(int64_t rows, int64_t dim, enum fpd_dtype dtype, const struct fpd_plan_params *params,
                                int64_t full_cells, struct fpd_suggestion **out, struct fpd_error *err) {
    FPD_ASSERT(out != NULL);
    *out = NULL;
    struct fpd_plan_params pp = params ? *params : fpd_plan_default_params();
    enum fpd_status st = check_params(rows, dim, dtype, &pp, err);
    if (st) return st;

    struct cand_list L = {0};
    struct fpd_suggestion *sg = fpd_calloc(1, sizeof *sg);
    if (!sg) return fpd__err(err, FPD_STATUS_NOMEM, "out of memory for a suggestion");
    sg->rows = rows;
    sg->dim = dim;
    sg->dtype = dtype;
    sg->core_dtype = pp.core_dtype;
    sg->selected = -1;
    size_t cells;
    if (!fpd__mul_size((size_t)rows, (size_t)dim, &cells) ||
        !fpd__mul_size(cells, fpd_dtype_size(dtype), &sg->bytes_before)) {
        st = fpd__err(err, FPD_STATUS_INVALID_ARG, "plan: table [%lld, %lld] %s is too large for size_t",
                      (long long)rows, (long long)dim, fpd_dtype_name(dtype));
        goto fail;
    }

    /* the k values: the one given, else the default by N and the other of 3, 4 */
    int32_t kdef = pp.k ? pp.k : (rows >= SUGGEST_K4_ROWS ? 4 : 3);
    int32_t ks[2] = {kdef, kdef == 3 ? 4 : 3};
    int nk = pp.k ? 1 : 2;
    sg->k_default = kdef;
    const int64_t fixed_c = pp.free_coords > 0 ? pp.free_coords : 0;
    /* the rule: c > 0 listed when a target gives them something to trade against */
    const bool auto_c = pp.free_coords == FPD_FREE_COORDS_AUTO &&
                        (pp.budget_bytes > 0 || pp.min_ratio_target > 0.0 || pp.max_error > 0.0);
    for (int ik = 0; ik < nk; ik++) {
        struct kinfo ki;
        if ((st = kinfo_init(&ki, rows, dim, ks[ik], ik == 0, err))) goto fail;
        if (ik == 0) {
            sg->col_rank = ki.g;
            sg->saturation_rank = ki.r0;
            sg->rank_step = ki.h;
            sg->target_rank = ki.rstar;
        }
        if (pp.rank) { /* a given rank: p as given, else 1 (as before the heuristic) */
            if ((st = add_candidate(&L, &ki, rows, dim, &pp, sg->bytes_before, pp.rank,
                                    pp.terms ? pp.terms : 1, fixed_c, true, err)))
                goto fail;
        } else {
            /* the grid: r = h, 2h, ... with p r <= 4 R* (p given: at least r = h) */
            int64_t maxcap = SUGGEST_MAX_CAPACITY * ki.rstar;
            size_t np = pp.terms ? 1 : sizeof SUGGEST_TERMS / sizeof SUGGEST_TERMS[0];
            for (size_t ip = 0; ip < np; ip++) {
                int64_t p = pp.terms ? pp.terms : SUGGEST_TERMS[ip];
                for (int64_t r = ki.h;; r += ki.h) {
                    bool over = (double)r * (double)p > (double)maxcap;
                    if (over && !(pp.terms && r == ki.h)) break;
                    if ((st = add_candidate(&L, &ki, rows, dim, &pp, sg->bytes_before, r, p, fixed_c,
                                            pp.terms != 0, err)))
                        goto fail;
                }
            }
        }
        /* the rule: each c in SUGGEST_FREE up to D / SUGGEST_FREE_DIV with every
         * candidate of this k with the smallest p listed (1 unless --terms) */
        if (auto_c) {
            int64_t pbase = pp.terms ? pp.terms : 1, n0 = L.n;
            for (size_t ic = 0; ic < sizeof SUGGEST_FREE / sizeof SUGGEST_FREE[0]; ic++) {
                int64_t fc = SUGGEST_FREE[ic];
                if (fc * SUGGEST_FREE_DIV > dim) break;
                for (int64_t i = 0; i < n0; i++) {
                    const struct fpd_candidate *b = &L.v[i];
                    if (b->shape.k != ki.k || b->shape.terms != pbase || b->free_coords != 0) continue;
                    int64_t r = b->r;
                    if ((st = add_candidate(&L, &ki, rows, dim, &pp, sg->bytes_before, r, pbase, fc, false,
                                            err)))
                        goto fail;
                }
            }
        }
    }
    if (L.n == 0) {
        st = fpd__err(err, FPD_STATUS_INVALID_ARG, "plan: no valid configuration for a [%lld, %lld] table",
                      (long long)rows, (long long)dim);
        goto fail;
    }

    /* predicted errors */
    if (pp.table) {
        if ((st = fpd__predict_errors(pp.table, L.v, L.n, full_cells, sg->estimate, sizeof sg->estimate, err)))
            goto fail;
        sg->errors_known = true;
    } else {
        snprintf(sg->estimate, sizeof sg->estimate, "not estimated (no table data)");
    }

    /* ranking; dominated candidates are flagged, not moved (see the header) */
    qsort(L.v, (size_t)L.n, sizeof *L.v, cmp_rank);
    if (sg->errors_known)
        for (int64_t i = 0; i < L.n; i++)
            for (int64_t j = 0; j < L.n && !L.v[i].dominated; j++)
                if (j != i && fpd_candidate_dominates(&L.v[j], &L.v[i])) L.v[i].dominated = true;

    /* targets and the pick */
    bool sized = pp.budget_bytes > 0 || pp.min_ratio_target > 0.0;
    int64_t n_size_ok = 0;
    for (int64_t i = 0; i < L.n; i++) {
        struct fpd_candidate *c = &L.v[i];
        bool size_ok = (pp.budget_bytes == 0 || c->bytes <= pp.budget_bytes) &&
                       (pp.min_ratio_target <= 0.0 || c->ratio >= pp.min_ratio_target);
        n_size_ok += size_ok;
        c->eligible = size_ok && (pp.max_error <= 0.0 || (!isnan(c->predicted_error) && c->predicted_error <= pp.max_error));
        if (!c->eligible) continue;
        if (auto_c && c->free_coords > 0 && pp.max_error <= 0.0) continue; /* weighed below */
        int64_t s = sg->selected;
        if (s < 0) sg->selected = i;
        else if (pp.max_error > 0.0 && c->bytes < L.v[s].bytes) sg->selected = i;
        else if (pp.max_error <= 0.0 && sized && c->bytes > L.v[s].bytes) sg->selected = i;
        /* no target: the first (top-ranked) stays */
    }
    /* the rule, under a size target: the most accurate c > 0 candidate within it
     * replaces the c = 0 pick when predicted clearly more accurate */
    if (auto_c && pp.max_error <= 0.0 && sg->selected >= 0 && !isnan(L.v[sg->selected].predicted_error)) {
        double e0 = L.v[sg->selected].predicted_error;
        int64_t best = -1;
        for (int64_t i = 0; i < L.n; i++) {
            const struct fpd_candidate *c = &L.v[i];
            if (!c->eligible || c->free_coords == 0 || isnan(c->predicted_error)) continue;
            if (best < 0 || c->predicted_error < L.v[best].predicted_error ||
                (c->predicted_error == L.v[best].predicted_error && c->bytes < L.v[best].bytes))
                best = i;
        }
        if (best >= 0 && L.v[best].predicted_error <= (1.0 - FREE_MARGIN_REL) * e0 &&
            L.v[best].predicted_error <= e0 - FREE_MARGIN_ABS)
            sg->selected = best;
    }
    sg->candidates = L.v;
    sg->n_candidates = L.n;
    L.v = NULL;

    /* eligibility of the table (as fpd_plan_table decides) */
    const struct fpd_candidate *pick = &sg->candidates[sg->selected >= 0 ? sg->selected : 0];
    bool table_ok = fpd_dtype_is_float(dtype) && rows >= pp.min_rows;
    if (sized && n_size_ok == 0 && table_ok) {
        /* the closest candidate: the smallest one */
        const struct fpd_candidate *sm = &sg->candidates[0];
        for (int64_t i = 1; i < sg->n_candidates; i++)
            if (sg->candidates[i].bytes < sm->bytes) sm = &sg->candidates[i];
        char d[128];
        describe(sm, d, sizeof d);
        if (pp.budget_bytes > 0 && sm->bytes > pp.budget_bytes)
            st = fpd__err(err, FPD_STATUS_INVALID_ARG,
                          "budget of %zu bytes is below the smallest candidate for [%lld, %lld] (%s)", pp.budget_bytes,
                          (long long)rows, (long long)dim, d);
        else
            st = fpd__err(err, FPD_STATUS_INVALID_ARG,
                          "no candidate for [%lld, %lld] is %gx smaller than the dense table (the smallest: %s)",
                          (long long)rows, (long long)dim, pp.min_ratio_target, d);
        goto fail;
    }
    sg->compress = false;
    if (!fpd_dtype_is_float(dtype)) {
        snprintf(sg->reason, sizeof sg->reason, "dtype %s is not a float table", fpd_dtype_name(dtype));
    } else if (rows < pp.min_rows) {
        snprintf(sg->reason, sizeof sg->reason, "%lld rows < --min-rows %lld", (long long)rows, (long long)pp.min_rows);
    } else if (sg->selected < 0) {
        const struct fpd_candidate *best = NULL;
        for (int64_t i = 0; i < sg->n_candidates; i++) {
            const struct fpd_candidate *c = &sg->candidates[i];
            if (isnan(c->predicted_error)) continue;
            if (!best || c->predicted_error < best->predicted_error) best = c;
        }
        if (best)
            snprintf(sg->reason, sizeof sg->reason,
                     "no candidate is predicted to reach rel. error %g "
                     "(lowest: %.4f at r=%lld, p=%lld, k=%d, c=%lld)",
                     pp.max_error, best->predicted_error, (long long)best->r, (long long)best->shape.terms,
                     (int)best->shape.k, (long long)best->free_coords);
        else
            snprintf(sg->reason, sizeof sg->reason, "no candidate has a predicted error (%.200s)", sg->estimate);
    } else if (pick->ratio < pp.min_ratio) {
        if (pick->ratio >= 1.0)
            snprintf(sg->reason, sizeof sg->reason, "FPD would be only %.1fx smaller (< %gx)", pick->ratio,
                     pp.min_ratio);
        else
            snprintf(sg->reason, sizeof sg->reason, "FPD would be %.2fx larger than dense (ratio < %gx)",
                     1.0 / pick->ratio, pp.min_ratio);
    } else {
        sg->compress = true;
    }
    *out = sg;
    fpd__err_clear(err);
    return FPD_STATUS_OK;
fail:
    fpd_free(L.v);
    fpd_suggestion_free(sg);
    return st;
}

enum fpd_status fpd_suggest(int64_t rows, int64_t dim, enum fpd_dtype dtype, const struct fpd_plan_params *params,
                            struct fpd_suggestion **out, struct fpd_error *err) {
    return fpd__suggest_ex(rows, dim, dtype, params, FPD__PREDICT_FULL_CELLS, out, err);
}
