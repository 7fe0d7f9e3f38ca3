/*
 * agg/target.h: a stream's destination: an address or a host name, and a port.
 */
#ifndef AGG_TARGET_H
#define AGG_TARGET_H

#include <stddef.h>
#include <stdint.h>

/* Address types (the SOCKS5 values). */
enum agg_addr_type {
	AGG_ADDR_IPV4 = 1,
	AGG_ADDR_NAME = 3,
	AGG_ADDR_IPV6 = 4,
};

struct agg_target {
	uint8_t type; /* enum agg_addr_type */
	uint8_t name_len;
	union {
		uint8_t ipv4[4];
		uint8_t ipv6[16];
		char name[256]; /* NUL-terminated; name_len bytes on the wire */
	} addr;
	uint16_t port;
};

/* Formats a target as "host:port", "1.2.3.4:port" or "[v6]:port". */
void agg_target_format(const struct agg_target *t, char *out, size_t cap);
/* Parses "host:port", "1.2.3.4:port" or "[v6]:port"; 0 or -1. */
int agg_target_parse(const char *text, struct agg_target *t);

#endif
