/*
 * agg/session.h: one session carrying many streams over many links.
 *
 * A session lives in one libevent loop. Links are connected byte pipes
 * (bufferevents) handed over by a transport; the session runs the link
 * handshake on them, then spreads every stream's data across them, acks,
 * resends what a dead or stalled link did not deliver, and reassembles each
 * stream in order. No sockets are opened here.
 *
 * Client side: agg_session_new_client() + agg_session_add_link().
 * Server side: agg_hub (agg/hub.h) authenticates links and creates sessions.
 */
#ifndef AGG_SESSION_H
#define AGG_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "agg/target.h"

struct event_base;
struct bufferevent;
struct evbuffer;

struct agg_session;
struct agg_stream;
struct agg_link;

/* Tunables; agg_config_init() fills the defaults. */
struct agg_config {
	uint32_t segment_size;       /* max DATA payload per frame */
	uint64_t session_window;     /* receive buffer per session (bytes) */
	uint32_t stream_window;      /* receive buffer per stream (bytes) */
	uint32_t stream_send_buffer; /* bytes a stream buffers before the
	                                application must wait */
	uint32_t link_cap_min;       /* in-flight bytes per link, floor */
	uint32_t link_cap_max;       /* in-flight bytes per link, ceiling */
	uint32_t link_output_max;    /* bytes queued in a link's bufferevent */
	uint32_t stall_floor_ms;     /* lower bound of the stall timeout */
	uint32_t idle_ping_ms;       /* ping an idle link this often */
	uint32_t link_dead_ms;       /* close a link stalled this long */
	uint32_t handshake_ms;       /* a link handshake must finish in this */
	uint32_t grace_ms;           /* a session without links waits this */
	uint32_t max_streams;        /* open streams per session */
	uint32_t max_links;          /* links per session */
};

/* Stream result and reset codes: the SOCKS5 reply codes. */
enum agg_result {
	AGG_OK = 0,
	AGG_ERR_GENERAL = 1,
	AGG_ERR_DENIED = 2,
	AGG_ERR_NET_UNREACHABLE = 3,
	AGG_ERR_HOST_UNREACHABLE = 4,
	AGG_ERR_REFUSED = 5,
	AGG_ERR_TIMEOUT = 6,
	AGG_ERR_UNSUPPORTED = 7,
	AGG_ERR_ADDRESS_TYPE = 8,
};

enum agg_link_state {
	AGG_LINK_HANDSHAKE,
	AGG_LINK_UP,
	AGG_LINK_STALLED,
	AGG_LINK_CLOSED,
};


/* Events of a session, for its owner. */
struct agg_session_callbacks {
	/* The peer opened a stream: answer with agg_stream_accept() or
	 * agg_stream_refuse(), now or later. */
	void (*stream_opened)(struct agg_session *session,
	    struct agg_stream *stream, const struct agg_target *target,
	    void *arg);
	/* A link changed state; on AGG_LINK_CLOSED the link is freed after
	 * the callback returns. */
	void (*link_state)(struct agg_session *session, struct agg_link *link,
	    enum agg_link_state state, const char *reason, void *arg);
	/* The session is over (every stream got its closed callback); the
	 * owner frees it with agg_session_free(), not from this callback. */
	void (*closed)(struct agg_session *session, const char *reason,
	    void *arg);
};

/* Events of a stream, for its owner. Every callback may be NULL. */
struct agg_stream_callbacks {
	/* The opener's answer: AGG_OK or an error code, with a message. */
	void (*result)(struct agg_stream *stream, int code,
	    const char *message, void *arg);
	/* New in-order bytes are in agg_stream_input(). */
	void (*readable)(struct agg_stream *stream, void *arg);
	/* The peer finished sending: nothing follows what is in the input. */
	void (*eof)(struct agg_stream *stream, void *arg);
	/* The send buffer has room again. */
	void (*writable)(struct agg_stream *stream, void *arg);
	/* The stream failed (reset by the peer, session lost); the owner
	 * must call agg_stream_free(). */
	void (*closed)(struct agg_stream *stream, int code, const char *reason,
	    void *arg);
};

/* Fills cfg with the defaults. */
void agg_config_init(struct agg_config *cfg);

/* Creates a client session that authenticates its links with key. */
struct agg_session *agg_session_new_client(struct event_base *base,
    const struct agg_config *cfg, const void *key, size_t key_len,
    const struct agg_session_callbacks *cbs, void *arg);
/* Replaces the session's callbacks (the hub's owner sets them). */
void agg_session_set_callbacks(struct agg_session *session,
    const struct agg_session_callbacks *cbs, void *arg);
/* Client: runs the handshake on a connected bufferevent and adds it as a
 * link; the link owns bev from now on. name is for logs and stats. */
struct agg_link *agg_session_add_link(struct agg_session *session,
    struct bufferevent *bev, const char *name);
/* Closes the session: resets its streams and closes its links. */
void agg_session_close(struct agg_session *session, const char *reason);
/* Frees a session (closing it first if needed). */
void agg_session_free(struct agg_session *session);
/* Whether the session has failed or been closed. */
int agg_session_is_closed(const struct agg_session *session);
/* Number of links in state UP. */
size_t agg_session_links_up(const struct agg_session *session);
/* Hex session id (33 bytes incl. NUL) for logs. */
const char *agg_session_id_hex(const struct agg_session *session);

/* Opens a stream to target; result arrives through cbs->result. NULL when
 * the session is closed or at its stream limit. */
struct agg_stream *agg_session_open_stream(struct agg_session *session,
    const struct agg_target *target, const struct agg_stream_callbacks *cbs,
    void *arg);
/* Server: accepts a stream the peer opened (sends RESULT ok). */
void agg_stream_accept(struct agg_stream *stream,
    const struct agg_stream_callbacks *cbs, void *arg);
/* Hands the stream's events to other callbacks (e.g. a splice). */
void agg_stream_set_callbacks(struct agg_stream *stream,
    const struct agg_stream_callbacks *cbs, void *arg);
/* Server: refuses a stream the peer opened and frees it. */
void agg_stream_refuse(struct agg_stream *stream, int code,
    const char *message);
/* In-order bytes from the peer; drain it to grant the peer more credit. */
struct evbuffer *agg_stream_input(struct agg_stream *stream);
/* Bytes the stream takes before agg_stream_write() stops taking more. */
size_t agg_stream_write_space(const struct agg_stream *stream);
/* Moves up to max bytes from src into the stream; returns bytes moved. */
size_t agg_stream_write(struct agg_stream *stream, struct evbuffer *src,
    size_t max);
/* Asks for the writable callback once the stream has room again (for a
 * writer that found agg_stream_write_space() at 0 and read nothing). */
void agg_stream_wait_writable(struct agg_stream *stream);
/* Sends FIN after everything written so far. */
void agg_stream_shutdown(struct agg_stream *stream);
/* Aborts the stream (RESET to the peer) and frees it. */
void agg_stream_reset(struct agg_stream *stream, int code,
    const char *reason);
/* The owner is done; no callback runs after this. If the peer has finished
 * sending, our direction ends with a FIN after the data written so far and
 * the stream frees itself once that is out. Otherwise the stream is reset
 * (unsent data is dropped), like closing a TCP socket with unread data. */
void agg_stream_free(struct agg_stream *stream);
/* Stream id (odd: opened by the client, even: by the server). */
uint32_t agg_stream_id(const struct agg_stream *stream);
/* Session a stream belongs to. */
struct agg_session *agg_stream_session(const struct agg_stream *stream);

/* Link name given at creation. */
const char *agg_link_name(const struct agg_link *link);
/* Link id within its session. */
uint32_t agg_link_id(const struct agg_link *link);
/* Owner data attached to a link (a transport's reconnect state). */
void agg_link_set_user(struct agg_link *link, void *user);
void *agg_link_user(const struct agg_link *link);
/* Closes one link with a reason; its unacked data moves to the others. */
void agg_link_close(struct agg_link *link, const char *reason);

/* Per-link statistics. */
struct agg_link_stats {
	uint32_t id;
	enum agg_link_state state;
	char name[64];
	char reason[128];      /* why it stalled or closed */
	uint64_t state_since_us;
	uint64_t tx_bytes, rx_bytes;       /* frame bytes on the wire */
	uint64_t tx_payload, rx_payload;   /* DATA payload bytes */
	uint64_t tx_rate_bps, rx_rate_bps; /* bits/s, smoothed */
	uint64_t delivery_rate_bps;        /* acked bits/s, windowed max */
	uint32_t srtt_us, rttvar_us, rtt_min_us;
	uint64_t inflight_bytes;           /* sent, not acked */
	uint64_t cap_bytes;                /* in-flight limit */
	uint64_t queued_bytes;             /* in the link's output buffer */
	uint64_t resent_frames;            /* its frames resent elsewhere */
};

/* Per-session statistics. */
struct agg_session_stats {
	char id[33];
	int closed;
	size_t links, links_up, streams;
	uint64_t tx_payload, rx_payload;
	uint64_t tx_rate_bps, rx_rate_bps;
	uint64_t unacked_bytes;   /* retained for resend */
	uint64_t buffered_bytes;  /* received, not yet read by streams */
	uint64_t resent_frames, duplicate_frames;
};

/* Fills the session's statistics. */
void agg_session_get_stats(const struct agg_session *session,
    struct agg_session_stats *out);
/* Fills up to cap links' statistics; returns the number of links. */
size_t agg_session_get_link_stats(const struct agg_session *session,
    struct agg_link_stats *out, size_t cap);

/* Sets the C library's allocator up for bulk data (keeps freed buffers):
 * call once at program start. */
void agg_tune_allocator(void);

#endif
