/*
 * usbhost.h: agg-client's USB host side. One usbhost per usb:// URL keeps
 * one link to the first device matching the URL's IDs (and serial): it
 * opens it with libusb-1.0, claims the agg interface and runs the link
 * over asynchronous bulk transfers whose file descriptors libevent watches
 * (libusb's pollfd notifiers). While no device is attached it rescans
 * every second with a fresh libusb context (without udevd libusb sees no
 * hotplug events, and a context does not notice devices that appear after
 * it was made). A link that closes, or a device that goes away, is
 * followed by the next rescan.
 */
#ifndef AGG_USBHOST_H
#define AGG_USBHOST_H

#include "agg/session.h"

struct event_base;
struct agg_url;
struct agg_usbhost;

/* A failure worth telling the user, e.g. "cannot reach usb://1209:0001: no
 * USB device 1209:0001 found". */
typedef void (*agg_usbhost_error_cb)(const char *message, void *arg);

/* Starts looking for the device of url; its links join session. */
struct agg_usbhost *agg_usbhost_new(struct event_base *base,
    struct agg_session *session, const struct agg_url *url,
    agg_usbhost_error_cb error, void *arg);
/* The session's link_state events; 1 if link was this usbhost's. */
int agg_usbhost_link_state(struct agg_usbhost *h, struct agg_link *link,
    enum agg_link_state state, const char *reason);
/* Closes the link, releases the device and frees the usbhost. */
void agg_usbhost_free(struct agg_usbhost *h);

#endif
