/*
 * fpd-batch - run a YAML pipeline (formats/fpd-formats.h, "Batch pipeline files",
 * parsed by the library) of fpd-compress jobs: many checkpoints, table selection
 * rules, per-table settings, one report (JSON with every table of every
 * checkpoint, and a Markdown summary).
 *
 * Unit of work: one checkpoint, i.e. one output file (it holds all the tables of
 * its checkpoint). Each unit goes through compress_checkpoint() once per distinct
 * settings group of its selected tables (a pass compresses that group's tables and
 * copies the rest; later passes read the previous pass's output), writing hidden
 * intermediates ".<out>.batch-*" in the output folder; the last pass's file is
 * checksummed, its state record written, and only then renamed onto the output.
 *
 * Resume: a state record "<folder>/.fpd-batch/<out>.state.json" holds the output's
 * size and FNV-1a 64 checksum, a fingerprint of what produced it (input name, size
 * and mtime; every table's selection and settings; the suffix) and the unit's
 * report. A unit is done when its output exists, has the recorded size and
 * checksum, opens as safetensors, and the fingerprint is unchanged; done units are
 * not redone. An output without a record was not made by this pipeline: refused
 * before any work unless --force.
 *
 * Shards: --shard I/N runs the units whose FNV-1a 64 hash of the output file name
 * (mixed, modulo N) is I-1: stable across machines, list order and working folders,
 * so a Slurm job array or GNU parallel spreads a pipeline over machines. A unit is
 * locked (flock on "<folder>/.fpd-batch/<out>.lock") while it runs, so overlapping
 * runs skip it instead of doing it twice.
 *
 * Interruption: SIGINT/SIGTERM stop the current fit; the unit's intermediates are
 * removed and the run exits 128 + signal; finished outputs stay. After kill -9 the output
 * is either absent or complete (it only ever appears by rename); leftover
 * intermediates and temporary files of a unit are removed when that unit runs next.
 *
 * Exit status: 0 ok, 1 a unit failed, 2 usage or pipeline error (nothing was done),
 * 3 device: cuda without a CUDA device, 128 + signal when interrupted (130 SIGINT,
 * 143 SIGTERM).
 */
#include "tools/batch.h"
#include "tools/compress.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <getopt.h>
#include <jansson.h>
#include <locale.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define STATE_DIR ".fpd-batch"
#define STATE_SCHEMA "fpd-batch-state/1"

static void usage(FILE *f) {
    fprintf(f,
            "Usage: fpd-batch [options] PIPELINE.yaml\n"
            "Run a compression pipeline: many checkpoints, selection rules, per-table settings, one report.\n"
            "\n"
            "The pipeline (YAML; see samples/pipeline.yaml) lists inputs (paths and glob patterns),\n"
            "output folder and suffix, report files, 'select' rules (include/exclude name patterns,\n"
            "min_rows, min_bytes, largest K), 'defaults' and per-table 'tables' overrides (rank, terms,\n"
            "cores, core_dtype, min_ratio, budget, ratio, max_error, epochs, batch_rows, learning_rate,\n"
            "seed, backfit_sweeps, backfit_tol, recall_queries, row_freq, free_coords, free_dtype,\n"
            "order_from, order_column, id_base, device, compress). Relative paths are relative to\n"
            "the pipeline file.\n"
            "The whole file is validated before any work; errors give FILE:LINE:COLUMN.\n"
            "\n"
            "A finished output (recorded size and checksum in FOLDER/.fpd-batch/) is not redone, so an\n"
            "interrupted run continues where it stopped. One unit of work = one checkpoint's output.\n"
            "\n"
            "Options:\n"
            "      --check          validate the pipeline and print the plan; do nothing\n"
            "      --shard I/N      run only shard I of N (1 <= I <= N), by a stable hash of each\n"
            "                       output's file name (for job arrays: --shard $SLURM_ARRAY_TASK_ID/N)\n"
            "      --report-only    only rewrite the reports from the finished outputs\n"
            "  -k, --keep-going     continue with the next checkpoint after a failure\n"
            "  -f, --force          replace outputs that this pipeline did not write\n"
            "      --json           print the report (schema \"fpd-batch/1\") as JSON on stdout; with\n"
            "                       --check, the plan (schema \"fpd-batch-plan/1\")\n"
            "      --progress       show progress on stderr even when it is not a terminal\n"
            "      --no-progress    never show progress\n"
            "  -q, --quiet          print nothing on stdout (errors still go to stderr)\n"
            "  -h, --help           this help\n"
            "      --version        version and build features\n"
            "\n"
            "Exit status: 0 ok, 1 a checkpoint failed, 2 usage or pipeline error (nothing done),\n"
            "3 device: cuda requested but unavailable, 130/143 interrupted by SIGINT/SIGTERM (finished\n"
            "outputs are kept).\n"
            "Example: fpd-batch samples/pipeline.yaml --shard 2/4\n");
}

/* ------------------------------------------------------------ plan */

struct table_plan {
    char *name;
    int64_t rows, dim;
    enum fpd_dtype dtype;
    size_t nbytes;
    bool selected;
    char reason[288];
    struct fpd_batch_settings settings;   /* as compressed (targets resolved to r, p, k)   */
    struct fpd_batch_settings shown;      /* as the pipeline gives them (for the reports) */
    char key[512];
    int group; /* index of its pass (selected tables) */
    struct fpd_plan plan; /* predicted by the planner (selected tables) */
    const struct fpd_device_choice *dev; /* where it ran (this run; NULL: not run) */
};

enum unit_state { UNIT_TODO, UNIT_DONE, UNIT_STALE, UNIT_FOREIGN };

struct unit {
    const struct fpd_batch_input *in;
    bool mine;                    /* in this shard                         */
    struct table_plan *tables;
    int64_t n_tables;
    int n_groups;
    uint64_t fingerprint;
    size_t input_bytes;           /* sum of the input's tensor bytes       */
    enum unit_state state;
    char state_why[160];
    char error[512];              /* why it failed (this run), from the pass's error  */
    json_t *record;               /* the state record (done units)        */
    /* this run */
    bool ran, failed, busy;
    double seconds;
};

static const char *const state_name[] = {"to do", "done", "stale", "foreign"};

static char *state_path(const struct fpd_batch_pipeline *p, const struct unit *u, const char *ext) {
    char *s = NULL;
    if (asprintf(&s, "%s/%s/%s%s", p->folder, STATE_DIR, u->in->output_base, ext) < 0) return NULL;
    return s;
}

static bool match_any(char *const *pats, int64_t n, const char *name) {
    for (int64_t i = 0; i < n; i++)
        if (fnmatch(pats[i], name, 0) == 0) return true;
    return false;
}

static int cmp_bytes_desc(const void *a, const void *b) {
    const struct table_plan *x = *(const struct table_plan *const *)a, *y = *(const struct table_plan *const *)b;
    if (x->nbytes != y->nbytes) return x->nbytes > y->nbytes ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* h extended by a file's size and modification time (unchanged: NULL path or no file). */
static uint64_t hash_file_identity(const char *path, uint64_t h) {
    struct stat fb;
    char id[96];
    if (!path || stat(path, &fb) != 0) return h;
    snprintf(id, sizeof id, "%lld.%lld.%09ld", (long long)fb.st_size, (long long)fb.st_mtim.tv_sec,
             fb.st_mtim.tv_nsec);
    return batch_fnv1a(id, strlen(id) + 1, h);
}

/* The table's order_from file reads and its ids (order_column, id_base) fit the
 * table's rows; else an error naming the input, the table and the file: a usage
 * error before any work, as fpd-compress's (compress_checkpoint checks it again). */
static bool order_fits(const struct unit *u, const struct table_plan *t) {
    struct fpd_ncf_interactions x;
    struct fpd_error e = {0};
    bool ok = fpd_ncf_interactions_load(t->settings.order_from, t->settings.id_base, &x, &e) == FPD_STATUS_OK;
    if (!ok) {
        cli_error("%s: table '%s': order_from: %s", u->in->path, t->name, e.msg);
    } else if ((t->settings.order_column ? x.n_items : x.n_users) > t->rows) {
        cli_error("%s: table '%s': order_from %s: ids up to %lld in column %d, but the table has %lld rows", u->in->path,
                  t->name, t->settings.order_from, (long long)((t->settings.order_column ? x.n_items : x.n_users) - 1),
                  (int)t->settings.order_column + 1, (long long)t->rows);
        ok = false;
    }
    fpd_ncf_interactions_free(&x);
    return ok;
}

/* Plan one unit from its input's header: the tables, their selection and groups,
 * and the fingerprint. Returns false after printing an error. */
static bool plan_unit(const struct fpd_batch_pipeline *p, struct unit *u, bool *override_used) {
    struct fpd_input ci;
    struct fpd_error err = {0};
    if (fpd_input_open(u->in->path, &ci, &err)) {
        cli_error("%s", err.msg);
        return false;
    }
    int64_t n = fpd_input_count(&ci);
    u->tables = calloc((size_t)n + 1, sizeof *u->tables);
    struct table_plan **eligible = calloc((size_t)n + 1, sizeof *eligible);
    if (!u->tables || !eligible) {
        free(eligible);
        fpd_input_free(&ci);
        cli_error("out of memory");
        return false;
    }
    int64_t n_el = 0;
    for (int64_t i = 0; i < n; i++) {
        const struct fpd_tensor_info *ti = fpd_input_tensor(&ci, i);
        u->input_bytes += ti->nbytes;
        if (!(ti->ndim == 2 && fpd_dtype_is_float(ti->dtype) && ti->shape[0] > 0 && ti->shape[1] > 0)) continue;
        struct table_plan *t = &u->tables[u->n_tables++];
        t->name = strdup(ti->name);
        if (!t->name) {
            free(eligible);
            fpd_input_free(&ci);
            cli_error("out of memory");
            return false;
        }
        t->rows = ti->shape[0];
        t->dim = ti->shape[1];
        t->dtype = ti->dtype;
        t->nbytes = ti->nbytes;
        t->group = -1;
        fpd_batch_settings_for(p, u->in, t->name, &t->settings);
        for (int64_t o = 0; o < p->n_overrides; o++) {
            const struct fpd_batch_override *ov = &p->overrides[o];
            if (fnmatch(ov->match, t->name, 0) == 0 &&
                (!ov->checkpoint || fnmatch(ov->checkpoint, u->in->name, 0) == 0 ||
                 fnmatch(ov->checkpoint, u->in->path, 0) == 0))
                override_used[o] = true;
        }
        if (t->settings.set & FPD_BATCH_SET_COMPRESS) {
            t->selected = t->settings.compress;
            snprintf(t->reason, sizeof t->reason, "%s by 'compress: %s' (line %lld)",
                     t->selected ? "selected" : "kept dense", t->selected ? "true" : "false",
                     (long long)t->settings.compress_mark.line);
        } else if (!match_any(p->include, p->n_include, t->name)) {
            snprintf(t->reason, sizeof t->reason, "not matched by select.include");
        } else if (match_any(p->exclude, p->n_exclude, t->name)) {
            snprintf(t->reason, sizeof t->reason, "matched by select.exclude");
        } else if (t->rows < p->min_rows) {
            snprintf(t->reason, sizeof t->reason, "fewer than select.min_rows = %lld rows", (long long)p->min_rows);
        } else if ((int64_t)t->nbytes < p->min_bytes) {
            snprintf(t->reason, sizeof t->reason, "smaller than select.min_bytes = %lld bytes", (long long)p->min_bytes);
        } else {
            t->selected = true;
            eligible[n_el++] = t;
        }
    }
    if (p->largest > 0 && n_el > p->largest) {
        qsort(eligible, (size_t)n_el, sizeof *eligible, cmp_bytes_desc);
        for (int64_t i = p->largest; i < n_el; i++) {
            eligible[i]->selected = false;
            snprintf(eligible[i]->reason, sizeof eligible[i]->reason, "not among the select.largest = %lld largest",
                     (long long)p->largest);
        }
    }
    free(eligible);
    /* The planner decides the shape and whether the size gain reaches min_ratio
     * (compress_checkpoint compresses named tables whatever their ratio). */
    bool plan_ok = true;
    for (int64_t i = 0; i < u->n_tables && plan_ok; i++) {
        struct table_plan *t = &u->tables[i];
        t->shown = t->settings;
        if (!t->selected) continue;
        struct compress_options co = compress_default_options();
        batch_settings_apply(&t->settings, &co);
        co.plan.min_rows = 1;
        /* max_error needs the data: the planner predicts each candidate's error */
        const struct fpd_tensor_info *ti = NULL;
        for (int64_t j = 0; j < n && !ti; j++)
            if (!strcmp(fpd_input_tensor(&ci, j)->name, t->name)) ti = fpd_input_tensor(&ci, j);
        struct fpd_table_view view = {ti ? ti->data : NULL, t->dtype, t->rows, t->dim};
        if (t->settings.set & FPD_BATCH_SET_MAX_ERROR) co.plan.table = &view;
        const bool free_auto = co.fit.free_coords == FPD_FREE_COORDS_AUTO;
        if (free_auto) { /* c per table, from the data, traded against a size or error target */
            if (!(t->settings.set & (FPD_BATCH_SET_BUDGET | FPD_BATCH_SET_RATIO | FPD_BATCH_SET_MAX_ERROR))) {
                cli_error("%s: table '%s': 'free_coords: auto' needs a target to trade the free coordinates "
                          "against: set budget, ratio or max_error (or a count: free_coords: C)",
                          u->in->path, t->name);
                plan_ok = false;
                break;
            }
            co.plan.free_coords = FPD_FREE_COORDS_AUTO;
            co.plan.table = &view;
        }
        if (fpd_plan_table(t->rows, t->dim, t->dtype, &co.plan, &t->plan, &err)) {
            cli_error("%s: table '%s': %s", u->in->path, t->name, err.msg);
            plan_ok = false;
            break;
        }
        if (!t->plan.compress) {
            t->selected = false;
            snprintf(t->reason, sizeof t->reason, "%s", t->plan.reason);
            continue;
        }
        if (co.free_rowwise && !free_auto && co.fit.free_coords < 1) { /* as fpd-compress --free-dtype */
            cli_error("%s: table '%s': 'free_dtype: %s' stores the free coordinates' E: it needs free "
                      "coordinates (free_coords: C or auto)",
                      u->in->path, t->name, fpd_free_kind_name(co.free_kind));
            plan_ok = false;
            break;
        }
        if (co.fit.free_coords > t->dim) { /* a usage error before any work, as fpd-compress's */
            cli_error("%s: tensor '%s' has dimension %lld; %lld free coordinates per row need at most that",
                      u->in->path, t->name, (long long)t->dim, (long long)co.fit.free_coords);
            plan_ok = false;
            break;
        }
        if (!free_auto && co.fit.free_coords > 0) { /* the plan sized the cores: E and P come on top, as stored */
            t->plan.bytes_after += fpd_free_coords_bytes(t->rows, t->dim, co.fit.free_coords, co.plan.core_dtype,
                                                         co.free_rowwise, co.free_kind);
            t->plan.ratio = (double)t->plan.bytes_before / (double)t->plan.bytes_after;
        }
        if (t->settings.order_from && !order_fits(u, t)) {
            plan_ok = false;
            break;
        }
        if (t->settings.set & (FPD_BATCH_SET_BUDGET | FPD_BATCH_SET_RATIO | FPD_BATCH_SET_MAX_ERROR)) {
            /* the chosen (r, p, k), so compress_checkpoint plans the same shape */
            const struct fpd_layer_shape *ps = &t->plan.shape;
            int64_t r = 1;
            for (int32_t m = 1; m < ps->k; m++) r = ps->ranks[m] > r ? ps->ranks[m] : r;
            t->settings.rank = r;
            t->settings.terms = ps->terms;
            t->settings.cores = ps->k;
            t->settings.set |= FPD_BATCH_SET_RANK | FPD_BATCH_SET_TERMS | FPD_BATCH_SET_CORES;
            if (free_auto) t->settings.free_coords = t->plan.free_coords; /* the sizes above include it */
            t->settings.set &= ~(unsigned)(FPD_BATCH_SET_BUDGET | FPD_BATCH_SET_RATIO | FPD_BATCH_SET_MAX_ERROR);
        }
    }
    fpd_input_free(&ci);
    if (!plan_ok) return false;
    /* groups, in table order, and the fingerprint */
    struct stat sb;
    stat(u->in->path, &sb);
    char head[512];
    snprintf(head, sizeof head, "fpd-batch/1\n%s\n%lld\n%lld.%09ld\n%s\n%s\n", u->in->name,
             (long long)sb.st_size, (long long)sb.st_mtim.tv_sec, sb.st_mtim.tv_nsec, p->suffix, fpd_version());
    uint64_t h = batch_fnv1a(head, strlen(head), BATCH_FNV_INIT);
    for (int64_t i = 0; i < u->n_tables; i++) {
        struct table_plan *t = &u->tables[i];
        fpd_batch_settings_key(&t->settings, t->key, sizeof t->key);
        h = batch_fnv1a(t->name, strlen(t->name) + 1, h);
        h = batch_fnv1a(t->selected ? "1" : "0", 1, h);
        if (!t->selected) continue;
        h = batch_fnv1a(t->key, strlen(t->key) + 1, h);
        const struct fpd_layer_shape *ps = &t->plan.shape; /* the planner's choice too */
        char shp[512];
        size_t o = (size_t)snprintf(shp, sizeof shp, "k=%d p=%lld", (int)ps->k, (long long)ps->terms);
        for (int32_t m = 0; m < ps->k && o < sizeof shp; m++)
            o += (size_t)snprintf(shp + o, sizeof shp - o, " %lld,%lld,%lld", (long long)ps->row_shape[m],
                                  (long long)ps->col_shape[m], (long long)ps->ranks[m + 1]);
        h = batch_fnv1a(shp, strlen(shp) + 1, h);
        h = hash_file_identity(t->settings.row_freq, h); /* the frequencies' and the */
        h = hash_file_identity(t->settings.order_from, h); /* interactions' identity, as the input's */
        for (int64_t j = 0; j < i && t->group < 0; j++)
            if (u->tables[j].selected && strcmp(u->tables[j].key, t->key) == 0 &&
                u->tables[j].settings.device == t->settings.device) /* one pass runs on one device */
                t->group = u->tables[j].group;
        if (t->group < 0) t->group = u->n_groups++;
    }
    u->fingerprint = h;
    return true;
}

static bool in_shard(const struct unit *u, int64_t shard_i, int64_t shard_n) {
    if (shard_n <= 1) return true;
    uint64_t h = batch_fnv1a(u->in->output_base, strlen(u->in->output_base), BATCH_FNV_INIT);
    h ^= h >> 33; /* murmur3 finalizer: every bit of the hash reaches the low bits */
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return (int64_t)(h % (uint64_t)shard_n) == shard_i - 1;
}

/* ------------------------------------------------------------ files */

/* FNV-1a 64 and size of a file. */
static bool file_checksum(const char *path, uint64_t *sum, size_t *size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    uint64_t h = BATCH_FNV_INIT;
    size_t total = 0;
    static unsigned char buf[1 << 20];
    for (;;) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            close(fd);
            return false;
        }
        if (r == 0) break;
        h = batch_fnv1a(buf, (size_t)r, h);
        total += (size_t)r;
    }
    close(fd);
    *sum = h;
    *size = total;
    return true;
}

/* Write text atomically (fpd_write_file_atomic: no partial file, no temporary left
 * even after SIGKILL). */
static bool write_atomic(const char *path, const char *text) {
    struct fpd_error err;
    if (fpd_write_file_atomic(path, text, strlen(text), FPD_WRITE_OVERWRITE, &err) == FPD_STATUS_OK) return true;
    cli_error("%s", err.msg);
    return false;
}

static bool mkdir_p(const char *path) {
    char *s = strdup(path);
    if (!s) return false;
    for (char *q = s + 1; *q; q++) {
        if (*q != '/') continue;
        *q = '\0';
        mkdir(s, 0777);
        *q = '/';
    }
    bool ok = mkdir(s, 0777) == 0 || errno == EEXIST;
    struct stat sb;
    ok = ok && stat(s, &sb) == 0 && S_ISDIR(sb.st_mode);
    if (!ok) cli_error("%s: cannot create the folder: %s", path, strerror(errno));
    free(s);
    return ok;
}

/* Remove what an interrupted run of this unit can leave in the output folder:
 * ".<out>.tmp-*" (the writer's temporary), ".<out>.batch-*" (our intermediates)
 * and "..<out>.batch-*" (their temporaries). */
static void remove_leftovers(const struct fpd_batch_pipeline *p, const struct unit *u) {
    DIR *d = opendir(p->folder);
    if (!d) return;
    char a[4096], b[4096], c[4096];
    snprintf(a, sizeof a, ".%s.tmp-", u->in->output_base);
    snprintf(b, sizeof b, ".%s.batch-", u->in->output_base);
    snprintf(c, sizeof c, "..%s.batch-", u->in->output_base);
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *nm = e->d_name;
        if (strncmp(nm, a, strlen(a)) && strncmp(nm, b, strlen(b)) && strncmp(nm, c, strlen(c))) continue;
        char *full = NULL;
        if (asprintf(&full, "%s/%s", p->folder, nm) >= 0) {
            unlink(full);
            free(full);
        }
    }
    closedir(d);
}

/* ------------------------------------------------------------ state */

static json_t *load_record(const struct fpd_batch_pipeline *p, const struct unit *u) {
    char *path = state_path(p, u, ".state.json");
    if (!path) return NULL;
    json_t *j = json_load_file(path, 0, NULL);
    free(path);
    if (j && !(json_is_object(j) && json_is_string(json_object_get(j, "schema")) &&
               !strcmp(json_string_value(json_object_get(j, "schema")), STATE_SCHEMA))) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

static void hex64(uint64_t v, char *buf) { snprintf(buf, 17, "%016llx", (unsigned long long)v); }

/* Decide a unit's state; `verify` also checks the output's checksum. */
static void check_state(const struct fpd_batch_pipeline *p, struct unit *u, bool verify) {
    json_decref(u->record);
    u->record = load_record(p, u);
    bool out_exists = cli_exists(u->in->output);
    u->state_why[0] = '\0';
    if (!u->record) {
        u->state = out_exists ? UNIT_FOREIGN : UNIT_TODO;
        if (out_exists) snprintf(u->state_why, sizeof u->state_why, "output exists without a state record");
        return;
    }
    char fp[17], sum[17];
    hex64(u->fingerprint, fp);
    const char *rfp = json_string_value(json_object_get(u->record, "fingerprint"));
    const char *rsum = json_string_value(json_object_get(u->record, "output_fnv1a64"));
    json_int_t rsize = json_integer_value(json_object_get(u->record, "output_size"));
    u->state = UNIT_STALE;
    struct stat sb;
    if (!out_exists || stat(u->in->output, &sb) != 0) {
        snprintf(u->state_why, sizeof u->state_why, "output missing");
        return;
    }
    if (!rfp || strcmp(rfp, fp) != 0) {
        snprintf(u->state_why, sizeof u->state_why, "input or settings changed since it was written");
        return;
    }
    if ((json_int_t)sb.st_size != rsize) {
        snprintf(u->state_why, sizeof u->state_why, "output size %lld differs from the recorded %lld",
                 (long long)sb.st_size, (long long)rsize);
        return;
    }
    if (verify) {
        uint64_t h;
        size_t sz;
        if (!file_checksum(u->in->output, &h, &sz) || (hex64(h, sum), !rsum || strcmp(rsum, sum) != 0)) {
            snprintf(u->state_why, sizeof u->state_why, "output checksum differs from the recorded one");
            return;
        }
        struct fpd_safetensors *st = NULL;
        struct fpd_error err = {0};
        if (fpd_safetensors_open(u->in->output, &st, &err)) {
            snprintf(u->state_why, sizeof u->state_why, "output header does not verify");
            return;
        }
        fpd_safetensors_free(st);
    }
    u->state = UNIT_DONE;
}

/* ------------------------------------------------------------ running a unit */

static json_t *find_table_json(json_t *report, const char *name) {
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(report, "tables"), i, t) {
        if (!strcmp(json_string_value(json_object_get(t, "name")) ? json_string_value(json_object_get(t, "name")) : "",
                    name))
            return t;
    }
    return NULL;
}

static size_t tensor_bytes_of(const char *path) {
    struct fpd_safetensors *st = NULL;
    struct fpd_error err = {0};
    if (fpd_safetensors_open(path, &st, &err)) return 0;
    size_t n = 0;
    for (int64_t i = 0; i < fpd_safetensors_count(st); i++) n += fpd_safetensors_tensor(st, i)->nbytes;
    fpd_safetensors_free(st);
    return n;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A unit with no table to compress: its output is a copy (a .npy input becomes a
 * one-tensor safetensors file named after the file, as fpd-compress names it). */
static int copy_checkpoint(const char *in_path, const char *out_path) {
    struct fpd_input ci;
    struct fpd_error err = {0};
    if (fpd_input_open(in_path, &ci, &err)) {
        cli_error("%s", err.msg);
        return CLI_EXIT_FAILURE;
    }
    int64_t n = fpd_input_count(&ci), nm = ci.st ? fpd_safetensors_metadata_count(ci.st) : 0;
    struct fpd_tensor_info *t = calloc((size_t)n + 1, sizeof *t);
    const char **k = calloc((size_t)nm + 1, sizeof *k), **v = calloc((size_t)nm + 1, sizeof *v);
    int rc = CLI_EXIT_FAILURE;
    if (!t || !k || !v) {
        cli_error("out of memory");
        goto done;
    }
    for (int64_t i = 0; i < n; i++) t[i] = *fpd_input_tensor(&ci, i);
    for (int64_t i = 0; i < nm; i++) fpd_safetensors_metadata_at(ci.st, i, &k[i], &v[i]);
    if (fpd_safetensors_write(out_path, t, n, k, v, nm, FPD_WRITE_OVERWRITE, &err)) {
        cli_error("%s", err.msg);
        goto done;
    }
    rc = CLI_EXIT_OK;
done:
    free(t);
    free(k);
    free(v);
    fpd_input_free(&ci);
    return rc;
}

/* Run one unit (the lock is held). Returns a CLI exit code (128 + signal: interrupted). */
/* The backends of device: auto, cpu and cuda, each opened on first use and kept
 * for the run (closed by close_devices). device: cuda was checked at load. auto
 * without engine work (no finetuning, no ALS) is the CPU: CUDA is not probed for
 * nothing. */
static struct fpd_device_choice g_dev[3];
static bool g_dev_open[3];

static struct fpd_device_choice *device_for(const struct fpd_batch_settings *s, bool engine_work) {
    int k = (int)s->device;
    if (k == FPD_BATCH_DEVICE_AUTO && !engine_work) k = FPD_BATCH_DEVICE_CPU;
    if (!g_dev_open[k]) {
        struct fpd_batch_settings as = *s;
        as.device = (enum fpd_batch_device)k;
        struct fpd_device d = batch_settings_device(&as);
        cli_device_open_or_exit(&d, "device:", false, &g_dev[k]);
        g_dev_open[k] = true;
    }
    return &g_dev[k];
}

static void close_devices(void) {
    for (int k = 0; k < 3; k++)
        if (g_dev_open[k]) fpd_device_close(&g_dev[k]);
}

/* Why a compressed table has its (r, p, k), in the pipeline's words: the library's
 * reason would name the fixed rank and terms the planner's choice was passed as. */
static void batch_why(const struct table_plan *t, char *why, size_t n) {
    const struct fpd_batch_settings *s = &t->shown;
    if (s->set & FPD_BATCH_SET_MAX_ERROR)
        snprintf(why, n, "max_error %g: the planner's smallest candidate predicted to meet it (%.4f)", s->max_error,
                 t->plan.predicted_error);
    else if (s->set & FPD_BATCH_SET_BUDGET)
        snprintf(why, n, "budget %lld bytes: the planner's largest candidate within it", (long long)s->budget);
    else if (s->set & FPD_BATCH_SET_RATIO)
        snprintf(why, n, "ratio %g: the planner's largest candidate at least this much smaller", s->ratio);
    else if (s->set & (FPD_BATCH_SET_RANK | FPD_BATCH_SET_TERMS | FPD_BATCH_SET_CORES))
        snprintf(why, n, "rank, terms or cores set in the pipeline");
    else
        snprintf(why, n, "the planner's default candidate (fpd-batch writes FPD tables)");
}

static int run_unit(const struct fpd_batch_pipeline *p, struct unit *u, int progress_mode) {
    int rc = CLI_EXIT_FAILURE;
    double t0 = now_s();
    int n_pass = u->n_groups > 0 ? u->n_groups : 1;
    json_t **reports = calloc((size_t)n_pass, sizeof *reports);
    char **names = calloc((size_t)u->n_tables + 1, sizeof *names);
    char *prev = NULL, *cur = NULL, *record_path = NULL;
    json_t *rec = NULL;
    if (!reports || !names) {
        cli_error("out of memory");
        goto done;
    }
    remove_leftovers(p, u);
    /* per table of a pass: row_freq files, and order_from files with their columns */
    const char **rf_tables = calloc(2 * ((size_t)u->n_tables + 1), sizeof *rf_tables);
    const char **rf_files = calloc(2 * ((size_t)u->n_tables + 1), sizeof *rf_files);
    int32_t *ord_columns = calloc((size_t)u->n_tables + 1, sizeof *ord_columns);
    if (!rf_tables || !rf_files || !ord_columns) {
        free(rf_tables);
        free(rf_files);
        free(ord_columns);
        cli_error("out of memory");
        goto done;
    }
    const char **ord_tables = rf_tables + u->n_tables + 1, **ord_files = rf_files + u->n_tables + 1;
    for (int g = 0; g < n_pass; g++) {
        struct compress_options co = compress_default_options();
        co.force = true;
        co.interrupt_said_by_caller = true; /* run()'s message says what was kept */
        co.progress_mode = progress_mode;
        co.tables = names;
        co.n_tables = 0;
        co.row_freq_tables = rf_tables;
        co.row_freq_files = rf_files;
        co.n_row_freq = 0;
        co.order_tables = ord_tables;
        co.order_files = ord_files;
        co.order_columns = ord_columns;
        co.n_order = 0;
        for (int64_t i = 0; i < u->n_tables; i++) {
            struct table_plan *t = &u->tables[i];
            if (!t->selected || t->group != g) continue;
            names[co.n_tables++] = t->name;
            batch_settings_apply(&t->settings, &co);
            /* a pass shares its device (tables are grouped by it and by epochs) */
            t->dev = device_for(&t->settings, co.fit.finetune_epochs > 0 || co.fit.als_sweeps > 0);
            co.fit.backend = t->dev->backend;
            if (t->settings.row_freq) {
                rf_tables[co.n_row_freq] = t->name;
                rf_files[co.n_row_freq++] = t->settings.row_freq;
            }
            if (t->settings.order_from) { /* a pass shares id_base: it is in the settings key */
                ord_tables[co.n_order] = t->name;
                ord_columns[co.n_order] = t->settings.order_column;
                ord_files[co.n_order++] = t->settings.order_from;
                co.init_id_base = t->settings.id_base;
            }
        }
        if (g == n_pass - 1) {
            if (asprintf(&cur, "%s/.%s.batch-part", p->folder, u->in->output_base) < 0) cur = NULL;
        } else if (asprintf(&cur, "%s/.%s.batch-pass%d", p->folder, u->in->output_base, g + 1) < 0) {
            cur = NULL;
        }
        if (!cur) {
            cli_error("out of memory");
            rc = CLI_EXIT_FAILURE;
            break;
        }
        if (u->n_groups == 0) rc = copy_checkpoint(u->in->path, cur);
        else rc = compress_checkpoint(prev ? prev : u->in->path, cur, &co, &reports[g]);
        if (prev) unlink(prev);
        free(prev);
        prev = cur;
        cur = NULL;
        if (rc == CLI_EXIT_OK && cli_interrupted()) rc = cli_interrupt_exit_code();
        if (rc != CLI_EXIT_OK) break;
    }
    free(rf_tables);
    free(rf_files);
    free(ord_columns);
    if (rc != CLI_EXIT_OK) goto done;
    rc = CLI_EXIT_FAILURE;
    /* the unit's report: every 2-D float table, with its selection and settings */
    json_t *ur = json_object();
    json_object_set_new(ur, "input", json_string(u->in->path));
    json_object_set_new(ur, "output", json_string(u->in->output));
    json_t *tabs = json_array();
    int64_t n_comp = 0;
    for (int64_t i = 0; i < u->n_tables; i++) {
        struct table_plan *t = &u->tables[i];
        json_t *src = reports[t->selected ? t->group : 0] ? find_table_json(reports[t->selected ? t->group : 0], t->name) : NULL;
        json_t *o = src ? json_deep_copy(src) : json_object();
        if (!src) {
            json_object_set_new(o, "name", json_string(t->name));
            json_object_set_new(o, "rows", json_integer(t->rows));
            json_object_set_new(o, "dim", json_integer(t->dim));
            json_object_set_new(o, "dtype", json_string(fpd_dtype_name(t->dtype)));
            json_object_set_new(o, "compressed", json_false());
            json_object_set_new(o, "r", json_null());
            json_object_set_new(o, "p", json_null());
            json_object_set_new(o, "bytes_before", json_integer((json_int_t)t->nbytes));
            json_object_set_new(o, "bytes_after", json_integer((json_int_t)t->nbytes));
            json_object_set_new(o, "ratio", json_real(1.0));
            json_object_set_new(o, "rel_error", json_real(0.0));
        }
        json_object_set_new(o, "selected", json_boolean(t->selected));
        if (!t->selected) json_object_set_new(o, "reason", json_string(t->reason));
        bool comp = json_is_true(json_object_get(o, "compressed"));
        n_comp += comp;
        if (comp) {
            json_object_set_new(o, "device", json_string(t->dev ? t->dev->used : "cpu"));
            char why[200];
            batch_why(t, why, sizeof why);
            json_object_set_new(o, "why", json_string(why));
            if (t->shown.set & FPD_BATCH_SET_MAX_ERROR) { /* the target is checked against the fit */
                const double re = json_number_value(json_object_get(o, "rel_error"));
                const bool met = re <= t->shown.max_error;
                json_object_set_new(o, "max_error", json_real(t->shown.max_error));
                json_object_set_new(o, "meets_max_error", json_boolean(met));
                if (!met)
                    cli_warn("%s: table '%s': relative error %.4f is above its max_error %g (predicted %.4f; "
                             "a larger rank or terms, or free_coords, fits closer)",
                             u->in->path, t->name, re, t->shown.max_error, t->plan.predicted_error);
            }
        }
        json_object_set_new(o, "settings", batch_settings_json(&t->shown));
        json_array_append_new(tabs, o);
    }
    json_object_set_new(ur, "tables", tabs);
    size_t after = tensor_bytes_of(prev);
    json_t *tot = json_object();
    json_object_set_new(tot, "tables_compressed", json_integer(n_comp));
    json_object_set_new(tot, "bytes_before", json_integer((json_int_t)u->input_bytes));
    json_object_set_new(tot, "bytes_after", json_integer((json_int_t)after));
    json_object_set_new(tot, "ratio", json_real(after ? (double)u->input_bytes / (double)after : 1.0));
    json_object_set_new(ur, "totals", tot);
    u->seconds = now_s() - t0;
    json_object_set_new(ur, "seconds", json_real(u->seconds));
    /* state record first, then the rename: an output never exists without one */
    uint64_t h;
    size_t size;
    if (!file_checksum(prev, &h, &size)) {
        json_decref(ur);
        cli_error("%s: cannot read back: %s", prev, strerror(errno));
        goto done;
    }
    char fp[17], sum[17], when[32];
    hex64(u->fingerprint, fp);
    hex64(h, sum);
    time_t now = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    json_object_set_new(ur, "finished", json_string(when));
    rec = json_object();
    json_object_set_new(rec, "schema", json_string(STATE_SCHEMA));
    json_object_set_new(rec, "input", json_string(u->in->path));
    json_object_set_new(rec, "output", json_string(u->in->output_base));
    json_object_set_new(rec, "output_size", json_integer((json_int_t)size));
    json_object_set_new(rec, "output_fnv1a64", json_string(sum));
    json_object_set_new(rec, "fingerprint", json_string(fp));
    json_object_set_new(rec, "report", ur);
    char *text = json_dumps(rec, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    record_path = state_path(p, u, ".state.json");
    bool ok = text && record_path && write_atomic(record_path, text);
    free(text);
    if (!ok) goto done;
    if (cli_interrupted()) {
        unlink(record_path);
        rc = cli_interrupt_exit_code();
        goto done;
    }
    if (rename(prev, u->in->output) != 0) {
        cli_error("%s: cannot move the finished file into place: %s", u->in->output, strerror(errno));
        unlink(record_path);
        goto done;
    }
    int dfd = open(p->folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    json_decref(u->record);
    u->record = rec;
    rec = NULL;
    u->state = UNIT_DONE;
    rc = CLI_EXIT_OK;
done:
    if (prev && rc != CLI_EXIT_OK) unlink(prev);
    if (rc != CLI_EXIT_OK) remove_leftovers(p, u);
    free(prev);
    free(cur);
    free(record_path);
    json_decref(rec);
    for (int g = 0; reports && g < n_pass; g++) json_decref(reports[g]);
    free(reports);
    free(names);
    return rc;
}

/* ------------------------------------------------------------ reports */

static const char *jstr(const json_t *o, const char *k) {
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static json_t *build_report(const struct fpd_batch_pipeline *p, struct unit *units, int64_t n, int64_t shard_i,
                            int64_t shard_n) {
    json_t *r = json_object();
    json_object_set_new(r, "schema", json_string("fpd-batch/1"));
    json_object_set_new(r, "pipeline", json_string(p->file));
    json_object_set_new(r, "fpd_version", json_string(fpd_version()));
    char sh[64];
    snprintf(sh, sizeof sh, "%lld/%lld", (long long)shard_i, (long long)shard_n);
    json_object_set_new(r, "shard", shard_n > 1 ? json_string(sh) : json_null());
    json_t *arr = json_array();
    int64_t done = 0, pending = 0, failed = 0, n_comp = 0, n_tables = 0;
    json_int_t before = 0, after = 0;
    for (int64_t i = 0; i < n; i++) {
        struct unit *u = &units[i];
        json_t *c;
        json_t *rep = u->record ? json_object_get(u->record, "report") : NULL;
        bool ok = u->state == UNIT_DONE && rep;
        if (ok) {
            c = json_deep_copy(rep);
            json_object_set_new(c, "input", json_string(u->in->path)); /* as this run sees them */
            json_object_set_new(c, "output", json_string(u->in->output));
            json_object_set_new(c, "status", json_string("done"));
            json_object_set_new(c, "this_run", json_boolean(u->ran));
            done++;
            json_t *tot = json_object_get(c, "totals");
            n_comp += json_integer_value(json_object_get(tot, "tables_compressed"));
            before += json_integer_value(json_object_get(tot, "bytes_before"));
            after += json_integer_value(json_object_get(tot, "bytes_after"));
            n_tables += (int64_t)json_array_size(json_object_get(c, "tables"));
        } else {
            c = json_object();
            json_object_set_new(c, "input", json_string(u->in->path));
            json_object_set_new(c, "output", json_string(u->in->output));
            json_object_set_new(c, "status", json_string(u->failed ? "failed" : "pending"));
            if (u->failed) json_object_set_new(c, "error", json_string(u->error));
            if (u->failed) failed++;
            else pending++;
        }
        json_array_append_new(arr, c);
    }
    json_object_set_new(r, "checkpoints", arr);
    json_t *tot = json_object();
    json_object_set_new(tot, "checkpoints", json_integer(n));
    json_object_set_new(tot, "done", json_integer(done));
    json_object_set_new(tot, "pending", json_integer(pending));
    json_object_set_new(tot, "failed", json_integer(failed));
    json_object_set_new(tot, "tables", json_integer(n_tables));
    json_object_set_new(tot, "tables_compressed", json_integer(n_comp));
    json_object_set_new(tot, "bytes_before", json_integer(before));
    json_object_set_new(tot, "bytes_after", json_integer(after));
    json_object_set_new(tot, "ratio", json_real(after ? (double)before / (double)after : 1.0));
    json_object_set_new(r, "totals", tot);
    return r;
}

/* Markdown cell text: '|' escaped. */
static void md_cell(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '|') fputs("\\|", f);
        else if (*s == '\n') fputc(' ', f);
        else fputc(*s, f);
    }
}

static char *build_markdown(const json_t *r) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return NULL;
    char b1[32], b2[32];
    fprintf(f, "# fpd-batch report: ");
    md_cell(f, jstr(r, "pipeline"));
    fprintf(f, "\n\n");
    fprintf(f, "| checkpoint | table | shape | dtype | r | p | k | before | after | ratio | rel. error | cos mean | "
               "status |\n");
    fprintf(f, "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n");
    size_t i, j;
    json_t *c, *t;
    json_array_foreach(json_object_get(r, "checkpoints"), i, c) {
        const char *in = jstr(c, "input");
        const char *base = strrchr(in, '/') ? strrchr(in, '/') + 1 : in;
        const char *status = jstr(c, "status");
        if (strcmp(status, "done") != 0) {
            fprintf(f, "| ");
            md_cell(f, base);
            fprintf(f, " | | | | | | | | | | | | %s", status);
            if (json_string_value(json_object_get(c, "error"))) {
                fprintf(f, ": ");
                md_cell(f, jstr(c, "error"));
            }
            fprintf(f, " |\n");
            continue;
        }
        json_array_foreach(json_object_get(c, "tables"), j, t) {
            bool comp = json_is_true(json_object_get(t, "compressed"));
            fprintf(f, "| ");
            md_cell(f, base);
            fprintf(f, " | ");
            md_cell(f, jstr(t, "name"));
            fprintf(f, " | %lldx%lld | %s | ", (long long)json_integer_value(json_object_get(t, "rows")),
                    (long long)json_integer_value(json_object_get(t, "dim")), jstr(t, "dtype"));
            if (comp)
                fprintf(f, "%lld | %lld | %lld | ", (long long)json_integer_value(json_object_get(t, "r")),
                        (long long)json_integer_value(json_object_get(t, "p")),
                        (long long)json_integer_value(json_object_get(t, "k")));
            else
                fprintf(f, "- | - | - | ");
            fprintf(f, "%s | %s | %.1fx | ",
                    cli_bytes((size_t)json_integer_value(json_object_get(t, "bytes_before")), b1, sizeof b1),
                    cli_bytes((size_t)json_integer_value(json_object_get(t, "bytes_after")), b2, sizeof b2),
                    json_number_value(json_object_get(t, "ratio")));
            if (comp && json_is_false(json_object_get(t, "meets_max_error")))
                fprintf(f, "%.4f | %.4f | compressed, above max_error %g |\n",
                        json_number_value(json_object_get(t, "rel_error")),
                        json_number_value(json_object_get(t, "cos_mean")),
                        json_number_value(json_object_get(t, "max_error")));
            else if (comp)
                fprintf(f, "%.4f | %.4f | compressed |\n", json_number_value(json_object_get(t, "rel_error")),
                        json_number_value(json_object_get(t, "cos_mean")));
            else {
                fprintf(f, "- | - | dense: ");
                md_cell(f, jstr(t, "reason"));
                fprintf(f, " |\n");
            }
        }
    }
    const json_t *tot = json_object_get(r, "totals");
    fprintf(f, "\n**Total:** %lld checkpoint(s) (%lld done, %lld pending, %lld failed), %lld of %lld table(s) "
               "compressed, %s -> %s (%.2fx).\n",
            (long long)json_integer_value(json_object_get(tot, "checkpoints")),
            (long long)json_integer_value(json_object_get(tot, "done")),
            (long long)json_integer_value(json_object_get(tot, "pending")),
            (long long)json_integer_value(json_object_get(tot, "failed")),
            (long long)json_integer_value(json_object_get(tot, "tables_compressed")),
            (long long)json_integer_value(json_object_get(tot, "tables")),
            cli_bytes((size_t)json_integer_value(json_object_get(tot, "bytes_before")), b1, sizeof b1),
            cli_bytes((size_t)json_integer_value(json_object_get(tot, "bytes_after")), b2, sizeof b2),
            json_number_value(json_object_get(tot, "ratio")));
    fclose(f);
    return text;
}

static bool write_reports(const struct fpd_batch_pipeline *p, const json_t *r) {
    char *dir1 = strdup(p->report_json), *dir2 = strdup(p->report_md);
    bool ok = dir1 && dir2;
    if (ok && strrchr(dir1, '/')) *strrchr(dir1, '/') = '\0', ok = mkdir_p(dir1);
    if (ok && strrchr(dir2, '/')) *strrchr(dir2, '/') = '\0', ok = mkdir_p(dir2);
    free(dir1);
    free(dir2);
    char *js = json_dumps(r, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    char *md = build_markdown(r);
    if (js) {
        size_t l = strlen(js);
        char *j2 = realloc(js, l + 2);
        if (j2) {
            js = j2;
            js[l] = '\n';
            js[l + 1] = '\0';
        }
    }
    ok = ok && js && md && write_atomic(p->report_json, js) && write_atomic(p->report_md, md);
    free(js);
    free(md);
    return ok;
}

/* ------------------------------------------------------------ main */

static void print_plan(const struct unit *units, int64_t n) {
    char b[32], b2[32], rs[96], cs[96];
    for (int64_t i = 0; i < n; i++) {
        const struct unit *u = &units[i];
        printf("%s -> %s [%s%s%s]\n", u->in->path, u->in->output, u->mine ? state_name[u->state] : "other shard",
               u->state_why[0] && u->mine ? ": " : "", u->mine ? u->state_why : "");
        for (int64_t t = 0; t < u->n_tables; t++) {
            const struct table_plan *tp = &u->tables[t];
            printf("  %-28s %lldx%lld %-4s %10s  ", tp->name, (long long)tp->rows, (long long)tp->dim,
                   fpd_dtype_name(tp->dtype), cli_bytes(tp->nbytes, b, sizeof b));
            if (!tp->selected) {
                printf("dense: %s\n", tp->reason);
                continue;
            }
            const struct fpd_layer_shape *s = &tp->plan.shape;
            int64_t r = 1;
            for (int32_t m = 1; m < s->k; m++) r = s->ranks[m] > r ? s->ranks[m] : r;
            struct compress_options co = compress_default_options();
            batch_settings_apply(&tp->settings, &co);
            char fc[48] = "";
            if (co.fit.free_coords > 0) snprintf(fc, sizeof fc, " c=%lld", (long long)co.fit.free_coords);
            printf("compress (pass %d): r=%lld p=%lld k=%d%s rows %s cols %s, -> %s (%.1fx), %s cores, %lld epoch(s)%s%s",
                   tp->group + 1, (long long)r, (long long)s->terms, (int)s->k, fc, cli_shape(s->row_shape, s->k, rs, sizeof rs),
                   cli_shape(s->col_shape, s->k, cs, sizeof cs), cli_bytes(tp->plan.bytes_after, b2, sizeof b2),
                   tp->plan.ratio, fpd_dtype_name(co.plan.core_dtype), (long long)co.fit.finetune_epochs,
                   tp->settings.row_freq ? ", row_freq " : "", tp->settings.row_freq ? tp->settings.row_freq : "");
            if (tp->settings.order_from)
                printf(", order_from %s (column %d, id_base %lld)", tp->settings.order_from,
                       (int)tp->settings.order_column + 1, (long long)tp->settings.id_base);
            putchar('\n');
        }
    }
}

static json_t *dims_json(const int64_t *d, int32_t n) {
    json_t *a = json_array();
    for (int32_t i = 0; i < n; i++) json_array_append_new(a, json_integer(d[i]));
    return a;
}

/* The plan of --check --json (schema "fpd-batch-plan/1"). */
static json_t *plan_json(const struct fpd_batch_pipeline *p, const struct unit *units, int64_t n, int64_t shard_i,
                         int64_t shard_n) {
    static const char *const st[] = {"todo", "done", "stale", "foreign"};
    json_t *r = json_object();
    json_object_set_new(r, "schema", json_string("fpd-batch-plan/1"));
    json_object_set_new(r, "pipeline", json_string(p->file));
    char sh[64];
    snprintf(sh, sizeof sh, "%lld/%lld", (long long)shard_i, (long long)shard_n);
    json_object_set_new(r, "shard", shard_n > 1 ? json_string(sh) : json_null());
    json_t *arr = json_array();
    for (int64_t i = 0; i < n; i++) {
        const struct unit *u = &units[i];
        json_t *c = json_object();
        json_object_set_new(c, "input", json_string(u->in->path));
        json_object_set_new(c, "output", json_string(u->in->output));
        json_object_set_new(c, "in_shard", json_boolean(u->mine));
        json_object_set_new(c, "state", u->mine ? json_string(st[u->state]) : json_null());
        if (u->mine && u->state_why[0]) json_object_set_new(c, "state_reason", json_string(u->state_why));
        json_object_set_new(c, "passes", json_integer(u->n_groups));
        json_t *tabs = json_array();
        for (int64_t t = 0; t < u->n_tables; t++) {
            const struct table_plan *tp = &u->tables[t];
            json_t *o = json_object();
            json_object_set_new(o, "name", json_string(tp->name));
            json_object_set_new(o, "rows", json_integer(tp->rows));
            json_object_set_new(o, "dim", json_integer(tp->dim));
            json_object_set_new(o, "dtype", json_string(fpd_dtype_name(tp->dtype)));
            json_object_set_new(o, "bytes", json_integer((json_int_t)tp->nbytes));
            json_object_set_new(o, "selected", json_boolean(tp->selected));
            if (tp->selected) {
                const struct fpd_layer_shape *s = &tp->plan.shape;
                int64_t rr = 1;
                for (int32_t m = 1; m < s->k; m++) rr = s->ranks[m] > rr ? s->ranks[m] : rr;
                json_object_set_new(o, "pass", json_integer(tp->group + 1));
                json_object_set_new(o, "r", json_integer(rr));
                json_object_set_new(o, "p", json_integer(s->terms));
                json_object_set_new(o, "k", json_integer(s->k));
                struct compress_options co = compress_default_options(); /* c: fixed, or planned (auto) */
                batch_settings_apply(&tp->settings, &co);
                json_object_set_new(o, "free_coords", json_integer(co.fit.free_coords));
                json_object_set_new(o, "row_shape", dims_json(s->row_shape, s->k));
                json_object_set_new(o, "col_shape", dims_json(s->col_shape, s->k));
                json_object_set_new(o, "bytes_after", json_integer((json_int_t)tp->plan.bytes_after));
                json_object_set_new(o, "ratio", json_real(tp->plan.ratio));
            } else {
                json_object_set_new(o, "reason", json_string(tp->reason));
            }
            json_object_set_new(o, "settings", batch_settings_json(&tp->shown));
            json_array_append_new(tabs, o);
        }
        json_object_set_new(c, "tables", tabs);
        json_array_append_new(arr, c);
    }
    json_object_set_new(r, "checkpoints", arr);
    return r;
}

int main(int argc, char **argv) {
    cli_prog = "fpd-batch";
    setlocale(LC_NUMERIC, "C");
    bool check = false, report_only = false, keep_going = false, force = false, json = false, quiet = false;
    int progress_mode = 0;
    int64_t shard_i = 1, shard_n = 1;
    enum { OPT_CHECK = 256, OPT_SHARD, OPT_REPORT_ONLY, OPT_JSON, OPT_PROGRESS, OPT_NO_PROGRESS, OPT_VERSION };
    static const struct option opts[] = {
        {"check", no_argument, 0, OPT_CHECK},         {"shard", required_argument, 0, OPT_SHARD},
        {"report-only", no_argument, 0, OPT_REPORT_ONLY}, {"keep-going", no_argument, 0, 'k'},
        {"force", no_argument, 0, 'f'},               {"json", no_argument, 0, OPT_JSON},
        {"progress", no_argument, 0, OPT_PROGRESS},   {"no-progress", no_argument, 0, OPT_NO_PROGRESS},
        {"quiet", no_argument, 0, 'q'},               {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, OPT_VERSION},     {0, 0, 0, 0},
    };
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":kfqh", opts, NULL)) != -1) {
        switch (c) {
        case OPT_CHECK: check = true; break;
        case OPT_SHARD: {
            long long a, b;
            int used = 0;
            if (sscanf(optarg, "%lld/%lld%n", &a, &b, &used) != 2 || optarg[used] || b < 1 || a < 1 || a > b)
                cli_usage_error("--shard expects I/N with 1 <= I <= N, got '%s'", optarg);
            shard_i = a;
            shard_n = b;
            break;
        }
        case OPT_REPORT_ONLY: report_only = true; break;
        case 'k': keep_going = true; break;
        case 'f': force = true; break;
        case OPT_JSON: json = true; break;
        case OPT_PROGRESS: progress_mode = 1; break;
        case OPT_NO_PROGRESS: progress_mode = -1; break;
        case 'q': quiet = true; break;
        case 'h': usage(stdout); return CLI_EXIT_OK;
        case OPT_VERSION: printf("fpd-batch %s (%s)\n", fpd_version(), fpd_build_features()); return CLI_EXIT_OK;
        case ':': cli_usage_error("option '%s' needs a value", argv[optind - 1]);
        default: cli_usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc) cli_usage_error("no pipeline file given");
    if (optind + 1 < argc) cli_usage_error("one pipeline file expected, got '%s' too", argv[optind + 1]);
    if (check && report_only) cli_usage_error("--check and --report-only exclude each other");
    const char *file = argv[optind];

    struct fpd_error err;
    struct fpd_batch_pipeline *p = NULL;
    enum fpd_status st = fpd_batch_pipeline_load(file, &p, &err);
    if (st) {
        if (err.line > 0) cli_error("%s:%lld:%lld: %s", file, (long long)err.line, (long long)err.column, err.msg);
        else cli_error("%s: %s", file, err.msg);
        return st == FPD_STATUS_BACKEND ? CLI_EXIT_BACKEND : CLI_EXIT_USAGE;
    }

    int rc = CLI_EXIT_OK;
    int64_t n = p->n_inputs;
    struct unit *units = calloc((size_t)n, sizeof *units);
    bool *ov_used = calloc((size_t)p->n_overrides + 1, sizeof *ov_used);
    if (!units || !ov_used) {
        cli_error("out of memory");
        rc = CLI_EXIT_FAILURE;
        goto done;
    }
    for (int64_t i = 0; i < n; i++) {
        units[i].in = &p->inputs[i];
        if (!plan_unit(p, &units[i], ov_used)) {
            rc = CLI_EXIT_USAGE;
            goto done;
        }
        units[i].mine = in_shard(&units[i], shard_i, shard_n);
        check_state(p, &units[i], units[i].mine && !report_only);
    }
    for (int64_t o = 0; o < p->n_overrides; o++)
        if (!ov_used[o])
            cli_warn("%s:%lld:%lld: this 'tables' entry (match '%s') matches no table of any input", file,
                     (long long)p->overrides[o].mark.line, (long long)p->overrides[o].mark.column,
                     p->overrides[o].match);
    /* outputs this pipeline did not write: refuse before any work */
    for (int64_t i = 0; i < n && !force && !report_only; i++) {
        if (units[i].mine && units[i].state == UNIT_FOREIGN) {
            cli_error("%s: exists and was not written by this pipeline (no record in %s/%s); use --force to "
                      "replace it",
                      units[i].in->output, p->folder, STATE_DIR);
            rc = CLI_EXIT_USAGE;
        }
    }
    if (rc) goto done;

    if (check && json) {
        json_t *pj = plan_json(p, units, n, shard_i, shard_n);
        json_dumpf(pj, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
        fputc('\n', stdout);
        json_decref(pj);
        goto done;
    }
    if (check) {
        if (!quiet) {
            int64_t mine = 0, sel = 0;
            for (int64_t i = 0; i < n; i++) {
                mine += units[i].mine;
                for (int64_t t = 0; t < units[i].n_tables; t++) sel += units[i].tables[t].selected;
            }
            printf("%s: valid: %lld checkpoint(s)", file, (long long)n);
            if (shard_n > 1) printf(", %lld in shard %lld/%lld", (long long)mine, (long long)shard_i, (long long)shard_n);
            printf(", %lld table(s) selected\n", (long long)sel);
            print_plan(units, n);
        }
        goto done;
    }

    if (!report_only) {
        char *sdir = NULL;
        if (asprintf(&sdir, "%s/%s", p->folder, STATE_DIR) < 0 || !mkdir_p(p->folder) || !mkdir_p(sdir)) {
            free(sdir);
            rc = CLI_EXIT_FAILURE;
            goto done;
        }
        free(sdir);
        cli_install_signals();
        for (int64_t i = 0; i < n; i++) {
            struct unit *u = &units[i];
            if (!u->mine) continue;
            if (cli_interrupted()) { /* between units: say so as when a unit is stopped */
                cli_error("interrupted; %s was not written (finished outputs are kept; run again to continue)",
                          u->in->output);
                rc = cli_interrupt_exit_code();
                break;
            }
            if (u->state == UNIT_DONE) {
                if (!quiet && !json) printf("%s: already done (%s, checksum verified)\n", u->in->path, u->in->output);
                continue;
            }
            char *lock_path = state_path(p, u, ".lock");
            int lfd = lock_path ? open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644) : -1;
            free(lock_path);
            if (lfd < 0 || flock(lfd, LOCK_EX | LOCK_NB) != 0) {
                if (lfd >= 0) close(lfd);
                u->busy = true;
                cli_warn("%s: another fpd-batch is working on it; skipped", u->in->output);
                continue;
            }
            check_state(p, u, true); /* another run may have finished it meanwhile */
            if (u->state == UNIT_DONE) {
                close(lfd);
                if (!quiet && !json) printf("%s: already done (%s, checksum verified)\n", u->in->path, u->in->output);
                continue;
            }
            if (u->state == UNIT_STALE && !quiet && !json)
                printf("%s: redoing (%s)\n", u->in->path, u->state_why);
            cli_clear_last_error();
            int r = run_unit(p, u, progress_mode);
            close(lfd);
            if (r >= 128) {
                cli_error("interrupted; %s was not written (finished outputs are kept; run again to continue)",
                          u->in->output);
                rc = r;
                break;
            }
            if (r != CLI_EXIT_OK) {
                u->failed = true;
                snprintf(u->error, sizeof u->error, "%s", cli_last_error()[0] ? cli_last_error() : "see stderr");
                cli_error("%s: failed; %s was not written", u->in->path, u->in->output);
                rc = CLI_EXIT_FAILURE;
                if (!keep_going) break;
                continue;
            }
            u->ran = true;
            if (!quiet && !json) {
                json_t *tot = json_object_get(json_object_get(u->record, "report"), "totals");
                char b1[32], b2[32];
                int64_t sel = 0;
                for (int64_t t = 0; t < u->n_tables; t++) sel += u->tables[t].selected;
                printf("%s -> %s: %lld of %lld table(s) compressed, %s -> %s (%.2fx), %.2f s\n", u->in->path,
                       u->in->output, (long long)json_integer_value(json_object_get(tot, "tables_compressed")),
                       (long long)u->n_tables,
                       cli_bytes((size_t)json_integer_value(json_object_get(tot, "bytes_before")), b1, sizeof b1),
                       cli_bytes((size_t)json_integer_value(json_object_get(tot, "bytes_after")), b2, sizeof b2),
                       json_number_value(json_object_get(tot, "ratio")), u->seconds);
                (void)sel;
            }
        }
    }
    if (rc >= 128) goto done;
    /* reports: every unit, whichever run or shard finished it */
    for (int64_t i = 0; i < n; i++)
        if (!units[i].mine || report_only) check_state(p, &units[i], false);
    json_t *rep = build_report(p, units, n, shard_i, shard_n);
    if (!write_reports(p, rep) && rc == CLI_EXIT_OK) rc = CLI_EXIT_FAILURE;
    if (json) {
        json_dumpf(rep, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
        fputc('\n', stdout);
    } else if (!quiet) {
        int64_t ran = 0, reused = 0, failed = 0, other = 0, busy = 0;
        for (int64_t i = 0; i < n; i++) {
            struct unit *u = &units[i];
            if (!u->mine) other++;
            else if (u->ran) ran++;
            else if (u->failed) failed++;
            else if (u->busy) busy++;
            else if (u->state == UNIT_DONE) reused++;
        }
        const json_t *tot = json_object_get(rep, "totals");
        printf("%lld checkpoint(s): %lld written now, %lld already done, %lld failed", (long long)n, (long long)ran,
               (long long)reused, (long long)failed);
        if (busy) printf(", %lld busy elsewhere", (long long)busy);
        if (shard_n > 1) printf(", %lld in other shards", (long long)other);
        printf("; %lld of %lld done overall; reports: %s, %s\n",
               (long long)json_integer_value(json_object_get(tot, "done")), (long long)n, p->report_json, p->report_md);
    }
    json_decref(rep);
done:
    for (int64_t i = 0; units && i < n; i++) {
        for (int64_t t = 0; t < units[i].n_tables; t++) free(units[i].tables[t].name);
        free(units[i].tables);
        json_decref(units[i].record);
    }
    free(units);
    free(ov_used);
    fpd_batch_pipeline_free(p);
    close_devices();
    return rc;
}
