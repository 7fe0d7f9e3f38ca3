/*
 * agg/bevio.h: socket I/O for bufferevents that libevent 2.1 lacks, for
 * links and the layers below them (TLS, WebSocket): large reads, and a
 * last flush before a bufferevent is freed.
 */
#ifndef AGG_BEVIO_H
#define AGG_BEVIO_H

#include <event2/bufferevent.h>

struct evbuffer;

/* Reads what else a plain socket bufferevent's socket holds into in (its
 * input), up to 1 MiB, in blocks that later moves share rather than copy:
 * libevent reads at most 4 KiB per readiness event. Does nothing for other
 * bufferevents. Returns 0, or -1 with errno (0 for EOF) when the socket
 * reached its end or failed. */
int agg_bev_read_more(struct bufferevent *bev, struct evbuffer *in);
/* Writes what a plain socket bufferevent's output holds to its socket now
 * rather than when the loop next reports it writable: the bytes leave
 * while they are still in the cache, and a socket with room costs no
 * readiness round trip. What would block stays queued for libevent, which
 * also reports errors. Returns the bytes written; 0 for other
 * bufferevents. */
size_t agg_bev_write_now(struct bufferevent *bev);
/* Pushes what bev queued down through its filters (with mode, BEV_FLUSH or
 * BEV_FINISHED) and writes the socket's share once, without blocking:
 * for a connection about to be freed. */
void agg_bev_last_flush(struct bufferevent *bev,
    enum bufferevent_flush_mode mode);

#endif
