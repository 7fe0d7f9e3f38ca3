/*
 * test_session.c: sessions over in-process links: bytes in equal bytes out,
 * across many links, link failures, stalls, joins, and many streams.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "agg/log.h"
#include "agg/session.h"
#include "auth.h"
#include "internal.h"
#include "harness.h"
#include "wire.h"
#include "pair.h"

#define KEY "test secret"
#define MIB (1024u * 1024u)

/* Done when the client's transfer has received want bytes and EOF. */
static bool download_done(struct harness *h, void *arg)
{
	struct xfer *x = arg;

	(void)h;
	return (x->got_eof && x->received >= x->to_send) || x->closed ||
	    (x->got_result && x->result_code != AGG_OK);
}

/* Done when the server's sink got everything the client sent and EOF. */
static bool upload_done(struct harness *h, void *arg)
{
	struct xfer *x = arg;

	return (h->nserver_xfers > 0 && h->server_xfers[0].got_eof) ||
	    x->closed;
}

/* Downloads mib MiB over nlinks unshaped links and checks every byte. */
static void check_download(size_t nlinks, unsigned mib)
{
	struct harness *h = harness_new(nlinks, NULL, KEY, KEY);
	struct xfer x;
	char target[32];
	size_t i;

	memset(&x, 0, sizeof(x));
	x.reading = true;
	x.to_send = 0;
	snprintf(target, sizeof(target), "source:%u", mib);
	ck_assert_ptr_nonnull(harness_open(h, target, &x));
	x.to_send = 0;
	ck_assert(harness_run(h, download_done, &x, 300));
	ck_assert_int_eq(x.result_code, AGG_OK);
	ck_assert(!x.closed);
	ck_assert_uint_eq(x.received, (uint64_t)mib * MIB);
	ck_assert_uint_eq(x.bad_offset, 0);
	for (i = 0; i < nlinks; i++)
		ck_assert_uint_gt(harness_link_payload(h, i), 0);
	agg_stream_free(x.stream);
	harness_free(h);
}

START_TEST(test_download_1_link)
{
	check_download(1, 64);
}
END_TEST

START_TEST(test_download_2_links)
{
	check_download(2, 64);
}
END_TEST

START_TEST(test_download_4_links)
{
	check_download(4, 64);
}
END_TEST

START_TEST(test_download_8_links)
{
	check_download(8, 64);
}
END_TEST

START_TEST(test_upload_4_links)
{
	struct harness *h = harness_new(4, NULL, KEY, KEY);
	struct xfer x;

	memset(&x, 0, sizeof(x));
	x.to_send = 64u * MIB;
	ck_assert_ptr_nonnull(harness_open(h, "sink:1", &x));
	ck_assert(harness_run(h, upload_done, &x, 300));
	ck_assert(!x.closed);
	ck_assert_uint_eq(h->server_xfers[0].received, 64u * MIB);
	ck_assert_uint_eq(h->server_xfers[0].bad_offset, 0);
	agg_stream_free(x.stream);
	harness_free(h);
}
END_TEST

/* Done when the client has received at least *arg bytes on x. */
struct progress {
	struct xfer *x;
	uint64_t bytes;
};

/* Done when a transfer has passed a byte count (or ended). */
static bool progress_done(struct harness *h, void *arg)
{
	struct progress *p = arg;

	return p->x->received >= p->bytes || download_done(h, p->x);
}

/* Opens a download of mib MiB into x. */
static void start_download(struct harness *h, struct xfer *x, unsigned mib)
{
	char target[32];

	memset(x, 0, sizeof(*x));
	x->reading = true;
	snprintf(target, sizeof(target), "source:%u", mib);
	ck_assert_ptr_nonnull(harness_open(h, target, x));
}

/* Runs until x has received bytes, failing if it ends or stalls first. */
static void run_until_received(struct harness *h, struct xfer *x,
    uint64_t bytes)
{
	struct progress p = { x, bytes };

	ck_assert(harness_run(h, progress_done, &p, 120));
	ck_assert_uint_ge(x->received, bytes);
	ck_assert(!x->got_eof);
}

/* Runs a download to its end and checks every byte of it. */
static void finish_download(struct harness *h, struct xfer *x, unsigned mib)
{
	ck_assert(harness_run(h, download_done, x, 300));
	ck_assert_msg(!x->closed, "stream failed: %s", x->message);
	ck_assert_int_eq(x->result_code, AGG_OK);
	ck_assert_uint_eq(x->received, (uint64_t)mib * MIB);
	ck_assert_uint_eq(x->bad_offset, 0);
}

/* Shapes link i: bytes/s and one-way delay in microseconds. */
static void shape(struct harness *h, size_t i, uint64_t rate, uint32_t delay)
{
	agg_pair_set_rate(h->pairs[i], rate, rate);
	agg_pair_set_delay(h->pairs[i], delay, delay);
}

START_TEST(test_different_rates_and_delays)
{
	struct harness *h = harness_new(2, NULL, KEY, KEY);
	struct xfer x;

	/* 10x the rate and 5x the delay apart. */
	shape(h, 0, 20 * MIB, 2000);
	shape(h, 1, 2 * MIB, 10000);
	start_download(h, &x, 24);
	finish_download(h, &x, 24);
	ck_assert_uint_gt(harness_link_payload(h, 0), 8 * MIB);
	ck_assert_uint_gt(harness_link_payload(h, 1), 256 * 1024);
	agg_stream_free(x.stream);
	harness_free(h);
}
END_TEST

START_TEST(test_link_cut_mid_transfer)
{
	struct harness *h = harness_new(3, NULL, KEY, KEY);
	struct agg_session_stats st;
	struct xfer x;
	size_t i;

	for (i = 0; i < 3; i++)
		shape(h, i, 16 * MIB, 1000);
	start_download(h, &x, 48);
	run_until_received(h, &x, 12 * MIB);
	agg_pair_cut(h->pairs[0]);
	finish_download(h, &x, 48);
	ck_assert_int_eq(harness_link_state(h, 0), AGG_LINK_CLOSED);
	/* Depending on which end notices first. */
	ck_assert_msg(strcmp(h->last_link_reason, "connection closed by peer") ==
	    0 || strcmp(h->last_link_reason, "write error: Broken pipe") == 0 ||
	    strcmp(h->last_link_reason, "read error: Connection reset by peer") ==
	    0, "unexpected reason: %s", h->last_link_reason);
	agg_session_get_stats(h->server, &st);
	ck_assert_uint_gt(st.resent_frames, 0);
	ck_assert_uint_eq(st.links, 2);
	agg_stream_free(x.stream);
	harness_free(h);
}
END_TEST

START_TEST(test_server_closes_a_link)
{
	struct harness *h = harness_new(3, NULL, KEY, KEY);
	struct xfer x;
	size_t i;

	for (i = 0; i < 3; i++)
		shape(h, i, 16 * MIB, 1000);
	start_download(h, &x, 32);
	run_until_received(h, &x, 8 * MIB);
	agg_link_close(TAILQ_FIRST(&h->server->links), "test closes it");
	finish_download(h, &x, 32);
	ck_assert_int_eq(h->link_closed_count, 1);
	ck_assert_str_eq(h->server_link_reason, "test closes it");
	ck_assert_uint_eq(agg_session_links_up(h->client), 2);
	agg_stream_free(x.stream);
	harness_free(h);
}
END_TEST

/* Done when the client's link i is back up. */
static bool link0_up(struct harness *h, void *arg)
{
	(void)arg;
	return harness_link_state(h, 0) == AGG_LINK_UP;
}

/* Done when the client's link 0 is stalled. */
static bool link0_stalled(struct harness *h, void *arg)
{
	(void)arg;
	return harness_link_state(h, 0) == AGG_LINK_STALLED;
}

START_TEST(test_link_stall_mid_transfer)
{
	struct harness *h = harness_new(3, NULL, KEY, KEY);
	struct agg_session_stats st;
	struct xfer x;
	size_t i;

	for (i = 0; i < 3; i++)
		shape(h, i, 16 * MIB, 1000);
	start_download(h, &x, 48);
	run_until_received(h, &x, 12 * MIB);
	agg_pair_set_stall(h->pairs[0], 1);
	finish_download(h, &x, 48);
	/* The sender had data in flight on it, so it must have noticed. */
	ck_assert_int_ge(h->server_link_stalled_count, 1);
	/* The receiver notices by its own pings, whenever they are due. */
	ck_assert(harness_run(h, link0_stalled, NULL, 30));
	ck_assert_int_eq(h->link_closed_count, 0);
	agg_session_get_stats(h->server, &st);
	ck_assert_uint_gt(st.resent_frames, 0);
	/* The path heals: the link delivers again and is used again. */
	agg_pair_set_stall(h->pairs[0], 0);
	ck_assert(harness_run(h, link0_up, NULL, 30));
	agg_stream_free(x.stream);
	harness_free(h);
}
END_TEST

START_TEST(test_link_added_mid_transfer)
{
	struct harness *h = harness_new(1, NULL, KEY, KEY);
	uint64_t before;
	struct xfer x;

	shape(h, 0, 8 * MIB, 1000);
	start_download(h, &x, 40);
	run_until_received(h, &x, 4 * MIB);
	harness_add_link(h);
	shape(h, 1, 8 * MIB, 1000);
	before = harness_link_payload(h, 1);
	finish_download(h, &x, 40);
	ck_assert_uint_eq(before, 0);
	ck_assert_uint_gt(harness_link_payload(h, 1), 4 * MIB);
	agg_stream_free(x.stream);
	harness_free(h);
}
END_TEST

START_TEST(test_all_links_gone_then_back)
{
	struct harness *h = harness_new(2, NULL, KEY, KEY);
	struct agg_session *server;
	struct xfer x;

	shape(h, 0, 8 * MIB, 1000);
	shape(h, 1, 8 * MIB, 1000);
	start_download(h, &x, 24);
	run_until_received(h, &x, 4 * MIB);
	server = h->server;
	agg_pair_cut(h->pairs[0]);
	agg_pair_cut(h->pairs[1]);
	harness_sleep(h, 0.3);
	ck_assert_uint_eq(agg_session_links_up(h->client), 0);
	ck_assert(!x.closed);
	harness_add_link(h);
	finish_download(h, &x, 24);
	ck_assert_ptr_eq(h->server, server);
	ck_assert(!h->client_closed);
	ck_assert(!h->server_closed);
	agg_stream_free(x.stream);
	harness_free(h);
}
END_TEST

/* Done when the stream failed. */
static bool stream_closed(struct harness *h, void *arg)
{
	struct xfer *x = arg;

	return x->closed && h->server_closed;
}

START_TEST(test_grace_period_expires)
{
	struct agg_config cfg;
	struct harness *h;
	struct xfer x;

	agg_config_init(&cfg);
	cfg.grace_ms = 300;
	h = harness_new(1, &cfg, KEY, KEY);
	shape(h, 0, 4 * MIB, 1000);
	start_download(h, &x, 24);
	run_until_received(h, &x, 1 * MIB);
	agg_pair_cut(h->pairs[0]);
	ck_assert(harness_run(h, stream_closed, &x, 30));
	ck_assert_str_eq(x.message, "no link for 1 s");
	ck_assert(h->client_closed);
	ck_assert_str_eq(h->client_close_reason, "no link for 1 s");
	ck_assert_str_eq(h->server_close_reason, "no link for 1 s");
	agg_stream_free(x.stream);
	harness_free(h);
}
END_TEST

#define MANY 1000

/* Done when every echo stream got all its bytes back and EOF. */
static bool all_echoed(struct harness *h, void *arg)
{
	struct xfer *xs = arg;
	size_t i;

	(void)h;
	for (i = 0; i < MANY; i++)
		if (!xs[i].got_eof && !xs[i].closed)
			return false;
	return true;
}

START_TEST(test_thousand_streams)
{
	struct harness *h = harness_new(4, NULL, KEY, KEY);
	struct xfer *xs = calloc(MANY, sizeof(*xs));
	size_t i;

	for (i = 0; i < MANY; i++) {
		xs[i].reading = true;
		xs[i].to_send = 1000 + i;
		ck_assert_ptr_nonnull(harness_open(h, "echo:7", &xs[i]));
	}
	ck_assert(harness_run(h, all_echoed, xs, 120));
	for (i = 0; i < MANY; i++) {
		ck_assert_int_eq(xs[i].result_code, AGG_OK);
		ck_assert(!xs[i].closed);
		ck_assert_uint_eq(xs[i].received, 1000 + i);
		ck_assert_uint_eq(xs[i].bad_offset, 0);
	}
	ck_assert_uint_eq(h->nserver_xfers, MANY);
	for (i = 0; i < MANY; i++)
		agg_stream_free(xs[i].stream);
	free(xs);
	harness_free(h);
}
END_TEST

START_TEST(test_slow_reader_does_not_block_others)
{
	struct harness *h = harness_new(2, NULL, KEY, KEY);
	struct xfer slow, fast;
	size_t held;

	start_download(h, &slow, 64);
	slow.reading = false;
	start_download(h, &fast, 48);
	finish_download(h, &fast, 48);
	held = evbuffer_get_length(agg_stream_input(slow.stream));
	ck_assert_uint_eq(slow.received, 0);
	ck_assert_uint_gt(held, 0);
	ck_assert_uint_le(held, h->cfg.stream_window);
	/* The slow reader wakes up and gets everything, intact. */
	slow.reading = true;
	xfer_pump(&slow);
	evbuffer_add(agg_stream_input(slow.stream), "", 0);
	{
		struct evbuffer *in = agg_stream_input(slow.stream);
		size_t len = evbuffer_get_length(in);
		uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)len);
		size_t i;

		for (i = 0; i < len; i++)
			ck_assert_uint_eq(p[i], pattern_byte(i));
		evbuffer_drain(in, len);
		slow.received = len;
	}
	finish_download(h, &slow, 64);
	agg_stream_free(slow.stream);
	agg_stream_free(fast.stream);
	harness_free(h);
}
END_TEST

/* Done when the client has seen a link close. */
static bool link_closed(struct harness *h, void *arg)
{
	(void)arg;
	return h->link_closed_count > 0;
}

START_TEST(test_wrong_secret_refused)
{
	struct harness *h = harness_new(1, NULL, "not the secret", KEY);

	ck_assert(harness_run(h, link_closed, NULL, 30));
	ck_assert_str_eq(h->last_link_reason,
	    "authentication refused by server (wrong secret?)");
	ck_assert_ptr_null(h->server);
	ck_assert_uint_eq(agg_hub_sessions(h->hub), 0);
	harness_free(h);
}
END_TEST

/* Link ids from here on ask the hub to create the session. */
#define RAW_CREATE 1000000u

/* A raw connection to the hub, driven byte by byte by the test. */
struct raw {
	int fd;
	uint8_t buf[1024];
	size_t len, want;
	bool eof;
};

/* Connects a raw socket to the hub. */
static void raw_connect(struct harness *h, struct raw *r)
{
	struct bufferevent *bev;
	int fds[2];

	memset(r, 0, sizeof(*r));
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
	fcntl(fds[0], F_SETFL, O_NONBLOCK);
	r->fd = fds[0];
	bev = bufferevent_socket_new(h->base, fds[1], BEV_OPT_CLOSE_ON_FREE);
	agg_hub_add_link(h->hub, bev, "raw");
}

/* Writes all bytes to the raw socket. */
static void raw_send(struct raw *r, const void *p, size_t n)
{
	ck_assert_int_eq(write(r->fd, p, n), (ssize_t)n);
}

/* Done when want bytes arrived or the hub closed the connection. */
static bool raw_readable(struct harness *h, void *arg)
{
	struct raw *r = arg;
	ssize_t n;

	(void)h;
	while (r->len < r->want) {
		/* Waiting for EOF: whatever else arrives is thrown away. */
		if (r->want == SIZE_MAX)
			r->len = 0;
		n = read(r->fd, r->buf + r->len, r->want == SIZE_MAX ?
		    sizeof(r->buf) : r->want - r->len);
		if (n == 0 || (n < 0 && errno != EAGAIN)) {
			r->eof = true;
			return true;
		}
		if (n < 0)
			return false;
		r->len += (size_t)n;
	}
	return true;
}

/* Reads exactly n bytes (false on EOF). */
static bool raw_recv(struct harness *h, struct raw *r, size_t n)
{
	r->len = 0;
	r->want = n;
	ck_assert(harness_run(h, raw_readable, r, 30));
	return r->len == n;
}

/* Waits for the hub to close the connection. */
static void raw_expect_eof(struct harness *h, struct raw *r)
{
	r->len = 0;
	r->want = SIZE_MAX;
	ck_assert(harness_run(h, raw_readable, r, 30));
	ck_assert(r->eof);
}

/* Runs a client handshake on r; returns the WELCOME status. */
static int raw_handshake(struct harness *h, struct raw *r, const char *key,
    const uint8_t *sid, uint32_t link_id, uint8_t hello[AGG_CLIENT_HELLO_LEN],
    uint8_t auth[AGG_MAC_LEN])
{
	struct agg_client_hello ch;
	struct agg_welcome w;
	uint8_t shello[AGG_SERVER_HELLO_LEN];

	memset(&ch, 0, sizeof(ch));
	ch.version_min = ch.version_max = AGG_PROTOCOL_VERSION;
	memcpy(ch.session_id, sid, AGG_SESSION_ID_LEN);
	ch.link_id = link_id;
	if (link_id >= RAW_CREATE)
		ch.flags = AGG_HELLO_CREATE;
	agg_random_bytes(ch.nonce, sizeof(ch.nonce));
	agg_client_hello_encode(&ch, hello);
	raw_send(r, hello, AGG_CLIENT_HELLO_LEN);
	ck_assert(raw_recv(h, r, AGG_SERVER_HELLO_LEN));
	memcpy(shello, r->buf, sizeof(shello));
	agg_auth_client_mac((const uint8_t *)key, strlen(key), hello, shello,
	    auth);
	raw_send(r, auth, AGG_MAC_LEN);
	ck_assert(raw_recv(h, r, AGG_WELCOME_LEN));
	ck_assert_int_eq(agg_welcome_decode(r->buf, AGG_WELCOME_LEN, &w),
	    AGG_WIRE_OK);
	return w.status;
}

/* The client session's id in binary. */
static void client_session_id(struct harness *h, uint8_t sid[16])
{
	const char *hex = agg_session_id_hex(h->client);
	unsigned v;
	size_t i;

	for (i = 0; i < 16; i++) {
		ck_assert_int_eq(sscanf(hex + 2 * i, "%2x", &v), 1);
		sid[i] = (uint8_t)v;
	}
}

/* Done when the client session is up on at least one link. */
static bool session_up(struct harness *h, void *arg)
{
	(void)arg;
	return h->server != NULL && agg_session_links_up(h->client) > 0;
}

START_TEST(test_replayed_handshake_refused)
{
	struct harness *h = harness_new(1, NULL, KEY, KEY);
	uint8_t sid[16], hello[48], auth[32], hello2[48], auth2[32];
	struct agg_session_stats st;
	struct raw r;

	ck_assert(harness_run(h, session_up, NULL, 30));
	client_session_id(h, sid);
	raw_connect(h, &r);
	ck_assert_int_eq(raw_handshake(h, &r, KEY, sid, 77, hello, auth),
	    AGG_WELCOME_OK);
	/* Replay the recorded CLIENT_HELLO and AUTH on a new connection. */
	raw_connect(h, &r);
	raw_send(&r, hello, sizeof(hello));
	ck_assert(raw_recv(h, &r, AGG_SERVER_HELLO_LEN));
	raw_send(&r, auth, sizeof(auth));
	ck_assert(raw_recv(h, &r, AGG_WELCOME_LEN));
	ck_assert_int_eq(r.buf[0], AGG_WELCOME_AUTH_FAILED);
	raw_expect_eof(h, &r);
	/* A known session id without the key does not join either. */
	raw_connect(h, &r);
	ck_assert_int_eq(raw_handshake(h, &r, "guess", sid, 78, hello2, auth2),
	    AGG_WELCOME_AUTH_FAILED);
	raw_expect_eof(h, &r);
	agg_session_get_stats(h->server, &st);
	ck_assert_uint_eq(st.links, 2);
	harness_free(h);
}
END_TEST

START_TEST(test_session_limit)
{
	struct harness *h = harness_new(1, NULL, KEY, KEY);
	uint8_t sid[16], hello[48], auth[32];
	struct raw r[64];
	size_t i;

	ck_assert(harness_run(h, session_up, NULL, 30));
	/* The harness's hub takes 64 sessions; the client has one. */
	for (i = 0; i < 64; i++) {
		memset(sid, 0, sizeof(sid));
		sid[0] = (uint8_t)(i + 1);
		raw_connect(h, &r[i]);
		ck_assert_int_eq(raw_handshake(h, &r[i], KEY, sid,
		    RAW_CREATE, hello, auth), i < 63 ? AGG_WELCOME_OK :
		    AGG_WELCOME_LIMIT);
	}
	raw_expect_eof(h, &r[63]);
	ck_assert_uint_eq(agg_hub_sessions(h->hub), 64);
	for (i = 0; i < 64; i++)
		close(r[i].fd);
	harness_free(h);
}
END_TEST

/* A bad frame from a joined link and the reason the server gives. */
struct bad_frame {
	const char *what;
	uint8_t bytes[40];
	size_t len;
	const char *reason;
};

START_TEST(test_bad_input_closes_only_that_link)
{
	static const struct bad_frame bad[] = {
		{ "unknown type", { 0x7f, 0, 0, 0 }, 4,
		    "protocol error: bad frame header (unknown frame type)" },
		{ "oversize PING", { 0x07, 0, 0, 9 }, 4,
		    "protocol error: bad frame header (bad frame length)" },
		{ "PING with flags", { 0x07, 1, 0, 8 }, 4,
		    "protocol error: bad frame header (bad frame flags)" },
		{ "ack of unsent data", { 0x06, 0, 0, 9, 0, 0, 1, 0, 0, 0, 0,
		    0, 0 }, 13, "protocol error: ack of unsent data" },
		{ "seq out of window", { 0x04, 0, 0, 20, 0, 0, 0, 0, 0, 0x10,
		    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 }, 24,
		    "protocol error: sequence number out of window" },
		{ "data beyond credit", { 0x01, 0, 0, 21, 0, 0, 0, 0, 0, 0,
		    0xea, 0x60, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0x55 }, 25,
		    "protocol error: data beyond stream credit" },
	};
	struct harness *h = harness_new(1, NULL, KEY, KEY);
	uint8_t sid[16], hello[48], auth[32];
	struct raw r;
	struct xfer x;
	size_t i;

	shape(h, 0, 8 * MIB, 1000);
	start_download(h, &x, 16);
	run_until_received(h, &x, 1 * MIB);
	client_session_id(h, sid);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		raw_connect(h, &r);
		ck_assert_int_eq(raw_handshake(h, &r, KEY, sid,
		    (uint32_t)(100 + i), hello, auth), AGG_WELCOME_OK);
		raw_send(&r, bad[i].bytes, bad[i].len);
		raw_expect_eof(h, &r);
		close(r.fd);
		ck_assert_msg(strcmp(h->server_link_reason, bad[i].reason) == 0,
		    "%s: got \"%s\"", bad[i].what, h->server_link_reason);
	}
	finish_download(h, &x, 16);
	ck_assert(!h->server_closed);
	ck_assert_int_eq(harness_link_state(h, 0), AGG_LINK_UP);
	agg_stream_free(x.stream);
	harness_free(h);
}
END_TEST

/* Writes count OPEN frames for "refuse:1" on r (stream ids 1, 3, ...,
 * sequence numbers from 0), running the loop whenever the socket is full;
 * stops early if the hub hangs up. Never reads or acks. */
static void raw_flood_opens(struct harness *h, struct raw *r, uint32_t count)
{
	uint8_t buf[64 * 1024];
	struct agg_frame f;
	size_t len = 0, off = 0, n;
	uint32_t i = 0;
	unsigned waits = 0;
	ssize_t w;

	memset(&f, 0, sizeof(f));
	f.type = AGG_FRAME_OPEN;
	f.code = AGG_OPEN_TCP;
	f.window = 1u << 20;
	ck_assert_int_eq(agg_target_parse("refuse:1", &f.target), 0);
	while ((i < count || off < len) && waits < 3000) {
		while (i < count && len + 512 <= sizeof(buf)) {
			f.seq = i;
			f.stream = 2 * i + 1;
			n = agg_frame_encode(&f, buf + len, sizeof(buf) - len);
			ck_assert_uint_gt(n, 0);
			len += n;
			i++;
		}
		w = write(r->fd, buf + off, len - off);
		if (w < 0 && errno != EAGAIN)
			return;
		if (w > 0)
			off += (size_t)w;
		if (off == len) {
			off = len = 0;
			continue;
		}
		harness_sleep(h, 0.005);
		waits++;
	}
	ck_assert_uint_eq(i, count);
}

START_TEST(test_open_flood_cut)
{
	struct agg_config cfg;
	struct harness *h;
	uint8_t sid[16], hello[48], auth[32];
	struct raw r;
	struct xfer x;

	agg_config_init(&cfg);
	cfg.max_streams = 16;
	h = harness_new(1, &cfg, KEY, KEY);
	start_download(h, &x, 16);
	run_until_received(h, &x, 1 * MIB);
	/* A peer that opens stream after stream, all refused, and never reads
	 * the RESULTs nor acks them. */
	memset(sid, 0, sizeof(sid));
	sid[0] = 0x5a;
	raw_connect(h, &r);
	ck_assert_int_eq(raw_handshake(h, &r, KEY, sid, RAW_CREATE, hello,
	    auth), AGG_WELCOME_OK);
	h->server_closed = false;
	raw_flood_opens(h, &r, 200000);
	raw_expect_eof(h, &r);
	close(r.fd);
	ck_assert(h->server_closed);
	ck_assert_str_eq(h->server_close_reason, "control queue full (1152 "
	    "frames): the peer does not read or ack");
	/* The other session never noticed. */
	finish_download(h, &x, 16);
	ck_assert(!h->client_closed);
	ck_assert_int_eq(harness_link_state(h, 0), AGG_LINK_UP);
	agg_stream_free(x.stream);
	harness_free(h);
}
END_TEST

/* Counts log lines equal to the text in arg. */
struct log_count {
	const char *text;
	int n;
};

/* Log handler: counts the lines equal to the wanted text. */
static void count_log_cb(enum agg_log_level level, const char *line,
    void *arg)
{
	struct log_count *lc = arg;

	(void)level;
	if (strcmp(line, lc->text) == 0)
		lc->n++;
}

/* Done when the raw connection has data or EOF waiting, without reading. */
static bool raw_closed_now(int fd)
{
	char c;
	ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);

	return n == 0 || (n < 0 && errno != EAGAIN);
}

/* Done when the log counted at least the wanted lines. */
static bool log_count_reached(struct harness *h, void *arg)
{
	struct log_count *lc = arg;

	(void)h;
	return lc->n >= 10;
}

/* Done when the client's link 1 is up. */
static bool second_link_up(struct harness *h, void *arg)
{
	(void)arg;
	return harness_link_state(h, 1) == AGG_LINK_UP;
}

START_TEST(test_handshaking_cap)
{
	static struct raw r[AGG_HUB_MAX_HANDSHAKING + 10];
	struct log_count lc = { "too many links handshaking (limit 1024): "
	    "closing the oldest, link raw", 0 };
	struct harness *h = harness_new(1, NULL, KEY, KEY);
	struct xfer x;
	size_t i, n = sizeof(r) / sizeof(r[0]);

	ck_assert(harness_run(h, session_up, NULL, 30));
	agg_log_set_handler(count_log_cb, &lc);
	/* Connections that never say a word, 10 more than the cap. */
	for (i = 0; i < n; i++)
		raw_connect(h, &r[i]);
	ck_assert(harness_run(h, log_count_reached, &lc, 30));
	harness_sleep(h, 0.05);
	agg_log_set_handler(NULL, NULL);
	ck_assert_int_eq(lc.n, 10);
	/* The oldest ten are closed, the others wait. */
	for (i = 0; i < n; i++)
		ck_assert_msg(raw_closed_now(r[i].fd) == (i < 10),
		    "connection %zu", i);
	/* A real client's new link still joins and carries data. */
	harness_add_link(h);
	ck_assert(harness_run(h, second_link_up, NULL, 30));
	start_download(h, &x, 4);
	finish_download(h, &x, 4);
	ck_assert_int_eq(harness_link_state(h, 1), AGG_LINK_UP);
	agg_stream_free(x.stream);
	for (i = 0; i < n; i++)
		close(r[i].fd);
	harness_free(h);
}
END_TEST

START_TEST(test_strangers_refused)
{
	struct harness *h = harness_new(1, NULL, KEY, KEY);
	struct agg_client_hello ch;
	struct agg_server_hello sh;
	uint8_t hello[48], noise[4096];
	struct raw r;
	size_t i;

	ck_assert(harness_run(h, session_up, NULL, 30));
	/* HTTP to a link port. */
	raw_connect(h, &r);
	raw_send(&r, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27);
	raw_expect_eof(h, &r);
	close(r.fd);
	/* Random bytes. */
	for (i = 0; i < sizeof(noise); i++)
		noise[i] = pattern_byte(i * 7);
	raw_connect(h, &r);
	raw_send(&r, noise, sizeof(noise));
	raw_expect_eof(h, &r);
	close(r.fd);
	/* A client that speaks only protocol versions 2-3. */
	memset(&ch, 0, sizeof(ch));
	ch.version_min = 2;
	ch.version_max = 3;
	agg_client_hello_encode(&ch, hello);
	raw_connect(h, &r);
	raw_send(&r, hello, sizeof(hello));
	ck_assert(raw_recv(h, &r, AGG_SERVER_HELLO_LEN));
	ck_assert_int_eq(agg_server_hello_decode(r.buf, r.len, &sh),
	    AGG_WIRE_OK);
	ck_assert_int_eq(sh.status, AGG_HELLO_VERSION_UNSUPPORTED);
	ck_assert_int_eq(sh.version, 0);
	raw_expect_eof(h, &r);
	close(r.fd);
	ck_assert_uint_eq(agg_hub_sessions(h->hub), 1);
	ck_assert_int_eq(harness_link_state(h, 0), AGG_LINK_UP);
	harness_free(h);
}
END_TEST

START_TEST(test_client_refuses_non_agg_server)
{
	struct harness *h = harness_new(0, NULL, KEY, KEY);
	struct bufferevent *bev;
	int fds[2];

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
	bev = bufferevent_socket_new(h->base, fds[1], BEV_OPT_CLOSE_ON_FREE);
	ck_assert_ptr_nonnull(agg_session_add_link(h->client, bev, "fake"));
	ck_assert_int_eq(write(fds[0], "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"
	    "0123456789", 42), 42);
	ck_assert(harness_run(h, link_closed, NULL, 30));
	ck_assert_str_eq(h->last_link_reason, "not an agg server (bad magic)");
	close(fds[0]);
	harness_free(h);
}
END_TEST

START_TEST(test_refused_stream_reports_code)
{
	struct harness *h = harness_new(1, NULL, KEY, KEY);
	struct xfer x;

	memset(&x, 0, sizeof(x));
	ck_assert_ptr_nonnull(harness_open(h, "refuse:5", &x));
	ck_assert(harness_run(h, download_done, &x, 30));
	ck_assert_int_eq(x.result_code, AGG_ERR_REFUSED);
	ck_assert_str_eq(x.message, "refused by test");
	agg_stream_free(x.stream);
	harness_sleep(h, 0.05);
	ck_assert_uint_eq(h->client->nstreams, 0);
	ck_assert_uint_eq(h->server->nstreams, 0);
	harness_free(h);
}
END_TEST

/* Done when the client got its echo back and EOF, and the splice ended. */
static bool pipe_done(struct harness *h, void *arg)
{
	struct xfer *x = arg;

	return (x->got_eof && h->splice_done) || x->closed;
}

START_TEST(test_splice_echo_with_half_close)
{
	struct harness *h = harness_new(2, NULL, KEY, KEY);
	struct xfer x;

	memset(&x, 0, sizeof(x));
	x.reading = true;
	x.to_send = 16 * MIB + 12345;
	ck_assert_ptr_nonnull(harness_open(h, "pipe:1", &x));
	ck_assert(harness_run(h, pipe_done, &x, 120));
	ck_assert(!x.closed);
	ck_assert_uint_eq(x.received, 16 * MIB + 12345);
	ck_assert_uint_eq(x.bad_offset, 0);
	ck_assert_int_eq(h->splice_error, 0);
	ck_assert_str_eq(h->splice_reason, "closed");
	agg_stream_free(x.stream);
	harness_sleep(h, 0.05);
	ck_assert_uint_eq(h->server->nstreams, 0);
	ck_assert_uint_eq(h->client->nstreams, 0);
	harness_free(h);
}
END_TEST

/* Done when the server side of stream i saw it closed. */
static bool server_xfer_closed(struct harness *h, void *arg)
{
	size_t i = *(size_t *)arg;

	return h->nserver_xfers > i && h->server_xfers[i].closed;
}

START_TEST(test_resets_do_not_leak_credit)
{
	struct harness *h = harness_new(2, NULL, KEY, KEY);
	struct agg_session_stats cs, ss;
	struct xfer x;
	size_t i;

	/* Each reset stream had up to a window of data in flight; together
	 * they are far more than the session window. */
	for (i = 0; i < 24; i++) {
		start_download(h, &x, 64);
		run_until_received(h, &x, 1 * MIB);
		agg_stream_reset(x.stream, AGG_ERR_GENERAL, "test reset");
		ck_assert(harness_run(h, server_xfer_closed, &i, 30));
		ck_assert_str_eq(h->server_xfers[i].message,
		    "reset by peer: test reset");
		agg_stream_free(h->server_xfers[i].stream);
	}
	start_download(h, &x, 64);
	finish_download(h, &x, 64);
	agg_stream_free(x.stream);
	harness_sleep(h, 0.1);
	agg_session_get_stats(h->client, &cs);
	agg_session_get_stats(h->server, &ss);
	ck_assert_uint_eq(cs.buffered_bytes, 0);
	ck_assert_uint_eq(ss.buffered_bytes, 0);
	ck_assert_uint_eq(h->client->nstreams, 0);
	harness_free(h);
}
END_TEST

/* Builds the suite. */
static Suite *session_suite(void)
{
	Suite *s = suite_create("session");
	TCase *tc = tcase_create("transfer");

	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_download_1_link);
	tcase_add_test(tc, test_download_2_links);
	tcase_add_test(tc, test_download_4_links);
	tcase_add_test(tc, test_download_8_links);
	tcase_add_test(tc, test_upload_4_links);
	tcase_add_test(tc, test_different_rates_and_delays);
	suite_add_tcase(s, tc);
	tc = tcase_create("failures");
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_link_cut_mid_transfer);
	tcase_add_test(tc, test_link_stall_mid_transfer);
	tcase_add_test(tc, test_server_closes_a_link);
	tcase_add_test(tc, test_link_added_mid_transfer);
	tcase_add_test(tc, test_all_links_gone_then_back);
	tcase_add_test(tc, test_grace_period_expires);
	suite_add_tcase(s, tc);
	tc = tcase_create("streams");
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_thousand_streams);
	tcase_add_test(tc, test_slow_reader_does_not_block_others);
	tcase_add_test(tc, test_refused_stream_reports_code);
	tcase_add_test(tc, test_splice_echo_with_half_close);
	tcase_add_test(tc, test_resets_do_not_leak_credit);
	suite_add_tcase(s, tc);
	tc = tcase_create("auth");
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_wrong_secret_refused);
	tcase_add_test(tc, test_replayed_handshake_refused);
	tcase_add_test(tc, test_session_limit);
	tcase_add_test(tc, test_bad_input_closes_only_that_link);
	tcase_add_test(tc, test_strangers_refused);
	tcase_add_test(tc, test_client_refuses_non_agg_server);
	suite_add_tcase(s, tc);
	tc = tcase_create("limits");
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_open_flood_cut);
	tcase_add_test(tc, test_handshaking_cap);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(session_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
