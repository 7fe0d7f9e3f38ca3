/*
 * internal.h: the structures shared by link.c, session.c, stream.c and hub.c.
 * Nothing outside libagg includes this.
 */
#ifndef AGG_INTERNAL_H
#define AGG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "agg/hub.h"
#include "agg/session.h"
#include "wire.h"

#ifndef TAILQ_FOREACH_SAFE
#define TAILQ_FOREACH_SAFE(var, head, field, tvar)			\
	for ((var) = TAILQ_FIRST(head);					\
	    (var) != NULL && ((tvar) = TAILQ_NEXT(var, field), 1);	\
	    (var) = (tvar))
#endif

#define AGG_KEY_MAX 1024
#define AGG_RATE_SAMPLES 8
#define AGG_EARLY_RESETS 64

/* A reliable frame, kept from its first send until it is acked. */
struct agg_seg {
	uint64_t seq;
	uint64_t offset;          /* DATA: stream offset */
	uint64_t link_index;      /* ordinal among the frames sent on link */
	uint64_t sent_us;
	struct agg_link *link;    /* link carrying it; NULL while queued */
	struct evbuffer *body;    /* DATA: payload; others: whole frame */
	uint32_t stream;
	uint32_t len;             /* DATA payload bytes */
	uint32_t wire_len;        /* bytes on the wire */
	uint8_t type;
	uint8_t flags;
	TAILQ_ENTRY(agg_seg) entry;
};
TAILQ_HEAD(agg_seg_list, agg_seg);

/* An out-of-order piece of a stream, waiting for the bytes before it. */
struct agg_rxseg {
	uint64_t offset;
	struct evbuffer *data;
	struct agg_rxseg *next;
};

enum agg_role {
	AGG_ROLE_CLIENT,
	AGG_ROLE_SERVER,
};

struct agg_link {
	struct agg_session *session;  /* NULL while the hub handshakes */
	struct agg_hub *hub;
	struct bufferevent *bev;
	struct agg_bev_reader *reader; /* reads bev's socket; NULL: libevent */
	struct agg_bev_writer *writer; /* writes bev's socket; NULL: libevent */
	struct event *timer;          /* handshake timeout, then liveness */
	enum agg_role role;
	enum agg_link_state state;
	uint32_t id;
	char name[64];
	char reason[128];
	uint64_t state_since_us;
	void *user;

	/* Handshake transcript. */
	int hs_step;
	uint8_t hello[AGG_CLIENT_HELLO_LEN];
	uint8_t shello[AGG_SERVER_HELLO_LEN];
	uint8_t auth[AGG_MAC_LEN];

	/* Sending. */
	struct agg_seg_list inflight; /* in send order */
	uint64_t inflight_bytes;
	uint64_t tx_frames;           /* reliable frames sent */
	uint64_t acked_frames;        /* peer's count for this link */

	/* Receiving. */
	uint64_t rx_frames;           /* reliable frames received */

	/* Round trip and rate. */
	uint32_t srtt_us, rttvar_us, rtt_min_us;
	uint64_t rtt_min_stamp_us;
	uint64_t rate_start_us, rate_delivered;
	uint64_t rate_samples[AGG_RATE_SAMPLES]; /* bytes/s */
	unsigned rate_next;
	uint64_t delivery_rate;       /* bytes/s, max of the samples */
	uint64_t cap;                 /* in-flight limit, bytes */

	/* Liveness. */
	uint64_t ping_sent_us;        /* 0: none outstanding */
	uint64_t last_evidence_us;    /* last pong or ack progress */
	uint64_t last_tx_us;

	/* Statistics. */
	uint64_t tx_bytes, rx_bytes, tx_payload, rx_payload, resent_frames;
	uint64_t stat_tx_bytes, stat_rx_bytes, stat_stamp_us;
	uint64_t tx_rate_bps, rx_rate_bps;

	TAILQ_ENTRY(agg_link) entry;
};
TAILQ_HEAD(agg_link_list, agg_link);

enum agg_stream_state {
	AGG_STREAM_OPENING,   /* we sent OPEN, no RESULT yet */
	AGG_STREAM_PENDING,   /* the peer opened it, not answered yet */
	AGG_STREAM_OPEN,
	AGG_STREAM_CLOSED,    /* failed or reset; owner must free */
	AGG_STREAM_ZOMBIE,    /* owner gone, waiting for the peer's RESET */
};

struct agg_stream {
	struct agg_session *session;
	uint32_t id;
	enum agg_stream_state state;
	const struct agg_stream_callbacks *cbs;
	void *arg;
	int in_callback;
	bool owner_gone;
	bool reset_sent;

	/* Sending. */
	struct evbuffer *tx_buf;  /* written, not yet segmented */
	uint64_t tx_offset;       /* next offset to segment */
	uint64_t tx_limit;        /* peer's credit */
	bool tx_fin_wanted, tx_fin_sent, tx_want_write, tx_ready;
	TAILQ_ENTRY(agg_stream) ready_entry;

	/* Receiving. */
	struct evbuffer *rx_buf;  /* in order, for the owner */
	struct agg_rxseg *rx_ooo; /* out of order, sorted by offset */
	size_t rx_ooo_count;
	uint8_t fail_code;        /* why it closed, for a late accept */
	char fail_reason[96];
	uint64_t rx_offset;       /* next in-order offset */
	uint64_t rx_highest;      /* highest end offset received */
	uint64_t rx_consumed;     /* drained by the owner */
	uint64_t rx_limit;        /* credit granted to the peer */
	uint64_t rx_fin;          /* final offset if rx_fin_known */
	bool rx_fin_known, rx_eof_told;
	bool rx_accounted;        /* share of session credit settled */

	struct agg_stream *hash_next;
};
TAILQ_HEAD(agg_stream_list, agg_stream);

struct agg_session {
	struct event_base *base;
	struct agg_config cfg;
	uint8_t key[AGG_KEY_MAX];
	size_t key_len;
	enum agg_role role;
	struct agg_hub *hub;
	uint8_t id[AGG_SESSION_ID_LEN];
	char id_hex[AGG_SESSION_ID_LEN * 2 + 1];
	bool established;          /* client: a link has been welcomed */
	bool closed;
	bool closed_told;
	bool restarting;
	char close_reason[160];
	const struct agg_session_callbacks *cbs;
	void *arg;
	int in_callback;

	struct agg_link_list links;
	struct agg_link_list dead_links;
	size_t nlinks;             /* UP or STALLED */
	uint32_t next_link_id;

	/* Sending. */
	uint64_t tx_seq;
	uint64_t peer_cum;
	struct agg_seg_list ctrl;   /* control frames waiting for a link */
	size_t nctrl;               /* frames in ctrl */
	bool ctrl_overflow;         /* ctrl reached its cap: close soon */
	struct agg_seg_list resend; /* frames of dead or stalled links */
	struct agg_stream_list ready;
	uint64_t tx_sent;           /* first-transmission payload bytes */
	uint64_t tx_limit;          /* peer's session credit */
	uint64_t unacked_bytes;

	/* Receiving. */
	uint64_t rx_cum;
	uint8_t rx_seen[AGG_SEQ_WINDOW / 8];
	uint64_t rx_received;       /* sum of streams' rx_highest */
	uint64_t rx_consumed;
	uint64_t rx_limit;          /* session credit granted */
	bool ack_pending;
	unsigned ack_frames;        /* reliable frames since the last ACK */

	/* Streams. */
	struct agg_stream **buckets;
	size_t nbuckets, nstreams;
	size_t ooo_pieces;          /* out-of-order pieces of all streams */
	uint32_t next_stream_id;
	uint32_t early_resets[AGG_EARLY_RESETS]; /* RESETs before their OPEN */
	unsigned early_reset_next;

	/* Pools. */
	struct agg_seg_list seg_pool;
	size_t seg_pool_len;

	struct event *kick;
	struct event *grace;
	struct event *ack_timer;

	/* Statistics. */
	uint64_t tx_payload, rx_payload, resent_frames, duplicate_frames;

	TAILQ_ENTRY(agg_session) hub_entry;
};

/* Monotonic clock in microseconds. */
uint64_t agg_now_us(void);

/* link.c */
struct agg_link *agg_link_new(struct event_base *base, struct bufferevent *bev,
    enum agg_role role, const char *name, uint32_t handshake_ms);
void agg_link_start_client(struct agg_link *link, struct agg_session *s);
void agg_link_set_state(struct agg_link *link, enum agg_link_state state,
    const char *reason);
void agg_link_send_raw(struct agg_link *link, const void *data, size_t len);
void agg_link_send_seg(struct agg_link *link, struct agg_seg *seg);
void agg_link_send_control(struct agg_link *link, const struct agg_frame *f);
void agg_link_free(struct agg_link *link);
void agg_link_server_welcome(struct agg_link *link, const uint8_t *key,
    size_t key_len, uint8_t status, const char *reason);
size_t agg_link_queued(const struct agg_link *link);
uint32_t agg_link_stall_timeout_us(const struct agg_link *link,
    uint32_t floor_ms);
void agg_link_schedule_timer(struct agg_link *link, uint64_t delay_us);

/* session.c: entry points for links and streams. */
struct agg_session *agg_session_new(struct event_base *base,
    const struct agg_config *cfg, const void *key, size_t key_len,
    enum agg_role role, const uint8_t id[AGG_SESSION_ID_LEN]);
void agg_session_link_up(struct agg_session *s, struct agg_link *link);
void agg_session_link_closed(struct agg_session *s, struct agg_link *link);
void agg_session_link_welcome(struct agg_session *s, struct agg_link *link,
    uint8_t status);
int agg_session_on_data(struct agg_session *s, struct agg_link *link,
    const uint8_t *hdr, uint8_t flags, uint16_t payload_len,
    struct evbuffer *in);
int agg_session_on_frame(struct agg_session *s, struct agg_link *link,
    const struct agg_frame *f);
void agg_session_on_link_timer(struct agg_session *s, struct agg_link *link);
void agg_session_on_link_writable(struct agg_session *s,
    struct agg_link *link);
void agg_session_kick(struct agg_session *s);
void agg_session_send_ack_on(struct agg_session *s, struct agg_link *carrier);
void agg_session_queue_control(struct agg_session *s, struct agg_frame *f);
struct agg_seg *agg_session_seg_get(struct agg_session *s);
void agg_session_seg_put(struct agg_session *s, struct agg_seg *seg);
void agg_session_stream_ready(struct agg_session *s, struct agg_stream *st);
void agg_session_stream_remove(struct agg_session *s, struct agg_stream *st);
void agg_session_stream_add(struct agg_session *s, struct agg_stream *st);
void agg_session_consumed(struct agg_session *s, uint64_t n);
int agg_session_received(struct agg_session *s, uint64_t n);
struct agg_stream *agg_session_stream_find(struct agg_session *s,
    uint32_t id);
int agg_session_has_id(const struct agg_session *s,
    const uint8_t id[AGG_SESSION_ID_LEN]);
bool agg_session_link_id_used(const struct agg_session *s, uint32_t id);
void agg_session_attach(struct agg_session *s, struct agg_link *link);

/* stream.c */
struct agg_stream *agg_stream_new(struct agg_session *s, uint32_t id,
    enum agg_stream_state state);
void agg_stream_destroy(struct agg_stream *st);
void agg_stream_release(struct agg_stream *st);
int agg_stream_on_data(struct agg_stream *st, uint64_t offset, bool fin,
    uint16_t len, struct evbuffer *in, const char **why);
void agg_stream_on_result(struct agg_stream *st, const struct agg_frame *f);
int agg_stream_on_reset(struct agg_stream *st, const struct agg_frame *f);
void agg_stream_fail(struct agg_stream *st, int code, const char *reason);
struct agg_seg *agg_stream_next_seg(struct agg_stream *st, uint64_t max);
bool agg_stream_wants_send(const struct agg_stream *st);
void agg_stream_after_send(struct agg_stream *st);
void agg_stream_grant_credit(struct agg_stream *st);

/* hub.c */
void agg_hub_on_client_hello(struct agg_hub *hub, struct agg_link *link);
void agg_hub_on_auth(struct agg_hub *hub, struct agg_link *link);
void agg_hub_link_closed(struct agg_hub *hub, struct agg_link *link);

#endif
