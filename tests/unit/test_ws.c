/*
 * test_ws.c: RFC 6455 framing (the examples of section 5.7 and the
 * handshake key of section 1.3), malformed frames, and a WebSocket link
 * over a socketpair: upgrade, bytes both ways, ping answered, close.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "ws.h"
#include "wsframe.h"

/* A reader as the server uses it (masked frames) or the client. */
static struct ws_reader reader(int server)
{
	struct ws_reader r = { server, 1u << 20, 0 };

	return r;
}

START_TEST(test_accept_key)
{
	char out[29];

	ck_assert_int_eq(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out), 0);
	ck_assert_str_eq(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
	ck_assert(ws_key_valid("dGhlIHNhbXBsZSBub25jZQ=="));
	ck_assert(!ws_key_valid("dGhlIHNhbXBsZSBub25jZQ="));
	ck_assert(!ws_key_valid("dGhlIHNhbXBsZSBub25j!Q=="));
}
END_TEST

START_TEST(test_rfc_hello)
{
	static const uint8_t unmasked[] = { 0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c,
	    0x6f };
	static const uint8_t masked[] = { 0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
	    0x7f, 0x9f, 0x4d, 0x51, 0x58 };
	struct ws_reader rc = reader(0), rs = reader(1);
	uint8_t buf[16], mask[4] = { 0x37, 0xfa, 0x21, 0x3d };
	struct ws_frame f;
	const char *why = NULL;
	size_t i;

	ck_assert_int_eq(ws_frame_parse(&rc, unmasked, sizeof(unmasked), &f,
	    &why), 2);
	ck_assert(f.fin);
	ck_assert_uint_eq(f.opcode, WS_OP_TEXT);
	ck_assert_uint_eq(f.len, 5);
	ck_assert(memcmp(unmasked + 2, "Hello", 5) == 0);
	ck_assert_int_eq(ws_frame_parse(&rs, masked, sizeof(masked), &f, &why),
	    6);
	ck_assert(f.masked);
	memcpy(buf, masked + 6, 5);
	ws_mask(buf, 5, f.mask, 0);
	ck_assert(memcmp(buf, "Hello", 5) == 0);
	/* Unmasking in pieces, at any offset, gives the same. */
	memcpy(buf, masked + 6, 5);
	ws_mask(buf, 2, f.mask, 0);
	ws_mask(buf + 2, 3, f.mask, 2);
	ck_assert(memcmp(buf, "Hello", 5) == 0);
	/* Encoding gives the example's bytes back. */
	ck_assert_uint_eq(ws_frame_encode(buf, WS_OP_TEXT, 1, 5, NULL), 2);
	ck_assert(memcmp(buf, unmasked, 2) == 0);
	ck_assert_uint_eq(ws_frame_encode(buf, WS_OP_TEXT, 1, 5, mask), 6);
	memcpy(buf + 6, "Hello", 5);
	ws_mask(buf + 6, 5, mask, 0);
	ck_assert(memcmp(buf, masked, sizeof(masked)) == 0);
	/* Partial headers ask for more. */
	for (i = 0; i < 6; i++)
		ck_assert_int_eq(ws_frame_parse(&rs, masked, i, &f, &why), 0);
}
END_TEST

START_TEST(test_rfc_fragments_and_lengths)
{
	static const uint8_t hel[] = { 0x01, 0x03, 0x48, 0x65, 0x6c };
	static const uint8_t lo[] = { 0x80, 0x02, 0x6c, 0x6f };
	static const uint8_t ping[] = { 0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c,
	    0x6f };
	static const uint8_t len256[] = { 0x82, 0x7e, 0x01, 0x00 };
	static const uint8_t len64k[] = { 0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0 };
	struct ws_reader r = reader(0);
	struct ws_frame f;
	const char *why = NULL;
	uint8_t buf[16];

	ck_assert_int_eq(ws_frame_parse(&r, hel, sizeof(hel), &f, &why), 2);
	ck_assert(!f.fin);
	ck_assert_uint_eq(f.len, 3);
	/* A ping may come between the fragments. */
	ck_assert_int_eq(ws_frame_parse(&r, ping, sizeof(ping), &f, &why), 2);
	ck_assert_uint_eq(f.opcode, WS_OP_PING);
	ck_assert_int_eq(ws_frame_parse(&r, lo, sizeof(lo), &f, &why), 2);
	ck_assert(f.fin);
	ck_assert_uint_eq(f.opcode, WS_OP_CONT);
	ck_assert(!r.in_message);
	ck_assert_int_eq(ws_frame_parse(&r, len256, sizeof(len256), &f, &why),
	    4);
	ck_assert_uint_eq(f.len, 256);
	ck_assert_int_eq(ws_frame_parse(&r, len64k, sizeof(len64k), &f, &why),
	    10);
	ck_assert_uint_eq(f.len, 65536);
	ck_assert_uint_eq(ws_frame_encode(buf, WS_OP_BINARY, 1, 256, NULL), 4);
	ck_assert(memcmp(buf, len256, 4) == 0);
	ck_assert_uint_eq(ws_frame_encode(buf, WS_OP_BINARY, 1, 65536, NULL),
	    10);
	ck_assert(memcmp(buf, len64k, 10) == 0);
}
END_TEST

/* Parses one malformed header and returns the reason. */
static const char *reject(int server, const uint8_t *b, size_t n)
{
	struct ws_reader r = reader(server);
	struct ws_frame f;
	const char *why = "";

	ck_assert_int_eq(ws_frame_parse(&r, b, n, &f, &why), -1);
	return why;
}

START_TEST(test_malformed)
{
	static const uint8_t unmasked[] = { 0x82, 0x01, 0x00 };
	static const uint8_t masked[] = { 0x82, 0x81, 1, 2, 3, 4, 0 };
	static const uint8_t rsv[] = { 0xc2, 0x00 };
	static const uint8_t op3[] = { 0x83, 0x00 };
	static const uint8_t opb[] = { 0x8b, 0x00 };
	static const uint8_t bigping[] = { 0x89, 0x7e, 0x00, 0x80 };
	static const uint8_t fragping[] = { 0x09, 0x00 };
	static const uint8_t cont[] = { 0x80, 0x00 };
	static const uint8_t shortlen[] = { 0x82, 0x7e, 0x00, 0x05 };
	static const uint8_t toplen[] = { 0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0,
	    0 };
	static const uint8_t huge[] = { 0x82, 0x7f, 0, 0, 0, 0, 0x10, 0, 0, 0 };
	static const uint8_t first[] = { 0x02, 0x00 };
	static const uint8_t second[] = { 0x82, 0x00 };
	struct ws_reader r = reader(0);
	struct ws_frame f;
	const char *why = "";

	ck_assert_str_eq(reject(1, unmasked, sizeof(unmasked)),
	    "unmasked frame from the client");
	ck_assert_str_eq(reject(0, masked, sizeof(masked)),
	    "masked frame from the server");
	ck_assert_str_eq(reject(0, rsv, sizeof(rsv)), "reserved bits set");
	ck_assert_str_eq(reject(0, op3, sizeof(op3)), "reserved opcode");
	ck_assert_str_eq(reject(0, opb, sizeof(opb)), "reserved opcode");
	ck_assert_str_eq(reject(0, bigping, sizeof(bigping)),
	    "control frame longer than 125 bytes");
	ck_assert_str_eq(reject(0, fragping, sizeof(fragping)),
	    "fragmented control frame");
	ck_assert_str_eq(reject(0, cont, sizeof(cont)),
	    "continuation frame outside a message");
	ck_assert_str_eq(reject(0, shortlen, sizeof(shortlen)),
	    "length not in its shortest form");
	ck_assert_str_eq(reject(0, toplen, sizeof(toplen)),
	    "length with its top bit set");
	ck_assert_str_eq(reject(0, huge, sizeof(huge)),
	    "frame larger than allowed");
	ck_assert_int_eq(ws_frame_parse(&r, first, sizeof(first), &f, &why),
	    2);
	ck_assert_int_eq(ws_frame_parse(&r, second, sizeof(second), &f, &why),
	    -1);
	ck_assert_str_eq(why, "new message inside a fragmented one");
}
END_TEST

/* What one side of the link test saw. */
struct side {
	struct bufferevent *bev;
	struct evbuffer *got;
	int eof;
	char error[200];
};

static struct event_base *test_base;
static int test_done;

/* Bytes for one side. */
static void side_read_cb(struct bufferevent *bev, void *arg)
{
	struct side *s = arg;

	evbuffer_add_buffer(s->got, bufferevent_get_input(bev));
}

/* The end of one side. */
static void side_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct side *s = arg;

	(void)bev;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		s->eof = 1;
		event_base_loopbreak(test_base);
	}
}

/* An upgrade finished. */
static void side_done_cb(struct bufferevent *bev, const char *error,
    void *arg)
{
	struct side *s = arg;

	s->bev = bev;
	if (error != NULL)
		snprintf(s->error, sizeof(s->error), "%s", error);
	if (bev != NULL) {
		bufferevent_setcb(bev, side_read_cb, NULL, side_event_cb, s);
		bufferevent_enable(bev, EV_READ | EV_WRITE);
	}
	test_done++;
	event_base_loopbreak(test_base);
}

/* Runs the loop until cond holds, for a bounded number of turns. */
#define RUN_UNTIL(cond) do { \
	int turns_; \
	for (turns_ = 0; turns_ < 2000 && !(cond); turns_++) \
		event_base_loop(test_base, EVLOOP_ONCE | EVLOOP_NONBLOCK); \
	ck_assert(cond); \
} while (0)

/* A socketpair as two socket bufferevents. */
static void make_pair(struct bufferevent **a, struct bufferevent **b)
{
	int fds[2];

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
	evutil_make_socket_nonblocking(fds[0]);
	evutil_make_socket_nonblocking(fds[1]);
	*a = bufferevent_socket_new(test_base, fds[0], BEV_OPT_CLOSE_ON_FREE);
	*b = bufferevent_socket_new(test_base, fds[1], BEV_OPT_CLOSE_ON_FREE);
}

START_TEST(test_link_over_socketpair)
{
	struct bufferevent *a, *b;
	struct side cli = { 0 }, srv = { 0 };
	static uint8_t data[300000];
	size_t i;

	test_base = event_base_new();
	test_done = 0;
	cli.got = evbuffer_new();
	srv.got = evbuffer_new();
	for (i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7 + i / 251);
	make_pair(&a, &b);
	ck_assert_ptr_nonnull(agg_ws_client_start(test_base, a, "agg.test:80",
	    "/link", 5000, side_done_cb, &cli));
	ck_assert_ptr_nonnull(agg_ws_server_start(test_base, b, "/link", 5000,
	    side_done_cb, &srv));
	RUN_UNTIL(test_done == 2);
	ck_assert_str_eq(cli.error, "");
	ck_assert_str_eq(srv.error, "");
	ck_assert_ptr_nonnull(cli.bev);
	ck_assert_ptr_nonnull(srv.bev);
	bufferevent_write(cli.bev, data, sizeof(data));
	bufferevent_write(srv.bev, data, 1000);
	RUN_UNTIL(evbuffer_get_length(srv.got) == sizeof(data) &&
	    evbuffer_get_length(cli.got) == 1000);
	ck_assert(memcmp(evbuffer_pullup(srv.got, -1), data,
	    sizeof(data)) == 0);
	ck_assert(memcmp(evbuffer_pullup(cli.got, -1), data, 1000) == 0);
	/* The client's end goes: the server sees the end as EOF. */
	bufferevent_free(cli.bev);
	RUN_UNTIL(srv.eof);
	bufferevent_free(srv.bev);
	evbuffer_free(cli.got);
	evbuffer_free(srv.got);
	event_base_free(test_base);
}
END_TEST

/* The framing under a lower buffer all but full (room for less than a
 * frame header) must wait for the drain, not spin inside libevent. */
START_TEST(test_lower_buffer_nearly_full)
{
	struct bufferevent *a, *b;
	struct side cli = { 0 }, srv = { 0 };
	static uint8_t filler[512 * 1024 - 10];

	test_base = event_base_new();
	test_done = 0;
	cli.got = evbuffer_new();
	srv.got = evbuffer_new();
	make_pair(&a, &b);
	ck_assert_ptr_nonnull(agg_ws_client_start(test_base, a, "agg.test:80",
	    "/link", 5000, side_done_cb, &cli));
	ck_assert_ptr_nonnull(agg_ws_server_start(test_base, b, "/link", 5000,
	    side_done_cb, &srv));
	RUN_UNTIL(test_done == 2);
	ck_assert_ptr_nonnull(cli.bev);
	ck_assert_ptr_eq(bufferevent_get_underlying(cli.bev), a);
	/* The socket takes nothing more; its buffer is 10 bytes short of the
	 * framing's high-water mark (512 KiB). */
	bufferevent_disable(a, EV_WRITE);
	evbuffer_add(bufferevent_get_output(a), filler, sizeof(filler));
	/* Returns (it used to loop for ever) and keeps the byte queued. */
	bufferevent_write(cli.bev, "x", 1);
	ck_assert_uint_eq(evbuffer_get_length(bufferevent_get_output(cli.bev)),
	    1);
	ck_assert_uint_eq(evbuffer_get_length(bufferevent_get_output(a)),
	    sizeof(filler));
	bufferevent_free(cli.bev);
	bufferevent_free(srv.bev);
	evbuffer_free(cli.got);
	evbuffer_free(srv.got);
	event_base_free(test_base);
}
END_TEST

START_TEST(test_wrong_path_404)
{
	struct bufferevent *a, *b;
	struct side cli = { 0 }, srv = { 0 };

	test_base = event_base_new();
	test_done = 0;
	make_pair(&a, &b);
	ck_assert_ptr_nonnull(agg_ws_client_start(test_base, a, "agg.test",
	    "/other", 5000, side_done_cb, &cli));
	ck_assert_ptr_nonnull(agg_ws_server_start(test_base, b, "/link", 5000,
	    side_done_cb, &srv));
	RUN_UNTIL(test_done == 2);
	ck_assert_ptr_null(cli.bev);
	ck_assert_ptr_null(srv.bev);
	ck_assert_str_eq(cli.error, "WebSocket upgrade refused: HTTP/1.1 404 "
	    "Not Found");
	ck_assert_str_eq(srv.error, "HTTP GET /other: 404 Not Found");
	event_base_free(test_base);
}
END_TEST

START_TEST(test_unmasked_client_frame_rejected)
{
	static const char req[] = "GET /link HTTP/1.1\r\nHost: x\r\n"
	    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	    "Sec-WebSocket-Version: 13\r\n\r\n";
	static const uint8_t bad[] = { 0x82, 0x03, 'a', 'b', 'c' };
	struct bufferevent *a, *b;
	struct side srv = { 0 };
	struct evbuffer *in;
	char *resp;

	test_base = event_base_new();
	test_done = 0;
	srv.got = evbuffer_new();
	make_pair(&a, &b);
	ck_assert_ptr_nonnull(agg_ws_server_start(test_base, b, "/link", 5000,
	    side_done_cb, &srv));
	bufferevent_write(a, req, sizeof(req) - 1);
	bufferevent_enable(a, EV_READ);
	RUN_UNTIL(test_done == 1);
	ck_assert_ptr_nonnull(srv.bev);
	in = bufferevent_get_input(a);
	RUN_UNTIL(evbuffer_search(in, "\r\n\r\n", 4, NULL).pos >= 0);
	resp = (char *)evbuffer_pullup(in, -1);
	ck_assert(strncmp(resp, "HTTP/1.1 101 Switching Protocols\r\n", 34) ==
	    0);
	ck_assert(strstr(resp, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK"
	    "+xOo=\r\n") != NULL);
	evbuffer_drain(in, evbuffer_get_length(in));
	bufferevent_write(a, bad, sizeof(bad));
	RUN_UNTIL(srv.eof);
	ck_assert_uint_eq(evbuffer_get_length(srv.got), 0);
	/* The server answered with close code 1002 (protocol error). */
	RUN_UNTIL(evbuffer_get_length(in) >= 4);
	ck_assert(memcmp(evbuffer_pullup(in, 4), "\x88\x02\x03\xea", 4) == 0);
	bufferevent_free(srv.bev);
	bufferevent_free(a);
	evbuffer_free(srv.got);
	event_base_free(test_base);
}
END_TEST

START_TEST(test_fragments_and_ping_over_link)
{
	static const char req[] = "GET /link HTTP/1.1\r\nHost: x\r\n"
	    "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
	    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	    "Sec-WebSocket-Version: 13\r\n\r\n";
	/* "Hel" (binary, not final), a ping "hi", "lo" (final), all masked
	 * with 37 fa 21 3d; then a close with code 1000. */
	static const uint8_t frames[] = {
	    0x02, 0x83, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d,
	    0x89, 0x82, 0x37, 0xfa, 0x21, 0x3d, 0x5f, 0x93,
	    0x80, 0x82, 0x37, 0xfa, 0x21, 0x3d, 0x5b, 0x95,
	    0x88, 0x82, 0x37, 0xfa, 0x21, 0x3d, 0x34, 0x12 };
	struct bufferevent *a, *b;
	struct side srv = { 0 };
	struct evbuffer *in;
	size_t hl;

	test_base = event_base_new();
	test_done = 0;
	srv.got = evbuffer_new();
	make_pair(&a, &b);
	ck_assert_ptr_nonnull(agg_ws_server_start(test_base, b, "/link", 5000,
	    side_done_cb, &srv));
	bufferevent_write(a, req, sizeof(req) - 1);
	bufferevent_enable(a, EV_READ);
	RUN_UNTIL(test_done == 1);
	ck_assert_ptr_nonnull(srv.bev);
	in = bufferevent_get_input(a);
	RUN_UNTIL(evbuffer_search(in, "\r\n\r\n", 4, NULL).pos >= 0);
	hl = (size_t)evbuffer_search(in, "\r\n\r\n", 4, NULL).pos + 4;
	evbuffer_drain(in, hl);
	/* Byte by byte: every partial header and payload is waited for. */
	for (hl = 0; hl < sizeof(frames); hl++) {
		bufferevent_write(a, frames + hl, 1);
		event_base_loop(test_base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	}
	RUN_UNTIL(srv.eof);
	ck_assert_uint_eq(evbuffer_get_length(srv.got), 5);
	ck_assert(memcmp(evbuffer_pullup(srv.got, -1), "Hello", 5) == 0);
	/* The pong (unmasked, "hi"), then the close echoed (1000). */
	RUN_UNTIL(evbuffer_get_length(in) >= 8);
	ck_assert(memcmp(evbuffer_pullup(in, 8), "\x8a\x02hi\x88\x02\x03\xe8",
	    8) == 0);
	bufferevent_free(srv.bev);
	bufferevent_free(a);
	evbuffer_free(srv.got);
	event_base_free(test_base);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("ws");
	TCase *tc = tcase_create("ws");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_accept_key);
	tcase_add_test(tc, test_rfc_hello);
	tcase_add_test(tc, test_rfc_fragments_and_lengths);
	tcase_add_test(tc, test_malformed);
	tcase_add_test(tc, test_link_over_socketpair);
	tcase_add_test(tc, test_lower_buffer_nearly_full);
	tcase_add_test(tc, test_wrong_path_404);
	tcase_add_test(tc, test_unmasked_client_frame_rejected);
	tcase_add_test(tc, test_fragments_and_ping_over_link);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
