/*
 * ifaces.c: local interfaces (getifaddrs) and a watch on their changes
 * (rtnetlink link and address groups). See ifaces.h.
 */
#include "ifaces.h"

#include <sys/types.h>
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef __linux__
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#endif

#include <event2/event.h>
#include <event2/util.h>

#include "agg/log.h"

#define IFWATCH_DEBOUNCE_MS 100
#define IFWATCH_BUF 8192

struct agg_ifwatch {
	int fd;                  /* rtnetlink socket, -1 if none */
	struct event *nl_ev;
	struct event *debounce;
	struct event *periodic;
	agg_ifwatch_cb cb;
	void *arg;
};

/* Adds an interface to a list; NULL when full. */
struct agg_iface *agg_ifaces_add(struct agg_iface_list *list,
    const char *name, unsigned index, unsigned flags)
{
	struct agg_iface *ifc;

	if (list->n >= AGG_IFACES_MAX)
		return NULL;
	ifc = &list->v[list->n++];
	memset(ifc, 0, sizeof(*ifc));
	snprintf(ifc->name, sizeof(ifc->name), "%s", name);
	ifc->index = index;
	ifc->flags = flags;
	return ifc;
}

/* Adds an address to an interface unless it is there already. */
static int iface_push_addr(struct agg_iface *ifc, const struct sockaddr *sa)
{
	struct agg_sockaddr a;

	if (agg_sockaddr_set(&a, sa) == -1)
		return -1;
	if (agg_iface_has_addr(ifc, sa))
		return 0;
	if (ifc->naddrs >= AGG_IFACE_MAX_ADDRS)
		return -1;
	ifc->addrs[ifc->naddrs++] = a;
	return 0;
}

/* Adds a numeric address to an interface. */
int agg_iface_add_addr(struct agg_iface *ifc, const char *addr)
{
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;

	memset(&sin, 0, sizeof(sin));
	memset(&sin6, 0, sizeof(sin6));
	if (inet_pton(AF_INET, addr, &sin.sin_addr) == 1) {
		sin.sin_family = AF_INET;
		return iface_push_addr(ifc, (struct sockaddr *)&sin);
	}
	if (inet_pton(AF_INET6, addr, &sin6.sin6_addr) == 1) {
		sin6.sin6_family = AF_INET6;
		if (IN6_IS_ADDR_LINKLOCAL(&sin6.sin6_addr))
			sin6.sin6_scope_id = ifc->index;
		return iface_push_addr(ifc, (struct sockaddr *)&sin6);
	}
	return -1;
}

/* The list entry for an interface name, added if new. */
static struct agg_iface *ifaces_get(struct agg_iface_list *list,
    const char *name, unsigned flags)
{
	char base[IF_NAMESIZE];
	size_t i;

	/* IPv4 labels ("eth0:1") belong to their interface. */
	snprintf(base, sizeof(base), "%s", name);
	base[strcspn(base, ":")] = '\0';
	for (i = 0; i < list->n; i++)
		if (strcmp(list->v[i].name, base) == 0)
			return &list->v[i];
	return agg_ifaces_add(list, base, if_nametoindex(base), flags);
}

/* Fills out with the host's interfaces. */
int agg_ifaces_scan(struct agg_iface_list *out, char *err, size_t errlen)
{
	struct ifaddrs *ifa, *p;
	struct agg_iface *ifc;

	out->n = 0;
	if (getifaddrs(&ifa) == -1) {
		snprintf(err, errlen, "cannot list interfaces: %s",
		    strerror(errno));
		return -1;
	}
	for (p = ifa; p != NULL; p = p->ifa_next) {
		if (p->ifa_name == NULL)
			continue;
		if ((ifc = ifaces_get(out, p->ifa_name, p->ifa_flags)) == NULL)
			break;
		if (strchr(p->ifa_name, ':') == NULL)
			ifc->flags = p->ifa_flags;
		if (p->ifa_addr != NULL && (p->ifa_addr->sa_family == AF_INET ||
		    p->ifa_addr->sa_family == AF_INET6))
			iface_push_addr(ifc, p->ifa_addr);
	}
	freeifaddrs(ifa);
	return 0;
}

/* The interface called name, or NULL. */
const struct agg_iface *agg_ifaces_find(const struct agg_iface_list *list,
    const char *name)
{
	size_t i;

	for (i = 0; i < list->n; i++)
		if (strcmp(list->v[i].name, name) == 0)
			return &list->v[i];
	return NULL;
}

/* Whether the interface is up and running. */
int agg_iface_is_up(const struct agg_iface *ifc)
{
	return (ifc->flags & (IFF_UP | IFF_RUNNING)) == (IFF_UP | IFF_RUNNING);
}

/* Whether two addresses are the same host (ports are ignored). */
static int sockaddr_same_host(const struct sockaddr *a,
    const struct sockaddr *b)
{
	const struct sockaddr_in6 *a6, *b6;

	if (a->sa_family != b->sa_family)
		return 0;
	if (a->sa_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
		    ((const struct sockaddr_in *)b)->sin_addr.s_addr;
	if (a->sa_family != AF_INET6)
		return 0;
	a6 = (const struct sockaddr_in6 *)a;
	b6 = (const struct sockaddr_in6 *)b;
	return memcmp(&a6->sin6_addr, &b6->sin6_addr,
	    sizeof(a6->sin6_addr)) == 0;
}

/* Whether the interface has the address. */
int agg_iface_has_addr(const struct agg_iface *ifc, const struct sockaddr *sa)
{
	size_t i;

	for (i = 0; i < ifc->naddrs; i++)
		if (sockaddr_same_host((const struct sockaddr *)
		    &ifc->addrs[i].ss, sa))
			return 1;
	return 0;
}

/* The interface's first address that can reach dst. */
const struct agg_sockaddr *agg_iface_source_for(const struct agg_iface *ifc,
    const struct sockaddr *dst)
{
	const struct sockaddr *sa;
	int want_ll;
	size_t i;

	want_ll = agg_sockaddr_is_link_local(dst);
	for (i = 0; i < ifc->naddrs; i++) {
		sa = (const struct sockaddr *)&ifc->addrs[i].ss;
		if (sa->sa_family != dst->sa_family)
			continue;
		if (agg_sockaddr_is_link_local(sa) && !want_ll)
			continue;
		return &ifc->addrs[i];
	}
	return NULL;
}

/* Fills a from a sockaddr of a known family. */
int agg_sockaddr_set(struct agg_sockaddr *a, const struct sockaddr *sa)
{
	memset(a, 0, sizeof(*a));
	if (sa->sa_family == AF_INET)
		a->len = sizeof(struct sockaddr_in);
	else if (sa->sa_family == AF_INET6)
		a->len = sizeof(struct sockaddr_in6);
	else
		return -1;
	memcpy(&a->ss, sa, a->len);
	return 0;
}

/* Whether two addresses are equal, ports and scopes included. */
int agg_sockaddr_equal(const struct sockaddr *a, const struct sockaddr *b)
{
	const struct sockaddr_in6 *a6, *b6;

	if (!sockaddr_same_host(a, b))
		return 0;
	if (a->sa_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_port ==
		    ((const struct sockaddr_in *)b)->sin_port;
	a6 = (const struct sockaddr_in6 *)a;
	b6 = (const struct sockaddr_in6 *)b;
	return a6->sin6_port == b6->sin6_port &&
	    a6->sin6_scope_id == b6->sin6_scope_id;
}

/* Whether the address is a loopback address. */
int agg_sockaddr_is_loopback(const struct sockaddr *sa)
{
	const struct in6_addr *a6;

	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr)
		    >> 24) == 127;
	if (sa->sa_family != AF_INET6)
		return 0;
	a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
	return IN6_IS_ADDR_LOOPBACK(a6) ||
	    (IN6_IS_ADDR_V4MAPPED(a6) && a6->s6_addr[12] == 127);
}

/* Whether the address is an IPv6 link-local address. */
int agg_sockaddr_is_link_local(const struct sockaddr *sa)
{
	return sa->sa_family == AF_INET6 && IN6_IS_ADDR_LINKLOCAL(
	    &((const struct sockaddr_in6 *)sa)->sin6_addr);
}

/* Formats an address, with its port if asked. */
void agg_sockaddr_format(const struct sockaddr *sa, int with_port, char *out,
    size_t outlen)
{
	const struct sockaddr_in6 *sin6;
	const struct sockaddr_in *sin;
	char host[INET6_ADDRSTRLEN];
	unsigned port;

	if (sa->sa_family == AF_INET) {
		sin = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		port = ntohs(sin->sin_port);
		if (with_port)
			snprintf(out, outlen, "%s:%u", host, port);
		else
			snprintf(out, outlen, "%s", host);
		return;
	}
	if (sa->sa_family != AF_INET6) {
		snprintf(out, outlen, "(address family %d)", sa->sa_family);
		return;
	}
	sin6 = (const struct sockaddr_in6 *)sa;
	port = ntohs(sin6->sin6_port);
	if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
		inet_ntop(AF_INET, &sin6->sin6_addr.s6_addr[12], host,
		    sizeof(host));
		if (with_port)
			snprintf(out, outlen, "%s:%u", host, port);
		else
			snprintf(out, outlen, "%s", host);
		return;
	}
	inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
	if (with_port)
		snprintf(out, outlen, "[%s]:%u", host, port);
	else
		snprintf(out, outlen, "%s", host);
}

/* The debounce delay has passed: the owner rescans. */
static void ifwatch_debounce_cb(evutil_socket_t fd, short what, void *arg)
{
	struct agg_ifwatch *w = arg;

	(void)fd;
	(void)what;
	w->cb(w->arg);
}

/* The periodic tick. */
static void ifwatch_periodic_cb(evutil_socket_t fd, short what, void *arg)
{
	struct agg_ifwatch *w = arg;

	(void)fd;
	(void)what;
	w->cb(w->arg);
}

/* Arms the debounce timer unless it is armed already. */
static void ifwatch_poke(struct agg_ifwatch *w)
{
	struct timeval tv = { 0, IFWATCH_DEBOUNCE_MS * 1000 };

	if (!evtimer_pending(w->debounce, NULL))
		evtimer_add(w->debounce, &tv);
}

/* Drops the rtnetlink socket; the periodic tick remains. */
static void ifwatch_close_netlink(struct agg_ifwatch *w)
{
	if (w->nl_ev != NULL)
		event_free(w->nl_ev);
	w->nl_ev = NULL;
	if (w->fd != -1)
		close(w->fd);
	w->fd = -1;
}

/* rtnetlink has messages: drain them all, then rescan soon. */
static void ifwatch_netlink_cb(evutil_socket_t fd, short what, void *arg)
{
	struct agg_ifwatch *w = arg;
	char buf[IFWATCH_BUF];
	ssize_t n;

	(void)what;
	for (;;) {
		n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n > 0)
			continue;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		/* ENOBUFS: messages were lost, which a rescan makes good. */
		if (n < 0 && errno == ENOBUFS)
			continue;
		agg_log_warn("rtnetlink: %s; watching interfaces by polling",
		    n == 0 ? "socket closed" : strerror(errno));
		ifwatch_close_netlink(w);
		break;
	}
	ifwatch_poke(w);
}

/* Opens the rtnetlink socket subscribed to link and address changes. */
static int ifwatch_open_netlink(struct agg_ifwatch *w, struct event_base *base)
{
#ifdef __linux__
	struct sockaddr_nl sa;
	int e;

	w->fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    NETLINK_ROUTE);
	if (w->fd == -1)
		return -1;
	memset(&sa, 0, sizeof(sa));
	sa.nl_family = AF_NETLINK;
	sa.nl_groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR;
	if (bind(w->fd, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
		e = errno;
		ifwatch_close_netlink(w);
		errno = e;
		return -1;
	}
	w->nl_ev = event_new(base, w->fd, EV_READ | EV_PERSIST,
	    ifwatch_netlink_cb, w);
	if (w->nl_ev == NULL || event_add(w->nl_ev, NULL) == -1) {
		ifwatch_close_netlink(w);
		return -1;
	}
	return 0;
#else
	(void)w;
	(void)base;
	return -1;
#endif
}

/* Starts watching the interfaces. */
struct agg_ifwatch *agg_ifwatch_new(struct event_base *base,
    unsigned period_ms, agg_ifwatch_cb cb, void *arg)
{
	struct agg_ifwatch *w;
	struct timeval tv;

	if ((w = calloc(1, sizeof(*w))) == NULL)
		return NULL;
	w->fd = -1;
	w->cb = cb;
	w->arg = arg;
	w->debounce = evtimer_new(base, ifwatch_debounce_cb, w);
	w->periodic = event_new(base, -1, EV_PERSIST, ifwatch_periodic_cb, w);
	if (w->debounce == NULL || w->periodic == NULL) {
		agg_ifwatch_free(w);
		return NULL;
	}
	if (period_ms > 0) {
		tv.tv_sec = (time_t)(period_ms / 1000);
		tv.tv_usec = (suseconds_t)(period_ms % 1000) * 1000;
		event_add(w->periodic, &tv);
	}
	if (ifwatch_open_netlink(w, base) == -1)
		agg_log_info("rtnetlink unavailable (%s); watching interfaces "
		    "by polling", strerror(errno));
	return w;
}

/* Whether the watch has an rtnetlink socket. */
int agg_ifwatch_has_netlink(const struct agg_ifwatch *w)
{
	return w->fd != -1;
}

/* Stops watching. */
void agg_ifwatch_free(struct agg_ifwatch *w)
{
	if (w == NULL)
		return;
	ifwatch_close_netlink(w);
	if (w->debounce != NULL)
		event_free(w->debounce);
	if (w->periodic != NULL)
		event_free(w->periodic);
	free(w);
}
