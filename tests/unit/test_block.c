/*
 * test_block.c: reads into shared blocks, moves that share instead of
 * copying, blocks freed by their last reference, and the copy fallback
 * once the arena is used up; writing a bufferevent's output at once;
 * reading a socket bufferevent without libevent's small reads; writing
 * one without arming libevent's write event while the socket has room.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "agg/bevio.h"
#include "block.h"

/* A nonblocking stream socketpair: fds[0] is read, fds[1] written. */
static void make_pair(int fds[2])
{
	int size = 4 << 20;

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
	(void)setsockopt(fds[1], SOL_SOCKET, SO_SNDBUFFORCE, &size,
	    sizeof(size));
	ck_assert_int_eq(fcntl(fds[0], F_SETFL, O_NONBLOCK), 0);
	ck_assert_int_eq(fcntl(fds[1], F_SETFL, O_NONBLOCK), 0);
}

/* The test pattern: byte i of the stream is (i * 7 + i / 251) & 0xff. */
static uint8_t pattern_at(size_t i)
{
	return (uint8_t)((i * 7u + i / 251u) & 0xffu);
}

/* Writes the pattern's bytes [from, from + len) to fd, all of them. */
static void write_pattern(int fd, size_t from, size_t len)
{
	uint8_t *buf = malloc(len);
	size_t i, off = 0;
	ssize_t n;

	ck_assert_ptr_nonnull(buf);
	for (i = 0; i < len; i++)
		buf[i] = pattern_at(from + i);
	while (off < len) {
		n = write(fd, buf + off, len - off);
		ck_assert_msg(n > 0, "write: %s", strerror(errno));
		off += (size_t)n;
	}
	free(buf);
}

/* Checks that buf holds the pattern's bytes from offset from on. */
static void check_pattern(struct evbuffer *buf, size_t from)
{
	size_t len = evbuffer_get_length(buf), i;
	const uint8_t *p = evbuffer_pullup(buf, -1);

	/* One assertion at the end: Check reports every assertion to its
	 * parent process, too slow per byte. */
	for (i = 0; i < len && p[i] == pattern_at(from + i); i++)
		;
	ck_assert_msg(i == len, "byte %zu: %u, want %u", from + i,
	    i < len ? p[i] : 0, pattern_at(from + i));
}

/* Address of the first byte of buf's first chain. */
static const void *first_byte(struct evbuffer *buf)
{
	struct evbuffer_iovec v;

	ck_assert_int_ge(evbuffer_peek(buf, -1, NULL, &v, 1), 1);
	return v.iov_base;
}

START_TEST(test_block_split_shares_memory)
{
	struct evbuffer *in = evbuffer_new(), *a = evbuffer_new(),
	    *b = evbuffer_new(), *c = evbuffer_new();
	const uint8_t *p;
	size_t room;
	int fds[2];

	make_pair(fds);
	ck_assert_uint_eq(agg_block_in_use(), 0);
	write_pattern(fds[1], 0, 100000);
	ck_assert_int_eq(agg_block_read(fds[0], in, &room), 100000);
	ck_assert_uint_eq(room, AGG_BLOCK_SIZE);
	ck_assert_uint_eq(agg_block_in_use(), 1);
	p = first_byte(in);
	/* Split twice: both pieces point into the same block. */
	agg_block_move(in, a, 1000);
	agg_block_move(in, b, 500);
	ck_assert_ptr_eq(first_byte(a), p);
	ck_assert_ptr_eq(first_byte(b), p + 1000);
	ck_assert_ptr_eq(first_byte(in), p + 1500);
	ck_assert_uint_eq(evbuffer_get_length(a), 1000);
	ck_assert_uint_eq(evbuffer_get_length(b), 500);
	ck_assert_uint_eq(evbuffer_get_length(in), 98500);
	/* pullup of a one-chain buffer reads in place: still shared. */
	check_pattern(a, 0);
	check_pattern(b, 1000);
	/* The next read continues the same block where the last stopped;
	 * a small one is copied out, and the read after it lands there. */
	write_pattern(fds[1], 100000, 10);
	ck_assert_int_eq(agg_block_read(fds[0], in, &room), 10);
	ck_assert_uint_eq(room, AGG_BLOCK_SIZE - 100000);
	check_pattern(in, 1500);
	write_pattern(fds[1], 100010, 5000);
	ck_assert_int_eq(agg_block_read(fds[0], c, &room), 5000);
	ck_assert_ptr_eq(first_byte(c), p + 100000);
	check_pattern(c, 100010);
	evbuffer_free(c);
	evbuffer_free(a);
	evbuffer_free(b);
	evbuffer_free(in);
	ck_assert_uint_eq(agg_block_in_use(), 1);
	close(fds[0]);
	close(fds[1]);
}
END_TEST

START_TEST(test_block_freed_by_last_reference)
{
	struct evbuffer *first = evbuffer_new(), *second = evbuffer_new(),
	    *piece = evbuffer_new();
	const void *p0;
	size_t room;
	int fds[2];

	make_pair(fds);
	/* 200,000 bytes leave less than a read's worth: the next read
	 * starts a second block. */
	write_pattern(fds[1], 0, 200000);
	ck_assert_int_eq(agg_block_read(fds[0], first, &room), 200000);
	p0 = first_byte(first);
	agg_block_move(first, piece, 10);
	write_pattern(fds[1], 200000, 5000);
	ck_assert_int_eq(agg_block_read(fds[0], second, &room), 5000);
	ck_assert_uint_eq(room, AGG_BLOCK_SIZE);
	ck_assert_uint_eq(agg_block_in_use(), 2);
	ck_assert_ptr_ne(first_byte(second), (const uint8_t *)p0 + 200000);
	/* The first block lives while any piece of it does. */
	evbuffer_free(first);
	ck_assert_uint_eq(agg_block_in_use(), 2);
	check_pattern(piece, 0);
	evbuffer_free(piece);
	ck_assert_uint_eq(agg_block_in_use(), 1);
	check_pattern(second, 200000);
	evbuffer_free(second);
	close(fds[0]);
	close(fds[1]);
}
END_TEST

START_TEST(test_block_move_across_chains_and_copies)
{
	struct evbuffer *in = evbuffer_new(), *out = evbuffer_new(),
	    *plain = evbuffer_new(), *cut = evbuffer_new();
	uint8_t bytes[3000];
	size_t room, i;
	int fds[2];

	make_pair(fds);
	/* Two chains (a plain one, then a block): a move across both. */
	for (i = 0; i < 3000; i++)
		bytes[i] = pattern_at(i);
	evbuffer_add(in, bytes, 3000);
	write_pattern(fds[1], 3000, 7000);
	ck_assert_int_eq(agg_block_read(fds[0], in, &room), 7000);
	agg_block_move(in, out, 5000);
	ck_assert_uint_eq(evbuffer_get_length(out), 5000);
	ck_assert_uint_eq(evbuffer_get_length(in), 5000);
	check_pattern(in, 5000);
	check_pattern(out, 0);
	/* Splitting memory that is not a block copies. */
	evbuffer_add(plain, bytes, 3000);
	agg_block_move(plain, cut, 100);
	ck_assert_ptr_ne(first_byte(cut), first_byte(plain));
	check_pattern(cut, 0);
	check_pattern(plain, 100);
	/* More than there is moves what there is. */
	agg_block_move(plain, cut, 100000);
	ck_assert_uint_eq(evbuffer_get_length(plain), 0);
	ck_assert_uint_eq(evbuffer_get_length(cut), 3000);
	check_pattern(cut, 0);
	evbuffer_free(in);
	evbuffer_free(out);
	evbuffer_free(plain);
	evbuffer_free(cut);
	close(fds[0]);
	close(fds[1]);
}
END_TEST

START_TEST(test_block_eagain_and_eof)
{
	struct evbuffer *in = evbuffer_new();
	size_t room;
	int fds[2];

	make_pair(fds);
	errno = 0;
	ck_assert_int_eq(agg_block_read(fds[0], in, &room), -1);
	ck_assert_int_eq(errno, EAGAIN);
	ck_assert_uint_eq(evbuffer_get_length(in), 0);
	ck_assert_int_eq(shutdown(fds[1], SHUT_WR), 0);
	ck_assert_int_eq(agg_block_read(fds[0], in, &room), 0);
	ck_assert_uint_eq(evbuffer_get_length(in), 0);
	evbuffer_free(in);
	close(fds[0]);
	close(fds[1]);
}
END_TEST

START_TEST(test_block_arena_end_falls_back_to_copies)
{
	struct event_base *base = event_base_new();
	struct bufferevent *bev;
	struct evbuffer *in;
	size_t want = 900 * 1024, sent = 0, step;
	int fds[2], i;

	make_pair(fds);
	agg_block_set_limit(1);
	bev = bufferevent_socket_new(base, fds[0], BEV_OPT_CLOSE_ON_FREE);
	in = bufferevent_get_input(bev);
	/* The socket takes what its buffer holds; read, then send more. */
	for (i = 0; i < 64 && evbuffer_get_length(in) < want; i++) {
		step = want - sent < 128 * 1024 ? want - sent : 128 * 1024;
		if (step > 0) {
			write_pattern(fds[1], sent, step);
			sent += step;
		}
		ck_assert_int_eq(agg_bev_read_more(bev, in), 0);
		ck_assert_uint_le(agg_block_in_use(), 1);
	}
	ck_assert_uint_eq(evbuffer_get_length(in), want);
	check_pattern(in, 0);
	/* The end of the peer's data is reported as -1 with errno 0. */
	ck_assert_int_eq(shutdown(fds[1], SHUT_WR), 0);
	errno = EINVAL;
	ck_assert_int_eq(agg_bev_read_more(bev, in), -1);
	ck_assert_int_eq(errno, 0);
	bufferevent_free(bev);
	event_base_free(base);
	close(fds[1]);
}
END_TEST

START_TEST(test_bev_write_now)
{
	struct event_base *base = event_base_new();
	struct bufferevent *bev, *filter;
	struct evbuffer *got = evbuffer_new();
	uint8_t bytes[100000];
	size_t i, room;
	int fds[2];

	make_pair(fds);
	for (i = 0; i < sizeof(bytes); i++)
		bytes[i] = pattern_at(i);
	/* fds[1] is the bufferevent's here: it writes, fds[0] reads. */
	bev = bufferevent_socket_new(base, fds[1], BEV_OPT_CLOSE_ON_FREE);
	bufferevent_enable(bev, EV_WRITE);
	bufferevent_write(bev, bytes, sizeof(bytes));
	/* Without the loop running, the bytes are on the socket at once. */
	ck_assert_uint_eq(agg_bev_write_now(bev), sizeof(bytes));
	ck_assert_uint_eq(evbuffer_get_length(bufferevent_get_output(bev)), 0);
	while (agg_block_read(fds[0], got, &room) > 0)
		;
	ck_assert_uint_eq(evbuffer_get_length(got), sizeof(bytes));
	check_pattern(got, 0);
	ck_assert_uint_eq(agg_bev_write_now(bev), 0);
	/* A filter's output is the filter's to write. */
	filter = bufferevent_filter_new(bev, NULL, NULL, 0, NULL, NULL);
	bufferevent_write(filter, bytes, 10);
	ck_assert_uint_eq(agg_bev_write_now(filter), 0);
	bufferevent_free(filter);
	bufferevent_free(bev);
	evbuffer_free(got);
	event_base_free(base);
	close(fds[0]);
}
END_TEST

/* Reader callback: libevent must not have read; reads everything. */
static void reader_cb(struct bufferevent *bev, void *arg)
{
	int *calls = arg;

	ck_assert_uint_eq(evbuffer_get_length(bufferevent_get_input(bev)), 0);
	ck_assert_int_eq(agg_bev_read_more(bev, bufferevent_get_input(bev)),
	    0);
	(*calls)++;
}

START_TEST(test_bev_reader)
{
	struct event_base *base = event_base_new();
	struct bufferevent *bev, *piped;
	struct agg_bev_reader *r;
	int fds[2], p[2], calls = 0, i;

	make_pair(fds);
	bev = bufferevent_socket_new(base, fds[0], BEV_OPT_CLOSE_ON_FREE);
	bufferevent_enable(bev, EV_READ);
	r = agg_bev_reader_new(bev, reader_cb, &calls);
	ck_assert_ptr_nonnull(r);
	/* libevent's own reading is off; the reader's is off until asked. */
	ck_assert(!(bufferevent_get_enabled(bev) & EV_READ));
	ck_assert(!agg_bev_is_reading(r, bev));
	agg_bev_set_reading(r, bev, true);
	ck_assert(agg_bev_is_reading(r, bev));
	write_pattern(fds[1], 0, 50000);
	for (i = 0; i < 100 && calls == 0; i++)
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	ck_assert_int_eq(calls, 1);
	ck_assert_uint_eq(evbuffer_get_length(bufferevent_get_input(bev)),
	    50000);
	check_pattern(bufferevent_get_input(bev), 0);
	/* Stopped: more bytes wait in the socket. */
	agg_bev_set_reading(r, bev, false);
	ck_assert(!agg_bev_is_reading(r, bev));
	write_pattern(fds[1], 50000, 10);
	for (i = 0; i < 10; i++)
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	ck_assert_int_eq(calls, 1);
	agg_bev_reader_free(r);
	bufferevent_free(bev);
	/* A pipe is not a socket: libevent keeps reading it. */
	ck_assert_int_eq(pipe(p), 0);
	piped = bufferevent_socket_new(base, p[0], BEV_OPT_CLOSE_ON_FREE);
	ck_assert_ptr_null(agg_bev_reader_new(piped, reader_cb, &calls));
	agg_bev_set_reading(NULL, piped, true);
	ck_assert(agg_bev_is_reading(NULL, piped));
	bufferevent_free(piped);
	close(p[1]);
	event_base_free(base);
	close(fds[1]);
}
END_TEST

/* Write callback: counts its calls. */
static void count_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	(*(int *)arg)++;
}

START_TEST(test_bev_writer)
{
	struct event_base *base = event_base_new();
	struct bufferevent *bev;
	struct agg_bev_writer *w;
	struct evbuffer *got = evbuffer_new();
	size_t total = 8u << 20, room, i;
	uint8_t *bytes = malloc(total);
	int fds[2], calls = 0, rounds;

	make_pair(fds);
	for (i = 0; i < total; i++)
		bytes[i] = pattern_at(i);
	bev = bufferevent_socket_new(base, fds[1], BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(bev, NULL, count_cb, NULL, &calls);
	bufferevent_enable(bev, EV_WRITE);
	w = agg_bev_writer_new(bev);
	ck_assert_ptr_nonnull(w);
	ck_assert(!(bufferevent_get_enabled(bev) & EV_WRITE));
	/* A small write leaves in the pass that queued it; libevent's write
	 * event stays off, the write callback runs as libevent's would. */
	bufferevent_write(bev, bytes, 1000);
	event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	ck_assert_uint_eq(evbuffer_get_length(bufferevent_get_output(bev)), 0);
	ck_assert(!(bufferevent_get_enabled(bev) & EV_WRITE));
	ck_assert_int_eq(calls, 1);
	/* More than the socket takes: the rest waits for libevent's write
	 * event, and all of it arrives in order. */
	bufferevent_write(bev, bytes + 1000, total - 1000);
	event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	ck_assert_uint_gt(evbuffer_get_length(bufferevent_get_output(bev)), 0);
	ck_assert(bufferevent_get_enabled(bev) & EV_WRITE);
	for (rounds = 0; rounds < 10000 &&
	    evbuffer_get_length(got) < total; rounds++) {
		while (agg_block_read(fds[0], got, &room) > 0)
			;
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	}
	ck_assert_uint_eq(evbuffer_get_length(got), total);
	check_pattern(got, 0);
	/* Emptied by libevent: its write event is off again. */
	ck_assert(!(bufferevent_get_enabled(bev) & EV_WRITE));
	agg_bev_writer_free(w);
	bufferevent_free(bev);
	evbuffer_free(got);
	free(bytes);
	event_base_free(base);
	close(fds[0]);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("block");
	TCase *tc = tcase_create("block");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_block_split_shares_memory);
	tcase_add_test(tc, test_block_freed_by_last_reference);
	tcase_add_test(tc, test_block_move_across_chains_and_copies);
	tcase_add_test(tc, test_block_eagain_and_eof);
	tcase_add_test(tc, test_block_arena_end_falls_back_to_copies);
	tcase_add_test(tc, test_bev_write_now);
	tcase_add_test(tc, test_bev_reader);
	tcase_add_test(tc, test_bev_writer);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
