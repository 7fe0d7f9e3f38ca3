/*
 * pair.h: an in-process shaped link for tests and benchmarks.
 *
 * An agg_pair joins two app-side bufferevents, end A and end B, through a
 * relay running in the same event loop. Each end is a bufferevent_socket on
 * one half of a socketpair; the relay owns the other halves and moves the
 * bytes between them, shaped per direction:
 *
 *   rate    a token bucket (bytes/s, 0 = unlimited; bursts of 10 ms),
 *   delay   a one-way propagation delay, applied after the rate limit,
 *   stall   a silent blackhole: nothing is delivered (EOF neither) and
 *           nothing fails; held bytes go on in order once it lifts,
 *   cut     the link dies: both ends see EOF or an error at once.
 *
 * Bytes are never reordered, duplicated or lost, except by a cut. The relay
 * applies back-pressure: once the bytes it holds in a direction, waiting
 * for rate tokens or for the far end to read, reach the queue limit, it
 * stops reading from the sender, whose socket buffer then fills. It reads
 * in steps of up to 64 KiB, so it may hold that much beyond the limit.
 * Bytes in the delay line do not count against the limit (a link of rate R
 * and delay D carries R * D bytes) but are capped at max(16 MiB, 2 * R * D).
 * On Linux the delay is timed by a timerfd, so it is precise whatever the
 * base's timer flags.
 *
 * EOF passes through: when an end closes or shuts down for writing, the
 * relay delivers what it holds from it, then shuts down its socket towards
 * the far end for writing, so the far end sees EOF after the last byte.
 * When the relay cannot write to an end because that end was closed, it
 * drops what was queued for it and makes the other end's further writes
 * fail. Once both directions have ended the relay closes its sockets.
 *
 * The app-side bufferevents write with writev(2): callers must ignore
 * SIGPIPE, or writing to an end after a cut kills the process.
 */
#ifndef AGG_PAIR_H
#define AGG_PAIR_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct bufferevent;
struct agg_pair;

/*
 * Creates a pair on base, unshaped. *a and *b receive the app-side
 * bufferevents (BEV_OPT_CLOSE_ON_FREE, writing enabled, reading not yet
 * enabled, as libevent creates them); the caller owns them and freeing one
 * closes that end. Returns NULL, with *a and *b NULL, on failure.
 */
struct agg_pair *agg_pair_new(struct event_base *base, struct bufferevent **a,
    struct bufferevent **b);

/* Sets the rate of each direction in bytes per second, 0 for unlimited. */
void agg_pair_set_rate(struct agg_pair *p, uint64_t a_to_b, uint64_t b_to_a);

/*
 * Sets the one-way delay of each direction in microseconds. A change
 * applies to bytes released from then on; bytes never overtake earlier ones.
 */
void agg_pair_set_delay(struct agg_pair *p, uint32_t a_to_b_us,
    uint32_t b_to_a_us);

/*
 * Sets how many bytes a direction holds before the relay stops reading from
 * the sender. 0 restores the default, max(64 KiB, rate * 50 ms).
 */
void agg_pair_set_queue_limit(struct agg_pair *p, size_t bytes);

/* Stalls (nonzero) or resumes (0) both directions. */
void agg_pair_set_stall(struct agg_pair *p, int stalled);

/* Kills the link: drops held bytes and closes the relay's sockets. */
void agg_pair_cut(struct agg_pair *p);

/* Bytes written to the far end so far; a_to_b nonzero: A to B, else B to A. */
uint64_t agg_pair_forwarded(const struct agg_pair *p, int a_to_b);

/* Bytes the relay holds in a direction: queued, in flight, or unwritten. */
size_t agg_pair_queued(const struct agg_pair *p, int a_to_b);

/*
 * Frees the relay and closes its sockets, so the app ends see EOF. Does not
 * free the app-side bufferevents.
 */
void agg_pair_free(struct agg_pair *p);

#endif
