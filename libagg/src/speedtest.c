/*
 * speedtest.c: the speed test's reserved target and its pseudo-random
 * stream: byte i of seed s is byte (i mod 8) (little-endian) of
 * splitmix64(s + (i / 8 + 1) * 0x9e3779b97f4a7c15), so any offset can be
 * made or checked without the bytes before it.
 */
#include "agg/speedtest.h"

#include <string.h>

#define SPEEDTEST_GAMMA 0x9e3779b97f4a7c15ull

/* The 8 bytes of block index of seed's stream, as a little-endian word. */
static uint64_t speedtest_block(uint64_t seed, uint64_t index)
{
	uint64_t z = seed + (index + 1) * SPEEDTEST_GAMMA;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Stores a word little-endian. */
static void speedtest_put_le(uint8_t *out, uint64_t w)
{
	unsigned i;

	for (i = 0; i < 8; i++)
		out[i] = (uint8_t)(w >> (8 * i));
}

/* The speed-test kind of t, or 0. */
int agg_speedtest_target_kind(const struct agg_target *t)
{
	if (t->type != AGG_ADDR_NAME ||
	    t->name_len != sizeof(AGG_SPEEDTEST_HOST) - 1 ||
	    memcmp(t->addr.name, AGG_SPEEDTEST_HOST, t->name_len) != 0)
		return 0;
	if (t->port == AGG_SPEEDTEST_UPLOAD || t->port == AGG_SPEEDTEST_DOWNLOAD)
		return t->port;
	return 0;
}

/* Fills t with the speed-test target for kind. */
void agg_speedtest_target(struct agg_target *t, int kind)
{
	memset(t, 0, sizeof(*t));
	t->type = AGG_ADDR_NAME;
	t->name_len = sizeof(AGG_SPEEDTEST_HOST) - 1;
	memcpy(t->addr.name, AGG_SPEEDTEST_HOST, sizeof(AGG_SPEEDTEST_HOST));
	t->port = (uint16_t)kind;
}

/* Writes len bytes of seed's stream from offset into buf. */
void agg_speedtest_fill(uint64_t seed, uint64_t offset, void *buf,
    size_t len)
{
	uint8_t *p = buf, word[8];
	uint64_t index = offset / 8;
	size_t skip = (size_t)(offset % 8), n;

	if (skip != 0 && len > 0) {
		speedtest_put_le(word, speedtest_block(seed, index++));
		n = 8 - skip < len ? 8 - skip : len;
		memcpy(p, word + skip, n);
		p += n;
		len -= n;
	}
	while (len >= 8) {
		speedtest_put_le(p, speedtest_block(seed, index++));
		p += 8;
		len -= 8;
	}
	if (len > 0) {
		speedtest_put_le(word, speedtest_block(seed, index));
		memcpy(p, word, len);
	}
}

/* Encodes the seed header. */
void agg_speedtest_put_seed(uint64_t seed, uint8_t out[AGG_SPEEDTEST_SEED_LEN])
{
	unsigned i;

	for (i = 0; i < 8; i++)
		out[i] = (uint8_t)(seed >> (56 - 8 * i));
}

/* Decodes the seed header. */
uint64_t agg_speedtest_get_seed(const uint8_t in[AGG_SPEEDTEST_SEED_LEN])
{
	uint64_t seed = 0;
	unsigned i;

	for (i = 0; i < 8; i++)
		seed = seed << 8 | in[i];
	return seed;
}

/* Starts checking seed's stream at offset 0. */
void agg_speedtest_verifier_init(struct agg_speedtest_verifier *v,
    uint64_t seed)
{
	memset(v, 0, sizeof(*v));
	v->seed = seed;
}

/* Checks the next len bytes against the stream. */
int agg_speedtest_verify(struct agg_speedtest_verifier *v, const void *buf,
    size_t len)
{
	const uint8_t *p = buf;
	uint8_t expect[4096];
	size_t n, i;

	if (v->failed)
		return -1;
	while (len > 0) {
		n = len < sizeof(expect) ? len : sizeof(expect);
		agg_speedtest_fill(v->seed, v->offset, expect, n);
		if (memcmp(expect, p, n) != 0) {
			for (i = 0; expect[i] == p[i]; i++)
				;
			v->failed = 1;
			v->bad_offset = v->offset + i;
			v->expected = expect[i];
			v->got = p[i];
			return -1;
		}
		v->offset += n;
		p += n;
		len -= n;
	}
	return 0;
}
