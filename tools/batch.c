/*
 * batch.c - fpd-batch's helpers on top of the library's pipeline files (see
 * batch.h; the parser and settings resolution are formats/batch.c).
 */
#include "tools/batch.h"
#include "tools/device.h"

#include <string.h>

uint64_t batch_fnv1a(const void *data, size_t n, uint64_t h) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

void batch_settings_apply(const struct fpd_batch_settings *s, struct compress_options *co) {
    fpd_batch_settings_apply(s, &co->plan, &co->fit, &co->recall_queries);
    if (s->set & FPD_BATCH_SET_FREE_DTYPE) {
        co->free_rowwise = co->plan.free_rowwise = s->free_rowwise;
        co->free_kind = co->plan.free_kind = s->free_kind;
    }
}

struct fpd_device batch_settings_device(const struct fpd_batch_settings *s) {
    struct fpd_device d = {FPD_DEVICE_REQUEST_AUTO, 0};
    if (s->device == FPD_BATCH_DEVICE_CPU) d.request = FPD_DEVICE_REQUEST_CPU;
    else if (s->device == FPD_BATCH_DEVICE_CUDA) d.request = FPD_DEVICE_REQUEST_CUDA;
    return d;
}

json_t *batch_settings_json(const struct fpd_batch_settings *s) {
    struct compress_options co = compress_default_options();
    batch_settings_apply(s, &co);
    const struct fpd_plan_params *pp = &co.plan;
    const struct fpd_fit_params *fp = &co.fit;
    json_t *o = json_object();
    json_object_set_new(o, "rank", pp->rank ? json_integer(pp->rank) : json_null());
    json_object_set_new(o, "terms", pp->terms ? json_integer(pp->terms) : json_null());
    json_object_set_new(o, "cores", pp->k ? json_integer(pp->k) : json_null());
    json_object_set_new(o, "core_dtype", json_string(fpd_dtype_name(pp->core_dtype)));
    json_object_set_new(o, "min_ratio", json_real(pp->min_ratio));
    json_object_set_new(o, "epochs", json_integer(fp->finetune_epochs));
    json_object_set_new(o, "batch_rows", json_integer(fp->batch_rows));
    json_object_set_new(o, "learning_rate", json_real(fp->learning_rate));
    json_object_set_new(o, "seed", json_integer((json_int_t)fp->seed));
    json_object_set_new(o, "backfit_sweeps", json_integer(fp->backfit_sweeps));
    json_object_set_new(o, "backfit_tol", json_real(fp->backfit_tol));
    json_object_set_new(o, "recall_queries", json_integer(co.recall_queries));
    json_object_set_new(o, "row_freq", s->row_freq ? json_string(s->row_freq) : json_null());
    json_object_set_new(o, "order_from", s->order_from ? json_string(s->order_from) : json_null());
    json_object_set_new(o, "order_column", json_integer(s->order_column + 1));
    json_object_set_new(o, "id_base", json_integer(s->id_base));
    json_object_set_new(o, "budget", pp->budget_bytes ? json_integer((json_int_t)pp->budget_bytes) : json_null());
    json_object_set_new(o, "ratio", pp->min_ratio_target > 0 ? json_real(pp->min_ratio_target) : json_null());
    json_object_set_new(o, "max_error", pp->max_error > 0 ? json_real(pp->max_error) : json_null());
    json_object_set_new(o, "free_coords", fp->free_coords == FPD_FREE_COORDS_AUTO ? json_string("auto")
                                                                                 : json_integer(fp->free_coords));
    json_object_set_new(o, "free_dtype", json_string(co.free_rowwise ? fpd_free_kind_name(co.free_kind) : "core"));
    static const char *const dev[] = {"auto", "cpu", "cuda"};
    json_object_set_new(o, "device", json_string(dev[s->device]));
    return o;
}
