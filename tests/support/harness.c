/*
 * harness.c: a client session and a server hub joined by shaped in-process
 * links, with pattern-producing and verifying applications on both ends.
 */
#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "agg/log.h"
#include "agg/splice.h"
#include "agg/target.h"
#include "pair.h"

static uint8_t pattern_table[PATTERN_PERIOD];
static bool pattern_ready;

/* Fills the pattern table once (a fixed xorshift sequence). */
static void pattern_init(void)
{
	uint32_t x = 2463534242u;
	size_t i;

	if (pattern_ready)
		return;
	for (i = 0; i < PATTERN_PERIOD; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		pattern_table[i] = (uint8_t)(x >> 24);
	}
	pattern_ready = true;
}

/* Byte at a stream offset in the test pattern. */
uint8_t pattern_byte(uint64_t offset)
{
	pattern_init();
	return pattern_table[offset % PATTERN_PERIOD];
}

/* Verifies and drains everything in the stream's input. */
static void xfer_consume(struct xfer *x)
{
	struct evbuffer *in = agg_stream_input(x->stream);
	struct evbuffer_iovec v[16];
	int n, i;
	size_t j, len;

	while ((len = evbuffer_get_length(in)) > 0) {
		n = evbuffer_peek(in, (ev_ssize_t)len, NULL, v, 16);
		if (n > 16)
			n = 16;
		len = 0;
		for (i = 0; i < n; i++) {
			const uint8_t *p = v[i].iov_base;

			for (j = 0; j < v[i].iov_len; j++) {
				uint64_t off = x->received + len + j;

				if (x->bad_offset == 0 &&
				    p[j] != pattern_table[off % PATTERN_PERIOD])
					x->bad_offset = off + 1;
			}
			len += v[i].iov_len;
		}
		evbuffer_drain(in, len);
		x->received += len;
	}
}

/* Writes as much of x's remaining bytes as the stream takes. */
void xfer_pump(struct xfer *x)
{
	uint8_t buf[16384];
	struct evbuffer *tmp;
	size_t space, n, i;

	if (x->stream == NULL || x->echo)
		return;
	tmp = evbuffer_new();
	while (x->sent < x->to_send &&
	    (space = agg_stream_write_space(x->stream)) > 0) {
		n = sizeof(buf);
		if (n > space)
			n = space;
		if (n > x->to_send - x->sent)
			n = (size_t)(x->to_send - x->sent);
		for (i = 0; i < n; i++)
			buf[i] = pattern_table[(x->sent + i) % PATTERN_PERIOD];
		evbuffer_add(tmp, buf, n);
		x->sent += agg_stream_write(x->stream, tmp, n);
		evbuffer_drain(tmp, evbuffer_get_length(tmp));
	}
	evbuffer_free(tmp);
	if (x->sent == x->to_send && !x->shutdown_sent) {
		x->shutdown_sent = true;
		agg_stream_shutdown(x->stream);
	}
}

/* Stream callback: new input. */
static void xfer_readable_cb(struct agg_stream *st, void *arg)
{
	struct xfer *x = arg;
	struct evbuffer *in = agg_stream_input(st);

	if (x->echo) {
		size_t len = evbuffer_get_length(in);

		x->received += len;
		x->sent += agg_stream_write(st, in, len);
		return;
	}
	if (x->reading)
		xfer_consume(x);
}

/* Stream callback: the peer's FIN. */
static void xfer_eof_cb(struct agg_stream *st, void *arg)
{
	struct xfer *x = arg;

	x->got_eof = true;
	if (x->echo && evbuffer_get_length(agg_stream_input(st)) == 0)
		agg_stream_shutdown(st);
	if (x->reading && x->to_send == 0 && !x->shutdown_sent) {
		x->shutdown_sent = true;
		agg_stream_shutdown(st);
	}
}

/* Stream callback: room to write again. */
static void xfer_writable_cb(struct agg_stream *st, void *arg)
{
	struct xfer *x = arg;

	(void)st;
	if (x->echo) {
		xfer_readable_cb(st, arg);
		if (x->got_eof &&
		    evbuffer_get_length(agg_stream_input(st)) == 0)
			agg_stream_shutdown(st);
		return;
	}
	xfer_pump(x);
}

/* Stream callback: the open's answer. */
static void xfer_result_cb(struct agg_stream *st, int code,
    const char *message, void *arg)
{
	struct xfer *x = arg;

	(void)st;
	x->got_result = true;
	x->result_code = code;
	snprintf(x->message, sizeof(x->message), "%s", message);
	if (code == AGG_OK)
		xfer_pump(x);
}

/* Stream callback: failure. */
static void xfer_closed_cb(struct agg_stream *st, int code,
    const char *reason, void *arg)
{
	struct xfer *x = arg;

	(void)st;
	x->closed = true;
	x->closed_code = code;
	snprintf(x->message, sizeof(x->message), "%s", reason);
}

static const struct agg_stream_callbacks xfer_cbs = {
	.result = xfer_result_cb,
	.readable = xfer_readable_cb,
	.eof = xfer_eof_cb,
	.writable = xfer_writable_cb,
	.closed = xfer_closed_cb,
};

/* Echo end of a "pipe" stream: sends back what arrives. */
static void echo_read_cb(struct bufferevent *bev, void *arg)
{
	(void)arg;
	bufferevent_write_buffer(bev, bufferevent_get_input(bev));
}

/* Echo end: once EOF came and everything went back, shut down writing. */
static void echo_write_cb(struct bufferevent *bev, void *arg)
{
	struct harness *h = arg;

	if (h->echo_eof && evbuffer_get_length(bufferevent_get_output(bev)) ==
	    0)
		shutdown((int)bufferevent_getfd(bev), SHUT_WR);
}

/* Echo end: EOF from the splice. */
static void echo_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct harness *h = arg;

	if (what & BEV_EVENT_EOF) {
		h->echo_eof = true;
		echo_write_cb(bev, arg);
	}
}

/* The server's splice ended. */
static void splice_done_cb(struct agg_splice *sp, int error,
    const char *reason, void *arg)
{
	struct harness *h = arg;

	h->splice_done = true;
	h->splice_error = error;
	snprintf(h->splice_reason, sizeof(h->splice_reason), "%s", reason);
	agg_splice_free(sp);
}

/* Accepts a stream and splices it to an in-process echo socket. */
static void server_splice_echo(struct harness *h, struct agg_stream *st)
{
	struct bufferevent *bev;
	int fds[2];

	if (h->echo_bev != NULL || socketpair(AF_UNIX, SOCK_STREAM, 0, fds)) {
		agg_stream_refuse(st, AGG_ERR_GENERAL, "one pipe at a time");
		return;
	}
	h->echo_bev = bufferevent_socket_new(h->base, fds[0],
	    BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(h->echo_bev, echo_read_cb, echo_write_cb,
	    echo_event_cb, h);
	bufferevent_enable(h->echo_bev, EV_READ | EV_WRITE);
	bev = bufferevent_socket_new(h->base, fds[1], BEV_OPT_CLOSE_ON_FREE);
	agg_stream_accept(st, NULL, NULL);
	agg_splice_new(st, bev, bev, splice_done_cb, h);
}

/* Server: a peer opened a stream; behave as its host name says. */
static void server_stream_opened_cb(struct agg_session *s,
    struct agg_stream *st, const struct agg_target *t, void *arg)
{
	struct harness *h = arg;
	struct xfer *x;

	(void)s;
	if (t->type != AGG_ADDR_NAME || strcmp(t->addr.name, "refuse") == 0 ||
	    h->nserver_xfers >= sizeof(h->server_xfers) /
	    sizeof(h->server_xfers[0])) {
		agg_stream_refuse(st, t->port, "refused by test");
		return;
	}
	if (strcmp(t->addr.name, "pipe") == 0) {
		server_splice_echo(h, st);
		return;
	}
	x = &h->server_xfers[h->nserver_xfers++];
	memset(x, 0, sizeof(*x));
	x->stream = st;
	if (strcmp(t->addr.name, "sink") == 0) {
		x->reading = true;
	} else if (strcmp(t->addr.name, "echo") == 0) {
		x->echo = true;
	} else if (strcmp(t->addr.name, "source") == 0 ||
	    strcmp(t->addr.name, "slow") == 0) {
		x->to_send = (uint64_t)t->port << 20;
		x->reading = strcmp(t->addr.name, "source") == 0;
	}
	agg_stream_accept(st, &xfer_cbs, x);
	xfer_pump(x);
}

/* Server session callback: a link changed state. */
static void server_link_state_cb(struct agg_session *s, struct agg_link *link,
    enum agg_link_state state, const char *reason, void *arg)
{
	struct harness *h = arg;

	(void)s;
	(void)link;
	if (state == AGG_LINK_CLOSED || state == AGG_LINK_STALLED)
		snprintf(h->server_link_reason, sizeof(h->server_link_reason),
		    "%s", reason);
	if (state == AGG_LINK_CLOSED)
		h->server_link_closed_count++;
	if (state == AGG_LINK_STALLED)
		h->server_link_stalled_count++;
}

/* Server session callback: the session ended. */
static void server_closed_cb(struct agg_session *s, const char *reason,
    void *arg)
{
	struct harness *h = arg;

	(void)s;
	h->server_closed = true;
	snprintf(h->server_close_reason, sizeof(h->server_close_reason), "%s",
	    reason);
}

static const struct agg_session_callbacks server_cbs = {
	.stream_opened = server_stream_opened_cb,
	.link_state = server_link_state_cb,
	.closed = server_closed_cb,
};

/* Hub callback: a client created its session. */
static void hub_session_new_cb(struct agg_hub *hub, struct agg_session *s,
    void *arg)
{
	struct harness *h = arg;

	(void)hub;
	h->server = s;
	agg_session_set_callbacks(s, &server_cbs, h);
}

static const struct agg_hub_callbacks hub_cbs = {
	.session_new = hub_session_new_cb,
};

/* Client session callback: a link changed state. */
static void client_link_state_cb(struct agg_session *s, struct agg_link *link,
    enum agg_link_state state, const char *reason, void *arg)
{
	struct harness *h = arg;
	size_t i;

	(void)s;
	if (state == AGG_LINK_UP)
		h->link_up_count++;
	if (state == AGG_LINK_STALLED)
		h->link_stalled_count++;
	if (state == AGG_LINK_CLOSED) {
		h->link_closed_count++;
		snprintf(h->last_link_reason, sizeof(h->last_link_reason),
		    "%s", reason);
		for (i = 0; i < h->npairs; i++)
			if (h->client_links[i] == link)
				h->client_links[i] = NULL;
	}
}

/* Client session callback: the session ended. */
static void client_closed_cb(struct agg_session *s, const char *reason,
    void *arg)
{
	struct harness *h = arg;

	(void)s;
	h->client_closed = true;
	snprintf(h->client_close_reason, sizeof(h->client_close_reason), "%s",
	    reason);
}

static const struct agg_session_callbacks client_cbs = {
	.link_state = client_link_state_cb,
	.closed = client_closed_cb,
};

/* Creates a harness with nlinks links. */
struct harness *harness_new(size_t nlinks, const struct agg_config *cfg,
    const char *client_key, const char *server_key)
{
	struct harness *h = calloc(1, sizeof(*h));
	size_t i;

	signal(SIGPIPE, SIG_IGN);
	pattern_init();
	if (getenv("AGG_TEST_DEBUG") != NULL)
		agg_log_set_level(AGG_LOG_DEBUG);
	h->base = event_base_new();
	if (cfg != NULL)
		h->cfg = *cfg;
	else
		agg_config_init(&h->cfg);
	h->hub = agg_hub_new(h->base, &h->cfg, server_key, strlen(server_key),
	    64, &hub_cbs, h);
	h->client = agg_session_new_client(h->base, &h->cfg, client_key,
	    strlen(client_key), &client_cbs, h);
	for (i = 0; i < nlinks; i++)
		harness_add_link(h);
	return h;
}

/* Adds one more link; returns its index. */
size_t harness_add_link(struct harness *h)
{
	struct bufferevent *a, *b;
	size_t i = h->npairs++;
	char name[32];

	h->pairs[i] = agg_pair_new(h->base, &a, &b);
	snprintf(name, sizeof(name), "test%zu", i);
	h->client_links[i] = agg_session_add_link(h->client, a, name);
	agg_hub_add_link(h->hub, b, name);
	return i;
}

/* Seconds on the monotonic clock. */
static double harness_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs the loop until done() or the time is up. */
bool harness_run(struct harness *h, bool (*done)(struct harness *, void *),
    void *arg, double seconds)
{
	double deadline = harness_now() + seconds;
	struct timeval tick = { 0, 20000 };

	while (!done(h, arg)) {
		if (harness_now() > deadline)
			return false;
		event_base_loopexit(h->base, &tick);
		event_base_loop(h->base, EVLOOP_ONCE);
	}
	return true;
}

/* Never done: used to run the loop for a while. */
static bool harness_never(struct harness *h, void *arg)
{
	(void)h;
	(void)arg;
	return false;
}

/* Runs the loop for about the given time. */
void harness_sleep(struct harness *h, double seconds)
{
	harness_run(h, harness_never, NULL, seconds);
}

/* Opens a client stream. */
struct agg_stream *harness_open(struct harness *h, const char *target,
    struct xfer *x)
{
	struct agg_target t;

	if (agg_target_parse(target, &t) != 0)
		return NULL;
	x->stream = agg_session_open_stream(h->client, &t, &xfer_cbs, x);
	return x->stream;
}

/* DATA payload bytes carried by link i, both directions (client view). */
uint64_t harness_link_payload(struct harness *h, size_t i)
{
	struct agg_link_stats st[HARNESS_MAX_LINKS];
	size_t n = agg_session_get_link_stats(h->client, st, HARNESS_MAX_LINKS);
	char name[32];
	size_t j;

	snprintf(name, sizeof(name), "test%zu", i);
	for (j = 0; j < n && j < HARNESS_MAX_LINKS; j++)
		if (strcmp(st[j].name, name) == 0)
			return st[j].tx_payload + st[j].rx_payload;
	return 0;
}

/* State of the client's link i. */
enum agg_link_state harness_link_state(struct harness *h, size_t i)
{
	struct agg_link_stats st[HARNESS_MAX_LINKS];
	size_t n = agg_session_get_link_stats(h->client, st, HARNESS_MAX_LINKS);
	char name[32];
	size_t j;

	snprintf(name, sizeof(name), "test%zu", i);
	for (j = 0; j < n && j < HARNESS_MAX_LINKS; j++)
		if (strcmp(st[j].name, name) == 0)
			return st[j].state;
	return AGG_LINK_CLOSED;
}

/* Frees everything. */
void harness_free(struct harness *h)
{
	size_t i;

	agg_session_free(h->client);
	agg_hub_free(h->hub);
	if (h->echo_bev != NULL)
		bufferevent_free(h->echo_bev);
	for (i = 0; i < h->npairs; i++)
		if (h->pairs[i] != NULL)
			agg_pair_free(h->pairs[i]);
	event_base_free(h->base);
	free(h);
}
