/*
 * pipe.h - "-" as a file name in the fpd tools: standard input for readers
 * (fpd-inspect, fpd-convert, fpd-compress read a piped checkpoint) and standard output
 * for writers where a file is one stream (fpd-convert -o -). Not library API.
 */
#ifndef FPD_PIPE_H
#define FPD_PIPE_H

#include "tools/cli.h"

/* Open path as fpd_input_open does; "-" reads standard input to its end into memory
 * (*hold, freed with free after fpd_input_free) and opens that (safetensors, or .npy
 * by its magic; messages name it "-"). *hold is NULL for a file. Errors: as the
 * readers; IO (standard input unreadable), NOMEM. */
enum fpd_status pipe_input_open(const char *path, struct fpd_input *in, void **hold, struct fpd_error *err);

/* A private temporary folder for an output that goes to standard output: *dir (free)
 * and *path = "<dir>/<base>" (free). False (message printed) on failure. */
bool pipe_tmp_output(const char *base, char **dir, char **path);
/* Copy the file at path to standard output, then remove it and its folder dir.
 * False (message printed) when writing fails. */
bool pipe_send_and_remove(const char *path, const char *dir);

#endif
