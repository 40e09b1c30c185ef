/*
 * test-engine-plan.c - the CUDA engine's host-side planning (lib/engine-plan.c),
 * on the CPU: the geometry against a naive mixed-radix decomposition and the
 * shape's definitions, the prefix-level capacities against brute-force counts,
 * the workspace layout against independently computed byte sizes (aligned, no
 * overlap, every partial block inside its buffer), launch shapes and Adam's
 * bias corrections against their closed forms.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "lib/engine-plan-impl.h"
#include "tests/test-util.h"

struct pcase {
    int32_t k;
    int64_t rows, n[4], d[4], r, p;
};

static const struct pcase g_pc[] = {
    {1, 9, {9}, {5}, 1, 2},
    {2, 41, {7, 7}, {7, 1}, 4, 3},
    {3, 1000, {10, 11, 10}, {2, 3, 2}, 4, 1},
    {3, 500, {8, 8, 8}, {5, 3, 1}, 5, 3},
    {4, 200, {3, 4, 5, 4}, {2, 1, 3, 2}, 5, 2},
};
#define NPC (sizeof g_pc / sizeof g_pc[0])

static struct fpd_layer_shape shape_of(const struct pcase *c) {
    struct fpd_layer_shape s = test_make_shape(c->k, c->rows, c->n, c->d, c->r, c->p);
    struct fpd_error err;
    cr_assert(eq(int, fpd_layer_shape_check(&s, &err), FPD_STATUS_OK), "%s", err.msg);
    return s;
}

Test(engine_plan, geometry_matches_the_naive_digits_and_the_shape) {
    for (size_t c = 0; c < NPC; c++) {
        struct fpd_layer_shape s = shape_of(&g_pc[c]);
        struct fpd__engine_geom g;
        fpd__engine_geom_init(&s, &g);
        int64_t padded = 1;
        for (int32_t m = 0; m < s.k; m++) padded *= s.row_shape[m];
        cr_assert(eq(i64, g.padded, padded));
        /* 2^bits > padded (the sentinel fits) and 2^(bits-1) <= padded (no waste) */
        const bool fits = ((uint64_t)1 << g.key_bits) > (uint64_t)padded;
        const bool tight = ((uint64_t)1 << (g.key_bits - 1)) <= (uint64_t)padded;
        cr_assert(fits && tight, "case %zu: bits %d for %lld", c, (int)g.key_bits, (long long)padded);
        int64_t Dm = 1;
        for (int32_t m = 0; m < s.k; m++) {
            Dm *= s.col_shape[m];
            cr_assert(eq(i64, g.Dm[m], Dm));
            cr_assert(eq(i64, g.w[m], s.col_shape[m] * s.ranks[m + 1]));
            cr_assert(eq(i64, g.slice[m] * s.terms * s.row_shape[m], fpd_layer_shape_core_numel(&s, m)));
            cr_assert(eq(i64, g.nslices[m], s.terms * s.row_shape[m]));
            cr_assert(eq(i64, g.psz[m], Dm * s.ranks[m + 1]));
        }
        /* every stored row: digits by repeated division from the last mode (the
         * definition's C order) equal (x / div[m]) % n[m], and the prefix x / div[m]
         * is the number the first m+1 digits spell */
        for (int64_t x = 0; x < padded; x++) {
            int64_t dig[FPD_MAX_MODES], rem = x;
            for (int32_t m = s.k - 1; m >= 0; m--) {
                dig[m] = rem % s.row_shape[m];
                rem /= s.row_shape[m];
            }
            int64_t pre = 0;
            for (int32_t m = 0; m < s.k; m++) {
                pre = pre * s.row_shape[m] + dig[m];
                cr_assert(eq(i64, (x / g.div[m]) % g.n[m], dig[m]), "case %zu row %lld digit %d", c, (long long)x,
                          (int)m);
                cr_assert(eq(i64, x / g.div[m], pre));
            }
        }
    }
}

Test(engine_plan, level_capacities_bound_the_distinct_prefixes) {
    for (size_t c = 0; c < NPC; c++) {
        struct fpd_layer_shape s = shape_of(&g_pc[c]);
        struct fpd__engine_geom g;
        fpd__engine_geom_init(&s, &g);
        const int64_t ns[] = {0, 1, 3, 17, 64, 1000, 5000};
        for (size_t q = 0; q < sizeof ns / sizeof ns[0]; q++) {
            const int64_t n = ns[q];
            for (int32_t m = 0; m < s.k; m++) {
                int64_t prod = 1;
                for (int32_t l = 0; l <= m; l++) prod *= s.row_shape[l];
                const int64_t want = prod < n ? prod : n;
                cr_assert(eq(i64, fpd__engine_level_cap(&g, m, n), want), "case %zu n %lld m %d", c, (long long)n,
                          (int)m);
            }
            /* a batch of n distinct rows 0, 1, ... (all in the table, so the
             * densest prefix tree) reaches the bound at every level */
            if (n > 0 && n <= g.padded)
                for (int32_t m = 0; m < s.k; m++) {
                    int64_t distinct = 0, prev = -1;
                    for (int64_t x = 0; x < n; x++)
                        if (x / g.div[m] != prev) {
                            distinct++;
                            prev = x / g.div[m];
                        }
                    cr_assert(le(i64, distinct, fpd__engine_level_cap(&g, m, n)));
                }
        }
    }
}

/* bytes each buffer needs, written here from the buffer list's comments */
static size_t need_bytes(const struct fpd__engine_geom *g, int b, int64_t n, int64_t n_offs, int64_t n_out,
                         size_t temp) {
    const size_t un = (size_t)n, levels = (size_t)(g->k - 1);
    size_t part = 0, dpart = 0;
    for (int32_t m = 0; m + 1 < g->k; m++) {
        int64_t prod = 1;
        for (int32_t l = 0; l <= m; l++) prod *= g->n[l];
        const size_t cap = (size_t)(prod < n ? prod : n), blk = (size_t)g->p * cap * (size_t)g->psz[m];
        dpart += blk;
        if (m >= 1) part += blk;
    }
    switch (b) {
    case FPD__WS_OFFS: return (size_t)n_offs * 8;
    case FPD__WS_PSW: case FPD__WS_COEF: return un * 4;
    case FPD__WS_USTART: return (un + 1) * 8;
    case FPD__WS_COUNTS: return (FPD_MAX_MODES + 2) * 8;
    case FPD__WS_PID: case FPD__WS_PFIRST: return levels * un * 8;
    case FPD__WS_PART: return part * 4;
    case FPD__WS_DPART: return dpart * 4;
    case FPD__WS_ROWS: case FPD__WS_DROW: return un * (size_t)g->D * 4;
    case FPD__WS_OUT: case FPD__WS_GOUT: return (size_t)n_out * (size_t)g->D * 4;
    case FPD__WS_TEMP: return temp;
    default: return un * 8;
    }
}

Test(engine_plan, workspace_buffers_are_large_enough_aligned_and_disjoint) {
    for (size_t c = 0; c < NPC; c++) {
        struct fpd_layer_shape s = shape_of(&g_pc[c]);
        struct fpd__engine_geom g;
        fpd__engine_geom_init(&s, &g);
        const int64_t ns[] = {0, 1, 7, 300, 4096};
        for (size_t q = 0; q < sizeof ns / sizeof ns[0]; q++) {
            const int64_t n = ns[q], n_offs = n / 3 + 1, n_out = n / 2 + 1;
            const size_t temp = 12345;
            struct fpd__engine_ws ws;
            struct fpd_error err;
            cr_assert(eq(int, fpd__engine_ws_layout(&g, n, n_offs, n_out, temp, &ws, &err), FPD_STATUS_OK), "%s",
                      err.msg);
            for (int b = 0; b < FPD__WS_COUNT; b++) {
                cr_assert(eq(sz, ws.off[b] % FPD__WS_ALIGN, 0), "buffer %d", b);
                cr_assert(ge(sz, ws.size[b], need_bytes(&g, b, n, n_offs, n_out, temp)), "case %zu n %lld buffer %d",
                          c, (long long)n, b);
                cr_assert(gt(sz, ws.size[b], 0));
                cr_assert(le(sz, ws.off[b] + ws.size[b], ws.total));
                for (int o = 0; o < FPD__WS_COUNT; o++)
                    if (o != b)
                        cr_assert(ws.off[b] + ws.size[b] <= ws.off[o] || ws.off[o] + ws.size[o] <= ws.off[b],
                                  "buffers %d and %d overlap", b, o);
            }
            /* the level blocks: L_m (m >= 1) inside PART, dL_m inside DPART, each
             * p * cap_m * psz[m] floats, disjoint */
            for (int32_t m = 0; m + 1 < g.k; m++) {
                const size_t blk = (size_t)(g.p * fpd__engine_level_cap(&g, m, n) * g.psz[m]);
                cr_assert(le(sz, (ws.dpart_off[m] + blk) * 4, ws.size[FPD__WS_DPART]));
                if (m >= 1) cr_assert(le(sz, (ws.part_off[m] + blk) * 4, ws.size[FPD__WS_PART]));
                for (int32_t o = 0; o < m; o++) {
                    const size_t ob = (size_t)(g.p * fpd__engine_level_cap(&g, o, n) * g.psz[o]);
                    cr_assert(ws.dpart_off[o] + ob <= ws.dpart_off[m]);
                    if (o >= 1) cr_assert(ws.part_off[o] + ob <= ws.part_off[m]);
                }
            }
            cr_assert(eq(i64, ws.n, n));
            cr_assert(eq(i64, ws.n_out, n_out));
        }
    }
}

Test(engine_plan, workspace_refuses_negative_and_oversized_batches) {
    struct fpd_layer_shape s = shape_of(&g_pc[2]);
    struct fpd__engine_geom g;
    fpd__engine_geom_init(&s, &g);
    struct fpd__engine_ws ws;
    struct fpd_error err;
    cr_assert(eq(int, fpd__engine_ws_layout(&g, -1, 0, 0, 0, &ws, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(eq(int, fpd__engine_ws_layout(&g, 1, 0, -2, 0, &ws, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(eq(int, fpd__engine_ws_layout(&g, (int64_t)1 << 31, 1, 1, 0, &ws, &err), FPD_STATUS_UNSUPPORTED));
    cr_assert(strstr(err.msg, "split it") != NULL, "%s", err.msg);
    cr_assert(eq(int, fpd__engine_ws_layout(&g, 1, 1, 1, SIZE_MAX - 100, &ws, &err), FPD_STATUS_UNSUPPORTED));
}

Test(engine_plan, block_threads_are_warp_multiples_covering_the_width) {
    for (int64_t w = 0; w <= 1000; w++) {
        const int32_t t = fpd__engine_block_threads(w);
        cr_assert(eq(i32, t % 32, 0));
        cr_assert(t >= 32 && t <= 256);
        if (w <= 256) {
            cr_assert(ge(i64, (int64_t)t, w), "width %lld", (long long)w);
            cr_assert(w <= 32 || t - 32 < w, "width %lld: %d is not the smallest", (long long)w, (int)t);
        } else {
            cr_assert(eq(i32, t, 256));
        }
    }
}

Test(engine_plan, adam_bias_corrections_match_the_closed_form) {
    for (int64_t t = 1; t <= 2000; t += 37) {
        float bc1, bc2;
        fpd__engine_adam_bias(0.9, 0.999, t, &bc1, &bc2);
        cr_assert(fabs(bc1 - (1.0 - pow(0.9, (double)t))) < 1e-6, "step %lld: %g", (long long)t, bc1);
        cr_assert(fabs(bc2 - (1.0 - pow(0.999, (double)t))) < 1e-5, "step %lld: %g", (long long)t, bc2);
    }
}
