/*
 * front.c: -D and -L listeners and their connections. A connection goes
 * through at most four states: the SOCKS5 / HTTP handshake (-D only),
 * waiting for the server to connect the stream (nothing more is read from
 * the client meanwhile), spliced to the stream, and closing: after an
 * error reply we stop writing, discard what the client still sends for a
 * moment, then close, so that the reply is not lost to a reset.
 */
#include "front.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "agg/log.h"
#include "agg/session.h"
#include "agg/splice.h"
#include "client.h"
#include "socks.h"

/* A -D client must finish its handshake within this. */
#define FRONT_HANDSHAKE_MS 30000u
/* How long a closing connection may take to hear our reply. */
#define FRONT_LINGER_MS 2000u
/* What a closing connection may still send us before we stop waiting. */
#define FRONT_LINGER_MAX (64u * 1024u)
/* Listening sockets of one front (one per resolved address). */
#define FRONT_MAX_LISTENERS 8
/* What a client may send while its stream opens, kept for the splice. */
#define FRONT_OPENING_INPUT_MAX (64u * 1024u)
/* Pause before accepting again after accept() failed (out of fds). */
#define FRONT_ACCEPT_RETRY_MS 1000u

enum conn_state {
	CONN_HANDSHAKE,
	CONN_OPENING,
	CONN_SPLICED,
	CONN_CLOSING,
};

struct front_conn {
	struct front *front;
	TAILQ_ENTRY(front_conn) entry;
	enum conn_state state;
	struct bufferevent *bev;
	struct agg_stream *stream;    /* while opening */
	struct agg_splice *splice;    /* once connected */
	struct event *timer;
	struct socks parser;
	size_t discarded;             /* bytes thrown away while closing */
	char peer[80];
	char target[300];
};

struct front {
	struct client *c;
	struct front_spec spec;
	const struct socks_users *users;
	struct evconnlistener *listeners[FRONT_MAX_LISTENERS];
	size_t nlisteners;
	struct event *retry;
	TAILQ_HEAD(, front_conn) conns;
	size_t nconns;
};

static void front_conn_linger(struct front_conn *conn, const char *reason);

/* Splits text at the colons outside brackets; the number of fields, or -1
 * if there are more than max or one does not fit. */
static int front_split(const char *text, char fields[][256], int max)
{
	int n = 0, depth = 0;
	size_t len = 0;

	for (;; text++) {
		if (*text == '\0' || (*text == ':' && depth == 0)) {
			if (n == max)
				return -1;
			fields[n++][len] = '\0';
			len = 0;
			if (*text == '\0')
				return depth == 0 ? n : -1;
			continue;
		}
		if (*text == '[')
			depth++;
		else if (*text == ']' && --depth < 0)
			return -1;
		if (len + 1 >= sizeof(fields[0]))
			return -1;
		fields[n][len++] = *text;
	}
}

/* Whether text is a port number 1..65535. */
static int front_port_ok(const char *text)
{
	unsigned long port = 0;
	size_t i;

	if (text[0] == '\0' || strlen(text) > 5)
		return 0;
	for (i = 0; text[i] != '\0'; i++) {
		if (text[i] < '0' || text[i] > '9')
			return 0;
		port = port * 10 + (unsigned long)(text[i] - '0');
	}
	return port >= 1 && port <= 65535;
}

/* Copies a bind address, without brackets; "*" and "" mean every address.
 * -1 if it is malformed. */
static int front_bind_addr(const char *text, char *out, size_t cap)
{
	size_t len = strlen(text);

	if (strcmp(text, "*") == 0) {
		out[0] = '\0';
		return 0;
	}
	if (text[0] == '[') {
		if (len < 3 || text[len - 1] != ']' || len - 2 >= cap)
			return -1;
		memcpy(out, text + 1, len - 2);
		out[len - 2] = '\0';
		return strchr(out, '[') == NULL && strchr(out, ']') == NULL ?
		    0 : -1;
	}
	if (strchr(text, '[') != NULL || strchr(text, ']') != NULL ||
	    len >= cap)
		return -1;
	memcpy(out, text, len + 1);
	return 0;
}

/* Parses -D [ADDR:]PORT. */
int front_spec_socks(const char *arg, struct front_spec *spec, char *err,
    size_t errlen)
{
	char fields[2][256];
	int n;

	memset(spec, 0, sizeof(*spec));
	spec->kind = FRONT_SOCKS;
	n = front_split(arg, fields, 2);
	if (n < 1 || !front_port_ok(fields[n - 1]) || (n == 2 &&
	    front_bind_addr(fields[0], spec->bind, sizeof(spec->bind)) != 0)) {
		snprintf(err, errlen, "bad -D spec '%s': expected [ADDR:]PORT",
		    arg);
		return -1;
	}
	if (n == 1)
		snprintf(spec->bind, sizeof(spec->bind), "127.0.0.1");
	/* front_port_ok() allowed at most 5 digits. */
	snprintf(spec->port, sizeof(spec->port), "%.7s", fields[n - 1]);
	snprintf(spec->text, sizeof(spec->text), "-D %.290s", arg);
	return 0;
}

/* Parses -L [ADDR:]PORT:HOST:HOSTPORT. */
int front_spec_forward(const char *arg, struct front_spec *spec, char *err,
    size_t errlen)
{
	char fields[4][256], target[300];
	int n, ok;

	memset(spec, 0, sizeof(*spec));
	spec->kind = FRONT_FORWARD;
	n = front_split(arg, fields, 4);
	ok = n >= 3 && front_port_ok(fields[n - 3]) &&
	    front_port_ok(fields[n - 1]) && fields[n - 2][0] != '\0';
	if (ok && n == 4)
		ok = front_bind_addr(fields[0], spec->bind,
		    sizeof(spec->bind)) == 0;
	if (ok) {
		snprintf(target, sizeof(target), "%.255s:%.7s", fields[n - 2],
		    fields[n - 1]);
		ok = agg_target_parse(target, &spec->target) == 0;
	}
	if (!ok) {
		snprintf(err, errlen, "bad -L spec '%s': expected "
		    "[ADDR:]PORT:HOST:HOSTPORT", arg);
		return -1;
	}
	if (n == 3)
		snprintf(spec->bind, sizeof(spec->bind), "127.0.0.1");
	snprintf(spec->port, sizeof(spec->port), "%.7s", fields[n - 3]);
	snprintf(spec->text, sizeof(spec->text), "-L %.290s", arg);
	return 0;
}

/* Formats a socket address as "1.2.3.4:80" or "[::1]:80". */
static void front_format_addr(const struct sockaddr *sa, socklen_t len,
    char *out, size_t cap)
{
	char host[INET6_ADDRSTRLEN + 16], serv[8];

	if (getnameinfo(sa, len, host, sizeof(host), serv, sizeof(serv),
	    NI_NUMERICHOST | NI_NUMERICSERV) != 0)
		snprintf(out, cap, "(unknown)");
	else if (sa->sa_family == AF_INET6)
		snprintf(out, cap, "[%s]:%s", host, serv);
	else
		snprintf(out, cap, "%s:%s", host, serv);
}

/* The one way a connection ends: frees it and whatever it holds. */
static void front_conn_free(struct front_conn *conn, const char *reason)
{
	struct front *f = conn->front;

	agg_log_debug("%s: %s%s%s: closed: %s", f->spec.text, conn->peer,
	    conn->target[0] ? " -> " : "", conn->target, reason);
	TAILQ_REMOVE(&f->conns, conn, entry);
	f->nconns--;
	if (conn->splice != NULL) {
		/* The splice owns the stream and the bufferevent. */
		agg_splice_free(conn->splice);
		conn->bev = NULL;
	} else if (conn->stream != NULL) {
		agg_stream_reset(conn->stream, AGG_ERR_GENERAL, reason);
	}
	if (conn->bev != NULL)
		bufferevent_free(conn->bev);
	event_free(conn->timer);
	free(conn);
	client_conn_closed(f->c);
}

/* Arms the connection's one timer. */
static void front_conn_timer(struct front_conn *conn, unsigned ms)
{
	struct timeval tv = { (time_t)(ms / 1000u),
	    (suseconds_t)(ms % 1000u) * 1000 };

	evtimer_add(conn->timer, &tv);
}

/* Answers the client's request with a stream result, then closes (-D);
 * a -L connection just closes. */
static void front_conn_fail(struct front_conn *conn, int code,
    const char *reason)
{
	struct front *f = conn->front;

	agg_log_info("%s: %s -> %s: %s", f->spec.text, conn->peer,
	    conn->target, reason);
	if (f->spec.kind == FRONT_FORWARD) {
		front_conn_free(conn, reason);
		return;
	}
	socks_answer(&conn->parser, code, reason,
	    bufferevent_get_output(conn->bev));
	front_conn_linger(conn, reason);
}

/* Closing: the client's further bytes are thrown away. */
static void front_linger_read_cb(struct bufferevent *bev, void *arg)
{
	struct front_conn *conn = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	conn->discarded += evbuffer_get_length(in);
	evbuffer_drain(in, evbuffer_get_length(in));
	if (conn->discarded > FRONT_LINGER_MAX)
		front_conn_free(conn, "client kept sending after the reply");
}

/* Closing: our reply is out, so we stop writing. */
static void front_linger_write_cb(struct bufferevent *bev, void *arg)
{
	int fd = (int)bufferevent_getfd(bev);

	(void)arg;
	if (fd >= 0)
		shutdown(fd, SHUT_WR);
}

/* Closing: the client closed too, or the connection failed. */
static void front_linger_event_cb(struct bufferevent *bev, short what,
    void *arg)
{
	(void)bev;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		front_conn_free(arg, "closed after the reply");
}

/* Sends what is queued, then closes once the client has read it. */
static void front_conn_linger(struct front_conn *conn, const char *reason)
{
	struct evbuffer *in = bufferevent_get_input(conn->bev);

	agg_log_debug("%s: %s: closing: %s", conn->front->spec.text,
	    conn->peer, reason);
	conn->state = CONN_CLOSING;
	conn->discarded = evbuffer_get_length(in);
	evbuffer_drain(in, evbuffer_get_length(in));
	bufferevent_setcb(conn->bev, front_linger_read_cb,
	    front_linger_write_cb, front_linger_event_cb, conn);
	bufferevent_setwatermark(conn->bev, EV_READ, 0, 0);
	bufferevent_enable(conn->bev, EV_READ | EV_WRITE);
	if (evbuffer_get_length(bufferevent_get_output(conn->bev)) == 0)
		front_linger_write_cb(conn->bev, conn);
	front_conn_timer(conn, FRONT_LINGER_MS);
}

/* The spliced connection is over, cleanly or not. */
static void front_splice_done_cb(struct agg_splice *sp, int error,
    const char *reason, void *arg)
{
	struct front_conn *conn = arg;
	unsigned long long up, down;

	agg_splice_counts(sp, &up, &down);
	if (error != 0)
		agg_log_info("%s: %s -> %s: %s (%llu bytes up, %llu down)",
		    conn->front->spec.text, conn->peer, conn->target, reason,
		    up, down);
	front_conn_free(conn, error ? reason : "done");
}

/* The server's answer to our stream open. */
static void front_result_cb(struct agg_stream *stream, int code,
    const char *message, void *arg)
{
	struct front_conn *conn = arg;
	struct front *f = conn->front;

	evtimer_del(conn->timer);
	if (code != AGG_OK) {
		conn->stream = NULL;
		agg_stream_free(stream);
		front_conn_fail(conn, code, message[0] ? message :
		    socks_result_text(code));
		return;
	}
	if (f->spec.kind == FRONT_SOCKS)
		socks_answer(&conn->parser, AGG_OK, NULL,
		    bufferevent_get_output(conn->bev));
	/* Bytes the client sent after its request are still in the input:
	 * the splice sends them first. */
	bufferevent_setwatermark(conn->bev, EV_READ, 0, 0);
	conn->splice = agg_splice_new(stream, conn->bev, conn->bev,
	    front_splice_done_cb, conn);
	conn->stream = NULL;
	if (conn->splice == NULL) {
		agg_stream_reset(stream, AGG_ERR_GENERAL, "out of memory");
		front_conn_free(conn, "out of memory");
		return;
	}
	conn->state = CONN_SPLICED;
	agg_log_debug("%s: %s -> %s: connected", f->spec.text, conn->peer,
	    conn->target);
}

/* The stream failed before its answer came: the session is gone. */
static void front_stream_closed_cb(struct agg_stream *stream, int code,
    const char *reason, void *arg)
{
	struct front_conn *conn = arg;

	(void)code;
	evtimer_del(conn->timer);
	conn->stream = NULL;
	agg_stream_free(stream);
	front_conn_fail(conn, AGG_ERR_GENERAL, reason);
}

static const struct agg_stream_callbacks front_stream_cbs = {
	.result = front_result_cb,
	.closed = front_stream_closed_cb,
};

/* Opening: bytes the client sends early wait in the input (up to the
 * watermark) for the splice. */
static void front_opening_read_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	(void)arg;
}

/* Opening: the client went away, so the stream is reset at once. A -L
 * client's EOF may close only its sending half (it still waits for the
 * answer): the splice passes that EOF on later. A -D client waits for its
 * reply before it sends, so its EOF means it gave up. */
static void front_opening_event_cb(struct bufferevent *bev, short what,
    void *arg)
{
	struct front_conn *conn = arg;

	if ((what & BEV_EVENT_EOF) && conn->front->spec.kind ==
	    FRONT_FORWARD) {
		bufferevent_disable(bev, EV_READ);
		return;
	}
	agg_log_info("%s: %s -> %s: client gone while opening",
	    conn->front->spec.text, conn->peer, conn->target);
	if (what & BEV_EVENT_EOF)
		front_conn_free(conn, "client closed while opening");
	else
		front_conn_free(conn, evutil_socket_error_to_string(
		    EVUTIL_SOCKET_ERROR()));
}

/* Asks the server to connect target; the client waits for the answer,
 * and is watched for hanging up meanwhile. */
static void front_conn_open(struct front_conn *conn,
    const struct agg_target *target)
{
	char err[256];

	agg_target_format(target, conn->target, sizeof(conn->target));
	agg_log_debug("%s: %s -> %s: opening", conn->front->spec.text,
	    conn->peer, conn->target);
	bufferevent_setcb(conn->bev, front_opening_read_cb, NULL,
	    front_opening_event_cb, conn);
	bufferevent_setwatermark(conn->bev, EV_READ, 0,
	    FRONT_OPENING_INPUT_MAX);
	bufferevent_enable(conn->bev, EV_READ);
	conn->state = CONN_OPENING;
	conn->stream = client_open_stream(conn->front->c, target,
	    &front_stream_cbs, conn, err, sizeof(err));
	if (conn->stream == NULL) {
		front_conn_fail(conn, AGG_ERR_GENERAL, err);
		return;
	}
	front_conn_timer(conn, CLIENT_OPEN_TIMEOUT_MS);
}

/* Handshake bytes from a -D client. */
static void front_handshake_read_cb(struct bufferevent *bev, void *arg)
{
	struct front_conn *conn = arg;

	switch (socks_parse(&conn->parser, bufferevent_get_input(bev),
	    bufferevent_get_output(bev))) {
	case SOCKS_MORE:
		return;
	case SOCKS_CLOSE:
		agg_log_info("%s: %s: %s", conn->front->spec.text, conn->peer,
		    socks_error(&conn->parser));
		front_conn_linger(conn, socks_error(&conn->parser));
		return;
	case SOCKS_CONNECT:
		evtimer_del(conn->timer);
		front_conn_open(conn, socks_target(&conn->parser));
		return;
	}
}

/* EOF or an error before the connection was spliced. */
static void front_conn_event_cb(struct bufferevent *bev, short what,
    void *arg)
{
	(void)bev;
	if (what & BEV_EVENT_EOF)
		front_conn_free(arg, "client closed");
	else if (what & BEV_EVENT_ERROR)
		front_conn_free(arg, evutil_socket_error_to_string(
		    EVUTIL_SOCKET_ERROR()));
}

/* The connection's timer: a handshake, an answer or a linger took too
 * long. */
static void front_conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct front_conn *conn = arg;
	char why[512];

	(void)fd;
	(void)what;
	switch (conn->state) {
	case CONN_HANDSHAKE:
		front_conn_free(conn, "handshake timed out");
		return;
	case CONN_OPENING:
		if (client_links_up(conn->front->c) == 0)
			snprintf(why, sizeof(why), "no link to the server: %s",
			    client_link_error(conn->front->c));
		else
			snprintf(why, sizeof(why), "no answer from the server "
			    "within %u s", CLIENT_OPEN_TIMEOUT_MS / 1000u);
		agg_stream_reset(conn->stream, AGG_ERR_TIMEOUT, why);
		conn->stream = NULL;
		front_conn_fail(conn, AGG_ERR_TIMEOUT, why);
		return;
	default:
		front_conn_free(conn, "closed after the reply");
		return;
	}
}

/* A new local connection. */
static void front_accept_cb(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct front *f = arg;
	struct front_conn *conn;
	struct event_base *base = client_base(f->c);
	int one = 1;

	(void)l;
	if ((conn = calloc(1, sizeof(*conn))) == NULL ||
	    (conn->bev = bufferevent_socket_new(base, fd,
	    BEV_OPT_CLOSE_ON_FREE)) == NULL ||
	    (conn->timer = evtimer_new(base, front_conn_timer_cb, conn)) ==
	    NULL) {
		agg_log_warn("%s: out of memory", f->spec.text);
		if (conn != NULL && conn->bev != NULL)
			bufferevent_free(conn->bev);
		else
			close(fd);
		free(conn);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	conn->front = f;
	front_format_addr(sa, (socklen_t)salen, conn->peer,
	    sizeof(conn->peer));
	TAILQ_INSERT_TAIL(&f->conns, conn, entry);
	f->nconns++;
	bufferevent_setcb(conn->bev, front_handshake_read_cb, NULL,
	    front_conn_event_cb, conn);
	if (f->spec.kind == FRONT_FORWARD) {
		front_conn_open(conn, &f->spec.target);
		return;
	}
	conn->state = CONN_HANDSHAKE;
	socks_init(&conn->parser, f->users);
	bufferevent_enable(conn->bev, EV_READ);
	front_conn_timer(conn, FRONT_HANDSHAKE_MS);
}

/* accept() failed, e.g. out of file descriptors: pause instead of
 * spinning. */
static void front_accept_error_cb(struct evconnlistener *l, void *arg)
{
	struct front *f = arg;
	struct timeval tv = { FRONT_ACCEPT_RETRY_MS / 1000u,
	    (FRONT_ACCEPT_RETRY_MS % 1000u) * 1000 };
	size_t i;

	(void)l;
	agg_log_warn("%s: accept failed: %s", f->spec.text,
	    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	for (i = 0; i < f->nlisteners; i++)
		evconnlistener_disable(f->listeners[i]);
	evtimer_add(f->retry, &tv);
}

/* Accepting again after a pause. */
static void front_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct front *f = arg;
	size_t i;

	(void)fd;
	(void)what;
	for (i = 0; i < f->nlisteners; i++)
		evconnlistener_enable(f->listeners[i]);
}

/* Listens on one address; 0, or the errno of the failure. */
static int front_listen_one(struct front *f, const struct addrinfo *ai)
{
	struct evconnlistener *l;
	int fd, one = 1, e;

	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, ai->ai_protocol);
	if (fd < 0)
		return errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ai->ai_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 ||
	    listen(fd, 511) != 0) {
		e = errno;
		close(fd);
		return e;
	}
	l = evconnlistener_new(client_base(f->c), front_accept_cb, f,
	    LEV_OPT_CLOSE_ON_FREE, 0, fd);
	if (l == NULL) {
		close(fd);
		return ENOMEM;
	}
	evconnlistener_set_error_cb(l, front_accept_error_cb);
	f->listeners[f->nlisteners++] = l;
	return 0;
}

/* Whether an earlier entry of the list has the same address. */
static int front_addr_seen(const struct addrinfo *list,
    const struct addrinfo *ai)
{
	for (; list != ai; list = list->ai_next)
		if (list->ai_addrlen == ai->ai_addrlen &&
		    memcmp(list->ai_addr, ai->ai_addr, ai->ai_addrlen) == 0)
			return 1;
	return 0;
}

/* Listens on every address of the spec. */
struct front *front_new(struct client *c, const struct front_spec *spec,
    const struct socks_users *users, char *err, size_t errlen)
{
	struct addrinfo hints, *res, *ai;
	struct front *f;
	char where[300];
	int r, e = 0;

	if ((f = calloc(1, sizeof(*f))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	f->c = c;
	f->spec = *spec;
	f->users = spec->kind == FRONT_SOCKS ? users : NULL;
	TAILQ_INIT(&f->conns);
	if ((f->retry = evtimer_new(client_base(c), front_retry_cb, f)) ==
	    NULL) {
		free(f);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	r = getaddrinfo(spec->bind[0] ? spec->bind : NULL, spec->port, &hints,
	    &res);
	if (r != 0) {
		snprintf(err, errlen, "cannot listen on %s:%s: %s",
		    spec->bind[0] ? spec->bind : "*", spec->port,
		    gai_strerror(r));
		front_free(f);
		return NULL;
	}
	for (ai = res; ai != NULL && f->nlisteners < FRONT_MAX_LISTENERS;
	    ai = ai->ai_next) {
		if (front_addr_seen(res, ai) || (r = front_listen_one(f, ai)) ==
		    0)
			continue;
		front_format_addr(ai->ai_addr, ai->ai_addrlen, where,
		    sizeof(where));
		snprintf(err, errlen, "cannot listen on %s: %s", where,
		    strerror(r));
		e = r;
		/* An address family the host lacks is skipped if another
		 * address works; anything else is fatal. */
		if (r != EAFNOSUPPORT && r != EADDRNOTAVAIL)
			break;
		agg_log_debug("%s", err);
	}
	freeaddrinfo(res);
	if (f->nlisteners == 0 || (e != 0 && e != EAFNOSUPPORT &&
	    e != EADDRNOTAVAIL)) {
		front_free(f);
		return NULL;
	}
	agg_log_info("%s: listening", spec->text);
	return f;
}

/* Stops accepting. */
void front_stop(struct front *f)
{
	size_t i;

	for (i = 0; i < f->nlisteners; i++)
		evconnlistener_free(f->listeners[i]);
	f->nlisteners = 0;
	evtimer_del(f->retry);
}

/* Connections still open. */
size_t front_conns(const struct front *f)
{
	return f->nconns;
}

/* Closes the listeners and every connection. */
void front_free(struct front *f)
{
	struct front_conn *conn;

	if (f == NULL)
		return;
	front_stop(f);
	while ((conn = TAILQ_FIRST(&f->conns)) != NULL)
		front_conn_free(conn, "client shutting down");
	event_free(f->retry);
	free(f);
}
