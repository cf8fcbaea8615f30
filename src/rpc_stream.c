/*
 * stream.write, stream.get, stream.last, stream.version and category.get:
 * argument validation in the reference's order and wording (SPEC 4.1-4.5,
 * with the decisions of section D), then one asynchronous store call whose
 * completion writes the reply straight into the response buffer.
 */
#include "autoconf.h"

#include <string.h>

#include "config.h"
#include "evlib.h"
#include "http.h"
#include "jsonspan.h"
#include "jsonw.h"
#include "resp.h"
#include "rpc.h"
#include "ring.h"
#include "shm.h"
#include "sse.h"
#include "worker.h"

#define STORE(c) ((c)->w->store)

/* A stream name argument; sends the error and returns NULL when bad. */
static const char *
stream_arg(struct rpc_ctx *c, size_t i, const char *label)
{
	json_object *o = rpc_arg(c, i);
	size_t len;

	if (!json_object_is_type(o, json_type_string) || json_object_get_string_len(o) == 0) {
		rpc_failf(c, "INVALID_REQUEST", "%s must be a non-empty string", label);
		return NULL;
	}
	len = (size_t)json_object_get_string_len(o);
	if (!rpc_name_ok(len)) {
		rpc_failf(c, "INVALID_REQUEST", "%s must be at most %d bytes", label, RPC_NAME_MAX);
		return NULL;
	}
	return json_object_get_string(o);
}

/* ---- stream.write ------------------------------------------------------ */

static void
write_done(const struct store_reply *r, void *arg)
{
	struct rpc_ctx *c = arg;
	struct wbuf *b = &c->resp->buf;

	switch (r->status) {
	case ST_OK:
		/* Before the reply, so a client's next write lands after it in the ring. */
		sse_publish(c->w, c->ns, (uint64_t)c->num, c->u.write.stream, strlen(c->u.write.stream), r->position,
		            r->global_position);
		jw_lit(b, "{\"globalPosition\":");
		jw_i64(b, r->global_position);
		jw_lit(b, ",\"position\":");
		jw_i64(b, r->position);
		jw_lit(b, "}");
		rpc_ok(c);
		return;
	case ST_CONFLICT: {
		char msg[128], details[96];
		c->w->me->st.version_conflicts++;
		ring_index_note(c->w->shm, (uint64_t)c->num, c->u.write.stream, strlen(c->u.write.stream),
		                r->actual_version, 0);
		snprintf(msg, sizeof(msg), "Expected version %lld, stream is at version %lld",
		         (long long)c->u.write.expected, (long long)r->actual_version);
		snprintf(details, sizeof(details), "{\"actual\":%lld,\"expected\":%lld}", (long long)r->actual_version,
		         (long long)c->u.write.expected);
		rpc_fail(c, "STREAM_VERSION_CONFLICT", msg, details);
		return;
	}
	case ST_MSG_EXISTS: {
		char msg[96], details[64];
		snprintf(msg, sizeof(msg), "Message with id %s already exists", c->id);
		snprintf(details, sizeof(details), "{\"id\":\"%s\"}", c->id);
		rpc_fail(c, "MESSAGE_EXISTS", msg, details);
		return;
	}
	default:
		rpc_fail_store(c, r, "Failed to write message");
	}
}

/* Object members in json-c's tree below o, o's own included. */
static size_t
tree_members(json_object *o)
{
	size_t n = 0;

	if (json_object_is_type(o, json_type_object)) {
		json_object_object_foreach(o, k, v) {
			(void)k;
			n += 1 + tree_members(v);
		}
	} else if (json_object_is_type(o, json_type_array)) {
		for (size_t i = 0, len = json_object_array_length(o); i < len; i++)
			n += tree_members(json_object_array_get_idx(o, i));
	}
	return n;
}

/* One of data or metadata appended to b, NUL-terminated: the client's text
 * compacted, or, when a key repeats somewhere (the stores would disagree:
 * jsonb keeps the last, a text copy both), json-c's reading of it, where
 * the last wins as in jsonb. -1 for an unpaired surrogate escape. */
static int
payload_text(json_object *o, const char *span, size_t len, struct wbuf *b)
{
	long n;

	if (jspan_count_members(span, len) != tree_members(o)) {
		size_t tlen;
		const char *t =
		    json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &tlen);
		wb_add(b, t, tlen);
		wb_add(b, "", 1);
		return 0;
	}
	if (!wb_reserve(b, len + 1))
		return 0; /* b->failed says so */
	n = jspan_compact(span, len, b->p + b->len);
	if (n < 0)
		return -1;
	b->len += (size_t)n;
	wb_add(b, "", 1);
	return 0;
}

/*
 * data and metadata as the client wrote them (SPEC D21: numbers exact,
 * integers beyond 64 bits included), compacted, into the response buffer,
 * which is free until the reply; the store copies what it is given. json-c
 * has validated the body; its tree is re-serialized only for a repeated key.
 * 0, or -1 after answering.
 */
static int
client_payload(struct rpc_ctx *c, json_object *data, json_object *meta)
{
	struct store_write_req *wr = &c->u.write;
	struct wbuf *b = &c->resp->buf;
	const char *body, *msg, *d, *x = NULL;
	size_t blen, mlen, dlen, xlen = 0, moff = 0;

	body = http_req_body(c->req, &blen);
	if (!jspan_elem(body, blen, 2, &msg, &mlen) || !jspan_member(msg, mlen, "data", &d, &dlen) ||
	    (meta != NULL && !jspan_member(msg, mlen, "metadata", &x, &xlen))) {
		rpc_fail(c, "INTERNAL_ERROR", "message.data not found in the request body", NULL);
		return -1;
	}
	b->len = 0;
	if (payload_text(data, d, dlen, b) != 0 ||
	    (x != NULL && ((moff = b->len), payload_text(meta, x, xlen, b)) != 0)) {
		rpc_fail(c, "INVALID_REQUEST", "Strings must not hold an unpaired surrogate escape (\\ud800-\\udfff)",
		         NULL);
		return -1;
	}
	if (b->failed) {
		rpc_fail(c, "INTERNAL_ERROR", "out of memory", NULL);
		return -1;
	}
	/* the pointers once every append is done: the buffer may have moved */
	wr->data = b->p;
	wr->metadata = x != NULL ? b->p + moff : NULL;
	return 0;
}

void
rpc_stream_write(struct rpc_ctx *c)
{
	struct store_write_req *wr = &c->u.write;
	json_object *msg, *o, *opts;
	const char *stream, *idstr = NULL;
	size_t idlen = 0, size;
	bool present;
	json_object *data, *meta = NULL;

	if (c->nargs < 2)
		return rpc_fail(c, "INVALID_REQUEST", "stream.write requires at least 2 arguments: streamName and message", NULL);
	if ((stream = stream_arg(c, 0, "streamName")) == NULL)
		return;
	msg = rpc_arg(c, 1);
	if (!json_object_is_type(msg, json_type_object))
		return rpc_fail(c, "INVALID_REQUEST", "message must be an object", NULL);
	if (!json_object_object_get_ex(msg, "type", &o) || !json_object_is_type(o, json_type_string) ||
	    json_object_get_string_len(o) == 0)
		return rpc_fail(c, "INVALID_REQUEST", "message.type must be a non-empty string", NULL);
	if (!rpc_name_ok((size_t)json_object_get_string_len(o)))
		return rpc_failf(c, "INVALID_REQUEST", "message.type must be at most %d bytes", RPC_NAME_MAX);
	wr->type = json_object_get_string(o);
	if (!json_object_object_get_ex(msg, "data", &data) || !json_object_is_type(data, json_type_object))
		return rpc_fail(c, "INVALID_REQUEST", "message.data must be an object", NULL);
	if (json_object_object_get_ex(msg, "metadata", &meta) && !json_object_is_type(meta, json_type_object))
		return rpc_fail(c, "INVALID_REQUEST", "message.metadata must be an object", NULL);
	if (rpc_options(c, 2, &opts) != 0)
		return;
	if (rpc_opt_str(c, opts, "id", "options.id", &idstr, &idlen, &present) != 0)
		return;
	if (rpc_opt_int(c, opts, "expectedVersion", "options.expectedVersion", &wr->expected, &wr->has_expected) != 0)
		return;
	if (idstr == NULL || idlen == 0)
		uuid_v7(c->id);
	else if (uuid_canonical(idstr, idlen, c->id) != 0)
		return rpc_fail(c, "INVALID_REQUEST", "options.id must be a UUID", NULL);
	if (client_payload(c, data, meta) != 0)
		return;
	size = strlen(wr->data) + (wr->metadata ? strlen(wr->metadata) : 0);
	if ((int64_t)size > c->w->cfg->max_message)
		return rpc_failf(c, "MESSAGE_TOO_LARGE", "Message data and metadata (%zu bytes) exceed the limit of %lld bytes",
		                 size, (long long)c->w->cfg->max_message);
	wr->id = c->id;
	wr->stream = stream;
	/* num: the namespace generation now, the stream index key. A cached
	 * version past expectedVersion is a certain conflict: no round trip. */
	c->num = (int64_t)ring_ns_generation(c->w->shm, c->ns, NULL);
	if (wr->has_expected) {
		struct store_reply cr = {.status = ST_CONFLICT};
		if (ring_index_conflict(c->w->shm, (uint64_t)c->num, stream, strlen(stream), wr->expected,
		                        &cr.actual_version)) {
			c->w->me->st.index_conflicts++;
			return write_done(&cr, c);
		}
	}
	if (STORE(c)->ops->write(STORE(c), c->ns, wr, write_done, c) != 0)
		return rpc_fail_busy(c);
	/* the store has its copy: the buffer is the reply's again */
	c->resp->buf.len = 0;
	wr->data = wr->metadata = NULL;
}

/* ---- reads ------------------------------------------------------------- */

static void
messages_done(const struct store_reply *r, void *arg, bool with_stream)
{
	struct rpc_ctx *c = arg;
	struct wbuf *b = &c->resp->buf;

	if (r->status != ST_OK)
		return rpc_fail_store(c, r, "Failed to read messages");
	jw_lit(b, "[");
	for (size_t i = 0; i < r->nrows; i++) {
		if (i > 0)
			jw_lit(b, ",");
		rpc_write_message(b, &r->msgs[i], with_stream);
	}
	jw_lit(b, "]");
	rpc_ok(c);
}

static void
stream_msgs_done(const struct store_reply *r, void *arg)
{
	messages_done(r, arg, false);
}

static void
category_msgs_done(const struct store_reply *r, void *arg)
{
	messages_done(r, arg, true);
}

static void
reply_empty_array(struct rpc_ctx *c)
{
	jw_lit(&c->resp->buf, "[]");
	rpc_ok(c);
}

void
rpc_stream_get(struct rpc_ctx *c)
{
	json_object *opts;
	const char *stream;
	int64_t pos = 0, gpos = 0, limit;
	bool has_pos, has_gpos;

	if (c->nargs < 1)
		return rpc_fail(c, "INVALID_REQUEST", "stream.get requires at least 1 argument: streamName", NULL);
	if ((stream = stream_arg(c, 0, "streamName")) == NULL)
		return;
	if (rpc_options(c, 1, &opts) != 0 ||
	    rpc_opt_int(c, opts, "position", "options.position", &pos, &has_pos) != 0 ||
	    rpc_opt_int(c, opts, "globalPosition", "options.globalPosition", &gpos, &has_gpos) != 0 ||
	    rpc_batch_size(c, opts, &limit) != 0)
		return;
	if (limit == 0)
		return reply_empty_array(c);
	if (STORE(c)->ops->get_stream(STORE(c), c->ns, stream, has_gpos, has_gpos ? gpos : pos, limit,
	                              stream_msgs_done, c) != 0)
		rpc_fail_busy(c);
}

static void
last_done(const struct store_reply *r, void *arg)
{
	struct rpc_ctx *c = arg;

	if (r->status != ST_OK)
		return rpc_fail_store(c, r, "Failed to read last message");
	if (r->nrows == 0)
		jw_lit(&c->resp->buf, "null");
	else
		rpc_write_message(&c->resp->buf, &r->msgs[0], false);
	rpc_ok(c);
}

void
rpc_stream_last(struct rpc_ctx *c)
{
	json_object *opts;
	const char *stream, *type = NULL;
	size_t tlen = 0;
	bool present;

	if (c->nargs < 1)
		return rpc_fail(c, "INVALID_REQUEST", "stream.last requires at least 1 argument: streamName", NULL);
	if ((stream = stream_arg(c, 0, "streamName")) == NULL)
		return;
	if (rpc_options(c, 1, &opts) != 0 || rpc_opt_str(c, opts, "type", "options.type", &type, &tlen, &present) != 0)
		return;
	if (present && tlen > RPC_NAME_MAX)
		return rpc_failf(c, "INVALID_REQUEST", "options.type must be at most %d bytes", RPC_NAME_MAX);
	if (STORE(c)->ops->get_last(STORE(c), c->ns, stream, type, last_done, c) != 0)
		rpc_fail_busy(c);
}

static void
version_done(const struct store_reply *r, void *arg)
{
	struct rpc_ctx *c = arg;

	if (r->status != ST_OK)
		return rpc_fail_store(c, r, "Failed to read stream version");
	if (r->has_value)
		jw_i64(&c->resp->buf, r->value);
	else
		jw_lit(&c->resp->buf, "null");
	rpc_ok(c);
}

void
rpc_stream_version(struct rpc_ctx *c)
{
	const char *stream;

	if (c->nargs < 1)
		return rpc_fail(c, "INVALID_REQUEST", "stream.version requires 1 argument: streamName", NULL);
	if ((stream = stream_arg(c, 0, "streamName")) == NULL)
		return;
	if (STORE(c)->ops->version(STORE(c), c->ns, stream, version_done, c) != 0)
		rpc_fail_busy(c);
}

/* ---- category.get ------------------------------------------------------ */

void
rpc_category_get(struct rpc_ctx *c)
{
	struct store_category_req *q = &c->u.cat;
	json_object *opts, *cg, *o, *name;
	int64_t pos = 1, gpos = 0;
	bool has_pos, has_gpos, present, has_member = false, has_size = false;
	size_t clen = 0;

	if (c->nargs < 1)
		return rpc_fail(c, "INVALID_REQUEST", "category.get requires at least 1 argument: categoryName", NULL);
	name = rpc_arg(c, 0);
	if (!json_object_is_type(name, json_type_string))
		return rpc_fail(c, "INVALID_REQUEST", "categoryName must be a string", NULL);
	if ((size_t)json_object_get_string_len(name) > RPC_NAME_MAX)
		return rpc_failf(c, "INVALID_REQUEST", "categoryName must be at most %d bytes", RPC_NAME_MAX);
	q->category = json_object_get_string(name);
	if (rpc_options(c, 1, &opts) != 0 ||
	    rpc_opt_int(c, opts, "position", "options.position", &pos, &has_pos) != 0 ||
	    rpc_opt_int(c, opts, "globalPosition", "options.globalPosition", &gpos, &has_gpos) != 0 ||
	    rpc_batch_size(c, opts, &q->limit) != 0 ||
	    rpc_opt_str(c, opts, "correlation", "options.correlation", &q->correlation, &clen, &present) != 0)
		return;
	if (!present)
		q->correlation = NULL;
	else if (clen > RPC_NAME_MAX)
		return rpc_failf(c, "INVALID_REQUEST", "options.correlation must be at most %d bytes", RPC_NAME_MAX);
	q->from_gpos = has_gpos ? gpos : pos;
	q->member = 0;
	q->size = 0;
	if (opts != NULL && json_object_object_get_ex(opts, "consumerGroup", &cg)) {
		if (!json_object_is_type(cg, json_type_object))
			return rpc_fail(c, "INVALID_REQUEST", "options.consumerGroup must be an object", NULL);
		if (json_object_object_get_ex(cg, "member", &o)) {
			if (rpc_json_to_int64(o, &q->member) != 0)
				return rpc_fail(c, "INVALID_REQUEST", "options.consumerGroup.member must be a number", NULL);
			has_member = true;
		}
		if (json_object_object_get_ex(cg, "size", &o)) {
			if (rpc_json_to_int64(o, &q->size) != 0)
				return rpc_fail(c, "INVALID_REQUEST", "options.consumerGroup.size must be a number", NULL);
			has_size = true;
		}
		if (has_member != has_size)
			return rpc_fail(c, "INVALID_REQUEST", "options.consumerGroup requires both member and size", NULL);
		if (has_member) {
			if (q->member < 0)
				return rpc_fail(c, "INVALID_REQUEST", "options.consumerGroup.member must be non-negative", NULL);
			if (q->size <= 0)
				return rpc_fail(c, "INVALID_REQUEST", "options.consumerGroup.size must be positive", NULL);
			if (q->member >= q->size)
				return rpc_fail(c, "INVALID_REQUEST", "options.consumerGroup.member must be < size", NULL);
		}
	}
	/* A category never contains '-': such a name matches nothing. */
	if (q->limit == 0 || strchr(q->category, '-') != NULL)
		return reply_empty_array(c);
	if (STORE(c)->ops->get_category(STORE(c), c->ns, q, category_msgs_done, c) != 0)
		rpc_fail_busy(c);
}
