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
#include <stdint.h>

#include "agg/session.h"
#include "agg/url.h"

struct event_base;
struct evdns_base;
struct agg_url;
struct agg_linkset;
struct agg_iface_list;
struct agg_sockaddr;
struct agg_tls;
struct agg_http_proxy;

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
	struct agg_tls *tls;        /* tls:// and wss:// links (not owned) */
	const struct agg_http_proxy *http_proxy; /* links go through this
	                               proxy (HTTP CONNECT), or NULL */
	unsigned handshake_timeout_ms; /* TLS and WebSocket handshakes */
};

/* Fills the defaults (filter interface-ip, both families, 10 s connect
 * and handshake timeouts, backoff 250 ms doubling up to 10 s, no TLS). */
void agg_linkset_config_init(struct agg_linkset_config *cfg);
/* Creates a link set that adds its links to session. */
struct agg_linkset *agg_linkset_new(struct event_base *base,
    struct evdns_base *dns, struct agg_session *session,
    const struct agg_linkset_config *cfg);
/* Adds a server endpoint; -1 with a reason in err if the URL's scheme is
 * not supported (tls:// and wss:// need cfg->tls). Resolution happens in
 * the background. A usb:// URL gets one USB link, kept by usbhost.c. */
int agg_linkset_add_server(struct agg_linkset *ls, const struct agg_url *url,
    char *err, size_t errlen);
/* The session's link_state callback must forward every event here. */
void agg_linkset_link_state(struct agg_linkset *ls, struct agg_link *link,
    enum agg_link_state state, const char *reason);
/* The last failure, as "cannot reach tcp://srv:5800 via wlan0: connection
 * refused"; empty if none. A host name is followed by the address tried
 * ("tcp://srv:5800 (192.0.2.1)"). Other forms: "lost tcp://srv:5800 via
 * wlan0: <why the link closed>" for a link that had been up, "cannot reach
 * tcp://srv:5800: no usable interface" (or "no interface named eth9" with
 * -i), "cannot resolve tcp://srv:5800: <reason>". */
const char *agg_linkset_last_error(const struct agg_linkset *ls);
/* One slot (interface x server address) of a link set, for a monitor. */
struct agg_linkset_slot_info {
	char name[160];          /* the link's name: IFACE[@SOURCE]->REMOTE */
	enum agg_url_scheme scheme;
	int linked;              /* its link is in the session */
	int dialling;            /* connecting now (else waiting to retry) */
	char why[128];           /* its last failure, "" if none */
	uint64_t why_us;         /* when (CLOCK_MONOTONIC, microseconds) */
};

/* Fills up to cap slots' infos; returns the number of slots. */
size_t agg_linkset_slots(const struct agg_linkset *ls,
    struct agg_linkset_slot_info *out, size_t cap);
/* Number of links wanted (dialling, handshaking or up). */
size_t agg_linkset_wanted(const struct agg_linkset *ls);
/* Closes every link and stops dialling. Free the link set before its
 * session: agg_session_free() frees the links without telling anyone. */
void agg_linkset_free(struct agg_linkset *ls);

/* The filter's name ("any", "interface-ip", "interface-interface"). */
const char *agg_link_filter_name(enum agg_link_filter filter);
/* Parses a filter name; -1 if unknown. */
int agg_link_filter_parse(const char *name, enum agg_link_filter *out);

/* Rescans the interfaces now and adds or drops links to match (it also
 * happens on rtnetlink events and every few seconds). */
void agg_linkset_rescan(struct agg_linkset *ls);
/* Lists the interfaces into out; -1 with a reason in err. */
typedef int (*agg_linkset_scan_fn)(struct agg_iface_list *out, char *err,
    size_t errlen, void *arg);
/* Replaces the interface scan (agg_ifaces_scan() by default; tests feed
 * fake interfaces) and rescans. */
void agg_linkset_set_scanner(struct agg_linkset *ls, agg_linkset_scan_fn fn,
    void *arg);

/* Source "any": the kernel picks the source address on the interface. */
#define AGG_PLAN_ANY_SOURCE ((size_t)-1)

/* One link the filter allows: indexes of the interface, of its source
 * address (AGG_PLAN_ANY_SOURCE but for AGG_FILTER_ANY) and of the server
 * address. */
struct agg_linkset_plan_slot {
	size_t iface;
	size_t source;
	size_t addr;
};

/* The links cfg allows between the interfaces and the server addresses,
 * interface by interface, in list order: interfaces that are down, have no
 * address or are not among cfg->ifaces are skipped; loopback addresses
 * pair only with loopback interfaces and the others never do; an address
 * needs an interface with a usable source address of its family (IPv6
 * link-local sources only for link-local addresses). AGG_FILTER_ANY pairs
 * every such source address with every address; AGG_FILTER_INTERFACE_IP
 * every interface with every address; AGG_FILTER_INTERFACE_INTERFACE every
 * interface with its first address (the link set tries the others in turn
 * when that one fails). Returns the number of links; stores the first cap. */
size_t agg_linkset_plan(const struct agg_linkset_config *cfg,
    const struct agg_iface_list *ifs, const struct agg_sockaddr *addrs,
    size_t naddrs, struct agg_linkset_plan_slot *out, size_t cap);

#endif
