/*
 * wsframe.h: RFC 6455 framing without I/O: frame headers (parse and
 * encode), masking, the rules a sequence of frames must follow, and the
 * handshake's Sec-WebSocket-Accept value. Parsers never trust their input:
 * every length is bounded and partial input asks for more.
 */
#ifndef AGG_WSFRAME_H
#define AGG_WSFRAME_H

#include <stddef.h>
#include <stdint.h>

#define WS_OP_CONT 0x0
#define WS_OP_TEXT 0x1
#define WS_OP_BINARY 0x2
#define WS_OP_CLOSE 0x8
#define WS_OP_PING 0x9
#define WS_OP_PONG 0xa

#define WS_HEADER_MAX 14         /* 2 + 8 length + 4 mask */
#define WS_CONTROL_MAX 125       /* control frame payload */

/* One frame header. */
struct ws_frame {
	int fin;
	unsigned opcode;
	int masked;
	uint8_t mask[4];
	uint64_t len;              /* payload length */
};

/* What a reader accepts, and where it is in a fragmented message. */
struct ws_reader {
	int want_masked;           /* server: every frame masked; client:
	                              none */
	uint64_t max_frame;        /* largest data frame payload accepted */
	int in_message;            /* a data message has begun, not ended */
};

/* Parses the header at buf: its length, 0 if more bytes are needed, or
 * -1 with a reason in *why. Checks the header alone (reserved bits,
 * opcode, control frame rules, lengths, masking). */
int ws_frame_parse(struct ws_reader *r, const uint8_t *buf, size_t len,
    struct ws_frame *f, const char **why);
/* Encodes a header into out (WS_HEADER_MAX bytes); returns its length.
 * mask NULL: unmasked. */
size_t ws_frame_encode(uint8_t *out, unsigned opcode, int fin, uint64_t len,
    const uint8_t *mask);
/* XORs len bytes with the mask, starting offset bytes into the payload. */
void ws_mask(uint8_t *data, size_t len, const uint8_t mask[4],
    uint64_t offset);
/* Sec-WebSocket-Accept for a Sec-WebSocket-Key: base64(SHA-1(key +
 * GUID)), 28 characters and a NUL. 0, or -1. */
int ws_accept_key(const char *key, char out[29]);
/* Whether a Sec-WebSocket-Key is 16 bytes in base64 (24 characters). */
int ws_key_valid(const char *key);

#endif
