/*
 * npy.c - NumPy .npy reader (format versions 1.0, 2.0, 3.0), memory-mapped.
 *
 * Layout (numpy.lib.format): "\x93NUMPY", major, minor, header length (uint16 LE
 * for 1.0, uint32 LE for 2.0/3.0), then the header: a Python dict literal
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (20000, 100), }
 * padded with spaces and ended by '\n', then the C-order data.
 *
 * The dict is parsed here by a small recursive-descent reader that takes exactly
 * the literal forms numpy writes: quoted strings (no escapes), True/False, tuples
 * of non-negative integers (an old 'L' suffix allowed, a trailing comma allowed).
 * The keys must be exactly descr, fortran_order and shape, as numpy requires.
 * Version 3.0 allows UTF-8 in the header; non-ASCII bytes can only occur inside
 * strings, where they make the key or dtype unknown, so no UTF-8 check is needed.
 *
 * Supported dtypes: '<f2' '<f4' '<f8' (F16, F32, F64), integers '<i2' '<i4' '<i8',
 * '<u2' '<u4' '<u8', single-byte '|i1' '|u1' '|b1' (any byte-order mark), and
 * '<c8' (C64). '=' (native) is little-endian on the machines we build for and is
 * accepted as '<' there. Refused with UNSUPPORTED and a message saying what was
 * found: big-endian ('>f4'), object ('|O'), structured (a list of fields), other
 * kinds, fortran_order True, more than FPD_MAX_DIMS dimensions.
 *
 * Size: the data must fit in the file (a short file is FORMAT). Bytes after the
 * data are ignored, as numpy.load does, with a warning through fpd_log_set.
 *
 * Writer (fpd_npy_write): format 1.0 (2.0 when the header needs more than 65535
 * bytes), the dict in numpy's own key order and spelling, padded with spaces and
 * '\n' so the data starts at a multiple of 64 bytes (numpy.lib.format.ARRAY_ALIGN),
 * then the tensor's bytes unchanged. Written atomically, as fpd_safetensors_write.
 */
#include "formats/fpd-formats.h"
#include "formats/formats-impl.h"
#include "lib/fpd-impl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define NPY_MAX_HEADER 100000000u /* as safetensors; numpy itself stops at 10,000 by default */

struct fpd_npy {
    char *path;
    void *map;
    size_t map_len;
    struct fpd_tensor_info info;
};

/* ------------------------------------------------------------ header parser */

struct cur {
    const unsigned char *p, *end;
    const char *path;
    struct fpd_error *err;
};

static void skip_ws(struct cur *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

/* Printable rendering of header bytes for messages. */
static const char *show(const unsigned char *s, size_t len, char *buf, size_t cap) {
    size_t o = 0, i = 0;
    for (; i < len && o + 8 < cap; i++) {
        unsigned char ch = s[i];
        if (ch < 0x20 || ch >= 0x7f || ch == '\\') o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", ch);
        else buf[o++] = (char)ch;
    }
    if (i < len) memcpy(buf + o, "...", 3), o += 3;
    buf[o] = '\0';
    return buf;
}

static enum fpd_status syntax(struct cur *c, const unsigned char *hdr, const char *what) {
    char b[64];
    size_t left = (size_t)(c->end - c->p);
    return fpd__err(c->err, FPD_STATUS_FORMAT, "%s: .npy header: %s at header offset %zu (found '%s')", c->path,
                    what, (size_t)(c->p - hdr), c->p < c->end ? show(c->p, left < 16 ? left : 16, b, sizeof b) : "end");
}

static bool accept(struct cur *c, char ch) {
    skip_ws(c);
    if (c->p < c->end && *c->p == (unsigned char)ch) {
        c->p++;
        return true;
    }
    return false;
}

/* A quoted string without escapes; s and len point into the header. */
static bool parse_str(struct cur *c, const unsigned char **s, size_t *len) {
    skip_ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return false;
    unsigned char q = *c->p;
    const unsigned char *b = c->p + 1, *e = b;
    while (e < c->end && *e != q && *e != '\\' && *e != '\n') e++;
    if (e >= c->end || *e != q) return false;
    *s = b;
    *len = (size_t)(e - b);
    c->p = e + 1;
    return true;
}

static bool parse_word(struct cur *c, const char *w) {
    skip_ws(c);
    size_t n = strlen(w);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, w, n) != 0) return false;
    const unsigned char *after = c->p + n;
    if (after < c->end && (*after == '_' || (*after >= 'a' && *after <= 'z') || (*after >= 'A' && *after <= 'Z') ||
                           (*after >= '0' && *after <= '9')))
        return false;
    c->p = after;
    return true;
}

/* A non-negative decimal integer (optional Python 2 'L' suffix). 0: ok, 1: syntax, 2: overflow. */
static int parse_int(struct cur *c, int64_t *out) {
    skip_ws(c);
    if (c->p >= c->end || *c->p < '0' || *c->p > '9') return 1;
    int64_t v = 0;
    bool overflow = false;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        if (!overflow && (!fpd__mul_i64(v, 10, &v) || __builtin_add_overflow(v, (int64_t)(*c->p - '0'), &v)))
            overflow = true;
        c->p++;
    }
    if (c->p < c->end && (*c->p == 'L' || *c->p == 'l')) c->p++;
    *out = overflow ? INT64_MAX : v;
    return overflow ? 2 : 0;
}

struct npy_header {
    const unsigned char *descr;
    size_t descr_len;
    bool have_descr, have_fortran, have_shape;
    bool fortran;
    int64_t shape[FPD_MAX_DIMS];
    int64_t ndim; /* may exceed FPD_MAX_DIMS (then only the first dims are kept) */
    bool shape_overflow;
};

static enum fpd_status parse_header(struct cur *c, const unsigned char *hdr, struct npy_header *h) {
    if (!accept(c, '{')) return syntax(c, hdr, "expected '{' (a Python dict literal)");
    for (;;) {
        if (accept(c, '}')) break;
        const unsigned char *k;
        size_t klen;
        if (!parse_str(c, &k, &klen)) return syntax(c, hdr, "expected a quoted key or '}'");
        if (!accept(c, ':')) return syntax(c, hdr, "expected ':' after a key");
        char kb[64];
        if (klen == 5 && memcmp(k, "descr", 5) == 0) {
            if (h->have_descr) return syntax(c, hdr, "key 'descr' repeated");
            skip_ws(c);
            if (c->p < c->end && (*c->p == '[' || *c->p == '{'))
                return fpd__err(c->err, FPD_STATUS_UNSUPPORTED,
                                "%s: structured dtype (descr is a list of fields) is not supported; save a plain "
                                "numeric array", c->path);
            if (!parse_str(c, &h->descr, &h->descr_len)) return syntax(c, hdr, "'descr' must be a quoted string");
            h->have_descr = true;
        } else if (klen == 13 && memcmp(k, "fortran_order", 13) == 0) {
            if (h->have_fortran) return syntax(c, hdr, "key 'fortran_order' repeated");
            if (parse_word(c, "True")) h->fortran = true;
            else if (parse_word(c, "False")) h->fortran = false;
            else return syntax(c, hdr, "'fortran_order' must be True or False");
            h->have_fortran = true;
        } else if (klen == 5 && memcmp(k, "shape", 5) == 0) {
            if (h->have_shape) return syntax(c, hdr, "key 'shape' repeated");
            if (!accept(c, '(')) return syntax(c, hdr, "'shape' must be a tuple such as (20000, 100)");
            for (;;) {
                if (accept(c, ')')) break;
                int64_t v;
                int r = parse_int(c, &v);
                if (r == 1) return syntax(c, hdr, "'shape' must hold non-negative integers");
                if (r == 2) h->shape_overflow = true;
                if (h->ndim < FPD_MAX_DIMS) h->shape[h->ndim] = v;
                h->ndim++;
                if (accept(c, ')')) break;
                if (!accept(c, ',')) return syntax(c, hdr, "expected ',' or ')' in 'shape'");
            }
            h->have_shape = true;
        } else {
            return fpd__err(c->err, FPD_STATUS_FORMAT,
                            "%s: .npy header has an unexpected key '%s' (expected descr, fortran_order, shape)",
                            c->path, show(k, klen, kb, sizeof kb));
        }
        if (accept(c, '}')) break;
        if (!accept(c, ',')) return syntax(c, hdr, "expected ',' or '}' after a value");
    }
    skip_ws(c);
    if (c->p != c->end) return syntax(c, hdr, "unexpected bytes after the dict");
    const char *missing = !h->have_descr     ? "descr"
                          : !h->have_fortran ? "fortran_order"
                          : !h->have_shape   ? "shape"
                                             : NULL;
    if (missing)
        return fpd__err(c->err, FPD_STATUS_FORMAT, "%s: .npy header lacks the key '%s'", c->path, missing);
    return FPD_STATUS_OK;
}

/* Map a descr such as '<f4' to a dtype. */
static enum fpd_status descr_dtype(const char *P, const unsigned char *d, size_t len, enum fpd_dtype *out,
                                   struct fpd_error *err) {
    char b[64];
    const char *s = show(d, len, b, sizeof b);
    unsigned char order = '=';
    size_t i = 0;
    if (len > 0 && (d[0] == '<' || d[0] == '>' || d[0] == '|' || d[0] == '=')) order = d[0], i = 1;
    if (len - i >= 1 && (d[i] == 'O'))
        return fpd__err(err, FPD_STATUS_UNSUPPORTED,
                        "%s: object dtype '%s' is not supported (it needs pickle); save a numeric array", P, s);
    if (len - i < 2) goto unknown;
    unsigned char kind = d[i];
    int64_t size = 0;
    for (size_t j = i + 1; j < len; j++) {
        if (d[j] < '0' || d[j] > '9' || size > 1000) goto unknown;
        size = size * 10 + (d[j] - '0');
    }
    enum fpd_dtype t;
    switch (kind) {
    case 'f':
        if (size == 2) t = FPD_DTYPE_F16;
        else if (size == 4) t = FPD_DTYPE_F32;
        else if (size == 8) t = FPD_DTYPE_F64;
        else goto unknown;
        break;
    case 'i':
        if (size == 1) t = FPD_DTYPE_I8;
        else if (size == 2) t = FPD_DTYPE_I16;
        else if (size == 4) t = FPD_DTYPE_I32;
        else if (size == 8) t = FPD_DTYPE_I64;
        else goto unknown;
        break;
    case 'u':
        if (size == 1) t = FPD_DTYPE_U8;
        else if (size == 2) t = FPD_DTYPE_U16;
        else if (size == 4) t = FPD_DTYPE_U32;
        else if (size == 8) t = FPD_DTYPE_U64;
        else goto unknown;
        break;
    case 'b':
        if (size != 1) goto unknown;
        t = FPD_DTYPE_BOOL;
        break;
    case 'c':
        if (size != 8) goto unknown;
        t = FPD_DTYPE_C64;
        break;
    default:
        goto unknown;
    }
    if (size > 1) {
        bool little = order == '<';
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        little = little || order == '=';
#endif
        if (order == '>')
            return fpd__err(err, FPD_STATUS_UNSUPPORTED,
                            "%s: big-endian dtype '%s' is not supported; convert with a.astype('<%c%lld')", P, s,
                            kind, (long long)size);
        if (order == '|')
            return fpd__err(err, FPD_STATUS_FORMAT,
                            "%s: dtype '%s': byte order '|' is only meaningful for single-byte types", P, s);
        if (!little)
            return fpd__err(err, FPD_STATUS_UNSUPPORTED, "%s: dtype '%s' is native big-endian; not supported", P, s);
    }
    *out = t;
    return FPD_STATUS_OK;
unknown:
    return fpd__err(err, FPD_STATUS_UNSUPPORTED,
                    "%s: dtype '%s' is not supported (supported: <f2 <f4 <f8, <i1..<i8, <u1..<u8, |b1, <c8)", P, s);
}

static enum fpd_status npy_parse(struct fpd_npy *npy, const unsigned char *buf, size_t len, struct fpd_error *err) {
    const char *P = npy->path;
    static const unsigned char magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
    if (len < 6 || memcmp(buf, magic, 6) != 0) {
        char b[64];
        return fpd__err(err, FPD_STATUS_FORMAT, "%s: not a .npy file: bad magic '%s' (expected '\\x93NUMPY')", P,
                        show(buf, len < 6 ? len : 6, b, sizeof b));
    }
    if (len < 8)
        return fpd__err(err, FPD_STATUS_FORMAT, "%s: file is %zu bytes, too short for a .npy preamble", P, len);
    unsigned major = buf[6], minor = buf[7];
    size_t pre, hlen;
    if (major == 1 && minor == 0) {
        pre = 10;
        if (len < pre)
            return fpd__err(err, FPD_STATUS_FORMAT, "%s: file is %zu bytes, too short for a .npy preamble", P, len);
        hlen = (size_t)buf[8] | ((size_t)buf[9] << 8);
    } else if ((major == 2 || major == 3) && minor == 0) {
        pre = 12;
        if (len < pre)
            return fpd__err(err, FPD_STATUS_FORMAT, "%s: file is %zu bytes, too short for a .npy preamble", P, len);
        hlen = (size_t)buf[8] | ((size_t)buf[9] << 8) | ((size_t)buf[10] << 16) | ((size_t)buf[11] << 24);
    } else {
        return fpd__err(err, FPD_STATUS_UNSUPPORTED, "%s: .npy format version %u.%u is not supported (1.0, 2.0, 3.0)",
                        P, major, minor);
    }
    if (hlen > NPY_MAX_HEADER || hlen > len - pre)
        return fpd__err(err, FPD_STATUS_FORMAT, "%s: .npy header length %zu runs past the end of the file (%zu bytes)",
                        P, hlen, len);
    const unsigned char *hdr = buf + pre;
    struct cur c = {hdr, hdr + hlen, P, err};
    struct npy_header h = {0};
    enum fpd_status s = parse_header(&c, hdr, &h);
    if (s) return s;
    if ((s = descr_dtype(P, h.descr, h.descr_len, &npy->info.dtype, err))) return s;
    if (h.fortran)
        return fpd__err(err, FPD_STATUS_UNSUPPORTED,
                        "%s: fortran_order True is not supported; save with np.ascontiguousarray", P);
    if (h.ndim > FPD_MAX_DIMS)
        return fpd__err(err, FPD_STATUS_UNSUPPORTED, "%s: array has %lld dimensions; at most %d are supported", P,
                        (long long)h.ndim, FPD_MAX_DIMS);
    /* NumPy's rule: the product of the non-zero dimensions (and its bytes) must fit,
     * even when a zero dimension makes the array empty; so no prefix of the shape
     * overflows either, and the library can take the product in any order. */
    int64_t numel = 1;
    bool overflow = h.shape_overflow, empty = false;
    for (int64_t i = 0; i < h.ndim && !overflow; i++) {
        if (h.shape[i] == 0) empty = true;
        else overflow = !fpd__mul_i64(numel, h.shape[i], &numel);
    }
    size_t nbytes = 0;
    if (overflow || !fpd__mul_size((size_t)numel, fpd_dtype_size(npy->info.dtype), &nbytes))
        return fpd__err(err, FPD_STATUS_FORMAT, "%s: shape of the array overflows (more than 2^63-1 elements)", P);
    if (empty) nbytes = 0;
    size_t avail = len - pre - hlen;
    char sb[160];
    size_t o = 0;
    sb[o++] = '(';
    for (int64_t i = 0; i < h.ndim; i++)
        o += (size_t)snprintf(sb + o, sizeof sb - o, "%s%lld", i ? ", " : "", (long long)h.shape[i]);
    snprintf(sb + o, sizeof sb - o, "%s)", h.ndim == 1 ? "," : "");
    if (avail < nbytes)
        return fpd__err(err, FPD_STATUS_FORMAT,
                        "%s: file truncated: shape %s of %s needs %zu data bytes but only %zu follow the header", P, sb,
                        fpd_dtype_name(npy->info.dtype), nbytes, avail);
    if (avail > nbytes)
        fpd__log(FPD_LOG_LEVEL_WARN, "%s: %zu bytes after the array's data ignored", P, avail - nbytes);
    npy->info.name = "";
    npy->info.ndim = (int32_t)h.ndim;
    for (int64_t i = 0; i < h.ndim; i++) npy->info.shape[i] = h.shape[i];
    npy->info.nbytes = nbytes;
    npy->info.data = hdr + hlen;
    return FPD_STATUS_OK;
}

/* ------------------------------------------------------------ API */

void fpd_npy_free(struct fpd_npy *npy) {
    if (!npy) return;
    fpd__unmap_file(npy->map, npy->map_len);
    fpd_free(npy->path);
    fpd_free(npy);
}

static enum fpd_status npy_new(const char *name, struct fpd_npy **out, struct fpd_error *err) {
    struct fpd_npy *npy = fpd_calloc(1, sizeof *npy);
    size_t n = strlen(name);
    char *p = fpd_malloc(n + 1);
    if (!npy || !p) {
        fpd_free(npy);
        fpd_free(p);
        *out = NULL;
        return fpd__err(err, FPD_STATUS_NOMEM, "%s: out of memory", name);
    }
    memcpy(p, name, n + 1);
    npy->path = p;
    *out = npy;
    return FPD_STATUS_OK;
}

enum fpd_status fpd_npy_open_memory(const void *buf, size_t len, const char *name, struct fpd_npy **out,
                                    struct fpd_error *err) {
    FPD_ASSERT(out);
    FPD_ASSERT(buf || len == 0);
    struct fpd_npy *npy = NULL;
    static const unsigned char none[1];
    enum fpd_status status = npy_new(name ? name : "<memory>", &npy, err);
    if (status) goto done;
    status = npy_parse(npy, buf ? buf : none, len, err);
done:
    if (status) {
        fpd_npy_free(npy);
        npy = NULL;
    }
    *out = npy;
    return status;
}

enum fpd_status fpd_npy_open(const char *path, struct fpd_npy **out, struct fpd_error *err) {
    FPD_ASSERT(path && out);
    struct fpd_npy *npy = NULL;
    static const unsigned char none[1];
    size_t size = 0;
    void *m = NULL;
    enum fpd_status status = npy_new(path, &npy, err);
    if (status) goto done;
    if ((status = fpd__map_file(path, &m, &size, err))) goto done;
    npy->map = m;
    npy->map_len = size;
    status = npy_parse(npy, m ? m : none, size, err); /* an empty file: reported, nothing read */
done:
    if (status) {
        fpd_npy_free(npy);
        npy = NULL;
    }
    *out = npy;
    return status;
}

const struct fpd_tensor_info *fpd_npy_tensor(const struct fpd_npy *npy) { return &npy->info; }

/* ------------------------------------------------------------ writer */

/* The .npy descr of a dtype, or NULL when numpy has no such type (BF16, F8). */
static const char *dtype_descr(enum fpd_dtype t) {
    switch (t) {
    case FPD_DTYPE_F32: return "<f4";
    case FPD_DTYPE_F64: return "<f8";
    case FPD_DTYPE_F16: return "<f2";
    case FPD_DTYPE_I8: return "|i1";
    case FPD_DTYPE_I16: return "<i2";
    case FPD_DTYPE_I32: return "<i4";
    case FPD_DTYPE_I64: return "<i8";
    case FPD_DTYPE_U8: return "|u1";
    case FPD_DTYPE_U16: return "<u2";
    case FPD_DTYPE_U32: return "<u4";
    case FPD_DTYPE_U64: return "<u8";
    case FPD_DTYPE_BOOL: return "|b1";
    case FPD_DTYPE_C64: return "<c8";
    default: return NULL;
    }
}


enum fpd_status fpd_npy_write(const char *path, const struct fpd_tensor_info *t, unsigned flags,
                              struct fpd_error *err) {
    FPD_ASSERT(path && t);
    enum fpd_status status = FPD_STATUS_OK;
    char *hdr = NULL;
    struct fpd__atomic_file af = {.fd = -1};

    const char *descr = (unsigned)t->dtype < FPD_DTYPE_COUNT ? dtype_descr(t->dtype) : NULL;
    if (!descr) {
        status = fpd__err(err, FPD_STATUS_UNSUPPORTED,
                          "%s: dtype %s has no .npy equivalent (numpy has no bfloat16 or float8); convert it to F32 "
                          "first", path, fpd_dtype_name(t->dtype));
        goto done;
    }
    if (t->ndim < 0 || t->ndim > FPD_MAX_DIMS) {
        status = fpd__err(err, FPD_STATUS_INVALID_ARG, "%s: ndim %d out of range 0..%d", path, (int)t->ndim,
                          FPD_MAX_DIMS);
        goto done;
    }
    int64_t numel = 1;
    size_t nbytes = 0;
    bool ok = true;
    for (int32_t d = 0; d < t->ndim; d++) ok = ok && t->shape[d] >= 0;
    for (int32_t d = 0; ok && d < t->ndim; d++) ok = fpd__mul_i64(numel, t->shape[d], &numel);
    ok = ok && fpd__mul_size((size_t)numel, fpd_dtype_size(t->dtype), &nbytes);
    if (!ok || nbytes != t->nbytes || (nbytes > 0 && !t->data)) {
        status = fpd__err(err, FPD_STATUS_INVALID_ARG, "%s: nbytes %zu (data %s) does not match the shape of %s", path,
                          t->nbytes, t->data ? "set" : "NULL", fpd_dtype_name(t->dtype));
        goto done;
    }

    /* The dict, as numpy writes it: {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } */
    char dict[96 + 24 * FPD_MAX_DIMS];
    size_t dl = (size_t)snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (int32_t d = 0; d < t->ndim; d++)
        dl += (size_t)snprintf(dict + dl, sizeof dict - dl, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    dl += (size_t)snprintf(dict + dl, sizeof dict - dl, "%s), }", t->ndim == 1 ? "," : "");
    /* Preamble 10 bytes (1.0); the header ends with '\n' and pads to 64. */
    size_t pre = 10, hlen = dl + 1;
    while ((pre + hlen) % 64) hlen++;
    if (hlen > 65535) { /* cannot happen with FPD_MAX_DIMS dims, kept for safety */
        pre = 12;
        hlen = dl + 1;
        while ((pre + hlen) % 64) hlen++;
    }
    hdr = fpd_malloc(pre + hlen);
    if (!hdr) {
        status = fpd__err(err, FPD_STATUS_NOMEM, "%s: out of memory", path);
        goto done;
    }
    memcpy(hdr, "\x93NUMPY", 6);
    hdr[6] = pre == 10 ? 1 : 2;
    hdr[7] = 0;
    for (size_t i = 0; i < pre - 8; i++) hdr[8 + i] = (char)(unsigned char)(hlen >> (8 * i));
    memcpy(hdr + pre, dict, dl);
    memset(hdr + pre + dl, ' ', hlen - dl - 1);
    hdr[pre + hlen - 1] = '\n';

    if ((status = fpd__atomic_open(path, flags, &af, err))) goto done;
    if ((status = fpd__atomic_write(&af, hdr, pre + hlen, err))) goto done;
    if (nbytes && (status = fpd__atomic_write(&af, t->data, nbytes, err))) goto done;
    status = fpd__atomic_commit(&af, flags, err);

done:
    fpd__atomic_abort(&af);
    fpd_free(hdr);
    return status;
}
