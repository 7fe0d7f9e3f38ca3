/*
 * bevio.c: what libevent 2.1's bufferevents lack for bulk links: large
 * reads, and a last flush before a bufferevent is freed.
 */
#include "agg/bevio.h"

#include "block.h"

#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>

#include <openssl/ssl.h>

#define READ_MORE_MAX (256u * 1024u)
#define READ_MORE_TIMES 4

/* The fd of a bufferevent with nothing below it (no filter, no TLS),
 * which we may read and write ourselves; -1 for other bufferevents. */
static int bev_plain_fd(struct bufferevent *bev)
{
	if (bufferevent_get_underlying(bev) != NULL ||
	    bufferevent_openssl_get_ssl(bev) != NULL)
		return -1;
	return (int)bufferevent_getfd(bev);
}

/* Whether bev's plain fd is a socket (not -W's pipes or files). */
static bool bev_is_plain_socket(struct bufferevent *bev)
{
	int fd = bev_plain_fd(bev);
	struct stat st;

	return fd >= 0 && fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

/* Reads into a fresh libevent chain, sized by FIONREAD so an idle socket
 * costs no buffer (a reservation that reads nothing leaves an empty chain
 * behind). The way in when the block arena is full. Returns what
 * agg_block_read() would. */
static ssize_t bev_read_copy(int fd, struct evbuffer *in, size_t *room)
{
	struct evbuffer_iovec vec[2];
	struct msghdr msg;
	int n, avail;
	ssize_t got;

	*room = 0;
	if (ioctl(fd, FIONREAD, &avail) != 0 || avail <= 0) {
		errno = EAGAIN;
		return -1;
	}
	if ((unsigned)avail > READ_MORE_MAX)
		avail = (int)READ_MORE_MAX;
	if ((n = evbuffer_reserve_space(in, avail, vec, 2)) <= 0) {
		errno = ENOMEM;
		return -1;
	}
	*room = (size_t)avail;
	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = (struct iovec *)vec;
	msg.msg_iovlen = (size_t)n;
	got = recvmsg(fd, &msg, MSG_DONTWAIT);
	if (got <= 0) {
		evbuffer_commit_space(in, NULL, 0);
		return got;
	}
	if ((size_t)got <= vec[0].iov_len) {
		vec[0].iov_len = (size_t)got;
		n = 1;
	} else {
		vec[1].iov_len = (size_t)got - vec[0].iov_len;
	}
	evbuffer_commit_space(in, vec, n);
	return got;
}

/* Reads what else the socket holds, in large pieces: libevent 2.1 reads at
 * most 4 KiB per readiness event. The bytes land in shared blocks
 * (block.h), so the frames and segments cut from them later are
 * references, not copies. A read shorter than the room offered means the
 * socket is empty: no call is spent to hear EAGAIN. Plain sockets only;
 * 0, or -1 with errno (0 for EOF) when the socket failed. */
int agg_bev_read_more(struct bufferevent *bev, struct evbuffer *in)
{
	int fd = bev_plain_fd(bev), i, ret = 0;
	size_t room;
	ssize_t got;

	if (fd < 0)
		return 0;
	/* The socket bufferevent freezes its input's end; we add for it. */
	evbuffer_unfreeze(in, 0);
	for (i = 0; i < READ_MORE_TIMES; i++) {
		if ((got = agg_block_read(fd, in, &room)) == -2)
			got = bev_read_copy(fd, in, &room);
		if (got == 0) {
			errno = 0;
			ret = -1;
			break;
		}
		if (got < 0) {
			if (errno != EAGAIN && errno != EINTR &&
			    errno != ENOTSOCK)
				ret = -1;
			break;
		}
		if ((size_t)got < room)
			break;
	}
	evbuffer_freeze(in, 0);
	return ret;
}

/* Writes what a plain socket bufferevent's output holds now (see
 * agg/bevio.h). */
size_t agg_bev_write_now(struct bufferevent *bev)
{
	struct evbuffer *out = bufferevent_get_output(bev);
	int fd = bev_plain_fd(bev);
	int n;

	if (fd < 0 || evbuffer_get_length(out) == 0)
		return 0;
	/* The socket bufferevent freezes its output's front. */
	evbuffer_unfreeze(out, 1);
	n = evbuffer_write(out, fd);
	evbuffer_freeze(out, 1);
	return n > 0 ? (size_t)n : 0;
}

struct agg_bev_reader {
	struct event *ev;
	struct bufferevent *bev;
	bufferevent_data_cb cb;
	void *arg;
};

/* The socket is readable: the owner's read callback does the reading. */
static void bev_reader_cb(evutil_socket_t fd, short what, void *arg)
{
	struct agg_bev_reader *r = arg;

	(void)fd;
	(void)what;
	r->cb(r->bev, r->arg);
}

/* Takes over reading a plain socket bufferevent (see agg/bevio.h). */
struct agg_bev_reader *agg_bev_reader_new(struct bufferevent *bev,
    bufferevent_data_cb cb, void *arg)
{
	struct agg_bev_reader *r;

	if (!bev_is_plain_socket(bev) || (r = calloc(1, sizeof(*r))) == NULL)
		return NULL;
	r->bev = bev;
	r->cb = cb;
	r->arg = arg;
	if ((r->ev = event_new(bufferevent_get_base(bev),
	    bufferevent_getfd(bev), EV_READ | EV_PERSIST, bev_reader_cb,
	    r)) == NULL) {
		free(r);
		return NULL;
	}
	bufferevent_disable(bev, EV_READ);
	return r;
}

/* Starts or stops reading bev. */
void agg_bev_set_reading(struct agg_bev_reader *r, struct bufferevent *bev,
    bool on)
{
	if (r == NULL) {
		if (on)
			bufferevent_enable(bev, EV_READ);
		else
			bufferevent_disable(bev, EV_READ);
	} else if (on) {
		event_add(r->ev, NULL);
	} else {
		event_del(r->ev);
	}
}

/* Whether bev is being read. */
bool agg_bev_is_reading(const struct agg_bev_reader *r,
    struct bufferevent *bev)
{
	if (r == NULL)
		return (bufferevent_get_enabled(bev) & EV_READ) != 0;
	return event_pending(r->ev, EV_READ, NULL) != 0;
}

/* Frees a reader. */
void agg_bev_reader_free(struct agg_bev_reader *r)
{
	if (r == NULL)
		return;
	event_free(r->ev);
	free(r);
}

struct agg_bev_writer {
	struct event *flush;
	struct bufferevent *bev;
	struct evbuffer_cb_entry *watch;
};

/* Writes the output now; arms libevent's write event only for what the
 * socket did not take, and runs the write callback as libevent would. */
static void bev_writer_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct agg_bev_writer *w = arg;
	struct evbuffer *out = bufferevent_get_output(w->bev);
	bufferevent_data_cb writecb;
	size_t low, high;
	void *cbarg;

	(void)fd;
	(void)what;
	if (agg_bev_write_now(w->bev) == 0 && evbuffer_get_length(out) == 0)
		return;
	if (evbuffer_get_length(out) > 0) {
		bufferevent_enable(w->bev, EV_WRITE);
		return;
	}
	bufferevent_getwatermark(w->bev, EV_WRITE, &low, &high);
	bufferevent_getcb(w->bev, NULL, &writecb, NULL, &cbarg);
	if (writecb != NULL && evbuffer_get_length(out) <= low)
		writecb(w->bev, cbarg);
}

/* The output changed: bytes added are written at the end of this pass;
 * once libevent has emptied it, its write event stays off. */
static void bev_writer_output_cb(struct evbuffer *out,
    const struct evbuffer_cb_info *info, void *arg)
{
	struct agg_bev_writer *w = arg;

	if (info->n_added > 0)
		event_active(w->flush, EV_TIMEOUT, 0);
	else if (evbuffer_get_length(out) == 0 &&
	    (bufferevent_get_enabled(w->bev) & EV_WRITE))
		bufferevent_disable(w->bev, EV_WRITE);
}

/* Takes over when a plain socket bufferevent writes (see agg/bevio.h). */
struct agg_bev_writer *agg_bev_writer_new(struct bufferevent *bev)
{
	struct agg_bev_writer *w;

	if (!bev_is_plain_socket(bev) || (w = calloc(1, sizeof(*w))) == NULL)
		return NULL;
	w->bev = bev;
	if ((w->flush = event_new(bufferevent_get_base(bev), -1, 0,
	    bev_writer_flush_cb, w)) == NULL ||
	    (w->watch = evbuffer_add_cb(bufferevent_get_output(bev),
	    bev_writer_output_cb, w)) == NULL) {
		if (w->flush != NULL)
			event_free(w->flush);
		free(w);
		return NULL;
	}
	/* Whatever is queued already goes out like the rest. */
	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		bufferevent_disable(bev, EV_WRITE);
	else
		event_active(w->flush, EV_TIMEOUT, 0);
	return w;
}

/* Frees a writer. */
void agg_bev_writer_free(struct agg_bev_writer *w)
{
	if (w == NULL)
		return;
	evbuffer_remove_cb_entry(bufferevent_get_output(w->bev), w->watch);
	event_free(w->flush);
	free(w);
}

/* One last try to send what is queued (a CLOSE frame, a TLS alert, a 404):
 * freeing the bufferevent would drop it. Filters (TLS, WebSocket) push
 * into the layer below with mode; a TLS socket bufferevent gets one
 * SSL_write, a plain socket one write. Best effort: whatever would block
 * is dropped. */
void agg_bev_last_flush(struct bufferevent *bev,
    enum bufferevent_flush_mode mode)
{
	struct bufferevent *below;
	struct evbuffer *out;
	size_t len;
	SSL *ssl;

	while ((below = bufferevent_get_underlying(bev)) != NULL) {
		bufferevent_flush(bev, EV_WRITE, mode);
		bev = below;
	}
	out = bufferevent_get_output(bev);
	len = evbuffer_get_length(out);
	if (len == 0 || bufferevent_getfd(bev) < 0)
		return;
	if ((ssl = bufferevent_openssl_get_ssl(bev)) != NULL) {
		if (len <= 65536)
			(void)SSL_write(ssl, evbuffer_pullup(out, -1), (int)len);
		return;
	}
	/* The socket bufferevent freezes its output's front. */
	evbuffer_unfreeze(out, 1);
	evbuffer_write(out, bufferevent_getfd(bev));
}
