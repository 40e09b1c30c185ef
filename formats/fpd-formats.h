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
};

/* Serialize meta as the JSON string of "fpd.table.T" (keys rows, dim, row_shape,
 * col_shape, ranks, terms, source_dtype, core_dtype, fit, seed, rel_error, then
 * free_coords when > 0 (free/1); compact, in that order; core_dtype left out when
 * FPD_DTYPE_COUNT; seed as a decimal string
 * when above INT64_MAX; rel_error null when not finite). Returns a NUL-terminated
 * string; free with fpd_free. Errors: INVALID_ARG (k or a dtype out of range, fit
 * not NUL-terminated or not UTF-8), NOMEM. */
FPD_API enum fpd_status fpd_table_meta_to_json(const struct fpd_table_meta *meta, char **out,
                                               struct fpd_error *err);
/* Parse such a JSON string and check the shape (fpd_layer_shape_check).
 * table names the table in messages ("table 'T': key 'ranks' has 3 values; 4
 * expected"). Keys may come in any order; unknown keys are ignored; core_dtype is
 * optional; free_coords is optional (absent: 0), else an integer in [1, dim]. *out is written only on success. Errors: FORMAT (not JSON, missing
 * key, wrong type, invalid shape), NOMEM. */
FPD_API enum fpd_status fpd_table_meta_from_json(const char *json, const char *table,
                                                 struct fpd_table_meta *out, struct fpd_error *err);

/* Validate FPD table `table` of an open checkpoint from its header alone (no
 * tensor data is read): "fpd.version" is "1", the "fpd.table.T" JSON is valid,
 * cores T.fpd.core0..core{k-1} exist with float dtypes (the metadata's core_dtype
 * when given) and exactly the shapes [p, n_m, r_m, d_m, r_{m+1}] of the metadata,
 * there is no extra core, T.fpd.row_perm, if present, is I32/I64 [rows], and the
 * free/1 rules below hold (free_coords, T.fpd.free, T.fpd.free_proj).
 * *meta receives the parsed metadata. Errors: FORMAT (with file, table, tensor and
 * what differs), UNSUPPORTED (another fpd.version), NOMEM. */
FPD_API enum fpd_status fpd_checkpoint_check_table(const struct fpd_safetensors *st, const char *table,
                                                   struct fpd_table_meta *meta, struct fpd_error *err);

/* Load FPD table `table` of an open checkpoint into a new layer (cores converted to
 * F32, row_perm applied if present, free/1's free coordinates attached when the
 * metadata has free_coords). Checks every core's dtype (F32/F64/F16/BF16,
 * and core_dtype when the metadata gives it) and shape against the metadata before
 * allocating, and that no core beyond k exists. Free with fpd_layer_free. Messages
 * start with the checkpoint's path. Errors: FORMAT (no "fpd.table.T" key, bad
 * metadata, missing tensor, shape or dtype mismatch, bad row_perm), NOMEM. */
FPD_API enum fpd_status fpd_checkpoint_load_layer(const struct fpd_safetensors *st, const char *table,
                                                  struct fpd_layer **out, struct fpd_error *err);

/* The tensors and metadata that store `layer` as FPD table `table` of a checkpoint,
 * ready for fpd_safetensors_write: the cores "T.fpd.core0.." in meta->core_dtype
 * (F32, F16 or BF16; any other value, FPD_DTYPE_COUNT included, writes F32), then
 * "T.fpd.row_perm" when the layer has a permutation (I32 when prod(row_shape) <=
 * INT32_MAX, else I64), then free/1's "T.fpd.free" and "T.fpd.free_proj" (same
 * dtype as the cores) when it has free coordinates. meta_key/meta_value are
 * "fpd.table.T" and its JSON: meta's fields with shape, core_dtype and free_coords
 * taken from the layer. extension is FPD_EXTENSION_FREE when the layer has free
 * coordinates (the writer lists it in "fpd.extensions"), else NULL. Everything is
 * owned by *out: free with fpd_checkpoint_tensors_free (also after a failure).
 * Errors: INVALID_ARG (see fpd_table_meta_to_json), NOMEM. */
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
 * without free/1 refuses the file through "fpd.extensions" (UNSUPPORTED). */
#define FPD_EXTENSION_FREE "free/1"
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
 * row blocks (time O(N D k r^2)). Errors: FORMAT (naming the tensor and the element,
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

#ifdef __cplusplus
}
#endif
#endif /* FPD_FORMATS_H */
