/*
 * test_socks.c: the -D handshake parser (proxy-client/socks.c): SOCKS5,
 * RFC 1929 and HTTP CONNECT, with the exact reply bytes, over input split
 * at every size.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "agg/session.h"
#include "socks.h"

/* Split sizes every case is fed with; 0 means all at once. */
static const size_t steps[] = { 0, 1, 2, 3, 5, 7, 64 };

/* What one run of the parser produced. */
struct run {
	enum socks_status status;
	struct socks s;
	uint8_t out[16384];
	size_t out_len;
	uint8_t left[16384];
	size_t left_len;
};

/* Feeds data step bytes at a time until the parser decides, then appends
 * the rest of the input so that runs can be compared. */
static void feed(const struct socks_users *users, const void *data,
    size_t len, size_t step, struct run *r)
{
	struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
	const uint8_t *p = data;
	size_t off = 0, n;

	ck_assert_ptr_nonnull(in);
	ck_assert_ptr_nonnull(out);
	socks_init(&r->s, users);
	r->status = SOCKS_MORE;
	if (step == 0)
		step = len > 0 ? len : 1;
	do {
		n = len - off < step ? len - off : step;
		evbuffer_add(in, p + off, n);
		off += n;
		r->status = socks_parse(&r->s, in, out);
	} while (r->status == SOCKS_MORE && off < len);
	evbuffer_add(in, p + off, len - off);
	r->out_len = evbuffer_get_length(out);
	ck_assert_uint_le(r->out_len, sizeof(r->out));
	evbuffer_remove(out, r->out, r->out_len);
	r->left_len = evbuffer_get_length(in);
	ck_assert_uint_le(r->left_len, sizeof(r->left));
	evbuffer_remove(in, r->left, r->left_len);
	evbuffer_free(in);
	evbuffer_free(out);
}

/* Runs data at every split size and checks the outcome is always the
 * same: status, exact reply bytes, bytes left over. Returns the run of
 * the last split for further checks. */
static void expect(const struct socks_users *users, const void *data,
    size_t len, enum socks_status status, const void *reply,
    size_t reply_len, size_t left, struct run *last)
{
	static struct run r;
	size_t i;

	for (i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		feed(users, data, len, steps[i], &r);
		ck_assert_msg(r.status == status, "split %zu: status %d, "
		    "expected %d (%s)", steps[i], r.status, status,
		    socks_error(&r.s));
		ck_assert_msg(r.out_len == reply_len, "split %zu: reply of "
		    "%zu bytes, expected %zu", steps[i], r.out_len, reply_len);
		ck_assert_mem_eq(r.out, reply, reply_len);
		ck_assert_msg(r.left_len == left, "split %zu: %zu bytes left, "
		    "expected %zu", steps[i], r.left_len, left);
		ck_assert_mem_eq(r.left, (const uint8_t *)data + len - left,
		    left);
	}
	if (last != NULL)
		*last = r;
}

/* Answers a parsed CONNECT and returns the answer's bytes in buf. */
static size_t answer(const struct socks *s, int code, const char *message,
    char *buf, size_t cap)
{
	struct evbuffer *out = evbuffer_new();
	size_t n;

	socks_answer(s, code, message, out);
	n = evbuffer_get_length(out);
	ck_assert_uint_lt(n, cap);
	evbuffer_remove(out, buf, n);
	buf[n] = '\0';
	evbuffer_free(out);
	return n;
}

/* Writes text to a fresh temporary file; returns its path. */
static const char *temp_file(const char *text)
{
	static char path[64];
	FILE *f;
	int fd;

	snprintf(path, sizeof(path), "/tmp/agg-socks-XXXXXX");
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	f = fdopen(fd, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
	return path;
}

/* The users of most authentication tests: user / secret. */
static struct socks_users *test_users(void)
{
	const char *path = temp_file("# users\nuser:secret\n\nother:pw:"
	    "with:colons\n");
	struct socks_users *u;
	char err[256];

	u = socks_users_load(path, err, sizeof(err));
	unlink(path);
	ck_assert_msg(u != NULL, "%s", err);
	ck_assert_uint_eq(socks_users_count(u), 2);
	return u;
}

static const uint8_t ok_greeting_reply[] = { 0x05, 0x00 };
static const uint8_t reply_ok[10] = { 0x05, 0x00, 0x00, 0x01 };

START_TEST(test_socks5_ipv4)
{
	static const uint8_t in[] = {
		0x05, 0x01, 0x00,
		0x05, 0x01, 0x00, 0x01, 192, 0, 2, 7, 0x1f, 0x90,
	};
	struct run r;
	char buf[64];

	expect(NULL, in, sizeof(in), SOCKS_CONNECT, ok_greeting_reply, 2, 0,
	    &r);
	ck_assert_int_eq(r.s.proto, SOCKS_PROTO_SOCKS5);
	ck_assert_str_eq(socks_proto_name(&r.s), "socks5");
	ck_assert_int_eq(socks_target(&r.s)->type, AGG_ADDR_IPV4);
	ck_assert_mem_eq(socks_target(&r.s)->addr.ipv4, "\xc0\x00\x02\x07",
	    4);
	ck_assert_uint_eq(socks_target(&r.s)->port, 8080);
	ck_assert_uint_eq(answer(&r.s, AGG_OK, "", buf, sizeof(buf)), 10);
	ck_assert_mem_eq(buf, reply_ok, 10);
}
END_TEST

START_TEST(test_socks5_ipv6)
{
	static const uint8_t in[] = {
		0x05, 0x02, 0x02, 0x00,
		0x05, 0x01, 0x00, 0x04,
		0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
		0x01, 0xbb,
	};
	struct run r;
	char text[128];

	expect(NULL, in, sizeof(in), SOCKS_CONNECT, ok_greeting_reply, 2, 0,
	    &r);
	ck_assert_int_eq(socks_target(&r.s)->type, AGG_ADDR_IPV6);
	agg_target_format(socks_target(&r.s), text, sizeof(text));
	ck_assert_str_eq(text, "[2001:db8::1]:443");
}
END_TEST

START_TEST(test_socks5_domain)
{
	static const uint8_t in[] = {
		0x05, 0x01, 0x00,
		0x05, 0x01, 0x00, 0x03, 11, 'e', 'x', 'a', 'm', 'p', 'l', 'e',
		'.', 'c', 'o', 'm', 0x00, 0x50,
		/* the client's first bytes, sent before the reply */
		'G', 'E', 'T', ' ', '/',
	};
	struct run r;

	expect(NULL, in, sizeof(in), SOCKS_CONNECT, ok_greeting_reply, 2, 5,
	    &r);
	ck_assert_int_eq(socks_target(&r.s)->type, AGG_ADDR_NAME);
	ck_assert_uint_eq(socks_target(&r.s)->name_len, 11);
	ck_assert_str_eq(socks_target(&r.s)->addr.name, "example.com");
	ck_assert_uint_eq(socks_target(&r.s)->port, 80);
}
END_TEST

START_TEST(test_socks5_bad_names)
{
	static const uint8_t empty[] = {
		0x05, 0x01, 0x00,
		0x05, 0x01, 0x00, 0x03, 0, 0x00, 0x50,
	};
	static const uint8_t nul[] = {
		0x05, 0x01, 0x00,
		0x05, 0x01, 0x00, 0x03, 3, 'a', 0, 'b', 0x00, 0x50,
	};
	static const uint8_t reply[] = {
		0x05, 0x00,
		0x05, 0x01, 0x00, 0x01, 0, 0, 0, 0, 0, 0,
	};

	expect(NULL, empty, sizeof(empty), SOCKS_CLOSE, reply, sizeof(reply),
	    0, NULL);
	expect(NULL, nul, sizeof(nul), SOCKS_CLOSE, reply, sizeof(reply), 0,
	    NULL);
}
END_TEST

START_TEST(test_socks5_bind_udp)
{
	static const uint8_t bind[] = {
		0x05, 0x01, 0x00,
		0x05, 0x02, 0x00, 0x01, 10, 0, 0, 1, 0x00, 0x50,
	};
	static const uint8_t udp[] = {
		0x05, 0x01, 0x00,
		0x05, 0x03, 0x00, 0x03, 1, 'h', 0x00, 0x35,
	};
	static const uint8_t unknown[] = {
		0x05, 0x01, 0x00,
		0x05, 0x09, 0x00, 0x01, 10, 0, 0, 1, 0x00, 0x50,
	};
	static const uint8_t reply[] = {
		0x05, 0x00,
		0x05, 0x07, 0x00, 0x01, 0, 0, 0, 0, 0, 0,
	};
	struct run r;

	expect(NULL, bind, sizeof(bind), SOCKS_CLOSE, reply, sizeof(reply),
	    0, &r);
	ck_assert_str_eq(socks_error(&r.s), "SOCKS5 BIND not supported");
	expect(NULL, udp, sizeof(udp), SOCKS_CLOSE, reply, sizeof(reply), 0,
	    &r);
	ck_assert_str_eq(socks_error(&r.s),
	    "SOCKS5 UDP ASSOCIATE not supported");
	expect(NULL, unknown, sizeof(unknown), SOCKS_CLOSE, reply,
	    sizeof(reply), 0, NULL);
}
END_TEST

START_TEST(test_socks5_address_type)
{
	static const uint8_t in[] = {
		0x05, 0x01, 0x00,
		0x05, 0x01, 0x00, 0x02, 1, 2, 3, 4,
	};
	static const uint8_t reply[] = {
		0x05, 0x00,
		0x05, 0x08, 0x00, 0x01, 0, 0, 0, 0, 0, 0,
	};

	expect(NULL, in, sizeof(in), SOCKS_CLOSE, reply, sizeof(reply), 8,
	    NULL);
}
END_TEST

START_TEST(test_socks5_no_method)
{
	static const uint8_t only_auth[] = { 0x05, 0x01, 0x02 };
	static const uint8_t none[] = { 0x05, 0x00 };
	static const uint8_t only_none[] = { 0x05, 0x01, 0x00 };
	static const uint8_t refused[] = { 0x05, 0xff };
	struct socks_users *u = test_users();

	expect(NULL, only_auth, sizeof(only_auth), SOCKS_CLOSE, refused, 2, 0,
	    NULL);
	expect(NULL, none, sizeof(none), SOCKS_CLOSE, refused, 2, 0, NULL);
	/* With --socks-auth, no authentication is not acceptable. */
	expect(u, only_none, sizeof(only_none), SOCKS_CLOSE, refused, 2, 0,
	    NULL);
	socks_users_free(u);
}
END_TEST

START_TEST(test_socks5_userpass)
{
	static const uint8_t good[] = {
		0x05, 0x02, 0x00, 0x02,
		0x01, 4, 'u', 's', 'e', 'r', 6, 's', 'e', 'c', 'r', 'e', 't',
		0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1, 0x00, 0x16,
	};
	static const uint8_t colons[] = {
		0x05, 0x01, 0x02,
		0x01, 5, 'o', 't', 'h', 'e', 'r', 14, 'p', 'w', ':', 'w', 'i',
		't', 'h', ':', 'c', 'o', 'l', 'o', 'n', 's',
		0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1, 0x00, 0x16,
	};
	static const uint8_t good_reply[] = { 0x05, 0x02, 0x01, 0x00 };
	struct socks_users *u = test_users();
	struct run r;

	expect(u, good, sizeof(good), SOCKS_CONNECT, good_reply,
	    sizeof(good_reply), 0, &r);
	ck_assert_uint_eq(socks_target(&r.s)->port, 22);
	expect(u, colons, sizeof(colons), SOCKS_CONNECT, good_reply,
	    sizeof(good_reply), 0, NULL);
	socks_users_free(u);
}
END_TEST

START_TEST(test_socks5_userpass_fail)
{
	static const uint8_t wrong_pass[] = {
		0x05, 0x01, 0x02,
		0x01, 4, 'u', 's', 'e', 'r', 6, 's', 'e', 'c', 'r', 'e', 'T',
		0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1, 0x00, 0x16,
	};
	static const uint8_t prefix_pass[] = {
		0x05, 0x01, 0x02,
		0x01, 4, 'u', 's', 'e', 'r', 5, 's', 'e', 'c', 'r', 'e',
	};
	static const uint8_t wrong_user[] = {
		0x05, 0x01, 0x02,
		0x01, 5, 'o', 't', 'h', 'e', 'r', 6, 's', 'e', 'c', 'r', 'e',
		't',
	};
	static const uint8_t bad_version[] = {
		0x05, 0x01, 0x02,
		0x05, 4, 'u', 's', 'e', 'r', 6, 's', 'e', 'c', 'r', 'e', 't',
	};
	static const uint8_t failed[] = { 0x05, 0x02, 0x01, 0x01 };
	struct socks_users *u = test_users();
	struct run r;

	expect(u, wrong_pass, sizeof(wrong_pass), SOCKS_CLOSE, failed,
	    sizeof(failed), 10, &r);
	ck_assert_str_eq(socks_error(&r.s), "SOCKS5 authentication failed: "
	    "wrong user name or password");
	expect(u, prefix_pass, sizeof(prefix_pass), SOCKS_CLOSE, failed,
	    sizeof(failed), 0, NULL);
	expect(u, wrong_user, sizeof(wrong_user), SOCKS_CLOSE, failed,
	    sizeof(failed), 0, NULL);
	expect(u, bad_version, sizeof(bad_version), SOCKS_CLOSE, failed,
	    sizeof(failed), 13, NULL);
	socks_users_free(u);
}
END_TEST

START_TEST(test_socks5_bad_version)
{
	static const uint8_t request_v4[] = {
		0x05, 0x01, 0x00,
		0x04, 0x01, 0x00, 0x01, 127, 0, 0, 1, 0x00, 0x16,
	};
	static const uint8_t socks4[] = {
		0x04, 0x01, 0x00, 0x50, 127, 0, 0, 1, 'u', 0,
	};
	static const uint8_t socks4_reply[8] = { 0x00, 0x5b };
	static const uint8_t tls[] = { 0x16, 0x03, 0x01, 0x02, 0x00 };
	struct run r;

	expect(NULL, request_v4, sizeof(request_v4), SOCKS_CLOSE,
	    ok_greeting_reply, 2, 10, NULL);
	expect(NULL, socks4, sizeof(socks4), SOCKS_CLOSE, socks4_reply, 8,
	    sizeof(socks4), NULL);
	expect(NULL, tls, sizeof(tls), SOCKS_CLOSE, "", 0, sizeof(tls), &r);
	ck_assert_str_eq(socks_error(&r.s),
	    "neither SOCKS5 nor HTTP (first byte 0x16)");
	ck_assert_str_eq(socks_proto_name(&r.s), "unknown");
}
END_TEST

START_TEST(test_socks5_partial)
{
	static const uint8_t in[] = {
		0x05, 0x01, 0x00,
		0x05, 0x01, 0x00, 0x03, 4, 'h', 'o', 's', 't', 0x00, 0x50,
	};
	struct evbuffer *ib = evbuffer_new(), *ob = evbuffer_new();
	struct socks s;
	size_t i;

	/* Nothing is consumed or answered before a message is complete. */
	socks_init(&s, NULL);
	for (i = 0; i < 2; i++) {
		evbuffer_add(ib, in + i, 1);
		ck_assert_int_eq(socks_parse(&s, ib, ob), SOCKS_MORE);
		ck_assert_uint_eq(evbuffer_get_length(ob), 0);
		ck_assert_uint_eq(evbuffer_get_length(ib), i + 1);
	}
	evbuffer_add(ib, in + 2, 1);
	ck_assert_int_eq(socks_parse(&s, ib, ob), SOCKS_MORE);
	ck_assert_uint_eq(evbuffer_get_length(ob), 2);
	ck_assert_uint_eq(evbuffer_get_length(ib), 0);
	for (i = 3; i < sizeof(in) - 1; i++) {
		evbuffer_add(ib, in + i, 1);
		ck_assert_int_eq(socks_parse(&s, ib, ob), SOCKS_MORE);
		ck_assert_uint_eq(evbuffer_get_length(ob), 2);
	}
	evbuffer_add(ib, in + i, 1);
	ck_assert_int_eq(socks_parse(&s, ib, ob), SOCKS_CONNECT);
	ck_assert_uint_eq(evbuffer_get_length(ib), 0);
	/* Asking again changes nothing. */
	evbuffer_add(ib, "x", 1);
	ck_assert_int_eq(socks_parse(&s, ib, ob), SOCKS_CONNECT);
	ck_assert_uint_eq(evbuffer_get_length(ib), 1);
	ck_assert_uint_eq(evbuffer_get_length(ob), 2);
	evbuffer_free(ib);
	evbuffer_free(ob);
}
END_TEST

START_TEST(test_http_connect)
{
	static const char bare[] = "CONNECT example.com:443 HTTP/1.1\r\n\r\n";
	static const char headers[] = "CONNECT 192.0.2.1:22 HTTP/1.0\r\n"
	    "Host: 192.0.2.1:22\r\nUser-Agent: curl/7.88.1\r\n"
	    "Proxy-Connection: Keep-Alive\r\n\r\n\x16\x03\x01";
	static const char v6[] = "CONNECT [2001:db8::2]:8443 HTTP/1.1\n"
	    "Host: [2001:db8::2]:8443\n\n";
	static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
	struct run r;
	char buf[512], text[128];

	expect(NULL, bare, strlen(bare), SOCKS_CONNECT, "", 0, 0, &r);
	ck_assert_int_eq(r.s.proto, SOCKS_PROTO_HTTP);
	ck_assert_str_eq(socks_proto_name(&r.s), "http");
	ck_assert_int_eq(socks_target(&r.s)->type, AGG_ADDR_NAME);
	ck_assert_str_eq(socks_target(&r.s)->addr.name, "example.com");
	ck_assert_uint_eq(socks_target(&r.s)->port, 443);
	answer(&r.s, AGG_OK, "", buf, sizeof(buf));
	ck_assert_str_eq(buf, ok);

	expect(NULL, headers, strlen(headers), SOCKS_CONNECT, "", 0, 3, &r);
	ck_assert_int_eq(socks_target(&r.s)->type, AGG_ADDR_IPV4);
	ck_assert_uint_eq(socks_target(&r.s)->port, 22);

	expect(NULL, v6, strlen(v6), SOCKS_CONNECT, "", 0, 0, &r);
	agg_target_format(socks_target(&r.s), text, sizeof(text));
	ck_assert_str_eq(text, "[2001:db8::2]:8443");
}
END_TEST

START_TEST(test_http_errors)
{
	static const char reply_502[] = "HTTP/1.1 502 Bad Gateway\r\n"
	    "Content-Type: text/plain\r\nContent-Length: 19\r\n"
	    "Connection: close\r\n\r\nconnection refused\n";
	static const char reply_403[] = "HTTP/1.1 403 Forbidden\r\n"
	    "Content-Type: text/plain\r\nContent-Length: 16\r\n"
	    "Connection: close\r\n\r\ndenied by rule\n\n";
	static const char reply_504[] = "HTTP/1.1 504 Gateway Timeout\r\n"
	    "Content-Type: text/plain\r\nContent-Length: 10\r\n"
	    "Connection: close\r\n\r\ntimed out\n";
	static const char req[] = "CONNECT h:1 HTTP/1.1\r\n\r\n";
	struct run r;
	char buf[512];

	expect(NULL, req, strlen(req), SOCKS_CONNECT, "", 0, 0, &r);
	answer(&r.s, AGG_ERR_REFUSED, NULL, buf, sizeof(buf));
	ck_assert_str_eq(buf, reply_502);
	answer(&r.s, AGG_ERR_DENIED, "denied by rule\n", buf, sizeof(buf));
	ck_assert_str_eq(buf, reply_403);
	answer(&r.s, AGG_ERR_TIMEOUT, "", buf, sizeof(buf));
	ck_assert_str_eq(buf, reply_504);
}
END_TEST

START_TEST(test_http_not_connect)
{
	static const char line[] = "GET http://example.com/ HTTP/1.1\r\n";
	static const char get[] = "GET http://example.com/ HTTP/1.1\r\n"
	    "Host: example.com\r\n\r\n";
	static const char reply[] = "HTTP/1.1 405 Method Not Allowed\r\n"
	    "Allow: CONNECT\r\nContent-Type: text/plain\r\n"
	    "Content-Length: 35\r\nConnection: close\r\n\r\n"
	    "only CONNECT is supported, not GET\n";
	struct run r;

	/* Answered as soon as the request line is known. */
	expect(NULL, get, strlen(get), SOCKS_CLOSE, reply, strlen(reply),
	    strlen(get) - strlen(line), &r);
	ck_assert_str_eq(socks_error(&r.s),
	    "only CONNECT is supported, not GET");
}
END_TEST

/* Checks that req is answered 400 with body reason. */
static void expect_400(const char *req, size_t len, const char *reason)
{
	char reply[512];
	struct run r;
	size_t i;

	snprintf(reply, sizeof(reply), "HTTP/1.1 400 Bad Request\r\n"
	    "Content-Type: text/plain\r\nContent-Length: %zu\r\n"
	    "Connection: close\r\n\r\n%s\n", strlen(reason) + 1, reason);
	for (i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		feed(NULL, req, len, steps[i], &r);
		ck_assert_msg(r.status == SOCKS_CLOSE, "'%s' split %zu: "
		    "status %d", req, steps[i], r.status);
		ck_assert_str_eq(socks_error(&r.s), reason);
		ck_assert_uint_eq(r.out_len, strlen(reply));
		ck_assert_mem_eq(r.out, reply, r.out_len);
	}
}

START_TEST(test_http_malformed)
{
	static const char nul[] = "CONNECT h:1\0 HTTP/1.1\r\n\r\n";

	expect_400("CONNECT example.com HTTP/1.1\r\n\r\n", 33,
	    "bad CONNECT target 'example.com': expected host:port");
	expect_400("CONNECT example.com:0 HTTP/1.1\r\n\r\n", 35,
	    "bad CONNECT target 'example.com:0': expected host:port");
	expect_400("CONNECT user@host:22 HTTP/1.1\r\n\r\n", 34,
	    "bad CONNECT target");
	expect_400("CONNECT h:1 HTTP/2.0\r\n\r\n", 25,
	    "not an HTTP/1.x request");
	expect_400("CONNECT h:1\r\n\r\n", 15, "malformed HTTP request line");
	expect_400("CONNECT  h:1 HTTP/1.1\r\n\r\n", 25,
	    "malformed HTTP request line");
	expect_400("CONNECT h:1 HTTP/1.1\r\nHost h\r\n\r\n", 32,
	    "malformed HTTP header line");
	expect_400("CONNECT h:1 HTTP/1.1\r\nHo st: h\r\n\r\n", 35,
	    "malformed HTTP header name");
	expect_400("CONNECT h:1 HTTP/1.1\r\nA: b\r\n c\r\n\r\n", 33,
	    "folded HTTP header");
	expect_400("CONNECT h:1 HTTP/1.1\r\nA: b\rc\r\n\r\n", 32,
	    "stray CR in HTTP request");
	expect_400(nul, sizeof(nul) - 1, "control character in HTTP request");
	expect_400("C\x01", 2, "control character in HTTP request");
}
END_TEST

START_TEST(test_http_oversize)
{
	char *req = malloc(SOCKS_HTTP_MAX + 100);
	size_t len;

	ck_assert_ptr_nonnull(req);
	len = (size_t)snprintf(req, 64, "CONNECT h:1 HTTP/1.1\r\nX-Pad: ");
	memset(req + len, 'a', SOCKS_HTTP_MAX + 100 - len);
	expect_400(req, SOCKS_HTTP_MAX + 100,
	    "HTTP request head longer than 8192 bytes");
	/* A head of exactly the limit is fine. */
	len = (size_t)snprintf(req, 64, "CONNECT h:1 HTTP/1.1\r\nX-Pad: ");
	memset(req + len, 'a', SOCKS_HTTP_MAX - len - 4);
	memcpy(req + SOCKS_HTTP_MAX - 4, "\r\n\r\n", 4);
	expect(NULL, req, SOCKS_HTTP_MAX, SOCKS_CONNECT, "", 0, 0, NULL);
	/* A request line without end. */
	memset(req, 'C', SOCKS_HTTP_MAX + 100);
	expect_400(req, SOCKS_HTTP_MAX + 100,
	    "HTTP request head longer than 8192 bytes");
	free(req);
}
END_TEST

START_TEST(test_http_auth)
{
	/* user:secret and other:pw:with:colons */
	static const char good[] = "CONNECT h:1 HTTP/1.1\r\n"
	    "proxy-authorization:   basic dXNlcjpzZWNyZXQ=  \r\n\r\n";
	static const char colons[] = "CONNECT h:1 HTTP/1.1\r\n"
	    "Proxy-Authorization: Basic b3RoZXI6cHc6d2l0aDpjb2xvbnM=\r\n\r\n";
	static const char wrong[] = "CONNECT h:1 HTTP/1.1\r\n"
	    "Proxy-Authorization: Basic dXNlcjpzZWNyZXU=\r\n\r\n";
	static const char garbage[] = "CONNECT h:1 HTTP/1.1\r\n"
	    "Proxy-Authorization: Basic d=XNlcjpzZWNyZXQ\r\n\r\n";
	static const char none[] = "CONNECT h:1 HTTP/1.1\r\n\r\n";
	static const char reply_407[] = "HTTP/1.1 407 Proxy Authentication "
	    "Required\r\nProxy-Authenticate: Basic realm=\"agg\"\r\n"
	    "Content-Type: text/plain\r\nContent-Length: 30\r\n"
	    "Connection: close\r\n\r\nproxy authentication required\n";
	struct socks_users *u = test_users();

	expect(u, good, strlen(good), SOCKS_CONNECT, "", 0, 0, NULL);
	expect(u, colons, strlen(colons), SOCKS_CONNECT, "", 0, 0, NULL);
	expect(u, wrong, strlen(wrong), SOCKS_CLOSE, reply_407,
	    strlen(reply_407), 0, NULL);
	expect(u, garbage, strlen(garbage), SOCKS_CLOSE, reply_407,
	    strlen(reply_407), 0, NULL);
	expect(u, none, strlen(none), SOCKS_CLOSE, reply_407,
	    strlen(reply_407), 0, NULL);
	/* Without --socks-auth the header is ignored. */
	expect(NULL, wrong, strlen(wrong), SOCKS_CONNECT, "", 0, 0, NULL);
	socks_users_free(u);
}
END_TEST

START_TEST(test_result_codes)
{
	static const struct {
		int code;
		uint8_t rep;
		int status;
		const char *phrase, *text;
	} table[] = {
		{ AGG_OK, 0x00, 200, "Connection established", "succeeded" },
		{ AGG_ERR_GENERAL, 0x01, 502, "Bad Gateway",
		    "general failure" },
		{ AGG_ERR_DENIED, 0x02, 403, "Forbidden",
		    "connection not allowed by policy" },
		{ AGG_ERR_NET_UNREACHABLE, 0x03, 502, "Bad Gateway",
		    "network unreachable" },
		{ AGG_ERR_HOST_UNREACHABLE, 0x04, 502, "Bad Gateway",
		    "host unreachable" },
		{ AGG_ERR_REFUSED, 0x05, 502, "Bad Gateway",
		    "connection refused" },
		{ AGG_ERR_TIMEOUT, 0x06, 504, "Gateway Timeout", "timed out" },
		{ AGG_ERR_UNSUPPORTED, 0x07, 502, "Bad Gateway",
		    "command not supported" },
		{ AGG_ERR_ADDRESS_TYPE, 0x08, 502, "Bad Gateway",
		    "address type not supported" },
		{ 9, 0x01, 502, "Bad Gateway", "general failure" },
		{ -1, 0x01, 502, "Bad Gateway", "general failure" },
	};
	static const uint8_t req[] = {
		0x05, 0x01, 0x00,
		0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1, 0x00, 0x16,
	};
	uint8_t reply[10] = { 0x05, 0x00, 0x00, 0x01 };
	const char *phrase;
	char buf[64];
	struct run r;
	size_t i;

	expect(NULL, req, sizeof(req), SOCKS_CONNECT, ok_greeting_reply, 2, 0,
	    &r);
	for (i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		ck_assert_uint_eq(socks_reply_code(table[i].code),
		    table[i].rep);
		ck_assert_int_eq(socks_http_status(table[i].code, &phrase),
		    table[i].status);
		ck_assert_str_eq(phrase, table[i].phrase);
		ck_assert_str_eq(socks_result_text(table[i].code),
		    table[i].text);
		reply[1] = table[i].rep;
		ck_assert_uint_eq(answer(&r.s, table[i].code, "x", buf,
		    sizeof(buf)), 10);
		ck_assert_mem_eq(buf, reply, 10);
	}
}
END_TEST

START_TEST(test_users_file)
{
	static const struct {
		const char *text, *err;
	} bad[] = {
		{ "", "has no user:password line" },
		{ "# only a comment\n\n", "has no user:password line" },
		{ "user\n", "line 1: expected user:password" },
		{ "ok:pw\n:pw\n", "line 2: expected user:password" },
		{ "user:\n", "line 1: expected user:password" },
	};
	struct socks_users *u;
	const char *path;
	char err[256], longline[700];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		path = temp_file(bad[i].text);
		u = socks_users_load(path, err, sizeof(err));
		unlink(path);
		ck_assert_ptr_null(u);
		ck_assert_msg(strstr(err, bad[i].err) != NULL, "'%s': %s",
		    bad[i].text, err);
	}
	memset(longline, 'a', sizeof(longline));
	longline[1] = ':';
	longline[sizeof(longline) - 1] = '\0';
	path = temp_file(longline);
	ck_assert_ptr_null(socks_users_load(path, err, sizeof(err)));
	unlink(path);
	ck_assert_msg(strstr(err, "line 1: line too long") != NULL, "%s",
	    err);
	ck_assert_ptr_null(socks_users_load("/nonexistent/users", err,
	    sizeof(err)));
	ck_assert_str_eq(err, "cannot read --socks-auth file "
	    "/nonexistent/users: No such file or directory");
	path = temp_file("u:p\r\n");
	u = socks_users_load(path, err, sizeof(err));
	unlink(path);
	ck_assert_ptr_nonnull(u);
	ck_assert(socks_users_check(u, "u", 1, "p", 1));
	ck_assert(!socks_users_check(u, "u", 1, "p\r", 2));
	ck_assert(!socks_users_check(u, "", 0, "", 0));
	socks_users_free(u);
}
END_TEST

/* A small deterministic generator for the random inputs. */
static uint32_t rand_next(uint32_t *state)
{
	*state ^= *state << 13;
	*state ^= *state >> 17;
	*state ^= *state << 5;
	return *state;
}

START_TEST(test_random_input)
{
	static const uint8_t prefixes[][4] = {
		{ 0x05 }, { 0x05, 0x01, 0x00, 0x05 }, { 'C' }, { 'G' },
		{ 0x05, 0x01, 0x02, 0x01 },
	};
	struct socks_users *u = test_users();
	static struct run whole, split;
	uint8_t data[600];
	uint32_t seed = 0x2545f491u;
	size_t len, i, j, step;

	/* Any input ends in a decision or a wish for more, and splitting it
	 * never changes which, nor what is answered. */
	for (i = 0; i < 20000; i++) {
		len = rand_next(&seed) % sizeof(data);
		for (j = 0; j < len; j++)
			data[j] = (uint8_t)rand_next(&seed);
		if (len >= 4 && (i & 1))
			memcpy(data, prefixes[i / 2 % 5], 4);
		if (len > 8 && (i & 2))
			data[1] = (uint8_t)(data[1] % 4);
		feed(i & 4 ? u : NULL, data, len, 0, &whole);
		step = 1 + rand_next(&seed) % 16;
		feed(i & 4 ? u : NULL, data, len, step, &split);
		ck_assert_int_eq(whole.status, split.status);
		ck_assert_uint_eq(whole.out_len, split.out_len);
		ck_assert_mem_eq(whole.out, split.out, whole.out_len);
		ck_assert_uint_eq(whole.left_len, split.left_len);
	}
	socks_users_free(u);
}
END_TEST

/* Runs the parser tests. */
int main(void)
{
	Suite *s = suite_create("socks");
	TCase *tc = tcase_create("socks");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_socks5_ipv4);
	tcase_add_test(tc, test_socks5_ipv6);
	tcase_add_test(tc, test_socks5_domain);
	tcase_add_test(tc, test_socks5_bad_names);
	tcase_add_test(tc, test_socks5_bind_udp);
	tcase_add_test(tc, test_socks5_address_type);
	tcase_add_test(tc, test_socks5_no_method);
	tcase_add_test(tc, test_socks5_userpass);
	tcase_add_test(tc, test_socks5_userpass_fail);
	tcase_add_test(tc, test_socks5_bad_version);
	tcase_add_test(tc, test_socks5_partial);
	tcase_add_test(tc, test_http_connect);
	tcase_add_test(tc, test_http_errors);
	tcase_add_test(tc, test_http_not_connect);
	tcase_add_test(tc, test_http_malformed);
	tcase_add_test(tc, test_http_oversize);
	tcase_add_test(tc, test_http_auth);
	tcase_add_test(tc, test_result_codes);
	tcase_add_test(tc, test_users_file);
	tcase_add_test(tc, test_random_input);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
