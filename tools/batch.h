/*
 * batch.h - fpd-batch's helpers on top of the library's pipeline files
 * (fpd_batch_*, formats/fpd-formats.h section "Batch pipeline files", which has
 * the schema): settings as the tools' compress options and as JSON, and the hash
 * of shard assignment and resume fingerprints. Not library API.
 */
#ifndef FPD_BATCH_H
#define FPD_BATCH_H

#include "tools/cli.h"
#include "tools/compress.h"
#include "tools/device.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* Fill compress options from settings (fpd_batch_settings_apply onto co->plan,
 * co->fit and co->recall_queries; not row_freq and order_*, which are per table). */
void batch_settings_apply(const struct fpd_batch_settings *s, struct compress_options *co);

/* The device of settings (device: auto|cpu|cuda; cuda is CUDA device 0). */
struct fpd_device batch_settings_device(const struct fpd_batch_settings *s);

/* The settings as a JSON object (every field, defaults filled in; rank/terms/cores
 * null for "chosen by the heuristic"). Caller owns the reference. */
json_t *batch_settings_json(const struct fpd_batch_settings *s);

/* 64-bit FNV-1a of bytes, and a well-mixed variant for shard assignment. */
uint64_t batch_fnv1a(const void *data, size_t n, uint64_t h);
#define BATCH_FNV_INIT 0xcbf29ce484222325ull

#endif
