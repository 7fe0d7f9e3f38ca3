/*
 * test_session.c: sessions over in-process links: bytes in equal bytes out,
 * across many links, link failures, stalls, joins, and many streams.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "agg/session.h"
#include "harness.h"
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

/* Done when the client's link i is back up. */
static bool link0_up(struct harness *h, void *arg)
{
	(void)arg;
	return harness_link_state(h, 0) == AGG_LINK_UP;
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
	ck_assert_int_ge(h->link_stalled_count, 1);
	ck_assert_int_eq(harness_link_state(h, 0), AGG_LINK_STALLED);
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
	tcase_add_test(tc, test_link_added_mid_transfer);
	tcase_add_test(tc, test_all_links_gone_then_back);
	tcase_add_test(tc, test_grace_period_expires);
	suite_add_tcase(s, tc);
	tc = tcase_create("streams");
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_thousand_streams);
	tcase_add_test(tc, test_slow_reader_does_not_block_others);
	suite_add_tcase(s, tc);
	tc = tcase_create("auth");
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_wrong_secret_refused);
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
