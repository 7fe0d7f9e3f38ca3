/*
 * front.h: the local listeners of agg-client. A -D front answers SOCKS5
 * and HTTP CONNECT (socks.h) on each connection, a -L front forwards to a
 * fixed target; either way the connection becomes a stream of the session
 * once the server has connected it, and is spliced to it.
 */
#ifndef AGG_FRONT_H
#define AGG_FRONT_H

#include <stddef.h>

#include "agg/target.h"

struct client;
struct front;
struct socks_users;

enum front_kind {
	FRONT_SOCKS,    /* -D */
	FRONT_FORWARD,  /* -L */
};

struct front_spec {
	enum front_kind kind;
	char bind[256];           /* address or name; "" for every address */
	char port[8];
	struct agg_target target; /* -L only */
	char text[300];           /* "-D 127.0.0.1:1080", for messages */
};

/* Parses a -D argument, [ADDR:]PORT. -1 with a one-line reason in err. */
int front_spec_socks(const char *arg, struct front_spec *spec, char *err,
    size_t errlen);
/* Parses a -L argument, [ADDR:]PORT:HOST:HOSTPORT. -1 with a reason. */
int front_spec_forward(const char *arg, struct front_spec *spec, char *err,
    size_t errlen);

/* Listens as spec says; users (may be NULL) guard -D. NULL with a
 * one-line reason in err, e.g. "cannot listen on 127.0.0.1:1080: Address
 * already in use". */
struct front *front_new(struct client *c, const struct front_spec *spec,
    const struct socks_users *users, char *err, size_t errlen);
/* Stops accepting; connections carry on. */
void front_stop(struct front *f);
/* Connections still open. */
size_t front_conns(const struct front *f);
/* Closes the listeners and every connection. */
void front_free(struct front *f);

#endif
