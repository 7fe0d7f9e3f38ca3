/*
 * httpproxy.c: HTTP CONNECT through a proxy. See httpproxy.h.
 */
#include "httpproxy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#define HP_HEAD_MAX 8192

struct agg_http_connect {
	struct bufferevent *bev;
	struct event *timer;
	agg_http_connect_cb cb;
	void *arg;
	char authority[300];
};

/* Parses http://HOST[:PORT][/]. */
int agg_http_proxy_parse(const char *text, struct agg_http_proxy *p,
    char *err, size_t errlen)
{
	const char *h = text, *end, *port = NULL;
	size_t hlen;
	char *stop;
	long n;

	if (strncmp(h, "http://", 7) != 0) {
		snprintf(err, errlen, "bad --http-proxy '%.300s': expected "
		    "http://HOST:PORT", text);
		return -1;
	}
	h += 7;
	if (*h == '[') {
		if ((end = strchr(h, ']')) == NULL)
			goto bad;
		hlen = (size_t)(end - h - 1);
		h++;
		end++;
	} else {
		end = h + strcspn(h, ":/");
		hlen = (size_t)(end - h);
	}
	if (*end == ':') {
		port = end + 1;
		end = port + strcspn(port, "/");
	}
	if (hlen == 0 || hlen >= sizeof(p->host) || memchr(h, '@', hlen) ||
	    !(*end == '\0' || strcmp(end, "/") == 0))
		goto bad;
	memcpy(p->host, h, hlen);
	p->host[hlen] = '\0';
	if (port == NULL) {
		snprintf(p->port, sizeof(p->port), "8080");
		return 0;
	}
	errno = 0;
	n = strtol(port, &stop, 10);
	if (errno != 0 || stop == port || (*stop != '\0' && *stop != '/') ||
	    n < 1 || n > 65535)
		goto bad;
	snprintf(p->port, sizeof(p->port), "%ld", n);
	return 0;
bad:
	snprintf(err, errlen, "bad --http-proxy '%.300s': expected "
	    "http://HOST:PORT (no user, no path)", text);
	return -1;
}

/* Frees a CONNECT whose connection went on or was freed. */
static void hp_free(struct agg_http_connect *c)
{
	event_free(c->timer);
	free(c);
}

/* The CONNECT failed: closes the connection and says why. */
static void hp_fail(struct agg_http_connect *c, const char *why)
{
	agg_http_connect_cb cb = c->cb;
	void *arg = c->arg;
	char msg[300];

	snprintf(msg, sizeof(msg), "%s", why);
	bufferevent_free(c->bev);
	hp_free(c);
	cb(NULL, msg, arg);
}

/* The proxy's answer arrived (or part of it). */
static void hp_read_cb(struct bufferevent *bev, void *arg)
{
	struct agg_http_connect *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	char head[HP_HEAD_MAX + 1], why[300];
	struct evbuffer_ptr end;
	agg_http_connect_cb cb;
	void *cb_arg;
	int status = 0;
	size_t len;

	end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
	if (end.pos < 0 || (size_t)end.pos + 4 > HP_HEAD_MAX) {
		if (evbuffer_get_length(in) > HP_HEAD_MAX)
			hp_fail(c, "HTTP proxy answer too long");
		return;
	}
	len = (size_t)end.pos + 4;
	evbuffer_remove(in, head, len);
	head[len] = '\0';
	if (sscanf(head, "HTTP/1.%*1[01] %3d", &status) != 1 ||
	    status < 200 || status > 299) {
		len = strcspn(head, "\r\n");
		snprintf(why, sizeof(why), "HTTP proxy refused CONNECT %.200s: "
		    "%.*s", c->authority, (int)(len > 80 ? 80 : len), head);
		hp_fail(c, why);
		return;
	}
	bufferevent_disable(bev, EV_READ | EV_WRITE);
	bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
	bufferevent_setwatermark(bev, EV_READ, 0, 0);
	cb = c->cb;
	cb_arg = c->arg;
	hp_free(c);
	cb(bev, NULL, cb_arg);
}

/* The proxy closed or failed before answering. */
static void hp_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct agg_http_connect *c = arg;
	int err = EVUTIL_SOCKET_ERROR();
	char why[300];

	(void)bev;
	if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
		return;
	snprintf(why, sizeof(why), "HTTP proxy %s before answering CONNECT",
	    (what & BEV_EVENT_EOF) || err == 0 ? "closed the connection" :
	    evutil_socket_error_to_string(err));
	hp_fail(c, why);
}

/* The proxy took too long. */
static void hp_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	hp_fail(arg, "HTTP proxy did not answer CONNECT in time");
}

/* Sends CONNECT and waits for the answer. */
struct agg_http_connect *agg_http_connect_start(struct event_base *base,
    struct bufferevent *bev, const char *authority, unsigned timeout_ms,
    agg_http_connect_cb cb, void *arg)
{
	struct agg_http_connect *c;
	struct timeval tv;

	if ((c = calloc(1, sizeof(*c))) == NULL ||
	    (c->timer = evtimer_new(base, hp_timer_cb, c)) == NULL) {
		free(c);
		bufferevent_free(bev);
		return NULL;
	}
	c->bev = bev;
	c->cb = cb;
	c->arg = arg;
	snprintf(c->authority, sizeof(c->authority), "%s", authority);
	evbuffer_add_printf(bufferevent_get_output(bev), "CONNECT %s HTTP/1.1"
	    "\r\nHost: %s\r\n\r\n", c->authority, c->authority);
	bufferevent_setcb(bev, hp_read_cb, NULL, hp_event_cb, c);
	bufferevent_setwatermark(bev, EV_READ, 0, HP_HEAD_MAX + 1);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	tv.tv_sec = (time_t)(timeout_ms / 1000);
	tv.tv_usec = (suseconds_t)(timeout_ms % 1000) * 1000;
	evtimer_add(c->timer, &tv);
	return c;
}

/* Abandons a CONNECT. */
void agg_http_connect_cancel(struct agg_http_connect *c)
{
	if (c == NULL)
		return;
	bufferevent_free(c->bev);
	hp_free(c);
}
