/*
 * linkset.c: agg-client's links. See linkset.h.
 *
 * Every server URL resolves to a few addresses (targets). A plan pairs the
 * usable interfaces with the targets as the link filter says; each pair is
 * a slot, which keeps one link alive: it dials (a TCP connect pinned to its
 * interface, then whatever the URL's scheme adds), hands the connection to
 * the session as a link, and re-dials after a backoff when the connect
 * fails or the session reports the link closed. Rescans and re-resolutions
 * recompute the plan: new pairs get slots, slots whose interface went away
 * close their link and go, slots whose target left DNS keep their link
 * until it closes.
 */
#include "linkset.h"

#include <sys/types.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include "agg/log.h"
#include "agg/url.h"
#include "httpproxy.h"
#include "ifaces.h"
#include "tcp.h"
#include "tls.h"
#include "ws.h"
#include "usbhost.h"

#define LS_MAX_SLOTS 32          /* a session takes at most 32 links */
#define LS_MAX_ADDRS 16          /* addresses kept per server URL */
#define LS_MAX_TARGETS 64
#define LS_STABLE_MS 10000       /* a link up this long resets the backoff */
#define LS_RESCAN_MS 5000
#define LS_RESOLVE_MS 60000
#define LS_RESOLVE_RETRY_MS 5000
#define LS_MAX_USB 8             /* usb:// URLs */

struct ls_server;
struct ls_slot;

/* What a link scheme adds on top of a connected TCP socket: wrap() turns
 * the TCP bufferevent into the link's byte pipe (a TLS filter, a WebSocket
 * upgrade), then calls ls_slot_ready(), or ls_slot_failed() on failure. */
struct ls_scheme {
	enum agg_url_scheme scheme;
	void (*wrap)(struct ls_slot *slot, struct bufferevent *bev);
};

/* One server address, and the URL it came from. */
struct ls_target {
	struct ls_server *srv;
	struct agg_sockaddr sa;
};

/* One DNS request; it outlives a server freed while it runs. */
struct ls_resolve {
	struct ls_server *srv;
};

/* One server URL and its current addresses. */
struct ls_server {
	TAILQ_ENTRY(ls_server) entry;
	struct agg_linkset *ls;
	struct agg_url url;
	const struct ls_scheme *scheme;
	const char *dial_host;         /* the URL's, or the HTTP proxy's */
	const char *dial_port;
	int literal;                   /* the host is an address */
	struct evdns_getaddrinfo_request *req;
	struct ls_resolve *pending;
	struct event *timer;           /* next resolution */
	size_t naddrs;
	struct agg_sockaddr addrs[LS_MAX_ADDRS];
};

/* One link the plan wants: an interface (and source address) paired with
 * a target, or with a list of targets tried in turn. */
struct ls_slot {
	TAILQ_ENTRY(ls_slot) entry;
	struct agg_linkset *ls;
	char iface[IF_NAMESIZE];
	unsigned ifindex;
	int loopback;
	struct agg_sockaddr source;    /* bound to; len 0: the kernel picks */
	struct ls_target *cand;
	size_t ncand;
	size_t next;                   /* candidate to dial next */
	struct ls_target cur;          /* what is being dialled or linked */
	struct agg_tcp_connect *conn;
	struct agg_http_connect *proxy_hs; /* --http-proxy */
	struct agg_tls_handshake *tls_hs;  /* tls://, wss:// */
	struct agg_ws_handshake *ws_hs;    /* ws://, wss:// */
	struct agg_link *link;
	struct event *timer;           /* backoff */
	unsigned backoff_ms;
	uint64_t up_since_us;          /* 0: the link is not up */
	struct agg_sockaddr bound;     /* the connection's local address */
	int orphan;                    /* target gone: drop once closed */
	int seen;                      /* in the current plan */
	char why[128];                 /* its last failure, for monitors */
	uint64_t why_us;
};

struct agg_linkset {
	struct event_base *base;
	struct evdns_base *dns;
	struct agg_session *session;
	struct agg_linkset_config cfg;
	char **ifaces;                 /* copy of cfg.ifaces */
	TAILQ_HEAD(, ls_server) servers;
	TAILQ_HEAD(, ls_slot) slots;
	struct agg_iface_list *ifs;
	struct agg_iface_list *scratch;
	struct agg_ifwatch *watch;
	agg_linkset_scan_fn scan;
	void *scan_arg;
	size_t ntargets;
	struct ls_target targets[LS_MAX_TARGETS];
	int warned_cap;
	int have_proxy;
	struct agg_http_proxy proxy;
	char last_error[256];
	size_t nusb;
	struct agg_usbhost *usb[LS_MAX_USB]; /* usb:// links (usbhost.c) */
};

static void ls_tcp_wrap(struct ls_slot *slot, struct bufferevent *bev);
static void ls_layers_wrap(struct ls_slot *slot, struct bufferevent *bev);

static const struct ls_scheme ls_schemes[] = {
	{ AGG_URL_TCP, ls_tcp_wrap },
	{ AGG_URL_TLS, ls_layers_wrap },
	{ AGG_URL_WS, ls_layers_wrap },
	{ AGG_URL_WSS, ls_layers_wrap },
};

static const char *const ls_filter_names[] = {
	"any", "interface-ip", "interface-interface",
};

/* Monotonic clock in microseconds. */
static uint64_t ls_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Records the last failure (one line) and logs it. */
static void ls_error(struct agg_linkset *ls, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Records the last failure (one line) and logs it. */
static void ls_error(struct agg_linkset *ls, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(ls->last_error, sizeof(ls->last_error), fmt, ap);
	va_end(ap);
	agg_log_info("%s", ls->last_error);
}

/* Formats "scheme://host:port" of a server URL. */
static void ls_server_label(const struct ls_server *srv, char *out,
    size_t outlen)
{
	int v6 = strchr(srv->url.host, ':') != NULL;

	snprintf(out, outlen, "%s://%s%s%s:%s",
	    agg_url_scheme_name(srv->url.scheme), v6 ? "[" : "",
	    srv->url.host, v6 ? "]" : "", srv->url.port);
}

/* Formats a target for messages: the URL, and the address when the URL
 * names a host. */
static void ls_target_label(const struct ls_target *t, char *out,
    size_t outlen)
{
	char url[300], addr[64];

	ls_server_label(t->srv, url, sizeof(url));
	if (t->srv->literal) {
		snprintf(out, outlen, "%s", url);
		return;
	}
	agg_sockaddr_format((const struct sockaddr *)&t->sa.ss, 0, addr,
	    sizeof(addr));
	snprintf(out, outlen, "%s (%s)", url, addr);
}

/* The filter's name. */
const char *agg_link_filter_name(enum agg_link_filter filter)
{
	if ((size_t)filter >= sizeof(ls_filter_names) /
	    sizeof(ls_filter_names[0]))
		return "?";
	return ls_filter_names[filter];
}

/* Parses a filter name. */
int agg_link_filter_parse(const char *name, enum agg_link_filter *out)
{
	size_t i;

	for (i = 0; i < sizeof(ls_filter_names) / sizeof(ls_filter_names[0]);
	    i++) {
		if (strcmp(name, ls_filter_names[i]) == 0) {
			*out = (enum agg_link_filter)i;
			return 0;
		}
	}
	return -1;
}

/* Fills the defaults. */
void agg_linkset_config_init(struct agg_linkset_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->filter = AGG_FILTER_INTERFACE_IP;
	cfg->family = 0;
	cfg->connect_timeout_ms = 10000;
	cfg->handshake_timeout_ms = 10000;
	cfg->backoff_min_ms = 250;
	cfg->backoff_max_ms = 10000;
}

/* Whether the plan may use an interface at all. */
static int plan_iface_ok(const struct agg_linkset_config *cfg,
    const struct agg_iface *ifc)
{
	size_t i;

	if (!agg_iface_is_up(ifc) || ifc->naddrs == 0)
		return 0;
	if (cfg->nifaces == 0)
		return 1;
	for (i = 0; i < cfg->nifaces; i++)
		if (strcmp(cfg->ifaces[i], ifc->name) == 0)
			return 1;
	return 0;
}

/* Whether the plan may pair a usable interface with a server address. */
static int plan_pair_ok(const struct agg_linkset_config *cfg,
    const struct agg_iface *ifc, const struct sockaddr *sa)
{
	const struct sockaddr_in6 *sin6;

	if (cfg->family != 0 && sa->sa_family != cfg->family)
		return 0;
	if (((ifc->flags & IFF_LOOPBACK) != 0) !=
	    (agg_sockaddr_is_loopback(sa) != 0))
		return 0;
	if (agg_sockaddr_is_link_local(sa)) {
		sin6 = (const struct sockaddr_in6 *)sa;
		if (sin6->sin6_scope_id != 0 &&
		    sin6->sin6_scope_id != ifc->index)
			return 0;
	}
	return agg_iface_source_for(ifc, sa) != NULL;
}

/* Whether a source address of an interface can reach a server address. */
static int plan_source_ok(const struct agg_sockaddr *src,
    const struct sockaddr *sa)
{
	const struct sockaddr *s = (const struct sockaddr *)&src->ss;

	return s->sa_family == sa->sa_family &&
	    (!agg_sockaddr_is_link_local(s) || agg_sockaddr_is_link_local(sa));
}

/* Stores one planned link if there is room; counts it anyway. */
static void plan_emit(struct agg_linkset_plan_slot *out, size_t cap,
    size_t *n, size_t iface, size_t source, size_t addr)
{
	if (*n < cap) {
		out[*n].iface = iface;
		out[*n].source = source;
		out[*n].addr = addr;
	}
	(*n)++;
}

/* The links the filter allows. */
size_t agg_linkset_plan(const struct agg_linkset_config *cfg,
    const struct agg_iface_list *ifs, const struct agg_sockaddr *addrs,
    size_t naddrs, struct agg_linkset_plan_slot *out, size_t cap)
{
	const struct agg_iface *ifc;
	const struct sockaddr *sa;
	size_t i, a, l, n = 0;

	for (i = 0; i < ifs->n; i++) {
		ifc = &ifs->v[i];
		if (!plan_iface_ok(cfg, ifc))
			continue;
		for (a = 0; a < naddrs; a++) {
			sa = (const struct sockaddr *)&addrs[a].ss;
			if (!plan_pair_ok(cfg, ifc, sa))
				continue;
			if (cfg->filter == AGG_FILTER_ANY) {
				for (l = 0; l < ifc->naddrs; l++) {
					if (!plan_source_ok(&ifc->addrs[l], sa))
						continue;
					plan_emit(out, cap, &n, i, l, a);
				}
				continue;
			}
			plan_emit(out, cap, &n, i, AGG_PLAN_ANY_SOURCE, a);
			if (cfg->filter == AGG_FILTER_INTERFACE_INTERFACE)
				break;
		}
	}
	return n;
}

/* Whether two targets are the same address of the same server. */
static int ls_target_equal(const struct ls_target *a,
    const struct ls_target *b)
{
	return a->srv == b->srv && agg_sockaddr_equal(
	    (const struct sockaddr *)&a->sa.ss,
	    (const struct sockaddr *)&b->sa.ss);
}

/* Whether a target is among the current ones. */
static int ls_target_current(const struct agg_linkset *ls,
    const struct ls_target *t)
{
	size_t i;

	for (i = 0; i < ls->ntargets; i++)
		if (ls_target_equal(&ls->targets[i], t))
			return 1;
	return 0;
}

/* Collects every server's addresses, in URL order, without duplicates
 * (but for servers behind the same proxy). */
static void ls_collect_targets(struct agg_linkset *ls)
{
	struct ls_server *srv;
	struct ls_target *t;
	size_t i, j;

	ls->ntargets = 0;
	TAILQ_FOREACH(srv, &ls->servers, entry) {
		for (i = 0; i < srv->naddrs; i++) {
			/* Through a proxy every server has its address. */
			for (j = 0; j < ls->ntargets; j++)
				if (agg_sockaddr_equal((const struct sockaddr *)
				    &ls->targets[j].sa.ss,
				    (const struct sockaddr *)
				    &srv->addrs[i].ss) && (!ls->have_proxy ||
				    ls->targets[j].srv == srv))
					break;
			if (j < ls->ntargets || ls->ntargets >= LS_MAX_TARGETS)
				continue;
			t = &ls->targets[ls->ntargets++];
			t->srv = srv;
			t->sa = srv->addrs[i];
		}
	}
}

/* Formats the link name: "eth0->[2001:db8::1]:5800", with the source
 * address for the any filter ("eth0@192.0.2.2->198.51.100.1:5800"), or
 * through a proxy "eth0->proxy->srv.example:5800". */
static void ls_link_name(const struct ls_slot *s, char *out, size_t outlen)
{
	char dst[64], src[64];

	agg_sockaddr_format((const struct sockaddr *)&s->cur.sa.ss, 1, dst,
	    sizeof(dst));
	if (s->ls->have_proxy) {
		/* The address is the proxy's: name the server instead. */
		snprintf(out, outlen, "%s->proxy->%s%.100s%s:%s", s->iface,
		    strchr(s->cur.srv->url.host, ':') ? "[" : "",
		    s->cur.srv->url.host,
		    strchr(s->cur.srv->url.host, ':') ? "]" : "",
		    s->cur.srv->url.port);
		return;
	}
	if (s->source.len == 0) {
		snprintf(out, outlen, "%s->%s", s->iface, dst);
		return;
	}
	agg_sockaddr_format((const struct sockaddr *)&s->source.ss, 0, src,
	    sizeof(src));
	snprintf(out, outlen, "%s@%s->%s", s->iface, src, dst);
}

/* Whether the slot is dialling, handshaking or linked. */
static int ls_slot_busy(const struct ls_slot *s)
{
	return s->conn != NULL || s->proxy_hs != NULL || s->tls_hs != NULL ||
	    s->ws_hs != NULL || s->link != NULL;
}

/* Detaches the slot's link and closes it with a reason. */
static void ls_slot_drop_link(struct ls_slot *s, const char *reason)
{
	struct agg_link *link = s->link;

	if (link == NULL)
		return;
	s->link = NULL;
	s->up_since_us = 0;
	s->bound.len = 0;
	agg_link_set_user(link, NULL);
	agg_link_close(link, reason);
}

/* The one way a slot goes: stops dialling, closes its link, frees it. */
static void ls_slot_free(struct ls_slot *s, const char *reason)
{
	struct agg_linkset *ls = s->ls;

	if (reason != NULL && s->link == NULL)
		agg_log_debug("slot %s dropped: %s", s->iface, reason);
	if (s->conn != NULL)
		agg_tcp_connect_cancel(s->conn);
	agg_http_connect_cancel(s->proxy_hs);
	agg_tls_cancel(s->tls_hs);
	agg_ws_cancel(s->ws_hs);
	ls_slot_drop_link(s, reason != NULL ? reason : "link no longer wanted");
	TAILQ_REMOVE(&ls->slots, s, entry);
	event_free(s->timer);
	free(s->cand);
	free(s);
}

/* Waits out the slot's backoff before the next dial, then doubles it. */
static void ls_slot_backoff(struct ls_slot *s)
{
	const struct agg_linkset_config *cfg = &s->ls->cfg;
	struct timeval tv;

	tv.tv_sec = (time_t)(s->backoff_ms / 1000);
	tv.tv_usec = (suseconds_t)(s->backoff_ms % 1000) * 1000;
	evtimer_add(s->timer, &tv);
	s->backoff_ms = s->backoff_ms > cfg->backoff_max_ms / 2 ?
	    cfg->backoff_max_ms : s->backoff_ms * 2;
}

/* A dial failed: records why, moves to the next target, backs off. */
static void ls_slot_failed(struct ls_slot *s, const char *reason)
{
	char target[400];

	ls_target_label(&s->cur, target, sizeof(target));
	ls_error(s->ls, "cannot reach %s via %s: %s", target, s->iface,
	    reason);
	snprintf(s->why, sizeof(s->why), "%s", reason);
	s->why_us = ls_now_us();
	if (s->ncand > 1)
		s->next = (s->next + 1) % s->ncand;
	ls_slot_backoff(s);
}

/* The dial produced the link's byte pipe: the session takes it. */
static void ls_slot_ready(struct ls_slot *s, struct bufferevent *bev)
{
	struct agg_linkset *ls = s->ls;
	struct agg_link *link;
	char name[160];

	/* Names longer than libagg keeps (63 bytes) lose their tail there. */
	ls_link_name(s, name, sizeof(name));
	if (agg_session_is_closed(ls->session)) {
		bufferevent_free(bev);
		return;
	}
	if ((link = agg_session_add_link(ls->session, bev, name)) == NULL) {
		ls_slot_failed(s, "out of memory");
		return;
	}
	s->link = link;
	s->up_since_us = 0;
	agg_link_set_user(link, s);
}

/* tcp:// adds nothing to the TCP connection. */
static void ls_tcp_wrap(struct ls_slot *s, struct bufferevent *bev)
{
	ls_slot_ready(s, bev);
}

/* The WebSocket upgrade of a ws:// or wss:// link finished. */
static void ls_ws_done_cb(struct bufferevent *bev, const char *error,
    void *arg)
{
	struct ls_slot *s = arg;

	s->ws_hs = NULL;
	if (bev == NULL) {
		ls_slot_failed(s, error);
		return;
	}
	ls_slot_ready(s, bev);
}

/* ws:// and wss:// ask for the upgrade on the URL's path. */
static void ls_ws_upgrade(struct ls_slot *s, struct bufferevent *bev)
{
	const struct agg_url *url = &s->cur.srv->url;
	int v6 = strchr(url->host, ':') != NULL;
	char host[300];

	snprintf(host, sizeof(host), "%s%s%s:%s", v6 ? "[" : "", url->host,
	    v6 ? "]" : "", url->port);
	s->ws_hs = agg_ws_client_start(s->ls->base, bev, host, url->path,
	    s->ls->cfg.handshake_timeout_ms, ls_ws_done_cb, s);
	if (s->ws_hs == NULL)
		ls_slot_failed(s, "out of memory");
}

/* The TLS handshake of a tls:// or wss:// link finished. */
static void ls_tls_done_cb(struct bufferevent *bev, const char *error,
    void *arg)
{
	struct ls_slot *s = arg;

	s->tls_hs = NULL;
	if (bev == NULL) {
		ls_slot_failed(s, error);
		return;
	}
	if (s->cur.srv->url.scheme == AGG_URL_WSS)
		ls_ws_upgrade(s, bev);
	else
		ls_slot_ready(s, bev);
}

/* tls:// and wss:// put TLS on the TCP connection, checking the URL's
 * host; ws:// goes straight to the upgrade. */
static void ls_layers_wrap(struct ls_slot *s, struct bufferevent *bev)
{
	char err[256];

	if (s->cur.srv->url.scheme == AGG_URL_WS) {
		ls_ws_upgrade(s, bev);
		return;
	}
	s->tls_hs = agg_tls_start(s->ls->base, s->ls->cfg.tls, bev,
	    s->cur.srv->url.host, s->ls->cfg.handshake_timeout_ms,
	    ls_tls_done_cb, s, err, sizeof(err));
	if (s->tls_hs == NULL)
		ls_slot_failed(s, err);
}

/* The HTTP proxy opened the way to the server (or refused). */
static void ls_proxy_done_cb(struct bufferevent *bev, const char *error,
    void *arg)
{
	struct ls_slot *s = arg;

	s->proxy_hs = NULL;
	if (bev == NULL) {
		ls_slot_failed(s, error);
		return;
	}
	s->cur.srv->scheme->wrap(s, bev);
}

/* Asks the HTTP proxy to CONNECT to the URL's host and port. */
static void ls_slot_connect_proxy(struct ls_slot *s, struct bufferevent *bev)
{
	const struct agg_url *url = &s->cur.srv->url;
	int v6 = strchr(url->host, ':') != NULL;
	char authority[300];

	snprintf(authority, sizeof(authority), "%s%s%s:%s", v6 ? "[" : "",
	    url->host, v6 ? "]" : "", url->port);
	s->proxy_hs = agg_http_connect_start(s->ls->base, bev, authority,
	    s->ls->cfg.handshake_timeout_ms, ls_proxy_done_cb, s);
	if (s->proxy_hs == NULL)
		ls_slot_failed(s, "out of memory");
}

/* The TCP connect finished. */
static void ls_slot_connect_cb(struct bufferevent *bev, const char *error,
    void *arg)
{
	struct ls_slot *s = arg;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	s->conn = NULL;
	if (bev == NULL) {
		ls_slot_failed(s, error);
		return;
	}
	s->bound.len = 0;
	if (getsockname(bufferevent_getfd(bev), (struct sockaddr *)&ss,
	    &len) == 0)
		agg_sockaddr_set(&s->bound, (struct sockaddr *)&ss);
	if (s->ls->have_proxy) {
		ls_slot_connect_proxy(s, bev);
		return;
	}
	s->cur.srv->scheme->wrap(s, bev);
}

/* Dials the slot's current target unless it is busy already. */
static void ls_slot_dial(struct ls_slot *s)
{
	struct agg_linkset *ls = s->ls;
	const struct agg_sockaddr *fallback = NULL;
	const struct agg_iface *ifc;
	struct agg_tcp_dial_opts opts;
	const struct sockaddr *dst;
	char err[256];

	if (ls_slot_busy(s) || s->ncand == 0)
		return;
	evtimer_del(s->timer);
	if (agg_session_is_closed(ls->session))
		return;
	s->cur = s->cand[s->next % s->ncand];
	dst = (const struct sockaddr *)&s->cur.sa.ss;
	if ((ifc = agg_ifaces_find(ls->ifs, s->iface)) != NULL)
		fallback = agg_iface_source_for(ifc, dst);
	memset(&opts, 0, sizeof(opts));
	opts.iface = s->iface;
	opts.local = s->source.len ? (const struct sockaddr *)&s->source.ss :
	    NULL;
	opts.fallback = fallback ? (const struct sockaddr *)&fallback->ss :
	    NULL;
	opts.timeout_ms = ls->cfg.connect_timeout_ms;
	s->conn = agg_tcp_dial(ls->base, dst, s->cur.sa.len, &opts,
	    ls_slot_connect_cb, s, err, sizeof(err));
	if (s->conn == NULL)
		ls_slot_failed(s, err);
}

/* The backoff is over. */
static void ls_slot_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	ls_slot_dial(arg);
}

/* Creates an idle slot for an interface (and source address). */
static struct ls_slot *ls_slot_new(struct agg_linkset *ls,
    const struct agg_iface *ifc, const struct agg_sockaddr *source)
{
	struct ls_slot *s;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	if ((s->timer = evtimer_new(ls->base, ls_slot_timer_cb, s)) == NULL) {
		free(s);
		return NULL;
	}
	s->ls = ls;
	snprintf(s->iface, sizeof(s->iface), "%s", ifc->name);
	s->ifindex = ifc->index;
	s->loopback = (ifc->flags & IFF_LOOPBACK) != 0;
	if (source != NULL)
		s->source = *source;
	s->backoff_ms = ls->cfg.backoff_min_ms;
	TAILQ_INSERT_TAIL(&ls->slots, s, entry);
	return s;
}

/* Replaces a slot's targets, keeping its place in the list. */
static void ls_slot_set_targets(struct ls_slot *s, const struct ls_target *t,
    size_t n)
{
	struct ls_target *cand;
	size_t i, next = 0;

	if ((cand = calloc(n, sizeof(*cand))) == NULL)
		return;
	for (i = 0; i < n; i++) {
		cand[i] = t[i];
		if (s->ncand > 0 && ls_target_equal(&t[i],
		    &s->cand[s->next % s->ncand]))
			next = i;
	}
	free(s->cand);
	s->cand = cand;
	s->ncand = n;
	s->next = next;
}

/* The slot for a planned link: found among the slots or created. */
static void ls_plan_apply(struct agg_linkset *ls,
    const struct agg_linkset_plan_slot *p)
{
	const struct agg_iface *ifc = &ls->ifs->v[p->iface];
	const struct agg_sockaddr *src = NULL;
	struct ls_target cand[LS_MAX_TARGETS];
	const struct ls_target *t = &ls->targets[p->addr];
	int ii = ls->cfg.filter == AGG_FILTER_INTERFACE_INTERFACE;
	struct ls_slot *s;
	size_t i, n = 0;

	if (p->source != AGG_PLAN_ANY_SOURCE)
		src = &ifc->addrs[p->source];
	TAILQ_FOREACH(s, &ls->slots, entry) {
		if (s->seen || strcmp(s->iface, ifc->name) != 0 ||
		    s->ifindex != ifc->index)
			continue;
		if (ii)
			break;
		if (s->ncand == 1 && ls_target_equal(&s->cand[0], t) &&
		    (src == NULL ? s->source.len == 0 : s->source.len != 0 &&
		    agg_sockaddr_equal((const struct sockaddr *)&s->source.ss,
		    (const struct sockaddr *)&src->ss)))
			break;
	}
	if (s == NULL && (s = ls_slot_new(ls, ifc, src)) == NULL)
		return;
	s->seen = 1;
	s->orphan = 0;
	if (!ii) {
		if (s->ncand == 0)
			ls_slot_set_targets(s, t, 1);
		return;
	}
	for (i = 0; i < ls->ntargets; i++)
		if (plan_pair_ok(&ls->cfg, ifc,
		    (const struct sockaddr *)&ls->targets[i].sa.ss))
			cand[n++] = ls->targets[i];
	ls_slot_set_targets(s, cand, n);
}

/* Whether any of the slot's targets is still a current one. */
static int ls_slot_has_current_target(const struct ls_slot *s)
{
	size_t i;

	for (i = 0; i < s->ncand; i++)
		if (ls_target_current(s->ls, &s->cand[i]))
			return 1;
	return 0;
}

/* A slot the plan no longer has: its interface went away or lost the
 * address it needs (the link goes now), or its target left DNS (the link
 * stays until it closes). */
static void ls_slot_unwanted(struct ls_slot *s)
{
	const struct agg_iface *ifc;
	char reason[160], addr[64];

	ifc = agg_ifaces_find(s->ls->ifs, s->iface);
	if (ifc == NULL || ifc->index != s->ifindex || !agg_iface_is_up(ifc)) {
		snprintf(reason, sizeof(reason), "interface %s went away",
		    s->iface);
	} else if (!ls_slot_has_current_target(s)) {
		if (s->link == NULL)
			ls_slot_free(s, NULL);
		else
			s->orphan = 1;
		return;
	} else if (s->source.len != 0 && !agg_iface_has_addr(ifc,
	    (const struct sockaddr *)&s->source.ss)) {
		agg_sockaddr_format((const struct sockaddr *)&s->source.ss, 0,
		    addr, sizeof(addr));
		snprintf(reason, sizeof(reason), "interface %s lost address %s",
		    s->iface, addr);
	} else {
		snprintf(reason, sizeof(reason), "interface %s lost its %s "
		    "address", s->iface, s->cur.sa.ss.ss_family == AF_INET6 ?
		    "IPv6" : "IPv4");
	}
	ls_slot_free(s, reason);
}

/* A link whose local address left its interface is dead: re-dial now. */
static void ls_slot_check_source(struct ls_slot *s)
{
	const struct agg_iface *ifc;
	char reason[160], addr[64];

	if (s->link == NULL || s->bound.len == 0 || s->loopback)
		return;
	ifc = agg_ifaces_find(s->ls->ifs, s->iface);
	if (ifc == NULL || agg_iface_has_addr(ifc,
	    (const struct sockaddr *)&s->bound.ss))
		return;
	agg_sockaddr_format((const struct sockaddr *)&s->bound.ss, 0, addr,
	    sizeof(addr));
	snprintf(reason, sizeof(reason), "interface %s lost address %s",
	    s->iface, addr);
	ls_slot_drop_link(s, reason);
	s->backoff_ms = s->ls->cfg.backoff_min_ms;
}

/* Records why a server with addresses got no link at all. */
static void ls_check_reachable(struct agg_linkset *ls)
{
	struct ls_server *srv;
	struct ls_slot *s;
	char url[300];
	size_t i;

	TAILQ_FOREACH(srv, &ls->servers, entry) {
		if (srv->naddrs == 0)
			continue;
		TAILQ_FOREACH(s, &ls->slots, entry) {
			for (i = 0; i < s->ncand; i++)
				if (s->cand[i].srv == srv)
					break;
			if (!s->orphan && i < s->ncand)
				break;
		}
		if (s != NULL)
			continue;
		ls_server_label(srv, url, sizeof(url));
		for (i = 0; i < ls->cfg.nifaces; i++)
			if (agg_ifaces_find(ls->ifs, ls->cfg.ifaces[i]) == NULL)
				break;
		if (i < ls->cfg.nifaces)
			ls_error(ls, "cannot reach %s: no interface named %s",
			    url, ls->cfg.ifaces[i]);
		else
			ls_error(ls, "cannot reach %s: no usable interface",
			    url);
	}
}

/* Brings the slots in line with the interfaces and targets. */
static void ls_reconcile(struct agg_linkset *ls)
{
	struct agg_linkset_plan_slot plan[LS_MAX_SLOTS];
	struct agg_sockaddr addrs[LS_MAX_TARGETS];
	struct ls_slot *s, *next;
	size_t i, n;

	ls_collect_targets(ls);
	for (i = 0; i < ls->ntargets; i++)
		addrs[i] = ls->targets[i].sa;
	n = agg_linkset_plan(&ls->cfg, ls->ifs, addrs, ls->ntargets, plan,
	    LS_MAX_SLOTS);
	if (n > LS_MAX_SLOTS) {
		if (!ls->warned_cap)
			agg_log_warn("the link filter allows %zu links; using "
			    "the first %d", n, LS_MAX_SLOTS);
		ls->warned_cap = 1;
		n = LS_MAX_SLOTS;
	}
	TAILQ_FOREACH(s, &ls->slots, entry)
		s->seen = 0;
	for (i = 0; i < n; i++)
		ls_plan_apply(ls, &plan[i]);
	for (s = TAILQ_FIRST(&ls->slots); s != NULL; s = next) {
		next = TAILQ_NEXT(s, entry);
		if (!s->seen)
			ls_slot_unwanted(s);
	}
	TAILQ_FOREACH(s, &ls->slots, entry) {
		if (!s->seen)
			continue;
		ls_slot_check_source(s);
		if (!ls_slot_busy(s) && !evtimer_pending(s->timer, NULL))
			ls_slot_dial(s);
	}
	ls_check_reachable(ls);
}

/* Lists the interfaces again and reconciles. */
void agg_linkset_rescan(struct agg_linkset *ls)
{
	struct agg_iface_list *tmp;
	char err[256];
	int r;

	if (ls->scan != NULL)
		r = ls->scan(ls->scratch, err, sizeof(err), ls->scan_arg);
	else
		r = agg_ifaces_scan(ls->scratch, err, sizeof(err));
	if (r == -1) {
		ls_error(ls, "%s", err);
		return;
	}
	tmp = ls->ifs;
	ls->ifs = ls->scratch;
	ls->scratch = tmp;
	ls_reconcile(ls);
}

/* Interfaces may have changed. */
static void ls_watch_cb(void *arg)
{
	agg_linkset_rescan(arg);
}

/* Replaces the interface scan and rescans. */
void agg_linkset_set_scanner(struct agg_linkset *ls, agg_linkset_scan_fn fn,
    void *arg)
{
	ls->scan = fn;
	ls->scan_arg = arg;
	agg_linkset_rescan(ls);
}

/* Arms a server's next resolution. */
static void ls_server_schedule(struct ls_server *srv, unsigned ms)
{
	struct timeval tv;

	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	evtimer_add(srv->timer, &tv);
}

/* Names what is resolved, for messages: the server URL, or through a
 * proxy "HTTP proxy proxy.corp (for tls://srv:5800)". */
static void ls_resolve_label(const struct ls_server *srv, char *out,
    size_t outlen)
{
	char url[300];

	ls_server_label(srv, url, sizeof(url));
	if (srv->ls->have_proxy)
		snprintf(out, outlen, "HTTP proxy %.256s (for %s)",
		    srv->ls->proxy.host, url);
	else
		snprintf(out, outlen, "%s", url);
}

/* Takes a resolution's addresses (or keeps the old ones on failure). */
static void ls_server_resolved(struct ls_server *srv, const char *error,
    const struct agg_sockaddr *addrs, size_t n)
{
	struct agg_linkset *ls = srv->ls;
	const struct sockaddr *sa;
	char url[600];
	size_t i, j, k = 0;

	ls_resolve_label(srv, url, sizeof(url));
	if (error != NULL) {
		ls_error(ls, "cannot resolve %s: %s", url, error);
		if (!srv->literal)
			ls_server_schedule(srv, srv->naddrs > 0 ?
			    LS_RESOLVE_MS : LS_RESOLVE_RETRY_MS);
		return;
	}
	for (i = 0; i < n; i++) {
		sa = (const struct sockaddr *)&addrs[i].ss;
		if (ls->cfg.family != 0 && sa->sa_family != ls->cfg.family)
			continue;
		for (j = 0; j < i; j++)
			if (agg_sockaddr_equal(sa,
			    (const struct sockaddr *)&addrs[j].ss))
				break;
		if (j < i || k >= LS_MAX_ADDRS)
			continue;
		srv->addrs[k++] = addrs[i];
	}
	if (k == 0) {
		ls_error(ls, "cannot resolve %s: no %saddress", url,
		    ls->cfg.family == AF_INET ? "IPv4 " :
		    ls->cfg.family == AF_INET6 ? "IPv6 " : "");
		if (!srv->literal)
			ls_server_schedule(srv, srv->naddrs > 0 ?
			    LS_RESOLVE_MS : LS_RESOLVE_RETRY_MS);
		return;
	}
	srv->naddrs = k;
	if (!srv->literal)
		ls_server_schedule(srv, LS_RESOLVE_MS);
	ls_reconcile(ls);
}

/* evdns answered (or the request was cancelled). */
static void ls_resolve_cb(int result, struct evutil_addrinfo *res, void *arg)
{
	struct agg_sockaddr addrs[LS_MAX_ADDRS];
	struct ls_resolve *rq = arg;
	struct ls_server *srv = rq->srv;
	struct evutil_addrinfo *ai;
	size_t n = 0;

	free(rq);
	if (srv == NULL) {
		if (res != NULL)
			evutil_freeaddrinfo(res);
		return;
	}
	srv->pending = NULL;
	srv->req = NULL;
	for (ai = res; ai != NULL && n < LS_MAX_ADDRS; ai = ai->ai_next)
		if (agg_sockaddr_set(&addrs[n], ai->ai_addr) == 0)
			n++;
	if (res != NULL)
		evutil_freeaddrinfo(res);
	ls_server_resolved(srv, result != 0 ? evutil_gai_strerror(result) :
	    NULL, addrs, n);
}

/* Starts resolving a server's host name with evdns. */
static void ls_server_resolve(struct ls_server *srv)
{
	struct evutil_addrinfo hints;
	struct ls_resolve *rq;
	int family = srv->ls->cfg.family;

	if (srv->pending != NULL)
		return;
	if ((rq = calloc(1, sizeof(*rq))) == NULL) {
		ls_server_resolved(srv, "out of memory", NULL, 0);
		return;
	}
	rq->srv = srv;
	srv->pending = rq;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = family != 0 ? family : AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	hints.ai_flags = EVUTIL_AI_NUMERICSERV;
	/* The answer may come before this returns (hosts file); then the
	 * request handle is NULL. */
	srv->req = evdns_getaddrinfo(srv->ls->dns, srv->dial_host,
	    srv->dial_port, &hints, ls_resolve_cb, rq);
}

/* Time to resolve a server's host name again. */
static void ls_server_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	ls_server_resolve(arg);
}

/* Resolves an address literal at once; 1 if the host is one, 0 if it is
 * a name, -1 with a reason in err otherwise. */
static int ls_server_literal(struct ls_server *srv, char *err, size_t errlen)
{
	struct agg_sockaddr addrs[LS_MAX_ADDRS];
	struct addrinfo hints, *res, *ai;
	char url[600];
	size_t n = 0;
	int r;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
	r = getaddrinfo(srv->dial_host, srv->dial_port, &hints, &res);
	if (r == EAI_NONAME)
		return 0;
	if (r != 0) {
		ls_resolve_label(srv, url, sizeof(url));
		snprintf(err, errlen, "cannot resolve %s: %s", url,
		    gai_strerror(r));
		return -1;
	}
	for (ai = res; ai != NULL && n < LS_MAX_ADDRS; ai = ai->ai_next)
		if (agg_sockaddr_set(&addrs[n], ai->ai_addr) == 0)
			n++;
	freeaddrinfo(res);
	srv->literal = 1;
	ls_server_resolved(srv, NULL, addrs, n);
	return 1;
}

/* The dial steps of a scheme, or NULL if links cannot use it yet. */
static const struct ls_scheme *ls_scheme_find(enum agg_url_scheme scheme)
{
	size_t i;

	for (i = 0; i < sizeof(ls_schemes) / sizeof(ls_schemes[0]); i++)
		if (ls_schemes[i].scheme == scheme)
			return &ls_schemes[i];
	return NULL;
}

/* Frees a server, abandoning its DNS request. */
static void ls_server_free(struct ls_server *srv)
{
	if (srv->pending != NULL) {
		srv->pending->srv = NULL;
		if (srv->req != NULL)
			evdns_getaddrinfo_cancel(srv->req);
	}
	event_free(srv->timer);
	free(srv);
}

/* A usbhost's failure becomes the link set's last error. */
static void ls_usb_error_cb(const char *message, void *arg)
{
	ls_error(arg, "%s", message);
}

/* Adds a usb:// endpoint: usbhost.c finds the device and keeps its link. */
static int ls_add_usb(struct agg_linkset *ls, const struct agg_url *url,
    char *err, size_t errlen)
{
	if (ls->nusb == LS_MAX_USB) {
		snprintf(err, errlen, "too many usb:// URLs (at most %d)",
		    LS_MAX_USB);
		return -1;
	}
	if ((ls->usb[ls->nusb] = agg_usbhost_new(ls->base, ls->session, url,
	    ls_usb_error_cb, ls)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	ls->nusb++;
	return 0;
}

/* Adds a server endpoint. */
int agg_linkset_add_server(struct agg_linkset *ls, const struct agg_url *url,
    char *err, size_t errlen)
{
	const struct ls_scheme *scheme;
	struct ls_server *srv;
	char label[300];
	int r;

	if (url->scheme == AGG_URL_USB)
		return ls_add_usb(ls, url, err, errlen);
	if ((url->scheme == AGG_URL_TLS || url->scheme == AGG_URL_WSS) &&
	    ls->cfg.tls == NULL) {
		snprintf(err, errlen, "%s:// links need TLS settings",
		    agg_url_scheme_name(url->scheme));
		return -1;
	}
	if ((scheme = ls_scheme_find(url->scheme)) == NULL) {
		snprintf(err, errlen, "%s:// links are not supported yet",
		    agg_url_scheme_name(url->scheme));
		return -1;
	}
	if (url->host[0] == '\0') {
		snprintf(err, errlen, "%s has no host to connect to",
		    url->text);
		return -1;
	}
	if ((srv = calloc(1, sizeof(*srv))) == NULL ||
	    (srv->timer = evtimer_new(ls->base, ls_server_timer_cb, srv)) ==
	    NULL) {
		snprintf(err, errlen, "out of memory");
		free(srv);
		return -1;
	}
	srv->ls = ls;
	srv->url = *url;
	srv->scheme = scheme;
	srv->dial_host = ls->have_proxy ? ls->proxy.host : srv->url.host;
	srv->dial_port = ls->have_proxy ? ls->proxy.port : srv->url.port;
	TAILQ_INSERT_TAIL(&ls->servers, srv, entry);
	if ((r = ls_server_literal(srv, err, errlen)) != 0) {
		if (r == 1)
			return 0;
		TAILQ_REMOVE(&ls->servers, srv, entry);
		ls_server_free(srv);
		return -1;
	}
	if (ls->dns == NULL) {
		ls_server_label(srv, label, sizeof(label));
		snprintf(err, errlen, "cannot resolve %s: no DNS resolver",
		    label);
		TAILQ_REMOVE(&ls->servers, srv, entry);
		ls_server_free(srv);
		return -1;
	}
	ls_server_resolve(srv);
	return 0;
}

/* Creates a link set that adds its links to session. */
struct agg_linkset *agg_linkset_new(struct event_base *base,
    struct evdns_base *dns, struct agg_session *session,
    const struct agg_linkset_config *cfg)
{
	struct agg_linkset *ls;
	size_t i;

	if ((ls = calloc(1, sizeof(*ls))) == NULL)
		return NULL;
	ls->base = base;
	ls->dns = dns;
	ls->session = session;
	TAILQ_INIT(&ls->servers);
	TAILQ_INIT(&ls->slots);
	if (cfg != NULL)
		ls->cfg = *cfg;
	else
		agg_linkset_config_init(&ls->cfg);
	if (ls->cfg.backoff_min_ms == 0)
		ls->cfg.backoff_min_ms = 1;
	if (ls->cfg.backoff_max_ms < ls->cfg.backoff_min_ms)
		ls->cfg.backoff_max_ms = ls->cfg.backoff_min_ms;
	ls->cfg.ifaces = NULL;
	ls->cfg.nifaces = 0;
	if (cfg != NULL && cfg->http_proxy != NULL) {
		ls->proxy = *cfg->http_proxy;
		ls->have_proxy = 1;
	}
	ls->cfg.http_proxy = NULL;
	if (cfg != NULL && cfg->nifaces > 0) {
		if ((ls->ifaces = calloc(cfg->nifaces, sizeof(char *))) == NULL)
			goto fail;
		for (i = 0; i < cfg->nifaces; i++)
			if ((ls->ifaces[ls->cfg.nifaces++] =
			    strdup(cfg->ifaces[i])) == NULL)
				goto fail;
		ls->cfg.ifaces = (const char *const *)ls->ifaces;
	}
	if ((ls->ifs = calloc(1, sizeof(*ls->ifs))) == NULL ||
	    (ls->scratch = calloc(1, sizeof(*ls->scratch))) == NULL ||
	    (ls->watch = agg_ifwatch_new(base, LS_RESCAN_MS, ls_watch_cb,
	    ls)) == NULL)
		goto fail;
	agg_linkset_rescan(ls);
	return ls;
fail:
	agg_linkset_free(ls);
	return NULL;
}

/* The session's link_state callback forwards every event here. */
void agg_linkset_link_state(struct agg_linkset *ls, struct agg_link *link,
    enum agg_link_state state, const char *reason)
{
	struct ls_slot *s;
	char target[400];
	uint64_t now;
	size_t i;
	int stable;

	for (i = 0; i < ls->nusb; i++)
		if (agg_usbhost_link_state(ls->usb[i], link, state, reason))
			return;
	s = agg_link_user(link);
	if (s == NULL || s->ls != ls || s->link != link)
		return;
	now = ls_now_us();
	if (state == AGG_LINK_UP && s->up_since_us == 0)
		s->up_since_us = now;
	if (state != AGG_LINK_CLOSED)
		return;
	s->link = NULL;
	s->bound.len = 0;
	ls_target_label(&s->cur, target, sizeof(target));
	ls_error(ls, "%s %s via %s: %s", s->up_since_us ? "lost" :
	    "cannot reach", target, s->iface, reason ? reason : "closed");
	snprintf(s->why, sizeof(s->why), "%s", reason ? reason : "closed");
	s->why_us = now;
	stable = s->up_since_us != 0 &&
	    now - s->up_since_us >= (uint64_t)LS_STABLE_MS * 1000u;
	if (s->up_since_us == 0 && s->ncand > 1)
		s->next = (s->next + 1) % s->ncand;
	s->up_since_us = 0;
	if (s->orphan) {
		ls_slot_free(s, NULL);
		return;
	}
	if (agg_session_is_closed(ls->session))
		return;
	if (stable)
		s->backoff_ms = ls->cfg.backoff_min_ms;
	ls_slot_backoff(s);
}

/* The last failure. */
const char *agg_linkset_last_error(const struct agg_linkset *ls)
{
	return ls->last_error;
}

/* What each slot is doing, for a monitor. */
size_t agg_linkset_slots(const struct agg_linkset *ls,
    struct agg_linkset_slot_info *out, size_t cap)
{
	const struct ls_slot *s;
	size_t n = 0;

	TAILQ_FOREACH(s, &ls->slots, entry) {
		if (s->orphan || s->cur.srv == NULL)
			continue;
		if (n < cap) {
			struct agg_linkset_slot_info *o = &out[n];

			memset(o, 0, sizeof(*o));
			ls_link_name(s, o->name, sizeof(o->name));
			o->scheme = s->cur.srv->scheme->scheme;
			o->linked = s->link != NULL;
			o->dialling = s->conn != NULL;
			snprintf(o->why, sizeof(o->why), "%s", s->why);
			o->why_us = s->why_us;
		}
		n++;
	}
	return n;
}

/* Number of links wanted (dialling, handshaking or up). */
size_t agg_linkset_wanted(const struct agg_linkset *ls)
{
	const struct ls_slot *s;
	size_t n = 0;

	TAILQ_FOREACH(s, &ls->slots, entry)
		if (!s->orphan)
			n++;
	return n + ls->nusb;
}

/* Closes every link and stops dialling. */
void agg_linkset_free(struct agg_linkset *ls)
{
	struct ls_server *srv;
	struct ls_slot *s;
	size_t i;

	if (ls == NULL)
		return;
	for (i = 0; i < ls->nusb; i++)
		agg_usbhost_free(ls->usb[i]);
	while ((s = TAILQ_FIRST(&ls->slots)) != NULL)
		ls_slot_free(s, "link set closed");
	while ((srv = TAILQ_FIRST(&ls->servers)) != NULL) {
		TAILQ_REMOVE(&ls->servers, srv, entry);
		ls_server_free(srv);
	}
	agg_ifwatch_free(ls->watch);
	for (i = 0; ls->ifaces != NULL && i < ls->cfg.nifaces; i++)
		free(ls->ifaces[i]);
	free(ls->ifaces);
	free(ls->ifs);
	free(ls->scratch);
	free(ls);
}
