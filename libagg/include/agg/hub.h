/*
 * agg/hub.h: the server side's registry of sessions. It authenticates every
 * incoming link, then attaches it to the session it names or to a new one.
 */
#ifndef AGG_HUB_H
#define AGG_HUB_H

#include <stddef.h>

#include "agg/session.h"

struct agg_hub;

/* Events of a hub, for its owner. */
struct agg_hub_callbacks {
	/* A client created a session; set its callbacks with
	 * agg_session_set_callbacks() before returning. */
	void (*session_new)(struct agg_hub *hub, struct agg_session *session,
	    void *arg);
};

/* Creates a hub whose links authenticate with key (key_len 0: no secret).
 * max_sessions bounds concurrent sessions. */
struct agg_hub *agg_hub_new(struct event_base *base,
    const struct agg_config *cfg, const void *key, size_t key_len,
    size_t max_sessions, const struct agg_hub_callbacks *cbs, void *arg);
/* Links handshaking at once, by default: beyond it, the oldest is closed
 * (a flood of silent connections cannot lock clients out). */
#define AGG_HUB_MAX_HANDSHAKING 1024
/* Sets how many links may handshake at once (at least 1). */
void agg_hub_set_max_handshaking(struct agg_hub *hub, size_t max);
/* Runs the server handshake on an accepted connection; the hub owns bev. */
void agg_hub_add_link(struct agg_hub *hub, struct bufferevent *bev,
    const char *name);
/* Number of live sessions. */
size_t agg_hub_sessions(const struct agg_hub *hub);
/* Calls fn for each live session. */
void agg_hub_foreach(struct agg_hub *hub,
    void (*fn)(struct agg_session *session, void *arg), void *arg);
/* Forgets a session its owner freed or wants freed: closes and frees it. */
void agg_hub_remove_session(struct agg_hub *hub, struct agg_session *session);
/* Frees the hub, its pending links and its sessions. */
void agg_hub_free(struct agg_hub *hub);

#endif
