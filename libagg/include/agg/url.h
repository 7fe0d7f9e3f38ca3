/*
 * agg/url.h: link endpoint URLs: tcp://HOST:PORT, tls://HOST:PORT,
 * ws://HOST:PORT/PATH and wss://HOST:PORT/PATH (HOST may be [v6]).
 */
#ifndef AGG_URL_H
#define AGG_URL_H

#include <stddef.h>

#define AGG_DEFAULT_PORT "5800"

enum agg_url_scheme {
	AGG_URL_TCP,
	AGG_URL_TLS,
	AGG_URL_WS,
	AGG_URL_WSS,
};

struct agg_url {
	enum agg_url_scheme scheme;
	char host[256];   /* without brackets; empty: any address */
	char port[8];
	char path[256];   /* ws/wss: starts with '/'; "/" by default */
	char text[600];   /* as given, for messages */
};

/* Parses text into u; on error returns -1 with a one-line reason in err. */
int agg_url_parse(const char *text, struct agg_url *u, char *err,
    size_t errlen);
/* Scheme name ("tcp", "tls", "ws", "wss"). */
const char *agg_url_scheme_name(enum agg_url_scheme scheme);

#endif
