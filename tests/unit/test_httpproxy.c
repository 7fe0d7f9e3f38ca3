/*
 * test_httpproxy.c: --http-proxy URLs, and CONNECT over a socketpair
 * against a scripted proxy: the request sent, a 200 answer, a refusal.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "httpproxy.h"

START_TEST(test_proxy_url)
{
	struct agg_http_proxy p;
	char err[512];

	ck_assert_int_eq(agg_http_proxy_parse("http://proxy.corp:3128", &p,
	    err, sizeof(err)), 0);
	ck_assert_str_eq(p.host, "proxy.corp");
	ck_assert_str_eq(p.port, "3128");
	ck_assert_int_eq(agg_http_proxy_parse("http://[2001:db8::1]/", &p,
	    err, sizeof(err)), 0);
	ck_assert_str_eq(p.host, "2001:db8::1");
	ck_assert_str_eq(p.port, "8080");
	ck_assert_int_eq(agg_http_proxy_parse("https://p:1", &p, err,
	    sizeof(err)), -1);
	ck_assert_str_eq(err, "bad --http-proxy 'https://p:1': expected "
	    "http://HOST:PORT");
	ck_assert_int_eq(agg_http_proxy_parse("http://user@p:1", &p, err,
	    sizeof(err)), -1);
	ck_assert_int_eq(agg_http_proxy_parse("http://p:0", &p, err,
	    sizeof(err)), -1);
	ck_assert_int_eq(agg_http_proxy_parse("http://p:65536", &p, err,
	    sizeof(err)), -1);
	ck_assert_int_eq(agg_http_proxy_parse("http://p:80/path", &p, err,
	    sizeof(err)), -1);
	ck_assert_str_eq(err, "bad --http-proxy 'http://p:80/path': expected "
	    "http://HOST:PORT (no user, no path)");
	ck_assert_int_eq(agg_http_proxy_parse("http://", &p, err,
	    sizeof(err)), -1);
}
END_TEST

struct result {
	struct bufferevent *bev;
	char error[300];
	int done;
};

/* The CONNECT finished. */
static void done_cb(struct bufferevent *bev, const char *error, void *arg)
{
	struct result *r = arg;

	r->bev = bev;
	r->done = 1;
	if (error != NULL)
		snprintf(r->error, sizeof(r->error), "%s", error);
}

/* CONNECT srv:5801 against a proxy that answers answer; the request the
 * proxy saw goes to seen. */
static void run_connect(const char *answer, struct result *r, char *seen,
    size_t seenlen)
{
	struct event_base *base = event_base_new();
	struct bufferevent *bev;
	int fds[2], i;
	ssize_t n;

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
	evutil_make_socket_nonblocking(fds[0]);
	bev = bufferevent_socket_new(base, fds[0], BEV_OPT_CLOSE_ON_FREE);
	ck_assert_ptr_nonnull(agg_http_connect_start(base, bev,
	    "srv.example:5801", 5000, done_cb, r));
	for (i = 0; i < 100; i++)
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	n = read(fds[1], seen, seenlen - 1);
	ck_assert_int_gt(n, 0);
	seen[n] = '\0';
	ck_assert_int_eq(write(fds[1], answer, strlen(answer)),
	    (ssize_t)strlen(answer));
	for (i = 0; i < 5000 && !r->done; i++)
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	ck_assert(r->done);
	if (r->bev != NULL)
		bufferevent_free(r->bev);
	close(fds[1]);
	event_base_free(base);
}

START_TEST(test_connect_ok)
{
	struct result r = { 0 };
	char seen[512];

	run_connect("HTTP/1.1 200 Connection established\r\nVia: x\r\n\r\n",
	    &r, seen, sizeof(seen));
	ck_assert_str_eq(seen, "CONNECT srv.example:5801 HTTP/1.1\r\n"
	    "Host: srv.example:5801\r\n\r\n");
	ck_assert_str_eq(r.error, "");
	ck_assert_ptr_nonnull(r.bev);
}
END_TEST

START_TEST(test_connect_refused)
{
	struct result r = { 0 };
	char seen[512];

	run_connect("HTTP/1.0 407 Proxy Authentication Required\r\n\r\n", &r,
	    seen, sizeof(seen));
	ck_assert_ptr_null(r.bev);
	ck_assert_str_eq(r.error, "HTTP proxy refused CONNECT "
	    "srv.example:5801: HTTP/1.0 407 Proxy Authentication Required");
	memset(&r, 0, sizeof(r));
	run_connect("SSH-2.0-OpenSSH\r\n\r\n", &r, seen, sizeof(seen));
	ck_assert_str_eq(r.error, "HTTP proxy refused CONNECT "
	    "srv.example:5801: SSH-2.0-OpenSSH");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("httpproxy");
	TCase *tc = tcase_create("httpproxy");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_proxy_url);
	tcase_add_test(tc, test_connect_ok);
	tcase_add_test(tc, test_connect_refused);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
