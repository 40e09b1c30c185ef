/*
 * ncf.c - the JSON forms of the NCF results (see ncf.h).
 */
#include "tools/ncf.h"

json_t *ncf_metrics_json(const struct fpd_ncf_metrics *m) {
    return json_pack("{s:f, s:f, s:I}", "hr10", m->hr10, "ndcg10", m->ndcg10, "users", (json_int_t)m->users);
}

json_t *ncf_eval_json(const struct fpd_ncf_metrics *before, const struct fpd_ncf_metrics *after) {
    return json_pack("{s:f, s:f, s:f, s:f, s:f, s:I}", "hr10_before", before->hr10, "ndcg10_before", before->ndcg10,
                     "hr10_after", after->hr10, "ndcg10_after", after->ndcg10, "hr10_drop", before->hr10 - after->hr10,
                     "users", (json_int_t)after->users);
}

json_t *ncf_finetune_report_json(const struct fpd_ncf_finetune_report *rep) {
    json_t *o = json_pack("{s:I, s:I, s:f, s:f, s:f}", "positives", (json_int_t)rep->positives, "epochs",
                          (json_int_t)rep->epochs, "seconds", rep->seconds, "seconds_per_epoch",
                          rep->seconds_per_epoch, "final_loss", rep->final_loss);
    if (o && rep->evaluated) {
        json_object_set_new(o, "before", ncf_metrics_json(&rep->before));
        json_object_set_new(o, "after", ncf_metrics_json(&rep->after));
    }
    return o;
}

json_t *ncf_map_report_json(const struct fpd_ncf_map_report *r) {
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:I, s:f, s:f, s:f}", "users",
                     (json_int_t)r->users, "items", (json_int_t)r->items, "ratings", (json_int_t)r->ratings, "groups",
                     (json_int_t)r->groups, "test_unrated", (json_int_t)r->test_unrated, "test_out_of_group",
                     (json_int_t)r->test_out_of_group, "neg_rated", (json_int_t)r->neg_rated, "neg_total",
                     (json_int_t)r->neg_total, "tied_ids", (json_int_t)r->tied_ids, "tied_ratings",
                     (json_int_t)r->tied_ratings, "model_tiebreak", r->model_tiebreak, "train", (json_int_t)r->train,
                     "hr10_test", r->hr10_test, "hr10_train", r->hr10_train, "hr10_train_shuffled",
                     r->hr10_train_shuffled);
}
