/*
 * quality.c - the accuracy report of a compressed table (fpd_layer_quality in
 * fpd.h): errors, cosine statistics, nearest-neighbour recall@10 and the
 * row-wise quantization baselines, in one streaming pass over the table.
 */
#include "fpd-impl.h"
#include "cpu/kernels-cpu.h"

#include <math.h>
#include <string.h>

#define COS_BINS 4096
#define TOPK 10

struct topk {
    float val[TOPK];
    int64_t idx[TOPK];
    int n;
};

static void topk_push(struct topk *t, float v, int64_t i) {
    if (t->n < TOPK) {
        t->val[t->n] = v;
        t->idx[t->n++] = i;
        return;
    }
    int lo = 0;
    for (int q = 1; q < TOPK; q++)
        if (t->val[q] < t->val[lo]) lo = q;
    if (v > t->val[lo]) {
        t->val[lo] = v;
        t->idx[lo] = i;
    }
}

static void normalize_rows(float *x, int64_t rows, int64_t dim) {
    for (int64_t i = 0; i < rows; i++) {
        double ss = 0.0;
        for (int64_t j = 0; j < dim; j++) ss += (double)x[i * dim + j] * x[i * dim + j];
        float inv = ss > 0.0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
        for (int64_t j = 0; j < dim; j++) x[i * dim + j] *= inv;
    }
}

/* Squared error of FBGEMM row-wise quantization (lib/quant.c) of x[dim]; tmp holds
 * fpd_rowwise_row_bytes(kind, dim) bytes and y dim floats. A row that cannot be
 * quantized (NaN/Inf) counts as NaN, so the baseline says so. */
static double quant_sq_error(const float *x, int64_t dim, enum fpd_rowwise kind, uint8_t *tmp, float *y) {
    if (!fpd_rowwise_quantize_row(kind, x, dim, tmp)) return NAN;
    fpd_rowwise_dequantize_row(kind, tmp, dim, y);
    double e = 0.0;
    for (int64_t j = 0; j < dim; j++) {
        double d = (double)x[j] - (double)y[j];
        e += d * d;
    }
    return e;
}

enum fpd_status fpd_quant_baseline(const struct fpd_table_view *w, struct fpd_quant_baseline *out,
                                   struct fpd_error *err) {
    if (!fpd_dtype_is_float(w->dtype))
        return fpd__err(err, FPD_STATUS_DTYPE, "table dtype %s is not a float dtype", fpd_dtype_name(w->dtype));
    const int64_t block = 1024, dim = w->dim;
    float *a = fpd_malloc((size_t)(block * dim + dim) * sizeof(float));
    uint8_t *qb = fpd_malloc(fpd_rowwise_row_bytes(FPD_ROWWISE_INT8, dim));
    enum fpd_status st = FPD_STATUS_OK;
    if (!a || !qb) {
        st = fpd__err(err, FPD_STATUS_NOMEM, "out of memory for the quantization baseline");
        goto done;
    }
    float *y = a + block * dim;
    double sn = 0, q8 = 0, q4 = 0;
    for (int64_t r0 = 0; r0 < w->rows; r0 += block) {
        int64_t r1 = r0 + block < w->rows ? r0 + block : w->rows;
        if ((st = fpd_table_view_rows(w, r0, r1, a, err))) goto done;
        for (int64_t i = 0; i < r1 - r0; i++) {
            const float *x = a + i * dim;
            for (int64_t j = 0; j < dim; j++) {
                if (!isfinite(x[j])) {
                    st = fpd__err(err, FPD_STATUS_NUMERIC,
                                  "row %lld, column %lld is %s; a table with NaN or Inf cannot be quantized or fitted",
                                  (long long)(r0 + i), (long long)j,
                                  isnan(x[j]) ? "NaN" : x[j] > 0 ? "Inf" : "-Inf");
                    goto done;
                }
                sn += (double)x[j] * x[j];
            }
            q8 += quant_sq_error(x, dim, FPD_ROWWISE_INT8, qb, y);
            q4 += quant_sq_error(x, dim, FPD_ROWWISE_INT4, qb, y);
        }
    }
    out->int8_rel_error = sn > 0 ? sqrt(q8 / sn) : 0.0;
    out->int4_rel_error = sn > 0 ? sqrt(q4 / sn) : 0.0;
    out->int8_bytes = (size_t)w->rows * fpd_rowwise_row_bytes(FPD_ROWWISE_INT8, dim);
    out->int4_bytes = (size_t)w->rows * fpd_rowwise_row_bytes(FPD_ROWWISE_INT4, dim);
done:
    fpd_free(a);
    fpd_free(qb);
    return st;
}

/* The compressed table: an FPD layer, or a row-wise quantized one (exactly one set). */
struct approx {
    const struct fpd_layer *layer;
    const struct fpd_rowwise_table *q;
};

static enum fpd_status approx_lookup(const struct approx *a, const int64_t *idx, int64_t n, float *out,
                                     struct fpd_error *err) {
    return a->layer ? fpd_layer_lookup(a->layer, idx, n, out, err) : fpd_rowwise_lookup(a->q, idx, n, out, err);
}

/* rows [r0, r1) of the approximation; rc: the pass's reconstructor (FPD layers) */
static enum fpd_status approx_rows(const struct approx *a, struct fpd__reconstructor *rc, int64_t r0, int64_t r1,
                                   float *out, struct fpd_error *err) {
    return a->layer ? fpd__reconstruct_rows(rc, a->layer, r0, r1, out, err)
                    : fpd_rowwise_reconstruct(a->q, r0, r1, out, err);
}

static enum fpd_status quality(const struct approx *ap, int64_t n, int64_t dim, const struct fpd_table_view *w,
                               const double *row_weights, int64_t queries, uint64_t seed, struct fpd_quality *out,
                               struct fpd_error *err);

enum fpd_status fpd_layer_quality(const struct fpd_layer *layer, const struct fpd_table_view *w,
                                  const double *row_weights, int64_t queries, uint64_t seed, struct fpd_quality *out,
                                  struct fpd_error *err) {
    const struct fpd_layer_shape *s = fpd_layer_get_shape(layer);
    struct approx a = {layer, NULL};
    return quality(&a, s->rows, s->dim, w, row_weights, queries, seed, out, err);
}

enum fpd_status fpd_rowwise_quality(const struct fpd_rowwise_table *q, const struct fpd_table_view *w,
                                    const double *row_weights, int64_t queries, uint64_t seed,
                                    struct fpd_quality *out, struct fpd_error *err) {
    struct approx a = {NULL, q};
    return quality(&a, q->rows, q->dim, w, row_weights, queries, seed, out, err);
}

static enum fpd_status quality(const struct approx *ap, int64_t n, int64_t dim, const struct fpd_table_view *w,
                               const double *row_weights, int64_t queries, uint64_t seed, struct fpd_quality *out,
                               struct fpd_error *err) {
    const int64_t block = 1024;
    if (w->rows != n || w->dim != dim)
        return fpd__err(err, FPD_STATUS_SHAPE, "table [%lld, %lld] does not match the layer's [%lld, %lld]",
                        (long long)w->rows, (long long)w->dim, (long long)n, (long long)dim);
    if (!fpd_dtype_is_float(w->dtype))
        return fpd__err(err, FPD_STATUS_DTYPE, "table dtype %s is not a float dtype", fpd_dtype_name(w->dtype));
    if (row_weights)
        for (int64_t i = 0; i < n; i++)
            if (!(row_weights[i] >= 0.0) || !isfinite(row_weights[i]))
                return fpd__err(err, FPD_STATUS_INVALID_ARG, "row weight %lld is %g; weights must be finite and >= 0",
                                (long long)i, row_weights[i]);
    if (queries < 0) queries = 0;
    if (queries > n) queries = n;

    enum fpd_status st = FPD_STATUS_OK;
    memset(out, 0, sizeof *out);
    float *a = fpd_malloc((size_t)(block * dim) * sizeof(float));
    float *b = fpd_malloc((size_t)(block * dim + dim) * sizeof(float));
    uint8_t *qbuf = fpd_malloc(fpd_rowwise_row_bytes(FPD_ROWWISE_INT8, dim));
    int64_t *hist = fpd_calloc(COS_BINS, sizeof(int64_t));
    int64_t *qidx = queries ? fpd_malloc((size_t)queries * sizeof(int64_t)) : NULL;
    float *qa = queries ? fpd_malloc((size_t)(queries * dim) * sizeof(float)) : NULL;
    float *qb = queries ? fpd_malloc((size_t)(queries * dim) * sizeof(float)) : NULL;
    float *sim = queries ? fpd_malloc((size_t)(queries * block) * sizeof(float)) : NULL;
    struct topk *ta = queries ? fpd_calloc((size_t)queries, sizeof *ta) : NULL;
    struct topk *tb = queries ? fpd_calloc((size_t)queries, sizeof *tb) : NULL;
    if (!a || !b || !qbuf || !hist || (queries && (!qidx || !qa || !qb || !sim || !ta || !tb))) {
        st = fpd__err(err, FPD_STATUS_NOMEM, "out of memory for the accuracy report");
        goto done;
    }
    /* query rows: uniform without replacement (Floyd's algorithm would need a set;
     * a partial shuffle of a stride grid keeps it O(queries)) */
    uint64_t rng = seed ^ 0x243f6a8885a308d3ull;
    for (int64_t q = 0; q < queries; q++) {
        int64_t lo = q * n / queries, hi = (q + 1) * n / queries; /* one row per stratum */
        qidx[q] = lo + (int64_t)(fpd__rand_u64(&rng) % (uint64_t)(hi - lo));
        if ((st = fpd_table_view_rows(w, qidx[q], qidx[q] + 1, qa + q * dim, err))) goto done;
    }
    if (queries) {
        if ((st = approx_lookup(ap, qidx, queries, qb, err))) goto done;
        normalize_rows(qa, queries, dim);
        normalize_rows(qb, queries, dim);
    }

    double se = 0, sn = 0, wse = 0, wsn = 0, cs = 0, cmin = 1.0, cmax = -1.0, q8 = 0, q4 = 0;
    struct fpd__reconstructor rc = {0};
    for (int64_t r0 = 0; r0 < n; r0 += block) {
        int64_t r1 = r0 + block < n ? r0 + block : n, nb = r1 - r0;
        if ((st = fpd_table_view_rows(w, r0, r1, a, err))) goto done;
        if ((st = approx_rows(ap, &rc, r0, r1, b, err))) goto done;
        for (int64_t i = 0; i < nb; i++) {
            const float *x = a + i * dim, *y = b + i * dim;
            double dot = 0, na = 0, nbb = 0, e = 0;
            for (int64_t j = 0; j < dim; j++) {
                double d = (double)x[j] - (double)y[j];
                e += d * d;
                dot += (double)x[j] * y[j];
                na += (double)x[j] * x[j];
                nbb += (double)y[j] * y[j];
            }
            se += e;
            sn += na;
            double wi = row_weights ? row_weights[r0 + i] : 1.0;
            wse += wi * e;
            wsn += wi * na;
            double c = (na == 0.0 && nbb == 0.0) ? 1.0 : (na == 0.0 || nbb == 0.0) ? 0.0 : dot / sqrt(na * nbb);
            cs += c;
            cmin = c < cmin ? c : cmin;
            cmax = c > cmax ? c : cmax;
            int bin = (int)((c + 1.0) * 0.5 * COS_BINS);
            hist[bin < 0 ? 0 : (bin >= COS_BINS ? COS_BINS - 1 : bin)]++;
            q8 += quant_sq_error(x, dim, FPD_ROWWISE_INT8, qbuf, b + block * dim);
            q4 += quant_sq_error(x, dim, FPD_ROWWISE_INT4, qbuf, b + block * dim);
        }
        if (queries) {
            normalize_rows(a, nb, dim);
            normalize_rows(b, nb, dim);
            for (int pass = 0; pass < 2; pass++) {
                const float *qm = pass ? qb : qa, *bm = pass ? b : a;
                struct topk *tk = pass ? tb : ta;
                fpd__cpu_sgemm(false, true, queries, nb, dim, 1.0f, qm, dim, bm, dim, 0.0f, sim, nb);
                for (int64_t q = 0; q < queries; q++)
                    for (int64_t i = 0; i < nb; i++)
                        if (r0 + i != qidx[q]) topk_push(&tk[q], sim[q * nb + i], r0 + i);
            }
        }
    }
    out->rel_error = sn > 0 ? sqrt(se / sn) : 0.0;
    out->rel_error_weighted = wsn > 0 ? sqrt(wse / wsn) : 0.0;
    out->cos_mean = cs / (double)n;
    out->cos_min = cmin;
    int64_t need = (int64_t)ceil(0.05 * (double)n), acc = 0;
    for (int q = 0; q < COS_BINS; q++) {
        acc += hist[q];
        if (acc >= need) {
            /* the bin's middle, within the range seen: a bin wider than the spread of
             * the cosines (all near 1 for a fine quantization) must not give a p5 below
             * the minimum */
            double p5 = -1.0 + (q + 0.5) * 2.0 / COS_BINS;
            out->cos_p5 = p5 < cmin ? cmin : (p5 > cmax ? cmax : p5);
            break;
        }
    }
    out->int8_rel_error = sn > 0 ? sqrt(q8 / sn) : 0.0;
    out->int4_rel_error = sn > 0 ? sqrt(q4 / sn) : 0.0;
    out->int8_bytes = (size_t)n * fpd_rowwise_row_bytes(FPD_ROWWISE_INT8, dim);
    out->int4_bytes = (size_t)n * fpd_rowwise_row_bytes(FPD_ROWWISE_INT4, dim);
    if (queries) {
        double hits = 0;
        for (int64_t q = 0; q < queries; q++)
            for (int x = 0; x < ta[q].n; x++)
                for (int y = 0; y < tb[q].n; y++)
                    if (ta[q].idx[x] == tb[q].idx[y]) hits += 1;
        int64_t kk = n - 1 < TOPK ? n - 1 : TOPK;
        out->recall_queries = queries;
        out->recall10 = kk > 0 ? hits / ((double)queries * (double)kk) : 1.0;
    }
done:
    fpd__reconstructor_free(&rc);
    fpd_free(a);
    fpd_free(b);
    fpd_free(qbuf);
    fpd_free(hist);
    fpd_free(qidx);
    fpd_free(qa);
    fpd_free(qb);
    fpd_free(sim);
    fpd_free(ta);
    fpd_free(tb);
    return st;
}
