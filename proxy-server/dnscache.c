/*
 * dnscache.c: host names' addresses for a short fixed time; a small array
 * searched in full (a few hundred names at most).
 */
#include "dnscache.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct dnscache_entry {
	char name[256];              /* empty: unused */
	uint64_t expires_ms;
	size_t n;
	struct sockaddr_in6 addrs[DNSCACHE_MAX_ADDRS]; /* big enough for v4 */
	socklen_t lens[DNSCACHE_MAX_ADDRS];
};

struct dnscache {
	struct dnscache_entry *entries;
	size_t max, used;
	unsigned ttl_ms;
};

/* Creates a cache. */
struct dnscache *dnscache_new(size_t max_names, unsigned ttl_ms)
{
	struct dnscache *c;

	if (max_names == 0 || (c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	if ((c->entries = calloc(max_names, sizeof(*c->entries))) == NULL) {
		free(c);
		return NULL;
	}
	c->max = max_names;
	c->ttl_ms = ttl_ms;
	return c;
}

/* Frees a cache. */
void dnscache_free(struct dnscache *c)
{
	if (c == NULL)
		return;
	free(c->entries);
	free(c);
}

/* The entry of name, or NULL. */
static struct dnscache_entry *dnscache_find(struct dnscache *c,
    const char *name)
{
	size_t i;

	for (i = 0; i < c->used; i++)
		if (strcasecmp(c->entries[i].name, name) == 0)
			return &c->entries[i];
	return NULL;
}

/* The entry to fill for a new name: a free one, else the one that
 * expires first. */
static struct dnscache_entry *dnscache_slot(struct dnscache *c)
{
	struct dnscache_entry *e;
	size_t i;

	if (c->used < c->max)
		return &c->entries[c->used++];
	e = &c->entries[0];
	for (i = 1; i < c->max; i++)
		if (c->entries[i].expires_ms < e->expires_ms)
			e = &c->entries[i];
	return e;
}

/* Remembers name's addresses. */
void dnscache_put(struct dnscache *c, const char *name,
    const struct sockaddr *const *addrs, const socklen_t *lens, size_t n,
    uint64_t now_ms)
{
	struct dnscache_entry *e;
	size_t i, len = strlen(name);

	if (c == NULL || c->ttl_ms == 0 || len == 0 || len >= sizeof(e->name))
		return;
	if ((e = dnscache_find(c, name)) == NULL)
		e = dnscache_slot(c);
	memcpy(e->name, name, len + 1);
	e->expires_ms = now_ms + c->ttl_ms;
	e->n = 0;
	for (i = 0; i < n && e->n < DNSCACHE_MAX_ADDRS; i++) {
		if ((addrs[i]->sa_family != AF_INET ||
		    lens[i] != sizeof(struct sockaddr_in)) &&
		    (addrs[i]->sa_family != AF_INET6 ||
		    lens[i] != sizeof(struct sockaddr_in6)))
			continue;
		memset(&e->addrs[e->n], 0, sizeof(e->addrs[e->n]));
		memcpy(&e->addrs[e->n], addrs[i], lens[i]);
		e->lens[e->n] = lens[i];
		e->n++;
	}
}

/* Copies name's fresh addresses. */
size_t dnscache_get(struct dnscache *c, const char *name, uint64_t now_ms,
    struct sockaddr_storage *addrs, socklen_t *lens, size_t max)
{
	struct dnscache_entry *e;
	size_t i;

	if (c == NULL || (e = dnscache_find(c, name)) == NULL ||
	    now_ms >= e->expires_ms)
		return 0;
	for (i = 0; i < e->n && i < max; i++) {
		memset(&addrs[i], 0, sizeof(addrs[i]));
		memcpy(&addrs[i], &e->addrs[i], e->lens[i]);
		lens[i] = e->lens[i];
	}
	return i;
}

/* Names held. */
size_t dnscache_names(const struct dnscache *c)
{
	return c->used;
}
