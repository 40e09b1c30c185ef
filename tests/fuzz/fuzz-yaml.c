/*
 * fuzz-yaml.c - libFuzzer target for fpd-batch's pipeline file (tools/batch.c;
 * built by `make fuzz`): the input is parsed as the YAML of a pipeline that lives
 * in a scratch folder holding one small table, "a.npy", and "b.safetensors", so
 * inputs that name them get through to the schema, selection and output checks.
 * An accepted pipeline must have inputs and a folder; a refused one must say why.
 * Nothing is written outside the scratch folder (parsing writes nothing).
 */
#include "formats/fpd-formats.h"
#include "tests/fuzz/fuzz-util.h"
#include "tools/batch.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64] = "";

static void scratch_remove(void) {
    char p[128];
    snprintf(p, sizeof p, "%s/a.npy", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/b.safetensors", dir);
    unlink(p);
    rmdir(dir);
}

static const char *scratch(void) {
    if (dir[0]) return dir;
    strcpy(dir, "/tmp/fpd-fuzz-yaml-XXXXXX");
    if (!mkdtemp(dir)) abort();
    static const float v[4 * 3] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    struct fpd_tensor_info t = {"t", FPD_DTYPE_F32, 2, {4, 3}, v, sizeof v};
    char p[128];
    struct fpd_error err;
    snprintf(p, sizeof p, "%s/a.npy", dir);
    if (fpd_npy_write(p, &t, FPD_WRITE_OVERWRITE, &err)) abort();
    snprintf(p, sizeof p, "%s/b.safetensors", dir);
    if (fpd_safetensors_write(p, &t, 1, NULL, NULL, 0, FPD_WRITE_OVERWRITE, &err)) abort();
    atexit(scratch_remove);
    return dir;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[128];
    snprintf(path, sizeof path, "%s/p.yaml", scratch());
    uint8_t *buf = fuzz_copy(data, size, 0);
    if (!buf) return 0;
    struct fpd_batch_pipeline *p = NULL;
    struct fpd_error err;
    if (fpd_batch_pipeline_parse(path, buf, size, &p, &err) == FPD_STATUS_OK) {
        if (!p->folder || p->n_inputs < 1 || !p->report_json || !p->report_md) abort();
        for (int64_t i = 0; i < p->n_inputs; i++) {
            struct fpd_batch_settings s;
            fpd_batch_settings_for(p, &p->inputs[i], "t", &s);
            char key[512];
            fpd_batch_settings_key(&s, key, sizeof key);
            json_decref(batch_settings_json(&s));
        }
        fpd_batch_pipeline_free(p);
    } else if (err.msg[0] == '\0') {
        abort();
    }
    free(buf);
    return 0;
}
