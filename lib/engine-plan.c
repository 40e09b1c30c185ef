/*
 * engine-plan.c - host-side planning of the CUDA FPD engine (engine-plan-impl.h).
 * Compiled into every build, CUDA or not, and tested on the CPU.
 */
#include "engine-plan-impl.h"

#include <math.h>
#include <string.h>

void fpd__engine_geom_init(const struct fpd_layer_shape *s, struct fpd__engine_geom *g) {
    memset(g, 0, sizeof *g);
    g->k = s->k;
    g->p = s->terms;
    g->D = s->dim;
    for (int32_t m = 0; m <= s->k; m++) g->r[m] = s->ranks[m];
    g->padded = 1;
    for (int32_t m = 0; m < s->k; m++) {
        g->n[m] = s->row_shape[m];
        g->d[m] = s->col_shape[m];
        g->Dm[m] = (m ? g->Dm[m - 1] : 1) * s->col_shape[m];
        g->w[m] = s->col_shape[m] * s->ranks[m + 1];
        g->slice[m] = s->ranks[m] * g->w[m];
        g->nslices[m] = s->terms * s->row_shape[m];
        g->psz[m] = g->Dm[m] * s->ranks[m + 1];
        g->padded *= s->row_shape[m];
    }
    for (int32_t m = s->k - 1; m >= 0; m--) g->div[m] = m == s->k - 1 ? 1 : g->div[m + 1] * s->row_shape[m + 1];
    /* keys 0..padded: the smallest bits with 2^bits > padded */
    int32_t bits = 1;
    while (bits < 64 && ((uint64_t)1 << bits) <= (uint64_t)g->padded) bits++;
    g->key_bits = bits;
}

int64_t fpd__engine_level_cap(const struct fpd__engine_geom *g, int32_t m, int64_t n) {
    int64_t c = 1;
    for (int32_t l = 0; l <= m; l++) {
        if (!fpd__mul_i64(c, g->n[l], &c) || c >= n) return n;
    }
    return c < n ? c : n;
}

enum fpd_status fpd__engine_ws_layout(const struct fpd__engine_geom *g, int64_t n, int64_t n_offs, int64_t n_out,
                                      size_t temp_bytes, struct fpd__engine_ws *ws, struct fpd_error *err) {
    memset(ws, 0, sizeof *ws);
    if (n < 0 || n_offs < 0 || n_out < 0)
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "negative workspace capacity (%lld entries, %lld offsets, %lld rows)",
                        (long long)n, (long long)n_offs, (long long)n_out);
    if (n > 2147483647 || n_out > 2147483647 || n_offs > 2147483647)
        return fpd__err(err, FPD_STATUS_UNSUPPORTED,
                        "a batch of %lld entries (%lld output rows) is beyond the CUDA engine's 2^31 - 1: split it",
                        (long long)n, (long long)n_out);
    ws->n = n;
    ws->n_offs = n_offs;
    ws->n_out = n_out;
    bool ok = true;
    size_t part = 0, dpart = 0;
    for (int32_t m = 0; m + 1 < g->k; m++) {
        size_t blk;
        ok = ok && fpd__mul_size((size_t)g->p, (size_t)fpd__engine_level_cap(g, m, n), &blk) &&
             fpd__mul_size(blk, (size_t)g->psz[m], &blk);
        if (!ok) break;
        ws->dpart_off[m] = dpart;
        ok = !__builtin_add_overflow(dpart, blk, &dpart);
        if (m >= 1) {
            ws->part_off[m] = part;
            ok = ok && !__builtin_add_overflow(part, blk, &part);
        }
    }
    const size_t un = (size_t)n, levels = g->k > 1 ? (size_t)(g->k - 1) : 0;
    size_t nd = 0, od = 0;
    ok = ok && fpd__mul_size(un, (size_t)g->D, &nd) && fpd__mul_size((size_t)n_out, (size_t)g->D, &od);
    size_t elems[FPD__WS_COUNT] = {
        [FPD__WS_IDX] = un,    [FPD__WS_OFFS] = (size_t)n_offs, [FPD__WS_PSW] = un,    [FPD__WS_KEY] = un,
        [FPD__WS_KEY_S] = un,  [FPD__WS_POS] = un,              [FPD__WS_POS_S] = un,  [FPD__WS_FLAG] = un,
        [FPD__WS_SCAN] = un,   [FPD__WS_SLOT] = un,             [FPD__WS_BAG_OF] = un, [FPD__WS_COEF] = un,
        [FPD__WS_UROW] = un,   [FPD__WS_USTART] = un + 1,       [FPD__WS_COUNTS] = FPD_MAX_MODES + 2,
        [FPD__WS_PID] = 0,     [FPD__WS_PFIRST] = 0,            [FPD__WS_PART] = part, [FPD__WS_DPART] = dpart,
        [FPD__WS_ROWS] = nd,   [FPD__WS_DROW] = nd,             [FPD__WS_OUT] = od,    [FPD__WS_GOUT] = od,
        [FPD__WS_TEMP] = temp_bytes,
    };
    ok = ok && fpd__mul_size(levels, un, &elems[FPD__WS_PID]);
    elems[FPD__WS_PFIRST] = elems[FPD__WS_PID];
    static const size_t width[FPD__WS_COUNT] = {
        [FPD__WS_IDX] = 8,    [FPD__WS_OFFS] = 8,   [FPD__WS_PSW] = 4,    [FPD__WS_KEY] = 8,    [FPD__WS_KEY_S] = 8,
        [FPD__WS_POS] = 8,    [FPD__WS_POS_S] = 8,  [FPD__WS_FLAG] = 8,   [FPD__WS_SCAN] = 8,   [FPD__WS_SLOT] = 8,
        [FPD__WS_BAG_OF] = 8, [FPD__WS_COEF] = 4,   [FPD__WS_UROW] = 8,   [FPD__WS_USTART] = 8, [FPD__WS_COUNTS] = 8,
        [FPD__WS_PID] = 8,    [FPD__WS_PFIRST] = 8, [FPD__WS_PART] = 4,   [FPD__WS_DPART] = 4,  [FPD__WS_ROWS] = 4,
        [FPD__WS_DROW] = 4,   [FPD__WS_OUT] = 4,    [FPD__WS_GOUT] = 4,   [FPD__WS_TEMP] = 1,
    };
    size_t at = 0;
    for (int b = 0; ok && b < FPD__WS_COUNT; b++) {
        size_t bytes;
        ok = fpd__mul_size(elems[b], width[b], &bytes);
        if (!ok) break;
        if (bytes == 0) bytes = FPD__WS_ALIGN;
        const size_t rounded = (bytes + FPD__WS_ALIGN - 1) / FPD__WS_ALIGN * FPD__WS_ALIGN;
        ok = rounded >= bytes && at + rounded >= at;
        ws->off[b] = at;
        ws->size[b] = bytes;
        at += rounded;
    }
    if (!ok)
        return fpd__err(err, FPD_STATUS_UNSUPPORTED, "the CUDA engine's workspace for %lld entries overflows size_t",
                        (long long)n);
    ws->total = at;
    return FPD_STATUS_OK;
}

int32_t fpd__engine_block_threads(int64_t width) {
    if (width >= 256) return 256;
    if (width <= 32) return 32;
    return (int32_t)((width + 31) / 32 * 32);
}

void fpd__engine_adam_bias(double beta1, double beta2, int64_t step, float *bc1, float *bc2) {
    *bc1 = 1.0f - powf((float)beta1, (float)step);
    *bc2 = 1.0f - powf((float)beta2, (float)step);
}
