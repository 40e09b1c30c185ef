/*
 * test-fuzz-regressions.c - every input that once crashed a fuzz target (or made
 * it abort) is kept in tests/fuzz/regressions/<target>/ and replayed here through
 * the very same target function, compiled into the Criterion binary. A target
 * aborts (or crashes) on a regression, which Criterion reports as a failure.
 * The folder is found relative to the project root (make test runs there), or
 * through FPD_ROOT.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LLVMFuzzerTestOneInput fuzz_safetensors_one
#include "tests/fuzz/fuzz-safetensors.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_npy_one
#include "tests/fuzz/fuzz-npy.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_metadata_one
#include "tests/fuzz/fuzz-metadata.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_checkpoint_one
#include "tests/fuzz/fuzz-checkpoint.c"
#undef LLVMFuzzerTestOneInput

/* Replay every file of tests/fuzz/regressions/<target>/ through fn; returns how many. */
static int replay(const char *target, int (*fn)(const uint8_t *, size_t)) {
    const char *root = getenv("FPD_ROOT");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tests/fuzz/regressions/%s", root && *root ? root : ".", target);
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        cr_assert(f != NULL, "cannot open %s", path);
        uint8_t *buf = malloc(1 << 20);
        size_t len = fread(buf, 1, 1 << 20, f);
        fclose(f);
        cr_log_info("replaying %s (%zu bytes)", path, len);
        fn(buf, len); /* aborts on a regression */
        free(buf);
        n++;
    }
    closedir(d);
    return n;
}

Test(fuzz_regressions, safetensors) {
    /* issue 14: [488888888, 8888888888888, 0] was accepted, and the target aborted */
    cr_assert(replay("fuzz-safetensors", fuzz_safetensors_one) >= 1, "no regression files found (run from the root)");
}

Test(fuzz_regressions, npy) { replay("fuzz-npy", fuzz_npy_one); }
Test(fuzz_regressions, metadata) { replay("fuzz-metadata", fuzz_metadata_one); }
Test(fuzz_regressions, checkpoint) { replay("fuzz-checkpoint", fuzz_checkpoint_one); }
