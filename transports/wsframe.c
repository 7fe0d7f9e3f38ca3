/*
 * wsframe.c: RFC 6455 framing without I/O. See wsframe.h.
 */
#include "wsframe.h"

#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/* Parses the header at buf. */
int ws_frame_parse(struct ws_reader *r, const uint8_t *buf, size_t len,
    struct ws_frame *f, const char **why)
{
	size_t need = 2, i;
	unsigned len7;
	uint64_t n = 0;

	if (len < 2)
		return 0;
	f->fin = (buf[0] & 0x80) != 0;
	f->opcode = buf[0] & 0x0fu;
	f->masked = (buf[1] & 0x80) != 0;
	len7 = buf[1] & 0x7fu;
	if (buf[0] & 0x70) {
		*why = "reserved bits set";
		return -1;
	}
	switch (f->opcode) {
	case WS_OP_CONT: case WS_OP_TEXT: case WS_OP_BINARY:
	case WS_OP_CLOSE: case WS_OP_PING: case WS_OP_PONG:
		break;
	default:
		*why = "reserved opcode";
		return -1;
	}
	if (f->opcode & 0x8u) {
		if (!f->fin) {
			*why = "fragmented control frame";
			return -1;
		}
		if (len7 > WS_CONTROL_MAX) {
			*why = "control frame longer than 125 bytes";
			return -1;
		}
	}
	if (f->masked != (r->want_masked != 0)) {
		*why = r->want_masked ? "unmasked frame from the client" :
		    "masked frame from the server";
		return -1;
	}
	if (len7 == 126)
		need += 2;
	else if (len7 == 127)
		need += 8;
	if (f->masked)
		need += 4;
	if (len < need)
		return 0;
	if (len7 == 126) {
		n = (uint64_t)buf[2] << 8 | buf[3];
		if (n < 126) {
			*why = "length not in its shortest form";
			return -1;
		}
	} else if (len7 == 127) {
		for (i = 0; i < 8; i++)
			n = n << 8 | buf[2 + i];
		if (n >> 63) {
			*why = "length with its top bit set";
			return -1;
		}
		if (n <= 0xffff) {
			*why = "length not in its shortest form";
			return -1;
		}
	} else {
		n = len7;
	}
	f->len = n;
	if (f->masked)
		memcpy(f->mask, buf + need - 4, 4);
	if (!(f->opcode & 0x8u)) {
		if (n > r->max_frame) {
			*why = "frame larger than allowed";
			return -1;
		}
		if (f->opcode == WS_OP_CONT && !r->in_message) {
			*why = "continuation frame outside a message";
			return -1;
		}
		if (f->opcode != WS_OP_CONT && r->in_message) {
			*why = "new message inside a fragmented one";
			return -1;
		}
		r->in_message = !f->fin;
	}
	return (int)need;
}

/* Encodes a header into out. */
size_t ws_frame_encode(uint8_t *out, unsigned opcode, int fin, uint64_t len,
    const uint8_t *mask)
{
	size_t n = 2, i;

	out[0] = (uint8_t)((fin ? 0x80u : 0u) | (opcode & 0x0fu));
	out[1] = mask != NULL ? 0x80u : 0u;
	if (len < 126) {
		out[1] |= (uint8_t)len;
	} else if (len <= 0xffff) {
		out[1] |= 126;
		out[2] = (uint8_t)(len >> 8);
		out[3] = (uint8_t)len;
		n = 4;
	} else {
		out[1] |= 127;
		for (i = 0; i < 8; i++)
			out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
		n = 10;
	}
	if (mask != NULL) {
		memcpy(out + n, mask, 4);
		n += 4;
	}
	return n;
}

/* XORs len bytes with the mask, starting offset bytes into the payload. */
void ws_mask(uint8_t *data, size_t len, const uint8_t mask[4],
    uint64_t offset)
{
	uint8_t m[8];
	uint64_t w, k;
	size_t i = 0, j;

	for (j = 0; j < 8; j++)
		m[j] = mask[(offset + j) & 3];
	/* Eight bytes at a time; memcpy keeps it alignment-safe. */
	memcpy(&k, m, 8);
	for (; i + 8 <= len; i += 8) {
		memcpy(&w, data + i, 8);
		w ^= k;
		memcpy(data + i, &w, 8);
	}
	for (j = 0; i < len; i++, j++)
		data[i] ^= m[j];
}

/* Sec-WebSocket-Accept for a Sec-WebSocket-Key. */
int ws_accept_key(const char *key, char out[29])
{
	unsigned char digest[SHA_DIGEST_LENGTH];
	unsigned int dlen = 0;
	EVP_MD_CTX *md;
	int ok;

	if ((md = EVP_MD_CTX_new()) == NULL)
		return -1;
	ok = EVP_DigestInit_ex(md, EVP_sha1(), NULL) == 1 &&
	    EVP_DigestUpdate(md, key, strlen(key)) == 1 &&
	    EVP_DigestUpdate(md, ws_guid, sizeof(ws_guid) - 1) == 1 &&
	    EVP_DigestFinal_ex(md, digest, &dlen) == 1 &&
	    dlen == SHA_DIGEST_LENGTH;
	EVP_MD_CTX_free(md);
	if (!ok)
		return -1;
	return EVP_EncodeBlock((unsigned char *)out, digest,
	    SHA_DIGEST_LENGTH) == 28 ? 0 : -1;
}

/* Whether a Sec-WebSocket-Key is 16 bytes in base64. */
int ws_key_valid(const char *key)
{
	unsigned char raw[20];

	if (strlen(key) != 24 || key[22] != '=' || key[23] != '=')
		return 0;
	return EVP_DecodeBlock(raw, (const unsigned char *)key, 24) == 18;
}
