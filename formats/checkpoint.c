/*
 * checkpoint.c - FPD v1 tables inside a safetensors checkpoint (DESIGN.md section 4):
 * the "fpd.table.T" metadata JSON (jansson) and loading T's cores into a layer.
 *
 * The metadata JSON, written compactly in this key order:
 *   {"rows":N,"dim":D,"row_shape":[..k..],"col_shape":[..k..],"ranks":[1,..,1],
 *    "terms":p,"source_dtype":"F32","core_dtype":"F32","fit":"tt-svd","seed":0,
 *    "rel_error":0.0123}
 * Reading accepts any key order and ignores unknown keys (later versions may add
 * some). core_dtype is optional (DESIGN.md does not require it): when absent,
 * fpd_table_meta.core_dtype is FPD_DTYPE_COUNT and any float dtype is accepted.
 * seed is an integer, or a decimal string when above INT64_MAX (jansson's integers
 * are signed 64-bit). rel_error is a number, or null when it was not finite.
 */
#include "formats/fpd-formats.h"
#include "formats/formats-impl.h"
#include "lib/fpd-impl.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ helpers */

static char *str_cat(const char *a, const char *b, const char *c) {
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
    char *s = fpd_malloc(la + lb + lc + 1);
    if (!s) return NULL;
    memcpy(s, a, la);
    memcpy(s + la, b, lb);
    memcpy(s + la + lb, c, lc + 1);
    return s;
}

/* A short printable rendering of a name (control bytes escaped, truncated). */
static const char *show(const char *s, char *buf, size_t cap) {
    size_t o = 0;
    for (; *s && o + 8 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f) o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", c);
        else buf[o++] = (char)c;
    }
    if (*s) memcpy(buf + o, "...", 3), o += 3;
    buf[o] = '\0';
    return buf;
}


static void shape_str(const int64_t *v, int32_t n, char *buf, size_t cap) {
    size_t o = 0;
    buf[o++] = '[';
    for (int32_t i = 0; i < n && o + 24 < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%lld", i ? ", " : "", (long long)v[i]);
    snprintf(buf + o, cap - o, "]");
}

/* o as compact JSON (key order kept) into *out, a copy freed with fpd_free; false
 * when out of memory. */
static bool dump_json(const json_t *o, char **out) {
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    if (!s) return false;
    size_t n = strlen(s);
    *out = fpd_malloc(n + 1);
    if (*out) memcpy(*out, s, n + 1);
    free(s); /* jansson's allocator */
    return *out != NULL;
}

/* ------------------------------------------------------------ meta JSON */

enum fpd_status fpd_table_meta_to_json(const struct fpd_table_meta *meta, char **out, struct fpd_error *err) {
    FPD_ASSERT(meta && out);
    enum fpd_status status = FPD_STATUS_OK;
    json_t *o = NULL, *rs = NULL, *cs = NULL, *rk = NULL;
    *out = NULL;
    const struct fpd_layer_shape *sh = &meta->shape;
    if (sh->k < 1 || sh->k > FPD_MAX_MODES || (unsigned)meta->source_dtype >= FPD_DTYPE_COUNT ||
        (unsigned)meta->core_dtype > FPD_DTYPE_COUNT) {
        status = fpd__err(err, FPD_STATUS_INVALID_ARG, "table metadata: k = %d or a dtype is out of range", (int)sh->k);
        goto done;
    }
    size_t fit_len = strnlen(meta->fit, sizeof meta->fit);
    if (fit_len == sizeof meta->fit) {
        status = fpd__err(err, FPD_STATUS_INVALID_ARG, "table metadata: fit is not NUL-terminated");
        goto done;
    }
    if (meta->free_rowwise && (meta->free_coords < 1 || (unsigned)meta->free_kind >= FPD_FREE_KIND_COUNT)) {
        status = fpd__err(err, FPD_STATUS_INVALID_ARG,
                          "table metadata: free_rowwise needs free coordinates (free_coords %lld) and a kind "
                          "of enum fpd_free_kind",
                          (long long)meta->free_coords);
        goto done;
    }
    o = json_object();
    rs = json_array();
    cs = json_array();
    rk = json_array();
    if (!o || !rs || !cs || !rk) goto nomem;
    for (int32_t m = 0; m < sh->k; m++) {
        if (json_array_append_new(rs, json_integer(sh->row_shape[m])) ||
            json_array_append_new(cs, json_integer(sh->col_shape[m])))
            goto nomem;
    }
    for (int32_t m = 0; m <= sh->k; m++)
        if (json_array_append_new(rk, json_integer(sh->ranks[m]))) goto nomem;
    json_t *fit = json_stringn(meta->fit, fit_len);
    if (!fit) {
        char b[96];
        status = fpd__err(err, FPD_STATUS_INVALID_ARG, "table metadata: fit '%s' is not UTF-8",
                          show(meta->fit, b, sizeof b));
        goto done;
    }
    json_t *seed = meta->seed <= (uint64_t)INT64_MAX ? json_integer((json_int_t)meta->seed) : NULL;
    if (!seed) {
        char b[32];
        snprintf(b, sizeof b, "%llu", (unsigned long long)meta->seed);
        seed = json_string(b);
    }
    json_t *rel = isfinite(meta->rel_error) ? json_real(meta->rel_error) : json_null();
    /* `|`, not `||`: every _set_new runs, so each value is owned by o or freed. */
    int bad = json_object_set_new(o, "rows", json_integer(sh->rows));
    bad |= json_object_set_new(o, "dim", json_integer(sh->dim));
    bad |= json_object_set(o, "row_shape", rs);
    bad |= json_object_set(o, "col_shape", cs);
    bad |= json_object_set(o, "ranks", rk);
    bad |= json_object_set_new(o, "terms", json_integer(sh->terms));
    bad |= json_object_set_new(o, "source_dtype", json_string(fpd_dtype_name(meta->source_dtype)));
    if (meta->core_dtype != FPD_DTYPE_COUNT)
        bad |= json_object_set_new(o, "core_dtype", json_string(fpd_dtype_name(meta->core_dtype)));
    bad |= json_object_set_new(o, "fit", fit);
    bad |= json_object_set_new(o, "seed", seed);
    bad |= json_object_set_new(o, "rel_error", rel);
    if (meta->free_coords > 0) bad |= json_object_set_new(o, "free_coords", json_integer(meta->free_coords));
    if (meta->free_rowwise) bad |= json_object_set_new(o, "free_dtype", json_string(fpd_free_kind_name(meta->free_kind)));
    if (meta->vocabulary_order) bad |= json_object_set_new(o, "vocabulary_order", json_true());
    if (bad || !dump_json(o, out)) goto nomem;
    goto done;
nomem:
    status = fpd__err(err, FPD_STATUS_NOMEM, "out of memory serializing table metadata");
done:
    json_decref(rs);
    json_decref(cs);
    json_decref(rk);
    json_decref(o);
    return status;
}

/* Fetch root[key] as an integer (>= min). */
static enum fpd_status get_int(json_t *root, const char *T, const char *key, int64_t min, int64_t *out,
                               struct fpd_error *err) {
    json_t *v = json_object_get(root, key);
    if (!v) return fpd__err(err, FPD_STATUS_FORMAT, "table '%s': metadata lacks the key '%s'", T, key);
    if (!json_is_integer(v))
        return fpd__err(err, FPD_STATUS_FORMAT, "table '%s': key '%s' is %s, not an integer", T, key, fpd__json_type_name(v));
    json_int_t x = json_integer_value(v);
    if (x < min)
        return fpd__err(err, FPD_STATUS_FORMAT, "table '%s': key '%s' is %lld, below %lld", T, key, (long long)x,
                        (long long)min);
    *out = (int64_t)x;
    return FPD_STATUS_OK;
}

/* Fetch root[key] as an array of integers with `want` elements (0: 1..FPD_MAX_MODES). */
static enum fpd_status get_int_array(json_t *root, const char *T, const char *key, size_t want, int64_t *out,
                                     size_t *n_out, struct fpd_error *err) {
    json_t *v = json_object_get(root, key);
    if (!v) return fpd__err(err, FPD_STATUS_FORMAT, "table '%s': metadata lacks the key '%s'", T, key);
    if (!json_is_array(v))
        return fpd__err(err, FPD_STATUS_FORMAT, "table '%s': key '%s' is %s, not an array of integers", T, key,
                        fpd__json_type_name(v));
    size_t n = json_array_size(v);
    if (want ? n != want : (n < 1 || n > FPD_MAX_MODES)) {
        if (want)
            return fpd__err(err, FPD_STATUS_FORMAT, "table '%s': key '%s' has %zu values; %zu expected", T, key, n,
                            want);
        return fpd__err(err, FPD_STATUS_FORMAT, "table '%s': key '%s' has %zu values; 1..%d expected", T, key, n,
                        FPD_MAX_MODES);
    }
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(v, i);
        if (!json_is_integer(e))
            return fpd__err(err, FPD_STATUS_FORMAT, "table '%s': key '%s': element %zu is %s, not an integer", T,
                            key, i, fpd__json_type_name(e));
        out[i] = (int64_t)json_integer_value(e);
    }
    if (n_out) *n_out = n;
    return FPD_STATUS_OK;
}

static enum fpd_status get_dtype(json_t *root, const char *T, const char *key, bool required, enum fpd_dtype *out,
                                 struct fpd_error *err) {
    json_t *v = json_object_get(root, key);
    if (!v) {
        if (required) return fpd__err(err, FPD_STATUS_FORMAT, "table '%s': metadata lacks the key '%s'", T, key);
        *out = FPD_DTYPE_COUNT;
        return FPD_STATUS_OK;
    }
    if (!json_is_string(v))
        return fpd__err(err, FPD_STATUS_FORMAT, "table '%s': key '%s' is %s, not a dtype name", T, key, fpd__json_type_name(v));
    if (!fpd_dtype_from_name(json_string_value(v), json_string_length(v), out)) {
        char b[64];
        return fpd__err(err, FPD_STATUS_FORMAT, "table '%s': key '%s': unknown dtype '%s'", T, key,
                        show(json_string_value(v), b, sizeof b));
    }
    return FPD_STATUS_OK;
}

enum fpd_status fpd_table_meta_from_json(const char *json, const char *table, struct fpd_table_meta *out,
                                         struct fpd_error *err) {
    FPD_ASSERT(json && out);
    enum fpd_status status = FPD_STATUS_OK;
    char tb[96];
    const char *T = show(table ? table : "?", tb, sizeof tb);
    json_error_t jerr;
    json_t *root = json_loads(json, JSON_REJECT_DUPLICATES, &jerr);
    struct fpd_table_meta m;
    memset(&m, 0, sizeof m);
    if (!root) {
        status = fpd__err(err, FPD_STATUS_FORMAT, "table '%s': metadata is not valid JSON: %s (column %d)", T,
                          jerr.text, jerr.column);
        goto done;
    }
    if (!json_is_object(root)) {
        status = fpd__err(err, FPD_STATUS_FORMAT, "table '%s': metadata is %s, not a JSON object", T, fpd__json_type_name(root));
        goto done;
    }
    struct fpd_layer_shape *s = &m.shape;
    size_t k = 0;
    if ((status = get_int(root, T, "rows", 0, &s->rows, err)) || (status = get_int(root, T, "dim", 0, &s->dim, err)) ||
        (status = get_int_array(root, T, "row_shape", 0, s->row_shape, &k, err)) ||
        (status = get_int_array(root, T, "col_shape", k, s->col_shape, NULL, err)) ||
        (status = get_int_array(root, T, "ranks", k + 1, s->ranks, NULL, err)) ||
        (status = get_int(root, T, "terms", 0, &s->terms, err)) ||
        (status = get_dtype(root, T, "source_dtype", true, &m.source_dtype, err)) ||
        (status = get_dtype(root, T, "core_dtype", false, &m.core_dtype, err)))
        goto done;
    s->k = (int32_t)k;

    json_t *v = json_object_get(root, "fit");
    if (!v || !json_is_string(v)) {
        status = fpd__err(err, FPD_STATUS_FORMAT, "table '%s': key 'fit' is %s, not a string", T,
                          v ? fpd__json_type_name(v) : "missing");
        goto done;
    }
    if (json_string_length(v) >= sizeof m.fit) {
        status = fpd__err(err, FPD_STATUS_FORMAT, "table '%s': key 'fit' is %zu bytes, longer than %zu", T,
                          json_string_length(v), sizeof m.fit - 1);
        goto done;
    }
    memcpy(m.fit, json_string_value(v), json_string_length(v) + 1);

    v = json_object_get(root, "seed");
    if (v && json_is_integer(v) && json_integer_value(v) >= 0) {
        m.seed = (uint64_t)json_integer_value(v);
    } else if (v && json_is_string(v) && json_string_length(v) > 0 && json_string_length(v) <= 20 &&
               strspn(json_string_value(v), "0123456789") == json_string_length(v)) {
        unsigned long long x = 0;
        bool ok = true;
        for (const char *p = json_string_value(v); *p && ok; p++)
            ok = !__builtin_mul_overflow(x, 10ull, &x) &&
                 !__builtin_add_overflow(x, (unsigned long long)(*p - '0'), &x);
        if (!ok) {
            status = fpd__err(err, FPD_STATUS_FORMAT, "table '%s': key 'seed' does not fit in 64 bits", T);
            goto done;
        }
        m.seed = x;
    } else {
        status = fpd__err(err, FPD_STATUS_FORMAT, "table '%s': key 'seed' is %s, not a non-negative integer", T,
                          v ? fpd__json_type_name(v) : "missing");
        goto done;
    }

    v = json_object_get(root, "rel_error");
    if (v && json_is_number(v)) {
        m.rel_error = json_number_value(v);
    } else if (v && json_is_null(v)) {
        m.rel_error = NAN;
    } else {
        status = fpd__err(err, FPD_STATUS_FORMAT, "table '%s': key 'rel_error' is %s, not a number", T,
                          v ? fpd__json_type_name(v) : "missing");
        goto done;
    }

    struct fpd_error serr;
    if (fpd_layer_shape_check(s, &serr) != FPD_STATUS_OK) {
        status = fpd__err(err, FPD_STATUS_FORMAT, "table '%s': invalid FPD shape: %s", T, serr.msg);
        goto done;
    }
    /* free/1: "free_coords" c in [1, dim] when the table has free coordinates */
    if (json_object_get(root, "free_coords")) {
        if ((status = get_int(root, T, "free_coords", 1, &m.free_coords, err))) goto done;
        if (m.free_coords > s->dim) {
            status = fpd__err(err, FPD_STATUS_FORMAT, "table '%s': key 'free_coords' is %lld, above dim %lld", T,
                              (long long)m.free_coords, (long long)s->dim);
            goto done;
        }
    }
    /* free-rowwise/1: "free_dtype" "int8" | "int4"; free-sym/1: "int8-sym" | "int4-sym"; only beside
     * free_coords */
    json_t *fd = json_object_get(root, "free_dtype");
    if (fd) {
        char b[64];
        if (!json_is_string(fd) || !fpd_free_kind_from_name(json_string_value(fd), &m.free_kind)) {
            status = fpd__err(err, FPD_STATUS_FORMAT,
                              "table '%s': key 'free_dtype' is %s%s%s; \"int8\", \"int4\" (free-rowwise/1), "
                              "\"int8-sym\" or \"int4-sym\" (free-sym/1) expected", T,
                              json_is_string(fd) ? "'" : fpd__json_type_name(fd),
                              json_is_string(fd) ? show(json_string_value(fd), b, sizeof b) : "",
                              json_is_string(fd) ? "'" : "");
            goto done;
        }
        if (m.free_coords == 0) {
            status = fpd__err(err, FPD_STATUS_FORMAT,
                              "table '%s': key 'free_dtype' is given but 'free_coords' is not (it stores their E)", T);
            goto done;
        }
        m.free_rowwise = true;
    }
    /* the row order folded into an id vocabulary (a marker: the rows read the same) */
    json_t *vo = json_object_get(root, "vocabulary_order");
    if (vo && !json_is_boolean(vo)) {
        status = fpd__err(err, FPD_STATUS_FORMAT, "table '%s': key 'vocabulary_order' is %s, not true or false", T,
                          fpd__json_type_name(vo));
        goto done;
    }
    m.vocabulary_order = vo && json_is_true(vo);
    *out = m;
done:
    if (root) json_decref(root);
    return status;
}

/* ------------------------------------------------------------ extensions */

static const char *const known_extensions[] = {FPD_EXTENSION_ROWWISE, FPD_EXTENSION_FREE, FPD_EXTENSION_FREE_ROWWISE,
                                               FPD_EXTENSION_FREE_SYM};

/* True when "fpd.extensions" lists `name`. */
static bool extension_declared(const struct fpd_safetensors *st, const char *name) {
    const char *ext = fpd_safetensors_metadata_get(st, FPD_META_EXTENSIONS_KEY);
    const size_t nl = strlen(name);
    for (const char *p = ext; p && *p;) {
        size_t len = strcspn(p, ",");
        if (len == nl && strncmp(p, name, len) == 0) return true;
        p += len;
        if (*p == ',') p++;
    }
    return false;
}

static bool starts_with(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

enum fpd_status fpd_checkpoint_check_extensions(const struct fpd_safetensors *st, struct fpd_error *err) {
    FPD_ASSERT(st);
    const char *P = fpd_safetensors_path(st);
    char b[96];
    bool rowwise_declared = false;
    const char *ext = fpd_safetensors_metadata_get(st, FPD_META_EXTENSIONS_KEY);
    for (const char *p = ext; p && *p;) {
        size_t len = strcspn(p, ",");
        bool known = false;
        for (size_t i = 0; i < sizeof known_extensions / sizeof *known_extensions; i++)
            if (strlen(known_extensions[i]) == len && strncmp(p, known_extensions[i], len) == 0) {
                known = true;
                rowwise_declared |= i == 0;
            }
        if (!known) {
            char item[64];
            snprintf(item, sizeof item, "%.*s", (int)(len < 60 ? len : 60), p);
            return fpd__err(err, len ? FPD_STATUS_UNSUPPORTED : FPD_STATUS_FORMAT,
                            "%s: metadata '%s' names the extension '%s', which this build (libfpd %s) does not "
                            "read (it reads FPD v1 with %s, %s, %s and %s); its tables would be read wrongly, so "
                            "they are refused",
                            P, FPD_META_EXTENSIONS_KEY, show(item, b, sizeof b), fpd_version(), FPD_EXTENSION_ROWWISE,
                            FPD_EXTENSION_FREE, FPD_EXTENSION_FREE_ROWWISE, FPD_EXTENSION_FREE_SYM);
        }
        p += len;
        if (*p == ',') p++;
    }
    for (int64_t i = 0; i < fpd_safetensors_metadata_count(st); i++) {
        const char *key, *val;
        fpd_safetensors_metadata_at(st, i, &key, &val);
        if (!starts_with(key, "fpd.")) continue;
        if (strcmp(key, FPD_META_VERSION_KEY) == 0 || strcmp(key, FPD_META_EXTENSIONS_KEY) == 0 ||
            starts_with(key, FPD_META_TABLE_PREFIX))
            continue;
        if (starts_with(key, FPD_META_ROWWISE_PREFIX)) {
            if (!rowwise_declared)
                return fpd__err(err, FPD_STATUS_FORMAT,
                                "%s: metadata key '%s' is a row-wise table, but '%s' does not list '%s'", P,
                                show(key, b, sizeof b), FPD_META_EXTENSIONS_KEY, FPD_EXTENSION_ROWWISE);
            continue;
        }
        return fpd__err(err, FPD_STATUS_UNSUPPORTED,
                        "%s: metadata key '%s' is not part of FPD v1 or an extension this build (libfpd %s) reads; "
                        "refusing the checkpoint rather than reading it wrongly",
                        P, show(key, b, sizeof b), fpd_version());
    }
    return FPD_STATUS_OK;
}

/* A tensor "T<infix>X" that table T's encoding does not define (FPD: core0..core{k-1},
 * row_perm; row-wise, k < 0: fused) is an unknown extension: refuse the table. */
static enum fpd_status unknown_tensors(const struct fpd_safetensors *st, const char *table, const char *infix,
                                       int32_t k, struct fpd_error *err) {
    size_t tl = strlen(table), il = strlen(infix);
    char b1[96], b2[96];
    for (int64_t i = 0; i < fpd_safetensors_count(st); i++) {
        const char *nm = fpd_safetensors_tensor(st, i)->name;
        if (strncmp(nm, table, tl) != 0 || strncmp(nm + tl, infix, il) != 0) continue;
        const char *rest = nm + tl + il;
        bool known = false;
        if (k < 0) {
            known = strcmp(rest, "fused") == 0;
        } else if (strcmp(rest, "row_perm") == 0 || strcmp(rest, "free") == 0 || strcmp(rest, "free_proj") == 0) {
            known = true; /* free/1's tensors: checked against the metadata by check_table */
        } else if (starts_with(rest, "core") && rest[4] >= '0' && rest[4] <= '9') {
            char *end;
            long m = strtol(rest + 4, &end, 10);
            known = *end == '\0' && m >= 0 && m < k && !(rest[4] == '0' && rest[5]);
        }
        if (!known)
            return fpd__err(err, FPD_STATUS_UNSUPPORTED,
                            "%s: table '%s': tensor '%s' is not part of its encoding in this build (libfpd %s): "
                            "an extension it does not read, so the table is refused",
                            fpd_safetensors_path(st), show(table, b1, sizeof b1), show(nm, b2, sizeof b2),
                            fpd_version());
    }
    return FPD_STATUS_OK;
}

/* ------------------------------------------------------------ loading a layer */

/* Re-prefix err's message with the file path. */
static enum fpd_status with_path(struct fpd_error *err, enum fpd_status status, const char *path) {
    if (err) {
        char msg[sizeof err->msg];
        memcpy(msg, err->msg, sizeof msg);
        fpd__err(err, status, "%s: %s", path, msg);
    }
    return status;
}

/* free/1 (header only): with "free_coords" c in the metadata, "free/1" is declared
 * and T.fpd.free [rows, c] and T.fpd.free_proj [c, dim] exist with float dtypes
 * (the metadata's core_dtype when given); without it, neither tensor exists. With
 * "free_dtype" (free-rowwise/1, declared too) T.fpd.free is U8 [rows, row bytes].
 * The two views into free_out[0..1] (NULL without free coordinates). */
static enum fpd_status check_free(const struct fpd_safetensors *st, const char *table,
                                  const struct fpd_table_meta *meta, const struct fpd_tensor_info **free_out,
                                  struct fpd_error *err) {
    enum fpd_status status = FPD_STATUS_OK;
    const char *P = fpd_safetensors_path(st);
    char tb[96], sb1[160], sb2[160];
    const char *T = show(table, tb, sizeof tb);
    const char *const suffix[2] = {FPD_FREE_TENSOR_SUFFIX, FPD_FREE_PROJ_TENSOR_SUFFIX};
    const struct fpd_tensor_info *t[2] = {NULL, NULL};
    const int64_t c = meta->free_coords;
    for (int q = 0; q < 2; q++) {
        char *name = str_cat(table, suffix[q], "");
        if (!name) return fpd__err(err, FPD_STATUS_NOMEM, "%s: table '%s': out of memory", P, T);
        t[q] = fpd_safetensors_find(st, name);
        fpd_free(name);
    }
    free_out[0] = free_out[1] = NULL;
    if (c == 0) {
        for (int q = 0; q < 2; q++)
            if (t[q])
                return fpd__err(err, FPD_STATUS_FORMAT,
                                "%s: table '%s': tensor '%s%s' exists but the table's metadata has no 'free_coords' "
                                "(%s); refusing the table rather than reading it without its free coordinates",
                                P, T, T, suffix[q], FPD_EXTENSION_FREE);
        return FPD_STATUS_OK;
    }
    if (!extension_declared(st, FPD_EXTENSION_FREE))
        return fpd__err(err, FPD_STATUS_FORMAT,
                        "%s: table '%s': metadata has 'free_coords' = %lld but '%s' does not list '%s'", P, T,
                        (long long)c, FPD_META_EXTENSIONS_KEY, FPD_EXTENSION_FREE);
    const char *q_ext = fpd_free_kind_is_sym(meta->free_kind) ? FPD_EXTENSION_FREE_SYM : FPD_EXTENSION_FREE_ROWWISE;
    if (meta->free_rowwise && !extension_declared(st, q_ext))
        return fpd__err(err, FPD_STATUS_FORMAT,
                        "%s: table '%s': metadata has 'free_dtype' = '%s' but '%s' does not list '%s'", P, T,
                        fpd_free_kind_name(meta->free_kind), FPD_META_EXTENSIONS_KEY, q_ext);
    for (int q = 0; q < 2; q++) {
        if (!t[q])
            return fpd__err(err, FPD_STATUS_FORMAT,
                            "%s: table '%s': metadata has 'free_coords' = %lld but tensor '%s%s' is missing (%s "
                            "stores E [rows, c] and P [c, dim] together)",
                            P, T, (long long)c, T, suffix[q], FPD_EXTENSION_FREE);
        if (q == 0 && meta->free_rowwise) { /* free-rowwise/1, free-sym/1: U8 [rows, row bytes of c columns] */
            const int64_t want[2] = {meta->shape.rows, (int64_t)fpd_free_row_bytes(meta->free_kind, c)};
            if (t[q]->dtype != FPD_DTYPE_U8 || t[q]->ndim != 2 || t[q]->shape[0] != want[0] ||
                t[q]->shape[1] != want[1]) {
                shape_str(t[q]->shape, t[q]->ndim, sb1, sizeof sb1);
                shape_str(want, 2, sb2, sizeof sb2);
                return fpd__err(err, FPD_STATUS_FORMAT,
                                "%s: table '%s': tensor '%s%s' is %s %s but the metadata (rows %lld, free_coords "
                                "%lld, free_dtype %s) needs U8 %s",
                                P, T, T, suffix[q], fpd_dtype_name(t[q]->dtype), sb1, (long long)meta->shape.rows,
                                (long long)c, fpd_free_kind_name(meta->free_kind), sb2);
            }
            continue;
        }
        if (!fpd_dtype_is_float(t[q]->dtype) ||
            (meta->core_dtype != FPD_DTYPE_COUNT && t[q]->dtype != meta->core_dtype))
            return fpd__err(err, FPD_STATUS_FORMAT, "%s: table '%s': tensor '%s%s' has dtype %s; %s expected", P, T,
                            T, suffix[q], fpd_dtype_name(t[q]->dtype),
                            meta->core_dtype != FPD_DTYPE_COUNT ? fpd_dtype_name(meta->core_dtype)
                                                                : "F32, F64, F16 or BF16");
        const int64_t want[2] = {q == 0 ? meta->shape.rows : c, q == 0 ? c : meta->shape.dim};
        if (t[q]->ndim != 2 || t[q]->shape[0] != want[0] || t[q]->shape[1] != want[1]) {
            shape_str(t[q]->shape, t[q]->ndim, sb1, sizeof sb1);
            shape_str(want, 2, sb2, sizeof sb2);
            status = fpd__err(err, FPD_STATUS_FORMAT,
                              "%s: table '%s': tensor '%s%s' has shape %s but the metadata (rows %lld, dim %lld, "
                              "free_coords %lld) needs %s",
                              P, T, T, suffix[q], sb1, (long long)meta->shape.rows, (long long)meta->shape.dim,
                              (long long)c, sb2);
            return status;
        }
    }
    free_out[0] = t[0];
    free_out[1] = t[1];
    return FPD_STATUS_OK;
}

/* Header-only validation of FPD table `table` (see fpd_checkpoint_check_table);
 * also hands back the core and row_perm views for fpd_checkpoint_load_layer. */
static enum fpd_status check_table(const struct fpd_safetensors *st, const char *table, struct fpd_table_meta *meta_out,
                                   const struct fpd_tensor_info **cores, const struct fpd_tensor_info **rp_out,
                                   const struct fpd_tensor_info **free_out, struct fpd_error *err) {
    FPD_ASSERT(st && table && meta_out && cores && rp_out);
    enum fpd_status status = FPD_STATUS_OK;
    const char *P = fpd_safetensors_path(st);
    char *key = NULL, *name = NULL;
    char tb[96], sb1[160], sb2[160];
    const char *T = show(table, tb, sizeof tb);
    key = str_cat(FPD_META_TABLE_PREFIX, table, "");
    if (!key) goto nomem;
    const char *js = fpd_safetensors_metadata_get(st, key);
    if (!js) {
        status = fpd__err(err, FPD_STATUS_FORMAT, "%s: no FPD table '%s' (metadata key '%s%s' is missing)", P, T,
                          FPD_META_TABLE_PREFIX, T);
        goto done;
    }
    struct fpd_table_meta meta;
    if ((status = fpd_checkpoint_check_extensions(st, err))) goto done;
    const char *version = fpd_safetensors_metadata_get(st, FPD_META_VERSION_KEY);
    if (!version || strcmp(version, "1") != 0) {
        status = fpd__err(err, version ? FPD_STATUS_UNSUPPORTED : FPD_STATUS_FORMAT,
                          "%s: table '%s': metadata '%s' is %s%s%s; this build reads FPD version 1", P, T,
                          FPD_META_VERSION_KEY, version ? "'" : "missing", version ? version : "", version ? "'" : "");
        goto done;
    }
    if ((status = fpd_table_meta_from_json(js, table, &meta, err))) {
        with_path(err, status, P);
        goto done;
    }
    const struct fpd_layer_shape *s = &meta.shape;

    /* Check every core against the metadata before allocating anything it sizes. */
    for (int32_t m = 0; m <= s->k; m++) {
        char suffix[32];
        snprintf(suffix, sizeof suffix, ".fpd.core%d", (int)m);
        fpd_free(name);
        name = str_cat(table, suffix, "");
        if (!name) goto nomem;
        const struct fpd_tensor_info *t = fpd_safetensors_find(st, name);
        if (m == s->k) {
            if (t) {
                status = fpd__err(err, FPD_STATUS_FORMAT,
                                  "%s: table '%s': tensor '%s%s' exists but the metadata says k = %d cores", P, T, T,
                                  suffix, (int)s->k);
                goto done;
            }
            break;
        }
        if (!t) {
            status = fpd__err(err, FPD_STATUS_FORMAT, "%s: table '%s': core tensor '%s%s' is missing", P, T, T, suffix);
            goto done;
        }
        if (!fpd_dtype_is_float(t->dtype) || (meta.core_dtype != FPD_DTYPE_COUNT && t->dtype != meta.core_dtype)) {
            status = fpd__err(err, FPD_STATUS_FORMAT, "%s: table '%s': core '%s%s' has dtype %s; %s expected", P, T, T,
                              suffix, fpd_dtype_name(t->dtype),
                              meta.core_dtype != FPD_DTYPE_COUNT ? fpd_dtype_name(meta.core_dtype)
                                                                 : "F32, F64, F16 or BF16");
            goto done;
        }
        int64_t want[5] = {s->terms, s->row_shape[m], s->ranks[m], s->col_shape[m], s->ranks[m + 1]};
        bool same = t->ndim == 5;
        for (int i = 0; same && i < 5; i++) same = t->shape[i] == want[i];
        if (!same) {
            shape_str(t->shape, t->ndim, sb1, sizeof sb1);
            shape_str(want, 5, sb2, sizeof sb2);
            status = fpd__err(err, FPD_STATUS_FORMAT,
                              "%s: table '%s': core '%s%s' has shape %s but the metadata needs %s "
                              "[p, n_m, r_m, d_m, r_m+1]",
                              P, T, T, suffix, sb1, sb2);
            goto done;
        }
        cores[m] = t;
    }
    fpd_free(name);
    name = str_cat(table, ".fpd.row_perm", "");
    if (!name) goto nomem;
    const struct fpd_tensor_info *rp = fpd_safetensors_find(st, name);
    if (rp) {
        if (rp->dtype != FPD_DTYPE_I32 && rp->dtype != FPD_DTYPE_I64) {
            status = fpd__err(err, FPD_STATUS_FORMAT,
                              "%s: table '%s': '%s.fpd.row_perm' has dtype %s; I32 or I64 expected",
                              P, T, T, fpd_dtype_name(rp->dtype));
            goto done;
        }
        if (rp->ndim != 1 || rp->shape[0] != s->rows) {
            shape_str(rp->shape, rp->ndim, sb1, sizeof sb1);
            status = fpd__err(err, FPD_STATUS_FORMAT, "%s: table '%s': '%s.fpd.row_perm' has shape %s; [%lld] expected",
                              P, T, T, sb1, (long long)s->rows);
            goto done;
        }
    }
    if ((status = check_free(st, table, &meta, free_out, err))) goto done;
    if ((status = unknown_tensors(st, table, ".fpd.", s->k, err))) goto done;
    *meta_out = meta;
    *rp_out = rp;
    goto done;
nomem:
    status = fpd__err(err, FPD_STATUS_NOMEM, "%s: table '%s': out of memory", P, T);
done:
    fpd_free(name);
    fpd_free(key);
    return status;
}

enum fpd_status fpd_checkpoint_check_table(const struct fpd_safetensors *st, const char *table,
                                           struct fpd_table_meta *meta, struct fpd_error *err) {
    FPD_ASSERT(st && table && meta);
    const struct fpd_tensor_info *cores[FPD_MAX_MODES] = {0}, *rp = NULL, *fr[2];
    return check_table(st, table, meta, cores, &rp, fr, err);
}

static enum fpd_status load_layer(const struct fpd_safetensors *st, const char *table, bool keep_stored,
                                  struct fpd_layer **out, struct fpd_error *err) {
    FPD_ASSERT(st && table && out);
    enum fpd_status status = FPD_STATUS_OK;
    const char *P = fpd_safetensors_path(st);
    int64_t *perm = NULL;
    struct fpd_layer *layer = NULL;
    const struct fpd_tensor_info *cores[FPD_MAX_MODES] = {0}, *rp = NULL, *fr[2] = {NULL, NULL};
    float *fbuf[2] = {NULL, NULL};
    char tb[96];
    const char *T = show(table, tb, sizeof tb);
    struct fpd_table_meta meta;
    *out = NULL;
    if ((status = check_table(st, table, &meta, cores, &rp, fr, err))) return status;
    const struct fpd_layer_shape *s = &meta.shape;

    if ((status = fpd_layer_init(s, &layer, err))) {
        with_path(err, status, P);
        goto done;
    }
    for (int32_t m = 0; m < s->k; m++) {
        int64_t n = fpd_layer_shape_core_numel(s, m);
        if ((status = fpd_dtype_to_f32(cores[m]->dtype, cores[m]->data, fpd_layer_core(layer, m), n))) {
            status = fpd__err(err, FPD_STATUS_FORMAT, "%s: table '%s': cannot convert core %d from %s", P, T, (int)m,
                              fpd_dtype_name(cores[m]->dtype));
            goto done;
        }
        const float *c = fpd_layer_core_const(layer, m);
        for (int64_t e = 0; e < n; e++)
            if (!isfinite(c[e])) {
                status = fpd__err(err, FPD_STATUS_FORMAT,
                                  "%s: table '%s': core '%s.fpd.core%d' element %lld is %g; cores must be finite", P,
                                  T, T, (int)m, (long long)e, (double)c[e]);
                goto done;
            }
    }
    if (rp && s->rows > 0) {
        perm = fpd_calloc((size_t)s->rows, sizeof *perm);
        if (!perm) goto nomem;
        const unsigned char *b = rp->data;
        size_t es = rp->dtype == FPD_DTYPE_I64 ? 8 : 4;
        for (int64_t i = 0; i < s->rows; i++) {
            uint64_t u = 0;
            for (size_t j = es; j-- > 0;) u = (u << 8) | b[(size_t)i * es + j];
            perm[i] = es == 8 ? (int64_t)u : (int64_t)(int32_t)(uint32_t)u;
        }
        if ((status = fpd_layer_set_row_perm(layer, perm, err))) {
            if (status == FPD_STATUS_INVALID_ARG) status = FPD_STATUS_FORMAT;
            char msg[sizeof err->msg];
            if (err) memcpy(msg, err->msg, sizeof msg);
            else msg[0] = '\0';
            fpd__err(err, status, "%s: table '%s': tensor '%s.fpd.row_perm': %s", P, T, T, msg);
            goto done;
        }
    }
    if (meta.free_coords > 0) { /* free/1 */
        const char *const suffix[2] = {FPD_FREE_TENSOR_SUFFIX, FPD_FREE_PROJ_TENSOR_SUFFIX};
        const bool stored = keep_stored && meta.free_rowwise; /* E kept as the file's rows */
        const int64_t c = meta.free_coords, n[2] = {s->rows * c, c * s->dim};
        for (int q = 0; q < 2; q++) {
            if (q == 0 && stored) continue; /* fpd_layer_set_free_stored checks the rows */
            if (!(fbuf[q] = fpd_malloc((size_t)(n[q] > 0 ? n[q] : 1) * sizeof(float)))) goto nomem;
            if (q == 0 && meta.free_rowwise && fpd_free_kind_is_sym(meta.free_kind)) { /* free-sym/1 */
                const size_t rb = fpd_free_row_bytes(meta.free_kind, c);
                for (int64_t i = 0; i < s->rows; i++)
                    if (!fpd__free_sym_dequantize_row(meta.free_kind, (const uint8_t *)fr[0]->data + (size_t)i * rb, c,
                                                      fbuf[0] + i * c)) {
                        status = fpd__err(err, FPD_STATUS_FORMAT,
                                          "%s: table '%s': row %lld of '%s%s' (%s) has a scale that is negative, NaN or Inf", P,
                                          T, (long long)i, T, suffix[0], fpd_free_kind_name(meta.free_kind));
                        goto done;
                    }
            } else if (q == 0 && meta.free_rowwise) { /* free-rowwise/1: dequantize E's rows */
                const enum fpd_rowwise rk = (enum fpd_rowwise)meta.free_kind;
                const size_t rb = fpd_rowwise_row_bytes(rk, c);
                for (int64_t i = 0; i < s->rows; i++) {
                    const uint8_t *row = (const uint8_t *)fr[0]->data + (size_t)i * rb;
                    if (!fpd_rowwise_row_finite(rk, row, c)) {
                        status = fpd__err(err, FPD_STATUS_FORMAT,
                                          "%s: table '%s': row %lld of '%s%s' (%s) has a scale or bias that is NaN or "
                                          "Inf, or overflows",
                                          P, T, (long long)i, T, suffix[0], fpd_free_kind_name(meta.free_kind));
                        goto done;
                    }
                    fpd_rowwise_dequantize_row(rk, row, c, fbuf[0] + i * c);
                }
            } else {
                fpd_dtype_to_f32(fr[q]->dtype, fr[q]->data, fbuf[q], n[q]);
            }
            for (int64_t x = 0; x < n[q]; x++)
                if (!isfinite(fbuf[q][x])) {
                    status = fpd__err(err, FPD_STATUS_FORMAT,
                                      "%s: table '%s': tensor '%s%s' element %lld is %g; free coordinates must be "
                                      "finite",
                                      P, T, T, suffix[q], (long long)x, (double)fbuf[q][x]);
                    goto done;
                }
        }
        if (stored && (status = fpd_layer_set_free_stored(layer, c, meta.free_kind, (const uint8_t *)fr[0]->data,
                                                          fbuf[1], err))) {
            char msg[sizeof err->msg];
            snprintf(msg, sizeof msg, "%s", err ? err->msg : "");
            status = fpd__err(err, status == FPD_STATUS_INVALID_ARG ? FPD_STATUS_FORMAT : status,
                              "%s: table '%s': tensor '%s%s': %s", P, T, T, suffix[0], msg);
            goto done;
        }
        if (!stored && (status = fpd_layer_set_free_coords(layer, c, fbuf[0], fbuf[1], err))) {
            with_path(err, status, P);
            goto done;
        }
    }
    *out = layer;
    layer = NULL;
    goto done;
nomem:
    status = fpd__err(err, FPD_STATUS_NOMEM, "%s: table '%s': out of memory", P, T);
done:
    fpd_layer_free(layer);
    fpd_free(perm);
    fpd_free(fbuf[0]);
    fpd_free(fbuf[1]);
    return status;
}

enum fpd_status fpd_checkpoint_load_layer(const struct fpd_safetensors *st, const char *table, struct fpd_layer **out,
                                          struct fpd_error *err) {
    return load_layer(st, table, false, out, err);
}

enum fpd_status fpd_checkpoint_load_layer_stored(const struct fpd_safetensors *st, const char *table,
                                                 struct fpd_layer **out, struct fpd_error *err) {
    return load_layer(st, table, true, out, err);
}

/* ------------------------------------------------------------ writing a layer */

void fpd_checkpoint_tensors_free(struct fpd_checkpoint_tensors *t) {
    if (!t) return;
    for (size_t q = 0; q < sizeof t->owned_ / sizeof t->owned_[0]; q++) fpd_free(t->owned_[q]);
    fpd_free(t->meta_key);
    fpd_free(t->meta_value);
    memset(t, 0, sizeof *t);
}

enum fpd_status fpd_checkpoint_tensors_init(const struct fpd_layer *layer, const char *table,
                                            const struct fpd_table_meta *meta, struct fpd_checkpoint_tensors *out,
                                            struct fpd_error *err) {
    FPD_ASSERT(layer && table && meta && out);
    memset(out, 0, sizeof *out);
    enum fpd_status status = FPD_STATUS_OK;
    const struct fpd_layer_shape *s = fpd_layer_get_shape(layer);
    enum fpd_dtype cd = meta->core_dtype;
    if (cd != FPD_DTYPE_F32 && cd != FPD_DTYPE_F16 && cd != FPD_DTYPE_BF16) cd = FPD_DTYPE_F32;
    const size_t es = fpd_dtype_size(cd);
    int64_t n = 0, own = 0;
    float *xrow = NULL; /* a row of E decoded, when the layer holds E as stored rows */
    /* one tensor: its name (owned) and data (owned) */
#define ADD_TENSOR(suffix, dt, bytes)                                                                   \
    do {                                                                                                \
        char *nm_ = str_cat(table, suffix, "");                                                         \
        void *buf_ = fpd_malloc((bytes) > 0 ? (bytes) : 1);                                              \
        out->owned_[own++] = nm_;                                                                       \
        out->owned_[own++] = buf_;                                                                      \
        if (!nm_ || !buf_) goto nomem;                                                                  \
        out->tensors[n].name = nm_;                                                                     \
        out->tensors[n].dtype = (dt);                                                                   \
        out->tensors[n].data = buf_;                                                                    \
        out->tensors[n].nbytes = (bytes);                                                               \
    } while (0)
    for (int32_t m = 0; m < s->k; m++) {
        char suffix[32];
        snprintf(suffix, sizeof suffix, ".fpd.core%d", (int)m);
        const int64_t numel = fpd_layer_shape_core_numel(s, m);
        ADD_TENSOR(suffix, cd, (size_t)numel * es);
        fpd_dtype_from_f32(cd, fpd_layer_core_const(layer, m), (void *)out->tensors[n].data, numel);
        struct fpd_tensor_info *t = &out->tensors[n++];
        t->ndim = 5;
        t->shape[0] = s->terms;
        t->shape[1] = s->row_shape[m];
        t->shape[2] = s->ranks[m];
        t->shape[3] = s->col_shape[m];
        t->shape[4] = s->ranks[m + 1];
    }
    const int64_t *perm = fpd_layer_row_perm(layer);
    if (perm) {
        int64_t padded = 1;
        for (int32_t m = 0; m < s->k; m++) padded *= s->row_shape[m];
        const bool wide = padded > INT32_MAX;
        ADD_TENSOR(".fpd.row_perm", wide ? FPD_DTYPE_I64 : FPD_DTYPE_I32, (size_t)s->rows * (wide ? 8u : 4u));
        unsigned char *b = (unsigned char *)out->tensors[n].data;
        for (int64_t i = 0; i < s->rows; i++) {
            uint64_t u = (uint64_t)perm[i];
            for (size_t j = 0; j < (wide ? 8u : 4u); j++) b[(size_t)i * (wide ? 8u : 4u) + j] = (unsigned char)(u >> (8 * j));
        }
        struct fpd_tensor_info *t = &out->tensors[n++];
        t->ndim = 1;
        t->shape[0] = s->rows;
    }
    const int64_t c = fpd_layer_get_free_coords(layer);
    const bool q_free = c > 0 && meta->free_rowwise;
    if (q_free && (unsigned)meta->free_kind >= FPD_FREE_KIND_COUNT) {
        status = fpd__err(err, FPD_STATUS_INVALID_ARG, "table '%s': free_kind %d is out of range", table,
                          (int)meta->free_kind);
        goto done;
    }
    const bool q_sym = q_free && fpd_free_kind_is_sym(meta->free_kind);
    enum fpd_free_kind held = FPD_FREE_INT8;
    const uint8_t *held_q = c > 0 ? fpd_layer_get_free_stored(layer, &held) : NULL; /* E held as stored rows */
    if (held_q && !(xrow = fpd_malloc((size_t)c * sizeof(float)))) goto nomem;
    if (q_free) { /* free-rowwise/1 or free-sym/1: E's rows quantized now (held in that kind: copied) */
        const size_t rb = fpd_free_row_bytes(meta->free_kind, c);
        ADD_TENSOR(FPD_FREE_TENSOR_SUFFIX, FPD_DTYPE_U8, (size_t)s->rows * rb);
        uint8_t *dst = (uint8_t *)out->tensors[n].data;
        int64_t bad = -1;
        if (held_q && held == meta->free_kind) memcpy(dst, held_q, (size_t)s->rows * rb);
        else if (held_q)
            for (int64_t i = 0; i < s->rows && bad < 0; i++) {
                fpd_layer_free_row(layer, i, xrow);
                if (fpd_free_quantize_rows(meta->free_kind, xrow, 1, c, dst + (size_t)i * rb) >= 0) bad = i;
            }
        else
            bad = fpd_free_quantize_rows(meta->free_kind, fpd_layer_get_free_e_const(layer), s->rows, c, dst);
        if (bad >= 0) {
            status = fpd__err(err, FPD_STATUS_NUMERIC,
                              "table '%s': row %lld of the free coordinates E cannot be stored as %s (a NaN or "
                              "Inf, or beyond F16's range)",
                              table, (long long)bad, fpd_free_kind_name(meta->free_kind));
            goto done;
        }
        out->tensors[n].ndim = 2;
        out->tensors[n].shape[0] = s->rows;
        out->tensors[n++].shape[1] = (int64_t)rb;
    } else if (c > 0) {
        ADD_TENSOR(FPD_FREE_TENSOR_SUFFIX, cd, (size_t)(s->rows * c) * es);
        if (held_q)
            for (int64_t i = 0; i < s->rows; i++) {
                fpd_layer_free_row(layer, i, xrow);
                fpd_dtype_from_f32(cd, xrow, (char *)out->tensors[n].data + (size_t)(i * c) * es, c);
            }
        else
            fpd_dtype_from_f32(cd, fpd_layer_get_free_e_const(layer), (void *)out->tensors[n].data, s->rows * c);
        out->tensors[n].ndim = 2;
        out->tensors[n].shape[0] = s->rows;
        out->tensors[n++].shape[1] = c;
    }
    if (c > 0) {
        ADD_TENSOR(FPD_FREE_PROJ_TENSOR_SUFFIX, cd, (size_t)(c * s->dim) * es);
        fpd_dtype_from_f32(cd, fpd_layer_get_free_p_const(layer), (void *)out->tensors[n].data, c * s->dim);
        out->tensors[n].ndim = 2;
        out->tensors[n].shape[0] = c;
        out->tensors[n++].shape[1] = s->dim;
        out->extension = q_sym    ? FPD_EXTENSION_FREE "," FPD_EXTENSION_FREE_SYM
                         : q_free ? FPD_EXTENSION_FREE "," FPD_EXTENSION_FREE_ROWWISE
                                  : FPD_EXTENSION_FREE;
    }
#undef ADD_TENSOR
    out->n = n;
    struct fpd_table_meta mt = *meta;
    mt.shape = *s;
    mt.core_dtype = cd;
    mt.free_coords = c;
    mt.free_rowwise = q_free;
    if ((status = fpd_table_meta_to_json(&mt, &out->meta_value, err))) goto done;
    if (!(out->meta_key = str_cat(FPD_META_TABLE_PREFIX, table, ""))) goto nomem;
    goto done;
nomem:
    status = fpd__err(err, FPD_STATUS_NOMEM, "table '%s': out of memory assembling its tensors", table);
done:
    fpd_free(xrow);
    if (status) fpd_checkpoint_tensors_free(out);
    return status;
}

enum fpd_status fpd_checkpoint_write_layer(const char *path, const char *table, const struct fpd_layer *layer,
                                           const struct fpd_table_meta *meta, unsigned flags, struct fpd_error *err) {
    struct fpd_checkpoint_tensors t;
    enum fpd_status status = fpd_checkpoint_tensors_init(layer, table, meta, &t, err);
    if (status) return status;
    const char *keys[3] = {FPD_META_VERSION_KEY, t.meta_key, FPD_META_EXTENSIONS_KEY};
    const char *vals[3] = {"1", t.meta_value, t.extension};
    status = fpd_safetensors_write(path, t.tensors, t.n, keys, vals, t.extension ? 3 : 2, flags, err);
    fpd_checkpoint_tensors_free(&t);
    return status;
}

/* ------------------------------------------------------------ rowwise/1 */

enum fpd_status fpd_rowwise_meta_to_json(const struct fpd_rowwise_meta *meta, char **out, struct fpd_error *err) {
    FPD_ASSERT(meta && out);
    *out = NULL;
    if ((unsigned)meta->kind >= FPD_ROWWISE_COUNT || (unsigned)meta->source_dtype >= FPD_DTYPE_COUNT)
        return fpd__err(err, FPD_STATUS_INVALID_ARG, "row-wise table metadata: encoding or dtype out of range");
    enum fpd_status status = FPD_STATUS_OK;
    json_t *o = json_object();
    if (!o) goto nomem;
    int bad = json_object_set_new(o, "encoding", json_string(fpd_rowwise_name(meta->kind)));
    bad |= json_object_set_new(o, "layout", json_string(FPD_ROWWISE_LAYOUT));
    bad |= json_object_set_new(o, "rows", json_integer(meta->rows));
    bad |= json_object_set_new(o, "dim", json_integer(meta->dim));
    bad |= json_object_set_new(o, "source_dtype", json_string(fpd_dtype_name(meta->source_dtype)));
    bad |= json_object_set_new(o, "rel_error", isfinite(meta->rel_error) ? json_real(meta->rel_error) : json_null());
    if (bad || !dump_json(o, out)) goto nomem;
    goto done;
nomem:
    status = fpd__err(err, FPD_STATUS_NOMEM, "out of memory serializing row-wise table metadata");
done:
    json_decref(o);
    return status;
}

enum fpd_status fpd_rowwise_meta_from_json(const char *json, const char *table, struct fpd_rowwise_meta *out,
                                           struct fpd_error *err) {
    FPD_ASSERT(json && out);
    enum fpd_status status = FPD_STATUS_OK;
    char tb[96], b[96];
    const char *T = show(table ? table : "?", tb, sizeof tb);
    json_error_t jerr;
    json_t *root = json_loads(json, JSON_REJECT_DUPLICATES, &jerr);
    struct fpd_rowwise_meta m;
    memset(&m, 0, sizeof m);
    if (!root || !json_is_object(root)) {
        status = fpd__err(err, FPD_STATUS_FORMAT, "row-wise table '%s': metadata is not a JSON object%s%s", T,
                          root ? "" : ": ", root ? "" : jerr.text);
        goto done;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        static const char *const known[] = {"encoding", "layout", "rows", "dim", "source_dtype", "rel_error"};
        bool ok = false;
        for (size_t i = 0; i < sizeof known / sizeof *known; i++) ok |= strcmp(key, known[i]) == 0;
        if (!ok) {
            status = fpd__err(err, FPD_STATUS_FORMAT,
                              "row-wise table '%s': metadata key '%s' is not part of %s; refusing the table rather "
                              "than reading it wrongly", T, show(key, b, sizeof b), FPD_EXTENSION_ROWWISE);
            goto done;
        }
    }
    v = json_object_get(root, "encoding");
    if (!json_is_string(v) || !fpd_rowwise_from_name(json_string_value(v), &m.kind)) {
        status = fpd__err(err, FPD_STATUS_FORMAT, "row-wise table '%s': key 'encoding' is %s%s%s; int8 or int4 expected", T,
                          json_is_string(v) ? "'" : v ? fpd__json_type_name(v) : "missing",
                          json_is_string(v) ? show(json_string_value(v), b, sizeof b) : "", json_is_string(v) ? "'" : "");
        goto done;
    }
    v = json_object_get(root, "layout");
    if (!json_is_string(v) || strcmp(json_string_value(v), FPD_ROWWISE_LAYOUT) != 0) {
        status = fpd__err(err, FPD_STATUS_FORMAT, "row-wise table '%s': key 'layout' is %s%s%s; '%s' expected", T,
                          json_is_string(v) ? "'" : v ? fpd__json_type_name(v) : "missing",
                          json_is_string(v) ? show(json_string_value(v), b, sizeof b) : "", json_is_string(v) ? "'" : "",
                          FPD_ROWWISE_LAYOUT);
        goto done;
    }
    if ((status = get_int(root, T, "rows", 0, &m.rows, err)) || (status = get_int(root, T, "dim", 1, &m.dim, err)) ||
        (status = get_dtype(root, T, "source_dtype", true, &m.source_dtype, err)))
        goto done;
    if (!fpd_dtype_is_float(m.source_dtype)) {
        status = fpd__err(err, FPD_STATUS_FORMAT, "row-wise table '%s': source_dtype %s is not a float dtype", T,
                          fpd_dtype_name(m.source_dtype));
        goto done;
    }
    v = json_object_get(root, "rel_error");
    if (json_is_number(v)) m.rel_error = json_number_value(v);
    else if (json_is_null(v)) m.rel_error = NAN;
    else {
        status = fpd__err(err, FPD_STATUS_FORMAT, "row-wise table '%s': key 'rel_error' is %s, not a number", T,
                          v ? fpd__json_type_name(v) : "missing");
        goto done;
    }
    *out = m;
done:
    json_decref(root);
    return status;
}

enum fpd_status fpd_checkpoint_load_rowwise(const struct fpd_safetensors *st, const char *table,
                                            struct fpd_rowwise_table *out, struct fpd_rowwise_meta *meta_out,
                                            struct fpd_error *err) {
    FPD_ASSERT(st && table && out);
    enum fpd_status status = FPD_STATUS_OK;
    const char *P = fpd_safetensors_path(st);
    char tb[96], sb[160];
    const char *T = show(table, tb, sizeof tb);
    char *key = str_cat(FPD_META_ROWWISE_PREFIX, table, ""), *name = str_cat(table, FPD_ROWWISE_TENSOR_SUFFIX, "");
    if (!key || !name) {
        status = fpd__err(err, FPD_STATUS_NOMEM, "%s: table '%s': out of memory", P, T);
        goto done;
    }
    if ((status = fpd_checkpoint_check_extensions(st, err))) goto done;
    const char *js = fpd_safetensors_metadata_get(st, key);
    if (!js) {
        status = fpd__err(err, FPD_STATUS_FORMAT, "%s: no row-wise table '%s' (metadata key '%s%s' is missing)", P, T,
                          FPD_META_ROWWISE_PREFIX, T);
        goto done;
    }
    const char *version = fpd_safetensors_metadata_get(st, FPD_META_VERSION_KEY);
    if (!version || strcmp(version, "1") != 0) {
        status = fpd__err(err, version ? FPD_STATUS_UNSUPPORTED : FPD_STATUS_FORMAT,
                          "%s: table '%s': metadata '%s' is %s%s%s; this build reads FPD version 1", P, T,
                          FPD_META_VERSION_KEY, version ? "'" : "missing", version ? version : "", version ? "'" : "");
        goto done;
    }
    struct fpd_rowwise_meta meta;
    if ((status = fpd_rowwise_meta_from_json(js, table, &meta, err))) {
        with_path(err, status, P);
        goto done;
    }
    const struct fpd_tensor_info *t = fpd_safetensors_find(st, name);
    if (!t) {
        status = fpd__err(err, FPD_STATUS_FORMAT, "%s: table '%s': tensor '%s%s' is missing", P, T, T,
                          FPD_ROWWISE_TENSOR_SUFFIX);
        goto done;
    }
    int64_t want[2] = {meta.rows, (int64_t)fpd_rowwise_row_bytes(meta.kind, meta.dim)};
    if (t->dtype != FPD_DTYPE_U8 || t->ndim != 2 || t->shape[0] != want[0] || t->shape[1] != want[1]) {
        char sb2[64];
        shape_str(t->shape, t->ndim, sb, sizeof sb);
        shape_str(want, 2, sb2, sizeof sb2);
        status = fpd__err(err, FPD_STATUS_FORMAT,
                          "%s: table '%s': tensor '%s%s' is %s %s; the metadata (%s, %lld x %lld) needs U8 %s", P, T,
                          T, FPD_ROWWISE_TENSOR_SUFFIX, fpd_dtype_name(t->dtype), sb, fpd_rowwise_name(meta.kind),
                          (long long)meta.rows, (long long)meta.dim, sb2);
        goto done;
    }
    if ((status = unknown_tensors(st, table, ".rowwise.", -1, err))) goto done;
    out->data = t->data;
    out->kind = meta.kind;
    out->rows = meta.rows;
    out->dim = meta.dim;
    if (meta_out) *meta_out = meta;
done:
    fpd_free(key);
    fpd_free(name);
    return status;
}

enum fpd_status fpd_checkpoint_verify_table(const struct fpd_safetensors *st, const char *table, bool deep,
                                            struct fpd_error *err) {
    FPD_ASSERT(st && table);
    enum fpd_status status = FPD_STATUS_OK;
    const char *P = fpd_safetensors_path(st);
    char tb[96];
    const char *T = show(table, tb, sizeof tb);
    struct fpd_layer *layer = NULL;
    float *buf = NULL;
    char *key = str_cat(FPD_META_ROWWISE_PREFIX, table, "");
    if (!key) return fpd__err(err, FPD_STATUS_NOMEM, "%s: table '%s': out of memory", P, T);
    bool rowwise = fpd_safetensors_metadata_get(st, key) != NULL;
    fpd_free(key);
    if (rowwise) {
        struct fpd_rowwise_table q;
        if ((status = fpd_checkpoint_load_rowwise(st, table, &q, NULL, err)) || !deep) return status;
        size_t rb = fpd_rowwise_row_bytes(q.kind, q.dim);
        for (int64_t i = 0; i < q.rows; i++)
            if (!fpd_rowwise_row_finite(q.kind, (const uint8_t *)q.data + (size_t)i * rb, q.dim))
                return fpd__err(err, FPD_STATUS_FORMAT,
                                "%s: table '%s': row %lld of '%s%s' has a scale or bias that is NaN or Inf, or "
                                "overflows", P, T, (long long)i, T, FPD_ROWWISE_TENSOR_SUFFIX);
        return FPD_STATUS_OK;
    }
    if (!deep) { /* the cores only: O(parameters) */
        struct fpd_table_meta meta;
        const struct fpd_tensor_info *cores[FPD_MAX_MODES + 2] = {0}, *rp = NULL, *fr[2];
        if ((status = check_table(st, table, &meta, cores, &rp, fr, err))) return status;
        cores[meta.shape.k] = fr[0]; /* free/1's E and P after the cores, when present */
        cores[meta.shape.k + 1] = fr[1];
        float tmp[256];
        const int32_t nt = meta.shape.k + (meta.free_coords > 0 ? 2 : 0);
        for (int32_t m = 0; m < nt; m++) {
            int64_t n = m < meta.shape.k ? fpd_layer_shape_core_numel(&meta.shape, m)
                        : m == meta.shape.k ? meta.shape.rows * meta.free_coords
                                            : meta.free_coords * meta.shape.dim;
            if (m == meta.shape.k && meta.free_rowwise) { /* free-rowwise/1: E's rows' scale and bias */
                if (fpd_free_kind_is_sym(meta.free_kind)) { /* free-sym/1: the rows' scales */
                    const size_t rb = fpd_free_row_bytes(meta.free_kind, meta.free_coords);
                    for (int64_t i = 0; i < meta.shape.rows; i++)
                        if (!fpd__free_sym_dequantize_row(meta.free_kind,
                                                          (const uint8_t *)cores[m]->data + (size_t)i * rb,
                                                          meta.free_coords, NULL))
                            return fpd__err(err, FPD_STATUS_FORMAT,
                                            "%s: table '%s': row %lld of '%s' (%s) has a scale that is negative, NaN or Inf", P,
                                            T, (long long)i, cores[m]->name, fpd_free_kind_name(meta.free_kind));
                    continue;
                }
                const enum fpd_rowwise rk = (enum fpd_rowwise)meta.free_kind;
                const size_t rb = fpd_rowwise_row_bytes(rk, meta.free_coords);
                for (int64_t i = 0; i < meta.shape.rows; i++)
                    if (!fpd_rowwise_row_finite(rk, (const uint8_t *)cores[m]->data + (size_t)i * rb,
                                                meta.free_coords))
                        return fpd__err(err, FPD_STATUS_FORMAT,
                                        "%s: table '%s': row %lld of '%s' (%s) has a scale or bias that is NaN or "
                                        "Inf, or overflows",
                                        P, T, (long long)i, cores[m]->name, fpd_free_kind_name(meta.free_kind));
                continue;
            }
            size_t es = fpd_dtype_size(cores[m]->dtype);
            for (int64_t e0 = 0; e0 < n; e0 += 256) {
                int64_t c = n - e0 < 256 ? n - e0 : 256;
                fpd_dtype_to_f32(cores[m]->dtype, (const unsigned char *)cores[m]->data + (size_t)e0 * es, tmp, c);
                for (int64_t e = 0; e < c; e++)
                    if (!isfinite(tmp[e]))
                        return fpd__err(err, FPD_STATUS_FORMAT, "%s: table '%s': %s '%s' element %lld is %g; %s",
                                        P, T, m < meta.shape.k ? "core" : "tensor", cores[m]->name,
                                        (long long)(e0 + e), (double)tmp[e],
                                        m < meta.shape.k ? "cores must be finite"
                                                         : "free coordinates must be finite");
            }
        }
        return FPD_STATUS_OK;
    }
    /* deep: loading checks the cores, row_perm and E's stored rows (kept so: an int4-sym E
     * takes its file's bytes, not 4 c a row); then every reconstructed row */
    if ((status = fpd_checkpoint_load_layer_stored(st, table, &layer, err))) goto done;
    const struct fpd_layer_shape *s = fpd_layer_get_shape(layer);
    const int64_t block = 1024;
    buf = fpd_malloc((size_t)(block * s->dim) * sizeof(float));
    if (!buf) {
        status = fpd__err(err, FPD_STATUS_NOMEM, "%s: table '%s': out of memory", P, T);
        goto done;
    }
    for (int64_t r0 = 0; r0 < s->rows; r0 += block) {
        int64_t r1 = r0 + block < s->rows ? r0 + block : s->rows;
        if ((status = fpd_layer_reconstruct(layer, r0, r1, buf, err))) goto done;
        for (int64_t e = 0; e < (r1 - r0) * s->dim; e++)
            if (!isfinite(buf[e])) {
                status = fpd__err(err, FPD_STATUS_FORMAT,
                                  "%s: table '%s': row %lld, column %lld of the reconstructed table is %g: the cores "
                                  "are finite but their products overflow F32", P, T, (long long)(r0 + e / s->dim),
                                  (long long)(e % s->dim), (double)buf[e]);
                goto done;
            }
    }
done:
    fpd_layer_free(layer);
    fpd_free(buf);
    return status;
}

/* ------------------------------------------------------------ other formats */

const char *fpd__format_guess(const unsigned char *b, size_t n, const char *path) {
    size_t pl = path ? strlen(path) : 0;
    if (n >= 4 && memcmp(b, "PK\x03\x04", 4) == 0)
        return "a PyTorch .pt/.bin checkpoint (a zip archive, as torch.save writes); convert it with "
               "safetensors.torch.save_file(model.state_dict(), 'model.safetensors')";
    if (n >= 2 && b[0] == 0x80 && b[1] >= 2 && b[1] <= 5)
        return "a Python pickle (a legacy PyTorch .pt/.bin checkpoint); convert it with "
               "safetensors.torch.save_file(torch.load(path), 'model.safetensors')";
    if (n >= 4 && memcmp(b, "GGUF", 4) == 0) return "a GGUF file (llama.cpp), which fpd does not read";
    if (n >= 4 && memcmp(b, "\x89HDF", 4) == 0) return "an HDF5 file (e.g. Keras .h5), which fpd does not read";
    if (n >= 6 && memcmp(b, "\x93NUMPY", 6) == 0) return "a NumPy .npy array";
    if (pl >= 4 && strcmp(path + pl - 4, ".npy") == 0)
        return "a .npy file with a bad magic (a .npy starts with \\x93NUMPY)";
    if (n >= 1 && (b[0] == '{' || b[0] == '['))
        return "a JSON file (a safetensors file starts with an 8-byte header length)";
    if (n >= 2 && b[0] == 0x1f && b[1] == 0x8b) return "a gzip file; decompress it first (gunzip)";
    if (n >= 8) { /* 8 bytes of printable text (or tabs and newlines): a safetensors file
                   * starts with its header length, whose high bytes are zero */
        size_t text = 0;
        for (size_t i = 0; i < 8; i++) text += (b[i] >= 0x20 && b[i] < 0x7f) || b[i] == '\t' || b[i] == '\n' || b[i] == '\r';
        if (text == 8)
            return "a text file such as a TSV or a README; a safetensors file starts with an 8-byte header length";
    }
    return NULL;
}
