/*
 * sockio.h: socket I/O below a layer (TLS, WebSocket). Large reads:
 * libevent 2.1 reads at most 4 KiB per readiness event, so a layer's read
 * callback calls agg_read_more() first to take up to 256 KiB. A last
 * flush: what a layer queued (an alert, a 404) leaves before it is freed.
 */
#ifndef AGG_SOCKIO_H
#define AGG_SOCKIO_H

struct bufferevent;

/* Reads what else a plain socket bufferevent's socket holds into its
 * input, without blocking. Errors and EOF are left for libevent's next
 * read to find. Does nothing for other bufferevents. */
void agg_read_more(struct bufferevent *bev);
/* Pushes what bev queued down through its filters and writes the
 * socket's share once, without blocking (whatever would block is
 * dropped): for a connection about to be freed. */
void agg_last_flush(struct bufferevent *bev);

#endif
