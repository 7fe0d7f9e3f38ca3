/*
 * fuzz_main.c: a driver for LLVMFuzzerTestOneInput without libFuzzer.
 *
 * usage: fuzz_wire_replay [DIR|FILE]... [--random N SEED]
 *
 * Runs every file of each directory (and each file named) through the entry
 * point, then N pseudo-random inputs of 0..600 bytes: raw bytes, inputs that
 * start with a valid frame header or hello magic, well-formed frames with a
 * byte or two changed, and mutations of the files read.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "wire.h"

#define RANDOM_MAX_LEN 600
#define MAX_SEEDS 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A corpus file kept for mutation. */
struct seed {
	uint8_t *data;
	size_t len;
};

static struct seed seeds[MAX_SEEDS];
static size_t nseeds;
static uint64_t rng_state;

/* splitmix64: the next pseudo-random number. */
static uint64_t rng(void)
{
	uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

/* A pseudo-random number in [0, n). */
static size_t rng_below(size_t n)
{
	return n == 0 ? 0 : (size_t)(rng() % n);
}

/* Fills buf with pseudo-random bytes. */
static void rng_fill(uint8_t *buf, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		buf[i] = (uint8_t)rng();
}

/* Runs one input from a heap copy of exactly its size, so that a
 * sanitizer sees any read past its end. */
static void run_one(const uint8_t *data, size_t len)
{
	uint8_t *copy = malloc(len ? len : 1);

	if (copy == NULL) {
		perror("malloc");
		exit(2);
	}
	if (len > 0)
		memcpy(copy, data, len);
	LLVMFuzzerTestOneInput(copy, len);
	free(copy);
}

/* Reads a whole file (at most 1 MiB); runs it and keeps it as a seed. */
static int run_file(const char *path)
{
	uint8_t *buf, *shrunk;
	size_t len;
	FILE *fp;

	fp = fopen(path, "rb");
	if (fp == NULL) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		return -1;
	}
	buf = malloc(1 << 20);
	if (buf == NULL) {
		fclose(fp);
		return -1;
	}
	len = fread(buf, 1, 1 << 20, fp);
	fclose(fp);
	run_one(buf, len);
	shrunk = realloc(buf, len ? len : 1);
	if (shrunk != NULL)
		buf = shrunk;
	if (nseeds < MAX_SEEDS) {
		seeds[nseeds].data = buf;
		seeds[nseeds].len = len;
		nseeds++;
	} else {
		free(buf);
	}
	return 0;
}

/* Runs every regular file in a directory (not recursing); returns the
 * number run, or -1. */
static long run_dir(const char *dir)
{
	char path[4096];
	struct dirent *de;
	struct stat st;
	long n = 0;
	DIR *d;

	d = opendir(dir);
	if (d == NULL) {
		fprintf(stderr, "%s: %s\n", dir, strerror(errno));
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
			continue;
		if (run_file(path) == 0)
			n++;
	}
	closedir(d);
	return n;
}

/* A random, mostly well-formed target for an OPEN frame. */
static void random_target(struct agg_target *t)
{
	size_t i;

	memset(t, 0, sizeof(*t));
	t->port = (uint16_t)rng();
	switch (rng_below(3)) {
	case 0:
		t->type = AGG_ADDR_IPV4;
		rng_fill(t->addr.ipv4, 4);
		break;
	case 1:
		t->type = AGG_ADDR_IPV6;
		rng_fill(t->addr.ipv6, 16);
		break;
	default:
		t->type = AGG_ADDR_NAME;
		t->name_len = (uint8_t)(1 + rng_below(255));
		for (i = 0; i < t->name_len; i++)
			t->addr.name[i] = (char)('a' + rng_below(26));
		break;
	}
}

/* Encodes a random well-formed non-DATA frame into buf; returns its
 * length. */
static size_t random_frame(uint8_t *buf, size_t cap)
{
	struct agg_frame f;
	size_t i;

	memset(&f, 0, sizeof(f));
	f.type = (uint8_t)(AGG_FRAME_OPEN + rng_below(8));
	f.seq = rng_below(4) == 0 ? rng() : rng_below(100);
	f.stream = (uint32_t)(1 + rng_below(1000));
	if (f.type == AGG_FRAME_CREDIT && rng_below(2) == 0)
		f.stream = 0;
	f.value = rng_below(4) == 0 ? rng() : rng_below(1 << 20);
	if (f.type == AGG_FRAME_RESET)
		f.value &= (UINT64_C(1) << 62) - 1;
	f.code = (uint8_t)rng_below(9);
	if (f.type == AGG_FRAME_OPEN)
		f.code = AGG_OPEN_TCP;
	f.scope = (uint8_t)rng_below(2);
	f.window = (uint32_t)rng();
	random_target(&f.target);
	if (f.type == AGG_FRAME_RESULT || f.type == AGG_FRAME_RESET ||
	    f.type == AGG_FRAME_CLOSE) {
		f.message_len = (uint8_t)rng_below(256);
		for (i = 0; i < f.message_len; i++)
			f.message[i] = (char)(' ' + rng_below(95));
	}
	if (f.type == AGG_FRAME_ACK) {
		f.ack_count = (uint8_t)rng_below(AGG_MAX_ACK_LINKS + 1);
		for (i = 0; i < f.ack_count; i++) {
			f.acks[i].link_id = (uint32_t)rng_below(64);
			f.acks[i].frames = rng_below(1 << 16);
		}
	}
	return agg_frame_encode(&f, buf, cap);
}

/* Builds one pseudo-random input into buf; returns its length. */
static size_t random_input(uint8_t *buf)
{
	static const uint8_t magic[2][4] = { { 'A', 'G', 'G', 'C' },
	    { 'A', 'G', 'G', 'S' } };
	size_t len = rng_below(RANDOM_MAX_LEN + 1), body, i;
	const struct seed *s;

	rng_fill(buf, RANDOM_MAX_LEN);
	switch (rng_below(6)) {
	case 0:
		/* Raw bytes. */
		return len;
	case 1:
		/* A valid frame header, usually with a matching length. */
		if (len < AGG_FRAME_HEADER_LEN)
			len = AGG_FRAME_HEADER_LEN + rng_below(64);
		buf[0] = (uint8_t)(AGG_FRAME_DATA + rng_below(9));
		buf[1] = buf[0] == AGG_FRAME_DATA ? (uint8_t)rng_below(2) : 0;
		body = rng_below(4) == 0 ? rng_below(65536) :
		    len - AGG_FRAME_HEADER_LEN;
		buf[2] = (uint8_t)(body >> 8);
		buf[3] = (uint8_t)body;
		return len;
	case 2:
		/* A hello magic with plausible versions and no flags. */
		if (len < AGG_CLIENT_HELLO_LEN && rng_below(2) == 0)
			len = AGG_CLIENT_HELLO_LEN + rng_below(8);
		memcpy(buf, magic[rng_below(2)], 4);
		buf[4] = (uint8_t)rng_below(3);
		buf[5] = (uint8_t)rng_below(3);
		buf[6] = 0;
		buf[7] = (uint8_t)rng_below(2);
		if (rng_below(2) == 0)
			memset(buf + 44, 0, 4);
		return len;
	case 3:
		/* A well-formed frame, maybe with changed bytes or cut. */
		len = random_frame(buf, RANDOM_MAX_LEN);
		for (i = rng_below(3); i > 0 && len > 0; i--)
			buf[rng_below(len)] = (uint8_t)rng();
		if (rng_below(4) == 0)
			len = rng_below(len + 1);
		return len;
	default:
		/* A corpus file with changed bytes, cut or extended. */
		if (nseeds == 0)
			return len;
		s = &seeds[rng_below(nseeds)];
		len = s->len < RANDOM_MAX_LEN ? s->len : RANDOM_MAX_LEN;
		memcpy(buf, s->data, len);
		for (i = rng_below(4); i > 0 && len > 0; i--)
			buf[rng_below(len)] ^= (uint8_t)(1u << rng_below(8));
		switch (rng_below(4)) {
		case 0:
			len = rng_below(len + 1);
			break;
		case 1:
			len += rng_below(RANDOM_MAX_LEN - len + 1);
			break;
		default:
			break;
		}
		return len;
	}
}

/* Parses a non-negative decimal argument or exits. */
static unsigned long long number_arg(const char *s)
{
	unsigned long long v;
	char *end;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || s[0] == '-') {
		fprintf(stderr, "not a number: %s\n", s);
		exit(2);
	}
	return v;
}

/* Runs the files and directories on the command line, then random
 * inputs. */
int main(int argc, char **argv)
{
	uint8_t buf[RANDOM_MAX_LEN];
	unsigned long long count = 0, n;
	long files = 0, r;
	struct stat st;
	size_t i;
	int a;

	for (a = 1; a < argc; a++) {
		if (strcmp(argv[a], "--random") == 0) {
			if (a + 2 >= argc) {
				fprintf(stderr, "usage: %s [DIR|FILE]... "
				    "[--random N SEED]\n", argv[0]);
				return 2;
			}
			count = number_arg(argv[a + 1]);
			rng_state = number_arg(argv[a + 2]);
			a += 2;
			continue;
		}
		if (stat(argv[a], &st) != 0) {
			fprintf(stderr, "%s: %s\n", argv[a], strerror(errno));
			return 2;
		}
		if (S_ISDIR(st.st_mode))
			r = run_dir(argv[a]);
		else
			r = run_file(argv[a]) == 0 ? 1 : -1;
		if (r < 0)
			return 2;
		files += r;
	}
	for (n = 0; n < count; n++)
		run_one(buf, random_input(buf));
	for (i = 0; i < nseeds; i++)
		free(seeds[i].data);
	printf("fuzz_wire_replay: %ld files and %llu random inputs, "
	    "no failure\n", files, count);
	return 0;
}
