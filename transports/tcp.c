/*
 * tcp.c: TCP links: a listener that hands accepted connections over as
 * bufferevents, and a non-blocking connect that can pin its socket to an
 * interface. See tcp.h.
 */
#include "tcp.h"

#include <sys/types.h>
#include <sys/socket.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "agg/log.h"
#include "agg/url.h"
#include "ifaces.h"

#define TCP_LISTEN_MAX 8
#define TCP_ACCEPT_PAUSE_MS 1000
#define TCP_KEEPALIVE_IDLE_S 10
#define TCP_KEEPALIVE_INTVL_S 5
#define TCP_KEEPALIVE_CNT 3
#define TCP_LOWAT_BYTES (128 * 1024)
/* Longest retransmission interval of a link socket (Linux >= 6.15; older
 * kernels refuse the option and keep their 120 s). */
#define TCP_RTO_MAX_LINK_MS 1000
#ifndef TCP_RTO_MAX_MS
#define TCP_RTO_MAX_MS 44
#endif
/* The kernel's TCP_CA_NAME_MAX, with its terminating NUL. */
#define TCP_CONGESTION_MAX 16
#define TCP_CONGESTION_LIST "/proc/sys/net/ipv4/tcp_available_congestion_control"

struct agg_tcp_listener {
	struct event_base *base;
	struct evconnlistener *lev[TCP_LISTEN_MAX];
	size_t n;
	struct event *resume;    /* re-enables accepting after a pause */
	agg_tcp_accept_cb cb;
	void *arg;
	int port;
};

struct agg_tcp_connect {
	struct bufferevent *bev;
	struct event *timer;
	agg_tcp_connect_cb cb;
	void *arg;
};

/* The congestion control of every link socket, empty: the system's. */
static char tcp_congestion[TCP_CONGESTION_MAX];

/* strerror() with a lower-case first letter, as link reasons are written. */
static void tcp_reason(int e, char *out, size_t outlen)
{
	snprintf(out, outlen, "%s", strerror(e));
	out[0] = (char)tolower((unsigned char)out[0]);
}

/* Applies the link socket options (nodelay, keepalive, notsent lowat,
 * retransmission backoff, congestion control). */
void agg_tcp_tune(int fd)
{
	int one = 1, v;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
#ifdef TCP_KEEPIDLE
	v = TCP_KEEPALIVE_IDLE_S;
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &v, sizeof(v));
	v = TCP_KEEPALIVE_INTVL_S;
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &v, sizeof(v));
	v = TCP_KEEPALIVE_CNT;
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &v, sizeof(v));
#endif
#ifdef TCP_NOTSENT_LOWAT
	v = TCP_LOWAT_BYTES;
	setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &v, sizeof(v));
#endif
	/* A silently blackholed link backs off its retransmissions to many
	 * seconds; when the path returns, nothing crosses it until the next
	 * one. At most a second apart, the link is back within a second. */
	v = TCP_RTO_MAX_LINK_MS;
	setsockopt(fd, IPPROTO_TCP, TCP_RTO_MAX_MS, &v, sizeof(v));
	if (tcp_congestion[0] != '\0')
		setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, tcp_congestion,
		    (socklen_t)strlen(tcp_congestion));
}

/* Reads the kernel's list of congestion controls into out ("?" if none). */
static void tcp_congestion_available(char *out, size_t outlen)
{
	FILE *f = fopen(TCP_CONGESTION_LIST, "r");
	size_t n = 0;

	if (f != NULL) {
		n = fread(out, 1, outlen - 1, f);
		fclose(f);
	}
	out[n] = '\0';
	while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' '))
		out[--n] = '\0';
	if (n == 0)
		snprintf(out, outlen, "?");
}

/* Checks name on a scratch socket and uses it for every link from now on. */
int agg_tcp_set_congestion(const char *name, char *err, size_t errlen)
{
	char avail[256], reason[96];
	int fd, e = 0;

	if (name[0] == '\0' || strlen(name) >= TCP_CONGESTION_MAX) {
		e = ENOENT;
	} else if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) ==
	    -1) {
		e = errno;
	} else {
		if (setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, name,
		    (socklen_t)strlen(name)) == -1)
			e = errno;
		close(fd);
	}
	if (e == 0) {
		snprintf(tcp_congestion, sizeof(tcp_congestion), "%s", name);
		return 0;
	}
	tcp_congestion_available(avail, sizeof(avail));
	if (e == ENOENT)
		snprintf(err, errlen, "the kernel has no such congestion "
		    "control (available: %.200s)", avail);
	else if (e == EPERM)
		snprintf(err, errlen, "not allowed for this user (see "
		    "net.ipv4.tcp_allowed_congestion_control)");
	else {
		tcp_reason(e, reason, sizeof(reason));
		snprintf(err, errlen, "%s", reason);
	}
	return -1;
}

/* Formats "scheme://address:port" for messages about a listening socket. */
static void tcp_listen_label(const struct agg_url *url,
    const struct sockaddr *sa, char *out, size_t outlen)
{
	char addr[64];

	agg_sockaddr_format(sa, 1, addr, sizeof(addr));
	snprintf(out, outlen, "%s://%s", agg_url_scheme_name(url->scheme),
	    addr);
}

/* Hands an accepted connection to the owner as a bufferevent. */
static void tcp_accept_cb(struct evconnlistener *lev, evutil_socket_t fd,
    struct sockaddr *sa, int socklen, void *arg)
{
	struct agg_tcp_listener *l = arg;
	struct bufferevent *bev;
	char peer[64];

	(void)lev;
	(void)socklen;
	agg_tcp_tune(fd);
	agg_sockaddr_format(sa, 1, peer, sizeof(peer));
	if ((bev = bufferevent_socket_new(l->base, fd,
	    BEV_OPT_CLOSE_ON_FREE)) == NULL) {
		agg_log_warn("cannot take the connection from %s: out of "
		    "memory", peer);
		evutil_closesocket(fd);
		return;
	}
	l->cb(bev, peer, l->arg);
}

/* Accepting failed: out of descriptors or memory pauses it for a while,
 * since the pending connection would wake the loop again at once. */
static void tcp_accept_error_cb(struct evconnlistener *lev, void *arg)
{
	struct agg_tcp_listener *l = arg;
	struct timeval tv = { TCP_ACCEPT_PAUSE_MS / 1000,
	    (TCP_ACCEPT_PAUSE_MS % 1000) * 1000 };
	int e = EVUTIL_SOCKET_ERROR();
	size_t i;

	(void)lev;
	if (e != EMFILE && e != ENFILE && e != ENOBUFS && e != ENOMEM) {
		agg_log_warn("cannot accept a connection: %s", strerror(e));
		return;
	}
	agg_log_warn("cannot accept a connection: %s; pausing for %d ms",
	    strerror(e), TCP_ACCEPT_PAUSE_MS);
	for (i = 0; i < l->n; i++)
		evconnlistener_disable(l->lev[i]);
	evtimer_add(l->resume, &tv);
}

/* The accept pause is over. */
static void tcp_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct agg_tcp_listener *l = arg;
	size_t i;

	(void)fd;
	(void)what;
	for (i = 0; i < l->n; i++)
		evconnlistener_enable(l->lev[i]);
}

/* Sets the port of an IPv4 or IPv6 address. */
static void tcp_set_port(struct sockaddr *sa, int port)
{
	if (sa->sa_family == AF_INET)
		((struct sockaddr_in *)sa)->sin_port = htons((uint16_t)port);
	else if (sa->sa_family == AF_INET6)
		((struct sockaddr_in6 *)sa)->sin6_port = htons((uint16_t)port);
}

/* The port of an IPv4 or IPv6 address. */
static int tcp_get_port(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)sa)->sin_port);
	if (sa->sa_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
	return 0;
}

/* Opens one listening socket on sa; dualstack clears IPV6_V6ONLY. On
 * failure returns the errno, with the reason in err. */
static int tcp_listen_addr(struct agg_tcp_listener *l,
    const struct agg_url *url, struct sockaddr *sa, socklen_t len,
    int dualstack, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	struct evconnlistener *lev;
	socklen_t sslen = sizeof(ss);
	char label[96];
	int fd, one = 1, v6only = !dualstack, e;

	if (l->n >= TCP_LISTEN_MAX)
		return 0;
	if (l->port != 0)
		tcp_set_port(sa, l->port);
	tcp_listen_label(url, sa, label, sizeof(label));
	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    IPPROTO_TCP);
	if (fd == -1)
		goto fail;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (sa->sa_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6,
	    IPV6_V6ONLY, &v6only, sizeof(v6only)) == -1)
		goto fail;
	if (bind(fd, sa, len) == -1 || listen(fd, SOMAXCONN) == -1)
		goto fail;
	if (l->port == 0 && getsockname(fd, (struct sockaddr *)&ss,
	    &sslen) == 0)
		l->port = tcp_get_port((struct sockaddr *)&ss);
	lev = evconnlistener_new(l->base, tcp_accept_cb, l,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
	if (lev == NULL) {
		errno = ENOMEM;
		goto fail;
	}
	evconnlistener_set_error_cb(lev, tcp_accept_error_cb);
	l->lev[l->n++] = lev;
	tcp_set_port(sa, l->port);
	tcp_listen_label(url, sa, label, sizeof(label));
	agg_log_info("listening on %s", label);
	return 0;
fail:
	e = errno;
	if (fd != -1)
		close(fd);
	snprintf(err, errlen, "cannot listen on %s: %s", label, strerror(e));
	return e;
}

/* Listens on every address: one dual-stack IPv6 socket, or IPv4 where
 * the host has no IPv6. */
static int tcp_listen_any(struct agg_tcp_listener *l,
    const struct agg_url *url, char *err, size_t errlen)
{
	struct sockaddr_in6 sin6;
	struct sockaddr_in sin;
	int e;

	memset(&sin6, 0, sizeof(sin6));
	sin6.sin6_family = AF_INET6;
	sin6.sin6_addr = in6addr_any;
	sin6.sin6_port = htons((uint16_t)atoi(url->port));
	e = tcp_listen_addr(l, url, (struct sockaddr *)&sin6, sizeof(sin6), 1,
	    err, errlen);
	if (e != EAFNOSUPPORT)
		return e == 0 ? 0 : -1;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_ANY);
	sin.sin_port = sin6.sin6_port;
	return tcp_listen_addr(l, url, (struct sockaddr *)&sin, sizeof(sin), 0,
	    err, errlen) == 0 ? 0 : -1;
}

/* Listens on every address the URL's host resolves to. */
static int tcp_listen_host(struct agg_tcp_listener *l,
    const struct agg_url *url, char *err, size_t errlen)
{
	struct addrinfo hints, *res, *ai, *prev;
	int r;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	if ((r = getaddrinfo(url->host, url->port, &hints, &res)) != 0) {
		snprintf(err, errlen, "cannot listen on %s://%s%s%s:%s: %s",
		    agg_url_scheme_name(url->scheme),
		    strchr(url->host, ':') ? "[" : "", url->host,
		    strchr(url->host, ':') ? "]" : "", url->port,
		    r == EAI_SYSTEM ? strerror(errno) : gai_strerror(r));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		for (prev = res; prev != ai; prev = prev->ai_next)
			if (agg_sockaddr_equal(prev->ai_addr, ai->ai_addr))
				break;
		if (prev != ai)
			continue;
		if (tcp_listen_addr(l, url, ai->ai_addr, ai->ai_addrlen, 0,
		    err, errlen) != 0) {
			freeaddrinfo(res);
			return -1;
		}
	}
	freeaddrinfo(res);
	return 0;
}

/* Listens on url's host and port. */
struct agg_tcp_listener *agg_tcp_listen(struct event_base *base,
    const struct agg_url *url, agg_tcp_accept_cb cb, void *arg, char *err,
    size_t errlen)
{
	struct agg_tcp_listener *l;
	int r;

	if ((l = calloc(1, sizeof(*l))) == NULL ||
	    (l->resume = evtimer_new(base, tcp_resume_cb, l)) == NULL) {
		snprintf(err, errlen, "cannot listen on %s: out of memory",
		    url->text);
		free(l);
		return NULL;
	}
	l->base = base;
	l->cb = cb;
	l->arg = arg;
	if (url->host[0] == '\0' || strcmp(url->host, "::") == 0)
		r = tcp_listen_any(l, url, err, errlen);
	else
		r = tcp_listen_host(l, url, err, errlen);
	if (r == -1) {
		agg_tcp_listener_free(l);
		return NULL;
	}
	return l;
}

/* The port the listener is bound to. */
int agg_tcp_listener_port(const struct agg_tcp_listener *l)
{
	return l->port;
}

/* Stops listening. */
void agg_tcp_listener_free(struct agg_tcp_listener *l)
{
	size_t i;

	if (l == NULL)
		return;
	for (i = 0; i < l->n; i++)
		evconnlistener_free(l->lev[i]);
	event_free(l->resume);
	free(l);
}

/* Pins the socket to an interface and binds it to a source address as
 * asked; -1 with a reason in err. */
static int tcp_dial_bind(int fd, const struct agg_tcp_dial_opts *opts,
    char *err, size_t errlen)
{
	const struct sockaddr *bind_to = opts->local;
	struct agg_sockaddr src;
	char reason[96], addr[64];
	int one = 1;

	if (opts->iface != NULL && opts->iface[0] != '\0' &&
	    setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, opts->iface,
	    (socklen_t)strlen(opts->iface) + 1) == -1) {
		if ((errno != EPERM && errno != EACCES) ||
		    (bind_to == NULL && opts->fallback == NULL)) {
			tcp_reason(errno, reason, sizeof(reason));
			snprintf(err, errlen, "cannot bind to interface %s: %s",
			    opts->iface, reason);
			return -1;
		}
		if (bind_to == NULL)
			bind_to = opts->fallback;
	}
	if (bind_to == NULL)
		return 0;
	if (agg_sockaddr_set(&src, bind_to) == -1) {
		snprintf(err, errlen, "cannot bind to a source address of "
		    "family %d", bind_to->sa_family);
		return -1;
	}
	tcp_set_port((struct sockaddr *)&src.ss, 0);
#ifdef IP_BIND_ADDRESS_NO_PORT
	/* The port is picked at connect time, so that sources bound to the
	 * same address do not run out of ports early. */
	setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
#endif
	(void)one;
	if (bind(fd, (struct sockaddr *)&src.ss, src.len) == -1) {
		tcp_reason(errno, reason, sizeof(reason));
		agg_sockaddr_format(bind_to, 0, addr, sizeof(addr));
		snprintf(err, errlen, "cannot bind to %s: %s", addr, reason);
		return -1;
	}
	return 0;
}

/* Ends a connect: hands the connected bufferevent over, or the reason. */
static void tcp_connect_finish(struct agg_tcp_connect *c, const char *reason)
{
	struct bufferevent *bev = c->bev;
	agg_tcp_connect_cb cb = c->cb;
	void *arg = c->arg;

	event_free(c->timer);
	free(c);
	if (reason != NULL) {
		bufferevent_free(bev);
		cb(NULL, reason, arg);
		return;
	}
	bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
	bufferevent_disable(bev, EV_READ | EV_WRITE);
	cb(bev, NULL, arg);
}

/* The connect finished, one way or the other. */
static void tcp_connect_event_cb(struct bufferevent *bev, short what,
    void *arg)
{
	struct agg_tcp_connect *c = arg;
	char reason[96];
	int e;

	(void)bev;
	if (what & BEV_EVENT_CONNECTED) {
		tcp_connect_finish(c, NULL);
		return;
	}
	e = EVUTIL_SOCKET_ERROR();
	if (e != 0)
		tcp_reason(e, reason, sizeof(reason));
	else
		snprintf(reason, sizeof(reason), "%s", what & BEV_EVENT_EOF ?
		    "connection closed" : "connection failed");
	tcp_connect_finish(c, reason);
}

/* The connect took too long. */
static void tcp_connect_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	char reason[96];

	(void)fd;
	(void)what;
	tcp_reason(ETIMEDOUT, reason, sizeof(reason));
	tcp_connect_finish(arg, reason);
}

/* Connects to addr without blocking, as opts say. */
struct agg_tcp_connect *agg_tcp_dial(struct event_base *base,
    const struct sockaddr *addr, socklen_t addrlen,
    const struct agg_tcp_dial_opts *opts, agg_tcp_connect_cb cb, void *arg,
    char *err, size_t errlen)
{
	struct agg_tcp_connect *c = NULL;
	struct timeval tv;
	char reason[96];
	int fd;

	fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, IPPROTO_TCP);
	if (fd == -1) {
		tcp_reason(errno, reason, sizeof(reason));
		snprintf(err, errlen, "cannot create a socket: %s", reason);
		return NULL;
	}
	agg_tcp_tune(fd);
	if (tcp_dial_bind(fd, opts, err, errlen) == -1)
		goto fail;
	/* Connecting here rather than in bufferevent_socket_connect() keeps
	 * the errno of a failure at once; libevent then waits for the rest. */
	if (connect(fd, addr, addrlen) == -1 && errno != EINPROGRESS) {
		tcp_reason(errno, err, errlen);
		goto fail;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL ||
	    (c->timer = evtimer_new(base, tcp_connect_timeout_cb, c)) == NULL ||
	    (c->bev = bufferevent_socket_new(base, fd,
	    BEV_OPT_CLOSE_ON_FREE)) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	fd = -1;
	c->cb = cb;
	c->arg = arg;
	bufferevent_setcb(c->bev, NULL, NULL, tcp_connect_event_cb, c);
	if (bufferevent_socket_connect(c->bev, NULL, 0) == -1) {
		snprintf(err, errlen, "cannot wait for the connection");
		goto fail;
	}
	if (opts->timeout_ms > 0) {
		tv.tv_sec = (time_t)(opts->timeout_ms / 1000);
		tv.tv_usec = (suseconds_t)(opts->timeout_ms % 1000) * 1000;
		evtimer_add(c->timer, &tv);
	}
	return c;
fail:
	if (c != NULL) {
		if (c->bev != NULL)
			bufferevent_free(c->bev);
		if (c->timer != NULL)
			event_free(c->timer);
		free(c);
	}
	if (fd != -1)
		close(fd);
	return NULL;
}

/* Connects to addr without blocking, optionally pinned to an interface. */
struct agg_tcp_connect *agg_tcp_connect_start(struct event_base *base,
    const struct sockaddr *addr, socklen_t addrlen, const char *iface,
    const struct sockaddr *iface_addr, unsigned timeout_ms,
    agg_tcp_connect_cb cb, void *arg, char *err, size_t errlen)
{
	struct agg_tcp_dial_opts opts;

	memset(&opts, 0, sizeof(opts));
	opts.iface = iface;
	opts.fallback = iface_addr;
	opts.timeout_ms = timeout_ms;
	return agg_tcp_dial(base, addr, addrlen, &opts, cb, arg, err, errlen);
}

/* Abandons a connect in progress. */
void agg_tcp_connect_cancel(struct agg_tcp_connect *c)
{
	if (c == NULL)
		return;
	bufferevent_free(c->bev);
	event_free(c->timer);
	free(c);
}
