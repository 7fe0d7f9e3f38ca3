/*
 * fuzz_session.c: libFuzzer entry point for whole sessions. Each input
 * runs against real libagg objects in a fresh event loop, over socketpairs:
 * the harness completes a valid link handshake by hand, then writes the
 * input as what the peer sends once the link is up.
 *
 *  - Server side (default): a hub whose session owner accepts streams and
 *    echoes a little of what they carry. The harness plays the client
 *    (CREATE, AUTH from the key) and the input is the client's frames.
 *  - Client side: a client session that opens streams (below). The harness
 *    plays the server (SERVER_HELLO, WELCOME with a valid proof) and the
 *    input is the server's frames.
 *
 * Input: if the first byte is a frame type (0x01..0x09), the whole input
 * is frames for the server side, written at once on one link. Otherwise
 * the first byte chooses, then come one cut byte per write but the last,
 * then the frames:
 *   bit 7     client side
 *   bits 0-1  number of writes minus one; a cut byte below 0x80 ends a write
 *             after that many whole frames, else after (b & 0x7f) / 128 of
 *             the frame bytes
 *   bit 2     two links; the writes alternate between them
 *   bit 3     short timers (ping, stall, link death, grace), and a few
 *             waits of up to 3 ms for them to fire
 *   bits 4-6  server side, the second link (bit 2): 0 and 4 CREATE (joins),
 *             1 JOIN, 2 JOIN of an unknown session, 3 a link id in use,
 *             5 a wrong key, 6 CREATE after the first write; 7: no
 *             handshake at all, the input is what the client sends from
 *             its first byte on.
 *             Client side: the second link is added after the first write
 *             and gets a WELCOME of this status (5 and 6 are invalid); 7:
 *             no handshake, the input answers CLIENT_HELLO.
 * With an odd number of frame bytes, the harness shuts its ends down for
 * writing after the last write (EOF on the links).
 *
 * The target port of each OPEN (port % 16) chooses what the stream's owner
 * does: accept and echo, refuse, answer after the input, reset or free it
 * inside stream_opened, free it after its first bytes, reset it when bytes
 * arrive or at EOF, shut down early, close the session from a callback
 * (after freeing the stream, or not).
 * The client side opens five streams: it echoes on the first, resets the
 * second at EOF, frees the third and resets the fourth at once (before any
 * answer) and resets the fifth when its RESULT arrives.
 *
 * AGG_FUZZ_LOG=1 in the environment prints libagg's debug log.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "agg/hub.h"
#include "agg/log.h"
#include "agg/session.h"
#include "auth.h"
#include "wire.h"

#define KEY "fuzz secret"
#define KEY_LEN (sizeof(KEY) - 1)
#define MAX_PEERS 2
#define MAX_DEFERRED 32
/* Bytes echoed per readable callback; bytes written from writable
 * callbacks per input. */
#define ECHO_MAX 1024
#define SPARE_MAX 4096
/* Loop rounds per input, in all; rounds without a byte moving that end a
 * wait; with short timers, waits for them per input, each at most WAIT_US. */
#define ROUNDS_MAX 256
#define QUIET_ROUNDS 3
#define WAITS_MAX 4
#define WAIT_US 3000

#define FLAG_CLIENT 0x80
#define FLAG_TWO_LINKS 0x04
#define FLAG_FAST 0x08
#define MODE_RAW 7

/* Server side: how the second link connects (flag bits 4-6). */
enum second_link {
	SECOND_CREATE = 0,
	SECOND_JOIN = 1,
	SECOND_UNKNOWN = 2,
	SECOND_DUPLICATE = 3,
	SECOND_CREATE_TOO = 4,
	SECOND_WRONG_KEY = 5,
	SECOND_LATE = 6,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The harness's end of one link. */
struct peer {
	int fd;                 /* -1 if never connected */
	bool eof;               /* libagg closed its end, or a write failed */
	const uint8_t *out;     /* bytes still to write */
	size_t out_len;
	uint8_t in[64];         /* handshake bytes being captured */
	size_t in_len, in_want; /* in_want 0: whatever arrives is dropped */
};

/* One input's world. */
struct fuzz {
	struct event_base *base;
	struct agg_config cfg;
	struct agg_hub *hub;
	struct agg_session *client;
	struct peer peers[MAX_PEERS];
	bool fast;
	struct event *wake;     /* bounds a wait for timers */
	unsigned rounds, waits;
	size_t spare;           /* bytes writable callbacks may still write */
	struct agg_stream *deferred[MAX_DEFERRED];
	bool deferred_refuse[MAX_DEFERRED];
	size_t ndeferred;
};

/* Aborts with a message: the harness could not do what any working
 * library lets it do. */
static void fail(const char *what)
{
	fprintf(stderr, "fuzz_session: %s\n", what);
	abort();
}

/* Moves up to ECHO_MAX bytes of input back to the peer; drops the rest. */
static void echo_readable(struct agg_stream *st, void *arg)
{
	struct evbuffer *in = agg_stream_input(st);
	struct evbuffer *echo = evbuffer_new();

	(void)arg;
	if (echo != NULL) {
		evbuffer_remove_buffer(in, echo, ECHO_MAX);
		agg_stream_write(st, echo, ECHO_MAX);
		evbuffer_free(echo);
	}
	evbuffer_drain(in, evbuffer_get_length(in));
}

/* The send buffer has room: fill some of it, while the budget lasts. */
static void spare_writable(struct agg_stream *st, void *arg)
{
	struct fuzz *f = arg;
	struct evbuffer *b;
	size_t n = f->spare < 256 ? f->spare : 256;

	if (n == 0 || (b = evbuffer_new()) == NULL)
		return;
	evbuffer_add_printf(b, "%0*d", (int)n, 0);
	f->spare -= agg_stream_write(st, b, n);
	evbuffer_free(b);
}

/* Drops the input, then lets the stream go. */
static void once_readable(struct agg_stream *st, void *arg)
{
	struct evbuffer *in = agg_stream_input(st);

	(void)arg;
	evbuffer_drain(in, evbuffer_get_length(in));
	agg_stream_free(st);
}

/* Drops the input and aborts the stream. */
static void reset_readable(struct agg_stream *st, void *arg)
{
	struct evbuffer *in = agg_stream_input(st);

	(void)arg;
	evbuffer_drain(in, evbuffer_get_length(in));
	agg_stream_reset(st, AGG_ERR_GENERAL, "reset while reading");
}

/* Echoes, then closes our direction before the peer's. */
static void shut_readable(struct agg_stream *st, void *arg)
{
	echo_readable(st, arg);
	agg_stream_shutdown(st);
}

/* Echoes, then closes the whole session from inside the callback. */
static void close_readable(struct agg_stream *st, void *arg)
{
	echo_readable(st, arg);
	agg_session_close(agg_stream_session(st), "closed while reading");
}

/* Lets the stream go, then closes the whole session, both from inside
 * the callback. */
static void free_close_readable(struct agg_stream *st, void *arg)
{
	struct agg_session *s = agg_stream_session(st);

	(void)arg;
	agg_stream_free(st);
	agg_session_close(s, "done with the stream, closing");
}

/* The peer finished: abort instead of finishing. */
static void reset_eof(struct agg_stream *st, void *arg)
{
	(void)arg;
	agg_stream_reset(st, AGG_ERR_GENERAL, "reset at EOF");
}

/* The peer finished: finish too and let the stream go. */
static void stream_eof(struct agg_stream *st, void *arg)
{
	(void)arg;
	agg_stream_shutdown(st);
	agg_stream_free(st);
}

/* The stream failed: let it go. */
static void stream_closed(struct agg_stream *st, int code, const char *reason,
    void *arg)
{
	(void)code;
	(void)reason;
	(void)arg;
	agg_stream_free(st);
}

/* Our OPEN was answered: send a little, or let a refused stream go. */
static void stream_result(struct agg_stream *st, int code,
    const char *message, void *arg)
{
	static const char req[] = "GET / HTTP/1.0\r\n\r\n";
	struct evbuffer *b;

	(void)message;
	(void)arg;
	if (code != AGG_OK) {
		agg_stream_free(st);
		return;
	}
	if ((b = evbuffer_new()) == NULL)
		return;
	evbuffer_add(b, req, sizeof(req) - 1);
	agg_stream_write(st, b, sizeof(req) - 1);
	evbuffer_free(b);
}

static const struct agg_stream_callbacks echo_cbs = {
	.result = stream_result,
	.readable = echo_readable,
	.eof = stream_eof,
	.writable = spare_writable,
	.closed = stream_closed,
};

static const struct agg_stream_callbacks once_cbs = {
	.readable = once_readable,
	.eof = stream_eof,
	.closed = stream_closed,
};

static const struct agg_stream_callbacks reset_readable_cbs = {
	.readable = reset_readable,
	.eof = stream_eof,
	.closed = stream_closed,
};

static const struct agg_stream_callbacks reset_eof_cbs = {
	.result = stream_result,
	.readable = echo_readable,
	.eof = reset_eof,
	.closed = stream_closed,
};

static const struct agg_stream_callbacks shut_readable_cbs = {
	.readable = shut_readable,
	.eof = stream_eof,
	.closed = stream_closed,
};

static const struct agg_stream_callbacks close_readable_cbs = {
	.readable = close_readable,
	.eof = stream_eof,
	.closed = stream_closed,
};

static const struct agg_stream_callbacks free_close_readable_cbs = {
	.readable = free_close_readable,
	.eof = stream_eof,
	.closed = stream_closed,
};

/* Our OPEN was answered: abort the stream at once. */
static void result_reset(struct agg_stream *st, int code,
    const char *message, void *arg)
{
	(void)message;
	(void)arg;
	if (code != AGG_OK)
		agg_stream_free(st);
	else
		agg_stream_reset(st, AGG_ERR_GENERAL, "reset on result");
}

static const struct agg_stream_callbacks result_reset_cbs = {
	.result = result_reset,
	.readable = echo_readable,
	.eof = stream_eof,
	.closed = stream_closed,
};

/* Keeps a stream the peer opened to answer after the input; answers now
 * when there is no room. */
static void defer_stream(struct fuzz *f, struct agg_stream *st, bool refuse)
{
	if (f->ndeferred == MAX_DEFERRED) {
		agg_stream_accept(st, &echo_cbs, f);
		return;
	}
	f->deferred[f->ndeferred] = st;
	f->deferred_refuse[f->ndeferred] = refuse;
	f->ndeferred++;
}

/* Answers the deferred streams (some may have been reset meanwhile). */
static void answer_deferred(struct fuzz *f)
{
	size_t i;

	for (i = 0; i < f->ndeferred; i++) {
		if (f->deferred_refuse[i])
			agg_stream_refuse(f->deferred[i], AGG_ERR_DENIED,
			    "denied later");
		else
			agg_stream_accept(f->deferred[i], &echo_cbs, f);
	}
	f->ndeferred = 0;
}

/* The peer opened a stream: the target port says what to do with it. */
static void stream_opened(struct agg_session *s, struct agg_stream *st,
    const struct agg_target *target, void *arg)
{
	struct fuzz *f = arg;

	(void)s;
	switch (target->port % 16) {
	case 1:
		agg_stream_refuse(st, (target->port / 8) % 9, "refused");
		break;
	case 2:
		defer_stream(f, st, false);
		break;
	case 4:
		agg_stream_accept(st, &echo_cbs, f);
		agg_stream_reset(st, AGG_ERR_GENERAL, "reset at once");
		break;
	case 5:
		agg_stream_free(st);
		break;
	case 6:
		defer_stream(f, st, true);
		break;
	case 7:
		agg_stream_accept(st, &echo_cbs, f);
		agg_stream_set_callbacks(st, &once_cbs, f);
		break;
	case 8:
		agg_stream_accept(st, &reset_readable_cbs, f);
		break;
	case 9:
		agg_stream_accept(st, &reset_eof_cbs, f);
		break;
	case 10:
		agg_stream_accept(st, &shut_readable_cbs, f);
		break;
	case 12:
		agg_stream_accept(st, &free_close_readable_cbs, f);
		break;
	case 13:
		agg_stream_accept(st, &close_readable_cbs, f);
		break;
	default:
		agg_stream_accept(st, &echo_cbs, f);
		break;
	}
}

/* The session is over; it is freed with the hub or at the end. */
static void session_closed(struct agg_session *s, const char *reason,
    void *arg)
{
	(void)s;
	(void)reason;
	(void)arg;
}

static const struct agg_session_callbacks session_cbs = {
	.stream_opened = stream_opened,
	.closed = session_closed,
};

/* The hub created the session: own it. */
static void hub_session_new(struct agg_hub *hub, struct agg_session *s,
    void *arg)
{
	(void)hub;
	agg_session_set_callbacks(s, &session_cbs, arg);
}

static const struct agg_hub_callbacks hub_cbs = {
	.session_new = hub_session_new,
};

/* The bound of a wait for timers passed: nothing to do. */
static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

/* Reads what a peer's link wrote: into in while capturing, else dropped.
 * Returns whether a byte moved. */
static bool peer_read(struct peer *p)
{
	uint8_t buf[4096];
	bool moved = false;
	ssize_t n;

	while (p->fd >= 0 && !p->eof) {
		if (p->in_want > 0 && p->in_len == p->in_want)
			break;
		if (p->in_want > 0)
			n = recv(p->fd, p->in + p->in_len, p->in_want - p->in_len,
			    0);
		else
			n = recv(p->fd, buf, sizeof(buf), 0);
		if (n == 0 || (n < 0 && errno != EAGAIN &&
		    errno != EWOULDBLOCK && errno != EINTR)) {
			p->eof = true;
			break;
		}
		if (n < 0)
			break;
		if (p->in_want > 0)
			p->in_len += (size_t)n;
		moved = true;
	}
	return moved;
}

/* Writes what a peer still has to send; returns whether a byte moved. */
static bool peer_write(struct peer *p)
{
	ssize_t n;

	if (p->fd < 0 || p->out_len == 0)
		return false;
	if (p->eof) {
		p->out_len = 0;
		return false;
	}
	n = send(p->fd, p->out, p->out_len, MSG_NOSIGNAL);
	if (n < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			p->eof = true;
			p->out_len = 0;
		}
		return false;
	}
	p->out += n;
	p->out_len -= (size_t)n;
	return n > 0;
}

/* Whether some peer still has bytes to write. */
static bool writes_pending(const struct fuzz *f)
{
	size_t i;

	for (i = 0; i < MAX_PEERS; i++)
		if (f->peers[i].fd >= 0 && !f->peers[i].eof &&
		    f->peers[i].out_len > 0)
			return true;
	return false;
}

/* One round: write, run the loop once without waiting, read. Returns
 * whether a byte moved. */
static bool round_once(struct fuzz *f)
{
	bool moved = false;
	size_t i;

	for (i = 0; i < MAX_PEERS; i++)
		moved |= peer_write(&f->peers[i]);
	event_base_loop(f->base, EVLOOP_NONBLOCK);
	for (i = 0; i < MAX_PEERS; i++)
		moved |= peer_read(&f->peers[i]);
	return moved;
}

/* Runs rounds until want (if not NULL) has captured its bytes or closed,
 * or else until everything is written and nothing moved for a while. */
static void pump(struct fuzz *f, struct peer *want)
{
	struct timeval tv = { 0, WAIT_US };
	unsigned quiet = 0;
	bool moved;

	while (f->rounds < ROUNDS_MAX) {
		f->rounds++;
		moved = round_once(f);
		if (want != NULL) {
			if (want->eof || want->in_len == want->in_want)
				return;
			continue;
		}
		if (writes_pending(f) || moved) {
			quiet = 0;
			continue;
		}
		if (++quiet < QUIET_ROUNDS)
			continue;
		if (!f->fast || f->waits >= WAITS_MAX)
			return;
		/* Block until a timer fires (at most WAIT_US), look again. */
		f->waits++;
		evtimer_add(f->wake, &tv);
		event_base_loop(f->base, EVLOOP_ONCE);
		evtimer_del(f->wake);
		quiet = 0;
	}
}

/* Writes len bytes on p while capturing the next want bytes that arrive
 * on it into p->in (want 0: until written and quiet). Whatever is left
 * unwritten when the rounds run out is dropped. False if p closed before
 * want bytes arrived. */
static bool peer_exchange(struct fuzz *f, struct peer *p, const uint8_t *data,
    size_t len, size_t want)
{
	p->out = data;
	p->out_len = len;
	p->in_len = 0;
	p->in_want = want;
	pump(f, want > 0 ? p : NULL);
	p->out = NULL;
	p->out_len = 0;
	p->in_want = 0;
	return p->in_len == want;
}

/* Makes a socketpair; our end non-blocking in p, libagg's end in a new
 * bufferevent. NULL on failure. */
static struct bufferevent *peer_connect(struct fuzz *f, struct peer *p)
{
	struct bufferevent *bev;
	int fds[2];

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0)
		fail("socketpair failed");
	if (fcntl(fds[0], F_SETFL, O_NONBLOCK) != 0)
		fail("fcntl failed");
	p->fd = fds[0];
	bev = bufferevent_socket_new(f->base, fds[1], BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL)
		fail("bufferevent_socket_new failed");
	return bev;
}

/* Server side: connects a link to the hub and runs the client's side of
 * the handshake, with CREATE if create, and key. Returns the WELCOME
 * status, or -1 if the hub closed the link first. */
static int client_handshake(struct fuzz *f, struct peer *p, uint8_t sid,
    bool create, uint32_t link_id, const char *key)
{
	uint8_t hello[AGG_CLIENT_HELLO_LEN], shello[AGG_SERVER_HELLO_LEN];
	uint8_t auth[AGG_MAC_LEN];
	struct agg_client_hello ch;
	struct agg_welcome w;

	agg_hub_add_link(f->hub, peer_connect(f, p), "fuzz");
	memset(&ch, 0, sizeof(ch));
	ch.version_min = ch.version_max = AGG_PROTOCOL_VERSION;
	ch.flags = create ? AGG_HELLO_CREATE : 0;
	memset(ch.session_id, sid, sizeof(ch.session_id));
	ch.link_id = link_id;
	memset(ch.nonce, (int)(0x10 + link_id), sizeof(ch.nonce));
	agg_client_hello_encode(&ch, hello);
	if (!peer_exchange(f, p, hello, sizeof(hello), AGG_SERVER_HELLO_LEN))
		return -1;
	memcpy(shello, p->in, sizeof(shello));
	if (agg_auth_client_mac((const uint8_t *)key, strlen(key), hello,
	    shello, auth) != 0)
		fail("agg_auth_client_mac failed");
	if (!peer_exchange(f, p, auth, sizeof(auth), AGG_WELCOME_LEN))
		return -1;
	if (agg_welcome_decode(p->in, AGG_WELCOME_LEN, &w) != AGG_WIRE_OK)
		fail("bad WELCOME from the hub");
	return w.status;
}

/* Server side: connects the second link as mode says. */
static void second_link(struct fuzz *f, unsigned mode)
{
	struct peer *p = &f->peers[1];
	int status, expect = AGG_WELCOME_OK;

	switch (mode) {
	case SECOND_JOIN:
		status = client_handshake(f, p, 0xa5, false, 2, KEY);
		break;
	case SECOND_UNKNOWN:
		status = client_handshake(f, p, 0x5a, false, 2, KEY);
		expect = AGG_WELCOME_UNKNOWN_SESSION;
		break;
	case SECOND_DUPLICATE:
		status = client_handshake(f, p, 0xa5, true, 1, KEY);
		expect = AGG_WELCOME_DUPLICATE_LINK;
		break;
	case SECOND_WRONG_KEY:
		status = client_handshake(f, p, 0xa5, true, 2, "wrong");
		expect = AGG_WELCOME_AUTH_FAILED;
		break;
	case SECOND_LATE:
		/* After the first write anything may have happened to the
		 * session (closed by the peer, say). */
		client_handshake(f, p, 0xa5, true, 2, KEY);
		return;
	default:
		status = client_handshake(f, p, 0xa5, true, 2, KEY);
		break;
	}
	if (status != expect)
		fail("unexpected WELCOME for the second link");
}

/* Client side: answers the client's handshake on p as the server, with
 * a WELCOME of this status and a valid proof. False if the client closed
 * the link first. */
static bool server_handshake(struct fuzz *f, struct peer *p, uint8_t status)
{
	uint8_t hello[AGG_CLIENT_HELLO_LEN], shello[AGG_SERVER_HELLO_LEN];
	uint8_t auth[AGG_MAC_LEN], expect[AGG_MAC_LEN], wbuf[AGG_WELCOME_LEN];
	struct agg_client_hello ch;
	struct agg_server_hello sh;
	struct agg_welcome w;

	if (!peer_exchange(f, p, NULL, 0, AGG_CLIENT_HELLO_LEN))
		return false;
	memcpy(hello, p->in, sizeof(hello));
	if (agg_client_hello_decode(hello, sizeof(hello), &ch) != AGG_WIRE_OK)
		fail("bad CLIENT_HELLO from the client");
	memset(&sh, 0, sizeof(sh));
	sh.version = AGG_PROTOCOL_VERSION;
	sh.status = AGG_HELLO_OK;
	memset(sh.nonce, 0x20, sizeof(sh.nonce));
	agg_server_hello_encode(&sh, shello);
	if (!peer_exchange(f, p, shello, sizeof(shello), AGG_AUTH_LEN))
		return false;
	memcpy(auth, p->in, sizeof(auth));
	if (agg_auth_client_mac((const uint8_t *)KEY, KEY_LEN, hello, shello,
	    expect) != 0 || !agg_auth_equal(expect, auth))
		fail("the client's AUTH does not verify");
	memset(&w, 0, sizeof(w));
	w.status = status;
	if (agg_auth_server_proof((const uint8_t *)KEY, KEY_LEN, hello, shello,
	    auth, status, w.proof) != 0)
		fail("agg_auth_server_proof failed");
	agg_welcome_encode(&w, wbuf);
	peer_exchange(f, p, wbuf, sizeof(wbuf), 0);
	return true;
}

/* Offset of the end of the k-th whole frame of data (0: the start), or of
 * the last whole frame if there are fewer. */
static size_t frame_boundary(const uint8_t *data, size_t size, unsigned k)
{
	size_t pos = 0, next;

	for (; k > 0 && pos + AGG_FRAME_HEADER_LEN <= size; k--) {
		next = pos + AGG_FRAME_HEADER_LEN +
		    (((size_t)data[pos + 2] << 8) | data[pos + 3]);
		if (next > size)
			break;
		pos = next;
	}
	return pos;
}

/* Cuts the body into n pieces (1..4), one cut byte each but the last:
 * below 0x80 a frame boundary (that many frames in), else a byte offset
 * ((b & 0x7f) / 128 of the body). cuts[i] is where piece i ends. */
static void cut_points(const uint8_t *cut, const uint8_t *data, size_t size,
    unsigned n, size_t cuts[4])
{
	unsigned i, j;
	size_t t;

	for (i = 0; i + 1 < n; i++)
		cuts[i] = cut[i] < 0x80 ? frame_boundary(data, size, cut[i]) :
		    (size_t)(cut[i] & 0x7f) * size / 128;
	cuts[n - 1] = size;
	for (i = 1; i < n; i++)
		for (j = i; j > 0 && cuts[j - 1] > cuts[j]; j--) {
			t = cuts[j];
			cuts[j] = cuts[j - 1];
			cuts[j - 1] = t;
		}
}

/* Shuts the harness's ends down for writing: EOF on the links. */
static void peers_shutdown(struct fuzz *f)
{
	size_t i;

	for (i = 0; i < MAX_PEERS; i++)
		if (f->peers[i].fd >= 0)
			shutdown(f->peers[i].fd, SHUT_WR);
}

/* Writes the pieces on the links in turn, calling late (if given) after
 * the first; shuts down with an odd size; answers deferred streams. */
static void send_all(struct fuzz *f, const uint8_t *data, size_t size,
    const uint8_t *cut, unsigned pieces, size_t npeers,
    void (*late)(struct fuzz *f, unsigned mode), unsigned mode)
{
	size_t cuts[4], from = 0;
	unsigned k;

	cut_points(cut, data, size, pieces, cuts);
	for (k = 0; k < pieces; k++) {
		peer_exchange(f, &f->peers[k % npeers], data + from,
		    cuts[k] - from, 0);
		from = cuts[k];
		if (k == 0 && late != NULL)
			late(f, mode);
	}
	if (size % 2 == 1)
		peers_shutdown(f);
	pump(f, NULL);
	answer_deferred(f);
	pump(f, NULL);
}

/* Server side: the input is what one or two client links send. */
static void run_server(struct fuzz *f, uint8_t flags, const uint8_t *cut,
    unsigned pieces, const uint8_t *data, size_t size)
{
	unsigned mode = (flags >> 4) & 7;
	bool two = (flags & FLAG_TWO_LINKS) != 0;

	f->hub = agg_hub_new(f->base, &f->cfg, KEY, KEY_LEN, 4, &hub_cbs, f);
	if (f->hub == NULL)
		fail("agg_hub_new failed");
	if (mode == MODE_RAW) {
		agg_hub_add_link(f->hub, peer_connect(f, &f->peers[0]), "raw");
		send_all(f, data, size, cut, pieces, 1, NULL, 0);
	} else {
		if (client_handshake(f, &f->peers[0], 0xa5, true, 1, KEY) !=
		    AGG_WELCOME_OK)
			fail("the hub did not welcome a valid link");
		if (two && mode != SECOND_LATE)
			second_link(f, mode);
		send_all(f, data, size, cut, pieces, two ? 2 : 1,
		    two && mode == SECOND_LATE ? second_link : NULL, mode);
	}
	agg_hub_free(f->hub);
	f->hub = NULL;
}

/* Client side: adds the second link after the first write and answers
 * its handshake with WELCOME status. */
static void client_second_link(struct fuzz *f, unsigned status)
{
	/* The session may be closed by now (closed by the peer, or no link
	 * left for the grace period): then there is no second link. */
	if (agg_session_is_closed(f->client))
		return;
	if (agg_session_add_link(f->client, peer_connect(f, &f->peers[1]),
	    "fuzz1") == NULL)
		fail("agg_session_add_link failed");
	server_handshake(f, &f->peers[1], (uint8_t)status);
}

/* Client side: the input is what the server sends on one or two links. */
static void run_client(struct fuzz *f, uint8_t flags, const uint8_t *cut,
    unsigned pieces, const uint8_t *data, size_t size)
{
	static const struct agg_stream_callbacks *const cbs[5] = {
		&echo_cbs, &reset_eof_cbs, &echo_cbs, &echo_cbs,
		&result_reset_cbs,
	};
	static const struct agg_target targets[5] = {
		{ .type = AGG_ADDR_NAME, .name_len = 11,
		    .addr.name = "example.com", .port = 443 },
		{ .type = AGG_ADDR_IPV4, .addr.ipv4 = { 192, 0, 2, 1 },
		    .port = 80 },
		{ .type = AGG_ADDR_IPV6, .addr.ipv6 = { 0x20, 0x01, 0x0d, 0xb8 },
		    .port = 22 },
		{ .type = AGG_ADDR_NAME, .name_len = 1, .addr.name = "x",
		    .port = 1 },
		{ .type = AGG_ADDR_IPV4, .addr.ipv4 = { 127, 0, 0, 1 },
		    .port = 7 },
	};
	unsigned status = (flags >> 4) & 7;
	struct agg_stream *st[5];
	size_t i;

	f->client = agg_session_new_client(f->base, &f->cfg, KEY, KEY_LEN,
	    &session_cbs, f);
	if (f->client == NULL)
		fail("agg_session_new_client failed");
	for (i = 0; i < 5; i++)
		if ((st[i] = agg_session_open_stream(f->client, &targets[i],
		    cbs[i], f)) == NULL)
			fail("agg_session_open_stream failed");
	/* Given up before any answer: RESETs go out after the OPENs. */
	agg_stream_free(st[2]);
	agg_stream_reset(st[3], AGG_ERR_TIMEOUT, "gave up");
	if (agg_session_add_link(f->client, peer_connect(f, &f->peers[0]),
	    "fuzz0") == NULL)
		fail("agg_session_add_link failed");
	if (status == MODE_RAW) {
		/* The input answers CLIENT_HELLO: no valid proof in it. */
		if (!peer_exchange(f, &f->peers[0], NULL, 0,
		    AGG_CLIENT_HELLO_LEN))
			fail("no CLIENT_HELLO from the client");
		send_all(f, data, size, cut, pieces, 1, NULL, 0);
	} else {
		if (!server_handshake(f, &f->peers[0], AGG_WELCOME_OK))
			fail("the client closed a new link");
		if (flags & FLAG_TWO_LINKS)
			send_all(f, data, size, cut, pieces, 2,
			    client_second_link, status);
		else
			send_all(f, data, size, cut, pieces, 1, NULL, 0);
	}
	agg_session_free(f->client);
	f->client = NULL;
}

/* libFuzzer entry point: one session fed one input. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *cut = NULL;
	unsigned pieces = 1;
	uint8_t flags = 0;
	struct fuzz f;
	size_t i;

	agg_log_set_level(getenv("AGG_FUZZ_LOG") != NULL ? AGG_LOG_DEBUG :
	    AGG_LOG_ERROR);
	if (size == 0)
		return 0;
	if (data[0] < AGG_FRAME_DATA || data[0] > AGG_FRAME_CLOSE) {
		flags = data[0];
		data++;
		size--;
		/* The cut bytes, as many as there are. */
		cut = data;
		for (pieces = 1 + (flags & 3); pieces > 1 && size < pieces - 1;)
			pieces--;
		data += pieces - 1;
		size -= pieces - 1;
	}
	memset(&f, 0, sizeof(f));
	for (i = 0; i < MAX_PEERS; i++)
		f.peers[i].fd = -1;
	if ((f.base = event_base_new()) == NULL ||
	    (f.wake = evtimer_new(f.base, wake_cb, NULL)) == NULL)
		fail("event_base_new failed");
	/* Small windows and buffers keep every input quick. */
	agg_config_init(&f.cfg);
	f.cfg.segment_size = 256;
	f.cfg.stream_window = 1024;
	f.cfg.session_window = 2048;
	f.cfg.stream_send_buffer = 1024;
	f.cfg.link_cap_min = 512;
	f.cfg.link_cap_max = 4096;
	f.cfg.link_output_max = 512;
	f.cfg.max_streams = 8;
	f.cfg.max_links = 4;
	if (flags & FLAG_FAST) {
		f.fast = true;
		f.cfg.stall_floor_ms = 1;
		f.cfg.idle_ping_ms = 1;
		f.cfg.link_dead_ms = 10;
		f.cfg.grace_ms = 10;
	}
	f.spare = SPARE_MAX;
	if (flags & FLAG_CLIENT)
		run_client(&f, flags, cut, pieces, data, size);
	else
		run_server(&f, flags, cut, pieces, data, size);
	for (i = 0; i < MAX_PEERS; i++)
		if (f.peers[i].fd >= 0)
			close(f.peers[i].fd);
	event_free(f.wake);
	event_base_free(f.base);
	return 0;
}
