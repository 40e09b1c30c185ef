/*
 * test-shapes.c - fpd_factor_rows and fpd_factor_cols against brute-force
 * references written here, known values, edge cases and a time bound.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <string.h>
#include <time.h>

#include "heuristics/fpd-heuristics.h"

/* ------------------------------------------------------------- references */

/* floor(N^(1/k)) by counting up (independent of the library's root). */
static int64_t ref_root_floor(int64_t n, int k) {
    int64_t x = 1;
    for (;;) {
        int64_t y = x + 1, p = 1;
        for (int i = 0; i < k; i++) p *= y;
        if (p > n) return x;
        x = y;
    }
}

/* The documented window [max(1, floor(4 floor(N^(1/k)) / 5)), ceil(5 ceil(N^(1/k)) / 4)]. */
static void ref_window(int64_t n, int k, int64_t *lo, int64_t *hi) {
    int64_t rf = ref_root_floor(n, k), p = 1;
    for (int i = 0; i < k; i++) p *= rf;
    int64_t rc = p == n ? rf : rf + 1;
    *lo = rf * 4 / 5 > 1 ? rf * 4 / 5 : 1;
    *hi = (rc * 5 + 3) / 4;
}

struct ref_best {
    int64_t pad;     /* minimal padding                                   */
    int64_t num, den; /* smallest max/min among tuples with that padding  */
};

static void ref_offer(struct ref_best *b, int64_t pad, int64_t mx, int64_t mn) {
    if (b->pad < 0 || pad < b->pad) {
        b->pad = pad;
        b->num = mx;
        b->den = mn;
    } else if (pad == b->pad && mx * b->den < b->num * mn) {
        b->num = mx;
        b->den = mn;
    }
}

/* Every tuple in the window, every order (no non-increasing shortcut). */
static struct ref_best ref_rows(int64_t n, int k) {
    int64_t lo, hi;
    ref_window(n, k, &lo, &hi);
    struct ref_best b = { -1, 0, 1 };
    if (k == 2) {
        for (int64_t a = lo; a <= hi; a++)
            for (int64_t c = lo; c <= hi; c++)
                if (a * c >= n) ref_offer(&b, a * c - n, a > c ? a : c, a < c ? a : c);
    } else if (k == 3) {
        for (int64_t a = lo; a <= hi; a++)
            for (int64_t c = lo; c <= hi; c++)
                for (int64_t e = lo; e <= hi; e++) {
                    int64_t p = a * c * e;
                    if (p < n) continue;
                    int64_t mx = a, mn = a;
                    if (c > mx) mx = c;
                    if (e > mx) mx = e;
                    if (c < mn) mn = c;
                    if (e < mn) mn = e;
                    ref_offer(&b, p - n, mx, mn);
                }
    } else if (k == 4) {
        for (int64_t a = lo; a <= hi; a++)
            for (int64_t c = lo; c <= hi; c++)
                for (int64_t e = lo; e <= hi; e++)
                    for (int64_t g = lo; g <= hi; g++) {
                        int64_t p = a * c * e * g;
                        if (p < n) continue;
                        int64_t v[4] = { a, c, e, g }, mx = a, mn = a;
                        for (int i = 1; i < 4; i++) {
                            if (v[i] > mx) mx = v[i];
                            if (v[i] < mn) mn = v[i];
                        }
                        ref_offer(&b, p - n, mx, mn);
                    }
    }
    return b;
}

/* Check one fpd_factor_rows result against the reference. */
static void check_rows(int64_t n, int k) {
    int64_t s[FPD_MAX_MODES];
    struct fpd_error err;
    cr_assert(eq(int, fpd_factor_rows(n, k, s, &err), FPD_STATUS_OK), "N=%lld k=%d", (long long)n, k);
    int64_t lo, hi, prod = 1;
    ref_window(n, k, &lo, &hi);
    for (int m = 0; m < k; m++) {
        cr_assert(ge(i64, s[m], lo), "N=%lld k=%d mode %d", (long long)n, k, m);
        cr_assert(le(i64, s[m], hi), "N=%lld k=%d mode %d", (long long)n, k, m);
        if (m) cr_assert(le(i64, s[m], s[m - 1]), "N=%lld k=%d not non-increasing", (long long)n, k);
        prod *= s[m];
    }
    cr_assert(ge(i64, prod, n));
    struct ref_best b = ref_rows(n, k);
    cr_assert(eq(i64, prod - n, b.pad), "N=%lld k=%d: padding %lld, minimum %lld", (long long)n, k,
              (long long)(prod - n), (long long)b.pad);
    cr_assert(eq(i64, s[0] * b.den, b.num * s[k - 1]), "N=%lld k=%d: balance %lld/%lld, best %lld/%lld",
              (long long)n, k, (long long)s[0], (long long)s[k - 1], (long long)b.num, (long long)b.den);
}

/* ------------------------------------------------------------- rows */

Test(shapes, rows_known_values) {
    int64_t s[FPD_MAX_MODES];
    struct { int64_t n, worst_pad; } cases[] = { { 6040, 80 }, { 3706, 134 }, { 20000, 300 } };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_assert(eq(int, fpd_factor_rows(cases[i].n, 3, s, NULL), FPD_STATUS_OK));
        int64_t prod = s[0] * s[1] * s[2];
        cr_assert(ge(i64, prod, cases[i].n));
        cr_assert(le(i64, prod - cases[i].n, cases[i].worst_pad), "N=%lld: %lldx%lldx%lld",
                  (long long)cases[i].n, (long long)s[0], (long long)s[1], (long long)s[2]);
    }
    /* 20000 = 2^5 5^4 factors exactly; the most balanced exact triple is 32x25x25. */
    fpd_factor_rows(20000, 3, s, NULL);
    cr_assert(eq(i64, s[0], 32));
    cr_assert(eq(i64, s[1], 25));
    cr_assert(eq(i64, s[2], 25));
    /* A perfect power is its root in every mode. */
    fpd_factor_rows(1000000, 3, s, NULL);
    for (int m = 0; m < 3; m++) cr_assert(eq(i64, s[m], 100));
    fpd_factor_rows(INT64_C(100000000), 4, s, NULL);
    for (int m = 0; m < 4; m++) cr_assert(eq(i64, s[m], 100));
}

Test(shapes, rows_one_and_k1) {
    int64_t s[FPD_MAX_MODES];
    for (int k = 1; k <= FPD_MAX_MODES; k++) {
        memset(s, 0, sizeof s);
        cr_assert(eq(int, fpd_factor_rows(1, k, s, NULL), FPD_STATUS_OK));
        for (int m = 0; m < k; m++) cr_assert(eq(i64, s[m], 1), "k=%d mode %d", k, m);
    }
    int64_t ns[] = { 1, 2, 7, 1000003, INT64_C(1000000000000), INT64_MAX };
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
        cr_assert(eq(int, fpd_factor_rows(ns[i], 1, s, NULL), FPD_STATUS_OK));
        cr_assert(eq(i64, s[0], ns[i]));
    }
}

Test(shapes, rows_prime_padded) {
    int64_t primes[] = { 1000003, 7919, 104729, INT64_C(999999999989) };
    int64_t s[FPD_MAX_MODES];
    for (size_t i = 0; i < sizeof primes / sizeof primes[0]; i++) {
        for (int k = 2; k <= 4; k++) {
            cr_assert(eq(int, fpd_factor_rows(primes[i], k, s, NULL), FPD_STATUS_OK));
            int64_t prod = 1;
            for (int m = 0; m < k; m++) {
                cr_assert(gt(i64, s[m], 1));
                prod *= s[m];
            }
            cr_assert(gt(i64, prod, primes[i]), "prime %lld k=%d must be padded", (long long)primes[i], k);
        }
    }
}

Test(shapes, rows_minimal_padding_k3_small) {
    for (int64_t n = 1; n <= 1500; n++) check_rows(n, 3);
}

Test(shapes, rows_minimal_padding_k3_sampled) {
    /* Team data sizes, primes, powers and a pseudo-random sample up to 1e5. */
    int64_t ns[] = { 3706, 6040, 9746, 20000, 27278, 65536, 99991, 100000, 59049, 4096, 46656 };
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) check_rows(ns[i], 3);
    uint64_t x = 12345;
    for (int i = 0; i < 40; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        check_rows(1 + (int64_t)((x >> 33) % 100000), 3);
    }
}

Test(shapes, rows_minimal_padding_k2_k4) {
    for (int64_t n = 1; n <= 5000; n += (n < 500 ? 1 : 37)) check_rows(n, 2);
    for (int64_t n = 1; n <= 20000; n += (n < 300 ? 1 : 113)) check_rows(n, 4);
}

Test(shapes, rows_large_fast) {
    int64_t ns[] = { INT64_C(1000000000000), INT64_C(999999999989), INT64_C(987654321987),
                     INT64_C(40000000), INT64_C(39999983), INT64_C(123456789012) };
    int64_t s[FPD_MAX_MODES];
    struct timespec t0, t1;
    int calls = 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int rep = 0; rep < 5; rep++)
        for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++)
            for (int k = 3; k <= 4; k++) {
                cr_assert(eq(int, fpd_factor_rows(ns[i], k, s, NULL), FPD_STATUS_OK));
                calls++;
                double prod = 1.0;
                int64_t lo, hi;
                ref_window(ns[i], k, &lo, &hi);
                for (int m = 0; m < k; m++) {
                    cr_assert(ge(i64, s[m], lo));
                    cr_assert(le(i64, s[m], hi));
                    if (m) cr_assert(le(i64, s[m], s[m - 1]));
                    prod *= (double)s[m];
                }
                cr_assert(ge(dbl, prod, (double)ns[i]));
                /* The bounded search still finds a tiny relative padding. */
                cr_assert(lt(dbl, (prod - (double)ns[i]) / (double)ns[i], 1e-5),
                          "N=%lld k=%d: relative padding %g", (long long)ns[i], k,
                          (prod - (double)ns[i]) / (double)ns[i]);
            }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double per_call = ((double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec)) / calls;
    /* Target is well under 1 ms; 5 ms leaves room for a loaded test machine. */
    cr_assert(lt(dbl, per_call, 5e-3), "%.3f ms per call", per_call * 1e3);
    /* N = 10^12 with k = 3 has an exact balanced factorization. */
    fpd_factor_rows(INT64_C(1000000000000), 3, s, NULL);
    cr_assert(eq(i64, s[0] * s[1] * s[2], INT64_C(1000000000000)));
}

Test(shapes, rows_many_modes) {
    int64_t ns[] = { 2, 3, 1000, 6040, 1000003, INT64_C(1000000000000) };
    int64_t s[FPD_MAX_MODES];
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++)
        for (int k = 5; k <= FPD_MAX_MODES; k++) {
            cr_assert(eq(int, fpd_factor_rows(ns[i], k, s, NULL), FPD_STATUS_OK));
            double prod = 1.0;
            for (int m = 0; m < k; m++) {
                cr_assert(ge(i64, s[m], 1));
                if (m) cr_assert(le(i64, s[m], s[m - 1]));
                prod *= (double)s[m];
            }
            cr_assert(ge(dbl, prod, (double)ns[i]));
            cr_assert(le(dbl, prod, 1.01 * (double)ns[i] + 64.0), "N=%lld k=%d", (long long)ns[i], k);
        }
}

Test(shapes, rows_near_int64_max) {
    /* Must terminate; either a product >= N that fits in int64, or INVALID_ARG. */
    int64_t ns[] = { INT64_MAX, INT64_MAX - 1, INT64_C(1) << 62, INT64_C(4611686014132420609) };
    int64_t s[FPD_MAX_MODES];
    struct fpd_error err;
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++)
        for (int k = 2; k <= FPD_MAX_MODES; k++) {
            enum fpd_status st = fpd_factor_rows(ns[i], k, s, &err);
            if (st != FPD_STATUS_OK) {
                cr_assert(eq(int, st, FPD_STATUS_INVALID_ARG));
                cr_assert(gt(sz, strlen(err.msg), 0));
                continue;
            }
            int64_t prod = 1;
            for (int m = 0; m < k; m++) {
                bool ovf = __builtin_mul_overflow(prod, s[m], &prod);
                cr_assert(not(ovf), "N=%lld k=%d: product overflows", (long long)ns[i], k);
            }
            cr_assert(ge(i64, prod, ns[i]));
        }
    /* 2^62 is representable: it must succeed for k = 2. */
    cr_assert(eq(int, fpd_factor_rows(INT64_C(1) << 62, 2, s, NULL), FPD_STATUS_OK));
    cr_assert(eq(i64, s[0], INT64_C(1) << 31));
    cr_assert(eq(i64, s[1], INT64_C(1) << 31));
}

Test(shapes, rows_invalid) {
    int64_t s[FPD_MAX_MODES];
    struct fpd_error err;
    cr_assert(eq(int, fpd_factor_rows(0, 3, s, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(eq(int, err.status, FPD_STATUS_INVALID_ARG));
    cr_assert(gt(sz, strlen(err.msg), 0));
    cr_assert(eq(int, fpd_factor_rows(-5, 3, s, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(eq(int, fpd_factor_rows(100, 0, s, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(eq(int, fpd_factor_rows(100, FPD_MAX_MODES + 1, s, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(eq(int, fpd_factor_rows(100, -1, s, NULL), FPD_STATUS_INVALID_ARG));
}

/* ------------------------------------------------------------- columns */

/* Smallest max/min over all k-tuples of divisors of d with product d. */
static void ref_cols_rec(int64_t d, int k, int j, int64_t rem, int64_t mx, int64_t mn, int64_t *bn,
                         int64_t *bd) {
    if (j == k - 1) {
        if (rem > mx) mx = rem;
        if (rem < mn) mn = rem;
        if (*bn < 0 || mx * *bd < *bn * mn) {
            *bn = mx;
            *bd = mn;
        }
        return;
    }
    for (int64_t x = 1; x <= rem; x++)
        if (rem % x == 0) ref_cols_rec(d, k, j + 1, rem / x, x > mx ? x : mx, x < mn ? x : mn, bn, bd);
}

static void check_cols(int64_t d, int k) {
    int64_t s[FPD_MAX_MODES];
    cr_assert(eq(int, fpd_factor_cols(d, k, s, NULL), FPD_STATUS_OK));
    int64_t prod = 1;
    for (int m = 0; m < k; m++) {
        cr_assert(ge(i64, s[m], 1));
        if (m) cr_assert(le(i64, s[m], s[m - 1]), "D=%lld k=%d not non-increasing", (long long)d, k);
        prod *= s[m];
    }
    cr_assert(eq(i64, prod, d), "D=%lld k=%d", (long long)d, k);
    int64_t bn = -1, bd = 1;
    ref_cols_rec(d, k, 0, d, 1, INT64_MAX, &bn, &bd);
    cr_assert(eq(i64, s[0] * bd, bn * s[k - 1]), "D=%lld k=%d: balance %lld/%lld, best %lld/%lld",
              (long long)d, k, (long long)s[0], (long long)s[k - 1], (long long)bn, (long long)bd);
}

static void expect_cols(int64_t d, int k, const int64_t *want) {
    int64_t s[FPD_MAX_MODES];
    cr_assert(eq(int, fpd_factor_cols(d, k, s, NULL), FPD_STATUS_OK));
    for (int m = 0; m < k; m++)
        cr_assert(eq(i64, s[m], want[m]), "D=%lld k=%d mode %d: %lld, want %lld", (long long)d, k, m,
                  (long long)s[m], (long long)want[m]);
}

Test(shapes, cols_known_values) {
    expect_cols(100, 3, (int64_t[]){ 5, 5, 4 });
    expect_cols(8, 3, (int64_t[]){ 2, 2, 2 });
    expect_cols(128, 3, (int64_t[]){ 8, 4, 4 });
    expect_cols(7, 3, (int64_t[]){ 7, 1, 1 });
    expect_cols(1, 3, (int64_t[]){ 1, 1, 1 });
    expect_cols(64, 3, (int64_t[]){ 4, 4, 4 });
    expect_cols(97, 3, (int64_t[]){ 97, 1, 1 });
    expect_cols(128, 4, (int64_t[]){ 4, 4, 4, 2 });
    expect_cols(180, 2, (int64_t[]){ 15, 12 }); /* greedy prime placement would give 18x10 */
    expect_cols(300, 1, (int64_t[]){ 300 });
    expect_cols(1, FPD_MAX_MODES, (int64_t[]){ 1, 1, 1, 1, 1, 1, 1, 1 });
    expect_cols(INT64_C(1) << 40, 8, (int64_t[]){ 32, 32, 32, 32, 32, 32, 32, 32 });
    expect_cols(1000000007, 3, (int64_t[]){ 1000000007, 1, 1 });
}

Test(shapes, cols_most_balanced) {
    for (int64_t d = 1; d <= 600; d++)
        for (int k = 1; k <= 4; k++) check_cols(d, k);
    int64_t ds[] = { 720, 768, 1024, 2048, 4096, 1000, 1536, 3072, 960 };
    for (size_t i = 0; i < sizeof ds / sizeof ds[0]; i++)
        for (int k = 2; k <= 3; k++) check_cols(ds[i], k);
}

Test(shapes, cols_large) {
    /* Big D with a large prime cofactor and a highly composite D: product exact. */
    int64_t ds[] = { INT64_C(999999999989), INT64_C(963761198400), INT64_C(4611686018427387904), INT64_MAX };
    int64_t s[FPD_MAX_MODES];
    for (size_t i = 0; i < sizeof ds / sizeof ds[0]; i++)
        for (int k = 1; k <= FPD_MAX_MODES; k++) {
            cr_assert(eq(int, fpd_factor_cols(ds[i], k, s, NULL), FPD_STATUS_OK));
            int64_t prod = 1;
            for (int m = 0; m < k; m++) {
                if (m) cr_assert(le(i64, s[m], s[m - 1]));
                bool ovf = __builtin_mul_overflow(prod, s[m], &prod);
                cr_assert(not(ovf), "D=%lld k=%d: product overflows", (long long)ds[i], k);
            }
            cr_assert(eq(i64, prod, ds[i]), "D=%lld k=%d", (long long)ds[i], k);
        }
}

Test(shapes, cols_invalid) {
    int64_t s[FPD_MAX_MODES];
    struct fpd_error err;
    cr_assert(eq(int, fpd_factor_cols(0, 3, s, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(gt(sz, strlen(err.msg), 0));
    cr_assert(eq(int, fpd_factor_cols(-1, 3, s, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(eq(int, fpd_factor_cols(8, 0, s, &err), FPD_STATUS_INVALID_ARG));
    cr_assert(eq(int, fpd_factor_cols(8, FPD_MAX_MODES + 1, s, NULL), FPD_STATUS_INVALID_ARG));
}
