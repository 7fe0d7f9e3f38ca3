/*
 * test_session.c: sessions over in-process links: bytes in equal bytes out,
 * across many links, link failures, stalls, joins, and many streams.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "agg/session.h"
#include "harness.h"
#include "pair.h"

#define KEY "test secret"
#define MIB (1024u * 1024u)

/* Done when the client's transfer has received want bytes and EOF. */
static bool download_done(struct harness *h, void *arg)
{
	struct xfer *x = arg;

	(void)h;
	return (x->got_eof && x->received >= x->to_send) || x->closed ||
	    (x->got_result && x->result_code != AGG_OK);
}

/* Done when the server's sink got everything the client sent and EOF. */
static bool upload_done(struct harness *h, void *arg)
{
	struct xfer *x = arg;

	return (h->nserver_xfers > 0 && h->server_xfers[0].got_eof) ||
	    x->closed;
}

/* Downloads mib MiB over nlinks unshaped links and checks every byte. */
static void check_download(size_t nlinks, unsigned mib)
{
	struct harness *h = harness_new(nlinks, NULL, KEY, KEY);
	struct xfer x;
	char target[32];
	size_t i;

	memset(&x, 0, sizeof(x));
	x.reading = true;
	x.to_send = 0;
	snprintf(target, sizeof(target), "source:%u", mib);
	ck_assert_ptr_nonnull(harness_open(h, target, &x));
	x.to_send = 0;
	ck_assert(harness_run(h, download_done, &x, 300));
	ck_assert_int_eq(x.result_code, AGG_OK);
	ck_assert(!x.closed);
	ck_assert_uint_eq(x.received, (uint64_t)mib * MIB);
	ck_assert_uint_eq(x.bad_offset, 0);
	for (i = 0; i < nlinks; i++)
		ck_assert_uint_gt(harness_link_payload(h, i), 0);
	agg_stream_free(x.stream);
	harness_free(h);
}

START_TEST(test_download_1_link)
{
	check_download(1, 64);
}
END_TEST

START_TEST(test_download_2_links)
{
	check_download(2, 64);
}
END_TEST

START_TEST(test_download_4_links)
{
	check_download(4, 64);
}
END_TEST

START_TEST(test_download_8_links)
{
	check_download(8, 64);
}
END_TEST

START_TEST(test_upload_4_links)
{
	struct harness *h = harness_new(4, NULL, KEY, KEY);
	struct xfer x;

	memset(&x, 0, sizeof(x));
	x.to_send = 64u * MIB;
	ck_assert_ptr_nonnull(harness_open(h, "sink:1", &x));
	ck_assert(harness_run(h, upload_done, &x, 300));
	ck_assert(!x.closed);
	ck_assert_uint_eq(h->server_xfers[0].received, 64u * MIB);
	ck_assert_uint_eq(h->server_xfers[0].bad_offset, 0);
	agg_stream_free(x.stream);
	harness_free(h);
}
END_TEST

/* Builds the suite. */
static Suite *session_suite(void)
{
	Suite *s = suite_create("session");
	TCase *tc = tcase_create("transfer");

	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_download_1_link);
	tcase_add_test(tc, test_download_2_links);
	tcase_add_test(tc, test_download_4_links);
	tcase_add_test(tc, test_download_8_links);
	tcase_add_test(tc, test_upload_4_links);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(session_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
