/*
 * batch.c - batch pipeline files (fpd_batch_*, formats/fpd-formats.h section "Batch
 * pipeline files"), what fpd-batch runs: YAML parsed event by event with libyaml
 * into a document (with limits on nesting and size, and no tags), checked against
 * the schema, inputs expanded and checked, output folders checked, all before any
 * work; and the per-table settings resolved from defaults and overrides. Every
 * error names the place: libyaml's problem_mark for syntax errors, the offending
 * node's start_mark otherwise, both made 1-based.
 */
#include "formats/fpd-formats.h"
#include "heuristics/fpd-heuristics.h"
#include "lib/fpd-impl.h"

#include <errno.h>
#include <fnmatch.h>
#include <glob.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#define BATCH_MAX_FILE (16u << 20) /* a pipeline file larger than this is refused */
#define BATCH_MAX_DEPTH 64         /* lists and mappings nested deeper are refused   */
#define BATCH_MAX_NODES 100000     /* more nodes (an alias counts as what it repeats) */

/* ------------------------------------------------------------ small helpers */

/* Allocation goes through fpd_malloc (the library's hooks): a copy of s, of its
 * first n bytes, a formatted string, and a grown array (old bytes kept, *p
 * unchanged on failure). NULL / false when out of memory. */
static char *xstrndup(const char *s, size_t n) {
    size_t l = strnlen(s, n);
    char *d = fpd_malloc(l + 1);
    if (d) {
        memcpy(d, s, l);
        d[l] = '\0';
    }
    return d;
}
static char *xstrdup(const char *s) { return xstrndup(s, SIZE_MAX); }
static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n >= 0 ? fpd_malloc((size_t)n + 1) : NULL;
    if (!s) return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}
static bool grow(void **p, size_t old_bytes, size_t new_bytes) {
    void *q = fpd_malloc(new_bytes);
    if (!q) return false;
    if (old_bytes) memcpy(q, *p, old_bytes);
    fpd_free(*p);
    *p = q;
    return true;
}

/* A size in bytes with units (fpd_size_parse); false when not one or above INT64_MAX. */
static bool parse_size(const char *s, int64_t *out) {
    uint64_t b = 0;
    if (!fpd_size_parse(s, &b) || b > (uint64_t)INT64_MAX) return false;
    *out = (int64_t)b;
    return true;
}

/* Lexically clean a path in place, as Go's filepath.Clean: no "." segments, no
 * repeated '/', "x/.." removed where x is not "..". */
static void clean_path(char *path) {
    bool abs = path[0] == '/';
    char *segs[512];
    int n = 0;
    char *save = NULL, *copy = xstrdup(path);
    if (!copy) return;
    for (char *tok = strtok_r(copy, "/", &save); tok && n < 512; tok = strtok_r(NULL, "/", &save)) {
        if (!strcmp(tok, ".")) continue;
        if (!strcmp(tok, "..") && n > 0 && strcmp(segs[n - 1], "..")) {
            n--;
            continue;
        }
        if (!strcmp(tok, "..") && abs && n == 0) continue;
        segs[n++] = tok;
    }
    char *o = path;
    if (abs) *o++ = '/';
    for (int i = 0; i < n; i++) {
        size_t l = strlen(segs[i]);
        if (i) *o++ = '/';
        memmove(o, segs[i], l);
        o += l;
    }
    if (o == path) *o++ = '.';
    *o = '\0';
    fpd_free(copy);
}

static char *join_path(const char *dir, const char *rel) {
    char *s = NULL;
    if (rel[0] == '/' || strcmp(dir, ".") == 0) s = xstrdup(rel);
    else s = xasprintf("%s/%s", dir, rel);
    if (s) clean_path(s);
    return s;
}

/* Levenshtein distance of two short strings (for "did you mean"). */
static size_t edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63) return 99;
    size_t d[64][64];
    for (size_t i = 0; i <= la; i++) d[i][0] = i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            size_t c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < c) c = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < c) c = d[i][j - 1] + 1;
            d[i][j] = c;
        }
    return d[la][lb];
}

/* ------------------------------------------------------------ parse context */

struct ctx {
    yaml_document_t *doc;
    struct fpd_error *err;
    struct fpd_batch_pipeline *p;
    struct fpd_batch_mark cuda_mark;      /* first device: cuda                   */
    const yaml_node_t *folder_node, *json_node, *md_node; /* output.folder, report.* */
    const yaml_node_t *order_key;         /* first order_column / id_base key     */
    bool order_from_seen;                 /* order_from set somewhere             */
};

static enum fpd_status at(struct ctx *c, const yaml_node_t *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static enum fpd_status at(struct ctx *c, const yaml_node_t *n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err->msg, sizeof c->err->msg, fmt, ap);
    va_end(ap);
    c->err->status = FPD_STATUS_CONFIG;
    c->err->line = n ? (int64_t)n->start_mark.line + 1 : 0;
    c->err->column = n ? (int64_t)n->start_mark.column + 1 : 0;
    return FPD_STATUS_CONFIG;
}

static struct fpd_batch_mark mark_of(const yaml_node_t *n) {
    struct fpd_batch_mark m = {(int64_t)n->start_mark.line + 1, (int64_t)n->start_mark.column + 1};
    return m;
}

static const char *node_text(const yaml_node_t *n) { return (const char *)n->data.scalar.value; }

static bool is_plain(const yaml_node_t *n) {
    return n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

static bool is_null(const yaml_node_t *n) {
    if (!is_plain(n)) return false;
    const char *s = node_text(n);
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

/* "a mapping", "a list", "nothing (null)", "the string 'x'", "'x'" for messages. */
static const char *describe(const yaml_node_t *n, char *buf, size_t len) {
    if (n->type == YAML_MAPPING_NODE) return "a mapping";
    if (n->type == YAML_SEQUENCE_NODE) return "a list";
    if (is_null(n)) return "nothing (null)";
    if (is_plain(n)) snprintf(buf, len, "'%.60s'", node_text(n));
    else snprintf(buf, len, "the quoted string \"%.60s\"", node_text(n));
    return buf;
}

static enum fpd_status want_int(struct ctx *c, const char *key, const yaml_node_t *n, int64_t min, int64_t max,
                                int64_t *out) {
    char b[96];
    if (!is_plain(n) || is_null(n)) return at(c, n, "'%s' must be an integer, got %s", key, describe(n, b, sizeof b));
    const char *s = node_text(n);
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end) return at(c, n, "'%s' must be an integer, got %s", key, describe(n, b, sizeof b));
    if (v < min || v > max) {
        if (max == INT64_MAX) return at(c, n, "'%s' must be an integer >= %lld, got %lld", key, (long long)min, v);
        return at(c, n, "'%s' must be an integer from %lld to %lld, got %lld", key, (long long)min, (long long)max, v);
    }
    *out = (int64_t)v;
    return FPD_STATUS_OK;
}

/* A number: min_open true means > min, else >= min. */
static enum fpd_status want_num(struct ctx *c, const char *key, const yaml_node_t *n, double min, bool min_open,
                                double *out) {
    char b[96];
    if (!is_plain(n) || is_null(n)) return at(c, n, "'%s' must be a number, got %s", key, describe(n, b, sizeof b));
    const char *s = node_text(n);
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v))
        return at(c, n, "'%s' must be a number, got %s", key, describe(n, b, sizeof b));
    if (min_open ? !(v > min) : !(v >= min))
        return at(c, n, "'%s' must be a number %s %g, got %s", key, min_open ? ">" : ">=", min, s);
    *out = v;
    return FPD_STATUS_OK;
}

static enum fpd_status want_bool(struct ctx *c, const char *key, const yaml_node_t *n, bool *out) {
    char b[96];
    if (is_plain(n)) {
        const char *s = node_text(n);
        if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE")) return *out = true, FPD_STATUS_OK;
        if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE")) return *out = false, FPD_STATUS_OK;
    }
    return at(c, n, "'%s' must be true or false, got %s", key, describe(n, b, sizeof b));
}

/* A non-empty string (any scalar but null). *out is newly allocated. */
static enum fpd_status want_str(struct ctx *c, const char *key, const yaml_node_t *n, char **out) {
    char b[96];
    if (n->type != YAML_SCALAR_NODE || is_null(n) || n->data.scalar.length == 0)
        return at(c, n, "'%s' must be a non-empty string, got %s", key, describe(n, b, sizeof b));
    if (strlen(node_text(n)) != n->data.scalar.length) return at(c, n, "'%s' contains a NUL byte", key);
    *out = xstrndup(node_text(n), n->data.scalar.length);
    if (!*out) return at(c, n, "out of memory");
    return FPD_STATUS_OK;
}

/* A string or a list of strings. */
static enum fpd_status want_str_list(struct ctx *c, const char *key, const yaml_node_t *n, char ***out, int64_t *count) {
    char b[96];
    if (n->type == YAML_SCALAR_NODE) {
        *out = fpd_calloc(1, sizeof **out);
        if (!*out) return at(c, n, "out of memory");
        *count = 1;
        return want_str(c, key, n, &(*out)[0]);
    }
    if (n->type != YAML_SEQUENCE_NODE)
        return at(c, n, "'%s' must be a string or a list of strings, got %s", key, describe(n, b, sizeof b));
    int64_t len = n->data.sequence.items.top - n->data.sequence.items.start;
    *out = fpd_calloc((size_t)len + 1, sizeof **out);
    if (!*out) return at(c, n, "out of memory");
    *count = 0;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
        yaml_node_t *v = yaml_document_get_node(c->doc, *it);
        enum fpd_status st = want_str(c, key, v, &(*out)[*count]);
        if (st) return st;
        (*count)++;
    }
    return FPD_STATUS_OK;
}

/* Iterate a mapping: checks it is one, that keys are plain strings, unique and
 * known (with a suggestion when close to a known key). */
static enum fpd_status check_mapping(struct ctx *c, const char *where, const yaml_node_t *n,
                                     const char *const *known) {
    char b[96];
    if (n->type != YAML_MAPPING_NODE)
        return at(c, n, "'%s' must be a mapping (key: value lines), got %s", where, describe(n, b, sizeof b));
    for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, pr->key);
        if (k->type != YAML_SCALAR_NODE) return at(c, k, "a key in '%s' must be a plain word, got %s", where, describe(k, b, sizeof b));
        const char *ks = node_text(k);
        bool ok = false;
        for (int i = 0; known[i]; i++) ok |= strcmp(known[i], ks) == 0;
        if (!ok) {
            const char *best = NULL;
            size_t bd = 3;
            char list[512] = "";
            size_t o = 0;
            for (int i = 0; known[i]; i++) {
                size_t d = edit_distance(ks, known[i]);
                if (d < bd) bd = d, best = known[i];
                o += (size_t)snprintf(list + o, o < sizeof list ? sizeof list - o : 0, "%s%s", i ? ", " : "", known[i]);
            }
            if (best) return at(c, k, "unknown key '%.80s' in '%s' (did you mean '%s'?)", ks, where, best);
            return at(c, k, "unknown key '%.80s' in '%s' (known keys: %s)", ks, where, list);
        }
        for (yaml_node_pair_t *q = n->data.mapping.pairs.start; q < pr; q++) {
            yaml_node_t *k2 = yaml_document_get_node(c->doc, q->key);
            if (k2->type == YAML_SCALAR_NODE && strcmp(node_text(k2), ks) == 0)
                return at(c, k, "duplicate key '%.80s' in '%s' (first at line %lld)", ks, where,
                          (long long)k2->start_mark.line + 1);
        }
    }
    return FPD_STATUS_OK;
}

static yaml_node_t *map_get(struct ctx *c, const yaml_node_t *n, const char *key, yaml_node_t **key_node) {
    for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, pr->key);
        if (k->type == YAML_SCALAR_NODE && strcmp(node_text(k), key) == 0) {
            if (key_node) *key_node = k;
            return yaml_document_get_node(c->doc, pr->value);
        }
    }
    return NULL;
}

/* ------------------------------------------------------------ settings */

#define SETTINGS_KEYS                                                                                     \
    "rank", "r", "terms", "p", "cores", "k", "core_dtype", "min_ratio", "epochs", "batch_rows", "learning_rate", \
        "seed", "backfit_sweeps", "backfit_tol", "recall_queries", "row_freq", "device", "compress", "budget", "ratio", \
        "max_error", "free_coords", "order_from", "order_column", "id_base", "free_dtype"

/* An existing regular file, its path resolved against the YAML's folder into *path
 * (the old value freed; newly allocated). */
static enum fpd_status want_file(struct ctx *c, const char *key, const yaml_node_t *v, char **path) {
    char *f = NULL;
    enum fpd_status st = want_str(c, key, v, &f);
    if (st) return st;
    fpd_free(*path);
    *path = join_path(c->p->dir, f);
    fpd_free(f);
    struct stat sb;
    if (!*path) return at(c, v, "out of memory");
    if (stat(*path, &sb) != 0 || !S_ISREG(sb.st_mode)) return at(c, v, "'%s' file '%s' does not exist", key, *path);
    return FPD_STATUS_OK;
}

static enum fpd_status parse_setting(struct ctx *c, const char *key, yaml_node_t *kn, yaml_node_t *v,
                                     struct fpd_batch_settings *s) {
    enum fpd_status st = FPD_STATUS_OK;
    int64_t i;
    char b[96];
    if (!strcmp(key, "rank") || !strcmp(key, "r")) {
        if (s->set & FPD_BATCH_SET_RANK) return at(c, kn, "'rank' given twice (as 'rank' and 'r')");
        if (!(st = want_int(c, key, v, 1, 1 << 20, &s->rank))) s->set |= FPD_BATCH_SET_RANK;
    } else if (!strcmp(key, "terms") || !strcmp(key, "p")) {
        if (s->set & FPD_BATCH_SET_TERMS) return at(c, kn, "'terms' given twice (as 'terms' and 'p')");
        if (!(st = want_int(c, key, v, 1, 1 << 16, &s->terms))) s->set |= FPD_BATCH_SET_TERMS;
    } else if (!strcmp(key, "cores") || !strcmp(key, "k")) {
        if (s->set & FPD_BATCH_SET_CORES) return at(c, kn, "'cores' given twice (as 'cores' and 'k')");
        if (!(st = want_int(c, key, v, 1, FPD_MAX_MODES, &i))) s->cores = (int32_t)i, s->set |= FPD_BATCH_SET_CORES;
    } else if (!strcmp(key, "core_dtype")) {
        if (v->type != YAML_SCALAR_NODE || !fpd_dtype_from_name(node_text(v), v->data.scalar.length, &s->core_dtype) ||
            !(s->core_dtype == FPD_DTYPE_F32 || s->core_dtype == FPD_DTYPE_F16 || s->core_dtype == FPD_DTYPE_BF16))
            return at(c, v, "'core_dtype' must be F32, F16 or BF16, got %s", describe(v, b, sizeof b));
        s->set |= FPD_BATCH_SET_CORE_DTYPE;
    } else if (!strcmp(key, "min_ratio")) {
        if (!(st = want_num(c, key, v, 0, false, &s->min_ratio))) s->set |= FPD_BATCH_SET_MIN_RATIO;
    } else if (!strcmp(key, "epochs")) {
        if (!(st = want_int(c, key, v, 0, INT64_MAX, &s->epochs))) s->set |= FPD_BATCH_SET_EPOCHS;
    } else if (!strcmp(key, "batch_rows")) {
        if (!(st = want_int(c, key, v, 1, INT64_MAX, &s->batch_rows))) s->set |= FPD_BATCH_SET_BATCH_ROWS;
    } else if (!strcmp(key, "learning_rate")) {
        if (!(st = want_num(c, key, v, 0, true, &s->learning_rate))) s->set |= FPD_BATCH_SET_LR;
    } else if (!strcmp(key, "seed")) {
        if (!(st = want_int(c, key, v, 0, INT64_MAX, &i))) s->seed = (uint64_t)i, s->set |= FPD_BATCH_SET_SEED;
    } else if (!strcmp(key, "backfit_sweeps")) {
        if (!(st = want_int(c, key, v, 1, INT64_MAX, &s->backfit_sweeps))) s->set |= FPD_BATCH_SET_SWEEPS;
    } else if (!strcmp(key, "backfit_tol")) {
        if (!(st = want_num(c, key, v, 0, false, &s->backfit_tol))) s->set |= FPD_BATCH_SET_TOL;
    } else if (!strcmp(key, "recall_queries")) {
        if (!(st = want_int(c, key, v, 0, INT64_MAX, &s->recall_queries))) s->set |= FPD_BATCH_SET_RECALL;
    } else if (!strcmp(key, "row_freq")) {
        if (!(st = want_file(c, key, v, &s->row_freq))) s->set |= FPD_BATCH_SET_ROW_FREQ;
    } else if (!strcmp(key, "order_from")) { /* fpd-compress --order-from */
        if (!(st = want_file(c, key, v, &s->order_from))) s->set |= FPD_BATCH_SET_ORDER_FROM, c->order_from_seen = true;
    } else if (!strcmp(key, "order_column")) {
        if ((st = want_int(c, key, v, 1, 2, &i)))
            return at(c, v, "'order_column' must be 1 or 2 (the column of the table's ids in 'order_from'), got %s",
                      describe(v, b, sizeof b));
        s->order_column = (int32_t)(i - 1), s->set |= FPD_BATCH_SET_ORDER_COLUMN;
        if (!c->order_key) c->order_key = kn;
    } else if (!strcmp(key, "id_base")) {
        if (!(st = want_int(c, key, v, 0, INT64_MAX, &s->id_base))) s->set |= FPD_BATCH_SET_ID_BASE;
        if (!c->order_key) c->order_key = kn;
    } else if (!strcmp(key, "device")) {
        const char *d = v->type == YAML_SCALAR_NODE ? node_text(v) : "";
        if (!strcmp(d, "auto")) s->device = FPD_BATCH_DEVICE_AUTO;
        else if (!strcmp(d, "cpu")) s->device = FPD_BATCH_DEVICE_CPU;
        else if (!strcmp(d, "cuda")) {
            s->device = FPD_BATCH_DEVICE_CUDA;
            if (!c->cuda_mark.line) c->cuda_mark = mark_of(v);
        } else
            return at(c, v, "'device' must be auto, cpu or cuda, got %s", describe(v, b, sizeof b));
        s->set |= FPD_BATCH_SET_DEVICE;
    } else if (!strcmp(key, "compress")) {
        if (!(st = want_bool(c, key, v, &s->compress))) s->set |= FPD_BATCH_SET_COMPRESS, s->compress_mark = mark_of(kn);
    } else if (!strcmp(key, "budget")) {
        bool okv = false;
        if (v->type == YAML_SCALAR_NODE && !is_null(v)) okv = parse_size(node_text(v), &s->budget) && s->budget > 0;
        if (!okv)
            return at(c, v, "'budget' must be a size in bytes > 0 (an integer or e.g. \"64MiB\"), got %s",
                      describe(v, b, sizeof b));
        s->set |= FPD_BATCH_SET_BUDGET;
    } else if (!strcmp(key, "ratio")) {
        if (!(st = want_num(c, key, v, 1, true, &s->ratio))) s->set |= FPD_BATCH_SET_RATIO;
    } else if (!strcmp(key, "max_error")) {
        if (!(st = want_num(c, key, v, 0, true, &s->max_error))) s->set |= FPD_BATCH_SET_MAX_ERROR;
    } else if (!strcmp(key, "free_coords")) { /* auto: the planner's c per table (FPD_FREE_COORDS_AUTO) */
        if (is_plain(v) && !strcmp(node_text(v), "auto")) s->free_coords = FPD_FREE_COORDS_AUTO;
        else if ((st = want_int(c, key, v, 0, 1 << 20, &s->free_coords)))
            return at(c, v, "'free_coords' must be auto or an integer from 0 to %d, got %s", 1 << 20,
                      describe(v, b, sizeof b));
        s->set |= FPD_BATCH_SET_FREE_COORDS;
    } else if (!strcmp(key, "free_dtype")) { /* E of free/1: core (the core dtype), int8, int4, int8-sym, int4-sym */
        const char *d = is_plain(v) ? node_text(v) : "";
        if (!strcmp(d, "core")) s->free_rowwise = false;
        else if (fpd_free_kind_from_name(d, &s->free_kind)) s->free_rowwise = true;
        else return at(c, v, "'free_dtype' must be core, int8, int4, int8-sym or int4-sym, got %s", describe(v, b, sizeof b));
        s->set |= FPD_BATCH_SET_FREE_DTYPE;
    }
    return st;
}

static enum fpd_status parse_settings_map(struct ctx *c, const char *where, const yaml_node_t *n,
                                          struct fpd_batch_settings *s, const char *const *extra_keys) {
    static const char *const base[] = {SETTINGS_KEYS};
    const char *known[64];
    int nk = 0;
    for (size_t i = 0; i < sizeof base / sizeof base[0]; i++) known[nk++] = base[i];
    for (int i = 0; extra_keys && extra_keys[i]; i++) known[nk++] = extra_keys[i];
    known[nk] = NULL;
    enum fpd_status st = check_mapping(c, where, n, known);
    if (st) return st;
    for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, pr->key);
        yaml_node_t *v = yaml_document_get_node(c->doc, pr->value);
        bool extra = false;
        for (int i = 0; extra_keys && extra_keys[i]; i++) extra |= strcmp(extra_keys[i], node_text(k)) == 0;
        if (extra) continue;
        if ((st = parse_setting(c, node_text(k), k, v, s))) return st;
    }
    return FPD_STATUS_OK;
}

void fpd_batch_settings_for(const struct fpd_batch_pipeline *p, const struct fpd_batch_input *in, const char *name,
                            struct fpd_batch_settings *out) {
    *out = p->defaults;
    for (int64_t i = 0; i < p->n_overrides; i++) {
        const struct fpd_batch_override *o = &p->overrides[i];
        if (fnmatch(o->match, name, 0) != 0) continue;
        if (o->checkpoint && fnmatch(o->checkpoint, in->name, 0) != 0 && fnmatch(o->checkpoint, in->path, 0) != 0)
            continue;
        const struct fpd_batch_settings *s = &o->s;
        unsigned f = s->set;
        if (f & FPD_BATCH_SET_RANK) out->rank = s->rank;
        if (f & FPD_BATCH_SET_TERMS) out->terms = s->terms;
        if (f & FPD_BATCH_SET_CORES) out->cores = s->cores;
        if (f & FPD_BATCH_SET_CORE_DTYPE) out->core_dtype = s->core_dtype;
        if (f & FPD_BATCH_SET_MIN_RATIO) out->min_ratio = s->min_ratio;
        if (f & FPD_BATCH_SET_EPOCHS) out->epochs = s->epochs;
        if (f & FPD_BATCH_SET_BATCH_ROWS) out->batch_rows = s->batch_rows;
        if (f & FPD_BATCH_SET_LR) out->learning_rate = s->learning_rate;
        if (f & FPD_BATCH_SET_SEED) out->seed = s->seed;
        if (f & FPD_BATCH_SET_SWEEPS) out->backfit_sweeps = s->backfit_sweeps;
        if (f & FPD_BATCH_SET_TOL) out->backfit_tol = s->backfit_tol;
        if (f & FPD_BATCH_SET_DEVICE) out->device = s->device;
        if (f & FPD_BATCH_SET_COMPRESS) out->compress = s->compress, out->compress_mark = s->compress_mark;
        if (f & FPD_BATCH_SET_BUDGET) out->budget = s->budget;
        if (f & FPD_BATCH_SET_RATIO) out->ratio = s->ratio;
        if (f & FPD_BATCH_SET_MAX_ERROR) out->max_error = s->max_error;
        if (f & FPD_BATCH_SET_RECALL) out->recall_queries = s->recall_queries;
        if (f & FPD_BATCH_SET_ROW_FREQ) out->row_freq = s->row_freq;
        if (f & FPD_BATCH_SET_FREE_COORDS) out->free_coords = s->free_coords;
        if (f & FPD_BATCH_SET_ORDER_FROM) out->order_from = s->order_from;
        if (f & FPD_BATCH_SET_ORDER_COLUMN) out->order_column = s->order_column;
        if (f & FPD_BATCH_SET_ID_BASE) out->id_base = s->id_base;
        if (f & FPD_BATCH_SET_FREE_DTYPE) out->free_rowwise = s->free_rowwise, out->free_kind = s->free_kind;
        out->set |= f;
    }
}

void fpd_batch_settings_apply(const struct fpd_batch_settings *s, struct fpd_plan_params *plan,
                              struct fpd_fit_params *fit, int64_t *recall_queries) {
    unsigned f = s->set;
    if (f & FPD_BATCH_SET_RANK) plan->rank = s->rank;
    if (f & FPD_BATCH_SET_TERMS) plan->terms = s->terms;
    if (f & FPD_BATCH_SET_CORES) plan->k = s->cores;
    if (f & FPD_BATCH_SET_CORE_DTYPE) plan->core_dtype = s->core_dtype;
    if (f & FPD_BATCH_SET_MIN_RATIO) plan->min_ratio = s->min_ratio;
    if (f & FPD_BATCH_SET_EPOCHS) fit->finetune_epochs = s->epochs;
    if (f & FPD_BATCH_SET_BATCH_ROWS) fit->batch_rows = s->batch_rows;
    if (f & FPD_BATCH_SET_LR) fit->learning_rate = s->learning_rate;
    if (f & FPD_BATCH_SET_SEED) fit->seed = s->seed;
    if (f & FPD_BATCH_SET_SWEEPS) fit->backfit_sweeps = s->backfit_sweeps;
    if (f & FPD_BATCH_SET_TOL) fit->backfit_tol = s->backfit_tol;
    if (f & FPD_BATCH_SET_RECALL) *recall_queries = s->recall_queries;
    if (f & FPD_BATCH_SET_FREE_COORDS) fit->free_coords = s->free_coords;
    /* planner targets (fpd-batch resolves them to an explicit rank/terms/cores per
     * table before compressing, since max_error needs the table's data) */
    if (f & FPD_BATCH_SET_BUDGET) plan->budget_bytes = (size_t)s->budget;
    if (f & FPD_BATCH_SET_RATIO) plan->min_ratio_target = s->ratio;
    if (f & FPD_BATCH_SET_MAX_ERROR) plan->max_error = s->max_error;
    /* device: validated at load (cuda needs a device with the engine); fpd-batch
     * opens it and sets fit->backend */
}

void fpd_batch_settings_key(const struct fpd_batch_settings *s, char *buf, size_t len) {
    struct fpd_plan_params plan = fpd_plan_default_params();
    struct fpd_fit_params fit = fpd_fit_default_params();
    int64_t recall_queries = fpd_compress_default_params().recall_queries;
    fpd_batch_settings_apply(s, &plan, &fit, &recall_queries);
    const struct fpd_plan_params *pp = &plan;
    const struct fpd_fit_params *fp = &fit;
    snprintf(buf, len,
             "r=%lld p=%lld k=%d dt=%s mr=%.17g e=%lld br=%lld lr=%.17g seed=%llu bs=%lld bt=%.17g rq=%lld rf=%s "
             "budget=%zu ratio=%.17g maxerr=%.17g",
             (long long)pp->rank, (long long)pp->terms, (int)pp->k, fpd_dtype_name(pp->core_dtype), pp->min_ratio,
             (long long)fp->finetune_epochs, (long long)fp->batch_rows, fp->learning_rate,
             (unsigned long long)fp->seed, (long long)fp->backfit_sweeps, fp->backfit_tol,
             (long long)recall_queries, s->row_freq ? s->row_freq : "-", pp->budget_bytes, pp->min_ratio_target,
             pp->max_error);
    if (fp->free_coords != 0) { /* appended only when set: the keys of earlier runs stay valid */
        size_t l = strlen(buf);
        if (l >= len) return;
        if (fp->free_coords == FPD_FREE_COORDS_AUTO) snprintf(buf + l, len - l, " fc=auto");
        else snprintf(buf + l, len - l, " fc=%lld", (long long)fp->free_coords);
    }
    if ((s->set & FPD_BATCH_SET_FREE_DTYPE) && s->free_rowwise) { /* likewise */
        size_t l = strlen(buf);
        if (l >= len) return;
        snprintf(buf + l, len - l, " fd=%s", fpd_free_kind_name(s->free_kind));
    }
    if (s->order_from) { /* likewise; a pass shares one id base (fpd_compress_params.init_id_base) */
        size_t l = strlen(buf);
        if (l >= len) return;
        snprintf(buf + l, len - l, " of=%s oc=%d ib=%lld", s->order_from, (int)s->order_column + 1,
                 (long long)s->id_base);
    }
}

/* ------------------------------------------------------------ sections */

static enum fpd_status parse_inputs(struct ctx *c, const yaml_node_t *n) {
    char b[96];
    if (n->type == YAML_SCALAR_NODE && !is_null(n))
        return at(c, n, "'inputs' must be a list (one '- path' line each), got %s", describe(n, b, sizeof b));
    if (n->type != YAML_SEQUENCE_NODE) return at(c, n, "'inputs' must be a list of paths, got %s", describe(n, b, sizeof b));
    int64_t len = n->data.sequence.items.top - n->data.sequence.items.start;
    if (len == 0) return at(c, n, "'inputs' is empty; list at least one checkpoint");
    struct fpd_batch_pipeline *p = c->p;
    p->specs = fpd_calloc((size_t)len, sizeof *p->specs);
    struct fpd_batch_mark *marks = fpd_calloc((size_t)len, sizeof *marks);
    if (!p->specs || !marks) {
        fpd_free(marks);
        return at(c, n, "out of memory");
    }
    enum fpd_status st = FPD_STATUS_OK;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
        yaml_node_t *v = yaml_document_get_node(c->doc, *it);
        if (v->type == YAML_MAPPING_NODE) {
            st = at(c, v, "an 'inputs' entry must be a path or a glob pattern, got a mapping");
            goto done;
        }
        if ((st = want_str(c, "inputs", v, &p->specs[p->n_specs]))) goto done;
        marks[p->n_specs++] = mark_of(v);
    }
    /* Expand. Every spec must match; inputs seen twice (same file) are kept once. */
    int64_t cap = 16;
    p->inputs = fpd_calloc((size_t)cap, sizeof *p->inputs);
    char **real = fpd_calloc((size_t)cap, sizeof *real);
    if (!p->inputs || !real) {
        fpd_free(real);
        st = at(c, n, "out of memory");
        goto done;
    }
    for (int64_t i = 0; i < p->n_specs && !st; i++) {
        const char *spec = p->specs[i];
        char *full = join_path(p->dir, spec);
        yaml_node_t *v = yaml_document_get_node(c->doc, n->data.sequence.items.start[i]);
        if (!full) {
            st = at(c, v, "out of memory");
            break;
        }
        glob_t g;
        memset(&g, 0, sizeof g);
        bool pattern = strpbrk(spec, "*?[") != NULL;
        if (pattern) {
            int gr = glob(full, GLOB_ERR, NULL, &g);
            if (gr == GLOB_NOMATCH || (gr == 0 && g.gl_pathc == 0)) {
                st = at(c, v, "input pattern '%s' matches no file%s%s%s", spec, strcmp(full, spec) ? " (looked for " : "",
                        strcmp(full, spec) ? full : "", strcmp(full, spec) ? ")" : "");
            } else if (gr != 0) {
                st = at(c, v, "input pattern '%s': cannot read the folders it names", spec);
            }
        } else {
            struct stat sb;
            if (stat(full, &sb) != 0)
                st = at(c, v, "input '%s' does not exist%s%s%s", spec, strcmp(full, spec) ? " (looked for " : "",
                        strcmp(full, spec) ? full : "", strcmp(full, spec) ? ")" : "");
            else if (!S_ISREG(sb.st_mode)) st = at(c, v, "input '%s' is not a regular file", spec);
        }
        size_t count = pattern ? g.gl_pathc : 1, files = 0;
        for (size_t j = 0; j < count && !st; j++) {
            const char *path = pattern ? g.gl_pathv[j] : full;
            struct stat sb;
            if (pattern && (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))) continue; /* folders matched by the pattern */
            files++;
            char *rp = realpath(path, NULL);
            bool seen = false;
            for (int64_t q = 0; q < p->n_inputs && rp; q++) seen |= strcmp(real[q], rp) == 0;
            if (seen || !rp) {
                free(rp);
                continue;
            }
            /* Check it opens as a checkpoint (header only). */
            struct fpd_input ci;
            struct fpd_error e2 = {0};
            if (fpd_input_open(path, &ci, &e2)) {
                free(rp);
                st = at(c, v, "input '%s' is not a readable checkpoint: %s", path, e2.msg);
                break;
            }
            fpd_input_free(&ci);
            if (p->n_inputs == cap) {
                bool a = grow((void **)&p->inputs, (size_t)cap * sizeof *p->inputs, (size_t)(2 * cap) * sizeof *p->inputs);
                bool r2 = a && grow((void **)&real, (size_t)cap * sizeof *real, (size_t)(2 * cap) * sizeof *real);
                if (a && r2) cap *= 2;
                if (!a || !r2) {
                    free(rp);
                    st = at(c, v, "out of memory");
                    break;
                }
            }
            struct fpd_batch_input *in = &p->inputs[p->n_inputs];
            memset(in, 0, sizeof *in);
            in->path = xstrdup(path);
            const char *slash = strrchr(path, '/');
            in->name = xstrdup(slash ? slash + 1 : path);
            in->spec = spec;
            in->mark = marks[i];
            real[p->n_inputs++] = rp;
            if (!in->path || !in->name) st = at(c, v, "out of memory");
        }
        if (!st && pattern && files == 0) /* e.g. "..*" matches only ".." */
            st = at(c, v, "input pattern '%s' matches no file, only folders (such as '%s')", spec, g.gl_pathv[0]);
        if (pattern) globfree(&g);
        fpd_free(full);
    }
    for (int64_t q = 0; q < p->n_inputs; q++) free(real[q]);
    fpd_free(real);
done:
    fpd_free(marks);
    return st;
}

static enum fpd_status parse_output(struct ctx *c, const yaml_node_t *n) {
    static const char *const known[] = {"folder", "suffix", NULL};
    enum fpd_status st = check_mapping(c, "output", n, known);
    if (st) return st;
    yaml_node_t *v;
    if ((v = map_get(c, n, "folder", NULL))) {
        char *f = NULL;
        if ((st = want_str(c, "folder", v, &f))) return st;
        c->folder_node = v;
        c->p->folder = join_path(c->p->dir, f);
        fpd_free(f);
    } else {
        return at(c, n, "'output' lacks the required key 'folder'");
    }
    if ((v = map_get(c, n, "suffix", NULL))) {
        fpd_free(c->p->suffix);
        c->p->suffix = NULL;
        if ((st = want_str(c, "suffix", v, &c->p->suffix))) return st;
        if (strchr(c->p->suffix, '/')) return at(c, v, "'suffix' must not contain '/'");
    }
    return FPD_STATUS_OK;
}

static enum fpd_status parse_report(struct ctx *c, const yaml_node_t *n) {
    static const char *const known[] = {"json", "markdown", NULL};
    enum fpd_status st = check_mapping(c, "report", n, known);
    if (st) return st;
    yaml_node_t *v;
    char *s = NULL;
    if ((v = map_get(c, n, "json", NULL))) {
        if ((st = want_str(c, "json", v, &s))) return st;
        c->json_node = v;
        c->p->report_json = join_path(c->p->dir, s);
        fpd_free(s);
    }
    if ((v = map_get(c, n, "markdown", NULL))) {
        if ((st = want_str(c, "markdown", v, &s))) return st;
        c->md_node = v;
        c->p->report_md = join_path(c->p->dir, s);
        fpd_free(s);
    }
    return FPD_STATUS_OK;
}

static enum fpd_status parse_select(struct ctx *c, const yaml_node_t *n) {
    static const char *const known[] = {"include", "exclude", "min_rows", "min_bytes", "largest", NULL};
    enum fpd_status st = check_mapping(c, "select", n, known);
    if (st) return st;
    struct fpd_batch_pipeline *p = c->p;
    yaml_node_t *v;
    char b[96];
    if ((v = map_get(c, n, "include", NULL))) {
        for (int64_t i = 0; i < p->n_include; i++) fpd_free(p->include[i]);
        fpd_free(p->include);
        p->include = NULL;
        p->n_include = 0;
        if ((st = want_str_list(c, "include", v, &p->include, &p->n_include))) return st;
    }
    if ((v = map_get(c, n, "exclude", NULL)) && (st = want_str_list(c, "exclude", v, &p->exclude, &p->n_exclude)))
        return st;
    if ((v = map_get(c, n, "min_rows", NULL)) && (st = want_int(c, "min_rows", v, 0, INT64_MAX, &p->min_rows))) return st;
    if ((v = map_get(c, n, "min_bytes", NULL))) {
        if (v->type != YAML_SCALAR_NODE || is_null(v) || !parse_size(node_text(v), &p->min_bytes))
            return at(c, v, "'min_bytes' must be a size (an integer or e.g. \"64KiB\"), got %s", describe(v, b, sizeof b));
    }
    if ((v = map_get(c, n, "largest", NULL)) && (st = want_int(c, "largest", v, 0, INT64_MAX, &p->largest))) return st;
    return FPD_STATUS_OK;
}

static enum fpd_status parse_tables(struct ctx *c, const yaml_node_t *n) {
    char b[96];
    if (n->type != YAML_SEQUENCE_NODE)
        return at(c, n, "'tables' must be a list of overrides ('- match: PATTERN' and settings), got %s",
                  describe(n, b, sizeof b));
    struct fpd_batch_pipeline *p = c->p;
    int64_t len = n->data.sequence.items.top - n->data.sequence.items.start;
    p->overrides = fpd_calloc((size_t)len + 1, sizeof *p->overrides);
    if (!p->overrides) return at(c, n, "out of memory");
    static const char *const extra[] = {"match", "checkpoint", NULL};
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
        yaml_node_t *v = yaml_document_get_node(c->doc, *it);
        struct fpd_batch_override *o = &p->overrides[p->n_overrides++];
        o->mark = mark_of(v);
        enum fpd_status st = parse_settings_map(c, "tables", v, &o->s, extra);
        if (st) return st;
        yaml_node_t *m = map_get(c, v, "match", NULL);
        if (!m) return at(c, v, "a 'tables' entry lacks the required key 'match' (a table name pattern)");
        if ((st = want_str(c, "match", m, &o->match))) return st;
        if ((m = map_get(c, v, "checkpoint", NULL)) && (st = want_str(c, "checkpoint", m, &o->checkpoint))) return st;
    }
    return FPD_STATUS_OK;
}

/* ------------------------------------------------------------ load */

void fpd_batch_pipeline_free(struct fpd_batch_pipeline *p) {
    if (!p) return;
    for (int64_t i = 0; i < p->n_inputs; i++) {
        fpd_free(p->inputs[i].path);
        fpd_free(p->inputs[i].name);
        fpd_free(p->inputs[i].output);
        fpd_free(p->inputs[i].output_base);
    }
    fpd_free(p->inputs);
    for (int64_t i = 0; i < p->n_specs; i++) fpd_free(p->specs[i]);
    fpd_free(p->specs);
    for (int64_t i = 0; i < p->n_include; i++) fpd_free(p->include[i]);
    fpd_free(p->include);
    for (int64_t i = 0; i < p->n_exclude; i++) fpd_free(p->exclude[i]);
    fpd_free(p->exclude);
    for (int64_t i = 0; i < p->n_overrides; i++) {
        fpd_free(p->overrides[i].match);
        fpd_free(p->overrides[i].checkpoint);
        fpd_free(p->overrides[i].s.row_freq);
        fpd_free(p->overrides[i].s.order_from);
    }
    fpd_free(p->defaults.row_freq);
    fpd_free(p->defaults.order_from);
    fpd_free(p->overrides);
    fpd_free(p->file);
    fpd_free(p->dir);
    fpd_free(p->folder);
    fpd_free(p->suffix);
    fpd_free(p->report_json);
    fpd_free(p->report_md);
    fpd_free(p);
}

/* 1-based line and column of byte offset off in buf. */
static void offset_to_mark(const unsigned char *buf, size_t len, size_t off, int64_t *line, int64_t *col) {
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off && i < len; i++) {
        if (buf[i] == '\n') (*line)++, *col = 1;
        else if ((buf[i] & 0xc0) != 0x80) (*col)++;
    }
}

static enum fpd_status syntax_error(const yaml_parser_t *ps, const unsigned char *buf, size_t len,
                                    struct fpd_error *err) {
    err->status = FPD_STATUS_CONFIG;
    const char *problem = ps->problem ? ps->problem : "unknown problem";
    if (ps->error == YAML_READER_ERROR) {
        offset_to_mark(buf, len, ps->problem_offset, &err->line, &err->column);
        snprintf(err->msg, sizeof err->msg, "not a readable YAML text: %s (byte offset %zu)", problem,
                 ps->problem_offset);
        return FPD_STATUS_CONFIG;
    }
    err->line = (int64_t)ps->problem_mark.line + 1;
    err->column = (int64_t)ps->problem_mark.column + 1;
    if (ps->context)
        snprintf(err->msg, sizeof err->msg, "YAML syntax error: %s, %s at line %lld, column %lld", problem, ps->context,
                 (long long)ps->context_mark.line + 1, (long long)ps->context_mark.column + 1);
    else
        snprintf(err->msg, sizeof err->msg, "YAML syntax error: %s", problem);
    return FPD_STATUS_CONFIG;
}

/* ------------------------------------------------------------ loading with limits */

/* libyaml's yaml_parser_load builds the whole document first, without limits (flow
 * nesting of depth 100,000 took minutes there) and ignores tags. This builds the
 * same document from the parser's events and stops at the first event beyond a
 * limit: depth BATCH_MAX_DEPTH, BATCH_MAX_NODES nodes counting every alias as the
 * nodes it repeats (so "billion laughs" stops early too), any tag (!!binary,
 * !!str, !local), an undefined alias, an alias inside the node it names, a second
 * document. */

struct load_frame {
    int node;           /* the sequence or mapping being filled */
    int key;            /* a mapping's pending key (0: none)    */
    int64_t first;      /* node count when it started           */
};

struct load_state {
    yaml_document_t *doc;
    struct fpd_error *err;
    struct load_frame frames[BATCH_MAX_DEPTH];
    int depth;
    int64_t count;      /* nodes so far, aliases expanded */
    int64_t *size;      /* per node id (1-based): its nodes, when complete; 0 while open */
    size_t size_cap;
    char **anchor_names;
    int *anchor_nodes;
    size_t n_anchors, anchor_cap;
};

static enum fpd_status load_err(struct load_state *L, yaml_mark_t m, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static enum fpd_status load_err(struct load_state *L, yaml_mark_t m, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(L->err->msg, sizeof L->err->msg, fmt, ap);
    va_end(ap);
    L->err->line = (int64_t)m.line + 1;
    L->err->column = (int64_t)m.column + 1;
    return L->err->status = FPD_STATUS_CONFIG;
}

static enum fpd_status load_oom(struct load_state *L) {
    snprintf(L->err->msg, sizeof L->err->msg, "out of memory");
    return L->err->status = FPD_STATUS_NOMEM;
}

/* A tag on a node: refused, shown as written ("!!binary" for the standard ones). */
static enum fpd_status refuse_tag(struct load_state *L, const yaml_char_t *tag, yaml_mark_t m) {
    const char *t = (const char *)tag, *std = "tag:yaml.org,2002:";
    bool is_std = strncmp(t, std, strlen(std)) == 0;
    return load_err(L, m,
                    "YAML tag '%s%.100s' is not supported: a pipeline holds plain strings, numbers, lists and "
                    "mappings; remove the tag",
                    is_std ? "!!" : "", is_std ? t + strlen(std) : t);
}

/* Count n more nodes at mark m. */
static enum fpd_status count_nodes(struct load_state *L, int64_t n, yaml_mark_t m) {
    L->count += n;
    if (L->count > BATCH_MAX_NODES)
        return load_err(L, m, "more than %d YAML nodes (an alias counts as the nodes it repeats); a pipeline file "
                              "is far smaller", BATCH_MAX_NODES);
    return FPD_STATUS_OK;
}

/* A node was added to the document: give it the event's place, record its anchor. */
static enum fpd_status node_added(struct load_state *L, int id, const yaml_event_t *ev, const yaml_char_t *anchor) {
    if (!id) return load_oom(L);
    yaml_node_t *n = yaml_document_get_node(L->doc, id);
    n->start_mark = ev->start_mark;
    n->end_mark = ev->end_mark;
    if ((size_t)id >= L->size_cap) {
        size_t cap = L->size_cap ? 2 * L->size_cap : 64;
        while (cap <= (size_t)id) cap *= 2;
        if (!grow((void **)&L->size, L->size_cap * sizeof *L->size, cap * sizeof *L->size)) return load_oom(L);
        memset(L->size + L->size_cap, 0, (cap - L->size_cap) * sizeof *L->size);
        L->size_cap = cap;
    }
    if (anchor) {
        if (L->n_anchors == L->anchor_cap) {
            size_t cap = L->anchor_cap ? 2 * L->anchor_cap : 16;
            if (!grow((void **)&L->anchor_names, L->anchor_cap * sizeof *L->anchor_names, cap * sizeof *L->anchor_names) ||
                !grow((void **)&L->anchor_nodes, L->anchor_cap * sizeof *L->anchor_nodes, cap * sizeof *L->anchor_nodes))
                return load_oom(L);
            L->anchor_cap = cap;
        }
        if (!(L->anchor_names[L->n_anchors] = xstrdup((const char *)anchor))) return load_oom(L);
        L->anchor_nodes[L->n_anchors++] = id;
    }
    return FPD_STATUS_OK;
}

/* Put a complete node where it belongs: the root, a list item, a mapping key or value. */
static enum fpd_status attach(struct load_state *L, int id) {
    if (L->depth == 0) return FPD_STATUS_OK; /* the root: node 1 */
    struct load_frame *f = &L->frames[L->depth - 1];
    yaml_node_t *parent = yaml_document_get_node(L->doc, f->node);
    int ok;
    if (parent->type == YAML_SEQUENCE_NODE) {
        ok = yaml_document_append_sequence_item(L->doc, f->node, id);
    } else if (!f->key) {
        f->key = id;
        ok = 1;
    } else {
        ok = yaml_document_append_mapping_pair(L->doc, f->node, f->key, id);
        f->key = 0;
    }
    return ok ? FPD_STATUS_OK : load_oom(L);
}

static enum fpd_status load_event(struct load_state *L, const yaml_event_t *ev) {
    enum fpd_status st;
    int id = 0;
    switch (ev->type) {
    case YAML_ALIAS_EVENT: {
        const char *a = (const char *)ev->data.alias.anchor;
        size_t i = L->n_anchors;
        while (i > 0 && strcmp(L->anchor_names[i - 1], a) != 0) i--;
        if (i == 0) return load_err(L, ev->start_mark, "alias '*%.100s' names no anchor defined before it", a);
        id = L->anchor_nodes[i - 1];
        if (L->size[id] == 0)
            return load_err(L, ev->start_mark, "alias '*%.100s' is inside the node it names (a cycle)", a);
        if ((st = count_nodes(L, L->size[id], ev->start_mark))) return st;
        return attach(L, id);
    }
    case YAML_SCALAR_EVENT:
        if (ev->data.scalar.tag) return refuse_tag(L, ev->data.scalar.tag, ev->start_mark);
        if ((st = count_nodes(L, 1, ev->start_mark))) return st;
        id = yaml_document_add_scalar(L->doc, NULL, ev->data.scalar.value, (int)ev->data.scalar.length,
                                      ev->data.scalar.style);
        if ((st = node_added(L, id, ev, ev->data.scalar.anchor))) return st;
        L->size[id] = 1;
        return attach(L, id);
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
        bool seq = ev->type == YAML_SEQUENCE_START_EVENT;
        const yaml_char_t *tag = seq ? ev->data.sequence_start.tag : ev->data.mapping_start.tag;
        const yaml_char_t *anchor = seq ? ev->data.sequence_start.anchor : ev->data.mapping_start.anchor;
        if (tag) return refuse_tag(L, tag, ev->start_mark);
        if (L->depth == BATCH_MAX_DEPTH)
            return load_err(L, ev->start_mark, "lists and mappings nested more than %d deep; a pipeline needs 4",
                            BATCH_MAX_DEPTH);
        if ((st = count_nodes(L, 1, ev->start_mark))) return st;
        id = seq ? yaml_document_add_sequence(L->doc, NULL, ev->data.sequence_start.style)
                 : yaml_document_add_mapping(L->doc, NULL, ev->data.mapping_start.style);
        if ((st = node_added(L, id, ev, anchor))) return st;
        L->frames[L->depth++] = (struct load_frame){id, 0, L->count - 1};
        return FPD_STATUS_OK;
    }
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT: {
        struct load_frame f = L->frames[--L->depth];
        L->size[f.node] = L->count - f.first;
        return attach(L, f.node);
    }
    default:
        return FPD_STATUS_OK;
    }
}

/* Load the one document of the stream into doc (*made: doc was initialized and
 * must be deleted; false for an empty stream). Errors: CONFIG (syntax, with
 * libyaml's problem and place; a limit; a tag; a second document), NOMEM. */
static enum fpd_status load_document(yaml_parser_t *ps, const unsigned char *buf, size_t len, yaml_document_t *doc,
                                     bool *made, struct fpd_error *err) {
    struct load_state L = {.doc = doc, .err = err};
    enum fpd_status st = FPD_STATUS_OK;
    *made = false;
    for (bool end = false; !end && !st;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(ps, &ev)) {
            st = syntax_error(ps, buf, len, err);
            break;
        }
        if (ev.type == YAML_STREAM_END_EVENT) {
            end = true;
        } else if (ev.type == YAML_DOCUMENT_START_EVENT) {
            if (*made) st = load_err(&L, ev.start_mark, "a second YAML document ('---'); a pipeline file holds one");
            else if (!yaml_document_initialize(doc, NULL, NULL, NULL, 1, 1)) st = load_oom(&L);
            else *made = true;
        } else {
            st = load_event(&L, &ev);
        }
        yaml_event_delete(&ev);
    }
    for (size_t i = 0; i < L.n_anchors; i++) fpd_free(L.anchor_names[i]);
    fpd_free(L.anchor_names);
    fpd_free(L.anchor_nodes);
    fpd_free(L.size);
    return st;
}

static enum fpd_status check_outputs(struct ctx *c, const yaml_node_t *inputs_node) {
    struct fpd_batch_pipeline *p = c->p;
    (void)inputs_node;
    char *rfolder = realpath(p->folder, NULL);
    for (int64_t i = 0; i < p->n_inputs; i++) {
        struct fpd_batch_input *in = &p->inputs[i];
        char *stem = xstrdup(in->name);
        if (!stem) return at(c, NULL, "out of memory");
        size_t l = strlen(stem);
        if (l > 12 && !strcmp(stem + l - 12, ".safetensors")) stem[l - 12] = '\0';
        else if (l > 4 && !strcmp(stem + l - 4, ".npy")) stem[l - 4] = '\0';
        in->output_base = xasprintf("%s%s", stem, p->suffix);
        fpd_free(stem);
        if (!in->output_base || !(in->output = xasprintf("%s/%s", p->folder, in->output_base))) {
            free(rfolder);
            return at(c, NULL, "out of memory");
        }
        /* an input that is one of this pipeline's outputs, or looks like one */
        char *rin = realpath(in->path, NULL);
        if (rin && rfolder) {
            const char *slash = strrchr(rin, '/');
            size_t dl = (size_t)(slash - rin), sl = strlen(p->suffix), nl = strlen(slash + 1);
            bool same_dir = strlen(rfolder) == (dl ? dl : 1) && strncmp(rin, rfolder, dl ? dl : 1) == 0;
            if (same_dir && nl >= sl && !strcmp(slash + 1 + nl - sl, p->suffix)) {
                c->err->line = in->mark.line;
                c->err->column = in->mark.column;
                c->err->status = FPD_STATUS_CONFIG;
                snprintf(c->err->msg, sizeof c->err->msg,
                         "input '%s' (from '%s') is in the output folder and ends in the suffix '%s': it looks like "
                         "an output of this pipeline; narrow the pattern or change output.folder",
                         in->path, in->spec, p->suffix);
                free(rin);
                free(rfolder);
                return FPD_STATUS_CONFIG;
            }
        }
        free(rin);
        for (int64_t j = 0; j < i; j++) {
            if (strcmp(p->inputs[j].output_base, in->output_base) == 0) {
                c->err->line = in->mark.line;
                c->err->column = in->mark.column;
                c->err->status = FPD_STATUS_CONFIG;
                snprintf(c->err->msg, sizeof c->err->msg,
                         "duplicate output path '%s': inputs '%s' (line %lld) and '%s' (line %lld) both write it; "
                         "rename one of them or run them in separate pipelines",
                         in->output, p->inputs[j].path, (long long)p->inputs[j].mark.line, in->path,
                         (long long)in->mark.line);
                free(rfolder);
                return FPD_STATUS_CONFIG;
            }
        }
    }
    free(rfolder);
    return FPD_STATUS_OK;
}

/* Why the run could not create files in folder (creating it and its parents if
 * missing, as it does): false and a reason in why, or true. */
static bool folder_usable(const char *folder, char *why, size_t cap) {
    size_t n = strlen(folder);
    char *s = fpd_malloc(n + 2); /* room for "." */
    if (!s) return snprintf(why, cap, "out of memory"), false;
    memcpy(s, n ? folder : ".", n ? n + 1 : 2);
    bool ok = false;
    for (;;) {
        struct stat sb;
        if (stat(s, &sb) == 0) {
            if (!S_ISDIR(sb.st_mode)) snprintf(why, cap, "'%s' is not a folder", s);
            else if (access(s, W_OK | X_OK) != 0) snprintf(why, cap, "'%s' is not writable: %s", s, strerror(errno));
            else
                ok = true;
            break;
        }
        if ((errno != ENOENT && errno != ENOTDIR) || !strcmp(s, ".") || !strcmp(s, "/")) {
            snprintf(why, cap, "cannot reach '%s': %s", s, strerror(errno));
            break;
        }
        char *slash = strrchr(s, '/');
        if (!slash) strcpy(s, "."); /* a relative path: the working folder */
        else if (slash == s) s[1] = '\0';
        else *slash = '\0';
    }
    fpd_free(s);
    return ok;
}

/* --check catches what the run would: every folder the run writes into (the output
 * folder, the reports' folders) is a folder it can create or write. */
static enum fpd_status check_folders(struct ctx *c) {
    struct fpd_batch_pipeline *p = c->p;
    char why[600];
    if (!folder_usable(p->folder, why, sizeof why))
        return at(c, c->folder_node, "output.folder '%s' cannot hold the outputs: %s", p->folder, why);
    const char *reports[2] = {p->report_json, p->report_md};
    const yaml_node_t *nodes[2] = {c->json_node, c->md_node};
    for (int i = 0; i < 2; i++) {
        char *dir = xstrdup(reports[i]);
        if (!dir) return at(c, NULL, "out of memory");
        char *slash = strrchr(dir, '/');
        if (slash) slash[slash == dir] = '\0'; /* "/r.json": the folder is "/" */
        bool ok = folder_usable(slash ? dir : ".", why, sizeof why);
        fpd_free(dir);
        if (!ok)
            return at(c, nodes[i] ? nodes[i] : c->folder_node, "report.%s '%s' cannot be written: %s",
                      i ? "markdown" : "json", reports[i], why);
    }
    return FPD_STATUS_OK;
}

enum fpd_status fpd_batch_pipeline_load(const char *path, struct fpd_batch_pipeline **out, struct fpd_error *err) {
    struct fpd_error local;
    if (!err) err = &local;
    memset(err, 0, sizeof *err);
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err->msg, sizeof err->msg, "cannot read the pipeline file: %s", strerror(errno));
        return err->status = FPD_STATUS_IO;
    }
    unsigned char *buf = fpd_malloc(BATCH_MAX_FILE + 1);
    size_t len = buf ? fread(buf, 1, BATCH_MAX_FILE + 1, f) : 0;
    bool rerr = ferror(f);
    fclose(f);
    if (!buf || rerr || len > BATCH_MAX_FILE) {
        snprintf(err->msg, sizeof err->msg, "%s", !buf ? "out of memory" : rerr ? "read error" : "file larger than 16 MiB");
        fpd_free(buf);
        return err->status = FPD_STATUS_IO;
    }
    enum fpd_status st = fpd_batch_pipeline_parse(path, buf, len, out, err);
    fpd_free(buf);
    return st;
}

enum fpd_status fpd_batch_pipeline_parse(const char *path, const unsigned char *buf, size_t len,
                                         struct fpd_batch_pipeline **out, struct fpd_error *err) {
    struct fpd_error local;
    if (!err) err = &local;
    enum fpd_status st = FPD_STATUS_OK;
    yaml_parser_t parser;
    yaml_document_t doc;
    bool parser_made = false, doc_made = false;
    struct fpd_batch_pipeline *p = fpd_calloc(1, sizeof *p);
    memset(err, 0, sizeof *err);
    *out = NULL;
    if (!p) {
        snprintf(err->msg, sizeof err->msg, "out of memory");
        return err->status = FPD_STATUS_NOMEM;
    }
    p->file = xstrdup(path);
    const char *slash = strrchr(path, '/');
    p->dir = slash ? xstrndup(path, slash == path ? 1 : (size_t)(slash - path)) : xstrdup(".");
    p->suffix = xstrdup(".fpd.safetensors");
    p->include = fpd_calloc(1, sizeof *p->include);
    if (p->include) p->include[0] = xstrdup("*");
    p->n_include = 1;
    p->min_rows = 1000;
    if (!p->file || !p->dir || !p->suffix || !p->include || !p->include[0]) {
        snprintf(err->msg, sizeof err->msg, "out of memory");
        st = err->status = FPD_STATUS_NOMEM;
        goto done;
    }

    if (len > BATCH_MAX_FILE) {
        snprintf(err->msg, sizeof err->msg, "file larger than 16 MiB");
        st = err->status = FPD_STATUS_IO;
        goto done;
    }
    if (!yaml_parser_initialize(&parser)) {
        snprintf(err->msg, sizeof err->msg, "out of memory");
        st = err->status = FPD_STATUS_NOMEM;
        goto done;
    }
    parser_made = true;
    yaml_parser_set_input_string(&parser, buf, len);
    if ((st = load_document(&parser, buf, len, &doc, &doc_made, err))) goto done;
    yaml_node_t *root = doc_made ? yaml_document_get_root_node(&doc) : NULL;
    if (!root) {
        err->line = err->column = 1;
        snprintf(err->msg, sizeof err->msg, "the pipeline file is empty (it needs at least 'inputs' and 'output')");
        st = err->status = FPD_STATUS_CONFIG;
        goto done;
    }

    struct ctx c = {&doc, err, p, {0, 0}, NULL, NULL, NULL, NULL, false};
    static const char *const known[] = {"version", "inputs", "output", "report", "select", "defaults", "tables", NULL};
    if ((st = check_mapping(&c, "the pipeline", root, known))) goto done;
    yaml_node_t *v, *kn;
    if ((v = map_get(&c, root, "version", &kn))) {
        int64_t ver;
        if ((st = want_int(&c, "version", v, 0, INT64_MAX, &ver))) goto done;
        if (ver != 1) {
            st = at(&c, v, "pipeline version %lld is not supported by fpd-batch %s (it reads version 1)",
                    (long long)ver, fpd_version());
            goto done;
        }
    }
    /* settings, output, select and report before inputs, so their errors come first */
    if ((v = map_get(&c, root, "defaults", NULL)) && (st = parse_settings_map(&c, "defaults", v, &p->defaults, NULL)))
        goto done;
    if ((v = map_get(&c, root, "tables", NULL)) && (st = parse_tables(&c, v))) goto done;
    if (c.order_key && !c.order_from_seen) { /* as fpd-compress --order-column without --order-from */
        st = at(&c, c.order_key, "'%s' goes with 'order_from' (the interactions file), which the pipeline does not set",
                node_text(c.order_key));
        goto done;
    }
    if ((v = map_get(&c, root, "select", NULL)) && (st = parse_select(&c, v))) goto done;
    if ((v = map_get(&c, root, "report", NULL)) && (st = parse_report(&c, v))) goto done;
    if (!(v = map_get(&c, root, "output", NULL))) {
        st = at(&c, root, "missing the required key 'output' (with 'folder')");
        goto done;
    }
    if ((st = parse_output(&c, v))) goto done;
    yaml_node_t *inputs = map_get(&c, root, "inputs", NULL);
    if (!inputs) {
        st = at(&c, root, "missing the required key 'inputs' (a list of checkpoints)");
        goto done;
    }
    if (c.cuda_mark.line) { /* device: cuda must be able to run the engine, now rather than mid-run */
        struct fpd_device cuda = {FPD_DEVICE_REQUEST_CUDA, 0};
        struct fpd_device_choice b;
        struct fpd_error why;
        memset(&why, 0, sizeof why);
        if (fpd_device_open(&cuda, &b, &why)) {
            err->line = c.cuda_mark.line;
            err->column = c.cuda_mark.column;
            snprintf(err->msg, sizeof err->msg,
                     "device: cuda, but no CUDA device is available (%.400s); use device: auto or cpu", why.msg);
            st = err->status = FPD_STATUS_BACKEND;
            goto done;
        }
        fpd_device_close(&b);
    }
    if ((st = parse_inputs(&c, inputs))) goto done;
    if (!p->report_json) p->report_json = xasprintf("%s/report.json", p->folder);
    if (!p->report_md) p->report_md = xasprintf("%s/report.md", p->folder);
    if (!p->report_json || !p->report_md) {
        st = at(&c, NULL, "out of memory");
        goto done;
    }
    if ((st = check_outputs(&c, inputs))) goto done;
    if ((st = check_folders(&c))) goto done;
done:
    if (doc_made) yaml_document_delete(&doc);
    if (parser_made) yaml_parser_delete(&parser);
    if (st) fpd_batch_pipeline_free(p);
    else *out = p;
    return st;
}
