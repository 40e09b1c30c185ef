/*
 * formats-impl.h - private helpers shared by the readers in formats/. Not API.
 */
#ifndef FPD_FORMATS_IMPL_H
#define FPD_FORMATS_IMPL_H

#include "formats/fpd-formats.h"
#include "lib/fpd-impl.h"

#include <jansson.h>

/* Open path read-only, check it is a regular file, and map it (PROT_READ,
 * MAP_PRIVATE). *map is NULL for an empty file (0 bytes cannot be mapped); *size
 * is the file's length. Release with fpd__unmap_file. Errors: IO with the path and
 * the system's reason (cannot open, cannot stat, not a regular file, too large,
 * cannot mmap). */
enum fpd_status fpd__map_file(const char *path, void **map, size_t *size, struct fpd_error *err);
/* munmap; NULL is a no-op. */
void fpd__unmap_file(void *map, size_t size);

/* Atomic output (both writers). The data goes to an unnamed file in the target's
 * folder (O_TMPFILE, mode 0666 less the umask: mkstemp's 0600 is wrong for a
 * checkpoint others read), so a process killed even by SIGKILL leaves nothing; it
 * is fsync'ed and published by linkat (never replacing), or with
 * FPD_WRITE_OVERWRITE linked under a temporary name and rename()d onto path; then
 * the folder is fsync'ed (best effort: logged, since path is complete by then).
 * Where O_TMPFILE or /proc is missing (or fpd__atomic_named_only is set), the
 * temporary file is named "<dir>/.<base>.tmp-XXXXXX" (created O_EXCL), flock'ed
 * while it exists, listed for fpd_write_remove_temporaries, and published by
 * rename() or renameat2(RENAME_NOREPLACE) (link+unlink where the file system
 * lacks it). fpd__atomic_open first removes stale temporaries of the same target
 * (unlocked and untouched for 2 s: their writer was killed), refuses an existing
 * path early (without FPD_WRITE_OVERWRITE) and a path ending in '/'. On any
 * failure, fpd__atomic_abort removes the temporary file; path is untouched. */
struct fpd__atomic_file {
    const char *path;
    char *tmp, *dir;
    int fd;
    bool made;    /* tmp exists under its name */
    bool unnamed; /* fd is an O_TMPFILE file */
};
/* Tests: behave as on a system without O_TMPFILE. */
extern bool fpd__atomic_named_only;
enum fpd_status fpd__atomic_open(const char *path, unsigned flags, struct fpd__atomic_file *f, struct fpd_error *err);
enum fpd_status fpd__atomic_write(struct fpd__atomic_file *f, const void *buf, size_t n, struct fpd_error *err);
/* fsync, close, publish; releases f (no abort needed after it, success or not). */
enum fpd_status fpd__atomic_commit(struct fpd__atomic_file *f, unsigned flags, struct fpd_error *err);
/* Close and remove the temporary file, free f's buffers; safe after commit and on a
 * zeroed f. */
void fpd__atomic_abort(struct fpd__atomic_file *f);

/* What a file that is not safetensors looks like, from its first bytes and its name:
 * "a PyTorch checkpoint (zip archive written by torch.save)", "a GGUF file", ... or
 * NULL when nothing is recognized. For "not a safetensors file (looks like ...)". */
const char *fpd__format_guess(const unsigned char *b, size_t n, const char *path);

/* "an object", "an array", "a string", "an integer", ... for messages. */
const char *fpd__json_type_name(const json_t *j);

#endif
