/*
 * Shared by the libFuzzer targets (make fuzz): each target is one
 * t/fuzz/fuzz_NAME.c defining LLVMFuzzerTestOneInput, with its seed corpus
 * in t/fuzz/corpus/NAME/. A broken property aborts with the reason, and
 * libFuzzer saves the input.
 */
#ifndef EVENTODB_FUZZ_H
#define EVENTODB_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                                               \
	do {                                                                                                           \
		if (!(cond)) {                                                                                         \
			fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, #cond);                    \
			abort();                                                                                       \
		}                                                                                                      \
	} while (0)

#endif
