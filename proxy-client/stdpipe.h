/*
 * stdpipe.h: -W HOST:PORT: stdin and stdout joined to one stream, as ssh's
 * ProxyCommand expects. The program ends with the stream: status 0 when
 * both directions ended cleanly, 1 with the reason otherwise.
 */
#ifndef AGG_STDPIPE_H
#define AGG_STDPIPE_H

#include <stddef.h>

struct client;
struct agg_target;
struct stdpipe;

/* Opens the stream to target; stdin is read only once it is connected.
 * NULL with a one-line reason in err. */
struct stdpipe *stdpipe_new(struct client *c, const struct agg_target *target,
    char *err, size_t errlen);
/* Closes the stream (reset unless it ended) and restores the terminal's
 * blocking mode. */
void stdpipe_free(struct stdpipe *p);

#endif
