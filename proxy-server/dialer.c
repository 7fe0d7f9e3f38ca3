/*
 * dialer.c: from a stream the peer opened to a connected, spliced socket:
 * policy, name resolution, happy-eyeballs connects, one close path.
 */
#include "dialer.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include "agg/log.h"
#include "agg/session.h"
#include "agg/splice.h"
#include "agg/target.h"
#include "dnscache.h"
#include "policy.h"

/* Addresses of one name we try at most. */
#define DIAL_MAX_ADDRS 16
/* Host names whose addresses the dialer remembers. */
#define DIAL_CACHE_NAMES 256
/* Room for "name:port" and "[v6]:port". */
#define DIAL_TEXT_MAX 300

/* One connect to one address. */
struct dial_attempt {
	struct dial *dial;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	int fd;                    /* -1 unless connecting */
	struct event *ev;          /* writable: the connect finished */
};

enum dial_state {
	DIAL_RESOLVING,
	DIAL_CONNECTING,
	DIAL_SPLICED,
	DIAL_CLOSED,
};

struct dial {
	struct dialer *dialer;
	struct agg_stream *stream;     /* ours until answered */
	struct agg_splice *splice;     /* DIAL_SPLICED */
	enum dial_state state;
	uint32_t id;
	uint16_t port;
	char name[256];                /* host name; empty for an address */
	char text[DIAL_TEXT_MAX];      /* "host:port", for messages */
	struct evdns_getaddrinfo_request *req;
	struct event *timeout;
	struct event *fallback;
	struct dial_attempt *addrs;    /* in the order they are tried */
	size_t naddrs, next, connecting;
	size_t denied;                 /* addresses the policy denied */
	const char *deny_rule;
	int error;                     /* errno of the most telling failure */
	int busy;                      /* > 0: do not free yet */
	TAILQ_ENTRY(dial) entry;
};
TAILQ_HEAD(dial_list, dial);

struct dialer {
	struct event_base *base;
	struct evdns_base *dns;
	const struct policy *policy;
	struct dialer_options opt;
	struct dial_list dials;
	size_t nconnecting, nspliced;
	struct dnscache *cache;        /* NULL: every name is looked up */
};

static void dial_close(struct dial *dl, int code, const char *reason);
static void dial_connect_next(struct dial *dl);

/* Fills o with the defaults. */
void dialer_options_init(struct dialer_options *o)
{
	o->timeout_ms = 10000;
	o->fallback_ms = 250;
	o->dns_cache_ms = 10000;
}

/* Monotonic clock in milliseconds, for the name cache. */
static uint64_t dial_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Creates a dialer. */
struct dialer *dialer_new(struct event_base *base, struct evdns_base *dns,
    const struct policy *policy, const struct dialer_options *o)
{
	struct dialer *d;

	if ((d = calloc(1, sizeof(*d))) == NULL)
		return NULL;
	d->base = base;
	d->dns = dns;
	d->policy = policy;
	if (o != NULL)
		d->opt = *o;
	else
		dialer_options_init(&d->opt);
	TAILQ_INIT(&d->dials);
	if (d->opt.dns_cache_ms > 0 && (d->cache = dnscache_new(
	    DIAL_CACHE_NAMES, d->opt.dns_cache_ms)) == NULL) {
		free(d);
		return NULL;
	}
	return d;
}

/* Ends every stream and frees the dialer. */
void dialer_free(struct dialer *d)
{
	struct dial *dl;

	if (d == NULL)
		return;
	while ((dl = TAILQ_FIRST(&d->dials)) != NULL)
		dial_close(dl, AGG_ERR_GENERAL, "server shutting down");
	dnscache_free(d->cache);
	free(d);
}

/* Streams being connected. */
size_t dialer_connecting(const struct dialer *d)
{
	return d->nconnecting;
}

/* Streams spliced. */
size_t dialer_spliced(const struct dialer *d)
{
	return d->nspliced;
}

/* The stream result code for a connect errno. */
int dialer_errno_code(int err)
{
	switch (err) {
	case ECONNREFUSED:
		return AGG_ERR_REFUSED;
	case ENETUNREACH:
	case ENETDOWN:
	case EADDRNOTAVAIL:
		return AGG_ERR_NET_UNREACHABLE;
	case EHOSTUNREACH:
	case EHOSTDOWN:
		return AGG_ERR_HOST_UNREACHABLE;
	case ETIMEDOUT:
		return AGG_ERR_TIMEOUT;
	case EACCES:
	case EPERM:
		return AGG_ERR_DENIED;
	default:
		return AGG_ERR_GENERAL;
	}
}

/* A short text for a connect errno. */
const char *dialer_errno_text(int err)
{
	switch (err) {
	case ECONNREFUSED:
		return "connection refused";
	case ENETUNREACH:
		return "network unreachable";
	case ENETDOWN:
		return "network down";
	case EADDRNOTAVAIL:
		return "no local address for this network";
	case EHOSTUNREACH:
		return "host unreachable";
	case EHOSTDOWN:
		return "host down";
	case ETIMEDOUT:
		return "timed out";
	case EACCES:
	case EPERM:
		return "not permitted by the local firewall";
	case EMFILE:
	case ENFILE:
		return "out of file descriptors";
	case ENOBUFS:
	case ENOMEM:
		return "out of memory";
	default:
		return "connect failed";
	}
}

/* The stream result code for a resolver error. */
int dialer_gai_code(int err)
{
	switch (err) {
	case EVUTIL_EAI_NONAME:
	case EVUTIL_EAI_NODATA:
	case EVUTIL_EAI_ADDRFAMILY:
	case EVUTIL_EAI_AGAIN:
	case EVUTIL_EAI_FAIL:
		return AGG_ERR_HOST_UNREACHABLE;
	default:
		return AGG_ERR_GENERAL;
	}
}

/* A short text for a resolver error. */
const char *dialer_gai_text(int err)
{
	switch (err) {
	case EVUTIL_EAI_NONAME:
		return "name not found";
	case EVUTIL_EAI_NODATA:
	case EVUTIL_EAI_ADDRFAMILY:
		return "name has no address";
	case EVUTIL_EAI_AGAIN:
		return "name server temporarily failing";
	case EVUTIL_EAI_FAIL:
		return "name server failed";
	case EVUTIL_EAI_MEMORY:
		return "out of memory";
	default:
		return "name resolution failed";
	}
}

/* How telling a connect error is; the highest is reported. */
static int dial_error_rank(int err)
{
	switch (dialer_errno_code(err)) {
	case AGG_ERR_REFUSED:
		return 5;
	case AGG_ERR_TIMEOUT:
		return 4;
	case AGG_ERR_DENIED:
		return 3;
	case AGG_ERR_HOST_UNREACHABLE:
		return 2;
	case AGG_ERR_GENERAL:
		return 1;
	default:
		return 0;
	}
}

/* Milliseconds as a timeval. */
static struct timeval dial_timeval(unsigned ms)
{
	struct timeval tv;

	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000 * 1000);
	return tv;
}

/* Formats an address without its port. */
static void dial_addr_text(const struct sockaddr_storage *ss, char *out,
    size_t cap)
{
	const void *a;

	if (ss->ss_family == AF_INET6)
		a = &((const struct sockaddr_in6 *)(const void *)ss)->sin6_addr;
	else
		a = &((const struct sockaddr_in *)(const void *)ss)->sin_addr;
	if (inet_ntop(ss->ss_family, a, out, (socklen_t)cap) == NULL)
		snprintf(out, cap, "?");
}

/* Stops one attempt and closes its socket. */
static void dial_attempt_stop(struct dial_attempt *a)
{
	if (a->ev != NULL) {
		event_free(a->ev);
		a->ev = NULL;
	}
	if (a->fd >= 0) {
		close(a->fd);
		a->fd = -1;
		a->dial->connecting--;
	}
}

/* Cancels the lookup, the timers and every attempt. */
static void dial_cancel(struct dial *dl)
{
	struct evdns_getaddrinfo_request *req = dl->req;
	size_t i;

	if (req != NULL) {
		/* Its callback still runs later, with EVUTIL_EAI_CANCEL. */
		dl->req = NULL;
		evdns_getaddrinfo_cancel(req);
	}
	if (dl->timeout != NULL) {
		event_free(dl->timeout);
		dl->timeout = NULL;
	}
	if (dl->fallback != NULL) {
		event_free(dl->fallback);
		dl->fallback = NULL;
	}
	for (i = 0; i < dl->naddrs; i++)
		dial_attempt_stop(&dl->addrs[i]);
	free(dl->addrs);
	dl->addrs = NULL;
	dl->naddrs = dl->next = 0;
}

/* Frees a closed dial unless a caller up the stack still uses it. */
static void dial_release(struct dial *dl)
{
	if (dl->busy == 0 && dl->state == DIAL_CLOSED)
		free(dl);
}

/* The one way a dial ends: answers or ends the stream, logs, frees. */
static void dial_close(struct dial *dl, int code, const char *reason)
{
	struct dialer *d = dl->dialer;
	char msg[DIAL_TEXT_MAX + 128];
	unsigned long long up, down;

	if (dl->state == DIAL_CLOSED)
		return;
	dial_cancel(dl);
	if (dl->state == DIAL_SPLICED) {
		agg_splice_counts(dl->splice, &up, &down);
		agg_log_info("stream %u → %s: closed%s%s (%llu bytes from "
		    "the client, %llu to it)", dl->id, dl->text,
		    code ? ": " : "", code ? reason : "", down, up);
		agg_splice_free(dl->splice);
		dl->splice = NULL;
		d->nspliced--;
	} else {
		if (dl->stream != NULL) {
			if (code == AGG_ERR_DENIED)
				snprintf(msg, sizeof(msg), "connect to %s "
				    "denied by policy", dl->text);
			else
				snprintf(msg, sizeof(msg), "connect to %s "
				    "failed: %s", dl->text, reason);
			agg_stream_refuse(dl->stream, code, msg);
			dl->stream = NULL;
			agg_log_info("stream %u → %s: %s", dl->id, dl->text,
			    reason);
		} else {
			agg_log_info("stream %u → %s: %s while connecting",
			    dl->id, dl->text, reason);
		}
		d->nconnecting--;
	}
	dl->state = DIAL_CLOSED;
	TAILQ_REMOVE(&d->dials, dl, entry);
	dial_release(dl);
}

/* The splice ended: the stream is over. */
static void dial_splice_done_cb(struct agg_splice *sp, int error,
    const char *reason, void *arg)
{
	struct dial *dl = arg;

	dl->splice = sp;
	dial_close(dl, error, reason);
}

/* The peer reset the stream, or the session ended, while connecting. */
static void dial_stream_closed_cb(struct agg_stream *st, int code,
    const char *reason, void *arg)
{
	struct dial *dl = arg;

	(void)code;
	agg_stream_free(st);
	dl->stream = NULL;
	dial_close(dl, AGG_ERR_GENERAL, reason);
}

static const struct agg_stream_callbacks dial_stream_cbs = {
	.closed = dial_stream_closed_cb,
};

/* A connect succeeded: keep it, drop the rest, splice. */
static void dial_connected(struct dial *dl, struct dial_attempt *a)
{
	struct dialer *d = dl->dialer;
	struct agg_stream *st = dl->stream;
	struct bufferevent *bev;
	struct agg_splice *sp;
	char addr[INET6_ADDRSTRLEN];
	int fd = a->fd, one = 1;

	/* Take the socket out of the attempt before the others go. */
	event_free(a->ev);
	a->ev = NULL;
	a->fd = -1;
	dl->connecting--;
	dial_addr_text(&a->addr, addr, sizeof(addr));
	dial_cancel(dl);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if ((bev = bufferevent_socket_new(d->base, fd, BEV_OPT_CLOSE_ON_FREE))
	    == NULL) {
		close(fd);
		dial_close(dl, AGG_ERR_GENERAL, "out of memory");
		return;
	}
	agg_stream_accept(st, NULL, NULL);
	dl->stream = NULL;
	dl->busy++;
	if ((sp = agg_splice_new(st, bev, bev, dial_splice_done_cb, dl)) ==
	    NULL) {
		bufferevent_free(bev);
		agg_stream_reset(st, AGG_ERR_GENERAL, "server out of memory");
		dl->busy--;
		dial_close(dl, AGG_ERR_GENERAL, "out of memory");
		return;
	}
	d->nconnecting--;
	d->nspliced++;
	dl->state = DIAL_SPLICED;
	dl->splice = sp;
	agg_log_info("stream %u → %s: connected via %s", dl->id, dl->text,
	    addr);
	dl->busy--;
	dial_release(dl);
}

/* Notes a failed attempt's error if it says more than the earlier ones. */
static void dial_note_error(struct dial *dl, const struct dial_attempt *a,
    int err)
{
	char addr[INET6_ADDRSTRLEN];

	dial_addr_text(&a->addr, addr, sizeof(addr));
	agg_log_debug("stream %u → %s: %s: %s", dl->id, dl->text, addr,
	    dialer_errno_text(err));
	if (dl->error == 0 || dial_error_rank(err) > dial_error_rank(dl->error))
		dl->error = err;
}

/* A connect finished, one way or the other. */
static void dial_attempt_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dial_attempt *a = arg;
	struct dial *dl = a->dial;
	socklen_t len = sizeof(int);
	int err = 0;

	(void)what;
	if (getsockopt((int)fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
		err = errno;
	if (err == 0) {
		dial_connected(dl, a);
		return;
	}
	dial_attempt_stop(a);
	dial_note_error(dl, a, err);
	dial_connect_next(dl);
}

/* Starts a non-blocking connect; returns 0, or an errno. */
static int dial_attempt_start(struct dial *dl, struct dial_attempt *a)
{
	int fd, err;

	fd = socket(a->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, IPPROTO_TCP);
	if (fd < 0)
		return errno;
	if (connect(fd, (struct sockaddr *)&a->addr, a->addrlen) != 0 &&
	    errno != EINPROGRESS) {
		err = errno;
		close(fd);
		return err;
	}
	/* Done or in progress: either way the socket turns writable. */
	if ((a->ev = event_new(dl->dialer->base, fd, EV_WRITE, dial_attempt_cb,
	    a)) == NULL || event_add(a->ev, NULL) != 0) {
		if (a->ev != NULL)
			event_free(a->ev);
		a->ev = NULL;
		close(fd);
		return ENOMEM;
	}
	a->fd = fd;
	dl->connecting++;
	return 0;
}

/* Starts the next address; when none is left and nothing is pending,
 * fails with the most telling error. */
static void dial_connect_next(struct dial *dl)
{
	struct timeval tv;
	struct dial_attempt *a;
	char addr[INET6_ADDRSTRLEN];
	int err;

	while (dl->next < dl->naddrs) {
		a = &dl->addrs[dl->next++];
		dial_addr_text(&a->addr, addr, sizeof(addr));
		agg_log_debug("stream %u → %s: trying %s", dl->id,
		    dl->text, addr);
		if ((err = dial_attempt_start(dl, a)) != 0) {
			dial_note_error(dl, a, err);
			continue;
		}
		if (dl->next < dl->naddrs) {
			tv = dial_timeval(dl->dialer->opt.fallback_ms);
			evtimer_add(dl->fallback, &tv);
		}
		return;
	}
	if (dl->connecting == 0)
		dial_close(dl, dialer_errno_code(dl->error),
		    dialer_errno_text(dl->error));
}

/* The happy-eyeballs delay passed: start another address too. */
static void dial_fallback_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	dial_connect_next(arg);
}

/* The whole open took too long. */
static void dial_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dial *dl = arg;

	(void)fd;
	(void)what;
	dial_close(dl, AGG_ERR_TIMEOUT, dl->state == DIAL_RESOLVING ?
	    "timed out resolving the name" : "timed out");
}

/* Adds an address to try, unless the policy denies it or it is there
 * already. */
static void dial_add_address(struct dial *dl, const struct sockaddr *sa,
    socklen_t len)
{
	struct dial_attempt *a;
	const char *rule;
	size_t i;

	if ((sa->sa_family != AF_INET && sa->sa_family != AF_INET6) ||
	    len > sizeof(a->addr) || dl->naddrs >= DIAL_MAX_ADDRS)
		return;
	if (policy_check(dl->dialer->policy, dl->name[0] ? dl->name : NULL,
	    sa, dl->port, &rule) != POLICY_VERDICT_ALLOW) {
		if (dl->denied++ == 0)
			dl->deny_rule = rule;
		return;
	}
	for (i = 0; i < dl->naddrs; i++)
		if (dl->addrs[i].addrlen == len &&
		    memcmp(&dl->addrs[i].addr, sa, len) == 0)
			return;
	a = &dl->addrs[dl->naddrs++];
	memset(a, 0, sizeof(*a));
	a->dial = dl;
	a->fd = -1;
	memcpy(&a->addr, sa, len);
	a->addrlen = len;
	if (sa->sa_family == AF_INET)
		((struct sockaddr_in *)(void *)&a->addr)->sin_port =
		    htons(dl->port);
	else
		((struct sockaddr_in6 *)(void *)&a->addr)->sin6_port =
		    htons(dl->port);
}

/* Orders the addresses to alternate families, IPv6 first (RFC 8305),
 * each family in the resolver's order. */
static void dial_interleave(struct dial *dl)
{
	static const int fam[2] = { AF_INET6, AF_INET };
	struct dial_attempt sorted[DIAL_MAX_ADDRS];
	size_t i, n = 0, pick[2] = { 0, 0 };

	if (dl->naddrs < 2)
		return;
	while (n < dl->naddrs) {
		for (i = 0; i < 2; i++) {
			while (pick[i] < dl->naddrs &&
			    dl->addrs[pick[i]].addr.ss_family != fam[i])
				pick[i]++;
			if (pick[i] < dl->naddrs)
				sorted[n++] = dl->addrs[pick[i]++];
		}
	}
	memcpy(dl->addrs, sorted, n * sizeof(sorted[0]));
}

/* Starts connecting once the addresses are known. */
static void dial_addresses_ready(struct dial *dl)
{
	char why[256];

	if (dl->naddrs == 0) {
		if (dl->denied > 0) {
			snprintf(why, sizeof(why), "denied by policy (%s)",
			    dl->deny_rule);
			dial_close(dl, AGG_ERR_DENIED, why);
		} else {
			dial_close(dl, AGG_ERR_HOST_UNREACHABLE,
			    "name has no address");
		}
		return;
	}
	dial_interleave(dl);
	dl->state = DIAL_CONNECTING;
	dial_connect_next(dl);
}

/* The name's addresses arrived (or an error). */
static void dial_resolve_cb(int result, struct evutil_addrinfo *res,
    void *arg)
{
	struct dial *dl = arg;
	const struct sockaddr *found[DNSCACHE_MAX_ADDRS];
	socklen_t lens[DNSCACHE_MAX_ADDRS];
	struct evutil_addrinfo *ai;
	size_t n = 0;

	if (result == EVUTIL_EAI_CANCEL) {
		/* The dial is gone already. */
		if (res != NULL)
			evutil_freeaddrinfo(res);
		return;
	}
	dl->req = NULL;
	if (result != 0) {
		if (res != NULL)
			evutil_freeaddrinfo(res);
		dial_close(dl, dialer_gai_code(result),
		    dialer_gai_text(result));
		return;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		dial_add_address(dl, ai->ai_addr, (socklen_t)ai->ai_addrlen);
		if (n < DNSCACHE_MAX_ADDRS) {
			found[n] = ai->ai_addr;
			lens[n++] = (socklen_t)ai->ai_addrlen;
		}
	}
	dnscache_put(dl->dialer->cache, dl->name, found, lens, n,
	    dial_now_ms());
	if (res != NULL)
		evutil_freeaddrinfo(res);
	dial_addresses_ready(dl);
}

/* Whether a client's host name is safe to resolve and to log: letters,
 * digits, '.', '-', '_' and ':' (for an IPv6 literal). */
static bool dial_name_ok(const char *name)
{
	size_t i;

	if (name[0] == '\0' || name[0] == '.' || name[0] == '-')
		return false;
	for (i = 0; name[i] != '\0'; i++)
		if (!isalnum((unsigned char)name[i]) &&
		    strchr(".-_:", name[i]) == NULL)
			return false;
	return true;
}

/* Fills a socket address from an address target or an address literal
 * given as a name; false for a real name. */
static bool dial_literal(const struct agg_target *t,
    struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)(void *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)(void *)ss;

	memset(ss, 0, sizeof(*ss));
	if (t->type == AGG_ADDR_IPV4 || (t->type == AGG_ADDR_NAME &&
	    inet_pton(AF_INET, t->addr.name, &sin->sin_addr) == 1)) {
		if (t->type == AGG_ADDR_IPV4)
			memcpy(&sin->sin_addr, t->addr.ipv4, 4);
		sin->sin_family = AF_INET;
		*len = sizeof(*sin);
		return true;
	}
	if (t->type == AGG_ADDR_IPV6 || (t->type == AGG_ADDR_NAME &&
	    inet_pton(AF_INET6, t->addr.name, &sin6->sin6_addr) == 1)) {
		if (t->type == AGG_ADDR_IPV6)
			memcpy(&sin6->sin6_addr, t->addr.ipv6, 16);
		sin6->sin6_family = AF_INET6;
		*len = sizeof(*sin6);
		return true;
	}
	return false;
}

/* Checks the target, then resolves it or connects to it. */
static void dial_start(struct dial *dl, const struct agg_target *t)
{
	struct dialer *d = dl->dialer;
	struct evutil_addrinfo hints;
	struct evdns_getaddrinfo_request *req;
	struct sockaddr_storage ss, cached[DIAL_MAX_ADDRS];
	socklen_t len, cached_lens[DIAL_MAX_ADDRS];
	struct timeval tv;
	const char *rule;
	char why[256];
	size_t i, n;

	dl->timeout = evtimer_new(d->base, dial_timeout_cb, dl);
	dl->fallback = evtimer_new(d->base, dial_fallback_cb, dl);
	dl->addrs = calloc(DIAL_MAX_ADDRS, sizeof(*dl->addrs));
	if (dl->timeout == NULL || dl->fallback == NULL || dl->addrs == NULL) {
		dial_close(dl, AGG_ERR_GENERAL, "out of memory");
		return;
	}
	if (t->port == 0) {
		dial_close(dl, AGG_ERR_GENERAL, "port 0");
		return;
	}
	tv = dial_timeval(d->opt.timeout_ms);
	evtimer_add(dl->timeout, &tv);
	if (dial_literal(t, &ss, &len)) {
		dl->name[0] = '\0';
		dial_add_address(dl, (struct sockaddr *)&ss, len);
		dial_addresses_ready(dl);
		return;
	}
	if (policy_check(d->policy, dl->name, NULL, dl->port, &rule) ==
	    POLICY_VERDICT_DENY) {
		snprintf(why, sizeof(why), "denied by policy (%s)", rule);
		dial_close(dl, AGG_ERR_DENIED, why);
		return;
	}
	if ((n = dnscache_get(d->cache, dl->name, dial_now_ms(), cached,
	    cached_lens, DIAL_MAX_ADDRS)) > 0) {
		agg_log_debug("stream %u → %s: %zu addresses from the cache",
		    dl->id, dl->text, n);
		for (i = 0; i < n; i++)
			dial_add_address(dl, (struct sockaddr *)&cached[i],
			    cached_lens[i]);
		dial_addresses_ready(dl);
		return;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	/* The callback may run before this returns, and end the dial. */
	req = evdns_getaddrinfo(d->dns, dl->name, NULL, &hints,
	    dial_resolve_cb, dl);
	/* NULL: answered already (an error, or the hosts file). */
	if (req != NULL)
		dl->req = req;
}

/* Takes a stream the peer opened and connects it to target. */
void dialer_open(struct dialer *d, struct agg_stream *stream,
    const struct agg_target *t)
{
	struct dial *dl;

	if ((dl = calloc(1, sizeof(*dl))) == NULL) {
		agg_stream_refuse(stream, AGG_ERR_GENERAL,
		    "server out of memory");
		return;
	}
	dl->dialer = d;
	dl->stream = stream;
	dl->id = agg_stream_id(stream);
	dl->port = t->port;
	dl->state = DIAL_RESOLVING;
	TAILQ_INSERT_TAIL(&d->dials, dl, entry);
	d->nconnecting++;
	agg_stream_set_callbacks(stream, &dial_stream_cbs, dl);
	if (t->type == AGG_ADDR_NAME && !dial_name_ok(t->addr.name)) {
		snprintf(dl->text, sizeof(dl->text), "(bad name):%u", t->port);
		dial_close(dl, AGG_ERR_GENERAL, "bad host name");
		return;
	}
	agg_target_format(t, dl->text, sizeof(dl->text));
	if (t->type == AGG_ADDR_NAME)
		snprintf(dl->name, sizeof(dl->name), "%s", t->addr.name);
	dl->busy++;
	dial_start(dl, t);
	dl->busy--;
	dial_release(dl);
}
