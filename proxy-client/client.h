/*
 * client.h: the agg-client process as the fronts (-D, -L) and the stdio
 * pipe (-W) see it: one session over a link set, streams opened on it,
 * and one way to end the program.
 */
#ifndef AGG_CLIENT_H
#define AGG_CLIENT_H

#include <stddef.h>

struct client;
struct event_base;
struct agg_session;
struct agg_stream;
struct agg_stream_callbacks;
struct agg_target;

/* How long a stream open may wait for the server's answer, in ms. */
#define CLIENT_OPEN_TIMEOUT_MS 30000u

/* The event loop. */
struct event_base *client_base(const struct client *c);
/* Opens a stream on the current session; the result arrives through
 * cbs->result (or cbs->closed if the session is lost first). NULL with a
 * one-line reason in err when no session can take it. */
struct agg_stream *client_open_stream(struct client *c,
    const struct agg_target *target, const struct agg_stream_callbacks *cbs,
    void *arg, char *err, size_t errlen);
/* Why no link is up: the link set's last error, or a general text. */
const char *client_link_error(const struct client *c);
/* Number of links up. */
size_t client_links_up(const struct client *c);
/* Number of links the link set dials or holds. */
size_t client_links_wanted(const struct client *c);
/* The current session (NULL between two). */
struct agg_session *client_session(const struct client *c);
/* Ends the program with an exit status; a non-zero status prints reason
 * as the one error line. The first call wins; the work happens from the
 * event loop, never inside the caller. */
void client_exit(struct client *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A front connection is gone (lets a shutdown finish early). */
void client_conn_closed(struct client *c);

#endif
