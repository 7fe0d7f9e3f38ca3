/*
 * speedsink.h: agg-server's built-in speed-test endpoint. A stream opened
 * to the reserved speed-test target (agg/speedtest.h) is answered here,
 * not dialled: uploads are checked byte by byte and counted, downloads are
 * the seed's pseudo-random stream sent as fast as the session takes it.
 */
#ifndef SPEEDSINK_H
#define SPEEDSINK_H

#include <stddef.h>

struct agg_stream;

/* Speed-test streams served at once, at most. */
#define SPEEDSINK_MAX 16

/* Accepts and serves a speed-test stream of kind AGG_SPEEDTEST_UPLOAD or
 * AGG_SPEEDTEST_DOWNLOAD; refuses it when SPEEDSINK_MAX are running. */
void speedsink_serve(struct agg_stream *st, int kind);
/* Speed-test streams being served. */
size_t speedsink_active(void);

#endif
