/*
 * agg/dump.h: the analysis dump (--dump FILE). Every 100 ms the owner's
 * collect callback names its sessions with agg_dump_session(), and each
 * becomes one JSON Lines record: the session's and each link's internals
 * (rates, RTT, in-flight cap, queue, unacked bytes, resends, state).
 * Record fields are listed in README.md ("Analysis dump").
 */
#ifndef AGG_DUMP_H
#define AGG_DUMP_H

#include <stddef.h>

#include "agg/session.h"

struct event_base;
struct evbuffer;
struct agg_dump;

/* Milliseconds between records. */
#define AGG_DUMP_INTERVAL_MS 100

/* Called every interval: call agg_dump_session() for each session. */
typedef void (*agg_dump_collect_fn)(struct agg_dump *dump, void *arg);

/* Opens path for writing (truncating it) and starts the timer; program
 * names the writer in every record. NULL with a reason in err. */
struct agg_dump *agg_dump_open(struct event_base *base, const char *path,
    const char *program, agg_dump_collect_fn collect, void *arg, char *err,
    size_t errlen);
/* Writes one record for session (from the collect callback, or at any
 * time, e.g. on a link state change). */
void agg_dump_session(struct agg_dump *dump, const struct agg_session *s);
/* Writes a last record set, closes the file and frees the dump. */
void agg_dump_close(struct agg_dump *dump);

/* Appends the JSON object of one session (no newline) to out; t_s is the
 * record's time in seconds since the dump started. */
void agg_dump_session_json(struct evbuffer *out, const struct agg_session *s,
    const char *program, double t_s);
/* Appends s as a JSON string (quoted, escaped) to out. */
void agg_json_string(struct evbuffer *out, const char *s);
/* The state's name: "handshake", "up", "stalled" or "closed". */
const char *agg_link_state_name(enum agg_link_state state);

#endif
