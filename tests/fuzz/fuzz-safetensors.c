/*
 * fuzz-safetensors.c - libFuzzer target for the safetensors reader (built by
 * `make fuzz` with ASan and UBSan; not part of `make test`). Every input is
 * opened from memory; when it is accepted, every view and metadata string is
 * read in full, so a view that points outside the input shows as an ASan error, and
 * every FPD or row-wise table it declares is checked (fpd_checkpoint_verify_table,
 * deep: cores, row_perm, every reconstructed or dequantized row).
 *
 *   make fuzz && build/fuzz-safetensors -max_total_time=60 [corpus-dir]
 */
#include "formats/fpd-formats.h"
#include "tests/fuzz/fuzz-util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = fuzz_copy(data, size, 0);
    if (!buf) return 0;
    struct fpd_safetensors *st = NULL;
    struct fpd_error err;
    if (fpd_safetensors_open_memory(buf, size, "fuzz", &st, &err) == FPD_STATUS_OK) {
        volatile unsigned sum = 0;
        for (int64_t i = 0; i < fpd_safetensors_count(st); i++) {
            const struct fpd_tensor_info *t = fpd_safetensors_tensor(st, i);
            const unsigned char *p = t->data;
            for (size_t j = 0; j < t->nbytes; j++) sum += p[j];
            sum += (unsigned)strlen(t->name);
            if (fpd_safetensors_find(st, t->name) != t) abort();
            if (t->nbytes != (size_t)fpd_tensor_info_numel(t) * fpd_dtype_size(t->dtype)) abort();
        }
        for (int64_t i = 0; i < fpd_safetensors_metadata_count(st); i++) {
            const char *k, *v;
            fpd_safetensors_metadata_at(st, i, &k, &v);
            sum += (unsigned)(strlen(k) + strlen(v));
            /* the FPD v1 and rowwise/1 readers on whatever tables the header claims:
             * refusals must explain themselves, acceptances must stay inside the input */
            const char *tn = strncmp(k, FPD_META_TABLE_PREFIX, strlen(FPD_META_TABLE_PREFIX)) == 0
                                 ? k + strlen(FPD_META_TABLE_PREFIX)
                             : strncmp(k, FPD_META_ROWWISE_PREFIX, strlen(FPD_META_ROWWISE_PREFIX)) == 0
                                 ? k + strlen(FPD_META_ROWWISE_PREFIX)
                                 : NULL;
            if (!tn) continue;
            /* deep only for tables of a bounded size: a header may claim 10^18 rows of tiny
             * cores, which --verify would honestly reconstruct for ages */
            struct fpd_table_meta meta;
            bool small = fpd_checkpoint_check_table(st, tn, &meta, &err) != FPD_STATUS_OK ||
                         (double)meta.shape.rows * (double)meta.shape.dim <= 1e6;
            if (fpd_checkpoint_verify_table(st, tn, small, &err) != FPD_STATUS_OK && err.msg[0] == '\0') abort();
        }
        (void)sum;
        fpd_safetensors_free(st);
    } else if (err.msg[0] == '\0') {
        abort(); /* every failure explains itself */
    }
    free(buf);
    return 0;
}
