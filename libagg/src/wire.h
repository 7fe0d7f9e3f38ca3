/*
 * wire.h: encoding and decoding of agg's wire format (see PROTOCOL.md).
 *
 * Pure functions over byte arrays: no I/O, no allocation. Every decoder
 * bounds each length against the input before reading it and returns
 * AGG_WIRE_OK, AGG_WIRE_SHORT (need more bytes) or a negative error.
 */
#ifndef AGG_WIRE_H
#define AGG_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "agg/target.h"

#define AGG_PROTOCOL_VERSION 1

/* Handshake message sizes (fixed). */
#define AGG_CLIENT_HELLO_LEN 48
#define AGG_SERVER_HELLO_LEN 40
#define AGG_AUTH_LEN 32
#define AGG_WELCOME_LEN 36

#define AGG_SESSION_ID_LEN 16
#define AGG_CLIENT_NONCE_LEN 16
#define AGG_SERVER_NONCE_LEN 32
#define AGG_MAC_LEN 32

/* CLIENT_HELLO flags. */
#define AGG_HELLO_CREATE 0x0001

/* SERVER_HELLO status. */
enum agg_hello_status {
	AGG_HELLO_OK = 0,
	AGG_HELLO_VERSION_UNSUPPORTED = 1,
};

/* WELCOME status. */
enum agg_welcome_status {
	AGG_WELCOME_OK = 0,
	AGG_WELCOME_AUTH_FAILED = 1,
	AGG_WELCOME_UNKNOWN_SESSION = 2,
	AGG_WELCOME_LIMIT = 3,
	AGG_WELCOME_DUPLICATE_LINK = 4,
};

/* Frame header: type u8, flags u8, length u16 (bytes after the header). */
#define AGG_FRAME_HEADER_LEN 4
#define AGG_FRAME_MAX_BODY 65535
/* DATA body before the payload: seq u64, stream u32, offset u64. */
#define AGG_DATA_HEADER_LEN 20
#define AGG_DATA_MAX_PAYLOAD (AGG_FRAME_MAX_BODY - AGG_DATA_HEADER_LEN)
#define AGG_MAX_MESSAGE 255
#define AGG_MAX_ACK_LINKS 32
/* A sender never has seq >= cumulative ack + AGG_SEQ_WINDOW outstanding. */
#define AGG_SEQ_WINDOW 65536u

enum agg_frame_type {
	AGG_FRAME_DATA = 0x01,
	AGG_FRAME_OPEN = 0x02,
	AGG_FRAME_RESULT = 0x03,
	AGG_FRAME_CREDIT = 0x04,
	AGG_FRAME_RESET = 0x05,
	AGG_FRAME_ACK = 0x06,
	AGG_FRAME_PING = 0x07,
	AGG_FRAME_PONG = 0x08,
	AGG_FRAME_CLOSE = 0x09,
};

/* DATA flags. */
#define AGG_DATA_FIN 0x01

/* OPEN kinds. */
enum agg_open_kind {
	AGG_OPEN_TCP = 1,
};

/* CLOSE scopes. */
enum agg_close_scope {
	AGG_CLOSE_LINK = 0,
	AGG_CLOSE_SESSION = 1,
};

/* Decoder results. */
enum agg_wire_result {
	AGG_WIRE_OK = 0,
	AGG_WIRE_SHORT = 1,
	AGG_WIRE_BAD_MAGIC = -1,
	AGG_WIRE_BAD_TYPE = -2,
	AGG_WIRE_BAD_LENGTH = -3,
	AGG_WIRE_BAD_FLAGS = -4,
	AGG_WIRE_BAD_FIELD = -5,
};

struct agg_client_hello {
	uint8_t version_min;
	uint8_t version_max;
	uint16_t flags;
	uint8_t session_id[AGG_SESSION_ID_LEN];
	uint32_t link_id;
	uint8_t nonce[AGG_CLIENT_NONCE_LEN];
};

struct agg_server_hello {
	uint8_t version;
	uint8_t status;
	uint8_t nonce[AGG_SERVER_NONCE_LEN];
};

struct agg_welcome {
	uint8_t status;
	uint8_t proof[AGG_MAC_LEN];
};

struct agg_frame_header {
	uint8_t type;
	uint8_t flags;
	uint16_t length;
};

struct agg_ack_link {
	uint32_t link_id;
	uint64_t frames;
};

/* Every frame except DATA decodes into this (the fields its type uses). */
struct agg_frame {
	uint8_t type;
	uint8_t flags;
	uint64_t seq;    /* reliable frames */
	uint32_t stream; /* OPEN RESULT CREDIT RESET DATA */
	uint64_t value;  /* CREDIT limit, RESET final offset, PING/PONG time,
	                    ACK cum */
	uint8_t code;    /* OPEN kind, RESULT/RESET/CLOSE code */
	uint8_t scope;   /* CLOSE */
	uint32_t window; /* OPEN, RESULT */
	struct agg_target target; /* OPEN */
	uint8_t message_len;
	char message[AGG_MAX_MESSAGE + 1]; /* RESULT RESET CLOSE, NUL-terminated */
	uint8_t ack_count;
	struct agg_ack_link acks[AGG_MAX_ACK_LINKS];
};

/* Whether frames of this type carry a sequence number and are acked. */
int agg_frame_is_reliable(uint8_t type);
/* Name of a frame type for logs ("DATA", ...; "unknown"). */
const char *agg_frame_type_name(uint8_t type);
/* Text of a decoder result. */
const char *agg_wire_strerror(int result);

void agg_client_hello_encode(const struct agg_client_hello *h,
    uint8_t out[AGG_CLIENT_HELLO_LEN]);
int agg_client_hello_decode(const uint8_t *buf, size_t len,
    struct agg_client_hello *h);
void agg_server_hello_encode(const struct agg_server_hello *h,
    uint8_t out[AGG_SERVER_HELLO_LEN]);
int agg_server_hello_decode(const uint8_t *buf, size_t len,
    struct agg_server_hello *h);
void agg_welcome_encode(const struct agg_welcome *w,
    uint8_t out[AGG_WELCOME_LEN]);
int agg_welcome_decode(const uint8_t *buf, size_t len, struct agg_welcome *w);

/* Decodes and validates a frame header (type known, flags allowed, length
 * within the type's limits). */
int agg_frame_header_decode(const uint8_t *buf, size_t len,
    struct agg_frame_header *h);
/* Writes a DATA header (frame header + 20-byte DATA header) into out. */
void agg_data_header_encode(uint64_t seq, uint32_t stream, uint64_t offset,
    uint16_t payload_len, int fin, uint8_t out[AGG_FRAME_HEADER_LEN +
    AGG_DATA_HEADER_LEN]);
/* Decodes the 20-byte DATA header following a validated frame header. */
int agg_data_header_decode(const uint8_t *buf, size_t len, uint64_t *seq,
    uint32_t *stream, uint64_t *offset);
/* Decodes a whole non-DATA frame (header included) of exactly len bytes. */
int agg_frame_decode(const uint8_t *buf, size_t len, struct agg_frame *f);
/* Encodes a non-DATA frame; returns its length, or 0 if f is invalid or
 * does not fit in cap bytes. */
size_t agg_frame_encode(const struct agg_frame *f, uint8_t *out, size_t cap);

/* Copies text (truncated to 255 bytes) into f's message; returns length. */
uint8_t agg_frame_set_message(struct agg_frame *f, const char *text);
/* Encoded length of a target (type + address + port); 0 if invalid. */
size_t agg_target_wire_len(const struct agg_target *t);

#endif
