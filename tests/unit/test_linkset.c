/*
 * test_linkset.c: TCP links over loopback: the listener, the connect, the
 * link filter's plan, and agg-client's link set against a hub: links come
 * up per interface and address, failures are reported and re-dialled,
 * interfaces that go away take their links with them and bring them back.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>

#include "agg/hub.h"
#include "agg/log.h"
#include "agg/session.h"
#include "agg/target.h"
#include "agg/url.h"
#include "ifaces.h"
#include "linkset.h"
#include "tcp.h"

#define KEY "linkset test secret"
#define WAIT_S 30
#define MAX_SEEN 32
#define ECHO_BYTES (256u * 1024u)

/* Everything one test runs: a hub behind a TCP listener, a client session
 * with a link set, and what their callbacks saw. */
struct fx {
	struct event_base *base;
	struct evdns_base *dns;
	struct agg_config cfg;
	struct agg_hub *hub;
	struct agg_tcp_listener *listener;
	int port;
	struct agg_session *client;
	struct agg_linkset *ls;
	bool timed_out;

	int client_up, client_closed;
	char up_names[MAX_SEEN][64];
	char closed_reasons[MAX_SEEN][128];

	struct agg_session *server;
	struct agg_link *server_links[MAX_SEEN];
	size_t nserver_links;
	int server_up, server_closed;
	int accepted;
	char peers[MAX_SEEN][64];

	struct agg_iface_list fake;
	int scans;

	struct agg_stream *echo;
	bool echo_eof;
	struct agg_stream *stream;
	struct evbuffer *to_send;
	struct evbuffer *got;
	bool got_result, got_eof, stream_closed;
	int result_code;

	struct bufferevent *conn_bev;
	char conn_error[256];
	int conn_done;
	struct bufferevent *acc_bev[4];
	int nacc;
	int watch_calls;
	pid_t netns_server;
};

static struct fx F;

/* Byte i of the echo test's data. */
static uint8_t data_byte(size_t i)
{
	return (uint8_t)((i * 131u + (i >> 9)) & 0xff);
}

/* Stops a wait that takes too long. */
static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	F.timed_out = true;
}

/* Runs the loop until done() holds or WAIT_S pass; true if done. */
static bool run_until(bool (*done)(void))
{
	struct timeval tv = { WAIT_S, 0 };
	struct event *deadline;

	F.timed_out = false;
	deadline = evtimer_new(F.base, deadline_cb, NULL);
	evtimer_add(deadline, &tv);
	while (!done() && !F.timed_out)
		event_base_loop(F.base, EVLOOP_ONCE);
	event_free(deadline);
	return done();
}

/* Runs whatever is ready now, without waiting. */
static void run_pending(void)
{
	int i;

	for (i = 0; i < 8; i++)
		event_base_loop(F.base, EVLOOP_NONBLOCK);
}

/* Server: echoes what the stream has while it takes more. */
static void echo_pump(struct agg_stream *st)
{
	struct evbuffer *in = agg_stream_input(st);

	if (evbuffer_get_length(in) > 0)
		agg_stream_write(st, in, evbuffer_get_length(in));
	if (F.echo_eof && evbuffer_get_length(in) == 0)
		agg_stream_shutdown(st);
}

/* Server: echo input arrived. */
static void echo_readable_cb(struct agg_stream *st, void *arg)
{
	(void)arg;
	echo_pump(st);
}

/* Server: the echo stream can take more. */
static void echo_writable_cb(struct agg_stream *st, void *arg)
{
	(void)arg;
	echo_pump(st);
}

/* Server: the client finished sending. */
static void echo_eof_cb(struct agg_stream *st, void *arg)
{
	(void)arg;
	F.echo_eof = true;
	echo_pump(st);
}

/* Server: the echo stream failed. */
static void echo_closed_cb(struct agg_stream *st, int code,
    const char *reason, void *arg)
{
	(void)code;
	(void)reason;
	(void)arg;
	agg_stream_free(st);
	F.echo = NULL;
}

static const struct agg_stream_callbacks echo_cbs = {
	.readable = echo_readable_cb,
	.eof = echo_eof_cb,
	.writable = echo_writable_cb,
	.closed = echo_closed_cb,
};

/* Server: the client opened a stream; echo it. */
static void srv_stream_opened_cb(struct agg_session *s,
    struct agg_stream *st, const struct agg_target *t, void *arg)
{
	(void)s;
	(void)t;
	(void)arg;
	F.echo = st;
	agg_stream_accept(st, &echo_cbs, NULL);
}

/* Server: a link changed state. */
static void srv_link_state_cb(struct agg_session *s, struct agg_link *link,
    enum agg_link_state state, const char *reason, void *arg)
{
	size_t i;

	(void)s;
	(void)reason;
	(void)arg;
	if (state == AGG_LINK_UP && F.nserver_links < MAX_SEEN) {
		F.server_links[F.nserver_links++] = link;
		F.server_up++;
	}
	if (state != AGG_LINK_CLOSED)
		return;
	for (i = 0; i < F.nserver_links; i++) {
		if (F.server_links[i] == link) {
			F.server_links[i] = F.server_links[--F.nserver_links];
			F.server_closed++;
			break;
		}
	}
}

/* Server: the session ended. */
static void srv_closed_cb(struct agg_session *s, const char *reason,
    void *arg)
{
	(void)s;
	(void)reason;
	(void)arg;
	F.server = NULL;
}

static const struct agg_session_callbacks srv_cbs = {
	.stream_opened = srv_stream_opened_cb,
	.link_state = srv_link_state_cb,
	.closed = srv_closed_cb,
};

/* Hub: a client created a session. */
static void hub_session_new_cb(struct agg_hub *hub, struct agg_session *s,
    void *arg)
{
	(void)hub;
	(void)arg;
	F.server = s;
	agg_session_set_callbacks(s, &srv_cbs, NULL);
}

static const struct agg_hub_callbacks hub_cbs = {
	.session_new = hub_session_new_cb,
};

/* Listener: a link connected; the hub takes it. */
static void accept_to_hub_cb(struct bufferevent *bev, const char *peer,
    void *arg)
{
	(void)arg;
	if (F.accepted < MAX_SEEN)
		snprintf(F.peers[F.accepted], sizeof(F.peers[0]), "%s", peer);
	F.accepted++;
	agg_hub_add_link(F.hub, bev, peer);
}

/* Client: a link changed state; the link set hears it first. */
static void cli_link_state_cb(struct agg_session *s, struct agg_link *link,
    enum agg_link_state state, const char *reason, void *arg)
{
	(void)s;
	(void)arg;
	if (state == AGG_LINK_UP) {
		if (F.client_up < MAX_SEEN)
			snprintf(F.up_names[F.client_up], sizeof(F.up_names[0]),
			    "%s", agg_link_name(link));
		F.client_up++;
	}
	if (state == AGG_LINK_CLOSED) {
		if (F.client_closed < MAX_SEEN)
			snprintf(F.closed_reasons[F.client_closed],
			    sizeof(F.closed_reasons[0]), "%s", reason);
		F.client_closed++;
	}
	if (F.ls != NULL)
		agg_linkset_link_state(F.ls, link, state, reason);
}

static const struct agg_session_callbacks cli_cbs = {
	.link_state = cli_link_state_cb,
};

/* Makes a URL by hand (agg_url_parse refuses port 0). */
static void make_url(struct agg_url *u, const char *host, int port)
{
	memset(u, 0, sizeof(*u));
	u->scheme = AGG_URL_TCP;
	snprintf(u->host, sizeof(u->host), "%s", host);
	snprintf(u->port, sizeof(u->port), "%d", port);
	snprintf(u->text, sizeof(u->text), strchr(host, ':') ?
	    "tcp://[%s]:%d" : "tcp://%s:%d", host, port);
	snprintf(u->path, sizeof(u->path), "/");
}

/* Starts the hub behind a listener on host, port 0. */
static void start_server(const char *host)
{
	char err[256];
	struct agg_url u;

	make_url(&u, host, 0);
	F.hub = agg_hub_new(F.base, &F.cfg, KEY, strlen(KEY), 4, &hub_cbs,
	    NULL);
	ck_assert_ptr_nonnull(F.hub);
	F.listener = agg_tcp_listen(F.base, &u, accept_to_hub_cb, NULL, err,
	    sizeof(err));
	ck_assert_msg(F.listener != NULL, "%s", err);
	F.port = agg_tcp_listener_port(F.listener);
	ck_assert_int_gt(F.port, 0);
}

/* Starts the client session and its link set. */
static void start_client(const struct agg_linkset_config *cfg)
{
	F.client = agg_session_new_client(F.base, &F.cfg, KEY, strlen(KEY),
	    &cli_cbs, NULL);
	ck_assert_ptr_nonnull(F.client);
	F.ls = agg_linkset_new(F.base, F.dns, F.client, cfg);
	ck_assert_ptr_nonnull(F.ls);
}

/* Adds "tcp://host:port" to the link set. */
static void add_server(const char *host, int port)
{
	char text[300], err[256];
	struct agg_url u;

	snprintf(text, sizeof(text), strchr(host, ':') ? "tcp://[%s]:%d" :
	    "tcp://%s:%d", host, port);
	ck_assert_int_eq(agg_url_parse(text, &u, err, sizeof(err)), 0);
	ck_assert_msg(agg_linkset_add_server(F.ls, &u, err, sizeof(err)) == 0,
	    "%s", err);
}

/* A link set config with quick retries. */
static void quick_config(struct agg_linkset_config *cfg)
{
	agg_linkset_config_init(cfg);
	cfg->backoff_min_ms = 20;
	cfg->backoff_max_ms = 100;
	cfg->connect_timeout_ms = 5000;
}

/* A port on 127.0.0.1 that refuses connections while fd stays open. */
static int reserve_port(int *fd)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);

	*fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(*fd, 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(*fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(getsockname(*fd, (struct sockaddr *)&sin, &len), 0);
	return ntohs(sin.sin_port);
}

/* Whether the named link came up on the client. */
static bool client_saw_up(const char *name)
{
	int i;

	for (i = 0; i < F.client_up && i < MAX_SEEN; i++)
		if (strcmp(F.up_names[i], name) == 0)
			return true;
	return false;
}

/* Done: one client link is up. */
static bool one_up(void)
{
	return F.client_up >= 1;
}

/* Done: two client links are up. */
static bool two_up(void)
{
	return F.client_up >= 2;
}

/* Done: the server holds one link. */
static bool server_has_one(void)
{
	return F.nserver_links == 1 && F.client_up >= 1;
}

/* Done: a failure was recorded. */
static bool have_error(void)
{
	return agg_linkset_last_error(F.ls)[0] != '\0';
}

/* Done: the server saw a link close. */
static bool server_saw_close(void)
{
	return F.server_closed >= 1;
}

/* Done: the echo came back complete. */
static bool echo_done(void)
{
	return F.got_eof || F.stream_closed ||
	    (F.got_result && F.result_code != AGG_OK);
}

/* Client: moves the data to send into the stream as it takes it. */
static void send_pump(struct agg_stream *st)
{
	size_t n = evbuffer_get_length(F.to_send);

	if (n > 0)
		agg_stream_write(st, F.to_send, n);
	if (evbuffer_get_length(F.to_send) == 0)
		agg_stream_shutdown(st);
}

/* Client: the server answered the open. */
static void cli_result_cb(struct agg_stream *st, int code,
    const char *message, void *arg)
{
	(void)message;
	(void)arg;
	F.got_result = true;
	F.result_code = code;
	if (code == AGG_OK)
		send_pump(st);
}

/* Client: echoed bytes arrived. */
static void cli_readable_cb(struct agg_stream *st, void *arg)
{
	(void)arg;
	evbuffer_add_buffer(F.got, agg_stream_input(st));
}

/* Client: the echo ended. */
static void cli_eof_cb(struct agg_stream *st, void *arg)
{
	(void)st;
	(void)arg;
	F.got_eof = true;
}

/* Client: the stream can take more. */
static void cli_writable_cb(struct agg_stream *st, void *arg)
{
	(void)arg;
	send_pump(st);
}

/* Client: the stream failed. */
static void cli_closed_cb(struct agg_stream *st, int code,
    const char *reason, void *arg)
{
	(void)st;
	(void)code;
	(void)reason;
	(void)arg;
	F.stream_closed = true;
}

static const struct agg_stream_callbacks cli_stream_cbs = {
	.result = cli_result_cb,
	.readable = cli_readable_cb,
	.eof = cli_eof_cb,
	.writable = cli_writable_cb,
	.closed = cli_closed_cb,
};

/* Sends ECHO_BYTES through the session and checks what comes back. */
static void check_echo(void)
{
	struct agg_target t;
	unsigned char *buf;
	size_t i;

	ck_assert_int_eq(agg_target_parse("echo:7", &t), 0);
	buf = malloc(ECHO_BYTES);
	ck_assert_ptr_nonnull(buf);
	for (i = 0; i < ECHO_BYTES; i++)
		buf[i] = data_byte(i);
	evbuffer_add(F.to_send, buf, ECHO_BYTES);
	F.stream = agg_session_open_stream(F.client, &t, &cli_stream_cbs,
	    NULL);
	ck_assert_ptr_nonnull(F.stream);
	ck_assert(run_until(echo_done));
	ck_assert_int_eq(F.result_code, AGG_OK);
	ck_assert(!F.stream_closed);
	ck_assert_uint_eq(evbuffer_get_length(F.got), ECHO_BYTES);
	ck_assert_int_eq(memcmp(evbuffer_pullup(F.got, -1), buf, ECHO_BYTES),
	    0);
	free(buf);
	agg_stream_free(F.stream);
	F.stream = NULL;
}

/* Fresh loop and configuration for every test. */
static void setup(void)
{
	memset(&F, 0, sizeof(F));
	signal(SIGPIPE, SIG_IGN);
	if (getenv("AGG_TEST_DEBUG") != NULL)
		agg_log_set_level(AGG_LOG_DEBUG);
	F.base = event_base_new();
	ck_assert_ptr_nonnull(F.base);
	agg_config_init(&F.cfg);
	F.to_send = evbuffer_new();
	F.got = evbuffer_new();
}

/* Frees what the test left: the link set before its session. */
static void teardown(void)
{
	int i;

	if (F.netns_server > 0) {
		kill(F.netns_server, SIGKILL);
		waitpid(F.netns_server, NULL, 0);
	}
	agg_linkset_free(F.ls);
	F.ls = NULL;
	if (F.stream != NULL)
		agg_stream_free(F.stream);
	if (F.client != NULL)
		agg_session_free(F.client);
	agg_tcp_listener_free(F.listener);
	if (F.hub != NULL)
		agg_hub_free(F.hub);
	if (F.conn_bev != NULL)
		bufferevent_free(F.conn_bev);
	for (i = 0; i < F.nacc; i++)
		bufferevent_free(F.acc_bev[i]);
	if (F.dns != NULL)
		evdns_base_free(F.dns, 0);
	evbuffer_free(F.to_send);
	evbuffer_free(F.got);
	event_base_free(F.base);
}

/* ---- tcp.c ---- */

START_TEST(test_tune_sets_options)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0), v;
	socklen_t len;

	ck_assert_int_ge(fd, 0);
	agg_tcp_tune(fd);
	len = sizeof(v);
	ck_assert_int_eq(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &len), 0);
	ck_assert_int_ne(v, 0);
	ck_assert_int_eq(getsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &v, &len), 0);
	ck_assert_int_ne(v, 0);
	ck_assert_int_eq(getsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &v, &len),
	    0);
	ck_assert_int_eq(v, 10);
	ck_assert_int_eq(getsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &v, &len),
	    0);
	ck_assert_int_eq(v, 5);
	ck_assert_int_eq(getsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &v, &len), 0);
	ck_assert_int_eq(v, 3);
	ck_assert_int_eq(getsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &v,
	    &len), 0);
	ck_assert_int_eq(v, 128 * 1024);
	close(fd);
}
END_TEST

/* Listener: keeps what was accepted. */
static void accept_keep_cb(struct bufferevent *bev, const char *peer,
    void *arg)
{
	(void)arg;
	if (F.nacc < 4) {
		snprintf(F.peers[F.nacc], sizeof(F.peers[0]), "%s", peer);
		bufferevent_enable(bev, EV_READ);
		F.acc_bev[F.nacc++] = bev;
	} else {
		bufferevent_free(bev);
	}
}

/* Connect: keeps the outcome. */
static void connect_keep_cb(struct bufferevent *bev, const char *error,
    void *arg)
{
	(void)arg;
	F.conn_done++;
	if (bev != NULL) {
		if (F.conn_bev != NULL)
			bufferevent_free(F.conn_bev);
		F.conn_bev = bev;
	} else {
		snprintf(F.conn_error, sizeof(F.conn_error), "%s", error);
	}
}

/* Done: a connect finished. */
static bool connect_done(void)
{
	return F.conn_done > 0;
}

/* Done: the listener accepted a connection and its bytes arrived. */
static bool accepted_bytes(void)
{
	return F.nacc > 0 && evbuffer_get_length(
	    bufferevent_get_input(F.acc_bev[F.nacc - 1])) >= 5;
}

/* Connects to addr:port on the loopback and checks bytes get through. */
static void check_connect_and_send(const char *addr, const char *peer_prefix)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	struct bufferevent *acc;
	char err[256], got[8];
	socklen_t len;
	int nacc = F.nacc;

	memset(&ss, 0, sizeof(ss));
	if (strchr(addr, ':') != NULL) {
		sin6->sin6_family = AF_INET6;
		inet_pton(AF_INET6, addr, &sin6->sin6_addr);
		sin6->sin6_port = htons((uint16_t)F.port);
		len = sizeof(*sin6);
	} else {
		sin->sin_family = AF_INET;
		inet_pton(AF_INET, addr, &sin->sin_addr);
		sin->sin_port = htons((uint16_t)F.port);
		len = sizeof(*sin);
	}
	F.conn_done = 0;
	ck_assert_msg(agg_tcp_connect_start(F.base, (struct sockaddr *)&ss,
	    len, "lo", NULL, 5000, connect_keep_cb, NULL, err, sizeof(err)) !=
	    NULL, "%s", err);
	ck_assert(run_until(connect_done));
	ck_assert_msg(F.conn_bev != NULL, "%s", F.conn_error);
	bufferevent_enable(F.conn_bev, EV_READ | EV_WRITE);
	bufferevent_write(F.conn_bev, "hello", 5);
	ck_assert(run_until(accepted_bytes));
	ck_assert_int_eq(F.nacc, nacc + 1);
	acc = F.acc_bev[F.nacc - 1];
	ck_assert_uint_eq(bufferevent_read(acc, got, sizeof(got)), 5);
	ck_assert_int_eq(memcmp(got, "hello", 5), 0);
	ck_assert_msg(strncmp(F.peers[F.nacc - 1], peer_prefix,
	    strlen(peer_prefix)) == 0, "peer %s", F.peers[F.nacc - 1]);
}

START_TEST(test_listen_dual_stack)
{
	struct agg_url u;
	char err[256];

	make_url(&u, "", 0);
	F.listener = agg_tcp_listen(F.base, &u, accept_keep_cb, NULL, err,
	    sizeof(err));
	ck_assert_msg(F.listener != NULL, "%s", err);
	F.port = agg_tcp_listener_port(F.listener);
	check_connect_and_send("127.0.0.1", "127.0.0.1:");
	check_connect_and_send("::1", "[::1]:");
}
END_TEST

START_TEST(test_listen_host_name)
{
	struct agg_url u;
	char err[256];

	make_url(&u, "localhost", 0);
	F.listener = agg_tcp_listen(F.base, &u, accept_keep_cb, NULL, err,
	    sizeof(err));
	ck_assert_msg(F.listener != NULL, "%s", err);
	F.port = agg_tcp_listener_port(F.listener);
	check_connect_and_send("127.0.0.1", "127.0.0.1:");
}
END_TEST

START_TEST(test_listen_address_in_use)
{
	struct agg_tcp_listener *second;
	struct agg_url u;
	char err[256], want[256];

	make_url(&u, "127.0.0.1", 0);
	F.listener = agg_tcp_listen(F.base, &u, accept_keep_cb, NULL, err,
	    sizeof(err));
	ck_assert_msg(F.listener != NULL, "%s", err);
	F.port = agg_tcp_listener_port(F.listener);
	make_url(&u, "127.0.0.1", F.port);
	second = agg_tcp_listen(F.base, &u, accept_keep_cb, NULL, err,
	    sizeof(err));
	ck_assert_ptr_null(second);
	snprintf(want, sizeof(want), "cannot listen on tcp://127.0.0.1:%d: "
	    "Address already in use", F.port);
	ck_assert_str_eq(err, want);
	make_url(&u, "", F.port);
	second = agg_tcp_listen(F.base, &u, accept_keep_cb, NULL, err,
	    sizeof(err));
	ck_assert_ptr_null(second);
	snprintf(want, sizeof(want), "cannot listen on tcp://[::]:%d: "
	    "Address already in use", F.port);
	ck_assert_str_eq(err, want);
}
END_TEST

START_TEST(test_connect_refused)
{
	struct sockaddr_in sin;
	struct agg_tcp_connect *c;
	char err[256];
	int fd, port;

	port = reserve_port(&fd);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons((uint16_t)port);
	err[0] = '\0';
	c = agg_tcp_connect_start(F.base, (struct sockaddr *)&sin, sizeof(sin),
	    "lo", NULL, 5000, connect_keep_cb, NULL, err, sizeof(err));
	if (c != NULL) {
		ck_assert(run_until(connect_done));
		ck_assert_ptr_null(F.conn_bev);
		ck_assert_str_eq(F.conn_error, "connection refused");
	} else {
		ck_assert_str_eq(err, "connection refused");
	}
	close(fd);
}
END_TEST

START_TEST(test_connect_bad_interface)
{
	struct sockaddr_in sin;
	char err[256];

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons(9);
	ck_assert_ptr_null(agg_tcp_connect_start(F.base,
	    (struct sockaddr *)&sin, sizeof(sin), "nosuch0", NULL, 5000,
	    connect_keep_cb, NULL, err, sizeof(err)));
	ck_assert_str_eq(err, "cannot bind to interface nosuch0: no such "
	    "device");
	ck_assert_int_eq(F.conn_done, 0);
}
END_TEST

START_TEST(test_connect_cancel)
{
	struct sockaddr_in sin;
	struct agg_tcp_connect *c;
	struct agg_url u;
	char err[256];

	make_url(&u, "127.0.0.1", 0);
	F.listener = agg_tcp_listen(F.base, &u, accept_keep_cb, NULL, err,
	    sizeof(err));
	ck_assert_ptr_nonnull(F.listener);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons((uint16_t)agg_tcp_listener_port(F.listener));
	c = agg_tcp_connect_start(F.base, (struct sockaddr *)&sin, sizeof(sin),
	    NULL, NULL, 5000, connect_keep_cb, NULL, err, sizeof(err));
	ck_assert_ptr_nonnull(c);
	agg_tcp_connect_cancel(c);
	run_pending();
	ck_assert_int_eq(F.conn_done, 0);
}
END_TEST

/* ---- the plan ---- */

/* Adds an up, running interface with addresses to the fake list. */
static struct agg_iface *fake_iface(struct agg_iface_list *l,
    const char *name, unsigned flags, const char *a1, const char *a2)
{
	struct agg_iface *ifc;

	ifc = agg_ifaces_add(l, name, (unsigned)l->n + 1,
	    IFF_UP | IFF_RUNNING | flags);
	ck_assert_ptr_nonnull(ifc);
	if (a1 != NULL)
		ck_assert_int_eq(agg_iface_add_addr(ifc, a1), 0);
	if (a2 != NULL)
		ck_assert_int_eq(agg_iface_add_addr(ifc, a2), 0);
	return ifc;
}

/* Fills a server address. */
static void server_addr(struct agg_sockaddr *a, const char *text)
{
	struct agg_iface tmp;

	memset(&tmp, 0, sizeof(tmp));
	ck_assert_int_eq(agg_iface_add_addr(&tmp, text), 0);
	*a = tmp.addrs[0];
}

/* The seed scenario: four interfaces with IPv4 and IPv6. */
static void seed_ifaces(struct agg_iface_list *l)
{
	memset(l, 0, sizeof(*l));
	fake_iface(l, "lo", IFF_LOOPBACK, "127.0.0.1", "::1");
	fake_iface(l, "eth0", 0, "192.0.2.10", "2001:db8:0:1::10");
	fake_iface(l, "eth1", 0, "198.51.100.10", "2001:db8:0:2::10");
	fake_iface(l, "wlan0", 0, "203.0.113.10", "2001:db8:0:3::10");
	fake_iface(l, "wwan0", 0, "100.64.0.10", "2001:db8:0:4::10");
}

START_TEST(test_plan_seed_interface_ip)
{
	struct agg_linkset_plan_slot out[64];
	struct agg_linkset_config cfg;
	struct agg_sockaddr addrs[2];
	static struct agg_iface_list l;
	size_t n, i;

	seed_ifaces(&l);
	server_addr(&addrs[0], "192.0.2.1");
	server_addr(&addrs[1], "2001:db8::1");
	agg_linkset_config_init(&cfg);
	n = agg_linkset_plan(&cfg, &l, addrs, 2, out, 64);
	ck_assert_uint_eq(n, 8);
	for (i = 0; i < 8; i++) {
		ck_assert_uint_eq(out[i].iface, 1 + i / 2);
		ck_assert_uint_eq(out[i].addr, i % 2);
		ck_assert_uint_eq(out[i].source, AGG_PLAN_ANY_SOURCE);
	}
	/* The count stays right when the output is short. */
	ck_assert_uint_eq(agg_linkset_plan(&cfg, &l, addrs, 2, out, 3), 8);
}
END_TEST

START_TEST(test_plan_any)
{
	struct agg_linkset_plan_slot out[64];
	struct agg_linkset_config cfg;
	struct agg_sockaddr addrs[2];
	static struct agg_iface_list l;
	size_t n, i;

	memset(&l, 0, sizeof(l));
	fake_iface(&l, "eth0", 0, "192.0.2.10", "192.0.2.11");
	fake_iface(&l, "eth1", 0, "198.51.100.10", "198.51.100.11");
	fake_iface(&l, "wlan0", 0, "203.0.113.10", "203.0.113.11");
	fake_iface(&l, "wwan0", 0, "100.64.0.10", "100.64.0.11");
	server_addr(&addrs[0], "192.0.2.1");
	server_addr(&addrs[1], "192.0.2.2");
	agg_linkset_config_init(&cfg);
	cfg.filter = AGG_FILTER_ANY;
	n = agg_linkset_plan(&cfg, &l, addrs, 2, out, 64);
	ck_assert_uint_eq(n, 16);
	for (i = 0; i < 16; i++) {
		ck_assert_uint_eq(out[i].iface, i / 4);
		ck_assert_uint_eq(out[i].addr, (i / 2) % 2);
		ck_assert_uint_eq(out[i].source, i % 2);
	}
	/* Sources pair only with addresses of their family. */
	seed_ifaces(&l);
	server_addr(&addrs[1], "2001:db8::1");
	n = agg_linkset_plan(&cfg, &l, addrs, 2, out, 64);
	ck_assert_uint_eq(n, 8);
	for (i = 0; i < 8; i++)
		ck_assert_uint_eq(out[i].source, out[i].addr);
	/* The default filter on the same lists gives one link per pair. */
	cfg.filter = AGG_FILTER_INTERFACE_IP;
	ck_assert_uint_eq(agg_linkset_plan(&cfg, &l, addrs, 2, out, 64), 8);
}
END_TEST

START_TEST(test_plan_interface_interface)
{
	struct agg_linkset_plan_slot out[64];
	struct agg_linkset_config cfg;
	struct agg_sockaddr addrs[2];
	static struct agg_iface_list l;
	size_t n, i;

	seed_ifaces(&l);
	server_addr(&addrs[0], "192.0.2.1");
	server_addr(&addrs[1], "2001:db8::1");
	agg_linkset_config_init(&cfg);
	cfg.filter = AGG_FILTER_INTERFACE_INTERFACE;
	n = agg_linkset_plan(&cfg, &l, addrs, 2, out, 64);
	ck_assert_uint_eq(n, 4);
	for (i = 0; i < 4; i++) {
		ck_assert_uint_eq(out[i].iface, 1 + i);
		ck_assert_uint_eq(out[i].addr, 0);
	}
	/* An interface without IPv4 takes the first address it can use. */
	memset(&l, 0, sizeof(l));
	fake_iface(&l, "eth0", 0, "2001:db8:0:1::10", NULL);
	ck_assert_uint_eq(agg_linkset_plan(&cfg, &l, addrs, 2, out, 64), 1);
	ck_assert_uint_eq(out[0].addr, 1);
}
END_TEST

START_TEST(test_plan_family)
{
	struct agg_linkset_plan_slot out[64];
	struct agg_linkset_config cfg;
	struct agg_sockaddr addrs[2];
	static struct agg_iface_list l;
	size_t n, i;

	seed_ifaces(&l);
	server_addr(&addrs[0], "192.0.2.1");
	server_addr(&addrs[1], "2001:db8::1");
	agg_linkset_config_init(&cfg);
	cfg.family = AF_INET6;
	n = agg_linkset_plan(&cfg, &l, addrs, 2, out, 64);
	ck_assert_uint_eq(n, 4);
	for (i = 0; i < 4; i++)
		ck_assert_uint_eq(out[i].addr, 1);
	cfg.family = AF_INET;
	cfg.filter = AGG_FILTER_INTERFACE_INTERFACE;
	n = agg_linkset_plan(&cfg, &l, addrs, 2, out, 64);
	ck_assert_uint_eq(n, 4);
	for (i = 0; i < 4; i++)
		ck_assert_uint_eq(out[i].addr, 0);
}
END_TEST

START_TEST(test_plan_skips_unusable)
{
	struct agg_linkset_plan_slot out[64];
	struct agg_linkset_config cfg;
	struct agg_sockaddr addrs[2];
	static struct agg_iface_list l;
	struct agg_iface *ifc;

	memset(&l, 0, sizeof(l));
	fake_iface(&l, "eth0", 0, "192.0.2.10", "fe80::1");
	ifc = fake_iface(&l, "eth1", 0, "198.51.100.10", "2001:db8::10");
	ifc->flags &= ~(unsigned)IFF_RUNNING;
	ifc = fake_iface(&l, "eth2", 0, "203.0.113.10", NULL);
	ifc->flags &= ~(unsigned)IFF_UP;
	fake_iface(&l, "eth3", 0, NULL, NULL);
	fake_iface(&l, "wlan0", 0, "2001:db8:0:5::10", NULL);
	server_addr(&addrs[0], "192.0.2.1");
	server_addr(&addrs[1], "2001:db8::1");
	agg_linkset_config_init(&cfg);
	/* eth0 has IPv6 link-local only: no IPv6 link; eth1 has no carrier,
	 * eth2 is down, eth3 has no address; wlan0 has IPv6 only. */
	ck_assert_uint_eq(agg_linkset_plan(&cfg, &l, addrs, 2, out, 64), 2);
	ck_assert_uint_eq(out[0].iface, 0);
	ck_assert_uint_eq(out[0].addr, 0);
	ck_assert_uint_eq(out[1].iface, 4);
	ck_assert_uint_eq(out[1].addr, 1);
}
END_TEST

START_TEST(test_plan_loopback_and_ifaces_option)
{
	static const char *const only_eth1[] = { "eth1" };
	static const char *const only_lo[] = { "lo", "nosuch0" };
	struct agg_linkset_plan_slot out[64];
	struct agg_linkset_config cfg;
	struct agg_sockaddr addrs[3];
	static struct agg_iface_list l;

	seed_ifaces(&l);
	server_addr(&addrs[0], "127.0.0.1");
	server_addr(&addrs[1], "::1");
	server_addr(&addrs[2], "192.0.2.1");
	agg_linkset_config_init(&cfg);
	/* Loopback addresses use lo alone; the others never use lo. */
	ck_assert_uint_eq(agg_linkset_plan(&cfg, &l, addrs, 2, out, 64), 2);
	ck_assert_uint_eq(out[0].iface, 0);
	ck_assert_uint_eq(out[1].iface, 0);
	ck_assert_uint_eq(agg_linkset_plan(&cfg, &l, &addrs[2], 1, out, 64), 4);
	ck_assert_uint_eq(out[0].iface, 1);
	cfg.ifaces = only_eth1;
	cfg.nifaces = 1;
	ck_assert_uint_eq(agg_linkset_plan(&cfg, &l, addrs, 3, out, 64), 1);
	ck_assert_uint_eq(out[0].iface, 2);
	ck_assert_uint_eq(out[0].addr, 2);
	cfg.ifaces = only_lo;
	cfg.nifaces = 2;
	ck_assert_uint_eq(agg_linkset_plan(&cfg, &l, addrs, 3, out, 64), 2);
}
END_TEST

START_TEST(test_filter_names)
{
	enum agg_link_filter f;

	ck_assert_int_eq(agg_link_filter_parse("any", &f), 0);
	ck_assert_int_eq(f, AGG_FILTER_ANY);
	ck_assert_int_eq(agg_link_filter_parse("interface-ip", &f), 0);
	ck_assert_int_eq(f, AGG_FILTER_INTERFACE_IP);
	ck_assert_int_eq(agg_link_filter_parse("interface-interface", &f), 0);
	ck_assert_int_eq(f, AGG_FILTER_INTERFACE_INTERFACE);
	ck_assert_int_eq(agg_link_filter_parse("ip", &f), -1);
	ck_assert_str_eq(agg_link_filter_name(AGG_FILTER_INTERFACE_IP),
	    "interface-ip");
}
END_TEST

START_TEST(test_sockaddr_format)
{
	struct agg_sockaddr a;
	char out[64];

	server_addr(&a, "2001:db8::1");
	((struct sockaddr_in6 *)&a.ss)->sin6_port = htons(5800);
	agg_sockaddr_format((struct sockaddr *)&a.ss, 1, out, sizeof(out));
	ck_assert_str_eq(out, "[2001:db8::1]:5800");
	server_addr(&a, "::ffff:192.0.2.1");
	((struct sockaddr_in6 *)&a.ss)->sin6_port = htons(80);
	agg_sockaddr_format((struct sockaddr *)&a.ss, 1, out, sizeof(out));
	ck_assert_str_eq(out, "192.0.2.1:80");
	ck_assert(agg_sockaddr_is_loopback((struct sockaddr *)&a.ss) == 0);
	server_addr(&a, "127.0.0.2");
	ck_assert(agg_sockaddr_is_loopback((struct sockaddr *)&a.ss));
	agg_sockaddr_format((struct sockaddr *)&a.ss, 0, out, sizeof(out));
	ck_assert_str_eq(out, "127.0.0.2");
}
END_TEST

START_TEST(test_scan_finds_loopback)
{
	static struct agg_iface_list l;
	const struct agg_iface *lo;
	struct agg_sockaddr a;
	char err[256];

	ck_assert_int_eq(agg_ifaces_scan(&l, err, sizeof(err)), 0);
	lo = agg_ifaces_find(&l, "lo");
	ck_assert_ptr_nonnull(lo);
	ck_assert(lo->flags & IFF_LOOPBACK);
	ck_assert(agg_iface_is_up(lo));
	ck_assert_uint_eq(lo->index, if_nametoindex("lo"));
	server_addr(&a, "127.0.0.1");
	ck_assert(agg_iface_has_addr(lo, (struct sockaddr *)&a.ss));
}
END_TEST

/* ---- the link set ---- */

START_TEST(test_one_link_on_loopback)
{
	struct agg_linkset_config cfg;
	char want[64];

	start_server("127.0.0.1");
	quick_config(&cfg);
	start_client(&cfg);
	add_server("127.0.0.1", F.port);
	ck_assert_uint_eq(agg_linkset_wanted(F.ls), 1);
	ck_assert(run_until(server_has_one));
	snprintf(want, sizeof(want), "lo->127.0.0.1:%d", F.port);
	ck_assert_int_eq(F.client_up, 1);
	ck_assert_str_eq(F.up_names[0], want);
	ck_assert_uint_eq(agg_session_links_up(F.client), 1);
	ck_assert_uint_eq(agg_linkset_wanted(F.ls), 1);
	ck_assert_str_eq(agg_linkset_last_error(F.ls), "");
	ck_assert_uint_eq(agg_hub_sessions(F.hub), 1);
	check_echo();
}
END_TEST

START_TEST(test_two_links_dual_stack)
{
	struct agg_linkset_config cfg;
	char want[64];

	start_server("");
	quick_config(&cfg);
	start_client(&cfg);
	add_server("127.0.0.1", F.port);
	add_server("::1", F.port);
	ck_assert_uint_eq(agg_linkset_wanted(F.ls), 2);
	ck_assert(run_until(two_up));
	ck_assert_int_eq(F.client_up, 2);
	snprintf(want, sizeof(want), "lo->127.0.0.1:%d", F.port);
	ck_assert(client_saw_up(want));
	snprintf(want, sizeof(want), "lo->[::1]:%d", F.port);
	ck_assert(client_saw_up(want));
	ck_assert_uint_eq(agg_session_links_up(F.client), 2);
	ck_assert_uint_eq(agg_hub_sessions(F.hub), 1);
	ck_assert_int_eq(F.accepted, 2);
	ck_assert(strncmp(F.peers[0], "127.0.0.1:", 10) == 0 ||
	    strncmp(F.peers[1], "127.0.0.1:", 10) == 0);
	ck_assert(strncmp(F.peers[0], "[::1]:", 6) == 0 ||
	    strncmp(F.peers[1], "[::1]:", 6) == 0);
	check_echo();
}
END_TEST

START_TEST(test_host_name_resolved_with_evdns)
{
	static const char text[] = "127.0.0.1 agg-test.example\n"
	    "::1 agg-test.example\n";
	struct agg_linkset_config cfg;
	char hosts[] = "/tmp/agg-linkset-hosts-XXXXXX", want[64];
	int fd;

	fd = mkstemp(hosts);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	F.dns = evdns_base_new(F.base, 0);
	ck_assert_ptr_nonnull(F.dns);
	ck_assert_int_eq(evdns_base_load_hosts(F.dns, hosts), 0);
	unlink(hosts);
	start_server("");
	quick_config(&cfg);
	start_client(&cfg);
	add_server("agg-test.example", F.port);
	ck_assert(run_until(two_up));
	snprintf(want, sizeof(want), "lo->127.0.0.1:%d", F.port);
	ck_assert(client_saw_up(want));
	snprintf(want, sizeof(want), "lo->[::1]:%d", F.port);
	ck_assert(client_saw_up(want));
	ck_assert_uint_eq(agg_linkset_wanted(F.ls), 2);
	ck_assert_str_eq(agg_linkset_last_error(F.ls), "");
}
END_TEST

START_TEST(test_refused_then_listening)
{
	struct agg_linkset_config cfg;
	struct agg_url u;
	char want[256], err[256];
	int fd, port;

	port = reserve_port(&fd);
	quick_config(&cfg);
	start_client(&cfg);
	add_server("127.0.0.1", port);
	ck_assert(run_until(have_error));
	snprintf(want, sizeof(want), "cannot reach tcp://127.0.0.1:%d via lo: "
	    "connection refused", port);
	ck_assert_str_eq(agg_linkset_last_error(F.ls), want);
	ck_assert_uint_eq(agg_linkset_wanted(F.ls), 1);
	ck_assert_int_eq(F.client_up, 0);
	/* The slot keeps dialling with backoff; a server appears. */
	close(fd);
	make_url(&u, "127.0.0.1", port);
	F.hub = agg_hub_new(F.base, &F.cfg, KEY, strlen(KEY), 4, &hub_cbs,
	    NULL);
	F.listener = agg_tcp_listen(F.base, &u, accept_to_hub_cb, NULL, err,
	    sizeof(err));
	ck_assert_msg(F.listener != NULL, "%s", err);
	ck_assert(run_until(one_up));
	snprintf(want, sizeof(want), "lo->127.0.0.1:%d", port);
	ck_assert_str_eq(F.up_names[0], want);
}
END_TEST

/* Done: the link came back after the server closed it. */
static bool relinked(void)
{
	return F.client_up >= 2 && F.nserver_links == 1;
}

START_TEST(test_server_close_redials)
{
	struct agg_linkset_config cfg;
	char want[256];

	start_server("127.0.0.1");
	quick_config(&cfg);
	start_client(&cfg);
	add_server("127.0.0.1", F.port);
	ck_assert(run_until(server_has_one));
	agg_link_close(F.server_links[0], "closed by the test");
	ck_assert(run_until(relinked));
	ck_assert_int_eq(F.client_up, 2);
	ck_assert_int_eq(F.client_closed, 1);
	ck_assert_uint_eq(agg_session_links_up(F.client), 1);
	ck_assert_uint_eq(agg_hub_sessions(F.hub), 1);
	ck_assert_uint_eq(agg_linkset_wanted(F.ls), 1);
	snprintf(want, sizeof(want), "lost tcp://127.0.0.1:%d via lo: ",
	    F.port);
	ck_assert_msg(strncmp(agg_linkset_last_error(F.ls), want,
	    strlen(want)) == 0, "%s", agg_linkset_last_error(F.ls));
	check_echo();
}
END_TEST

START_TEST(test_no_such_interface)
{
	static const char *const ifaces[] = { "nosuch0" };
	struct agg_linkset_config cfg;
	char want[256];

	start_server("127.0.0.1");
	quick_config(&cfg);
	cfg.ifaces = ifaces;
	cfg.nifaces = 1;
	start_client(&cfg);
	add_server("127.0.0.1", F.port);
	ck_assert_uint_eq(agg_linkset_wanted(F.ls), 0);
	snprintf(want, sizeof(want), "cannot reach tcp://127.0.0.1:%d: no "
	    "interface named nosuch0", F.port);
	ck_assert_str_eq(agg_linkset_last_error(F.ls), want);
	run_pending();
	ck_assert_int_eq(F.accepted, 0);
}
END_TEST

START_TEST(test_interface_option_lo)
{
	static const char *const ifaces[] = { "lo" };
	struct agg_linkset_config cfg;

	start_server("127.0.0.1");
	quick_config(&cfg);
	cfg.ifaces = ifaces;
	cfg.nifaces = 1;
	start_client(&cfg);
	add_server("127.0.0.1", F.port);
	ck_assert_uint_eq(agg_linkset_wanted(F.ls), 1);
	ck_assert(run_until(one_up));
}
END_TEST

START_TEST(test_family_restriction)
{
	struct agg_linkset_config cfg;
	char want[256];

	start_server("");
	quick_config(&cfg);
	cfg.family = AF_INET6;
	start_client(&cfg);
	add_server("127.0.0.1", F.port);
	snprintf(want, sizeof(want), "cannot resolve tcp://127.0.0.1:%d: no "
	    "IPv6 address", F.port);
	ck_assert_str_eq(agg_linkset_last_error(F.ls), want);
	add_server("::1", F.port);
	ck_assert_uint_eq(agg_linkset_wanted(F.ls), 1);
	ck_assert(run_until(one_up));
	snprintf(want, sizeof(want), "lo->[::1]:%d", F.port);
	ck_assert_str_eq(F.up_names[0], want);
}
END_TEST

START_TEST(test_tls_schemes_need_settings)
{
	struct agg_url u;
	char err[256];

	start_client(NULL);
	ck_assert_int_eq(agg_url_parse("tls://127.0.0.1:5800", &u, err,
	    sizeof(err)), 0);
	ck_assert_int_eq(agg_linkset_add_server(F.ls, &u, err, sizeof(err)),
	    -1);
	ck_assert_str_eq(err, "tls:// links need TLS settings");
	ck_assert_int_eq(agg_url_parse("wss://127.0.0.1:5800/x", &u, err,
	    sizeof(err)), 0);
	ck_assert_int_eq(agg_linkset_add_server(F.ls, &u, err, sizeof(err)),
	    -1);
	ck_assert_str_eq(err, "wss:// links need TLS settings");
	ck_assert_int_eq(agg_url_parse("tcp://agg.example:5800", &u, err,
	    sizeof(err)), 0);
	ck_assert_int_eq(agg_linkset_add_server(F.ls, &u, err, sizeof(err)),
	    -1);
	ck_assert_str_eq(err, "cannot resolve tcp://agg.example:5800: no DNS "
	    "resolver");
	ck_assert_uint_eq(agg_linkset_wanted(F.ls), 0);
}
END_TEST

START_TEST(test_interface_interface_falls_back)
{
	struct agg_linkset_config cfg;
	char want[64];
	int fd, refused;

	start_server("127.0.0.1");
	refused = reserve_port(&fd);
	quick_config(&cfg);
	cfg.filter = AGG_FILTER_INTERFACE_INTERFACE;
	start_client(&cfg);
	add_server("127.0.0.1", refused);
	add_server("127.0.0.1", F.port);
	ck_assert_uint_eq(agg_linkset_wanted(F.ls), 1);
	ck_assert(run_until(one_up));
	snprintf(want, sizeof(want), "lo->127.0.0.1:%d", F.port);
	ck_assert_str_eq(F.up_names[0], want);
	ck_assert_uint_eq(agg_linkset_wanted(F.ls), 1);
	close(fd);
}
END_TEST

START_TEST(test_handshake_timeout)
{
	struct agg_linkset_config cfg;
	struct agg_url u;
	char err[256], want[256];

	/* A listener that takes connections and never answers. */
	make_url(&u, "127.0.0.1", 0);
	F.listener = agg_tcp_listen(F.base, &u, accept_keep_cb, NULL, err,
	    sizeof(err));
	ck_assert_ptr_nonnull(F.listener);
	F.port = agg_tcp_listener_port(F.listener);
	F.cfg.handshake_ms = 100;
	quick_config(&cfg);
	start_client(&cfg);
	add_server("127.0.0.1", F.port);
	ck_assert(run_until(have_error));
	snprintf(want, sizeof(want), "cannot reach tcp://127.0.0.1:%d via lo: "
	    "handshake timed out", F.port);
	ck_assert_str_eq(agg_linkset_last_error(F.ls), want);
	ck_assert_int_eq(F.client_up, 0);
	ck_assert_int_eq(F.client_closed, 1);
	ck_assert_uint_eq(agg_linkset_wanted(F.ls), 1);
}
END_TEST

START_TEST(test_any_filter_binds_source)
{
	struct agg_linkset_config cfg;
	char want[64];

	start_server("");
	quick_config(&cfg);
	cfg.filter = AGG_FILTER_ANY;
	start_client(&cfg);
	add_server("127.0.0.1", F.port);
	add_server("::1", F.port);
	ck_assert_uint_eq(agg_linkset_wanted(F.ls), 2);
	ck_assert(run_until(two_up));
	snprintf(want, sizeof(want), "lo@127.0.0.1->127.0.0.1:%d", F.port);
	ck_assert(client_saw_up(want));
	snprintf(want, sizeof(want), "lo@::1->[::1]:%d", F.port);
	ck_assert(client_saw_up(want));
	ck_assert(strncmp(F.peers[0], "127.0.0.1:", 10) == 0 ||
	    strncmp(F.peers[1], "127.0.0.1:", 10) == 0);
}
END_TEST

/* Scanner: the fake interface list. */
static int fake_scan(struct agg_iface_list *out, char *err, size_t errlen,
    void *arg)
{
	(void)err;
	(void)errlen;
	(void)arg;
	*out = F.fake;
	F.scans++;
	return 0;
}

/* Sets the fake list to the loopback interface, as it is. */
static void fake_loopback(int with_v4, int with_v6, unsigned flags)
{
	struct agg_iface *ifc;

	memset(&F.fake, 0, sizeof(F.fake));
	ifc = agg_ifaces_add(&F.fake, "lo", if_nametoindex("lo"), flags);
	ck_assert_ptr_nonnull(ifc);
	if (with_v4)
		ck_assert_int_eq(agg_iface_add_addr(ifc, "127.0.0.1"), 0);
	if (with_v6)
		ck_assert_int_eq(agg_iface_add_addr(ifc, "::1"), 0);
}

/* Done: the second link came up too. */
static bool three_up(void)
{
	return F.client_up >= 3 && agg_session_links_up(F.client) == 2;
}

/* Done: two links came up again. */
static bool four_up(void)
{
	return F.client_up >= 4 && agg_session_links_up(F.client) == 2;
}

START_TEST(test_interface_goes_away_and_returns)
{
	const unsigned up = IFF_UP | IFF_RUNNING | IFF_LOOPBACK;
	struct agg_linkset_config cfg;

	start_server("");
	quick_config(&cfg);
	start_client(&cfg);
	fake_loopback(1, 1, up);
	agg_linkset_set_scanner(F.ls, fake_scan, NULL);
	add_server("127.0.0.1", F.port);
	add_server("::1", F.port);
	ck_assert(run_until(two_up));

	/* lo loses its IPv4 address: that link goes, the other stays. */
	fake_loopback(0, 1, up);
	agg_linkset_rescan(F.ls);
	ck_assert_int_eq(F.client_closed, 1);
	ck_assert_str_eq(F.closed_reasons[0], "interface lo lost its IPv4 "
	    "address");
	ck_assert_uint_eq(agg_linkset_wanted(F.ls), 1);
	ck_assert_uint_eq(agg_session_links_up(F.client), 1);
	/* It comes back. */
	fake_loopback(1, 1, up);
	agg_linkset_rescan(F.ls);
	ck_assert_uint_eq(agg_linkset_wanted(F.ls), 2);
	ck_assert(run_until(three_up));

	/* lo goes down: both links go and nothing re-dials. */
	fake_loopback(1, 1, IFF_LOOPBACK);
	agg_linkset_rescan(F.ls);
	ck_assert_int_eq(F.client_closed, 3);
	ck_assert_str_eq(F.closed_reasons[1], "interface lo went away");
	ck_assert_str_eq(F.closed_reasons[2], "interface lo went away");
	ck_assert_uint_eq(agg_linkset_wanted(F.ls), 0);
	ck_assert_uint_eq(agg_session_links_up(F.client), 0);
	ck_assert(run_until(server_saw_close));
	run_pending();
	ck_assert_int_eq(F.client_up, 3);
	/* lo disappears from the list, then comes back up. */
	memset(&F.fake, 0, sizeof(F.fake));
	agg_linkset_rescan(F.ls);
	ck_assert_uint_eq(agg_linkset_wanted(F.ls), 0);
	fake_loopback(1, 1, up);
	agg_linkset_rescan(F.ls);
	ck_assert_uint_eq(agg_linkset_wanted(F.ls), 2);
	ck_assert(run_until(four_up));
	ck_assert_uint_eq(agg_hub_sessions(F.hub), 1);
	check_echo();
}
END_TEST

/* Watch: counts calls. */
static void watch_cb(void *arg)
{
	(void)arg;
	F.watch_calls++;
}

/* Done: the watch called back twice. */
static bool watch_called_twice(void)
{
	return F.watch_calls >= 2;
}

START_TEST(test_watch_periodic)
{
	struct agg_ifwatch *w;

	w = agg_ifwatch_new(F.base, 10, watch_cb, NULL);
	ck_assert_ptr_nonnull(w);
	ck_assert(run_until(watch_called_twice));
	agg_ifwatch_free(w);
}
END_TEST

/* ---- real interfaces in network namespaces (root only) ---- */

#define NETNS_PORT 5800

/* Runs a shell command line; true if it succeeded. */
static bool sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Runs a shell command line; true if it succeeded. */
static bool sh(const char *fmt, ...)
{
	char cmd[512];
	va_list ap;
	int r;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	r = system(cmd);
	return r != -1 && WIFEXITED(r) && WEXITSTATUS(r) == 0;
}

/* Waits (at most 10 s) for one byte on fd; true if it came. */
static bool wait_byte(int fd)
{
	struct pollfd p = { fd, POLLIN, 0 };
	char c;

	return poll(&p, 1, 10000) == 1 && read(fd, &c, 1) == 1;
}

/* The server process: its own namespace with 10.9.0.1 on lo, reached
 * through s0 (10.9.1.2) and s1 (10.9.2.2) once the parent moved them in. */
static void netns_server_main(int up_fd, int go_fd)
{
	struct agg_url u;
	char err[256];

	if (unshare(CLONE_NEWNET) != 0 || write(up_fd, "n", 1) != 1 ||
	    !wait_byte(go_fd))
		_exit(1);
	if (!sh("ip link set lo up && ip addr add 10.9.0.1/32 dev lo && "
	    "ip addr add 10.9.1.2/24 dev s0 && ip link set s0 up && "
	    "ip addr add 10.9.2.2/24 dev s1 && ip link set s1 up"))
		_exit(1);
	F.base = event_base_new();
	F.hub = agg_hub_new(F.base, &F.cfg, KEY, strlen(KEY), 4, &hub_cbs,
	    NULL);
	make_url(&u, "0.0.0.0", NETNS_PORT);
	if (F.base == NULL || F.hub == NULL || agg_tcp_listen(F.base, &u,
	    accept_to_hub_cb, NULL, err, sizeof(err)) == NULL)
		_exit(1);
	if (write(up_fd, "l", 1) != 1)
		_exit(1);
	event_base_dispatch(F.base);
	_exit(0);
}

/* Done: a client link closed. */
static bool one_closed(void)
{
	return F.client_closed >= 1;
}

/* Done: a second client link closed. */
static bool two_closed(void)
{
	return F.client_closed >= 2;
}

/* Done: a third client link closed. */
static bool three_closed(void)
{
	return F.client_closed >= 3;
}

/* Done: a fourth client link closed. */
static bool four_closed(void)
{
	return F.client_closed >= 4;
}

/* Done: five links came up, two of them still up. */
static bool five_up(void)
{
	return F.client_up >= 5 && agg_session_links_up(F.client) == 2;
}

START_TEST(test_netns_interfaces_come_and_go)
{
	struct agg_linkset_config cfg;
	struct sockaddr_in sin;
	int up[2], go[2];
	char err[256];

	if (geteuid() != 0 || !sh("ip -V >/dev/null 2>&1") ||
	    unshare(CLONE_NEWNET) != 0 ||
	    !sh("ip link add c9 type veth peer name s9 >/dev/null 2>&1 && "
	    "ip link del c9")) {
		fprintf(stderr, "netns test skipped: needs root, ip(8), "
		    "network namespaces and veth\n");
		return;
	}
	ck_assert(sh("ip link set lo up"));
	ck_assert_int_eq(pipe(up), 0);
	ck_assert_int_eq(pipe(go), 0);
	F.netns_server = fork();
	ck_assert_int_ge(F.netns_server, 0);
	if (F.netns_server == 0)
		netns_server_main(up[1], go[0]);
	ck_assert(wait_byte(up[0]));
	ck_assert(sh("ip link add c0 type veth peer name s0 && "
	    "ip link set s0 netns %d && "
	    "ip link add c1 type veth peer name s1 && "
	    "ip link set s1 netns %d", (int)F.netns_server,
	    (int)F.netns_server));
	ck_assert(sh("ip addr add 10.9.1.1/24 dev c0 && ip link set c0 up && "
	    "ip addr add 10.9.2.1/24 dev c1 && ip link set c1 up && "
	    "ip route add 10.9.0.1/32 via 10.9.1.2 dev c0 && "
	    "ip route add 10.9.0.1/32 via 10.9.2.2 dev c1 metric 10 && "
	    "ip route add 10.9.7.7/32 via 10.9.1.2 dev c0"));
	ck_assert_int_eq(write(go[1], "g", 1), 1);
	ck_assert(wait_byte(up[0]));

	/* The server's namespace drops what is sent to 10.9.7.7. */
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	inet_pton(AF_INET, "10.9.7.7", &sin.sin_addr);
	sin.sin_port = htons(NETNS_PORT);
	ck_assert_ptr_nonnull(agg_tcp_connect_start(F.base,
	    (struct sockaddr *)&sin, sizeof(sin), "c0", NULL, 100,
	    connect_keep_cb, NULL, err, sizeof(err)));
	ck_assert(run_until(connect_done));
	ck_assert_ptr_null(F.conn_bev);
	ck_assert_str_eq(F.conn_error, "connection timed out");

	quick_config(&cfg);
	start_client(&cfg);
	add_server("10.9.0.1", NETNS_PORT);
	ck_assert_uint_eq(agg_linkset_wanted(F.ls), 2);
	ck_assert(run_until(two_up));
	ck_assert(client_saw_up("c0->10.9.0.1:5800"));
	ck_assert(client_saw_up("c1->10.9.0.1:5800"));
	check_echo();

	/* c1 goes down: rtnetlink (or the periodic rescan) drops its link. */
	ck_assert(sh("ip link set c1 down"));
	ck_assert(run_until(one_closed));
	ck_assert_str_eq(F.closed_reasons[0], "interface c1 went away");
	ck_assert_uint_eq(agg_linkset_wanted(F.ls), 1);
	ck_assert_uint_eq(agg_session_links_up(F.client), 1);
	/* It comes back up, and so does its link. */
	ck_assert(sh("ip link set c1 up && "
	    "ip route replace 10.9.0.1/32 via 10.9.2.2 dev c1 metric 10"));
	ck_assert(run_until(three_up));
	ck_assert_str_eq(F.up_names[2], "c1->10.9.0.1:5800");
	/* The link's source address moves: the link re-dials from the new
	 * one at once. */
	ck_assert(sh("echo 1 >/proc/sys/net/ipv4/conf/c1/promote_secondaries "
	    "&& ip addr add 10.9.2.5/24 dev c1 "
	    "&& ip addr del 10.9.2.1/24 dev c1 "
	    "&& ip route replace 10.9.0.1/32 via 10.9.2.2 dev c1 metric 10"));
	ck_assert(run_until(two_closed));
	ck_assert_str_eq(F.closed_reasons[1], "interface c1 lost address "
	    "10.9.2.1");
	ck_assert(run_until(four_up));
	/* c1 loses its last IPv4 address: its link goes for good. */
	ck_assert(sh("ip addr del 10.9.2.5/24 dev c1"));
	ck_assert(run_until(three_closed));
	ck_assert_str_eq(F.closed_reasons[2], "interface c1 lost its IPv4 "
	    "address");
	ck_assert_uint_eq(agg_linkset_wanted(F.ls), 1);
	/* c1 gets an address back, then is deleted. */
	ck_assert(sh("ip addr add 10.9.2.1/24 dev c1 && "
	    "ip route replace 10.9.0.1/32 via 10.9.2.2 dev c1 metric 10"));
	ck_assert(run_until(five_up));
	ck_assert(sh("ip link del c1"));
	ck_assert(run_until(four_closed));
	ck_assert_str_eq(F.closed_reasons[3], "interface c1 went away");
	ck_assert_uint_eq(agg_linkset_wanted(F.ls), 1);
	ck_assert_uint_eq(agg_session_links_up(F.client), 1);
}
END_TEST

/* Builds the suite. */
static Suite *linkset_suite(void)
{
	Suite *s = suite_create("linkset");
	TCase *tc;

	tc = tcase_create("tcp");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_tune_sets_options);
	tcase_add_test(tc, test_listen_dual_stack);
	tcase_add_test(tc, test_listen_host_name);
	tcase_add_test(tc, test_listen_address_in_use);
	tcase_add_test(tc, test_connect_refused);
	tcase_add_test(tc, test_connect_bad_interface);
	tcase_add_test(tc, test_connect_cancel);
	suite_add_tcase(s, tc);
	tc = tcase_create("plan");
	tcase_add_test(tc, test_plan_seed_interface_ip);
	tcase_add_test(tc, test_plan_any);
	tcase_add_test(tc, test_plan_interface_interface);
	tcase_add_test(tc, test_plan_family);
	tcase_add_test(tc, test_plan_skips_unusable);
	tcase_add_test(tc, test_plan_loopback_and_ifaces_option);
	tcase_add_test(tc, test_filter_names);
	tcase_add_test(tc, test_sockaddr_format);
	tcase_add_test(tc, test_scan_finds_loopback);
	suite_add_tcase(s, tc);
	tc = tcase_create("linkset");
	tcase_set_timeout(tc, 120);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_one_link_on_loopback);
	tcase_add_test(tc, test_two_links_dual_stack);
	tcase_add_test(tc, test_host_name_resolved_with_evdns);
	tcase_add_test(tc, test_refused_then_listening);
	tcase_add_test(tc, test_server_close_redials);
	tcase_add_test(tc, test_no_such_interface);
	tcase_add_test(tc, test_interface_option_lo);
	tcase_add_test(tc, test_family_restriction);
	tcase_add_test(tc, test_tls_schemes_need_settings);
	tcase_add_test(tc, test_interface_interface_falls_back);
	tcase_add_test(tc, test_handshake_timeout);
	tcase_add_test(tc, test_any_filter_binds_source);
	tcase_add_test(tc, test_interface_goes_away_and_returns);
	tcase_add_test(tc, test_watch_periodic);
	suite_add_tcase(s, tc);
	tc = tcase_create("netns");
	tcase_set_timeout(tc, 120);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_netns_interfaces_come_and_go);
	suite_add_tcase(s, tc);
	return s;
}

/* Runs the suite. */
int main(void)
{
	SRunner *sr = srunner_create(linkset_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
