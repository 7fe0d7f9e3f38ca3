/*
 * harness.h: a client session and a server hub in one event loop, joined by
 * shaped in-process links (transports/pair.h), with test applications on
 * both ends that produce and verify a known byte pattern.
 *
 * Server-side behaviour is chosen by the target host name of each stream:
 *   "sink"        accept, read and verify everything until FIN, then FIN
 *   "source"      accept and send target-port MiB of pattern, then FIN
 *   "echo"        accept and send back what arrives; FIN after FIN
 *   "slow"        accept, send the pattern like "source", never read
 *   "refuse"      refuse with code = target port
 *   "pipe"        accept and splice (agg/splice.h) to an in-process echo
 *                 socket that shuts down after EOF (one at a time)
 */
#ifndef AGG_HARNESS_H
#define AGG_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agg/hub.h"
#include "agg/session.h"

#define HARNESS_MAX_LINKS 16
#define PATTERN_PERIOD 65521u

struct agg_pair;
struct event_base;

/* One end's view of a stream's transfer. */
struct xfer {
	struct agg_stream *stream;
	uint64_t to_send;      /* bytes to write, then FIN */
	uint64_t sent;
	uint64_t received;
	uint64_t bad_offset;   /* first mismatching offset + 1, 0 if none */
	bool reading;          /* drain and verify input */
	bool echo;
	bool got_result, got_eof, closed;
	int result_code;
	int closed_code;
	char message[256];
	bool shutdown_sent;
	bool free_on_done;
};

struct harness {
	struct event_base *base;
	struct agg_config cfg;
	struct agg_hub *hub;
	struct agg_session *client;
	struct agg_session *server;
	struct agg_pair *pairs[HARNESS_MAX_LINKS];
	struct agg_link *client_links[HARNESS_MAX_LINKS];
	size_t npairs;
	char last_link_reason[256];
	char server_link_reason[256];
	int server_link_closed_count, server_link_stalled_count;
	int link_closed_count, link_stalled_count, link_up_count;
	bool server_closed, client_closed;
	char server_close_reason[256], client_close_reason[256];
	struct bufferevent *echo_bev;
	bool echo_eof, splice_done;
	int splice_error;
	char splice_reason[256];
	struct xfer server_xfers[1024];
	size_t nserver_xfers;
};

/* Byte at a stream offset in the test pattern. */
uint8_t pattern_byte(uint64_t offset);

/* Creates a harness with nlinks unshaped links (cfg NULL: defaults). */
struct harness *harness_new(size_t nlinks, const struct agg_config *cfg,
    const char *client_key, const char *server_key);
/* Adds one more link; returns its index. */
size_t harness_add_link(struct harness *h);
/* Runs the loop until done(arg) is true or seconds pass; true if done. */
bool harness_run(struct harness *h, bool (*done)(struct harness *, void *),
    void *arg, double seconds);
/* Runs the loop for about the given time. */
void harness_sleep(struct harness *h, double seconds);
/* Opens a client stream to "host:port" with x as its transfer state. */
struct agg_stream *harness_open(struct harness *h, const char *target,
    struct xfer *x);
/* Writes as much of x's remaining bytes as the stream takes. */
void xfer_pump(struct xfer *x);
/* Sum of DATA payload bytes sent on link i by the server and client. */
uint64_t harness_link_payload(struct harness *h, size_t i);
/* State of the client's link i (AGG_LINK_CLOSED if gone). */
enum agg_link_state harness_link_state(struct harness *h, size_t i);
/* Frees everything. */
void harness_free(struct harness *h);

#endif
