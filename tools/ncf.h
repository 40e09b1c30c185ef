/*
 * ncf.h - the JSON forms of the NCF results that fpd-eval and fpd-compress print
 * (--json, the report's "eval" and "finetune_task"). The data handling itself is
 * library API: fpd_ncf_* in formats/fpd-formats.h (formats/ncf-data.c). Not
 * library API.
 */
#ifndef FPD_NCF_H
#define FPD_NCF_H

#include "tools/cli.h"

#include <jansson.h>

/* {"hr10": .., "ndcg10": .., "users": ..} */
json_t *ncf_metrics_json(const struct fpd_ncf_metrics *m);
/* {"hr10_before", "ndcg10_before", "hr10_after", "ndcg10_after", "hr10_drop",
 * "users"} (the object fpd-compress reports as "eval"). */
json_t *ncf_eval_json(const struct fpd_ncf_metrics *before, const struct fpd_ncf_metrics *after);
/* {"positives", "epochs", "seconds", "seconds_per_epoch", "final_loss",
 * "before": {...}, "after": {...}} (before/after only when evaluated). */
json_t *ncf_finetune_report_json(const struct fpd_ncf_finetune_report *rep);
/* Every field of the map report, by its name. */
json_t *ncf_map_report_json(const struct fpd_ncf_map_report *r);

#endif
