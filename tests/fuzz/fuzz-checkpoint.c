/*
 * fuzz-checkpoint.c - libFuzzer target for FPD checkpoint loading (built by `make
 * fuzz`): the input is opened as safetensors from memory; every "fpd.table.T" it
 * names is checked, loaded into a layer, and looked up (first, last and a middle
 * row, and the dense reconstruction of the first rows), so a core or row_perm that
 * the checks let through with a wrong size shows as an ASan error.
 */
#include "formats/fpd-formats.h"
#include "tests/fuzz/fuzz-util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Bound the work per input: layers above this many parameters or row width are
 * loaded but not looked up. */
#define FUZZ_MAX_DIM 4096

static void exercise(const struct fpd_layer *l) {
    const struct fpd_layer_shape *s = fpd_layer_get_shape(l);
    if (s->dim > FUZZ_MAX_DIM || s->rows < 1) return;
    float *out = malloc((size_t)s->dim * 4 * sizeof(float));
    if (!out) return;
    int64_t idx[3] = {0, s->rows - 1, s->rows / 2};
    struct fpd_error err;
    if (fpd_layer_lookup(l, idx, 3, out, &err) != FPD_STATUS_OK && err.msg[0] == '\0') abort();
    int64_t bad = s->rows;
    if (fpd_layer_lookup(l, &bad, 1, out, &err) != FPD_STATUS_INVALID_ARG) abort();
    int64_t end = s->rows < 4 ? s->rows : 4;
    if (fpd_layer_reconstruct(l, 0, end, out, &err) != FPD_STATUS_OK && err.msg[0] == '\0') abort();
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = fuzz_copy(data, size, 0);
    if (!buf) return 0;
    struct fpd_safetensors *st = NULL;
    struct fpd_error err;
    if (fpd_safetensors_open_memory(buf, size, "fuzz", &st, &err) == FPD_STATUS_OK) {
        size_t plen = strlen(FPD_META_TABLE_PREFIX);
        for (int64_t i = 0; i < fpd_safetensors_metadata_count(st) && i < 8; i++) {
            const char *k, *v;
            fpd_safetensors_metadata_at(st, i, &k, &v);
            if (strncmp(k, FPD_META_TABLE_PREFIX, plen) != 0) continue;
            const char *table = k + plen;
            struct fpd_table_meta meta;
            enum fpd_status cs = fpd_checkpoint_check_table(st, table, &meta, &err);
            if (cs != FPD_STATUS_OK && err.msg[0] == '\0') abort();
            struct fpd_layer *l = NULL;
            enum fpd_status ls = fpd_checkpoint_load_layer(st, table, &l, &err);
            if (ls == FPD_STATUS_OK) {
                exercise(l);
                fpd_layer_free(l);
            } else if (err.msg[0] == '\0') {
                abort();
            }
        }
        fpd_safetensors_free(st);
    } else if (err.msg[0] == '\0') {
        abort();
    }
    free(buf);
    return 0;
}
