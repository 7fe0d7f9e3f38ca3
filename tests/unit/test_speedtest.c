/*
 * test_speedtest.c: the speed test's pseudo-random stream and verifier,
 * and its reserved target.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "agg/speedtest.h"

#define STREAM_LEN 20000u

/* The stream of seed made in one piece. */
static uint8_t *make_stream(uint64_t seed)
{
	uint8_t *buf = malloc(STREAM_LEN);

	ck_assert_ptr_nonnull(buf);
	agg_speedtest_fill(seed, 0, buf, STREAM_LEN);
	return buf;
}

START_TEST(test_vectors)
{
	static const uint8_t seed0[8] = { 0xaf, 0xcd, 0x1d, 0x7b, 0x39, 0xa8,
	    0x20, 0xe2 };
	static const uint8_t seed1[8] = { 0x09, 0xd4, 0x58, 0x54, 0x17, 0x9c,
	    0xcc, 0x0a };
	uint8_t b[8];

	agg_speedtest_fill(0, 0, b, 8);
	ck_assert_mem_eq(b, seed0, 8);
	agg_speedtest_fill(0x0102030405060708ull, 0, b, 8);
	ck_assert_mem_eq(b, seed1, 8);
}
END_TEST

START_TEST(test_fill_any_offset)
{
	uint8_t *whole = make_stream(42);
	uint8_t piece[100];
	uint64_t off;
	size_t len;

	/* Every offset and length mod 8 gives the same bytes as the whole. */
	for (off = 0; off < 40; off++)
		for (len = 0; len < 30; len++) {
			memset(piece, 0xAA, sizeof(piece));
			agg_speedtest_fill(42, off, piece, len);
			ck_assert_mem_eq(piece, whole + off, len);
			ck_assert_uint_eq(piece[len], 0xAA);
		}
	/* Another seed gives other bytes. */
	agg_speedtest_fill(43, 0, piece, sizeof(piece));
	ck_assert(memcmp(piece, whole, sizeof(piece)) != 0);
	free(whole);
}
END_TEST

START_TEST(test_verify_intact_in_pieces)
{
	static const size_t sizes[] = { 1, 7, 8, 9, 4095, 4096, 4097, 13 };
	uint8_t *buf = make_stream(7);
	struct agg_speedtest_verifier v;
	size_t pos = 0, i = 0, n;

	agg_speedtest_verifier_init(&v, 7);
	while (pos < STREAM_LEN) {
		n = sizes[i++ % 8];
		if (n > STREAM_LEN - pos)
			n = STREAM_LEN - pos;
		ck_assert_int_eq(agg_speedtest_verify(&v, buf + pos, n), 0);
		pos += n;
	}
	ck_assert_uint_eq(v.offset, STREAM_LEN);
	ck_assert_int_eq(v.failed, 0);
	free(buf);
}
END_TEST

START_TEST(test_verify_detects_corruption)
{
	/* One flipped bit at many offsets, checked in chunks of 1000 bytes
	 * (so some flips sit on a chunk's first or last byte) and of 4096+1
	 * (the verifier's own block boundary). */
	static const size_t bad[] = { 0, 1, 7, 8, 999, 1000, 1001, 4095, 4096,
	    4097, 8191, 8192, STREAM_LEN - 1 };
	static const size_t chunks[] = { 1000, 4097, STREAM_LEN };
	struct agg_speedtest_verifier v;
	size_t b, c, pos, n;
	int r;

	for (b = 0; b < sizeof(bad) / sizeof(bad[0]); b++)
		for (c = 0; c < 3; c++) {
			uint8_t *buf = make_stream(99);

			buf[bad[b]] ^= 0x10;
			agg_speedtest_verifier_init(&v, 99);
			r = 0;
			for (pos = 0; pos < STREAM_LEN && r == 0; pos += n) {
				n = chunks[c] < STREAM_LEN - pos ? chunks[c] :
				    STREAM_LEN - pos;
				r = agg_speedtest_verify(&v, buf + pos, n);
			}
			ck_assert_int_eq(r, -1);
			ck_assert_int_eq(v.failed, 1);
			ck_assert_uint_eq(v.bad_offset, bad[b]);
			ck_assert_uint_eq(v.got, v.expected ^ 0x10);
			/* It stays failed, even on good data. */
			ck_assert_int_eq(agg_speedtest_verify(&v, buf, 0), -1);
			free(buf);
		}
}
END_TEST

START_TEST(test_verify_wrong_seed_and_shift)
{
	uint8_t *buf = make_stream(5);
	struct agg_speedtest_verifier v;

	agg_speedtest_verifier_init(&v, 6);
	ck_assert_int_eq(agg_speedtest_verify(&v, buf, 64), -1);
	/* A lost byte shifts the stream: caught within a few bytes. */
	agg_speedtest_verifier_init(&v, 5);
	ck_assert_int_eq(agg_speedtest_verify(&v, buf, 100), 0);
	ck_assert_int_eq(agg_speedtest_verify(&v, buf + 101, 100), -1);
	ck_assert_uint_ge(v.bad_offset, 100);
	ck_assert_uint_lt(v.bad_offset, 110);
	free(buf);
}
END_TEST

START_TEST(test_seed_and_target)
{
	uint8_t hdr[AGG_SPEEDTEST_SEED_LEN];
	struct agg_target t;

	agg_speedtest_put_seed(0x0102030405060708ull, hdr);
	ck_assert_uint_eq(hdr[0], 1);
	ck_assert_uint_eq(hdr[7], 8);
	ck_assert_uint_eq(agg_speedtest_get_seed(hdr), 0x0102030405060708ull);
	agg_speedtest_target(&t, AGG_SPEEDTEST_DOWNLOAD);
	ck_assert_int_eq(agg_speedtest_target_kind(&t), AGG_SPEEDTEST_DOWNLOAD);
	ck_assert_int_eq(agg_target_parse("speedtest.agg.invalid:1", &t), 0);
	ck_assert_int_eq(agg_speedtest_target_kind(&t), AGG_SPEEDTEST_UPLOAD);
	ck_assert_int_eq(agg_target_parse("speedtest.agg.invalid:3", &t), 0);
	ck_assert_int_eq(agg_speedtest_target_kind(&t), 0);
	ck_assert_int_eq(agg_target_parse("speedtest.agg.invalid.:1", &t), 0);
	ck_assert_int_eq(agg_speedtest_target_kind(&t), 0);
	ck_assert_int_eq(agg_target_parse("speedtest.agg:1", &t), 0);
	ck_assert_int_eq(agg_speedtest_target_kind(&t), 0);
}
END_TEST

/* The suite. */
static Suite *speedtest_suite(void)
{
	Suite *s = suite_create("speedtest");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_vectors);
	tcase_add_test(tc, test_fill_any_offset);
	tcase_add_test(tc, test_verify_intact_in_pieces);
	tcase_add_test(tc, test_verify_detects_corruption);
	tcase_add_test(tc, test_verify_wrong_seed_and_shift);
	tcase_add_test(tc, test_seed_and_target);
	suite_add_tcase(s, tc);
	return s;
}

/* Runs the suite. */
int main(void)
{
	SRunner *sr = srunner_create(speedtest_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
