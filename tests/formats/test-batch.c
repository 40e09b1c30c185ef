/*
 * test-batch.c - batch pipeline files (fpd_batch_*, formats/batch.c): a pipeline
 * parsed into the values written in it (paths resolved against the file's folder,
 * defaults and overrides resolved per table, later overrides winning, checkpoint
 * patterns), the settings mapped onto the planner's and the fit's parameters,
 * errors as CONFIG with the 1-based line and column of the offending key, and
 * nothing allocated with a NULL err. The command-line side (sharding, resume,
 * reports) is tested through fpd-batch in tests/cli/test-batch.sh.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "formats/fpd-formats.h"
#include "heuristics/fpd-heuristics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char g_dir[64];

static void tmpdir_init(void) {
    strcpy(g_dir, "/tmp/fpd-batch-XXXXXX");
    cr_assert(mkdtemp(g_dir) != NULL);
    char p[128];
    snprintf(p, sizeof p, "%s/ncf_gmf.safetensors", g_dir);
    float x[8] = {0};
    struct fpd_tensor_info t = {"user_emb", FPD_DTYPE_F32, 2, {4, 2}, x, sizeof x};
    struct fpd_error err;
    cr_assert(fpd_safetensors_write(p, &t, 1, NULL, NULL, 0, 0, &err) == 0, "%s", err.msg);
}

static void tmpdir_fini(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", g_dir);
}

static enum fpd_status parse(const char *yaml, struct fpd_batch_pipeline **p, struct fpd_error *err) {
    char path[128];
    snprintf(path, sizeof path, "%s/p.yaml", g_dir);
    return fpd_batch_pipeline_parse(path, (const unsigned char *)yaml, strlen(yaml), p, err);
}

static const char *const k_pipeline = "version: 1\n"
                                      "inputs:\n"
                                      "  - ncf_gmf.safetensors\n"
                                      "output:\n"
                                      "  folder: out\n"
                                      "select:\n"
                                      "  min_rows: 2\n"
                                      "  min_bytes: 64KiB\n"
                                      "defaults:\n"
                                      "  rank: 8\n"
                                      "  epochs: 2\n"
                                      "tables:\n"
                                      "  - match: \"user_*\"\n"
                                      "    rank: 16\n"
                                      "    core_dtype: F16\n"
                                      "  - match: \"user_emb\"\n"
                                      "    rank: 12\n"
                                      "  - match: \"*\"\n"
                                      "    checkpoint: \"criteo*\"\n"
                                      "    epochs: 9\n";

Test(batch, pipeline_values_and_settings_resolution, .init = tmpdir_init, .fini = tmpdir_fini) {
    struct fpd_batch_pipeline *p = NULL;
    struct fpd_error err;
    cr_assert(eq(int, parse(k_pipeline, &p, &err), FPD_STATUS_OK), "%s (line %lld)", err.msg, (long long)err.line);
    char want[160];
    cr_assert(eq(i64, p->n_inputs, 1));
    snprintf(want, sizeof want, "%s/ncf_gmf.safetensors", g_dir);
    cr_assert_str_eq(p->inputs[0].path, want);
    cr_assert_str_eq(p->inputs[0].name, "ncf_gmf.safetensors");
    snprintf(want, sizeof want, "%s/out/ncf_gmf.fpd.safetensors", g_dir);
    cr_assert_str_eq(p->inputs[0].output, want);
    snprintf(want, sizeof want, "%s/out/report.json", g_dir);
    cr_assert_str_eq(p->report_json, want);
    cr_assert(eq(i64, p->min_rows, 2));
    cr_assert(eq(i64, p->min_bytes, 65536));
    cr_assert(eq(i64, p->n_overrides, 3));
    cr_assert(eq(i64, p->inputs[0].mark.line, 3)); /* "  - ncf_gmf..." */
    cr_assert(eq(i64, p->inputs[0].mark.column, 5));

    /* user_emb: defaults (rank 8, epochs 2), then both user overrides in order
     * (rank 16 then 12, F16); the criteo* override does not apply */
    struct fpd_batch_settings s;
    fpd_batch_settings_for(p, &p->inputs[0], "user_emb", &s);
    cr_assert(eq(i64, s.rank, 12));
    cr_assert(eq(i64, s.epochs, 2));
    cr_assert(eq(int, s.core_dtype, FPD_DTYPE_F16));
    cr_assert(s.set & FPD_BATCH_SET_RANK);
    /* another table: defaults only */
    struct fpd_batch_settings d;
    fpd_batch_settings_for(p, &p->inputs[0], "item_emb", &d);
    cr_assert(eq(i64, d.rank, 8));
    cr_assert(false == (bool)(d.set & FPD_BATCH_SET_CORE_DTYPE));

    /* onto the planner's and the fit's parameters: set fields only */
    struct fpd_plan_params pp = fpd_plan_default_params();
    struct fpd_fit_params fp = fpd_fit_default_params();
    const struct fpd_fit_params fp0 = fp;
    int64_t rq = 200;
    fpd_batch_settings_apply(&s, &pp, &fp, &rq);
    cr_assert(eq(i64, pp.rank, 12));
    cr_assert(eq(int, pp.core_dtype, FPD_DTYPE_F16));
    cr_assert(eq(i64, fp.finetune_epochs, 2));
    cr_assert(eq(i64, fp.batch_rows, fp0.batch_rows));
    cr_assert(eq(i64, rq, 200));

    /* the key: equal settings, equal keys; a different rank, a different key */
    char k1[512], k2[512], k3[512];
    fpd_batch_settings_key(&s, k1, sizeof k1);
    fpd_batch_settings_key(&s, k2, sizeof k2);
    fpd_batch_settings_key(&d, k3, sizeof k3);
    cr_assert_str_eq(k1, k2);
    cr_assert(strcmp(k1, k3) != 0);
    cr_assert(strstr(k1, "r=12 ") != NULL, "%s", k1);
    fpd_batch_pipeline_free(p);
    fpd_batch_pipeline_free(NULL);
}

Test(batch, errors_name_line_and_column, .init = tmpdir_init, .fini = tmpdir_fini) {
    struct fpd_batch_pipeline *p = (struct fpd_batch_pipeline *)1;
    struct fpd_error err;
    /* "ranq" on line 6, column 3 */
    const char *y = "version: 1\ninputs: [ncf_gmf.safetensors]\noutput:\n  folder: out\ndefaults:\n  ranq: 8\n";
    cr_assert(eq(int, parse(y, &p, &err), FPD_STATUS_CONFIG));
    cr_assert(p == NULL);
    cr_assert(strstr(err.msg, "unknown key 'ranq' in 'defaults' (did you mean 'rank'?)") != NULL, "%s", err.msg);
    cr_assert(eq(i64, err.line, 6));
    cr_assert(eq(i64, err.column, 3));
    /* an input that does not exist */
    y = "version: 1\ninputs: [missing.safetensors]\noutput:\n  folder: out\n";
    cr_assert(eq(int, parse(y, &p, &err), FPD_STATUS_CONFIG));
    cr_assert(eq(i64, err.line, 2));
    /* a YAML tag is refused; a NULL err is allowed */
    y = "version: 1\ninputs: [!!str ncf_gmf.safetensors]\noutput:\n  folder: out\n";
    cr_assert(eq(int, parse(y, &p, NULL), FPD_STATUS_CONFIG));
    cr_assert(eq(int, fpd_batch_pipeline_load("/nonexistent/p.yaml", &p, &err), FPD_STATUS_IO));
}

/* order_from / order_column / id_base (fpd-compress --order-from): the file resolved
 * against the YAML's folder, the column stored 0-based, per-table overrides, the
 * settings key naming them (so tables ordered differently get different passes), and
 * the errors: a missing file, a column other than 1 or 2, order_column or id_base
 * without order_from anywhere. */
Test(batch, order_from_settings_and_errors, .init = tmpdir_init, .fini = tmpdir_fini) {
    char f[128];
    snprintf(f, sizeof f, "%s/x.tsv", g_dir);
    FILE *fp = fopen(f, "w");
    cr_assert(fp != NULL);
    fputs("1\t2\n", fp);
    fclose(fp);
    struct fpd_batch_pipeline *p = NULL;
    struct fpd_error err;
    const char *y = "inputs: [ncf_gmf.safetensors]\noutput:\n  folder: out\ndefaults:\n  order_column: 2\n"
                    "tables:\n  - match: user_emb\n    order_from: x.tsv\n    id_base: 1\n";
    cr_assert(eq(int, parse(y, &p, &err), FPD_STATUS_OK), "%s (line %lld)", err.msg, (long long)err.line);
    struct fpd_batch_settings s, d;
    fpd_batch_settings_for(p, &p->inputs[0], "user_emb", &s);
    fpd_batch_settings_for(p, &p->inputs[0], "item_emb", &d);
    cr_assert_str_eq(s.order_from, f);
    cr_assert(eq(i32, s.order_column, 1));
    cr_assert(eq(i64, s.id_base, 1));
    cr_assert(d.order_from == NULL);
    cr_assert(eq(i32, d.order_column, 1));
    char k1[1024], k2[1024], want[256];
    fpd_batch_settings_key(&s, k1, sizeof k1);
    fpd_batch_settings_key(&d, k2, sizeof k2);
    snprintf(want, sizeof want, " of=%s oc=2 ib=1", f);
    cr_assert(strstr(k1, want) != NULL, "%s", k1);
    cr_assert(strstr(k2, " of=") == NULL, "%s", k2);
    fpd_batch_pipeline_free(p);

    static const struct {
        const char *yaml, *msg;
        int64_t line, column;
    } bad[] = {
        {"inputs: [ncf_gmf.safetensors]\noutput:\n  folder: out\ndefaults:\n  order_from: nope.tsv\n",
         "'order_from' file '", 5, 15},
        {"inputs: [ncf_gmf.safetensors]\noutput:\n  folder: out\ndefaults:\n  order_from: x.tsv\n  order_column: 3\n",
         "'order_column' must be 1 or 2", 6, 17},
        {"inputs: [ncf_gmf.safetensors]\noutput:\n  folder: out\ndefaults:\n  id_base: -1\n",
         "'id_base' must be an integer >= 0", 5, 12},
        {"inputs: [ncf_gmf.safetensors]\noutput:\n  folder: out\ntables:\n  - match: a\n    order_column: 2\n",
         "'order_column' goes with 'order_from'", 6, 5},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert(eq(int, parse(bad[i].yaml, &p, &err), FPD_STATUS_CONFIG), "case %zu", i);
        cr_assert(strstr(err.msg, bad[i].msg) != NULL, "case %zu: %s", i, err.msg);
        cr_assert(eq(i64, err.line, bad[i].line), "case %zu: %s", i, err.msg);
        cr_assert(eq(i64, err.column, bad[i].column), "case %zu: %s", i, err.msg);
    }
}
