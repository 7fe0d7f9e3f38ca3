/*
 * pair.c: two socketpairs joined by a relay that shapes the bytes passing
 * between them (rate, delay, stall, cut). See pair.h.
 *
 * Each direction keeps one evbuffer holding, in order: bytes due and ready
 * to be written to the destination (n_out), bytes in flight in the delay
 * line (n_line, described by a ring of (length, due time) records) and
 * bytes waiting for rate tokens (n_queue). Reads append at the tail, writes
 * drain the head, and bytes advance between the stages by moving counters
 * only, so the relay never copies or reorders data.
 *
 * Release times come from a timerfd where there is one: libevent's own
 * timers follow CLOCK_MONOTONIC_COARSE unless the base was created with
 * EVENT_BASE_FLAG_PRECISE_TIMER, which would add up to a jiffy to every
 * delay.
 */
#include "pair.h"

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/uio.h>
#ifdef __linux__
#include <sys/timerfd.h>
#endif

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

#define PAIR_SOCKBUF (64 * 1024)
#define PAIR_READ_CHUNK (64 * 1024)
#define PAIR_READS_PER_CB 4
#define PAIR_IOV_MAX 64
#define PAIR_MIN_QUEUE ((size_t)64 * 1024)
#define PAIR_MIN_FLIGHT ((size_t)16 * 1024 * 1024)
#define PAIR_MIN_BURST 1500.0
#define PAIR_RING_INIT 64
/* Bytes released within this many ns of each other share a record. */
#define PAIR_MERGE_NS 200000u
#define PAIR_NS_PER_S 1000000000u

struct pair_rec {
	size_t len;
	uint64_t due;		/* CLOCK_MONOTONIC, ns */
};

struct pair_dir {
	struct agg_pair *pair;
	int src;		/* source fd[src], destination fd[1 - src] */
	struct evbuffer *buf;
	size_t n_out;
	size_t n_line;
	size_t n_queue;
	struct pair_rec *ring;
	size_t ring_head;
	size_t ring_count;
	size_t ring_cap;
	uint64_t rate;		/* bytes/s, 0 = unlimited */
	uint64_t delay;		/* ns */
	double tokens;
	uint64_t token_time;
	uint64_t forwarded;
	struct event *read_ev;	/* source readable */
	struct event *write_ev;	/* destination writable */
	struct event *timer;
	int timer_fd;		/* timerfd behind timer, or -1 for an evtimer */
	int reading;
	int writing;
	int timing;
	int eof;		/* source gave EOF or an error */
	int done;		/* EOF passed on, or destination gone */
};

struct agg_pair {
	evutil_socket_t fd[2];	/* relay side of A and of B, -1 once closed */
	struct pair_dir dir[2];	/* [0] A to B, [1] B to A */
	size_t queue_limit;	/* 0: default */
	int stalled;
	int closed;
};

static void pair_pump(struct pair_dir *);

/* Current CLOCK_MONOTONIC time in ns. */
static uint64_t pair_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * PAIR_NS_PER_S + (uint64_t)ts.tv_nsec;
}

/* Largest token count a direction may save up: 10 ms of its rate. */
static double pair_burst(const struct pair_dir *d)
{
	double burst;

	burst = (double)d->rate / 100.0;
	return burst < PAIR_MIN_BURST ? PAIR_MIN_BURST : burst;
}

/* Bytes a direction may hold waiting for tokens or the destination. */
static size_t pair_queue_limit(const struct pair_dir *d)
{
	uint64_t limit;

	if (d->pair->queue_limit != 0)
		return d->pair->queue_limit;
	limit = d->rate / 20;
	return limit < PAIR_MIN_QUEUE ? PAIR_MIN_QUEUE : (size_t)limit;
}

/* Bytes a direction may hold in its delay line. */
static size_t pair_flight_limit(const struct pair_dir *d)
{
	double flight;

	flight = 2.0 * (double)d->rate * (double)d->delay / PAIR_NS_PER_S;
	if (flight <= (double)PAIR_MIN_FLIGHT)
		return PAIR_MIN_FLIGHT;
	if (flight >= (double)(SIZE_MAX / 2))
		return SIZE_MAX / 2;
	return (size_t)flight;
}

/* Whether the relay may read more from the source of a direction. */
static int pair_has_room(const struct pair_dir *d)
{
	return d->n_queue + d->n_out < pair_queue_limit(d) &&
	    d->n_line < pair_flight_limit(d);
}

/* Adds the tokens earned since the last refill, up to the burst. */
static void pair_refill(struct pair_dir *d, uint64_t now)
{
	double burst;

	if (d->rate == 0)
		return;
	if (now > d->token_time)
		d->tokens += (double)(now - d->token_time) * (double)d->rate /
		    PAIR_NS_PER_S;
	d->token_time = now;
	burst = pair_burst(d);
	if (d->tokens > burst)
		d->tokens = burst;
}

/* Doubles the record ring, keeping the records in order. */
static int pair_ring_grow(struct pair_dir *d)
{
	struct pair_rec *ring;
	size_t cap, i;

	if (d->ring_cap > SIZE_MAX / 2 / sizeof(*ring))
		return -1;
	cap = d->ring_cap * 2;
	ring = calloc(cap, sizeof(*ring));
	if (ring == NULL)
		return -1;
	for (i = 0; i < d->ring_count; i++)
		ring[i] = d->ring[(d->ring_head + i) % d->ring_cap];
	free(d->ring);
	d->ring = ring;
	d->ring_cap = cap;
	d->ring_head = 0;
	return 0;
}

/* Puts len bytes into the delay line, due at due or with earlier bytes. */
static void pair_ring_push(struct pair_dir *d, size_t len, uint64_t due)
{
	struct pair_rec *tail;

	d->n_line += len;
	if (d->ring_count > 0) {
		tail = &d->ring[(d->ring_head + d->ring_count - 1) %
		    d->ring_cap];
		if (due < tail->due)
			due = tail->due;
		if (due - tail->due < PAIR_MERGE_NS ||
		    (d->ring_count == d->ring_cap && pair_ring_grow(d) == -1)) {
			tail->len += len;
			tail->due = due;
			return;
		}
	}
	d->ring[(d->ring_head + d->ring_count) % d->ring_cap] =
	    (struct pair_rec){ len, due };
	d->ring_count++;
}

/* Moves the bytes the token bucket allows from the queue to the delay line. */
static void pair_release(struct pair_dir *d, uint64_t now)
{
	size_t n;

	n = d->n_queue;
	if (n == 0)
		return;
	if (d->rate != 0) {
		pair_refill(d, now);
		if (d->tokens < (double)n)
			n = (size_t)d->tokens;
		if (n == 0)
			return;
		d->tokens -= (double)n;
	}
	d->n_queue -= n;
	if (d->delay == 0 && d->ring_count == 0)
		d->n_out += n;
	else
		pair_ring_push(d, n, now + d->delay);
}

/* Moves the bytes whose delay has passed from the delay line to the output. */
static void pair_arrive(struct pair_dir *d, uint64_t now)
{
	struct pair_rec *r;

	while (d->ring_count > 0) {
		r = &d->ring[d->ring_head];
		if (r->due > now)
			break;
		d->n_line -= r->len;
		d->n_out += r->len;
		d->ring_head = (d->ring_head + 1) % d->ring_cap;
		d->ring_count--;
	}
}

/* Writes due bytes to the destination; -1 if it is gone. */
static int pair_write(struct pair_dir *d)
{
	struct evbuffer_iovec vec[PAIR_IOV_MAX];
	struct iovec iov[PAIR_IOV_MAX];
	struct msghdr msg;
	size_t left, k;
	ssize_t w;
	int i, n;

	n = evbuffer_peek(d->buf, (ev_ssize_t)d->n_out, NULL, vec,
	    PAIR_IOV_MAX);
	if (n > PAIR_IOV_MAX)
		n = PAIR_IOV_MAX;
	left = d->n_out;
	k = 0;
	for (i = 0; i < n && left > 0; i++) {
		iov[k].iov_base = vec[i].iov_base;
		iov[k].iov_len = vec[i].iov_len < left ? vec[i].iov_len : left;
		left -= iov[k].iov_len;
		k++;
	}
	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = iov;
	msg.msg_iovlen = k;
	w = sendmsg(d->pair->fd[1 - d->src], &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (w < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ||
		    errno == EINTR ? 0 : -1;
	evbuffer_drain(d->buf, (size_t)w);
	d->n_out -= (size_t)w;
	d->forwarded += (uint64_t)w;
	return 0;
}

/* Adds or removes an event so that it is pending exactly when on is set. */
static void pair_set_event(struct event *ev, int *pending, int on)
{
	if (on && !*pending)
		event_add(ev, NULL);
	else if (!on && *pending)
		event_del(ev);
	*pending = on;
}

/* Arms a timerfd to expire at next (CLOCK_MONOTONIC ns); -1 on failure. */
static int pair_timerfd_set(int fd, uint64_t next)
{
#ifdef __linux__
	struct itimerspec its;

	memset(&its, 0, sizeof(its));
	its.it_value.tv_sec = (time_t)(next / PAIR_NS_PER_S);
	its.it_value.tv_nsec = (long)(next % PAIR_NS_PER_S);
	return timerfd_settime(fd, TFD_TIMER_ABSTIME, &its, NULL);
#else
	(void)fd;
	(void)next;
	return -1;
#endif
}

/* Makes a direction's timer fire at next (ns), or never if UINT64_MAX. */
static void pair_timer_set(struct pair_dir *d, uint64_t now, uint64_t next)
{
	struct timeval tv;
	uint64_t us;

	if (next == UINT64_MAX) {
		pair_set_event(d->timer, &d->timing, 0);
		return;
	}
	if (d->timer_fd != -1) {
		if (pair_timerfd_set(d->timer_fd, next) == 0)
			pair_set_event(d->timer, &d->timing, 1);
		else
			event_active(d->timer, EV_TIMEOUT, 0);
		return;
	}
	us = next > now ? (next - now + 999) / 1000 : 0;
	tv.tv_sec = (time_t)(us / 1000000);
	tv.tv_usec = (suseconds_t)(us % 1000000);
	event_base_update_cache_time(event_get_base(d->timer));
	evtimer_add(d->timer, &tv);
	d->timing = 1;
}

/* Stops all events of a direction. */
static void pair_dir_stop(struct pair_dir *d)
{
	pair_set_event(d->read_ev, &d->reading, 0);
	pair_set_event(d->write_ev, &d->writing, 0);
	pair_timer_set(d, 0, UINT64_MAX);
}

/* Drops everything a direction holds. */
static void pair_dir_drop(struct pair_dir *d)
{
	evbuffer_drain(d->buf, evbuffer_get_length(d->buf));
	d->n_out = d->n_line = d->n_queue = 0;
	d->ring_head = d->ring_count = 0;
}

/* Closes the relay's sockets and drops all held bytes. */
static void pair_close(struct agg_pair *p)
{
	int i;

	if (p->closed)
		return;
	p->closed = 1;
	for (i = 0; i < 2; i++) {
		pair_dir_stop(&p->dir[i]);
		pair_dir_drop(&p->dir[i]);
		p->dir[i].done = 1;
	}
	for (i = 0; i < 2; i++) {
		if (p->fd[i] != -1)
			evutil_closesocket(p->fd[i]);
		p->fd[i] = -1;
	}
}

/* Ends a direction; closes the relay once both have ended. */
static void pair_dir_end(struct pair_dir *d)
{
	struct agg_pair *p = d->pair;

	d->done = 1;
	pair_dir_stop(d);
	if (p->dir[0].done && p->dir[1].done)
		pair_close(p);
}

/* Arms the read, write and timer events a direction needs now. */
static void pair_arm(struct pair_dir *d, uint64_t now)
{
	struct agg_pair *p = d->pair;
	uint64_t next, wait;
	double want;

	pair_set_event(d->read_ev, &d->reading, !d->eof && pair_has_room(d));
	pair_set_event(d->write_ev, &d->writing, !p->stalled && d->n_out > 0);
	next = UINT64_MAX;
	if (!p->stalled) {
		if (d->ring_count > 0)
			next = d->ring[d->ring_head].due;
		if (d->n_queue > 0 && d->rate != 0) {
			want = (double)d->rate / 500.0;
			if (want > pair_burst(d))
				want = pair_burst(d);
			if (want > (double)d->n_queue)
				want = (double)d->n_queue;
			if (want < 1.0)
				want = 1.0;
			wait = 0;
			if (d->tokens < want)
				wait = (uint64_t)((want - d->tokens) *
				    PAIR_NS_PER_S / (double)d->rate) + 1;
			if (now + wait < next)
				next = now + wait;
		}
	}
	pair_timer_set(d, now, next);
}

/* Advances a direction's bytes as far as they may go; re-arms its events. */
static void pair_pump(struct pair_dir *d)
{
	struct agg_pair *p = d->pair;
	uint64_t now;

	if (p->closed || d->done)
		return;
	now = pair_now();
	if (!p->stalled) {
		pair_release(d, now);
		pair_arrive(d, now);
		if (d->n_out > 0 && pair_write(d) == -1) {
			pair_dir_drop(d);
			d->eof = 1;
			shutdown(p->fd[d->src], SHUT_RD);
			pair_dir_end(d);
			return;
		}
		if (d->eof && evbuffer_get_length(d->buf) == 0) {
			shutdown(p->fd[1 - d->src], SHUT_WR);
			pair_dir_end(d);
			return;
		}
	}
	pair_arm(d, now);
}

/* Reads what the source has, within the direction's queue limit. */
static void pair_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pair_dir *d = arg;
	struct evbuffer_iovec vec[2];
	struct iovec iov[2];
	size_t left, got;
	ssize_t n;
	int i, k, nvec;

	(void)what;
	for (i = 0; i < PAIR_READS_PER_CB && !d->eof && pair_has_room(d);
	    i++) {
		nvec = evbuffer_reserve_space(d->buf, PAIR_READ_CHUNK, vec, 2);
		if (nvec <= 0)
			break;
		left = PAIR_READ_CHUNK;
		for (k = 0; k < nvec; k++) {
			iov[k].iov_base = vec[k].iov_base;
			iov[k].iov_len = vec[k].iov_len < left ?
			    vec[k].iov_len : left;
			left -= iov[k].iov_len;
		}
		n = readv(fd, iov, nvec);
		if (n == 0 || (n < 0 && errno != EAGAIN &&
		    errno != EWOULDBLOCK && errno != EINTR)) {
			d->eof = 1;
			break;
		}
		if (n < 0)
			break;
		left = (size_t)n;
		for (k = 0; k < nvec && left > 0; k++) {
			vec[k].iov_len = iov[k].iov_len < left ?
			    iov[k].iov_len : left;
			left -= vec[k].iov_len;
		}
		evbuffer_commit_space(d->buf, vec, k);
		got = (size_t)n;
		d->n_queue += got;
		if (got < PAIR_READ_CHUNK)
			break;
	}
	pair_pump(d);
}

/* The destination has room again. */
static void pair_write_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	pair_pump(arg);
}

/* Tokens or delayed bytes have come due. */
static void pair_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pair_dir *d = arg;
	uint64_t expirations;

	if (what & EV_READ) {
		if (read(fd, &expirations, sizeof(expirations)) < 0 &&
		    errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			pair_set_event(d->timer, &d->timing, 0);
	} else if (d->timer_fd == -1) {
		d->timing = 0;
	}
	pair_pump(d);
}

/* Pumps both directions after a setting changed. */
static void pair_pump_both(struct agg_pair *p)
{
	pair_pump(&p->dir[0]);
	pair_pump(&p->dir[1]);
}

/* Makes a socket non-blocking, close-on-exec, with modest buffers. */
static int pair_prepare_socket(evutil_socket_t fd)
{
	int size = PAIR_SOCKBUF;

	if (evutil_make_socket_nonblocking(fd) == -1 ||
	    evutil_make_socket_closeonexec(fd) == -1)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	return 0;
}

/* Sets up direction i's buffer, ring and events. */
static int pair_dir_init(struct agg_pair *p, struct event_base *base, int i)
{
	struct pair_dir *d = &p->dir[i];

	d->pair = p;
	d->src = i;
	d->buf = evbuffer_new();
	d->ring = calloc(PAIR_RING_INIT, sizeof(*d->ring));
	d->ring_cap = PAIR_RING_INIT;
	d->read_ev = event_new(base, p->fd[i], EV_READ | EV_PERSIST,
	    pair_read_cb, d);
	d->write_ev = event_new(base, p->fd[1 - i], EV_WRITE | EV_PERSIST,
	    pair_write_cb, d);
	d->timer_fd = -1;
#ifdef __linux__
	d->timer_fd = timerfd_create(CLOCK_MONOTONIC,
	    TFD_NONBLOCK | TFD_CLOEXEC);
#endif
	if (d->timer_fd != -1)
		d->timer = event_new(base, d->timer_fd, EV_READ | EV_PERSIST,
		    pair_timer_cb, d);
	else
		d->timer = evtimer_new(base, pair_timer_cb, d);
	if (d->buf == NULL || d->ring == NULL || d->read_ev == NULL ||
	    d->write_ev == NULL || d->timer == NULL)
		return -1;
	return 0;
}

/* Creates a shaped pair; *a and *b receive the app-side bufferevents. */
struct agg_pair *agg_pair_new(struct event_base *base, struct bufferevent **a,
    struct bufferevent **b)
{
	struct agg_pair *p;
	evutil_socket_t sa[2] = { -1, -1 }, sb[2] = { -1, -1 };
	int i;

	*a = *b = NULL;
	p = calloc(1, sizeof(*p));
	if (p == NULL)
		return NULL;
	p->fd[0] = p->fd[1] = -1;
	p->dir[0].timer_fd = p->dir[1].timer_fd = -1;
	if (evutil_socketpair(AF_UNIX, SOCK_STREAM, 0, sa) == -1)
		goto fail;
	p->fd[0] = sa[1];
	if (evutil_socketpair(AF_UNIX, SOCK_STREAM, 0, sb) == -1)
		goto fail;
	p->fd[1] = sb[1];
	if (pair_prepare_socket(sa[0]) == -1 ||
	    pair_prepare_socket(sa[1]) == -1 ||
	    pair_prepare_socket(sb[0]) == -1 ||
	    pair_prepare_socket(sb[1]) == -1)
		goto fail;
	for (i = 0; i < 2; i++)
		if (pair_dir_init(p, base, i) == -1)
			goto fail;
	*a = bufferevent_socket_new(base, sa[0], BEV_OPT_CLOSE_ON_FREE);
	if (*a == NULL)
		goto fail;
	sa[0] = -1;
	*b = bufferevent_socket_new(base, sb[0], BEV_OPT_CLOSE_ON_FREE);
	if (*b == NULL)
		goto fail;
	sb[0] = -1;
	pair_pump_both(p);
	return p;
fail:
	if (*a != NULL)
		bufferevent_free(*a);
	*a = NULL;
	if (sa[0] != -1)
		evutil_closesocket(sa[0]);
	if (sb[0] != -1)
		evutil_closesocket(sb[0]);
	agg_pair_free(p);
	return NULL;
}

/* Sets the rate of each direction, 0 for unlimited. */
void agg_pair_set_rate(struct agg_pair *p, uint64_t a_to_b, uint64_t b_to_a)
{
	uint64_t rate[2] = { a_to_b, b_to_a }, now;
	struct pair_dir *d;
	int i;

	now = pair_now();
	for (i = 0; i < 2; i++) {
		d = &p->dir[i];
		pair_refill(d, now);
		if (d->rate == 0)
			d->tokens = (double)rate[i];
		d->rate = rate[i];
		d->token_time = now;
		pair_refill(d, now);
	}
	pair_pump_both(p);
}

/* Sets the one-way delay of each direction in microseconds. */
void agg_pair_set_delay(struct agg_pair *p, uint32_t a_to_b_us,
    uint32_t b_to_a_us)
{
	p->dir[0].delay = (uint64_t)a_to_b_us * 1000;
	p->dir[1].delay = (uint64_t)b_to_a_us * 1000;
	pair_pump_both(p);
}

/* Sets the per-direction queue limit, 0 for the default. */
void agg_pair_set_queue_limit(struct agg_pair *p, size_t bytes)
{
	p->queue_limit = bytes;
	pair_pump_both(p);
}

/* Stalls or resumes both directions. */
void agg_pair_set_stall(struct agg_pair *p, int stalled)
{
	p->stalled = stalled != 0;
	pair_pump_both(p);
}

/* Kills the link: both ends see EOF or an error. */
void agg_pair_cut(struct agg_pair *p)
{
	pair_close(p);
}

/* Bytes written to the far end so far in a direction. */
uint64_t agg_pair_forwarded(const struct agg_pair *p, int a_to_b)
{
	return p->dir[a_to_b ? 0 : 1].forwarded;
}

/* Bytes the relay holds in a direction. */
size_t agg_pair_queued(const struct agg_pair *p, int a_to_b)
{
	return evbuffer_get_length(p->dir[a_to_b ? 0 : 1].buf);
}

/* Frees the relay and closes its sockets. */
void agg_pair_free(struct agg_pair *p)
{
	struct pair_dir *d;
	int i;

	if (p == NULL)
		return;
	for (i = 0; i < 2; i++) {
		d = &p->dir[i];
		if (d->read_ev != NULL)
			event_free(d->read_ev);
		if (d->write_ev != NULL)
			event_free(d->write_ev);
		if (d->timer != NULL)
			event_free(d->timer);
		d->read_ev = d->write_ev = d->timer = NULL;
		if (d->timer_fd != -1)
			close(d->timer_fd);
		d->timer_fd = -1;
	}
	for (i = 0; i < 2; i++)
		if (p->fd[i] != -1)
			evutil_closesocket(p->fd[i]);
	for (i = 0; i < 2; i++) {
		d = &p->dir[i];
		if (d->buf != NULL)
			evbuffer_free(d->buf);
		free(d->ring);
	}
	free(p);
}
