/*
 * RFC 3339 timestamps in UTC: formatting with trimmed fractions (message
 * times, createdAt, lastActivity) and parsing with offsets, independent of
 * the TZ environment. Calendar arithmetic is proleptic Gregorian.
 */
#include <stdio.h>
#include <time.h>

#include "evlib.h"

/* Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/* Civil date of a day count since 1970-01-01. */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
	int64_t era, doe, yoe, doy, mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
	*m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
	*y = yoe + era * 400 + (*m <= 2);
}

/* Floor division and matching non-negative remainder. */
static int64_t floor_divmod(int64_t a, int64_t b, int64_t *rem)
{
	int64_t q = a / b, r = a % b;

	if (r < 0) {
		r += b;
		q--;
	}
	*rem = r;
	return q;
}

/*
 * Writes the date and time of unix_sec, then ".fraction" when frac is
 * nonzero (digits wide, trailing zeros trimmed), then 'Z'.
 */
static size_t format_time(int64_t unix_sec, long frac, int digits, char *buf)
{
	int64_t secs, days, year;
	unsigned mon, day;
	char fbuf[16] = "";
	int n;

	days = floor_divmod(unix_sec, 86400, &secs);
	civil_from_days(days, &year, &mon, &day);
	if (frac > 0) {
		int len;

		fbuf[0] = '.';
		snprintf(fbuf + 1, sizeof fbuf - 1, "%0*ld", digits, frac);
		len = digits + 1;
		while (fbuf[len - 1] == '0')
			len--;
		fbuf[len] = '\0';
	}
	/* Years below 0 get a '-' and at least four digits, as Go prints them. */
	n = snprintf(buf, RFC3339_BUFLEN, "%s%04lld-%02u-%02uT%02d:%02d:%02d%sZ",
		     year < 0 ? "-" : "",
		     year < 0 ? -(long long)year : (long long)year, mon, day,
		     (int)(secs / 3600), (int)(secs / 60 % 60), (int)(secs % 60), fbuf);
	if (n < 0)
		n = 0;
	return (size_t)n < RFC3339_BUFLEN ? (size_t)n : RFC3339_BUFLEN - 1;
}

size_t rfc3339_format_us(int64_t unix_us, char *buf)
{
	int64_t us;
	int64_t sec = floor_divmod(unix_us, 1000000, &us);

	return format_time(sec, (long)us, 6, buf);
}

size_t rfc3339_format_ns(int64_t sec, long nsec, char *buf)
{
	int64_t ns;

	/* Normalise an out-of-range nsec into the seconds (nsec stays >= 0). */
	sec += floor_divmod(nsec, 1000000000, &ns);
	return format_time(sec, (long)ns, 9, buf);
}

size_t rfc3339_format_sec(int64_t unix_sec, char *buf)
{
	return format_time(unix_sec, 0, 0, buf);
}

static bool is_leap(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned days_in_month(int64_t y, unsigned m)
{
	static const unsigned dim[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };

	return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

/* Parses exactly n decimal digits into *v; false if any is not a digit. */
static bool digits(const char *s, size_t n, int *v)
{
	size_t i;

	*v = 0;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		*v = *v * 10 + (s[i] - '0');
	}
	return true;
}

/* YYYY-MM-DD at s (at least 10 chars); days since the epoch into *days. */
static bool parse_date(const char *s, int64_t *days)
{
	int y, m, d;

	if (!digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &m) || s[7] != '-' ||
	    !digits(s + 8, 2, &d))
		return false;
	if (m < 1 || m > 12 || d < 1 || (unsigned)d > days_in_month(y, (unsigned)m))
		return false;
	*days = days_from_civil(y, (unsigned)m, (unsigned)d);
	return true;
}

int rfc3339_parse(const char *s, size_t len, bool allow_date, int64_t *unix_us)
{
	int64_t days, sec;
	int hh, mm, ss, oh, om;
	long us = 0;
	size_t i;

	if (len < 10 || !parse_date(s, &days))
		return -1;
	if (len == 10) {
		if (!allow_date)
			return -1;
		*unix_us = days * 86400 * 1000000;
		return 0;
	}
	if (len < 20 || (s[10] != 'T' && s[10] != 't') || !digits(s + 11, 2, &hh) ||
	    s[13] != ':' || !digits(s + 14, 2, &mm) || s[16] != ':' || !digits(s + 17, 2, &ss))
		return -1;
	if (hh > 23 || mm > 59 || ss > 59)
		return -1;
	i = 19;
	if (s[i] == '.') {
		size_t start = ++i;
		long scale = 100000;

		/* Any number of digits, as Go accepts; kept to microseconds. */
		while (i < len && s[i] >= '0' && s[i] <= '9') {
			us += (s[i] - '0') * scale;
			scale /= 10;
			i++;
		}
		if (i == start)
			return -1;
	}
	sec = days * 86400 + hh * 3600 + mm * 60 + ss;
	if (len - i == 1 && s[i] == 'Z') {
		/* UTC */
	} else if (len - i == 6 && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':' &&
		   digits(s + i + 1, 2, &oh) && digits(s + i + 4, 2, &om) && oh <= 23 &&
		   om <= 59) {
		int off = oh * 3600 + om * 60;

		/* Local time minus its offset is UTC. */
		sec += s[i] == '+' ? -off : off;
	} else {
		return -1;
	}
	*unix_us = sec * 1000000 + us;
	return 0;
}

int64_t now_unix_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
