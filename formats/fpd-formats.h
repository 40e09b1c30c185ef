/*
 * fpd-formats.h - safetensors (reader and writer, our own), .npy reader and writer, and the
 * mapping of FPD tables into a checkpoint (FPD v1, DESIGN.md section 4).
 *
 * Safetensors layout (https://github.com/huggingface/safetensors, "Format"):
 *
 *   bytes [0, 8)        N, uint64 little-endian: header length
 *   bytes [8, 8+N)      header: UTF-8 JSON object
 *                         "NAME": {"dtype": "F32", "shape": [d0, d1, ...],
 *                                  "data_offsets": [begin, end]}
 *                         "__metadata__": {"key": "value", ...} (strings only)
 *   bytes [8+N, EOF)    data buffer; offsets are relative to its start
 *
 * Rules the reader checks before it forms any pointer into the file: N <= 100,000,000
 * and 8 + N <= file size; the header is UTF-8 and a JSON object; every entry has a
 * known dtype, a shape of non-negative integers whose product times the dtype size
 * does not overflow and equals end - begin; offsets, sorted, are contiguous from 0
 * (no hole, no overlap) and end exactly at the end of the file; names are unique;
 * __metadata__ maps strings to strings or is null (no metadata).
 *
 * Usage:
 *   struct fpd_safetensors *st;
 *   if (fpd_safetensors_open("model.safetensors", &st, &err)) { ... err.msg ... }
 *   for (int64_t i = 0; i < fpd_safetensors_count(st); i++) {
 *       const struct fpd_tensor_info *t = fpd_safetensors_tensor(st, i);
 *       ... t->name, t->dtype, t->shape, t->data (view into the mmap) ...
 *   }
 *   fpd_safetensors_free(st);
 */
#ifndef FPD_FORMATS_H
#define FPD_FORMATS_H

#include "fpd.h" /* lib/fpd.h; installed side by side in include/fpd/ */

#ifdef __cplusplus
extern "C" {
#endif

#define FPD_SAFETENSORS_MAX_HEADER 100000000ull

/* A tensor: a borrowed view (reader) or a description to write (writer). */
struct fpd_tensor_info {
    const char *name;                 /* NUL-terminated                          */
    enum fpd_dtype dtype;
    int32_t ndim;                     /* 0..FPD_MAX_DIMS (0 = scalar)            */
    int64_t shape[FPD_MAX_DIMS];      /* C order                                 */
    const void *data;                 /* nbytes bytes, little-endian, unaligned  */
    size_t nbytes;                    /* prod(shape) * dtype size                */
};

/* Element count of a tensor (1 for a scalar). */
FPD_API int64_t fpd_tensor_info_numel(const struct fpd_tensor_info *t);

/* ---------------------------------------------------------------- reader */

struct fpd_safetensors; /* opaque */

/* Open and validate a safetensors file; the data is memory-mapped (read-only) and
 * not read, so the time does not grow with the file's size. Free with
 * fpd_safetensors_free. Errors: IO (open, stat, mmap, not a regular file), FORMAT
 * (every rule above, incl. a file shorter than its header or its tensors say;
 * message naming the file, tensor and the offending value and limit), UNSUPPORTED
 * (more than FPD_MAX_DIMS dimensions; returned only when no FORMAT rule is broken),
 * NOMEM. On failure *out is NULL. */
FPD_API enum fpd_status fpd_safetensors_open(const char *path, struct fpd_safetensors **out,
                                             struct fpd_error *err);
/* Same, from a memory buffer of len bytes (borrowed, must outlive the handle);
 * name is used in messages. For tests and fuzzing. */
FPD_API enum fpd_status fpd_safetensors_open_memory(const void *buf, size_t len, const char *name,
                                                    struct fpd_safetensors **out, struct fpd_error *err);
/* Unmap and free; NULL is a no-op. Every view it gave out becomes invalid. */
FPD_API void fpd_safetensors_free(struct fpd_safetensors *st);

/* Tensors in file order (by data offset; ties, i.e. empty tensors, by end then name). */
FPD_API int64_t fpd_safetensors_count(const struct fpd_safetensors *st);
/* Tensor i (0 <= i < count); borrowed, valid until fpd_safetensors_free. */
FPD_API const struct fpd_tensor_info *fpd_safetensors_tensor(const struct fpd_safetensors *st, int64_t i);
/* Tensor by name (binary search), or NULL. */
FPD_API const struct fpd_tensor_info *fpd_safetensors_find(const struct fpd_safetensors *st, const char *name);
/* Metadata entries, in header order; key/value borrowed, NUL-terminated. */
FPD_API int64_t fpd_safetensors_metadata_count(const struct fpd_safetensors *st);
FPD_API void fpd_safetensors_metadata_at(const struct fpd_safetensors *st, int64_t i, const char **key,
                                         const char **value);
/* Value of a metadata key, or NULL. */
FPD_API const char *fpd_safetensors_metadata_get(const struct fpd_safetensors *st, const char *key);
/* Sizes: whole file, and the header (the 8-byte length not included). */
FPD_API size_t fpd_safetensors_file_size(const struct fpd_safetensors *st);
FPD_API size_t fpd_safetensors_header_size(const struct fpd_safetensors *st);
/* The path (or name) given at open; borrowed. */
FPD_API const char *fpd_safetensors_path(const struct fpd_safetensors *st);

/* ---------------------------------------------------------------- writer */

/* Write flags. */
#define FPD_WRITE_OVERWRITE 1u /* replace an existing file at path */

/* Write tensors[0..n) and metadata (n_meta key/value pairs) to path as safetensors.
 * Tensors are written sorted by name (bytewise), so the output is deterministic;
 * metadata keys sorted too ("__metadata__" comes first in the header, and only
 * when n_meta > 0). The header is padded with spaces to a multiple of 8.
 * Atomic: an unnamed temporary file in path's folder (O_TMPFILE; mode 0666 less the
 * umask) is written, fsync'ed and linked at path, folder fsync'ed (best effort: a
 * failure there is logged, since path is already complete); a process killed at
 * any point, even by SIGKILL, leaves no file behind. Where the file system has no
 * O_TMPFILE, a named temporary "<dir>/.<base>.tmp-XXXXXX" is used instead, and
 * stale ones of the same path (left by a killed run) are removed by the next write.
 * On any failure path is untouched and no temporary file is left. Without
 * FPD_WRITE_OVERWRITE an existing path is never replaced (linkat or renameat2
 * RENAME_NOREPLACE, else link+unlink).
 * Names, keys and values must be UTF-8; data may be NULL when nbytes is 0.
 * Errors: INVALID_ARG (duplicate or empty name, nbytes not matching the shape,
 * name "__metadata__", duplicate metadata key, not UTF-8), IO (with path and errno
 * text; "<path> already exists"), NOMEM. */
FPD_API enum fpd_status fpd_safetensors_write(const char *path, const struct fpd_tensor_info *tensors,
                                              int64_t n, const char *const *meta_keys,
                                              const char *const *meta_values, int64_t n_meta,
                                              unsigned flags, struct fpd_error *err);

/* ---------------------------------------------------------------- .npy */

/* NumPy .npy (format versions 1.0, 2.0, 3.0; https://numpy.org/doc/stable/reference/
 * generated/numpy.lib.format.html). Supported: dtypes '<f4' '<f8' '<f2', the
 * integers '<i2' '<i4' '<i8' '<u2' '<u4' '<u8', the single-byte '|i1' '|u1' '|b1'
 * (any byte-order mark), '<c8'; '=' (native) counts as '<' on little-endian hosts;
 * fortran_order False; up to FPD_MAX_DIMS dims. Memory-mapped. Anything else is
 * refused with UNSUPPORTED and a message saying what was found (big-endian '>f4',
 * object '|O', structured dtypes, "fortran_order True is not supported; save with
 * np.ascontiguousarray"). The data must fit in the file; bytes after it are
 * ignored (as numpy.load does) with a warning through fpd_log_set.
 * Free with fpd_npy_free. On failure *out is NULL.
 * Errors: IO, FORMAT (bad magic, header, shape, data past the end of the file),
 * UNSUPPORTED, NOMEM. */
struct fpd_npy; /* opaque */
FPD_API enum fpd_status fpd_npy_open(const char *path, struct fpd_npy **out, struct fpd_error *err);
FPD_API enum fpd_status fpd_npy_open_memory(const void *buf, size_t len, const char *name, struct fpd_npy **out,
                                            struct fpd_error *err);
/* The array as a tensor view named "" ; borrowed, valid until fpd_npy_free. */
FPD_API const struct fpd_tensor_info *fpd_npy_tensor(const struct fpd_npy *npy);
FPD_API void fpd_npy_free(struct fpd_npy *npy);

/* Write the tensor t (t->name is ignored) to path as a .npy file that numpy.load
 * reads: format 1.0 (2.0 if the header would exceed 65535 bytes), descr '<f4' '<f8'
 * '<f2' '|i1' '<i2' '<i4' '<i8' '|u1' '<u2' '<u4' '<u8' '|b1' '<c8', fortran_order
 * False, the header padded with spaces and '\n' so the data starts at a multiple of
 * 64 bytes (as numpy.save), then t->nbytes bytes of t->data unchanged (bit for bit).
 * A scalar (ndim 0) is written with shape (). Atomic as fpd_safetensors_write
 * (unnamed temporary file, else ".<base>.tmp-XXXXXX"; fsync; link or rename; without
 * FPD_WRITE_OVERWRITE an existing path is never replaced); on failure path is
 * untouched and no temporary file is left. Errors: UNSUPPORTED (BF16 and the F8 dtypes: numpy has none; convert
 * to F32 first), INVALID_ARG (ndim out of range, nbytes not matching the shape, data
 * NULL with nbytes > 0), IO ("<path> already exists", write/fsync/rename with the
 * system's reason), NOMEM. */
FPD_API enum fpd_status fpd_npy_write(const char *path, const struct fpd_tensor_info *t, unsigned flags,
                                      struct fpd_error *err);

/* ------------------------------------------------------ FPD v1 checkpoints */

/* Metadata key "fpd.version" = "1"; per table T a key "fpd.table.T" whose value is
 * a JSON object serialized as a string; cores "T.fpd.core0" .. "T.fpd.core{k-1}"
 * of shape [p, n_m, r_m, d_m, r_{m+1}]; optional "T.fpd.row_perm" I32/I64 [N]. */
#define FPD_META_VERSION_KEY "fpd.version"
#define FPD_META_TABLE_PREFIX "fpd.table."

/* What the "fpd.table.T" JSON holds. */
struct fpd_table_meta {
    struct fpd_layer_shape shape;   /* rows, dim, k, terms, row/col shape, ranks */
    enum fpd_dtype source_dtype;    /* dtype of the dense table it replaced      */
    enum fpd_dtype core_dtype;      /* dtype of the stored cores; FPD_DTYPE_COUNT
                                       when unknown (key absent: any float dtype) */
    char fit[64];                   /* "tt-svd", "tt-svd+adam", "backfit+adam"   */
    uint64_t seed;
    double rel_error;               /* relative Frobenius error at write time    */
    int64_t free_coords;            /* free/1: c free coordinates per row (key
                                       "free_coords"); 0: none (key absent)      */
    bool free_rowwise;              /* free-rowwise/1 or free-sym/1: E stored
                                       quantized (key "free_dtype"); false: in the
                                       core dtype (key absent)                   */
    enum fpd_free_kind free_kind;   /* with free_rowwise: int8, int4 (free-rowwise/1),
                                       int8-sym, int4-sym (free-sym/1)           */
    bool vocabulary_order;          /* the table's row order was folded into an id
                                       vocabulary (fpd-convert --vocabulary-out):
                                       its rows are the vocabulary's, not the
                                       original ids (key "vocabulary_order": true;
                                       readers that ignore it read the same rows) */
};

/* Serialize meta as the JSON string of "fpd.table.T" (keys rows, dim, row_shape,
 * col_shape, ranks, terms, source_dtype, core_dtype, fit, seed, rel_error, then
 * free_coords when > 0 (free/1), then free_dtype (fpd_free_kind_name) when
 * free_rowwise (free-rowwise/1, free-sym/1), then vocabulary_order true when set; compact, in that order; core_dtype left out when
 * FPD_DTYPE_COUNT; seed as a decimal string
 * when above INT64_MAX; rel_error null when not finite). Returns a NUL-terminated
 * string; free with fpd_free. Errors: INVALID_ARG (k or a dtype out of range, fit
 * not NUL-terminated or not UTF-8, free_rowwise without free coordinates or with a
 * kind out of range), NOMEM. */
FPD_API enum fpd_status fpd_table_meta_to_json(const struct fpd_table_meta *meta, char **out,
                                               struct fpd_error *err);
/* Parse such a JSON string and check the shape (fpd_layer_shape_check).
 * table names the table in messages ("table 'T': key 'ranks' has 3 values; 4
 * expected"). Keys may come in any order; unknown keys are ignored; core_dtype is
 * optional; free_coords is optional (absent: 0), else an integer in [1, dim];
 * free_dtype is optional (absent: E in the core dtype), else "int8" or "int4" and
 * only beside free_coords; vocabulary_order is optional (absent: false), a boolean. *out is written only on success. Errors: FORMAT (not
 * JSON, missing key, wrong type, invalid shape), NOMEM. */
FPD_API enum fpd_status fpd_table_meta_from_json(const char *json, const char *table,
                                                 struct fpd_table_meta *out, struct fpd_error *err);

/* Validate FPD table `table` of an open checkpoint from its header alone (no
 * tensor data is read): "fpd.version" is "1", the "fpd.table.T" JSON is valid,
 * cores T.fpd.core0..core{k-1} exist with float dtypes (the metadata's core_dtype
 * when given) and exactly the shapes [p, n_m, r_m, d_m, r_{m+1}] of the metadata,
 * there is no extra core, T.fpd.row_perm, if present, is I32/I64 [rows], and the
 * free/1 and free-rowwise/1 rules below hold (free_coords, free_dtype, T.fpd.free,
 * T.fpd.free_proj).
 * *meta receives the parsed metadata. Errors: FORMAT (with file, table, tensor and
 * what differs), UNSUPPORTED (another fpd.version), NOMEM. */
FPD_API enum fpd_status fpd_checkpoint_check_table(const struct fpd_safetensors *st, const char *table,
                                                   struct fpd_table_meta *meta, struct fpd_error *err);

/* Load FPD table `table` of an open checkpoint into a new layer (cores converted to
 * F32, row_perm applied if present, free/1's free coordinates attached when the
 * metadata has free_coords; with free-rowwise/1 E is dequantized to F32: in memory
 * the layer is F32 whatever the file stores). Checks every core's dtype (F32/F64/F16/BF16,
 * and core_dtype when the metadata gives it) and shape against the metadata before
 * allocating, and that no core beyond k exists. Free with fpd_layer_free. Messages
 * start with the checkpoint's path. Errors: FORMAT (no "fpd.table.T" key, bad
 * metadata, missing tensor, shape or dtype mismatch, bad row_perm), NOMEM. */
FPD_API enum fpd_status fpd_checkpoint_load_layer(const struct fpd_safetensors *st, const char *table,
                                                  struct fpd_layer **out, struct fpd_error *err);
/* As fpd_checkpoint_load_layer, but E stored as rows (free-rowwise/1, free-sym/1) is
 * kept so in memory (fpd_layer_set_free_stored: fpd_free_row_bytes(kind, c) bytes a
 * row instead of 4 c; the same checks on every row): for look-ups, which give bit for
 * bit what the F32 layer gives; training needs fpd_layer_expand_free first. E stored
 * in F32/F16/BF16 (free/1 alone) is loaded as fpd_checkpoint_load_layer does. Errors:
 * those of fpd_checkpoint_load_layer. */
FPD_API enum fpd_status fpd_checkpoint_load_layer_stored(const struct fpd_safetensors *st, const char *table,
                                                         struct fpd_layer **out, struct fpd_error *err);

/* The tensors and metadata that store `layer` as FPD table `table` of a checkpoint,
 * ready for fpd_safetensors_write: the cores "T.fpd.core0.." in meta->core_dtype
 * (F32, F16 or BF16; any other value, FPD_DTYPE_COUNT included, writes F32), then
 * "T.fpd.row_perm" when the layer has a permutation (I32 when prod(row_shape) <=
 * INT32_MAX, else I64), then free/1's "T.fpd.free" and "T.fpd.free_proj" (same
 * dtype as the cores) when it has free coordinates; with meta->free_rowwise E is
 * written quantized instead (free-rowwise/1 or free-sym/1 by meta->free_kind: U8
 * [rows, fpd_free_row_bytes(meta->free_kind, c)], each row quantized now as
 * fpd_free_quantize_rows does; P stays in the core dtype). A layer holding E as
 * stored rows (fpd_layer_store_free, fpd_checkpoint_load_layer_stored) has them
 * copied byte for byte when their kind is meta->free_kind, else decoded and written
 * as the meta asks. meta_key/meta_value are
 * "fpd.table.T" and its JSON: meta's fields with shape, core_dtype and free_coords
 * taken from the layer (free_rowwise only when it has free coordinates).
 * extension is the list the writer adds to "fpd.extensions": "free/1" when the
 * layer has free coordinates, "free/1,free-rowwise/1" or "free/1,free-sym/1" when
 * they are quantized, else NULL. Everything is owned by *out: free with fpd_checkpoint_tensors_free
 * (also after a failure). Errors: INVALID_ARG (see fpd_table_meta_to_json),
 * NUMERIC (a row of E with NaN/Inf or, int4 and the sym kinds, beyond F16's range,
 * naming it), NOMEM. */
struct fpd_checkpoint_tensors {
    struct fpd_tensor_info tensors[FPD_MAX_MODES + 3];
    int64_t n;
    char *meta_key, *meta_value;
    const char *extension;
    void *owned_[2 * (FPD_MAX_MODES + 3)]; /* private */
};
FPD_API enum fpd_status fpd_checkpoint_tensors_init(const struct fpd_layer *layer, const char *table,
                                                    const struct fpd_table_meta *meta,
                                                    struct fpd_checkpoint_tensors *out, struct fpd_error *err);
/* Free what fpd_checkpoint_tensors_init allocated; a zeroed struct is a no-op. */
FPD_API void fpd_checkpoint_tensors_free(struct fpd_checkpoint_tensors *t);

/* Write a checkpoint holding the one FPD table `table` (fpd_checkpoint_tensors_init),
 * with "fpd.version" "1" and, for free coordinates, "fpd.extensions" "free/1";
 * atomic as fpd_safetensors_write (flags: FPD_WRITE_OVERWRITE). Errors: as
 * fpd_checkpoint_tensors_init and fpd_safetensors_write. */
FPD_API enum fpd_status fpd_checkpoint_write_layer(const char *path, const char *table, const struct fpd_layer *layer,
                                                   const struct fpd_table_meta *meta, unsigned flags,
                                                   struct fpd_error *err);

/* ------------------------------------------- FPD v1 extensions (rowwise/1) */

/* Extensions of FPD v1 (DESIGN.md section 7). A checkpoint that uses any lists them
 * in the metadata key "fpd.extensions": comma-separated "NAME/VERSION" items. A
 * reader refuses a checkpoint that names an extension it does not know, or holds a
 * metadata key "fpd.*" or a tensor "T.fpd.*" / "T.rowwise.*" of a table that it does
 * not know, instead of reading it wrongly.
 *
 * rowwise/1 (libfpd 0.2.0): table T quantized row-wise as FBGEMM stores it (fpd.h,
 * enum fpd_rowwise): one tensor "T.rowwise.fused", U8 [N, fpd_rowwise_row_bytes],
 * and the metadata key "fpd.rowwise.T", a JSON object as a string:
 *   {"encoding":"int8"|"int4","layout":"fbgemm-fused","rows":N,"dim":D,
 *    "source_dtype":"F32","rel_error":0.0061}
 * ("fpd.version" is "1" as for FPD tables, so one file can mix both.) */
#define FPD_META_EXTENSIONS_KEY "fpd.extensions"
#define FPD_META_ROWWISE_PREFIX "fpd.rowwise."
#define FPD_ROWWISE_TENSOR_SUFFIX ".rowwise.fused"
#define FPD_EXTENSION_ROWWISE "rowwise/1"
#define FPD_ROWWISE_LAYOUT "fbgemm-fused"

/* free/1 (libfpd 0.2.0): free coordinates per row of an FPD table T (fpd.h,
 * fpd_layer_set_free_coords: row i = FPD(i) + E[i] P). The table's "fpd.table.T"
 * JSON gains the key "free_coords": c (an integer in [1, dim], written after
 * rel_error), and two tensors hold E and P, with a float dtype (the metadata's
 * core_dtype when it gives one):
 *   "T.fpd.free"       [rows, c]  E, rows in ORIGINAL row order (the ids callers
 *                                 look up; row_perm does not apply to it)
 *   "T.fpd.free_proj"  [c, dim]   P
 * "fpd.extensions" lists "free/1". A reader refuses (FORMAT, naming the tensor):
 * free_coords without "free/1" declared, a missing tensor of the two, a shape other
 * than the above, a non-float dtype or one differing from core_dtype, a non-finite
 * value (at load), and either tensor without free_coords in the metadata. A reader
 * without free/1 refuses the file through "fpd.extensions" (UNSUPPORTED).
 *
 * free-rowwise/1 (libfpd 0.2.0): E of a free/1 table stored row-wise quantized in
 * rowwise/1's layouts (FBGEMM fused int8/int4 rows of c columns), for a table whose
 * budget goes mostly to E. The table's JSON gains "free_dtype": "int8" | "int4"
 * (after free_coords), "T.fpd.free" is U8 [rows, fpd_rowwise_row_bytes(kind, c)]
 * (still in original row order), "T.fpd.free_proj" stays [c, dim] in the float
 * dtype, and "fpd.extensions" lists "free/1" and "free-rowwise/1". A reader refuses
 * (FORMAT): free_dtype without free_coords or without "free-rowwise/1" declared, a
 * value other than "int8"/"int4", "T.fpd.free" not U8 of that shape, and (at load)
 * a row whose scale, bias or largest value is NaN/Inf. Parameters are counted as in
 * free/1 (c (N + D)); bytes as stored.
 *
 * free-sym/1 (libfpd 0.2.0): the same with symmetric rows, integer codes and one F16
 * scale a row, no bias (enum fpd_free_kind in fpd.h: int4-sym ceil(c/2) + 2 bytes a
 * row, int8-sym c + 2): "free_dtype": "int8-sym" | "int4-sym", "T.fpd.free" U8 [rows,
 * fpd_free_row_bytes(kind, c)], "fpd.extensions" lists "free/1" and "free-sym/1". A
 * reader refuses (FORMAT) as for free-rowwise/1 (free-sym/1 not declared, the wrong
 * dtype or shape) and, at load, a row whose scale is NaN/Inf. */
#define FPD_EXTENSION_FREE "free/1"
#define FPD_EXTENSION_FREE_ROWWISE "free-rowwise/1"
#define FPD_EXTENSION_FREE_SYM "free-sym/1"
#define FPD_FREE_TENSOR_SUFFIX ".fpd.free"
#define FPD_FREE_PROJ_TENSOR_SUFFIX ".fpd.free_proj"

struct fpd_rowwise_meta {
    enum fpd_rowwise kind;
    int64_t rows, dim;
    enum fpd_dtype source_dtype;   /* dtype of the dense table it replaced     */
    double rel_error;              /* relative Frobenius error (NaN: unknown)  */
};

/* Serialize / parse the "fpd.rowwise.T" JSON (compact, the key order above;
 * rel_error null when not finite). to_json's string is freed with fpd_free.
 * from_json: every key above is required, "layout" must be "fbgemm-fused", unknown
 * keys are refused (FORMAT, naming the key: a later version's table is not read
 * wrongly); *out is written only on success. Errors: FORMAT, INVALID_ARG (to_json:
 * a kind or dtype out of range), NOMEM. */
FPD_API enum fpd_status fpd_rowwise_meta_to_json(const struct fpd_rowwise_meta *meta, char **out,
                                                 struct fpd_error *err);
FPD_API enum fpd_status fpd_rowwise_meta_from_json(const char *json, const char *table, struct fpd_rowwise_meta *out,
                                                   struct fpd_error *err);

/* Check the checkpoint-level extension rules above from the header alone: every item
 * of "fpd.extensions" is known (FPD_EXTENSION_ROWWISE, FPD_EXTENSION_FREE), every "fpd.*" metadata key is
 * fpd.version, fpd.extensions, fpd.table.T or fpd.rowwise.T, and a checkpoint with a
 * "fpd.rowwise.T" key declares rowwise/1. Errors: UNSUPPORTED (an unknown extension
 * or key, with the file, the item and what this build reads), FORMAT (a malformed
 * list). */
FPD_API enum fpd_status fpd_checkpoint_check_extensions(const struct fpd_safetensors *st, struct fpd_error *err);

/* Validate row-wise table `table` from the header (extensions, "fpd.version" "1",
 * the JSON, tensor "T.rowwise.fused" U8 [rows, row_bytes], no other "T.rowwise.*"
 * tensor) and give a view of its bytes (borrowed from st, valid until it is freed).
 * meta may be NULL. The data is not read: see fpd_checkpoint_verify_table.
 * Errors: FORMAT, UNSUPPORTED, NOMEM. */
FPD_API enum fpd_status fpd_checkpoint_load_rowwise(const struct fpd_safetensors *st, const char *table,
                                                    struct fpd_rowwise_table *out, struct fpd_rowwise_meta *meta,
                                                    struct fpd_error *err);

/* Check table `table` (FPD, metadata fpd.table.T, or row-wise, fpd.rowwise.T) against
 * its data, beyond the header checks. Always: FPD cores hold only finite values
 * (reads the cores, O(parameters)). With deep: also row_perm entries are distinct and
 * in [0, prod(row_shape)), and every row of the reconstructed table is finite
 * (products of finite cores can still overflow); row-wise rows have a finite scale,
 * bias and largest value. deep reads every byte of the table and reconstructs it in
 * row blocks (time O(N D k r^2); memory: the layer with an int8/int4 E of free
 * coordinates held as stored rows, fpd_checkpoint_load_layer_stored). Errors: FORMAT (naming the tensor and the element,
 * or the first non-finite row), UNSUPPORTED, NOMEM. */
FPD_API enum fpd_status fpd_checkpoint_verify_table(const struct fpd_safetensors *st, const char *table, bool deep,
                                                    struct fpd_error *err);

/* Write data[0..n) to path atomically, as fpd_safetensors_write writes (unnamed
 * temporary file, fsync, link or rename; never a partial file, no temporary left;
 * without FPD_WRITE_OVERWRITE an existing path is never replaced). For the tools'
 * own small files (reports, state records). data may be NULL when n is 0.
 * Errors: IO ("<path> already exists", or the system's reason), INVALID_ARG (path
 * ends in '/'), NOMEM. */
FPD_API enum fpd_status fpd_write_file_atomic(const char *path, const void *data, size_t n, unsigned flags,
                                              struct fpd_error *err);

/* ---------------------------------------------------------------- signal safety */

/* The path given to fpd_safetensors_open or fpd_npy_open whose memory mapping holds
 * addr, or NULL. Async-signal-safe (no lock, no allocation): a SIGBUS handler calls
 * it with si_addr to tell an input that someone truncated while it was mapped (a
 * read past the file's new end) from a bug. Borrowed; valid while that handle is
 * open. (fpd-compress and the other tools do so: see tools/cli.c.) */
FPD_API const char *fpd_mapped_file_at(const void *addr);

/* Remove the named temporary files of the writes in progress in this process, for
 * a handler of a fatal signal that then calls _exit(). Only writers that had to
 * name their temporary file (no O_TMPFILE on the file system) have one: an unnamed
 * one vanishes with the process. Async-signal-safe. */
FPD_API void fpd_write_remove_temporaries(void);

/* ------------------------------------------------------------------------ */
/* Inputs: a safetensors file or one .npy table (formats/input.c)            */
/* ------------------------------------------------------------------------ */

/* A checkpoint input: a safetensors file, or a single .npy table presented as a
 * one-tensor checkpoint named after the file (its stem; "weight" when the stem is
 * empty or the input came from memory). The caller allocates it; the fields are
 * read-only for the caller (st and npy are NULL but one). Free with fpd_input_free.
 *
 *   struct fpd_input in;
 *   if (fpd_input_open("table.npy", &in, &err)) { ... err.msg ... }
 *   for (int64_t i = 0; i < fpd_input_count(&in); i++) ... fpd_input_tensor(&in, i)->name ...
 *   fpd_input_free(&in);
 */
struct fpd_input {
    struct fpd_safetensors *st;        /* a safetensors input, else NULL             */
    struct fpd_npy *npy;               /* a .npy input, else NULL                    */
    struct fpd_tensor_info npy_tensor; /* the .npy's view, named npy_name            */
    char npy_name[256];
};
/* Open path by its content (the .npy magic "\x93NUMPY", else safetensors) into *in
 * (overwritten). Errors: IO ("PATH: reason"), and those of fpd_npy_open and
 * fpd_safetensors_open. Free with fpd_input_free (also after a failure). */
FPD_API enum fpd_status fpd_input_open(const char *path, struct fpd_input *in, struct fpd_error *err);
/* The same from len bytes at buf (borrowed: they must outlive the input), named
 * name in messages (e.g. "-" for standard input); a .npy's tensor is "weight". */
FPD_API enum fpd_status fpd_input_open_memory(const void *buf, size_t len, const char *name, struct fpd_input *in,
                                              struct fpd_error *err);
/* Close what the input holds and zero it; NULL or a zeroed input is a no-op. */
FPD_API void fpd_input_free(struct fpd_input *in);
/* Number of tensors (1 for a .npy). */
FPD_API int64_t fpd_input_count(const struct fpd_input *in);
/* Tensor i in [0, count) in the file's order; borrowed, valid until fpd_input_free. */
FPD_API const struct fpd_tensor_info *fpd_input_tensor(const struct fpd_input *in, int64_t i);

/* Why tensor t is not a table that can be compressed (a 2-D float tensor with at
 * least one row and one column), written into buf (len bytes): "an I32 tensor with
 * 2 dimension(s); only 2-D float tables (F32, F64, F16, BF16) can be compressed",
 * "an empty F32 table (shape 0x16): it has no rows to compress". Returns buf, or
 * NULL when t is a table. */
FPD_API const char *fpd_tensor_info_not_a_table(const struct fpd_tensor_info *t, char *buf, size_t len);

/* Row frequencies (access counts) of a table of `rows` rows (>= 1), the weights of
 * a frequency-weighted fit (fpd_fit_params.row_weights): a .npy (any numeric
 * dtype, shape [rows] or [rows, 1]) or a text file with one number per line
 * (blank lines and lines starting with '#' skipped). *out receives `rows` finite
 * non-negative values (fpd_malloc; free with fpd_free); NULL on failure. Errors
 * name the file, the line and what is wrong: IO, FORMAT (not a number, negative
 * or not finite), SHAPE (another count of values, a non-numeric or misshapen
 * array), INVALID_ARG (rows < 1), NOMEM. */
FPD_API enum fpd_status fpd_row_freq_load(const char *path, int64_t rows, double **out, struct fpd_error *err);

/* ------------------------------------------------------------------------ */
/* NCF GMF checkpoints and data files (formats/ncf-data.c)                   */
/* ------------------------------------------------------------------------ */
/*
 * The file handling around the GMF model of lib/fpd.h (fpd_gmf_rank, fpd_gmf_train):
 * load a GMF checkpoint whose tables are dense, row-wise int8/int4 or FPD v1, read
 * the NCF leave-one-out test files and interaction files, evaluate HR@10 / NDCG@10,
 * finetune the tables on the model's own loss (task-aware finetuning) and write the
 * checkpoint back, and rebuild the NCF item numbering from MovieLens-1M ratings.
 * fpd-eval, fpd-compress (--ncf, --finetune-task), sample-train-gmf and the Python
 * package (fpd.ncf_eval) call these.
 *
 * A GMF checkpoint (He et al., WWW 2017; the NCF authors' Pretrain/ml-1m_GMF_8)
 * holds user_embedding.weight [U, D], item_embedding.weight [I, D] (each dense,
 * or compressed as FPD v1: T.fpd.core*, fpd.table.T), prediction.weight [1, D]
 * and prediction.bias [1]; score = sigmoid(sum((u * i) * w) + b).
 *
 * Usage (HR@10 before and after compressing, then task-aware finetuning):
 *
 *   struct fpd_ncf_metrics before, after;
 *   fpd_ncf_eval_file("gmf.safetensors", "ml-1m.test.rating", "ml-1m.test.negative", &before, &err);
 *   ... fpd-compress gmf.safetensors -o small.safetensors ...
 *   struct fpd_gmf_train_params tp = fpd_ncf_finetune_default_params();
 *   struct fpd_ncf_finetune_report rep;
 *   fpd_ncf_finetune_file("small.safetensors", "ml-1m.train.rating", "small.safetensors", true, &tp,
 *                         "ml-1m.test.rating", "ml-1m.test.negative", "gmf.safetensors", &rep, &err);
 *   // rep.before.hr10, rep.after.hr10
 *
 * Every array in these structs is allocated with fpd_malloc and released by the
 * struct's _free function, which is also safe after a failed load and on a zeroed
 * struct. Ids are 0-based in memory.
 */

#define FPD_NCF_USER_TABLE "user_embedding.weight"
#define FPD_NCF_ITEM_TABLE "item_embedding.weight"
#define FPD_NCF_PRED_WEIGHT "prediction.weight"
#define FPD_NCF_PRED_BIAS "prediction.bias"

/* The NCF leave-one-out test set: per user, the held-out item and its sampled
 * negatives. */
struct fpd_ncf_test {
    int64_t n;         /* users (lines)                                            */
    int64_t n_cand;    /* 1 + negatives per user (100 in NCF)                      */
    int64_t *users;    /* [n]                                                      */
    int64_t *cand;     /* [n * n_cand]; cand[t * n_cand] is the held-out item      */
};
/* Read TEST.rating ("user\titem[\trating\ttimestamp]" per line, 0-based ids) and
 * TEST.negative ("(user,item)\tneg1\t...\tnegK" per line, in the same order; every
 * line the same K >= 1) into *out (overwritten). Errors: IO (a file cannot be
 * opened: "PATH: reason"), FORMAT ("PATH:LINE: ..."; no lines; the two files
 * disagree), NOMEM. Free with fpd_ncf_test_free (also after a failure). */
FPD_API enum fpd_status fpd_ncf_test_load(const char *rating, const char *negative, struct fpd_ncf_test *out,
                                          struct fpd_error *err);
/* Release what fpd_ncf_test_load allocated and zero *t. */
FPD_API void fpd_ncf_test_free(struct fpd_ncf_test *t);

/* Interactions (implicit feedback): one "user item [rating ...]" per line,
 * separated by tabs, spaces or commas; a first line that does not start with a
 * number is a header and skipped; extra fields are ignored. Ids are id_base-based
 * in the file (0 for NCF's files, 1 for MovieLens) and 0-based in memory. */
struct fpd_ncf_interactions {
    int64_t n;
    int64_t *users, *items;   /* [n], 0-based                    */
    float *ratings;           /* [n], NAN where the line has none */
    int64_t n_users, n_items; /* 1 + the largest ids             */
};
/* Read path into *out (overwritten). Errors: IO, FORMAT ("PATH:LINE: ..."; an id
 * below id_base; no interactions), NOMEM. Free with fpd_ncf_interactions_free
 * (also after a failure). */
FPD_API enum fpd_status fpd_ncf_interactions_load(const char *path, int64_t id_base, struct fpd_ncf_interactions *out,
                                                  struct fpd_error *err);
/* Release what fpd_ncf_interactions_load allocated and zero *x. */
FPD_API void fpd_ncf_interactions_free(struct fpd_ncf_interactions *x);

/* An NCF model in memory: GMF, MLP or NeuMF (He et al., WWW 2017; fpd.h "NCF's three
 * models"). Tables are F32 copies (dense) or layers (FPD). Fields are public so that
 * a trainer can reach the tables; fpd_ncf_model_free releases them.
 *
 * Checkpoints use the tensor names of the NCF authors' Keras models (GMF.py, MLP.py,
 * NeuMF.py), converted as PyTorch names them ("NAME.weight", Dense kernels as
 * [out, in]):
 *   GMF:   user_embedding.weight [U, D], item_embedding.weight [I, D],
 *          prediction.weight [1, D], prediction.bias [1]
 *   MLP:   user_embedding.weight [U, A/2], item_embedding.weight [I, A/2],
 *          layer1.weight [n1, A], layer1.bias [n1], ... layerL.weight [nL, n(L-1)],
 *          prediction.weight [1, nL], prediction.bias [1]
 *   NeuMF: mf_embedding_user.weight, mf_embedding_item.weight [., D],
 *          mlp_embedding_user.weight, mlp_embedding_item.weight [., A/2], layer1..L
 *          as MLP, prediction.weight [1, D + nL] (the GMF part first), prediction.bias
 * Each table dense, row-wise int8/int4 or FPD v1 (fpd.table.NAME). */
struct fpd_ncf_model {
    struct fpd_safetensors *st;     /* the checkpoint it came from, or NULL          */
    struct fpd_gmf gmf;             /* GMF: views of the members below               */
    float *dense[4];                /* tables (fpd_ncf_model_table_name order):
                                       dense F32 [rows, dim] or NULL                 */
    struct fpd_layer *layer[4];     /* the same tables: FPD layers or NULL           */
    struct fpd_table_meta meta[4];  /* FPD metadata (written with the layer)         */
    enum fpd_dtype dtype[4];        /* stored dtype of a dense table                 */
    const char *encoding[4];        /* "int8"/"int4" for a row-wise table read
                                       dequantized into dense[], else NULL (static)  */
    enum fpd_dtype pred_dtype[2];   /* stored dtypes of prediction weight, bias      */
    float *weight;                  /* [fpd_ncf_predict_dim(&net)]                   */
    enum fpd_ncf_kind kind;         /* GMF, MLP or NeuMF                             */
    int32_t n_tables;               /* 2 (GMF, MLP) or 4 (NeuMF: mf user, mf item,
                                       mlp user, mlp item)                           */
    struct fpd_ncf net;             /* every kind: views of the members (and hidden) */
    float *hidden[2 * FPD_NCF_MAX_LAYERS]; /* MLP, NeuMF: layer l's weight [2 l],
                                       bias [2 l + 1], F32                           */
};
/* The tensor name of table i < m->n_tables of a model of that kind (static). */
FPD_API const char *fpd_ncf_model_table_name(enum fpd_ncf_kind kind, int32_t i);
/* Open an NCF checkpoint (GMF, MLP or NeuMF, told apart by its tensor names, as
 * above) into *m (overwritten): each table dense (2-D float tensor, converted to
 * F32), row-wise int8/int4 (dequantized to F32) or FPD (fpd.table.T metadata and
 * cores, via fpd_checkpoint_load_layer); the hidden layers layer1.. (float, any
 * dtype, converted to F32); prediction.weight [1, P] or [P] and prediction.bias
 * [1] or a scalar. The checkpoint stays open (m->st) until fpd_ncf_model_free.
 * Errors: IO, FORMAT (a missing tensor, shapes that do not fit: "PATH: ..."; a
 * checkpoint that is none of the three: "this model is not supported"), as
 * fpd_checkpoint_load_layer, NOMEM. Free with fpd_ncf_model_free (also after a
 * failure). */
FPD_API enum fpd_status fpd_ncf_model_load(const char *path, struct fpd_ncf_model *m, struct fpd_error *err);
/* As fpd_ncf_model_load, but an FPD table whose free coordinates' E the file stores
 * as rows (free-rowwise/1, free-sym/1) keeps it so in memory
 * (fpd_checkpoint_load_layer_stored): for evaluation (fpd_ncf_model_eval and the
 * ranking functions give bit for bit the same scores), in a fraction of the memory;
 * training such a model (fpd_ncf_train_model, finetuning) is refused until
 * fpd_layer_expand_free. fpd-eval and fpd_ncf_eval_file load this way. Errors: as
 * fpd_ncf_model_load. */
FPD_API enum fpd_status fpd_ncf_model_load_stored(const char *path, struct fpd_ncf_model *m, struct fpd_error *err);
/* A leave-one-out split of implicit feedback (NCF's protocol, as the samples draw
 * it): per user with at least two interactions, one held out uniformly at random
 * and n_neg negatives drawn uniformly among the items the user has no interaction
 * with; everything else trains. */
struct fpd_ncf_split {
    int64_t n_users, n_items;       /* ids [0, n_users), [0, n_items)                */
    int64_t n_train;
    int64_t *train_users, *train_items; /* [n_train] training positives              */
    struct fpd_ncf_test test;       /* held-out item + n_neg negatives per user       */
};
/* Split r (users beyond max_users dropped when max_users > 0) with the seed's
 * random stream (splitmix64 from seed * 0x2545F4914F6CDD1D + 7; users in id order,
 * each user's items sorted, one draw for the held-out index then one per negative);
 * a user with fewer than two interactions only trains. The same seed gives the same
 * split. Free with fpd_ncf_split_free (also after a failure). Errors: INVALID_ARG
 * (n_neg < 0, or a user with every item: no negative exists), NOMEM. */
FPD_API enum fpd_status fpd_ncf_split_leave_one_out(const struct fpd_ncf_interactions *r, int64_t max_users,
                                                    uint64_t seed, int64_t n_neg, struct fpd_ncf_split *out,
                                                    struct fpd_error *err);
/* Release what the split allocated and zero *s. */
FPD_API void fpd_ncf_split_free(struct fpd_ncf_split *s);

/* A GMF model from parts (for a trainer): table i (0 user, 1 item) is dense[i] (F32
 * [rows[i], dim], allocated with fpd_malloc) or layer[i]; the model takes ownership
 * of both (freed by fpd_ncf_model_free, also after a failure); weight [dim] is
 * copied. Set meta[i] of an FPD table before fpd_ncf_model_save. Errors: SHAPE (a
 * layer's shape is not [rows[i], dim]), INVALID_ARG (neither given), NOMEM. */
FPD_API enum fpd_status fpd_ncf_model_init(struct fpd_ncf_model *m, float *const dense[2],
                                           struct fpd_layer *const layer[2], const int64_t rows[2], int64_t dim,
                                           const float *weight, float bias, struct fpd_error *err);
/* A model of any kind from a filled struct fpd_ncf (for a trainer): the model takes
 * ownership of every table (dense rows allocated with fpd_malloc, or FPD layers),
 * hidden-layer array and the prediction weight that net points to (all freed by
 * fpd_ncf_model_free, also after a failure); dense tables are written as F32, FPD
 * cores in F32 (set meta[i] before fpd_ncf_model_save). Errors: as fpd_ncf_logits'
 * checks of the model (SHAPE, INVALID_ARG). */
FPD_API enum fpd_status fpd_ncf_model_init_net(struct fpd_ncf_model *m, const struct fpd_ncf *net,
                                               struct fpd_error *err);
/* Free everything the model owns (and the checkpoint handle); zeroes it. */
FPD_API void fpd_ncf_model_free(struct fpd_ncf_model *m);
/* Look up a checkpoint whose row order lives in an id vocabulary (fpd-convert
 * --vocabulary-out) by the original ids again: map_path is the TSV that fpd-convert
 * wrote (a header "table<TAB>id<TAB>row", then one line per id, ids 0-based); every
 * FPD table of the model named in it is replaced by fpd_layer_select_rows(layer,
 * rows), rows[id] = its row, so that id i of the test files indexes what id i indexed
 * before the fold. Errors name the file and line: IO (cannot read it), FORMAT (no
 * such header, a line that is not "table id row" with integers >= 0, a table the
 * model does not have or that is not FPD, a table whose ids are not 0..n-1 each once,
 * a row outside the table), NOMEM; the model is unchanged after a failure. */
FPD_API enum fpd_status fpd_ncf_model_apply_vocabulary(struct fpd_ncf_model *m, const char *map_path,
                                                       struct fpd_error *err);
/* Write the model as a safetensors checkpoint (atomic; FPD_WRITE_OVERWRITE when
 * overwrite) under its kind's names: dense tables as F32 (or their source dtype when
 * loaded), FPD tables as cores in meta.core_dtype (F32 when unknown) with their
 * row_perm, free/1's tensors and "fpd.table.T", the hidden layers as F32,
 * prediction.weight [1, P] and prediction.bias [1]. Every other tensor and metadata
 * entry of the source checkpoint (m->st) is copied unchanged. Errors: as
 * fpd_safetensors_write, NOMEM. */
FPD_API enum fpd_status fpd_ncf_model_save(const struct fpd_ncf_model *m, const char *path, bool overwrite,
                                           struct fpd_error *err);

/* HR@10 and NDCG@10 of the NCF protocol (He et al. 2017, section 4.1): the share of
 * users whose held-out item ranks among the top 10 of its candidates, and the mean
 * of 1 / log2(rank + 2) over those users. */
struct fpd_ncf_metrics {
    double hr10, ndcg10;
    int64_t users;
};
/* Rank each user's held-out item among its candidates (fpd_gmf_rank for GMF,
 * fpd_ncf_rank for MLP and NeuMF; k = 10). Errors: as those (INVALID_ARG: an id
 * outside the tables). */
FPD_API enum fpd_status fpd_ncf_model_eval(const struct fpd_ncf_model *m, const struct fpd_ncf_test *t,
                                           struct fpd_ncf_metrics *out, struct fpd_error *err);
/* Load ckpt (dense, row-wise or FPD tables) and the test files, evaluate, free.
 * Errors: as fpd_ncf_model_load, fpd_ncf_test_load, INVALID_ARG (a test id outside
 * the tables; the message names the checkpoint and the id). */
FPD_API enum fpd_status fpd_ncf_eval_file(const char *ckpt, const char *rating, const char *negative,
                                          struct fpd_ncf_metrics *out, struct fpd_error *err);

/* The defaults of task-aware finetuning: fpd_gmf_train_default_params() with 10
 * epochs, batch 1024 samples, 4 negatives, learning rate 1e-3 for weight and bias,
 * core step 1e-2 relative to each core's RMS, prediction weights trainable. */
FPD_API struct fpd_gmf_train_params fpd_ncf_finetune_default_params(void);

struct fpd_ncf_finetune_report {
    bool evaluated;                 /* test files given                             */
    struct fpd_ncf_metrics before, after;
    int64_t positives, epochs;
    double final_loss, seconds, seconds_per_epoch;
    double rel_error[2];            /* tables 0 and 1 vs the reference (NAN: none)  */
};
/* Task-aware finetuning: load ckpt_in (an NCF checkpoint, typically with FPD
 * tables), read the interactions (0-based ids matching the tables), train with
 * fpd_gmf_train (GMF) or fpd_ncf_train (MLP, NeuMF: no distill, no balance_users)
 * (gradients through the FPD cores; dense tables are trained as dense rows), and
 * write ckpt_out (may be ckpt_in with overwrite). Each FPD
 * table's metadata gets fit "+task" and, when ref_ckpt (may be NULL) has the dense
 * table, rel_error against it (else null). With params->distill > 0 and no
 * params->teacher, ref_ckpt (required then) is loaded as the teacher. params NULL:
 * fpd_ncf_finetune_default_params(). E of a table stored as quantized rows
 * (free-rowwise/1, free-sym/1) is trained in F32 and rounded to the file's kind
 * before the "after" evaluation, rel_error and the write, so these describe the
 * checkpoint written. With rating/negative (may be NULL) the model
 * is evaluated before and after. rep (may be NULL). Errors: as the loaders,
 * fpd_gmf_train (CANCELLED when its epoch callback returns false) and
 * fpd_ncf_model_save; INVALID_ARG (an interaction id outside the tables; distill
 * without ref_ckpt); NUMERIC (a trained row of E the file's kind cannot store, naming
 * the table and row). Nothing is written on failure. */
FPD_API enum fpd_status fpd_ncf_finetune_file(const char *ckpt_in, const char *interactions, const char *ckpt_out,
                                              bool overwrite, const struct fpd_gmf_train_params *params,
                                              const char *rating, const char *negative, const char *ref_ckpt,
                                              struct fpd_ncf_finetune_report *rep, struct fpd_error *err);

/* What fpd_ncf_movielens_map found. */
struct fpd_ncf_map_report {
    int64_t users, items, ratings, groups;
    int64_t test_unrated;      /* held-out items the user has no rating for (0 expected)     */
    int64_t test_out_of_group; /* held-out ids outside their user's first-rater groups (0)   */
    int64_t neg_rated, neg_total; /* test negatives that the user did rate, of all negatives */
    int64_t tied_ids;          /* ids whose constraints did not single out one item          */
    int64_t tied_ratings;      /* ratings of those items                                     */
    bool model_tiebreak;       /* ties broken by the checkpoint's scores (else by order)     */
    int64_t train;             /* training interactions (ratings minus held-out)             */
    double hr10_test;          /* the model on the test set                                  */
    double hr10_train;         /* the model on one random training positive per user, ranked
                                  among that user's 99 test negatives (untied items only)    */
    double hr10_train_shuffled;/* the same with item ids shuffled: what a wrong map gives    */
};
/* Rebuild the NCF Data/ item numbering from MovieLens-1M ratings (users 1..6040,
 * items renumbered 1..3706, no timestamps; ratings 0-based in memory, as read by
 * fpd_ncf_interactions_load(path, 1, ...)). item_map[j] (caller's array of
 * ratings->n_items) receives the NCF id of rating item j (users are the same, minus
 * one). Method: items grouped by their first rater, matched to ids inside each group
 * by a minimum-cost assignment (Hungarian method, Kuhn 1955 / Munkres 1957) over the
 * test file's evidence; see formats/ncf-data.c. model (may be NULL) breaks ties and
 * gives the HR checks; rep (may be NULL). Errors: SHAPE (user or item counts differ
 * from the test set's or the model's), FORMAT (the structure the method relies on
 * is absent), UNSUPPORTED (a model other than GMF), NOMEM. */
FPD_API enum fpd_status fpd_ncf_movielens_map(const struct fpd_ncf_interactions *ratings,
                                              const struct fpd_ncf_test *test, const struct fpd_ncf_model *model,
                                              int64_t *item_map, struct fpd_ncf_map_report *rep,
                                              struct fpd_error *err);
/* Write the training interactions (every rating except each user's held-out item)
 * in NCF ids as "user\titem\trating" lines, sorted, atomically (temporary file and
 * rename; refuses an existing path unless overwrite). *n_out (may be NULL) gets the
 * line count. Errors: IO, NOMEM. */
FPD_API enum fpd_status fpd_ncf_write_train(const char *path, const struct fpd_ncf_interactions *ratings,
                                            const int64_t *item_map, const struct fpd_ncf_test *test, bool overwrite,
                                            int64_t *n_out, struct fpd_error *err);

/* ------------------------------------------------------------------------ */
/* Batch pipeline files (formats/batch.c)                                    */
/* ------------------------------------------------------------------------ */
/*
 * The YAML pipeline file fpd-batch runs: parsed and validated into a struct
 * fpd_batch_pipeline (fpd_batch_pipeline_load), and the per-table settings it gives
 * (fpd_batch_settings_for), mapped onto the planner's and the fit's parameters
 * (fpd_batch_settings_apply) for fpd_compress_input. fpd-batch (tools/fpd-batch.c)
 * does the command-line work on top: sharding, resume state, running units, the
 * reports. The structs are filled by the parser and read by the caller.
 *
 * Schema (version 1; every key optional unless marked required; relative paths are
 * relative to the folder of the YAML file, so the pipeline runs the same from any
 * working directory, e.g. on every node of a Slurm job array):
 *
 *   version: 1
 *   inputs:                      # required: paths and glob patterns (safetensors or .npy)
 *     - model.safetensors
 *     - "table-*.npy"            # a glob pattern: must match at least one file
 *   output:
 *     folder: out                # required; output = folder/<input stem><suffix>
 *     suffix: .fpd.safetensors   # default
 *   report:
 *     json: out/report.json      # default folder/report.json: every table of every checkpoint
 *     markdown: out/report.md    # default folder/report.md: the summary table
 *   select:                      # which 2-D float tables are compressed, per checkpoint
 *     include: ["*"]             # name patterns (fnmatch), a string or a list
 *     exclude: []
 *     min_rows: 1000             # fewer rows: kept dense
 *     min_bytes: 0               # an integer or "64KiB", "2 MB", "1GiB"
 *     largest: 0                 # only the K largest selected tables (0: all)
 *   defaults:  SETTINGS          # for every table
 *   tables:                      # per-table overrides, applied in order (later wins)
 *     - match: "user_*"          # required: pattern on the table name
 *       checkpoint: "ncf*"       # optional: pattern on the input's file name or path
 *       SETTINGS
 *
 * SETTINGS: rank (r), terms (p), cores (k), core_dtype (F32|F16|BF16), min_ratio,
 * epochs, batch_rows, learning_rate, seed, backfit_sweeps, backfit_tol (mapped onto
 * struct fpd_plan_params and struct fpd_fit_params), recall_queries, row_freq (a
 * row-frequency file for the table, as fpd-compress --row-freq), device (auto|cpu|cuda),
 * compress (true: compress even when select rules out the table; false: keep it
 * dense), and the planner's targets (struct fpd_plan_params): budget (bytes, as
 * min_bytes: the largest candidate within it), ratio (> 1: the largest candidate at
 * least this many times smaller), max_error (> 0: the smallest candidate whose
 * predicted relative error, from the table's data, is at most this), free_coords
 * (c >= 0: c free coordinates per row, format free/1, as fpd-compress --free-coords;
 * fit.free_coords), free_dtype (core | int8 | int4: E stored row-wise, extension
 * free-rowwise/1, as fpd-compress --free-dtype; fpd_batch_settings_apply leaves it to
 * the caller, fpd_compress_params.free_rowwise), and the table's row order from implicit feedback, as
 * fpd-compress --order-from (fpd_compress_params.order_*): order_from (an
 * interactions file, fpd_ncf_interactions_load), order_column (1|2: the column of the
 * table's ids, default 1), id_base (B >= 0: the ids are B-based, default 0);
 * order_column and id_base without order_from anywhere in the pipeline are an error.
 * Paths (row_freq, order_from, inputs, output.folder, report.*) are relative to the
 * YAML file's folder.
 */

/* Which fields of struct fpd_batch_settings are set. */
enum {
    FPD_BATCH_SET_RANK = 1u << 0, FPD_BATCH_SET_TERMS = 1u << 1, FPD_BATCH_SET_CORES = 1u << 2,
    FPD_BATCH_SET_CORE_DTYPE = 1u << 3, FPD_BATCH_SET_MIN_RATIO = 1u << 4, FPD_BATCH_SET_EPOCHS = 1u << 5,
    FPD_BATCH_SET_BATCH_ROWS = 1u << 6, FPD_BATCH_SET_LR = 1u << 7, FPD_BATCH_SET_SEED = 1u << 8,
    FPD_BATCH_SET_SWEEPS = 1u << 9, FPD_BATCH_SET_TOL = 1u << 10, FPD_BATCH_SET_DEVICE = 1u << 11,
    FPD_BATCH_SET_COMPRESS = 1u << 12, FPD_BATCH_SET_BUDGET = 1u << 13, FPD_BATCH_SET_RATIO = 1u << 14,
    FPD_BATCH_SET_MAX_ERROR = 1u << 15, FPD_BATCH_SET_RECALL = 1u << 16, FPD_BATCH_SET_ROW_FREQ = 1u << 17,
    FPD_BATCH_SET_FREE_COORDS = 1u << 18, FPD_BATCH_SET_ORDER_FROM = 1u << 19,
    FPD_BATCH_SET_ORDER_COLUMN = 1u << 20, FPD_BATCH_SET_ID_BASE = 1u << 21, FPD_BATCH_SET_FREE_DTYPE = 1u << 22,
};

enum fpd_batch_device { FPD_BATCH_DEVICE_AUTO = 0, FPD_BATCH_DEVICE_CPU, FPD_BATCH_DEVICE_CUDA, FPD_BATCH_DEVICE_COUNT };

struct fpd_batch_mark {
    int64_t line, column; /* 1-based; 0 when unknown */
};

struct fpd_batch_settings {
    unsigned set;
    int64_t rank, terms;
    int32_t cores;
    enum fpd_dtype core_dtype;
    double min_ratio;
    int64_t epochs, batch_rows;
    double learning_rate;
    uint64_t seed;
    int64_t backfit_sweeps;
    double backfit_tol;
    enum fpd_batch_device device;
    bool compress;
    int64_t budget;      /* bytes */
    double ratio, max_error;
    int64_t recall_queries;
    char *row_freq;      /* row-frequency file (path resolved); owned by the pipeline */
    int64_t free_coords; /* free/1 coordinates per row of each FPD table (fit.free_coords);
                            "auto": FPD_FREE_COORDS_AUTO (fpd-batch plans each table's c;
                            needs budget, ratio or max_error) */
    struct fpd_batch_mark compress_mark; /* where compress was set (for reasons) */
    char *order_from;     /* interactions file ordering the table's rows (path resolved);
                             owned by the pipeline; NULL: no order                       */
    int32_t order_column; /* the column of the table's ids in it: 0 (first, default) or 1 */
    int64_t id_base;      /* the ids' base (default 0)                                   */
    bool free_rowwise;    /* free_dtype: int8 | int4: E stored row-wise (free-rowwise/1;
                             fpd_compress_params.free_rowwise); "core" or unset: false  */
    enum fpd_free_kind free_kind;
};

struct fpd_batch_override {
    char *match;         /* table name pattern                       */
    char *checkpoint;    /* NULL, or a pattern on the input path/name */
    struct fpd_batch_settings s;
    struct fpd_batch_mark mark;
};

struct fpd_batch_input {
    char *path;          /* as resolved (relative to the YAML's folder)   */
    char *name;          /* file name                                     */
    char *output;        /* folder/<stem><suffix>                         */
    char *output_base;   /* <stem><suffix>                                */
    const char *spec;    /* the inputs entry it came from (borrowed)      */
    struct fpd_batch_mark mark;
};

struct fpd_batch_pipeline {
    char *file;           /* the YAML path as given                          */
    char *dir;            /* its folder                                      */
    struct fpd_batch_input *inputs;
    int64_t n_inputs;
    char **specs;         /* the inputs entries as written                   */
    int64_t n_specs;
    char *folder, *suffix;
    char *report_json, *report_md;
    char **include, **exclude;
    int64_t n_include, n_exclude;
    int64_t min_rows, min_bytes, largest;
    struct fpd_batch_settings defaults;
    struct fpd_batch_override *overrides;
    int64_t n_overrides;
};

/* Parse and validate the pipeline at path: YAML syntax (read event by event:
 * lists and mappings nested at most 64 deep, at most 100,000 nodes counting an
 * alias as the nodes it repeats, no tags such as !!binary or !!str, one document),
 * the schema (unknown keys, types, ranges, duplicates), the inputs (each exists and
 * opens as a checkpoint; each pattern matches), distinct output paths, no input
 * among the outputs, the output folder and the reports' folders (each is a
 * writable folder or can be created as one), and device: cuda (CUDA device 0
 * opened with fpd_device_open: the backend loads, has the device and the engine's
 * operations). Nothing is written. On failure err
 * has the status (CONFIG: a wrong file, with err->line/column 1-based when the
 * problem has a place; BACKEND: device cuda without a CUDA device; IO: the file
 * cannot be read; NOMEM) and a message without the file name. *out (owned by the
 * caller, every string and array in it allocated with fpd_malloc) is freed with
 * fpd_batch_pipeline_free. */
FPD_API enum fpd_status fpd_batch_pipeline_load(const char *path, struct fpd_batch_pipeline **out, struct fpd_error *err);
/* The same from the file's bytes (buf[0..len), borrowed); path is used as the
 * YAML file's path (its folder resolves relative paths). For tests and fuzzing. */
FPD_API enum fpd_status fpd_batch_pipeline_parse(const char *path, const unsigned char *buf, size_t len,
                                                 struct fpd_batch_pipeline **out, struct fpd_error *err);
/* Free what fpd_batch_pipeline_load/_parse returned; NULL is a no-op. */
FPD_API void fpd_batch_pipeline_free(struct fpd_batch_pipeline *p);

/* The settings for table `name` of input `in`: defaults, then every matching
 * override in order (later wins per key). */
FPD_API void fpd_batch_settings_for(const struct fpd_batch_pipeline *p, const struct fpd_batch_input *in,
                                    const char *name, struct fpd_batch_settings *out);

/* Map the settings that are set onto plan (shapes, core dtype, min_ratio and the
 * planner's targets: budget, ratio, max_error), fit (epochs, batch_rows,
 * learning_rate, seed, backfit_sweeps, backfit_tol, free_coords) and *recall_queries; fields not
 * set are left as they are. row_freq, order_from, order_column and id_base (per
 * table: fpd_compress_params.row_freq_* and order_*) and device (validated by the
 * parser; fpd-batch opens it and sets fit->backend) are not mapped. */
FPD_API void fpd_batch_settings_apply(const struct fpd_batch_settings *s, struct fpd_plan_params *plan,
                                      struct fpd_fit_params *fit, int64_t *recall_queries);

/* A canonical text of the settings that change the output (for grouping tables that
 * share one compression pass, and for the resume fingerprint). */
FPD_API void fpd_batch_settings_key(const struct fpd_batch_settings *s, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* FPD_FORMATS_H */
