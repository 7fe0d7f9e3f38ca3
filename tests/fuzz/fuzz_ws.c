/*
 * fuzz_ws.c: libFuzzer entry point for the WebSocket frame parser. The
 * first byte picks the side (masked frames expected or not); the rest is
 * read as a stream of frames the way ws.c reads it. Every accepted header
 * must re-encode to the same bytes, stay within the limits, and unmasking
 * twice must give the payload back.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wsframe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts unless cond holds (kept under NDEBUG, unlike assert). */
static void check(int cond)
{
	if (!cond)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ws_reader r = { 0, 4096, 0 };
	uint8_t enc[WS_HEADER_MAX], payload[4096];
	struct ws_frame f;
	const char *why;
	size_t pos = 1, n, k;
	int h;

	if (size == 0)
		return 0;
	r.want_masked = data[0] & 1;
	while (pos < size) {
		why = NULL;
		h = ws_frame_parse(&r, data + pos, size - pos, &f, &why);
		if (h <= 0) {
			check(h == 0 || why != NULL);
			break;
		}
		check(h >= 2 && h <= WS_HEADER_MAX);
		check(f.masked == r.want_masked);
		check(f.opcode & 0x8u ? f.len <= WS_CONTROL_MAX && f.fin :
		    f.len <= r.max_frame);
		n = ws_frame_encode(enc, f.opcode, f.fin, f.len,
		    f.masked ? f.mask : NULL);
		check(n == (size_t)h && memcmp(enc, data + pos, n) == 0);
		pos += (size_t)h;
		k = size - pos < f.len ? size - pos : (size_t)f.len;
		memcpy(payload, data + pos, k);
		ws_mask(payload, k, f.mask, 0);
		ws_mask(payload, k / 2, f.mask, 0);
		ws_mask(payload + k / 2, k - k / 2, f.mask, k / 2);
		check(memcmp(payload, data + pos, k) == 0);
		pos += k;
	}
	return 0;
}
