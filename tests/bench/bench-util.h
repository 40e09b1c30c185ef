/*
 * bench-util.h - what the benchmarks share: Zipf draws by the inverse CDF.
 */
#ifndef FPD_BENCH_UTIL_H
#define FPD_BENCH_UTIL_H

#include "lib/fpd-impl.h"

#include <math.h>
#include <stdlib.h>

/* The unnormalized CDF of Zipf(s) over [0, n): c[i] = sum_{q <= i} (q + 1)^-s.
 * malloc'd; NULL when out of memory. */
static inline double *bench_zipf_cdf(int64_t n, double s) {
    double *c = malloc((size_t)n * sizeof(double)), acc = 0.0;
    if (!c) return NULL;
    for (int64_t i = 0; i < n; i++) c[i] = acc += pow((double)(i + 1), -s);
    return c;
}

/* One draw: the first i with c[i] > u c[n-1], by binary search. */
static inline int64_t bench_zipf_draw(const double *c, int64_t n, uint64_t *rng) {
    double u = fpd__rand_uniform(rng) * c[n - 1];
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (c[mid] > u) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

#endif
