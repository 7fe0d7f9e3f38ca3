/*
 * test_pair.c: unit tests for the shaped in-process link (transports/pair.c).
 *
 * Every test asserts bytes and states only, never timings. Each event loop
 * runs under a safety timer that fails the test if it fires.
 */
#include <check.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "pair.h"

#define KIB ((uint64_t)1024)
#define MIB (KIB * KIB)
#define CHUNK (64 * 1024)
#define OUT_HIGH (256 * 1024)
#define SAFETY_S 60

struct end {
	struct bufferevent *bev;
	uint32_t seed_out;	/* pattern of the bytes this end writes */
	uint32_t seed_in;	/* pattern of the bytes it expects */
	uint64_t to_send;
	uint64_t sent;
	uint64_t received;
	int mismatch;
	int eof;
	int error;
};

struct fixture {
	struct event_base *base;
	struct agg_pair *pair;
	struct end a;
	struct end b;
	int (*done)(struct fixture *);
	int timed_out;
};

/* Byte pos of the stream with the given seed. */
static uint8_t pattern(uint32_t seed, uint64_t pos)
{
	return (uint8_t)(((pos + seed) * 0x9e3779b97f4a7c15ULL) >> 56);
}

/* Writes more of an end's stream while its output buffer is short. */
static void end_fill(struct end *e)
{
	uint8_t buf[CHUNK];
	struct evbuffer *out;
	size_t i, n;

	if (e->bev == NULL)
		return;
	out = bufferevent_get_output(e->bev);
	while (e->sent < e->to_send && evbuffer_get_length(out) < OUT_HIGH) {
		n = CHUNK;
		if (e->to_send - e->sent < n)
			n = (size_t)(e->to_send - e->sent);
		for (i = 0; i < n; i++)
			buf[i] = pattern(e->seed_out, e->sent + i);
		ck_assert_int_eq(bufferevent_write(e->bev, buf, n), 0);
		e->sent += n;
	}
}

/* Checks what an end received against its expected stream. */
static void pair_test_read_cb(struct bufferevent *bev, void *arg)
{
	struct end *e = arg;
	uint8_t buf[CHUNK];
	size_t i;
	int n;

	while ((n = evbuffer_remove(bufferevent_get_input(bev), buf,
	    sizeof(buf))) > 0) {
		for (i = 0; i < (size_t)n; i++)
			if (buf[i] != pattern(e->seed_in, e->received + i))
				e->mismatch = 1;
		e->received += (uint64_t)n;
	}
}

/* Tops up an end's output. */
static void pair_test_write_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	end_fill(arg);
}

/* Records EOF and errors at an end. */
static void pair_test_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct end *e = arg;

	(void)bev;
	if (what & BEV_EVENT_EOF)
		e->eof = 1;
	if (what & BEV_EVENT_ERROR)
		e->error = 1;
}

/* Sets up an end's callbacks and patterns. */
static void end_init(struct end *e, struct bufferevent *bev, uint32_t out,
    uint32_t in)
{
	memset(e, 0, sizeof(*e));
	e->bev = bev;
	e->seed_out = out;
	e->seed_in = in;
	bufferevent_setcb(bev, pair_test_read_cb, pair_test_write_cb,
	    pair_test_event_cb, e);
	bufferevent_setwatermark(bev, EV_WRITE, OUT_HIGH / 2, 0);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
}

/* Creates a base and a pair with both ends reading. */
static void fixture_init(struct fixture *fx)
{
	struct bufferevent *a, *b;

	memset(fx, 0, sizeof(*fx));
	fx->base = event_base_new();
	ck_assert_ptr_nonnull(fx->base);
	fx->pair = agg_pair_new(fx->base, &a, &b);
	ck_assert_ptr_nonnull(fx->pair);
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	end_init(&fx->a, a, 1, 2);
	end_init(&fx->b, b, 2, 1);
}

/* Frees whatever of the fixture is left. */
static void fixture_free(struct fixture *fx)
{
	if (fx->a.bev != NULL)
		bufferevent_free(fx->a.bev);
	if (fx->b.bev != NULL)
		bufferevent_free(fx->b.bev);
	agg_pair_free(fx->pair);
	event_base_free(fx->base);
}

/* Queues n more bytes on an end. */
static void end_send(struct end *e, uint64_t n)
{
	e->to_send += n;
	end_fill(e);
}

/* Stops the loop once the fixture's condition holds. */
static void pair_test_poll_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fixture *fx = arg;

	(void)fd;
	(void)what;
	if (fx->done != NULL && fx->done(fx))
		event_base_loopbreak(fx->base);
}

/* The safety net: the loop ran far too long. */
static void pair_test_safety_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fixture *fx = arg;

	(void)fd;
	(void)what;
	fx->timed_out = 1;
	event_base_loopbreak(fx->base);
}

/* A timed run is over. */
static void pair_test_stop_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fixture *fx = arg;

	(void)fd;
	(void)what;
	event_base_loopbreak(fx->base);
}

/*
 * Runs the loop until done holds (polled every millisecond) or, when done
 * is NULL, for ms milliseconds. Fails the test if the safety timer fires.
 */
static void run(struct fixture *fx, int (*done)(struct fixture *), long ms)
{
	struct timeval poll_tv = { 0, 1000 }, safety_tv = { SAFETY_S, 0 };
	struct timeval stop_tv = { ms / 1000, (ms % 1000) * 1000 };
	struct event *poll_ev, *safety, *stop;

	fx->done = done;
	fx->timed_out = 0;
	poll_ev = event_new(fx->base, -1, EV_PERSIST, pair_test_poll_cb, fx);
	safety = evtimer_new(fx->base, pair_test_safety_cb, fx);
	stop = evtimer_new(fx->base, pair_test_stop_cb, fx);
	ck_assert_ptr_nonnull(poll_ev);
	ck_assert_ptr_nonnull(safety);
	ck_assert_ptr_nonnull(stop);
	evtimer_add(safety, &safety_tv);
	if (done != NULL)
		event_add(poll_ev, &poll_tv);
	else
		evtimer_add(stop, &stop_tv);
	if (done == NULL || !done(fx))
		event_base_dispatch(fx->base);
	event_free(poll_ev);
	event_free(safety);
	event_free(stop);
	ck_assert_msg(!fx->timed_out, "safety timeout hit");
	if (done != NULL)
		ck_assert(done(fx));
}

/* Both ends received everything the other sent. */
static int all_received(struct fixture *fx)
{
	return fx->a.received >= fx->b.to_send &&
	    fx->b.received >= fx->a.to_send;
}

/* Both ends saw EOF or an error. */
static int both_closed(struct fixture *fx)
{
	return (fx->a.eof || fx->a.error) && (fx->b.eof || fx->b.error);
}

/* End B saw EOF or an error. */
static int b_closed(struct fixture *fx)
{
	return fx->b.eof || fx->b.error;
}

/* End B saw an error; until then, pokes B with one more byte. */
static int b_error(struct fixture *fx)
{
	if (!fx->b.error && fx->b.bev != NULL)
		bufferevent_write(fx->b.bev, "x", 1);
	return fx->b.error;
}

/* End A handed all its bytes to the kernel. */
static int a_flushed(struct fixture *fx)
{
	return fx->a.sent == fx->a.to_send &&
	    evbuffer_get_length(bufferevent_get_output(fx->a.bev)) == 0;
}

/* End B received at least 64 KiB. */
static int b_got_some(struct fixture *fx)
{
	return fx->b.received >= 64 * KIB;
}

/* End B received at least half of what A sends. */
static int b_got_half(struct fixture *fx)
{
	return fx->b.received >= fx->a.to_send / 2;
}

/* The relay holds at least 1 MiB from A. */
static int a_queued_mib(struct fixture *fx)
{
	return agg_pair_queued(fx->pair, 1) >= MIB;
}

/* Asserts both streams arrived whole and nothing is left in the relay. */
static void assert_intact(struct fixture *fx)
{
	ck_assert(!fx->a.mismatch);
	ck_assert(!fx->b.mismatch);
	ck_assert_uint_eq(fx->b.received, fx->a.to_send);
	ck_assert_uint_eq(fx->a.received, fx->b.to_send);
	ck_assert_uint_eq(agg_pair_forwarded(fx->pair, 1), fx->a.to_send);
	ck_assert_uint_eq(agg_pair_forwarded(fx->pair, 0), fx->b.to_send);
	ck_assert_uint_eq(agg_pair_queued(fx->pair, 1), 0);
	ck_assert_uint_eq(agg_pair_queued(fx->pair, 0), 0);
}

/* 16 MiB each way at once, unshaped, arrive intact. */
START_TEST(test_unlimited_bidirectional)
{
	struct fixture fx;

	fixture_init(&fx);
	end_send(&fx.a, 16 * MIB);
	end_send(&fx.b, 16 * MIB);
	run(&fx, all_received, 0);
	assert_intact(&fx);
	ck_assert(!fx.a.eof && !fx.a.error && !fx.b.eof && !fx.b.error);
	fixture_free(&fx);
}
END_TEST

/* A rate-limited link delivers intact, also across a rate change. */
START_TEST(test_rate_limited)
{
	struct fixture fx;

	fixture_init(&fx);
	agg_pair_set_rate(fx.pair, 4000000, 4000000);
	end_send(&fx.a, MIB);
	end_send(&fx.b, 256 * KIB);
	run(&fx, b_got_half, 0);
	agg_pair_set_rate(fx.pair, 8000000, 0);
	run(&fx, all_received, 0);
	assert_intact(&fx);
	fixture_free(&fx);
}
END_TEST

/* Delays, changed mid-transfer, never reorder bytes. */
START_TEST(test_delay_keeps_order)
{
	struct fixture fx;

	fixture_init(&fx);
	agg_pair_set_delay(fx.pair, 20000, 5000);
	end_send(&fx.a, 2 * MIB);
	end_send(&fx.b, 2 * MIB);
	run(&fx, b_got_half, 0);
	agg_pair_set_delay(fx.pair, 1000, 30000);
	run(&fx, all_received, 0);
	assert_intact(&fx);
	fixture_free(&fx);
}
END_TEST

/* Rate and delay together, both changed mid-transfer. */
START_TEST(test_rate_and_delay)
{
	struct fixture fx;

	fixture_init(&fx);
	agg_pair_set_rate(fx.pair, 2000000, 3000000);
	agg_pair_set_delay(fx.pair, 10000, 10000);
	end_send(&fx.a, MIB);
	end_send(&fx.b, MIB);
	run(&fx, b_got_half, 0);
	agg_pair_set_rate(fx.pair, 0, 1000000);
	agg_pair_set_delay(fx.pair, 0, 2000);
	run(&fx, all_received, 0);
	assert_intact(&fx);
	fixture_free(&fx);
}
END_TEST

/* A stall holds bytes without errors; they arrive after it lifts. */
START_TEST(test_stall_holds_bytes)
{
	struct fixture fx;

	fixture_init(&fx);
	end_send(&fx.a, 256 * KIB);
	end_send(&fx.b, 128 * KIB);
	run(&fx, all_received, 0);
	agg_pair_set_stall(fx.pair, 1);
	end_send(&fx.a, 100 * KIB);
	end_send(&fx.b, 10 * KIB);
	run(&fx, NULL, 100);
	ck_assert_uint_eq(fx.b.received, 256 * KIB);
	ck_assert_uint_eq(fx.a.received, 128 * KIB);
	ck_assert_uint_gt(agg_pair_queued(fx.pair, 1), 0);
	ck_assert_uint_gt(agg_pair_queued(fx.pair, 0), 0);
	ck_assert(!fx.a.eof && !fx.a.error && !fx.b.eof && !fx.b.error);
	agg_pair_set_stall(fx.pair, 0);
	run(&fx, all_received, 0);
	assert_intact(&fx);
	fixture_free(&fx);
}
END_TEST

/* A stalled relay holds at most its queue limit; the writer backs up. */
START_TEST(test_stall_backpressure)
{
	struct fixture fx;

	fixture_init(&fx);
	agg_pair_set_rate(fx.pair, 4000000, 0);
	agg_pair_set_delay(fx.pair, 5000, 0);
	agg_pair_set_stall(fx.pair, 1);
	end_send(&fx.a, 8 * MIB);
	run(&fx, NULL, 100);
	ck_assert_uint_eq(fx.b.received, 0);
	ck_assert_uint_eq(agg_pair_forwarded(fx.pair, 1), 0);
	ck_assert_uint_gt(agg_pair_queued(fx.pair, 1), 0);
	ck_assert_uint_le(agg_pair_queued(fx.pair, 1), 200000 + CHUNK);
	ck_assert_uint_gt(evbuffer_get_length(bufferevent_get_output(fx.a.bev)),
	    0);
	ck_assert_uint_lt(fx.a.sent, 8 * MIB);
	agg_pair_set_stall(fx.pair, 0);
	agg_pair_set_rate(fx.pair, 0, 0);
	run(&fx, all_received, 0);
	assert_intact(&fx);
	fixture_free(&fx);
}
END_TEST

/* A reader that stops reading backs the writer up; the limit is settable. */
START_TEST(test_backpressure_queue_limit)
{
	struct fixture fx;

	fixture_init(&fx);
	bufferevent_disable(fx.b.bev, EV_READ);
	end_send(&fx.a, 8 * MIB);
	run(&fx, NULL, 100);
	ck_assert_uint_le(agg_pair_queued(fx.pair, 1), 64 * KIB + CHUNK);
	ck_assert_uint_lt(fx.a.sent, 8 * MIB);
	agg_pair_set_queue_limit(fx.pair, MIB);
	run(&fx, a_queued_mib, 0);
	run(&fx, NULL, 50);
	ck_assert_uint_le(agg_pair_queued(fx.pair, 1), MIB + CHUNK);
	ck_assert_uint_eq(fx.b.received, 0);
	agg_pair_set_queue_limit(fx.pair, 0);
	bufferevent_enable(fx.b.bev, EV_READ);
	run(&fx, all_received, 0);
	assert_intact(&fx);
	fixture_free(&fx);
}
END_TEST

/* A cut gives both ends EOF or an error; later calls are harmless. */
START_TEST(test_cut)
{
	struct fixture fx;

	fixture_init(&fx);
	agg_pair_set_rate(fx.pair, 1000000, 0);
	end_send(&fx.a, 4 * MIB);
	end_send(&fx.b, 4 * MIB);
	run(&fx, b_got_some, 0);
	agg_pair_cut(fx.pair);
	run(&fx, both_closed, 0);
	ck_assert(!fx.a.mismatch);
	ck_assert(!fx.b.mismatch);
	ck_assert_uint_lt(fx.b.received, 4 * MIB);
	ck_assert_uint_eq(agg_pair_queued(fx.pair, 1), 0);
	agg_pair_set_stall(fx.pair, 1);
	agg_pair_set_rate(fx.pair, 1, 1);
	agg_pair_set_delay(fx.pair, 1, 1);
	agg_pair_cut(fx.pair);
	fixture_free(&fx);
}
END_TEST

/* A cut during a stall drops the held bytes and closes both ends. */
START_TEST(test_cut_while_stalled)
{
	struct fixture fx;

	fixture_init(&fx);
	agg_pair_set_stall(fx.pair, 1);
	end_send(&fx.a, MIB);
	run(&fx, NULL, 20);
	agg_pair_cut(fx.pair);
	run(&fx, both_closed, 0);
	ck_assert_uint_eq(fx.b.received, 0);
	fixture_free(&fx);
}
END_TEST

/* Freeing an end passes EOF on after the held bytes; writes then fail. */
START_TEST(test_free_one_end)
{
	struct fixture fx;

	fixture_init(&fx);
	end_send(&fx.a, 64 * KIB);
	run(&fx, all_received, 0);
	agg_pair_set_queue_limit(fx.pair, 2 * MIB);
	agg_pair_set_stall(fx.pair, 1);
	end_send(&fx.a, 512 * KIB);
	run(&fx, a_flushed, 0);
	bufferevent_free(fx.a.bev);
	fx.a.bev = NULL;
	run(&fx, NULL, 20);
	ck_assert_uint_eq(fx.b.received, 64 * KIB);
	ck_assert(!fx.b.eof && !fx.b.error);
	agg_pair_set_stall(fx.pair, 0);
	run(&fx, b_closed, 0);
	ck_assert(fx.b.eof);
	ck_assert(!fx.b.error);
	ck_assert(!fx.b.mismatch);
	ck_assert_uint_eq(fx.b.received, 576 * KIB);
	ck_assert_uint_eq(agg_pair_forwarded(fx.pair, 1), 576 * KIB);
	run(&fx, b_error, 0);
	fixture_free(&fx);
}
END_TEST

/* Freeing the receiving end makes the sender see an error. */
START_TEST(test_free_one_end_rated)
{
	struct fixture fx;

	fixture_init(&fx);
	agg_pair_set_rate(fx.pair, 0, 1000000);
	agg_pair_set_delay(fx.pair, 0, 20000);
	end_send(&fx.b, 200 * KIB);
	run(&fx, NULL, 10);
	bufferevent_free(fx.a.bev);
	fx.a.bev = NULL;
	run(&fx, b_error, 0);
	ck_assert(!fx.b.mismatch);
	fixture_free(&fx);
}
END_TEST

/* Freeing the relay first gives both ends EOF or an error. */
START_TEST(test_free_pair_first)
{
	struct fixture fx;

	fixture_init(&fx);
	agg_pair_set_delay(fx.pair, 50000, 50000);
	end_send(&fx.a, MIB);
	end_send(&fx.b, MIB);
	run(&fx, NULL, 10);
	agg_pair_free(fx.pair);
	fx.pair = NULL;
	run(&fx, both_closed, 0);
	fixture_free(&fx);
}
END_TEST

/* Builds the suite. */
static Suite *pair_suite(void)
{
	Suite *s;
	TCase *tc;

	s = suite_create("pair");
	tc = tcase_create("core");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_unlimited_bidirectional);
	tcase_add_test(tc, test_rate_limited);
	tcase_add_test(tc, test_delay_keeps_order);
	tcase_add_test(tc, test_rate_and_delay);
	tcase_add_test(tc, test_stall_holds_bytes);
	tcase_add_test(tc, test_stall_backpressure);
	tcase_add_test(tc, test_backpressure_queue_limit);
	tcase_add_test(tc, test_cut);
	tcase_add_test(tc, test_cut_while_stalled);
	tcase_add_test(tc, test_free_one_end);
	tcase_add_test(tc, test_free_one_end_rated);
	tcase_add_test(tc, test_free_pair_first);
	suite_add_tcase(s, tc);
	return s;
}

/* Runs the suite; fails if any test failed. */
int main(void)
{
	SRunner *sr;
	int failed;

	signal(SIGPIPE, SIG_IGN);
	sr = srunner_create(pair_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
