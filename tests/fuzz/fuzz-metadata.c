/*
 * fuzz-metadata.c - libFuzzer target for the FPD table metadata (the JSON string
 * of "fpd.table.T"; built by `make fuzz`). An accepted string must give a shape
 * that fpd_layer_shape_check accepts, and must survive a round trip through
 * fpd_table_meta_to_json unchanged.
 */
#include "formats/fpd-formats.h"
#include "tests/fuzz/fuzz-util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *s = (char *)fuzz_copy(data, size, 1);
    if (!s) return 0;
    struct fpd_table_meta m, m2;
    struct fpd_error err;
    if (fpd_table_meta_from_json(s, "fuzz", &m, &err) == FPD_STATUS_OK) {
        if (fpd_layer_shape_check(&m.shape, &err) != FPD_STATUS_OK) abort();
        (void)fpd_layer_shape_params(&m.shape);
        char *js = NULL;
        if (fpd_table_meta_to_json(&m, &js, &err) == FPD_STATUS_OK) {
            if (fpd_table_meta_from_json(js, "fuzz", &m2, &err) != FPD_STATUS_OK) abort();
            if (memcmp(&m.shape, &m2.shape, sizeof m.shape) != 0 || m.seed != m2.seed ||
                m.source_dtype != m2.source_dtype || m.core_dtype != m2.core_dtype || strcmp(m.fit, m2.fit) != 0)
                abort();
            fpd_free(js);
        } else if (err.msg[0] == '\0') {
            abort();
        }
    } else if (err.msg[0] == '\0') {
        abort();
    }
    free(s);
    return 0;
}
