/*
 * agg/splice.h: joins a stream and a local byte pipe (a socket, or stdin and
 * stdout): bytes flow both ways with back-pressure, a half-close passes
 * through in each direction, and the owner hears once when it is over.
 */
#ifndef AGG_SPLICE_H
#define AGG_SPLICE_H

struct agg_stream;
struct bufferevent;
struct agg_splice;

/* Called once: error 0 when both directions ended cleanly, else the stream
 * result code of the failure (AGG_ERR_*) and a reason. The owner then
 * calls agg_splice_free(), which may be done from inside this callback. */
typedef void (*agg_splice_done_cb)(struct agg_splice *sp, int error,
    const char *reason, void *arg);

/* Splices an open stream with in (read from) and out (written to); in and
 * out are the same bufferevent for a socket. The splice owns the stream and
 * both bufferevents from now on. NULL on allocation failure (then nothing
 * is taken over). */
struct agg_splice *agg_splice_new(struct agg_stream *stream,
    struct bufferevent *in, struct bufferevent *out, agg_splice_done_cb cb,
    void *arg);
/* Bytes moved so far: local to stream (up) and stream to local (down). */
void agg_splice_counts(const struct agg_splice *sp, unsigned long long *up,
    unsigned long long *down);
/* Frees the splice: resets the stream if it did not end cleanly, frees the
 * bufferevents. */
void agg_splice_free(struct agg_splice *sp);

#endif
