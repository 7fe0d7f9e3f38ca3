/*
 * dialer.h: connects the streams a client opens to their destinations.
 *
 * For each stream the dialer checks the policy, resolves a host name with
 * evdns (IPv6 and IPv4 at once; a name resolved in the last few seconds
 * is taken from a small cache), checks every address it resolves to,
 * and connects without blocking, happy-eyeballs style: it tries one
 * address, starts the next after a short delay or at once when one fails,
 * and keeps the first connection that succeeds. Then it accepts the stream
 * and splices it to the socket (agg/splice.h); on failure it refuses the
 * stream with the SOCKS5 code that fits and a one-line message such as
 * "connect to example.com:80 failed: connection refused".
 */
#ifndef AGG_DIALER_H
#define AGG_DIALER_H

#include <stddef.h>

struct event_base;
struct evdns_base;
struct agg_stream;
struct agg_target;
struct policy;
struct dialer;

struct dialer_options {
	unsigned timeout_ms;  /* whole open, resolving included */
	unsigned fallback_ms; /* start the next address after this */
	unsigned dns_cache_ms; /* keep a name's addresses this long; 0: never */
};

/* Fills o with the defaults (10 s, 250 ms, 10 s). */
void dialer_options_init(struct dialer_options *o);

/* Creates a dialer resolving with dns and checking policy (both stay the
 * caller's and must outlive the dialer). NULL if out of memory. */
struct dialer *dialer_new(struct event_base *base, struct evdns_base *dns,
    const struct policy *policy, const struct dialer_options *o);
/* Refuses the streams still connecting, ends the spliced ones, frees the
 * dialer; call it while their sessions still exist. */
void dialer_free(struct dialer *d);
/* Takes a stream the peer opened (still unanswered) and connects it to
 * target; the dialer answers and owns it from now on. May answer before
 * returning. */
void dialer_open(struct dialer *d, struct agg_stream *stream,
    const struct agg_target *target);
/* Streams being connected. */
size_t dialer_connecting(const struct dialer *d);
/* Streams connected and spliced. */
size_t dialer_spliced(const struct dialer *d);

/* The stream result code (AGG_ERR_*) for a connect error (errno). */
int dialer_errno_code(int err);
/* A short lowercase text for a connect error ("connection refused"). */
const char *dialer_errno_text(int err);
/* The stream result code for an evdns_getaddrinfo error (EVUTIL_EAI_*). */
int dialer_gai_code(int err);
/* A short lowercase text for an evdns_getaddrinfo error. */
const char *dialer_gai_text(int err);

#endif
