/*
 * splice.c: a stream joined to a local byte pipe, both ways, with
 * back-pressure and half-close.
 */
#include "agg/splice.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

#include "agg/session.h"
#include "agg/bevio.h"
#include "block.h"
#include "internal.h"

/* Bytes queued towards the local side before we stop taking more. */
#define SPLICE_OUT_HIGH (256u * 1024u)

struct agg_splice {
	struct agg_stream *stream;
	struct bufferevent *in, *out;
	struct agg_bev_reader *reader;  /* reads in's socket; NULL: libevent */
	struct agg_bev_writer *writer;  /* writes out's socket; NULL: libevent */
	agg_splice_done_cb cb;
	void *arg;
	bool local_eof;   /* the local side finished sending */
	bool fin_sent;    /* ... and the stream got our FIN */
	bool remote_eof;  /* the peer finished sending */
	bool out_shut;    /* ... and the local side got everything */
	bool done;
	int error;
	char reason[256];
	unsigned long long up, down;
};

static void splice_pump_up(struct agg_splice *sp);
static void splice_pump_down(struct agg_splice *sp);
static void splice_event_cb(struct bufferevent *bev, short what, void *arg);

/* Ends the splice once, telling the owner. */
static void splice_finish(struct agg_splice *sp, int error,
    const char *reason)
{
	if (sp->done)
		return;
	sp->done = true;
	sp->error = error;
	snprintf(sp->reason, sizeof(sp->reason), "%s", reason);
	if (sp->in != NULL)
		agg_bev_set_reading(sp->reader, sp->in, false);
	sp->cb(sp, error, sp->reason, sp->arg);
}

/* Finishes cleanly when both directions are over. */
static void splice_check_done(struct agg_splice *sp)
{
	if (sp->fin_sent && sp->out_shut)
		splice_finish(sp, 0, "closed");
}

/* Local to stream: as much as the stream takes; pause reading otherwise. */
static void splice_pump_up(struct agg_splice *sp)
{
	struct evbuffer *in;
	size_t len;

	if (sp->done || sp->in == NULL)
		return;
	in = bufferevent_get_input(sp->in);
	if ((len = evbuffer_get_length(in)) > 0)
		sp->up += agg_stream_write(sp->stream, in, len);
	if (evbuffer_get_length(in) > 0) {
		agg_bev_set_reading(sp->reader, sp->in, false);
		return;
	}
	if (sp->local_eof) {
		if (!sp->fin_sent) {
			sp->fin_sent = true;
			agg_stream_shutdown(sp->stream);
			splice_check_done(sp);
		}
		return;
	}
	agg_bev_set_reading(sp->reader, sp->in, true);
}

/* Shuts the local write side once the peer's data is all out. */
static void splice_shut_out(struct agg_splice *sp)
{
	int fd;

	sp->out_shut = true;
	if (sp->out == sp->in) {
		fd = (int)bufferevent_getfd(sp->out);
		if (fd >= 0)
			shutdown(fd, SHUT_WR);
	} else {
		agg_bev_writer_free(sp->writer);
		sp->writer = NULL;
		bufferevent_free(sp->out);
		sp->out = NULL;
	}
	splice_check_done(sp);
}

/* Stream to local: up to the output's high-water mark. */
static void splice_pump_down(struct agg_splice *sp)
{
	struct evbuffer *src, *out;
	size_t have, room;

	if (sp->done || sp->out == NULL || sp->out_shut)
		return;
	src = agg_stream_input(sp->stream);
	out = bufferevent_get_output(sp->out);
	have = evbuffer_get_length(src);
	room = evbuffer_get_length(out) < SPLICE_OUT_HIGH ?
	    SPLICE_OUT_HIGH - evbuffer_get_length(out) : 0;
	if (have > room)
		have = room;
	if (have > 0) {
		/* The writer sends it at the end of this pass: the frames a
		 * link read delivers leave in one write, not one per frame. */
		agg_block_move(src, out, have);
		sp->down += have;
	}
	if (sp->remote_eof && evbuffer_get_length(src) == 0 &&
	    evbuffer_get_length(out) == 0)
		splice_shut_out(sp);
}

/* Local bytes arrived: take what else the socket holds, then move it. */
static void splice_read_cb(struct bufferevent *bev, void *arg)
{
	struct agg_splice *sp = arg;
	int err;

	if (sp->reader != NULL && agg_stream_write_space(sp->stream) == 0) {
		/* Nothing read: the stream's writable callback reads on. */
		agg_stream_wait_writable(sp->stream);
		agg_bev_set_reading(sp->reader, bev, false);
		return;
	}
	if (agg_stream_write_space(sp->stream) > 0 &&
	    agg_bev_read_more(bev, bufferevent_get_input(bev)) != 0) {
		err = errno;
		/* An ended socket stays readable: stop asking. */
		agg_bev_set_reading(sp->reader, bev, false);
		splice_pump_up(sp);
		errno = err;
		if (err == 0)
			splice_event_cb(bev, BEV_EVENT_EOF | BEV_EVENT_READING,
			    sp);
		else
			splice_event_cb(bev, BEV_EVENT_ERROR |
			    BEV_EVENT_READING, sp);
		return;
	}
	splice_pump_up(sp);
}

/* The local output drained. */
static void splice_write_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	splice_pump_down(arg);
}

/* EOF or an error on a local side. */
static void splice_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct agg_splice *sp = arg;
	char why[160];
	int err = EVUTIL_SOCKET_ERROR();

	if ((what & BEV_EVENT_EOF) && bev == sp->in) {
		sp->local_eof = true;
		splice_pump_up(sp);
		return;
	}
	if (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF)) {
		snprintf(why, sizeof(why), "local %s failed: %s",
		    (what & BEV_EVENT_WRITING) ? "write" : "read",
		    err ? evutil_socket_error_to_string(err) : "closed");
		splice_finish(sp, AGG_ERR_GENERAL, why);
	}
}

/* Stream: new bytes from the peer. */
static void splice_readable_cb(struct agg_stream *st, void *arg)
{
	(void)st;
	splice_pump_down(arg);
}

/* Stream: the peer finished sending. */
static void splice_eof_cb(struct agg_stream *st, void *arg)
{
	struct agg_splice *sp = arg;

	(void)st;
	sp->remote_eof = true;
	splice_pump_down(sp);
}

/* Stream: room for more local bytes. */
static void splice_writable_cb(struct agg_stream *st, void *arg)
{
	(void)st;
	splice_pump_up(arg);
}

/* Stream: reset by the peer or lost with the session. */
static void splice_closed_cb(struct agg_stream *st, int code,
    const char *reason, void *arg)
{
	(void)st;
	splice_finish(arg, code ? code : AGG_ERR_GENERAL, reason);
}

static const struct agg_stream_callbacks splice_stream_cbs = {
	.readable = splice_readable_cb,
	.eof = splice_eof_cb,
	.writable = splice_writable_cb,
	.closed = splice_closed_cb,
};

/* Splices an open stream with a local pipe. */
struct agg_splice *agg_splice_new(struct agg_stream *stream,
    struct bufferevent *in, struct bufferevent *out, agg_splice_done_cb cb,
    void *arg)
{
	struct agg_splice *sp;

	if ((sp = calloc(1, sizeof(*sp))) == NULL)
		return NULL;
	sp->stream = stream;
	sp->in = in;
	sp->out = out;
	sp->cb = cb;
	sp->arg = arg;
	/* A blocking local socket would stall the whole event loop. */
	if (bufferevent_getfd(in) >= 0)
		evutil_make_socket_nonblocking(bufferevent_getfd(in));
	if (out != in && bufferevent_getfd(out) >= 0)
		evutil_make_socket_nonblocking(bufferevent_getfd(out));
	agg_stream_set_callbacks(stream, &splice_stream_cbs, sp);
	bufferevent_setcb(in, splice_read_cb, in == out ? splice_write_cb :
	    NULL, splice_event_cb, sp);
	sp->reader = agg_bev_reader_new(in, splice_read_cb, sp);
	if (out != in)
		bufferevent_setcb(out, NULL, splice_write_cb, splice_event_cb,
		    sp);
	bufferevent_setwatermark(out, EV_WRITE, SPLICE_OUT_HIGH / 2, 0);
	/* libevent writes 16 KiB per call by default: one call per readiness
	 * event then costs a wakeup per 16 KiB. */
	bufferevent_set_max_single_write(out, SPLICE_OUT_HIGH);
	bufferevent_enable(out, EV_WRITE);
	sp->writer = agg_bev_writer_new(out);
	/* Whatever arrived before the splice existed moves now. */
	splice_pump_down(sp);
	splice_pump_up(sp);
	return sp;
}

/* Bytes moved so far each way. */
void agg_splice_counts(const struct agg_splice *sp, unsigned long long *up,
    unsigned long long *down)
{
	*up = sp->up;
	*down = sp->down;
}

/* Frees the splice, resetting the stream unless it ended cleanly. */
void agg_splice_free(struct agg_splice *sp)
{
	if (sp == NULL)
		return;
	if (sp->done && sp->error == 0)
		agg_stream_free(sp->stream);
	else
		agg_stream_reset(sp->stream, sp->error ? sp->error :
		    AGG_ERR_GENERAL, sp->done ? sp->reason : "closed");
	agg_bev_writer_free(sp->writer);
	if (sp->out != NULL && sp->out != sp->in)
		bufferevent_free(sp->out);
	agg_bev_reader_free(sp->reader);
	if (sp->in != NULL)
		bufferevent_free(sp->in);
	free(sp);
}
