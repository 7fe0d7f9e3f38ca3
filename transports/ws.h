/*
 * ws.h: WebSocket (RFC 6455) links over any connected bufferevent (TCP or
 * TLS). The client sends the HTTP/1.1 Upgrade for a path and checks the
 * answer; the server answers it on its path (other paths get a plain
 * 404). Once upgraded, the connection becomes a filter bufferevent whose
 * bytes travel as binary frames (masked from the client), with ping/pong,
 * the close handshake, frame size limits and strict rejection of
 * malformed frames.
 */
#ifndef AGG_WS_H
#define AGG_WS_H

struct event_base;
struct bufferevent;
struct agg_ws_handshake;

/* Data frames larger than this are refused. */
#define AGG_WS_MAX_FRAME (16u << 20)

/* A finished upgrade: bev is the WebSocket bufferevent (the callee owns
 * it), or NULL with a one-line reason. */
typedef void (*agg_ws_done_cb)(struct bufferevent *bev, const char *error,
    void *arg);

/* Client: asks lower (taken over; freed on failure) for an upgrade on
 * path, with host as the Host header. cb never runs from within this. */
struct agg_ws_handshake *agg_ws_client_start(struct event_base *base,
    struct bufferevent *lower, const char *host, const char *path,
    unsigned timeout_ms, agg_ws_done_cb cb, void *arg);
/* Server: reads the request on lower (taken over) and upgrades it if it
 * asks for path; answers 404, 400 or 426 otherwise and fails. */
struct agg_ws_handshake *agg_ws_server_start(struct event_base *base,
    struct bufferevent *lower, const char *path, unsigned timeout_ms,
    agg_ws_done_cb cb, void *arg);
/* Abandons an upgrade (its callback will not run). */
void agg_ws_cancel(struct agg_ws_handshake *h);

/* Puts the framing on an upgraded connection (server: it expects masked
 * frames). Returns the bufferevent that carries the link's bytes; it owns
 * lower. NULL on failure (lower is freed). */
struct bufferevent *agg_ws_wrap(struct event_base *base,
    struct bufferevent *lower, int server);

#endif
