/*
 * test_wire.c: the wire codec, the authentication MACs and target parsing,
 * including the hex test vectors that PROTOCOL.md repeats.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "agg/target.h"
#include "auth.h"
#include "wire.h"

/*
 * Test vectors (PROTOCOL.md, section "Test vectors"). Spaces only separate
 * fields for the reader.
 */
#define HEX_CLIENT_HELLO \
	"41474743 01 01 0001 000102030405060708090a0b0c0d0e0f 00000001 " \
	"101112131415161718191a1b1c1d1e1f 00000000"
#define HEX_SERVER_HELLO \
	"41474753 01 00 0000 " \
	"202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
#define HEX_AUTH \
	"0bece0bf68f97d030258b9ca72d24c341a8a26156cb16bb695930427f823851b"
#define HEX_PROOF_OK \
	"65e4ba22c8560161add0065e457637a901ab72dcdb6dc69f7664f9febc7e314d"
#define HEX_PROOF_AUTH_FAILED \
	"2e53a8ad0ba908eb00057ef027cbce68941c146b8cd22c3deeab6243fd43555e"
#define HEX_WELCOME "00 000000 " HEX_PROOF_OK
#define HEX_AUTH_EMPTY_KEY \
	"93a79656eaed4f52ded504aadf0c7d563845f835c5ac454a13c2e69eec08c0ce"
#define HEX_PROOF_OK_EMPTY_KEY \
	"721719a903243007dcc09d20e8e0b389da4ea83e1ae832aaa04e9fe0fcd7d31d"
#define HEX_DATA_HEADER \
	"01 01 0017 0000000000000005 00000001 0000000000001000"
#define HEX_CREDIT \
	"04 00 0014 0000000000000000 00000000 0000000002000000"
#define HEX_OPEN \
	"02 00 0020 0000000000000001 00000001 01 00400000 " \
	"03 0b 6578616d706c652e636f6d 01bb"
#define HEX_RESULT \
	"03 00 0012 0000000000000001 00000001 00 00400000 00"
#define HEX_RESET \
	"05 00 001d 0000000000000007 00000003 0000000000010000 " \
	"01 07 61626f72746564"
#define HEX_ACK \
	"06 00 0021 0000000000000009 02 " \
	"00000001 0000000000000005 00000002 0000000000000004"
#define HEX_PING "07 00 0008 0123456789abcdef"
#define HEX_PONG "08 00 0008 0123456789abcdef"
#define HEX_CLOSE "09 00 0010 01 04 0d 7368757474696e6720646f776e"

static const char test_key[] = "correct horse battery staple";

/* Value of one hex digit, or -1. */
static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decodes hex (spaces ignored) into out; returns the byte count. */
static size_t unhex(const char *hex, uint8_t *out, size_t cap)
{
	size_t n = 0;
	int hi = -1, d;

	for (; *hex != '\0'; hex++) {
		if (*hex == ' ')
			continue;
		d = hex_digit(*hex);
		ck_assert_msg(d >= 0, "bad hex digit '%c'", *hex);
		if (hi < 0) {
			hi = d;
			continue;
		}
		ck_assert_uint_lt(n, cap);
		out[n++] = (uint8_t)(hi << 4 | d);
		hi = -1;
	}
	ck_assert_msg(hi < 0, "odd number of hex digits");
	return n;
}

/* Asserts that buf[0..len) equals the bytes written as hex. */
static void assert_hex(const uint8_t *buf, size_t len, const char *hex)
{
	uint8_t want[1024];
	size_t n = unhex(hex, want, sizeof(want));

	ck_assert_uint_eq(len, n);
	ck_assert_mem_eq(buf, want, n);
}

/*
 * A copy of data placed so that its last byte is the last byte of a
 * readable page and the next page is inaccessible: any read past the end
 * faults (and fails the forked test) even without a sanitizer.
 */
struct guarded {
	uint8_t *map;
	size_t map_len;
	uint8_t *data;
};

/* Copies len bytes to the end of a page followed by a guard page. */
static void guard_copy(struct guarded *g, const uint8_t *src, size_t len)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t pages = (len + page - 1) / page + 1;

	if (pages < 2)
		pages = 2;
	g->map_len = pages * page;
	g->map = mmap(NULL, g->map_len, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(g->map, MAP_FAILED);
	ck_assert_int_eq(mprotect(g->map + g->map_len - page, page,
	    PROT_NONE), 0);
	g->data = g->map + g->map_len - page - len;
	if (len > 0)
		memcpy(g->data, src, len);
}

/* Releases a guarded copy. */
static void guard_free(struct guarded *g)
{
	munmap(g->map, g->map_len);
}

/* The CLIENT_HELLO of the vectors. */
static void vector_client_hello(struct agg_client_hello *h)
{
	size_t i;

	memset(h, 0, sizeof(*h));
	h->version_min = 1;
	h->version_max = 1;
	h->flags = AGG_HELLO_CREATE;
	for (i = 0; i < AGG_SESSION_ID_LEN; i++)
		h->session_id[i] = (uint8_t)i;
	h->link_id = 1;
	for (i = 0; i < AGG_CLIENT_NONCE_LEN; i++)
		h->nonce[i] = (uint8_t)(0x10 + i);
}

/* The SERVER_HELLO of the vectors. */
static void vector_server_hello(struct agg_server_hello *h)
{
	size_t i;

	memset(h, 0, sizeof(*h));
	h->version = 1;
	h->status = AGG_HELLO_OK;
	for (i = 0; i < AGG_SERVER_NONCE_LEN; i++)
		h->nonce[i] = (uint8_t)(0x20 + i);
}

/* A zeroed frame of a type. */
static void frame_init(struct agg_frame *f, uint8_t type)
{
	memset(f, 0, sizeof(*f));
	f->type = type;
}

/* Sets a frame's message. */
static void frame_message(struct agg_frame *f, const char *msg)
{
	f->message_len = (uint8_t)strlen(msg);
	memcpy(f->message, msg, f->message_len);
	f->message[f->message_len] = '\0';
}

/* Sets a name target. */
static void target_name(struct agg_target *t, const char *name, uint16_t port)
{
	memset(t, 0, sizeof(*t));
	t->type = AGG_ADDR_NAME;
	t->name_len = (uint8_t)strlen(name);
	memcpy(t->addr.name, name, t->name_len + 1);
	t->port = port;
}

/* Asserts that two decoded frames carry the same fields for their type. */
static void assert_frame_eq(const struct agg_frame *a,
    const struct agg_frame *b)
{
	size_t i;

	ck_assert_uint_eq(a->type, b->type);
	ck_assert_uint_eq(a->flags, b->flags);
	if (agg_frame_is_reliable(a->type)) {
		ck_assert_uint_eq(a->seq, b->seq);
		ck_assert_uint_eq(a->stream, b->stream);
	}
	switch (a->type) {
	case AGG_FRAME_OPEN:
		ck_assert_uint_eq(a->code, b->code);
		ck_assert_uint_eq(a->window, b->window);
		ck_assert_uint_eq(a->target.type, b->target.type);
		ck_assert_uint_eq(a->target.port, b->target.port);
		if (a->target.type == AGG_ADDR_IPV4)
			ck_assert_mem_eq(a->target.addr.ipv4,
			    b->target.addr.ipv4, 4);
		else if (a->target.type == AGG_ADDR_IPV6)
			ck_assert_mem_eq(a->target.addr.ipv6,
			    b->target.addr.ipv6, 16);
		else {
			ck_assert_uint_eq(a->target.name_len,
			    b->target.name_len);
			ck_assert_str_eq(a->target.addr.name,
			    b->target.addr.name);
		}
		break;
	case AGG_FRAME_RESULT:
	case AGG_FRAME_RESET:
		if (a->type == AGG_FRAME_RESULT)
			ck_assert_uint_eq(a->window, b->window);
		else
			ck_assert_uint_eq(a->value, b->value);
		ck_assert_uint_eq(a->code, b->code);
		ck_assert_uint_eq(a->message_len, b->message_len);
		ck_assert_mem_eq(a->message, b->message, a->message_len);
		break;
	case AGG_FRAME_CLOSE:
		ck_assert_uint_eq(a->scope, b->scope);
		ck_assert_uint_eq(a->code, b->code);
		ck_assert_uint_eq(a->message_len, b->message_len);
		ck_assert_mem_eq(a->message, b->message, a->message_len);
		break;
	case AGG_FRAME_ACK:
		ck_assert_uint_eq(a->value, b->value);
		ck_assert_uint_eq(a->ack_count, b->ack_count);
		for (i = 0; i < a->ack_count; i++) {
			ck_assert_uint_eq(a->acks[i].link_id,
			    b->acks[i].link_id);
			ck_assert_uint_eq(a->acks[i].frames,
			    b->acks[i].frames);
		}
		break;
	default:
		ck_assert_uint_eq(a->value, b->value);
		break;
	}
}

/*
 * Every proper prefix of a complete frame must ask for more bytes: each
 * prefix goes through the header decoder and the frame decoder from a
 * guarded buffer.
 */
static void assert_frame_prefixes_short(const uint8_t *buf, size_t len)
{
	struct agg_frame_header h;
	struct agg_frame f;
	struct guarded g;
	size_t n;

	for (n = 0; n < len; n++) {
		guard_copy(&g, buf, n);
		if (n < AGG_FRAME_HEADER_LEN)
			ck_assert_int_eq(agg_frame_header_decode(g.data, n,
			    &h), AGG_WIRE_SHORT);
		else
			ck_assert_int_eq(agg_frame_header_decode(g.data, n,
			    &h), AGG_WIRE_OK);
		ck_assert_int_eq(agg_frame_decode(g.data, n, &f),
		    AGG_WIRE_SHORT);
		guard_free(&g);
	}
}

/* Encodes f, decodes it back from a guarded buffer, compares, checks
 * every truncation; returns the encoded length (copied into out). */
static size_t roundtrip(const struct agg_frame *f, uint8_t *out, size_t cap)
{
	uint8_t buf[AGG_FRAME_HEADER_LEN + 512];
	struct agg_frame d;
	struct guarded g;
	size_t len;

	len = agg_frame_encode(f, buf, sizeof(buf));
	ck_assert_uint_gt(len, AGG_FRAME_HEADER_LEN);
	ck_assert_uint_eq(buf[0], f->type);
	ck_assert_uint_eq(buf[1], 0);
	ck_assert_uint_eq((size_t)(buf[2] << 8 | buf[3]),
	    len - AGG_FRAME_HEADER_LEN);
	guard_copy(&g, buf, len);
	ck_assert_int_eq(agg_frame_decode(g.data, len, &d), AGG_WIRE_OK);
	guard_free(&g);
	assert_frame_eq(f, &d);
	assert_frame_prefixes_short(buf, len);
	if (out != NULL) {
		ck_assert_uint_le(len, cap);
		memcpy(out, buf, len);
	}
	return len;
}

/* Decodes a whole frame given as hex; asserts the result. */
static int decode_hex(const char *hex, struct agg_frame *f)
{
	uint8_t buf[1024];
	size_t len = unhex(hex, buf, sizeof(buf));
	struct guarded g;
	int r;

	guard_copy(&g, buf, len);
	r = agg_frame_decode(g.data, len, f);
	guard_free(&g);
	return r;
}

/* Decodes a frame header given as hex. */
static int header_hex(const char *hex)
{
	struct agg_frame_header h;
	uint8_t buf[16];
	size_t len = unhex(hex, buf, sizeof(buf));

	return agg_frame_header_decode(buf, len, &h);
}

/* --- handshake messages --- */

/* CLIENT_HELLO encodes and decodes; every prefix is short. */
START_TEST(client_hello_roundtrip)
{
	struct agg_client_hello h, d;
	uint8_t buf[AGG_CLIENT_HELLO_LEN];
	struct guarded g;
	size_t n;

	vector_client_hello(&h);
	h.version_max = 7;
	h.flags = 0;
	h.link_id = 0xfedcba98;
	h.session_id[15] = 0xff;
	agg_client_hello_encode(&h, buf);
	guard_copy(&g, buf, sizeof(buf));
	ck_assert_int_eq(agg_client_hello_decode(g.data, sizeof(buf), &d),
	    AGG_WIRE_OK);
	guard_free(&g);
	ck_assert_uint_eq(d.version_min, 1);
	ck_assert_uint_eq(d.version_max, 7);
	ck_assert_uint_eq(d.flags, 0);
	ck_assert_uint_eq(d.link_id, 0xfedcba98);
	ck_assert_mem_eq(d.session_id, h.session_id, AGG_SESSION_ID_LEN);
	ck_assert_mem_eq(d.nonce, h.nonce, AGG_CLIENT_NONCE_LEN);
	for (n = 0; n < sizeof(buf); n++) {
		guard_copy(&g, buf, n);
		ck_assert_int_eq(agg_client_hello_decode(g.data, n, &d),
		    AGG_WIRE_SHORT);
		guard_free(&g);
	}
}
END_TEST

/* SERVER_HELLO encodes and decodes; every prefix is short. */
START_TEST(server_hello_roundtrip)
{
	struct agg_server_hello h, d;
	uint8_t buf[AGG_SERVER_HELLO_LEN];
	struct guarded g;
	size_t n;

	vector_server_hello(&h);
	h.version = 0;
	h.status = AGG_HELLO_VERSION_UNSUPPORTED;
	h.nonce[31] = 0xee;
	agg_server_hello_encode(&h, buf);
	guard_copy(&g, buf, sizeof(buf));
	ck_assert_int_eq(agg_server_hello_decode(g.data, sizeof(buf), &d),
	    AGG_WIRE_OK);
	guard_free(&g);
	ck_assert_uint_eq(d.version, 0);
	ck_assert_uint_eq(d.status, AGG_HELLO_VERSION_UNSUPPORTED);
	ck_assert_mem_eq(d.nonce, h.nonce, AGG_SERVER_NONCE_LEN);
	for (n = 0; n < sizeof(buf); n++) {
		guard_copy(&g, buf, n);
		ck_assert_int_eq(agg_server_hello_decode(g.data, n, &d),
		    AGG_WIRE_SHORT);
		guard_free(&g);
	}
}
END_TEST

/* WELCOME with each status; every prefix is short. */
START_TEST(welcome_roundtrip)
{
	struct agg_welcome w, d;
	uint8_t buf[AGG_WELCOME_LEN];
	struct guarded g;
	size_t n;
	uint8_t status;

	for (status = AGG_WELCOME_OK; status <= AGG_WELCOME_DUPLICATE_LINK;
	    status++) {
		memset(&w, 0, sizeof(w));
		w.status = status;
		for (n = 0; n < AGG_MAC_LEN; n++)
			w.proof[n] = (uint8_t)(0xa0 + n + status);
		agg_welcome_encode(&w, buf);
		guard_copy(&g, buf, sizeof(buf));
		ck_assert_int_eq(agg_welcome_decode(g.data, sizeof(buf), &d),
		    AGG_WIRE_OK);
		guard_free(&g);
		ck_assert_uint_eq(d.status, status);
		ck_assert_mem_eq(d.proof, w.proof, AGG_MAC_LEN);
	}
	for (n = 0; n < sizeof(buf); n++) {
		guard_copy(&g, buf, n);
		ck_assert_int_eq(agg_welcome_decode(g.data, n, &d),
		    AGG_WIRE_SHORT);
		guard_free(&g);
	}
}
END_TEST

/* The handshake vectors, in both directions. */
START_TEST(handshake_vectors)
{
	struct agg_client_hello ch, dch;
	struct agg_server_hello sh, dsh;
	struct agg_welcome w, dw;
	uint8_t buf[64], raw[64];
	size_t len;

	vector_client_hello(&ch);
	agg_client_hello_encode(&ch, buf);
	assert_hex(buf, AGG_CLIENT_HELLO_LEN, HEX_CLIENT_HELLO);
	len = unhex(HEX_CLIENT_HELLO, raw, sizeof(raw));
	ck_assert_int_eq(agg_client_hello_decode(raw, len, &dch), AGG_WIRE_OK);
	ck_assert_uint_eq(dch.version_min, 1);
	ck_assert_uint_eq(dch.version_max, 1);
	ck_assert_uint_eq(dch.flags, AGG_HELLO_CREATE);
	ck_assert_uint_eq(dch.link_id, 1);
	ck_assert_mem_eq(dch.session_id, ch.session_id, AGG_SESSION_ID_LEN);
	ck_assert_mem_eq(dch.nonce, ch.nonce, AGG_CLIENT_NONCE_LEN);

	vector_server_hello(&sh);
	agg_server_hello_encode(&sh, buf);
	assert_hex(buf, AGG_SERVER_HELLO_LEN, HEX_SERVER_HELLO);
	len = unhex(HEX_SERVER_HELLO, raw, sizeof(raw));
	ck_assert_int_eq(agg_server_hello_decode(raw, len, &dsh), AGG_WIRE_OK);
	ck_assert_uint_eq(dsh.version, 1);
	ck_assert_uint_eq(dsh.status, AGG_HELLO_OK);
	ck_assert_mem_eq(dsh.nonce, sh.nonce, AGG_SERVER_NONCE_LEN);

	w.status = AGG_WELCOME_OK;
	unhex(HEX_PROOF_OK, w.proof, sizeof(w.proof));
	agg_welcome_encode(&w, buf);
	assert_hex(buf, AGG_WELCOME_LEN, HEX_WELCOME);
	len = unhex(HEX_WELCOME, raw, sizeof(raw));
	ck_assert_int_eq(agg_welcome_decode(raw, len, &dw), AGG_WIRE_OK);
	ck_assert_uint_eq(dw.status, AGG_WELCOME_OK);
	ck_assert_mem_eq(dw.proof, w.proof, AGG_MAC_LEN);
}
END_TEST

/* Bad magic, versions, flags, reserved bytes and statuses. */
START_TEST(handshake_errors)
{
	struct agg_client_hello ch;
	struct agg_server_hello sh;
	struct agg_welcome w;
	uint8_t c[AGG_CLIENT_HELLO_LEN], s[AGG_SERVER_HELLO_LEN];
	uint8_t wb[AGG_WELCOME_LEN], t[64];
	size_t i;

	vector_client_hello(&ch);
	agg_client_hello_encode(&ch, c);
	vector_server_hello(&sh);
	agg_server_hello_encode(&sh, s);
	memset(&w, 0, sizeof(w));
	agg_welcome_encode(&w, wb);

	/* Bad magic, detected as soon as four bytes are there. */
	memcpy(t, c, sizeof(c));
	t[3] = 'X';
	ck_assert_int_eq(agg_client_hello_decode(t, 4, &ch),
	    AGG_WIRE_BAD_MAGIC);
	ck_assert_int_eq(agg_client_hello_decode(t, sizeof(c), &ch),
	    AGG_WIRE_BAD_MAGIC);
	ck_assert_int_eq(agg_server_hello_decode(c, sizeof(s), &sh),
	    AGG_WIRE_BAD_MAGIC);
	ck_assert_int_eq(agg_client_hello_decode(s, sizeof(s), &ch),
	    AGG_WIRE_BAD_MAGIC);
	memcpy(t, s, sizeof(s));
	t[0] = 'a';
	ck_assert_int_eq(agg_server_hello_decode(t, sizeof(s), &sh),
	    AGG_WIRE_BAD_MAGIC);

	/* Versions: min > max, min 0. */
	memcpy(t, c, sizeof(c));
	t[4] = 2;
	t[5] = 1;
	ck_assert_int_eq(agg_client_hello_decode(t, sizeof(c), &ch),
	    AGG_WIRE_BAD_FIELD);
	t[4] = 0;
	ck_assert_int_eq(agg_client_hello_decode(t, sizeof(c), &ch),
	    AGG_WIRE_BAD_FIELD);
	t[4] = 1;
	t[5] = 255;
	ck_assert_int_eq(agg_client_hello_decode(t, sizeof(c), &ch),
	    AGG_WIRE_OK);

	/* Unknown flag bits and nonzero reserved bytes. */
	for (i = 0; i < 15; i++) {
		memcpy(t, c, sizeof(c));
		t[6] = (uint8_t)((0x0002 << i) >> 8);
		t[7] = (uint8_t)((0x0002 << i) | 0x01);
		ck_assert_int_eq(agg_client_hello_decode(t, sizeof(c), &ch),
		    AGG_WIRE_BAD_FLAGS);
	}
	for (i = 44; i < 48; i++) {
		memcpy(t, c, sizeof(c));
		t[i] = 0x80;
		ck_assert_int_eq(agg_client_hello_decode(t, sizeof(c), &ch),
		    AGG_WIRE_BAD_FLAGS);
	}
	for (i = 6; i < 8; i++) {
		memcpy(t, s, sizeof(s));
		t[i] = 1;
		ck_assert_int_eq(agg_server_hello_decode(t, sizeof(s), &sh),
		    AGG_WIRE_BAD_FLAGS);
	}
	for (i = 1; i < 4; i++) {
		memcpy(t, wb, sizeof(wb));
		t[i] = 1;
		ck_assert_int_eq(agg_welcome_decode(t, sizeof(wb), &w),
		    AGG_WIRE_BAD_FLAGS);
	}

	/* Unknown statuses. */
	memcpy(t, s, sizeof(s));
	t[5] = 2;
	ck_assert_int_eq(agg_server_hello_decode(t, sizeof(s), &sh),
	    AGG_WIRE_BAD_FIELD);
	memcpy(t, wb, sizeof(wb));
	t[0] = AGG_WELCOME_DUPLICATE_LINK + 1;
	ck_assert_int_eq(agg_welcome_decode(t, sizeof(wb), &w),
	    AGG_WIRE_BAD_FIELD);
	t[0] = 0xff;
	ck_assert_int_eq(agg_welcome_decode(t, sizeof(wb), &w),
	    AGG_WIRE_BAD_FIELD);
}
END_TEST

/* --- frames --- */

/* OPEN with IPv4, IPv6 and name targets (shortest and longest). */
START_TEST(open_roundtrip)
{
	static const uint8_t v6[16] = { 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0,
	    0, 0, 0, 0, 0, 0, 0, 0x01 };
	struct agg_frame f;
	char longname[256];
	size_t len;

	frame_init(&f, AGG_FRAME_OPEN);
	f.seq = 3;
	f.stream = 5;
	f.code = AGG_OPEN_TCP;
	f.window = 4u << 20;
	f.target.type = AGG_ADDR_IPV4;
	memcpy(f.target.addr.ipv4, "\x0a\x00\x00\x01", 4);
	f.target.port = 8080;
	len = roundtrip(&f, NULL, 0);
	ck_assert_uint_eq(len, AGG_FRAME_HEADER_LEN + 17 + 7);

	f.target.type = AGG_ADDR_IPV6;
	memcpy(f.target.addr.ipv6, v6, 16);
	f.target.port = 65535;
	f.seq = UINT64_MAX;
	f.stream = UINT32_MAX;
	len = roundtrip(&f, NULL, 0);
	ck_assert_uint_eq(len, AGG_FRAME_HEADER_LEN + 17 + 19);

	target_name(&f.target, "a", 1);
	len = roundtrip(&f, NULL, 0);
	ck_assert_uint_eq(len, AGG_FRAME_HEADER_LEN + 17 + 5);

	memset(longname, 'x', 255);
	longname[255] = '\0';
	target_name(&f.target, longname, 443);
	len = roundtrip(&f, NULL, 0);
	ck_assert_uint_eq(len, AGG_FRAME_HEADER_LEN + 276);
}
END_TEST

/* RESULT and RESET, with empty and longest messages. */
START_TEST(result_reset_roundtrip)
{
	struct agg_frame f;
	char msg[256];
	size_t len;

	frame_init(&f, AGG_FRAME_RESULT);
	f.seq = 1;
	f.stream = 2;
	f.code = 0;
	f.window = 1234567;
	len = roundtrip(&f, NULL, 0);
	ck_assert_uint_eq(len, AGG_FRAME_HEADER_LEN + 18);
	f.code = 5;
	frame_message(&f, "connection refused");
	roundtrip(&f, NULL, 0);
	memset(msg, 'm', 255);
	msg[255] = '\0';
	frame_message(&f, msg);
	len = roundtrip(&f, NULL, 0);
	ck_assert_uint_eq(len, AGG_FRAME_HEADER_LEN + 18 + 255);

	frame_init(&f, AGG_FRAME_RESET);
	f.seq = 99;
	f.stream = 7;
	f.code = 1;
	len = roundtrip(&f, NULL, 0);
	ck_assert_uint_eq(len, AGG_FRAME_HEADER_LEN + 22);
	f.value = UINT64_C(1) << 62;
	frame_message(&f, msg);
	len = roundtrip(&f, NULL, 0);
	ck_assert_uint_eq(len, AGG_FRAME_HEADER_LEN + 22 + 255);
}
END_TEST

/* CREDIT for the session (stream 0) and for a stream. */
START_TEST(credit_roundtrip)
{
	struct agg_frame f;

	frame_init(&f, AGG_FRAME_CREDIT);
	f.seq = 0;
	f.stream = 0;
	f.value = 32u << 20;
	ck_assert_uint_eq(roundtrip(&f, NULL, 0), AGG_FRAME_HEADER_LEN + 20);
	f.seq = 12;
	f.stream = 9;
	f.value = UINT64_MAX;
	roundtrip(&f, NULL, 0);
}
END_TEST

/* ACK with 0, 1 and 32 entries. */
START_TEST(ack_roundtrip)
{
	struct agg_frame f;
	size_t i;

	frame_init(&f, AGG_FRAME_ACK);
	f.value = 0;
	ck_assert_uint_eq(roundtrip(&f, NULL, 0), AGG_FRAME_HEADER_LEN + 9);
	f.value = 77;
	f.ack_count = 1;
	f.acks[0].link_id = 3;
	f.acks[0].frames = 76;
	ck_assert_uint_eq(roundtrip(&f, NULL, 0), AGG_FRAME_HEADER_LEN + 21);
	f.ack_count = AGG_MAX_ACK_LINKS;
	for (i = 0; i < AGG_MAX_ACK_LINKS; i++) {
		f.acks[i].link_id = (uint32_t)(0xffffff00u + i);
		f.acks[i].frames = (UINT64_C(1) << 40) + i;
	}
	ck_assert_uint_eq(roundtrip(&f, NULL, 0), AGG_FRAME_HEADER_LEN + 393);
}
END_TEST

/* PING, PONG and CLOSE in both scopes. */
START_TEST(ping_pong_close_roundtrip)
{
	static const uint64_t values[] = { 0, 1, UINT64_C(0x0123456789abcdef),
	    UINT64_MAX };
	struct agg_frame f;
	char msg[256];
	size_t i;

	for (i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		frame_init(&f, AGG_FRAME_PING);
		f.value = values[i];
		ck_assert_uint_eq(roundtrip(&f, NULL, 0), 12);
		f.type = AGG_FRAME_PONG;
		ck_assert_uint_eq(roundtrip(&f, NULL, 0), 12);
	}
	frame_init(&f, AGG_FRAME_CLOSE);
	f.scope = AGG_CLOSE_LINK;
	f.code = 0;
	ck_assert_uint_eq(roundtrip(&f, NULL, 0), AGG_FRAME_HEADER_LEN + 3);
	f.scope = AGG_CLOSE_SESSION;
	f.code = 2;
	frame_message(&f, "timeout");
	ck_assert_uint_eq(roundtrip(&f, NULL, 0), AGG_FRAME_HEADER_LEN + 10);
	memset(msg, 'z', 255);
	msg[255] = '\0';
	frame_message(&f, msg);
	ck_assert_uint_eq(roundtrip(&f, NULL, 0), AGG_FRAME_HEADER_LEN + 258);
}
END_TEST

/* DATA headers with and without FIN; every prefix is short. */
START_TEST(data_header_roundtrip)
{
	uint8_t buf[AGG_FRAME_HEADER_LEN + AGG_DATA_HEADER_LEN];
	struct agg_frame_header h;
	struct guarded g;
	uint64_t seq, offset;
	uint32_t stream;
	size_t n;
	int fin;

	for (fin = 0; fin <= 1; fin++) {
		agg_data_header_encode(UINT64_C(0x1122334455667788), 0x0abc,
		    UINT64_C(1) << 62, (uint16_t)(fin ? 0 : 1400), fin, buf);
		ck_assert_int_eq(agg_frame_header_decode(buf, sizeof(buf), &h),
		    AGG_WIRE_OK);
		ck_assert_uint_eq(h.type, AGG_FRAME_DATA);
		ck_assert_uint_eq(h.flags, fin ? AGG_DATA_FIN : 0);
		ck_assert_uint_eq(h.length,
		    AGG_DATA_HEADER_LEN + (fin ? 0 : 1400));
		guard_copy(&g, buf + AGG_FRAME_HEADER_LEN, AGG_DATA_HEADER_LEN);
		ck_assert_int_eq(agg_data_header_decode(g.data,
		    AGG_DATA_HEADER_LEN, &seq, &stream, &offset),
		    AGG_WIRE_OK);
		guard_free(&g);
		ck_assert_uint_eq(seq, UINT64_C(0x1122334455667788));
		ck_assert_uint_eq(stream, 0x0abc);
		ck_assert_uint_eq(offset, UINT64_C(1) << 62);
		for (n = 0; n < AGG_DATA_HEADER_LEN; n++) {
			guard_copy(&g, buf + AGG_FRAME_HEADER_LEN, n);
			ck_assert_int_eq(agg_data_header_decode(g.data, n,
			    &seq, &stream, &offset), AGG_WIRE_SHORT);
			guard_free(&g);
		}
		for (n = 0; n < AGG_FRAME_HEADER_LEN; n++) {
			guard_copy(&g, buf, n);
			ck_assert_int_eq(agg_frame_header_decode(g.data, n,
			    &h), AGG_WIRE_SHORT);
			guard_free(&g);
		}
	}
	agg_data_header_encode(1, 1, 0, AGG_DATA_MAX_PAYLOAD, 0, buf);
	ck_assert_int_eq(agg_frame_header_decode(buf, sizeof(buf), &h),
	    AGG_WIRE_OK);
	ck_assert_uint_eq(h.length, AGG_FRAME_MAX_BODY);
}
END_TEST

/* The frame vectors, in both directions. */
START_TEST(frame_vectors)
{
	uint8_t buf[AGG_FRAME_HEADER_LEN + AGG_DATA_HEADER_LEN], raw[64];
	struct agg_frame_header h;
	struct agg_frame f, d;
	uint64_t seq, offset;
	uint32_t stream;
	size_t len;

	/* DATA header: seq 5, stream 1, offset 4096, 3 payload bytes, FIN. */
	agg_data_header_encode(5, 1, 4096, 3, 1, buf);
	assert_hex(buf, sizeof(buf), HEX_DATA_HEADER);
	len = unhex(HEX_DATA_HEADER, raw, sizeof(raw));
	ck_assert_int_eq(agg_frame_header_decode(raw, len, &h), AGG_WIRE_OK);
	ck_assert_uint_eq(h.type, AGG_FRAME_DATA);
	ck_assert_uint_eq(h.flags, AGG_DATA_FIN);
	ck_assert_uint_eq(h.length, 23);
	ck_assert_int_eq(agg_data_header_decode(raw + 4, len - 4, &seq,
	    &stream, &offset), AGG_WIRE_OK);
	ck_assert_uint_eq(seq, 5);
	ck_assert_uint_eq(stream, 1);
	ck_assert_uint_eq(offset, 4096);

	/* CREDIT: the session credit a side sends first (seq 0, 32 MiB). */
	frame_init(&f, AGG_FRAME_CREDIT);
	f.value = 32u << 20;
	len = roundtrip(&f, raw, sizeof(raw));
	assert_hex(raw, len, HEX_CREDIT);
	ck_assert_int_eq(decode_hex(HEX_CREDIT, &d), AGG_WIRE_OK);
	assert_frame_eq(&f, &d);

	/* OPEN: seq 1, stream 1, TCP, window 4 MiB, example.com:443. */
	frame_init(&f, AGG_FRAME_OPEN);
	f.seq = 1;
	f.stream = 1;
	f.code = AGG_OPEN_TCP;
	f.window = 4u << 20;
	target_name(&f.target, "example.com", 443);
	len = roundtrip(&f, raw, sizeof(raw));
	assert_hex(raw, len, HEX_OPEN);
	ck_assert_int_eq(decode_hex(HEX_OPEN, &d), AGG_WIRE_OK);
	assert_frame_eq(&f, &d);
	ck_assert_str_eq(d.target.addr.name, "example.com");
	ck_assert_uint_eq(d.target.port, 443);

	/* RESULT: seq 1, stream 1, ok, window 4 MiB, no message. */
	frame_init(&f, AGG_FRAME_RESULT);
	f.seq = 1;
	f.stream = 1;
	f.window = 4u << 20;
	len = roundtrip(&f, raw, sizeof(raw));
	assert_hex(raw, len, HEX_RESULT);
	ck_assert_int_eq(decode_hex(HEX_RESULT, &d), AGG_WIRE_OK);
	assert_frame_eq(&f, &d);
	ck_assert_str_eq(d.message, "");

	/* RESET: seq 7, stream 3, final offset 65536, code 1, "aborted". */
	frame_init(&f, AGG_FRAME_RESET);
	f.seq = 7;
	f.stream = 3;
	f.value = 65536;
	f.code = 1;
	frame_message(&f, "aborted");
	len = roundtrip(&f, raw, sizeof(raw));
	assert_hex(raw, len, HEX_RESET);
	ck_assert_int_eq(decode_hex(HEX_RESET, &d), AGG_WIRE_OK);
	assert_frame_eq(&f, &d);
	ck_assert_str_eq(d.message, "aborted");

	/* ACK: cum 9; link 1 received 5 frames, link 2 received 4. */
	frame_init(&f, AGG_FRAME_ACK);
	f.value = 9;
	f.ack_count = 2;
	f.acks[0].link_id = 1;
	f.acks[0].frames = 5;
	f.acks[1].link_id = 2;
	f.acks[1].frames = 4;
	len = roundtrip(&f, raw, sizeof(raw));
	assert_hex(raw, len, HEX_ACK);
	ck_assert_int_eq(decode_hex(HEX_ACK, &d), AGG_WIRE_OK);
	assert_frame_eq(&f, &d);

	/* PING and PONG with the same value. */
	frame_init(&f, AGG_FRAME_PING);
	f.value = UINT64_C(0x0123456789abcdef);
	len = roundtrip(&f, raw, sizeof(raw));
	assert_hex(raw, len, HEX_PING);
	ck_assert_int_eq(decode_hex(HEX_PING, &d), AGG_WIRE_OK);
	assert_frame_eq(&f, &d);
	f.type = AGG_FRAME_PONG;
	len = roundtrip(&f, raw, sizeof(raw));
	assert_hex(raw, len, HEX_PONG);
	ck_assert_int_eq(decode_hex(HEX_PONG, &d), AGG_WIRE_OK);
	assert_frame_eq(&f, &d);

	/* CLOSE: session scope, code 4 (shutting down). */
	frame_init(&f, AGG_FRAME_CLOSE);
	f.scope = AGG_CLOSE_SESSION;
	f.code = 4;
	frame_message(&f, "shutting down");
	len = roundtrip(&f, raw, sizeof(raw));
	assert_hex(raw, len, HEX_CLOSE);
	ck_assert_int_eq(decode_hex(HEX_CLOSE, &d), AGG_WIRE_OK);
	assert_frame_eq(&f, &d);
	ck_assert_str_eq(d.message, "shutting down");
}
END_TEST

/* Unknown types and flags that the type does not allow. */
START_TEST(header_type_and_flags)
{
	static const uint8_t bad_types[] = { 0x00, 0x0a, 0x10, 0x7f, 0x80,
	    0xff };
	struct agg_frame_header h;
	struct agg_frame f;
	uint8_t buf[16];
	uint8_t type;
	size_t i;

	for (i = 0; i < sizeof(bad_types); i++) {
		buf[0] = bad_types[i];
		buf[1] = 0;
		buf[2] = 0;
		buf[3] = 8;
		memset(buf + 4, 0, 8);
		ck_assert_int_eq(agg_frame_header_decode(buf, 12, &h),
		    AGG_WIRE_BAD_TYPE);
		ck_assert_int_eq(agg_frame_decode(buf, 12, &f),
		    AGG_WIRE_BAD_TYPE);
	}
	/* Every non-DATA type with any flag bit. */
	for (type = AGG_FRAME_OPEN; type <= AGG_FRAME_CLOSE; type++) {
		for (i = 0; i < 8; i++) {
			buf[0] = type;
			buf[1] = (uint8_t)(1u << i);
			buf[2] = 0;
			buf[3] = 24;
			ck_assert_int_eq(agg_frame_header_decode(buf, 4, &h),
			    AGG_WIRE_BAD_FLAGS);
		}
	}
	ck_assert_int_eq(header_hex("01 02 0014"), AGG_WIRE_BAD_FLAGS);
	ck_assert_int_eq(header_hex("01 03 0014"), AGG_WIRE_BAD_FLAGS);
	ck_assert_int_eq(header_hex("01 80 0014"), AGG_WIRE_BAD_FLAGS);
	ck_assert_int_eq(header_hex("01 01 0014"), AGG_WIRE_OK);
	ck_assert_int_eq(header_hex("01 00 0014"), AGG_WIRE_OK);
	/* A DATA frame is not decoded by agg_frame_decode. */
	ck_assert_int_eq(decode_hex(HEX_DATA_HEADER " 616263", &f),
	    AGG_WIRE_BAD_TYPE);
}
END_TEST

/* Length limits of one frame type. */
struct limits {
	uint8_t type;
	uint16_t min, max;
};

/* Each type's length limits: min and max pass, beyond fails. */
START_TEST(header_lengths)
{
	static const struct limits lim[] = {
		{ AGG_FRAME_DATA, 20, 65535 },
		{ AGG_FRAME_OPEN, 22, 276 },
		{ AGG_FRAME_RESULT, 18, 273 },
		{ AGG_FRAME_CREDIT, 20, 20 },
		{ AGG_FRAME_RESET, 22, 277 },
		{ AGG_FRAME_ACK, 9, 393 },
		{ AGG_FRAME_PING, 8, 8 },
		{ AGG_FRAME_PONG, 8, 8 },
		{ AGG_FRAME_CLOSE, 3, 258 },
	};
	struct agg_frame_header h;
	struct agg_frame f;
	uint8_t buf[4];
	size_t i;

	for (i = 0; i < sizeof(lim) / sizeof(lim[0]); i++) {
		buf[0] = lim[i].type;
		buf[1] = 0;
		buf[2] = (uint8_t)(lim[i].min >> 8);
		buf[3] = (uint8_t)lim[i].min;
		ck_assert_int_eq(agg_frame_header_decode(buf, 4, &h),
		    AGG_WIRE_OK);
		ck_assert_uint_eq(h.length, lim[i].min);
		buf[2] = (uint8_t)(lim[i].max >> 8);
		buf[3] = (uint8_t)lim[i].max;
		ck_assert_int_eq(agg_frame_header_decode(buf, 4, &h),
		    AGG_WIRE_OK);
		ck_assert_uint_eq(h.length, lim[i].max);
		buf[2] = (uint8_t)((lim[i].min - 1) >> 8);
		buf[3] = (uint8_t)(lim[i].min - 1);
		ck_assert_int_eq(agg_frame_header_decode(buf, 4, &h),
		    AGG_WIRE_BAD_LENGTH);
		if (lim[i].type != AGG_FRAME_DATA)
			ck_assert_int_eq(agg_frame_decode(buf, 4, &f),
			    AGG_WIRE_BAD_LENGTH);
		buf[2] = 0;
		buf[3] = 0;
		ck_assert_int_eq(agg_frame_header_decode(buf, 4, &h),
		    AGG_WIRE_BAD_LENGTH);
		if (lim[i].max == 65535)
			continue;
		buf[2] = (uint8_t)((lim[i].max + 1) >> 8);
		buf[3] = (uint8_t)(lim[i].max + 1);
		ck_assert_int_eq(agg_frame_header_decode(buf, 4, &h),
		    AGG_WIRE_BAD_LENGTH);
		ck_assert_int_eq(agg_frame_decode(buf, 4, &f),
		    AGG_WIRE_BAD_LENGTH);
		buf[2] = 0xff;
		buf[3] = 0xff;
		ck_assert_int_eq(agg_frame_header_decode(buf, 4, &h),
		    AGG_WIRE_BAD_LENGTH);
	}
}
END_TEST

/* ACK counts, message lengths and CLOSE scopes that do not fit. */
START_TEST(frame_bad_bodies)
{
	struct agg_frame f;
	uint8_t buf[600];
	size_t len;

	/* Frame longer than its header says. */
	len = unhex(HEX_PING " 00", buf, sizeof(buf));
	ck_assert_int_eq(agg_frame_decode(buf, len, &f), AGG_WIRE_BAD_LENGTH);

	/* ACK: count above 32 (length fits the maximum), or inconsistent. */
	memset(buf, 0, sizeof(buf));
	buf[0] = AGG_FRAME_ACK;
	buf[2] = 393 >> 8;
	buf[3] = 393 & 0xff;
	buf[4 + 8] = 33;
	ck_assert_int_eq(agg_frame_decode(buf, 4 + 393, &f),
	    AGG_WIRE_BAD_LENGTH);
	buf[4 + 8] = 255;
	ck_assert_int_eq(agg_frame_decode(buf, 4 + 393, &f),
	    AGG_WIRE_BAD_LENGTH);
	buf[4 + 8] = 31;
	ck_assert_int_eq(agg_frame_decode(buf, 4 + 393, &f),
	    AGG_WIRE_BAD_LENGTH);
	buf[4 + 8] = 32;
	ck_assert_int_eq(agg_frame_decode(buf, 4 + 393, &f), AGG_WIRE_OK);
	ck_assert_int_eq(decode_hex("06 00 0015 0000000000000001 02 "
	    "00000001 0000000000000001", &f), AGG_WIRE_BAD_LENGTH);
	ck_assert_int_eq(decode_hex("06 00 0021 0000000000000001 01 "
	    "00000001 0000000000000001 00000002 0000000000000001", &f),
	    AGG_WIRE_BAD_LENGTH);
	ck_assert_int_eq(decode_hex("06 00 000a 0000000000000001 00 00", &f),
	    AGG_WIRE_BAD_LENGTH);
	ck_assert_int_eq(decode_hex("06 00 0009 0000000000000001 01", &f),
	    AGG_WIRE_BAD_LENGTH);

	/* Message length byte that disagrees with the frame length. */
	ck_assert_int_eq(decode_hex("03 00 0014 0000000000000001 00000001 "
	    "01 00000000 05 6162", &f), AGG_WIRE_BAD_LENGTH);
	ck_assert_int_eq(decode_hex("03 00 0014 0000000000000001 00000001 "
	    "01 00000000 01 6162", &f), AGG_WIRE_BAD_LENGTH);
	ck_assert_int_eq(decode_hex("05 00 0016 0000000000000001 00000001 "
	    "0000000000000000 01 01", &f), AGG_WIRE_BAD_LENGTH);
	ck_assert_int_eq(decode_hex("05 00 0018 0000000000000001 00000001 "
	    "0000000000000000 01 00 4142", &f), AGG_WIRE_BAD_LENGTH);
	ck_assert_int_eq(decode_hex("09 00 0003 00 00 ff", &f),
	    AGG_WIRE_BAD_LENGTH);
	ck_assert_int_eq(decode_hex("09 00 0005 00 00 03 4142", &f),
	    AGG_WIRE_BAD_LENGTH);
	ck_assert_int_eq(decode_hex("09 00 0005 00 00 01 4142", &f),
	    AGG_WIRE_BAD_LENGTH);
	/* A message may contain any byte; its length is what counts. */
	ck_assert_int_eq(decode_hex("09 00 0005 00 00 02 0041", &f),
	    AGG_WIRE_OK);
	ck_assert_uint_eq(f.message_len, 2);
	ck_assert_uint_eq((uint8_t)f.message[1], 0x41);

	/* CLOSE scope other than 0 and 1. */
	ck_assert_int_eq(decode_hex("09 00 0003 02 00 00", &f),
	    AGG_WIRE_BAD_FIELD);
	ck_assert_int_eq(decode_hex("09 00 0003 ff 00 00", &f),
	    AGG_WIRE_BAD_FIELD);
	ck_assert_int_eq(decode_hex("09 00 0003 00 ff 00", &f), AGG_WIRE_OK);
	ck_assert_uint_eq(f.scope, AGG_CLOSE_LINK);
	ck_assert_uint_eq(f.code, 0xff);
}
END_TEST

/* OPEN with bad kinds, address types, names and lengths. */
START_TEST(open_bad_bodies)
{
	struct agg_frame f;

	/* Reference: a good IPv4 OPEN. */
	ck_assert_int_eq(decode_hex("02 00 0018 0000000000000001 00000001 "
	    "01 00001000 01 7f000001 0050", &f), AGG_WIRE_OK);
	ck_assert_uint_eq(f.target.type, AGG_ADDR_IPV4);
	ck_assert_uint_eq(f.target.port, 80);
	/* Unknown address types. */
	ck_assert_int_eq(decode_hex("02 00 0018 0000000000000001 00000001 "
	    "01 00001000 00 7f000001 0050", &f), AGG_WIRE_BAD_FIELD);
	ck_assert_int_eq(decode_hex("02 00 0018 0000000000000001 00000001 "
	    "01 00001000 02 7f000001 0050", &f), AGG_WIRE_BAD_FIELD);
	ck_assert_int_eq(decode_hex("02 00 0018 0000000000000001 00000001 "
	    "01 00001000 05 7f000001 0050", &f), AGG_WIRE_BAD_FIELD);
	ck_assert_int_eq(decode_hex("02 00 0018 0000000000000001 00000001 "
	    "01 00001000 ff 7f000001 0050", &f), AGG_WIRE_BAD_FIELD);
	/* Unknown kinds. */
	ck_assert_int_eq(decode_hex("02 00 0018 0000000000000001 00000001 "
	    "00 00001000 01 7f000001 0050", &f), AGG_WIRE_BAD_FIELD);
	ck_assert_int_eq(decode_hex("02 00 0018 0000000000000001 00000001 "
	    "02 00001000 01 7f000001 0050", &f), AGG_WIRE_BAD_FIELD);
	/* Stream 0. */
	ck_assert_int_eq(decode_hex("02 00 0018 0000000000000001 00000000 "
	    "01 00001000 01 7f000001 0050", &f), AGG_WIRE_BAD_FIELD);
	/* Bytes after the target. */
	ck_assert_int_eq(decode_hex("02 00 0019 0000000000000001 00000001 "
	    "01 00001000 01 7f000001 0050 00", &f), AGG_WIRE_BAD_LENGTH);
	/* IPv6 target cut short by the frame length. */
	ck_assert_int_eq(decode_hex("02 00 0018 0000000000000001 00000001 "
	    "01 00001000 04 7f000001 0050", &f), AGG_WIRE_BAD_FIELD);
	/* Names: zero length, NUL inside, length past the frame, good. */
	ck_assert_int_eq(decode_hex("02 00 0018 0000000000000001 00000001 "
	    "01 00001000 03 00 0050 000000", &f), AGG_WIRE_BAD_FIELD);
	ck_assert_int_eq(decode_hex("02 00 0018 0000000000000001 00000001 "
	    "01 00001000 03 03 610062 0050", &f), AGG_WIRE_BAD_FIELD);
	ck_assert_int_eq(decode_hex("02 00 0018 0000000000000001 00000001 "
	    "01 00001000 03 01 00 0050 0000", &f), AGG_WIRE_BAD_FIELD);
	ck_assert_int_eq(decode_hex("02 00 0018 0000000000000001 00000001 "
	    "01 00001000 03 04 616263 0050", &f), AGG_WIRE_BAD_FIELD);
	ck_assert_int_eq(decode_hex("02 00 0018 0000000000000001 00000001 "
	    "01 00001000 03 02 6162 0050 00", &f), AGG_WIRE_BAD_LENGTH);
	ck_assert_int_eq(decode_hex("02 00 0018 0000000000000001 00000001 "
	    "01 00001000 03 03 616263 0050", &f), AGG_WIRE_OK);
	ck_assert_str_eq(f.target.addr.name, "abc");
	ck_assert_uint_eq(f.target.name_len, 3);
}
END_TEST

/* Stream 0 outside CREDIT, and offsets above 2^62. */
START_TEST(stream_zero)
{
	struct agg_frame f;
	uint64_t seq, offset;
	uint32_t stream;
	uint8_t buf[AGG_FRAME_HEADER_LEN + AGG_DATA_HEADER_LEN];

	ck_assert_int_eq(decode_hex("03 00 0012 0000000000000001 00000000 "
	    "00 00400000 00", &f), AGG_WIRE_BAD_FIELD);
	ck_assert_int_eq(decode_hex("05 00 0016 0000000000000001 00000000 "
	    "0000000000000000 01 00", &f), AGG_WIRE_BAD_FIELD);
	/* RESET final offsets above 2^62 are refused like DATA offsets. */
	ck_assert_int_eq(decode_hex("05 00 0016 0000000000000001 00000001 "
	    "4000000000000001 01 00", &f), AGG_WIRE_BAD_FIELD);
	ck_assert_int_eq(decode_hex("05 00 0016 0000000000000001 00000001 "
	    "4000000000000000 01 00", &f), AGG_WIRE_OK);
	ck_assert_uint_eq(f.value, UINT64_C(1) << 62);
	ck_assert_int_eq(decode_hex("04 00 0014 0000000000000001 00000000 "
	    "0000000000000001", &f), AGG_WIRE_OK);
	ck_assert_uint_eq(f.stream, 0);
	ck_assert_uint_eq(f.value, 1);
	agg_data_header_encode(1, 0, 0, 0, 1, buf);
	ck_assert_int_eq(agg_data_header_decode(buf + 4, AGG_DATA_HEADER_LEN,
	    &seq, &stream, &offset), AGG_WIRE_BAD_FIELD);
	/* Offsets above 2^62 are refused so offset + length cannot wrap. */
	agg_data_header_encode(1, 1, (UINT64_C(1) << 62) + 1, 0, 1, buf);
	ck_assert_int_eq(agg_data_header_decode(buf + 4, AGG_DATA_HEADER_LEN,
	    &seq, &stream, &offset), AGG_WIRE_BAD_FIELD);
	agg_data_header_encode(1, 1, UINT64_MAX, 0, 1, buf);
	ck_assert_int_eq(agg_data_header_decode(buf + 4, AGG_DATA_HEADER_LEN,
	    &seq, &stream, &offset), AGG_WIRE_BAD_FIELD);
}
END_TEST

/* The encoder refuses invalid frames and short buffers. */
START_TEST(encode_refuses)
{
	struct agg_frame f;
	uint8_t buf[AGG_FRAME_HEADER_LEN + 512];

	frame_init(&f, AGG_FRAME_DATA);
	f.stream = 1;
	ck_assert_uint_eq(agg_frame_encode(&f, buf, sizeof(buf)), 0);
	frame_init(&f, 0x0a);
	ck_assert_uint_eq(agg_frame_encode(&f, buf, sizeof(buf)), 0);
	frame_init(&f, 0);
	ck_assert_uint_eq(agg_frame_encode(&f, buf, sizeof(buf)), 0);
	frame_init(&f, AGG_FRAME_ACK);
	f.ack_count = AGG_MAX_ACK_LINKS + 1;
	ck_assert_uint_eq(agg_frame_encode(&f, buf, sizeof(buf)), 0);
	frame_init(&f, AGG_FRAME_OPEN);
	f.stream = 1;
	f.code = AGG_OPEN_TCP;
	f.target.type = 2;
	ck_assert_uint_eq(agg_frame_encode(&f, buf, sizeof(buf)), 0);
	f.target.type = AGG_ADDR_NAME;
	f.target.name_len = 0;
	ck_assert_uint_eq(agg_frame_encode(&f, buf, sizeof(buf)), 0);
	/* Capacity: exactly enough works, one byte less does not. */
	frame_init(&f, AGG_FRAME_PING);
	ck_assert_uint_eq(agg_frame_encode(&f, buf, 12), 12);
	ck_assert_uint_eq(agg_frame_encode(&f, buf, 11), 0);
	ck_assert_uint_eq(agg_frame_encode(&f, buf, 0), 0);
}
END_TEST

/* agg_frame_set_message copies, truncates and accepts NULL. */
START_TEST(set_message)
{
	struct agg_frame f;
	char text[400];

	frame_init(&f, AGG_FRAME_CLOSE);
	ck_assert_uint_eq(agg_frame_set_message(&f, "bye"), 3);
	ck_assert_str_eq(f.message, "bye");
	memset(text, 'q', sizeof(text) - 1);
	text[sizeof(text) - 1] = '\0';
	f.message_len = agg_frame_set_message(&f, text);
	ck_assert_uint_eq(f.message_len, AGG_MAX_MESSAGE);
	ck_assert_uint_eq(strlen(f.message), AGG_MAX_MESSAGE);
	ck_assert_uint_eq(roundtrip(&f, NULL, 0), AGG_FRAME_HEADER_LEN + 258);
	ck_assert_uint_eq(agg_frame_set_message(&f, NULL), 0);
	ck_assert_str_eq(f.message, "");
}
END_TEST

/* Reliability, type names and error texts. */
START_TEST(names_and_errors)
{
	uint8_t t;

	ck_assert(agg_frame_is_reliable(AGG_FRAME_DATA));
	ck_assert(agg_frame_is_reliable(AGG_FRAME_OPEN));
	ck_assert(agg_frame_is_reliable(AGG_FRAME_RESULT));
	ck_assert(agg_frame_is_reliable(AGG_FRAME_CREDIT));
	ck_assert(agg_frame_is_reliable(AGG_FRAME_RESET));
	ck_assert(!agg_frame_is_reliable(AGG_FRAME_ACK));
	ck_assert(!agg_frame_is_reliable(AGG_FRAME_PING));
	ck_assert(!agg_frame_is_reliable(AGG_FRAME_PONG));
	ck_assert(!agg_frame_is_reliable(AGG_FRAME_CLOSE));
	ck_assert(!agg_frame_is_reliable(0));
	ck_assert_str_eq(agg_frame_type_name(AGG_FRAME_DATA), "DATA");
	ck_assert_str_eq(agg_frame_type_name(AGG_FRAME_ACK), "ACK");
	ck_assert_str_eq(agg_frame_type_name(AGG_FRAME_CLOSE), "CLOSE");
	ck_assert_str_eq(agg_frame_type_name(0x0a), "unknown");
	for (t = AGG_FRAME_DATA; t <= AGG_FRAME_CLOSE; t++)
		ck_assert_str_ne(agg_frame_type_name(t), "unknown");
	ck_assert_str_eq(agg_wire_strerror(AGG_WIRE_OK), "ok");
	ck_assert_str_eq(agg_wire_strerror(AGG_WIRE_BAD_MAGIC), "bad magic");
	ck_assert_str_eq(agg_wire_strerror(-99), "unknown error");
}
END_TEST

/* --- authentication --- */

/* The two hello messages of the vectors, encoded. */
static void vector_hellos(uint8_t ch[AGG_CLIENT_HELLO_LEN],
    uint8_t sh[AGG_SERVER_HELLO_LEN])
{
	struct agg_client_hello c;
	struct agg_server_hello s;

	vector_client_hello(&c);
	agg_client_hello_encode(&c, ch);
	vector_server_hello(&s);
	agg_server_hello_encode(&s, sh);
}

/* AUTH and proofs equal the independently computed vectors. */
START_TEST(auth_vectors)
{
	uint8_t ch[AGG_CLIENT_HELLO_LEN], sh[AGG_SERVER_HELLO_LEN];
	uint8_t mac[AGG_MAC_LEN], proof[AGG_MAC_LEN], want[AGG_MAC_LEN];
	const uint8_t *key = (const uint8_t *)test_key;
	size_t key_len = strlen(test_key);

	vector_hellos(ch, sh);
	ck_assert_int_eq(agg_auth_client_mac(key, key_len, ch, sh, mac), 0);
	assert_hex(mac, sizeof(mac), HEX_AUTH);
	ck_assert_int_eq(agg_auth_server_proof(key, key_len, ch, sh, mac,
	    AGG_WELCOME_OK, proof), 0);
	assert_hex(proof, sizeof(proof), HEX_PROOF_OK);
	ck_assert_int_eq(agg_auth_server_proof(key, key_len, ch, sh, mac,
	    AGG_WELCOME_AUTH_FAILED, proof), 0);
	assert_hex(proof, sizeof(proof), HEX_PROOF_AUTH_FAILED);

	/* Insecure mode: the empty key. */
	ck_assert_int_eq(agg_auth_client_mac((const uint8_t *)"", 0, ch, sh,
	    mac), 0);
	assert_hex(mac, sizeof(mac), HEX_AUTH_EMPTY_KEY);
	ck_assert_int_eq(agg_auth_server_proof(NULL, 0, ch, sh, mac,
	    AGG_WELCOME_OK, proof), 0);
	assert_hex(proof, sizeof(proof), HEX_PROOF_OK_EMPTY_KEY);
	ck_assert_int_eq(agg_auth_client_mac(NULL, 0, ch, sh, proof), 0);
	unhex(HEX_AUTH_EMPTY_KEY, want, sizeof(want));
	ck_assert(agg_auth_equal(proof, want));
}
END_TEST

/* Wrong keys and changed transcripts give different MACs. */
START_TEST(auth_mismatches)
{
	uint8_t ch[AGG_CLIENT_HELLO_LEN], sh[AGG_SERVER_HELLO_LEN];
	uint8_t good[AGG_MAC_LEN], mac[AGG_MAC_LEN], p0[AGG_MAC_LEN];
	uint8_t p1[AGG_MAC_LEN];
	const uint8_t *key = (const uint8_t *)test_key;
	size_t key_len = strlen(test_key), i;

	vector_hellos(ch, sh);
	ck_assert_int_eq(agg_auth_client_mac(key, key_len, ch, sh, good), 0);
	ck_assert(agg_auth_equal(good, good));

	/* Wrong key (one byte shorter, one byte changed). */
	ck_assert_int_eq(agg_auth_client_mac(key, key_len - 1, ch, sh, mac),
	    0);
	ck_assert(!agg_auth_equal(good, mac));
	ck_assert_int_eq(agg_auth_client_mac((const uint8_t *)
	    "correct horse battery staplf", key_len, ch, sh, mac), 0);
	ck_assert(!agg_auth_equal(good, mac));

	/* A fresh server nonce changes the MAC: a recorded AUTH is useless. */
	sh[AGG_SERVER_HELLO_LEN - 1] ^= 1;
	ck_assert_int_eq(agg_auth_client_mac(key, key_len, ch, sh, mac), 0);
	ck_assert(!agg_auth_equal(good, mac));
	sh[AGG_SERVER_HELLO_LEN - 1] ^= 1;
	/* So does any change to the client hello (here the link id). */
	ch[27] ^= 1;
	ck_assert_int_eq(agg_auth_client_mac(key, key_len, ch, sh, mac), 0);
	ck_assert(!agg_auth_equal(good, mac));
	ch[27] ^= 1;

	/* The proof depends on the status and differs from the AUTH. */
	ck_assert_int_eq(agg_auth_server_proof(key, key_len, ch, sh, good, 0,
	    p0), 0);
	ck_assert_int_eq(agg_auth_server_proof(key, key_len, ch, sh, good, 1,
	    p1), 0);
	ck_assert(!agg_auth_equal(p0, p1));
	ck_assert(!agg_auth_equal(p0, good));

	/* agg_auth_equal notices a difference in any single byte. */
	for (i = 0; i < AGG_MAC_LEN; i++) {
		memcpy(mac, good, sizeof(mac));
		mac[i] ^= 0x80;
		ck_assert(!agg_auth_equal(good, mac));
		ck_assert(!agg_auth_equal(mac, good));
	}
}
END_TEST

/* The random source gives different nonzero bytes. */
START_TEST(random_bytes)
{
	uint8_t a[32], b[32], zero[32];

	memset(zero, 0, sizeof(zero));
	ck_assert_int_eq(agg_random_bytes(a, sizeof(a)), 0);
	ck_assert_int_eq(agg_random_bytes(b, sizeof(b)), 0);
	ck_assert_mem_ne(a, b, sizeof(a));
	ck_assert_mem_ne(a, zero, sizeof(a));
}
END_TEST

/* --- targets --- */

/* Targets that parse, and how they format. */
START_TEST(target_parse_good)
{
	static const uint8_t v6[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	    0, 0, 0, 1 };
	struct agg_target t;
	char out[300], longname[300];

	ck_assert_int_eq(agg_target_parse("host:80", &t), 0);
	ck_assert_uint_eq(t.type, AGG_ADDR_NAME);
	ck_assert_uint_eq(t.name_len, 4);
	ck_assert_str_eq(t.addr.name, "host");
	ck_assert_uint_eq(t.port, 80);
	agg_target_format(&t, out, sizeof(out));
	ck_assert_str_eq(out, "host:80");

	ck_assert_int_eq(agg_target_parse("1.2.3.4:443", &t), 0);
	ck_assert_uint_eq(t.type, AGG_ADDR_IPV4);
	ck_assert_mem_eq(t.addr.ipv4, "\x01\x02\x03\x04", 4);
	ck_assert_uint_eq(t.port, 443);
	agg_target_format(&t, out, sizeof(out));
	ck_assert_str_eq(out, "1.2.3.4:443");

	ck_assert_int_eq(agg_target_parse("[::1]:22", &t), 0);
	ck_assert_uint_eq(t.type, AGG_ADDR_IPV6);
	ck_assert_mem_eq(t.addr.ipv6, v6, 16);
	ck_assert_uint_eq(t.port, 22);
	agg_target_format(&t, out, sizeof(out));
	ck_assert_str_eq(out, "[::1]:22");

	ck_assert_int_eq(agg_target_parse("[2001:db8::5]:65535", &t), 0);
	ck_assert_uint_eq(t.type, AGG_ADDR_IPV6);
	ck_assert_uint_eq(t.port, 65535);
	agg_target_format(&t, out, sizeof(out));
	ck_assert_str_eq(out, "[2001:db8::5]:65535");

	memset(longname, 'n', 255);
	strcpy(longname + 255, ":1");
	ck_assert_int_eq(agg_target_parse(longname, &t), 0);
	ck_assert_uint_eq(t.name_len, 255);
	ck_assert_uint_eq(strlen(t.addr.name), 255);

	/* Formatting into a small buffer truncates and terminates. */
	ck_assert_int_eq(agg_target_parse("example.com:443", &t), 0);
	memset(out, 'X', sizeof(out));
	agg_target_format(&t, out, 5);
	ck_assert_str_eq(out, "exam");
}
END_TEST

/* Targets that do not parse. */
START_TEST(target_parse_bad)
{
	static const char *const bad[] = { "host", "host:", "host:0",
	    "host:65536", "[::1]22", ":80", "a:b:80", "", ":", "[::1]",
	    "[::1]:", "[]:80", "[host]:80", "::1:80", "host:-1", "host:+80",
	    "host: 80", "host:80 ", "host:8x", "host:99999999999999999999",
	    "[::1:80" };
	struct agg_target t;
	char longname[300];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(agg_target_parse(bad[i], &t) == -1,
		    "\"%s\" was accepted", bad[i]);
	memset(longname, 'n', 256);
	strcpy(longname + 256, ":1");
	ck_assert_int_eq(agg_target_parse(longname, &t), -1);
}
END_TEST

/* The suite of all tests above. */
static Suite *wire_suite(void)
{
	Suite *s = suite_create("wire");
	TCase *tc;

	tc = tcase_create("handshake");
	tcase_add_test(tc, client_hello_roundtrip);
	tcase_add_test(tc, server_hello_roundtrip);
	tcase_add_test(tc, welcome_roundtrip);
	tcase_add_test(tc, handshake_vectors);
	tcase_add_test(tc, handshake_errors);
	suite_add_tcase(s, tc);

	tc = tcase_create("frames");
	tcase_add_test(tc, open_roundtrip);
	tcase_add_test(tc, result_reset_roundtrip);
	tcase_add_test(tc, credit_roundtrip);
	tcase_add_test(tc, ack_roundtrip);
	tcase_add_test(tc, ping_pong_close_roundtrip);
	tcase_add_test(tc, data_header_roundtrip);
	tcase_add_test(tc, frame_vectors);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_test(tc, header_type_and_flags);
	tcase_add_test(tc, header_lengths);
	tcase_add_test(tc, frame_bad_bodies);
	tcase_add_test(tc, open_bad_bodies);
	tcase_add_test(tc, stream_zero);
	tcase_add_test(tc, encode_refuses);
	tcase_add_test(tc, set_message);
	tcase_add_test(tc, names_and_errors);
	suite_add_tcase(s, tc);

	tc = tcase_create("auth");
	tcase_add_test(tc, auth_vectors);
	tcase_add_test(tc, auth_mismatches);
	tcase_add_test(tc, random_bytes);
	suite_add_tcase(s, tc);

	tc = tcase_create("target");
	tcase_add_test(tc, target_parse_good);
	tcase_add_test(tc, target_parse_bad);
	suite_add_tcase(s, tc);
	return s;
}

/* Runs the suite; nonzero exit status on any failure. */
int main(void)
{
	SRunner *sr = srunner_create(wire_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
