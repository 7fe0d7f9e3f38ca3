/*
 * test_usblink.c: the USB link framing (transports/usblink.c) against a
 * mock transfer layer: the two sides' transfers are handed over one by one
 * as whole transfers, the way bulk reads complete. Short transfers, zero-
 * length packets, transfer lengths, stale transfers after a re-plug, close
 * both ways and read flow control. Bytes and states only, no timings.
 */
#include <check.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "usblink.h"

#define MAX_ROUNDS 20000

/* One side of the mock: a usblink and what its callbacks reported. */
struct mock {
	struct agg_usblink *ul;
	int want_write, want_read, ups, closed;
	char reason[160];
	struct bufferevent *bev;       /* libagg's end, from ops->up */
	struct evbuffer *got;          /* what libagg's end read */
	int eof;
	uint64_t transfers;
	int bad_length;                /* a transfer broke the length rule */
	enum agg_usblink_input_result last;
};

/* ops: bytes to send. */
static void mock_want_write_cb(void *arg)
{
	((struct mock *)arg)->want_write++;
}

/* ops: reads may go on. */
static void mock_want_read_cb(void *arg)
{
	((struct mock *)arg)->want_read++;
}

/* libagg's end read bytes. */
static void mock_read_cb(struct bufferevent *bev, void *arg)
{
	struct mock *m = arg;

	evbuffer_add_buffer(m->got, bufferevent_get_input(bev));
}

/* libagg's end saw EOF or an error. */
static void mock_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct mock *m = arg;

	(void)bev;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		m->eof = 1;
}

/* ops: the HELLO exchange is done. */
static void mock_up_cb(void *arg, struct bufferevent *bev)
{
	struct mock *m = arg;

	m->ups++;
	m->bev = bev;
	bufferevent_setcb(bev, mock_read_cb, NULL, mock_event_cb, m);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
}

/* ops: the link ended. */
static void mock_closed_cb(void *arg, const char *reason)
{
	struct mock *m = arg;

	m->closed++;
	snprintf(m->reason, sizeof(m->reason), "%s", reason);
}

static const struct agg_usblink_ops mock_ops = {
	.want_write = mock_want_write_cb,
	.want_read = mock_want_read_cb,
	.up = mock_up_cb,
	.closed = mock_closed_cb,
};

/* Starts one side. */
static void mock_init(struct mock *m, struct event_base *base,
    enum agg_usblink_role role, uint32_t gen)
{
	memset(m, 0, sizeof(*m));
	m->got = evbuffer_new();
	m->ul = agg_usblink_new(base, role, gen, &mock_ops, m);
	ck_assert_ptr_nonnull(m->ul);
}

/* Frees one side. */
static void mock_free(struct mock *m)
{
	if (m->bev != NULL)
		bufferevent_free(m->bev);
	agg_usblink_free(m->ul);
	evbuffer_free(m->got);
}

/* Moves every transfer from's usblink has into to's; returns how many. */
static int mock_move(struct mock *from, struct mock *to)
{
	static uint8_t buf[AGG_USB_TRANSFER_MAX];
	size_t n;
	int moved = 0;

	while ((n = agg_usblink_next_transfer(from->ul, buf, sizeof(buf))) >
	    0) {
		if (n > AGG_USB_TRANSFER_MAX || (n < AGG_USB_TRANSFER_MAX &&
		    n % AGG_USB_TRANSFER_ALIGN == 0))
			from->bad_length = 1;
		from->transfers++;
		to->last = agg_usblink_input(to->ul, buf, n);
		moved++;
	}
	return moved;
}

/* Runs the loop and moves transfers both ways until done() holds. */
static int pump(struct event_base *base, struct mock *a, struct mock *b,
    int (*done)(struct mock *, struct mock *))
{
	int i;

	for (i = 0; i < MAX_ROUNDS; i++) {
		if (done(a, b))
			return 1;
		event_base_loop(base, EVLOOP_NONBLOCK);
		mock_move(a, b);
		mock_move(b, a);
	}
	return done(a, b);
}

/* Both sides are up. */
static int both_up(struct mock *a, struct mock *b)
{
	return a->ups == 1 && b->ups == 1;
}

static size_t want_bytes;

/* b's libagg end got want_bytes. */
static int b_got_all(struct mock *a, struct mock *b)
{
	(void)a;
	return evbuffer_get_length(b->got) >= want_bytes;
}

/* a's libagg end got want_bytes. */
static int a_got_all(struct mock *a, struct mock *b)
{
	(void)b;
	return evbuffer_get_length(a->got) >= want_bytes;
}

/* Both usblinks ended and both libagg ends saw EOF. */
static int both_closed(struct mock *a, struct mock *b)
{
	return a->closed == 1 && b->closed == 1 && b->eof;
}

/* Fills buf with a pattern from seed. */
static void pattern(uint8_t *buf, size_t len, uint32_t seed)
{
	size_t i;

	for (i = 0; i < len; i++) {
		seed = seed * 1103515245u + 12345u;
		buf[i] = (uint8_t)(seed >> 16);
	}
}

/* Brings a host (gen) and a gadget up through the HELLO exchange. */
static void bring_up(struct event_base *base, struct mock *host,
    struct mock *gadget, uint32_t gen)
{
	mock_init(host, base, AGG_USBLINK_HOST, gen);
	mock_init(gadget, base, AGG_USBLINK_GADGET, 0);
	ck_assert(pump(base, host, gadget, both_up));
	ck_assert_uint_eq(agg_usblink_generation(gadget->ul), gen);
}

START_TEST(test_data_len_rule)
{
	size_t avail, n, total;

	ck_assert_uint_eq(agg_usb_data_len(0), 0);
	for (avail = 1; avail < 70000; avail++) {
		n = agg_usb_data_len(avail);
		total = AGG_USB_HEADER_LEN + n;
		ck_assert(n >= 1 && n <= avail);
		ck_assert(total <= AGG_USB_TRANSFER_MAX);
		if (total < AGG_USB_TRANSFER_MAX)
			ck_assert_uint_ne(total % AGG_USB_TRANSFER_ALIGN, 0);
		/* Never more than one byte is held back. */
		ck_assert(n + 1 >= (avail < AGG_USB_TRANSFER_MAX -
		    AGG_USB_HEADER_LEN ? avail : AGG_USB_TRANSFER_MAX -
		    AGG_USB_HEADER_LEN));
	}
}
END_TEST

START_TEST(test_header)
{
	uint8_t buf[AGG_USB_HEADER_LEN];
	enum agg_usb_type type;
	uint32_t gen;

	agg_usb_header_write(buf, AGG_USB_DATA, 0xdeadbeefu);
	ck_assert_int_eq(memcmp(buf, "AU\x02\x00\xde\xad\xbe\xef", 8), 0);
	ck_assert_int_eq(agg_usb_header_read(buf, 8, &type, &gen), 0);
	ck_assert_int_eq(type, AGG_USB_DATA);
	ck_assert_uint_eq(gen, 0xdeadbeefu);
	ck_assert_int_eq(agg_usb_header_read(buf, 7, &type, &gen), -1);
	buf[2] = 4;
	ck_assert_int_eq(agg_usb_header_read(buf, 8, &type, &gen), -1);
	buf[2] = 2;
	buf[0] = 'X';
	ck_assert_int_eq(agg_usb_header_read(buf, 8, &type, &gen), -1);
}
END_TEST

START_TEST(test_stream_both_ways)
{
	struct event_base *base = event_base_new();
	struct mock host, gadget;
	static uint8_t big[3 * 1024 * 1024 + 17], back[1000];
	uint8_t one = 0x5a;

	bring_up(base, &host, &gadget, 0x01020304u);
	/* Short transfers: one byte at a time, each its own transfer. */
	bufferevent_write(host.bev, &one, 1);
	want_bytes = 1;
	ck_assert(pump(base, &host, &gadget, b_got_all));
	ck_assert_uint_eq(evbuffer_get_length(gadget.got), 1);
	ck_assert_uint_eq(evbuffer_pullup(gadget.got, 1)[0], 0x5a);
	evbuffer_drain(gadget.got, 1);
	/* Large: full 64 KiB transfers and a short tail. */
	pattern(big, sizeof(big), 7);
	bufferevent_write(host.bev, big, sizeof(big));
	want_bytes = sizeof(big);
	ck_assert(pump(base, &host, &gadget, b_got_all));
	ck_assert_uint_eq(evbuffer_get_length(gadget.got), sizeof(big));
	ck_assert_int_eq(memcmp(evbuffer_pullup(gadget.got, -1), big,
	    sizeof(big)), 0);
	/* The other way. */
	pattern(back, sizeof(back), 9);
	bufferevent_write(gadget.bev, back, sizeof(back));
	want_bytes = sizeof(back);
	ck_assert(pump(base, &host, &gadget, a_got_all));
	ck_assert_int_eq(memcmp(evbuffer_pullup(host.got, -1), back,
	    sizeof(back)), 0);
	ck_assert(!host.bad_length && !gadget.bad_length);
	ck_assert(host.transfers >= sizeof(big) / AGG_USB_TRANSFER_MAX);
	mock_free(&host);
	mock_free(&gadget);
	event_base_free(base);
}
END_TEST

START_TEST(test_zlp_and_stale)
{
	struct event_base *base = event_base_new();
	struct mock host, gadget;
	struct agg_usblink_stats st;
	uint8_t t[AGG_USB_HEADER_LEN + 5];

	mock_init(&host, base, AGG_USBLINK_HOST, 0x11111111u);
	mock_init(&gadget, base, AGG_USBLINK_GADGET, 0);
	/* Before any HELLO: a DATA transfer of an old attach is stale. */
	agg_usb_header_write(t, AGG_USB_DATA, 0x22222222u);
	memcpy(t + AGG_USB_HEADER_LEN, "stale", 5);
	ck_assert_int_eq(agg_usblink_input(gadget.ul, t, sizeof(t)),
	    AGG_USBLINK_READ_AGAIN);
	/* So is a piece without a header (the tail of an old transfer). */
	ck_assert_int_eq(agg_usblink_input(gadget.ul, (const uint8_t *)
	    "tail of an old transfer", 23), AGG_USBLINK_READ_AGAIN);
	/* A zero-length packet is ignored. */
	ck_assert_int_eq(agg_usblink_input(gadget.ul, t, 0),
	    AGG_USBLINK_READ_AGAIN);
	ck_assert(pump(base, &host, &gadget, both_up));
	/* Once up, the old generation is still stale, both ways. */
	ck_assert_int_eq(agg_usblink_input(gadget.ul, t, sizeof(t)),
	    AGG_USBLINK_READ_AGAIN);
	ck_assert_int_eq(agg_usblink_input(host.ul, t, sizeof(t)),
	    AGG_USBLINK_READ_AGAIN);
	ck_assert_int_eq(agg_usblink_input(host.ul, t, 0),
	    AGG_USBLINK_READ_AGAIN);
	event_base_loop(base, EVLOOP_NONBLOCK);
	event_base_loop(base, EVLOOP_NONBLOCK);
	ck_assert_uint_eq(evbuffer_get_length(gadget.got), 0);
	ck_assert_uint_eq(evbuffer_get_length(host.got), 0);
	agg_usblink_get_stats(gadget.ul, &st);
	ck_assert_uint_eq(st.stale, 3);
	ck_assert_uint_eq(st.empty, 1);
	agg_usblink_get_stats(host.ul, &st);
	ck_assert_uint_eq(st.stale, 1);
	ck_assert_uint_eq(st.empty, 1);
	/* A header that is not ours ends the link. */
	memcpy(t, "garbage!", 8);
	ck_assert_int_eq(agg_usblink_input(host.ul, t, sizeof(t)),
	    AGG_USBLINK_READ_STOP);
	ck_assert_int_eq(host.closed, 1);
	ck_assert_str_eq(host.reason,
	    "bad USB transfer header (13 bytes: 67 61 72 62)");
	mock_free(&host);
	mock_free(&gadget);
	event_base_free(base);
}
END_TEST

START_TEST(test_replug_new_generation)
{
	struct event_base *base = event_base_new();
	struct mock host, gadget, host2, gadget2;
	uint8_t hello[AGG_USB_TRANSFER_MAX], late[AGG_USB_HEADER_LEN + 4];
	size_t n;

	bring_up(base, &host, &gadget, 0xaaaa0001u);
	/* The device is re-plugged: a new host usblink says HELLO with a new
	 * generation to the gadget, whose old link must end. */
	mock_init(&host2, base, AGG_USBLINK_HOST, 0xaaaa0002u);
	n = agg_usblink_next_transfer(host2.ul, hello, sizeof(hello));
	ck_assert_uint_eq(n, AGG_USB_HEADER_LEN + 1);
	ck_assert_int_eq(agg_usblink_input(gadget.ul, hello, n),
	    AGG_USBLINK_READ_NEW);
	ck_assert_int_eq(gadget.closed, 1);
	ck_assert_str_eq(gadget.reason, "the USB host attached again");
	/* The transport gives the same transfer to a fresh gadget usblink. */
	mock_init(&gadget2, base, AGG_USBLINK_GADGET, 0);
	ck_assert_int_eq(agg_usblink_input(gadget2.ul, hello, n),
	    AGG_USBLINK_READ_AGAIN);
	ck_assert(pump(base, &host2, &gadget2, both_up));
	/* A transfer of the first attach arriving late is stale. */
	agg_usb_header_write(late, AGG_USB_DATA, 0xaaaa0001u);
	memcpy(late + AGG_USB_HEADER_LEN, "old!", 4);
	ck_assert_int_eq(agg_usblink_input(gadget2.ul, late, sizeof(late)),
	    AGG_USBLINK_READ_AGAIN);
	bufferevent_write(host2.bev, "new", 3);
	want_bytes = 3;
	ck_assert(pump(base, &host2, &gadget2, b_got_all));
	ck_assert_uint_eq(evbuffer_get_length(gadget2.got), 3);
	ck_assert_int_eq(memcmp(evbuffer_pullup(gadget2.got, -1), "new", 3),
	    0);
	/* The old gadget link's libagg end saw the pipe close. */
	for (n = 0; n < 100 && !gadget.eof; n++)
		event_base_loop(base, EVLOOP_NONBLOCK);
	ck_assert(gadget.eof);
	mock_free(&host);
	mock_free(&gadget);
	mock_free(&host2);
	mock_free(&gadget2);
	event_base_free(base);
}
END_TEST

START_TEST(test_close_from_agg)
{
	struct event_base *base = event_base_new();
	struct mock host, gadget;

	bring_up(base, &host, &gadget, 0x5u);
	/* libagg writes a last frame and closes its end: the frame goes
	 * out, then CLOSE; the peer's libagg end gets both. */
	bufferevent_write(host.bev, "bye", 3);
	want_bytes = 3;
	ck_assert(pump(base, &host, &gadget, b_got_all));
	bufferevent_free(host.bev);
	host.bev = NULL;
	ck_assert(pump(base, &host, &gadget, both_closed));
	ck_assert_str_eq(host.reason, "closed by agg");
	ck_assert_str_eq(gadget.reason, "closed by the peer");
	ck_assert_int_eq(gadget.last, AGG_USBLINK_READ_STOP);
	ck_assert_int_eq(memcmp(evbuffer_pullup(gadget.got, -1), "bye", 3), 0);
	ck_assert_uint_eq(agg_usblink_next_transfer(host.ul,
	    (uint8_t[AGG_USB_TRANSFER_MAX]){ 0 }, AGG_USB_TRANSFER_MAX), 0);
	mock_free(&host);
	mock_free(&gadget);
	event_base_free(base);
}
END_TEST

START_TEST(test_fail_and_hold)
{
	struct event_base *base = event_base_new();
	struct mock host, gadget;
	static uint8_t t[AGG_USB_TRANSFER_MAX];
	enum agg_usblink_input_result r = AGG_USBLINK_READ_AGAIN;
	int i;

	bring_up(base, &host, &gadget, 0x77u);
	/* libagg does not read: after enough transfers the usblink asks the
	 * transport to hold its reads, and to resume once libagg reads. */
	bufferevent_disable(gadget.bev, EV_READ);
	agg_usb_header_write(t, AGG_USB_DATA, 0x77u);
	for (i = 0; i < 200 && r == AGG_USBLINK_READ_AGAIN; i++) {
		r = agg_usblink_input(gadget.ul, t, sizeof(t));
		event_base_loop(base, EVLOOP_NONBLOCK);
	}
	ck_assert_int_eq(r, AGG_USBLINK_READ_HOLD);
	ck_assert_int_eq(gadget.want_read, 0);
	bufferevent_enable(gadget.bev, EV_READ);
	for (i = 0; i < 1000 && gadget.want_read == 0; i++)
		event_base_loop(base, EVLOOP_NONBLOCK);
	ck_assert_int_eq(gadget.want_read, 1);
	/* The transport fails (device unplugged): the link ends once and
	 * libagg's end sees EOF. */
	agg_usblink_fail(host.ul, "USB device unplugged");
	agg_usblink_fail(host.ul, "again");
	ck_assert_int_eq(host.closed, 1);
	ck_assert_str_eq(host.reason, "USB device unplugged");
	ck_assert(agg_usblink_is_closed(host.ul));
	for (i = 0; i < 100 && !host.eof; i++)
		event_base_loop(base, EVLOOP_NONBLOCK);
	ck_assert(host.eof);
	ck_assert_int_eq(agg_usblink_input(host.ul, t, sizeof(t)),
	    AGG_USBLINK_READ_STOP);
	mock_free(&host);
	mock_free(&gadget);
	event_base_free(base);
}
END_TEST

/* The suite. */
static Suite *usblink_suite(void)
{
	Suite *s = suite_create("usblink");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_data_len_rule);
	tcase_add_test(tc, test_header);
	tcase_add_test(tc, test_stream_both_ways);
	tcase_add_test(tc, test_zlp_and_stale);
	tcase_add_test(tc, test_replug_new_generation);
	tcase_add_test(tc, test_close_from_agg);
	tcase_add_test(tc, test_fail_and_hold);
	suite_add_tcase(s, tc);
	return s;
}

/* Runs the suite; fails if any test failed. */
int main(void)
{
	SRunner *sr;
	int failed;

	signal(SIGPIPE, SIG_IGN);
	sr = srunner_create(usblink_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
