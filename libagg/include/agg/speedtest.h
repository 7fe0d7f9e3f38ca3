/*
 * agg/speedtest.h: the built-in speed test (agg-client --speed-test against
 * agg-server). A speed-test stream is an ordinary stream opened to the
 * reserved target AGG_SPEEDTEST_HOST (a name under .invalid, RFC 6761, so
 * it can never be a real destination), port 1 (upload: the client sends)
 * or 2 (download: the server sends). The client's first 8 bytes are a seed
 * (big-endian); the data that follows (upload) or answers (download) is the
 * pseudo-random stream of that seed, checked byte by byte on arrival.
 * See PROTOCOL.md, "Speed test".
 */
#ifndef AGG_SPEEDTEST_H
#define AGG_SPEEDTEST_H

#include <stddef.h>
#include <stdint.h>

#include "agg/target.h"

#define AGG_SPEEDTEST_HOST "speedtest.agg.invalid"
#define AGG_SPEEDTEST_UPLOAD 1
#define AGG_SPEEDTEST_DOWNLOAD 2
#define AGG_SPEEDTEST_SEED_LEN 8

/* Checks a stream of the pseudo-random data of one seed, in order, in
 * pieces of any size. */
struct agg_speedtest_verifier {
	uint64_t seed;
	uint64_t offset;      /* bytes checked so far */
	int failed;
	uint64_t bad_offset;  /* first wrong byte, once failed */
	uint8_t expected, got;
};

/* AGG_SPEEDTEST_UPLOAD or _DOWNLOAD if t is the speed-test target, else 0. */
int agg_speedtest_target_kind(const struct agg_target *t);
/* Fills t with the speed-test target for kind. */
void agg_speedtest_target(struct agg_target *t, int kind);
/* Writes len bytes of the seed's stream, starting at offset, into buf. */
void agg_speedtest_fill(uint64_t seed, uint64_t offset, void *buf,
    size_t len);
/* Encodes / decodes the seed header. */
void agg_speedtest_put_seed(uint64_t seed, uint8_t out[AGG_SPEEDTEST_SEED_LEN]);
uint64_t agg_speedtest_get_seed(const uint8_t in[AGG_SPEEDTEST_SEED_LEN]);
/* Starts checking the stream of seed at offset 0. */
void agg_speedtest_verifier_init(struct agg_speedtest_verifier *v,
    uint64_t seed);
/* Checks the next len bytes; 0 if they match, -1 (and v->failed,
 * v->bad_offset set) at the first byte that does not. Once failed, it
 * stays failed. */
int agg_speedtest_verify(struct agg_speedtest_verifier *v, const void *buf,
    size_t len);

#endif
