/*
 * ifaces.h: local network interfaces for agg-client's links. A scan lists
 * every interface with its flags and IPv4/IPv6 addresses (getifaddrs); a
 * watch calls back when interfaces or addresses may have changed (rtnetlink
 * messages, debounced, plus a periodic tick as a safety net).
 */
#ifndef AGG_IFACES_H
#define AGG_IFACES_H

#include <stddef.h>
#include <net/if.h>
#include <sys/socket.h>

struct event_base;
struct agg_ifwatch;

#define AGG_IFACE_MAX_ADDRS 16
#define AGG_IFACES_MAX 64

/* A socket address with its length. */
struct agg_sockaddr {
	struct sockaddr_storage ss;
	socklen_t len;
};

/* One interface: name, index, IFF_* flags and its IP addresses. */
struct agg_iface {
	char name[IF_NAMESIZE];
	unsigned index;
	unsigned flags;
	size_t naddrs;
	struct agg_sockaddr addrs[AGG_IFACE_MAX_ADDRS];
};

/* The interfaces of the host, in the order the kernel lists them. */
struct agg_iface_list {
	size_t n;
	struct agg_iface v[AGG_IFACES_MAX];
};

/* Fills out with the host's interfaces; -1 with a reason in err. */
int agg_ifaces_scan(struct agg_iface_list *out, char *err, size_t errlen);
/* Adds an interface to a list (for fake lists in tests); NULL when full. */
struct agg_iface *agg_ifaces_add(struct agg_iface_list *list,
    const char *name, unsigned index, unsigned flags);
/* Adds a numeric address ("192.0.2.1", "2001:db8::1") to an interface;
 * -1 if it does not parse or the interface is full. */
int agg_iface_add_addr(struct agg_iface *ifc, const char *addr);
/* The interface called name, or NULL. */
const struct agg_iface *agg_ifaces_find(const struct agg_iface_list *list,
    const char *name);
/* Whether the interface is up and running. */
int agg_iface_is_up(const struct agg_iface *ifc);
/* Whether the interface has the address (ports are ignored). */
int agg_iface_has_addr(const struct agg_iface *ifc, const struct sockaddr *sa);
/* The interface's first address that can reach dst (same family, not
 * IPv6 link-local unless dst is), or NULL. */
const struct agg_sockaddr *agg_iface_source_for(const struct agg_iface *ifc,
    const struct sockaddr *dst);

/* Fills a from a sockaddr of a known family; -1 for other families. */
int agg_sockaddr_set(struct agg_sockaddr *a, const struct sockaddr *sa);
/* Whether two addresses are equal (family, address, port, scope). */
int agg_sockaddr_equal(const struct sockaddr *a, const struct sockaddr *b);
/* Whether the address is a loopback address (127/8, ::1, ::ffff:127/104). */
int agg_sockaddr_is_loopback(const struct sockaddr *sa);
/* Whether the address is an IPv6 link-local address (fe80::/10). */
int agg_sockaddr_is_link_local(const struct sockaddr *sa);
/* Formats "1.2.3.4:port", "[v6]:port" (with_port) or the bare address;
 * IPv4-mapped IPv6 addresses are shown as IPv4. */
void agg_sockaddr_format(const struct sockaddr *sa, int with_port, char *out,
    size_t outlen);

/* Called when the interfaces may have changed. */
typedef void (*agg_ifwatch_cb)(void *arg);

/* Watches rtnetlink for link and address changes (calling back at most
 * every 100 ms) and calls back every period_ms anyway (0: never). Without
 * rtnetlink only the periodic call remains. NULL on failure. */
struct agg_ifwatch *agg_ifwatch_new(struct event_base *base,
    unsigned period_ms, agg_ifwatch_cb cb, void *arg);
/* Whether the watch has an rtnetlink socket. */
int agg_ifwatch_has_netlink(const struct agg_ifwatch *w);
/* Stops watching. */
void agg_ifwatch_free(struct agg_ifwatch *w);

#endif
