/*
 * speedtest.c: agg-client --speed-test. Phases: wait until every link the
 * link set dials is up (or a few seconds after the first), upload for the
 * given seconds, wait for the server's count of checked bytes, download
 * for the given seconds, print the result, end the program. Each link's
 * share comes from its payload counters (agg_session_get_link_stats()),
 * sampled once a second and kept by link name, so a link that is closed
 * and dialled again keeps what it carried.
 */
#include "speedtest.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/util.h>

#include "agg/dump.h"
#include "agg/log.h"
#include "agg/session.h"
#include "agg/speedtest.h"
#include "client.h"

/* Links followed, at most. */
#define SPEEDTEST_MAX_LINKS 64
/* Bytes generated at a time for the upload. */
#define SPEEDTEST_CHUNK (64u * 1024u)
/* After the first link is up, wait at most this for the others. */
#define SPEEDTEST_GATHER_MS 3000u
/* Give up when no link is up within this. */
#define SPEEDTEST_START_MS 15000u
/* The server's count after the upload must come within this. */
#define SPEEDTEST_REPLY_MS 15000u
#define SPEEDTEST_POLL_MS 100u

enum speedtest_phase {
	SPEEDTEST_WAIT,
	SPEEDTEST_UPLOAD,
	SPEEDTEST_UPLOAD_END,   /* FIN sent, waiting for the server's count */
	SPEEDTEST_DOWNLOAD,
	SPEEDTEST_DONE,
};

/* What one link (by name) carried. */
struct speedtest_link {
	char name[64];
	uint32_t id;             /* the instance last seen */
	uint64_t last_tx, last_rx;
	uint64_t second;         /* bytes in the current second */
	uint64_t up, down;       /* bytes in the upload / download phase */
};

struct speedtest {
	struct client *c;
	unsigned seconds;
	int json;
	enum speedtest_phase phase;
	struct event *timer;
	uint64_t start_ms, first_up_ms, phase_start_ms;
	unsigned ticks;

	struct agg_stream *stream;
	struct evbuffer *out;
	uint64_t seed;
	uint64_t sent;
	uint8_t reply[8];
	size_t reply_len;
	struct agg_speedtest_verifier verifier;

	double upload_s, download_s;
	uint64_t uploaded, downloaded;
	struct speedtest_link links[SPEEDTEST_MAX_LINKS];
	size_t nlinks;
};

static void speedtest_download_start(struct speedtest *t);

/* Monotonic clock in milliseconds. */
static uint64_t speedtest_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Arms the timer for ms milliseconds. */
static void speedtest_timer(struct speedtest *t, unsigned ms)
{
	struct timeval tv = { (time_t)(ms / 1000u),
	    (suseconds_t)(ms % 1000u) * 1000 };

	evtimer_add(t->timer, &tv);
}

/* Ends the test with a failure. */
static void speedtest_fail(struct speedtest *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Ends the test with a failure: exit status 1 and one line. */
static void speedtest_fail(struct speedtest *t, const char *fmt, ...)
{
	char why[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	t->phase = SPEEDTEST_DONE;
	event_del(t->timer);
	if (t->stream != NULL)
		agg_stream_free(t->stream);
	t->stream = NULL;
	client_exit(t->c, 1, "speed test: %s", why);
}

/* Samples every link's payload counters into its second. */
static void speedtest_sample(struct speedtest *t)
{
	struct agg_link_stats ls[SPEEDTEST_MAX_LINKS];
	struct agg_session *s = client_session(t->c);
	struct speedtest_link *l;
	size_t i, j, n;

	if (s == NULL)
		return;
	n = agg_session_get_link_stats(s, ls, SPEEDTEST_MAX_LINKS);
	if (n > SPEEDTEST_MAX_LINKS)
		n = SPEEDTEST_MAX_LINKS;
	for (i = 0; i < n; i++) {
		for (j = 0; j < t->nlinks; j++)
			if (strcmp(t->links[j].name, ls[i].name) == 0)
				break;
		if (j == t->nlinks) {
			if (t->nlinks == SPEEDTEST_MAX_LINKS)
				continue;
			l = &t->links[t->nlinks++];
			snprintf(l->name, sizeof(l->name), "%s", ls[i].name);
			l->id = ls[i].id;
			l->last_tx = ls[i].tx_payload;
			l->last_rx = ls[i].rx_payload;
			continue;
		}
		l = &t->links[j];
		if (l->id != ls[i].id) {
			/* Dialled again: a new counter from zero. */
			l->id = ls[i].id;
			l->last_tx = 0;
			l->last_rx = 0;
		}
		l->second += t->phase == SPEEDTEST_DOWNLOAD ?
		    ls[i].rx_payload - l->last_rx :
		    ls[i].tx_payload - l->last_tx;
		l->last_tx = ls[i].tx_payload;
		l->last_rx = ls[i].rx_payload;
	}
}

/* Prints a rate in Mbit/s. */
static void speedtest_print_rate(double bps)
{
	printf("%9.1f Mbit/s", bps / 1e6);
}

/* A second is over: adds each link's bytes to its phase total and prints
 * the line (not with --json). */
static void speedtest_second(struct speedtest *t, const char *what)
{
	uint64_t total = 0;
	size_t i;

	speedtest_sample(t);
	for (i = 0; i < t->nlinks; i++)
		total += t->links[i].second;
	if (!t->json) {
		printf("%-8s %3u s ", what, t->ticks);
		speedtest_print_rate((double)total * 8);
		for (i = 0; i < t->nlinks; i++)
			printf("  %s %3.0f%%", t->links[i].name, total == 0 ?
			    0.0 : 100.0 * (double)t->links[i].second /
			    (double)total);
		printf("\n");
		fflush(stdout);
	}
	for (i = 0; i < t->nlinks; i++) {
		if (t->phase == SPEEDTEST_DOWNLOAD)
			t->links[i].down += t->links[i].second;
		else
			t->links[i].up += t->links[i].second;
		t->links[i].second = 0;
	}
}

/* Upload: hands the stream as much of the seed's stream as it takes. */
static void speedtest_pump(struct speedtest *t)
{
	struct evbuffer_iovec iov;
	size_t len, moved;

	while (t->phase == SPEEDTEST_UPLOAD &&
	    agg_stream_write_space(t->stream) > 0) {
		if ((len = evbuffer_get_length(t->out)) == 0) {
			if (evbuffer_reserve_space(t->out, SPEEDTEST_CHUNK,
			    &iov, 1) != 1)
				return;
			agg_speedtest_fill(t->seed, t->sent, iov.iov_base,
			    SPEEDTEST_CHUNK);
			iov.iov_len = SPEEDTEST_CHUNK;
			evbuffer_commit_space(t->out, &iov, 1);
			len = SPEEDTEST_CHUNK;
		}
		moved = agg_stream_write(t->stream, t->out, len);
		t->sent += moved;
		if (moved == 0)
			return;
	}
}

/* The server's answer to a speed-test stream. */
static void speedtest_result_cb(struct agg_stream *st, int code,
    const char *message, void *arg)
{
	struct speedtest *t = arg;
	size_t i;

	(void)st;
	if (code != AGG_OK) {
		t->stream = NULL;
		speedtest_fail(t, "the server refused it (code %d: %s); is it "
		    "an agg-server with the speed test?", code, message);
		return;
	}
	t->phase_start_ms = speedtest_now_ms();
	t->ticks = 0;
	speedtest_sample(t);
	for (i = 0; i < t->nlinks; i++)
		t->links[i].second = 0;
	speedtest_timer(t, 1000);
	if (t->phase == SPEEDTEST_UPLOAD)
		speedtest_pump(t);
}

/* Bytes from the server: the upload's count, or download data. */
static void speedtest_readable_cb(struct agg_stream *st, void *arg)
{
	struct speedtest *t = arg;
	struct evbuffer *in = agg_stream_input(st);
	struct evbuffer_iovec iov[16];
	size_t total;
	int i, n;

	if (t->phase == SPEEDTEST_UPLOAD || t->phase == SPEEDTEST_UPLOAD_END) {
		n = (int)evbuffer_remove(in, t->reply + t->reply_len,
		    sizeof(t->reply) - t->reply_len);
		if (n > 0)
			t->reply_len += (size_t)n;
		evbuffer_drain(in, evbuffer_get_length(in));
		return;
	}
	while (t->phase == SPEEDTEST_DOWNLOAD && evbuffer_get_length(in) > 0) {
		n = evbuffer_peek(in, -1, NULL, iov, 16);
		if (n > 16)
			n = 16;
		total = 0;
		for (i = 0; i < n; i++) {
			if (agg_speedtest_verify(&t->verifier, iov[i].iov_base,
			    iov[i].iov_len) != 0) {
				speedtest_fail(t, "download corrupted at byte "
				    "%" PRIu64 " (expected 0x%02x, got 0x%02x)",
				    t->verifier.bad_offset,
				    t->verifier.expected, t->verifier.got);
				return;
			}
			total += iov[i].iov_len;
		}
		evbuffer_drain(in, total);
	}
}

/* The server ended its side: after an upload, its count is complete. */
static void speedtest_eof_cb(struct agg_stream *st, void *arg)
{
	struct speedtest *t = arg;
	uint64_t checked;

	if (t->phase != SPEEDTEST_UPLOAD_END) {
		speedtest_fail(t, "the server ended the %s early",
		    t->phase == SPEEDTEST_DOWNLOAD ? "download" : "upload");
		return;
	}
	if (t->reply_len != sizeof(t->reply)) {
		speedtest_fail(t, "the server's upload count is %zu bytes "
		    "long, not 8", t->reply_len);
		return;
	}
	checked = agg_speedtest_get_seed(t->reply);
	if (checked != t->sent) {
		speedtest_fail(t, "the server checked %" PRIu64 " bytes of "
		    "the %" PRIu64 " uploaded", checked, t->sent);
		return;
	}
	t->uploaded = checked;
	t->upload_s = (double)(speedtest_now_ms() - t->phase_start_ms) / 1e3;
	agg_stream_free(st);
	t->stream = NULL;
	event_del(t->timer);
	speedtest_second(t, "upload");
	speedtest_download_start(t);
}

/* Room for more upload data. */
static void speedtest_writable_cb(struct agg_stream *st, void *arg)
{
	(void)st;
	speedtest_pump(arg);
}

/* The stream failed: reset by the server (e.g. corrupt upload) or lost. */
static void speedtest_closed_cb(struct agg_stream *st, int code,
    const char *reason, void *arg)
{
	struct speedtest *t = arg;

	(void)code;
	agg_stream_free(st);
	t->stream = NULL;
	speedtest_fail(t, "%s failed: %s", t->phase == SPEEDTEST_DOWNLOAD ?
	    "download" : "upload", reason);
}

static const struct agg_stream_callbacks speedtest_stream_cbs = {
	.result = speedtest_result_cb,
	.readable = speedtest_readable_cb,
	.eof = speedtest_eof_cb,
	.writable = speedtest_writable_cb,
	.closed = speedtest_closed_cb,
};

/* Opens the stream of a phase and sends its seed. */
static int speedtest_open(struct speedtest *t, int kind)
{
	struct agg_target target;
	uint8_t hdr[AGG_SPEEDTEST_SEED_LEN];
	char err[256];

	agg_speedtest_target(&target, kind);
	evutil_secure_rng_get_bytes(&t->seed, sizeof(t->seed));
	t->stream = client_open_stream(t->c, &target, &speedtest_stream_cbs, t,
	    err, sizeof(err));
	if (t->stream == NULL) {
		speedtest_fail(t, "%s", err);
		return -1;
	}
	agg_speedtest_put_seed(t->seed, hdr);
	evbuffer_drain(t->out, evbuffer_get_length(t->out));
	evbuffer_add(t->out, hdr, sizeof(hdr));
	agg_stream_write(t->stream, t->out, sizeof(hdr));
	t->sent = 0;
	return 0;
}

/* Starts the download phase. */
static void speedtest_download_start(struct speedtest *t)
{
	t->phase = SPEEDTEST_DOWNLOAD;
	if (speedtest_open(t, AGG_SPEEDTEST_DOWNLOAD) == 0)
		agg_speedtest_verifier_init(&t->verifier, t->seed);
}

/* Splits a link name "IFACE[@SOURCE]->REMOTE" into its parts. */
static void speedtest_split_name(const char *name, char *iface,
    size_t ifacelen, char *remote, size_t remotelen)
{
	const char *arrow = strstr(name, "->");
	size_t n = arrow != NULL ? (size_t)(arrow - name) : strlen(name);
	const char *at = memchr(name, '@', n);

	if (at != NULL)
		n = (size_t)(at - name);
	snprintf(iface, ifacelen, "%.*s", (int)n, name);
	snprintf(remote, remotelen, "%s", arrow != NULL ? arrow + 2 : "");
}

/* Prints the result and ends the program. */
static void speedtest_report(struct speedtest *t)
{
	struct evbuffer *j = evbuffer_new();
	double up_bps = t->upload_s > 0 ? (double)t->uploaded * 8 /
	    t->upload_s : 0, down_bps = t->download_s > 0 ?
	    (double)t->downloaded * 8 / t->download_s : 0;
	char iface[64], remote[64];
	size_t i;

	t->phase = SPEEDTEST_DONE;
	if (!t->json) {
		printf("upload:   ");
		speedtest_print_rate(up_bps);
		printf("  (%" PRIu64 " bytes in %.1f s, checked by the "
		    "server)\ndownload: ", t->uploaded, t->upload_s);
		speedtest_print_rate(down_bps);
		printf("  (%" PRIu64 " bytes in %.1f s, checked here)\n",
		    t->downloaded, t->download_s);
		for (i = 0; i < t->nlinks; i++) {
			printf("  %-40s up ", t->links[i].name);
			speedtest_print_rate((double)t->links[i].up * 8 /
			    t->upload_s);
			printf("  down ");
			speedtest_print_rate((double)t->links[i].down * 8 /
			    t->download_s);
			printf("\n");
		}
		fflush(stdout);
		client_exit(t->c, 0, "speed test done");
		evbuffer_free(j);
		return;
	}
	if (j == NULL) {
		client_exit(t->c, 1, "out of memory");
		return;
	}
	evbuffer_add_printf(j, "{\"upload_bps\": %.0f, \"download_bps\": %.0f, "
	    "\"seconds\": %u, \"links\": [", up_bps, down_bps, t->seconds);
	for (i = 0; i < t->nlinks; i++) {
		speedtest_split_name(t->links[i].name, iface, sizeof(iface),
		    remote, sizeof(remote));
		evbuffer_add_printf(j, "%s{\"name\": ", i > 0 ? ", " : "");
		agg_json_string(j, t->links[i].name);
		evbuffer_add_printf(j, ", \"interface\": ");
		agg_json_string(j, iface);
		evbuffer_add_printf(j, ", \"remote\": ");
		agg_json_string(j, remote);
		evbuffer_add_printf(j, ", \"upload_bps\": %.0f, "
		    "\"download_bps\": %.0f}", (double)t->links[i].up * 8 /
		    t->upload_s, (double)t->links[i].down * 8 / t->download_s);
	}
	evbuffer_add_printf(j, "]}\n");
	fwrite(evbuffer_pullup(j, -1), 1, evbuffer_get_length(j), stdout);
	fflush(stdout);
	evbuffer_free(j);
	client_exit(t->c, 0, "speed test done");
}

/* The timer: waits for links, then counts the seconds of each phase. */
static void speedtest_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct speedtest *t = arg;
	uint64_t now = speedtest_now_ms();
	size_t up = client_links_up(t->c), wanted = client_links_wanted(t->c);

	(void)fd;
	(void)what;
	switch (t->phase) {
	case SPEEDTEST_WAIT:
		if (up > 0 && t->first_up_ms == 0)
			t->first_up_ms = now;
		if (up > 0 && (up >= wanted ||
		    now - t->first_up_ms >= SPEEDTEST_GATHER_MS)) {
			agg_log_info("speed test over %zu of %zu links", up,
			    wanted);
			t->phase = SPEEDTEST_UPLOAD;
			speedtest_open(t, AGG_SPEEDTEST_UPLOAD);
			return;
		}
		if (up == 0 && now - t->start_ms >= SPEEDTEST_START_MS) {
			speedtest_fail(t, "no link came up: %s",
			    client_link_error(t->c));
			return;
		}
		speedtest_timer(t, SPEEDTEST_POLL_MS);
		return;
	case SPEEDTEST_UPLOAD:
		t->ticks++;
		if (t->ticks < t->seconds) {
			speedtest_second(t, "upload");
			speedtest_timer(t, 1000);
			return;
		}
		/* The last second ends when the server has counted. */
		t->phase = SPEEDTEST_UPLOAD_END;
		agg_stream_shutdown(t->stream);
		speedtest_timer(t, SPEEDTEST_REPLY_MS);
		return;
	case SPEEDTEST_UPLOAD_END:
		speedtest_fail(t, "no upload count from the server within "
		    "%u s", SPEEDTEST_REPLY_MS / 1000);
		return;
	case SPEEDTEST_DOWNLOAD:
		t->ticks++;
		t->downloaded = t->verifier.offset;
		speedtest_second(t, "download");
		if (t->ticks < t->seconds) {
			speedtest_timer(t, 1000);
			return;
		}
		t->download_s = (double)(now - t->phase_start_ms) / 1e3;
		agg_stream_free(t->stream);
		t->stream = NULL;
		speedtest_report(t);
		return;
	case SPEEDTEST_DONE:
		return;
	}
}

/* Starts the test. */
struct speedtest *speedtest_new(struct client *c, unsigned seconds, int json)
{
	struct speedtest *t;

	if ((t = calloc(1, sizeof(*t))) == NULL)
		return NULL;
	t->c = c;
	t->seconds = seconds;
	t->json = json;
	t->start_ms = speedtest_now_ms();
	t->out = evbuffer_new();
	t->timer = evtimer_new(client_base(c), speedtest_timer_cb, t);
	if (t->out == NULL || t->timer == NULL) {
		speedtest_free(t);
		return NULL;
	}
	speedtest_timer(t, SPEEDTEST_POLL_MS);
	return t;
}

/* Stops the test and frees it. */
void speedtest_free(struct speedtest *t)
{
	if (t == NULL)
		return;
	if (t->stream != NULL)
		agg_stream_free(t->stream);
	if (t->timer != NULL)
		event_free(t->timer);
	if (t->out != NULL)
		evbuffer_free(t->out);
	free(t);
}
