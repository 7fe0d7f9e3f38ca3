/*
 * ws.c: WebSocket links. See ws.h.
 *
 * The framing is a libevent filter bufferevent on top of the connection
 * (TCP or TLS): its input filter takes frames apart (unmasking the
 * client's in one copy, moving the server's payload chains without a
 * copy) and its output filter frames whatever the link writes, one frame
 * per write up to 256 KiB. Control frames are answered from within the
 * filters; because the output filter writes whole frames only, a pong or
 * a close always falls between two frames. Failures and the peer's close
 * reach the link as ordinary bufferevent events, from a deferred event so
 * that the link may free the bufferevent.
 */
#include "ws.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "agg/log.h"
#include "agg/bevio.h"
#include "wsframe.h"

#define WS_HEAD_MAX 8192                 /* HTTP request or response */
#define WS_OUT_FRAME (256u * 1024u)      /* largest frame we send */
#define WS_LOWER_OUT_HIGH (512u * 1024u) /* framed bytes queued below */

/* The framing state of one upgraded connection. */
struct ws_link {
	struct bufferevent *bev;       /* the filter the link uses */
	struct bufferevent *lower;
	struct event *notify;          /* reports an end to the link */
	struct ws_reader rd;
	int server;
	uint8_t mask[4];               /* of the data frame being read */
	int masked;
	uint64_t remaining, offset;    /* of its payload */
	int close_sent;
	int ended;                     /* the peer closed, or broke a rule */
	short notify_what;
	int notify_errno;
};

struct agg_ws_handshake {
	struct event_base *base;
	struct bufferevent *lower;
	struct event *timer;
	agg_ws_done_cb cb;
	void *arg;
	int server;
	int refusing;                  /* server: the refusal is being sent */
	char path[256];
	char accept[29];               /* client: the answer expected */
	char why[200];
};

/* A fresh frame mask (RFC 6455 wants it unpredictable). */
static void ws_new_mask(uint8_t mask[4])
{
	if (RAND_bytes(mask, 4) != 1)
		memset(mask, 0x5a, 4);
}

/* Queues a control frame on the connection (masked from the client). */
static void ws_send_control(struct ws_link *c, unsigned opcode,
    const uint8_t *payload, size_t len)
{
	uint8_t frame[WS_HEADER_MAX + WS_CONTROL_MAX], mask[4];
	size_t n;

	if (len > WS_CONTROL_MAX)
		len = WS_CONTROL_MAX;
	if (!c->server)
		ws_new_mask(mask);
	n = ws_frame_encode(frame, opcode, 1, len, c->server ? NULL : mask);
	if (len > 0)
		memcpy(frame + n, payload, len);
	if (!c->server)
		ws_mask(frame + n, len, mask, 0);
	evbuffer_add(bufferevent_get_output(c->lower), frame, n + len);
}

/* Sends a close frame with a status code, once. */
static void ws_send_close(struct ws_link *c, unsigned code)
{
	uint8_t payload[2] = { (uint8_t)(code >> 8), (uint8_t)code };

	if (c->close_sent)
		return;
	c->close_sent = 1;
	ws_send_control(c, WS_OP_CLOSE, payload, sizeof(payload));
}

/* Reports the end to the link once, after the filter returns. */
static void ws_end(struct ws_link *c, short what, int err)
{
	if (c->ended)
		return;
	c->ended = 1;
	c->notify_what = what;
	c->notify_errno = err;
	event_active(c->notify, 0, 0);
}

/* A rule was broken: tells the peer (close code) and the link. */
static void ws_fail(struct ws_link *c, const char *why, unsigned code)
{
	agg_log_info("WebSocket %s: %s", c->server ? "client" : "server",
	    why);
	ws_send_close(c, code);
	ws_end(c, BEV_EVENT_READING | BEV_EVENT_ERROR, EPROTO);
}

/* The deferred report of an end. */
static void ws_notify_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ws_link *c = arg;
	bufferevent_event_cb eventcb = NULL;

	(void)fd;
	(void)what;
	/* A link that freed the filter meanwhile left no callbacks (and the
	 * filter waits for its finalizer, which frees this event). */
	bufferevent_getcb(c->bev, NULL, NULL, &eventcb, NULL);
	if (eventcb == NULL)
		return;
	errno = c->notify_errno;
	bufferevent_trigger_event(c->bev, c->notify_what, 0);
}

/* Handles a whole control frame. */
static void ws_control(struct ws_link *c, const struct ws_frame *f,
    const uint8_t *payload)
{
	switch (f->opcode) {
	case WS_OP_PING:
		if (!c->close_sent)
			ws_send_control(c, WS_OP_PONG, payload, (size_t)f->len);
		break;
	case WS_OP_CLOSE:
		if (f->len == 1) {
			ws_fail(c, "close frame of 1 byte", 1002);
			break;
		}
		/* Echo the peer's code, as RFC 6455 5.5.1 suggests. */
		if (!c->close_sent) {
			c->close_sent = 1;
			ws_send_control(c, WS_OP_CLOSE, payload,
			    f->len >= 2 ? 2 : 0);
		}
		ws_end(c, BEV_EVENT_READING | BEV_EVENT_EOF, 0);
		break;
	default:
		break;
	}
}

/* Moves up to n payload bytes of the current data frame to the link;
 * returns how many moved (0 only if out of memory). */
static size_t ws_take_payload(struct ws_link *c, struct evbuffer *src,
    struct evbuffer *dst, size_t n)
{
	struct evbuffer_iovec v;
	size_t k, moved = 0;

	if (!c->masked) {
		if (evbuffer_remove_buffer(src, dst, n) != (int)n)
			return 0;
		moved = n;
	} else {
		while (moved < n) {
			k = n - moved > 65536 ? 65536 : n - moved;
			if (evbuffer_reserve_space(dst, (ev_ssize_t)k, &v, 1) < 1)
				break;
			evbuffer_remove(src, v.iov_base, k);
			ws_mask(v.iov_base, k, c->mask, c->offset + moved);
			v.iov_len = k;
			evbuffer_commit_space(dst, &v, 1);
			moved += k;
		}
	}
	c->offset += moved;
	c->remaining -= moved;
	return moved;
}

/* Input filter: frames from the connection, bytes to the link. */
static enum bufferevent_filter_result ws_input_filter(struct evbuffer *src,
    struct evbuffer *dst, ev_ssize_t limit, enum bufferevent_flush_mode mode,
    void *arg)
{
	struct ws_link *c = arg;
	uint8_t hdr[WS_HEADER_MAX], ctl[WS_CONTROL_MAX];
	size_t avail, hn, n, produced = 0;
	struct ws_frame f;
	const char *why;
	int r;

	(void)mode;
	while (!c->ended) {
		avail = evbuffer_get_length(src);
		if (c->remaining > 0) {
			n = avail;
			if (n > c->remaining)
				n = (size_t)c->remaining;
			if (limit >= 0 && n > (size_t)limit - produced)
				n = (size_t)limit - produced;
			if (n == 0 || (n = ws_take_payload(c, src, dst, n)) == 0)
				break;
			produced += n;
			continue;
		}
		hn = avail < sizeof(hdr) ? avail : sizeof(hdr);
		evbuffer_copyout(src, hdr, hn);
		if ((r = ws_frame_parse(&c->rd, hdr, hn, &f, &why)) == 0)
			break;
		if (r < 0) {
			ws_fail(c, why, strstr(why, "larger") ? 1009 : 1002);
			break;
		}
		if (f.opcode & 0x8u) {
			if (avail < (size_t)r + f.len)
				break;
			evbuffer_drain(src, (size_t)r);
			evbuffer_remove(src, ctl, (size_t)f.len);
			if (f.masked)
				ws_mask(ctl, (size_t)f.len, f.mask, 0);
			ws_control(c, &f, ctl);
			continue;
		}
		if (f.opcode == WS_OP_TEXT) {
			ws_fail(c, "text frame on a binary link", 1003);
			break;
		}
		evbuffer_drain(src, (size_t)r);
		c->masked = f.masked;
		memcpy(c->mask, f.mask, 4);
		c->remaining = f.len;
		c->offset = 0;
	}
	if (c->ended)
		evbuffer_drain(src, evbuffer_get_length(src));
	return produced > 0 ? BEV_OK : BEV_NEED_MORE;
}

/* Frames n bytes of the link's output as one binary frame. */
static void ws_put_frame(struct ws_link *c, struct evbuffer *src,
    struct evbuffer *dst, size_t n)
{
	uint8_t hdr[WS_HEADER_MAX], mask[4];
	struct evbuffer_iovec v;

	if (c->server) {
		evbuffer_add(dst, hdr, ws_frame_encode(hdr, WS_OP_BINARY, 1, n,
		    NULL));
		evbuffer_remove_buffer(src, dst, n);
		return;
	}
	ws_new_mask(mask);
	evbuffer_add(dst, hdr, ws_frame_encode(hdr, WS_OP_BINARY, 1, n, mask));
	if (evbuffer_reserve_space(dst, (ev_ssize_t)n, &v, 1) < 1)
		return;
	evbuffer_remove(src, v.iov_base, n);
	ws_mask(v.iov_base, n, mask, 0);
	v.iov_len = n;
	evbuffer_commit_space(dst, &v, 1);
}

/* Output filter: the link's bytes to frames; a close frame at the end. */
static enum bufferevent_filter_result ws_output_filter(struct evbuffer *src,
    struct evbuffer *dst, ev_ssize_t limit, enum bufferevent_flush_mode mode,
    void *arg)
{
	struct ws_link *c = arg;
	size_t n;

	if (c->close_sent) {
		evbuffer_drain(src, evbuffer_get_length(src));
		return BEV_OK;
	}
	while ((n = evbuffer_get_length(src)) > 0) {
		if (n > WS_OUT_FRAME)
			n = WS_OUT_FRAME;
		if (limit >= 0) {
			if (limit <= WS_HEADER_MAX)
				break;
			if (n > (size_t)limit - WS_HEADER_MAX)
				n = (size_t)limit - WS_HEADER_MAX;
			limit -= (ev_ssize_t)(n + WS_HEADER_MAX);
		}
		ws_put_frame(c, src, dst, n);
	}
	/* No room for even a frame header below: BEV_OK here would make
	 * libevent call again at once, for ever (the lower buffer is not
	 * full by its watermark). Its drain calls us again. */
	if (evbuffer_get_length(src) > 0 && limit >= 0 &&
	    limit <= WS_HEADER_MAX)
		return BEV_NEED_MORE;
	if (mode == BEV_FINISHED)
		ws_send_close(c, 1000);
	return BEV_OK;
}

/* Frees the framing state with its filter. */
static void ws_link_free(void *arg)
{
	struct ws_link *c = arg;

	event_free(c->notify);
	free(c);
}

/* libevent's read callback of a filter's lower bufferevent (the same
 * function for every filter; its argument stays the filter's). */
static bufferevent_data_cb ws_lower_readcb;

/* The plain socket below the framing is readable: read more first. */
static void ws_lower_read_cb(struct bufferevent *lower, void *arg)
{
	agg_bev_read_more(lower, bufferevent_get_input(lower));
	ws_lower_readcb(lower, arg);
}

/* Puts ws_lower_read_cb in front of the filter's read callback on a plain
 * socket (TLS below reads large pieces itself). */
static void ws_hook_reads(struct bufferevent *lower)
{
	bufferevent_data_cb readcb, writecb;
	bufferevent_event_cb eventcb;
	void *cbarg;

	if (bufferevent_get_underlying(lower) != NULL ||
	    bufferevent_getfd(lower) < 0)
		return;
	bufferevent_getcb(lower, &readcb, &writecb, &eventcb, &cbarg);
	if (readcb == NULL || readcb == ws_lower_read_cb)
		return;
	if (ws_lower_readcb == NULL)
		ws_lower_readcb = readcb;
	if (readcb != ws_lower_readcb)
		return;
	bufferevent_setcb(lower, ws_lower_read_cb, writecb, eventcb, cbarg);
}

/* Puts the framing on an upgraded connection. */
struct bufferevent *agg_ws_wrap(struct event_base *base,
    struct bufferevent *lower, int server)
{
	struct ws_link *c;

	if ((c = calloc(1, sizeof(*c))) == NULL ||
	    (c->notify = event_new(base, -1, 0, ws_notify_cb, c)) == NULL) {
		free(c);
		bufferevent_free(lower);
		return NULL;
	}
	c->lower = lower;
	c->server = server;
	c->rd.want_masked = server;
	c->rd.max_frame = AGG_WS_MAX_FRAME;
	bufferevent_setcb(lower, NULL, NULL, NULL, NULL);
	bufferevent_setwatermark(lower, EV_READ, 0, 0);
	bufferevent_set_max_single_write(lower, 256 * 1024);
	bufferevent_setwatermark(lower, EV_WRITE, 0, WS_LOWER_OUT_HIGH);
	c->bev = bufferevent_filter_new(lower, ws_input_filter,
	    ws_output_filter, BEV_OPT_CLOSE_ON_FREE, ws_link_free, c);
	if (c->bev == NULL) {
		ws_link_free(c);
		bufferevent_free(lower);
		return NULL;
	}
	ws_hook_reads(lower);
	bufferevent_enable(lower, EV_READ | EV_WRITE);
	/* Frames that came with the upgrade answer. */
	if (evbuffer_get_length(bufferevent_get_input(lower)) > 0)
		bufferevent_trigger(lower, EV_READ, BEV_TRIG_IGNORE_WATERMARKS |
		    BEV_TRIG_DEFER_CALLBACKS);
	return c->bev;
}

/* Frees a handshake whose connection went on or was freed. */
static void ws_handshake_free(struct agg_ws_handshake *h)
{
	event_free(h->timer);
	free(h);
}

/* The upgrade failed: closes the connection and says why. */
static void ws_handshake_fail(struct agg_ws_handshake *h, const char *why)
{
	agg_ws_done_cb cb = h->cb;
	void *arg = h->arg;
	char msg[200];

	snprintf(msg, sizeof(msg), "%s", why);
	/* A refusal leaves even through TLS. */
	agg_bev_last_flush(h->lower, BEV_FLUSH);
	bufferevent_free(h->lower);
	ws_handshake_free(h);
	cb(NULL, msg, arg);
}

/* The upgrade succeeded: the framing takes the connection over. */
static void ws_handshake_done(struct agg_ws_handshake *h)
{
	agg_ws_done_cb cb = h->cb;
	void *arg = h->arg;
	struct bufferevent *bev;

	bev = agg_ws_wrap(h->base, h->lower, h->server);
	ws_handshake_free(h);
	if (bev == NULL)
		cb(NULL, "out of memory", arg);
	else
		cb(bev, NULL, arg);
}

/* Whether a comma-separated header value holds a token (any case). */
static int ws_has_token(const char *value, const char *token)
{
	size_t tlen = strlen(token), n;
	const char *p = value;

	while (*p != '\0') {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		n = strcspn(p, ",");
		while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
			n--;
		if (n == tlen && strncasecmp(p, token, tlen) == 0)
			return 1;
		p += strcspn(p, ",");
	}
	return 0;
}

/* Collects every value of a header (comma-joined) from a head whose lines
 * end in CRLF; 1 if present. */
static int ws_header(const char *head, const char *name, char *out,
    size_t outlen)
{
	size_t nlen = strlen(name), used = 0, vlen;
	const char *line = strstr(head, "\r\n"), *v, *end;
	int found = 0;

	out[0] = '\0';
	while (line != NULL && line[2] != '\0') {
		line += 2;
		end = strstr(line, "\r\n");
		if (end == NULL)
			break;
		if ((size_t)(end - line) > nlen && line[nlen] == ':' &&
		    strncasecmp(line, name, nlen) == 0) {
			for (v = line + nlen + 1; *v == ' ' || *v == '\t'; v++)
				;
			vlen = (size_t)(end - v);
			if (used + vlen + 3 < outlen) {
				if (found)
					used += (size_t)snprintf(out + used,
					    outlen - used, ", ");
				memcpy(out + used, v, vlen);
				used += vlen;
				out[used] = '\0';
			}
			found = 1;
		}
		line = end;
	}
	return found;
}

/* Server: sends a refusal and fails once it has left. */
static void ws_refuse(struct agg_ws_handshake *h, const char *status,
    const char *extra, const char *why)
{
	evbuffer_add_printf(bufferevent_get_output(h->lower),
	    "HTTP/1.1 %s\r\nContent-Length: 0\r\nConnection: close\r\n%s\r\n",
	    status, extra);
	snprintf(h->why, sizeof(h->why), "%s", why);
	h->refusing = 1;
	bufferevent_disable(h->lower, EV_READ);
}

/* Server: answers an upgrade request. */
static void ws_server_request(struct agg_ws_handshake *h, const char *head)
{
	char method[16], target[1024], version[16], value[512], why[200];
	char accept[29];
	size_t plen;

	if (sscanf(head, "%15s %1023s %15s", method, target, version) != 3 ||
	    strncmp(version, "HTTP/1.", 7) != 0) {
		ws_refuse(h, "400 Bad Request", "", "not an HTTP request");
		return;
	}
	plen = strcspn(target, "?");
	if (strlen(h->path) != plen || strncmp(target, h->path, plen) != 0) {
		snprintf(why, sizeof(why), "HTTP %.15s %.100s: 404 Not Found",
		    method, target);
		ws_refuse(h, "404 Not Found", "", why);
		return;
	}
	if (strcmp(method, "GET") != 0 || strcmp(version, "HTTP/1.1") != 0) {
		ws_refuse(h, "400 Bad Request", "", "not an HTTP/1.1 GET");
		return;
	}
	if (!ws_header(head, "Upgrade", value, sizeof(value)) ||
	    !ws_has_token(value, "websocket") ||
	    !ws_header(head, "Connection", value, sizeof(value)) ||
	    !ws_has_token(value, "upgrade")) {
		ws_refuse(h, "426 Upgrade Required", "Upgrade: websocket\r\n"
		    "Sec-WebSocket-Version: 13\r\n", "a request without "
		    "WebSocket upgrade");
		return;
	}
	if (!ws_header(head, "Sec-WebSocket-Version", value, sizeof(value)) ||
	    strcmp(value, "13") != 0) {
		ws_refuse(h, "426 Upgrade Required", "Upgrade: websocket\r\n"
		    "Sec-WebSocket-Version: 13\r\n", "WebSocket version is "
		    "not 13");
		return;
	}
	if (!ws_header(head, "Sec-WebSocket-Key", value, sizeof(value)) ||
	    !ws_key_valid(value) || ws_accept_key(value, accept) != 0) {
		ws_refuse(h, "400 Bad Request", "", "bad Sec-WebSocket-Key");
		return;
	}
	evbuffer_add_printf(bufferevent_get_output(h->lower),
	    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
	    "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", accept);
	ws_handshake_done(h);
}

/* Client: checks the answer to the upgrade request. */
static void ws_client_response(struct agg_ws_handshake *h, const char *head)
{
	char value[512], why[200];
	int status = 0;

	if (sscanf(head, "HTTP/1.%*1[01] %3d", &status) != 1 || status != 101) {
		snprintf(why, sizeof(why), "WebSocket upgrade refused: %.*s",
		    (int)(strcspn(head, "\r\n") > 100 ? 100 :
		    strcspn(head, "\r\n")), head);
		ws_handshake_fail(h, why);
		return;
	}
	if (!ws_header(head, "Upgrade", value, sizeof(value)) ||
	    !ws_has_token(value, "websocket") ||
	    !ws_header(head, "Connection", value, sizeof(value)) ||
	    !ws_has_token(value, "upgrade")) {
		ws_handshake_fail(h, "WebSocket upgrade failed: no Upgrade: "
		    "websocket in the answer");
		return;
	}
	if (!ws_header(head, "Sec-WebSocket-Accept", value, sizeof(value)) ||
	    strcmp(value, h->accept) != 0) {
		ws_handshake_fail(h, "WebSocket upgrade failed: wrong "
		    "Sec-WebSocket-Accept");
		return;
	}
	ws_handshake_done(h);
}

/* Bytes of the HTTP head arrived. */
static void ws_handshake_read_cb(struct bufferevent *bev, void *arg)
{
	struct agg_ws_handshake *h = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	char head[WS_HEAD_MAX + 1];
	struct evbuffer_ptr end;
	size_t len;

	if (h->refusing)
		return;
	end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
	if (end.pos < 0 || (size_t)end.pos + 4 > WS_HEAD_MAX) {
		if (evbuffer_get_length(in) <= WS_HEAD_MAX)
			return;
		if (h->server)
			ws_refuse(h, "431 Request Header Fields Too Large", "",
			    "HTTP request head too long");
		else
			ws_handshake_fail(h, "WebSocket upgrade failed: answer "
			    "too long");
		return;
	}
	len = (size_t)end.pos + 4;
	evbuffer_remove(in, head, len);
	head[len] = '\0';
	if (memchr(head, '\0', len) != NULL) {
		ws_handshake_fail(h, "NUL byte in the HTTP head");
		return;
	}
	if (h->server)
		ws_server_request(h, head);
	else
		ws_client_response(h, head);
}

/* The refusal has left: the connection goes. */
static void ws_handshake_write_cb(struct bufferevent *bev, void *arg)
{
	struct agg_ws_handshake *h = arg;

	(void)bev;
	if (h->refusing)
		ws_handshake_fail(h, h->why);
}

/* The connection ended during the upgrade. */
static void ws_handshake_event_cb(struct bufferevent *bev, short what,
    void *arg)
{
	struct agg_ws_handshake *h = arg;
	int err = EVUTIL_SOCKET_ERROR();
	char why[200];

	(void)bev;
	if (h->refusing) {
		ws_handshake_fail(h, h->why);
		return;
	}
	if (what & BEV_EVENT_EOF)
		snprintf(why, sizeof(why), "connection closed during the "
		    "WebSocket upgrade");
	else if (what & BEV_EVENT_ERROR)
		snprintf(why, sizeof(why), "WebSocket upgrade failed: %s",
		    err ? evutil_socket_error_to_string(err) : "I/O failure");
	else
		return;
	ws_handshake_fail(h, why);
}

/* The upgrade took too long. */
static void ws_handshake_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct agg_ws_handshake *h = arg;

	(void)fd;
	(void)what;
	ws_handshake_fail(h, h->refusing ? h->why :
	    "WebSocket upgrade timed out");
}

/* The common start of both sides. */
static struct agg_ws_handshake *ws_handshake_new(struct event_base *base,
    struct bufferevent *lower, const char *path, unsigned timeout_ms,
    int server, agg_ws_done_cb cb, void *arg)
{
	struct agg_ws_handshake *h;
	struct timeval tv;

	if ((h = calloc(1, sizeof(*h))) == NULL ||
	    (h->timer = evtimer_new(base, ws_handshake_timer_cb, h)) == NULL) {
		free(h);
		bufferevent_free(lower);
		return NULL;
	}
	h->base = base;
	h->lower = lower;
	h->server = server;
	h->cb = cb;
	h->arg = arg;
	snprintf(h->path, sizeof(h->path), "%s", path[0] ? path : "/");
	bufferevent_setcb(lower, ws_handshake_read_cb, ws_handshake_write_cb,
	    ws_handshake_event_cb, h);
	bufferevent_setwatermark(lower, EV_READ, 0, WS_HEAD_MAX + 1);
	bufferevent_enable(lower, EV_READ | EV_WRITE);
	/* What TLS read with its handshake's end: no event announces it. */
	if (evbuffer_get_length(bufferevent_get_input(lower)) > 0)
		bufferevent_trigger(lower, EV_READ, BEV_TRIG_IGNORE_WATERMARKS |
		    BEV_TRIG_DEFER_CALLBACKS);
	tv.tv_sec = (time_t)(timeout_ms / 1000);
	tv.tv_usec = (suseconds_t)(timeout_ms % 1000) * 1000;
	evtimer_add(h->timer, &tv);
	return h;
}

/* Client: asks for an upgrade on path. */
struct agg_ws_handshake *agg_ws_client_start(struct event_base *base,
    struct bufferevent *lower, const char *host, const char *path,
    unsigned timeout_ms, agg_ws_done_cb cb, void *arg)
{
	struct agg_ws_handshake *h;
	unsigned char nonce[16];
	char key[29];

	if ((h = ws_handshake_new(base, lower, path, timeout_ms, 0, cb,
	    arg)) == NULL)
		return NULL;
	if (RAND_bytes(nonce, sizeof(nonce)) != 1 ||
	    EVP_EncodeBlock((unsigned char *)key, nonce, sizeof(nonce)) != 24 ||
	    ws_accept_key(key, h->accept) != 0) {
		bufferevent_free(lower);
		ws_handshake_free(h);
		return NULL;
	}
	evbuffer_add_printf(bufferevent_get_output(lower),
	    "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
	    "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
	    "Sec-WebSocket-Version: 13\r\n\r\n", h->path, host, key);
	return h;
}

/* Server: reads the request and upgrades it if it asks for path. */
struct agg_ws_handshake *agg_ws_server_start(struct event_base *base,
    struct bufferevent *lower, const char *path, unsigned timeout_ms,
    agg_ws_done_cb cb, void *arg)
{
	return ws_handshake_new(base, lower, path, timeout_ms, 1, cb, arg);
}

/* Abandons an upgrade. */
void agg_ws_cancel(struct agg_ws_handshake *h)
{
	if (h == NULL)
		return;
	bufferevent_free(h->lower);
	ws_handshake_free(h);
}
