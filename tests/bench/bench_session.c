/*
 * bench_session.c: throughput, CPU cost and idle-stream memory of libagg,
 * with a client session and a server hub in this one process and event loop,
 * joined by in-process links (transports/pair.h). The relay of those links
 * runs in the same process, so its CPU is measured too; the "pair relay
 * only" row moves the same bytes through one bare pair without agg, and the
 * "app only" row makes and checks the bytes without moving them, so the
 * cost of each layer shows as a difference between rows.
 *
 * Run it standalone (bench_session --help) or through
 * `meson test -C build --benchmark -v`.
 */
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "agg/session.h"
#include "agg/target.h"
#include "harness.h"
#include "pair.h"

#define KEY "bench secret"
#define KIB ((uint64_t)1024)
#define MIB (KIB * 1024)
#define GIB (MIB * 1024)
#define GB 1e9
#define MAX_SOURCE_MIB 65535u
#define MAX_IDLE_STREAMS 1000u
#define GEN_CHUNK 16384u
#define RELAY_OUTPUT_MAX (256 * 1024)
#define MEMORY_GOAL 8192.0
#define SHAPED_FAST_RATE 40000000u
#define SHAPED_SLOW_RATE 10000000u
#define SHAPED_FAST_DELAY_US 1000u
#define SHAPED_SLOW_DELAY_US 5000u

/* What to run, from the command line. */
struct options {
	uint64_t bytes;          /* per throughput run, a whole number of MiB */
	uint64_t shaped_bytes;
	unsigned streams;
	unsigned repeat;
	bool verify;
	bool fast_source;        /* make bytes by memcpy, not byte by byte */
	bool run_app, run_relay, run_agg1, run_agg4, run_idle, run_shaped;
};

/* The pattern twice over, so any window of up to a period is contiguous. */
static uint8_t pattern2[2 * PATTERN_PERIOD];

/* Wall time and process CPU time at one instant. */
struct stamp {
	double wall;
	double cpu;
};

/* One row of the throughput table. */
struct result {
	char name[64];
	uint64_t bytes;
	double seconds;
	double cpu;
	bool ok;
	char note[320];
};

/* Receiving end of a measured transfer, agg or bare. */
struct sink {
	uint64_t want;
	uint64_t received;
	uint64_t bad_offset;     /* first mismatching offset + 1, 0 if none */
	bool verify;
	bool done;
	bool failed;
	char why[256];
};

/* The bare relay run: its writer and its reader's sink. */
struct relay {
	struct bufferevent *bev;  /* the writer's end */
	uint64_t to_send;
	uint64_t sent;
	bool fast;
	struct sink sink;
};

/* The server's end of a download when --fast-source replaces the
 * harness's "source". */
struct fast_source {
	struct agg_stream *stream;
	struct evbuffer *tmp;
	uint64_t to_send;
	uint64_t sent;
	bool fin_sent;
};

/* State of one agg download. */
struct download {
	struct agg_stream *stream;
	struct sink sink;
	struct fast_source src;
};

/* State of the idle-stream run: answers awaited and received. */
struct idle {
	unsigned want;
	unsigned ok;
	unsigned failed;
};

/* The throughput scenarios, in table order. */
enum scenario {
	SCENARIO_APP,
	SCENARIO_RELAY,
	SCENARIO_AGG1,
	SCENARIO_AGG4,
	SCENARIO_SHAPED,
};

/* Set when a scenario failed: the exit status is then nonzero. */
static bool failures;

/* Seconds on the monotonic clock. */
static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Wall time and user + system CPU time of the process, now. */
static struct stamp stamp_now(void)
{
	struct rusage ru;
	struct stamp s;

	getrusage(RUSAGE_SELF, &ru);
	s.wall = now_s();
	s.cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	    (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
	return s;
}

/* Fills the doubled pattern table from the harness's pattern. */
static void pattern2_init(void)
{
	size_t i;

	for (i = 0; i < PATTERN_PERIOD; i++)
		pattern2[i] = pattern2[i + PATTERN_PERIOD] = pattern_byte(i);
}

/* Makes n pattern bytes at offset off: memcpy, or per byte as the harness. */
static void pattern_make(uint8_t *buf, uint64_t off, size_t n, bool fast)
{
	size_t i;

	if (fast) {
		memcpy(buf, pattern2 + off % PATTERN_PERIOD, n);
		return;
	}
	for (i = 0; i < n; i++)
		buf[i] = pattern2[(off + i) % PATTERN_PERIOD];
}

/* Checks len bytes at offset off: first bad offset + 1, or 0 if all match. */
static uint64_t pattern_check(const uint8_t *p, uint64_t off, size_t len)
{
	size_t done = 0, n, j;
	uint64_t o;

	while (done < len) {
		o = (off + done) % PATTERN_PERIOD;
		n = len - done;
		if (n > PATTERN_PERIOD)
			n = PATTERN_PERIOD;
		if (memcmp(p + done, pattern2 + o, n) != 0) {
			for (j = 0; p[done + j] == pattern2[o + j]; j++)
				;
			return off + done + j + 1;
		}
		done += n;
	}
	return 0;
}

/* Takes everything in buf: checks it (unless told not to) and drains it. */
static void sink_take(struct sink *k, struct evbuffer *buf)
{
	struct evbuffer_iovec v[16];
	size_t len, i;
	uint64_t bad;
	int n;

	if (!k->verify) {
		len = evbuffer_get_length(buf);
		k->received += len;
		evbuffer_drain(buf, len);
		return;
	}
	while ((len = evbuffer_get_length(buf)) > 0) {
		n = evbuffer_peek(buf, (ev_ssize_t)len, NULL, v, 16);
		if (n > 16)
			n = 16;
		len = 0;
		for (i = 0; i < (size_t)n; i++) {
			if (k->bad_offset == 0) {
				bad = pattern_check(v[i].iov_base,
				    k->received + len, v[i].iov_len);
				if (bad != 0)
					k->bad_offset = bad;
			}
			len += v[i].iov_len;
		}
		evbuffer_drain(buf, len);
		k->received += len;
	}
}

/* Timer of bench_until: only wakes the loop so the predicate is checked. */
static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

/* Runs base until done(arg) (checked every iteration) or seconds pass. */
static bool bench_until(struct event_base *base, bool (*done)(void *),
    void *arg, double seconds)
{
	struct timeval tv = { 0, 50000 };
	struct event *tick;
	double deadline = now_s() + seconds;
	bool ok = true;

	tick = event_new(base, -1, EV_PERSIST, tick_cb, NULL);
	event_add(tick, &tv);
	while (!done(arg)) {
		if (now_s() > deadline) {
			ok = false;
			break;
		}
		event_base_loop(base, EVLOOP_ONCE);
	}
	event_free(tick);
	return ok;
}

/* Runs base for about the given time. */
static void bench_sleep(struct event_base *base, double seconds)
{
	struct timeval tv;

	tv.tv_sec = (time_t)seconds;
	tv.tv_usec = (suseconds_t)((seconds - (double)tv.tv_sec) * 1e6);
	event_base_loopexit(base, &tv);
	event_base_loop(base, 0);
}

/* Predicate: a sink finished or failed. */
static bool sink_finished(void *arg)
{
	const struct sink *k = arg;

	return k->done || k->failed;
}

/* Predicate: every link of the harness is up on both ends. */
static bool links_up(void *arg)
{
	struct harness *h = arg;

	return h->server != NULL &&
	    agg_session_links_up(h->client) == h->npairs &&
	    agg_session_links_up(h->server) == h->npairs;
}

/* Heap bytes in use (malloc arenas plus mmapped blocks). */
static uint64_t heap_in_use(void)
{
	struct mallinfo2 mi = mallinfo2();

	return (uint64_t)mi.uordblks + (uint64_t)mi.hblkhd;
}

/* Formats a byte count as "1.0 GiB", "64.0 MiB" and so on. */
static const char *fmt_bytes(uint64_t n, char *buf, size_t cap)
{
	if (n >= GIB)
		snprintf(buf, cap, "%.1f GiB", (double)n / (double)GIB);
	else if (n >= MIB)
		snprintf(buf, cap, "%.1f MiB", (double)n / (double)MIB);
	else
		snprintf(buf, cap, "%.1f KiB", (double)n / (double)KIB);
	return buf;
}

/* Prints the table header. */
static void print_header(void)
{
	printf("%-32s %10s %8s %8s %9s %5s\n", "scenario", "bytes", "seconds",
	    "Gbit/s", "cpu-s/GB", "cpu%");
}

/* Prints one row of the table (and its note, if any). */
static void print_row(const struct result *r)
{
	char b[32];

	if (!r->ok) {
		printf("%-32s %10s FAILED: %s\n", r->name,
		    fmt_bytes(r->bytes, b, sizeof(b)), r->note);
		fflush(stdout);
		return;
	}
	printf("%-32s %10s %8.3f %8.3f %9.3f %5.0f\n", r->name,
	    fmt_bytes(r->bytes, b, sizeof(b)), r->seconds,
	    (double)r->bytes * 8 / r->seconds / 1e9,
	    r->cpu / ((double)r->bytes / GB), 100.0 * r->cpu / r->seconds);
	if (r->note[0] != '\0')
		printf("%-32s %s\n", "", r->note);
	fflush(stdout);
}

/* Copies a sink's verdict into a result. */
static void sink_verdict(const struct sink *k, bool finished,
    struct result *r)
{
	r->ok = false;
	if (!finished)
		snprintf(r->note, sizeof(r->note), "timed out after %" PRIu64
		    " of %" PRIu64 " bytes", k->received, k->want);
	else if (k->failed)
		snprintf(r->note, sizeof(r->note), "%s", k->why);
	else if (k->bad_offset != 0)
		snprintf(r->note, sizeof(r->note), "data mismatch at offset %"
		    PRIu64, k->bad_offset - 1);
	else if (k->received != k->want)
		snprintf(r->note, sizeof(r->note), "got %" PRIu64 " of %"
		    PRIu64 " bytes", k->received, k->want);
	else
		r->ok = true;
	if (!r->ok)
		failures = true;
}

/* Makes and checks the bytes without moving them: the applications' cost. */
static void run_app(const struct options *o, struct result *r)
{
	uint8_t buf[GEN_CHUNK];
	struct stamp t0, t1;
	uint64_t off, bad = 0;
	size_t n;

	t0 = stamp_now();
	for (off = 0; off < o->bytes; off += n) {
		n = o->bytes - off < GEN_CHUNK ? (size_t)(o->bytes - off) :
		    GEN_CHUNK;
		pattern_make(buf, off, n, o->fast_source);
		if (o->verify && bad == 0)
			bad = pattern_check(buf, off, n);
	}
	t1 = stamp_now();
	snprintf(r->name, sizeof(r->name), "app only (make%s, no I/O)",
	    o->verify ? " + check" : "");
	r->bytes = o->bytes;
	r->seconds = t1.wall - t0.wall;
	r->cpu = t1.cpu - t0.cpu;
	r->ok = bad == 0;
	if (!r->ok) {
		snprintf(r->note, sizeof(r->note), "self-check failed");
		failures = true;
	}
}

/* Bare relay: fills the writer's output up to RELAY_OUTPUT_MAX. */
static void relay_fill(struct relay *w)
{
	struct evbuffer *out = bufferevent_get_output(w->bev);
	uint8_t buf[GEN_CHUNK];
	size_t n;

	while (w->sent < w->to_send &&
	    evbuffer_get_length(out) < RELAY_OUTPUT_MAX) {
		n = w->to_send - w->sent < GEN_CHUNK ?
		    (size_t)(w->to_send - w->sent) : GEN_CHUNK;
		pattern_make(buf, w->sent, n, w->fast);
		evbuffer_add(out, buf, n);
		w->sent += n;
	}
}

/* Bare relay: the writer's output drained below its low-water mark. */
static void relay_write_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	relay_fill(arg);
}

/* Bare relay: bytes arrived at the reader. */
static void relay_read_cb(struct bufferevent *bev, void *arg)
{
	struct sink *k = &((struct relay *)arg)->sink;

	sink_take(k, bufferevent_get_input(bev));
	if (k->received >= k->want)
		k->done = true;
}

/* Bare relay: EOF or error on either end. */
static void relay_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct sink *k = &((struct relay *)arg)->sink;

	(void)bev;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		k->failed = true;
		snprintf(k->why, sizeof(k->why), "relay end closed (0x%x)",
		    (unsigned)what);
	}
}

/* The same bytes through one bare pair: a writer and a reader, no agg. */
static void run_relay(const struct options *o, struct result *r)
{
	struct event_base *base = event_base_new();
	struct bufferevent *a, *b;
	struct agg_pair *p = agg_pair_new(base, &a, &b);
	struct relay w;
	struct stamp t0, t1;
	bool finished;

	memset(&w, 0, sizeof(w));
	w.bev = b;
	w.to_send = o->bytes;
	w.fast = o->fast_source;
	w.sink.want = o->bytes;
	w.sink.verify = o->verify;
	bufferevent_setcb(a, relay_read_cb, NULL, relay_event_cb, &w);
	bufferevent_setcb(b, NULL, relay_write_cb, relay_event_cb, &w);
	bufferevent_setwatermark(b, EV_WRITE, RELAY_OUTPUT_MAX / 2, 0);
	bufferevent_enable(a, EV_READ);
	t0 = stamp_now();
	relay_fill(&w);
	finished = bench_until(base, sink_finished, &w.sink, 300);
	t1 = stamp_now();
	snprintf(r->name, sizeof(r->name), "pair relay only, 1 link");
	r->bytes = o->bytes;
	r->seconds = t1.wall - t0.wall;
	r->cpu = t1.cpu - t0.cpu;
	sink_verdict(&w.sink, finished, r);
	bufferevent_free(a);
	bufferevent_free(b);
	agg_pair_free(p);
	event_base_free(base);
}

/* Download stream: the server's answer to OPEN. */
static void dl_result_cb(struct agg_stream *st, int code, const char *message,
    void *arg)
{
	struct download *d = arg;

	(void)st;
	if (code != AGG_OK) {
		d->sink.failed = true;
		snprintf(d->sink.why, sizeof(d->sink.why),
		    "open refused (%d): %s", code, message);
	}
}

/* Download stream: new in-order bytes. */
static void dl_readable_cb(struct agg_stream *st, void *arg)
{
	struct download *d = arg;

	sink_take(&d->sink, agg_stream_input(st));
}

/* Download stream: the source's FIN. */
static void dl_eof_cb(struct agg_stream *st, void *arg)
{
	struct download *d = arg;

	sink_take(&d->sink, agg_stream_input(st));
	d->sink.done = true;
}

/* Download stream: failure. */
static void dl_closed_cb(struct agg_stream *st, int code, const char *reason,
    void *arg)
{
	struct download *d = arg;

	(void)st;
	d->sink.failed = true;
	snprintf(d->sink.why, sizeof(d->sink.why), "stream closed (%d): %s",
	    code, reason);
}

static const struct agg_stream_callbacks dl_cbs = {
	.result = dl_result_cb,
	.readable = dl_readable_cb,
	.eof = dl_eof_cb,
	.closed = dl_closed_cb,
};

/* Fast source: writes what the stream takes by memcpy; FIN at the end. */
static void src_pump(struct fast_source *f)
{
	size_t space, n;

	while (f->sent < f->to_send &&
	    (space = agg_stream_write_space(f->stream)) > 0) {
		n = space < GEN_CHUNK ? space : GEN_CHUNK;
		if (n > f->to_send - f->sent)
			n = (size_t)(f->to_send - f->sent);
		evbuffer_add(f->tmp, pattern2 + f->sent % PATTERN_PERIOD, n);
		f->sent += agg_stream_write(f->stream, f->tmp, n);
		evbuffer_drain(f->tmp, evbuffer_get_length(f->tmp));
	}
	if (f->sent == f->to_send && !f->fin_sent) {
		f->fin_sent = true;
		agg_stream_shutdown(f->stream);
	}
}

/* Fast source stream: room to write again. */
static void src_writable_cb(struct agg_stream *st, void *arg)
{
	(void)st;
	src_pump(arg);
}

static const struct agg_stream_callbacks src_cbs = {
	.writable = src_writable_cb,
};

/* Server with --fast-source: serves "source:N" itself, refuses the rest. */
static void src_stream_opened_cb(struct agg_session *s, struct agg_stream *st,
    const struct agg_target *t, void *arg)
{
	struct download *d = arg;

	(void)s;
	if (t->type != AGG_ADDR_NAME || strcmp(t->addr.name, "source") != 0 ||
	    d->src.stream != NULL) {
		agg_stream_refuse(st, AGG_ERR_REFUSED, "not a source");
		return;
	}
	d->src.stream = st;
	d->src.to_send = (uint64_t)t->port * MIB;
	agg_stream_accept(st, &src_cbs, &d->src);
	src_pump(&d->src);
}

static const struct agg_session_callbacks src_session_cbs = {
	.stream_opened = src_stream_opened_cb,
};

/* Shapes the harness's links 0 and 1: fast and slow, both directions. */
static void shape_links(struct harness *h)
{
	agg_pair_set_rate(h->pairs[0], SHAPED_FAST_RATE, SHAPED_FAST_RATE);
	agg_pair_set_delay(h->pairs[0], SHAPED_FAST_DELAY_US,
	    SHAPED_FAST_DELAY_US);
	agg_pair_set_rate(h->pairs[1], SHAPED_SLOW_RATE, SHAPED_SLOW_RATE);
	agg_pair_set_delay(h->pairs[1], SHAPED_SLOW_DELAY_US,
	    SHAPED_SLOW_DELAY_US);
}

/* Downloads bytes from "source" over nlinks links, timed from OPEN to FIN. */
static void run_agg(const struct options *o, size_t nlinks, bool shaped,
    uint64_t bytes, struct result *r)
{
	struct harness *h = harness_new(nlinks, NULL, KEY, KEY);
	struct download d;
	struct agg_target t;
	struct stamp t0, t1;
	char target[32];
	bool finished;
	size_t i;

	memset(&d, 0, sizeof(d));
	d.sink.want = bytes;
	d.sink.verify = o->verify;
	r->bytes = bytes;
	if (shaped) {
		snprintf(r->name, sizeof(r->name), "agg, 2 shaped links");
		shape_links(h);
	} else {
		snprintf(r->name, sizeof(r->name), "agg, %zu link%s", nlinks,
		    nlinks == 1 ? "" : "s");
	}
	if (!bench_until(h->base, links_up, h, 10)) {
		r->ok = false;
		snprintf(r->note, sizeof(r->note), "links did not come up");
		failures = true;
		harness_free(h);
		return;
	}
	if (o->fast_source) {
		d.src.tmp = evbuffer_new();
		agg_session_set_callbacks(h->server, &src_session_cbs, &d);
	}
	snprintf(target, sizeof(target), "source:%" PRIu64, bytes / MIB);
	agg_target_parse(target, &t);
	t0 = stamp_now();
	d.stream = agg_session_open_stream(h->client, &t, &dl_cbs, &d);
	finished = d.stream != NULL &&
	    bench_until(h->base, sink_finished, &d.sink, 300);
	t1 = stamp_now();
	r->seconds = t1.wall - t0.wall;
	r->cpu = t1.cpu - t0.cpu;
	sink_verdict(&d.sink, finished, r);
	if (d.stream == NULL)
		snprintf(r->note, sizeof(r->note), "could not open a stream");
	if (r->ok && shaped) {
		double sum = (double)SHAPED_FAST_RATE + SHAPED_SLOW_RATE;
		double rate = (double)bytes / r->seconds;
		uint64_t l0 = harness_link_payload(h, 0);
		uint64_t l1 = harness_link_payload(h, 1);
		double tot = (double)(l0 + l1);

		snprintf(r->note, sizeof(r->note), "%.1f MB/s = %.0f%% of "
		    "%.0f+%.0f MB/s; payload split %.0f%%/%.0f%% (rates "
		    "%.0f%%/%.0f%%)", rate / 1e6, 100.0 * rate / sum,
		    SHAPED_FAST_RATE / 1e6, SHAPED_SLOW_RATE / 1e6,
		    tot > 0 ? 100.0 * (double)l0 / tot : 0.0,
		    tot > 0 ? 100.0 * (double)l1 / tot : 0.0,
		    100.0 * SHAPED_FAST_RATE / sum,
		    100.0 * SHAPED_SLOW_RATE / sum);
	} else if (r->ok && nlinks > 1) {
		int len = 0;

		len += snprintf(r->note + len, sizeof(r->note) - (size_t)len,
		    "payload per link (MiB):");
		for (i = 0; i < nlinks && len < (int)sizeof(r->note); i++)
			len += snprintf(r->note + len,
			    sizeof(r->note) - (size_t)len, " %.1f",
			    (double)harness_link_payload(h, i) / (double)MIB);
	}
	if (d.stream != NULL)
		agg_stream_free(d.stream);
	harness_free(h);
	if (d.src.tmp != NULL)
		evbuffer_free(d.src.tmp);
}

/* Idle stream: the server's answer to OPEN. */
static void idle_result_cb(struct agg_stream *st, int code,
    const char *message, void *arg)
{
	struct idle *w = arg;

	(void)st;
	(void)message;
	if (code == AGG_OK)
		w->ok++;
	else
		w->failed++;
}

static const struct agg_stream_callbacks idle_cbs = {
	.result = idle_result_cb,
};

/* Predicate: every idle stream got its answer. */
static bool idle_answered(void *arg)
{
	const struct idle *w = arg;

	return w->ok + w->failed >= w->want;
}

/* Opens streams [from, to) to "echo" and waits for all their answers. */
static bool idle_open(struct harness *h, struct agg_stream **streams,
    unsigned from, unsigned to, struct idle *w)
{
	struct agg_target t;
	unsigned i;

	agg_target_parse("echo:1", &t);
	w->want = to;
	for (i = from; i < to; i++) {
		streams[i] = agg_session_open_stream(h->client, &t, &idle_cbs,
		    w);
		if (streams[i] == NULL) {
			printf("idle stream memory: FAILED: could not open "
			    "stream %u\n", i);
			return false;
		}
	}
	if (!bench_until(h->base, idle_answered, w, 60) || w->failed > 0) {
		printf("idle stream memory: FAILED: %u answered ok, %u "
		    "refused, of %u\n", w->ok, w->failed, to);
		return false;
	}
	/* Let the acks of the RESULTs and OPENs come back. */
	bench_sleep(h->base, 0.2);
	return true;
}

/* Measures the heap growth per idle stream, both ends (one process). */
static void run_idle(const struct options *o)
{
	struct harness *h = harness_new(1, NULL, KEY, KEY);
	struct agg_stream **streams = calloc(o->streams, sizeof(*streams));
	struct agg_session_stats cs, ss;
	unsigned half = o->streams / 2, i;
	uint64_t m0, m1, m2;
	struct idle w;
	double total, marginal;

	memset(&w, 0, sizeof(w));
	if (!bench_until(h->base, links_up, h, 10)) {
		printf("idle stream memory: FAILED: link did not come up\n");
		failures = true;
		goto out;
	}
	bench_sleep(h->base, 0.2);
	m0 = heap_in_use();
	if (!idle_open(h, streams, 0, half, &w)) {
		failures = true;
		goto out;
	}
	m1 = heap_in_use();
	if (!idle_open(h, streams, half, o->streams, &w)) {
		failures = true;
		goto out;
	}
	m2 = heap_in_use();
	agg_session_get_stats(h->client, &cs);
	agg_session_get_stats(h->server, &ss);
	if (m2 <= m0) {
		printf("idle stream memory: not measurable: mallinfo2() saw no "
		    "growth (malloc replaced, e.g. by a sanitizer?)\n");
		goto out;
	}
	total = ((double)m2 - (double)m0) / o->streams;
	marginal = ((double)m2 - (double)m1) / (o->streams - half);
	printf("idle stream memory: %.0f bytes/stream (%u streams, both ends, "
	    "goal <= %.0f: %s)\n", total, o->streams, MEMORY_GOAL,
	    total <= MEMORY_GOAL ? "met" : "MISSED");
	printf("  heap growth %.1f KiB in total; the last %u streams alone: "
	    "%.0f bytes/stream\n", ((double)m2 - (double)m0) / KIB,
	    o->streams - half, marginal);
	printf("  open streams: client %zu, server %zu\n", cs.streams,
	    ss.streams);
out:
	for (i = 0; i < o->streams; i++)
		if (streams[i] != NULL)
			agg_stream_free(streams[i]);
	free(streams);
	harness_free(h);
}

/* Runs one throughput scenario repeat times; keeps the fastest run. */
static void run_best(const struct options *o, enum scenario which,
    struct result *best)
{
	struct result r;
	unsigned i;

	for (i = 0; i < o->repeat; i++) {
		memset(&r, 0, sizeof(r));
		switch (which) {
		case SCENARIO_APP:
			run_app(o, &r);
			break;
		case SCENARIO_RELAY:
			run_relay(o, &r);
			break;
		case SCENARIO_AGG1:
			run_agg(o, 1, false, o->bytes, &r);
			break;
		case SCENARIO_AGG4:
			run_agg(o, 4, false, o->bytes, &r);
			break;
		case SCENARIO_SHAPED:
			run_agg(o, 2, true, o->shaped_bytes, &r);
			break;
		}
		if (i == 0 || !r.ok || (best->ok && r.seconds < best->seconds))
			*best = r;
		if (!r.ok)
			break;
	}
	print_row(best);
}

/* Parses a byte count with an optional K, M or G (binary) suffix. */
static bool parse_bytes(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || end == s)
		return false;
	switch (*end) {
	case 'k':
	case 'K':
		v *= KIB;
		end++;
		break;
	case 'm':
	case 'M':
		v *= MIB;
		end++;
		break;
	case 'g':
	case 'G':
		v *= GIB;
		end++;
		break;
	default:
		break;
	}
	if (*end == 'i' && end[1] == 'B')
		end += 2;
	else if (*end == 'B')
		end++;
	if (*end != '\0')
		return false;
	*out = v;
	return true;
}

/* Rounds a byte count up to whole MiB, within what "source:N" can send. */
static bool whole_mib(uint64_t *bytes, const char *what)
{
	uint64_t mib = (*bytes + MIB - 1) / MIB;

	if (mib == 0 || mib > MAX_SOURCE_MIB) {
		fprintf(stderr, "%s must be 1 MiB to %u MiB (the source's size "
		    "is a 16-bit count of MiB)\n", what, MAX_SOURCE_MIB);
		return false;
	}
	*bytes = mib * MIB;
	return true;
}

/* Prints the usage. */
static void usage(FILE *f)
{
	fprintf(f,
	    "usage: bench_session [options]\n"
	    "  --bytes N         bytes per throughput run (default 1G;\n"
	    "                    K, M, G suffixes; rounded up to MiB)\n"
	    "  --shaped-bytes N  bytes over 2 shaped links (default 128M)\n"
	    "  --streams N       idle streams (default and max %u)\n"
	    "  --repeat N        run each throughput scenario N times,\n"
	    "                    keep the fastest (default 1)\n"
	    "  --no-verify       drain received bytes without checking\n"
	    "  --fast-source     make the bytes by memcpy in a source of\n"
	    "                    this program, not in the harness's\n"
	    "                    \"source\" (a table lookup per byte)\n"
	    "  --only LIST       comma-separated subset of: app, relay,\n"
	    "                    agg1, agg4, idle, shaped (default: all)\n",
	    MAX_IDLE_STREAMS);
}

/* Selects the scenarios named in a comma-separated list. */
static bool parse_only(const char *list, struct options *o)
{
	char buf[256], *tok, *save = NULL;

	o->run_app = o->run_relay = o->run_agg1 = o->run_agg4 = false;
	o->run_idle = o->run_shaped = false;
	snprintf(buf, sizeof(buf), "%s", list);
	for (tok = strtok_r(buf, ",", &save); tok != NULL;
	    tok = strtok_r(NULL, ",", &save)) {
		if (strcmp(tok, "app") == 0)
			o->run_app = true;
		else if (strcmp(tok, "relay") == 0)
			o->run_relay = true;
		else if (strcmp(tok, "agg1") == 0)
			o->run_agg1 = true;
		else if (strcmp(tok, "agg4") == 0)
			o->run_agg4 = true;
		else if (strcmp(tok, "idle") == 0)
			o->run_idle = true;
		else if (strcmp(tok, "shaped") == 0)
			o->run_shaped = true;
		else
			return false;
	}
	return true;
}

/* Parses the command line into o; false on a bad option. */
static bool parse_args(int argc, char **argv, struct options *o)
{
	unsigned long v;
	int i;

	memset(o, 0, sizeof(*o));
	o->bytes = GIB;
	o->shaped_bytes = 128 * MIB;
	o->streams = MAX_IDLE_STREAMS;
	o->repeat = 1;
	o->verify = true;
	o->run_app = o->run_relay = o->run_agg1 = o->run_agg4 = true;
	o->run_idle = o->run_shaped = true;
	for (i = 1; i < argc; i++) {
		const char *arg = argv[i], *val = i + 1 < argc ? argv[i + 1] :
		    NULL;

		if (strcmp(arg, "--no-verify") == 0) {
			o->verify = false;
			continue;
		}
		if (strcmp(arg, "--fast-source") == 0) {
			o->fast_source = true;
			continue;
		}
		if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
			usage(stdout);
			exit(EXIT_SUCCESS);
		}
		if (val == NULL) {
			fprintf(stderr, "%s needs a value\n", arg);
			return false;
		}
		i++;
		if (strcmp(arg, "--bytes") == 0) {
			if (!parse_bytes(val, &o->bytes) ||
			    !whole_mib(&o->bytes, "--bytes"))
				return false;
		} else if (strcmp(arg, "--shaped-bytes") == 0) {
			if (!parse_bytes(val, &o->shaped_bytes) ||
			    !whole_mib(&o->shaped_bytes, "--shaped-bytes"))
				return false;
		} else if (strcmp(arg, "--streams") == 0 ||
		    strcmp(arg, "--repeat") == 0) {
			v = strtoul(val, NULL, 10);
			if (strcmp(arg, "--streams") == 0) {
				if (v < 2 || v > MAX_IDLE_STREAMS)
					return false;
				o->streams = (unsigned)v;
			} else {
				if (v < 1 || v > 100)
					return false;
				o->repeat = (unsigned)v;
			}
		} else if (strcmp(arg, "--only") == 0) {
			if (!parse_only(val, o)) {
				fprintf(stderr, "bad --only list: %s\n", val);
				return false;
			}
		} else {
			fprintf(stderr, "unknown option: %s\n", arg);
			return false;
		}
	}
	return true;
}

/* Prints what the rows say about each layer's cost. */
static void print_costs(const struct result *app, const struct result *relay,
    const struct result *agg1)
{
	double a, p, g;

	if (!app->ok || !relay->ok || !agg1->ok)
		return;
	a = app->cpu / ((double)app->bytes / GB);
	p = relay->cpu / ((double)relay->bytes / GB);
	g = agg1->cpu / ((double)agg1->bytes / GB);
	printf("cpu-s/GB by layer (1 link): applications %.3f, relay + "
	    "socket I/O %.3f, agg %.3f\n", a, p - a, g - p);
}

/* Parses the options, runs the scenarios and prints the table. */
int main(int argc, char **argv)
{
	struct result app, relay, agg1, agg4, shaped;
	struct options o;

	if (!parse_args(argc, argv, &o)) {
		usage(stderr);
		return 2;
	}
	memset(&app, 0, sizeof(app));
	memset(&relay, 0, sizeof(relay));
	memset(&agg1, 0, sizeof(agg1));
	pattern2_init();
	printf("one download stream, server \"source\" to client, both ends "
	    "and the relay in this process;\nsource: %s; %s;\nGB = 1e9 bytes; "
	    "cpu = process user + system time%s\n\n", o.fast_source ?
	    "memcpy (--fast-source)" : "harness (a table lookup per byte)",
	    o.verify ? "every byte checked" :
	    "bytes not checked (--no-verify)",
	    o.repeat > 1 ? "; fastest of the runs" : "");
	print_header();
	if (o.run_app)
		run_best(&o, SCENARIO_APP, &app);
	if (o.run_relay)
		run_best(&o, SCENARIO_RELAY, &relay);
	if (o.run_agg1)
		run_best(&o, SCENARIO_AGG1, &agg1);
	if (o.run_agg4)
		run_best(&o, SCENARIO_AGG4, &agg4);
	if (o.run_shaped)
		run_best(&o, SCENARIO_SHAPED, &shaped);
	printf("\n");
	print_costs(&app, &relay, &agg1);
	if (o.run_idle)
		run_idle(&o);
	if (failures) {
		printf("\nFAILED\n");
		return EXIT_FAILURE;
	}
	return EXIT_SUCCESS;
}
