/*
 * wire.c: agg's wire format codec. See PROTOCOL.md for the layout.
 */
#include "wire.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t client_magic[4] = { 'A', 'G', 'G', 'C' };
static const uint8_t server_magic[4] = { 'A', 'G', 'G', 'S' };

/* Big-endian store helpers. */
static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)(v >> 32));
	put32(p + 4, (uint32_t)v);
}

/* Big-endian load helpers. */
static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
	    ((uint32_t)p[2] << 8) | p[3];
}

static uint64_t get64(const uint8_t *p)
{
	return ((uint64_t)get32(p) << 32) | get32(p + 4);
}

/* Whether frames of this type carry a sequence number and are acked. */
int agg_frame_is_reliable(uint8_t type)
{
	switch (type) {
	case AGG_FRAME_DATA:
	case AGG_FRAME_OPEN:
	case AGG_FRAME_RESULT:
	case AGG_FRAME_CREDIT:
	case AGG_FRAME_RESET:
		return 1;
	default:
		return 0;
	}
}

/* Name of a frame type for logs. */
const char *agg_frame_type_name(uint8_t type)
{
	switch (type) {
	case AGG_FRAME_DATA: return "DATA";
	case AGG_FRAME_OPEN: return "OPEN";
	case AGG_FRAME_RESULT: return "RESULT";
	case AGG_FRAME_CREDIT: return "CREDIT";
	case AGG_FRAME_RESET: return "RESET";
	case AGG_FRAME_ACK: return "ACK";
	case AGG_FRAME_PING: return "PING";
	case AGG_FRAME_PONG: return "PONG";
	case AGG_FRAME_CLOSE: return "CLOSE";
	default: return "unknown";
	}
}

/* Text of a decoder result. */
const char *agg_wire_strerror(int result)
{
	switch (result) {
	case AGG_WIRE_OK: return "ok";
	case AGG_WIRE_SHORT: return "truncated input";
	case AGG_WIRE_BAD_MAGIC: return "bad magic";
	case AGG_WIRE_BAD_TYPE: return "unknown frame type";
	case AGG_WIRE_BAD_LENGTH: return "bad frame length";
	case AGG_WIRE_BAD_FLAGS: return "bad frame flags";
	case AGG_WIRE_BAD_FIELD: return "bad field value";
	default: return "unknown error";
	}
}

/* Encodes CLIENT_HELLO. */
void agg_client_hello_encode(const struct agg_client_hello *h,
    uint8_t out[AGG_CLIENT_HELLO_LEN])
{
	memcpy(out, client_magic, 4);
	out[4] = h->version_min;
	out[5] = h->version_max;
	put16(out + 6, h->flags);
	memcpy(out + 8, h->session_id, AGG_SESSION_ID_LEN);
	put32(out + 24, h->link_id);
	memcpy(out + 28, h->nonce, AGG_CLIENT_NONCE_LEN);
	put32(out + 44, 0);
}

/* Decodes CLIENT_HELLO. */
int agg_client_hello_decode(const uint8_t *buf, size_t len,
    struct agg_client_hello *h)
{
	if (len >= 4 && memcmp(buf, client_magic, 4) != 0)
		return AGG_WIRE_BAD_MAGIC;
	if (len < AGG_CLIENT_HELLO_LEN)
		return AGG_WIRE_SHORT;
	h->version_min = buf[4];
	h->version_max = buf[5];
	h->flags = get16(buf + 6);
	memcpy(h->session_id, buf + 8, AGG_SESSION_ID_LEN);
	h->link_id = get32(buf + 24);
	memcpy(h->nonce, buf + 28, AGG_CLIENT_NONCE_LEN);
	if (h->version_min > h->version_max || h->version_min == 0)
		return AGG_WIRE_BAD_FIELD;
	if ((h->flags & ~AGG_HELLO_CREATE) != 0 || get32(buf + 44) != 0)
		return AGG_WIRE_BAD_FLAGS;
	return AGG_WIRE_OK;
}

/* Encodes SERVER_HELLO. */
void agg_server_hello_encode(const struct agg_server_hello *h,
    uint8_t out[AGG_SERVER_HELLO_LEN])
{
	memcpy(out, server_magic, 4);
	out[4] = h->version;
	out[5] = h->status;
	put16(out + 6, 0);
	memcpy(out + 8, h->nonce, AGG_SERVER_NONCE_LEN);
}

/* Decodes SERVER_HELLO. */
int agg_server_hello_decode(const uint8_t *buf, size_t len,
    struct agg_server_hello *h)
{
	if (len >= 4 && memcmp(buf, server_magic, 4) != 0)
		return AGG_WIRE_BAD_MAGIC;
	if (len < AGG_SERVER_HELLO_LEN)
		return AGG_WIRE_SHORT;
	h->version = buf[4];
	h->status = buf[5];
	memcpy(h->nonce, buf + 8, AGG_SERVER_NONCE_LEN);
	if (get16(buf + 6) != 0)
		return AGG_WIRE_BAD_FLAGS;
	if (h->status > AGG_HELLO_VERSION_UNSUPPORTED)
		return AGG_WIRE_BAD_FIELD;
	return AGG_WIRE_OK;
}

/* Encodes WELCOME. */
void agg_welcome_encode(const struct agg_welcome *w,
    uint8_t out[AGG_WELCOME_LEN])
{
	out[0] = w->status;
	out[1] = out[2] = out[3] = 0;
	memcpy(out + 4, w->proof, AGG_MAC_LEN);
}

/* Decodes WELCOME. */
int agg_welcome_decode(const uint8_t *buf, size_t len, struct agg_welcome *w)
{
	if (len < AGG_WELCOME_LEN)
		return AGG_WIRE_SHORT;
	w->status = buf[0];
	memcpy(w->proof, buf + 4, AGG_MAC_LEN);
	if (buf[1] != 0 || buf[2] != 0 || buf[3] != 0)
		return AGG_WIRE_BAD_FLAGS;
	if (w->status > AGG_WELCOME_DUPLICATE_LINK)
		return AGG_WIRE_BAD_FIELD;
	return AGG_WIRE_OK;
}

/* Smallest and largest body length of each frame type. */
static int frame_body_limits(uint8_t type, size_t *min, size_t *max)
{
	switch (type) {
	case AGG_FRAME_DATA:
		*min = AGG_DATA_HEADER_LEN;
		*max = AGG_FRAME_MAX_BODY;
		return 0;
	case AGG_FRAME_OPEN:
		/* The shortest target is a one-byte name. */
		*min = 8 + 4 + 1 + 4 + 1 + 1 + 1 + 2;
		*max = 8 + 4 + 1 + 4 + 1 + 1 + 255 + 2;
		return 0;
	case AGG_FRAME_RESULT:
		*min = 8 + 4 + 1 + 4 + 1;
		*max = *min + AGG_MAX_MESSAGE;
		return 0;
	case AGG_FRAME_CREDIT:
		*min = *max = 8 + 4 + 8;
		return 0;
	case AGG_FRAME_RESET:
		*min = 8 + 4 + 8 + 1 + 1;
		*max = *min + AGG_MAX_MESSAGE;
		return 0;
	case AGG_FRAME_ACK:
		*min = 8 + 1;
		*max = *min + 12 * AGG_MAX_ACK_LINKS;
		return 0;
	case AGG_FRAME_PING:
	case AGG_FRAME_PONG:
		*min = *max = 8;
		return 0;
	case AGG_FRAME_CLOSE:
		*min = 3;
		*max = 3 + AGG_MAX_MESSAGE;
		return 0;
	default:
		return -1;
	}
}

/* Decodes and validates a frame header. */
int agg_frame_header_decode(const uint8_t *buf, size_t len,
    struct agg_frame_header *h)
{
	size_t min, max;

	if (len < AGG_FRAME_HEADER_LEN)
		return AGG_WIRE_SHORT;
	h->type = buf[0];
	h->flags = buf[1];
	h->length = get16(buf + 2);
	if (frame_body_limits(h->type, &min, &max) != 0)
		return AGG_WIRE_BAD_TYPE;
	if (h->flags != 0 && !(h->type == AGG_FRAME_DATA &&
	    h->flags == AGG_DATA_FIN))
		return AGG_WIRE_BAD_FLAGS;
	if (h->length < min || h->length > max)
		return AGG_WIRE_BAD_LENGTH;
	return AGG_WIRE_OK;
}

/* Writes a DATA frame header and DATA header. */
void agg_data_header_encode(uint64_t seq, uint32_t stream, uint64_t offset,
    uint16_t payload_len, int fin,
    uint8_t out[AGG_FRAME_HEADER_LEN + AGG_DATA_HEADER_LEN])
{
	out[0] = AGG_FRAME_DATA;
	out[1] = fin ? AGG_DATA_FIN : 0;
	put16(out + 2, (uint16_t)(payload_len + AGG_DATA_HEADER_LEN));
	put64(out + 4, seq);
	put32(out + 12, stream);
	put64(out + 16, offset);
}

/* Decodes the DATA header that follows a validated frame header. */
int agg_data_header_decode(const uint8_t *buf, size_t len, uint64_t *seq,
    uint32_t *stream, uint64_t *offset)
{
	if (len < AGG_DATA_HEADER_LEN)
		return AGG_WIRE_SHORT;
	*seq = get64(buf);
	*stream = get32(buf + 8);
	*offset = get64(buf + 12);
	if (*stream == 0)
		return AGG_WIRE_BAD_FIELD;
	/* Offsets are bounded so that offset + length never wraps. */
	if (*offset > (UINT64_C(1) << 62))
		return AGG_WIRE_BAD_FIELD;
	return AGG_WIRE_OK;
}

/* Encoded length of a target. */
size_t agg_target_wire_len(const struct agg_target *t)
{
	switch (t->type) {
	case AGG_ADDR_IPV4: return 1 + 4 + 2;
	case AGG_ADDR_IPV6: return 1 + 16 + 2;
	case AGG_ADDR_NAME: return 1 + 1 + (size_t)t->name_len + 2;
	default: return 0;
	}
}

/* Decodes a target at p of at most len bytes; returns bytes used or 0. */
static size_t target_decode(const uint8_t *p, size_t len,
    struct agg_target *t)
{
	size_t need;

	if (len < 1)
		return 0;
	memset(t, 0, sizeof(*t));
	t->type = p[0];
	switch (t->type) {
	case AGG_ADDR_IPV4:
		if (len < 7)
			return 0;
		memcpy(t->addr.ipv4, p + 1, 4);
		t->port = get16(p + 5);
		return 7;
	case AGG_ADDR_IPV6:
		if (len < 19)
			return 0;
		memcpy(t->addr.ipv6, p + 1, 16);
		t->port = get16(p + 17);
		return 19;
	case AGG_ADDR_NAME:
		if (len < 2)
			return 0;
		t->name_len = p[1];
		need = 2 + (size_t)t->name_len + 2;
		if (t->name_len == 0 || len < need)
			return 0;
		memcpy(t->addr.name, p + 2, t->name_len);
		t->addr.name[t->name_len] = '\0';
		/* A name with a NUL inside could not be resolved as sent. */
		if (memchr(t->addr.name, '\0', t->name_len) != NULL)
			return 0;
		t->port = get16(p + 2 + t->name_len);
		return need;
	default:
		return 0;
	}
}

/* Encodes a target into p (agg_target_wire_len bytes). */
static void target_encode(const struct agg_target *t, uint8_t *p)
{
	p[0] = t->type;
	switch (t->type) {
	case AGG_ADDR_IPV4:
		memcpy(p + 1, t->addr.ipv4, 4);
		put16(p + 5, t->port);
		break;
	case AGG_ADDR_IPV6:
		memcpy(p + 1, t->addr.ipv6, 16);
		put16(p + 17, t->port);
		break;
	default:
		p[1] = t->name_len;
		memcpy(p + 2, t->addr.name, t->name_len);
		put16(p + 2 + t->name_len, t->port);
		break;
	}
}

/* Reads a u8-length-prefixed message at p that must end exactly at end. */
static int message_decode(const uint8_t *p, const uint8_t *end,
    struct agg_frame *f)
{
	if (p >= end)
		return AGG_WIRE_BAD_LENGTH;
	f->message_len = p[0];
	if ((size_t)(end - p) != 1 + (size_t)f->message_len)
		return AGG_WIRE_BAD_LENGTH;
	memcpy(f->message, p + 1, f->message_len);
	f->message[f->message_len] = '\0';
	return AGG_WIRE_OK;
}

/* Decodes a whole non-DATA frame of exactly len bytes. */
int agg_frame_decode(const uint8_t *buf, size_t len, struct agg_frame *f)
{
	struct agg_frame_header h;
	const uint8_t *p, *end;
	size_t used, i;
	int r;

	memset(f, 0, offsetof(struct agg_frame, target));
	f->message_len = 0;
	f->message[0] = '\0';
	f->ack_count = 0;
	if ((r = agg_frame_header_decode(buf, len, &h)) != AGG_WIRE_OK)
		return r;
	if (h.type == AGG_FRAME_DATA)
		return AGG_WIRE_BAD_TYPE;
	if (len < AGG_FRAME_HEADER_LEN + (size_t)h.length)
		return AGG_WIRE_SHORT;
	if (len != AGG_FRAME_HEADER_LEN + (size_t)h.length)
		return AGG_WIRE_BAD_LENGTH;
	f->type = h.type;
	f->flags = h.flags;
	p = buf + AGG_FRAME_HEADER_LEN;
	end = p + h.length;
	if (agg_frame_is_reliable(h.type)) {
		f->seq = get64(p);
		f->stream = get32(p + 8);
		p += 12;
		if (f->stream == 0 && h.type != AGG_FRAME_CREDIT)
			return AGG_WIRE_BAD_FIELD;
	}
	switch (h.type) {
	case AGG_FRAME_OPEN:
		f->code = p[0];
		f->window = get32(p + 1);
		p += 5;
		used = target_decode(p, (size_t)(end - p), &f->target);
		if (used == 0)
			return AGG_WIRE_BAD_FIELD;
		if (p + used != end)
			return AGG_WIRE_BAD_LENGTH;
		return f->code == AGG_OPEN_TCP ? AGG_WIRE_OK :
		    AGG_WIRE_BAD_FIELD;
	case AGG_FRAME_RESULT:
		f->code = p[0];
		f->window = get32(p + 1);
		return message_decode(p + 5, end, f);
	case AGG_FRAME_CREDIT:
		f->value = get64(p);
		return AGG_WIRE_OK;
	case AGG_FRAME_RESET:
		f->value = get64(p);
		f->code = p[8];
		if (f->value > (UINT64_C(1) << 62))
			return AGG_WIRE_BAD_FIELD;
		return message_decode(p + 9, end, f);
	case AGG_FRAME_ACK:
		f->value = get64(p);
		f->ack_count = p[8];
		p += 9;
		if (f->ack_count > AGG_MAX_ACK_LINKS ||
		    (size_t)(end - p) != 12 * (size_t)f->ack_count)
			return AGG_WIRE_BAD_LENGTH;
		for (i = 0; i < f->ack_count; i++, p += 12) {
			f->acks[i].link_id = get32(p);
			f->acks[i].frames = get64(p + 4);
		}
		return AGG_WIRE_OK;
	case AGG_FRAME_PING:
	case AGG_FRAME_PONG:
		f->value = get64(p);
		return AGG_WIRE_OK;
	case AGG_FRAME_CLOSE:
		f->scope = p[0];
		f->code = p[1];
		if (f->scope > AGG_CLOSE_SESSION)
			return AGG_WIRE_BAD_FIELD;
		return message_decode(p + 2, end, f);
	default:
		return AGG_WIRE_BAD_TYPE;
	}
}

/* Appends a u8-length-prefixed message. */
static uint8_t *message_encode(const struct agg_frame *f, uint8_t *p)
{
	p[0] = f->message_len;
	memcpy(p + 1, f->message, f->message_len);
	return p + 1 + f->message_len;
}

/* Encodes a non-DATA frame; returns its length or 0. */
size_t agg_frame_encode(const struct agg_frame *f, uint8_t *out, size_t cap)
{
	/* Large enough for the longest non-DATA frame (an ACK: 397 bytes). */
	uint8_t buf[AGG_FRAME_HEADER_LEN + 512];
	uint8_t *p = buf + AGG_FRAME_HEADER_LEN;
	size_t len, i, tlen;

	/* message_len is a u8, so it never exceeds AGG_MAX_MESSAGE. */
	if (f->ack_count > AGG_MAX_ACK_LINKS)
		return 0;
	if (agg_frame_is_reliable(f->type)) {
		if (f->type == AGG_FRAME_DATA)
			return 0;
		put64(p, f->seq);
		put32(p + 8, f->stream);
		p += 12;
	}
	switch (f->type) {
	case AGG_FRAME_OPEN:
		tlen = agg_target_wire_len(&f->target);
		if (tlen == 0 || (f->target.type == AGG_ADDR_NAME &&
		    f->target.name_len == 0))
			return 0;
		p[0] = f->code;
		put32(p + 1, f->window);
		target_encode(&f->target, p + 5);
		p += 5 + tlen;
		break;
	case AGG_FRAME_RESULT:
		p[0] = f->code;
		put32(p + 1, f->window);
		p = message_encode(f, p + 5);
		break;
	case AGG_FRAME_CREDIT:
		put64(p, f->value);
		p += 8;
		break;
	case AGG_FRAME_RESET:
		put64(p, f->value);
		p[8] = f->code;
		p = message_encode(f, p + 9);
		break;
	case AGG_FRAME_ACK:
		put64(p, f->value);
		p[8] = f->ack_count;
		p += 9;
		for (i = 0; i < f->ack_count; i++, p += 12) {
			put32(p, f->acks[i].link_id);
			put64(p + 4, f->acks[i].frames);
		}
		break;
	case AGG_FRAME_PING:
	case AGG_FRAME_PONG:
		put64(p, f->value);
		p += 8;
		break;
	case AGG_FRAME_CLOSE:
		p[0] = f->scope;
		p[1] = f->code;
		p = message_encode(f, p + 2);
		break;
	default:
		return 0;
	}
	len = (size_t)(p - buf);
	if (len > cap)
		return 0;
	buf[0] = f->type;
	buf[1] = 0;
	put16(buf + 2, (uint16_t)(len - AGG_FRAME_HEADER_LEN));
	memcpy(out, buf, len);
	return len;
}

/* Copies text (truncated to 255 bytes) into f's message; returns length. */
uint8_t agg_frame_set_message(struct agg_frame *f, const char *text)
{
	size_t len = text ? strlen(text) : 0;

	if (len > AGG_MAX_MESSAGE)
		len = AGG_MAX_MESSAGE;
	memcpy(f->message, text ? text : "", len);
	f->message[len] = '\0';
	return (uint8_t)len;
}
