/*
 * httpproxy.h: reaching a link's server through an HTTP proxy with
 * CONNECT (agg-client --http-proxy http://HOST:PORT). The proxy URL is
 * parsed here; a CONNECT turns a connection to the proxy into a byte pipe
 * to the server, on which the link's scheme (TLS, WebSocket) goes on.
 */
#ifndef AGG_HTTPPROXY_H
#define AGG_HTTPPROXY_H

#include <stddef.h>

struct event_base;
struct bufferevent;
struct agg_http_connect;

/* An HTTP proxy: host (without brackets) and port. */
struct agg_http_proxy {
	char host[256];
	char port[8];
};

/* Parses http://HOST[:PORT][/] (port 8080 by default; [v6] in brackets).
 * 0, or -1 with a one-line reason in err. */
int agg_http_proxy_parse(const char *text, struct agg_http_proxy *p,
    char *err, size_t errlen);

/* A finished CONNECT: bev is the pipe to the server (the callee owns it),
 * or NULL with a one-line reason ("HTTP proxy refused CONNECT srv:5801:
 * HTTP/1.1 403 Forbidden"). */
typedef void (*agg_http_connect_cb)(struct bufferevent *bev,
    const char *error, void *arg);

/* Sends CONNECT authority (host:port, [v6]:port) on bev, a connection to
 * the proxy (taken over; freed on failure), and waits for a 2xx answer.
 * cb never runs from within this call. NULL if out of memory (bev freed). */
struct agg_http_connect *agg_http_connect_start(struct event_base *base,
    struct bufferevent *bev, const char *authority, unsigned timeout_ms,
    agg_http_connect_cb cb, void *arg);
/* Abandons a CONNECT (its callback will not run). */
void agg_http_connect_cancel(struct agg_http_connect *c);

#endif
