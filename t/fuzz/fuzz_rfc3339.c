/*
 * RFC 3339 (lib/rfc3339.c): whatever parses formats to the canonical UTC
 * form, which parses back to the same instant; and any instant (the first
 * 8 bytes as microseconds) formats to text that parses back to it when its
 * year has four digits (the parser takes nothing else).
 */
#include <stdbool.h>
#include <string.h>

#include "evlib.h"
#include "fuzz.h"

/* YYYY-MM-DDTHH:MM:SS[.f]Z with 1 to 6 fraction digits, no trailing zero. */
static bool
canonical(const char *s, size_t n)
{
	static const char shape[] = "dddd-dd-ddTdd:dd:dd";
	size_t i;

	if (n < 20 || s[n - 1] != 'Z')
		return false;
	for (i = 0; i < 19; i++)
		if (shape[i] == 'd' ? !(s[i] >= '0' && s[i] <= '9') : s[i] != shape[i])
			return false;
	if (n == 20)
		return true;
	if (s[19] != '.' || n < 22 || n > 27 || s[n - 2] == '0')
		return false;
	for (i = 20; i < n - 1; i++)
		if (!(s[i] >= '0' && s[i] <= '9'))
			return false;
	return true;
}

static void
round_trip(int64_t us)
{
	char buf[RFC3339_BUFLEN];
	size_t n = rfc3339_format_us(us, buf);
	int64_t back;

	FUZZ_CHECK(n == strlen(buf) && n < RFC3339_BUFLEN);
	if (buf[0] == '-' || n < 5 || buf[4] != '-')
		return; /* year outside 0000..9999 */
	FUZZ_CHECK(canonical(buf, n));
	FUZZ_CHECK(rfc3339_parse(buf, n, false, &back) == 0);
	FUZZ_CHECK(back == us);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int64_t us, us2;
	bool allow_date = size > 0 && (data[0] & 1);

	if (rfc3339_parse((const char *)data, size, allow_date, &us) == 0) {
		/* a bare date only when allowed, and then it is midnight */
		if (size == 10)
			FUZZ_CHECK(allow_date && us % 86400000000 == 0);
		round_trip(us);
		FUZZ_CHECK(rfc3339_parse((const char *)data, size, true, &us2) == 0 && us2 == us);
	}
	if (size >= 8) {
		memcpy(&us, data, 8);
		round_trip(us);
		char buf[RFC3339_BUFLEN];
		int64_t sec = us / 1000000;
		size_t n = rfc3339_format_sec(sec, buf), m;

		FUZZ_CHECK(n == strlen(buf));
		m = rfc3339_format_ns(sec, (long)(us % 1000000000), buf);
		FUZZ_CHECK(m == strlen(buf) && m < RFC3339_BUFLEN);
	}
	return 0;
}
