/*
 * sockio.c: socket I/O below a layer. See sockio.h.
 */
#include "sockio.h"

#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>

#define READ_MORE_TIMES 4
#define READ_MORE_BYTES (64 * 1024)

/* Reads what else a plain socket bufferevent's socket holds. */
void agg_read_more(struct bufferevent *bev)
{
	struct evbuffer *in = bufferevent_get_input(bev);
	int fd = (int)bufferevent_getfd(bev), n, i;
	struct evbuffer_iovec vec[2];
	struct msghdr msg;
	ssize_t got;

	if (fd < 0 || bufferevent_get_underlying(bev) != NULL ||
	    bufferevent_openssl_get_ssl(bev) != NULL)
		return;
	/* The socket bufferevent freezes its input's end; we add for it. */
	evbuffer_unfreeze(in, 0);
	for (i = 0; i < READ_MORE_TIMES; i++) {
		if ((n = evbuffer_reserve_space(in, READ_MORE_BYTES, vec,
		    2)) <= 0)
			break;
		memset(&msg, 0, sizeof(msg));
		msg.msg_iov = (struct iovec *)vec;
		msg.msg_iovlen = (size_t)n;
		if ((got = recvmsg(fd, &msg, MSG_DONTWAIT)) <= 0) {
			evbuffer_commit_space(in, NULL, 0);
			break;
		}
		if ((size_t)got <= vec[0].iov_len) {
			vec[0].iov_len = (size_t)got;
			n = 1;
		} else {
			vec[1].iov_len = (size_t)got - vec[0].iov_len;
		}
		evbuffer_commit_space(in, vec, n);
		if (got < READ_MORE_BYTES)
			break;
	}
	evbuffer_freeze(in, 0);
}

/* Pushes what bev queued down and writes the socket's share once. */
void agg_last_flush(struct bufferevent *bev)
{
	struct bufferevent *below;
	struct evbuffer *out;

	while ((below = bufferevent_get_underlying(bev)) != NULL) {
		bufferevent_flush(bev, EV_WRITE, BEV_FLUSH);
		bev = below;
	}
	out = bufferevent_get_output(bev);
	if (evbuffer_get_length(out) == 0 || bufferevent_getfd(bev) < 0 ||
	    bufferevent_openssl_get_ssl(bev) != NULL)
		return;
	/* The socket bufferevent freezes its output's front. */
	evbuffer_unfreeze(out, 1);
	evbuffer_write(out, bufferevent_getfd(bev));
}
