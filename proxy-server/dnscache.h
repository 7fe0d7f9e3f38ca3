/*
 * dnscache.h: the addresses of recently resolved host names, for the
 * dialer: a fixed number of names, each kept for a short fixed time (the
 * resolver does not tell the records' own TTL), so that a burst of
 * streams to one name (a web page) costs one lookup. Only successful
 * lookups are kept. Times are given by the caller, in milliseconds.
 */
#ifndef AGG_DNSCACHE_H
#define AGG_DNSCACHE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Addresses kept per name. */
#define DNSCACHE_MAX_ADDRS 16

struct dnscache;

/* Creates a cache of max_names names kept ttl_ms each; NULL if out of
 * memory. */
struct dnscache *dnscache_new(size_t max_names, unsigned ttl_ms);
void dnscache_free(struct dnscache *c);
/* Remembers name's addresses (IPv4 and IPv6 only, the first
 * DNSCACHE_MAX_ADDRS) from now_ms on, replacing what was known; when full,
 * forgets the name that expires first. */
void dnscache_put(struct dnscache *c, const char *name,
    const struct sockaddr *const *addrs, const socklen_t *lens, size_t n,
    uint64_t now_ms);
/* Copies name's addresses, if known and fresh at now_ms, into addrs and
 * lens (room for max); returns how many (0: ask the resolver). */
size_t dnscache_get(struct dnscache *c, const char *name, uint64_t now_ms,
    struct sockaddr_storage *addrs, socklen_t *lens, size_t max);
/* Names held, fresh or not. */
size_t dnscache_names(const struct dnscache *c);

#endif
