/*
 * speedsink.c: the server end of the speed test. Upload: the client's
 * 8-byte seed, then its data, each byte checked against the seed's stream;
 * at the client's FIN the server answers with the count of bytes checked
 * (8 bytes, big-endian) and ends its side. A wrong byte resets the stream
 * with a message naming its offset. Download: after the seed the server
 * sends the seed's stream until the client resets the stream.
 */
#include "speedsink.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/uio.h>

#include <event2/buffer.h>

#include "agg/log.h"
#include "agg/session.h"
#include "agg/speedtest.h"

/* Bytes generated at a time for a download. */
#define SPEEDSINK_CHUNK (64u * 1024u)

struct speedsink {
	struct agg_stream *stream;
	int kind;
	int seeded;
	uint64_t seed;
	uint64_t sent;
	struct agg_speedtest_verifier verifier;
	struct evbuffer *out;
};

static size_t speedsink_count;

/* Speed-test streams being served. */
size_t speedsink_active(void)
{
	return speedsink_count;
}

/* Frees the state (not the stream). */
static void speedsink_free(struct speedsink *k)
{
	if (k->out != NULL)
		evbuffer_free(k->out);
	free(k);
	speedsink_count--;
}

/* Download: hands the stream as much of the seed's stream as it takes. */
static void speedsink_pump(struct speedsink *k)
{
	uint8_t *chunk;
	size_t moved, len;

	while (agg_stream_write_space(k->stream) > 0) {
		if ((len = evbuffer_get_length(k->out)) == 0) {
			struct evbuffer_iovec iov;

			if (evbuffer_reserve_space(k->out, SPEEDSINK_CHUNK,
			    &iov, 1) != 1)
				return;
			chunk = iov.iov_base;
			agg_speedtest_fill(k->seed, k->sent, chunk,
			    SPEEDSINK_CHUNK);
			iov.iov_len = SPEEDSINK_CHUNK;
			evbuffer_commit_space(k->out, &iov, 1);
			len = SPEEDSINK_CHUNK;
		}
		moved = agg_stream_write(k->stream, k->out, len);
		k->sent += moved;
		if (moved == 0)
			return;
	}
}

/* Upload: checks what arrived; -1 after resetting a corrupt stream. */
static int speedsink_check(struct speedsink *k, struct evbuffer *in)
{
	struct evbuffer_iovec iov[16];
	char why[160];
	size_t total;
	int i, n;

	while (evbuffer_get_length(in) > 0) {
		n = evbuffer_peek(in, -1, NULL, iov, 16);
		if (n > 16)
			n = 16;
		total = 0;
		for (i = 0; i < n; i++) {
			if (agg_speedtest_verify(&k->verifier,
			    iov[i].iov_base, iov[i].iov_len) != 0) {
				snprintf(why, sizeof(why), "speed test: "
				    "upload corrupted at byte %" PRIu64
				    " (expected 0x%02x, got 0x%02x)",
				    k->verifier.bad_offset,
				    k->verifier.expected, k->verifier.got);
				agg_log_warn("stream %u: %s",
				    agg_stream_id(k->stream), why);
				agg_stream_reset(k->stream, AGG_ERR_GENERAL,
				    why);
				speedsink_free(k);
				return -1;
			}
			total += iov[i].iov_len;
		}
		evbuffer_drain(in, total);
	}
	return 0;
}

/* New bytes from the client: the seed first, then upload data. */
static void speedsink_readable_cb(struct agg_stream *st, void *arg)
{
	struct speedsink *k = arg;
	struct evbuffer *in = agg_stream_input(st);
	uint8_t hdr[AGG_SPEEDTEST_SEED_LEN];

	if (!k->seeded) {
		if (evbuffer_get_length(in) < sizeof(hdr))
			return;
		evbuffer_remove(in, hdr, sizeof(hdr));
		k->seed = agg_speedtest_get_seed(hdr);
		agg_speedtest_verifier_init(&k->verifier, k->seed);
		k->seeded = 1;
		if (k->kind == AGG_SPEEDTEST_DOWNLOAD)
			speedsink_pump(k);
	}
	if (k->kind == AGG_SPEEDTEST_UPLOAD)
		speedsink_check(k, in);
	else
		evbuffer_drain(in, evbuffer_get_length(in));
}

/* The client finished sending: an upload answers with its count. */
static void speedsink_eof_cb(struct agg_stream *st, void *arg)
{
	struct speedsink *k = arg;
	uint8_t reply[8];

	if (k->kind != AGG_SPEEDTEST_UPLOAD)
		return;
	agg_speedtest_put_seed(k->verifier.offset, reply);
	evbuffer_add(k->out, reply, sizeof(reply));
	agg_stream_write(st, k->out, sizeof(reply));
	agg_log_info("stream %u: speed test upload of %" PRIu64 " bytes "
	    "intact", agg_stream_id(st), k->verifier.offset);
	speedsink_free(k);
	agg_stream_free(st);
}

/* Room for more download data. */
static void speedsink_writable_cb(struct agg_stream *st, void *arg)
{
	struct speedsink *k = arg;

	(void)st;
	if (k->seeded && k->kind == AGG_SPEEDTEST_DOWNLOAD)
		speedsink_pump(k);
}

/* The client reset the stream (a download ends so) or the session went. */
static void speedsink_closed_cb(struct agg_stream *st, int code,
    const char *reason, void *arg)
{
	struct speedsink *k = arg;

	(void)code;
	agg_log_info("stream %u: speed test %s ended after %" PRIu64
	    " bytes: %s", agg_stream_id(st), k->kind == AGG_SPEEDTEST_UPLOAD ?
	    "upload" : "download", k->kind == AGG_SPEEDTEST_UPLOAD ?
	    k->verifier.offset : k->sent, reason);
	speedsink_free(k);
	agg_stream_free(st);
}

static const struct agg_stream_callbacks speedsink_stream_cbs = {
	.readable = speedsink_readable_cb,
	.eof = speedsink_eof_cb,
	.writable = speedsink_writable_cb,
	.closed = speedsink_closed_cb,
};

/* Accepts and serves one speed-test stream. */
void speedsink_serve(struct agg_stream *st, int kind)
{
	struct speedsink *k;

	if (speedsink_count >= SPEEDSINK_MAX) {
		agg_stream_refuse(st, AGG_ERR_GENERAL, "server busy: too many "
		    "speed tests");
		return;
	}
	if ((k = calloc(1, sizeof(*k))) == NULL ||
	    (k->out = evbuffer_new()) == NULL) {
		free(k);
		agg_stream_refuse(st, AGG_ERR_GENERAL, "out of memory");
		return;
	}
	speedsink_count++;
	k->stream = st;
	k->kind = kind;
	agg_log_info("stream %u: speed test %s", agg_stream_id(st),
	    kind == AGG_SPEEDTEST_UPLOAD ? "upload" : "download");
	agg_stream_accept(st, &speedsink_stream_cbs, k);
}
