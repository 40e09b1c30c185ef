/*
 * shapes.c - factor a table's row count N and dimension D into k modes
 * (fpd_factor_rows, fpd_factor_cols; contract in fpd-heuristics.h).
 *
 * Rows. prod(n) >= N; the padding prod(n) - N is minimised over non-increasing
 * tuples whose modes all lie in the window
 *
 *     [max(1, floor(4 floor(N^(1/k)) / 5)), ceil(5 ceil(N^(1/k)) / 4)],
 *
 * (about +-25% around the k-th root: balanced modes keep the middle cores, whose
 * size is n_m r^2 d_m, small; a wider window found e.g. 29x16x8 for N = 3706,
 * which costs more parameters than 19x14x14 for 18 rows less padding),
 *
 * ties broken by balance (smallest n_0 / n_{k-1}), then by the smallest sum of
 * modes (the parameter count of uniform-rank cores grows with it), then by the
 * first tuple found (largest n_0 first). The search fixes n_0..n_{k-2} and takes
 * the last mode as max(ceil(N / prefix), lo), the only candidate that can be
 * optimal for that prefix. Its cost is the number of non-increasing prefixes,
 * at most C(W + k - 2, k - 1) for a window of W values; when that exceeds
 * ROWS_BUDGET (large N, or large k) the window is narrowed symmetrically around
 * N^(1/k) until it fits, so N = 10^12 with k = 3 or 4 stays well under a
 * millisecond (about 0.3 ms). No factorization exists when every candidate
 * product overflows int64 (only for N close to INT64_MAX): INVALID_ARG.
 * Within the narrowed window the search is still exhaustive; a
 * greedy tuple (each mode the ceiling root of what is left) seeds it, so a
 * result exists even if the hard node cap were reached. The same bounded search
 * serves every k (the greedy alone is what k > 4 would otherwise get).
 *
 * Columns. prod(d) == D exactly. The modes are the non-increasing tuple of
 * divisors of D with the smallest d_0 / d_{k-1} (ties: smallest d_0, then first
 * found), by a branch-and-bound search over divisor tuples. Greedy placement of
 * D's prime factors (largest first, each into the currently smallest mode; this
 * alone gives 18x10 for D = 180, k = 2, where 15x12 exists) seeds it and is the
 * fallback when D has too many divisors or the work cap is reached.
 * D is factored by trial division up to 2^21; a cofactor left over (only for
 * D > 2^42) is kept whole as if it were prime, so prod(d) == D always holds.
 */
#include "heuristics/fpd-heuristics.h"
#include "lib/fpd-impl.h"

#include <math.h>
#include <string.h>

/* Most prefixes the row search may visit; the window is narrowed to fit. */
#define ROWS_BUDGET 100000.0
/* Hard cap on visited nodes (never reached when the estimate holds). */
#define ROWS_NODE_CAP 1000000
/* Column search: most divisors of D searched, and most loop steps in all. */
#define COLS_MAX_DIVISORS 20000
#define COLS_WORK_CAP 2000000
/* Trial division bound for factoring D. */
#define COLS_TRIAL_LIMIT (INT64_C(1) << 21)

/* ------------------------------------------------------------- helpers */

/* a * b, saturating at INT64_MAX (a, b >= 0). */
static int64_t mul_sat(int64_t a, int64_t b) {
    int64_t r;
    return fpd__mul_i64(a, b, &r) ? r : INT64_MAX;
}

/* x^e, saturating at INT64_MAX (x >= 0, e >= 0). */
static int64_t pow_sat(int64_t x, int32_t e) {
    int64_t r = 1;
    for (int32_t i = 0; i < e; i++) r = mul_sat(r, x);
    return r;
}

/* x^e <= n, without overflow (x >= 0, e >= 0). */
static bool pow_le(int64_t x, int32_t e, int64_t n) {
    int64_t r = 1;
    for (int32_t i = 0; i < e; i++)
        if (!fpd__mul_i64(r, x, &r)) return false;
    return r <= n;
}

/* Largest x >= 1 with x^k <= n (n >= 1). */
static int64_t iroot_floor(int64_t n, int32_t k) {
    int64_t x = (int64_t)floor(pow((double)n, 1.0 / (double)k));
    if (x < 1) x = 1;
    while (x > 1 && !pow_le(x, k, n)) x--;
    while (pow_le(x + 1, k, n)) x++;
    return x;
}

/* a/b < c/d for positive a, b, c, d. */
static bool ratio_lt(int64_t a, int64_t b, int64_t c, int64_t d) {
    int64_t l, r;
    if (fpd__mul_i64(a, d, &l) && fpd__mul_i64(c, b, &r)) return l < r;
    return (long double)a / (long double)b < (long double)c / (long double)d;
}

static bool ratio_eq(int64_t a, int64_t b, int64_t c, int64_t d) {
    int64_t l, r;
    if (fpd__mul_i64(a, d, &l) && fpd__mul_i64(c, b, &r)) return l == r;
    return (long double)a / (long double)b == (long double)c / (long double)d;
}

/* C(n, r) as a double (an estimate; exact for small values). */
static double binom(double n, int32_t r) {
    double c = 1.0;
    for (int32_t i = 1; i <= r; i++) c = c * (n - r + i) / i;
    return c;
}

/* ------------------------------------------------------------- rows */

struct rows_search {
    int64_t N;
    int32_t k;
    int64_t lo, hi;
    int64_t cur[FPD_MAX_MODES];
    int64_t best[FPD_MAX_MODES];
    int64_t best_pad, best_sum;
    bool found;
    int64_t nodes;
};

/* Offer the non-increasing tuple n[0..k) with product prod >= N. */
static void rows_offer(struct rows_search *s, const int64_t *n, int64_t prod) {
    int32_t k = s->k;
    int64_t pad = prod - s->N;
    int64_t sum = 0;
    for (int32_t m = 0; m < k; m++) sum += n[m];
    bool better;
    if (!s->found) better = true;
    else if (pad != s->best_pad) better = pad < s->best_pad;
    else if (!ratio_eq(n[0], n[k - 1], s->best[0], s->best[k - 1]))
        better = ratio_lt(n[0], n[k - 1], s->best[0], s->best[k - 1]);
    else better = sum < s->best_sum;
    if (better) {
        memcpy(s->best, n, (size_t)k * sizeof *n);
        s->best_pad = pad;
        s->best_sum = sum;
        s->found = true;
    }
}

/* Modes j..k-1 given prefix product P (of modes 0..j-1), each <= cap. */
static void rows_rec(struct rows_search *s, int32_t j, int64_t P, int64_t cap) {
    if (++s->nodes > ROWS_NODE_CAP) return;
    int32_t k = s->k;
    if (j == k - 1) {
        int64_t need = (s->N - 1) / P + 1; /* ceil(N / P) */
        int64_t last = need > s->lo ? need : s->lo;
        if (last > cap) return;
        int64_t prod;
        if (!fpd__mul_i64(P, last, &prod)) return;
        s->cur[j] = last;
        rows_offer(s, s->cur, prod);
        return;
    }
    int32_t after = k - 1 - j; /* modes after this one, each <= x */
    for (int64_t x = cap; x >= s->lo; x--) {
        /* The largest product reachable with mode j = x is P * x^(after+1). */
        if (mul_sat(P, pow_sat(x, after + 1)) < s->N) break;
        s->cur[j] = x;
        rows_rec(s, j + 1, mul_sat(P, x), x);
        if (s->nodes > ROWS_NODE_CAP) return;
    }
}

static int cmp_desc_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x < y) - (x > y);
}

static int cmp_asc_i64(const void *a, const void *b) {
    return -cmp_desc_i64(a, b);
}

enum fpd_status fpd_factor_rows(int64_t n_rows, int32_t k, int64_t *row_shape, struct fpd_error *err) {
    if (n_rows < 1)
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "factor rows: N = %lld < 1", (long long)n_rows);
    if (k < 1 || k > FPD_MAX_MODES)
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "factor rows: k = %d not in 1..%d", (int)k,
                        FPD_MAX_MODES);
    FPD_ASSERT(row_shape != NULL);
    if (k == 1) {
        row_shape[0] = n_rows;
        fpd__err_clear(err);
        return FPD_STATUS_OK;
    }

    struct rows_search s;
    memset(&s, 0, sizeof s);
    s.N = n_rows;
    s.k = k;
    int64_t rf = iroot_floor(n_rows, k);
    int64_t rc = pow_le(rf, k, n_rows - 1) ? rf + 1 : rf; /* ceil(N^(1/k)) */
    s.lo = rf * 4 / 5 > 1 ? rf * 4 / 5 : 1;
    s.hi = (rc * 5 + 3) / 4;

    /* Narrow the window until the number of non-increasing prefixes fits. */
    double w = (double)(s.hi - s.lo + 1);
    if (binom(w + k - 2, k - 1) > ROWS_BUDGET) {
        int64_t h = 1;
        while (binom((double)(2 * (h + 1) + 2) + k - 2, k - 1) <= ROWS_BUDGET) h++;
        if (rf - h > s.lo) s.lo = rf - h;
        if (rc + h < s.hi) s.hi = rc + h;
    }

    /* Greedy seed: each mode the ceiling root of what is left. */
    {
        int64_t g[FPD_MAX_MODES];
        int64_t P = 1;
        bool ok = true;
        for (int32_t m = 0; m < k && ok; m++) {
            int64_t rem = (n_rows - 1) / P + 1;
            int32_t left = k - m;
            int64_t x = iroot_floor(rem, left);
            if (pow_le(x, left, rem - 1)) x++; /* x^left < rem: take the ceiling root */
            if (x < s.lo) x = s.lo;
            g[m] = x;
            ok = fpd__mul_i64(P, x, &P);
        }
        if (ok) {
            qsort(g, (size_t)k, sizeof *g, cmp_desc_i64);
            bool in_window = g[0] <= s.hi && g[k - 1] >= s.lo;
            if (in_window && P >= n_rows) rows_offer(&s, g, P);
        }
    }

    rows_rec(&s, 0, 1, s.hi);
    if (!s.found)
        return fpd__err(err, FPD_STATUS_INVALID_ARG,
                        "factor rows: no factorization of N = %lld into %d modes fits in int64",
                        (long long)n_rows, (int)k);
    memcpy(row_shape, s.best, (size_t)k * sizeof *row_shape);
    fpd__err_clear(err);
    return FPD_STATUS_OK;
}

/* ------------------------------------------------------------- columns */

struct cols_search {
    int32_t k;
    const int64_t *div; /* divisors of D, ascending */
    int64_t ndiv;
    int64_t cur[FPD_MAX_MODES];
    int64_t best[FPD_MAX_MODES];
    bool found;
    int64_t work;
};

static void cols_offer(struct cols_search *s, const int64_t *d) {
    int32_t k = s->k;
    bool better;
    if (!s->found) better = true;
    else if (!ratio_eq(d[0], d[k - 1], s->best[0], s->best[k - 1]))
        better = ratio_lt(d[0], d[k - 1], s->best[0], s->best[k - 1]);
    else better = d[0] < s->best[0];
    if (better) {
        memcpy(s->best, d, (size_t)k * sizeof *d);
        s->found = true;
    }
}

/* Modes j..k-1 (non-increasing) with product rem, each <= cap. Branch and bound:
 * x runs upwards from the smallest value that can still be the largest of the
 * remaining modes; the smallest mode is then at most min(x, (rem/x)^(1/(left-1))),
 * so d_0 / that bounds the ratio from below, and the bound only grows with x. */
static void cols_rec(struct cols_search *s, int32_t j, int64_t rem, int64_t cap) {
    int32_t k = s->k;
    if (j == k - 1) {
        if (rem <= cap) {
            s->cur[j] = rem;
            cols_offer(s, s->cur);
        }
        return;
    }
    int32_t left = k - j; /* modes j..k-1 */
    /* First divisor with x^left >= rem (the divisors are ascending). */
    int64_t a = 0, b = s->ndiv;
    while (a < b) {
        int64_t mid = a + (b - a) / 2;
        if (pow_sat(s->div[mid], left) >= rem) b = mid;
        else a = mid + 1;
    }
    for (int64_t i = a; i < s->ndiv && s->div[i] <= cap; i++) {
        if (++s->work > COLS_WORK_CAP) return;
        int64_t x = s->div[i];
        if (rem % x != 0) continue;
        int64_t d0 = j == 0 ? x : s->cur[0];
        int64_t mn = iroot_floor(rem / x, left - 1);
        if (mn > x) mn = x;
        if (s->found && !ratio_lt(d0, mn, s->best[0], s->best[k - 1])) break;
        s->cur[j] = x;
        cols_rec(s, j + 1, rem / x, x);
    }
}

enum fpd_status fpd_factor_cols(int64_t dim, int32_t k, int64_t *col_shape, struct fpd_error *err) {
    if (dim < 1)
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "factor cols: D = %lld < 1", (long long)dim);
    if (k < 1 || k > FPD_MAX_MODES)
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "factor cols: k = %d not in 1..%d", (int)k,
                        FPD_MAX_MODES);
    FPD_ASSERT(col_shape != NULL);

    /* Prime factors (with multiplicity), ascending; at most 63 of them. */
    int64_t primes[64], exps[64];
    int32_t np = 0, nf = 0;
    int64_t factors[64];
    int64_t rem = dim;
    for (int64_t p = 2; p <= COLS_TRIAL_LIMIT && p <= rem / p; p += (p == 2 ? 1 : 2)) {
        if (rem % p != 0) continue;
        primes[np] = p;
        exps[np] = 0;
        while (rem % p == 0) {
            rem /= p;
            exps[np]++;
            factors[nf++] = p;
        }
        np++;
    }
    if (rem > 1) {
        primes[np] = rem;
        exps[np] = 1;
        np++;
        factors[nf++] = rem;
    }

    /* Greedy seed: largest factor first, each into the currently smallest mode. */
    int64_t g[FPD_MAX_MODES];
    for (int32_t m = 0; m < k; m++) g[m] = 1;
    for (int32_t f = nf - 1; f >= 0; f--) {
        int32_t small = 0;
        for (int32_t m = 1; m < k; m++)
            if (g[m] < g[small]) small = m;
        g[small] *= factors[f];
    }
    qsort(g, (size_t)k, sizeof *g, cmp_desc_i64);

    struct cols_search s;
    memset(&s, 0, sizeof s);
    s.k = k;
    cols_offer(&s, g);

    /* Exhaustive search over divisor tuples when the divisor count is modest. */
    double ndiv_d = 1.0;
    for (int32_t i = 0; i < np; i++) ndiv_d *= (double)(exps[i] + 1);
    if (k > 1 && ndiv_d <= COLS_MAX_DIVISORS) {
        int64_t ndiv = (int64_t)ndiv_d;
        int64_t *div = fpd_malloc((size_t)ndiv * sizeof *div);
        if (div) {
            int64_t cnt = 1;
            div[0] = 1;
            for (int32_t i = 0; i < np; i++) {
                int64_t base = cnt, pw = 1;
                for (int64_t e = 1; e <= exps[i]; e++) {
                    pw *= primes[i];
                    for (int64_t t = 0; t < base; t++) div[cnt++] = div[t] * pw;
                }
            }
            qsort(div, (size_t)cnt, sizeof *div, cmp_asc_i64);
            s.div = div;
            s.ndiv = cnt;
            cols_rec(&s, 0, dim, dim);
            fpd_free(div);
        }
        /* Out of memory: keep the greedy result, which is valid. */
    }
    memcpy(col_shape, s.best, (size_t)k * sizeof *col_shape);
    fpd__err_clear(err);
    return FPD_STATUS_OK;
}
