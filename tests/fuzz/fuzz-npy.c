/*
 * fuzz-npy.c - libFuzzer target for the .npy reader (built by `make fuzz` with
 * ASan and UBSan; not part of `make test`). Every input is opened from memory;
 * when it is accepted, the whole view is read, so a view past the input's end
 * shows as an ASan error, and its size must agree with its shape.
 *
 *   make fuzz FUZZ_SECONDS=60   (or build/fuzz-npy -max_total_time=60 [corpus-dir])
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
    struct fpd_npy *npy = NULL;
    struct fpd_error err;
    if (fpd_npy_open_memory(buf, size, "fuzz.npy", &npy, &err) == FPD_STATUS_OK) {
        const struct fpd_tensor_info *t = fpd_npy_tensor(npy);
        volatile unsigned sum = 0;
        const unsigned char *p = t->data;
        for (size_t j = 0; j < t->nbytes; j++) sum += p[j];
        (void)sum;
        int64_t numel = fpd_tensor_info_numel(t);
        if (numel < 0 || t->nbytes != (size_t)numel * fpd_dtype_size(t->dtype)) abort();
        if (t->ndim < 0 || t->ndim > FPD_MAX_DIMS) abort();
        fpd_npy_free(npy);
    } else if (err.msg[0] == '\0') {
        abort(); /* every failure explains itself */
    }
    free(buf);
    return 0;
}
