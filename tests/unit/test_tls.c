/*
 * test_tls.c: the TLS configuration (PSK derivation, refusals of bad
 * settings) and PSK handshakes over a socketpair: the same secret carries
 * bytes, another one fails on both sides with "unknown PSK", and a peer
 * that does not speak TLS is named.
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

#include "tls.h"

START_TEST(test_psk_derivation)
{
	uint8_t k1[AGG_TLS_PSK_LEN], k2[AGG_TLS_PSK_LEN];
	char id1[AGG_TLS_PSK_ID_LEN + 1], id2[AGG_TLS_PSK_ID_LEN + 1];
	size_t i;

	ck_assert_int_eq(agg_tls_derive_psk((const uint8_t *)"secret", 6, k1,
	    id1), 0);
	ck_assert_int_eq(agg_tls_derive_psk((const uint8_t *)"secret", 6, k2,
	    id2), 0);
	ck_assert(memcmp(k1, k2, sizeof(k1)) == 0);
	ck_assert_str_eq(id1, id2);
	ck_assert_uint_eq(strlen(id1), AGG_TLS_PSK_ID_LEN);
	ck_assert(strncmp(id1, "agg-", 4) == 0);
	for (i = 4; i < AGG_TLS_PSK_ID_LEN; i++)
		ck_assert(strchr("0123456789abcdef", id1[i]) != NULL);
	ck_assert_int_eq(agg_tls_derive_psk((const uint8_t *)"secreT", 6, k2,
	    id2), 0);
	ck_assert(memcmp(k1, k2, sizeof(k1)) != 0);
	ck_assert_str_ne(id1, id2);
	/* The identity does not give the key away. */
	ck_assert(memmem(k1, sizeof(k1), id1 + 4, 4) == NULL);
	ck_assert_int_eq(agg_tls_derive_psk((const uint8_t *)"", 0, k1, id1),
	    -1);
}
END_TEST

START_TEST(test_config_refusals)
{
	struct agg_tls_options o = { 0 };
	char err[512];

	ck_assert_ptr_null(agg_tls_server_new(&o, err, sizeof(err)));
	ck_assert_str_eq(err, "TLS needs --cert and --key, or a secret (-k) "
	    "for its PSK");
	o.cert_file = "/nonexistent/agg.crt";
	o.key_file = "/nonexistent/agg.key";
	ck_assert_ptr_null(agg_tls_server_new(&o, err, sizeof(err)));
	ck_assert_str_eq(err, "cannot read --cert /nonexistent/agg.crt: No "
	    "such file or directory");
	memset(&o, 0, sizeof(o));
	o.ca_file = "/nonexistent/ca.crt";
	ck_assert_ptr_null(agg_tls_client_new(&o, err, sizeof(err)));
	ck_assert_str_eq(err, "cannot read --ca /nonexistent/ca.crt: No such "
	    "file or directory");
	o.ca_file = "/etc/hostname";
	ck_assert_ptr_null(agg_tls_client_new(&o, err, sizeof(err)));
	ck_assert(strncmp(err, "cannot load --ca /etc/hostname: ", 32) == 0);
}
END_TEST

/* One side of a handshake. */
struct side {
	struct bufferevent *bev;
	char error[256];
	int done;
};

/* A handshake finished. */
static void side_done_cb(struct bufferevent *bev, const char *error,
    void *arg)
{
	struct side *s = arg;

	s->bev = bev;
	s->done = 1;
	if (error != NULL)
		snprintf(s->error, sizeof(s->error), "%s", error);
}

/* Runs base until both sides are done, bounded. */
static void run_until_done(struct event_base *base, struct side *a,
    struct side *b)
{
	int i;

	for (i = 0; i < 5000 && !(a->done && (b == NULL || b->done)); i++)
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	ck_assert(a->done);
	ck_assert(b == NULL || b->done);
}

/* A PSK handshake between secrets cs (client) and ss (server) over a
 * socketpair; both sides' results in cli and srv. */
static void psk_handshake(struct event_base *base, const char *cs,
    const char *ss, struct side *cli, struct side *srv)
{
	struct agg_tls_options co = { 0 }, so = { 0 };
	struct agg_tls *ct, *st;
	struct bufferevent *a, *b;
	char err[256];
	int fds[2];

	co.secret = (const uint8_t *)cs;
	co.secret_len = strlen(cs);
	so.secret = (const uint8_t *)ss;
	so.secret_len = strlen(ss);
	ct = agg_tls_client_new(&co, err, sizeof(err));
	st = agg_tls_server_new(&so, err, sizeof(err));
	ck_assert_ptr_nonnull(ct);
	ck_assert_ptr_nonnull(st);
	ck_assert(agg_tls_uses_psk(ct));
	ck_assert(agg_tls_uses_psk(st));
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
	evutil_make_socket_nonblocking(fds[0]);
	evutil_make_socket_nonblocking(fds[1]);
	a = bufferevent_socket_new(base, fds[0], BEV_OPT_CLOSE_ON_FREE);
	b = bufferevent_socket_new(base, fds[1], BEV_OPT_CLOSE_ON_FREE);
	ck_assert_ptr_nonnull(agg_tls_start(base, ct, a, "agg.test", 5000,
	    side_done_cb, cli, err, sizeof(err)));
	ck_assert_ptr_nonnull(agg_tls_start(base, st, b, NULL, 5000,
	    side_done_cb, srv, err, sizeof(err)));
	run_until_done(base, cli, srv);
	agg_tls_free(ct);
	agg_tls_free(st);
}

START_TEST(test_psk_handshake)
{
	struct event_base *base = event_base_new();
	struct side cli = { 0 }, srv = { 0 };
	char buf[16] = "";
	int i;

	psk_handshake(base, "one shared secret", "one shared secret", &cli,
	    &srv);
	ck_assert_str_eq(cli.error, "");
	ck_assert_str_eq(srv.error, "");
	ck_assert_ptr_nonnull(cli.bev);
	ck_assert_ptr_nonnull(srv.bev);
	bufferevent_enable(srv.bev, EV_READ);
	bufferevent_write(cli.bev, "hello agg", 9);
	for (i = 0; i < 5000 && evbuffer_get_length(
	    bufferevent_get_input(srv.bev)) < 9; i++)
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	ck_assert_uint_eq(bufferevent_read(srv.bev, buf, sizeof(buf)), 9);
	ck_assert(memcmp(buf, "hello agg", 9) == 0);
	bufferevent_free(cli.bev);
	bufferevent_free(srv.bev);
	event_base_free(base);
}
END_TEST

START_TEST(test_psk_wrong_secret)
{
	struct event_base *base = event_base_new();
	struct side cli = { 0 }, srv = { 0 };

	psk_handshake(base, "one secret", "another secret", &cli, &srv);
	ck_assert_ptr_null(cli.bev);
	ck_assert_ptr_null(srv.bev);
	ck_assert_str_eq(cli.error, "unknown PSK");
	ck_assert_str_eq(srv.error, "unknown PSK");
	event_base_free(base);
}
END_TEST

START_TEST(test_plain_bytes_to_tls_server)
{
	struct event_base *base = event_base_new();
	struct agg_tls_options so = { 0 };
	struct side srv = { 0 };
	struct agg_tls *st;
	struct bufferevent *b;
	char err[256];
	int fds[2];

	so.secret = (const uint8_t *)"s";
	so.secret_len = 1;
	ck_assert_ptr_nonnull(st = agg_tls_server_new(&so, err, sizeof(err)));
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
	evutil_make_socket_nonblocking(fds[1]);
	b = bufferevent_socket_new(base, fds[1], BEV_OPT_CLOSE_ON_FREE);
	ck_assert_ptr_nonnull(agg_tls_start(base, st, b, NULL, 5000,
	    side_done_cb, &srv, err, sizeof(err)));
	ck_assert_int_eq(write(fds[0], "AGG1 hello, plain bytes here\n", 29),
	    29);
	run_until_done(base, &srv, NULL);
	ck_assert_ptr_null(srv.bev);
	ck_assert_str_eq(srv.error, "the client does not speak TLS (plain "
	    "tcp:// to a TLS port?)");
	close(fds[0]);
	agg_tls_free(st);
	event_base_free(base);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("tls");
	TCase *tc = tcase_create("tls");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_psk_derivation);
	tcase_add_test(tc, test_config_refusals);
	tcase_add_test(tc, test_psk_handshake);
	tcase_add_test(tc, test_psk_wrong_secret);
	tcase_add_test(tc, test_plain_bytes_to_tls_server);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
