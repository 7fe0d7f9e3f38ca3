/*
 * stream.c: one stream inside a session: its send buffer and credit, its
 * reassembly by offset, its open/result/FIN/reset life, and the callbacks
 * to its owner.
 */
#include "internal.h"
#include "block.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "agg/log.h"

/* Out-of-order pieces a stream, and a session, hold at most. Adjacent
 * pieces merge, so honest traffic needs about one per link and hole. */
#define STREAM_MAX_OOO 4096
#define SESSION_MAX_OOO 16384


/* The owner drained input: count it and grant the peer more credit. */
static void stream_rx_drain_cb(struct evbuffer *buf,
    const struct evbuffer_cb_info *info, void *arg)
{
	struct agg_stream *st = arg;

	(void)buf;
	if (info->n_deleted == 0 || st->rx_accounted)
		return;
	st->rx_consumed += info->n_deleted;
	agg_session_consumed(st->session, info->n_deleted);
	agg_stream_grant_credit(st);
}

/* Creates a stream and adds it to the session's table. */
struct agg_stream *agg_stream_new(struct agg_session *s, uint32_t id,
    enum agg_stream_state state)
{
	struct agg_stream *st;

	if ((st = calloc(1, sizeof(*st))) == NULL)
		return NULL;
	st->tx_buf = evbuffer_new();
	st->rx_buf = evbuffer_new();
	if (st->tx_buf == NULL || st->rx_buf == NULL ||
	    evbuffer_add_cb(st->rx_buf, stream_rx_drain_cb, st) == NULL) {
		if (st->tx_buf)
			evbuffer_free(st->tx_buf);
		if (st->rx_buf)
			evbuffer_free(st->rx_buf);
		free(st);
		return NULL;
	}
	st->session = s;
	st->id = id;
	st->state = state;
	st->rx_limit = s->cfg.stream_window;
	agg_session_stream_add(s, st);
	return st;
}

/* Settles the stream's share of the session credit at its final size:
 * everything up to final counts as received and consumed. */
static void stream_finish_rx(struct agg_stream *st, uint64_t final)
{
	struct agg_session *s = st->session;

	if (st->rx_accounted)
		return;
	if (final < st->rx_highest)
		final = st->rx_highest;
	agg_session_received(s, final - st->rx_highest);
	st->rx_highest = final;
	st->rx_accounted = true;
	agg_session_consumed(s, final - st->rx_consumed);
	st->rx_consumed = final;
}

/* Frees a stream and everything it holds. */
void agg_stream_destroy(struct agg_stream *st)
{
	struct agg_rxseg *p;

	stream_finish_rx(st, st->rx_highest);
	agg_session_stream_remove(st->session, st);
	while ((p = st->rx_ooo) != NULL) {
		st->rx_ooo = p->next;
		st->session->ooo_pieces--;
		evbuffer_free(p->data);
		free(p);
	}
	evbuffer_free(st->tx_buf);
	evbuffer_free(st->rx_buf);
	free(st);
}

/* Enters an owner callback. */
static void stream_cb_enter(struct agg_stream *st)
{
	st->in_callback++;
}

/* Leaves an owner callback; false if the owner freed the stream in it. */
static bool stream_cb_leave(struct agg_stream *st)
{
	st->in_callback--;
	if (st->in_callback == 0 && st->owner_gone) {
		agg_stream_release(st);
		return false;
	}
	return !st->owner_gone;
}

/* Queues a RESET carrying our final offset. */
static void stream_send_reset(struct agg_stream *st, int code,
    const char *reason)
{
	struct agg_frame f;

	if (st->reset_sent)
		return;
	st->reset_sent = true;
	memset(&f, 0, sizeof(f));
	f.type = AGG_FRAME_RESET;
	f.stream = st->id;
	f.value = st->tx_offset;
	f.code = (uint8_t)code;
	f.message_len = agg_frame_set_message(&f, reason);
	agg_session_queue_control(st->session, &f);
	evbuffer_drain(st->tx_buf, evbuffer_get_length(st->tx_buf));
}

/* Queues RESULT for a stream the peer opened. */
static void stream_send_result(struct agg_stream *st, int code,
    const char *message)
{
	struct agg_frame f;

	memset(&f, 0, sizeof(f));
	f.type = AGG_FRAME_RESULT;
	f.stream = st->id;
	f.code = (uint8_t)code;
	f.window = (uint32_t)st->rx_limit;
	f.message_len = agg_frame_set_message(&f, message);
	agg_session_queue_control(st->session, &f);
}

/* Whether every byte up to the peer's FIN has been received. */
static bool stream_rx_complete(const struct agg_stream *st)
{
	return st->rx_fin_known && st->rx_offset == st->rx_fin;
}

/* After our RESET: wait for the peer's final offset, unless its FIN
 * already told it (then the peer may have forgotten the stream). */
static void stream_become_zombie(struct agg_stream *st)
{
	if (st->rx_fin_known) {
		stream_finish_rx(st, st->rx_fin);
		agg_stream_destroy(st);
		return;
	}
	st->state = AGG_STREAM_ZOMBIE;
	evbuffer_drain(st->rx_buf, evbuffer_get_length(st->rx_buf));
}

/* The owner is gone: finish gracefully, reset, or free now. */
void agg_stream_release(struct agg_stream *st)
{
	switch (st->state) {
	case AGG_STREAM_PENDING:
		stream_send_result(st, AGG_ERR_GENERAL, "refused");
		agg_stream_destroy(st);
		return;
	case AGG_STREAM_OPENING:
	case AGG_STREAM_OPEN:
		if (stream_rx_complete(st) && !st->reset_sent) {
			/* Only our direction is left: FIN after pending data. */
			st->tx_fin_wanted = true;
			if (st->tx_fin_sent)
				agg_stream_destroy(st);
			else
				agg_session_stream_ready(st->session, st);
			return;
		}
		stream_send_reset(st, AGG_ERR_GENERAL, "stream closed");
		stream_become_zombie(st);
		return;
	case AGG_STREAM_ZOMBIE:
		return;
	default:
		agg_stream_destroy(st);
		return;
	}
}

/* Moves out-of-order pieces that have become contiguous. */
static void stream_pull_ooo(struct agg_stream *st)
{
	struct agg_rxseg *p;
	uint64_t end;

	while ((p = st->rx_ooo) != NULL && p->offset <= st->rx_offset) {
		end = p->offset + evbuffer_get_length(p->data);
		if (end > st->rx_offset) {
			evbuffer_drain(p->data, st->rx_offset - p->offset);
			evbuffer_add_buffer(st->rx_buf, p->data);
			st->rx_offset = end;
		}
		st->rx_ooo = p->next;
		st->rx_ooo_count--;
		st->session->ooo_pieces--;
		evbuffer_free(p->data);
		free(p);
	}
}

/* Keeps a piece that arrived ahead of the bytes before it. */
static int stream_hold_ooo(struct agg_stream *st, uint64_t offset,
    uint16_t len, struct evbuffer *in)
{
	struct agg_rxseg *p, **pp, *prev = NULL;

	for (pp = &st->rx_ooo; *pp != NULL && (*pp)->offset < offset;
	    pp = &(*pp)->next)
		prev = *pp;
	if (prev != NULL && prev->offset + evbuffer_get_length(prev->data) ==
	    offset) {
		/* Continues the piece before it: no new piece. */
		agg_block_move(in, prev->data, len);
		return 0;
	}
	if (st->rx_ooo_count >= STREAM_MAX_OOO ||
	    st->session->ooo_pieces >= SESSION_MAX_OOO ||
	    (p = calloc(1, sizeof(*p))) == NULL)
		return -1;
	if ((p->data = evbuffer_new()) == NULL) {
		free(p);
		return -1;
	}
	p->offset = offset;
	agg_block_move(in, p->data, len);
	p->next = *pp;
	*pp = p;
	st->rx_ooo_count++;
	st->session->ooo_pieces++;
	return 0;
}

/* Tells the owner about new bytes and the end of the peer's data. */
static void stream_deliver(struct agg_stream *st)
{
	if (st->state != AGG_STREAM_OPEN || st->owner_gone ||
	    st->in_callback > 0 || st->cbs == NULL)
		return;
	if (evbuffer_get_length(st->rx_buf) > 0 && st->cbs->readable) {
		stream_cb_enter(st);
		st->cbs->readable(st, st->arg);
		if (!stream_cb_leave(st))
			return;
	}
	if (stream_rx_complete(st) && !st->rx_eof_told) {
		st->rx_eof_told = true;
		if (st->cbs->eof) {
			stream_cb_enter(st);
			st->cbs->eof(st, st->arg);
			stream_cb_leave(st);
		}
	}
}

/* Takes a DATA payload of len bytes from the front of in. */
int agg_stream_on_data(struct agg_stream *st, uint64_t offset, bool fin,
    uint16_t len, struct evbuffer *in, const char **why)
{
	struct agg_session *s = st->session;
	uint64_t end = offset + len;

	if (end > st->rx_limit) {
		*why = "data beyond stream credit";
		return -1;
	}
	if (st->state == AGG_STREAM_ZOMBIE || st->state == AGG_STREAM_CLOSED ||
	    st->rx_accounted) {
		/* Discarded, but it still counts as received and consumed. */
		if (!st->rx_accounted && end > st->rx_highest) {
			agg_session_received(s, end - st->rx_highest);
			agg_session_consumed(s, end - st->rx_highest);
			st->rx_consumed += end - st->rx_highest;
			st->rx_highest = end;
		}
		evbuffer_drain(in, len);
		/* A FIN gives the final offset a RESET answer would have. */
		if (fin && st->state == AGG_STREAM_ZOMBIE) {
			stream_finish_rx(st, end);
			agg_stream_destroy(st);
		}
		return 0;
	}
	if (fin) {
		if ((st->rx_fin_known && st->rx_fin != end) ||
		    end < st->rx_highest) {
			*why = "inconsistent FIN";
			return -1;
		}
		st->rx_fin = end;
		st->rx_fin_known = true;
	} else if (st->rx_fin_known && end > st->rx_fin) {
		*why = "data after FIN";
		return -1;
	}
	if (end > st->rx_highest) {
		if (agg_session_received(s, end - st->rx_highest) != 0) {
			*why = "data beyond session credit";
			return -1;
		}
		st->rx_highest = end;
	}
	if (end <= st->rx_offset) {
		evbuffer_drain(in, len);
	} else if (offset <= st->rx_offset) {
		evbuffer_drain(in, st->rx_offset - offset);
		agg_block_move(in, st->rx_buf, end - st->rx_offset);
		st->rx_offset = end;
		stream_pull_ooo(st);
	} else if (stream_hold_ooo(st, offset, len, in) != 0) {
		*why = "too many out-of-order pieces";
		return -1;
	}
	stream_deliver(st);
	return 0;
}

/* Grants the peer more stream credit once a quarter of it is used. */
void agg_stream_grant_credit(struct agg_stream *st)
{
	uint64_t w = st->session->cfg.stream_window;
	struct agg_frame f;

	if (st->state != AGG_STREAM_OPEN || st->rx_fin_known ||
	    st->rx_limit - st->rx_consumed >= w - w / 4)
		return;
	st->rx_limit = st->rx_consumed + w;
	memset(&f, 0, sizeof(f));
	f.type = AGG_FRAME_CREDIT;
	f.stream = st->id;
	f.value = st->rx_limit;
	agg_session_queue_control(st->session, &f);
}

/* The peer answered our OPEN. */
void agg_stream_on_result(struct agg_stream *st, const struct agg_frame *f)
{
	/* A refusal ends a stream we already reset: no answer will come. */
	if (st->state == AGG_STREAM_ZOMBIE && f->code != AGG_OK) {
		agg_stream_destroy(st);
		return;
	}
	if (st->state != AGG_STREAM_OPENING)
		return;
	if (f->code == AGG_OK) {
		st->state = AGG_STREAM_OPEN;
		if (f->window > st->tx_limit)
			st->tx_limit = f->window;
	} else {
		st->state = AGG_STREAM_CLOSED;
		stream_finish_rx(st, st->rx_highest);
	}
	if (st->owner_gone) {
		agg_stream_release(st);
		return;
	}
	if (st->cbs != NULL && st->cbs->result != NULL) {
		stream_cb_enter(st);
		st->cbs->result(st, f->code, f->message, st->arg);
		if (!stream_cb_leave(st))
			return;
	}
	if (st->state == AGG_STREAM_OPEN) {
		agg_session_stream_ready(st->session, st);
		agg_stream_grant_credit(st);
		stream_deliver(st);
	}
}

/* The peer reset the stream; -1 if its final offset is impossible. */
int agg_stream_on_reset(struct agg_stream *st, const struct agg_frame *f)
{
	char reason[AGG_MAX_MESSAGE + 32];

	if (f->value > st->rx_limit ||
	    (st->rx_fin_known && f->value != st->rx_fin))
		return -1;
	stream_finish_rx(st, f->value);
	if (st->state == AGG_STREAM_ZOMBIE) {
		agg_stream_destroy(st);
		return 0;
	}
	stream_send_reset(st, f->code, "reset by peer");
	snprintf(reason, sizeof(reason), "reset by peer%s%s",
	    f->message_len ? ": " : "", f->message);
	agg_stream_fail(st, f->code ? f->code : AGG_ERR_GENERAL, reason);
	return 0;
}

/* The stream failed: tell the owner, who frees it. */
void agg_stream_fail(struct agg_stream *st, int code, const char *reason)
{
	if (st->state == AGG_STREAM_ZOMBIE || st->owner_gone) {
		if (st->in_callback == 0) {
			agg_stream_destroy(st);
			return;
		}
		/* Inside its own callback: stream_cb_leave() releases it. */
		st->state = AGG_STREAM_CLOSED;
		stream_finish_rx(st, st->rx_highest);
		return;
	}
	st->state = AGG_STREAM_CLOSED;
	st->fail_code = (uint8_t)code;
	snprintf(st->fail_reason, sizeof(st->fail_reason), "%s", reason);
	evbuffer_drain(st->tx_buf, evbuffer_get_length(st->tx_buf));
	/* Whatever it still holds is not the session's to count any more. */
	stream_finish_rx(st, st->rx_highest);
	if (st->cbs != NULL && st->cbs->closed != NULL &&
	    st->in_callback == 0) {
		stream_cb_enter(st);
		st->cbs->closed(st, code, reason, st->arg);
		stream_cb_leave(st);
	}
}

/* Whether the stream has bytes (with credit) or a FIN to send. */
bool agg_stream_wants_send(const struct agg_stream *st)
{
	size_t pending = evbuffer_get_length(st->tx_buf);

	if (st->state != AGG_STREAM_OPEN)
		return false;
	if (pending > 0)
		return st->tx_offset < st->tx_limit;
	return st->tx_fin_wanted && !st->tx_fin_sent;
}

/* Cuts the next DATA segment of at most max payload bytes, or NULL. */
struct agg_seg *agg_stream_next_seg(struct agg_stream *st, uint64_t max)
{
	size_t avail = evbuffer_get_length(st->tx_buf);
	uint64_t n = avail;
	struct agg_seg *seg;
	bool fin;

	if (st->state != AGG_STREAM_OPEN)
		return NULL;
	if (n > st->tx_limit - st->tx_offset)
		n = st->tx_limit - st->tx_offset;
	if (n > max)
		n = max;
	fin = st->tx_fin_wanted && !st->tx_fin_sent && n == avail;
	if ((n == 0 && !fin) || (seg = agg_session_seg_get(st->session)) ==
	    NULL)
		return NULL;
	seg->type = AGG_FRAME_DATA;
	seg->flags = fin ? AGG_DATA_FIN : 0;
	seg->stream = st->id;
	seg->offset = st->tx_offset;
	seg->len = (uint32_t)n;
	seg->wire_len = (uint32_t)n + AGG_FRAME_HEADER_LEN + AGG_DATA_HEADER_LEN;
	agg_block_move(st->tx_buf, seg->body, (size_t)n);
	st->tx_offset += n;
	if (fin)
		st->tx_fin_sent = true;
	return seg;
}

/* After a segment left: wake a waiting writer, or finish a closed stream. */
void agg_stream_after_send(struct agg_stream *st)
{
	size_t limit = st->session->cfg.stream_send_buffer;

	if (st->owner_gone) {
		if (st->tx_fin_sent && stream_rx_complete(st))
			agg_stream_destroy(st);
		return;
	}
	if (st->tx_want_write && evbuffer_get_length(st->tx_buf) <= limit / 2) {
		st->tx_want_write = false;
		if (st->cbs != NULL && st->cbs->writable != NULL &&
		    st->in_callback == 0) {
			stream_cb_enter(st);
			st->cbs->writable(st, st->arg);
			stream_cb_leave(st);
		}
	}
}

/* Opens a stream to target. */
struct agg_stream *agg_session_open_stream(struct agg_session *s,
    const struct agg_target *target, const struct agg_stream_callbacks *cbs,
    void *arg)
{
	struct agg_stream *st;
	struct agg_frame f;

	if (s->closed || s->restarting || s->nstreams >= s->cfg.max_streams ||
	    s->next_stream_id > UINT32_MAX - 2)
		return NULL;
	if ((st = agg_stream_new(s, s->next_stream_id, AGG_STREAM_OPENING)) ==
	    NULL)
		return NULL;
	s->next_stream_id += 2;
	st->cbs = cbs;
	st->arg = arg;
	memset(&f, 0, sizeof(f));
	f.type = AGG_FRAME_OPEN;
	f.stream = st->id;
	f.code = AGG_OPEN_TCP;
	f.window = (uint32_t)st->rx_limit;
	f.target = *target;
	agg_session_queue_control(s, &f);
	return st;
}

/* Accepts a stream the peer opened. */
void agg_stream_accept(struct agg_stream *st,
    const struct agg_stream_callbacks *cbs, void *arg)
{
	if (st->state == AGG_STREAM_CLOSED && !st->owner_gone) {
		/* The opener gave up while we were connecting: say so now. */
		st->cbs = cbs;
		st->arg = arg;
		if (cbs != NULL && cbs->closed != NULL) {
			stream_cb_enter(st);
			cbs->closed(st, st->fail_code, st->fail_reason, arg);
			stream_cb_leave(st);
		}
		return;
	}
	if (st->state != AGG_STREAM_PENDING)
		return;
	st->cbs = cbs;
	st->arg = arg;
	st->state = AGG_STREAM_OPEN;
	stream_send_result(st, AGG_OK, "");
	agg_session_stream_ready(st->session, st);
}

/* Hands the stream's events to other callbacks. */
void agg_stream_set_callbacks(struct agg_stream *st,
    const struct agg_stream_callbacks *cbs, void *arg)
{
	if (st->owner_gone)
		return;
	st->cbs = cbs;
	st->arg = arg;
}

/* Refuses a stream the peer opened, and frees it. */
void agg_stream_refuse(struct agg_stream *st, int code, const char *message)
{
	if (st->state == AGG_STREAM_PENDING) {
		stream_send_result(st, code == AGG_OK ? AGG_ERR_GENERAL : code,
		    message);
		st->state = AGG_STREAM_CLOSED;
	}
	agg_stream_free(st);
}

/* In-order bytes from the peer. */
struct evbuffer *agg_stream_input(struct agg_stream *st)
{
	return st->rx_buf;
}

/* Bytes the stream still takes. */
size_t agg_stream_write_space(const struct agg_stream *st)
{
	size_t len = evbuffer_get_length(st->tx_buf);
	size_t limit = st->session->cfg.stream_send_buffer;

	if (st->state == AGG_STREAM_CLOSED || st->state == AGG_STREAM_ZOMBIE ||
	    st->tx_fin_wanted)
		return 0;
	return len >= limit ? 0 : limit - len;
}

/* Moves up to max bytes from src into the stream. */
size_t agg_stream_write(struct agg_stream *st, struct evbuffer *src,
    size_t max)
{
	size_t space = agg_stream_write_space(st);
	size_t want = evbuffer_get_length(src), n;

	if (want > max)
		want = max;
	n = want > space ? space : want;
	if (n > 0) {
		agg_block_move(src, st->tx_buf, n);
		agg_session_stream_ready(st->session, st);
	}
	/* A full buffer means the writer waits for the writable callback. */
	if (n < want || agg_stream_write_space(st) == 0)
		st->tx_want_write = true;
	return n;
}

/* Asks for the writable callback once the stream has room again. */
void agg_stream_wait_writable(struct agg_stream *st)
{
	st->tx_want_write = true;
}

/* Sends FIN after everything written so far. */
void agg_stream_shutdown(struct agg_stream *st)
{
	if (st->tx_fin_wanted)
		return;
	st->tx_fin_wanted = true;
	agg_session_stream_ready(st->session, st);
}

/* Aborts the stream and frees it. */
void agg_stream_reset(struct agg_stream *st, int code, const char *reason)
{
	if (st->owner_gone)
		return;
	st->owner_gone = true;
	st->cbs = NULL;
	if (st->state == AGG_STREAM_OPEN || st->state == AGG_STREAM_OPENING) {
		stream_send_reset(st, code, reason);
		/* Inside a callback, stream_cb_leave() releases it. */
		if (st->in_callback == 0)
			stream_become_zombie(st);
		return;
	}
	if (st->state == AGG_STREAM_PENDING) {
		stream_send_result(st, code, reason);
		st->state = AGG_STREAM_CLOSED;
	}
	if (st->in_callback == 0)
		agg_stream_release(st);
}

/* The owner is done with the stream. */
void agg_stream_free(struct agg_stream *st)
{
	if (st == NULL || st->owner_gone)
		return;
	st->owner_gone = true;
	st->cbs = NULL;
	if (st->in_callback == 0)
		agg_stream_release(st);
}

/* Stream id. */
uint32_t agg_stream_id(const struct agg_stream *st)
{
	return st->id;
}

/* Session of a stream. */
struct agg_session *agg_stream_session(const struct agg_stream *st)
{
	return st->session;
}
