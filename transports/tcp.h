/*
 * tcp.h: TCP links. The listening side accepts connections for agg-server;
 * the dialing side connects one link, optionally bound to a local interface,
 * for agg-client. Every socket gets TCP_NODELAY, keepalive and a small
 * TCP_NOTSENT_LOWAT so that unsent bytes stay in libagg, which can still
 * move them to another link.
 */
#ifndef AGG_TCP_H
#define AGG_TCP_H

#include <stddef.h>
#include <sys/socket.h>

struct event_base;
struct bufferevent;
struct agg_url;
struct agg_tcp_listener;
struct agg_tcp_connect;

/* An accepted connection; the callee owns bev. peer is "addr:port". */
typedef void (*agg_tcp_accept_cb)(struct bufferevent *bev, const char *peer,
    void *arg);

/* Listens on url's host and port (empty host or "::": every address, IPv4
 * and IPv6). NULL with a one-line reason in err on failure, e.g.
 * "cannot listen on tcp://[::]:5800: Address already in use". */
struct agg_tcp_listener *agg_tcp_listen(struct event_base *base,
    const struct agg_url *url, agg_tcp_accept_cb cb, void *arg, char *err,
    size_t errlen);
/* Stops listening. */
void agg_tcp_listener_free(struct agg_tcp_listener *l);
/* The port the listener is bound to (useful after listening on port 0). */
int agg_tcp_listener_port(const struct agg_tcp_listener *l);

/* A finished connect: bev is connected (the callee owns it), or NULL with
 * a reason such as "connection refused". */
typedef void (*agg_tcp_connect_cb)(struct bufferevent *bev,
    const char *error, void *arg);

/* Connects to addr without blocking. iface (may be NULL) binds the socket
 * to that interface with SO_BINDTODEVICE, falling back to binding to
 * iface_addr (may be NULL) where that is not allowed. timeout_ms bounds
 * the connect. NULL if it failed at once (reason in err). */
struct agg_tcp_connect *agg_tcp_connect_start(struct event_base *base,
    const struct sockaddr *addr, socklen_t addrlen, const char *iface,
    const struct sockaddr *iface_addr, unsigned timeout_ms,
    agg_tcp_connect_cb cb, void *arg, char *err, size_t errlen);
/* How agg_tcp_dial() prepares the socket before connecting. */
struct agg_tcp_dial_opts {
	const char *iface;               /* SO_BINDTODEVICE, or NULL */
	const struct sockaddr *local;    /* always bound to, or NULL */
	const struct sockaddr *fallback; /* bound to if SO_BINDTODEVICE is
	                                    not allowed, or NULL */
	unsigned timeout_ms;             /* bounds the connect; 0: no bound */
};

/* Like agg_tcp_connect_start(), with a source address to bind to as well
 * (for one link per local address). Failures that happen at once return
 * NULL with the reason in err; later ones reach cb. cb never runs from
 * within this call. */
struct agg_tcp_connect *agg_tcp_dial(struct event_base *base,
    const struct sockaddr *addr, socklen_t addrlen,
    const struct agg_tcp_dial_opts *opts, agg_tcp_connect_cb cb, void *arg,
    char *err, size_t errlen);
/* Abandons a connect in progress (its callback will not run). */
void agg_tcp_connect_cancel(struct agg_tcp_connect *c);
/* Applies the link socket options (nodelay, keepalive, notsent lowat,
 * congestion control). */
void agg_tcp_tune(int fd);
/* Makes every link socket from now on use the TCP congestion control name
 * (TCP_CONGESTION, e.g. "cubic" or "bbr"). -1 with a one-line reason in err
 * if the kernel refuses it, e.g. "the kernel has no such congestion
 * control (available: reno cubic bbr)". */
int agg_tcp_set_congestion(const char *name, char *err, size_t errlen);

#endif
