/*
 * session.c: one session over many links. Sequencing, acks, the scheduler
 * that spreads frames over the links, resend of what a dead or stalled link
 * did not deliver, liveness, flow-control credit and the stream table.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "agg/bevio.h"
#include "agg/log.h"
#include "auth.h"

#define SESSION_SEG_POOL_MAX 1024
#define SESSION_SCHEDULE_BATCH 512
#define SESSION_FLUSH_ROUNDS 4       /* schedule-and-write rounds per pass */
#define SESSION_DEFAULT_RATE 12500000u /* bytes/s assumed before measuring */
#define SESSION_UNKNOWN_RTT_US 1000000u
/* ACK at once after this many reliable frames; fewer wait for the timer. */
#define SESSION_ACK_EVERY 4
#define SESSION_ACK_DELAY_US 1000
/* Control frames that may wait for a link: a few per stream (OPEN or
 * RESULT, CREDITs, RESET) plus slack. A peer that makes more pile up (it
 * opens streams or sends data but neither reads nor acks the answers)
 * gets its session closed. */
#define SESSION_CTRL_PER_STREAM 8
#define SESSION_CTRL_SLACK 1024

static void session_kick_cb(evutil_socket_t fd, short what, void *arg);
static void session_grace_cb(evutil_socket_t fd, short what, void *arg);
static void session_ack_timer_cb(evutil_socket_t fd, short what, void *arg);
static int session_on_reliable(struct agg_session *s, struct agg_link *link,
    const struct agg_frame *f);
static void session_queue_credit(struct agg_session *s, uint32_t stream,
    uint64_t limit);

/* Fills cfg with the defaults. */
void agg_config_init(struct agg_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->segment_size = 32768;
	cfg->session_window = 64u << 20;
	cfg->stream_window = 16u << 20;
	cfg->stream_send_buffer = 1u << 20;
	cfg->link_cap_min = 256u << 10;
	cfg->link_cap_max = 32u << 20;
	cfg->link_output_max = 256u << 10;
	cfg->stall_floor_ms = 200;
	cfg->idle_ping_ms = 1000;
	cfg->link_dead_ms = 15000;
	cfg->handshake_ms = 10000;
	cfg->grace_ms = 60000;
	cfg->max_streams = 4096;
	cfg->max_links = AGG_MAX_ACK_LINKS;
}

/* Clamps the configuration to what the wire format allows. */
static void session_config_sanitize(struct agg_config *cfg)
{
	if (cfg->segment_size == 0 || cfg->segment_size > AGG_DATA_MAX_PAYLOAD)
		cfg->segment_size = AGG_DATA_MAX_PAYLOAD;
	if (cfg->max_links == 0 || cfg->max_links > AGG_MAX_ACK_LINKS)
		cfg->max_links = AGG_MAX_ACK_LINKS;
	if (cfg->stream_window < cfg->segment_size)
		cfg->stream_window = cfg->segment_size;
	if (cfg->session_window < cfg->stream_window)
		cfg->session_window = cfg->stream_window;
	if (cfg->link_cap_min < cfg->segment_size)
		cfg->link_cap_min = cfg->segment_size;
	if (cfg->link_cap_max < cfg->link_cap_min)
		cfg->link_cap_max = cfg->link_cap_min;
	if (cfg->link_output_max < 2 * cfg->segment_size)
		cfg->link_output_max = 2 * cfg->segment_size;
	if (cfg->stall_floor_ms == 0)
		cfg->stall_floor_ms = 1;
	if (cfg->idle_ping_ms == 0)
		cfg->idle_ping_ms = 1000;
}

/* Creates a session; id NULL makes a fresh random one. */
struct agg_session *agg_session_new(struct event_base *base,
    const struct agg_config *cfg, const void *key, size_t key_len,
    enum agg_role role, const uint8_t id[AGG_SESSION_ID_LEN])
{
	struct agg_session *s;
	size_t i;

	if (key_len > AGG_KEY_MAX || (s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	s->base = base;
	s->cfg = *cfg;
	session_config_sanitize(&s->cfg);
	if (key_len > 0)
		memcpy(s->key, key, key_len);
	s->key_len = key_len;
	s->role = role;
	TAILQ_INIT(&s->links);
	TAILQ_INIT(&s->dead_links);
	TAILQ_INIT(&s->ctrl);
	TAILQ_INIT(&s->resend);
	TAILQ_INIT(&s->ready);
	TAILQ_INIT(&s->seg_pool);
	s->next_link_id = 1;
	s->next_stream_id = role == AGG_ROLE_CLIENT ? 1 : 2;
	s->nbuckets = 64;
	s->buckets = calloc(s->nbuckets, sizeof(*s->buckets));
	s->kick = event_new(base, -1, 0, session_kick_cb, s);
	s->grace = evtimer_new(base, session_grace_cb, s);
	s->ack_timer = evtimer_new(base, session_ack_timer_cb, s);
	if (s->buckets == NULL || s->kick == NULL || s->grace == NULL ||
	    s->ack_timer == NULL) {
		agg_session_free(s);
		return NULL;
	}
	if (id != NULL)
		memcpy(s->id, id, AGG_SESSION_ID_LEN);
	else
		agg_random_bytes(s->id, AGG_SESSION_ID_LEN);
	for (i = 0; i < AGG_SESSION_ID_LEN; i++)
		snprintf(s->id_hex + 2 * i, 3, "%02x", s->id[i]);
	/* The first reliable frame grants the peer its session credit. */
	s->rx_limit = s->cfg.session_window;
	session_queue_credit(s, 0, s->rx_limit);
	return s;
}

/* Creates a client session. */
struct agg_session *agg_session_new_client(struct event_base *base,
    const struct agg_config *cfg, const void *key, size_t key_len,
    const struct agg_session_callbacks *cbs, void *arg)
{
	struct agg_session *s;

	s = agg_session_new(base, cfg, key, key_len, AGG_ROLE_CLIENT, NULL);
	if (s != NULL)
		agg_session_set_callbacks(s, cbs, arg);
	return s;
}

/* Replaces the session's callbacks. */
void agg_session_set_callbacks(struct agg_session *s,
    const struct agg_session_callbacks *cbs, void *arg)
{
	s->cbs = cbs;
	s->arg = arg;
}

/* Whether the session has this id. */
int agg_session_has_id(const struct agg_session *s,
    const uint8_t id[AGG_SESSION_ID_LEN])
{
	return memcmp(s->id, id, AGG_SESSION_ID_LEN) == 0;
}

/* Hex session id. */
const char *agg_session_id_hex(const struct agg_session *s)
{
	return s->id_hex;
}

/* Whether the session is over. */
int agg_session_is_closed(const struct agg_session *s)
{
	return s->closed;
}

/* Number of links in state UP. */
size_t agg_session_links_up(const struct agg_session *s)
{
	const struct agg_link *link;
	size_t n = 0;

	TAILQ_FOREACH(link, &s->links, entry)
		if (link->state == AGG_LINK_UP)
			n++;
	return n;
}

/* Asks for a scheduling pass at the end of this loop iteration. */
void agg_session_kick(struct agg_session *s)
{
	if (s->kick != NULL)
		event_active(s->kick, 0, 0);
}

/* Takes a segment from the pool or allocates one. */
struct agg_seg *agg_session_seg_get(struct agg_session *s)
{
	struct agg_seg *seg = TAILQ_FIRST(&s->seg_pool);

	if (seg != NULL) {
		TAILQ_REMOVE(&s->seg_pool, seg, entry);
		s->seg_pool_len--;
		return seg;
	}
	if ((seg = calloc(1, sizeof(*seg))) == NULL)
		return NULL;
	if ((seg->body = evbuffer_new()) == NULL) {
		free(seg);
		return NULL;
	}
	return seg;
}

/* Returns a segment to the pool (or frees it when the pool is full). */
void agg_session_seg_put(struct agg_session *s, struct agg_seg *seg)
{
	if (s->seg_pool_len >= SESSION_SEG_POOL_MAX) {
		evbuffer_free(seg->body);
		free(seg);
		return;
	}
	evbuffer_drain(seg->body, evbuffer_get_length(seg->body));
	seg->link = NULL;
	TAILQ_INSERT_HEAD(&s->seg_pool, seg, entry);
	s->seg_pool_len++;
}

/* Frees every segment of a list. */
static void session_free_segs(struct agg_session *s, struct agg_seg_list *l)
{
	struct agg_seg *seg;

	while ((seg = TAILQ_FIRST(l)) != NULL) {
		TAILQ_REMOVE(l, seg, entry);
		if (seg->type == AGG_FRAME_DATA)
			s->unacked_bytes -= seg->len;
		agg_session_seg_put(s, seg);
	}
}

/* How many control frames may wait for a link. */
static size_t session_ctrl_cap(const struct agg_session *s)
{
	return (size_t)s->cfg.max_streams * SESSION_CTRL_PER_STREAM +
	    SESSION_CTRL_SLACK;
}

/* Queues a reliable control frame; its sequence number is taken now. */
void agg_session_queue_control(struct agg_session *s, struct agg_frame *f)
{
	uint8_t buf[AGG_FRAME_HEADER_LEN + 512];
	struct agg_seg *seg;
	size_t len;

	if (s->closed || s->restarting || s->ctrl_overflow)
		return;
	if (s->nctrl >= session_ctrl_cap(s)) {
		/* Closed from the loop: callers may be inside stream code. */
		s->ctrl_overflow = true;
		agg_session_kick(s);
		return;
	}
	if ((seg = agg_session_seg_get(s)) == NULL)
		return;
	f->seq = s->tx_seq;
	if ((len = agg_frame_encode(f, buf, sizeof(buf))) == 0) {
		agg_session_seg_put(s, seg);
		return;
	}
	s->tx_seq++;
	seg->seq = f->seq;
	seg->type = f->type;
	seg->flags = 0;
	seg->stream = f->stream;
	seg->offset = 0;
	seg->len = 0;
	seg->wire_len = (uint32_t)len;
	evbuffer_add(seg->body, buf, len);
	TAILQ_INSERT_TAIL(&s->ctrl, seg, entry);
	s->nctrl++;
	agg_session_kick(s);
}

/* Queues CREDIT(stream, limit). */
static void session_queue_credit(struct agg_session *s, uint32_t stream,
    uint64_t limit)
{
	struct agg_frame f;

	memset(&f, 0, sizeof(f));
	f.type = AGG_FRAME_CREDIT;
	f.stream = stream;
	f.value = limit;
	agg_session_queue_control(s, &f);
}

/* Grants more session credit once a quarter of the window is consumed. */
static void session_grant_credit(struct agg_session *s)
{
	uint64_t w = s->cfg.session_window;

	if (s->rx_limit - s->rx_consumed < w - w / 4) {
		s->rx_limit = s->rx_consumed + w;
		session_queue_credit(s, 0, s->rx_limit);
	}
}

/* Records that stream bytes were consumed (read, or discarded). */
void agg_session_consumed(struct agg_session *s, uint64_t n)
{
	s->rx_consumed += n;
	if (!s->closed)
		session_grant_credit(s);
}

/* Records that a stream's received high-water mark grew by n; -1 if that
 * exceeds the session credit. */
int agg_session_received(struct agg_session *s, uint64_t n)
{
	s->rx_received += n;
	return s->rx_received > s->rx_limit ? -1 : 0;
}

/* Stream table: bucket of an id. */
static size_t session_bucket(const struct agg_session *s, uint32_t id)
{
	return (size_t)((id * 2654435761u) % s->nbuckets);
}

/* Finds a stream by id. */
struct agg_stream *agg_session_stream_find(struct agg_session *s,
    uint32_t id)
{
	struct agg_stream *st;

	for (st = s->buckets[session_bucket(s, id)]; st; st = st->hash_next)
		if (st->id == id)
			return st;
	return NULL;
}

/* Doubles the stream table. */
static void session_grow_table(struct agg_session *s)
{
	struct agg_stream **old = s->buckets, *st, *next;
	size_t oldn = s->nbuckets, i, b;
	struct agg_stream **nb = calloc(oldn * 2, sizeof(*nb));

	if (nb == NULL)
		return;
	s->buckets = nb;
	s->nbuckets = oldn * 2;
	for (i = 0; i < oldn; i++) {
		for (st = old[i]; st != NULL; st = next) {
			next = st->hash_next;
			b = session_bucket(s, st->id);
			st->hash_next = nb[b];
			nb[b] = st;
		}
	}
	free(old);
}

/* Adds a stream to the table. */
void agg_session_stream_add(struct agg_session *s, struct agg_stream *st)
{
	size_t b;

	if (s->nstreams >= s->nbuckets)
		session_grow_table(s);
	b = session_bucket(s, st->id);
	st->hash_next = s->buckets[b];
	s->buckets[b] = st;
	s->nstreams++;
}

/* Removes a stream from the table and the ready list. */
void agg_session_stream_remove(struct agg_session *s, struct agg_stream *st)
{
	struct agg_stream **pp = &s->buckets[session_bucket(s, st->id)];

	for (; *pp != NULL; pp = &(*pp)->hash_next) {
		if (*pp == st) {
			*pp = st->hash_next;
			s->nstreams--;
			break;
		}
	}
	if (st->tx_ready) {
		TAILQ_REMOVE(&s->ready, st, ready_entry);
		st->tx_ready = false;
	}
}

/* Puts a stream on the ready list if it has something to send. */
void agg_session_stream_ready(struct agg_session *s, struct agg_stream *st)
{
	if (!st->tx_ready && agg_stream_wants_send(st)) {
		TAILQ_INSERT_TAIL(&s->ready, st, ready_entry);
		st->tx_ready = true;
		agg_session_kick(s);
	}
}

/* Whether a link id is already in use in this session. */
bool agg_session_link_id_used(const struct agg_session *s, uint32_t id)
{
	const struct agg_link *link;

	TAILQ_FOREACH(link, &s->links, entry)
		if (link->id == id)
			return true;
	return false;
}

/* Finds an attached link by id. */
static struct agg_link *session_link_find(struct agg_session *s, uint32_t id)
{
	struct agg_link *link;

	TAILQ_FOREACH(link, &s->links, entry)
		if (link->id == id && link->state != AGG_LINK_HANDSHAKE)
			return link;
	return NULL;
}

/* Client: adds a link on a connected bufferevent and starts its handshake. */
struct agg_link *agg_session_add_link(struct agg_session *s,
    struct bufferevent *bev, const char *name)
{
	struct agg_link *link;

	if (s->closed) {
		bufferevent_free(bev);
		return NULL;
	}
	link = agg_link_new(s->base, bev, AGG_ROLE_CLIENT, name,
	    s->cfg.handshake_ms);
	if (link == NULL) {
		bufferevent_free(bev);
		return NULL;
	}
	TAILQ_INSERT_TAIL(&s->links, link, entry);
	agg_link_start_client(link, s);
	return link;
}

/* Server: attaches an authenticated link to the session. */
void agg_session_attach(struct agg_session *s, struct agg_link *link)
{
	link->session = s;
	TAILQ_INSERT_TAIL(&s->links, link, entry);
	agg_session_link_up(s, link);
}

/* A link finished its handshake: it starts carrying frames. */
void agg_session_link_up(struct agg_session *s, struct agg_link *link)
{
	uint64_t now = agg_now_us();

	link->cap = s->cfg.link_cap_min;
	link->last_evidence_us = now;
	link->rate_start_us = now;
	s->nlinks++;
	evtimer_del(s->grace);
	bufferevent_setwatermark(link->bev, EV_WRITE,
	    s->cfg.link_output_max / 2, 0);
	evtimer_del(link->timer);
	agg_link_schedule_timer(link, (uint64_t)s->cfg.idle_ping_ms * 1000u);
	s->ack_pending = true;
	agg_link_set_state(link, AGG_LINK_UP, "joined");
	agg_session_kick(s);
}

/* Moves every unacked frame of a link to the resend queue. */
static void session_requeue(struct agg_session *s, struct agg_link *link)
{
	struct agg_seg *seg;

	while ((seg = TAILQ_FIRST(&link->inflight)) != NULL) {
		TAILQ_REMOVE(&link->inflight, seg, entry);
		if (seg->seq < s->peer_cum) {
			/* Delivered, says the cumulative ack. */
			if (seg->type == AGG_FRAME_DATA)
				s->unacked_bytes -= seg->len;
			agg_session_seg_put(s, seg);
			continue;
		}
		seg->link = NULL;
		TAILQ_INSERT_TAIL(&s->resend, seg, entry);
		link->resent_frames++;
		s->resent_frames++;
	}
	link->inflight_bytes = 0;
	/* ACKs we sent on this link may be lost with it: send them again. */
	s->ack_pending = true;
	agg_session_kick(s);
}

/* A link is closing: its frames move to the others. */
void agg_session_link_closed(struct agg_session *s, struct agg_link *link)
{
	if (link->state == AGG_LINK_UP || link->state == AGG_LINK_STALLED)
		s->nlinks--;
	session_requeue(s, link);
	TAILQ_REMOVE(&s->links, link, entry);
	TAILQ_INSERT_TAIL(&s->dead_links, link, entry);
	if (s->nlinks == 0 && !s->closed && !evtimer_pending(s->grace, NULL)) {
		struct timeval tv = { (time_t)(s->cfg.grace_ms / 1000),
		    (suseconds_t)(s->cfg.grace_ms % 1000) * 1000 };

		if (s->role == AGG_ROLE_SERVER || s->established)
			evtimer_add(s->grace, &tv);
	}
	agg_session_kick(s);
}

/* Resets every stream and the sequence state: the server lost the session. */
static void session_restart(struct agg_session *s, const char *reason)
{
	struct agg_link *link, *next;
	size_t i;

	agg_log_warn("session %s: %s; starting a new session", s->id_hex,
	    reason);
	/* No stream can be opened while the old ones fail: their frames
	 * would go out in the new session. */
	s->restarting = true;
	for (i = 0; i < s->nbuckets; i++) {
		struct agg_stream *st, *stnext;

		for (st = s->buckets[i]; st != NULL; st = stnext) {
			stnext = st->hash_next;
			agg_stream_fail(st, AGG_ERR_GENERAL, reason);
		}
	}
	s->restarting = false;
	/* Handshaking links carry the old id too. */
	TAILQ_FOREACH_SAFE(link, &s->links, entry, next)
		agg_link_close(link, reason);
	memset(s->early_resets, 0, sizeof(s->early_resets));
	session_free_segs(s, &s->ctrl);
	s->nctrl = 0;
	s->ctrl_overflow = false;
	session_free_segs(s, &s->resend);
	s->tx_seq = s->peer_cum = s->tx_sent = s->tx_limit = 0;
	s->rx_cum = s->rx_received = s->rx_consumed = 0;
	memset(s->rx_seen, 0, sizeof(s->rx_seen));
	s->established = false;
	agg_random_bytes(s->id, AGG_SESSION_ID_LEN);
	for (i = 0; i < AGG_SESSION_ID_LEN; i++)
		snprintf(s->id_hex + 2 * i, 3, "%02x", s->id[i]);
	s->rx_limit = s->cfg.session_window;
	session_queue_credit(s, 0, s->rx_limit);
}

/* Client: the server answered a link's handshake. */
void agg_session_link_welcome(struct agg_session *s, struct agg_link *link,
    uint8_t status)
{
	switch (status) {
	case AGG_WELCOME_OK:
		s->established = true;
		agg_session_link_up(s, link);
		return;
	case AGG_WELCOME_AUTH_FAILED:
		agg_link_close(link,
		    "authentication refused by server (wrong secret?)");
		return;
	case AGG_WELCOME_UNKNOWN_SESSION:
		agg_link_close(link, "server does not know this session");
		if (s->established)
			session_restart(s,
			    "the server lost the session (restarted?)");
		return;
	case AGG_WELCOME_LIMIT:
		agg_link_close(link, "server refused: session or link limit");
		return;
	default:
		agg_link_close(link, "server refused: duplicate link id");
		return;
	}
}

/* Takes an RTT sample into the link's estimates (RFC 6298 smoothing). */
static void session_rtt_sample(struct agg_link *link, uint64_t sample_us,
    uint64_t now)
{
	uint32_t r = sample_us > 60000000u ? 60000000u : (uint32_t)sample_us;
	uint32_t diff;

	if (r == 0)
		r = 1;
	if (link->srtt_us == 0) {
		link->srtt_us = r;
		link->rttvar_us = r / 2;
	} else {
		diff = link->srtt_us > r ? link->srtt_us - r : r - link->srtt_us;
		link->rttvar_us = (3 * link->rttvar_us + diff) / 4;
		link->srtt_us = (7 * link->srtt_us + r) / 8;
	}
	if (link->rtt_min_us == 0 || r < link->rtt_min_us ||
	    now - link->rtt_min_stamp_us > 10000000u) {
		link->rtt_min_us = r;
		link->rtt_min_stamp_us = now;
	}
}

/* Counts delivered bytes into the link's rate samples and resizes its cap. */
static void session_rate_update(struct agg_session *s, struct agg_link *link,
    uint64_t delivered, uint64_t now)
{
	uint64_t interval = link->srtt_us > 10000 ? link->srtt_us : 10000;
	uint64_t elapsed = now - link->rate_start_us, best = 0, cap;
	unsigned i;

	link->rate_delivered += delivered;
	if (elapsed < interval)
		return;
	if (link->inflight_bytes > 0 || link->rate_delivered >= link->cap) {
		link->rate_samples[link->rate_next] =
		    link->rate_delivered * 1000000u / elapsed;
		link->rate_next = (link->rate_next + 1) % AGG_RATE_SAMPLES;
		for (i = 0; i < AGG_RATE_SAMPLES; i++)
			if (link->rate_samples[i] > best)
				best = link->rate_samples[i];
		link->delivery_rate = best;
		/* About two bandwidth-delay products keeps the link busy. */
		cap = 2 * best * (link->rtt_min_us ? link->rtt_min_us : 1000) /
		    1000000u;
		if (cap < s->cfg.link_cap_min)
			cap = s->cfg.link_cap_min;
		if (cap > s->cfg.link_cap_max)
			cap = s->cfg.link_cap_max;
		link->cap = cap;
	}
	link->rate_start_us = now;
	link->rate_delivered = 0;
}

/* Evidence that a link delivers: a pong or ack progress. */
static void session_link_alive(struct agg_link *link, uint64_t now)
{
	link->last_evidence_us = now;
	link->ping_sent_us = 0;
	if (link->state == AGG_LINK_STALLED)
		agg_link_set_state(link, AGG_LINK_UP, "delivering again");
}

/* Applies one link's cumulative frame count from an ACK. */
static int session_ack_link(struct agg_session *s, struct agg_link *link,
    uint64_t frames, uint64_t now)
{
	struct agg_seg *seg, *last = NULL;
	uint64_t bytes = 0;

	if (frames > link->tx_frames)
		return -1;
	if (frames <= link->acked_frames)
		return 0;
	link->acked_frames = frames;
	while ((seg = TAILQ_FIRST(&link->inflight)) != NULL &&
	    seg->link_index <= frames) {
		TAILQ_REMOVE(&link->inflight, seg, entry);
		link->inflight_bytes -= seg->wire_len;
		bytes += seg->wire_len;
		if (seg->type == AGG_FRAME_DATA)
			s->unacked_bytes -= seg->len;
		if (last != NULL)
			agg_session_seg_put(s, last);
		last = seg;
	}
	if (last != NULL) {
		session_rtt_sample(link, now - last->sent_us, now);
		agg_session_seg_put(s, last);
	}
	session_rate_update(s, link, bytes, now);
	session_link_alive(link, now);
	return 0;
}

/* Handles an ACK that arrived on link. */
static int session_on_ack(struct agg_session *s, struct agg_link *link,
    const struct agg_frame *f)
{
	uint64_t now = agg_now_us();
	struct agg_link *acked;
	size_t i;

	if (f->value > s->tx_seq) {
		agg_link_close(link, "protocol error: ack of unsent data");
		return -1;
	}
	if (f->value > s->peer_cum)
		s->peer_cum = f->value;
	for (i = 0; i < f->ack_count; i++) {
		acked = session_link_find(s, f->acks[i].link_id);
		if (acked == NULL)
			continue;
		if (session_ack_link(s, acked, f->acks[i].frames, now) != 0) {
			agg_link_close(link,
			    "protocol error: ack of unsent data");
			return -1;
		}
	}
	agg_session_kick(s);
	return 0;
}

/* Whether seq is new (0), a duplicate (1) or out of the window (-1). */
static int session_rx_seq_check(const struct agg_session *s, uint64_t seq)
{
	uint64_t bit;

	if (seq < s->rx_cum)
		return 1;
	if (seq - s->rx_cum >= AGG_SEQ_WINDOW)
		return -1;
	bit = seq % AGG_SEQ_WINDOW;
	return (s->rx_seen[bit / 8] & (1u << (bit % 8))) ? 1 : 0;
}

/* Records a new seq as received, once its frame has been taken. Marking
 * only then means a frame whose link was closed over it is not mistaken
 * for a duplicate when it is resent. */
static void session_rx_seq_mark(struct agg_session *s, uint64_t seq)
{
	uint64_t bit = seq % AGG_SEQ_WINDOW;

	s->rx_seen[bit / 8] |= (uint8_t)(1u << (bit % 8));
	while (s->rx_seen[(s->rx_cum % AGG_SEQ_WINDOW) / 8] &
	    (1u << (s->rx_cum % 8))) {
		bit = s->rx_cum % AGG_SEQ_WINDOW;
		s->rx_seen[bit / 8] &= (uint8_t)~(1u << (bit % 8));
		s->rx_cum++;
	}
}

/* Counts a reliable frame received on link; 1 duplicate, -1 violation. */
static int session_rx_reliable(struct agg_session *s, struct agg_link *link,
    uint64_t seq)
{
	int r;

	link->rx_frames++;
	s->ack_pending = true;
	s->ack_frames++;
	agg_session_kick(s);
	if ((r = session_rx_seq_check(s, seq)) < 0) {
		agg_link_close(link,
		    "protocol error: sequence number out of window");
		return -1;
	}
	if (r > 0)
		s->duplicate_frames++;
	return r;
}

/* Handles a DATA frame whose headers are at the front of in. */
int agg_session_on_data(struct agg_session *s, struct agg_link *link,
    const uint8_t *hdr, uint8_t flags, uint16_t payload_len,
    struct evbuffer *in)
{
	struct agg_stream *st;
	uint64_t seq, offset;
	uint32_t stream;
	const char *why = NULL;
	char msg[128];
	int r;

	if (agg_data_header_decode(hdr, AGG_DATA_HEADER_LEN, &seq, &stream,
	    &offset) != AGG_WIRE_OK) {
		agg_link_close(link, "protocol error: bad DATA header");
		return -1;
	}
	evbuffer_drain(in, AGG_FRAME_HEADER_LEN + AGG_DATA_HEADER_LEN);
	link->rx_payload += payload_len;
	if ((r = session_rx_reliable(s, link, seq)) != 0) {
		evbuffer_drain(in, payload_len);
		return r < 0 ? -1 : 0;
	}
	if ((st = agg_session_stream_find(s, stream)) == NULL) {
		evbuffer_drain(in, payload_len);
		session_rx_seq_mark(s, seq);
		return 0;
	}
	s->rx_payload += payload_len;
	if (agg_stream_on_data(st, offset, (flags & AGG_DATA_FIN) != 0,
	    payload_len, in, &why) != 0) {
		snprintf(msg, sizeof(msg), "protocol error: %s", why);
		agg_log_warn("link %s: %s", link->name, msg);
		agg_link_close(link, msg);
		return -1;
	}
	session_rx_seq_mark(s, seq);
	return link->state == AGG_LINK_CLOSED ? -1 : 0;
}

/* Handles OPEN: a new stream from the peer. */
static int session_on_open(struct agg_session *s, struct agg_link *link,
    const struct agg_frame *f)
{
	struct agg_stream *st;
	struct agg_frame res;
	bool peer_parity = (f->stream & 1) == (s->role == AGG_ROLE_SERVER);
	size_t i;

	/* Each OPEN arrives once (sequence numbers), but maybe out of order. */
	if (!peer_parity || agg_session_stream_find(s, f->stream) != NULL) {
		agg_link_close(link, "protocol error: bad stream id in OPEN");
		return -1;
	}
	for (i = 0; i < AGG_EARLY_RESETS; i++) {
		if (s->early_resets[i] == f->stream) {
			/* Its RESET overtook it: answer the reset, open nothing. */
			s->early_resets[i] = 0;
			memset(&res, 0, sizeof(res));
			res.type = AGG_FRAME_RESET;
			res.stream = f->stream;
			res.code = AGG_ERR_GENERAL;
			agg_session_queue_control(s, &res);
			return 0;
		}
	}
	if (s->nstreams >= s->cfg.max_streams || s->cbs == NULL ||
	    s->cbs->stream_opened == NULL) {
		agg_log_warn("session %s: refusing stream %u: %s", s->id_hex,
		    f->stream, "stream limit reached");
		memset(&res, 0, sizeof(res));
		res.type = AGG_FRAME_RESULT;
		res.stream = f->stream;
		res.code = AGG_ERR_GENERAL;
		res.message_len = agg_frame_set_message(&res,
		    "too many streams in this session");
		agg_session_queue_control(s, &res);
		return 0;
	}
	if ((st = agg_stream_new(s, f->stream, AGG_STREAM_PENDING)) == NULL)
		return 0;
	st->tx_limit = f->window;
	st->in_callback++;
	s->cbs->stream_opened(s, st, &f->target, s->arg);
	st->in_callback--;
	if (st->owner_gone && st->in_callback == 0)
		agg_stream_release(st);
	return 0;
}

/* Handles a PONG: an RTT sample and proof of life. */
static void session_on_pong(struct agg_link *link, const struct agg_frame *f)
{
	uint64_t now = agg_now_us();

	if (f->value == 0 || f->value > now)
		return;
	session_rtt_sample(link, now - f->value, now);
	session_link_alive(link, now);
}

/* Handles every frame except DATA and PING; -1 if the link was closed. */
int agg_session_on_frame(struct agg_session *s, struct agg_link *link,
    const struct agg_frame *f)
{
	int r;

	if (agg_frame_is_reliable(f->type)) {
		if ((r = session_rx_reliable(s, link, f->seq)) != 0)
			return r < 0 ? -1 : 0;
		if ((r = session_on_reliable(s, link, f)) == 0)
			session_rx_seq_mark(s, f->seq);
		return r;
	}
	switch (f->type) {
	case AGG_FRAME_ACK:
		return session_on_ack(s, link, f);
	case AGG_FRAME_PONG:
		session_on_pong(link, f);
		return 0;
	case AGG_FRAME_CLOSE:
		if (f->scope == AGG_CLOSE_SESSION) {
			char why[300];

			snprintf(why, sizeof(why), "closed by peer: %s",
			    f->message);
			agg_session_close(s, why);
			return -1;
		}
		agg_link_close(link, "closed by peer");
		return -1;
	default:
		return 0;
	}
}

/* Handles a new reliable frame other than DATA; -1 if the link closed. */
static int session_on_reliable(struct agg_session *s, struct agg_link *link,
    const struct agg_frame *f)
{
	struct agg_stream *st;

	switch (f->type) {
	case AGG_FRAME_OPEN:
		return session_on_open(s, link, f);
	case AGG_FRAME_CREDIT:
		if (f->stream == 0) {
			if (f->value > s->tx_limit) {
				s->tx_limit = f->value;
				agg_session_kick(s);
			}
		} else if ((st = agg_session_stream_find(s, f->stream)) &&
		    f->value > st->tx_limit) {
			st->tx_limit = f->value;
			agg_session_stream_ready(s, st);
		}
		return 0;
	case AGG_FRAME_RESULT:
		if ((st = agg_session_stream_find(s, f->stream)) != NULL)
			agg_stream_on_result(st, f);
		return 0;
	case AGG_FRAME_RESET:
		if ((st = agg_session_stream_find(s, f->stream)) != NULL) {
			if (agg_stream_on_reset(st, f) != 0) {
				agg_link_close(link, "protocol error: RESET "
				    "final offset beyond credit");
				return -1;
			}
		} else if ((f->stream & 1) == (s->role == AGG_ROLE_SERVER)) {
			/* Maybe ahead of its OPEN: remember it for a while.
			 * Its bytes never reach a stream, so they are consumed. */
			s->early_resets[s->early_reset_next] = f->stream;
			s->early_reset_next = (s->early_reset_next + 1) %
			    AGG_EARLY_RESETS;
		}
		return 0;
	default:
		return 0;
	}
}

/* Round trip used to rank links; unknown counts as slow. */
static uint32_t session_link_rtt(const struct agg_link *link)
{
	return link->srtt_us ? link->srtt_us : SESSION_UNKNOWN_RTT_US;
}

/* The UP link with the lowest RTT whose output has room (for control). */
static struct agg_link *session_fastest_link(struct agg_session *s,
    bool need_room)
{
	struct agg_link *link, *best = NULL;

	TAILQ_FOREACH(link, &s->links, entry) {
		if (link->state != AGG_LINK_UP || link->bev == NULL)
			continue;
		if (need_room && agg_link_queued(link) >=
		    s->cfg.link_output_max)
			continue;
		if (best == NULL ||
		    session_link_rtt(link) < session_link_rtt(best))
			best = link;
	}
	return best;
}

/* The link expected to deliver bytes more soon, among those with room:
 * in-flight bytes / delivery rate + half the minimum RTT. */
static struct agg_link *session_best_link(struct agg_session *s,
    uint32_t bytes)
{
	struct agg_link *link, *best = NULL;
	uint64_t est, best_est = UINT64_MAX, rate;

	TAILQ_FOREACH(link, &s->links, entry) {
		if (link->state != AGG_LINK_UP || link->bev == NULL ||
		    link->inflight_bytes >= link->cap ||
		    agg_link_queued(link) >= s->cfg.link_output_max)
			continue;
		rate = link->delivery_rate ? link->delivery_rate :
		    SESSION_DEFAULT_RATE;
		est = (link->inflight_bytes + bytes) * 1000000u / rate +
		    (link->rtt_min_us ? link->rtt_min_us :
		    session_link_rtt(link)) / 2;
		if (est < best_est) {
			best_est = est;
			best = link;
		}
	}
	return best;
}

/* Sends the current ACK state on carrier. */
void agg_session_send_ack_on(struct agg_session *s, struct agg_link *carrier)
{
	struct agg_link *link;
	struct agg_frame f;

	memset(&f, 0, offsetof(struct agg_frame, target));
	f.type = AGG_FRAME_ACK;
	f.value = s->rx_cum;
	f.ack_count = 0;
	TAILQ_FOREACH(link, &s->links, entry) {
		if (link->state == AGG_LINK_HANDSHAKE || link->rx_frames == 0 ||
		    f.ack_count >= AGG_MAX_ACK_LINKS)
			continue;
		f.acks[f.ack_count].link_id = link->id;
		f.acks[f.ack_count].frames = link->rx_frames;
		f.ack_count++;
	}
	f.message_len = 0;
	agg_link_send_control(carrier, &f);
	s->ack_pending = false;
	s->ack_frames = 0;
	evtimer_del(s->ack_timer);
}

/* Sends the pending ACK on the fastest link. */
static void session_send_ack(struct agg_session *s)
{
	struct agg_link *carrier;

	if (s->ack_pending && (carrier = session_fastest_link(s, false)))
		agg_session_send_ack_on(s, carrier);
}

/* Sends the ACK now if enough frames wait for it, else arms a short timer:
 * one ACK then covers several frames. */
static void session_maybe_ack(struct agg_session *s)
{
	struct timeval tv = { 0, SESSION_ACK_DELAY_US };

	if (!s->ack_pending)
		return;
	if (s->ack_frames >= SESSION_ACK_EVERY || s->ack_frames == 0)
		session_send_ack(s);
	else if (!evtimer_pending(s->ack_timer, NULL))
		evtimer_add(s->ack_timer, &tv);
}

/* The delayed ACK is due. */
static void session_ack_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	session_send_ack(arg);
}

/* Sends queued frames while some link has room: control frames on the
 * fastest link, then resends, then new data from the ready streams. */
static void session_schedule_batch(struct agg_session *s)
{
	struct agg_link *link;
	struct agg_stream *st;
	struct agg_seg *seg;
	uint64_t credit;
	unsigned n;

	for (n = 0; n < SESSION_SCHEDULE_BATCH; n++) {
		if ((seg = TAILQ_FIRST(&s->ctrl)) != NULL) {
			if (seg->seq >= s->peer_cum + AGG_SEQ_WINDOW ||
			    (link = session_fastest_link(s, true)) == NULL)
				return;
			TAILQ_REMOVE(&s->ctrl, seg, entry);
			s->nctrl--;
			agg_link_send_seg(link, seg);
			continue;
		}
		if ((seg = TAILQ_FIRST(&s->resend)) != NULL) {
			if ((link = session_best_link(s, seg->wire_len)) ==
			    NULL)
				return;
			TAILQ_REMOVE(&s->resend, seg, entry);
			agg_link_send_seg(link, seg);
			continue;
		}
		if ((st = TAILQ_FIRST(&s->ready)) == NULL ||
		    s->tx_seq >= s->peer_cum + AGG_SEQ_WINDOW)
			return;
		if ((link = session_best_link(s, s->cfg.segment_size)) == NULL)
			return;
		credit = s->tx_limit - s->tx_sent;
		if (credit > s->cfg.segment_size)
			credit = s->cfg.segment_size;
		TAILQ_REMOVE(&s->ready, st, ready_entry);
		st->tx_ready = false;
		seg = agg_stream_next_seg(st, credit);
		if (seg == NULL) {
			/* Only session credit can hold a ready stream back. */
			if (agg_stream_wants_send(st)) {
				TAILQ_INSERT_HEAD(&s->ready, st, ready_entry);
				st->tx_ready = true;
				return;
			}
			continue;
		}
		seg->seq = s->tx_seq++;
		s->tx_sent += seg->len;
		s->tx_payload += seg->len;
		s->unacked_bytes += seg->len;
		agg_link_send_seg(link, seg);
		agg_session_stream_ready(s, st);
		agg_stream_after_send(st);
	}
	/* More to do: continue in the next loop iteration. */
	agg_session_kick(s);
}

/* Writes every link's queued frames now; true when some link took bytes
 * (and so may have room for more). */
static bool session_flush_links(struct agg_session *s)
{
	struct agg_link *link;
	bool wrote = false;

	TAILQ_FOREACH(link, &s->links, entry)
		if (link->bev != NULL && agg_bev_write_now(link->bev) > 0)
			wrote = true;
	return wrote;
}

/* Schedules, writes what was scheduled at once, and schedules again into
 * the room that made, a few rounds at most. */
static void session_schedule(struct agg_session *s)
{
	int round;

	for (round = 0; round < SESSION_FLUSH_ROUNDS; round++) {
		session_schedule_batch(s);
		if (s->closed || !session_flush_links(s))
			break;
	}
}

/* Frees links that closed since the last pass. */
static void session_reap_links(struct agg_session *s)
{
	struct agg_link *link;

	while ((link = TAILQ_FIRST(&s->dead_links)) != NULL) {
		TAILQ_REMOVE(&s->dead_links, link, entry);
		agg_link_free(link);
	}
}

/* The per-iteration pass: reap, acks, scheduling. */
static void session_kick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct agg_session *s = arg;

	(void)fd;
	(void)what;
	session_reap_links(s);
	if (s->closed)
		return;
	if (s->ctrl_overflow) {
		char why[160];

		snprintf(why, sizeof(why), "control queue full (%zu frames): "
		    "the peer does not read or ack", s->nctrl);
		agg_log_warn("session %s: %s", s->id_hex, why);
		agg_session_close(s, why);
		return;
	}
	session_maybe_ack(s);
	session_schedule(s);
}

/* A link's output drained: it can take more. */
void agg_session_on_link_writable(struct agg_session *s,
    struct agg_link *link)
{
	(void)link;
	agg_session_kick(s);
}

/* Sends a PING on link to probe it. */
static void session_ping(struct agg_link *link, uint64_t now)
{
	struct agg_frame f;

	memset(&f, 0, offsetof(struct agg_frame, target));
	f.type = AGG_FRAME_PING;
	f.value = now;
	f.message_len = 0;
	f.ack_count = 0;
	agg_link_send_control(link, &f);
	link->ping_sent_us = now;
}

/* Updates a link's smoothed send and receive rates (bits/s). */
static void session_link_rates(struct agg_link *link, uint64_t now)
{
	uint64_t elapsed = now - link->stat_stamp_us;

	if (link->stat_stamp_us == 0) {
		link->stat_stamp_us = now;
		return;
	}
	if (elapsed < 250000u)
		return;
	link->tx_rate_bps = (link->tx_rate_bps + (link->tx_bytes -
	    link->stat_tx_bytes) * 8000000u / elapsed) / 2;
	link->rx_rate_bps = (link->rx_rate_bps + (link->rx_bytes -
	    link->stat_rx_bytes) * 8000000u / elapsed) / 2;
	link->stat_tx_bytes = link->tx_bytes;
	link->stat_rx_bytes = link->rx_bytes;
	link->stat_stamp_us = now;
}

/* The liveness tick of one link: probe, stall, recover, give up. */
void agg_session_on_link_timer(struct agg_session *s, struct agg_link *link)
{
	uint64_t now = agg_now_us(), t, next;
	struct agg_seg *oldest = TAILQ_FIRST(&link->inflight);
	char why[128];

	if (link->state == AGG_LINK_CLOSED || s->closed)
		return;
	session_link_rates(link, now);
	t = agg_link_stall_timeout_us(link, s->cfg.stall_floor_ms);
	if (link->ping_sent_us != 0 && now - link->ping_sent_us >= t) {
		if (link->state == AGG_LINK_UP) {
			snprintf(why, sizeof(why), "no ack or pong for %llu ms",
			    (unsigned long long)(now - link->ping_sent_us) /
			    1000u);
			agg_link_set_state(link, AGG_LINK_STALLED, why);
			session_requeue(s, link);
		} else if (now - link->state_since_us >=
		    (uint64_t)s->cfg.link_dead_ms * 1000u) {
			snprintf(why, sizeof(why), "stalled for %u ms",
			    s->cfg.link_dead_ms);
			agg_link_close(link, why);
			return;
		}
		session_ping(link, now);
	} else if (link->ping_sent_us == 0) {
		bool sent_since = link->last_tx_us > link->last_evidence_us;

		if ((oldest != NULL || sent_since) &&
		    now - link->last_evidence_us >= t / 2 &&
		    (oldest == NULL || now - oldest->sent_us >= t / 2))
			session_ping(link, now);
		else if (now - link->last_evidence_us >=
		    (uint64_t)s->cfg.idle_ping_ms * 1000u)
			session_ping(link, now);
	}
	if (link->ping_sent_us != 0 || oldest != NULL ||
	    link->last_tx_us > link->last_evidence_us)
		next = t / 4;
	else
		next = (uint64_t)s->cfg.idle_ping_ms * 1000u / 2;
	if (next > 250000u)
		next = 250000u;
	agg_link_schedule_timer(link, next < 2000 ? 2000 : next);
}

/* Grace period over with no link: the session fails. */
static void session_grace_cb(evutil_socket_t fd, short what, void *arg)
{
	struct agg_session *s = arg;
	char why[64];

	(void)fd;
	(void)what;
	snprintf(why, sizeof(why), "no link for %u s",
	    (s->cfg.grace_ms + 999) / 1000);
	agg_session_close(s, why);
}

/* Closes the session: tells the peer, fails the streams, closes links. */
void agg_session_close(struct agg_session *s, const char *reason)
{
	struct agg_link *link, *next;
	struct agg_stream *st, *stnext;
	struct agg_frame f;
	size_t i;

	if (s->closed)
		return;
	s->closed = true;
	snprintf(s->close_reason, sizeof(s->close_reason), "%s", reason);
	agg_log_info("session %s closed: %s", s->id_hex, reason);
	memset(&f, 0, sizeof(f));
	f.type = AGG_FRAME_CLOSE;
	f.scope = AGG_CLOSE_SESSION;
	f.message_len = agg_frame_set_message(&f, reason);
	evtimer_del(s->grace);
	evtimer_del(s->ack_timer);
	TAILQ_FOREACH(link, &s->links, entry)
		if (link->state == AGG_LINK_UP && link->bev != NULL)
			agg_link_send_control(link, &f);
	TAILQ_FOREACH_SAFE(link, &s->links, entry, next)
		agg_link_close(link, reason);
	for (i = 0; i < s->nbuckets; i++) {
		for (st = s->buckets[i]; st != NULL; st = stnext) {
			stnext = st->hash_next;
			agg_stream_fail(st, AGG_ERR_GENERAL, reason);
		}
	}
	session_free_segs(s, &s->ctrl);
	s->nctrl = 0;
	session_free_segs(s, &s->resend);
	agg_session_kick(s);
	if (s->cbs != NULL && s->cbs->closed != NULL && !s->closed_told) {
		s->closed_told = true;
		s->cbs->closed(s, reason, s->arg);
	}
}

/* Frees a session, closing it first. */
void agg_session_free(struct agg_session *s)
{
	struct agg_seg *seg;
	struct agg_stream *st;
	size_t i;

	if (s == NULL)
		return;
	if (!s->closed && s->buckets != NULL) {
		s->cbs = NULL;
		agg_session_close(s, "session freed");
	}
	for (i = 0; s->buckets != NULL && i < s->nbuckets; i++) {
		while ((st = s->buckets[i]) != NULL)
			agg_stream_destroy(st);
	}
	session_reap_links(s);
	session_free_segs(s, &s->ctrl);
	s->nctrl = 0;
	session_free_segs(s, &s->resend);
	while ((seg = TAILQ_FIRST(&s->seg_pool)) != NULL) {
		TAILQ_REMOVE(&s->seg_pool, seg, entry);
		evbuffer_free(seg->body);
		free(seg);
	}
	if (s->kick != NULL)
		event_free(s->kick);
	if (s->grace != NULL)
		event_free(s->grace);
	if (s->ack_timer != NULL)
		event_free(s->ack_timer);
	free(s->buckets);
	free(s);
}

/* Fills the session's statistics. */
void agg_session_get_stats(const struct agg_session *s,
    struct agg_session_stats *out)
{
	const struct agg_link *link;

	memset(out, 0, sizeof(*out));
	memcpy(out->id, s->id_hex, sizeof(out->id));
	out->closed = s->closed;
	out->links = s->nlinks;
	out->links_up = agg_session_links_up(s);
	TAILQ_FOREACH(link, &s->links, entry) {
		out->tx_rate_bps += link->tx_rate_bps;
		out->rx_rate_bps += link->rx_rate_bps;
	}
	out->streams = s->nstreams;
	out->tx_payload = s->tx_payload;
	out->rx_payload = s->rx_payload;
	out->unacked_bytes = s->unacked_bytes;
	out->buffered_bytes = s->rx_received - s->rx_consumed;
	out->resent_frames = s->resent_frames;
	out->duplicate_frames = s->duplicate_frames;
}

/* Fills up to cap links' statistics. */
size_t agg_session_get_link_stats(const struct agg_session *s,
    struct agg_link_stats *out, size_t cap)
{
	const struct agg_link *link;
	size_t n = 0;

	TAILQ_FOREACH(link, &s->links, entry) {
		if (n < cap) {
			struct agg_link_stats *o = &out[n];

			memset(o, 0, sizeof(*o));
			o->id = link->id;
			o->state = link->state;
			snprintf(o->name, sizeof(o->name), "%s", link->name);
			snprintf(o->reason, sizeof(o->reason), "%s",
			    link->reason);
			o->state_since_us = link->state_since_us;
			o->tx_bytes = link->tx_bytes;
			o->rx_bytes = link->rx_bytes;
			o->tx_payload = link->tx_payload;
			o->rx_payload = link->rx_payload;
			o->delivery_rate_bps = link->delivery_rate * 8;
			o->tx_rate_bps = link->tx_rate_bps;
			o->rx_rate_bps = link->rx_rate_bps;
			o->srtt_us = link->srtt_us;
			o->rttvar_us = link->rttvar_us;
			o->rtt_min_us = link->rtt_min_us;
			o->inflight_bytes = link->inflight_bytes;
			o->cap_bytes = link->cap;
			o->queued_bytes = agg_link_queued(link);
			o->resent_frames = link->resent_frames;
		}
		n++;
	}
	return n;
}
