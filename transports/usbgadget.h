/*
 * usbgadget.h: agg-server's USB device side (Linux). Creates a gadget
 * through configfs (libcomposite) with one FunctionFS function: one
 * vendor-specific interface with a bulk IN and a bulk OUT endpoint, strings
 * naming agg and the host name as serial number. Binds it to a UDC, answers
 * ep0 events, and serves one link per attach of a USB host over the bulk
 * endpoint files (asynchronous I/O whose completions wake the event loop
 * through an eventfd: FunctionFS endpoint files cannot be polled).
 */
#ifndef AGG_USBGADGET_H
#define AGG_USBGADGET_H

#include <stddef.h>

struct event_base;
struct bufferevent;
struct agg_url;
struct agg_usbgadget;

/* A USB host attached and said HELLO: bev is the link's byte pipe, the
 * callee owns it. */
typedef void (*agg_usbgadget_link_cb)(struct bufferevent *bev,
    const char *name, void *arg);

/* Sets the gadget up on url's UDC (the first in /sys/class/udc if the URL
 * names none) with the IDs vid:pid. NULL with a one-line reason in err,
 * e.g. "cannot serve usb-gadget://: no USB device controller in
 * /sys/class/udc (load a UDC driver, e.g. modprobe dummy_hcd)". */
struct agg_usbgadget *agg_usbgadget_new(struct event_base *base,
    const struct agg_url *url, unsigned vid, unsigned pid,
    agg_usbgadget_link_cb cb, void *arg, char *err, size_t errlen);
/* Unbinds the gadget, removes it from configfs and frees it. */
void agg_usbgadget_free(struct agg_usbgadget *g);

#endif
