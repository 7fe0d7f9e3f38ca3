/*
 * agg/bevio.h: socket I/O for bufferevents that libevent 2.1 lacks, for
 * links and the layers below them (TLS, WebSocket): large reads, and a
 * last flush before a bufferevent is freed.
 */
#ifndef AGG_BEVIO_H
#define AGG_BEVIO_H

#include <stdbool.h>

#include <event2/bufferevent.h>

struct evbuffer;
struct agg_bev_reader;
struct agg_bev_writer;

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
/* Takes over reading a plain socket bufferevent: libevent's own reads
 * (4 KiB and a FIONREAD per readiness event) stop, and cb runs when the
 * socket is readable, to call agg_bev_read_more(). NULL, not an error,
 * for other bufferevents and non-sockets: they keep libevent's reads. */
struct agg_bev_reader *agg_bev_reader_new(struct bufferevent *bev,
    bufferevent_data_cb cb, void *arg);
/* Starts or stops reading bev, through its reader when it has one. */
void agg_bev_set_reading(struct agg_bev_reader *r, struct bufferevent *bev,
    bool on);
/* Whether bev is being read (through r when it has one). */
bool agg_bev_is_reading(const struct agg_bev_reader *r,
    struct bufferevent *bev);
/* Frees a reader (NULL is fine); before its bufferevent is freed. */
void agg_bev_reader_free(struct agg_bev_reader *r);
/* Takes over when a plain socket bufferevent writes: bytes added to its
 * output are written at the end of the loop pass that added them, and
 * libevent's write event (an epoll_ctl each way) is armed only while the
 * socket is full. The bufferevent's write callback runs as libevent would
 * run it. NULL, not an error, for other bufferevents: they keep
 * libevent's writing. */
struct agg_bev_writer *agg_bev_writer_new(struct bufferevent *bev);
/* Frees a writer (NULL is fine); before its bufferevent is freed. */
void agg_bev_writer_free(struct agg_bev_writer *w);
/* Pushes what bev queued down through its filters (with mode, BEV_FLUSH or
 * BEV_FINISHED) and writes the socket's share once, without blocking:
 * for a connection about to be freed. */
void agg_bev_last_flush(struct bufferevent *bev,
    enum bufferevent_flush_mode mode);

#endif
