/*
 * readmore.h: large reads for the socket bufferevent below a layer (TLS,
 * WebSocket). libevent 2.1 reads at most 4 KiB per readiness event; a
 * layer's read callback calls agg_read_more() first to take up to 256 KiB.
 */
#ifndef AGG_READMORE_H
#define AGG_READMORE_H

struct bufferevent;

/* Reads what else a plain socket bufferevent's socket holds into its
 * input, without blocking. Errors and EOF are left for libevent's next
 * read to find. Does nothing for other bufferevents. */
void agg_read_more(struct bufferevent *bev);

#endif
