/*
 * usblink.c: the byte pipe of a USB link over bulk transfers. See
 * usblink.h and libagg/PROTOCOL.md ("USB links").
 *
 * libagg gets one end of a socketpair, like a TCP link; the usblink reads
 * the other end into DATA transfers and writes DATA payloads into it. The
 * socketpair keeps libagg's view identical to TCP's: its end closes when
 * the USB link dies, and freeing its end tells us the link is over.
 */
#include "usblink.h"

#include <sys/types.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

#define UL_SOCKBUF (128 * 1024)
#define UL_READ_HIGH (128 * 1024)     /* stream bytes taken from libagg
                                         before a slot is free */
#define UL_OUT_HOLD (256 * 1024)      /* hold reads above this */
#define UL_OUT_LOW (64 * 1024)        /* resume reads below this */

enum ul_state {
	UL_HELLO,     /* waiting for the peer's HELLO */
	UL_UP,        /* carrying the stream */
	UL_CLOSING,   /* libagg is gone: send what is left, then CLOSE */
	UL_CLOSED,
};

struct agg_usblink {
	struct event_base *base;
	enum agg_usblink_role role;
	enum ul_state state;
	uint32_t generation;
	const struct agg_usblink_ops *ops;
	void *arg;
	int send_hello;               /* our HELLO is still to be sent */
	int held;                     /* a read waits for want_read */
	int paused;                   /* not reading from libagg: full */
	struct bufferevent *bev;      /* our end of the socketpair */
	struct agg_usblink_stats st;
};

/* Writes a transfer header: "AU", type, 0, generation (big endian). */
void agg_usb_header_write(uint8_t *buf, enum agg_usb_type type,
    uint32_t generation)
{
	buf[0] = 'A';
	buf[1] = 'U';
	buf[2] = (uint8_t)type;
	buf[3] = 0;
	buf[4] = (uint8_t)(generation >> 24);
	buf[5] = (uint8_t)(generation >> 16);
	buf[6] = (uint8_t)(generation >> 8);
	buf[7] = (uint8_t)generation;
}

/* Parses a transfer header. */
int agg_usb_header_read(const uint8_t *buf, size_t len,
    enum agg_usb_type *type, uint32_t *generation)
{
	if (len < AGG_USB_HEADER_LEN || buf[0] != 'A' || buf[1] != 'U' ||
	    buf[3] != 0 || buf[2] < AGG_USB_HELLO || buf[2] > AGG_USB_CLOSE)
		return -1;
	*type = (enum agg_usb_type)buf[2];
	*generation = (uint32_t)buf[4] << 24 | (uint32_t)buf[5] << 16 |
	    (uint32_t)buf[6] << 8 | buf[7];
	return 0;
}

/* Stream bytes the next DATA transfer carries. */
size_t agg_usb_data_len(size_t avail)
{
	size_t max = AGG_USB_TRANSFER_MAX - AGG_USB_HEADER_LEN, n;

	if (avail >= max)
		return max;
	if (avail == 0)
		return 0;
	n = avail;
	if ((AGG_USB_HEADER_LEN + n) % AGG_USB_TRANSFER_ALIGN == 0)
		n--;
	return n;
}

/* Ends the link once: closes our end of the pipe and tells the transport. */
static void ul_close(struct agg_usblink *ul, const char *reason)
{
	if (ul->state == UL_CLOSED)
		return;
	ul->state = UL_CLOSED;
	if (ul->bev != NULL) {
		bufferevent_free(ul->bev);
		ul->bev = NULL;
	}
	ul->ops->closed(ul->arg, reason);
}

/* libagg wrote stream bytes: fill the write slots. Reading stops while
 * UL_READ_HIGH bytes wait for a free slot (not a read watermark: libevent
 * calls the read callback again and again while the input stays above
 * one). */
static void usblink_read_cb(struct bufferevent *bev, void *arg)
{
	struct agg_usblink *ul = arg;

	ul->ops->want_write(ul->arg);
	if (ul->bev == bev && ul->state == UL_UP && !ul->paused &&
	    evbuffer_get_length(bufferevent_get_input(bev)) >= UL_READ_HIGH) {
		ul->paused = 1;
		bufferevent_disable(bev, EV_READ);
	}
}

/* libagg took what we wrote: held reads may go on. */
static void usblink_write_cb(struct bufferevent *bev, void *arg)
{
	struct agg_usblink *ul = arg;

	(void)bev;
	if (ul->held) {
		ul->held = 0;
		ul->ops->want_read(ul->arg);
	}
}

/* libagg closed its end: send what is left, then CLOSE. */
static void usblink_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct agg_usblink *ul = arg;

	(void)bev;
	if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) ||
	    ul->state != UL_UP)
		return;
	ul->state = UL_CLOSING;
	bufferevent_disable(ul->bev, EV_READ);
	ul->ops->want_write(ul->arg);
}

/* The HELLO exchange is done: makes the socketpair and hands one end up. */
static void ul_up(struct agg_usblink *ul)
{
	struct bufferevent *theirs;
	int fds[2], size = UL_SOCKBUF;

	if (evutil_socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) {
		ul_close(ul, "cannot make a socketpair");
		return;
	}
	setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
	setsockopt(fds[1], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
	evutil_make_socket_nonblocking(fds[0]);
	evutil_make_socket_nonblocking(fds[1]);
	evutil_make_socket_closeonexec(fds[0]);
	evutil_make_socket_closeonexec(fds[1]);
	ul->bev = bufferevent_socket_new(ul->base, fds[1],
	    BEV_OPT_CLOSE_ON_FREE);
	theirs = bufferevent_socket_new(ul->base, fds[0],
	    BEV_OPT_CLOSE_ON_FREE);
	if (ul->bev == NULL || theirs == NULL) {
		if (ul->bev == NULL)
			close(fds[1]);
		if (theirs == NULL)
			close(fds[0]);
		else
			bufferevent_free(theirs);
		ul_close(ul, "out of memory");
		return;
	}
	bufferevent_setcb(ul->bev, usblink_read_cb, usblink_write_cb,
	    usblink_event_cb, ul);
	bufferevent_setwatermark(ul->bev, EV_WRITE, UL_OUT_LOW, 0);
	bufferevent_enable(ul->bev, EV_READ | EV_WRITE);
	ul->state = UL_UP;
	ul->ops->up(ul->arg, theirs);
}

/* Creates a usblink. */
struct agg_usblink *agg_usblink_new(struct event_base *base,
    enum agg_usblink_role role, uint32_t generation,
    const struct agg_usblink_ops *ops, void *arg)
{
	struct agg_usblink *ul;

	if ((ul = calloc(1, sizeof(*ul))) == NULL)
		return NULL;
	ul->base = base;
	ul->role = role;
	ul->generation = generation;
	ul->ops = ops;
	ul->arg = arg;
	ul->state = UL_HELLO;
	ul->send_hello = role == AGG_USBLINK_HOST;
	return ul;
}

/* Writes the next transfer into buf. */
size_t agg_usblink_next_transfer(struct agg_usblink *ul, uint8_t *buf,
    size_t cap)
{
	struct evbuffer *in;
	size_t n;

	if (cap < AGG_USB_TRANSFER_MAX || ul->state == UL_CLOSED)
		return 0;
	if (ul->send_hello) {
		/* HELLO carries one byte, the framing version (1). */
		ul->send_hello = 0;
		agg_usb_header_write(buf, AGG_USB_HELLO, ul->generation);
		buf[AGG_USB_HEADER_LEN] = 1;
		ul->st.tx_transfers++;
		if (ul->role == AGG_USBLINK_GADGET)
			ul_up(ul);
		return AGG_USB_HEADER_LEN + 1;
	}
	if (ul->state == UL_HELLO)
		return 0;
	in = bufferevent_get_input(ul->bev);
	n = agg_usb_data_len(evbuffer_get_length(in));
	if (n > 0) {
		agg_usb_header_write(buf, AGG_USB_DATA, ul->generation);
		evbuffer_remove(in, buf + AGG_USB_HEADER_LEN, n);
		if (ul->paused && ul->state == UL_UP &&
		    evbuffer_get_length(in) < UL_READ_HIGH) {
			ul->paused = 0;
			bufferevent_enable(ul->bev, EV_READ);
		}
		ul->st.tx_transfers++;
		ul->st.tx_bytes += n;
		return AGG_USB_HEADER_LEN + n;
	}
	if (ul->state != UL_CLOSING)
		return 0;
	/* CLOSE carries one byte, 0 (reserved). */
	agg_usb_header_write(buf, AGG_USB_CLOSE, ul->generation);
	buf[AGG_USB_HEADER_LEN] = 0;
	ul->st.tx_transfers++;
	ul_close(ul, "closed by agg");
	return AGG_USB_HEADER_LEN + 1;
}

/* A read completed. */
enum agg_usblink_input_result agg_usblink_input(struct agg_usblink *ul,
    const uint8_t *buf, size_t len)
{
	enum agg_usb_type type;
	uint32_t gen;

	if (ul->state == UL_CLOSED)
		return AGG_USBLINK_READ_STOP;
	if (len == 0) {
		ul->st.empty++;
		return AGG_USBLINK_READ_AGAIN;
	}
	if (agg_usb_header_read(buf, len, &type, &gen) != 0 &&
	    ul->state == UL_HELLO) {
		/* The tail of a transfer the previous attach began. */
		ul->st.stale++;
		return AGG_USBLINK_READ_AGAIN;
	}
	if (agg_usb_header_read(buf, len, &type, &gen) != 0) {
		char why[80];

		snprintf(why, sizeof(why), "bad USB transfer header (%zu bytes: "
		    "%02x %02x %02x %02x)", len, buf[0], len > 1 ? buf[1] : 0,
		    len > 2 ? buf[2] : 0, len > 3 ? buf[3] : 0);
		ul_close(ul, why);
		return AGG_USBLINK_READ_STOP;
	}
	if (ul->role == AGG_USBLINK_GADGET && type == AGG_USB_HELLO &&
	    gen != 0 && gen != ul->generation) {
		if (ul->state != UL_HELLO) {
			ul_close(ul, "the USB host attached again");
			return AGG_USBLINK_READ_NEW;
		}
		ul->generation = gen;
		ul->send_hello = 1;
		ul->st.rx_transfers++;
		ul->ops->want_write(ul->arg);
		return AGG_USBLINK_READ_AGAIN;
	}
	if (gen != ul->generation || ul->generation == 0) {
		ul->st.stale++;
		return AGG_USBLINK_READ_AGAIN;
	}
	ul->st.rx_transfers++;
	switch (type) {
	case AGG_USB_HELLO:
		if (ul->role == AGG_USBLINK_HOST && ul->state == UL_HELLO) {
			ul_up(ul);
			if (ul->state == UL_UP)
				ul->ops->want_write(ul->arg);
		}
		return ul->state == UL_CLOSED ? AGG_USBLINK_READ_STOP :
		    AGG_USBLINK_READ_AGAIN;
	case AGG_USB_CLOSE:
		ul_close(ul, "closed by the peer");
		return AGG_USBLINK_READ_STOP;
	case AGG_USB_DATA:
		break;
	}
	if (ul->state == UL_HELLO) {
		ul_close(ul, "USB data before HELLO");
		return AGG_USBLINK_READ_STOP;
	}
	if (ul->state != UL_UP)
		return AGG_USBLINK_READ_AGAIN;
	ul->st.rx_bytes += len - AGG_USB_HEADER_LEN;
	if (bufferevent_write(ul->bev, buf + AGG_USB_HEADER_LEN,
	    len - AGG_USB_HEADER_LEN) != 0) {
		ul_close(ul, "out of memory");
		return AGG_USBLINK_READ_STOP;
	}
	if (evbuffer_get_length(bufferevent_get_output(ul->bev)) >=
	    UL_OUT_HOLD) {
		ul->held = 1;
		return AGG_USBLINK_READ_HOLD;
	}
	return AGG_USBLINK_READ_AGAIN;
}

/* The transport failed. */
void agg_usblink_fail(struct agg_usblink *ul, const char *reason)
{
	ul_close(ul, reason);
}

/* Whether the link is over. */
int agg_usblink_is_closed(const struct agg_usblink *ul)
{
	return ul->state == UL_CLOSED;
}

/* The attach generation. */
uint32_t agg_usblink_generation(const struct agg_usblink *ul)
{
	return ul->generation;
}

/* Counters. */
void agg_usblink_get_stats(const struct agg_usblink *ul,
    struct agg_usblink_stats *st)
{
	*st = ul->st;
}

/* Frees the usblink. */
void agg_usblink_free(struct agg_usblink *ul)
{
	if (ul == NULL)
		return;
	if (ul->bev != NULL)
		bufferevent_free(ul->bev);
	free(ul);
}
