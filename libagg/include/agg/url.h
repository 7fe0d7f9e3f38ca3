/*
 * agg/url.h: link endpoint URLs: tcp://HOST:PORT, tls://HOST:PORT,
 * ws://HOST:PORT/PATH and wss://HOST:PORT/PATH (HOST may be [v6]); USB
 * links: usb://[VID:PID][?serial=S] (agg-client, the USB host side) and
 * usb-gadget://[UDC] (agg-server, the device side).
 */
#ifndef AGG_URL_H
#define AGG_URL_H

#include <stddef.h>

#define AGG_DEFAULT_PORT "5800"

enum agg_url_scheme {
	AGG_URL_TCP,
	AGG_URL_TLS,
	AGG_URL_WS,
	AGG_URL_WSS,
	AGG_URL_USB,          /* usb://[VID:PID][?serial=S] */
	AGG_URL_USB_GADGET,   /* usb-gadget://[UDC] */
};

/* USB IDs used when a usb:// or usb-gadget:// URL names none (pid.codes
 * test IDs). */
#define AGG_USB_DEFAULT_VID 0x1209
#define AGG_USB_DEFAULT_PID 0x0001

struct agg_url {
	enum agg_url_scheme scheme;
	char host[256];   /* without brackets; empty: any address */
	char port[8];
	char path[256];   /* ws/wss: starts with '/'; "/" by default */
	char text[600];   /* as given, for messages */
	unsigned usb_vid, usb_pid;  /* usb: the IDs to look for */
	char usb_serial[128];       /* usb: the serial wanted; empty: any */
	char udc[128];              /* usb-gadget: UDC name; empty: the first */
};

/* Parses text into u; on error returns -1 with a one-line reason in err. */
int agg_url_parse(const char *text, struct agg_url *u, char *err,
    size_t errlen);
/* Parses "VID:PID" (hex) into vid and pid; -1 if malformed. */
int agg_usb_ids_parse(const char *text, unsigned *vid, unsigned *pid);
/* Scheme name ("tcp", "tls", "ws", "wss", "usb", "usb-gadget"). */
const char *agg_url_scheme_name(enum agg_url_scheme scheme);

#endif
