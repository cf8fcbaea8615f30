/*
 * Merging gperftools CPU profiles, one per worker, into one file that
 * google-pprof reads. The format (gperftools' cpuprofile-fileformat.html) is
 * a header of machine words, sample records (count, number of PCs, PCs), a
 * trailer (0, 1, 0) and then the text of /proc/self/maps. The merged file is
 * the first profile's header, every profile's records, one trailer and one
 * mapping list.
 *
 * Workers are forked from one supervisor after the libraries are loaded, so
 * their executable mappings normally agree and the records concatenate as
 * they are. That is checked, not assumed: a mapping another worker has at a
 * different address (a library loaded after fork) gets that worker's PCs
 * moved to where the first worker has it, and a mapping only it has is
 * added (at a free address, with its PCs moved, if its own range is taken),
 * so every PC still names the right code.
 */
#include "autoconf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "profile_merge.h"

typedef uintptr_t slot_t; /* the format's word: the profiled program's pointer size */

#define MAX_PCS 4096 /* gperftools records at most 64 frames; anything far above is corruption */
#define PAGE 4096

struct mapping {
	uintptr_t start, end, offset;
	const char *path; /* into the profile's text, not NUL-terminated */
	size_t path_len;
};

struct parsed {
	const slot_t *w;
	size_t nwords;
	size_t hdr_words; /* header length in words */
	size_t rec_end;   /* index of the trailer */
	const char *text; /* the mapping list */
	size_t text_len;
	struct mapping *maps; /* executable mappings with a path */
	size_t nmaps;
};

/* A range of one input whose PCs move by delta. */
struct reloc {
	uintptr_t start, end;
	intptr_t delta;
};

static int __attribute__((format(printf, 3, 4))) fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

/* Appends text to a growing buffer. 0, or -1 when out of memory. */
static int __attribute__((format(printf, 4, 5))) append(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		if (*cap - *len < 64 || *buf == NULL) {
			char *nb = realloc(*buf, *cap * 2 + 4096);
			if (nb == NULL)
				return -1;
			*buf = nb;
			*cap = *cap * 2 + 4096;
		}
		va_start(ap, fmt);
		n = vsnprintf(*buf + *len, *cap - *len, fmt, ap);
		va_end(ap);
		if (n < 0)
			return -1;
		if ((size_t)n < *cap - *len) {
			*len += (size_t)n;
			return 0;
		}
		*cap += (size_t)n; /* grow past the line on the next round */
	}
}

/* Parses one "start-end perms offset dev inode path" line of /proc/self/maps. */
static bool
parse_map_line(const char *l, size_t len, struct mapping *m)
{
	char line[1200], perms[8];
	unsigned long s, e, off;
	int pos = 0;
	const char *p;

	if (len >= sizeof(line))
		return false;
	memcpy(line, l, len);
	line[len] = '\0';
	if (sscanf(line, "%lx-%lx %7s %lx %*s %*s %n", &s, &e, perms, &off, &pos) != 4 || pos == 0)
		return false;
	if (strlen(perms) < 3 || perms[2] != 'x' || e <= s)
		return false;
	p = l + pos;
	while (p < l + len && (*p == ' ' || *p == '\t'))
		p++;
	if (p == l + len || *p == '[') /* anonymous, [vdso], [vsyscall]: no file to read symbols from */
		return false;
	m->start = s;
	m->end = e;
	m->offset = off;
	m->path = p;
	m->path_len = (size_t)(l + len - p);
	return true;
}

static int
parse(const void *data, size_t len, const char *name, struct parsed *pp, char *err, size_t errlen)
{
	const slot_t *w = data;
	size_t n = len / sizeof(slot_t), i;
	size_t cap = 0;

	memset(pp, 0, sizeof(*pp));
	if (n < 5 || w[0] != 0 || w[1] < 3 || w[2] != 0 || w[1] > n - 2)
		return fail(err, errlen, "%s: not a gperftools CPU profile (header)", name);
	pp->w = w;
	pp->nwords = n;
	pp->hdr_words = 2 + (size_t)w[1];
	for (i = pp->hdr_words;;) {
		slot_t count, npcs;

		if (i + 3 > n)
			return fail(err, errlen, "%s: truncated at word %zu (no trailer)", name, i);
		count = w[i];
		npcs = w[i + 1];
		if (count == 0 && npcs == 1 && w[i + 2] == 0)
			break;
		if (count == 0 || npcs == 0 || npcs > MAX_PCS || i + 2 + npcs > n)
			return fail(err, errlen, "%s: corrupt record at word %zu", name, i);
		i += 2 + (size_t)npcs;
	}
	pp->rec_end = i;
	pp->text = (const char *)(w + i + 3);
	pp->text_len = len - (i + 3) * sizeof(slot_t);
	for (const char *l = pp->text, *end = pp->text + pp->text_len; l < end;) {
		const char *nl = memchr(l, '\n', (size_t)(end - l));
		size_t ll = nl ? (size_t)(nl - l) : (size_t)(end - l);
		struct mapping m;

		if (parse_map_line(l, ll, &m)) {
			if (pp->nmaps == cap) {
				struct mapping *nm = realloc(pp->maps, (cap ? cap * 2 : 64) * sizeof(*nm));
				if (nm == NULL)
					return fail(err, errlen, "%s: out of memory", name);
				pp->maps = nm;
				cap = cap ? cap * 2 : 64;
			}
			pp->maps[pp->nmaps++] = m;
		}
		l += ll + 1;
	}
	return 0;
}

static bool
same_file(const struct mapping *a, const struct mapping *b)
{
	return a->offset == b->offset && a->end - a->start == b->end - b->start && a->path_len == b->path_len &&
	       memcmp(a->path, b->path, a->path_len) == 0;
}

static bool
overlaps(const struct mapping *set, size_t n, uintptr_t s, uintptr_t e)
{
	for (size_t i = 0; i < n; i++)
		if (s < set[i].end && set[i].start < e)
			return true;
	return false;
}

static uintptr_t
reloc_pc(const struct reloc *r, size_t nr, uintptr_t pc, bool caller)
{
	/* a return address may sit just past the end of its caller's mapping */
	uintptr_t probe = caller ? pc - 1 : pc;

	for (size_t i = 0; i < nr; i++)
		if (probe >= r[i].start && probe < r[i].end)
			return (uintptr_t)((intptr_t)pc + r[i].delta);
	return pc;
}

int
profile_merge_mem(const struct profile_blob *in, size_t n, FILE *out, struct profile_merge_result *res, char *err,
                  size_t errlen)
{
	struct parsed *p = calloc(n ? n : 1, sizeof(*p));
	struct mapping *merged = NULL; /* executable mappings of the output */
	size_t nmerged = 0, capmerged = 0;
	char *extra = NULL; /* mapping lines added to the first profile's */
	size_t extra_len = 0, extra_cap = 0;
	struct reloc *rel = NULL;
	size_t caprel = 0;
	static const slot_t trailer[3] = {0, 1, 0};
	int rc = -1;

	memset(res, 0, sizeof(*res));
	res->maps_agree = true;
	if (p == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (n == 0) {
		snprintf(err, errlen, "no profiles to merge");
		goto done;
	}
	for (size_t k = 0; k < n; k++) {
		if (parse(in[k].data, in[k].len, in[k].name, &p[k], err, errlen) != 0)
			goto done;
		if (p[k].w[3] != p[0].w[3]) {
			snprintf(err, errlen, "%s: sampling period %lu us differs from %s's %lu us", in[k].name,
			         (unsigned long)p[k].w[3], in[0].name, (unsigned long)p[0].w[3]);
			goto done;
		}
	}
	res->period_us = (int64_t)p[0].w[3];
	capmerged = p[0].nmaps + 16;
	merged = malloc(capmerged * sizeof(*merged));
	if (merged == NULL)
		goto oom;
	memcpy(merged, p[0].maps, p[0].nmaps * sizeof(*merged));
	nmerged = p[0].nmaps;

	if (fwrite(p[0].w, sizeof(slot_t), p[0].hdr_words, out) != p[0].hdr_words)
		goto werr;
	for (size_t k = 0; k < n; k++) {
		size_t nrel = 0;

		/* Where this profile's executable mappings sit in the output. */
		for (size_t j = 0; k > 0 && j < p[k].nmaps; j++) {
			const struct mapping *e = &p[k].maps[j];
			struct mapping placed = *e;
			bool found = false;

			for (size_t i = 0; i < nmerged && !found; i++)
				if (merged[i].start == e->start && same_file(&merged[i], e))
					found = true;
			if (found)
				continue;
			res->maps_agree = false;
			for (size_t i = 0; i < nmerged && !found; i++)
				if (same_file(&merged[i], e)) {
					placed = merged[i];
					found = true;
				}
			if (!found) {
				if (overlaps(merged, nmerged, e->start, e->end)) {
					uintptr_t top = 0;
					for (size_t i = 0; i < nmerged; i++)
						if (merged[i].end > top)
							top = merged[i].end;
					/* keep the offset within the page, so code stays aligned */
					placed.start = ((top + PAGE - 1) & ~(uintptr_t)(PAGE - 1)) +
					               (e->start & (PAGE - 1)) + PAGE;
					placed.end = placed.start + (e->end - e->start);
				}
				if (nmerged == capmerged) {
					struct mapping *nm = realloc(merged, capmerged * 2 * sizeof(*nm));
					if (nm == NULL)
						goto oom;
					merged = nm;
					capmerged *= 2;
				}
				merged[nmerged++] = placed;
				if (append(&extra, &extra_len, &extra_cap, "%lx-%lx r-xp %08lx 00:00 0 %.*s\n",
				           (unsigned long)placed.start, (unsigned long)placed.end,
				           (unsigned long)placed.offset, (int)placed.path_len, placed.path) != 0)
					goto oom;
			}
			if (placed.start != e->start) {
				if (nrel == caprel) {
					struct reloc *nr = realloc(rel, (caprel ? caprel * 2 : 16) * sizeof(*nr));
					if (nr == NULL)
						goto oom;
					rel = nr;
					caprel = caprel ? caprel * 2 : 16;
				}
				rel[nrel].start = e->start;
				rel[nrel].end = e->end;
				rel[nrel].delta = (intptr_t)(placed.start - e->start);
				nrel++;
				res->relocated++;
			}
		}
		for (size_t i = p[k].hdr_words; i < p[k].rec_end;) {
			size_t npcs = (size_t)p[k].w[i + 1];

			res->records++;
			res->samples += (int64_t)p[k].w[i];
			if (nrel == 0) {
				if (fwrite(p[k].w + i, sizeof(slot_t), 2 + npcs, out) != 2 + npcs)
					goto werr;
			} else {
				if (fwrite(p[k].w + i, sizeof(slot_t), 2, out) != 2)
					goto werr;
				for (size_t j = 0; j < npcs; j++) {
					slot_t pc = reloc_pc(rel, nrel, p[k].w[i + 2 + j], j > 0);
					if (fwrite(&pc, sizeof(pc), 1, out) != 1)
						goto werr;
				}
			}
			i += 2 + npcs;
		}
	}
	if (fwrite(trailer, sizeof(slot_t), 3, out) != 3 || fwrite(p[0].text, 1, p[0].text_len, out) != p[0].text_len)
		goto werr;
	if (extra_len > 0) {
		if (p[0].text_len > 0 && p[0].text[p[0].text_len - 1] != '\n' && fputc('\n', out) == EOF)
			goto werr;
		if (fwrite(extra, 1, extra_len, out) != extra_len)
			goto werr;
	}
	if (fflush(out) != 0)
		goto werr;
	rc = 0;
	goto done;
oom:
	snprintf(err, errlen, "out of memory");
	goto done;
werr:
	snprintf(err, errlen, "cannot write the merged profile: %s", strerror(errno));
done:
	for (size_t k = 0; k < n; k++)
		free(p[k].maps);
	free(p);
	free(merged);
	free(extra);
	free(rel);
	return rc;
}

static int
read_file(const char *path, struct profile_blob *b, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	size_t cap = 1 << 16;

	b->name = path;
	b->len = 0;
	b->data = NULL;
	if (f == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	for (;;) {
		/* slot-aligned buffer: the parser reads it as words */
		void *nd = realloc(b->data, cap);
		size_t got;
		if (nd == NULL) {
			snprintf(err, errlen, "%s: out of memory", path);
			fclose(f);
			return -1;
		}
		b->data = nd;
		got = fread((char *)b->data + b->len, 1, cap - b->len, f);
		b->len += got;
		if (b->len < cap)
			break;
		cap *= 2;
	}
	if (ferror(f)) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		fclose(f);
		return -1;
	}
	fclose(f);
	return 0;
}

int
profile_merge_files(const char *const *inputs, size_t n, const char *out, struct profile_merge_result *res, char *err,
                    size_t errlen)
{
	struct profile_blob *b = calloc(n ? n : 1, sizeof(*b));
	char tmp[4096];
	FILE *f = NULL;
	int rc = -1;

	memset(res, 0, sizeof(*res));
	if (b == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (size_t k = 0; k < n; k++)
		if (read_file(inputs[k], &b[k], err, errlen) != 0)
			goto done;
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", out) >= sizeof(tmp)) {
		snprintf(err, errlen, "%s: path too long", out);
		goto done;
	}
	f = fopen(tmp, "wb");
	if (f == NULL) {
		snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
		goto done;
	}
	rc = profile_merge_mem(b, n, f, res, err, errlen);
	if (fclose(f) != 0 && rc == 0) {
		snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
		rc = -1;
	}
	if (rc == 0 && rename(tmp, out) != 0) {
		snprintf(err, errlen, "%s: %s", out, strerror(errno));
		rc = -1;
	}
	if (rc != 0)
		unlink(tmp);
done:
	for (size_t k = 0; k < n; k++)
		free(b[k].data);
	free(b);
	return rc;
}
