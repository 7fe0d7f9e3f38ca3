/*
 * target.c: destinations as text ("host:port", "[v6]:port").
 */
#include "agg/target.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Formats a target as host:port. */
void agg_target_format(const struct agg_target *t, char *out, size_t cap)
{
	char addr[INET6_ADDRSTRLEN];

	switch (t->type) {
	case AGG_ADDR_IPV4:
		inet_ntop(AF_INET, t->addr.ipv4, addr, sizeof(addr));
		snprintf(out, cap, "%s:%u", addr, t->port);
		break;
	case AGG_ADDR_IPV6:
		inet_ntop(AF_INET6, t->addr.ipv6, addr, sizeof(addr));
		snprintf(out, cap, "[%s]:%u", addr, t->port);
		break;
	case AGG_ADDR_NAME:
		snprintf(out, cap, "%s:%u", t->addr.name, t->port);
		break;
	default:
		snprintf(out, cap, "(invalid)");
		break;
	}
}

/* Parses host:port, a.b.c.d:port or [v6]:port. */
int agg_target_parse(const char *text, struct agg_target *t)
{
	const char *colon, *host = text;
	size_t host_len;
	char buf[256];
	char *endp;
	unsigned long port;

	memset(t, 0, sizeof(*t));
	if (text[0] == '[') {
		const char *close = strchr(text, ']');

		if (close == NULL || close[1] != ':')
			return -1;
		host = text + 1;
		host_len = (size_t)(close - host);
		colon = close + 1;
	} else {
		colon = strrchr(text, ':');
		if (colon == NULL)
			return -1;
		host_len = (size_t)(colon - text);
		if (memchr(text, ':', host_len) != NULL)
			return -1;
	}
	if (host_len == 0 || host_len >= sizeof(buf))
		return -1;
	memcpy(buf, host, host_len);
	buf[host_len] = '\0';
	if (colon[1] < '0' || colon[1] > '9')
		return -1;
	port = strtoul(colon + 1, &endp, 10);
	if (*endp != '\0' || port == 0 || port > 65535)
		return -1;
	t->port = (uint16_t)port;
	if (inet_pton(AF_INET, buf, t->addr.ipv4) == 1) {
		t->type = AGG_ADDR_IPV4;
	} else if (inet_pton(AF_INET6, buf, t->addr.ipv6) == 1) {
		t->type = AGG_ADDR_IPV6;
	} else {
		if (text[0] == '[' || host_len > 255)
			return -1;
		t->type = AGG_ADDR_NAME;
		t->name_len = (uint8_t)host_len;
		memcpy(t->addr.name, buf, host_len + 1);
	}
	return 0;
}
