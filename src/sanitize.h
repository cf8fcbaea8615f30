/*
 * What sanitizer builds (./configure --enable-sanitizers, the fuzz targets)
 * need from the code: workers leave through _exit, which skips the exit-time
 * leak check, so san_exit runs it first. Outside those builds it is _exit.
 */
#ifndef EVENTODB_SANITIZE_H
#define EVENTODB_SANITIZE_H

#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define SAN_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(leak_sanitizer)
#define SAN_LSAN 1
#endif
#endif

#ifdef SAN_LSAN
#include <sanitizer/allocator_interface.h>
#include <sanitizer/lsan_interface.h>
#endif

/* _exit(rc), after a leak check where LeakSanitizer is linked in (a leak
 * makes the process exit with LSan's exit code instead). */
static inline void __attribute__((noreturn))
san_exit(int rc)
{
#ifdef SAN_LSAN
	__lsan_do_leak_check();
#endif
	_exit(rc);
}

#endif
