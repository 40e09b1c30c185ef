/*
 * safetensors.c - our own safetensors reader (mmap, every rule checked before a
 * pointer into the file is formed) and writer (deterministic, atomic).
 *
 * Format: formats/fpd-formats.h and https://github.com/huggingface/safetensors.
 * The header JSON is parsed with jansson (JSON_REJECT_DUPLICATES); names and
 * metadata are copied into our own allocations, so the JSON tree is freed before
 * fpd_safetensors_open returns.
 *
 * Reader checks, in order: 8-byte length prefix present; header length
 * <= FPD_SAFETENSORS_MAX_HEADER and 8 + N <= file size; header is UTF-8; it parses
 * as JSON, without duplicate names, into an object; each entry is an object with
 * exactly the keys dtype, shape, data_offsets, of the right types; byte sizes
 * computed without overflow equal end - begin; sorted by begin, the tensors tile the
 * data section [0, file size - 8 - N) exactly. A tensor with more than FPD_MAX_DIMS
 * dimensions is valid but UNSUPPORTED; that status is returned only when the rest
 * of the file is valid, so a FORMAT problem is always reported first.
 */
#include "formats/fpd-formats.h"
#include "formats/formats-impl.h"
#include "lib/fpd-impl.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* One tensor of an open file: the public view plus its offsets in the data section. */
struct st_entry {
    struct fpd_tensor_info info; /* info.name is owned (fpd_malloc)             */
    uint64_t begin, end;         /* data_offsets, relative to the data section */
};

struct fpd_safetensors {
    char *path;                    /* owned copy of the path or name          */
    const unsigned char *base;     /* the whole file (mmap or caller's buffer) */
    size_t size;                   /* file size                                */
    void *map;                     /* mmap base, NULL for open_memory          */
    size_t map_len;
    size_t header_size;            /* N                                        */
    int64_t n_tensors;
    struct st_entry *entries;      /* sorted by (begin, end, name)             */
    const struct fpd_tensor_info **by_name; /* sorted by name, for find        */
    int64_t n_meta;
    char **meta_keys, **meta_values; /* header order                           */
};

/* ------------------------------------------------------------ helpers */

/* A short, printable rendering of a name for messages: control bytes and quotes
 * escaped, truncated to about 100 bytes. Returned by value (C11 6.2.4p8 keeps the
 * temporary alive to the end of the full expression, so `shown(..).s` in a call's
 * arguments is fine). */
struct shown {
    char s[128];
};

static struct shown shown(const char *s, size_t len) {
    struct shown r;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (o + 8 >= sizeof r.s - 4) {
            memcpy(r.s + o, "...", 3);
            o += 3;
            break;
        }
        if (c < 0x20 || c == 0x7f || c == '\'' || c == '\\') {
            o += (size_t)snprintf(r.s + o, sizeof r.s - o, "\\x%02x", c);
        } else {
            r.s[o++] = (char)c;
        }
    }
    r.s[o] = '\0';
    return r;
}

static struct shown shownz(const char *s) { return shown(s, strlen(s)); }


/* Render a JSON value compactly for a message ("[5, 6]", "-1", "\"x\""). */
static struct shown json_shown(const json_t *j) {
    struct shown r;
    char *s = json_dumps(j, JSON_ENCODE_ANY); /* one line, ", " between elements */
    if (!s) {
        snprintf(r.s, sizeof r.s, "%s", fpd__json_type_name(j));
        return r;
    }
    r = shownz(s);
    free(s); /* jansson's allocator */
    return r;
}

static struct shown shape_shown(const int64_t *shape, int32_t ndim) {
    struct shown r;
    size_t o = 0;
    r.s[o++] = '[';
    for (int32_t i = 0; i < ndim && o < sizeof r.s - 24; i++)
        o += (size_t)snprintf(r.s + o, sizeof r.s - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
    snprintf(r.s + o, sizeof r.s - o, "]");
    return r;
}

static char *dup_bytes(const char *s, size_t len) {
    char *d = fpd_malloc(len + 1);
    if (d) {
        memcpy(d, s, len);
        d[len] = '\0';
    }
    return d;
}


/* Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above
 * U+10FFFF. Returns true if valid; else *bad is the offset of the first bad byte. */
static bool utf8_valid(const unsigned char *s, size_t n, size_t *bad) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t need;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            need = 1, cp = c & 0x1fu, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            need = 2, cp = c & 0x0fu, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            need = 3, cp = c & 0x07u, min = 0x10000;
        } else {
            *bad = i;
            return false;
        }
        if (n - i <= need) {
            *bad = i;
            return false;
        }
        for (size_t k = 1; k <= need; k++) {
            if ((s[i + k] & 0xc0) != 0x80) {
                *bad = i;
                return false;
            }
            cp = (cp << 6) | (s[i + k] & 0x3fu);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            *bad = i;
            return false;
        }
        i += need + 1;
    }
    return true;
}

/* JSON nesting depth (objects and arrays) after reading the first `pos` bytes of s. */
static int json_depth_at(const unsigned char *s, size_t n, size_t pos) {
    int depth = 0;
    bool in_str = false, esc = false;
    if (pos > n) pos = n;
    for (size_t i = 0; i < pos; i++) {
        unsigned char c = s[i];
        if (in_str) {
            if (esc) esc = false;
            else if (c == '\\') esc = true;
            else if (c == '"') in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return depth;
}

int64_t fpd_tensor_info_numel(const struct fpd_tensor_info *t) {
    int64_t n = 1;
    for (int32_t i = 0; i < t->ndim; i++) {
        if (!fpd__mul_i64(n, t->shape[i], &n)) return -1;
    }
    return n;
}

/* ------------------------------------------------------------ reader */

void fpd_safetensors_free(struct fpd_safetensors *st) {
    if (!st) return;
    if (st->entries) {
        for (int64_t i = 0; i < st->n_tensors; i++) fpd_free((char *)st->entries[i].info.name);
        fpd_free(st->entries);
    }
    fpd_free(st->by_name);
    if (st->meta_keys) {
        for (int64_t i = 0; i < st->n_meta; i++) fpd_free(st->meta_keys[i]);
        fpd_free(st->meta_keys);
    }
    if (st->meta_values) {
        for (int64_t i = 0; i < st->n_meta; i++) fpd_free(st->meta_values[i]);
        fpd_free(st->meta_values);
    }
    fpd__unmap_file(st->map, st->map_len);
    fpd_free(st->path);
    fpd_free(st);
}

static int cmp_entry_offset(const void *a, const void *b) {
    const struct st_entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->info.name, y->info.name);
}

static int cmp_info_name(const void *a, const void *b) {
    const struct fpd_tensor_info *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

/* Parse "__metadata__" (an object of strings) into st->meta_*. */
static enum fpd_status parse_metadata(struct fpd_safetensors *st, json_t *meta, struct fpd_error *err) {
    const char *P = st->path;
    if (json_is_null(meta)) return FPD_STATUS_OK; /* no metadata, as the reference reads null (an Option) */
    if (!json_is_object(meta))
        return fpd__err(err, FPD_STATUS_FORMAT, "%s: __metadata__ is %s, not an object of strings", P,
                        fpd__json_type_name(meta));
    size_t n = json_object_size(meta);
    if (n == 0) return FPD_STATUS_OK;
    st->meta_keys = fpd_calloc(n, sizeof *st->meta_keys);
    st->meta_values = fpd_calloc(n, sizeof *st->meta_values);
    if (!st->meta_keys || !st->meta_values)
        return fpd__err(err, FPD_STATUS_NOMEM, "%s: out of memory for %zu metadata entries", P, n);
    const char *key;
    json_t *val;
    json_object_foreach(meta, key, val) {
        if (!json_is_string(val))
            return fpd__err(err, FPD_STATUS_FORMAT,
                            "%s: __metadata__ key '%s': value is %s (%s), not a string", P, shownz(key).s,
                            fpd__json_type_name(val), json_shown(val).s);
        int64_t i = st->n_meta;
        st->meta_keys[i] = dup_bytes(key, strlen(key));
        st->meta_values[i] = dup_bytes(json_string_value(val), json_string_length(val));
        if (st->meta_keys[i] || st->meta_values[i]) st->n_meta++; /* so free() sees both */
        if (!st->meta_keys[i] || !st->meta_values[i])
            return fpd__err(err, FPD_STATUS_NOMEM, "%s: out of memory copying metadata", P);
    }
    return FPD_STATUS_OK;
}

/* Read one non-negative integer of a JSON array for tensor `name`. */
static enum fpd_status get_nonneg(const char *P, const char *name, const char *what, json_t *arr, size_t i,
                                  int64_t *out, struct fpd_error *err) {
    json_t *v = json_array_get(arr, i);
    if (!json_is_integer(v))
        return fpd__err(err, FPD_STATUS_FORMAT, "%s: tensor '%s': %s %s: element %zu is %s, not an integer", P,
                        shownz(name).s, what, json_shown(arr).s, i, fpd__json_type_name(v));
    json_int_t x = json_integer_value(v);
    if (x < 0)
        return fpd__err(err, FPD_STATUS_FORMAT, "%s: tensor '%s': %s %s: element %zu is negative (%lld)", P,
                        shownz(name).s, what, json_shown(arr).s, i, (long long)x);
    *out = (int64_t)x;
    return FPD_STATUS_OK;
}

/* Validate one tensor entry into e (e->info.name already set). Sets *too_many_dims
 * (without failing) when the shape has more than FPD_MAX_DIMS dimensions. */
static enum fpd_status parse_entry(const char *P, const char *name, json_t *obj, struct st_entry *e,
                                   bool *too_many_dims, size_t *ndim_seen, struct fpd_error *err) {
    if (!json_is_object(obj))
        return fpd__err(err, FPD_STATUS_FORMAT,
                        "%s: tensor '%s': entry is %s, not an object with dtype, shape, data_offsets", P,
                        shownz(name).s, fpd__json_type_name(obj));
    static const char *const keys[3] = {"dtype", "shape", "data_offsets"};
    json_t *vals[3];
    for (int i = 0; i < 3; i++) {
        vals[i] = json_object_get(obj, keys[i]);
        if (!vals[i])
            return fpd__err(err, FPD_STATUS_FORMAT, "%s: tensor '%s': missing key '%s'", P, shownz(name).s,
                            keys[i]);
    }
    if (json_object_size(obj) != 3) {
        const char *k;
        json_t *v;
        json_object_foreach(obj, k, v) {
            if (strcmp(k, "dtype") && strcmp(k, "shape") && strcmp(k, "data_offsets"))
                return fpd__err(err, FPD_STATUS_FORMAT,
                                "%s: tensor '%s': unexpected key '%s' (allowed: dtype, shape, data_offsets)", P,
                                shownz(name).s, shownz(k).s);
        }
    }
    /* dtype */
    json_t *jd = vals[0];
    if (!json_is_string(jd))
        return fpd__err(err, FPD_STATUS_FORMAT, "%s: tensor '%s': dtype is %s, not a string", P, shownz(name).s,
                        fpd__json_type_name(jd));
    if (!fpd_dtype_from_name(json_string_value(jd), json_string_length(jd), &e->info.dtype))
        return fpd__err(err, FPD_STATUS_FORMAT, "%s: tensor '%s': unknown dtype '%s'", P, shownz(name).s,
                        shown(json_string_value(jd), json_string_length(jd)).s);
    /* shape */
    json_t *js = vals[1];
    if (!json_is_array(js))
        return fpd__err(err, FPD_STATUS_FORMAT, "%s: tensor '%s': shape is %s, not an array", P, shownz(name).s,
                        fpd__json_type_name(js));
    size_t nd = json_array_size(js);
    int64_t numel = 1;
    bool overflow = false;
    for (size_t i = 0; i < nd; i++) {
        int64_t d;
        enum fpd_status s = get_nonneg(P, name, "shape", js, i, &d, err);
        if (s) return s;
        if (i < FPD_MAX_DIMS) e->info.shape[i] = d;
        if (!overflow && !fpd__mul_i64(numel, d, &numel)) overflow = true;
    }
    /* The product is taken in order and must not overflow at any step, as the
     * reference implementation checks it (try_fold with checked_mul): [0, huge, huge]
     * is an empty tensor, [huge, huge, 0] is refused, as the library refuses it. */
    size_t es = fpd_dtype_size(e->info.dtype), nbytes = 0;
    if (overflow || !fpd__mul_size((size_t)numel, es, &nbytes))
        return fpd__err(err, FPD_STATUS_FORMAT, "%s: tensor '%s': shape %s of %s overflows (more than %s)", P,
                        shownz(name).s, json_shown(js).s, fpd_dtype_name(e->info.dtype),
                        overflow ? "2^63-1 elements" : "SIZE_MAX bytes");
    *ndim_seen = nd;
    *too_many_dims = nd > FPD_MAX_DIMS;
    e->info.ndim = (int32_t)(nd > FPD_MAX_DIMS ? FPD_MAX_DIMS : nd);
    e->info.nbytes = nbytes;
    /* data_offsets */
    json_t *jo = vals[2];
    if (!json_is_array(jo) || json_array_size(jo) != 2)
        return fpd__err(err, FPD_STATUS_FORMAT, "%s: tensor '%s': data_offsets is %s, not [begin, end]", P,
                        shownz(name).s, json_shown(jo).s);
    int64_t b, en;
    enum fpd_status s = get_nonneg(P, name, "data_offsets", jo, 0, &b, err);
    if (!s) s = get_nonneg(P, name, "data_offsets", jo, 1, &en, err);
    if (s) return s;
    if (b > en)
        return fpd__err(err, FPD_STATUS_FORMAT, "%s: tensor '%s': data_offsets [%lld, %lld) has begin > end", P,
                        shownz(name).s, (long long)b, (long long)en);
    if ((uint64_t)(en - b) != (uint64_t)nbytes)
        return fpd__err(err, FPD_STATUS_FORMAT,
                        "%s: tensor '%s': data_offsets [%lld, %lld) but shape %s of %s needs %zu bytes",
                        P, shownz(name).s, (long long)b, (long long)en, json_shown(js).s,
                        fpd_dtype_name(e->info.dtype), nbytes);
    e->begin = (uint64_t)b;
    e->end = (uint64_t)en;
    return FPD_STATUS_OK;
}

/* Parse and validate st->base[0, st->size). On success every view is set. */
static enum fpd_status st_parse(struct fpd_safetensors *st, struct fpd_error *err) {
    enum fpd_status status = FPD_STATUS_OK;
    const char *P = st->path;
    json_t *root = NULL;
    struct fpd_error unsupported = {0};
    bool have_unsupported = false;

    if (st->size < 8) {
        status = fpd__err(err, FPD_STATUS_FORMAT,
                          "%s: file is %zu bytes, too short for the 8-byte header length prefix", P, st->size);
        goto done;
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | st->base[i];
    const char *looks = fpd__format_guess(st->base, st->size, P);
    if (looks && (n > FPD_SAFETENSORS_MAX_HEADER || n > st->size - 8 || st->size == 8 || st->base[8] != '{')) {
        status = fpd__err(err, FPD_STATUS_FORMAT, "%s: not a safetensors file (looks like %s)", P, looks);
        goto done;
    }
    if (n > FPD_SAFETENSORS_MAX_HEADER) {
        status = fpd__err(err, FPD_STATUS_FORMAT, "%s: header length %" PRIu64 " exceeds the limit of %llu bytes", P,
                          n, (unsigned long long)FPD_SAFETENSORS_MAX_HEADER);
        goto done;
    }
    if (n > st->size - 8) {
        status = fpd__err(err, FPD_STATUS_FORMAT,
                          "%s: header length %" PRIu64 " runs past the end of the file (%zu bytes; 8 + %" PRIu64
                          " needed)", P, n, st->size, n);
        goto done;
    }
    st->header_size = (size_t)n;
    const unsigned char *hdr = st->base + 8;
    size_t data_len = st->size - 8 - st->header_size;
    size_t bad = 0;
    if (!utf8_valid(hdr, st->header_size, &bad)) {
        status = fpd__err(err, FPD_STATUS_FORMAT, "%s: header is not valid UTF-8 (byte 0x%02x at header offset %zu)",
                          P, hdr[bad], bad);
        goto done;
    }
    json_error_t jerr;
    root = json_loadb((const char *)hdr, st->header_size, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!root) {
        if (json_error_code(&jerr) == json_error_duplicate_key) {
            /* jansson's text is "duplicate object key near '"NAME"'"; its position is just after it. */
            const char *near = strstr(jerr.text, "near '");
            const char *key = near ? near + 6 : "?";
            size_t klen = strlen(key);
            if (klen && key[klen - 1] == '\'') klen--;
            if (klen >= 2 && key[0] == '"' && key[klen - 1] == '"') key++, klen -= 2; /* the raw token */
            int depth = json_depth_at(hdr, st->header_size, (size_t)jerr.position);
            if (depth <= 1)
                status = fpd__err(err, FPD_STATUS_FORMAT, "%s: duplicate tensor name '%s' at header offset %d", P,
                                  shown(key, klen).s, jerr.position);
            else
                status = fpd__err(err, FPD_STATUS_FORMAT, "%s: duplicate key '%s' inside an entry at header offset %d",
                                  P, shown(key, klen).s, jerr.position);
        } else {
            status = fpd__err(err, FPD_STATUS_FORMAT, "%s: header is not valid JSON: %s (header offset %d)", P,
                              jerr.text, jerr.position);
        }
        goto done;
    }
    if (!json_is_object(root)) {
        status = fpd__err(err, FPD_STATUS_FORMAT, "%s: header is %s, not a JSON object", P, fpd__json_type_name(root));
        goto done;
    }

    size_t count = json_object_size(root);
    json_t *meta = json_object_get(root, "__metadata__");
    if (meta) {
        count--;
        if ((status = parse_metadata(st, meta, err))) goto done;
    }
    if (count > 0) {
        st->entries = fpd_calloc(count, sizeof *st->entries);
        st->by_name = fpd_calloc(count, sizeof *st->by_name);
        if (!st->entries || !st->by_name) {
            status = fpd__err(err, FPD_STATUS_NOMEM, "%s: out of memory for %zu tensors", P, count);
            goto done;
        }
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (val == meta) continue;
        struct st_entry *e = &st->entries[st->n_tensors];
        e->info.name = dup_bytes(key, strlen(key));
        if (!e->info.name) {
            status = fpd__err(err, FPD_STATUS_NOMEM, "%s: out of memory copying tensor names", P);
            goto done;
        }
        st->n_tensors++;
        bool many = false;
        size_t nd = 0;
        if ((status = parse_entry(P, key, val, e, &many, &nd, err))) goto done;
        if (many && !have_unsupported) {
            have_unsupported = true;
            fpd__err(&unsupported, FPD_STATUS_UNSUPPORTED,
                     "%s: tensor '%s' has %zu dimensions; at most %d are supported", P, shownz(key).s, nd,
                     FPD_MAX_DIMS);
        }
    }

    /* Offsets: sorted, contiguous from 0, ending exactly at the end of the data. */
    if (st->n_tensors > 1) qsort(st->entries, (size_t)st->n_tensors, sizeof *st->entries, cmp_entry_offset);
    uint64_t expect = 0;
    for (int64_t i = 0; i < st->n_tensors; i++) {
        const struct st_entry *e = &st->entries[i];
        if (e->begin > expect) {
            status = fpd__err(err, FPD_STATUS_FORMAT,
                              "%s: hole in the data section: bytes [%" PRIu64 ", %" PRIu64
                              ") belong to no tensor (tensor '%s' begins at %" PRIu64 ")",
                              P, expect, e->begin, shownz(e->info.name).s, e->begin);
            goto done;
        }
        if (e->begin < expect) {
            const struct st_entry *prev = &st->entries[i - 1];
            status = fpd__err(err, FPD_STATUS_FORMAT,
                              "%s: tensor '%s' data_offsets [%" PRIu64 ", %" PRIu64 ") overlap tensor '%s' [%" PRIu64
                              ", %" PRIu64 ")",
                              P, shownz(e->info.name).s, e->begin, e->end, shownz(prev->info.name).s, prev->begin,
                              prev->end);
            goto done;
        }
        if (e->end > data_len) {
            status = fpd__err(err, FPD_STATUS_FORMAT,
                              "%s: tensor '%s' data_offsets [%" PRIu64 ", %" PRIu64
                              ") run past the end of the data section (%zu bytes): file truncated?",
                              P, shownz(e->info.name).s, e->begin, e->end, data_len);
            goto done;
        }
        expect = e->end;
    }
    if (expect != data_len) {
        status = fpd__err(err, FPD_STATUS_FORMAT,
                          "%s: %" PRIu64 " trailing bytes: the tensors end at data offset %" PRIu64
                          " but the data section is %zu bytes",
                          P, (uint64_t)data_len - expect, expect, data_len);
        goto done;
    }
    if (have_unsupported) {
        status = fpd__err(err, FPD_STATUS_UNSUPPORTED, "%s", unsupported.msg);
        goto done;
    }

    /* Every rule holds: form the views. */
    const unsigned char *data = hdr + st->header_size;
    for (int64_t i = 0; i < st->n_tensors; i++) {
        st->entries[i].info.data = data + st->entries[i].begin;
        st->by_name[i] = &st->entries[i].info;
    }
    if (st->n_tensors > 1) qsort(st->by_name, (size_t)st->n_tensors, sizeof *st->by_name, cmp_info_name);

done:
    if (root) json_decref(root);
    return status;
}

static enum fpd_status st_new(const char *name, struct fpd_safetensors **out, struct fpd_error *err) {
    *out = NULL;
    struct fpd_safetensors *st = fpd_calloc(1, sizeof *st);
    if (!st) return fpd__err(err, FPD_STATUS_NOMEM, "%s: out of memory", name);
    st->path = dup_bytes(name, strlen(name));
    if (!st->path) {
        fpd_free(st);
        return fpd__err(err, FPD_STATUS_NOMEM, "%s: out of memory", name);
    }
    *out = st;
    return FPD_STATUS_OK;
}

enum fpd_status fpd_safetensors_open_memory(const void *buf, size_t len, const char *name,
                                            struct fpd_safetensors **out, struct fpd_error *err) {
    FPD_ASSERT(out);
    FPD_ASSERT(buf || len == 0);
    struct fpd_safetensors *st = NULL;
    enum fpd_status status = st_new(name ? name : "<memory>", &st, err);
    if (status) goto done;
    st->base = buf;
    st->size = len;
    status = st_parse(st, err);
done:
    if (status) {
        fpd_safetensors_free(st);
        st = NULL;
    }
    *out = st;
    return status;
}

enum fpd_status fpd_safetensors_open(const char *path, struct fpd_safetensors **out, struct fpd_error *err) {
    FPD_ASSERT(path && out);
    struct fpd_safetensors *st = NULL;
    static const unsigned char none[8];
    enum fpd_status status = st_new(path, &st, err);
    if (status) goto done;
    void *m = NULL;
    if ((status = fpd__map_file(path, &m, &st->size, err))) goto done;
    st->map = m;
    st->map_len = st->size;
    st->base = m ? m : none; /* an empty file: st_parse reports it, reading nothing */
    status = st_parse(st, err);
done:
    if (status) {
        fpd_safetensors_free(st);
        st = NULL;
    }
    *out = st;
    return status;
}

int64_t fpd_safetensors_count(const struct fpd_safetensors *st) { return st->n_tensors; }

const struct fpd_tensor_info *fpd_safetensors_tensor(const struct fpd_safetensors *st, int64_t i) {
    FPD_ASSERT(i >= 0 && i < st->n_tensors);
    return &st->entries[i].info;
}

const struct fpd_tensor_info *fpd_safetensors_find(const struct fpd_safetensors *st, const char *name) {
    int64_t lo = 0, hi = st->n_tensors;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(st->by_name[mid]->name, name);
        if (c == 0) return st->by_name[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

int64_t fpd_safetensors_metadata_count(const struct fpd_safetensors *st) { return st->n_meta; }

void fpd_safetensors_metadata_at(const struct fpd_safetensors *st, int64_t i, const char **key, const char **value) {
    FPD_ASSERT(i >= 0 && i < st->n_meta);
    if (key) *key = st->meta_keys[i];
    if (value) *value = st->meta_values[i];
}

const char *fpd_safetensors_metadata_get(const struct fpd_safetensors *st, const char *key) {
    for (int64_t i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta_keys[i], key) == 0) return st->meta_values[i];
    return NULL;
}

size_t fpd_safetensors_file_size(const struct fpd_safetensors *st) { return st->size; }
size_t fpd_safetensors_header_size(const struct fpd_safetensors *st) { return st->header_size; }
const char *fpd_safetensors_path(const struct fpd_safetensors *st) { return st->path; }

/* ------------------------------------------------------------ writer */

/* A growable byte buffer for the header. */
struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
};

static void sb_put(struct sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->cap - b->len < n + 1) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n + 1) {
            if (cap > SIZE_MAX / 2) {
                b->oom = true;
                return;
            }
            cap *= 2;
        }
        char *np = fpd_malloc(cap);
        if (!np) {
            b->oom = true;
            return;
        }
        if (b->len) memcpy(np, b->p, b->len);
        fpd_free(b->p);
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(struct sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sbuf *b, const char *fmt, ...) {
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        b->oom = true; /* only used for numbers: cannot happen */
        return;
    }
    sb_put(b, tmp, (size_t)n);
}

/* A JSON string literal (s is valid UTF-8). */
static void sb_json_str(struct sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    const char *run = s;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        sb_put(b, run, (size_t)(s - run));
        run = s + 1;
        switch (c) {
        case '"': sb_str(b, "\\\""); break;
        case '\\': sb_str(b, "\\\\"); break;
        case '\n': sb_str(b, "\\n"); break;
        case '\r': sb_str(b, "\\r"); break;
        case '\t': sb_str(b, "\\t"); break;
        case '\b': sb_str(b, "\\b"); break;
        case '\f': sb_str(b, "\\f"); break;
        default: sb_printf(b, "\\u%04x", c); break;
        }
    }
    sb_put(b, run, (size_t)(s - run));
    sb_put(b, "\"", 1);
}

struct meta_pair {
    const char *key, *value;
};

static int cmp_meta(const void *a, const void *b) {
    return strcmp(((const struct meta_pair *)a)->key, ((const struct meta_pair *)b)->key);
}

enum fpd_status fpd_safetensors_write(const char *path, const struct fpd_tensor_info *tensors, int64_t n,
                                      const char *const *meta_keys, const char *const *meta_values, int64_t n_meta,
                                      unsigned flags, struct fpd_error *err) {
    FPD_ASSERT(path);
    enum fpd_status status = FPD_STATUS_OK;
    const struct fpd_tensor_info **order = NULL;
    struct meta_pair *meta = NULL;
    struct sbuf hb = {0};
    struct fpd__atomic_file af = {.fd = -1};

    if (n < 0 || n_meta < 0 || (n > 0 && !tensors) || (n_meta > 0 && (!meta_keys || !meta_values))) {
        status = fpd__err(err, FPD_STATUS_INVALID_ARG, "%s: invalid tensor or metadata list (n = %lld, n_meta = %lld)",
                          path, (long long)n, (long long)n_meta);
        goto done;
    }
    if (n > 0) {
        order = fpd_calloc((size_t)n, sizeof *order);
        if (!order) {
            status = fpd__err(err, FPD_STATUS_NOMEM, "%s: out of memory", path);
            goto done;
        }
    }
    for (int64_t i = 0; i < n; i++) {
        const struct fpd_tensor_info *t = &tensors[i];
        size_t bad;
        if (!t->name || !t->name[0]) {
            status = fpd__err(err, FPD_STATUS_INVALID_ARG, "%s: tensor %lld has an empty name", path, (long long)i);
            goto done;
        }
        if (strcmp(t->name, "__metadata__") == 0 ||
            !utf8_valid((const unsigned char *)t->name, strlen(t->name), &bad)) {
            status = fpd__err(err, FPD_STATUS_INVALID_ARG, "%s: tensor name '%s' is reserved or not UTF-8", path,
                              shownz(t->name).s);
            goto done;
        }
        if ((unsigned)t->dtype >= FPD_DTYPE_COUNT || t->ndim < 0 || t->ndim > FPD_MAX_DIMS) {
            status = fpd__err(err, FPD_STATUS_INVALID_ARG, "%s: tensor '%s': dtype %d or ndim %d out of range", path,
                              shownz(t->name).s, (int)t->dtype, (int)t->ndim);
            goto done;
        }
        int64_t numel = 1;
        size_t nbytes = 0;
        bool ok = true;
        for (int32_t d = 0; d < t->ndim; d++) ok = ok && t->shape[d] >= 0;
        for (int32_t d = 0; ok && d < t->ndim; d++) ok = fpd__mul_i64(numel, t->shape[d], &numel);
        ok = ok && fpd__mul_size((size_t)numel, fpd_dtype_size(t->dtype), &nbytes);
        if (!ok || nbytes != t->nbytes || (nbytes > 0 && !t->data)) {
            status = fpd__err(err, FPD_STATUS_INVALID_ARG,
                              "%s: tensor '%s': nbytes %zu (data %s) does not match shape %s of %s", path,
                              shownz(t->name).s, t->nbytes, t->data ? "set" : "NULL",
                              shape_shown(t->shape, t->ndim).s, fpd_dtype_name(t->dtype));
            goto done;
        }
        order[i] = t;
    }
    if (n > 1) qsort(order, (size_t)n, sizeof *order, cmp_info_name);
    for (int64_t i = 1; i < n; i++) {
        if (strcmp(order[i - 1]->name, order[i]->name) == 0) {
            status = fpd__err(err, FPD_STATUS_INVALID_ARG, "%s: duplicate tensor name '%s'", path,
                              shownz(order[i]->name).s);
            goto done;
        }
    }
    if (n_meta > 0) {
        meta = fpd_calloc((size_t)n_meta, sizeof *meta);
        if (!meta) {
            status = fpd__err(err, FPD_STATUS_NOMEM, "%s: out of memory", path);
            goto done;
        }
    }
    for (int64_t i = 0; i < n_meta; i++) {
        size_t bad;
        const char *k = meta_keys[i], *v = meta_values[i];
        if (!k || !v || !utf8_valid((const unsigned char *)k, strlen(k), &bad) ||
            !utf8_valid((const unsigned char *)v, strlen(v), &bad)) {
            status = fpd__err(err, FPD_STATUS_INVALID_ARG, "%s: metadata entry %lld is NULL or not UTF-8", path,
                              (long long)i);
            goto done;
        }
        meta[i].key = k;
        meta[i].value = v;
    }
    if (n_meta > 1) qsort(meta, (size_t)n_meta, sizeof *meta, cmp_meta);
    for (int64_t i = 1; i < n_meta; i++) {
        if (strcmp(meta[i - 1].key, meta[i].key) == 0) {
            status = fpd__err(err, FPD_STATUS_INVALID_ARG, "%s: duplicate metadata key '%s'", path,
                              shownz(meta[i].key).s);
            goto done;
        }
    }

    /* Header: {"__metadata__":{...},"name":{"dtype":..,"shape":[..],"data_offsets":[b,e]},...} */
    sb_str(&hb, "{");
    if (n_meta > 0) {
        sb_str(&hb, "\"__metadata__\":{");
        for (int64_t i = 0; i < n_meta; i++) {
            if (i) sb_str(&hb, ",");
            sb_json_str(&hb, meta[i].key);
            sb_str(&hb, ":");
            sb_json_str(&hb, meta[i].value);
        }
        sb_str(&hb, "}");
    }
    uint64_t off = 0;
    for (int64_t i = 0; i < n; i++) {
        const struct fpd_tensor_info *t = order[i];
        if (i || n_meta > 0) sb_str(&hb, ",");
        sb_json_str(&hb, t->name);
        sb_printf(&hb, ":{\"dtype\":\"%s\",\"shape\":[", fpd_dtype_name(t->dtype));
        for (int32_t d = 0; d < t->ndim; d++) sb_printf(&hb, "%s%lld", d ? "," : "", (long long)t->shape[d]);
        if (__builtin_add_overflow(off, (uint64_t)t->nbytes, &off)) {
            status = fpd__err(err, FPD_STATUS_INVALID_ARG, "%s: total tensor bytes overflow", path);
            goto done;
        }
        sb_printf(&hb, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", off - t->nbytes, off);
    }
    sb_str(&hb, "}");
    while (!hb.oom && hb.len % 8 != 0) sb_str(&hb, " ");
    if (hb.oom) {
        status = fpd__err(err, FPD_STATUS_NOMEM, "%s: out of memory building the header", path);
        goto done;
    }
    if (hb.len > FPD_SAFETENSORS_MAX_HEADER) {
        status = fpd__err(err, FPD_STATUS_INVALID_ARG, "%s: header would be %zu bytes, over the limit of %llu", path,
                          hb.len, (unsigned long long)FPD_SAFETENSORS_MAX_HEADER);
        goto done;
    }

    if ((status = fpd__atomic_open(path, flags, &af, err))) goto done;
    unsigned char prefix[8];
    for (int i = 0; i < 8; i++) prefix[i] = (unsigned char)((uint64_t)hb.len >> (8 * i));
    if ((status = fpd__atomic_write(&af, prefix, 8, err))) goto done;
    if ((status = fpd__atomic_write(&af, hb.p, hb.len, err))) goto done;
    for (int64_t i = 0; i < n; i++)
        if ((status = fpd__atomic_write(&af, order[i]->data, order[i]->nbytes, err))) goto done;
    status = fpd__atomic_commit(&af, flags, err);

done:
    fpd__atomic_abort(&af);
    fpd_free(hb.p);
    fpd_free(meta);
    fpd_free(order);
    return status;
}
