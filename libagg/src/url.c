/*
 * url.c: link endpoint URLs.
 */
#include "agg/url.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const scheme_names[] = {
	"tcp", "tls", "ws", "wss", "usb", "usb-gadget",
};

#define URL_NSCHEMES (sizeof(scheme_names) / sizeof(scheme_names[0]))

/* Scheme name. */
const char *agg_url_scheme_name(enum agg_url_scheme scheme)
{
	return scheme_names[scheme];
}

/* Parses "VID:PID" in hex. */
int agg_usb_ids_parse(const char *text, unsigned *vid, unsigned *pid)
{
	unsigned long v, p;
	char *end;

	if (strspn(text, "0123456789abcdefABCDEF") != 4 || text[4] != ':' ||
	    strspn(text + 5, "0123456789abcdefABCDEF") != 4 ||
	    text[9] != '\0')
		return -1;
	v = strtoul(text, &end, 16);
	p = strtoul(text + 5, &end, 16);
	*vid = (unsigned)v;
	*pid = (unsigned)p;
	return 0;
}

/* Parses what follows "usb://" ([VID:PID][?serial=S]) or "usb-gadget://"
 * ([UDC]). */
static int url_parse_usb(const char *text, const char *rest,
    struct agg_url *u, char *err, size_t errlen)
{
	const char *query;
	char ids[16];
	size_t len;

	u->usb_vid = AGG_USB_DEFAULT_VID;
	u->usb_pid = AGG_USB_DEFAULT_PID;
	if (u->scheme == AGG_URL_USB_GADGET) {
		len = strlen(rest);
		if (len >= sizeof(u->udc) || strpbrk(rest, "/?: ") != NULL) {
			snprintf(err, errlen, "bad URL '%s': expected "
			    "usb-gadget://[UDC], a name from /sys/class/udc",
			    text);
			return -1;
		}
		memcpy(u->udc, rest, len + 1);
		return 0;
	}
	query = rest + strcspn(rest, "?");
	len = (size_t)(query - rest);
	if (len > 0) {
		ids[0] = '\0';
		if (len < sizeof(ids)) {
			memcpy(ids, rest, len);
			ids[len] = '\0';
		}
		if (agg_usb_ids_parse(ids, &u->usb_vid, &u->usb_pid) != 0) {
			snprintf(err, errlen, "bad URL '%s': expected "
			    "usb://[VID:PID][?serial=S] with hex IDs such as "
			    "1209:0001", text);
			return -1;
		}
	}
	if (*query == '\0')
		return 0;
	if (strncmp(query, "?serial=", 8) != 0 || query[8] == '\0' ||
	    strlen(query + 8) >= sizeof(u->usb_serial)) {
		snprintf(err, errlen, "bad URL '%s': the only query is "
		    "?serial=S", text);
		return -1;
	}
	snprintf(u->usb_serial, sizeof(u->usb_serial), "%s", query + 8);
	return 0;
}

/* Parses "scheme://host:port/path". */
int agg_url_parse(const char *text, struct agg_url *u, char *err,
    size_t errlen)
{
	const char *p, *host, *host_end, *port = NULL, *path;
	size_t i, len;
	char *end;
	unsigned long n;

	memset(u, 0, sizeof(*u));
	snprintf(u->text, sizeof(u->text), "%s", text);
	if ((p = strstr(text, "://")) == NULL) {
		snprintf(err, errlen, "bad URL '%s': expected tcp://, tls://, "
		    "ws:// or wss://", text);
		return -1;
	}
	for (i = 0; i < URL_NSCHEMES; i++)
		if ((size_t)(p - text) == strlen(scheme_names[i]) &&
		    strncmp(text, scheme_names[i], (size_t)(p - text)) == 0)
			break;
	if (i == URL_NSCHEMES) {
		snprintf(err, errlen, "bad URL '%s': unknown scheme", text);
		return -1;
	}
	u->scheme = (enum agg_url_scheme)i;
	if (u->scheme == AGG_URL_USB || u->scheme == AGG_URL_USB_GADGET)
		return url_parse_usb(text, p + 3, u, err, errlen);
	host = p + 3;
	path = host + strcspn(host, "/");
	if (*host == '[') {
		host++;
		if ((host_end = memchr(host, ']', (size_t)(path - host))) ==
		    NULL) {
			snprintf(err, errlen, "bad URL '%s': missing ']'", text);
			return -1;
		}
		if (host_end[1] == ':')
			port = host_end + 2;
		else if (host_end + 1 != path) {
			snprintf(err, errlen, "bad URL '%s': junk after ']'",
			    text);
			return -1;
		}
	} else {
		host_end = memchr(host, ':', (size_t)(path - host));
		if (host_end == NULL)
			host_end = path;
		else
			port = host_end + 1;
		if (port != NULL && memchr(port, ':', (size_t)(path - port))) {
			snprintf(err, errlen, "bad URL '%s': put an IPv6 address "
			    "in brackets", text);
			return -1;
		}
	}
	len = (size_t)(host_end - host);
	if (len >= sizeof(u->host)) {
		snprintf(err, errlen, "bad URL '%s': host name too long", text);
		return -1;
	}
	memcpy(u->host, host, len);
	if (port != NULL) {
		len = (size_t)(path - port);
		n = strtoul(port, &end, 10);
		if (len == 0 || len > 5 || end != path || n == 0 || n > 65535) {
			snprintf(err, errlen, "bad URL '%s': bad port", text);
			return -1;
		}
		memcpy(u->port, port, len);
	} else {
		snprintf(u->port, sizeof(u->port), "%s", AGG_DEFAULT_PORT);
	}
	if (*path != '\0' && u->scheme != AGG_URL_WS &&
	    u->scheme != AGG_URL_WSS && strcmp(path, "/") != 0) {
		snprintf(err, errlen, "bad URL '%s': only ws:// and wss:// take "
		    "a path", text);
		return -1;
	}
	if (strlen(path) >= sizeof(u->path)) {
		snprintf(err, errlen, "bad URL '%s': path too long", text);
		return -1;
	}
	snprintf(u->path, sizeof(u->path), "%s", *path ? path : "/");
	return 0;
}
