/*
 * usbhost.c: agg-client's USB host side. See usbhost.h.
 *
 * States: scanning (no libusb context between scans), attached (a context,
 * an open device, transfers in flight, a usblink), detaching (the usblink
 * ended: transfers are cancelled; once none is in flight the device and
 * the context are released and scanning resumes).
 */
#include "usbhost.h"

#include <sys/random.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libusb.h>

#include <event2/bufferevent.h>
#include <event2/event.h>

#include "agg/log.h"
#include "agg/url.h"
#include "usblink.h"

#define UH_NREADS 4
#define UH_NWRITES 4
#define UH_NSLOTS (UH_NREADS + UH_NWRITES)
#define UH_MAX_POLLFDS 16
#define UH_RESCAN_MS 1000

struct uh_slot {
	struct agg_usbhost *h;
	struct libusb_transfer *xfer;
	uint8_t *buf;
	int write;
	int busy;
	int held;
};

struct uh_pollfd {
	int fd;
	struct event *ev;
};

struct agg_usbhost {
	struct event_base *base;
	struct agg_session *session;
	struct agg_url url;
	agg_usbhost_error_cb error;
	void *arg;
	libusb_context *ctx;
	libusb_device_handle *dev;
	int iface;
	uint8_t ep_in, ep_out;
	int detaching;
	struct agg_usblink *ul;
	struct agg_link *link;
	char name[200];
	char reported[700];           /* the last failure told, once */
	struct event *scan_ev, *finish_ev;
	size_t npollfds;
	struct uh_pollfd pollfds[UH_MAX_POLLFDS];
	struct uh_slot slots[UH_NSLOTS];
};

static void uh_fill(struct agg_usbhost *h);
static void uh_submit_reads(struct agg_usbhost *h);

/* Tells the owner about a failure. */
static void uh_error(struct agg_usbhost *h, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void uh_error(struct agg_usbhost *h, const char *fmt, ...)
{
	char msg[600], full[700];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(full, sizeof(full), "cannot reach %.200s: %.400s", h->url.text,
	    msg);
	if (strcmp(full, h->reported) == 0)
		return;
	snprintf(h->reported, sizeof(h->reported), "%s", full);
	h->error(full, h->arg);
}

/* Schedules the next scan. */
static void uh_schedule_scan(struct agg_usbhost *h, unsigned ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	evtimer_add(h->scan_ev, &tv);
}

/* libusb has events: let it handle them without blocking. */
static void usbhost_fd_cb(evutil_socket_t fd, short what, void *arg)
{
	struct agg_usbhost *h = arg;
	struct timeval zero = { 0, 0 };

	(void)fd;
	(void)what;
	if (h->ctx != NULL)
		libusb_handle_events_timeout_completed(h->ctx, &zero, NULL);
}

/* libusb: watch one more file descriptor. */
static void usbhost_pollfd_added_cb(int fd, short events, void *arg)
{
	struct agg_usbhost *h = arg;
	struct uh_pollfd *p;
	short what = EV_PERSIST;

	if (h->npollfds == UH_MAX_POLLFDS) {
		agg_log_error("libusb wants more than %d descriptors watched",
		    UH_MAX_POLLFDS);
		return;
	}
	if (events & POLLIN)
		what |= EV_READ;
	if (events & POLLOUT)
		what |= EV_WRITE;
	p = &h->pollfds[h->npollfds];
	if ((p->ev = event_new(h->base, fd, what, usbhost_fd_cb, h)) == NULL)
		return;
	p->fd = fd;
	event_add(p->ev, NULL);
	h->npollfds++;
}

/* libusb: stop watching a file descriptor. */
static void usbhost_pollfd_removed_cb(int fd, void *arg)
{
	struct agg_usbhost *h = arg;
	size_t i;

	for (i = 0; i < h->npollfds; i++) {
		if (h->pollfds[i].fd != fd)
			continue;
		event_free(h->pollfds[i].ev);
		h->pollfds[i] = h->pollfds[--h->npollfds];
		return;
	}
}

/* Closes the device and forgets its transfers and usblink. */
static void uh_close_device(struct agg_usbhost *h)
{
	size_t i;

	for (i = 0; i < UH_NSLOTS; i++) {
		if (h->slots[i].xfer != NULL)
			libusb_free_transfer(h->slots[i].xfer);
		h->slots[i].xfer = NULL;
		h->slots[i].busy = h->slots[i].held = 0;
	}
	if (h->dev != NULL) {
		libusb_release_interface(h->dev, h->iface);
		libusb_close(h->dev);
		h->dev = NULL;
	}
	agg_usblink_free(h->ul);
	h->ul = NULL;
	h->detaching = 0;
}

/* Releases the device and the context; scanning resumes. */
static void uh_release(struct agg_usbhost *h)
{
	size_t i;

	uh_close_device(h);
	for (i = 0; i < h->npollfds; i++)
		event_free(h->pollfds[i].ev);
	h->npollfds = 0;
	if (h->ctx != NULL) {
		libusb_set_pollfd_notifiers(h->ctx, NULL, NULL, NULL);
		libusb_exit(h->ctx);
		h->ctx = NULL;
	}
}

/* Whether every transfer is back; then the release can happen (outside
 * libusb's event handling). */
static void uh_check_detached(struct agg_usbhost *h)
{
	size_t i;

	if (!h->detaching)
		return;
	for (i = 0; i < UH_NSLOTS; i++)
		if (h->slots[i].busy)
			return;
	event_active(h->finish_ev, 0, 0);
}

/* Deferred: release the device, scan again soon. A transfer submitted
 * after the check (the CLOSE that ended the usblink) defers it again. */
static void usbhost_finish_cb(evutil_socket_t fd, short what, void *arg)
{
	struct agg_usbhost *h = arg;
	size_t i;

	(void)fd;
	(void)what;
	for (i = 0; i < UH_NSLOTS; i++)
		if (h->slots[i].busy)
			return;
	uh_release(h);
	uh_schedule_scan(h, UH_RESCAN_MS);
}

/* One transfer completed, failed or was cancelled. */
static void LIBUSB_CALL usbhost_transfer_cb(struct libusb_transfer *xfer)
{
	struct uh_slot *sl = xfer->user_data;
	struct agg_usbhost *h = sl->h;
	enum agg_usblink_input_result r;

	sl->busy = 0;
	if (h->detaching || h->ul == NULL) {
		uh_check_detached(h);
		return;
	}
	switch (xfer->status) {
	case LIBUSB_TRANSFER_COMPLETED:
		break;
	case LIBUSB_TRANSFER_NO_DEVICE:
		agg_usblink_fail(h->ul, "USB device unplugged");
		return;
	case LIBUSB_TRANSFER_CANCELLED:
		return;
	case LIBUSB_TRANSFER_STALL:
		agg_usblink_fail(h->ul, "USB endpoint stalled");
		return;
	case LIBUSB_TRANSFER_OVERFLOW:
		agg_usblink_fail(h->ul, "USB transfer overflow");
		return;
	default:
		agg_usblink_fail(h->ul, "USB transfer failed (device gone "
		    "or reset)");
		return;
	}
	if (sl->write) {
		uh_fill(h);
		return;
	}
	r = agg_usblink_input(h->ul, sl->buf, (size_t)xfer->actual_length);
	if (r == AGG_USBLINK_READ_HOLD)
		sl->held = 1;
	else if (r == AGG_USBLINK_READ_AGAIN)
		uh_submit_reads(h);
}

/* Submits one slot; 0 or a libusb error. */
static int uh_submit(struct agg_usbhost *h, struct uh_slot *sl, size_t len)
{
	int r;

	libusb_fill_bulk_transfer(sl->xfer, h->dev, sl->write ? h->ep_out :
	    h->ep_in, sl->buf, (int)len, usbhost_transfer_cb, sl, 0);
	if ((r = libusb_submit_transfer(sl->xfer)) != 0)
		return r;
	sl->busy = 1;
	sl->held = 0;
	return 0;
}

/* Ends the usblink after a submission failed with libusb error r. */
static void uh_submit_failed(struct agg_usbhost *h, int r)
{
	char why[120];

	if (r == LIBUSB_ERROR_NO_DEVICE) {
		agg_usblink_fail(h->ul, "USB device unplugged");
		return;
	}
	snprintf(why, sizeof(why), "cannot submit a USB transfer: %s",
	    libusb_strerror(r));
	agg_usblink_fail(h->ul, why);
}

/* Submits every idle read that is not held. */
static void uh_submit_reads(struct agg_usbhost *h)
{
	size_t i;
	int r;

	for (i = 0; i < UH_NREADS && h->ul != NULL && !h->detaching; i++) {
		if (h->slots[i].busy || h->slots[i].held)
			continue;
		if ((r = uh_submit(h, &h->slots[i], AGG_USB_TRANSFER_MAX)) !=
		    0) {
			uh_submit_failed(h, r);
			return;
		}
	}
}

/* Fills idle write slots with the usblink's transfers. */
static void uh_fill(struct agg_usbhost *h)
{
	size_t i, n;
	int r;

	for (i = UH_NREADS; i < UH_NSLOTS && h->ul != NULL && !h->detaching;
	    i++) {
		if (h->slots[i].busy)
			continue;
		n = agg_usblink_next_transfer(h->ul, h->slots[i].buf,
		    AGG_USB_TRANSFER_MAX);
		if (n == 0)
			return;
		if ((r = uh_submit(h, &h->slots[i], n)) != 0) {
			uh_submit_failed(h, r);
			return;
		}
	}
}

/* usblink: bytes wait to be sent. */
static void usbhost_want_write_cb(void *arg)
{
	uh_fill(arg);
}

/* usblink: held reads may go on. */
static void usbhost_want_read_cb(void *arg)
{
	struct agg_usbhost *h = arg;
	size_t i;

	for (i = 0; i < UH_NREADS; i++)
		h->slots[i].held = 0;
	uh_submit_reads(h);
}

/* usblink: the gadget answered HELLO; the link joins the session. */
static void usbhost_up_cb(void *arg, struct bufferevent *bev)
{
	struct agg_usbhost *h = arg;

	h->link = agg_session_add_link(h->session, bev, h->name);
	if (h->link != NULL)
		agg_link_set_user(h->link, h);
}

/* usblink: the link is over; cancel the transfers, then release. */
static void usbhost_closed_cb(void *arg, const char *reason)
{
	struct agg_usbhost *h = arg;
	struct agg_usblink_stats st;
	char msg[700];
	size_t i;

	agg_usblink_get_stats(h->ul, &st);
	agg_log_info("USB link %s ended after %llu bytes in, %llu out (%llu "
	    "stale transfers): %s", h->name, (unsigned long long)st.rx_bytes,
	    (unsigned long long)st.tx_bytes, (unsigned long long)st.stale,
	    reason);
	/* libagg sees its end of the pipe close; the link is no longer
	 * ours to track (a new attach may come before its CLOSED event). */
	if (h->link != NULL) {
		agg_link_set_user(h->link, NULL);
		h->link = NULL;
	}
	snprintf(msg, sizeof(msg), "lost %.200s (%.200s): %s", h->url.text,
	    h->name, reason);
	h->error(msg, h->arg);
	h->detaching = 1;
	for (i = 0; i < UH_NSLOTS; i++)
		if (h->slots[i].busy)
			libusb_cancel_transfer(h->slots[i].xfer);
	uh_check_detached(h);
}

static const struct agg_usblink_ops uh_usblink_ops = {
	.want_write = usbhost_want_write_cb,
	.want_read = usbhost_want_read_cb,
	.up = usbhost_up_cb,
	.closed = usbhost_closed_cb,
};

/* Finds the agg interface (vendor class, bulk IN + OUT). */
static int uh_find_endpoints(struct agg_usbhost *h, libusb_device *dev)
{
	struct libusb_config_descriptor *cfg;
	const struct libusb_interface_descriptor *alt;
	uint8_t i, e;
	int found = -1;

	if (libusb_get_active_config_descriptor(dev, &cfg) != 0)
		return -1;
	for (i = 0; i < cfg->bNumInterfaces && found < 0; i++) {
		if (cfg->interface[i].num_altsetting < 1)
			continue;
		alt = &cfg->interface[i].altsetting[0];
		if (alt->bInterfaceClass != LIBUSB_CLASS_VENDOR_SPEC)
			continue;
		h->ep_in = h->ep_out = 0;
		for (e = 0; e < alt->bNumEndpoints; e++) {
			const struct libusb_endpoint_descriptor *ep =
			    &alt->endpoint[e];

			if ((ep->bmAttributes & 3) != LIBUSB_TRANSFER_TYPE_BULK)
				continue;
			if (ep->bEndpointAddress & LIBUSB_ENDPOINT_IN)
				h->ep_in = ep->bEndpointAddress;
			else
				h->ep_out = ep->bEndpointAddress;
		}
		if (h->ep_in != 0 && h->ep_out != 0) {
			h->iface = alt->bInterfaceNumber;
			found = 0;
		}
	}
	libusb_free_config_descriptor(cfg);
	return found;
}

/* Opened a matching device: claim it and start the link. */
static int uh_attach(struct agg_usbhost *h, libusb_device *dev)
{
	const struct libusb_pollfd **fds;
	uint32_t gen = 0;
	size_t i;

	if (uh_find_endpoints(h, dev) != 0) {
		uh_error(h, "USB device %04x:%04x has no agg interface",
		    h->url.usb_vid, h->url.usb_pid);
		return -1;
	}
	libusb_set_auto_detach_kernel_driver(h->dev, 1);
	if (libusb_claim_interface(h->dev, h->iface) != 0) {
		uh_error(h, "cannot claim interface %d of USB device "
		    "%04x:%04x (another program uses it)", h->iface,
		    h->url.usb_vid, h->url.usb_pid);
		return -1;
	}
	while (gen == 0)
		if (getrandom(&gen, sizeof(gen), 0) != (ssize_t)sizeof(gen))
			gen = (uint32_t)random();
	for (i = 0; i < UH_NSLOTS; i++) {
		h->slots[i].h = h;
		h->slots[i].write = i >= UH_NREADS;
		if ((h->slots[i].xfer = libusb_alloc_transfer(0)) == NULL)
			return -1;
	}
	if ((h->ul = agg_usblink_new(h->base, AGG_USBLINK_HOST, gen,
	    &uh_usblink_ops, h)) == NULL)
		return -1;
	libusb_set_pollfd_notifiers(h->ctx, usbhost_pollfd_added_cb,
	    usbhost_pollfd_removed_cb, h);
	if ((fds = libusb_get_pollfds(h->ctx)) != NULL) {
		for (i = 0; fds[i] != NULL; i++)
			usbhost_pollfd_added_cb(fds[i]->fd, fds[i]->events, h);
		libusb_free_pollfds(fds);
	}
	snprintf(h->name, sizeof(h->name), "usb:%04x:%04x@%u.%u",
	    h->url.usb_vid, h->url.usb_pid, libusb_get_bus_number(dev),
	    libusb_get_device_address(dev));
	agg_log_info("USB device %s attached (generation %08x)", h->name,
	    gen);
	h->reported[0] = '\0';
	uh_submit_reads(h);
	uh_fill(h);
	return 0;
}

/* Opens dev if it is the one wanted; 1 if it is now attached. Sets
 * *reported when it told the owner why a matching device failed. */
static int uh_try_device(struct agg_usbhost *h, libusb_device *dev,
    int *reported)
{
	struct libusb_device_descriptor d;
	unsigned char serial[256];
	int r;

	if (libusb_get_device_descriptor(dev, &d) != 0 ||
	    d.idVendor != h->url.usb_vid || d.idProduct != h->url.usb_pid)
		return 0;
	if ((r = libusb_open(dev, &h->dev)) != 0) {
		h->dev = NULL;
		if (r == LIBUSB_ERROR_ACCESS) {
			*reported = 1;
			uh_error(h, "permission denied on /dev/bus/usb/%03u/"
			    "%03u (run as root or add a udev rule such as "
			    "SUBSYSTEM==\"usb\", ATTR{idVendor}==\"%04x\", "
			    "ATTR{idProduct}==\"%04x\", MODE=\"0660\", "
			    "GROUP=\"plugdev\")", libusb_get_bus_number(dev),
			    libusb_get_device_address(dev), h->url.usb_vid,
			    h->url.usb_pid);
		}
		return 0;
	}
	if (h->url.usb_serial[0] != '\0' && (d.iSerialNumber == 0 ||
	    libusb_get_string_descriptor_ascii(h->dev, d.iSerialNumber,
	    serial, sizeof(serial)) < 0 ||
	    strcmp((char *)serial, h->url.usb_serial) != 0)) {
		libusb_close(h->dev);
		h->dev = NULL;
		return 0;
	}
	if (uh_attach(h, dev) != 0) {
		uh_close_device(h);
		*reported = 1;
		return 0;
	}
	return 1;
}

/* Looks for the device with a fresh libusb context. */
static void usbhost_scan_cb(evutil_socket_t fd, short what, void *arg)
{
	struct agg_usbhost *h = arg;
	libusb_device **list;
	ssize_t n, i;
	int r, attached = 0, reported = 0;

	(void)fd;
	(void)what;
	if (h->ctx != NULL)
		return;
	if ((r = libusb_init(&h->ctx)) != 0) {
		h->ctx = NULL;
		uh_error(h, "cannot use libusb: %s", libusb_strerror(r));
		uh_schedule_scan(h, UH_RESCAN_MS);
		return;
	}
	if ((n = libusb_get_device_list(h->ctx, &list)) < 0) {
		uh_error(h, "cannot list USB devices: %s",
		    libusb_strerror((int)n));
		n = 0;
		list = NULL;
	}
	for (i = 0; i < n && !attached; i++)
		attached = uh_try_device(h, list[i], &reported);
	if (list != NULL)
		libusb_free_device_list(list, 1);
	if (attached)
		return;
	if (!reported)
		uh_error(h, "no USB device %04x:%04x%s%s found",
		    h->url.usb_vid, h->url.usb_pid,
		    h->url.usb_serial[0] ? " with serial " : "",
		    h->url.usb_serial);
	uh_release(h);
	uh_schedule_scan(h, UH_RESCAN_MS);
}

/* Starts looking for the device. */
struct agg_usbhost *agg_usbhost_new(struct event_base *base,
    struct agg_session *session, const struct agg_url *url,
    agg_usbhost_error_cb error, void *arg)
{
	struct agg_usbhost *h;
	size_t i;

	if ((h = calloc(1, sizeof(*h))) == NULL)
		return NULL;
	h->base = base;
	h->session = session;
	h->url = *url;
	h->error = error;
	h->arg = arg;
	for (i = 0; i < UH_NSLOTS; i++)
		if ((h->slots[i].buf = malloc(AGG_USB_TRANSFER_MAX)) == NULL)
			goto fail;
	h->scan_ev = evtimer_new(base, usbhost_scan_cb, h);
	h->finish_ev = event_new(base, -1, 0, usbhost_finish_cb, h);
	if (h->scan_ev == NULL || h->finish_ev == NULL)
		goto fail;
	uh_schedule_scan(h, 0);
	return h;
fail:
	agg_usbhost_free(h);
	return NULL;
}

/* The session's link events. */
int agg_usbhost_link_state(struct agg_usbhost *h, struct agg_link *link,
    enum agg_link_state state, const char *reason)
{
	if (link == NULL || link != h->link)
		return 0;
	if (state == AGG_LINK_UP)
		agg_log_info("link %s up", h->name);
	if (state == AGG_LINK_CLOSED) {
		agg_log_info("link %s closed: %s", h->name,
		    reason ? reason : "closed");
		h->link = NULL;
	}
	return 1;
}

/* Frees the usbhost. */
void agg_usbhost_free(struct agg_usbhost *h)
{
	size_t i;

	if (h == NULL)
		return;
	if (h->link != NULL) {
		agg_link_set_user(h->link, NULL);
		h->link = NULL;
	}
	if (h->ul != NULL && !agg_usblink_is_closed(h->ul)) {
		h->detaching = 1;
		agg_usblink_fail(h->ul, "USB link set closed");
	}
	/* Let the cancelled transfers come back (bounded) before freeing. */
	for (i = 0; i < 100 && h->ctx != NULL; i++) {
		struct timeval tv = { 0, 10000 };
		size_t k, busy = 0;

		for (k = 0; k < UH_NSLOTS; k++)
			busy += h->slots[k].busy != 0;
		if (busy == 0)
			break;
		libusb_handle_events_timeout_completed(h->ctx, &tv, NULL);
	}
	uh_release(h);
	if (h->scan_ev != NULL)
		event_free(h->scan_ev);
	if (h->finish_ev != NULL)
		event_free(h->finish_ev);
	for (i = 0; i < UH_NSLOTS; i++)
		free(h->slots[i].buf);
	free(h);
}
