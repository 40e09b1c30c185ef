/*
 * engine.c - the FPD engine's public side (fpd.h, "The engine"): parameters,
 * batch validation, and dispatch to the backend's layer-level operations
 * (backend-impl.h). The work itself is the backend's (lib/cpu/engine-cpu.c).
 * Also the layer's convenience look-ups (fpd_layer_lookup, fpd_layer_reconstruct,
 * fpd_layer_backward), which run through a transient CPU engine, so that every
 * caller of the library goes through one implementation.
 */
#include "backend-impl.h"

#include <string.h>

struct fpd_engine {
    struct fpd_backend *be;
    bool own_be;
    void *state;
    struct fpd_layer *layer;
    struct fpd_optimizer_params opt;
    int64_t free_c; /* the layer's free coordinates when the engine was made */
    bool free_stored; /* and whether it held E as stored rows then */
};

struct fpd_optimizer_params fpd_optimizer_default_params(void) {
    struct fpd_optimizer_params o;
    memset(&o, 0, sizeof o);
    o.kind = FPD_OPTIMIZER_KIND_LAZY_ADAM;
    o.learning_rate = 1e-3;
    o.beta1 = 0.9;
    o.beta2 = 0.999;
    o.eps = 1e-8;
    return o;
}

struct fpd_engine_params fpd_engine_default_params(void) {
    struct fpd_engine_params p;
    memset(&p, 0, sizeof p);
    p.optimizer = fpd_optimizer_default_params();
    return p;
}

int64_t fpd_bag_batch_out_rows(const struct fpd_bag_batch *b) {
    if (b->mode == FPD_BAG_MODE_NONE) return b->n_indices;
    if (!b->offsets) return b->bag_size > 0 ? b->n_indices / b->bag_size : 0;
    return b->include_last_offset ? (b->n_bags > 0 ? b->n_bags - 1 : 0) : b->n_bags;
}

enum fpd_status fpd_engine_init(struct fpd_layer *layer, const struct fpd_engine_params *params,
                                struct fpd_engine **out, struct fpd_error *err) {
    *out = NULL;
    struct fpd_engine_params p = params ? *params : fpd_engine_default_params();
    const struct fpd_optimizer_params *o = &p.optimizer;
    if (p.threads < 0)
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "engine threads = %d must be >= 0", (int)p.threads);
    if ((unsigned)o->kind >= FPD_OPTIMIZER_KIND_COUNT || !(o->learning_rate > 0.0) || !(o->eps > 0.0) ||
        !(o->beta1 >= 0.0 && o->beta1 < 1.0) || !(o->beta2 >= 0.0 && o->beta2 < 1.0))
        return fpd__err(err, FPD_STATUS_INVALID_ARG,
                        "optimizer parameters out of range: kind %d, learning rate %g (> 0), eps %g (> 0), betas %g, "
                        "%g (in [0, 1))",
                        (int)o->kind, o->learning_rate, o->eps, o->beta1, o->beta2);
    for (int32_t m = 0; m < FPD_MAX_MODES; m++)
        if (!(o->lr_scale[m] >= 0.0))
            return fpd__err(err, FPD_STATUS_INVALID_ARG, "lr_scale[%d] = %g must be >= 0", (int)m, o->lr_scale[m]);
    if (!(o->free_lr_scale >= 0.0))
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "free_lr_scale = %g must be >= 0", o->free_lr_scale);
    if (!(o->free_proj_lr_scale >= 0.0))
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "free_proj_lr_scale = %g must be >= 0", o->free_proj_lr_scale);
    if (p.free_qat && (p.free_qat_kind < 0 || p.free_qat_kind >= FPD_FREE_KIND_COUNT))
        return fpd__err(err, FPD_STATUS_INVALID_ARG,
                        "quantization-aware training: free_qat_kind %d is not a quantized kind of E (0..%d)",
                        (int)p.free_qat_kind, FPD_FREE_KIND_COUNT - 1);
    if (p.free_qat && fpd_layer_get_free_coords(layer) == 0)
        return fpd__err(err, FPD_STATUS_INVALID_ARG,
                        "quantization-aware training of E (free_qat) needs a layer with free coordinates; this one "
                        "has none");
    enum fpd_free_kind held;
    const bool stored = fpd_layer_get_free_stored(layer, &held) != NULL;
    if (p.free_qat && stored)
        return fpd__err(err, FPD_STATUS_INVALID_ARG,
                        "quantization-aware training needs E in F32; the layer holds it as stored %s rows "
                        "(fpd_layer_expand_free; Python: Layer.expand_free())",
                        fpd_free_kind_name(held));
    struct fpd_engine *e = fpd_calloc(1, sizeof *e);
    if (!e) return fpd__err(err, FPD_STATUS_NOMEM, "out of memory for an engine");
    enum fpd_status st = FPD_STATUS_OK;
    e->layer = layer;
    e->opt = *o;
    e->free_c = fpd_layer_get_free_coords(layer);
    e->free_stored = stored;
    if (p.backend) {
        e->be = p.backend;
    } else {
        if ((st = fpd_backend_init(FPD_BACKEND_KIND_CPU, 0, &e->be, err))) goto fail;
        e->own_be = true;
    }
    /* free coordinates: the CPU and CUDA engines compute them (CUDA since backend ABI 4;
     * an object of an older ABI is refused when it loads) */
    if (!e->be->iface.engine_create) {
        st = fpd__err(err, FPD_STATUS_UNSUPPORTED, "backend %s has no FPD engine operations", e->be->name);
        goto fail;
    }
    if (stored && e->be->kind != FPD_BACKEND_KIND_CPU) { /* its engine copies an F32 E to the device */
        st = fpd__err(err, FPD_STATUS_UNSUPPORTED,
                      "backend %s: E of the free coordinates is held as stored %s rows; this engine needs it in F32 "
                      "(fpd_layer_expand_free; Python: Layer.expand_free())",
                      e->be->name, fpd_free_kind_name(held));
        goto fail;
    }
    if ((st = e->be->iface.engine_create(e->be->ctx, layer, &p, &e->state, err))) goto fail;
    *out = e;
    return FPD_STATUS_OK;
fail:
    if (e->own_be) fpd_backend_free(e->be);
    fpd_free(e);
    return st;
}

void fpd_engine_free(struct fpd_engine *e) {
    if (!e) return;
    if (e->state) e->be->iface.engine_destroy(e->be->ctx, e->state);
    if (e->own_be) fpd_backend_free(e->be);
    fpd_free(e);
}

/* Check a batch against the layer; the number of bags into *n_bags. */
static enum fpd_status batch_check(const struct fpd_engine *e, const struct fpd_bag_batch *b, int64_t *n_bags,
                                   struct fpd_error *err) {
    const int64_t rows = fpd_layer_get_shape(e->layer)->rows, n = b->n_indices;
    if (n < 0) return fpd__err(err, FPD_STATUS_INVALID_ARG, "n_indices = %lld is negative", (long long)n);
    if ((unsigned)b->mode >= FPD_BAG_MODE_COUNT)
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "unknown bag mode %d", (int)b->mode);
    if (n > 0 && !b->indices) return fpd__err(err, FPD_STATUS_INVALID_ARG, "indices is NULL");
    if (b->padding_idx >= rows)
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "padding_idx = %lld is outside [0, %lld)",
                        (long long)b->padding_idx, (long long)rows);
    for (int64_t i = 0; i < n; i++)
        if ((b->indices[i] < 0 || b->indices[i] >= rows) && (b->padding_idx < 0 || b->indices[i] != b->padding_idx))
            return fpd__err(err, FPD_STATUS_INVALID_ARG, "index indices[%lld] = %lld is outside [0, %lld)",
                            (long long)i, (long long)b->indices[i], (long long)rows);
    if (b->per_sample_weights && b->mode != FPD_BAG_MODE_SUM)
        return fpd__err(err, FPD_STATUS_INVALID_ARG,
                        "per_sample_weights are only supported with mode SUM (as torch.nn.EmbeddingBag)");
    *n_bags = 0;
    if (b->mode == FPD_BAG_MODE_NONE) return FPD_STATUS_OK;
    if (!b->offsets) {
        if (b->bag_size < 1 || n % b->bag_size != 0)
            return fpd__err(err, FPD_STATUS_INVALID_ARG,
                            "without offsets, bag_size (%lld) must be >= 1 and divide n_indices (%lld)",
                            (long long)b->bag_size, (long long)n);
        *n_bags = n / b->bag_size;
        return FPD_STATUS_OK;
    }
    const int64_t no = b->n_bags; /* offsets given */
    if (no < 0 || (b->include_last_offset && no < 1))
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "%lld offsets%s", (long long)no,
                        b->include_last_offset ? " (include_last_offset needs at least 1)" : " is negative");
    for (int64_t q = 0; q < no; q++) {
        if ((q == 0 && b->offsets[0] != 0) || (q > 0 && b->offsets[q] < b->offsets[q - 1]) || b->offsets[q] > n)
            return fpd__err(err, FPD_STATUS_INVALID_ARG,
                            "offsets[%lld] = %lld: offsets must start at 0, not decrease and not exceed n_indices "
                            "(%lld)",
                            (long long)q, (long long)b->offsets[q], (long long)n);
    }
    *n_bags = b->include_last_offset ? no - 1 : no;
    return FPD_STATUS_OK;
}

/* The layer's free coordinates must be those the engine was made with. */
static enum fpd_status free_check(const struct fpd_engine *e, struct fpd_error *err) {
    const int64_t c = fpd_layer_get_free_coords(e->layer);
    if (c != e->free_c)
        return fpd__err(err, FPD_STATUS_INVALID_ARG,
                        "the layer now has %lld free coordinates per row, the engine was made for %lld: make a new "
                        "engine",
                        (long long)c, (long long)e->free_c);
    if ((fpd_layer_get_free_stored(e->layer, NULL) != NULL) != e->free_stored)
        return fpd__err(err, FPD_STATUS_INVALID_ARG,
                        "the layer's E is now held %s, the engine was made for it %s: make a new engine",
                        e->free_stored ? "in F32" : "as stored rows", e->free_stored ? "as stored rows" : "in F32");
    return FPD_STATUS_OK;
}

/* Training needs E in F32 (the optimizer steps it). */
static enum fpd_status train_check(const struct fpd_engine *e, struct fpd_error *err) {
    enum fpd_free_kind held;
    if (fpd_layer_get_free_stored(e->layer, &held))
        return fpd__err(err, FPD_STATUS_INVALID_ARG,
                        "the layer holds E of its free coordinates as stored %s rows (look-ups only); training needs "
                        "it in F32 (fpd_layer_expand_free; Python: Layer.expand_free())",
                        fpd_free_kind_name(held));
    return FPD_STATUS_OK;
}

enum fpd_status fpd_engine_forward(struct fpd_engine *e, const struct fpd_bag_batch *b, float *out,
                                   struct fpd_error *err) {
    int64_t n_bags;
    enum fpd_status st = free_check(e, err);
    if (st) return st;
    st = batch_check(e, b, &n_bags, err);
    if (st) return st;
    return e->be->iface.engine_forward(e->be->ctx, e->state, b, n_bags, out, err);
}

enum fpd_status fpd_engine_backward(struct fpd_engine *e, const struct fpd_bag_batch *b, const float *grad_out,
                                    struct fpd_error *err) {
    int64_t n_bags;
    enum fpd_status st = free_check(e, err);
    if (!st) st = train_check(e, err);
    if (st) return st;
    st = batch_check(e, b, &n_bags, err);
    if (st) return st;
    return e->be->iface.engine_backward(e->be->ctx, e->state, b, n_bags, grad_out, err);
}

void fpd_engine_grad(const struct fpd_engine *e, int32_t m, const float **grad, const int64_t **slices,
                     int64_t *n_slices) {
    FPD_ASSERT(m >= 0 && m < fpd_layer_get_shape(e->layer)->k + (e->free_c > 0 ? 2 : 0));
    e->be->iface.engine_grad(e->be->ctx, e->state, m, grad, slices, n_slices);
}

enum fpd_status fpd_engine_step(struct fpd_engine *e, struct fpd_error *err) {
    enum fpd_status st = free_check(e, err);
    if (!st) st = train_check(e, err);
    if (st) return st;
    return e->be->iface.engine_step(e->be->ctx, e->state, &e->opt, err);
}

void fpd_engine_zero_grad(struct fpd_engine *e) { e->be->iface.engine_zero_grad(e->be->ctx, e->state); }

double fpd_engine_last_flops(const struct fpd_engine *e) { return e->be->iface.engine_flops(e->be->ctx, e->state); }

/* ------------------------------------------------------------ the layer's look-ups */

/* A one-thread CPU engine for the convenience calls: they are called from
 * threads of their own (fit, quality), so they do not start more. */
static enum fpd_status transient_engine(const struct fpd_layer *layer, struct fpd_engine **e, struct fpd_error *err) {
    struct fpd_engine_params p = fpd_engine_default_params();
    p.threads = 1;
    /* the engine only reads the cores unless fpd_engine_step is called */
    return fpd_engine_init((struct fpd_layer *)layer, &p, e, err);
}

enum fpd_status fpd_layer_lookup(const struct fpd_layer *layer, const int64_t *idx, int64_t n, float *out,
                                 struct fpd_error *err) {
    if (n <= 0) return FPD_STATUS_OK;
    struct fpd_engine *e = NULL;
    enum fpd_status st = transient_engine(layer, &e, err);
    if (st) return st;
    struct fpd_bag_batch b = {.indices = idx, .n_indices = n, .mode = FPD_BAG_MODE_NONE, .padding_idx = -1};
    st = fpd_engine_forward(e, &b, out, err);
    fpd_engine_free(e);
    return st;
}

enum fpd_status fpd__reconstruct_rows(struct fpd__reconstructor *rc, const struct fpd_layer *layer, int64_t row_begin,
                                      int64_t row_end, float *out, struct fpd_error *err) {
    const int64_t rows = fpd_layer_get_shape(layer)->rows;
    if (row_begin < 0 || row_end < row_begin || row_end > rows)
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "rows [%lld, %lld) outside a table of %lld rows",
                        (long long)row_begin, (long long)row_end, (long long)rows);
    const int64_t n = row_end - row_begin;
    if (n == 0) return FPD_STATUS_OK;
    if (n > rc->cap) {
        int64_t *idx = fpd_malloc((size_t)n * sizeof(int64_t));
        if (!idx) return fpd__err(err, FPD_STATUS_NOMEM, "out of memory for %lld row ids", (long long)n);
        fpd_free(rc->idx);
        rc->idx = idx;
        rc->cap = n;
    }
    enum fpd_status st;
    if (!rc->engine && (st = transient_engine(layer, &rc->engine, err))) return st;
    for (int64_t i = 0; i < n; i++) rc->idx[i] = row_begin + i;
    struct fpd_bag_batch b = {.indices = rc->idx, .n_indices = n, .mode = FPD_BAG_MODE_NONE, .padding_idx = -1};
    return fpd_engine_forward(rc->engine, &b, out, err);
}

void fpd__reconstructor_free(struct fpd__reconstructor *rc) {
    fpd_engine_free(rc->engine);
    fpd_free(rc->idx);
    memset(rc, 0, sizeof *rc);
}

enum fpd_status fpd_layer_reconstruct(const struct fpd_layer *layer, int64_t row_begin, int64_t row_end, float *out,
                                      struct fpd_error *err) {
    struct fpd__reconstructor rc = {0};
    enum fpd_status st = fpd__reconstruct_rows(&rc, layer, row_begin, row_end, out, err);
    fpd__reconstructor_free(&rc);
    return st;
}

enum fpd_status fpd_layer_backward(const struct fpd_layer *layer, const int64_t *idx, int64_t n,
                                   const float *grad_out, float *const *grad_cores, struct fpd_error *err) {
    if (n <= 0) return FPD_STATUS_OK;
    const struct fpd_layer_shape *s = fpd_layer_get_shape(layer);
    struct fpd_engine *e = NULL;
    float *scratch = NULL;
    enum fpd_status st = transient_engine(layer, &e, err);
    if (st) return st;
    struct fpd_bag_batch b = {.indices = idx, .n_indices = n, .mode = FPD_BAG_MODE_NONE, .padding_idx = -1};
    if (!(scratch = fpd_malloc((size_t)(n * s->dim) * sizeof(float)))) {
        st = fpd__err(err, FPD_STATUS_NOMEM, "out of memory for %lld rows", (long long)n);
        goto done;
    }
    if ((st = fpd_engine_forward(e, &b, scratch, err)) || (st = fpd_engine_backward(e, &b, grad_out, err))) goto done;
    for (int32_t m = 0; m < s->k; m++) {
        const float *g;
        const int64_t *sl;
        int64_t ns;
        fpd_engine_grad(e, m, &g, &sl, &ns);
        const int64_t size = fpd_layer_shape_core_numel(s, m) / (s->terms * s->row_shape[m]);
        for (int64_t q = 0; q < ns; q++)
            for (int64_t x = sl[q] * size; x < (sl[q] + 1) * size; x++) grad_cores[m][x] += g[x];
    }
done:
    fpd_free(scratch);
    fpd_engine_free(e);
    return st;
}
