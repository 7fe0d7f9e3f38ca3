/*
 * linkset.h: agg-client's links. For every server URL it resolves the
 * host (IPv4 and IPv6, or one family), enumerates the local interfaces,
 * and keeps one link per (interface x server address) pair allowed by the
 * link filter. Links that fail are re-dialled with capped exponential
 * backoff; interfaces and addresses that appear or vanish (rtnetlink
 * events, and a periodic rescan) gain or lose their links, which join the
 * live session by themselves.
 */
#ifndef AGG_LINKSET_H
#define AGG_LINKSET_H

#include <stddef.h>

#include "agg/session.h"

struct event_base;
struct evdns_base;
struct agg_url;
struct agg_linkset;

enum agg_link_filter {
	AGG_FILTER_ANY,                 /* every interface x every address */
	AGG_FILTER_INTERFACE_IP,        /* one link per interface x address
	                                   of the family the interface has */
	AGG_FILTER_INTERFACE_INTERFACE, /* one link per local interface */
};

struct agg_linkset_config {
	const char *const *ifaces;  /* -i: only these interfaces (NULL: all) */
	size_t nifaces;
	enum agg_link_filter filter;
	int family;                 /* 0, AF_INET (-4) or AF_INET6 (-6) */
	unsigned connect_timeout_ms;
	unsigned backoff_min_ms, backoff_max_ms;
};

/* Fills the defaults (filter interface-ip, both families, 10 s connect
 * timeout, backoff 250 ms doubling up to 10 s). */
void agg_linkset_config_init(struct agg_linkset_config *cfg);
/* Creates a link set that adds its links to session. */
struct agg_linkset *agg_linkset_new(struct event_base *base,
    struct evdns_base *dns, struct agg_session *session,
    const struct agg_linkset_config *cfg);
/* Adds a server endpoint; -1 with a reason in err if the URL's scheme is
 * not supported yet. Resolution happens in the background. */
int agg_linkset_add_server(struct agg_linkset *ls, const struct agg_url *url,
    char *err, size_t errlen);
/* The session's link_state callback must forward every event here. */
void agg_linkset_link_state(struct agg_linkset *ls, struct agg_link *link,
    enum agg_link_state state, const char *reason);
/* The last failure, as "cannot reach tcp://srv:5800 via wlan0: connection
 * refused"; empty if none. */
const char *agg_linkset_last_error(const struct agg_linkset *ls);
/* Number of links wanted (dialling, handshaking or up). */
size_t agg_linkset_wanted(const struct agg_linkset *ls);
/* Closes every link and stops dialling. */
void agg_linkset_free(struct agg_linkset *ls);

#endif
