/*
 * dump.c: the analysis dump, JSON Lines of session and link statistics
 * written every AGG_DUMP_INTERVAL_MS.
 */
#include "agg/dump.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "agg/log.h"
#include "internal.h"

/* Links described per record; a session holds at most this many. */
#define DUMP_MAX_LINKS 64

struct agg_dump {
	FILE *file;
	struct event *timer;
	struct evbuffer *line;
	agg_dump_collect_fn collect;
	void *arg;
	char program[32];
	uint64_t start_us;
	int failed;              /* a write failed: stop writing */
};

/* The state's name. */
const char *agg_link_state_name(enum agg_link_state state)
{
	switch (state) {
	case AGG_LINK_HANDSHAKE: return "handshake";
	case AGG_LINK_UP: return "up";
	case AGG_LINK_STALLED: return "stalled";
	case AGG_LINK_CLOSED: return "closed";
	}
	return "unknown";
}

/* Appends s as a JSON string. */
void agg_json_string(struct evbuffer *out, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	evbuffer_add(out, "\"", 1);
	for (; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			evbuffer_add_printf(out, "\\%c", *p);
		else if (*p < 0x20 || *p == 0x7f)
			evbuffer_add_printf(out, "\\u%04x", *p);
		else
			evbuffer_add(out, p, 1);
	}
	evbuffer_add(out, "\"", 1);
}

/* Appends one link's statistics as a JSON object. */
static void dump_link_json(struct evbuffer *out,
    const struct agg_link_stats *l, uint64_t now_us)
{
	uint64_t since = now_us > l->state_since_us ?
	    now_us - l->state_since_us : 0;

	evbuffer_add_printf(out, "{\"id\":%" PRIu32 ",\"name\":", l->id);
	agg_json_string(out, l->name);
	evbuffer_add_printf(out, ",\"state\":\"%s\",\"reason\":",
	    agg_link_state_name(l->state));
	agg_json_string(out, l->reason);
	evbuffer_add_printf(out, ",\"state_for_s\":%.3f"
	    ",\"tx_bytes\":%" PRIu64 ",\"rx_bytes\":%" PRIu64
	    ",\"tx_payload\":%" PRIu64 ",\"rx_payload\":%" PRIu64
	    ",\"tx_bps\":%" PRIu64 ",\"rx_bps\":%" PRIu64
	    ",\"delivery_bps\":%" PRIu64
	    ",\"srtt_us\":%" PRIu32 ",\"rttvar_us\":%" PRIu32
	    ",\"rtt_min_us\":%" PRIu32
	    ",\"inflight_bytes\":%" PRIu64 ",\"cap_bytes\":%" PRIu64
	    ",\"queued_bytes\":%" PRIu64 ",\"resent_frames\":%" PRIu64 "}",
	    (double)since / 1e6, l->tx_bytes, l->rx_bytes, l->tx_payload,
	    l->rx_payload, l->tx_rate_bps, l->rx_rate_bps,
	    l->delivery_rate_bps, l->srtt_us, l->rttvar_us, l->rtt_min_us,
	    l->inflight_bytes, l->cap_bytes, l->queued_bytes,
	    l->resent_frames);
}

/* Appends the JSON object of one session. */
void agg_dump_session_json(struct evbuffer *out, const struct agg_session *s,
    const char *program, double t_s)
{
	struct agg_session_stats st;
	struct agg_link_stats links[DUMP_MAX_LINKS];
	struct timespec wall;
	size_t i, n;
	uint64_t now_us = agg_now_us();

	clock_gettime(CLOCK_REALTIME, &wall);
	agg_session_get_stats(s, &st);
	n = agg_session_get_link_stats(s, links, DUMP_MAX_LINKS);
	if (n > DUMP_MAX_LINKS)
		n = DUMP_MAX_LINKS;
	evbuffer_add_printf(out, "{\"t\":%.3f,\"time\":%lld.%03ld,"
	    "\"program\":", t_s, (long long)wall.tv_sec,
	    wall.tv_nsec / 1000000);
	agg_json_string(out, program);
	evbuffer_add_printf(out, ",\"session\":\"%s\",\"closed\":%s"
	    ",\"links_total\":%zu,\"links_up\":%zu,\"streams\":%zu"
	    ",\"tx_payload\":%" PRIu64 ",\"rx_payload\":%" PRIu64
	    ",\"tx_bps\":%" PRIu64 ",\"rx_bps\":%" PRIu64
	    ",\"unacked_bytes\":%" PRIu64 ",\"buffered_bytes\":%" PRIu64
	    ",\"resent_frames\":%" PRIu64 ",\"duplicate_frames\":%" PRIu64
	    ",\"links\":[", st.id, st.closed ? "true" : "false", st.links,
	    st.links_up, st.streams, st.tx_payload, st.rx_payload,
	    st.tx_rate_bps, st.rx_rate_bps, st.unacked_bytes,
	    st.buffered_bytes, st.resent_frames, st.duplicate_frames);
	for (i = 0; i < n; i++) {
		if (i > 0)
			evbuffer_add(out, ",", 1);
		dump_link_json(out, &links[i], now_us);
	}
	evbuffer_add(out, "]}", 2);
}

/* Writes one record for session. */
void agg_dump_session(struct agg_dump *d, const struct agg_session *s)
{
	size_t len;

	if (d->failed)
		return;
	agg_dump_session_json(d->line, s, d->program,
	    (double)(agg_now_us() - d->start_us) / 1e6);
	evbuffer_add(d->line, "\n", 1);
	len = evbuffer_get_length(d->line);
	if (fwrite(evbuffer_pullup(d->line, -1), 1, len, d->file) != len) {
		agg_log_warn("dump: write failed: %s; dump stopped",
		    strerror(errno));
		d->failed = 1;
	}
	evbuffer_drain(d->line, len);
}

/* The interval: one record per session, then flush. */
static void dump_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct agg_dump *d = arg;

	(void)fd;
	(void)what;
	d->collect(d, d->arg);
	if (!d->failed && fflush(d->file) != 0) {
		agg_log_warn("dump: write failed: %s; dump stopped",
		    strerror(errno));
		d->failed = 1;
	}
}

/* Opens the dump file and starts the timer. */
struct agg_dump *agg_dump_open(struct event_base *base, const char *path,
    const char *program, agg_dump_collect_fn collect, void *arg, char *err,
    size_t errlen)
{
	struct timeval tv = { 0, AGG_DUMP_INTERVAL_MS * 1000 };
	struct agg_dump *d;

	if ((d = calloc(1, sizeof(*d))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	d->collect = collect;
	d->arg = arg;
	d->start_us = agg_now_us();
	snprintf(d->program, sizeof(d->program), "%s", program);
	if ((d->file = fopen(path, "w")) == NULL) {
		snprintf(err, errlen, "cannot write dump file %.300s: %s",
		    path, strerror(errno));
		free(d);
		return NULL;
	}
	d->line = evbuffer_new();
	d->timer = event_new(base, -1, EV_PERSIST, dump_timer_cb, d);
	if (d->line == NULL || d->timer == NULL ||
	    event_add(d->timer, &tv) != 0) {
		snprintf(err, errlen, "out of memory");
		agg_dump_close(d);
		return NULL;
	}
	return d;
}

/* Writes a last record set, closes the file and frees the dump. */
void agg_dump_close(struct agg_dump *d)
{
	if (d == NULL)
		return;
	if (d->timer != NULL) {
		d->collect(d, d->arg);
		event_free(d->timer);
	}
	if (d->line != NULL)
		evbuffer_free(d->line);
	if (fclose(d->file) != 0 && !d->failed)
		agg_log_warn("dump: closing failed: %s", strerror(errno));
	free(d);
}
