/* Unit tests for the merging of gperftools CPU profiles (src/profile_merge.c)
 * on synthetic profiles, including workers whose mappings disagree, and for
 * the seconds parameter of /debug/pprof/profile (src/profile.c). */
#include "autoconf.h"

#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "profile.h"
#include "profile_merge.h"

typedef uintptr_t slot_t;

struct prof {
	slot_t w[256];
	size_t n;
	char text[2048];
};

static void
begin(struct prof *p, slot_t period)
{
	static const slot_t hdr[5] = {0, 3, 0, 0, 0};

	memset(p, 0, sizeof(*p));
	memcpy(p->w, hdr, sizeof(hdr));
	p->w[3] = period;
	p->n = 5;
}

static void
sample(struct prof *p, slot_t count, int npcs, const slot_t *pcs)
{
	p->w[p->n++] = count;
	p->w[p->n++] = (slot_t)npcs;
	for (int i = 0; i < npcs; i++)
		p->w[p->n++] = pcs[i];
}

/* The profile as bytes: words, trailer, mapping text. */
static struct profile_blob
blob(struct prof *p, const char *name, const char *maps)
{
	struct profile_blob b;
	size_t tl = strlen(maps);
	char *d;

	p->w[p->n++] = 0;
	p->w[p->n++] = 1;
	p->w[p->n++] = 0;
	b.name = name;
	b.len = p->n * sizeof(slot_t) + tl;
	d = malloc(b.len);
	ck_assert_ptr_nonnull(d);
	memcpy(d, p->w, p->n * sizeof(slot_t));
	memcpy(d + p->n * sizeof(slot_t), maps, tl);
	b.data = d;
	return b;
}

/* The merged output, parsed back. */
struct out {
	char *buf;
	size_t len;
	slot_t *w;
	size_t nrec, trailer;
	const char *text;
};

static void
merge(const struct profile_blob *in, size_t n, struct out *o, struct profile_merge_result *res)
{
	char err[256] = "";
	FILE *f = open_memstream(&o->buf, &o->len);
	size_t i;

	ck_assert_ptr_nonnull(f);
	ck_assert_msg(profile_merge_mem(in, n, f, res, err, sizeof(err)) == 0, "merge failed: %s", err);
	fclose(f);
	o->w = (slot_t *)o->buf;
	o->nrec = 0;
	for (i = 2 + o->w[1]; !(o->w[i] == 0 && o->w[i + 1] == 1 && o->w[i + 2] == 0); i += 2 + o->w[i + 1])
		o->nrec++;
	o->trailer = i;
	o->text = (const char *)(o->w + i + 3);
}

/* The PCs of the k-th record of o. */
static const slot_t *
rec(const struct out *o, size_t k, slot_t *count, slot_t *npcs)
{
	size_t i = 2 + o->w[1];

	while (k-- > 0)
		i += 2 + o->w[i + 1];
	*count = o->w[i];
	*npcs = o->w[i + 1];
	return o->w + i + 2;
}

static const char maps1[] = "build=/opt/eventodb\n"
                            "555500000000-555500010000 r--p 00000000 08:01 11 /opt/eventodb\n"
                            "555500010000-555500050000 r-xp 00010000 08:01 11 /opt/eventodb\n"
                            "7f0000000000-7f0000100000 rw-p 00000000 00:00 0 \n"
                            "7f1000010000-7f1000020000 r-xp 00010000 08:01 22 /lib/libz.so.1\n"
                            "7ffc00000000-7ffc00001000 r-xp 00000000 00:00 0 [vdso]\n";

START_TEST(test_same_mappings_concatenate)
{
	struct prof a, b;
	struct profile_blob in[2];
	struct profile_merge_result res;
	struct out o;
	slot_t pcs1[] = {0x555500011000, 0x555500012000}, pcs2[] = {0x7f1000011000}, count, npcs;
	const slot_t *p;

	begin(&a, 10000);
	sample(&a, 3, 2, pcs1);
	in[0] = blob(&a, "w1", maps1);
	begin(&b, 10000);
	sample(&b, 5, 2, pcs1);
	sample(&b, 2, 1, pcs2);
	in[1] = blob(&b, "w2", maps1);
	merge(in, 2, &o, &res);
	ck_assert(res.maps_agree);
	ck_assert_uint_eq(res.relocated, 0);
	ck_assert_int_eq(res.records, 3);
	ck_assert_int_eq(res.samples, 10);
	ck_assert_int_eq(res.period_us, 10000);
	ck_assert_uint_eq(o.w[3], 10000);
	ck_assert_uint_eq(o.nrec, 3);
	p = rec(&o, 2, &count, &npcs);
	ck_assert_uint_eq(count, 2);
	ck_assert_uint_eq(npcs, 1);
	ck_assert_uint_eq(p[0], 0x7f1000011000);
	/* the first profile's mapping list, unchanged */
	ck_assert_str_eq(o.text, maps1);
	free(o.buf);
	free(in[0].data);
	free(in[1].data);
}
END_TEST

START_TEST(test_moved_library_is_relocated)
{
	static const char maps2[] = "555500010000-555500050000 r-xp 00010000 08:01 11 /opt/eventodb\n"
	                            "7f2000010000-7f2000020000 r-xp 00010000 08:01 22 /lib/libz.so.1\n";
	struct prof a, b;
	struct profile_blob in[2];
	struct profile_merge_result res;
	struct out o;
	/* a library frame and a return address into our code */
	slot_t pcs[] = {0x7f2000011234, 0x555500012000, 0x7f2000020000}, count, npcs;
	const slot_t *p;

	begin(&a, 10000);
	in[0] = blob(&a, "w1", maps1);
	begin(&b, 10000);
	sample(&b, 4, 3, pcs);
	in[1] = blob(&b, "w2", maps2);
	merge(in, 2, &o, &res);
	ck_assert(!res.maps_agree);
	ck_assert_uint_eq(res.relocated, 1);
	p = rec(&o, 0, &count, &npcs);
	ck_assert_uint_eq(count, 4);
	ck_assert_uint_eq(npcs, 3);
	ck_assert_uint_eq(p[0], 0x7f1000011234); /* moved to where worker 1 has libz */
	ck_assert_uint_eq(p[1], 0x555500012000); /* our code agreed: untouched */
	/* a return address at the very end of the mapping belongs to it */
	ck_assert_uint_eq(p[2], 0x7f1000020000);
	ck_assert_str_eq(o.text, maps1); /* nothing to add: libz is already mapped */
	free(o.buf);
	free(in[0].data);
	free(in[1].data);
}
END_TEST

START_TEST(test_library_only_one_worker_has)
{
	/* libfoo in a free range: added as is; libbar where worker 1 has libz:
	 * placed above everything, its PCs moved there */
	static const char maps2[] = "555500010000-555500050000 r-xp 00010000 08:01 11 /opt/eventodb\n"
	                            "7f3000000000-7f3000008000 r-xp 00000000 08:01 33 /lib/libfoo.so.2\n"
	                            "7f1000010400-7f1000014400 r-xp 00002000 08:01 44 /lib/libbar.so.1\n";
	struct prof a, b;
	struct profile_blob in[2];
	struct profile_merge_result res;
	struct out o;
	slot_t pcs[] = {0x7f3000000100, 0x7f1000010500}, count, npcs;
	const slot_t *p;
	unsigned long s, e, off;
	char path[256];
	const char *line;

	begin(&a, 10000);
	in[0] = blob(&a, "w1", maps1);
	begin(&b, 10000);
	sample(&b, 1, 2, pcs);
	in[1] = blob(&b, "w2", maps2);
	merge(in, 2, &o, &res);
	ck_assert(!res.maps_agree);
	ck_assert_uint_eq(res.relocated, 1);
	ck_assert_ptr_nonnull(strstr(o.text, "7f3000000000-7f3000008000 r-xp 00000000 00:00 0 /lib/libfoo.so.2\n"));
	line = strstr(o.text, "/lib/libbar.so.1");
	ck_assert_ptr_nonnull(line);
	while (line > o.text && line[-1] != '\n')
		line--;
	ck_assert_int_eq(sscanf(line, "%lx-%lx r-xp %lx 00:00 0 %255s", &s, &e, &off, path), 4);
	ck_assert_uint_eq(e - s, 0x4000);
	ck_assert_uint_eq(off, 0x2000);
	ck_assert_uint_eq(s & 0xfff, 0x400);  /* same place within the page */
	ck_assert_uint_ge(s, 0x7f3000008000); /* above every mapping placed so far */
	p = rec(&o, 0, &count, &npcs);
	ck_assert_uint_eq(p[0], 0x7f3000000100);
	ck_assert_uint_eq(p[1], s + 0x100);
	free(o.buf);
	free(in[0].data);
	free(in[1].data);
}
END_TEST

START_TEST(test_bad_inputs)
{
	struct prof a, b;
	struct profile_blob in[2];
	struct profile_merge_result res;
	char err[256], *buf;
	size_t len;
	FILE *f = open_memstream(&buf, &len);

	begin(&a, 10000);
	in[0] = blob(&a, "w1", maps1);
	begin(&b, 5000);
	in[1] = blob(&b, "w2", maps1);
	ck_assert_int_eq(profile_merge_mem(in, 2, f, &res, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "sampling period"));
	/* cut before the trailer */
	in[1].len = 6 * sizeof(slot_t);
	((slot_t *)in[1].data)[3] = 10000;
	ck_assert_int_eq(profile_merge_mem(in, 2, f, &res, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "w2"));
	/* not a profile */
	memcpy(in[1].data, "heap profile: 1: 2 [3: 4]", 24);
	in[1].len = 24;
	ck_assert_int_eq(profile_merge_mem(in, 2, f, &res, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "not a gperftools CPU profile"));
	ck_assert_int_eq(profile_merge_mem(in, 0, f, &res, err, sizeof(err)), -1);
	fclose(f);
	free(buf);
	free(in[0].data);
	free(in[1].data);
}
END_TEST

START_TEST(test_seconds_parameter)
{
	struct profile_error e;
	int64_t s;

	ck_assert_int_eq(profile_parse_seconds(NULL, &s, &e), 0);
	ck_assert_int_eq(s, 30);
	ck_assert_int_eq(profile_parse_seconds("", &s, &e), 0);
	ck_assert_int_eq(s, 30);
	ck_assert_int_eq(profile_parse_seconds("1", &s, &e), 0);
	ck_assert_int_eq(s, 1);
	ck_assert_int_eq(profile_parse_seconds("300", &s, &e), 0);
	ck_assert_int_eq(s, 300);
	static const char *const bad[] = {"0", "301", "-1", "1.5", "abc", "2s", " 2", "99999999999999999999"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&e, 0, sizeof(e));
		ck_assert_msg(profile_parse_seconds(bad[i], &s, &e) == -1, "accepted %s", bad[i]);
		ck_assert_int_eq(e.status, 400);
		ck_assert_str_eq(e.code, "INVALID_REQUEST");
	}
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("profile");
	TCase *tc = tcase_create("merge");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_same_mappings_concatenate);
	tcase_add_test(tc, test_moved_library_is_relocated);
	tcase_add_test(tc, test_library_only_one_worker_has);
	tcase_add_test(tc, test_bad_inputs);
	tcase_add_test(tc, test_seconds_parameter);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
