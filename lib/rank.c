/*
 * rank.c - full-ranking evaluation of a GMF/MF model over all items
 * (fpd_gmf_rank_full, fpd.h): the protocol of NGCF and LightGCN (He et al., SIGIR
 * 2020; LightGCN-PyTorch Procedure.Test: scores of every item, the user's training
 * items set to a very low score, torch.topk, then utils.RecallPrecision_ATk and
 * NDCGatK_r). Scores come from an F32 sgemm of a block of user rows against all
 * item rows scaled by the prediction weights.
 */
#include "fpd-impl.h"
#include "cpu/kernels-cpu.h"

#include <math.h>
#include <string.h>

#define USER_BLOCK 256

static enum fpd_status csr_check(const int64_t *off, const int64_t *items, int64_t n_users, int64_t n_items,
                                 const char *what, struct fpd_error *err) {
    if (off[0] < 0) return fpd__err(err, FPD_STATUS_INVALID_ARG, "%s offsets must start at >= 0", what);
    for (int64_t u = 0; u < n_users; u++) {
        if (off[u + 1] < off[u])
            return fpd__err(err, FPD_STATUS_INVALID_ARG, "%s offsets decrease at user %lld", what, (long long)u);
        for (int64_t q = off[u]; q < off[u + 1]; q++)
            if (items[q] < 0 || items[q] >= n_items)
                return fpd__err(err, FPD_STATUS_INVALID_ARG, "%s item %lld of user %lld is outside [0, %lld)", what,
                                (long long)items[q], (long long)u, (long long)n_items);
    }
    return FPD_STATUS_OK;
}

/* Is (score s, item j) ranked before (t, i)? Higher score first, then lower id. */
static inline bool before(float s, int64_t j, float t, int64_t i) { return s > t || (s == t && j < i); }

enum fpd_status fpd_gmf_rank_full(const struct fpd_gmf *m, int64_t n_users, const int64_t *train_off,
                                  const int64_t *train_items, const int64_t *test_off, const int64_t *test_items,
                                  int64_t k, struct fpd_full_rank_metrics *out, struct fpd_error *err) {
    memset(out, 0, sizeof *out);
    out->k = k;
    FPD_ASSERT(m && m->weight);
    if (k < 1) return fpd__err(err, FPD_STATUS_INVALID_ARG, "full ranking needs k >= 1 (got %lld)", (long long)k);
    if (n_users < 0 || n_users > m->user.rows)
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "%lld users to rank, the user table has %lld rows",
                        (long long)n_users, (long long)m->user.rows);
    if (m->user.dim != m->item.dim)
        return fpd__err(err, FPD_STATUS_SHAPE, "user table dim %lld != item table dim %lld", (long long)m->user.dim,
                        (long long)m->item.dim);
    const int64_t n_items = m->item.rows, dim = m->item.dim;
    enum fpd_status st;
    if ((st = csr_check(train_off, train_items, n_users, n_items, "training", err)) ||
        (st = csr_check(test_off, test_items, n_users, n_items, "test", err)))
        return st;
    if (n_users == 0) return FPD_STATUS_OK;
    const int64_t bu = n_users < USER_BLOCK ? n_users : USER_BLOCK;
    float *items = fpd_malloc((size_t)(n_items * dim) * sizeof(float));
    float *users = fpd_malloc((size_t)(bu * dim) * sizeof(float));
    float *scores = fpd_malloc((size_t)(bu * n_items) * sizeof(float));
    int64_t *ids = fpd_malloc((size_t)(n_items > bu ? n_items : bu) * sizeof(int64_t));
    int64_t *top = fpd_malloc((size_t)k * sizeof(int64_t));
    unsigned char *is_test = fpd_calloc((size_t)n_items, 1);
    double recall = 0.0, precision = 0.0, ndcg = 0.0;
    int64_t counted = 0;
    if (!items || !users || !scores || !ids || !top || !is_test) {
        st = fpd__err(err, FPD_STATUS_NOMEM, "out of memory for ranking %lld items", (long long)n_items);
        goto done;
    }
    for (int64_t i = 0; i < n_items; i++) ids[i] = i;
    if ((st = fpd_embedding_lookup(&m->item, ids, n_items, items, err))) goto done;
    for (int64_t i = 0; i < n_items; i++)
        for (int64_t j = 0; j < dim; j++) items[i * dim + j] *= m->weight[j];
    for (int64_t u0 = 0; u0 < n_users; u0 += bu) {
        const int64_t nb = u0 + bu <= n_users ? bu : n_users - u0;
        for (int64_t q = 0; q < nb; q++) ids[q] = u0 + q;
        if ((st = fpd_embedding_lookup(&m->user, ids, nb, users, err))) goto done;
        fpd__cpu_sgemm(false, true, nb, n_items, dim, 1.0f, users, dim, items, dim, 0.0f, scores, n_items);
        for (int64_t q = 0; q < nb; q++) {
            const int64_t u = u0 + q, nt = test_off[u + 1] - test_off[u];
            if (nt == 0) continue;
            float *s = scores + q * n_items;
            for (int64_t t = train_off[u]; t < train_off[u + 1]; t++) s[train_items[t]] = -INFINITY;
            /* top k by insertion into a sorted list (k is small) */
            int64_t nk = 0;
            for (int64_t i = 0; i < n_items; i++) {
                if (s[i] == -INFINITY) continue;
                if (nk == k && !before(s[i], i, s[top[k - 1]], top[k - 1])) continue;
                int64_t p = nk < k ? nk++ : k - 1;
                while (p > 0 && before(s[i], i, s[top[p - 1]], top[p - 1])) {
                    top[p] = top[p - 1];
                    p--;
                }
                top[p] = i;
            }
            for (int64_t t = test_off[u]; t < test_off[u + 1]; t++) is_test[test_items[t]] = 1;
            double hits = 0.0, dcg = 0.0, idcg = 0.0;
            for (int64_t r = 0; r < nk; r++)
                if (is_test[top[r]]) {
                    hits += 1.0;
                    dcg += 1.0 / log2((double)r + 2.0);
                }
            for (int64_t r = 0; r < (nt < k ? nt : k); r++) idcg += 1.0 / log2((double)r + 2.0);
            for (int64_t t = test_off[u]; t < test_off[u + 1]; t++) is_test[test_items[t]] = 0;
            recall += hits / (double)nt;
            precision += hits / (double)k;
            ndcg += dcg / idcg;
            counted++;
        }
    }
    out->users = counted;
    if (counted) {
        out->recall = recall / (double)counted;
        out->precision = precision / (double)counted;
        out->ndcg = ndcg / (double)counted;
    }
done:
    fpd_free(items);
    fpd_free(users);
    fpd_free(scores);
    fpd_free(ids);
    fpd_free(top);
    fpd_free(is_test);
    return st;
}
