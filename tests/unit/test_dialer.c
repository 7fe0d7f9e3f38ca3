/*
 * test_dialer.c: the server's dialer, driven by a real client session over
 * an in-process link: streams to loopback listeners, refused and
 * unresolvable destinations, policy denials, timeouts, happy eyeballs, and
 * streams that go away while connecting. Names are answered by a DNS
 * server inside the test; nothing leaves the loopback interface.
 */
#include <check.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/dns_struct.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "agg/hub.h"
#include "agg/log.h"
#include "agg/session.h"
#include "agg/target.h"
#include "dialer.h"
#include "pair.h"
#include "policy.h"

#define KEY "dialer test secret"
#define MAX_PEERS 8
#define MAX_FILLERS 4
#define RUN_SECONDS 30.0

/* A loopback TCP server: echoes, refuses (bound, not listening), or
 * blackholes (listening with a full backlog). */
struct dest {
	int family;
	uint16_t port;
	struct evconnlistener *listener;
	int fd;                            /* refusing or blackholing */
	int fillers[MAX_FILLERS];
	size_t nfillers;
	struct bufferevent *peers[MAX_PEERS];
	size_t npeers;
	int accepted;
};

/* A client-side stream and what it saw. */
struct cstream {
	struct agg_stream *stream;
	bool got_result, eof, closed;
	int code;
	char message[256];
	struct evbuffer *rx;
	size_t to_send, sent;
	bool shut;
};

struct fx {
	struct event_base *base;
	struct evdns_base *dns;
	struct evdns_server_port *dns_port;
	int dns_fd;
	int dns_queries;
	struct policy *policy;
	struct dialer *dialer;
	struct agg_hub *hub;
	struct agg_session *client;
	struct agg_session *server;
	struct agg_pair *pair;
	struct dest dests[4];
	size_t ndests;
};

/* Byte at offset i of the test data. */
static uint8_t pattern(size_t i)
{
	return (uint8_t)(i * 7u + i / 251u);
}

/* Seconds on the monotonic clock. */
static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs the loop until done(arg) or the time bound; true if done. */
static bool run_until(struct fx *f, bool (*done)(struct fx *, void *),
    void *arg)
{
	double deadline = now() + RUN_SECONDS;
	struct timeval tick = { 0, 20000 };

	while (!done(f, arg)) {
		if (now() > deadline)
			return false;
		event_base_loopexit(f->base, &tick);
		event_base_loop(f->base, EVLOOP_ONCE);
	}
	return true;
}

/* The test DNS server: dual.test has 127.0.0.1 and ::1, v4.test only
 * 127.0.0.1, v6.test only ::1; names under slow.test get no answer;
 * every other name does not exist. */
static void dns_server_cb(struct evdns_server_request *req, void *arg)
{
	struct fx *f = arg;
	struct in_addr a4;
	struct in6_addr a6;
	bool known = false;
	int i;

	inet_pton(AF_INET, "127.0.0.1", &a4);
	a6 = in6addr_loopback;
	for (i = 0; i < req->nquestions; i++) {
		const struct evdns_server_question *q = req->questions[i];
		bool dual = strcasecmp(q->name, "dual.test") == 0;
		bool v4 = dual || strcasecmp(q->name, "v4.test") == 0;
		bool v6 = dual || strcasecmp(q->name, "v6.test") == 0;

		f->dns_queries++;
		if (strncasecmp(q->name, "slow.", 5) == 0) {
			evdns_server_request_drop(req);
			return;
		}
		known = known || v4 || v6;
		if (q->type == EVDNS_TYPE_A && v4)
			evdns_server_request_add_a_reply(req, q->name, 1, &a4,
			    60);
		if (q->type == EVDNS_TYPE_AAAA && v6)
			evdns_server_request_add_aaaa_reply(req, q->name, 1,
			    &a6, 60);
	}
	evdns_server_request_respond(req, known ? 0 : DNS_ERR_NOTEXIST);
}

/* A UDP socket bound to a free loopback port; *port gets the port. */
static int udp_socket(uint16_t *port)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	ck_assert_int_ge(fd, 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	*port = ntohs(sin.sin_port);
	return fd;
}

/* Hub: the client's session arrived; its streams go to the dialer. */
static void server_stream_opened_cb(struct agg_session *s,
    struct agg_stream *st, const struct agg_target *t, void *arg)
{
	struct fx *f = arg;

	(void)s;
	dialer_open(f->dialer, st, t);
}

static const struct agg_session_callbacks server_cbs = {
	.stream_opened = server_stream_opened_cb,
};

/* Hub callback: a session was created. */
static void hub_session_new_cb(struct agg_hub *hub, struct agg_session *s,
    void *arg)
{
	struct fx *f = arg;

	(void)hub;
	f->server = s;
	agg_session_set_callbacks(s, &server_cbs, f);
}

static const struct agg_hub_callbacks hub_cbs = {
	.session_new = hub_session_new_cb,
};

/* Creates the fixture. dns_up false points the resolver at a port where
 * nobody answers, with a short timeout; timeout_ms 0 keeps the dialer's
 * default. */
static struct fx *fx_new(bool dns_up, unsigned timeout_ms)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct dialer_options opt;
	struct bufferevent *a, *b;
	struct agg_config cfg;
	uint16_t port;
	char ns[64];

	signal(SIGPIPE, SIG_IGN);
	if (getenv("AGG_TEST_DEBUG") != NULL)
		agg_log_set_level(AGG_LOG_DEBUG);
	f->base = event_base_new();
	f->dns_fd = udp_socket(&port);
	if (dns_up) {
		evutil_make_socket_nonblocking(f->dns_fd);
		f->dns_port = evdns_add_server_port_with_base(f->base,
		    f->dns_fd, 0, dns_server_cb, f);
		ck_assert_ptr_nonnull(f->dns_port);
	}
	f->dns = evdns_base_new(f->base, 0);
	snprintf(ns, sizeof(ns), "127.0.0.1:%u", port);
	ck_assert_int_eq(evdns_base_nameserver_ip_add(f->dns, ns), 0);
	evdns_base_set_option(f->dns, "timeout:", dns_up ? "20" : "0.2");
	evdns_base_set_option(f->dns, "attempts:", "1");
	f->policy = policy_new();
	dialer_options_init(&opt);
	if (timeout_ms > 0)
		opt.timeout_ms = timeout_ms;
	f->dialer = dialer_new(f->base, f->dns, f->policy, &opt);
	agg_config_init(&cfg);
	f->hub = agg_hub_new(f->base, &cfg, KEY, strlen(KEY), 4, &hub_cbs, f);
	f->client = agg_session_new_client(f->base, &cfg, KEY, strlen(KEY),
	    NULL, NULL);
	f->pair = agg_pair_new(f->base, &a, &b);
	ck_assert_ptr_nonnull(f->pair);
	agg_session_add_link(f->client, a, "test0");
	agg_hub_add_link(f->hub, b, "test0");
	return f;
}

/* Frees a destination's sockets. */
static void dest_free(struct dest *d)
{
	size_t i;

	for (i = 0; i < d->npeers; i++)
		if (d->peers[i] != NULL)
			bufferevent_free(d->peers[i]);
	for (i = 0; i < d->nfillers; i++)
		close(d->fillers[i]);
	if (d->listener != NULL)
		evconnlistener_free(d->listener);
	if (d->fd >= 0)
		close(d->fd);
}

/* Frees the fixture: streams and sessions, then the rest. */
static void fx_free(struct fx *f)
{
	size_t i;

	agg_session_free(f->client);
	dialer_free(f->dialer);
	agg_hub_free(f->hub);
	agg_pair_free(f->pair);
	for (i = 0; i < f->ndests; i++)
		dest_free(&f->dests[i]);
	evdns_base_free(f->dns, 0);
	if (f->dns_port != NULL)
		evdns_close_server_port(f->dns_port);
	close(f->dns_fd);
	policy_free(f->policy);
	event_base_free(f->base);
	free(f);
}

/* Fills a loopback socket address of a family and port. */
static socklen_t loopback(int family, uint16_t port,
    struct sockaddr_storage *ss)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)(void *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)(void *)ss;

	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sin->sin_port = htons(port);
		return sizeof(*sin);
	}
	sin6->sin6_family = AF_INET6;
	sin6->sin6_addr = in6addr_loopback;
	sin6->sin6_port = htons(port);
	return sizeof(*sin6);
}

/* Echo peer: send back what arrives. */
static void echo_read_cb(struct bufferevent *bev, void *arg)
{
	(void)arg;
	bufferevent_write_buffer(bev, bufferevent_get_input(bev));
}

/* Echo peer: once EOF came (arg not NULL) and everything went back,
 * shut down writing. */
static void echo_write_cb(struct bufferevent *bev, void *arg)
{
	if (arg != NULL && evbuffer_get_length(bufferevent_get_output(bev)) ==
	    0)
		shutdown((int)bufferevent_getfd(bev), SHUT_WR);
}

/* Echo peer: EOF or an error. */
static void echo_event_cb(struct bufferevent *bev, short what, void *arg)
{
	(void)arg;
	if (what & BEV_EVENT_EOF) {
		bufferevent_setcb(bev, echo_read_cb, echo_write_cb,
		    echo_event_cb, bev);
		echo_write_cb(bev, bev);
	}
}

/* Echo listener: a connection arrived. */
static void echo_accept_cb(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int len, void *arg)
{
	struct dest *d = arg;
	struct bufferevent *bev;

	(void)sa;
	(void)len;
	d->accepted++;
	bev = bufferevent_socket_new(evconnlistener_get_base(l), fd,
	    BEV_OPT_CLOSE_ON_FREE);
	if (d->npeers == MAX_PEERS) {
		bufferevent_free(bev);
		return;
	}
	d->peers[d->npeers++] = bev;
	bufferevent_setcb(bev, echo_read_cb, echo_write_cb, echo_event_cb,
	    NULL);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
}

/* A new destination slot. */
static struct dest *dest_slot(struct fx *f, int family)
{
	struct dest *d = &f->dests[f->ndests++];

	memset(d, 0, sizeof(*d));
	d->family = family;
	d->fd = -1;
	return d;
}

/* Learns the port a socket is bound to. */
static uint16_t bound_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)(void *)&ss)->sin_port);
	return ntohs(((struct sockaddr_in6 *)(void *)&ss)->sin6_port);
}

/* An echo server on loopback of family, on port (0: any free port). */
static struct dest *dest_echo(struct fx *f, int family, uint16_t port)
{
	struct dest *d = dest_slot(f, family);
	struct sockaddr_storage ss;
	socklen_t len = loopback(family, port, &ss);

	d->listener = evconnlistener_new_bind(f->base, echo_accept_cb, d,
	    LEV_OPT_CLOSE_ON_FREE, 16, (struct sockaddr *)&ss, (int)len);
	ck_assert_ptr_nonnull(d->listener);
	d->port = bound_port(evconnlistener_get_fd(d->listener));
	return d;
}

/* A port that refuses: bound, not listening. */
static struct dest *dest_refusing(struct fx *f, int family, uint16_t port)
{
	struct dest *d = dest_slot(f, family);
	struct sockaddr_storage ss;
	socklen_t len = loopback(family, port, &ss);

	d->fd = socket(family, SOCK_STREAM, 0);
	ck_assert_int_ge(d->fd, 0);
	ck_assert_int_eq(bind(d->fd, (struct sockaddr *)&ss, len), 0);
	d->port = bound_port(d->fd);
	return d;
}

/* A port where connects hang: listening, backlog full, never accepting. */
static struct dest *dest_blackhole(struct fx *f, int family, uint16_t port)
{
	struct dest *d = dest_slot(f, family);
	struct sockaddr_storage ss;
	socklen_t len = loopback(family, port, &ss);
	size_t i;

	d->fd = socket(family, SOCK_STREAM, 0);
	ck_assert_int_ge(d->fd, 0);
	ck_assert_int_eq(bind(d->fd, (struct sockaddr *)&ss, len), 0);
	ck_assert_int_eq(listen(d->fd, 0), 0);
	d->port = bound_port(d->fd);
	len = loopback(family, d->port, &ss);
	/* The first completes into the accept queue and fills it. */
	for (i = 0; i < MAX_FILLERS; i++) {
		struct pollfd pfd;

		d->fillers[i] = socket(family, SOCK_STREAM | SOCK_NONBLOCK, 0);
		ck_assert_int_ge(d->fillers[i], 0);
		d->nfillers++;
		if (connect(d->fillers[i], (struct sockaddr *)&ss, len) != 0)
			ck_assert_int_eq(errno, EINPROGRESS);
		if (i > 0)
			continue;
		pfd.fd = d->fillers[0];
		pfd.events = POLLOUT;
		ck_assert_int_eq(poll(&pfd, 1, 10000), 1);
	}
	return d;
}

/* Client stream: bytes arrived. */
static void cs_readable_cb(struct agg_stream *st, void *arg)
{
	struct cstream *cs = arg;

	evbuffer_add_buffer(cs->rx, agg_stream_input(st));
}

/* Client stream: the server's end finished. */
static void cs_eof_cb(struct agg_stream *st, void *arg)
{
	struct cstream *cs = arg;

	(void)st;
	cs->eof = true;
}

/* Writes as much of the test data as the stream takes; FIN at the end. */
static void cs_pump(struct cstream *cs)
{
	struct evbuffer *tmp = evbuffer_new();
	uint8_t buf[8192];
	size_t n, i, space;

	while (cs->sent < cs->to_send &&
	    (space = agg_stream_write_space(cs->stream)) > 0) {
		n = cs->to_send - cs->sent;
		if (n > sizeof(buf))
			n = sizeof(buf);
		if (n > space)
			n = space;
		for (i = 0; i < n; i++)
			buf[i] = pattern(cs->sent + i);
		evbuffer_add(tmp, buf, n);
		cs->sent += agg_stream_write(cs->stream, tmp, n);
		evbuffer_drain(tmp, evbuffer_get_length(tmp));
	}
	evbuffer_free(tmp);
	if (cs->sent == cs->to_send && cs->to_send > 0 && !cs->shut) {
		cs->shut = true;
		agg_stream_shutdown(cs->stream);
	}
}

/* Client stream: room to write. */
static void cs_writable_cb(struct agg_stream *st, void *arg)
{
	(void)st;
	cs_pump(arg);
}

/* Client stream: reset or lost. */
static void cs_closed_cb(struct agg_stream *st, int code, const char *reason,
    void *arg)
{
	struct cstream *cs = arg;

	(void)st;
	cs->closed = true;
	cs->code = code;
	snprintf(cs->message, sizeof(cs->message), "%s", reason);
}

/* Client stream: the server's answer. */
static void cs_result_cb(struct agg_stream *st, int code, const char *message,
    void *arg)
{
	struct cstream *cs = arg;

	(void)st;
	cs->got_result = true;
	cs->code = code;
	snprintf(cs->message, sizeof(cs->message), "%s", message);
	if (code == AGG_OK)
		cs_pump(cs);
}

static const struct agg_stream_callbacks cs_cbs = {
	.result = cs_result_cb,
	.readable = cs_readable_cb,
	.eof = cs_eof_cb,
	.writable = cs_writable_cb,
	.closed = cs_closed_cb,
};

/* Opens a client stream to a target. */
static void cs_open(struct fx *f, struct cstream *cs,
    const struct agg_target *t, size_t to_send)
{
	memset(cs, 0, sizeof(*cs));
	cs->rx = evbuffer_new();
	cs->to_send = to_send;
	cs->stream = agg_session_open_stream(f->client, t, &cs_cbs, cs);
	ck_assert_ptr_nonnull(cs->stream);
}

/* Opens a client stream to "host:port" text. */
static void cs_open_text(struct fx *f, struct cstream *cs, const char *text,
    size_t to_send)
{
	struct agg_target t;

	ck_assert_int_eq(agg_target_parse(text, &t), 0);
	cs_open(f, cs, &t, to_send);
}

/* Frees a client stream's state. */
static void cs_free(struct cstream *cs)
{
	if (cs->stream != NULL)
		agg_stream_free(cs->stream);
	cs->stream = NULL;
	evbuffer_free(cs->rx);
}

/* Done when the stream got its answer or failed. */
static bool answered(struct fx *f, void *arg)
{
	struct cstream *cs = arg;

	(void)f;
	return cs->got_result || cs->closed;
}

/* Done when the stream saw all echoed bytes and EOF, or failed. */
static bool echoed(struct fx *f, void *arg)
{
	struct cstream *cs = arg;

	(void)f;
	return (cs->eof && evbuffer_get_length(cs->rx) >= cs->to_send) ||
	    cs->closed || (cs->got_result && cs->code != AGG_OK);
}

/* Done when the dialer holds no stream. */
static bool dialer_idle(struct fx *f, void *arg)
{
	(void)arg;
	return dialer_connecting(f->dialer) == 0 &&
	    dialer_spliced(f->dialer) == 0;
}

/* Done when the dialer is connecting a stream. */
static bool dialer_busy(struct fx *f, void *arg)
{
	(void)arg;
	return dialer_connecting(f->dialer) > 0;
}

/* Opens a stream to text and returns its answer code (message in cs). */
static int open_code(struct fx *f, struct cstream *cs, const char *text)
{
	cs_open_text(f, cs, text, 0);
	ck_assert(run_until(f, answered, cs));
	ck_assert(!cs->closed);
	return cs->code;
}

/* Checks every byte of the echoed data. */
static void check_echo(struct cstream *cs)
{
	size_t len = evbuffer_get_length(cs->rx), i;
	uint8_t *p = evbuffer_pullup(cs->rx, -1);

	ck_assert_uint_eq(len, cs->to_send);
	for (i = 0; i < len; i++)
		if (p[i] != pattern(i))
			ck_abort_msg("byte %zu differs", i);
}

START_TEST(test_connect_and_echo)
{
	struct fx *f = fx_new(true, 0);
	struct dest *d = dest_echo(f, AF_INET, 0);
	struct cstream cs;
	char target[64];

	snprintf(target, sizeof(target), "127.0.0.1:%u", d->port);
	cs_open_text(f, &cs, target, 3u << 20);
	ck_assert(run_until(f, echoed, &cs));
	ck_assert_int_eq(cs.code, AGG_OK);
	ck_assert_str_eq(cs.message, "");
	ck_assert(cs.eof);
	check_echo(&cs);
	ck_assert_int_eq(d->accepted, 1);
	cs_free(&cs);
	ck_assert(run_until(f, dialer_idle, NULL));
	fx_free(f);
}
END_TEST

START_TEST(test_name_and_echo)
{
	struct fx *f = fx_new(true, 0);
	struct dest *d = dest_echo(f, AF_INET, 0);
	struct cstream cs;
	char target[64];

	snprintf(target, sizeof(target), "v4.test:%u", d->port);
	cs_open_text(f, &cs, target, 100000);
	ck_assert(run_until(f, echoed, &cs));
	ck_assert_int_eq(cs.code, AGG_OK);
	check_echo(&cs);
	ck_assert_int_gt(f->dns_queries, 0);
	cs_free(&cs);
	fx_free(f);
}
END_TEST

START_TEST(test_dns_cache)
{
	struct fx *f = fx_new(true, 0);
	struct dest *d = dest_echo(f, AF_INET, 0);
	struct cstream cs;
	char target[64], err[128];
	int queries;

	snprintf(target, sizeof(target), "v4.test:%u", d->port);
	cs_open_text(f, &cs, target, 1000);
	ck_assert(run_until(f, echoed, &cs));
	ck_assert_int_eq(cs.code, AGG_OK);
	cs_free(&cs);
	queries = f->dns_queries;
	ck_assert_int_gt(queries, 0);
	/* The same name again, in other case: from the cache. */
	snprintf(target, sizeof(target), "V4.Test:%u", d->port);
	cs_open_text(f, &cs, target, 1000);
	ck_assert(run_until(f, echoed, &cs));
	ck_assert_int_eq(cs.code, AGG_OK);
	check_echo(&cs);
	cs_free(&cs);
	ck_assert_int_eq(f->dns_queries, queries);
	ck_assert_int_eq(d->accepted, 2);
	/* Cached addresses still go through the rules. */
	ck_assert_int_eq(policy_add(f->policy, POLICY_DENY, "127.0.0.0/8",
	    err, sizeof(err)), 0);
	ck_assert_int_eq(open_code(f, &cs, target), AGG_ERR_DENIED);
	cs_free(&cs);
	ck_assert_int_eq(f->dns_queries, queries);
	/* A name that does not exist is asked again every time. */
	ck_assert_int_eq(open_code(f, &cs, "nosuch.invalid:80"),
	    AGG_ERR_HOST_UNREACHABLE);
	cs_free(&cs);
	queries = f->dns_queries;
	ck_assert_int_eq(open_code(f, &cs, "nosuch.invalid:80"),
	    AGG_ERR_HOST_UNREACHABLE);
	cs_free(&cs);
	ck_assert_int_gt(f->dns_queries, queries);
	fx_free(f);
}
END_TEST

START_TEST(test_ipv6_literal)
{
	struct fx *f = fx_new(true, 0);
	struct dest *d = dest_echo(f, AF_INET6, 0);
	struct cstream cs;
	char target[64];

	snprintf(target, sizeof(target), "[::1]:%u", d->port);
	cs_open_text(f, &cs, target, 5000);
	ck_assert(run_until(f, echoed, &cs));
	ck_assert_int_eq(cs.code, AGG_OK);
	check_echo(&cs);
	cs_free(&cs);
	fx_free(f);
}
END_TEST

START_TEST(test_refused)
{
	struct fx *f = fx_new(true, 0);
	struct dest *d = dest_refusing(f, AF_INET, 0);
	struct cstream cs;
	char target[64], want[128];

	snprintf(target, sizeof(target), "127.0.0.1:%u", d->port);
	ck_assert_int_eq(open_code(f, &cs, target), AGG_ERR_REFUSED);
	snprintf(want, sizeof(want), "connect to 127.0.0.1:%u failed: "
	    "connection refused", d->port);
	ck_assert_str_eq(cs.message, want);
	cs_free(&cs);
	ck_assert(dialer_idle(f, NULL));
	fx_free(f);
}
END_TEST

START_TEST(test_refused_both_families)
{
	struct fx *f = fx_new(true, 0);
	struct dest *d = dest_refusing(f, AF_INET, 0);
	struct cstream cs;
	char target[64];

	dest_refusing(f, AF_INET6, d->port);
	snprintf(target, sizeof(target), "dual.test:%u", d->port);
	ck_assert_int_eq(open_code(f, &cs, target), AGG_ERR_REFUSED);
	cs_free(&cs);
	fx_free(f);
}
END_TEST

START_TEST(test_name_not_found)
{
	struct fx *f = fx_new(true, 0);
	struct cstream cs;

	ck_assert_int_eq(open_code(f, &cs, "nosuch.invalid:80"),
	    AGG_ERR_HOST_UNREACHABLE);
	ck_assert_str_eq(cs.message, "connect to nosuch.invalid:80 failed: "
	    "name not found");
	ck_assert_int_gt(f->dns_queries, 0);
	cs_free(&cs);
	fx_free(f);
}
END_TEST

START_TEST(test_name_server_down)
{
	static const char prefix[] = "connect to nosuch.invalid:80 failed: ";
	struct fx *f = fx_new(false, 0);
	struct cstream cs;

	ck_assert_int_eq(open_code(f, &cs, "nosuch.invalid:80"),
	    AGG_ERR_HOST_UNREACHABLE);
	ck_assert_msg(strncmp(cs.message, prefix, sizeof(prefix) - 1) == 0,
	    "message: %s", cs.message);
	cs_free(&cs);
	fx_free(f);
}
END_TEST

START_TEST(test_bad_name)
{
	struct fx *f = fx_new(true, 0);
	struct agg_target t;
	struct cstream cs;

	memset(&t, 0, sizeof(t));
	t.type = AGG_ADDR_NAME;
	snprintf(t.addr.name, sizeof(t.addr.name), "bad name\n");
	t.name_len = (uint8_t)strlen(t.addr.name);
	t.port = 80;
	cs_open(f, &cs, &t, 0);
	ck_assert(run_until(f, answered, &cs));
	ck_assert_int_eq(cs.code, AGG_ERR_GENERAL);
	ck_assert_str_eq(cs.message, "connect to (bad name):80 failed: bad "
	    "host name");
	ck_assert_int_eq(f->dns_queries, 0);
	cs_free(&cs);
	fx_free(f);
}
END_TEST

START_TEST(test_denied_address)
{
	struct fx *f = fx_new(true, 0);
	struct dest *d = dest_echo(f, AF_INET, 0);
	struct cstream cs;
	char target[64], rule[64], want[128], err[128];

	snprintf(rule, sizeof(rule), "127.0.0.0/8:%u", d->port);
	ck_assert_int_eq(policy_add(f->policy, POLICY_DENY, rule, err,
	    sizeof(err)), 0);
	snprintf(target, sizeof(target), "127.0.0.1:%u", d->port);
	ck_assert_int_eq(open_code(f, &cs, target), AGG_ERR_DENIED);
	snprintf(want, sizeof(want), "connect to 127.0.0.1:%u denied by "
	    "policy", d->port);
	ck_assert_str_eq(cs.message, want);
	ck_assert_int_eq(d->accepted, 0);
	cs_free(&cs);
	fx_free(f);
}
END_TEST

START_TEST(test_denied_name_before_resolving)
{
	struct fx *f = fx_new(true, 0);
	struct dest *d = dest_echo(f, AF_INET, 0);
	struct cstream cs;
	char target[64], err[128];

	ck_assert_int_eq(policy_add(f->policy, POLICY_DENY, "*.test", err,
	    sizeof(err)), 0);
	snprintf(target, sizeof(target), "v4.test:%u", d->port);
	ck_assert_int_eq(open_code(f, &cs, target), AGG_ERR_DENIED);
	ck_assert_int_eq(f->dns_queries, 0);
	ck_assert_int_eq(d->accepted, 0);
	cs_free(&cs);
	fx_free(f);
}
END_TEST

START_TEST(test_denied_after_resolving)
{
	struct fx *f = fx_new(true, 0);
	struct dest *d = dest_echo(f, AF_INET, 0);
	struct cstream cs;
	char target[64], want[128], err[128];

	ck_assert_int_eq(policy_add(f->policy, POLICY_DENY, "127.0.0.1", err,
	    sizeof(err)), 0);
	snprintf(target, sizeof(target), "v4.test:%u", d->port);
	ck_assert_int_eq(open_code(f, &cs, target), AGG_ERR_DENIED);
	snprintf(want, sizeof(want), "connect to v4.test:%u denied by policy",
	    d->port);
	ck_assert_str_eq(cs.message, want);
	ck_assert_int_gt(f->dns_queries, 0);
	ck_assert_int_eq(d->accepted, 0);
	cs_free(&cs);
	fx_free(f);
}
END_TEST

START_TEST(test_denied_address_skipped)
{
	struct fx *f = fx_new(true, 0);
	struct dest *d4 = dest_echo(f, AF_INET, 0);
	struct dest *d6 = dest_echo(f, AF_INET6, d4->port);
	struct cstream cs;
	char target[64], err[128];

	/* ::1 is denied, so only 127.0.0.1 is dialled. */
	ck_assert_int_eq(policy_add(f->policy, POLICY_DENY, "::1", err,
	    sizeof(err)), 0);
	snprintf(target, sizeof(target), "dual.test:%u", d4->port);
	cs_open_text(f, &cs, target, 1000);
	ck_assert(run_until(f, echoed, &cs));
	ck_assert_int_eq(cs.code, AGG_OK);
	check_echo(&cs);
	ck_assert_int_eq(d4->accepted, 1);
	ck_assert_int_eq(d6->accepted, 0);
	cs_free(&cs);
	fx_free(f);
}
END_TEST

START_TEST(test_insecure_defaults)
{
	struct fx *f = fx_new(true, 0);
	struct dest *d4 = dest_echo(f, AF_INET, 0);
	struct dest *d6 = dest_echo(f, AF_INET6, d4->port);
	struct cstream cs;
	char target[64], rule[64], err[128];

	policy_set_insecure(f->policy, true);
	snprintf(target, sizeof(target), "127.0.0.1:%u", d4->port);
	ck_assert_int_eq(open_code(f, &cs, target), AGG_ERR_DENIED);
	cs_free(&cs);
	snprintf(target, sizeof(target), "[::1]:%u", d4->port);
	ck_assert_int_eq(open_code(f, &cs, target), AGG_ERR_DENIED);
	cs_free(&cs);
	snprintf(target, sizeof(target), "[::ffff:127.0.0.1]:%u", d4->port);
	ck_assert_int_eq(open_code(f, &cs, target), AGG_ERR_DENIED);
	cs_free(&cs);
	snprintf(target, sizeof(target), "dual.test:%u", d4->port);
	ck_assert_int_eq(open_code(f, &cs, target), AGG_ERR_DENIED);
	cs_free(&cs);
	ck_assert_int_eq(d4->accepted + d6->accepted, 0);

	/* An --allow rule opens one of them. */
	snprintf(rule, sizeof(rule), "127.0.0.1:%u", d4->port);
	ck_assert_int_eq(policy_add(f->policy, POLICY_ALLOW, rule, err,
	    sizeof(err)), 0);
	snprintf(target, sizeof(target), "dual.test:%u", d4->port);
	cs_open_text(f, &cs, target, 1000);
	ck_assert(run_until(f, echoed, &cs));
	ck_assert_int_eq(cs.code, AGG_OK);
	check_echo(&cs);
	ck_assert_int_eq(d4->accepted, 1);
	ck_assert_int_eq(d6->accepted, 0);
	cs_free(&cs);
	fx_free(f);
}
END_TEST

START_TEST(test_timeout)
{
	struct fx *f = fx_new(true, 300);
	struct dest *d = dest_blackhole(f, AF_INET, 0);
	struct cstream cs;
	char target[64], want[128];

	snprintf(target, sizeof(target), "127.0.0.1:%u", d->port);
	ck_assert_int_eq(open_code(f, &cs, target), AGG_ERR_TIMEOUT);
	snprintf(want, sizeof(want), "connect to 127.0.0.1:%u failed: timed "
	    "out", d->port);
	ck_assert_str_eq(cs.message, want);
	ck_assert(dialer_idle(f, NULL));
	cs_free(&cs);
	fx_free(f);
}
END_TEST

START_TEST(test_happy_eyeballs_v6_refused)
{
	struct fx *f = fx_new(true, 0);
	struct dest *d4 = dest_echo(f, AF_INET, 0);
	struct cstream cs;
	char target[64];

	dest_refusing(f, AF_INET6, d4->port);
	snprintf(target, sizeof(target), "dual.test:%u", d4->port);
	cs_open_text(f, &cs, target, 1000);
	ck_assert(run_until(f, echoed, &cs));
	ck_assert_int_eq(cs.code, AGG_OK);
	check_echo(&cs);
	ck_assert_int_eq(d4->accepted, 1);
	cs_free(&cs);
	fx_free(f);
}
END_TEST

START_TEST(test_happy_eyeballs_v6_hangs)
{
	struct fx *f = fx_new(true, 0);
	struct dest *d4 = dest_echo(f, AF_INET, 0);
	struct cstream cs;
	char target[64];

	dest_blackhole(f, AF_INET6, d4->port);
	snprintf(target, sizeof(target), "dual.test:%u", d4->port);
	cs_open_text(f, &cs, target, 1000);
	ck_assert(run_until(f, echoed, &cs));
	ck_assert_int_eq(cs.code, AGG_OK);
	check_echo(&cs);
	ck_assert_int_eq(d4->accepted, 1);
	cs_free(&cs);
	fx_free(f);
}
END_TEST

START_TEST(test_happy_eyeballs_v6_first)
{
	struct fx *f = fx_new(true, 0);
	struct dest *d4 = dest_echo(f, AF_INET, 0);
	struct dest *d6 = dest_echo(f, AF_INET6, d4->port);
	struct cstream cs;
	char target[64];

	snprintf(target, sizeof(target), "dual.test:%u", d4->port);
	cs_open_text(f, &cs, target, 1000);
	ck_assert(run_until(f, echoed, &cs));
	ck_assert_int_eq(cs.code, AGG_OK);
	check_echo(&cs);
	ck_assert_int_eq(d6->accepted, 1);
	ck_assert_int_eq(d4->accepted, 0);
	cs_free(&cs);
	fx_free(f);
}
END_TEST

START_TEST(test_reset_while_connecting)
{
	struct fx *f = fx_new(true, 60000);
	struct dest *d = dest_blackhole(f, AF_INET, 0);
	struct cstream cs;
	char target[64];

	snprintf(target, sizeof(target), "127.0.0.1:%u", d->port);
	cs_open_text(f, &cs, target, 0);
	ck_assert(run_until(f, dialer_busy, NULL));
	agg_stream_reset(cs.stream, AGG_ERR_GENERAL, "client gave up");
	cs.stream = NULL;
	ck_assert(run_until(f, dialer_idle, NULL));
	ck_assert(!cs.got_result);
	cs_free(&cs);
	fx_free(f);
}
END_TEST

START_TEST(test_reset_while_resolving)
{
	struct fx *f = fx_new(true, 60000);
	struct cstream cs;

	cs_open_text(f, &cs, "slow.test:80", 0);
	ck_assert(run_until(f, dialer_busy, NULL));
	agg_stream_reset(cs.stream, AGG_ERR_GENERAL, "client gave up");
	cs.stream = NULL;
	ck_assert(run_until(f, dialer_idle, NULL));
	cs_free(&cs);
	fx_free(f);
}
END_TEST

START_TEST(test_session_closed_while_connecting)
{
	struct fx *f = fx_new(true, 60000);
	struct dest *d = dest_blackhole(f, AF_INET, 0);
	struct cstream cs;
	char target[64];

	snprintf(target, sizeof(target), "127.0.0.1:%u", d->port);
	cs_open_text(f, &cs, target, 0);
	ck_assert(run_until(f, dialer_busy, NULL));
	agg_session_close(f->server, "test closes the session");
	ck_assert(dialer_idle(f, NULL));
	cs_free(&cs);
	fx_free(f);
}
END_TEST

START_TEST(test_close_while_spliced)
{
	struct fx *f = fx_new(true, 0);
	struct dest *d = dest_echo(f, AF_INET, 0);
	struct cstream cs;
	char target[64];

	snprintf(target, sizeof(target), "127.0.0.1:%u", d->port);
	cs_open_text(f, &cs, target, 0);
	ck_assert(run_until(f, answered, &cs));
	ck_assert_int_eq(cs.code, AGG_OK);
	ck_assert_uint_eq(dialer_spliced(f->dialer), 1);
	agg_stream_reset(cs.stream, AGG_ERR_GENERAL, "client gave up");
	cs.stream = NULL;
	ck_assert(run_until(f, dialer_idle, NULL));
	cs_free(&cs);
	fx_free(f);
}
END_TEST

START_TEST(test_many_streams)
{
	struct fx *f = fx_new(true, 0);
	struct dest *d = dest_echo(f, AF_INET, 0);
	struct dest *r = dest_refusing(f, AF_INET, 0);
	struct cstream cs[MAX_PEERS];
	char target[64];
	size_t i;

	for (i = 0; i < MAX_PEERS; i++) {
		snprintf(target, sizeof(target), "127.0.0.1:%u", i % 2 ?
		    r->port : d->port);
		cs_open_text(f, &cs[i], target, i % 2 ? 0 : 20000 + i);
	}
	for (i = 0; i < MAX_PEERS; i++) {
		ck_assert(run_until(f, echoed, &cs[i]));
		ck_assert_int_eq(cs[i].code, i % 2 ? AGG_ERR_REFUSED : AGG_OK);
		if (i % 2 == 0)
			check_echo(&cs[i]);
	}
	for (i = 0; i < MAX_PEERS; i++)
		cs_free(&cs[i]);
	ck_assert(run_until(f, dialer_idle, NULL));
	fx_free(f);
}
END_TEST

START_TEST(test_error_mapping)
{
	ck_assert_int_eq(dialer_errno_code(ECONNREFUSED), AGG_ERR_REFUSED);
	ck_assert_int_eq(dialer_errno_code(ENETUNREACH),
	    AGG_ERR_NET_UNREACHABLE);
	ck_assert_int_eq(dialer_errno_code(ENETDOWN), AGG_ERR_NET_UNREACHABLE);
	ck_assert_int_eq(dialer_errno_code(EHOSTUNREACH),
	    AGG_ERR_HOST_UNREACHABLE);
	ck_assert_int_eq(dialer_errno_code(EHOSTDOWN),
	    AGG_ERR_HOST_UNREACHABLE);
	ck_assert_int_eq(dialer_errno_code(ETIMEDOUT), AGG_ERR_TIMEOUT);
	ck_assert_int_eq(dialer_errno_code(EACCES), AGG_ERR_DENIED);
	ck_assert_int_eq(dialer_errno_code(EMFILE), AGG_ERR_GENERAL);
	ck_assert_int_eq(dialer_errno_code(0), AGG_ERR_GENERAL);
	ck_assert_str_eq(dialer_errno_text(ECONNREFUSED), "connection refused");
	ck_assert_str_eq(dialer_errno_text(ENETUNREACH), "network unreachable");
	ck_assert_str_eq(dialer_errno_text(EHOSTUNREACH), "host unreachable");
	ck_assert_str_eq(dialer_errno_text(ETIMEDOUT), "timed out");
	ck_assert_int_eq(dialer_gai_code(EVUTIL_EAI_NONAME),
	    AGG_ERR_HOST_UNREACHABLE);
	ck_assert_int_eq(dialer_gai_code(EVUTIL_EAI_NODATA),
	    AGG_ERR_HOST_UNREACHABLE);
	ck_assert_int_eq(dialer_gai_code(EVUTIL_EAI_FAIL),
	    AGG_ERR_HOST_UNREACHABLE);
	ck_assert_int_eq(dialer_gai_code(EVUTIL_EAI_AGAIN),
	    AGG_ERR_HOST_UNREACHABLE);
	ck_assert_int_eq(dialer_gai_code(EVUTIL_EAI_MEMORY), AGG_ERR_GENERAL);
	ck_assert_str_eq(dialer_gai_text(EVUTIL_EAI_NONAME), "name not found");
}
END_TEST

/* The dialer suite. */
static Suite *dialer_suite(void)
{
	Suite *s = suite_create("dialer");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_connect_and_echo);
	tcase_add_test(tc, test_name_and_echo);
	tcase_add_test(tc, test_dns_cache);
	tcase_add_test(tc, test_ipv6_literal);
	tcase_add_test(tc, test_refused);
	tcase_add_test(tc, test_refused_both_families);
	tcase_add_test(tc, test_name_not_found);
	tcase_add_test(tc, test_name_server_down);
	tcase_add_test(tc, test_bad_name);
	tcase_add_test(tc, test_denied_address);
	tcase_add_test(tc, test_denied_name_before_resolving);
	tcase_add_test(tc, test_denied_after_resolving);
	tcase_add_test(tc, test_denied_address_skipped);
	tcase_add_test(tc, test_insecure_defaults);
	tcase_add_test(tc, test_timeout);
	tcase_add_test(tc, test_happy_eyeballs_v6_refused);
	tcase_add_test(tc, test_happy_eyeballs_v6_hangs);
	tcase_add_test(tc, test_happy_eyeballs_v6_first);
	tcase_add_test(tc, test_reset_while_connecting);
	tcase_add_test(tc, test_reset_while_resolving);
	tcase_add_test(tc, test_session_closed_while_connecting);
	tcase_add_test(tc, test_close_while_spliced);
	tcase_add_test(tc, test_many_streams);
	tcase_add_test(tc, test_error_mapping);
	suite_add_tcase(s, tc);
	return s;
}

/* Runs the suite. */
int main(void)
{
	SRunner *sr = srunner_create(dialer_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
