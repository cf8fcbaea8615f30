/* Merging gperftools CPU profiles of several workers into one file that
 * google-pprof reads (profile_merge.c). */
#ifndef EVENTODB_PROFILE_MERGE_H
#define EVENTODB_PROFILE_MERGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* One input profile in memory (data aligned for machine words, as malloc gives). */
struct profile_blob {
	const char *name; /* for error messages */
	void *data;
	size_t len;
};

struct profile_merge_result {
	bool maps_agree;    /* every input's executable mappings matched the first's */
	uint32_t relocated; /* mappings whose PCs were moved */
	int64_t records;    /* sample records written */
	int64_t samples;    /* their summed counts */
	int64_t period_us;  /* sampling period */
};

/* Writes the merge of n profiles to out. 0, or -1 with err. */
int profile_merge_mem(const struct profile_blob *in, size_t n, FILE *out, struct profile_merge_result *res, char *err,
                      size_t errlen);
/* The same for files; out is written through a temporary file and renamed. */
int profile_merge_files(const char *const *inputs, size_t n, const char *out, struct profile_merge_result *res,
                        char *err, size_t errlen);

#endif
