/*
 * hub.c: the server side's sessions. Incoming links run the server
 * handshake here; an authenticated link joins the session it names, or
 * creates it when the client asks to.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/bufferevent.h>
#include <event2/event.h>

#include "agg/log.h"
#include "auth.h"

TAILQ_HEAD(agg_session_list, agg_session);

struct agg_hub {
	struct event_base *base;
	struct agg_config cfg;
	uint8_t key[AGG_KEY_MAX];
	size_t key_len;
	size_t max_sessions;
	const struct agg_hub_callbacks *cbs;
	void *arg;
	struct agg_session_list sessions;
	size_t nsessions;
	struct agg_link_list pending;   /* handshaking, oldest first */
	size_t npending, max_pending;
	struct agg_link_list dead;      /* closed, to free */
	struct event *reap;
};

static void hub_reap_cb(evutil_socket_t fd, short what, void *arg);

/* Creates a hub. */
struct agg_hub *agg_hub_new(struct event_base *base,
    const struct agg_config *cfg, const void *key, size_t key_len,
    size_t max_sessions, const struct agg_hub_callbacks *cbs, void *arg)
{
	struct agg_hub *hub;

	if (key_len > AGG_KEY_MAX || (hub = calloc(1, sizeof(*hub))) == NULL)
		return NULL;
	if ((hub->reap = event_new(base, -1, 0, hub_reap_cb, hub)) == NULL) {
		free(hub);
		return NULL;
	}
	hub->base = base;
	hub->cfg = *cfg;
	if (key_len > 0)
		memcpy(hub->key, key, key_len);
	hub->key_len = key_len;
	hub->max_sessions = max_sessions;
	hub->max_pending = AGG_HUB_MAX_HANDSHAKING;
	hub->cbs = cbs;
	hub->arg = arg;
	TAILQ_INIT(&hub->sessions);
	TAILQ_INIT(&hub->pending);
	TAILQ_INIT(&hub->dead);
	return hub;
}

/* Sets how many links may handshake at once. */
void agg_hub_set_max_handshaking(struct agg_hub *hub, size_t max)
{
	hub->max_pending = max > 0 ? max : 1;
}

/* Takes an accepted connection and starts the server handshake; closes
 * the oldest handshaking link if there are too many. */
void agg_hub_add_link(struct agg_hub *hub, struct bufferevent *bev,
    const char *name)
{
	struct agg_link *link;

	if (hub->npending >= hub->max_pending &&
	    (link = TAILQ_FIRST(&hub->pending)) != NULL) {
		agg_log_warn("too many links handshaking (limit %zu): closing "
		    "the oldest, link %s", hub->max_pending, link->name);
		agg_link_close(link, "too many links handshaking");
	}

	link = agg_link_new(hub->base, bev, AGG_ROLE_SERVER, name,
	    hub->cfg.handshake_ms);
	if (link == NULL) {
		bufferevent_free(bev);
		return;
	}
	link->hub = hub;
	TAILQ_INSERT_TAIL(&hub->pending, link, entry);
	hub->npending++;
}

/* A handshaking link closed: free it soon. */
void agg_hub_link_closed(struct agg_hub *hub, struct agg_link *link)
{
	agg_log_info("link %s: %s", link->name, link->reason);
	TAILQ_REMOVE(&hub->pending, link, entry);
	hub->npending--;
	TAILQ_INSERT_TAIL(&hub->dead, link, entry);
	event_active(hub->reap, 0, 0);
}

/* Frees closed handshaking links. */
static void hub_reap_cb(evutil_socket_t fd, short what, void *arg)
{
	struct agg_hub *hub = arg;
	struct agg_link *link;

	(void)fd;
	(void)what;
	while ((link = TAILQ_FIRST(&hub->dead)) != NULL) {
		TAILQ_REMOVE(&hub->dead, link, entry);
		agg_link_free(link);
	}
}

/* Finds a live session by id. */
static struct agg_session *hub_find(struct agg_hub *hub, const uint8_t *id)
{
	struct agg_session *s;

	TAILQ_FOREACH(s, &hub->sessions, hub_entry)
		if (!s->closed && agg_session_has_id(s, id))
			return s;
	return NULL;
}

/* Refuses a link with a WELCOME status and a logged reason. */
static void hub_refuse(struct agg_hub *hub, struct agg_link *link,
    uint8_t status, const char *reason)
{
	agg_log_warn("link %s refused: %s", link->name, reason);
	agg_link_server_welcome(link, hub->key, hub->key_len, status, reason);
}

/* The client's AUTH arrived: check it, then join or create the session. */
void agg_hub_on_auth(struct agg_hub *hub, struct agg_link *link)
{
	uint8_t expect[AGG_MAC_LEN];
	struct agg_client_hello h;
	struct agg_session *s;

	agg_client_hello_decode(link->hello, sizeof(link->hello), &h);
	if (agg_auth_client_mac(hub->key, hub->key_len, link->hello,
	    link->shello, expect) != 0 || !agg_auth_equal(expect, link->auth)) {
		hub_refuse(hub, link, AGG_WELCOME_AUTH_FAILED,
		    "authentication failed (wrong secret?)");
		return;
	}
	if ((s = hub_find(hub, h.session_id)) == NULL) {
		if (!(h.flags & AGG_HELLO_CREATE)) {
			hub_refuse(hub, link, AGG_WELCOME_UNKNOWN_SESSION,
			    "unknown session");
			return;
		}
		if (hub->nsessions >= hub->max_sessions) {
			hub_refuse(hub, link, AGG_WELCOME_LIMIT,
			    "session limit reached");
			return;
		}
		s = agg_session_new(hub->base, &hub->cfg, hub->key,
		    hub->key_len, AGG_ROLE_SERVER, h.session_id);
		if (s == NULL) {
			hub_refuse(hub, link, AGG_WELCOME_LIMIT, "out of memory");
			return;
		}
		s->hub = hub;
		TAILQ_INSERT_TAIL(&hub->sessions, s, hub_entry);
		hub->nsessions++;
		agg_log_info("session %s created by link %s", s->id_hex,
		    link->name);
		if (hub->cbs != NULL && hub->cbs->session_new != NULL)
			hub->cbs->session_new(hub, s, hub->arg);
	} else if (agg_session_link_id_used(s, h.link_id)) {
		hub_refuse(hub, link, AGG_WELCOME_DUPLICATE_LINK,
		    "duplicate link id");
		return;
	} else if (s->nlinks >= s->cfg.max_links) {
		hub_refuse(hub, link, AGG_WELCOME_LIMIT, "link limit reached");
		return;
	}
	agg_link_server_welcome(link, hub->key, hub->key_len, AGG_WELCOME_OK,
	    NULL);
	TAILQ_REMOVE(&hub->pending, link, entry);
	hub->npending--;
	link->hub = NULL;
	agg_session_attach(s, link);
}

/* Number of live sessions. */
size_t agg_hub_sessions(const struct agg_hub *hub)
{
	return hub->nsessions;
}

/* Calls fn for each session. */
void agg_hub_foreach(struct agg_hub *hub,
    void (*fn)(struct agg_session *session, void *arg), void *arg)
{
	struct agg_session *s, *next;

	TAILQ_FOREACH_SAFE(s, &hub->sessions, hub_entry, next)
		fn(s, arg);
}

/* Removes a session from the hub and frees it. */
void agg_hub_remove_session(struct agg_hub *hub, struct agg_session *s)
{
	TAILQ_REMOVE(&hub->sessions, s, hub_entry);
	hub->nsessions--;
	s->hub = NULL;
	agg_session_free(s);
}

/* Frees the hub, its handshaking links and its sessions. */
void agg_hub_free(struct agg_hub *hub)
{
	struct agg_link *link;
	struct agg_session *s;

	if (hub == NULL)
		return;
	while ((link = TAILQ_FIRST(&hub->pending)) != NULL) {
		TAILQ_REMOVE(&hub->pending, link, entry);
		agg_link_free(link);
	}
	hub_reap_cb(-1, 0, hub);
	while ((s = TAILQ_FIRST(&hub->sessions)) != NULL)
		agg_hub_remove_session(hub, s);
	event_free(hub->reap);
	free(hub);
}
