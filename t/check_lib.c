/*
 * Check unit tests for lib/ (evlib.h): encodings, digests, UUIDs, RFC 3339,
 * stream names and hash_64, UTF-8 and tokens.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "evlib.h"

#define S(lit) (lit), (sizeof(lit) - 1)

/* ---- base64url ---------------------------------------------------------- */

START_TEST(test_b64url_vectors)
{
	static const struct {
		const char *raw, *enc;
	} v[] = {
		{ "", "" },
		{ "f", "Zg" },
		{ "fo", "Zm8" },
		{ "foo", "Zm9v" },
		{ "foob", "Zm9vYg" },
		{ "fooba", "Zm9vYmE" },
		{ "foobar", "Zm9vYmFy" },
		{ "default", "ZGVmYXVsdA" },
		{ "ab?", "YWI_" },
		{ "\xfb\xff", "-_8" },
	};
	char enc[64];
	uint8_t dec[64];

	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		size_t n = strlen(v[i].raw);
		size_t m = b64url_encode(v[i].raw, n, enc);

		ck_assert_uint_eq(m, B64URL_ENCLEN(n));
		ck_assert_str_eq(enc, v[i].enc);
		ck_assert_int_eq(b64url_decode(enc, m, dec), (long)n);
		ck_assert(memcmp(dec, v[i].raw, n) == 0);
	}
}
END_TEST

START_TEST(test_b64url_roundtrip_all_lengths)
{
	uint8_t raw[300], dec[300];
	char enc[B64URL_ENCLEN(300) + 1];

	for (size_t i = 0; i < sizeof raw; i++)
		raw[i] = (uint8_t)(i * 37 + 11);
	for (size_t n = 0; n <= sizeof raw; n++) {
		size_t m = b64url_encode(raw, n, enc);

		ck_assert_uint_eq(m, strlen(enc));
		ck_assert_int_eq(b64url_decode(enc, m, dec), (long)n);
		ck_assert(memcmp(raw, dec, n) == 0);
	}
}
END_TEST

START_TEST(test_b64url_nonstrict_and_bad)
{
	uint8_t dec[16];

	/* "Zh" has nonzero trailing bits but still decodes to "f". */
	ck_assert_int_eq(b64url_decode(S("Zh"), dec), 1);
	ck_assert_int_eq(dec[0], 'f');
	ck_assert_int_eq(b64url_decode(S("Zm9"), dec), 2);
	ck_assert_int_eq(b64url_decode(S("Zm+v"), dec), -1);
	ck_assert_int_eq(b64url_decode(S("Zm/v"), dec), -1);
	ck_assert_int_eq(b64url_decode(S("Zg=="), dec), -1);
	ck_assert_int_eq(b64url_decode(S("Zg="), dec), -1);
	ck_assert_int_eq(b64url_decode(S("Zm9 "), dec), -1);
	ck_assert_int_eq(b64url_decode(S("Zm\n9v"), dec), -1);
	ck_assert_int_eq(b64url_decode("Zm\0v", 4, dec), -1);
	ck_assert_int_eq(b64url_decode(S("Z"), dec), -1);
	ck_assert_int_eq(b64url_decode(S("Zm9vY"), dec), -1);
	ck_assert_int_eq(b64url_decode(S(""), dec), 0);
}
END_TEST

/* ---- hex ---------------------------------------------------------------- */

START_TEST(test_hex)
{
	char out[16];
	uint8_t dec[8];

	hex_encode("\x00\x01\xab\xff", 4, out);
	ck_assert_str_eq(out, "0001abff");
	hex_encode("", 0, out);
	ck_assert_str_eq(out, "");
	ck_assert_int_eq(hex_decode(S("0001aBFf"), dec), 4);
	ck_assert(memcmp(dec, "\x00\x01\xab\xff", 4) == 0);
	ck_assert_int_eq(hex_decode(S(""), dec), 0);
	ck_assert_int_eq(hex_decode(S("abc"), dec), -1);
	ck_assert_int_eq(hex_decode(S("0g"), dec), -1);
	ck_assert_int_eq(hex_decode(S("g0"), dec), -1);
	ck_assert_int_eq(hex_decode(S(" 0"), dec), -1);
	ck_assert_int_eq(hex_decode(S("0x"), dec), -1);
}
END_TEST

/* ---- digests ------------------------------------------------------------ */

START_TEST(test_sha256)
{
	uint8_t d[32];
	char hex[65];

	digest_sha256(S("abc"), d);
	hex_encode(d, 32, hex);
	ck_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	digest_sha256_hex(S("abc"), hex);
	ck_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	digest_sha256_hex(S(""), hex);
	ck_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	digest_sha256_hex(S("eventodb-test-token:default"), hex);
	ck_assert_str_eq(hex, "9e209a53612574dc6f2c3a019e99cf8e5893924d83a0866eb359f386653a406e");
}
END_TEST

START_TEST(test_md5)
{
	uint8_t d[16];
	char hex[33];

	digest_md5(S("abc"), d);
	hex_encode(d, 16, hex);
	ck_assert_str_eq(hex, "900150983cd24fb0d6963f7d28e17f72");
	digest_md5(S(""), d);
	hex_encode(d, 16, hex);
	ck_assert_str_eq(hex, "d41d8cd98f00b204e9800998ecf8427e");
}
END_TEST

START_TEST(test_digest_equal_and_random)
{
	uint8_t a[32], b[32];

	ck_assert(digest_equal("abcd", "abcd", 4));
	ck_assert(!digest_equal("abcd", "abce", 4));
	ck_assert(!digest_equal("xbcd", "abcd", 4));
	ck_assert(digest_equal("a", "b", 0));
	ck_assert_int_eq(random_bytes(a, sizeof a), 0);
	ck_assert_int_eq(random_bytes(b, sizeof b), 0);
	ck_assert(!digest_equal(a, b, sizeof a));
	ck_assert_int_eq(random_bytes(a, 0), 0);
}
END_TEST

/* ---- UUID --------------------------------------------------------------- */

static bool is_lower_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/* The 48-bit millisecond timestamp of a v7 UUID string. */
static uint64_t uuid_v7_ms(const char *u)
{
	char hex[13];
	uint8_t b[6];
	uint64_t ms = 0;

	memcpy(hex, u, 8);
	memcpy(hex + 8, u + 9, 4);
	hex[12] = '\0';
	ck_assert_int_eq(hex_decode(hex, 12, b), 6);
	for (int i = 0; i < 6; i++)
		ms = ms << 8 | b[i];
	return ms;
}

START_TEST(test_uuid_v7_format)
{
	char u[UUID_STRLEN + 1], canon[UUID_STRLEN + 1], prev[UUID_STRLEN + 1] = "";
	uint64_t last = 0;
	int64_t before = now_unix_us() / 1000;

	for (int n = 0; n < 1000; n++) {
		uuid_v7(u);
		ck_assert_uint_eq(strlen(u), UUID_STRLEN);
		for (int i = 0; i < UUID_STRLEN; i++) {
			if (i == 8 || i == 13 || i == 18 || i == 23)
				ck_assert_int_eq(u[i], '-');
			else
				ck_assert_msg(is_lower_hex(u[i]), "bad char in %s", u);
		}
		ck_assert_int_eq(u[14], '7');
		ck_assert_msg(strchr("89ab", u[19]) != NULL, "bad variant in %s", u);
		ck_assert_int_eq(uuid_canonical(u, UUID_STRLEN, canon), 0);
		ck_assert_str_eq(canon, u);
		ck_assert_str_ne(u, prev);
		ck_assert_uint_ge(uuid_v7_ms(u), last);
		last = uuid_v7_ms(u);
		strcpy(prev, u);
	}
	ck_assert_uint_ge(uuid_v7_ms(u), (uint64_t)before);
	ck_assert_uint_le(uuid_v7_ms(u), (uint64_t)(now_unix_us() / 1000));
}
END_TEST

START_TEST(test_uuid_canonical_accepts)
{
	static const char *const ok[] = {
		"6ba7b810-9dad-11d1-80b4-00c04fd430c8",
		"6BA7B810-9DAD-11D1-80B4-00C04FD430C8",
		"6Ba7B810-9dAd-11D1-80b4-00C04fd430C8",
		"{6ba7b810-9dad-11d1-80b4-00c04fd430c8}",
		"urn:uuid:6ba7b810-9dad-11d1-80b4-00c04fd430c8",
		"URN:UUID:6BA7B810-9DAD-11D1-80B4-00C04FD430C8",
		"6ba7b8109dad11d180b400c04fd430c8",
		"6BA7B8109DAD11D180B400C04FD430C8",
	};
	char out[UUID_STRLEN + 1];

	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		memset(out, 'x', sizeof out);
		ck_assert_msg(uuid_canonical(ok[i], strlen(ok[i]), out) == 0, "rejected %s", ok[i]);
		ck_assert_str_eq(out, "6ba7b810-9dad-11d1-80b4-00c04fd430c8");
	}
	ck_assert_int_eq(uuid_canonical(S("00000000-0000-0000-0000-000000000000"), out), 0);
	ck_assert_str_eq(out, "00000000-0000-0000-0000-000000000000");
}
END_TEST

START_TEST(test_uuid_canonical_rejects)
{
	static const char *const bad[] = {
		"",
		"not-a-uuid",
		"6ba7b810-9dad-11d1-80b4-00c04fd430c",
		"6ba7b810-9dad-11d1-80b4-00c04fd430c8a",
		"6ba7b810-9dad-11d1-80b4-00c04fd430cg",
		"6ba7b810_9dad-11d1-80b4-00c04fd430c8",
		"6ba7b8109-dad-11d1-80b4-00c04fd430c8",
		"6ba7b810-9dad-11d1-80b4+00c04fd430c8",
		"(6ba7b810-9dad-11d1-80b4-00c04fd430c8)",
		"{6ba7b810-9dad-11d1-80b4-00c04fd430c8",
		"urn:uuix:6ba7b810-9dad-11d1-80b4-00c04fd430c8",
		"uuid:6ba7b810-9dad-11d1-80b4-00c04fd430c8",
		"6ba7b8109dad11d180b400c04fd430cz",
		"6ba7b8109dad11d180b400c04fd430c",
		" 6ba7b810-9dad-11d1-80b4-00c04fd430c8",
		"6ba7b810-9dad-11d1-80b4-00c04fd430c8 ",
		"+ba7b810-9dad-11d1-80b4-00c04fd430c8",
	};
	char out[UUID_STRLEN + 1];

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		ck_assert_msg(uuid_canonical(bad[i], strlen(bad[i]), out) == -1, "accepted %s",
			      bad[i]);
	/* An embedded NUL is not a hex digit. */
	ck_assert_int_eq(uuid_canonical("6ba7b810-9dad-11d1-80b4-00c04fd430\0" "8", 36, out), -1);
}
END_TEST

/* ---- RFC 3339 ----------------------------------------------------------- */

#define T_20240115_103045 INT64_C(1705314645)

START_TEST(test_rfc3339_format_us)
{
	char buf[RFC3339_BUFLEN];
	int64_t base = INT64_C(1705314605) * 1000000; /* 2024-01-15T10:30:05Z */

	ck_assert_uint_eq(rfc3339_format_us(base, buf), 20);
	ck_assert_str_eq(buf, "2024-01-15T10:30:05Z");
	rfc3339_format_us(base + 123456, buf);
	ck_assert_str_eq(buf, "2024-01-15T10:30:05.123456Z");
	rfc3339_format_us(base + 120000, buf);
	ck_assert_str_eq(buf, "2024-01-15T10:30:05.12Z");
	rfc3339_format_us(base + 100000, buf);
	ck_assert_str_eq(buf, "2024-01-15T10:30:05.1Z");
	rfc3339_format_us(base + 1, buf);
	ck_assert_str_eq(buf, "2024-01-15T10:30:05.000001Z");
	ck_assert_uint_eq(rfc3339_format_us(base + 10, buf), 26);
	ck_assert_str_eq(buf, "2024-01-15T10:30:05.00001Z");
	rfc3339_format_us(0, buf);
	ck_assert_str_eq(buf, "1970-01-01T00:00:00Z");
	rfc3339_format_us(INT64_C(1709164800) * 1000000, buf);
	ck_assert_str_eq(buf, "2024-02-29T00:00:00Z");
	rfc3339_format_us(INT64_C(951868800) * 1000000 - 1, buf);
	ck_assert_str_eq(buf, "2000-02-29T23:59:59.999999Z");
}
END_TEST

START_TEST(test_rfc3339_format_ns_sec)
{
	char buf[RFC3339_BUFLEN];

	ck_assert_uint_eq(rfc3339_format_ns(T_20240115_103045, 123456789, buf), 30);
	ck_assert_str_eq(buf, "2024-01-15T10:30:45.123456789Z");
	rfc3339_format_ns(T_20240115_103045, 120000000, buf);
	ck_assert_str_eq(buf, "2024-01-15T10:30:45.12Z");
	rfc3339_format_ns(T_20240115_103045, 1, buf);
	ck_assert_str_eq(buf, "2024-01-15T10:30:45.000000001Z");
	rfc3339_format_ns(T_20240115_103045, 0, buf);
	ck_assert_str_eq(buf, "2024-01-15T10:30:45Z");
	rfc3339_format_ns(T_20240115_103045, 1500000000, buf);
	ck_assert_str_eq(buf, "2024-01-15T10:30:46.5Z");
	ck_assert_uint_eq(rfc3339_format_sec(T_20240115_103045, buf), 20);
	ck_assert_str_eq(buf, "2024-01-15T10:30:45Z");
	rfc3339_format_sec(INT64_C(253402300799), buf);
	ck_assert_str_eq(buf, "9999-12-31T23:59:59Z");
}
END_TEST

START_TEST(test_rfc3339_format_extremes)
{
	char buf[RFC3339_BUFLEN];
	size_t n;

	rfc3339_format_us(-1, buf);
	ck_assert_str_eq(buf, "1969-12-31T23:59:59.999999Z");
	rfc3339_format_sec(-1, buf);
	ck_assert_str_eq(buf, "1969-12-31T23:59:59Z");
	rfc3339_format_ns(0, -1, buf);
	ck_assert_str_eq(buf, "1969-12-31T23:59:59.999999999Z");
	/* Must not crash or overflow the buffer. */
	n = rfc3339_format_us(INT64_MIN, buf);
	ck_assert_uint_eq(n, strlen(buf));
	ck_assert_uint_lt(n, RFC3339_BUFLEN);
	n = rfc3339_format_us(INT64_MAX, buf);
	ck_assert_uint_eq(n, strlen(buf));
	ck_assert_str_eq(buf, "294247-01-10T04:00:54.775807Z");
	n = rfc3339_format_sec(INT64_MAX / 4, buf);
	ck_assert_uint_eq(n, strlen(buf));
	n = rfc3339_format_ns(-INT64_MAX / 4, 999999999, buf);
	ck_assert_uint_eq(n, strlen(buf));
	ck_assert_uint_lt(n, RFC3339_BUFLEN);
}
END_TEST

START_TEST(test_rfc3339_parse_ok)
{
	static const struct {
		const char *s;
		int64_t us;
	} v[] = {
		{ "2024-01-15T10:30:45.123456Z", T_20240115_103045 * 1000000 + 123456 },
		{ "2024-01-15T10:30:45Z", T_20240115_103045 * 1000000 },
		{ "2024-01-15t10:30:45Z", T_20240115_103045 * 1000000 },
		{ "2024-01-15T10:30:45.1Z", T_20240115_103045 * 1000000 + 100000 },
		{ "2024-01-15T10:30:45.12Z", T_20240115_103045 * 1000000 + 120000 },
		{ "2024-01-15T10:30:45.123456789Z", T_20240115_103045 * 1000000 + 123456 },
		{ "2024-01-15T10:30:45.000001Z", T_20240115_103045 * 1000000 + 1 },
		{ "2024-01-15T10:30:45.0000009Z", T_20240115_103045 * 1000000 },
		{ "2024-01-15T10:30:45.123456789123Z", T_20240115_103045 * 1000000 + 123456 },
		{ "2024-01-15T12:30:45+02:00", T_20240115_103045 * 1000000 },
		{ "2024-01-15T12:30:45.5+02:00", T_20240115_103045 * 1000000 + 500000 },
		{ "2024-01-15T05:00:45-05:30", T_20240115_103045 * 1000000 },
		{ "2024-01-15T10:30:45+00:00", T_20240115_103045 * 1000000 },
		{ "2024-01-15T10:30:45-00:00", T_20240115_103045 * 1000000 },
		{ "2024-01-16T00:30:45+14:00", T_20240115_103045 * 1000000 },
		{ "1970-01-01T00:00:00Z", 0 },
		{ "1969-12-31T23:59:59Z", -1000000 },
		{ "2024-02-29T00:00:00Z", INT64_C(1709164800) * 1000000 },
		{ "2000-02-29T23:59:59Z", (INT64_C(951868800) - 1) * 1000000 },
	};
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		int64_t us = -42;

		ck_assert_msg(rfc3339_parse(v[i].s, strlen(v[i].s), false, &us) == 0, "rejected %s",
			      v[i].s);
		ck_assert_msg(us == v[i].us, "%s: got %lld want %lld", v[i].s, (long long)us,
			      (long long)v[i].us);
	}
}
END_TEST

START_TEST(test_rfc3339_parse_date)
{
	int64_t us = 7;

	ck_assert_int_eq(rfc3339_parse(S("2024-01-15"), false, &us), -1);
	ck_assert_int_eq(rfc3339_parse(S("2024-01-15"), true, &us), 0);
	ck_assert_int_eq(us, INT64_C(1705276800) * 1000000);
	ck_assert_int_eq(rfc3339_parse(S("1970-01-01"), true, &us), 0);
	ck_assert_int_eq(us, 0);
	ck_assert_int_eq(rfc3339_parse(S("2024-02-30"), true, &us), -1);
	ck_assert_int_eq(rfc3339_parse(S("2024-1-15"), true, &us), -1);
	ck_assert_int_eq(rfc3339_parse(S("2024-01-15T"), true, &us), -1);
	ck_assert_int_eq(rfc3339_parse(S("2024-01-15 "), true, &us), -1);
	ck_assert_int_eq(rfc3339_parse(S("2024-01-15Z"), true, &us), -1);
	/* A full timestamp is still fine with allow_date. */
	ck_assert_int_eq(rfc3339_parse(S("2024-01-15T10:30:45Z"), true, &us), 0);
	ck_assert_int_eq(us, T_20240115_103045 * 1000000);
}
END_TEST

START_TEST(test_rfc3339_parse_rejects)
{
	static const char *const bad[] = {
		"",
		"garbage",
		"2024-01-15T10:30:45",
		"2024-01-15T10:30:45z",
		"2024-01-15T10:30:45ZZ",
		"2024-01-15T10:30:45Z ",
		" 2024-01-15T10:30:45Z",
		"2024-01-15 10:30:45Z",
		"2024-01-15T10:30:45.Z",
		"2024-01-15T10:30:45.123456",
		"2024-01-15T10:30:45.12a4Z",
		"2024-01-15T10:30:45,123Z",
		"2024-01-15T10:30:45+0200",
		"2024-01-15T10:30:45+02",
		"2024-01-15T10:30:45+02:00:00",
		"2024-01-15T10:30:45+24:00",
		"2024-01-15T10:30:45+02:60",
		"2024-01-15T10:30:45 02:00",
		"2024-13-15T10:30:45Z",
		"2024-00-15T10:30:45Z",
		"2024-01-00T10:30:45Z",
		"2024-01-32T10:30:45Z",
		"2023-02-29T10:30:45Z",
		"1900-02-29T10:30:45Z",
		"2024-04-31T10:30:45Z",
		"2024-01-15T24:00:00Z",
		"2024-01-15T10:60:00Z",
		"2024-01-15T10:30:60Z",
		"2024-01-15T1:30:45Z",
		"2024/01/15T10:30:45Z",
		"24-01-15T10:30:45Z",
		"+024-01-15T10:30:45Z",
		"2024-01-15T10:30:45.123456789Zjunk",
		"2024-01-15",
	};
	int64_t us;

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		ck_assert_msg(rfc3339_parse(bad[i], strlen(bad[i]), false, &us) == -1,
			      "accepted %s", bad[i]);
	/* Length is honoured: trailing bytes beyond len are not read. */
	ck_assert_int_eq(rfc3339_parse("2024-01-15T10:30:45Zjunk", 20, false, &us), 0);
	ck_assert_int_eq(us, T_20240115_103045 * 1000000);
	ck_assert_int_eq(rfc3339_parse("2024-01-15T10:30:45Z", 19, false, &us), -1);
}
END_TEST

START_TEST(test_rfc3339_roundtrip_days)
{
	char buf[RFC3339_BUFLEN];

	/* Every day from 0000-03-01 to about 9999: format, then parse back.
	 * Plain ifs in the loop: every passing ck_assert writes a checkpoint
	 * to Check's pipe, 3.6 million system calls that made this test time
	 * out on a loaded machine. */
	for (int64_t day = -719468; day < 2932896; day += 1) {
		int64_t in = (day * 86400 + 45296) * 1000000 + 789, out = 0;
		size_t n = rfc3339_format_us(in, buf);

		if (rfc3339_parse(buf, n, false, &out) != 0)
			ck_abort_msg("day %lld: %s does not parse", (long long)day, buf);
		if (out != in)
			ck_abort_msg("day %lld: %s parsed as %lld", (long long)day, buf,
				     (long long)out);
	}
}
END_TEST

START_TEST(test_now)
{
	int64_t a = now_unix_us(), b = now_unix_us();

	ck_assert_int_ge(b, a);
	ck_assert_int_gt(a, INT64_C(1700000000) * 1000000);
}
END_TEST

/* ---- stream names ------------------------------------------------------- */

START_TEST(test_sn_parts)
{
	const char *id;
	size_t n;

	ck_assert_uint_eq(sn_category_len(S("account-123+x")), 7);
	ck_assert(sn_id(S("account-123+x"), &id, &n));
	ck_assert_uint_eq(n, 5);
	ck_assert(memcmp(id, "123+x", n) == 0);
	ck_assert(sn_cardinal_id(S("account-123+x"), &id, &n));
	ck_assert_uint_eq(n, 3);
	ck_assert(memcmp(id, "123", n) == 0);

	ck_assert_uint_eq(sn_category_len(S("account")), 7);
	ck_assert(!sn_id(S("account"), &id, &n));
	ck_assert(!sn_cardinal_id(S("account"), &id, &n));
	ck_assert(!sn_cardinal_id(S("account+x"), &id, &n));

	ck_assert_uint_eq(sn_category_len(S("stream-with-many-dashes")), 6);
	ck_assert(sn_id(S("stream-with-many-dashes"), &id, &n));
	ck_assert_uint_eq(n, 16);
	ck_assert(memcmp(id, "with-many-dashes", n) == 0);
	ck_assert(sn_cardinal_id(S("stream-with-many-dashes"), &id, &n));
	ck_assert_uint_eq(n, 16);

	ck_assert_uint_eq(sn_category_len(S("account:command-1")), 15);
	ck_assert(sn_cardinal_id(S("a-1+2+3"), &id, &n));
	ck_assert_uint_eq(n, 1);

	/* "x-" has an empty id; "-x" has an empty category. */
	ck_assert(sn_id(S("x-"), &id, &n));
	ck_assert_uint_eq(n, 0);
	ck_assert(sn_cardinal_id(S("x-+y"), &id, &n));
	ck_assert_uint_eq(n, 0);
	ck_assert_uint_eq(sn_category_len(S("-x")), 0);
	ck_assert_uint_eq(sn_category_len(S("")), 0);
	ck_assert(!sn_id(S(""), &id, &n));
	/* len is honoured, the dash beyond it is not seen. */
	ck_assert(!sn_id("ab-c", 2, &id, &n));
	ck_assert_uint_eq(sn_category_len("ab-c", 2), 2);
}
END_TEST

static const struct {
	const char *v;
	int64_t hash;
	int mod2, mod4;
} hash_vectors[] = {
	{ "123", INT64_C(2318431741638412123), 1, 3 },
	{ "1", INT64_C(-4266524885998034046), 0, 2 },
	{ "2", INT64_C(-4026655064267673757), 1, 1 },
	{ "3", INT64_C(-1383792015730482434), 0, 2 },
	{ "4", INT64_C(-6305049951010035939), 1, 3 },
	{ "account", INT64_C(-2132379389342958165), 1, 1 },
};
#define N_HASH_VECTORS (sizeof hash_vectors / sizeof hash_vectors[0])

START_TEST(test_sn_hash64)
{
	const char *v = hash_vectors[_i].v;

	ck_assert_int_eq(sn_hash64(v, strlen(v)), hash_vectors[_i].hash);
}
END_TEST

START_TEST(test_sn_in_group_vectors)
{
	const char *v = hash_vectors[_i].v;
	char stream[64], retry[64];

	snprintf(stream, sizeof stream, "x-%s", v);
	snprintf(retry, sizeof retry, "x-%s+retry", v);
	for (int64_t m = 0; m < 2; m++) {
		ck_assert(sn_in_group(stream, strlen(stream), m, 2) == (m == hash_vectors[_i].mod2));
		ck_assert(sn_in_group(retry, strlen(retry), m, 2) == (m == hash_vectors[_i].mod2));
	}
	for (int64_t m = 0; m < 4; m++) {
		ck_assert(sn_in_group(stream, strlen(stream), m, 4) == (m == hash_vectors[_i].mod4));
		ck_assert(sn_in_group(retry, strlen(retry), m, 4) == (m == hash_vectors[_i].mod4));
	}
	ck_assert(sn_in_group(stream, strlen(stream), 0, 1));
}
END_TEST

START_TEST(test_sn_in_group_misc)
{
	ck_assert(sn_in_group(S("x-123"), 1, 2));
	ck_assert(!sn_in_group(S("x-123"), 0, 2));
	ck_assert(sn_in_group(S("x-123"), 3, 4));
	ck_assert(sn_in_group(S("x-123+retry"), 3, 4));
	ck_assert(sn_in_group(S("account-123"), 3, 4));
	ck_assert(sn_in_group(S("other:cat-123+a+b"), 3, 4));
	/* No id: no member at all. */
	for (int64_t m = 0; m < 4; m++) {
		ck_assert(!sn_in_group(S("account"), m, 4));
		ck_assert(!sn_in_group(S("account+x"), m, 4));
	}
	ck_assert(!sn_in_group(S("account"), 0, 1));
	/* Out-of-range member or size never matches. */
	ck_assert(!sn_in_group(S("x-123"), 5, 4));
	ck_assert(!sn_in_group(S("x-123"), -1, 4));
	ck_assert(!sn_in_group(S("x-123"), 0, 0));
	ck_assert(!sn_in_group(S("x-123"), 0, -2));
	/* Empty id is an id: exactly one member of each size holds it. */
	for (int64_t size = 1; size <= 7; size++) {
		int hits = 0;

		for (int64_t m = 0; m < size; m++)
			hits += sn_in_group(S("x-"), m, size);
		ck_assert_int_eq(hits, 1);
	}
	/* Sizes near the limits must not trip anything. */
	ck_assert(sn_in_group(S("x-123"), INT64_C(2318431741638412123), INT64_MAX));
	ck_assert(!sn_in_group(S("x-123"), 0, INT64_MAX));
}
END_TEST

/* ---- UTF-8 -------------------------------------------------------------- */

START_TEST(test_utf8)
{
	static const char *const good[] = {
		"",
		"plain ascii",
		"caf\xc3\xa9",
		"\xc2\x80",
		"\xdf\xbf",
		"\xe0\xa0\x80",
		"\xe2\x82\xac",
		"\xed\x9f\xbf",
		"\xee\x80\x80",
		"\xef\xbf\xbf",
		"\xf0\x90\x80\x80",
		"\xf0\x9f\x98\x80 emoji",
		"\xf4\x8f\xbf\xbf",
		"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
	};
	static const char *const bad[] = {
		"\x80",
		"\xbf",
		"a\xc0\x80",
		"\xc1\xbf",
		"\xc3",
		"\xc3\x28",
		"\xe0\x80\x80",
		"\xe0\x9f\xbf",
		"\xed\xa0\x80",
		"\xed\xbf\xbf",
		"\xe2\x82",
		"\xe2\x28\xac",
		"\xe2\x82\x28",
		"\xf0\x80\x80\x80",
		"\xf0\x8f\xbf\xbf",
		"\xf4\x90\x80\x80",
		"\xf5\x80\x80\x80",
		"\xf8\x88\x80\x80\x80",
		"\xff",
		"\xfe",
		"\xf0\x9f\x98",
		"\xf0\x9f\x98\x28",
		"ok\xf0\x9f",
	};

	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
		ck_assert_msg(utf8_valid(good[i], strlen(good[i])), "rejected good[%zu]", i);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		ck_assert_msg(!utf8_valid(bad[i], strlen(bad[i])), "accepted bad[%zu]", i);
	/* NUL is valid UTF-8; length is honoured. */
	ck_assert(utf8_valid("a\0b", 3));
	ck_assert(!utf8_valid("\xe2\x82\xac", 2));
	ck_assert(utf8_valid("\xe2\x82\xac\xff", 3));
}
END_TEST

/* Every cut of a mixed string lands on a character boundary, as late as the
 * budget allows, whether the bytes after the cut are there or not. */
START_TEST(test_utf8_prefix)
{
	const char s[] = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80z\xe4\xb8\x96";
	const size_t len = sizeof(s) - 1;
	const size_t bounds[] = {0, 1, 3, 6, 10, 11, 14};

	for (size_t max = 0; max <= len + 2; max++) {
		size_t r = utf8_prefix(s, len, max), want = 0;

		for (size_t i = 0; i < sizeof bounds / sizeof bounds[0]; i++)
			if (bounds[i] <= max)
				want = bounds[i];
		ck_assert_msg(r == want, "max %zu: %zu, want %zu", max, r, want);
		ck_assert(utf8_valid(s, r));
		/* already cut by snprintf: only the first max bytes exist */
		if (max <= len)
			ck_assert_uint_eq(utf8_prefix(s, max, max), want);
	}
	ck_assert_uint_eq(utf8_prefix("plain", 5, 3), 3);
	/* the formatted form: "x" + the string cut inside the euro sign */
	{
		char buf[6];
		int n = utf8_snprintf(buf, sizeof(buf), "x%s", s);

		ck_assert_int_eq(n, (int)len + 1);
		ck_assert_str_eq(buf, "xa\xc3\xa9");
		ck_assert_int_eq(utf8_snprintf(buf, sizeof(buf), "%s", "ok"), 2);
		ck_assert_str_eq(buf, "ok");
	}
	/* not UTF-8 at all: cut where asked */
	ck_assert_uint_eq(utf8_prefix("\x80\x80\x80\x80\x80", 5, 4), 4);
}
END_TEST

/* ---- tokens ------------------------------------------------------------- */

#define DEFAULT_TOKEN "ns_ZGVmYXVsdA_9e209a53612574dc6f2c3a019e99cf8e5893924d83a0866eb359f386653a406e"
#define HEX64 "9e209a53612574dc6f2c3a019e99cf8e5893924d83a0866eb359f386653a406e"

START_TEST(test_token_parse_ok)
{
	char ns[TOKEN_NS_MAX + 1], err[128] = "";

	ck_assert_int_eq(token_parse(S(DEFAULT_TOKEN), ns, sizeof ns, err, sizeof err), 0);
	ck_assert_str_eq(ns, "default");
	/* Uppercase hex is accepted. */
	ck_assert_int_eq(token_parse(S("ns_ZGVmYXVsdA_9E209A53612574DC6F2C3A019E99CF8E5893924D83A0866EB359F386653A406E"),
				     ns, sizeof ns, err, sizeof err), 0);
	ck_assert_str_eq(ns, "default");
	/* A base64url part containing '_' (namespace "ab?"). */
	ck_assert_int_eq(token_parse(S("ns_YWI__" HEX64), ns, sizeof ns, err, sizeof err), 0);
	ck_assert_str_eq(ns, "ab?");
	/* Non-strict trailing bits. */
	ck_assert_int_eq(token_parse(S("ns_Zh_" HEX64), ns, sizeof ns, err, sizeof err), 0);
	ck_assert_str_eq(ns, "f");
	/* Exactly fits a small buffer. */
	ck_assert_int_eq(token_parse(S(DEFAULT_TOKEN), ns, 8, err, sizeof err), 0);
	ck_assert_str_eq(ns, "default");
}
END_TEST

/* Asserts that tok fails to parse with exactly the given error text. */
static void expect_token_error(const char *tok, size_t len, const char *want)
{
	char ns[TOKEN_NS_MAX + 1], err[160] = "";

	ck_assert_msg(token_parse(tok, len, ns, sizeof ns, err, sizeof err) == -1, "accepted %s",
		      tok);
	ck_assert_str_eq(err, want);
	ck_assert(strncmp(err, "invalid token format: ", 22) == 0);
}

START_TEST(test_token_parse_errors)
{
	char big[512], *p;

	expect_token_error(S(""), "invalid token format: missing 'ns_' prefix");
	expect_token_error(S("ns"), "invalid token format: missing 'ns_' prefix");
	expect_token_error(S("NS_ZGVmYXVsdA_" HEX64), "invalid token format: missing 'ns_' prefix");
	expect_token_error(S("xns_ZGVmYXVsdA_" HEX64), "invalid token format: missing 'ns_' prefix");
	expect_token_error(S("ns_"),
			   "invalid token format: random part must be 64 hex characters, got 0");
	expect_token_error(S("ns_ZGVmYXVsdA" HEX64),
			   "invalid token format: random part must be 64 hex characters, got 74");
	expect_token_error(S("ns_ZGVmYXVsdA_9e209a"),
			   "invalid token format: random part must be 64 hex characters, got 6");
	expect_token_error(S("ns_ZGVmYXVsdA_" HEX64 "0"),
			   "invalid token format: random part must be 64 hex characters, got 65");
	expect_token_error(S("ns_ZGVmYXVsdA_" HEX64 "_"),
			   "invalid token format: random part must be 64 hex characters, got 0");
	expect_token_error(S("ns_ZGVmYXVsdA_9e209a53612574dc6f2c3a019e99cf8e5893924d83a0866eb359f386653a406g"),
			   "invalid token format: random part is not valid hexadecimal");
	expect_token_error(S("ns_ZGVmYXVsdA_9e209a53612574dc6f2c3a019e99cf8e5893924d83a0866eb359f386653a40 e"),
			   "invalid token format: random part is not valid hexadecimal");
	expect_token_error(S("ns_ZGVm+XVsdA_" HEX64),
			   "invalid token format: namespace part is not valid base64url");
	expect_token_error(S("ns_ZGVmYXVsdA==_" HEX64),
			   "invalid token format: namespace part is not valid base64url");
	expect_token_error(S("ns_Z_" HEX64),
			   "invalid token format: namespace part is not valid base64url");
	expect_token_error(S("ns_ZGVmY_" HEX64),
			   "invalid token format: namespace part is not valid base64url");
	expect_token_error(S("ns__" HEX64), "invalid token format: namespace is empty");
	expect_token_error("ns_AA_" HEX64, 70, "invalid token format: namespace contains a NUL byte");

	/* 192 bytes of namespace fit; 195 are too many. */
	p = big;
	memcpy(p, "ns_", 3);
	p += 3;
	for (int i = 0; i < 64; i++, p += 4)
		memcpy(p, "bmFt", 4); /* "nam" */
	*p++ = '_';
	memcpy(p, HEX64, 64);
	p += 64;
	*p = '\0';
	ck_assert_uint_eq(B64URL_ENCLEN(TOKEN_NS_MAX), 256);
	{
		char ns[TOKEN_NS_MAX + 1], err[128];

		ck_assert_msg(token_parse(big, strlen(big), ns, sizeof ns, err, sizeof err) == 0,
			      "%s", err);
		ck_assert_uint_eq(strlen(ns), TOKEN_NS_MAX);
		ck_assert(strncmp(ns, "namnam", 6) == 0);
		/* nscap too small for the same token. */
		ck_assert_int_eq(token_parse(big, strlen(big), ns, TOKEN_NS_MAX, err, sizeof err), -1);
		ck_assert_str_eq(err, "invalid token format: namespace too long");
		ck_assert_int_eq(token_parse(S(DEFAULT_TOKEN), ns, 7, err, sizeof err), -1);
		ck_assert_str_eq(err, "invalid token format: namespace too long");
		ck_assert_int_eq(token_parse(S(DEFAULT_TOKEN), ns, 0, err, sizeof err), -1);
		/* Error text is truncated to errcap; NULL/0 err is allowed. */
		ck_assert_int_eq(token_parse(S("x"), ns, sizeof ns, err, 8), -1);
		ck_assert_str_eq(err, "invalid");
		ck_assert_int_eq(token_parse(S("x"), ns, sizeof ns, NULL, 0), -1);
	}
	memmove(big + 7, big + 3, strlen(big + 3) + 1);
	memcpy(big + 3, "bmFt", 4);
	expect_token_error(big, strlen(big), "invalid token format: namespace too long");
}
END_TEST

START_TEST(test_token_generate)
{
	static const char *const names[] = { "default", "tenant-a", "ab?", "x",
					     "a-very-long-namespace-id-of-fifty-four-characters-ok_" };
	char tok[TOKEN_MAXLEN + 1], tok2[TOKEN_MAXLEN + 1], ns[TOKEN_NS_MAX + 1], err[128];
	char big[TOKEN_NS_MAX + 1];

	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		size_t len;

		token_generate(names[i], tok);
		len = strlen(tok);
		ck_assert_uint_eq(len, 3 + B64URL_ENCLEN(strlen(names[i])) + 1 + 64);
		ck_assert(strncmp(tok, "ns_", 3) == 0);
		ck_assert_int_eq(tok[len - 65], '_');
		for (size_t k = len - 64; k < len; k++)
			ck_assert(is_lower_hex(tok[k]));
		ck_assert_msg(token_parse(tok, len, ns, sizeof ns, err, sizeof err) == 0, "%s: %s",
			      tok, err);
		ck_assert_str_eq(ns, names[i]);
		token_generate(names[i], tok2);
		ck_assert_str_ne(tok, tok2);
	}
	/* The largest namespace fits TOKEN_MAXLEN exactly. */
	memset(big, 'n', TOKEN_NS_MAX);
	big[TOKEN_NS_MAX] = '\0';
	token_generate(big, tok);
	ck_assert_uint_eq(strlen(tok), TOKEN_MAXLEN);
	ck_assert_int_eq(token_parse(tok, strlen(tok), ns, sizeof ns, err, sizeof err), 0);
	ck_assert_str_eq(ns, big);
}
END_TEST

static Suite *lib_suite(void)
{
	Suite *s = suite_create("lib");
	TCase *tc;

	tc = tcase_create("encoding");
	tcase_add_test(tc, test_b64url_vectors);
	tcase_add_test(tc, test_b64url_roundtrip_all_lengths);
	tcase_add_test(tc, test_b64url_nonstrict_and_bad);
	tcase_add_test(tc, test_hex);
	suite_add_tcase(s, tc);

	tc = tcase_create("digest");
	tcase_add_test(tc, test_sha256);
	tcase_add_test(tc, test_md5);
	tcase_add_test(tc, test_digest_equal_and_random);
	suite_add_tcase(s, tc);

	tc = tcase_create("uuid");
	tcase_add_test(tc, test_uuid_v7_format);
	tcase_add_test(tc, test_uuid_canonical_accepts);
	tcase_add_test(tc, test_uuid_canonical_rejects);
	suite_add_tcase(s, tc);

	tc = tcase_create("rfc3339");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_rfc3339_format_us);
	tcase_add_test(tc, test_rfc3339_format_ns_sec);
	tcase_add_test(tc, test_rfc3339_format_extremes);
	tcase_add_test(tc, test_rfc3339_parse_ok);
	tcase_add_test(tc, test_rfc3339_parse_date);
	tcase_add_test(tc, test_rfc3339_parse_rejects);
	tcase_add_test(tc, test_now);
	suite_add_tcase(s, tc);

	/* 3.6 million round trips through the same code: make check-valgrind
	 * leaves out this tag (CK_EXCLUDE_TAGS), where it would take minutes.
	 * About 3 s of CPU; the timeout is wall time, on a shared machine. */
	tc = tcase_create("rfc3339-days");
	tcase_set_tags(tc, "exhaustive");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_rfc3339_roundtrip_days);
	suite_add_tcase(s, tc);

	tc = tcase_create("streamname");
	tcase_add_test(tc, test_sn_parts);
	tcase_add_loop_test(tc, test_sn_hash64, 0, (int)N_HASH_VECTORS);
	tcase_add_loop_test(tc, test_sn_in_group_vectors, 0, (int)N_HASH_VECTORS);
	tcase_add_test(tc, test_sn_in_group_misc);
	suite_add_tcase(s, tc);

	tc = tcase_create("utf8");
	tcase_add_test(tc, test_utf8);
	tcase_add_test(tc, test_utf8_prefix);
	suite_add_tcase(s, tc);

	tc = tcase_create("token");
	tcase_add_test(tc, test_token_parse_ok);
	tcase_add_test(tc, test_token_parse_errors);
	tcase_add_test(tc, test_token_generate);
	suite_add_tcase(s, tc);

	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(lib_suite());
	int failures;

	srunner_run_all(sr, CK_ENV);
	failures = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failures ? 1 : 0;
}
