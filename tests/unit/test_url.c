/*
 * test_url.c: link URLs and the secret file.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agg/key.h"
#include "agg/url.h"

START_TEST(test_url_good)
{
	struct agg_url u;
	char err[256];

	ck_assert_int_eq(agg_url_parse("tcp://srv.example:5801", &u, err,
	    sizeof(err)), 0);
	ck_assert_int_eq(u.scheme, AGG_URL_TCP);
	ck_assert_str_eq(u.host, "srv.example");
	ck_assert_str_eq(u.port, "5801");
	ck_assert_int_eq(agg_url_parse("tcp://[::]:5800", &u, err,
	    sizeof(err)), 0);
	ck_assert_str_eq(u.host, "::");
	ck_assert_int_eq(agg_url_parse("tls://[2001:db8::1]", &u, err,
	    sizeof(err)), 0);
	ck_assert_int_eq(u.scheme, AGG_URL_TLS);
	ck_assert_str_eq(u.host, "2001:db8::1");
	ck_assert_str_eq(u.port, "5800");
	ck_assert_int_eq(agg_url_parse("wss://h:443/agg/link", &u, err,
	    sizeof(err)), 0);
	ck_assert_int_eq(u.scheme, AGG_URL_WSS);
	ck_assert_str_eq(u.path, "/agg/link");
	ck_assert_int_eq(agg_url_parse("ws://h", &u, err, sizeof(err)), 0);
	ck_assert_str_eq(u.path, "/");
	ck_assert_int_eq(agg_url_parse("tcp://:5800", &u, err, sizeof(err)), 0);
	ck_assert_str_eq(u.host, "");
}
END_TEST

START_TEST(test_url_bad)
{
	static const struct {
		const char *text, *err;
	} bad[] = {
		{ "srv:5800", "bad URL 'srv:5800': expected tcp://, tls://, "
		    "ws:// or wss://" },
		{ "udp://srv:1", "bad URL 'udp://srv:1': unknown scheme" },
		{ "tcp://srv:0", "bad URL 'tcp://srv:0': bad port" },
		{ "tcp://srv:65536", "bad URL 'tcp://srv:65536': bad port" },
		{ "tcp://srv:", "bad URL 'tcp://srv:': bad port" },
		{ "tcp://srv:12x", "bad URL 'tcp://srv:12x': bad port" },
		{ "tcp://::1:5800", "bad URL 'tcp://::1:5800': put an IPv6 "
		    "address in brackets" },
		{ "tcp://[::1:5800", "bad URL 'tcp://[::1:5800': missing ']'" },
		{ "tcp://srv:5800/x", "bad URL 'tcp://srv:5800/x': only ws:// "
		    "and wss:// take a path" },
	};
	struct agg_url u;
	char err[256];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_int_eq(agg_url_parse(bad[i].text, &u, err,
		    sizeof(err)), -1);
		ck_assert_str_eq(err, bad[i].err);
	}
}
END_TEST

START_TEST(test_url_usb)
{
	static const struct {
		const char *text, *err;
	} bad[] = {
		{ "usb://1209", "bad URL 'usb://1209': expected "
		    "usb://[VID:PID][?serial=S] with hex IDs such as 1209:0001" },
		{ "usb://12g9:0001", "bad URL 'usb://12g9:0001': expected "
		    "usb://[VID:PID][?serial=S] with hex IDs such as 1209:0001" },
		{ "usb://1209:00011", "bad URL 'usb://1209:00011': expected "
		    "usb://[VID:PID][?serial=S] with hex IDs such as 1209:0001" },
		{ "usb://1209:0001?s=x", "bad URL 'usb://1209:0001?s=x': the "
		    "only query is ?serial=S" },
		{ "usb://?serial=", "bad URL 'usb://?serial=': the only query "
		    "is ?serial=S" },
		{ "usb-gadget://a/b", "bad URL 'usb-gadget://a/b': expected "
		    "usb-gadget://[UDC], a name from /sys/class/udc" },
	};
	struct agg_url u;
	char err[256];
	unsigned vid, pid;
	size_t i;

	ck_assert_int_eq(agg_url_parse("usb://", &u, err, sizeof(err)), 0);
	ck_assert_int_eq(u.scheme, AGG_URL_USB);
	ck_assert_uint_eq(u.usb_vid, 0x1209);
	ck_assert_uint_eq(u.usb_pid, 0x0001);
	ck_assert_str_eq(u.usb_serial, "");
	ck_assert_int_eq(agg_url_parse("usb://abCD:00ef?serial=board-7", &u,
	    err, sizeof(err)), 0);
	ck_assert_uint_eq(u.usb_vid, 0xabcd);
	ck_assert_uint_eq(u.usb_pid, 0x00ef);
	ck_assert_str_eq(u.usb_serial, "board-7");
	ck_assert_int_eq(agg_url_parse("usb://?serial=x", &u, err,
	    sizeof(err)), 0);
	ck_assert_uint_eq(u.usb_vid, 0x1209);
	ck_assert_str_eq(u.usb_serial, "x");
	ck_assert_int_eq(agg_url_parse("usb-gadget://", &u, err, sizeof(err)),
	    0);
	ck_assert_int_eq(u.scheme, AGG_URL_USB_GADGET);
	ck_assert_str_eq(u.udc, "");
	ck_assert_int_eq(agg_url_parse("usb-gadget://dummy_udc.0", &u, err,
	    sizeof(err)), 0);
	ck_assert_str_eq(u.udc, "dummy_udc.0");
	ck_assert_str_eq(agg_url_scheme_name(AGG_URL_USB_GADGET),
	    "usb-gadget");
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_int_eq(agg_url_parse(bad[i].text, &u, err,
		    sizeof(err)), -1);
		ck_assert_str_eq(err, bad[i].err);
	}
	ck_assert_int_eq(agg_usb_ids_parse("1209:0001", &vid, &pid), 0);
	ck_assert_uint_eq(vid, 0x1209);
	ck_assert_uint_eq(pid, 1);
	ck_assert_int_eq(agg_usb_ids_parse("1209:1", &vid, &pid), -1);
	ck_assert_int_eq(agg_usb_ids_parse("1209-0001", &vid, &pid), -1);
}
END_TEST

/* Writes text to a fresh temporary file; returns its path. */
static char *temp_file(const char *text)
{
	static char path[64];
	FILE *f;
	int fd;

	snprintf(path, sizeof(path), "/tmp/agg-key-XXXXXX");
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	f = fdopen(fd, "w");
	fputs(text, f);
	fclose(f);
	return path;
}

START_TEST(test_key_file)
{
	uint8_t key[AGG_SECRET_MAX];
	size_t len = 0;
	char err[256], *path;

	path = temp_file("s3cret words\nsecond line ignored\n");
	ck_assert_int_eq(agg_key_load(path, key, &len, err, sizeof(err)), 0);
	ck_assert_uint_eq(len, 12);
	ck_assert_int_eq(memcmp(key, "s3cret words", 12), 0);
	unlink(path);
	path = temp_file("no newline");
	ck_assert_int_eq(agg_key_load(path, key, &len, err, sizeof(err)), 0);
	ck_assert_uint_eq(len, 10);
	unlink(path);
	path = temp_file("\n");
	ck_assert_int_eq(agg_key_load(path, key, &len, err, sizeof(err)), -1);
	ck_assert(strstr(err, "is empty") != NULL);
	unlink(path);
	ck_assert_int_eq(agg_key_load("/nonexistent/agg.key", key, &len, err,
	    sizeof(err)), -1);
	ck_assert_str_eq(err, "cannot read secret file /nonexistent/agg.key: "
	    "No such file or directory");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("url");
	TCase *tc = tcase_create("url");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_url_good);
	tcase_add_test(tc, test_url_bad);
	tcase_add_test(tc, test_url_usb);
	tcase_add_test(tc, test_key_file);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
