/*
 * Stream-name helpers following Message DB: category, id and cardinal id of
 * a stream name, hash_64 and consumer-group membership. No allocation.
 */
#include <string.h>

#include "evlib.h"

size_t sn_category_len(const char *s, size_t len)
{
	const char *dash = memchr(s, '-', len);

	return dash ? (size_t)(dash - s) : len;
}

bool sn_id(const char *s, size_t len, const char **id, size_t *idlen)
{
	const char *dash = memchr(s, '-', len);

	if (!dash)
		return false;
	*id = dash + 1;
	*idlen = len - (size_t)(dash - s) - 1;
	return true;
}

bool sn_cardinal_id(const char *s, size_t len, const char **cid, size_t *cidlen)
{
	const char *plus;

	if (!sn_id(s, len, cid, cidlen))
		return false;
	plus = memchr(*cid, '+', *cidlen);
	if (plus)
		*cidlen = (size_t)(plus - *cid);
	return true;
}

int64_t sn_hash64(const char *v, size_t len)
{
	uint8_t d[16];
	uint64_t u = 0;
	int i;

	digest_md5(v, len, d);
	for (i = 0; i < 8; i++)
		u = u << 8 | d[i];
	/* Two's-complement reinterpretation without implementation-defined casts. */
	if (u <= INT64_MAX)
		return (int64_t)u;
	return -(int64_t)(~u) - 1;
}

bool sn_in_group(const char *stream, size_t len, int64_t member, int64_t size)
{
	const char *cid;
	size_t cidlen;
	int64_t h;
	uint64_t mag;

	if (size <= 0 || member < 0 || member >= size)
		return false;
	if (!sn_cardinal_id(stream, len, &cid, &cidlen))
		return false;
	h = sn_hash64(cid, cidlen);
	/* abs() in unsigned arithmetic, so INT64_MIN gives 2^63 rather than UB. */
	mag = h < 0 ? 0 - (uint64_t)h : (uint64_t)h;
	return mag % (uint64_t)size == (uint64_t)member;
}
