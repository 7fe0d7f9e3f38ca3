/*
 * link.c: one link: a connected byte pipe (bufferevent) that runs the link
 * handshake, then carries frames for its session. It parses what arrives,
 * answers pings, and hands everything else to the session.
 */
#include "agg/bevio.h"
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "agg/log.h"
#include "auth.h"

enum {
	HS_CLIENT_WAIT_SHELLO = 1,
	HS_CLIENT_WAIT_WELCOME,
	HS_SERVER_WAIT_HELLO,
	HS_SERVER_WAIT_AUTH,
	HS_SERVER_WAIT_SESSION,
	HS_DONE,
	HS_DRAIN,             /* writing a last message, then closing */
};

static void link_read_cb(struct bufferevent *bev, void *arg);
static void link_write_cb(struct bufferevent *bev, void *arg);
static void link_event_cb(struct bufferevent *bev, short what, void *arg);
static void link_timer_cb(evutil_socket_t fd, short what, void *arg);
static void link_read_frames(struct agg_link *link, struct evbuffer *in);

/* Monotonic clock in microseconds. */
uint64_t agg_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Name of a link state for logs. */
static const char *link_state_name(enum agg_link_state state)
{
	switch (state) {
	case AGG_LINK_HANDSHAKE: return "handshake";
	case AGG_LINK_UP: return "up";
	case AGG_LINK_STALLED: return "stalled";
	default: return "closed";
	}
}

/* Creates a link on a connected bufferevent; the link owns bev. */
struct agg_link *agg_link_new(struct event_base *base, struct bufferevent *bev,
    enum agg_role role, const char *name, uint32_t handshake_ms)
{
	struct agg_link *link;

	if ((link = calloc(1, sizeof(*link))) == NULL)
		return NULL;
	if ((link->timer = evtimer_new(base, link_timer_cb, link)) == NULL) {
		free(link);
		return NULL;
	}
	link->bev = bev;
	link->role = role;
	link->state = AGG_LINK_HANDSHAKE;
	link->state_since_us = agg_now_us();
	snprintf(link->name, sizeof(link->name), "%s", name ? name : "link");
	TAILQ_INIT(&link->inflight);
	link->hs_step = role == AGG_ROLE_CLIENT ? HS_CLIENT_WAIT_SHELLO :
	    HS_SERVER_WAIT_HELLO;
	/* A blocking pipe would stall the whole event loop. */
	if (bufferevent_getfd(bev) >= 0)
		evutil_make_socket_nonblocking(bufferevent_getfd(bev));
	bufferevent_setcb(bev, link_read_cb, link_write_cb, link_event_cb,
	    link);
	/* Whole frames per write call rather than libevent's 16 KiB. */
	bufferevent_set_max_single_write(bev, 256 * 1024);
	link->reader = agg_bev_reader_new(bev, link_read_cb, link);
	bufferevent_enable(bev, EV_WRITE);
	link->writer = agg_bev_writer_new(bev);
	agg_bev_set_reading(link->reader, bev, true);
	/* Bytes a transport read during its own handshake (the end of a TLS
	 * handshake) are there already: no readiness event announces them. */
	if (evbuffer_get_length(bufferevent_get_input(bev)) > 0)
		bufferevent_trigger(bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS |
		    BEV_TRIG_DEFER_CALLBACKS);
	agg_link_schedule_timer(link, (uint64_t)handshake_ms * 1000u);
	return link;
}

/* Arms the link's timer to fire after delay_us. */
void agg_link_schedule_timer(struct agg_link *link, uint64_t delay_us)
{
	struct timeval tv;

	tv.tv_sec = (time_t)(delay_us / 1000000u);
	tv.tv_usec = (suseconds_t)(delay_us % 1000000u);
	evtimer_add(link->timer, &tv);
}

/* Writes bytes to the link as they are. */
void agg_link_send_raw(struct agg_link *link, const void *data, size_t len)
{
	if (link->bev == NULL)
		return;
	evbuffer_add(bufferevent_get_output(link->bev), data, len);
	link->tx_bytes += len;
	link->last_tx_us = agg_now_us();
}

/* Encodes and writes an unsequenced frame (ACK, PING, PONG, CLOSE). */
void agg_link_send_control(struct agg_link *link, const struct agg_frame *f)
{
	uint8_t buf[AGG_FRAME_HEADER_LEN + 512];
	size_t len;

	if ((len = agg_frame_encode(f, buf, sizeof(buf))) > 0)
		agg_link_send_raw(link, buf, len);
}

/* Writes a reliable frame and records it as in flight on this link. */
void agg_link_send_seg(struct agg_link *link, struct agg_seg *seg)
{
	struct evbuffer *out = bufferevent_get_output(link->bev);
	uint8_t hdr[AGG_FRAME_HEADER_LEN + AGG_DATA_HEADER_LEN];

	if (seg->type == AGG_FRAME_DATA) {
		agg_data_header_encode(seg->seq, seg->stream, seg->offset,
		    (uint16_t)seg->len, seg->flags & AGG_DATA_FIN, hdr);
		evbuffer_add(out, hdr, sizeof(hdr));
		link->tx_payload += seg->len;
	}
	/* The body stays ours for a resend: the output only references it
	 * (or gets a copy, for bodies libevent cannot reference). */
	if (evbuffer_add_buffer_reference(out, seg->body) != 0)
		evbuffer_add(out, evbuffer_pullup(seg->body, -1),
		    evbuffer_get_length(seg->body));
	/* An idle link that starts carrying frames needs its liveness tick
	 * soon, not at the idle interval. */
	if (TAILQ_EMPTY(&link->inflight) && link->session != NULL)
		agg_link_schedule_timer(link, agg_link_stall_timeout_us(link,
		    link->session->cfg.stall_floor_ms) / 4);
	seg->link = link;
	seg->link_index = ++link->tx_frames;
	seg->sent_us = agg_now_us();
	TAILQ_INSERT_TAIL(&link->inflight, seg, entry);
	link->inflight_bytes += seg->wire_len;
	link->tx_bytes += seg->wire_len;
	link->last_tx_us = seg->sent_us;
}

/* Bytes waiting in the link's output buffer. */
size_t agg_link_queued(const struct agg_link *link)
{
	return link->bev ? evbuffer_get_length(
	    bufferevent_get_output(link->bev)) : 0;
}

/* The stall timeout: max(floor, 2 srtt + 4 rttvar), in microseconds. */
uint32_t agg_link_stall_timeout_us(const struct agg_link *link,
    uint32_t floor_ms)
{
	uint64_t t = 2 * (uint64_t)link->srtt_us + 4 * (uint64_t)link->rttvar_us;
	uint64_t floor_us = (uint64_t)floor_ms * 1000u;

	if (t < floor_us)
		t = floor_us;
	return t > 60000000u ? 60000000u : (uint32_t)t;
}

/* The one place a link changes state: logs it and tells the session. */
void agg_link_set_state(struct agg_link *link, enum agg_link_state state,
    const char *reason)
{
	struct agg_session *s = link->session;

	if (link->state == state)
		return;
	agg_log(state == AGG_LINK_CLOSED || state == AGG_LINK_STALLED ?
	    AGG_LOG_INFO : AGG_LOG_DEBUG, "link %s: %s -> %s%s%s", link->name,
	    link_state_name(link->state), link_state_name(state),
	    reason ? ": " : "", reason ? reason : "");
	link->state = state;
	link->state_since_us = agg_now_us();
	snprintf(link->reason, sizeof(link->reason), "%s", reason ? reason :
	    "");
	if (s != NULL && s->cbs != NULL && s->cbs->link_state != NULL)
		s->cbs->link_state(s, link, state, link->reason, s->arg);
}

/* Closes the link with a reason: frees its pipe and tells its owner. */
void agg_link_close(struct agg_link *link, const char *reason)
{
	if (link->state == AGG_LINK_CLOSED)
		return;
	if (link->bev != NULL) {
		agg_bev_last_flush(link->bev, BEV_FINISHED);
		agg_bev_reader_free(link->reader);
		link->reader = NULL;
		agg_bev_writer_free(link->writer);
		link->writer = NULL;
		bufferevent_free(link->bev);
		link->bev = NULL;
	}
	evtimer_del(link->timer);
	if (link->session != NULL)
		agg_session_link_closed(link->session, link);
	agg_link_set_state(link, AGG_LINK_CLOSED, reason);
	if (link->session == NULL && link->hub != NULL)
		agg_hub_link_closed(link->hub, link);
}

/* Frees a closed link. */
void agg_link_free(struct agg_link *link)
{
	agg_bev_reader_free(link->reader);
	agg_bev_writer_free(link->writer);
	if (link->bev != NULL)
		bufferevent_free(link->bev);
	event_free(link->timer);
	free(link);
}

/* Writes a last message and closes the link once it has left. */
static void link_drain_close(struct agg_link *link, const void *msg,
    size_t len, const char *reason)
{
	agg_link_send_raw(link, msg, len);
	link->hs_step = HS_DRAIN;
	snprintf(link->reason, sizeof(link->reason), "%s", reason);
	agg_bev_set_reading(link->reader, link->bev, false);
	bufferevent_setwatermark(link->bev, EV_WRITE, 0, 0);
	agg_link_schedule_timer(link, 1000000u);
}

/* Client: sends CLIENT_HELLO for session s. */
void agg_link_start_client(struct agg_link *link, struct agg_session *s)
{
	struct agg_client_hello h;

	link->session = s;
	link->id = s->next_link_id++;
	memset(&h, 0, sizeof(h));
	h.version_min = AGG_PROTOCOL_VERSION;
	h.version_max = AGG_PROTOCOL_VERSION;
	h.flags = s->established ? 0 : AGG_HELLO_CREATE;
	memcpy(h.session_id, s->id, AGG_SESSION_ID_LEN);
	h.link_id = link->id;
	agg_random_bytes(h.nonce, sizeof(h.nonce));
	agg_client_hello_encode(&h, link->hello);
	agg_link_send_raw(link, link->hello, sizeof(link->hello));
}

/* Client: handles SERVER_HELLO, answers with AUTH. */
static int link_client_on_shello(struct agg_link *link, struct evbuffer *in)
{
	struct agg_session *s = link->session;
	struct agg_server_hello sh;
	int r;

	evbuffer_remove(in, link->shello, sizeof(link->shello));
	if ((r = agg_server_hello_decode(link->shello, sizeof(link->shello),
	    &sh)) != AGG_WIRE_OK) {
		agg_link_close(link, r == AGG_WIRE_BAD_MAGIC ?
		    "not an agg server (bad magic)" : "bad server hello");
		return -1;
	}
	if (sh.status != AGG_HELLO_OK || sh.version != AGG_PROTOCOL_VERSION) {
		agg_link_close(link, "server does not speak protocol version 1");
		return -1;
	}
	agg_auth_client_mac(s->key, s->key_len, link->hello, link->shello,
	    link->auth);
	agg_link_send_raw(link, link->auth, sizeof(link->auth));
	link->hs_step = HS_CLIENT_WAIT_WELCOME;
	return 0;
}

/* Client: handles WELCOME, checks the server's proof. */
static int link_client_on_welcome(struct agg_link *link, struct evbuffer *in)
{
	struct agg_session *s = link->session;
	uint8_t buf[AGG_WELCOME_LEN], proof[AGG_MAC_LEN];
	struct agg_welcome w;

	evbuffer_remove(in, buf, sizeof(buf));
	if (agg_welcome_decode(buf, sizeof(buf), &w) != AGG_WIRE_OK) {
		agg_link_close(link, "bad welcome from server");
		return -1;
	}
	/* Only a proven WELCOME may make us give up state; a refusal of our
	 * AUTH cannot be proven to a client whose key is wrong. */
	if (w.status != AGG_WELCOME_AUTH_FAILED) {
		agg_auth_server_proof(s->key, s->key_len, link->hello,
		    link->shello, link->auth, w.status, proof);
		if (!agg_auth_equal(proof, w.proof)) {
			agg_link_close(link,
			    "server failed to prove the shared secret");
			return -1;
		}
	}
	if (w.status == AGG_WELCOME_OK)
		link->hs_step = HS_DONE;
	agg_session_link_welcome(s, link, w.status);
	return link->state == AGG_LINK_CLOSED ? -1 : 0;
}

/* Server: handles CLIENT_HELLO, answers with SERVER_HELLO. */
static int link_server_on_hello(struct agg_link *link, struct evbuffer *in)
{
	struct agg_client_hello h;
	struct agg_server_hello sh;
	int r;

	evbuffer_remove(in, link->hello, sizeof(link->hello));
	r = agg_client_hello_decode(link->hello, sizeof(link->hello), &h);
	if (r != AGG_WIRE_OK) {
		agg_link_close(link, r == AGG_WIRE_BAD_MAGIC ?
		    "not an agg client (bad magic)" : "bad client hello");
		return -1;
	}
	memset(&sh, 0, sizeof(sh));
	if (h.version_min > AGG_PROTOCOL_VERSION ||
	    h.version_max < AGG_PROTOCOL_VERSION) {
		char why[96];

		sh.status = AGG_HELLO_VERSION_UNSUPPORTED;
		agg_server_hello_encode(&sh, link->shello);
		snprintf(why, sizeof(why), "client speaks protocol versions "
		    "%u-%u only", h.version_min, h.version_max);
		link_drain_close(link, link->shello, sizeof(link->shello), why);
		return -1;
	}
	sh.version = AGG_PROTOCOL_VERSION;
	sh.status = AGG_HELLO_OK;
	agg_random_bytes(sh.nonce, sizeof(sh.nonce));
	agg_server_hello_encode(&sh, link->shello);
	agg_link_send_raw(link, link->shello, sizeof(link->shello));
	link->id = h.link_id;
	link->hs_step = HS_SERVER_WAIT_AUTH;
	return 0;
}

/* Server: sends WELCOME with status; on failure closes after it. */
void agg_link_server_welcome(struct agg_link *link, const uint8_t *key,
    size_t key_len, uint8_t status, const char *reason)
{
	struct agg_welcome w;
	uint8_t buf[AGG_WELCOME_LEN];

	memset(&w, 0, sizeof(w));
	w.status = status;
	if (status != AGG_WELCOME_AUTH_FAILED)
		agg_auth_server_proof(key, key_len, link->hello, link->shello,
		    link->auth, status, w.proof);
	agg_welcome_encode(&w, buf);
	if (status == AGG_WELCOME_OK) {
		agg_link_send_raw(link, buf, sizeof(buf));
		link->hs_step = HS_DONE;
	} else {
		link_drain_close(link, buf, sizeof(buf), reason);
	}
}

/* Runs the handshake on what has arrived; 1 when frames may follow. */
static int link_handshake(struct agg_link *link, struct evbuffer *in)
{
	size_t avail = evbuffer_get_length(in);

	switch (link->hs_step) {
	case HS_CLIENT_WAIT_SHELLO:
		if (avail < AGG_SERVER_HELLO_LEN)
			return 0;
		return link_client_on_shello(link, in) == 0 ?
		    link_handshake(link, in) : 0;
	case HS_CLIENT_WAIT_WELCOME:
		if (avail < AGG_WELCOME_LEN)
			return 0;
		return link_client_on_welcome(link, in) == 0 &&
		    link->hs_step == HS_DONE;
	case HS_SERVER_WAIT_HELLO:
		/* Reject a stranger as soon as its first bytes show it. */
		if (avail >= 4 && avail < AGG_CLIENT_HELLO_LEN) {
			uint8_t magic[4];
			struct agg_client_hello h;

			evbuffer_copyout(in, magic, sizeof(magic));
			if (agg_client_hello_decode(magic, sizeof(magic), &h) ==
			    AGG_WIRE_BAD_MAGIC) {
				agg_link_close(link,
				    "not an agg client (bad magic)");
				return 0;
			}
		}
		if (avail < AGG_CLIENT_HELLO_LEN)
			return 0;
		return link_server_on_hello(link, in) == 0 ?
		    link_handshake(link, in) : 0;
	case HS_SERVER_WAIT_AUTH:
		if (avail < AGG_AUTH_LEN)
			return 0;
		evbuffer_remove(in, link->auth, sizeof(link->auth));
		link->hs_step = HS_SERVER_WAIT_SESSION;
		agg_hub_on_auth(link->hub, link);
		return link->state != AGG_LINK_CLOSED &&
		    link->hs_step == HS_DONE;
	case HS_DONE:
		return 1;
	default:
		/* Draining or waiting: ignore anything more. */
		evbuffer_drain(in, avail);
		return 0;
	}
}

/* Answers a PING and takes RTT samples from PONGs. */
static void link_on_ping(struct agg_link *link, const struct agg_frame *f)
{
	struct agg_frame pong;

	memset(&pong, 0, sizeof(pong));
	pong.type = AGG_FRAME_PONG;
	pong.value = f->value;
	agg_link_send_control(link, &pong);
	/* A probe may mean our ACKs got lost elsewhere: repeat them here. */
	if (link->session != NULL && agg_link_queued(link) <
	    link->session->cfg.link_output_max)
		agg_session_send_ack_on(link->session, link);
}

/* Closes the link because of bad input, logging the reason. */
static void link_protocol_error(struct agg_link *link, const char *what,
    int r)
{
	char why[128];

	snprintf(why, sizeof(why), "protocol error: %s (%s)", what,
	    agg_wire_strerror(r));
	agg_log_warn("link %s: %s", link->name, why);
	agg_link_close(link, why);
}

/* Parses and dispatches every complete frame in the input. */
static void link_read_frames(struct agg_link *link, struct evbuffer *in)
{
	uint8_t buf[AGG_FRAME_HEADER_LEN + 512];
	struct agg_frame_header h;
	struct agg_frame f;
	size_t avail, total;
	uint8_t *p;
	int r;

	while (link->state != AGG_LINK_CLOSED && link->session != NULL) {
		/* A peer that sends but does not read would make our answers
		 * pile up: stop reading until the output drains. */
		if (agg_link_queued(link) > 4 *
		    (size_t)link->session->cfg.link_output_max) {
			agg_bev_set_reading(link->reader, link->bev, false);
			return;
		}
		avail = evbuffer_get_length(in);
		if (avail < AGG_FRAME_HEADER_LEN)
			return;
		p = evbuffer_pullup(in, AGG_FRAME_HEADER_LEN);
		if ((r = agg_frame_header_decode(p, avail, &h)) != AGG_WIRE_OK) {
			link_protocol_error(link, "bad frame header", r);
			return;
		}
		total = AGG_FRAME_HEADER_LEN + (size_t)h.length;
		if (avail < total)
			return;
		link->rx_bytes += total;
		if (h.type == AGG_FRAME_DATA) {
			p = evbuffer_pullup(in, AGG_FRAME_HEADER_LEN +
			    AGG_DATA_HEADER_LEN);
			if (agg_session_on_data(link->session, link,
			    p + AGG_FRAME_HEADER_LEN, h.flags,
			    (uint16_t)(h.length - AGG_DATA_HEADER_LEN), in) != 0)
				return;
			continue;
		}
		evbuffer_remove(in, buf, total);
		if ((r = agg_frame_decode(buf, total, &f)) != AGG_WIRE_OK) {
			link_protocol_error(link, agg_frame_type_name(h.type),
			    r);
			return;
		}
		if (f.type == AGG_FRAME_PING)
			link_on_ping(link, &f);
		else if (agg_session_on_frame(link->session, link, &f) != 0)
			return;
	}
}

/* The socket reached its end (err 0) or failed: closes the link. */
static void link_read_failed(struct agg_link *link, int err)
{
	char why[128];

	if (link->state == AGG_LINK_CLOSED)
		return;
	if (link->hs_step == HS_DRAIN)
		snprintf(why, sizeof(why), "%s", link->reason);
	else if (err == 0)
		snprintf(why, sizeof(why), "connection closed by peer");
	else
		snprintf(why, sizeof(why), "read error: %s", strerror(err));
	agg_link_close(link, why);
}

/* Bytes arrived: read what else there is, then handshake, then frames. */
static void link_read_cb(struct bufferevent *bev, void *arg)
{
	struct agg_link *link = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	int ended, err;

	/* At the end, the frames that did arrive are still taken. */
	ended = agg_bev_read_more(link->bev, in);
	err = errno;
	if (link->hs_step != HS_DONE && !link_handshake(link, in)) {
		if (ended != 0)
			link_read_failed(link, err);
		return;
	}
	link_read_frames(link, in);
	if (ended != 0)
		link_read_failed(link, err);
}

/* The output drained below its low-water mark. */
static void link_write_cb(struct bufferevent *bev, void *arg)
{
	struct agg_link *link = arg;

	if (link->hs_step == HS_DRAIN) {
		if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
			char why[128];

			snprintf(why, sizeof(why), "%s", link->reason);
			agg_link_close(link, why);
		}
		return;
	}
	if (link->session != NULL && link->state != AGG_LINK_HANDSHAKE) {
		if (!agg_bev_is_reading(link->reader, bev)) {
			agg_bev_set_reading(link->reader, bev, true);
			link_read_frames(link, bufferevent_get_input(bev));
			if (link->state == AGG_LINK_CLOSED)
				return;
		}
		agg_session_on_link_writable(link->session, link);
	}
}

/* EOF or error on the pipe. */
static void link_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct agg_link *link = arg;
	char why[128];
	int err = EVUTIL_SOCKET_ERROR();

	(void)bev;
	if (what & BEV_EVENT_EOF)
		snprintf(why, sizeof(why), "connection closed by peer");
	else if (what & BEV_EVENT_ERROR)
		snprintf(why, sizeof(why), "%s error: %s",
		    (what & BEV_EVENT_READING) ? "read" : "write",
		    err ? evutil_socket_error_to_string(err) : "I/O failure");
	else
		return;
	if (link->hs_step == HS_DRAIN)
		snprintf(why, sizeof(why), "%s", link->reason);
	agg_link_close(link, why);
}

/* Handshake timeout, drain timeout, or the session's liveness tick. */
static void link_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct agg_link *link = arg;
	char why[128];

	(void)fd;
	(void)what;
	if (link->hs_step == HS_DRAIN) {
		snprintf(why, sizeof(why), "%s", link->reason);
		agg_link_close(link, why);
	} else if (link->hs_step != HS_DONE) {
		agg_link_close(link, "handshake timed out");
	} else if (link->session != NULL) {
		agg_session_on_link_timer(link->session, link);
	}
}

/* Link name given at creation. */
const char *agg_link_name(const struct agg_link *link)
{
	return link->name;
}

/* Link id within its session. */
uint32_t agg_link_id(const struct agg_link *link)
{
	return link->id;
}

/* Attaches owner data to a link. */
void agg_link_set_user(struct agg_link *link, void *user)
{
	link->user = user;
}

/* Owner data of a link. */
void *agg_link_user(const struct agg_link *link)
{
	return link->user;
}
