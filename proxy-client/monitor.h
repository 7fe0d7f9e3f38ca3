/*
 * monitor.h: the full-screen link monitor (--monitor) of agg-client and
 * agg-server. It redraws a few times a second from libagg's statistics:
 * per session the totals, per link its transport, local interface and
 * remote address, state with reason and since when, RTT, rates, queued and
 * unacked bytes, resends; below them the last link events and log lines.
 * Keys: q asks the owner to quit, a shows or hides links not connected.
 * Links that left their session stay listed as down until they return.
 */
#ifndef MONITOR_H
#define MONITOR_H

#include <stddef.h>
#include <stdint.h>

#include "agg/session.h"

struct event_base;
struct monitor;

/* Calls fn(session, fnarg) for each session to show. */
typedef void (*monitor_foreach_fn)(void (*fn)(struct agg_session *s,
    void *fnarg), void *fnarg, void *arg);

/* A link the owner dials that is not (or not yet) in a session. */
struct monitor_slot {
	char name[64];           /* as its link will be named */
	int dialling;            /* connecting now, else waiting to retry */
	char why[128];           /* its last failure, "" if none */
	uint64_t why_us;         /* when (CLOCK_MONOTONIC, microseconds) */
};

struct monitor_callbacks {
	monitor_foreach_fn foreach;
	/* q was pressed: shut down as on SIGTERM. */
	void (*quit)(void *arg);
	/* The transport of a link by its name ("tcp", "tls", ...); may be
	 * NULL. */
	const char *(*transport)(const char *link_name, void *arg);
	/* A line about what is wrong (e.g. the last dial error), or "";
	 * may be NULL. */
	const char *(*status)(void *arg);
	/* Fills up to cap of the links the owner dials for its one session
	 * (agg-client's link set); returns how many there are. May be NULL. */
	size_t (*slots)(struct monitor_slot *out, size_t cap, void *arg);
	/* Forget a link down this many seconds (0: keep it; agg-server's
	 * departed links never come back under the same name). */
	unsigned forget_down_s;
};

/* Whether the monitor is the default: stdout is a terminal and we are
 * in its foreground. */
int monitor_default(void);
/* Takes over the terminal; NULL with a reason in err (e.g. an unknown
 * terminal type). program is the title. Log lines go to the view's
 * event list until monitor_free(). */
struct monitor *monitor_new(struct event_base *base, const char *program,
    const struct monitor_callbacks *cbs, void *arg, char *err,
    size_t errlen);
/* A link changed state (from the session's link_state callback). */
void monitor_link_state(struct monitor *m, struct agg_session *s,
    struct agg_link *link, enum agg_link_state state, const char *reason);
/* Adds a line to the event list. */
void monitor_event(struct monitor *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Gives the terminal back and frees the monitor (NULL is fine). */
void monitor_free(struct monitor *m);

#endif
