/*
 * fuzz_wire.c: libFuzzer entry point for the wire decoders and target
 * parsing. Whatever decodes must re-encode to the same bytes and decode
 * again to the same fields; any difference aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agg/target.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts unless cond holds (kept under NDEBUG, unlike assert). */
static void check(int cond)
{
	if (!cond)
		abort();
}

/* Whether two targets are the same address and port. */
static int target_eq(const struct agg_target *a, const struct agg_target *b)
{
	if (a->type != b->type || a->port != b->port)
		return 0;
	switch (a->type) {
	case AGG_ADDR_IPV4:
		return memcmp(a->addr.ipv4, b->addr.ipv4, 4) == 0;
	case AGG_ADDR_IPV6:
		return memcmp(a->addr.ipv6, b->addr.ipv6, 16) == 0;
	case AGG_ADDR_NAME:
		return a->name_len == b->name_len &&
		    memcmp(a->addr.name, b->addr.name, a->name_len) == 0 &&
		    a->addr.name[a->name_len] == '\0';
	default:
		return 0;
	}
}

/* Whether two decoded frames carry the same fields for their type. */
static int frame_eq(const struct agg_frame *a, const struct agg_frame *b)
{
	size_t i;

	if (a->type != b->type || a->flags != b->flags || a->seq != b->seq ||
	    a->stream != b->stream || a->value != b->value ||
	    a->code != b->code || a->scope != b->scope ||
	    a->window != b->window || a->message_len != b->message_len ||
	    a->ack_count != b->ack_count)
		return 0;
	if (memcmp(a->message, b->message, a->message_len) != 0 ||
	    a->message[a->message_len] != '\0' ||
	    b->message[b->message_len] != '\0')
		return 0;
	for (i = 0; i < a->ack_count; i++)
		if (a->acks[i].link_id != b->acks[i].link_id ||
		    a->acks[i].frames != b->acks[i].frames)
			return 0;
	if (a->type == AGG_FRAME_OPEN && !target_eq(&a->target, &b->target))
		return 0;
	return 1;
}

/* Frame header, whole non-DATA frames and DATA headers. */
static void fuzz_frames(const uint8_t *data, size_t size)
{
	uint8_t out[AGG_FRAME_HEADER_LEN + 512];
	uint8_t dh[AGG_FRAME_HEADER_LEN + AGG_DATA_HEADER_LEN];
	struct agg_frame_header h;
	struct agg_frame f, g;
	uint64_t seq, offset;
	uint32_t stream;
	size_t len;
	int r;

	r = agg_frame_header_decode(data, size, &h);
	check(r <= AGG_WIRE_SHORT && r >= AGG_WIRE_BAD_FIELD);
	check((r == AGG_WIRE_SHORT) == (size < AGG_FRAME_HEADER_LEN));

	r = agg_frame_decode(data, size, &f);
	check(r <= AGG_WIRE_SHORT && r >= AGG_WIRE_BAD_FIELD);
	if (r == AGG_WIRE_OK) {
		check(f.type != AGG_FRAME_DATA && f.flags == 0);
		check(f.ack_count <= AGG_MAX_ACK_LINKS);
		len = agg_frame_encode(&f, out, sizeof(out));
		check(len == size && memcmp(out, data, size) == 0);
		check(agg_frame_decode(out, len, &g) == AGG_WIRE_OK);
		check(frame_eq(&f, &g));
	}

	if (size >= AGG_FRAME_HEADER_LEN &&
	    agg_frame_header_decode(data, size, &h) == AGG_WIRE_OK &&
	    h.type == AGG_FRAME_DATA) {
		r = agg_data_header_decode(data + AGG_FRAME_HEADER_LEN,
		    size - AGG_FRAME_HEADER_LEN, &seq, &stream, &offset);
		check((r == AGG_WIRE_SHORT) == (size < sizeof(dh)));
		if (r == AGG_WIRE_OK) {
			check(stream != 0);
			agg_data_header_encode(seq, stream, offset,
			    (uint16_t)(h.length - AGG_DATA_HEADER_LEN),
			    h.flags & AGG_DATA_FIN, dh);
			check(memcmp(dh, data, sizeof(dh)) == 0);
		}
	}
	/* The DATA header decoder on its own, at the start of the input. */
	r = agg_data_header_decode(data, size, &seq, &stream, &offset);
	check((r == AGG_WIRE_SHORT) == (size < AGG_DATA_HEADER_LEN));
}

/* The three handshake messages. */
static void fuzz_handshake(const uint8_t *data, size_t size)
{
	uint8_t out[AGG_CLIENT_HELLO_LEN];
	struct agg_client_hello ch;
	struct agg_server_hello sh;
	struct agg_welcome w;

	if (agg_client_hello_decode(data, size, &ch) == AGG_WIRE_OK) {
		check(size >= AGG_CLIENT_HELLO_LEN);
		check(ch.version_min >= 1 && ch.version_min <= ch.version_max);
		agg_client_hello_encode(&ch, out);
		check(memcmp(out, data, AGG_CLIENT_HELLO_LEN) == 0);
	}
	if (agg_server_hello_decode(data, size, &sh) == AGG_WIRE_OK) {
		check(size >= AGG_SERVER_HELLO_LEN);
		agg_server_hello_encode(&sh, out);
		check(memcmp(out, data, AGG_SERVER_HELLO_LEN) == 0);
	}
	if (agg_welcome_decode(data, size, &w) == AGG_WIRE_OK) {
		check(size >= AGG_WELCOME_LEN);
		check(w.status <= AGG_WELCOME_DUPLICATE_LINK);
		agg_welcome_encode(&w, out);
		check(memcmp(out, data, AGG_WELCOME_LEN) == 0);
	}
}

/* Target text: a parsed target formats and parses back to itself, and
 * goes through an OPEN frame unchanged. */
static void fuzz_target(const uint8_t *data, size_t size)
{
	uint8_t out[AGG_FRAME_HEADER_LEN + 512];
	struct agg_target t, u;
	struct agg_frame f, g;
	char text[300];
	char *copy;
	size_t len;

	copy = malloc(size + 1);
	if (copy == NULL)
		return;
	memcpy(copy, data, size);
	copy[size] = '\0';
	if (agg_target_parse(copy, &t) == 0) {
		check(t.port != 0);
		check(t.type != AGG_ADDR_NAME || (t.name_len > 0 &&
		    strlen(t.addr.name) == t.name_len));
		agg_target_format(&t, text, sizeof(text));
		check(agg_target_parse(text, &u) == 0 && target_eq(&t, &u));

		memset(&f, 0, sizeof(f));
		f.type = AGG_FRAME_OPEN;
		f.seq = 1;
		f.stream = 1;
		f.code = AGG_OPEN_TCP;
		f.target = t;
		len = agg_frame_encode(&f, out, sizeof(out));
		check(len == AGG_FRAME_HEADER_LEN + 17 +
		    agg_target_wire_len(&t));
		check(agg_frame_decode(out, len, &g) == AGG_WIRE_OK);
		check(target_eq(&t, &g.target));
	}
	free(copy);
}

/* libFuzzer entry point: one input through every decoder. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_frames(data, size);
	fuzz_handshake(data, size);
	fuzz_target(data, size);
	return 0;
}
