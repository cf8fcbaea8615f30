/*
 * The request parser on nodejs/http-parser 2.9 (see httpp.h). Only this file
 * includes http_parser.h.
 */
#include "autoconf.h"

#include <assert.h>
#include <http_parser.h>
#include <string.h>

#include "httpp.h"

_Static_assert(sizeof(http_parser) <= sizeof(((struct httpp *)0)->state), "http_parser does not fit");

#define P(h) ((http_parser *)(h)->state)
#define CP(h) ((const http_parser *)(h)->state)

static struct httpp *
owner_of(http_parser *p)
{
	return p->data;
}

static int
on_url(http_parser *p, const char *at, size_t n)
{
	struct httpp *h = owner_of(p);

	return h->hooks->url(h->owner, at, n);
}

static int
on_header_field(http_parser *p, const char *at, size_t n)
{
	struct httpp *h = owner_of(p);

	return h->hooks->header_field(h->owner, at, n);
}

static int
on_header_value(http_parser *p, const char *at, size_t n)
{
	struct httpp *h = owner_of(p);

	return h->hooks->header_value(h->owner, at, n);
}

static int
on_headers_complete(http_parser *p)
{
	struct httpp *h = owner_of(p);

	h->event = HTTPP_HEAD_DONE;
	http_parser_pause(p, 1);
	return 0;
}

static int
on_body(http_parser *p, const char *at, size_t n)
{
	struct httpp *h = owner_of(p);

	return h->hooks->body(h->owner, at, n);
}

static int
on_chunk_header(http_parser *p)
{
	struct httpp *h = owner_of(p);

	/* the last chunk (size 0) is followed by the trailer fields */
	if (p->content_length == 0)
		h->in_trailer = true;
	return h->hooks->chunk(h->owner);
}

static int
on_message_complete(http_parser *p)
{
	struct httpp *h = owner_of(p);

	h->event = HTTPP_MSG_DONE;
	h->in_trailer = false;
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings settings = {
	.on_url = on_url,
	.on_header_field = on_header_field,
	.on_header_value = on_header_value,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
	.on_chunk_header = on_chunk_header,
};

void
httpp_init(struct httpp *h, const struct httpp_hooks *hooks, void *owner)
{
	memset(h, 0, sizeof(*h));
	h->hooks = hooks;
	h->owner = owner;
	httpp_reset(h);
}

void
httpp_reset(struct httpp *h)
{
	http_parser_init(P(h), HTTP_REQUEST);
	P(h)->data = h;
	h->event = HTTPP_MORE;
	h->in_trailer = false;
}

size_t
httpp_feed(struct httpp *h, const char *p, size_t n, enum httpp_event *ev)
{
	size_t used;
	enum http_errno e;

	h->event = HTTPP_MORE;
	used = http_parser_execute(P(h), &settings, p, n);
	e = HTTP_PARSER_ERRNO(P(h));
	if (e == HPE_PAUSED) {
		*ev = (enum httpp_event)h->event;
		return used;
	}
	if (e >= HPE_CB_message_begin && e <= HPE_CB_chunk_complete) {
		*ev = HTTPP_STOPPED;
		return used;
	}
	if (e != HPE_OK) {
		*ev = HTTPP_ERROR;
		return used;
	}
	/* CONNECT and upgrades: the parser stops after the head; what follows
	 * is another protocol. The head was reported (the owner refuses it). */
	*ev = (enum httpp_event)h->event;
	return used;
}

void
httpp_resume(struct httpp *h)
{
	http_parser_pause(P(h), 0);
	h->event = HTTPP_MORE;
}

enum httpp_error
httpp_finish(struct httpp *h)
{
	enum http_errno e;

	/* a zero-length feed tells the parser the input has ended */
	http_parser_execute(P(h), &settings, NULL, 0);
	e = HTTP_PARSER_ERRNO(P(h));
	if (e == HPE_OK || e == HPE_PAUSED)
		return HTTPP_E_NONE;
	return HTTPP_E_EOF;
}

enum httpp_error
httpp_error(const struct httpp *h)
{
	switch (HTTP_PARSER_ERRNO(CP(h))) {
	case HPE_OK:
	case HPE_PAUSED:
		return HTTPP_E_NONE;
	case HPE_INVALID_METHOD:
		return HTTPP_E_METHOD;
	case HPE_HEADER_OVERFLOW:
		return HTTPP_E_HEAD_TOO_BIG;
	case HPE_INVALID_TRANSFER_ENCODING:
		return HTTPP_E_CODING;
	case HPE_INVALID_EOF_STATE:
		return HTTPP_E_EOF;
	default:
		return HTTPP_E_MALFORMED;
	}
}

const char *
httpp_error_text(const struct httpp *h)
{
	return http_errno_description(HTTP_PARSER_ERRNO(CP(h)));
}

enum httpp_method
httpp_method(const struct httpp *h)
{
	switch (CP(h)->method) {
	case HTTP_GET: return HTTPP_GET;
	case HTTP_HEAD: return HTTPP_HEAD;
	case HTTP_POST: return HTTPP_POST;
	case HTTP_PUT: return HTTPP_PUT;
	case HTTP_DELETE: return HTTPP_DELETE;
	case HTTP_OPTIONS: return HTTPP_OPTIONS;
	case HTTP_PATCH: return HTTPP_PATCH;
	default: return HTTPP_OTHER;
	}
}

const char *
httpp_method_name(const struct httpp *h)
{
	return http_method_str((enum http_method)CP(h)->method);
}

void
httpp_version(const struct httpp *h, unsigned *major, unsigned *minor)
{
	*major = CP(h)->http_major;
	*minor = CP(h)->http_minor;
}

bool
httpp_keep_alive(const struct httpp *h)
{
	return http_should_keep_alive(CP(h)) != 0;
}

bool
httpp_chunked(const struct httpp *h)
{
	return (CP(h)->flags & F_CHUNKED) != 0;
}

bool
httpp_length(const struct httpp *h, uint64_t *len)
{
	if ((CP(h)->flags & F_CONTENTLENGTH) == 0)
		return false;
	*len = CP(h)->content_length;
	return true;
}

bool
httpp_upgrade(const struct httpp *h)
{
	return CP(h)->upgrade || CP(h)->method == HTTP_CONNECT;
}

bool
httpp_in_trailer(const struct httpp *h)
{
	return h->in_trailer;
}

int
httpp_split_target(const char *target, size_t n, size_t *poff, size_t *plen, size_t *qoff, size_t *qlen)
{
	struct http_parser_url u;

	*poff = *plen = *qoff = *qlen = 0;
	if (n == 0 || n > 65535)
		return -1;
	http_parser_url_init(&u);
	if (http_parser_parse_url(target, n, 0, &u) != 0)
		return -1;
	if (u.field_set & (1 << UF_PATH)) {
		*poff = u.field_data[UF_PATH].off;
		*plen = u.field_data[UF_PATH].len;
	}
	if (u.field_set & (1 << UF_QUERY)) {
		*qoff = u.field_data[UF_QUERY].off;
		*qlen = u.field_data[UF_QUERY].len;
	}
	return 0;
}

const char *
httpp_reason(int status)
{
	const char *s = http_status_str((enum http_status)status);

	return s != NULL && strcmp(s, "<unknown>") != 0 ? s : (status >= 500 ? "Internal Server Error" : "Error");
}

void
httpp_set_max_head(uint32_t bytes)
{
	http_parser_set_max_header_size(bytes);
}
