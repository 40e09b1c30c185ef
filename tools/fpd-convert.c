/*
 * fpd-convert - format conversion around FPD checkpoints (DESIGN.md section 1):
 *
 *   --to dense   FPD (or TT-Rec layout) checkpoint -> dense safetensors: every table
 *                is reconstructed (fpd_checkpoint_load_layer + fpd_layer_reconstruct,
 *                F32 compute) into a tensor named after the table, in the table's
 *                source_dtype (or --dtype); every other tensor is copied byte for
 *                byte; the input's metadata is kept, less the FPD/TT-Rec keys.
 *                A .npy input becomes a one-tensor safetensors file (bytes copied).
 *   --to npy     one tensor or table (--tensor NAME) -> .npy (fpd_npy_write);
 *                bytes copied, tables reconstructed.
 *   --to ttrec   FPD tables -> the layout of the TT-Rec PyTorch library
 *                (facebookresearch/FBTT-Embedding, TTEmbeddingBag.tt_cores).
 *   --to fpd     that layout -> FPD v1 (the inverse; exact).
 *
 * TT-Rec layout (read from FBTT-Embedding's tt_embeddings_ops.py): TTEmbeddingBag
 * holds tt_cores[i] of shape [num_tables, tt_p_shapes[i], tt_ranks[i] * tt_q_shapes[i]
 * * tt_ranks[i+1]], F32, with num_tables = 1 for one table; within a row slice the
 * last axis is (r_i, q_i, r_{i+1}) in C order (its full_weight() views it as
 * [p_i, r_i, q_i, r_{i+1}] and permutes [1, 0, 2, 3]); row digits are first-core
 * most significant (its L buffer) and columns likewise (full_weight's permute). That
 * is exactly an FPD core [p = 1, n_m, r_m, d_m, r_{m+1}] with p_i = n_m, q_i = d_m,
 * so the export is a reshape of the same bytes (F16/BF16 cores are widened to F32,
 * which is exact). Tensor names follow a PyTorch state_dict: table "X.weight"
 * (an nn.Embedding/EmbeddingBag at module X) becomes "X.tt_cores.0".."X.tt_cores.{k-1}",
 * so load_state_dict(strict=False) on a model whose module X is a TTEmbeddingBag
 * picks them up; any other table name T becomes "T.tt_cores.i". Metadata key
 * "ttrec.table.X" holds a JSON object with name, num_embeddings, embedding_dim,
 * tt_p_shapes, tt_q_shapes, tt_ranks (the inner ranks, as TTEmbeddingBag's
 * constructor takes them) and "fpd" (the table's FPD metadata, so --to fpd restores
 * it exactly). TT-Rec has no sum of terms and no row permutation, and
 * TTEmbeddingBag takes 2 to 4 cores: other tables are refused.
 *
 * Exit status: 0 ok, 1 runtime failure (unreadable input, a table that cannot be
 * converted), 2 usage error.
 */
#include "tools/cli.h"
#include "tools/pipe.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <locale.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define TTREC_META_PREFIX "ttrec.table."
#define BIG_ALLOC_BYTES ((size_t)256 << 20) /* larger buffers are backed by a file */

static void usage(FILE *f) {
    fprintf(f,
            "Usage: fpd-convert IN -o OUT [--to dense|npy|ttrec|fpd] [options]\n"
            "Convert between FPD checkpoints, dense checkpoints, .npy arrays and the TT-Rec layout.\n"
            "IN - reads standard input; -o - writes standard output (no report then).\n"
            "\n"
            "  --to dense (or safetensors)  FPD/TT-Rec/row-wise checkpoint -> dense safetensors: each\n"
            "               table is reconstructed or dequantized (int8/int4: code * scale + bias, F32)\n"
            "               in its source dtype; other tensors are copied\n"
            "               byte for byte. A .npy IN becomes a one-tensor safetensors file.\n"
            "  --to npy     one tensor or table (--tensor NAME) -> .npy; tables are reconstructed.\n"
            "  --to ttrec   FPD tables -> FBTT-Embedding TTEmbeddingBag tt_cores ('X.weight' becomes\n"
            "               'X.tt_cores.0' .. : [1, n_i, r_i*d_i*r_{i+1}] F32); p = 1, 2-4 cores, no row_perm,\n"
            "               no free coordinates (free/1).\n"
            "  --to fpd     the TT-Rec layout written by --to ttrec -> FPD v1 (exact inverse); with\n"
            "               --vocabulary-out, FPD -> FPD without row permutations, with --free-dtype,\n"
            "               FPD -> FPD with E re-stored (below).\n"
            "Default: npy when OUT ends in .npy, else dense.\n"
            "\n"
            "Options:\n"
            "  -o, --output OUT     file to write (atomically); - for standard output\n"
            "      --to FORMAT      dense, safetensors, npy, ttrec or fpd\n"
            "  -t, --tensor NAME    the tensor or table to write (--to npy), or the name of the\n"
            "                       tensor a .npy IN becomes (default: the file's stem)\n"
            "      --dtype T        dtype of reconstructed tables (F32, F64, F16, BF16; default: the\n"
            "                       table's source_dtype); with --to npy also converts a float tensor\n"
            "      --vocabulary-out MAP  with --to fpd: fold each FPD table's row permutation\n"
            "                       (T.fpd.row_perm) into the id vocabulary: MAP gets 'table, id,\n"
            "                       row' lines (TSV), the output the tables without row_perm and\n"
            "                       with rows = max(row_perm) + 1; looking up id in IN equals\n"
            "                       looking up row in OUT (to F32 rounding). Remap the ids in the data\n"
            "                       pipeline's vocabulary; the layer stores no permutation then\n"
            "      --free-dtype T   with --to fpd: store the free coordinates' E (free/1) of every FPD\n"
            "                       table that has them as int8 or int4 rows (FBGEMM's fused row-wise\n"
            "                       layout, extension free-rowwise/1; int4: ceil(c/2) + 4 bytes a row\n"
            "                       instead of 4c), as int8-sym or int4-sym rows (symmetric codes, one\n"
            "                       F16 scale a row, extension free-sym/1; int4-sym: ceil(c/2) + 2\n"
            "                       bytes) or back in the core dtype ('core'); cores, P and\n"
            "                       row_perm are unchanged. Combines with --vocabulary-out\n"
            "  -f, --force          overwrite OUT (and MAP) if it exists\n"
            "      --json           print what was written as JSON (schema \"fpd-convert/2\")\n"
            "  -q, --quiet          print nothing on success\n"
            "  -h, --help           this help\n"
            "      --version        version and build features\n"
            "\n"
            "Round trips are exact: FPD -> dense -> npy -> safetensors keeps every value bit for bit\n"
            "(dense values are the F32 reconstruction, rounded once to the output dtype), and\n"
            "FPD -> ttrec -> fpd gives back the same cores and metadata.\n"
            "Exit status: 0 ok, 1 runtime failure, 2 usage error.\n"
            "Example: fpd-convert model.fpd.safetensors -o model.dense.safetensors\n");
}

enum out_kind { OUT_DENSE, OUT_NPY, OUT_TTREC, OUT_FPD, OUT_NONE };
static const char *const out_kind_name[] = {"dense", "npy", "ttrec", "fpd", "?"};

/* One buffer we own: malloc'ed, or (when large) a shared mapping of an unlinked
 * file in the output's folder, so a table larger than memory pages out to disk. */
struct buf {
    void *p;
    size_t n;
    bool mapped;
};

static void buf_free(struct buf *b) {
    if (b->mapped) munmap(b->p, b->n);
    else free(b->p);
    memset(b, 0, sizeof *b);
}

static bool buf_alloc(struct buf *b, size_t n, const char *out_path) {
    memset(b, 0, sizeof *b);
    b->n = n;
    if (n < BIG_ALLOC_BYTES) {
        b->p = malloc(n ? n : 1);
        return b->p != NULL;
    }
    char tmpl[4096];
    const char *slash = strrchr(out_path, '/');
    snprintf(tmpl, sizeof tmpl, "%.*s%s.fpd-convert-scratch-XXXXXX", slash ? (int)(slash - out_path) : 1,
             slash ? out_path : ".", "/");
    int fd = mkstemp(tmpl);
    if (fd < 0) return false;
    unlink(tmpl);
    void *p = MAP_FAILED;
    if (ftruncate(fd, (off_t)n) == 0) p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return false;
    b->p = p;
    b->mapped = true;
    return true;
}

/* ------------------------------------------------------------ tables in the input */

/* A table of the input: an FPD table (fpd.table.T) or one in the TT-Rec layout
 * (ttrec.table.X). name is the dense tensor it stands for. */
struct table {
    bool ttrec;
    bool rowwise;      /* row-wise int8/int4 (fpd.rowwise.T, tensor T.rowwise.fused) */
    struct fpd_rowwise_table q; /* its view into the input                  */
    char *name;        /* T                                              */
    char *prefix;      /* TT-Rec: X (tensors X.tt_cores.i); FPD: T        */
    char *meta_key;    /* the metadata key that describes it              */
    struct fpd_table_meta meta; /* FPD metadata (TT-Rec: from its "fpd" or built) */
    bool has_fpd_meta; /* TT-Rec: the JSON carried the original FPD metadata */
};

struct input {
    const char *path;
    struct fpd_input in;
    void *hold;        /* standard input's bytes ("-"), freed last       */
    struct table *tables;
    int64_t n_tables;
};

static bool starts_with(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

/* Does tensor `name` belong to a table (T.fpd.* or X.tt_cores.<digits>)? */
static const struct table *owner_of(const struct input *x, const char *name) {
    for (int64_t i = 0; i < x->n_tables; i++) {
        const struct table *t = &x->tables[i];
        size_t n = strlen(t->prefix);
        if (strncmp(name, t->prefix, n) != 0) continue;
        const char *rest = name + n;
        if (t->rowwise) {
            if (starts_with(rest, ".rowwise.")) return t;
            continue;
        }
        if (!t->ttrec && starts_with(rest, ".fpd.")) return t;
        if (t->ttrec && starts_with(rest, ".tt_cores.")) return t;
    }
    return NULL;
}

static const char *table_source(const struct table *t) {
    return t->ttrec ? "ttrec" : t->rowwise ? fpd_rowwise_name(t->q.kind) : "fpd";
}

static const struct table *find_table(const struct input *x, const char *name) {
    for (int64_t i = 0; i < x->n_tables; i++)
        if (strcmp(x->tables[i].name, name) == 0) return &x->tables[i];
    return NULL;
}

static int64_t json_int_at(json_t *a, size_t i) { return (int64_t)json_integer_value(json_array_get(a, i)); }

/* Parse "ttrec.table.X" into t (path in messages). */
static bool parse_ttrec_meta(const char *path, const char *prefix, const char *json, struct table *t) {
    json_error_t je;
    json_t *root = json_loads(json, 0, &je);
    bool ok = false;
    struct fpd_error err = {0};
    if (!json_is_object(root)) {
        cli_error("%s: metadata '%s%s' is not a JSON object", path, TTREC_META_PREFIX, prefix);
        goto done;
    }
    json_t *ps = json_object_get(root, "tt_p_shapes"), *qs = json_object_get(root, "tt_q_shapes");
    json_t *rs = json_object_get(root, "tt_ranks"), *name = json_object_get(root, "name");
    json_t *ne = json_object_get(root, "num_embeddings"), *ed = json_object_get(root, "embedding_dim");
    if (!json_is_array(ps) || !json_is_array(qs) || !json_is_array(rs) || !json_is_integer(ne) ||
        !json_is_integer(ed) || json_array_size(ps) < 1 || json_array_size(ps) > FPD_MAX_MODES ||
        json_array_size(qs) != json_array_size(ps) || json_array_size(rs) + 1 != json_array_size(ps)) {
        cli_error("%s: metadata '%s%s' lacks num_embeddings, embedding_dim, tt_p_shapes, tt_q_shapes or tt_ranks "
                  "(k-1 inner ranks), or their lengths disagree",
                  path, TTREC_META_PREFIX, prefix);
        goto done;
    }
    json_t *fpd = json_object_get(root, "fpd");
    if (json_is_object(fpd)) {
        char *s = json_dumps(fpd, JSON_COMPACT);
        enum fpd_status st = s ? fpd_table_meta_from_json(s, prefix, &t->meta, &err) : FPD_STATUS_NOMEM;
        free(s);
        if (st) {
            cli_error("%s: metadata '%s%s': %s", path, TTREC_META_PREFIX, prefix, err.msg);
            goto done;
        }
        t->has_fpd_meta = true;
    } else {
        memset(&t->meta, 0, sizeof t->meta);
        t->meta.source_dtype = FPD_DTYPE_F32;
        t->meta.core_dtype = FPD_DTYPE_F32;
        snprintf(t->meta.fit, sizeof t->meta.fit, "ttrec");
        t->meta.rel_error = NAN;
    }
    struct fpd_layer_shape s;
    memset(&s, 0, sizeof s);
    s.k = (int32_t)json_array_size(ps);
    s.rows = (int64_t)json_integer_value(ne);
    s.dim = (int64_t)json_integer_value(ed);
    s.terms = 1;
    s.ranks[0] = s.ranks[s.k] = 1;
    for (int32_t m = 0; m < s.k; m++) {
        s.row_shape[m] = json_int_at(ps, (size_t)m);
        s.col_shape[m] = json_int_at(qs, (size_t)m);
        if (m > 0) s.ranks[m] = json_int_at(rs, (size_t)m - 1);
    }
    if (fpd_layer_shape_check(&s, &err)) {
        cli_error("%s: metadata '%s%s': %s", path, TTREC_META_PREFIX, prefix, err.msg);
        goto done;
    }
    if (t->has_fpd_meta && memcmp(&s, &t->meta.shape, sizeof s) != 0) {
        cli_error("%s: metadata '%s%s': the TT-Rec shapes disagree with the FPD metadata it carries", path,
                  TTREC_META_PREFIX, prefix);
        goto done;
    }
    t->meta.shape = s;
    const char *nm = json_string_value(name);
    if (nm && *nm) t->name = strdup(nm);
    else if (asprintf(&t->name, "%s.weight", prefix) < 0) t->name = NULL;
    ok = t->name != NULL;
    if (!ok) cli_error("out of memory");
done:
    json_decref(root);
    return ok;
}

static void input_free(struct input *x) {
    for (int64_t i = 0; i < x->n_tables; i++) {
        free(x->tables[i].name);
        free(x->tables[i].prefix);
        free(x->tables[i].meta_key);
    }
    free(x->tables);
    fpd_input_free(&x->in);
    free(x->hold);
}

/* Open IN and list its tables. Returns a CLI exit code. */
static int input_open(const char *path, struct input *x) {
    struct fpd_error err = {0};
    memset(x, 0, sizeof *x);
    x->path = path;
    if (pipe_input_open(path, &x->in, &x->hold, &err)) {
        cli_error("%s", err.msg);
        return CLI_EXIT_FAILURE;
    }
    if (!x->in.st) return CLI_EXIT_OK;
    if (fpd_checkpoint_check_extensions(x->in.st, &err)) {
        cli_error("%s", err.msg);
        return CLI_EXIT_FAILURE;
    }
    int64_t nm = fpd_safetensors_metadata_count(x->in.st);
    x->tables = calloc((size_t)nm + 1, sizeof *x->tables);
    if (!x->tables) {
        cli_error("out of memory");
        return CLI_EXIT_FAILURE;
    }
    for (int64_t i = 0; i < nm; i++) {
        const char *key, *val;
        fpd_safetensors_metadata_at(x->in.st, i, &key, &val);
        struct table *t = &x->tables[x->n_tables];
        if (starts_with(key, FPD_META_ROWWISE_PREFIX)) {
            const char *name = key + strlen(FPD_META_ROWWISE_PREFIX);
            struct fpd_rowwise_meta rm;
            if (fpd_checkpoint_load_rowwise(x->in.st, name, &t->q, &rm, &err)) {
                cli_error("%s", err.msg);
                return CLI_EXIT_FAILURE;
            }
            t->rowwise = true;
            t->meta.shape.rows = rm.rows;
            t->meta.shape.dim = rm.dim;
            t->meta.source_dtype = rm.source_dtype;
            t->meta.core_dtype = FPD_DTYPE_COUNT;
            t->name = strdup(name);
            t->prefix = strdup(name);
        } else if (starts_with(key, FPD_META_TABLE_PREFIX)) {
            const char *name = key + strlen(FPD_META_TABLE_PREFIX);
            if (fpd_table_meta_from_json(val, name, &t->meta, &err)) {
                cli_error("%s: %s", path, err.msg);
                return CLI_EXIT_FAILURE;
            }
            t->name = strdup(name);
            t->prefix = strdup(name);
        } else if (starts_with(key, TTREC_META_PREFIX)) {
            const char *prefix = key + strlen(TTREC_META_PREFIX);
            t->ttrec = true;
            t->prefix = strdup(prefix);
            if (!t->prefix || !parse_ttrec_meta(path, prefix, val, t)) {
                free(t->prefix);
                return CLI_EXIT_FAILURE;
            }
        } else {
            continue;
        }
        t->meta_key = strdup(key);
        x->n_tables++;
        if (!t->name || !t->prefix || !t->meta_key) {
            cli_error("out of memory");
            return CLI_EXIT_FAILURE;
        }
    }
    return CLI_EXIT_OK;
}

/* Load table t of x as a layer (F32 cores; an int8/int4 E of free coordinates kept as
 * the file's rows: reconstruct decodes them, the FPD writer copies them when the kind
 * stays and re-encodes them otherwise; a fraction of E's memory in F32). Returns false
 * after printing. */
static bool load_layer(const struct input *x, const struct table *t, struct fpd_layer **out) {
    struct fpd_error err = {0};
    *out = NULL;
    if (!t->ttrec) {
        if (fpd_checkpoint_load_layer_stored(x->in.st, t->name, out, &err)) {
            cli_error("%s", err.msg);
            return false;
        }
        return true;
    }
    const struct fpd_layer_shape *s = &t->meta.shape;
    for (int32_t m = 0; m < s->k; m++) {
        char name[4096];
        snprintf(name, sizeof name, "%s.tt_cores.%d", t->prefix, (int)m);
        const struct fpd_tensor_info *ti = fpd_safetensors_find(x->in.st, name);
        int64_t want = s->ranks[m] * s->col_shape[m] * s->ranks[m + 1];
        if (!ti) {
            cli_error("%s: table '%s': tensor '%s' is missing", x->path, t->name, name);
            goto fail;
        }
        if (!fpd_dtype_is_float(ti->dtype) || ti->ndim != 3 || ti->shape[0] != 1 || ti->shape[1] != s->row_shape[m] ||
            ti->shape[2] != want) {
            char sh[128];
            cli_error("%s: table '%s': tensor '%s' is %s [%s]; F32 [1, %lld, %lld] expected", x->path, t->name, name,
                      fpd_dtype_name(ti->dtype), cli_shape(ti->shape, ti->ndim, sh, sizeof sh),
                      (long long)s->row_shape[m], (long long)want);
            goto fail;
        }
        if (!*out && fpd_layer_init(s, out, &err)) {
            cli_error("%s: table '%s': %s", x->path, t->name, err.msg);
            goto fail;
        }
        fpd_dtype_to_f32(ti->dtype, ti->data, fpd_layer_core(*out, m), fpd_layer_shape_core_numel(s, m));
    }
    char extra[4096];
    snprintf(extra, sizeof extra, "%s.tt_cores.%d", t->prefix, (int)s->k);
    if (fpd_safetensors_find(x->in.st, extra)) {
        cli_error("%s: table '%s': tensor '%s' exists but the metadata says %d cores", x->path, t->name, extra,
                  (int)s->k);
        goto fail;
    }
    return true;
fail:
    fpd_layer_free(*out);
    *out = NULL;
    return false;
}

/* Reconstruct a layer into a new buffer of [rows, dim] in dtype. */
static bool reconstruct(const struct fpd_layer *layer, const struct fpd_rowwise_table *q, enum fpd_dtype dtype,
                        const char *out_path, const char *what, struct buf *b) {
    struct fpd_layer_shape qs = {0};
    if (q) {
        qs.rows = q->rows;
        qs.dim = q->dim;
    }
    const struct fpd_layer_shape *s = layer ? fpd_layer_get_shape(layer) : &qs;
    struct fpd_error err = {0};
    size_t es = fpd_dtype_size(dtype), n = 0;
    if (__builtin_mul_overflow((size_t)s->rows * (size_t)s->dim, es, &n) || !buf_alloc(b, n, out_path)) {
        cli_error("%s: out of memory for %lld x %lld %s values", what, (long long)s->rows, (long long)s->dim,
                  fpd_dtype_name(dtype));
        return false;
    }
    const int64_t block = 4096;
    float *tmp = dtype == FPD_DTYPE_F32 ? NULL : malloc((size_t)(block * s->dim) * sizeof(float));
    if (dtype != FPD_DTYPE_F32 && !tmp) {
        cli_error("out of memory");
        buf_free(b);
        return false;
    }
    for (int64_t r0 = 0; r0 < s->rows; r0 += block) {
        int64_t r1 = r0 + block < s->rows ? r0 + block : s->rows;
        unsigned char *dst = (unsigned char *)b->p + (size_t)(r0 * s->dim) * es;
        float *f = dtype == FPD_DTYPE_F32 ? (float *)dst : tmp;
        if (layer ? fpd_layer_reconstruct(layer, r0, r1, f, &err) : fpd_rowwise_reconstruct(q, r0, r1, f, &err)) {
            cli_error("%s: %s", what, err.msg);
            free(tmp);
            buf_free(b);
            return false;
        }
        int64_t cnt = (r1 - r0) * s->dim;
        for (int64_t e = 0; e < cnt; e++)
            if (!isfinite(f[e])) {
                cli_error("%s: row %lld, column %lld is %g: the stored table is finite but its values overflow F32; "
                          "nothing written", what, (long long)(r0 + e / s->dim), (long long)(e % s->dim), (double)f[e]);
                free(tmp);
                buf_free(b);
                return false;
            }
        if (dtype == FPD_DTYPE_F64)
            for (int64_t i = 0; i < cnt; i++) ((double *)dst)[i] = (double)f[i];
        else if (dtype != FPD_DTYPE_F32)
            fpd_dtype_from_f32(dtype, f, dst, cnt);
    }
    free(tmp);
    return true;
}

/* Convert a float tensor's bytes to dtype through F32 (or copy when equal). */
static bool convert_tensor(const struct fpd_tensor_info *ti, enum fpd_dtype dtype, const char *out_path,
                           struct buf *b) {
    int64_t n = fpd_tensor_info_numel(ti);
    size_t es = fpd_dtype_size(dtype);
    if (!buf_alloc(b, (size_t)n * es, out_path)) {
        cli_error("out of memory");
        return false;
    }
    const int64_t block = 1 << 16;
    float *tmp = malloc((size_t)block * sizeof(float));
    if (!tmp) {
        buf_free(b);
        cli_error("out of memory");
        return false;
    }
    size_t ies = fpd_dtype_size(ti->dtype);
    for (int64_t i0 = 0; i0 < n; i0 += block) {
        int64_t cnt = i0 + block < n ? block : n - i0;
        fpd_dtype_to_f32(ti->dtype, (const unsigned char *)ti->data + (size_t)i0 * ies, tmp, cnt);
        unsigned char *dst = (unsigned char *)b->p + (size_t)i0 * es;
        if (dtype == FPD_DTYPE_F64)
            for (int64_t i = 0; i < cnt; i++) ((double *)dst)[i] = (double)tmp[i];
        else
            fpd_dtype_from_f32(dtype, tmp, dst, cnt);
    }
    free(tmp);
    return true;
}

/* ------------------------------------------------------------ output assembly */

struct out_list {
    struct fpd_tensor_info *t;
    const char **src;  /* "copied", "fpd", "ttrec", ... per tensor, for the report */
    int64_t n, cap;
    struct buf *bufs;  /* owned data */
    int64_t n_bufs, cap_bufs;
    char **names;      /* owned names */
    int64_t n_names, cap_names;
    const char **mkeys, **mvals;
    int64_t n_meta, cap_meta;
    char **owned_strs; /* owned metadata values/keys */
    int64_t n_strs, cap_strs;
};

#define GROW(arr, n, cap)                                                                      \
    do {                                                                                       \
        if ((n) >= (cap)) {                                                                    \
            int64_t nc = (cap) ? 2 * (cap) : 16;                                               \
            void *np = realloc((arr), (size_t)nc * sizeof *(arr));                             \
            if (!np) {                                                                         \
                cli_error("out of memory");                                                    \
                return false;                                                                  \
            }                                                                                  \
            (arr) = np;                                                                        \
            (cap) = nc;                                                                        \
        }                                                                                      \
    } while (0)

static bool out_add(struct out_list *o, const struct fpd_tensor_info *t, const char *src) {
    if (o->n >= o->cap) {
        int64_t nc = o->cap ? 2 * o->cap : 16;
        void *a = realloc(o->t, (size_t)nc * sizeof *o->t);
        if (a) o->t = a;
        void *b = a ? realloc(o->src, (size_t)nc * sizeof *o->src) : NULL;
        if (b) o->src = b;
        if (!a || !b) {
            cli_error("out of memory");
            return false;
        }
        o->cap = nc;
    }
    o->t[o->n] = *t;
    o->src[o->n++] = src;
    return true;
}

static bool out_own_buf(struct out_list *o, struct buf *b) {
    GROW(o->bufs, o->n_bufs, o->cap_bufs);
    o->bufs[o->n_bufs++] = *b;
    memset(b, 0, sizeof *b);
    return true;
}

static char *out_own_str(struct out_list *o, char *s) {
    if (!s) {
        cli_error("out of memory");
        return NULL;
    }
    if (o->n_strs >= o->cap_strs) {
        int64_t nc = o->cap_strs ? 2 * o->cap_strs : 16;
        void *np = realloc(o->owned_strs, (size_t)nc * sizeof *o->owned_strs);
        if (!np) {
            free(s);
            cli_error("out of memory");
            return NULL;
        }
        o->owned_strs = np;
        o->cap_strs = nc;
    }
    o->owned_strs[o->n_strs++] = s;
    return s;
}

static bool out_meta(struct out_list *o, const char *k, const char *v) {
    if (o->n_meta >= o->cap_meta) {
        int64_t nc = o->cap_meta ? 2 * o->cap_meta : 16;
        void *a = realloc(o->mkeys, (size_t)nc * sizeof *o->mkeys);
        if (a) o->mkeys = a;
        void *b = a ? realloc(o->mvals, (size_t)nc * sizeof *o->mvals) : NULL;
        if (b) o->mvals = b;
        if (!a || !b) {
            cli_error("out of memory");
            return false;
        }
        o->cap_meta = nc;
    }
    o->mkeys[o->n_meta] = k;
    o->mvals[o->n_meta++] = v;
    return true;
}

static void out_free(struct out_list *o) {
    for (int64_t i = 0; i < o->n_bufs; i++) buf_free(&o->bufs[i]);
    for (int64_t i = 0; i < o->n_strs; i++) free(o->owned_strs[i]);
    free(o->bufs);
    free(o->owned_strs);
    free(o->t);
    free(o->src);
    free(o->mkeys);
    free(o->mvals);
    memset(o, 0, sizeof *o);
}

/* Keep the input's metadata except the keys drop() rejects. */
static bool copy_meta(struct out_list *o, const struct input *x, bool drop_fpd, bool drop_ttrec) {
    if (!x->in.st) return true;
    /* dense mode (both dropped) also drops the row-wise tables and fpd.extensions */
    bool dense = drop_fpd && drop_ttrec, any_fpd_left = false;
    for (int64_t i = 0; i < x->n_tables; i++)
        any_fpd_left |= x->tables[i].rowwise ? !dense : !x->tables[i].ttrec && !drop_fpd;
    for (int64_t i = 0; i < fpd_safetensors_metadata_count(x->in.st); i++) {
        const char *k, *v;
        fpd_safetensors_metadata_at(x->in.st, i, &k, &v);
        if (drop_fpd && starts_with(k, FPD_META_TABLE_PREFIX)) continue;
        if (dense && (starts_with(k, FPD_META_ROWWISE_PREFIX) || strcmp(k, FPD_META_EXTENSIONS_KEY) == 0)) continue;
        if (strcmp(k, FPD_META_VERSION_KEY) == 0 && !any_fpd_left) continue;
        if (drop_ttrec && starts_with(k, TTREC_META_PREFIX)) continue;
        if (!out_meta(o, k, v)) return false;
    }
    return true;
}

static const char *ttrec_prefix_of(const char *name, char *buf, size_t len) {
    size_t n = strlen(name);
    if (n > 7 && strcmp(name + n - 7, ".weight") == 0) snprintf(buf, len, "%.*s", (int)(n - 7), name);
    else snprintf(buf, len, "%s", name);
    return buf;
}

static json_t *dims_json(const int64_t *d, int32_t n) {
    json_t *a = json_array();
    for (int32_t i = 0; i < n; i++) json_array_append_new(a, json_integer(d[i]));
    return a;
}

/* ------------------------------------------------------------ the modes */

struct convert_opts {
    const char *out_path;
    enum out_kind to;
    const char *tensor;      /* --tensor */
    bool have_dtype;
    enum fpd_dtype dtype;
    bool force;
    const char *vocab_path;  /* --vocabulary-out */
    bool free_set;           /* --free-dtype given: E of free/1 tables re-stored */
    bool free_rowwise;       /* ... row-wise as free_kind (free-rowwise/1), else in the core dtype */
    enum fpd_free_kind free_kind;
};

/* dense: tables reconstructed, tensors copied. */
static bool build_dense(const struct input *x, const struct convert_opts *co, struct out_list *o) {
    int64_t n = fpd_input_count(&x->in);
    if (co->have_dtype && x->n_tables == 0) /* --dtype sets the dtype of reconstructed tables only */
        cli_warn("%s holds no FPD table to reconstruct: --dtype %s changes nothing, its tensors are copied as "
                 "they are (--to npy --dtype converts one float tensor)",
                 x->path, fpd_dtype_name(co->dtype));
    for (int64_t i = 0; i < n; i++) {
        const struct fpd_tensor_info *ti = fpd_input_tensor(&x->in, i);
        if (x->in.st && owner_of(x, ti->name)) continue;
        struct fpd_tensor_info t = *ti;
        if (x->in.npy && co->tensor) t.name = co->tensor;
        if (x->in.st && find_table(x, t.name)) {
            cli_error("%s: tensor '%s' has the name of a table it also holds compressed; cannot write both",
                      x->path, t.name);
            return false;
        }
        if (!out_add(o, &t, "copied")) return false;
    }
    for (int64_t i = 0; i < x->n_tables; i++) {
        const struct table *tb = &x->tables[i];
        struct fpd_layer *layer = NULL;
        if (!tb->rowwise && !load_layer(x, tb, &layer)) return false;
        enum fpd_dtype dt = co->have_dtype ? co->dtype : tb->meta.source_dtype;
        if (!fpd_dtype_is_float(dt)) dt = FPD_DTYPE_F32;
        struct buf b;
        char what[4096];
        snprintf(what, sizeof what, "%s: table '%s'", x->path, tb->name);
        bool ok = reconstruct(layer, tb->rowwise ? &tb->q : NULL, dt, co->out_path, what, &b);
        struct fpd_tensor_info t = {tb->name, dt, 2, {tb->meta.shape.rows, tb->meta.shape.dim}, b.p, b.n};
        fpd_layer_free(layer);
        if (!ok || !out_own_buf(o, &b) || !out_add(o, &t, table_source(tb))) return false;
    }
    return copy_meta(o, x, true, true);
}

/* npy: one item. */
static bool build_npy(const struct input *x, const struct convert_opts *co, struct out_list *o) {
    int64_t n = fpd_input_count(&x->in);
    const char *want = co->tensor;
    if (!want) {
        int64_t items = x->n_tables;
        const char *only = x->n_tables == 1 ? x->tables[0].name : NULL;
        for (int64_t i = 0; i < n; i++) {
            const struct fpd_tensor_info *ti = fpd_input_tensor(&x->in, i);
            if (x->in.st && owner_of(x, ti->name)) continue;
            items++;
            only = ti->name;
        }
        if (items != 1) {
            cli_error("%s holds %lld tensors and tables; choose one with --tensor NAME (see fpd-inspect %s)",
                      x->path, (long long)items, x->path);
            return false;
        }
        want = only;
    }
    const struct table *tb = x->in.st ? find_table(x, want) : NULL;
    const struct fpd_tensor_info *plain = !tb ? (x->in.npy ? fpd_input_tensor(&x->in, 0) : fpd_safetensors_find(x->in.st, want)) : NULL;
    enum fpd_dtype out_dt = co->have_dtype ? co->dtype : tb ? tb->meta.source_dtype : plain ? plain->dtype : FPD_DTYPE_F32;
    if (out_dt == FPD_DTYPE_BF16) {
        cli_error("%s: '%s' would be BF16, which .npy cannot hold (numpy has no bfloat16); add --dtype F32 (exact)",
                  x->path, want);
        return false;
    }
    if (tb) {
        struct fpd_layer *layer = NULL;
        if (!tb->rowwise && !load_layer(x, tb, &layer)) return false;
        enum fpd_dtype dt = co->have_dtype ? co->dtype : tb->meta.source_dtype;
        struct buf b;
        char what[4096];
        snprintf(what, sizeof what, "%s: table '%s'", x->path, tb->name);
        bool ok = reconstruct(layer, tb->rowwise ? &tb->q : NULL, dt, co->out_path, what, &b);
        struct fpd_tensor_info t = {tb->name, dt, 2, {tb->meta.shape.rows, tb->meta.shape.dim}, b.p, b.n};
        fpd_layer_free(layer);
        return ok && out_own_buf(o, &b) && out_add(o, &t, table_source(tb));
    }
    const struct fpd_tensor_info *ti = NULL;
    if (x->in.npy) ti = fpd_input_tensor(&x->in, 0);
    else ti = fpd_safetensors_find(x->in.st, want);
    if (!ti) {
        cli_error("%s: no tensor or table named '%s' (see fpd-inspect %s)", x->path, want, x->path);
        return false;
    }
    struct fpd_tensor_info t = *ti;
    if (co->have_dtype && co->dtype != ti->dtype) {
        if (!fpd_dtype_is_float(ti->dtype)) {
            cli_error("%s: tensor '%s' is %s; --dtype converts float tensors only", x->path, ti->name,
                      fpd_dtype_name(ti->dtype));
            return false;
        }
        struct buf b;
        if (!convert_tensor(ti, co->dtype, co->out_path, &b)) return false;
        t.dtype = co->dtype;
        t.data = b.p;
        t.nbytes = b.n;
        return out_own_buf(o, &b) && out_add(o, &t, "converted");
    }
    return out_add(o, &t, "copied");
}

/* Encoded tables that a mode copies as they are (FPD tables of --to fpd, row-wise tables
 * of --to ttrec and --to fpd) are checked against their data first. */
static bool verify_copied(const struct input *x, bool fpd_tables) {
    struct fpd_error err = {0};
    for (int64_t i = 0; i < x->n_tables; i++) {
        const struct table *t = &x->tables[i];
        if (t->ttrec || (!t->rowwise && !fpd_tables)) continue;
        if (fpd_checkpoint_verify_table(x->in.st, t->name, true, &err)) {
            cli_error("%s (tables copied through are checked)", err.msg);
            return false;
        }
    }
    return true;
}

/* ttrec: FPD tables exported, everything else copied. */
static bool build_ttrec(const struct input *x, const struct convert_opts *co, struct out_list *o) {
    (void)co;
    int64_t n = fpd_input_count(&x->in);
    int64_t n_fpd = 0;
    for (int64_t i = 0; i < x->n_tables; i++) n_fpd += !x->tables[i].ttrec && !x->tables[i].rowwise;
    if (n_fpd == 0) {
        cli_error("%s holds no FPD table to export", x->path);
        return false;
    }
    if (!verify_copied(x, false)) return false;
    for (int64_t i = 0; i < n; i++) {
        const struct fpd_tensor_info *ti = fpd_input_tensor(&x->in, i);
        const struct table *ow = owner_of(x, ti->name);
        if (ow && !ow->ttrec && !ow->rowwise) continue;
        if (!out_add(o, ti, "copied")) return false;
    }
    if (!copy_meta(o, x, true, false)) return false;
    for (int64_t i = 0; i < x->n_tables; i++) {
        const struct table *tb = &x->tables[i];
        if (tb->ttrec || tb->rowwise) continue;
        const struct fpd_layer_shape *s = &tb->meta.shape;
        if (s->terms != 1) {
            cli_error("%s: table '%s' has p = %lld terms; the TT-Rec layout holds one tensor train (p = 1)", x->path,
                      tb->name, (long long)s->terms);
            return false;
        }
        if (s->k < 2 || s->k > 4) {
            cli_error("%s: table '%s' has %d cores; FBTT-Embedding's TTEmbeddingBag takes 2 to 4", x->path, tb->name,
                      (int)s->k);
            return false;
        }
        struct fpd_layer *layer = NULL;
        if (!load_layer(x, tb, &layer)) return false;
        if (fpd_layer_row_perm(layer)) {
            fpd_layer_free(layer);
            cli_error("%s: table '%s' has a row permutation (row_perm); the TT-Rec layout has none", x->path,
                      tb->name);
            return false;
        }
        if (fpd_layer_get_free_coords(layer) > 0) {
            cli_error("%s: table '%s' has %lld free coordinates per row (free/1); the TT-Rec layout has none "
                      "(--to dense keeps them in the rows)",
                      x->path, tb->name, (long long)fpd_layer_get_free_coords(layer));
            fpd_layer_free(layer);
            return false;
        }
        char prefix[4096];
        ttrec_prefix_of(tb->name, prefix, sizeof prefix);
        for (int32_t m = 0; m < s->k; m++) {
            int64_t numel = fpd_layer_shape_core_numel(s, m);
            struct buf b;
            if (!buf_alloc(&b, (size_t)numel * sizeof(float), co->out_path)) {
                fpd_layer_free(layer);
                cli_error("out of memory");
                return false;
            }
            memcpy(b.p, fpd_layer_core_const(layer, m), b.n);
            char *name = NULL;
            if (asprintf(&name, "%s.tt_cores.%d", prefix, (int)m) < 0) name = NULL;
            if (!out_own_str(o, name)) {
                buf_free(&b);
                fpd_layer_free(layer);
                return false;
            }
            if (fpd_safetensors_find(x->in.st, name)) {
                cli_error("%s: the input already has a tensor named '%s'", x->path, name);
                buf_free(&b);
                fpd_layer_free(layer);
                return false;
            }
            struct fpd_tensor_info t = {name, FPD_DTYPE_F32, 3,
                                        {1, s->row_shape[m], s->ranks[m] * s->col_shape[m] * s->ranks[m + 1]},
                                        b.p, b.n};
            if (!out_own_buf(o, &b) || !out_add(o, &t, "fpd")) {
                fpd_layer_free(layer);
                return false;
            }
        }
        fpd_layer_free(layer);
        /* metadata */
        struct fpd_error err = {0};
        char *fpd_json = NULL;
        if (fpd_table_meta_to_json(&tb->meta, &fpd_json, &err)) {
            cli_error("%s: table '%s': %s", x->path, tb->name, err.msg);
            return false;
        }
        json_t *fj = json_loads(fpd_json, 0, NULL);
        fpd_free(fpd_json);
        json_t *j = json_object();
        int64_t inner[FPD_MAX_MODES];
        for (int32_t m = 1; m < s->k; m++) inner[m - 1] = s->ranks[m];
        json_object_set_new(j, "name", json_string(tb->name));
        json_object_set_new(j, "num_embeddings", json_integer(s->rows));
        json_object_set_new(j, "embedding_dim", json_integer(s->dim));
        json_object_set_new(j, "tt_p_shapes", dims_json(s->row_shape, s->k));
        json_object_set_new(j, "tt_q_shapes", dims_json(s->col_shape, s->k));
        json_object_set_new(j, "tt_ranks", dims_json(inner, s->k - 1));
        json_object_set_new(j, "layout", json_string("FBTT-Embedding TTEmbeddingBag.tt_cores[i]: F32 [1, "
                                                     "tt_p_shapes[i], r_i*tt_q_shapes[i]*r_{i+1}]"));
        json_object_set_new(j, "fpd", fj ? fj : json_null());
        char *val = out_own_str(o, json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER));
        json_decref(j);
        char *key = NULL;
        if (asprintf(&key, "%s%s", TTREC_META_PREFIX, prefix) < 0) key = NULL;
        if (!val || !out_own_str(o, key) || !out_meta(o, key, val)) return false;
    }
    return true;
}

/* fpd: TT-Rec tables imported (exact inverse of build_ttrec). */
static bool build_fpd(const struct input *x, const struct convert_opts *co, struct out_list *o) {
    int64_t n = fpd_input_count(&x->in);
    int64_t n_tt = 0;
    for (int64_t i = 0; i < x->n_tables; i++) n_tt += x->tables[i].ttrec;
    if (n_tt == 0) {
        int64_t n_fpd = 0;
        for (int64_t i = 0; i < x->n_tables; i++) n_fpd += !x->tables[i].rowwise;
        if (n_fpd > 0)
            cli_error("%s holds FPD tables already; --to fpd imports tables in the TT-Rec layout (metadata '%sX'), "
                      "or re-stores FPD tables with --free-dtype K (E of the free coordinates) or --vocabulary-out MAP "
                      "(row order folded into an id vocabulary)", x->path, TTREC_META_PREFIX);
        else
            cli_error("%s holds no table in the TT-Rec layout (metadata '%sX', written by fpd-convert --to ttrec); "
                      "to compress dense tables into FPD layers, use fpd-compress --encoding fpd",
                      x->path, TTREC_META_PREFIX);
        return false;
    }
    if (!verify_copied(x, true)) return false;
    for (int64_t i = 0; i < n; i++) {
        const struct fpd_tensor_info *ti = fpd_input_tensor(&x->in, i);
        const struct table *ow = owner_of(x, ti->name);
        if (ow && ow->ttrec) continue;
        if (!out_add(o, ti, "copied")) return false;
    }
    if (!copy_meta(o, x, false, true)) return false;
    bool have_version = fpd_safetensors_metadata_get(x->in.st, FPD_META_VERSION_KEY) != NULL;
    if (!have_version && !out_meta(o, FPD_META_VERSION_KEY, "1")) return false;
    for (int64_t i = 0; i < x->n_tables; i++) {
        const struct table *tb = &x->tables[i];
        if (!tb->ttrec) continue;
        if (find_table(x, tb->name) != tb || fpd_safetensors_find(x->in.st, tb->name)) {
            cli_error("%s: table '%s' exists twice in the input", x->path, tb->name);
            return false;
        }
        struct fpd_layer *layer = NULL;
        if (!load_layer(x, tb, &layer)) return false;
        const struct fpd_layer_shape *s = fpd_layer_get_shape(layer);
        enum fpd_dtype cd = tb->meta.core_dtype;
        if (cd != FPD_DTYPE_F16 && cd != FPD_DTYPE_BF16 && cd != FPD_DTYPE_F64) cd = FPD_DTYPE_F32;
        for (int32_t m = 0; m < s->k; m++) {
            int64_t numel = fpd_layer_shape_core_numel(s, m);
            struct buf b;
            if (!buf_alloc(&b, (size_t)numel * fpd_dtype_size(cd), co->out_path)) {
                fpd_layer_free(layer);
                cli_error("out of memory");
                return false;
            }
            const float *c = fpd_layer_core_const(layer, m);
            if (cd == FPD_DTYPE_F64)
                for (int64_t e = 0; e < numel; e++) ((double *)b.p)[e] = (double)c[e];
            else
                fpd_dtype_from_f32(cd, c, b.p, numel);
            char *name = NULL;
            if (asprintf(&name, "%s.fpd.core%d", tb->name, (int)m) < 0) name = NULL;
            struct fpd_tensor_info t = {name, cd, 5,
                                        {s->terms, s->row_shape[m], s->ranks[m], s->col_shape[m], s->ranks[m + 1]},
                                        b.p, b.n};
            if (!out_own_str(o, name) || !out_own_buf(o, &b) || !out_add(o, &t, "ttrec")) {
                buf_free(&b);
                fpd_layer_free(layer);
                return false;
            }
        }
        fpd_layer_free(layer);
        struct fpd_table_meta meta = tb->meta;
        meta.core_dtype = cd;
        struct fpd_error err = {0};
        char *json = NULL;
        if (fpd_table_meta_to_json(&meta, &json, &err)) {
            cli_error("%s: table '%s': %s", x->path, tb->name, err.msg);
            return false;
        }
        char *val = out_own_str(o, strdup(json));
        fpd_free(json);
        char *key = NULL;
        if (asprintf(&key, "%s%s", FPD_META_TABLE_PREFIX, tb->name) < 0) key = NULL;
        if (!val || !out_own_str(o, key) || !out_meta(o, key, val)) return false;
    }
    return true;
}

/* FPD -> FPD, rewriting tables: --vocabulary-out MAP, --free-dtype T, or both.
 *
 * --free-dtype (int8, int4 or core): every FPD table with free coordinates (free/1)
 * gets its E stored row-wise quantized (free-rowwise/1, "free-rowwise/1" added to
 * fpd.extensions) or in the core dtype; cores, P and row_perm unchanged.
 *
 * vocabulary (--to fpd --vocabulary-out MAP): every FPD table T with a row permutation
 * is written without it, the permutation folded into the id vocabulary instead: MAP
 * gets the lines "T<TAB>id<TAB>row" (id = the original row, row = row_perm[id], the row
 * to look up in the new table), and T gets rows = max(row_perm) + 1 (the FPD rows its
 * ids reach: row_perm places ids over the padded rows prod(row_shape), so some rows
 * below the maximum are reached by no id; they are what the cores give there and cost
 * nothing). Free coordinates (free/1) move with their ids: E'[row_perm[id]] = E[id],
 * zero rows elsewhere, P unchanged. Cores and metadata are otherwise unchanged; every
 * other tensor and table is copied. Looking up id in the input equals looking up
 * row_perm[id] in the output up to F32 rounding (the same cores at the same FPD row,
 * summed in another order where the look-ups group rows differently). */
static bool build_rewrite(const struct input *x, const struct convert_opts *co, struct out_list *o, char **map_text,
                          size_t *map_len) {
    int64_t n = fpd_input_count(&x->in), n_perm = 0, n_free = 0;
    bool *folds = calloc((size_t)(x->n_tables > 0 ? x->n_tables : 1), sizeof(bool)); /* rewritten */
    FILE *map = co->vocab_path ? open_memstream(map_text, map_len) : NULL;
    bool ok = false;
    if (!folds || (co->vocab_path && !map)) {
        cli_error("out of memory");
        goto done;
    }
    for (int64_t i = 0; i < x->n_tables; i++) {
        const struct table *tb = &x->tables[i];
        if (tb->ttrec || tb->rowwise) continue;
        char name[4096];
        snprintf(name, sizeof name, "%s.fpd.row_perm", tb->name);
        const bool perm = co->vocab_path && fpd_safetensors_find(x->in.st, name);
        const bool fr = co->free_set && tb->meta.free_coords > 0;
        folds[i] = perm || fr;
        n_perm += perm;
        n_free += fr;
    }
    if (co->vocab_path && n_perm == 0) {
        cli_error("%s holds no FPD table with a row permutation (T.fpd.row_perm): nothing to fold into a vocabulary",
                  x->path);
        goto done;
    }
    if (co->free_set && n_free == 0) {
        cli_error("%s holds no FPD table with free coordinates (free/1, T.fpd.free): --free-dtype has no E to store",
                  x->path);
        goto done;
    }
    if (!verify_copied(x, true)) goto done;
    for (int64_t i = 0; i < n; i++) { /* every tensor not of a rewritten table, as it is */
        const struct fpd_tensor_info *ti = fpd_input_tensor(&x->in, i);
        const struct table *ow = owner_of(x, ti->name);
        if (ow && folds[ow - x->tables]) continue;
        if (!out_add(o, ti, "copied")) goto done;
    }
    for (int64_t i = 0; i < fpd_safetensors_metadata_count(x->in.st); i++) {
        const char *k, *v;
        fpd_safetensors_metadata_at(x->in.st, i, &k, &v);
        bool skip = false;
        for (int64_t t = 0; t < x->n_tables && !skip; t++) skip = folds[t] && strcmp(k, x->tables[t].meta_key) == 0;
        if (strcmp(k, FPD_META_EXTENSIONS_KEY) == 0 && co->free_set) {
            /* the input's list less free-rowwise/1 and free-sym/1, plus the one E is now stored
             * by (--free-dtype applies to every table with free coordinates; a free/1 table is
             * only read when the list declares free/1, so the key is there) */
            const size_t xl = strlen(FPD_EXTENSION_FREE_ROWWISE), yl = strlen(FPD_EXTENSION_FREE_SYM);
            char *nv = malloc(strlen(v) + xl + yl + 2);
            if (!out_own_str(o, nv)) goto done;
            nv[0] = '\0';
            for (const char *p = v; *p;) {
                size_t len = strcspn(p, ",");
                if (len && !(len == xl && strncmp(p, FPD_EXTENSION_FREE_ROWWISE, len) == 0) &&
                    !(len == yl && strncmp(p, FPD_EXTENSION_FREE_SYM, len) == 0))
                    sprintf(nv + strlen(nv), "%s%.*s", nv[0] ? "," : "", (int)len, p);
                p += len + (p[len] == ',');
            }
            if (co->free_rowwise)
                sprintf(nv + strlen(nv), "%s%s", nv[0] ? "," : "",
                        fpd_free_kind_is_sym(co->free_kind) ? FPD_EXTENSION_FREE_SYM : FPD_EXTENSION_FREE_ROWWISE);
            if (nv[0] && !out_meta(o, k, nv)) goto done;
            continue;
        }
        if (!skip && !out_meta(o, k, v)) goto done;
    }
    if (map) fprintf(map, "table\tid\trow\n");
    for (int64_t i = 0; i < x->n_tables; i++) {
        if (!folds[i]) continue;
        const struct table *tb = &x->tables[i];
        struct fpd_layer *layer = NULL, *nl = NULL;
        struct fpd_checkpoint_tensors ct;
        memset(&ct, 0, sizeof ct);
        struct fpd_error err = {0};
        if (!load_layer(x, tb, &layer)) goto done;
        const struct fpd_layer_shape *s = fpd_layer_get_shape(layer);
        const int64_t *perm = co->vocab_path ? fpd_layer_row_perm(layer) : NULL; /* folded when there is one */
        const int64_t c = fpd_layer_get_free_coords(layer);
        struct fpd_table_meta meta = tb->meta;
        if (co->free_set && c > 0) {
            meta.free_rowwise = co->free_rowwise;
            meta.free_kind = co->free_kind;
            /* quantized anew: the input's rel_error no longer describes the table (to the
             * core dtype, or the same kind again, the values are kept exactly) */
            if (co->free_rowwise && (!tb->meta.free_rowwise || tb->meta.free_kind != co->free_kind))
                meta.rel_error = NAN;
        }
        if (perm) meta.vocabulary_order = true; /* marked: fpd-eval and fpd-inspect say so */
        bool tok = false;
        if (perm ? fpd_layer_fold_row_perm(layer, &nl, &err) /* E's rows move with their ids */
                 : fpd_layer_clone(layer, &nl, &err))      /* E re-stored only */
            goto table_done;
        if (fpd_checkpoint_tensors_init(nl, tb->name, &meta, &ct, &err)) goto table_done;
        for (int64_t q = 0; q < ct.n; q++) {
            struct fpd_tensor_info t = ct.tensors[q];
            struct buf b;
            if (!buf_alloc(&b, t.nbytes, co->out_path)) {
                snprintf(err.msg, sizeof err.msg, "out of memory");
                goto table_done;
            }
            memcpy(b.p, t.data, t.nbytes);
            t.data = b.p;
            const bool is_e = strstr(t.name, ".fpd.free") && !strstr(t.name, ".fpd.free_proj");
            char how[96];
            const char *moved = !perm ? "" : is_e ? "rows moved to the vocabulary's order" : "unchanged (order folded)";
            const bool same = tb->meta.free_rowwise == meta.free_rowwise &&
                              (!meta.free_rowwise || tb->meta.free_kind == meta.free_kind);
            if (is_e && co->free_set && same && !perm) /* the file's rows or values, copied */
                snprintf(how, sizeof how, "unchanged (E already %s)",
                         meta.free_rowwise ? fpd_free_kind_name(meta.free_kind) : fpd_dtype_name(t.dtype));
            else if (is_e && co->free_set)
                snprintf(how, sizeof how, "%s%s%s", moved, perm ? ", stored as " : "E stored as ",
                         meta.free_rowwise ? fpd_free_kind_name(meta.free_kind) : fpd_dtype_name(t.dtype));
            else
                snprintf(how, sizeof how, "%s", perm ? moved : "unchanged");
            const char *hw = out_own_str(o, strdup(how));
            if (!out_own_buf(o, &b) || !(t.name = out_own_str(o, strdup(t.name))) || !hw || !out_add(o, &t, hw))
                goto table_done;
        }
        {
            char *key = out_own_str(o, strdup(ct.meta_key)), *val = out_own_str(o, strdup(ct.meta_value));
            if (!key || !val || !out_meta(o, key, val)) goto table_done;
        }
        if (perm)
            for (int64_t r = 0; r < s->rows; r++)
                fprintf(map, "%s\t%lld\t%lld\n", tb->name, (long long)r, (long long)perm[r]);
        tok = true;
    table_done:
        if (!tok && err.msg[0]) cli_error("%s: table '%s': %s", x->path, tb->name, err.msg);
        fpd_checkpoint_tensors_free(&ct);
        fpd_layer_free(nl);
        fpd_layer_free(layer);
        if (!tok) goto done;
    }
    ok = true;
done:
    if (map && fclose(map) != 0 && ok) {
        cli_error("out of memory");
        ok = false;
    }
    free(folds);
    return ok;
}

/* ------------------------------------------------------------ main */

static enum out_kind parse_to(const char *s) {
    if (strcmp(s, "dense") == 0 || strcmp(s, "safetensors") == 0) return OUT_DENSE;
    if (strcmp(s, "npy") == 0) return OUT_NPY;
    if (strcmp(s, "ttrec") == 0) return OUT_TTREC;
    if (strcmp(s, "fpd") == 0) return OUT_FPD;
    return OUT_NONE;
}

/* Would paths a and b name the same file, whether or not it exists yet: the same
 * string, the same existing file, or the same name in the same folder ("./x" and "x"). */
static bool same_target(const char *a, const char *b) {
    if (strcmp(a, b) == 0 || cli_same_file(a, b)) return true;
    const char *sa = strrchr(a, '/'), *sb = strrchr(b, '/');
    if (strcmp(sa ? sa + 1 : a, sb ? sb + 1 : b) != 0) return false;
    char da[4096], db[4096]; /* the folders, "dir/" or "." */
    snprintf(da, sizeof da, "%.*s", sa ? (int)(sa - a + 1) : 1, sa ? a : ".");
    snprintf(db, sizeof db, "%.*s", sb ? (int)(sb - b + 1) : 1, sb ? b : ".");
    return cli_same_file(da, db);
}

static bool ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

int main(int argc, char **argv) {
    cli_prog = "fpd-convert";
    setlocale(LC_NUMERIC, "C");
    struct convert_opts co;
    memset(&co, 0, sizeof co);
    co.to = OUT_NONE;
    bool json = false, quiet = false;
    enum { OPT_TO = 256, OPT_DTYPE, OPT_JSON, OPT_VERSION, OPT_VOCAB, OPT_FREE_DTYPE };
    static const struct option opts[] = {
        {"output", required_argument, 0, 'o'}, {"to", required_argument, 0, OPT_TO},
        {"tensor", required_argument, 0, 't'}, {"dtype", required_argument, 0, OPT_DTYPE},
        {"force", no_argument, 0, 'f'},        {"json", no_argument, 0, OPT_JSON},
        {"quiet", no_argument, 0, 'q'},        {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, OPT_VERSION}, {"vocabulary-out", required_argument, 0, OPT_VOCAB},
        {"free-dtype", required_argument, 0, OPT_FREE_DTYPE}, {0, 0, 0, 0},
    };
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":o:t:fqh", opts, NULL)) != -1) {
        switch (c) {
        case 'o': co.out_path = optarg; break;
        case OPT_TO:
            co.to = parse_to(optarg);
            if (co.to == OUT_NONE) cli_usage_error("--to must be dense, safetensors, npy, ttrec or fpd, got '%s'", optarg);
            break;
        case 't':
            if (!*optarg) cli_usage_error("--tensor needs a non-empty name");
            co.tensor = optarg;
            break;
        case OPT_DTYPE:
            if (!fpd_dtype_from_name(optarg, strlen(optarg), &co.dtype) || !fpd_dtype_is_float(co.dtype))
                cli_usage_error("--dtype must be F32, F64, F16 or BF16, got '%s'", optarg);
            co.have_dtype = true;
            break;
        case 'f': co.force = true; break;
        case OPT_VOCAB:
            if (!*optarg) cli_usage_error("--vocabulary-out needs a file name");
            co.vocab_path = optarg;
            break;
        case OPT_FREE_DTYPE:
            if (strcmp(optarg, "core") == 0) co.free_rowwise = false;
            else if (fpd_free_kind_from_name(optarg, &co.free_kind)) co.free_rowwise = true;
            else cli_usage_error("--free-dtype must be core, int8, int4, int8-sym or int4-sym, got '%s'", optarg);
            co.free_set = true;
            break;
        case OPT_JSON: json = true; break;
        case 'q': quiet = true; break;
        case 'h': usage(stdout); return CLI_EXIT_OK;
        case OPT_VERSION: printf("fpd-convert %s (%s)\n", fpd_version(), fpd_build_features()); return CLI_EXIT_OK;
        case ':': cli_usage_error("option '%s' needs a value", argv[optind - 1]);
        default: cli_usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc) cli_usage_error("no input given");
    if (optind + 1 < argc) cli_usage_error("one input expected, got '%s' too", argv[optind + 1]);
    const char *in_path = argv[optind];
    if (!co.out_path) cli_usage_error("no output given (use -o OUT)");
    if (co.to == OUT_NONE) co.to = ends_with(co.out_path, ".npy") ? OUT_NPY : OUT_DENSE;
    if (co.to != OUT_NPY && ends_with(co.out_path, ".npy"))
        cli_usage_error("output '%s' ends in .npy but --to is %s; use --to npy", co.out_path, out_kind_name[co.to]);
    const bool to_stdout = strcmp(co.out_path, "-") == 0;
    if (to_stdout && json) cli_usage_error("-o - writes the output to standard output; --json would mix with it");
    if (strcmp(in_path, "-") != 0 && !cli_exists(in_path)) {
        cli_error("%s: no such file", in_path);
        return CLI_EXIT_FAILURE;
    }
    if (!to_stdout && (strcmp(in_path, co.out_path) == 0 || cli_same_file(in_path, co.out_path)))
        cli_usage_error("output '%s' is the input; choose another path (the input is never overwritten)", co.out_path);
    if (!to_stdout && cli_exists(co.out_path) && !co.force)
        cli_usage_error("output '%s' exists; use --force to overwrite it", co.out_path);
    if (co.free_set && co.to != OUT_FPD)
        cli_usage_error("--free-dtype goes with --to fpd (FPD -> FPD, the free coordinates' E re-stored)");
    if (co.vocab_path) {
        if (co.to != OUT_FPD) cli_usage_error("--vocabulary-out goes with --to fpd (an FPD checkpoint without row_perm)");
        if (strcmp(co.vocab_path, "-") == 0) cli_usage_error("--vocabulary-out needs a file, not standard output");
        if (same_target(in_path, co.vocab_path))
            cli_usage_error("--vocabulary-out '%s' is the input; choose another path", co.vocab_path);
        if (!to_stdout && same_target(co.vocab_path, co.out_path))
            cli_usage_error("--vocabulary-out '%s' is the output too; choose another path", co.vocab_path);
        if (cli_exists(co.vocab_path) && !co.force)
            cli_usage_error("--vocabulary-out '%s' exists; use --force to overwrite it", co.vocab_path);
    }
    char *tmp_dir = NULL, *tmp_path = NULL;
    if (to_stdout) { /* written to a private temporary file (the writers are atomic), then copied */
        if (!pipe_tmp_output(co.to == OUT_NPY ? "out.npy" : "out.safetensors", &tmp_dir, &tmp_path))
            return CLI_EXIT_FAILURE;
        co.out_path = tmp_path;
    }

    struct input x;
    struct out_list o;
    memset(&o, 0, sizeof o);
    char *map_text = NULL;
    size_t map_len = 0;
    int rc = input_open(in_path, &x);
    if (rc) goto done;
    rc = CLI_EXIT_USAGE;
    if (co.tensor && co.to != OUT_NPY && !x.in.npy) {
        cli_error("--tensor selects what --to npy writes, or names the tensor of a .npy input");
        goto done;
    }
    if (x.in.npy && (co.to == OUT_TTREC || co.to == OUT_FPD)) {
        cli_error("%s: a .npy array holds no FPD or TT-Rec table; --to %s needs a checkpoint", in_path,
                  out_kind_name[co.to]);
        goto done;
    }
    rc = CLI_EXIT_FAILURE;
    bool ok = false;
    switch (co.to) {
    case OUT_DENSE: ok = build_dense(&x, &co, &o); break;
    case OUT_NPY: ok = build_npy(&x, &co, &o); break;
    case OUT_TTREC: ok = build_ttrec(&x, &co, &o); break;
    case OUT_FPD:
        ok = co.vocab_path || co.free_set ? build_rewrite(&x, &co, &o, &map_text, &map_len) : build_fpd(&x, &co, &o);
        break;
    default: break;
    }
    if (!ok) goto done;
    struct fpd_error err = {0};
    unsigned flags = co.force ? FPD_WRITE_OVERWRITE : 0;
    enum fpd_status st = co.to == OUT_NPY ? fpd_npy_write(co.out_path, &o.t[0], flags, &err)
                                          : fpd_safetensors_write(co.out_path, o.t, o.n, o.mkeys, o.mvals, o.n_meta,
                                                                  flags, &err);
    if (st) {
        cli_error("%s", err.msg);
        goto done;
    }
    /* the vocabulary after the checkpoint; if it cannot be written, the checkpoint goes */
    if (map_text && fpd_write_file_atomic(co.vocab_path, map_text, map_len, flags, &err)) {
        cli_error("%s", err.msg);
        unlink(co.out_path);
        goto done;
    }
    rc = CLI_EXIT_OK;
    if (to_stdout) {
        bool sent = pipe_send_and_remove(tmp_path, tmp_dir);
        free(tmp_path);
        free(tmp_dir);
        tmp_path = tmp_dir = NULL;
        if (!sent) rc = CLI_EXIT_FAILURE;
        goto done; /* standard output holds the data: no report */
    }
    if (quiet) goto done;
    if (json) {
        json_t *r = json_object();
        json_object_set_new(r, "schema", json_string("fpd-convert/2"));
        json_object_set_new(r, "input", json_string(in_path));
        json_object_set_new(r, "output", json_string(co.out_path));
        json_object_set_new(r, "to", json_string(out_kind_name[co.to]));
        if (co.vocab_path) json_object_set_new(r, "vocabulary", json_string(co.vocab_path));
        json_t *arr = json_array();
        size_t total = 0;
        for (int64_t i = 0; i < o.n; i++) {
            json_t *t = json_object();
            json_object_set_new(t, "name", json_string(o.t[i].name));
            json_object_set_new(t, "dtype", json_string(fpd_dtype_name(o.t[i].dtype)));
            json_object_set_new(t, "shape", dims_json(o.t[i].shape, o.t[i].ndim));
            json_object_set_new(t, "bytes", json_integer((json_int_t)o.t[i].nbytes));
            json_object_set_new(t, "from", json_string(o.src[i]));
            json_array_append_new(arr, t);
            total += o.t[i].nbytes;
        }
        json_object_set_new(r, "tensors", arr);
        json_object_set_new(r, "bytes_after", json_integer((json_int_t)total));
        json_dumpf(r, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        fputc('\n', stdout);
        json_decref(r);
    } else {
        printf("%s -> %s (%s)\n", in_path, co.out_path, out_kind_name[co.to]);
        if (co.vocab_path) printf("  row permutations folded into the id vocabulary %s (table, id, row)\n", co.vocab_path);
        int wn = 32, ws = 14; /* columns as wide as the longest name and shape */
        for (int64_t i = 0; i < o.n; i++) {
            char sh[128];
            const int ln = (int)strlen(o.t[i].name[0] ? o.t[i].name : "(array)");
            const int ls = (int)strlen(cli_shape(o.t[i].shape, o.t[i].ndim, sh, sizeof sh));
            wn = ln > wn ? ln : wn;
            ws = ls > ws ? ls : ws;
        }
        for (int64_t i = 0; i < o.n; i++) {
            char sh[128], by[32];
            const char *how = strcmp(o.src[i], "fpd") == 0     ? (co.to == OUT_TTREC ? "exported FPD core" : "reconstructed from FPD")
                              : strcmp(o.src[i], "ttrec") == 0 ? (co.to == OUT_FPD ? "imported TT-Rec core" : "reconstructed from TT-Rec")
                                                               : o.src[i];
            printf("  %-*s %-5s %-*s %11s  %s\n", wn, o.t[i].name[0] ? o.t[i].name : "(array)", fpd_dtype_name(o.t[i].dtype), ws,
                   cli_shape(o.t[i].shape, o.t[i].ndim, sh, sizeof sh), cli_bytes(o.t[i].nbytes, by, sizeof by), how);
        }
    }
done:
    if (tmp_path) { /* a failure before the copy: remove what may be there */
        unlink(tmp_path);
        rmdir(tmp_dir);
    }
    free(tmp_path);
    free(tmp_dir);
    out_free(&o);
    free(map_text);
    input_free(&x);
    return rc;
}
