/*
 * stdpipe.c: -W: stdin and stdout as the two halves of one local pipe,
 * spliced to a stream once the server has connected it. EOF on stdin
 * becomes our FIN; the server's FIN closes stdout.
 */
#include "stdpipe.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/event.h>

#include "agg/log.h"
#include "agg/session.h"
#include "agg/splice.h"
#include "client.h"
#include "socks.h"

struct stdpipe {
	struct client *c;
	struct bufferevent *in, *out;
	struct agg_stream *stream;    /* while opening */
	struct agg_splice *splice;    /* once connected */
	struct event *timer;          /* bounds the wait for the answer */
	int flags[2];                 /* fd 0 and 1 flags before we started */
	int saved[2];                 /* copies of fd 0 and 1: the splice
	                                 may close those before the end */
	char target[300];
};

/* The stream is over: so is the program. */
static void stdpipe_done_cb(struct agg_splice *sp, int error,
    const char *reason, void *arg)
{
	struct stdpipe *p = arg;
	unsigned long long up, down;

	agg_splice_counts(sp, &up, &down);
	agg_log_info("-W %s: %s (%llu bytes up, %llu down)", p->target,
	    error ? reason : "done", up, down);
	if (error != 0)
		client_exit(p->c, 1, "connection to %s failed: %s", p->target,
		    reason);
	else
		client_exit(p->c, 0, "connection to %s done", p->target);
	/* A clean end frees the stream once its FIN is out, which the
	 * shutdown waits for. */
	agg_splice_free(sp);
	p->splice = NULL;
}

/* The server's answer to our stream open. */
static void stdpipe_result_cb(struct agg_stream *stream, int code,
    const char *message, void *arg)
{
	struct stdpipe *p = arg;

	evtimer_del(p->timer);
	if (code != AGG_OK) {
		p->stream = NULL;
		agg_stream_free(stream);
		if (message == NULL || message[0] == '\0')
			message = socks_result_text(code);
		/* The server's message usually says what it connected to. */
		if (strncmp(message, "connect to ", 11) == 0)
			client_exit(p->c, 1, "%s", message);
		else
			client_exit(p->c, 1, "connect to %s failed: %s",
			    p->target, message);
		return;
	}
	p->splice = agg_splice_new(stream, p->in, p->out, stdpipe_done_cb, p);
	p->stream = NULL;
	if (p->splice == NULL) {
		agg_stream_reset(stream, AGG_ERR_GENERAL, "out of memory");
		client_exit(p->c, 1, "out of memory");
		return;
	}
	p->in = p->out = NULL;
	agg_log_info("-W %s: connected", p->target);
}

/* The session was lost before the answer came. */
static void stdpipe_closed_cb(struct agg_stream *stream, int code,
    const char *reason, void *arg)
{
	struct stdpipe *p = arg;

	(void)code;
	evtimer_del(p->timer);
	p->stream = NULL;
	agg_stream_free(stream);
	client_exit(p->c, 1, "connect to %s failed: %s", p->target, reason);
}

/* No answer in time. */
static void stdpipe_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct stdpipe *p = arg;

	(void)fd;
	(void)what;
	if (client_links_up(p->c) == 0)
		client_exit(p->c, 1, "connect to %s failed: no link to the "
		    "server: %s", p->target, client_link_error(p->c));
	else
		client_exit(p->c, 1, "connect to %s failed: no answer from "
		    "the server within %u s", p->target,
		    CLIENT_OPEN_TIMEOUT_MS / 1000u);
}

static const struct agg_stream_callbacks stdpipe_stream_cbs = {
	.result = stdpipe_result_cb,
	.closed = stdpipe_closed_cb,
};

/* Joins stdin and stdout to a new stream to target. */
struct stdpipe *stdpipe_new(struct client *c, const struct agg_target *target,
    char *err, size_t errlen)
{
	struct event_base *base = client_base(c);
	struct timeval tv = { 0, 0 };
	struct stdpipe *p;
	int fd;

	if ((p = calloc(1, sizeof(*p))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	p->c = c;
	p->flags[0] = p->flags[1] = -1;
	p->saved[0] = p->saved[1] = -1;
	agg_target_format(target, p->target, sizeof(p->target));
	for (fd = 0; fd < 2; fd++) {
		if ((p->flags[fd] = fcntl(fd, F_GETFL)) < 0) {
			snprintf(err, errlen, "-W needs an open %s",
			    fd == 0 ? "stdin" : "stdout");
			stdpipe_free(p);
			return NULL;
		}
		if ((p->saved[fd] = fcntl(fd, F_DUPFD_CLOEXEC, 3)) < 0) {
			snprintf(err, errlen, "cannot duplicate %s: %s",
			    fd == 0 ? "stdin" : "stdout", strerror(errno));
			stdpipe_free(p);
			return NULL;
		}
	}
	/* Only now: fd 0 and 1 may be one open file (a terminal, an inetd
	 * socket), whose flags fd 1 would otherwise read non-blocking. */
	for (fd = 0; fd < 2; fd++)
		fcntl(fd, F_SETFL, p->flags[fd] | O_NONBLOCK);
	p->in = bufferevent_socket_new(base, 0, BEV_OPT_CLOSE_ON_FREE);
	p->out = bufferevent_socket_new(base, 1, BEV_OPT_CLOSE_ON_FREE);
	p->timer = evtimer_new(base, stdpipe_timer_cb, p);
	if (p->in == NULL || p->out == NULL || p->timer == NULL) {
		snprintf(err, errlen, "out of memory");
		stdpipe_free(p);
		return NULL;
	}
	/* Nothing is read from stdin before the stream is connected. */
	bufferevent_disable(p->in, EV_READ);
	p->stream = client_open_stream(c, target, &stdpipe_stream_cbs, p, err,
	    errlen);
	if (p->stream == NULL) {
		stdpipe_free(p);
		return NULL;
	}
	tv.tv_sec = CLIENT_OPEN_TIMEOUT_MS / 1000u;
	evtimer_add(p->timer, &tv);
	return p;
}

/* Ends the pipe; stdin and stdout get their blocking mode back. */
void stdpipe_free(struct stdpipe *p)
{
	int fd;

	if (p == NULL)
		return;
	/* The flags belong to the open files, shared with whoever started
	 * us (a shell's terminal, ssh's ProxyCommand pipes), which expect
	 * them as they were; set them through the copies, as fd 0 and 1
	 * may be closed already. */
	for (fd = 0; fd < 2; fd++) {
		if (p->saved[fd] < 0)
			continue;
		if (p->flags[fd] >= 0)
			fcntl(p->saved[fd], F_SETFL, p->flags[fd]);
		close(p->saved[fd]);
	}
	if (p->splice != NULL)
		agg_splice_free(p->splice);
	if (p->stream != NULL)
		agg_stream_reset(p->stream, AGG_ERR_GENERAL,
		    "client shutting down");
	if (p->in != NULL)
		bufferevent_free(p->in);
	if (p->out != NULL)
		bufferevent_free(p->out);
	if (p->timer != NULL)
		event_free(p->timer);
	free(p);
}
